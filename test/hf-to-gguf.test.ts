/**
 * The Hugging Face → GGUF layout on its own: PEFT module paths of each architecture llama.cpp
 * converts, located on GGUF tensor names with the metadata a GGUF file carries (head and expert
 * counts), including llama's q/k row permutation and one expert of a merged expert tensor.
 */
import { describe, expect, it } from 'vitest';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { unplaceable } from './helpers/gguf-unplaceable.js';

function ggufBase(arch: string, shapes: Record<string, number[]>, meta: Record<string, unknown> = {}) {
  const metadata: Record<string, unknown> = { 'general.architecture': arch, ...meta };
  return new ModuleLocator({ tensors: new Map(Object.entries(shapes).map(([k, shape]) => [k, { shape }])), metadata: (key) => metadata[key] });
}

const where = (locator: ModuleLocator, module: string) => {
  const r = locator.locate(moduleAddress(`base_model.model.${module}`));
  return r.found ? r.targets.map((t) => ({ key: t.baseKey, rows: t.rows?.length })) : r.message;
};

describe('HF module paths on GGUF tensors', () => {
  it('maps the llama family (Llama, Mistral) and permutes q and k rows with the head and kv-head counts', () => {
    const base = ggufBase('llama', {
      'token_embd.weight': [32, 64], 'output.weight': [32, 64],
      'blk.0.attn_q.weight': [64, 64], 'blk.0.attn_k.weight': [16, 64], 'blk.0.attn_v.weight': [16, 64], 'blk.0.attn_output.weight': [64, 64],
      'blk.0.ffn_gate.weight': [128, 64], 'blk.0.ffn_up.weight': [128, 64], 'blk.0.ffn_down.weight': [64, 128],
    }, { 'llama.attention.head_count': 8, 'llama.attention.head_count_kv': 2 });
    expect(where(base, 'model.embed_tokens')).toEqual([{ key: 'token_embd.weight', rows: undefined }]);
    expect(where(base, 'lm_head')).toEqual([{ key: 'output.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.v_proj')).toEqual([{ key: 'blk.0.attn_v.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.mlp.down_proj')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    const q = base.locate(moduleAddress('base_model.model.model.layers.0.self_attn.q_proj'));
    const k = base.locate(moduleAddress('base_model.model.model.layers.0.self_attn.k_proj'));
    if (!q.found || !k.found) throw new Error('q or k not found');
    // 8 heads of 8 rows: GGUF row h·8 + 2i + j holds HF row h·8 + 4j + i.
    const qRows = q.targets[0].rows!;
    expect(qRows).toHaveLength(64);
    expect(qRows.slice(0, 8)).toEqual([0, 4, 1, 5, 2, 6, 3, 7].map((src, dst) => ({ src, dst, count: 1 })));
    expect(qRows.find((s) => s.dst === 8 + 3)).toEqual({ src: 8 + 4 + 1, dst: 11, count: 1 });
    // k: 2 kv heads of 8 rows.
    expect(k.targets[0].rows!.map((s) => s.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
  });

  it('maps mistral3 (Mistral Small 3.x, Ministral 3) as llama, q and k permuted, from either multimodal naming', () => {
    const base = ggufBase('mistral3', { 'blk.0.attn_q.weight': [64, 64], 'blk.0.attn_k.weight': [16, 64], 'blk.0.attn_output.weight': [64, 64] },
      { 'mistral3.attention.head_count': 8, 'mistral3.attention.head_count_kv': 2 });
    for (const prefix of ['model.language_model.layers', 'language_model.model.layers', 'model.layers']) {
      const q = base.locate(moduleAddress(`base_model.model.${prefix}.0.self_attn.q_proj`));
      const k = base.locate(moduleAddress(`base_model.model.${prefix}.0.self_attn.k_proj`));
      if (!q.found || !k.found) throw new Error(`q or k not found under ${prefix}`);
      expect(q.targets[0].rows!.slice(0, 8)).toEqual([0, 4, 1, 5, 2, 6, 3, 7].map((src, dst) => ({ src, dst, count: 1 })));
      expect(k.targets[0].rows!.map((s) => s.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
      expect(where(base, `${prefix}.0.self_attn.o_proj`)).toEqual([{ key: 'blk.0.attn_output.weight', rows: undefined }]);
    }
  });

  it('permutes q and k for the other LlamaModel subclasses (granite, smollm3, arcee), MiniCPM and OLMo, not for apertus (which turns it off) or the plain TextModel classes', () => {
    const cases = [
      ['granite', true], ['smollm3', true], ['arcee', true], ['minicpm', true], ['olmo', true],
      ['apertus', false], ['olmo2', false], ['olmoe', false], ['seed_oss', false], ['gemma', false], ['gemma3n', false], ['gemma4', false],
      ['command-r', false], ['cohere2', false],
      ['stablelm', false], ['nemotron', false], ['ernie4_5', false], ['exaone4', false], ['starcoder2', false], ['phi2', false], ['lfm2', false],
    ] as const;
    for (const [arch, permuted] of cases) {
      const base = ggufBase(arch, { 'blk.3.attn_q.weight': [64, 64], 'blk.3.attn_k.weight': [16, 64], 'blk.3.ffn_up.weight': [128, 64] },
        { [`${arch}.attention.head_count`]: 8, [`${arch}.attention.head_count_kv`]: 2 });
      const k = base.locate(moduleAddress('base_model.model.model.layers.3.self_attn.k_proj'));
      if (!k.found) throw new Error(`${arch}: k not found`);
      expect(k.targets[0].rows?.map((s) => s.src), arch).toEqual(permuted ? [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15] : undefined);
      expect(where(base, 'model.layers.3.mlp.up_proj'), arch).toEqual([{ key: 'blk.3.ffn_up.weight', rows: undefined }]);
    }
  });

  it('maps GLM-4 (q and k as they are, the fused gate_up_proj on ffn_up) and GLM-4.5 (experts, shared experts, leading dense layers)', () => {
    const glm4 = ggufBase('glm4', { 'blk.0.attn_q.weight': [64, 64], 'blk.0.attn_k.weight': [16, 64], 'blk.0.ffn_up.weight': [256, 64], 'blk.0.ffn_down.weight': [64, 128] },
      { 'glm4.attention.head_count': 8, 'glm4.attention.head_count_kv': 2 });
    expect(where(glm4, 'model.layers.0.self_attn.k_proj')).toEqual([{ key: 'blk.0.attn_k.weight', rows: undefined }]);
    expect(where(glm4, 'model.layers.0.mlp.gate_up_proj')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
    expect(where(glm4, 'model.layers.0.mlp.down_proj')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    const moe = ggufBase('glm4moe', {
      'blk.0.ffn_gate.weight': [128, 64], 'blk.1.ffn_gate_exps.weight': [8 * 16, 64], 'blk.1.ffn_up_exps.weight': [8 * 16, 64], 'blk.1.ffn_down_exps.weight': [8 * 64, 16],
      'blk.1.ffn_up_shexp.weight': [16, 64], 'blk.1.attn_q.weight': [64, 64],
    }, { 'glm4moe.expert_count': 8, 'glm4moe.attention.head_count': 8 });
    expect(where(moe, 'model.layers.0.mlp.gate_proj')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(moe.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.5.down_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_down_exps.weight', rows: [{ src: 0, dst: 320, count: 64 }] }] });
    expect(where(moe, 'model.layers.1.mlp.shared_experts.up_proj')).toEqual([{ key: 'blk.1.ffn_up_shexp.weight', rows: undefined }]);
    expect(where(moe, 'model.layers.1.self_attn.q_proj')).toEqual([{ key: 'blk.1.attn_q.weight', rows: undefined }]);
    const fused = moe.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.gate_up_proj'));
    expect(fused.found && fused.targets.map((t) => [t.baseKey, t.experts?.rows?.length, t.experts?.rows?.[0], t.experts?.transposed])).toEqual([
      ['blk.1.ffn_gate_exps.weight', 16, 0, false], ['blk.1.ffn_up_exps.weight', 16, 16, false],
    ]);
  });

  it('maps OLMoE\'s experts onto their rows of the stacked tensors', () => {
    const moe = ggufBase('olmoe', { 'blk.2.ffn_up_exps.weight': [64 * 16, 32], 'blk.2.ffn_gate_inp.weight': [64, 32] }, { 'olmoe.expert_count': 64 });
    expect(moe.locate(moduleAddress('base_model.model.model.layers.2.mlp.experts.63.up_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.2.ffn_up_exps.weight', rows: [{ src: 0, dst: 63 * 16, count: 16 }] }] });
    expect(where(moe, 'model.layers.2.mlp.gate')).toEqual([{ key: 'blk.2.ffn_gate_inp.weight', rows: undefined }]);
    expect(where(moe, 'model.layers.2.mlp.experts.gate_up_proj')).toMatch(/no matching tensor/);
    // transformers 5 fuses OLMoE's experts as Qwen's: gate_up_proj (E, 2·ffn, hidden) split in halves.
    const fused = ggufBase('olmoe', { 'blk.2.ffn_gate_exps.weight': [64 * 16, 32], 'blk.2.ffn_up_exps.weight': [64 * 16, 32] }, { 'olmoe.expert_count': 64 });
    const gateUp = fused.locate(moduleAddress('base_model.model.model.layers.2.mlp.experts.gate_up_proj'));
    expect(gateUp.found && gateUp.targets.map((t) => [t.baseKey, t.experts?.paramShape, t.experts?.rows?.[0], t.experts?.transposed])).toEqual([
      ['blk.2.ffn_gate_exps.weight', [64, 32, 32], 0, false], ['blk.2.ffn_up_exps.weight', [64, 32, 32], 16, false],
    ]);
  });

  it('maps Mixtral experts onto their rows of the merged expert tensors, and the router', () => {
    const base = ggufBase('llama', {
      'blk.1.ffn_gate_inp.weight': [4, 64], 'blk.1.ffn_gate_exps.weight': [4 * 128, 64], 'blk.1.ffn_down_exps.weight': [4 * 64, 128], 'blk.1.ffn_up_exps.weight': [4 * 128, 64],
    }, { 'llama.expert_count': 4, 'llama.attention.head_count': 8 });
    const w2 = base.locate(moduleAddress('base_model.model.model.layers.1.block_sparse_moe.experts.2.w2'));
    expect(w2).toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_down_exps.weight', rows: [{ src: 0, dst: 128, count: 64 }] }] });
    const w3 = base.locate(moduleAddress('base_model.model.model.layers.1.block_sparse_moe.experts.3.w3'));
    expect(w3).toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_up_exps.weight', rows: [{ src: 0, dst: 384, count: 128 }] }] });
    expect(where(base, 'model.layers.1.block_sparse_moe.gate')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.block_sparse_moe.experts.4.w1')).toBe('names expert 4, but blk.1.ffn_gate_exps.weight holds 4 (llama.expert_count)');
    // Older files kept one tensor per expert.
    const old = ggufBase('llama', { 'blk.0.ffn_gate.3.weight': [128, 64] }, { 'llama.expert_count': 8 });
    expect(where(old, 'model.layers.0.block_sparse_moe.experts.3.w1')).toEqual([{ key: 'blk.0.ffn_gate.3.weight', rows: undefined }]);
  });

  it('maps qwen2/qwen3 and gemma2/gemma3 without permuting, and multimodal gemma3 paths', () => {
    for (const arch of ['qwen2', 'qwen3', 'gemma2', 'gemma3']) {
      const base = ggufBase(arch, { 'blk.3.attn_q.weight': [64, 64], 'blk.3.attn_k.weight': [16, 64], 'blk.3.ffn_up.weight': [128, 64] }, { [`${arch}.attention.head_count`]: 8 });
      expect(where(base, 'model.layers.3.self_attn.q_proj')).toEqual([{ key: 'blk.3.attn_q.weight', rows: undefined }]);
      expect(where(base, 'model.layers.3.self_attn.k_proj')).toEqual([{ key: 'blk.3.attn_k.weight', rows: undefined }]);
      expect(where(base, 'model.layers.3.mlp.up_proj')).toEqual([{ key: 'blk.3.ffn_up.weight', rows: undefined }]);
    }
    const gemma3 = ggufBase('gemma3', { 'blk.0.attn_q.weight': [64, 64] });
    expect(where(gemma3, 'model.language_model.layers.0.self_attn.q_proj')).toEqual([{ key: 'blk.0.attn_q.weight', rows: undefined }]);
    expect(where(gemma3, 'language_model.model.layers.0.self_attn.q_proj')).toEqual([{ key: 'blk.0.attn_q.weight', rows: undefined }]);
  });

  it('maps qwen3moe experts and phi3\'s fused qkv and gate_up', () => {
    const moe = ggufBase('qwen3moe', { 'blk.0.ffn_up_exps.weight': [8 * 32, 64], 'blk.0.ffn_gate_inp.weight': [8, 64] }, { 'qwen3moe.expert_count': 8 });
    expect(moe.locate(moduleAddress('base_model.model.model.layers.0.mlp.experts.5.up_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.0.ffn_up_exps.weight', rows: [{ src: 0, dst: 160, count: 32 }] }] });
    expect(where(moe, 'model.layers.0.mlp.gate')).toEqual([{ key: 'blk.0.ffn_gate_inp.weight', rows: undefined }]);
    const phi3 = ggufBase('phi3', { 'blk.0.attn_qkv.weight': [192, 64], 'blk.0.ffn_up.weight': [256, 64] });
    expect(where(phi3, 'model.layers.0.self_attn.qkv_proj')).toEqual([{ key: 'blk.0.attn_qkv.weight', rows: undefined }]);
    expect(where(phi3, 'model.layers.0.mlp.gate_up_proj')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
  });

  it('maps Qwen3-VL\'s language model (qwen3vl, qwen3vlmoe) as qwen3, and refuses its vision tower', () => {
    const vl = ggufBase('qwen3vl', { 'blk.2.attn_q.weight': [64, 64], 'blk.2.attn_k.weight': [16, 64], 'blk.2.ffn_down.weight': [64, 128], 'token_embd.weight': [32, 64] },
      { 'qwen3vl.attention.head_count': 8, 'qwen3vl.attention.head_count_kv': 2 });
    // transformers 5 names (model.language_model.…) and the older ones (language_model.model.…).
    expect(where(vl, 'model.language_model.layers.2.self_attn.q_proj')).toEqual([{ key: 'blk.2.attn_q.weight', rows: undefined }]);
    expect(where(vl, 'language_model.model.layers.2.self_attn.k_proj')).toEqual([{ key: 'blk.2.attn_k.weight', rows: undefined }]);
    expect(where(vl, 'model.language_model.layers.2.mlp.down_proj')).toEqual([{ key: 'blk.2.ffn_down.weight', rows: undefined }]);
    expect(where(vl, 'model.language_model.embed_tokens')).toEqual([{ key: 'token_embd.weight', rows: undefined }]);
    expect(where(vl, 'model.visual.blocks.0.attn.qkv')).toMatch(/separate mmproj GGUF/);
    const moe = ggufBase('qwen3vlmoe', { 'blk.0.attn_v.weight': [16, 64], 'blk.0.ffn_gate_inp.weight': [8, 64], 'blk.0.ffn_gate_exps.weight': [8 * 32, 64] },
      { 'qwen3vlmoe.expert_count': 8 });
    expect(where(moe, 'model.language_model.layers.0.self_attn.v_proj')).toEqual([{ key: 'blk.0.attn_v.weight', rows: undefined }]);
    expect(where(moe, 'model.language_model.layers.0.mlp.gate')).toEqual([{ key: 'blk.0.ffn_gate_inp.weight', rows: undefined }]);
  });

  it('places fused expert parameters (target_parameters) on the tensors the converter splits them into, with the parameter\'s shape and the rows each holds', () => {
    const experts = (locator: ModuleLocator, module: string) => {
      const r = locator.locate(moduleAddress(`base_model.model.${module}`));
      return r.found ? r.targets.map((t) => ({ key: t.baseKey, ...t.experts, rows: t.experts?.rows?.join(',') })) : r.message;
    };
    const evens = '0,2,4,6', odds = '1,3,5,7';
    // gpt-oss: (E, in, out), gate and up alternate; the GGUF transposes each expert.
    const oss = ggufBase('gpt-oss', { 'blk.1.ffn_gate_exps.weight': [4 * 4, 96], 'blk.1.ffn_up_exps.weight': [4 * 4, 96], 'blk.1.ffn_down_exps.weight': [4 * 96, 4] }, { 'gpt-oss.expert_count': 4 });
    expect(experts(oss, 'model.layers.1.mlp.experts.gate_up_proj')).toEqual([
      { key: 'blk.1.ffn_gate_exps.weight', paramShape: [4, 96, 8], storedInOut: true, transposed: true, rows: evens },
      { key: 'blk.1.ffn_up_exps.weight', paramShape: [4, 96, 8], storedInOut: true, transposed: true, rows: odds },
    ]);
    expect(experts(oss, 'model.layers.1.mlp.experts.down_proj')).toEqual([{ key: 'blk.1.ffn_down_exps.weight', paramShape: [4, 4, 96], storedInOut: true, transposed: true, rows: undefined }]);
    const fused = ggufBase('gpt-oss', { 'blk.1.ffn_gate_up_exps.weight': [4 * 8, 96] }, { 'gpt-oss.expert_count': 4 });
    expect(experts(fused, 'model.layers.1.mlp.experts.gate_up_proj')).toEqual([
      { key: 'blk.1.ffn_gate_up_exps.weight', paramShape: [4, 96, 8], storedInOut: true, transposed: true, rows: `${evens},${odds}` },
    ]);
    expect(where(oss, 'model.layers.1.mlp.experts.gate_up_proj_bias')).toMatch(/expert bias/);
    // transformers 5's Qwen MoE: (E, out, in), gate then up; the GGUF keeps each expert's orientation.
    for (const arch of ['qwen2moe', 'qwen3moe']) {
      const qwen = ggufBase(arch, { 'blk.0.ffn_gate_exps.weight': [8 * 4, 64], 'blk.0.ffn_up_exps.weight': [8 * 4, 64], 'blk.0.ffn_down_exps.weight': [8 * 64, 4] }, { [`${arch}.expert_count`]: 8 });
      expect(experts(qwen, 'model.layers.0.mlp.experts.gate_up_proj'), arch).toEqual([
        { key: 'blk.0.ffn_gate_exps.weight', paramShape: [8, 8, 64], storedInOut: false, transposed: false, rows: '0,1,2,3' },
        { key: 'blk.0.ffn_up_exps.weight', paramShape: [8, 8, 64], storedInOut: false, transposed: false, rows: '4,5,6,7' },
      ]);
      expect(experts(qwen, 'model.layers.0.mlp.experts.down_proj'), arch).toEqual([{ key: 'blk.0.ffn_down_exps.weight', paramShape: [8, 64, 4], storedInOut: false, transposed: false, rows: undefined }]);
    }
    // Qwen3-VL-MoE's own checkpoints: (E, in, out), gate and up as halves; the GGUF transposes each expert.
    const vlmoe = ggufBase('qwen3vlmoe', { 'blk.0.ffn_gate_exps.weight': [8 * 4, 64], 'blk.0.ffn_up_exps.weight': [8 * 4, 64], 'blk.0.ffn_down_exps.weight': [8 * 64, 4] }, { 'qwen3vlmoe.expert_count': 8 });
    expect(experts(vlmoe, 'model.language_model.layers.0.mlp.experts.gate_up_proj')).toEqual([
      { key: 'blk.0.ffn_gate_exps.weight', paramShape: [8, 64, 8], storedInOut: true, transposed: true, rows: '0,1,2,3' },
      { key: 'blk.0.ffn_up_exps.weight', paramShape: [8, 64, 8], storedInOut: true, transposed: true, rows: '4,5,6,7' },
    ]);
    expect(experts(vlmoe, 'model.language_model.layers.0.mlp.experts.down_proj')).toEqual([{ key: 'blk.0.ffn_down_exps.weight', paramShape: [8, 4, 64], storedInOut: true, transposed: true, rows: undefined }]);
    // Without the expert count, or with gate and up of different shapes, nothing is placed.
    const noCount = ggufBase('gpt-oss', { 'blk.1.ffn_gate_exps.weight': [16, 96], 'blk.1.ffn_up_exps.weight': [16, 96] });
    expect(where(noCount, 'model.layers.1.mlp.experts.gate_up_proj')).toBe(unplaceable('the GGUF records no gpt-oss.expert_count'));
    const uneven = ggufBase('qwen3moe', { 'blk.0.ffn_gate_exps.weight': [8 * 4, 64], 'blk.0.ffn_up_exps.weight': [8 * 5, 64] }, { 'qwen3moe.expert_count': 8 });
    expect(where(uneven, 'model.layers.0.mlp.experts.gate_up_proj'))
      .toBe(unplaceable('blk.0.ffn_gate_exps.weight and blk.0.ffn_up_exps.weight differ in shape (32 × 64 and 40 × 64), so they are not the two halves of one gate_up_proj'));
  });

  it('maps Phi-2\'s dense/fc1/fc2, StarCoder2\'s c_fc/c_proj, EXAONE 3.5\'s GPT-2-style paths and LFM2\'s short-conv and w1/w3/w2', () => {
    const phi2 = ggufBase('phi2', {
      'blk.0.attn_q.weight': [64, 64], 'blk.0.attn_output.weight': [64, 64], 'blk.0.ffn_up.weight': [256, 64], 'blk.0.ffn_down.weight': [64, 256],
    }, { 'phi2.attention.head_count': 8 });
    expect(where(phi2, 'model.layers.0.self_attn.q_proj')).toEqual([{ key: 'blk.0.attn_q.weight', rows: undefined }]);
    expect(where(phi2, 'model.layers.0.self_attn.dense')).toEqual([{ key: 'blk.0.attn_output.weight', rows: undefined }]);
    expect(where(phi2, 'model.layers.0.mlp.fc1')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
    expect(where(phi2, 'model.layers.0.mlp.fc2')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    // A file converted from Microsoft's original layout has attn_qkv: q_proj has nowhere to land.
    const oldPhi2 = ggufBase('phi2', { 'blk.0.attn_qkv.weight': [192, 64] });
    expect(where(oldPhi2, 'model.layers.0.self_attn.q_proj')).toMatch(/no matching tensor/);
    const starcoder2 = ggufBase('starcoder2', { 'blk.1.ffn_up.weight': [256, 64], 'blk.1.ffn_down.weight': [64, 256] });
    expect(where(starcoder2, 'model.layers.1.mlp.c_fc')).toEqual([{ key: 'blk.1.ffn_up.weight', rows: undefined }]);
    expect(where(starcoder2, 'model.layers.1.mlp.c_proj')).toEqual([{ key: 'blk.1.ffn_down.weight', rows: undefined }]);
    const exaone = ggufBase('exaone', {
      'token_embd.weight': [32, 64], 'output.weight': [32, 64], 'blk.2.attn_q.weight': [64, 64], 'blk.2.attn_output.weight': [64, 64],
      'blk.2.ffn_gate.weight': [128, 64], 'blk.2.ffn_up.weight': [128, 64], 'blk.2.ffn_down.weight': [64, 128],
    }, { 'exaone.attention.head_count': 8 });
    expect(where(exaone, 'transformer.wte')).toEqual([{ key: 'token_embd.weight', rows: undefined }]);
    expect(where(exaone, 'lm_head')).toEqual([{ key: 'output.weight', rows: undefined }]);
    expect(where(exaone, 'transformer.h.2.attn.attention.q_proj')).toEqual([{ key: 'blk.2.attn_q.weight', rows: undefined }]);
    expect(where(exaone, 'transformer.h.2.attn.attention.out_proj')).toEqual([{ key: 'blk.2.attn_output.weight', rows: undefined }]);
    expect(where(exaone, 'transformer.h.2.mlp.c_fc_0')).toEqual([{ key: 'blk.2.ffn_gate.weight', rows: undefined }]);
    expect(where(exaone, 'transformer.h.2.mlp.c_fc_1')).toEqual([{ key: 'blk.2.ffn_up.weight', rows: undefined }]);
    expect(where(exaone, 'transformer.h.2.mlp.c_proj')).toEqual([{ key: 'blk.2.ffn_down.weight', rows: undefined }]);
    const lfm2 = ggufBase('lfm2', {
      'blk.0.shortconv.in_proj.weight': [192, 64], 'blk.0.shortconv.out_proj.weight': [64, 64], 'blk.2.attn_output.weight': [64, 64],
      'blk.2.ffn_gate.weight': [128, 64], 'blk.2.ffn_up.weight': [128, 64], 'blk.2.ffn_down.weight': [64, 128],
    });
    expect(where(lfm2, 'model.layers.0.conv.in_proj')).toEqual([{ key: 'blk.0.shortconv.in_proj.weight', rows: undefined }]);
    expect(where(lfm2, 'model.layers.0.conv.out_proj')).toEqual([{ key: 'blk.0.shortconv.out_proj.weight', rows: undefined }]);
    expect(where(lfm2, 'model.layers.2.self_attn.out_proj')).toEqual([{ key: 'blk.2.attn_output.weight', rows: undefined }]);
    expect(where(lfm2, 'model.layers.2.feed_forward.w1')).toEqual([{ key: 'blk.2.ffn_gate.weight', rows: undefined }]);
    expect(where(lfm2, 'model.layers.2.feed_forward.w3')).toEqual([{ key: 'blk.2.ffn_up.weight', rows: undefined }]);
    expect(where(lfm2, 'model.layers.2.feed_forward.w2')).toEqual([{ key: 'blk.2.ffn_down.weight', rows: undefined }]);
    // A conv layer has no attention: its q_proj is a named miss.
    expect(where(lfm2, 'model.layers.0.self_attn.q_proj')).toMatch(/no matching tensor/);
    // A module of EXAONE's own tree that has no tensor is a miss, named.
    expect(where(exaone, 'transformer.h.2.attn.attention.rotary')).toMatch(/no matching tensor/);
  });

  it('maps Granite 4.0 H (granitehybrid): Mamba-2 in/out, q and k permuted with the block\'s kv heads, the shared MLP split in halves, experts, router', () => {
    const rows = (locator: ModuleLocator, module: string) => {
      const r = locator.locate(moduleAddress(`base_model.model.${module}`));
      return r.found ? r.targets.map((t) => [t.baseKey, t.rows?.map((g) => `${g.src}>${g.dst}x${g.count}`).join(',')]) : r.message;
    };
    // Block 0 Mamba-2, block 1 attention: head_count_kv is one value per block (0 for Mamba-2).
    const moe = ggufBase('granitehybrid', {
      'blk.0.ssm_in.weight': [148, 32], 'blk.0.ssm_out.weight': [32, 64],
      'blk.1.attn_q.weight': [32, 32], 'blk.1.attn_k.weight': [16, 32], 'blk.1.attn_v.weight': [16, 32], 'blk.1.attn_output.weight': [32, 32],
      'blk.0.ffn_gate_shexp.weight': [24, 32], 'blk.0.ffn_up_shexp.weight': [24, 32], 'blk.0.ffn_down_shexp.weight': [32, 24],
      'blk.1.ffn_gate_inp.weight': [4, 32], 'blk.1.ffn_gate_exps.weight': [4 * 8, 32], 'blk.1.ffn_up_exps.weight': [4 * 8, 32], 'blk.1.ffn_down_exps.weight': [4 * 32, 8],
    }, { 'granitehybrid.attention.head_count': 4, 'granitehybrid.attention.head_count_kv': [0, 2], 'granitehybrid.expert_count': 4 });
    expect(where(moe, 'model.layers.0.mamba.in_proj')).toEqual([{ key: 'blk.0.ssm_in.weight', rows: undefined }]);
    expect(where(moe, 'model.layers.0.mamba.out_proj')).toEqual([{ key: 'blk.0.ssm_out.weight', rows: undefined }]);
    // 4 heads of 8 rows for q, 2 kv heads of 8 rows for k.
    const q = moe.locate(moduleAddress('base_model.model.model.layers.1.self_attn.q_proj'));
    const k = moe.locate(moduleAddress('base_model.model.model.layers.1.self_attn.k_proj'));
    if (!q.found || !k.found) throw new Error('q or k not found');
    expect(q.targets[0].rows!.slice(0, 8).map((g) => g.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(k.targets[0].rows!.map((g) => g.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
    expect(where(moe, 'model.layers.1.self_attn.o_proj')).toEqual([{ key: 'blk.1.attn_output.weight', rows: undefined }]);
    // input_linear is gate then up (24 rows each); beside experts they are the shared expert's.
    expect(rows(moe, 'model.layers.0.shared_mlp.input_linear')).toEqual([['blk.0.ffn_gate_shexp.weight', '0>0x24'], ['blk.0.ffn_up_shexp.weight', '24>0x24']]);
    expect(where(moe, 'model.layers.0.shared_mlp.output_linear')).toEqual([{ key: 'blk.0.ffn_down_shexp.weight', rows: undefined }]);
    expect(where(moe, 'model.layers.1.block_sparse_moe.router.layer')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    const fused = moe.locate(moduleAddress('base_model.model.model.layers.1.block_sparse_moe.input_linear.weight'));
    expect(fused.found && fused.targets.map((t) => [t.baseKey, t.experts?.paramShape, t.experts?.rows?.join(',')])).toEqual([
      ['blk.1.ffn_gate_exps.weight', [4, 16, 32], '0,1,2,3,4,5,6,7'], ['blk.1.ffn_up_exps.weight', [4, 16, 32], '8,9,10,11,12,13,14,15'],
    ]);
    const down = moe.locate(moduleAddress('base_model.model.model.layers.1.block_sparse_moe.output_linear.weight'));
    expect(down.found && down.targets.map((t) => [t.baseKey, t.experts?.paramShape])).toEqual([['blk.1.ffn_down_exps.weight', [4, 32, 8]]]);
    expect(where(moe, 'model.layers.1.block_sparse_moe.input_linear')).toMatch(/not a Linear.*target_parameters/);
    // The dense hybrid (Granite 4.0 H Micro) and the attention-only dense model (written as granite): ffn_gate/ffn_up/ffn_down.
    for (const arch of ['granitehybrid', 'granite']) {
      const dense = ggufBase(arch, { 'blk.2.ffn_gate.weight': [24, 32], 'blk.2.ffn_up.weight': [24, 32], 'blk.2.ffn_down.weight': [32, 24] });
      expect(rows(dense, 'model.layers.2.shared_mlp.input_linear'), arch).toEqual([['blk.2.ffn_gate.weight', '0>0x24'], ['blk.2.ffn_up.weight', '24>0x24']]);
      expect(where(dense, 'model.layers.2.shared_mlp.output_linear'), arch).toEqual([{ key: 'blk.2.ffn_down.weight', rows: undefined }]);
    }
    // Gate and up of different heights cannot be the two halves of one input_linear.
    const uneven = ggufBase('granitehybrid', { 'blk.0.ffn_gate_shexp.weight': [24, 32], 'blk.0.ffn_up_shexp.weight': [20, 32] });
    expect(where(uneven, 'model.layers.0.shared_mlp.input_linear'))
      .toBe(unplaceable('blk.0.ffn_gate_shexp.weight has 24 rows and blk.0.ffn_up_shexp.weight 20, so they are not the two halves of one module'));
    // Bamba: feed_forward's plain names.
    const bamba = ggufBase('granitehybrid', { 'blk.0.ffn_gate.weight': [24, 32], 'blk.0.ffn_down.weight': [32, 24] });
    expect(where(bamba, 'model.layers.0.feed_forward.gate_proj')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(bamba, 'model.layers.0.feed_forward.down_proj')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    // Granite 3.x MoE: permuted q (scalar head counts), experts, shared MLP.
    const g3 = ggufBase('granitemoe', { 'blk.0.attn_q.weight': [32, 32], 'blk.0.ffn_gate_inp.weight': [4, 32], 'blk.0.ffn_gate_shexp.weight': [24, 32], 'blk.0.ffn_up_shexp.weight': [24, 32] },
      { 'granitemoe.attention.head_count': 4, 'granitemoe.attention.head_count_kv': 2 });
    const g3q = g3.locate(moduleAddress('base_model.model.model.layers.0.self_attn.q_proj'));
    expect(g3q.found && g3q.targets[0].rows!.slice(0, 8).map((g) => g.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(where(g3, 'model.layers.0.block_sparse_moe.router.layer')).toEqual([{ key: 'blk.0.ffn_gate_inp.weight', rows: undefined }]);
    expect(rows(g3, 'model.layers.0.shared_mlp.input_linear')).toEqual([['blk.0.ffn_gate_shexp.weight', '0>0x24'], ['blk.0.ffn_up_shexp.weight', '24>0x24']]);
  });

  it('maps Nemotron-H\'s mixers (backbone or model naming): Mamba-2 in/out, q and k permuted, MLP up/down, MoE experts and shared experts', () => {
    const base = ggufBase('nemotron_h', {
      'token_embd.weight': [32, 64], 'output.weight': [32, 64],
      'blk.0.ssm_in.weight': [148, 32], 'blk.0.ssm_out.weight': [32, 64],
      'blk.1.attn_q.weight': [32, 32], 'blk.1.attn_k.weight': [16, 32], 'blk.1.attn_v.weight': [16, 32], 'blk.1.attn_output.weight': [32, 32],
      'blk.2.ffn_up.weight': [48, 32], 'blk.2.ffn_down.weight': [32, 48],
    }, { 'nemotron_h.attention.head_count': 4, 'nemotron_h.attention.head_count_kv': [0, 2, 0] });
    for (const tree of ['backbone', 'model']) {
      expect(where(base, `${tree}.layers.0.mixer.in_proj`)).toEqual([{ key: 'blk.0.ssm_in.weight', rows: undefined }]);
      expect(where(base, `${tree}.layers.0.mixer.out_proj`)).toEqual([{ key: 'blk.0.ssm_out.weight', rows: undefined }]);
      const k = base.locate(moduleAddress(`base_model.model.${tree}.layers.1.mixer.k_proj`));
      expect(k.found && k.targets[0].rows!.map((g) => g.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
      const q = base.locate(moduleAddress(`base_model.model.${tree}.layers.1.mixer.q_proj`));
      expect(q.found && q.targets[0].rows!.slice(0, 8).map((g) => g.src)).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
      expect(where(base, `${tree}.layers.1.mixer.v_proj`)).toEqual([{ key: 'blk.1.attn_v.weight', rows: undefined }]);
      expect(where(base, `${tree}.layers.1.mixer.o_proj`)).toEqual([{ key: 'blk.1.attn_output.weight', rows: undefined }]);
      expect(where(base, `${tree}.layers.2.mixer.up_proj`)).toEqual([{ key: 'blk.2.ffn_up.weight', rows: undefined }]);
      expect(where(base, `${tree}.layers.2.mixer.down_proj`)).toEqual([{ key: 'blk.2.ffn_down.weight', rows: undefined }]);
    }
    expect(where(base, 'backbone.embeddings')).toEqual([{ key: 'token_embd.weight', rows: undefined }]);
    expect(where(base, 'lm_head')).toEqual([{ key: 'output.weight', rows: undefined }]);
    // A Mamba-2 block has no attention; a module of the tree with no tensor is a named miss.
    expect(where(base, 'backbone.layers.0.mixer.q_proj')).toMatch(/no matching tensor/);
    expect(where(base, 'backbone.layers.0.mixer.conv1d')).toMatch(/no matching tensor/);
    const moe = ggufBase('nemotron_h_moe', {
      'blk.1.ffn_up_exps.weight': [8 * 16, 32], 'blk.1.ffn_down_exps.weight': [8 * 32, 16], 'blk.1.ffn_up_shexp.weight': [24, 32], 'blk.1.ffn_down_shexp.weight': [32, 24],
    }, { 'nemotron_h_moe.expert_count': 8 });
    expect(moe.locate(moduleAddress('base_model.model.backbone.layers.1.mixer.experts.5.up_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_up_exps.weight', rows: [{ src: 0, dst: 80, count: 16 }] }] });
    expect(moe.locate(moduleAddress('base_model.model.backbone.layers.1.mixer.experts.7.down_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_down_exps.weight', rows: [{ src: 0, dst: 224, count: 32 }] }] });
    expect(where(moe, 'backbone.layers.1.mixer.shared_experts.up_proj')).toEqual([{ key: 'blk.1.ffn_up_shexp.weight', rows: undefined }]);
    expect(where(moe, 'backbone.layers.1.mixer.shared_experts.down_proj')).toEqual([{ key: 'blk.1.ffn_down_shexp.weight', rows: undefined }]);
  });

  it('maps Falcon-H1\'s up projection and refuses the weights its converter multiplies by config multipliers', () => {
    const base = ggufBase('falcon-h1', {
      'token_embd.weight': [32, 64], 'output.weight': [32, 64], 'blk.0.ssm_in.weight': [148, 32], 'blk.0.ssm_out.weight': [32, 64],
      'blk.0.attn_q.weight': [32, 32], 'blk.0.attn_k.weight': [16, 32], 'blk.0.attn_v.weight': [16, 32], 'blk.0.attn_output.weight': [32, 32],
      'blk.0.ffn_gate.weight': [48, 32], 'blk.0.ffn_up.weight': [48, 32], 'blk.0.ffn_down.weight': [32, 48],
    }, { 'falcon-h1.attention.head_count': 4, 'falcon-h1.attention.head_count_kv': 2 });
    expect(where(base, 'model.layers.0.feed_forward.up_proj')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
    const refused: [string, RegExp][] = [
      ['model.layers.0.feed_forward.gate_proj', /mlp_multipliers\[0\]/], ['model.layers.0.feed_forward.down_proj', /mlp_multipliers\[1\]/],
      ['model.layers.0.self_attn.q_proj', /attention_in_multiplier/], ['model.layers.0.self_attn.k_proj', /key_multiplier/],
      ['model.layers.0.self_attn.v_proj', /attention_in_multiplier/], ['model.layers.0.self_attn.o_proj', /attention_out_multiplier/],
      ['model.layers.0.mamba.in_proj', /ssm_multipliers/], ['model.layers.0.mamba.out_proj', /ssm_out_multiplier/],
      ['model.embed_tokens', /embedding_multiplier/], ['lm_head', /lm_head_multiplier/],
    ];
    for (const [module, why] of refused) expect(where(base, module), module).toMatch(why);
  });

  it('splits InternLM2\'s grouped wqkv into attn_q, attn_k and attn_v as the converter does, q and k permuted', () => {
    // 4 heads, 2 kv heads, head_dim 4: wqkv is, per group, 2 q heads, 1 k head, 1 v head (16 rows a group).
    const base = ggufBase('internlm2', {
      'token_embd.weight': [32, 16], 'output.weight': [32, 16],
      'blk.0.attn_q.weight': [16, 16], 'blk.0.attn_k.weight': [8, 16], 'blk.0.attn_v.weight': [8, 16], 'blk.0.attn_output.weight': [16, 16],
      'blk.0.ffn_gate.weight': [24, 16], 'blk.0.ffn_up.weight': [24, 16], 'blk.0.ffn_down.weight': [16, 24],
    }, { 'internlm2.attention.head_count': 4, 'internlm2.attention.head_count_kv': 2 });
    const r = base.locate(moduleAddress('base_model.model.model.layers.0.attention.wqkv'));
    if (!r.found) throw new Error(r.message);
    const byDst = (i: number) => [...r.targets[i].rows!].sort((a, b) => a.dst - b.dst).flatMap((g) => Array.from({ length: g.count }, (_, j) => g.src + j));
    expect(r.targets.map((t) => t.baseKey)).toEqual(['blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight']);
    // q heads 0, 1 are wqkv rows 0–7, heads 2, 3 rows 16–23; each head's rows interleaved (0, 2, 1, 3).
    expect(byDst(0)).toEqual([0, 2, 1, 3, 4, 6, 5, 7, 16, 18, 17, 19, 20, 22, 21, 23]);
    // k heads: rows 8–11 and 24–27, interleaved; v heads: rows 12–15 and 28–31 as they are.
    expect(byDst(1)).toEqual([8, 10, 9, 11, 24, 26, 25, 27]);
    expect(byDst(2)).toEqual([12, 13, 14, 15, 28, 29, 30, 31]);
    expect(where(base, 'model.layers.0.attention.wo')).toEqual([{ key: 'blk.0.attn_output.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.feed_forward.w1')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.feed_forward.w3')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.feed_forward.w2')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    expect(where(base, 'model.tok_embeddings')).toEqual([{ key: 'token_embd.weight', rows: undefined }]);
    expect(where(base, 'output')).toEqual([{ key: 'output.weight', rows: undefined }]);
    // InternVL's language model keeps the same names under language_model.
    expect(where(base, 'language_model.model.layers.0.attention.wo')).toEqual([{ key: 'blk.0.attn_output.weight', rows: undefined }]);
    // Without the kv-head count's fit (k not kv_heads·head_dim rows), nothing is placed.
    const odd = ggufBase('internlm2', { 'blk.0.attn_q.weight': [16, 16], 'blk.0.attn_k.weight': [4, 16], 'blk.0.attn_v.weight': [4, 16] },
      { 'internlm2.attention.head_count': 4, 'internlm2.attention.head_count_kv': 2 });
    expect(where(odd, 'model.layers.0.attention.wqkv'))
      .toBe(unplaceable("blk.0.attn_k.weight has 4 rows, not 2 kv heads (internlm2.attention.head_count_kv) of blk.0.attn_q.weight's head size 4"));
  });

  it('maps Llama 4\'s language model without permuting q and k: feed_forward MLP, router, shared expert, fused experts transposed and split in halves', () => {
    const base = ggufBase('llama4', {
      'blk.0.attn_q.weight': [64, 32], 'blk.0.attn_k.weight': [16, 32], 'blk.0.ffn_gate.weight': [48, 32], 'blk.0.ffn_down.weight': [32, 48],
      'blk.1.ffn_gate_inp.weight': [4, 32], 'blk.1.ffn_up_shexp.weight': [24, 32], 'blk.1.ffn_down_shexp.weight': [32, 24],
      'blk.1.ffn_gate_exps.weight': [4 * 8, 32], 'blk.1.ffn_up_exps.weight': [4 * 8, 32], 'blk.1.ffn_down_exps.weight': [4 * 32, 8],
    }, { 'llama4.attention.head_count': 8, 'llama4.attention.head_count_kv': 2, 'llama4.expert_count': 4 });
    for (const prefix of ['language_model.model.layers', 'model.language_model.layers', 'model.layers']) {
      expect(where(base, `${prefix}.0.self_attn.q_proj`), prefix).toEqual([{ key: 'blk.0.attn_q.weight', rows: undefined }]);
      expect(where(base, `${prefix}.0.self_attn.k_proj`), prefix).toEqual([{ key: 'blk.0.attn_k.weight', rows: undefined }]);
    }
    expect(where(base, 'model.layers.0.feed_forward.gate_proj')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.feed_forward.down_proj')).toEqual([{ key: 'blk.0.ffn_down.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.feed_forward.router')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.feed_forward.shared_expert.up_proj')).toEqual([{ key: 'blk.1.ffn_up_shexp.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.feed_forward.shared_expert.down_proj')).toEqual([{ key: 'blk.1.ffn_down_shexp.weight', rows: undefined }]);
    const fused = base.locate(moduleAddress('base_model.model.language_model.model.layers.1.feed_forward.experts.gate_up_proj'));
    expect(fused.found && fused.targets.map((t) => [t.baseKey, t.experts?.paramShape, t.experts?.transposed, t.experts?.rows?.join(',')])).toEqual([
      ['blk.1.ffn_gate_exps.weight', [4, 32, 16], true, '0,1,2,3,4,5,6,7'], ['blk.1.ffn_up_exps.weight', [4, 32, 16], true, '8,9,10,11,12,13,14,15'],
    ]);
    const down = base.locate(moduleAddress('base_model.model.model.layers.1.feed_forward.experts.down_proj'));
    expect(down.found && down.targets.map((t) => [t.baseKey, t.experts?.paramShape, t.experts?.transposed])).toEqual([['blk.1.ffn_down_exps.weight', [4, 8, 32], true]]);
    expect(where(base, 'language_model.model.layers.1.feed_forward.experts.down_proj_bias')).toMatch(/expert bias/);
    expect(where(base, 'vision_model.model.layers.0.self_attn.q_proj')).toMatch(/separate mmproj GGUF/);
  });

  it('maps DeepSeek-V2/V3 (deepseek2): MLA projections by name, kv_b_proj split per head into attn_k_b (each head transposed) and attn_v_b, the dense MLP, router, experts and shared experts', () => {
    // 4 heads, kv_lora_rank 8, qk_nope 6, v 5: kv_b_proj is (4·(6 + 5), 8), head h's key rows 11h…11h+5, value rows 11h+6…11h+10.
    const HEADS = 4, RANK = 8, NOPE = 6, V = 5;
    const mla = {
      'blk.0.attn_q_a.weight': [12, 32], 'blk.0.attn_q_b.weight': [HEADS * (NOPE + 2), 12], 'blk.0.attn_kv_a_mqa.weight': [RANK + 2, 32],
      'blk.0.attn_k_b.weight': [HEADS * RANK, NOPE], 'blk.0.attn_v_b.weight': [HEADS * V, RANK], 'blk.0.attn_output.weight': [32, HEADS * V],
      'blk.0.ffn_gate.weight': [64, 32], 'blk.1.ffn_gate_inp.weight': [8, 32], 'blk.1.ffn_down_exps.weight': [8 * 32, 16],
      'blk.1.ffn_gate_exps.weight': [8 * 16, 32], 'blk.1.ffn_up_exps.weight': [8 * 16, 32], 'blk.1.ffn_up_shexp.weight': [16, 32],
    };
    const meta = { 'deepseek2.attention.head_count': HEADS, 'deepseek2.attention.head_count_kv': 1, 'deepseek2.attention.kv_lora_rank': RANK, 'deepseek2.expert_count': 8 };
    const base = ggufBase('deepseek2', mla, meta);
    expect(where(base, 'model.layers.0.self_attn.q_a_proj')).toEqual([{ key: 'blk.0.attn_q_a.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.q_b_proj')).toEqual([{ key: 'blk.0.attn_q_b.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.kv_a_proj_with_mqa')).toEqual([{ key: 'blk.0.attn_kv_a_mqa.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.o_proj')).toEqual([{ key: 'blk.0.attn_output.weight', rows: undefined }]);
    const kvB = base.locate(moduleAddress('base_model.model.model.layers.0.self_attn.kv_b_proj'));
    expect(kvB.found && kvB.targets).toEqual([
      { baseKey: 'blk.0.attn_k_b.weight', transposedBlocks: { starts: [0, 11, 22, 33], rows: NOPE } },
      { baseKey: 'blk.0.attn_v_b.weight', rows: [6, 17, 28, 39].map((src, h) => ({ src, dst: h * V, count: V })) },
    ]);
    // Kimi-VL / Kimi K2.5 nest the language model.
    expect(base.locate(moduleAddress('base_model.model.language_model.model.layers.0.self_attn.kv_b_proj'))).toMatchObject({ found: true, targets: [{ baseKey: 'blk.0.attn_k_b.weight' }, { baseKey: 'blk.0.attn_v_b.weight' }] });
    expect(where(base, 'model.layers.0.mlp.gate_proj')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.mlp.gate')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    expect(base.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.5.down_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_down_exps.weight', rows: [{ src: 0, dst: 160, count: 32 }] }] });
    expect(where(base, 'model.layers.1.mlp.shared_experts.up_proj')).toEqual([{ key: 'blk.1.ffn_up_shexp.weight', rows: undefined }]);
    const fused = base.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.gate_up_proj'));
    expect(fused.found && fused.targets.map((t) => [t.baseKey, t.experts?.rows?.[0]])).toEqual([['blk.1.ffn_gate_exps.weight', 0], ['blk.1.ffn_up_exps.weight', 16]]);
    // The head count decides the split: without it, or with another kv_lora_rank, nothing is placed.
    expect(where(ggufBase('deepseek2', mla, { ...meta, 'deepseek2.attention.head_count': undefined }), 'model.layers.0.self_attn.kv_b_proj'))
      .toBe(unplaceable('the GGUF records no deepseek2.attention.head_count'));
    expect(where(ggufBase('deepseek2', mla, { ...meta, 'deepseek2.attention.kv_lora_rank': 16 }), 'model.layers.0.self_attn.kv_b_proj'))
      .toBe(unplaceable(`blk.0.attn_v_b.weight has ${RANK} columns, but the GGUF's deepseek2.attention.kv_lora_rank is 16`));
    // V2-Lite's q_proj; a conversion from before the split holds attn_kv_b whole.
    const lite = ggufBase('deepseek2', { 'blk.0.attn_q.weight': [HEADS * (NOPE + 2), 32], 'blk.0.attn_kv_b.weight': [HEADS * (NOPE + V), RANK] }, meta);
    expect(where(lite, 'model.layers.0.self_attn.q_proj')).toEqual([{ key: 'blk.0.attn_q.weight', rows: undefined }]);
    expect(where(lite, 'model.layers.0.self_attn.kv_b_proj')).toEqual([{ key: 'blk.0.attn_kv_b.weight', rows: undefined }]);
    // One that keeps attn_kv_b beside the split gets ΔW on all three.
    const both = ggufBase('deepseek2', { ...mla, 'blk.0.attn_kv_b.weight': [HEADS * (NOPE + V), RANK] }, meta);
    const all = both.locate(moduleAddress('base_model.model.model.layers.0.self_attn.kv_b_proj'));
    expect(all.found && all.targets.map((t) => [t.baseKey, t.copy])).toEqual([
      ['blk.0.attn_k_b.weight', undefined], ['blk.0.attn_v_b.weight', undefined], ['blk.0.attn_kv_b.weight', true],
    ]);
    // attn_k_b without attn_v_b is not what the converter writes.
    expect(where(ggufBase('deepseek2', { 'blk.0.attn_k_b.weight': [HEADS * RANK, NOPE] }, meta), 'model.layers.0.self_attn.kv_b_proj')).toMatch(/no matching tensor/);
  });

  it('maps LFM2-MoE (lfm2moe) and ERNIE 4.5 MoE (ernie4_5-moe): routers, experts on their rows, shared experts, fused experts', () => {
    const lfm = ggufBase('lfm2moe', {
      'blk.0.ffn_gate.weight': [64, 32], 'blk.1.shortconv.in_proj.weight': [96, 32], 'blk.2.attn_output.weight': [32, 32],
      'blk.2.ffn_gate_inp.weight': [8, 32], 'blk.2.ffn_gate_exps.weight': [8 * 16, 32], 'blk.2.ffn_up_exps.weight': [8 * 16, 32], 'blk.2.ffn_down_exps.weight': [8 * 32, 16],
    }, { 'lfm2moe.expert_count': 8 });
    expect(where(lfm, 'model.layers.0.feed_forward.w1')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(lfm, 'model.layers.1.conv.in_proj')).toEqual([{ key: 'blk.1.shortconv.in_proj.weight', rows: undefined }]);
    expect(where(lfm, 'model.layers.2.self_attn.out_proj')).toEqual([{ key: 'blk.2.attn_output.weight', rows: undefined }]);
    expect(where(lfm, 'model.layers.2.feed_forward.gate')).toEqual([{ key: 'blk.2.ffn_gate_inp.weight', rows: undefined }]);
    for (const [w, tensor, per] of [['w1', 'ffn_gate_exps', 16], ['w3', 'ffn_up_exps', 16], ['w2', 'ffn_down_exps', 32]] as const) {
      expect(lfm.locate(moduleAddress(`base_model.model.model.layers.2.feed_forward.experts.7.${w}`)), w)
        .toMatchObject({ found: true, targets: [{ baseKey: `blk.2.${tensor}.weight`, rows: [{ src: 0, dst: 7 * per, count: per }] }] });
    }
    const fused = lfm.locate(moduleAddress('base_model.model.model.layers.2.feed_forward.experts.gate_up_proj'));
    expect(fused.found && fused.targets.map((t) => [t.baseKey, t.experts?.rows?.[0]])).toEqual([['blk.2.ffn_gate_exps.weight', 0], ['blk.2.ffn_up_exps.weight', 16]]);

    const ernie = ggufBase('ernie4_5-moe', {
      'blk.0.attn_q.weight': [64, 32], 'blk.0.attn_k.weight': [16, 32], 'blk.0.ffn_up.weight': [64, 32],
      'blk.1.ffn_gate_inp.weight': [8, 32], 'blk.1.ffn_gate_exps.weight': [8 * 16, 32], 'blk.1.ffn_down_shexp.weight': [32, 16],
    }, { 'ernie4_5-moe.expert_count': 8, 'ernie4_5-moe.attention.head_count': 8, 'ernie4_5-moe.attention.head_count_kv': 2 });
    // q and k as they are (TextModel's plain mapping).
    expect(where(ernie, 'model.layers.0.self_attn.k_proj')).toEqual([{ key: 'blk.0.attn_k.weight', rows: undefined }]);
    expect(where(ernie, 'model.layers.0.mlp.up_proj')).toEqual([{ key: 'blk.0.ffn_up.weight', rows: undefined }]);
    expect(where(ernie, 'model.layers.1.mlp.gate')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    expect(ernie.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.3.gate_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_gate_exps.weight', rows: [{ src: 0, dst: 48, count: 16 }] }] });
    expect(where(ernie, 'model.layers.1.mlp.shared_experts.down_proj')).toEqual([{ key: 'blk.1.ffn_down_shexp.weight', rows: undefined }]);
  });

  it('maps Gemma 4\'s MoE: the router\'s proj, and the experts under the decoder layer on ffn_gate_up_exps written whole', () => {
    const base = ggufBase('gemma4', {
      'blk.0.ffn_gate.weight': [128, 32], 'blk.0.ffn_gate_inp.weight': [8, 32], 'blk.0.ffn_gate_up_exps.weight': [8 * 2 * 16, 32], 'blk.0.ffn_down_exps.weight': [8 * 32, 16],
    }, { 'gemma4.expert_count': 8 });
    expect(where(base, 'model.language_model.layers.0.mlp.gate_proj')).toEqual([{ key: 'blk.0.ffn_gate.weight', rows: undefined }]);
    expect(where(base, 'model.language_model.layers.0.router.proj')).toEqual([{ key: 'blk.0.ffn_gate_inp.weight', rows: undefined }]);
    const gateUp = base.locate(moduleAddress('base_model.model.model.language_model.layers.0.experts.gate_up_proj'));
    expect(gateUp.found && gateUp.targets.map((t) => [t.baseKey, t.experts?.paramShape, t.experts?.rows, t.experts?.transposed])).toEqual([
      ['blk.0.ffn_gate_up_exps.weight', [8, 32, 32], undefined, false],
    ]);
    const down = base.locate(moduleAddress('base_model.model.model.language_model.layers.0.experts.down_proj'));
    expect(down.found && down.targets.map((t) => [t.baseKey, t.experts?.paramShape])).toEqual([['blk.0.ffn_down_exps.weight', [8, 32, 16]]]);
  });

  it.for(['deepseek32', 'glm-dsa'])('maps %s (DeepSeek-V3.2, GLM-5): MLA as deepseek2, the lightning indexer by name, and the kept nextn layer', (arch) => {
    // 2 blocks and 1 nextn layer (block 2), 4 heads, kv_lora_rank 8, qk_nope 6, v 5; indexer 2 heads of 16.
    const HEADS = 4, RANK = 8, NOPE = 6, V = 5, Q_RANK = 12, IDX_HEADS = 2, IDX_DIM = 16;
    const block = (b: number) => ({
      [`blk.${b}.attn_q_a.weight`]: [Q_RANK, 32], [`blk.${b}.attn_q_b.weight`]: [HEADS * (NOPE + 2), Q_RANK],
      [`blk.${b}.attn_k_b.weight`]: [HEADS * RANK, NOPE], [`blk.${b}.attn_v_b.weight`]: [HEADS * V, RANK],
      [`blk.${b}.indexer.attn_q_b.weight`]: [IDX_HEADS * IDX_DIM, Q_RANK], [`blk.${b}.indexer.attn_k.weight`]: [IDX_DIM, 32],
      [`blk.${b}.indexer.proj.weight`]: [IDX_HEADS, 32], [`blk.${b}.indexer.k_norm.weight`]: [IDX_DIM],
      [`blk.${b}.ffn_gate_exps.weight`]: [8 * 16, 32],
    });
    const shapes = {
      ...block(0), ...block(1), ...block(2),
      'blk.2.nextn.eh_proj.weight': [32, 64], 'blk.2.nextn.shared_head_head.weight': [100, 32], 'blk.2.nextn.embed_tokens.weight': [100, 32],
    };
    const base = ggufBase(arch, shapes, {
      [`${arch}.block_count`]: 3, [`${arch}.nextn_predict_layers`]: 1, [`${arch}.attention.head_count`]: HEADS, [`${arch}.attention.head_count_kv`]: 1,
      [`${arch}.attention.kv_lora_rank`]: RANK, [`${arch}.expert_count`]: 8, [`${arch}.attention.indexer.head_count`]: IDX_HEADS,
    });
    expect(where(base, 'model.layers.1.self_attn.indexer.wq_b')).toEqual([{ key: 'blk.1.indexer.attn_q_b.weight', rows: undefined }]);
    expect(where(base, 'model.layers.1.self_attn.indexer.wk')).toEqual([{ key: 'blk.1.indexer.attn_k.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.indexer.weights_proj')).toEqual([{ key: 'blk.0.indexer.proj.weight', rows: undefined }]);
    expect(where(base, 'model.layers.0.self_attn.q_b_proj')).toEqual([{ key: 'blk.0.attn_q_b.weight', rows: undefined }]);
    const kvB = base.locate(moduleAddress('base_model.model.model.layers.1.self_attn.kv_b_proj'));
    expect(kvB.found && kvB.targets).toEqual([
      { baseKey: 'blk.1.attn_k_b.weight', transposedBlocks: { starts: [0, 11, 22, 33], rows: NOPE } },
      { baseKey: 'blk.1.attn_v_b.weight', rows: [6, 17, 28, 39].map((src, h) => ({ src, dst: h * V, count: V })) },
    ]);
    expect(base.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.3.gate_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_gate_exps.weight', rows: [{ src: 0, dst: 48, count: 16 }] }] });
    // The nextn layer: a block like the others, and its own projections under nextn.
    expect(where(base, 'model.layers.2.self_attn.indexer.wk')).toEqual([{ key: 'blk.2.indexer.attn_k.weight', rows: undefined }]);
    expect(where(base, 'model.layers.2.eh_proj')).toEqual([{ key: 'blk.2.nextn.eh_proj.weight', rows: undefined }]);
    expect(where(base, 'model.layers.2.shared_head.head')).toEqual([{ key: 'blk.2.nextn.shared_head_head.weight', rows: undefined }]);
    expect(where(base, 'model.layers.2.embed_tokens')).toEqual([{ key: 'blk.2.nextn.embed_tokens.weight', rows: undefined }]);
    // The indexer's k_norm is a LayerNorm; a layer without an indexer has no tensor for it.
    expect(where(base, 'model.layers.0.self_attn.indexer.k_norm')).toMatch(/no matching tensor/);
    expect(where(ggufBase(arch, { 'blk.0.attn_q_a.weight': [Q_RANK, 32] }), 'model.layers.0.self_attn.indexer.wk')).toMatch(/no matching tensor/);
  });

  it('maps the kept nextn layer of GLM-4.5 (glm4moe) and GLM-OCR (glm4), and refuses nextn modules on deepseek2, whose converter drops them', () => {
    const glm = ggufBase('glm4moe', { 'blk.1.attn_q.weight': [64, 32], 'blk.1.nextn.eh_proj.weight': [32, 64], 'blk.1.nextn.shared_head_head.weight': [100, 32] }, { 'glm4moe.block_count': 2, 'glm4moe.nextn_predict_layers': 1 });
    expect(where(glm, 'model.layers.1.self_attn.q_proj')).toEqual([{ key: 'blk.1.attn_q.weight', rows: undefined }]);
    expect(where(glm, 'model.layers.1.eh_proj')).toEqual([{ key: 'blk.1.nextn.eh_proj.weight', rows: undefined }]);
    expect(where(glm, 'model.layers.1.shared_head.head')).toEqual([{ key: 'blk.1.nextn.shared_head_head.weight', rows: undefined }]);
    // GLM-OCR (written as glm4) keeps its nextn layer too; its language model is nested.
    const ocr = ggufBase('glm4', { 'blk.16.attn_q.weight': [64, 32], 'blk.16.nextn.eh_proj.weight': [32, 64] }, { 'glm4.block_count': 17, 'glm4.nextn_predict_layers': 1 });
    expect(where(ocr, 'model.language_model.layers.16.eh_proj')).toEqual([{ key: 'blk.16.nextn.eh_proj.weight', rows: undefined }]);
    expect(where(ocr, 'model.language_model.layers.16.self_attn.q_proj')).toEqual([{ key: 'blk.16.attn_q.weight', rows: undefined }]);
    const ds = ggufBase('deepseek2', { 'blk.0.attn_q_a.weight': [12, 32] }, { 'deepseek2.block_count': 1 });
    expect(where(ds, 'model.layers.1.eh_proj')).toMatch(/multi-token-prediction \(nextn\) layer.*DeepseekV2Model, skip_mtp/);
    expect(where(ds, 'model.layers.1.self_attn.q_a_proj')).toMatch(/names block 1, but the base has 1 \(deepseek2.block_count\)/);
    // Within the file's blocks a missing tensor is a plain miss.
    expect(where(ds, 'model.layers.0.self_attn.q_b_proj')).toMatch(/no matching tensor/);
  });

  it('maps DeepSeek-OCR\'s language model (deepseek2-ocr): q, k, v as they are, MoE as deepseek2; refuses its SAM, CLIP and projector', () => {
    const base = ggufBase('deepseek2-ocr', {
      'blk.0.attn_q.weight': [64, 32], 'blk.0.attn_k.weight': [64, 32], 'blk.0.attn_v.weight': [64, 32], 'blk.0.attn_output.weight': [32, 64],
      'blk.1.ffn_gate_inp.weight': [8, 32], 'blk.1.ffn_down_exps.weight': [8 * 32, 16], 'blk.1.ffn_up_shexp.weight': [16, 32],
    }, { 'deepseek2-ocr.attention.head_count': 8, 'deepseek2-ocr.attention.head_count_kv': 8, 'deepseek2-ocr.expert_count': 8 });
    for (const [m, t] of [['q_proj', 'attn_q'], ['k_proj', 'attn_k'], ['v_proj', 'attn_v'], ['o_proj', 'attn_output']]) {
      expect(where(base, `model.layers.0.self_attn.${m}`)).toEqual([{ key: `blk.0.${t}.weight`, rows: undefined }]);
    }
    expect(where(base, 'model.layers.1.mlp.gate')).toEqual([{ key: 'blk.1.ffn_gate_inp.weight', rows: undefined }]);
    expect(base.locate(moduleAddress('base_model.model.model.layers.1.mlp.experts.2.down_proj')))
      .toMatchObject({ found: true, targets: [{ baseKey: 'blk.1.ffn_down_exps.weight', rows: [{ src: 0, dst: 64, count: 32 }] }] });
    expect(where(base, 'model.layers.1.mlp.shared_experts.up_proj')).toEqual([{ key: 'blk.1.ffn_up_shexp.weight', rows: undefined }]);
    for (const m of ['model.sam_model.blocks.0.attn.qkv', 'model.vision_model.transformer.layers.0.self_attn.qkv_proj', 'model.projector.layers']) {
      expect(where(base, m), m).toMatch(/separate mmproj GGUF/);
    }
  });

  it.for(['gemma3n', 'gemma4'])('maps %s\'s per-layer inputs: each block\'s per_layer_input_gate and per_layer_projection, the model\'s per_layer_model_projection', (arch) => {
    const base = ggufBase(arch, { 'blk.3.inp_gate.weight': [8, 32], 'blk.3.proj.weight': [32, 8], 'per_layer_model_proj.weight': [4 * 8, 32] });
    for (const prefix of ['model.language_model.', 'model.']) {
      expect(where(base, `${prefix}layers.3.per_layer_input_gate`)).toEqual([{ key: 'blk.3.inp_gate.weight', rows: undefined }]);
      expect(where(base, `${prefix}layers.3.per_layer_projection`)).toEqual([{ key: 'blk.3.proj.weight', rows: undefined }]);
      expect(where(base, `${prefix}per_layer_model_projection`)).toEqual([{ key: 'per_layer_model_proj.weight', rows: undefined }]);
    }
  });

  it('maps Gemma 3n\'s AltUp and LAuReL: per-block router, coefficients and LAuReL by name, the stacked altup projections on their rows', () => {
    const HIDDEN = 32;
    const base = ggufBase('gemma3n', {
      'blk.0.altup_router.weight': [4, HIDDEN], 'blk.0.altup_predict_coef.weight': [16, 4], 'blk.0.altup_correct_coef.weight': [4, 4],
      'blk.0.laurel_l.weight': [8, HIDDEN], 'blk.0.laurel_r.weight': [HIDDEN, 8],
      'altup_proj.weight': [3 * HIDDEN, HIDDEN], 'altup_unembd_proj.weight': [3 * HIDDEN, HIDDEN],
    }, { 'gemma3n.block_count': 1, 'gemma3n.altup.num_inputs': 4 });
    for (const [m, t] of [['altup.modality_router', 'altup_router'], ['altup.prediction_coefs', 'altup_predict_coef'], ['altup.correction_coefs', 'altup_correct_coef'], ['laurel.linear_left', 'laurel_l'], ['laurel.linear_right', 'laurel_r']]) {
      expect(where(base, `model.language_model.layers.0.${m}`), m).toEqual([{ key: `blk.0.${t}.weight`, rows: undefined }]);
    }
    for (const [m, t] of [['altup_projections', 'altup_proj'], ['altup_unembed_projections', 'altup_unembd_proj']]) {
      expect(base.locate(moduleAddress(`base_model.model.model.language_model.${m}.2`)), m)
        .toMatchObject({ found: true, targets: [{ baseKey: `${t}.weight`, rows: [{ src: 0, dst: 2 * HIDDEN, count: HIDDEN }] }] });
      expect(where(base, `model.language_model.${m}.3`), m).toBe(`names matrix 3, but ${t}.weight stacks 3`);
    }
  });

  it('maps Gemma 4\'s per-layer token embedding, which its converter writes as it is, and refuses Gemma 3n\'s, which its converter pads', () => {
    const shapes = { 'per_layer_token_embd.weight': [262144, 4 * 8] };
    expect(where(ggufBase('gemma4', shapes), 'model.language_model.embed_tokens_per_layer')).toEqual([{ key: 'per_layer_token_embd.weight', rows: undefined }]);
    expect(where(ggufBase('gemma3n', shapes), 'model.language_model.embed_tokens_per_layer')).toMatch(/Gemma3NModel\) pads the per-layer token embedding/);
  });

  it('names what cannot be mapped: an unknown module, a missing tensor, an architecture it does not know', () => {
    const base = ggufBase('llama', { 'blk.0.attn_q.weight': [64, 64] }, { 'llama.attention.head_count': 8 });
    expect(where(base, 'model.layers.0.self_attn.rotary_emb')).toMatch(/no matching tensor/);
    expect(where(base, 'model.layers.1.self_attn.q_proj')).toMatch(/no matching tensor/);
    const gpt2 = ggufBase('gpt2', { 'blk.0.attn_qkv.weight': [192, 64] });
    expect(where(gpt2, 'model.layers.0.self_attn.q_proj')).toMatch(/names a module of a gpt2 GGUF, an architecture whose convert_hf_to_gguf names .* are not mapped here/);
    // Head count missing: the permutation cannot be known, so q is not placed.
    const noHeads = ggufBase('llama', { 'blk.0.attn_q.weight': [64, 64] });
    expect(where(noHeads, 'model.layers.0.self_attn.q_proj')).toBe(unplaceable('the GGUF records no llama.attention.head_count'));
  });

  it('says an lm_head update on a tied model (no output.weight, as Llama 3.2 1B and Qwen2.5 0.5B convert) would change the token embedding too', () => {
    const tied = ggufBase('llama', { 'token_embd.weight': [32, 64], 'blk.0.attn_v.weight': [16, 64] }, { 'llama.attention.head_count': 8 });
    expect(where(tied, 'lm_head')).toMatch(/^the base has no output\.weight: its head is tied to token_embd\.weight \(convert_hf_to_gguf writes no output tensor for a model with tied embeddings\), so this update would change the token embedding too/);
    const qwen = ggufBase('qwen2', { 'token_embd.weight': [32, 64] });
    expect(where(qwen, 'lm_head')).toMatch(/the base has no output\.weight: its head is tied to token_embd\.weight/);
    // With its own head the update lands there; with neither tensor it is the plain miss.
    expect(where(ggufBase('llama', { 'token_embd.weight': [32, 64], 'output.weight': [32, 64] }), 'lm_head')).toEqual([{ key: 'output.weight', rows: undefined }]);
    expect(where(ggufBase('llama', { 'blk.0.attn_v.weight': [16, 64] }), 'lm_head')).toMatch(/no matching tensor/);
  });
});
