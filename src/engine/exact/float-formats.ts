/**
 * The output dtypes as binary floating-point grids, and the test every tier of the correct rounding
 * uses: may a value known only to within ±bound round differently from the exact value it
 * approximates? Browser-safe (no Node imports).
 */
import type { FloatDType } from '../../dtype.js';

export interface FloatFormat {
  /** Significand bits, the implicit one included (f16: 11). */
  precision: number;
  /** Exponent of the smallest normal value (f16: −14). */
  minExp: number;
  /** Exponent of the largest finite value (f16: 15). */
  maxExp: number;
  /** Finite values past the largest round to it (fp8 here) instead of to Inf. */
  saturates: boolean;
}

export const FLOAT_FORMATS: Readonly<Record<FloatDType, FloatFormat>> = {
  F32: { precision: 24, minExp: -126, maxExp: 127, saturates: false },
  F16: { precision: 11, minExp: -14, maxExp: 15, saturates: false },
  BF16: { precision: 8, minExp: -126, maxExp: 127, saturates: false },
  F8_E4M3: { precision: 4, minExp: -6, maxExp: 8, saturates: true },
  F8_E5M2: { precision: 3, minExp: -14, maxExp: 15, saturates: true },
};

const view = new DataView(new ArrayBuffer(8));

/** Exponents roundingIsCertain's grid step takes: from f32's subnormal step 2^-149 to 2^1023. */
const POW2_MIN = -149;
/** POW2[k − POW2_MIN] = 2^k, exactly (each entry is the very double `2 ** k` gives). */
const POW2 = Float64Array.from({ length: 1023 - POW2_MIN + 1 }, (_, i) => 2 ** (i + POW2_MIN));

/** floor(log2 |x|) of a finite non-zero double, from its bits (subnormal doubles: −1023 or less). */
export function binaryExponent(x: number): number {
  view.setFloat64(0, x);
  const biased = (view.getUint16(0) >>> 4) & 0x7ff;
  if (biased !== 0) return biased - 1023;
  return Math.floor(Math.log2(Math.abs(x))); // a double subnormal: far below every format here
}

/**
 * True when every real x with |x − v| ≤ bound rounds (to nearest, ties to even) to the same
 * value of `dtype` as v, zeros of both signs counting as different: no midpoint of the grid lies
 * in [v − bound, v + bound], and v's sign is x's whenever they round to zero.
 *
 * Why it suffices. Let E = max(⌊log2|v|⌋, minExp) and g = 2^(E − precision + 1), the grid step
 * from 2^E to 2^(E+1) (and, below 2^minExp, the uniform subnormal step). If bound < g/4, the
 * interval stays within one step of v's binade: the binade below has step g/2 and its nearest
 * midpoint is 2^E − g/4 (below the interval), the binade above starts at 2^(E+1) with its first
 * midpoint 2^(E+1) + g. Inside the binade the midpoints are the odd multiples of g/2, the nearest
 * at |frac(|v|/g) − 1/2| · g; all computed exactly (scaling by powers of two, floor, and a
 * difference of numbers within a factor of two). The top of the finite range rounds to Inf at its
 * own midpoint (65520 for f16), which this grid contains; saturating formats round everything
 * past the largest value to it, so their extra "midpoints" only cost a recomputation.
 */
export function roundingIsCertain(v: number, bound: number, dtype: FloatDType): boolean {
  if (bound === 0) return true;
  if (!(bound > 0) || !Number.isFinite(v)) return false;
  const a = Math.abs(v);
  if (bound >= a) return false; // the sign of x is unknown (and so the sign of a zero result)
  const f = FLOAT_FORMATS[dtype];
  const e = Math.max(binaryExponent(a), f.minExp);
  const g = POW2[e - f.precision + 1 - POW2_MIN]; // 2 ** (e − precision + 1), without a pow per element
  if (bound >= g / 4) return false;
  const t = a / g;
  return Math.abs(t - Math.floor(t) - 0.5) * g > bound;
}
