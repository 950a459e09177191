/**
 * Orthonormal bases of tall-skinny matrices by their Gram matrices, twice over (CholeskyQR2 with an
 * eigendecomposition in place of the Cholesky factor, so rank-deficient inputs are fine):
 *   G = XᵀX (on the backend, f32),  G = V Λ Vᵀ (host, f64),  Q₁ = X · V Λ^-½,  R₁ = Λ^½ Vᵀ,
 * then the same on Q₁, whose Gram is close to I, which makes Q orthonormal to f32 accuracy. The
 * product Q·R equals X to f32 accuracy whatever X's condition; directions whose eigenvalue falls
 * below λ_max·1e-11 (σ below 3·10⁻⁶ σ_max) are dropped, so Q may have fewer columns than X.
 */
import type { AlgebraBackend } from './algebra-backend.js';
import { multiply64, toF64, type Mat, type Mat64 } from './matrix.js';
import { smallSvd } from './small-svd.js';

export interface Orthonormal {
  /** m × k, orthonormal columns. */
  q: Mat;
  /** k × cols: x ≈ q · r. */
  r: Mat64;
}

const RELATIVE_EIGEN_FLOOR = 1e-11;

/** `signal` goes to the backend's products (a tall X's Gram and Q run for seconds on one thread). */
export async function orthonormalize(backend: AlgebraBackend, x: Mat, signal?: AbortSignal): Promise<Orthonormal> {
  const first = await pass(backend, x, signal);
  if (first.q.cols === 0) return first;
  const second = await pass(backend, first.q, signal);
  return { q: second.q, r: multiply64(second.r, first.r) };
}

async function pass(backend: AlgebraBackend, x: Mat, signal: AbortSignal | undefined): Promise<Orthonormal> {
  const resident = await backend.upload(x);
  try {
    const gram = toF64(await backend.timesT(resident, x, signal));
    symmetrize(gram);
    const { s: lambda, v } = smallSvd(gram);
    const floor = lambda[0] * RELATIVE_EIGEN_FLOOR;
    let k = 0;
    while (k < lambda.length && lambda[k] > floor && lambda[k] > 0) k++;
    const n = x.cols;
    const scale = new Float32Array(n * k);
    const r = new Float64Array(k * n);
    for (let j = 0; j < k; j++) {
      const root = Math.sqrt(lambda[j]);
      for (let i = 0; i < n; i++) {
        scale[i * k + j] = v.data[i * v.cols + j] / root;
        r[j * n + i] = root * v.data[i * v.cols + j];
      }
    }
    const q = k === 0 ? { rows: x.rows, cols: 0, data: new Float32Array(0) } : await backend.times(resident, { rows: n, cols: k, data: scale }, signal);
    return { q, r: { rows: k, cols: n, data: r } };
  } finally {
    resident.release();
  }
}

function symmetrize(g: Mat64): void {
  const n = g.rows;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const avg = 0.5 * (g.data[i * n + j] + g.data[j * n + i]);
      g.data[i * n + j] = avg;
      g.data[j * n + i] = avg;
    }
  }
}
