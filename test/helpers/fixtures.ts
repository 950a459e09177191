/**
 * Byte builders for tests: safetensors files assembled by hand, values encoded to every dtype
 * straight from float64 (rounded once, nearest even), and throwaway folders on disk.
 *
 * These are the tests' independent reference, so nothing here imports the library under test.
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import type { ByteSource } from '../../src/io/types.js';

export type FixtureDType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

export const FIXTURE_DTYPE_BYTES: Readonly<Record<FixtureDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

/** Bytes per element of every stored dtype the plain readers decode: the fixture dtypes, E8M0 and packed E2M1 (half a byte). */
export const STORED_DTYPE_BYTES: Readonly<Record<string, number>> = { ...FIXTURE_DTYPE_BYTES, F8_E8M0: 1, F4: 0.5 };

/** An E2M1 code's value: magnitude index into 0, ½, 1, 1½, 2, 3, 4, 6, sign bit 8 (code 8 is −0). */
export const e2m1CodeValue = (code: number) => (code & 8 ? -1 : 1) * [0, 0.5, 1, 1.5, 2, 3, 4, 6][code & 7];

export const ALL_FIXTURE_DTYPES = Object.keys(FIXTURE_DTYPE_BYTES) as FixtureDType[];

// --- rounding from float64 -------------------------------------------------------------------

/**
 * A binary float format: `mantBits` stored fraction bits, smallest normal exponent `minExp`,
 * largest finite value `maxFinite`. Overflow gives Infinity, or NaN for formats without one.
 */
interface BinaryFormat {
  mantBits: number;
  minExp: number;
  maxFinite: number;
  hasInfinity: boolean;
}

/** Unbiased binary exponent of a finite non-zero double, read from its bits (no log2 rounding). */
function exponentOf(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const biased = (view.getUint16(0) >>> 4) & 0x7ff;
  if (biased === 0) return -1023; // double subnormal: far below any format tested here
  return biased - 1023;
}

/**
 * Rounds |x| to the nearest value of `format`, ties to even, directly from the double: the grid
 * step at x's exponent is 2^(e - mantBits), and scaling by a power of two is exact.
 */
export function roundToFormat(x: number, format: BinaryFormat): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? -1 : 1;
  const mag = Math.abs(x);
  if (mag === 0) return sign * 0;
  if (mag === Infinity) return format.hasInfinity ? sign * Infinity : NaN;
  const e = Math.max(exponentOf(mag), format.minExp);
  const stepExp = e - format.mantBits;
  const q = mag * 2 ** -stepExp;
  const floor = Math.floor(q);
  const frac = q - floor;
  let n = floor;
  if (frac > 0.5 || (frac === 0.5 && floor % 2 === 1)) n += 1;
  const rounded = n * 2 ** stepExp;
  if (rounded > format.maxFinite) return format.hasInfinity ? sign * Infinity : NaN;
  return sign * rounded;
}

const BF16: BinaryFormat = { mantBits: 7, minExp: -126, maxFinite: (2 - 2 ** -7) * 2 ** 127, hasInfinity: true };
const F16: BinaryFormat = { mantBits: 10, minExp: -14, maxFinite: 65504, hasInfinity: true };
const E5M2: BinaryFormat = { mantBits: 2, minExp: -14, maxFinite: 57344, hasInfinity: true };
// E4M3 "FN": no infinities, the all-ones pattern is NaN, so the largest finite value is 448.
const E4M3: BinaryFormat = { mantBits: 3, minExp: -6, maxFinite: 448, hasInfinity: false };

/** The value `x` becomes when stored as `dtype` (float dtypes: rounded once from the double). */
export function roundForDType(x: number, dtype: FixtureDType): number {
  switch (dtype) {
    case 'F64': return x;
    case 'F32': return Math.fround(x);
    case 'F16': return roundToFormat(x, F16);
    case 'BF16': return roundToFormat(x, BF16);
    case 'F8_E5M2': return roundToFormat(x, E5M2);
    case 'F8_E4M3': return roundToFormat(x, E4M3);
    case 'BOOL': return x ? 1 : 0;
    default: return Math.trunc(x);
  }
}

/** bf16 bits of x, rounded once from the double (not via f32, which would round twice). */
export function bf16BitsFromF64(x: number): number {
  const r = roundToFormat(x, BF16);
  if (Number.isNaN(r)) return 0x7fc0;
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, r); // exact: r is a bf16 value or ±Infinity
  return view.getUint16(0);
}

/** f16 bits of x via @petamoriken/float16, which rounds once from the double. */
export function f16BitsFromF64(x: number): number {
  const view = new DataView(new ArrayBuffer(2));
  setFloat16(view, 0, x, true);
  return view.getUint16(0, true);
}

/** 8-bit float bits from a value already on the format's grid (see roundForDType). */
function f8Bits(x: number, format: BinaryFormat, expBits: number): number {
  const bias = (1 << (expBits - 1)) - 1;
  const r = roundToFormat(x, format);
  if (Number.isNaN(r)) return 0x7f; // a NaN in both E5M2 and E4M3FN
  const sign = r < 0 || Object.is(r, -0) ? 0x80 : 0;
  const mag = Math.abs(r);
  if (mag === Infinity) return sign | (((1 << expBits) - 1) << format.mantBits);
  if (mag === 0) return sign;
  const e = Math.max(exponentOf(mag), format.minExp);
  const mant = mag * 2 ** (format.mantBits - e); // integer: includes the implicit bit when normal
  const normal = mag >= 2 ** format.minExp;
  const stored = normal ? mant - (1 << format.mantBits) : mant;
  return sign | ((normal ? e + bias : 0) << format.mantBits) | stored;
}

/**
 * x rounded once (nearest even) to an fp8 format, with finite values beyond its largest finite
 * value saturating to it: the rule loramerge encodes fp8 by. NaN stays NaN; ±Inf stays ±Inf in
 * e5m2 and is NaN in e4m3fn.
 */
export function roundF8Saturating(x: number, dtype: 'F8_E4M3' | 'F8_E5M2'): number {
  const format = dtype === 'F8_E4M3' ? E4M3 : E5M2;
  if (Number.isNaN(x)) return NaN;
  if (!Number.isFinite(x)) return format.hasInfinity ? x : NaN;
  const r = roundToFormat(x, { ...format, maxFinite: Infinity, hasInfinity: true });
  return Math.abs(r) > format.maxFinite ? Math.sign(r) * format.maxFinite : r;
}

/** The fp8 code of roundF8Saturating(x) (NaN as 0x7f, the NaN both formats share). */
export function f8BitsSaturating(x: number, dtype: 'F8_E4M3' | 'F8_E5M2'): number {
  const r = roundF8Saturating(x, dtype);
  if (Number.isNaN(r)) return 0x7f;
  return dtype === 'F8_E4M3' ? f8Bits(r, E4M3, 4) : f8Bits(r, E5M2, 5);
}

/** Decodes one 8-bit float (for reading fixtures back). */
function f8Value(bits: number, mantBits: number, expBits: number, hasInfinity: boolean): number {
  const bias = (1 << (expBits - 1)) - 1;
  const sign = bits & 0x80 ? -1 : 1;
  const exp = (bits >>> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const maxExp = (1 << expBits) - 1;
  if (hasInfinity && exp === maxExp) return mant ? NaN : sign * Infinity;
  if (!hasInfinity && exp === maxExp && mant === (1 << mantBits) - 1) return NaN;
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  return sign * (1 + mant / (1 << mantBits)) * 2 ** (exp - bias);
}

// --- encoding and decoding whole arrays ------------------------------------------------------

/** Little-endian bytes of `values` stored as `dtype`; floats rounded once from the double. */
export function encodeValues(values: ArrayLike<number>, dtype: FixtureDType): Uint8Array {
  const width = FIXTURE_DTYPE_BYTES[dtype];
  const out = new Uint8Array(values.length * width);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    const at = i * width;
    switch (dtype) {
      case 'F64': view.setFloat64(at, x, true); break;
      case 'F32': view.setFloat32(at, x, true); break;
      case 'F16': view.setUint16(at, f16BitsFromF64(x), true); break;
      case 'BF16': view.setUint16(at, bf16BitsFromF64(x), true); break;
      case 'F8_E5M2': view.setUint8(at, f8Bits(x, E5M2, 5)); break;
      case 'F8_E4M3': view.setUint8(at, f8Bits(x, E4M3, 4)); break;
      case 'I64': view.setBigInt64(at, BigInt(Math.trunc(x)), true); break;
      case 'U64': view.setBigUint64(at, BigInt(Math.trunc(x)), true); break;
      case 'I32': view.setInt32(at, x, true); break;
      case 'U32': view.setUint32(at, x, true); break;
      case 'I16': view.setInt16(at, x, true); break;
      case 'U16': view.setUint16(at, x, true); break;
      case 'I8': view.setInt8(at, x); break;
      case 'U8': view.setUint8(at, x); break;
      case 'BOOL': view.setUint8(at, x ? 1 : 0); break;
    }
  }
  return out;
}

/** Little-endian bytes of `dtype` → the exact values as doubles (64-bit ints may lose precision). */
export function decodeValues(bytes: Uint8Array, dtype: FixtureDType): Float64Array {
  // Two stored dtypes no fixture is written in, read for DeepSeek-V4's checkpoints: E8M0 (2^(b − 127),
  // 255 NaN) and packed E2M1 (two codes a byte, low nibble first; sign bit 8).
  if ((dtype as string) === 'F8_E8M0') return Float64Array.from(bytes, (b) => (b === 255 ? NaN : 2 ** (b - 127)));
  if ((dtype as string) === 'F4') return Float64Array.from({ length: bytes.byteLength * 2 }, (_, i) => e2m1CodeValue(i & 1 ? bytes[i >> 1] >> 4 : bytes[i >> 1] & 15));
  const width = FIXTURE_DTYPE_BYTES[dtype];
  if (bytes.byteLength % width !== 0) throw new Error(`${bytes.byteLength} bytes is not a whole number of ${dtype}`);
  const n = bytes.byteLength / width;
  const out = new Float64Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    const at = i * width;
    switch (dtype) {
      case 'F64': out[i] = view.getFloat64(at, true); break;
      case 'F32': out[i] = view.getFloat32(at, true); break;
      case 'F16': out[i] = getFloat16(view, at, true); break;
      case 'BF16': {
        const widened = new DataView(new ArrayBuffer(4));
        widened.setUint32(0, view.getUint16(at, true) << 16);
        out[i] = widened.getFloat32(0);
        break;
      }
      case 'F8_E5M2': out[i] = f8Value(view.getUint8(at), 2, 5, true); break;
      case 'F8_E4M3': out[i] = f8Value(view.getUint8(at), 3, 4, false); break;
      case 'I64': out[i] = Number(view.getBigInt64(at, true)); break;
      case 'U64': out[i] = Number(view.getBigUint64(at, true)); break;
      case 'I32': out[i] = view.getInt32(at, true); break;
      case 'U32': out[i] = view.getUint32(at, true); break;
      case 'I16': out[i] = view.getInt16(at, true); break;
      case 'U16': out[i] = view.getUint16(at, true); break;
      case 'I8': out[i] = view.getInt8(at); break;
      case 'U8': case 'BOOL': out[i] = view.getUint8(at); break;
    }
  }
  return out;
}

// --- safetensors files -----------------------------------------------------------------------

export interface FixtureTensor {
  name: string;
  dtype: FixtureDType;
  shape: number[];
  /** Raw little-endian bytes, or values to encode with encodeValues. */
  data: Uint8Array | ArrayLike<number>;
}

/**
 * A valid safetensors file: header JSON padded with spaces to a multiple of 8, then each tensor's
 * bytes back to back in the order given. Sizes are not checked, so tests can build bad files too.
 */
export function buildSafetensors(tensors: FixtureTensor[], metadata?: Record<string, string>): Uint8Array {
  // Built from entries so that names like "__proto__" stay ordinary keys.
  const fields: [string, unknown][] = metadata ? [['__metadata__', metadata]] : [];
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data instanceof Uint8Array ? t.data : encodeValues(t.data, t.dtype);
    fields.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] }]);
    blobs.push(bytes);
    offset += bytes.byteLength;
  }
  return buildRawSafetensors(JSON.stringify(Object.fromEntries(fields)), concatBytes(blobs));
}

/**
 * A file from a header given verbatim (string, or an object to stringify) and a data section.
 * `padTo8` pads the header with spaces like real writers do; `headerLength` overrides the u64 prefix.
 */
export function buildRawSafetensors(
  header: string | object,
  data: Uint8Array = new Uint8Array(0),
  options: { padTo8?: boolean; headerLength?: bigint } = {},
): Uint8Array {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  let headerBytes = new TextEncoder().encode(json);
  if (options.padTo8 ?? true) {
    const padded = Math.ceil(headerBytes.byteLength / 8) * 8;
    json += ' '.repeat(padded - headerBytes.byteLength);
    headerBytes = new TextEncoder().encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, options.headerLength ?? BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.byteLength);
  return out;
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

// --- randomness ------------------------------------------------------------------------------

/** A small seeded generator (mulberry32) so failures reproduce: returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` values uniform in [-scale, scale) from a seeded generator. */
export function randomValues(n: number, rand: () => number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

// --- folders on disk -------------------------------------------------------------------------

/**
 * A fresh folder under the OS temp dir holding `files` (relative '/' paths; subfolders created).
 * Returns its absolute path; remove it with removeTempDir.
 */
export function writeTempDir(files: Record<string, Uint8Array | string>, prefix = 'loramerge-test-'): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  for (const [rel, content] of Object.entries(files)) {
    const path = join(root, ...rel.split('/'));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
  return root;
}

export function removeTempDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

/** Temp folders that one test file makes and removes in afterAll: `const temp = tempDirs(); afterAll(temp.removeAll)`. */
export function tempDirs(): { make(files?: Record<string, Uint8Array | string>): string; removeAll(): void } {
  const made: string[] = [];
  return {
    make(files = {}) {
      const dir = writeTempDir(files);
      made.push(dir);
      return dir;
    },
    removeAll() {
      made.splice(0).forEach(removeTempDir);
    },
  };
}

// --- reading safetensors back, independently of the library ---------------------------------

export interface DecodedTensor {
  dtype: FixtureDType;
  shape: number[];
  values: Float64Array;
  /** The tensor's raw bytes. */
  bytes: Uint8Array;
}

/**
 * A plain reader of the safetensors layout for checking outputs: every tensor decoded to doubles.
 * `dataEnd` is the end of the last tensor's data, so callers can check for trailing bytes.
 */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Map<string, DecodedTensor>; metadata: Record<string, string>; dataEnd: number } {
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, any>;
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, DecodedTensor>();
  let dataEnd = dataStart;
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [from, to] = info.data_offsets as [number, number];
    dataEnd = Math.max(dataEnd, dataStart + to);
    const raw = bytes.slice(dataStart + from, dataStart + to);
    tensors.set(name, { dtype: info.dtype, shape: info.shape, values: decodeValues(raw, info.dtype), bytes: raw });
  }
  return { tensors, metadata: header.__metadata__ ?? {}, dataEnd };
}

/**
 * A file of `size` bytes holding the bytes of `pieces` at their offsets and zeros elsewhere, served
 * without being held (a 60 MB file costs nothing).
 */
export function sparseSource(name: string, size: number, pieces: [number, Uint8Array][]): ByteSource {
  return {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      const out = new Uint8Array(length);
      for (const [p, bytes] of pieces) {
        const s = Math.max(offset, p);
        const e = Math.min(offset + length, p + bytes.length);
        if (s < e) out.set(bytes.subarray(s - p, e - p), s - offset);
      }
      return out;
    },
    async close(): Promise<void> {},
  };
}
