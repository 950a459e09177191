/**
 * Turns an op's terms into one pair of f32 factors in W's stored orientation, so that every backend
 * computes W[r, c] += Σ_k left[r, k] · right[k, c] in a single pass over W:
 * - `out-in`: left = s·B (rows of the slab), right = A.
 * - `in-out`: left = Aᵀ (rows of the slab), right = s·Bᵀ.
 * The ranks of all terms are concatenated (k runs over every term's rank), scales folded in.
 */
import { decodeToF32 } from '../dtype.js';
import type { LowRankTerm, MergeOp } from './merge-op.js';
import type { OpShape } from './op-shape.js';

export interface LowRankFactors {
  rank: number;
  /** rowCount × rank, row-major (rows of the slab only). */
  left: Float32Array;
  /** rank × cols, row-major. */
  right: Float32Array;
}

/** `terms` defaults to the op's own (its first additive pass); later add steps pass theirs. */
export function lowRankFactors(op: MergeOp, shape: OpShape, terms: readonly LowRankTerm[] = op.terms): LowRankFactors {
  const { rowStart, rowCount } = shape;
  const rank = terms.reduce((n, t) => n + t.rank, 0);
  const cols = op.cols;
  const left = new Float32Array(rowCount * rank);
  const right = new Float32Array(rank * cols);
  let k0 = 0;
  for (const term of terms) {
    const a = decodeToF32(term.a.data, term.a.dtype);
    const b = decodeToF32(term.b.data, term.b.dtype);
    const r = term.rank;
    const s = term.scale;
    if (op.layout === 'out-in') {
      // B is (rows × r): take the slab's rows, scaled. A is (r × cols) as is.
      for (let i = 0; i < rowCount; i++) {
        const src = (rowStart + i) * r;
        const dst = i * rank + k0;
        for (let k = 0; k < r; k++) left[dst + k] = s * b[src + k];
      }
      right.set(a, k0 * cols);
    } else {
      // A is (r × rows): its transpose gives the slab's left factor. B is (cols × r): transpose, scale.
      const inF = op.rows;
      for (let i = 0; i < rowCount; i++) {
        const dst = i * rank + k0;
        for (let k = 0; k < r; k++) left[dst + k] = a[k * inF + rowStart + i];
      }
      for (let k = 0; k < r; k++) {
        const dst = (k0 + k) * cols;
        for (let c = 0; c < cols; c++) right[dst + c] = s * b[c * r + k];
      }
    }
    k0 += r;
  }
  return { rank, left, right };
}
