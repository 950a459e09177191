/**
 * PEFT LoRAs on GGUF bases of mixture-of-experts architectures, end to end, against float64 truth
 * written here:
 * - DeepSeek-V2/V3 (`deepseek2`, DeepseekV2Model): the MLA projections by name (q_a_proj, q_b_proj
 *   or V2-Lite's q_proj, kv_a_proj_with_mqa, o_proj); kv_b_proj ((heads·(nope + v), kv_lora_rank),
 *   each head's nope key rows, then its v value rows) split as the converter splits it: attn_k_b
 *   holds each head's key rows transposed (numpy (heads, kv_lora_rank, nope)), attn_v_b each head's
 *   value rows (heads, v, kv_lora_rank); a file that also keeps attn_kv_b whole gets ΔW there too.
 *   The leading dense block's MLP, the router, experts stacked as rows, the shared experts.
 * - Mistral Large 3 converted from Mistral's own format (MistralMoeModel: `deepseek2`, nothing
 *   permuted) with an adapter named as transformers' Mistral3ForConditionalGeneration, whose
 *   conversion does not permute q/k either: the same rows, by name, kv_b_proj split as above.
 * - Mistral Small 4 (`mistral4`, Mistral3Model's Mistral4Model, a DeepseekV2Model) from
 *   transformers' Mistral3ForConditionalGeneration (`model.language_model.…`): the MLA projections
 *   by name, nothing permuted, kv_b_proj split as above, the dense block's MLP, the shared experts;
 *   the routed experts are fused (target_parameters, in gguf-moe-experts.test.ts) and written whole
 *   to ffn_gate_up_exps; no exp_probs_b (its router has no correction bias).
 * - DeepSeek-V3.2 (`deepseek32`, DeepseekV32Model) and GLM-5 (`glm-dsa`, GlmMoeDsaModel),
 *   DeepseekV2Model's subclasses: MLA and MoE as above, the sparse attention's lightning indexer
 *   (`self_attn.indexer.wq_b`, `wk`, `weights_proj`) by name on indexer.attn_q_b, indexer.attn_k
 *   and indexer.proj (F32), and the nextn layer the converter keeps as the last block: its
 *   attention, experts and indexer as any block's, `eh_proj`, `shared_head.head` and the
 *   `embed_tokens` embedding under blk.N.nextn.
 * - DeepSeek-OCR's language model (`deepseek2-ocr`): DeepSeek-V2's MoE with plain multi-head
 *   attention (q_proj, k_proj, v_proj, o_proj as they are, no MLA split).
 * - LFM2-MoE (`lfm2moe`): the router `feed_forward.gate`, experts `feed_forward.experts.N.w1`
 *   (gate), `w3` (up), `w2` (down), LFM2's conv and attention projections, the dense block's MLP.
 * - ERNIE 4.5 MoE (`ernie4_5-moe`): q/k/v/o as they are, the router, experts, shared experts.
 * - MiniMax-M2 (`minimax-m2`, MiniMaxM2Model): the checkpoint's own names (`block_sparse_moe.gate`,
 *   experts `w1` gate, `w3` up, `w2` down, stacked), q and k as they are (full-width q/k norms), the
 *   router's correction bias as exp_probs_b.
 * - Hunyuan-A13B (`hunyuan-moe`, HunYuanMoEModel): q and k as they are, the router `mlp.gate.wg`
 *   (F32), experts stacked, the shared MLP `mlp.shared_mlp` on ffn_*_shexp.
 * - Phi-3.5-MoE (`phimoe`, PhiMoeModel): q/k/v/o as they are, transformers 4's `block_sparse_moe`
 *   (router `gate`, experts `w1` gate, `w3` up, `w2` down, stacked) and transformers 5's router
 *   `mlp.router`.
 * - dots.llm1 (`dots1`, Dots1Model): q and k as they are, the dense block's MLP, experts stacked,
 *   the shared experts.
 * - DBRX (`dbrx`, DbrxModel): `transformer.wte`, the fused `Wqkv` whole on attn_qkv, `out_proj`,
 *   the router `ffn.router.layer` (BF16: DbrxModel quantizes every matrix, and a merge keeps the
 *   router's type as llama-quantize does).
 * - Jamba (`jamba`, JambaModel): a Mamba-1 block's in_proj, x_proj, dt_proj and out_proj on
 *   ssm_in, ssm_x, ssm_dt, ssm_out as they are, its dense MLP; an attention block's q/k/v/o, the
 *   router `feed_forward.router`, experts stacked; a LoRA on the conv1d is refused by name.
 * - Ling 2.0 (`bailingmoe2`, BailingMoeV2Model): `word_embeddings`, the fused
 *   `attention.query_key_value` whole on attn_qkv (not split, not permuted), `attention.dense`,
 *   the dense block's MLP, experts stacked, the shared experts, and the nextn layer kept as the
 *   last block (its `eh_proj` under nextn.).
 * - MiniCPM3 (`minicpm3`, MiniCPM3Model): DeepSeek-V2's MLA names, kv_b_proj whole on attn_kv_b
 *   (the converter does not split it), nothing permuted, the dense MLP.
 * - DeepSeek-MoE (`deepseek`, DeepseekModel: deepseek-moe-16b): q and k permuted as LlamaModel
 *   permutes them (q by the heads, k by the kv heads), the dense block's MLP, the router `mlp.gate`,
 *   experts stacked, the shared experts.
 * - K-EXAONE (`exaone-moe`, ExaoneMoEModel): q and k as they are (per-head norms), the dense block's
 *   MLP, experts stacked, the shared experts; the MTP block the converter adds after the main ones
 *   is left as it is.
 * - Arcee Trinity (`afmoe`, AfmoeModel): q and k as they are (AfmoeModel skips LlamaModel's
 *   permutation), attention's output gate `self_attn.gate_proj` on attn_gate, the router
 *   `mlp.router.gate`, experts stacked, the shared experts.
 * - Cohere's North MoE (`cohere2moe`, Cohere2MoeModel): q and k as they are, the dense block's MLP,
 *   the router `mlp.gate`, experts stacked, the shared experts.
 * - SmallThinker (`smallthinker`, SmallThinkerModel): q and k as they are, every block's
 *   `block_sparse_moe` with its router `primary_router` and experts `experts.N.gate`/`up`/`down`
 *   stacked.
 * - Ling 1 (`bailingmoe`, BailingMoeModel: Ling-lite, Ling-plus): `word_embeddings`, the fused
 *   `attention.query_key_value` split into attn_q, attn_k and attn_v, q and k permuted as
 *   LlamaModel permutes them (q by the heads, k by the kv heads), `attention.dense`, experts
 *   stacked, the shared experts; a LoRA on `lm_head` is refused (the converter normalises its
 *   columns when the config's norm_head is set, which the GGUF does not record).
 * - Snowflake Arctic (`arctic`, ArcticModel): q and k permuted as LlamaModel permutes them, the
 *   dense residual MLP `residual_mlp.w1`/`w3`/`w2` beside Mixtral's `block_sparse_moe` (router
 *   `gate`, experts `w1` gate, `w3` up, `w2` down, stacked).
 * - PLaMo 2 (`plamo2`, Plamo2Model) and PLaMo 3 (`plamo3`, Plamo3Model): blocks under
 *   `model.layers.layers`, every Linear as it is: a Mamba block's `mixer.in_proj`, `bcdt_proj`,
 *   `dt_proj`, `out_proj` on ssm_in, ssm_x, ssm_dt, ssm_out, an attention block's fused
 *   `mixer.qkv_proj` whole on attn_qkv and `o_proj`, the MLP's fused `gate_up_proj` on ffn_up and
 *   `down_proj`; a LoRA on PLaMo 2's conv1d is refused by name.
 * - Step 3.5 (`step35`, Step35Model): q and k as they are (per-head norms), the head-wise attention
 *   gate `self_attn.g_proj` on attn_gate, the dense block's MLP, the router `moe.gate`, the shared
 *   expert `share_expert.*`; a LoRA on the stacked routed experts (`moe.up_proj`) is refused.
 * - GroveMoE (`grovemoe`, GroveMoeModel): q and k as they are, the router, experts stacked, and the
 *   chunk experts `mlp.chunk_experts.N.*`, one per group of two experts, stacked into ffn_*_chexps.
 * - Kimi Linear (`kimi-linear`, KimiLinearModel): a Kimi Delta Attention block's q/k/v/o and its
 *   `f_a_proj`, `f_b_proj`, `b_proj`, `g_a_proj`, `g_b_proj` on ssm_f_a, ssm_f_b, ssm_beta, ssm_g_a,
 *   ssm_g_b as they are, the dense block's MLP; an MLA block as DeepSeek-V2's (kv_b_proj split), the
 *   MoE under `block_sparse_moe` (experts `w1`/`w3`/`w2` stacked, `shared_experts`); a LoRA on a
 *   short convolution (`q_conv1d`) is refused by name.
 * Each base has the blocks, tensors, types and metadata keys the converter writes.
 */
import { describe, expect, it } from 'vitest';
import type { FixtureTensor } from './helpers/fixtures.js';
import type { MetaValue } from './helpers/gguf-builder.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { describePlan } from '../src/cli/plan-report.js';
import { estimateUpdateMagnitudes } from '../src/plan/update-magnitudes.js';
import {
  cellBaseGguf, cellPeftAdapter, describeCellCases, expert, transposedWhole, whole, type CellCase, type Landing, type Target,
} from './helpers/gguf-cell-truth.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { ggufRowOf } from './helpers/gguf-models.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, VOCAB = 16, FFN = 48, EXPERTS = 4, EXPERT_FFN = 16, SHARED = 32, WEIGHT = 0.7;
/** DeepSeek's MLA: heads, q_lora_rank, kv_lora_rank, qk_nope, qk_rope, v head dims. */
const HEADS = 4, Q_RANK = 12, KV_RANK = 8, NOPE = 6, ROPE = 2, V = 5;
/** The lightning indexer's heads and head size (index_n_heads, index_head_dim). */
const IDX_HEADS = 2, IDX_DIM = 8;
/** LFM2's and ERNIE's attention. */
const ATT_HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, Q = ATT_HEADS * HEAD_DIM, KV = KV_HEADS * HEAD_DIM;
/** Jamba's Mamba-1 mixer: d_inner (2·hidden), d_state, dt_rank (ceil(hidden / 16)). */
const D_INNER = 2 * HIDDEN, D_STATE = 4, DT_RANK = 2;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

/**
 * DeepseekV2Model.modify_tensors on kv_b_proj: viewed (heads, nope + v, kv_lora_rank) and split;
 * attn_k_b = the key rows transposed per head, (heads, kv_lora_rank, nope), attn_v_b = the value
 * rows, (heads, v, kv_lora_rank); both seen as rows of their last dimension.
 */
const kvB = (block: number): Landing[] => [
  { tensor: `blk.${block}.attn_k_b.weight`, cell: (row, col) => [Math.floor(row / KV_RANK) * (NOPE + V) + col, row % KV_RANK] },
  { tensor: `blk.${block}.attn_v_b.weight`, cell: (row, col) => [Math.floor(row / V) * (NOPE + V) + NOPE + (row % V), col] },
];

interface Case extends CellCase { name: string }

/** LoRAs on block `block`'s MLA projections (q_lora_rank set), named under `prefix`; none permuted. */
const mlaTargets = (prefix: string, block: number): Target[] => [
  { module: `${prefix}layers.${block}.self_attn.q_a_proj`, out: Q_RANK, in: HIDDEN, lands: whole(`blk.${block}.attn_q_a.weight`) },
  { module: `${prefix}layers.${block}.self_attn.q_b_proj`, out: HEADS * (NOPE + ROPE), in: Q_RANK, lands: whole(`blk.${block}.attn_q_b.weight`) },
  { module: `${prefix}layers.${block}.self_attn.kv_a_proj_with_mqa`, out: KV_RANK + ROPE, in: HIDDEN, lands: whole(`blk.${block}.attn_kv_a_mqa.weight`) },
  { module: `${prefix}layers.${block}.self_attn.kv_b_proj`, out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(block) },
  { module: `${prefix}layers.${block}.self_attn.o_proj`, out: HIDDEN, in: HEADS * V, lands: whole(`blk.${block}.attn_output.weight`) },
];

/** One MLA attention block as DeepseekV2Model writes it (q_lora_rank set: q_a/q_b; else attn_q). */
const mla = (block: number, qLora: boolean): [string, number[], string?][] => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]],
  ...(qLora
    ? [[`blk.${block}.attn_q_a.weight`, [HIDDEN, Q_RANK]], [`blk.${block}.attn_q_a_norm.weight`, [Q_RANK]], [`blk.${block}.attn_q_b.weight`, [Q_RANK, HEADS * (NOPE + ROPE)]]] as [string, number[]][]
    : [[`blk.${block}.attn_q.weight`, [HIDDEN, HEADS * (NOPE + ROPE)]]] as [string, number[]][]),
  [`blk.${block}.attn_kv_a_mqa.weight`, [HIDDEN, KV_RANK + ROPE]], [`blk.${block}.attn_kv_a_norm.weight`, [KV_RANK]],
  [`blk.${block}.attn_k_b.weight`, [NOPE, KV_RANK, HEADS]], [`blk.${block}.attn_v_b.weight`, [KV_RANK, V, HEADS]],
  [`blk.${block}.attn_output.weight`, [HEADS * V, HIDDEN]],
];
/** The indexer's tensors as the converter writes them (weights_proj forced to F32). */
const indexer = (block: number): [string, number[], string?][] => [
  [`blk.${block}.indexer.k_norm.weight`, [IDX_DIM]], [`blk.${block}.indexer.k_norm.bias`, [IDX_DIM]],
  [`blk.${block}.indexer.proj.weight`, [HIDDEN, IDX_HEADS], 'F32'], [`blk.${block}.indexer.attn_k.weight`, [HIDDEN, IDX_DIM]],
  [`blk.${block}.indexer.attn_q_b.weight`, [Q_RANK, IDX_HEADS * IDX_DIM]],
];
/** A nextn (MTP) layer's own tensors (tensor_mapping.py's NEXTN_*). */
const nextn = (block: number): [string, number[], string?][] => [
  [`blk.${block}.nextn.eh_proj.weight`, [2 * HIDDEN, HIDDEN]], [`blk.${block}.nextn.enorm.weight`, [HIDDEN]],
  [`blk.${block}.nextn.hnorm.weight`, [HIDDEN]], [`blk.${block}.nextn.embed_tokens.weight`, [HIDDEN, VOCAB]],
  [`blk.${block}.nextn.shared_head_head.weight`, [HIDDEN, VOCAB]], [`blk.${block}.nextn.shared_head_norm.weight`, [HIDDEN]],
];
/** Multi-head attention as deepseek2-ocr's loader reads it: q, k, v and o, each n_embd square. */
const mha = (block: number): [string, number[], string?][] => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.attn_q.weight`, [HIDDEN, HIDDEN]], [`blk.${block}.attn_k.weight`, [HIDDEN, HIDDEN]],
  [`blk.${block}.attn_v.weight`, [HIDDEN, HIDDEN]], [`blk.${block}.attn_output.weight`, [HIDDEN, HIDDEN]],
];
const denseMlp = (block: number): [string, number[], string?][] => [
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_up.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_down.weight`, [FFN, HIDDEN]],
];
/** Router, stacked experts and (for DeepSeek and ERNIE) the shared expert. */
const moe = (block: number, shared: boolean): [string, number[], string?][] => [
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate_inp.weight`, [HIDDEN, EXPERTS], 'F32'], [`blk.${block}.exp_probs_b.bias`, [EXPERTS]],
  [`blk.${block}.ffn_gate_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]], [`blk.${block}.ffn_up_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]],
  [`blk.${block}.ffn_down_exps.weight`, [EXPERT_FFN, HIDDEN, EXPERTS]],
  ...(shared ? [
    [`blk.${block}.ffn_gate_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_up_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_down_shexp.weight`, [SHARED, HIDDEN]],
  ] as [string, number[]][] : []),
];
/** Grouped-query attention with per-head q/k norms, as Qwen-style converters write it. */
const qkNormAttention = (block: number): [string, number[], string?][] => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.attn_q.weight`, [HIDDEN, Q]], [`blk.${block}.attn_q_norm.weight`, [HEAD_DIM]],
  [`blk.${block}.attn_k.weight`, [HIDDEN, KV]], [`blk.${block}.attn_k_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_v.weight`, [HIDDEN, KV]],
  [`blk.${block}.attn_output.weight`, [Q, HIDDEN]],
];
/** Attention with a fused qkv (q, then k, then v rows) and per-head q/k norms (Ling 2.0). */
const fusedQkvAttention = (block: number): [string, number[], string?][] => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.attn_qkv.weight`, [HIDDEN, Q + 2 * KV]],
  [`blk.${block}.attn_q_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_k_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_output.weight`, [Q, HIDDEN]],
];
const head: [string, number[], string?][] = [['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]]];
/** Grouped-query attention without q/k norms (DeepSeek-MoE). */
const plainAttention = (block: number) => qkNormAttention(block).filter(([name]) => !/attn_[qk]_norm/.test(name));
/**
 * LlamaModel.permute's row order (DeepseekModel.permute is the same): ΔW row o lands on GGUF row
 * ggufRowOf(o) of each of `heads` heads.
 */
const permuted = (tensor: string, rows: number, heads: number): Landing[] => {
  const hfRowAt = new Array<number>(rows);
  for (let o = 0; o < rows; o++) hfRowAt[ggufRowOf(o, rows, heads)] = o;
  return [{ tensor, cell: (row, col) => [hfRowAt[row], col] }];
};

/** Landings of ΔW rows from `offset` on (one part of a fused module the converter splits). */
const fromRow = (offset: number, landings: Landing[]): Landing[] => landings.map(({ tensor, cell }) => ({
  tensor, cell: (row, col) => {
    const at = cell(row, col);
    return at && [at[0] + offset, at[1]];
  },
}));
/** BailingMoeModel's split of query_key_value (q, k, v rows): q and k permuted, v as it is. */
const lingQkv = (block: number): Landing[] => [
  ...permuted(`blk.${block}.attn_q.weight`, Q, ATT_HEADS),
  ...fromRow(Q, permuted(`blk.${block}.attn_k.weight`, KV, KV_HEADS)),
  ...fromRow(Q + KV, whole(`blk.${block}.attn_v.weight`)),
];
/** PLaMo 2's Mamba mixer: heads, the dt projection's width, d_state (inner = heads · HEAD_DIM). */
const PLAMO_SSM_HEADS = 8, PLAMO_DT = 8, PLAMO_INNER = PLAMO_SSM_HEADS * HEAD_DIM;
/** PLaMo's four norms around the mixer and the MLP (pre_mixer, post_mixer, pre_mlp, post_mlp). */
const plamoNorms = (block: number): [string, number[], string?][] => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.attn_post_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]], [`blk.${block}.ffn_post_norm.weight`, [HIDDEN]],
];
/** PLaMo's attention mixer (fused qkv, per-head q/k norms) and its MLP (fused gate_up on ffn_up). */
const plamoAttention = (block: number): [string, number[], string?][] => [
  ...plamoNorms(block), [`blk.${block}.attn_qkv.weight`, [HIDDEN, Q + 2 * KV]], [`blk.${block}.attn_q_norm.weight`, [HEAD_DIM]],
  [`blk.${block}.attn_k_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_output.weight`, [Q, HIDDEN]],
  [`blk.${block}.ffn_up.weight`, [HIDDEN, 2 * FFN]], [`blk.${block}.ffn_down.weight`, [FFN, HIDDEN]],
];

/** GroveMoE's chunk experts: one per group of experts_per_group routed experts, of CHUNK_FFN rows. */
const EXPERTS_PER_GROUP = 2, CHUNK_FFN = 8;

/** The keys DeepseekV2Model.set_gguf_parameters writes: MLA as MQA (head_count_kv 1), its dims, the MoE. */
const deepseekMetadata = (qLora: boolean, arch = 'deepseek2'): [string, MetaValue][] => [
  [`${arch}.block_count`, u32(2)], [`${arch}.attention.head_count`, u32(HEADS)], [`${arch}.attention.head_count_kv`, u32(1)],
  [`${arch}.leading_dense_block_count`, u32(1)], [`${arch}.vocab_size`, u32(VOCAB)],
  ...(qLora ? [[`${arch}.attention.q_lora_rank`, u32(Q_RANK)]] as [string, MetaValue][] : []),
  [`${arch}.attention.kv_lora_rank`, u32(KV_RANK)], [`${arch}.attention.key_length`, u32(KV_RANK + ROPE)],
  [`${arch}.attention.value_length`, u32(KV_RANK)], [`${arch}.attention.key_length_mla`, u32(NOPE + ROPE)],
  [`${arch}.attention.value_length_mla`, u32(V)], [`${arch}.expert_feed_forward_length`, u32(EXPERT_FFN)],
  [`${arch}.expert_count`, u32(EXPERTS)], [`${arch}.expert_used_count`, u32(2)], [`${arch}.expert_shared_count`, u32(2)],
  [`${arch}.expert_weights_scale`, { type: 'f32', value: 2.5 }], [`${arch}.expert_weights_norm`, { type: 'bool', value: true }],
  [`${arch}.rope.dimension_count`, u32(ROPE)],
];
/**
 * DeepseekV32Model's and GlmMoeDsaModel's keys: deepseek2's, two main blocks and the nextn layer
 * (block_count 3, nextn_predict_layers 1), the indexer's head count, key length and top-k.
 */
const dsaMetadata = (arch: string): [string, MetaValue][] => [
  ...deepseekMetadata(true, arch).filter(([key]) => key !== `${arch}.block_count`),
  [`${arch}.block_count`, u32(3)], [`${arch}.nextn_predict_layers`, u32(1)], [`${arch}.attention.indexer.head_count`, u32(IDX_HEADS)],
  [`${arch}.attention.indexer.key_length`, u32(IDX_DIM)], [`${arch}.attention.indexer.top_k`, u32(4)],
];
/**
 * A DSA model's blocks: block 0 dense, block 1 MoE, block 2 the nextn layer (MoE, with its own
 * tensors), each with MLA and an indexer.
 */
const dsaTensors: [string, number[], string?][] = [
  ['token_embd.weight', [HIDDEN, VOCAB]], ...mla(0, true), ...indexer(0), ...denseMlp(0), ...mla(1, true), ...indexer(1), ...moe(1, true),
  ...mla(2, true), ...indexer(2), ...moe(2, true), ...nextn(2), ...head,
];
/** What a LoRA on a DSA model's indexer, MLA, experts and nextn layer touches. */
const dsaTargets: Target[] = [
  { module: 'model.layers.0.self_attn.indexer.wq_b', out: IDX_HEADS * IDX_DIM, in: Q_RANK, lands: whole('blk.0.indexer.attn_q_b.weight') },
  { module: 'model.layers.0.self_attn.indexer.wk', out: IDX_DIM, in: HIDDEN, lands: whole('blk.0.indexer.attn_k.weight') },
  { module: 'model.layers.1.self_attn.indexer.weights_proj', out: IDX_HEADS, in: HIDDEN, lands: whole('blk.1.indexer.proj.weight') },
  { module: 'model.layers.1.self_attn.q_a_proj', out: Q_RANK, in: HIDDEN, lands: whole('blk.1.attn_q_a.weight') },
  { module: 'model.layers.1.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(1) },
  { module: 'model.layers.1.mlp.experts.2.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN) },
  { module: 'model.layers.2.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(2) },
  { module: 'model.layers.2.self_attn.indexer.wq_b', out: IDX_HEADS * IDX_DIM, in: Q_RANK, lands: whole('blk.2.indexer.attn_q_b.weight') },
  { module: 'model.layers.2.mlp.experts.1.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.2.ffn_down_exps.weight', 1, HIDDEN) },
  { module: 'model.layers.2.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.2.ffn_gate_shexp.weight') },
  { module: 'model.layers.2.eh_proj', out: HIDDEN, in: 2 * HIDDEN, lands: whole('blk.2.nextn.eh_proj.weight') },
  { module: 'model.layers.2.shared_head.head', out: VOCAB, in: HIDDEN, lands: whole('blk.2.nextn.shared_head_head.weight') },
  { module: 'model.layers.2.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('blk.2.nextn.embed_tokens.weight'), embedding: true },
];

const CASES: Case[] = [
  {
    // DeepSeek-V3-like: q_lora_rank set, kv_b_proj split into attn_k_b and attn_v_b; its router
    // is a bare parameter, which PEFT does not target as a module.
    name: 'deepseek2 (V3, attn_k_b and attn_v_b)', arch: 'deepseek2', hfModel: 'deepseek-ai/DeepSeek-V3', rank: 3, alpha: 6,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...mla(0, true), ...denseMlp(0), ...mla(1, true), ...moe(1, true), ...head],
    metadata: deepseekMetadata(true),
    targets: [
      { module: 'model.layers.0.self_attn.q_a_proj', out: Q_RANK, in: HIDDEN, lands: whole('blk.0.attn_q_a.weight') },
      { module: 'model.layers.0.self_attn.q_b_proj', out: HEADS * (NOPE + ROPE), in: Q_RANK, lands: whole('blk.0.attn_q_b.weight') },
      { module: 'model.layers.0.self_attn.kv_a_proj_with_mqa', out: KV_RANK + ROPE, in: HIDDEN, lands: whole('blk.0.attn_kv_a_mqa.weight') },
      { module: 'model.layers.0.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(0) },
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(1) },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: HEADS * V, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.experts.2.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.0.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 0, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.3.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.1.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 1, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_experts.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
    ],
  },
  {
    // DeepSeek-V2-Lite-like: q_proj, a Linear router, and a file that keeps attn_kv_b beside the
    // split (as ik_llama.cpp's converter writes it): kv_b_proj lands on all three.
    name: 'deepseek2 (V2-Lite, attn_kv_b kept beside the split)', arch: 'deepseek2', hfModel: 'deepseek-ai/DeepSeek-V2-Lite-Chat', rank: 2, alpha: 5,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...mla(0, false), ['blk.0.attn_kv_b.weight', [KV_RANK, HEADS * (NOPE + V)]], ...denseMlp(0),
      ...mla(1, false), ['blk.1.attn_kv_b.weight', [KV_RANK, HEADS * (NOPE + V)]], ...moe(1, true), ...head,
    ],
    metadata: deepseekMetadata(false),
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: HEADS * (NOPE + ROPE), in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.1.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: [...kvB(1), ...whole('blk.1.attn_kv_b.weight')] },
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.3.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Mistral Large 3 converted from Mistral's own format (MistralMoeModel, a DeepseekV2Model:
    // written as deepseek2, its attention.wq_a/wq_b/wkv_a_with_mqa/wkv_b/wo, feed_forward.w1-3,
    // shared_experts.w1-3 mapped by name, wkv_b split as kv_b_proj, nothing permuted) and an
    // adapter trained on transformers' Mistral3ForConditionalGeneration, whose conversion
    // (convert_mistral4_weight_to_hf.py) renames the text weights without permuting q/k
    // (rope_interleave reads Mistral's interleaved RoPE rows as they are): the rows are the same on
    // both sides. Its router is a bare parameter, the routed experts fused (target_parameters).
    name: 'deepseek2 (Mistral Large 3 from Mistral\'s format)', arch: 'deepseek2', hfModel: 'mistralai/Mistral-Large-3-675B-Instruct-2512', rank: 3, alpha: 3,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...mla(0, true), ...denseMlp(0), ...mla(1, true),
      ...moe(1, true).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ...deepseekMetadata(true).filter(([key]) => key !== 'deepseek2.expert_shared_count'), ['deepseek2.expert_shared_count', u32(1)],
      ['deepseek2.rope.scaling.type', { type: 'string', value: 'yarn' }], ['deepseek2.rope.scaling.factor', { type: 'f32', value: 36 }],
      ['deepseek2.rope.scaling.yarn_log_multiplier', { type: 'f32', value: 0.1 }], ['deepseek2.rope.scaling.original_context_length', u32(8192)],
      ['deepseek2.attention.temperature_length', u32(8192)], ['deepseek2.attention.temperature_scale', { type: 'f32', value: 0.1 }],
    ],
    targets: [
      { module: 'model.language_model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      ...mlaTargets('model.language_model.', 0),
      { module: 'model.language_model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.language_model.layers.1.self_attn.q_b_proj', out: HEADS * (NOPE + ROPE), in: Q_RANK, lands: whole('blk.1.attn_q_b.weight') },
      { module: 'model.language_model.layers.1.self_attn.kv_a_proj_with_mqa', out: KV_RANK + ROPE, in: HIDDEN, lands: whole('blk.1.attn_kv_a_mqa.weight') },
      { module: 'model.language_model.layers.1.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
      { module: 'model.language_model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Mistral Small 4-like (Mistral4Model: DeepseekV2Model's modify_tensors, so kv_b_proj is split
    // into attn_k_b and attn_v_b; merge_expert off, the fused experts passed on whole), the
    // adapter named as transformers' Mistral3ForConditionalGeneration names the language model.
    name: 'mistral4 (Mistral Small 4)', arch: 'mistral4', hfModel: 'mistralai/Mistral-Small-4-119B-2603', rank: 3, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...mla(0, true), ...denseMlp(0), ...mla(1, true),
      ...moe(1, true).filter(([name]) => !/exp_probs_b|ffn_(gate|up)_exps/.test(name)),
      ['blk.1.ffn_gate_up_exps.weight', [HIDDEN, 2 * EXPERT_FFN, EXPERTS]], ...head,
    ],
    metadata: [
      ...deepseekMetadata(true, 'mistral4').filter(([key]) => key !== 'mistral4.expert_shared_count'), ['mistral4.expert_shared_count', u32(1)],
      ['mistral4.rope.scaling.type', { type: 'string', value: 'yarn' }], ['mistral4.rope.scaling.factor', { type: 'f32', value: 128 }],
      ['mistral4.rope.scaling.original_context_length', u32(8192)], ['mistral4.rope.scaling.yarn_log_multiplier', { type: 'f32', value: 0.1 }],
    ],
    targets: [
      { module: 'model.language_model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      ...mlaTargets('model.language_model.', 0),
      { module: 'model.language_model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.language_model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.language_model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.language_model.layers.1.self_attn.q_b_proj', out: HEADS * (NOPE + ROPE), in: Q_RANK, lands: whole('blk.1.attn_q_b.weight') },
      { module: 'model.language_model.layers.1.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(1) },
      { module: 'model.language_model.layers.1.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
      { module: 'model.language_model.layers.1.mlp.shared_experts.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'model.language_model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // DeepSeek-V3.2-like (DeepseekV32Model, skip_mtp off).
    name: 'deepseek32 (V3.2: indexer, nextn layer)', arch: 'deepseek32', hfModel: 'deepseek-ai/DeepSeek-V3.2', rank: 3, alpha: 5,
    tensors: dsaTensors, metadata: dsaMetadata('deepseek32'), targets: dsaTargets,
  },
  {
    // GLM-5-like (GlmMoeDsaModel, a DeepseekV2Model).
    name: 'glm-dsa (GLM-5: indexer, nextn layer)', arch: 'glm-dsa', hfModel: 'zai-org/GLM-5', rank: 2, alpha: 7,
    tensors: dsaTensors, metadata: dsaMetadata('glm-dsa'), targets: dsaTargets,
  },
  {
    // DeepSeek-OCR's language model (DeepseekV2Model as deepseek2-ocr): no MLA, q/k/v/o as they are.
    name: 'deepseek2-ocr', arch: 'deepseek2-ocr', hfModel: 'deepseek-ai/DeepSeek-OCR', rank: 2, alpha: 3,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...mha(0), ...denseMlp(0), ...mha(1), ...moe(1, true), ...head,
    ],
    metadata: [
      ['deepseek2-ocr.block_count', u32(2)], ['deepseek2-ocr.attention.head_count', u32(ATT_HEADS)], ['deepseek2-ocr.attention.head_count_kv', u32(ATT_HEADS)],
      ['deepseek2-ocr.leading_dense_block_count', u32(1)], ['deepseek2-ocr.vocab_size', u32(VOCAB)], ['deepseek2-ocr.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['deepseek2-ocr.expert_count', u32(EXPERTS)], ['deepseek2-ocr.expert_used_count', u32(2)], ['deepseek2-ocr.expert_shared_count', u32(2)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: HIDDEN, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: HIDDEN, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.1.self_attn.v_proj', out: HIDDEN, in: HIDDEN, lands: whole('blk.1.attn_v.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: HIDDEN, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.1.mlp.experts.3.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
    ],
  },
  {
    // LFM2-8B-A1B-like: block 0 a short-conv block with the dense MLP, block 1 attention with MoE.
    name: 'lfm2moe', arch: 'lfm2moe', hfModel: 'LiquidAI/LFM2-8B-A1B', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['token_embd_norm.weight', [HIDDEN]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.shortconv.conv.weight', [3, HIDDEN]],
      ['blk.0.shortconv.in_proj.weight', [HIDDEN, 3 * HIDDEN]], ['blk.0.shortconv.out_proj.weight', [HIDDEN, HIDDEN]], ...denseMlp(0),
      ['blk.1.attn_norm.weight', [HIDDEN]], ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_q_norm.weight', [HEAD_DIM]],
      ['blk.1.attn_k.weight', [HIDDEN, KV]], ['blk.1.attn_k_norm.weight', [HEAD_DIM]], ['blk.1.attn_v.weight', [HIDDEN, KV]],
      ['blk.1.attn_output.weight', [Q, HIDDEN]], ...moe(1, false),
    ],
    metadata: [
      ['lfm2moe.block_count', u32(2)], ['lfm2moe.attention.head_count', u32(ATT_HEADS)], ['lfm2moe.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [0, KV_HEADS] }],
      ['lfm2moe.expert_count', u32(EXPERTS)], ['lfm2moe.expert_used_count', u32(2)], ['lfm2moe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['lfm2moe.leading_dense_block_count', u32(1)], ['lfm2moe.expert_gating_func', u32(2)], ['lfm2moe.vocab_size', u32(VOCAB)], ['lfm2moe.shortconv.l_cache', u32(3)],
    ],
    targets: [
      { module: 'model.layers.0.conv.in_proj', out: 3 * HIDDEN, in: HIDDEN, lands: whole('blk.0.shortconv.in_proj.weight') },
      { module: 'model.layers.0.feed_forward.w1', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.0.feed_forward.w2', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.1.attn_q.weight') },
      { module: 'model.layers.1.self_attn.out_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.feed_forward.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.feed_forward.experts.1.w1', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.feed_forward.experts.3.w3', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.1.feed_forward.experts.0.w2', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 0, HIDDEN) },
    ],
  },
  {
    // ERNIE-4.5-21B-A3B-like: block 0 dense, block 1 MoE with shared experts.
    name: 'ernie4_5-moe', arch: 'ernie4_5-moe', hfModel: 'baidu/ERNIE-4.5-21B-A3B-PT', rank: 4, alpha: 8,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]],
      ['blk.0.attn_v.weight', [HIDDEN, KV]], ['blk.0.attn_output.weight', [Q, HIDDEN]], ...denseMlp(0),
      ['blk.1.attn_norm.weight', [HIDDEN]], ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_k.weight', [HIDDEN, KV]],
      ['blk.1.attn_v.weight', [HIDDEN, KV]], ['blk.1.attn_output.weight', [Q, HIDDEN]], ...moe(1, true), ...head,
    ],
    metadata: [
      ['ernie4_5-moe.block_count', u32(2)], ['ernie4_5-moe.attention.head_count', u32(ATT_HEADS)], ['ernie4_5-moe.attention.head_count_kv', u32(KV_HEADS)],
      ['ernie4_5-moe.expert_count', u32(EXPERTS)], ['ernie4_5-moe.expert_used_count', u32(2)], ['ernie4_5-moe.interleave_moe_layer_step', u32(1)],
      ['ernie4_5-moe.leading_dense_block_count', u32(1)], ['ernie4_5-moe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['ernie4_5-moe.expert_shared_count', u32(2)], ['ernie4_5-moe.expert_shared_feed_forward_length', u32(SHARED)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.1.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_v.weight') },
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.2.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.2.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.1.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 1, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
    ],
  },
  {
    // MiniMax-M2-like: every block MoE (no shared expert), sigmoid routing with a correction bias;
    // its q_norm and k_norm span all heads.
    name: 'minimax-m2', arch: 'minimax-m2', hfModel: 'MiniMaxAI/MiniMax-M2.5', rank: 3, alpha: 3,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ...[0, 1].flatMap((b): [string, number[], string?][] => [
        [`blk.${b}.attn_norm.weight`, [HIDDEN]], [`blk.${b}.attn_q.weight`, [HIDDEN, Q]], [`blk.${b}.attn_q_norm.weight`, [Q]],
        [`blk.${b}.attn_k.weight`, [HIDDEN, KV]], [`blk.${b}.attn_k_norm.weight`, [KV]], [`blk.${b}.attn_v.weight`, [HIDDEN, KV]],
        [`blk.${b}.attn_output.weight`, [Q, HIDDEN]], ...moe(b, false),
      ]),
      ...head,
    ],
    metadata: [
      ['minimax-m2.block_count', u32(2)], ['minimax-m2.attention.head_count', u32(ATT_HEADS)], ['minimax-m2.attention.head_count_kv', u32(KV_HEADS)],
      ['minimax-m2.attention.key_length', u32(HEAD_DIM)], ['minimax-m2.attention.value_length', u32(HEAD_DIM)],
      ['minimax-m2.expert_count', u32(EXPERTS)], ['minimax-m2.expert_used_count', u32(2)], ['minimax-m2.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['minimax-m2.expert_gating_func', u32(2)], ['minimax-m2.rope.dimension_count', u32(HEAD_DIM / 2)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.0.block_sparse_moe.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.block_sparse_moe.experts.1.w1', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.block_sparse_moe.experts.3.w3', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.1.block_sparse_moe.experts.0.w2', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 0, HIDDEN) },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Hunyuan-A13B-like: every block MoE with one shared MLP; per-head query/key norms.
    name: 'hunyuan-moe', arch: 'hunyuan-moe', hfModel: 'tencent/Hunyuan-A13B-Instruct', rank: 2, alpha: 5,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_q_norm.weight', [HEAD_DIM]],
      ['blk.0.attn_k.weight', [HIDDEN, KV]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]], ['blk.0.attn_v.weight', [HIDDEN, KV]],
      ['blk.0.attn_output.weight', [Q, HIDDEN]], ...moe(0, true).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['hunyuan-moe.block_count', u32(1)], ['hunyuan-moe.attention.head_count', u32(ATT_HEADS)], ['hunyuan-moe.attention.head_count_kv', u32(KV_HEADS)],
      ['hunyuan-moe.expert_count', u32(EXPERTS)], ['hunyuan-moe.expert_used_count', u32(2)], ['hunyuan-moe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['hunyuan-moe.expert_shared_feed_forward_length', u32(SHARED)], ['hunyuan-moe.expert_shared_count', u32(1)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.gate.wg', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.mlp.experts.3.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.experts.1.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.experts.2.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 2, HIDDEN) },
      { module: 'model.layers.0.mlp.shared_mlp.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.0.ffn_gate_shexp.weight') },
      { module: 'model.layers.0.mlp.shared_mlp.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.0.ffn_up_shexp.weight') },
      { module: 'model.layers.0.mlp.shared_mlp.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.0.ffn_down_shexp.weight') },
    ],
  },
  {
    // Phi-3.5-MoE-like (PhiMoeModel): LayerNorms with biases, biased q/k/v/o and head, LongRoPE
    // factors; transformers 4's block_sparse_moe names; q and k as they are.
    name: 'phimoe (Phi-3.5-MoE)', arch: 'phimoe', hfModel: 'microsoft/Phi-3.5-MoE-instruct', rank: 3, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['rope_factors_long.weight', [HEAD_DIM / 2]], ['rope_factors_short.weight', [HEAD_DIM / 2]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_norm.bias', [HIDDEN]],
      ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_q.bias', [Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]], ['blk.0.attn_k.bias', [KV]],
      ['blk.0.attn_v.weight', [HIDDEN, KV]], ['blk.0.attn_v.bias', [KV]], ['blk.0.attn_output.weight', [Q, HIDDEN]], ['blk.0.attn_output.bias', [HIDDEN]],
      ['blk.0.ffn_norm.bias', [HIDDEN]], ...moe(0, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')),
      ['output_norm.weight', [HIDDEN]], ['output_norm.bias', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]], ['output.bias', [VOCAB]],
    ],
    metadata: [
      ['phimoe.block_count', u32(1)], ['phimoe.attention.head_count', u32(ATT_HEADS)], ['phimoe.attention.head_count_kv', u32(KV_HEADS)],
      ['phimoe.rope.dimension_count', u32(HEAD_DIM)], ['phimoe.rope.scaling.original_context_length', u32(4096)],
      ['phimoe.rope.scaling.attn_factor', { type: 'f32', value: 1.19 }], ['phimoe.attention.sliding_window', u32(0)],
      ['phimoe.expert_count', u32(EXPERTS)], ['phimoe.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.block_sparse_moe.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.block_sparse_moe.experts.2.w1', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.0.block_sparse_moe.experts.0.w3', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_exps.weight', 0, EXPERT_FFN) },
      { module: 'model.layers.0.block_sparse_moe.experts.3.w2', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // The same file with an adapter from transformers 5's Phimoe, whose router is `mlp.router` (a Linear).
    name: 'phimoe (transformers 5 router)', arch: 'phimoe', hfModel: 'microsoft/Phi-3.5-MoE-instruct', rank: 2, alpha: 2,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]],
      ['blk.0.attn_v.weight', [HIDDEN, KV]], ['blk.0.attn_output.weight', [Q, HIDDEN]], ...moe(0, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['phimoe.block_count', u32(1)], ['phimoe.attention.head_count', u32(ATT_HEADS)], ['phimoe.attention.head_count_kv', u32(KV_HEADS)],
      ['phimoe.expert_count', u32(EXPERTS)], ['phimoe.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.0.mlp.router', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
    ],
  },
  {
    // dots.llm1-like (Dots1Model, a Qwen2MoeModel): a leading dense block, then a MoE block with the
    // router's correction bias, two shared experts; per-head q/k norms.
    name: 'dots1 (dots.llm1)', arch: 'dots1', hfModel: 'rednote-hilab/dots.llm1.inst', rank: 3, alpha: 5,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...qkNormAttention(0), ...denseMlp(0), ...qkNormAttention(1), ...moe(1, true), ...head,
    ],
    metadata: [
      ['dots1.block_count', u32(2)], ['dots1.attention.head_count', u32(ATT_HEADS)], ['dots1.attention.head_count_kv', u32(KV_HEADS)],
      ['dots1.leading_dense_block_count', u32(1)], ['dots1.expert_count', u32(EXPERTS)], ['dots1.expert_used_count', u32(2)],
      ['dots1.expert_feed_forward_length', u32(EXPERT_FFN)], ['dots1.expert_shared_count', u32(2)],
      ['dots1.expert_weights_scale', { type: 'f32', value: 2.5 }], ['dots1.expert_weights_norm', { type: 'bool', value: true }],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.1.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_k.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.experts.1.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.3.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_experts.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
    ],
  },
  {
    // DBRX-like (DbrxModel): the fused Wqkv on attn_qkv (q rows, then k, then v), its LayerNorms
    // without bias, the router (BF16, tensor_force_quant), experts stacked (not Linears); the embedding too.
    name: 'dbrx', arch: 'dbrx', hfModel: 'databricks/dbrx-instruct', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_qkv.weight', [HIDDEN, Q + 2 * KV]],
      ['blk.0.attn_output.weight', [Q, HIDDEN]], ['blk.0.attn_output_norm.weight', [HIDDEN]],
      ['blk.0.ffn_gate_inp.weight', [HIDDEN, EXPERTS]], ['blk.0.ffn_gate_exps.weight', [HIDDEN, EXPERT_FFN, EXPERTS]],
      ['blk.0.ffn_up_exps.weight', [HIDDEN, EXPERT_FFN, EXPERTS]], ['blk.0.ffn_down_exps.weight', [EXPERT_FFN, HIDDEN, EXPERTS]], ...head,
    ],
    metadata: [
      ['dbrx.block_count', u32(1)], ['dbrx.attention.head_count', u32(ATT_HEADS)], ['dbrx.attention.head_count_kv', u32(KV_HEADS)],
      ['dbrx.attention.clamp_kqv', { type: 'f32', value: 8 }], ['dbrx.attention.layer_norm_epsilon', { type: 'f32', value: 1e-5 }],
      ['dbrx.expert_count', u32(EXPERTS)], ['dbrx.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'transformer.wte', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'transformer.blocks.0.norm_attn_norm.attn.Wqkv', out: Q + 2 * KV, in: HIDDEN, lands: whole('blk.0.attn_qkv.weight') },
      { module: 'transformer.blocks.0.norm_attn_norm.attn.out_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'transformer.blocks.0.ffn.router.layer', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Jamba-like (JambaModel): block 0 a Mamba-1 mixer (d_inner 64, d_state 4, dt_rank 2, conv
    // kernel 4) with a dense MLP, block 1 attention with the MoE; head_count_kv 0 on Mamba blocks.
    name: 'jamba', arch: 'jamba', hfModel: 'ai21labs/AI21-Jamba-Mini-1.7', rank: 3, alpha: 3,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.ssm_in.weight', [HIDDEN, 2 * D_INNER]], ['blk.0.ssm_conv1d.weight', [4, D_INNER], 'F32'], ['blk.0.ssm_conv1d.bias', [D_INNER]],
      ['blk.0.ssm_x.weight', [D_INNER, DT_RANK + 2 * D_STATE]], ['blk.0.ssm_dt.weight', [DT_RANK, D_INNER]], ['blk.0.ssm_dt.bias', [D_INNER]],
      ['blk.0.ssm_dt_norm.weight', [DT_RANK]], ['blk.0.ssm_b_norm.weight', [D_STATE]], ['blk.0.ssm_c_norm.weight', [D_STATE]],
      ['blk.0.ssm_a', [D_STATE, D_INNER], 'F32'], ['blk.0.ssm_d', [D_INNER]], ['blk.0.ssm_out.weight', [D_INNER, HIDDEN]], ...denseMlp(0),
      ['blk.1.attn_norm.weight', [HIDDEN]], ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_k.weight', [HIDDEN, KV]],
      ['blk.1.attn_v.weight', [HIDDEN, KV]], ['blk.1.attn_output.weight', [Q, HIDDEN]],
      ...moe(1, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['jamba.block_count', u32(2)], ['jamba.attention.head_count', u32(ATT_HEADS)],
      ['jamba.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [0, KV_HEADS] }],
      ['jamba.ssm.conv_kernel', u32(4)], ['jamba.ssm.inner_size', u32(D_INNER)], ['jamba.ssm.state_size', u32(D_STATE)],
      ['jamba.ssm.time_step_rank', u32(DT_RANK)], ['jamba.expert_count', u32(EXPERTS)], ['jamba.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.layers.0.mamba.in_proj', out: 2 * D_INNER, in: HIDDEN, lands: whole('blk.0.ssm_in.weight') },
      { module: 'model.layers.0.mamba.x_proj', out: DT_RANK + 2 * D_STATE, in: D_INNER, lands: whole('blk.0.ssm_x.weight') },
      { module: 'model.layers.0.mamba.dt_proj', out: D_INNER, in: DT_RANK, lands: whole('blk.0.ssm_dt.weight') },
      { module: 'model.layers.0.mamba.out_proj', out: HIDDEN, in: D_INNER, lands: whole('blk.0.ssm_out.weight') },
      { module: 'model.layers.0.feed_forward.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.0.feed_forward.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.1.attn_q.weight') },
      { module: 'model.layers.1.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_k.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.feed_forward.router', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.feed_forward.experts.1.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.feed_forward.experts.2.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.feed_forward.experts.0.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 0, HIDDEN) },
    ],
  },
  {
    // Ling-mini-2.0-like (BailingMoeV2Model): a leading dense block, a MoE block and the nextn layer
    // kept as the last block (block_count 3, nextn_predict_layers 1); fused qkv with q/k norms,
    // partial RoPE; the router's expert bias as exp_probs_b.
    name: 'bailingmoe2 (Ling 2.0: nextn layer)', arch: 'bailingmoe2', hfModel: 'inclusionAI/Ling-mini-2.0', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...fusedQkvAttention(0), ...denseMlp(0), ...fusedQkvAttention(1), ...moe(1, true),
      ...fusedQkvAttention(2), ...moe(2, true), ['blk.2.nextn.eh_proj.weight', [2 * HIDDEN, HIDDEN]], ['blk.2.nextn.enorm.weight', [HIDDEN]],
      ['blk.2.nextn.hnorm.weight', [HIDDEN]], ...head,
    ],
    metadata: [
      ['bailingmoe2.block_count', u32(3)], ['bailingmoe2.nextn_predict_layers', u32(1)], ['bailingmoe2.attention.head_count', u32(ATT_HEADS)],
      ['bailingmoe2.attention.head_count_kv', u32(KV_HEADS)], ['bailingmoe2.rope.dimension_count', u32(HEAD_DIM / 2)],
      ['bailingmoe2.leading_dense_block_count', u32(1)], ['bailingmoe2.vocab_size', u32(VOCAB)],
      ['bailingmoe2.expert_count', u32(EXPERTS)], ['bailingmoe2.expert_used_count', u32(2)], ['bailingmoe2.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['bailingmoe2.expert_shared_feed_forward_length', u32(SHARED)], ['bailingmoe2.expert_shared_count', u32(1)],
      ['bailingmoe2.expert_weights_scale', { type: 'f32', value: 2.5 }], ['bailingmoe2.expert_weights_norm', { type: 'bool', value: true }],
    ],
    targets: [
      { module: 'model.word_embeddings', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.attention.query_key_value', out: Q + 2 * KV, in: HIDDEN, lands: whole('blk.0.attn_qkv.weight') },
      { module: 'model.layers.0.attention.dense', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.attention.query_key_value', out: Q + 2 * KV, in: HIDDEN, lands: whole('blk.1.attn_qkv.weight') },
      { module: 'model.layers.1.mlp.experts.2.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'model.layers.2.attention.dense', out: HIDDEN, in: Q, lands: whole('blk.2.attn_output.weight') },
      { module: 'model.layers.2.mlp.experts.0.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.2.ffn_up_exps.weight', 0, EXPERT_FFN) },
      { module: 'model.layers.2.eh_proj', out: HIDDEN, in: 2 * HIDDEN, lands: whole('blk.2.nextn.eh_proj.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // deepseek-moe-16b-like (DeepseekModel): a leading dense block, a MoE block with two shared
    // experts (no correction bias); q permuted by the heads, k by the kv heads.
    name: 'deepseek (DeepSeek-MoE, V1)', arch: 'deepseek', hfModel: 'deepseek-ai/deepseek-moe-16b-base', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plainAttention(0), ...denseMlp(0), ...plainAttention(1),
      ...moe(1, true).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['deepseek.block_count', u32(2)], ['deepseek.attention.head_count', u32(ATT_HEADS)], ['deepseek.attention.head_count_kv', u32(KV_HEADS)],
      ['deepseek.rope.dimension_count', u32(HEAD_DIM)], ['deepseek.rope.scaling.type', { type: 'string', value: 'none' }],
      ['deepseek.leading_dense_block_count', u32(1)], ['deepseek.vocab_size', u32(VOCAB)], ['deepseek.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['deepseek.expert_weights_scale', { type: 'f32', value: 1 }], ['deepseek.expert_count', u32(EXPERTS)],
      ['deepseek.expert_shared_count', u32(2)], ['deepseek.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: permuted('blk.0.attn_q.weight', Q, ATT_HEADS) },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: permuted('blk.0.attn_k.weight', KV, KV_HEADS) },
      { module: 'model.layers.0.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: Q, in: HIDDEN, lands: permuted('blk.1.attn_q.weight', Q, ATT_HEADS) },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.1.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.3.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // K-EXAONE-like (ExaoneMoEModel): a leading dense block, a MoE block with a shared expert and
    // the router's correction bias, and the MTP block the converter adds (block_count 3,
    // nextn_predict_layers 1), which no module here names; q and k with per-head norms.
    name: 'exaone-moe (K-EXAONE)', arch: 'exaone-moe', hfModel: 'LGAI-EXAONE/K-EXAONE-236B-A23B', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...qkNormAttention(0), ...denseMlp(0), ...qkNormAttention(1), ...moe(1, true),
      ...qkNormAttention(2), ...moe(2, true), ['blk.2.nextn.eh_proj.weight', [2 * HIDDEN, HIDDEN]], ['blk.2.nextn.enorm.weight', [HIDDEN]],
      ['blk.2.nextn.hnorm.weight', [HIDDEN]], ['blk.2.nextn.shared_head_norm.weight', [HIDDEN]], ...head,
    ],
    metadata: [
      ['exaone-moe.block_count', u32(3)], ['exaone-moe.nextn_predict_layers', u32(1)], ['exaone-moe.attention.head_count', u32(ATT_HEADS)],
      ['exaone-moe.attention.head_count_kv', u32(KV_HEADS)], ['exaone-moe.attention.sliding_window', u32(128)],
      ['exaone-moe.vocab_size', u32(VOCAB)], ['exaone-moe.expert_count', u32(EXPERTS)], ['exaone-moe.expert_used_count', u32(2)],
      ['exaone-moe.expert_feed_forward_length', u32(EXPERT_FFN)], ['exaone-moe.expert_shared_count', u32(2)],
      ['exaone-moe.expert_shared_feed_forward_length', u32(SHARED)], ['exaone-moe.expert_weights_scale', { type: 'f32', value: 2.5 }],
      ['exaone-moe.expert_weights_norm', { type: 'bool', value: true }], ['exaone-moe.leading_dense_block_count', u32(1)],
      ['exaone-moe.rope.scaling.type', { type: 'string', value: 'none' }],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_v.weight') },
      { module: 'model.layers.1.mlp.experts.2.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.experts.0.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 0, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_experts.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Trinity-Mini-like (AfmoeModel): a leading dense block and a MoE block with a shared expert and
    // the expert bias; attention with per-head q/k norms and a sigmoid output gate, not permuted.
    name: 'afmoe (Arcee Trinity)', arch: 'afmoe', hfModel: 'arcee-ai/Trinity-Mini', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...qkNormAttention(0), ['blk.0.attn_gate.weight', [HIDDEN, Q]], ...denseMlp(0),
      ...qkNormAttention(1), ['blk.1.attn_gate.weight', [HIDDEN, Q]], ...moe(1, true), ...head,
    ],
    metadata: [
      ['afmoe.block_count', u32(2)], ['afmoe.attention.head_count', u32(ATT_HEADS)], ['afmoe.attention.head_count_kv', u32(KV_HEADS)],
      ['afmoe.rope.dimension_count', u32(HEAD_DIM)], ['afmoe.vocab_size', u32(VOCAB)], ['afmoe.expert_count', u32(EXPERTS)],
      ['afmoe.expert_used_count', u32(2)], ['afmoe.expert_shared_count', u32(2)], ['afmoe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['afmoe.leading_dense_block_count', u32(1)], ['afmoe.expert_weights_norm', { type: 'bool', value: true }],
      ['afmoe.expert_weights_scale', { type: 'f32', value: 2.826 }], ['afmoe.attention.sliding_window', u32(2048)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.gate_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_gate.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.1.self_attn.gate_proj', out: Q, in: HIDDEN, lands: whole('blk.1.attn_gate.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.router.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.3.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // North-Mini-Code-like (Cohere2MoeModel): a leading dense block, a MoE block with a shared
    // expert and a sigmoid router; grouped-query attention without q/k norms.
    name: 'cohere2moe (North)', arch: 'cohere2moe', hfModel: 'CohereLabs/North-Mini-Code-1.0', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plainAttention(0), ...denseMlp(0), ...plainAttention(1),
      ...moe(1, true).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['cohere2moe.block_count', u32(2)], ['cohere2moe.attention.head_count', u32(ATT_HEADS)], ['cohere2moe.attention.head_count_kv', u32(KV_HEADS)],
      ['cohere2moe.logit_scale', { type: 'f32', value: 1 }], ['cohere2moe.attention.sliding_window', u32(4096)],
      ['cohere2moe.vocab_size', u32(VOCAB)], ['cohere2moe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['cohere2moe.leading_dense_block_count', u32(1)], ['cohere2moe.expert_weights_norm', { type: 'bool', value: false }],
      ['cohere2moe.expert_gating_func', u32(2)], ['cohere2moe.expert_shared_count', u32(2)],
      ['cohere2moe.expert_shared_feed_forward_length', u32(SHARED)], ['cohere2moe.rope.dimension_count', u32(HEAD_DIM)],
      ['cohere2moe.expert_count', u32(EXPERTS)], ['cohere2moe.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.1.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // SmallThinker-4BA0.6B-like (SmallThinkerModel): two MoE blocks, no dense MLP, no shared expert.
    name: 'smallthinker', arch: 'smallthinker', hfModel: 'PowerInfer/SmallThinker-4BA0.6B-Instruct', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plainAttention(0), ...moe(0, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')),
      ...plainAttention(1), ...moe(1, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['smallthinker.block_count', u32(2)], ['smallthinker.attention.head_count', u32(ATT_HEADS)], ['smallthinker.attention.head_count_kv', u32(KV_HEADS)],
      ['smallthinker.expert_count', u32(EXPERTS)], ['smallthinker.expert_used_count', u32(2)],
      ['smallthinker.expert_feed_forward_length', u32(EXPERT_FFN)], ['smallthinker.expert_gating_func', u32(1)],
      ['smallthinker.attention.sliding_window', u32(4096)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.block_sparse_moe.primary_router', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.block_sparse_moe.experts.2.gate', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.block_sparse_moe.experts.0.up', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 0, EXPERT_FFN) },
      { module: 'model.layers.1.block_sparse_moe.experts.3.down', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'model.layers.1.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_v.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // MiniCPM3-4B-like (MiniCPM3Model): DeepSeek-V2's MLA names, kv_b_proj written whole to
    // attn_kv_b, nothing permuted; LongRoPE factors over the rope dims; the dense MLP.
    name: 'minicpm3', arch: 'minicpm3', hfModel: 'openbmb/MiniCPM3-4B', rank: 2, alpha: 6,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['rope_factors_long.weight', [ROPE / 2]], ['rope_factors_short.weight', [ROPE / 2]],
      ...mla(0, true).filter(([name]) => !/attn_[kv]_b\./.test(name)), ['blk.0.attn_kv_b.weight', [KV_RANK, HEADS * (NOPE + V)]], ...denseMlp(0), ...head,
    ],
    metadata: [
      ['minicpm3.block_count', u32(1)], ['minicpm3.attention.head_count', u32(HEADS)], ['minicpm3.attention.head_count_kv', u32(HEADS)],
      ['minicpm3.vocab_size', u32(VOCAB)], ['minicpm3.attention.q_lora_rank', u32(Q_RANK)], ['minicpm3.attention.kv_lora_rank', u32(KV_RANK)],
      ['minicpm3.attention.key_length', u32(NOPE + ROPE)], ['minicpm3.rope.dimension_count', u32(ROPE)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_a_proj', out: Q_RANK, in: HIDDEN, lands: whole('blk.0.attn_q_a.weight') },
      { module: 'model.layers.0.self_attn.q_b_proj', out: HEADS * (NOPE + ROPE), in: Q_RANK, lands: whole('blk.0.attn_q_b.weight') },
      { module: 'model.layers.0.self_attn.kv_a_proj_with_mqa', out: KV_RANK + ROPE, in: HIDDEN, lands: whole('blk.0.attn_kv_a_mqa.weight') },
      { module: 'model.layers.0.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: whole('blk.0.attn_kv_b.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: HEADS * V, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Ling-lite-like (BailingMoeModel): every block MoE (first_k_dense_replace 0), two shared
    // experts; the fused query_key_value split and q/k permuted by the converter.
    name: 'bailingmoe (Ling 1)', arch: 'bailingmoe', hfModel: 'inclusionAI/Ling-lite', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plainAttention(0), ...moe(0, true).filter(([name]) => !name.endsWith('exp_probs_b.bias')), ...head,
    ],
    metadata: [
      ['bailingmoe.block_count', u32(1)], ['bailingmoe.attention.head_count', u32(ATT_HEADS)], ['bailingmoe.attention.head_count_kv', u32(KV_HEADS)],
      ['bailingmoe.rope.dimension_count', u32(HEAD_DIM)], ['bailingmoe.leading_dense_block_count', u32(0)], ['bailingmoe.vocab_size', u32(VOCAB)],
      ['bailingmoe.expert_feed_forward_length', u32(EXPERT_FFN)], ['bailingmoe.expert_weights_scale', { type: 'f32', value: 1 }],
      ['bailingmoe.expert_shared_count', u32(SHARED / EXPERT_FFN)], ['bailingmoe.expert_weights_norm', { type: 'bool', value: true }],
      ['bailingmoe.expert_count', u32(EXPERTS)], ['bailingmoe.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.word_embeddings', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.attention.query_key_value', out: Q + 2 * KV, in: HIDDEN, lands: lingQkv(0) },
      { module: 'model.layers.0.attention.dense', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.experts.2.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.experts.0.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 0, HIDDEN) },
      { module: 'model.layers.0.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.0.ffn_gate_shexp.weight') },
    ],
  },
  {
    // Snowflake-Arctic-like (ArcticModel): one block with the dense residual MLP (ffn_norm) and the
    // MoE (ffn_norm_exps), grouped-query attention with q and k permuted.
    name: 'arctic (Snowflake Arctic)', arch: 'arctic', hfModel: 'Snowflake/snowflake-arctic-instruct', rank: 3, alpha: 3,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plainAttention(0), ...denseMlp(0), ['blk.0.ffn_norm_exps.weight', [HIDDEN]],
      ...moe(0, false).filter(([name]) => !/ffn_norm|exp_probs_b/.test(name)), ...head,
    ],
    metadata: [
      ['arctic.block_count', u32(1)], ['arctic.attention.head_count', u32(ATT_HEADS)], ['arctic.attention.head_count_kv', u32(KV_HEADS)],
      ['arctic.vocab_size', u32(VOCAB)], ['arctic.rope.dimension_count', u32(HEAD_DIM)],
      ['arctic.expert_count', u32(EXPERTS)], ['arctic.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: permuted('blk.0.attn_q.weight', Q, ATT_HEADS) },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: permuted('blk.0.attn_k.weight', KV, KV_HEADS) },
      { module: 'model.layers.0.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.residual_mlp.w1', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.0.residual_mlp.w3', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.0.residual_mlp.w2', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.0.block_sparse_moe.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.block_sparse_moe.experts.1.w1', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.layers.0.block_sparse_moe.experts.3.w3', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.0.block_sparse_moe.experts.2.w2', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 2, HIDDEN) },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // PLaMo-2-1B-like (Plamo2Model, mamba_step 2): block 0 Mamba (8 heads of 8, d_state 4, a dt
    // projection of 8, conv kernel 4), block 1 attention; head counts 0 on the Mamba block.
    name: 'plamo2 (PLaMo 2)', arch: 'plamo2', hfModel: 'pfnet/plamo-2-1b', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...plamoNorms(0),
      ['blk.0.ssm_in.weight', [HIDDEN, 2 * PLAMO_INNER]], ['blk.0.ssm_conv1d.weight', [4, PLAMO_INNER]],
      ['blk.0.ssm_x.weight', [PLAMO_INNER, PLAMO_DT + 2 * D_STATE]], ['blk.0.ssm_dt.weight', [PLAMO_DT, PLAMO_SSM_HEADS]],
      ['blk.0.ssm_dt.bias', [PLAMO_SSM_HEADS]], ['blk.0.ssm_a', [PLAMO_SSM_HEADS]], ['blk.0.ssm_d', [PLAMO_SSM_HEADS]],
      ['blk.0.ssm_dt_norm.weight', [PLAMO_DT]], ['blk.0.ssm_b_norm.weight', [D_STATE]], ['blk.0.ssm_c_norm.weight', [D_STATE]],
      ['blk.0.ssm_out.weight', [PLAMO_INNER, HIDDEN]], ['blk.0.ffn_up.weight', [HIDDEN, 2 * FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
      ...plamoAttention(1), ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['plamo2.vocab_size', u32(VOCAB)], ['plamo2.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [0, KV_HEADS] }],
      ['plamo2.attention.head_count', { type: 'array', itemType: 'u32', value: [0, ATT_HEADS] }],
      ['plamo2.attention.key_length', u32(HEAD_DIM)], ['plamo2.attention.value_length', u32(HEAD_DIM)], ['plamo2.block_count', u32(2)],
      ['plamo2.ssm.state_size', u32(D_STATE)], ['plamo2.ssm.conv_kernel', u32(4)], ['plamo2.ssm.time_step_rank', u32(PLAMO_SSM_HEADS)],
      ['plamo2.ssm.inner_size', u32(PLAMO_INNER)], ['plamo2.ssm.group_count', u32(0)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.layers.0.mixer.in_proj', out: 2 * PLAMO_INNER, in: HIDDEN, lands: whole('blk.0.ssm_in.weight') },
      { module: 'model.layers.layers.0.mixer.bcdt_proj', out: PLAMO_DT + 2 * D_STATE, in: PLAMO_INNER, lands: whole('blk.0.ssm_x.weight') },
      { module: 'model.layers.layers.0.mixer.dt_proj', out: PLAMO_SSM_HEADS, in: PLAMO_DT, lands: whole('blk.0.ssm_dt.weight') },
      { module: 'model.layers.layers.0.mixer.out_proj', out: HIDDEN, in: PLAMO_INNER, lands: whole('blk.0.ssm_out.weight') },
      { module: 'model.layers.layers.0.mlp.gate_up_proj', out: 2 * FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.layers.1.mixer.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: whole('blk.1.attn_qkv.weight') },
      { module: 'model.layers.layers.1.mixer.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.layers.1.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.1.ffn_down.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // PLaMo-3-like (Plamo3Model): attention blocks only, per-head q/k norms, sliding window.
    name: 'plamo3 (PLaMo 3)', arch: 'plamo3', hfModel: 'pfnet/plamo-3-nict-2b-base', rank: 2, alpha: 2,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...plamoAttention(0), ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]]],
    metadata: [
      ['plamo3.block_count', u32(1)], ['plamo3.attention.head_count', u32(ATT_HEADS)], ['plamo3.attention.head_count_kv', u32(KV_HEADS)],
      ['plamo3.attention.key_length', u32(HEAD_DIM)], ['plamo3.attention.value_length', u32(HEAD_DIM)], ['plamo3.vocab_size', u32(VOCAB)],
      ['plamo3.attention.sliding_window', u32(2048)],
    ],
    targets: [
      { module: 'model.layers.layers.0.mixer.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: whole('blk.0.attn_qkv.weight') },
      { module: 'model.layers.layers.0.mixer.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.layers.0.mlp.gate_up_proj', out: 2 * FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Step-3.5-Flash-like (Step35Model): a leading dense block on sliding-window attention, a MoE
    // block on full attention with a shared expert and the router's bias; per-head q/k norms and
    // the head-wise output gate.
    name: 'step35 (Step 3.5)', arch: 'step35', hfModel: 'stepfun-ai/Step-3.5-Flash', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...qkNormAttention(0), ['blk.0.attn_gate.weight', [HIDDEN, ATT_HEADS]], ...denseMlp(0),
      ...qkNormAttention(1), ['blk.1.attn_gate.weight', [HIDDEN, ATT_HEADS]], ...moe(1, true), ...head,
    ],
    metadata: [
      ['step35.block_count', u32(2)], ['step35.attention.head_count', { type: 'array', itemType: 'u32', value: [ATT_HEADS, ATT_HEADS] }],
      ['step35.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [KV_HEADS, KV_HEADS] }],
      ['step35.attention.sliding_window', u32(512)], ['step35.attention.sliding_window_pattern', { type: 'array', itemType: 'bool', value: [true, false] }],
      ['step35.attention.key_length', u32(HEAD_DIM)], ['step35.attention.value_length', u32(HEAD_DIM)],
      ['step35.expert_count', u32(EXPERTS)], ['step35.expert_used_count', u32(2)], ['step35.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['step35.expert_shared_feed_forward_length', u32(SHARED)], ['step35.expert_weights_scale', { type: 'f32', value: 3 }],
      ['step35.expert_weights_norm', { type: 'bool', value: true }], ['step35.leading_dense_block_count', u32(1)], ['step35.moe_every_n_layers', u32(1)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.g_proj', out: ATT_HEADS, in: HIDDEN, lands: whole('blk.0.attn_gate.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.self_attn.g_proj', out: ATT_HEADS, in: HIDDEN, lands: whole('blk.1.attn_gate.weight') },
      { module: 'model.layers.1.moe.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.share_expert.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'model.layers.1.share_expert.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // GroveMoE-Inst-like (GroveMoeModel): one MoE block of four experts in groups of two, so two
    // chunk experts of CHUNK_FFN rows; per-head q/k norms.
    name: 'grovemoe (GroveMoE)', arch: 'grovemoe', hfModel: 'inclusionAI/GroveMoE-Inst', rank: 3, alpha: 6,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ...qkNormAttention(0), ...moe(0, false).filter(([name]) => !name.endsWith('exp_probs_b.bias')),
      ['blk.0.ffn_gate_chexps.weight', [HIDDEN, CHUNK_FFN, EXPERTS / EXPERTS_PER_GROUP]], ['blk.0.ffn_up_chexps.weight', [HIDDEN, CHUNK_FFN, EXPERTS / EXPERTS_PER_GROUP]],
      ['blk.0.ffn_down_chexps.weight', [CHUNK_FFN, HIDDEN, EXPERTS / EXPERTS_PER_GROUP]], ...head,
    ],
    metadata: [
      ['grovemoe.block_count', u32(1)], ['grovemoe.attention.head_count', u32(ATT_HEADS)], ['grovemoe.attention.head_count_kv', u32(KV_HEADS)],
      ['grovemoe.attention.key_length', u32(HEAD_DIM)], ['grovemoe.attention.value_length', u32(HEAD_DIM)],
      ['grovemoe.expert_count', u32(EXPERTS)], ['grovemoe.expert_used_count', u32(2)], ['grovemoe.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['grovemoe.expert_chunk_feed_forward_length', u32(CHUNK_FFN)], ['grovemoe.experts_per_group', u32(EXPERTS_PER_GROUP)],
      ['grovemoe.expert_group_scale', { type: 'f32', value: 0.05 }],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.mlp.experts.3.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 3, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.chunk_experts.1.gate_proj', out: CHUNK_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_chexps.weight', 1, CHUNK_FFN) },
      { module: 'model.layers.0.mlp.chunk_experts.0.up_proj', out: CHUNK_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_chexps.weight', 0, CHUNK_FFN) },
      { module: 'model.layers.0.mlp.chunk_experts.1.down_proj', out: HIDDEN, in: CHUNK_FFN, lands: expert('blk.0.ffn_down_chexps.weight', 1, HIDDEN) },
    ],
  },
  {
    // Kimi-Linear-48B-A3B-like (KimiLinearModel): block 0 Kimi Delta Attention (4 heads of 8, conv
    // kernel 4) with the dense MLP, block 1 MLA (written as MQA: head_count_kv 1) with the MoE and a
    // shared expert; head_count_kv 0 on the KDA block.
    name: 'kimi-linear (Kimi Linear)', arch: 'kimi-linear', hfModel: 'moonshotai/Kimi-Linear-48B-A3B-Instruct', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, Q]], ['blk.0.attn_v.weight', [HIDDEN, Q]],
      ['blk.0.ssm_conv1d_q.weight', [4, 1, Q, 1], 'F32'], ['blk.0.ssm_conv1d_k.weight', [4, 1, Q, 1], 'F32'], ['blk.0.ssm_conv1d_v.weight', [4, 1, Q, 1], 'F32'],
      ['blk.0.ssm_f_a.weight', [HIDDEN, HEAD_DIM]], ['blk.0.ssm_f_b.weight', [HEAD_DIM, Q]], ['blk.0.ssm_beta.weight', [HIDDEN, ATT_HEADS]],
      ['blk.0.ssm_a', [1, ATT_HEADS, 1, 1], 'F32'], ['blk.0.ssm_dt.bias', [Q]], ['blk.0.ssm_g_a.weight', [HIDDEN, HEAD_DIM]],
      ['blk.0.ssm_g_b.weight', [HEAD_DIM, Q]], ['blk.0.ssm_norm.weight', [HEAD_DIM]], ['blk.0.attn_output.weight', [Q, HIDDEN]], ...denseMlp(0),
      ...mla(1, false), ...moe(1, true), ...head,
    ],
    metadata: [
      ['kimi-linear.block_count', u32(2)], ['kimi-linear.attention.head_count', u32(HEADS)],
      ['kimi-linear.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [0, 1] }], ['kimi-linear.vocab_size', u32(VOCAB)],
      ['kimi-linear.ssm.conv_kernel', u32(4)], ['kimi-linear.attention.kv_lora_rank', u32(KV_RANK)], ['kimi-linear.rope.dimension_count', u32(ROPE)],
      ['kimi-linear.attention.key_length', u32(KV_RANK + ROPE)], ['kimi-linear.attention.key_length_mla', u32(NOPE + ROPE)],
      ['kimi-linear.attention.value_length_mla', u32(V)], ['kimi-linear.expert_feed_forward_length', u32(EXPERT_FFN)],
      ['kimi-linear.expert_shared_count', u32(1)], ['kimi-linear.leading_dense_block_count', u32(1)],
      ['kimi-linear.expert_weights_scale', { type: 'f32', value: 2.446 }], ['kimi-linear.expert_count', u32(EXPERTS)], ['kimi-linear.expert_used_count', u32(2)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.v_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.0.self_attn.f_a_proj', out: HEAD_DIM, in: HIDDEN, lands: whole('blk.0.ssm_f_a.weight') },
      { module: 'model.layers.0.self_attn.f_b_proj', out: Q, in: HEAD_DIM, lands: whole('blk.0.ssm_f_b.weight') },
      { module: 'model.layers.0.self_attn.b_proj', out: ATT_HEADS, in: HIDDEN, lands: whole('blk.0.ssm_beta.weight') },
      { module: 'model.layers.0.self_attn.g_a_proj', out: HEAD_DIM, in: HIDDEN, lands: whole('blk.0.ssm_g_a.weight') },
      { module: 'model.layers.0.self_attn.g_b_proj', out: Q, in: HEAD_DIM, lands: whole('blk.0.ssm_g_b.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_up.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: HEADS * (NOPE + ROPE), in: HIDDEN, lands: whole('blk.1.attn_q.weight') },
      { module: 'model.layers.1.self_attn.kv_a_proj_with_mqa', out: KV_RANK + ROPE, in: HIDDEN, lands: whole('blk.1.attn_kv_a_mqa.weight') },
      { module: 'model.layers.1.self_attn.kv_b_proj', out: HEADS * (NOPE + V), in: KV_RANK, lands: kvB(1) },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: HEADS * V, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.block_sparse_moe.experts.2.w3', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.block_sparse_moe.experts.0.w2', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 0, HIDDEN) },
      { module: 'model.layers.1.block_sparse_moe.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
];

const baseGguf = (c: Case) => cellBaseGguf(c, [
  [`${c.arch}.context_length`, u32(4096)], [`${c.arch}.embedding_length`, u32(HIDDEN)], [`${c.arch}.feed_forward_length`, u32(FFN)],
  [`${c.arch}.rope.freq_base`, { type: 'f32', value: 1e4 }], [`${c.arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }],
]);
describeCellCases(CASES, baseGguf, WEIGHT, backends);

describe('PEFT on a deepseek2 GGUF: what cannot land on the split kv_b_proj', () => {
  const v3 = CASES[0];
  const base = baseGguf(v3);
  const kvB0 = v3.targets.find((t) => t.module === 'model.layers.0.self_attn.kv_b_proj')!;
  const problems = async (files: Record<string, Uint8Array | string>) => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'deepseek2-tiny-BF16.gguf': base.bytes }, 'base'), [{ files: memoryInputFileSet(files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };

  it('refuses DoRA on kv_b_proj, which lands on two tensors', async () => {
    const magnitude: FixtureTensor = { name: `base_model.model.${kvB0.module}.lora_magnitude_vector`, dtype: 'F32', shape: [kvB0.out], data: new Float64Array(kvB0.out).fill(1) };
    const messages = await problems(cellPeftAdapter(v3, [kvB0], { use_dora: true }, [magnitude]).files);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain(`module "${kvB0.module}"`);
    expect(messages[0]).toContain('DoRA on a module that lands on part of a tensor');
  });

  it('refuses modules of the nextn (MTP) layer, which DeepseekV2Model leaves out of a deepseek2 file, naming each', async () => {
    const mtp: Target[] = [
      { module: 'model.layers.2.eh_proj', out: HIDDEN, in: 2 * HIDDEN, lands: [] },
      { module: 'model.layers.2.self_attn.q_a_proj', out: Q_RANK, in: HIDDEN, lands: [] },
    ];
    const messages = await problems(cellPeftAdapter(v3, mtp).files);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain('module "model.layers.2.eh_proj"');
    expect(messages[0]).toContain('multi-token-prediction (nextn) layer');
    expect(messages[0]).toContain('skip_mtp');
    expect(messages[1]).toContain('module "model.layers.2.self_attn.q_a_proj": names block 2, but the base has 2 (deepseek2.block_count)');
  });

  it('refuses a kv_b_proj LoRA of the wrong width, naming the tensor that holds its rows transposed', async () => {
    const messages = await problems(cellPeftAdapter(v3, [{ ...kvB0, in: KV_RANK + 1 }]).files);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain('blk.0.attn_k_b.weight');
    expect(messages[0]).toContain('each transposed');
    expect(messages[1]).toContain('blk.0.attn_v_b.weight');
  });

  it('refuses a fan_in_fan_out kv_b_proj LoRA, naming both split tensors: ΔW stored (in, out) cannot land on rows stored transposed', async () => {
    // fan_in_fan_out: true says the LoRA's ΔW is applied transposed ((in, out), GPT-2's Conv1D); no block
    // of attn_k_b nor row run of attn_v_b is a whole (in, out) weight it could be laid on.
    const messages = await problems(cellPeftAdapter(v3, [kvB0], { fan_in_fan_out: true }).files);
    const dw = `(${kvB0.out}, ${KV_RANK})`;
    expect(messages).toEqual([
      `lora: module "${kvB0.module}": ΔW ${dw} does not fit base blk.0.attn_k_b.weight (${HEADS * KV_RANK}, ${NOPE}): only a linear module's ΔW can land on blocks of its rows stored transposed`,
      `lora: module "${kvB0.module}": ΔW ${dw} does not fit base blk.0.attn_v_b.weight (${HEADS * V}, ${KV_RANK}): rows of a weight stored (in, out) cannot be placed`,
    ]);
  });
});

it('refuses DoRA on a mistral4 GGUF\'s kv_b_proj, which the converter splits as DeepSeek\'s, naming the module', async () => {
  const m4 = CASES.find((c) => c.arch === 'mistral4')!;
  const kvB0 = m4.targets.find((t) => t.module.endsWith('layers.0.self_attn.kv_b_proj'))!;
  const magnitude: FixtureTensor = { name: `base_model.model.${kvB0.module}.lora_magnitude_vector`, dtype: 'F32', shape: [kvB0.out], data: new Float64Array(kvB0.out).fill(1) };
  const prepared = await prepareMerge(memoryInputFileSet({ 'mistral4-tiny-BF16.gguf': baseGguf(m4).bytes }, 'base'),
    [{ files: memoryInputFileSet(cellPeftAdapter(m4, [kvB0], { use_dora: true }, [magnitude]).files, 'lora') }]);
  const messages = prepared.plan.problems.map((p) => p.message);
  await prepared.close();
  expect(messages).toEqual([expect.stringContaining(`module "${kvB0.module}"`)]);
  expect(messages[0]).toContain('DoRA on a module that lands on part of a tensor');
});

it('plans kv_b_proj on a deepseek2 GGUF as key rows transposed per head and value rows, and sizes each part for the chart', async () => {
  const v3 = CASES[0];
  const base = baseGguf(v3);
  const kvB0 = v3.targets.find((t) => t.module === 'model.layers.0.self_attn.kv_b_proj')!;
  const { files, factors: [f] } = cellPeftAdapter(v3, [kvB0]);
  const prepared = await prepareMerge(memoryInputFileSet({ 'deepseek2-tiny-BF16.gguf': base.bytes }, 'base'), [{ files: memoryInputFileSet(files, 'lora'), weight: WEIGHT }]);
  expect(describePlan(prepared, true)).toContain(`blk.0.attn_k_b.weight [${HEADS * KV_RANK}×${NOPE}] out-in ← ${kvB0.module} LoRA r=3 scale=1.4 → ${HEADS} blocks of ${NOPE} rows, each transposed`);
  const magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (key, r0, n) => {
    const cols = base.shapes.get(key)![0];
    return { dtype: 'F32', data: new Uint8Array(Float32Array.from(base.values.get(key)!.subarray(r0 * cols, (r0 + n) * cols)).buffer) };
  });
  await prepared.close();
  // ‖s·ΔW‖ over the ΔW rows each tensor holds: each head's first NOPE rows (keys), its last V (values).
  const scale = WEIGHT * v3.alpha / v3.rank;
  const normOfRows = (holds: (row: number) => boolean) => {
    let ss = 0;
    for (let o = 0; o < f.out; o++) {
      if (!holds(o)) continue;
      for (let i = 0; i < f.in; i++) {
        let sum = 0;
        for (let k = 0; k < v3.rank; k++) sum += f.b[o * v3.rank + k] * f.a[k * f.in + i];
        ss += (scale * sum) ** 2;
      }
    }
    return Math.sqrt(ss);
  };
  const byTensor = new Map(magnitudes.map((m) => [m.baseKey, m.updateNorm]));
  expect(byTensor.get('blk.0.attn_k_b.weight')).toBeCloseTo(normOfRows((o) => o % (NOPE + V) < NOPE), 6);
  expect(byTensor.get('blk.0.attn_v_b.weight')).toBeCloseTo(normOfRows((o) => o % (NOPE + V) >= NOPE), 6);
});

it('refuses a LoRA on a jamba GGUF\'s Mamba conv1d, whose kernel the converter squeezes, naming the module', async () => {
  const jamba = CASES.find((c) => c.arch === 'jamba')!;
  const inProj = jamba.targets.find((t) => t.module === 'model.layers.0.mamba.in_proj')!;
  const { files } = cellPeftAdapter(jamba, [inProj], { target_modules: ['in_proj', 'conv1d'] }, [
    // PEFT's Conv1d factors: lora_A (r, in, kernel), lora_B (out, r, 1).
    { name: 'base_model.model.model.layers.0.mamba.conv1d.lora_A.weight', dtype: 'F32', shape: [jamba.rank, D_INNER, 4], data: new Float64Array(jamba.rank * D_INNER * 4).fill(0.01) },
    { name: 'base_model.model.model.layers.0.mamba.conv1d.lora_B.weight', dtype: 'F32', shape: [D_INNER, jamba.rank, 1], data: new Float64Array(D_INNER * jamba.rank).fill(0.01) },
  ]);
  const prepared = await prepareMerge(memoryInputFileSet({ 'jamba-tiny-BF16.gguf': baseGguf(jamba).bytes }, 'base'), [{ files: memoryInputFileSet(files, 'lora') }]);
  const messages = prepared.plan.problems.map((p) => p.message);
  await prepared.close();
  expect(messages).toEqual([expect.stringContaining('module "model.layers.0.mamba.conv1d"')]);
  expect(messages[0]).toContain("is the Mamba block's depthwise causal Conv1d");
});

describe('PEFT on Ling 1, PLaMo 2, Step 3.5, Kimi Linear GGUFs: modules the converter writes otherwise', () => {
  const refusals = async (c: Case, refused: Target) => {
    const { files } = cellPeftAdapter(c, [c.targets[1], refused]);
    const prepared = await prepareMerge(memoryInputFileSet({ [`${c.arch}-tiny-BF16.gguf`]: baseGguf(c).bytes }, 'base'), [{ files: memoryInputFileSet(files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };

  it('refuses a LoRA on a bailingmoe GGUF\'s lm_head, whose columns the converter may have normalised, naming the module', async () => {
    const ling = CASES.find((c) => c.arch === 'bailingmoe')!;
    const messages = await refusals(ling, { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: [] });
    expect(messages).toEqual([expect.stringContaining('module "lm_head"')]);
    expect(messages[0]).toContain('norm_head');
  });

  it('refuses a LoRA on a plamo2 GGUF\'s Mamba conv1d, whose kernel the converter squeezes, naming the module', async () => {
    const plamo = CASES.find((c) => c.arch === 'plamo2')!;
    const messages = await refusals(plamo, { module: 'model.layers.layers.0.mixer.conv1d', out: PLAMO_INNER, in: 4, lands: [] });
    expect(messages).toEqual([expect.stringContaining('module "model.layers.layers.0.mixer.conv1d"')]);
    expect(messages[0]).toContain('(Plamo2Model) squeezes');
  });

  it('refuses a LoRA on a step35 GGUF\'s stacked routed experts, naming the module', async () => {
    const step = CASES.find((c) => c.arch === 'step35')!;
    const messages = await refusals(step, { module: 'model.layers.1.moe.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: [] });
    expect(messages).toEqual([expect.stringContaining('module "model.layers.1.moe.up_proj"')]);
    expect(messages[0]).toContain("Step 3.5's routed experts");
  });

  it('refuses a LoRA on a kimi-linear GGUF\'s short convolution, whose kernel the converter reshapes, naming the module', async () => {
    const kimi = CASES.find((c) => c.arch === 'kimi-linear')!;
    const messages = await refusals(kimi, { module: 'model.layers.0.self_attn.q_conv1d', out: Q, in: 4, lands: [] });
    expect(messages).toEqual([expect.stringContaining('module "model.layers.0.self_attn.q_conv1d"')]);
    expect(messages[0]).toContain('Kimi Delta Attention short convolution');
  });
});
