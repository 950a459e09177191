/**
 * GGUF as a ContainerFormat. Untouched tensors are byte-copied. A merged tensor keeps its own type
 * by default: it is decoded to f32, merged, and re-encoded by llama.cpp's reference quantizer for
 * that type; `--dtype` (f16, bf16, q8_0, q4_k, …) chooses the type of merged matrices instead
 * (1-D tensors, norms and biases, keep theirs). Each output file keeps its input file's metadata,
 * alignment and tensor order; general.file_type is updated when the types change (file-type.ts)
 * and the first file records the merge's provenance.
 */
import type { FloatDType } from '../../dtype.js';
import type { FloatTensorBytes, MergeBackend } from '../../engine/merge-op.js';
import { MergeError } from '../../errors.js';
import type { ContainerFormat, StoredShard, TensorFileWriter } from '../container.js';
import { GGUF_OUTPUT_TYPES } from '../output-types.js';
import { nonFiniteBlockValues } from './block-scales.js';
import { blockCodec, CODEC_TYPE_NAMES } from './codecs/registry.js';
import { mergedFileType } from './file-type.js';
import { ggmlRowBytes, ggmlTypeByName, type GgmlType } from './ggml-types.js';
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';
import { createGgufWriter } from './gguf-writer.js';

/** What the container needs to know of each input file. */
export interface GgufShardHeader {
  metadata: readonly GgufKeyValue[];
  alignment: number;
}

const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);

function typeOf(name: string): GgmlType {
  const type = ggmlTypeByName(name);
  if (!type) throw new Error(`unknown GGML type ${name}`);
  return type;
}

/**
 * Decodes GGML blocks to f32 on the backend's device when it offers to (WGSL), else on the CPU;
 * both are exact, so the result does not depend on which.
 */
export async function decodeBlocks(type: GgmlType, bytes: Uint8Array, backend?: MergeBackend, signal?: AbortSignal): Promise<Float32Array> {
  const fromDevice = await backend?.dequantize?.(type.name, bytes, signal);
  if (fromDevice) return fromDevice;
  const codec = blockCodec(type);
  if (!codec) throw new MergeError('UNSUPPORTED_FORMAT', `cannot decode GGML type ${type.name}`);
  const out = new Float32Array((bytes.byteLength / type.blockBytes) * type.blockSize);
  codec.decode(bytes, out);
  return out;
}

export function ggufContainer(inputs: readonly GgufShardHeader[], input: readonly StoredShard[]): ContainerFormat {
  return {
    name: 'gguf',
    outputChoices: GGUF_OUTPUT_TYPES,
    parseOutputType(name) {
      const type = ggmlTypeByName(name);
      if (!type || !blockCodec(type)) {
        throw new MergeError('BAD_ARGUMENT', `--dtype for a GGUF model must be one of ${CODEC_TYPE_NAMES.map((n) => n.toLowerCase()).join(', ')}, not "${name}"`);
      }
      return type.name;
    },
    outputType(tensor, changed, requested) {
      return changed && requested && tensor.shape.length >= 2 ? requested : tensor.type;
    },
    checkOutputType(tensor, name) {
      const type = ggmlTypeByName(name);
      if (!type || !blockCodec(type)) return `cannot write GGML type ${name}`;
      const ne0 = tensor.shape[tensor.shape.length - 1] ?? 1;
      if (ne0 % type.blockSize !== 0) {
        return `rows of ${ne0} values are not whole ${type.name} blocks of ${type.blockSize}; choose another --dtype`;
      }
      return undefined;
    },
    byteLength: (name, elements) => ggmlRowBytes(typeOf(name), elements),
    copyUnit: (name) => typeOf(name).blockBytes,
    engineDtype: (name): FloatDType => (FLOAT_TYPES.has(name) ? (name as FloatDType) : 'F32'),
    async decodeRows(name, bytes, backend, signal): Promise<FloatTensorBytes> {
      if (FLOAT_TYPES.has(name)) return { dtype: name as FloatDType, data: bytes };
      const values = await decodeBlocks(typeOf(name), bytes, backend, signal);
      return { dtype: 'F32', data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
    },
    encodeRows(name, values) {
      if (FLOAT_TYPES.has(name)) return values;
      const type = typeOf(name);
      const codec = blockCodec(type);
      if (!codec) throw new MergeError('UNSUPPORTED_FORMAT', `cannot write GGML type ${name}`);
      const aligned = values.byteOffset % 4 === 0 ? values : values.slice();
      const f32 = new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
      const out = new Uint8Array((f32.length / type.blockSize) * type.blockBytes);
      codec.encode(f32, out);
      return out;
    },
    convert(bytes, from, to) {
      if (from === to) return bytes;
      throw new MergeError('BAD_ARGUMENT', `GGUF tensors are copied as stored, not converted from ${from} to ${to}`);
    },
    nonFiniteInBlocks: (name, bytes) => nonFiniteBlockValues(typeOf(name), bytes),
    // No GGUF shard is mirrored: every part gets its own provenance and file type.
    async createWriter(sink, shardIndex, shards, provenance): Promise<TensorFileWriter> {
      const header = inputs[shardIndex];
      const metadata = header.metadata.map((kv) => {
        if (kv.key !== 'general.file_type' || typeof kv.value !== 'number') return kv;
        return { ...kv, value: mergedFileType(kv.value, input, shards) };
      });
      if (shardIndex === 0) {
        for (const [key, value] of Object.entries(provenance)) {
          const kv: GgufKeyValue = { key, type: GGUFValueType.STRING, value };
          const at = metadata.findIndex((m) => m.key === key);
          if (at >= 0) metadata[at] = kv;
          else metadata.push(kv);
        }
      }
      const tensors = shards[shardIndex].tensors.map((t) => ({ name: t.name, type: typeOf(t.type), ne: t.shape.slice().reverse() }));
      return createGgufWriter(sink, metadata, tensors, header.alignment);
    },
    writeSidecars: async () => [],
  };
}
