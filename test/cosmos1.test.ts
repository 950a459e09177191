/**
 * Cosmos 1.0 (Cosmos-1.0-Diffusion 7B/14B) LoRAs in one naming onto a base in the other, file to
 * file on the CPU and on WebGPU, against float64 truth: diffusion-pipe's (`diffusion_model.` + the
 * original names, PEFT form, its α = r: scale 1, as ComfyUI reads a LoRA without `.alpha`), the kohya
 * form of ComfyUI's key map (`lora_unet_` + the original names flattened, α/r) and PEFT on diffusers'
 * CosmosTransformer3DModel (`transformer.` + diffusers' names, α from `lora_adapter_metadata`), onto
 * the original file under `net.`, a checkpoint ComfyUI saved under `model.diffusion_model.` and
 * diffusers' transformer. Where each module lands is written here by hand from diffusers'
 * scripts/convert_cosmos_to_diffusers.py, its Cosmos 1.0 table: `blocks.blockN` → `transformer_blocks.N`,
 * `.blocks.0.block.attn` → `.attn1`, `.blocks.1.block.attn` → `.attn2`, `.blocks.2.block` → `.ff`,
 * `to_q.0` → `to_q`, `to_k.0` → `to_k`, `to_v.0` → `to_v`, `layer1` → `net.0.proj`, `layer2` → `net.2`,
 * `.blocks.K.adaLN_modulation.1/2` → `.norm{K+1}.linear_1/2`, `x_embedder.proj.1` → `patch_embed.proj`,
 * `t_embedder.1` → `time_embed.t_embedder`, `final_layer.adaLN_modulation.1/2` → `norm_out.linear_1/2`,
 * `final_layer.linear` → `proj_out`; whole tensors, row for row.
 */
import { describe, expect, it } from 'vitest';
import { cosmos1 } from '../src/formats/layouts/cosmos1.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import type { LoraSpec } from './helpers/diffusion-fixtures.js';
import { COSMOS, cosmos1DiffusersTensors, cosmos1OriginalTensors, cosmosDiffusersTensors } from './helpers/cosmos-fixtures.js';
import { expectLayoutNeeded, loraCaseSuite, planProblemsOf, type LoraCase } from './helpers/lora-case.js';
import { kohyaSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';

const rand = seededRandom(20261207);

const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const diffusersFolder = (tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: 'CosmosTransformer3DModel', extra_pos_embed_type: 'learnable' }),
});

const { dim, text, adaln, patchIn, patchOut } = COSMOS;
const C1 = 'Cosmos-1_0-Diffusion-7B-Text2World.safetensors';
const cm = 'model.diffusion_model.';
const OB = (p: string, i: number, rest: string) => `${p}blocks.block${i}.blocks.${rest}.weight`;

/** `transformer.` + diffusers' names onto the original names under `p`. */
const diffusersOnOriginal = (p: string): LoraSpec[] => [
  peftSpec('transformer.transformer_blocks.0.attn1.to_q', 4, dim, dim, [{ key: OB(p, 0, '0.block.attn.to_q.0') }], 2),
  peftSpec('transformer.transformer_blocks.1.attn1.to_v', 4, dim, dim, [{ key: OB(p, 1, '0.block.attn.to_v.0') }], 2),
  peftSpec('transformer.transformer_blocks.0.attn1.to_out.0', 4, dim, dim, [{ key: OB(p, 0, '0.block.attn.to_out.0') }], 2),
  peftSpec('transformer.transformer_blocks.1.attn2.to_k', 4, dim, text, [{ key: OB(p, 1, '1.block.attn.to_k.0') }], 2),
  peftSpec('transformer.transformer_blocks.0.ff.net.0.proj', 4, 4 * dim, dim, [{ key: OB(p, 0, '2.block.layer1') }], 2),
  peftSpec('transformer.transformer_blocks.1.ff.net.2', 4, dim, 4 * dim, [{ key: OB(p, 1, '2.block.layer2') }], 2),
  peftSpec('transformer.transformer_blocks.0.norm2.linear_2', 4, 3 * dim, adaln, [{ key: OB(p, 0, '1.adaLN_modulation.2') }], 2),
  peftSpec('transformer.transformer_blocks.1.norm3.linear_1', 4, adaln, dim, [{ key: OB(p, 1, '2.adaLN_modulation.1') }], 2),
  peftSpec('transformer.patch_embed.proj', 4, dim, patchIn, [{ key: `${p}x_embedder.proj.1.weight` }], 2),
  peftSpec('transformer.time_embed.t_embedder.linear_2', 4, 3 * dim, dim, [{ key: `${p}t_embedder.1.linear_2.weight` }], 2),
  peftSpec('transformer.norm_out.linear_2', 4, 2 * dim, adaln, [{ key: `${p}final_layer.adaLN_modulation.2.weight` }], 2),
  peftSpec('transformer.proj_out', 4, patchOut, dim, [{ key: `${p}final_layer.linear.weight` }], 2),
];
/** diffusion-pipe's Cosmos LoRA (ComfyUI format: `diffusion_model.` + the original names) and the kohya form, onto diffusers' names. */
const originalOnDiffusers: LoraSpec[] = [
  peftSpec('diffusion_model.blocks.block0.blocks.0.block.attn.to_q.0', 4, dim, dim, [{ key: 'transformer_blocks.0.attn1.to_q.weight' }], 1),
  peftSpec('diffusion_model.blocks.block1.blocks.0.block.attn.to_k.0', 4, dim, dim, [{ key: 'transformer_blocks.1.attn1.to_k.weight' }], 1),
  peftSpec('diffusion_model.blocks.block0.blocks.1.block.attn.to_v.0', 4, dim, text, [{ key: 'transformer_blocks.0.attn2.to_v.weight' }], 1),
  peftSpec('diffusion_model.blocks.block1.blocks.1.block.attn.to_out.0', 4, dim, dim, [{ key: 'transformer_blocks.1.attn2.to_out.0.weight' }], 1),
  peftSpec('diffusion_model.blocks.block0.blocks.2.block.layer2', 4, dim, 4 * dim, [{ key: 'transformer_blocks.0.ff.net.2.weight' }], 1),
  peftSpec('diffusion_model.blocks.block1.blocks.0.adaLN_modulation.1', 4, adaln, dim, [{ key: 'transformer_blocks.1.norm1.linear_1.weight' }], 1),
  kohyaSpec('lora_unet_blocks_block1_blocks_2_block_layer1', 2, 4 * dim, dim, [{ key: 'transformer_blocks.1.ff.net.0.proj.weight' }], 1),
  kohyaSpec('lora_unet_blocks_block0_blocks_2_adaLN_modulation_2', 2, 3 * dim, adaln, [{ key: 'transformer_blocks.0.norm3.linear_2.weight' }], 1),
  kohyaSpec('lora_unet_t_embedder_1_linear_1', 2, dim, dim, [{ key: 'time_embed.t_embedder.linear_1.weight' }], 1),
  kohyaSpec('lora_unet_final_layer_adaLN_modulation_1', 2, adaln, dim, [{ key: 'norm_out.linear_1.weight' }], 1),
];
/** The same diffusion-pipe LoRA on a checkpoint ComfyUI saved: by name. */
const originalOnOriginal: LoraSpec[] = [
  peftSpec('diffusion_model.blocks.block0.blocks.0.block.attn.to_q.0', 4, dim, dim, [{ key: OB(cm, 0, '0.block.attn.to_q.0') }], 1),
  peftSpec('diffusion_model.blocks.block1.blocks.2.block.layer1', 4, 4 * dim, dim, [{ key: OB(cm, 1, '2.block.layer1') }], 1),
];

const CASES: LoraCase[] = [
  {
    name: 'Cosmos 1.0 7B, Comfy-Org\'s file (net.) ← diffusers-named LoRAs', layout: 'cosmos1',
    base: file(C1, cosmos1OriginalTensors(rand, 'BF16')), baseName: C1,
    adapters: [
      { file: 'cosmos1-diffusers.safetensors', specs: diffusersOnOriginal('net.'), weight: 1, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'cosmos1-diffusers-2.safetensors', specs: diffusersOnOriginal('net.').slice(0, 4), weight: -0.5, metadata: DIFFUSERS_LORA_METADATA },
    ],
  },
  {
    name: 'Cosmos 1.0 7B, diffusers CosmosTransformer3DModel ← diffusion-pipe\'s and kohya-form LoRAs (original names)', layout: 'cosmos1',
    base: diffusersFolder(cosmos1DiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'adapter_model.safetensors', specs: originalOnDiffusers, weight: 0.8 }],
  },
  {
    name: 'Cosmos 1.0 7B, a checkpoint ComfyUI saved (model.diffusion_model.) ← diffusion-pipe\'s LoRA, by name',
    base: file('cosmos1_7b_comfy.safetensors', cosmos1OriginalTensors(rand, 'BF16', COSMOS, cm)), baseName: 'cosmos1_7b_comfy.safetensors',
    adapters: [{ file: 'adapter_model.safetensors', specs: originalOnOriginal, weight: 1 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('Cosmos 1.0 namings', () => {
  it('the cosmos1 layout places the other naming\'s modules; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, CASES.slice(0, 2), cosmos1, { only: true });
  });

  it('refused in one line each: Cosmos-Predict2 names on Cosmos 1.0, a block past the last, the original\'s logvar on diffusers\' model, Cosmos 1.0 names on Cosmos-Predict2', async () => {
    const onCosmos1 = await planProblemsOf(diffusersFolder(cosmos1DiffusersTensors(rand, 'BF16')), 'transformer', [
      peftSpec('diffusion_model.blocks.0.self_attn.q_proj', 2, dim, dim, [], 1),
      peftSpec('diffusion_model.blocks.block2.blocks.0.block.attn.to_q.0', 2, dim, dim, [], 1),
      kohyaSpec('diffusion_model.logvar.1', 1, 1, 8, [], 1),
    ], rand);
    expect(onCosmos1).toEqual([
      'lora.safetensors: module "diffusion_model.blocks.0.self_attn.q_proj": no matching tensor in the transformer (denoiser)',
      'lora.safetensors: module "diffusion_model.blocks.block2.blocks.0.block.attn.to_q.0": no matching tensor in the transformer (denoiser)',
      'lora.safetensors: module "diffusion_model.logvar.1": no matching tensor in the transformer (denoiser)',
    ]);
    const predict2 = { 'diffusion_pytorch_model.safetensors': buildSafetensors(cosmosDiffusersTensors(rand, 'BF16')), 'config.json': JSON.stringify({ _class_name: 'CosmosTransformer3DModel' }) };
    expect(await planProblemsOf(predict2, 'transformer', [peftSpec('diffusion_model.blocks.block0.blocks.0.block.attn.to_q.0', 2, dim, dim, [], 1)], rand)).toEqual([
      'lora.safetensors: module "diffusion_model.blocks.block0.blocks.0.block.attn.to_q.0": no matching tensor in the transformer (denoiser)',
    ]);
  });
});
