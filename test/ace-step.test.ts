/**
 * ACE-Step 1.5 LoRAs as its own trainer saves them (a PEFT folder: adapter_config.json and
 * `base_model.model.layers.0.self_attn.q_proj.lora_A.weight` in the original DiT decoder's names) onto
 * diffusers' AceStepTransformer1DModel. Where each module lands is written here by hand from diffusers'
 * `_convert_non_diffusers_ace_step_lora_to_diffusers`: `q_proj`/`k_proj`/`v_proj`/`o_proj` of each
 * layer's `self_attn` and `cross_attn` onto `to_q`/`to_k`/`to_v`/`to_out.0`, the MLP by name; scale
 * lora_alpha / r from the config, as PEFT applies it. Shapes are AceStepTransformer1DModel's with its
 * ratios kept and sizes scaled down (grouped key/value heads: k and v half of q's rows). File to file on
 * the CPU and on WebGPU, against float64 truth. ai-toolkit's lone `base_model.model.` file (no config) merges
 * at α = r, as diffusers' AceStepLoraLoaderMixin reads it.
 */
import { describe, expect, it } from 'vitest';
import { aceStep } from '../src/formats/layouts/ace-step.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261207);
const H = 16, KV = 8, FF = 24, ENC = 12, IN = 4;

function transformer(): FixtureTensor[] {
  const w = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => tensor(rand, name, shape, dtype);
  const out = [w('proj_in_conv.weight', [H, IN, 2]), w('proj_in_conv.bias', [H]), w('condition_embedder.weight', [H, ENC]), w('condition_embedder.bias', [H]), w('norm_out.weight', [H], 'F32')];
  for (const i of [0, 1]) {
    const L = `layers.${i}`;
    for (const attn of ['self_attn', 'cross_attn']) {
      out.push(w(`${L}.${attn}.to_q.weight`, [H, H]), w(`${L}.${attn}.to_k.weight`, [KV, H]), w(`${L}.${attn}.to_v.weight`, [KV, H]), w(`${L}.${attn}.to_out.0.weight`, [H, H]),
        w(`${L}.${attn}.norm_q.weight`, [4], 'F32'), w(`${L}.${attn}.norm_k.weight`, [4], 'F32'));
    }
    out.push(w(`${L}.mlp.gate_proj.weight`, [FF, H]), w(`${L}.mlp.up_proj.weight`, [FF, H]), w(`${L}.mlp.down_proj.weight`, [H, FF]), w(`${L}.scale_shift_table`, [1, 6, H], 'F32'));
  }
  return out;
}

const folder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
  'config.json': JSON.stringify({ _class_name: 'AceStepTransformer1DModel', _diffusers_version: '0.38.0.dev0', hidden_size: H, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4, intermediate_size: FF, num_hidden_layers: 2, encoder_hidden_size: ENC }),
};

const R = 4, ALPHA = 8;
const module = (path: string, out: number, inF: number, lands: string): LoraSpec => peftSpec(`base_model.model.${path}`, R, out, inF, [{ key: `${lands}.weight` }], ALPHA / R);
const SPECS: LoraSpec[] = [
  ...[0, 1].flatMap((i) => ['self_attn', 'cross_attn'].flatMap((a) => [
    module(`layers.${i}.${a}.q_proj`, H, H, `layers.${i}.${a}.to_q`), module(`layers.${i}.${a}.k_proj`, KV, H, `layers.${i}.${a}.to_k`),
    module(`layers.${i}.${a}.v_proj`, KV, H, `layers.${i}.${a}.to_v`), module(`layers.${i}.${a}.o_proj`, H, H, `layers.${i}.${a}.to_out.0`),
  ])),
  module('layers.1.mlp.gate_proj', FF, H, 'layers.1.mlp.gate_proj'),
];
const config = JSON.stringify({
  peft_type: 'LORA', r: R, lora_alpha: ALPHA, lora_dropout: 0, bias: 'none', use_rslora: false, use_dora: false, task_type: null,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj'], base_model_name_or_path: null,
});

/** ai-toolkit's lone file: the same names, no adapter_config.json, mixed ranks; diffusers reads each module at α = its rank (scale 1). */
const LONE: LoraSpec[] = [
  peftSpec('base_model.model.layers.0.cross_attn.q_proj', 4, H, H, [{ key: 'layers.0.cross_attn.to_q.weight' }], 1),
  peftSpec('base_model.model.layers.1.cross_attn.v_proj', 2, KV, H, [{ key: 'layers.1.cross_attn.to_v.weight' }], 1),
  peftSpec('base_model.model.layers.1.self_attn.o_proj', 4, H, H, [{ key: 'layers.1.self_attn.to_out.0.weight' }], 1),
  peftSpec('base_model.model.layers.0.mlp.down_proj', 8, H, FF, [{ key: 'layers.0.mlp.down_proj.weight' }], 1),
];

const CASES: LoraCase[] = [{
  name: 'diffusers AceStepTransformer1DModel ← ACE-Step\'s PEFT LoRA folder (layers.N.self_attn.q_proj, cross_attn.o_proj, …)',
  base: folder, baseName: 'transformer',
  adapters: [{ file: 'adapter_model.safetensors', specs: SPECS, weight: 0.8, folder: { name: 'ace-step-lora', config } }],
}, {
  name: 'diffusers AceStepTransformer1DModel ← ai-toolkit\'s lone base_model.model. file (no adapter_config.json: α = r, as diffusers reads it)',
  base: folder, baseName: 'transformer',
  adapters: [{ file: 'ace-step-aitoolkit.safetensors', specs: LONE, weight: -0.7 }],
}];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('ACE-Step names', () => {
  it('the ace-step layout renames q/k/v/o_proj; without it those modules are refused', async () => {
    const prepared = await prepare(CASES[0]);
    expect(new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout))).has('ace-step')).toBe(true);
    await prepared.close();
    await withoutLayout(aceStep, async () => {
      const p = await prepare(CASES[0]);
      expect(p.plan.problems.length).toBe(16);
      await p.close();
    });
  });

  it('a lone base_model.model. file without a cross_attn module (any decoder LLM\'s PEFT save has such names) is still refused for its missing config', async () => {
    await expect(planProblemsOf(folder, 'transformer', [peftSpec('base_model.model.layers.0.self_attn.q_proj', 2, H, H, [], 1)], rand))
      .rejects.toThrow('lora.safetensors: looks like a PEFT adapter but adapter_config.json is missing (it holds r and lora_alpha)');
  });

  it('on the original checkpoint a bare layers.N name fits the DiT (decoder.) and the condition encoder (encoder.): refused as ambiguous', async () => {
    const original = { 'model.safetensors': buildSafetensors([tensor(rand, 'decoder.layers.0.self_attn.q_proj.weight', [H, H], 'BF16'), tensor(rand, 'encoder.layers.0.self_attn.q_proj.weight', [H, H], 'BF16')]) };
    expect(await planProblemsOf(original, 'model.safetensors', [peftSpec('layers.0.self_attn.q_proj', 2, H, H, [], 1)], rand)).toEqual([
      'lora.safetensors: module "layers.0.self_attn.q_proj": matches 2 base tensors (decoder.layers.0.self_attn.q_proj.weight, encoder.layers.0.self_attn.q_proj.weight)',
    ]);
  });
});
