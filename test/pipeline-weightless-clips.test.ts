/**
 * Which CLIP a CLIP text encoder folder holds when model_index.json lists it without its weights
 * and without its config.json (transformer/ or unet/ downloaded alone): what the pipeline's class
 * (`_class_name`) runs there, as diffusers' pipelines define it (SDXL's and SD3's CLIP-L then CLIP-G,
 * HunyuanVideo's CLIP-L second behind its Llama, Stable Cascade's only CLIP a CLIP-G, SD2's CLIP-H
 * told from SD1's CLIP-L by its UNet's cross_attention_dim), so that a module is refused naming the
 * folder it would land in on the complete pipeline, and one the complete pipeline leaves out is
 * left out. Only a class not known here falls back on the folder's position, and the refusal says
 * so. A folder's config.json, where it came, still decides. The model_index.json of SDXL base,
 * SD 1.5 and HunyuanVideo are as copies of the Hub files hold them (diffusers' docs and projects
 * that embed them); SD3 medium's folders and [library, class] pairs are as copies hold them, its
 * `_diffusers_version` unchecked; SD 2.1's and the Stable Cascade prior's, and the classes below,
 * are in the shape save_pretrained writes from each class's __init__ in diffusers, their
 * `_diffusers_version` and extra fields unchecked against the Hub.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { pipelinePlan } from './helpers/pipeline-merge.js';
import { HUNYUAN_VIDEO, SD21, SD3_MEDIUM, STABLE_CASCADE_PRIOR } from './helpers/model-index.js';

const rand = seededRandom(9051);
const json = (o: object) => JSON.stringify(o, null, 2);
type Folder = Record<string, Uint8Array | string>;

const TE = 'text_model.encoder.layers.0';
const clip = (size: number) => buildSafetensors([tensor(rand, `${TE}.self_attn.q_proj.weight`, [size, size], 'BF16')]);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
const unet = () => buildSafetensors([tensor(rand, 'down_blocks.1.attentions.0.proj_in.weight', [8, 8], 'BF16')]);
const transformer = () => buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]);
/** `pipeline` without `folder`'s files (its config.json kept where `keepConfig`). */
const without = (pipeline: Folder, folder: string, keepConfig = false): Folder =>
  Object.fromEntries(Object.entries(pipeline).filter(([p]) => !p.startsWith(`${folder}/`) || (keepConfig && p === `${folder}/config.json`)));

/** transformers' config.json of each CLIP's text model (clip-vit-large-patch14, laion bigG). */
const CLIP_L_CONFIG = { architectures: ['CLIPTextModel'], hidden_act: 'quick_gelu', hidden_size: 768, intermediate_size: 3072, model_type: 'clip_text_model', num_attention_heads: 12, num_hidden_layers: 12, projection_dim: 768, vocab_size: 49408 };
const CLIP_G_CONFIG = { ...CLIP_L_CONFIG, architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu', hidden_size: 1280, intermediate_size: 5120, num_attention_heads: 20, num_hidden_layers: 32, projection_dim: 1280 };

/** stabilityai/stable-diffusion-xl-base-1.0. */
const sdxl: Folder = {
  'model_index.json': json({
    _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.19.0.dev0', force_zeros_for_empty_prompt: true, add_watermarker: null,
    scheduler: ['diffusers', 'EulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModel'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'unet/diffusion_pytorch_model.safetensors': unet(),
  'text_encoder/config.json': json(CLIP_L_CONFIG),
  'text_encoder/model.safetensors': clip(12),
  'text_encoder_2/config.json': json(CLIP_G_CONFIG),
  'text_encoder_2/model.safetensors': clip(16),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** stabilityai/stable-diffusion-3-medium-diffusers. */
const sd3: Folder = {
  'model_index.json': json(SD3_MEDIUM),
  'transformer/diffusion_pytorch_model.safetensors': transformer(),
  'text_encoder/config.json': json({ ...CLIP_L_CONFIG, architectures: ['CLIPTextModelWithProjection'] }),
  'text_encoder/model.safetensors': clip(12),
  'text_encoder_2/config.json': json(CLIP_G_CONFIG),
  'text_encoder_2/model.safetensors': clip(16),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** stabilityai/stable-cascade-prior: its only text encoder CLIP-G. */
const cascadePrior: Folder = {
  'model_index.json': json(STABLE_CASCADE_PRIOR),
  'prior/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.0.1.attention.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json(CLIP_G_CONFIG),
  'text_encoder/model.safetensors': clip(16),
};
/** hunyuanvideo-community/HunyuanVideo: its Llama in text_encoder/, its CLIP-L in text_encoder_2/. */
const hunyuanVideo: Folder = {
  'model_index.json': json(HUNYUAN_VIDEO),
  'transformer/diffusion_pytorch_model.safetensors': transformer(),
  'text_encoder/config.json': json({ architectures: ['LlamaModel'], hidden_size: 4096, model_type: 'llama', num_hidden_layers: 32, vocab_size: 128320 }),
  'text_encoder/model.safetensors': buildSafetensors([tensor(rand, 'layers.0.self_attn.q_proj.weight', [8, 8], 'BF16')]),
  'text_encoder_2/config.json': json(CLIP_L_CONFIG),
  'text_encoder_2/model.safetensors': clip(12),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** SD1.x's and SD2.x's UNet config.json (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1): the text states' width. */
const unetConfig = (crossAttentionDim: number) => json({
  _class_name: 'UNet2DConditionModel', act_fn: 'silu', attention_head_dim: crossAttentionDim === 1024 ? [5, 10, 20, 20] : 8, block_out_channels: [320, 640, 1280, 1280],
  cross_attention_dim: crossAttentionDim, in_channels: 4, layers_per_block: 2, out_channels: 4, sample_size: crossAttentionDim === 1024 ? 96 : 64,
  ...(crossAttentionDim === 1024 ? { use_linear_projection: true } : {}),
});
/** stabilityai/stable-diffusion-2-1: OpenCLIP ViT-H's text model as a CLIPTextModel. */
const sd2: Folder = {
  'model_index.json': json(SD21),
  'unet/config.json': unetConfig(1024),
  'unet/diffusion_pytorch_model.safetensors': unet(),
  'text_encoder/config.json': json({ ...CLIP_L_CONFIG, hidden_act: 'gelu', hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 23, projection_dim: 512 }),
  'text_encoder/model.safetensors': clip(16),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};
/** runwayml/stable-diffusion-v1-5: the same class, CLIP-L. */
const sd15: Folder = {
  'model_index.json': json({
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.6.0', feature_extractor: ['transformers', 'CLIPImageProcessor'],
    safety_checker: ['stable_diffusion', 'StableDiffusionSafetyChecker'], scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'unet/config.json': unetConfig(768),
  'unet/diffusion_pytorch_model.safetensors': unet(),
  'text_encoder/config.json': json(CLIP_L_CONFIG),
  'text_encoder/model.safetensors': clip(12),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

const kohya = (name: string, out: number, inF: number) => kohyaSpec(name, 2, out, inF, [], 4);
/** ComfyUI's extracted form (lora_down/lora_up, no α). */
const comfy = (name: string, out: number, inF: number): LoraSpec => ({ ...peftSpec(name, 2, out, inF, [], 1), down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight` });
const kohyaClip = (prefix: string, size: number) => kohya(`${prefix}text_model_encoder_layers_0_self_attn_q_proj`, size, size);
const comfyClip = (name: string, size: number) => comfy(`text_encoders.${name}.transformer.${TE}.self_attn.q_proj`, size, size);

const refused = (folder: string, className: string, held: string, first: string, names: string, extra = '') =>
  `lora.safetensors: module "${first}": names ${names}, ` +
  `but the base's model_index.json lists ${folder} (${className}) and ${folder}/ holds no .safetensors weights (it holds ${held})${extra}: ` +
  `give the complete pipeline folder, with ${folder}/'s weights, or give the transformer's (or UNet's) own folder as the base to merge without the text encoder modules (they are then left out with a warning)`;
const leftOut = (warnings: string[]) => warnings.filter((w) => w.includes('left out'));

/** The plan of `lora` on the complete pipeline and on it without `folder`'s files. */
const both = async (pipeline: Folder, folder: string, lora: LoraSpec[]) => ({
  complete: await pipelinePlan(pipeline, lora, rand),
  partial: await pipelinePlan(without(pipeline, folder), lora, rand),
});

describe('a weightless CLIP folder, its kind told by the pipeline\'s class', () => {
  it('SDXL: lora_te2_ and ComfyUI\'s clip_g refused naming text_encoder_2 (CLIP-G), lora_te1_ naming text_encoder (CLIP-L)', async () => {
    const held = 'the unet (UNet2DConditionModel), the VAE';
    const base = without(without(sdxl, 'text_encoder_2'), 'text_encoder');
    for (const [spec, first, folder, className, names] of [
      [kohyaClip('lora_te2_', 16), 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 'text_encoder_2', 'CLIPTextModelWithProjection', 'text encoder 2 (CLIP-G)'],
      [comfyClip('clip_g', 16), `text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 'text_encoder_2', 'CLIPTextModelWithProjection', 'text encoder 2 (CLIP-G)'],
      [kohyaClip('lora_te1_', 12), 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'text_encoder', 'CLIPTextModel', 'text encoder 1 (CLIP-L)'],
      [comfyClip('clip_l', 12), `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text_encoder', 'CLIPTextModel', 'text encoder 1 (CLIP-L)'],
    ] as const) {
      expect((await pipelinePlan(sdxl, [spec], rand)).problems).toEqual([]);
      expect((await pipelinePlan(base, [spec], rand)).problems).toEqual([refused(folder, className, held, first, names)]);
    }
  });

  it('SD3: text_encoder CLIP-L and text_encoder_2 CLIP-G, both CLIPTextModelWithProjection', async () => {
    const base = without(without(sd3, 'text_encoder_2'), 'text_encoder');
    const held = 'the transformer (SD3Transformer2DModel), the VAE';
    const { problems } = await pipelinePlan(base, [kohyaClip('lora_te2_', 16), comfyClip('clip_l', 12)], rand);
    expect(problems).toEqual([
      refused('text_encoder_2', 'CLIPTextModelWithProjection', held, 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 'text encoder 2 (CLIP-G)'),
      refused('text_encoder', 'CLIPTextModelWithProjection', held, `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text encoder 1 (CLIP-L)'),
    ]);
  });

  it('Stable Cascade prior: its only CLIP is CLIP-G, so clip_g is refused naming text_encoder, and lora_te1_ (CLIP-L) left out as on the complete pipeline', async () => {
    const held = 'the prior (StableCascadeUNet)';
    const g = await both(cascadePrior, 'text_encoder', [comfyClip('clip_g', 16)]);
    expect(g.complete.problems).toEqual([]);
    expect(g.partial.problems).toEqual([refused('text_encoder', 'CLIPTextModelWithProjection', held, `text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 'text encoder 2 (CLIP-G)')]);
    const l = await both(cascadePrior, 'text_encoder', [kohyaClip('lora_te1_', 16)]);
    // Nothing else in the LoRA: the one line that none of it lands, the same on both.
    expect(l.complete.problems).toEqual([expect.stringContaining('they name text encoder 1 (CLIP-L), which the base does not hold')]);
    expect(l.partial.problems).toEqual(l.complete.problems);
  });

  it('HunyuanVideo: its CLIP-L is text_encoder_2, so lora_te1_ and clip_l are refused naming it, not sent to the Llama or left out', async () => {
    const held = 'text_encoder (LlamaModel), the transformer (HunyuanVideoTransformer3DModel), the VAE';
    for (const [spec, first] of [
      [kohyaClip('lora_te1_', 12), 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj'],
      [comfyClip('clip_l', 12), `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`],
    ] as const) {
      const { complete, partial } = await both(hunyuanVideo, 'text_encoder_2', [spec]);
      expect(complete.problems).toEqual([]);
      expect(partial.problems).toEqual([refused('text_encoder_2', 'CLIPTextModel', held, first, 'text encoder 1 (CLIP-L)')]);
    }
  });

  it('SD2 (StableDiffusionPipeline, its UNet\'s cross_attention_dim 1024): CLIP-H, so clip_h is refused naming text_encoder and clip_l left out as on the complete pipeline', async () => {
    const held = 'the unet (UNet2DConditionModel), the VAE';
    const h = await both(sd2, 'text_encoder', [comfyClip('clip_h', 16)]);
    expect(h.complete.problems).toEqual([]);
    expect(h.partial.problems).toEqual([refused('text_encoder', 'CLIPTextModel', held, `text_encoders.clip_h.transformer.${TE}.self_attn.q_proj`, 'the text encoder')]);
    const l = await both(sd2, 'text_encoder', [comfyClip('clip_l', 16)]);
    expect(l.complete.problems).toEqual([expect.stringContaining('they name text encoder 1 (CLIP-L), which the base does not hold')]);
    expect(l.partial.problems).toEqual(l.complete.problems);
    // kohya's lora_te_ reaches SD2's only CLIP: refused naming it.
    expect((await pipelinePlan(without(sd2, 'text_encoder'), [kohyaClip('lora_te_', 16)], rand)).problems)
      .toEqual([refused('text_encoder', 'CLIPTextModel', held, 'lora_te_text_model_encoder_layers_0_self_attn_q_proj', 'the text encoder')]);
  });

  it('SD1.5 (the same class, its UNet\'s cross_attention_dim 768): CLIP-L, so clip_l is refused naming text_encoder and clip_h left out', async () => {
    const held = 'the unet (UNet2DConditionModel), the VAE';
    const l = await both(sd15, 'text_encoder', [comfyClip('clip_l', 12)]);
    expect(l.complete.problems).toEqual([]);
    expect(l.partial.problems).toEqual([refused('text_encoder', 'CLIPTextModel', held, `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text encoder 1 (CLIP-L)')]);
    const h = await both(sd15, 'text_encoder', [comfyClip('clip_h', 12)]);
    for (const plan of [h.complete, h.partial]) expect(plan.problems).toEqual([expect.stringContaining('they name the text encoder, which the base does not hold')]);
  });
});

describe('where the class does not say', () => {
  it('a class not known here: the folder is judged by its position, and the refusal says so', async () => {
    const index = JSON.parse(sdxl['model_index.json'] as string) as Record<string, unknown>;
    const custom = { ...without(sdxl, 'text_encoder_2'), 'model_index.json': json({ ...index, _class_name: 'MyStudioXLPipeline' }) };
    const { problems } = await pipelinePlan(custom, [kohyaClip('lora_te2_', 16)], rand);
    expect(problems).toEqual([refused('text_encoder_2', 'CLIPTextModelWithProjection', 'text_encoder (CLIPTextModel), the unet (UNet2DConditionModel), the VAE', 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 'text encoder 2 (CLIP-G)',
      '; which CLIP text_encoder_2/ holds is not said: it has no config.json and its pipeline\'s class, MyStudioXLPipeline, is none whose CLIP folders are known here, so it is taken to hold CLIP-G by its position, as SDXL and SD3 number their CLIPs')]);
  });

  it('a StableDiffusionPipeline without a readable unet/config.json: by position (CLIP-L), said so', async () => {
    const noUnetConfig = Object.fromEntries(Object.entries(without(sd2, 'text_encoder')).filter(([p]) => p !== 'unet/config.json'));
    // A unet/config.json that is no JSON says nothing either (diffusers, which reads it, refuses the folder).
    for (const base of [noUnetConfig, { ...noUnetConfig, 'unet/config.json': '{"cross_attention_dim": 1024,' }]) {
      const { problems } = await pipelinePlan(base, [comfyClip('clip_l', 16)], rand);
      expect(problems).toEqual([refused('text_encoder', 'CLIPTextModel', 'the unet (UNet2DConditionModel), the VAE', `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text encoder 1 (CLIP-L)',
        '; which CLIP text_encoder/ holds is not said: it has no config.json and its pipeline\'s class, StableDiffusionPipeline, runs the CLIP its unet/config.json\'s cross_attention_dim says (768 CLIP-L, 1024 CLIP-H), ' +
        'and no readable unet/config.json says one, so it is taken to hold CLIP-L by its position, as SDXL and SD3 number their CLIPs')]);
    }
  });
});

describe('a folder\'s config.json still decides', () => {
  it('a weightless folder that kept its config.json: its hidden_size, not the class (no position note either)', async () => {
    // HunyuanVideo's text_encoder_2/config.json under a class not known here: CLIP-L by its config, though second.
    const index = JSON.parse(hunyuanVideo['model_index.json'] as string) as Record<string, unknown>;
    const base = { ...without(hunyuanVideo, 'text_encoder_2', true), 'model_index.json': json({ ...index, _class_name: 'MyVideoPipeline' }) };
    const { problems } = await pipelinePlan(base, [comfyClip('clip_l', 12)], rand);
    expect(problems).toEqual([refused('text_encoder_2', 'CLIPTextModel', 'text_encoder (LlamaModel), the transformer (HunyuanVideoTransformer3DModel), the VAE', `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 'text encoder 1 (CLIP-L)')]);
  });

  it('a folder with weights whose config.json says otherwise than its class: the config wins, as before', async () => {
    // A Stable Cascade prior whose text_encoder was swapped for a CLIP-L: clip_l lands, clip_g is left out.
    const swapped = { ...cascadePrior, 'text_encoder/config.json': json({ ...CLIP_L_CONFIG, architectures: ['CLIPTextModelWithProjection'] }), 'text_encoder/model.safetensors': clip(12) };
    const l = await pipelinePlan(swapped, [comfyClip('clip_l', 12)], rand);
    expect(l.problems).toEqual([]);
    expect(leftOut(l.warnings)).toEqual([]);
    const g = await pipelinePlan(swapped, [comfyClip('clip_l', 12), comfy(`text_encoders.clip_g.transformer.${TE}.mlp.fc1`, 24, 12)], rand);
    expect(g.problems).toEqual([]);
    expect(leftOut(g.warnings)).toHaveLength(1);
  });
});

/**
 * The pipelines built on SD's, SDXL's, SD3's and FLUX.1's text encoders (their ControlNet, PAG and
 * T2I-Adapter forms, img2img and inpaint) and Kandinsky's priors: model_index.json as save_pretrained
 * writes it from each class's __init__ (diffusers' pipelines/controlnet, pag, t2i_adapter, flux,
 * kandinsky, kandinsky2_2), transformer/ or unet/ (or prior/) downloaded alone.
 */
describe('the classes that run their base model\'s CLIPs, each by its own entry', () => {
  const SD_INDEX = {
    feature_extractor: ['transformers', 'CLIPImageProcessor'], image_encoder: [null, null], requires_safety_checker: true, safety_checker: [null, null],
    scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  };
  const SDXL_INDEX = {
    feature_extractor: [null, null], force_zeros_for_empty_prompt: true, image_encoder: [null, null], scheduler: ['diffusers', 'EulerDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  };
  const SD3_INDEX = {
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModelWithProjection'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    text_encoder_3: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], tokenizer_3: ['transformers', 'T5TokenizerFast'],
    transformer: ['diffusers', 'SD3Transformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  };
  const FLUX_INDEX = {
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModel'], text_encoder_2: ['transformers', 'T5EncoderModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'FluxTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  };
  const PRIOR_INDEX = {
    image_encoder: ['transformers', 'CLIPVisionModelWithProjection'], image_processor: ['transformers', 'CLIPImageProcessor'], prior: ['diffusers', 'PriorTransformer'],
    scheduler: ['diffusers', 'UnCLIPScheduler'], text_encoder: ['transformers', 'CLIPTextModelWithProjection'], tokenizer: ['transformers', 'CLIPTokenizer'],
  };
  const controlnet = (cls: string) => ({ controlnet: ['diffusers', cls] });
  const pag = { pag_applied_layers: ['mid'] };
  type Family = 'sd' | 'sdxl' | 'sd3' | 'flux' | 'prior21' | 'prior22';
  const CLASSES: readonly [string, Family, object?][] = [
    ['StableDiffusionControlNetPipeline', 'sd', controlnet('ControlNetModel')], ['StableDiffusionControlNetImg2ImgPipeline', 'sd', controlnet('ControlNetModel')],
    ['StableDiffusionControlNetInpaintPipeline', 'sd', controlnet('ControlNetModel')], ['StableDiffusionPAGPipeline', 'sd', pag],
    ['StableDiffusionPAGImg2ImgPipeline', 'sd', pag], ['StableDiffusionPAGInpaintPipeline', 'sd', pag],
    ['StableDiffusionControlNetPAGPipeline', 'sd', { ...controlnet('ControlNetModel'), ...pag }], ['StableDiffusionControlNetPAGInpaintPipeline', 'sd', { ...controlnet('ControlNetModel'), ...pag }],
    ['StableDiffusionAdapterPipeline', 'sd', { adapter: ['diffusers', 'T2IAdapter'] }],
    ['StableDiffusionXLControlNetPipeline', 'sdxl', controlnet('ControlNetModel')], ['StableDiffusionXLControlNetImg2ImgPipeline', 'sdxl', controlnet('ControlNetModel')],
    ['StableDiffusionXLControlNetInpaintPipeline', 'sdxl', controlnet('ControlNetModel')], ['StableDiffusionXLControlNetUnionPipeline', 'sdxl', controlnet('ControlNetUnionModel')],
    ['StableDiffusionXLControlNetUnionImg2ImgPipeline', 'sdxl', controlnet('ControlNetUnionModel')], ['StableDiffusionXLControlNetUnionInpaintPipeline', 'sdxl', controlnet('ControlNetUnionModel')],
    ['StableDiffusionXLPAGPipeline', 'sdxl', pag], ['StableDiffusionXLPAGImg2ImgPipeline', 'sdxl', pag], ['StableDiffusionXLPAGInpaintPipeline', 'sdxl', pag],
    ['StableDiffusionXLControlNetPAGPipeline', 'sdxl', { ...controlnet('ControlNetModel'), ...pag }], ['StableDiffusionXLControlNetPAGImg2ImgPipeline', 'sdxl', { ...controlnet('ControlNetModel'), ...pag }],
    ['StableDiffusionXLAdapterPipeline', 'sdxl', { adapter: ['diffusers', 'T2IAdapter'] }],
    ['StableDiffusion3ControlNetPipeline', 'sd3', controlnet('SD3ControlNetModel')], ['StableDiffusion3ControlNetInpaintingPipeline', 'sd3', controlnet('SD3ControlNetModel')],
    ['StableDiffusion3PAGPipeline', 'sd3', pag], ['StableDiffusion3PAGImg2ImgPipeline', 'sd3', pag],
    ['FluxControlImg2ImgPipeline', 'flux'], ['FluxControlInpaintPipeline', 'flux'], ['FluxKontextInpaintPipeline', 'flux'],
    ['FluxControlNetPipeline', 'flux', controlnet('FluxControlNetModel')], ['FluxControlNetImg2ImgPipeline', 'flux', controlnet('FluxControlNetModel')],
    ['FluxControlNetInpaintPipeline', 'flux', controlnet('FluxControlNetModel')],
    ['KandinskyPriorPipeline', 'prior21'], ['KandinskyV22PriorPipeline', 'prior22'], ['KandinskyV22PriorEmb2EmbPipeline', 'prior22'],
  ];
  const prior = () => buildSafetensors([tensor(rand, 'transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]);
  const FAMILIES: Readonly<Record<Family, { index: object; files: () => Folder; held: string; spec: () => LoraSpec; first: string; folder: string; className: string; names: string }>> = {
    sd: { index: SD_INDEX, files: () => ({ 'unet/config.json': unetConfig(768), 'unet/diffusion_pytorch_model.safetensors': unet() }), held: 'the unet (UNet2DConditionModel)',
      spec: () => comfyClip('clip_l', 12), first: `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, folder: 'text_encoder', className: 'CLIPTextModel', names: 'text encoder 1 (CLIP-L)' },
    sdxl: { index: SDXL_INDEX, files: () => ({ 'unet/diffusion_pytorch_model.safetensors': unet() }), held: 'the unet (UNet2DConditionModel)',
      spec: () => kohyaClip('lora_te2_', 16), first: 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', folder: 'text_encoder_2', className: 'CLIPTextModelWithProjection', names: 'text encoder 2 (CLIP-G)' },
    sd3: { index: SD3_INDEX, files: () => ({ 'transformer/diffusion_pytorch_model.safetensors': transformer() }), held: 'the transformer (SD3Transformer2DModel)',
      spec: () => kohyaClip('lora_te2_', 16), first: 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', folder: 'text_encoder_2', className: 'CLIPTextModelWithProjection', names: 'text encoder 2 (CLIP-G)' },
    flux: { index: FLUX_INDEX, files: () => ({ 'transformer/diffusion_pytorch_model.safetensors': transformer() }), held: 'the transformer (FluxTransformer2DModel)',
      spec: () => comfyClip('clip_l', 12), first: `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, folder: 'text_encoder', className: 'CLIPTextModel', names: 'text encoder 1 (CLIP-L)' },
    prior21: { index: PRIOR_INDEX, files: () => ({ 'prior/diffusion_pytorch_model.safetensors': prior() }), held: 'the prior (PriorTransformer)',
      spec: () => comfyClip('clip_l', 12), first: `text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, folder: 'text_encoder', className: 'CLIPTextModelWithProjection', names: 'text encoder 1 (CLIP-L)' },
    prior22: { index: PRIOR_INDEX, files: () => ({ 'prior/diffusion_pytorch_model.safetensors': prior() }), held: 'the prior (PriorTransformer)',
      spec: () => comfyClip('clip_g', 16), first: `text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, folder: 'text_encoder', className: 'CLIPTextModelWithProjection', names: 'text encoder 2 (CLIP-G)' },
  };

  it.each(CLASSES)('%s (%s): refused naming the folder its class runs that CLIP in, with no note of position', async (className, family, extra) => {
    const f = FAMILIES[family];
    const base: Folder = { 'model_index.json': json({ _class_name: className, _diffusers_version: '0.36.0', ...f.index, ...(extra ?? {}) }), ...f.files() };
    const { problems } = await pipelinePlan(base, [f.spec()], rand);
    expect(problems).toEqual([refused(f.folder, f.className, f.held, f.first, f.names)]);
  });
});

describe('a combined pipeline whose prior keeps a second CLIP in prior_text_encoder/', () => {
  /**
   * StableCascadeCombinedPipeline's components as its register_modules names them (diffusers'
   * pipeline_stable_cascade_combined.py; scripts/convert_stable_cascade.py saves the one CLIP-G as
   * both text_encoder and prior_text_encoder). prior_text_encoder/ is no folder name read as a text
   * encoder here, so a CLIP module would reach the decoder's copy and not the prior's: refused.
   */
  const index = json({
    _class_name: 'StableCascadeCombinedPipeline', _diffusers_version: '0.27.0.dev0', decoder: ['diffusers', 'StableCascadeUNet'],
    prior_feature_extractor: ['transformers', 'CLIPImageProcessor'], prior_image_encoder: ['transformers', 'CLIPVisionModelWithProjection'], prior_prior: ['diffusers', 'StableCascadeUNet'],
    prior_scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], prior_text_encoder: ['transformers', 'CLIPTextModelWithProjection'], prior_tokenizer: ['transformers', 'CLIPTokenizer'],
    scheduler: ['diffusers', 'DDPMWuerstchenScheduler'], text_encoder: ['transformers', 'CLIPTextModelWithProjection'], tokenizer: ['transformers', 'CLIPTokenizer'], vqgan: ['diffusers', 'PaellaVQModel'],
  });
  const stage = () => buildSafetensors([tensor(rand, 'down_blocks.0.1.attention.attn.to_q.weight', [8, 8], 'BF16')]);
  const combined: Folder = {
    'model_index.json': index, 'decoder/diffusion_pytorch_model.safetensors': stage(), 'prior_prior/diffusion_pytorch_model.safetensors': stage(),
    'text_encoder/config.json': json(CLIP_G_CONFIG), 'text_encoder/model.safetensors': clip(16),
    'prior_text_encoder/config.json': json(CLIP_G_CONFIG), 'prior_text_encoder/model.safetensors': clip(16),
  };
  const why = 'model_index.json also lists prior_text_encoder (CLIPTextModelWithProjection), a CLIP folder of its StableCascadeCombinedPipeline whose name is not read as a text encoder here, ' +
    'so which of its CLIP folders a CLIP module would reach cannot be told; give a pipeline folder without it (a combined pipeline\'s prior or decoder pipeline on its own)';

  it('ComfyUI\'s clip_g and kohya\'s lora_te_ are refused naming prior_text_encoder, with the CLIP folders\' weights and without', async () => {
    for (const base of [combined, without(combined, 'text_encoder')]) {
      const { problems } = await pipelinePlan(base, [comfyClip('clip_g', 16), kohyaClip('lora_te_', 16)], rand);
      expect(problems).toEqual([
        `lora.safetensors: module "text_encoders.clip_g.transformer.${TE}.self_attn.q_proj": names ComfyUI's clip_g text encoder (text_encoders.clip_g.), but the base's ${why}`,
        `lora.safetensors: module "lora_te_text_model_encoder_layers_0_self_attn_q_proj": names the text encoder, but the base's ${why}`,
      ]);
    }
  });
});

/**
 * Kandinsky 2.2's combined pipelines (diffusers' pipeline_kandinsky2_2_combined.py: KandinskyV22CombinedPipeline
 * registers unet, scheduler, movq and its prior pipeline's components as prior_prior, prior_image_encoder,
 * prior_text_encoder, prior_tokenizer, prior_scheduler, prior_image_processor; model_index.json in the
 * shape save_pretrained writes from that __init__). Its only CLIP text model is the prior's CLIP-G, in
 * prior_text_encoder/; its prior (PriorTransformer) is in prior_prior/, its image encoder in
 * prior_image_encoder/. None of those folder names is read as a component here, and the combined
 * pipeline loads no LoRA (it has no LoRA loader), so a module meant for them is refused naming the
 * folder (or lands there where it names the folder itself), never left out as if the base had no CLIP,
 * nor placed on the decoder's UNet by the end of its name.
 */
describe('Kandinsky 2.2\'s combined pipeline: the prior\'s folders', () => {
  const index = json({
    _class_name: 'KandinskyV22CombinedPipeline', _diffusers_version: '0.21.0.dev0', movq: ['diffusers', 'VQModel'],
    prior_image_encoder: ['transformers', 'CLIPVisionModelWithProjection'], prior_image_processor: ['transformers', 'CLIPImageProcessor'],
    prior_prior: ['diffusers', 'PriorTransformer'], prior_scheduler: ['diffusers', 'UnCLIPScheduler'], prior_text_encoder: ['transformers', 'CLIPTextModelWithProjection'],
    prior_tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDPMScheduler'], unet: ['diffusers', 'UNet2DConditionModel'],
  });
  // The decoder's UNet and the prior's PriorTransformer both hold `…transformer_blocks.0.attn1.to_q`.
  const combined: Folder = {
    'model_index.json': index,
    'unet/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]),
    'prior_prior/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]),
    'prior_image_encoder/model.safetensors': buildSafetensors([tensor(rand, 'vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16')]),
    'prior_text_encoder/config.json': json(CLIP_G_CONFIG), 'prior_text_encoder/model.safetensors': clip(16),
  };
  const onlyClip = 'only CLIP folder is prior_text_encoder (CLIPTextModelWithProjection), the prior\'s text encoder in its KandinskyV22CombinedPipeline, a folder not read as a text encoder here ' +
    '(diffusers\' combined pipelines load no LoRA): give the prior pipeline\'s own folder, where it is text_encoder/, as the base';
  const routedNowhere = (folder: string, className: string) => `${folder}/ (${className}), the prior's in its KandinskyV22CombinedPipeline, a folder no LoRA name routes to here`;

  it('refuses CLIP modules naming prior_text_encoder/ as the base\'s only CLIP, not as a CLIP the base lacks', async () => {
    const { problems, warnings } = await pipelinePlan(combined, [comfyClip('clip_g', 16), kohyaClip('lora_te_', 16), peftSpec(`text_encoder.${TE}.self_attn.q_proj`, 2, 16, 16, [], 1)], rand);
    expect(problems).toEqual([
      `lora.safetensors: module "text_encoders.clip_g.transformer.${TE}.self_attn.q_proj": names ComfyUI's clip_g text encoder (text_encoders.clip_g.), but the base's ${onlyClip}`,
      `lora.safetensors: module "lora_te_text_model_encoder_layers_0_self_attn_q_proj": names the text encoder, but the base's ${onlyClip}`,
      `lora.safetensors: module "text_encoder.${TE}.self_attn.q_proj": names text encoder 1 (CLIP-L), but the base's ${onlyClip}`,
    ]);
    expect(leftOut(warnings)).toEqual([]);
  });

  it('refuses modules that reach the prior\'s folders only by the end of their names, or fit both the prior and the UNet', async () => {
    const { problems } = await pipelinePlan(combined, [
      peftSpec('vision_model.encoder.layers.0.self_attn.q_proj', 2, 8, 8, [], 1), kohya('lora_prior_unet_transformer_blocks_0_attn1_to_q', 8, 8),
      peftSpec('transformer_blocks.0.attn1.to_q', 2, 8, 8, [], 1),
    ], rand);
    expect(problems).toEqual([
      `lora.safetensors: module "vision_model.encoder.layers.0.self_attn.q_proj": lands by the end of its name on prior_image_encoder.vision_model.encoder.layers.0.self_attn.q_proj.weight in ${routedNowhere('prior_image_encoder', 'CLIPVisionModelWithProjection')}; ` +
        'not supported — name the folder (prior_image_encoder.vision_model.encoder.layers.0.self_attn.q_proj) or give the prior pipeline\'s own folder as the base',
      `lora.safetensors: module "lora_prior_unet_transformer_blocks_0_attn1_to_q": fits prior_prior.transformer_blocks.0.attn1.to_q.weight in ${routedNowhere('prior_prior', 'PriorTransformer')}, ` +
        'as well as unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight where it would land, so which of the pipeline\'s models it is for cannot be told (diffusers\' combined pipelines load no LoRA); ' +
        'not supported — give the prior\'s or the decoder\'s own pipeline folder as the base',
      `lora.safetensors: module "transformer_blocks.0.attn1.to_q": fits prior_prior.transformer_blocks.0.attn1.to_q.weight in ${routedNowhere('prior_prior', 'PriorTransformer')}, ` +
        'as well as unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight where it would land, so which of the pipeline\'s models it is for cannot be told (diffusers\' combined pipelines load no LoRA); ' +
        'not supported — give the prior\'s or the decoder\'s own pipeline folder as the base',
    ]);
  });

  it('merges modules that name a prior folder, and the UNet\'s own, where they name them', async () => {
    const { problems } = await pipelinePlan(combined, [
      peftSpec('prior_prior.transformer_blocks.0.attn1.to_q', 2, 8, 8, [], 1), peftSpec(`prior_text_encoder.${TE}.self_attn.q_proj`, 2, 16, 16, [], 1),
      peftSpec('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 2, 8, 8, [], 1),
    ], rand);
    expect(problems).toEqual([]);
  });
});

/**
 * Kandinsky 2.1's combined pipeline (diffusers' pipeline_kandinsky_combined.py: KandinskyCombinedPipeline
 * registers text_encoder, a MultilingualCLIP (XLM-RoBERTa, no transformers CLIP class), with tokenizer,
 * unet, scheduler, movq and the prior's components under prior_): its only CLIP is the prior's CLIP-L,
 * in prior_text_encoder/.
 */
describe('Kandinsky 2.1\'s combined pipeline: a CLIP module beside its MultilingualCLIP', () => {
  const index = json({
    _class_name: 'KandinskyCombinedPipeline', _diffusers_version: '0.21.0.dev0', movq: ['diffusers', 'VQModel'], prior_image_encoder: ['transformers', 'CLIPVisionModelWithProjection'],
    prior_image_processor: ['transformers', 'CLIPImageProcessor'], prior_prior: ['diffusers', 'PriorTransformer'], prior_scheduler: ['diffusers', 'UnCLIPScheduler'],
    prior_text_encoder: ['transformers', 'CLIPTextModelWithProjection'], prior_tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDIMScheduler'],
    text_encoder: ['kandinsky', 'MultilingualCLIP'], tokenizer: ['transformers', 'XLMRobertaTokenizerFast'], unet: ['diffusers', 'UNet2DConditionModel'],
  });
  const base: Folder = {
    'model_index.json': index, 'unet/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]),
    'text_encoder/model.safetensors': buildSafetensors([tensor(rand, 'transformer.encoder.layer.0.attention.self.query.weight', [8, 8], 'BF16')]),
    'prior_prior/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]),
    'prior_text_encoder/config.json': json(CLIP_L_CONFIG), 'prior_text_encoder/model.safetensors': clip(12),
  };
  const onlyClip = 'only CLIP folder is prior_text_encoder (CLIPTextModelWithProjection), the prior\'s text encoder in its KandinskyCombinedPipeline, a folder not read as a text encoder here ' +
    '(diffusers\' combined pipelines load no LoRA): give the prior pipeline\'s own folder, where it is text_encoder/, as the base';

  it('refuses modules naming a CLIP by kind as the prior\'s, and lands diffusers\' text_encoder. on the MultilingualCLIP it names', async () => {
    const { problems } = await pipelinePlan(base, [comfyClip('clip_l', 12), kohyaClip('lora_te_', 12), peftSpec('text_encoder.transformer.encoder.layer.0.attention.self.query', 2, 8, 8, [], 1)], rand);
    expect(problems).toEqual([
      `lora.safetensors: module "text_encoders.clip_l.transformer.${TE}.self_attn.q_proj": names ComfyUI's clip_l text encoder (text_encoders.clip_l.), but the base's ${onlyClip}`,
      `lora.safetensors: module "lora_te_text_model_encoder_layers_0_self_attn_q_proj": names the text encoder, but the base's ${onlyClip}`,
    ]);
  });
});
