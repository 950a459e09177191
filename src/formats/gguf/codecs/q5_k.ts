/**
 * Q5_K: super-blocks of 256 values, 176 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins
 * (k-scales.ts), 32 bytes of fifth bits, 128 bytes of low nibbles. Value i of each group of 64
 * (i < 32 in the low nibble, the rest in the high) takes its fifth bit from qh[i mod 32], bit
 * 2·group (+1 for the high half). Quantization is quantize_row_q5_K_ref (see q4_k.ts).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { kMin, kScale } from './k-scales.js';
import { encodeScaleMinBlocks } from './q4_k.js';
import { encodeKQuantWasm, encodeKQuantWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { f16Table, f32, u16At } = cFloat;

const QK_K = 256;
const BYTES = 176;

export const Q5_K_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q5_K')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const dmin = half[u16At(src, at + 2)];
      const qh = at + 16;
      let ql = at + 48;
      let y = b * QK_K;
      let u1 = 1;
      let u2 = 2;
      for (let j = 0; j < 8; j += 2) {
        const d1 = f32(d * kScale(src, at + 4, j));
        const m1 = f32(dmin * kMin(src, at + 4, j));
        const d2 = f32(d * kScale(src, at + 4, j + 1));
        const m2 = f32(dmin * kMin(src, at + 4, j + 1));
        for (let l = 0; l < 32; l++) out[y + l] = f32(f32(d1 * ((src[ql + l] & 0x0f) + (src[qh + l] & u1 ? 16 : 0))) - m1);
        for (let l = 0; l < 32; l++) out[y + 32 + l] = f32(f32(d2 * ((src[ql + l] >> 4) + (src[qh + l] & u2 ? 16 : 0))) - m2);
        y += 64;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
      }
    }
  },
  encode(src, out) {
    if (!encodeKQuantWasm('Q5_K', src, out)) encodeScaleMinBlocks(src, out, 31);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeKQuantWeightedWasm('Q5_K', src, out, qw)) encodeScaleMinBlocks(src, out, 31, qw);
  },
};
