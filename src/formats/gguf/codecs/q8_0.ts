/**
 * Q8_0: blocks of 32 values, 34 bytes: f16 d, then 32 int8 q; x = q·d.
 * Quantization (quantize_row_q8_0_ref): d = max|x| / 127, q = roundf(x / d).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, f16Table, f32, putU16, roundf, toF16Bits, truncToInt, u16At } = cFloat;

const QK = 32;
const BYTES = 34;

export const Q8_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q8_0')!,
  ignoresImportance: true, // quantize_q8_0(…, quant_weights) ignores them
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const y = b * QK;
      for (let j = 0; j < QK; j++) out[y + j] = f32(((src[at + 2 + j] << 24) >> 24) * d);
    }
  },
  encode(src, out) {
    const n = src.length / QK;
    for (let b = 0; b < n; b++) {
      const x = b * QK;
      const at = b * BYTES;
      let amax = 0;
      for (let j = 0; j < QK; j++) amax = cmax(amax, Math.abs(src[x + j]));
      const d = f32(amax / 127);
      const id = d ? f32(1 / d) : 0;
      putU16(out, at, toF16Bits(d));
      for (let j = 0; j < QK; j++) out[at + 2 + j] = truncToInt(roundf(f32(src[x + j] * id))) & 0xff;
    }
  },
};
