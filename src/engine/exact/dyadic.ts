/**
 * Exact arithmetic on dyadic rationals m · 2^e (m an integer, BigInt), which every finite float
 * is: sums and products of them are computed without any rounding, and rounded once, to nearest
 * with ties to even, to an output dtype. The last resort of the correct rounding, for the few
 * elements whose float64 recomputation still cannot decide (exact ties, deep cancellation).
 * Browser-safe (no Node imports).
 */
import type { FloatDType } from '../../dtype.js';
import { FLOAT_FORMATS } from './float-formats.js';

export interface Dyadic {
  readonly m: bigint;
  readonly e: number;
}

export const DYADIC_ZERO: Dyadic = { m: 0n, e: 0 };

const view = new DataView(new ArrayBuffer(8));

/** Thrown for Inf or NaN, which have no exact value: an input holds one. */
export class NoExactValue extends RangeError {
  constructor(readonly value: number) {
    super(`no exact value for ${value}`);
  }
}

/** A finite double as m · 2^e, exactly. */
export function dyadicOf(x: number): Dyadic {
  if (x === 0) return DYADIC_ZERO;
  if (!Number.isFinite(x)) throw new NoExactValue(x);
  view.setFloat64(0, x);
  const hi = view.getUint32(0), lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (biased === 0) {
    e = -1074; // subnormal
  } else {
    m |= 1n << 52n;
    e = biased - 1075;
  }
  return { m: hi >>> 31 ? -m : m, e };
}

export function addDyadic(a: Dyadic, b: Dyadic): Dyadic {
  if (a.m === 0n) return b;
  if (b.m === 0n) return a;
  if (a.e === b.e) return { m: a.m + b.m, e: a.e };
  if (a.e > b.e) return { m: (a.m << BigInt(a.e - b.e)) + b.m, e: b.e };
  return { m: a.m + (b.m << BigInt(b.e - a.e)), e: a.e };
}

export function mulDyadic(a: Dyadic, b: Dyadic): Dyadic {
  if (a.m === 0n || b.m === 0n) return DYADIC_ZERO;
  return { m: a.m * b.m, e: a.e + b.e };
}

/** The bit length of n > 0 (from its hexadecimal digits: a fraction of the cost of its binary ones). */
function bitLength(n: bigint): number {
  const hex = n.toString(16);
  return (hex.length - 1) * 4 + 32 - Math.clz32(parseInt(hex[0], 16));
}

/**
 * x rounded once to `dtype`, to nearest with ties to even, as its bits (u32 for f32, u16 for
 * f16/bf16, u8 for fp8). Overflow gives ±Inf, except that fp8 saturates at its largest finite
 * value (as the engine's fp8 encoding does). An exact zero is +0.
 */
export function roundDyadicToBits(x: Dyadic, dtype: FloatDType): number {
  const f = FLOAT_FORMATS[dtype];
  const negative = x.m < 0n;
  const mag = negative ? -x.m : x.m;
  if (mag === 0n) return 0;
  const exp = x.e + bitLength(mag) - 1; // ⌊log2 |x|⌋
  const q = Math.max(exp, f.minExp) - f.precision + 1; // the grid step's exponent at |x|
  let n: bigint; // |x| / 2^q rounded to an integer
  if (x.e >= q) {
    n = mag << BigInt(x.e - q);
  } else {
    const shift = BigInt(q - x.e);
    n = mag >> shift;
    const rest = mag - (n << shift);
    const half = 1n << (shift - 1n);
    if (rest > half || (rest === half && (n & 1n) === 1n)) n += 1n;
  }
  return encode(dtype, negative, n, q);
}

/** The bits of ±n · 2^q (n < 2^(precision + 1), on the grid of `dtype` at that exponent). */
function encode(dtype: FloatDType, negative: boolean, n: bigint, q: number): number {
  const f = FLOAT_FORMATS[dtype];
  const p = f.precision;
  // A carry may have made n = 2^p: the same value one binade up.
  let value = n, exp = q + p - 1; // value · 2^(exp - p + 1); normal when value ≥ 2^(p-1)
  if (value === 1n << BigInt(p)) {
    value >>= 1n;
    exp += 1;
  }
  const expBits = dtype === 'F32' || dtype === 'BF16' ? 8 : dtype === 'F16' || dtype === 'F8_E5M2' ? 5 : 4;
  const mantBits = p - 1;
  const bias = (1 << (expBits - 1)) - 1;
  const signBit = 2 ** (expBits + mantBits);
  const sign = negative ? signBit : 0;
  const normal = value >= 1n << BigInt(p - 1);
  const biased = normal ? exp + bias : 0;
  const maxFinite = dtype === 'F8_E4M3' ? 0x7e : ((2 ** expBits - 2) << mantBits) | (2 ** mantBits - 1);
  if (normal && (exp > f.maxExp || (dtype === 'F8_E4M3' && ((biased << mantBits) | Number(value & BigInt(2 ** mantBits - 1))) > 0x7e))) {
    if (f.saturates) return sign + maxFinite;
    return sign + ((2 ** expBits - 1) << mantBits); // Inf
  }
  const mantissa = Number(normal ? value - (1n << BigInt(mantBits)) : value);
  return sign + biased * 2 ** mantBits + mantissa;
}

/** Σ left[i] · right[i] + c, exactly (all finite doubles). */
export function exactDot(left: ArrayLike<number>, right: ArrayLike<number>, c = 0): Dyadic {
  let sum = dyadicOf(c);
  for (let i = 0; i < left.length; i++) sum = addDyadic(sum, mulDyadic(dyadicOf(left[i]), dyadicOf(right[i])));
  return sum;
}
