/**
 * Picks the backend that runs the merge. `webgpu` insists on a GPU; `cpu` never touches one; `auto`
 * takes a real GPU when there is one, and on a software adapter (SwiftShader) times a small merge
 * on both and keeps the faster, since a CPU Vulkan driver competes with plain CPU code.
 */
import { DTYPE_BYTES, encodeFromF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { MergeBackend, MergeOp } from './merge-op.js';
import { CpuBackend, type CpuMergePool } from './cpu/cpu-backend.js';
import { getBrowserGpu } from './gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, type GpuLimitCaps } from './gpu/gpu-device.js';
import { WebGpuBackend } from './gpu/webgpu-backend.js';

/** Options of {@link createBackend}. */
export interface BackendOptions {
  /** `webgpu` insists on a GPU, `cpu` never touches one, `auto` (default) picks as described above. */
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
  /** The dtype of the weights to merge, for timing the backends like with like (default F16). */
  calibrationDtype?: FloatDType;
}

/** A WebGPU backend on `gpu`'s adapter, or a GPU_UNAVAILABLE MergeError saying why not. */
export async function createWebGpuBackend(gpu: GPU | undefined, limits?: GpuLimitCaps, cpuPool?: () => CpuMergePool | undefined): Promise<WebGpuBackend> {
  if (!gpu) throw new MergeError('GPU_UNAVAILABLE', 'WebGPU is not available in this environment');
  const adapter = await requestAdapter(gpu);
  // What the GPU does not run (f32 outputs, DoRA, update steps) goes to the CPU, with its threads.
  const cpu = () => new CpuBackend('for what the GPU does not run', { pool: cpuPool?.() });
  return new WebGpuBackend(await requestMergeDevice(adapter, limits), { cpu });
}

/**
 * The backend that runs merges: see the module comment for how `auto` chooses. Dispose of it when
 * done (an undisposed one does not keep Node running, but holds its GPU device or threads).
 */
export async function createBackend(options: BackendOptions = {}): Promise<MergeBackend> {
  const kind = options.kind ?? 'auto';
  const cpu = (reason: string) => new CpuBackend(reason, { pool: options.cpuPool?.() });
  if (kind === 'cpu') return cpu('requested').ready();
  const gpu = options.gpu ?? getBrowserGpu();
  if (kind === 'webgpu') return createWebGpuBackend(gpu, options.limits, options.cpuPool);
  if (!gpu) return cpu('no WebGPU in this environment').ready();
  let backend: WebGpuBackend;
  try {
    backend = await createWebGpuBackend(gpu, options.limits, options.cpuPool);
  } catch (e) {
    return cpu(`no usable GPU: ${(e as Error).message}`).ready();
  }
  if (!backend.isSoftware) return backend;
  return pickFaster(backend, cpu, options.calibrationDtype ?? 'F16');
}

/**
 * A 2 MiB weight of the model's dtype with a rank-16 update, merged back to that dtype: big enough
 * that throughput, not latency, decides (the GPU takes tens of ms), and like the real merge (on
 * SwiftShader the GPU's 2-byte paths are slower than its f32 path; the CPU's are not). Half a
 * streamed slab: the software GPU's buffers stay in the process's memory after the test, and with
 * 4 MiB the peak RSS of an auto merge came within 2 MiB of a quarter of a 0.97 GB model.
 */
const CALIBRATION_BYTES = 2 * 1024 * 1024;

function calibrationOp(dtype: FloatDType): MergeOp {
  const rank = 16, cols = 2048;
  const rows = CALIBRATION_BYTES / (cols * DTYPE_BYTES[dtype]);
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = 0.125 + ((i * 7919) % 1000) / 8000;
  const f32 = (n: number): Uint8Array => {
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = ((i * 7919) % 1000) / 1000 - 0.5;
    return new Uint8Array(f.buffer);
  };
  return {
    name: 'calibration', rows, cols, layout: 'out-in', outDtype: dtype,
    base: { dtype, data: encodeFromF32(values, dtype) },
    terms: [{ rank, scale: 0.01, a: { dtype: 'F32', data: f32(rank * cols) }, b: { dtype: 'F32', data: f32(rows * rank) } }],
  };
}

/** Best of up to `runs` timed merges; stops early once the best is past `enoughMs` (clearly slower). */
async function timeMerge(backend: MergeBackend, op: MergeOp, runs: number, enoughMs = Infinity): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs && (i === 0 || best <= enoughMs); i++) {
    const t0 = performance.now();
    await backend.merge(op);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/**
 * Times the calibration op on the CPU and on the software GPU exactly as the merge would run them
 * (the CPU backend with its worker threads, each backend warmed up first), keeps the faster. A GPU
 * more than twice as slow as the CPU is not timed again: the choice is clear, and it keeps
 * calibration well under a second.
 */
async function pickFaster(gpu: WebGpuBackend, makeCpu: (reason: string) => CpuBackend,
  dtype: FloatDType): Promise<MergeBackend> {
  const op = calibrationOp(dtype);
  const cpu = await makeCpu('faster than the software GPU adapter').ready();
  await cpu.merge(op); // starts the worker threads
  const cpuMs = await timeMerge(cpu, op, 3);
  let gpuMs: number;
  try {
    await gpu.merge(op); // compiles the pipeline
    gpuMs = await timeMerge(gpu, op, 3, 2 * cpuMs);
  } catch (e) {
    gpu.dispose();
    cpu.note(`the software GPU failed a test merge: ${(e as Error).message}`);
    return cpu;
  }
  const timing = `test merge: software GPU ${gpuMs.toFixed(1)} ms, CPU ${cpuMs.toFixed(1)} ms on a ${dtype} slab`;
  if (gpuMs < cpuMs) {
    cpu.dispose();
    gpu.note(`chosen over the CPU, ${timing}`);
    return gpu;
  }
  gpu.dispose();
  cpu.note(timing);
  return cpu;
}
