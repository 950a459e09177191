/**
 * Float64 truth for merge tests, written plainly and independently of the engine: decoding with
 * @petamoriken/float16 (f16) and bit shifts (bf16), the merge as literal sums over ΔW = B·A, and
 * rounding a double once to f32/f16/bf16 by arithmetic, not by the engine's bit tricks.
 */
import type { FloatDType } from '../../src/dtype.js';
import type { LowRankTerm, MergeOp, RowPlacement } from '../../src/engine/merge-op.js';
import { bf16BitsFromF64, decodeValues, encodeValues, f16BitsFromF64, f8BitsSaturating, seededRandom } from './fixtures.js';

const BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1 };

/** Exact values of little-endian float bytes, as doubles. */
export function decodeF64(bytes: Uint8Array, dtype: FloatDType): Float64Array {
  return decodeValues(bytes, dtype);
}

/** Bits of x rounded once to `dtype` (f32: 32 bits; f16/bf16: 16 bits). */
const scratch = new DataView(new ArrayBuffer(4));

export function roundedBits(x: number, dtype: FloatDType): number {
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') return f8BitsSaturating(x, dtype);
  if (dtype === 'F16') return f16BitsFromF64(x);
  if (dtype === 'BF16') return bf16BitsFromF64(x);
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

/** The value of bf16 bits. */
export function bf16BitsToNumber(h: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, h << 16);
  return view.getFloat32(0);
}

/** Output bytes as integers (u32 for f32, u16 for f16/bf16, u8 for fp8). */
export function outputBits(bytes: Uint8Array, dtype: FloatDType): Uint32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = BYTES[dtype];
  const n = bytes.byteLength / width;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = width === 4 ? view.getUint32(i * 4, true) : width === 2 ? view.getUint16(i * 2, true) : view.getUint8(i);
  return out;
}

/** Distance in units in the last place between two same-width float bit patterns. */
export function ulpDistance(a: number, b: number, dtype: FloatDType): number {
  const signBit = dtype === 'F32' ? 0x80000000 : BYTES[dtype] === 1 ? 0x80 : 0x8000;
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
  const terms = op.terms.map((t) => ({
    a: decodeF64(t.a.data, t.a.dtype), b: decodeF64(t.b.data, t.b.dtype), r: t.rank, s: t.scale, segments: t.placement?.segments,
  }));
  /** The ΔW row of term t that lands on output row o, or -1 when none does. */
  const deltaRow = (t: (typeof terms)[number], o: number): number => {
    if (!t.segments) return o;
    for (const g of t.segments) if (o >= g.dst && o < g.dst + g.count) return g.src + (o - g.dst);
    return -1;
  };
  const w = decodeF64(op.base.data, op.base.dtype);
  // Full V (out × in) when DoRA needs whole norms, else just the op's rows.
  let mag = 0;
  /** ΔW[o, i] summed over terms; leaves Σ|summands| in `mag`. */
  const v = (o: number, i: number): number => {
    let sum = 0;
    mag = 0;
    for (const t of terms) {
      const row = deltaRow(t, o);
      if (row < 0) continue;
      let d = 0;
      let dm = 0;
      for (let k = 0; k < t.r; k++) {
        d += t.b[row * t.r + k] * t.a[k * inF + i];
        dm += Math.abs(t.b[row * t.r + k] * t.a[k * inF + i]);
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

// The seeded generator and the once-rounding encoder are the fixtures' (one implementation each).
export { encodeValues, seededRandom } from './fixtures.js';

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
  /** Per term: where its ΔW rows land (B then has deltaRows rows); absent: W's rows one to one. */
  placements?: (RowPlacement | undefined)[];
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
    terms: spec.ranks.map((r, t) => {
      const placement = spec.placements?.[t];
      const term: LowRankTerm = {
        rank: r,
        scale: (spec.weights?.[t] ?? 1) * 0.3 / Math.sqrt(r),
        a: { dtype: factorDtype(t), data: encodeValues(uniform(r * inF), factorDtype(t)) },
        b: { dtype: factorDtype(t), data: encodeValues(uniform((placement?.deltaRows ?? outF) * r), factorDtype(t)) },
      };
      if (placement) term.placement = placement;
      return term;
    }),
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
      value = decodeF64(BYTES[op.outDtype] === 1 ? new Uint8Array([got[i]]) : encodeBits(got[i]), op.outDtype)[0];
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
