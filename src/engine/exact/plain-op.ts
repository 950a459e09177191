/**
 * Ops of the plain form, W + Σ low-rank terms, optionally followed by one fixed scale along an
 * axis (IA3, or DoRA whose norms were resolved beforehand) or preceded by one that multiplies W
 * alone (fp8 codes times their scales, W·f + Σ terms), prepared for the certified kernels:
 * the terms' factors decoded once per tensor (every slab of a tensor shares its `terms` array),
 * the kernels' `right` factor (unscaled, zero-padded to the tile width: exact for factors read as
 * f32 values; a derived factor's float64 values rounded to f32 for the f32 kernels, or split into
 * two f32 parts for the f64 kernel) and its column norms, and per slab the `left` factor (each
 * term's scale folded in) with its row norms.
 * Browser-safe (no Node imports).
 */
import { decodeToF32, type FloatDType } from '../../dtype.js';
import type { LowRankTerm, MergeOp } from '../merge-op.js';
import type { OpShape } from '../op-shape.js';
import { termFactorValues, termReachesRows } from '../low-rank-factors.js';
import { opSteps, storedAxis, type ScaleStep } from '../update-steps.js';
import { boundNorm, roundUpF32, type KernelBound } from './error-bounds.js';

/** A fixed scale along a stored axis: one factor per stored row or per stored column. */
export interface AxisScale {
  axis: 'row' | 'col';
  /** The step's f64 factors where it has them (resolved DoRA norms), else its f32 ones. */
  factors: Float32Array | Float64Array;
}

export interface PlainOp {
  op: MergeOp;
  shape: OpShape;
  terms: readonly LowRankTerm[];
  scale?: AxisScale;
  /** The scale step the factors came from (a cache key). */
  scaleStep?: ScaleStep;
  /**
   * A scale of W alone, before the terms (never with `scale`): each factor is an f32 value, so
   * W · f is exact in f64 (at most 24 + 24 significant bits) and is the exact op's W.
   */
  baseScale?: AxisScale;
}

/** The op as W + terms [then a scale], or undefined when it has other steps (dense terms, DoRA…). */
export function asPlainOp(op: MergeOp, shape: OpShape): PlainOp | undefined {
  if ((op.dora?.group ?? 1) > 1) return undefined;
  const steps = opSteps(op);
  // A leading scale (alone, or before one pass of low-rank terms) with f32 factors: W·f exact in
  // f64, so the f64 kernel takes it as it is (a lone one is the same whether read as leading or trailing).
  const lead = steps[0];
  const next = steps[1];
  if (lead?.kind === 'scale' && (steps.length === 1 || (steps.length === 2 && next.kind === 'add' && !next.dense?.length))) {
    const factors = lead.exact ?? decodeToF32(lead.factors.data, lead.factors.dtype);
    if (factors.every((f) => Math.fround(f) === f)) {
      return { op, shape, terms: next?.kind === 'add' ? next.terms : [], baseScale: { axis: storedAxis(op, lead.axis), factors } };
    }
    if (steps.length === 2) return undefined;
  }
  let i = 0;
  let terms: readonly LowRankTerm[] = [];
  const first = steps[0];
  if (first?.kind === 'add') {
    if (first.dense?.length) return undefined;
    terms = first.terms;
    i = 1;
  }
  const last = steps[i];
  if (!last) return { op, shape, terms };
  if (last.kind !== 'scale' || i + 1 !== steps.length) return undefined;
  const factors = last.exact ?? decodeToF32(last.factors.data, last.factors.dtype);
  return { op, shape, terms, scale: { axis: storedAxis(op, last.axis), factors }, scaleStep: last };
}

/**
 * One term with its exact values, placed at ranks [k0, k0 + rank) of the kernels' concatenation
 * (split: [k0, k0 + 2·rank), the right factor's f32 parts then their remainders).
 */
export interface DecodedTerm {
  /** rank × inFeatures: f32 values, or the float64 values of a derived factor (LowRankTerm.exact). */
  a: Float32Array | Float64Array;
  /** deltaRows × rank, as `a`. */
  b: Float32Array | Float64Array;
  /** `a` and `b` are float64 values (some of them no f32 value): products of two of them round in float64. */
  derived: boolean;
  /** The kernels' right factor holds this term as two f32 parts per value (see tensorFactors). */
  split: boolean;
  rank: number;
  scale: number;
  k0: number;
  /** Output row (ΔW row for out-in) → ΔW row; absent: one to one. Rows no segment reaches: −1. */
  rowMap?: Int32Array;
  /**
   * A transposed (inFeatures × rank), made on first use by the float64 recompute (recompute.ts):
   * it reads a column of A per listed element, which in A's own layout is one cache line per rank step.
   */
  aT?: Float32Array | Float64Array;
}

/** What the kernels need of a tensor's terms, shared by its slabs. */
export interface TensorFactors {
  /** Identifies `right` and the norms: a kernel that holds this key need not be sent them again. */
  key: number;
  /** Summed ranks of the active terms, as the kernels see them (a split term counts twice). */
  rank: number;
  terms: DecodedTerm[];
  /** rank × stride, row-major: A (out-in) or Bᵀ (in-out), times a column scale when folded. */
  right: Float32Array;
  /** Columns padded to a multiple of 8. */
  stride: number;
  /** Per padded column: ‖right column‖₂ for the bounds, f32 rounded up (0 in the padding). */
  nr: Float32Array;
  nr64: Float64Array;
  /** `right` holds a folded column scale (no longer exact: the f64 kernel cannot use it). */
  colScaled: boolean;
  /**
   * Some value of `right` is a derived factor's float64 value rounded to f32 (one more rounding,
   * which f32KernelBound's `roundedRight` covers).
   */
  rightRounded: boolean;
  /** Derived terms are split (f64 kernel: right = hi + lo, f64KernelBound's `split`). */
  split: boolean;
}

interface CacheEntry {
  layout: MergeOp['layout'];
  cols: number;
  active: string;
  scaleStep: ScaleStep | undefined;
  split: boolean;
  factors: TensorFactors;
}

const cache = new WeakMap<readonly LowRankTerm[], CacheEntry[]>();
let nextKey = 1;

/**
 * The tensor-level factors of the terms reaching this slab (cached per terms array); with
 * `foldColumnScale`, a scale per stored column is multiplied into `right` (rounded to f32).
 * A derived term's right values (float64, LowRankTerm.exact) are rounded to f32, or with
 * `splitDerived` (the f64 kernel, which needs them exactly) held as two rows each: hi = fl32(v)
 * and lo = fl32(v − hi), its left column repeated for both, so that Σ l·(hi + lo) is Σ l·v to
 * within 2^-48·|v| per value (v − hi is exact in float64, and hi + lo is v rounded to 48 bits).
 */
export function tensorFactors(p: PlainOp, foldColumnScale: boolean, splitDerived = false): TensorFactors {
  const { op, shape } = p;
  const active: number[] = [];
  p.terms.forEach((t, i) => {
    if (termReachesRows(t, shape.rowStart, shape.rowCount)) active.push(i);
  });
  const activeKey = active.join();
  const colScale = foldColumnScale && p.scale?.axis === 'col' ? p.scale : undefined;
  const split = splitDerived && active.some((i) => p.terms[i].exact);
  if (split && colScale) throw new Error(`tensor "${op.name}": a folded column scale and split factors are never combined`);
  const entries = cache.get(p.terms) ?? [];
  const hit = entries.find((e) => e.layout === op.layout && e.cols === op.cols && e.active === activeKey && e.scaleStep === (colScale ? p.scaleStep : undefined)
    && e.split === split);
  if (hit) return hit.factors;

  const cols = op.cols;
  const stride = (cols + 7) & ~7;
  const outF = op.layout === 'out-in' ? op.rows : op.cols;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  const terms: DecodedTerm[] = [];
  let rank = 0;
  for (const i of active) {
    const t = p.terms[i];
    const { a, b } = termFactorValues(t);
    const derived = !!t.exact;
    const decoded: DecodedTerm = { a, b, derived, split: split && derived, rank: t.rank, scale: t.scale, k0: rank };
    if (t.placement) {
      const map = new Int32Array(outF).fill(-1);
      for (const g of t.placement.segments) for (let j = 0; j < g.count; j++) map[g.dst + j] = g.src + j;
      decoded.rowMap = map;
    }
    terms.push(decoded);
    rank += decoded.split ? 2 * t.rank : t.rank;
  }
  const right = new Float32Array(Math.max(rank, 1) * stride);
  // Per column: Σ of the squared values right stands for, so that a column whose values all
  // rounded to zero in f32 still gets a non-zero norm (error-bounds.ts: underflow).
  const exactSquares = new Float64Array(cols);
  for (const t of terms) {
    for (let k = 0; k < t.rank; k++) {
      const row = (t.k0 + k) * stride;
      const lo = (t.k0 + t.rank + k) * stride;
      for (let c = 0; c < cols; c++) {
        const value = op.layout === 'out-in' ? t.a[k * inF + c] : t.b[c * t.rank + k];
        // A folded scale multiplies the value as the f32 kernels hold it (the folded bound's rounding).
        const v = colScale ? Math.fround(value) * colScale.factors[c] : value;
        right[row + c] = v;
        if (t.split) right[lo + c] = v - right[row + c];
        if (t.derived) exactSquares[c] += (colScale ? value * colScale.factors[c] : value) ** 2;
      }
    }
  }
  const nr = new Float32Array(stride);
  const nr64 = new Float64Array(stride);
  for (let c = 0; c < cols; c++) {
    let ss = 0;
    for (let k = 0; k < rank; k++) ss += right[k * stride + c] ** 2;
    nr64[c] = boundNorm(Math.max(ss, exactSquares[c]));
    nr[c] = roundUpF32(nr64[c]);
  }
  const factors: TensorFactors = {
    key: nextKey++, rank, terms, right, stride, nr, nr64, colScaled: !!colScale, rightRounded: !split && terms.some((t) => t.derived), split,
  };
  entries.push({ layout: op.layout, cols, active: activeKey, scaleStep: colScale ? p.scaleStep : undefined, split, factors });
  if (entries.length > 8) entries.shift();
  cache.set(p.terms, entries);
  return factors;
}

/** A slab's left factor and row bounds for the f32 kernel, or the f64 one. */
export interface SlabFactors32 {
  left: Float32Array;
  /** G · ‖left row‖₂ per row, f32 rounded up. */
  gnl: Float32Array;
}
export interface SlabFactors64 {
  left: Float64Array;
  gnl: Float64Array;
}

/**
 * left[i, k0 + k] = scale · B[ΔW row of i, k] (out-in) or scale · A[k, rowStart + i] (in-out),
 * times the row's factor of a folded row scale, for rows [r0, r0 + n) of the slab (f64 products,
 * then one rounding to left's precision); a split term's columns twice. `squares` gets each row's
 * Σ of those f64 products squared (the norm of what an f32 left stands for, see rowNorms).
 */
function fillLeft(p: PlainOp, tf: TensorFactors, r0: number, n: number, left: Float32Array | Float64Array, foldRowScale: boolean,
  squares: Float64Array): void {
  const { op, shape } = p;
  const rank = tf.rank;
  const rowScale = foldRowScale && p.scale?.axis === 'row' ? p.scale.factors : undefined;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  left.fill(0);
  for (const t of tf.terms) {
    for (let i = 0; i < n; i++) {
      const stored = shape.rowStart + r0 + i;
      const f = rowScale ? t.scale * rowScale[stored] : t.scale;
      const dst = i * rank + t.k0;
      if (op.layout === 'out-in') {
        const src = t.rowMap ? t.rowMap[stored] : stored;
        if (src < 0) continue;
        for (let k = 0; k < t.rank; k++) {
          const v = f * t.b[src * t.rank + k];
          left[dst + k] = v;
          if (t.split) left[dst + t.rank + k] = v;
          squares[i] += v * v;
        }
      } else {
        for (let k = 0; k < t.rank; k++) {
          const v = f * t.a[k * inF + stored];
          left[dst + k] = v;
          if (t.split) left[dst + t.rank + k] = v;
          squares[i] += v * v;
        }
      }
    }
  }
}

/**
 * G · ‖left row‖ per row; the norm is at least that of the row's f64 values (`squares`), so that a
 * row whose values all rounded to zero in f32 is not taken for one of zeros (error-bounds.ts: underflow).
 */
function rowNorms(left: Float32Array | Float64Array, n: number, rank: number, g: number, squares: Float64Array, out: Float32Array | Float64Array): void {
  const is32 = out instanceof Float32Array;
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < rank; k++) ss += left[i * rank + k] ** 2;
    const v = g * boundNorm(Math.max(ss, squares[i]));
    out[i] = is32 ? roundUpF32(v) : v;
  }
}

/** f32 left factor; `fold`: a scale step is folded in (its row factors here, column ones in `right`). */
export function slabFactors32(p: PlainOp, tf: TensorFactors, r0: number, n: number, bound: KernelBound, fold: boolean): SlabFactors32 {
  const left = new Float32Array(Math.max(n * tf.rank, 1));
  const squares = new Float64Array(n);
  fillLeft(p, tf, r0, n, left, fold, squares);
  const gnl = new Float32Array(n);
  rowNorms(left, n, tf.rank, bound.g, squares, gnl);
  return { left, gnl };
}

export function slabFactors64(p: PlainOp, tf: TensorFactors, r0: number, n: number, bound: KernelBound): SlabFactors64 {
  const left = new Float64Array(Math.max(n * tf.rank, 1));
  const squares = new Float64Array(n);
  fillLeft(p, tf, r0, n, left, false, squares);
  const gnl = new Float64Array(n);
  rowNorms(left, n, tf.rank, bound.g, squares, gnl);
  return { left, gnl };
}

/** W's rows [r0, r0 + n) times a folded scale or its base scale, as f32 (one rounding per element). */
export function scaledBase(p: PlainOp, r0: number, n: number): Float32Array {
  const { op, shape } = p;
  const scale = p.scale ?? p.baseScale;
  const cols = op.cols;
  const bytes = op.base.data.subarray(r0 * cols * bytesOf(op.base.dtype), (r0 + n) * cols * bytesOf(op.base.dtype));
  const w = decodeToF32(bytes, op.base.dtype);
  if (!scale) return w;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < cols; c++) {
      w[i * cols + c] *= scale.axis === 'row' ? scale.factors[shape.rowStart + r0 + i] : scale.factors[c];
    }
  }
  return w;
}

function bytesOf(dtype: FloatDType): number {
  return dtype === 'F32' ? 4 : dtype === 'F8_E4M3' || dtype === 'F8_E5M2' ? 1 : 2;
}
