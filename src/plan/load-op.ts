/**
 * From plan to executable ops: reads the factors a TensorUpdate names from the adapter files and
 * builds the MergeOp the backends run. Factors are passed whole (A: r × in, B: out × r, conv
 * kernels flattened, which for row-major bytes is just a reinterpretation); a row range only
 * slices the base, and the executor picks the factor rows it needs, through each term's row
 * placement when a layout gave one.
 */
import { decodeToF32, encodeFromF32, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes, LowRankTerm, MergeOp } from '../engine/merge-op.js';
import type { BiasUpdate, PlannedReplacement, TensorUpdate } from './merge-plan.js';
import { readFloat, readModuleFactors } from './module-factors.js';

export interface RowRange {
  rowStart: number;
  rowCount: number;
}

/** The terms of one update, read once: pass them to several loadMergeOp calls when slabbing. */
export async function loadTerms(update: TensorUpdate): Promise<LowRankTerm[]> {
  const terms: LowRankTerm[] = [];
  for (const t of update.terms) {
    const { a, b, rank } = await readModuleFactors(t.file, t.module);
    const term: LowRankTerm = { a, b, rank, scale: t.scale };
    if (t.placement) term.placement = t.placement;
    terms.push(term);
  }
  return terms;
}

/**
 * The op for one update: `baseBytes` holds the whole stored tensor, or just the rows in `rowRange`.
 * DoRA ops whose norms run across stored rows must not be slabbed (the executor refuses them).
 */
export async function loadMergeOp(
  update: TensorUpdate, baseBytes: FloatTensorBytes, outDtype: FloatDType, rowRange?: RowRange, terms?: LowRankTerm[],
): Promise<MergeOp> {
  const op: MergeOp = {
    name: update.baseKey,
    rows: update.rows,
    cols: update.cols,
    layout: update.layout,
    base: baseBytes,
    terms: terms ?? await loadTerms(update),
    outDtype,
  };
  if (rowRange) {
    op.rowStart = rowRange.rowStart;
    op.rowCount = rowRange.rowCount;
  }
  if (update.dora) {
    op.dora = {
      magnitude: await readFloat(update.dora.file, update.dora.magnitude), // any shape → its values as a vector
      normAxis: update.dora.axis,
      epsilon: update.dora.epsilon,
    };
  }
  return op;
}

/**
 * A bias update as an op: the bias is an (out × 1) W, and each lora_B.bias is a rank-1 term with
 * B = bias_B (out × 1), A = [1], so the backends add scale · bias_B and round once like any weight.
 */
export async function loadBiasUpdate(update: BiasUpdate, baseBytes: FloatTensorBytes, outDtype: FloatDType): Promise<MergeOp> {
  const one: FloatTensorBytes = { dtype: 'F32', data: new Uint8Array(new Float32Array([1]).buffer) };
  const terms: LowRankTerm[] = [];
  for (const t of update.terms) {
    const term: LowRankTerm = { a: one, b: await readFloat(t.file, t.biasB), rank: 1, scale: t.scale };
    if (t.placement) term.placement = t.placement;
    terms.push(term);
  }
  return { name: update.baseKey, rows: update.length, cols: 1, layout: 'out-in', base: baseBytes, terms, outDtype };
}

/** A replacement tensor's bytes in the output dtype (rounded once; same dtype → as stored). */
export async function loadReplacement(rep: PlannedReplacement, outDtype: FloatDType): Promise<Uint8Array> {
  const { dtype, data } = await readFloat(rep.file, rep.tensor);
  return dtype === outDtype ? data : encodeFromF32(decodeToF32(data, dtype), outDtype);
}

