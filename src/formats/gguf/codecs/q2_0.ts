/**
 * Q2_0: blocks of 64 values, 18 bytes: f16 d, then 16 bytes of 2-bit codes (value j in bits
 * 2·(j mod 4) of byte j / 4); x = (q − 1)·d, so the levels are −d, 0, d and 2d
 * (dequantize_row_q2_0).
 * Quantization (quantize_row_q2_0_ref): d = the largest |x| (NaN never wins), id = 1/d (0 when
 * d = 0), q = (int)roundf(x·id) + 1 clamped to 0–3. The codes come from the f32 d, not the
 * stored f16 one, as in C.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { f16Table, f32, putU16, roundf, toF16Bits, truncToInt, u16At } = cFloat;

const QK = 64;
const BYTES = 18;

export const Q2_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q2_0')!,
  ignoresImportance: true, // quantize_q2_0(…, quant_weights) does not use them
  decode(src, out) {
    const half = f16Table();
    for (let y = 0, at = 0; at < src.length; y += QK, at += BYTES) {
      const d = half[u16At(src, at)];
      for (let j = 0; j < QK; j++) out[y + j] = f32((((src[at + 2 + (j >> 2)] >> (2 * (j & 3))) & 3) - 1) * d);
    }
  },
  encode(src, out) {
    for (let x = 0, at = 0; x < src.length; x += QK, at += BYTES) {
      let amax = 0;
      for (let j = 0; j < QK; j++) {
        const a = Math.abs(src[x + j]);
        if (a > amax) amax = a;
      }
      const id = amax > 0 ? f32(1 / amax) : 0;
      putU16(out, at, toF16Bits(amax));
      for (let i = 0; i < QK / 4; i++) {
        let byte = 0;
        for (let k = 0; k < 4; k++) {
          // (int) of NaN or of a value out of int's range: INT_MIN, as x86 converts it (then clamped to 0).
          const q = truncToInt(roundf(f32(src[x + 4 * i + k] * id))) + 1;
          byte |= (q < 0 ? 0 : q > 3 ? 3 : q) << (2 * k);
        }
        out[at + 2 + i] = byte;
      }
    }
  },
};
