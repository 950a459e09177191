/** Reading adapter tensors as the algorithms' f32 matrices, and handing factors to the engine. */
import { decodeToF32 } from '../../dtype.js';
import type { ExactFactors, FloatTensorBytes } from '../../engine/merge-op.js';
import type { Factors } from '../../algorithms/math/low-rank-forms.js';
import { matrix, type Matrix } from '../../algorithms/math/matrix.js';
import { readFloat } from '../read-float.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';

/** A tensor as a matrix of its first dim × the rest (a conv factor flattened), or `rows` × the rest. */
export async function readMatrix(file: SafetensorsFile, entry: TensorEntry, rows = entry.shape[0] ?? 1): Promise<Matrix> {
  const t = await readFloat(file, entry);
  const values = decodeToF32(t.data, t.dtype);
  return { rows, cols: values.length / rows, data: values };
}

/** A tensor's values as f32. */
export async function readValues(file: SafetensorsFile, entry: TensorEntry): Promise<Float32Array> {
  const t = await readFloat(file, entry);
  return decodeToF32(t.data, t.dtype);
}

export function f32Bytes(values: Float32Array): FloatTensorBytes {
  return { dtype: 'F32', data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** The engine's low-rank piece for factors B·A (with their float64 values where f32 rounds them). */
export function lowRankPiece(f: Factors): { kind: 'low-rank'; a: FloatTensorBytes; b: FloatTensorBytes; rank: number; exact?: ExactFactors } {
  const piece = { kind: 'low-rank' as const, a: f32Bytes(f.a.data), b: f32Bytes(f.b.data), rank: f.b.cols };
  return f.exact ? { ...piece, exact: { a: f.exact.a, b: f.exact.b } } : piece;
}

export { matrix };
export type { Matrix };

/** Rows of a stored tensor viewed as (first dim, rest), read on demand (F64 rounded to f32). */
export function denseRows(file: SafetensorsFile, entry: TensorEntry): (rowStart: number, rowCount: number) => Promise<FloatTensorBytes> {
  const rows = entry.shape.length === 0 ? 1 : entry.shape[0];
  const rowBytes = entry.byteLength / Math.max(rows, 1);
  return async (rowStart, rowCount) => {
    const data = await file.readPart(entry, rowStart * rowBytes, rowCount * rowBytes);
    if (entry.dtype === 'F32' || entry.dtype === 'F16' || entry.dtype === 'BF16') return { dtype: entry.dtype, data };
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out = new Float32Array(data.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
    return f32Bytes(out);
  };
}

/** An integer tensor's values (U8, I8, I16, I32, I64; PEFT saves indices in the smallest that holds them), or null for another dtype. */
export async function readIntegers(file: SafetensorsFile, entry: TensorEntry): Promise<Float64Array | null> {
  const size = ({ U8: 1, I8: 1, I16: 2, I32: 4, I64: 8 } as Record<string, number>)[entry.dtype];
  if (size === undefined) return null;
  const data = await file.read(entry);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float64Array(data.byteLength / size);
  for (let i = 0; i < out.length; i++) {
    const at = i * size;
    out[i] = size === 1 ? (entry.dtype === 'U8' ? view.getUint8(at) : view.getInt8(at)) : size === 2 ? view.getInt16(at, true) : size === 4 ? view.getInt32(at, true) : Number(view.getBigInt64(at, true));
  }
  return out;
}
