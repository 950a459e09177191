/**
 * Output-side projections (PEFT DEFT's −Q·(Rᵀ·V)) need Rᵀ·V, a sum over every output row of V as it
 * stands before the step, so no row slab can form them alone. They are formed in a pass of their
 * own: every slab of W is read, V after the steps before the projection is computed in float64 on
 * the CPU, and Rᵀ·V (rank × in) is summed over the slabs; the step then becomes an ordinary
 * low-rank term B = Q, A = Rᵀ·V with scale −s (DEFT), or A = form(Rᵀ·V) with scale s (PEANuT's
 * network, run on each column in float64), A rounded once to f32 as PEFT holds it in f32, which
 * every backend and every slab runs. Several such steps take one pass each, in order.
 */
import { decodeToF32 } from '../dtype.js';
import { MergeError, throwIfAborted } from '../errors.js';
import { stepValues } from '../engine/cpu/cpu-steps.js';
import type { FloatTensorBytes, MergeOp } from '../engine/merge-op.js';
import { checkOp } from '../engine/op-shape.js';
import { slabOp, slabSteps, type LoadedStep } from './load-steps.js';

/** A tensor read by stored rows, for the pass. */
export interface ProjectedTensor {
  name: string;
  rows: number;
  cols: number;
  layout: MergeOp['layout'];
  /** The stored rows [rowStart, rowStart + rowCount), decoded to a float dtype. */
  readRows(rowStart: number, rowCount: number): Promise<FloatTensorBytes>;
  /**
   * Only these [start, count] runs of stored rows, in the `in-out` layout alone: there a stored row
   * is one input, which sums only its own column of Rᵀ·V, so the columns of the runs come out exact
   * and the rest are left zero (the plan's estimate reads those rows and no others). The merge
   * leaves it out.
   */
  onlyRows?: readonly (readonly [number, number])[];
}

/**
 * The steps with each `out-project` replaced by its low-rank term. `resolvePrefix` settles what
 * the steps before one need resolved first (DoRA norms across rows), when the caller has any.
 */
export async function resolveOutProjections(
  tensor: ProjectedTensor, steps: readonly LoadedStep[], rowsPerSlab: number, signal?: AbortSignal,
  resolvePrefix: (prefix: LoadedStep[]) => Promise<LoadedStep[]> = async (prefix) => prefix,
): Promise<LoadedStep[]> {
  if (!steps.some((s) => s.kind === 'out-project')) return steps.slice();
  let resolved: LoadedStep[] = [];
  for (const step of steps) {
    if (step.kind !== 'out-project') {
      resolved.push(step);
      continue;
    }
    resolved = await resolvePrefix(resolved);
    const m = await projectRows(tensor, resolved, step.right, step.rank, rowsPerSlab, signal);
    const a = step.form ? step.form(m, m.length / step.rank) : m;
    resolved.push({ kind: 'add', terms: [{ a: { dtype: 'F32', data: new Uint8Array(Float32Array.from(a).buffer) }, b: step.qp, rank: step.rank, scale: step.form ? step.scale : -step.scale }], dense: [] });
  }
  return resolved;
}

/** Rᵀ·V (rank × in, row-major) for V after `prefix`, R (out × rank), over every stored row. */
async function projectRows(
  tensor: ProjectedTensor, prefix: LoadedStep[], rightBytes: FloatTensorBytes, rank: number, rowsPerSlab: number, signal?: AbortSignal,
): Promise<Float64Array> {
  const right = decodeToF32(rightBytes.data, rightBytes.dtype);
  const outIn = tensor.layout === 'out-in';
  const inF = outIn ? tensor.cols : tensor.rows;
  const m = new Float64Array(rank * inF);
  const cols = tensor.cols;
  const step = Math.max(1, rowsPerSlab);
  if (tensor.onlyRows && outIn) throw new MergeError('PLAN_INVALID', `${tensor.name}: Rᵀ·V over some output rows alone is not Rᵀ·V`);
  const slabs: [number, number][] = [];
  for (const [start, count] of tensor.onlyRows ?? [[0, tensor.rows]]) {
    for (let r0 = start; r0 < start + count; r0 += step) slabs.push([r0, Math.min(step, start + count - r0)]);
  }
  for (const [r0, n] of slabs) {
    throwIfAborted(signal);
    const op = slabOp({
      name: tensor.name, rows: tensor.rows, cols, layout: tensor.layout, outDtype: 'F32',
      base: await tensor.readRows(r0, n), rowStart: r0, rowCount: n,
    }, await slabSteps(prefix, r0, n));
    const v = stepValues(op, checkOp(op), signal);
    for (let row = 0; row < n; row++) {
      const at = row * cols;
      if (outIn) {
        // Stored row = output o: M[k, ·] += R[o, k]·V[o, ·].
        const o = r0 + row;
        for (let k = 0; k < rank; k++) {
          const w = right[o * rank + k];
          if (w === 0) continue;
          const mk = k * inF;
          for (let c = 0; c < cols; c++) m[mk + c] += w * v[at + c];
        }
      } else {
        // Stored row = input i (a Conv1D's (in, out)): M[k, i] = Σ_o R[o, k]·V[i, o].
        const i = r0 + row;
        for (let k = 0; k < rank; k++) {
          let s = 0;
          for (let c = 0; c < cols; c++) s += right[c * rank + k] * v[at + c];
          m[k * inF + i] = s;
        }
      }
    }
  }
  return m;
}
