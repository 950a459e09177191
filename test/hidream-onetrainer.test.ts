/**
 * OneTrainer's HiDream-I1 LoRAs in the OMI format, the form its default safetensors output took for
 * HiDream from May 2025 until July 2026 (LoRASaverMixin `convert_to_omi` over
 * convert_hidream_lora_key_sets; header `modelspec.architecture` `hidream-i1/lora`): kohya's
 * `lora_down`/`lora_up` with `.alpha` (α/r), the transformer under `transformer.` in diffusers' names,
 * and each text encoder under its own prefix in transformers' names: `clip_l.`, `clip_g.`, `t5.`,
 * `llama.`. OneTrainer loaded them back into its four text encoders, read from the pipeline's
 * `text_encoder/` (CLIP-L), `text_encoder_2/` (CLIP-G), `text_encoder_3/` (T5) and `text_encoder_4/`
 * (Llama 3.1 8B Instruct) (HiDreamModelLoader); ComfyUI reads `transformer.` alone on HiDream
 * (model_lora_keys_unet) and leaves the rest unloaded. So on the pipeline folder every module merges
 * (float64 truth, each in its folder), and on ComfyUI's transformer-only file the transformer's merge
 * and the text encoders' are left out with a warning. Its LEGACY form (flat: `lora_transformer_…`,
 * `lora_te1_` … `lora_te4_`, convert_to_legacy_diffusers over the same key sets) merges on the pipeline
 * too, `lora_te4_` (the Llama, a number no other tool writes) in text_encoder_4/. Shapes cut small: CLIP-L 768 → 12, CLIP-G
 * 1280 → 16, T5 4096 → 10, Llama 4096 → 16 with its 8 of 32 heads for k/v → 4, vocabulary → 20.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { HIDREAM, hiDreamTensors } from './helpers/dit-fixtures.js';
import { mergeLoneFileChecked, onePipelineLora } from './helpers/pipeline-merge.js';
import { withoutLayout } from './helpers/lora-case.js';
import { hidreamOneTrainer } from '../src/formats/layouts/hidream-onetrainer.js';

const rand = seededRandom(20251501);
const json = (o: object) => JSON.stringify(o, null, 2);
const hd = HIDREAM.dim;
const CL = 12, CG = 16, T5 = 10, LL = 16, KV = 4, VOCAB = 20;

/** OneTrainer's header on these files (resources/sd_model_spec/hi_dream_full-lora.json). */
const OT_HEADER = {
  'modelspec.sai_model_spec': '1.0.0', 'modelspec.architecture': 'hidream-i1/lora',
  'modelspec.implementation': 'https://github.com/huggingface/diffusers', 'modelspec.title': 'HiDream I1 Full LoRA',
};

const clipConfig = (hidden: number, layers: number, name: string) => json({
  _name_or_path: name, architectures: ['CLIPTextModelWithProjection'], hidden_size: hidden, model_type: 'clip_text_model', num_hidden_layers: layers, projection_dim: hidden,
});
const CLIP = 'text_model.encoder.layers.0';
const SA = 'encoder.block.0.layer.0.SelfAttention';
const clipWeights = (h: number) => buildSafetensors([
  tensor(rand, `${CLIP}.self_attn.q_proj.weight`, [h, h], 'BF16'), tensor(rand, `${CLIP}.mlp.fc1.weight`, [4 * h, h], 'BF16'),
  tensor(rand, 'text_projection.weight', [h, h], 'BF16'),
]);

/** HiDream-ai/HiDream-I1-Full, as diffusers saves it, with its Llama in text_encoder_4/. */
const pipeline: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'HiDreamImagePipeline', _diffusers_version: '0.33.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModelWithProjection'], text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
    text_encoder_3: ['transformers', 'T5EncoderModel'], text_encoder_4: ['transformers', 'LlamaForCausalLM'],
    tokenizer: ['transformers', 'CLIPTokenizer'], tokenizer_2: ['transformers', 'CLIPTokenizer'], tokenizer_3: ['transformers', 'T5Tokenizer'], tokenizer_4: ['transformers', 'PreTrainedTokenizerFast'],
    transformer: ['diffusers', 'HiDreamImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/config.json': json({ _class_name: 'HiDreamImageTransformer2DModel', _diffusers_version: '0.33.0.dev0', num_layers: 1, num_single_layers: 1, num_routed_experts: HIDREAM.experts }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(hiDreamTensors(rand, 'BF16')),
  'text_encoder/config.json': clipConfig(768, 12, 'openai/clip-vit-large-patch14'),
  'text_encoder/model.safetensors': clipWeights(CL),
  'text_encoder_2/config.json': clipConfig(1280, 32, 'laion/CLIP-ViT-bigG-14-laion2B-39B-b160k'),
  'text_encoder_2/model.safetensors': clipWeights(CG),
  'text_encoder_3/config.json': json({ architectures: ['T5EncoderModel'], d_model: 4096, d_ff: 10240, model_type: 't5', num_layers: 24 }),
  'text_encoder_3/model.safetensors': buildSafetensors([tensor(rand, 'shared.weight', [VOCAB, T5], 'BF16'), tensor(rand, `${SA}.q.weight`, [T5, T5], 'BF16'), tensor(rand, `${SA}.o.weight`, [T5, T5], 'BF16')]),
  'text_encoder_4/config.json': json({ architectures: ['LlamaForCausalLM'], hidden_size: 4096, num_attention_heads: 32, num_key_value_heads: 8, model_type: 'llama', tie_word_embeddings: false }),
  'text_encoder_4/model.safetensors': buildSafetensors([
    tensor(rand, 'model.embed_tokens.weight', [VOCAB, LL], 'BF16'), tensor(rand, 'model.layers.0.self_attn.q_proj.weight', [LL, LL], 'BF16'),
    tensor(rand, 'model.layers.0.self_attn.k_proj.weight', [KV, LL], 'BF16'), tensor(rand, 'model.layers.0.mlp.down_proj.weight', [LL, 24], 'BF16'),
    tensor(rand, 'lm_head.weight', [VOCAB, LL], 'BF16'),
  ]),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
};

/** One OMI module (rank 4, α 8) landing on `key` ('' where it is left out). */
const omi = (name: string, out: number, inF: number, key: string): LoraSpec => kohyaSpec(name, 4, out, inF, [{ key }], 8);

const transformerModules = (at: (name: string) => string) => [
  omi('transformer.double_stream_blocks.0.block.attn1.to_q_t', hd, hd, at('double_stream_blocks.0.block.attn1.to_q_t.weight')),
  omi('transformer.double_stream_blocks.0.block.ff_i.experts.1.w3', HIDREAM.ffn, hd, at('double_stream_blocks.0.block.ff_i.experts.1.w3.weight')),
  omi('transformer.single_stream_blocks.0.block.attn1.to_out', hd, hd, at('single_stream_blocks.0.block.attn1.to_out.weight')),
];
const encoderModules = (on: boolean) => [
  omi(`clip_l.${CLIP}.self_attn.q_proj`, CL, CL, on ? `text_encoder.${CLIP}.self_attn.q_proj.weight` : ''),
  omi('clip_l.text_projection', CL, CL, on ? 'text_encoder.text_projection.weight' : ''),
  omi(`clip_g.${CLIP}.mlp.fc1`, 4 * CG, CG, on ? `text_encoder_2.${CLIP}.mlp.fc1.weight` : ''),
  omi(`t5.${SA}.o`, T5, T5, on ? `text_encoder_3.${SA}.o.weight` : ''),
  omi('llama.model.layers.0.self_attn.k_proj', KV, LL, on ? 'text_encoder_4.model.layers.0.self_attn.k_proj.weight' : ''),
  omi('llama.lm_head', VOCAB, LL, on ? 'text_encoder_4.lm_head.weight' : ''),
];

const lora = onePipelineLora(rand, 0.8, 'BF16');

describe("OneTrainer's OMI-format HiDream LoRAs", () => {
  const specs = [...transformerModules((k) => `transformer.${k}`), ...encoderModules(true)];

  it('on the HiDream pipeline folder: each text encoder module lands in the folder OneTrainer loads that encoder from', async () => {
    await lora.mergeAndCheck(pipeline, specs, [
      'transformer/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors', 'text_encoder_2/model.safetensors',
      'text_encoder_3/model.safetensors', 'text_encoder_4/model.safetensors',
    ], 'hidream-lora.safetensors', OT_HEADER);
  });

  it('without the hidream-onetrainer layout the text encoder modules are refused', async () => {
    await withoutLayout(hidreamOneTrainer, async () => {
      const { problems } = await lora.planOf(pipeline, specs, OT_HEADER);
      expect(problems).toHaveLength(6);
    });
  });

  it("on ComfyUI's transformer-only file: the transformer merges, the text encoders are left out with a warning", async () => {
    const file = 'hidream_i1_full_fp16.safetensors';
    const warnings = await mergeLoneFileChecked(lora.backend(), rand, buildSafetensors(hiDreamTensors(rand, 'BF16')), file,
      [...transformerModules((k) => k), ...encoderModules(false)], 1);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toBe("lora.safetensors: 2 modules left out, not merged: they name HiDream-I1's CLIP-L as OneTrainer's OMI-format LoRAs do (clip_l.), which OneTrainer loads into the pipeline's text_encoder/; the base holds no text_encoder/ (ComfyUI and diffusers leave these names unloaded): to merge it, give the HiDream pipeline folder with text_encoder/ as the base (clip_l.text_model.encoder.layers.0.self_attn.q_proj, clip_l.text_projection)");
    expect(warnings.join('\n')).toMatch(/text_encoder_4\/ as the base \(llama\.model\.layers\.0\.self_attn\.k_proj, llama\.lm_head\)$/);
  });

  it('a module its folder does not hold is refused, naming the folder', async () => {
    const { problems } = await lora.planOf(pipeline, [omi('llama.model.layers.7.self_attn.q_proj', LL, LL, '')], OT_HEADER);
    expect(problems).toEqual([
      'lora.safetensors: module "llama.model.layers.7.self_attn.q_proj": names HiDream-I1\'s Llama 3.1 8B Instruct as OneTrainer\'s OMI-format LoRAs do (llama.), which OneTrainer loads into the pipeline\'s text_encoder_4/; that folder holds no model.layers.7.self_attn.q_proj.weight',
    ]);
  });

  it("OneTrainer's LEGACY form (lora_transformer_, lora_te1_ … lora_te4_) merges on the pipeline folder, lora_te4_ in text_encoder_4/", async () => {
    const flat = (path: string) => path.replaceAll('.', '_');
    await lora.mergeAndCheck(pipeline, [
      omi('lora_transformer_double_stream_blocks_0_block_attn1_to_q_t', hd, hd, 'transformer.double_stream_blocks.0.block.attn1.to_q_t.weight'),
      omi(`lora_te1_${flat(CLIP)}_self_attn_q_proj`, CL, CL, `text_encoder.${CLIP}.self_attn.q_proj.weight`),
      omi(`lora_te2_${flat(CLIP)}_mlp_fc1`, 4 * CG, CG, `text_encoder_2.${CLIP}.mlp.fc1.weight`),
      omi(`lora_te3_${flat(SA)}_o`, T5, T5, `text_encoder_3.${SA}.o.weight`),
      omi('lora_te4_model_layers_0_self_attn_k_proj', KV, LL, 'text_encoder_4.model.layers.0.self_attn.k_proj.weight'),
      omi('lora_te4_lm_head', VOCAB, LL, 'text_encoder_4.lm_head.weight'),
    ], [
      'transformer/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors', 'text_encoder_2/model.safetensors',
      'text_encoder_3/model.safetensors', 'text_encoder_4/model.safetensors',
    ], 'hidream-legacy.safetensors', OT_HEADER);
  });
});
