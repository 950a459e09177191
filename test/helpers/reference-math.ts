/**
 * Float64 truth for merge tests, written plainly and independently of the engine: decoding with
 * @petamoriken/float16 (f16) and bit shifts (bf16), the merge as literal sums over ΔW = B·A, and
 * rounding a double once to f32/f16/bf16 by arithmetic, not by the engine's bit tricks.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import type { FloatDType } from '../../src/dtype.js';
import type { MergeOp } from '../../src/engine/merge-op.js';

const BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };

export function decodeF64(bytes: Uint8Array, dtype: FloatDType): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / BYTES[dtype];
  const out = new Float64Array(n);
  const f32 = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < n; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true);
    else if (dtype === 'F16') out[i] = getFloat16(view, i * 2, true);
    else {
      f32.setUint32(0, view.getUint16(i * 2, true) << 16);
      out[i] = f32.getFloat32(0);
    }
  }
  return out;
}

/** x rounded to nearest even with `bits` significant bits and minimum normal exponent `emin`. */
function roundToPrecision(x: number, bits: number, emin: number, maxFinite: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), emin);
  let quantum = 2 ** (e - bits + 1);
  // log2 can be off by one near powers of two: make sure |x| / quantum is within [2^(bits-1), 2^bits).
  if (Math.abs(x) / quantum >= 2 ** bits) quantum *= 2;
  else if (e > emin && Math.abs(x) / quantum < 2 ** (bits - 1)) quantum /= 2;
  const q = x / quantum;
  let r = Math.round(q);
  if (Math.abs(q - Math.trunc(q)) === 0.5) r = 2 * Math.round(q / 2); // ties to even
  const v = r * quantum;
  const limit = maxFinite + 2 ** (Math.floor(Math.log2(maxFinite)) - bits); // halfway to the next power
  if (Math.abs(x) >= limit) return x > 0 ? Infinity : -Infinity;
  return v;
}

/** Bits of x rounded once to `dtype` (f32: 32 bits; f16/bf16: 16 bits). */
const scratch = new DataView(new ArrayBuffer(4));

export function roundedBits(x: number, dtype: FloatDType): number {
  const view = scratch;
  if (dtype === 'F32') {
    view.setFloat32(0, x);
    return view.getUint32(0);
  }
  if (dtype === 'F16') {
    setFloat16(view, 0, x);
    return view.getUint16(0);
  }
  if (Number.isNaN(x)) return 0x7fc0;
  view.setFloat32(0, roundToPrecision(x, 8, -126, 3.3895313892515355e38)); // exact in f32
  return view.getUint32(0) >>> 16;
}

/** The value of bf16 bits. */
export function bf16BitsToNumber(h: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, h << 16);
  return view.getFloat32(0);
}

/** Output bytes as integers (u32 for f32, u16 otherwise). */
export function outputBits(bytes: Uint8Array, dtype: FloatDType): Uint32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / BYTES[dtype];
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = dtype === 'F32' ? view.getUint32(i * 4, true) : view.getUint16(i * 2, true);
  return out;
}

/** Distance in units in the last place between two same-width float bit patterns. */
export function ulpDistance(a: number, b: number, dtype: FloatDType): number {
  const signBit = dtype === 'F32' ? 0x80000000 : 0x8000;
  const ordered = (x: number): number => (x & signBit ? -(x & (signBit - 1)) : x);
  return Math.abs(ordered(a >>> 0) - ordered(b >>> 0));
}

export interface ReferenceMerge {
  /** Exact-as-f64 merged values of the op's rows, row-major (stored layout). */
  values: Float64Array;
  /** Σ of absolute values of every summand per element (for a tolerance near cancellations). */
  magnitude: Float64Array;
}

/** W + Σ_t s_t · ΔW_t (and DoRA), computed from the op's own bytes in f64, one element at a time. */
export function referenceMerge(op: MergeOp): ReferenceMerge {
  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? op.rows - rowStart;
  const outF = op.layout === 'out-in' ? op.rows : op.cols;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  const terms = op.terms.map((t) => ({ a: decodeF64(t.a.data, t.a.dtype), b: decodeF64(t.b.data, t.b.dtype), r: t.rank, s: t.scale }));
  const w = decodeF64(op.base.data, op.base.dtype);
  // Full V (out × in) when DoRA needs whole norms, else just the op's rows.
  let mag = 0;
  /** ΔW[o, i] summed over terms; leaves Σ|summands| in `mag`. */
  const v = (o: number, i: number): number => {
    let sum = 0;
    mag = 0;
    for (const t of terms) {
      let d = 0;
      let dm = 0;
      for (let k = 0; k < t.r; k++) {
        d += t.b[o * t.r + k] * t.a[k * inF + i];
        dm += Math.abs(t.b[o * t.r + k] * t.a[k * inF + i]);
      }
      sum += t.s * d;
      mag += Math.abs(t.s) * dm;
    }
    return sum;
  };
  const values = new Float64Array(rowCount * op.cols);
  const magnitude = new Float64Array(rowCount * op.cols);
  const toOI = (row: number, col: number): [number, number] => (op.layout === 'out-in' ? [row, col] : [col, row]);
  for (let r = 0; r < rowCount; r++) {
    for (let c = 0; c < op.cols; c++) {
      const [o, i] = toOI(rowStart + r, c);
      const d = v(o, i);
      const base = w[r * op.cols + c];
      values[r * op.cols + c] = base + d;
      magnitude[r * op.cols + c] = Math.abs(base) + mag;
    }
  }
  if (op.dora) {
    // Norms over ΔW's orientation; rows outside the slab come from W's own bytes only when the
    // op holds them all, which DoRA requires for column norms.
    const m = decodeF64(op.dora.magnitude.data, op.dora.magnitude.dtype);
    const full = (o: number, i: number): number => {
      const [row, col] = op.layout === 'out-in' ? [o, i] : [i, o];
      return w[(row - rowStart) * op.cols + col] + v(o, i);
    };
    const perOut = op.dora.normAxis === 'out';
    const count = perOut ? outF : inF;
    const norms = new Float64Array(count);
    const needed = new Set<number>();
    for (let r = 0; r < rowCount; r++) {
      for (let c = 0; c < op.cols; c++) {
        const [o, i] = toOI(rowStart + r, c);
        needed.add(perOut ? o : i);
      }
    }
    for (const j of needed) {
      let ss = 0;
      const len = perOut ? inF : outF;
      for (let x = 0; x < len; x++) {
        const val = perOut ? full(j, x) : full(x, j);
        ss += val * val;
      }
      norms[j] = Math.sqrt(ss);
    }
    for (let r = 0; r < rowCount; r++) {
      for (let c = 0; c < op.cols; c++) {
        const [o, i] = toOI(rowStart + r, c);
        const j = perOut ? o : i;
        const f = m[j] / (norms[j] + op.dora.epsilon);
        values[r * op.cols + c] *= f;
        magnitude[r * op.cols + c] *= Math.abs(f);
      }
    }
  }
  return { values, magnitude };
}

// --- building test ops ---------------------------------------------------------------------------

/** Small seeded generator (mulberry32), so failures reproduce. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values rounded once to `dtype`, as little-endian bytes. */
export function encodeValues(values: ArrayLike<number>, dtype: FloatDType): Uint8Array {
  const out = new Uint8Array(values.length * BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const bits = roundedBits(values[i], dtype);
    if (dtype === 'F32') view.setUint32(i * 4, bits, true);
    else view.setUint16(i * 2, bits, true);
  }
  return out;
}

export interface OpSpec {
  rows: number;
  cols: number;
  layout?: 'out-in' | 'in-out';
  baseDtype?: FloatDType;
  outDtype?: FloatDType;
  /** One dtype for every factor, or one per term. */
  factorDtype?: FloatDType | FloatDType[];
  ranks: number[];
  /** User weights per term (negative allowed); scale = weight · 0.3 / √rank. */
  weights?: number[];
  rowStart?: number;
  rowCount?: number;
  dora?: 'out' | 'in';
  epsilon?: number;
  name?: string;
}

/**
 * A random op: W and factors uniform in (-1, 1), scales w · 0.3/√r so that ΔW is about a fifth of W
 * whatever the rank, as with real adapters (f32 accumulation then stays far below an f16 ulp of the
 * result; a ΔW much larger than W would measure the accumulation, not the merge).
 */
export function randomOp(seed: number, spec: OpSpec): MergeOp {
  const rand = seededRandom(seed);
  const uniform = (n: number): number[] => Array.from({ length: n }, () => rand() * 2 - 1);
  const layout = spec.layout ?? 'out-in';
  const outF = layout === 'out-in' ? spec.rows : spec.cols;
  const inF = layout === 'out-in' ? spec.cols : spec.rows;
  const rowStart = spec.rowStart ?? 0;
  const rowCount = spec.rowCount ?? spec.rows - rowStart;
  const baseDtype = spec.baseDtype ?? 'F32';
  const factorDtype = (t: number): FloatDType =>
    Array.isArray(spec.factorDtype) ? spec.factorDtype[t] : spec.factorDtype ?? 'F32';
  const op: MergeOp = {
    name: spec.name ?? `w${spec.rows}x${spec.cols}`,
    rows: spec.rows,
    cols: spec.cols,
    layout,
    base: { dtype: baseDtype, data: encodeValues(uniform(rowCount * spec.cols), baseDtype) },
    terms: spec.ranks.map((r, t) => ({
      rank: r,
      scale: (spec.weights?.[t] ?? 1) * 0.3 / Math.sqrt(r),
      a: { dtype: factorDtype(t), data: encodeValues(uniform(r * inF), factorDtype(t)) },
      b: { dtype: factorDtype(t), data: encodeValues(uniform(outF * r), factorDtype(t)) },
    })),
    outDtype: spec.outDtype ?? baseDtype,
  };
  if (spec.rowStart !== undefined || spec.rowCount !== undefined) {
    op.rowStart = rowStart;
    op.rowCount = rowCount;
  }
  if (spec.dora) {
    const n = spec.dora === 'out' ? outF : inF;
    op.dora = {
      normAxis: spec.dora,
      epsilon: spec.epsilon ?? 0,
      magnitude: { dtype: 'F32', data: encodeValues(uniform(n).map((x) => 0.5 + Math.abs(x)), 'F32') },
    };
  }
  return op;
}

export interface MergeComparison {
  count: number;
  /** Elements whose bits equal the once-rounded f64 truth. */
  exact: number;
  /**
   * Largest distance in ulps from the rounded truth, over elements off by more than 1e-6·Σ|summands|
   * (a result that cancels to near 0 cannot be better than the f32 error of its summands).
   */
  maxUlp: number;
  /** f32: largest |got − truth| / (|truth| + 0.1·Σ|summands|). */
  maxRelError: number;
  firstMismatch?: string;
}

/** Compares a backend's output with the f64 truth rounded once to the output dtype. */
export function compareWithReference(op: MergeOp, out: Uint8Array): MergeComparison {
  const { values, magnitude } = referenceMerge(op);
  const got = outputBits(out, op.outDtype);
  if (got.length !== values.length) throw new Error(`output has ${got.length} elements, expected ${values.length}`);
  const res: MergeComparison = { count: got.length, exact: 0, maxUlp: 0, maxRelError: 0 };
  const view = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < got.length; i++) {
    const want = roundedBits(values[i], op.outDtype);
    if (want === got[i]) {
      res.exact++;
      continue;
    }
    const ulp = ulpDistance(got[i], want, op.outDtype);
    let value: number;
    if (op.outDtype === 'F32') {
      view.setUint32(0, got[i]);
      value = view.getFloat32(0);
    } else {
      value = decodeF64(encodeBits(got[i]), op.outDtype)[0];
    }
    const error = Math.abs(value - values[i]);
    if (!(error <= 1e-6 * magnitude[i])) res.maxUlp = Math.max(res.maxUlp, ulp);
    const rel = error / (Math.abs(values[i]) + 0.1 * magnitude[i]);
    res.maxRelError = Math.max(res.maxRelError, Number.isNaN(rel) ? Infinity : rel);
    res.firstMismatch ??= `element ${i}: got ${value}, truth ${values[i]} (${ulp} ulp)`;
  }
  return res;
}

function encodeBits(h: number): Uint8Array {
  return new Uint8Array([h & 0xff, h >>> 8]);
}
