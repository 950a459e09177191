/**
 * The exact result of an op with update steps, for tests: V as ΔW's out × in matrix of dyadic
 * rationals (BigInt mantissa, exponent), every step applied exactly by its textbook formula, then
 * each element rounded once. DoRA's factor m / (‖V‖ + ε) is defined (README) as its float64
 * evaluation from V: here V's elements are rounded to doubles, squared and summed in index order
 * in f64, which is how the engine orders them (its doubles differ from these in the last bit at
 * most, which moves an output only when it lies within 2^-45 of a rounding boundary). Independent
 * of src/engine/exact.
 */
import type { FloatDType } from '../../src/dtype.js';
import type { FloatTensorBytes, MergeOp } from '../../src/engine/merge-op.js';
import { bf16BitsFromF64, decodeValues, f16BitsFromF64, f8BitsSaturating } from './fixtures.js';
import { applyStep, opShape, stepsOf, type Arithmetic } from './step-formulas.js';

interface Q {
  m: bigint;
  e: number;
}

const view = new DataView(new ArrayBuffer(8));
const ZERO: Q = { m: 0n, e: 0 };

function q(x: number): Q {
  if (x === 0) return ZERO;
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const m = biased === 0 ? fraction : fraction | (1n << 52n);
  return { m: bits >> 63n ? -m : m, e: biased === 0 ? -1074 : biased - 1075 };
}

function add(a: Q, b: Q): Q {
  if (a.m === 0n) return b;
  if (b.m === 0n) return a;
  const e = Math.min(a.e, b.e);
  return { m: (a.m << BigInt(a.e - e)) + (b.m << BigInt(b.e - e)), e };
}

function mul(a: Q, b: Q): Q {
  return a.m === 0n || b.m === 0n ? ZERO : { m: a.m * b.m, e: a.e + b.e };
}

/** x rounded once to `precision` bits (minExp's step below it), as a double (exact; ±Inf past 2^1024). */
function toDouble(x: Q, precision = 53, minExp = -1022): number {
  if (x.m === 0n) return 0;
  const negative = x.m < 0n;
  const mag = negative ? -x.m : x.m;
  const exponent = x.e + mag.toString(2).length - 1;
  const stepExp = Math.max(exponent, minExp) - (precision - 1);
  let n: bigint;
  if (stepExp <= x.e) {
    n = mag << BigInt(x.e - stepExp);
  } else {
    const shift = BigInt(stepExp - x.e);
    n = mag >> shift;
    const rest = mag - (n << shift);
    const half = 1n << (shift - 1n);
    if (rest > half || (rest === half && n % 2n === 1n)) n += 1n;
  }
  const v = Number(n) * 2 ** stepExp;
  return negative ? -v : v;
}

const FORMAT: Record<FloatDType, [number, number]> = {
  F32: [24, -126], F16: [11, -14], BF16: [8, -126], F8_E4M3: [4, -6], F8_E5M2: [3, -14],
};

function bits(x: Q, dtype: FloatDType): number {
  const [precision, minExp] = FORMAT[dtype];
  const d = toDouble(x, precision, minExp);
  switch (dtype) {
    case 'F32': {
      const f = new DataView(new ArrayBuffer(4));
      f.setFloat32(0, d);
      return f.getUint32(0);
    }
    case 'F16': return f16BitsFromF64(d);
    case 'BF16': return bf16BitsFromF64(d);
    default: return f8BitsSaturating(d, dtype);
  }
}

/** Exact dyadic rationals: sums and products never round. */
const EXACT: Arithmetic<Q> = {
  zero: ZERO,
  add,
  mul,
  of: (x) => q(x),
  values: (t) => Array.from(decodeValues(t.data, t.dtype), q),
};

/** The op's correctly rounded output bits (whole ops: rowStart 0). */
export function exactStepsBits(op: MergeOp): Uint32Array {
  const shape = opShape(op);
  const { outF, inF, stored } = shape;
  const dec = (t: FloatTensorBytes) => decodeValues(t.data, t.dtype);
  const w = dec(op.base);
  let v: Q[][] = Array.from({ length: outF }, (_, o) => Array.from({ length: inF }, (_, i) => q(w[stored(o, i)])));
  for (const step of stepsOf(op)) {
    if (step.kind === 'dora') {
      const m = dec(step.dora.magnitude);
      const eps = step.dora.epsilon;
      const d = v.map((row) => row.map((x) => toDouble(x)));
      if (step.dora.normAxis === 'out') {
        for (let o = 0; o < outF; o++) {
          let ss = 0;
          for (let i = 0; i < inF; i++) ss += d[o][i] * d[o][i];
          const f = q(m[o] / (Math.sqrt(ss) + eps));
          v[o] = v[o].map((x) => mul(x, f));
        }
      } else {
        const g = step.dora.group ?? 1;
        for (let c = 0; c < inF / g; c++) {
          let ss = 0;
          for (let i = c * g; i < (c + 1) * g; i++) {
            let col = 0;
            for (let o = 0; o < outF; o++) col += d[o][i] * d[o][i];
            ss += col;
          }
          const f = q(m[c] / (Math.sqrt(ss) + eps));
          for (let i = c * g; i < (c + 1) * g; i++) for (let o = 0; o < outF; o++) v[o][i] = mul(v[o][i], f);
        }
      }
    } else if (step.kind === 'scale') {
      const f = step.exact ? Array.from(step.exact, q) : Array.from(dec(step.factors), q);
      for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) v[o][i] = mul(v[o][i], step.axis === 'out' ? f[o] : f[i]);
    } else {
      v = applyStep(v, step, EXACT, shape);
    }
  }
  const out = new Uint32Array(op.rows * op.cols);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) out[stored(o, i)] = bits(v[o][i], op.outDtype);
  return out;
}
