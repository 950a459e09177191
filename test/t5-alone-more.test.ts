/**
 * Text encoder LoRA modules on the other diffusers pipelines whose only text encoder is a T5 of
 * some kind, each by the names the tools that write and apply its T5 LoRAs give it:
 *  - DeepFloyd IF (stages I and II: google/t5-v1_1-xxl) and Kandinsky 3 (FLAN-UL2's encoder): their
 *    pipelines' StableDiffusionLoraLoaderMixin loads `text_encoder.` into the T5 with PEFT, and
 *    no kohya name (it takes a text encoder's rank from CLIP modules only); no trainer writes a T5
 *    LoRA for either, and ComfyUI runs neither, so `text_encoder.` merges (float64 truth, α from the
 *    metadata) and every other name, ComfyUI's `text_encoders.t5xxl.` included, is left out with a
 *    warning. diffusers loads it only with the LoraConfig the file's `lora_adapter_metadata` states
 *    for `text_encoder.` (lora_base.py _load_lora_into_text_encoder → _create_lora_config); without
 *    it, get_peft_kwargs takes `r` from the ranks found on CLIP module names (`q_proj` … `fc2`),
 *    finds none in a T5 and fails (IndexError; before diffusers 0.34 text_encoder_attn_modules
 *    raised "do not know how to get attention modules for: T5EncoderModel"), so such a file is
 *    refused, as is one whose metadata states the transformer's config alone;
 *  - Latte and ConsisID (T5-XXL), whose pipelines load no text encoder LoRA and which ComfyUI does not run;
 *  - Stable Audio Open (t5-base), which ComfyUI runs with its `t5base` (sa_t5.py):
 *    `text_encoders.t5base.transformer.` merges there, every kohya and diffusers name is left out;
 *  - AuraFlow (Pile-T5-XL, ComfyUI's `pile_t5xl`), GLM-Image (a byT5 glyph encoder), Wan 2.1, SkyReels-V2,
 *    ChronoEdit, Lucy Edit, Helios and AnyFlow (UMT5-XXL) and LongCat-AudioDiT (UMT5-base): every kohya
 *    and diffusers name is left out (their pipelines load the transformer's LoRA alone, or, LongCat-AudioDiT's,
 *    none; ComfyUI maps kohya's T5 names to its t5xxl alone);
 *  - a pipeline of a class none of these is (a pipeline diffusers added after this list, a community
 *    one), holding a T5 alone: no tool is known to apply kohya's or diffusers' names to its T5, and
 *    the tools that do number a T5 by the model they run, so every such module is refused naming the
 *    class (they merged, `lora_te1_` and `lora_te2_` alike, by the generic numbering); a kohya name on
 *    its UMT5 is left out as on any UMT5 (ComfyUI maps those to its t5xxl alone), and ComfyUI's own
 *    `text_encoders.t5xxl.` still merges into a T5-XXL there, as ComfyUI applies it to any T5 it loads as its t5xxl.
 * Model index and configs as diffusers and transformers write them; shapes cut small (d_model 10, d_ff 16).
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, onePipelineLora } from './helpers/pipeline-merge.js';
import { T5_FEED_FORWARD, T5_SELF_ATTENTION, t5EncoderTensors, t5XxlConfig } from './helpers/t5-fixtures.js';

const rand = seededRandom(2048);
const json = (o: object) => JSON.stringify(o, null, 2);

const SA = T5_SELF_ATTENTION;
const FF = T5_FEED_FORWARD;

/** A pipeline folder: model_index.json, its denoiser (`denoiser`/, diffusers' names), its T5 (of `config`) in text_encoder/. */
function pipeline(index: object, denoiser: 'unet' | 'transformer', keys: string[], config: object, gated = true): Record<string, Uint8Array | string> {
  return {
    'model_index.json': json(index),
    [`${denoiser}/diffusion_pytorch_model.safetensors`]: buildSafetensors(keys.map((k) => tensor(rand, k, [8, 8], 'BF16'))),
    'text_encoder/config.json': json(config),
    'text_encoder/model.safetensors': buildSafetensors(t5EncoderTensors(rand, '', gated)),
  };
}

/** DeepFloyd/IF-I-XL-v1.0 (its safety checker and watermarker folders left out: no weights here). */
const ifStageI = pipeline({
  _class_name: 'IFPipeline', _diffusers_version: '0.16.0', feature_extractor: ['transformers', 'CLIPImageProcessor'], requires_safety_checker: true,
  safety_checker: ['deepfloyd_if', 'IFSafetyChecker'], scheduler: ['diffusers', 'DDPMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'T5Tokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], watermarker: ['deepfloyd_if', 'IFWatermarker'],
}, 'unet', ['conv_in.weight', 'down_blocks.1.attentions.0.to_q.weight', 'encoder_hid_proj.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.28.0.dev0'));

/** DeepFloyd/IF-II-L-v1.0. */
const ifStageII = pipeline({
  _class_name: 'IFSuperResolutionPipeline', _diffusers_version: '0.16.0', feature_extractor: ['transformers', 'CLIPImageProcessor'],
  image_noising_scheduler: ['diffusers', 'DDPMScheduler'], requires_safety_checker: true, safety_checker: ['deepfloyd_if', 'IFSafetyChecker'],
  scheduler: ['diffusers', 'DDPMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  unet: ['diffusers', 'UNet2DConditionModel'], watermarker: ['deepfloyd_if', 'IFWatermarker'],
}, 'unet', ['conv_in.weight', 'down_blocks.1.attentions.0.to_q.weight', 'class_embedding.linear_1.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.28.0.dev0'));

/** kandinsky-community/kandinsky-3: google/flan-ul2's encoder. */
const kandinsky3 = pipeline({
  _class_name: 'Kandinsky3Pipeline', _diffusers_version: '0.24.0.dev0', movq: ['diffusers', 'VQModel'], scheduler: ['diffusers', 'DDPMScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'], unet: ['diffusers', 'Kandinsky3UNet'],
}, 'unet', ['conv_in.weight', 'encoder_hid_proj.projection_linear.weight', 'down_blocks.0.attentions.1.attention.to_query.weight'], {
  _name_or_path: 'google/flan-ul2', architectures: ['T5EncoderModel'], d_ff: 16384, d_kv: 256, d_model: 4096, decoder_start_token_id: 0,
  dense_act_fn: 'silu', dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'gated-silu', initializer_factor: 1.0, is_encoder_decoder: true,
  is_gated_act: true, layer_norm_epsilon: 1e-6, model_type: 't5', num_decoder_layers: 32, num_heads: 16, num_layers: 32, pad_token_id: 0,
  relative_attention_max_distance: 128, relative_attention_num_buckets: 32, tie_word_embeddings: false, torch_dtype: 'float16',
  transformers_version: '4.34.1', use_cache: true, vocab_size: 32128,
});

/** maxin-cn/Latte-1. */
const latte = pipeline({
  _class_name: 'LattePipeline', _diffusers_version: '0.30.0.dev0', scheduler: ['diffusers', 'DDIMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'T5Tokenizer'], transformer: ['diffusers', 'LatteTransformer3DModel'], vae: ['diffusers', 'AutoencoderKL'],
}, 'transformer', ['pos_embed.proj.weight', 'adaln_single.linear.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('PixArt-alpha/PixArt-alpha', '4.40.0'));

/** BestWishYsh/ConsisID-preview. */
const consisId = pipeline({
  _class_name: 'ConsisIDPipeline', _diffusers_version: '0.32.0.dev0', scheduler: ['diffusers', 'CogVideoXDPMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'T5Tokenizer'], transformer: ['diffusers', 'ConsisIDTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLCogVideoX'],
}, 'transformer', ['patch_embed.proj.weight', 'local_facial_extractor.proj_out.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.46.2'));

/** stabilityai/stable-audio-open-1.0: t5-base (T5 1.0, one wi) (its projection_model/ left out). */
const stableAudio = pipeline({
  _class_name: 'StableAudioPipeline', _diffusers_version: '0.30.0.dev0', projection_model: ['stable_audio', 'StableAudioProjectionModel'],
  scheduler: ['diffusers', 'CosineDPMSolverMultistepScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'StableAudioDiTModel'], vae: ['diffusers', 'AutoencoderOobleck'],
}, 'transformer', ['preprocess_conv.weight', 'transformer_blocks.0.attn1.to_q.weight'], {
  _name_or_path: 't5-base', architectures: ['T5EncoderModel'], d_ff: 3072, d_kv: 64, d_model: 768, decoder_start_token_id: 0, dense_act_fn: 'relu',
  dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'relu', initializer_factor: 1.0, is_encoder_decoder: true, is_gated_act: false,
  layer_norm_epsilon: 1e-6, model_type: 't5', n_positions: 512, num_decoder_layers: 12, num_heads: 12, num_layers: 12, output_past: true,
  pad_token_id: 0, relative_attention_max_distance: 128, relative_attention_num_buckets: 32, torch_dtype: 'float32', transformers_version: '4.42.0.dev0',
  use_cache: true, vocab_size: 32128,
}, false);

/** zai-org/GLM-Image: its byT5 glyph encoder (its vision_language_encoder/ left out). */
const glmImage = pipeline({
  _class_name: 'GlmImagePipeline', _diffusers_version: '0.37.0.dev0', processor: ['transformers', 'GlmImageProcessor'],
  scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'ByT5Tokenizer'],
  transformer: ['diffusers', 'GlmImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'], vision_language_encoder: ['transformers', 'GlmImageForConditionalGeneration'],
}, 'transformer', ['image_projector.proj.weight', 'transformer_blocks.0.attn1.to_q.weight'], {
  architectures: ['T5EncoderModel'], d_ff: 3584, d_kv: 64, d_model: 1472, dense_act_fn: 'gelu_new', feed_forward_proj: 'gated-gelu', is_gated_act: true,
  model_type: 't5', num_heads: 6, num_layers: 12, relative_attention_num_buckets: 32, torch_dtype: 'bfloat16', vocab_size: 1510,
});

/** google/umt5-xxl's encoder, as Wan's and SkyReels-V2's text_encoder/ save it. */
const UMT5_CONFIG = {
  architectures: ['UMT5EncoderModel'], classifier_dropout: 0.0, d_ff: 10240, d_kv: 64, d_model: 4096, decoder_start_token_id: 0, dense_act_fn: 'gelu_new',
  dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'gated-gelu', initializer_factor: 1.0, is_encoder_decoder: true, is_gated_act: true,
  layer_norm_epsilon: 1e-6, model_type: 'umt5', num_decoder_layers: 24, num_heads: 64, num_layers: 24, output_past: true, pad_token_id: 0,
  relative_attention_max_distance: 128, relative_attention_num_buckets: 32, scalable_attention: true, tie_word_embeddings: false,
  tokenizer_class: 'T5Tokenizer', torch_dtype: 'float32', transformers_version: '4.49.0.dev0', use_cache: true, vocab_size: 256384,
};

/** Wan-AI/Wan2.1-T2V-1.3B-Diffusers. */
const wan = pipeline({
  _class_name: 'WanPipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** Skywork/SkyReels-V2-T2V-14B-540P-Diffusers. */
const skyReelsV2 = pipeline({
  _class_name: 'SkyReelsV2Pipeline', _diffusers_version: '0.34.0.dev0', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'SkyReelsV2Transformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** nvidia/ChronoEdit-14B-Diffusers (its image_encoder/ left out). */
const chronoEdit = pipeline({
  _class_name: 'ChronoEditPipeline', _diffusers_version: '0.36.0.dev0', image_encoder: ['transformers', 'CLIPVisionModel'], image_processor: ['transformers', 'CLIPImageProcessor'],
  scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'ChronoEditTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** decart-ai/Lucy-Edit-Dev. */
const lucyEdit = pipeline({
  _class_name: 'LucyEditPipeline', _diffusers_version: '0.36.0.dev0', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** BestWishYsh/Helios-Base. */
const helios = pipeline({
  _class_name: 'HeliosPipeline', _diffusers_version: '0.37.0.dev0', scheduler: ['diffusers', 'HeliosScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'HeliosTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** fal/AuraFlow-v0.3: EleutherAI's pile-t5-xl as a UMT5EncoderModel. */
const auraFlow = pipeline({
  _class_name: 'AuraFlowPipeline', _diffusers_version: '0.30.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'LlamaTokenizerFast'], transformer: ['diffusers', 'AuraFlowTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
}, 'transformer', ['pos_embed.proj.weight', 'joint_transformer_blocks.0.attn.to_q.weight'], {
  _name_or_path: 'EleutherAI/pile-t5-xl', architectures: ['UMT5EncoderModel'], classifier_dropout: 0.0, d_ff: 5120, d_kv: 64, d_model: 2048,
  decoder_start_token_id: 0, dense_act_fn: 'silu', dropout_rate: 0.0, eos_token_id: 2, feed_forward_proj: 'gated-silu', initializer_factor: 1.0,
  is_encoder_decoder: true, is_gated_act: true, layer_norm_epsilon: 1e-6, model_type: 'umt5', num_decoder_layers: 24, num_heads: 32, num_layers: 24,
  output_past: true, pad_token_id: 0, relative_attention_max_distance: 128, relative_attention_num_buckets: 32, scalable_attention: false,
  tie_word_embeddings: false, torch_dtype: 'float16', transformers_version: '4.41.2', use_cache: true, vocab_size: 32128,
});

/** nvidia/AnyFlow-Wan2.1-T2V-1.3B-Diffusers (convert_anyflow_to_diffusers.py: Wan 2.1's tokenizer, UMT5 and VAE). */
const anyFlow = pipeline({
  _class_name: 'AnyFlowPipeline', _diffusers_version: '0.38.0.dev0', scheduler: ['diffusers', 'FlowMapEulerDiscreteScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'AnyFlowTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/** nvidia/AnyFlow-FAR-Wan2.1-1.3B-Diffusers. */
const anyFlowFar = pipeline({
  _class_name: 'AnyFlowFARPipeline', _diffusers_version: '0.38.0.dev0', scheduler: ['diffusers', 'FlowMapEulerDiscreteScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'AnyFlowFARTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

/**
 * ruixiangma/LongCat-AudioDiT-1B-Diffusers (convert_longcat_audio_dit_to_diffusers.py: a UMT5EncoderModel of
 * the checkpoint's text_encoder_config, google/umt5-base's, which the transformer's dit_text_dim 768 takes).
 */
const longCatAudio = pipeline({
  _class_name: 'LongCatAudioDiTPipeline', _diffusers_version: '0.38.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'LongCatAudioDiTTransformer'],
  vae: ['diffusers', 'LongCatAudioDiTVae'],
}, 'transformer', ['input_embed.proj.0.weight', 'text_embed.proj.0.weight', 'blocks.0.self_attn.to_q.weight'], {
  architectures: ['UMT5EncoderModel'], classifier_dropout: 0.0, d_ff: 2048, d_kv: 64, d_model: 768, decoder_start_token_id: 0, dense_act_fn: 'gelu_new',
  dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'gated-gelu', initializer_factor: 1.0, is_encoder_decoder: true, is_gated_act: true,
  layer_norm_epsilon: 1e-6, model_type: 'umt5', num_decoder_layers: 12, num_heads: 12, num_layers: 12, output_past: true, pad_token_id: 0,
  relative_attention_max_distance: 128, relative_attention_num_buckets: 32, scalable_attention: true, tie_word_embeddings: false,
  tokenizer_class: 'T5Tokenizer', torch_dtype: 'float32', transformers_version: '4.57.1', use_cache: true, vocab_size: 256384,
});

/**
 * A pipeline of a class no rule here knows, holding a T5 alone: Latte-1's folder (T5-XXL) and Wan 2.1's
 * (UMT5-XXL) under a class name that stands for any such one.
 */
const UNKNOWN = 'OpenT5VideoPipeline';
const unknownT5xxl = pipeline({
  _class_name: UNKNOWN, _diffusers_version: '0.36.0', scheduler: ['diffusers', 'DDIMScheduler'], text_encoder: ['transformers', 'T5EncoderModel'],
  tokenizer: ['transformers', 'T5Tokenizer'], transformer: ['diffusers', 'LatteTransformer3DModel'], vae: ['diffusers', 'AutoencoderKL'],
}, 'transformer', ['pos_embed.proj.weight', 'adaln_single.linear.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('PixArt-alpha/PixArt-alpha', '4.40.0'));
const unknownUmt5 = pipeline({
  _class_name: UNKNOWN, _diffusers_version: '0.36.0', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
  tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
}, 'transformer', ['patch_embedding.weight', 'blocks.0.attn1.to_q.weight'], UMT5_CONFIG);

const flat = (path: string) => path.replaceAll('.', '_');
/** kohya's form: lora_down/lora_up and α (scale α/r). */
const kohya = (name: string, out: number, inF: number, key = '') => kohyaSpec(name, 2, out, inF, [{ key }], 4);
/** diffusers' form: lora_A/lora_B, α folded into lora_B (scale 1). */
const diffusers = (name: string, out: number, inF: number, key = '') => peftSpec(name, 2, out, inF, [{ key }], 1);
/** The feed-forward's input projection: T5 1.1's gated wi_1, or T5 1.0's one (`wi`). */
const wi = (gated: boolean) => (gated ? 'wi_1' : 'wi');

/** Every kohya and diffusers number (each on a module of its own), and the part each says; `text_encoder.` lands on `diffusersTo` + the T5's key where given. */
const allNames = (gated = true, diffusersTo = '') => [
  { spec: kohya(`lora_te_${flat(SA)}_q`, 10, 10), what: 'the text encoder', prefix: 'lora_te_' },
  { spec: kohya(`lora_te1_${flat(SA)}_k`, 10, 10), what: 'text encoder 1 (T5)', prefix: 'lora_te1_' },
  { spec: kohya(`lora_te2_${flat(SA)}_v`, 10, 10), what: 'text encoder 2 (T5)', prefix: 'lora_te2_' },
  { spec: kohya(`lora_te3_${flat(FF)}_wo`, 10, 16), what: 'text encoder 3 (T5)', prefix: 'lora_te3_' },
  { spec: diffusers(`text_encoder.${SA}.o`, 10, 10, diffusersTo && `${diffusersTo}${SA}.o.weight`), what: 'text encoder 1 (T5)', prefix: 'text_encoder.' },
  // A second one where they land (one warning names every left-out module of one reason).
  ...(diffusersTo ? [{ spec: diffusers(`text_encoder.${FF}.${wi(gated)}`, 16, 10, `${diffusersTo}${FF}.${wi(gated)}.weight`), what: 'text encoder 1 (T5)', prefix: 'text_encoder.' }] : []),
  { spec: diffusers(`text_encoder_2.${SA}.k`, 10, 10), what: 'text encoder 2 (T5)', prefix: 'text_encoder_2.' },
  { spec: diffusers(`text_encoder_3.${SA}.q`, 10, 10), what: 'text encoder 3 (T5)', prefix: 'text_encoder_3.' },
];
const moduleOf = (s: { down: string }) => s.down.slice(0, s.down.indexOf('.lora_'));

/** The warning for each of `names` but those of `reach`, on `model`'s T5 (text_encoder/). */
const leftOut = (names: ReturnType<typeof allNames>, reach: readonly string[], model: string, tools: string, tail: string) =>
  names.filter((n) => !reach.includes(n.prefix)).map(({ spec, what, prefix }) =>
    `lora.safetensors: 1 module left out, not merged: it names ${what} as ${prefix}, a name no tool applies to ${model}'s T5, its only text encoder (text_encoder/): ${tools}${tail} (${moduleOf(spec)})`);
/** The warning for ComfyUI's t5xxl module `module` on `model`'s T5. */
const comfyLeftOut = (module: string, model: string, tools: string) =>
  `lora.safetensors: 1 module left out, not merged: it names ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), which no tool applies to ${model}'s T5, its only text encoder (text_encoder/): ${tools} (${module})`;

const IF_TOOLS = 'no trainer writes a T5 LoRA for it (diffusers\' DreamBooth LoRA script targets CLIP\'s q_proj, k_proj, v_proj and out_proj, SimpleTuner trains its UNet alone), diffusers\' IF pipelines load text_encoder. into it (given the LoraConfig of the file\'s lora_adapter_metadata; no kohya name: they find no rank for kohya\'s T5 modules), and ComfyUI runs no DeepFloyd IF model';
const KANDINSKY3_TOOLS = 'no trainer writes a T5 LoRA for it, diffusers\' Kandinsky 3 pipelines load text_encoder. into its FLAN-UL2 encoder (given the LoraConfig of the file\'s lora_adapter_metadata; no kohya name: they find no rank for kohya\'s T5 modules), and ComfyUI runs no Kandinsky 3 model';
const LATTE_TOOLS = 'diffusers\' LattePipeline loads no LoRA, ComfyUI runs no Latte model, and no trainer writes a T5 LoRA for it';
const CONSISID_TOOLS = 'diffusers\' ConsisIDPipeline loads the transformer\'s LoRA alone, ComfyUI runs no ConsisID model, and no trainer writes a T5 LoRA for it';
const STABLE_AUDIO_TOOLS = 'diffusers\' StableAudioPipeline loads no LoRA, no trainer writes a T5 LoRA for it, and ComfyUI loads its t5-base as its t5base, which only text_encoders.t5base.transformer. reaches';
const GLM_TOOLS = 'diffusers\' GlmImagePipeline loads no LoRA, ComfyUI runs no GLM-Image model, and no trainer writes a LoRA for its byT5 glyph encoder';
const WAN_TOOLS = 'diffusers\' Wan pipelines load the transformers\' LoRAs alone, no trainer writes a LoRA for its UMT5 (musubi-tuner, ai-toolkit, diffusion-pipe train the transformer alone), and ComfyUI maps kohya\'s T5 names to its t5xxl alone, not to the umt5xxl it loads this UMT5 as';
const SKYREELS_TOOLS = 'diffusers\' SkyReels-V2 pipelines load the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI (which runs it as a Wan model) maps kohya\'s T5 names to its t5xxl alone, not to the umt5xxl it loads this UMT5 as';
const CHRONOEDIT_TOOLS = 'diffusers\' ChronoEditPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5';
const LUCY_TOOLS = 'diffusers\' LucyEditPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5';
const HELIOS_TOOLS = 'diffusers\' Helios pipelines load the transformer\'s LoRA alone, no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5';
const AURAFLOW_TOOLS = 'diffusers\' AuraFlowPipeline loads the transformer\'s LoRA alone, no trainer writes a LoRA for its Pile-T5-XL (SimpleTuner trains the transformer alone), and ComfyUI loads it as its pile_t5xl, which only text_encoders.pile_t5xl.transformer. reaches (it maps kohya\'s T5 names to its t5xxl alone)';
const ANYFLOW_TOOLS = 'diffusers\' AnyFlow pipelines load the transformer\'s LoRA alone (WanLoraLoaderMixin), no trainer writes a LoRA for its UMT5, and ComfyUI maps kohya\'s T5 names to its t5xxl alone, never to a UMT5';
const LONGCAT_AUDIO_TOOLS = 'diffusers\' LongCatAudioDiTPipeline loads no LoRA, ComfyUI runs no LongCat-AudioDiT model, and no trainer writes a LoRA for its UMT5';
const UNLOADED = '; ComfyUI leaves such modules unloaded';

const pipelines = onePipelineLora(rand, 0.85, 'BF16');

/**
 * What diffusers' save_lora_weights writes for a text encoder trained with PEFT (r 2, α 4, on q, k, v, o,
 * wi_0, wi_1, wo): `text_encoder.` + each field of its LoraConfig.to_dict() (PEFT 0.17), beside the UNet's.
 */
const withTextEncoderConfig = (component: 'unet' | 'text_encoder') => Object.fromEntries(Object.entries({
  alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: null, bias: 'none', corda_config: null, eva_config: null, exclude_modules: null,
  fan_in_fan_out: false, inference_mode: false, init_lora_weights: 'gaussian', layer_replication: null, layers_pattern: null, layers_to_transform: null,
  loftq_config: {}, lora_alpha: 4, lora_bias: false, lora_dropout: 0.0, megatron_config: null, megatron_core: 'megatron.core', modules_to_save: null,
  peft_type: 'LORA', r: 2, rank_pattern: {}, revision: null, target_modules: component === 'unet' ? ['to_q', 'to_k', 'to_v', 'to_out.0'] : ['q', 'k', 'v', 'o', 'wi_0', 'wi_1', 'wo'],
  target_parameters: null, task_type: null, trainable_token_indices: null, use_dora: false, use_qalora: false, use_rslora: false,
}).map(([field, value]) => [`${component}.${field}`, value]));
const metadataOf = (...components: ('unet' | 'text_encoder')[]) =>
  ({ format: 'pt', lora_adapter_metadata: JSON.stringify(Object.assign({}, ...components.map(withTextEncoderConfig)), null, 2) });
/** The scale of a `text_encoder.` module under that config: α / r. */
const CONFIG_SCALE = 4 / 2;

describe('pipelines whose StableDiffusionLoraLoaderMixin loads text_encoder. into their only T5', () => {
  it.for([
    ['IFPipeline (DeepFloyd IF stage I)', ifStageI, 'DeepFloyd IF', IF_TOOLS],
    ['IFSuperResolutionPipeline (DeepFloyd IF stage II)', ifStageII, 'DeepFloyd IF', IF_TOOLS],
    ['Kandinsky3Pipeline (Kandinsky 3, FLAN-UL2)', kandinsky3, 'Kandinsky 3', KANDINSKY3_TOOLS],
  ] as const)('%s: text_encoder. merges into the T5 under the LoraConfig of the file\'s lora_adapter_metadata (its α); kohya\'s names, text_encoder_2., text_encoder_3. and ComfyUI\'s t5xxl are left out (they merged)', async ([, base, model, tools]) => {
    const names = allNames(true, 'text_encoder.').map((n) => (n.prefix === 'text_encoder.' ? { ...n, spec: { ...n.spec, scale: CONFIG_SCALE } } : n));
    const comfy = comfyExtracted(`text_encoders.t5xxl.transformer.${FF}.wi_0`, 16, 10, '');
    const { warnings } = await pipelines.mergeAndCheck(base, [...names.map((n) => n.spec), comfy], ['text_encoder/model.safetensors'], 'lora.safetensors', metadataOf('unet', 'text_encoder'));
    expect(warnings).toEqual([
      ...leftOut(names, ['text_encoder.'], model, tools, ''),
      comfyLeftOut(moduleOf(comfy), model, tools),
    ]);
  });

  it.for([
    ['IFPipeline (DeepFloyd IF stage I)', ifStageI, 'DeepFloyd IF', 'diffusers\' IF pipelines', IF_TOOLS, undefined],
    ['IFSuperResolutionPipeline, its metadata stating the UNet\'s config alone', ifStageII, 'DeepFloyd IF', 'diffusers\' IF pipelines', IF_TOOLS, metadataOf('unet')],
    ['Kandinsky3Pipeline (Kandinsky 3, FLAN-UL2)', kandinsky3, 'Kandinsky 3', 'diffusers\' Kandinsky 3 pipelines', KANDINSKY3_TOOLS, undefined],
  ] as const)('%s: text_encoder. without a text_encoder. LoraConfig in lora_adapter_metadata is refused, naming why (diffusers fails to load it; it merged)', async ([, base, model, loader, tools, metadata]) => {
    const spec = diffusers(`text_encoder.${SA}.o`, 10, 10, `text_encoder.${SA}.o.weight`);
    const { problems } = await pipelines.planOf(base, [spec], metadata);
    expect(problems).toEqual([
      `lora.safetensors: module "text_encoder.${SA}.o": names text encoder 1 (T5) as text_encoder., which ${loader} load into ${model}'s T5 (text_encoder/) only under the LoraConfig that a file's lora_adapter_metadata states for text_encoder (its text_encoder.* fields), which this file does not: without any metadata diffusers reads the rank from CLIP module names (q_proj, k_proj, v_proj, out_proj, fc1, fc2), finds none in a T5 and fails, and with metadata for other components alone it builds PEFT's default LoraConfig (r 8, lora_alpha 8, no target_modules), not the file's; no other tool applies such a module there (${tools}); not supported`,
    ]);
  });
});

describe('pipelines whose only T5 no tool applies a LoRA to', () => {
  it.for([
    ['LattePipeline (Latte-1, T5-XXL)', latte, 'Latte', LATTE_TOOLS, true],
    ['ConsisIDPipeline (ConsisID, T5-XXL)', consisId, 'ConsisID', CONSISID_TOOLS, true],
  ] as const)('%s: every kohya and diffusers name and ComfyUI\'s t5xxl are left out (they merged); the transformer\'s module merges', async ([, base, model, tools]) => {
    const names = allNames();
    const comfy = comfyExtracted(`text_encoders.t5xxl.transformer.${SA}.q`, 10, 10, '');
    const denoiser = diffusers('transformer.transformer_blocks.0.attn1.to_q', 8, 8, 'transformer.transformer_blocks.0.attn1.to_q.weight');
    const { warnings } = await pipelines.mergeAndCheck(base, [denoiser, ...names.map((n) => n.spec), comfy], ['transformer/diffusion_pytorch_model.safetensors']);
    expect(warnings).toEqual([...leftOut(names, [], model, tools, ''), comfyLeftOut(moduleOf(comfy), model, tools)]);
  });

  it.for([
    ['GlmImagePipeline (GLM-Image, byT5)', glmImage, 'GLM-Image', GLM_TOOLS, ''],
    ['WanPipeline (Wan 2.1, UMT5-XXL)', wan, 'Wan', WAN_TOOLS, UNLOADED],
    ['SkyReelsV2Pipeline (SkyReels-V2, UMT5-XXL)', skyReelsV2, 'SkyReels-V2', SKYREELS_TOOLS, UNLOADED],
    ['ChronoEditPipeline (ChronoEdit, UMT5-XXL)', chronoEdit, 'ChronoEdit', CHRONOEDIT_TOOLS, ''],
    ['LucyEditPipeline (Lucy Edit, UMT5-XXL)', lucyEdit, 'Lucy Edit', LUCY_TOOLS, ''],
    ['HeliosPipeline (Helios, UMT5-XXL)', helios, 'Helios', HELIOS_TOOLS, ''],
  ] as const)('%s: every kohya and diffusers name is left out (text_encoder. merged)', async ([, base, model, tools, tail]) => {
    const names = allNames();
    const denoiser = diffusers('transformer.blocks.0.attn1.to_q', 8, 8, 'transformer.blocks.0.attn1.to_q.weight');
    const specs = base === glmImage ? [diffusers('transformer.transformer_blocks.0.attn1.to_q', 8, 8, 'transformer.transformer_blocks.0.attn1.to_q.weight')] : [denoiser];
    const { warnings } = await pipelines.mergeAndCheck(base, [...specs, ...names.map((n) => n.spec)], ['transformer/diffusion_pytorch_model.safetensors']);
    expect(warnings).toEqual(leftOut(names, [], model, tools, tail));
  });

  it('AuraFlowPipeline (AuraFlow, Pile-T5-XL): ComfyUI\'s text_encoders.pile_t5xl. merges into the T5; every kohya and diffusers name is left out (text_encoder. merged)', async () => {
    const names = allNames();
    const pile = comfyExtracted(`text_encoders.pile_t5xl.transformer.${FF}.wi_0`, 16, 10, `text_encoder.${FF}.wi_0.weight`);
    const { warnings } = await pipelines.mergeAndCheck(auraFlow, [pile, ...names.map((n) => n.spec)], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual(leftOut(names, [], 'AuraFlow', AURAFLOW_TOOLS, UNLOADED));
  });

  it('StableAudioPipeline (Stable Audio Open, t5-base): ComfyUI\'s text_encoders.t5base. merges into the T5 (it was left out); every kohya and diffusers name is left out (text_encoder. merged)', async () => {
    const names = allNames(false);
    const t5base = [
      comfyExtracted(`text_encoders.t5base.transformer.${SA}.v`, 10, 10, `text_encoder.${SA}.v.weight`),
      comfyExtracted(`text_encoders.t5base.transformer.${FF}.wi`, 16, 10, `text_encoder.${FF}.wi.weight`),
    ];
    const { warnings } = await pipelines.mergeAndCheck(stableAudio, [...t5base, ...names.map((n) => n.spec)], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual(leftOut(names, [], 'Stable Audio Open', STABLE_AUDIO_TOOLS, UNLOADED));
  });
});

describe('AnyFlow and LongCat-AudioDiT (a UMT5 alone; they had no row)', () => {
  it.for([
    ['AnyFlowPipeline (AnyFlow, Wan 2.1\'s UMT5-XXL)', anyFlow, 'AnyFlow', ANYFLOW_TOOLS, 'transformer.blocks.0.attn1.to_q'],
    ['AnyFlowFARPipeline (AnyFlow FAR, Wan 2.1\'s UMT5-XXL)', anyFlowFar, 'AnyFlow', ANYFLOW_TOOLS, 'transformer.blocks.0.attn1.to_q'],
    ['LongCatAudioDiTPipeline (LongCat-AudioDiT, UMT5-base)', longCatAudio, 'LongCat-AudioDiT', LONGCAT_AUDIO_TOOLS, 'transformer.blocks.0.self_attn.to_q'],
  ] as const)('%s: every kohya and diffusers name is left out, naming the model (text_encoder. and text_encoder_2. merged into the UMT5); the transformer\'s module merges', async ([, base, model, tools, denoiser]) => {
    const names = allNames();
    const { warnings } = await pipelines.mergeAndCheck(base, [diffusers(denoiser, 8, 8, `${denoiser}.weight`), ...names.map((n) => n.spec)], ['transformer/diffusion_pytorch_model.safetensors']);
    expect(warnings).toEqual(leftOut(names, [], model, tools, ''));
  });
});

describe('a pipeline of a class no rule knows, holding a T5 alone', () => {
  const refusal = (module: string, what: string, prefix: string) =>
    `lora.safetensors: module "${module}": names ${what} as ${prefix} on a ${UNKNOWN} pipeline, whose only text encoder is a T5 (text_encoder/): no tool is known to apply kohya's or diffusers' text encoder names to that pipeline's T5, and the tools that do number a T5 by the model they run (ComfyUI maps lora_te1_ to a T5 it loads alone and lora_te2_ or lora_te3_ to one beside CLIPs, diffusers' pipelines load text_encoder. into a T5 only under a file's lora_adapter_metadata), so where such a module belongs cannot be told; not supported`;

  it('a T5-XXL: every kohya and diffusers name is refused naming the class (lora_te1_, lora_te2_ and the rest merged)', async () => {
    const names = allNames();
    const { problems } = await pipelines.planOf(unknownT5xxl, names.map((n) => n.spec));
    expect(problems).toEqual(names.map(({ spec, what, prefix }) => refusal(moduleOf(spec), what, prefix)));
  });

  it('a T5-XXL: ComfyUI\'s text_encoders.t5xxl. merges into it, as ComfyUI applies it to a T5 it loads as its t5xxl', async () => {
    const comfy = comfyExtracted(`text_encoders.t5xxl.transformer.${FF}.wi_1`, 16, 10, `text_encoder.${FF}.wi_1.weight`);
    const { warnings } = await pipelines.mergeAndCheck(unknownT5xxl, [comfy], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([]);
  });

  it('a UMT5: kohya\'s names are left out as on any UMT5 (ComfyUI maps them to its t5xxl alone); diffusers\' are refused naming the class', async () => {
    const names = allNames();
    const { problems, warnings } = await pipelines.planOf(unknownUmt5, names.map((n) => n.spec));
    expect(problems).toEqual(names.filter((n) => !n.prefix.startsWith('lora_')).map(({ spec, what, prefix }) => refusal(moduleOf(spec), what, prefix)));
    expect(warnings).toEqual(names.filter((n) => n.prefix.startsWith('lora_')).map(({ spec, what, prefix }) =>
      `lora.safetensors: 1 module left out, not merged: it names ${what} as ${prefix}, which ComfyUI maps to its t5xxl alone, and the only text encoder of this ${UNKNOWN} pipeline, text_encoder (UMT5EncoderModel), is not T5-XXL; no other tool is known to apply kohya's names to that pipeline's T5 (${moduleOf(spec)})`));
  });
});
