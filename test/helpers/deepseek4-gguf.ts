/**
 * A tiny DeepSeek-V4-Flash GGUF (`deepseek4`) as DeepseekV4Model writes it with `--outtype q8_0`:
 * a sliding-window block, a compressed sparse attention block (compress ratio 4, with the
 * lightning indexer) and a heavily compressed one (ratio 128), the hyper-connections, the routed
 * and shared experts; and the attention projections a PEFT LoRA in transformers' names lands on.
 */
import type { MetaValue } from './gguf-builder.js';
import { cellBaseGguf, whole, type CellBase, type CellCase, type Target } from './gguf-cell-truth.js';

export const HIDDEN = 32, VOCAB = 16, EXPERTS = 4, EXPERT_FFN = 32;
/** Attention: heads of HEAD_DIM (one shared KV head), q_lora_rank, output groups and o_lora_rank. */
export const HEADS = 4, HEAD_DIM = 16, ROPE = 4, Q_RANK = 32, GROUPS = 2, O_RANK = 16;
/** The lightning indexer (index_n_heads, index_head_dim) and the hyper-connection streams (hc_mult). */
export const IDX_HEADS = 2, IDX_DIM = 8, HC = 2;
/** compress_ratios of the three blocks: sliding window only, CSA, HCA. */
export const RATIOS = [0, 4, 128];
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

export type Tensors = [string, number[], string?][];
/** 2-D weights are Q8_0 (`--outtype q8_0`), the hyper-connections' and 1-D tensors F32. */
const q8 = (name: string, ne: number[]): Tensors[number] => [name, ne, 'Q8_0'];

/** One block as DeepseekV4Model writes it, for its compress ratio. */
function block(b: number): Tensors {
  const ratio = RATIOS[b], mix = (2 + HC) * HC;
  const coff = ratio === 4 ? 2 : 1;
  return [
    [`blk.${b}.hc_attn_fn.weight`, [HC * HIDDEN, mix], 'F32'], [`blk.${b}.hc_attn_base.weight`, [mix]], [`blk.${b}.hc_attn_scale.weight`, [3]],
    [`blk.${b}.attn_norm.weight`, [HIDDEN]], [`blk.${b}.attn_sinks.weight`, [HEADS]],
    q8(`blk.${b}.attn_q_a.weight`, [HIDDEN, Q_RANK]), [`blk.${b}.attn_q_a_norm.weight`, [Q_RANK]],
    q8(`blk.${b}.attn_q_b.weight`, [Q_RANK, HEADS * HEAD_DIM]),
    q8(`blk.${b}.attn_kv.weight`, [HIDDEN, HEAD_DIM]), [`blk.${b}.attn_kv_a_norm.weight`, [HEAD_DIM]],
    q8(`blk.${b}.attn_output_a.weight`, [HEADS * HEAD_DIM / GROUPS, GROUPS * O_RANK]),
    q8(`blk.${b}.attn_output_b.weight`, [GROUPS * O_RANK, HIDDEN]),
    ...(ratio ? [
      q8(`blk.${b}.attn_compressor_kv.weight`, [HIDDEN, coff * HEAD_DIM]), q8(`blk.${b}.attn_compressor_gate.weight`, [HIDDEN, coff * HEAD_DIM]),
      [`blk.${b}.attn_compressor_ape.weight`, [coff * HEAD_DIM, ratio], 'F32'], [`blk.${b}.attn_compressor_norm.weight`, [HEAD_DIM]],
    ] as Tensors : []),
    ...(ratio === 4 ? [
      q8(`blk.${b}.indexer.attn_q_b.weight`, [Q_RANK, IDX_HEADS * IDX_DIM]), [`blk.${b}.indexer.proj.weight`, [HIDDEN, IDX_HEADS], 'F32'],
      q8(`blk.${b}.indexer_compressor_kv.weight`, [HIDDEN, 2 * IDX_DIM]), q8(`blk.${b}.indexer_compressor_gate.weight`, [HIDDEN, 2 * IDX_DIM]),
      [`blk.${b}.indexer_compressor_ape.weight`, [2 * IDX_DIM, 4], 'F32'], [`blk.${b}.indexer_compressor_norm.weight`, [IDX_DIM]],
    ] as Tensors : []),
    [`blk.${b}.hc_ffn_fn.weight`, [HC * HIDDEN, mix], 'F32'], [`blk.${b}.hc_ffn_base.weight`, [mix]], [`blk.${b}.hc_ffn_scale.weight`, [3]],
    [`blk.${b}.ffn_norm.weight`, [HIDDEN]],
    q8(`blk.${b}.ffn_gate_inp.weight`, [HIDDEN, EXPERTS]), [`blk.${b}.exp_probs_b.bias`, [EXPERTS]],
    q8(`blk.${b}.ffn_gate_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]), q8(`blk.${b}.ffn_up_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]),
    q8(`blk.${b}.ffn_down_exps.weight`, [EXPERT_FFN, HIDDEN, EXPERTS]),
    q8(`blk.${b}.ffn_gate_shexp.weight`, [HIDDEN, EXPERT_FFN]), q8(`blk.${b}.ffn_up_shexp.weight`, [HIDDEN, EXPERT_FFN]),
    q8(`blk.${b}.ffn_down_shexp.weight`, [EXPERT_FFN, HIDDEN]),
  ];
}

export const TENSORS: Tensors = [
  q8('token_embd.weight', [HIDDEN, VOCAB]), ...block(0), ...block(1), ...block(2),
  ['output_hc_fn.weight', [HC * HIDDEN, HC], 'F32'], ['output_hc_base.weight', [HC]], ['output_hc_scale.weight', [1]],
  ['output_norm.weight', [HIDDEN]], q8('output.weight', [HIDDEN, VOCAB]),
];

/** DeepseekV4Model.set_gguf_parameters' keys (MQA: one KV head). */
export const METADATA: [string, MetaValue][] = [
  ['deepseek4.block_count', u32(3)], ['deepseek4.attention.head_count', u32(HEADS)], ['deepseek4.attention.head_count_kv', u32(1)],
  ['deepseek4.attention.key_length', u32(HEAD_DIM)], ['deepseek4.attention.value_length', u32(HEAD_DIM)],
  ['deepseek4.vocab_size', u32(VOCAB)], ['deepseek4.rope.dimension_count', u32(ROPE)],
  ['deepseek4.attention.q_lora_rank', u32(Q_RANK)], ['deepseek4.attention.output_lora_rank', u32(O_RANK)],
  ['deepseek4.attention.output_group_count', u32(GROUPS)],
  ['deepseek4.attention.compress_ratios', { type: 'array', itemType: 'i32', value: RATIOS }],
  ['deepseek4.attention.compress_rope_freq_base', { type: 'f32', value: 160000 }],
  ['deepseek4.expert_feed_forward_length', u32(EXPERT_FFN)], ['deepseek4.expert_count', u32(EXPERTS)],
  ['deepseek4.expert_used_count', u32(2)], ['deepseek4.expert_shared_count', u32(1)],
  ['deepseek4.expert_weights_scale', { type: 'f32', value: 1.5 }], ['deepseek4.hash_layer_count', u32(0)],
  ['deepseek4.attention.sliding_window', u32(8)], ['deepseek4.attention.indexer.head_count', u32(IDX_HEADS)],
  ['deepseek4.attention.indexer.key_length', u32(IDX_DIM)], ['deepseek4.attention.indexer.top_k', u32(4)],
  ['deepseek4.nextn_predict_layers', u32(1)], ['deepseek4.hyper_connection.count', u32(HC)],
  ['deepseek4.hyper_connection.sinkhorn_iterations', u32(20)], ['deepseek4.hyper_connection.epsilon', { type: 'f32', value: 1e-6 }],
];

/** The attention projections of block b (transformers' names), each on its tensor as it is. */
export const attention = (b: number): Target[] => [
  { module: `model.layers.${b}.self_attn.q_a_proj`, out: Q_RANK, in: HIDDEN, lands: whole(`blk.${b}.attn_q_a.weight`) },
  { module: `model.layers.${b}.self_attn.q_b_proj`, out: HEADS * HEAD_DIM, in: Q_RANK, lands: whole(`blk.${b}.attn_q_b.weight`) },
  { module: `model.layers.${b}.self_attn.kv_proj`, out: HEAD_DIM, in: HIDDEN, lands: whole(`blk.${b}.attn_kv.weight`) },
  // The grouped output projection: o_groups · o_lora_rank rows, each group's own inputs as columns.
  { module: `model.layers.${b}.self_attn.o_a_proj`, out: GROUPS * O_RANK, in: HEADS * HEAD_DIM / GROUPS, lands: whole(`blk.${b}.attn_output_a.weight`) },
  { module: `model.layers.${b}.self_attn.o_b_proj`, out: HIDDEN, in: GROUPS * O_RANK, lands: whole(`blk.${b}.attn_output_b.weight`) },
];

/** The base GGUF of a case on these tensors, with the keys every deepseek4 file holds. */
export const deepseek4BaseGguf = (c: CellCase): CellBase => cellBaseGguf(c, [
  ['deepseek4.context_length', u32(4096)], ['deepseek4.embedding_length', u32(HIDDEN)],
  ['deepseek4.rope.freq_base', { type: 'f32', value: 10000 }], ['deepseek4.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-6 }],
]);
