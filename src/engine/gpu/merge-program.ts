/**
 * The merge kernel as one program: shader module (the kernel plus W's loader: u32 words, or f16
 * where the device has `shader-f16`), bind group layout, pipelines (cached per device and per
 * dtype pair, conversion style and workgroup shape), uniforms and dispatch shape. Entry point
 * `mergeTiles`: out = round(W + L·R), certified (see shaders/merge-low-rank.wgsl); one
 * invocation per 8×8 tile, WG_X × WG_Y invocations per workgroup.
 */
import { DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import { mergeLowRankWgsl, mergeWF16Wgsl, mergeWWordsWgsl } from './shaders.generated.js';
import type { WorkgroupShape } from './workgroup-shape.js';

export type { WorkgroupShape } from './workgroup-shape.js';

export interface MergePipelineKey {
  inDtype: FloatDType;
  outDtype: FloatDType;
  /**
   * Convert f16/bf16 without vector shifts (float arithmetic, multiplies and masks). For GPUs
   * emulated on the CPU: SwiftShader's JIT splits every vector shift into four scalar ones.
   */
  shiftFree: boolean;
  /** Read f16 W through WGSL's f16 type (the device has `shader-f16`, W is f16). */
  nativeF16: boolean;
  workgroup: WorkgroupShape;
}

/**
 * 8×8 elements per invocation. Rows of W, of the output and of the factors are padded to a multiple
 * of TILE elements, and the rows of each dispatch to a multiple of TILE rows.
 */
export const TILE = 8;
/** The kernel takes this many rank steps per loop iteration: the host pads the rank to a multiple. */
export const RANK_STEP = 4;
export const PARAMS_BYTES = 48;

/**
 * The workgroup shape for an adapter. Lanes along x take neighbouring column tiles of the same
 * rows, so a subgroup reads contiguous W and R: x is the subgroup size where the adapter reports
 * one (a whole subgroup on a row), y fills the workgroup to 128 invocations (64 on a software
 * adapter, where 64 × 1 was measured fastest), all within the device's limits. Real GPUs have not
 * been measured: the shape is a reasoned default.
 */
export function chooseWorkgroup(limits: Pick<GPUSupportedLimits, 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupSizeY'>,
  subgroupSize: number | undefined, software: boolean): WorkgroupShape {
  if (software) return { x: Math.min(64, limits.maxComputeWorkgroupSizeX), y: 1 };
  const total = Math.min(128, limits.maxComputeInvocationsPerWorkgroup);
  const x = Math.min(subgroupSize && subgroupSize >= 4 && subgroupSize <= total ? subgroupSize : 32, limits.maxComputeWorkgroupSizeX, total);
  const y = Math.max(1, Math.min(Math.floor(total / x), limits.maxComputeWorkgroupSizeY));
  return { x, y };
}

const DTYPE_CODE: Record<FloatDType, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, F8_E5M2: 4 };

interface DeviceCache {
  modules: Map<boolean, GPUShaderModule>;
  bindGroupLayout: GPUBindGroupLayout;
  pipelineLayout: GPUPipelineLayout;
  pipelines: Map<string, GPUComputePipeline>;
}

const cache = new WeakMap<GPUDevice, DeviceCache>();

function deviceCache(device: GPUDevice): DeviceCache {
  let c = cache.get(device);
  if (!c) {
    const storage = (type: GPUBufferBindingType, binding: number): GPUBindGroupLayoutEntry =>
      ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const bindGroupLayout = device.createBindGroupLayout({
      label: 'merge-low-rank bind group layout',
      entries: [
        storage('uniform', 0),
        storage('read-only-storage', 1), // W in
        storage('read-only-storage', 2), // Lᵀ, then the row norms
        storage('read-only-storage', 3), // R, then the column norms
        storage('storage', 4),           // W out
        storage('storage', 5),           // non-finite flag, listed count and indices
      ],
    });
    c = {
      modules: new Map(),
      bindGroupLayout,
      pipelineLayout: device.createPipelineLayout({ label: 'merge-low-rank pipeline layout', bindGroupLayouts: [bindGroupLayout] }),
      pipelines: new Map(),
    };
    cache.set(device, c);
  }
  return c;
}

function shaderModule(device: GPUDevice, c: DeviceCache, nativeF16: boolean): GPUShaderModule {
  let m = c.modules.get(nativeF16);
  if (!m) {
    // `enable f16;` must open the module, so the f16 loader's module is the same text behind it.
    const code = nativeF16 ? `enable f16;\n${mergeLowRankWgsl}\n${mergeWF16Wgsl}` : `${mergeLowRankWgsl}\n${mergeWWordsWgsl}`;
    m = device.createShaderModule({ label: `merge-low-rank.wgsl (${nativeF16 ? 'f16 loader' : 'word loader'})`, code });
    c.modules.set(nativeF16, m);
  }
  return m;
}

export function mergeBindGroupLayout(device: GPUDevice): GPUBindGroupLayout {
  return deviceCache(device).bindGroupLayout;
}

export function mergePipeline(device: GPUDevice, key: MergePipelineKey): GPUComputePipeline {
  const c = deviceCache(device);
  const native = key.nativeF16 && key.inDtype === 'F16';
  const name = `${key.inDtype}->${key.outDtype}${key.shiftFree ? '/shift-free' : ''}${native ? '/f16' : ''}/${key.workgroup.x}x${key.workgroup.y}`;
  let p = c.pipelines.get(name);
  if (!p) {
    p = device.createComputePipeline({
      label: `merge-low-rank ${name}`,
      layout: c.pipelineLayout,
      compute: {
        module: shaderModule(device, c, native),
        entryPoint: 'mergeTiles',
        constants: {
          IN_DTYPE: DTYPE_CODE[key.inDtype],
          OUT_DTYPE: DTYPE_CODE[key.outDtype],
          SHIFT_FREE: key.shiftFree ? 1 : 0,
          WG_X: key.workgroup.x,
          WG_Y: key.workgroup.y,
        },
      },
    });
    c.pipelines.set(name, p);
  }
  return p;
}

export interface MergeParams {
  /** Rows of W in this dispatch (unpadded). */
  rows: number;
  /** Columns after padding (see columnPadding). */
  paddedCols: number;
  /** Rows of this dispatch after padding to a multiple of TILE. */
  paddedRows: number;
  /** Padded to a multiple of RANK_STEP. */
  rank: number;
  inDtype: FloatDType;
  outDtype: FloatDType;
  /** The bound's relative term (0 and `certify` false: V is exact). */
  u: number;
  listCap: number;
  certify: boolean;
}

/** Workgroups along x (column tiles) and y (row tiles) for a dispatch. */
export function dispatchGroups(p: Pick<MergeParams, 'paddedCols' | 'paddedRows'>, wg: WorkgroupShape): { x: number; y: number } {
  return { x: Math.ceil(p.paddedCols / TILE / wg.x), y: Math.ceil(p.paddedRows / TILE / wg.y) };
}

/** vec4<u32> words per padded row of a dtype. */
export function words4PerRow(paddedCols: number, dtype: FloatDType): number {
  return paddedCols / (16 / DTYPE_BYTES[dtype]);
}

/** Elements a row of W is padded to: a tile, or a whole vec4 of fp8. */
export function columnPadding(inDtype: FloatDType, outDtype: FloatDType): number {
  return DTYPE_BYTES[inDtype] === 1 || DTYPE_BYTES[outDtype] === 1 ? 16 : TILE;
}

export function paramsBytes(p: MergeParams): ArrayBuffer {
  const buf = new ArrayBuffer(PARAMS_BYTES);
  const u = new Uint32Array(buf);
  u[0] = p.rows;
  u[1] = p.paddedCols / TILE;
  u[2] = p.rank;
  u[3] = p.paddedRows / TILE;
  u[4] = words4PerRow(p.paddedCols, p.inDtype);
  u[5] = words4PerRow(p.paddedCols, p.outDtype);
  u[6] = p.paddedRows / 4;
  u[7] = p.paddedCols / 4;
  new Float32Array(buf)[8] = p.u;
  u[9] = p.listCap;
  u[10] = p.certify ? 1 : 0;
  return buf;
}

/**
 * Workgroups for `items` invocations of `perGroup`, folded into 2-D beyond the per-dimension limit
 * (the one-dimensional kernels: GGML decoding).
 */
export function dispatchShape(items: number, maxPerDimension: number, perGroup = 64): { x: number; y: number; gridStride: number } {
  const groups = Math.max(1, Math.ceil(items / perGroup));
  const x = Math.min(groups, maxPerDimension);
  const y = Math.ceil(groups / x);
  if (y > maxPerDimension) throw new RangeError(`dispatch of ${items} invocations is too large`);
  return { x, y, gridStride: x * perGroup };
}
