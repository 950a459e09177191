/**
 * File to file: streams every base tensor through the plan to the backend and into the output,
 * shard by shard, in the base's own order. Large tensors go in row slabs, so memory is bounded by
 * the slab size, not by the model or its largest tensor. Any failure or cancellation aborts the
 * output target, which removes everything written. The base's container (safetensors, GGUF)
 * decides each tensor's output type, decodes and encodes rows, and writes the files. A tensor an
 * adapter saved (a resized embedding, a `base_layer` weight) is read from the adapter's file and
 * written in the shape the plan gives it.
 */
import { badArgument, checkCallback, checkDtypeName, checkImportanceArgument, checkOptions, checkSignal, isOutputTarget, shown } from '../api-arguments.js';
import { decodeToF32, DTYPE_BYTES, isDType, isFloatDType, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes, MergeBackend } from '../engine/merge-op.js';
import { asCancel, isMergeError, MergeError, throwIfAborted } from '../errors.js';
import type { BaseShard, BaseTensor } from '../formats/base-model.js';
import type { ContainerFormat, StoredShard, StoredTensor, TensorFileWriter } from '../formats/container.js';
import { copyInputFile } from '../io/copy-file.js';
import type { OutputTarget } from '../io/types.js';
import { convertReplacement, loadBiasUpdate, loadUpdateSteps } from '../plan/load-op.js';
import { slabOp, slabSteps, type LoadedStep } from '../plan/load-steps.js';
import { keepUnreachedRows } from '../engine/low-rank-factors.js';
import { reachedRows } from '../plan/reached-rows.js';
import { resolveStreamedNorms } from './column-norm-pass.js';
import { resolveOutProjections } from '../plan/out-projections.js';
import { assertPlanValid, type BiasUpdate, type PlannedReplacement, type TensorUpdate } from '../plan/merge-plan.js';
import { loadRowValues, setRows, type PlannedRowSet } from '../plan/row-sets.js';
import { writeModelFiles } from './model-files.js';
import type { PreparedMerge } from './prepare-merge.js';
import type { ProgressListener } from './progress.js';
import { runPipelined } from './work-queue.js';
import { scaledFp8Output, type ScaledFp8Output } from './scaled-fp8-output.js';
import type { ScaledFp8Weight } from '../formats/scaled-fp8.js';
import { BufferPool } from '../buffer-pool.js';
import { mergeStepsOnCpu } from '../engine/cpu/cpu-steps.js';
import {
  baseHoldsNonFinite, checkConverted, checkEncodedBlocks, checkReplacement, checkRowSet, checkSavedStart, CopiedNonFinite, explainBiasNonFinite, explainNonFinite, nonFiniteSpan, overflowInOp, addOverflow, noOverflow, type OverflowSpan, nonFiniteSpanText,
} from './value-checks.js';
import { product } from '../integers.js';
import type { ImportanceMatrix } from '../formats/gguf/imatrix.js';
import type { ImportanceTarget, RowWeights } from '../formats/gguf/imatrix-rows.js';
import { addToSpan, EncodeTally, expertRowsOf, type ExpertRows, type RowEncoder, type TensorRows } from '../formats/encode-tally.js';
import type { RowDecodeRunner } from '../formats/row-decoders.js';

/** Options of {@link mergeModel}. */
export interface MergeModelOptions {
  prepared: PreparedMerge;
  output: OutputTarget;
  backend: MergeBackend;
  /**
   * Output type (`f16`, `bf16`, `f8_e4m3`…, and for GGUF `q8_0`, `q4_k`…; checked by the base's
   * container). Safetensors: every float tensor is written in it. GGUF: every matrix llama-quantize
   * would quantize, merged or not (norms, the MoE router… keep their types). Default: each tensor
   * keeps the base's type.
   */
  outDtype?: string;
  /** `outDtype` applies to the tensors the merge changes only; the others are copied as stored (export-lora's way). */
  dtypeMergedOnly?: boolean;
  /**
   * GGUF: an importance matrix (from readImportanceMatrix) the merged tensors are re-quantized
   * with, as `llama-quantize --imatrix` quantizes them; tensors the merge does not change are
   * byte-copied as before.
   */
  importance?: ImportanceMatrix;
  /**
   * Cancels the merge: it rejects with a MergeError of code ABORTED, named `'AbortError'`, whose
   * `cause` is the signal's reason; the output is aborted.
   */
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Things the user should know that do not stop the merge (NaN/Inf the base already holds in copied tensors). */
  onWarning?: (message: string) => void;
  /** Upper bound on the base bytes of one unit of work (a row slab or a copied chunk). */
  slabBytes?: number;
}

/** What {@link mergeModel} wrote. */
export interface MergeResult {
  /** Output files written, relative paths. */
  files: string[];
  tensors: number;
  tensorsUpdated: number;
  bytesWritten: number;
  seconds: number;
  backend: string;
  /** The warnings also given to onWarning. */
  warnings: string[];
}

/**
 * Up to three units are alive at once (one read ahead, one computing, one being written), and a
 * backend holds a few temporaries per unit (f32 decode, output, GPU staging): peak memory is several
 * times this. Measured on a 0.97 GB f16 model (bench/stage-times.mjs): 4 MiB keeps peak RSS under a
 * quarter of the model on both backends at the same speed as 8–32 MiB, which cost 50–160 MB more.
 */
const DEFAULT_SLAB_BYTES = 4 * 1024 * 1024;

type Action =
  | { kind: 'update'; update: TensorUpdate; rowStart: number; rowCount: number; steps: () => Promise<LoadedStep[]>; release: () => void }
  | { kind: 'bias'; bias: BiasUpdate }
  | { kind: 'replace'; replacement: PlannedReplacement; rowStart: number; rowCount: number }
  | { kind: 'rows'; rowSet: PlannedRowSet; rowStart: number; rowCount: number; values: () => Promise<Map<number, Float32Array>>; release: () => void }
  | { kind: 'copy'; start: number; length: number };

interface WorkUnit {
  shardIndex: number;
  /** The shard's file, for messages. */
  file: string;
  tensor: BaseTensor;
  /** Its name in its file (the key without the shard's prefix). */
  storedName: string;
  /** The type the output file stores this tensor in. */
  outType: string;
  action: Action;
  /** Output bytes this unit produces. */
  outBytes: number;
}

const MERGE_MODEL_OPTIONS = ['prepared', 'output', 'backend', 'outDtype', 'dtypeMergedOnly', 'importance', 'signal', 'onProgress', 'onWarning', 'slabBytes'] as const;

/**
 * Options of the wrong kind, refused before anything is read: `prepared` not from prepareMerge,
 * `output` no OutputTarget, `backend` no MergeBackend, a mistyped option name or value.
 */
function checkMergeModelOptions(options: MergeModelOptions): void {
  checkOptions('mergeModel options', options, MERGE_MODEL_OPTIONS, { dtype: 'did you mean "outDtype"?', out: 'did you mean "output"?' });
  const prepared = options.prepared as Partial<PreparedMerge> | undefined;
  if (typeof prepared !== 'object' || prepared === null || typeof prepared.plan !== 'object' || typeof prepared.base !== 'object' || typeof prepared.close !== 'function') {
    throw badArgument(`mergeModel: prepared must be what prepareMerge returned, not ${shown(options.prepared)}`);
  }
  if (!isOutputTarget(options.output)) {
    throw badArgument(`mergeModel: output must be an OutputTarget (createBlobOutputTarget, createFileSystemAccessOutputTarget, createOpfsOutputTarget, createNodeOutputTarget), not ${shown(options.output)}`);
  }
  if (typeof options.backend !== 'object' || options.backend === null || typeof (options.backend as MergeBackend).merge !== 'function') {
    throw badArgument(`mergeModel: backend must be a MergeBackend (from createBackend or createNodeBackend), not ${shown(options.backend)}`);
  }
  checkDtypeName('mergeModel: outDtype', options.outDtype);
  if (options.dtypeMergedOnly !== undefined && typeof options.dtypeMergedOnly !== 'boolean') {
    throw badArgument(`mergeModel: dtypeMergedOnly must be true or false, not ${shown(options.dtypeMergedOnly)}`);
  }
  checkImportanceArgument('mergeModel: importance', options.importance);
  checkSignal('mergeModel: signal', options.signal);
  checkCallback('mergeModel: onProgress', options.onProgress);
  checkCallback('mergeModel: onWarning', options.onWarning);
  if (options.slabBytes !== undefined && (typeof options.slabBytes !== 'number' || !(options.slabBytes > 0) || !Number.isFinite(options.slabBytes))) {
    throw badArgument(`mergeModel: slabBytes must be a positive number of bytes, not ${shown(options.slabBytes)}`);
  }
}

/**
 * Streams the prepared merge into `output` on `backend`, tensor by tensor in row slabs; on failure
 * or cancellation the output is aborted and nothing is left. Options of the wrong kind are a
 * BAD_ARGUMENT MergeError (the output, when it is one, is aborted too); an error thrown by
 * `onProgress` or `onWarning` ends the merge with that error, leaving nothing.
 */
export async function mergeModel(options: MergeModelOptions): Promise<MergeResult> {
  try {
    checkMergeModelOptions(options);
    return await mergeInto(options);
  } catch (e) {
    // Whatever failed, a refusal before the first byte included: the output (and its lock) goes.
    const output = typeof options === 'object' && options !== null ? options.output : undefined;
    if (isOutputTarget(output)) await output.abort().catch(() => {});
    throw asCancel(e, typeof options === 'object' && options !== null ? options.signal : undefined);
  }
}

/**
 * What the merge writes, from the headers alone: each tensor's output type and shape, and whether
 * the merge changes it; the output types checked against the format, and `importance()` the row
 * weights the importance matrix gives (refused where it does not fit the base).
 */
function outputLayout(options: Pick<MergeModelOptions, 'prepared' | 'outDtype' | 'dtypeMergedOnly' | 'importance' | 'slabBytes'>) {
  const slabBytes = Math.max(options.slabBytes ?? DEFAULT_SLAB_BYTES, 4096);
  const requested = options.outDtype === undefined ? undefined : options.prepared.base.format.parseOutputType(options.outDtype, 'outDtype', options.importance !== undefined);
  const { plan } = options.prepared;
  const updates = new Map(plan.updates.map((u) => [u.baseKey, u]));
  // fp8 codes × scales: merged in real values, their scale tensors rewritten or left out (scaled-fp8-output.ts).
  const scaled = scaledFp8Output(options.prepared, requested, options.dtypeMergedOnly ?? false, new Set(updates.keys()), slabBytes);
  scaled?.extraUpdates.forEach((u) => updates.set(u.baseKey, u));
  const prepared = scaled?.prepared ?? options.prepared;
  const { base } = prepared;
  const format = base.format;
  const biases = new Map(plan.biasUpdates.map((b) => [b.baseKey, b]));
  const replacements = new Map(plan.replacements.map((r) => [r.baseKey, r]));
  const rowSets = new Map(plan.rowSets.map((r) => [r.baseKey, r]));
  const keyOf = (shard: BaseShard, stored: StoredTensor) => shard.keyPrefix + stored.name;
  const changed = (key: string) => updates.has(key) || biases.has(key) || replacements.has(key) || rowSets.has(key);
  // A tensor an adapter saved in another shape (a resized embedding) is written in that shape.
  const outShapeOf = (shard: BaseShard, stored: StoredTensor): number[] => {
    const key = keyOf(shard, stored);
    const storedAs = scaled?.storedAs(key);
    if (storedAs) return storedAs.shape;
    const planned = updates.get(key)?.shape ?? replacements.get(key)?.shape ?? rowSets.get(key)?.shape;
    return planned && !sameShape(planned, base.tensors.get(key)!.shape) ? planned : stored.shape;
  };
  const outTypeOf = (shard: BaseShard, stored: StoredTensor) => {
    const key = keyOf(shard, stored);
    const storedAs = scaled?.storedAs(key);
    if (storedAs) return storedAs.type;
    // A kept quantization config's activation and KV-cache scales are read as stored: no output type converts them.
    if (prepared.runtimeScales?.has(key)) return stored.writeType ?? stored.type;
    const touched = changed(key);
    return format.outputType(stored, touched, options.dtypeMergedOnly && !touched ? undefined : requested, options.importance !== undefined);
  };

  // A scaled fp8 file written dequantized is not held to its fp8 dtype (scaled-fp8-output.ts).
  checkOutputTypes(base.name, base.shards, scaled ? undefined : base.valueScales, format, outTypeOf, (shard, t) => changed(keyOf(shard, t)));
  const importance = () => options.importance && matchImportance(format, options.importance, base.shards.flatMap((shard) => shard.tensors.map((t) => ({
    name: t.name, shape: t.shape, type: t.type, outType: outTypeOf(shard, t), changed: changed(keyOf(shard, t)),
  }))));
  return { requested, updates, scaled, prepared, biases, replacements, rowSets, keyOf, changed, outShapeOf, outTypeOf, importance };
}

/**
 * For a dry run: the refusals a merge of `prepared` with `importance` gives before it writes (the
 * output types, then the importance matrix matched to the base: an entry naming no tensor of it,
 * an entry of the wrong length, a tensor written in a type not quantized with one), from the
 * headers alone.
 */
export function checkImportance(prepared: PreparedMerge, importance: ImportanceMatrix, outDtype?: string, dtypeMergedOnly?: boolean): void {
  outputLayout({ prepared, importance, outDtype, dtypeMergedOnly }).importance();
}

/**
 * For a plan shown before the merge (the page's): the refusals a merge of `prepared` gives on the
 * values of the tensors adapters save whole, found ahead of it, in the merge's own words, one line
 * per tensor, in the base's order: a replacement (modules_to_save, set_weight, a saved base_layer
 * weight) and the saved tensor rows start from, holding NaN/Inf or overflowing its output dtype
 * (re-quantized to a GGUF block type: values too large for its blocks' scales);
 * rows set by trainable tokens likewise; a bias update (a saved bias, lora_B.bias) whose result is
 * not finite. Only the adapters' tensors are read (and a float bias the merge updates): the base's
 * other rows are checked by the merge as it copies them. An output type the layout refuses is the
 * caller's to say (the merge refuses it first): none is listed then.
 */
export async function savedTensorRefusals(prepared: PreparedMerge, options: SavedTensorOptions = {}): Promise<string[]> {
  let layout: ReturnType<typeof outputLayout>;
  try {
    layout = outputLayout({ prepared, ...options });
  } catch (e) {
    if (isMergeError(e)) return [];
    throw e;
  }
  return (await savedTensorErrorsOf(layout, options)).map((e) => e.message);
}

/** What {@link savedTensorRefusals} is asked for: the merge's output settings, and which tensors. */
export interface SavedTensorOptions {
  outDtype?: string; dtypeMergedOnly?: boolean; importance?: ImportanceMatrix; signal?: AbortSignal;
  /** 'saved': the adapters' saved tensors and set rows only (the weights change none of them); 'biases': the bias updates only; default both. */
  only?: 'saved' | 'biases';
}

/**
 * For a dry run (the CLI's): the refusals a merge of `prepared` gives before it writes, as the
 * errors it throws, in its order: an output type the layout refuses or an importance matrix that
 * does not fit the base is thrown (the merge stops on it first, from the headers); then those of
 * {@link savedTensorRefusals}, each the MergeError the merge would stop on, returned.
 */
export async function savedTensorErrors(prepared: PreparedMerge, options: Omit<SavedTensorOptions, 'only'> = {}): Promise<MergeError[]> {
  const layout = outputLayout({ prepared, ...options });
  layout.importance();
  return savedTensorErrorsOf(layout, options);
}

/**
 * Below this magnitude no value fails as a GGML block: a block's f16 scale is at most its largest
 * |value| (levels are 1 or more), far from 65504, and ggml's quantizers overflow f32 only past
 * about 1e9 (IQ searches, x⁴ summed) to 1e18 (K-quant sums). A plan encodes a saved tensor's
 * blocks ahead of the merge only past it (an importance matrix's own faults are the merge's to find).
 */
const BLOCK_SAFE_MAGNITUDE = 1024;

/**
 * The values a GLoRA bias path's W·C reads of a base weight, whole, in float64, as the weight's own
 * merge starts from them: its stored floats, a GGUF block type dequantized (the plan took no other),
 * or fp8 codes times their grid of scales (block-wise fp8, compressed-tensors, ModelOpt, fbgemm,
 * ComfyUI's fp8 layers: formats/scaled-fp8.ts). A scale the plan merges in place (a scaled fp8
 * `scale_weight` kept, a GGUF's `.scale`) is applied by the plan's term (GloraBiasTerm.valueScale).
 */
function weightValues(prepared: PreparedMerge): (key: string) => Promise<Float64Array> {
  const { base, scaledFp8: scaled } = prepared;
  return async (key) => {
    const grid = scaled && scaled.rule !== 'keep' ? scaled.weights.get(key) : undefined;
    if (grid) return codesTimesScales(grid, await base.read(key));
    const { storedType } = base.tensors.get(key)!;
    const bytes = isFloatDType(storedType) ? { dtype: storedType, data: await base.read(key) } : await base.format.decodeRows(storedType, await base.read(key));
    return Float64Array.from(decodeToF32(bytes.data, bytes.dtype));
  };
}

/** W = code × the scale of its block, each product exact in float64 (an fp8 code has 4 significant bits, a scale at most 24). */
function codesTimesScales(w: ScaledFp8Weight, codes: Uint8Array): Float64Array {
  // The plan refuses the others (plan/quantized-weights.ts): their codes are read through a view or their scales packed.
  if (w.view || w.loadScales || w.scaleLayout) throw new MergeError('PLAN_INVALID', `${w.weightKey}: its codes and scales are not read as a grid here`);
  const values = decodeToF32(codes, w.codeDtype);
  const colBlocks = Math.ceil(w.cols / w.blockCols);
  const out = new Float64Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) {
    const band = Math.floor(r / w.blockRows) * colBlocks;
    for (let c = 0; c < w.cols; c++) out[r * w.cols + c] = values[r * w.cols + c] * w.scales[band + Math.floor(c / w.blockCols)];
  }
  return out;
}

/** f32 bytes as values (copied where they are not 4-byte aligned). */
function f32View(bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
}

/** The largest |value| of f32 bytes. */
function largestMagnitude(bytes: Uint8Array): number {
  const f32 = f32View(bytes);
  let largest = 0;
  for (let i = 0; i < f32.length; i++) largest = Math.max(largest, Math.abs(f32[i]));
  return largest;
}

/** `rows` cut down to whole runs of `block` rows, at least one run. */
function wholeRuns(rows: number, block: number): number {
  return Math.max(block, Math.floor(rows / block) * block);
}

/** Rows of `rowBytes` each in a slab of `slabBytes`: whole runs of `block` rows, at least one run. */
function rowsPerSlab(slabBytes: number, rowBytes: number, block = 1): number {
  return wholeRuns(Math.floor(slabBytes / Math.max(rowBytes, 1)), block);
}

/** `format`'s blocks of `outType` for a tally of their faults (EncodeTally), quantized with `weights` where given. */
function blockEncoder(format: ContainerFormat, outType: string, weights: RowWeights | undefined, backend?: MergeBackend, signal?: AbortSignal): RowEncoder {
  return {
    encode: async (values, rowStart) => format.encodeRows(
      outType, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), backend, signal, weights ? { rows: weights, rowStart } : undefined,
    ),
    nonFinite: (bytes) => format.nonFiniteInBlocks?.(outType, bytes),
    zeroed: (bytes, input) => format.zeroedInBlocks?.(outType, bytes, input),
  };
}

async function savedTensorErrorsOf(layout: ReturnType<typeof outputLayout>, options: SavedTensorOptions): Promise<MergeError[]> {
  const { biases, replacements, rowSets, keyOf, outTypeOf } = layout;
  const base = layout.prepared.base;
  const format = base.format;
  const slabBytes = DEFAULT_SLAB_BYTES;
  const refusals: MergeError[] = [];
  // The row weights the merge quantizes with; an importance matrix that does not fit is the caller's to say.
  let weights: ReadonlyMap<string, RowWeights> | undefined;
  try {
    weights = layout.importance();
  } catch (e) {
    if (!isMergeError(e)) throw e;
  }
  const refused = async (check: () => Promise<void>) => {
    try {
      await check();
    } catch (e) {
      if (!isMergeError(e) || e.code === 'ABORTED') throw e;
      refusals.push(e);
    }
  };
  for (const shard of base.shards) for (const stored of shard.tensors) {
    throwIfAborted(options.signal);
    const key = keyOf(shard, stored);
    const outType = outTypeOf(shard, stored);
    const outDtype = format.engineDtype(outType);
    const replacement = replacements.get(key);
    const rowSet = rowSets.get(key);
    const bias = biases.get(key);
    const start = layout.updates.get(key)?.source;
    if (options.only === 'biases' ? !bias || start || replacement || rowSet : options.only === 'saved' && !start && !replacement && !rowSet) continue;
    if (start) {
      await refused(() => checkSavedStart(start, slabBytes, options.signal));
    } else if (replacement) {
      await refused(async () => {
        const [rows, cols] = rowsAndCols(replacement.shape);
        const rowBytes = cols * DTYPE_BYTES[replacement.tensor.dtype];
        const slabs = pieces(rows, rowsPerSlab(slabBytes, rowBytes, replacement.rowBlock));
        const read = (rowStart: number, rowCount: number) => replacement.file.readPart(replacement.tensor, rowStart * rowBytes, rowCount * rowBytes);
        let largest = 0;
        for (const [rowStart, rowCount] of slabs) {
          throwIfAborted(options.signal);
          const input = await read(rowStart, rowCount);
          const out = convertReplacement(replacement, input, outDtype, rowStart);
          await checkReplacement(replacement, input, out, outDtype);
          if (outDtype === 'F32') largest = Math.max(largest, largestMagnitude(out));
        }
        // Written as blocks (GGUF): checked as the merge checks them, where a block could fail.
        if (largest < BLOCK_SAFE_MAGNITUDE || format.nonFiniteInBlocks?.(outType, new Uint8Array(0)) === undefined) return;
        const tallied = async (weightRows: RowWeights | undefined) => {
          const tally = new EncodeTally(cols, expertsOf(stored));
          const encoder = blockEncoder(format, outType, weightRows, undefined, options.signal);
          for (const [rowStart, rowCount] of slabs) {
            throwIfAborted(options.signal);
            const out = convertReplacement(replacement, await read(rowStart, rowCount), 'F32', rowStart);
            await tally.add(new Float32Array(out.slice().buffer), rowStart, encoder, options.signal);
          }
          return tally;
        };
        const weightRows = weights?.get(stored.name);
        const tally = await tallied(weightRows);
        // Faults only the importance weights bring are the matrix's, which the merge names itself.
        if (weightRows && tally.any && !(await tallied(undefined)).any) return;
        checkEncodedBlocks(shard.sourceName, base.tensors.get(key)?.name ?? key, outType, tally);
      });
    } else if (rowSet) {
      await refused(async () => {
        const values = await loadRowValues(rowSet);
        const cols = rowSet.shape[1];
        const copied = new CopiedNonFinite();
        const check = async (rowStart: number, start: FloatTensorBytes) =>
          checkRowSet(shard.sourceName, rowSet, rowStart, start, values, setRows(start.data, start.dtype, rowStart, cols, values, outDtype), outDtype, copied);
        const source = rowSet.source;
        if (source) {
          // The other rows come from the adapter's file too: all of it is the adapter's.
          const dtype = source.tensor.dtype as FloatDType;
          const rowBytes = cols * DTYPE_BYTES[dtype];
          for (const [rowStart, rowCount] of pieces(rowSet.shape[0], rowsPerSlab(slabBytes, rowBytes))) {
            throwIfAborted(options.signal);
            await check(rowStart, { dtype, data: await source.file.readPart(source.tensor, rowStart * rowBytes, rowCount * rowBytes) });
          }
          return;
        }
        // The set rows alone, each on a row of zeros: a set row replaces the base's whole.
        const zeros: FloatTensorBytes = { dtype: 'F32', data: new Uint8Array(cols * 4) };
        for (const row of [...values.keys()].sort((x, y) => x - y)) await check(row, zeros);
      });
    } else if (bias) {
      const storedType = base.tensors.get(key)?.storedType ?? stored.type;
      if (!bias.source && !isFloatDType(storedType)) continue;
      await refused(async () => {
        const data = bias.source ? await bias.source.file.read(bias.source.tensor) : await base.read(key);
        const decoded: FloatTensorBytes = { dtype: (bias.source ? bias.source.tensor.dtype : storedType) as FloatDType, data };
        const op = await loadBiasUpdate(bias, decoded, outDtype, weightValues(layout.prepared));
        try {
          mergeStepsOnCpu(op, options.signal);
        } catch (e) {
          throw explainBiasNonFinite(e, shard.sourceName, bias, decoded.data, op);
        }
      });
    }
  }
  return refusals;
}

async function mergeInto(options: MergeModelOptions): Promise<MergeResult> {
  const { output, backend, signal, onProgress } = options;
  const { plan } = options.prepared;
  const startedAt = performance.now();
  assertPlanValid(plan);
  throwIfAborted(signal);

  const slabBytes = Math.max(options.slabBytes ?? DEFAULT_SLAB_BYTES, 4096);
  // Quantized weights read through a row decoder are decoded on the backend's threads, where it has them.
  const decodeOn: RowDecodeRunner | undefined = backend.decodeRows && ((source, r0, r1, out) => backend.decodeRows!(source, r0, r1, signal, out));
  const layout = outputLayout(options);
  const { requested, updates, scaled, prepared, biases, replacements, rowSets, keyOf, changed, outShapeOf, outTypeOf } = layout;
  const { base } = prepared;
  const format = base.format;
  const importance = layout.importance();

  const outShards: StoredShard[] = base.shards.map((shard) => ({
    path: shard.path,
    tensors: shard.tensors.map((t) => {
      const type = outTypeOf(shard, t);
      const shape = outShapeOf(shard, t);
      // A tensor written as it is stored is described by its own entry (no second object per tensor).
      if (type === t.type && shape === t.shape && t.writeType === undefined) return t;
      return { name: t.name, type, shape, byteLength: format.byteLength(type, product(shape)) };
    }),
  }));
  // A pipeline component nothing changes is written byte for byte as it was ("mirrored"): its
  // tensors still stream through the copy checks, but its header is the source's own.
  const mirrored = base.shards.map((shard) => shard.mirrorIfUnchanged && shard.tensors.every((t) => !changed(keyOf(shard, t)) && outTypeOf(shard, t) === t.type));

  // Units are made as the pipeline reaches them, not held in a list: a checkpoint of 140 000
  // tensors would keep two objects per tensor (about 17 MB) for the whole merge.
  function* workUnits(): Generator<WorkUnit> {
    for (const [shardIndex, shard] of base.shards.entries()) for (const stored of shard.tensors) {
      const key = keyOf(shard, stored);
      const tensor = base.tensors.get(key)!;
      const outType = outTypeOf(shard, stored);
      const workUnit = (action: Action, outBytes: number): WorkUnit =>
        ({ shardIndex, file: shard.sourceName, tensor, storedName: stored.name, outType, action, outBytes });
      const update = updates.get(key);
      const bias = biases.get(key);
      const replacement = replacements.get(key);
      const rowSet = rowSets.get(key);
      const rowsPerSlabOf = (rowBytes: number, block = 1) => rowsPerSlab(slabBytes, rowBytes, block);
      if (update) {
        // Factors are read once per tensor, shared by its slabs; DoRA norms across rows take a
        // pass over the slabs of their own first (column-norm-pass.ts), decoded like the merge's.
        const start = updateStart(prepared, stored.type, update, decodeOn);
        const block = scaled?.rowBlock(key, update.rowBlock) ?? update.rowBlock;
        const rowsPerSlab = rowsPerSlabOf(start.bytes(block * update.cols) / block, block);
        let steps: Promise<LoadedStep[]> | undefined;
        // Output-side projections (PEFT DEFT) likewise take a pass of their own (out-projections.ts).
        const streamed = {
          name: key, rows: update.rows, cols: update.cols, layout: update.layout, dtype: start.dtype,
          readRows: async (r0: number, n: number) => (await start.decode(await readStartRows(start, key, r0, n, update.cols), backend, signal)).data,
        };
        const norms = (s: LoadedStep[]) => resolveStreamedNorms(streamed, s, rowsPerSlab, backend, signal);
        const loadOnce = () => (steps ??= loadUpdateSteps(update)
          .then((loaded) => resolveOutProjections({ ...streamed, readRows: async (r0, n) => ({ dtype: start.dtype, data: await streamed.readRows(r0, n) }) }, loaded, rowsPerSlab, signal, norms))
          .then(norms));
        // Dropped once the tensor is written: kept, every tensor's factors would stay until the end.
        const release = () => (steps = undefined);
        for (const [rowStart, rowCount] of pieces(update.rows, rowsPerSlab)) {
          const storedAs = scaled?.storedAs(key);
          const outBytes = storedAs ? rowCount * storedAs.rowBytes : format.byteLength(outType, rowCount * update.cols);
          yield workUnit({ kind: 'update', update, rowStart, rowCount, steps: loadOnce, release }, outBytes);
        }
      } else if (bias) {
        yield workUnit({ kind: 'bias', bias }, format.byteLength(outType, bias.length));
      } else if (replacement) {
        // Read from the adapter's file in row slabs, like any tensor.
        const [rows, cols] = rowsAndCols(replacement.shape);
        for (const [rowStart, rowCount] of pieces(rows, rowsPerSlabOf(cols * DTYPE_BYTES[replacement.tensor.dtype], replacement.rowBlock))) {
          yield workUnit({ kind: 'replace', replacement, rowStart, rowCount }, format.byteLength(outType, rowCount * cols));
        }
      } else if (rowSet) {
        let values: Promise<Map<number, Float32Array>> | undefined;
        const loadOnce = () => (values ??= loadRowValues(rowSet));
        const release = () => (values = undefined);
        const cols = rowSet.shape[1];
        const rowBytes = startRows(prepared, stored.type, rowSet.source).bytes(cols);
        for (const [rowStart, rowCount] of pieces(rowSet.shape[0], rowsPerSlabOf(rowBytes))) {
          yield workUnit({ kind: 'rows', rowSet, rowStart, rowCount, values: loadOnce, release }, format.byteLength(outType, rowCount * cols));
        }
      } else {
        // Copies go in chunks of whole elements (or blocks).
        const unit = format.copyUnit(stored.type, outType);
        const chunk = Math.max(unit, Math.floor(slabBytes / unit) * unit);
        for (const [start, length] of pieces(stored.byteLength, chunk)) {
          const outBytes = outType === stored.type ? length : format.byteLength(outType, length / format.byteLength(stored.type, 1));
          yield workUnit({ kind: 'copy', start, length }, outBytes);
        }
      }
    }
  }

  const typeWarnings = requested ? format.outputTypeWarnings?.(base.shards, outShards, requested) ?? [] : [];
  const provenance = provenanceMetadata(prepared, requested);
  let bytesTotal = 0;
  for (const u of workUnits()) bytesTotal += u.outBytes;
  const tensorsTotal = base.tensors.size;
  let bytesDone = 0;
  let tensorsDone = 0;
  let warnings: string[] = [];
  const writers: TensorFileWriter[] = [];
  const files: string[] = [];
  /** Finishes the open shard and opens every shard up to `shardIndex` (empty ones get just a header). */
  const advanceTo = async (shardIndex: number) => {
    while (writers.length <= shardIndex) {
      const open = writers[writers.length - 1];
      if (open) await open.finish();
      const i = writers.length;
      const shard = outShards[i];
      writers.push(await format.createWriter(await output.createFile(shard.path), i, outShards, provenance, mirrored[i], requested));
      files.push(shard.path);
    }
  };
  const copiedNonFinite = new CopiedNonFinite();
  const emit = (phase: 'merge' | 'done', tensor?: string) =>
    onProgress?.({ phase, tensorsDone, tensorsTotal, bytesDone, bytesTotal, tensor });

  // Slab inputs are reused once their unit is written (no fresh memory, no page faults per slab);
  // backends that can reuse their outputs get them back the same way (MergeBackend.recycle).
  const inputs = new BufferPool(backend.slabMemory?.bind(backend));
  const inputOf = new Map<WorkUnit, Uint8Array>();
  typeWarnings.forEach((w) => options.onWarning?.(w));
  emit('merge');
  await runPipelined<WorkUnit, Uint8Array, Uint8Array>(
    workUnits(),
    {
      read: async (unit) => {
        const input = await readUnit(prepared, unit, (bytes) => inputs.take(bytes), decodeOn);
        inputOf.set(unit, input);
        return input;
      },
      compute: (unit, input) => computeUnit(prepared, unit, input, backend, copiedNonFinite, signal, scaled, importance?.get(unit.storedName)),
      write: async (unit, bytes) => {
        await advanceTo(unit.shardIndex);
        await writers[unit.shardIndex].writeChunk(unit.storedName, bytes);
        bytesDone += bytes.byteLength;
        // Written (a sink is done with a chunk once write resolves), and the input is no longer read.
        backend.recycle?.(bytes);
        const input = inputOf.get(unit);
        inputOf.delete(unit);
        if (input) inputs.recycle(input);
        if (isLastUnitOfTensor(unit)) {
          tensorsDone++;
          if (unit.action.kind === 'update' || unit.action.kind === 'rows') unit.action.release();
        }
        emit('merge', unit.tensor.name);
      },
    },
    signal,
  );
  warnings = copiedNonFinite.warnings();
  warnings.forEach((w) => options.onWarning?.(w));
  warnings.unshift(...typeWarnings);
  await advanceTo(base.shards.length - 1);
  await writers[writers.length - 1]?.finish();
  throwIfAborted(signal);
  files.push(...(await format.writeSidecars(output, outShards, {
    mirrored,
    copyInput: (path) => copyInputFile(prepared.baseFiles, path, output),
  })));
  const dtype = scaled ? scaled.configDtype(writtenDtype(outShards)) : writtenDtype(outShards);
  files.push(...(await writeModelFiles(prepared, output, dtype, signal)));
  throwIfAborted(signal);
  // Before the commit, as the adapter jobs do: a listener that throws at `done` fails the merge
  // with nothing at the output, instead of failing a call whose files are already in place.
  emit('done');
  await output.commit();
  return {
    warnings,
    files,
    tensors: tensorsTotal,
    tensorsUpdated: plan.summary.tensorsTouched,
    bytesWritten: bytesDone,
    seconds: (performance.now() - startedAt) / 1000,
    backend: backend.description,
  };
}

/** [start, length] pieces of at most `step` covering [0, total); one empty piece when total is 0. */
function pieces(total: number, step: number): [number, number][] {
  if (total === 0) return [[0, 0]];
  const out: [number, number][] = [];
  for (let start = 0; start < total; start += step) out.push([start, Math.min(step, total - start)]);
  return out;
}

/** The float dtype most of the written elements are in (what config.json says was written). */
function writtenDtype(shards: readonly StoredShard[]): FloatDType | undefined {
  const elements = new Map<FloatDType, number>();
  for (const t of shards.flatMap((s) => s.tensors)) {
    if (isFloatDType(t.type)) elements.set(t.type, (elements.get(t.type) ?? 0) + product(t.shape));
  }
  return [...elements].sort((a, b) => b[1] - a[1])[0]?.[0];
}

function isLastUnitOfTensor(unit: WorkUnit): boolean {
  const a = unit.action;
  if (a.kind === 'update') return a.rowStart + a.rowCount >= a.update.rows;
  if (a.kind === 'replace') return a.rowStart + a.rowCount >= rowsAndCols(a.replacement.shape)[0];
  if (a.kind === 'rows') return a.rowStart + a.rowCount >= a.rowSet.shape[0];
  if (a.kind === 'copy') return a.start + a.length >= unit.tensor.byteLength;
  return true;
}

/**
 * Every tensor's output type must fit it (GGUF block sizes), and a scaled fp8 weight must keep its
 * dtype (its stored values are W / scale_weight: another dtype would need the scales redone too);
 * checked before any work.
 */
function checkOutputTypes(
  baseName: string, shards: readonly BaseShard[], valueScales: ReadonlyMap<string, number> | undefined,
  format: ContainerFormat, outTypeOf: (shard: BaseShard, t: StoredTensor) => string, changed: (shard: BaseShard, t: StoredTensor) => boolean,
): void {
  const problems: string[] = [];
  for (const shard of shards) {
    for (const t of shard.tensors) {
      const type = outTypeOf(shard, t);
      if (type === t.type) {
        // Computed anew in its own type: that type must be one the container writes.
        const why = changed(shard, t) ? format.checkOutputType(t, type) : undefined;
        if (why) problems.push(`tensor "${t.name}": ${why}`);
        continue;
      }
      if (valueScales?.has(shard.keyPrefix + t.name)) {
        throw new MergeError('BAD_ARGUMENT', `${baseName}: a scaled fp8 checkpoint (scale_weight per tensor) keeps its weights in ${t.type}; leave out the output dtype or choose ${t.type}`);
      }
      const why = format.checkOutputType(t, type);
      if (why) problems.push(`tensor "${t.name}": ${why}`);
    }
  }
  if (problems.length > 0) {
    throw new MergeError('BAD_ARGUMENT', problems.length === 1 ? problems[0] : `${problems[0]} (and ${problems.length - 1} more tensors)`);
  }
}

function sameShape(x: readonly number[], y: readonly number[]): boolean {
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

/** A tensor as rows of its first dimension (a scalar: one row of one value). */
function rowsAndCols(shape: readonly number[]): [number, number] {
  return shape.length === 0 ? [1, 1] : [shape[0], product(shape.slice(1))];
}

/**
 * Where an update's or a row set's rows come from: the base's stored rows, decoded by its
 * container, or the float tensor an adapter saved for it (read from the adapter's file as it is).
 */
interface StartRows {
  dtype: FloatDType;
  /**
   * The stored bytes of `elements` values from the tensor's start: offsets and lengths of slabs
   * are counted in values, since a row of a tensor seen in its real shape need not be whole blocks
   * (slabs of BaseTensor.rowBlock rows are).
   */
  bytes(elements: number): number;
  /** `into`: a buffer offered for the bytes (see ByteSource.read); use what is returned. */
  read(key: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  decode(bytes: Uint8Array, backend: MergeBackend, signal?: AbortSignal): Promise<FloatTensorBytes>;
}

/** Rows `rowStart`… of `cols` values each, offered `take`'s buffer where one is given. */
function readStartRows(start: StartRows, key: string, rowStart: number, rowCount: number, cols: number, take?: (bytes: number) => Uint8Array): Promise<Uint8Array> {
  const length = start.bytes(rowCount * cols);
  return start.read(key, start.bytes(rowStart * cols), length, take?.(length));
}

/** Where a tensor update's W starts: {@link startRows}, its base rows widened with zero columns where the plan widens it. */
function updateStart(prepared: PreparedMerge, storedType: string, update: TensorUpdate, decodeOn?: RowDecodeRunner): StartRows {
  const start = startRows(prepared, storedType, update.source, decodeOn);
  if (update.widenedFrom === undefined) return start;
  // The plan widens only element-wise float types, whose zero bytes are the value 0.
  const from = start.bytes(update.widenedFrom), to = start.bytes(update.cols);
  return {
    ...start,
    read: async (key, offset, length) => {
      const rows = length / to;
      const stored = await start.read(key, (offset / to) * from, rows * from);
      const out = new Uint8Array(length);
      for (let r = 0; r < rows; r++) out.set(stored.subarray(r * from, (r + 1) * from), r * to);
      return out;
    },
  };
}

/** `decodeOn`: where the base's quantized weights read through a row decoder are decoded (the backend's threads). */
function startRows(prepared: PreparedMerge, storedType: string, source: PlannedReplacement | undefined, decodeOn?: RowDecodeRunner): StartRows {
  const format = prepared.base.format;
  if (source) {
    const dtype = source.tensor.dtype as FloatDType;
    return {
      dtype,
      bytes: (elements) => elements * DTYPE_BYTES[dtype],
      read: (_key, start, length, into) => source.file.readPart(source.tensor, start, length, into),
      decode: async (bytes) => ({ dtype, data: bytes }),
    };
  }
  return {
    dtype: format.engineDtype(storedType),
    bytes: (elements) => format.byteLength(storedType, elements),
    read: (key, start, length, into) => prepared.base.readPart(key, start, length, into, decodeOn),
    decode: (bytes, backend, signal) => format.decodeRows(storedType, bytes, backend, signal),
  };
}

/**
 * The NaN/Inf values W of `update` holds (the base's rows, or the tensor an adapter saved for it),
 * over the whole tensor: read again in slabs of about `slabRows` rows from the first (whole runs
 * of its rowBlock rows, as the merge's slabs), tested by their block scales where the container can, else
 * decoded. Only on the error path, where a slab held some: a merge stops at the first slab it
 * finds them in, which need be neither the tensor's first such slab (slabs run side by side) nor
 * its only one, and the refusal names the tensor's first row holding one and how many it holds.
 */
async function nonFiniteInTensor(
  prepared: PreparedMerge, key: string, storedType: string, update: TensorUpdate, slabRows: number, backend: MergeBackend, signal?: AbortSignal,
): Promise<{ count: number; first: number; last: number }> {
  const start = updateStart(prepared, storedType, update);
  const span = { count: 0, first: -1, last: -1 };
  // Whole runs of rowBlock rows (the slab met may be a tensor's shorter last one).
  const block = update.rowBlock ?? 1;
  const step = wholeRuns(slabRows, block);
  for (let r0 = 0; r0 < update.rows; r0 += step) {
    throwIfAborted(signal);
    const bytes = await readStartRows(start, key, r0, Math.min(step, update.rows - r0), update.cols);
    const blocks = update.source ? undefined : prepared.base.format.nonFiniteInBlocks?.(storedType, bytes);
    const found = blocks ?? (await (async () => {
      const decoded = await start.decode(bytes, backend, signal);
      return nonFiniteSpan(decoded.data, decoded.dtype);
    })());
    addToSpan(span, found.count, r0 * update.cols + found.first, r0 * update.cols + found.last);
  }
  return span;
}

/**
 * The merged values of a whole tensor that overflow `outDtype`, those past f32, and its largest
 * |value|: every slab read, decoded and merged again in f32 on the CPU (the error path only: the
 * slab met overflowed, and need be neither the tensor's first nor its only one); undefined where a
 * slab's merge fails otherwise.
 */
async function overflowInMerged(
  prepared: PreparedMerge, key: string, storedType: string, update: TensorUpdate, outDtype: FloatDType, slabRows: number,
  steps: () => Promise<LoadedStep[]>, backend: MergeBackend, signal?: AbortSignal,
): Promise<OverflowSpan | undefined> {
  const start = updateStart(prepared, storedType, update);
  const span = noOverflow();
  const block = update.rowBlock ?? 1;
  const step = wholeRuns(slabRows, block);
  for (const [r0, n] of pieces(update.rows, step)) {
    throwIfAborted(signal);
    const decoded = await start.decode(await readStartRows(start, key, r0, n, update.cols), backend, signal);
    const op = slabOp({
      name: update.baseKey, rows: update.rows, cols: update.cols, layout: update.layout, base: decoded, outDtype, rowStart: r0, rowCount: n,
    }, await slabSteps(await steps(), r0, n));
    if (!addOverflow(span, overflowInOp(op), r0 * update.cols)) return undefined;
  }
  return span;
}

/**
 * "N NaN or Inf values (first in row F, last in row L)" over the whole of a tensor the merge copies
 * and converts, read again and decoded piece by piece (a conversion's error path only: the piece it
 * met held some).
 */
async function nonFiniteInCopied(
  prepared: PreparedMerge, unit: WorkUnit, chunkBytes: number, backend: MergeBackend, signal?: AbortSignal,
): Promise<string | undefined> {
  const { base } = prepared;
  const { name, storedType, shape, byteLength } = unit.tensor;
  const copyUnit = base.format.copyUnit(storedType, unit.outType);
  const step = Math.max(chunkBytes, copyUnit, Math.floor(DEFAULT_SLAB_BYTES / copyUnit) * copyUnit);
  const span = { count: 0, first: -1, last: -1 };
  let at = 0;
  for (const [start, length] of pieces(byteLength, step)) {
    throwIfAborted(signal);
    const decoded = await base.format.decodeRows(storedType, await base.readPart(name, start, length), backend, signal);
    const found = nonFiniteSpan(decoded.data, decoded.dtype);
    if (found.count) {
      if (span.count === 0) span.first = at + found.first;
      span.count += found.count;
      span.last = at + found.last;
    }
    at += decoded.data.byteLength / DTYPE_BYTES[decoded.dtype];
  }
  return nonFiniteSpanText(shape, span, expertsOf(unit.tensor));
}

/**
 * The faults of a whole merged tensor's blocks as written (NaN/Inf or zeroed values, rows the
 * quantizer stops on): every slab of `unit`'s tensor read, merged and encoded again, nothing
 * written; the error path only.
 */
async function encodeFaultsInTensor(
  prepared: PreparedMerge, unit: WorkUnit, backend: MergeBackend, signal?: AbortSignal, scaled?: ScaledFp8Output, importance?: RowWeights,
): Promise<EncodeTally> {
  const a = unit.action;
  const again = async (action: Action, tally: EncodeTally) => {
    const u = { ...unit, action };
    const input = await readUnit(prepared, u, (bytes) => new Uint8Array(bytes));
    await computeUnit(prepared, u, input, backend, new CopiedNonFinite(), signal, scaled, importance, tally);
  };
  if (a.kind === 'bias') {
    const tally = new EncodeTally(a.bias.length);
    await again(a, tally);
    return tally;
  }
  if (a.kind === 'copy') return new EncodeTally(1);
  const [rows, cols, block] = a.kind === 'update' ? [a.update.rows, a.update.cols, a.update.rowBlock ?? 1]
    : a.kind === 'replace' ? [...rowsAndCols(a.replacement.shape), a.replacement.rowBlock ?? 1]
    : [a.rowSet.shape[0], a.rowSet.shape[1], 1];
  const tally = new EncodeTally(cols, expertsOf(unit.tensor));
  const step = wholeRuns(a.rowCount, block);
  for (const [rowStart, rowCount] of pieces(rows, step)) {
    throwIfAborted(signal);
    await again({ ...a, rowStart, rowCount }, tally);
  }
  return tally;
}

/** A stack of experts' rows (E, out, in), where the base tensor is one: messages name its rows by expert and row. */
function expertsOf(t: Pick<BaseTensor, 'name' | 'shape'> & Partial<Pick<BaseTensor, 'storedShape' | 'experts'>>): ExpertRows | undefined {
  if (t.experts) return { rows: t.shape[0] / t.experts, cols: t.shape[1] };
  return expertRowsOf(t.name, t.storedShape ?? t.shape);
}

/**
 * A copied tensor's stored rows (of its last dimension, whole blocks), for a conversion's refusal
 * to read it again and count over all of them; about `chunkBytes` a read.
 */
function copiedRows(prepared: PreparedMerge, unit: WorkUnit, chunkBytes: number): TensorRows {
  const { name, shape, byteLength } = unit.tensor;
  const cols = shape.length ? shape[shape.length - 1] : 1;
  const rows = cols ? product(shape) / cols : 0;
  const rowBytes = rows ? byteLength / rows : byteLength;
  return {
    rows, cols, rowsPerRead: rowsPerSlab(Math.max(chunkBytes, DEFAULT_SLAB_BYTES), rowBytes), experts: expertsOf(unit.tensor),
    read: (rowStart, rowCount) => prepared.base.readPart(name, rowStart * rowBytes, rowCount * rowBytes),
  };
}

/** A unit's input; slabs and copied chunks are read into `take`'s buffers where the source can. */
async function readUnit(prepared: PreparedMerge, unit: WorkUnit, take: (bytes: number) => Uint8Array, decodeOn?: RowDecodeRunner): Promise<Uint8Array> {
  const { base } = prepared;
  const a = unit.action;
  switch (a.kind) {
    case 'update': {
      const start = updateStart(prepared, unit.tensor.storedType, a.update, decodeOn);
      await a.steps(); // read the factors (and run any norm pass) before the first slab
      return readStartRows(start, unit.tensor.name, a.rowStart, a.rowCount, a.update.cols, take);
    }
    case 'rows': {
      const start = startRows(prepared, unit.tensor.storedType, a.rowSet.source, decodeOn);
      await a.values();
      return readStartRows(start, unit.tensor.name, a.rowStart, a.rowCount, a.rowSet.shape[1]);
    }
    case 'bias':
      return a.bias.source ? a.bias.source.file.read(a.bias.source.tensor) : base.read(unit.tensor.name);
    case 'replace': {
      const { file, tensor, shape } = a.replacement;
      const rowBytes = rowsAndCols(shape)[1] * DTYPE_BYTES[tensor.dtype];
      return file.readPart(tensor, a.rowStart * rowBytes, a.rowCount * rowBytes);
    }
    case 'copy':
      // A dequantized view's weight that no adapter changes (bitsandbytes) is decoded on the backend's threads too.
      return base.readPart(unit.tensor.name, a.start, a.length, take(a.length), decodeOn);
  }
}

async function computeUnit(
  prepared: PreparedMerge, unit: WorkUnit, input: Uint8Array, backend: MergeBackend, copiedNonFinite: CopiedNonFinite, signal?: AbortSignal,
  scaled?: ScaledFp8Output, importance?: RowWeights, tally?: EncodeTally,
): Promise<Uint8Array> {
  const format = prepared.base.format;
  const a = unit.action;
  const name = unit.tensor.name;
  const inType = unit.tensor.storedType;
  const outDtype = format.engineDtype(unit.outType);
  /** The blocks of rows from `rowStart` on, for a tally of their faults. */
  const encoder = blockEncoder(format, unit.outType, a.kind !== 'bias' ? importance : undefined, backend, signal);
  /**
   * The faults of the whole tensor's blocks, merged and encoded again slab by slab (the error
   * path only: the slab met need be neither the first nor the only one).
   */
  const wholeTally = async (values: Uint8Array, rowStart: number): Promise<EncodeTally> => {
    const whole = await encodeFaultsInTensor(prepared, unit, backend, signal, scaled, importance);
    if (!whole.any) await whole.add(f32View(values), rowStart, encoder, signal);
    return whole;
  };
  /** Engine output (the tensor's rows from `rowStart` on) → stored bytes; block types are checked for scales that overflowed. */
  const encode = async (values: Uint8Array, rowStart?: number) => {
    if (tally) {
      // Counting the whole tensor's faults (encodeFaultsInTensor): nothing is written.
      await tally.add(f32View(values), rowStart ?? 0, encoder, signal);
      return new Uint8Array(0);
    }
    const weighted = importance && rowStart !== undefined ? { rows: importance, rowStart } : undefined;
    const input = () => f32View(values);
    const faults = (bytes: Uint8Array) => {
      const zeroed = format.zeroedInBlocks?.(unit.outType, bytes, input());
      return { nonFinite: format.nonFiniteInBlocks?.(unit.outType, bytes)?.count, zeroed };
    };
    /** Blocks of nonzero values written with every scale 0 (weights all 0 over a block, in current ggml). */
    const silenced = (bytes: Uint8Array) => format.zeroedInBlocks?.(unit.outType, bytes, input(), Number.MIN_VALUE) ?? 0;
    /**
     * The weighted quantizer failed (NaN or Inf scales, zeroed blocks, or ggml's abort): where the
     * same values quantize cleanly without the weights, the importance matrix is the cause and is
     * named (ggml's quantizers divide by sums of the weights: 0 where a block's weights are all 0,
     * Inf where they are huge); llama-quantize's check of its output (ggml_validate_row_data)
     * stops on the same blocks. Current ggml (make_qp_quants since b466b4d) writes zero scales
     * where the weights are all 0, not NaN, and llama-quantize then writes a block of zeros for
     * values that are not: `silencedWeighted` counts those blocks, refused unless the values give
     * as many without the weights.
     */
    const blameImportance = async (rows: RowWeights, cause?: unknown, silencedWeighted?: number): Promise<void> => {
      let plain: Uint8Array;
      try {
        plain = await format.encodeRows(unit.outType, values, backend, signal);
      } catch {
        return; // the values themselves are the problem
      }
      const { nonFinite, zeroed } = faults(plain);
      if (nonFinite || zeroed) return;
      if (silencedWeighted !== undefined && silenced(plain) >= silencedWeighted) return;
      throw new MergeError(
        'NON_FINITE',
        `importance matrix ${rows.file}: tensor "${name}" quantized to ${unit.outType} with its weights comes out NaN, Inf or zeroed `
          + '(weights all 0 over a block, or too small or too large for f32), though it quantizes cleanly without them; '
          + (silencedWeighted === undefined
            ? 'llama-quantize --imatrix stops on it too ("quantized data validation failed")'
            : 'current llama-quantize --imatrix writes such blocks as zeros, older builds stopped on them')
          + ': make the importance matrix again, or leave out --imatrix',
        cause === undefined ? undefined : { cause },
      );
    };
    let out: Uint8Array;
    try {
      out = await format.encodeRows(unit.outType, values, backend, signal, weighted);
    } catch (e) {
      if (weighted && isMergeError(e) && e.code === 'NON_FINITE') await blameImportance(weighted.rows, e);
      // A quantizer's own refusal (ggml's IQ3 search overflowing) knows no tensor: it is named
      // here, with how many of its rows the quantizer stops on and which.
      if (isMergeError(e) && e.code === 'NON_FINITE') {
        checkEncodedBlocks(unit.file, name, unit.outType, await wholeTally(values, rowStart ?? 0));
        throw new MergeError('NON_FINITE', `${unit.file}: tensor "${name}": ${e.message}`, { cause: e });
      }
      throw e;
    }
    if (out !== values) {
      const { nonFinite, zeroed } = faults(out);
      if (weighted && (nonFinite || zeroed)) await blameImportance(weighted.rows);
      const quiet = weighted ? silenced(out) : 0;
      if (weighted && quiet) await blameImportance(weighted.rows, undefined, quiet);
      if (nonFinite || zeroed) checkEncodedBlocks(unit.file, name, unit.outType, await wholeTally(values, rowStart ?? 0));
      // Re-encoded (a GGML block type): the engine's output is read no more, so the backend may
      // reuse it (the write below only recycles what is written).
      backend.recycle?.(values);
    }
    return out;
  };
  switch (a.kind) {
    case 'update': {
      const { update, rowStart, rowCount } = a;
      // The whole tensor's NaN/Inf, once a slab shows some (the error path only): the refusal names its first row and count.
      const inTensor = () => nonFiniteInTensor(prepared, unit.tensor.name, inType, update, rowCount, backend, signal);
      if (scaled?.handles(update.baseKey)) {
        const steps = async (r0: number, n: number) => slabSteps(await a.steps(), r0, n);
        const readCodes = (r0: number, n: number) => readStartRows(updateStart(prepared, inType, update), unit.tensor.name, r0, n, update.cols);
        return scaled.mergeSlab({ file: unit.file, update, rowStart, rowCount, codes: input, steps, inTensor, readCodes, experts: expertsOf(unit.tensor) }, backend, signal);
      }
      // Blocks with a NaN or infinite scale, told by their scales (whatever a device's decoder makes of them).
      const broken = update.source ? undefined : format.nonFiniteInBlocks?.(inType, input);
      if (broken?.count) throw baseHoldsNonFinite(unit.file, update.baseKey, await inTensor(), update.cols, 0, expertsOf(unit.tensor));
      const decoded = await updateStart(prepared, inType, update).decode(input, backend, signal);
      const op = slabOp({
        name: update.baseKey, rows: update.rows, cols: update.cols, layout: update.layout, base: decoded, outDtype, rowStart, rowCount,
      }, await slabSteps(await a.steps(), rowStart, rowCount));
      const merged = await backend.merge(op, signal).catch(async (e: unknown) => {
        const overflowInTensor = () => overflowInMerged(prepared, unit.tensor.name, inType, update, outDtype, rowCount, () => a.steps(), backend, signal);
        throw await explainNonFinite(e, { file: unit.file, update, base: decoded.data, op, inTensor, overflowInTensor, experts: expertsOf(unit.tensor) });
      });
      return encode(keepUnreachedRows(op, merged, reachedRows(update)), rowStart);
    }
    case 'bias': {
      const source = a.bias.source?.tensor;
      const decoded = source ? { dtype: source.dtype as FloatDType, data: input } : await format.decodeRows(inType, input, backend, signal);
      const op = await loadBiasUpdate(a.bias, decoded, outDtype, weightValues(prepared));
      const merged = await backend.merge(op, signal).catch((e: unknown) => {
        throw explainBiasNonFinite(e, unit.file, a.bias, decoded.data, op);
      });
      return encode(merged);
    }
    case 'replace': {
      const out = convertReplacement(a.replacement, input, outDtype, a.rowStart);
      await checkReplacement(a.replacement, input, out, outDtype);
      return encode(out, a.rowStart);
    }
    case 'rows': {
      const { rowSet, rowStart } = a;
      const start = await startRows(prepared, inType, rowSet.source).decode(input, backend, signal);
      const values = await a.values();
      const out = setRows(start.data, start.dtype, rowStart, rowSet.shape[1], values, outDtype);
      await checkRowSet(unit.file, rowSet, rowStart, start, values, out, outDtype, copiedNonFinite);
      return encode(out, rowStart);
    }
    case 'copy': {
      // The bytes stay as they are; NaN/Inf the base already holds are reported, not refused.
      if (scaled?.rewritesScale(name)) return scaled.scaleChunk(name, a.start, a.length);
      if (isDType(inType)) copiedNonFinite.scan(unit.file, name, input, inType);
      else copiedNonFinite.add(unit.file, name, format.nonFiniteInBlocks?.(inType, input)?.count ?? 0);
      if (inType === unit.outType) return input;
      let out: Uint8Array;
      try {
        const wholeTensor = () => nonFiniteInCopied(prepared, unit, a.length, backend, signal);
        out = await format.convert(input, inType, unit.outType, backend, signal, wholeTensor, copiedRows(prepared, unit, a.length));
      } catch (e) {
        if (e instanceof MergeError) throw new MergeError(e.code, `tensor "${name}": ${e.message}`, { cause: e });
        throw e;
      }
      if (isFloatDType(inType) && isFloatDType(unit.outType)) checkConverted(unit.file, name, input, inType, out, unit.outType);
      return out;
    }
  }
}

/** What went into this file, kept in its metadata so the merge can be traced and repeated. */
function provenanceMetadata(prepared: PreparedMerge, outDtype: string | undefined): Record<string, string> {
  const adapters = prepared.adapters.map(({ adapter, weight }, i) => {
    const scales = new Set<number>();
    for (const u of prepared.plan.updates) for (const t of u.terms) if (t.adapterIndex === i) scales.add(t.module.scale);
    return {
      name: adapter.name.split(/[\\/]/).pop(),
      format: adapter.format,
      weight,
      modules: adapter.modules.length,
      scales: [...scales].sort((x, y) => x - y),
    };
  });
  const leftOut = prepared.plan.leftOut.map((m) => ({ adapter: adapters[m.adapterIndex].name, module: m.module, reason: m.reason }));
  return {
    'loramerge.adapters': JSON.stringify(adapters),
    ...(leftOut.length ? { 'loramerge.left_out': JSON.stringify(leftOut) } : {}),
    'loramerge.rule': "W' = W + sum(weight * scale * B @ A), computed from the decoded values and rounded once to the output dtype: f16/bf16/fp8 correctly rounded (equal to the exact result rounded to nearest even), f32 within 1 ulp",
    ...(outDtype ? { 'loramerge.dtype': outDtype } : {}),
  };
}

/** The row weights an importance matrix gives the tensors written; refused for a format that takes none. */
function matchImportance(format: ContainerFormat, importance: ImportanceMatrix, tensors: ImportanceTarget[]): ReadonlyMap<string, RowWeights> {
  if (!format.importanceRows) throw new MergeError('BAD_ARGUMENT', `importance matrix ${importance.file}: only a GGUF base is quantized with an importance matrix, not a ${format.name} one`);
  return format.importanceRows(importance, tensors);
}
