/**
 * The CPU executor: row by row, acc = W row (f64); acc += left[r,k] · right[k,:] for every k (eight
 * ranks per sweep over the row, which stays in cache: fewer loads and stores of acc); optional DoRA;
 * each element rounded once to the output dtype. Browser-safe (no Node imports).
 */
import { decodeToF32, DTYPE_BYTES, f32BitsToBf16Bits, f32BitsToF16Bits, type FloatDType } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { MergeOp } from '../merge-op.js';
import { checkOp } from '../op-shape.js';
import { lowRankFactors } from '../low-rank-factors.js';
import { f64ToBf16Bits, f64ToF16Bits, f64ToF8Bits } from './round-f64.js';

/** acc[0..cols) += Σ_k left[k] · right[k, :] */
export function addLowRank(acc: Float64Array, left: Float32Array, l0: number, right: Float32Array, rank: number, cols: number): void {
  let k = 0;
  for (; k + 8 <= rank; k += 8) {
    const c0 = left[l0 + k], c1 = left[l0 + k + 1], c2 = left[l0 + k + 2], c3 = left[l0 + k + 3];
    const c4 = left[l0 + k + 4], c5 = left[l0 + k + 5], c6 = left[l0 + k + 6], c7 = left[l0 + k + 7];
    const o = k * cols;
    for (let i = 0; i < cols; i++) {
      const j = o + i;
      acc[i] += c0 * right[j] + c1 * right[j + cols] + c2 * right[j + 2 * cols] + c3 * right[j + 3 * cols]
        + c4 * right[j + 4 * cols] + c5 * right[j + 5 * cols] + c6 * right[j + 6 * cols] + c7 * right[j + 7 * cols];
    }
  }
  for (; k + 4 <= rank; k += 4) {
    const c0 = left[l0 + k], c1 = left[l0 + k + 1], c2 = left[l0 + k + 2], c3 = left[l0 + k + 3];
    const o0 = k * cols, o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols;
    for (let i = 0; i < cols; i++) {
      acc[i] += c0 * right[o0 + i] + c1 * right[o1 + i] + c2 * right[o2 + i] + c3 * right[o3 + i];
    }
  }
  for (; k < rank; k++) {
    const c = left[l0 + k];
    const o = k * cols;
    for (let i = 0; i < cols; i++) acc[i] += c * right[o + i];
  }
}

let scratch = new Float32Array(0);
function rowScratch(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch;
}

/** The smallest double that rounds to Infinity in f32: 2^128 − 2^103 (halfway past the largest f32). */
const F32_ROUNDS_TO_INF = 2 ** 128 - 2 ** 103;

/** Writes acc (times `scale`, or times colScale[i] when given) into out; false if any result is not finite. */
/** An output buffer of `n` elements in the typed array storeRow writes for `dtype`. */
export function outputRows(dtype: FloatDType, n: number): Float32Array | Uint16Array | Uint8Array {
  const bytes = DTYPE_BYTES[dtype];
  return bytes === 4 ? new Float32Array(n) : bytes === 2 ? new Uint16Array(n) : new Uint8Array(n);
}

export function storeRow(acc: Float64Array, scale: number, colScale: Float64Array | undefined, dtype: FloatDType,
  out: Float32Array | Uint16Array | Uint8Array, o: number): boolean {
  const n = acc.length;
  if (colScale) for (let i = 0; i < n; i++) acc[i] *= colScale[i];
  else if (scale !== 1) for (let i = 0; i < n; i++) acc[i] *= scale;
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    // Saturating: only NaN (and e5m2's Inf, from an infinite input) is not finite.
    const special = dtype === 'F8_E4M3' ? 0x7f : 0x7c;
    let finite = true;
    for (let i = 0; i < n; i++) {
      const h = f64ToF8Bits(acc[i], dtype);
      out[o + i] = h;
      if ((h & special) === special) finite = false;
    }
    return finite;
  }
  if (dtype === 'F32') {
    let finite = true;
    for (let i = 0; i < n; i++) {
      const v = acc[i];
      out[o + i] = v; // rounds to f32, nearest even
      if (!(Math.abs(v) < F32_ROUNDS_TO_INF)) finite = false; // also catches NaN
    }
    return finite;
  }
  // Round to f32 in bulk (typed-array stores), then narrow the f32 bits; only values whose f32 lands
  // exactly on a tie of the narrow format (or outside f16's normal range) take the exact slow path.
  const f32 = rowScratch(n);
  const bits = new Uint32Array(f32.buffer, 0, n);
  for (let i = 0; i < n; i++) f32[i] = acc[i];
  let special = 0;
  if (dtype === 'F16') {
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      const e = (b >>> 23) & 0xff;
      const h = e >= 113 && e < 0xff && (b & 0x1fff) !== 0x1000 ? f32BitsToF16Bits(b) : f64ToF16Bits(acc[i]);
      out[o + i] = h;
      special |= (h & 0x7c00) === 0x7c00 ? 1 : 0;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      const h = (b & 0xffff) !== 0x8000 ? f32BitsToBf16Bits(b) : f64ToBf16Bits(acc[i]);
      out[o + i] = h;
      special |= (h & 0x7f80) === 0x7f80 ? 1 : 0;
    }
  }
  return special === 0;
}

export function mergeOnCpu(op: MergeOp, signal?: AbortSignal): Uint8Array {
  const shape = checkOp(op);
  const { rowCount, rowStart } = shape;
  const cols = op.cols;
  const { rank, left, right } = lowRankFactors(op, shape);
  const rowBytes = cols * DTYPE_BYTES[op.base.dtype];
  // f32 rows are read in place; f16/bf16 rows are decoded one at a time (no whole-tensor copy).
  const w32 = op.base.dtype === 'F32' && op.base.data.byteOffset % 4 === 0
    ? new Float32Array(op.base.data.buffer, op.base.data.byteOffset, rowCount * cols)
    : undefined;
  const out = outputRows(op.outDtype, rowCount * cols);
  const acc = new Float64Array(cols);
  const rowValues = (r: number): void => {
    if (w32) {
      for (let i = 0, o = r * cols; i < cols; i++) acc[i] = w32[o + i];
    } else {
      const w = decodeToF32(op.base.data.subarray(r * rowBytes, (r + 1) * rowBytes), op.base.dtype);
      for (let i = 0; i < cols; i++) acc[i] = w[i];
    }
    addLowRank(acc, left, r * rank, right, rank, cols);
  };

  let magnitude: Float32Array | undefined;
  let colScale: Float64Array | undefined;
  if (op.dora) {
    magnitude = decodeToF32(op.dora.magnitude.data, op.dora.magnitude.dtype);
    if (shape.doraNorm === 'col') {
      // Norms over whole columns: one sweep for the sums of squares, a second one writes.
      const ss = new Float64Array(cols);
      for (let r = 0; r < rowCount; r++) {
        if ((r & 63) === 0) throwIfAborted(signal);
        rowValues(r);
        for (let i = 0; i < cols; i++) ss[i] += acc[i] * acc[i];
      }
      colScale = new Float64Array(cols);
      for (let i = 0; i < cols; i++) colScale[i] = magnitude[i] / (Math.sqrt(ss[i]) + op.dora.epsilon);
    }
  }

  let finite = true;
  for (let r = 0; r < rowCount; r++) {
    if ((r & 63) === 0) throwIfAborted(signal);
    rowValues(r);
    let scale = 1;
    if (magnitude && shape.doraNorm === 'row') {
      let ss = 0;
      for (let i = 0; i < cols; i++) ss += acc[i] * acc[i];
      scale = magnitude[rowStart + r] / (Math.sqrt(ss) + op.dora!.epsilon);
    }
    if (!storeRow(acc, scale, colScale, op.outDtype, out, r * cols)) finite = false;
  }
  if (!finite) {
    throw new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
  }
  return new Uint8Array(out.buffer);
}
