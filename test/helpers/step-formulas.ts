/**
 * The update steps' textbook formulas written once over an arithmetic, for the two test references
 * of ops with steps: float64 (helpers/step-ops.ts) and exact dyadic rationals (helpers/exact-steps.ts).
 * V is ΔW's out × in matrix; every sum runs in index order as written, so the float64 reference
 * rounds as it always did. DoRA and the scale step stay with each reference: there the two differ on
 * purpose (how the norms are rounded, which factors are read). Independent of src/engine.
 */
import type { FloatTensorBytes, MergeOp } from '../../src/engine/merge-op.js';
import type { UpdateStep } from '../../src/engine/update-steps.js';

/** The numbers a reference computes in. */
export interface Arithmetic<T> {
  zero: T;
  add(a: T, b: T): T;
  mul(a: T, b: T): T;
  /** A double as one of these numbers. */
  of(x: number): T;
  /** A tensor's values as these numbers. */
  values(t: FloatTensorBytes): T[];
}

/** ΔW's dims for an op, and where its element (o, i) is stored. */
export interface OpShape {
  outF: number;
  inF: number;
  stored(o: number, i: number): number;
}

/** The op's ΔW dims and storage order, from its rows, cols and layout. */
export function opShape(op: MergeOp): OpShape {
  return {
    outF: op.layout === 'out-in' ? op.rows : op.cols,
    inF: op.layout === 'out-in' ? op.cols : op.rows,
    stored: (o, i) => (op.layout === 'out-in' ? o * op.cols + i : i * op.cols + o),
  };
}

/** The op's whole update in order: its terms, its DoRA, then its steps. */
export function stepsOf(op: MergeOp): UpdateStep[] {
  const all: UpdateStep[] = [];
  if (op.terms.length) all.push({ kind: 'add', terms: op.terms });
  if (op.dora) all.push({ kind: 'dora', dora: op.dora });
  all.push(...(op.steps ?? []));
  return all;
}

/** V after `step` (any kind but DoRA and scale), in arithmetic `ar`; V may be changed in place. */
export function applyStep<T>(v: T[][], step: Exclude<UpdateStep, { kind: 'dora' | 'scale' }>, ar: Arithmetic<T>, shape: OpShape): T[][] {
  const { outF, inF, stored } = shape;
  const { zero, add, mul } = ar;
  switch (step.kind) {
    case 'add': {
      for (const term of step.terms) {
        const a = ar.values(term.a), b = ar.values(term.b), s = ar.of(term.scale);
        for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) {
          let d = zero;
          for (let k = 0; k < term.rank; k++) d = add(d, mul(b[o * term.rank + k], a[k * inF + i]));
          v[o][i] = add(v[o][i], mul(s, d));
        }
      }
      for (const dense of step.dense ?? []) {
        const d = dense.exact ? Array.from(dense.exact, ar.of) : ar.values(dense.values), s = ar.of(dense.scale);
        for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) v[o][i] = add(v[o][i], mul(s, d[stored(o, i)]));
      }
      return v;
    }
    case 'self': {
      // x' = x + s·(x·P)·Q.
      const p = ar.values(step.p), q = ar.values(step.q), s = ar.of(step.scale);
      return v.map((x) => {
        const t = Array.from({ length: step.rank }, (_, k) => x.reduce((acc, xi, i) => add(acc, mul(xi, p[i * step.rank + k])), zero));
        return x.map((xi, i) => add(xi, mul(s, t.reduce((acc, tk, k) => add(acc, mul(tk, q[k * inF + i])), zero))));
      });
    }
    case 'tiles': {
      // Each row of row tile i, per column tile: x' = x + s·x·B_i.
      const m = ar.values(step.blocks), b = step.size, s = ar.of(step.scale);
      return v.map((x, o) => x.map((xi, c) => {
        const i = Math.floor(o / b), k0 = c - (c % b);
        let t = zero;
        for (let n = 0; n < b; n++) t = add(t, mul(x[k0 + n], m[i * b * b + n * b + (c - k0)]));
        return add(xi, mul(s, t));
      }));
    }
    case 'hadamard': {
      // x' = x + s·x ⊙ (B·A).
      const a = ar.values(step.a), b = ar.values(step.b), s = ar.of(step.scale), k = step.rank;
      return v.map((x, o) => x.map((xi, i) => {
        let m = zero;
        for (let j = 0; j < k; j++) m = add(m, mul(b[o * k + j], a[j * inF + i]));
        return add(xi, mul(mul(s, xi), m));
      }));
    }
    case 'permuted-blocks': {
      // x'[σ(p)] = Σ_j M_k[p − k·b, j]·x[σ(k·b + j)] over the (possibly short) block k = ⌊p/b⌋.
      const m = ar.values(step.blocks);
      const b = step.blockSize;
      const sigma = (p: number): number => (step.gather ? step.gather[p] : p);
      return alongAxis(v, step.axis, inF, (x) => {
        const y = new Array<T>(x.length);
        for (let p = 0; p < x.length; p++) {
          const k = Math.floor(p / b), size = Math.min(b, x.length - k * b);
          let s = zero;
          for (let j = 0; j < size; j++) s = add(s, mul(m[k * b * b + (p - k * b) * b + j], x[sigma(k * b + j)]));
          y[sigma(p)] = s;
        }
        return y;
      });
    }
    case 'rotate': {
      // Block k of b entries times its own b × b block.
      const m = ar.values(step.blocks);
      const b = step.blockSize;
      return alongAxis(v, step.axis, inF, (x) => x.map((_, j) => {
        const k = Math.floor(j / b), row = j % b;
        let s = zero;
        for (let n = 0; n < b; n++) s = add(s, mul(m[k * b * b + row * b + n], x[k * b + n]));
        return s;
      }));
    }
  }
}

/** V with `map` applied to each row (a map of the inputs, axis 'in') or each column (axis 'out'). */
function alongAxis<T>(v: T[][], axis: 'out' | 'in', inF: number, map: (x: T[]) => T[]): T[][] {
  if (axis === 'in') return v.map(map);
  const cols = Array.from({ length: inF }, (_, i) => map(v.map((row) => row[i])));
  return v.map((_, o) => cols.map((col) => col[o]));
}
