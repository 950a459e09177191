/**
 * ComfyUI's newer LLM and byT5 text encoders on a diffusers pipeline's folder, as its "Extract and
 * Save Lora" names them (`text_encoders.<name>.transformer.` + ComfyUI's own keys, which are
 * transformers' below `model.`: comfy/text_encoders/llama.py, hunyuan_image.py): Z-Image's
 * `qwen3_4b` on its Qwen3Model, Ovis-Image's `qwen3_2b` on its own, FLUX.2 [klein] 9B's `qwen3_8b`
 * on its Qwen3ForCausalLM, HunyuanVideo I2V's `llama` on the language model inside its
 * LlavaForConditionalGeneration (as transformers before and after 4.52 store it), HunyuanVideo
 * 1.5's `qwen25_7b` on its Qwen2_5_VLTextModel and `byt5_small` on its byT5 T5EncoderModel,
 * OmniGen2's `qwen25_3b`, NewBie's `gemma3_4b` and LTX-2's `gemma3_12b`; each against float64
 * truth. An encoder of another size, or one the pipeline has no folder for, is left out with a
 * warning, as ComfyUI leaves its keys unloaded; a part the folder's class lacks is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { comfyExtracted as comfy, mergePipelineAndCheck, pipelinePlan } from './helpers/pipeline-merge.js';

const rand = seededRandom(4242);
const json = (o: object) => JSON.stringify(o, null, 2);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
/** One decoder layer of a Qwen3/Llama-style LLM (hidden 12, KV 4, MLP 20) under `prefix`, as transformers names it. */
const llmLayer = (prefix: string) => [
  tensor(rand, `${prefix}layers.0.self_attn.q_proj.weight`, [12, 12], 'BF16'), tensor(rand, `${prefix}layers.0.self_attn.k_proj.weight`, [4, 12], 'BF16'),
  tensor(rand, `${prefix}layers.0.self_attn.q_norm.weight`, [6], 'BF16'), tensor(rand, `${prefix}layers.0.mlp.down_proj.weight`, [12, 20], 'BF16'),
  tensor(rand, `${prefix}layers.0.input_layernorm.weight`, [12], 'BF16'), tensor(rand, `${prefix}embed_tokens.weight`, [30, 12], 'BF16'),
  tensor(rand, `${prefix}norm.weight`, [12], 'BF16'),
];
const Q = 'layers.0.self_attn.q_proj';
const K = 'layers.0.self_attn.k_proj';
const DOWN = 'layers.0.mlp.down_proj';

/** Qwen3-4B's config.json (Z-Image's text_encoder/, saved from Qwen3ForCausalLM). */
const QWEN3_4B = {
  architectures: ['Qwen3ForCausalLM'], head_dim: 128, hidden_act: 'silu', hidden_size: 2560, intermediate_size: 9728, max_position_embeddings: 40960,
  model_type: 'qwen3', num_attention_heads: 32, num_hidden_layers: 36, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_theta: 1000000,
  tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.51.0', vocab_size: 151936,
};

/** Tongyi-MAI/Z-Image-Turbo: Qwen3-4B as a Qwen3Model; `lm` is where its header keeps the layers. */
const zImage = (lm: string): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    _class_name: 'ZImagePipeline', _diffusers_version: '0.36.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'Qwen3Model'], tokenizer: ['transformers', 'Qwen2Tokenizer'],
    transformer: ['diffusers', 'ZImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'layers.0.attention.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json(QWEN3_4B),
  'text_encoder/model.safetensors': buildSafetensors(llmLayer(lm)),
  'vae/diffusion_pytorch_model.safetensors': vae(),
});

/** black-forest-labs/FLUX.2-klein-9B: Qwen3-8B as a Qwen3ForCausalLM (`model.` and `lm_head`). */
const klein9b: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'Flux2KleinPipeline', _diffusers_version: '0.37.0.dev0', is_distilled: true, scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'Qwen3ForCausalLM'], tokenizer: ['transformers', 'Qwen2TokenizerFast'],
    transformer: ['diffusers', 'Flux2Transformer2DModel'], vae: ['diffusers', 'AutoencoderKLFlux2'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({ ...QWEN3_4B, hidden_size: 4096, intermediate_size: 12288, tie_word_embeddings: false }),
  'text_encoder/model.safetensors': buildSafetensors([...llmLayer('model.'), tensor(rand, 'lm_head.weight', [30, 12], 'BF16')]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** hunyuanvideo-community/HunyuanVideo-I2V: llava-llama-3-8b as a LlavaForConditionalGeneration, CLIP-L second. */
const hunyuanI2V = (lm: string, top: string): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    _class_name: 'HunyuanVideoImageToVideoPipeline', _diffusers_version: '0.33.0.dev0', image_processor: ['transformers', 'CLIPImageProcessor'],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'LlavaForConditionalGeneration'],
    text_encoder_2: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'LlamaTokenizerFast'], tokenizer_2: ['transformers', 'CLIPTokenizer'],
    transformer: ['diffusers', 'HunyuanVideoTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLHunyuanVideo'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['LlavaForConditionalGeneration'], image_token_index: 128257, model_type: 'llava', projector_hidden_act: 'gelu',
    text_config: { architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 14336, model_type: 'llama', num_hidden_layers: 32, vocab_size: 128320 },
    vision_config: { hidden_size: 1024, image_size: 336, model_type: 'clip_vision_model', num_hidden_layers: 24, patch_size: 14 },
    torch_dtype: 'float16', transformers_version: '4.48.0',
  }),
  'text_encoder/model.safetensors': buildSafetensors([
    ...llmLayer(lm), tensor(rand, `${top}lm_head.weight`, [30, 12], 'F16'),
    tensor(rand, `${top === '' ? '' : 'model.'}vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight`, [6, 6], 'F16'),
    tensor(rand, `${top === '' ? '' : 'model.'}multi_modal_projector.linear_1.weight`, [12, 6], 'F16'),
  ]),
  'text_encoder_2/config.json': json({ architectures: ['CLIPTextModel'], hidden_size: 768, model_type: 'clip_text_model', num_hidden_layers: 12, projection_dim: 768 }),
  'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, 'text_model.encoder.layers.0.self_attn.q_proj.weight', [10, 10], 'F16')]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
});

/** hunyuanvideo-community/HunyuanVideo-1.5-Diffusers: Qwen2.5-VL 7B's language model (Qwen2_5_VLTextModel) and the glyph byT5 (T5EncoderModel). */
const hunyuan15: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'HunyuanVideo15Pipeline', _diffusers_version: '0.36.0.dev0', guider: ['diffusers', 'ClassifierFreeGuidance'],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'Qwen2_5_VLTextModel'],
    text_encoder_2: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'Qwen2Tokenizer'], tokenizer_2: ['transformers', 'ByT5Tokenizer'],
    transformer: ['diffusers', 'HunyuanVideo15Transformer3DModel'], vae: ['diffusers', 'AutoencoderKLHunyuanVideo15'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['Qwen2_5_VLTextModel'], hidden_size: 3584, intermediate_size: 18944, model_type: 'qwen2_5_vl_text', num_attention_heads: 28,
    num_hidden_layers: 28, num_key_value_heads: 4, torch_dtype: 'bfloat16', transformers_version: '4.57.1', vocab_size: 152064,
  }),
  'text_encoder/model.safetensors': buildSafetensors(llmLayer('')),
  'text_encoder_2/config.json': json({
    architectures: ['T5EncoderModel'], d_ff: 3584, d_kv: 64, d_model: 1472, feed_forward_proj: 'gated-gelu', model_type: 't5',
    num_heads: 6, num_layers: 12, vocab_size: 1510, torch_dtype: 'float32', transformers_version: '4.57.1',
  }),
  'text_encoder_2/model.safetensors': buildSafetensors([
    tensor(rand, 'encoder.block.0.layer.0.SelfAttention.q.weight', [6, 14], 'F32'), tensor(rand, 'encoder.block.0.layer.1.DenseReluDense.wo.weight', [14, 10], 'F32'),
    tensor(rand, 'shared.weight', [20, 14], 'F32'),
  ]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** A pipeline whose text_encoder/ is `cls` (`config` its config.json), stored under `lm`, with `extra` tensors beside. */
const oneLlm = (pipeline: string, cls: string, config: object, lm: string, extra: ReturnType<typeof tensor>[] = []): Record<string, Uint8Array | string> => ({
  'model_index.json': json({ _class_name: pipeline, text_encoder: ['transformers', cls], transformer: ['diffusers', 'Transformer2DModel'], vae: ['diffusers', 'AutoencoderKL'] }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json(config),
  'text_encoder/model.safetensors': buildSafetensors([...llmLayer(lm), ...extra]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
});

const backends: Partial<Record<'cpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const mergeAndCheck = (base: Record<string, Uint8Array | string>, specs: LoraSpec[], written: string[]) =>
  mergePipelineAndCheck(backends.cpu!, base, [{ file: 'lora.safetensors', bytes: buildSafetensors(loraTensors(rand, specs, 'BF16')), specs, weight: 0.8 }], written);

describe('ComfyUI\'s newer text encoders on a pipeline\'s folder', () => {
  for (const lm of ['', 'model.']) {
    it(`Z-Image: \`text_encoders.qwen3_4b.transformer.model.\` on its Qwen3Model, stored as \`${lm}layers.\``, async () => {
      await mergeAndCheck(zImage(lm), [
        comfy(`text_encoders.qwen3_4b.transformer.model.${Q}`, 12, 12, `text_encoder.${lm}${Q}.weight`),
        comfy(`text_encoders.qwen3_4b.transformer.model.${K}`, 4, 12, `text_encoder.${lm}${K}.weight`),
        comfy(`text_encoders.qwen3_4b.transformer.model.${DOWN}`, 12, 20, `text_encoder.${lm}${DOWN}.weight`),
      ], ['text_encoder/model.safetensors']);
    });
  }

  it('Z-Image\'s text_encoder/ folder given on its own (its config.json says Qwen3ForCausalLM): `qwen3_4b` lands on the names its keys use', async () => {
    for (const lm of ['', 'model.']) {
      const whole = zImage(lm);
      const folder = { 'config.json': whole['text_encoder/config.json'], 'model.safetensors': whole['text_encoder/model.safetensors'] };
      const specs = [comfy(`text_encoders.qwen3_4b.transformer.model.${Q}`, 12, 12, `${lm}${Q}.weight`)];
      const prepared = await prepareMerge(memoryInputFileSet(folder, 'text_encoder'), [{ files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(loraTensors(rand, specs, 'BF16')) }, 'lora.safetensors'), weight: 1 }]);
      try {
        expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
        expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual([`${lm}${Q}.weight`]);
      } finally {
        await prepared.close();
      }
    }
  });

  it('Ovis-Image: `text_encoders.qwen3_2b.` (ComfyUI\'s Ovis 2.5 LLM) on its Qwen3Model of hidden_size 2048', async () => {
    const ovis = oneLlm('OvisImagePipeline', 'Qwen3Model', { ...QWEN3_4B, architectures: ['Qwen3Model'], hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 28, num_attention_heads: 16 }, '');
    await mergeAndCheck(ovis, [
      comfy(`text_encoders.qwen3_2b.transformer.model.${K}`, 4, 12, `text_encoder.${K}.weight`),
      comfy(`text_encoders.qwen3_2b.transformer.model.${DOWN}`, 12, 20, `text_encoder.${DOWN}.weight`),
    ], ['text_encoder/model.safetensors']);
  });

  it('FLUX.2 [klein] 9B: `text_encoders.qwen3_8b.` on its Qwen3ForCausalLM under `model.`; `qwen3_4b` left out, as ComfyUI leaves it', async () => {
    const { warnings } = await mergeAndCheck(klein9b, [
      comfy(`text_encoders.qwen3_8b.transformer.model.${Q}`, 12, 12, `text_encoder.model.${Q}.weight`),
      comfy(`text_encoders.qwen3_8b.transformer.model.${DOWN}`, 12, 20, `text_encoder.model.${DOWN}.weight`),
      comfy(`text_encoders.qwen3_4b.transformer.model.${Q}`, 12, 12, ''),
    ], ['text_encoder/model.safetensors']);
    expect(warnings.join('\n')).toMatch(/1 module left out, not merged: it names ComfyUI's qwen3_4b text encoder \(text_encoders\.qwen3_4b\.\), which the base does not hold/);
  });

  for (const [lm, top] of [['language_model.model.', 'language_model.'], ['model.language_model.', '']] as const) {
    it(`HunyuanVideo I2V: \`text_encoders.llama.\` on the language model of its LlavaForConditionalGeneration, stored as \`${lm}\``, async () => {
      await mergeAndCheck(hunyuanI2V(lm, top), [
        comfy(`text_encoders.llama.transformer.model.${Q}`, 12, 12, `text_encoder.${lm}${Q}.weight`),
        comfy(`text_encoders.llama.transformer.model.${DOWN}`, 12, 20, `text_encoder.${lm}${DOWN}.weight`),
        comfy('text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj', 10, 10, 'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.weight'),
      ], ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors']);
    });
  }

  it('HunyuanVideo 1.5: `qwen25_7b` on its Qwen2_5_VLTextModel and `byt5_small` on its byT5 text_encoder_2/', async () => {
    await mergeAndCheck(hunyuan15, [
      comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, `text_encoder.${Q}.weight`),
      comfy('text_encoders.byt5_small.transformer.encoder.block.0.layer.0.SelfAttention.q', 6, 14, 'text_encoder_2.encoder.block.0.layer.0.SelfAttention.q.weight'),
      comfy('text_encoders.byt5_small.transformer.encoder.block.0.layer.1.DenseReluDense.wo', 14, 10, 'text_encoder_2.encoder.block.0.layer.1.DenseReluDense.wo.weight'),
    ], ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors']);
  });

  it('HunyuanVideo 1.5: a `t5xxl` module is not its byT5 (left out), and Qwen2.5-VL\'s vision tower, which its folder lacks, is refused by name', async () => {
    const t5 = await pipelinePlan(hunyuan15, [
      comfy('transformer.transformer_blocks.0.attn.to_q', 8, 8, ''), comfy('text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q', 6, 14, ''),
    ], rand);
    expect(t5.problems).toEqual([]);
    expect(t5.warnings.join('\n')).toMatch(/1 module left out, not merged: it names text encoder 3 \(T5\), which the base does not hold/);
    const visual = await pipelinePlan(hunyuan15, [comfy('text_encoders.qwen25_7b.transformer.visual.blocks.0.attn.qkv', 18, 6, '')], rand);
    expect(visual.problems).toEqual([
      'lora.safetensors: module "text_encoders.qwen25_7b.transformer.visual.blocks.0.attn.qkv": names ComfyUI\'s qwen25_7b text encoder (text_encoders.qwen25_7b.), but text_encoder (Qwen2_5_VLTextModel) does not hold ComfyUI\'s visual. (a Qwen2_5_VLTextModel holds only its model.): not supported',
    ]);
  });

  it('HunyuanVideo 1.5: kohya\'s T5 modules (SD3\'s `lora_te3_`, OneTrainer\'s Flux `lora_te2_`) name T5-XXL, not its byT5 (left out, as ComfyUI maps them only to its t5xxl); a diffusers `text_encoder_2.` module names that folder and lands', async () => {
    const kohyaT5 = await pipelinePlan(hunyuan15, [
      comfy('transformer.transformer_blocks.0.attn.to_q', 8, 8, ''),
      comfy('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 6, 14, ''),
      comfy('lora_te2_encoder_block_0_layer_1_DenseReluDense_wo', 14, 10, ''),
      // diffusers' SD3 names its T5-XXL folder so; this pipeline has no text_encoder_3/.
      comfy('text_encoder_3.encoder.block.0.layer.0.SelfAttention.q', 6, 14, ''),
    ], rand);
    expect(kohyaT5.problems).toEqual([]);
    const held = '(it holds text_encoder (Qwen2_5_VLTextModel), text_encoder_2 (T5EncoderModel), the transformer (HunyuanVideo15Transformer3DModel), the VAE)';
    expect(kohyaT5.warnings).toEqual([
      `lora.safetensors: 2 modules left out, not merged: they name text encoder 3 (T5), which the base does not hold ${held} (lora_te3_encoder_block_0_layer_0_SelfAttention_q, text_encoder_3.encoder.block.0.layer.0.SelfAttention.q)`,
      `lora.safetensors: 1 module left out, not merged: it names text encoder 2 (T5), which the base does not hold ${held} (lora_te2_encoder_block_0_layer_1_DenseReluDense_wo)`,
    ]);
    await mergeAndCheck(hunyuan15, [
      comfy('text_encoder_2.encoder.block.0.layer.1.DenseReluDense.wo', 14, 10, 'text_encoder_2.encoder.block.0.layer.1.DenseReluDense.wo.weight'),
    ], ['text_encoder_2/model.safetensors']);
  });

  it('OmniGen2\'s `qwen25_3b` on a Qwen2.5-VL 3B, and NewBie\'s `gemma3_4b` on a Gemma 3 4B, each stored as transformers ≥ 4.52 saves it', async () => {
    await mergeAndCheck(oneLlm('OmniGen2Pipeline', 'Qwen2_5_VLForConditionalGeneration', {
      architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', text_config: { hidden_size: 2048, model_type: 'qwen2_5_vl_text', num_hidden_layers: 36 },
    }, 'model.language_model.'), [comfy(`text_encoders.qwen25_3b.transformer.model.${Q}`, 12, 12, `text_encoder.model.language_model.${Q}.weight`)], ['text_encoder/model.safetensors']);
    await mergeAndCheck(oneLlm('NewbiePipeline', 'Gemma3ForConditionalGeneration', {
      architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', text_config: { hidden_size: 2560, model_type: 'gemma3_text', num_hidden_layers: 34 },
    }, 'model.language_model.'), [comfy(`text_encoders.gemma3_4b.transformer.model.${DOWN}`, 12, 20, `text_encoder.model.language_model.${DOWN}.weight`)], ['text_encoder/model.safetensors']);
  });

  it('`text_encoders.qwen3vl_8b.` on the language model of a Qwen3-VL 8B folder, as a Qwen3VLModel and a Qwen3VLForConditionalGeneration store it', async () => {
    const config = { architectures: ['Qwen3VLForConditionalGeneration'], model_type: 'qwen3_vl', text_config: { hidden_size: 4096, model_type: 'qwen3_vl_text', num_hidden_layers: 36 } };
    for (const [cls, lm] of [['Qwen3VLModel', 'language_model.'], ['Qwen3VLForConditionalGeneration', 'model.language_model.']] as const) {
      await mergeAndCheck(oneLlm('JoyImageEditPipeline', cls, config, lm), [
        comfy(`text_encoders.qwen3vl_8b.transformer.model.${Q}`, 12, 12, `text_encoder.${lm}${Q}.weight`),
      ], ['text_encoder/model.safetensors']);
    }
  });

  it('refuses in one line a part of ComfyUI\'s model kept elsewhere or not at all by the folder\'s class (Gemma 3\'s vision tower, ComfyUI\'s own naming)', async () => {
    const newbie = oneLlm('NewbiePipeline', 'Gemma3ForConditionalGeneration', {
      architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', text_config: { hidden_size: 2560, model_type: 'gemma3_text' },
    }, 'model.language_model.', [tensor(rand, 'model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [6, 6], 'BF16')]);
    const { problems } = await pipelinePlan(newbie, [comfy('text_encoders.gemma3_4b.transformer.vision_model.encoder.layers.0.self_attn.q_proj', 6, 6, '')], rand);
    expect(problems).toEqual([
      'lora.safetensors: module "text_encoders.gemma3_4b.transformer.vision_model.encoder.layers.0.self_attn.q_proj": names ComfyUI\'s gemma3_4b text encoder (text_encoders.gemma3_4b.), but text_encoder (Gemma3ForConditionalGeneration) does not hold ComfyUI\'s vision_model. (a Gemma3ForConditionalGeneration holds only its model.): not supported',
    ]);
  });

  it('LTX-2: `text_encoders.gemma3_12b.` on the language model of its Gemma3ForConditionalGeneration (transformers < 4.52 names); `gemma3_4b` left out there', async () => {
    const ltx2 = oneLlm('LTX2Pipeline', 'Gemma3ForConditionalGeneration', {
      architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', mm_tokens_per_image: 256,
      text_config: { head_dim: 256, hidden_size: 3840, intermediate_size: 15360, model_type: 'gemma3_text', num_attention_heads: 16, num_hidden_layers: 48, num_key_value_heads: 8 },
      vision_config: { hidden_size: 1152, model_type: 'siglip_vision_model', num_hidden_layers: 27 },
    }, 'language_model.model.');
    const { warnings } = await mergeAndCheck(ltx2, [
      comfy(`text_encoders.gemma3_12b.transformer.model.${Q}`, 12, 12, `text_encoder.language_model.model.${Q}.weight`),
      comfy(`text_encoders.gemma3_12b.transformer.model.${DOWN}`, 12, 20, `text_encoder.language_model.model.${DOWN}.weight`),
      comfy(`text_encoders.gemma3_4b.transformer.model.${Q}`, 12, 12, ''),
    ], ['text_encoder/model.safetensors']);
    expect(warnings.join('\n')).toMatch(/1 module left out, not merged: it names ComfyUI's gemma3_4b text encoder \(text_encoders\.gemma3_4b\.\), which the base does not hold/);
  });
});
