/**
 * Picks the backend that runs the merge. `webgpu` insists on a GPU; `cpu` never touches one; `auto`
 * takes a real GPU when there is one, and on a software adapter (SwiftShader) times a small merge
 * on both and keeps the faster, since a CPU Vulkan driver competes with plain CPU code.
 */
import { MergeError } from '../errors.js';
import type { MergeBackend, MergeOp } from './merge-op.js';
import { CpuBackend, type CpuMergePool } from './cpu/cpu-backend.js';
import { getBrowserGpu } from './gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, type GpuLimitCaps } from './gpu/gpu-device.js';
import { WebGpuBackend } from './gpu/webgpu-backend.js';

export interface BackendOptions {
  kind?: 'auto' | 'webgpu' | 'cpu';
  /** WebGPU entry point; defaults to `navigator.gpu` (in Node, pass `(await getNodeGpu()).gpu`). */
  gpu?: GPU;
  /** Caps on what the engine uses of the device (the rest is tiled). */
  limits?: GpuLimitCaps;
  /**
   * Worker threads for the CPU backend, made only if the CPU is chosen (Node: createCpuWorkerPool).
   * Without it the CPU backend runs on the calling thread.
   */
  cpuPool?: () => CpuMergePool | undefined;
}

export async function createWebGpuBackend(gpu: GPU | undefined, limits?: GpuLimitCaps): Promise<WebGpuBackend> {
  if (!gpu) throw new MergeError('GPU_UNAVAILABLE', 'WebGPU is not available in this environment');
  const adapter = await requestAdapter(gpu);
  return new WebGpuBackend(await requestMergeDevice(adapter, limits));
}

export async function createBackend(options: BackendOptions = {}): Promise<MergeBackend> {
  const kind = options.kind ?? 'auto';
  const cpu = (reason: string) => new CpuBackend(reason, { pool: options.cpuPool?.() });
  if (kind === 'cpu') return cpu('requested');
  const gpu = options.gpu ?? getBrowserGpu();
  if (kind === 'webgpu') return createWebGpuBackend(gpu, options.limits);
  if (!gpu) return cpu('no WebGPU in this environment');
  let backend: WebGpuBackend;
  try {
    backend = await createWebGpuBackend(gpu, options.limits);
  } catch (e) {
    return cpu(`no usable GPU: ${(e as Error).message}`);
  }
  if (!backend.isSoftware) return backend;
  return pickFaster(backend, cpu);
}

/**
 * A 1024 × 2048 f16 weight (4 MiB, the size of a streamed slab) with a rank-16 update: half-precision
 * models are the common case, and big enough that throughput, not latency, decides.
 */
function calibrationOp(): MergeOp {
  const rows = 1024, cols = 2048, rank = 16;
  const f32 = (n: number): Uint8Array => {
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = ((i * 7919) % 1000) / 1000 - 0.5;
    return new Uint8Array(f.buffer);
  };
  const base = new Uint16Array(rows * cols);
  for (let i = 0; i < base.length; i++) base[i] = 0x3000 + ((i * 7919) % 0x800); // f16 values in [0.125, 0.25)
  return {
    name: 'calibration', rows, cols, layout: 'out-in', outDtype: 'F16',
    base: { dtype: 'F16', data: new Uint8Array(base.buffer) },
    terms: [{ rank, scale: 0.01, a: { dtype: 'F32', data: f32(rank * cols) }, b: { dtype: 'F32', data: f32(rows * rank) } }],
  };
}

async function timeMerge(backend: MergeBackend, op: MergeOp): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await backend.merge(op);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/**
 * Times the calibration op on the software GPU and on the CPU exactly as the merge would run it
 * (the CPU backend with its worker threads, warmed up like the GPU's pipeline), keeps the faster.
 */
async function pickFaster(gpu: WebGpuBackend, makeCpu: (reason: string) => CpuBackend): Promise<MergeBackend> {
  const op = calibrationOp();
  let gpuMs: number;
  try {
    await gpu.merge(op); // compiles the pipeline
    gpuMs = await timeMerge(gpu, op);
  } catch (e) {
    gpu.dispose();
    return makeCpu(`the software GPU failed a test merge: ${(e as Error).message}`);
  }
  const cpu = makeCpu('faster than the software GPU adapter');
  await cpu.merge(op); // starts the worker threads
  const cpuMs = await timeMerge(cpu, op);
  const timing = `test merge: software GPU ${gpuMs.toFixed(1)} ms, CPU ${cpuMs.toFixed(1)} ms`;
  if (gpuMs <= cpuMs) {
    cpu.dispose();
    gpu.note(`chosen over the CPU, ${timing}`);
    return gpu;
  }
  gpu.dispose();
  cpu.note(timing);
  return cpu;
}
