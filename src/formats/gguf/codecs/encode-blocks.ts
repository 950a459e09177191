/** Encodes f32 values into whole blocks of a GGML type by its codec (for worker threads too). */
import { MergeError } from '../../../errors.js';
import { ggmlTypeByName } from '../ggml-types.js';
import { blockCodec } from './registry.js';

export function encodeBlocksInto(typeName: string, values: Float32Array, out: Uint8Array): void {
  const type = ggmlTypeByName(typeName);
  const codec = type && blockCodec(type);
  if (!codec?.encode) throw new MergeError('UNSUPPORTED_FORMAT', `cannot write GGML type ${typeName}`);
  codec.encode(values, out);
}
