/**
 * A merge backend for Node: Dawn's WebGPU where asked for or available, else the CPU, whose WASM
 * kernel runs on one worker thread per core, at most 8.
 */
import { createBackend } from './create-backend.js';
import { createCpuWorkerPool } from './cpu/cpu-worker-pool.js';
import type { MergeBackend } from './merge-op.js';
import type { FloatDType } from '../dtype.js';
import { getNodeGpu, onlySoftwareVulkan } from './gpu/node-gpu.js';
import { cpus, hostname, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { badArgument, checkChoice, checkOptions, checkThreadCount } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import type { BackendChoice } from './backend-choice.js';
import { describeDecision } from './auto-choice.js';
import { decisionCacheMode, nodeDecisionStore } from './node-decision-store.js';
import { CpuBackend } from './cpu/cpu-backend.js';

/** Options of {@link createNodeBackend}. */
export interface NodeBackendOptions {
  /** The dtype of the weights to merge: where `auto` times both backends, on this dtype (default F16). */
  calibrationDtype?: FloatDType;
  /**
   * Threads of the CPU backend, the calling one included (default: one per core, at most 8).
   * Each worker thread holds its own V8 heap and WebAssembly memory, about 14 MiB: on many cores,
   * fewer threads bound the memory (8 of 16 merged as fast, with 110 MiB less, on one host).
   */
  threads?: number;
}

/** Dawn's version, in `auto`'s cache key. */
function dawnVersion(): string {
  try {
    return `webgpu ${(createRequire(import.meta.url)('webgpu/package.json') as { version: string }).version}`;
  } catch {
    return 'webgpu';
  }
}

/**
 * A merge backend for Node: `webgpu` (Dawn, from the optional `webgpu` package; fails saying why
 * when it cannot start), `cpu` (WebAssembly SIMD on one worker thread per core, at most 8), or `auto` (the
 * CPU where WebGPU could only run on a software adapter, decided without starting Dawn on Linux;
 * a discrete GPU; otherwise the faster on a test merge, timed once and kept in the user's cache
 * folder: node-decision-store.ts). Call dispose() when done.
 */
export async function createNodeBackend(kind: BackendChoice, options: NodeBackendOptions = {}): Promise<MergeBackend> {
  checkChoice('createNodeBackend: kind', kind, ['auto', 'webgpu', 'cpu']);
  if (kind === undefined) throw badArgument('createNodeBackend: kind must be auto, webgpu or cpu, not undefined');
  checkOptions('createNodeBackend options', options, ['calibrationDtype', 'threads']);
  checkThreadCount('createNodeBackend: threads', options.threads);
  const cpuPool = () => createCpuWorkerPool({ threads: options.threads });
  if (kind === 'cpu') return createBackend({ kind: 'cpu', cpuPool });
  if (kind === 'auto' && onlySoftwareVulkan()) {
    // No adapter to ask: Dawn would find only SwiftShader, which the rule sends to the CPU anyway.
    const cpu = new CpuBackend(describeDecision({ source: 'rule', reason: 'no hardware GPU driver on this machine, only a software adapter, which runs on the same cores, slower' }), { pool: cpuPool() });
    return cpu.ready();
  }
  // The Vulkan loader prints "XDG_RUNTIME_DIR is invalid" on servers without a login session.
  if (process.platform === 'linux' && !process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = tmpdir();
  let nodeGpu: Awaited<ReturnType<typeof getNodeGpu>>;
  try {
    nodeGpu = await getNodeGpu();
  } catch (e) {
    if (kind === 'webgpu') {
      throw new MergeError('GPU_UNAVAILABLE', `WebGPU for Node could not start: ${(e as Error).message}`);
    }
    return createBackend({ kind: 'cpu', cpuPool });
  }
  let backend: MergeBackend;
  try {
    backend = await createBackend({
      kind, gpu: nodeGpu.gpu, cpuPool, calibrationDtype: options.calibrationDtype,
      decisionStore: nodeDecisionStore(), decisionCache: decisionCacheMode(),
      machine: `${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}`, driver: dawnVersion(),
    });
  } catch (e) {
    nodeGpu.dispose();
    throw e;
  }
  if (backend.kind !== 'webgpu') {
    nodeGpu.dispose();
    return backend;
  }
  return releasingOnDispose(backend, () => nodeGpu.dispose());
}

/** The backend as it is, but dispose() also drops Dawn's instance, which keeps the process alive. */
function releasingOnDispose(backend: MergeBackend, release: () => void): MergeBackend {
  return {
    kind: backend.kind,
    get description() {
      return backend.description;
    },
    merge: (op, signal) => backend.merge(op, signal),
    columnSumsOfSquares: backend.columnSumsOfSquares && ((op, signal) => backend.columnSumsOfSquares!(op, signal)),
    dequantize: backend.dequantize && ((type, blocks, signal) => backend.dequantize!(type, blocks, signal)),
    encodeBlocks: backend.encodeBlocks && ((type, size, bytes, values, signal, weighted) => backend.encodeBlocks!(type, size, bytes, values, signal, weighted)),
    decodeRows: backend.decodeRows && ((source, r0, r1, signal, out) => backend.decodeRows!(source, r0, r1, signal, out)),
    fp8Maxima: backend.fp8Maxima && ((rows, signal) => backend.fp8Maxima!(rows, signal)),
    fp8Codes: backend.fp8Codes && ((rows, enc, signal) => backend.fp8Codes!(rows, enc, signal)),
    dispose() {
      backend.dispose();
      release();
    },
  };
}
