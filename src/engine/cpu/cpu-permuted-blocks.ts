/**
 * The CPU executor of permuted block maps (permuted-blocks.ts) on V held as f64: along stored
 * columns each row is gathered, mapped block by block and scattered back; along stored rows each
 * block gathers its b rows (all inside the slab: runs are never split), maps them and writes them
 * back to the same rows. Browser-safe.
 */
import { decodeToF32 } from '../../dtype.js';
import type { MergeOp } from '../merge-op.js';
import type { OpShape } from '../op-shape.js';
import type { PermutedBlocksStep } from '../permuted-blocks.js';
import { storedAxis } from '../update-steps.js';

export function applyPermutedBlocks(op: MergeOp, shape: OpShape, v: Float64Array, step: PermutedBlocksStep): void {
  const m = decodeToF32(step.blocks.data, step.blocks.dtype);
  const b = step.blockSize;
  const cols = op.cols;
  const sigma = step.gather;
  const at = (p: number) => (sigma ? sigma[p] : p);
  if (storedAxis(op, step.axis) === 'col') {
    const n = cols;
    const z = new Float64Array(n);
    for (let r = 0; r < shape.rowCount; r++) {
      const o = r * cols;
      for (let p = 0; p < n; p++) z[p] = v[o + at(p)];
      for (let k0 = 0; k0 < n; k0 += b) {
        const size = Math.min(b, n - k0);
        const mk = k0 * b; // block k0 / b starts at (k0 / b)·b² values
        for (let i = 0; i < size; i++) {
          let s = 0;
          for (let j = 0; j < size; j++) s += m[mk + i * b + j] * z[k0 + j];
          v[o + at(k0 + i)] = s;
        }
      }
    }
    return;
  }
  // Stored rows: the slab holds whole runs, so each block's rows are inside it.
  const { rowStart, rowCount } = shape;
  const n = op.rows;
  const input = new Float64Array(b * cols);
  const output = new Float64Array(b * cols);
  const first = rowStart, last = Math.min(n, rowStart + rowCount);
  for (let k0 = first; k0 < last; k0 += b) {
    const size = Math.min(b, n - k0);
    for (let j = 0; j < size; j++) input.set(v.subarray((at(k0 + j) - rowStart) * cols, (at(k0 + j) - rowStart + 1) * cols), j * cols);
    output.fill(0);
    const mk = k0 * b;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const w = m[mk + i * b + j];
        if (w === 0) continue;
        for (let c = 0; c < cols; c++) output[i * cols + c] += w * input[j * cols + c];
      }
    }
    for (let i = 0; i < size; i++) v.set(output.subarray(i * cols, (i + 1) * cols), (at(k0 + i) - rowStart) * cols);
  }
}
