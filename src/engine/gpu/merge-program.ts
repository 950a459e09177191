/**
 * The merge kernels as one program: shader, bind group layout, pipelines (cached per device and
 * per dtype/DoRA variant), uniforms and dispatch shape. Entry points:
 * - `mergeTiles`: out = pack(W + L·R), DoRA-scaled when `dora` ≠ 0; one invocation per 8×8 tile.
 * - `normRows` / `normCols`: sums of squares of V per stored row / column (DoRA's first pass).
 */
import { DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import { mergeLowRankWgsl } from './shaders.generated.js';

export type MergeEntry = 'mergeTiles' | 'normRows' | 'normCols';
/** 0: no DoRA; 1: one factor per stored row; 2: one factor per stored column. */
export type DoraMode = 0 | 1 | 2;

export interface MergePipelineKey {
  entry: MergeEntry;
  inDtype: FloatDType;
  outDtype: FloatDType;
  dora: DoraMode;
  /**
   * Convert f16/bf16 without vector shifts (float arithmetic, multiplies and masks). For GPUs
   * emulated on the CPU: SwiftShader's JIT splits every vector shift into four scalar ones.
   */
  shiftFree: boolean;
}

/** Invocations per workgroup: SwiftShader and real GPUs both do well with 64 independent lanes. */
export const WORKGROUP_SIZE = 64;
/**
 * 8×8 elements per invocation. Rows of W, of the output and of the factors are padded to a multiple
 * of TILE elements, and the rows of each dispatch to a multiple of TILE rows.
 */
export const TILE = 8;
/** The kernel takes this many rank steps per loop iteration: the host pads the rank to a multiple. */
export const RANK_STEP = 4;
export const PARAMS_BYTES = 48;

const DTYPE_CODE: Record<FloatDType, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, F8_E5M2: 4 };

interface DeviceCache {
  module: GPUShaderModule;
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
        storage('read-only-storage', 2), // Lᵀ
        storage('read-only-storage', 3), // R
        storage('storage', 4),           // W out
        storage('storage', 5),           // non-finite flag
        storage('storage', 6),           // DoRA sums of squares
        storage('read-only-storage', 7), // DoRA magnitude
      ],
    });
    c = {
      module: device.createShaderModule({ label: 'merge-low-rank.wgsl', code: mergeLowRankWgsl }),
      bindGroupLayout,
      pipelineLayout: device.createPipelineLayout({ label: 'merge-low-rank pipeline layout', bindGroupLayouts: [bindGroupLayout] }),
      pipelines: new Map(),
    };
    cache.set(device, c);
  }
  return c;
}

export function mergeBindGroupLayout(device: GPUDevice): GPUBindGroupLayout {
  return deviceCache(device).bindGroupLayout;
}

export function mergePipeline(device: GPUDevice, key: MergePipelineKey): GPUComputePipeline {
  const c = deviceCache(device);
  const name = `${key.entry}/${key.inDtype}->${key.outDtype}/dora${key.dora}${key.shiftFree ? '/shift-free' : ''}`;
  let p = c.pipelines.get(name);
  if (!p) {
    p = device.createComputePipeline({
      label: `merge-low-rank ${name}`,
      layout: c.pipelineLayout,
      compute: {
        module: c.module,
        entryPoint: key.entry,
        constants: {
          IN_DTYPE: DTYPE_CODE[key.inDtype],
          OUT_DTYPE: DTYPE_CODE[key.outDtype],
          DORA: key.dora,
          SHIFT_FREE: key.shiftFree ? 1 : 0,
          WORKGROUP: WORKGROUP_SIZE,
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
  /** Columns after padding to a multiple of TILE. */
  paddedCols: number;
  /** Rows of Lᵀ after padding to a multiple of TILE. */
  paddedRows: number;
  /** Padded to a multiple of RANK_STEP. */
  rank: number;
  /** Invocations with work (tiles, tile rows or tile columns, depending on the entry point). */
  items: number;
  inDtype: FloatDType;
  outDtype: FloatDType;
  normRow0: number;
  eps: number;
}

export interface DispatchShape {
  x: number;
  y: number;
  /** Invocations per row of the grid, for the shader's linear index. */
  gridStride: number;
}

/** Workgroups for `items` invocations, folded into 2-D beyond the per-dimension limit. */
export function dispatchShape(items: number, maxPerDimension: number): DispatchShape {
  const groups = Math.max(1, Math.ceil(items / WORKGROUP_SIZE));
  const x = Math.min(groups, maxPerDimension);
  const y = Math.ceil(groups / x);
  if (y > maxPerDimension) throw new RangeError(`dispatch of ${items} invocations is too large`);
  return { x, y, gridStride: x * WORKGROUP_SIZE };
}

/** vec4<u32> words per padded row of a dtype (fp8 rows are padded to 16 elements). */
export function words4PerRow(paddedCols: number, dtype: FloatDType): number {
  return paddedCols / (16 / DTYPE_BYTES[dtype]);
}

/** Elements a row of W is padded to: a tile, or a whole vec4 of fp8. */
export function columnPadding(inDtype: FloatDType, outDtype: FloatDType): number {
  return DTYPE_BYTES[inDtype] === 1 || DTYPE_BYTES[outDtype] === 1 ? 16 : TILE;
}

export function paramsBytes(p: MergeParams, shape: DispatchShape): ArrayBuffer {
  const buf = new ArrayBuffer(PARAMS_BYTES);
  const u = new Uint32Array(buf);
  u[0] = p.rows;
  u[1] = p.paddedCols / TILE;
  u[2] = p.rank;
  u[3] = p.items;
  u[4] = words4PerRow(p.paddedCols, p.inDtype);
  u[5] = words4PerRow(p.paddedCols, p.outDtype);
  u[6] = p.paddedRows / 4;
  u[7] = p.paddedCols / 4;
  u[8] = shape.gridStride;
  u[9] = p.normRow0;
  new Float32Array(buf)[10] = p.eps;
  return buf;
}
