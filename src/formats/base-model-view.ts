/**
 * A safetensors base model seen through a change of its tensor list: some stored tensors decoded
 * into others (a bitsandbytes weight and its statistics become one float tensor), some added (an
 * output head a tied checkpoint leaves out). Everything downstream sees only the view, through the
 * same container seam as any safetensors model: each shard lists the view's tensors, a view tensor
 * is a float tensor like any other (its stored type is its dtype; reads of it go to its own
 * reader), and the index files are rebuilt to map the view's tensors. A shard the view changes is
 * never mirrored byte for byte.
 */
import type { FloatDType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { MergeError } from '../errors.js';
import type { MergePlan } from '../plan/merge-plan.js';
import type { RowDecodeRunner } from './row-decoders.js';
import type { ImportanceMatrix } from './gguf/imatrix.js';
import type { BaseModel, BaseTensor, SafetensorsBaseModel, SafetensorsShard } from './base-model.js';
import type { StoredTensor } from './container.js';
import { safetensorsContainer, type BaseIndexFile } from './safetensors-container.js';

/** A tensor of the view that no file stores as such. */
export interface ViewTensor {
  /** Its key in the base (and, with the shard's key prefix removed, its name in the written file). */
  name: string;
  dtype: FloatDType;
  shape: number[];
  /**
   * The shape it is written in, where the plan sees it otherwise: a stacked expert tensor (E, out,
   * in) seen as its E·out rows (E·out, in), so that an expert's update is a run of rows.
   */
  storedShape?: number[];
  /** What it is decoded from (see BaseTensor.decodedFrom). */
  decodedFrom?: string;
  byteLength: number;
  /** The dtype it is written in unless the user asks for one (a dequantized weight: the model's). */
  writeDtype?: FloatDType;
  /**
   * `length` bytes from `start` of the tensor's values in `dtype`, into `into` where the reader can
   * (see ByteSource.read; callers use what is returned); `decodeOn`: where a decoder of
   * row-decoders.ts may run (the CPU backend's threads), for a tensor decoded by one.
   */
  readPart(start: number, length: number, into?: Uint8Array, decodeOn?: RowDecodeRunner): Promise<Uint8Array>;
}

/** A shard of the view: stored tensors kept by key, view tensors in their place, in order. */
export interface ViewShard {
  path: string;
  tensors: readonly (string | ViewTensor)[];
  /** `__metadata__` entries the written shard leaves out (a dequantized file's quantization config). */
  metadataLeftOut?: readonly string[];
}

/** Is this base a safetensors model whose tensor list a view can change? */
export function isSafetensorsModel(base: BaseModel): base is SafetensorsBaseModel {
  return base.format.name === 'safetensors' && 'indexes' in base;
}

/** `inner` seen through `shards`: one {@link ViewShard} per shard of `inner`, listing the view's tensors in order. */
export function baseModelView(inner: SafetensorsBaseModel, shards: readonly ViewShard[]): SafetensorsBaseModel {
  const tensors = new Map<string, BaseTensor>();
  const readers = new Map<string, ViewTensor>();
  const viewShards = shards.map((spec): SafetensorsShard => {
    const original = inner.shards.find((s) => s.path === spec.path);
    if (!original) throw new Error(`view shard ${spec.path} is not a shard of ${inner.name}`);
    const storedByKey = new Map(original.tensors.map((t) => [original.keyPrefix + t.name, t]));
    const stored = spec.tensors.map((t): StoredTensor => {
      if (typeof t === 'string') {
        const kept = inner.tensors.get(t);
        const entry = storedByKey.get(t);
        if (!kept || !entry) throw new Error(`view keeps tensor ${t}, which shard ${spec.path} of ${inner.name} does not hold`);
        tensors.set(t, kept);
        return entry;
      }
      if (!t.name.startsWith(original.keyPrefix)) throw new Error(`view tensor ${t.name} lacks its shard's key prefix ${original.keyPrefix}`);
      tensors.set(t.name, {
        name: t.name, dtype: t.dtype, shape: t.shape, shard: spec.path, storedType: t.dtype, byteLength: t.byteLength,
        ...(t.storedShape ? { storedShape: t.storedShape } : {}), ...(t.decodedFrom ? { decodedFrom: t.decodedFrom } : {}),
      });
      readers.set(t.name, t);
      const entry: StoredTensor = { name: t.name.slice(original.keyPrefix.length), type: t.dtype, shape: t.storedShape ?? t.shape, byteLength: t.byteLength };
      if (t.writeDtype) entry.writeType = t.writeDtype;
      return entry;
    });
    const unchanged = stored.length === original.tensors.length && stored.every((t, i) => t === original.tensors[i])
      && !spec.metadataLeftOut?.some((k) => Object.hasOwn(original.file.metadata, k));
    return {
      path: original.path, sourceName: original.sourceName, keyPrefix: original.keyPrefix, file: original.file,
      mirrorIfUnchanged: original.mirrorIfUnchanged && unchanged, tensors: stored,
    };
  });

  // Each index's weight map is made from the output's shards when it is written (safetensors-container.ts).
  const indexes = inner.indexes;
  const single = inner.index && inner.indexPath !== undefined ? indexes.find((i) => i.path === inner.indexPath) : undefined;
  const metadata = inner.shards.map((s) => {
    const leftOut = shards.find((spec) => spec.path === s.path)?.metadataLeftOut;
    return leftOut ? Object.fromEntries(Object.entries(s.file.metadata).filter(([k]) => !leftOut.includes(k))) : undefined;
  });
  const format = safetensorsContainer(inner.shards.map((s) => s.file), indexes, metadata);

  const readPart = async (name: string, start: number, length: number, into?: Uint8Array, decodeOn?: RowDecodeRunner): Promise<Uint8Array> => {
    const reader = readers.get(name);
    if (!reader) {
      if (!tensors.has(name)) throw new MergeError('NOT_FOUND', `${inner.name}: no tensor "${name}"`);
      return inner.readPart(name, start, length, into, decodeOn);
    }
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > reader.byteLength) {
      throw new RangeError(`bytes ${start}+${length} are outside tensor "${name}" (${reader.byteLength} bytes)`);
    }
    return length === 0 ? new Uint8Array(0) : reader.readPart(start, length, into, decodeOn);
  };
  const view: SafetensorsBaseModel = {
    kind: inner.kind,
    name: inner.name,
    tensors,
    shards: viewShards,
    indexes,
    ...(single ? { indexPath: single.path, index: single.fields } : {}),
    ...(inner.components ? { components: inner.components.map((c) => ({ ...c, keys: c.keys.filter((k) => tensors.has(k)) })) } : {}),
    ...(inner.valueScales ? { valueScales: inner.valueScales } : {}),
    ...(inner.weightlessEncoders ? { weightlessEncoders: inner.weightlessEncoders } : {}),
    ...(inner.combinedPrior ? { combinedPrior: inner.combinedPrior } : {}),
    warnings: inner.warnings,
    ...(inner.planWarnings ? { planWarnings: (plan: MergePlan, dtype?: string, importance?: ImportanceMatrix) => inner.planWarnings!(plan, dtype, importance) } : {}),
    otherFiles: inner.otherFiles,
    format,
    read: (name) => readPart(name, 0, tensors.get(name)?.byteLength ?? 0),
    readPart,
    async readRows(name: string, rowStart: number, rowCount: number): Promise<FloatTensorBytes> {
      const t = tensors.get(name);
      if (!t) throw new MergeError('NOT_FOUND', `${inner.name}: no tensor "${name}"`);
      const rowBytes = t.shape.length === 0 ? t.byteLength : t.byteLength / Math.max(t.shape[0], 1);
      return format.decodeRows(t.storedType, await readPart(name, rowStart * rowBytes, rowCount * rowBytes));
    },
    close: () => inner.close(),
  };
  return view;
}


/**
 * `base` with each stored tensor keyed in `replacing` giving way to its view tensor, in the same
 * place of the same shard, and each stored tensor in `hidden` left out; every other tensor is kept.
 * The view of a quantized base: a dequantized weight stands where one of its stored parts stood,
 * and its other parts (scales, zero points, quant state) are no tensors of the view.
 */
export function viewReplacing(
  base: SafetensorsBaseModel, replacing: ReadonlyMap<string, ViewTensor>, hidden: ReadonlySet<string> = new Set(),
): SafetensorsBaseModel {
  return baseModelView(base, base.shards.map((shard) => ({
    path: shard.path,
    tensors: shard.tensors.flatMap((entry): (string | ViewTensor)[] => {
      const key = shard.keyPrefix + entry.name;
      const view = replacing.get(key);
      if (view) return [view];
      return hidden.has(key) ? [] : [key];
    }),
  })));
}
