/**
 * The built CLI on GGUF bases of Mistral Small 4 (`mistral4`), Granite 4.0 3B Vision's language
 * model (`granite`), Nemotron 3 Super (`nemotron_h_moe`) and DBRX (`dbrx`), with a PEFT adapter
 * that also trains a module the GGUF does not hold as the adapter's ΔW: the vision tower (Mistral
 * 4's Pixtral encoder) and Granite 4 Vision's Q-Former projectors, which convert_hf_to_gguf writes
 * to the mmproj file; Nemotron 3's MTP head, which transformers does not load and whose folding
 * into an extra block is not followed; DBRX's experts, 2-D parameters trained through
 * target_parameters, which the converter views per expert and transposes; HunyuanVL's `vit`, which
 * goes to the mmproj file; and any module on MiMo-V2
 * (`mimo2`), an architecture without a table. Each is refused in one
 * line naming the module and the reason, and nothing is written, not even the modules that would
 * land.
 */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDirs } from './helpers/fixtures.js';
import type { MetaValue } from './helpers/gguf-builder.js';
import { mergeFolders } from './helpers/cli.js';
import { cellBaseGguf, cellPeftAdapter, type CellCase, type Target } from './helpers/gguf-cell-truth.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const HIDDEN = 32, VOCAB = 16, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, FFN = 48;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

interface Case extends CellCase { refused: Target; says: string; config?: Record<string, unknown> }

const CASES: Case[] = [
  {
    // One MLA block of Mistral Small 4 (q_lora_rank 12, kv_lora_rank 8, nope 6, rope 2, v 5).
    arch: 'mistral4', hfModel: 'mistralai/Mistral-Small-4-119B-2603', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]],
      ['blk.0.attn_q_a.weight', [HIDDEN, 12]], ['blk.0.attn_q_a_norm.weight', [12]], ['blk.0.attn_q_b.weight', [12, HEADS * 8]],
      ['blk.0.attn_kv_a_mqa.weight', [HIDDEN, 10]], ['blk.0.attn_kv_a_norm.weight', [8]],
      ['blk.0.attn_k_b.weight', [6, 8, HEADS]], ['blk.0.attn_v_b.weight', [8, 5, HEADS]], ['blk.0.attn_output.weight', [HEADS * 5, HIDDEN]],
      ['blk.0.ffn_norm.weight', [HIDDEN]], ['blk.0.ffn_gate.weight', [HIDDEN, FFN]], ['blk.0.ffn_up.weight', [HIDDEN, FFN]],
      ['blk.0.ffn_down.weight', [FFN, HIDDEN]], ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['mistral4.block_count', u32(1)], ['mistral4.attention.head_count', u32(HEADS)], ['mistral4.attention.head_count_kv', u32(1)],
      ['mistral4.leading_dense_block_count', u32(1)], ['mistral4.attention.q_lora_rank', u32(12)], ['mistral4.attention.kv_lora_rank', u32(8)],
      ['mistral4.attention.key_length_mla', u32(8)], ['mistral4.attention.value_length_mla', u32(5)], ['mistral4.rope.dimension_count', u32(2)],
    ],
    targets: [{ module: 'model.language_model.layers.0.self_attn.q_a_proj', out: 12, in: HIDDEN, lands: [] }],
    refused: { module: 'model.vision_tower.transformer.layers.0.attention.q_proj', out: 16, in: 16, lands: [] },
    says: 'adapter: module "model.vision_tower.transformer.layers.0.attention.q_proj": names a vision-language model\'s vision side, which llama.cpp converts to a separate mmproj GGUF, not into this mistral4 base',
  },
  {
    arch: 'granite', hfModel: 'ibm-granite/granite-4.0-3b-vision', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, HEADS * HEAD_DIM]],
      ['blk.0.attn_k.weight', [HIDDEN, KV_HEADS * HEAD_DIM]], ['blk.0.attn_v.weight', [HIDDEN, KV_HEADS * HEAD_DIM]],
      ['blk.0.attn_output.weight', [HEADS * HEAD_DIM, HIDDEN]], ['blk.0.ffn_norm.weight', [HIDDEN]], ['blk.0.ffn_gate.weight', [HIDDEN, FFN]],
      ['blk.0.ffn_up.weight', [HIDDEN, FFN]], ['blk.0.ffn_down.weight', [FFN, HIDDEN]], ['output_norm.weight', [HIDDEN]],
    ],
    metadata: [
      ['granite.block_count', u32(1)], ['granite.attention.head_count', u32(HEADS)], ['granite.attention.head_count_kv', u32(KV_HEADS)],
      ['granite.deepstack_mapping', { type: 'array', itemType: 'i32', value: [-1] }],
    ],
    targets: [{ module: 'model.language_model.layers.0.self_attn.v_proj', out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: [] }],
    refused: { module: 'model.layerwise_projectors.0.out_linear', out: HIDDEN, in: 16, lands: [] },
    says: 'adapter: module "model.layerwise_projectors.0.out_linear": names a vision-language model\'s vision side, which llama.cpp converts to a separate mmproj GGUF, not into this granite base',
  },
  {
    arch: 'nemotron_h_moe', hfModel: 'nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, HEADS * HEAD_DIM]],
      ['blk.0.attn_k.weight', [HIDDEN, KV_HEADS * HEAD_DIM]], ['blk.0.attn_v.weight', [HIDDEN, KV_HEADS * HEAD_DIM]],
      ['blk.0.attn_output.weight', [HEADS * HEAD_DIM, HIDDEN]], ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['nemotron_h_moe.block_count', u32(1)], ['nemotron_h_moe.attention.head_count', u32(HEADS)],
      ['nemotron_h_moe.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [KV_HEADS] }],
      ['nemotron_h_moe.attention.key_length', u32(HEAD_DIM)], ['nemotron_h_moe.attention.value_length', u32(HEAD_DIM)],
    ],
    targets: [{ module: 'backbone.layers.0.mixer.v_proj', out: KV_HEADS * HEAD_DIM, in: HIDDEN, lands: [] }],
    refused: { module: 'mtp.layers.0.mixer.q_proj', out: HEADS * HEAD_DIM, in: HIDDEN, lands: [] },
    says: 'adapter: module "mtp.layers.0.mixer.q_proj": names a multi-token-prediction (mtp) module: transformers\' NemotronH does not load the mtp layers',
  },
  {
    // DBRX's experts are 2-D parameters (E·ffn, hidden), which PEFT reaches only with
    // target_parameters (saved under the module that holds them, `ffn.experts.mlp`).
    arch: 'dbrx', hfModel: 'databricks/dbrx-instruct', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_qkv.weight', [HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM]],
      ['blk.0.attn_output.weight', [HEADS * HEAD_DIM, HIDDEN]], ['blk.0.attn_output_norm.weight', [HIDDEN]], ['blk.0.ffn_gate_inp.weight', [HIDDEN, 4]],
      ['blk.0.ffn_gate_exps.weight', [HIDDEN, 16, 4]], ['blk.0.ffn_up_exps.weight', [HIDDEN, 16, 4]], ['blk.0.ffn_down_exps.weight', [16, HIDDEN, 4]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [
      ['dbrx.block_count', u32(1)], ['dbrx.attention.head_count', u32(HEADS)], ['dbrx.attention.head_count_kv', u32(KV_HEADS)],
      ['dbrx.attention.clamp_kqv', { type: 'f32', value: 8 }], ['dbrx.expert_count', u32(4)], ['dbrx.expert_used_count', u32(2)],
    ],
    targets: [{ module: 'transformer.blocks.0.norm_attn_norm.attn.Wqkv', out: (HEADS + 2 * KV_HEADS) * HEAD_DIM, in: HIDDEN, lands: [] }],
    refused: { module: 'transformer.blocks.0.ffn.experts.mlp', out: 4 * 16, in: HIDDEN, lands: [] },
    config: { target_modules: ['Wqkv'], target_parameters: ['ffn.experts.mlp.w1'] },
    says: 'adapter: module "transformer.blocks.0.ffn.experts.mlp.w1": DBRX\'s experts are 2-D parameters',
  },
  {
    // HunyuanVL's `vit` goes to the mmproj file (HunyuanVLVisionModel keeps only `vit.*`).
    arch: 'hunyuan_vl', hfModel: 'tencent/HunyuanOCR', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_q.weight', [HIDDEN, HEADS * HEAD_DIM]],
      ['blk.0.attn_q_norm.weight', [HEAD_DIM]], ['blk.0.attn_k.weight', [HIDDEN, KV_HEADS * HEAD_DIM]], ['blk.0.attn_k_norm.weight', [HEAD_DIM]],
      ['blk.0.attn_v.weight', [HIDDEN, KV_HEADS * HEAD_DIM]], ['blk.0.attn_output.weight', [HEADS * HEAD_DIM, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [['hunyuan_vl.block_count', u32(1)], ['hunyuan_vl.attention.head_count', u32(HEADS)], ['hunyuan_vl.attention.head_count_kv', u32(KV_HEADS)]],
    targets: [{ module: 'model.language_model.layers.0.self_attn.q_proj', out: HEADS * HEAD_DIM, in: HIDDEN, lands: [] }],
    refused: { module: 'model.vit.layers.0.self_attn.q_proj', out: HIDDEN, in: HIDDEN, lands: [] },
    says: 'adapter: module "model.vit.layers.0.self_attn.q_proj": names a vision-language model\'s vision side, which llama.cpp converts to a separate mmproj GGUF, not into this hunyuan_vl base',
  },
  {
    // MiMo-V2 (`mimo2`) has no table: its converter regroups an FP8 checkpoint's qkv_proj rows by a
    // tensor-parallel degree it reads from the scales, which the GGUF does not record, so every
    // module, even an o_proj, is refused rather than guessed.
    arch: 'mimo2', hfModel: 'XiaomiMiMo/MiMo-V2-Flash', rank: 2, alpha: 4,
    tensors: [
      ['token_embd.weight', [HIDDEN, VOCAB]], ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.attn_output.weight', [HEADS * HEAD_DIM, HIDDEN]],
      ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
    ],
    metadata: [['mimo2.block_count', u32(1)], ['mimo2.attention.head_count', u32(HEADS)]],
    targets: [],
    refused: { module: 'model.layers.0.self_attn.o_proj', out: HIDDEN, in: HEADS * HEAD_DIM, lands: [] },
    says: 'adapter: module "model.layers.0.self_attn.o_proj": names a module of a mimo2 GGUF, an architecture whose convert_hf_to_gguf names',
  },
];

describe.each(CASES)('the CLI on a $arch GGUF ($hfModel)', (c) => {
  it(`refuses ${c.refused.module} in one line and writes nothing`, async () => {
    const base = cellBaseGguf(c, [[`${c.arch}.embedding_length`, u32(HIDDEN)], [`${c.arch}.context_length`, u32(4096)]]);
    const { files } = cellPeftAdapter(c, [...c.targets, c.refused], c.config);
    const { run, out, lines } = await mergeFolders(temp.make, { [`${c.arch}-tiny-BF16.gguf`]: base.bytes }, files);
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(c.says);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });
});
