/**
 * The executor for any sequence of update steps (update-steps.ts), correctly rounded: the op's rows
 * held as f64 values V with a rigorous bound on each one's error, each step applied to all of them
 * in order with its bound (below), then every element rounded once where its bound decides, and
 * computed exactly (dyadic.ts) where it does not. Every backend runs DoRA and the non-additive
 * steps here, so their outputs are the same everywhere. Browser-safe (no Node imports).
 *
 * What is exact. Low-rank and dense terms, scales, rotations, permuted block maps, GLoRA's V·P·Q,
 * HiRA's V ⊙ B·A and MiSS's tiles V_ij·B_i are sums and products of the inputs: their exact result is a dyadic rational, and the output is it rounded
 * once. A DoRA step multiplies by m / (‖V‖ + ε), which is irrational in general: its factor is
 * defined as that expression evaluated in float64 from the f64 values V here hold (in a fixed order,
 * so the same on every backend and run; its relative error against the exact norm is about 2^-45),
 * and the output is the exact V times that factor, rounded once. Where that expression gives no
 * such number (V zero with ε = 0, ‖V‖² past float64's range) the merge is refused (doraFactor). An
 * element whose f64 value is Inf or NaN is recomputed exactly before any refusal: an intermediate
 * (a huge scale times V, Inf · 0) may pass float64's range where the result does not.
 *
 * The bounds (u = 2^-53; Σ|·| products' magnitudes; every step's own roundings at most u relative):
 * - low-rank terms, v' = v + Σ_k l_k·r_k with l = fl64(s·b), r exact (f32 values, or a derived
 *   factor's float64 values, LowRankTerm.exact): e' = e + G·‖l‖·‖r‖ + u|v'|,
 *   G = (R + 2)·u·(1 + 2^-10) as for the f64 kernel (error-bounds.ts);
 * - dense terms, v' = v + fl(s·d): e' = e + u|s·d| + u|v'| (per term);
 * - scale or DoRA factor f (exact by the definitions above): e' = |f|·e + u|v'|;
 * - rotation by a block M (b values): e'_m = Σ_n |M_mn|·e_n + (b + 1)·u·Σ_n |M_mn·v_n|;
 * - permuted block map (permuted-blocks.ts): the same as a rotation, in the permuted coordinates,
 *   with b the block's own size (a short last block has fewer values);
 * - HiRA's elementwise map, v' = v + v·d with d = s·Σ_k B_ok·A_kc (k values, each product exact):
 *   E_d = |s|·(k + 1)·u·Σ_k |B_ok·A_kc| + u|d|, e' = (1 + |d|)·e + |v|·E_d + u|v·d| + u|v'|;
 * - MiSS's tiles, v'_c = v_c + t_c with t_c = s·Σ_b v_b·B_bc over the element's column tile (b values):
 *   e'_c = e_c + |s|·(Σ_b |B_bc|·e_b + (b + 1)·u·Σ_b |v_b·B_bc|) + u|t_c| + u|v'_c|;
 * - GLoRA, t_j = s·Σ_c v_c·P_cj, v'_c = v_c + Σ_j t_j·Q_jc (k values of j):
 *   E_j = |s|·(Σ_c |P_cj|·e_c + (cols + 1)·u·Σ_c |v_c·P_cj|) + u|t_j|,
 *   e'_c = e_c + Σ_j |Q_jc|·E_j + (k + 1)·u·Σ_j |t_j·Q_jc| + u|v'_c|.
 * The bounds' own f64 evaluation is covered by a final factor 1 + 2^-20.
 */
import { decodeToF32, DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import { throwIfAborted } from '../../errors.js';
import type { FloatTensorBytes, MergeOp } from '../merge-op.js';
import { checkOp, type OpShape } from '../op-shape.js';
import { termFactorValues, termReachesRows } from '../low-rank-factors.js';
import { needsColumnNorms, storedAxis, type UpdateStep } from '../update-steps.js';
import { columnFactors, doraFactor, normSquare } from '../column-norms.js';
import { addDyadic, dyadicOf, DYADIC_ZERO, mulDyadic, NoExactValue, roundDyadicToBits, type Dyadic } from '../exact/dyadic.js';
import { f64KernelBound, U_F64 } from '../exact/error-bounds.js';
import { roundingIsCertain } from '../exact/float-formats.js';
import { elementValue, isSpecialBits, newStats, roundedBits, storeBits, type CertificationStats } from '../exact/recompute.js';
import { holdsNonFinite, nonFiniteError } from './plain-merge.js';
import { scatterOf, type PermutedBlocksStep } from '../permuted-blocks.js';

const f32 = (t: FloatTensorBytes): Float32Array => decodeToF32(t.data, t.dtype);

type AddTerm = Extract<UpdateStep, { kind: 'add' }>['terms'][number];

/** The row of a term's B that stored row `stored` of the weight takes (its placement's segment), or -1 where it takes none. */
function termRow(term: AddTerm, stored: number): number {
  if (!term.placement) return stored;
  for (const g of term.placement.segments) if (stored >= g.dst && stored < g.dst + g.count) return g.src + stored - g.dst;
  return -1;
}
const u = U_F64;

/** The f64 values of the op's rows after every step, with their error bounds and DoRA factors. */
export interface StepEvaluation {
  values: Float64Array;
  bounds: Float64Array;
  /** Per DoRA step (by index in shape.steps): its factors per stored row or column. */
  doraFactors: Map<number, { axis: 'row' | 'col'; factors: Float64Array }>;
}

/** Exact decoded factors of a low-rank add step, in the stored orientation (f64 left, exact right). */
interface AddFactors {
  rank: number;
  left: Float64Array;
  right: Float64Array;
  /** Per row: G·‖left row‖; per column: ‖right column‖. */
  gnl: Float64Array;
  nr: Float64Array;
}

function addFactors(op: MergeOp, shape: OpShape, step: Extract<UpdateStep, { kind: 'add' }>): AddFactors {
  // The scale goes into left in f64 (one rounding); right keeps the factor's own values, exactly.
  const { rowStart, rowCount } = shape;
  const reaching = step.terms.filter((t) => termReachesRows(t, rowStart, rowCount));
  const rank = reaching.reduce((n, t) => n + t.rank, 0);
  const cols = op.cols;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  const left = new Float64Array(rowCount * rank);
  const right = new Float64Array(rank * cols);
  let k0 = 0;
  for (const term of reaching) {
    // A derived term's float64 values (LowRankTerm.exact): right keeps them exactly, left rounds s·b once, as for f32 ones.
    const { a, b } = termFactorValues(term, f32);
    const r = term.rank, s = term.scale;
    if (op.layout === 'out-in') {
      for (let i = 0; i < rowCount; i++) {
        const src = termRow(term, rowStart + i);
        if (src >= 0) for (let k = 0; k < r; k++) left[i * rank + k0 + k] = s * b[src * r + k];
      }
      for (let k = 0; k < r; k++) for (let c = 0; c < cols; c++) right[(k0 + k) * cols + c] = a[k * inF + c];
    } else {
      for (let i = 0; i < rowCount; i++) for (let k = 0; k < r; k++) left[i * rank + k0 + k] = s * a[k * inF + rowStart + i];
      for (let k = 0; k < r; k++) for (let c = 0; c < cols; c++) right[(k0 + k) * cols + c] = b[c * r + k];
    }
    k0 += r;
  }
  const g = f64KernelBound(rank).g;
  const gnl = new Float64Array(rowCount);
  for (let i = 0; i < rowCount; i++) {
    let ss = 0;
    for (let k = 0; k < rank; k++) ss += left[i * rank + k] ** 2;
    gnl[i] = g * Math.sqrt(ss) * (1 + 2 ** -40);
  }
  const nr = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    let ss = 0;
    for (let k = 0; k < rank; k++) ss += right[k * cols + c] ** 2;
    nr[c] = Math.sqrt(ss) * (1 + 2 ** -40);
  }
  return { rank, left, right, gnl, nr };
}

/** V for the op's rows after every step, f64, with bounds; `upTo` stops before that step. */
export function evaluateSteps(op: MergeOp, shape: OpShape, signal?: AbortSignal, upTo = shape.steps.length): StepEvaluation {
  const { rowCount } = shape;
  const cols = op.cols;
  const n = rowCount * cols;
  const values = new Float64Array(n);
  const wb = DTYPE_BYTES[op.base.dtype];
  for (let r = 0; r < rowCount; r += 256) {
    const m = Math.min(256, rowCount - r);
    values.set(decodeToF32(op.base.data.subarray(r * cols * wb, (r + m) * cols * wb), op.base.dtype), r * cols);
  }
  const bounds = new Float64Array(n);
  const doraFactors = new Map<number, { axis: 'row' | 'col'; factors: Float64Array }>();
  for (let i = 0; i < upTo; i++) {
    throwIfAborted(signal);
    applyStep(op, shape, values, bounds, shape.steps[i], i, doraFactors);
  }
  return { values, bounds, doraFactors };
}

/** V (f64) after every step: the plan's magnitudes use it. */
export function stepValues(op: MergeOp, shape: OpShape, signal?: AbortSignal): Float64Array {
  return evaluateSteps(op, shape, signal).values;
}

function applyStep(op: MergeOp, shape: OpShape, v: Float64Array, e: Float64Array, step: UpdateStep, index: number,
  doraFactors: StepEvaluation['doraFactors']): void {
  const { rowStart, rowCount } = shape;
  const cols = op.cols;
  switch (step.kind) {
    case 'add': {
      if (step.terms.length > 0) {
        const f = addFactors(op, shape, step);
        const acc = new Float64Array(cols);
        for (let r = 0; r < rowCount; r++) {
          // The same order as the f64 kernel: from zero, rank by rank, then V.
          acc.fill(0);
          for (let k = 0; k < f.rank; k++) {
            const l = f.left[r * f.rank + k];
            if (l === 0) continue;
            const o = k * cols;
            for (let c = 0; c < cols; c++) acc[c] += l * f.right[o + c];
          }
          const g = f.gnl[r];
          for (let c = 0, o = r * cols; c < cols; c++) {
            const x = v[o + c] + acc[c];
            e[o + c] += g * f.nr[c] + u * Math.abs(x);
            v[o + c] = x;
          }
        }
      }
      for (const d of step.dense ?? []) {
        const values = d.exact ?? f32(d.values);
        for (let i = 0; i < v.length; i++) {
          const p = d.scale * values[i];
          const x = v[i] + p;
          e[i] += u * (Math.abs(p) + Math.abs(x));
          v[i] = x;
        }
      }
      return;
    }
    case 'scale': {
      const f = step.exact ?? Float64Array.from(f32(step.factors));
      scaleAxis(op, shape, v, e, storedAxis(op, step.axis), f);
      return;
    }
    case 'dora': {
      const dora = step.dora;
      const m = f32(dora.magnitude);
      if (needsColumnNorms(op, step)) {
        const ss = new Float64Array(cols);
        for (let r = 0; r < rowCount; r++) for (let c = 0, o = r * cols; c < cols; c++) ss[c] += normSquare(v[o + c]);
        const factors = columnFactors(op.name, step.dora, ss);
        doraFactors.set(index, { axis: 'col', factors });
        scaleAxis(op, shape, v, e, 'col', factors);
      } else {
        const factors = new Float64Array(op.rows);
        for (let r = 0; r < rowCount; r++) {
          let ss = 0;
          for (let c = 0, o = r * cols; c < cols; c++) ss += normSquare(v[o + c]);
          factors[rowStart + r] = doraFactor(op.name, dora, rowStart + r, m[rowStart + r], ss);
        }
        doraFactors.set(index, { axis: 'row', factors });
        scaleAxis(op, shape, v, e, 'row', factors);
      }
      return;
    }
    case 'self': {
      // Each stored row is an input vector x: x += s · (x·P)·Q.
      const p = f32(step.p), q = f32(step.q), k = step.rank;
      const t = new Float64Array(k), tb = new Float64Array(k), pe = new Float64Array(k), pm = new Float64Array(k);
      for (let r = 0; r < rowCount; r++) {
        const o = r * cols;
        t.fill(0);
        pe.fill(0);
        pm.fill(0);
        for (let c = 0; c < cols; c++) {
          const x = v[o + c], ex = e[o + c];
          for (let j = 0; j < k; j++) {
            const pj = p[c * k + j];
            t[j] += x * pj;
            pe[j] += Math.abs(pj) * ex;
            pm[j] += Math.abs(x * pj);
          }
        }
        const s = step.scale;
        for (let j = 0; j < k; j++) {
          t[j] *= s;
          tb[j] = Math.abs(s) * (pe[j] + (cols + 1) * u * pm[j]) + u * Math.abs(t[j]);
        }
        for (let c = 0; c < cols; c++) {
          let d = 0, de = 0, dm = 0;
          for (let j = 0; j < k; j++) {
            const qj = q[j * cols + c];
            d += t[j] * qj;
            de += Math.abs(qj) * tb[j];
            dm += Math.abs(t[j] * qj);
          }
          const x = v[o + c] + d;
          e[o + c] += de + (k + 1) * u * dm + u * Math.abs(x);
          v[o + c] = x;
        }
      }
      return;
    }
    case 'rotate': {
      const m = f32(step.blocks);
      const b = step.blockSize;
      const x = new Float64Array(b), ex = new Float64Array(b);
      if (storedAxis(op, step.axis) === 'col') {
        for (let r = 0; r < rowCount; r++) {
          for (let k0 = 0; k0 < cols; k0 += b) {
            const o = r * cols + k0;
            for (let n = 0; n < b; n++) {
              x[n] = v[o + n];
              ex[n] = e[o + n];
            }
            const mk = k0 * b; // block k0 / b starts at (k0 / b) · b²
            for (let i = 0; i < b; i++) {
              let s = 0, se = 0, sm = 0;
              for (let n = 0; n < b; n++) {
                const w = m[mk + i * b + n];
                s += w * x[n];
                se += Math.abs(w) * ex[n];
                sm += Math.abs(w * x[n]);
              }
              v[o + i] = s;
              e[o + i] = se + (b + 1) * u * sm;
            }
          }
        }
      } else {
        // Blocks of b stored rows; the slab starts on a block boundary (checked by checkOp).
        const rowsOut = new Float64Array(b * cols), boundsOut = new Float64Array(b * cols), mags = new Float64Array(b * cols);
        for (let r0 = 0; r0 < rowCount; r0 += b) {
          const mk = (rowStart + r0) * b;
          rowsOut.fill(0);
          boundsOut.fill(0);
          mags.fill(0);
          for (let i = 0; i < b; i++) {
            for (let n = 0; n < b; n++) {
              const w = m[mk + i * b + n];
              if (w === 0) continue;
              const src = (r0 + n) * cols, dst = i * cols;
              for (let c = 0; c < cols; c++) {
                rowsOut[dst + c] += w * v[src + c];
                boundsOut[dst + c] += Math.abs(w) * e[src + c];
                mags[dst + c] += Math.abs(w * v[src + c]);
              }
            }
          }
          for (let i = 0; i < b * cols; i++) boundsOut[i] += (b + 1) * u * mags[i];
          v.set(rowsOut, r0 * cols);
          e.set(boundsOut, r0 * cols);
        }
      }
      return;
    }
    case 'permuted-blocks':
      applyPermutedBlocks(op, shape, v, e, step);
      return;
    case 'tiles': {
      // Along each stored row of row tile i, per column tile: t_c = s·Σ_b x_b·B_i[b, c], x'_c = x_c + t_c.
      const m = f32(step.blocks), b = step.size, s = step.scale;
      const x = new Float64Array(b), ex = new Float64Array(b);
      for (let r = 0; r < rowCount; r++) {
        const mk = Math.floor((rowStart + r) / b) * b * b;
        for (let k0 = 0; k0 < cols; k0 += b) {
          const o = r * cols + k0;
          for (let n = 0; n < b; n++) {
            x[n] = v[o + n];
            ex[n] = e[o + n];
          }
          for (let c = 0; c < b; c++) {
            let t = 0, te = 0, tm = 0;
            for (let n = 0; n < b; n++) {
              const w = m[mk + n * b + c];
              t += x[n] * w;
              te += Math.abs(w) * ex[n];
              tm += Math.abs(x[n] * w);
            }
            t *= s;
            const y = x[c] + t;
            e[o + c] = ex[c] + Math.abs(s) * (te + (b + 1) * u * tm) + u * Math.abs(t) + u * Math.abs(y);
            v[o + c] = y;
          }
        }
      }
      return;
    }
    case 'hadamard': {
      // v' = v + v·d, d = s·Σ_k B[o,k]·A[k,c]: each f32 product is exact in f64, the sum rounds
      // k − 1 times, the scale and the two operations on v once each.
      const a = f32(step.a), b = f32(step.b), k = step.rank, s = step.scale;
      const outIn = op.layout === 'out-in', inF = outIn ? cols : op.rows;
      for (let r = 0; r < rowCount; r++) {
        const o = r * cols;
        for (let c = 0; c < cols; c++) {
          // ΔW's (output, input) of stored element (rowStart + r, c).
          const bo = (outIn ? rowStart + r : c) * k, ai = outIn ? c : rowStart + r;
          let m = 0, mm = 0;
          for (let j = 0; j < k; j++) {
            const p = b[bo + j] * a[j * inF + ai];
            m += p;
            mm += Math.abs(p);
          }
          const d = s * m;
          const ed = Math.abs(s) * (k + 1) * u * mm + u * Math.abs(d);
          const x = v[o + c], t = x * d, y = x + t;
          e[o + c] = e[o + c] * (1 + Math.abs(d)) + Math.abs(x) * ed + u * Math.abs(t) + u * Math.abs(y);
          v[o + c] = y;
        }
      }
      return;
    }
  }
}

/**
 * A permuted block map (permuted-blocks.ts) with its bounds: along stored columns each row is
 * gathered by σ, mapped block by block and scattered back; along stored rows each block maps b
 * whole rows, all inside the slab (it holds whole runs of σ, checked by checkOp).
 */
function applyPermutedBlocks(op: MergeOp, shape: OpShape, v: Float64Array, e: Float64Array, step: PermutedBlocksStep): void {
  const m = f32(step.blocks);
  const b = step.blockSize;
  const cols = op.cols;
  const sigma = step.gather;
  const at = (p: number): number => (sigma ? sigma[p] : p);
  if (storedAxis(op, step.axis) === 'col') {
    const n = cols;
    const z = new Float64Array(n), ez = new Float64Array(n);
    for (let r = 0; r < shape.rowCount; r++) {
      const o = r * cols;
      for (let p = 0; p < n; p++) {
        z[p] = v[o + at(p)];
        ez[p] = e[o + at(p)];
      }
      for (let k0 = 0; k0 < n; k0 += b) {
        const size = Math.min(b, n - k0);
        const mk = k0 * b; // block k0 / b starts at (k0 / b)·b² values
        for (let i = 0; i < size; i++) {
          let s = 0, se = 0, sm = 0;
          for (let j = 0; j < size; j++) {
            const w = m[mk + i * b + j];
            s += w * z[k0 + j];
            se += Math.abs(w) * ez[k0 + j];
            sm += Math.abs(w * z[k0 + j]);
          }
          v[o + at(k0 + i)] = s;
          e[o + at(k0 + i)] = se + (size + 1) * u * sm;
        }
      }
    }
    return;
  }
  const { rowStart, rowCount } = shape;
  const n = op.rows;
  const rowsOut = new Float64Array(b * cols), boundsOut = new Float64Array(b * cols), mags = new Float64Array(b * cols);
  const last = Math.min(n, rowStart + rowCount);
  for (let k0 = rowStart; k0 < last; k0 += b) {
    const size = Math.min(b, n - k0);
    const mk = k0 * b;
    rowsOut.fill(0);
    boundsOut.fill(0);
    mags.fill(0);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const w = m[mk + i * b + j];
        if (w === 0) continue;
        const src = (at(k0 + j) - rowStart) * cols, dst = i * cols;
        for (let c = 0; c < cols; c++) {
          rowsOut[dst + c] += w * v[src + c];
          boundsOut[dst + c] += Math.abs(w) * e[src + c];
          mags[dst + c] += Math.abs(w * v[src + c]);
        }
      }
    }
    for (let i = 0; i < size; i++) {
      const dst = (at(k0 + i) - rowStart) * cols;
      for (let c = 0; c < cols; c++) {
        v[dst + c] = rowsOut[i * cols + c];
        e[dst + c] = boundsOut[i * cols + c] + (size + 1) * u * mags[i * cols + c];
      }
    }
  }
}

function scaleAxis(op: MergeOp, shape: OpShape, v: Float64Array, e: Float64Array, axis: 'row' | 'col', f: Float64Array): void {
  const cols = op.cols;
  for (let r = 0; r < shape.rowCount; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) {
      const s = axis === 'row' ? f[shape.rowStart + r] : f[c];
      const x = v[o + c] * s;
      e[o + c] = Math.abs(s) * e[o + c] + u * Math.abs(x);
      v[o + c] = x;
    }
  }
}

/** NaN's bits in each dtype, for an element {@link mergeStepsOnCpu} keeps where it has no value. */
const NAN_BITS: Record<FloatDType, number> = { F32: 0x7fc00000, F16: 0x7e00, BF16: 0x7fc0, F8_E4M3: 0x7f, F8_E5M2: 0x7e };

/**
 * The op's rows after every step, each element rounded once (correctly) to op.outDtype. A NaN or
 * Inf element is refused (NON_FINITE), or, with `keepNonFinite` (a refusal's count, on the error
 * path only), written as the Inf it rounds to, or NaN where it has no value.
 */
export function mergeStepsOnCpu(op: MergeOp, signal?: AbortSignal, stats: CertificationStats = newStats(), keepNonFinite = false): Uint8Array {
  const shape = checkOp(op);
  const ev = evaluateSteps(op, shape, signal);
  const dtype = op.outDtype;
  const out = new Uint8Array(shape.rowCount * op.cols * DTYPE_BYTES[dtype]);
  let exact: ExactSteps | undefined;
  let pastUp: number | undefined, pastDown: number | undefined;
  for (let i = 0; i < ev.values.length; i++) {
    const x = ev.values[i];
    let bits: number;
    // A value f64 left Inf or NaN is recomputed exactly too: an intermediate may pass float64's
    // range (a huge scale, Inf · 0 of a scale past it on a zero product) where the result does not.
    if (Number.isFinite(x) && roundingIsCertain(x, ev.bounds[i] * (1 + 2 ** -20), dtype)) {
      bits = roundedBits(x, dtype);
    } else {
      stats.listed++;
      stats.exact++;
      exact ??= new ExactSteps(op, shape, ev);
      try {
        const x = exact.final(Math.floor(i / op.cols), i % op.cols);
        // Past every float (a constant): its bits once, not rounded from integers each time.
        bits = x === PAST_UP ? (pastUp ??= roundDyadicToBits(x, dtype)) : x === PAST_DOWN ? (pastDown ??= roundDyadicToBits(x, dtype)) : roundDyadicToBits(x, dtype);
      } catch (e) {
        // An input the element depends on is Inf or NaN, though its f64 value came out finite
        // (the f64 pass skips products with a zero factor, and 0 · Inf is NaN): the merge holds NaN.
        if (!(e instanceof NoExactValue)) throw e;
        if (!keepNonFinite) throw nonFiniteError(op.name, dtype);
        bits = NAN_BITS[dtype];
      }
      // Inf or NaN exactly too: the merge is refused, and the other elements need not be recomputed.
      if (!keepNonFinite && isSpecialBits(bits, dtype)) throw nonFiniteError(op.name, dtype);
    }
    storeBits(out, dtype, i, bits);
  }
  stats.elements += ev.values.length;
  if (!keepNonFinite && holdsNonFinite(out, dtype)) throw nonFiniteError(op.name, dtype);
  return out;
}

/** Σ over the op's rows of V² per stored column (the first pass of norms that run across rows). */
export function columnSumsOfSquaresOnCpu(op: MergeOp, signal?: AbortSignal): Float64Array {
  const shape = checkOp(op);
  const v = evaluateSteps(op, shape, signal).values;
  const cols = op.cols;
  const ss = new Float64Array(cols);
  for (let r = 0; r < shape.rowCount; r++) {
    for (let c = 0, o = r * cols; c < cols; c++) ss[c] += normSquare(v[o + c]);
  }
  return ss;
}

/** ±2^200: past every float dtype (what {@link ExactSteps.final} gives where float64 shows a value past it). */
const PAST_UP: Dyadic = { m: 1n, e: 200 };
const PAST_DOWN: Dyadic = { m: -1n, e: 200 };

/**
 * Exact values of elements after a number of steps, computed on demand from the elements they
 * depend on (memoised): only the few elements whose f64 bound cannot decide come here.
 */
class ExactSteps {
  private readonly memo = new Map<string, Dyadic>();
  private readonly selfMemo = new Map<string, Dyadic[]>();
  private readonly decoded = new Map<FloatTensorBytes, Float32Array>();

  constructor(private readonly op: MergeOp, private readonly shape: OpShape, private readonly ev: StepEvaluation) {}

  private readonly scatters = new Map<PermutedBlocksStep, Uint32Array>();

  /** σ⁻¹ of a permuted block map with a gather. */
  private scatter(step: PermutedBlocksStep): Uint32Array {
    let s = this.scatters.get(step);
    if (!s) this.scatters.set(step, (s = scatterOf(step)!));
    return s;
  }

  private f32(t: FloatTensorBytes): Float32Array {
    let d = this.decoded.get(t);
    if (!d) this.decoded.set(t, (d = f32(t)));
    return d;
  }

  /**
   * The exact value of slab element (r, c) after every step: asked once an element, so not kept
   * (a slab of elements past float64, each kept under its key, made the refusal's count minutes long).
   */
  final(r: number, c: number): Dyadic {
    const stages = this.shape.steps.length;
    if (stages === 0) return this.value(0, r, c);
    return (stages === 1 && this.pastEveryFloat(r, c)) || this.compute(stages, r, c);
  }

  /**
   * W + Σ s·B·A (+ dense terms) of a lone add step where float64 shows it past 2^200 for certain,
   * as ±2^200, which every dtype rounds as it rounds the exact value (Inf, or fp8's saturation);
   * else undefined (the exact value is needed). Each addend is computed scaled by 2^-600 (exact
   * for powers of two, but for underflow), their sum with a bound on its rounding error: an
   * element whose products pass float64 costs a few float operations, not the exact sums of
   * integers thousands of bits long.
   */
  private pastEveryFloat(r: number, c: number): Dyadic | undefined {
    const { op, shape } = this;
    const step = shape.steps[0];
    if (step.kind !== 'add') return undefined;
    const down = 2 ** -600;
    const stored = shape.rowStart + r;
    const [o, i] = op.layout === 'out-in' ? [stored, c] : [c, stored];
    const inF = op.layout === 'out-in' ? op.cols : op.rows;
    let x = elementValue(op.base.data, op.base.dtype, r * op.cols + c) * down;
    let magnitude = Math.abs(x);
    let addends = 1;
    for (const term of step.terms) {
      const row = termRow(term, o);
      if (row < 0) continue;
      const { a, b } = termFactorValues(term, (t) => this.f32(t));
      let d = 0, dm = 0;
      for (let k = 0; k < term.rank; k++) {
        const p = b[row * term.rank + k] * a[k * inF + i];
        d += p;
        dm += Math.abs(p);
      }
      const s = term.scale * down;
      x += s * d;
      magnitude += Math.abs(s) * dm;
      addends += term.rank + 2;
    }
    for (const dense of step.dense ?? []) {
      const v = dense.scale * down * (dense.exact ?? this.f32(dense.values))[r * op.cols + c];
      x += v;
      magnitude += Math.abs(v);
      addends += 2;
    }
    // Each operation errs by at most 2^-52 of the magnitudes summed (2^-1074 more where it underflows).
    const error = (addends + 2) * 2 ** -52 * magnitude + addends * 2 ** -1000;
    if (!(Number.isFinite(x) && Number.isFinite(magnitude) && Math.abs(x) - error > 2 ** (200 - 600))) return undefined;
    return x > 0 ? PAST_UP : PAST_DOWN;
  }

  /** The exact value of slab element (r, c) after the first `stage` steps. */
  value(stage: number, r: number, c: number): Dyadic {
    if (stage === 0) return dyadicOf(elementValue(this.op.base.data, this.op.base.dtype, r * this.op.cols + c));
    const key = `${stage},${r},${c}`;
    let x = this.memo.get(key);
    if (!x) this.memo.set(key, (x = this.compute(stage, r, c)));
    return x;
  }

  private compute(stage: number, r: number, c: number): Dyadic {
    const { op, shape } = this;
    const step = shape.steps[stage - 1];
    const prev = (rr: number, cc: number) => this.value(stage - 1, rr, cc);
    const stored = shape.rowStart + r;
    switch (step.kind) {
      case 'add': {
        let x = prev(r, c);
        const [o, i] = op.layout === 'out-in' ? [stored, c] : [c, stored];
        const inF = op.layout === 'out-in' ? op.cols : op.rows;
        for (const term of step.terms) {
          const row = termRow(term, o);
          if (row < 0) continue;
          const { a, b } = termFactorValues(term, (t) => this.f32(t));
          let d = DYADIC_ZERO;
          for (let k = 0; k < term.rank; k++) d = addDyadic(d, mulDyadic(dyadicOf(b[row * term.rank + k]), dyadicOf(a[k * inF + i])));
          x = addDyadic(x, mulDyadic(dyadicOf(term.scale), d));
        }
        for (const dense of step.dense ?? []) {
          x = addDyadic(x, mulDyadic(dyadicOf(dense.scale), dyadicOf((dense.exact ?? this.f32(dense.values))[r * op.cols + c])));
        }
        return x;
      }
      case 'scale': {
        const f = step.exact ?? this.f32(step.factors);
        return mulDyadic(prev(r, c), dyadicOf(storedAxis(op, step.axis) === 'row' ? f[stored] : f[c]));
      }
      case 'dora': {
        const d = this.ev.doraFactors.get(stage - 1)!;
        return mulDyadic(prev(r, c), dyadicOf(d.axis === 'row' ? d.factors[stored] : d.factors[c]));
      }
      case 'rotate': {
        const m = this.f32(step.blocks);
        const b = step.blockSize;
        let x = DYADIC_ZERO;
        if (storedAxis(op, step.axis) === 'col') {
          const k0 = c - (c % b), i = c - k0;
          for (let n = 0; n < b; n++) x = addDyadic(x, mulDyadic(dyadicOf(m[k0 * b + i * b + n]), prev(r, k0 + n)));
        } else {
          const g0 = stored - (stored % b), i = stored - g0;
          for (let n = 0; n < b; n++) x = addDyadic(x, mulDyadic(dyadicOf(m[g0 * b + i * b + n]), prev(g0 - shape.rowStart + n, c)));
        }
        return x;
      }
      case 'permuted-blocks': {
        // Element (r, c) sits at position p = σ⁻¹(index) of the mapped axis; its block's row p.
        const m = this.f32(step.blocks);
        const b = step.blockSize;
        const onCols = storedAxis(op, step.axis) === 'col';
        const n = onCols ? op.cols : op.rows;
        const sigma = step.gather;
        const p = sigma ? this.scatter(step)[onCols ? c : stored] : onCols ? c : stored;
        const k0 = p - (p % b), size = Math.min(b, n - k0);
        let x = DYADIC_ZERO;
        for (let j = 0; j < size; j++) {
          const src = sigma ? sigma[k0 + j] : k0 + j;
          const w = dyadicOf(m[k0 * b + (p - k0) * b + j]);
          x = addDyadic(x, mulDyadic(w, onCols ? prev(r, src) : prev(src - shape.rowStart, c)));
        }
        return x;
      }
      case 'tiles': {
        const m = this.f32(step.blocks), b = step.size;
        const mk = Math.floor(stored / b) * b * b, k0 = c - (c % b), cc = c - k0;
        let t = DYADIC_ZERO;
        for (let n = 0; n < b; n++) t = addDyadic(t, mulDyadic(prev(r, k0 + n), dyadicOf(m[mk + n * b + cc])));
        return addDyadic(prev(r, c), mulDyadic(dyadicOf(step.scale), t));
      }
      case 'hadamard': {
        const a = this.f32(step.a), b = this.f32(step.b), k = step.rank;
        const outIn = op.layout === 'out-in', inF = outIn ? op.cols : op.rows;
        const [o, i] = outIn ? [stored, c] : [c, stored];
        let m = DYADIC_ZERO;
        for (let j = 0; j < k; j++) m = addDyadic(m, mulDyadic(dyadicOf(b[o * k + j]), dyadicOf(a[j * inF + i])));
        const x = prev(r, c);
        return addDyadic(x, mulDyadic(x, mulDyadic(dyadicOf(step.scale), m)));
      }
      case 'self': {
        const key = `${stage},${r}`;
        let t = this.selfMemo.get(key);
        const p = this.f32(step.p), q = this.f32(step.q), k = step.rank;
        if (!t) {
          t = [];
          for (let j = 0; j < k; j++) {
            let s = DYADIC_ZERO;
            for (let cc = 0; cc < op.cols; cc++) s = addDyadic(s, mulDyadic(prev(r, cc), dyadicOf(p[cc * k + j])));
            t.push(mulDyadic(s, dyadicOf(step.scale)));
          }
          this.selfMemo.set(key, t);
        }
        let x = prev(r, c);
        for (let j = 0; j < k; j++) x = addDyadic(x, mulDyadic(t[j], dyadicOf(q[j * op.cols + c])));
        return x;
      }
    }
  }
}
