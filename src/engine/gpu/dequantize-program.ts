/**
 * GGML blocks decoded to f32 in WGSL (shaders/gguf-dequantize.wgsl), one value per invocation.
 * The values equal the CPU codecs' (formats/gguf/codecs/) bit for bit: each is an exact product
 * rounded once. Blocks go up in pieces that fit the device's binding limit; pipelines are cached
 * per device.
 */
import { ggufDequantizeWgsl } from './shaders.generated.js';
import { dispatchShape } from './merge-program.js';

const BLOCKS: Readonly<Record<string, { values: number; bytes: number }>> = {
  Q8_0: { values: 32, bytes: 34 }, Q4_0: { values: 32, bytes: 18 }, Q4_1: { values: 32, bytes: 20 },
  Q5_0: { values: 32, bytes: 22 }, Q5_1: { values: 32, bytes: 24 },
  Q2_K: { values: 256, bytes: 84 }, Q3_K: { values: 256, bytes: 110 }, Q4_K: { values: 256, bytes: 144 }, Q5_K: { values: 256, bytes: 176 }, Q6_K: { values: 256, bytes: 210 },
};

/** The GGML types this program decodes. */
export function gpuDecodes(type: string): boolean {
  return Object.hasOwn(BLOCKS, type);
}

interface DeviceCache {
  module: GPUShaderModule;
  layout: GPUBindGroupLayout;
  pipelineLayout: GPUPipelineLayout;
  pipelines: Map<string, GPUComputePipeline>;
}

const cache = new WeakMap<GPUDevice, DeviceCache>();

function deviceCache(device: GPUDevice): DeviceCache {
  let c = cache.get(device);
  if (!c) {
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      label: 'gguf-dequantize bind group layout',
      entries: [entry(0, 'uniform'), entry(1, 'read-only-storage'), entry(2, 'storage')],
    });
    c = {
      module: device.createShaderModule({ label: 'gguf-dequantize.wgsl', code: ggufDequantizeWgsl }),
      layout,
      pipelineLayout: device.createPipelineLayout({ label: 'gguf-dequantize pipeline layout', bindGroupLayouts: [layout] }),
      pipelines: new Map(),
    };
    cache.set(device, c);
  }
  return c;
}

function pipeline(device: GPUDevice, type: string): GPUComputePipeline {
  const c = deviceCache(device);
  let p = c.pipelines.get(type);
  if (!p) {
    p = device.createComputePipeline({ label: `dequantize ${type}`, layout: c.pipelineLayout, compute: { module: c.module, entryPoint: `dequant${type}` } });
    c.pipelines.set(type, p);
  }
  return p;
}

/**
 * Decodes `blocks` (whole blocks of `type`) on `device`. `maxBindingBytes` bounds each piece's
 * output; `maxWorkgroupsPerDimension` the dispatch grid.
 */
export async function dequantizeOnGpu(
  device: GPUDevice, type: string, blocks: Uint8Array, maxBindingBytes: number, maxWorkgroupsPerDimension: number,
): Promise<Float32Array> {
  const block = BLOCKS[type];
  const nBlocks = blocks.byteLength / block.bytes;
  const out = new Float32Array(nBlocks * block.values);
  // Pieces whose decoded values fit a binding, and whose grid fits the dispatch limits.
  const perPiece = Math.max(1, Math.min(Math.floor(maxBindingBytes / (block.values * 4)), Math.floor((maxWorkgroupsPerDimension * 64) / block.values) * maxWorkgroupsPerDimension));
  for (let b0 = 0; b0 < nBlocks; b0 += perPiece) {
    const n = Math.min(perPiece, nBlocks - b0);
    const values = n * block.values;
    const srcBytes = Math.ceil((n * block.bytes) / 4) * 4;
    const src = device.createBuffer({ label: `dequantize ${type} blocks`, size: Math.max(srcBytes, 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const dst = device.createBuffer({ label: `dequantize ${type} values`, size: values * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ label: `dequantize ${type} readback`, size: values * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const params = device.createBuffer({ label: `dequantize ${type} params`, size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    try {
      const piece = new Uint8Array(srcBytes);
      piece.set(blocks.subarray(b0 * block.bytes, (b0 + n) * block.bytes));
      device.queue.writeBuffer(src, 0, piece);
      const grid = dispatchShape(values, maxWorkgroupsPerDimension);
      device.queue.writeBuffer(params, 0, new Uint32Array([values, grid.x, 0, 0]));
      const bindGroup = device.createBindGroup({
        label: `dequantize ${type}`,
        layout: deviceCache(device).layout,
        entries: [params, src, dst].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const enc = device.createCommandEncoder({ label: `dequantize ${type}` });
      const pass = enc.beginComputePass({ label: `dequantize ${type}` });
      pass.setPipeline(pipeline(device, type));
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(grid.x, grid.y);
      pass.end();
      enc.copyBufferToBuffer(dst, 0, read, 0, values * 4);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      out.set(new Float32Array(read.getMappedRange()), b0 * block.values);
      read.unmap();
    } finally {
      for (const b of [src, dst, read, params]) b.destroy();
    }
  }
  return out;
}
