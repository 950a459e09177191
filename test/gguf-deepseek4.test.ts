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
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { cellPeftAdapter, describeCellCases, transposedWhole, whole, type CellCase, type Target } from './helpers/gguf-cell-truth.js';
import {
  EXPERT_FFN, GROUPS, HEAD_DIM, HEADS, HIDDEN, IDX_DIM, IDX_HEADS, METADATA, O_RANK, Q_RANK, TENSORS, VOCAB, attention, deepseek4BaseGguf,
} from './helpers/deepseek4-gguf.js';
import { mergeBackends } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const WEIGHT = 0.7;

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

describeCellCases(CASES, deepseek4BaseGguf, WEIGHT, backends);


describe('PEFT on DeepSeek-V4 GGUFs: what is refused, by name', () => {
  const [flash] = CASES;
  const problems = async (targets: Target[]) => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'deepseek4-tiny-Q8_0.gguf': deepseek4BaseGguf(flash).bytes }, 'base'),
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
