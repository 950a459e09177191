/**
 * From a planned tensor update to the engine's steps, once per tensor: factors and vectors are read
 * once and shared by every slab (same arrays, so executors cache what they derive from them);
 * dense terms are read or computed per slab, for the slab's rows only.
 */
import type { FloatTensorBytes, LowRankTerm, MergeOp } from '../engine/merge-op.js';
import type { UpdateStep } from '../engine/update-steps.js';
import { MergeError } from '../errors.js';

/** A dense update whose rows are produced on demand (a full diff read by rows, a kron of full factors). */
export interface DenseSource {
  scale: number;
  /** rowCount × cols of the stored matrix, starting at stored row rowStart (or their f64 values where computed: DenseTerm.exact). */
  rows(rowStart: number, rowCount: number): Promise<DenseRows>;
}

/** Rows of a dense update as bytes, or as exact f64 values where they were computed rather than read. */
export type DenseRows = FloatTensorBytes | { exact: Float64Array };

/**
 * V += −scale·Q·(Rᵀ·V) along the output axis (PEFT DEFT's subspace removal), R `right` and Q `qp`
 * (out × rank), or with `form` V += scale·Q·form(Rᵀ·V) (PEANuT): Rᵀ·V sums over every output row,
 * so it is no engine step; a pass over the whole weight turns it into a low-rank term first
 * (out-projections.ts).
 */
export interface OutProjectStep {
  kind: 'out-project';
  right: FloatTensorBytes;
  qp: FloatTensorBytes;
  rank: number;
  scale: number;
  form?: (m: Float64Array, inF: number) => Float64Array;
}

/** An engine step, except that dense terms are sources to be read per slab, and out-projections are still to be formed. */
export type LoadedStep = Exclude<UpdateStep, { kind: 'add' }> | OutProjectStep | { kind: 'add'; terms: LowRankTerm[]; dense: DenseSource[] };

/** One module's contribution, in the order the update applies it. */
export type UpdatePiece =
  | { kind: 'low-rank'; term: LowRankTerm }
  | { kind: 'dense'; source: DenseSource }
  | { kind: 'step'; step: Exclude<UpdateStep, { kind: 'add' }> | OutProjectStep };

/** The sequence of steps: consecutive additive pieces share one pass. */
export function assembleSteps(pieces: readonly UpdatePiece[]): LoadedStep[] {
  const steps: LoadedStep[] = [];
  for (const piece of pieces) {
    if (piece.kind === 'step') {
      steps.push(piece.step);
      continue;
    }
    let add = steps[steps.length - 1];
    if (add?.kind !== 'add') steps.push((add = { kind: 'add', terms: [], dense: [] }));
    if (piece.kind === 'low-rank') add.terms.push(piece.term);
    else add.dense.push(piece.source);
  }
  return steps;
}

/** The engine's steps for rows [rowStart, rowStart + rowCount) (low-rank arrays shared across slabs). */
export async function slabSteps(steps: readonly LoadedStep[], rowStart: number, rowCount: number): Promise<UpdateStep[]> {
  return Promise.all(steps.map(async (s): Promise<UpdateStep> => {
    if (s.kind === 'out-project') throw new MergeError('PLAN_INVALID', 'an output-side projection (PEFT DEFT) reached a row slab before the pass over the whole weight formed it');
    if (s.kind !== 'add') return s;
    if (s.dense.length === 0) return { kind: 'add', terms: s.terms };
    const dense = await Promise.all(s.dense.map(async (d) => {
      const rows = await d.rows(rowStart, rowCount);
      return 'exact' in rows ? { scale: d.scale, exact: rows.exact } : { scale: d.scale, values: rows };
    }));
    return { kind: 'add', terms: s.terms, dense };
  }));
}

/**
 * The op for a slab. A leading low-rank pass goes into `terms` and a DoRA right after it into
 * `dora`, the rest into `steps`: the form the fused kernels recognise.
 */
export function slabOp(
  base: Pick<MergeOp, 'name' | 'rows' | 'cols' | 'layout' | 'base' | 'outDtype'> & { rowStart?: number; rowCount?: number },
  steps: UpdateStep[],
): MergeOp {
  const op: MergeOp = { ...base, terms: [], steps: [] };
  let i = 0;
  const first = steps[0];
  if (first?.kind === 'add' && !first.dense?.length) {
    op.terms = first.terms;
    i = 1;
    const next = steps[1];
    if (next?.kind === 'dora') {
      op.dora = next.dora;
      i = 2;
    }
  }
  op.steps = steps.slice(i);
  if (op.steps.length === 0) delete op.steps;
  return op;
}
