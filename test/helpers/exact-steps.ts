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
import type { UpdateStep } from '../../src/engine/update-steps.js';
import { bf16BitsFromF64, decodeValues, f16BitsFromF64, f8BitsSaturating } from './fixtures.js';

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

/** The op's correctly rounded output bits (whole ops: rowStart 0). */
export function exactStepsBits(op: MergeOp): Uint32Array {
  const outF = op.layout === 'out-in' ? op.rows : op.cols;
  const inF = op.layout === 'out-in' ? op.cols : op.rows;
  const stored = (o: number, i: number): number => (op.layout === 'out-in' ? o * op.cols + i : i * op.cols + o);
  const dec = (t: FloatTensorBytes) => decodeValues(t.data, t.dtype);
  const w = dec(op.base);
  let v: Q[][] = Array.from({ length: outF }, (_, o) => Array.from({ length: inF }, (_, i) => q(w[stored(o, i)])));
  const all: UpdateStep[] = [];
  if (op.terms.length) all.push({ kind: 'add', terms: op.terms });
  if (op.dora) all.push({ kind: 'dora', dora: op.dora });
  all.push(...(op.steps ?? []));
  for (const step of all) {
    if (step.kind === 'add') {
      for (const term of step.terms) {
        const a = Array.from(dec(term.a), q), b = Array.from(dec(term.b), q), s = q(term.scale);
        for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) {
          let d = ZERO;
          for (let k = 0; k < term.rank; k++) d = add(d, mul(b[o * term.rank + k], a[k * inF + i]));
          v[o][i] = add(v[o][i], mul(s, d));
        }
      }
      for (const dense of step.dense ?? []) {
        const d = dense.exact ?? dec(dense.values), s = q(dense.scale);
        for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) v[o][i] = add(v[o][i], mul(s, q(d[stored(o, i)])));
      }
    } else if (step.kind === 'dora') {
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
    } else if (step.kind === 'self') {
      const p = Array.from(dec(step.p), q), qq = Array.from(dec(step.q), q), s = q(step.scale);
      v = v.map((x) => {
        const t = Array.from({ length: step.rank }, (_, k) => mul(s, x.reduce((acc, xi, i) => add(acc, mul(xi, p[i * step.rank + k])), ZERO)));
        return x.map((xi, i) => t.reduce((acc, tk, k) => add(acc, mul(tk, qq[k * inF + i])), xi));
      });
    } else if (step.kind === 'tiles') {
      // Each row of row tile i, per column tile: x' = x + s·x·B_i.
      const m = Array.from(dec(step.blocks), q), b = step.size, s = q(step.scale);
      v = v.map((x, o) => x.map((xi, c) => {
        const i = Math.floor(o / b), k0 = c - (c % b);
        let t = ZERO;
        for (let n = 0; n < b; n++) t = add(t, mul(x[k0 + n], m[i * b * b + n * b + (c - k0)]));
        return add(xi, mul(s, t));
      }));
    } else if (step.kind === 'hadamard') {
      const a = Array.from(dec(step.a), q), b = Array.from(dec(step.b), q), s = q(step.scale), k = step.rank;
      v = v.map((x, o) => x.map((xi, i) => {
        let m = ZERO;
        for (let j = 0; j < k; j++) m = add(m, mul(b[o * k + j], a[j * inF + i]));
        return add(xi, mul(xi, mul(s, m)));
      }));
    } else if (step.kind === 'permuted-blocks') {
      // x'[σ(p)] = Σ_j M_k[p − k·b, j]·x[σ(k·b + j)], k = ⌊p/b⌋, over the block's own size.
      const m = Array.from(dec(step.blocks), q);
      const b = step.blockSize;
      const sigma = (p: number): number => (step.gather ? step.gather[p] : p);
      const map = (x: Q[]): Q[] => {
        const y = new Array<Q>(x.length);
        for (let p = 0; p < x.length; p++) {
          const k = Math.floor(p / b), size = Math.min(b, x.length - k * b);
          let s = ZERO;
          for (let j = 0; j < size; j++) s = add(s, mul(m[k * b * b + (p - k * b) * b + j], x[sigma(k * b + j)]));
          y[sigma(p)] = s;
        }
        return y;
      };
      if (step.axis === 'in') v = v.map(map);
      else {
        const cols = Array.from({ length: inF }, (_, i) => map(v.map((row) => row[i])));
        v = v.map((_, o) => cols.map((col) => col[o]));
      }
    } else {
      const m = Array.from(dec(step.blocks), q);
      const b = step.blockSize;
      const rotate = (x: Q[]): Q[] => x.map((_, j) => {
        const k = Math.floor(j / b), row = j % b;
        let s = ZERO;
        for (let n = 0; n < b; n++) s = add(s, mul(m[k * b * b + row * b + n], x[k * b + n]));
        return s;
      });
      if (step.axis === 'in') v = v.map(rotate);
      else {
        const cols = Array.from({ length: inF }, (_, i) => rotate(v.map((row) => row[i])));
        v = v.map((_, o) => cols.map((col) => col[o]));
      }
    }
  }
  const out = new Uint32Array(op.rows * op.cols);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) out[stored(o, i)] = bits(v[o][i], op.outDtype);
  return out;
}
