/**
 * GGML blocks to f32 and back, on the backend when it offers to (WGSL decoding, worker threads for
 * encoding), else here: the results do not depend on where.
 */
import type { MergeBackend } from '../../engine/merge-op.js';
import { MergeError } from '../../errors.js';
import { blockCodec, blockDecoder, DECODER_TYPE_NAMES, PLAIN_CODEC_TYPE_NAMES } from './codecs/registry.js';
import { ggmlTypeByName, type GgmlType } from './ggml-types.js';
import type { RowWeights } from './imatrix-rows.js';
import { encodeWeightedRowsInto } from './codecs/encode-blocks.js';

/**
 * Decodes GGML blocks to f32 on the backend's device when it offers to (WGSL), else on the CPU;
 * both are exact, so the result does not depend on which.
 */
export async function decodeBlocks(type: GgmlType, bytes: Uint8Array, backend?: MergeBackend, signal?: AbortSignal): Promise<Float32Array> {
  const fromDevice = await backend?.dequantize?.(type.name, bytes, signal);
  if (fromDevice) return fromDevice;
  const codec = blockDecoder(type);
  if (!codec) throw new MergeError('UNSUPPORTED_FORMAT', `cannot decode GGML type ${type.name} (loramerge reads ${DECODER_TYPE_NAMES.join(', ')})`);
  const out = new Float32Array((bytes.byteLength / type.blockBytes) * type.blockSize);
  codec.decode(bytes, out);
  return out;
}

/**
 * Encodes f32 values into blocks of `type` on the backend's worker threads when it has them, else
 * here; both run the same reference encoder, so the bytes do not depend on which.
 */
export async function encodeBlocks(type: GgmlType, values: Float32Array, backend?: MergeBackend, signal?: AbortSignal): Promise<Uint8Array> {
  const codec = blockCodec(type);
  if (!codec) throw new MergeError('UNSUPPORTED_FORMAT', notWritten(type.name));
  const elsewhere = await backend?.encodeBlocks?.(type.name, type.blockSize, type.blockBytes, values, signal);
  if (elsewhere) return elsewhere;
  const out = new Uint8Array((values.length / type.blockSize) * type.blockBytes);
  codec.encode(values, out);
  return out;
}

/**
 * Encodes whole rows of `type` with importance weights (`llama-quantize --imatrix`): row i of
 * `values` is the tensor's row rowStart + i. On the backend's worker threads when it has them,
 * else here; the same quantizer runs either way.
 */
export async function encodeWeightedBlocks(
  type: GgmlType, values: Float32Array, rows: RowWeights, rowStart: number, backend?: MergeBackend, signal?: AbortSignal,
): Promise<Uint8Array> {
  const weighted = { weights: rows.values, cols: rows.cols, rowsPerExpert: rows.rowsPerExpert, firstRow: rowStart };
  const elsewhere = await backend?.encodeBlocks?.(type.name, type.blockSize, type.blockBytes, values, signal, weighted);
  if (elsewhere) return elsewhere;
  const out = new Uint8Array((values.length / type.blockSize) * type.blockBytes);
  encodeWeightedRowsInto(type.name, values, out, weighted);
  return out;
}

/** Why a type is not written, with what to do instead. */
export function notWritten(name: string): string {
  const choose = `choose --dtype q4_k (or ${PLAIN_CODEC_TYPE_NAMES.filter((n) => n !== 'Q4_K').map((n) => n.toLowerCase()).join(', ')})`;
  if (blockDecoderByName(name)) return `loramerge reads ${name} but does not write it; ${choose}`;
  return `cannot write GGML type ${name}; ${choose}`;
}

function blockDecoderByName(name: string) {
  const type = ggmlTypeByName(name);
  return type && blockDecoder(type);
}

