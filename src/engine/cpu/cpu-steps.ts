/**
 * The CPU executor for any sequence of update steps (update-steps.ts): the op's rows held as f64,
 * each step applied to all of them in order, then every element rounded once to the output dtype.
 * The reference semantics for the other executors, and the fallback where they have no kernel.
 * Browser-safe (no Node imports).
 */
import { decodeToF32, DTYPE_BYTES } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { FloatTensorBytes, MergeOp } from '../merge-op.js';
import { checkOp, type OpShape } from '../op-shape.js';
import { lowRankFactors } from '../low-rank-factors.js';
import { needsColumnNorms, storedAxis, type UpdateStep } from '../update-steps.js';
import { addLowRank, outputRows, storeRow } from './cpu-merge.js';
import { columnFactors } from '../column-norms.js';
import { applyPermutedBlocks } from './cpu-permuted-blocks.js';

const f32 = (t: FloatTensorBytes): Float32Array => decodeToF32(t.data, t.dtype);

/** V for the op's rows after every step, f64, row-major rowCount × cols. */
export function stepValues(op: MergeOp, shape: OpShape, signal?: AbortSignal): Float64Array {
  const { rowCount } = shape;
  const cols = op.cols;
  const v = new Float64Array(rowCount * cols);
  const rowBytes = cols * DTYPE_BYTES[op.base.dtype];
  for (let r = 0; r < rowCount; r += 256) {
    const n = Math.min(256, rowCount - r);
    v.set(decodeToF32(op.base.data.subarray(r * rowBytes, (r + n) * rowBytes), op.base.dtype), r * cols);
  }
  for (const step of shape.steps) {
    throwIfAborted(signal);
    applyStep(op, shape, v, step);
  }
  return v;
}

export function mergeStepsOnCpu(op: MergeOp, signal?: AbortSignal): Uint8Array {
  const shape = checkOp(op);
  const v = stepValues(op, shape, signal);
  const cols = op.cols;
  const out = outputRows(op.outDtype, shape.rowCount * cols);
  let finite = true;
  for (let r = 0; r < shape.rowCount; r++) {
    if (!storeRow(v.subarray(r * cols, (r + 1) * cols), 1, undefined, op.outDtype, out, r * cols)) finite = false;
  }
  if (!finite) {
    throw new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
  }
  return new Uint8Array(out.buffer);
}

/** Σ over the op's rows of V² per stored column (the first pass of norms that run across rows). */
export function columnSumsOfSquaresOnCpu(op: MergeOp, signal?: AbortSignal): Float64Array {
  const shape = checkOp(op);
  const v = stepValues(op, shape, signal);
  const cols = op.cols;
  const ss = new Float64Array(cols);
  for (let r = 0; r < shape.rowCount; r++) {
    for (let c = 0, o = r * cols; c < cols; c++) ss[c] += v[o + c] * v[o + c];
  }
  return ss;
}

function applyStep(op: MergeOp, shape: OpShape, v: Float64Array, step: UpdateStep): void {
  const { rowStart, rowCount } = shape;
  const cols = op.cols;
  switch (step.kind) {
    case 'add': {
      if (step.terms.length > 0) {
        const { rank, left, right } = lowRankFactors(op, shape, step.terms);
        for (let r = 0; r < rowCount; r++) addLowRank(v.subarray(r * cols, (r + 1) * cols), left, r * rank, right, rank, cols);
      }
      for (const d of step.dense ?? []) {
        const values = f32(d.values);
        for (let i = 0; i < v.length; i++) v[i] += d.scale * values[i];
      }
      return;
    }
    case 'scale':
      scaleAxis(op, shape, v, storedAxis(op, step.axis), Float64Array.from(f32(step.factors)));
      return;
    case 'dora': {
      const m = f32(step.dora.magnitude);
      const eps = step.dora.epsilon;
      if (needsColumnNorms(op, step)) {
        const ss = new Float64Array(cols);
        for (let r = 0; r < rowCount; r++) for (let c = 0, o = r * cols; c < cols; c++) ss[c] += v[o + c] * v[o + c];
        scaleAxis(op, shape, v, 'col', columnFactors(step.dora, ss));
      } else {
        for (let r = 0; r < rowCount; r++) {
          let ss = 0;
          for (let c = 0, o = r * cols; c < cols; c++) ss += v[o + c] * v[o + c];
          const f = m[rowStart + r] / (Math.sqrt(ss) + eps);
          for (let c = 0, o = r * cols; c < cols; c++) v[o + c] *= f;
        }
      }
      return;
    }
    case 'self': {
      // Each stored row is an input vector x: x += s · (x·P)·Q.
      const p = f32(step.p), q = f32(step.q), k = step.rank;
      const t = new Float64Array(k);
      for (let r = 0; r < rowCount; r++) {
        const o = r * cols;
        t.fill(0);
        for (let c = 0; c < cols; c++) {
          const x = v[o + c];
          for (let j = 0; j < k; j++) t[j] += x * p[c * k + j];
        }
        for (let j = 0; j < k; j++) t[j] *= step.scale;
        for (let c = 0; c < cols; c++) {
          let d = 0;
          for (let j = 0; j < k; j++) d += t[j] * q[j * cols + c];
          v[o + c] += d;
        }
      }
      return;
    }
    case 'rotate': {
      const m = f32(step.blocks);
      const b = step.blockSize;
      const x = new Float64Array(b);
      if (storedAxis(op, step.axis) === 'col') {
        for (let r = 0; r < rowCount; r++) {
          for (let k0 = 0; k0 < cols; k0 += b) {
            const o = r * cols + k0;
            for (let n = 0; n < b; n++) x[n] = v[o + n];
            const mk = k0 * b; // block k0 / b starts at (k0 / b) · b²
            for (let i = 0; i < b; i++) {
              let s = 0;
              for (let n = 0; n < b; n++) s += m[mk + i * b + n] * x[n];
              v[o + i] = s;
            }
          }
        }
      } else {
        // Blocks of b stored rows; the slab starts on a block boundary (checked by checkOp).
        const rowsOut = new Float64Array(b * cols);
        for (let r0 = 0; r0 < rowCount; r0 += b) {
          const mk = (rowStart + r0) * b;
          rowsOut.fill(0);
          for (let i = 0; i < b; i++) {
            for (let n = 0; n < b; n++) {
              const w = m[mk + i * b + n];
              if (w === 0) continue;
              const src = (r0 + n) * cols, dst = i * cols;
              for (let c = 0; c < cols; c++) rowsOut[dst + c] += w * v[src + c];
            }
          }
          v.set(rowsOut, r0 * cols);
        }
      }
      return;
    }
    case 'permuted-blocks':
      applyPermutedBlocks(op, shape, v, step);
      return;
  }
}

function scaleAxis(op: MergeOp, shape: OpShape, v: Float64Array, axis: 'row' | 'col', f: Float64Array): void {
  const cols = op.cols;
  for (let r = 0; r < shape.rowCount; r++) {
    const o = r * cols;
    if (axis === 'row') {
      const s = f[shape.rowStart + r];
      for (let c = 0; c < cols; c++) v[o + c] *= s;
    } else {
      for (let c = 0; c < cols; c++) v[o + c] *= f[c];
    }
  }
}
