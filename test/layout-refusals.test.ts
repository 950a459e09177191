/**
 * Refusals of the Hugging Face → GGUF layout that no other test reached: a GGUF whose metadata or
 * tensor shapes do not match what convert_hf_to_gguf writes for the module is refused (its rows
 * cannot be known), never placed on rows computed from inconsistent numbers. Each base is the few
 * tensors and metadata keys a real conversion of that architecture writes, at toy sizes. Also the
 * module locator's miss on a moved-out component, and kohya's ss_network_args read for rs_lora.
 */
import { describe, expect, it } from 'vitest';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { llamaRopePermutation } from '../src/formats/layouts/hf-to-gguf.js';
import { KohyaNetworkArgs } from '../src/formats/kohya-network-args.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { unplaceable } from './helpers/gguf-unplaceable.js';

function ggufBase(arch: string | undefined, shapes: Record<string, number[]>, meta: Record<string, unknown> = {}) {
  const metadata: Record<string, unknown> = { ...(arch ? { 'general.architecture': arch } : {}), ...meta };
  return new ModuleLocator({ tensors: new Map(Object.entries(shapes).map(([k, shape]) => [k, { shape }])), metadata: (key) => metadata[key] });
}

/** The base keys a PEFT module lands on, or the refusal text. */
const where = (locator: ModuleLocator, module: string) => {
  const r = locator.locate(moduleAddress(`base_model.model.${module}`));
  return r.found ? r.targets.map((t) => t.baseKey) : r.message;
};

const NO_TENSOR = 'no matching tensor in the base model';

describe('HF → GGUF: row layouts the metadata cannot give are refused', () => {
  it('refuses a q/k permutation whose head size is odd or not a whole number (LlamaModel.permute needs even halves)', () => {
    expect(llamaRopePermutation(24, 8)).toBeUndefined(); // head size 3
    expect(llamaRopePermutation(64, 3)).toBeUndefined(); // 64 rows in 3 heads
    const base = ggufBase('llama', { 'blk.0.attn_q.weight': [24, 32] }, { 'llama.attention.head_count': 8 });
    expect(where(base, 'model.layers.0.self_attn.q_proj'))
      .toBe(unplaceable("blk.0.attn_q.weight has 24 rows, which do not split into 8 heads (llama.attention.head_count) of an even size, as llama.cpp's RoPE row order needs"));
  });

  it('refuses fused experts (target_parameters) without the expert count, or with an odd fused gate_up per expert', () => {
    const noCount = ggufBase('qwen3moe', { 'blk.0.ffn_down_exps.weight': [8 * 64, 4] });
    expect(where(noCount, 'model.layers.0.mlp.experts.down_proj')).toBe(unplaceable('the GGUF records no qwen3moe.expert_count'));
    // --fuse-gate-up-exps writes gate then up per expert: 6 rows over 2 experts is 3 each, not two halves.
    const odd = ggufBase('gpt-oss', { 'blk.1.ffn_gate_up_exps.weight': [2 * 3, 96] }, { 'gpt-oss.expert_count': 2 });
    expect(where(odd, 'model.layers.1.mlp.experts.gate_up_proj'))
      .toBe(unplaceable('blk.1.ffn_gate_up_exps.weight holds 3 rows per expert, which do not split into a gate and an up half'));
  });

  it('refuses InternLM2\'s grouped wqkv when the heads are not a multiple of the kv heads', () => {
    // 8 heads over 3 kv groups: no whole number of q heads per group, so wqkv's rows cannot be gathered.
    const uneven = ggufBase('internlm2', { 'blk.0.attn_q.weight': [64, 64], 'blk.0.attn_k.weight': [24, 64], 'blk.0.attn_v.weight': [24, 64] },
      { 'internlm2.attention.head_count': 8, 'internlm2.attention.head_count_kv': 3 });
    expect(where(uneven, 'model.layers.0.attention.wqkv'))
      .toBe(unplaceable('8 heads (internlm2.attention.head_count) do not group evenly under 3 kv heads (internlm2.attention.head_count_kv)'));
  });

  // 8 heads of 3 rows: LlamaModel.permute cannot halve a head, whether the converter gathers q, k and
  // v from InternLM2's kv groups or splits Ling's fused query_key_value in three.
  it.each([['internlm2', 'attention.wqkv'], ['bailingmoe', 'attention.query_key_value']])('refuses %s\'s fused %s when the head size is odd', (arch, module) => {
    const base = ggufBase(arch, { 'blk.0.attn_q.weight': [24, 32], 'blk.0.attn_k.weight': [6, 32], 'blk.0.attn_v.weight': [6, 32] },
      { [`${arch}.attention.head_count`]: 8, [`${arch}.attention.head_count_kv`]: 2 });
    expect(where(base, `model.layers.0.${module}`))
      .toBe(unplaceable(`blk.0.attn_q.weight has 24 rows, which do not split into 8 heads (${arch}.attention.head_count) of an even size, as llama.cpp's RoPE row order needs`));
  });
});

describe('HF → GGUF: gated DeltaNet (Qwen3-Next, Qwen3.5) projections need the ssm metadata and matching shapes', () => {
  // 2 key heads of 4, 4 value heads of 4 (2 per key head), hidden 32, as Qwen3.5's converter records them.
  const ssm = (arch: string, nk = 2, dk = 4, nv = 4, inner = 16) => ({
    [`${arch}.ssm.group_count`]: nk, [`${arch}.ssm.state_size`]: dk, [`${arch}.ssm.time_step_rank`]: nv, [`${arch}.ssm.inner_size`]: inner,
  });
  const qwen35 = {
    'blk.0.attn_qkv.weight': [2 * 2 * 4 + 16, 32], 'blk.0.attn_gate.weight': [16, 32],
    'blk.0.ssm_alpha.weight': [4, 32], 'blk.0.ssm_beta.weight': [4, 32], 'blk.0.ssm_out.weight': [32, 16],
  };

  it('places Qwen3.5\'s projections on a consistent file (the reference the refusals below depart from)', () => {
    const base = ggufBase('qwen35', qwen35, ssm('qwen35'));
    expect(where(base, 'model.layers.0.linear_attn.in_proj_z')).toEqual(['blk.0.attn_gate.weight']);
    expect(where(base, 'model.layers.0.linear_attn.out_proj')).toEqual(['blk.0.ssm_out.weight']);
    // One value head per key head: the reorder is the identity, so the tensor is taken whole (no rows).
    const flat = ggufBase('qwen35', { 'blk.0.attn_gate.weight': [8, 32] }, ssm('qwen35', 2, 4, 2, 8));
    const r = flat.locate(moduleAddress('base_model.model.model.layers.0.linear_attn.in_proj_z'));
    expect(r.found && r.targets).toEqual([{ baseKey: 'blk.0.attn_gate.weight' }]);
  });

  it('refuses Qwen3.5\'s projections without the ssm metadata, with value heads not a multiple of key heads, or with other shapes', () => {
    expect(where(ggufBase('qwen35', qwen35), 'model.layers.0.linear_attn.in_proj_z')).toBe(unplaceable('the GGUF records no qwen35.ssm.group_count'));
    // 3 value heads over 2 key heads: the grouped → tiled reorder is not defined.
    const uneven = ggufBase('qwen35', { 'blk.0.attn_gate.weight': [12, 32] }, ssm('qwen35', 2, 4, 3, 12));
    expect(where(uneven, 'model.layers.0.linear_attn.in_proj_z'))
      .toBe(unplaceable('3 value heads (qwen35.ssm.time_step_rank) do not group evenly under 2 key heads (qwen35.ssm.group_count)'));
    const base = ggufBase('qwen35', { ...qwen35, 'blk.0.attn_gate.weight': [12, 32], 'blk.0.ssm_out.weight': [32, 12] }, ssm('qwen35'));
    expect(where(base, 'model.layers.0.linear_attn.in_proj_z'))
      .toBe(unplaceable("blk.0.attn_gate.weight has 12 rows, not the 16 (one per value head) the GGUF's qwen35.ssm counts give"));
    expect(where(base, 'model.layers.0.linear_attn.out_proj'))
      .toBe(unplaceable("blk.0.ssm_out.weight has 12 columns, not the 16 of its value heads the GGUF's qwen35.ssm counts give"));
  });

  it('refuses Qwen3-Next\'s in_proj_qkvz without the ssm metadata or on attn_qkv/attn_gate of other sizes', () => {
    // nk 2, dk 4, 2 value heads of 4 per key head: attn_qkv nk·(2dk + r·dv) = 32 rows, attn_gate nk·r·dv = 16.
    const shapes = { 'blk.0.attn_qkv.weight': [32, 32], 'blk.0.attn_gate.weight': [16, 32] };
    expect(where(ggufBase('qwen3next', shapes, ssm('qwen3next')), 'model.layers.0.linear_attn.in_proj_qkvz'))
      .toEqual(['blk.0.attn_qkv.weight', 'blk.0.attn_gate.weight']);
    expect(where(ggufBase('qwen3next', shapes), 'model.layers.0.linear_attn.in_proj_qkvz')).toBe(unplaceable('the GGUF records no qwen3next.ssm.group_count'));
    const short = ggufBase('qwen3next', { ...shapes, 'blk.0.attn_gate.weight': [12, 32] }, ssm('qwen3next'));
    expect(where(short, 'model.layers.0.linear_attn.in_proj_qkvz'))
      .toBe(unplaceable("blk.0.attn_gate.weight has 12 rows, not the 16 (the gate of each value head) the GGUF's qwen3next.ssm counts give"));
  });

  it('places mtp.fc only on the MTP blocks\' nextn.eh_proj, and refuses another mtp.* module or a missing eh_proj', () => {
    const meta = { 'qwen35.block_count': 2, 'qwen35.nextn_predict_layers': 1 };
    const base = ggufBase('qwen35', { 'blk.1.nextn.eh_proj.weight': [32, 64], 'blk.1.nextn.enorm.weight': [32] }, meta);
    expect(where(base, 'mtp.fc')).toEqual(['blk.1.nextn.eh_proj.weight']);
    expect(where(base, 'mtp.norm')).toBe(NO_TENSOR);
    const noEh = ggufBase('qwen35', { 'blk.1.nextn.enorm.weight': [32] }, meta);
    expect(where(noEh, 'mtp.fc')).toBe(NO_TENSOR);
  });
});

describe('HF → GGUF: only GGUF bases and Hugging Face names', () => {
  it('takes a GGUF tensor name saved whole as it is, and leaves a safetensors base\'s Hugging Face names to it', () => {
    const gguf = ggufBase('llama', { 'blk.0.attn_norm.weight': [32], 'token_embd.weight': [64, 32] });
    expect(gguf.resolveTensorPath('blk.0.attn_norm.weight')).toEqual({ found: true, key: 'blk.0.attn_norm.weight' });
    expect(gguf.resolveTensorPath('model.norm.weight')).toMatchObject({ found: false, why: expect.stringContaining('a GGUF base takes modules_to_save copies') });
    const hf = ggufBase(undefined, { 'model.embed_tokens.weight': [64, 32], 'model.layers.0.self_attn.q_proj.weight': [32, 32] });
    expect(hf.resolveTensorPath('model.embed_tokens.weight')).toEqual({ found: true, key: 'model.embed_tokens.weight' });
    expect(where(hf, 'model.layers.0.self_attn.q_proj')).toEqual(['model.layers.0.self_attn.q_proj.weight']);
    // A module the safetensors base lacks is a plain miss, not a GGUF architecture's refusal.
    expect(where(hf, 'model.layers.5.self_attn.q_proj')).toBe(NO_TENSOR);
  });
});

describe('module locator: a module the pipeline moved out of a component', () => {
  it('names the transformer, not LTX-2\'s text projection, when a transformer module is missing from both', () => {
    // An LTX-2 single file: the transformer under model.diffusion_model., the text projection beside it.
    const base = ggufBase(undefined, {
      'model.diffusion_model.transformer_blocks.0.attn1.to_q.weight': [64, 64],
      'text_embedding_projection.aggregate_embed.weight': [64, 192],
    });
    const r = base.locate(moduleAddress('diffusion_model.transformer_blocks.7.attn1.to_q'));
    // The moved-out component is searched too, but its plain miss does not replace the transformer's.
    expect(r.found ? r.targets : r.message).toBe('no matching tensor in the UNet/transformer (model.diffusion_model.)');
  });
});

describe('kohya network args (ss_network_args) as far as they decide a LyCORIS file\'s scale', () => {
  it('refuses ss_network_args that is JSON but not an object, in one line naming the file', () => {
    for (const text of ['null', '["rs_lora=True"]', '"rs_lora=True"']) {
      expect(() => new KohyaNetworkArgs('glora.safetensors', { ss_network_module: 'lycoris.kohya', ss_network_args: text }).lycorisRsLora(), text)
        .toThrow('glora.safetensors: metadata "ss_network_args" is not a JSON object; it may hold rs_lora, bypass_mode or split_qkv, which decide how this file applies');
    }
  });

  it('reads rs_lora "False" without ss_network_module as off, and a file without ss_network_args as having none', () => {
    // kohya writes "False" for an unset flag; with no trainer named, only "True" is in doubt.
    expect(new KohyaNetworkArgs('a.safetensors', { ss_network_args: '{"rs_lora": "False"}' }).lycorisRsLora()).toBe(false);
    const plain = new KohyaNetworkArgs('b.safetensors', { ss_network_module: 'networks.lora', ss_network_dim: '16' });
    expect(plain.lycorisRsLora()).toBe(false);
    expect(plain.recordedRanks()).toEqual([16]);
  });
});

describe('HF → GGUF: a count the row order needs names its metadata key when missing, malformed or contradicted', () => {
  it('reads per-block head counts (granitehybrid) and names a block whose entry is 0 or missing', () => {
    // Granite 4.0 H writes head_count per block, 0 for its Mamba-2 blocks.
    const shapes = { 'blk.0.attn_q.weight': [32, 32], 'blk.0.attn_k.weight': [16, 32], 'blk.1.attn_q.weight': [32, 32], 'blk.2.attn_q.weight': [32, 32] };
    const base = ggufBase('granitehybrid', shapes, { 'granitehybrid.attention.head_count': [4, 0], 'granitehybrid.attention.head_count_kv': [2, 0] });
    expect(where(base, 'model.layers.0.self_attn.q_proj')).toEqual(['blk.0.attn_q.weight']);
    expect(where(base, 'model.layers.1.self_attn.q_proj')).toBe(unplaceable("the GGUF's granitehybrid.attention.head_count gives block 1 0"));
    expect(where(base, 'model.layers.2.self_attn.q_proj')).toBe(unplaceable("the GGUF's granitehybrid.attention.head_count has 2 per-block entries, none for block 2"));
  });

  it('names a head count that is not a positive integer, and permutes k by head_count_kv alone when only that is recorded', () => {
    const shapes = { 'blk.0.attn_q.weight': [32, 32], 'blk.0.attn_k.weight': [16, 32] };
    const edited = ggufBase('llama', shapes, { 'llama.attention.head_count': '4', 'llama.attention.head_count_kv': 2 });
    expect(where(edited, 'model.layers.0.self_attn.q_proj')).toBe(unplaceable('the GGUF\'s llama.attention.head_count is "4", not a positive count'));
    // k's order depends on the kv heads only: 2 heads of 8 rows.
    const k = edited.locate(moduleAddress('base_model.model.model.layers.0.self_attn.k_proj'));
    expect(k.found && k.targets[0].rows?.slice(0, 4)).toEqual(llamaRopePermutation(16, 2)!.slice(0, 4));
    const oddKv = ggufBase('llama', shapes, { 'llama.attention.head_count': 4, 'llama.attention.head_count_kv': 3 });
    expect(where(oddKv, 'model.layers.0.self_attn.k_proj'))
      .toBe(unplaceable("blk.0.attn_k.weight has 16 rows, which do not split into 3 heads (llama.attention.head_count_kv) of an even size, as llama.cpp's RoPE row order needs"));
  });

  it('names the expert count when the stacked experts\' rows do not split among them, and GroveMoE\'s experts_per_group', () => {
    const mixtral = ggufBase('llama', { 'blk.0.ffn_gate_exps.weight': [8 * 12 + 4, 32] }, { 'llama.expert_count': 8 });
    expect(where(mixtral, 'model.layers.0.block_sparse_moe.experts.1.w1'))
      .toBe(unplaceable('blk.0.ffn_gate_exps.weight has 100 rows, which do not split among 8 experts (llama.expert_count)'));
    // GroveMoE: 8 routed experts in groups of 2 give 4 chunk experts, stacked in ffn_*_chexps.
    const grove = (meta: Record<string, unknown>) => ggufBase('grovemoe', { 'blk.0.ffn_up_chexps.weight': [4 * 16, 32] }, meta);
    const placed = grove({ 'grovemoe.expert_count': 8, 'grovemoe.experts_per_group': 2 }).locate(moduleAddress('base_model.model.model.layers.0.mlp.chunk_experts.3.up_proj'));
    expect(placed).toMatchObject({ found: true, targets: [{ baseKey: 'blk.0.ffn_up_chexps.weight', rows: [{ src: 0, dst: 48, count: 16 }] }] });
    expect(where(grove({ 'grovemoe.expert_count': 8 }), 'model.layers.0.mlp.chunk_experts.0.up_proj')).toBe(unplaceable('the GGUF records no grovemoe.experts_per_group'));
    expect(where(grove({ 'grovemoe.expert_count': 8, 'grovemoe.experts_per_group': 3 }), 'model.layers.0.mlp.chunk_experts.0.up_proj'))
      .toBe(unplaceable('8 routed experts (grovemoe.expert_count) do not split into groups of 3 (grovemoe.experts_per_group)'));
    expect(where(grove({ 'grovemoe.expert_count': 8, 'grovemoe.experts_per_group': 2 }), 'model.layers.0.mlp.chunk_experts.4.up_proj'))
      .toBe('names expert 4, but blk.0.ffn_up_chexps.weight holds 4 (grovemoe.expert_count over experts_per_group)');
  });

  it('names DeepSeek\'s head count when attn_k_b and attn_v_b do not split into its heads', () => {
    // 4 heads, kv_lora_rank 16, nope 8, v 8: attn_k_b (4·16, 8), attn_v_b (4·8, 16); here attn_k_b holds 3 heads.
    const base = ggufBase('deepseek2', { 'blk.0.attn_k_b.weight': [3 * 16, 8], 'blk.0.attn_v_b.weight': [4 * 8, 16] },
      { 'deepseek2.attention.head_count': 4, 'deepseek2.attention.kv_lora_rank': 16 });
    expect(where(base, 'model.layers.0.self_attn.kv_b_proj'))
      .toBe(unplaceable('blk.0.attn_k_b.weight (48 rows) and blk.0.attn_v_b.weight (32 rows) do not split into 4 heads (deepseek2.attention.head_count) of rank 16'));
    // An edited file whose attn_v_b lost its columns has no rank to split by.
    const flat = ggufBase('deepseek2', { 'blk.0.attn_k_b.weight': [4 * 16, 8], 'blk.0.attn_v_b.weight': [4 * 8 * 16] },
      { 'deepseek2.attention.head_count': 4 });
    expect(where(flat, 'model.layers.0.self_attn.kv_b_proj')).toBe(unplaceable('blk.0.attn_v_b.weight (512) is not a matrix'));
  });

  it('names the ssm inner size when it does not split among the value heads, and an AltUp stack that is not square', () => {
    const qwen35 = ggufBase('qwen35', { 'blk.0.attn_gate.weight': [16, 32] }, {
      'qwen35.ssm.group_count': 2, 'qwen35.ssm.state_size': 4, 'qwen35.ssm.time_step_rank': 4, 'qwen35.ssm.inner_size': 18,
    });
    expect(where(qwen35, 'model.layers.0.linear_attn.in_proj_z'))
      .toBe(unplaceable('18 value rows (qwen35.ssm.inner_size) do not split among 4 value heads (qwen35.ssm.time_step_rank)'));
    const gemma3n = ggufBase('gemma3n', { 'altup_proj.weight': [3 * 32 + 8, 32] });
    expect(where(gemma3n, 'model.language_model.altup_projections.0')).toBe(unplaceable('altup_proj.weight (104 × 32) is not a stack of square matrices'));
  });
});
