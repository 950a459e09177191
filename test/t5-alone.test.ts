/**
 * T5 LoRA modules named by kohya's and diffusers' text encoder numbers, and by ComfyUI's own name, on
 * bases whose only text encoder is T5-XXL: Chroma and PixArt-Σ as diffusers' pipeline folders, and as
 * the checkpoints ComfyUI's Save Checkpoint writes for them (Chroma's T5 under `cond_stage_model.t5xxl.`,
 * the prefix supported_models.py's Chroma leaves at the default; PixArt's under `text_encoders.t5xxl.`).
 * The tools that write and apply their T5 LoRAs name that T5: ComfyUI loads it alone, so comfy/lora.py
 * model_lora_keys_clip maps `lora_te1_` (and `text_encoders.t5xxl.transformer.`) to it; OneTrainer
 * writes `lora_te1_` (kohya format), `lora_te_` (legacy format), `text_encoder.` (diffusers format, α
 * folded into lora_B) and `text_encoders.t5xxl.transformer.` (Comfy format, lora_A/lora_B with α) for
 * both models; sd-scripts trains Chroma's T5 as FLUX.1's, `lora_te3_`; diffusers' ChromaPipeline loads
 * `text_encoder.` into its T5. Those merge (float64 truth); every other number (`lora_te2_`,
 * `text_encoder_2.`, `text_encoder_3.`, and PixArt's `lora_te3_`) is left out with a warning naming
 * the modules and why (until now they all merged into the T5). lodestones' Chroma files hold the
 * transformer alone, where every text encoder module is left out. Model index and configs as diffusers
 * and transformers write them; shapes cut small (d_model 10, d_ff 16).
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, mergeLoneFileChecked, onePipelineLora } from './helpers/pipeline-merge.js';
import { T5_FEED_FORWARD, T5_SELF_ATTENTION, t5EncoderTensors, t5XxlConfig } from './helpers/t5-fixtures.js';

const rand = seededRandom(1472);
const json = (o: object) => JSON.stringify(o, null, 2);

/** google/t5-v1_1-xxl's encoder, as Chroma1-HD's and PixArt-Σ's text_encoder/ save it. */
const T5_CONFIG = t5XxlConfig();

const SA = T5_SELF_ATTENTION;
const FF = T5_FEED_FORWARD;
const t5Tensors = (prefix: string) => t5EncoderTensors(rand, prefix);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);

/** lodestones/Chroma1-HD. */
const chroma: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'ChromaPipeline', _diffusers_version: '0.35.0.dev0', feature_extractor: [null, null], image_encoder: [null, null],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
    transformer: ['diffusers', 'ChromaTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([
    tensor(rand, 'distilled_guidance_layer.in_proj.weight', [8, 8], 'BF16'), tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16'),
  ]),
  'text_encoder/config.json': json(T5_CONFIG),
  'text_encoder/model.safetensors': buildSafetensors(t5Tensors('')),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** PixArt-alpha/PixArt-Sigma-XL-2-1024-MS. */
const pixartSigma: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'PixArtSigmaPipeline', _diffusers_version: '0.29.1', _name_or_path: 'PixArt-alpha/PixArt-Sigma-XL-2-1024-MS',
    scheduler: ['diffusers', 'DPMSolverMultistepScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
    transformer: ['diffusers', 'PixArtTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([
    tensor(rand, 'adaln_single.linear.weight', [48, 8], 'BF16'), tensor(rand, 'transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16'),
  ]),
  'text_encoder/config.json': json({ ...T5_CONFIG, torch_dtype: 'float32' }),
  'text_encoder/model.safetensors': buildSafetensors(t5Tensors('')),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

const flat = (path: string) => path.replaceAll('.', '_');
/** kohya's form (sd-scripts, OneTrainer's kohya and legacy formats): lora_down/lora_up and α (scale α/r). */
const kohya = (name: string, out: number, inF: number, key: string) => kohyaSpec(name, 2, out, inF, [{ key }], 4);
/** OneTrainer's diffusers format: lora_A/lora_B, α folded into lora_B (scale 1). */
const diffusers = (name: string, out: number, inF: number, key: string) => peftSpec(name, 2, out, inF, [{ key }], 1);
/** OneTrainer's Comfy format: lora_A/lora_B with α kept (scale α/r). */
const oneTrainerComfy = (name: string, out: number, inF: number, key: string): LoraSpec =>
  ({ ...peftSpec(name, 2, out, inF, [{ key }], 3), extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [6] }] });

/** The modules each tool names Chroma's T5 by, landing on `at` + the T5's key (`text_encoder.` in a pipeline). */
const chromaLands = (at: string) => [
  kohya(`lora_te_${flat(SA)}_q`, 10, 10, `${at}${SA}.q.weight`),
  kohya(`lora_te1_${flat(SA)}_k`, 10, 10, `${at}${SA}.k.weight`),
  kohya(`lora_te3_${flat(FF)}_wi_0`, 16, 10, `${at}${FF}.wi_0.weight`),
  diffusers(`text_encoder.${SA}.v`, 10, 10, `${at}${SA}.v.weight`),
  comfyExtracted(`text_encoders.t5xxl.transformer.${SA}.o`, 10, 10, `${at}${SA}.o.weight`),
  oneTrainerComfy(`text_encoders.t5xxl.transformer.${FF}.wo`, 10, 16, `${at}${FF}.wo.weight`),
];
/** The other numbers, which no tool applies to a T5 alone (each on a module of its own). */
const others = [
  kohya(`lora_te2_${flat(SA)}_q`, 10, 10, ''),
  diffusers(`text_encoder_2.${SA}.k`, 10, 10, ''),
  diffusers(`text_encoder_3.${FF}.wi_1`, 16, 10, ''),
];

const CHROMA_TOOLS = 'kohya\'s sd-scripts names it lora_te3_, OneTrainer lora_te1_, lora_te_ (its legacy format) or text_encoder., diffusers\' ChromaPipeline loads text_encoder. into it (given the LoraConfig of the file\'s lora_adapter_metadata), and ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. there';
const PIXART_TOOLS = 'OneTrainer names it lora_te1_, lora_te_ (its legacy format) or text_encoder. (diffusers\' PixArt pipelines load no LoRA), and ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. there';
const left = (what: string, module: string) => `lora.safetensors: 1 module left out, not merged: it names ${what} (${module})`;
/** The warning for `module`, named `what` by `prefix`, on `model`'s T5 at `where`. */
const noTool = (module: string, what: string, prefix: string, model: string, where: string, tools: string) =>
  left(`${what} as ${prefix}, a name no tool applies to ${model}'s T5, its only text encoder (${where}): ${tools}; ComfyUI leaves such modules unloaded`, module);
const othersLeft = (model: string, where: string, tools: string) => [
  noTool(`lora_te2_${flat(SA)}_q`, 'text encoder 2 (T5)', 'lora_te2_', model, where, tools),
  noTool(`text_encoder_2.${SA}.k`, 'text encoder 2 (T5)', 'text_encoder_2.', model, where, tools),
  noTool(`text_encoder_3.${FF}.wi_1`, 'text encoder 3 (T5)', 'text_encoder_3.', model, where, tools),
];

const pipelines = onePipelineLora(rand, 0.9, 'BF16');

describe('a Chroma pipeline folder (ChromaPipeline: its T5 alone in text_encoder/)', () => {
  it('OneTrainer\'s lora_te_, lora_te1_, text_encoder. and Comfy names, sd-scripts\' lora_te3_ and ComfyUI\'s t5xxl merge into the T5; lora_te2_, text_encoder_2. and text_encoder_3. are left out', async () => {
    const { warnings } = await pipelines.mergeAndCheck(chroma, [...chromaLands('text_encoder.'), ...others], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual(othersLeft('Chroma', 'text_encoder/', CHROMA_TOOLS));
  });

  it('a FLUX.1 LoRA\'s CLIP-L modules (lora_te1_text_model_…) are left out with a warning (they were refused as a missing T5 tensor): Chroma holds no CLIP-L, and ComfyUI leaves them unloaded', async () => {
    const clipL = kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 12, 12, '');
    const { warnings } = await pipelines.mergeAndCheck(chroma, [chromaLands('text_encoder.')[1], clipL], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([
      left('text encoder 1 (CLIP-L), which the base does not hold: Chroma\'s only text encoder is a T5 (text_encoder/), where ComfyUI leaves CLIP modules unloaded', 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj'),
    ]);
  });
});

describe('a PixArt-Σ pipeline folder (PixArtSigmaPipeline: its T5 alone in text_encoder/)', () => {
  it('OneTrainer\'s lora_te_, lora_te1_, text_encoder. and Comfy names and ComfyUI\'s t5xxl merge into the T5; lora_te3_ (sd-scripts trains no PixArt) and the other numbers are left out', async () => {
    const lands = chromaLands('text_encoder.').filter((s) => !s.down.startsWith('lora_te3_'));
    const lora3 = kohya(`lora_te3_${flat(FF)}_wi_0`, 16, 10, '');
    const { warnings } = await pipelines.mergeAndCheck(pixartSigma, [...lands, lora3, ...others], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([
      noTool(`lora_te3_${flat(FF)}_wi_0`, 'text encoder 3 (T5)', 'lora_te3_', 'PixArt', 'text_encoder/', PIXART_TOOLS),
      ...othersLeft('PixArt', 'text_encoder/', PIXART_TOOLS),
    ]);
  });
});

describe('checkpoints as ComfyUI\'s Save Checkpoint writes them (model, T5 and VAE in one file)', () => {
  it('Chroma\'s (cond_stage_model.t5xxl., beside its distilled_guidance_layer): the names that reach Chroma\'s T5 merge there, the others are left out', async () => {
    const file = 'chroma1-hd-aio.safetensors';
    const P = 'cond_stage_model.t5xxl.transformer.';
    const base = buildSafetensors([
      tensor(rand, 'model.diffusion_model.double_blocks.0.img_attn.qkv.weight', [24, 8], 'BF16'),
      tensor(rand, 'model.diffusion_model.distilled_guidance_layer.in_proj.weight', [8, 8], 'BF16'),
      tensor(rand, 'model.diffusion_model.distilled_guidance_layer.norms.0.scale', [8], 'BF16'),
      ...t5Tensors(P), tensor(rand, 'first_stage_model.decoder.conv_in.weight', [8, 4, 3, 3], 'BF16'),
    ]);
    const warnings = await mergeLoneFileChecked(pipelines.backend(), rand, base, file, [...chromaLands(P), ...others], 0.7);
    expect(warnings).toEqual(othersLeft('Chroma', 'cond_stage_model.t5xxl.', CHROMA_TOOLS));
  });

  it('PixArt\'s (text_encoders.t5xxl., beside its t_block): lora_te3_ is left out there as well', async () => {
    const file = 'pixart-sigma-xl-2-1024-ms-aio.safetensors';
    const P = 'text_encoders.t5xxl.transformer.';
    const base = buildSafetensors([
      tensor(rand, 'model.diffusion_model.t_block.1.weight', [48, 8], 'BF16'), tensor(rand, 'model.diffusion_model.blocks.0.attn.qkv.weight', [24, 8], 'BF16'),
      ...t5Tensors(P), tensor(rand, 'vae.decoder.conv_in.weight', [8, 4, 3, 3], 'BF16'),
    ]);
    const lands = chromaLands(P).filter((s) => !s.down.startsWith('lora_te3_'));
    const warnings = await mergeLoneFileChecked(pipelines.backend(), rand, base, file, [...lands, kohya(`lora_te3_${flat(FF)}_wi_0`, 16, 10, ''), ...others], 1.1);
    expect(warnings).toEqual([
      noTool(`lora_te3_${flat(FF)}_wi_0`, 'text encoder 3 (T5)', 'lora_te3_', 'PixArt', 'text_encoders.t5xxl.', PIXART_TOOLS),
      ...othersLeft('PixArt', 'text_encoders.t5xxl.', PIXART_TOOLS),
    ]);
  });
});

describe('a Chroma file as lodestones ship it (chroma-unlocked-v*, Chroma1-HD.safetensors: the transformer alone, in BFL\'s names)', () => {
  it('the transformer\'s module merges; every text encoder module is left out, the file holding no T5', async () => {
    const file = 'Chroma1-HD.safetensors';
    const base = buildSafetensors([
      tensor(rand, 'double_blocks.0.img_attn.qkv.weight', [24, 8], 'BF16'), tensor(rand, 'distilled_guidance_layer.in_proj.weight', [8, 8], 'BF16'),
      tensor(rand, 'distilled_guidance_layer.norms.0.scale', [8], 'BF16'), tensor(rand, 'single_blocks.0.linear2.weight', [8, 40], 'BF16'),
    ]);
    const specs = [
      kohya('lora_unet_double_blocks_0_img_attn_qkv', 24, 8, 'double_blocks.0.img_attn.qkv.weight'),
      kohya(`lora_te1_${flat(SA)}_k`, 10, 10, ''), kohya(`lora_te3_${flat(FF)}_wi_0`, 16, 10, ''),
      diffusers(`text_encoder.${SA}.v`, 10, 10, ''), comfyExtracted(`text_encoders.t5xxl.transformer.${SA}.o`, 10, 10, ''),
    ];
    const warnings = await mergeLoneFileChecked(pipelines.backend(), rand, base, file, specs, 1);
    const lacks = (what: string) => `${what}, which the base does not hold (it holds the UNet/transformer)`;
    expect(warnings).toEqual([
      `lora.safetensors: 2 modules left out, not merged: they name ${lacks('text encoder 1 (T5)')} (lora_te1_${flat(SA)}_k, text_encoder.${SA}.v)`,
      `lora.safetensors: 2 modules left out, not merged: they name ${lacks('text encoder 3 (T5)')} (lora_te3_${flat(FF)}_wi_0, text_encoders.t5xxl.transformer.${SA}.o)`,
    ]);
  });
});
