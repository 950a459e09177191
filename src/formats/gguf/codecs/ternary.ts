/**
 * TQ1_0 and TQ2_0 (decoded only), ternary weights: x = (q − 1)·d with q ∈ {0, 1, 2}, as ggml's
 * dequantize_row_tq* computes it.
 * - TQ2_0 (66 bytes): 64 bytes of 2-bit q (value 32·(4i + l)… of each 128: bits 2l of byte
 *   32i + m), f16 d.
 * - TQ1_0 (54 bytes): 48 bytes holding 5 values each and 4 bytes holding 4 each, as base-3 digits
 *   scaled to a byte (digit n of byte q is ⌊(q·3ⁿ mod 256)·3 / 256⌋), f16 d.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockDecoder } from './codec.js';
import * as cFloat from './c-float.js';

const { f16Table, f32, u16At } = cFloat;
const POW3 = [1, 3, 9, 27, 81, 243];

const trit = (byte: number, n: number) => ((((byte * POW3[n]) & 0xff) * 3) >> 8) - 1;

export const TQ1_0_DECODER: BlockDecoder = {
  type: ggmlTypeByName('TQ1_0')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 54) {
      const d = half[u16At(src, at + 52)];
      let y = b * 256;
      for (const [start, width] of [[0, 32], [32, 16]]) {
        for (let n = 0; n < 5; n++) for (let m = 0; m < width; m++) out[y++] = f32(trit(src[at + start + m], n) * d);
      }
      for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) out[y++] = f32(trit(src[at + 48 + j], n) * d);
    }
  },
};

export const TQ2_0_DECODER: BlockDecoder = {
  type: ggmlTypeByName('TQ2_0')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 66) {
      const d = half[u16At(src, at + 64)];
      let y = b * 256;
      for (let j = 0; j < 64; j += 32) {
        for (let l = 0; l < 4; l++) for (let m = 0; m < 32; m++) out[y++] = f32((((src[at + j + m] >> (2 * l)) & 3) - 1) * d);
      }
    }
  },
};
