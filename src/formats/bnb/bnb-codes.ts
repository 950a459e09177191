/**
 * bitsandbytes' 4-bit code tables as its CUDA dequantization kernel holds them (csrc/kernels.cu
 * `nf4_dequantization_lut`, `fp4_dequantization_lut`), each entry the float32 nearest the printed
 * constant. The kernel looks nibbles up in these, not in the checkpoint's `quant_map` (which
 * bitsandbytes saves from `get_4bit_type`, the same values); the map is checked against them.
 */

/** NF4 (QLoRA's NormalFloat): quantiles of N(0, 1) normalised to [-1, 1], by nibble. */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** FP4 (1 sign, 2 exponent, 1 mantissa bit) divided by its largest magnitude 12; bit 3 is the sign. */
const FP4_MAGNITUDES = [0.0, 0.005208333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25];
export const FP4_CODE: Float32Array = Float32Array.from({ length: 16 }, (_, q) => (q & 8 ? -1 : 1) * FP4_MAGNITUDES[q & 7]);

export type FourBitType = 'nf4' | 'fp4';

export function fourBitCode(type: FourBitType): Float32Array {
  return type === 'nf4' ? NF4_CODE : FP4_CODE;
}
