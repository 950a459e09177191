/**
 * Rows of an op with general update steps (cpu-steps.ts) as an op of their own, for the worker
 * pool: every step but a DoRA with norms across rows (resolved beforehand, column-norms.ts) works
 * row by row, or on whole blocks of rows that a cut on the op's row granule keeps together, so
 * the rows' outputs are the same bytes whichever thread runs them. Browser-safe.
 */
import { DTYPE_BYTES } from '../../dtype.js';
import { isMergeError } from '../../errors.js';
import { newStats } from '../exact/recompute.js';
import { mergeStepsOnCpu, stepValues } from './cpu-steps.js';
import type { FloatTensorBytes, MergeOp } from '../merge-op.js';
import { checkOp as checkOpShape, type OpShape } from '../op-shape.js';
import { needsColumnNorms, rowGranule, type UpdateStep } from '../update-steps.js';

/** Whether the op's rows may be cut (no step needs norms across its rows). */
export function rowsSeparable(op: MergeOp, shape: OpShape): boolean {
  return shape.doraNorm !== 'col' && !shape.steps.some((s) => needsColumnNorms(op, s));
}

/** Rows a cut must start on. */
export function stepRowGranule(op: MergeOp, shape: OpShape): number {
  return rowGranule(op, shape.steps);
}

/**
 * Rows [r0, r0 + n) of the op (r0 counted from its first row), in the explicit steps form. The
 * slab-sized tensors (W, dense terms) are cut; the rest is copied out of whatever buffer it sits
 * in, so that posting the op to a thread copies only what it needs.
 */
export function opRows(op: MergeOp, shape: OpShape, r0: number, n: number): MergeOp {
  const rowBytes = (t: FloatTensorBytes) => op.cols * DTYPE_BYTES[t.dtype];
  const cut = (t: FloatTensorBytes): FloatTensorBytes => ({ dtype: t.dtype, data: t.data.slice(r0 * rowBytes(t), (r0 + n) * rowBytes(t)) });
  const own = (t: FloatTensorBytes): FloatTensorBytes => ({ dtype: t.dtype, data: t.data.slice() });
  const steps = shape.steps.map((s): UpdateStep => {
    switch (s.kind) {
      case 'add':
        return {
          kind: 'add',
          terms: s.terms.map((t) => ({ ...t, a: own(t.a), b: own(t.b) })),
          ...(s.dense ? { dense: s.dense.map((d) => (d.exact ? { scale: d.scale, exact: d.exact.slice(r0 * op.cols, (r0 + n) * op.cols) } : { scale: d.scale, values: cut(d.values) })) } : {}),
        };
      case 'dora':
        return { kind: 'dora', dora: { ...s.dora, magnitude: own(s.dora.magnitude) } };
      case 'scale':
        return { ...s, factors: own(s.factors), ...(s.exact ? { exact: s.exact.slice() } : {}) };
      case 'self':
        return { ...s, p: own(s.p), q: own(s.q) };
      case 'hadamard':
        return { ...s, a: own(s.a), b: own(s.b) };
      case 'tiles':
        return { ...s, blocks: own(s.blocks) };
      case 'rotate':
        return { ...s, blocks: own(s.blocks) };
      case 'permuted-blocks':
        return { ...s, blocks: own(s.blocks), ...(s.gather ? { gather: s.gather.slice() } : {}) };
    }
  });
  return {
    name: op.name, rows: op.rows, cols: op.cols, layout: op.layout, outDtype: op.outDtype,
    base: cut(op.base), rowStart: shape.rowStart + r0, rowCount: n, terms: [], steps,
  };
}

/** What a piece gives: W′ bytes (none where they are not finite) or V (f64), and the elements computed exactly. */
export interface StepsResult {
  out?: Uint8Array;
  values?: Float64Array;
  exact: number;
}

/** Runs a piece on this thread: merged (`merge`) or V after every step (`values`). */
export function runStepsPiece(op: MergeOp, want: 'merge' | 'values'): StepsResult {
  if (want === 'values') return { values: stepValues(op, checkOpShape(op)), exact: 0 };
  const stats = newStats();
  try {
    return { out: mergeStepsOnCpu(op, undefined, stats), exact: stats.exact };
  } catch (e) {
    // The caller names the whole op in the same error.
    if (isMergeError(e) && e.code === 'NON_FINITE') return { exact: stats.exact };
    throw e;
  }
}
