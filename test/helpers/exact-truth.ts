/**
 * The exact result of a merge, for tests: every input (decoded values, doubles for the scales) is
 * a dyadic rational m · 2^e, the merge W + Σ s·B·A (then a scale step's factor) is summed exactly
 * with BigInt and rounded once, to nearest with ties to even, by the fixtures' encoders (which the
 * engine does not use). Written plainly and independently of src/engine/exact.
 */
import type { FloatDType } from '../../src/dtype.js';
import type { MergeOp } from '../../src/engine/merge-op.js';
import { decodeValues, f16BitsFromF64, bf16BitsFromF64, f8BitsSaturating } from './fixtures.js';

interface Exact {
  m: bigint;
  e: number;
}

const view = new DataView(new ArrayBuffer(8));

/** A double as m · 2^e, read from its bits. */
function exact(x: number): Exact {
  if (x === 0) return { m: 0n, e: 0 };
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const m = biased === 0 ? fraction : fraction | (1n << 52n);
  const e = biased === 0 ? -1074 : biased - 1075;
  return { m: negative ? -m : m, e };
}

/** Every value summed is a multiple of 2^LOW: the smallest exponent of any term (set per op). */
let LOW = 0;

function scaled(x: Exact): bigint {
  if (x.m === 0n) return 0n;
  if (x.e < LOW) throw new Error('exact-truth: a value below the chosen resolution');
  return x.m << BigInt(x.e - LOW);
}

const minExp = (xs: readonly Exact[]): number => xs.reduce((m, x) => (x.m === 0n ? m : Math.min(m, x.e)), 0);

/** n · 2^LOW rounded to `precision` significant bits (exponents below minExp use minExp's step). */
function roundToDouble(n: bigint, precision: number, minExp: number): number {
  if (n === 0n) return 0;
  const negative = n < 0n;
  const mag = negative ? -n : n;
  const exponent = LOW + mag.toString(2).length - 1;
  const stepExp = Math.max(exponent, minExp) - (precision - 1);
  let q: bigint;
  if (stepExp <= LOW) {
    q = mag << BigInt(LOW - stepExp); // on the grid already
  } else {
    const shift = BigInt(stepExp - LOW);
    q = mag >> shift;
    const rest = mag - (q << shift);
    const half = 1n << (shift - 1n);
    if (rest > half || (rest === half && q % 2n === 1n)) q += 1n;
  }
  // q · 2^stepExp: at most precision + 1 bits, so a double holds it exactly (or overflows to Inf).
  const value = Number(q) * 2 ** stepExp;
  return negative ? -value : value;
}

const FORMAT: Record<FloatDType, [number, number]> = {
  F32: [24, -126], F16: [11, -14], BF16: [8, -126], F8_E4M3: [4, -6], F8_E5M2: [3, -14],
};

/** Bits of n · 2^LOW rounded once to dtype. */
function bitsOf(n: bigint, dtype: FloatDType): number {
  const [precision, minExp] = FORMAT[dtype];
  const x = roundToDouble(n, precision, minExp);
  switch (dtype) {
    case 'F32': {
      const f = new DataView(new ArrayBuffer(4));
      f.setFloat32(0, x); // exact, or ±Infinity past the largest f32
      return f.getUint32(0);
    }
    case 'F16': return f16BitsFromF64(x);
    case 'BF16': return bf16BitsFromF64(x);
    default: return f8BitsSaturating(x, dtype);
  }
}

/**
 * The exact merged value of each element of the op's rows (as n · 2^-3300), for ops of the form
 * W + Σ low-rank terms, optionally followed by steps: [{kind: 'scale'}] only.
 */
export function exactMergeNumerators(op: MergeOp): bigint[] {
  return numerators(op, decodeValues(op.base.data, op.base.dtype));
}

/** exactMergeNumerators with W's rows given as doubles. */
function numerators(op: Omit<MergeOp, 'base'>, w: ArrayLike<number>): bigint[] {
  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? op.rows - rowStart;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  const terms = op.terms.map((t) => ({
    a: Array.from(decodeValues(t.a.data, t.a.dtype), exact),
    b: Array.from(decodeValues(t.b.data, t.b.dtype), exact),
    r: t.rank, s: exact(t.scale), segments: t.placement?.segments, eba: 0,
  }));
  for (const t of terms) t.eba = minExp(t.a) + minExp(t.b);
  const steps = op.steps ?? [];
  if (op.dora || steps.some((s) => s.kind !== 'scale') || steps.length > 1) throw new Error('exactMergeNumerators: only terms and one scale step');
  const scale = steps[0]?.kind === 'scale' ? steps[0] : undefined;
  const factors = scale ? Array.from(decodeValues(scale.factors.data, scale.factors.dtype), exact) : undefined;
  LOW = Math.min(minExp(Array.from(w, exact)), ...terms.map((t) => t.s.e + minExp(t.a) + minExp(t.b)));
  if (factors) LOW += minExp(factors);
  const out: bigint[] = [];
  for (let r = 0; r < rowCount; r++) {
    for (let c = 0; c < op.cols; c++) {
      const [o, i] = op.layout === 'out-in' ? [rowStart + r, c] : [c, rowStart + r];
      let sum = scaled(exact(w[r * op.cols + c]));
      for (const t of terms) {
        let row = o;
        if (t.segments) {
          row = -1;
          for (const g of t.segments) if (o >= g.dst && o < g.dst + g.count) row = g.src + o - g.dst;
          if (row < 0) continue;
        }
        // Σ_k b·a as an integer times 2^(the factors' smallest exponents), then times s.
        let inner = 0n;
        for (let k = 0; k < t.r; k++) {
          const b = t.b[row * t.r + k], a = t.a[k * inF + i];
          if (b.m !== 0n && a.m !== 0n) inner += (b.m * a.m) << BigInt(b.e + a.e - t.eba);
        }
        sum += scaled({ m: inner * t.s.m, e: t.eba + t.s.e });
      }
      if (factors && scale) {
        const f = factors[scale.axis === 'out' ? o : i];
        // sum · f: sum is a multiple of 2^(LOW − min f exponent), f = m·2^e; back to 2^LOW exactly.
        const product = sum * f.m;
        sum = f.e >= 0 ? product << BigInt(f.e) : product >> BigInt(-f.e);
        if (f.e < 0 && (sum << BigInt(-f.e)) !== product) throw new Error('scale step below the reference\'s resolution');
      }
      out.push(sum);
    }
  }
  return out;
}

/** The op's correctly rounded output bits, element by element (an exact zero is +0). */
export function exactMergeBits(op: MergeOp): Uint32Array {
  const nums = exactMergeNumerators(op);
  return Uint32Array.from(nums, (n) => bitsOf(n, op.outDtype));
}

/**
 * exactMergeBits for a W that no float dtype stores (fp8 codes times their scales): W's rows as
 * finite doubles.
 */
export function exactMergeBitsOf(op: Omit<MergeOp, 'base'>, w: ArrayLike<number>): Uint32Array {
  return Uint32Array.from(numerators(op, w), (n) => bitsOf(n, op.outDtype));
}
