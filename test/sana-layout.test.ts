/**
 * Sana LoRAs in one naming onto a base in the other, file to file on the CPU and on WebGPU, against
 * float64 truth: diffusers' train_dreambooth_lora_sana.py (`transformer.` + diffusers' names, α from
 * `lora_adapter_metadata`) onto the original names; a PEFT folder on the original names (the target
 * modules `attn.qkv`, `attn.proj`, `cross_attn.q_linear`, `cross_attn.kv_linear`, `cross_attn.proj`
 * Sana's own LoRA scripts use, `base_model.model.` + them, α from adapter_config.json) and the kohya
 * form (`lora_unet_` + the original names flattened, α/r) onto diffusers' SanaTransformer2DModel.
 * Where each module lands is written here by hand from diffusers' scripts/convert_sana_to_diffusers.py
 * (and the single-file loader's convert_sana_transformer_to_diffusers): `attn.qkv` → thirds as
 * `attn1.to_q/k/v`, `cross_attn.kv_linear` → halves as `attn2.to_k/v`, `cross_attn.q_linear` →
 * `attn2.to_q`, `attn.proj`/`cross_attn.proj` → `attn1/attn2.to_out.0`, `y_embedder.y_proj.fc1` →
 * `caption_projection.linear_1`, `t_block.1` → `time_embed.linear`, `t_embedder.mlp.0/2` →
 * `time_embed.emb.timestep_embedder.linear_1/2` (Sana Sprint: `time_embed.timestep_embedder`, and
 * `cfg_embedder.mlp.0/2` → `time_embed.guidance_embedder.linear_1/2`), `final_layer.linear` → `proj_out`.
 */
import { describe, expect, it } from 'vitest';
import { sana } from '../src/formats/layouts/sana.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { rowsAt, rowsFrom, type LoraSpec, kohyaSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import { SANA, sanaDiffusersTensors, sanaOriginalTensors } from './helpers/sana-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261208);

const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const diffusersFolder = (tensors: FixtureTensor[], config: Record<string, unknown> = {}) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: 'SanaTransformer2DModel', ...config }),
});

const { dim: d, caption, freq, latent } = SANA;
const S16 = 'sana_1600m_1024px.safetensors';
const cm = 'model.diffusion_model.';
const OB = (p: string, i: number, rest: string) => `${p}blocks.${i}.${rest}.weight`;

/** train_dreambooth_lora_sana.py's names onto the original under `p`. */
const diffusersOnOriginal = (p: string): LoraSpec[] => [
  peftSpec('transformer.transformer_blocks.0.attn1.to_q', 4, d, d, [{ key: OB(p, 0, 'attn.qkv'), rows: rowsAt(0, d) }], 2),
  peftSpec('transformer.transformer_blocks.0.attn1.to_k', 4, d, d, [{ key: OB(p, 0, 'attn.qkv'), rows: rowsAt(d, d) }], 2),
  peftSpec('transformer.transformer_blocks.1.attn1.to_v', 4, d, d, [{ key: OB(p, 1, 'attn.qkv'), rows: rowsAt(2 * d, d) }], 2),
  peftSpec('transformer.transformer_blocks.1.attn1.to_out.0', 4, d, d, [{ key: OB(p, 1, 'attn.proj') }], 2),
  peftSpec('transformer.transformer_blocks.0.attn2.to_q', 4, d, d, [{ key: OB(p, 0, 'cross_attn.q_linear') }], 2),
  peftSpec('transformer.transformer_blocks.0.attn2.to_k', 4, d, d, [{ key: OB(p, 0, 'cross_attn.kv_linear'), rows: rowsAt(0, d) }], 2),
  peftSpec('transformer.transformer_blocks.1.attn2.to_v', 4, d, d, [{ key: OB(p, 1, 'cross_attn.kv_linear'), rows: rowsAt(d, d) }], 2),
  peftSpec('transformer.transformer_blocks.0.attn2.to_out.0', 4, d, d, [{ key: OB(p, 0, 'cross_attn.proj') }], 2),
  peftSpec('transformer.caption_projection.linear_1', 4, d, caption, [{ key: `${p}y_embedder.y_proj.fc1.weight` }], 2),
  peftSpec('transformer.time_embed.linear', 4, 6 * d, d, [{ key: `${p}t_block.1.weight` }], 2),
  peftSpec('transformer.time_embed.emb.timestep_embedder.linear_2', 4, d, d, [{ key: `${p}t_embedder.mlp.2.weight` }], 2),
  peftSpec('transformer.proj_out', 4, latent, d, [{ key: `${p}final_layer.linear.weight` }], 2),
];
/** Sana's own PEFT LoRA (original names, in a folder with its config) onto diffusers' names. */
const sanaPeftOnDiffusers: LoraSpec[] = [
  peftSpec('base_model.model.blocks.0.attn.qkv', 4, 3 * d, d, ['to_q', 'to_k', 'to_v'].map((t, i) => ({ key: `transformer_blocks.0.attn1.${t}.weight`, rows: rowsFrom(i * d, d) })), 2),
  peftSpec('base_model.model.blocks.1.attn.proj', 4, d, d, [{ key: 'transformer_blocks.1.attn1.to_out.0.weight' }], 2),
  peftSpec('base_model.model.blocks.1.cross_attn.q_linear', 4, d, d, [{ key: 'transformer_blocks.1.attn2.to_q.weight' }], 2),
  peftSpec('base_model.model.blocks.0.cross_attn.kv_linear', 4, 2 * d, d, ['to_k', 'to_v'].map((t, i) => ({ key: `transformer_blocks.0.attn2.${t}.weight`, rows: rowsFrom(i * d, d) })), 2),
  peftSpec('base_model.model.blocks.1.cross_attn.proj', 4, d, d, [{ key: 'transformer_blocks.1.attn2.to_out.0.weight' }], 2),
];
const sanaPeftConfig = JSON.stringify({
  peft_type: 'LORA', task_type: null, base_model_name_or_path: null, r: 4, lora_alpha: 8, lora_dropout: 0, bias: 'none',
  fan_in_fan_out: false, init_lora_weights: 'gaussian', use_rslora: false, use_dora: false, rank_pattern: {}, alpha_pattern: {},
  target_modules: ['attn.qkv', 'attn.proj', 'cross_attn.q_linear', 'cross_attn.kv_linear', 'cross_attn.proj'],
});
/** The kohya form on the original names, onto diffusers' names. */
const kohyaOnDiffusers: LoraSpec[] = [
  kohyaSpec('lora_unet_blocks_1_attn_qkv', 2, 3 * d, d, ['to_q', 'to_k', 'to_v'].map((t, i) => ({ key: `transformer_blocks.1.attn1.${t}.weight`, rows: rowsFrom(i * d, d) })), 1),
  kohyaSpec('lora_unet_y_embedder_y_proj_fc2', 2, d, d, [{ key: 'caption_projection.linear_2.weight' }], 1),
  kohyaSpec('lora_unet_t_block_1', 2, 6 * d, d, [{ key: 'time_embed.linear.weight' }], 1),
  kohyaSpec('lora_unet_t_embedder_mlp_0', 2, d, freq, [{ key: 'time_embed.emb.timestep_embedder.linear_1.weight' }], 1),
  kohyaSpec('lora_unet_final_layer_linear', 2, latent, d, [{ key: 'proj_out.weight' }], 1),
];
const SPRINT = { ...SANA, qkNorm: true, sprint: true };
/** Sana Sprint's timestep and guidance embedders, original names onto diffusers'. */
const kohyaOnSprintDiffusers: LoraSpec[] = [
  kohyaSpec('lora_unet_t_embedder_mlp_0', 2, d, freq, [{ key: 'time_embed.timestep_embedder.linear_1.weight' }], 1),
  kohyaSpec('lora_unet_cfg_embedder_mlp_2', 2, d, d, [{ key: 'time_embed.guidance_embedder.linear_2.weight' }], 1),
  kohyaSpec('lora_unet_blocks_0_cross_attn_kv_linear', 2, 2 * d, d, ['to_k', 'to_v'].map((t, i) => ({ key: `transformer_blocks.0.attn2.${t}.weight`, rows: rowsFrom(i * d, d) })), 1),
];

const CASES: LoraCase[] = [
  {
    name: 'Sana 1600M, original names (bf16) ← diffusers-trained LoRAs', layout: 'sana',
    base: file(S16, sanaOriginalTensors(rand, 'BF16')), baseName: S16,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal(''), weight: 1, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'pytorch_lora_weights-2.safetensors', specs: diffusersOnOriginal('').slice(0, 6), weight: -0.5, metadata: DIFFUSERS_LORA_METADATA },
    ],
  },
  {
    name: 'SANA 1.5, original names under model.diffusion_model. (q/k norms) ← diffusers-trained LoRA', layout: 'sana',
    base: file('sana_1.5_1600m.safetensors', sanaOriginalTensors(rand, 'BF16', { ...SANA, qkNorm: true }, cm)), baseName: 'sana_1.5_1600m.safetensors',
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal(cm), weight: 0.7, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'Sana 1600M, diffusers SanaTransformer2DModel ← a PEFT folder and a kohya-form LoRA on the original names', layout: 'sana',
    base: diffusersFolder(sanaDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [
      { file: 'adapter_model.safetensors', specs: sanaPeftOnDiffusers, weight: 1, folder: { name: 'sana-lora', config: sanaPeftConfig } },
      { file: 'sana-kohya.safetensors', specs: kohyaOnDiffusers, weight: 0.6 },
    ],
  },
  {
    name: 'Sana Sprint, diffusers SanaTransformer2DModel (guidance embeds) ← kohya-form LoRA on the original names', layout: 'sana',
    base: diffusersFolder(sanaDiffusersTensors(rand, 'BF16', SPRINT), { guidance_embeds: true, qk_norm: 'rms_norm_across_heads' }), baseName: 'transformer',
    adapters: [{ file: 'sana-sprint-kohya.safetensors', specs: kohyaOnSprintDiffusers, weight: 1 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('Sana namings', () => {
  it('the sana layout places the other naming\'s modules; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, [CASES[0], CASES[2], CASES[3]], sana);
  });

  it('refused in one line each: PixArt\'s diffusers names on Sana, the other model\'s timestep names, a block past the last', async () => {
    const onOriginal = await planProblemsOf(file(S16, sanaOriginalTensors(rand, 'BF16')), S16, [
      peftSpec('transformer.adaln_single.linear', 2, 6 * d, d, [], 1),
      peftSpec('transformer.time_embed.timestep_embedder.linear_1', 2, d, freq, [], 1),
      peftSpec('transformer.transformer_blocks.2.attn1.to_q', 2, d, d, [], 1),
    ], rand);
    expect(onOriginal).toEqual([
      'lora.safetensors: module "transformer.adaln_single.linear": no matching tensor in the UNet/transformer',
      'lora.safetensors: module "transformer.time_embed.timestep_embedder.linear_1": no matching tensor in the UNet/transformer',
      'lora.safetensors: module "transformer.transformer_blocks.2.attn1.to_q": no matching tensor in the UNet/transformer',
    ]);
  });
});
