/**
 * A base model seen through a change of its tensor list: some stored tensors decoded into others
 * (a quantized weight and its statistics become one float tensor), some added (an output head a
 * tied checkpoint leaves out). The merge, the plan and the writer see only the view: each shard
 * lists the view's tensors, the index maps them, and reads of a view tensor go to its own reader.
 */
import type { DType, FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { BaseModel, BaseTensor, ShardIndex } from './base-model.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

/** A tensor of the view that no file stores as such. */
export interface ViewTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  writeDtype?: FloatDType;
  /** `length` bytes from `start` of the tensor's values in `dtype`. */
  readPart(start: number, length: number): Promise<Uint8Array>;
}

/** A shard of the view: stored tensors kept by name, view tensors in their place, in order. */
export interface ViewShard {
  path: string;
  tensors: readonly (string | ViewTensor)[];
}

export function baseModelView(inner: BaseModel, shards: readonly ViewShard[]): BaseModel {
  const tensors = new Map<string, BaseTensor>();
  const readers = new Map<string, ViewTensor>();
  const viewShards = shards.map((shard) => {
    const original = inner.shards.find((s) => s.path === shard.path);
    if (!original) throw new Error(`view shard ${shard.path} is not a shard of ${inner.name}`);
    const entries: TensorEntry[] = shard.tensors.map((t) => {
      if (typeof t === 'string') {
        const kept = inner.tensors.get(t);
        if (!kept) throw new Error(`view keeps tensor ${t}, which ${inner.name} does not hold`);
        tensors.set(t, kept);
        return kept.entry;
      }
      const entry: TensorEntry = { name: t.name, dtype: t.dtype, shape: t.shape, offset: 0, byteLength: t.byteLength };
      const viewed: BaseTensor = { name: t.name, dtype: t.dtype, shape: t.shape, shard: shard.path, entry };
      if (t.writeDtype) viewed.writeDtype = t.writeDtype;
      tensors.set(t.name, viewed);
      readers.set(t.name, t);
      return entry;
    });
    return { path: shard.path, file: viewFile(original.file, entries, (entry, start, length) => readPart(entry.name, start, length)) };
  });

  const readPart = async (name: string, start: number, length: number): Promise<Uint8Array> => {
    const reader = readers.get(name);
    if (!reader) {
      if (!tensors.has(name)) throw new MergeError('NOT_FOUND', `${inner.name}: no tensor "${name}"`);
      return inner.readPart(name, start, length);
    }
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > reader.byteLength) {
      throw new RangeError(`bytes ${start}+${length} are outside tensor "${name}" (${reader.byteLength} bytes)`);
    }
    return length === 0 ? new Uint8Array(0) : reader.readPart(start, length);
  };

  let index: ShardIndex | undefined;
  if (inner.index) {
    const weightMap: Record<string, string> = {};
    for (const shard of shards) for (const t of shard.tensors) weightMap[typeof t === 'string' ? t : t.name] = shard.path;
    index = { ...inner.index, weight_map: weightMap };
  }
  const view: BaseModel = {
    kind: inner.kind,
    name: inner.name,
    tensors,
    shards: viewShards,
    otherFiles: inner.otherFiles,
    read: (name) => readPart(name, 0, tensors.get(name)?.entry.byteLength ?? 0),
    readPart,
    close: () => inner.close(),
  };
  if (inner.indexPath !== undefined) Object.assign(view, { indexPath: inner.indexPath, index });
  return view;
}

/** A shard file whose tensor list is the view's; its tensors are read through the view. */
function viewFile(
  original: SafetensorsFile, entries: readonly TensorEntry[], read: (entry: TensorEntry, start: number, length: number) => Promise<Uint8Array>,
): SafetensorsFile {
  const byName = new Map(entries.map((e) => [e.name, e]));
  return {
    source: original.source,
    tensors: entries,
    metadata: original.metadata,
    get: (name) => byName.get(name),
    read: (entry) => read(entry, 0, entry.byteLength),
    readPart: read,
  };
}
