/**
 * Hugging Face model folders as tests need them: config.json, sharded safetensors with
 * model.safetensors.index.json, generation_config.json and tokenizer files; PEFT adapter folders;
 * and reading a merged folder back. Imports nothing from the library.
 */
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, type DecodedTensor, type FixtureDType, type FixtureTensor } from './fixtures.js';

/** A tensor with random values on its dtype's grid. */
export function randomTensor(name: string, shape: number[], dtype: FixtureDType, rand: () => number, scale = 1): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: randomValues(n, rand, scale).map((x) => roundForDType(x, dtype)) };
}

/** Tensors as a decoded map (the values the files hold), for truth computations. */
export function decoded(tensors: FixtureTensor[]): Map<string, DecodedTensor> {
  return decodeSafetensors(buildSafetensors(tensors)).tensors;
}

/**
 * A transformers folder: the tensors split over `shards` files (in order, about evenly) with an
 * index when more than one, config.json, generation_config.json, and any extra files.
 */
export function hfModelFolder(
  tensors: FixtureTensor[], config: object, options: { shards?: number; extra?: Record<string, string | Uint8Array>; metadata?: Record<string, string> } = {},
): Record<string, string | Uint8Array> {
  const shards = options.shards ?? 1;
  // torch's save_file writes `format: pt`; mlx's mx.save_safetensors (mlx_lm.convert, fuse) `format: mlx`.
  const metadata = options.metadata ?? { format: 'pt' };
  const files: Record<string, string | Uint8Array> = {
    'config.json': JSON.stringify(config, null, 2),
    'generation_config.json': JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }),
    ...options.extra,
  };
  if (shards === 1) {
    files['model.safetensors'] = buildSafetensors(tensors, metadata);
    return files;
  }
  const per = Math.ceil(tensors.length / shards);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let i = 0; i < shards; i++) {
    const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(i * per, (i + 1) * per);
    files[name] = buildSafetensors(part, metadata);
    for (const t of part) {
      weightMap[t.name] = name;
      totalSize += decoded([t]).get(t.name)!.bytes.byteLength;
    }
  }
  files['model.safetensors.index.json'] = JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap });
  return files;
}

export function peftFolder(config: object, tensors: FixtureTensor[], extra: Record<string, string | Uint8Array> = {}): Record<string, string | Uint8Array> {
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', ...config }),
    'adapter_model.safetensors': buildSafetensors(tensors),
    ...extra,
  };
}

export interface MergedFolder {
  tensors: Map<string, DecodedTensor>;
  /** Each shard's `__metadata__`. */
  metadata: Map<string, Record<string, string>>;
  /** Each tensor's shard. */
  shardOf: Map<string, string>;
  /** Bytes of every tensor (data only), summed. */
  tensorBytes: number;
  files: Map<string, Uint8Array>;
  json(path: string): any;
  text(path: string): string;
}

/** Reads a merged folder's files (path → bytes). */
export function readMergedFolder(files: Map<string, Uint8Array>): MergedFolder {
  const tensors = new Map<string, DecodedTensor>();
  const metadata = new Map<string, Record<string, string>>();
  const shardOf = new Map<string, string>();
  let tensorBytes = 0;
  for (const [path, bytes] of files) {
    if (!path.endsWith('.safetensors')) continue;
    const file = decodeSafetensors(bytes);
    metadata.set(path, file.metadata);
    for (const [name, t] of file.tensors) {
      tensors.set(name, t);
      shardOf.set(name, path);
      tensorBytes += t.bytes.byteLength;
    }
  }
  const text = (path: string) => {
    const bytes = files.get(path);
    if (!bytes) throw new Error(`merged folder has no ${path} (it has ${[...files.keys()].join(', ')})`);
    return new TextDecoder().decode(bytes);
  };
  return { tensors, metadata, shardOf, tensorBytes, files, json: (path) => JSON.parse(text(path)), text };
}

/** A folder's files in memory, by path. */
export type Files = Record<string, string | Uint8Array>;

/** A merge of in-memory folders prepared: the base, named `base`, and adapters named `adapter1`, `adapter2`, … at `weights` (1 where not given). */
export function prepareFolders(base: Files, adapters: Files[], weights: number[] = []): Promise<PreparedMerge> {
  return prepareMerge(memoryInputFileSet(base, 'base'), adapters.map((files, i) => ({ files: memoryInputFileSet(files, `adapter${i + 1}`), weight: weights[i] ?? 1 })));
}

/** {@link prepareFolders} of one adapter (`adapter1`) at weight 1. */
export function prepareOne(base: Files, adapter: Files): Promise<PreparedMerge> {
  return prepareFolders(base, [adapter]);
}

/**
 * Merges `prepared` on `backend` into memory (closing it either way) and reads the folder written;
 * every tensor in `outDtype` when given, in slabs of `slabBytes` when given (4096, the least the
 * pipeline takes, makes slabs end inside tensors' row groups as well as on their edges).
 */
export async function mergeIntoFolder(prepared: PreparedMerge, backend: MergeBackend, outDtype?: 'F32' | 'F16' | 'BF16', slabBytes?: number): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend, ...(outDtype ? { outDtype } : {}), ...(slabBytes ? { slabBytes } : {}) });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}
