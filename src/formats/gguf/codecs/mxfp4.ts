/**
 * MXFP4 (decoded only; gpt-oss ships its experts in it): blocks of 32 values, 17 bytes: an E8M0
 * scale byte e, then 16 bytes of 4-bit e2m1 codes (value j in the low nibble of byte j, j + 16 in
 * the high). x = level·2^(e−128), the levels doubled (KVALUES_MXFP4) and the scale halved, as
 * ggml's dequantize_row_mxfp4 computes it: products of a small integer and a power of two, exact
 * (or ±∞ past f32's range, as in C).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockDecoder } from './codec.js';
import { KVALUES_MXFP4 } from './iq-grids.js';

const f32 = Math.fround;

/** GGML_E8M0_TO_FP32_HALF: 2^(e − 128), subnormal for e < 2. */
export function e8m0Half(e: number): number {
  return 2 ** (e - 128);
}

export const MXFP4_DECODER: BlockDecoder = {
  type: ggmlTypeByName('MXFP4')!,
  decode(src, out) {
    for (let b = 0, at = 0; at < src.length; b++, at += 17) {
      const d = e8m0Half(src[at]);
      const y = b * 32;
      for (let j = 0; j < 16; j++) {
        out[y + j] = f32(KVALUES_MXFP4[src[at + 1 + j] & 0x0f] * d);
        out[y + j + 16] = f32(KVALUES_MXFP4[src[at + 1 + j] >> 4] * d);
      }
    }
  },
};
