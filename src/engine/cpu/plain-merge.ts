/**
 * Plain ops (W + Σ low-rank terms, then optionally one fixed scale) on the CPU, correctly rounded
 * (src/engine/exact/error-bounds.ts): how an op is cut into kernel jobs, and what the host does
 * with each job's result — settle the listed elements in float64 or exactly, and finish the
 * float64 values of jobs whose scale step the kernel cannot fold exactly. The calling thread's
 * executor is here; the worker pool (row-block-pool.ts) runs the same jobs on other threads.
 * Browser-safe (no Node imports).
 */
import { DTYPE_BYTES, type FloatDType } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import { f32KernelBound, f64KernelBound, U_F32, U_F64, type KernelBound } from '../exact/error-bounds.js';
import { roundingIsCertain } from '../exact/float-formats.js';
import {
  scaledBase, slabFactors32, slabFactors64, tensorFactors, type PlainOp, type SlabFactors32, type SlabFactors64, type TensorFactors,
} from '../exact/plain-op.js';
import { elementValue, exactElementBits, fixListed, isSpecialBits, roundedBits, storeBits, type CertificationStats } from '../exact/recompute.js';
import type { RowJob, WasmKernel, WScale } from './wasm-kernel.js';

/** About this many bytes of W per block on the calling thread: small enough to stay in cache. */
const BLOCK_BYTES = 256 * 1024;

/**
 * How the kernel runs an op:
 * - `f32`: f32 sums, the kernel certifies 16- and 8-bit outputs (a scale step folded in);
 * - `f64`: f64 sums, the kernel certifies f32 outputs;
 * - `f64-values`: f64 sums handed back as f64, the host applies the scale step and certifies.
 */
export type KernelMode = 'f32' | 'f64' | 'f64-values';

/** An op ready to be cut into jobs. */
export interface PlainPlan {
  p: PlainOp;
  tf: TensorFactors;
  mode: KernelMode;
  bound: KernelBound;
  /** The op's rows of left and G·‖left row‖, in the kernel's precision. */
  slab: SlabFactors32 | SlabFactors64;
  /** W as the kernel reads it: the op's own bytes, or f32 with a scale folded in. */
  w: { dtype: FloatDType; data: Uint8Array };
  /** Output bytes per element of the kernel (8 for `f64-values`). */
  kernelOutBytes: number;
  /** The base scale the kernel multiplies W by (row factors for the op's rows). */
  wScale?: WScale;
}

export function planPlain(p: PlainOp): PlainPlan {
  const { op, shape } = p;
  const out = op.outDtype;
  const mode: KernelMode = out !== 'F32' ? 'f32' : p.scale ? 'f64-values' : 'f64';
  // A trailing scale is folded into W and the factors on the host; a base scale multiplies W in
  // the kernel (f32: rounded once, the folded bound; f64: exactly, W's own bound).
  const folded = mode === 'f32' && !!p.scale;
  // The f64 kernel reads `right` as f32: derived factors' values go to it in two parts.
  const tf = tensorFactors(p, folded, mode !== 'f32');
  const bound = mode === 'f32' ? f32KernelBound(tf.rank, U_F32, folded || !!p.baseScale, tf.rightRounded) : f64SumsBound(tf);
  const slab = mode === 'f32'
    ? slabFactors32(p, tf, 0, shape.rowCount, bound, folded)
    : slabFactors64(p, tf, 0, shape.rowCount, bound);
  const w = folded ? { dtype: 'F32' as const, data: asBytes(scaledBase(p, 0, shape.rowCount)) } : op.base;
  const plan: PlainPlan = { p, tf, mode, bound, slab, w, kernelOutBytes: mode === 'f64-values' ? 8 : DTYPE_BYTES[out] };
  if (p.baseScale && mode !== 'f64-values') plan.wScale = opBaseScale(p);
  return plan;
}

/**
 * The f64 kernel's bound; none for no terms: V is then W (times a base scale, exactly), and its
 * ties (common for fp8 codes times f32 scales) need no recomputation.
 */
function f64SumsBound(tf: TensorFactors): KernelBound {
  return tf.rank === 0 ? { g: 0, u: 0 } : f64KernelBound(tf.rank, tf.split);
}

/** The base scale's f64 factors for the op's rows (row axis) or its columns. */
function opBaseScale(p: PlainOp): WScale {
  const { axis, factors } = p.baseScale!;
  const { rowStart, rowCount } = p.shape;
  return { axis, factors: Float64Array.from(axis === 'row' ? factors.subarray(rowStart, rowStart + rowCount) : factors.subarray(0, p.op.cols)) };
}

/**
 * Rows per block of at most `blockBytes` of W or output, plus the rows' left factors (a multiple of
 * 4, the kernel's tile height). The left factors count too: narrow rows at a large summed rank
 * (8 columns at rank 2048) would otherwise make 65,536-row jobs of 1 GiB of left factor alone.
 */
export function rowsPerBlock(plan: Pick<PlainPlan, 'w' | 'kernelOutBytes'> & { p: { op: { cols: number } }; tf: { rank: number } }, blockBytes = BLOCK_BYTES): number {
  // Left rows are f32 or f64 (8 bytes at most), plus one G·‖left row‖ of the same width.
  const rowBytes = plan.p.op.cols * Math.max(DTYPE_BYTES[plan.w.dtype], plan.kernelOutBytes) + (plan.tf.rank + 1) * 8;
  return Math.max(4, Math.floor(blockBytes / rowBytes / 4) * 4);
}

/** What a kernel holding the plan's right factor and norms holds (f32 and f64 norms differ). */
export function rightKeyOf(plan: PlainPlan): number {
  return plan.mode === 'f32' ? plan.tf.key : -plan.tf.key;
}

/** The arrays a job takes its rows of: the plan's own, or copies of them elsewhere (shared memory). */
export interface JobArrays {
  left: Float32Array | Float64Array;
  gnl: Float32Array | Float64Array;
  wScale?: Float64Array;
}

/** The job for rows [r0, r0 + n) of the plan's op; its left factor, row bounds and W scale are views of `from`. */
export function planJob(plan: PlainPlan, r0: number, n: number, withRight: boolean, from?: JobArrays): RowJob {
  const { p, tf, slab } = plan;
  const { left, gnl, wScale } = from ?? { left: slab.left, gnl: slab.gnl, wScale: plan.wScale?.factors };
  const cols = p.op.cols;
  const wb = DTYPE_BYTES[plan.w.dtype];
  const certify = plan.mode === 'f64-values' ? undefined : {
    gnl: gnl.subarray(r0, r0 + n),
    nr: withRight ? (plan.mode === 'f32' ? tf.nr : tf.nr64) : undefined,
    u: plan.bound.u,
  };
  return {
    w: plan.w.data.subarray(r0 * cols * wb, (r0 + n) * cols * wb),
    wDtype: plan.w.dtype,
    outDtype: plan.mode === 'f64-values' ? 'F64' : p.op.outDtype,
    rows: n,
    cols,
    rank: tf.rank,
    left: left.subarray(r0 * tf.rank, (r0 + n) * tf.rank),
    rightKey: rightKeyOf(plan),
    right: withRight ? tf.right : undefined,
    certify,
    ...(plan.wScale && wScale ? { wScale: { axis: plan.wScale.axis, factors: plan.wScale.axis === 'row' ? wScale.subarray(r0, r0 + n) : wScale } } : {}),
  };
}

/**
 * After a job: settles its listed elements (f32, f64 modes) or certifies its f64 values into the
 * output dtype (f64-values; `kernelOut` holds them, `out` gets the bytes). `out` is the block's
 * output in op.outDtype. Returns false when an element written here is Inf or NaN: the kernel's
 * flag speaks for its own results only, not for a listed element rounded again nor for f · V
 * (a scale factor may be Inf where V is finite).
 */
export function finishJob(plan: PlainPlan, r0: number, n: number, listed: Uint32Array, kernelOut: Uint8Array, out: Uint8Array,
  stats: CertificationStats): boolean {
  const { p, tf } = plan;
  stats.elements += n * p.op.cols;
  if (plan.mode !== 'f64-values') return listed.length ? fixListed(p, tf, out, listed, r0, stats) : true;
  const values = new Float64Array(kernelOut.buffer, kernelOut.byteOffset, n * p.op.cols);
  return certifyValues(plan, r0, n, values, out, stats);
}

/**
 * x = f · v for the block's f64 values v (bound g·nL·nR + u|v| each, error-bounds.ts), rounded
 * once into `out` where the bound decides, else recomputed exactly.
 */
function certifyValues(plan: PlainPlan, r0: number, n: number, values: Float64Array, out: Uint8Array, stats: CertificationStats): boolean {
  const { p, tf } = plan;
  const { op, shape, scale } = p;
  const cols = op.cols;
  const dtype = op.outDtype;
  const gnl = plan.slab.gnl;
  const u = plan.bound.u;
  let finite = true;
  for (let i = 0; i < n; i++) {
    const row = r0 + i;
    const g = gnl[row];
    const rowFactor = scale?.axis === 'row' ? scale.factors[shape.rowStart + row] : 1;
    for (let c = 0; c < cols; c++) {
      const v = values[i * cols + c];
      const f = scale?.axis === 'col' ? scale.factors[c] * rowFactor : rowFactor;
      const x = f * v;
      const bound = (Math.abs(f) * (g * tf.nr64[c] + u * Math.abs(v)) + U_F64 * Math.abs(x)) * (1 + 2 ** -20);
      let bits: number;
      if (roundingIsCertain(x, bound, dtype)) {
        bits = roundedBits(x, dtype);
      } else {
        stats.listed--; // exactElementBits counts it again
        bits = exactElementBits(p, tf, row, c, stats);
        stats.listed++;
      }
      if (isSpecialBits(bits, dtype)) finite = false;
      storeBits(out, dtype, i * cols + c, bits);
    }
  }
  return finite;
}

/** Whether output bytes hold Inf or NaN (after the listed elements were settled). */
export function holdsNonFinite(out: Uint8Array, dtype: FloatDType): boolean {
  switch (dtype) {
    case 'F32': {
      for (let i = 3; i < out.length; i += 4) if ((out[i] & 0x7f) === 0x7f && (out[i - 1] & 0x80)) return true;
      return false;
    }
    case 'F16': {
      for (let i = 1; i < out.length; i += 2) if ((out[i] & 0x7c) === 0x7c) return true;
      return false;
    }
    case 'BF16': {
      for (let i = 1; i < out.length; i += 2) if ((out[i] & 0x7f) === 0x7f && (out[i - 1] & 0x80)) return true;
      return false;
    }
    case 'F8_E4M3': {
      for (let i = 0; i < out.length; i++) if ((out[i] & 0x7f) === 0x7f) return true;
      return false;
    }
    case 'F8_E5M2': {
      for (let i = 0; i < out.length; i++) if ((out[i] & 0x7c) === 0x7c) return true;
      return false;
    }
  }
}

export function nonFiniteError(name: string, dtype: FloatDType): MergeError {
  return new MergeError('NON_FINITE', `tensor "${name}": merged values are not finite (NaN or Inf in ${dtype})`);
}

/** Where an executor gets its output buffer of `bytes` (every byte of which it then writes). */
export type TakeOutput = (bytes: number) => Uint8Array;

export const freshOutput: TakeOutput = (bytes) => new Uint8Array(bytes);

/** A plain op on the calling thread's kernel, in blocks (bounded kernel memory, a chance to stop). */
export function mergePlainOnWasm(plan: PlainPlan, kernel: WasmKernel, stats: CertificationStats, signal?: AbortSignal,
  take: TakeOutput = freshOutput): Uint8Array {
  const { op, shape } = plan.p;
  const ob = DTYPE_BYTES[op.outDtype];
  const out = take(shape.rowCount * op.cols * ob);
  const kernelOut = plan.mode === 'f64-values' ? new Uint8Array(rowsPerBlock(plan) * op.cols * 8) : undefined;
  const step = rowsPerBlock(plan);
  let finite = true;
  for (let r0 = 0; r0 < shape.rowCount; r0 += step) {
    throwIfAborted(signal);
    const n = Math.min(step, shape.rowCount - r0);
    const target = out.subarray(r0 * op.cols * ob, (r0 + n) * op.cols * ob);
    const kOut = kernelOut ? kernelOut.subarray(0, n * op.cols * 8) : target;
    const job = planJob(plan, r0, n, !kernel.holds(rightKeyOf(plan)));
    const result = kernel.run(job, kOut);
    if (!finishJob(plan, r0, n, result.listed, kOut, target, stats) || !result.finite) finite = false;
  }
  if (!finite && !settleNonFinite(plan, out, stats)) throw nonFiniteError(op.name, op.outDtype);
  return out;
}

/**
 * Recomputes exactly every element the kernel left Inf or NaN, and says whether all are finite
 * now. The f32 kernel folds each term's scale into its f32 left factor: a scale past float32 (a
 * huge --weight times α/r) is Inf there, and Inf times a zero product is NaN, where the exact
 * W + s·B·A is W. Only runs when the kernel reported a non-finite result; stops at the first
 * element that is not finite exactly either (an overflow that really is one refuses at once).
 */
export function settleNonFinite(plan: { p: PlainOp; tf: TensorFactors }, out: Uint8Array, stats: CertificationStats): boolean {
  const { p, tf } = plan;
  const dtype = p.op.outDtype;
  const cols = p.op.cols;
  const n = out.byteLength / DTYPE_BYTES[dtype];
  for (let index = 0; index < n; index++) {
    if (!isSpecialBits(elementBits(out, dtype, index), dtype)) continue;
    const r = Math.floor(index / cols);
    const bits = exactElementBits(p, tf, r, index - r * cols, stats);
    // One element that is Inf or NaN exactly refuses the tensor: the rest need not be recomputed.
    if (isSpecialBits(bits, dtype)) return false;
    storeBits(out, dtype, index, bits);
  }
  return true;
}

/** The stored bits of element `index` of `out` (little-endian, as storeBits writes them). */
function elementBits(out: Uint8Array, dtype: FloatDType, index: number): number {
  const b = DTYPE_BYTES[dtype];
  const at = index * b;
  return b === 4 ? (out[at] | (out[at + 1] << 8) | (out[at + 2] << 16) | (out[at + 3] << 24)) >>> 0 : b === 2 ? out[at] | (out[at + 1] << 8) : out[at];
}

/**
 * A plain op in plain JavaScript, where WebAssembly SIMD is missing or forbidden: the f64 values
 * as the f64 kernel computes them (same bound), certified like `f64-values` jobs.
 */
export function mergePlainOnJs(p: PlainOp, stats: CertificationStats, signal?: AbortSignal): Uint8Array {
  const { op, shape } = p;
  const tf = tensorFactors(p, false, true);
  const bound = f64SumsBound(tf);
  const slab = slabFactors64(p, tf, 0, shape.rowCount, bound);
  const plan: PlainPlan = { p, tf, mode: 'f64-values', bound, slab, w: op.base, kernelOutBytes: 8 };
  const baseScale = p.baseScale && opBaseScale(p);
  const cols = op.cols, rank = tf.rank, stride = tf.stride;
  const out = new Uint8Array(shape.rowCount * cols * DTYPE_BYTES[op.outDtype]);
  const ob = DTYPE_BYTES[op.outDtype];
  const w = new Float64Array(cols);
  const values = new Float64Array(cols);
  const wb = DTYPE_BYTES[op.base.dtype];
  for (let r = 0; r < shape.rowCount; r++) {
    if ((r & 63) === 0) throwIfAborted(signal);
    decodeRow(op.base.data.subarray(r * cols * wb, (r + 1) * cols * wb), op.base.dtype, w);
    // W · f is exact in f64 (PlainOp.baseScale).
    if (baseScale?.axis === 'row') for (let c = 0; c < cols; c++) w[c] *= baseScale.factors[r];
    else if (baseScale) for (let c = 0; c < cols; c++) w[c] *= baseScale.factors[c];
    values.fill(0);
    for (let k = 0; k < rank; k++) {
      const l = slab.left[r * rank + k];
      if (l === 0) continue;
      const o = k * stride;
      for (let c = 0; c < cols; c++) values[c] += l * tf.right[o + c];
    }
    for (let c = 0; c < cols; c++) values[c] += w[c];
    certifyValues(plan, r, 1, values, out.subarray(r * cols * ob, (r + 1) * cols * ob), stats);
    stats.elements += cols;
  }
  if (holdsNonFinite(out, op.outDtype)) throw nonFiniteError(op.name, op.outDtype);
  return out;
}

const scratch = new DataView(new ArrayBuffer(8));
/** One row of W's bytes → f64 values (exact). */
function decodeRow(bytes: Uint8Array, dtype: FloatDType, out: Float64Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let c = 0; c < out.length; c++) {
    switch (dtype) {
      case 'F32': out[c] = view.getFloat32(c * 4, true); break;
      case 'BF16': scratch.setUint32(0, view.getUint16(c * 2, true) << 16); out[c] = scratch.getFloat32(0); break;
      default: out[c] = elementValue(bytes, dtype, c);
    }
  }
}

function asBytes(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

