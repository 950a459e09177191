/**
 * Q1_0: blocks of 128 values, 18 bytes: f16 d, then 16 bytes of sign bits (value j in bit j mod 8
 * of byte j / 8); x = d where the bit is set, −d where it is not (dequantize_row_q1_0).
 * Quantization (quantize_row_q1_0_ref): d = (Σ|x|, summed in f32 in order) / 128; the bit is set
 * for x ≥ 0 (−0 included, NaN not).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { f16Table, f32, putU16, toF16Bits, u16At } = cFloat;

const QK = 128;
const BYTES = 18;

export const Q1_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q1_0')!,
  ignoresImportance: true, // quantize_q1_0(…, quant_weights) does not use them
  decode(src, out) {
    const half = f16Table();
    for (let y = 0, at = 0; at < src.length; y += QK, at += BYTES) {
      const d = half[u16At(src, at)];
      for (let j = 0; j < QK; j++) out[y + j] = (src[at + 2 + (j >> 3)] >> (j & 7)) & 1 ? d : -d;
    }
  },
  encode(src, out) {
    for (let x = 0, at = 0; x < src.length; x += QK, at += BYTES) {
      let sumAbs = 0;
      for (let j = 0; j < QK; j++) sumAbs = f32(sumAbs + Math.abs(src[x + j]));
      putU16(out, at, toF16Bits(f32(sumAbs / QK)));
      for (let i = 0; i < QK / 8; i++) {
        let byte = 0;
        for (let bit = 0; bit < 8; bit++) if (src[x + 8 * i + bit] >= 0) byte |= 1 << bit;
        out[at + 2 + i] = byte;
      }
    }
  },
};
