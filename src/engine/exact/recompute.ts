/**
 * Tiers 2 and 3 of the correct rounding (error-bounds.ts): an element the kernel listed is
 * recomputed in float64 with a rigorous bound and rounded when the bound decides, else computed
 * exactly. Browser-safe (no Node imports).
 */
import { f8DecodeTable, f16ToF32Table, type FloatDType } from '../../dtype.js';
import { f64ToBf16Bits, f64ToF16Bits, f64ToF8Bits } from '../cpu/round-f64.js';
import { addDyadic, dyadicOf, DYADIC_ZERO, mulDyadic, roundDyadicToBits, type Dyadic } from './dyadic.js';
import { U_F64 } from './error-bounds.js';
import { roundingIsCertain } from './float-formats.js';
import type { DecodedTerm, PlainOp, TensorFactors } from './plain-op.js';

/** How many elements each tier decided (kept per backend, reported by merges and the benchmark). */
export interface CertificationStats {
  /** Elements the certified kernels produced. */
  elements: number;
  /** Elements a kernel listed as uncertain, recomputed in float64. */
  listed: number;
  /** Of those, the ones float64 could not decide either: computed exactly. */
  exact: number;
}

export function newStats(): CertificationStats {
  return { elements: 0, listed: 0, exact: 0 };
}

const f32View = new DataView(new ArrayBuffer(4));

/** Element `index` of little-endian float bytes, exactly. */
export function elementValue(bytes: Uint8Array, dtype: FloatDType, index: number): number {
  switch (dtype) {
    case 'F32':
      f32View.setUint32(0, bytes[4 * index] | (bytes[4 * index + 1] << 8) | (bytes[4 * index + 2] << 16) | (bytes[4 * index + 3] << 24));
      return f32View.getFloat32(0);
    case 'F16':
      return f16ToF32Table()[bytes[2 * index] | (bytes[2 * index + 1] << 8)]; // every f16 is an f32
    case 'BF16':
      f32View.setUint32(0, ((bytes[2 * index] | (bytes[2 * index + 1] << 8)) << 16) >>> 0);
      return f32View.getFloat32(0);
    default:
      return f8DecodeTable(dtype)[bytes[index]];
  }
}

/** Bits of a double rounded once to `dtype` (to nearest, ties to even; an exact zero as +0). */
export function roundedBits(x: number, dtype: FloatDType): number {
  if (x === 0) return 0;
  switch (dtype) {
    case 'F32':
      f32View.setFloat32(0, x);
      return f32View.getUint32(0);
    case 'F16':
      return f64ToF16Bits(x);
    case 'BF16':
      return f64ToBf16Bits(x);
    default:
      return f64ToF8Bits(x, dtype);
  }
}

/** The value the op's exact result is made of at slab element (r, c): w and the terms' parts. */
interface ElementParts {
  /** W's element (times its base scale). */
  w: number;
  /** The scale factor f (1 without a scale step). */
  f: number;
}

function parts(p: PlainOp, r: number, c: number): ElementParts {
  return { w: baseValue(p, r, c), f: p.scale ? axisFactor(p, p.scale, r, c) : 1 };
}

/** A scale step's factor at slab element (r, c). */
function axisFactor(p: PlainOp, s: NonNullable<PlainOp['scale']>, r: number, c: number): number {
  return s.axis === 'row' ? s.factors[p.shape.rowStart + r] : s.factors[c];
}

/** W's element (r, c) times its base scale: exact in f64 (see PlainOp.baseScale), the exact op's W. */
function baseValue(p: PlainOp, r: number, c: number): number {
  const { op, baseScale } = p;
  return elementValue(op.base.data, op.base.dtype, r * op.cols + c) * (baseScale ? axisFactor(p, baseScale, r, c) : 1);
}

/** (ΔW row of term t, in-feature) of slab element (r, c), or undefined when the term misses it. */
function termIndex(p: PlainOp, t: TensorFactors['terms'][number], r: number, c: number): [number, number] | undefined {
  const row = termRow(p, t, r, c);
  return row < 0 ? undefined : [row, termColumn(p, r, c)];
}

/** The ΔW row of term t at slab element (r, c); −1 where the term misses it. */
function termRow(p: PlainOp, t: TensorFactors['terms'][number], r: number, c: number): number {
  const stored = p.shape.rowStart + r;
  if (p.op.layout === 'out-in') return t.rowMap ? t.rowMap[stored] : stored;
  return c;
}

/** The in-feature of slab element (r, c). */
function termColumn(p: PlainOp, r: number, c: number): number {
  return p.op.layout === 'out-in' ? c : p.shape.rowStart + r;
}

/**
 * The correctly rounded bits of slab element (r, c) (r counts from the op's first row): float64
 * with the bound of error-bounds.ts, exact arithmetic when that cannot decide.
 */
export function exactElementBits(p: PlainOp, tf: TensorFactors, r: number, c: number, stats?: CertificationStats): number {
  const dtype = p.op.outDtype;
  const inF = p.op.layout === 'out-in' ? p.op.cols : p.op.rows;
  // As parts() and termIndex(), without allocating an object and an array per element.
  const w = baseValue(p, r, c);
  const f = p.scale ? axisFactor(p, p.scale, r, c) : 1;
  const i = termColumn(p, r, c);
  let v = w;
  let m = Math.abs(w);
  let roundings = 0;
  // Whether every operation below was exact, so that x is the exact value itself: products of two
  // f32 values, scales that are powers of two, and sums whose TwoSum error is 0. An fp8 code times
  // an f32 scale plus a bf16 LoRA's products often is, and lands exactly on a tie: rounding x then
  // needs no BigInt.
  let inF64 = f === 1;
  for (const t of tf.terms) {
    const row = termRow(p, t, r, c);
    if (row < 0) continue;
    const rank = t.rank;
    const aT = transposedA(t, inF);
    const bAt = row * rank, aAt = i * rank;
    if (t.derived || !isPowerOfTwo(t.scale)) inF64 = false;
    let d = 0, dm = 0;
    for (let k = 0; k < rank; k++) {
      const prod = t.b[bAt + k] * aT[aAt + k]; // exact for two f32 values; one rounding for derived ones
      const sum = d + prod;
      if (inF64 && twoSumError(d, prod, sum) !== 0) inF64 = false;
      d = sum;
      dm += Math.abs(prod);
    }
    if (dm === 0) continue; // every product is 0: v stays exact
    const sd = t.scale * d;
    if (inF64 && sd / t.scale !== d) inF64 = false; // a power of two that underflowed
    const sum = v + sd;
    if (inF64 && twoSumError(v, sd, sum) !== 0) inF64 = false;
    v = sum;
    m += Math.abs(t.scale) * dm;
    roundings += (t.derived ? 2 * t.rank : t.rank) + 2;
  }
  const x = f * v;
  // No term added anything and no scale follows: x is W (times its base scale), exact.
  const bound = roundings === 0 && f === 1 ? 0 : (roundings + 3) * U_F64 * (Math.abs(f) * m + Math.abs(x)) * (1 + 2 ** -20);
  if (stats) stats.listed++;
  // Inf or NaN (an input holds one): passed on for the caller's non-finite check.
  if (!Number.isFinite(x) || roundingIsCertain(x, bound, dtype)) return roundedBits(x, dtype);
  if (stats) stats.exact++;
  // x is exact: rounded once, ties to even, as the dyadic rounding would round it.
  if (inF64) return roundedBits(x, dtype);
  return roundDyadicToBits(exactElement(p, tf, r, c), dtype);
}

/** a + b − s for s = fl(a + b), exactly (Knuth's TwoSum; finite values): 0 when the sum was exact. */
function twoSumError(a: number, b: number, s: number): number {
  const bb = s - a;
  return (a - (s - bb)) + (b - bb);
}

/** Whether x is ±2^k: multiplying by it is exact unless the product leaves the normal range. */
function isPowerOfTwo(x: number): boolean {
  const a = Math.abs(x);
  return a > 0 && Number.isFinite(a) && 2 ** Math.round(Math.log2(a)) === a;
}

/** The term's A as inF rows of its rank values (made once per term, kept on it). */
function transposedA(t: DecodedTerm, inF: number): Float32Array | Float64Array {
  if (t.aT) return t.aT;
  const { a, rank } = t;
  const aT = a instanceof Float64Array ? new Float64Array(inF * rank) : new Float32Array(inF * rank);
  for (let k = 0; k < rank; k++) {
    const row = k * inF;
    for (let i = 0; i < inF; i++) aT[i * rank + k] = a[row + i];
  }
  t.aT = aT;
  return aT;
}

/** f · (w + Σ_t s_t · Σ_k b·a) at slab element (r, c), exactly. */
export function exactElement(p: PlainOp, tf: TensorFactors, r: number, c: number): Dyadic {
  const inF = p.op.layout === 'out-in' ? p.op.cols : p.op.rows;
  const { w, f } = parts(p, r, c);
  let v = dyadicOf(w);
  for (const t of tf.terms) {
    const at = termIndex(p, t, r, c);
    if (!at) continue;
    const [row, i] = at;
    let d = DYADIC_ZERO;
    for (let k = 0; k < t.rank; k++) d = addDyadic(d, mulDyadic(dyadicOf(t.b[row * t.rank + k]), dyadicOf(t.a[k * inF + i])));
    v = addDyadic(v, mulDyadic(dyadicOf(t.scale), d));
  }
  return mulDyadic(dyadicOf(f), v);
}

/** Writes bits into element `index` of output bytes of `dtype` (little-endian). */
export function storeBits(out: Uint8Array, dtype: FloatDType, index: number, bits: number): void {
  const width = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 1;
  const at = index * width;
  out[at] = bits & 0xff;
  if (width > 1) out[at + 1] = (bits >>> 8) & 0xff;
  if (width > 2) {
    out[at + 2] = (bits >>> 16) & 0xff;
    out[at + 3] = (bits >>> 24) & 0xff;
  }
}

/** Whether `bits` of `dtype` are Inf or NaN (e4m3fn has no Inf: 0x7f is its NaN). */
export function isSpecialBits(bits: number, dtype: FloatDType): boolean {
  switch (dtype) {
    case 'F32': return (bits & 0x7f800000) === 0x7f800000;
    case 'F16': return (bits & 0x7c00) === 0x7c00;
    case 'BF16': return (bits & 0x7f80) === 0x7f80;
    case 'F8_E4M3': return (bits & 0x7f) === 0x7f;
    case 'F8_E5M2': return (bits & 0x7c) === 0x7c;
  }
}

/**
 * Replaces the listed elements of a block's output by their correctly rounded values: `list`
 * holds indices within the block (row · cols + col), whose first row is the op's row r0. Returns
 * false when one of them is Inf or NaN: an exact rounding may overflow where the kernel's did not,
 * so the kernel's own finiteness flag does not cover these.
 */
export function fixListed(p: PlainOp, tf: TensorFactors, out: Uint8Array, list: Uint32Array, r0: number, stats?: CertificationStats): boolean {
  const cols = p.op.cols;
  const dtype = p.op.outDtype;
  let finite = true;
  for (let j = 0; j < list.length; j++) {
    const index = list[j];
    const i = Math.floor(index / cols);
    const bits = exactElementBits(p, tf, r0 + i, index - i * cols, stats);
    if (isSpecialBits(bits, dtype)) finite = false;
    storeBits(out, dtype, index, bits);
  }
  return finite;
}
