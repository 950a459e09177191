/**
 * Real diffusers model_index.json contents (as save_pretrained writes them: keys sorted, the
 * [library, class] of each folder), shared by the pipeline-folder tests.
 */

/** stabilityai/stable-diffusion-3-medium-diffusers. */
export const SD3_MEDIUM = {
  _class_name: 'StableDiffusion3Pipeline',
  _diffusers_version: '0.29.0.dev0',
  scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'CLIPTextModelWithProjection'],
  text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
  text_encoder_3: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  tokenizer_2: ['transformers', 'CLIPTokenizer'],
  tokenizer_3: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'SD3Transformer2DModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};

/** stabilityai/stable-cascade-prior (tokenizer: the AutoTokenizer of CLIP-ViT-bigG that diffusers' convert_stable_cascade.py saves, a CLIPTokenizerFast). */
export const STABLE_CASCADE_PRIOR = {
  _class_name: 'StableCascadePriorPipeline',
  _diffusers_version: '0.27.0.dev0',
  feature_extractor: ['transformers', 'CLIPImageProcessor'],
  image_encoder: ['transformers', 'CLIPVisionModelWithProjection'],
  prior: ['diffusers', 'StableCascadeUNet'],
  resolution_multiple: 42.67,
  scheduler: ['diffusers', 'DDPMWuerstchenScheduler'],
  text_encoder: ['transformers', 'CLIPTextModelWithProjection'],
  tokenizer: ['transformers', 'CLIPTokenizerFast'],
};

/** hunyuanvideo-community/HunyuanVideo. */
export const HUNYUAN_VIDEO = {
  _class_name: 'HunyuanVideoPipeline',
  _diffusers_version: '0.32.0.dev0',
  scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'LlamaModel'],
  text_encoder_2: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'LlamaTokenizerFast'],
  tokenizer_2: ['transformers', 'CLIPTokenizer'],
  transformer: ['diffusers', 'HunyuanVideoTransformer3DModel'],
  vae: ['diffusers', 'AutoencoderKLHunyuanVideo'],
};

/** stabilityai/stable-diffusion-2-1. */
export const SD21 = {
  _class_name: 'StableDiffusionPipeline',
  _diffusers_version: '0.10.0.dev0',
  feature_extractor: ['transformers', 'CLIPImageProcessor'],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ['diffusers', 'DDIMScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};

/** black-forest-labs/FLUX.1-dev. */
export const FLUX1_DEV = {
  _class_name: 'FluxPipeline',
  _diffusers_version: '0.30.0.dev0',
  scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'CLIPTextModel'],
  text_encoder_2: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  tokenizer_2: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'FluxTransformer2DModel'],
  vae: ['diffusers', 'AutoencoderKL'],
};
