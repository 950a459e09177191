/**
 * T5 LoRA modules named by kohya's and diffusers' text encoder numbers on the models whose only
 * text encoder is T5-XXL (google/t5-v1_1-xxl's encoder; Cosmos' T5 1.0 XXL, t5-11b) beyond Chroma
 * and PixArt: LTX-Video, Mochi, Cosmos 1.0, CogVideoX, Allegro, CogView3-Plus and BRIA 3.2 as
 * diffusers' pipeline folders, and LTX-Video, Mochi, Cosmos 1.0 and Cosmos-Predict2 as the
 * checkpoints ComfyUI saves (the T5 under `text_encoders.t5xxl.`, Cosmos-Predict2's under
 * `cond_stage_model.t5xxl.`, beside the transformer in ComfyUI's names).
 * No trainer writes a T5 LoRA for any of them: Lightricks' LTX-Video-Trainer, finetrainers, genmo's
 * Mochi trainer, diffusion-pipe, CogVideo's and Allegro's own train the transformer alone;
 * diffusers' LTXVideoLoraLoaderMixin, Mochi1LoraLoaderMixin and CogVideoXLoraLoaderMixin load only
 * `transformer.` keys, and the Cosmos 1/Predict2, Allegro, CogView3-Plus and BRIA pipelines have no
 * LoRA loader. ComfyUI loads the T5 of LTX-Video, Mochi, Cosmos and CogVideoX alone (genmo.py's
 * t5xxl, lt.py's through it, cosmos.py's; a T5 from CLIPLoader), so comfy/lora.py
 * model_lora_keys_clip numbers it 1 and maps `lora_te1_` (and `text_encoders.t5xxl.transformer.`)
 * there; it runs no Allegro, CogView3-Plus or BRIA. So `lora_te1_` merges into those four (float64
 * truth), on a ComfyUI checkpoint too, where it was left out; `lora_te_`, `lora_te2_`, `lora_te3_`,
 * `text_encoder.`, `text_encoder_2.` and `text_encoder_3.` are left out with a warning naming the
 * modules (they merged into the T5 until now), and on the other three every one of them. Model
 * index and configs as diffusers and transformers write them; shapes cut small (d_model 10, d_ff 16).
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, peftSpec, tensor } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, mergeLoneFileChecked, onePipelineLora } from './helpers/pipeline-merge.js';
import { T5_FEED_FORWARD, T5_SELF_ATTENTION, t5EncoderTensors, t5XxlConfig } from './helpers/t5-fixtures.js';

const rand = seededRandom(4096);
const json = (o: object) => JSON.stringify(o, null, 2);

const SA = T5_SELF_ATTENTION;
const FF = T5_FEED_FORWARD;
const t5Tensors = (prefix: string, gated = true) => t5EncoderTensors(rand, prefix, gated);

/** A pipeline folder: model_index.json, its transformer's keys (diffusers' names), its T5 and a VAE. */
function pipeline(index: object, transformer: string[], t5: object, gated = true): Record<string, Uint8Array | string> {
  return {
    'model_index.json': json(index),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer.map((k) => tensor(rand, k, [8, 8], 'BF16'))),
    'text_encoder/config.json': json(t5),
    'text_encoder/model.safetensors': buildSafetensors(t5Tensors('', gated)),
    'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
  };
}

/** Lightricks/LTX-Video. */
const ltx = pipeline({
  _class_name: 'LTXPipeline', _diffusers_version: '0.32.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  transformer: ['diffusers', 'LTXVideoTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLLTXVideo'],
}, ['proj_in.weight', 'time_embed.linear.weight', 'caption_projection.linear_1.weight', 'transformer_blocks.0.attn1.to_q.weight'],
t5XxlConfig('PixArt-alpha/PixArt-XL-2-1024-MS', '4.46.2'));

/** Lightricks/LTX-Video-0.9.7-dev (its condition pipeline). */
const ltxCondition = pipeline({
  _class_name: 'LTXConditionPipeline', _diffusers_version: '0.34.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  transformer: ['diffusers', 'LTXVideoTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLLTXVideo'],
}, ['proj_in.weight', 'time_embed.linear.weight', 'caption_projection.linear_1.weight', 'transformer_blocks.0.attn1.to_q.weight'],
t5XxlConfig('google/t5-v1_1-xxl', '4.51.3'));

/** genmo/mochi-1-preview. */
const mochi = pipeline({
  _class_name: 'MochiPipeline', _diffusers_version: '0.32.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'MochiTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLMochi'],
}, ['patch_embed.proj.weight', 'time_embed.caption_proj.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.44.2'));

/** nvidia/Cosmos-1.0-Diffusion-7B-Text2World, its T5 google-t5/t5-11b's encoder (T5 1.0: relu, one wi). */
const cosmos = pipeline({
  _class_name: 'CosmosTextToWorldPipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'EDMEulerScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'CosmosTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLCosmos'],
}, ['patch_embed.proj.weight', 'time_embed.t_embedder.linear_1.weight', 'transformer_blocks.0.attn1.to_q.weight'], {
  _name_or_path: 'google-t5/t5-11b', architectures: ['T5EncoderModel'], classifier_dropout: 0.0, d_ff: 65536, d_kv: 128, d_model: 1024,
  decoder_start_token_id: 0, dense_act_fn: 'relu', dropout_rate: 0.1, eos_token_id: 1, feed_forward_proj: 'relu', initializer_factor: 1.0,
  is_encoder_decoder: true, is_gated_act: false, layer_norm_epsilon: 1e-6, model_type: 't5', n_positions: 512, num_decoder_layers: 24, num_heads: 128,
  num_layers: 24, output_past: true, pad_token_id: 0, relative_attention_max_distance: 128, relative_attention_num_buckets: 32,
  torch_dtype: 'bfloat16', transformers_version: '4.49.0', use_cache: true, vocab_size: 32128,
}, false);

/** THUDM/CogVideoX-5b. */
const cogVideoX = pipeline({
  _class_name: 'CogVideoXPipeline', _diffusers_version: '0.30.0.dev0', scheduler: ['diffusers', 'CogVideoXDDIMScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  transformer: ['diffusers', 'CogVideoXTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLCogVideoX'],
}, ['patch_embed.proj.weight', 'patch_embed.text_proj.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.44.0.dev0'));

/** rhymes-ai/Allegro. */
const allegro = pipeline({
  _class_name: 'AllegroPipeline', _diffusers_version: '0.32.0.dev0', scheduler: ['diffusers', 'EulerAncestralDiscreteScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  transformer: ['diffusers', 'AllegroTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLAllegro'],
}, ['pos_embed.proj.weight', 'adaln_single.linear.weight', 'caption_projection.linear_1.weight', 'transformer_blocks.0.attn1.to_q.weight'],
t5XxlConfig('google/t5-v1_1-xxl', '4.40.1'));

/** THUDM/CogView3-Plus-3B (an image model, its T5 as CogVideoX's). */
const cogView3Plus = pipeline({
  _class_name: 'CogView3PlusPipeline', _diffusers_version: '0.31.0.dev0', scheduler: ['diffusers', 'CogVideoXDDIMScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5Tokenizer'],
  transformer: ['diffusers', 'CogView3PlusTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
}, ['patch_embed.proj.weight', 'patch_embed.text_proj.weight', 'transformer_blocks.0.attn1.to_q.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.45.2'));

/** briaai/BRIA-3.2. */
const bria = pipeline({
  _class_name: 'BriaPipeline', _diffusers_version: '0.35.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  transformer: ['diffusers', 'BriaTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
}, ['x_embedder.weight', 'context_embedder.weight', 'transformer_blocks.0.attn.to_q.weight'], t5XxlConfig('google/t5-v1_1-xxl', '4.51.3'));

const flat = (path: string) => path.replaceAll('.', '_');
/** kohya's form: lora_down/lora_up and α (scale α/r). */
const kohya = (name: string, out: number, inF: number, key: string) => kohyaSpec(name, 2, out, inF, [{ key }], 4);
/** diffusers' form: lora_A/lora_B, α folded into lora_B (scale 1). */
const diffusers = (name: string, out: number, inF: number, key: string) => peftSpec(name, 2, out, inF, [{ key }], 1);

/** The feed-forward's input projections: T5 1.1's gated pair, or T5 1.0's one (`wi`). */
const wi = (gated: boolean) => (gated ? ['wi_0', 'wi_1'] : ['wi', 'wi']);
/** The names ComfyUI applies to a T5 it loads alone, landing on `at` + the T5's key. */
const comfyLands = (at: string, gated = true) => [
  kohya(`lora_te1_${flat(SA)}_k`, 10, 10, `${at}${SA}.k.weight`),
  kohya(`lora_te1_${flat(FF)}_${wi(gated)[0]}`, 16, 10, `${at}${FF}.${wi(gated)[0]}.weight`),
  kohya(`lora_te1_${flat(SA)}_q`, 10, 10, `${at}${SA}.q.weight`),
  comfyExtracted(`text_encoders.t5xxl.transformer.${SA}.o`, 10, 10, `${at}${SA}.o.weight`),
  comfyExtracted(`text_encoders.t5xxl.transformer.${FF}.wo`, 10, 16, `${at}${FF}.wo.weight`),
];
/** Every other kohya and diffusers number (each on a module of its own). */
const othersOf = (gated: boolean) => [
  kohya(`lora_te_${flat(SA)}_q`, 10, 10, ''),
  kohya(`lora_te2_${flat(SA)}_v`, 10, 10, ''),
  kohya(`lora_te3_${flat(FF)}_wo`, 10, 16, ''),
  diffusers(`text_encoder.${SA}.v`, 10, 10, ''),
  diffusers(`text_encoder_2.${SA}.k`, 10, 10, ''),
  diffusers(`text_encoder_3.${FF}.${wi(gated)[1]}`, 16, 10, ''),
];
const others = othersOf(true);
/** The names `othersOf` gives, and the part each says. */
const OTHERS_OF = (gated: boolean): readonly [string, string, string][] => [
  [`lora_te_${flat(SA)}_q`, 'the text encoder', 'lora_te_'],
  [`lora_te2_${flat(SA)}_v`, 'text encoder 2 (T5)', 'lora_te2_'],
  [`lora_te3_${flat(FF)}_wo`, 'text encoder 3 (T5)', 'lora_te3_'],
  [`text_encoder.${SA}.v`, 'text encoder 1 (T5)', 'text_encoder.'],
  [`text_encoder_2.${SA}.k`, 'text encoder 2 (T5)', 'text_encoder_2.'],
  [`text_encoder_3.${FF}.${wi(gated)[1]}`, 'text encoder 3 (T5)', 'text_encoder_3.'],
];
const OTHERS = OTHERS_OF(true);

const COMFY = 'ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. there';
const LTX_TOOLS = `no trainer writes a T5 LoRA for it (Lightricks' LTX-Video-Trainer and finetrainers train its transformer alone), diffusers' LTX pipelines load the transformer's LoRA alone, and ${COMFY}`;
const MOCHI_TOOLS = `no trainer writes a T5 LoRA for it (genmo's Mochi LoRA trainer and finetrainers train its transformer alone), diffusers' MochiPipeline loads the transformer's LoRA alone, and ${COMFY}`;
const COSMOS_TOOLS = `no trainer writes a T5 LoRA for it (diffusion-pipe trains its transformer alone), diffusers' Cosmos pipelines load no LoRA, and ${COMFY}`;
const COGVIDEOX_TOOLS = 'no trainer writes a T5 LoRA for it (CogVideo\'s own scripts and finetrainers train its transformer alone), diffusers\' CogVideoX pipelines load the transformer\'s LoRA alone, and ComfyUI maps lora_te1_ and its own text_encoders.t5xxl.transformer. to a T5-XXL it loads alone (as its CogVideoX wrapper nodes take it)';
const ALLEGRO_TOOLS = 'Allegro\'s own training code trains its transformer alone, diffusers\' AllegroPipeline loads no LoRA, and ComfyUI runs no Allegro model';
const COGVIEW3_TOOLS = 'diffusers\' CogView3PlusPipeline loads no LoRA, ComfyUI runs no CogView3 model, and no trainer writes a T5 LoRA for it';
const BRIA_TOOLS = 'diffusers\' BriaPipeline loads no LoRA, ComfyUI runs no BRIA model, and no trainer writes a T5 LoRA for it';

/** The warning for each of `names` (OTHERS' rows) on `model`'s T5 at `where`. */
const leftOut = (names: readonly (readonly [string, string, string])[], model: string, where: string, tools: string, tail = '; ComfyUI leaves such modules unloaded') =>
  names.map(([module, what, prefix]) =>
    `lora.safetensors: 1 module left out, not merged: it names ${what} as ${prefix}, a name no tool applies to ${model}'s T5, its only text encoder (${where}): ${tools}${tail} (${module})`);

const pipelines = onePipelineLora(rand, 0.8, 'BF16');

describe('pipeline folders whose only text encoder is T5-XXL, in text_encoder/', () => {
  it.for([
    ['LTXPipeline (LTX-Video)', ltx, 'LTX-Video', LTX_TOOLS],
    ['LTXConditionPipeline (LTX-Video 0.9.7)', ltxCondition, 'LTX-Video', LTX_TOOLS],
    ['MochiPipeline (Mochi 1)', mochi, 'Mochi', MOCHI_TOOLS],
    ['CogVideoXPipeline (CogVideoX-5b)', cogVideoX, 'CogVideoX', COGVIDEOX_TOOLS],
    ['CosmosTextToWorldPipeline (Cosmos 1.0, T5-11B)', cosmos, 'Cosmos', COSMOS_TOOLS],
  ] as const)('%s: lora_te1_ and ComfyUI\'s t5xxl merge into the T5; every other kohya and diffusers number is left out', async ([, base, model, tools]) => {
    const gated = model !== 'Cosmos';
    const { warnings } = await pipelines.mergeAndCheck(base, [...comfyLands('text_encoder.', gated), ...othersOf(gated)], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual(leftOut(OTHERS_OF(gated), model, 'text_encoder/', tools));
  });

  it.for([
    ['AllegroPipeline (Allegro)', allegro, 'Allegro', ALLEGRO_TOOLS, 'transformer_blocks.0.attn1.to_q'],
    ['CogView3PlusPipeline (CogView3-Plus)', cogView3Plus, 'CogView3-Plus', COGVIEW3_TOOLS, 'transformer_blocks.0.attn1.to_q'],
    ['BriaPipeline (BRIA 3.2)', bria, 'BRIA', BRIA_TOOLS, 'transformer_blocks.0.attn.to_q'],
  ] as const)('%s: no kohya or diffusers name reaches its T5, lora_te1_ included, nor ComfyUI\'s t5xxl (it merged); the transformer\'s modules merge', async ([, base, model, tools, module]) => {
    const comfyT5 = `text_encoders.t5xxl.transformer.${SA}.o`;
    const specs = [
      diffusers(`transformer.${module}`, 8, 8, `transformer.${module}.weight`),
      kohya(`lora_te1_${flat(SA)}_k`, 10, 10, ''), ...others, comfyExtracted(comfyT5, 10, 10, ''),
    ];
    const { warnings } = await pipelines.mergeAndCheck(base, specs, ['transformer/diffusion_pytorch_model.safetensors']);
    const te1: [string, string, string] = [`lora_te1_${flat(SA)}_k`, 'text encoder 1 (T5)', 'lora_te1_'];
    expect(warnings).toEqual([
      ...leftOut([te1, ...OTHERS], model, 'text_encoder/', tools, ''),
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), which no tool applies to ${model}'s T5, its only text encoder (text_encoder/): ${tools} (${comfyT5})`,
    ]);
  });

  it('a FLUX.1 LoRA\'s CLIP-L module on LTX-Video is left out: the base holds no CLIP', async () => {
    const clipL = kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 12, 12, '');
    const { warnings } = await pipelines.mergeAndCheck(ltx, [comfyLands('text_encoder.')[0], clipL], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([
      'lora.safetensors: 1 module left out, not merged: it names text encoder 1 (CLIP-L), which the base does not hold: LTX-Video\'s only text encoder is a T5 (text_encoder/), where ComfyUI leaves CLIP modules unloaded (lora_te1_text_model_encoder_layers_0_self_attn_q_proj)',
    ]);
  });
});

describe('checkpoints as ComfyUI\'s Save Checkpoint writes them (transformer, T5 and VAE in one file)', () => {
  // supported_models.py: LTXV, GenmoMochi and CosmosT2V set text_encoder_key_prefix to text_encoders.;
  // CosmosT2IPredict2 sets none, so its T5 is saved under the default cond_stage_model.
  it.for([
    ['LTX-Video\'s (text_encoders.t5xxl., beside its patchify_proj)', 'ltxv-2b-0.9.6-aio.safetensors', 'LTX-Video', LTX_TOOLS, 'text_encoders.t5xxl.',
      ['patchify_proj.weight', 'adaln_single.linear.weight', 'caption_projection.linear_1.weight', 'transformer_blocks.0.attn1.to_q.weight']],
    ['Mochi\'s (text_encoders.t5xxl., beside its t5_yproj)', 'mochi-preview-aio.safetensors', 'Mochi', MOCHI_TOOLS, 'text_encoders.t5xxl.',
      ['t5_yproj.weight', 't5_y_embedder.to_kv.weight', 'blocks.0.attn.qkv_x.weight']],
    ['Cosmos 1.0\'s (text_encoders.t5xxl., beside its blocks.block0)', 'cosmos-1.0-7b-text2world-aio.safetensors', 'Cosmos', COSMOS_TOOLS, 'text_encoders.t5xxl.',
      ['blocks.block0.blocks.0.block.attn.to_q.0.weight', 'x_embedder.proj.1.weight']],
    ['Cosmos-Predict2\'s (cond_stage_model.t5xxl., beside its blocks.0.mlp)', 'cosmos-predict2-2b-t2i-aio.safetensors', 'Cosmos', COSMOS_TOOLS, 'cond_stage_model.t5xxl.',
      ['blocks.0.mlp.layer1.weight', 'blocks.0.self_attn.q_proj.weight', 'x_embedder.proj.1.weight']],
  ] as const)('%s: lora_te1_ merges into the T5 (it was left out); the other numbers are left out (lora_te_ and lora_te3_ merged)', async ([, file, model, tools, t5At, denoiser]) => {
    const gated = model !== 'Cosmos';
    const P = `${t5At}transformer.`;
    const base = buildSafetensors([
      ...denoiser.map((k) => tensor(rand, `model.diffusion_model.${k}`, [8, 8], 'BF16')),
      // Its VAE under the prefix the same class gives it (vae., or the default first_stage_model.).
      ...t5Tensors(P, gated), tensor(rand, `${t5At.startsWith('cond_stage_model.') ? 'first_stage_model' : 'vae'}.decoder.conv_in.weight`, [8, 4, 3, 3], 'BF16'),
    ]);
    const warnings = await mergeLoneFileChecked(pipelines.backend(), rand, base, file, [...comfyLands(P, gated), ...othersOf(gated)], 1.2);
    expect(warnings).toEqual(leftOut(OTHERS_OF(gated), model, t5At, tools));
  });
});
