/**
 * Random ops with sequences of update steps, and their float64 truth written plainly: V is built as
 * ΔW's (out × in) matrix of doubles, each step is applied by its textbook formula, and the result is
 * read back in the stored orientation.
 */
import { DTYPE_BYTES, type FloatDType } from '../../src/dtype.js';
import type { FloatTensorBytes, MergeOp } from '../../src/engine/merge-op.js';
import type { UpdateStep } from '../../src/engine/update-steps.js';
import { decodeF64, outputBits, roundedBits, ulpDistance } from './reference-math.js';
import { encodeValues, seededRandom } from './fixtures.js';
import { applyStep, opShape, stepsOf, type Arithmetic } from './step-formulas.js';

export type StepSpec =
  /** `exactDense`: the dense terms as float64 products of two f32 values (a kron of full LoKr factors), not stored bytes. */
  | { kind: 'add'; ranks: number[]; dense?: number; exactDense?: boolean; weights?: number[] }
  | { kind: 'dora'; axis: 'out' | 'in'; epsilon?: number; group?: number }
  | { kind: 'scale'; axis: 'out' | 'in' }
  | { kind: 'self'; rank: number }
  | { kind: 'hadamard'; rank: number }
  | { kind: 'tiles'; size: number }
  | { kind: 'rotate'; axis: 'out' | 'in'; block: number }
  /** Blocks of `block` after a random permutation within runs of `span` (none: identity); b need not divide the axis. */
  | { kind: 'permuted'; axis: 'out' | 'in'; block: number; span?: number };

export interface StepOpSpec {
  rows: number;
  cols: number;
  layout?: 'out-in' | 'in-out';
  baseDtype?: FloatDType;
  outDtype?: FloatDType;
  factorDtype?: FloatDType;
  steps: StepSpec[];
}

/** A whole-tensor op whose update is exactly `spec.steps` (no legacy terms/dora). */
export function randomStepOp(seed: number, spec: StepOpSpec): MergeOp {
  const rand = seededRandom(seed);
  const uniform = (n: number): number[] => Array.from({ length: n }, () => rand() * 2 - 1);
  const layout = spec.layout ?? 'out-in';
  const outF = layout === 'out-in' ? spec.rows : spec.cols;
  const inF = layout === 'out-in' ? spec.cols : spec.rows;
  const fd = spec.factorDtype ?? 'F32';
  const t = (values: number[], dtype: FloatDType = fd): FloatTensorBytes => ({ dtype, data: encodeValues(values, dtype) });
  const baseDtype = spec.baseDtype ?? 'F32';
  const steps: UpdateStep[] = spec.steps.map((s): UpdateStep => {
    switch (s.kind) {
      case 'add':
        return {
          kind: 'add',
          terms: s.ranks.map((r, k) => ({
            rank: r, scale: (s.weights?.[k] ?? 1) * 0.3 / Math.sqrt(r), a: t(uniform(r * inF)), b: t(uniform(outF * r)),
          })),
          dense: Array.from({ length: s.dense ?? 0 }, () => (s.exactDense
            ? { scale: 0.2, exact: Float64Array.from(uniform(spec.rows * spec.cols), (x) => Math.fround(x) * Math.fround(rand())) }
            : { scale: 0.2, values: t(uniform(spec.rows * spec.cols)) })),
        };
      case 'dora':
        return { kind: 'dora', dora: {
          normAxis: s.axis, epsilon: s.epsilon ?? 0, ...(s.group ? { group: s.group } : {}),
          magnitude: t(uniform(s.axis === 'out' ? outF : inF / (s.group ?? 1)).map((x) => 0.5 + Math.abs(x)), 'F32'),
        } };
      case 'scale':
        return { kind: 'scale', axis: s.axis, factors: t(uniform(s.axis === 'out' ? outF : inF).map((x) => 1 + 0.5 * x)) };
      case 'self':
        return { kind: 'self', rank: s.rank, scale: 0.5 / Math.sqrt(s.rank), p: t(uniform(inF * s.rank).map((x) => x / Math.sqrt(inF))), q: t(uniform(s.rank * inF)) };
      case 'tiles':
        return { kind: 'tiles', size: s.size, scale: 0.7, blocks: t(uniform(outF * s.size).map((x) => x / Math.sqrt(s.size))) };
      case 'hadamard':
        return { kind: 'hadamard', rank: s.rank, scale: 0.5 / Math.sqrt(s.rank), a: t(uniform(s.rank * inF)), b: t(uniform(outF * s.rank)) };
      case 'rotate': {
        const n = s.axis === 'out' ? outF : inF;
        const b = s.block;
        const blocks = uniform(n * b).map((x, j) => 0.4 * x / Math.sqrt(b) + (Math.floor(j / b) % b === j % b ? 1 : 0));
        return { kind: 'rotate', axis: s.axis, blockSize: b, blocks: t(blocks, 'F32') };
      }
      case 'permuted': {
        const n = s.axis === 'out' ? outF : inF;
        const b = s.block;
        const blocks = uniform(Math.ceil(n / b) * b * b).map((x, j) => 0.4 * x / Math.sqrt(b) + (Math.floor(j / b) % b === j % b ? 1 : 0));
        const step: UpdateStep = { kind: 'permuted-blocks', axis: s.axis, blockSize: b, blocks: t(blocks, 'F32'), span: s.span ?? b };
        if (s.span !== undefined) {
          // A random permutation within each run of `span` (the last run may be shorter).
          const gather = new Uint32Array(n);
          for (let r0 = 0; r0 < n; r0 += s.span) {
            const run = Array.from({ length: Math.min(s.span, n - r0) }, (_, i) => r0 + i);
            for (let i = run.length - 1; i > 0; i--) {
              const j = Math.floor(rand() * (i + 1));
              [run[i], run[j]] = [run[j], run[i]];
            }
            gather.set(run, r0);
          }
          step.gather = gather;
        }
        return step;
      }
    }
  });
  return {
    name: `steps${spec.rows}x${spec.cols}`,
    rows: spec.rows,
    cols: spec.cols,
    layout,
    base: { dtype: baseDtype, data: encodeValues(uniform(spec.rows * spec.cols), baseDtype) },
    terms: [],
    outDtype: spec.outDtype ?? baseDtype,
    steps,
  };
}

/** Plain float64: each sum and product rounds as JavaScript's numbers do. */
const F64: Arithmetic<number> = {
  zero: 0,
  add: (a, b) => a + b,
  mul: (a, b) => a * b,
  of: (x) => x,
  values: (t) => Array.from(decodeF64(t.data, t.dtype)),
};

/** The truth for a whole op (rowStart 0): V as ΔW's out × in doubles, every step in turn. */
export function referenceSteps(op: MergeOp): Float64Array {
  const shape = opShape(op);
  const { outF, inF, stored } = shape;
  const w = decodeF64(op.base.data, op.base.dtype);
  let v: number[][] = Array.from({ length: outF }, (_, o) => Array.from({ length: inF }, (_, i) => w[stored(o, i)]));
  const f64 = (x: FloatTensorBytes) => decodeF64(x.data, x.dtype);
  for (const step of stepsOf(op)) {
    if (step.kind === 'dora') {
      const m = f64(step.dora.magnitude);
      const eps = step.dora.epsilon;
      if (step.dora.normAxis === 'out') {
        for (let o = 0; o < outF; o++) {
          const norm = Math.sqrt(v[o].reduce((s, x) => s + x * x, 0));
          for (let i = 0; i < inF; i++) v[o][i] *= m[o] / (norm + eps);
        }
      } else {
        // Input channel c owns the `group` columns c·g … c·g + g − 1 (a conv's kernel positions).
        const g = step.dora.group ?? 1;
        for (let c = 0; c < inF / g; c++) {
          let ss = 0;
          for (let i = c * g; i < (c + 1) * g; i++) for (let o = 0; o < outF; o++) ss += v[o][i] ** 2;
          for (let i = c * g; i < (c + 1) * g; i++) for (let o = 0; o < outF; o++) v[o][i] *= m[c] / (Math.sqrt(ss) + eps);
        }
      }
    } else if (step.kind === 'scale') {
      const f = f64(step.factors);
      for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) v[o][i] *= step.axis === 'out' ? f[o] : f[i];
    } else {
      v = applyStep(v, step, F64, shape);
    }
  }
  const out = new Float64Array(op.rows * op.cols);
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) out[stored(o, i)] = v[o][i];
  return out;
}

/**
 * Compares output bytes (for stored rows [rowStart, rowStart + n)) with the truth rounded once.
 * f16/bf16: at most 1 ulp anywhere and ≥ 99 % bit-exact; f32: within 2e-6 of the row's scale.
 */
export function checkAgainstTruth(truth: Float64Array, op: Pick<MergeOp, 'cols' | 'outDtype'>, out: Uint8Array, rowStart = 0): string | undefined {
  const got = outputBits(out, op.outDtype);
  let exact = 0;
  const rms = Math.sqrt(truth.reduce((s, x) => s + x * x, 0) / truth.length);
  const view = new DataView(new ArrayBuffer(4));
  for (let j = 0; j < got.length; j++) {
    const x = truth[rowStart * op.cols + j];
    const want = roundedBits(x, op.outDtype);
    if (want === got[j]) {
      exact++;
      continue;
    }
    if (op.outDtype === 'F32') {
      view.setUint32(0, got[j]);
      if (Math.abs(view.getFloat32(0) - x) > 2e-6 * (Math.abs(x) + rms)) return `element ${j}: got ${view.getFloat32(0)}, truth ${x}`;
    } else if (ulpDistance(got[j], want, op.outDtype) > 1) {
      return `element ${j}: ${ulpDistance(got[j], want, op.outDtype)} ulp from truth ${x}`;
    }
  }
  if (op.outDtype !== 'F32' && exact < 0.99 * got.length) return `only ${exact} of ${got.length} elements bit-exact`;
  return undefined;
}

/** Rows [r0, r0 + n) of a whole op, with these (already resolved) steps: W and the dense terms cut to them. */
export function slabOf(op: MergeOp, steps: UpdateStep[], r0: number, n: number): MergeOp {
  const cut = (x: FloatTensorBytes): FloatTensorBytes => ({ dtype: x.dtype, data: x.data.subarray(r0 * op.cols * DTYPE_BYTES[x.dtype], (r0 + n) * op.cols * DTYPE_BYTES[x.dtype]) });
  return {
    ...op,
    base: cut(op.base),
    rowStart: r0,
    rowCount: n,
    steps: steps.map((s) => (s.kind === 'add' && s.dense ? { ...s, dense: s.dense.map((d) => (d.exact ? { ...d, exact: d.exact.subarray(r0 * op.cols, (r0 + n) * op.cols) } : { ...d, values: cut(d.values) })) } : s)),
  };
}
