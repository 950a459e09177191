/**
 * Turns an op's terms into one pair of f32 factors in W's stored orientation, so that every backend
 * computes W[r, c] += Σ_k left[r, k] · right[k, c] in a single pass over W:
 * - `out-in`: left = s·B (rows of the slab), right = A.
 * - `in-out`: left = Aᵀ (rows of the slab), right = s·Bᵀ.
 * The ranks of all terms are concatenated (k runs over every term's rank), scales folded in.
 *
 * A term with a row placement fills only the slab rows its segments reach, from the ΔW rows they
 * name; the other rows of its columns of `left` stay zero. A term none of whose segments reaches
 * the slab is left out altogether, so a slab of a fused qkv tensor pays only for the modules that
 * land on it.
 */
import { decodeToF32, DTYPE_BYTES } from '../dtype.js';
import type { LowRankTerm, MergeOp } from './merge-op.js';
import type { OpShape } from './op-shape.js';

export interface LowRankFactors {
  rank: number;
  /** rowCount × rank, row-major (rows of the slab only). */
  left: Float32Array;
  /** rank × cols, row-major. */
  right: Float32Array;
  /** Indices of the terms in `op.terms` that contribute, in order: `right` depends on nothing else. */
  activeTerms: readonly number[];
}

/** A term's factor values: its float64 ones where it carries them (LowRankTerm.exact), else its bytes decoded. */
export function termFactorValues(term: LowRankTerm, decode: (t: LowRankTerm['a']) => Float32Array = (t) => decodeToF32(t.data, t.dtype)):
  { a: Float32Array | Float64Array; b: Float32Array | Float64Array } {
  return term.exact ? { a: term.exact.a, b: term.exact.b } : { a: decode(term.a), b: decode(term.b) };
}

/** Does the term change any row in [rowStart, rowStart + rowCount)? */
export function termReachesRows(term: LowRankTerm, rowStart: number, rowCount: number): boolean {
  if (!term.placement) return true;
  return term.placement.segments.some((g) => g.dst < rowStart + rowCount && g.dst + g.count > rowStart);
}

/** `terms` defaults to the op's own (its first additive pass); later add steps pass theirs. */
export function lowRankFactors(op: MergeOp, shape: OpShape, terms: readonly LowRankTerm[] = op.terms): LowRankFactors {
  const { rowStart, rowCount } = shape;
  const cols = op.cols;
  const activeTerms: number[] = [];
  let rank = 0;
  terms.forEach((term, t) => {
    if (termReachesRows(term, rowStart, rowCount)) {
      activeTerms.push(t);
      rank += term.rank;
    }
  });
  const left = new Float32Array(rowCount * rank);
  const right = new Float32Array(rank * cols);
  let k0 = 0;
  for (const t of activeTerms) {
    const term = terms[t];
    const a = decodeToF32(term.a.data, term.a.dtype);
    const b = decodeToF32(term.b.data, term.b.dtype);
    const r = term.rank;
    const s = term.scale;
    if (op.layout === 'out-in') {
      // B is (ΔW rows × r): each slab row takes its ΔW row, scaled. A is (r × cols) as is.
      const copyRow = (slabRow: number, deltaRow: number) => {
        const src = deltaRow * r;
        const dst = slabRow * rank + k0;
        for (let k = 0; k < r; k++) left[dst + k] = s * b[src + k];
      };
      if (term.placement) {
        for (const g of term.placement.segments) {
          const from = Math.max(g.dst, rowStart);
          const to = Math.min(g.dst + g.count, rowStart + rowCount);
          for (let row = from; row < to; row++) copyRow(row - rowStart, g.src + row - g.dst);
        }
      } else {
        for (let i = 0; i < rowCount; i++) copyRow(i, rowStart + i);
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
  return { rank, left, right, activeTerms };
}

/**
 * W′ with the rows of the op's slab that nothing changes set back to W's own values, where W′ is in
 * W's dtype (or f32, from f16 or bf16): the rows no term's placement reaches of an op that is those terms alone (no DoRA, no
 * further step), or, where the caller knows them (`reached`, one flag per row of the whole
 * tensor: dense rows placed on part of it), the rows it says. A placement leaves those rows as the
 * tool that merges the module leaves them (its slice of a fused tensor, one expert's slab); the
 * kernels add zero there, which keeps every value but turns −0 into +0 (a dequantized gpt-oss
 * holds many). Returns `merged`, changed in place.
 */
export function keepUnreachedRows(op: MergeOp, merged: Uint8Array, reached?: Uint8Array): Uint8Array {
  // W's bytes as they are, or, written as f32, its f16 or bf16 values (exact in f32).
  const widened = op.outDtype === 'F32' && (op.base.dtype === 'F16' || op.base.dtype === 'BF16');
  if ((op.base.dtype !== op.outDtype && !widened) || op.layout !== 'out-in') return merged;
  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? op.rows;
  let mine = reached?.subarray(rowStart, rowStart + rowCount);
  if (!mine) {
    if (op.dora || op.steps?.length || op.terms.some((t) => !t.placement)) return merged;
    const own = new Uint8Array(rowCount);
    for (const term of op.terms) {
      for (const g of term.placement!.segments) {
        const from = Math.max(g.dst, rowStart), to = Math.min(g.dst + g.count, rowStart + rowCount);
        if (from < to) own.fill(1, from - rowStart, to - rowStart);
      }
    }
    mine = own;
  }
  const rowBytes = op.cols * DTYPE_BYTES[op.outDtype];
  for (let r = 0; r < rowCount; r++) {
    if (mine[r]) continue;
    let end = r + 1;
    while (end < rowCount && !mine[end]) end++;
    if (widened) {
      const inBytes = op.cols * DTYPE_BYTES[op.base.dtype];
      const values = decodeToF32(op.base.data.subarray(r * inBytes, end * inBytes), op.base.dtype);
      merged.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), r * rowBytes);
    } else merged.set(op.base.data.subarray(r * rowBytes, end * rowBytes), r * rowBytes);
    r = end;
  }
  return merged;
}
