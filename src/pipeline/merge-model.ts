/**
 * File to file: streams every base tensor through the plan to the backend and into the output,
 * shard by shard, in the base's own order. Large tensors go in row slabs, so memory is bounded by
 * the slab size, not by the model or its largest tensor. Any failure or cancellation aborts the
 * output target, which removes everything written.
 */
import { DTYPE_BYTES, decodeToF32, encodeFromF32, isFloatDType, type DType, type FloatDType } from '../dtype.js';
import type { MergeBackend } from '../engine/merge-op.js';
import { MergeError, throwIfAborted } from '../errors.js';
import type { BaseTensor } from '../formats/base-model.js';
import { createSafetensorsWriter, type SafetensorsWriter } from '../formats/safetensors-writer.js';
import { createVerbatimWriter } from '../formats/verbatim-writer.js';
import { copyInputFile } from '../io/copy-file.js';
import type { OutputTarget } from '../io/types.js';
import { loadBiasUpdate, loadReplacement, loadUpdateSteps } from '../plan/load-op.js';
import { slabOp, slabSteps, type LoadedStep } from '../plan/load-steps.js';
import { resolveStreamedNorms } from './column-norm-pass.js';
import { assertPlanValid, type BiasUpdate, type PlannedReplacement, type TensorUpdate } from '../plan/merge-plan.js';
import type { PreparedMerge } from './prepare-merge.js';
import type { ProgressListener } from './progress.js';
import { runPipelined } from './work-queue.js';
import { checkConverted, checkReplacement, CopiedNonFinite, explainBiasNonFinite, explainNonFinite } from './value-checks.js';

/** Options of {@link mergeModel}. */
export interface MergeModelOptions {
  prepared: PreparedMerge;
  output: OutputTarget;
  backend: MergeBackend;
  /** Every float tensor is written in this dtype; default: each tensor keeps the base's dtype. */
  outDtype?: FloatDType;
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
  | { kind: 'update'; update: TensorUpdate; rowStart: number; rowCount: number; steps: () => Promise<LoadedStep[]> }
  | { kind: 'bias'; bias: BiasUpdate }
  | { kind: 'replace'; replacement: PlannedReplacement }
  | { kind: 'copy'; start: number; length: number };

interface WorkUnit {
  shardIndex: number;
  /** The shard's file, for messages. */
  file: string;
  tensor: BaseTensor;
  outDtype: DType;
  action: Action;
  /** Output bytes this unit produces. */
  outBytes: number;
}

/** Streams the prepared merge into `output` on `backend`, tensor by tensor in row slabs; on failure or cancellation the output is aborted and nothing is left. */
export async function mergeModel(options: MergeModelOptions): Promise<MergeResult> {
  const { prepared, output, backend, signal, onProgress } = options;
  const { base, plan } = prepared;
  const startedAt = performance.now();
  assertPlanValid(plan);
  throwIfAborted(signal);
  const scaled = [...(base.valueScales?.keys() ?? [])].find((k) => options.outDtype && base.tensors.get(k)!.dtype !== options.outDtype);
  if (scaled) {
    // The stored values are W / scale_weight: another dtype would need the scales redone too.
    const stored = base.tensors.get(scaled)!.dtype;
    throw new MergeError('BAD_ARGUMENT', `${base.name}: a scaled fp8 checkpoint (scale_weight per tensor) keeps its weights in ${stored}; leave out the output dtype or choose ${stored}`);
  }

  const slabBytes = Math.max(options.slabBytes ?? DEFAULT_SLAB_BYTES, 4096);
  const outDtypeOf = (dtype: DType): DType => (options.outDtype && isFloatDType(dtype) ? options.outDtype : dtype);
  const updates = new Map(plan.updates.map((u) => [u.baseKey, u]));
  const biases = new Map(plan.biasUpdates.map((b) => [b.baseKey, b]));
  const replacements = new Map(plan.replacements.map((r) => [r.baseKey, r]));

  const units: WorkUnit[] = [];
  const shardEntries = base.shards.map((shard) =>
    shard.file.tensors.map((entry) => ({ name: entry.name, dtype: outDtypeOf(entry.dtype), shape: entry.shape })),
  );
  // A pipeline component nothing changes is written byte for byte as it was ("mirrored"): its
  // tensors still stream through the copy checks, but its header is the source's own.
  const mirrored = base.shards.map((shard) => shard.mirrorIfUnchanged && shard.file.tensors.every((entry) => {
    const key = shard.keyPrefix + entry.name;
    return !updates.has(key) && !biases.has(key) && !replacements.has(key) && outDtypeOf(entry.dtype) === entry.dtype;
  }));
  base.shards.forEach((shard, shardIndex) => {
    for (const entry of shard.file.tensors) {
      const key = shard.keyPrefix + entry.name;
      const tensor = base.tensors.get(key)!;
      const outDtype = outDtypeOf(entry.dtype);
      const elements = entry.byteLength / DTYPE_BYTES[entry.dtype];
      const push = (action: Action, outElements: number) =>
        units.push({ shardIndex, file: shard.file.source.name, tensor, outDtype, action, outBytes: outElements * DTYPE_BYTES[outDtype] });
      const update = updates.get(key);
      const bias = biases.get(key);
      const replacement = replacements.get(key);
      if (update) {
        // Factors are read once per tensor, shared by its slabs; DoRA norms across rows take a
        // pass over the slabs of their own first (column-norm-pass.ts).
        const rowBytes = update.cols * DTYPE_BYTES[entry.dtype];
        const block = update.rowBlock;
        const rowsPerSlab = Math.max(block, Math.floor(slabBytes / Math.max(rowBytes, 1) / block) * block);
        let steps: Promise<LoadedStep[]> | undefined;
        const loadOnce = () => (steps ??= loadUpdateSteps(update).then((loaded) => resolveStreamedNorms({
          name: entry.name, rows: update.rows, cols: update.cols, layout: update.layout, dtype: update.dtype,
          readRows: (r0, n) => base.readPart(entry.name, r0 * rowBytes, n * rowBytes),
        }, loaded, rowsPerSlab, backend, signal)));
        for (const [rowStart, rowCount] of pieces(update.rows, rowsPerSlab)) {
          push({ kind: 'update', update, rowStart, rowCount, steps: loadOnce }, rowCount * update.cols);
        }
      } else if (bias) {
        push({ kind: 'bias', bias }, elements);
      } else if (replacement) {
        push({ kind: 'replace', replacement }, elements);
      } else {
        // Copies go in chunks of whole elements; converted ones must also stay 4-byte aligned.
        const unit = Math.max(DTYPE_BYTES[entry.dtype], 4);
        const chunk = Math.max(unit, Math.floor(slabBytes / unit) * unit);
        for (const [start, length] of pieces(entry.byteLength, chunk)) {
          push({ kind: 'copy', start, length }, length / DTYPE_BYTES[entry.dtype]);
        }
      }
    }
  });

  const provenance = provenanceMetadata(prepared, options.outDtype);
  const bytesTotal = units.reduce((sum, u) => sum + u.outBytes, 0);
  const tensorsTotal = base.tensors.size;
  let bytesDone = 0;
  let tensorsDone = 0;
  let warnings: string[] = [];
  const writers: (SafetensorsWriter | undefined)[] = [];
  let open: SafetensorsWriter | undefined;
  const files: string[] = [];
  /** Finishes the open shard and opens every written shard up to `shardIndex` (empty ones get just a header). */
  const advanceTo = async (shardIndex: number) => {
    while (writers.length <= shardIndex) {
      if (open) await open.finish();
      open = undefined;
      const i = writers.length;
      const shard = base.shards[i];
      const metadata = { ...shard.file.metadata, ...provenance };
      const sink = await output.createFile(shard.path);
      open = mirrored[i] ? await createVerbatimWriter(sink, shard.file) : await createSafetensorsWriter(sink, shardEntries[i], metadata);
      writers.push(open);
      files.push(shard.path);
    }
  };
  const copiedNonFinite = new CopiedNonFinite();
  const emit = (phase: 'merge' | 'done', tensor?: string) =>
    onProgress?.({ phase, tensorsDone, tensorsTotal, bytesDone, bytesTotal, tensor });

  try {
    emit('merge');
    await runPipelined<WorkUnit, Uint8Array, Uint8Array>(
      units,
      {
        read: (unit) => readUnit(prepared, unit),
        compute: (unit, input) => computeUnit(unit, input, backend, copiedNonFinite, signal),
        write: async (unit, bytes) => {
          await advanceTo(unit.shardIndex);
          await writers[unit.shardIndex]!.writeChunk(unit.tensor.entry.name, bytes);
          bytesDone += bytes.byteLength;
          if (isLastUnitOfTensor(unit)) tensorsDone++;
          emit('merge', unit.tensor.name);
        },
      },
      signal,
    );
    warnings = copiedNonFinite.warnings();
    warnings.forEach((w) => options.onWarning?.(w));
    await advanceTo(base.shards.length - 1);
    await open?.finish();
    throwIfAborted(signal);
    for (const { path, index, shards } of base.indexes) {
      const indices = shards.map((p) => base.shards.findIndex((s) => s.path === p));
      if (indices.every((i) => mirrored[i])) {
        await copyInputFile(prepared.baseFiles, path, output);
      } else {
        const totalSize = indices.reduce((sum, i) => sum + writers[i]!.entries.reduce((s, e) => s + e.byteLength, 0), 0);
        const rewritten = { ...index, metadata: { ...(index.metadata ?? {}), total_size: totalSize } };
        const sink = await output.createFile(path);
        await sink.write(new TextEncoder().encode(JSON.stringify(rewritten, null, 2) + '\n'));
        await sink.close();
      }
      files.push(path);
    }
    for (const path of base.otherFiles) {
      throwIfAborted(signal);
      await copyInputFile(prepared.baseFiles, path, output);
      files.push(path);
    }
    throwIfAborted(signal);
    await output.commit();
  } catch (e) {
    await output.abort().catch(() => {});
    throw e;
  }
  emit('done');
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

function isLastUnitOfTensor(unit: WorkUnit): boolean {
  const a = unit.action;
  if (a.kind === 'update') return a.rowStart + a.rowCount >= a.update.rows;
  if (a.kind === 'copy') return a.start + a.length >= unit.tensor.entry.byteLength;
  return true;
}

async function readUnit(prepared: PreparedMerge, unit: WorkUnit): Promise<Uint8Array> {
  const { base } = prepared;
  const a = unit.action;
  switch (a.kind) {
    case 'update': {
      const rowBytes = a.update.cols * DTYPE_BYTES[a.update.dtype];
      await a.steps(); // read the factors (and run any norm pass) before the first slab
      return base.readPart(unit.tensor.name, a.rowStart * rowBytes, a.rowCount * rowBytes);
    }
    case 'bias':
      return base.read(unit.tensor.name);
    case 'replace':
      return new Uint8Array(0); // read in compute: loadReplacement converts as it reads
    case 'copy':
      return base.readPart(unit.tensor.name, a.start, a.length);
  }
}

async function computeUnit(
  unit: WorkUnit, input: Uint8Array, backend: MergeBackend, copiedNonFinite: CopiedNonFinite, signal?: AbortSignal,
): Promise<Uint8Array> {
  const a = unit.action;
  const name = unit.tensor.name;
  switch (a.kind) {
    case 'update': {
      const { update, rowStart, rowCount } = a;
      const op = slabOp({
        name: update.baseKey, rows: update.rows, cols: update.cols, layout: update.layout,
        base: { dtype: update.dtype, data: input }, outDtype: unit.outDtype as FloatDType, rowStart, rowCount,
      }, await slabSteps(await a.steps(), rowStart, rowCount));
      return backend.merge(op, signal).catch(async (e: unknown) => {
        throw await explainNonFinite(e, { file: unit.file, update, base: input, op });
      });
    }
    case 'bias': {
      const dtype = unit.tensor.dtype as FloatDType;
      const op = await loadBiasUpdate(a.bias, { dtype, data: input }, unit.outDtype as FloatDType);
      return backend.merge(op, signal).catch((e: unknown) => {
        throw explainBiasNonFinite(e, unit.file, a.bias, input, op);
      });
    }
    case 'replace': {
      const out = await loadReplacement(a.replacement, unit.outDtype as FloatDType);
      await checkReplacement(a.replacement, out, unit.outDtype as FloatDType, () => a.replacement.file.read(a.replacement.tensor));
      return out;
    }
    case 'copy': {
      const inDtype = unit.tensor.dtype;
      copiedNonFinite.scan(unit.file, name, input, inDtype); // the bytes stay as they are; the user is told
      if (inDtype === unit.outDtype) return input;
      if (!isFloatDType(inDtype) || !isFloatDType(unit.outDtype)) {
        throw new MergeError('BAD_ARGUMENT', `tensor "${name}": cannot convert ${inDtype} to ${unit.outDtype}`);
      }
      const out = encodeFromF32(decodeToF32(input, inDtype), unit.outDtype);
      checkConverted(unit.file, name, input, inDtype, out, unit.outDtype);
      return out;
    }
  }
}

/** What went into this file, kept in its `__metadata__` so the merge can be traced and repeated. */
function provenanceMetadata(prepared: PreparedMerge, outDtype: FloatDType | undefined): Record<string, string> {
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
    'loramerge.rule': "W' = W + sum(weight * scale * B @ A), f32 accumulation, rounded once",
    ...(outDtype ? { 'loramerge.dtype': outDtype } : {}),
  };
}
