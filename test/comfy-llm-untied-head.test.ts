/**
 * ComfyUI's LLM text encoders whose model keeps an untied output head: comfy/text_encoders/llama.py
 * sets `lm_head` in Qwen25_7BVLI_Config (Qwen-Image's and HunyuanImage 2.1's `qwen25_7b`), Qwen3_8BConfig
 * (FLUX.2 [klein] 9B's `qwen3_8b`) and Qwen3VL_8BConfig, which inherits it (`qwen3vl_8b`); Llama2_
 * then holds `model.lm_head`, which comfy/sd.py's load_text_encoder_state_dicts fills from the
 * checkpoint's `lm_head.weight`, and comfy/lora.py's model_lora_keys_clip maps
 * `text_encoders.<name>.transformer.model.lm_head` onto it. Such a module merges into the base's
 * `lm_head.weight` (a pipeline folder's or a file's own), against float64 truth; it is refused where
 * the base holds no head. A bare `…transformer.lm_head` names no key of that model, and Qwen3-VL 4B
 * ties its head (Qwen3VL_4BConfig: `lm_head` False): both are left out with a warning, as ComfyUI
 * leaves them unloaded. So is FLUX.2's Mistral's (`mistral3_24b`), whose ComfyUI model has no head
 * (Mistral3Small24BConfig) though its checkpoint stores one.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted as comfy, mergePipelineAndCheck, pipelinePlan } from './helpers/pipeline-merge.js';

const rand = seededRandom(151936);
const json = (o: object) => JSON.stringify(o, null, 2);
// Hidden size 3584 / 4096 scaled to 12, the vocabulary (152064 / 151936) to 30: the configs say the model.
const [H, VOCAB] = [12, 30];
const Q = 'layers.0.self_attn.q_proj';

/** A Qwen language model's weights under `prefix` as transformers names them, with its own head `lm_head.weight` unless `head` is false. */
const qwenLm = (prefix: string, head = true) => [
  tensor(rand, `${prefix}embed_tokens.weight`, [VOCAB, H], 'BF16'), tensor(rand, `${prefix}${Q}.weight`, [H, H], 'BF16'),
  tensor(rand, `${prefix}layers.0.input_layernorm.weight`, [H], 'BF16'), tensor(rand, `${prefix}norm.weight`, [H], 'BF16'),
  ...(head ? [tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')] : []),
];

const backends = mergeBackends({ cpu: 'default' });

describe('an untied head ComfyUI\'s model holds as model.lm_head', () => {
  it('Qwen-Image\'s pipeline: `text_encoders.qwen25_7b.transformer.model.lm_head` merges into text_encoder/\'s lm_head.weight, beside a q_proj', async () => {
    const base: Record<string, Uint8Array | string> = {
      'model_index.json': json({
        _class_name: 'QwenImagePipeline', _diffusers_version: '0.35.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
        text_encoder: ['transformers', 'Qwen2_5_VLForConditionalGeneration'], tokenizer: ['transformers', 'Qwen2Tokenizer'],
        transformer: ['diffusers', 'QwenImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKLQwenImage'],
      }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
      'text_encoder/config.json': json({
        architectures: ['Qwen2_5_VLForConditionalGeneration'], hidden_size: 3584, model_type: 'qwen2_5_vl', num_hidden_layers: 28,
        tie_word_embeddings: false, vocab_size: 152064, vision_config: { depth: 32, hidden_size: 1280, out_hidden_size: 3584 },
      }),
      'text_encoder/model.safetensors': buildSafetensors([...qwenLm('model.language_model.'), tensor(rand, 'model.visual.blocks.0.attn.qkv.weight', [18, 6], 'BF16')]),
    };
    const specs = [
      comfy('text_encoders.qwen25_7b.transformer.model.lm_head', VOCAB, H, 'text_encoder.lm_head.weight'),
      comfy(`text_encoders.qwen25_7b.transformer.model.${Q}`, H, H, `text_encoder.model.language_model.${Q}.weight`),
    ];
    const { warnings } = await mergePipelineAndCheck(backends.cpu!, base, [{ file: 'lora.safetensors', bytes: buildSafetensors(loraTensors(rand, specs, 'BF16')), specs, weight: 0.8 }], ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([]);
  });

  it('FLUX.2 [klein] 9B\'s qwen_3_8b.safetensors alone: `text_encoders.qwen3_8b.transformer.model.lm_head` merges into its lm_head.weight', async () => {
    const file = 'qwen_3_8b.safetensors';
    const baseBytes = buildSafetensors(qwenLm('model.'));
    const specs = [comfy('text_encoders.qwen3_8b.transformer.model.lm_head', VOCAB, H, 'lm_head.weight'), comfy(`text_encoders.qwen3_8b.transformer.model.${Q}`, H, H, `model.${Q}.weight`)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [file]: baseBytes }, baseName: file, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: -0.6 }] });
    expect(warnings).toEqual([]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs, -0.6));
  });

  it('is refused, in one line naming the head and what is missing, on a Qwen3 8B file that stores no lm_head.weight', async () => {
    const file = 'qwen_3_8b_headless.safetensors';
    const lora = buildSafetensors(loraTensors(rand, [comfy('text_encoders.qwen3_8b.transformer.model.lm_head', VOCAB, H, '')], 'BF16'));
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { [file]: buildSafetensors(qwenLm('model.', false)) }, baseName: file, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors' }] });
    // Not a head written from the tied embedding: ComfyUI's model never reads the embedding for it.
    expect(refusals).toEqual([
      'lora.safetensors: module "text_encoders.qwen3_8b.transformer.model.lm_head" names the output head that ComfyUI\'s model of the encoder loads from the checkpoint\'s lm_head.weight, which the base does not store (its head is tied to model.embed_tokens.weight): merge into the encoder\'s checkpoint with its head',
    ]);
  });

  it('is refused on FLUX.2 [klein] 9B\'s pipeline whose text_encoder/ (Qwen3ForCausalLM) stores no lm_head.weight', async () => {
    const base: Record<string, Uint8Array | string> = {
      'model_index.json': json({
        _class_name: 'Flux2KleinPipeline', _diffusers_version: '0.37.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
        text_encoder: ['transformers', 'Qwen3ForCausalLM'], tokenizer: ['transformers', 'Qwen2TokenizerFast'],
        transformer: ['diffusers', 'Flux2Transformer2DModel'], vae: ['diffusers', 'AutoencoderKLFlux2'],
      }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
      'text_encoder/config.json': json({ architectures: ['Qwen3ForCausalLM'], hidden_size: 4096, model_type: 'qwen3', num_hidden_layers: 36, tie_word_embeddings: false, vocab_size: 151936 }),
      'text_encoder/model.safetensors': buildSafetensors(qwenLm('model.', false)),
    };
    const { problems, warnings } = await pipelinePlan(base, [comfy('text_encoders.qwen3_8b.transformer.model.lm_head', VOCAB, H, '')], rand);
    expect(warnings).toEqual([]);
    expect(problems).toEqual([
      'lora.safetensors: module "text_encoders.qwen3_8b.transformer.model.lm_head": names the output head (model.lm_head) of ComfyUI\'s qwen3_8b text encoder (text_encoders.qwen3_8b.), which ComfyUI\'s model has and patches (loaded from the checkpoint\'s lm_head.weight), but the base stores no head for it (lm_head.weight, or text_encoders.qwen3_8b.transformer.model.lm_head.weight as ComfyUI saves it): merge into the encoder\'s checkpoint with its head',
    ]);
  });

  it('a bare `…transformer.lm_head` of qwen3vl_8b, and Qwen3-VL 4B\'s tied head, are left out with a warning each; the q_proj lands', async () => {
    const file = 'qwen3vl_text_encoder.safetensors';
    const baseBytes = buildSafetensors(qwenLm('model.'));
    const specs = [
      comfy(`text_encoders.qwen3vl_8b.transformer.model.${Q}`, H, H, `model.${Q}.weight`),
      comfy('text_encoders.qwen3vl_8b.transformer.lm_head', VOCAB, H, ''),
      comfy('text_encoders.qwen3vl_4b.transformer.model.lm_head', VOCAB, H, ''),
    ];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [file]: baseBytes }, baseName: file, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.5 }] });
    expect(warnings).toEqual([
      'lora.safetensors: 1 module left out, not merged: it names lm_head of ComfyUI\'s qwen3vl_8b text encoder (text_encoders.qwen3vl_8b.), whose ComfyUI model keeps its head as model.lm_head and has no lm_head of its own, so ComfyUI\'s loader leaves the module unloaded ("lora key not loaded") (text_encoders.qwen3vl_8b.transformer.lm_head)',
      'lora.safetensors: 1 module left out, not merged: it names the output head (model.lm_head) of ComfyUI\'s qwen3vl_4b text encoder (text_encoders.qwen3vl_4b.), which ComfyUI\'s model of that encoder does not have (ComfyUI conditions on the encoder\'s hidden states), so ComfyUI\'s loader leaves the module unloaded ("lora key not loaded") (text_encoders.qwen3vl_4b.transformer.model.lm_head)',
    ]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 0.5));
  });
});

describe('FLUX.2 [dev]\'s Mistral Small 3.2 (`mistral3_24b`), whose checkpoint stores an untied head ComfyUI\'s model does not have', () => {
  it('its `….model.lm_head` is left out with a warning (it was merged into the stored lm_head.weight), which stays as it is; the q_proj lands', async () => {
    const file = 'mistral_3_small_flux2_bf16.safetensors';
    const baseBytes = buildSafetensors(qwenLm('model.'));
    const specs = [comfy(`text_encoders.mistral3_24b.transformer.model.${Q}`, H, H, `model.${Q}.weight`), comfy('text_encoders.mistral3_24b.transformer.model.lm_head', VOCAB, H, '')];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [file]: baseBytes }, baseName: file, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 1.2 }] });
    expect(warnings).toEqual([
      'lora.safetensors: 1 module left out, not merged: it names the output head (model.lm_head) of ComfyUI\'s mistral3_24b text encoder (text_encoders.mistral3_24b.), which ComfyUI\'s model of that encoder does not have (ComfyUI conditions on the encoder\'s hidden states), so ComfyUI\'s loader leaves the module unloaded ("lora key not loaded") (text_encoders.mistral3_24b.transformer.model.lm_head)',
    ]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 1.2));
  });
});

describe('kohya\'s `lora_te_lm_head` on a ComfyUI all-in-one checkpoint, which comfy/lora.py maps as `lora_te_` + the path after its one LLM\'s `transformer.model.`', () => {
  const bundle = (name: string, head: boolean) => buildSafetensors([
    tensor(rand, 'model.diffusion_model.layers.0.attention.qkv.weight', [24, 8], 'BF16'),
    ...qwenLm(`text_encoders.${name}.transformer.model.`, false),
    ...(head ? [tensor(rand, `text_encoders.${name}.transformer.model.lm_head.weight`, [VOCAB, H], 'BF16')] : []),
  ]);

  it('merges into the stored head of a qwen3_8b bundle (FLUX.2 [klein] 9B)', async () => {
    const baseBytes = bundle('qwen3_8b', true);
    const te = 'text_encoders.qwen3_8b.transformer.model.';
    const specs = [comfy('lora_te_lm_head', VOCAB, H, `${te}lm_head.weight`), comfy('lora_te_layers_0_self_attn_q_proj', H, H, `${te}${Q}.weight`)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { 'klein_9b_aio.safetensors': baseBytes }, baseName: 'klein_9b_aio.safetensors', adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.9 }] });
    expect(warnings).toEqual([]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs, 0.9));
  });

  it('is left out with a warning on a qwen3_4b bundle (Z-Image), whose ComfyUI model has no head (it was refused as matching no tensor)', async () => {
    const baseBytes = bundle('qwen3_4b', false);
    const specs = [comfy('lora_te_layers_0_self_attn_q_proj', H, H, `text_encoders.qwen3_4b.transformer.model.${Q}.weight`), comfy('lora_te_lm_head', VOCAB, H, '')];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { 'z_image_aio.safetensors': baseBytes }, baseName: 'z_image_aio.safetensors', adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.9 }] });
    expect(warnings).toEqual([
      'lora.safetensors: 1 module left out, not merged: it names the output head (model.lm_head) of ComfyUI\'s qwen3_4b text encoder (text_encoders.qwen3_4b.), which ComfyUI\'s model of that encoder does not have (ComfyUI conditions on the encoder\'s hidden states), so ComfyUI\'s loader leaves the module unloaded ("lora key not loaded") (lora_te_lm_head)',
    ]);
    expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 0.9));
  });

  it('is refused on a qwen3_8b bundle that stores no head', async () => {
    const lora = buildSafetensors(loraTensors(rand, [comfy('lora_te_lm_head', VOCAB, H, '')], 'BF16'));
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { 'klein_9b_aio.safetensors': bundle('qwen3_8b', false) }, baseName: 'klein_9b_aio.safetensors', adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors' }] });
    expect(refusals).toEqual([
      'lora.safetensors: module "lora_te_lm_head": names the output head (model.lm_head) of ComfyUI\'s qwen3_8b text encoder (text_encoders.qwen3_8b.), which ComfyUI\'s model has and patches (loaded from the checkpoint\'s lm_head.weight), but the base stores no head for it (lm_head.weight, or text_encoders.qwen3_8b.transformer.model.lm_head.weight as ComfyUI saves it): merge into the encoder\'s checkpoint with its head',
    ]);
  });
});

