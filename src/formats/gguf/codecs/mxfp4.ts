/**
 * MXFP4 (gpt-oss ships its experts in it): blocks of 32 values, 17 bytes: an E8M0 scale byte e,
 * then 16 bytes of 4-bit e2m1 codes (value j in the low nibble of byte j, j + 16 in the high).
 * x = level·2^(e−128), the levels doubled (KVALUES_MXFP4) and the scale halved, as ggml's
 * dequantize_row_mxfp4 computes it: products of a small integer and a power of two, exact (or ±∞
 * past f32's range, as in C).
 *
 * Quantization (quantize_row_mxfp4_ref): amax = the largest |x| (NaN never wins the comparison),
 * e = (uint8_t)(floorf(log2f(amax)) − 2 + 127), or 0 for an all-zero block; each value takes the
 * nearest level of d = 2^(e−128) by best_index_mxfp4 (fp4.ts).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import { f32Bits } from './c-float.js';
import { Fp4Scale, KVALUES_MXFP4 } from './fp4.js';

const f32 = Math.fround;

/** GGML_E8M0_TO_FP32_HALF: 2^(e − 128), subnormal for e < 2. */
export function e8m0Half(e: number): number {
  return 2 ** (e - 128);
}

/**
 * floorf(log2f(a)) for a finite f32 a > 0, with log2f rounded correctly to f32. The floor can only
 * depend on that rounding just below a power of two 2ⁿ, where log2 a = n − L with L tiny: log2f
 * gives n (and the floor n, not n − 1) when L is under half the f32 gap below n. glibc's log2f
 * adds n to an accurately computed log2 of the mantissa there, so it rounds as correctly as this.
 * L = −log2(1 − δ) with δ = 1 − a/2ⁿ (exact) is summed from its series in double: every term
 * past δ³ is below 2⁻⁵⁰ of L, far inside the margins the f32 gaps leave (tested against log2f).
 */
export function floorLog2f(a: number): number {
  const bits = f32Bits(a);
  const biased = (bits >>> 23) & 0xff;
  const k = biased ? biased - 127 : 31 - Math.clz32(bits & 0x7fffff) - 149;
  const n = k + 1;
  // Just below 1, log2 a is a tiny negative number, which f32 holds closely: never rounded to 0.
  if (n === 0) return k;
  const magnitude = Math.abs(n);
  const p = 31 - Math.clz32(magnitude);
  // The f32 below n: n − 2^(p−23), or n − 2^(p−24) when n is a positive power of two.
  const halfGap = (n > 0 && magnitude === 2 ** p ? 2 ** (p - 24) : 2 ** (p - 23)) / 2;
  const delta = 1 - a / 2 ** n;
  // L > δ, so a δ past the half gap settles it.
  if (delta >= halfGap) return k;
  const L = (delta + (delta * delta) / 2 + (delta * delta * delta) / 3) / Math.LN2;
  return L < halfGap ? n : k;
}

/**
 * The scale byte for a block whose largest |x| is amax > 0: (uint8_t) of the float
 * floorf(log2f(amax)) + 125, converted as x86 builds convert it (to a 32-bit int, whose low byte
 * is kept): in range for every amax from 2^−125 up, which is every block a model holds. Below,
 * the exponent is negative and C leaves the conversion undefined: x86 wraps it (an e of 232–255,
 * whose codes all come out 0), as here; ARM builds saturate it to 0. An infinite amax gives 0
 * (INT_MIN's low byte); the merge never encodes NaN or Inf.
 */
export function mxfp4Exponent(amax: number): number {
  if (amax === Infinity) return 0;
  return (floorLog2f(amax) - 2 + 127) & 0xff;
}

export const MXFP4_CODEC: BlockCodec = {
  type: ggmlTypeByName('MXFP4')!,
  ignoresImportance: true, // quantize_mxfp4(…, quant_weights) does not use them
  decode(src, out) {
    for (let b = 0, at = 0; at < src.length; b++, at += 17) {
      const d = e8m0Half(src[at]);
      const y = b * 32;
      for (let j = 0; j < 16; j++) {
        out[y + j] = f32(KVALUES_MXFP4[src[at + 1 + j] & 0x0f] * d);
        out[y + j + 16] = f32(KVALUES_MXFP4[src[at + 1 + j] >> 4] * d);
      }
    }
  },
  encode(src, out) {
    const scale = new Fp4Scale();
    for (let x = 0, at = 0; x < src.length; x += 32, at += 17) {
      let amax = 0;
      for (let j = 0; j < 32; j++) {
        const v = Math.abs(src[x + j]);
        if (amax < v) amax = v;
      }
      const e = amax > 0 ? mxfp4Exponent(amax) : 0;
      scale.set(e8m0Half(e));
      out[at] = e;
      for (let j = 0; j < 16; j++) out[at + 1 + j] = scale.bestIndex(src[x + j]) | (scale.bestIndex(src[x + 16 + j]) << 4);
    }
  },
};
