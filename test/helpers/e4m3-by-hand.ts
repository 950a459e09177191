import { roundF8Saturating, roundForDType } from './fixtures.js';

/** torch.float8_e4m3fn decoded by hand: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN. */
export function e4m3Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 3) & 0xf;
  const mant = byte & 7;
  if (exp === 15 && mant === 7) return NaN;
  return sign * (exp === 0 ? (mant / 8) * 2 ** -6 : (1 + mant / 8) * 2 ** (exp - 7));
}

/**
 * ComfyUI's re-quantization of a patched fp8 layer with its scale recalculated (comfy_kitchen's
 * per-tensor fp8 quantize), rounded to nearest even instead of stochastically:
 * w = f32(W'), s = f32(max |w| / 448) stored in `scaleDtype`, code = e4m3(clamp(f32(w · f32(1 / s)), ±448)).
 */
export function comfyRequantize(real: Float64Array, scaleDtype: 'F32' | 'F16' | 'BF16' = 'F32'): { scale: number; codes: Float64Array } {
  const w = real.map(Math.fround);
  const amax = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.fround(amax / 448), scaleDtype);
  const inverse = Math.fround(1 / scale);
  return { scale, codes: w.map((x) => roundF8Saturating(Math.fround(x * inverse), 'F8_E4M3')) };
}
