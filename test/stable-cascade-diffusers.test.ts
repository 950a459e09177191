/**
 * Stable Cascade LoRAs in ComfyUI's names (`lora_unet_` / `lora_prior_unet_` + Stability's stage C and
 * stage B names with ComfyUI's split `attention.attn.to_q|to_k|to_v`; `diffusion_model.` dotted;
 * OneTrainer's LEGACY form is the same `lora_prior_unet_` names) onto diffusers' StableCascadeUNet
 * (stabilityai/stable-cascade's `prior/` and `decoder/` folders, a combined pipeline's `prior_prior/`).
 * Where each module lands is written here by hand from diffusers' conversion
 * (single_file_utils.py convert_stable_cascade_unet_single_file_to_diffusers: `attn.in_proj_weight`
 * thirds → `to_q`, `to_k`, `to_v`; `attn.out_proj` → `to_out.0`; stage B's `clip_mapper` →
 * `clip_txt_pooled_mapper`; every other key kept). File to file on the CPU and on WebGPU, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { stableCascadeDiffusers } from '../src/formats/layouts/stable-cascade-diffusers.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { STAGE_B, STAGE_C, stageBTensors, stageCTensors } from './helpers/stable-cascade-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';
import { onePipelineLora } from './helpers/pipeline-merge.js';

const rand = seededRandom(20261207);

/** The tensors as diffusers' conversion names them (from ComfyUI's split names, which keep Stability's order). */
const asDiffusers = (tensors: FixtureTensor[]): FixtureTensor[] => tensors.map((t) => ({
  ...t,
  name: t.name.replace(/attention\.attn\.(to_[qkv])\./, 'attention.$1.').replace('attention.attn.out_proj.', 'attention.to_out.0.').replace(/^clip_mapper\./, 'clip_txt_pooled_mapper.'),
}));
const unetFolder = (tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(asDiffusers(tensors)), 'config.json': JSON.stringify({ _class_name: 'StableCascadeUNet', _diffusers_version: '0.27.0.dev0' }),
});

const { c, cond, clip } = STAGE_C;
const U = 'lora_prior_unet_';
/** Stage C (prior/) ← ComfyUI's names: q, k, v, out_proj onto diffusers' renamed tensors, the rest by name. */
const onPrior: LoraSpec[] = [
  kohyaSpec(`${U}down_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: 'down_blocks.0.2.attention.to_q.weight' }], 2),
  kohyaSpec(`${U}down_blocks_1_2_attention_attn_to_k`, 4, c, c, [{ key: 'down_blocks.1.2.attention.to_k.weight' }], 2),
  kohyaSpec(`${U}up_blocks_1_2_attention_attn_to_v`, 4, c, c, [{ key: 'up_blocks.1.2.attention.to_v.weight' }], 2),
  kohyaSpec(`${U}up_blocks_0_2_attention_attn_out_proj`, 4, c, c, [{ key: 'up_blocks.0.2.attention.to_out.0.weight' }], 2),
  kohyaSpec(`${U}up_blocks_0_2_kv_mapper_1`, 4, c, cond, [{ key: 'up_blocks.0.2.kv_mapper.1.weight' }], 2),
  kohyaSpec(`${U}down_blocks_1_0_channelwise_0`, 4, 4 * c, c, [{ key: 'down_blocks.1.0.channelwise.0.weight' }], 2),
  kohyaSpec(`${U}clip_txt_pooled_mapper`, 4, 4 * cond, clip, [{ key: 'clip_txt_pooled_mapper.weight' }], 2),
];
/**
 * Stage C (prior/) ← OneTrainer's ORIGINAL (bare, `lora_A`/`lora_B` + `.alpha`), COMFY (`diffusion_model.`)
 * and KOHYA (`lora_unet_`, flattened) names: `attention.attn.in_proj.0/1/2` are the diffusers `to_q`,
 * `to_k`, `to_v` they were renamed from (WuerstchenModel.diffusers_to_original, reversed by its loader);
 * and kohya sd-scripts' stable-cascade `lora_unet_…_attention_attn_to_q`.
 */
const otSpec = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec => ({
  down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands,
  scale: alpha / r, extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
});
const oneTrainerOnPrior: LoraSpec[] = [
  otSpec('down_blocks.0.2.attention.attn.in_proj.0', 4, c, c, [{ key: 'down_blocks.0.2.attention.to_q.weight' }], 2),
  otSpec('down_blocks.0.2.attention.attn.in_proj.1', 4, c, c, [{ key: 'down_blocks.0.2.attention.to_k.weight' }], 2),
  otSpec('diffusion_model.up_blocks.1.2.attention.attn.in_proj.2', 4, c, c, [{ key: 'up_blocks.1.2.attention.to_v.weight' }], 2),
  otSpec('down_blocks.1.2.attention.attn.out_proj', 4, c, c, [{ key: 'down_blocks.1.2.attention.to_out.0.weight' }], 2),
  otSpec('clip_txt_pooled_mapper', 4, 4 * cond, clip, [{ key: 'clip_txt_pooled_mapper.weight' }], 2),
];
const kohyaOnPrior: LoraSpec[] = [
  kohyaSpec('lora_unet_up_blocks_0_2_attention_attn_in_proj_1', 4, c, c, [{ key: 'up_blocks.0.2.attention.to_k.weight' }], 8),
  kohyaSpec('lora_unet_down_blocks_1_2_attention_attn_to_v', 4, c, c, [{ key: 'down_blocks.1.2.attention.to_v.weight' }], 8),
  kohyaSpec('lora_unet_down_blocks_1_1_mapper', 4, 2 * c, STAGE_C.r, [{ key: 'down_blocks.1.1.mapper.weight' }], 8),
];
const c2 = STAGE_B.c[2], c3 = STAGE_B.c[3];
/** Stage B (decoder/) ← ComfyUI's `lora_unet_` and `diffusion_model.` names, clip_mapper onto clip_txt_pooled_mapper. */
const onDecoder: LoraSpec[] = [
  kohyaSpec('lora_unet_down_blocks_2_2_attention_attn_to_q', 4, c2, c2, [{ key: 'down_blocks.2.2.attention.to_q.weight' }], 4),
  kohyaSpec('lora_unet_up_blocks_0_2_attention_attn_to_v', 4, c3, c3, [{ key: 'up_blocks.0.2.attention.to_v.weight' }], 4),
  kohyaSpec('lora_unet_clip_mapper', 4, 4 * STAGE_B.cond, STAGE_B.clip, [{ key: 'clip_txt_pooled_mapper.weight' }], 4),
  peftSpec('diffusion_model.down_blocks.3.2.attention.attn.out_proj', 2, c3, c3, [{ key: 'down_blocks.3.2.attention.to_out.0.weight' }], 1),
  peftSpec('diffusion_model.down_blocks.3.2.attention.attn.to_k', 2, c3, c3, [{ key: 'down_blocks.3.2.attention.to_k.weight' }], 1),
];

const CASES: LoraCase[] = [
  {
    name: 'diffusers Stable Cascade prior/ (StableCascadeUNet, stage C) ← lora_prior_unet_ LoRA in ComfyUI\'s names',
    base: unetFolder(stageCTensors(rand, 'BF16', STAGE_C, '', true)), baseName: 'prior',
    adapters: [{ file: 'cascade-lora.safetensors', specs: onPrior, weight: 0.8 }],
  },
  {
    name: 'diffusers Stable Cascade decoder/ (StableCascadeUNet, stage B) ← ComfyUI-named LoRAs (lora_unet_, diffusion_model.)',
    base: unetFolder(stageBTensors(rand, 'BF16', STAGE_B, '', true)), baseName: 'decoder',
    adapters: [{ file: 'cascade-b-lora.safetensors', specs: onDecoder, weight: -0.6 }],
  },
];

const ONETRAINER: LoraCase = {
  name: 'diffusers Stable Cascade prior/ ← OneTrainer\'s ORIGINAL / COMFY / KOHYA LoRAs (in_proj.N) and kohya sd-scripts\' lora_unet_ names',
  base: unetFolder(stageCTensors(rand, 'BF16', STAGE_C, '', true)), baseName: 'prior',
  adapters: [
    { file: 'cascade-ot-original.safetensors', specs: oneTrainerOnPrior, weight: 0.8, metadata: { 'modelspec.architecture': 'stable-cascade-v1-prior/lora', 'modelspec.title': 'Stable Cascade 1.0 LoRA' } },
    { file: 'cascade-kohya.safetensors', specs: kohyaOnPrior, weight: -0.4 },
  ],
};

const { prepare } = loraCaseSuite([...CASES, ONETRAINER], rand, 'BF16');

describe('ComfyUI\'s Stable Cascade names on diffusers\' StableCascadeUNet', () => {
  it('the stable-cascade-diffusers layout places the renamed modules; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, [...CASES, ONETRAINER], stableCascadeDiffusers);
  });

  it('a q on a level without attention is no matching tensor, as it is on Stability\'s file', async () => {
    const problems = await planProblemsOf(unetFolder(stageBTensors(rand, 'BF16', STAGE_B, '', true)), 'decoder', [
      kohyaSpec('lora_unet_down_blocks_1_2_attention_attn_to_q', 2, STAGE_B.c[1], STAGE_B.c[1], [], 2),
    ], rand);
    expect(problems).toEqual(['lora.safetensors: module "lora_unet_down_blocks_1_2_attention_attn_to_q": no matching tensor in the decoder (denoiser)']);
  });
});

/** stabilityai/stable-cascade's combined pipeline: decoder (stage B) and prior_prior (stage C) both StableCascadeUNet. */
describe('ComfyUI\'s Stable Cascade names on the combined pipeline', () => {
  const json = (o: object) => JSON.stringify(o, null, 2);
  const Q = 'down_blocks.0.1.attention.to_q';
  const stage = () => buildSafetensors([
    tensor(rand, `${Q}.weight`, [8, 8], 'BF16'), tensor(rand, 'down_blocks.0.1.attention.to_out.0.weight', [8, 8], 'BF16'), tensor(rand, 'clip_txt_pooled_mapper.weight', [16, 6], 'BF16'),
  ]);
  const cascade = {
    'model_index.json': json({
      _class_name: 'StableCascadeCombinedPipeline', _diffusers_version: '0.27.0.dev0', decoder: ['diffusers', 'StableCascadeUNet'], prior_prior: ['diffusers', 'StableCascadeUNet'],
      prior_scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], scheduler: ['diffusers', 'DDPMWuerstchenScheduler'],
    }),
    'decoder/diffusion_pytorch_model.safetensors': stage(), 'prior_prior/diffusion_pytorch_model.safetensors': stage(),
  };
  const lora = onePipelineLora(rand, 1);

  it('merges lora_prior_unet_ (ComfyUI\'s and OneTrainer\'s LEGACY names for stage C) into prior_prior/', async () => {
    await lora.mergeAndCheck(cascade, [
      kohyaSpec('lora_prior_unet_down_blocks_0_1_attention_attn_to_q', 2, 8, 8, [{ key: `prior_prior.${Q}.weight` }], 1),
      kohyaSpec('lora_prior_unet_down_blocks_0_1_attention_attn_out_proj', 2, 8, 8, [{ key: 'prior_prior.down_blocks.0.1.attention.to_out.0.weight' }], 2),
    ], ['prior_prior/diffusion_pytorch_model.safetensors']);
  });

  it('refuses a bare in_proj.N (OneTrainer\'s ORIGINAL names) in a file without OneTrainer\'s prior header, which fits both StableCascadeUNets, naming prior_prior/', async () => {
    const { problems } = await lora.planOf(cascade, [otSpec('down_blocks.0.1.attention.attn.in_proj.0', 2, 8, 8, [], 1)]);
    expect(problems).toEqual([
      `lora.safetensors: module "down_blocks.0.1.attention.attn.in_proj.0": fits prior_prior.${Q}.weight in prior_prior/ (StableCascadeUNet), the prior's in its StableCascadeCombinedPipeline, a folder no LoRA name routes to here, ` +
        `as well as decoder.${Q}.weight where it would land, so which of the pipeline's models it is for cannot be told (diffusers' combined pipelines load no LoRA); not supported — give the prior's or the decoder's own pipeline folder as the base`,
    ]);
  });

  it('refuses lora_unet_, which fits both StableCascadeUNets, naming prior_prior/', async () => {
    const { problems } = await lora.planOf(cascade, [kohyaSpec('lora_unet_down_blocks_0_1_attention_attn_to_q', 2, 8, 8, [], 1)]);
    expect(problems).toEqual([
      `lora.safetensors: module "lora_unet_down_blocks_0_1_attention_attn_to_q": fits prior_prior.${Q}.weight in prior_prior/ (StableCascadeUNet), the prior's in its StableCascadeCombinedPipeline, a folder no LoRA name routes to here, ` +
        `as well as decoder.${Q}.weight where it would land, so which of the pipeline's models it is for cannot be told (diffusers' combined pipelines load no LoRA); not supported — give the prior's or the decoder's own pipeline folder as the base`,
    ]);
  });
});
