/**
 * C's single-precision arithmetic, step by step, for the reference quantizers. JavaScript computes
 * in doubles; rounding each +, −, ×, ÷ or √ of two f32 values to f32 with Math.fround gives the
 * correctly rounded f32 result (a double has more than 2·24 + 2 bits), so wrapping every step of
 * the C code in `f32` reproduces it bit for bit, as a C compiler that does not fuse multiply-adds
 * evaluates it.
 */
import { f16BitsToNumber, f32BitsToF16Bits } from '../../../dtype.js';

export const f32 = Math.fround;

const scratchF32 = new Float32Array(1);
const scratchI32 = new Int32Array(scratchF32.buffer);

/** ggml's nearest_int: add 1.5·2²³ in f32 and read the low 23 bits (round half to even). */
export function nearestInt(x: number): number {
  const v = Math.fround(x + 12582912);
  // In [2²³, 2²⁴) the f32 sum is an integer and its low bits are exactly v − 2²³.
  if (v >= 8388608 && v < 16777216) return v - 12582912;
  scratchF32[0] = v;
  return (scratchI32[0] & 0x007fffff) - 0x00400000;
}

/** The bits of an f32 value. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchI32[0];
}

/** C's float → int conversion as x86 does it: truncation, and INT_MIN when out of range or NaN. */
export function truncToInt(x: number): number {
  if (!(x > -2147483649 && x < 2147483648)) return -2147483648;
  return Math.trunc(x);
}

/** (int8_t) of a float. */
export function toInt8(x: number): number {
  return (truncToInt(x) << 24) >> 24;
}

/** C roundf: halves away from zero. */
export function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** GGML_FP32_TO_FP16: round to nearest even (what F16C and ggml's portable path both do). */
export function toF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

let f16Values: Float32Array | undefined;
/** GGML_FP16_TO_FP32 as a 65 536-entry table. */
export function f16Table(): Float32Array {
  if (!f16Values) {
    f16Values = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Values[h] = f16BitsToNumber(h);
  }
  return f16Values;
}

/** Little-endian u16 at `at`. */
export function u16At(bytes: Uint8Array, at: number): number {
  return bytes[at] | (bytes[at + 1] << 8);
}

export function putU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
}

/** Little-endian u32 at `at`, unsigned. */
export function u32At(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

export function putU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = (value >>> 24) & 0xff;
}

/** GROUP_MAX_EPS in ggml-quants.c: blocks whose largest |x| is below it quantize to zero. */
export const GROUP_MAX_EPS = f32(1e-15);

/**
 * The value of largest magnitude among x[from … from+n) (the first, on ties; 0 when all are 0 or
 * NaN), as ggml's quantizers find it before dividing by it.
 */
export function largestMagnitude(x: ArrayLike<number>, from: number, n: number): number {
  let max = 0;
  let amax = 0;
  for (let i = from; i < from + n; i++) {
    const ax = Math.abs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  return max;
}

/** C's MAX/MIN macros, literally (they differ from Math.max/min on NaN). */
export const cmax = (a: number, b: number): number => (a > b ? a : b);
export const cmin = (a: number, b: number): number => (a < b ? a : b);
