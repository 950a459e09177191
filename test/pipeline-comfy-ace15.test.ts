/**
 * ComfyUI's ACE-Step 1.5 text encoders (comfy/text_encoders/ace15.py: ACE15TEModel) on diffusers'
 * AceStepPipeline: its `qwen3_06b` (Qwen3-Embedding-0.6B, hidden 1024), which "Extract and Save
 * Lora" names `text_encoders.qwen3_06b.transformer.model.…`, lands on the pipeline's text_encoder/
 * (a Qwen3Model of hidden_size 1024, stored without `model.`), against float64 truth; its 5 Hz
 * language model (`qwen3_2b` for acestep-5Hz-lm-1.7B, `qwen3_4b` for the 4B), which the diffusers
 * pipeline has no folder for, is left out with a warning naming it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor } from './helpers/diffusion-fixtures.js';
import { comfyExtracted as comfy, mergePipelineAndCheck, pipelinePlan } from './helpers/pipeline-merge.js';

const rand = seededRandom(1024);
const json = (o: object) => JSON.stringify(o, null, 2);

/** ACE-Step/acestep-v15-*-diffusers: model_index.json and text_encoder/ (Qwen3-Embedding-0.6B as a Qwen3Model). */
const aceStep: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'AceStepPipeline', _diffusers_version: '0.38.0.dev0', audio_token_detokenizer: ['ace_step', 'AceStepAudioTokenDetokenizer'],
    audio_tokenizer: ['ace_step', 'AceStepAudioTokenizer'], condition_encoder: ['ace_step', 'AceStepConditionEncoder'],
    scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'Qwen3Model'], tokenizer: ['transformers', 'Qwen2Tokenizer'],
    transformer: ['diffusers', 'AceStepTransformer1DModel'], vae: ['diffusers', 'AutoencoderOobleck'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'layers.0.self_attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['Qwen3Model'], head_dim: 128, hidden_act: 'silu', hidden_size: 1024, intermediate_size: 3072, max_position_embeddings: 32768,
    model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_theta: 1000000,
    tie_word_embeddings: true, torch_dtype: 'bfloat16', vocab_size: 151669,
  }),
  // Small shapes (hidden 12, KV 4, MLP 20): config.json says which model it is.
  'text_encoder/model.safetensors': buildSafetensors([
    tensor(rand, 'layers.0.self_attn.q_proj.weight', [12, 12], 'BF16'), tensor(rand, 'layers.0.self_attn.k_proj.weight', [4, 12], 'BF16'),
    tensor(rand, 'layers.0.mlp.down_proj.weight', [12, 20], 'BF16'), tensor(rand, 'embed_tokens.weight', [30, 12], 'BF16'), tensor(rand, 'norm.weight', [12], 'BF16'),
  ]),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv1.weight', [8, 4, 7], 'F32')]),
};

const backends: Partial<Record<'cpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

describe('ComfyUI\'s ACE-Step 1.5 text encoders on diffusers\' AceStepPipeline', () => {
  it('`text_encoders.qwen3_06b.` lands on text_encoder/ (Qwen3Model, hidden_size 1024)', async () => {
    const specs = [
      comfy('text_encoders.qwen3_06b.transformer.model.layers.0.self_attn.q_proj', 12, 12, 'text_encoder.layers.0.self_attn.q_proj.weight'),
      comfy('text_encoders.qwen3_06b.transformer.model.layers.0.mlp.down_proj', 12, 20, 'text_encoder.layers.0.mlp.down_proj.weight'),
    ];
    const bytes = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    await mergePipelineAndCheck(backends.cpu!, aceStep, [{ file: 'lora.safetensors', bytes, specs, weight: 0.8 }], ['text_encoder/model.safetensors']);
  });

  it('its 5 Hz language model (`qwen3_2b`, `qwen3_4b`), which the pipeline does not hold, is left out with a warning naming it', async () => {
    const plan = await pipelinePlan(aceStep, [
      comfy('text_encoders.qwen3_06b.transformer.model.layers.0.self_attn.k_proj', 4, 12, ''),
      comfy('text_encoders.qwen3_2b.transformer.model.layers.0.self_attn.q_proj', 12, 12, ''),
      comfy('text_encoders.qwen3_4b.transformer.model.layers.0.self_attn.q_proj', 12, 12, ''),
    ], rand);
    expect(plan.problems).toEqual([]);
    const text = plan.warnings.join('\n');
    expect(text).toMatch(/1 module left out, not merged: it names ComfyUI's qwen3_2b text encoder \(text_encoders\.qwen3_2b\.\), which the base does not hold .*\(text_encoders\.qwen3_2b\.transformer\.model\.layers\.0\.self_attn\.q_proj\)/);
    expect(text).toMatch(/1 module left out, not merged: it names ComfyUI's qwen3_4b text encoder \(text_encoders\.qwen3_4b\.\), which the base does not hold .*\(text_encoders\.qwen3_4b\.transformer\.model\.layers\.0\.self_attn\.q_proj\)/);
    expect(plan.warnings).toHaveLength(2);
  });
});
