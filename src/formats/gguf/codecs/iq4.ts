/**
 * IQ4_NL and IQ4_XS (decoded only): 4-bit indexes into 16 non-linear levels (KVALUES_IQ4NL), as
 * ggml's dequantize_row_iq4_* computes them (every product exact in f32).
 * - IQ4_NL (18 bytes, 32 values): f16 d, 16 bytes: value j in the low nibble of byte j, value
 *   j + 16 in its high nibble; x = d·level.
 * - IQ4_XS (136 bytes, 256 values): f16 d, u16 of the scales' top 2 bits, 4 bytes of their low 4
 *   bits, then per 32 values 16 bytes laid out as IQ4_NL's; x = d·(ls − 32)·level.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockDecoder } from './codec.js';
import * as cFloat from './c-float.js';
import { KVALUES_IQ4NL } from './iq-grids.js';

const { f16Table, f32, u16At } = cFloat;

function thirtyTwo(src: Uint8Array, qs: number, out: Float32Array, y: number, d: number): void {
  for (let j = 0; j < 16; j++) {
    out[y + j] = f32(d * KVALUES_IQ4NL[src[qs + j] & 0x0f]);
    out[y + j + 16] = f32(d * KVALUES_IQ4NL[src[qs + j] >> 4]);
  }
}

export const IQ4_NL_DECODER: BlockDecoder = {
  type: ggmlTypeByName('IQ4_NL')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 18) thirtyTwo(src, at + 2, out, b * 32, half[u16At(src, at)]);
  },
};

export const IQ4_XS_DECODER: BlockDecoder = {
  type: ggmlTypeByName('IQ4_XS')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 136) {
      const d = half[u16At(src, at)];
      const high = u16At(src, at + 2);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((src[at + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 0x0f) | (((high >> (2 * ib)) & 3) << 4);
        thirtyTwo(src, at + 8 + 16 * ib, out, b * 256 + 32 * ib, f32(d * (ls - 32)));
      }
    }
  },
};
