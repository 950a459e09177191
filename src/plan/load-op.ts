/**
 * From plan to executable ops: reads the factors a TensorUpdate names from the adapter files and
 * builds the MergeOp the backends run. Factors are passed whole (A: r × in, B: out × r, conv
 * kernels flattened, which for row-major bytes is just a reinterpretation); a row range only
 * slices the base, and the executor picks the factor rows it needs, through each term's row
 * placement when a layout gave one.
 */
import { decodeToF32, DTYPE_BYTES, encodeFromF32, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes, LowRankTerm, MergeOp, RowPlacement, RowSegment } from '../engine/merge-op.js';
import type { PermutedBlocksStep, RotateStep, UpdateStep } from '../engine/update-steps.js';
import type { DeltaDims, ModulePiece } from '../formats/algorithms/index.js';
import { MergeError } from '../errors.js';
import { loadModuleUpdate } from '../formats/algorithms/index.js';
import { gloraBiasPath, peftGlora } from '../formats/algorithms/peft-glora.js';
import { expertTerms } from './fused-experts.js';
import { transposedBlockTerms } from './transposed-blocks.js';
import type { BiasUpdate, GloraBiasTerm, PlannedReplacement, PlannedTerm, TensorUpdate } from './merge-plan.js';
import { readFloat } from './module-factors.js';
import { assembleSteps, slabOp, slabSteps, type DenseRows, type LoadedStep, type UpdatePiece } from './load-steps.js';
import { product } from '../integers.js';

export interface RowRange {
  rowStart: number;
  rowCount: number;
}

/** The update as the engine's sequence of steps, read once per tensor (see load-steps.ts). */
export async function loadUpdateSteps(update: TensorUpdate): Promise<LoadedStep[]> {
  const pieces: UpdatePiece[] = [];
  const gloraTerms = update.terms.filter((t) => t.module.algorithm === peftGlora.name).length;
  // PEFT GLoRA adapters of one merge: GloraLayer.merge forms each one's W ⊙ A from the same W
  // (the original W0), not from the weight the one before it changed: their maps become one, at the
  // place of the first, and their added parts follow.
  let joint: { at: number; maps: UpdatePiece[] } | undefined;
  for (const term of update.terms) {
    const own = await termPieces(update, term);
    if (gloraTerms < 2 || term.module.algorithm !== peftGlora.name) {
      pieces.push(...own);
      continue;
    }
    if (!joint) {
      joint = { at: pieces.length, maps: [] };
      pieces.push({ kind: 'low-rank', term: { a: { dtype: 'F32', data: new Uint8Array(0) }, b: { dtype: 'F32', data: new Uint8Array(0) }, rank: 0, scale: 0 } });
    }
    for (const p of own) (p.kind === 'step' ? joint.maps : pieces).push(p);
  }
  if (joint) pieces[joint.at] = { kind: 'step', step: jointHadamard(joint.maps, update) };
  return assembleSteps(pieces);
}

/**
 * GLoRA maps of W, each V += s·V ⊙ (B·A) or V ⊙= 1 + s·a per row (a vector or constant A), as one
 * V += V ⊙ Σ s_k·M_k: the factors stacked, each B scaled by its s, a row scaling as the column s·a
 * times a row of ones.
 */
function jointHadamard(maps: readonly UpdatePiece[], update: TensorUpdate): Extract<UpdateStep, { kind: 'hadamard' }> {
  const inF = update.inFeatures, out = update.outFeatures;
  const parts: { a: Float32Array; b: Float32Array; rank: number }[] = [];
  for (const p of maps) {
    const step = p.kind === 'step' ? p.step : undefined;
    if (step?.kind === 'hadamard') {
      const s = step.scale;
      parts.push({ a: f32(step.a), b: f32(step.b).map((x) => s * x), rank: step.rank });
    } else if (step?.kind === 'scale' && step.axis === 'out' && step.exact) {
      parts.push({ a: new Float32Array(inF).fill(1), b: Float32Array.from(step.exact, (x) => x - 1), rank: 1 });
    } else {
      throw new MergeError('PLAN_INVALID', `${update.baseKey}: a GLoRA update of kind ${step?.kind ?? p.kind} cannot join the other GLoRA adapters' maps`);
    }
  }
  const rank = parts.reduce((n, x) => n + x.rank, 0);
  const a = new Float32Array(rank * inF), b = new Float32Array(out * rank);
  let at = 0;
  for (const x of parts) {
    a.set(x.a, at * inF);
    for (let o = 0; o < out; o++) b.set(x.b.subarray(o * x.rank, (o + 1) * x.rank), o * rank + at);
    at += x.rank;
  }
  return { kind: 'hadamard', a: { dtype: 'F32', data: new Uint8Array(a.buffer) }, b: { dtype: 'F32', data: new Uint8Array(b.buffer) }, rank, scale: 1 };
}

/**
 * ΔW's dims as the term lands on its tensor, for algorithms whose tensors leave a side open (VeRA,
 * RandLoRA, MiSS). A tensor holding ΔW's rows transposed is not ΔW's shape: the module's own dims.
 */
export function termDeltaDims(update: TensorUpdate, t: PlannedTerm): DeltaDims {
  return t.transposedBlocks
    ? { out: t.module.deltaShape[0], in: t.module.deltaShape[1] }
    : { out: t.placement?.deltaRows ?? update.outFeatures, in: update.inFeatures, baseDims: update.shape.length };
}

/** One module's pieces with its scale s folded in, then its DoRA. */
async function termPieces(update: TensorUpdate, t: PlannedTerm): Promise<UpdatePiece[]> {
  const s = t.scale;
  const out: UpdatePiece[] = [];
  const axisLength = (axis: 'out' | 'in') => (axis === 'out' ? update.outFeatures : update.inFeatures);
  for (const p of await loadModuleUpdate(t.file, t.module, termDeltaDims(update, t))) {
    if (t.transposedBlocks && p.kind !== 'low-rank' && p.kind !== 'dense') {
      throw new MergeError('UNSUPPORTED_FORMAT', `module "${t.moduleName}": only a low-rank update can land on ${update.baseKey}, which holds its rows transposed`);
    }
    if (t.columns && p.kind !== 'low-rank') {
      throw new MergeError('UNSUPPORTED_FORMAT', `module "${t.moduleName}": only a low-rank update can land on ${update.baseKey}, which holds its columns in another order`);
    }
    // A map that treats rows apart on the tensors holding a fused module's rows (the plan's splitRows):
    // maps of the inputs as they are (GLoRA's V·P·Q), per-row parts cut to this tensor's rows (its b1·b2 placed).
    const cut = t.placement && t.module.update.kind === 'transform' ? t.placement : undefined;
    if (cut && !(p.kind === 'scale' || p.kind === 'fixed-scale' || p.kind === 'rotate' || (p.kind === 'permuted-rotate' && p.axis === 'in') || p.kind === 'project' || p.kind === 'low-rank')) {
      throw new MergeError('UNSUPPORTED_FORMAT', `module "${t.moduleName}": its ${p.kind} update of the output rows cannot land on part of ${update.baseKey}`);
    }
    switch (p.kind) {
      case 'low-rank': {
        if (t.experts) {
          // A fused expert tensor: one term per expert, on its own rows (fused-experts.ts).
          for (const term of expertTerms(p.a, p.b, t.experts, s, p.exact)) out.push({ kind: 'low-rank', term });
          break;
        }
        if (t.transposedBlocks) {
          for (const term of transposedBlockTerms(p.a, p.b, p.rank, t.transposedBlocks, s, p.exact)) out.push({ kind: 'low-rank', term });
          break;
        }
        const a = t.columns ? reorderColumns(p.a, p.rank, t.columns, t.moduleName) : p.a;
        const term: LowRankTerm = { a, b: p.b, rank: p.rank, scale: s };
        if (t.placement) term.placement = t.placement;
        if (p.exact) term.exact = { a: t.columns ? reorderedColumns(p.exact.a, p.rank, t.columns) : p.exact.a, b: p.exact.b };
        out.push({ kind: 'low-rank', term });
        break;
      }
      case 'dense':
        out.push({ kind: 'dense', source: { scale: s, rows: placedDenseRows(p.rows, t, update.cols) } });
        break;
      case 'scale': {
        // IA3's 1 + s·w is computed, not read: carried in float64 (as DoRA's factors are), so no f32
        // rounding of it enters the result. Rounded to f32 here, it moved W·(1 + s·w) across a
        // rounding tie of f16 (a fuzz case: 0.00498199… written as 0.00498581…).
        const computed = Float64Array.from(f32(p.w), (w) => 1 + s * (p.factor ? w - 1 : w));
        const exact = cut && p.axis === 'out' ? placedRowValues(computed, cut, update.outFeatures, t) : perChannel(computed, axisLength(p.axis), t);
        const factors = Float32Array.from(exact);
        out.push({ kind: 'step', step: { kind: 'scale', axis: p.axis, factors: { dtype: 'F32', data: new Uint8Array(factors.buffer) }, exact } });
        break;
      }
      case 'fixed-scale': {
        const factors = cut && p.axis === 'out' ? placedRowValues(f32(p.factors), cut, update.outFeatures, t) : perChannel(f32(p.factors), axisLength(p.axis), t);
        out.push({ kind: 'step', step: { kind: 'scale', axis: p.axis, factors: { dtype: 'F32', data: new Uint8Array(factors.buffer) } } });
        break;
      }
      case 'project':
        out.push({ kind: 'step', step: { kind: 'self', p: p.p, q: p.q, rank: p.rank, scale: s } });
        break;
      case 'out-project':
        // Rᵀ·V mixes every output row: only a module on the whole tensor, rows in their own order.
        if (t.placement || t.experts) throw new MergeError('UNSUPPORTED_FORMAT', `module "${t.moduleName}": its projection across output rows (${t.module.algorithm}) cannot land on part of ${update.baseKey}`);
        out.push({ kind: 'step', step: { kind: 'out-project', right: p.right, qp: p.qp, rank: p.rank, scale: s, ...(p.form ? { form: p.form } : {}) } });
        break;
      case 'hadamard':
        out.push({ kind: 'step', step: { kind: 'hadamard', a: p.a, b: p.b, rank: p.rank, scale: s } });
        break;
      case 'tiles':
        out.push({ kind: 'step', step: { kind: 'tiles', size: p.size, blocks: p.blocks, scale: s } });
        break;
      case 'rotate':
      case 'permuted-rotate':
        out.push({ kind: 'step', step: rotationStep(cut && p.kind === 'rotate' && p.axis === 'out' ? placedBlocks(p, cut, update.outFeatures, t) : p, s) });
        break;
    }
  }
  if (t.dora) {
    const read = await readFloat(t.dora.file, t.dora.magnitude); // any shape → its values as a vector
    // One norm per output row of a fused module on a tensor holding some of its rows: the tensor's
    // rows of the magnitude (the plan's doraByOwnRows: the placement covers every row of it).
    const magnitude = t.placement && t.dora.axis === 'out' ? placedMagnitude(read, t.placement, update.outFeatures, t) : read;
    const group = t.dora.group ? { group: t.dora.group } : {};
    const strength = t.dora.strength !== undefined ? { strength: t.dora.strength } : {};
    const floor = t.dora.normFloor !== undefined ? { normFloor: t.dora.normFloor } : {};
    out.push({ kind: 'step', step: { kind: 'dora', dora: { magnitude, normAxis: t.dora.axis, epsilon: t.dora.epsilon, ...floor, ...group, ...strength } } });
  }
  return out;
}

const f32 = (t: FloatTensorBytes): Float32Array => Float32Array.from(decodeToF32(t.data, t.dtype));

/**
 * One value per row of ΔW (per channel of a conv's, repeated over its kernel) placed on the `rows`
 * of the tensor the placement lands it on; each row the placement names takes its ΔW row's value.
 */
function placedRowValues<T extends Float32Array | Float64Array>(values: T, placement: RowPlacement, rows: number, t: PlannedTerm): T {
  const own = perChannel(values, placement.deltaRows, t);
  const out = (own instanceof Float64Array ? new Float64Array(rows) : new Float32Array(rows)).fill(1) as T;
  for (const g of placement.segments) out.set(own.subarray(g.src, g.src + g.count), g.dst);
  return out;
}

/** Row dst of the tensor takes the magnitude of ΔW row src, each placed row once; its bytes as stored. */
function placedMagnitude(m: FloatTensorBytes, placement: RowPlacement, rows: number, t: PlannedTerm): FloatTensorBytes {
  const width = m.data.byteLength / placement.deltaRows;
  const placed = placement.segments.reduce((n, g) => n + g.count, 0);
  if (!Number.isInteger(width) || placed !== rows) throw new MergeError('PLAN_INVALID', `module "${t.moduleName}": its DoRA magnitude cannot be cut to the ${rows} rows of the tensor it lands on`);
  const out = new Uint8Array(rows * width);
  for (const g of placement.segments) out.set(m.data.subarray(g.src * width, (g.src + g.count) * width), g.dst * width);
  return { dtype: m.dtype, data: out };
}

/** A rotation of ΔW's output rows in blocks, cut to the blocks the placement lands on the tensor's `rows` (whole blocks: the plan checks). */
function placedBlocks(p: Extract<ModulePiece, { kind: 'rotate' }>, placement: RowPlacement, rows: number, t: PlannedTerm): Extract<ModulePiece, { kind: 'rotate' }> {
  const b = p.blockSize, size = b * b;
  const delta = f32(p.delta);
  if (delta.length !== (placement.deltaRows / b) * size) throw new MergeError('SHAPE_MISMATCH', `module "${t.moduleName}": ${delta.length / size} blocks of ${b} do not cover its ${placement.deltaRows} output rows`);
  // Rows the module does not give this tensor are left as they are (Δ = 0).
  const out = new Float32Array((rows / b) * size);
  for (const g of placement.segments) out.set(delta.subarray((g.src / b) * size, ((g.src + g.count) / b) * size), (g.dst / b) * size);
  return { ...p, delta: { dtype: 'F32', data: new Uint8Array(out.buffer) } };
}

type DenseRowReader = (rowStart: number, rowCount: number) => Promise<DenseRows>;

/**
 * The stored rows of a dense ΔW where the term lands: ΔW's own rows one to one, the rows its
 * placement names (a slice of a fused tensor: other rows of the slab get zeros), or its rows in
 * blocks each transposed (open_clip's text_projection: ΔW's columns are the tensor's rows). A
 * transposed ΔW needs every one of its rows for any slab, so it is read whole once.
 */
function placedDenseRows(read: DenseRowReader, t: PlannedTerm, cols: number): DenseRowReader {
  if (t.transposedBlocks) {
    const blocks = t.transposedBlocks;
    const [deltaRows, inF] = t.module.deltaShape;
    let whole: Promise<Float32Array | Float64Array> | undefined;
    return async (rowStart, rowCount) => {
      const delta = await (whole ??= read(0, deltaRows).then(denseValues));
      const out = new (delta instanceof Float64Array ? Float64Array : Float32Array)(rowCount * cols);
      const w = blocks.within;
      for (let r = 0; r < rowCount; r++) {
        // The block row this base row holds (inside a larger tensor, only some rows hold one).
        const at = w ? (rowStart + r - w.first) / w.stride : rowStart + r;
        if (!Number.isInteger(at) || at < 0 || at >= blocks.starts.length * inF) continue;
        const block = Math.floor(at / inF), c = at % inF;
        const start = blocks.starts[block];
        for (let j = 0; j < cols; j++) out[r * cols + j] = delta[(start + j) * inF + c];
      }
      return denseResult(out);
    };
  }
  const placement = t.placement;
  if (!placement) return read;
  return async (rowStart, rowCount) => {
    const parts: { at: number; values: Float32Array | Float64Array }[] = [];
    for (const g of placement.segments) {
      const from = Math.max(g.dst, rowStart), to = Math.min(g.dst + g.count, rowStart + rowCount);
      if (from < to) parts.push({ at: from - rowStart, values: denseValues(await read(g.src + from - g.dst, to - from)) });
    }
    const out = new (parts.some((x) => x.values instanceof Float64Array) ? Float64Array : Float32Array)(rowCount * cols);
    for (const { at, values } of parts) out.set(values, at * cols);
    return denseResult(out);
  };
}

/** Dense rows as values: f32 as read (exact for F16, BF16, F32), or the f64 values computed. */
function denseValues(rows: DenseRows): Float32Array | Float64Array {
  return 'exact' in rows ? rows.exact : decodeToF32(rows.data, rows.dtype);
}

function denseResult(values: Float32Array | Float64Array): DenseRows {
  return values instanceof Float64Array ? { exact: values } : { dtype: 'F32', data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** A rotation piece as the engine's step, each block I + s·Δ. */
function rotationStep(p: Extract<ModulePiece, { kind: 'rotate' | 'permuted-rotate' }>, s: number): RotateStep | PermutedBlocksStep {
  const b = p.blockSize;
  const values = f32(p.delta).map((d) => s * d);
  for (let k = 0; k < values.length / (b * b); k++) for (let i = 0; i < b; i++) values[k * b * b + i * b + i] += 1;
  const blocks = { dtype: 'F32' as const, data: new Uint8Array(values.buffer) };
  return p.kind === 'rotate' ? { kind: 'rotate', axis: p.axis, blockSize: b, blocks }
    : { kind: 'permuted-blocks', axis: p.axis, blockSize: b, blocks, span: p.span, ...(p.gather ? { gather: p.gather } : {}) };
}

/** A (r × in) with column c taken from column `columns[c]`: B·A's columns in the base's order. */
function reorderColumns(a: FloatTensorBytes, rank: number, columns: readonly number[], moduleName: string): FloatTensorBytes {
  const values = decodeToF32(a.data, a.dtype);
  const n = columns.length;
  if (values.length !== rank * n) throw new MergeError('SHAPE_MISMATCH', `module "${moduleName}": its down factor has ${values.length / rank} columns, the base's reordered tensor ${n}`);
  const out = reorderedColumns(values, rank, columns);
  return { dtype: 'F32', data: new Uint8Array(out.buffer) };
}

/** A's values (rank × columns.length) with column c taken from column `columns[c]`. */
function reorderedColumns<T extends Float32Array | Float64Array>(values: T, rank: number, columns: readonly number[]): T {
  const n = columns.length;
  const out = (values instanceof Float64Array ? new Float64Array(rank * n) : new Float32Array(rank * n)) as T;
  for (let k = 0; k < rank; k++) for (let c = 0; c < n; c++) out[k * n + c] = values[k * n + columns[c]];
  return out;
}

/** One value per channel repeated over a conv's kernel positions (channel-major, as W is flattened). */
function perChannel<T extends Float32Array | Float64Array>(values: T, length: number, t: PlannedTerm): T {
  if (values.length === length) return values;
  if (values.length === 0 || length % values.length !== 0) {
    throw new MergeError('SHAPE_MISMATCH', `module "${t.moduleName}": ${values.length} per-channel values do not fit an axis of ${length}`);
  }
  const k = length / values.length;
  const out = (values instanceof Float64Array ? new Float64Array(length) : new Float32Array(length)) as T;
  values.forEach((v, c) => out.fill(v, c * k, (c + 1) * k));
  return out;
}

/**
 * The op for one update: `baseBytes` holds the whole stored tensor, or just the rows in `rowRange`.
 * DoRA norms that run across stored rows need the whole tensor (the pipeline resolves them first).
 */
export async function loadMergeOp(
  update: TensorUpdate, baseBytes: FloatTensorBytes, outDtype: FloatDType, rowRange?: RowRange,
): Promise<MergeOp> {
  const rowStart = rowRange?.rowStart ?? 0;
  const rowCount = rowRange?.rowCount ?? update.rows;
  const steps = await slabSteps(await loadUpdateSteps(update), rowStart, rowCount);
  return slabOp({
    name: update.baseKey, rows: update.rows, cols: update.cols, layout: update.layout, base: baseBytes, outDtype,
    ...(rowRange ? { rowStart, rowCount } : {}),
  }, steps);
}

/**
 * A bias update as an op: the bias is an (out × 1) W, and each lora_B.bias is a rank-1 term with
 * B = bias_B (out × 1), A = [1], so the backends add scale · bias_B and round once like any weight;
 * a multiplying term ((IA)³) is a scale step by 1 + scale·(f − 1), in adapter order. PEFT GLoRA's
 * bias path is both: b ⊙ (1 + s·D), then s·(E + W·C) added, W read by `readWeight` (the weight's
 * values as the pipeline reads them: floats, GGUF blocks dequantized, fp8 codes times their scales).
 */
export async function loadBiasUpdate(update: BiasUpdate, baseBytes: FloatTensorBytes, outDtype: FloatDType, readWeight?: (key: string) => Promise<Float64Array>): Promise<MergeOp> {
  const one: FloatTensorBytes = { dtype: 'F32', data: new Uint8Array(new Float32Array([1]).buffer) };
  const steps: UpdateStep[] = [];
  // Several GLoRA adapters: GloraLayer.merge adds each one's b0 ⊙ D to the original b0, so their
  // scalings are one, 1 + Σ s_k·D_k, at the place of the first.
  let gloraScale: Extract<UpdateStep, { kind: 'scale' }> | undefined;
  for (const t of update.terms) {
    if (t.glora) {
      if (!readWeight) throw new MergeError('PLAN_INVALID', `module "${t.moduleName}": its GLoRA bias path needs ${t.glora.weightKey}, which was not given`);
      const { d, added } = await placedGloraBiasPath(t, t.glora, update.length, await readWeight(t.glora.weightKey));
      if (gloraScale?.exact) {
        const exact = Float64Array.from(gloraScale.exact, (x, i) => x + t.scale * d[i]);
        Object.assign(gloraScale, { factors: { dtype: 'F32', data: new Uint8Array(Float32Array.from(exact).buffer) }, exact });
      } else {
        const exact = Float64Array.from(d, (x) => 1 + t.scale * x);
        gloraScale = { kind: 'scale', axis: 'out', factors: { dtype: 'F32', data: new Uint8Array(Float32Array.from(exact).buffer) }, exact };
        steps.push(gloraScale);
      }
      const b = Float32Array.from(added);
      const term: LowRankTerm = { a: one, b: { dtype: 'F32', data: new Uint8Array(b.buffer) }, rank: 1, scale: t.scale, exact: { a: new Float64Array([1]), b: added } };
      steps.push({ kind: 'add', terms: [term] });
      continue;
    }
    if (t.map) {
      // The module's rotation of the outputs, applied to the bias as a one-column weight.
      for (const p of await loadModuleUpdate(t.file, t.map, { out: update.length, in: 1 })) {
        if ((p.kind !== 'rotate' && p.kind !== 'permuted-rotate') || p.axis !== 'out') {
          throw new MergeError('UNSUPPORTED_FORMAT', `module "${t.moduleName}": its ${p.kind} update cannot be applied to ${update.baseKey}`);
        }
        steps.push(rotationStep(p, t.scale));
      }
      continue;
    }
    const values = await readFloat(t.file, t.biasB);
    if (t.multiply) {
      // In float64, as a weight's IA3 factors (loadMergeOp).
      const own = Float64Array.from(f32(values), (f) => 1 + t.scale * (f - 1));
      // A fused module's factors on a split tensor's bias: its own rows' (1 elsewhere).
      const exact = t.placement ? new Float64Array(update.length).fill(1) : own;
      if (t.placement) for (const g of t.placement.segments) exact.set(own.subarray(g.src, g.src + g.count), g.dst);
      const factors = Float32Array.from(exact);
      steps.push({ kind: 'scale', axis: 'out', factors: { dtype: 'F32', data: new Uint8Array(factors.buffer) }, exact });
      continue;
    }
    const term: LowRankTerm = { a: one, b: values, rank: 1, scale: t.scale };
    if (t.placement) term.placement = t.placement;
    const last = steps[steps.length - 1];
    if (last?.kind === 'add') last.terms.push(term);
    else steps.push({ kind: 'add', terms: [term] });
  }
  return slabOp({ name: update.baseKey, rows: update.length, cols: 1, layout: 'out-in', base: baseBytes, outDtype }, steps);
}

/**
 * A GLoRA bias path's D and E + W·C over the whole bias of `length` values: W the stored values
 * times the plan's value scale (one per equal run of rows), the module's rows of it where the term
 * is placed on a fused tensor; rows the module does not reach get D = 0 and nothing added.
 */
async function placedGloraBiasPath(
  t: BiasUpdate['terms'][number], glora: GloraBiasTerm, length: number, stored: Float64Array,
): Promise<{ d: Float64Array; added: Float64Array }> {
  const cols = stored.length / length;
  const scales = glora.valueScale;
  const rowScale = (r: number) => (scales ? scales[Math.floor(r / (length / scales.length))] : 1);
  const placement = t.placement;
  const rows = placement?.deltaRows ?? length;
  // Row o of the module's W: the tensor's row it lands on (unplaced rows are never read back).
  const tensorRow = new Int32Array(rows).fill(-1);
  if (placement) for (const g of placement.segments) for (let k = 0; k < g.count; k++) tensorRow[g.src + k] = g.dst + k;
  else tensorRow.forEach((_, o) => (tensorRow[o] = o));
  const w = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    const r = tensorRow[o];
    if (r < 0) continue;
    const s = rowScale(r);
    for (let c = 0; c < cols; c++) w[o * cols + c] = stored[r * cols + c] * s;
  }
  const own = await gloraBiasPath(t.file, glora.module, rows, w);
  if (!placement) return own;
  const d = new Float64Array(length), added = new Float64Array(length);
  for (const g of placement.segments) {
    d.set(own.d.subarray(g.src, g.src + g.count), g.dst);
    added.set(own.added.subarray(g.src, g.src + g.count), g.dst);
  }
  return { d, added };
}

/** A replacement tensor's bytes in the output dtype (rounded once; same dtype → as stored). */
export async function loadReplacement(rep: PlannedReplacement, outDtype: FloatDType): Promise<Uint8Array> {
  return convertReplacement(rep, await rep.file.read(rep.tensor), outDtype);
}

/**
 * Stored bytes of a replacement tensor (whole, or the slab of its rows from `rowStart`) in the
 * output dtype, its rows moved where the base keeps them (slabs are whole runs of rep.rowBlock).
 */
export function convertReplacement(rep: PlannedReplacement, stored: Uint8Array, outDtype: FloatDType, rowStart = 0): Uint8Array {
  const dtype = rep.tensor.dtype as FloatDType;
  const out = dtype === outDtype ? stored : encodeFromF32(decodeToF32(stored, dtype), outDtype);
  if (!rep.rows) return out;
  const cols = product(rep.shape.slice(1));
  return moveRows(out, rep.rows, rowStart, stored.byteLength / (cols * DTYPE_BYTES[dtype]));
}

/** Rows [rowStart, rowStart + n) of a tensor, each segment's src rows moved to its dst rows. */
function moveRows(bytes: Uint8Array, rows: readonly RowSegment[], rowStart: number, n: number): Uint8Array {
  const rowBytes = bytes.byteLength / n;
  const out = new Uint8Array(bytes.byteLength);
  for (const s of rows) {
    if (s.dst < rowStart || s.dst >= rowStart + n) continue;
    out.set(bytes.subarray((s.src - rowStart) * rowBytes, (s.src - rowStart + s.count) * rowBytes), (s.dst - rowStart) * rowBytes);
  }
  return out;
}

