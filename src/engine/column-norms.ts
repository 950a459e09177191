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
import { MergeError } from '../errors.js';

/** Sums of squares per stored column of V after `steps`, over every row of the tensor. */
export type ColumnSums<S> = (steps: S[]) => Promise<Float64Array>;

/**
 * The steps with each column-norm DoRA replaced by its fixed factors. `S` is the engine's step or
 * a caller's variant of it (dense terms still to be read per slab); DoRA steps are the engine's.
 */
export async function resolveColumnNorms<S extends { kind: string }>(
  op: Pick<MergeOp, 'name' | 'layout' | 'cols'>, steps: readonly S[], sums: ColumnSums<S | ScaleStep>,
): Promise<(S | ScaleStep)[]> {
  const resolved: (S | ScaleStep)[] = [];
  for (const step of steps) {
    if (!isColumnNormStep(op, step)) {
      resolved.push(step);
      continue;
    }
    const ss = await sums(resolved.slice());
    const exact = columnFactors(op.name, step.dora, ss);
    const factors = Float32Array.from(exact);
    resolved.push({ kind: 'scale', axis: step.dora.normAxis, factors: { dtype: 'F32', data: new Uint8Array(factors.buffer) }, exact });
  }
  return resolved;
}

/**
 * m / (‖column‖ + ε) per stored column from its sum of squares; with `group` g, consecutive g
 * columns share one norm (the square root of their summed squares) and one magnitude.
 */
export function columnFactors(name: string, dora: DoraSpec, ss: Float64Array): Float64Array {
  const m = decodeToF32(dora.magnitude.data, dora.magnitude.dtype);
  const g = dora.group ?? 1;
  const out = new Float64Array(ss.length);
  for (let c0 = 0; c0 < ss.length; c0 += g) {
    let s = 0;
    for (let c = c0; c < c0 + g; c++) s += ss[c];
    const f = doraFactor(name, dora, c0 / g, m[c0 / g], s);
    out.fill(f, c0, c0 + g);
  }
  return out;
}

/**
 * v² for a sum of squares, NaN where v is Inf or NaN: a sum that is Inf then means finite values
 * whose squares pass float64, one that is NaN a value that is not finite (an input's own NaN/Inf,
 * left to the NON_FINITE path that names it).
 */
export function normSquare(v: number): number {
  return Number.isFinite(v) ? v * v : NaN;
}

/** Below this ‖V‖², with ε = 0, the f64 sum of squares may have lost precision to subnormal squares. */
const SMALLEST_EXACT_SS = 2 ** -970;

/**
 * A DoRA factor m / max(‖V‖ + ε, normFloor) for feature `feature` from ‖V‖² (`ss`, float64), or a DORA_NORM
 * refusal where that is not the number the definition gives: V is zero there and ε = 0 (PEFT's
 * m / 0 times 0 merges NaN), ‖V‖² is past float64 (V before the DoRA step is too large, so its
 * squares overflow and the factor would come out 0), ‖V‖² is so small its squares were subnormal,
 * or the factor itself is past float64. A magnitude that is not finite, or V holding NaN or Inf
 * (`ss` NaN, see normSquare), is the inputs' own fault and is left to the NON_FINITE path, which
 * names the tensor holding it.
 */
export function doraFactor(name: string, dora: DoraSpec, feature: number, m: number, ss: number): number {
  const eps = dora.epsilon;
  const floor = dora.normFloor ?? 0;
  const q = m / Math.max(Math.sqrt(ss) + eps, floor);
  const f = dora.strength === undefined ? q : dora.strength * (q - 1) + 1;
  if (!Number.isFinite(m) || Number.isNaN(ss)) return f;
  // Under a floor, a norm below it (zero, or of subnormal squares) is not divided by.
  if (Number.isFinite(ss) && Number.isFinite(f) && (eps > 0 || floor > 0 || ss >= SMALLEST_EXACT_SS)) return f;
  const where = `tensor "${name}": DoRA norm of ${dora.normAxis === 'out' ? 'output' : 'input'} feature ${feature}`;
  if (!Number.isFinite(ss)) throw new MergeError('DORA_NORM', `${where}: W + ΔW before the DoRA step is too large for its squares in float64 (past 1.3e154); lower --weight`);
  if (ss === 0) {
    throw new MergeError('DORA_NORM', `${where}: W + ΔW is zero there and the norm takes no ε, so m / ‖W + ΔW‖ is ${m === 0 ? '0 / 0' : `${+m.toPrecision(4)} / 0`} (PEFT merges NaN there)`);
  }
  if (ss < SMALLEST_EXACT_SS) throw new MergeError('DORA_NORM', `${where}: ‖W + ΔW‖ = ${Math.sqrt(ss).toPrecision(3)} is below what float64 squares hold exactly (1e-146)`);
  throw new MergeError('DORA_NORM', `${where}: m / ‖W + ΔW‖ = ${+m.toPrecision(4)} / ${Math.sqrt(ss).toPrecision(3)} is past float64`);
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
