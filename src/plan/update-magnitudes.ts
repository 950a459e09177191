/**
 * How big each module's update is next to the weight it changes, for the demo's chart:
 * ‖s·B·A‖_F from the r × r Gram matrices (‖BA‖² = Σ (BᵀB) ∘ (AAᵀ), no out × in product formed)
 * for low-rank modules; for the others (full diffs, IA3, GLoRA, OFT) ‖W' − W‖_F of the module
 * alone applied to W, on the same rows ‖W‖_F is read or sampled from. PEFT DEFT and PEANuT form
 * ΔW from Rᵀ·W, a sum over every output row of W, and PEFT initialises DEFT's R to Rᵀ·W itself, so
 * ΔW is a small difference that no sample of W's rows estimates. A column of ΔW needs only the
 * same column of W, all of it: where W is stored by inputs (a Conv1D) that is one stored row, and
 * the sampled rows give exact columns; where it is stored by outputs, a column runs through every
 * row, so the plan measures it only on a tensor it reads whole anyway (`exactElements`) and leaves
 * larger ones unmeasured (NaN) rather than read the whole weight before the merge does.
 */
import { decodeToF32, DTYPE_BYTES, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { expertTerms } from './fused-experts.js';
import type { MergePlan, PlannedTerm, TensorUpdate } from './merge-plan.js';
import { readModuleFactors } from './module-factors.js';
import { checkOp } from '../engine/op-shape.js';
import { stepValues } from '../engine/cpu/cpu-steps.js';
import { loadUpdateSteps, termDeltaDims } from './load-op.js';
import { slabOp, slabSteps, type LoadedStep } from './load-steps.js';
import { resolveOutProjections } from './out-projections.js';

/** How large one term's update is next to the weight it changes. */
export interface UpdateMagnitude {
  baseKey: string;
  adapterIndex: number;
  adapter: string;
  module: string;
  /** Layer index parsed from the module name (`layers.12`, `h_3`, `blocks.5`), or null. */
  layer: number | null;
  /** The module's own name (`q_proj`, `c_attn`, `proj_in`). */
  moduleType: string;
  /**
   * ‖w·s·ΔW‖_F (user weight included); for maps of W (IA3, OFT, GLoRA), ‖W' − W‖_F of the module
   * alone. NaN where the plan does not measure it: PEFT DEFT or PEANuT on a weight stored by output
   * rows with more than `exactElements` elements (its ΔW needs every row of W; the merge forms it).
   */
  updateNorm: number;
  /** Whether `updateNorm` is exact (factors alone, or every row of W), rather than scaled up from sampled rows. */
  updateNormExact: boolean;
  /** ‖W‖_F, exact or estimated (see `weightNormExact`). */
  weightNorm: number;
  weightNormExact: boolean;
  /** updateNorm / weightNorm (Infinity for an all-zero W; NaN where updateNorm is). */
  ratio: number;
}

/** Reads `rowCount` stored rows of a base tensor starting at `rowStart`. */
export type ReadBaseRows = (baseKey: string, rowStart: number, rowCount: number) => Promise<FloatTensorBytes>;

/** How much of W {@link estimateUpdateMagnitudes} reads. */
export interface MagnitudeOptions {
  /** Tensors with at most this many elements are read whole. */
  exactElements?: number;
  /** Elements to sample from larger tensors (in `sampleChunks` evenly spaced row runs). */
  sampleElements?: number;
  sampleChunks?: number;
}

/** Measures ‖s·B·A‖ / ‖W‖ for every planned term (weights included), reading only samples of large base tensors. */
export async function estimateUpdateMagnitudes(
  plan: MergePlan, readBaseRows: ReadBaseRows, options: MagnitudeOptions = {},
): Promise<UpdateMagnitude[]> {
  const measure = async (update: TensorUpdate): Promise<UpdateMagnitude[]> => {
    const read = onceEach(startRows(update, readBaseRows));
    const weight = await weightNorm(update, read, options);
    const out: UpdateMagnitude[] = [];
    for (const term of update.terms) {
      const { norm: updateNorm, exact } = term.module.update.kind === 'low-rank'
        ? { norm: await lowRankNorm(update, term), exact: true } : await appliedNorm(update, term, read, options);
      out.push({
        baseKey: update.baseKey,
        adapterIndex: term.adapterIndex,
        adapter: term.adapter,
        module: term.moduleName,
        layer: layerIndex(term.moduleName),
        moduleType: moduleType(update.baseKey),
        updateNorm,
        updateNormExact: exact,
        weightNorm: weight.norm,
        weightNormExact: weight.exact,
        ratio: weight.norm > 0 || Number.isNaN(updateNorm) ? updateNorm / weight.norm : updateNorm > 0 ? Infinity : 0,
      });
    }
    return out;
  };
  return (await inOrder(plan.updates, UPDATES_AT_ONCE, measure)).flat();
}

/**
 * Updates measured at once. Each reads a few small pieces of the base; in a page every read is a
 * round trip to the browser process, and one at a time the plan of a 0.97 GB model waited 3 s on
 * 380 of them.
 */
const UPDATES_AT_ONCE = 4;

/** `f` of every item, at most `limit` at a time, the results in the items' order. */
async function inOrder<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await f(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * `read` with each piece read once while one update is measured: ‖W‖ and W' − W read the same
 * pieces (a tensor read whole was read three times with a projection's pass, twice without).
 */
function onceEach(read: ReadBaseRows): ReadBaseRows {
  const pieces = new Map<string, Promise<FloatTensorBytes>>();
  return (key, rowStart, rowCount) => {
    const id = `${key}\n${rowStart}\n${rowCount}`;
    let piece = pieces.get(id);
    if (!piece) pieces.set(id, (piece = read(key, rowStart, rowCount)));
    return piece;
  };
}

/** The rows an update starts from: the base's, or those of the tensor an adapter saved for it. */
function startRows(update: TensorUpdate, readBaseRows: ReadBaseRows): ReadBaseRows {
  const source = update.source;
  if (!source) return readBaseRows;
  const dtype = source.tensor.dtype as FloatDType;
  const rowBytes = update.cols * DTYPE_BYTES[dtype];
  return async (_key, rowStart, rowCount) => ({ dtype, data: await source.file.readPart(source.tensor, rowStart * rowBytes, rowCount * rowBytes) });
}

/**
 * ‖scale·B·A‖_F via Σ_jk (BᵀB)_jk (AAᵀ)_jk in f64; O(r²·(in + out)). A fused expert tensor: over
 * every expert's term; blocks of rows stored transposed: over those rows (a transpose keeps the norm).
 */
export async function lowRankNorm(update: TensorUpdate, term: PlannedTerm): Promise<number> {
  // Factors sized to the tensor the term lands on, as the merge reads them (a side the module's
  // tensors leave open, MiSS's inputs or RandLoRA's dims, is the base's).
  const { a, b, rank } = await readModuleFactors(term.file, term.module, termDeltaDims(update, term));
  const blocks = term.transposedBlocks;
  const segments = blocks ? blocks.starts.map((src) => ({ src, count: blocks.rows })) : term.placement?.segments;
  if (!term.experts) return Math.abs(term.scale) * Math.sqrt(gramSquare(decodeToF32(a.data, a.dtype), decodeToF32(b.data, b.dtype), rank, segments));
  let sum = 0;
  for (const t of expertTerms(a, b, term.experts, term.scale)) sum += gramSquare(decodeToF32(t.a.data, t.a.dtype), decodeToF32(t.b.data, t.b.dtype), t.rank, t.placement?.segments);
  return Math.abs(term.scale) * Math.sqrt(sum);
}

/** ‖B·A‖²_F of the ΔW rows the segments read (all rows without them). */
function gramSquare(a: Float32Array, b: Float32Array, r: number, segments: readonly { src: number; count: number }[] | undefined): number {
  const inF = a.length / r;
  const outF = b.length / r;
  // A term placed on part of a tensor contributes only the ΔW rows its placement reads.
  const rows = segments
    ? segments.flatMap((g) => Array.from({ length: g.count }, (_, i) => g.src + i))
    : Array.from({ length: outF }, (_, i) => i);
  const gb = new Float64Array(r * r);
  for (const o of rows) {
    const row = o * r;
    for (let j = 0; j < r; j++) {
      const bj = b[row + j];
      for (let k = j; k < r; k++) gb[j * r + k] += bj * b[row + k];
    }
  }
  let sum = 0;
  for (let j = 0; j < r; j++) {
    for (let k = j; k < r; k++) {
      let ga = 0;
      const aj = j * inF, ak = k * inF;
      for (let i = 0; i < inF; i++) ga += a[aj + i] * a[ak + i];
      sum += (j === k ? 1 : 2) * gb[j * r + k] * ga; // both Grams are symmetric: count off-diagonals twice
    }
  }
  return Math.max(0, sum);
}

/**
 * ‖W' − W‖_F with W' the term alone (no DoRA) applied to W, on the rows weightNorm reads; NaN for
 * a projection across output rows (PEFT DEFT, PEANuT) on a large weight stored by outputs.
 */
async function appliedNorm(update: TensorUpdate, term: PlannedTerm, readBaseRows: ReadBaseRows, options: MagnitudeOptions): Promise<{ norm: number; exact: boolean }> {
  const alone: TensorUpdate = { ...update, terms: [{ ...term, dora: undefined }] };
  const { rows, cols } = update;
  const runs = sampleRuns(update, options);
  const whole = rows * cols <= (options.exactElements ?? 1 << 20);
  const loaded = await loadUpdateSteps(alone);
  const projects = loaded.some((s) => s.kind === 'out-project');
  // Rᵀ·W over every output row: on rows stored by inputs, the sampled rows' own columns suffice;
  // stored by outputs, it takes the whole weight, read only where weightNorm reads it whole too.
  if (projects && update.layout !== 'in-out' && !whole) return { norm: NaN, exact: false };
  const steps: LoadedStep[] = await resolveOutProjections({
    name: update.baseKey, rows, cols, layout: update.layout, readRows: (r0, n) => readBaseRows(update.baseKey, r0, n),
    ...(projects && update.layout === 'in-out' ? { onlyRows: runs } : {}),
  }, loaded, Math.max(...runs.map(([, n]) => n))); // the runs' own pieces, read once each (onceEach)
  let ss = 0, sampled = 0;
  for (const [start, count] of runs) {
    const base = await readBaseRows(update.baseKey, start, count);
    const op = slabOp({ name: update.baseKey, rows, cols, layout: update.layout, base, outDtype: 'F32', rowStart: start, rowCount: count },
      await slabSteps(steps, start, count));
    const v = stepValues(op, checkOp(op));
    const w = decodeToF32(base.data, base.dtype);
    for (let i = 0; i < v.length; i++) ss += (v[i] - w[i]) ** 2;
    sampled += count;
  }
  return { norm: Math.sqrt((ss * rows) / sampled), exact: sampled === rows };
}

/** [start, count] runs of rows: all of a small tensor, else evenly spaced runs (whole row blocks). */
function sampleRuns(update: TensorUpdate, options: MagnitudeOptions): [number, number][] {
  const { rows, cols, rowBlock } = update;
  const exactElements = options.exactElements ?? 1 << 20;
  const sampleElements = options.sampleElements ?? 1 << 18;
  const chunks = Math.max(1, options.sampleChunks ?? 8);
  const runs: [number, number][] = [];
  if (rows * cols <= exactElements) {
    const step = Math.max(rowBlock, Math.floor(exactElements / cols / rowBlock) * rowBlock);
    for (let start = 0; start < rows; start += step) runs.push([start, Math.min(step, rows - start)]);
    return runs;
  }
  const chunkRows = Math.max(rowBlock, Math.floor(sampleElements / cols / chunks / rowBlock) * rowBlock);
  const blocks = Math.ceil(rows / rowBlock);
  for (let c = 0; c < chunks; c++) {
    const startBlock = chunks === 1 ? 0 : Math.round((c * Math.max(0, blocks - chunkRows / rowBlock)) / (chunks - 1));
    // Runs start on whole row blocks (the last block of a tensor may be short).
    const start = Math.min(startBlock * rowBlock, Math.floor(Math.max(0, rows - chunkRows) / rowBlock) * rowBlock);
    runs.push([start, Math.min(chunkRows, rows - start)]);
  }
  return runs;
}

async function weightNorm(update: TensorUpdate, readBaseRows: ReadBaseRows, options: MagnitudeOptions): Promise<{ norm: number; exact: boolean }> {
  const { rows, cols } = update;
  const exactElements = options.exactElements ?? 1 << 20;
  const sampleElements = options.sampleElements ?? 1 << 18;
  const chunks = Math.max(1, options.sampleChunks ?? 8);
  const sumSquares = async (start: number, count: number) => {
    const bytes = await readBaseRows(update.baseKey, start, count);
    let ss = 0;
    for (const v of decodeToF32(bytes.data, bytes.dtype)) ss += v * v;
    return ss;
  };
  if (rows * cols <= exactElements) {
    // Read in bounded pieces anyway, so a wide tensor never needs one huge buffer.
    const step = Math.max(1, Math.floor(exactElements / cols));
    const pieces: Promise<number>[] = [];
    for (let start = 0; start < rows; start += step) pieces.push(sumSquares(start, Math.min(step, rows - start)));
    // Read together, summed in row order (the same sum as one piece after another).
    let ss = 0;
    for (const piece of await Promise.all(pieces)) ss += piece;
    return { norm: Math.sqrt(ss), exact: true };
  }
  const chunkRows = Math.max(1, Math.floor(sampleElements / cols / chunks));
  const runs: Promise<number>[] = [];
  let sampled = 0;
  for (let c = 0; c < chunks; c++) {
    // Evenly spaced runs: the first at the top, the last ending at the bottom row.
    const start = chunks === 1 ? 0 : Math.round((c * (rows - chunkRows)) / (chunks - 1));
    const count = Math.min(chunkRows, rows - start);
    runs.push(sumSquares(start, count));
    sampled += count;
  }
  let ss = 0;
  for (const run of await Promise.all(runs)) ss += run;
  return { norm: Math.sqrt((ss * rows) / sampled), exact: false };
}

/** `model.layers.12.self_attn.q_proj` → 12; `lora_unet_down_blocks_1_attentions_0_proj_in` → 1. */
export function layerIndex(name: string): number | null {
  const named = /(?:^|[._])(?:layers?|h|blocks?|block)[._](\d+)(?=[._]|$)/.exec(name);
  if (named) return Number(named[1]);
  const any = /(?:^|[._])(\d+)(?=[._]|$)/.exec(name);
  return any ? Number(any[1]) : null;
}

/** `model.layers.0.self_attn.q_proj.weight` → `q_proj`. */
export function moduleType(baseKey: string): string {
  const parts = baseKey.split('.');
  if (parts.length > 1 && (parts[parts.length - 1] === 'weight' || parts[parts.length - 1] === 'bias')) parts.pop();
  return parts[parts.length - 1];
}
