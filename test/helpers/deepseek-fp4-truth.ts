/**
 * DeepSeek-V4's FP4 (E2M1 codes two a byte, low nibble first, an E8M0 scale per 32 values) written
 * plainly from its reference code (convert.py's FP4_TABLE, kernel.py's fp4 quantizer), in float64,
 * for tests to compare the merge's bytes against.
 */
import { log2Ceil } from './deepseek-ue8m0-truth.js';

/** E2M1's eight magnitudes, codes 0–7 (bit 3 is the sign). */
export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** A code's value, as convert.py's FP4_TABLE: code 8 (−0) is +0. */
export const fp4Value = (code: number) => (code & 8 ? (code === 8 ? 0 : -E2M1[code & 7]) : E2M1[code]);

/** The nearest E2M1 code of q (clamped to ±6), ties to the even code, the sign kept (−0 and negatives rounding to 0 give code 8). */
export function e2m1(q: number): number {
  const a = Math.min(Math.abs(q), 6);
  let best = 0;
  for (let c = 1; c < 8; c++) {
    const d = Math.abs(E2M1[c] - a) - Math.abs(E2M1[best] - a);
    if (d < 0 || (d === 0 && c % 2 === 0)) best = c;
  }
  return (q < 0 || Object.is(q, -0) ? 8 : 0) | best;
}

/**
 * Values (f32, whole groups of 32) quantized as kernel.py's fp4 quantizer: each group's scale
 * 2^⌈log2(f32(max(amax, 6·2^−126) · f32(1/6)))⌉, each code the nearest E2M1 of value / scale.
 * Returns [packed codes, scale bytes].
 */
export function fp4QuantizeTruth(values: ArrayLike<number>): [Uint8Array, Uint8Array] {
  const codes = new Uint8Array(values.length / 2), scales = new Uint8Array(values.length / 32);
  for (let g = 0; g < scales.length; g++) {
    let amax = 0;
    for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(values[g * 32 + k]));
    const e = log2Ceil(Math.fround(Math.max(Math.fround(amax), Math.fround(6 * 2 ** -126)) * Math.fround(1 / 6)));
    scales[g] = e + 127;
    for (let k = 0; k < 32; k++) codes[(g * 32 + k) >> 1] |= e2m1(values[g * 32 + k] / 2 ** e) << (k & 1 ? 4 : 0);
  }
  return [codes, scales];
}
