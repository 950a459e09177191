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

/** e2m1 (NVFP4's codes) decoded by hand: a sign bit (8) and three bits indexing 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
export function e2m1Value(nibble: number): number {
  const m = [0, 0.5, 1, 1.5, 2, 3, 4, 6][nibble & 7];
  return nibble & 8 ? -m : m;
}

/**
 * ModelOpt's FP8 export of a weight W' held in the model's dtype d (unified_export_hf.py,
 * quant_utils.py): amax = max |W'_d|, weight_scale = f32(amax / 448) (a 0-dim f32 tensor; stored in
 * `scaleDtype` where the file had another), and codes = (W'_d / weight_scale).to(float8_e4m3fn),
 * which torch computes on the GPU with the 0-dim scale cast to d, each quotient in f32 rounded to
 * d, then cast to e4m3 (nearest even, saturating). `divisor`: the scale as d holds it.
 */
export function modelOptRequantize(real: ArrayLike<number>, d: 'F32' | 'BF16' | 'F16', scaleDtype: 'F32' | 'F16' | 'BF16' = 'F32'): { scale: number; divisor: number; codes: Float64Array } {
  const wd = Float64Array.from(real, (x) => roundForDType(x, d));
  const amax = wd.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.fround(amax / 448), scaleDtype);
  const divisor = roundForDType(scale, d);
  return { scale, divisor, codes: wd.map((x) => roundF8Saturating(roundForDType(Math.fround(x / divisor), d), 'F8_E4M3')) };
}

/**
 * compressed-tensors' re-quantization of one block (a channel, or the whole tensor) of W' rounded
 * to f32, as llm-compressor's calculate_qparams and quantize compute it: s = max(f32(amax / 448),
 * float32 eps) stored in the scale's dtype, code = e4m3(clamp(f32(w / s), ±448)).
 */
export function compressedTensorsRequantize(block: ArrayLike<number>, scaleDtype: 'F32' | 'F16' | 'BF16'): { scale: number; codes: Float64Array } {
  const w = Float64Array.from(block, Math.fround);
  const amax = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.max(Math.fround(amax / 448), 2 ** -23), scaleDtype);
  return { scale, codes: w.map((x) => roundF8Saturating(Math.fround(x / scale), 'F8_E4M3')) };
}
