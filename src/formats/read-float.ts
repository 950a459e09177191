/** Reading adapter tensors as float bytes the engine takes. */
import { isFloatDType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { MergeError } from '../errors.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** One tensor as float bytes; F64 tensors are rounded to f32 once (the engine computes in f32+). */
export async function readFloat(file: SafetensorsFile, entry: TensorEntry): Promise<FloatTensorBytes> {
  const data = await file.read(entry);
  if (isFloatDType(entry.dtype)) return { dtype: entry.dtype, data };
  if (entry.dtype === 'F64') {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out = new Float32Array(data.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
    return { dtype: 'F32', data: new Uint8Array(out.buffer) };
  }
  // The plan rejects these already; this guards plans built by hand.
  throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: tensor "${entry.name}" is ${entry.dtype}, not a float`);
}
