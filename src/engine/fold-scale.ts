/**
 * One pass of low-rank terms followed by a fixed scale along one axis, (W + Σ s·B·A) ⊙ f, is the
 * plain op W⊙f + Σ s·(B·A)⊙f with f folded into W (as f32) and into one factor of each term:
 * (B·A)⊙f = (diag(f)·B)·A along `out`, B·(A·diag(f)) along `in`. Kernels that only know
 * W + L·R run it as they are, in f32 (one more f32 rounding of each product than the unfused form).
 */
import { decodeToF32, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes, LowRankTerm, MergeOp } from './merge-op.js';
import { opSteps, storedAxis, type ScaleStep } from './update-steps.js';

const bytes = (x: Float32Array): FloatTensorBytes => ({ dtype: 'F32', data: new Uint8Array(x.buffer, x.byteOffset, x.byteLength) });

/** Folded terms per scale step and term list: the slabs of one tensor share both, so fold once. */
const foldedTerms = new WeakMap<ScaleStep, { terms: readonly LowRankTerm[]; folded: LowRankTerm[] }>();

/** The plain op, or undefined when the op is not terms-then-scale. */
export function foldTrailingScale(op: MergeOp): MergeOp | undefined {
  const steps = opSteps(op);
  const scale = steps[steps.length - 1];
  if (scale?.kind !== 'scale') return undefined;
  const add = steps.length === 2 ? steps[0] : undefined;
  if (steps.length > 2 || (add && (add.kind !== 'add' || add.dense?.length))) return undefined;
  const terms = add?.kind === 'add' ? add.terms : [];
  // B's rows are ΔW's; with a row placement they are not W's output rows.
  if (scale.axis === 'out' && terms.some((t) => t.placement)) return undefined;
  const f = decodeToF32(scale.factors.data, scale.factors.dtype);
  const outF = op.layout === 'out-in' ? op.rows : op.cols;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;

  let cached = foldedTerms.get(scale);
  if (!cached || cached.terms !== terms) {
    // A derived term's float64 values (LowRankTerm.exact) are not folded: the folded term is its f32 bytes alone.
    const folded = terms.map(({ exact: _exact, ...t }): LowRankTerm => {
      if (scale.axis === 'in') {
        const a = Float32Array.from(decodeToF32(t.a.data, t.a.dtype));
        for (let k = 0; k < t.rank; k++) for (let i = 0; i < inF; i++) a[k * inF + i] *= f[i];
        return { ...t, a: bytes(a) };
      }
      const b = Float32Array.from(decodeToF32(t.b.data, t.b.dtype));
      for (let o = 0; o < outF; o++) for (let k = 0; k < t.rank; k++) b[o * t.rank + k] *= f[o];
      return { ...t, b: bytes(b) };
    });
    cached = { terms, folded };
    foldedTerms.set(scale, cached);
  }

  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? op.rows - rowStart;
  const w = Float32Array.from(decodeToF32(op.base.data, op.base.dtype));
  const cols = op.cols;
  if (storedAxis(op, scale.axis) === 'row') {
    for (let r = 0; r < rowCount; r++) for (let c = 0, s = f[rowStart + r]; c < cols; c++) w[r * cols + c] *= s;
  } else {
    for (let r = 0; r < rowCount; r++) for (let c = 0; c < cols; c++) w[r * cols + c] *= f[c];
  }
  const base: { dtype: FloatDType; data: Uint8Array } = bytes(w);
  return { ...op, base, terms: cached.folded, dora: undefined, steps: undefined };
}
