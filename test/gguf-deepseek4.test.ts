/**
 * PEFT LoRAs on DeepSeek-V4 GGUF bases (`deepseek4`, DeepseekV4Model), end to end, against float64
 * truth written here from what convert_hf_to_gguf does to each weight. transformers names the
 * modules (its checkpoint conversion renames DeepSeek's own: `attn.wq_a` → `self_attn.q_a_proj`,
 * `attn.wkv` → `kv_proj`, `attn.wo_a`/`wo_b` → `o_a_proj`/`o_b_proj`, `attn.compressor.wkv`/`wgate`
 * → `compressor.kv_proj`/`gate_proj`, `attn.indexer.*` → `compressor.indexer.*`,
 * `ffn.shared_experts.w1/w3/w2` → `mlp.shared_experts.gate_proj/up_proj/down_proj`); the converter
 * maps DeepSeek's names to attn_q_a, attn_q_b, attn_kv, attn_output_a, attn_output_b,
 * attn_compressor_kv/_gate, indexer.attn_q_b, indexer.proj, indexer_compressor_kv/_gate and
 * ffn_*_shexp, dequantizing FP8 and FP4 but otherwise writing each weight as it is: no row moves,
 * RoPE rows in the checkpoint's interleaved order. Each block kind of DeepSeek-V4-Flash is here:
 * sliding-window attention only (compress ratio 0), compressed sparse attention (ratio 4: a
 * compressor of 2·head_dim rows and the lightning indexer) and heavily compressed attention (ratio
 * 128: a compressor of head_dim rows). The converter requires a compact type for the routed
 * experts, and with `--outtype q8_0` every matrix is Q8_0.
 */
import { describe, expect, it } from 'vitest';
import type { MetaValue } from './helpers/gguf-builder.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { cellBaseGguf, cellPeftAdapter, describeCellCases, transposedWhole, whole, type CellCase, type Target } from './helpers/gguf-cell-truth.js';
import { mergeBackends } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, VOCAB = 16, EXPERTS = 4, EXPERT_FFN = 32, WEIGHT = 0.7;
/** Attention: heads of HEAD_DIM (one shared KV head), q_lora_rank, output groups and o_lora_rank. */
const HEADS = 4, HEAD_DIM = 16, ROPE = 4, Q_RANK = 32, GROUPS = 2, O_RANK = 16;
/** The lightning indexer (index_n_heads, index_head_dim) and the hyper-connection streams (hc_mult). */
const IDX_HEADS = 2, IDX_DIM = 8, HC = 2;
/** compress_ratios of the three blocks: sliding window only, CSA, HCA. */
const RATIOS = [0, 4, 128];
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

type Tensors = [string, number[], string?][];
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

const TENSORS: Tensors = [
  q8('token_embd.weight', [HIDDEN, VOCAB]), ...block(0), ...block(1), ...block(2),
  ['output_hc_fn.weight', [HC * HIDDEN, HC], 'F32'], ['output_hc_base.weight', [HC]], ['output_hc_scale.weight', [1]],
  ['output_norm.weight', [HIDDEN]], q8('output.weight', [HIDDEN, VOCAB]),
];

/** DeepseekV4Model.set_gguf_parameters' keys (MQA: one KV head). */
const METADATA: [string, MetaValue][] = [
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
const attention = (b: number): Target[] => [
  { module: `model.layers.${b}.self_attn.q_a_proj`, out: Q_RANK, in: HIDDEN, lands: whole(`blk.${b}.attn_q_a.weight`) },
  { module: `model.layers.${b}.self_attn.q_b_proj`, out: HEADS * HEAD_DIM, in: Q_RANK, lands: whole(`blk.${b}.attn_q_b.weight`) },
  { module: `model.layers.${b}.self_attn.kv_proj`, out: HEAD_DIM, in: HIDDEN, lands: whole(`blk.${b}.attn_kv.weight`) },
  // The grouped output projection: o_groups · o_lora_rank rows, each group's own inputs as columns.
  { module: `model.layers.${b}.self_attn.o_a_proj`, out: GROUPS * O_RANK, in: HEADS * HEAD_DIM / GROUPS, lands: whole(`blk.${b}.attn_output_a.weight`) },
  { module: `model.layers.${b}.self_attn.o_b_proj`, out: HIDDEN, in: GROUPS * O_RANK, lands: whole(`blk.${b}.attn_output_b.weight`) },
];

interface Case extends CellCase { name: string }

const CASES: Case[] = [
  {
    name: 'deepseek4 (DeepSeek-V4-Flash: sliding, CSA and HCA blocks)', arch: 'deepseek4', hfModel: 'deepseek-ai/DeepSeek-V4-Flash', rank: 3, alpha: 6,
    tensors: TENSORS, metadata: METADATA,
    targets: [
      ...attention(0),
      { module: 'model.layers.0.mlp.shared_experts.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate_shexp.weight') },
      { module: 'model.layers.0.mlp.shared_experts.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: whole('blk.0.ffn_up_shexp.weight') },
      { module: 'model.layers.0.mlp.shared_experts.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: whole('blk.0.ffn_down_shexp.weight') },
      // CSA: the compressor's two series (2·head_dim rows) and the indexer.
      { module: 'model.layers.1.self_attn.q_b_proj', out: HEADS * HEAD_DIM, in: Q_RANK, lands: whole('blk.1.attn_q_b.weight') },
      { module: 'model.layers.1.self_attn.compressor.kv_proj', out: 2 * HEAD_DIM, in: HIDDEN, lands: whole('blk.1.attn_compressor_kv.weight') },
      { module: 'model.layers.1.self_attn.compressor.gate_proj', out: 2 * HEAD_DIM, in: HIDDEN, lands: whole('blk.1.attn_compressor_gate.weight') },
      { module: 'model.layers.1.self_attn.compressor.indexer.q_b_proj', out: IDX_HEADS * IDX_DIM, in: Q_RANK, lands: whole('blk.1.indexer.attn_q_b.weight') },
      { module: 'model.layers.1.self_attn.compressor.indexer.scorer.weights_proj', out: IDX_HEADS, in: HIDDEN, lands: whole('blk.1.indexer.proj.weight') },
      { module: 'model.layers.1.self_attn.compressor.indexer.kv_proj', out: 2 * IDX_DIM, in: HIDDEN, lands: whole('blk.1.indexer_compressor_kv.weight') },
      { module: 'model.layers.1.self_attn.compressor.indexer.gate_proj', out: 2 * IDX_DIM, in: HIDDEN, lands: whole('blk.1.indexer_compressor_gate.weight') },
      // HCA: one series of head_dim rows.
      { module: 'model.layers.2.self_attn.compressor.kv_proj', out: HEAD_DIM, in: HIDDEN, lands: whole('blk.2.attn_compressor_kv.weight') },
      { module: 'model.layers.2.self_attn.compressor.gate_proj', out: HEAD_DIM, in: HIDDEN, lands: whole('blk.2.attn_compressor_gate.weight') },
      { module: 'model.layers.2.self_attn.o_a_proj', out: GROUPS * O_RANK, in: HEADS * HEAD_DIM / GROUPS, lands: whole('blk.2.attn_output_a.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
    ],
  },
  {
    // transformers 5.14 held weights_proj on the indexer itself (no `scorer`).
    name: 'deepseek4 (indexer weights_proj without scorer)', arch: 'deepseek4', hfModel: 'deepseek-ai/DeepSeek-V4-Flash', rank: 2, alpha: 4,
    tensors: TENSORS, metadata: METADATA,
    targets: [
      ...attention(1),
      { module: 'model.layers.1.self_attn.compressor.indexer.weights_proj', out: IDX_HEADS, in: HIDDEN, lands: whole('blk.1.indexer.proj.weight') },
      { module: 'model.layers.2.mlp.shared_experts.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: whole('blk.2.ffn_down_shexp.weight') },
    ],
  },
];

const baseGguf = (c: Case) => cellBaseGguf(c, [
  ['deepseek4.context_length', u32(4096)], ['deepseek4.embedding_length', u32(HIDDEN)],
  ['deepseek4.rope.freq_base', { type: 'f32', value: 10000 }], ['deepseek4.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-6 }],
]);

describeCellCases(CASES, baseGguf, WEIGHT, backends);

describe('PEFT on DeepSeek-V4 GGUFs: what is refused, by name', () => {
  const [flash] = CASES;
  const problems = async (targets: Target[]) => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'deepseek4-tiny-Q8_0.gguf': baseGguf(flash).bytes }, 'base'),
      [{ files: memoryInputFileSet(cellPeftAdapter(flash, targets).files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };

  it('refuses the MTP modules, which DeepseekV4Model leaves out of the file', async () => {
    const messages = await problems([{ module: 'mtp.0.attn.wq_a', out: Q_RANK, in: HIDDEN, lands: [] }]);
    expect(messages).toEqual([expect.stringContaining('module "mtp.0.attn.wq_a": names a multi-token-prediction (mtp) module, which convert_hf_to_gguf (DeepseekV4Model) leaves out of a deepseek4 GGUF')]);
  });

  it('refuses a block past the file\'s block_count, and a compressor on a sliding-window block, which has none', async () => {
    const messages = await problems([
      { module: 'model.layers.3.self_attn.q_a_proj', out: Q_RANK, in: HIDDEN, lands: [] },
      { module: 'model.layers.0.self_attn.compressor.kv_proj', out: HEAD_DIM, in: HIDDEN, lands: [] },
    ]);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain('names block 3, but the base has 3 (deepseek4.block_count)');
    expect(messages[1]).toContain('module "model.layers.0.self_attn.compressor.kv_proj"');
  });

  it('does not take DeepSeek-V3\'s MLA names on a deepseek4 file', async () => {
    const messages = await problems([{ module: 'model.layers.0.self_attn.kv_a_proj_with_mqa', out: HEAD_DIM, in: HIDDEN, lands: [] }]);
    expect(messages).toEqual([expect.stringContaining('module "model.layers.0.self_attn.kv_a_proj_with_mqa"')]);
  });
});
