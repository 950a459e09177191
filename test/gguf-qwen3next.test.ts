/**
 * PEFT LoRAs on GGUF bases of Qwen3-Next (`qwen3next`) and Qwen3.5 (`qwen35`, `qwen35moe`), end to
 * end, against float64 truth written here from what convert_hf_to_gguf does to each weight:
 * - Qwen3-Next (Qwen3NextModel): `linear_attn.in_proj_qkvz` holds, per key head g, [q (dk), k (dk),
 *   v (r·dv), z (r·dv)] (r value heads per key head); the converter views it (hidden, nk, 2dk + 2r·dv),
 *   splits the last axis and writes all heads' q, then k, then v as attn_qkv and the z rows as
 *   attn_gate. `in_proj_ba` (ssm_beta_alpha) and `out_proj` (ssm_out) as they are.
 * - Qwen3.5 (_LinearAttentionVReorderBase): `in_proj_qkv`, `in_proj_z`, `in_proj_a`, `in_proj_b`
 *   and `out_proj` with their value heads reshaped (nk, r, size) and the first two axes swapped
 *   (grouped by key head → tiled): the v rows of in_proj_qkv, the rows of in_proj_z (size dv),
 *   in_proj_a and in_proj_b (size 1), the columns of out_proj (size dv).
 * - Both: the full-attention blocks' q_proj (each head's query and output gate, kept whole), k, v,
 *   o; Qwen's MoE (router, experts stacked as rows, shared expert, shared-expert gate); Qwen3.5's
 *   MTP layer (`mtp.layers.0.*`, `mtp.fc`), which _Qwen35MtpMixin writes as the last block.
 * Each base has the tensors, shapes and metadata keys the converter writes.
 */
import { describe, expect, it } from 'vitest';
import type { FixtureTensor } from './helpers/fixtures.js';
import type { MetaValue } from './helpers/gguf-builder.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { describePlan } from '../src/cli/plan-report.js';
import {
  cellBaseGguf, cellPeftAdapter, describeCellCases, expert, transposedWhole, whole, type CellCase, type Landing, type Target,
} from './helpers/gguf-cell-truth.js';
import { mergeBackends } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, VOCAB = 16, FFN = 48, EXPERTS = 4, EXPERT_FFN = 16, SHARED = 24, WEIGHT = 0.7;
/** Full attention: heads, kv heads, head size; q_proj holds each head's query and gate (2 · HEAD_DIM rows). */
const HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

/** The gated DeltaNet: key heads nk of dk, value heads nv of dv (linear_num_key_heads, …). */
interface Linear { nk: number; dk: number; nv: number; dv: number }

/**
 * Qwen3NextModel.modify_tensors on in_proj_qkvz, step by step: W (out, hidden) transposed is
 * viewed (hidden, nk, 2dk + 2r·dv); q = [..., :dk], k = [..., dk:2dk], v = [..., 2dk:2dk + r·dv],
 * z = the rest, each flattened to (hidden, nk · its width) and transposed back: row g·width + i of
 * a part is HF row g·(2dk + 2r·dv) + (the part's start) + i. attn_qkv = cat(q, k, v), attn_gate = z.
 */
function qkvz(block: number, h: Linear): Landing[] {
  const v = (h.nv / h.nk) * h.dv, group = 2 * h.dk + 2 * v;
  const part = (row: number, width: number, start: number) => Math.floor(row / width) * group + start + (row % width);
  const qkvRow = (row: number) => {
    if (row < h.nk * h.dk) return part(row, h.dk, 0);
    if (row < 2 * h.nk * h.dk) return part(row - h.nk * h.dk, h.dk, h.dk);
    return part(row - 2 * h.nk * h.dk, v, 2 * h.dk);
  };
  return [
    { tensor: `blk.${block}.attn_qkv.weight`, cell: (row, col) => [qkvRow(row), col] },
    { tensor: `blk.${block}.attn_gate.weight`, cell: (row, col) => [part(row, v, 2 * h.dk + v), col] },
  ];
}

/**
 * _LinearAttentionVReorderBase._reorder_v_heads: (nk·r·size) viewed (nk, r, size), axes 0 and 1
 * swapped: GGUF index (j·nk + g)·size + d holds HF index (g·r + j)·size + d.
 */
function tiled(index: number, size: number, h: Linear): number {
  const t = Math.floor(index / size), d = index % size;
  const j = Math.floor(t / h.nk), g = t % h.nk;
  return (g * (h.nv / h.nk) + j) * size + d;
}
/** in_proj_qkv: q and k rows as they are, the v rows reordered. */
const qkvReordered = (block: number, h: Linear): Landing[] => [{
  tensor: `blk.${block}.attn_qkv.weight`,
  cell: (row, col) => {
    const qk = 2 * h.nk * h.dk;
    return [row < qk ? row : qk + tiled(row - qk, h.dv, h), col];
  },
}];
const rowsReordered = (tensor: string, size: number, h: Linear): Landing[] => [{ tensor, cell: (row, col) => [tiled(row, size, h), col] }];
const columnsReordered = (tensor: string, h: Linear): Landing[] => [{ tensor, cell: (row, col) => [row, tiled(col, h.dv, h)] }];

type Tensors = [string, number[], string?][];

/** A linear-attention block's tensors (Qwen3-Next: attn_qkv split from qkvz and ssm_beta_alpha; Qwen3.5: ssm_alpha, ssm_beta). */
function linearBlock(block: number, h: Linear, qwen35: boolean): Tensors {
  const key = h.nk * h.dk, value = h.nv * h.dv;
  return [
    [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.post_attention_norm.weight`, [HIDDEN]],
    [`blk.${block}.attn_qkv.weight`, [HIDDEN, 2 * key + value]], [`blk.${block}.attn_gate.weight`, [HIDDEN, value]],
    [`blk.${block}.ssm_conv1d.weight`, [4, 2 * key + value]], [`blk.${block}.ssm_dt.bias`, [h.nv]], [`blk.${block}.ssm_a`, [h.nv]],
    ...(qwen35
      ? [[`blk.${block}.ssm_alpha.weight`, [HIDDEN, h.nv]], [`blk.${block}.ssm_beta.weight`, [HIDDEN, h.nv]]] as Tensors
      : [[`blk.${block}.ssm_beta_alpha.weight`, [HIDDEN, 2 * h.nv]]] as Tensors),
    [`blk.${block}.ssm_norm.weight`, [h.dv]], [`blk.${block}.ssm_out.weight`, [value, HIDDEN]],
  ];
}
/** A full-attention block: q holds each head's query and gate, q and k normed per head. */
const attentionBlock = (block: number): Tensors => [
  [`blk.${block}.attn_norm.weight`, [HIDDEN]], [`blk.${block}.post_attention_norm.weight`, [HIDDEN]],
  [`blk.${block}.attn_q.weight`, [HIDDEN, HEADS * HEAD_DIM * 2]], [`blk.${block}.attn_k.weight`, [HIDDEN, KV_HEADS * HEAD_DIM]],
  [`blk.${block}.attn_v.weight`, [HIDDEN, KV_HEADS * HEAD_DIM]], [`blk.${block}.attn_output.weight`, [HEADS * HEAD_DIM, HIDDEN]],
  [`blk.${block}.attn_q_norm.weight`, [HEAD_DIM]], [`blk.${block}.attn_k_norm.weight`, [HEAD_DIM]],
];
/** Router, stacked experts, the shared expert and its gate ({n_embd}: one output row). */
const moe = (block: number): Tensors => [
  [`blk.${block}.ffn_gate_inp.weight`, [HIDDEN, EXPERTS], 'F32'],
  [`blk.${block}.ffn_gate_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]], [`blk.${block}.ffn_up_exps.weight`, [HIDDEN, EXPERT_FFN, EXPERTS]],
  [`blk.${block}.ffn_down_exps.weight`, [EXPERT_FFN, HIDDEN, EXPERTS]],
  [`blk.${block}.ffn_gate_inp_shexp.weight`, [HIDDEN]],
  [`blk.${block}.ffn_gate_shexp.weight`, [HIDDEN, SHARED]], [`blk.${block}.ffn_up_shexp.weight`, [HIDDEN, SHARED]],
  [`blk.${block}.ffn_down_shexp.weight`, [SHARED, HIDDEN]],
];
const denseMlp = (block: number): Tensors => [
  [`blk.${block}.ffn_gate.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_up.weight`, [HIDDEN, FFN]], [`blk.${block}.ffn_down.weight`, [FFN, HIDDEN]],
];
/** The MTP block's own tensors (tensor_mapping.py's NEXTN_*). */
const nextn = (block: number): Tensors => [
  [`blk.${block}.nextn.eh_proj.weight`, [2 * HIDDEN, HIDDEN]], [`blk.${block}.nextn.enorm.weight`, [HIDDEN]],
  [`blk.${block}.nextn.hnorm.weight`, [HIDDEN]], [`blk.${block}.nextn.shared_head_norm.weight`, [HIDDEN]],
];
const ends: Tensors = [['token_embd.weight', [HIDDEN, VOCAB]], ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]]];

/** Qwen3NextModel.set_gguf_parameters' keys (Qwen2MoeModel's and the ssm.* of the gated DeltaNet). */
const metadata = (arch: string, h: Linear, blocks: number, extra: [string, MetaValue][]): [string, MetaValue][] => [
  [`${arch}.block_count`, u32(blocks)], [`${arch}.attention.head_count`, u32(HEADS)], [`${arch}.attention.head_count_kv`, u32(KV_HEADS)],
  [`${arch}.attention.key_length`, u32(HEAD_DIM)], [`${arch}.attention.value_length`, u32(HEAD_DIM)],
  [`${arch}.ssm.conv_kernel`, u32(4)], [`${arch}.ssm.state_size`, u32(h.dk)], [`${arch}.ssm.group_count`, u32(h.nk)],
  [`${arch}.ssm.time_step_rank`, u32(h.nv)], [`${arch}.ssm.inner_size`, u32(h.nv * h.dv)],
  [`${arch}.full_attention_interval`, u32(2)], [`${arch}.rope.dimension_count`, u32(HEAD_DIM / 4)], ...extra,
];
const moeMetadata = (arch: string): [string, MetaValue][] => [
  [`${arch}.expert_count`, u32(EXPERTS)], [`${arch}.expert_used_count`, u32(2)], [`${arch}.expert_feed_forward_length`, u32(EXPERT_FFN)],
  [`${arch}.expert_shared_feed_forward_length`, u32(SHARED)],
];

interface Case extends CellCase { name: string; h: Linear }

/** Qwen3-Next-80B-A3B's shape of linear attention (16 key heads, 32 value heads), scaled down: r = 3. */
const NEXT: Linear = { nk: 2, dk: 4, nv: 6, dv: 3 };
/** Qwen3.5-35B-A3B-like (16 key heads, 32 value heads): r = 2. */
const QWEN35_MOE: Linear = { nk: 2, dk: 4, nv: 4, dv: 5 };
/** Qwen3.5-9B-like (16 key heads, 32 value heads, both 128 wide), scaled down: r = 2. */
const QWEN35_DENSE: Linear = { nk: 2, dk: 8, nv: 4, dv: 8 };
/** A Qwen3.5 dense model with as many value heads as key heads: the reorder is the identity. */
const QWEN35_EVEN: Linear = { nk: 4, dk: 4, nv: 4, dv: 4 };

const attentionTargets = (block: number, prefix = 'model.layers'): Target[] => [
  { module: `${prefix}.${block}.self_attn.q_proj`, out: HEADS * HEAD_DIM * 2, in: HIDDEN, lands: whole(`blk.${block}.attn_q.weight`) },
  { module: `${prefix}.${block}.self_attn.k_proj`, out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: whole(`blk.${block}.attn_k.weight`) },
  { module: `${prefix}.${block}.self_attn.v_proj`, out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: whole(`blk.${block}.attn_v.weight`) },
  { module: `${prefix}.${block}.self_attn.o_proj`, out: HIDDEN, in: HEADS * HEAD_DIM, lands: whole(`blk.${block}.attn_output.weight`) },
];
const qwen35Linear = (block: number, h: Linear, prefix: string): Target[] => [
  { module: `${prefix}.${block}.linear_attn.in_proj_qkv`, out: 2 * h.nk * h.dk + h.nv * h.dv, in: HIDDEN, lands: qkvReordered(block, h) },
  { module: `${prefix}.${block}.linear_attn.in_proj_z`, out: h.nv * h.dv, in: HIDDEN, lands: rowsReordered(`blk.${block}.attn_gate.weight`, h.dv, h) },
  { module: `${prefix}.${block}.linear_attn.in_proj_a`, out: h.nv, in: HIDDEN, lands: rowsReordered(`blk.${block}.ssm_alpha.weight`, 1, h) },
  { module: `${prefix}.${block}.linear_attn.in_proj_b`, out: h.nv, in: HIDDEN, lands: rowsReordered(`blk.${block}.ssm_beta.weight`, 1, h) },
  { module: `${prefix}.${block}.linear_attn.out_proj`, out: HIDDEN, in: h.nv * h.dv, lands: columnsReordered(`blk.${block}.ssm_out.weight`, h) },
];

const CASES: Case[] = [
  {
    // Block 0 linear attention, block 1 full attention, both MoE; the MTP layers dropped.
    name: 'qwen3next (Qwen3-Next)', arch: 'qwen3next', hfModel: 'Qwen/Qwen3-Next-80B-A3B-Instruct', h: NEXT, rank: 3, alpha: 5,
    tensors: [...ends, ...linearBlock(0, NEXT, false), ...moe(0), ...attentionBlock(1), ...moe(1)],
    metadata: [...metadata('qwen3next', NEXT, 2, []), ...moeMetadata('qwen3next')],
    targets: [
      { module: 'model.layers.0.linear_attn.in_proj_qkvz', out: NEXT.nk * (2 * NEXT.dk) + 2 * NEXT.nv * NEXT.dv, in: HIDDEN, lands: qkvz(0, NEXT) },
      { module: 'model.layers.0.linear_attn.in_proj_ba', out: 2 * NEXT.nv, in: HIDDEN, lands: whole('blk.0.ssm_beta_alpha.weight') },
      { module: 'model.layers.0.linear_attn.out_proj', out: HIDDEN, in: NEXT.nv * NEXT.dv, lands: whole('blk.0.ssm_out.weight') },
      { module: 'model.layers.0.mlp.gate', out: EXPERTS, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp.weight') },
      { module: 'model.layers.0.mlp.experts.2.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 2, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.experts.0.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_up_exps.weight', 0, EXPERT_FFN) },
      { module: 'model.layers.0.mlp.experts.3.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.0.ffn_down_exps.weight', 3, HIDDEN) },
      { module: 'model.layers.0.mlp.shared_expert.up_proj', out: SHARED, in: HIDDEN, lands: whole('blk.0.ffn_up_shexp.weight') },
      { module: 'model.layers.0.mlp.shared_expert_gate', out: 1, in: HIDDEN, lands: whole('blk.0.ffn_gate_inp_shexp.weight') },
      ...attentionTargets(1),
      { module: 'model.layers.1.mlp.shared_expert.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.1.ffn_down_shexp.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
      { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
    ],
  },
  {
    // Qwen3_5MoeForConditionalGeneration: the language model under model.language_model; block 2
    // is the MTP layer (nextn_predict_layers 1), full attention with MoE and its eh_proj.
    name: 'qwen35moe (Qwen3.5 MoE, MTP kept)', arch: 'qwen35moe', hfModel: 'Qwen/Qwen3.5-35B-A3B', h: QWEN35_MOE, rank: 2, alpha: 6,
    tensors: [...ends, ...linearBlock(0, QWEN35_MOE, true), ...moe(0), ...attentionBlock(1), ...moe(1), ...attentionBlock(2), ...moe(2), ...nextn(2)],
    metadata: [
      ...metadata('qwen35moe', QWEN35_MOE, 3, [['qwen35moe.nextn_predict_layers', u32(1)]]), ...moeMetadata('qwen35moe'),
      ['qwen35moe.rope.dimension_sections', { type: 'array', itemType: 'u32', value: [1, 1, 0, 0] }],
    ],
    targets: [
      ...qwen35Linear(0, QWEN35_MOE, 'model.language_model.layers'),
      { module: 'model.language_model.layers.0.mlp.experts.1.gate_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.0.ffn_gate_exps.weight', 1, EXPERT_FFN) },
      { module: 'model.language_model.layers.0.mlp.shared_expert.gate_proj', out: SHARED, in: HIDDEN, lands: whole('blk.0.ffn_gate_shexp.weight') },
      ...attentionTargets(1, 'model.language_model.layers'),
      { module: 'model.language_model.layers.1.mlp.experts.2.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: expert('blk.1.ffn_down_exps.weight', 2, HIDDEN) },
      { module: 'mtp.layers.0.self_attn.q_proj', out: HEADS * HEAD_DIM * 2, in: HIDDEN, lands: whole('blk.2.attn_q.weight') },
      { module: 'mtp.layers.0.self_attn.o_proj', out: HIDDEN, in: HEADS * HEAD_DIM, lands: whole('blk.2.attn_output.weight') },
      { module: 'mtp.layers.0.mlp.experts.3.up_proj', out: EXPERT_FFN, in: HIDDEN, lands: expert('blk.2.ffn_up_exps.weight', 3, EXPERT_FFN) },
      { module: 'mtp.layers.0.mlp.shared_expert.down_proj', out: HIDDEN, in: SHARED, lands: whole('blk.2.ffn_down_shexp.weight') },
      { module: 'mtp.fc', out: HIDDEN, in: 2 * HIDDEN, lands: whole('blk.2.nextn.eh_proj.weight') },
      { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
    ],
  },
  {
    // Qwen3_5ForConditionalGeneration as llama-quantize leaves it at Q8_0: the reordered
    // projections are quantized, merged in their dequantized values and written back.
    name: 'qwen35 (Qwen3.5 dense, Q8_0 linear attention)', arch: 'qwen35', hfModel: 'Qwen/Qwen3.5-9B', h: QWEN35_DENSE, rank: 3, alpha: 3,
    tensors: [...ends, ...linearBlock(0, QWEN35_DENSE, true), ...denseMlp(0), ...attentionBlock(1), ...denseMlp(1)]
      .map(([name, ne, type]): Tensors[number] => [name, ne, /attn_qkv|attn_gate|ssm_out|ssm_alpha|ssm_beta/.test(name) ? 'Q8_0' : type]),
    metadata: metadata('qwen35', QWEN35_DENSE, 2, [['qwen35.feed_forward_length', u32(FFN)]]),
    targets: [
      ...qwen35Linear(0, QWEN35_DENSE, 'model.language_model.layers'),
      { module: 'model.language_model.layers.1.self_attn.q_proj', out: HEADS * HEAD_DIM * 2, in: HIDDEN, lands: whole('blk.1.attn_q.weight') },
    ],
  },
  {
    // Qwen3_5ForCausalLM with equal key and value head counts (the reorder is the identity), a dense MLP.
    name: 'qwen35 (Qwen3.5 dense, as many value heads as key heads)', arch: 'qwen35', hfModel: 'Qwen/Qwen3.5-4B', h: QWEN35_EVEN, rank: 4, alpha: 4,
    tensors: [...ends, ...linearBlock(0, QWEN35_EVEN, true), ...denseMlp(0), ...attentionBlock(1), ...denseMlp(1)],
    metadata: metadata('qwen35', QWEN35_EVEN, 2, [['qwen35.feed_forward_length', u32(FFN)]]),
    targets: [
      ...qwen35Linear(0, QWEN35_EVEN, 'model.layers'),
      { module: 'model.layers.0.mlp.gate_proj', out: FFN, in: HIDDEN, lands: whole('blk.0.ffn_gate.weight') },
      ...attentionTargets(1),
      { module: 'model.layers.1.mlp.down_proj', out: HIDDEN, in: FFN, lands: whole('blk.1.ffn_down.weight') },
    ],
  },
];

const baseGguf = (c: Case) => cellBaseGguf(c, [
  [`${c.arch}.context_length`, u32(4096)], [`${c.arch}.embedding_length`, u32(HIDDEN)],
  [`${c.arch}.rope.freq_base`, { type: 'f32', value: 1e7 }], [`${c.arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }],
]);

describeCellCases(CASES, baseGguf, WEIGHT, backends);

describe('PEFT on Qwen3-Next and Qwen3.5 GGUFs: what is refused, by name', () => {
  const problems = async (c: Case, files: Record<string, Uint8Array | string>, base = baseGguf(c)) => {
    const prepared = await prepareMerge(memoryInputFileSet({ [`${c.arch}-tiny-BF16.gguf`]: base.bytes }, 'base'), [{ files: memoryInputFileSet(files, 'lora') }]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };
  const [next, moe, , dense] = CASES;

  it('refuses the MTP layers on a qwen3next file, which Qwen3NextModel leaves out', async () => {
    const messages = await problems(next, cellPeftAdapter(next, [
      { module: 'mtp.layers.0.self_attn.q_proj', out: HEADS * HEAD_DIM * 2, in: HIDDEN, lands: [] },
      { module: 'mtp.fc', out: HIDDEN, in: 2 * HIDDEN, lands: [] },
    ]).files);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain('module "mtp.layers.0.self_attn.q_proj"');
    expect(messages[0]).toContain('multi-token-prediction (mtp) layer');
    expect(messages[0]).toContain('Qwen3NextModel');
    expect(messages[1]).toContain('module "mtp.fc"');
  });

  it('refuses the MTP layers on a Qwen3.5 file written without them, and an MTP layer past the ones it has', async () => {
    expect(await problems(dense, cellPeftAdapter(dense, [{ module: 'mtp.fc', out: HIDDEN, in: 2 * HIDDEN, lands: [] }]).files))
      .toEqual([expect.stringContaining('no qwen35.nextn_predict_layers')]);
    expect(await problems(moe, cellPeftAdapter(moe, [{ module: 'mtp.layers.1.self_attn.k_proj', out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: [] }]).files))
      .toEqual([expect.stringContaining('names MTP layer 1, but the base has 1 (qwen35moe.nextn_predict_layers)')]);
  });

  it.for([next, moe])('refuses a LoRA on the depthwise conv1d of $arch, saying why', async (c) => {
    const conv = 2 * c.h.nk * c.h.dk + c.h.nv * c.h.dv;
    const messages = await problems(c, cellPeftAdapter(c, [{ module: 'model.layers.0.linear_attn.conv1d', out: conv, in: 4, lands: [] }]).files);
    expect(messages).toEqual([expect.stringContaining('module "model.layers.0.linear_attn.conv1d": is the linear attention\'s depthwise causal Conv1d')]);
  });

  it('refuses DoRA on out_proj, whose columns the base holds in another order', async () => {
    const out = moe.targets.find((t) => t.module.endsWith('linear_attn.out_proj'))!;
    const magnitude: FixtureTensor = { name: `base_model.model.${out.module}.lora_magnitude_vector`, dtype: 'F32', shape: [out.out], data: new Float64Array(out.out).fill(1) };
    const messages = await problems(moe, cellPeftAdapter(moe, [out], { use_dora: true }, [magnitude]).files);
    expect(messages).toEqual([expect.stringContaining('DoRA on a module whose columns the base stores in another order (blk.0.ssm_out.weight, its columns reordered)')]);
  });

  it('plans out_proj with its columns reordered, naming it so', async () => {
    const out = moe.targets.find((t) => t.module.endsWith('linear_attn.out_proj'))!;
    const prepared = await prepareMerge(memoryInputFileSet({ 'qwen35moe-tiny-BF16.gguf': baseGguf(moe).bytes }, 'base'),
      [{ files: memoryInputFileSet(cellPeftAdapter(moe, [out]).files, 'lora') }]);
    expect(prepared.plan.problems).toEqual([]);
    expect(describePlan(prepared, true)).toMatch(/blk\.0\.ssm_out\.weight \[32×20\] out-in ← model\.language_model\.layers\.0\.linear_attn\.out_proj LoRA r=2 scale=3 → its columns reordered$/m);
    await prepared.close();
  });

  it('lands in_proj_qkvz on an older qwen3next file that holds it whole as ssm_in, in its own order', async () => {
    const legacy: Case = {
      ...next,
      tensors: next.tensors.filter(([n]) => !/^blk\.0\.attn_(qkv|gate)\./.test(n)).concat([['blk.0.ssm_in.weight', [HIDDEN, 2 * NEXT.nk * NEXT.dk + 2 * NEXT.nv * NEXT.dv]]]),
    };
    const qkvzTarget = next.targets[0];
    const prepared = await prepareMerge(memoryInputFileSet({ 'qwen3next-tiny-BF16.gguf': baseGguf(legacy).bytes }, 'base'),
      [{ files: memoryInputFileSet(cellPeftAdapter(legacy, [qkvzTarget]).files, 'lora') }]);
    expect(prepared.plan.problems).toEqual([]);
    expect(describePlan(prepared, true)).toMatch(/blk\.0\.ssm_in\.weight \[52×32\] out-in ← model\.layers\.0\.linear_attn\.in_proj_qkvz LoRA r=3 scale=[\d.]+$/m);
    await prepared.close();
  });
});
