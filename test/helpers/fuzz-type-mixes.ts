/**
 * The surface fuzzer's `gguf-type-mixes` world (fuzz-surfaces.ts draws it): a small GGUF (BF16
 * matrices, F32 norms; 1 to 8 blocks, or 68 to 80 blocks of rows of 32 as a 70B's or
 * Falcon-180B's block count; n_gqa 1, 2, 3, 4 or 8; a tied or untied head; rows of 256 or of 32 to 128 values
 * so that the fallbacks are reached) of one of four layouts: a dense llama (LLM_TYPE_70B at 80
 * grouped blocks; the 70B draws give this layout other architectures' names too); a Mixtral-like llama with 8 experts (`llama.expert_count` 8, the F32 router
 * `ffn_gate_inp`, the experts stacked in `ffn_gate_exps` / `ffn_up_exps` / `ffn_down_exps`, ne
 * [in, out, 8]); a Falcon-7B-like falcon (fused `attn_qkv`, `attn_norm` with a bias, `ffn_up` /
 * `ffn_down` only); a DeepSeek-V2-Lite-like deepseek2 (MLA: attn_q, attn_kv_a_mqa, attn_kv_b
 * whole, n_gqa 1 as converted before the split, or n_gqa 4 with attn_k_b and attn_v_b beside it;
 * dense MLPs). A llama.cpp LoRA (`.lora_a` / `.lora_b`, adapter.lora.alpha) on some of blk.0's
 * attention matrices (deepseek2: attn_kv_b among them) and the last block's ffn_down (Mixtral:
 * attn_q), merged with `--dtype iq3_s_mix`,
 * `iq3_m`, `q2_k_mix`, `q6_k_mix`, a plain mix (`q4_0_mix`, `q4_1_mix`, `q5_0_mix`, `q5_1_mix`,
 * `q1_0_mix`, `q2_0_mix`, `tq1_0_mix`, `tq2_0_mix`, `iq4_nl_mix`, `iq4_xs_mix`) or a K-quant mix
 * `q3_k_s` … `q5_k_m` (llama-quantize's file types of those names), or with `iq3_xs`,
 * `iq3_xxs_mix` or `q2_k_s`, which llama-quantize writes only with an importance matrix: refused.
 * Under `q1_0_mix` a matrix whose rows are not whole Q1_0 blocks (128 values) and that no rule
 * gives another type makes llama-quantize stop (Q1_0 has no fallback): refused. Five draws in
 * seventeen are focused, each of them a merge: an untied head under `tq1_0_mix` (half of them),
 * `tq2_0_mix` or `q2_0_mix` (the token-embedding rule; four of the five), or one of
 * SEVENTY_B_MODELS: a model of each architecture llama.cpp sizes LLM_TYPE_70B, at that block count
 * (n_gqa 8 mostly), or one just outside that size, under a mix whose attn_v is Q3_K or Q4_K before
 * the 70B rule raises it to Q5_K. The `gguf-type-mixes-70b` world draws only those.
 *
 * The truth: each tensor's type from llama.cpp's src/llama-quant.cpp (llama_tensor_get_type,
 * llama_tensor_get_type_impl and tensor_type_fallback, no importance matrix), written out below as
 * plain rules (llamaQuantizeType); its data the float64 merge W + w·(α/r)·B·A (the LoRA's scale as
 * llama.cpp's: α = 0 means the weight alone) quantized by the test helpers' reference quantizers
 * (ggml-reference.ts, ggml-iq4-reference.ts, ggml-iq3s-reference.ts, ggml-fp4-reference.ts,
 * ggml-ternary-reference.ts), byte for byte: the values are
 * chosen dyadic (base k/64, factors k/8, weights 1, 0.5, -1, 2.5), so the merge is exact in f32 and
 * quantizing it from f32 or from float64 is the same. general.file_type is the file type's (10, 18,
 * 26, 27, 2, 3, 8, 9, 40, 41, 36, 37, 25, 30, 11 … 17). At weight 40000 (not exact in f32) a merged tensor is held within twice the
 * reference quantizer's own error on the float64 merge (blockBound), and refused where a block's f16
 * scale or minimum (Q5_1) or an F16 value overflows; at 1e10 and past every block's scale overflows
 * and the merge is refused. An edit of the counts the rules read (block, head, key-value head and
 * expert counts) makes the case unknown.
 */
import fc from 'fast-check';
import { tensorData, type FixtureTensor as GgufTensor, type MetaValue } from './gguf-builder.js';
import { blockBound, type Decoded, type GgufExpected, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

type LowMix = 'iq3_s_mix' | 'iq3_m' | 'q2_k_mix' | 'q6_k_mix';
type PlainMix = 'q4_0_mix' | 'iq4_nl_mix' | 'iq4_xs_mix';
/** The other file types named after one type, which reach only the head, token-embedding and 8-expert rules. */
type OtherPlainMix = 'q4_1_mix' | 'q5_0_mix' | 'q5_1_mix' | 'q1_0_mix' | 'q2_0_mix' | 'tq1_0_mix' | 'tq2_0_mix';
type KMix = 'q3_k_s' | 'q3_k_m' | 'q3_k_l' | 'q4_k_s' | 'q4_k_m' | 'q5_k_s' | 'q5_k_m';
type Mix = LowMix | KMix | PlainMix | OtherPlainMix;
type Refused = 'iq3_xs' | 'iq3_xxs_mix' | 'q2_k_s';
type Ftype = 'IQ3_S' | 'IQ3_M' | 'Q2_K' | 'Q6_K' | 'Q4_0' | 'IQ4_NL' | 'IQ4_XS' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q1_0' | 'Q2_0' | 'TQ1_0' | 'TQ2_0' | 'Q3_K_S' | 'Q3_K_M' | 'Q3_K_L' | 'Q4_K_S' | 'Q4_K_M' | 'Q5_K_S' | 'Q5_K_M';
/** llama-quantize's file type of each mix: the LLAMA_FTYPE_MOSTLY_* name and number (llama.h). */
const FTYPE: Record<Mix, { name: Ftype; id: number }> = {
  iq3_s_mix: { name: 'IQ3_S', id: 26 }, iq3_m: { name: 'IQ3_M', id: 27 }, q2_k_mix: { name: 'Q2_K', id: 10 }, q6_k_mix: { name: 'Q6_K', id: 18 },
  q3_k_s: { name: 'Q3_K_S', id: 11 }, q3_k_m: { name: 'Q3_K_M', id: 12 }, q3_k_l: { name: 'Q3_K_L', id: 13 },
  q4_k_s: { name: 'Q4_K_S', id: 14 }, q4_k_m: { name: 'Q4_K_M', id: 15 }, q5_k_s: { name: 'Q5_K_S', id: 16 }, q5_k_m: { name: 'Q5_K_M', id: 17 },
  q4_0_mix: { name: 'Q4_0', id: 2 }, iq4_nl_mix: { name: 'IQ4_NL', id: 25 }, iq4_xs_mix: { name: 'IQ4_XS', id: 30 },
  q4_1_mix: { name: 'Q4_1', id: 3 }, q5_0_mix: { name: 'Q5_0', id: 8 }, q5_1_mix: { name: 'Q5_1', id: 9 }, q1_0_mix: { name: 'Q1_0', id: 40 },
  q2_0_mix: { name: 'Q2_0', id: 41 }, tq1_0_mix: { name: 'TQ1_0', id: 36 }, tq2_0_mix: { name: 'TQ2_0', id: 37 },
};
/** llama_ftype_get_default_type. */
const DEFAULT: Record<Ftype, string> = {
  IQ3_S: 'IQ3_S', IQ3_M: 'IQ3_S', Q2_K: 'Q2_K', Q6_K: 'Q6_K', Q3_K_S: 'Q3_K', Q3_K_M: 'Q3_K', Q3_K_L: 'Q3_K', Q4_K_S: 'Q4_K', Q4_K_M: 'Q4_K', Q5_K_S: 'Q5_K', Q5_K_M: 'Q5_K',
  Q4_0: 'Q4_0', IQ4_NL: 'IQ4_NL', IQ4_XS: 'IQ4_XS', Q4_1: 'Q4_1', Q5_0: 'Q5_0', Q5_1: 'Q5_1', Q1_0: 'Q1_0', Q2_0: 'Q2_0', TQ1_0: 'TQ1_0', TQ2_0: 'TQ2_0',
};
/** ggml_blck_size of the types these rules reach. */
const BLOCK: Record<string, number> = {
  Q2_K: 256, Q3_K: 256, Q4_K: 256, Q5_K: 256, Q6_K: 256, IQ3_S: 256, IQ4_NL: 32, IQ4_XS: 256, Q4_0: 32, Q4_1: 32, Q5_0: 32, Q5_1: 32, Q8_0: 32,
  Q1_0: 128, Q2_0: 64, TQ1_0: 256, TQ2_0: 256, F16: 1,
};
/**
 * tensor_type_fallback's table (rows that are not whole blocks of the type asked for). A type
 * missing here has none: llama-quantize stops ("no tensor type fallback is defined"). Every row
 * here is whole blocks of 32, so only Q1_0 (blocks of 128) reaches that.
 */
const FALLBACK: Record<string, string> = {
  IQ3_S: 'IQ4_NL', IQ4_XS: 'IQ4_NL', Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0', Q2_0: 'Q4_0', TQ1_0: 'Q4_0', TQ2_0: 'Q4_0',
};
/** What llamaQuantizeType returns where llama-quantize stops: a row of no type's whole blocks and no fallback. */
export const NO_FALLBACK = 'no fallback';

/** The model as llama-quantize's rules see it. */
export interface MixModel {
  /** general.architecture: the rules single out falcon; the others differ only in LLM_TYPE_70B (seventyB). */
  arch: string;
  /** block_count (n_layer: n_ffn_down, and here n_attention_wv, one attn_v-like tensor a block). */
  layers: number;
  /** n_head / n_head_kv, integer division. */
  gqa: number;
  /** No output.weight: the token embedding is the head. */
  tied: boolean;
  /** expert_count (0 dense). */
  experts: number;
  /** llama.cpp sizes the model LLM_TYPE_70B (llamaCppSeventyB). */
  seventyB: boolean;
}

/**
 * Whether llama.cpp sizes a model LLM_TYPE_70B, the size whose attn_v the 70B rule raises. Read
 * from src/llama-model.cpp, llama_model::load_hparams (the type is set per architecture from
 * n_layer): llama, not 8 experts (those are 8x7B or 8x22B), 80 blocks, n_head() != n_head_kv()
 * of layer 0 (as many: 65B); deci and olmo, 80 blocks; from src/models/qwen2.cpp and jais2.cpp,
 * load_arch_hparams: qwen2, 80 blocks, jais2, 68. src/models/qwen2vl.cpp's load_arch_hparams
 * reads the rope sections and the norm epsilon and sets no size, so qwen2vl is never 70B (it was,
 * by falling through to qwen2's case, before each architecture had its own file). Every other
 * architecture and block count is another size: xverse's 80 blocks are 65B, falcon's sizes are
 * 32 and 60 blocks, deepseek2's 27, 60 and 61.
 */
export function llamaCppSeventyB(arch: string, layers: number, heads: number, kvHeads: number, experts: number): boolean {
  switch (arch) {
    case 'llama': return experts !== 8 && layers === 80 && heads !== kvHeads;
    case 'deci': case 'qwen2': case 'olmo': return layers === 80;
    case 'jais2': return layers === 68;
    default: return false;
  }
}

/** use_more_bits: the first and last eighth of the layers and every third between. */
const moreBits = (i: number, n: number) => i < Math.floor(n / 8) || i >= Math.floor((7 * n) / 8) || (i - Math.floor(n / 8)) % 3 === 2;

/**
 * The type llama-quantize gives `name` (ne0 values per row) under file type `ftype`, or undefined
 * for a tensor it does not quantize (1-D, a norm, the MoE router ffn_gate_inp). Read from
 * llama-quant.cpp (tensor_allows_quantization, llama_tensor_get_type_impl, tensor_type_fallback,
 * no importance matrix, no overrides), for models with one attn_v-like tensor per block (so i_attention_wv and i_ffn_down are the block's
 * number, as is layer_info's parse of an expert tensor's name), in its order of tests:
 *   - the head (output.weight, or token_embd.weight without one): Q8_0 for falcon or when ne0 is
 *     not whole blocks of the default type, else Q6_K;
 *   - an untied token_embd: Q4_K for TQ1_0, TQ2_0 and Q2_0;
 *   - attn_v, attn_qkv and attn_kv_b (category_is_attn_v): Q2_K → Q4_K if n_gqa ≥ 4 else Q3_K; IQ3_S → Q4_K
 *     if n_gqa ≥ 4; IQ3_M → Q4_K; Q3_K_M → Q5_K for the first two, Q4_K after; Q3_K_L → Q5_K; IQ4_NL, IQ4_XS → Q5_K if n_gqa ≥ 4;
 *     Q4_K_M, Q5_K_M → Q6_K where use_more_bits; Q4_K_S → Q5_K for the first four; then, in
 *     an LLM_TYPE_70B model, Q3_K and Q4_K → Q5_K; then Q8_0 whatever the above with 8 experts;
 *   - attn_k: Q8_0 with 8 experts;
 *   - ffn_down (i its block, n the block count): Q2_K → Q3_K; Q3_K_M → Q5_K for i < n/16, else
 *     Q4_K unless falcon and not use_more_bits (Q3_K); IQ3_M → Q4_K for i < n/8 or, with 8
 *     experts, use_more_bits; Q3_K_L → Q4_K falcon, Q5_K otherwise; Q4_K_M → falcon: Q6_K for
 *     i < n/16, Q5_K where use_more_bits, Q4_K; not falcon: Q6_K where use_more_bits; Q5_K_M →
 *     Q6_K where use_more_bits; IQ4_NL, IQ4_XS → Q5_K for i < n/8 (no importance matrix); Q4_K_S (not falcon) → Q5_K for i < n/8;
 *   - attn_output: not falcon, 8 experts: Q5_K for Q2_K, Q3_K_S, Q3_K_M, Q4_K_S, Q4_K_M, IQ3_S, IQ4_NL, IQ4_XS,
 *     IQ3_M; not falcon, dense: Q2_K → Q3_K, Q3_K_M → Q4_K, Q3_K_L → Q5_K, IQ3_M → Q4_K; falcon:
 *     Q3_K_L → Q4_K;
 *   - everything else (attn_q, ffn_gate, ffn_up and their _exps, another untied token_embd): the default;
 * then tensor_type_fallback when ne0 is not whole blocks: IQ3_S and IQ4_XS → IQ4_NL, Q2_K/Q3_K,
 * Q2_0, TQ1_0 and TQ2_0 → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 when that does not
 * fit either; a type with no fallback (Q1_0 here) is NO_FALLBACK, where llama-quantize stops.
 * Q4_1, Q5_0, Q5_1, Q1_0, Q2_0, TQ1_0 and TQ2_0 appear in none of the attn_v, ffn_down and
 * attn_output lists above (Q4_0/Q5_0's ffn_down rule needs an importance matrix).
 */
export function llamaQuantizeType(ftype: Ftype, name: string, ne: readonly number[], model: MixModel): string | undefined {
  if (ne.length < 2 || !name.endsWith('weight') || name.includes('_norm.weight') || name.includes('ffn_gate_inp.weight')) return undefined;
  const ne0 = ne[0];
  const falcon = model.arch === 'falcon', eight = model.experts === 8;
  const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
  const n = model.layers;
  let type = DEFAULT[ftype];
  if (name === 'output.weight' || (model.tied && name === 'token_embd.weight')) {
    type = falcon || ne0 % BLOCK[type] !== 0 ? 'Q8_0' : 'Q6_K';
  } else if (name === 'token_embd.weight') {
    if (ftype === 'TQ1_0' || ftype === 'TQ2_0' || ftype === 'Q2_0') type = 'Q4_K';
  } else if (name.includes('attn_qkv.weight') || name.includes('attn_kv_b.weight') || name.includes('attn_v.weight')) {
    if (ftype === 'Q2_K') type = model.gqa >= 4 ? 'Q4_K' : 'Q3_K';
    else if (ftype === 'IQ3_S' && model.gqa >= 4) type = 'Q4_K';
    else if (ftype === 'IQ3_M') type = 'Q4_K';
    else if (ftype === 'Q3_K_M') type = layer < 2 ? 'Q5_K' : 'Q4_K';
    else if (ftype === 'Q3_K_L') type = 'Q5_K';
    else if ((ftype === 'IQ4_NL' || ftype === 'IQ4_XS') && model.gqa >= 4) type = 'Q5_K';
    else if ((ftype === 'Q4_K_M' || ftype === 'Q5_K_M') && moreBits(layer, n)) type = 'Q6_K';
    else if (ftype === 'Q4_K_S' && layer < 4) type = 'Q5_K';
    if (model.seventyB && (type === 'Q3_K' || type === 'Q4_K')) type = 'Q5_K';
    if (eight) type = 'Q8_0';
  } else if (name.includes('attn_k.weight')) {
    if (eight) type = 'Q8_0';
  } else if (name.includes('ffn_down')) {
    if (ftype === 'Q2_K') type = 'Q3_K';
    else if (ftype === 'Q3_K_M') type = layer < Math.floor(n / 16) ? 'Q5_K' : !falcon || moreBits(layer, n) ? 'Q4_K' : 'Q3_K';
    else if (ftype === 'IQ3_M' && (layer < Math.floor(n / 8) || (eight && moreBits(layer, n)))) type = 'Q4_K';
    else if (ftype === 'Q3_K_L') type = falcon ? 'Q4_K' : 'Q5_K';
    else if (ftype === 'Q4_K_M') {
      if (falcon) type = layer < Math.floor(n / 16) ? 'Q6_K' : moreBits(layer, n) ? 'Q5_K' : 'Q4_K';
      else if (moreBits(layer, n)) type = 'Q6_K';
    } else if (ftype === 'Q5_K_M' && moreBits(layer, n)) type = 'Q6_K';
    else if ((ftype === 'IQ4_NL' || ftype === 'IQ4_XS') && layer < Math.floor(n / 8)) type = 'Q5_K';
    else if (ftype === 'Q4_K_S' && !falcon && layer < Math.floor(n / 8)) type = 'Q5_K';
  } else if (name.includes('attn_output.weight')) {
    if (!falcon && eight) {
      if (['Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q4_K_S', 'Q4_K_M', 'IQ3_S', 'IQ3_M', 'IQ4_NL', 'IQ4_XS'].includes(ftype)) type = 'Q5_K';
    } else if (!falcon) {
      type = ({ Q2_K: 'Q3_K', Q3_K_M: 'Q4_K', Q3_K_L: 'Q5_K', IQ3_M: 'Q4_K' } as Record<string, string>)[ftype] ?? type;
    } else if (ftype === 'Q3_K_L') type = 'Q4_K';
  }
  if (ne0 % BLOCK[type] === 0) return type;
  const fallback = FALLBACK[type];
  if (!fallback) return NO_FALLBACK;
  return ne0 % BLOCK[fallback] === 0 ? fallback : 'F16';
}

/** Dyadic values: k/den for k drawn in [-den, den] (exact in BF16 for den ≤ 128, and their products and sums exact in f32). */
const dyadic = (rand: () => number, n: number, den: number) => Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * den) / den);

/**
 * The helpers' reference quantizers (gguf-builder.ts's tensorData) cover every type these rules
 * reach: IQ3_S in ggml-iq3s-reference.ts, Q1_0 and Q2_0 in ggml-fp4-reference.ts, TQ1_0 and TQ2_0
 * in ggml-ternary-reference.ts, the same ones gguf-plain-mixes.test.ts checks its merges against.
 */
const HAS_REFERENCE = new Set(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'IQ4_NL', 'IQ4_XS', 'IQ3_S', 'Q1_0', 'Q2_0', 'TQ1_0', 'TQ2_0']);

type Family = 'llama' | 'mixtral' | 'falcon' | 'deepseek2';
/** The LoRA's four possible targets per family: blk.0's first three, the last block's fourth. */
const TARGETS: Record<Family, [string, string, string, string]> = {
  llama: ['attn_v', 'attn_q', 'attn_output', 'ffn_down'],
  mixtral: ['attn_v', 'attn_k', 'attn_output', 'attn_q'],
  falcon: ['attn_qkv', 'attn_output', 'ffn_up', 'ffn_down'],
  deepseek2: ['attn_kv_b', 'attn_q', 'attn_output', 'ffn_down'],
};
/** DeepSeek-V2-Lite's MLA head dims over four (qk_nope 128, qk_rope 64, v 128): rows of 32 where a row is one head's. */
const NOPE = 32, ROPE = 16, V = 32;
/** (n_head, n_head_kv): n_gqa 1, 2, 3, 4 and 8, each side of the IQ3_S and Q2_K attn_v rules' n_gqa ≥ 4. */
const HEADS: [number, number][] = [[4, 4], [8, 8], [4, 2], [8, 4], [6, 2], [8, 2], [4, 1], [8, 1]];

/**
 * Draws aimed at rules the plain draws seldom reach with a checked merge: `ternary-head`, an untied
 * head with a file type whose token-embedding rule gives it Q4_K (TQ1_0, TQ2_0, Q2_0); `70b`, one of
 * SEVENTY_B_MODELS (grouped heads: n_gqa 8 as Llama 2/3 70B's 64 heads over 8, or 2 to 6) under a
 * mix whose attn_v would be Q3_K or Q4_K, which an LLM_TYPE_70B model raises to Q5_K.
 */
type Focus = 'none' | 'ternary-head' | '70b';
const TERNARY_HEAD_MIXES: Mix[] = ['tq1_0_mix', 'tq1_0_mix', 'tq2_0_mix', 'q2_0_mix'];
const SEVENTY_B_MIXES: Mix[] = ['q2_k_mix', 'iq3_s_mix', 'iq3_m', 'q3_k_s', 'q3_k_m', 'q4_k_s', 'q4_k_m'];
/** (n_head, n_head_kv) of the 70B draws: n_gqa 8 (64 over 8 scaled down) twice as often as 4, 3 or 2. */
const SEVENTY_B_HEADS: [number, number][] = [[8, 1], [8, 1], [8, 2], [6, 2], [4, 2]];
/**
 * The 70B draws' models: each architecture llama.cpp sizes LLM_TYPE_70B (llamaCppSeventyB) at its
 * block count, llama three times (Llama 2/3 70B), and models just outside, which keep the attn_v
 * they would have: a llama of 80 blocks with as many key-value heads as heads (65B), 79 blocks of
 * llama and qwen2, olmo at 68 blocks and jais2 at 80, xverse's 80 (65B), qwen2vl's 80 (no size). All in llama's dense
 * layout: the rules read the architecture, the counts and the tensor names, not the layout.
 */
const SEVENTY_B_MODELS: { arch: string; layers: number; mha?: true }[] = [
  { arch: 'llama', layers: 80 }, { arch: 'llama', layers: 80 }, { arch: 'llama', layers: 80 },
  { arch: 'qwen2', layers: 80 }, { arch: 'qwen2vl', layers: 80 }, { arch: 'deci', layers: 80 }, { arch: 'olmo', layers: 80 }, { arch: 'jais2', layers: 68 },
  { arch: 'llama', layers: 80, mha: true }, { arch: 'llama', layers: 79 }, { arch: 'qwen2', layers: 79 }, { arch: 'olmo', layers: 68 }, { arch: 'jais2', layers: 80 },
  { arch: 'xverse', layers: 80 },
];

/** A world of the models, LoRAs and mixes drawn as the header says, with their truth, its draws focused as `focus` draws. */
const mixesWorld = (focus: fc.Arbitrary<Focus>): fc.Arbitrary<SurfaceWorld> => fc
  .record({
    focus,
    focusMix: fc.nat(), focusHeads: fc.nat(),
    mix: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom<Mix>('iq3_s_mix', 'iq3_s_mix', 'iq3_m', 'q2_k_mix', 'q6_k_mix') },
      { weight: 2, arbitrary: fc.constantFrom<Mix>('q4_0_mix', 'iq4_nl_mix', 'iq4_xs_mix') },
      { weight: 3, arbitrary: fc.constantFrom<Mix>('q4_1_mix', 'q5_0_mix', 'q5_1_mix', 'q1_0_mix', 'q2_0_mix', 'tq1_0_mix', 'tq2_0_mix') },
      { weight: 3, arbitrary: fc.constantFrom<Mix>('q3_k_s', 'q3_k_m', 'q3_k_l', 'q4_k_s', 'q4_k_m', 'q5_k_s', 'q5_k_m') },
      { weight: 1, arbitrary: fc.constantFrom<Refused>('iq3_xs', 'iq3_xxs_mix', 'q2_k_s') },
    ),
    family: fc.constantFrom<Family>('llama', 'llama', 'llama', 'mixtral', 'falcon', 'deepseek2'),
    // 80 blocks rarely: such a case takes a few seconds.
    layers: fc.oneof({ weight: 11, arbitrary: fc.constantFrom(1, 1, 2, 3, 8) }, { weight: 1, arbitrary: fc.constant(80) }), hidden: fc.constantFrom(256, 256, 96), heads: fc.constantFrom(...HEADS),
    wideFfn: fc.boolean(), tied: fc.boolean(), r: fc.integer({ min: 1, max: 2 }), alpha: fc.constantFrom(0, 1, 2, 4),
    targets: fc.subarray([0, 1, 2, 3], { minLength: 1 }), seed: fc.integer(), wholeQ1: fc.boolean(), split: fc.boolean(),
  })
  .map(({ focus, focusMix, focusHeads, ...plain }) => {
    // A focused draw overrides the mix, family, block count, heads, architecture or tie the plain draw made.
    const seventyB = SEVENTY_B_MODELS[focusHeads % SEVENTY_B_MODELS.length];
    const drawn = focus === 'ternary-head'
      ? { ...plain, mix: TERNARY_HEAD_MIXES[focusMix % TERNARY_HEAD_MIXES.length], tied: false }
      : focus === '70b'
        ? { ...plain, mix: SEVENTY_B_MIXES[focusMix % SEVENTY_B_MIXES.length], family: 'llama' as Family, layers: seventyB.layers, heads: seventyB.mha ? [8, 8] as [number, number] : SEVENTY_B_HEADS[Math.floor(focusHeads / SEVENTY_B_MODELS.length) % SEVENTY_B_HEADS.length] }
        : plain;
    const { mix, family, layers: drawnLayers, hidden: drawnHidden, heads: [drawnHeads, drawnKv], wideFfn, tied: drawnTied, r, alpha, targets, seed, wholeQ1, split } = drawn;
    let s = seed >>> 0;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const HD = 16, VOCAB = 8, EXPERTS = 8;
    // Q1_0's blocks are 128 values and have no fallback: most drawn shapes are refused under
    // q1_0_mix, so half its cases take rows of whole blocks (hidden 256, 8 heads of 16, ffn 128).
    const q1Rows = mix === 'q1_0_mix' && wholeQ1;
    // 80 blocks, as Llama 2/3 70B (LLM_TYPE_70B where grouped) and Falcon-180B have, reach the rules
    // on n_layer/16, n_layer/8 and use_more_bits between: rows of 32 keep the case small. Not for
    // the 8 experts (no such model; eight blocks at most) or Q1_0's whole-block rows.
    const deepseek = family === 'deepseek2';
    const deep = drawnLayers > 8 && family !== 'mixtral' && !deepseek && !q1Rows;
    const hidden = q1Rows ? 256 : deep ? 32 : drawnHidden;
    // DeepSeek2's MLA: 4 heads; the file written before the converter split attn_kv_b gives
    // head_count_kv 4 (n_gqa 1), the current converter's 1 (MLA as MQA, n_gqa 4), with attn_k_b
    // and attn_v_b beside attn_kv_b (the layout ik_llama.cpp's converter writes).
    const [heads, kvHeads] = deepseek ? [4, split ? 1 : 4] : q1Rows && drawnHeads !== 8 ? [8, Math.max(1, Math.floor((8 * drawnKv) / drawnHeads))] : [drawnHeads, drawnKv];
    const tied = drawnTied && !deepseek;
    const arch = focus === '70b' ? seventyB.arch : family === 'falcon' ? 'falcon' : deepseek ? 'deepseek2' : 'llama';
    // Eight experts of 256-wide rows in many blocks would make a slow case: at most 3 blocks unless
    // rows are 96 wide; MLA's seven matrices a block, at most 2 or 3.
    const cap = family === 'mixtral' && hidden === 256 ? (q1Rows ? 1 : 3) : deepseek ? (hidden === 256 ? 2 : 3) : 8;
    const layers = deep ? drawnLayers : Math.min(drawnLayers, cap);
    /** kv_lora_rank: the hidden size here, so that attn_kv_b's rows are 256 (whole K-quant blocks) or 96 values. */
    const KV_RANK = hidden;
    // Eight blocks of 256-wide ffn_down rows would make a slow case: the wide FFN only with few blocks, and not for experts.
    const ffn = q1Rows ? 128 : wideFfn && layers < 8 && family !== 'mixtral' ? 256 : 32;
    /** (out, in, experts) of each tensor, in is 0 for a 1-D one; ne is [in, out] or [in, out, experts]. */
    const shapes: [string, number, number, number][] = [['token_embd.weight', VOCAB, hidden, 0]];
    for (let i = 0; i < layers; i++) {
      const b = `blk.${i}`;
      if (family === 'falcon') {
        // Falcon-7B's layout: one fused query-key-value projection, a parallel MLP without a gate or ffn_norm.
        shapes.push([`${b}.attn_norm.bias`, hidden, 0, 0], [`${b}.attn_norm.weight`, hidden, 0, 0], [`${b}.attn_qkv.weight`, (heads + 2 * kvHeads) * HD, hidden, 0],
          [`${b}.attn_output.weight`, hidden, heads * HD, 0], [`${b}.ffn_up.weight`, ffn, hidden, 0], [`${b}.ffn_down.weight`, hidden, ffn, 0]);
        continue;
      }
      if (deepseek) {
        // DeepSeek-V2-Lite's block (no q_lora_rank: attn_q), its MLA projections, a dense MLP.
        shapes.push([`${b}.attn_norm.weight`, hidden, 0, 0], [`${b}.attn_q.weight`, heads * (NOPE + ROPE), hidden, 0],
          [`${b}.attn_kv_a_mqa.weight`, KV_RANK + ROPE, hidden, 0], [`${b}.attn_kv_a_norm.weight`, KV_RANK, 0, 0],
          [`${b}.attn_kv_b.weight`, heads * (NOPE + V), KV_RANK, 0]);
        // ne [nope, kv_lora_rank, heads] and [kv_lora_rank, v, heads].
        if (split) shapes.push([`${b}.attn_k_b.weight`, KV_RANK, NOPE, heads], [`${b}.attn_v_b.weight`, V, KV_RANK, heads]);
        shapes.push([`${b}.attn_output.weight`, hidden, heads * V, 0], [`${b}.ffn_norm.weight`, hidden, 0, 0],
          [`${b}.ffn_gate.weight`, ffn, hidden, 0], [`${b}.ffn_up.weight`, ffn, hidden, 0], [`${b}.ffn_down.weight`, hidden, ffn, 0]);
        continue;
      }
      shapes.push([`${b}.attn_norm.weight`, hidden, 0, 0], [`${b}.attn_q.weight`, heads * HD, hidden, 0], [`${b}.attn_k.weight`, kvHeads * HD, hidden, 0],
        [`${b}.attn_v.weight`, kvHeads * HD, hidden, 0], [`${b}.attn_output.weight`, hidden, heads * HD, 0], [`${b}.ffn_norm.weight`, hidden, 0, 0]);
      if (family === 'mixtral') {
        // Mixtral's: the router (F32, never quantized) and the experts stacked, ne [in, out, 8].
        shapes.push([`${b}.ffn_gate_inp.weight`, EXPERTS, hidden, 0], [`${b}.ffn_gate_exps.weight`, ffn, hidden, EXPERTS],
          [`${b}.ffn_up_exps.weight`, ffn, hidden, EXPERTS], [`${b}.ffn_down_exps.weight`, hidden, ffn, EXPERTS]);
      } else {
        shapes.push([`${b}.ffn_gate.weight`, ffn, hidden, 0], [`${b}.ffn_up.weight`, ffn, hidden, 0], [`${b}.ffn_down.weight`, hidden, ffn, 0]);
      }
    }
    shapes.push(['output_norm.weight', hidden, 0, 0]);
    if (family === 'falcon') shapes.push(['output_norm.bias', hidden, 0, 0]);
    if (!tied) shapes.push(['output.weight', VOCAB, hidden, 0]);
    const neOf = (o: number, i: number, e: number) => (!i ? [o] : e ? [i, o, e] : [i, o]);
    const f32 = (name: string) => name.includes('_norm.') || name.includes('ffn_gate_inp');
    const tensors: GgufTensor[] = shapes.map(([name, o, i, e]) => (f32(name)
      ? { name, type: 'F32', ne: neOf(o, i, e), data: tensorData('F32', dyadic(rand, o * Math.max(i, 1), 64).map((x) => (i ? x : 1 + x))) }
      : { name, type: 'BF16', ne: neOf(o, i, e), data: tensorData('BF16', dyadic(rand, o * i * Math.max(e, 1), 64)) }));
    const u32 = (value: number): MetaValue => ({ type: 'u32', value });
    const str = (value: string): MetaValue => ({ type: 'string', value });
    const names = TARGETS[family];
    const modules = targets.map((t) => (t === 3 ? `blk.${layers - 1}.${names[t]}.weight` : `blk.0.${names[t]}.weight`));
    const loraTensors: GgufTensor[] = modules.flatMap((m) => {
      const [, o, i] = shapes.find(([n]) => n === m)!;
      return [
        { name: `${m}.lora_a`, type: 'F32', ne: [i, r], data: tensorData('F32', dyadic(rand, i * r, 8)) },
        { name: `${m}.lora_b`, type: 'F32', ne: [r, o], data: tensorData('F32', dyadic(rand, r * o, 8)) },
      ];
    });
    const base = `tiny-${family}-BF16.gguf`;
    const files: Record<string, SpecFile> = {
      [base]: {
        kind: 'gguf',
        build: {
          metadata: [
            ['general.architecture', str(arch)], ['general.name', str(`Tiny ${family} BF16`)], [`${arch}.block_count`, u32(layers)], [`${arch}.context_length`, u32(2048)],
            [`${arch}.embedding_length`, u32(hidden)], [`${arch}.feed_forward_length`, u32(ffn)], [`${arch}.attention.head_count`, u32(heads)],
            [`${arch}.attention.head_count_kv`, u32(kvHeads)],
            ...(deepseek
              // DeepseekV2Model's keys, all blocks dense; the split file's as the current converter writes them (MLA as MQA).
              ? [[`${arch}.leading_dense_block_count`, u32(layers)], [`${arch}.attention.kv_lora_rank`, u32(KV_RANK)],
                [`${arch}.attention.key_length`, u32(split ? KV_RANK + ROPE : NOPE + ROPE)], [`${arch}.attention.value_length`, u32(split ? KV_RANK : V)],
                ...(split ? [[`${arch}.attention.key_length_mla`, u32(NOPE + ROPE)], [`${arch}.attention.value_length_mla`, u32(V)]] : []),
                [`${arch}.rope.dimension_count`, u32(ROPE)], [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }]] as [string, MetaValue][]
              : []),
            ...(family === 'falcon'
              ? [[`${arch}.attention.layer_norm_epsilon`, { type: 'f32', value: 1e-5 }]] as [string, MetaValue][]
              : deepseek ? [] : [[`${arch}.rope.freq_base`, { type: 'f32', value: 500000 }], [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-5 }]] as [string, MetaValue][]),
            ...(family === 'mixtral' ? [[`${arch}.expert_count`, u32(EXPERTS)], [`${arch}.expert_used_count`, u32(2)]] as [string, MetaValue][] : []),
            ['general.file_type', u32(32)], ['general.quantization_version', u32(2)],
          ],
          tensors,
        },
      },
      'lora.gguf': {
        kind: 'gguf',
        build: {
          metadata: [['general.architecture', str(arch)], ['general.type', str('adapter')], ['adapter.type', str('lora')], ['adapter.lora.alpha', { type: 'f32', value: alpha }]],
          tensors: loraTensors,
        },
      },
    };
    return {
      name: `${focus === '70b' ? `${arch}, ${layers} blocks` : family}${focus === 'none' ? '' : ` (${focus})`} GGUF + llama.cpp LoRA`,
      files, base, adapter: 'lora.gguf', out: 'merged.gguf', refusalsChecked: true, fixedDtype: mix, mergeOnly: focus !== 'none',
      truth: (d: Decoded, w: number): Truth => {
        if (!(mix in FTYPE)) return { kind: 'invalid', why: `--dtype ${mix}: llama-quantize writes it only with an importance matrix` };
        const ftype = FTYPE[mix as Mix];
        // A block's f16 scale cannot hold values of 1e10 (Q8_0's d = amax/127, a K-quant's d ≥ amax/(63·31)): refused.
        if (Math.abs(w) >= 1e10) return { kind: 'invalid', why: `weight ${w}: the merged blocks' f16 scales overflow` };
        // The merge is exact in f32 only for the weights drawn small and the values as written; at
        // another weight a merged tensor is held within twice the reference quantizer's error (blockBound).
        const exact = [1, 0.5, -1, 2.5].includes(w);
        for (const [k, t] of d.tensors) if (t.values.some((x) => !Number.isFinite(x) || Math.abs(x) > 4 || Math.round(x * 64) !== x * 64)) return { kind: 'unknown', why: `${k}: an edited value (not exact in f32)` };
        const kv = d.gguf.get('lora.gguf')!.get('adapter.lora.alpha');
        if (!kv || kv.type !== 6) return { kind: 'unknown', why: 'adapter.lora.alpha of another type' };
        if ((kv.value as number) !== alpha) return { kind: 'unknown', why: 'adapter.lora.alpha edited' };
        const baseMeta = d.gguf.get(base)!;
        if (d.gguf.get('lora.gguf')!.get('general.architecture')?.value !== arch || baseMeta.get('general.architecture')?.value !== arch) return { kind: 'unknown', why: 'general.architecture edited' };
        // The counts the rules read (n_gqa, the 8-expert rules, n_layer), as written.
        const counts: [string, number][] = [['block_count', layers], ['attention.head_count', heads], ['attention.head_count_kv', kvHeads], ...(family === 'mixtral' ? [['expert_count', EXPERTS]] as [string, number][] : [])];
        for (const [key, value] of counts) {
          const got = baseMeta.get(`${arch}.${key}`);
          if (got?.type !== 4 || got.value !== value) return { kind: 'unknown', why: `${arch}.${key} edited` };
        }
        if (family !== 'mixtral' && baseMeta.has(`${arch}.expert_count`)) return { kind: 'unknown', why: 'expert_count added' };
        const scale = alpha === 0 ? w : (w * alpha) / r;
        const model: MixModel = {
          arch, layers, gqa: Math.floor(heads / kvHeads), tied, experts: family === 'mixtral' ? EXPERTS : 0,
          seventyB: llamaCppSeventyB(arch, layers, heads, kvHeads, family === 'mixtral' ? EXPERTS : 0),
        };
        const want: GgufExpected = { tensors: [], meta: { 'general.file_type': ftype.id, 'general.architecture': arch } };
        for (const [name, o, i, e] of shapes) {
          const baseTensor = d.tensors.get(`/${name}`)!;
          const ne = neOf(o, i, e);
          const type = llamaQuantizeType(ftype.name, name, ne, model);
          // Rows of 32 or 96 values are no whole Q1_0 block (128): llama-quantize stops, the merge is refused.
          if (type === NO_FALLBACK) return { kind: 'invalid', why: `${name}: rows of ${ne[0]} values fit no ${DEFAULT[ftype.name]} block and it has no fallback` };
          if (!type) {
            want.tensors.push({ name, type: f32(name) ? 'F32' : 'BF16', ne, bytes: baseTensor.bytes });
            continue;
          }
          const values = Float64Array.from(baseTensor.values);
          const merged = modules.includes(name);
          if (merged) {
            // lora_a ne [in, r] is torch (r, in); lora_b ne [r, out] is (out, r).
            const a = d.tensors.get(`/${name}.lora_a`)!.values, b = d.tensors.get(`/${name}.lora_b`)!.values;
            for (let y = 0; y < o; y++) for (let x = 0; x < i; x++) {
              let sum = 0;
              for (let k = 0; k < r; k++) sum += b[y * r + k] * a[k * i + x];
              values[y * i + x] += scale * sum;
            }
          }
          if (HAS_REFERENCE.has(type) && (exact || !merged)) want.tensors.push({ name, type, ne, bytes: tensorData(type, values) });
          else if (HAS_REFERENCE.has(type)) {
            const bound = blockBound(type, values);
            // A block whose f16 scale or minimum overflows (Q5_1 and Q4_1 store the minimum itself) decodes to Inf or NaN: refused.
            if (bound.some((x) => !Number.isFinite(x))) return { kind: 'invalid', why: `${name}: merged values too large for ${type}'s f16 scales` };
            want.tensors.push({ name, type, ne, values, bound });
          } else {
            // F16, where rows fit no block type: a value past f16's range is refused.
            if (maxAbs(values) >= 65520) return { kind: 'invalid', why: `${name}: merged values past F16's range` };
            want.tensors.push({ name, type, ne, values, magnitude: maxAbs(values) });
          }
        }
        return { kind: 'expected', merged: new Map(), gguf: want };
      },
    };
  });

/**
 * The world as the surface fuzzer draws it: 70B draws take seconds each (68 to 80 blocks), so one
 * in seventeen, so that `npm test`'s share stays small.
 */
export const typeMixesWorld: fc.Arbitrary<SurfaceWorld> = mixesWorld(
  fc.oneof({ weight: 12, arbitrary: fc.constant<Focus>('none') }, { weight: 4, arbitrary: fc.constant<Focus>('ternary-head') }, { weight: 1, arbitrary: fc.constant<Focus>('70b') }),
);

/** Only the 70B draws (SEVENTY_B_MODELS), for runs that fuzz that rule on every architecture it names. */
export const seventyBWorld: fc.Arbitrary<SurfaceWorld> = mixesWorld(fc.constant<Focus>('70b'));
