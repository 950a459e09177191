/**
 * The heavy steps of the adapter algebra, as one interface with a WebGPU and a CPU implementation.
 * Everything else (small decompositions, rank rules, merge rules) runs on the host in f64.
 *
 * A matrix used several times (ΔW in a randomized SVD's power iterations) is uploaded once as a
 * ResidentMatrix and multiplied from both sides:
 *   times(A, Y)  = A · Y    A: m × n resident, Y: n × l  → m × l  (tall-skinny product)
 *   timesT(A, Y) = Aᵀ · Y   A: m × n resident, Y: m × l  → n × l  (Gram when Y = A)
 * Both accumulate in f32. `signal`, where given, is checked between a product's blocks (the CPU's
 * row blocks, on its threads or on one; the GPU's slabs and submits), and cancels it with an
 * ABORTED MergeError.
 */
import type { Mat } from './matrix.js';

export interface ResidentMatrix {
  readonly rows: number;
  readonly cols: number;
  /** Frees the backend's copy (GPU buffers); idempotent. */
  release(): void;
}

export interface AlgebraBackend {
  readonly kind: 'webgpu' | 'cpu';
  readonly description: string;
  /** Copies `m` to where the products run; the caller may reuse `m` afterwards. */
  upload(m: Mat): Promise<ResidentMatrix>;
  times(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat>;
  timesT(a: ResidentMatrix, y: Mat, signal?: AbortSignal): Promise<Mat>;
  dispose(): void;
}

export function checkTimes(a: ResidentMatrix, y: Mat, transposed: boolean): void {
  const inner = transposed ? a.rows : a.cols;
  if (y.rows !== inner) {
    throw new RangeError(`cannot multiply ${transposed ? 'the transpose of ' : ''}a ${a.rows}×${a.cols} matrix by ${y.rows}×${y.cols}`);
  }
}
