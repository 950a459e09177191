/**
 * The adapter algebra's backend on Node: Dawn's WebGPU where asked for or present, else the CPU on
 * worker threads, as the CPU merge runs (one per core, at most 8). dispose() drops Dawn's instance,
 * which would keep the process alive, and stops the threads (an idle one keeps nothing alive).
 */
import { tmpdir } from 'node:os';
import { MergeError } from '../errors.js';
import { getNodeGpu, onlySoftwareVulkan } from '../engine/gpu/node-gpu.js';
import type { AlgebraBackend } from './algebra-backend.js';
import { createCpuWorkerPool } from '../engine/cpu/cpu-worker-pool.js';
import { CpuAlgebra } from './cpu-algebra.js';
import { createAlgebraBackend } from './create-algebra.js';

/**
 * The backend for `kind`; `threads` (checked by the caller), where given, is the CPU's thread count,
 * whether the CPU is chosen or runs the products the GPU cannot bind.
 */
export async function createNodeAlgebra(kind: 'auto' | 'webgpu' | 'cpu', options: { threads?: number } = {}): Promise<AlgebraBackend> {
  const cpu = () => nodeCpuAlgebra(options.threads);
  // `auto` takes the CPU over a software adapter: where Linux has only one, Dawn is not started.
  if (kind === 'cpu' || (kind === 'auto' && onlySoftwareVulkan())) return cpu();
  if (process.platform === 'linux' && !process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = tmpdir();
  let nodeGpu: Awaited<ReturnType<typeof getNodeGpu>>;
  try {
    nodeGpu = await getNodeGpu();
  } catch (e) {
    if (kind === 'webgpu') throw new MergeError('GPU_UNAVAILABLE', `WebGPU for Node could not start: ${(e as Error).message}`);
    return cpu();
  }
  let backend: AlgebraBackend;
  try {
    backend = await createAlgebraBackend(kind, nodeGpu.gpu, cpu);
  } catch (e) {
    nodeGpu.dispose();
    throw e;
  }
  if (backend.kind === 'cpu') {
    nodeGpu.dispose();
    return backend;
  }
  return {
    kind: backend.kind,
    get description() {
      return backend.description;
    },
    upload: (m) => backend.upload(m),
    times: (a, y, signal) => backend.times(a, y, signal),
    timesT: (a, y, signal) => backend.timesT(a, y, signal),
    dispose() {
      backend.dispose();
      nodeGpu.dispose();
    },
  };
}

/**
 * The CPU on Node's worker threads, `threads` of them with the calling one (default: one per core,
 * at most 8; 1: none). None from the TypeScript sources, which have no compiled worker script.
 */
export function nodeCpuAlgebra(threads?: number): CpuAlgebra {
  return new CpuAlgebra({ pool: createCpuWorkerPool(threads === undefined ? {} : { threads }) });
}
