/** F32, F16 and BF16 tensors as block codecs of one element per block (conversions from dtype.ts). */
import { decodeToF32, encodeFromF32, type FloatDType } from '../../../dtype.js';
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';

function floatCodec(dtype: FloatDType): BlockCodec {
  return {
    type: ggmlTypeByName(dtype)!,
    ignoresImportance: true, // converted, not quantized
    decode(src, out) {
      out.set(decodeToF32(src, dtype));
    },
    encode(src, out) {
      out.set(encodeFromF32(src, dtype));
    },
  };
}

export const F32_CODEC = floatCodec('F32');
export const F16_CODEC = floatCodec('F16');
export const BF16_CODEC = floatCodec('BF16');
