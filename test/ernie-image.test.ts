/**
 * ERNIE-Image LoRAs onto diffusers' ErnieImageTransformer2DModel. It has one naming: diffusers'
 * ErnieImageLoraLoaderMixin only swaps the prefix (`base_model.model.` and ai-toolkit's
 * `diffusion_model.` become `transformer.`), the paths under it being the model's own
 * (`layers.N.self_attention.to_q`, `mlp.gate_proj`), so every module lands by name. Shapes are
 * ErnieImageTransformer2DModel's with small dims (hidden 3072 → 16, ffn 8192 → 24, text 2560 → 12,
 * in/out channels 128 → 8, patch 1). File to file on the CPU and on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { DIFFUSERS_LORA_METADATA, kohyaSpec, peftSpec, tensor } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261209);
const H = 16, FF = 24, TXT = 12, C = 8, HD = 4;

function transformer(): FixtureTensor[] {
  const w = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => tensor(rand, name, shape, dtype);
  const out = [
    w('x_embedder.proj.weight', [H, C, 1, 1]), w('x_embedder.proj.bias', [H]), w('text_proj.weight', [H, TXT]),
    w('time_embedding.linear_1.weight', [H, H]), w('time_embedding.linear_1.bias', [H]), w('time_embedding.linear_2.weight', [H, H]), w('time_embedding.linear_2.bias', [H]),
    w('adaLN_modulation.1.weight', [6 * H, H]), w('adaLN_modulation.1.bias', [6 * H]),
  ];
  for (const i of [0, 1]) {
    const L = `layers.${i}`;
    out.push(
      w(`${L}.adaLN_sa_ln.weight`, [H], 'F32'),
      ...['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => w(`${L}.self_attention.${p}.weight`, [H, H])),
      w(`${L}.self_attention.norm_q.weight`, [HD], 'F32'), w(`${L}.self_attention.norm_k.weight`, [HD], 'F32'),
      w(`${L}.adaLN_mlp_ln.weight`, [H], 'F32'),
      w(`${L}.mlp.gate_proj.weight`, [FF, H]), w(`${L}.mlp.up_proj.weight`, [FF, H]), w(`${L}.mlp.linear_fc2.weight`, [H, FF]),
    );
  }
  out.push(w('final_norm.linear.weight', [2 * H, H]), w('final_norm.linear.bias', [2 * H]), w('final_linear.weight', [C, H]), w('final_linear.bias', [C]));
  return out;
}

const folder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
  'config.json': JSON.stringify({
    _class_name: 'ErnieImageTransformer2DModel', _diffusers_version: '0.38.0.dev0', hidden_size: H, num_attention_heads: H / HD, num_layers: 2,
    ffn_hidden_size: FF, in_channels: C, out_channels: C, patch_size: 1, text_in_dim: TXT, rope_theta: 256, rope_axes_dim: [2, 1, 1], eps: 1e-6, qk_layernorm: true,
  }),
};

const CASES: LoraCase[] = [
  {
    name: 'diffusers ErnieImageTransformer2DModel ← a diffusers LoRA (transformer. names, α in lora_adapter_metadata)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'pytorch_lora_weights.safetensors', weight: 0.8, metadata: DIFFUSERS_LORA_METADATA, specs: [
        peftSpec('transformer.layers.0.self_attention.to_q', 4, H, H, [{ key: 'layers.0.self_attention.to_q.weight' }], 2),
        peftSpec('transformer.layers.1.self_attention.to_out.0', 4, H, H, [{ key: 'layers.1.self_attention.to_out.0.weight' }], 2),
        peftSpec('transformer.layers.1.mlp.linear_fc2', 4, H, FF, [{ key: 'layers.1.mlp.linear_fc2.weight' }], 2),
        peftSpec('transformer.adaLN_modulation.1', 4, 6 * H, H, [{ key: 'adaLN_modulation.1.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers ErnieImageTransformer2DModel ← ai-toolkit\'s LoRA (diffusion_model. + the same paths, no α: scale 1)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ernie-image-aitk.safetensors', weight: 1, specs: [
        peftSpec('diffusion_model.layers.0.self_attention.to_v', 2, H, H, [{ key: 'layers.0.self_attention.to_v.weight' }], 1),
        peftSpec('diffusion_model.layers.0.mlp.gate_proj', 2, FF, H, [{ key: 'layers.0.mlp.gate_proj.weight' }], 1),
        peftSpec('diffusion_model.layers.1.mlp.up_proj', 2, FF, H, [{ key: 'layers.1.mlp.up_proj.weight' }], 1),
        peftSpec('diffusion_model.final_linear', 2, C, H, [{ key: 'final_linear.weight' }], 1),
        peftSpec('diffusion_model.text_proj', 2, H, TXT, [{ key: 'text_proj.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers ErnieImageTransformer2DModel ← kohya-form names (lora_unet_layers_N_self_attention_to_k, .alpha)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ernie-image-kohya.safetensors', weight: -0.7, specs: [
        kohyaSpec('lora_unet_layers_1_self_attention_to_k', 4, H, H, [{ key: 'layers.1.self_attention.to_k.weight' }], 8),
        kohyaSpec('lora_unet_layers_0_mlp_linear_fc2', 4, H, FF, [{ key: 'layers.0.mlp.linear_fc2.weight' }], 2),
        kohyaSpec('lora_unet_time_embedding_linear_1', 4, H, H, [{ key: 'time_embedding.linear_1.weight' }], 4),
      ],
    }],
  },
  {
    name: 'diffusers ErnieImageTransformer2DModel ← a PEFT folder (base_model.model. names, which diffusers reads as transformer.; r 2, lora_alpha 4 in adapter_config.json)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'adapter_model.safetensors', weight: 0.5,
      folder: { name: 'ernie-image-lora', config: JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['to_q', 'linear'], use_dora: false, use_rslora: false }) },
      specs: [
        peftSpec('base_model.model.layers.1.self_attention.to_q', 2, H, H, [{ key: 'layers.1.self_attention.to_q.weight' }], 2),
        peftSpec('base_model.model.final_norm.linear', 2, 2 * H, H, [{ key: 'final_norm.linear.weight' }], 2),
      ],
    }],
  },
];

loraCaseSuite(CASES, rand, 'BF16');

describe('ERNIE-Image names', () => {
  it('a module the model lacks (a Wan-style self_attn.q) is refused in one line, not skipped', async () => {
    const problems = await planProblemsOf(folder, 'transformer', [peftSpec('diffusion_model.layers.0.self_attn.q', 2, H, H, [], 1)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/layers\.0\.self_attn\.q/);
  });
});
