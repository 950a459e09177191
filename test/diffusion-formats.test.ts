/**
 * Diffusion LoRAs in every common key form onto the checkpoint layouts people hold, file to file on
 * the CPU and on WebGPU, against float64 truth: Flux (BFL single files and diffusers
 * transformers, both ways round, with kohya, diffusers/ai-toolkit, XLabs, ComfyUI and OneTrainer
 * LoRAs), SD3 (SAI files with bundled CLIPs), SDXL (diffusers-format LoRAs on SGM files, SGM-named
 * kohya LoRAs on diffusers UNets) and SD1 (the attention-processor form). Where each module's rows
 * land is written out in the specs by hand from the public sources.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import {
  FLUX, WAN, fluxBflTensors, fluxDiffusersTensors, loraTensors, rowsAt, rowsFrom, swappedHalves, tensor, wanDiffusersTensors,
  wanOriginalTensors, type LoraSpec,
} from './helpers/diffusion-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mergeAndCheckLoraCase } from './helpers/lora-case.js';

/** The CLIP modules a diffusers text encoder LoraConfig targets (target_modules, as its trainers save it in lora_adapter_metadata). */
const CLIP_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'];

const rand = seededRandom(31337);
const { h } = FLUX;
const alpha = (name: string, value: number, dtype: FixtureTensor['dtype'] = 'F32'): FixtureTensor => ({ name: `${name}.alpha`, dtype, shape: [], data: [value] });

/** A kohya / ComfyUI / OneTrainer style module: `<name>.lora_down.weight`, `.lora_up.weight`, `.alpha`. */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], a?: { value: number; dtype?: FixtureTensor['dtype'] }): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: a ? a.value / r : 1, extra: a ? [alpha(name, a.value, a.dtype)] : [],
  };
}
/** A diffusers / ai-toolkit module: `<name>.lora_A.weight`, `.lora_B.weight`; α from the file's metadata. */
function peftStyle(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number): LoraSpec {
  return { down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands, scale };
}
/** XLabs: `<name>.down.weight`, `.up.weight`, no α (scale 1). */
function xlabs(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands']): LoraSpec {
  return { down: `${name}.down.weight`, up: `${name}.up.weight`, r, out, in: inF, lands, scale: 1 };
}

interface AdapterCase { file: string; specs: LoraSpec[]; weight: number; extra?: FixtureTensor[]; metadata?: Record<string, string> }
interface Case {
  name: string;
  base: Record<string, Uint8Array | string>;
  baseName: string;
  adapters: AdapterCase[];
  /** Modules the plan must leave out (components the base lacks). */
  leftOut?: string[];
}

// --- Flux -------------------------------------------------------------------------------------

const BFL = 'flux1-dev.safetensors';
const fluxBfl = buildSafetensors(fluxBflTensors(rand, 'BF16'), { format: 'pt' });
const fluxDiffusers = buildSafetensors(fluxDiffusersTensors(rand, 'BF16'), { format: 'pt' });
const DB = (i: number, rest: string) => `double_blocks.${i}.${rest}.weight`;
const SB = (i: number, rest: string) => `single_blocks.${i}.${rest}.weight`;

/** kohya sd-scripts' Flux LoRA (networks/lora_flux.py): BFL names, lora_te1_ for CLIP-L. */
function kohyaFlux(onto: 'bfl' | 'diffusers'): LoraSpec[] {
  const bfl = onto === 'bfl';
  const T = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
  const S = (i: number, rest: string) => `single_transformer_blocks.${i}.${rest}.weight`;
  return [
    kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, bfl ? [{ key: DB(0, 'img_attn.qkv') }]
      : [{ key: T(0, 'attn.to_q'), rows: rowsFrom(0, h) }, { key: T(0, 'attn.to_k'), rows: rowsFrom(h, h) }, { key: T(0, 'attn.to_v'), rows: rowsFrom(2 * h, h) }],
    { value: 4, dtype: 'I64' }), // an integer α, as diffusers' convert_state_dict_to_kohya writes it
    kohya('lora_unet_double_blocks_1_txt_attn_proj', 2, h, h, [{ key: bfl ? DB(1, 'txt_attn.proj') : T(1, 'attn.to_add_out') }], { value: 1 }),
    kohya('lora_unet_single_blocks_1_linear1', 3, 7 * h, h, bfl ? [{ key: SB(1, 'linear1') }] : [
      { key: S(1, 'attn.to_q'), rows: rowsFrom(0, h) }, { key: S(1, 'attn.to_k'), rows: rowsFrom(h, h) },
      { key: S(1, 'attn.to_v'), rows: rowsFrom(2 * h, h) }, { key: S(1, 'proj_mlp'), rows: rowsFrom(3 * h, 4 * h) },
    ], { value: 1.5, dtype: 'BF16' }),
    kohya('lora_unet_single_blocks_0_modulation_lin', 2, 3 * h, h, [{ key: bfl ? SB(0, 'modulation.lin') : S(0, 'norm.linear') }]),
    kohya('lora_unet_final_layer_adaLN_modulation_1', 2, 2 * h, h,
      [bfl ? { key: 'final_layer.adaLN_modulation.1.weight' } : { key: 'norm_out.linear.weight', rows: swappedHalves(h) }], { value: 2 }),
    kohya('lora_unet_img_in', 2, h, FLUX.inChannels, [{ key: bfl ? 'img_in.weight' : 'x_embedder.weight' }], { value: 2 }),
    kohya('lora_unet_time_in_out_layer', 2, h, h, [{ key: bfl ? 'time_in.out_layer.weight' : 'time_text_embed.timestep_embedder.linear_2.weight' }], { value: 2 }),
  ];
}
const kohyaFluxTe = [kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, 12, 12, [], { value: 1 })];

/** diffusers' Flux trainers and ai-toolkit: transformer.* names, α in lora_adapter_metadata. */
const aiToolkitFlux: LoraSpec[] = [
  peftStyle('transformer.transformer_blocks.1.attn.to_k', 4, h, h, [{ key: DB(1, 'img_attn.qkv'), rows: rowsAt(h, h) }], 2),
  peftStyle('transformer.transformer_blocks.0.attn.add_v_proj', 4, h, h, [{ key: DB(0, 'txt_attn.qkv'), rows: rowsAt(2 * h, h) }], 2),
  peftStyle('transformer.transformer_blocks.0.ff_context.net.2', 4, h, 4 * h, [{ key: DB(0, 'txt_mlp.2') }], 2),
  peftStyle('transformer.single_transformer_blocks.0.attn.to_q', 4, h, h, [{ key: SB(0, 'linear1'), rows: rowsAt(0, h) }], 2),
  peftStyle('transformer.single_transformer_blocks.0.proj_mlp', 4, 4 * h, h, [{ key: SB(0, 'linear1'), rows: rowsAt(3 * h, 4 * h) }], 2),
  // alpha_pattern {proj_out: 2} matches every module whose path ends in proj_out (PEFT's `(.*\.)?key$`).
  peftStyle('transformer.single_transformer_blocks.1.proj_out', 4, h, 5 * h, [{ key: SB(1, 'linear2') }], 0.5),
  peftStyle('transformer.norm_out.linear', 4, 2 * h, h, [{ key: 'final_layer.adaLN_modulation.1.weight', rows: swappedHalves(h) }], 2),
  peftStyle('transformer.proj_out', 4, FLUX.inChannels, h, [{ key: 'final_layer.linear.weight' }], 0.5), // alpha_pattern
  peftStyle('transformer.x_embedder', 4, h, FLUX.inChannels, [{ key: 'img_in.weight' }], 2),
  peftStyle('transformer.time_text_embed.guidance_embedder.linear_1', 4, h, FLUX.time, [{ key: 'guidance_in.in_layer.weight' }], 2),
];
const aiToolkitMetadata = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({
    'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.alpha_pattern': { proj_out: 2 }, 'transformer.rank_pattern': {},
    'transformer.use_rslora': false, 'transformer.use_dora': false, 'transformer.target_modules': ['to_k', 'add_v_proj'], 'transformer.peft_type': 'LORA',
  }),
};

/** XLabs' processor LoRAs (x-flux): scale 1. */
function xlabsFlux(onto: 'bfl' | 'diffusers'): LoraSpec[] {
  const bfl = onto === 'bfl';
  const T = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
  const S = (i: number, rest: string) => `single_transformer_blocks.${i}.${rest}.weight`;
  return [
    xlabs('double_blocks.0.processor.qkv_lora1', 4, 3 * h, h, bfl ? [{ key: DB(0, 'img_attn.qkv') }]
      : [{ key: T(0, 'attn.to_q'), rows: rowsFrom(0, h) }, { key: T(0, 'attn.to_k'), rows: rowsFrom(h, h) }, { key: T(0, 'attn.to_v'), rows: rowsFrom(2 * h, h) }]),
    xlabs('double_blocks.1.processor.proj_lora2', 4, h, h, [{ key: bfl ? DB(1, 'txt_attn.proj') : T(1, 'attn.to_add_out') }]),
    xlabs('single_blocks.1.processor.qkv_lora', 4, 3 * h, h, bfl ? [{ key: SB(1, 'linear1'), rows: rowsAt(0, 3 * h) }]
      : [{ key: S(1, 'attn.to_q'), rows: rowsFrom(0, h) }, { key: S(1, 'attn.to_k'), rows: rowsFrom(h, h) }, { key: S(1, 'attn.to_v'), rows: rowsFrom(2 * h, h) }]),
    xlabs('single_blocks.0.processor.proj_lora', 4, h, 5 * h, [{ key: bfl ? SB(0, 'linear2') : S(0, 'proj_out') }]),
  ];
}

/** ComfyUI's "Extract and Save Lora": diffusion_model.<BFL path>.lora_up/lora_down with α. */
const comfyFlux: LoraSpec[] = [
  kohya('diffusion_model.double_blocks.0.img_mod.lin', 2, 6 * h, h, [{ key: DB(0, 'img_mod.lin') }], { value: 2 }),
  kohya('diffusion_model.single_blocks.1.modulation.lin', 2, 3 * h, h, [{ key: SB(1, 'modulation.lin') }], { value: 1 }),
];

/** OneTrainer's Flux LoRAs: diffusers names flattened under lora_transformer_, T5 as lora_te2_. */
const oneTrainerFlux: LoraSpec[] = [
  kohya('lora_transformer_single_transformer_blocks_1_attn_to_v', 2, h, h, [{ key: SB(1, 'linear1'), rows: rowsAt(2 * h, h) }], { value: 2 }),
  kohya('lora_transformer_transformer_blocks_0_norm1_context_linear', 2, 6 * h, h, [{ key: DB(0, 'txt_mod.lin') }], { value: 1 }),
];
const oneTrainerTe = [kohya('lora_te2_encoder_block_0_layer_0_SelfAttention_q', 2, 8, 8, [], { value: 2 })];

// --- SD3 ------------------------------------------------------------------------------------------

const SD3 = 'sd3_medium_incl_clips.safetensors';
const J = (i: number, rest: string) => `model.diffusion_model.joint_blocks.${i}.${rest}.weight`;
const CLIP_L = 'text_encoders.clip_l.transformer.text_model.encoder.layers.0';
const CLIP_G = 'text_encoders.clip_g.transformer.text_model.encoder.layers.0';
const sd3Base = buildSafetensors([
  tensor(rand, 'model.diffusion_model.x_embedder.proj.weight', [h, 4, 2, 2], 'F16'),
  tensor(rand, 'model.diffusion_model.context_embedder.weight', [h, 12], 'F16'),
  tensor(rand, 'model.diffusion_model.t_embedder.mlp.0.weight', [h, 6], 'F16'),
  // Block 0 is a full joint block (with SD3.5's attn2); block 1, the last, has a pre-only context block.
  ...['x_block', 'context_block'].flatMap((s) => [
    tensor(rand, J(0, `${s}.adaLN_modulation.1`), [6 * h, h], 'F16'), tensor(rand, J(0, `${s}.attn.qkv`), [3 * h, h], 'F16'),
    tensor(rand, J(0, `${s}.attn.proj`), [h, h], 'F16'), tensor(rand, J(0, `${s}.mlp.fc1`), [4 * h, h], 'F16'), tensor(rand, J(0, `${s}.mlp.fc2`), [h, 4 * h], 'F16'),
  ]),
  tensor(rand, J(0, 'x_block.attn2.qkv'), [3 * h, h], 'F16'), tensor(rand, J(0, 'x_block.attn2.proj'), [h, h], 'F16'),
  tensor(rand, J(1, 'x_block.adaLN_modulation.1'), [6 * h, h], 'F16'), tensor(rand, J(1, 'x_block.attn.qkv'), [3 * h, h], 'F16'),
  tensor(rand, J(1, 'x_block.attn.proj'), [h, h], 'F16'),
  tensor(rand, J(1, 'context_block.adaLN_modulation.1'), [2 * h, h], 'F16'), tensor(rand, J(1, 'context_block.attn.qkv'), [3 * h, h], 'F16'),
  tensor(rand, 'model.diffusion_model.final_layer.adaLN_modulation.1.weight', [2 * h, h], 'F16'),
  tensor(rand, 'model.diffusion_model.final_layer.linear.weight', [16, h], 'F16'),
  tensor(rand, `${CLIP_L}.self_attn.q_proj.weight`, [12, 12], 'F16'),
  tensor(rand, `${CLIP_G}.self_attn.q_proj.weight`, [16, 16], 'F16'),
  tensor(rand, 'text_encoders.clip_g.transformer.text_projection.weight', [16, 16], 'F16'),
]);
const sd3Lora: LoraSpec[] = [
  peftStyle('transformer.transformer_blocks.0.attn.to_q', 4, h, h, [{ key: J(0, 'x_block.attn.qkv'), rows: rowsAt(0, h) }], 1),
  peftStyle('transformer.transformer_blocks.0.attn2.to_k', 4, h, h, [{ key: J(0, 'x_block.attn2.qkv'), rows: rowsAt(h, h) }], 1),
  peftStyle('transformer.transformer_blocks.1.attn.add_v_proj', 4, h, h, [{ key: J(1, 'context_block.attn.qkv'), rows: rowsAt(2 * h, h) }], 1),
  peftStyle('transformer.transformer_blocks.0.norm1_context.linear', 4, 6 * h, h, [{ key: J(0, 'context_block.adaLN_modulation.1') }], 1),
  // The last block's context modulation and the final one store shift and scale the other way round.
  peftStyle('transformer.transformer_blocks.1.norm1_context.linear', 4, 2 * h, h, [{ key: J(1, 'context_block.adaLN_modulation.1'), rows: swappedHalves(h) }], 1),
  peftStyle('transformer.norm_out.linear', 4, 2 * h, h, [{ key: 'model.diffusion_model.final_layer.adaLN_modulation.1.weight', rows: swappedHalves(h) }], 1),
  peftStyle('transformer.transformer_blocks.0.ff_context.net.0.proj', 4, 4 * h, h, [{ key: J(0, 'context_block.mlp.fc1') }], 1),
  peftStyle('transformer.time_text_embed.timestep_embedder.linear_1', 4, h, 6, [{ key: 'model.diffusion_model.t_embedder.mlp.0.weight' }], 1),
  peftStyle('text_encoder.text_model.encoder.layers.0.self_attn.q_proj', 2, 12, 12, [{ key: `${CLIP_L}.self_attn.q_proj.weight` }], 1),
  peftStyle('text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj', 2, 16, 16, [{ key: `${CLIP_G}.self_attn.q_proj.weight` }], 1),
];
// kohya's SD3 LoRAs (networks/lora_sd3.py) use SAI names; a conv LoRA on the patch embedding.
const sd3Kohya: LoraSpec[] = [
  kohya('lora_unet_joint_blocks_0_context_block_attn_qkv', 2, 3 * h, h, [{ key: J(0, 'context_block.attn.qkv') }], { value: 1 }),
];

// --- SDXL and SD1 -----------------------------------------------------------------------------------

const SGM = 'sd_xl_base_1.0.safetensors';
const U = (rest: string) => `model.diffusion_model.${rest}.weight`;
const TE1 = 'conditioner.embedders.0.transformer.text_model.encoder.layers.0';
const TE2 = 'conditioner.embedders.1.model.transformer.resblocks.0';
const sdxlBase = buildSafetensors([
  tensor(rand, U('input_blocks.4.1.transformer_blocks.0.attn1.to_q'), [16, 16], 'F16'),
  tensor(rand, U('input_blocks.4.1.proj_in'), [16, 16], 'F16'),
  tensor(rand, U('middle_block.1.proj_in'), [24, 24], 'F16'),
  tensor(rand, U('middle_block.0.in_layers.2'), [24, 24, 3, 3], 'F16'),
  tensor(rand, U('output_blocks.1.1.transformer_blocks.0.attn2.to_out.0'), [24, 24], 'F16'),
  tensor(rand, U('label_emb.0.0'), [32, 20], 'F16'),
  tensor(rand, `${TE1}.self_attn.q_proj.weight`, [12, 12], 'F16'),
  tensor(rand, `${TE2}.attn.in_proj_weight`, [48, 16], 'F16'),
  tensor(rand, `${TE2}.mlp.c_fc.weight`, [32, 16], 'F16'),
  tensor(rand, 'first_stage_model.decoder.conv_in.weight', [8, 4, 3, 3], 'F16'),
]);
/** diffusers' SDXL trainer (train_dreambooth_lora_sdxl.py): unet., text_encoder., text_encoder_2. with metadata. */
const sdxlDiffusers: LoraSpec[] = [
  peftStyle('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 4, 16, 16, [{ key: U('input_blocks.4.1.transformer_blocks.0.attn1.to_q') }], 2),
  peftStyle('unet.mid_block.attentions.0.proj_in', 4, 24, 24, [{ key: U('middle_block.1.proj_in') }], 2),
  peftStyle('unet.up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0', 4, 24, 24, [{ key: U('output_blocks.1.1.transformer_blocks.0.attn2.to_out.0') }], 2),
  peftStyle('text_encoder.text_model.encoder.layers.0.self_attn.q_proj', 2, 12, 12, [{ key: `${TE1}.self_attn.q_proj.weight` }], 0.5),
  ...['q', 'k', 'v'].map((p, i) => peftStyle(`text_encoder_2.text_model.encoder.layers.0.self_attn.${p}_proj`, 2, 16, 16,
    [{ key: `${TE2}.attn.in_proj_weight`, rows: rowsAt(16 * i, 16) }], 1.5)),
  peftStyle('text_encoder_2.text_model.encoder.layers.0.mlp.fc1', 2, 32, 16, [{ key: `${TE2}.mlp.c_fc.weight` }], 1.5),
];
const sdxlDiffusersMetadata = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({
    'unet.r': 4, 'unet.lora_alpha': 8, 'text_encoder.r': 2, 'text_encoder.lora_alpha': 1, 'text_encoder_2.r': 2, 'text_encoder_2.lora_alpha': 3,
    'text_encoder.target_modules': CLIP_TARGETS, 'text_encoder_2.target_modules': CLIP_TARGETS,
  }),
};
const sdxlUnetFolder = {
  'diffusion_pytorch_model.safetensors': buildSafetensors([
    tensor(rand, 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', [16, 16], 'F16'),
    tensor(rand, 'mid_block.resnets.0.conv1.weight', [24, 24, 3, 3], 'F16'),
    tensor(rand, 'add_embedding.linear_1.weight', [32, 20], 'F16'),
    tensor(rand, 'up_blocks.0.upsamplers.0.conv.weight', [24, 24, 3, 3], 'F16'),
  ]),
  'config.json': JSON.stringify({ _class_name: 'UNet2DConditionModel', _diffusers_version: '0.30.0' }),
};
/** kohya's SDXL LoRAs name the SGM checkpoint's modules; here on a diffusers UNet folder. */
const sdxlKohyaOnDiffusers: LoraSpec[] = [
  kohya('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', 4, 16, 16, [{ key: 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight' }], { value: 2 }),
  { ...kohya('lora_unet_middle_block_0_in_layers_2', 2, 24, 24, [{ key: 'mid_block.resnets.0.conv1.weight' }], { value: 1 }) },
  kohya('lora_unet_label_emb_0_0', 2, 32, 20, [{ key: 'add_embedding.linear_1.weight' }], { value: 1 }),
];
const sdxlKohyaTe = [kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, 12, 12, [], { value: 1 })];

const SD15 = 'v1-5-pruned-emaonly.safetensors';
const sd15Base = buildSafetensors([
  tensor(rand, U('input_blocks.1.1.transformer_blocks.0.attn1.to_q'), [16, 16], 'F16'),
  tensor(rand, U('output_blocks.5.1.transformer_blocks.0.attn2.to_out.0'), [16, 16], 'F16'),
  tensor(rand, 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight', [12, 12], 'F16'),
]);
/** diffusers 0.19/0.20's attention processors: `…attn1.processor.to_q_lora.down.weight`, scale 1. */
const sd15Processor: LoraSpec[] = [
  { down: 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight', up: 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight', r: 4, out: 16, in: 16, scale: 1, lands: [{ key: U('input_blocks.1.1.transformer_blocks.0.attn1.to_q') }] },
  { down: 'unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.down.weight', up: 'unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight', r: 4, out: 16, in: 16, scale: 1, lands: [{ key: U('output_blocks.5.1.transformer_blocks.0.attn2.to_out.0') }] },
  { down: 'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight', up: 'text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight', r: 2, out: 12, in: 12, scale: 1, lands: [{ key: 'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.k_proj.weight' }] },
];

// --- Wan 2.1 / 2.2 ---------------------------------------------------------------------------------

const WAN_FILE = 'wan2.1_i2v_480p_14B_bf16.safetensors';
const wanOriginal = buildSafetensors(wanOriginalTensors(rand, 'BF16'));
const wanDiffusers = buildSafetensors(wanDiffusersTensors(rand, 'BF16'));
const { dim, ffn } = WAN;

/** diffusers' Wan LoRAs (diffusers/finetrainers trainers): transformer.* diffusers names, α in lora_adapter_metadata. */
const wanDiffusersLora: LoraSpec[] = [
  peftStyle('transformer.blocks.0.attn1.to_q', 4, dim, dim, [{ key: 'blocks.0.self_attn.q.weight' }], 2),
  peftStyle('transformer.blocks.1.attn1.to_out.0', 4, dim, dim, [{ key: 'blocks.1.self_attn.o.weight' }], 2),
  peftStyle('transformer.blocks.0.attn2.add_k_proj', 4, dim, dim, [{ key: 'blocks.0.cross_attn.k_img.weight' }], 2),
  peftStyle('transformer.blocks.1.attn2.to_v', 4, dim, dim, [{ key: 'blocks.1.cross_attn.v.weight' }], 2),
  peftStyle('transformer.blocks.1.ffn.net.0.proj', 4, ffn, dim, [{ key: 'blocks.1.ffn.0.weight' }], 2),
  peftStyle('transformer.blocks.0.ffn.net.2', 4, dim, ffn, [{ key: 'blocks.0.ffn.2.weight' }], 2),
  peftStyle('transformer.condition_embedder.time_proj', 4, 6 * dim, dim, [{ key: 'time_projection.1.weight' }], 2),
  peftStyle('transformer.condition_embedder.image_embedder.ff.net.2', 4, dim, WAN.img, [{ key: 'img_emb.proj.3.weight' }], 2),
  peftStyle('transformer.proj_out', 4, WAN.patchOut, dim, [{ key: 'head.head.weight' }], 2),
];
const wanDiffusersMetadata = {
  format: 'pt',
  lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA' }),
};
/** Flattened diffusers names (OneTrainer's own key form) on Wan's own file. */
const wanFlatDiffusers: LoraSpec[] = [
  kohya('lora_transformer_blocks_1_attn1_to_k', 2, dim, dim, [{ key: 'blocks.1.self_attn.k.weight' }], { value: 1 }),
  kohya('lora_transformer_condition_embedder_text_embedder_linear_1', 2, dim, WAN.text, [{ key: 'text_embedding.0.weight' }], { value: 2 }),
];

/** musubi-tuner's Wan LoRAs (networks/lora_wan.py): kohya form on Wan's own names; ComfyUI's diffusion_model. form. */
const wanMusubi: LoraSpec[] = [
  kohya('lora_unet_blocks_0_self_attn_v', 4, dim, dim, [{ key: 'blocks.0.attn1.to_v.weight' }], { value: 4 }),
  kohya('lora_unet_blocks_1_cross_attn_o', 4, dim, dim, [{ key: 'blocks.1.attn2.to_out.0.weight' }], { value: 2 }),
  kohya('lora_unet_blocks_1_cross_attn_v_img', 4, dim, dim, [{ key: 'blocks.1.attn2.add_v_proj.weight' }], { value: 1 }),
  kohya('lora_unet_blocks_0_ffn_0', 4, ffn, dim, [{ key: 'blocks.0.ffn.net.0.proj.weight' }], { value: 4 }),
  kohya('lora_unet_time_embedding_2', 2, dim, dim, [{ key: 'condition_embedder.time_embedder.linear_2.weight' }], { value: 1 }),
];
const wanComfy: LoraSpec[] = [
  peftStyle('diffusion_model.blocks.1.ffn.2', 3, dim, ffn, [{ key: 'blocks.1.ffn.net.2.weight' }], 1),
  peftStyle('diffusion_model.head.head', 3, WAN.patchOut, dim, [{ key: 'proj_out.weight' }], 1),
  peftStyle('diffusion_model.img_emb.proj.1', 3, WAN.img, WAN.img, [{ key: 'condition_embedder.image_embedder.ff.net.0.proj.weight' }], 1),
];

const CASES: Case[] = [
  {
    name: 'Flux BFL single file ← kohya (+CLIP-L modules), ai-toolkit, XLabs, ComfyUI and OneTrainer LoRAs together',
    base: { [BFL]: fluxBfl }, baseName: BFL,
    adapters: [
      { file: 'kohya-flux.safetensors', specs: [...kohyaFlux('bfl'), ...kohyaFluxTe], weight: 0.8, metadata: { ss_network_module: 'networks.lora_flux', ss_base_model_version: 'flux1' } },
      { file: 'pytorch_lora_weights.safetensors', specs: aiToolkitFlux, weight: 1, metadata: aiToolkitMetadata },
      { file: 'xlabs-realism.safetensors', specs: xlabsFlux('bfl'), weight: -0.5 },
      { file: 'comfyui-extracted.safetensors', specs: comfyFlux, weight: 1 },
      { file: 'onetrainer-flux.safetensors', specs: [...oneTrainerFlux, ...oneTrainerTe], weight: 1.2 },
    ],
    leftOut: ['lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'lora_te2_encoder_block_0_layer_0_SelfAttention_q'],
  },
  {
    name: 'diffusers Flux transformer ← BFL-named kohya and XLabs LoRAs (one module onto three or four tensors)',
    base: { 'diffusion_pytorch_model.safetensors': fluxDiffusers, 'config.json': JSON.stringify({ _class_name: 'FluxTransformer2DModel' }) },
    baseName: 'transformer',
    adapters: [
      { file: 'kohya-flux.safetensors', specs: kohyaFlux('diffusers'), weight: 1 },
      { file: 'xlabs.safetensors', specs: xlabsFlux('diffusers'), weight: 0.7 },
    ],
  },
  {
    name: 'Wan I2V in Wan\'s own naming ← diffusers-named Wan LoRAs (dotted and flattened)',
    base: { [WAN_FILE]: wanOriginal }, baseName: WAN_FILE,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: wanDiffusersLora, weight: 0.8, metadata: wanDiffusersMetadata },
      { file: 'onetrainer-wan.safetensors', specs: wanFlatDiffusers, weight: 1 },
    ],
  },
  {
    name: 'diffusers Wan transformer ← musubi-tuner and ComfyUI LoRAs in Wan\'s own naming',
    base: { 'diffusion_pytorch_model.safetensors': wanDiffusers, 'config.json': JSON.stringify({ _class_name: 'WanTransformer3DModel' }) },
    baseName: 'transformer',
    adapters: [
      { file: 'musubi-wan.safetensors', specs: wanMusubi, weight: 1, metadata: { ss_network_module: 'networks.lora_wan' } },
      { file: 'comfyui-wan.safetensors', specs: wanComfy, weight: -0.6 },
    ],
  },
  {
    name: 'SD3 SAI file with bundled CLIPs ← diffusers SD3 LoRA (swapped last norm1_context) and a kohya one',
    base: { [SD3]: sd3Base }, baseName: SD3,
    adapters: [
      { file: 'sd3-lora.safetensors', specs: sd3Lora, weight: 1 },
      { file: 'sd3-kohya.safetensors', specs: sd3Kohya, weight: 0.6 },
    ],
  },
  {
    name: 'SDXL SGM file ← diffusers-format SDXL LoRA (UNet, CLIP-L, OpenCLIP-G q/k/v on in_proj rows)',
    base: { [SGM]: sdxlBase }, baseName: SGM,
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: sdxlDiffusers, weight: 0.9, metadata: sdxlDiffusersMetadata }],
  },
  {
    name: 'diffusers SDXL UNet folder ← SGM-named kohya SDXL LoRA (+CLIP-L modules left out)',
    base: sdxlUnetFolder, baseName: 'unet',
    adapters: [{ file: 'kohya-sdxl.safetensors', specs: [...sdxlKohyaOnDiffusers, ...sdxlKohyaTe], weight: 1 }],
    leftOut: ['lora_te1_text_model_encoder_layers_0_self_attn_q_proj'],
  },
  {
    name: 'SD1.5 LDM file ← the attention-processor form and lora_linear_layer text-encoder modules',
    base: { [SD15]: sd15Base }, baseName: SD15,
    adapters: [{ file: 'old-diffusers-lora.safetensors', specs: sd15Processor, weight: 1 }],
  },
];

/** The conv LoRA of the SGM→diffusers case stores its down factor (r, in, 3, 3). */
function adapterBytes(c: AdapterCase): Uint8Array {
  const tensors = loraTensors(rand, c.specs, 'BF16').map((t) => (t.name === 'lora_unet_middle_block_0_in_layers_2.lora_down.weight'
    ? tensor(rand, t.name, [2, 24, 3, 3], 'BF16', 0.5)
    : t.name === 'lora_unet_middle_block_0_in_layers_2.lora_up.weight' ? tensor(rand, t.name, [24, 2, 1, 1], 'BF16', 0.5) : t));
  return buildSafetensors([...tensors, ...(c.extra ?? [])], c.metadata);
}
const ADAPTER_BYTES = new Map(CASES.flatMap((c) => c.adapters.map((a) => [a, adapterBytes(a)] as const)));

const backends = mergeBackends({ cpu: 'default' });

for (const c of CASES) {
  describe(c.name, () => {
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`merges exactly on ${kind}`, async () => {
        const prepared = await prepareMerge(memoryInputFileSet(c.base, c.baseName), c.adapters.map((a) => ({
          files: memoryInputFileSet({ [a.file]: ADAPTER_BYTES.get(a)! }, a.file), weight: a.weight,
        })));
        expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
        expect(prepared.plan.leftOut.map((m) => m.module)).toEqual(c.leftOut ?? []);
        const merged = await mergeAndCheckLoraCase(prepared, backends[kind]!, c.base, c.adapters.map((a) => ({ bytes: ADAPTER_BYTES.get(a)!, specs: a.specs, weight: a.weight })));
        if (c.leftOut) expect(JSON.parse(merged.metadata['loramerge.left_out']).map((m: { module: string }) => m.module)).toEqual(c.leftOut);
      });
    }
  });
}
