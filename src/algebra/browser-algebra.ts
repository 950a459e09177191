/**
 * The adapter algebra's backend for the browser entry's jobs: createAlgebraBackend's choice, its
 * CPU on Web Workers sharing memory wherever merge() would have them (browserCpuThreads: a
 * cross-origin isolated page or worker), else on one thread, its description saying why.
 */
import { browserCpuThreads } from '../engine/browser-backend.js';
import type { AlgebraBackend } from './algebra-backend.js';
import { CpuAlgebra } from './cpu-algebra.js';
import { createAlgebraBackend } from './create-algebra.js';

/**
 * The backend for `kind`, its CPU on `threads` Web Workers where given (checked by the caller), else
 * the default count. A pool is started only for the CPU: chosen, or running the products a GPU
 * cannot bind (GpuAlgebra makes it on the first); the backend's dispose() stops it.
 */
export function createBrowserAlgebra(kind: 'auto' | 'webgpu' | 'cpu', gpu: GPU | undefined, threads?: number): Promise<AlgebraBackend> {
  return createAlgebraBackend(kind, gpu, () => {
    const cpu = browserCpuThreads(threads === undefined ? undefined : { threads });
    return new CpuAlgebra({ pool: cpu.pool?.(), noThreads: cpu.lost });
  });
}
