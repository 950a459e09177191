/**
 * The first pass of DoRA norms that run across stored rows, for a tensor streamed in row slabs:
 * every slab of W is read again, V before the DoRA step is computed by the backend, and its squares
 * are summed per column; the DoRA step becomes fixed per-column factors. One pass per such step,
 * one slab in memory at a time.
 */
import type { FloatDType } from '../dtype.js';
import { throwIfAborted } from '../errors.js';
import { columnSumsOfSquaresOnCpu } from '../engine/cpu/cpu-steps.js';
import { resolveColumnNorms } from '../engine/column-norms.js';
import type { MergeBackend, MergeOp } from '../engine/merge-op.js';
import { slabOp, slabSteps, type LoadedStep } from '../plan/load-steps.js';

export interface StreamedTensor {
  name: string;
  rows: number;
  cols: number;
  layout: MergeOp['layout'];
  dtype: FloatDType;
  /** The stored rows [rowStart, rowStart + rowCount), as bytes. */
  readRows(rowStart: number, rowCount: number): Promise<Uint8Array>;
}

export async function resolveStreamedNorms(
  tensor: StreamedTensor, steps: LoadedStep[], rowsPerSlab: number, backend: MergeBackend, signal?: AbortSignal,
): Promise<LoadedStep[]> {
  return resolveColumnNorms<LoadedStep>(tensor, steps, async (prefix) => {
    const sums = new Float64Array(tensor.cols);
    for (let r0 = 0; r0 < tensor.rows; r0 += rowsPerSlab) {
      throwIfAborted(signal);
      const n = Math.min(rowsPerSlab, tensor.rows - r0);
      const op = slabOp({
        name: tensor.name, rows: tensor.rows, cols: tensor.cols, layout: tensor.layout, outDtype: 'F32',
        base: { dtype: tensor.dtype, data: await tensor.readRows(r0, n) }, rowStart: r0, rowCount: n,
      }, await slabSteps(prefix, r0, n));
      const part = backend.columnSumsOfSquares ? await backend.columnSumsOfSquares(op, signal) : columnSumsOfSquaresOnCpu(op, signal);
      for (let c = 0; c < tensor.cols; c++) sums[c] += part[c];
    }
    return sums;
  });
}
