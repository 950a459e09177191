/**
 * Element types as safetensors names them, and exact conversions between the three float types
 * the engine computes with. Every narrowing conversion rounds to nearest, ties to even, once.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';

/** The dtypes a safetensors file may hold. */
export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

/** The float dtypes the engine reads and writes. */
export type FloatDType = 'F32' | 'F16' | 'BF16';

/** Output dtype names as users type them (`--dtype bf16`). */
export type OutDTypeName = 'f32' | 'f16' | 'bf16';

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export function isFloatDType(s: string): s is FloatDType {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}

/** `f16` → `F16`; throws on anything else. */
export function parseOutDType(name: string): FloatDType {
  const upper = name.toUpperCase();
  if (isFloatDType(upper)) return upper;
  throw new Error(`unknown dtype "${name}" (expected f32, f16 or bf16)`);
}

// --- f16 -------------------------------------------------------------------------------------

/** All 65 536 f16 values as f32: decoding is one table lookup per element. */
let f16Table: Float32Array | undefined;
function f16ToF32Table(): Float32Array {
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

// --- whole arrays ----------------------------------------------------------------------------

/** Little-endian raw bytes of one float dtype → Float32Array (exact). */
export function decodeToF32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
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
