/**
 * Picks the backend that runs the merge. `webgpu` insists on a GPU; `cpu` never touches one; `auto`
 * decides by rule where the adapter makes the answer clear (none or a software one: the CPU; a
 * discrete card: the GPU; auto-choice.ts), and otherwise times a small merge on both once per
 * machine, adapter and driver, keeping the answer in a cache (backend-decision-cache.ts).
 */
import { DTYPE_BYTES, encodeFromF32, type FloatDType } from '../dtype.js';
import { badArgument, checkCallback, checkChoice, checkOptions, checkPositiveInteger, shown } from '../api-arguments.js';
import type { MergeBackend, MergeOp } from './merge-op.js';
import { CpuBackend, type CpuMergePool } from './cpu/cpu-backend.js';
import { getBrowserGpu, webGpuUnavailable } from './gpu/browser-gpu.js';
import { requestAdapter, requestMergeDevice, type GpuLimitCaps } from './gpu/gpu-device.js';
import { WebGpuBackend } from './gpu/webgpu-backend.js';
import { adapterFactsOf, decideByRule, describeDecision, decisionKey, dtypeClass, type AutoDecision } from './auto-choice.js';
import {
  localStorageDecisionStore, readDecision, writeDecision, type DecisionCacheMode, type DecisionStore,
} from './backend-decision-cache.js';
import { VERSION } from '../version.js';

/** Options of {@link createBackend}. */
export interface BackendOptions {
  /** `webgpu` insists on a GPU, `cpu` never touches one, `auto` (default) picks as described above. */
  kind?: 'auto' | 'webgpu' | 'cpu';
  /** WebGPU entry point; defaults to `navigator.gpu` (in Node, pass `(await getNodeGpu()).gpu`). */
  gpu?: GPU;
  /** Caps on what the engine uses of the device (the rest is tiled). */
  limits?: GpuLimitCaps;
  /**
   * Worker threads for the CPU backend (Node: createCpuWorkerPool), made if the CPU is chosen or
   * with a WebGPU backend, for what the GPU leaves to the CPU (its description says how many
   * threads; a pool starts them only when work needs them). Without it the CPU runs on the calling thread.
   */
  cpuPool?: () => CpuMergePool | undefined;
  /** The dtype of the weights to merge, for timing the backends like with like (default F16). */
  calibrationDtype?: FloatDType;
  /** Where `auto` keeps what it timed (default: localStorage where the context has it, else nowhere). */
  decisionStore?: DecisionStore;
  /** `use` (default) the kept decision, `refresh` it (time again), or leave the cache `off`. */
  decisionCache?: DecisionCacheMode;
  /** The machine, in the cache key (default: the browser's cores and user agent). */
  machine?: string;
  /** The WebGPU implementation's version, in the cache key (the adapter's own driver text is in it already). */
  driver?: string;
}

/** A WebGPU backend on `gpu`'s adapter, or a GPU_UNAVAILABLE MergeError saying why not. */
export async function createWebGpuBackend(gpu: GPU | undefined, limits?: GpuLimitCaps, cpuPool?: () => CpuMergePool | undefined): Promise<WebGpuBackend> {
  if (!gpu) throw webGpuUnavailable();
  const adapter = await requestAdapter(gpu);
  // What the GPU does not run (f32 outputs, DoRA, update steps) goes to the CPU, with its threads.
  const cpu = () => new CpuBackend('for what the GPU does not run', { pool: cpuPool?.() });
  return new WebGpuBackend(await requestMergeDevice(adapter, limits), { cpu });
}

const BACKEND_OPTIONS = ['kind', 'gpu', 'limits', 'cpuPool', 'calibrationDtype', 'decisionStore', 'decisionCache', 'machine', 'driver'] as const;

/**
 * The backend that runs merges: see the module comment for how `auto` chooses. Dispose of it when
 * done (an undisposed one does not keep Node running, but holds its GPU device or threads). An
 * unknown option name or a `kind` other than auto, webgpu and cpu is a BAD_ARGUMENT MergeError.
 */
export async function createBackend(options: BackendOptions = {}): Promise<MergeBackend> {
  if (typeof options === 'string') throw badArgument(`createBackend takes an object of options: createBackend({ kind: ${JSON.stringify(options)} })`);
  checkOptions('createBackend options', options, BACKEND_OPTIONS, { backend: 'did you mean "kind"?', type: 'did you mean "kind"?' });
  checkChoice('createBackend: kind', options.kind, ['auto', 'webgpu', 'cpu']);
  checkChoice('createBackend: decisionCache', options.decisionCache, ['use', 'refresh', 'off']);
  checkCallback('createBackend: cpuPool', options.cpuPool);
  checkBackendObjects(options);
  const kind = options.kind ?? 'auto';
  const cpu = (reason: string) => new CpuBackend(reason, { pool: options.cpuPool?.() });
  if (kind === 'cpu') return cpu('requested').ready();
  const gpu = options.gpu ?? getBrowserGpu();
  if (kind === 'webgpu') return createWebGpuBackend(gpu, options.limits, options.cpuPool);
  return createAutoBackend(gpu, options, cpu);
}

const LIMIT_NAMES = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension'] as const;

/** The options that are objects or strings: refused here rather than failing deep in a GPU call. */
function checkBackendObjects(options: BackendOptions): void {
  const hasMethods = (x: unknown, ...names: string[]) => typeof x === 'object' && x !== null && names.every((n) => typeof (x as Record<string, unknown>)[n] === 'function');
  if (options.gpu !== undefined && !hasMethods(options.gpu, 'requestAdapter')) {
    throw badArgument(`createBackend: gpu must be a WebGPU entry point (navigator.gpu, or (await getNodeGpu()).gpu), not ${shown(options.gpu)}`);
  }
  if (options.limits !== undefined) {
    checkOptions('createBackend: limits', options.limits, LIMIT_NAMES);
    for (const name of LIMIT_NAMES) checkPositiveInteger(`createBackend: limits.${name}`, options.limits[name]);
  }
  if (options.decisionStore !== undefined && !hasMethods(options.decisionStore, 'load', 'save')) {
    throw badArgument(`createBackend: decisionStore must be an object with load() and save(text), not ${shown(options.decisionStore)}`);
  }
  checkChoice('createBackend: calibrationDtype', options.calibrationDtype, ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);
  for (const name of ['machine', 'driver'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'string') throw badArgument(`createBackend: ${name} must be a string, not ${shown(options[name])}`);
  }
}

async function createAutoBackend(gpu: GPU | undefined, options: BackendOptions,
  cpu: (reason: string) => CpuBackend): Promise<MergeBackend> {
  const chosenCpu = (d: Omit<AutoDecision, 'backend'>) => cpu(describeDecision(d)).ready();
  if (!gpu) return chosenCpu({ source: 'rule', ...decideByRule(undefined)! });
  let adapter: GPUAdapter;
  try {
    adapter = await requestAdapter(gpu);
  } catch (e) {
    return chosenCpu({ source: 'rule', reason: `no usable GPU: ${(e as Error).message}` });
  }
  const facts = adapterFactsOf(adapter);
  const openGpu = async (): Promise<WebGpuBackend> =>
    new WebGpuBackend(await requestMergeDevice(adapter, options.limits), { cpu: () => new CpuBackend('for what the GPU does not run', { pool: options.cpuPool?.() }) });
  /** The GPU as decided, or the CPU saying why the GPU could not open. */
  const chosenGpu = async (d: Omit<AutoDecision, 'backend'>): Promise<MergeBackend> => {
    let backend: WebGpuBackend;
    try {
      backend = await openGpu();
    } catch (e) {
      return chosenCpu({ source: d.source, reason: `no usable GPU: ${(e as Error).message}` });
    }
    backend.note(describeDecision(d));
    return backend;
  };

  const rule = decideByRule(facts);
  if (rule) return rule.backend === 'cpu' ? chosenCpu({ source: 'rule', reason: rule.reason }) : chosenGpu({ source: 'rule', reason: rule.reason });

  const dtype = options.calibrationDtype ?? 'F16';
  const mode = options.decisionCache ?? 'use';
  const store = mode === 'off' ? undefined : options.decisionStore ?? localStorageDecisionStore();
  const key = decisionKey({ machine: options.machine ?? browserMachine(), adapter: facts, driver: options.driver ?? '', version: VERSION, dtype });
  if (store && mode === 'use') {
    const cached = await readDecision(store, key);
    if (cached) {
      const d = { source: 'cache' as const, reason: `timed ${new Date(cached.at).toISOString().slice(0, 10)}: GPU ${cached.gpuMs.toFixed(1)} ms, CPU ${cached.cpuMs.toFixed(1)} ms on a ${dtypeClass(dtype)} slab` };
      return cached.backend === 'cpu' ? chosenCpu(d) : chosenGpu(d);
    }
  }
  let gpuBackend: WebGpuBackend;
  try {
    gpuBackend = await openGpu();
  } catch (e) {
    return chosenCpu({ source: 'rule', reason: `no usable GPU: ${(e as Error).message}` });
  }
  const timed = await pickFaster(gpuBackend, cpu, dtype);
  if (store && timed.cpuMs !== undefined && timed.gpuMs !== undefined) {
    await writeDecision(store, key, { backend: timed.backend.kind === 'webgpu' ? 'webgpu' : 'cpu', cpuMs: timed.cpuMs, gpuMs: timed.gpuMs, at: Date.now() });
  }
  return timed.backend;
}

/** The machine part of a page's cache key: what the browser says of its cores and itself. */
function browserMachine(): string {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number; userAgent?: string } }).navigator;
  return `${nav?.hardwareConcurrency ?? '?'} cores, ${nav?.userAgent ?? 'unknown agent'}`;
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
 * Times the calibration op on the CPU and on the GPU exactly as the merge would run them
 * (the CPU backend with its worker threads, each backend warmed up first), keeps the faster. A GPU
 * more than twice as slow as the CPU is not timed again: the choice is clear, and it keeps
 * calibration well under a second.
 */
async function pickFaster(gpu: WebGpuBackend, makeCpu: (reason: string) => CpuBackend,
  dtype: FloatDType): Promise<{ backend: MergeBackend; cpuMs?: number; gpuMs?: number }> {
  const op = calibrationOp(dtype);
  const cpu = await makeCpu('auto').ready();
  await cpu.merge(op); // starts the worker threads
  const cpuMs = await timeMerge(cpu, op, 3);
  let gpuMs: number;
  try {
    await gpu.merge(op); // compiles the pipeline
    gpuMs = await timeMerge(gpu, op, 3, 2 * cpuMs);
  } catch (e) {
    gpu.dispose();
    cpu.note(describeDecision({ source: 'timing', reason: `the GPU failed a test merge: ${(e as Error).message}` }));
    return { backend: cpu };
  }
  const timing = describeDecision({ source: 'timing', reason: `test merge: GPU ${gpuMs.toFixed(1)} ms, CPU ${cpuMs.toFixed(1)} ms on a ${dtype} slab` });
  if (gpuMs < cpuMs) {
    cpu.dispose();
    gpu.note(timing);
    return { backend: gpu, cpuMs, gpuMs };
  }
  gpu.dispose();
  cpu.note(timing);
  return { backend: cpu, cpuMs, gpuMs };
}
