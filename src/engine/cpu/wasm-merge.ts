/**
 * The WASM executor on the calling thread: the op's rows in blocks (bounded kernel memory, and a
 * chance to stop between blocks), each merged by the SIMD kernel. DoRA ops are not handled here
 * (they need norms of the merged rows before rounding): the backend sends them to the JS executor.
 */
import { DTYPE_BYTES } from '../../dtype.js';
import { MergeError, throwIfAborted } from '../../errors.js';
import type { MergeOp } from '../merge-op.js';
import { checkOp } from '../op-shape.js';
import { prepareFactors, type PreparedFactors } from './prepared-factors.js';
import type { RowJob, WasmKernel } from './wasm-kernel.js';

/** About this many bytes of W per block on the calling thread: small enough to stay in cache. */
const BLOCK_BYTES = 256 * 1024;

/** Rows per block of at most `blockBytes` of W or output (a multiple of 4, the kernel's tile height). */
export function rowsPerBlock(op: MergeOp, blockBytes = BLOCK_BYTES): number {
  const rowBytes = op.cols * Math.max(DTYPE_BYTES[op.base.dtype], DTYPE_BYTES[op.outDtype]);
  return Math.max(4, Math.floor(blockBytes / rowBytes / 4) * 4);
}

/** The job for rows [r0, r0 + n) of the op's slab. */
export function rowJob(op: MergeOp, f: PreparedFactors, r0: number, n: number, withRight: boolean): RowJob {
  const wb = DTYPE_BYTES[op.base.dtype];
  return {
    w: op.base.data.subarray(r0 * op.cols * wb, (r0 + n) * op.cols * wb),
    wDtype: op.base.dtype,
    outDtype: op.outDtype,
    rows: n,
    cols: op.cols,
    rank: f.rank,
    left: f.left.subarray(r0 * f.rank, (r0 + n) * f.rank),
    rightKey: f.rightKey,
    right: withRight ? f.right : undefined,
  };
}

export function nonFiniteError(op: MergeOp): MergeError {
  return new MergeError('NON_FINITE', `tensor "${op.name}": merged values are not finite (NaN or Inf in ${op.outDtype})`);
}

export function mergeOnWasm(op: MergeOp, kernel: WasmKernel, signal?: AbortSignal): Uint8Array {
  const shape = checkOp(op);
  const f = prepareFactors(op, shape);
  const ob = DTYPE_BYTES[op.outDtype];
  const out = new Uint8Array(shape.rowCount * op.cols * ob);
  const step = rowsPerBlock(op);
  let finite = true;
  for (let r0 = 0; r0 < shape.rowCount; r0 += step) {
    throwIfAborted(signal);
    const n = Math.min(step, shape.rowCount - r0);
    const target = out.subarray(r0 * op.cols * ob, (r0 + n) * op.cols * ob);
    if (!kernel.run(rowJob(op, f, r0, n, !kernel.holds(f.rightKey)), target)) finite = false;
  }
  if (!finite) throw nonFiniteError(op);
  return out;
}
