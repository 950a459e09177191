/**
 * E2M1, the 4-bit float of NVFP4 (ModelOpt, ComfyUI), MXFP4 (gpt-oss) and DeepSeek-V4's FP4
 * experts: a sign bit (8) and a magnitude index into 0, ½, 1, 1½, 2, 3, 4, 6. One table and one
 * rounding for all of them (nvfp4-values.ts, comfy-nvfp4.ts, row-decoders.ts, deepseek-fp4-codes.ts).
 * Imports nothing: the CPU backend's workers load it.
 */

/** e2m1 magnitudes by the code's low three bits. */
export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6] as const;

/** The signed value of each 4-bit E2M1 code (sign in bit 3); code 8 is −0 where `negativeZero`, else +0. */
export function e2m1CodeValues(negativeZero: boolean): Float64Array {
  return Float64Array.from({ length: 16 }, (_, code) => (code === 8 && !negativeZero ? 0 : (code & 8 ? -1 : 1) * E2M1[code & 7]));
}

/**
 * The e2m1 code of q rounded to the nearest value, ties to the even code (the midpoints 0.25, 1.25,
 * 2.5 and 5 go down, 0.75, 1.75 and 3.5 up), saturated at ±6, its sign bit kept: a negative q
 * (−0 too) gives a code of 8 or more. NaN gives 7.
 */
export function e2m1Code(q: number): number {
  const a = Math.abs(q);
  const magnitude = a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return q < 0 || (q === 0 && 1 / q < 0) ? magnitude | 8 : magnitude;
}
