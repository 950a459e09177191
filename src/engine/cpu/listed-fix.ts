/**
 * The listed elements of a pooled merge block settled on the worker that ran the block, rather
 * than on the calling thread when the block comes back. A kernel lists the elements whose rounding
 * it cannot vouch for; each is recomputed in float64 and, where that cannot decide either,
 * exactly (exact/recompute.ts). Merges into fp8 codes × f32 scales plus a bf16 LoRA, written f32
 * (then quantized again to fp8), hit exact ties often: about 8 % of the elements of a FLUX-shaped
 * fp8mixed base with a rank-16 LoRA went to the exact tier, which then took over 90 % of the calling
 * thread's time while the worker sat idle. The same recompute runs on every thread, so the bytes do
 * not depend on which one settled an element. Browser-safe (no Node imports).
 */
import { DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import type { MergeOp } from '../merge-op.js';
import type { OpShape } from '../op-shape.js';
import type { AxisScale, DecodedTerm, PlainOp, TensorFactors } from '../exact/plain-op.js';
import { fixListed, newStats } from '../exact/recompute.js';
import { packedBytes, packInto } from './packed-arrays.js';
import type { PlainPlan } from './plain-merge.js';

/** What the exact recompute reads of a term (DecodedTerm less the kernel's own fields). */
type FixTerm = Pick<DecodedTerm, 'a' | 'b' | 'derived' | 'split' | 'rank' | 'scale' | 'k0' | 'rowMap'>;

/**
 * What a worker needs to settle a block's listed elements: the op's geometry, its W (the op's
 * row 0 at `baseOffset` of `baseBuffer`, the block's own W buffer), its scales and its terms, all
 * arrays views of shared memory (posted by reference).
 */
export interface ListedFix {
  /** Identifies the terms and scales: a worker that last saw this key keeps what it made of them. */
  key: number;
  rows: number;
  cols: number;
  layout: MergeOp['layout'];
  outDtype: FloatDType;
  baseDtype: FloatDType;
  baseBuffer: SharedArrayBuffer;
  baseOffset: number;
  rowStart: number;
  rowCount: number;
  /** The block's first row, counted from the op's. */
  r0: number;
  terms: FixTerm[];
  scale?: AxisScale;
  baseScale?: AxisScale;
}

/**
 * Whether a worker can settle the plan's listed elements: the kernel reads the op's own W (not W
 * with a scale folded in, which the recompute does not read) and certifies into the output itself
 * (not f64 values the calling thread finishes).
 */
export function workerCanFix(plan: PlainPlan): boolean {
  return plan.mode !== 'f64-values' && plan.w.data === plan.p.op.base.data;
}

type Arr = Float32Array | Float64Array | Int32Array;

/** A {@link ListedFix} less its op's W and rows: what a tensor's ops share. */
export type SharedFix = Omit<ListedFix, 'baseBuffer' | 'baseOffset' | 'rowStart' | 'rowCount' | 'r0'>;

/** The plan's terms and scales (see {@link shareListedFix}): the arrays to copy. */
function fixArrays(plan: PlainPlan): Arr[] {
  const { p, tf } = plan;
  const arrays: Arr[] = [];
  for (const t of tf.terms) arrays.push(t.a, t.b, ...(t.rowMap ? [t.rowMap] : []));
  if (p.scale) arrays.push(p.scale.factors);
  if (p.baseScale) arrays.push(p.baseScale.factors);
  return arrays;
}

/** Bytes of shared memory {@link shareListedFix} needs for the plan. */
export function listedFixBytes(plan: PlainPlan): number {
  return packedBytes(fixArrays(plan));
}

/**
 * The arrays of the plan's terms and scales copied into `buffer` (at least
 * {@link listedFixBytes}); W stays where the block's W is.
 */
export function shareListedFix(plan: PlainPlan, key: number, buffer: SharedArrayBuffer): SharedFix {
  const { p, tf } = plan;
  const copy = packInto(buffer);
  const terms = tf.terms.map((t): FixTerm => ({
    a: copy(t.a), b: copy(t.b), derived: t.derived, split: t.split, rank: t.rank, scale: t.scale, k0: t.k0, ...(t.rowMap ? { rowMap: copy(t.rowMap) } : {}),
  }));
  const { op } = p;
  return {
    key, rows: op.rows, cols: op.cols, layout: op.layout, outDtype: op.outDtype, baseDtype: op.base.dtype, terms,
    ...(p.scale ? { scale: { axis: p.scale.axis, factors: copy(p.scale.factors) } } : {}),
    ...(p.baseScale ? { baseScale: { axis: p.baseScale.axis, factors: copy(p.baseScale.factors) } } : {}),
  };
}

/** The worker's last terms: they keep the transposed A the recompute makes on first use. */
let last: { key: number; tf: TensorFactors } | undefined;

/**
 * Settles the listed elements of the block whose first row is `fix.r0` in `out`, its bytes in
 * outDtype; returns whether all are finite and how many were listed and computed exactly.
 */
export function settleListed(fix: ListedFix, out: Uint8Array, listed: Uint32Array): { finite: boolean; listed: number; exact: number } {
  if (last?.key !== fix.key) last = { key: fix.key, tf: { terms: fix.terms.map((t) => ({ ...t })) } as unknown as TensorFactors };
  const data = new Uint8Array(fix.baseBuffer, fix.baseOffset, fix.rowCount * fix.cols * DTYPE_BYTES[fix.baseDtype]);
  // The fields of the op and its shape that the recompute reads (exact/recompute.ts).
  const op = { rows: fix.rows, cols: fix.cols, layout: fix.layout, outDtype: fix.outDtype, base: { dtype: fix.baseDtype, data } } as MergeOp;
  const shape = { rowStart: fix.rowStart, rowCount: fix.rowCount } as OpShape;
  const p: PlainOp = { op, shape, terms: [], ...(fix.scale ? { scale: fix.scale } : {}), ...(fix.baseScale ? { baseScale: fix.baseScale } : {}) };
  const stats = newStats();
  const finite = fixListed(p, last.tf, out, listed, fix.r0, stats);
  return { finite, listed: stats.listed, exact: stats.exact };
}
