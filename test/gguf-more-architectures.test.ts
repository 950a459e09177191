/**
 * PEFT adapters onto GGUF bases of architectures whose Hugging Face module names or q/k order differ
 * from llama's, end to end, against float64 truth written here:
 * - Phi-2 (`phi2`): `self_attn.dense` is attn_output, `mlp.fc1`/`fc2` are ffn_up/ffn_down, q and k
 *   as they are;
 * - MiniCPM (`minicpm`): MiniCPMModel.modify_tensors permutes q and k with LlamaModel.permute (GQA:
 *   k with the kv-head count), so GGUF row h·d + 2i + j holds HF row h·d + j·d/2 + i;
 * - EXAONE 3.5 (`exaone`): GPT-2-style paths (`transformer.h.0.attn.attention.q_proj`,
 *   `mlp.c_fc_0` the gate, `c_fc_1` the up projection), not permuted;
 * - LFM2 (`lfm2`): a short-convolution block's `conv.in_proj`/`out_proj` on `shortconv.*`, the MLP's
 *   `feed_forward.w1` (gate) and `w2` (down);
 * - Granite 4.0 H (`granitehybrid`): `mamba.in_proj`/`out_proj` on `ssm_in`/`ssm_out`, q and k
 *   permuted with the block's entry of the per-layer `head_count_kv`, the shared MLP's
 *   `input_linear` split into gate (first half) and up (second half) of the shared expert, the
 *   router's `layer`; Granite 4.0 Micro (`granite`): the same split onto ffn_gate and ffn_up;
 * - Nemotron-H (`nemotron_h`): `backbone.layers.N.mixer.*` of a Mamba-2, an attention (q and k
 *   permuted) and an MLP block;
 * - Nemotron 3 Super (`nemotron_h_moe` with moe_latent_size): the latent MoE's `fc1_latent_proj`
 *   and `fc2_latent_proj` on ffn_latent_down and ffn_latent_up as they are, its gateless experts
 *   (in the latent width) on their rows of ffn_up_exps and ffn_down_exps, the shared expert, and
 *   an attention block's q and k permuted, under `backbone.layers` or transformers 5's `model.layers`;
 * - Hunyuan dense (`hunyuan-dense`): q/k/v/o and the MLP as they are (query_layernorm and
 *   key_layernorm are norms, not permutations);
 * - HunyuanVL's language model (`hunyuan_vl`): as Hunyuan dense, under `model.language_model.`.
 * - Granite 4.0 3B Vision's language model (`granite`, with `granite.deepstack_mapping`):
 *   `model.language_model.…` paths of transformers' Granite4VisionForConditionalGeneration, q and
 *   k permuted as for any granite file, the MLP's gate, up and down;
 * - Falcon-H1 (`falcon-h1`): `feed_forward.up_proj`, the one weight its converter does not multiply
 *   by a config multiplier; LoRAs on the others are refused naming the multiplier;
 * - InternLM2 (`internlm2`): the grouped `attention.wqkv` split into attn_q, attn_k (both
 *   permuted) and attn_v as the converter splits it; `wo`, `feed_forward.w1`/`w3`, `output`;
 * - Llama 4 (`llama4`): `language_model.…` paths, q and k not permuted, the `feed_forward` MLP, the
 *   router, the shared expert and the head;
 * - Gemma 3n (`gemma3n`): AltUp's `modality_router` and `correction_coefs`, LAuReL's
 *   `linear_left`/`linear_right`, `per_layer_input_gate`, and `altup_projections.N` /
 *   `altup_unembed_projections.N` on their rows of the tensors the converter stacks them into;
 * - Gemma 4 E2B/E4B (`gemma4`): `model.language_model.…` paths, the per-layer input path's
 *   `per_layer_input_gate` (inp_gate), `per_layer_projection` (proj) and the model's
 *   `per_layer_model_projection` (per_layer_model_proj), written as they are, beside attention and MLP.
 * Each base has the blocks, tensors, types and metadata keys the converter writes.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { buildGguf, GGML_TYPE_ID, randomTensors, readGguf, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { expectMerged } from './helpers/expect-merged.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, FFN = 48, VOCAB = 16, WEIGHT = 0.7;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

/** A GGUF tensor that holds rows of a module's ΔW: for each of its rows, the ΔW row it holds (none: the base's row). */
interface Landing { tensor: string; rows: number; from: (row: number) => number | undefined }

/**
 * A trained module: its HF path, the GGUF tensor it lands on (or the tensors the converter splits
 * its rows into), (out, in), and whether its rows are permuted by `heads`.
 */
interface Target { module: string; tensor: string | Landing[]; out: number; in: number; permuteHeads?: number }

/** Expert e's `per` rows of a stacked expert tensor (E, per, in), seen as E·per rows. */
const expertRows = (tensor: string, e: number, per: number): Landing[] => [
  { tensor, rows: EXPERTS * per, from: (row) => (row >= e * per && row < (e + 1) * per ? row - e * per : undefined) },
];

/** The converter's split of a module's rows in halves (Granite's input_linear: gate, then up). */
const halves = (lower: string, upper: string, half: number): Landing[] => [
  { tensor: lower, rows: half, from: (row) => row }, { tensor: upper, rows: half, from: (row) => half + row },
];

/**
 * InternLM2's wqkv as InternLM2Model.modify_tensors splits it: reshaped (kv groups, q_per_kv + 2,
 * head_dim, hidden), q = the first q_per_kv heads of each group, k the next, v the last; q and k
 * then go through LlamaModel.permute (with the head and kv-head counts).
 */
function internlm2Wqkv(block: number): Landing[] {
  const perKv = HEADS / KV_HEADS;
  const qOrder: number[] = [], kOrder: number[] = [], vOrder: number[] = [];
  for (let g = 0; g < KV_HEADS; g++) {
    for (let slot = 0; slot < perKv + 2; slot++) {
      for (let d = 0; d < HEAD_DIM; d++) {
        const row = (g * (perKv + 2) + slot) * HEAD_DIM + d;
        (slot < perKv ? qOrder : slot === perKv ? kOrder : vOrder).push(row);
      }
    }
  }
  return [
    { tensor: `blk.${block}.attn_q.weight`, rows: Q, from: (row) => qOrder[hfRow(row, Q, HEADS)] },
    { tensor: `blk.${block}.attn_k.weight`, rows: KV, from: (row) => kOrder[hfRow(row, KV, KV_HEADS)] },
    { tensor: `blk.${block}.attn_v.weight`, rows: KV, from: (row) => vOrder[row] },
  ];
}

interface Case {
  arch: string;
  hfClass: string;
  type: 'F16' | 'BF16';
  /** GGUF tensors as [name, ne (columns first), type where not the case's (1-D ones are F32)]. */
  tensors: [string, number[], string?][];
  /** Metadata keys of this architecture beside (or instead of) the common ones. */
  metadata?: [string, MetaValue][];
  targets: Target[];
  rank: number;
  alpha: number;
  targetModules: string[];
}

const Q = HEADS * HEAD_DIM, KV = KV_HEADS * HEAD_DIM;

/** One block as LlamaModel-like converters write it (gate, up, down; no head of its own). */
const LLAMA_LIKE: [string, number[], string?][] = [
  ['token_embd.weight', [HIDDEN, VOCAB]],
  ['blk.0.attn_norm.weight', [HIDDEN]],
  ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]], ['blk.0.attn_v.weight', [HIDDEN, KV]],
  ['blk.0.attn_output.weight', [Q, HIDDEN]],
  ['blk.0.ffn_norm.weight', [HIDDEN]],
  ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
  ['output_norm.weight', [HIDDEN]],
];

/**
 * A Mamba-2 mixer's tensors as Mamba2Model writes them: in_proj is z, xBC and dt stacked
 * (2·d_inner + 2·groups·state + heads rows), the conv, A, D, dt bias and norm F32.
 */
const D_INNER = 2 * HIDDEN, SSM_STATE = 8, SSM_HEADS = 4, CONV = 4;
const ssmInRows = (groups: number) => 2 * D_INNER + 2 * groups * SSM_STATE + SSM_HEADS;
const mamba2 = (block: number, groups: number): [string, number[], string?][] => [
  [`blk.${block}.ssm_in.weight`, [HIDDEN, ssmInRows(groups)]],
  [`blk.${block}.ssm_conv1d.weight`, [CONV, D_INNER + 2 * groups * SSM_STATE], 'F32'], [`blk.${block}.ssm_conv1d.bias`, [D_INNER + 2 * groups * SSM_STATE]],
  [`blk.${block}.ssm_dt.bias`, [SSM_HEADS]], [`blk.${block}.ssm_a`, [1, SSM_HEADS], 'F32'], [`blk.${block}.ssm_d`, [1, SSM_HEADS], 'F32'],
  [`blk.${block}.ssm_norm.weight`, [D_INNER / groups, groups], 'F32'],
  [`blk.${block}.ssm_out.weight`, [D_INNER, HIDDEN]],
];
const ssmMetadata = (a: string, groups: number): [string, MetaValue][] => [
  [`${a}.ssm.conv_kernel`, u32(CONV)], [`${a}.ssm.state_size`, u32(SSM_STATE)], [`${a}.ssm.group_count`, u32(groups)],
  [`${a}.ssm.inner_size`, u32(D_INNER)], [`${a}.ssm.time_step_rank`, u32(SSM_HEADS)],
];
const perLayer = (values: number[]): MetaValue => ({ type: 'array', itemType: 'u32', value: values });

/** Granite's MoE feed-forward in every block: router, experts, shared expert (SHARED rows each of gate and up). */
const EXPERTS = 4, EXPERT_FFN = 16, SHARED = 24;
/** Nemotron 3 Super's moe_latent_size: the width its routed experts work in. */
const LATENT = 16;
const graniteMoe = (block: number): [string, number[], string?][] => [
  [`blk.${block}.ffn_norm.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate_inp.weight`, [HIDDEN, EXPERTS], 'F32'],
  [`blk.${block}.ffn_gate_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]], [`blk.${block}.ffn_up_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]],
  [`blk.${block}.ffn_down_exps.weight`, [EXPERT_FFN, HIDDEN, EXPERTS]],
  [`blk.${block}.ffn_gate_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_up_shexp.weight`, [HIDDEN, SHARED]],
  [`blk.${block}.ffn_down_shexp.weight`, [SHARED, HIDDEN]],
];

/** Gemma 4 E2B/E4B's per-layer input size (hidden_size_per_layer_input). */
const PER_LAYER = 8;
/** Gemma 3n's AltUp streams (altup_num_inputs) and LAuReL rank. */
const ALTUP = 4, LAUREL = 4;
/** Matrix `index` of square HIDDEN × HIDDEN matrices the converter stacks in order (Gemma 3n's altup_proj). */
const stackedSquare = (tensor: string, index: number): Landing[] => [
  { tensor, rows: (ALTUP - 1) * HIDDEN, from: (row) => (row >= index * HIDDEN && row < (index + 1) * HIDDEN ? row - index * HIDDEN : undefined) },
];

const CASES: Case[] = [
  {
    // Gemma 3n E2B-like (Gemma3NModel): AltUp's router and coefficients, LAuReL, the per-layer
    // input path, and the three altup projections stacked into altup_proj.
    arch: 'gemma3n', hfClass: 'google/gemma-3n-E2B-it', type: 'BF16', rank: 2, alpha: 3,
    targetModules: ['k_proj', 'modality_router', 'correction_coefs', 'linear_left', 'linear_right', 'per_layer_input_gate', 'altup_projections.1', 'altup_unembed_projections.2'],
    tensors: [
      ...LLAMA_LIKE, ['blk.0.attn_q_norm.weight', [HEAD_DIM]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]],
      ['blk.0.post_attention_norm.weight', [HIDDEN]], ['blk.0.post_ffw_norm.weight', [HIDDEN]],
      ['blk.0.altup_router.weight', [HIDDEN, ALTUP]], ['blk.0.altup_router_norm.weight', [HIDDEN]],
      ['blk.0.altup_predict_coef.weight', [ALTUP, ALTUP * ALTUP]], ['blk.0.altup_correct_coef.weight', [ALTUP, ALTUP]], ['blk.0.altup_correct_scale.weight', [HIDDEN]],
      ['blk.0.laurel_l.weight', [HIDDEN, LAUREL]], ['blk.0.laurel_r.weight', [LAUREL, HIDDEN]], ['blk.0.laurel_post_norm.weight', [HIDDEN]],
      ['blk.0.inp_gate.weight', [HIDDEN, PER_LAYER]], ['blk.0.proj.weight', [PER_LAYER, HIDDEN]], ['blk.0.post_norm.weight', [HIDDEN]],
      ['per_layer_token_embd.weight', [PER_LAYER, VOCAB]], ['per_layer_model_proj.weight', [HIDDEN, PER_LAYER]], ['per_layer_proj_norm.weight', [PER_LAYER]],
      ['altup_proj.weight', [HIDDEN, HIDDEN, ALTUP - 1]], ['altup_unembd_proj.weight', [HIDDEN, HIDDEN, ALTUP - 1]],
    ],
    metadata: [
      ['gemma3n.altup.active_idx', u32(0)], ['gemma3n.altup.num_inputs', u32(ALTUP)], ['gemma3n.embedding_length_per_layer_input', u32(PER_LAYER)],
      ['gemma3n.attention.shared_kv_layers', u32(0)], ['gemma3n.activation_sparsity_scale', { type: 'array', itemType: 'f32', value: [0] }],
      ['gemma3n.attention.sliding_window_pattern', { type: 'array', itemType: 'bool', value: [true] }],
    ],
    targets: [
      { module: 'model.language_model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'model.language_model.layers.0.altup.modality_router', tensor: 'blk.0.altup_router.weight', out: ALTUP, in: HIDDEN },
      { module: 'model.language_model.layers.0.altup.correction_coefs', tensor: 'blk.0.altup_correct_coef.weight', out: ALTUP, in: ALTUP },
      { module: 'model.language_model.layers.0.laurel.linear_left', tensor: 'blk.0.laurel_l.weight', out: LAUREL, in: HIDDEN },
      { module: 'model.language_model.layers.0.laurel.linear_right', tensor: 'blk.0.laurel_r.weight', out: HIDDEN, in: LAUREL },
      { module: 'model.language_model.layers.0.per_layer_input_gate', tensor: 'blk.0.inp_gate.weight', out: PER_LAYER, in: HIDDEN },
      { module: 'model.language_model.altup_projections.1', tensor: stackedSquare('altup_proj.weight', 1), out: HIDDEN, in: HIDDEN },
      { module: 'model.language_model.altup_unembed_projections.2', tensor: stackedSquare('altup_unembd_proj.weight', 2), out: HIDDEN, in: HIDDEN },
    ],
  },
  {
    // Gemma 4 E2B-like (Gemma4Model): one block with q/k norms, the per-layer input gate and
    // projection and their norm; the model's per-layer token embedding, projection and its norm.
    arch: 'gemma4', hfClass: 'google/gemma-4-E2B-it', type: 'BF16', rank: 4, alpha: 4,
    targetModules: ['q_proj', 'o_proj', 'up_proj', 'per_layer_input_gate', 'per_layer_projection', 'per_layer_model_projection'],
    tensors: [
      ...LLAMA_LIKE, ['rope_freqs.weight', [HEAD_DIM / 2]],
      ['blk.0.attn_q_norm.weight', [HEAD_DIM]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]], ['blk.0.post_attention_norm.weight', [HIDDEN]],
      ['blk.0.post_ffw_norm.weight', [HIDDEN]], ['blk.0.inp_gate.weight', [HIDDEN, PER_LAYER]], ['blk.0.proj.weight', [PER_LAYER, HIDDEN]],
      ['blk.0.post_norm.weight', [HIDDEN]], ['blk.0.layer_output_scale.weight', [1]],
      ['per_layer_token_embd.weight', [PER_LAYER, VOCAB]], ['per_layer_model_proj.weight', [HIDDEN, PER_LAYER]], ['per_layer_proj_norm.weight', [PER_LAYER]],
    ],
    metadata: [
      ['gemma4.embedding_length_per_layer_input', u32(PER_LAYER)], ['gemma4.attention.shared_kv_layers', u32(0)],
      ['gemma4.attention.sliding_window_pattern', { type: 'array', itemType: 'bool', value: [true] }], ['gemma4.attention.sliding_window', u32(512)],
      ['gemma4.attention.key_length', u32(HEAD_DIM)], ['gemma4.attention.value_length', u32(HEAD_DIM)],
      ['gemma4.attention.key_length_swa', u32(HEAD_DIM)], ['gemma4.attention.value_length_swa', u32(HEAD_DIM)],
      ['gemma4.rope.dimension_count', u32(HEAD_DIM)], ['gemma4.rope.dimension_count_swa', u32(HEAD_DIM)],
    ],
    targets: [
      { module: 'model.language_model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'model.language_model.layers.0.self_attn.o_proj', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.language_model.layers.0.mlp.up_proj', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'model.language_model.layers.0.per_layer_input_gate', tensor: 'blk.0.inp_gate.weight', out: PER_LAYER, in: HIDDEN },
      { module: 'model.language_model.layers.0.per_layer_projection', tensor: 'blk.0.proj.weight', out: HIDDEN, in: PER_LAYER },
      { module: 'model.language_model.per_layer_model_projection', tensor: 'per_layer_model_proj.weight', out: PER_LAYER, in: HIDDEN },
    ],
  },
  {
    // Granite 4.0 H Tiny-like: block 0 Mamba-2, block 1 attention, both with experts and a shared
    // expert; head_count_kv is per block (0 for Mamba-2), q and k permuted (undo_permute kept).
    arch: 'granitehybrid', hfClass: 'ibm-granite/granite-4.0-h-tiny', type: 'BF16', rank: 4, alpha: 8,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj', 'out_proj', 'input_linear', 'output_linear', 'layer'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ...mamba2(0, 1), ...graniteMoe(0),
      ['blk.1.attn_norm.weight', [HIDDEN]],
      ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_k.weight', [HIDDEN, KV]], ['blk.1.attn_v.weight', [HIDDEN, KV]],
      ['blk.1.attn_output.weight', [Q, HIDDEN]], ...graniteMoe(1),
      ['output_norm.weight', [HIDDEN]],
    ],
    metadata: [
      ['granitehybrid.block_count', u32(2)], ['granitehybrid.attention.head_count_kv', perLayer([0, KV_HEADS])],
      ['granitehybrid.expert_count', u32(EXPERTS)], ['granitehybrid.expert_used_count', u32(2)],
      ['granitehybrid.expert_feed_forward_length', u32(EXPERT_FFN)], ['granitehybrid.expert_shared_feed_forward_length', u32(SHARED)],
      ['granitehybrid.attention.scale', { type: 'f32', value: 0.0078125 }], ['granitehybrid.embedding_scale', { type: 'f32', value: 12 }],
      ['granitehybrid.residual_scale', { type: 'f32', value: 0.22 }], ['granitehybrid.logit_scale', { type: 'f32', value: 6 }],
      ...ssmMetadata('granitehybrid', 1),
    ],
    targets: [
      { module: 'model.layers.0.mamba.in_proj', tensor: 'blk.0.ssm_in.weight', out: ssmInRows(1), in: HIDDEN },
      { module: 'model.layers.0.mamba.out_proj', tensor: 'blk.0.ssm_out.weight', out: HIDDEN, in: D_INNER },
      { module: 'model.layers.0.shared_mlp.output_linear', tensor: 'blk.0.ffn_down_shexp.weight', out: HIDDEN, in: SHARED },
      { module: 'model.layers.1.self_attn.q_proj', tensor: 'blk.1.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'model.layers.1.self_attn.k_proj', tensor: 'blk.1.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'model.layers.1.self_attn.o_proj', tensor: 'blk.1.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.layers.1.shared_mlp.input_linear', tensor: halves('blk.1.ffn_gate_shexp.weight', 'blk.1.ffn_up_shexp.weight', SHARED), out: 2 * SHARED, in: HIDDEN },
      { module: 'model.layers.1.block_sparse_moe.router.layer', tensor: 'blk.1.ffn_gate_inp.weight', out: EXPERTS, in: HIDDEN },
    ],
  },
  {
    // Granite 4.0 Micro: GraniteMoeHybrid with attention only and no experts, written as granite;
    // the shared MLP's input_linear splits into ffn_gate and ffn_up.
    arch: 'granite', hfClass: 'ibm-granite/granite-4.0-micro', type: 'BF16', rank: 3, alpha: 6,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'input_linear', 'output_linear'],
    tensors: LLAMA_LIKE,
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'model.layers.0.shared_mlp.input_linear', tensor: halves('blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight', FFN), out: 2 * FFN, in: HIDDEN },
      { module: 'model.layers.0.shared_mlp.output_linear', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    // Nemotron Nano 2-like pattern "M*-": a Mamba-2 mixer (2 groups), an attention mixer (q and k
    // permuted), an MLP mixer; each block has one norm; PEFT paths under `backbone`.
    arch: 'nemotron_h', hfClass: 'nvidia/NVIDIA-Nemotron-Nano-9B-v2', type: 'BF16', rank: 2, alpha: 2,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj', 'out_proj', 'up_proj', 'down_proj'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ...mamba2(0, 2),
      ['blk.1.attn_norm.weight', [HIDDEN]],
      ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_k.weight', [HIDDEN, KV]], ['blk.1.attn_v.weight', [HIDDEN, KV]],
      ['blk.1.attn_output.weight', [Q, HIDDEN]],
      ['blk.2.attn_norm.weight', [HIDDEN]], ['blk.2.ffn_up.weight', [HIDDEN, FFN]], ['blk.2.ffn_down.weight', [FFN, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['nemotron_h.block_count', u32(3)], ['nemotron_h.attention.head_count_kv', perLayer([0, KV_HEADS, 0])],
      ['nemotron_h.feed_forward_length', perLayer([0, 0, FFN])],
      ['nemotron_h.attention.key_length', u32(HEAD_DIM)], ['nemotron_h.attention.value_length', u32(HEAD_DIM)],
      ...ssmMetadata('nemotron_h', 2),
    ],
    targets: [
      { module: 'backbone.layers.0.mixer.in_proj', tensor: 'blk.0.ssm_in.weight', out: ssmInRows(2), in: HIDDEN },
      { module: 'backbone.layers.0.mixer.out_proj', tensor: 'blk.0.ssm_out.weight', out: HIDDEN, in: D_INNER },
      { module: 'backbone.layers.1.mixer.q_proj', tensor: 'blk.1.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'backbone.layers.1.mixer.k_proj', tensor: 'blk.1.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'backbone.layers.1.mixer.v_proj', tensor: 'blk.1.attn_v.weight', out: KV, in: HIDDEN },
      { module: 'backbone.layers.2.mixer.up_proj', tensor: 'blk.2.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'backbone.layers.2.mixer.down_proj', tensor: 'blk.2.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    // Nemotron 3 Super-like pattern "ME*" (converted with --no-mtp): a Mamba-2 mixer, a latent MoE
    // mixer (router, fc1_latent_proj, experts of up and down in the latent width, fc2_latent_proj,
    // a shared expert), an attention mixer (q and k permuted). The per-expert Linears are those of
    // the checkpoint's own modeling code (backbone.…); transformers 5 names the tree model.layers.
    arch: 'nemotron_h_moe', hfClass: 'nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16', type: 'BF16', rank: 3, alpha: 5,
    targetModules: ['in_proj', 'fc1_latent_proj', 'fc2_latent_proj', 'up_proj', 'down_proj', 'q_proj', 'k_proj', 'o_proj'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ...mamba2(0, 2),
      ['blk.1.attn_norm.weight', [HIDDEN]], ['blk.1.ffn_gate_inp.weight', [HIDDEN, EXPERTS], 'F32'], ['blk.1.exp_probs_b.bias', [EXPERTS]],
      ['blk.1.ffn_latent_down.weight', [HIDDEN, LATENT]], ['blk.1.ffn_up_exps.weight', [LATENT, EXPERT_FFN, EXPERTS]],
      ['blk.1.ffn_down_exps.weight', [EXPERT_FFN, LATENT, EXPERTS]], ['blk.1.ffn_latent_up.weight', [LATENT, HIDDEN]],
      ['blk.1.ffn_up_shexp.weight', [HIDDEN, SHARED]], ['blk.1.ffn_down_shexp.weight', [SHARED, HIDDEN]],
      ['blk.2.attn_norm.weight', [HIDDEN]],
      ['blk.2.attn_q.weight', [HIDDEN, Q]], ['blk.2.attn_k.weight', [HIDDEN, KV]], ['blk.2.attn_v.weight', [HIDDEN, KV]],
      ['blk.2.attn_output.weight', [Q, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['nemotron_h_moe.block_count', u32(3)], ['nemotron_h_moe.attention.head_count_kv', perLayer([0, 0, KV_HEADS])],
      ['nemotron_h_moe.feed_forward_length', perLayer([0, EXPERT_FFN, 0])],
      ['nemotron_h_moe.attention.key_length', u32(HEAD_DIM)], ['nemotron_h_moe.attention.value_length', u32(HEAD_DIM)],
      ...ssmMetadata('nemotron_h_moe', 2),
      ['nemotron_h_moe.expert_count', u32(EXPERTS)], ['nemotron_h_moe.expert_used_count', u32(2)],
      ['nemotron_h_moe.expert_feed_forward_length', u32(EXPERT_FFN)], ['nemotron_h_moe.expert_shared_feed_forward_length', u32(SHARED)],
      ['nemotron_h_moe.expert_shared_count', u32(1)], ['nemotron_h_moe.expert_weights_norm', { type: 'bool', value: true }],
      ['nemotron_h_moe.expert_weights_scale', { type: 'f32', value: 5 }], ['nemotron_h_moe.expert_group_count', u32(1)],
      ['nemotron_h_moe.moe_latent_size', u32(LATENT)],
    ],
    targets: [
      { module: 'backbone.layers.0.mixer.in_proj', tensor: 'blk.0.ssm_in.weight', out: ssmInRows(2), in: HIDDEN },
      { module: 'model.layers.1.mixer.fc1_latent_proj', tensor: 'blk.1.ffn_latent_down.weight', out: LATENT, in: HIDDEN },
      { module: 'model.layers.1.mixer.fc2_latent_proj', tensor: 'blk.1.ffn_latent_up.weight', out: HIDDEN, in: LATENT },
      { module: 'backbone.layers.1.mixer.experts.2.up_proj', tensor: expertRows('blk.1.ffn_up_exps.weight', 2, EXPERT_FFN), out: EXPERT_FFN, in: LATENT },
      { module: 'backbone.layers.1.mixer.experts.0.down_proj', tensor: expertRows('blk.1.ffn_down_exps.weight', 0, LATENT), out: LATENT, in: EXPERT_FFN },
      { module: 'backbone.layers.1.mixer.shared_experts.up_proj', tensor: 'blk.1.ffn_up_shexp.weight', out: SHARED, in: HIDDEN },
      { module: 'model.layers.1.mixer.shared_experts.down_proj', tensor: 'blk.1.ffn_down_shexp.weight', out: HIDDEN, in: SHARED },
      { module: 'model.layers.2.mixer.q_proj', tensor: 'blk.2.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'backbone.layers.2.mixer.k_proj', tensor: 'blk.2.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'backbone.layers.2.mixer.o_proj', tensor: 'blk.2.attn_output.weight', out: HIDDEN, in: Q },
    ],
  },
  {
    // Hunyuan-7B-Instruct-like (HunYuanModel: TextModel's plain mapping), per-head q/k norms.
    arch: 'hunyuan-dense', hfClass: 'tencent/Hunyuan-7B-Instruct', type: 'BF16', rank: 2, alpha: 3,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'gate_proj', 'down_proj'],
    tensors: [...LLAMA_LIKE, ['blk.0.attn_q_norm.weight', [HEAD_DIM]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]], ['output.weight', [HIDDEN, VOCAB]]],
    metadata: [['hunyuan-dense.rope.dimension_count', u32(HEAD_DIM)], ['hunyuan-dense.attention.key_length', u32(HEAD_DIM)]],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'model.layers.0.self_attn.v_proj', tensor: 'blk.0.attn_v.weight', out: KV, in: HIDDEN },
      { module: 'model.layers.0.mlp.gate_proj', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.mlp.down_proj', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    // HunyuanOCR-like (HunyuanVLTextModel, a HunYuanModel): transformers' `model.language_model.…`
    // paths, q/k/v/o and the MLP as they are; XD-RoPE's sections are metadata only.
    arch: 'hunyuan_vl', hfClass: 'tencent/HunyuanOCR', type: 'BF16', rank: 2, alpha: 3,
    targetModules: ['q_proj', 'k_proj', 'o_proj', 'up_proj'],
    tensors: [...LLAMA_LIKE, ['blk.0.attn_q_norm.weight', [HEAD_DIM]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]], ['output.weight', [HIDDEN, VOCAB]]],
    metadata: [['hunyuan_vl.rope.dimension_count', u32(HEAD_DIM)], ['hunyuan_vl.attention.key_length', u32(HEAD_DIM)],
      ['hunyuan_vl.rope.scaling.alpha', { type: 'f32', value: 1000 }]],
    targets: [
      { module: 'model.language_model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'model.language_model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'model.language_model.layers.0.self_attn.o_proj', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.language_model.layers.0.mlp.up_proj', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
    ],
  },
  {
    // Granite 4.0 3B Vision's language model, converted as granite (GraniteHybridModel with
    // attention only), with the vision features' target layers in granite.deepstack_mapping;
    // transformers names it model.language_model (Granite4VisionTextModel, a GraniteModel).
    arch: 'granite', hfClass: 'ibm-granite/granite-4.0-3b-vision', type: 'BF16', rank: 2, alpha: 4,
    targetModules: ['q_proj', 'k_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    tensors: LLAMA_LIKE,
    metadata: [
      ['granite.attention.scale', { type: 'f32', value: 0.015625 }], ['granite.embedding_scale', { type: 'f32', value: 12 }],
      ['granite.residual_scale', { type: 'f32', value: 0.22 }], ['granite.logit_scale', { type: 'f32', value: 10 }],
      ['granite.deepstack_mapping', { type: 'array', itemType: 'i32', value: [-1] }],
    ],
    targets: [
      { module: 'model.language_model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'model.language_model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'model.language_model.layers.0.self_attn.o_proj', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.language_model.layers.0.mlp.gate_proj', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'model.language_model.layers.0.mlp.up_proj', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'model.language_model.layers.0.mlp.down_proj', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    // Falcon-H1: attention and Mamba-2 side by side in every block; only up_proj is written as it
    // is (a LoRA on the scaled weights is refused, below).
    arch: 'falcon-h1', hfClass: 'tiiuae/Falcon-H1-0.5B-Instruct', type: 'BF16', rank: 2, alpha: 4,
    targetModules: ['up_proj'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_k.weight', [HIDDEN, KV]], ['blk.0.attn_v.weight', [HIDDEN, KV]],
      ['blk.0.attn_output.weight', [Q, HIDDEN]], ...mamba2(0, 1),
      ['blk.0.ffn_norm.weight', [HIDDEN]],
      ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [['falcon-h1.attention.key_length', u32(HEAD_DIM)], ...ssmMetadata('falcon-h1', 1)],
    targets: [{ module: 'model.layers.0.feed_forward.up_proj', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN }],
  },
  {
    // InternLM2: the grouped wqkv lands on attn_q, attn_k and attn_v as the converter splits and
    // permutes it; wo, feed_forward.w1/w3/w2, tok_embeddings and output by name.
    arch: 'internlm2', hfClass: 'internlm/internlm2_5-7b-chat', type: 'BF16', rank: 3, alpha: 5,
    targetModules: ['wqkv', 'wo', 'w1', 'w2', 'w3', 'output'],
    tensors: [...LLAMA_LIKE, ['output.weight', [HIDDEN, VOCAB]]],
    targets: [
      { module: 'model.layers.0.attention.wqkv', tensor: internlm2Wqkv(0), out: Q + 2 * KV, in: HIDDEN },
      { module: 'model.layers.0.attention.wo', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.layers.0.feed_forward.w1', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.feed_forward.w3', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'output', tensor: 'output.weight', out: VOCAB, in: HIDDEN },
    ],
  },
  {
    // Llama 4 (Scout-like): block 0 dense feed_forward, block 1 MoE (router, shared expert, stacked
    // experts); q and k as they are (Llama4Model turns undo_permute off). Multimodal paths.
    arch: 'llama4', hfClass: 'meta-llama/Llama-4-Scout-17B-16E-Instruct', type: 'BF16', rank: 2, alpha: 4,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'router', 'lm_head'],
    tensors: [
      ...LLAMA_LIKE.filter(([name]) => name !== 'output_norm.weight'),
      ['blk.1.attn_norm.weight', [HIDDEN]],
      ['blk.1.attn_q.weight', [HIDDEN, Q]], ['blk.1.attn_k.weight', [HIDDEN, KV]], ['blk.1.attn_v.weight', [HIDDEN, KV]],
      ['blk.1.attn_output.weight', [Q, HIDDEN]], ['blk.1.ffn_norm.weight', [HIDDEN]],
      ['blk.1.ffn_gate_inp.weight', [HIDDEN, EXPERTS], 'F32'],
      ['blk.1.ffn_gate_exps.weight', [HIDDEN, EXPERT_FFN, EXPERTS]], ['blk.1.ffn_up_exps.weight', [HIDDEN, EXPERT_FFN, EXPERTS]],
      ['blk.1.ffn_down_exps.weight', [EXPERT_FFN, HIDDEN, EXPERTS]],
      ['blk.1.ffn_gate_shexp.weight', [HIDDEN, SHARED]], ['blk.1.ffn_up_shexp.weight', [HIDDEN, SHARED]], ['blk.1.ffn_down_shexp.weight', [SHARED, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['llama4.block_count', u32(2)], ['llama4.expert_count', u32(EXPERTS)], ['llama4.expert_used_count', u32(1)],
      ['llama4.expert_feed_forward_length', u32(EXPERT_FFN)], ['llama4.interleave_moe_layer_step', u32(2)],
      ['llama4.rope.dimension_count', u32(HEAD_DIM)],
    ],
    targets: [
      { module: 'language_model.model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'language_model.model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'language_model.model.layers.0.feed_forward.gate_proj', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'language_model.model.layers.0.feed_forward.down_proj', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
      { module: 'language_model.model.layers.1.feed_forward.router', tensor: 'blk.1.ffn_gate_inp.weight', out: EXPERTS, in: HIDDEN },
      { module: 'language_model.model.layers.1.feed_forward.shared_expert.up_proj', tensor: 'blk.1.ffn_up_shexp.weight', out: SHARED, in: HIDDEN },
      { module: 'language_model.model.layers.1.feed_forward.shared_expert.down_proj', tensor: 'blk.1.ffn_down_shexp.weight', out: HIDDEN, in: SHARED },
      { module: 'language_model.lm_head', tensor: 'output.weight', out: VOCAB, in: HIDDEN },
    ],
  },
  {
    arch: 'phi2', hfClass: 'microsoft/phi-2', type: 'F16', rank: 4, alpha: 8,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_norm.bias', [HIDDEN]],
      ['blk.0.attn_q.weight', [HIDDEN, Q]], ['blk.0.attn_q.bias', [Q]],
      ['blk.0.attn_k.weight', [HIDDEN, Q]], ['blk.0.attn_k.bias', [Q]],
      ['blk.0.attn_v.weight', [HIDDEN, Q]], ['blk.0.attn_v.bias', [Q]],
      ['blk.0.attn_output.weight', [Q, HIDDEN]], ['blk.0.attn_output.bias', [HIDDEN]],
      ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.bias', [FFN]],
      ['blk.0.ffn_down.weight', [FFN, HIDDEN]], ['blk.0.ffn_down.bias', [HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output_norm.bias', [HIDDEN]],
      ['output.weight', [HIDDEN, VOCAB]], ['output.bias', [VOCAB]],
    ],
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: Q, in: HIDDEN },
      { module: 'model.layers.0.self_attn.dense', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'model.layers.0.mlp.fc1', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.mlp.fc2', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    arch: 'minicpm', hfClass: 'openbmb/MiniCPM-2B-sft-bf16', type: 'F16', rank: 1, alpha: 3,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    // Tied head: no output.weight.
    tensors: LLAMA_LIKE,
    targets: [
      { module: 'model.layers.0.self_attn.q_proj', tensor: 'blk.0.attn_q.weight', out: Q, in: HIDDEN, permuteHeads: HEADS },
      { module: 'model.layers.0.self_attn.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN, permuteHeads: KV_HEADS },
      { module: 'model.layers.0.self_attn.v_proj', tensor: 'blk.0.attn_v.weight', out: KV, in: HIDDEN },
      { module: 'model.layers.0.mlp.gate_proj', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
    ],
  },
  {
    // A short-convolution block (LFM2's conv layers have no attention).
    arch: 'lfm2', hfClass: 'LiquidAI/LFM2-1.2B', type: 'BF16', rank: 2, alpha: 4,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'in_proj', 'w1', 'w2', 'w3'],
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]],
      ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.shortconv.conv.weight', [3, HIDDEN]],
      ['blk.0.shortconv.in_proj.weight', [HIDDEN, 3 * HIDDEN]], ['blk.0.shortconv.out_proj.weight', [HIDDEN, HIDDEN]],
      ['blk.0.ffn_norm.weight', [HIDDEN]],
      ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]],
      ['token_embd_norm.weight', [HIDDEN]],
    ],
    targets: [
      { module: 'model.layers.0.conv.in_proj', tensor: 'blk.0.shortconv.in_proj.weight', out: 3 * HIDDEN, in: HIDDEN },
      { module: 'model.layers.0.conv.out_proj', tensor: 'blk.0.shortconv.out_proj.weight', out: HIDDEN, in: HIDDEN },
      { module: 'model.layers.0.feed_forward.w1', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'model.layers.0.feed_forward.w2', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
  {
    arch: 'exaone', hfClass: 'LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct', type: 'BF16', rank: 12, alpha: 16,
    targetModules: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'c_fc_0', 'c_fc_1', 'c_proj'],
    tensors: [...LLAMA_LIKE, ['output.weight', [HIDDEN, VOCAB]]],
    targets: [
      { module: 'transformer.h.0.attn.attention.k_proj', tensor: 'blk.0.attn_k.weight', out: KV, in: HIDDEN },
      { module: 'transformer.h.0.attn.attention.out_proj', tensor: 'blk.0.attn_output.weight', out: HIDDEN, in: Q },
      { module: 'transformer.h.0.mlp.c_fc_0', tensor: 'blk.0.ffn_gate.weight', out: FFN, in: HIDDEN },
      { module: 'transformer.h.0.mlp.c_fc_1', tensor: 'blk.0.ffn_up.weight', out: FFN, in: HIDDEN },
      { module: 'transformer.h.0.mlp.c_proj', tensor: 'blk.0.ffn_down.weight', out: HIDDEN, in: FFN },
    ],
  },
];

function baseGguf(c: Case) {
  const specs = c.tensors.map(([name, ne, type]) => ({ name, ne, type: type ?? (ne.length === 1 ? 'F32' : c.type) }));
  const { tensors, values } = randomTensors(specs, gaussian(3));
  const a = c.arch;
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: a }],
    ['general.name', { type: 'string', value: `${a} tiny` }],
    [`${a}.block_count`, u32(1)], [`${a}.context_length`, u32(2048)], [`${a}.embedding_length`, u32(HIDDEN)],
    [`${a}.feed_forward_length`, u32(FFN)], [`${a}.attention.head_count`, u32(HEADS)],
    [`${a}.attention.head_count_kv`, u32(a === 'phi2' ? HEADS : KV_HEADS)],
    ['general.file_type', u32(c.type === 'F16' ? 1 : 32)],
  ];
  const own = c.metadata ?? [];
  const merged = [...metadata.filter(([key]) => !own.some(([k]) => k === key)), ...own];
  return { bytes: buildGguf({ metadata: merged, tensors }), values };
}

function peftAdapter(c: Case) {
  const g = gaussian(29);
  const factors = c.targets.map((t) => ({
    ...t,
    a: Float64Array.from({ length: c.rank * t.in }, () => Math.fround(0.1 * g())),
    b: Float64Array.from({ length: t.out * c.rank }, () => Math.fround(0.1 * g())),
  }));
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: c.hfClass, r: c.rank, lora_alpha: c.alpha,
      target_modules: c.targetModules, peft_version: '0.17.1',
    }),
    'adapter_model.safetensors': buildSafetensors(factors.flatMap((f) => [
      { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'F32', shape: [c.rank, f.in], data: f.a },
      { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'F32', shape: [f.out, c.rank], data: f.b },
    ])),
  };
  return { files, factors };
}

/** The tensors a module's ΔW lands on, each with the ΔW row each of its rows holds. */
function landings(t: Target): Landing[] {
  if (typeof t.tensor !== 'string') return t.tensor;
  return [{ tensor: t.tensor, rows: t.out, from: (row) => hfRow(row, t.out, t.permuteHeads) }];
}

/** The HF row a GGUF row holds: LlamaModel.permute with `heads` heads, or the same row. */
function hfRow(row: number, rows: number, heads?: number): number {
  if (!heads) return row;
  const d = rows / heads;
  const h = Math.floor(row / d), within = row % d;
  const i = Math.floor(within / 2), j = within % 2;
  return h * d + j * (d / 2) + i;
}

describe.each(CASES)('PEFT LoRA on a $arch GGUF ($hfClass)', (c) => {
  const base = baseGguf(c);
  const adapter = peftAdapter(c);

  it.for(['cpu', 'webgpu'])('lands each module on its tensor (rows permuted where the converter permutes them), as float64 truth says, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes } = await mergeFileInMemory({
      backend, base: { [`${c.arch}-tiny-${c.type}.gguf`]: base.bytes }, adapters: [{ files: adapter.files, name: `${c.arch}-lora`, weight: WEIGHT }],
      outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 1024,
    });
    const out = readGguf(bytes);
    const scale = WEIGHT * c.alpha / c.rank;
    for (const f of adapter.factors) {
      for (const { tensor, rows, from } of landings(f)) {
        const w = base.values.get(tensor)!;
        // --dtype f32 converts what llama-quantize would quantize; the rest (Gemma's
        // per_layer_model_proj) keeps its type.
        const written = out.tensors.find((t) => t.name === tensor)!;
        const dtype = written.typeId === GGML_TYPE_ID.F32 ? 'F32' : c.type;
        const merged = tensorValues(dtype, written.data);
        const truth = new Float64Array(rows * f.in);
        for (let row = 0; row < rows; row++) {
          const src = from(row);
          for (let col = 0; col < f.in; col++) {
            let sum = 0;
            if (src !== undefined) for (let k = 0; k < c.rank; k++) sum += f.b[src * c.rank + k] * f.a[k * f.in + col];
            truth[row * f.in + col] = w[row * f.in + col] + scale * sum;
          }
        }
        expectMerged(merged, truth, dtype, tensor);
      }
    }
    const touched = new Set(adapter.factors.flatMap((f) => landings(f).map((l) => l.tensor)));
    for (const t of readGguf(base.bytes).tensors.filter((x) => !touched.has(x.name))) {
      expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
    }
  });
});

describe('PEFT LoRA on a falcon-h1 GGUF, on weights its converter scales', () => {
  const falcon = CASES.find((c) => c.arch === 'falcon-h1')!;
  const base = baseGguf(falcon);

  it.for([
    ['model.layers.0.self_attn.q_proj', 'blk.0.attn_q.weight', Q, HIDDEN, 'attention_in_multiplier'],
    ['model.layers.0.feed_forward.gate_proj', 'blk.0.ffn_gate.weight', FFN, HIDDEN, 'mlp_multipliers[0]'],
    ['model.layers.0.mamba.in_proj', 'blk.0.ssm_in.weight', ssmInRows(1), HIDDEN, 'ssm_in_multiplier and, per group of rows, ssm_multipliers'],
  ] as const)('refuses %s, naming the multiplier the GGUF does not record', async ([module, tensor, out, inDim, multiplier]) => {
    const c: Case = { ...falcon, targetModules: [module.split('.').at(-1)!], targets: [{ module, tensor, out, in: inDim }] };
    const prepared = await prepareMerge(memoryInputFileSet({ 'falcon-h1-tiny-BF16.gguf': base.bytes }, 'base'),
      [{ files: memoryInputFileSet(peftAdapter(c).files, 'falcon-lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain(`module "${module}"`);
    expect(messages[0]).toContain(`multiplies this weight by the config's ${multiplier}`);
  });
});
