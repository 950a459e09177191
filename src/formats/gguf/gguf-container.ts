/**
 * GGUF as a ContainerFormat. Untouched tensors are byte-copied. A merged tensor keeps its own type
 * by default: it is decoded to f32, merged, and re-encoded by llama.cpp's reference quantizer for
 * that type. `--dtype` (f16, bf16, q8_0, q4_k, …) converts, merged or not, every tensor that
 * llama-quantize would quantize (quantize-rule.ts: matrices, not norms or the MoE router), as
 * `llama-quantize --pure` does, or to the types of one of llama-quantize's mixes (type-mixes.ts:
 * the K-quant mixes, Q4_0/IQ4_XS/… as llama-quantize types them without --pure, MXFP4_MOE); the
 * others keep their types. Each output file keeps its input
 * file's metadata, alignment and tensor order; general.file_type is updated when the types change
 * (file-type.ts) and the first file records the merge's provenance.
 */
import { floatDTypeNamed, type FloatDType } from '../../dtype.js';
import type { FloatTensorBytes, MergeBackend } from '../../engine/merge-op.js';
import { MergeError } from '../../errors.js';
import type { ContainerFormat, StoredShard, TensorFileWriter } from '../container.js';
import { GGUF_OUTPUT_TYPES } from '../output-types.js';
import { nonFiniteBlockSpan, zeroedBlockValues } from './block-scales.js';
import { blockCodec, blockDecoder, DECODER_TYPE_NAMES, PLAIN_CODEC_TYPE_NAMES, writesTypeFor } from './codecs/registry.js';
import { needsImatrix } from './codecs/iq2.js';
import { decodeBlocks, encodeBlocks, encodeWeightedBlocks, notWritten } from './gguf-blocks.js';
import { importanceRows } from './imatrix-rows.js';
import { convertTensorBytes } from './gguf-convert.js';
import { fittingType, llamaQuantizes } from './quantize-rule.js';
import { mixContext, PURE_FILE_TYPES, REFUSED_MIXES, TYPE_MIXES, typeMix, type MixContext, type TypeMix } from './type-mixes.js';
import { mergedFileType } from './file-type.js';
import { ggmlRowBytes, ggmlTypeByName, type GgmlType } from './ggml-types.js';
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';
import { createGgufWriter } from './gguf-writer.js';
import { keptScaleTypeProblem } from './kept-scales.js';
import { lcm } from '../../integers.js';
import { editDistance } from '../../api-arguments.js';

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

export function ggufContainer(inputs: readonly GgufShardHeader[], input: readonly StoredShard[]): ContainerFormat {
  const metadata = new Map(inputs[0]?.metadata.map((kv) => [kv.key, kv.value]));
  // Sorts every tensor in the loader's order (a tenth of a second for 160 000): made when a mix is
  // first asked for, not each time a model is opened.
  let mixes: MixContext | undefined;
  const mixesNow = (): MixContext => (mixes ??= mixContext((key) => metadata.get(key), input.flatMap((s) => s.tensors)));
  const tensorNames = new Set(input.flatMap((s) => s.tensors.map((t) => t.name)));
  let labelled: { shards: readonly StoredShard[]; requested: string | undefined; mix: TypeMix | undefined } | undefined;
  /** The type `requested` (a GGML type or a mix) asks for this tensor, before the fallback. */
  const askedType = (requested: string, tensor: { name: string; shape: readonly number[] }) =>
    typeMix(requested)?.typeOf(tensor.name, tensor.shape, mixesNow()) ?? requested;
  const outputType = (tensor: { name: string; shape: readonly number[]; type: string }, requested: string | undefined): string => {
    if (!requested || !llamaQuantizes(tensor.name, tensor.shape)) return tensor.type;
    return fittingType(askedType(requested, tensor), tensor.shape[tensor.shape.length - 1] ?? 1);
  };
  /**
   * The type a tensor is written in: a changed one whose type is read but not written (with the
   * importance matrix given or not) goes to F16 (readOnlyFallback).
   */
  const writtenType = (tensor: { name: string; shape: readonly number[]; type: string }, changed: boolean, requested: string | undefined, weighted = false): string => {
    const type = outputType(tensor, requested);
    return changed ? readOnlyFallback(type, weighted, tensor.name) : type;
  };
  return {
    name: 'gguf',
    outputChoices: GGUF_OUTPUT_TYPES,
    parseOutputType(name, option = '--dtype', weighted = false) {
      const mix = typeMix(name);
      if (mix) return mix.name;
      const refused = REFUSED_MIXES[name.toUpperCase()];
      const pure = PURE_FILE_TYPES[name.toUpperCase()];
      if (pure) throw new MergeError('BAD_ARGUMENT', `${option} ${name}: ${pure}`);
      // A refused mix names the written ones of its family (Q2_K…, IQ3_…).
      if (refused) throw new MergeError('BAD_ARGUMENT', `${option} ${name}: ${refused}; choose ${TYPE_MIXES.filter((m) => m.name.startsWith(name.slice(0, 4).toUpperCase())).map((m) => m.name.toLowerCase()).join(' or ')}, or ${option} f16 and run llama-quantize --imatrix afterwards`);
      // torch's and the fp16-style names of the float types (`float16`, `fp32`) name GGML's F16, F32, BF16 (GGML has no fp8).
      const float = floatDTypeNamed(name);
      const type = ggmlTypeByName(float ?? name);
      if (type && !blockCodec(type) && blockDecoder(type)) throw new MergeError('BAD_ARGUMENT', `${option} ${name}: ${notWritten(type.name)}`);
      if (type && !weighted && blockCodec(type)?.needsImportance) throw new MergeError('BAD_ARGUMENT', `${option} ${name}: ${needsImatrix(type.name)}, or choose another --dtype`);
      if (!type || !blockCodec(type)) {
        const names = [...PLAIN_CODEC_TYPE_NAMES, ...TYPE_MIXES.map((m) => m.name)].map((n) => n.toLowerCase());
        const meant = closestTypeName(name, names);
        throw new MergeError('BAD_ARGUMENT', `${option} for a GGUF model must be one of ${names.join(', ')}, not "${name}"${meant ? `; did you mean ${meant}?` : ''}`);
      }
      return type.name;
    },
    outputType: writtenType,
    outputTypeWarnings(before, after, requested) {
      /** Tensors written in a fallback type, by the type asked for and the one written. */
      const substituted = new Map<string, { asked: string; type: string; names: string[] }>();
      const requantized = new Map<string, number>();
      before.forEach((shard, i) => shard.tensors.forEach((t, j) => {
        const type = after[i].tensors[j].type;
        if (type === t.type) return;
        const asked = askedType(requested, t);
        // A merged IQ1/IQ2 tensor --dtype leaves alone goes to F16 without an importance matrix, which the plan's warning names.
        if (type !== asked && outputType(t, requested) !== t.type) {
          const key = `${asked} ${type}`;
          if (!substituted.has(key)) substituted.set(key, { asked, type, names: [] });
          substituted.get(key)!.names.push(t.name);
        }
        // Written as a float type, a quantized tensor is dequantized, not quantized again: the
        // first warning's own advice (f16 keeps more of the update) must not draw this one.
        if (!FLOAT_TYPES.has(t.type) && !FLOAT_TYPES.has(type)) requantized.set(t.type, (requantized.get(t.type) ?? 0) + 1);
      }));
      const warnings = [...substituted.values()].map(({ asked, type, names }) =>
        `${names.length} tensor${names.length === 1 ? ' is' : 's are'} written as ${type}, not ${asked}: ${names.length === 1 ? 'its' : 'their'} rows are not whole ${asked} blocks, and llama-quantize falls back to ${type} for such rows (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''})`);
      if (requantized.size > 0) {
        const list = [...requantized].map(([type, n]) => `${n} ${type}`).join(', ');
        const to = typeMix(requested) ? `${requested}'s types` : requested;
        warnings.push(`tensors already quantized (${list}) are quantized again to ${to}, as llama-quantize --allow-requantize does: that adds the new type's error to the old one (quantizing from an F16 or BF16 model is better)`);
      }
      return warnings;
    },
    checkOutputType(tensor, name) {
      const type = ggmlTypeByName(name);
      if (!type || !blockCodec(type)) return notWritten(name);
      const from = ggmlTypeByName(tensor.type);
      if (name !== tensor.type && (!from || !blockDecoder(from))) {
        return `${tensor.type} cannot be decoded (loramerge reads ${DECODER_TYPE_NAMES.join(', ')}), so it cannot be converted to ${name}; leave out --dtype to copy it as stored`;
      }
      const ne0 = tensor.shape[tensor.shape.length - 1] ?? 1;
      if (ne0 % type.blockSize !== 0) {
        return `rows of ${ne0} values are not whole ${type.name} blocks of ${type.blockSize}; choose another --dtype`;
      }
      return keptScaleTypeProblem(tensorNames, tensor, type.name);
    },
    byteLength: (name, elements) => ggmlRowBytes(typeOf(name), elements),
    // Whole blocks of both types (a conversion re-blocks them), and whole 4-byte words.
    copyUnit: (name, outName) => {
      const [from, to] = [typeOf(name), typeOf(outName)];
      const elements = lcm(from.blockSize, to.blockSize);
      return lcm(ggmlRowBytes(from, elements), from.blockSize === 1 ? 4 : 1);
    },
    engineDtype: (name): FloatDType => (FLOAT_TYPES.has(name) ? (name as FloatDType) : 'F32'),
    async decodeRows(name, bytes, backend, signal): Promise<FloatTensorBytes> {
      if (FLOAT_TYPES.has(name)) return { dtype: name as FloatDType, data: bytes };
      const values = await decodeBlocks(typeOf(name), bytes, backend, signal);
      return { dtype: 'F32', data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
    },
    async encodeRows(name, values, backend, signal, importance) {
      if (FLOAT_TYPES.has(name)) return values;
      const aligned = values.byteOffset % 4 === 0 ? values : values.slice();
      const f32 = new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
      if (importance) return encodeWeightedBlocks(typeOf(name), f32, importance.rows, importance.rowStart, backend, signal);
      return encodeBlocks(typeOf(name), f32, backend, signal);
    },
    importanceRows,
    convert(bytes, from, to, backend, signal, nonFiniteText, whole) {
      if (from === to) return bytes;
      return convertTensorBytes(bytes, typeOf(from), typeOf(to), backend, signal, nonFiniteText, whole);
    },
    nonFiniteInBlocks: (name, bytes) => nonFiniteBlockSpan(typeOf(name), bytes),
    zeroedInBlocks: (name, bytes, input, atLeast) => zeroedBlockValues(typeOf(name), bytes, input, atLeast),
    // No GGUF shard is mirrored: every part gets its own provenance and file type.
    async createWriter(sink, shardIndex, shards, provenance, _mirror, requested): Promise<TensorFileWriter> {
      const header = inputs[shardIndex];
      // A mix that typed every tensor llama-quantize quantizes (each output tensor already of the type
      // the mix gives it) labels the file as llama-quantize does; worked out once for all the shards.
      if (labelled?.shards !== shards || labelled.requested !== requested) {
        const mix = requested === undefined ? undefined : typeMix(requested);
        const whole = mix && shards.every((s) => s.tensors.every((t) => t.type === outputType(t, requested)));
        labelled = { shards, requested, mix: whole ? mix : undefined };
      }
      const { mix } = labelled;
      const fileMetadata = header.metadata.map((kv) => {
        if (kv.key !== 'general.file_type' || typeof kv.value !== 'number') return kv;
        return { ...kv, value: mix?.fileType ?? mergedFileType(kv.value, input, shards) };
      });
      if (shardIndex === 0) {
        for (const [key, value] of Object.entries(provenance)) {
          const kv: GgufKeyValue = { key, type: GGUFValueType.STRING, value };
          const at = fileMetadata.findIndex((m) => m.key === key);
          if (at >= 0) fileMetadata[at] = kv;
          else fileMetadata.push(kv);
        }
      }
      const tensors = shards[shardIndex].tensors.map((t) => ({ name: t.name, type: typeOf(t.type), ne: t.shape.slice().reverse() }));
      return createGgufWriter(sink, fileMetadata, tensors, header.alignment);
    },
    writeSidecars: async () => [],
  };
}

/** A type name as typed and as listed, compared without case and separators (`Q4KM`, `q4-k-m`). */
const bareTypeName = (name: string): string => name.toLowerCase().replace(/[_\-.\s]/g, '');

/**
 * The one listed type `typed` most likely means: the same letters and digits (`q4km` for q4_k_m),
 * else the only one a letter or digit away (`q8` for q8_0); undefined when none or several are.
 */
function closestTypeName(typed: string, names: readonly string[]): string | undefined {
  const bare = bareTypeName(typed);
  if (bare.length < 2) return undefined;
  const same = names.find((n) => bareTypeName(n) === bare);
  if (same) return same;
  const near = names.filter((n) => editDistance(bareTypeName(n), bare) === 1);
  return near.length === 1 ? near[0] : undefined;
}

/**
 * The type a merged tensor of `type` is written in. The IQ1 and IQ2 types are written only with an
 * importance matrix (`weighted`), as llama-quantize writes them; without one a merged tensor of one
 * of them is written as F16, which is what llama.cpp's export-lora writes for every merged tensor it
 * dequantized; every other type is written as itself. An IQ1_M or IQ2_S `tensorName` token_embd.weight,
 * per_layer_token_embd.weight or output.weight is written in its type without one, as llama-quantize
 * writes it (ggml's quantize_iq1_m / quantize_iq2_s without weights; needsImportanceFor).
 */
export function readOnlyFallback(type: string, weighted = false, tensorName = ''): string {
  const ggml = ggmlTypeByName(type);
  return ggml && !writesTypeFor(ggml, weighted, tensorName) && blockDecoder(ggml) ? 'F16' : type;
}
