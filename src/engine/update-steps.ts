/**
 * A tensor's update as an ordered sequence of steps on V, which starts as W and is rounded once to
 * the output dtype after the last step. Everything between is f32 or better. This is how PEFT merges
 * adapters one after another and how LyCORIS applies its modules: additive terms first, DoRA after
 * the adapters before it, then whatever follows.
 *
 * Axes are ΔW's (out, in), whatever the storage layout. A step either works within a stored row
 * (so any row slab can run it), or needs whole blocks of rows (rotations along stored rows: slabs
 * start on a block boundary), or needs sums over every stored row (DoRA norms across rows: the
 * caller computes them first, over all slabs, with `columnSumsOfSquares`, and passes the factors
 * in a `scale` step; see resolveColumnNorms).
 */
import type { DoraSpec, FloatTensorBytes, LowRankTerm, MergeOp } from './merge-op.js';
import type { PermutedBlocksStep } from './permuted-blocks.js';
import { lcm } from '../integers.js';

export type { PermutedBlocksStep } from './permuted-blocks.js';

/**
 * A dense update D in W's stored orientation, the op's slab rows only (rowCount × cols of the
 * stored matrix), added as `scale · D`: as read (`values`), or as f64 where it was computed rather
 * than read (`exact`: a kron of two full LoKr factors, whose products need up to 48 bits, so that no
 * f32 rounding enters the result).
 */
export type DenseTerm = { scale: number } & ({ values: FloatTensorBytes; exact?: undefined } | { exact: Float64Array; values?: undefined });

/** V += Σ s·B·A + Σ s·D, all in one pass. */
export interface AddStep {
  kind: 'add';
  terms: LowRankTerm[];
  dense?: DenseTerm[];
}

/** V ⊙= m / (‖V‖ + ε), norms along one axis of V as it stands before this step. */
export interface DoraStep {
  kind: 'dora';
  dora: DoraSpec;
}

/** V[o, i] *= f[o] (axis `out`) or f[i] (axis `in`): IA3, or DoRA with norms computed beforehand. */
export interface ScaleStep {
  kind: 'scale';
  axis: 'out' | 'in';
  /** outFeatures or inFeatures values. */
  factors: FloatTensorBytes;
  /**
   * The same factors in f64, where they were computed rather than read (DoRA norms resolved over
   * all row slabs): executors use these, so that no f32 rounding enters the result.
   */
  exact?: Float64Array;
}

/**
 * V += s · (V·P)·Q along the input axis (GLoRA's W·a1·a2): P is in × rank, Q is rank × in.
 * Needs W stored (out, in) so that each stored row is one input vector.
 */
export interface SelfLowRankStep {
  kind: 'self';
  p: FloatTensorBytes;
  q: FloatTensorBytes;
  rank: number;
  scale: number;
}

/**
 * A block-diagonal linear map along one axis (OFT's rotations): every vector x along `axis`
 * becomes x' with x'[k·b + m] = Σ_n M_k[m, n] · x[k·b + n], b = blockSize, M_k row-major in `blocks`.
 */
export interface RotateStep {
  kind: 'rotate';
  axis: 'out' | 'in';
  blockSize: number;
  /** (axis length / blockSize) blocks of blockSize × blockSize. */
  blocks: FloatTensorBytes;
}

/**
 * V += s · V ⊙ (B·A), elementwise (PEFT HiRA's W ⊙ B·A): A is rank × in, B is out × rank, in ΔW's
 * orientation whatever the layout.
 */
export interface HadamardStep {
  kind: 'hadamard';
  a: FloatTensorBytes;
  b: FloatTensorBytes;
  rank: number;
  scale: number;
}

/**
 * V_ij += s · V_ij·B_i for every size × size tile of V (row tile i, column tile j), one block B_i
 * per tile of rows (PEFT MiSS's `bat` form): x'[j·size + c] = x[j·size + c] + s·Σ_b x[j·size + b]·B_i[b, c]
 * along each stored row x of row tile i. Needs W stored (out, in), both dims multiples of size.
 */
export interface TileStep {
  kind: 'tiles';
  size: number;
  /** (rows / size) blocks of size × size, row-major. */
  blocks: FloatTensorBytes;
  scale: number;
}

export type UpdateStep = AddStep | DoraStep | ScaleStep | SelfLowRankStep | RotateStep | PermutedBlocksStep | HadamardStep | TileStep;

/** The op's whole update in order: `terms`, then `dora`, then `steps`. */
export function opSteps(op: MergeOp): UpdateStep[] {
  const steps: UpdateStep[] = [];
  if (op.terms.length > 0) steps.push({ kind: 'add', terms: op.terms });
  if (op.dora) steps.push({ kind: 'dora', dora: op.dora });
  if (op.steps) steps.push(...op.steps);
  return steps;
}

/** Which stored axis an update axis is: 'row' = one value per stored row. */
export function storedAxis(op: Pick<MergeOp, 'layout'>, axis: 'out' | 'in'): 'row' | 'col' {
  return (axis === 'out') === (op.layout === 'out-in') ? 'row' : 'col';
}

/** A DoRA step whose norms run across stored rows (one norm per stored column). */
export function needsColumnNorms(op: Pick<MergeOp, 'layout'>, step: UpdateStep): step is DoraStep {
  // A norm per output feature runs over the input axis: along a stored row when W is (out, in).
  return step.kind === 'dora' && storedAxis(op, step.dora.normAxis) === 'col';
}

/** Rows a slab must start on (rotations along stored rows mix whole blocks of rows). */
export function rowGranule(op: Pick<MergeOp, 'layout'>, steps: readonly UpdateStep[]): number {
  let g = 1;
  for (const s of steps) if (s.kind === 'rotate' && storedAxis(op, s.axis) === 'row') g = lcm(g, s.blockSize);
  for (const s of steps) if (s.kind === 'permuted-blocks' && storedAxis(op, s.axis) === 'row') g = lcm(g, s.span);
  return g;
}

/**
 * Whether the op is one pass of low-rank terms with at most a DoRA (norms computed by the executor)
 * or a fixed scale at the end: the form the fused kernels run as they are.
 */
export function isFusedForm(op: MergeOp): boolean {
  const steps = opSteps(op);
  let i = 0;
  if (steps[i]?.kind === 'add') {
    if ((steps[i] as AddStep).dense?.length) return false;
    i++;
  }
  if (steps[i]?.kind === 'dora' || steps[i]?.kind === 'scale') i++;
  return i === steps.length;
}
