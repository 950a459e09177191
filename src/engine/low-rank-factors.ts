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
import { decodeToF32, DTYPE_BYTES, type FloatDType } from '../dtype.js';
import type { UpdateStep } from './update-steps.js';
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
 * holds many). Where W′ is in another dtype than W (a narrower one, or fp8 codes seen through a
 * scale step by positive scales, `reached` given), the kernels' values there are W rounded once
 * (or code × scale), right but for the sign of a zero: there each −0 of W is written −0, as
 * PyTorch keeps it through a cast (`.to(torch.bfloat16)`) and a product by a positive scale.
 * Returns `merged`, changed in place.
 */
export function keepUnreachedRows(op: MergeOp, merged: Uint8Array, reached?: Uint8Array): Uint8Array {
  if (op.layout !== 'out-in') return merged;
  // W's bytes as they are, or, written as f32, its f16 or bf16 values (exact in f32).
  const widened = op.outDtype === 'F32' && (op.base.dtype === 'F16' || op.base.dtype === 'BF16');
  const steps = op.steps ?? [];
  const scales = steps.filter((s) => s.kind === 'scale');
  // Only the zeros' signs are put back: W′ is in another dtype, or W's values are codes × scales
  // (then the caller says which rows the additive terms reach, and nothing else may change them).
  const signsOnly = scales.length > 0 || (op.base.dtype !== op.outDtype && !widened);
  if (scales.length > 0 && (!reached || op.dora || steps.some((s) => s.kind !== 'scale' && s.kind !== 'add') || !scales.every(positiveFactors))) return merged;
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
    if (signsOnly) negativeZeros(op, merged, r, end);
    else if (widened) {
      const inBytes = op.cols * DTYPE_BYTES[op.base.dtype];
      const values = decodeToF32(op.base.data.subarray(r * inBytes, end * inBytes), op.base.dtype);
      merged.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), r * rowBytes);
    } else merged.set(op.base.data.subarray(r * rowBytes, end * rowBytes), r * rowBytes);
    r = end;
  }
  return merged;
}

/** Every factor of a scale step is +0 or above (−0 × f is then −0). */
function positiveFactors(step: UpdateStep): boolean {
  if (step.kind !== 'scale') return false;
  const f = step.exact ?? decodeToF32(step.factors.data, step.factors.dtype as FloatDType);
  for (let i = 0; i < f.length; i++) if (!(f[i] >= 0) || Object.is(f[i], -0)) return false;
  return true;
}

/**
 * Rows [r0, r1) of the slab: where W holds −0 and W′ a zero, W′ gets −0. Every float dtype's −0
 * is its sign bit alone (the last byte 0x80, little-endian), fp8's included.
 */
function negativeZeros(op: MergeOp, merged: Uint8Array, r0: number, r1: number): void {
  const ib = DTYPE_BYTES[op.base.dtype], ob = DTYPE_BYTES[op.outDtype];
  const w = op.base.data;
  const isZero = (bytes: Uint8Array, at: number, n: number, sign: number) => {
    if ((bytes[at + n - 1] & 0x7f) !== 0 || (bytes[at + n - 1] & 0x80) !== sign) return false;
    for (let b = 0; b < n - 1; b++) if (bytes[at + b] !== 0) return false;
    return true;
  };
  for (let i = r0 * op.cols; i < r1 * op.cols; i++) {
    if (w[i * ib + ib - 1] === 0x80 && isZero(w, i * ib, ib, 0x80) && isZero(merged, i * ob, ob, 0)) merged[i * ob + ob - 1] = 0x80;
  }
}
