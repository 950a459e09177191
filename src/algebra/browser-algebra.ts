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
 * the default count. The pool is made for the CPU, chosen or beside a GPU for the products it
 * cannot bind (GpuAlgebra says its count), and starts a thread only when a product needs one;
 * the backend's dispose() stops it.
 */
export function createBrowserAlgebra(kind: 'auto' | 'webgpu' | 'cpu', gpu: GPU | undefined, threads?: number): Promise<AlgebraBackend> {
  return createAlgebraBackend(kind, gpu, () => {
    const cpu = browserCpuThreads(threads === undefined ? undefined : { threads });
    return new CpuAlgebra({ pool: cpu.pool?.(), noThreads: cpu.lost });
  });
}
