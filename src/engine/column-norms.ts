/**
 * DoRA norms that run across stored rows (LyCORIS's per-input norms of an (out, in) weight, PEFT's
 * per-output norms of a transposed one) need every row of V before any output. They are computed
 * in a pass of their own: sums of squares per column of V as it stands before the DoRA step,
 * summed over all row slabs, turned into fixed factors m / (‖V‖ + ε), and the DoRA step becomes a
 * `scale` step that any slab can run. Several such steps take one pass each, in order.
 */
import type { DoraSpec, MergeOp } from './merge-op.js';
import { needsColumnNorms, opSteps, type ScaleStep, type UpdateStep } from './update-steps.js';
import { decodeToF32 } from '../dtype.js';

/** Sums of squares per stored column of V after `steps`, over every row of the tensor. */
export type ColumnSums<S> = (steps: S[]) => Promise<Float64Array>;

/**
 * The steps with each column-norm DoRA replaced by its fixed factors. `S` is the engine's step or
 * a caller's variant of it (dense terms still to be read per slab); DoRA steps are the engine's.
 */
export async function resolveColumnNorms<S extends { kind: string }>(
  op: Pick<MergeOp, 'layout' | 'cols'>, steps: readonly S[], sums: ColumnSums<S | ScaleStep>,
): Promise<(S | ScaleStep)[]> {
  const resolved: (S | ScaleStep)[] = [];
  for (const step of steps) {
    if (!isColumnNormStep(op, step)) {
      resolved.push(step);
      continue;
    }
    const ss = await sums(resolved.slice());
    const exact = columnFactors(step.dora, ss);
    const factors = Float32Array.from(exact);
    resolved.push({ kind: 'scale', axis: step.dora.normAxis, factors: { dtype: 'F32', data: new Uint8Array(factors.buffer) }, exact });
  }
  return resolved;
}

/**
 * m / (‖column‖ + ε) per stored column from its sum of squares; with `group` g, consecutive g
 * columns share one norm (the square root of their summed squares) and one magnitude.
 */
export function columnFactors(dora: DoraSpec, ss: Float64Array): Float64Array {
  const m = decodeToF32(dora.magnitude.data, dora.magnitude.dtype);
  const g = dora.group ?? 1;
  const out = new Float64Array(ss.length);
  for (let c0 = 0; c0 < ss.length; c0 += g) {
    let s = 0;
    for (let c = c0; c < c0 + g; c++) s += ss[c];
    const f = m[c0 / g] / (Math.sqrt(s) + dora.epsilon);
    out.fill(f, c0, c0 + g);
  }
  return out;
}

function isColumnNormStep(op: Pick<MergeOp, 'layout'>, step: { kind: string }): step is Extract<UpdateStep, { kind: 'dora' }> {
  return step.kind === 'dora' && needsColumnNorms(op, step as UpdateStep);
}

/** Whether any step of the op needs norms across stored rows. */
export function hasColumnNorms(op: MergeOp): boolean {
  return opSteps(op).some((s) => needsColumnNorms(op, s));
}

/** The op with exactly these steps (its own terms and dora folded into them). */
export function withSteps(op: MergeOp, steps: UpdateStep[]): MergeOp {
  return { ...op, terms: [], dora: undefined, steps };
}

/** A whole op's column norms resolved on the op itself (the caller runs the passes). */
export async function resolveWholeOp(op: MergeOp, columnSums: (op: MergeOp) => Promise<Float64Array>): Promise<MergeOp> {
  const steps = await resolveColumnNorms<UpdateStep>(op, opSteps(op), (prefix) => columnSums(withSteps(op, prefix)));
  return withSteps(op, steps);
}
