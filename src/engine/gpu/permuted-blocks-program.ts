/**
 * The permuted block maps (shaders/permuted-blocks.wgsl) as one program: bind group layout and
 * pipelines cached per device, uniforms and one dispatch per step. `permutedCols` maps each stored
 * row, `permutedRows` maps along stored rows within a slab that holds whole runs.
 */
import { permutedBlocksWgsl } from './shaders.generated.js';
import { dispatchShape, WORKGROUP_SIZE } from './merge-program.js';
import { blockCount, scatterOf, type PermutedBlocksStep } from '../permuted-blocks.js';
import { decodeToF32 } from '../../dtype.js';

export type PermutedEntry = 'permutedCols' | 'permutedRows';

const PARAMS_BYTES = 48;

export interface PermutedParams {
  rows: number;
  paddedRows: number;
  paddedCols: number;
  cols: number;
  row0: number;
}

export interface PermutedBuffers {
  params: GPUBuffer;
  src: GPUBuffer;
  dst: GPUBuffer;
  blocks: GPUBuffer;
  perm: GPUBuffer;
}

interface DeviceCache {
  layout: GPUBindGroupLayout;
  pipelineLayout: GPUPipelineLayout;
  module: GPUShaderModule;
  pipelines: Map<PermutedEntry, GPUComputePipeline>;
}

const cache = new WeakMap<GPUDevice, DeviceCache>();

function deviceCache(device: GPUDevice): DeviceCache {
  let c = cache.get(device);
  if (!c) {
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry =>
      ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      label: 'permuted-blocks bind group layout',
      entries: [entry(0, 'uniform'), entry(1, 'read-only-storage'), entry(2, 'storage'), entry(3, 'read-only-storage'), entry(4, 'read-only-storage')],
    });
    c = {
      layout,
      pipelineLayout: device.createPipelineLayout({ label: 'permuted-blocks pipeline layout', bindGroupLayouts: [layout] }),
      module: device.createShaderModule({ label: 'permuted-blocks.wgsl', code: permutedBlocksWgsl }),
      pipelines: new Map(),
    };
    cache.set(device, c);
  }
  return c;
}

function pipeline(device: GPUDevice, entry: PermutedEntry): GPUComputePipeline {
  const c = deviceCache(device);
  let p = c.pipelines.get(entry);
  if (!p) {
    p = device.createComputePipeline({
      label: `permuted-blocks ${entry}`,
      layout: c.pipelineLayout,
      compute: { module: c.module, entryPoint: entry, constants: { WORKGROUP: WORKGROUP_SIZE } },
    });
    c.pipelines.set(entry, p);
  }
  return p;
}

type StepData = { blocks: Float32Array<ArrayBuffer>; perm: Uint32Array<ArrayBuffer> };

/** Per step (its blocks' bytes are shared by every slab of a tensor): what was uploaded for it. */
const stepData = new WeakMap<Uint8Array, { gather: Uint32Array | undefined; n: number; data: StepData }>();

/** f32 values of the step's blocks and u32 entries of σ then σ⁻¹, for an axis of n. */
export function permutedBlocksData(step: PermutedBlocksStep, n: number): StepData {
  const known = stepData.get(step.blocks.data);
  if (known && known.gather === step.gather && known.n === n) return known.data;
  const data = computeStepData(step, n);
  stepData.set(step.blocks.data, { gather: step.gather, n, data });
  return data;
}

function computeStepData(step: PermutedBlocksStep, n: number): StepData {
  const blocks = new Float32Array(blockCount(n, step.blockSize) * step.blockSize ** 2);
  blocks.set(decodeToF32(step.blocks.data, step.blocks.dtype));
  const perm = new Uint32Array(2 * n);
  if (step.gather) {
    perm.set(step.gather);
    perm.set(scatterOf(step)!, n);
  } else {
    for (let p = 0; p < n; p++) perm[p] = perm[n + p] = p;
  }
  return { blocks, perm };
}

/** Writes the uniforms and submits one dispatch of `entry` over the slab's padded elements. */
export function runPermutedBlocks(
  device: GPUDevice, entry: PermutedEntry, step: PermutedBlocksStep, n: number, p: PermutedParams, b: PermutedBuffers,
  maxPerDimension: number, label: string,
): void {
  const items = p.paddedRows * p.paddedCols;
  const grid = dispatchShape(items, maxPerDimension);
  const u = new Uint32Array(PARAMS_BYTES / 4);
  u.set([p.rows, p.paddedRows, p.paddedCols, p.cols, p.row0, step.blockSize, n, items, grid.gridStride]);
  device.queue.writeBuffer(b.params, 0, u);
  const bindGroup = device.createBindGroup({
    label: `${label} ${entry}`,
    layout: deviceCache(device).layout,
    entries: [b.params, b.src, b.dst, b.blocks, b.perm].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder({ label: `${label} ${entry}` });
  const pass = enc.beginComputePass({ label: `${label} ${entry}` });
  pass.setPipeline(pipeline(device, entry));
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(grid.x, grid.y);
  pass.end();
  device.queue.submit([enc.finish()]);
}
