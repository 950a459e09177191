/**
 * The GGML types loramerge reads and writes, by name: one codec file each (or per family).
 * Codecs decode and encode (llama.cpp's reference quantizers; IQ4_NL, IQ4_XS, IQ3_XXS and IQ3_S as
 * llama-quantize writes them without an importance matrix; IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS and IQ2_S
 * only with one, as llama-quantize --imatrix writes them, but IQ1_M and IQ2_S of token_embd.weight,
 * per_layer_token_embd.weight and output.weight, which it writes without one); decoders only decode (none now: every
 * type read is also written).
 */
import type { GgmlType } from '../ggml-types.js';
import type { BlockCodec, BlockDecoder } from './codec.js';
import { BF16_CODEC, F16_CODEC, F32_CODEC } from './float-codecs.js';
import { IQ1_M_CODEC, IQ1_S_CODEC } from './iq1.js';
import { IQ2_S_CODEC, IQ2_XS_CODEC, IQ2_XXS_CODEC } from './iq2.js';
import { IQ3_S_CODEC, IQ3_XXS_CODEC } from './iq3.js';
import { IQ4_NL_CODEC, IQ4_XS_CODEC } from './iq4.js';
import { MXFP4_CODEC } from './mxfp4.js';
import { NVFP4_CODEC } from './nvfp4.js';
import { Q1_0_CODEC } from './q1_0.js';
import { Q2_0_CODEC } from './q2_0.js';
import { Q2_K_CODEC } from './q2_k.js';
import { Q3_K_CODEC } from './q3_k.js';
import { Q4_0_CODEC } from './q4_0.js';
import { Q4_1_CODEC } from './q4_1.js';
import { Q4_K_CODEC } from './q4_k.js';
import { Q5_0_CODEC } from './q5_0.js';
import { Q5_1_CODEC } from './q5_1.js';
import { Q5_K_CODEC } from './q5_k.js';
import { Q6_K_CODEC } from './q6_k.js';
import { Q8_0_CODEC } from './q8_0.js';
import { TQ1_0_CODEC, TQ2_0_CODEC } from './ternary.js';

const CODECS: readonly BlockCodec[] = [
  F32_CODEC, F16_CODEC, BF16_CODEC,
  Q8_0_CODEC, Q4_0_CODEC, Q4_1_CODEC, Q5_0_CODEC, Q5_1_CODEC,
  Q2_K_CODEC, Q3_K_CODEC, Q4_K_CODEC, Q5_K_CODEC, Q6_K_CODEC,
  MXFP4_CODEC, NVFP4_CODEC, Q1_0_CODEC, Q2_0_CODEC, TQ1_0_CODEC, TQ2_0_CODEC,
  IQ1_S_CODEC, IQ1_M_CODEC, IQ2_XXS_CODEC, IQ2_XS_CODEC, IQ2_S_CODEC, IQ3_XXS_CODEC, IQ3_S_CODEC, IQ4_NL_CODEC, IQ4_XS_CODEC,
];

const DECODERS: readonly BlockDecoder[] = [...CODECS];

const CODEC_BY_NAME = new Map(CODECS.map((c) => [c.type.name, c]));
const DECODER_BY_NAME = new Map(DECODERS.map((c) => [c.type.name, c]));

/** The codec of a type loramerge writes, or undefined. */
export function blockCodec(type: GgmlType): BlockCodec | undefined {
  return CODEC_BY_NAME.get(type.name);
}

/**
 * Whether loramerge writes `type` with importance weights `weighted` given or not: a codec, and
 * not one whose quantizer needs an importance matrix (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S) when there is none.
 */
export function writesType(type: GgmlType, weighted: boolean): boolean {
  const codec = CODEC_BY_NAME.get(type.name);
  return codec !== undefined && (weighted || !codec.needsImportance);
}

/** llama-quant.cpp's tensor_name_match_token_embd and tensor_name_match_output_weight: the tensors tensor_requires_imatrix never holds to an importance matrix. */
const IMATRIX_EXEMPT_TENSORS: ReadonlySet<string> = new Set(['token_embd.weight', 'per_layer_token_embd.weight', 'output.weight']);

/** Whether llama-quantize's tensor_requires_imatrix exempts the tensor `tensorName` (it then quantizes it without weights, or ggml asserts). */
export function imatrixExempt(tensorName: string): boolean {
  return IMATRIX_EXEMPT_TENSORS.has(tensorName);
}

/**
 * Whether the tensor `tensorName` of `type` needs importance weights to be written, as llama-quantize
 * holds it to them: a type whose quantizer needs them, unless the tensor is one tensor_requires_imatrix
 * exempts and ggml's quantizer runs without them (IQ1_M, IQ2_S; IQ1_S and IQ2_XXS/XS assert instead).
 */
export function needsImportanceFor(type: GgmlType, tensorName: string): boolean {
  const codec = CODEC_BY_NAME.get(type.name);
  return codec?.needsImportance === true && !(codec.unweightedForEmbeddingAndHead && IMATRIX_EXEMPT_TENSORS.has(tensorName));
}

/** {@link writesType} for the tensor `tensorName` ({@link needsImportanceFor}). */
export function writesTypeFor(type: GgmlType, weighted: boolean, tensorName: string): boolean {
  return CODEC_BY_NAME.has(type.name) && (weighted || !needsImportanceFor(type, tensorName));
}

/** The decoder of a type loramerge reads (every type it writes, and more), or undefined. */
export function blockDecoder(type: GgmlType): BlockDecoder | undefined {
  return DECODER_BY_NAME.get(type.name);
}

/** Names of the types loramerge writes, for messages and `--dtype`. */
export const CODEC_TYPE_NAMES: readonly string[] = CODECS.map((c) => c.type.name);

/**
 * Names of the types loramerge writes with or without an importance matrix (all but IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS and IQ2_S): what
 * `--dtype` offers on its own, in menus and messages.
 */
export const PLAIN_CODEC_TYPE_NAMES: readonly string[] = CODECS.filter((c) => !c.needsImportance).map((c) => c.type.name);

/** Names of the types loramerge writes only with an importance matrix (IQ2_XXS, IQ2_XS, IQ2_S), as llama-quantize does. */
export const IMATRIX_CODEC_TYPE_NAMES: readonly string[] = CODECS.filter((c) => c.needsImportance).map((c) => c.type.name);

/** Names of the types loramerge reads. */
export const DECODER_TYPE_NAMES: readonly string[] = DECODERS.map((c) => c.type.name);
