/**
 * Safetensors as a ContainerFormat: tensors are written in the base's dtype, or every float tensor
 * in the requested one (--dtype, fp8 included), rounded once; each output shard keeps its input
 * shard's `__metadata__` plus the merge's provenance. A shard nothing changes in, where the base
 * asks for it (a pipeline component), is written byte for byte as it was, header included; every
 * index is rewritten with the new total size, or copied when all its shards were mirrored.
 */
import { ambiguousFp8Name, DTYPE_BYTES, decodeToF32, encodeFromF32, isFloatDType, parseOutDType, type DType, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { MergeError } from '../errors.js';
import type { ContainerFormat, StoredShard, StoredTensor, TensorFileWriter } from './container.js';
import { SAFETENSORS_OUTPUT_TYPES } from './output-types.js';
import { createSafetensorsWriter } from './safetensors-writer.js';
import type { SafetensorsFile } from './safetensors-types.js';
import { createVerbatimWriter } from './verbatim-writer.js';

/** `*.safetensors.index.json` as read: which shard holds each tensor, and any other fields. */
export interface ShardIndex {
  metadata?: Record<string, unknown>;
  weight_map: Record<string, string>;
}

/**
 * A `*.safetensors.index.json` of the base and the shards it lists (relative paths, as the shards').
 * Its `weight_map` is not kept: once checked against the shards' headers it says nothing they do
 * not, and for a checkpoint of 160 000 tensors it held about 25 MB through the whole merge. The
 * output's is made from the output's shards.
 */
export interface BaseIndexFile {
  path: string;
  /** The index's fields other than `weight_map`, written again (with a new total size). */
  fields: Omit<ShardIndex, 'weight_map'>;
  shards: readonly string[];
}

/** An index's fields without its weight map. */
export function indexFields(index: ShardIndex): BaseIndexFile['fields'] {
  const { weight_map: _, ...fields } = index;
  return fields;
}

/**
 * `files`: the input shards in order; `indexes`: the base's index files; `metadata`: a shard's
 * `__metadata__` to write instead of its file's, where a view changes it.
 */
export function safetensorsContainer(
  files: readonly SafetensorsFile[], indexes: readonly BaseIndexFile[], metadata: readonly (Readonly<Record<string, string>> | undefined)[] = [],
): ContainerFormat {
  return {
    name: 'safetensors',
    outputChoices: SAFETENSORS_OUTPUT_TYPES,
    parseOutputType(name, option = '--dtype') {
      try {
        return parseOutDType(name);
      } catch {
        const fp8 = ambiguousFp8Name(name);
        if (fp8) throw new MergeError('BAD_ARGUMENT', `${option} ${fp8}`);
        // A GGML type (q4_k_m, q8_0) asked of a safetensors model: the output keeps the base's format.
        const ggml = /^(q\d|iq\d|tq\d|mxfp4|nvfp4)/i.test(name)
          ? `; ${name} is a GGUF type, and a merged safetensors model stays safetensors: convert it to GGUF afterwards (llama.cpp's convert_hf_to_gguf.py, then llama-quantize), or merge into a GGUF base`
          : '';
        throw new MergeError('BAD_ARGUMENT', `${option} must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "${name}" (for a safetensors model)${ggml}`);
      }
    },
    outputType(tensor, _changed, requested) {
      return requested && isFloatDType(tensor.type) ? requested : tensor.writeType ?? tensor.type;
    },
    checkOutputType: () => undefined,
    byteLength: (type, elements) => elements * DTYPE_BYTES[type as DType],
    // Converted chunks must also stay 4-byte aligned for the typed-array conversions.
    copyUnit: (type) => Math.max(DTYPE_BYTES[type as DType], 4),
    engineDtype: (type) => type as FloatDType,
    decodeRows: async (type, bytes): Promise<FloatTensorBytes> => ({ dtype: type as FloatDType, data: bytes }),
    encodeRows: (_type, values) => values,
    convert(bytes, from, to) {
      if (from === to) return bytes;
      if (!isFloatDType(from) || !isFloatDType(to)) throw new MergeError('BAD_ARGUMENT', `cannot convert ${from} to ${to}`);
      return encodeFromF32(decodeToF32(bytes, from), to);
    },
    async createWriter(sink, shardIndex, shards, provenance, mirror): Promise<TensorFileWriter> {
      if (mirror) return createVerbatimWriter(sink, files[shardIndex]);
      const declared = shards[shardIndex].tensors.map((t) => ({ name: t.name, dtype: t.type as DType, shape: t.shape }));
      // transformers refuses a safetensors file whose metadata lacks `format` (pt, tf, flax, mlx).
      return createSafetensorsWriter(sink, declared, { format: 'pt', ...(metadata[shardIndex] ?? files[shardIndex].metadata), ...provenance });
    },
    async writeSidecars(output, shards: readonly StoredShard[], { mirrored, copyInput }) {
      const written: string[] = [];
      for (const { path, fields, shards: paths } of indexes) {
        const indices = paths.map((p) => shards.findIndex((s) => s.path === p));
        if (indices.every((i) => mirrored[i])) {
          await copyInput(path);
        } else {
          const totalSize = indices.reduce((sum, i) => sum + shards[i].tensors.reduce((n, t: StoredTensor) => n + t.byteLength, 0), 0);
          // Names in the files, each to its shard's path from the index's folder; sorted by name,
          // as transformers and huggingface_hub write them.
          const folder = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
          const weightMap: [string, string][] = [];
          for (const i of indices) for (const t of shards[i].tensors) weightMap.push([t.name, shards[i].path.slice(folder.length)]);
          weightMap.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
          const contents = { ...fields, metadata: { ...(fields.metadata ?? {}), total_size: totalSize }, weight_map: Object.fromEntries(weightMap) };
          const sink = await output.createFile(path);
          await sink.write(new TextEncoder().encode(JSON.stringify(contents, null, 2) + '\n'));
          await sink.close();
        }
        written.push(path);
      }
      return written;
    },
  };
}
