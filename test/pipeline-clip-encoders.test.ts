/**
 * Which CLIP each CLIP folder of a diffusers pipeline holds, told by its config.json (model_index.json
 * says CLIPTextModel or CLIPTextModelWithProjection for CLIP-L and CLIP-G alike): ComfyUI's
 * `text_encoders.clip_l.` / `clip_g.` / `t5xxl.` modules and kohya's `lora_te1_`/`lora_te2_`/`lora_te3_`
 * land on the folder holding that encoder on SDXL, SD3, HunyuanVideo (CLIP-L second, behind its
 * Llama) and a Stable Cascade prior (its only CLIP is CLIP-G), against float64 truth; folders that
 * cannot be told apart are refused in one line. Configs as transformers writes them.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted, onePipelineLora } from './helpers/pipeline-merge.js';
import { HUNYUAN_VIDEO, SD21, STABLE_CASCADE_PRIOR } from './helpers/model-index.js';

const rand = seededRandom(4242);
const json = (o: object) => JSON.stringify(o, null, 2);

/** The config.json transformers writes for each CLIP's text model (SD1.5/SDXL/SD3/Flux's CLIP-L, laion bigG). */
const CLIP_L_CONFIG = {
  _name_or_path: 'openai/clip-vit-large-patch14', attention_dropout: 0.0, bos_token_id: 0, dropout: 0.0, eos_token_id: 2, hidden_act: 'quick_gelu',
  hidden_size: 768, initializer_factor: 1.0, initializer_range: 0.02, intermediate_size: 3072, layer_norm_eps: 1e-5, max_position_embeddings: 77,
  model_type: 'clip_text_model', num_attention_heads: 12, num_hidden_layers: 12, pad_token_id: 1, projection_dim: 768, torch_dtype: 'float16',
  transformers_version: '4.41.2', vocab_size: 49408,
};
const CLIP_G_CONFIG = {
  ...CLIP_L_CONFIG, _name_or_path: 'laion/CLIP-ViT-bigG-14-laion2B-39B-b160k', hidden_act: 'gelu', hidden_size: 1280, intermediate_size: 5120,
  num_attention_heads: 20, num_hidden_layers: 32, projection_dim: 1280,
};
const clipConfig = (config: object, architecture: string) => json({ architectures: [architecture], ...config });

const TE = 'text_model.encoder.layers.0';
/** A small CLIP text model as transformers stores it (`size` wide), with its projection where the class has one. */
const clipFolder = (size: number, projection: boolean) => buildSafetensors([
  tensor(rand, `${TE}.self_attn.q_proj.weight`, [size, size], 'F16'), tensor(rand, `${TE}.mlp.fc1.weight`, [2 * size, size], 'F16'),
  ...(projection ? [tensor(rand, 'text_projection.weight', [size, size], 'F16')] : []),
]);
const T5 = 'encoder.block.0.layer.0.SelfAttention';
const t5Folder = () => buildSafetensors([tensor(rand, `${T5}.q.weight`, [10, 10], 'BF16'), tensor(rand, `${T5}.k.weight`, [10, 10], 'BF16'), tensor(rand, 'shared.weight', [30, 10], 'BF16')]);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);

const comfy = comfyExtracted;
const kohya = (name: string, out: number, inF: number, key: string) => kohyaSpec(name, 2, out, inF, [{ key }], 1);

const pipelines = onePipelineLora(rand, 0.7, 'F16');
const mergeAndCheck = (base: Record<string, Uint8Array | string>, specs: LoraSpec[], file = 'lora.safetensors') =>
  pipelines.mergeAndCheck(base, specs, Object.keys(base).filter((p) => /^text_encoder(_\d)?\/model\.safetensors$/.test(p)), file);
const planOf = pipelines.planOf;

// --- the pipelines, as diffusers' model_index.json and transformers' config.json name them ------
const sdxl = (te1Config = clipConfig(CLIP_L_CONFIG, 'CLIPTextModel'), te2Config = clipConfig(CLIP_G_CONFIG, 'CLIPTextModelWithProjection')): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.30.0', unet: ['diffusers', 'UNet2DConditionModel'],
    text_encoder: ['transformers', 'CLIPTextModel'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'EulerDiscreteScheduler'],
  }),
  'unet/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.1.attentions.0.proj_in.weight', [16, 16], 'F16')]),
  'text_encoder/config.json': te1Config,
  'text_encoder/model.safetensors': clipFolder(12, false),
  'text_encoder_2/config.json': te2Config,
  'text_encoder_2/model.safetensors': clipFolder(16, true),
  'vae/diffusion_pytorch_model.safetensors': vae(),
});

const sd3: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'StableDiffusion3Pipeline', _diffusers_version: '0.31.0', transformer: ['diffusers', 'SD3Transformer2DModel'],
    text_encoder: ['transformers', 'CLIPTextModelWithProjection'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], text_encoder_3: ['transformers', 'T5EncoderModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], tokenizer_3: ['transformers', 'T5TokenizerFast'],
    vae: ['diffusers', 'AutoencoderKL'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'F16')]),
  'text_encoder/config.json': clipConfig(CLIP_L_CONFIG, 'CLIPTextModelWithProjection'),
  'text_encoder/model.safetensors': clipFolder(12, true),
  'text_encoder_2/config.json': clipConfig(CLIP_G_CONFIG, 'CLIPTextModelWithProjection'),
  'text_encoder_2/model.safetensors': clipFolder(16, true),
  'text_encoder_3/config.json': json({ architectures: ['T5EncoderModel'], d_model: 4096, d_ff: 10240, num_layers: 24, num_heads: 64, model_type: 't5', feed_forward_proj: 'gated-gelu', vocab_size: 32128 }),
  'text_encoder_3/model.safetensors': t5Folder(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** hunyuanvideo-community/HunyuanVideo: its Llama first, its CLIP-L second. */
const hunyuanVideo: Record<string, Uint8Array | string> = {
  'model_index.json': json(HUNYUAN_VIDEO),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  // A Llama's config says 32 layers, as CLIP-G's does: it is no CLIP, whatever its numbers.
  'text_encoder/config.json': json({
    architectures: ['LlamaModel'], hidden_size: 4096, intermediate_size: 14336, model_type: 'llama', num_attention_heads: 32,
    num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, vocab_size: 128320,
  }),
  'text_encoder/model.safetensors': buildSafetensors([tensor(rand, 'layers.0.self_attn.q_proj.weight', [16, 16], 'BF16'), tensor(rand, 'embed_tokens.weight', [20, 16], 'BF16')]),
  'text_encoder_2/config.json': clipConfig(CLIP_L_CONFIG, 'CLIPTextModel'),
  'text_encoder_2/model.safetensors': clipFolder(12, false),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** stabilityai/stable-cascade-prior: the prior and CLIP-G, as its only text encoder. */
const cascadePrior: Record<string, Uint8Array | string> = {
  'model_index.json': json(STABLE_CASCADE_PRIOR),
  'prior/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.0.1.attention.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': clipConfig(CLIP_G_CONFIG, 'CLIPTextModelWithProjection'),
  'text_encoder/model.safetensors': clipFolder(16, true),
  'image_encoder/model.safetensors': buildSafetensors([tensor(rand, 'vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16')]),
};

describe('CLIP folders told apart by their config.json', () => {
  it('SDXL: ComfyUI\'s clip_l and clip_g and kohya\'s lora_te1_/lora_te2_ on text_encoder and text_encoder_2', async () => {
    await mergeAndCheck(sdxl(), [
      comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`),
      comfy(`text_encoders.clip_g.transformer.${TE}.mlp.fc1`, 32, 16, `text_encoder_2.${TE}.mlp.fc1.weight`),
      comfy('text_encoders.clip_g.transformer.text_projection', 16, 16, 'text_encoder_2.text_projection.weight'),
      kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 24, 12, `text_encoder.${TE}.mlp.fc1.weight`),
      kohya('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 16, 16, `text_encoder_2.${TE}.self_attn.q_proj.weight`),
    ]);
  });

  it('SD3: ComfyUI\'s clip_l, clip_g and t5xxl, and OneTrainer\'s lora_te1_/lora_te2_/lora_te3_, on the three encoders', async () => {
    await mergeAndCheck(sd3, [
      comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`),
      comfy('text_encoders.clip_l.transformer.text_projection', 12, 12, 'text_encoder.text_projection.weight'),
      comfy(`text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 16, 16, `text_encoder_2.${TE}.self_attn.q_proj.weight`),
      comfy(`text_encoders.t5xxl.transformer.${T5}.q`, 10, 10, `text_encoder_3.${T5}.q.weight`),
      kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 24, 12, `text_encoder.${TE}.mlp.fc1.weight`),
      kohya('lora_te2_text_model_encoder_layers_0_mlp_fc1', 32, 16, `text_encoder_2.${TE}.mlp.fc1.weight`),
      kohya('lora_te3_encoder_block_0_layer_0_SelfAttention_k', 10, 10, `text_encoder_3.${T5}.k.weight`),
    ]);
  });

  it('HunyuanVideo: ComfyUI\'s clip_l and kohya\'s lora_te1_ on text_encoder_2, its CLIP-L, not on the Llama before it', async () => {
    await mergeAndCheck(hunyuanVideo, [
      comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12, `text_encoder_2.${TE}.self_attn.q_proj.weight`),
      kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 24, 12, `text_encoder_2.${TE}.mlp.fc1.weight`),
      // diffusers' own names say the folder, as ever.
      comfy('text_encoder.layers.0.self_attn.q_proj', 16, 16, 'text_encoder.layers.0.self_attn.q_proj.weight'),
    ]);
  });

  it('Stable Cascade prior: ComfyUI\'s clip_g and its cascade lora_prior_te_ on text_encoder, its CLIP-G; CLIP-L\'s lora_te1_ left out, as ComfyUI does', async () => {
    const specs = [
      comfy(`text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 16, 16, `text_encoder.${TE}.self_attn.q_proj.weight`),
      comfy('text_encoders.clip_g.transformer.text_projection', 16, 16, 'text_encoder.text_projection.weight'),
      kohya('lora_prior_te_text_model_encoder_layers_0_mlp_fc1', 32, 16, `text_encoder.${TE}.mlp.fc1.weight`),
    ];
    await mergeAndCheck(cascadePrior, specs);
    const { problems, warnings } = await planOf(cascadePrior, [...specs, kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 32, 16, '')]);
    expect(problems).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^lora\.safetensors: 1 module left out, not merged: it names text encoder 1 \(CLIP-L\), which the base does not hold \(it holds text_encoder \(CLIPTextModelWithProjection\) in its place.*\(lora_te1_text_model_encoder_layers_0_mlp_fc1\)$/)]);
  });

  it('without config.json, by position: SDXL\'s first folder CLIP-L, its second CLIP-G; a hidden_size naming no CLIP, by num_hidden_layers or projection_dim', async () => {
    const noConfigs = Object.fromEntries(Object.entries(sdxl()).filter(([p]) => !p.endsWith('config.json')));
    await mergeAndCheck(noConfigs, [
      comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12, `text_encoder.${TE}.self_attn.q_proj.weight`),
      comfy(`text_encoders.clip_g.transformer.${TE}.mlp.fc1`, 32, 16, `text_encoder_2.${TE}.mlp.fc1.weight`),
    ]);
    // A first and only CLIP folder whose hidden_size names no CLIP (a pruned model): its 32 layers say CLIP-G.
    const pruned = { ...cascadePrior, 'text_encoder/config.json': clipConfig({ ...CLIP_G_CONFIG, hidden_size: 1152, projection_dim: 1152 }, 'CLIPTextModelWithProjection') };
    await mergeAndCheck(pruned, [comfy(`text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 16, 16, `text_encoder.${TE}.self_attn.q_proj.weight`)]);
  });

  it('refuses in one line, naming the folders, where config.json and the pipeline\'s class (or position) make two CLIP-Ls', async () => {
    const twoL = sdxl(clipConfig(CLIP_L_CONFIG, 'CLIPTextModel'), clipConfig(CLIP_L_CONFIG, 'CLIPTextModelWithProjection'));
    const noFirstConfig = Object.fromEntries(Object.entries(sdxl(undefined, clipConfig(CLIP_L_CONFIG, 'CLIPTextModelWithProjection'))).filter(([p]) => p !== 'text_encoder/config.json'));
    const specs = [
      comfy('unet.down_blocks.1.attentions.0.proj_in', 16, 16, ''),
      comfy(`text_encoders.clip_g.transformer.${TE}.mlp.fc1`, 32, 16, ''),
      kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 24, 12, ''),
    ];
    expect((await planOf(twoL, specs)).problems).toEqual([
      'lora.safetensors: module "text_encoders.clip_g.transformer.text_model.encoder.layers.0.mlp.fc1": names ComfyUI\'s clip_g text encoder (text_encoders.clip_g.), but the base\'s text_encoder and text_encoder_2 both read as CLIP-L (text_encoder by its config.json\'s hidden_size 768; text_encoder_2 by its config.json\'s hidden_size 768), so which holds which CLIP cannot be told; give each CLIP folder the config.json its model was saved with',
      'lora.safetensors: module "lora_te1_text_model_encoder_layers_0_mlp_fc1": names text encoder 1 (CLIP-L), but the base\'s text_encoder and text_encoder_2 both read as CLIP-L (text_encoder by its config.json\'s hidden_size 768; text_encoder_2 by its config.json\'s hidden_size 768), so which holds which CLIP cannot be told; give each CLIP folder the config.json its model was saved with',
    ]);
    expect((await planOf(noFirstConfig, specs)).problems).toEqual([
      expect.stringContaining('both read as CLIP-L (text_encoder by its pipeline\'s class (model_index.json\'s _class_name StableDiffusionXLPipeline); text_encoder_2 by its config.json\'s hidden_size 768)'),
      expect.stringContaining('both read as CLIP-L'),
    ]);
  });
});

describe('a CLIP folder given on its own', () => {
  /** Merges into the folder alone (its name says it is a text encoder) and checks model.safetensors against the truth. */
  const mergeFolder = async (name: string, folder: Record<string, Uint8Array | string>, specs: LoraSpec[]) => {
    const lora = buildSafetensors(loraTensors(rand, specs, 'F16'));
    const prepared = await prepareMerge(memoryInputFileSet(folder, name), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 0.5 }]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    expect(prepared.plan.warnings).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: pipelines.backend() });
    await prepared.close();
    const merged = new Uint8Array(await output.files().find((f) => f.path === 'model.safetensors')!.blob.arrayBuffer());
    expectMergedFile(decodeSafetensors(folder['model.safetensors'] as Uint8Array).tensors, decodeSafetensors(merged).tensors, truthTerms(decodeSafetensors(lora).tensors, specs, 0.5));
  };

  it('HunyuanVideo\'s text_encoder_2/ takes ComfyUI\'s clip_l, its config.json saying CLIP-L; a Stable Cascade prior\'s text_encoder/ takes clip_g', async () => {
    await mergeFolder('HunyuanVideo/text_encoder_2', { 'config.json': hunyuanVideo['text_encoder_2/config.json'], 'model.safetensors': hunyuanVideo['text_encoder_2/model.safetensors'] }, [
      comfy(`text_encoders.clip_l.transformer.${TE}.self_attn.q_proj`, 12, 12, `${TE}.self_attn.q_proj.weight`),
    ]);
    await mergeFolder('stable-cascade-prior/text_encoder', { 'config.json': cascadePrior['text_encoder/config.json'], 'model.safetensors': cascadePrior['text_encoder/model.safetensors'] }, [
      comfy(`text_encoders.clip_g.transformer.${TE}.self_attn.q_proj`, 16, 16, `${TE}.self_attn.q_proj.weight`),
    ]);
  });
});

describe('an SD2 pipeline, whose CLIP-H its config.json tells (hidden_size 1024)', () => {
  /** stabilityai/stable-diffusion-2-1: OpenCLIP ViT-H's text model as a CLIPTextModel of 23 layers, no projection. */
  const sd2: Record<string, Uint8Array | string> = {
    'model_index.json': json(SD21),
    'unet/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'down_blocks.1.attentions.0.proj_in.weight', [16, 16], 'F16')]),
    'text_encoder/config.json': clipConfig({ ...CLIP_L_CONFIG, _name_or_path: 'hf-models/stable-diffusion-v2-768x768/text_encoder', hidden_act: 'gelu', hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 23, projection_dim: 512 }, 'CLIPTextModel'),
    'text_encoder/model.safetensors': clipFolder(16, false),
    'vae/diffusion_pytorch_model.safetensors': vae(),
  };

  it('takes ComfyUI\'s clip_h and kohya\'s lora_te_; its text_projection, which ComfyUI\'s model holds as the identity and SD2 never reads, is left out with a warning', async () => {
    const specs = [
      comfy(`text_encoders.clip_h.transformer.${TE}.self_attn.q_proj`, 16, 16, `text_encoder.${TE}.self_attn.q_proj.weight`),
      kohya('lora_te_text_model_encoder_layers_0_mlp_fc1', 32, 16, `text_encoder.${TE}.mlp.fc1.weight`),
    ];
    await mergeAndCheck(sd2, specs);
    const { problems, warnings } = await planOf(sd2, [...specs, comfy('text_encoders.clip_h.transformer.text_projection', 16, 16, '')]);
    expect(problems).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^lora\.safetensors: 1 module left out, not merged: it names CLIP-H's text_projection, which text_encoder \(CLIPTextModel\) does not store: ComfyUI gives its CLIP-H an identity projection there.*\(text_encoders\.clip_h\.transformer\.text_projection\)$/)]);
  });
});
