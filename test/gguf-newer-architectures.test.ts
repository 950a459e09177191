/**
 * PEFT LoRAs on GGUF bases of the architectures llama.cpp added after the others mapped here, end to
 * end against float64 truth written in this file (base + (α/r)·B·A at the cell each GGUF cell holds):
 * - Hy3 (`hy_v3`, HYV3Model: TextModel's name mapping, experts stacked as rows by MOE_HF_MLP, the MTP
 *   block kept past num_hidden_layers as the last block): q and k as they are, a leading dense
 *   block, the router `mlp.router.gate` (transformers 5: `mlp.gate`), the shared expert
 *   `mlp.shared_mlp` (transformers 5: `mlp.shared_experts`) on ffn_*_shexp, the MTP block's
 *   `eh_proj` on nextn.eh_proj.
 * - Laguna (`laguna`, LagunaModel): per-layer head counts (`laguna.attention.head_count` an array, as
 *   the converter writes it for Laguna-XS.2), the attention output gate `self_attn.g_proj` (one row
 *   per head) on attn_gate, router `mlp.gate`, the shared expert `mlp.shared_expert` (transformers:
 *   `mlp.shared_experts`), experts stacked as rows.
 * - Nanbeige (`nanbeige`, NanbeigeModel: a LlamaModel with undo_permute): q's and k's rows permuted
 *   as LlamaModel.permute does (reshape (heads, 2, d/2, in), swap axes 1 and 2), written out here.
 * - the diffusion LMs LLaDA (`llada`: its own `model.transformer.blocks.N.q_proj` … `ff_out` names, q and k
 *   permuted as LlamaModel.permute does, by LLaDAModel.permute), Dream (`dream`: Qwen2's names) and RND1
 *   (`rnd1`: Qwen3-MoE's), and openPangu-Embedded (`pangu-embedded`): plain names.
 * - PaddleOCR-VL's language model (`paddleocr`, PaddleOCRModel: an Ernie4_5Model), adapters in
 *   transformers' `model.language_model.…` names; its tower and its projector (`mlp_AR`, the
 *   remote-code name) refused as the mmproj file's.
 * And the same PEFT adapters converted to llama.cpp LoRA GGUFs against those bases (convertLora,
 * convert_lora_to_gguf's names and row order) merge into them by name to the same truth.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { MetaValue } from './helpers/gguf-builder.js';
import { buildSafetensors, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import {
  cellBaseGguf, cellPeftAdapter, describeCellCases, expectCellsMerged, expert, transposedWhole, whole, type CellCase, type Landing, type Target,
} from './helpers/gguf-cell-truth.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { convertLora } from '../src/node.js';

const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);

const HIDDEN = 32, VOCAB = 16, FFN = 48, EXPERTS = 4, EXPERT_FFN = 16, SHARED = 16, WEIGHT = 0.7;
const HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, Q = HEADS * HEAD_DIM, KV = KV_HEADS * HEAD_DIM;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });
type Tensors = [string, number[], string?][];

interface Case extends CellCase { name: string }

/** Attention with per-head q/k norms, `heads` query heads; ne columns first. */
const attention = (block: number, heads = HEADS): Tensors => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.attn_q.weight`, [HIDDEN, heads * HEAD_DIM]], [`blk.${block}.attn_q_norm.weight`, [HEAD_DIM]],
  [`blk.${block}.attn_k.weight`, [HIDDEN, KV]], [`blk.${block}.attn_k_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_v.weight`, [HIDDEN, KV]],
  [`blk.${block}.attn_output.weight`, [heads * HEAD_DIM, HIDDEN]],
];
const denseMlp = (block: number): Tensors => [
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_up.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_down.weight`, [FFN, HIDDEN]],
];
/** Router (F32, as the converter forces it), correction bias, stacked experts, the shared expert. */
const moe = (block: number): Tensors => [
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate_inp.weight`, [HIDDEN, EXPERTS], 'F32'], [`blk.${block}.exp_probs_b.bias`, [EXPERTS]],
  [`blk.${block}.ffn_gate_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]], [`blk.${block}.ffn_up_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]],
  [`blk.${block}.ffn_down_exps.weight`, [EXPERT_FFN, HIDDEN, EXPERTS]],
  [`blk.${block}.ffn_gate_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_up_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_down_shexp.weight`, [SHARED, HIDDEN]],
];
const head: Tensors = [['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]]];

/**
 * LlamaModel.permute, written out: HF row h·d + j·d/2 + i (head h, half j, pair i) goes to GGUF row
 * h·d + 2i + j. So GGUF row g holds HF row h·d + (g mod 2)·d/2 + ⌊(g mod d)/2⌋.
 */
const ropePermuted = (tensor: string, heads: number, rows: number): Landing[] => {
  const d = rows / heads;
  return [{ tensor, cell: (g, col) => [Math.floor(g / d) * d + (g % 2) * (d / 2) + Math.floor((g % d) / 2), col] }];
};

const hy3Tensors: Tensors = [
  ['token_embd.weight', [HIDDEN, VOCAB]], ...attention(0), ...denseMlp(0), ...attention(1), ...moe(1),
  // The MTP block (HYV3Model: model.layers.2 of a 2-layer trunk, block_count raised by one).
  ...attention(2), ...moe(2), ['blk.2.nextn.eh_proj.weight', [2 * HIDDEN, HIDDEN]], ['blk.2.nextn.enorm.weight', [HIDDEN]],
  ['blk.2.nextn.hnorm.weight', [HIDDEN]], ['blk.2.nextn.shared_head_norm.weight', [HIDDEN]], ...head,
];
const hy3Metadata: [string, MetaValue][] = [
  ['hy_v3.block_count', u32(3)], ['hy_v3.attention.head_count', u32(HEADS)], ['hy_v3.attention.head_count_kv', u32(KV_HEADS)],
  ['hy_v3.rope.dimension_count', u32(HEAD_DIM)], ['hy_v3.vocab_size', u32(VOCAB)], ['hy_v3.expert_count', u32(EXPERTS)],
  ['hy_v3.expert_used_count', u32(2)], ['hy_v3.expert_feed_forward_length', u32(EXPERT_FFN)],
  ['hy_v3.expert_shared_feed_forward_length', u32(SHARED)], ['hy_v3.expert_weights_norm', { type: 'bool', value: true }],
  ['hy_v3.expert_weights_scale', { type: 'f32', value: 2.5 }], ['hy_v3.expert_gating_func', u32(2)],
  ['hy_v3.leading_dense_block_count', u32(1)], ['hy_v3.nextn_predict_layers', u32(1)],
];

const lagunaTensors: Tensors = [
  ['token_embd.weight', [HIDDEN, VOCAB]],
  // Laguna-XS.2 varies the query heads per layer: 4 in block 0, 2 in block 1; a per-head gate (one row a head).
  ...attention(0, HEADS), ['blk.0.attn_gate.weight', [HIDDEN, HEADS]], ...denseMlp(0),
  ...attention(1, KV_HEADS), ['blk.1.attn_gate.weight', [HIDDEN, KV_HEADS]], ...moe(1), ...head,
];
const lagunaMetadata: [string, MetaValue][] = [
  ['laguna.block_count', u32(2)], ['laguna.attention.head_count', { type: 'array', itemType: 'u32', value: [HEADS, KV_HEADS] }],
  ['laguna.attention.head_count_kv', u32(KV_HEADS)], ['laguna.rope.dimension_count', u32(HEAD_DIM / 2)], ['laguna.vocab_size', u32(VOCAB)],
  ['laguna.expert_count', u32(EXPERTS)], ['laguna.expert_used_count', u32(2)], ['laguna.expert_feed_forward_length', u32(EXPERT_FFN)],
  ['laguna.expert_shared_feed_forward_length', u32(SHARED)], ['laguna.expert_weights_norm', { type: 'bool', value: true }],
  ['laguna.expert_weights_scale', { type: 'f32', value: 2.5 }], ['laguna.expert_gating_func', u32(2)],
  ['laguna.leading_dense_block_count', u32(1)], ['laguna.attention.sliding_window', u32(512)],
];

/**
 * Ernie4_5Model's split of a fused qkv_proj ((heads + 2·kv heads)·head_dim rows: q, then k, then
 * v), written out: attn_q row g is qkv row g, attn_k row g is row Q + g, attn_v row g is row
 * Q + KV + g; nothing permuted.
 */
const ernieQkv = (b: number): Landing[] => [
  { tensor: `blk.${b}.attn_q.weight`, cell: (g, col) => [g, col] },
  { tensor: `blk.${b}.attn_k.weight`, cell: (g, col) => [Q + g, col] },
  { tensor: `blk.${b}.attn_v.weight`, cell: (g, col) => [Q + KV + g, col] },
];
/** Its split of up_gate_proj (2·FFN rows): the first FFN rows are ffn_gate's, the last FFN ffn_up's. */
const ernieUpGate = (b: number): Landing[] => [
  { tensor: `blk.${b}.ffn_gate.weight`, cell: (g, col) => [g, col] },
  { tensor: `blk.${b}.ffn_up.weight`, cell: (g, col) => [FFN + g, col] },
];
/** ERNIE 4.5's dense blocks as the converter writes them: no q/k norms. */
const ernieBlock = (b: number): Tensors => [...attention(b).filter(([n]) => !/attn_[qk]_norm/.test(n)), ...denseMlp(b)];
const ernieMetadata = (arch: string, blocks: number): [string, MetaValue][] => [
  [`${arch}.block_count`, u32(blocks)], [`${arch}.attention.head_count`, u32(HEADS)], [`${arch}.attention.head_count_kv`, u32(KV_HEADS)],
  [`${arch}.rope.dimension_count`, u32(HEAD_DIM)], [`${arch}.vocab_size`, u32(VOCAB)],
];

const CASES: Case[] = [
  {
    // tencent/Hy3's own checkpoint names (remote code): mlp.router.gate, mlp.shared_mlp.
    name: 'hy_v3 (Hy3, checkpoint names)', arch: 'hy_v3', hfModel: 'tencent/Hy3', rank: 2, alpha: 4,
    tensors: hy3Tensors, metadata: hy3Metadata,
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.router.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.2.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.1.mlp.shared_mlp.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'model.layers.2.eh_proj', out: HIDDEN, in: 2 * HIDDEN, lands: whole('blk.2.nextn.eh_proj.weight') },
      { module: 'model.layers.2.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.2.attn_q.weight') },
      { module: 'model.layers.2.mlp.experts.0.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.2.ffn_gate_exps.weight', 0, EXPERT_FFN) },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // The same model as transformers 5's HYV3ForCausalLM names it: mlp.gate, mlp.shared_experts.
    name: 'hy_v3 (Hy3, transformers 5 names)', arch: 'hy_v3', hfModel: 'tencent/Hy3', rank: 2, alpha: 4,
    tensors: hy3Tensors, metadata: hy3Metadata,
    targets: [
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.shared_experts.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'model.layers.2.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.2.ffn_gate_shexp.weight') },
      { module: 'model.layers.1.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.1.attn_v.weight') },
    ],
  },
  {
    // Laguna's checkpoint names (mlp.shared_expert), per-layer head counts, a per-head output gate.
    name: 'laguna (Laguna, checkpoint names)', arch: 'laguna', hfModel: 'poolside/Laguna-XS.2', rank: 2, alpha: 4,
    tensors: lagunaTensors, metadata: lagunaMetadata,
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.g_proj', out: HEADS, in: HIDDEN, lands: whole('blk.0.attn_gate.weight') },
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: whole('blk.1.attn_q.weight') },
      { module: 'model.layers.1.self_attn.g_proj', out: KV_HEADS, in: HIDDEN, lands: whole('blk.1.attn_gate.weight') },
      { module: 'model.layers.1.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.1.ffn_gate_inp.weight') },
      { module: 'model.layers.1.mlp.experts.1.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 1, HIDDEN) },
      { module: 'model.layers.1.mlp.shared_expert.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_up_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    name: 'laguna (Laguna, transformers names)', arch: 'laguna', hfModel: 'poolside/Laguna-XS.2', rank: 2, alpha: 4,
    tensors: lagunaTensors, metadata: lagunaMetadata,
    targets: [
      { module: 'model.layers.1.mlp.shared_experts.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.1.ffn_gate_shexp.weight') },
      { module: 'model.layers.1.mlp.shared_experts.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: KV_HEADS * HEAD_DIM, lands: whole('blk.1.attn_output.weight') },
    ],
  },
  {
    // Nanbeige4-3B-like (NanbeigeModel, undo_permute): q by the heads, k by the kv heads, permuted.
    name: 'nanbeige (Nanbeige4)', arch: 'nanbeige', hfModel: 'Nanbeige/Nanbeige4-3B-Base', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ...[0, 1].flatMap((b): Tensors => [
        [`blk.${b}.attn_norm.weight`, [HIDDEN]], [`blk.${b}.attn_q.weight`, [HIDDEN, Q]], [`blk.${b}.attn_k.weight`, [HIDDEN, KV]],
        [`blk.${b}.attn_v.weight`, [HIDDEN, KV]], [`blk.${b}.attn_output.weight`, [Q, HIDDEN]], ...denseMlp(b),
      ]),
      ...head,
    ],
    metadata: [
      ['nanbeige.block_count', u32(2)], ['nanbeige.attention.head_count', u32(HEADS)], ['nanbeige.attention.head_count_kv', u32(KV_HEADS)],
      ['nanbeige.rope.dimension_count', u32(HEAD_DIM)], ['nanbeige.vocab_size', u32(VOCAB)], ['nanbeige.attention.head_dim', u32(HEAD_DIM)],
      ['nanbeige.attention.key_length', u32(HEAD_DIM)], ['nanbeige.attention.value_length', u32(HEAD_DIM)],
    ],
    targets: [
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: ropePermuted('blk.0.attn_q.weight', HEADS, Q) },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: ropePermuted('blk.0.attn_k.weight', KV_HEADS, KV) },
      { module: 'model.layers.0.self_attn.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.layers.1.self_attn.q_proj', out: Q, in: HIDDEN, lands: ropePermuted('blk.1.attn_q.weight', HEADS, Q) },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.1.mlp.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.1.ffn_up.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // LLaDA-8B-like (LLaDAModel): the checkpoint's own model.transformer.… names; q by the heads and
    // k by the kv heads permuted (LLaDAModel.permute, LlamaModel's order), the rest by name.
    name: 'llada (LLaDA)', arch: 'llada', hfModel: 'GSAI-ML/LLaDA-8B-Base', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ...[0, 1].flatMap((b): Tensors => [
        [`blk.${b}.attn_norm.weight`, [HIDDEN]], [`blk.${b}.attn_q.weight`, [HIDDEN, Q]], [`blk.${b}.attn_k.weight`, [HIDDEN, KV]],
        [`blk.${b}.attn_v.weight`, [HIDDEN, KV]], [`blk.${b}.attn_output.weight`, [Q, HIDDEN]], ...denseMlp(b),
      ]),
      ...head,
    ],
    metadata: [
      ['llada.block_count', u32(2)], ['llada.attention.head_count', u32(HEADS)], ['llada.attention.head_count_kv', u32(KV_HEADS)],
      ['llada.rope.dimension_count', u32(HEAD_DIM)], ['llada.vocab_size', u32(VOCAB)], ['llada.attention.causal', { type: 'bool', value: false }],
      ['diffusion.shift_logits', { type: 'bool', value: false }],
    ],
    targets: [
      { module: 'model.transformer.wte', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      { module: 'model.transformer.blocks.0.q_proj', out: Q, in: HIDDEN, lands: ropePermuted('blk.0.attn_q.weight', HEADS, Q) },
      { module: 'model.transformer.blocks.0.k_proj', out: KV, in: HIDDEN, lands: ropePermuted('blk.0.attn_k.weight', KV_HEADS, KV) },
      { module: 'model.transformer.blocks.0.v_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_v.weight') },
      { module: 'model.transformer.blocks.1.attn_out', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.transformer.blocks.1.ff_proj', out: FFN, in: HIDDEN, lands: whole('blk.1.ffn_gate.weight') },
      { module: 'model.transformer.blocks.1.up_proj', out: FFN, in: HIDDEN, lands: whole('blk.1.ffn_up.weight') },
      { module: 'model.transformer.blocks.0.ff_out', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
      { module: 'model.transformer.ff_out', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Dream-v0-7B-like (DreamModel): Qwen2's names, q and k as they are.
    name: 'dream (Dream)', arch: 'dream', hfModel: 'Dream-org/Dream-v0-Base-7B', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...attention(0).filter(([n]) => !/attn_[qk]_norm/.test(n)), ...denseMlp(0), ...head],
    metadata: [
      ['dream.block_count', u32(1)], ['dream.attention.head_count', u32(HEADS)], ['dream.attention.head_count_kv', u32(KV_HEADS)],
      ['dream.rope.dimension_count', u32(HEAD_DIM)], ['dream.attention.causal', { type: 'bool', value: false }],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // RND1-30B-like (RND1Model, a Qwen2MoeModel on Qwen3-MoE's names): router and stacked experts.
    name: 'rnd1 (RND1)', arch: 'rnd1', hfModel: 'radicalnumerics/RND1-Base-0910', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...attention(0), ...moe(0).filter(([n]) => !/shexp|exp_probs_b/.test(n)), ...head],
    metadata: [
      ['rnd1.block_count', u32(1)], ['rnd1.attention.head_count', u32(HEADS)], ['rnd1.attention.head_count_kv', u32(KV_HEADS)],
      ['rnd1.rope.dimension_count', u32(HEAD_DIM)], ['rnd1.expert_count', u32(EXPERTS)], ['rnd1.expert_used_count', u32(2)],
      ['rnd1.expert_feed_forward_length', u32(EXPERT_FFN)], ['rnd1.attention.causal', { type: 'bool', value: false }],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.layers.0.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.mlp.experts.3.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 3, HIDDEN) },
    ],
  },
  {
    // openPangu-Embedded-1B-like (PanguEmbeddedModel): TextModel's plain names.
    name: 'pangu-embedded (openPangu-Embedded)', arch: 'pangu-embedded', hfModel: 'FreedomIntelligence/openPangu-Embedded-1B', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...attention(0).filter(([n]) => !/attn_[qk]_norm/.test(n)), ...denseMlp(0), ...head],
    metadata: [
      ['pangu-embedded.block_count', u32(1)], ['pangu-embedded.attention.head_count', u32(HEADS)],
      ['pangu-embedded.attention.head_count_kv', u32(KV_HEADS)], ['pangu-embedded.rope.dimension_count', u32(HEAD_DIM)],
      ['pangu-embedded.vocab_size', u32(VOCAB)],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.0.attn_output.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
    ],
  },
  {
    // PaddleOCR-VL (ERNIE-4.5-0.3B language model; tied head, so no output tensor), adapter in
    // transformers' PaddleOCRVLForConditionalGeneration names.
    name: 'paddleocr (PaddleOCR-VL)', arch: 'paddleocr', hfModel: 'PaddlePaddle/PaddleOCR-VL', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...attention(0).filter(([n]) => !/_norm\.weight$/.test(n) || n.endsWith('attn_norm.weight')), ...denseMlp(0), ['output_norm.weight', [HIDDEN]]],
    metadata: [
      ['paddleocr.block_count', u32(1)], ['paddleocr.attention.head_count', u32(HEADS)], ['paddleocr.attention.head_count_kv', u32(KV_HEADS)],
      ['paddleocr.rope.dimension_count', u32(HEAD_DIM)], ['paddleocr.vocab_size', u32(VOCAB)],
    ],
    targets: [
      { module: 'model.language_model.layers.0.self_attn.q_proj', out: Q, in: HIDDEN, lands: whole('blk.0.attn_q.weight') },
      { module: 'model.language_model.layers.0.self_attn.k_proj', out: KV, in: HIDDEN, lands: whole('blk.0.attn_k.weight') },
      { module: 'model.language_model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
    ],
  },
  {
    // ERNIE-4.5-0.3B's original fused modules (tied head: no output tensor), split by
    // Ernie4_5Model.modify_tensors into attn_q/attn_k/attn_v and ffn_gate/ffn_up by rows.
    name: 'ernie4_5 (ERNIE 4.5, fused qkv_proj and up_gate_proj)', arch: 'ernie4_5', hfModel: 'baidu/ERNIE-4.5-0.3B-PT', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...ernieBlock(0), ...ernieBlock(1), ['output_norm.weight', [HIDDEN]]],
    metadata: ernieMetadata('ernie4_5', 2),
    targets: [
      { module: 'model.layers.0.self_attn.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: ernieQkv(0) },
      { module: 'model.layers.1.self_attn.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: ernieQkv(1) },
      { module: 'model.layers.0.mlp.up_gate_proj', out: 2 * FFN, in: HIDDEN, lands: ernieUpGate(0) },
      { module: 'model.layers.1.mlp.up_gate_proj', out: 2 * FFN, in: HIDDEN, lands: ernieUpGate(1) },
      { module: 'model.layers.1.self_attn.o_proj', out: HIDDEN, in: Q, lands: whole('blk.1.attn_output.weight') },
      { module: 'model.layers.0.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.0.ffn_down.weight') },
    ],
  },
  {
    // PaddleOCR-VL's language model with the fused modules under its checkpoint's `model.` names:
    // PaddleOCRModel inherits Ernie4_5Model's split.
    name: 'paddleocr (PaddleOCR-VL, fused qkv_proj and up_gate_proj)', arch: 'paddleocr', hfModel: 'PaddlePaddle/PaddleOCR-VL', rank: 2, alpha: 4,
    tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...ernieBlock(0), ['output_norm.weight', [HIDDEN]]],
    metadata: ernieMetadata('paddleocr', 1),
    targets: [
      { module: 'model.layers.0.self_attn.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: ernieQkv(0) },
      { module: 'model.layers.0.mlp.up_gate_proj', out: 2 * FFN, in: HIDDEN, lands: ernieUpGate(0) },
    ],
  },
];

const baseGguf = (c: Case) => cellBaseGguf(c, [
  [`${c.arch}.context_length`, u32(4096)], [`${c.arch}.embedding_length`, u32(HIDDEN)], [`${c.arch}.feed_forward_length`, u32(FFN)],
  [`${c.arch}.rope.freq_base`, { type: 'f32', value: 1e4 }], [`${c.arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }],
]);
describeCellCases(CASES, baseGguf, WEIGHT, backends);

describe('llama.cpp LoRA GGUFs of these architectures (convertLora against the GGUF base) merge by name', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: converted, then merged, it is the PEFT merge\'s truth', async (_, c) => {
    const cpu = backends.cpu;
    if (!cpu) return;
    const dir = join(temp.make(), c.arch);
    mkdirSync(join(dir, 'peft'), { recursive: true });
    const base = baseGguf(c);
    const adapter = cellPeftAdapter(c);
    for (const [name, data] of Object.entries(adapter.files)) writeFileSync(join(dir, 'peft', name), data);
    writeFileSync(join(dir, 'base.gguf'), base.bytes);
    await convertLora({ adapter: join(dir, 'peft'), base: join(dir, 'base.gguf'), out: join(dir, 'lora.gguf') });
    const { bytes } = await mergeFileInMemory({
      backend: cpu, base: { [`${c.arch}-tiny-BF16.gguf`]: base.bytes }, adapters: [{ files: { 'lora.gguf': readFileSync(join(dir, 'lora.gguf')) }, name: 'lora', weight: WEIGHT }],
      outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 1024,
    });
    expectCellsMerged(bytes, base, adapter.factors, c.rank, WEIGHT * c.alpha / c.rank);
  });
});

describe('PaddleOCR-VL: the vision side goes to the mmproj file', () => {
  const c = CASES.find((x) => x.arch === 'paddleocr')!;
  it('refuses the tower and the projector in either naming, one line each, naming the module', async () => {
    const vision: Target[] = [
      { module: 'visual.vision_model.encoder.layers.0.self_attn.q_proj', out: HIDDEN, in: HIDDEN, lands: [] },
      { module: 'mlp_AR.linear_1', out: HIDDEN, in: HIDDEN, lands: [] },
      { module: 'model.projector.linear_2', out: HIDDEN, in: HIDDEN, lands: [] },
    ];
    const prepared = await prepareMerge(memoryInputFileSet({ 'paddleocr-tiny-BF16.gguf': baseGguf(c).bytes }, 'base'), [{ files: memoryInputFileSet(cellPeftAdapter(c, vision).files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(messages).toHaveLength(3);
    for (const [i, t] of vision.entries()) {
      expect(messages[i]).toContain(`module "${t.module}"`);
      expect(messages[i]).toContain('separate mmproj GGUF');
    }
  });
});

describe('Hy3 from its Hugging Face folder: the MTP block the converter keeps as the last block', () => {
  it('converts a LoRA on the MTP block (eh_proj, its attention and experts) as from the hy_v3 GGUF, byte for byte', async () => {
    const c = CASES[0];
    // The checkpoint's weights (out, in), bf16 zeros: config.json and the shapes are all --base reads.
    const hf: FixtureTensor[] = [];
    const t = (name: string, out: number, inF: number) => hf.push({ name: `${name}.weight`, dtype: 'BF16', shape: [out, inF], data: new Float64Array(out * inF) });
    t('model.embed_tokens', VOCAB, HIDDEN);
    t('lm_head', VOCAB, HIDDEN);
    for (const b of [0, 1, 2]) {
      t(`model.layers.${b}.self_attn.q_proj`, Q, HIDDEN); t(`model.layers.${b}.self_attn.k_proj`, KV, HIDDEN);
      t(`model.layers.${b}.self_attn.v_proj`, KV, HIDDEN); t(`model.layers.${b}.self_attn.o_proj`, HIDDEN, Q);
    }
    t('model.layers.0.mlp.gate_proj', FFN, HIDDEN); t('model.layers.0.mlp.up_proj', FFN, HIDDEN); t('model.layers.0.mlp.down_proj', HIDDEN, FFN);
    for (const b of [1, 2]) {
      t(`model.layers.${b}.mlp.router.gate`, EXPERTS, HIDDEN);
      for (let e = 0; e < EXPERTS; e++) {
        t(`model.layers.${b}.mlp.experts.${e}.gate_proj`, EXPERT_FFN, HIDDEN); t(`model.layers.${b}.mlp.experts.${e}.up_proj`, EXPERT_FFN, HIDDEN);
        t(`model.layers.${b}.mlp.experts.${e}.down_proj`, HIDDEN, EXPERT_FFN);
      }
      t(`model.layers.${b}.mlp.shared_mlp.gate_proj`, SHARED, HIDDEN); t(`model.layers.${b}.mlp.shared_mlp.up_proj`, SHARED, HIDDEN);
      t(`model.layers.${b}.mlp.shared_mlp.down_proj`, HIDDEN, SHARED);
    }
    t('model.layers.2.eh_proj', HIDDEN, 2 * HIDDEN);
    const config = {
      architectures: ['HYV3ForCausalLM'], model_type: 'hy_v3', hidden_size: HIDDEN, num_hidden_layers: 2, num_nextn_predict_layers: 1,
      num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, head_dim: HEAD_DIM, num_experts: EXPERTS, vocab_size: VOCAB, first_k_dense_replace: 1,
    };
    const dir = temp.make({ 'hf/config.json': JSON.stringify(config), 'hf/model.safetensors': buildSafetensors(hf), 'base.gguf': baseGguf(c).bytes });
    mkdirSync(join(dir, 'peft'));
    for (const [name, data] of Object.entries(cellPeftAdapter(c).files)) writeFileSync(join(dir, 'peft', name), data);
    await convertLora({ adapter: join(dir, 'peft'), base: join(dir, 'base.gguf'), out: join(dir, 'from-gguf.gguf') });
    await convertLora({ adapter: join(dir, 'peft'), base: join(dir, 'hf'), out: join(dir, 'from-hf.gguf') });
    const [fromGguf, fromHf] = ['from-gguf.gguf', 'from-hf.gguf'].map((f) => readFileSync(join(dir, f)));
    expect(fromHf.length).toBeGreaterThan(0);
    expect(Buffer.compare(fromHf, fromGguf)).toBe(0);
  });
});

describe('ERNIE 4.5 fused modules the converter does not split, or whose rows do not fit, are refused', () => {
  const dense = CASES.find((x) => x.arch === 'ernie4_5')!;
  const problemsOf = async (c: CellCase, targets: Target[]) => {
    const prepared = await prepareMerge(memoryInputFileSet({ [`${c.arch}-tiny-BF16.gguf`]: baseGguf(c as Case).bytes }, 'base'), [{ files: memoryInputFileSet(cellPeftAdapter(c, targets).files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };

  it('refuses qkv_proj and up_gate_proj on an ernie4_5-moe GGUF (Ernie4_5MoeModel does not split them), one line each', async () => {
    const moeCase: Case = {
      name: 'ernie4_5-moe', arch: 'ernie4_5-moe', hfModel: 'baidu/ERNIE-4.5-21B-A3B-PT', rank: 2, alpha: 4,
      tensors: [['token_embd.weight', [HIDDEN, VOCAB]], ...ernieBlock(0), ...attention(1).filter(([n]) => !/attn_[qk]_norm/.test(n)), ...moe(1), ...head],
      metadata: [
        ...ernieMetadata('ernie4_5-moe', 2), ['ernie4_5-moe.expert_count', u32(EXPERTS)], ['ernie4_5-moe.expert_used_count', u32(2)],
        ['ernie4_5-moe.leading_dense_block_count', u32(1)], ['ernie4_5-moe.interleave_moe_layer_step', u32(1)],
      ],
      targets: [],
    };
    const targets: Target[] = [
      { module: 'model.layers.0.self_attn.qkv_proj', out: Q + 2 * KV, in: HIDDEN, lands: [] },
      { module: 'model.layers.0.mlp.up_gate_proj', out: 2 * FFN, in: HIDDEN, lands: [] },
    ];
    const messages = await problemsOf(moeCase, targets);
    expect(messages).toHaveLength(2);
    for (const [i, t] of targets.entries()) {
      expect(messages[i]).toContain(`module "${t.module}"`);
      expect(messages[i]).toContain('Ernie4_5MoeModel');
    }
  });

  it('refuses a fused qkv_proj or up_gate_proj whose rows are not the GGUF tensors\' together, naming the module', async () => {
    const targets: Target[] = [
      { module: 'model.layers.0.self_attn.qkv_proj', out: Q + 2 * KV + HEAD_DIM, in: HIDDEN, lands: [] },
      { module: 'model.layers.1.mlp.up_gate_proj', out: 2 * FFN - 2, in: HIDDEN, lands: [] },
    ];
    const messages = await problemsOf(dense, targets);
    expect(messages).toHaveLength(2);
    for (const [i, t] of targets.entries()) expect(messages[i]).toContain(`module "${t.module}"`);
    expect(messages[0]).toContain('ΔW rows 64–71 land nowhere');
    expect(messages[1]).toContain('the placement needs 96 ΔW rows, ΔW has 94');
  });
});

describe('convert --base <Hugging Face folder> for LLaDA, RND1 and openPangu-Embedded: the GGUF base\'s names and row order', () => {
  const folderCases: [string, string, Record<string, unknown>, [string, number, number][]][] = [
    ['llada', 'LLaDAModelLM', { model_type: 'llada', n_layers: 2, n_heads: HEADS, n_kv_heads: KV_HEADS, d_model: HIDDEN, vocab_size: VOCAB, mlp_hidden_size: FFN }, [
      ['model.transformer.wte', VOCAB, HIDDEN], ['model.transformer.ff_out', VOCAB, HIDDEN],
      ...[0, 1].flatMap((b): [string, number, number][] => [
        [`model.transformer.blocks.${b}.q_proj`, Q, HIDDEN], [`model.transformer.blocks.${b}.k_proj`, KV, HIDDEN], [`model.transformer.blocks.${b}.v_proj`, KV, HIDDEN],
        [`model.transformer.blocks.${b}.attn_out`, HIDDEN, Q], [`model.transformer.blocks.${b}.ff_proj`, FFN, HIDDEN],
        [`model.transformer.blocks.${b}.up_proj`, FFN, HIDDEN], [`model.transformer.blocks.${b}.ff_out`, HIDDEN, FFN],
      ]),
    ]],
    ['rnd1', 'RND1', { model_type: 'rnd1', num_hidden_layers: 1, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, hidden_size: HIDDEN, num_experts: EXPERTS, vocab_size: VOCAB }, [
      ['model.embed_tokens', VOCAB, HIDDEN], ['lm_head', VOCAB, HIDDEN],
      ['model.layers.0.self_attn.q_proj', Q, HIDDEN], ['model.layers.0.self_attn.k_proj', KV, HIDDEN], ['model.layers.0.self_attn.v_proj', KV, HIDDEN],
      ['model.layers.0.self_attn.o_proj', HIDDEN, Q], ['model.layers.0.mlp.gate', EXPERTS, HIDDEN],
      ...Array.from({ length: EXPERTS }, (_, e): [string, number, number][] => [
        [`model.layers.0.mlp.experts.${e}.gate_proj`, EXPERT_FFN, HIDDEN], [`model.layers.0.mlp.experts.${e}.up_proj`, EXPERT_FFN, HIDDEN],
        [`model.layers.0.mlp.experts.${e}.down_proj`, HIDDEN, EXPERT_FFN],
      ]).flat(),
    ]],
    ['pangu-embedded', 'PanguEmbeddedForCausalLM', { model_type: 'PanguEmbedded', num_hidden_layers: 1, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, hidden_size: HIDDEN, vocab_size: VOCAB }, [
      ['model.embed_tokens', VOCAB, HIDDEN], ['lm_head', VOCAB, HIDDEN],
      ['model.layers.0.self_attn.q_proj', Q, HIDDEN], ['model.layers.0.self_attn.k_proj', KV, HIDDEN], ['model.layers.0.self_attn.v_proj', KV, HIDDEN],
      ['model.layers.0.self_attn.o_proj', HIDDEN, Q], ['model.layers.0.mlp.gate_proj', FFN, HIDDEN], ['model.layers.0.mlp.up_proj', FFN, HIDDEN],
      ['model.layers.0.mlp.down_proj', HIDDEN, FFN],
    ]],
  ];
  it.each(folderCases)('%s (%s): the LoRA converted against the folder is the one converted against the GGUF, byte for byte', async (arch, cls, config, shapes) => {
    const c = CASES.find((x) => x.arch === arch)!;
    // The checkpoint's weights (out, in), bf16 zeros: config.json and the shapes are all --base reads.
    const hf: FixtureTensor[] = shapes.map(([name, out, inF]) => ({ name: `${name}.weight`, dtype: 'BF16', shape: [out, inF], data: new Float64Array(out * inF) }));
    const dir = temp.make({
      'hf/config.json': JSON.stringify({ architectures: [cls], ...config }), 'hf/model.safetensors': buildSafetensors(hf), 'base.gguf': baseGguf(c).bytes,
    });
    mkdirSync(join(dir, 'peft'));
    for (const [name, data] of Object.entries(cellPeftAdapter(c).files)) writeFileSync(join(dir, 'peft', name), data);
    await convertLora({ adapter: join(dir, 'peft'), base: join(dir, 'base.gguf'), out: join(dir, 'from-gguf.gguf') });
    await convertLora({ adapter: join(dir, 'peft'), base: join(dir, 'hf'), out: join(dir, 'from-hf.gguf') });
    const [fromGguf, fromHf] = ['from-gguf.gguf', 'from-hf.gguf'].map((f) => readFileSync(join(dir, f)));
    expect(fromHf.length).toBeGreaterThan(0);
    expect(Buffer.compare(fromHf, fromGguf)).toBe(0);
  });
});
