/**
 * A merge backend for Node: Dawn's WebGPU where asked for or available, else the CPU, whose WASM
 * kernel runs on one worker thread per core.
 */
import { createBackend } from './create-backend.js';
import { createCpuWorkerPool } from './cpu/cpu-worker-pool.js';
import type { MergeBackend } from './merge-op.js';
import type { FloatDType } from '../dtype.js';
import { getNodeGpu } from './gpu/node-gpu.js';
import { tmpdir } from 'node:os';
import { MergeError } from '../errors.js';
import type { BackendChoice } from './backend-choice.js';

/** Options of {@link createNodeBackend}. */
export interface NodeBackendOptions {
  /** The dtype of the weights to merge: `auto` times both backends on it (default F16). */
  calibrationDtype?: FloatDType;
}

/**
 * A merge backend for Node: `webgpu` (Dawn, from the optional `webgpu` package; fails saying why
 * when it cannot start), `cpu` (WebAssembly SIMD on one worker thread per core), or `auto` (a real
 * GPU when there is one; on a software adapter the faster of the two on a test merge; the CPU when
 * `webgpu` is not installed). Call dispose() when done.
 */
export async function createNodeBackend(kind: BackendChoice, options: NodeBackendOptions = {}): Promise<MergeBackend> {
  const cpuPool = () => createCpuWorkerPool();
  if (kind === 'cpu') return createBackend({ kind: 'cpu', cpuPool });
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
    backend = await createBackend({ kind, gpu: nodeGpu.gpu, cpuPool, calibrationDtype: options.calibrationDtype });
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
    encodeBlocks: backend.encodeBlocks && ((type, size, bytes, values, signal) => backend.encodeBlocks!(type, size, bytes, values, signal)),
    dispose() {
      backend.dispose();
      release();
    },
  };
}
