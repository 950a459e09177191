/**
 * PEFT trainable tokens (tuners/trainable_tokens/layer.py): merging copies each saved delta row
 * into the embedding at its token index (`index_copy`), replacing the row; nothing is added. The
 * plan lists the rows per tensor; a slab of the tensor is rewritten here, rounded once to the
 * output dtype, with no backend involved.
 */
import { decodeToF32, encodeFromF32, type DType, type FloatDType } from '../dtype.js';
import type { SafetensorsFile, TensorEntry } from '../formats/safetensors-types.js';
import { readFloat } from '../formats/read-float.js';
import type { PlannedReplacement } from './merge-plan.js';

export interface RowSetTerm {
  adapterIndex: number;
  adapter: string;
  file: SafetensorsFile;
  /** (indices.length, cols): row i goes to row indices[i]. */
  delta: TensorEntry;
  indices: readonly number[];
}

/** Rows of one tensor set by one or more adapters (on disjoint rows). */
export interface PlannedRowSet {
  baseKey: string;
  /** The dtype of the values the rows are set in (the base's, or the start tensor's). */
  dtype: FloatDType;
  shape: number[];
  /** The tensor the other rows come from when the adapter saved one (a resized embedding). */
  source?: PlannedReplacement;
  terms: RowSetTerm[];
}

/** The deltas, read once per tensor: row index → its values. */
export async function loadRowValues(rowSet: PlannedRowSet): Promise<Map<number, Float32Array>> {
  const cols = rowSet.shape[1];
  const rows = new Map<number, Float32Array>();
  for (const t of rowSet.terms) {
    const { dtype, data } = await readFloat(t.file, t.delta);
    const values = decodeToF32(data, dtype);
    t.indices.forEach((row, i) => rows.set(row, values.subarray(i * cols, (i + 1) * cols)));
  }
  return rows;
}

/** Rows [rowStart, rowStart + n) of the tensor: `slab` as stored, with the set rows replaced. */
export function setRows(
  slab: Uint8Array, dtype: DType, rowStart: number, cols: number, rows: ReadonlyMap<number, Float32Array>, outDtype: FloatDType,
): Uint8Array {
  const values = Float32Array.from(decodeToF32(slab, dtype as FloatDType));
  const n = values.length / cols;
  for (let i = 0; i < n; i++) {
    const row = rows.get(rowStart + i);
    if (row) values.set(row, i * cols);
  }
  return encodeFromF32(values, outDtype);
}
