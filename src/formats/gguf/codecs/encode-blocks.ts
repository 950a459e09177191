/** Encodes f32 values into whole blocks of a GGML type by its codec (for worker threads too). */
import { MergeError } from '../../../errors.js';
import { ggmlTypeByName } from '../ggml-types.js';
import { blockCodec } from './registry.js';
import type { WeightedRows } from '../../../engine/merge-op.js';

/** Whole blocks of `typeName` from f32 values, as the type's reference quantizer writes them. */
export function encodeBlocksInto(typeName: string, values: Float32Array, out: Uint8Array): void {
  const type = ggmlTypeByName(typeName);
  const codec = type && blockCodec(type);
  if (!codec?.encode) throw new MergeError('UNSUPPORTED_FORMAT', `cannot write GGML type ${typeName}`);
  codec.encode(values, out);
}

/**
 * Whole rows of `typeName` quantized with importance weights (the type's quantize_row_*_impl, a
 * row at a time; see WeightedRows for which weights a row takes).
 */
export function encodeWeightedRowsInto(typeName: string, values: Float32Array, out: Uint8Array, w: WeightedRows): void {
  const type = ggmlTypeByName(typeName);
  const codec = type && blockCodec(type);
  if (!type || !codec?.encodeWeighted) throw new MergeError('UNSUPPORTED_FORMAT', `loramerge does not quantize ${typeName} with an importance matrix`);
  const { cols, rowsPerExpert, firstRow, weights } = w;
  const rowBytes = (cols / type.blockSize) * type.blockBytes;
  for (let r = 0; r < values.length / cols; r++) {
    const e = Math.floor((firstRow + r) / rowsPerExpert);
    codec.encodeWeighted(values.subarray(r * cols, (r + 1) * cols), out.subarray(r * rowBytes, (r + 1) * rowBytes), weights.subarray(e * cols, (e + 1) * cols));
  }
}
