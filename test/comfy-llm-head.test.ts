/**
 * A ComfyUI LoRA's `lm_head` module of one of its LLM text encoders (`text_encoders.qwen3_4b.transformer.lm_head`,
 * Z-Image's Qwen3-4B as ComfyUI names it). ComfyUI's model of that encoder has no head
 * (comfy/text_encoders/llama.py: Llama2_ makes an lm_head only when its config's `lm_head` is set,
 * and Qwen3_4BConfig's is not; Qwen3 reads its logits from embed_tokens, which the tied model shares),
 * and comfy/lora.py's model_lora_keys_clip maps `text_encoders.<key>` only onto the model's own
 * weights, so load_lora leaves the module unloaded ("lora key not loaded"). It was written as a new,
 * untied `lm_head.weight` on Comfy-Org's qwen_3_4b.safetensors and on a tied folder, and refused on
 * an all-in-one file and a pipeline; now it is left out with a warning naming it and why, as other
 * modules ComfyUI leaves unloaded are, on each of them, while the encoder's other modules land
 * (against a float64 reference written here) and no head is written. A bundle that stores a head
 * under the very name the module gives still takes it by name.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { ulpOf } from './helpers/merge-truth.js';
import { comfyExtracted, mergePipelineAndCheck } from './helpers/pipeline-merge.js';

const rand = seededRandom(4096);
const json = (o: object) => JSON.stringify(o, null, 2);
// Qwen3-4B scaled down: hidden 2560 → 16, 8 KV heads of 128 → 8 rows, vocabulary 151936 → 30.
const [H, KV, VOCAB] = [16, 8, 30];

/** Qwen3-4B's language model as transformers (and ComfyUI's qwen_3_4b.safetensors) names it under `prefix`: no lm_head, the tied model's head is embed_tokens. */
const qwen3 = (prefix: string): FixtureTensor[] => [
  tensor(rand, `${prefix}embed_tokens.weight`, [VOCAB, H], 'BF16'),
  tensor(rand, `${prefix}layers.0.self_attn.q_proj.weight`, [H, H], 'BF16'), tensor(rand, `${prefix}layers.0.self_attn.k_proj.weight`, [KV, H], 'BF16'),
  tensor(rand, `${prefix}layers.0.self_attn.q_norm.weight`, [8], 'BF16'), tensor(rand, `${prefix}layers.0.input_layernorm.weight`, [H], 'BF16'),
  tensor(rand, `${prefix}norm.weight`, [H], 'BF16'),
];

/** What ComfyUI's naming gives: lora_up/lora_down (F16), no alpha (scale 1), for q_proj and for the head. */
const TE = 'text_encoders.qwen3_4b.transformer.';
const HEAD = `${TE}lm_head`;
const Q = `${TE}model.layers.0.self_attn.q_proj`;
const lora = buildSafetensors([
  tensor(rand, `${Q}.lora_up.weight`, [H, 2], 'F16', 0.5), tensor(rand, `${Q}.lora_down.weight`, [2, H], 'F16', 0.5),
  tensor(rand, `${HEAD}.lora_up.weight`, [VOCAB, 2], 'F16', 0.5), tensor(rand, `${HEAD}.lora_down.weight`, [2, H], 'F16', 0.5),
]);
const LEFT_OUT = `z_image_te.safetensors: 1 module left out, not merged: it names the output head (lm_head) of ComfyUI's qwen3_4b text encoder (text_encoders.qwen3_4b.), which ComfyUI's model of that encoder does not have (ComfyUI conditions on the encoder's hidden states), so ComfyUI's loader leaves the module unloaded ("lora key not loaded") (${HEAD})`;

const backends = mergeBackends({ cpu: 'default' });
const merge = (base: Record<string, Uint8Array | string>, baseName: string, adapter = lora, weight = 0.75) => mergeInMemory({
  backend: backends.cpu!, base, baseName, adapters: [{ files: { 'z_image_te.safetensors': adapter }, name: 'z_image_te.safetensors', weight }],
});

/**
 * The float64 reference: the merged file holds the base's tensors and no other; `changed` (the
 * base key of one module, its lora_up/lora_down names, its scale) is W + scale·(up·down) computed
 * here, rounded to BF16 (or within one BF16 ulp); every other tensor is byte for byte the base's.
 */
function expectMerged(base: Map<string, DecodedTensor>, merged: Map<string, DecodedTensor>, adapter: Map<string, DecodedTensor>, changed: { key: string; module: string; scale: number }) {
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  for (const [key, w] of base) {
    const got = merged.get(key)!;
    if (key !== changed.key) {
      expect(got.bytes, `${key} unchanged`).toEqual(w.bytes);
      continue;
    }
    const up = adapter.get(`${changed.module}.lora_up.weight`)!, down = adapter.get(`${changed.module}.lora_down.weight`)!;
    const [rows, cols] = w.shape, r = down.shape[0];
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += up.values[i * r + k] * down.values[k * cols + j];
        const truth = w.values[i * cols + j] + changed.scale * s;
        const v = got.values[i * cols + j];
        if (v !== roundForDType(truth, 'BF16')) expect(Math.abs(v - truth), `${key}[${i},${j}]`).toBeLessThanOrEqual(ulpOf(truth, 'BF16'));
      }
    }
  }
}

describe('a ComfyUI lm_head module of its tied Qwen3-4B text encoder, which ComfyUI leaves unloaded', () => {
  const adapterTensors = decodeSafetensors(lora).tensors;

  it('is left out, with a warning, on Comfy-Org\'s qwen_3_4b.safetensors: no untied lm_head is written, q_proj lands', async () => {
    const baseBytes = buildSafetensors(qwen3('model.'));
    const { tensors, warnings } = await merge({ 'qwen_3_4b.safetensors': baseBytes }, 'qwen_3_4b.safetensors');
    expect(warnings).toEqual([LEFT_OUT]);
    expectMerged(decodeSafetensors(baseBytes).tensors, tensors, adapterTensors, { key: 'model.layers.0.self_attn.q_proj.weight', module: Q, scale: 0.75 });
  });

  it('is left out on a ComfyUI all-in-one checkpoint (model.diffusion_model. and text_encoders.qwen3_4b.transformer.), where it was refused', async () => {
    const baseBytes = buildSafetensors([
      tensor(rand, 'model.diffusion_model.layers.0.attention.qkv.weight', [24, 8], 'BF16'), ...qwen3(`${TE}model.`),
      tensor(rand, 'first_stage_model.decoder.conv_in.weight', [8, 4, 3, 3], 'F32'),
    ]);
    const { tensors, warnings } = await merge({ 'z_image_turbo_aio.safetensors': baseBytes }, 'z_image_turbo_aio.safetensors');
    expect(warnings).toEqual([LEFT_OUT]);
    expectMerged(decodeSafetensors(baseBytes).tensors, tensors, adapterTensors, { key: `${Q}.weight`, module: Q, scale: 0.75 });
  });

  it('is left out on a tied text encoder folder (Qwen3ForCausalLM, tie_word_embeddings true), which stays tied', async () => {
    const baseBytes = buildSafetensors(qwen3('model.'));
    const config = json({ architectures: ['Qwen3ForCausalLM'], hidden_size: 2560, model_type: 'qwen3', num_hidden_layers: 36, tie_word_embeddings: true, vocab_size: 151936 });
    const { tensors, warnings } = await merge({ 'config.json': config, 'model.safetensors': baseBytes }, 'Qwen3-4B');
    expect(warnings).toEqual([LEFT_OUT]);
    expectMerged(decodeSafetensors(baseBytes).tensors, tensors, adapterTensors, { key: 'model.layers.0.self_attn.q_proj.weight', module: Q, scale: 0.75 });
  });

  it('is left out on Z-Image\'s diffusers pipeline (text_encoder/ a Qwen3Model), where it was refused', async () => {
    const teBytes = buildSafetensors(qwen3(''));
    const base: Record<string, Uint8Array | string> = {
      'model_index.json': json({
        _class_name: 'ZImagePipeline', _diffusers_version: '0.36.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
        text_encoder: ['transformers', 'Qwen3Model'], tokenizer: ['transformers', 'Qwen2Tokenizer'],
        transformer: ['diffusers', 'ZImageTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
      }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'layers.0.attention.to_q.weight', [8, 8], 'BF16')]),
      'text_encoder/config.json': json({ architectures: ['Qwen3ForCausalLM'], hidden_size: 2560, model_type: 'qwen3', tie_word_embeddings: true, vocab_size: 151936 }),
      'text_encoder/model.safetensors': teBytes,
    };
    const { warnings } = await mergePipelineAndCheck(backends.cpu!, base, [{ file: 'z_image_te.safetensors', bytes: lora, weight: 0.75, specs: [comfyExtracted(Q, H, H, 'text_encoder.layers.0.self_attn.q_proj.weight')] }],
      ['text_encoder/model.safetensors']);
    expect(warnings).toEqual([LEFT_OUT]);
  });

  it('alone in its file, nothing of it lands: refused whole, as a file of modules ComfyUI leaves unloaded is', async () => {
    const headOnly = buildSafetensors([tensor(rand, `${HEAD}.lora_up.weight`, [VOCAB, 2], 'F16'), tensor(rand, `${HEAD}.lora_down.weight`, [2, H], 'F16')]);
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { 'qwen_3_4b.safetensors': buildSafetensors(qwen3('model.')) }, baseName: 'qwen_3_4b.safetensors', adapters: [{ files: { 'head.safetensors': headOnly }, name: 'head.safetensors' }] });
    expect(refusals).toEqual([`head.safetensors: none of its 1 modules lands in this base (they name the output head (lm_head) of ComfyUI's qwen3_4b text encoder (text_encoders.qwen3_4b.), which ComfyUI's model of that encoder does not have (ComfyUI conditions on the encoder's hidden states), so ComfyUI's loader leaves the module unloaded ("lora key not loaded"))`]);
  });

  it('lands by name on a bundle that stores a head under the very name it gives', async () => {
    const baseBytes = buildSafetensors([...qwen3(`${TE}model.`), tensor(rand, `${HEAD}.weight`, [VOCAB, H], 'BF16')]);
    const headOnly = buildSafetensors([tensor(rand, `${HEAD}.lora_up.weight`, [VOCAB, 2], 'F16', 0.5), tensor(rand, `${HEAD}.lora_down.weight`, [2, H], 'F16', 0.5)]);
    const { tensors, warnings } = await merge({ 'bundle.safetensors': baseBytes }, 'bundle.safetensors', headOnly, -1);
    expect(warnings).toEqual([]);
    expectMerged(decodeSafetensors(baseBytes).tensors, tensors, decodeSafetensors(headOnly).tensors, { key: `${HEAD}.weight`, module: HEAD, scale: -1 });
  });
});
