/**
 * Ideogram 4 LoRAs as ai-toolkit saves them (`diffusion_model.layers.0.attention.qkv.lora_A.weight`:
 * the original transformer's fused q/k/v and `attention.o`, lora_A / lora_B, no α: scale 1; or kohya's
 * `lora_down`/`lora_up` with `.alpha`, α/r) onto diffusers' Ideogram4Transformer2DModel. Where each
 * module lands is written here by hand from diffusers' `_convert_non_diffusers_ideogram4_lora_to_diffusers`:
 * `attention.qkv`'s lora_B in three equal row blocks onto `to_q`, `to_k`, `to_v` (lora_A shared),
 * `attention.o` onto `to_out.0`, `feed_forward.w1`/`w2`/`w3` and `adaln_modulation` by name.
 * Shapes are Ideogram4Transformer2DModel's with its ratios kept and sizes scaled down (hidden 4608 →
 * 16, intermediate 12288 → 24, adaln 512 → 8, LLM features 53248 → 12). File to file on the CPU and
 * on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { ideogram4 } from '../src/formats/layouts/ideogram4.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261207);
const H = 16, FF = 24, ADA = 8, LLM = 12, IN = 4;

/** The transformer's tensors: diffusers' names, or (`original`) the original checkpoint's, as OneTrainer writes it (fused `qkv`, `o`). */
function transformer(original = false): FixtureTensor[] {
  const w = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => tensor(rand, name, shape, dtype);
  const out = [
    w('input_proj.weight', [H, IN]), w('input_proj.bias', [H]), w('llm_cond_norm.weight', [LLM], 'F32'), w('llm_cond_proj.weight', [H, LLM]), w('llm_cond_proj.bias', [H]),
    w('t_embedding.mlp_in.weight', [H, H]), w('t_embedding.mlp_out.weight', [H, H]), w('adaln_proj.weight', [ADA, H]), w('adaln_proj.bias', [ADA]),
    w('embed_image_indicator.weight', [2, H]),
  ];
  for (const i of [0, 1]) {
    const L = `layers.${i}`;
    out.push(
      ...(original
        ? [w(`${L}.attention.qkv.weight`, [3 * H, H]), w(`${L}.attention.o.weight`, [H, H])]
        : ['to_q', 'to_k', 'to_v', 'to_out.0'].map((p) => w(`${L}.attention.${p}.weight`, [H, H]))),
      w(`${L}.attention.norm_q.weight`, [4], 'F32'), w(`${L}.attention.norm_k.weight`, [4], 'F32'),
      w(`${L}.feed_forward.w1.weight`, [FF, H]), w(`${L}.feed_forward.w2.weight`, [H, FF]), w(`${L}.feed_forward.w3.weight`, [FF, H]),
      ...['attention_norm1', 'ffn_norm1', 'attention_norm2', 'ffn_norm2'].map((n) => w(`${L}.${n}.weight`, [H], 'F32')),
      w(`${L}.adaln_modulation.weight`, [4 * H, ADA]), w(`${L}.adaln_modulation.bias`, [4 * H]),
    );
  }
  out.push(w('final_layer.linear.weight', [IN, H]), w('final_layer.linear.bias', [IN]), w('final_layer.adaln_modulation.weight', [H, ADA]), w('final_layer.adaln_modulation.bias', [H]));
  return out;
}

const folder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
  'config.json': JSON.stringify({ _class_name: 'Ideogram4Transformer2DModel', _diffusers_version: '0.38.0.dev0', in_channels: IN, num_layers: 2, attention_head_dim: 4, num_attention_heads: 4, intermediate_size: FF, adaln_dim: ADA, llm_features_dim: LLM }),
};
/**
 * The original checkpoint as OneTrainer's ORIGINAL_TRANSFORMER output writes it (IdeogramModel's
 * checkpoint_diffusers_to_original: q, k, v fused into `attention.qkv` in that order, `to_out.0` → `o`,
 * every other name diffusers'), bare.
 */
const ORIGINAL = 'ideogram4_transformer.safetensors';
const original = { [ORIGINAL]: buildSafetensors(transformer(true)) };
/** A diffusers-named module's ΔW onto rows [n·H, (n+1)·H) of the original's fused qkv. */
const qkvRows = (layer: string, n: number) => [{ key: `${layer}.attention.qkv.weight`, rows: [{ src: 0, dst: n * H, count: H }] }];
/** diffusers' trainers (and OneTrainer's DIFFUSERS form): r 4, α 8 in lora_adapter_metadata. */
const DIFFUSERS_META = { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }) };
/** q, k, v: rows [0, H), [H, 2H), [2H, 3H) of the fused ΔW, each onto its own tensor's rows [0, H). */
const thirds = (layer: string) => ['to_q', 'to_k', 'to_v'].map((p, n) => ({ key: `${layer}.attention.${p}.weight`, rows: [{ src: n * H, dst: 0, count: H }] }));

const CASES: LoraCase[] = [
  {
    name: 'diffusers Ideogram4Transformer2DModel ← ai-toolkit\'s LoRA (diffusion_model., fused attention.qkv, attention.o)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ideogram4-lora.safetensors', weight: 0.9, specs: [
        peftSpec('diffusion_model.layers.0.attention.qkv', 2, 3 * H, H, thirds('layers.0'), 1),
        peftSpec('diffusion_model.layers.1.attention.qkv', 2, 3 * H, H, thirds('layers.1'), 1),
        peftSpec('diffusion_model.layers.1.attention.o', 2, H, H, [{ key: 'layers.1.attention.to_out.0.weight' }], 1),
        peftSpec('diffusion_model.layers.0.feed_forward.w1', 2, FF, H, [{ key: 'layers.0.feed_forward.w1.weight' }], 1),
        peftSpec('diffusion_model.layers.0.adaln_modulation', 2, 4 * H, ADA, [{ key: 'layers.0.adaln_modulation.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers Ideogram4Transformer2DModel ← the same names in kohya\'s form (lora_down/lora_up, .alpha folded as α/r)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ideogram4-kohya.safetensors', weight: -0.5, specs: [
        kohyaSpec('diffusion_model.layers.1.attention.qkv', 4, 3 * H, H, thirds('layers.1'), 8),
        kohyaSpec('diffusion_model.layers.0.attention.o', 4, H, H, [{ key: 'layers.0.attention.to_out.0.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers Ideogram4Transformer2DModel ← OneTrainer\'s KOHYA form (lora_unet_layers_N_attention_qkv: the original\'s fused names flattened, .alpha)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ideogram4-onetrainer-kohya.safetensors', weight: 1.1, metadata: { 'modelspec.sai_model_spec': '1.0.0', 'modelspec.architecture': 'Ideogram/lora', 'modelspec.implementation': 'https://github.com/huggingface/diffusers', 'modelspec.title': 'Ideogram 4 LoRA' }, specs: [
        kohyaSpec('lora_unet_layers_0_attention_qkv', 4, 3 * H, H, thirds('layers.0'), 4),
        kohyaSpec('lora_unet_layers_1_attention_o', 4, H, H, [{ key: 'layers.1.attention.to_out.0.weight' }], 4),
      ],
    }],
  },
  {
    name: 'Ideogram 4 original checkpoint ← a diffusers-named LoRA (transformer.layers.N.attention.to_q, to_k, to_v onto thirds of qkv; to_out.0 onto o)',
    base: original, baseName: ORIGINAL,
    adapters: [{
      file: 'pytorch_lora_weights.safetensors', weight: 0.7, metadata: DIFFUSERS_META, specs: [
        peftSpec('transformer.layers.0.attention.to_q', 4, H, H, qkvRows('layers.0', 0), 2),
        peftSpec('transformer.layers.0.attention.to_k', 4, H, H, qkvRows('layers.0', 1), 2),
        peftSpec('transformer.layers.1.attention.to_v', 4, H, H, qkvRows('layers.1', 2), 2),
        peftSpec('transformer.layers.1.attention.to_out.0', 4, H, H, [{ key: 'layers.1.attention.o.weight' }], 2),
        peftSpec('transformer.layers.0.feed_forward.w2', 4, H, FF, [{ key: 'layers.0.feed_forward.w2.weight' }], 2),
      ],
    }],
  },
  {
    name: 'Ideogram 4 original checkpoint ← ai-toolkit\'s LoRA (its own names: qkv and o whole)',
    base: original, baseName: ORIGINAL,
    adapters: [{
      file: 'ideogram4-lora.safetensors', weight: 1, specs: [
        peftSpec('diffusion_model.layers.0.attention.qkv', 2, 3 * H, H, [{ key: 'layers.0.attention.qkv.weight' }], 1),
        peftSpec('diffusion_model.layers.1.attention.o', 2, H, H, [{ key: 'layers.1.attention.o.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers Ideogram4Transformer2DModel and the original checkpoint ← names under conditional_transformer. (read without it, as diffusers\' converter strips it)',
    base: folder, baseName: 'transformer',
    adapters: [{
      file: 'ideogram4-conditional.safetensors', weight: 0.6, specs: [
        kohyaSpec('conditional_transformer.layers.1.attention.qkv', 4, 3 * H, H, thirds('layers.1'), 8),
        kohyaSpec('conditional_transformer.layers.0.attention.o', 4, H, H, [{ key: 'layers.0.attention.to_out.0.weight' }], 2),
        kohyaSpec('conditional_transformer.layers.0.feed_forward.w3', 4, FF, H, [{ key: 'layers.0.feed_forward.w3.weight' }], 2),
      ],
    }],
  },
  {
    name: 'Ideogram 4 original checkpoint ← names under conditional_transformer.',
    base: original, baseName: ORIGINAL,
    adapters: [{
      file: 'ideogram4-conditional.safetensors', weight: -0.8, specs: [
        kohyaSpec('conditional_transformer.layers.1.attention.qkv', 4, 3 * H, H, [{ key: 'layers.1.attention.qkv.weight' }], 8),
        kohyaSpec('conditional_transformer.layers.0.adaln_modulation', 4, 4 * H, ADA, [{ key: 'layers.0.adaln_modulation.weight' }], 2),
      ],
    }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('Ideogram 4 names', () => {
  it('the ideogram4 layout places qkv and o; without it those modules are refused', async () => {
    // On the original checkpoint its own names land by name (the conditional_transformer. ones by their tail).
    const renamed = CASES.filter((c) => c.base !== original || c.adapters.some((a) => a.file === 'pytorch_lora_weights.safetensors'));
    expect(renamed).toHaveLength(5);
    await expectLayoutNeeded(prepare, renamed, ideogram4);
  });

  it('conditional_transformer. on a whole Ideogram4Pipeline folder (which holds the unconditional transformer too) is refused, naming transformer/', async () => {
    const cfg = folder['config.json'];
    const pipeline = {
      'model_index.json': JSON.stringify({ _class_name: 'Ideogram4Pipeline', _diffusers_version: '0.38.0.dev0', transformer: ['diffusers', 'Ideogram4Transformer2DModel'], unconditional_transformer: ['diffusers', 'Ideogram4Transformer2DModel'] }),
      'transformer/config.json': cfg, 'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
      'unconditional_transformer/config.json': cfg, 'unconditional_transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer()),
    };
    const problems = await planProblemsOf(pipeline, 'pipeline', [kohyaSpec('conditional_transformer.layers.0.attention.o', 4, H, H, [], 2)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/conditional_transformer\.layers\.0\.attention\.o".*give its transformer\/ folder as the base/);
  });

  it('a qkv whose rows are not three times the width is refused as not fitting', async () => {
    const problems = await planProblemsOf(folder, 'transformer', [peftSpec('diffusion_model.layers.0.attention.qkv', 2, 2 * H, H, [], 1)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.layers\.0\.attention\.qkv": ΔW \(32, 16\) does not fit/);
  });
});
