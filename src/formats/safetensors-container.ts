/**
 * Safetensors as a ContainerFormat: tensors are written in the base's dtype, or every float tensor
 * in the requested one (--dtype), rounded once; each output shard keeps its input shard's
 * `__metadata__` plus the merge's provenance, and a sharded base gets a rewritten index.
 */
import { DTYPE_BYTES, decodeToF32, encodeFromF32, isFloatDType, parseOutDType, type DType, type FloatDType } from '../dtype.js';
import type { FloatTensorBytes } from '../engine/merge-op.js';
import { MergeError } from '../errors.js';
import type { OutputTarget } from '../io/types.js';
import type { ContainerFormat, StoredShard, StoredTensor, TensorFileWriter } from './container.js';
import { createSafetensorsWriter } from './safetensors-writer.js';

/** `*.safetensors.index.json`: which shard holds each tensor. */
export interface ShardIndex {
  metadata?: Record<string, unknown>;
  weight_map: Record<string, string>;
}

export function safetensorsContainer(
  shardMetadata: readonly Readonly<Record<string, string>>[],
  index?: { path: string; contents: ShardIndex },
): ContainerFormat {
  return {
    name: 'safetensors',
    parseOutputType(name) {
      try {
        return parseOutDType(name);
      } catch {
        throw new MergeError('BAD_ARGUMENT', `--dtype must be f32, f16 or bf16 for a safetensors model, not "${name}"`);
      }
    },
    outputType(tensor, _changed, requested) {
      return requested && isFloatDType(tensor.type) ? requested : tensor.type;
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
    async createWriter(sink, shardIndex, shards, provenance): Promise<TensorFileWriter> {
      const declared = shards[shardIndex].tensors.map((t) => ({ name: t.name, dtype: t.type as DType, shape: t.shape }));
      return createSafetensorsWriter(sink, declared, { ...shardMetadata[shardIndex], ...provenance });
    },
    async writeSidecars(output: OutputTarget, shards: readonly StoredShard[]) {
      if (!index) return [];
      const totalSize = shards.reduce((sum, s) => sum + s.tensors.reduce((n, t: StoredTensor) => n + t.byteLength, 0), 0);
      const contents = { ...index.contents, metadata: { ...(index.contents.metadata ?? {}), total_size: totalSize } };
      const sink = await output.createFile(index.path);
      await sink.write(new TextEncoder().encode(JSON.stringify(contents, null, 2) + '\n'));
      await sink.close();
      return [index.path];
    },
  };
}
