/**
 * Q4_1: blocks of 32 values, 20 bytes: f16 d, f16 m, then 16 bytes of nibbles (low: values 0–15,
 * high: 16–31); x = q·d + m.
 * Quantization (quantize_row_q4_1_ref): m = min x, d = (max − min) / 15,
 * q = min(15, (int8)((x − m)/d + 0.5)).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import { affine, writeAffineHeader } from './affine-header.js';
import * as cFloat from './c-float.js';
import { encodeAffineWeighted } from './affine-weighted.js';
import { encodeLegacyWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmin, f16Table, f32, toInt8, u16At } = cFloat;

const QK = 32;
const BYTES = 20;

export const Q4_1_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q4_1')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const m = half[u16At(src, at + 2)];
      const y = b * QK;
      for (let j = 0; j < QK / 2; j++) {
        const q = src[at + 4 + j];
        out[y + j] = f32(f32((q & 0x0f) * d) + m);
        out[y + j + QK / 2] = f32(f32((q >> 4) * d) + m);
      }
    }
  },
  encode(src, out) {
    const n = src.length / QK;
    for (let b = 0; b < n; b++) {
      const x = b * QK;
      const at = b * BYTES;
      writeAffineHeader(src, x, out, at, 15);
      const { min, id } = affine;
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f32(f32(src[x + j] - min) * id);
        const x1 = f32(f32(src[x + QK / 2 + j] - min) * id);
        const q0 = cmin(15, toInt8(f32(x0 + 0.5))) & 0xff;
        const q1 = cmin(15, toInt8(f32(x1 + 0.5))) & 0xff;
        out[at + 4 + j] = (q0 | (q1 << 4)) & 0xff;
      }
    }
  },
  // quantize_row_q4_1_impl (affine-weighted.ts; in WebAssembly where it compiles, kquant-wasm.ts).
  encodeWeighted(src, out, qw) {
    if (!encodeLegacyWeightedWasm('Q4_1', src, out, qw)) encodeAffineWeighted(src, out, qw, 15);
  },
};
