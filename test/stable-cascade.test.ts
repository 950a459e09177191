/**
 * Stable Cascade LoRAs (`lora_prior_unet_` + ComfyUI's names for stage C flattened, kohya form with
 * α: OneTrainer's and the LoRAs made for ComfyUI) onto stage C as people hold it: Stability's
 * `stage_c_bf16.safetensors`, whose attentions keep q, k and v in one MultiheadAttention
 * `in_proj_weight`, and a checkpoint ComfyUI saved, which holds them split. Stage B LoRAs in
 * ComfyUI's names (`lora_unet_` flattened, or `diffusion_model.` dotted: its key map's two forms for
 * a model without a prior prefix) onto stage B likewise. File to file on the CPU and on WebGPU,
 * against float64 truth. Where each module lands is written here by hand from ComfyUI's
 * Stable_Cascade_C.process_unet_state_dict, which Stable_Cascade_B inherits (in_proj rows [0, c) →
 * to_q, [c, 2c) → to_k, [2c, 3c) → to_v), and its key map (comfy/lora.py: `lora_unet_`,
 * `diffusion_model.` and, for stage C, `lora_prior_unet_` + every model key).
 */
import { describe, expect, it } from 'vitest';
import { moduleAddress } from '../src/formats/module-address.js';
import { stableCascade } from '../src/formats/layouts/stable-cascade.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { rowsAt, type LoraSpec, kohyaSpec } from './helpers/diffusion-fixtures.js';
import { STAGE_B, STAGE_C, clipGTextTensors, stageBTensors, stageCTensors } from './helpers/stable-cascade-fixtures.js';
import { loraCaseSuite, expectLayoutNeeded, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261204);

const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const { c, cond, clip } = STAGE_C;
const U = 'lora_prior_unet_';

/** onto Stability's file (prefix `p`): q, k, v on thirds of in_proj_weight, the rest by name. */
const onCheckpoint = (p: string): LoraSpec[] => [
  kohyaSpec(`${U}down_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 2),
  kohyaSpec(`${U}down_blocks_1_2_attention_attn_to_k`, 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(c, c) }], 2),
  kohyaSpec(`${U}up_blocks_1_2_attention_attn_to_v`, 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(2 * c, c) }], 2),
  kohyaSpec(`${U}up_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}up_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 2),
  kohyaSpec(`${U}down_blocks_0_2_attention_attn_out_proj`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.out_proj.weight` }], 2),
  kohyaSpec(`${U}up_blocks_0_2_kv_mapper_1`, 4, c, cond, [{ key: `${p}up_blocks.0.2.kv_mapper.1.weight` }], 2),
  kohyaSpec(`${U}down_blocks_1_0_channelwise_0`, 4, 4 * c, c, [{ key: `${p}down_blocks.1.0.channelwise.0.weight` }], 2),
  kohyaSpec(`${U}clip_txt_pooled_mapper`, 4, 4 * cond, clip, [{ key: `${p}clip_txt_pooled_mapper.weight` }], 2),
];
/** onto a checkpoint ComfyUI saved (q, k, v split): every module by name. */
const onComfySaved = (p: string): LoraSpec[] => [
  kohyaSpec(`${U}down_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.to_q.weight` }], 4),
  kohyaSpec(`${U}up_blocks_1_2_attention_attn_to_v`, 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.to_v.weight` }], 4),
  kohyaSpec(`${U}down_blocks_1_2_attention_attn_out_proj`, 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.out_proj.weight` }], 4),
];

/** lora_prior_te_ modules onto the all-in-one file's CLIP-G (ComfyUI: `text_encoder.clip_g.transformer.`). */
const TE = 'text_encoder.clip_g.transformer.';
const onTextEncoder: LoraSpec[] = [
  kohyaSpec('lora_prior_te_text_model_encoder_layers_0_self_attn_q_proj', 2, 6, 6, [{ key: `${TE}text_model.encoder.layers.0.self_attn.q_proj.weight` }], 1),
  kohyaSpec('lora_prior_te_text_model_encoder_layers_1_mlp_fc1', 2, 24, 6, [{ key: `${TE}text_model.encoder.layers.1.mlp.fc1.weight` }], 1),
];
/** The same CLIP-G under the names ComfyUI's key map also gives it (no CLIP-L beside it): `lora_te_` and diffusers' `text_encoder.`. */
const onTextEncoderOtherNames: LoraSpec[] = [
  kohyaSpec('lora_te_text_model_encoder_layers_1_self_attn_v_proj', 2, 6, 6, [{ key: `${TE}text_model.encoder.layers.1.self_attn.v_proj.weight` }], 3),
  {
    down: 'text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_A.weight', up: 'text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_B.weight',
    r: 2, out: 6, in: 24, lands: [{ key: `${TE}text_model.encoder.layers.0.mlp.fc2.weight` }], scale: 1,
  },
];
const ALL_IN_ONE = 'stable_cascade_stage_c.safetensors';

/** Stage B: attention at levels 2 and 3 (down_blocks.2/3, up_blocks.1/0), widths c2 = c3 = 4·c0. */
const [, , c2, c3] = STAGE_B.c;
const { cond: bCond, clip: bClip } = STAGE_B;
const SB = 'stage_b_bf16.safetensors';
/** ComfyUI-named stage B modules onto Stability's file (prefix `p`): q, k, v on thirds of in_proj_weight, the rest by name. */
const onStageB = (p: string): LoraSpec[] => [
  kohyaSpec('lora_unet_down_blocks_2_2_attention_attn_to_q', 4, c2, c2, [{ key: `${p}down_blocks.2.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c2) }], 8),
  kohyaSpec('lora_unet_down_blocks_3_2_attention_attn_to_k', 4, c3, c3, [{ key: `${p}down_blocks.3.2.attention.attn.in_proj_weight`, rows: rowsAt(c3, c3) }], 8),
  kohyaSpec('lora_unet_up_blocks_0_2_attention_attn_to_v', 4, c3, c3, [{ key: `${p}up_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(2 * c3, c3) }], 8),
  kohyaSpec('diffusion_model.up_blocks.1.2.attention.attn.to_q', 4, c2, c2, [{ key: `${p}up_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c2) }], 2),
  kohyaSpec('lora_unet_up_blocks_1_2_attention_attn_out_proj', 4, c2, c2, [{ key: `${p}up_blocks.1.2.attention.attn.out_proj.weight` }], 8),
  kohyaSpec('lora_unet_down_blocks_2_2_kv_mapper_1', 4, c2, bCond, [{ key: `${p}down_blocks.2.2.kv_mapper.1.weight` }], 8),
  kohyaSpec('lora_unet_up_blocks_1_0_channelwise_0', 4, 4 * c2, 2 * c2, [{ key: `${p}up_blocks.1.0.channelwise.0.weight` }], 8),
  kohyaSpec('lora_unet_clip_mapper', 4, 4 * bCond, bClip, [{ key: `${p}clip_mapper.weight` }], 8),
];
/** onto a stage B checkpoint ComfyUI saved (q, k, v split): every module by name. */
const onStageBComfySaved = (p: string): LoraSpec[] => [
  kohyaSpec('lora_unet_down_blocks_2_2_attention_attn_to_q', 4, c2, c2, [{ key: `${p}down_blocks.2.2.attention.attn.to_q.weight` }], 4),
  kohyaSpec('diffusion_model.up_blocks.0.2.attention.attn.to_v', 4, c3, c3, [{ key: `${p}up_blocks.0.2.attention.attn.to_v.weight` }], 4),
];

/**
 * OneTrainer's ORIGINAL (bare) and COMFY (`diffusion_model.`) forms: `lora_A` / `lora_B` with the
 * module's `.alpha` kept (LoRASaverMixin._save_original / _save_comfy, convert_lora_suffix_ab with
 * peft_convention=False), read back as α/r.
 */
const otSpec = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec => ({
  down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands,
  scale: alpha / r, extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
});
/**
 * OneTrainer's Stable Cascade prior in its ORIGINAL names (WuerstchenModel.diffusers_to_original:
 * to_q, to_k, to_v → `attention.attn.in_proj.0`, `.1`, `.2`, to_out.0 → `attention.attn.out_proj`,
 * every other module by its name), under `prefix` ('' ORIGINAL, `diffusion_model.` COMFY), onto
 * Stability's file (base prefix `p`): in_proj.N on rows [N·c, (N+1)·c) of in_proj_weight.
 */
const oneTrainerOriginal = (prefix: string, p: string): LoraSpec[] => [
  otSpec(`${prefix}down_blocks.0.2.attention.attn.in_proj.0`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 2),
  otSpec(`${prefix}down_blocks.0.2.attention.attn.in_proj.1`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(c, c) }], 2),
  otSpec(`${prefix}up_blocks.1.2.attention.attn.in_proj.2`, 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(2 * c, c) }], 2),
  otSpec(`${prefix}up_blocks.0.2.attention.attn.out_proj`, 4, c, c, [{ key: `${p}up_blocks.0.2.attention.attn.out_proj.weight` }], 2),
  otSpec(`${prefix}down_blocks.1.1.mapper`, 4, 2 * c, STAGE_C.r, [{ key: `${p}down_blocks.1.1.mapper.weight` }], 2),
  otSpec(`${prefix}clip_txt_pooled_mapper`, 4, 4 * cond, clip, [{ key: `${p}clip_txt_pooled_mapper.weight` }], 2),
];
/**
 * OneTrainer's KOHYA form of the prior (lora_kohya_conversion: kohya-ss's `lora_unet` prefix over the
 * same ORIGINAL body, flattened; `lora_down` / `lora_up` / `.alpha`).
 */
const oneTrainerKohya = (p: string): LoraSpec[] => [
  kohyaSpec('lora_unet_down_blocks_1_2_attention_attn_in_proj_0', 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 8),
  kohyaSpec('lora_unet_up_blocks_0_2_attention_attn_in_proj_2', 4, c, c, [{ key: `${p}up_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(2 * c, c) }], 8),
  kohyaSpec('lora_unet_up_blocks_0_2_kv_mapper_1', 4, c, cond, [{ key: `${p}up_blocks.0.2.kv_mapper.1.weight` }], 8),
];
/**
 * kohya sd-scripts' stable-cascade branch (networks/lora.py on library/stable_cascade.py's StageC,
 * whose Attention2D keeps `attn.to_q`, `to_k`, `to_v`, `out_proj` as separate Linears): `lora_unet_` +
 * the module path flattened, ComfyUI's names under kohya's usual prefix.
 */
const kohyaStageC = (p: string): LoraSpec[] => [
  kohyaSpec('lora_unet_down_blocks_0_2_attention_attn_to_k', 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(c, c) }], 4),
  kohyaSpec('lora_unet_up_blocks_1_2_attention_attn_to_q', 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 4),
  kohyaSpec('lora_unet_down_blocks_0_0_channelwise_4', 4, c, 4 * c, [{ key: `${p}down_blocks.0.0.channelwise.4.weight` }], 4),
];
/** OneTrainer's ORIGINAL names onto a checkpoint ComfyUI saved (q, k, v split): in_proj.N on to_q / to_k / to_v whole. */
const oneTrainerOnComfySaved = (p: string): LoraSpec[] => [
  otSpec('down_blocks.1.2.attention.attn.in_proj.0', 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.to_q.weight` }], 2),
  otSpec('down_blocks.1.2.attention.attn.in_proj.1', 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.to_k.weight` }], 2),
  otSpec('up_blocks.0.2.attention.attn.in_proj.2', 4, c, c, [{ key: `${p}up_blocks.0.2.attention.attn.to_v.weight` }], 2),
];
/** OneTrainer's KOHYA text encoder (`lora_te_`, its one CLIP-G) beside the prior, on the all-in-one file. */
const oneTrainerKohyaTe: LoraSpec[] = [
  kohyaSpec('lora_unet_down_blocks_0_2_attention_attn_in_proj_1', 4, c, c, [{ key: 'model.diffusion_model.down_blocks.0.2.attention.attn.to_k.weight' }], 4),
  kohyaSpec('lora_te_text_model_encoder_layers_0_self_attn_k_proj', 2, 6, 6, [{ key: `${TE}text_model.encoder.layers.0.self_attn.k_proj.weight` }], 1),
];

const SC = 'stage_c_bf16.safetensors';
const CASES: LoraCase[] = [
  {
    name: 'Stable Cascade stage C, Stability\'s file (MultiheadAttention in_proj) ← lora_prior_unet_ LoRAs', layout: 'stable-cascade',
    base: file(SC, stageCTensors(rand, 'BF16')), baseName: SC,
    adapters: [
      { file: 'cascade-lora.safetensors', specs: onCheckpoint(''), weight: 1 },
      { file: 'cascade-lora-2.safetensors', specs: onCheckpoint('').slice(0, 3), weight: -0.5 },
    ],
  },
  {
    name: 'Stable Cascade stage C, a checkpoint ComfyUI saved (model.diffusion_model., q/k/v split) ← lora_prior_unet_ LoRA',
    base: file('stable_cascade_stage_c.safetensors', stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true)), baseName: 'stable_cascade_stage_c.safetensors',
    adapters: [{ file: 'cascade-lora.safetensors', specs: onComfySaved('model.diffusion_model.'), weight: 0.8 }],
  },
  {
    name: 'Stable Cascade all-in-one (ComfyUI: stage C + text_encoder.clip_g.transformer.) ← lora_prior_unet_ and lora_prior_te_ modules',
    base: file(ALL_IN_ONE, [...stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true), ...clipGTextTensors(rand, 'BF16', TE)]), baseName: ALL_IN_ONE,
    adapters: [
      { file: 'cascade-te-lora.safetensors', specs: [...onComfySaved('model.diffusion_model.'), ...onTextEncoder], weight: 0.7 },
      { file: 'cascade-te-lora-2.safetensors', specs: onTextEncoderOtherNames, weight: -0.4 },
    ],
  },
  {
    name: 'Stable Cascade stage B, Stability\'s file (MultiheadAttention in_proj) ← ComfyUI-named LoRAs (lora_unet_, diffusion_model.)', layout: 'stable-cascade',
    base: file(SB, stageBTensors(rand, 'BF16')), baseName: SB,
    adapters: [
      { file: 'cascade-b-lora.safetensors', specs: onStageB(''), weight: 1 },
      { file: 'cascade-b-lora-2.safetensors', specs: onStageB('').slice(0, 4), weight: -0.5 },
    ],
  },
  {
    name: 'Stable Cascade stage B, a checkpoint ComfyUI saved (model.diffusion_model., q/k/v split) ← ComfyUI-named LoRA',
    base: file('stable_cascade_stage_b.safetensors', stageBTensors(rand, 'BF16', STAGE_B, 'model.diffusion_model.', true)), baseName: 'stable_cascade_stage_b.safetensors',
    adapters: [{ file: 'cascade-b-lora.safetensors', specs: onStageBComfySaved('model.diffusion_model.'), weight: 0.8 }],
  },
];

/** The header OneTrainer writes on its Stable Cascade LoRAs (resources/sd_model_spec/stable_cascade_1.0-lora.json). */
const OT = {
  'modelspec.sai_model_spec': '1.0.0', 'modelspec.architecture': 'stable-cascade-v1-prior/lora', 'modelspec.implementation': 'https://github.com/huggingface/diffusers', 'modelspec.title': 'Stable Cascade 1.0 LoRA',
};
/** OneTrainer's ORIGINAL / COMFY / KOHYA (`in_proj.N`) and kohya sd-scripts' stage C files. */
const ONETRAINER_CASES: LoraCase[] = [
  {
    name: 'Stable Cascade stage C, Stability\'s file ← OneTrainer\'s ORIGINAL, COMFY and KOHYA LoRAs (attention.attn.in_proj.0/1/2)', layout: 'stable-cascade',
    base: file(SC, stageCTensors(rand, 'BF16')), baseName: SC,
    adapters: [
      { file: 'cascade-ot-original.safetensors', specs: oneTrainerOriginal('', ''), weight: 1, metadata: OT },
      { file: 'cascade-ot-comfy.safetensors', specs: oneTrainerOriginal('diffusion_model.', '').slice(0, 4), weight: -0.5, metadata: OT },
      { file: 'cascade-ot-kohya.safetensors', specs: oneTrainerKohya(''), weight: 0.7, metadata: OT },
    ],
  },
  {
    name: 'Stable Cascade stage C, Stability\'s file ← kohya sd-scripts\' stable-cascade LoRA (lora_unet_ + attention.attn.to_q)', layout: 'stable-cascade',
    base: file(SC, stageCTensors(rand, 'BF16')), baseName: SC,
    adapters: [{ file: 'cascade-kohya.safetensors', specs: kohyaStageC(''), weight: 0.9 }],
  },
  {
    name: 'Stable Cascade stage C, a checkpoint ComfyUI saved (q/k/v split) ← OneTrainer\'s ORIGINAL LoRA (in_proj.N on to_q/to_k/to_v)', layout: 'stable-cascade',
    base: file('stable_cascade_stage_c.safetensors', stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true)), baseName: 'stable_cascade_stage_c.safetensors',
    adapters: [{ file: 'cascade-ot-original.safetensors', specs: oneTrainerOnComfySaved('model.diffusion_model.'), weight: 0.6, metadata: OT }],
  },
  {
    name: 'Stable Cascade all-in-one ← OneTrainer\'s KOHYA LoRA with its text encoder (lora_unet_…_in_proj_1, lora_te_)', layout: 'stable-cascade',
    base: file(ALL_IN_ONE, [...stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true), ...clipGTextTensors(rand, 'BF16', TE)]), baseName: ALL_IN_ONE,
    adapters: [{ file: 'cascade-ot-kohya-te.safetensors', specs: oneTrainerKohyaTe, weight: 1, metadata: OT }],
  },
];

const { prepare } = loraCaseSuite([...CASES, ...ONETRAINER_CASES], rand, 'BF16');

describe('Stable Cascade names', () => {
  it('lora_prior_unet_ names the diffusion model and lora_prior_te_ the text encoder (CLIP-G), as ComfyUI maps them', () => {
    // priorStage: on a combined pipeline, its prior_prior/ and prior_text_encoder/ (wuerstchen-combined.test.ts).
    expect(moduleAddress('lora_prior_unet_down_blocks_0_2_attention_attn_to_q')).toEqual({ part: 'unet', path: 'down_blocks_0_2_attention_attn_to_q', flat: true, priorStage: true });
    expect(moduleAddress('lora_prior_te_text_model_encoder_layers_0_mlp_fc1')).toEqual({ part: 'te', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true, priorStage: true });
  });

  it('the stable-cascade layout places q, k, v on in_proj_weight, stage C and stage B; without it those are refused', async () => {
    await expectLayoutNeeded(prepare, [CASES[0], CASES[3]], stableCascade);
  });

  it('OneTrainer\'s in_proj.N and kohya\'s stage C names need the stable-cascade layout; without it they are refused', async () => {
    await expectLayoutNeeded(prepare, ONETRAINER_CASES.slice(0, 3), stableCascade);
  });

  it('an in_proj part other than 0, 1, 2, and the whole in_proj named as one module, are refused in one line each', async () => {
    const problems = await planProblemsOf(file(SC, stageCTensors(rand, 'BF16')), SC, [
      otSpec('down_blocks.0.2.attention.attn.in_proj.3', 2, c, c, [], 2),
      otSpec('down_blocks.0.2.attention.attn.in_proj', 2, 3 * c, c, [], 2),
    ], rand);
    expect(problems).toEqual([
      'lora.safetensors: module "down_blocks.0.2.attention.attn.in_proj.3": no matching tensor in the base model',
      'lora.safetensors: module "down_blocks.0.2.attention.attn.in_proj": no matching tensor in the base model',
    ]);
  });

  it('stage B: an attention on a level that has none, and q rows that do not fit, refused in one line each', async () => {
    const problems = await planProblemsOf(file(SB, stageBTensors(rand, 'BF16')), SB, [
      kohyaSpec('lora_unet_down_blocks_1_2_attention_attn_to_q', 2, STAGE_B.c[1], STAGE_B.c[1], [], 2),
      kohyaSpec('lora_unet_down_blocks_2_2_attention_attn_to_k', 2, 2 * c2, c2, [], 2),
    ], rand);
    expect(problems).toEqual([
      'lora.safetensors: module "lora_unet_down_blocks_1_2_attention_attn_to_q": no matching tensor in the UNet/transformer',
      `lora.safetensors: module "lora_unet_down_blocks_2_2_attention_attn_to_k": ΔW (${2 * c2}, ${c2}) does not fit where stable-cascade puts it (rows ${c2}–${2 * c2 - 1} of down_blocks.2.2.attention.attn.in_proj_weight): ΔW rows ${c2}–${2 * c2 - 1} land nowhere`,
    ]);
  });
});
