/**
 * ComfyUI's LLM text encoders on a diffusers pipeline's folder: `text_encoders.llama.` (HunyuanVideo's
 * llava-llama-3 as a LlamaModel, HiDream's Llama 3.1 8B as a LlamaForCausalLM), `text_encoders.qwen25_7b.`
 * (Qwen-Image's Qwen2.5-VL, as transformers before and after 4.52 save it) and `text_encoders.gemma2_2b.`
 * (Lumina Image 2.0's Gemma2Model). ComfyUI's model keeps the language model under `model.` and
 * Qwen2.5-VL's vision tower under `visual.` (comfy/text_encoders/llama.py); each lands on the folder
 * of that class whose config.json says that LLM, under the names that folder's header stores, against
 * float64 truth (and on its text_encoder/ folder given alone). A Qwen2.5-VL 3B is left out with a
 * warning; a folder without config.json (HunyuanVideo I2V's Llava, Qwen-Image's Qwen2.5-VL), or one
 * storing the language model both ways, is refused in one line.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, onePipelineLora } from './helpers/pipeline-merge.js';

const rand = seededRandom(7331);
const json = (o: object) => JSON.stringify(o, null, 2);
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
/** One decoder layer of a Llama-style LLM (hidden 12, MLP 20) under `prefix`, as transformers names it. */
const llmLayer = (prefix: string) => [
  tensor(rand, `${prefix}layers.0.self_attn.q_proj.weight`, [12, 12], 'BF16'), tensor(rand, `${prefix}layers.0.self_attn.k_proj.weight`, [4, 12], 'BF16'),
  tensor(rand, `${prefix}layers.0.mlp.down_proj.weight`, [12, 20], 'BF16'), tensor(rand, `${prefix}layers.0.input_layernorm.weight`, [12], 'BF16'),
  tensor(rand, `${prefix}embed_tokens.weight`, [30, 12], 'BF16'), tensor(rand, `${prefix}norm.weight`, [12], 'BF16'),
];

/** hunyuanvideo-community/HunyuanVideo: llava-llama-3-8b's language model as a LlamaModel (keys without `model.`), CLIP-L second. */
const hunyuanVideo: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'HunyuanVideoPipeline', _diffusers_version: '0.32.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'LlamaModel'], text_encoder_2: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'LlamaTokenizerFast'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'], transformer: ['diffusers', 'HunyuanVideoTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLHunyuanVideo'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['LlamaModel'], bos_token_id: 128000, eos_token_id: 128001, hidden_act: 'silu', hidden_size: 4096, intermediate_size: 14336,
    max_position_embeddings: 8192, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5,
    rope_theta: 500000.0, torch_dtype: 'float16', transformers_version: '4.46.3', vocab_size: 128320,
  }),
  'text_encoder/model.safetensors': buildSafetensors(llmLayer('')),
  'text_encoder_2/config.json': json({ architectures: ['CLIPTextModel'], hidden_size: 768, model_type: 'clip_text_model', num_hidden_layers: 12, projection_dim: 768 }),
  'text_encoder_2/model.safetensors': buildSafetensors([tensor(rand, 'text_model.encoder.layers.0.self_attn.q_proj.weight', [10, 10], 'F16')]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** HiDream-ai/HiDream-I1-Full with meta-llama/Llama-3.1-8B-Instruct as its text_encoder_4 (LlamaForCausalLM: `model.` and `lm_head`). */
const hiDream: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'HiDreamImagePipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'UniPCMultistepScheduler'],
    text_encoder: ['transformers', 'CLIPTextModelWithProjection'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    text_encoder_3: ['transformers', 'T5EncoderModel'], text_encoder_4: ['transformers', 'LlamaForCausalLM'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], tokenizer_3: ['transformers', 'T5Tokenizer'],
    tokenizer_4: ['transformers', 'PreTrainedTokenizerFast'], transformer: ['diffusers', 'HiDreamImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'double_stream_blocks.0.block.attn1.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder_4/config.json': json({
    architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 14336, model_type: 'llama', num_attention_heads: 32,
    num_hidden_layers: 32, num_key_value_heads: 8, rope_scaling: { factor: 8.0, rope_type: 'llama3' }, torch_dtype: 'bfloat16', vocab_size: 128256,
  }),
  'text_encoder_4/model.safetensors': buildSafetensors([...llmLayer('model.'), tensor(rand, 'lm_head.weight', [30, 12], 'BF16')]),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** Qwen/Qwen-Image's Qwen2.5-VL 7B: `model.language_model.` and `model.visual.` (transformers ≥ 4.52), or `model.` and `visual.` (older). */
const qwenImage = (opts: { newNames: boolean; config?: object | null; both?: boolean }): Record<string, Uint8Array | string> => {
  const [lm, visual] = opts.newNames ? ['model.language_model.', 'model.visual.'] : ['model.', 'visual.'];
  const config = opts.config === undefined
    ? {
      architectures: ['Qwen2_5_VLForConditionalGeneration'], hidden_size: 3584, intermediate_size: 18944, model_type: 'qwen2_5_vl', num_attention_heads: 28,
      num_hidden_layers: 28, num_key_value_heads: 4, torch_dtype: 'bfloat16', transformers_version: '4.53.1', vocab_size: 152064,
      vision_config: { depth: 32, hidden_size: 1280, model_type: 'qwen2_5_vl', out_hidden_size: 3584 },
    }
    : opts.config;
  return {
    'model_index.json': json({
      _class_name: 'QwenImagePipeline', _diffusers_version: '0.35.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      text_encoder: ['transformers', 'Qwen2_5_VLForConditionalGeneration'], tokenizer: ['transformers', 'Qwen2Tokenizer'],
      transformer: ['diffusers', 'QwenImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKLQwenImage'],
    }),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
    ...(config === null ? {} : { 'text_encoder/config.json': json(config) }),
    'text_encoder/model.safetensors': buildSafetensors([
      ...llmLayer(lm), ...(opts.both ? [tensor(rand, 'model.layers.0.self_attn.q_proj.weight', [12, 12], 'BF16')] : []),
      tensor(rand, `${visual}blocks.0.attn.qkv.weight`, [18, 6], 'BF16'), tensor(rand, `${visual}merger.mlp.0.weight`, [6, 6], 'BF16'),
      tensor(rand, 'lm_head.weight', [30, 12], 'BF16'),
    ]),
    'vae/diffusion_pytorch_model.safetensors': vae(),
  };
};

/** Alpha-VLLM/Lumina-Image-2.0: Gemma 2 2B as a Gemma2Model (keys without `model.`). */
const lumina2: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'Lumina2Pipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'Gemma2Model'], tokenizer: ['transformers', 'GemmaTokenizerFast'],
    transformer: ['diffusers', 'Lumina2Transformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'layers.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['Gemma2Model'], attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0, head_dim: 256, hidden_size: 2304,
    intermediate_size: 9216, model_type: 'gemma2', num_attention_heads: 8, num_hidden_layers: 26, num_key_value_heads: 4, vocab_size: 256000,
  }),
  'text_encoder/model.safetensors': buildSafetensors(llmLayer('')),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** A ComfyUI "Extract and Save Lora" module (lora_up/lora_down, no alpha: scale 1) on `key`. */
const comfy = comfyExtracted;
const Q = 'layers.0.self_attn.q_proj';
const DOWN = 'layers.0.mlp.down_proj';

const { mergeAndCheck, planOf } = onePipelineLora(rand, 0.7);

describe('ComfyUI\'s LLM text encoders on a pipeline\'s folder', () => {
  it('HunyuanVideo: `text_encoders.llama.transformer.model.` on its LlamaModel, stored without `model.`; `clip_l` on its CLIP-L text_encoder_2/', async () => {
    await mergeAndCheck(hunyuanVideo, [
      comfy(`text_encoders.llama.transformer.model.${Q}`, 12, 12, `text_encoder.${Q}.weight`),
      comfy(`text_encoders.llama.transformer.model.${DOWN}`, 12, 20, `text_encoder.${DOWN}.weight`),
      comfy('text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj', 10, 10, 'text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.weight'),
    ], ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors']);
  });

  it('HiDream: `text_encoders.llama.` on its LlamaForCausalLM text_encoder_4/, stored under `model.`', async () => {
    await mergeAndCheck(hiDream, [
      comfy(`text_encoders.llama.transformer.model.${Q}`, 12, 12, `text_encoder_4.model.${Q}.weight`),
      comfy(`text_encoders.llama.transformer.model.${DOWN}`, 12, 20, `text_encoder_4.model.${DOWN}.weight`),
    ], ['text_encoder_4/model.safetensors']);
  });

  for (const newNames of [true, false]) {
    const [lm, visual] = newNames ? ['model.language_model.', 'model.visual.'] : ['model.', 'visual.'];
    it(`Qwen-Image: \`text_encoders.qwen25_7b.\`'s \`model.\` and \`visual.\` on its Qwen2.5-VL stored as \`${lm}\` and \`${visual}\``, async () => {
      await mergeAndCheck(qwenImage({ newNames }), [
        comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, `text_encoder.${lm}${Q}.weight`),
        comfy(`text_encoders.qwen25_7b.transformer.model.${DOWN}`, 12, 20, `text_encoder.${lm}${DOWN}.weight`),
        comfy('text_encoders.qwen25_7b.transformer.visual.blocks.0.attn.qkv', 18, 6, `text_encoder.${visual}blocks.0.attn.qkv.weight`),
      ], ['text_encoder/model.safetensors']);
    });
  }

  it('Lumina Image 2.0: `text_encoders.gemma2_2b.` on its Gemma2Model, stored without `model.`', async () => {
    await mergeAndCheck(lumina2, [
      comfy(`text_encoders.gemma2_2b.transformer.model.${Q}`, 12, 12, `text_encoder.${Q}.weight`),
      comfy(`text_encoders.gemma2_2b.transformer.model.${DOWN}`, 12, 20, `text_encoder.${DOWN}.weight`),
    ], ['text_encoder/model.safetensors']);
  });

  it('Qwen-Image\'s text_encoder/ folder given on its own: `text_encoders.qwen25_7b.` lands by its config.json and keys', async () => {
    const whole = qwenImage({ newNames: true });
    const folder = { 'config.json': whole['text_encoder/config.json'], 'model.safetensors': whole['text_encoder/model.safetensors'] };
    const specs = [comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, `model.language_model.${Q}.weight`)];
    const prepared = await prepareMerge(memoryInputFileSet(folder, 'text_encoder'), [{ files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(loraTensors(rand, specs, 'BF16')) }, 'lora.safetensors'), weight: 1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.warnings).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual([`model.language_model.${Q}.weight`]);
    } finally {
      await prepared.close();
    }
  });

  it('leaves `qwen25_7b` out with a warning on a Qwen2.5-VL 3B, and `llama` on Qwen-Image, as ComfyUI does', async () => {
    const threeB = qwenImage({ newNames: true, config: { architectures: ['Qwen2_5_VLForConditionalGeneration'], hidden_size: 2048, model_type: 'qwen2_5_vl', num_hidden_layers: 36 } });
    const { problems, warnings } = await planOf(threeB, [
      comfy('transformer.transformer_blocks.0.attn.to_q', 8, 8, ''), comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, ''),
      comfy(`text_encoders.llama.transformer.model.${Q}`, 12, 12, ''),
    ]);
    expect(problems).toEqual([]);
    expect(warnings.join('\n')).toMatch(/1 module left out, not merged: it names ComfyUI's qwen25_7b text encoder \(text_encoders\.qwen25_7b\.\), which the base does not hold/);
    expect(warnings.join('\n')).toMatch(/1 module left out, not merged: it names ComfyUI's llama text encoder \(text_encoders\.llama\.\), which the base does not hold/);
  });

  it('refuses in one line where the folder has no config.json to say which LLM, or stores the language model both ways', async () => {
    const noConfig = await planOf(qwenImage({ newNames: true, config: null }), [comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, '')]);
    expect(noConfig.problems).toEqual([
      'lora.safetensors: module "text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj": names ComfyUI\'s qwen25_7b text encoder (text_encoders.qwen25_7b.), and which of the base\'s text encoders holds it cannot be told (text_encoder (Qwen2_5_VLForConditionalGeneration): it has no config.json to say its model_type and hidden_size, which tell ComfyUI\'s qwen25_7b (qwen2_5_vl or qwen2_5_vl_text, hidden_size 3584) from another model of its class): not supported',
    ]);
    // A Llava folder whose config.json is missing: which LLM it holds cannot be told.
    const llava = JSON.parse(hunyuanVideo['model_index.json'] as string) as Record<string, unknown>;
    const i2v = Object.fromEntries(Object.entries({ ...hunyuanVideo, 'model_index.json': json({ ...llava, _class_name: 'HunyuanVideoImageToVideoPipeline', text_encoder: ['transformers', 'LlavaForConditionalGeneration'] }) })
      .filter(([path]) => path !== 'text_encoder/config.json'));
    expect((await planOf(i2v, [comfy(`text_encoders.llama.transformer.model.${Q}`, 12, 12, '')])).problems).toEqual([
      'lora.safetensors: module "text_encoders.llama.transformer.model.layers.0.self_attn.q_proj": names ComfyUI\'s llama text encoder (text_encoders.llama.), and which of the base\'s text encoders holds it cannot be told (text_encoder (LlavaForConditionalGeneration): it has no config.json to say its model_type and hidden_size, which tell ComfyUI\'s llama (llama or llava, hidden_size 4096) from another model of its class): not supported',
    ]);
    const both = await planOf(qwenImage({ newNames: true, both: true }), [comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, 12, 12, '')]);
    expect(both.problems).toEqual([
      'lora.safetensors: module "text_encoders.qwen25_7b.transformer.model.layers.0.self_attn.q_proj": names ComfyUI\'s qwen25_7b text encoder (text_encoders.qwen25_7b.), but text_encoder (Qwen2_5_VLForConditionalGeneration) stores model.layers. and model.language_model.layers. both, so which holds ComfyUI\'s model.layers. cannot be told: not supported',
    ]);
  });
});
