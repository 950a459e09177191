/**
 * LoRAs for Tencent's Hunyuan DiTs (HunyuanVideo T2V and I2V, HunyuanImage 2.1, HunyuanVideo 1.5)
 * in every naming people train and share them in, onto bases in each naming, file to file on the
 * CPU and on WebGPU, against float64 truth:
 * - Tencent's naming (musubi-tuner's and sd-scripts' kohya files, diffusion-pipe's PEFT folders,
 *   Tencent's own I2V LoRAs under `Hunyuan_video_I2V_lora_`) and ComfyUI's (its extracted and
 *   converted LoRAs: `img_attn.qkv`, `img_mlp.0`, `img_mod.lin`, `time_in.in_layer`);
 * - diffusers' (its trainers and finetrainers: `transformer.transformer_blocks.N.attn.to_q`;
 *   OneTrainer's flattened `lora_transformer_…`).
 * Where each module's rows land is written out by hand in the specs, from diffusers'
 * convert_hunyuan_video_to_diffusers.py (and its HunyuanImage 2.1 and HunyuanVideo 1.5 twins):
 * q, k, v are the thirds of a fused qkv, single-block linear1 is q, k, v (h rows each) then the
 * MLP's 4h rows, and final_layer.adaLN_modulation.1 holds (shift, scale) where norm_out.linear
 * holds (scale, shift).
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { hunyuanVideo } from '../src/formats/layouts/hunyuan-video.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { fluxBflTensors, loraTensors, rowsAt, rowsFrom, swappedHalves, tensor, type LoraSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import {
  HUNYUAN, HUNYUAN_15, HUNYUAN_I2V, HUNYUAN_IMAGE, comfyHunyuanName, hiddenOf, hunyuanComfyTensors, hunyuanDiffusersConfig, hunyuanDiffusersTensors, hunyuanOriginalTensors,
} from './helpers/hunyuan-fixtures.js';
import { loraCaseSuite, withoutLayout, type LoraCase, type LoraCaseAdapterSpec } from './helpers/lora-case.js';

const rand = seededRandom(20241203);
const h = hiddenOf(HUNYUAN);
const { text, pooled, freq, patchOut } = HUNYUAN;

/** kohya form (musubi-tuner, ComfyUI's extracted LoRAs, OneTrainer): `.lora_down/.lora_up.weight` and `.alpha`. */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha?: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha === undefined ? 1 : alpha / r, extra: alpha === undefined ? [] : [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}
/** A fused module of `parts` × h rows onto separate tensors: ΔW rows [i·h, (i+1)·h) onto tensor i. */
const split = (keys: string[], units: number[] = keys.map(() => 1)): LoraSpec['lands'] => {
  let at = 0;
  return keys.map((key, i) => {
    const lands = { key, rows: rowsFrom(at * h, units[i] * h) };
    at += units[i];
    return lands;
  });
};

type AdapterCase = LoraCaseAdapterSpec;
type Case = LoraCase;

// --- Tencent's naming on the base (Comfy-Org's and Kijai's single files) -----------------------------

const T2V_FILE = 'hunyuan_video_t2v_720p_bf16.safetensors';
const originalBase = buildSafetensors(hunyuanOriginalTensors(rand, 'BF16'));
const DB = (i: number, rest: string) => `double_blocks.${i}.${rest}.weight`;
const SB = (i: number, rest: string) => `single_blocks.${i}.${rest}.weight`;
const REF = (i: number, rest: string) => `txt_in.individual_token_refiner.blocks.${i}.${rest}.weight`;

/** diffusers' HunyuanVideo LoRA trainers: transformer.* in diffusers' names, α in lora_adapter_metadata. */
const diffusersLora: LoraSpec[] = [
  peftSpec('transformer.transformer_blocks.0.attn.to_k', 4, h, h, [{ key: DB(0, 'img_attn_qkv'), rows: rowsAt(h, h) }], 2),
  peftSpec('transformer.transformer_blocks.1.attn.add_v_proj', 4, h, h, [{ key: DB(1, 'txt_attn_qkv'), rows: rowsAt(2 * h, h) }], 2),
  peftSpec('transformer.transformer_blocks.0.attn.to_add_out', 4, h, h, [{ key: DB(0, 'txt_attn_proj') }], 2),
  peftSpec('transformer.transformer_blocks.1.ff.net.0.proj', 4, 4 * h, h, [{ key: DB(1, 'img_mlp.fc1') }], 2),
  peftSpec('transformer.transformer_blocks.0.ff_context.net.2', 4, h, 4 * h, [{ key: DB(0, 'txt_mlp.fc2') }], 2),
  peftSpec('transformer.transformer_blocks.1.norm1_context.linear', 4, 6 * h, h, [{ key: DB(1, 'txt_mod.linear') }], 2),
  peftSpec('transformer.single_transformer_blocks.0.attn.to_q', 4, h, h, [{ key: SB(0, 'linear1'), rows: rowsAt(0, h) }], 2),
  peftSpec('transformer.single_transformer_blocks.0.proj_mlp', 4, 4 * h, h, [{ key: SB(0, 'linear1'), rows: rowsAt(3 * h, 4 * h) }], 2),
  peftSpec('transformer.single_transformer_blocks.1.proj_out', 4, h, 5 * h, [{ key: SB(1, 'linear2') }], 2),
  peftSpec('transformer.single_transformer_blocks.1.norm.linear', 4, 3 * h, h, [{ key: SB(1, 'modulation.linear') }], 2),
  peftSpec('transformer.context_embedder.token_refiner.refiner_blocks.1.attn.to_v', 4, h, h, [{ key: REF(1, 'self_attn_qkv'), rows: rowsAt(2 * h, h) }], 2),
  // The refiner's adaLN is (gate_msa, gate_mlp) in both namings: no swap.
  peftSpec('transformer.context_embedder.token_refiner.refiner_blocks.0.norm_out.linear', 4, 2 * h, h, [{ key: REF(0, 'adaLN_modulation.1') }], 2),
  peftSpec('transformer.context_embedder.time_text_embed.text_embedder.linear_1', 4, h, text, [{ key: 'txt_in.c_embedder.linear_1.weight' }], 2),
  peftSpec('transformer.context_embedder.proj_in', 4, h, text, [{ key: 'txt_in.input_embedder.weight' }], 2),
  peftSpec('transformer.time_text_embed.guidance_embedder.linear_1', 4, h, freq, [{ key: 'guidance_in.mlp.0.weight' }], 2),
  peftSpec('transformer.time_text_embed.timestep_embedder.linear_2', 4, h, h, [{ key: 'time_in.mlp.2.weight' }], 2),
  peftSpec('transformer.time_text_embed.text_embedder.linear_1', 4, h, pooled, [{ key: 'vector_in.in_layer.weight' }], 2),
  peftSpec('transformer.norm_out.linear', 4, 2 * h, h, [{ key: 'final_layer.adaLN_modulation.1.weight', rows: swappedHalves(h) }], 2),
  peftSpec('transformer.proj_out', 4, patchOut, h, [{ key: 'final_layer.linear.weight' }], 2),
];
/** OneTrainer: diffusers' names flattened under lora_transformer_. */
const oneTrainer: LoraSpec[] = [
  kohya('lora_transformer_transformer_blocks_1_attn_to_q', 2, h, h, [{ key: DB(1, 'img_attn_qkv'), rows: rowsAt(0, h) }], 1),
  kohya('lora_transformer_single_transformer_blocks_1_attn_to_v', 2, h, h, [{ key: SB(1, 'linear1'), rows: rowsAt(2 * h, h) }], 2),
  kohya('lora_transformer_context_embedder_token_refiner_refiner_blocks_0_ff_net_0_proj', 2, 4 * h, h, [{ key: REF(0, 'mlp.fc1') }], 2),
];
/** musubi-tuner (networks.lora): Tencent's names, kohya form; on Tencent's own file they need no translation. */
const musubiOnOriginal: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, [{ key: DB(0, 'img_attn_qkv') }], 4),
];
const musubiMetadata = { ss_network_module: 'networks.lora', ss_base_model_version: 'hunyuan_video', ss_network_dim: '4', ss_network_alpha: '4' };

// --- diffusers' naming on the base (hunyuanvideo-community/HunyuanVideo-I2V/transformer) -------------

const diffusersBase = buildSafetensors(hunyuanDiffusersTensors(rand, 'BF16', HUNYUAN_I2V));
const T = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
const S = (i: number, rest: string) => `single_transformer_blocks.${i}.${rest}.weight`;
const DR = (i: number, rest: string) => `context_embedder.token_refiner.refiner_blocks.${i}.${rest}.weight`;

const musubi: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, split([T(0, 'attn.to_q'), T(0, 'attn.to_k'), T(0, 'attn.to_v')]), 4),
  kohya('lora_unet_double_blocks_1_txt_attn_qkv', 4, 3 * h, h, split([T(1, 'attn.add_q_proj'), T(1, 'attn.add_k_proj'), T(1, 'attn.add_v_proj')]), 2),
  kohya('lora_unet_double_blocks_0_img_attn_proj', 4, h, h, [{ key: T(0, 'attn.to_out.0') }], 1),
  kohya('lora_unet_double_blocks_1_img_mlp_fc1', 4, 4 * h, h, [{ key: T(1, 'ff.net.0.proj') }], 4),
  kohya('lora_unet_double_blocks_0_txt_mlp_fc2', 4, h, 4 * h, [{ key: T(0, 'ff_context.net.2') }], 4),
  kohya('lora_unet_single_blocks_1_linear1', 1, 7 * h, h, split([S(1, 'attn.to_q'), S(1, 'attn.to_k'), S(1, 'attn.to_v'), S(1, 'proj_mlp')], [1, 1, 1, 4]), 1),
  kohya('lora_unet_single_blocks_0_linear2', 4, h, 5 * h, [{ key: S(0, 'proj_out') }], 4),
];
/**
 * Tencent's HunyuanVideo-I2V LoRAs (embrace_kohaya_weights.safetensors): kohya form under its own
 * prefix, α = the PEFT config's lora_alpha = r stored in bf16, as its trainer writes them.
 */
function tencentI2v(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands']): LoraSpec {
  const m = `Hunyuan_video_I2V_lora_${name}`;
  return { down: `${m}.lora_down.weight`, up: `${m}.lora_up.weight`, r, out, in: inF, lands, scale: 1, extra: [{ name: `${m}.alpha`, dtype: 'BF16', shape: [], data: [r] }] };
}
const tencentI2vLora: LoraSpec[] = [
  tencentI2v('double_blocks_1_img_attn_qkv', 4, 3 * h, h, split([T(1, 'attn.to_q'), T(1, 'attn.to_k'), T(1, 'attn.to_v')])),
  tencentI2v('double_blocks_1_txt_mod_linear', 4, 6 * h, h, [{ key: T(1, 'norm1_context.linear') }]),
  tencentI2v('single_blocks_0_linear1', 4, 7 * h, h, split([S(0, 'attn.to_q'), S(0, 'attn.to_k'), S(0, 'attn.to_v'), S(0, 'proj_mlp')], [1, 1, 1, 4])),
  tencentI2v('txt_in_individual_token_refiner_blocks_1_mlp_fc1', 4, 4 * h, h, [{ key: DR(1, 'ff.net.0.proj') }]),
  tencentI2v('final_layer_linear', 4, patchOut, h, [{ key: 'proj_out.weight' }]),
];

/**
 * diffusion-pipe (models/hunyuan_video.py): PEFT on every Linear of the double and single blocks,
 * α forced to the rank, saved as adapter_model.safetensors with transformer. and Tencent's names
 * beside PEFT's adapter_config.json. Rank 32, above h.
 */
const diffusionPipe: LoraSpec[] = [
  peftSpec('transformer.double_blocks.1.img_mod.linear', 32, 6 * h, h, [{ key: T(1, 'norm1.linear') }], 1),
  peftSpec('transformer.double_blocks.0.img_attn_proj', 32, h, h, [{ key: T(0, 'attn.to_out.0') }], 1),
  peftSpec('transformer.double_blocks.0.img_mlp.fc2', 32, h, 4 * h, [{ key: T(0, 'ff.net.2') }], 1),
  peftSpec('transformer.double_blocks.1.txt_attn_qkv', 32, 3 * h, h, split([T(1, 'attn.add_q_proj'), T(1, 'attn.add_k_proj'), T(1, 'attn.add_v_proj')]), 1),
  peftSpec('transformer.single_blocks.0.modulation.linear', 32, 3 * h, h, [{ key: S(0, 'norm.linear') }], 1),
  peftSpec('transformer.single_blocks.1.linear1', 32, 7 * h, h, split([S(1, 'attn.to_q'), S(1, 'attn.to_k'), S(1, 'attn.to_v'), S(1, 'proj_mlp')], [1, 1, 1, 4]), 1),
];
const diffusionPipeConfig = JSON.stringify({
  peft_type: 'LORA', task_type: null, base_model_name_or_path: null, r: 32, lora_alpha: 32, lora_dropout: 0, bias: 'none',
  fan_in_fan_out: false, init_lora_weights: true, use_rslora: false, use_dora: false, rank_pattern: {}, alpha_pattern: {},
  target_modules: ['double_blocks.1.img_mod.linear', 'double_blocks.0.img_attn_proj', 'double_blocks.0.img_mlp.fc2', 'double_blocks.1.txt_attn_qkv',
    'single_blocks.0.modulation.linear', 'single_blocks.1.linear1'],
});
/**
 * Files in Tencent's naming under diffusion_model. with PEFT factors and no α (scale 1): the form
 * ComfyUI reads as its older HunyuanVideo LoRAs and diffusers' converter strips the prefix of;
 * modules outside the blocks: the text token refiner, the timestep embedder, the final layer.
 */
const diffusionModelPrefixed: LoraSpec[] = [
  peftSpec('diffusion_model.txt_in.individual_token_refiner.blocks.0.self_attn_qkv', 8, 3 * h, h, split([DR(0, 'attn.to_q'), DR(0, 'attn.to_k'), DR(0, 'attn.to_v')]), 1),
  peftSpec('diffusion_model.txt_in.t_embedder.mlp.0', 8, h, freq, [{ key: 'context_embedder.time_text_embed.timestep_embedder.linear_1.weight' }], 1),
  peftSpec('diffusion_model.final_layer.adaLN_modulation.1', 8, 2 * h, h, [{ key: 'norm_out.linear.weight', rows: swappedHalves(h) }], 1),
];
/** ComfyUI's "Extract and Save Lora" on a HunyuanVideo model: diffusion_model. and ComfyUI's own names. */
const comfyExtracted: LoraSpec[] = [
  kohya('diffusion_model.double_blocks.0.txt_attn.qkv', 3, 3 * h, h, split([T(0, 'attn.add_q_proj'), T(0, 'attn.add_k_proj'), T(0, 'attn.add_v_proj')]), 3),
  kohya('diffusion_model.double_blocks.1.img_mlp.2', 3, h, 4 * h, [{ key: T(1, 'ff.net.2') }], 3),
  kohya('diffusion_model.double_blocks.0.txt_mod.lin', 3, 6 * h, h, [{ key: T(0, 'norm1_context.linear') }], 3),
  kohya('diffusion_model.single_blocks.1.modulation.lin', 3, 3 * h, h, [{ key: S(1, 'norm.linear') }], 3),
  kohya('diffusion_model.txt_in.individual_token_refiner.blocks.1.self_attn.proj', 3, h, h, [{ key: DR(1, 'attn.to_out.0') }], 3),
  kohya('diffusion_model.txt_in.individual_token_refiner.blocks.1.mlp.2', 3, h, 4 * h, [{ key: DR(1, 'ff.net.2') }], 3),
  kohya('diffusion_model.txt_in.c_embedder.out_layer', 3, h, h, [{ key: 'context_embedder.time_text_embed.text_embedder.linear_2.weight' }], 3),
  kohya('diffusion_model.time_in.in_layer', 3, h, freq, [{ key: 'time_text_embed.timestep_embedder.linear_1.weight' }], 3),
  kohya('diffusion_model.vector_in.out_layer', 3, h, h, [{ key: 'time_text_embed.text_embedder.linear_2.weight' }], 3),
];

// --- ComfyUI's naming on the base (a checkpoint ComfyUI saved) -----------------------------------------

const COMFY_FILE = 'hunyuan_video_720_fp8_e4m3fn_comfy_saved.safetensors';
const comfyBase = buildSafetensors(hunyuanComfyTensors(rand, 'F8_E4M3', HUNYUAN, 'BF16'));
const C = (rest: string) => `model.model.${rest}.weight`;
const musubiOnComfy: LoraSpec[] = [
  kohya('lora_unet_double_blocks_1_img_mlp_fc2', 4, h, 4 * h, [{ key: C('double_blocks.1.img_mlp.2') }], 4),
  kohya('lora_unet_double_blocks_0_txt_attn_qkv', 4, 3 * h, h, [{ key: C('double_blocks.0.txt_attn.qkv') }], 2),
  kohya('lora_unet_single_blocks_0_linear1', 4, 7 * h, h, [{ key: C('single_blocks.0.linear1') }], 2),
];
const diffusersOnComfy: LoraSpec[] = [
  peftSpec('transformer.transformer_blocks.0.attn.add_k_proj', 4, h, h, [{ key: C('double_blocks.0.txt_attn.qkv'), rows: rowsAt(h, h) }], 2),
  peftSpec('transformer.transformer_blocks.1.norm1.linear', 4, 6 * h, h, [{ key: C('double_blocks.1.img_mod.lin') }], 2),
  peftSpec('transformer.single_transformer_blocks.1.proj_mlp', 4, 4 * h, h, [{ key: C('single_blocks.1.linear1'), rows: rowsAt(3 * h, 4 * h) }], 2),
  peftSpec('transformer.context_embedder.time_text_embed.timestep_embedder.linear_2', 4, h, h, [{ key: C('txt_in.t_embedder.out_layer') }], 2),
  peftSpec('transformer.context_embedder.token_refiner.refiner_blocks.1.attn.to_k', 4, h, h, [{ key: C('txt_in.individual_token_refiner.blocks.1.self_attn.qkv'), rows: rowsAt(h, h) }], 2),
  peftSpec('transformer.time_text_embed.guidance_embedder.linear_2', 4, h, h, [{ key: C('guidance_in.out_layer') }], 2),
  peftSpec('transformer.norm_out.linear', 4, 2 * h, h, [{ key: C('final_layer.adaLN_modulation.1'), rows: swappedHalves(h) }], 2),
];

// --- HunyuanImage 2.1 (the distilled model: guidance and meanflow embedders) ------------------------------

const IMAGE_FILE = 'hunyuanimage2.1-distilled_bf16.safetensors';
const imageOriginal = buildSafetensors(hunyuanOriginalTensors(rand, 'BF16', HUNYUAN_IMAGE));
const imageDiffusers = buildSafetensors(hunyuanDiffusersTensors(rand, 'BF16', HUNYUAN_IMAGE));
const { byt5 } = HUNYUAN_IMAGE as Required<typeof HUNYUAN_IMAGE>;

const diffusersImageLora: LoraSpec[] = [
  peftSpec('transformer.transformer_blocks.0.attn.to_v', 4, h, h, [{ key: DB(0, 'img_attn_qkv'), rows: rowsAt(2 * h, h) }], 2),
  peftSpec('transformer.single_transformer_blocks.1.proj_mlp', 4, 4 * h, h, [{ key: SB(1, 'linear1'), rows: rowsAt(3 * h, 4 * h) }], 2),
  peftSpec('transformer.time_guidance_embed.timestep_embedder_r.linear_1', 4, h, freq, [{ key: 'time_r_in.mlp.0.weight' }], 2),
  peftSpec('transformer.time_guidance_embed.guidance_embedder.linear_2', 4, h, h, [{ key: 'guidance_in.mlp.2.weight' }], 2),
  peftSpec('transformer.time_guidance_embed.timestep_embedder.linear_1', 4, h, freq, [{ key: 'time_in.mlp.0.weight' }], 2),
  peftSpec('transformer.context_embedder_2.linear_3', 4, h, 12, [{ key: 'byt5_in.fc3.weight' }], 2),
  peftSpec('transformer.norm_out.linear', 4, 2 * h, h, [{ key: 'final_layer.adaLN_modulation.1.weight', rows: swappedHalves(h) }], 2),
];
/** sd-scripts' HunyuanImage LoRAs after its convert_hunyuan_image_lora_to_comfy.py: ComfyUI's names, flattened. */
const sdScriptsComfyImage: LoraSpec[] = [
  kohya('lora_unet_double_blocks_1_img_mlp_0', 4, 4 * h, h, [{ key: DB(1, 'img_mlp.fc1') }], 2),
  kohya('lora_unet_single_blocks_0_modulation_lin', 4, 3 * h, h, [{ key: SB(0, 'modulation.linear') }], 2),
];
/** sd-scripts' own (networks/lora_hunyuan_image.py): Tencent's names, flattened under lora_unet_. */
const sdScriptsImage: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, split([T(0, 'attn.to_q'), T(0, 'attn.to_k'), T(0, 'attn.to_v')]), 4),
  kohya('lora_unet_double_blocks_1_txt_mod_linear', 4, 6 * h, h, [{ key: T(1, 'norm1_context.linear') }], 2),
  kohya('lora_unet_single_blocks_1_linear1', 4, 7 * h, h, split([S(1, 'attn.to_q'), S(1, 'attn.to_k'), S(1, 'attn.to_v'), S(1, 'proj_mlp')], [1, 1, 1, 4]), 2),
];
const comfyExtractedImage: LoraSpec[] = [
  kohya('diffusion_model.time_r_in.in_layer', 2, h, freq, [{ key: 'time_guidance_embed.timestep_embedder_r.linear_1.weight' }], 2),
  kohya('diffusion_model.time_in.out_layer', 2, h, h, [{ key: 'time_guidance_embed.timestep_embedder.linear_2.weight' }], 2),
  kohya('diffusion_model.guidance_in.in_layer', 2, h, freq, [{ key: 'time_guidance_embed.guidance_embedder.linear_1.weight' }], 2),
  kohya('diffusion_model.byt5_in.fc1', 2, 12, byt5, [{ key: 'context_embedder_2.linear_1.weight' }], 2),
  kohya('diffusion_model.final_layer.adaLN_modulation.1', 2, 2 * h, h, [{ key: 'norm_out.linear.weight', rows: swappedHalves(h) }], 2),
];
const sdScriptsMetadata = { ss_network_module: 'networks.lora_hunyuan_image', ss_base_model_version: 'hunyuan_image_2.1', ss_network_dim: '4', ss_network_alpha: '2' };

// --- HunyuanVideo 1.5 (q, k, v apart; ComfyUI fuses them) ----------------------------------------------

const V15_FILE = 'hunyuanvideo1.5_480p_i2v_step_distilled_fp16.safetensors';
const v15Original = buildSafetensors(hunyuanOriginalTensors(rand, 'F16', HUNYUAN_15));
const v15Diffusers = buildSafetensors(hunyuanDiffusersTensors(rand, 'BF16', HUNYUAN_15));
const { vision } = HUNYUAN_15 as Required<typeof HUNYUAN_15>;

const diffusersV15Lora: LoraSpec[] = [
  peftSpec('transformer.transformer_blocks.0.attn.to_q', 4, h, h, [{ key: DB(0, 'img_attn_q') }], 2),
  peftSpec('transformer.transformer_blocks.1.attn.add_v_proj', 4, h, h, [{ key: DB(1, 'txt_attn_v') }], 2),
  peftSpec('transformer.transformer_blocks.1.ff.net.2', 4, h, 4 * h, [{ key: DB(1, 'img_mlp.fc2') }], 2),
  peftSpec('transformer.time_embed.timestep_embedder_r.linear_2', 4, h, h, [{ key: 'time_r_in.mlp.2.weight' }], 2),
  peftSpec('transformer.image_embedder.linear_1', 4, vision, vision, [{ key: 'vision_in.proj.1.weight' }], 2),
  peftSpec('transformer.context_embedder.token_refiner.refiner_blocks.0.attn.to_k', 4, h, h, [{ key: REF(0, 'self_attn_qkv'), rows: rowsAt(h, h) }], 2),
  peftSpec('transformer.norm_out.linear', 4, 2 * h, h, [{ key: 'final_layer.adaLN_modulation.1.weight', rows: swappedHalves(h) }], 2),
];
/** musubi-tuner's HunyuanVideo 1.5 LoRAs after its convert_hunyuan_video_1_5_lora_to_comfy.py: q, k, v fused as ComfyUI holds them. */
const musubiComfyV15 = (onto: 'original' | 'diffusers'): LoraSpec[] => [
  kohya('lora_unet_double_blocks_1_img_attn_qkv', 6, 3 * h, h, split(onto === 'original'
    ? [DB(1, 'img_attn_q'), DB(1, 'img_attn_k'), DB(1, 'img_attn_v')] : [T(1, 'attn.to_q'), T(1, 'attn.to_k'), T(1, 'attn.to_v')]), 2),
  kohya('lora_unet_double_blocks_0_txt_mlp_0', 2, 4 * h, h, [{ key: onto === 'original' ? DB(0, 'txt_mlp.fc1') : T(0, 'ff_context.net.0.proj') }], 2),
];
/** musubi-tuner's own (networks/lora_hv_1_5.py): Tencent's names, q, k, v apart. */
const musubiV15: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_q', 2, h, h, [{ key: T(0, 'attn.to_q') }], 1),
  kohya('lora_unet_double_blocks_1_txt_attn_v', 2, h, h, [{ key: T(1, 'attn.add_v_proj') }], 1),
  kohya('lora_unet_double_blocks_0_img_mod_linear', 2, 6 * h, h, [{ key: T(0, 'norm1.linear') }], 1),
];
const comfyExtractedV15: LoraSpec[] = [
  kohya('diffusion_model.vision_in.proj.3', 2, h, vision, [{ key: 'image_embedder.linear_2.weight' }], 2),
  kohya('diffusion_model.time_in.in_layer', 2, h, freq, [{ key: 'time_embed.timestep_embedder.linear_1.weight' }], 2),
];
const musubiV15Metadata = { ss_network_module: 'networks.lora_hv_1_5', ss_base_model_version: 'hunyuan_video_1_5', ss_network_dim: '2', ss_network_alpha: '1' };

const CASES: Case[] = [
  {
    name: 'HunyuanVideo in Tencent\'s naming ← diffusers, OneTrainer and musubi-tuner LoRAs',
    base: { [T2V_FILE]: originalBase }, baseName: T2V_FILE,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersLora, weight: 0.8, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'onetrainer-hunyuan.safetensors', specs: oneTrainer, weight: 1 },
      { file: 'musubi-hunyuan.safetensors', specs: musubiOnOriginal, weight: 0.5, metadata: musubiMetadata },
    ],
  },
  {
    name: 'diffusers HunyuanVideo-I2V transformer ← musubi-tuner, diffusion-pipe, ComfyUI-extracted, diffusion_model.-prefixed and Tencent\'s I2V LoRAs (one module onto three or four tensors)',
    base: { 'diffusion_pytorch_model.safetensors': diffusersBase, 'config.json': hunyuanDiffusersConfig(HUNYUAN_I2V) }, baseName: 'transformer',
    adapters: [
      { file: 'musubi-hunyuan.safetensors', specs: musubi, weight: 1, metadata: musubiMetadata },
      { file: 'adapter_model.safetensors', specs: diffusionPipe, weight: 0.7, metadata: { format: 'pt' }, folder: { name: 'epoch50', config: diffusionPipeConfig } },
      { file: 'hunyuan-lora.safetensors', specs: diffusionModelPrefixed, weight: 0.9 },
      { file: 'comfyui-extracted.safetensors', specs: comfyExtracted, weight: -0.6 },
      { file: 'embrace_kohaya_weights.safetensors', specs: tencentI2vLora, weight: 1 },
    ],
  },
  {
    name: 'HunyuanVideo checkpoint saved by ComfyUI (its own names) ← musubi-tuner and diffusers LoRAs',
    base: { [COMFY_FILE]: comfyBase }, baseName: COMFY_FILE,
    adapters: [
      { file: 'musubi-hunyuan.safetensors', specs: musubiOnComfy, weight: 1.2, metadata: musubiMetadata },
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersOnComfy, weight: 1, metadata: DIFFUSERS_LORA_METADATA },
    ],
  },
  {
    name: 'HunyuanImage 2.1 in Tencent\'s naming ← diffusers and sd-scripts (ComfyUI-converted) LoRAs',
    base: { [IMAGE_FILE]: imageOriginal }, baseName: IMAGE_FILE,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersImageLora, weight: 0.7, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'hunyuan-image-lora_comfy.safetensors', specs: sdScriptsComfyImage, weight: 1, metadata: sdScriptsMetadata },
    ],
  },
  {
    name: 'diffusers HunyuanImage 2.1 transformer ← sd-scripts and ComfyUI-extracted LoRAs',
    base: { 'diffusion_pytorch_model.safetensors': imageDiffusers, 'config.json': hunyuanDiffusersConfig(HUNYUAN_IMAGE) }, baseName: 'transformer',
    adapters: [
      { file: 'hunyuan-image-lora.safetensors', specs: sdScriptsImage, weight: 1, metadata: sdScriptsMetadata },
      { file: 'comfyui-extracted.safetensors', specs: comfyExtractedImage, weight: 0.5 },
    ],
  },
  {
    name: 'HunyuanVideo 1.5 in Tencent\'s naming (q, k, v apart) ← diffusers and ComfyUI-format (fused qkv) LoRAs',
    base: { [V15_FILE]: v15Original }, baseName: V15_FILE,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: diffusersV15Lora, weight: 0.9, metadata: DIFFUSERS_LORA_METADATA },
      { file: 'hv15-lora_comfy.safetensors', specs: musubiComfyV15('original'), weight: 1, metadata: musubiV15Metadata },
    ],
  },
  {
    name: 'diffusers HunyuanVideo 1.5 transformer ← musubi-tuner, ComfyUI-format and ComfyUI-extracted LoRAs',
    base: { 'diffusion_pytorch_model.safetensors': v15Diffusers, 'config.json': hunyuanDiffusersConfig(HUNYUAN_15) }, baseName: 'transformer',
    adapters: [
      { file: 'hv15-lora.safetensors', specs: musubiV15, weight: 1, metadata: musubiV15Metadata },
      { file: 'hv15-lora_comfy.safetensors', specs: musubiComfyV15('diffusers'), weight: -1, metadata: musubiV15Metadata },
      { file: 'comfyui-extracted.safetensors', specs: comfyExtractedV15, weight: 0.5 },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('the hunyuan-video layout', () => {
  it('places the translated modules (and only those need it)', async () => {
    for (const c of CASES) {
      const prepared = await prepare(c);
      const layouts = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
      expect(layouts.has('hunyuan-video'), c.name).toBe(true);
      expect(layouts.has('flux-bfl'), c.name).toBe(false);
      await prepared.close();
    }
  });

  it('without it in the registry, every case is refused', async () => {
    await withoutLayout(hunyuanVideo, async () => {
      for (const c of CASES) {
        const prepared = await prepare(c);
        expect(prepared.plan.problems.length, c.name).toBeGreaterThan(0);
        await prepared.close();
      }
    });
  });
});

describe('a whole HunyuanVideo pipeline folder', () => {
  it('takes Tencent-named modules onto its transformer/ (keys under the component\'s prefix)', async () => {
    const pipeline = {
      'model_index.json': JSON.stringify({
        _class_name: 'HunyuanVideoPipeline', transformer: ['diffusers', 'HunyuanVideoTransformer3DModel'], text_encoder: ['transformers', 'LlamaModel'],
        text_encoder_2: ['transformers', 'CLIPTextModel'], vae: ['diffusers', 'AutoencoderKLHunyuanVideo'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(hunyuanDiffusersTensors(rand, 'BF16')),
      'transformer/config.json': hunyuanDiffusersConfig(),
      'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, 'text_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12], 'F16')]),
      'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.conv.weight', [8, 4, 3, 3, 3], 'F32')]),
    };
    const lora = buildSafetensors(loraTensors(rand, [
      kohya('lora_unet_double_blocks_1_img_attn_qkv', 2, 3 * h, h, [], 2),
      kohya('lora_unet_final_layer_adaLN_modulation_1', 2, 2 * h, h, [], 2),
    ], 'BF16'));
    const prepared = await prepareMerge(memoryInputFileSet(pipeline, 'HunyuanVideo'), [
      { files: memoryInputFileSet({ 'musubi-hunyuan.safetensors': lora }, 'musubi-hunyuan.safetensors'), weight: 1 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    const placed = prepared.plan.updates.flatMap((u) => u.terms.map((t) => [u.baseKey, t.layout, t.placement?.segments ?? null]));
    await prepared.close();
    expect(placed).toEqual([
      ['transformer.transformer_blocks.1.attn.to_q.weight', 'hunyuan-video', [{ src: 0, dst: 0, count: h }]],
      ['transformer.transformer_blocks.1.attn.to_k.weight', 'hunyuan-video', [{ src: h, dst: 0, count: h }]],
      ['transformer.transformer_blocks.1.attn.to_v.weight', 'hunyuan-video', [{ src: 2 * h, dst: 0, count: h }]],
      ['transformer.norm_out.linear.weight', 'hunyuan-video', [{ src: 0, dst: h, count: h }, { src: h, dst: 0, count: h }]],
    ]);
  });
});

describe('every tensor of each model, named any way, is found in the other naming', () => {
  // A module per stored tensor (a LoRA on a Linear or conv, a diff on a norm): where it lands is
  // checked by the merges above; here, that no tensor is left without a rule, and that the rows
  // a module's ΔW has are all placed exactly once.
  const shapes = (tensors: FixtureTensor[]) => new ModuleLocator({ tensors: new Map(tensors.map((t) => [t.name, { shape: t.shape }])) });
  const weights = (tensors: FixtureTensor[]) => tensors.filter((t) => t.name.endsWith('.weight'));
  const rowsPlaced = (targets: { baseKey: string; rows?: readonly { count: number }[] }[], base: FixtureTensor[]) =>
    targets.reduce((n, t) => n + (t.rows ? t.rows.reduce((m, g) => m + g.count, 0) : base.find((b) => b.name === t.baseKey)!.shape[0]), 0);

  for (const d of [HUNYUAN, HUNYUAN_I2V, HUNYUAN_IMAGE, HUNYUAN_15]) {
    it(`${d.model}${d === HUNYUAN_I2V ? ' I2V' : ''}: Tencent's names (dotted, flattened, ComfyUI's) onto diffusers' and back`, () => {
      const original = hunyuanOriginalTensors(rand, 'BF16', d);
      const diffusers = hunyuanDiffusersTensors(rand, 'BF16', d);
      const onDiffusers = shapes(diffusers);
      const onOriginal = shapes(original);
      const module = (key: string) => key.slice(0, -'.weight'.length);
      for (const t of weights(original)) {
        // Bare (PEFT paths), diffusion-pipe's transformer. file, kohya's flattened names, ComfyUI's.
        const names = [module(t.name), `transformer.${module(t.name)}`, `lora_unet_${module(t.name).replaceAll('.', '_')}`];
        const comfy = comfyHunyuanName(t.name);
        if (comfy.endsWith('.weight')) names.push(`diffusion_model.${module(comfy)}`);
        for (const name of names) {
          const at = onDiffusers.locate(moduleAddress(name));
          expect(at.found && at.layout, name).toBe('hunyuan-video');
          if (at.found) expect(rowsPlaced(at.targets, diffusers), name).toBe(t.shape[0]);
        }
      }
      for (const t of weights(diffusers)) {
        const name = `transformer.${module(t.name)}`;
        const at = onOriginal.locate(moduleAddress(name));
        expect(at.found && at.layout, name).toBe('hunyuan-video');
        if (at.found) expect(rowsPlaced(at.targets, original), name).toBe(t.shape[0]);
      }
    });
  }
});

describe('what the hunyuan-video layout refuses', () => {
  const refusals = async (base: Record<string, Uint8Array | string>, baseName: string, lora: FixtureTensor[]) => {
    const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [
      { files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(lora) }, 'lora.safetensors'), weight: 1 },
    ]);
    const messages = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return messages;
  };

  it('HunyuanVideo\'s names are not translated onto a Flux file, whose blocks share ComfyUI\'s names', async () => {
    const flux = buildSafetensors(fluxBflTensors(rand, 'BF16'));
    const lora = loraTensors(rand, [kohya('lora_unet_double_blocks_0_img_mlp_fc1', 2, 32, 8, [], 2)], 'BF16');
    expect(await refusals({ 'flux1-dev.safetensors': flux }, 'flux1-dev.safetensors', lora))
      .toEqual([expect.stringMatching(/module "lora_unet_double_blocks_0_img_mlp_fc1": no matching tensor/)]);
  });

  it('a HunyuanVideo embedder onto HunyuanImage, which has none, is refused, not placed on the token refiner\'s embedder of the same name', async () => {
    const base = { 'diffusion_pytorch_model.safetensors': imageDiffusers, 'config.json': hunyuanDiffusersConfig(HUNYUAN_IMAGE) };
    // Its input width chosen to fit the refiner's text embedder: only the name can tell them apart.
    const lora = loraTensors(rand, [kohya('lora_unet_vector_in_in_layer', 2, h, HUNYUAN_IMAGE.text, [])], 'BF16');
    expect(await refusals(base, 'transformer', lora)).toEqual([expect.stringMatching(/module "lora_unet_vector_in_in_layer": no matching tensor/)]);
  });

  it('a single-block linear1 LoRA onto a diffusers model whose MLP is not 4h wide is refused, not merged in part', async () => {
    const narrow = hunyuanDiffusersTensors(rand, 'BF16').map((t): FixtureTensor => (t.name === 'single_transformer_blocks.0.proj_mlp.weight'
      ? tensor(rand, t.name, [2 * h, h], 'BF16') : t));
    const base = { 'diffusion_pytorch_model.safetensors': buildSafetensors(narrow), 'config.json': hunyuanDiffusersConfig() };
    const lora = loraTensors(rand, [kohya('lora_unet_single_blocks_0_linear1', 2, 5 * h, h, [])], 'BF16');
    expect(await refusals(base, 'transformer', lora))
      .toEqual([expect.stringMatching(/module "lora_unet_single_blocks_0_linear1": ΔW \(40, 8\) does not fit where hunyuan-video puts it .*: the placement needs 56 ΔW rows, ΔW has 40/)]);
  });
});
