/**
 * A survey of diffusion models people download and the LoRAs published for them, beyond the
 * families the other suites cover: each merged exactly as the tool it comes from applies it
 * (against float64 truth written here), or refused in one line that names what is not supported.
 * - Kolors (Kwai-Kolors/Kolors-diffusers): an SDXL UNet (`UNet2DConditionModel`) whose cross
 *   attention reads ChatGLM3's 4096-wide states through `encoder_hid_proj` (`encoder_hid_dim_type:
 *   "text_proj"`); KolorsPipeline loads LoRAs with diffusers' SDXL loader (`unet.` + diffusers
 *   names), and kohya-form files name the same modules flattened (`lora_unet_down_blocks_…`) or in
 *   the SGM names (`lora_unet_input_blocks_…`), which diffusers' `_maybe_map_sgm_blocks_to_diffusers` maps.
 * - Playground v2.5: SDXL's architecture (EDM sampling changes no weight name), its single file in
 *   the SGM layout (`model.diffusion_model.input_blocks…`, `conditioner.embedders.0/1…`); its LoRAs
 *   are SDXL's (sd-scripts: `lora_unet_input_blocks_4_1_…`, `lora_te1_`/`lora_te2_`).
 * - Nunchaku's SVDQuant bases (FLUX.1, Qwen-Image): refused as a whole, naming the format and what
 *   to do (nunchaku runs a LoRA in its layers' low-rank branch at run time).
 * - Step1X-Edit (its sd-scripts-form trainer), LongCat-Image (PEFT in its names), Kandinsky 5
 *   (diffusers', musubi-tuner's, ComfyUI's), Lightning step-distill LoRAs (Qwen-Image-Edit-2509,
 *   Wan 2.2), musubi-tuner's Z-Image LoRAs converted for ComfyUI, a Z-Image LoKr, and LongCat-Video's
 *   own LoRANetwork files (decoded names, stored alpha_scale, lora_up.blocks on fused projections).
 * Shapes are scaled down; names and dtypes are the real ones.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { runCli } from './helpers/cli.js';
import { FLUX, WAN, fluxBflTensors, fluxDiffusersTensors, loraTensors, rowsAt, rowsFrom, tensor, truthTerms, wanOriginalTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { QWEN_IMAGE, ZIMAGE, qwenImageTensors, zImageComfyTensors, zImageDiffusersTensors } from './helpers/dit-fixtures.js';
import { loraCaseSuite, planProblemsOf, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261207);

function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha / r, extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}
function peft(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number): LoraSpec {
  return { down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands, scale };
}
const file = (name: string, tensors: FixtureTensor[], metadata?: Record<string, string>) => ({ [name]: buildSafetensors(tensors, metadata) });

// --- SDXL-architecture UNets: Kolors and Playground v2.5 ----------------------------------------------

/** Scaled-down SDXL widths: blocks 320, 640, 1280 → 4, 8, 12; context 2048 → 10; ChatGLM3's 4096 → 14; add_embedding 2816 → 6. */
const U = { c0: 4, c1: 8, c2: 12, ctx: 10, glm: 14, add: 6, time: 5 };

/** The diffusers UNet tensors the cases touch (and a few they do not), by diffusers name. */
function sdxlUnetDiffusers(dtype: 'F16' | 'BF16', kolors: boolean): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const A1 = 'down_blocks.1.attentions.0.transformer_blocks.0';
  const M = 'mid_block.attentions.0';
  const UP = 'up_blocks.0.attentions.1.transformer_blocks.0';
  return [
    w('conv_in.weight', [U.c0, 4, 3, 3]), w('conv_in.bias', [U.c0]),
    w('time_embedding.linear_1.weight', [U.time, U.c0]),
    w('add_embedding.linear_1.weight', [U.time, U.add]),
    w('down_blocks.0.resnets.0.time_emb_proj.weight', [U.c0, U.time]),
    w(`${A1}.attn1.to_q.weight`, [U.c1, U.c1]), w(`${A1}.attn1.to_k.weight`, [U.c1, U.c1]),
    w(`${A1}.attn2.to_k.weight`, [U.c1, U.ctx]), w(`${A1}.attn2.to_v.weight`, [U.c1, U.ctx]),
    w(`${A1}.attn2.to_out.0.weight`, [U.c1, U.c1]), w(`${A1}.attn2.to_out.0.bias`, [U.c1]),
    w(`${M}.proj_in.weight`, [U.c2, U.c2]), w(`${M}.transformer_blocks.0.attn1.to_v.weight`, [U.c2, U.c2]),
    w(`${UP}.ff.net.0.proj.weight`, [8 * U.c2, U.c2]), w(`${UP}.ff.net.2.weight`, [U.c2, 4 * U.c2]),
    ...(kolors ? [w('encoder_hid_proj.weight', [U.ctx, U.glm]), w('encoder_hid_proj.bias', [U.ctx])] : []),
  ];
}

/** Kolors' unet/config.json (the fields that set it apart from SDXL's). */
const KOLORS_UNET_CONFIG = JSON.stringify({
  _class_name: 'UNet2DConditionModel', _diffusers_version: '0.30.0.dev0', cross_attention_dim: 2048,
  encoder_hid_dim: 4096, encoder_hid_dim_type: 'text_proj', addition_embed_type: 'text_time', addition_time_embed_dim: 256,
  projection_class_embeddings_input_dim: 5632, transformer_layers_per_block: [1, 2, 10], block_out_channels: [320, 640, 1280],
});

const A1 = 'down_blocks.1.attentions.0.transformer_blocks.0';
const UPB = 'up_blocks.0.attentions.1.transformer_blocks.0';
/** Kolors' own trainer (diffusers SDXL scripts) and diffusers' SDXL loader: `unet.` + diffusers names, PEFT form, α from lora_adapter_metadata. */
const kolorsDiffusers: LoraSpec[] = [
  peft(`unet.${A1}.attn1.to_q`, 4, U.c1, U.c1, [{ key: `${A1}.attn1.to_q.weight` }], 2),
  peft(`unet.${A1}.attn2.to_k`, 4, U.c1, U.ctx, [{ key: `${A1}.attn2.to_k.weight` }], 2),
  peft(`unet.${A1}.attn2.to_out.0`, 4, U.c1, U.c1, [{ key: `${A1}.attn2.to_out.0.weight` }], 2),
  peft(`unet.mid_block.attentions.0.proj_in`, 4, U.c2, U.c2, [{ key: 'mid_block.attentions.0.proj_in.weight' }], 2),
  peft(`unet.${UPB}.ff.net.0.proj`, 4, 8 * U.c2, U.c2, [{ key: `${UPB}.ff.net.0.proj.weight` }], 2),
];
const UNET_LORA_METADATA = {
  format: 'pt', lora_adapter_metadata: JSON.stringify({ 'unet.r': 4, 'unet.lora_alpha': 8, 'unet.peft_type': 'LORA', 'unet.use_dora': false }),
};
/** kohya-form Kolors LoRAs: diffusers names flattened (`lora_unet_down_blocks_1_…`), and the SGM names (`lora_unet_input_blocks_4_1_…`). */
const kolorsKohya: LoraSpec[] = [
  kohya('lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_v', 2, U.c1, U.ctx, [{ key: `${A1}.attn2.to_v.weight` }], 1),
  kohya('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k', 2, U.c1, U.c1, [{ key: `${A1}.attn1.to_k.weight` }], 1),
  kohya('lora_unet_middle_block_1_transformer_blocks_0_attn1_to_v', 2, U.c2, U.c2, [{ key: 'mid_block.attentions.0.transformer_blocks.0.attn1.to_v.weight' }], 1),
  kohya('lora_unet_output_blocks_1_1_transformer_blocks_0_ff_net_2', 2, U.c2, 4 * U.c2, [{ key: `${UPB}.ff.net.2.weight` }], 1),
  kohya('lora_unet_encoder_hid_proj', 2, U.ctx, U.glm, [{ key: 'encoder_hid_proj.weight' }], 4),
];

/** Playground v2.5's single file, SGM names (`playground-v2.5-1024px-aesthetic.fp16.safetensors`), with its two CLIP text encoders. */
const PG = 'playground-v2.5-1024px-aesthetic.fp16.safetensors';
const T = { h: 6, g: 8 };
function playgroundTensors(): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, 'F16');
  const dm = 'model.diffusion_model.';
  const I4 = `${dm}input_blocks.4.1.transformer_blocks.0`;
  return [
    w(`${dm}input_blocks.0.0.weight`, [U.c0, 4, 3, 3]), w(`${dm}label_emb.0.0.weight`, [U.time, U.add]),
    w(`${I4}.attn1.to_q.weight`, [U.c1, U.c1]), w(`${I4}.attn2.to_k.weight`, [U.c1, U.ctx]),
    w(`${dm}middle_block.1.proj_in.weight`, [U.c2, U.c2]),
    w(`${dm}output_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight`, [8 * U.c2, U.c2]),
    w('conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [T.h, T.h]),
    w('conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight', [4 * T.h, T.h]),
    w('conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight', [3 * T.g, T.g]),
    w('conditioner.embedders.1.model.transformer.resblocks.0.attn.out_proj.weight', [T.g, T.g]),
    w('first_stage_model.decoder.conv_in.weight', [4, 4, 3, 3]),
  ];
}
/** sd-scripts' SDXL LoRAs (networks.lora, SGM names, α): unet, CLIP-L (te1) and OpenCLIP bigG (te2, whose q, k, v are thirds of in_proj_weight). */
const playgroundKohya: LoraSpec[] = [
  kohya('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', 4, U.c1, U.c1, [{ key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight' }], 2),
  kohya('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', 4, U.c1, U.ctx, [{ key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight' }], 2),
  kohya('lora_unet_middle_block_1_proj_in', 4, U.c2, U.c2, [{ key: 'model.diffusion_model.middle_block.1.proj_in.weight' }], 2),
  kohya('lora_unet_output_blocks_1_1_transformer_blocks_0_ff_net_0_proj', 4, 8 * U.c2, U.c2, [{ key: 'model.diffusion_model.output_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight' }], 2),
  kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 4, T.h, T.h, [{ key: 'conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight' }], 2),
  kohya('lora_te2_text_model_encoder_layers_0_self_attn_k_proj', 4, T.g, T.g, [{ key: 'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight', rows: rowsAt(T.g, T.g) }], 2),
  kohya('lora_te2_text_model_encoder_layers_0_self_attn_out_proj', 4, T.g, T.g, [{ key: 'conditioner.embedders.1.model.transformer.resblocks.0.attn.out_proj.weight' }], 2),
];
/** diffusers' SDXL trainers on Playground (`unet.` + diffusers names) onto the SGM single file. */
const playgroundDiffusers: LoraSpec[] = [
  peft(`unet.${A1}.attn1.to_q`, 4, U.c1, U.c1, [{ key: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight' }], 2),
  peft(`unet.${UPB}.ff.net.0.proj`, 4, 8 * U.c2, U.c2, [{ key: 'model.diffusion_model.output_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight' }], 2),
];

const CASES: LoraCase[] = [
  {
    name: 'Kolors, diffusers UNet (encoder_hid_proj for ChatGLM3) ← Kolors\' diffusers trainer and kohya-form LoRAs',
    base: { 'diffusion_pytorch_model.fp16.safetensors': buildSafetensors(sdxlUnetDiffusers('F16', true)), 'config.json': KOLORS_UNET_CONFIG },
    baseName: 'unet',
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: kolorsDiffusers, weight: 0.8, metadata: UNET_LORA_METADATA },
      { file: 'kolors_kohya.safetensors', specs: kolorsKohya, weight: 1, metadata: { ss_network_module: 'networks.lora', ss_base_model_version: 'sdxl_base_v1-0' } },
    ],
  },
  {
    name: 'Playground v2.5, its SGM single file ← sd-scripts SDXL LoRA (unet, te1, te2) and a diffusers SDXL trainer\'s',
    base: file(PG, playgroundTensors()), baseName: PG,
    adapters: [
      { file: 'playground_kohya.safetensors', specs: playgroundKohya, weight: 1, metadata: { ss_network_module: 'networks.lora', ss_base_model_version: 'sdxl_base_v1-0' } },
      { file: 'pytorch_lora_weights.safetensors', specs: playgroundDiffusers, weight: -0.5, metadata: UNET_LORA_METADATA },
    ],
  },
];

loraCaseSuite(CASES, rand, 'BF16');

// --- FLUX-derived DiTs: Step1X-Edit, LongCat-Image -----------------------------------------------------

const { h } = FLUX;
/**
 * stepfun-ai/Step1X-Edit's `step1x-edit-i1258.safetensors`: FLUX.1's blocks under BFL's names, bare,
 * without guidance_in, with its Qwen2.5-VL connector (`connector.S.…`, `connector.global_proj_…`) beside them.
 */
const S1X = 'step1x-edit-i1258.safetensors';
const step1xTensors = (): FixtureTensor[] => [
  ...fluxBflTensors(rand, 'BF16').filter((t) => !t.name.startsWith('guidance_in.')),
  tensor(rand, 'connector.S.x_embedder.weight', [h, 14], 'BF16'), tensor(rand, 'connector.global_proj_out.weight', [FLUX.vec, h], 'BF16'),
];
/** Step1X-Edit's LoRA trainer (library/lora_module.py, sd-scripts' lora_flux): `lora_unet_` + BFL names flattened, α/r; fused qkv and linear1 whole. */
const step1xKohya: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, [{ key: 'double_blocks.0.img_attn.qkv.weight' }], 4),
  kohya('lora_unet_double_blocks_1_txt_mlp_0', 4, 4 * h, h, [{ key: 'double_blocks.1.txt_mlp.0.weight' }], 4),
  kohya('lora_unet_double_blocks_0_img_mod_lin', 4, 6 * h, h, [{ key: 'double_blocks.0.img_mod.lin.weight' }], 4),
  kohya('lora_unet_single_blocks_1_linear1', 4, 7 * h, h, [{ key: 'single_blocks.1.linear1.weight' }], 4),
  kohya('lora_unet_single_blocks_0_linear2', 4, h, 5 * h, [{ key: 'single_blocks.0.linear2.weight' }], 4),
  kohya('lora_unet_img_in', 4, h, FLUX.inChannels, [{ key: 'img_in.weight' }], 4),
];

/** meituan-longcat/LongCat-Image transformer/ (LongCatImageTransformer2DModel): diffusers' FLUX.1 block names, `time_embed` in place of `time_text_embed`. */
const longCatTensors = (): FixtureTensor[] => [
  ...fluxDiffusersTensors(rand, 'BF16').filter((t) => !t.name.startsWith('time_text_embed.')),
  tensor(rand, 'time_embed.timestep_embedder.linear_1.weight', [h, FLUX.time], 'BF16'), tensor(rand, 'time_embed.timestep_embedder.linear_2.weight', [h, h], 'BF16'),
];
/** LongCat-Image's LoRA training (PEFT on LongCatImageTransformer2DModel, saved with `transformer.` + its names), α in lora_adapter_metadata. */
const longCatPeft: LoraSpec[] = [
  peft('transformer.transformer_blocks.0.attn.to_q', 4, h, h, [{ key: 'transformer_blocks.0.attn.to_q.weight' }], 2),
  peft('transformer.transformer_blocks.1.attn.add_v_proj', 4, h, h, [{ key: 'transformer_blocks.1.attn.add_v_proj.weight' }], 2),
  peft('transformer.transformer_blocks.0.ff_context.net.0.proj', 4, 4 * h, h, [{ key: 'transformer_blocks.0.ff_context.net.0.proj.weight' }], 2),
  peft('transformer.single_transformer_blocks.1.proj_mlp', 4, 4 * h, h, [{ key: 'single_transformer_blocks.1.proj_mlp.weight' }], 2),
  peft('transformer.single_transformer_blocks.0.proj_out', 4, h, 5 * h, [{ key: 'single_transformer_blocks.0.proj_out.weight' }], 2),
  peft('transformer.time_embed.timestep_embedder.linear_1', 4, h, FLUX.time, [{ key: 'time_embed.timestep_embedder.linear_1.weight' }], 2),
  peft('transformer.context_embedder', 4, h, FLUX.txt, [{ key: 'context_embedder.weight' }], 2),
];
const TRANSFORMER_LORA_METADATA = {
  format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }),
};

// --- LightX2V's step-distill ("Lightning") LoRAs for Qwen-Image-Edit-2509 and Wan 2.2 -----------------

const q = QWEN_IMAGE.dim;
/**
 * ModelTC/Qwen-Image-Lightning (`Qwen-Image-Edit-2509-Lightning-8steps-V1.0-bf16.safetensors`): bare
 * diffusers names, `lora_down`/`lora_up` with `.alpha` (diffusers' Qwen converter and ComfyUI both read α/r).
 */
const qwenLightning: LoraSpec[] = [
  kohya('transformer_blocks.0.attn.to_q', 8, q, q, [{ key: 'transformer_blocks.0.attn.to_q.weight' }], 4),
  kohya('transformer_blocks.1.attn.add_k_proj', 8, q, q, [{ key: 'transformer_blocks.1.attn.add_k_proj.weight' }], 4),
  kohya('transformer_blocks.0.img_mlp.net.2', 8, q, 4 * q, [{ key: 'transformer_blocks.0.img_mlp.net.2.weight' }], 4),
  kohya('transformer_blocks.1.txt_mod.1', 8, 6 * q, q, [{ key: 'transformer_blocks.1.txt_mod.1.weight' }], 4),
];
const QE = 'qwen_image_edit_2509_bf16.safetensors';
/**
 * lightx2v/Wan2.2-Lightning (`Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1/high_noise_model.safetensors`):
 * `diffusion_model.` + Wan's names, `lora_down`/`lora_up` with a `.alpha` per module (α/r, as ComfyUI,
 * diffusers' Wan converter and LightX2V's loader read it).
 */
const { dim: wd } = WAN;
const wanLightning: LoraSpec[] = [
  kohya('diffusion_model.blocks.0.self_attn.q', 8, wd, wd, [{ key: 'blocks.0.self_attn.q.weight' }], 2),
  kohya('diffusion_model.blocks.1.cross_attn.o', 8, wd, wd, [{ key: 'blocks.1.cross_attn.o.weight' }], 2),
  kohya('diffusion_model.blocks.0.ffn.0', 8, WAN.ffn, wd, [{ key: 'blocks.0.ffn.0.weight' }], 2),
];
/** Wan 2.2 A14B has Wan 2.1 T2V's blocks: no image cross-attention (`k_img`, `v_img`, `norm_k_img`) and no `img_emb`. */
const wan22Tensors = (): FixtureTensor[] => wanOriginalTensors(rand, 'F16').filter((t) => !/(k_img|v_img|img_emb)/.test(t.name));
const W22 = 'wan2.2_t2v_high_noise_14B_fp16.safetensors';

const DIT_CASES: LoraCase[] = [
  {
    name: 'Step1X-Edit, its own file (BFL names, connector beside) ← its LoRA trainer (sd-scripts form)',
    base: file(S1X, step1xTensors()), baseName: S1X,
    adapters: [{ file: 'step1x-edit-lora.safetensors', specs: step1xKohya, weight: 1, metadata: { ss_network_module: 'library.lora_module' } }],
  },
  {
    name: 'LongCat-Image, diffusers transformer ← PEFT LoRA in its own names',
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(longCatTensors()), 'config.json': JSON.stringify({ _class_name: 'LongCatImageTransformer2DModel', num_layers: 19, num_single_layers: 38, joint_attention_dim: 3584 }) },
    baseName: 'transformer',
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: longCatPeft, weight: 0.9, metadata: TRANSFORMER_LORA_METADATA }],
  },
  {
    name: 'Qwen-Image-Edit-2509, Comfy-Org bf16 file ← Qwen-Image-Lightning (bare names, lora_down/lora_up, .alpha)',
    base: file(QE, qwenImageTensors(rand, 'BF16')), baseName: QE,
    adapters: [{ file: 'Qwen-Image-Edit-2509-Lightning-8steps-V1.0-bf16.safetensors', specs: qwenLightning, weight: 1 }],
  },
  {
    name: 'Wan 2.2 A14B high-noise, Comfy-Org fp16 file ← Wan2.2-Lightning (diffusion_model., lora_down/lora_up, .alpha)',
    base: file(W22, wan22Tensors()), baseName: W22,
    adapters: [{ file: 'high_noise_model.safetensors', specs: wanLightning, weight: 1 }],
  },
];

loraCaseSuite(DIT_CASES, rand, 'BF16');

// --- Kandinsky 5 ----------------------------------------------------------------------------------

/**
 * Kandinsky 5 (Lite T2V / I2V, Image Lite): diffusers' Kandinsky5Transformer3DModel keeps the original
 * module names, so kandinskylab's checkpoint, Comfy-Org's repackaged file and diffusers' folder share
 * them. diffusers' KandinskyLoraLoaderMixin loads `transformer.` + those names (no converter); ComfyUI's
 * key map takes `diffusion_model.` + the names (and the `lora_unet_` flattening).
 */
const K = { m: 8, t: 6, ff: 20, txt: 12, vis: 4 };
function kandinsky5Tensors(): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, 'BF16');
  const out: FixtureTensor[] = [
    w('time_embeddings.in_layer.weight', [K.t, K.m]), w('time_embeddings.out_layer.weight', [K.t, K.t]),
    w('text_embeddings.in_layer.weight', [K.m, K.txt]), w('pooled_text_embeddings.in_layer.weight', [K.t, K.txt]),
    w('visual_embeddings.in_layer.weight', [K.m, 4 * K.vis]),
    w('text_transformer_blocks.0.text_modulation.out_layer.weight', [6 * K.m, K.t]),
    w('out_layer.modulation.out_layer.weight', [2 * K.m, K.t]), w('out_layer.out_layer.weight', [4 * K.vis, K.m]),
  ];
  for (const a of ['to_query', 'to_key', 'to_value', 'out_layer']) out.push(w(`text_transformer_blocks.0.self_attention.${a}.weight`, [K.m, K.m]));
  out.push(w('text_transformer_blocks.0.feed_forward.in_layer.weight', [K.ff, K.m]), w('text_transformer_blocks.0.feed_forward.out_layer.weight', [K.m, K.ff]));
  for (let i = 0; i < 2; i++) {
    const b = `visual_transformer_blocks.${i}`;
    out.push(w(`${b}.visual_modulation.out_layer.weight`, [9 * K.m, K.t]));
    for (const at of ['self_attention', 'cross_attention']) for (const a of ['to_query', 'to_key', 'to_value', 'out_layer']) out.push(w(`${b}.${at}.${a}.weight`, [K.m, K.m]));
    out.push(w(`${b}.feed_forward.in_layer.weight`, [K.ff, K.m]), w(`${b}.feed_forward.out_layer.weight`, [K.m, K.ff]));
  }
  return out;
}
const kandinskyDiffusers: LoraSpec[] = [
  peft('transformer.visual_transformer_blocks.0.self_attention.to_query', 4, K.m, K.m, [{ key: 'visual_transformer_blocks.0.self_attention.to_query.weight' }], 2),
  peft('transformer.visual_transformer_blocks.1.cross_attention.to_value', 4, K.m, K.m, [{ key: 'visual_transformer_blocks.1.cross_attention.to_value.weight' }], 2),
  peft('transformer.visual_transformer_blocks.0.feed_forward.out_layer', 4, K.m, K.ff, [{ key: 'visual_transformer_blocks.0.feed_forward.out_layer.weight' }], 2),
  peft('transformer.text_transformer_blocks.0.self_attention.out_layer', 4, K.m, K.m, [{ key: 'text_transformer_blocks.0.self_attention.out_layer.weight' }], 2),
  peft('transformer.visual_transformer_blocks.1.visual_modulation.out_layer', 4, 9 * K.m, K.t, [{ key: 'visual_transformer_blocks.1.visual_modulation.out_layer.weight' }], 2),
];
const kandinskyComfy: LoraSpec[] = [
  kohya('diffusion_model.visual_transformer_blocks.1.cross_attention.to_key', 2, K.m, K.m, [{ key: 'visual_transformer_blocks.1.cross_attention.to_key.weight' }], 1),
  kohya('diffusion_model.out_layer.out_layer', 2, 4 * K.vis, K.m, [{ key: 'out_layer.out_layer.weight' }], 1),
  kohya('lora_unet_visual_transformer_blocks_0_feed_forward_in_layer', 2, K.ff, K.m, [{ key: 'visual_transformer_blocks.0.feed_forward.in_layer.weight' }], 1),
];
const K5 = 'kandinsky5lite_t2v_sft_5s.safetensors';
const KANDINSKY_CASES: LoraCase[] = [
  {
    name: 'Kandinsky 5 Lite, the single file (original names) ← diffusers (transformer.) and ComfyUI-form LoRAs',
    base: file(K5, kandinsky5Tensors()), baseName: K5,
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: kandinskyDiffusers, weight: 1, metadata: TRANSFORMER_LORA_METADATA },
      { file: 'kandinsky5_comfy.safetensors', specs: kandinskyComfy, weight: 0.7 },
    ],
  },
  {
    name: 'Kandinsky 5 Lite, diffusers transformer ← the same LoRAs',
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(kandinsky5Tensors()), 'config.json': JSON.stringify({ _class_name: 'Kandinsky5Transformer3DModel', model_dim: 1792, ff_dim: 7168, num_visual_blocks: 32 }) },
    baseName: 'transformer',
    adapters: [
      { file: 'pytorch_lora_weights.safetensors', specs: kandinskyDiffusers, weight: -1, metadata: TRANSFORMER_LORA_METADATA },
      { file: 'kandinsky5_comfy.safetensors', specs: kandinskyComfy, weight: 1 },
    ],
  },
];
loraCaseSuite(KANDINSKY_CASES, rand, 'BF16');

/** musubi-tuner's Kandinsky 5 LoRAs (networks.lora_kandinsky): `lora_unet_` + the names flattened, α/r; attention and feed-forward of both block kinds. */
const kandinskyMusubi: LoraSpec[] = [
  kohya('lora_unet_visual_transformer_blocks_1_self_attention_to_value', 2, K.m, K.m, [{ key: 'visual_transformer_blocks.1.self_attention.to_value.weight' }], 2),
  kohya('lora_unet_visual_transformer_blocks_0_cross_attention_out_layer', 2, K.m, K.m, [{ key: 'visual_transformer_blocks.0.cross_attention.out_layer.weight' }], 2),
  kohya('lora_unet_text_transformer_blocks_0_feed_forward_out_layer', 2, K.m, K.ff, [{ key: 'text_transformer_blocks.0.feed_forward.out_layer.weight' }], 2),
];

// --- Z-Image: musubi-tuner's LoRA after its convert_z_image_lora_to_comfy.py ------------------------

/**
 * The converter concatenates to_q, to_k, to_v into ComfyUI's `attention_qkv` (rank ×3, lora_up
 * block-diagonal, α ×3, so α/r is kept) and renames `attention_to_out_0` → `attention_out`, still in the
 * `lora_unet_` form; ComfyUI's key map reads that form for its Z-Image names.
 */
const zd = ZIMAGE.dim;
const musubiZImageComfy = (onDiffusers: boolean): LoraSpec[] => [
  kohya('lora_unet_layers_0_attention_qkv', 6, 3 * zd, zd, onDiffusers
    ? ['to_q', 'to_k', 'to_v'].map((x, i) => ({ key: `layers.0.attention.${x}.weight`, rows: rowsFrom(i * zd, zd) }))
    : [{ key: 'layers.0.attention.qkv.weight' }], 12),
  kohya('lora_unet_noise_refiner_0_attention_out', 2, zd, zd, [{ key: onDiffusers ? 'noise_refiner.0.attention.to_out.0.weight' : 'noise_refiner.0.attention.out.weight' }], 4),
  kohya('lora_unet_layers_1_feed_forward_w2', 2, zd, ZIMAGE.ffn, [{ key: 'layers.1.feed_forward.w2.weight' }], 4),
];
const ZT = 'z_image_turbo_bf16.safetensors';
const MORE_CASES: LoraCase[] = [
  {
    name: 'Kandinsky 5 Lite, the single file ← musubi-tuner LoRA (lora_unet_, names with underscores of their own)',
    base: file(K5, kandinsky5Tensors()), baseName: K5,
    adapters: [{ file: 'kandinsky5_musubi.safetensors', specs: kandinskyMusubi, weight: 1, metadata: { ss_network_module: 'networks.lora_kandinsky' } }],
  },
  {
    name: 'Z-Image Turbo, Comfy-Org single file ← musubi-tuner LoRA converted for ComfyUI (lora_unet_…_attention_qkv)',
    base: file(ZT, zImageComfyTensors(rand, 'BF16')), baseName: ZT,
    adapters: [{ file: 'zimage_musubi_comfy.safetensors', specs: musubiZImageComfy(false), weight: 1, metadata: { ss_network_module: 'networks.lora_zimage' } }],
  },
  {
    name: 'diffusers Z-Image transformer ← the same converted LoRA (qkv thirds onto to_q, to_k, to_v)',
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(zImageDiffusersTensors(rand, 'BF16')), 'config.json': JSON.stringify({ _class_name: 'ZImageTransformer2DModel' }) },
    baseName: 'transformer',
    adapters: [{ file: 'zimage_musubi_comfy.safetensors', specs: musubiZImageComfy(true), weight: 0.8, metadata: { ss_network_module: 'networks.lora_zimage' } }],
  },
];
loraCaseSuite(MORE_CASES, rand, 'BF16');

// --- Nunchaku SVDQuant bases: refused as a whole ---------------------------------------------------

/**
 * Nunchaku's layers as its `SVDQW4A4Linear` / `AWQW4A16Linear` hold them (nunchaku/models/linear.py):
 * W4A4 `qweight` I8 (out, in/2), `wscales` (in/group, out) — BF16 for int4, F8_E4M3 for nvfp4, with
 * `wcscales` (out) and `wtscale` —, `smooth_factor` and `smooth_factor_orig` (in), `proj_down` (in, r),
 * `proj_up` (out, r), `bias`; W4A16 `qweight` I32 (out/4, in/2), `wscales`, `wzeros` (in/group, out).
 */
function svdqLayer(m: string, out: number, inF: number, r: number, fp4: boolean): FixtureTensor[] {
  const group = fp4 ? 16 : 64;
  const groups = Math.max(1, inF / group);
  return [
    { name: `${m}.qweight`, dtype: 'I8', shape: [out, inF / 2], data: new Array(out * inF / 2).fill(17) },
    fp4 ? tensor(rand, `${m}.wscales`, [groups, out], 'F8_E4M3') : tensor(rand, `${m}.wscales`, [groups, out], 'BF16'),
    tensor(rand, `${m}.smooth_factor`, [inF], 'BF16'), tensor(rand, `${m}.smooth_factor_orig`, [inF], 'BF16'),
    tensor(rand, `${m}.proj_down`, [inF, r], 'BF16'), tensor(rand, `${m}.proj_up`, [out, r], 'BF16'), tensor(rand, `${m}.bias`, [out], 'BF16'),
    ...(fp4 ? [tensor(rand, `${m}.wcscales`, [out], 'BF16'), { name: `${m}.wtscale`, dtype: 'F32' as const, shape: [], data: [0.5] }] : []),
  ];
}
function awqLayer(m: string, out: number, inF: number): FixtureTensor[] {
  const groups = Math.max(1, inF / 64);
  return [
    { name: `${m}.qweight`, dtype: 'I32', shape: [out / 4, inF / 2], data: new Array(out / 4 * inF / 2).fill(0x12345678) },
    tensor(rand, `${m}.wscales`, [groups, out], 'BF16'), tensor(rand, `${m}.wzeros`, [groups, out], 'BF16'), tensor(rand, `${m}.bias`, [out], 'BF16'),
  ];
}
const n = 8;
/** `svdq-int4_r32-flux.1-dev.safetensors` (nunchaku 1.x): fused to_qkv, adaLN in W4A16, x_embedder / proj_out left bf16. */
const NF = 'svdq-int4_r32-flux.1-dev.safetensors';
const nunchakuFlux = buildSafetensors([
  ...svdqLayer('transformer_blocks.0.attn.to_qkv', 3 * n, n, 4, false),
  ...svdqLayer('transformer_blocks.0.ff.net.0.proj', 4 * n, n, 4, false),
  ...awqLayer('transformer_blocks.0.norm1.linear', 6 * n, n),
  tensor(rand, 'x_embedder.weight', [n, 16], 'BF16'), tensor(rand, 'proj_out.weight', [16, n], 'BF16'),
], {
  model_class: 'NunchakuFluxTransformer2DModelV2',
  quantization_config: JSON.stringify({ method: 'svdquant', weight: { dtype: 'int4', scale_dtype: null, group_size: 64 }, activation: { dtype: 'int4', scale_dtype: null, group_size: 64 }, rank: 32 }),
});
/** `svdq-fp4_r128-qwen-image.safetensors`: nvfp4 W4A4, fused to_qkv; img_in left bf16. */
const NQ = 'svdq-fp4_r128-qwen-image.safetensors';
const nunchakuQwen = buildSafetensors([
  ...svdqLayer('transformer_blocks.0.attn.to_qkv', 3 * n, 16, 4, true),
  ...awqLayer('transformer_blocks.0.img_mod.1', 6 * n, 16),
  tensor(rand, 'img_in.weight', [16, 12], 'BF16'),
], {
  model_class: 'NunchakuQwenImageTransformer2DModel',
  quantization_config: JSON.stringify({ method: 'svdquant', weight: { dtype: 'fp4_e2m1_all', scale_dtype: [null, 'fp8_e4m3_nan'], group_size: 16 }, rank: 128 }),
});
/** nunchaku 0.x's transformer_blocks.safetensors: `qkv_proj`, `smooth`, and the low-rank branch as `lora_down` / `lora_up`. */
const NOLD = 'transformer_blocks.safetensors';
const nunchakuOld = buildSafetensors([
  { name: 'transformer_blocks.0.qkv_proj.qweight', dtype: 'I8', shape: [3 * n, n / 2], data: new Array(3 * n * n / 2).fill(3) },
  tensor(rand, 'transformer_blocks.0.qkv_proj.wscales', [1, 3 * n], 'BF16'), tensor(rand, 'transformer_blocks.0.qkv_proj.smooth', [n], 'BF16'),
  tensor(rand, 'transformer_blocks.0.qkv_proj.lora_down', [n, 4], 'BF16'), tensor(rand, 'transformer_blocks.0.qkv_proj.lora_up', [3 * n, 4], 'BF16'),
]);

/** A LoRA on layers nunchaku leaves unquantized only: without the whole-base refusal it would merge there and say nothing. */
const onUnquantizedFlux = buildSafetensors([
  tensor(rand, 'transformer.x_embedder.lora_A.weight', [4, 16], 'BF16'), tensor(rand, 'transformer.x_embedder.lora_B.weight', [n, 4], 'BF16'),
  tensor(rand, 'transformer.proj_out.lora_A.weight', [4, n], 'BF16'), tensor(rand, 'transformer.proj_out.lora_B.weight', [16, 4], 'BF16'),
]);
const qwenLora = buildSafetensors([
  tensor(rand, 'transformer.transformer_blocks.0.attn.to_q.lora_A.weight', [4, 16], 'BF16'), tensor(rand, 'transformer.transformer_blocks.0.attn.to_q.lora_B.weight', [n, 4], 'BF16'),
  tensor(rand, 'transformer.img_in.lora_A.weight', [4, 12], 'BF16'), tensor(rand, 'transformer.img_in.lora_B.weight', [16, 4], 'BF16'),
]);
const oldLora = buildSafetensors([
  tensor(rand, 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', [2, n], 'BF16'), tensor(rand, 'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', [3 * n, 2], 'BF16'),
]);

const backends = mergeBackends({ cpu: 'default' });
const temp = tempDirs();
afterAll(temp.removeAll);
const WHAT_TO_DO = /load the LoRA with nunchaku \(ComfyUI-nunchaku's LoRA loader, or update_lora_params in Python\), or merge into the bf16 or fp8 model and quantize the result again/;

describe('nunchaku SVDQuant bases are refused as a whole, by name, with what to do', () => {
  const cases: { name: string; base: string; bytes: Uint8Array; lora: Uint8Array; message: RegExp }[] = [
    { name: 'FLUX.1 int4, a LoRA only on its unquantized x_embedder and proj_out', base: NF, bytes: nunchakuFlux, lora: onUnquantizedFlux,
      message: /svdq-int4_r32-flux\.1-dev\.safetensors: a nunchaku SVDQuant model \(4-bit W4A4 layers with a low-rank branch: transformer_blocks\.0\.attn\.to_qkv\.qweight, \.wscales, \.proj_down, \.proj_up; 3 quantized layers\)/ },
    { name: 'Qwen-Image nvfp4, a diffusers LoRA on to_q and img_in', base: NQ, bytes: nunchakuQwen, lora: qwenLora,
      message: /svdq-fp4_r128-qwen-image\.safetensors: a nunchaku SVDQuant model \(4-bit W4A4 layers with a low-rank branch: transformer_blocks\.0\.attn\.to_qkv\.qweight.*; 2 quantized layers\)/ },
    { name: 'nunchaku 0.x transformer_blocks.safetensors (smooth, lora_down, lora_up)', base: NOLD, bytes: nunchakuOld, lora: oldLora,
      message: /transformer_blocks\.safetensors: a nunchaku SVDQuant model \(4-bit W4A4 layers with a low-rank branch: transformer_blocks\.0\.qkv_proj\.qweight, \.wscales, \.lora_down, \.lora_up; 1 quantized layers\)/ },
  ];
  it.for(cases)('$name: prepareMerge throws one line', async (c) => {
    const prepare = prepareMerge(memoryInputFileSet({ [c.base]: c.bytes }, c.base), [{ files: memoryInputFileSet({ 'lora.safetensors': c.lora }, 'lora.safetensors'), weight: 1 }]);
    await expect(prepare).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    const message = await prepare.catch((e: Error) => e.message);
    expect(message).toMatch(c.message);
    expect(message).toMatch(WHAT_TO_DO);
    expect(message).not.toContain('\n');
  });
  it('through the CLI: one error line, nothing written (FLUX.1 int4)', async () => {
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, { [NF]: nunchakuFlux }, { 'lora.safetensors': onUnquantizedFlux }, /a nunchaku SVDQuant model/);
  });
  it('nunchaku\'s AWQ W4A16 layers alone are named as such', async () => {
    const base = buildSafetensors([...awqLayer('transformer_blocks.0.norm1.linear', 6 * n, n), tensor(rand, 'x_embedder.weight', [n, 16], 'BF16')]);
    const message = await prepareMerge(memoryInputFileSet({ [NF]: base }, NF), [{ files: memoryInputFileSet({ 'lora.safetensors': onUnquantizedFlux }, 'lora.safetensors'), weight: 1 }])
      .then(() => '', (e: Error) => e.message);
    expect(message).toMatch(/: a nunchaku 4-bit model \(AWQ W4A16 layers: transformer_blocks\.0\.norm1\.linear\.qweight, \.wscales, \.wzeros; 1 quantized layers\)/);
    expect(message).not.toContain('low-rank branch');
  });
});

/**
 * The whole Kolors-diffusers pipeline folder: its text encoder is ChatGLM3-6B (`ChatGLMModel`,
 * `encoder.layers.N.self_attention.query_key_value`, `mlp.dense_h_to_4h` / `dense_4h_to_h`), which
 * KolorsPipeline's LoRA loader (diffusers' SDXL one) fills from `text_encoder.` + those names; a
 * kohya-form `lora_te_` + the names flattened lands there too.
 */
describe('Kolors pipeline folder: unet/ and the ChatGLM3 text_encoder/', () => {
  const G = { h: 8, qkv: 12, ffn: 16 };
  const unetTensors = sdxlUnetDiffusers('F16', true);
  const teTensors: FixtureTensor[] = [
    tensor(rand, 'embedding.word_embeddings.weight', [20, G.h], 'F16'),
    tensor(rand, 'encoder.layers.0.self_attention.query_key_value.weight', [G.qkv, G.h], 'F16'), tensor(rand, 'encoder.layers.0.self_attention.query_key_value.bias', [G.qkv], 'F16'),
    tensor(rand, 'encoder.layers.0.self_attention.dense.weight', [G.h, G.h], 'F16'),
    tensor(rand, 'encoder.layers.0.mlp.dense_h_to_4h.weight', [2 * G.ffn, G.h], 'F16'), tensor(rand, 'encoder.layers.0.mlp.dense_4h_to_h.weight', [G.h, G.ffn], 'F16'),
    tensor(rand, 'encoder.final_layernorm.weight', [G.h], 'F16'), tensor(rand, 'output_layer.weight', [20, G.h], 'F16'),
  ];
  const pipeline: Record<string, Uint8Array | string> = {
    'model_index.json': JSON.stringify({
      _class_name: 'KolorsPipeline', text_encoder: ['kolors', 'ChatGLMModel'], tokenizer: ['kolors', 'ChatGLMTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'EulerDiscreteScheduler'],
    }),
    'unet/diffusion_pytorch_model.fp16.safetensors': buildSafetensors(unetTensors), 'unet/config.json': KOLORS_UNET_CONFIG,
    'text_encoder/model.safetensors': buildSafetensors(teTensors),
    'text_encoder/config.json': JSON.stringify({ architectures: ['ChatGLMModel'], model_type: 'chatglm', hidden_size: 4096, num_layers: 28 }),
  };
  const diffusersSpecs: LoraSpec[] = [
    peft(`unet.${A1}.attn2.to_k`, 4, U.c1, U.ctx, [{ key: `${A1}.attn2.to_k.weight` }], 2),
    peft('text_encoder.encoder.layers.0.self_attention.query_key_value', 4, G.qkv, G.h, [{ key: 'encoder.layers.0.self_attention.query_key_value.weight' }], 2),
    peft('text_encoder.encoder.layers.0.mlp.dense_h_to_4h', 4, 2 * G.ffn, G.h, [{ key: 'encoder.layers.0.mlp.dense_h_to_4h.weight' }], 2),
  ];
  const kohyaSpecs: LoraSpec[] = [
    kohya('lora_te_encoder_layers_0_mlp_dense_4h_to_h', 2, G.h, G.ffn, [{ key: 'encoder.layers.0.mlp.dense_4h_to_h.weight' }], 1),
    kohya('lora_unet_encoder_hid_proj', 2, U.ctx, U.glm, [{ key: 'encoder_hid_proj.weight' }], 1),
  ];
  const metadata = {
    format: 'pt', lora_adapter_metadata: JSON.stringify({
      'unet.r': 4, 'unet.lora_alpha': 8, 'unet.peft_type': 'LORA', 'text_encoder.r': 4, 'text_encoder.lora_alpha': 8, 'text_encoder.peft_type': 'LORA',
    }),
  };
  const diffusersLora = buildSafetensors(loraTensors(rand, diffusersSpecs, 'BF16'), metadata);
  const kohyaLora = buildSafetensors(loraTensors(rand, kohyaSpecs, 'BF16'));

  it('merges both LoRAs exactly into unet/ and text_encoder/', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(pipeline, 'Kolors-diffusers'), [
      { files: memoryInputFileSet({ 'pytorch_lora_weights.safetensors': diffusersLora }, 'pytorch_lora_weights.safetensors'), weight: 0.7 },
      { files: memoryInputFileSet({ 'kolors_kohya.safetensors': kohyaLora }, 'kolors_kohya.safetensors'), weight: 1 },
    ]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    expect(prepared.plan.leftOut).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu! });
    await prepared.close();
    const terms = [...truthTerms(decodeSafetensors(diffusersLora).tensors, diffusersSpecs, 0.7), ...truthTerms(decodeSafetensors(kohyaLora).tensors, kohyaSpecs, 1)];
    const merged = async (path: string) => decodeSafetensors(new Uint8Array(await output.files().find((f) => f.path.endsWith(path))!.blob.arrayBuffer())).tensors;
    const unetKeys = new Set(unetTensors.map((t) => t.name));
    expectMergedFile(decodeSafetensors(pipeline['unet/diffusion_pytorch_model.fp16.safetensors'] as Uint8Array).tensors,
      await merged('unet/diffusion_pytorch_model.fp16.safetensors'), terms.filter((t) => unetKeys.has(t.baseKey)));
    expectMergedFile(decodeSafetensors(pipeline['text_encoder/model.safetensors'] as Uint8Array).tensors,
      await merged('text_encoder/model.safetensors'), terms.filter((t) => !unetKeys.has(t.baseKey)));
  });
});

// --- LongCat-Video's own LoRAs ---------------------------------------------------------------------

/**
 * LongCat-Video's LoRANetwork files (`lora/cfg_step_lora.safetensors`: rank 128, α 64, alpha_scale
 * 0.5 stored per module): `lora___lorahyphen___` + the module path, `lora_down.weight` (n·r, in), one
 * `lora_up.weight` or, on the fused `attn.qkv` (n = 3) and `cross_attn.kv_linear` (n = 2), one
 * `lora_up.blocks.<i>.weight` (out/n, r) per chunk of r down rows (its LoRAUPParallel); the forward
 * adds lora_up(lora_down(x))·multiplier·alpha_scale. Onto its `dit/` checkpoint names (bare).
 */
describe('LongCat-Video LoRAs (its LoRANetwork: lora___lorahyphen___ names, alpha_scale, lora_up.blocks.N)', () => {
  const h = 8, r = 2, ffn = 20;
  const P = 'lora___lorahyphen___blocks___lorahyphen___0___lorahyphen___';
  const ditTensors: FixtureTensor[] = [
    tensor(rand, 'blocks.0.adaLN_modulation.1.weight', [6 * h, h], 'BF16'),
    tensor(rand, 'blocks.0.attn.qkv.weight', [3 * h, h], 'BF16'), tensor(rand, 'blocks.0.attn.qkv.bias', [3 * h], 'BF16'),
    tensor(rand, 'blocks.0.attn.proj.weight', [h, h], 'BF16'), tensor(rand, 'blocks.0.attn.q_norm.weight', [h / 2], 'F32'),
    tensor(rand, 'blocks.0.cross_attn.q_linear.weight', [h, h], 'BF16'), tensor(rand, 'blocks.0.cross_attn.kv_linear.weight', [2 * h, h], 'BF16'),
    tensor(rand, 'blocks.0.cross_attn.proj.weight', [h, h], 'BF16'),
    tensor(rand, 'blocks.0.ffn.w1.weight', [ffn, h], 'BF16'), tensor(rand, 'blocks.0.ffn.w2.weight', [h, ffn], 'BF16'), tensor(rand, 'blocks.0.ffn.w3.weight', [ffn, h], 'BF16'),
    tensor(rand, 'final_layer.linear.weight', [16, h], 'BF16'),
  ];
  const DIT = 'diffusion_pytorch_model.safetensors';
  const dit = { [DIT]: buildSafetensors(ditTensors), 'config.json': JSON.stringify({ _class_name: 'LongCatVideoTransformer3DModel', hidden_size: 4096, depth: 48 }) };
  const scalar = (name: string, dtype: 'F32' | 'BF16', v: number): FixtureTensor => ({ name, dtype, shape: [], data: [v] });
  const loraTensorsList: FixtureTensor[] = [
    tensor(rand, `${P}attn___lorahyphen___qkv.lora_down.weight`, [3 * r, h], 'BF16'),
    ...[0, 1, 2].map((i) => tensor(rand, `${P}attn___lorahyphen___qkv.lora_up.blocks.${i}.weight`, [h, r], 'BF16')),
    scalar(`${P}attn___lorahyphen___qkv.alpha_scale`, 'BF16', 0.5),
    tensor(rand, `${P}cross_attn___lorahyphen___kv_linear.lora_down.weight`, [2 * r, h], 'BF16'),
    ...[0, 1].map((i) => tensor(rand, `${P}cross_attn___lorahyphen___kv_linear.lora_up.blocks.${i}.weight`, [h, r], 'BF16')),
    scalar(`${P}cross_attn___lorahyphen___kv_linear.alpha_scale`, 'F32', 0.5),
    tensor(rand, `${P}ffn___lorahyphen___w1.lora_down.weight`, [r, h], 'BF16'), tensor(rand, `${P}ffn___lorahyphen___w1.lora_up.weight`, [ffn, r], 'BF16'),
    scalar(`${P}ffn___lorahyphen___w1.alpha_scale`, 'F32', 0.5),
    tensor(rand, `${P}adaLN_modulation___lorahyphen___1.lora_down.weight`, [r, h], 'BF16'), tensor(rand, `${P}adaLN_modulation___lorahyphen___1.lora_up.weight`, [6 * h, r], 'BF16'),
    scalar(`${P}adaLN_modulation___lorahyphen___1.alpha_scale`, 'F32', 0.25),
  ];
  const lora = buildSafetensors(loraTensorsList);

  /** The float64 truth's terms: each up block on its out/n rows with its r rows of the down. */
  function terms(weight: number) {
    const t = decodeSafetensors(lora).tensors;
    const slice = (name: string, i: number, rows: number) => {
      const d = t.get(name)!;
      const cols = d.shape[1];
      return { ...d, shape: [rows, cols], values: d.values.slice(i * rows * cols, (i + 1) * rows * cols) };
    };
    const blocks = (module: string, key: string, n: number) => [...Array(n).keys()].map((i) => ({
      baseKey: key, a: slice(`${P}${module}.lora_down.weight`, i, r), b: t.get(`${P}${module}.lora_up.blocks.${i}.weight`)!,
      scale: weight * 0.5, rows: [{ src: 0, dst: i * h, count: h }],
    }));
    const plain = (module: string, key: string, alphaScale: number) => ({
      baseKey: key, a: t.get(`${P}${module}.lora_down.weight`)!, b: t.get(`${P}${module}.lora_up.weight`)!, scale: weight * alphaScale,
    });
    return [
      ...blocks('attn___lorahyphen___qkv', 'blocks.0.attn.qkv.weight', 3),
      ...blocks('cross_attn___lorahyphen___kv_linear', 'blocks.0.cross_attn.kv_linear.weight', 2),
      plain('ffn___lorahyphen___w1', 'blocks.0.ffn.w1.weight', 0.5),
      plain('adaLN_modulation___lorahyphen___1', 'blocks.0.adaLN_modulation.1.weight', 0.25),
    ];
  }

  it.for(['cpu', 'webgpu'] as const)('merges exactly on %s', async (kind, ctx) => {
    const backend = backends[kind];
    if (!backend) return ctx.skip();
    const prepared = await prepareMerge(memoryInputFileSet(dit, 'dit'), [{ files: memoryInputFileSet({ 'cfg_step_lora.safetensors': lora }, 'cfg_step_lora.safetensors'), weight: 0.8 }]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    expect(prepared.plan.leftOut).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend });
    await prepared.close();
    const merged = decodeSafetensors(new Uint8Array(await output.files().find((f) => f.path.endsWith('.safetensors'))!.blob.arrayBuffer())).tensors;
    expectMergedFile(decodeSafetensors(dit[DIT]).tensors, merged, terms(0.8));
  });

  it('refuses a module without alpha_scale, and a block left out, naming them', async () => {
    const broken = buildSafetensors(loraTensorsList.filter((t) => !t.name.endsWith('ffn___lorahyphen___w1.alpha_scale') && !t.name.endsWith('kv_linear.lora_up.blocks.1.weight')));
    const message = await prepareMerge(memoryInputFileSet(dit, 'dit'), [{ files: memoryInputFileSet({ 'cfg_step_lora.safetensors': broken }, 'cfg_step_lora.safetensors'), weight: 1 }])
      .then(() => '', (e: Error) => e.message);
    expect(message).toMatch(/module "blocks\.0\.ffn\.w1" \(LongCat-Video LoRA\) has no alpha_scale/);
    // `inspect` shows the file's refusal (an adapter's), not a model's tensor list.
    const path = temp.make({ 'cfg_step_lora.safetensors': broken });
    const run = await runCli(['inspect', `${path}/cfg_step_lora.safetensors`]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/has no alpha_scale/);
    expect(message).toMatch(/module "blocks\.0\.cross_attn\.kv_linear" \(LongCat-Video LoRA\) has lora_up\.blocks 0: blocks must be numbered from 0 with none left out|module "blocks\.0\.cross_attn\.kv_linear" \(LongCat-Video LoRA\) has factors of shapes/);
  });
});

describe('a Wan 2.1 I2V LightX2V LoRA on a Wan 2.2 base', () => {
  it('is refused module by module where Wan 2.2 has no image cross-attention (ComfyUI loads the rest: "lora key not loaded")', async () => {
    const problems = await planProblemsOf(file(W22, wan22Tensors()), W22, [
      kohya('diffusion_model.blocks.0.self_attn.k', 8, wd, wd, [], 8),
      kohya('diffusion_model.blocks.0.cross_attn.k_img', 8, wd, wd, [], 8),
    ], rand);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/diffusion_model\.blocks\.0\.cross_attn\.k_img/);
  });
});

// --- Z-Image LoKr on diffusers names onto ComfyUI's fused qkv -------------------------------------

/**
 * A LoKr (`lokr_w1`, `lokr_w2`, both whole: scale 1, as LyCORIS and ComfyUI apply it without w1_b /
 * w2_b) on Z-Image's diffusers names under `diffusion_model.`, as ComfyUI reads them: to_k's
 * kron(w1, w2) lands on rows [dim, 2·dim) of ComfyUI's `attention.qkv`, feed_forward.w1 whole.
 */
describe('Z-Image LoKr (diffusers names) onto Comfy-Org\'s fused qkv', () => {
  const d = ZIMAGE.dim;
  const base = file(ZT, zImageComfyTensors(rand, 'BF16'));
  const factors = [
    tensor(rand, 'diffusion_model.layers.0.attention.to_k.lokr_w1', [2, 2], 'BF16'), tensor(rand, 'diffusion_model.layers.0.attention.to_k.lokr_w2', [d / 2, d / 2], 'BF16'),
    tensor(rand, 'diffusion_model.layers.1.feed_forward.w1.lokr_w1', [4, 2], 'BF16'), tensor(rand, 'diffusion_model.layers.1.feed_forward.w1.lokr_w2', [ZIMAGE.ffn / 4, d / 2], 'BF16'),
  ];
  const lokr = buildSafetensors(factors);
  /** kron(w1, w2) written out as B = kron (out, in) against A = I (in, in). */
  const kronTerm = (baseKey: string, w1: string, w2: string, rows?: { src: number; dst: number; count: number }[]) => {
    const t = decodeSafetensors(lokr).tensors;
    const [a1, b1] = t.get(w1)!.shape, [c2, d2] = t.get(w2)!.shape;
    const out = a1 * c2, inF = b1 * d2;
    const k = new Float64Array(out * inF);
    for (let i = 0; i < a1; i++) for (let j = 0; j < b1; j++) for (let p = 0; p < c2; p++) for (let q = 0; q < d2; q++) {
      k[(i * c2 + p) * inF + j * d2 + q] = t.get(w1)!.values[i * b1 + j] * t.get(w2)!.values[p * d2 + q];
    }
    const eye = new Float64Array(inF * inF);
    for (let i = 0; i < inF; i++) eye[i * inF + i] = 1;
    const dec = (shape: number[], values: Float64Array) => ({ dtype: 'F32' as const, shape, values, bytes: new Uint8Array() });
    return { baseKey, a: dec([inF, inF], eye), b: dec([out, inF], k), scale: 0.9, rows };
  };
  it('merges exactly (to_k on rows [dim, 2·dim) of qkv)', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, ZT), [{ files: memoryInputFileSet({ 'zimage_lokr.safetensors': lokr }, 'zimage_lokr.safetensors'), weight: 0.9 }]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: backends.cpu! });
    await prepared.close();
    const merged = decodeSafetensors(new Uint8Array(await output.files().find((f) => f.path.endsWith('.safetensors'))!.blob.arrayBuffer())).tensors;
    expectMergedFile(decodeSafetensors(base[ZT]).tensors, merged, [
      kronTerm('layers.0.attention.qkv.weight', factors[0].name, factors[1].name, [{ src: 0, dst: d, count: d }]),
      kronTerm('layers.1.feed_forward.w1.weight', factors[2].name, factors[3].name),
    ]);
  });
});
