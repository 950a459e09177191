/**
 * Element types as safetensors names them, and exact conversions between the float types the
 * engine computes with (f32, f16, bf16, and the fp8 formats e4m3fn and e5m2). Every narrowing
 * conversion rounds to nearest, ties to even, once.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { shown } from './api-arguments.js';
import { MergeError } from './errors.js';

/** The dtypes a safetensors file may hold. */
export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL' | 'F8_E4M3' | 'F8_E5M2'
  // The microscaling types (safetensors 0.6): E8M0 power-of-two scales (one byte, 2^(byte − 127),
  // 255 NaN) and E2M1 4-bit floats packed two to a byte (element 2k in the low nibble). Read and
  // copied as stored; decoded only where a format reads them (deepseek-v4-fp4.ts).
  | 'F8_E8M0' | 'F4';

/** The float dtypes the engine reads and writes. */
export type FloatDType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2';

/** The 8-bit floats: e4m3fn (no infinities, largest finite 448) and e5m2 (a short f16). */
export type F8DType = 'F8_E4M3' | 'F8_E5M2';

/**
 * The float output dtype names as users type them (`--dtype bf16`), for a front end's list of
 * choices. A GGUF base also takes its container's types (`q8_0`, `q4_k`…), checked once it is open.
 */
export const OUT_DTYPE_NAMES = ['f32', 'f16', 'bf16', 'f8_e4m3', 'f8_e5m2'] as const;

/** Output dtype names as users type them (`--dtype bf16`). */
export type OutDTypeName = typeof OUT_DTYPE_NAMES[number];

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
  // Half a byte: a header's shape counts elements, as safetensors' own reader does (bits × elements / 8).
  F8_E8M0: 1, F4: 0.5,
};

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export function isFloatDType(s: string): s is FloatDType {
  return s === 'F32' || s === 'F16' || s === 'BF16' || s === 'F8_E4M3' || s === 'F8_E5M2';
}

export function isF8DType(s: string): s is F8DType {
  return s === 'F8_E4M3' || s === 'F8_E5M2';
}

/** Other names the float types go by: torch's (`config.json`'s `torch_dtype`) and the fp16 style. */
const FLOAT_ALIASES: Readonly<Record<string, FloatDType>> = {
  FP32: 'F32', FLOAT32: 'F32', FLOAT: 'F32', FP16: 'F16', FLOAT16: 'F16', HALF: 'F16', BFLOAT16: 'BF16',
  FP8_E4M3: 'F8_E4M3', FLOAT8_E4M3FN: 'F8_E4M3', E4M3: 'F8_E4M3', FP8_E5M2: 'F8_E5M2', FLOAT8_E5M2: 'F8_E5M2', E5M2: 'F8_E5M2',
};

/** The float type a name stands for (`f16`, `fp16`, `float16` → `F16`), or undefined. */
export function floatDTypeNamed(name: string): FloatDType | undefined {
  const upper = name.toUpperCase();
  if (isFloatDType(upper)) return upper;
  return Object.hasOwn(FLOAT_ALIASES, upper) ? FLOAT_ALIASES[upper] : undefined;
}

/** `fp8` and the like name two types: the refusal says which two. */
export function ambiguousFp8Name(name: string): string | undefined {
  return /^(fp8|f8|float8)$/i.test(name)
    ? `${name} is two types: choose f8_e4m3 (torch.float8_e4m3fn, which fp8 checkpoints hold) or f8_e5m2` : undefined;
}

/** `f16` → `F16`, `f8_e4m3` → `F8_E4M3` (also torch's names: `float16`, `bfloat16`, `float8_e4m3fn`…); anything else is a BAD_ARGUMENT MergeError. */
export function parseOutDType(name: string): FloatDType {
  if (typeof name !== 'string') throw new MergeError('BAD_ARGUMENT', `dtype must be a type name such as "f16" or "bf16", not ${shown(name)}`);
  const type = floatDTypeNamed(name);
  if (type) return type;
  throw new MergeError('BAD_ARGUMENT', ambiguousFp8Name(name) ?? `unknown dtype "${name}" (expected f32, f16, bf16, f8_e4m3 or f8_e5m2)`);
}

// --- f16 -------------------------------------------------------------------------------------

/** All 65 536 f16 values as f32: decoding is one table lookup per element. */
let f16Table: Float32Array | undefined;
export function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    const view = new DataView(new ArrayBuffer(2));
    for (let h = 0; h < 65536; h++) {
      view.setUint16(0, h, true);
      f16Table[h] = getFloat16(view, 0, true);
    }
  }
  return f16Table;
}

/** f32 bits → f16 bits, round to nearest even (hot path; checked against the library in tests). */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // Inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow → ±0
    mant |= 0x800000; // implicit bit
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent: correct
  return sign | h;
}

// --- bf16 ------------------------------------------------------------------------------------
// bf16 is the top half of an f32, so no library is needed: widening is a shift and narrowing is
// one rounding step on the dropped 16 bits.

/** f32 bits → bf16 bits, round to nearest even; NaN stays NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

// --- fp8 --------------------------------------------------------------------------------------
// torch's float8_e4m3fn and float8_e5m2 (safetensors F8_E4M3, F8_E5M2). Small enough to decode by
// a 256-entry table and encode by hand; no library needed. Encoding rounds to nearest even and
// saturates: finite values beyond the largest finite one become it (±448, ±57344), as a merge
// must not turn a large weight into NaN (torch's plain cast makes e4m3fn NaN above 464). NaN stays
// NaN; ±Inf stays Inf in e5m2 and becomes NaN in e4m3fn, which has no infinities.

interface F8Format {
  mantBits: number;
  bias: number;
  /** The code of the largest finite magnitude. */
  maxCode: number;
  nanCode: number;
  infCode?: number;
}

export const F8_FORMATS: Readonly<Record<F8DType, F8Format>> = {
  F8_E4M3: { mantBits: 3, bias: 7, maxCode: 0x7e, nanCode: 0x7f },
  F8_E5M2: { mantBits: 2, bias: 15, maxCode: 0x7b, nanCode: 0x7e, infCode: 0x7c },
};

const f8Tables = new Map<F8DType, Float32Array>();
/** All 256 values of an fp8 format as f32 (exact), computed from the format's definition. */
export function f8DecodeTable(dtype: F8DType): Float32Array {
  let table = f8Tables.get(dtype);
  if (table) return table;
  const { mantBits, bias, infCode } = F8_FORMATS[dtype];
  table = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const mag = b & 0x7f;
    const e = mag >> mantBits;
    const m = mag & ((1 << mantBits) - 1);
    const maxExp = (0x7f >> mantBits);
    let v: number;
    if (infCode === undefined ? mag === 0x7f : e === maxExp) v = infCode !== undefined && m === 0 ? Infinity : NaN;
    else if (e === 0) v = m * 2 ** (1 - bias - mantBits);
    else v = (1 + m / (1 << mantBits)) * 2 ** (e - bias);
    table[b] = sign * v;
  }
  f8Tables.set(dtype, table);
  return table;
}

/** f32 bits → fp8 bits, round to nearest even, saturating (see above). */
export function f32BitsToF8Bits(x: number, dtype: F8DType): number {
  const { mantBits, bias, maxCode, nanCode, infCode } = F8_FORMATS[dtype];
  const sign = (x >>> 24) & 0x80;
  const ax = x & 0x7fffffff;
  if (ax > 0x7f800000) return sign | nanCode;
  if (ax === 0x7f800000) return sign | (infCode ?? nanCode);
  const drop = 23 - mantBits;
  const exp = (ax >>> 23) - 127 + bias; // the fp8 biased exponent
  let code: number;
  if (exp >= 1) {
    code = (exp << mantBits) | ((ax & 0x7fffff) >>> drop);
    const rest = ax & ((1 << drop) - 1);
    const half = 1 << (drop - 1);
    if (rest > half || (rest === half && (code & 1))) code++; // a carry into the exponent is right
  } else {
    // Subnormal results: the full mantissa, shifted right by drop + 1 - exp, rounded to nearest even.
    const shift = drop + 1 - exp;
    if (shift > 25) return sign; // below half the smallest subnormal (also f32 zeros and subnormals)
    const mant = (ax & 0x7fffff) | 0x800000;
    code = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (code & 1))) code++;
  }
  return sign | Math.min(code, maxCode);
}

// --- whole arrays ----------------------------------------------------------------------------

/** Little-endian raw bytes of one float dtype → Float32Array (exact). */
export function decodeToF32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    const table = f8DecodeTable(dtype);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = table[bytes[i]];
    return out;
  }
  if (dtype === 'F32') {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n).slice();
    return new Float32Array(bytes.slice().buffer);
  }
  const u16 = bytes.byteOffset % 2 === 0
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, n)
    : new Uint16Array(bytes.slice().buffer);
  const out = new Float32Array(n);
  if (dtype === 'F16') {
    const table = f16ToF32Table();
    for (let i = 0; i < n; i++) out[i] = table[u16[i]];
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = u16[i] << 16;
  }
  return out;
}

/** Float32Array → little-endian bytes of `dtype`, each element rounded once (nearest even). */
export function encodeFromF32(values: Float32Array, dtype: FloatDType): Uint8Array {
  const n = values.length;
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + n * 4));
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = f32BitsToF8Bits(bits[i], dtype);
    return out;
  }
  const out = new Uint16Array(n);
  if (dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(bits[i]);
  else for (let i = 0; i < n; i++) out[i] = f32BitsToBf16Bits(bits[i]);
  return new Uint8Array(out.buffer);
}

/** One f16 value (bits) as a JS number, via the library: for messages and tests. */
export function f16BitsToNumber(h: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setUint16(0, h, true);
  return getFloat16(view, 0, true);
}

/** One JS number → f16 bits, rounded once from the double (the library's correctly rounded path). */
export function numberToF16Bits(x: number): number {
  const view = new DataView(new ArrayBuffer(2));
  setFloat16(view, 0, x, true);
  return view.getUint16(0, true);
}
