/**
 * SkyReels-V2 and Helios, two Wan 2.1 derivatives whose diffusers LoRA loaders
 * (SkyReelsV2LoraLoaderMixin, HeliosLoraLoaderMixin) read Wan-named LoRAs through diffusers' Wan
 * converter: Wan-original names (`diffusion_model.blocks.N.self_attn.q`, musubi-tuner's
 * `lora_unet_blocks_0_self_attn_q` with `.alpha`) land on the diffusers transformers by the
 * `wan-original` layout, diffusers' own (`transformer.blocks.N.attn1.to_q`, lora_adapter_metadata α)
 * by name. Where each module lands is written here by hand from diffusers' modeling files and
 * scripts/convert_skyreelsv2_to_diffusers.py. SkyReels-V2's extra modules: `fps_embedding`
 * (Embedding(2, dim), one name in both) and `fps_projection` (Wan naming `fps_projection.0` / `.2`,
 * diffusers' FeedForward `fps_projection.net.0.proj` / `net.2`). Helios: no original checkpoint is
 * published (diffusers' folders only); its output adaLN table is `norm_out.scale_shift_table`, not a
 * top-level `scale_shift_table`, and it has the history patch embedders `patch_short` / `patch_mid` /
 * `patch_long`. Shapes are the real classes' with small dims (helpers' WAN dims). File to file on
 * the CPU and on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { wanOriginal } from '../src/formats/layouts/wan-original.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { DIFFUSERS_LORA_METADATA, kohyaSpec, peftSpec, tensor, WAN, wanDiffusersTensors, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261208);
const D = WAN.dim, F = WAN.ffn;

// ---- SkyReels-V2 (DF 1.3B-540P: inject_sample_info true, so fps_embedding / fps_projection exist)
const fpsOriginal = (): FixtureTensor[] => [
  tensor(rand, 'fps_embedding.weight', [2, D], 'BF16'),
  tensor(rand, 'fps_projection.0.weight', [D, D], 'BF16'), tensor(rand, 'fps_projection.0.bias', [D], 'F32'),
  tensor(rand, 'fps_projection.2.weight', [6 * D, D], 'BF16'), tensor(rand, 'fps_projection.2.bias', [6 * D], 'F32'),
];
const fpsDiffusers = (): FixtureTensor[] => [
  tensor(rand, 'fps_embedding.weight', [2, D], 'BF16'),
  tensor(rand, 'fps_projection.net.0.proj.weight', [D, D], 'BF16'), tensor(rand, 'fps_projection.net.0.proj.bias', [D], 'F32'),
  tensor(rand, 'fps_projection.net.2.weight', [6 * D, D], 'BF16'), tensor(rand, 'fps_projection.net.2.bias', [6 * D], 'F32'),
];
const SKY_CONFIG = JSON.stringify({
  _class_name: 'SkyReelsV2Transformer3DModel', _diffusers_version: '0.35.0.dev0', added_kv_proj_dim: WAN.img, attention_head_dim: 4, cross_attn_norm: true,
  eps: 1e-6, ffn_dim: F, freq_dim: WAN.freq, image_dim: WAN.img, in_channels: 4, inject_sample_info: true, num_attention_heads: 2, num_layers: 2,
  out_channels: 4, patch_size: [1, 2, 2], qk_norm: 'rms_norm_across_heads', text_dim: WAN.text,
});
const skyFolder = { 'diffusion_pytorch_model.safetensors': buildSafetensors([...wanDiffusersTensors(rand, 'BF16'), ...fpsDiffusers()]), 'config.json': SKY_CONFIG };
const SKY_ORIGINAL = 'SkyReels-V2-DF-1.3B-540P.safetensors';
const skyOriginal = { [SKY_ORIGINAL]: buildSafetensors([...wanOriginalTensors(rand, 'BF16'), ...fpsOriginal()]) };

// ---- Helios (HeliosTransformer3DModel: text-to-video, no image cross-attention)
const heliosTensors = (): FixtureTensor[] => [
  ...wanDiffusersTensors(rand, 'BF16').filter((t) => !/image_embedder|add_[kv]_proj|norm_added_k/.test(t.name) && t.name !== 'scale_shift_table'),
  tensor(rand, 'norm_out.scale_shift_table', [1, 2, D], 'F32'),
  tensor(rand, 'patch_embedding.weight', [D, 4, 1, 2, 2], 'BF16'),
  tensor(rand, 'patch_short.weight', [D, 4, 1, 2, 2], 'BF16'), tensor(rand, 'patch_mid.weight', [D, 4, 2, 4, 4], 'BF16'),
  tensor(rand, 'patch_long.weight', [D, 4, 4, 8, 8], 'BF16'),
];
const HELIOS_CONFIG = JSON.stringify({
  _class_name: 'HeliosTransformer3DModel', _diffusers_version: '0.37.0.dev0', added_kv_proj_dim: null, attention_head_dim: 4, cross_attn_norm: true, eps: 1e-6,
  ffn_dim: F, freq_dim: WAN.freq, guidance_cross_attn: true, has_multi_term_memory_patch: true, in_channels: 4, is_amplify_history: false,
  num_attention_heads: 2, num_layers: 2, out_channels: 4, patch_size: [1, 2, 2], qk_norm: 'rms_norm_across_heads', rope_dim: [2, 1, 1], rope_theta: 10000, text_dim: WAN.text, zero_history_timestep: true,
});
const helios = { 'diffusion_pytorch_model.safetensors': buildSafetensors(heliosTensors()), 'config.json': HELIOS_CONFIG };

const CASES: LoraCase[] = [
  {
    name: 'diffusers SkyReelsV2Transformer3DModel ← a diffusers LoRA (transformer. names, α in lora_adapter_metadata), fps_projection included',
    base: skyFolder, baseName: 'transformer',
    adapters: [{
      file: 'pytorch_lora_weights.safetensors', weight: 0.8, metadata: DIFFUSERS_LORA_METADATA, specs: [
        peftSpec('transformer.blocks.0.attn1.to_q', 4, D, D, [{ key: 'blocks.0.attn1.to_q.weight' }], 2),
        peftSpec('transformer.blocks.1.attn2.add_k_proj', 4, D, D, [{ key: 'blocks.1.attn2.add_k_proj.weight' }], 2),
        peftSpec('transformer.blocks.1.ffn.net.0.proj', 4, F, D, [{ key: 'blocks.1.ffn.net.0.proj.weight' }], 2),
        peftSpec('transformer.fps_projection.net.2', 4, 6 * D, D, [{ key: 'fps_projection.net.2.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers SkyReelsV2Transformer3DModel ← a Wan-named LoRA (diffusion_model.blocks.N.self_attn.q, ComfyUI / ai-toolkit), fps_projection.0 / .2 included',
    base: skyFolder, baseName: 'transformer',
    adapters: [{
      file: 'skyreels-comfy.safetensors', weight: 1, specs: [
        peftSpec('diffusion_model.blocks.0.self_attn.q', 2, D, D, [{ key: 'blocks.0.attn1.to_q.weight' }], 1),
        peftSpec('diffusion_model.blocks.1.cross_attn.o', 2, D, D, [{ key: 'blocks.1.attn2.to_out.0.weight' }], 1),
        peftSpec('diffusion_model.blocks.0.cross_attn.k_img', 2, D, D, [{ key: 'blocks.0.attn2.add_k_proj.weight' }], 1),
        peftSpec('diffusion_model.blocks.1.ffn.2', 2, D, F, [{ key: 'blocks.1.ffn.net.2.weight' }], 1),
        peftSpec('diffusion_model.time_projection.1', 2, 6 * D, D, [{ key: 'condition_embedder.time_proj.weight' }], 1),
        peftSpec('diffusion_model.head.head', 2, WAN.patchOut, D, [{ key: 'proj_out.weight' }], 1),
        peftSpec('diffusion_model.fps_projection.0', 2, D, D, [{ key: 'fps_projection.net.0.proj.weight' }], 1),
        peftSpec('diffusion_model.fps_projection.2', 2, 6 * D, D, [{ key: 'fps_projection.net.2.weight' }], 1),
      ],
    }],
  },
  {
    name: 'diffusers SkyReelsV2Transformer3DModel ← musubi-tuner\'s kohya-flat Wan names (lora_unet_blocks_0_self_attn_q, lora_unet_fps_projection_2, .alpha)',
    base: skyFolder, baseName: 'transformer',
    adapters: [{
      file: 'skyreels-musubi.safetensors', weight: -0.6, metadata: { ss_network_module: 'networks.lora_wan', ss_base_model_version: 'wan2.1_t2v_1.3B' }, specs: [
        kohyaSpec('lora_unet_blocks_0_self_attn_v', 4, D, D, [{ key: 'blocks.0.attn1.to_v.weight' }], 2),
        kohyaSpec('lora_unet_blocks_1_cross_attn_q', 4, D, D, [{ key: 'blocks.1.attn2.to_q.weight' }], 2),
        kohyaSpec('lora_unet_blocks_0_ffn_0', 4, F, D, [{ key: 'blocks.0.ffn.net.0.proj.weight' }], 2),
        kohyaSpec('lora_unet_fps_projection_2', 4, 6 * D, D, [{ key: 'fps_projection.net.2.weight' }], 2),
      ],
    }],
  },
  {
    name: 'SkyReels-V2 original checkpoint ← a diffusers LoRA (transformer.blocks.N.attn1.to_q → self_attn.q, fps_projection.net.0.proj → fps_projection.0)',
    base: skyOriginal, baseName: SKY_ORIGINAL,
    adapters: [{
      file: 'pytorch_lora_weights.safetensors', weight: 0.7, metadata: DIFFUSERS_LORA_METADATA, specs: [
        peftSpec('transformer.blocks.1.attn1.to_out.0', 4, D, D, [{ key: 'blocks.1.self_attn.o.weight' }], 2),
        peftSpec('transformer.blocks.0.attn2.to_k', 4, D, D, [{ key: 'blocks.0.cross_attn.k.weight' }], 2),
        peftSpec('transformer.blocks.0.ffn.net.2', 4, D, F, [{ key: 'blocks.0.ffn.2.weight' }], 2),
        peftSpec('transformer.fps_projection.net.0.proj', 4, D, D, [{ key: 'fps_projection.0.weight' }], 2),
        peftSpec('transformer.proj_out', 4, WAN.patchOut, D, [{ key: 'head.head.weight' }], 2),
      ],
    }],
  },
  {
    name: 'SkyReels-V2 original checkpoint ← its own names (diffusion_model.blocks.N.self_attn.q, musubi-tuner\'s lora_unet_)',
    base: skyOriginal, baseName: SKY_ORIGINAL,
    adapters: [
      { file: 'skyreels-comfy.safetensors', weight: 1, specs: [peftSpec('diffusion_model.blocks.0.self_attn.k', 2, D, D, [{ key: 'blocks.0.self_attn.k.weight' }], 1), peftSpec('diffusion_model.fps_projection.2', 2, 6 * D, D, [{ key: 'fps_projection.2.weight' }], 1)] },
      { file: 'skyreels-musubi.safetensors', weight: 0.5, specs: [kohyaSpec('lora_unet_blocks_1_cross_attn_v', 4, D, D, [{ key: 'blocks.1.cross_attn.v.weight' }], 1)] },
    ],
  },
  {
    name: 'diffusers HeliosTransformer3DModel ← a diffusers LoRA (transformer. names, α in lora_adapter_metadata)',
    base: helios, baseName: 'transformer',
    adapters: [{
      file: 'pytorch_lora_weights.safetensors', weight: 1.2, metadata: DIFFUSERS_LORA_METADATA, specs: [
        peftSpec('transformer.blocks.0.attn1.to_k', 4, D, D, [{ key: 'blocks.0.attn1.to_k.weight' }], 2),
        peftSpec('transformer.blocks.1.attn2.to_v', 4, D, D, [{ key: 'blocks.1.attn2.to_v.weight' }], 2),
        peftSpec('transformer.condition_embedder.time_proj', 4, 6 * D, D, [{ key: 'condition_embedder.time_proj.weight' }], 2),
        peftSpec('transformer.proj_out', 4, WAN.patchOut, D, [{ key: 'proj_out.weight' }], 2),
      ],
    }],
  },
  {
    name: 'diffusers HeliosTransformer3DModel ← Wan-named LoRAs (diffusion_model.blocks.N.self_attn.q; musubi-tuner\'s lora_unet_blocks_N_…, .alpha)',
    base: helios, baseName: 'transformer',
    adapters: [
      {
        file: 'helios-wan-comfy.safetensors', weight: 0.9, specs: [
          peftSpec('diffusion_model.blocks.1.self_attn.o', 2, D, D, [{ key: 'blocks.1.attn1.to_out.0.weight' }], 1),
          peftSpec('diffusion_model.blocks.0.cross_attn.q', 2, D, D, [{ key: 'blocks.0.attn2.to_q.weight' }], 1),
          peftSpec('diffusion_model.blocks.0.ffn.0', 2, F, D, [{ key: 'blocks.0.ffn.net.0.proj.weight' }], 1),
          peftSpec('diffusion_model.text_embedding.0', 2, D, WAN.text, [{ key: 'condition_embedder.text_embedder.linear_1.weight' }], 1),
          peftSpec('diffusion_model.head.head', 2, WAN.patchOut, D, [{ key: 'proj_out.weight' }], 1),
        ],
      },
      {
        file: 'helios-musubi.safetensors', weight: -1, specs: [
          kohyaSpec('lora_unet_blocks_1_self_attn_q', 4, D, D, [{ key: 'blocks.1.attn1.to_q.weight' }], 4),
          kohyaSpec('lora_unet_blocks_1_ffn_2', 4, D, F, [{ key: 'blocks.1.ffn.net.2.weight' }], 4),
        ],
      },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('SkyReels-V2 and Helios names', () => {
  it('the wan-original layout places the Wan names on the diffusers transformers and diffusers\' names on the original; without it they are refused', async () => {
    const renamed = CASES.filter((c) => !c.name.includes('its own names') && !c.adapters.every((a) => a.metadata === DIFFUSERS_LORA_METADATA && c.base !== skyOriginal));
    expect(renamed).toHaveLength(4);
    await expectLayoutNeeded(prepare, renamed, wanOriginal);
  });

  for (const name of ['diffusion_model.head.modulation.diff', 'diffusion_model.head.diff_m']) {
    it(`Helios: a Wan head table diff (${name}) has no place (Helios keeps its output table as norm_out.scale_shift_table) and is refused in one line`, async () => {
      const lora = [{ name, shape: [1, 2, D], dtype: 'F32' as const, data: Array.from({ length: 2 * D }, () => rand() - 0.5) }];
      const problems = await problemsOfTensors(helios, lora);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^diff\.safetensors: module "diffusion_model\.head\.(modulation|diff_m)": is Wan's output adaLN table .*which Helios does not have/);
    });
  }

  it('Helios: a module only SkyReels-V2 has (fps_projection.0) is refused in one line, not skipped', async () => {
    const problems = await planProblemsOf(helios, 'transformer', [peftSpec('diffusion_model.fps_projection.0', 2, D, D, [], 1)], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^lora\.safetensors: module "diffusion_model\.fps_projection\.0": no matching tensor/);
  });
});

async function problemsOfTensors(base: Record<string, Uint8Array | string>, tensors: FixtureTensor[]): Promise<string[]> {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'transformer'), [{ files: memoryInputFileSet({ 'diff.safetensors': buildSafetensors(tensors) }, 'diff.safetensors'), weight: 1 }]);
  // Left-out modules count too: a refusal must not turn into a silent skip.
  const problems = [...prepared.plan.problems.map((p) => p.message), ...prepared.plan.leftOut.map((l) => JSON.stringify(l))];
  await prepared.close();
  return problems;
}
