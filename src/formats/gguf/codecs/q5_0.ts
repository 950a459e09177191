/**
 * Q5_0: blocks of 32 values, 22 bytes: f16 d, a little-endian u32 qh whose bit j is the fifth bit
 * of value j, then 16 bytes of low nibbles (low: values 0–15, high: 16–31); x = (q − 16)·d.
 * Quantization (quantize_row_q5_0_ref): d = (the value of largest magnitude) / −16,
 * q = min(31, (int8)(x/d + 16.5)).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { importanceWeights, sumSquares } from './importance.js';
import { makeQxQuantsRmse1 } from './k-quant-search.js';
import { encodeLegacyWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmin, f16Table, f32, largestMagnitude, putU16, putU32, toF16Bits, toInt8, u16At, u32At } = cFloat;

const QK = 32;
const BYTES = 22;

export const Q5_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q5_0')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const qh = u32At(src, at + 2);
      const y = b * QK;
      for (let j = 0; j < QK / 2; j++) {
        const q = src[at + 6 + j];
        const h0 = ((qh >>> j) << 4) & 0x10;
        const h1 = (qh >>> (j + 12)) & 0x10;
        out[y + j] = f32((((q & 0x0f) | h0) - 16) * d);
        out[y + j + QK / 2] = f32((((q >> 4) | h1) - 16) * d);
      }
    }
  },
  encode(src, out) {
    const n = src.length / QK;
    for (let b = 0; b < n; b++) {
      const x = b * QK;
      const at = b * BYTES;
      const max = largestMagnitude(src, x, QK);
      const d = f32(max / -16);
      const id = d ? f32(1 / d) : 0;
      putU16(out, at, toF16Bits(d));
      let qh = 0;
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f32(src[x + j] * id);
        const x1 = f32(src[x + QK / 2 + j] * id);
        const q0 = cmin(31, toInt8(f32(x0 + 16.5))) & 0xff;
        const q1 = cmin(31, toInt8(f32(x1 + 16.5))) & 0xff;
        out[at + 6 + j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) & 0xff;
        qh |= ((q0 & 0x10) >>> 4) << j;
        qh |= ((q1 & 0x10) >>> 4) << (j + QK / 2);
      }
      putU32(out, at + 2, qh);
    }
  },
  /**
   * quantize_row_q5_0_impl: σ² = Σx²/n over the row, per 32 values the weights qw·sqrtf(σ² + x²)
   * and make_qx_quants(32, 16, …, rmse_type 1, weights).
   */
  encodeWeighted(src, out, qw) {
    if (!encodeLegacyWeightedWasm('Q5_0', src, out, qw)) encodeQ5_0Weighted(src, out, qw);
  },
};

/** Q5_0 with importance weights in TypeScript (the WebAssembly encoder's fallback and twin). */
export function encodeQ5_0Weighted(src: Float32Array, out: Uint8Array, qw: Float32Array): void {
  const sigma2 = f32(sumSquares(src, 0, src.length) / src.length);
  for (let b = 0; b * QK < src.length; b++) {
    const at = b * BYTES;
    importanceWeights(src, b * QK, qw, b * QK, sigma2, QK, weight);
    putU16(out, at, toF16Bits(makeQxQuantsRmse1(QK, 16, src, b * QK, L, 0, weight)));
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      const q0 = L[j];
      const q1 = L[j + QK / 2];
      out[at + 6 + j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) & 0xff;
      qh |= ((q0 & 0x10) >>> 4) << j;
      qh |= ((q1 & 0x10) >>> 4) << (j + QK / 2);
    }
    putU32(out, at + 2, qh);
  }
}

const weight = new Float32Array(QK);
const L = new Uint8Array(QK);
