import { roundF8Saturating, roundForDType } from './fixtures.js';

/** torch.float8_e4m3fn decoded by hand: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN. */
export function e4m3Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 3) & 0xf;
  const mant = byte & 7;
  if (exp === 15 && mant === 7) return NaN;
  return sign * (exp === 0 ? (mant / 8) * 2 ** -6 : (1 + mant / 8) * 2 ** (exp - 7));
}

/** torch.float8_e5m2 decoded by hand: sign, 5 exponent bits (bias 15), 2 mantissa bits; exponent 31 is ±Inf (mantissa 0) or NaN. */
export function e5m2Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 2) & 0x1f;
  const mant = byte & 3;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (exp === 0 ? (mant / 4) * 2 ** -14 : (1 + mant / 4) * 2 ** (exp - 15));
}

/** The largest finite value of each fp8 type (torch.finfo(...).max): ComfyUI's divisor for a recalculated scale. */
const FP8_MAX = { F8_E4M3: 448, F8_E5M2: 57344 } as const;

/**
 * ComfyUI's re-quantization of a patched per-tensor fp8 layer with its scale recalculated
 * (comfy_kitchen's per-tensor fp8 quantize), rounded to nearest even instead of stochastically:
 * w = f32(W'), s = f32(max |w| / max) stored in `scaleDtype`, code = fp8(clamp(f32(w · f32(1 / s)), ±max)),
 * max = 448 for float8_e4m3fn codes, 57344 for float8_e5m2 ones.
 */
export function comfyRequantize(
  real: Float64Array, scaleDtype: 'F32' | 'F16' | 'BF16' = 'F32', codes: 'F8_E4M3' | 'F8_E5M2' = 'F8_E4M3',
): { scale: number; codes: Float64Array } {
  const w = real.map(Math.fround);
  const amax = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.fround(amax / FP8_MAX[codes]), scaleDtype);
  const inverse = Math.fround(1 / scale);
  return { scale, codes: w.map((x) => roundF8Saturating(Math.fround(x * inverse), codes)) };
}
