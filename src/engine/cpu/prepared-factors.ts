/**
 * The factors of an op in the form the WASM kernel reads: left for the op's rows, right padded to
 * the kernel's tile width. The pipeline hands every slab of a tensor the same `terms` array, so the
 * padded right factor is cached per array and gets a key: a kernel (or worker) holding that key
 * does not need it again.
 */
import type { LowRankTerm, MergeOp } from '../merge-op.js';
import type { OpShape } from '../op-shape.js';
import { lowRankFactors } from '../low-rank-factors.js';
import { paddedCols } from './wasm-kernel.js';

export interface PreparedFactors {
  rank: number;
  left: Float32Array;
  right: Float32Array;
  rightKey: number;
}

interface CachedRight {
  layout: MergeOp['layout'];
  cols: number;
  rank: number;
  /** Which of the terms it was built from (slabs of a fused tensor may use different subsets). */
  active: string;
  right: Float32Array;
  key: number;
}

const cache = new WeakMap<LowRankTerm[], CachedRight>();
let nextKey = 1;

export function prepareFactors(op: MergeOp, shape: OpShape): PreparedFactors {
  const { rank, left, right, activeTerms } = lowRankFactors(op, shape);
  const active = activeTerms.join();
  const hit = cache.get(op.terms);
  if (hit && hit.layout === op.layout && hit.cols === op.cols && hit.rank === rank && hit.active === active) {
    return { rank, left, right: hit.right, rightKey: hit.key };
  }
  const cols = op.cols, stride = paddedCols(cols);
  let padded = right;
  if (stride !== cols) {
    padded = new Float32Array(rank * stride);
    for (let k = 0; k < rank; k++) padded.set(right.subarray(k * cols, (k + 1) * cols), k * stride);
  }
  const entry: CachedRight = { layout: op.layout, cols, rank, active, right: padded, key: nextKey++ };
  cache.set(op.terms, entry);
  return { rank, left, right: padded, rightKey: entry.key };
}
