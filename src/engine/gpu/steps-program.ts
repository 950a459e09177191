/**
 * The update-steps kernels as one program: shader, bind group layout, pipelines (cached per
 * device), uniforms and dispatch. Entry points (shaders/update-steps.wgsl), all on f32 slabs of V:
 * - `addDense`: V += s·D;  `scaleAxis`: V *= f per row or column;
 * - `projectRows`: Lᵀ = s·(V·P)ᵀ, the left factor of GLoRA's V·P·Q (the low-rank kernel adds it);
 * - `rotateCols` / `rotateRows`: block-diagonal maps along stored columns / rows.
 */
import { updateStepsWgsl } from './shaders.generated.js';
import { dispatchShape, WORKGROUP_SIZE } from './merge-program.js';

export type StepEntry = 'addDense' | 'scaleAxis' | 'projectRows' | 'rotateCols' | 'rotateRows';

export const STEP_PARAMS_BYTES = 48;

export interface StepParams {
  rows: number;
  paddedRows: number;
  paddedCols: number;
  cols: number;
  row0: number;
  block: number;
  rank: number;
  items: number;
  axis: 0 | 1;
  scale: number;
}

interface DeviceCache {
  layout: GPUBindGroupLayout;
  pipelineLayout: GPUPipelineLayout;
  module: GPUShaderModule;
  pipelines: Map<StepEntry, GPUComputePipeline>;
}

const cache = new WeakMap<GPUDevice, DeviceCache>();

function deviceCache(device: GPUDevice): DeviceCache {
  let c = cache.get(device);
  if (!c) {
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry =>
      ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      label: 'update-steps bind group layout',
      entries: [entry(0, 'uniform'), entry(1, 'read-only-storage'), entry(2, 'storage'), entry(3, 'read-only-storage')],
    });
    c = {
      layout,
      pipelineLayout: device.createPipelineLayout({ label: 'update-steps pipeline layout', bindGroupLayouts: [layout] }),
      module: device.createShaderModule({ label: 'update-steps.wgsl', code: updateStepsWgsl }),
      pipelines: new Map(),
    };
    cache.set(device, c);
  }
  return c;
}

function pipeline(device: GPUDevice, entry: StepEntry): GPUComputePipeline {
  const c = deviceCache(device);
  let p = c.pipelines.get(entry);
  if (!p) {
    p = device.createComputePipeline({
      label: `update-steps ${entry}`,
      layout: c.pipelineLayout,
      compute: { module: c.module, entryPoint: entry, constants: { WORKGROUP: WORKGROUP_SIZE } },
    });
    c.pipelines.set(entry, p);
  }
  return p;
}

export interface StepBuffers {
  params: GPUBuffer;
  src: GPUBuffer;
  dst: GPUBuffer;
  aux: GPUBuffer;
}

/** Writes the uniforms and submits one dispatch of `entry` (uniforms are per submit, so one each). */
export function runStep(device: GPUDevice, entry: StepEntry, p: StepParams, b: StepBuffers, maxPerDimension: number, label: string): void {
  const grid = dispatchShape(p.items, maxPerDimension);
  const buf = new ArrayBuffer(STEP_PARAMS_BYTES);
  const u = new Uint32Array(buf);
  u.set([p.rows, p.paddedRows, p.paddedCols, p.cols, p.row0, p.block, p.rank, p.items, grid.gridStride, p.axis]);
  new Float32Array(buf)[10] = p.scale;
  device.queue.writeBuffer(b.params, 0, buf);
  const bindGroup = device.createBindGroup({
    label: `${label} ${entry}`,
    layout: deviceCache(device).layout,
    entries: [b.params, b.src, b.dst, b.aux].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder({ label: `${label} ${entry}` });
  const pass = enc.beginComputePass({ label: `${label} ${entry}` });
  pass.setPipeline(pipeline(device, entry));
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(grid.x, grid.y);
  pass.end();
  device.queue.submit([enc.finish()]);
}
