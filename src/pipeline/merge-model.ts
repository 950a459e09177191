/**
 * File to file: streams every base tensor through the plan to the backend and into the output,
 * shard by shard, in the base's own order. Large tensors go in row slabs, so memory is bounded by
 * the slab size, not by the model or its largest tensor. Any failure or cancellation aborts the
 * output target, which removes everything written. The base's container (safetensors, GGUF)
 * decides each tensor's output type, decodes and encodes rows, and writes the files.
 */
import type { LowRankTerm, MergeBackend } from '../engine/merge-op.js';
import { MergeError, throwIfAborted } from '../errors.js';
import type { BaseTensor } from '../formats/base-model.js';
import type { ContainerFormat, StoredShard, StoredTensor, TensorFileWriter } from '../formats/container.js';
import { copyInputFile } from '../io/copy-file.js';
import type { OutputTarget } from '../io/types.js';
import { loadBiasUpdate, loadMergeOp, loadReplacement, loadTerms } from '../plan/load-op.js';
import { assertPlanValid, type BiasUpdate, type PlannedReplacement, type TensorUpdate } from '../plan/merge-plan.js';
import type { PreparedMerge } from './prepare-merge.js';
import type { ProgressListener } from './progress.js';
import { runPipelined } from './work-queue.js';

export interface MergeModelOptions {
  prepared: PreparedMerge;
  output: OutputTarget;
  backend: MergeBackend;
  /**
   * Output type (`f16`, `bf16`, and for GGUF `q8_0`, `q4_k`…; checked by the base's container).
   * Safetensors: every float tensor is written in it. GGUF: every merged tensor of two or more
   * dimensions. Default: each tensor keeps the base's type.
   */
  outDtype?: string;
  signal?: AbortSignal;
  onProgress?: ProgressListener;
  /** Upper bound on the base bytes of one unit of work (a row slab or a copied chunk). */
  slabBytes?: number;
}

export interface MergeResult {
  /** Output files written, relative paths. */
  files: string[];
  tensors: number;
  tensorsUpdated: number;
  bytesWritten: number;
  seconds: number;
  backend: string;
}

/**
 * Up to three units are alive at once (one read ahead, one computing, one being written), and a
 * backend holds a few temporaries per unit (f32 decode, output, GPU staging): peak memory is several
 * times this. Measured on a 0.97 GB f16 model (bench/stage-times.mjs): 4 MiB keeps peak RSS under a
 * quarter of the model on both backends at the same speed as 8–32 MiB, which cost 50–160 MB more.
 */
const DEFAULT_SLAB_BYTES = 4 * 1024 * 1024;

type Action =
  | { kind: 'update'; update: TensorUpdate; rowStart: number; rowCount: number; terms: () => Promise<LowRankTerm[]> }
  | { kind: 'bias'; bias: BiasUpdate }
  | { kind: 'replace'; replacement: PlannedReplacement }
  | { kind: 'copy'; start: number; length: number };

interface WorkUnit {
  shardIndex: number;
  tensor: BaseTensor;
  /** The type the output file stores this tensor in. */
  outType: string;
  action: Action;
  /** Output bytes this unit produces. */
  outBytes: number;
}

export async function mergeModel(options: MergeModelOptions): Promise<MergeResult> {
  const { prepared, output, backend, signal, onProgress } = options;
  const { base, plan } = prepared;
  const startedAt = performance.now();
  assertPlanValid(plan);
  throwIfAborted(signal);

  const slabBytes = Math.max(options.slabBytes ?? DEFAULT_SLAB_BYTES, 4096);
  const format = base.format;
  const requested = options.outDtype === undefined ? undefined : format.parseOutputType(options.outDtype);
  const updates = new Map(plan.updates.map((u) => [u.baseKey, u]));
  const biases = new Map(plan.biasUpdates.map((b) => [b.baseKey, b]));
  const replacements = new Map(plan.replacements.map((r) => [r.baseKey, r]));
  const changed = (name: string) => updates.has(name) || biases.has(name) || replacements.has(name);
  const outTypeOf = (stored: StoredTensor) => format.outputType(stored, changed(stored.name), requested);
  checkOutputTypes(base.shards, format, outTypeOf);

  const units: WorkUnit[] = [];
  const outShards: StoredShard[] = base.shards.map((shard) => ({
    path: shard.path,
    tensors: shard.tensors.map((t) => {
      const type = outTypeOf(t);
      return { name: t.name, type, shape: t.shape, byteLength: type === t.type ? t.byteLength : format.byteLength(type, product(t.shape)) };
    }),
  }));
  base.shards.forEach((shard, shardIndex) => {
    for (const stored of shard.tensors) {
      const tensor = base.tensors.get(stored.name)!;
      const outType = outTypeOf(stored);
      const push = (action: Action, outBytes: number) => units.push({ shardIndex, tensor, outType, action, outBytes });
      const update = updates.get(stored.name);
      const bias = biases.get(stored.name);
      const replacement = replacements.get(stored.name);
      if (update) {
        // Factors are read once per tensor, shared by its slabs.
        let terms: Promise<LowRankTerm[]> | undefined;
        const loadOnce = () => (terms ??= loadTerms(update));
        const rowBytes = format.byteLength(stored.type, update.cols);
        const rowsPerSlab = slabbable(update) ? Math.max(1, Math.floor(slabBytes / Math.max(rowBytes, 1))) : update.rows;
        for (const [rowStart, rowCount] of pieces(update.rows, rowsPerSlab)) {
          push({ kind: 'update', update, rowStart, rowCount, terms: loadOnce }, format.byteLength(outType, rowCount * update.cols));
        }
      } else if (bias) {
        push({ kind: 'bias', bias }, format.byteLength(outType, bias.length));
      } else if (replacement) {
        push({ kind: 'replace', replacement }, format.byteLength(outType, product(stored.shape)));
      } else {
        // Copies go in chunks of whole elements (or blocks).
        const unit = format.copyUnit(stored.type, outType);
        const chunk = Math.max(unit, Math.floor(slabBytes / unit) * unit);
        for (const [start, length] of pieces(stored.byteLength, chunk)) {
          const outBytes = outType === stored.type ? length : format.byteLength(outType, length / format.byteLength(stored.type, 1));
          push({ kind: 'copy', start, length }, outBytes);
        }
      }
    }
  });

  const provenance = provenanceMetadata(prepared, requested);
  const bytesTotal = units.reduce((sum, u) => sum + u.outBytes, 0);
  const tensorsTotal = base.tensors.size;
  let bytesDone = 0;
  let tensorsDone = 0;
  const writers: TensorFileWriter[] = [];
  const files: string[] = [];
  /** Finishes the open shard and opens every shard up to `shardIndex` (empty ones get just a header). */
  const advanceTo = async (shardIndex: number) => {
    while (writers.length <= shardIndex) {
      const open = writers[writers.length - 1];
      if (open) await open.finish();
      const shard = outShards[writers.length];
      writers.push(await format.createWriter(await output.createFile(shard.path), writers.length, outShards, provenance));
      files.push(shard.path);
    }
  };
  const emit = (phase: 'merge' | 'done', tensor?: string) =>
    onProgress?.({ phase, tensorsDone, tensorsTotal, bytesDone, bytesTotal, tensor });

  try {
    emit('merge');
    await runPipelined<WorkUnit, Uint8Array, Uint8Array>(
      units,
      {
        read: (unit) => readUnit(prepared, unit),
        compute: (unit, input) => computeUnit(unit, input, format, backend, signal),
        write: async (unit, bytes) => {
          await advanceTo(unit.shardIndex);
          await writers[unit.shardIndex].writeChunk(unit.tensor.name, bytes);
          bytesDone += bytes.byteLength;
          if (isLastUnitOfTensor(unit)) tensorsDone++;
          emit('merge', unit.tensor.name);
        },
      },
      signal,
    );
    await advanceTo(base.shards.length - 1);
    await writers[writers.length - 1]?.finish();
    throwIfAborted(signal);
    files.push(...(await format.writeSidecars(output, outShards)));
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

/** DoRA norms that run across stored rows need the whole matrix at once; everything else slabs. */
function slabbable(update: TensorUpdate): boolean {
  if (!update.dora) return true;
  return (update.dora.axis === 'out') === (update.layout === 'out-in');
}

function isLastUnitOfTensor(unit: WorkUnit): boolean {
  const a = unit.action;
  if (a.kind === 'update') return a.rowStart + a.rowCount >= a.update.rows;
  if (a.kind === 'copy') return a.start + a.length >= unit.tensor.byteLength;
  return true;
}

/** Every tensor's output type must fit it (GGUF block sizes); checked before any work. */
function checkOutputTypes(shards: readonly StoredShard[], format: ContainerFormat, outTypeOf: (t: StoredTensor) => string): void {
  const problems: string[] = [];
  for (const shard of shards) {
    for (const t of shard.tensors) {
      const type = outTypeOf(t);
      const why = type === t.type ? undefined : format.checkOutputType(t, type);
      if (why) problems.push(`tensor "${t.name}": ${why}`);
    }
  }
  if (problems.length > 0) {
    throw new MergeError('BAD_ARGUMENT', problems.length === 1 ? problems[0] : `${problems[0]} (and ${problems.length - 1} more tensors)`);
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

async function readUnit(prepared: PreparedMerge, unit: WorkUnit): Promise<Uint8Array> {
  const { base } = prepared;
  const a = unit.action;
  switch (a.kind) {
    case 'update': {
      const rowBytes = base.format.byteLength(unit.tensor.storedType, a.update.cols);
      await a.terms(); // start reading the factors together with the first slab
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

async function computeUnit(unit: WorkUnit, input: Uint8Array, format: ContainerFormat, backend: MergeBackend, signal?: AbortSignal): Promise<Uint8Array> {
  const a = unit.action;
  const inType = unit.tensor.storedType;
  const outDtype = format.engineDtype(unit.outType);
  switch (a.kind) {
    case 'update': {
      const base = await format.decodeRows(inType, input, backend, signal);
      const op = await loadMergeOp(a.update, base, outDtype, { rowStart: a.rowStart, rowCount: a.rowCount }, await a.terms());
      return format.encodeRows(unit.outType, await backend.merge(op, signal));
    }
    case 'bias': {
      const base = await format.decodeRows(inType, input, backend, signal);
      return format.encodeRows(unit.outType, await backend.merge(await loadBiasUpdate(a.bias, base, outDtype), signal));
    }
    case 'replace':
      return format.encodeRows(unit.outType, await loadReplacement(a.replacement, outDtype));
    case 'copy':
      if (inType === unit.outType) return input;
      try {
        return format.convert(input, inType, unit.outType);
      } catch (e) {
        if (e instanceof MergeError) throw new MergeError(e.code, `tensor "${unit.tensor.name}": ${e.message}`, { cause: e });
        throw e;
      }
  }
}

/** What went into this file, kept in its `__metadata__` so the merge can be traced and repeated. */
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
  return {
    'loramerge.adapters': JSON.stringify(adapters),
    'loramerge.rule': "W' = W + sum(weight * scale * B @ A), f32 accumulation, rounded once",
    ...(outDtype ? { 'loramerge.dtype': outDtype } : {}),
  };
}
