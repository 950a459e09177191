/**
 * Q4_0: blocks of 32 values, 18 bytes: f16 d, then 16 bytes whose low nibbles hold values 0–15 and
 * high nibbles values 16–31; x = (q − 8)·d.
 * Quantization (quantize_row_q4_0_ref): d = (the value of largest magnitude) / −8,
 * q = min(15, (int8)(x/d + 8.5)).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { importanceWeights, sumSquares } from './importance.js';
import { makeQxQuantsRmse1 } from './k-quant-search.js';
import { encodeLegacyWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmin, f16Table, f32, largestMagnitude, putU16, toF16Bits, toInt8, u16At } = cFloat;

const QK = 32;
const BYTES = 18;

export const Q4_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q4_0')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const y = b * QK;
      for (let j = 0; j < QK / 2; j++) {
        const q = src[at + 2 + j];
        out[y + j] = f32(((q & 0x0f) - 8) * d);
        out[y + j + QK / 2] = f32(((q >> 4) - 8) * d);
      }
    }
  },
  encode(src, out) {
    const n = src.length / QK;
    for (let b = 0; b < n; b++) {
      const x = b * QK;
      const at = b * BYTES;
      const max = largestMagnitude(src, x, QK);
      const d = f32(max / -8);
      const id = d ? f32(1 / d) : 0;
      putU16(out, at, toF16Bits(d));
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f32(src[x + j] * id);
        const x1 = f32(src[x + QK / 2 + j] * id);
        const q0 = cmin(15, toInt8(f32(x0 + 8.5))) & 0xff;
        const q1 = cmin(15, toInt8(f32(x1 + 8.5))) & 0xff;
        out[at + 2 + j] = (q0 | (q1 << 4)) & 0xff;
      }
    }
  },
  /**
   * quantize_row_q4_0_impl: σ² = Σx²/n over the row, per 32 values the weights qw·sqrtf(σ² + x²)
   * and make_qx_quants(32, 8, …, rmse_type 1, weights).
   */
  encodeWeighted(src, out, qw) {
    if (!encodeLegacyWeightedWasm('Q4_0', src, out, qw)) encodeQ4_0Weighted(src, out, qw);
  },
};

/** Q4_0 with importance weights in TypeScript (the WebAssembly encoder's fallback and twin). */
export function encodeQ4_0Weighted(src: Float32Array, out: Uint8Array, qw: Float32Array): void {
  const sigma2 = f32(sumSquares(src, 0, src.length) / src.length);
  for (let b = 0; b * QK < src.length; b++) {
    const at = b * BYTES;
    importanceWeights(src, b * QK, qw, b * QK, sigma2, QK, weight);
    putU16(out, at, toF16Bits(makeQxQuantsRmse1(QK, 8, src, b * QK, L, 0, weight)));
    for (let j = 0; j < QK / 2; j++) out[at + 2 + j] = L[j] | (L[j + QK / 2] << 4);
  }
}

const weight = new Float32Array(QK);
const L = new Uint8Array(QK);
