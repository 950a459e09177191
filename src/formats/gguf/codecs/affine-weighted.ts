/**
 * Q4_1 and Q5_1 with importance weights: quantize_row_q4_1_impl / quantize_row_q5_1_impl. σ² =
 * Σx²/n over the row; per 32 values the weights qw·sqrtf(σ² + x²), make_qkx3_quants(32, 15 or
 * 31, …, −0.9, 0.05, 36) for a scale d and a minimum m (x ≈ d·q + m), both stored as f16, and the
 * levels it chose packed as the reference packs them (Q5_1's fifth bits in a u32 after d and m).
 * Given weights, make_qkx3_quants takes make_qkx2_quants' steps, so makeQkx2Quants runs it.
 */
import { f32, putU16, putU32, toF16Bits } from './c-float.js';
import { importanceWeights, sumSquares } from './importance.js';
import { makeQkx2Quants } from './k-quant-search.js';

const weight = new Float32Array(32);
const L = new Uint8Array(32);
const Laux = new Uint8Array(32);

/** One row of Q4_1 (nmax 15, 20-byte blocks) or Q5_1 (nmax 31, 24-byte blocks) blocks. */
export function encodeAffineWeighted(src: Float32Array, out: Uint8Array, qw: Float32Array, nmax: 15 | 31): void {
  const bytes = nmax === 15 ? 20 : 24;
  const sigma2 = f32(sumSquares(src, 0, src.length) / src.length);
  for (let b = 0; b * 32 < src.length; b++) {
    const at = b * bytes;
    importanceWeights(src, 32 * b, qw, 32 * b, sigma2, 32, weight);
    const fit = makeQkx2Quants(32, nmax, src, 32 * b, weight, L, 0, Laux, f32(-0.9), f32(0.05), 36, false);
    putU16(out, at, toF16Bits(fit.scale));
    putU16(out, at + 2, toF16Bits(-fit.theMin));
    if (nmax === 15) {
      for (let j = 0; j < 16; j++) out[at + 4 + j] = L[j] | (L[j + 16] << 4);
      continue;
    }
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      out[at + 8 + j] = (L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4);
      qh |= ((L[j] & 0x10) >>> 4) << j;
      qh |= ((L[j + 16] & 0x10) >>> 4) << (j + 16);
    }
    putU32(out, at + 4, qh >>> 0);
  }
}
