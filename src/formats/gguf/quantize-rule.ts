/**
 * Which tensors `--dtype` converts in a GGUF, and to what: those llama-quantize quantizes
 * (llama-quant.cpp, tensor_allows_quantization), each to the requested type as `llama-quantize
 * --pure` does, with its fallback when a row is not a whole number of the type's blocks
 * (tensor_type_fallback). Norms, biases and every other 1-D tensor keep their types, as do the
 * tensors llama-quantize leaves alone (the MoE router, position embeddings, small conv weights, …).
 */
import { ggmlTypeByName } from './ggml-types.js';

/** Name fragments llama-quantize never quantizes (besides 1-D tensors and names not ending in `weight`). */
const KEPT: readonly string[] = [
  '_norm.weight', 'ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj',
  'ssm_conv1d', 'shortconv.conv.weight', 'indexer.k_proj.weight', 'indexer.q_proj.weight',
  'time_mix_first.weight', 'time_mix_w0.weight', 'time_mix_w1.weight', 'time_mix_w2.weight', 'time_mix_v0.weight',
  'time_mix_v1.weight', 'time_mix_v2.weight', 'time_mix_a0.weight', 'time_mix_a1.weight', 'time_mix_a2.weight',
  'time_mix_g1.weight', 'time_mix_g2.weight', 'time_mix_decay_w1.weight', 'time_mix_decay_w2.weight',
  'time_mix_lerp_fused.weight', 'attn_rel_b.weight', '.position_embd', 'sam.pos_embd', 'sam.neck.', 'sam.net_',
  '.rel_pos', '.patch_embd', '.patch_merger', 'a.rvq.codebook', 'mm.a.code_embd',
];
/** Whole names it never quantizes: position embeddings and BERT's token types. */
const KEPT_NAMES: ReadonlySet<string> = new Set(['position_embd.weight', 'token_types.weight']);

/** Whether llama-quantize would quantize this tensor (`shape`: slowest dimension first). */
export function llamaQuantizes(name: string, shape: readonly number[]): boolean {
  if (shape.length < 2 || !name.endsWith('weight') || KEPT_NAMES.has(name)) return false;
  return !KEPT.some((part) => name.includes(part));
}

/** tensor_type_fallback: a type whose blocks fit rows of `ne0` values. */
const FALLBACK: Readonly<Record<string, string>> = {
  IQ1_S: 'IQ4_NL', IQ1_M: 'IQ4_NL', IQ2_XXS: 'IQ4_NL', IQ2_XS: 'IQ4_NL', IQ2_S: 'IQ4_NL',
  IQ3_XXS: 'IQ4_NL', IQ3_S: 'IQ4_NL', IQ4_XS: 'IQ4_NL', Q2_0: 'Q4_0', TQ1_0: 'Q4_0', TQ2_0: 'Q4_0', Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0',
};

/**
 * The type llama-quantize gives rows of `ne0` values when asked for `requested`. A type of blocks
 * of 32 or fewer with no fallback (Q4_0, IQ4_NL, MXFP4, …) goes to F16; one of larger blocks with
 * no fallback (Q1_0, NVFP4) makes llama-quantize stop ("no tensor type fallback is defined"), so
 * it is returned as asked and the container's output-type check refuses the tensor by name.
 */
export function fittingType(requested: string, ne0: number): string {
  const type = ggmlTypeByName(requested);
  if (!type || ne0 % type.blockSize === 0) return requested;
  const fallback = FALLBACK[type.name];
  if (!fallback && type.blockSize > 32) return requested;
  const next = fallback ? ggmlTypeByName(fallback) : undefined;
  return next && ne0 % next.blockSize === 0 ? next.name : 'F16';
}
