/**
 * A PEFT LoRA on Nemotron-H's fused expert parameters (`target_parameters` on
 * `mixer.experts.up_proj` and `mixer.experts.down_proj`), merged into the `nemotron_h_moe` GGUF
 * llama.cpp's converter makes of the model. transformers 5's NemotronHExperts has no gate: it
 * registers up_proj (E, ffn, in) and then down_proj (E, in, ffn), each expert (out, in), where `in`
 * is the hidden size or, in Nemotron 3 Super's latent MoE, moe_latent_size. PEFT (0.19.1 on) wraps
 * the first-registered parameter innermost (`mixer.experts.base_layer`: up_proj) and adds B_e·A_e to
 * expert e, A (r·E, in) grouped by expert, B (out, r·E) with expert e's column k at k·E + e.
 * NemotronHModel stacks the checkpoint's per-expert up and down weights into ffn_up_exps and
 * ffn_down_exps, each expert (out, in), experts as rows. Checked against float64 truth written here.
 */
import { describe, it } from 'vitest';
import { buildSafetensors } from './helpers/fixtures.js';
import type { MetaValue } from './helpers/gguf-builder.js';
import { cellBaseGguf, expectCellsMerged, expert, gaussian, type CellCase } from './helpers/gguf-cell-truth.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

const HIDDEN = 32, LATENT = 16, EXPERTS = 4, EXPERT_FFN = 24, SHARED = 16, VOCAB = 16, R = 2, ALPHA = 6, WEIGHT = 0.6;
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

/** One latent MoE block (Nemotron 3 Super's "E" layer) as NemotronHModel writes it, converted with --no-mtp. */
const SUPER: CellCase = {
  arch: 'nemotron_h_moe', hfModel: 'nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16', rank: R, alpha: ALPHA, targets: [],
  tensors: [
    ['token_embd.weight', [HIDDEN, VOCAB]],
    ['blk.0.attn_norm.weight', [HIDDEN]], ['blk.0.ffn_gate_inp.weight', [HIDDEN, EXPERTS], 'F32'], ['blk.0.exp_probs_b.bias', [EXPERTS]],
    ['blk.0.ffn_latent_down.weight', [HIDDEN, LATENT]], ['blk.0.ffn_up_exps.weight', [LATENT, EXPERT_FFN, EXPERTS]],
    ['blk.0.ffn_down_exps.weight', [EXPERT_FFN, LATENT, EXPERTS]], ['blk.0.ffn_latent_up.weight', [LATENT, HIDDEN]],
    ['blk.0.ffn_up_shexp.weight', [HIDDEN, SHARED]], ['blk.0.ffn_down_shexp.weight', [SHARED, HIDDEN]],
    ['output_norm.weight', [HIDDEN]], ['output.weight', [HIDDEN, VOCAB]],
  ],
  metadata: [
    ['nemotron_h_moe.block_count', u32(1)], ['nemotron_h_moe.context_length', u32(4096)], ['nemotron_h_moe.embedding_length', u32(HIDDEN)],
    ['nemotron_h_moe.feed_forward_length', { type: 'array', itemType: 'u32', value: [EXPERT_FFN] }],
    ['nemotron_h_moe.attention.head_count', u32(4)], ['nemotron_h_moe.attention.head_count_kv', { type: 'array', itemType: 'u32', value: [0] }],
    ['nemotron_h_moe.expert_count', u32(EXPERTS)], ['nemotron_h_moe.expert_used_count', u32(2)],
    ['nemotron_h_moe.expert_feed_forward_length', u32(EXPERT_FFN)], ['nemotron_h_moe.expert_shared_feed_forward_length', u32(SHARED)],
    ['nemotron_h_moe.expert_shared_count', u32(1)], ['nemotron_h_moe.expert_group_count', u32(1)],
    ['nemotron_h_moe.moe_latent_size', u32(LATENT)],
  ],
};

/**
 * up_proj and down_proj LoRAs as PEFT saves them under `path` (transformers 5's `model.layers` or
 * the checkpoint's `backbone.layers`), and each expert's factors as a module of its own, landing on
 * its rows of the stacked tensor.
 */
function expertLora(path: string) {
  const g = gaussian(41);
  const factor = (n: number) => Float64Array.from({ length: n }, () => Math.fround(0.05 * g()));
  const parts = [
    { saved: `base_model.model.${path}.base_layer`, tensor: 'blk.0.ffn_up_exps.weight', out: EXPERT_FFN, in: LATENT },
    { saved: `base_model.model.${path}`, tensor: 'blk.0.ffn_down_exps.weight', out: LATENT, in: EXPERT_FFN },
  ].map((p) => ({ ...p, a: factor(R * EXPERTS * p.in), b: factor(p.out * R * EXPERTS) }));
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: SUPER.hfModel, r: R, lora_alpha: ALPHA,
      target_modules: [], target_parameters: ['mixer.experts.up_proj', 'mixer.experts.down_proj'], peft_version: '0.19.1',
    }),
    'adapter_model.safetensors': buildSafetensors(parts.flatMap((p) => [
      { name: `${p.saved}.lora_A.weight`, dtype: 'F32', shape: [R * EXPERTS, p.in], data: p.a },
      { name: `${p.saved}.lora_B.weight`, dtype: 'F32', shape: [p.out, R * EXPERTS], data: p.b },
    ])),
  };
  // Expert e: A_e is rows e·R…(e+1)·R of A; B_e's column k is B's column k·E + e.
  const factors = parts.flatMap((p) => Array.from({ length: EXPERTS }, (_, e) => ({
    module: `${path}.${p.saved.endsWith('base_layer') ? 'up_proj' : 'down_proj'}[${e}]`, out: p.out, in: p.in,
    lands: expert(p.tensor, e, p.out),
    a: p.a.slice(e * R * p.in, (e + 1) * R * p.in),
    b: Float64Array.from({ length: p.out * R }, (_, i) => p.b[Math.floor(i / R) * R * EXPERTS + (i % R) * EXPERTS + e]),
  })));
  return { files, factors };
}

describe.each(['model.layers.0.mixer.experts', 'backbone.layers.0.mixer.experts'])('PEFT target_parameters on %s of a nemotron_h_moe GGUF', (path) => {
  const base = cellBaseGguf(SUPER, []);
  const lora = expertLora(path);

  it.for(['cpu', 'webgpu'])('lands each expert\'s up_proj on its rows of ffn_up_exps and down_proj on ffn_down_exps, as float64 truth says, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes } = await mergeFileInMemory({
      backend, base: { 'nemotron_h_moe-tiny-BF16.gguf': base.bytes }, adapters: [{ files: lora.files, name: 'nemotron-expert-lora', weight: WEIGHT }],
      outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 2048,
    });
    expectCellsMerged(bytes, base, lora.factors, R, WEIGHT * ALPHA / R);
  });
});
