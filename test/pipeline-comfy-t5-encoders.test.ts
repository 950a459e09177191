/**
 * ComfyUI's text encoders that only one pipeline has, on that pipeline's folder: AuraFlow's
 * `pile_t5xl` (comfy/text_encoders/aura_t5.py) on its UMT5EncoderModel, HunyuanDiT's `mt5xl` and
 * `hydit_clip` (hydit.py) on its T5EncoderModel and BertModel, by the transformers keys after
 * `transformer.` (a BERT's under `bert.`, which a BertModel folder stores without), against
 * float64 truth. Elsewhere they are left out, as ComfyUI leaves keys its model lacks, and so are
 * Wan's `umt5xxl` on AuraFlow and `t5xxl` on HunyuanDiT's mT5; where model_index.json has no
 * pipeline class to say which, refused in one line.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, tensor } from './helpers/diffusion-fixtures.js';
import { comfyExtracted, onePipelineLora } from './helpers/pipeline-merge.js';

const rand = seededRandom(5151);
const json = (o: object) => JSON.stringify(o, null, 2);
const T5 = 'encoder.block.0.layer.0.SelfAttention';
const FF = 'encoder.block.0.layer.1.DenseReluDense';
const BERT = 'encoder.layer.0.attention.self';
const vae = () => buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]);
const t5Folder = () => buildSafetensors([
  tensor(rand, `${T5}.q.weight`, [10, 10], 'BF16'), tensor(rand, `${T5}.relative_attention_bias.weight`, [32, 4], 'BF16'),
  tensor(rand, `${FF}.wi_0.weight`, [20, 10], 'BF16'), tensor(rand, 'shared.weight', [30, 10], 'BF16'),
]);

/** fal/AuraFlow-v0.3: EleutherAI's pile-t5-xl as a UMT5EncoderModel. */
const auraflow = (pipelineClass = 'AuraFlowPipeline'): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    ...(pipelineClass ? { _class_name: pipelineClass } : {}), _diffusers_version: '0.30.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder: ['transformers', 'UMT5EncoderModel'], tokenizer: ['transformers', 'LlamaTokenizerFast'],
    transformer: ['diffusers', 'AuraFlowTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'joint_transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/config.json': json({
    architectures: ['UMT5EncoderModel'], d_ff: 5120, d_kv: 64, d_model: 2048, feed_forward_proj: 'gated-silu', model_type: 'umt5',
    num_heads: 32, num_layers: 24, relative_attention_num_buckets: 32, vocab_size: 32128,
  }),
  'text_encoder/model.safetensors': t5Folder(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
});

/** Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers: a Chinese CLIP's BERT, and mT5-XL as a T5EncoderModel. */
const hunyuanDit: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'HunyuanDiTPipeline', _diffusers_version: '0.29.0.dev0', feature_extractor: [null, null], safety_checker: [null, null],
    requires_safety_checker: false, scheduler: ['diffusers', 'DDPMScheduler'], text_encoder: ['transformers', 'BertModel'],
    text_encoder_2: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'BertTokenizer'], tokenizer_2: ['transformers', 'T5Tokenizer'],
    transformer: ['diffusers', 'HunyuanDiT2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'blocks.0.attn1.to_q.weight', [8, 8], 'F16')]),
  // BERT-large's sizes are CLIP-H's: it is no CLIP, whatever its numbers.
  'text_encoder/config.json': json({ architectures: ['BertModel'], hidden_size: 1024, intermediate_size: 4096, model_type: 'bert', num_attention_heads: 16, num_hidden_layers: 24, vocab_size: 47020 }),
  'text_encoder/model.safetensors': buildSafetensors([
    tensor(rand, `${BERT}.query.weight`, [12, 12], 'F16'), tensor(rand, `${BERT}.key.weight`, [12, 12], 'F16'), tensor(rand, 'embeddings.word_embeddings.weight', [20, 12], 'F16'),
  ]),
  'text_encoder_2/config.json': json({ architectures: ['T5EncoderModel'], d_ff: 5120, d_model: 2048, feed_forward_proj: 'gated-gelu', model_type: 'mt5', num_heads: 32, num_layers: 24, vocab_size: 250112 }),
  'text_encoder_2/model.safetensors': t5Folder(),
  'vae/diffusion_pytorch_model.safetensors': vae(),
};

/** Wan-AI/Wan2.1-T2V-1.3B-Diffusers: umt5-xxl as a UMT5EncoderModel too. */
const wan: Record<string, Uint8Array | string> = {
  'model_index.json': json({
    _class_name: 'WanPipeline', scheduler: ['diffusers', 'UniPCMultistepScheduler'], text_encoder: ['transformers', 'UMT5EncoderModel'],
    tokenizer: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'WanTransformer3DModel'], vae: ['diffusers', 'AutoencoderKLWan'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'blocks.0.attn1.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder/model.safetensors': t5Folder(),
};

const comfy = comfyExtracted;

const { mergeAndCheck, planOf } = onePipelineLora(rand, 0.8);

describe('ComfyUI\'s encoders of one pipeline on its folders', () => {
  it('AuraFlow: `text_encoders.pile_t5xl.` on its UMT5EncoderModel text_encoder/', async () => {
    await mergeAndCheck(auraflow(), [
      comfy(`text_encoders.pile_t5xl.transformer.${T5}.q`, 10, 10, `text_encoder.${T5}.q.weight`),
      comfy(`text_encoders.pile_t5xl.transformer.${FF}.wi_0`, 20, 10, `text_encoder.${FF}.wi_0.weight`),
    ], ['text_encoder/model.safetensors']);
  });

  it('HunyuanDiT: `text_encoders.mt5xl.` on its T5EncoderModel, `text_encoders.hydit_clip.transformer.bert.` and kohya\'s lora_te1_ on its BertModel', async () => {
    await mergeAndCheck(hunyuanDit, [
      comfy(`text_encoders.mt5xl.transformer.${T5}.q`, 10, 10, `text_encoder_2.${T5}.q.weight`),
      comfy(`text_encoders.mt5xl.transformer.${FF}.wi_0`, 20, 10, `text_encoder_2.${FF}.wi_0.weight`),
      comfy(`text_encoders.hydit_clip.transformer.bert.${BERT}.query`, 12, 12, `text_encoder.${BERT}.query.weight`),
      kohyaSpec('lora_te1_encoder_layer_0_attention_self_key', 2, 12, 12, [{ key: `text_encoder.${BERT}.key.weight` }], 1),
    ], ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors']);
  });

  it('leaves each out with a warning on a pipeline that has another encoder of that class, as ComfyUI does', async () => {
    const left = (warnings: string[]) => warnings.join('\n');
    const onWan = await planOf(wan, [comfy('transformer.blocks.0.attn1.to_q', 8, 8, ''), comfy(`text_encoders.pile_t5xl.transformer.${T5}.q`, 10, 10, '')]);
    expect(onWan.problems).toEqual([]);
    expect(left(onWan.warnings)).toMatch(/1 module left out, not merged: it names ComfyUI's pile_t5xl text encoder \(text_encoders\.pile_t5xl\.\), which the base does not hold/);
    const onAuraflow = await planOf(auraflow(), [comfy('transformer.joint_transformer_blocks.0.attn.to_q', 8, 8, ''), comfy(`text_encoders.umt5xxl.transformer.${T5}.q`, 10, 10, ''), comfy(`text_encoders.t5xxl.transformer.${T5}.q`, 10, 10, '')]);
    expect(onAuraflow.problems).toEqual([]);
    expect(left(onAuraflow.warnings)).toMatch(/1 module left out, not merged: it names ComfyUI's umt5xxl text encoder \(text_encoders\.umt5xxl\.\), which the base does not hold/);
    expect(left(onAuraflow.warnings)).toMatch(/1 module left out, not merged: it names text encoder 3 \(T5\), which the base does not hold .*\(text_encoders\.t5xxl\./);
    const onHunyuanDit = await planOf(hunyuanDit, [comfy('transformer.blocks.0.attn1.to_q', 8, 8, ''), comfy(`text_encoders.t5xxl.transformer.${T5}.q`, 10, 10, ''), comfy(`text_encoders.umt5xxl.transformer.${T5}.q`, 10, 10, '')]);
    expect(onHunyuanDit.problems).toEqual([]);
    expect(left(onHunyuanDit.warnings)).toMatch(/1 module left out, not merged: it names text encoder 3 \(T5\), which the base does not hold .*\(text_encoders\.t5xxl\./);
    expect(left(onHunyuanDit.warnings)).toMatch(/1 module left out, not merged: it names ComfyUI's umt5xxl text encoder \(text_encoders\.umt5xxl\.\), which the base does not hold/);
  });

  it('refuses `text_encoders.pile_t5xl.` in one line where model_index.json names no pipeline class to say whose UMT5 it is', async () => {
    const { problems } = await planOf(auraflow(''), [comfy(`text_encoders.pile_t5xl.transformer.${T5}.q`, 10, 10, '')]);
    expect(problems).toEqual([
      'lora.safetensors: module "text_encoders.pile_t5xl.transformer.encoder.block.0.layer.0.SelfAttention.q": names ComfyUI\'s pile_t5xl text encoder (text_encoders.pile_t5xl.), and which of the base\'s text encoders holds it cannot be told (text_encoder (UMT5EncoderModel): no pipeline\'s _class_name says which of ComfyUI\'s encoders of its class it holds): not supported',
    ]);
  });
});
