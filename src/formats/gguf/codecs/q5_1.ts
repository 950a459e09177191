/**
 * Q5_1: blocks of 32 values, 24 bytes: f16 d, f16 m, a little-endian u32 of fifth bits, then 16
 * bytes of low nibbles; x = q·d + m.
 * Quantization (quantize_row_q5_1_ref): m = min x, d = (max − min) / 31,
 * q = (uint8)((x − m)/d + 0.5), with no clamp (as in the reference).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import { affine, writeAffineHeader } from './affine-header.js';
import * as cFloat from './c-float.js';
import { encodeAffineWeighted } from './affine-weighted.js';
import { encodeLegacyWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { f16Table, f32, putU32, truncToInt, u16At, u32At } = cFloat;

const QK = 32;
const BYTES = 24;

export const Q5_1_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q5_1')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const m = half[u16At(src, at + 2)];
      const qh = u32At(src, at + 4);
      const y = b * QK;
      for (let j = 0; j < QK / 2; j++) {
        const q = src[at + 8 + j];
        const h0 = ((qh >>> j) << 4) & 0x10;
        const h1 = (qh >>> (j + 12)) & 0x10;
        out[y + j] = f32(f32(((q & 0x0f) | h0) * d) + m);
        out[y + j + QK / 2] = f32(f32(((q >> 4) | h1) * d) + m);
      }
    }
  },
  encode(src, out) {
    const n = src.length / QK;
    for (let b = 0; b < n; b++) {
      const x = b * QK;
      const at = b * BYTES;
      writeAffineHeader(src, x, out, at, 31);
      const { min, id } = affine;
      let qh = 0;
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f32(f32(src[x + j] - min) * id);
        const x1 = f32(f32(src[x + QK / 2 + j] - min) * id);
        const q0 = truncToInt(f32(x0 + 0.5)) & 0xff;
        const q1 = truncToInt(f32(x1 + 0.5)) & 0xff;
        out[at + 8 + j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) & 0xff;
        qh |= ((q0 & 0x10) >>> 4) << j;
        qh |= ((q1 & 0x10) >>> 4) << (j + QK / 2);
      }
      putU32(out, at + 4, qh);
    }
  },
  // quantize_row_q5_1_impl (affine-weighted.ts; in WebAssembly where it compiles, kquant-wasm.ts).
  encodeWeighted(src, out, qw) {
    if (!encodeLegacyWeightedWasm('Q5_1', src, out, qw)) encodeAffineWeighted(src, out, qw, 31);
  },
};
