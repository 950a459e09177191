/**
 * ComfyUI's Qwen3.5, Gemma 4 and MiniMax H3 Qwen3-VL 32B text encoders, as its "Extract and Save
 * Lora" names them (`text_encoders.<name>.transformer.` + its model's keys: comfy/lora.py
 * model_lora_keys_clip), on the bases a user holds them as: a Hub folder of the model (config.json
 * + weights, given alone or as a pipeline's text_encoder/), and Comfy-Org's single file.
 *
 * - Qwen3.5 (comfy/text_encoders/qwen35.py): one name per size, `qwen35_08b`, `qwen35_2b`,
 *   `qwen35_4b`, `qwen35_9b`, `qwen35_27b` (QWEN35_MODELS: hidden_size 1024, 2048, 2560, 4096, 5120);
 *   comfy/sd.py loads a checkpoint's `model.language_model.` as `model.`, `model.visual.` as
 *   `visual.` and `lm_head.` as `model.lm_head.`, so ComfyUI's names are transformers' below those.
 *   Only the 9B and 27B keep an untied head (their QWEN35_MODELS entries set lm_head=True), which
 *   merges into the base's `lm_head.weight`; the smaller ones' is left out with a warning.
 * - Gemma 4 (gemma4.py): one name, `gemma4`, for E2B, E4B, 31B and the "unified" 12B (hidden_size
 *   1536, 2560, 5376, 3840; Gemma4Config lm_head False). Its language model is transformers' below
 *   `model.`; its vision and audio towers ComfyUI names its own way (vision_model., audio_model.),
 *   so a module there is refused on a transformers folder.
 * - `qwen3vl_32b` (minimax.py, llama.py Qwen3VL_32BConfig: hidden_size 5120, no head); Qwen3-VL's
 *   vision tower keeps transformers' names in ComfyUI (qwen3vl.py Qwen3VLVisionModel), so it lands
 *   on a Qwen3-VL folder's `visual.` / `model.visual.`, and a Qwen3-VL file in the checkpoint's
 *   names is read as comfy/sd.py renames it (its qwen3vl_* state_dict_prefix_replace).
 * - `gpt_oss` (gpt_oss.py, Lens's GPT-OSS 20B): ComfyUI's own module tree, refused on a
 *   transformers GptOss folder.
 *
 * Each landing is checked against the merged file and float64 truth (expectMergedFile).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted as comfy } from './helpers/pipeline-merge.js';

const rand = seededRandom(248320);
const json = (o: object) => JSON.stringify(o, null, 2);
// Hidden size scaled to 12, the vocabulary (248320 / 262144) to 30: the configs say the model.
const [H, VOCAB] = [12, 30];
const QKV = 'layers.0.linear_attn.in_proj_qkv';
const Z = 'layers.0.linear_attn.in_proj_z';
const Q = 'layers.3.self_attn.q_proj';

/**
 * A Qwen3.5 language model under `lm` as transformers names it: layer 0 a Gated DeltaNet
 * (linear_attn, qwen35.py GatedDeltaNet), layer 3 full attention whose q_proj also yields the gate.
 */
const qwen35Lm = (lm: string) => [
  tensor(rand, `${lm}embed_tokens.weight`, [VOCAB, H], 'BF16'),
  tensor(rand, `${lm}${QKV}.weight`, [20, H], 'BF16'), tensor(rand, `${lm}${Z}.weight`, [8, H], 'BF16'),
  tensor(rand, `${lm}layers.0.linear_attn.in_proj_b.weight`, [2, H], 'BF16'), tensor(rand, `${lm}layers.0.linear_attn.A_log`, [2], 'F32'),
  tensor(rand, `${lm}layers.0.linear_attn.conv1d.weight`, [20, 1, 4], 'BF16'), tensor(rand, `${lm}layers.0.linear_attn.out_proj.weight`, [H, 8], 'BF16'),
  tensor(rand, `${lm}${Q}.weight`, [16, H], 'BF16'), tensor(rand, `${lm}layers.3.self_attn.k_proj.weight`, [4, H], 'BF16'),
  tensor(rand, `${lm}layers.0.input_layernorm.weight`, [H], 'BF16'), tensor(rand, `${lm}norm.weight`, [H], 'BF16'),
];
/** Qwen3.5's vision tower under `visual`, in transformers' names (Qwen3_5VisionModel; ComfyUI's Qwen35VisionModel keeps them). */
const qwen35Visual = (visual: string) => [
  tensor(rand, `${visual}blocks.0.attn.qkv.weight`, [18, 6], 'BF16'), tensor(rand, `${visual}merger.linear_fc2.weight`, [H, 24], 'BF16'),
];

/** Qwen/Qwen3.5-9B's config.json, as saved from Qwen3_5ForConditionalGeneration (untied head). */
const QWEN35_9B = {
  architectures: ['Qwen3_5ForConditionalGeneration'], model_type: 'qwen3_5', image_token_id: 248056, tie_word_embeddings: false,
  text_config: {
    model_type: 'qwen3_5_text', hidden_size: 4096, intermediate_size: 12288, num_hidden_layers: 32, num_attention_heads: 16, num_key_value_heads: 4,
    head_dim: 256, linear_num_key_heads: 16, linear_num_value_heads: 32, vocab_size: 248320, tie_word_embeddings: false,
  },
  vision_config: { model_type: 'qwen3_5', depth: 27, hidden_size: 1152, out_hidden_size: 4096 },
  transformers_version: '4.57.0.dev0',
};
/** Qwen/Qwen3.5-4B's: hidden_size 2560, its head tied to the embedding. */
const QWEN35_4B = {
  ...QWEN35_9B, tie_word_embeddings: true,
  text_config: { ...QWEN35_9B.text_config, hidden_size: 2560, intermediate_size: 9216, tie_word_embeddings: true },
  vision_config: { model_type: 'qwen3_5', depth: 24, hidden_size: 1024, out_hidden_size: 2560 },
};

/** A Hub folder of the model: its config.json and its weights. */
const hubFolder = (config: object, tensors: ReturnType<typeof tensor>[]): Record<string, Uint8Array | string> => ({ 'config.json': json(config), 'model.safetensors': buildSafetensors(tensors) });

const backends: Partial<Record<'cpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const lora = (specs: LoraSpec[]) => buildSafetensors(loraTensors(rand, specs, 'BF16'));

/** The plan's problems and warnings for one LoRA of `specs` on the folder `base` given alone. */
async function folderPlan(base: Record<string, Uint8Array | string>, specs: LoraSpec[]) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'text_encoder'), [{ files: memoryInputFileSet({ 'lora.safetensors': lora(specs) }, 'lora.safetensors'), weight: 1 }]);
  try {
    return { problems: prepared.plan.problems.map((p) => p.message), warnings: prepared.plan.warnings };
  } finally {
    await prepared.close();
  }
}

/** Merges one LoRA of `specs` at `weight` into the folder `base` given alone; checks model.safetensors against float64 truth; the plan's warnings. */
async function mergeFolderAndCheck(base: Record<string, Uint8Array | string>, specs: LoraSpec[], weight: number) {
  const bytes = lora(specs);
  const prepared = await prepareMerge(memoryInputFileSet(base, 'text_encoder'), [{ files: memoryInputFileSet({ 'lora.safetensors': bytes }, 'lora.safetensors'), weight }]);
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  const output = createBlobOutputTarget();
  await mergeModel({ prepared, output, backend: backends.cpu! });
  const warnings = prepared.plan.warnings;
  await prepared.close();
  const merged = output.files().find((f) => f.path.endsWith('model.safetensors'))!;
  const out = decodeSafetensors(new Uint8Array(await merged.blob.arrayBuffer())).tensors;
  expectMergedFile(decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors, out, truthTerms(decodeSafetensors(bytes).tensors, specs, weight));
  return warnings;
}

/** Merges one LoRA of `specs` at `weight` into the single file `baseBytes`; checks it against float64 truth; the plan's warnings. */
async function mergeFileAndCheck(file: string, baseBytes: Uint8Array, specs: LoraSpec[], weight: number) {
  const bytes = lora(specs);
  const { tensors, warnings } = await mergeInMemory({ backend: backends.cpu!, base: { [file]: baseBytes }, baseName: file, adapters: [{ files: { 'lora.safetensors': bytes }, name: 'lora.safetensors', weight }] });
  expectMergedFile(decodeSafetensors(baseBytes).tensors, tensors, truthTerms(decodeSafetensors(bytes).tensors, specs, weight));
  return warnings;
}

const leftOutHead = (name: string, head = 'model.lm_head') =>
  `lora.safetensors: 1 module left out, not merged: it names the output head (${head}) of ComfyUI's ${name} text encoder (text_encoders.${name}.), which ComfyUI's model of that encoder does not have (ComfyUI conditions on the encoder's hidden states), so ComfyUI's loader leaves the module unloaded ("lora key not loaded") (text_encoders.${name}.transformer.${head})`;

describe('Qwen3.5 (`qwen35_*`)', () => {
  it('Qwen/Qwen3.5-9B (Qwen3_5ForConditionalGeneration): its language model, vision tower and untied head each merge where transformers stores them', async () => {
    const base = hubFolder(QWEN35_9B, [...qwen35Lm('model.language_model.'), ...qwen35Visual('model.visual.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')]);
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.qwen35_9b.transformer.model.${QKV}`, 20, H, `model.language_model.${QKV}.weight`),
      comfy(`text_encoders.qwen35_9b.transformer.model.${Z}`, 8, H, `model.language_model.${Z}.weight`),
      comfy(`text_encoders.qwen35_9b.transformer.model.${Q}`, 16, H, `model.language_model.${Q}.weight`),
      comfy('text_encoders.qwen35_9b.transformer.visual.blocks.0.attn.qkv', 18, 6, 'model.visual.blocks.0.attn.qkv.weight'),
      comfy('text_encoders.qwen35_9b.transformer.model.lm_head', VOCAB, H, 'lm_head.weight'),
    ], 0.7);
    expect(warnings).toEqual([]);
  });

  it('Qwen/Qwen3.5-4B: `qwen35_4b` lands; its tied head, and the other sizes\' modules, are left out with a warning each', async () => {
    const base = hubFolder(QWEN35_4B, [...qwen35Lm('model.language_model.'), ...qwen35Visual('model.visual.')]);
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.qwen35_4b.transformer.model.${QKV}`, 20, H, `model.language_model.${QKV}.weight`),
      comfy('text_encoders.qwen35_4b.transformer.visual.merger.linear_fc2', H, 24, 'model.visual.merger.linear_fc2.weight'),
      comfy('text_encoders.qwen35_4b.transformer.model.lm_head', VOCAB, H, ''),
      comfy(`text_encoders.qwen35_2b.transformer.model.${QKV}`, 20, H, ''),
      comfy(`text_encoders.qwen35_9b.transformer.model.${Q}`, 16, H, ''),
    ], -0.5);
    const held = (name: string, path: string) =>
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's ${name} text encoder (text_encoders.${name}.), which the base does not hold (it holds text_encoder (Qwen3_5ForConditionalGeneration)) (text_encoders.${name}.transformer.model.${path})`;
    expect(warnings).toEqual([leftOutHead('qwen35_4b'), held('qwen35_2b', QKV), held('qwen35_9b', Q)]);
  });

  it('Qwen/Qwen3.5-0.8B and -2B (hidden_size 1024, 2048): `qwen35_08b` and `qwen35_2b` land on their own; their tied heads are left out', async () => {
    for (const [name, hidden] of [['qwen35_08b', 1024], ['qwen35_2b', 2048]] as const) {
      const base = hubFolder({ ...QWEN35_4B, text_config: { ...QWEN35_4B.text_config, hidden_size: hidden } }, qwen35Lm('model.language_model.'));
      const warnings = await mergeFolderAndCheck(base, [
        comfy(`text_encoders.${name}.transformer.model.${QKV}`, 20, H, `model.language_model.${QKV}.weight`),
        comfy(`text_encoders.${name}.transformer.model.lm_head`, VOCAB, H, ''),
      ], 0.3);
      expect(warnings).toEqual([leftOutHead(name)]);
    }
  });

  it('each other Qwen3.5 class stores the language model (and the vision tower) where transformers names it: Qwen3_5TextModel, Qwen3_5Model', async () => {
    for (const [cls, lm, visual] of [['Qwen3_5TextModel', '', undefined], ['Qwen3_5TextModel', 'model.', undefined], ['Qwen3_5Model', 'language_model.', 'visual.']] as const) {
      const config = { ...QWEN35_4B, architectures: [cls] };
      const specs = [comfy(`text_encoders.qwen35_4b.transformer.model.${Q}`, 16, H, `${lm}${Q}.weight`)];
      if (visual) specs.push(comfy('text_encoders.qwen35_4b.transformer.visual.blocks.0.attn.qkv', 18, 6, `${visual}blocks.0.attn.qkv.weight`));
      const base = hubFolder(config, [...qwen35Lm(lm), ...(visual ? qwen35Visual(visual) : [])]);
      expect(await mergeFolderAndCheck(base, specs, 0.75)).toEqual([]);
      // A language model alone holds no vision tower: refused by name, not looked up by its bare name.
      if (!visual) {
        expect((await folderPlan(base, [comfy('text_encoders.qwen35_4b.transformer.visual.blocks.0.attn.qkv', 18, 6, '')])).problems).toEqual([
          `lora.safetensors: module "text_encoders.qwen35_4b.transformer.visual.blocks.0.attn.qkv": names ComfyUI's qwen35_4b text encoder (text_encoders.qwen35_4b.), but text_encoder (${cls}) does not hold ComfyUI's visual. (a ${cls} holds only its model.): not supported`,
        ]);
      }
    }
  });

  it('Qwen3_5ForCausalLM (the language model alone, under `model.`): lands there; the vision tower it lacks, and ComfyUI\'s MTP head, are refused by name', async () => {
    const config = { ...QWEN35_9B.text_config, architectures: ['Qwen3_5ForCausalLM'], hidden_size: 5120 };
    const base = hubFolder(config, [...qwen35Lm('model.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')]);
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.qwen35_27b.transformer.model.${Q}`, 16, H, `model.${Q}.weight`),
      comfy('text_encoders.qwen35_27b.transformer.model.lm_head', VOCAB, H, 'lm_head.weight'),
    ], 1);
    expect(warnings).toEqual([]);
    const { problems } = await folderPlan(base, [
      comfy('text_encoders.qwen35_27b.transformer.visual.blocks.0.attn.qkv', 18, 6, ''), comfy('text_encoders.qwen35_27b.transformer.mtp.fc', H, 2 * H, ''),
    ]);
    const refused = (part: string, path: string) =>
      `lora.safetensors: module "text_encoders.qwen35_27b.transformer.${path}": names ComfyUI's qwen35_27b text encoder (text_encoders.qwen35_27b.), but text_encoder (Qwen3_5ForCausalLM) does not hold ComfyUI's ${part}. (a Qwen3_5ForCausalLM holds only its model.): not supported`;
    expect(problems).toEqual([refused('visual', 'visual.blocks.0.attn.qkv'), refused('mtp', 'mtp.fc')]);
  });

  it('the 9B\'s and 27B\'s head is refused, in one line, on a folder that stores no lm_head.weight (not written from the embedding, which ComfyUI never reads for it)', async () => {
    const causal27b = { ...QWEN35_9B.text_config, architectures: ['Qwen3_5ForCausalLM'], hidden_size: 5120 };
    for (const [name, config, lm] of [['qwen35_9b', QWEN35_9B, 'model.language_model.'], ['qwen35_27b', causal27b, 'model.']] as const) {
      const base = hubFolder(config, qwen35Lm(lm));
      const { problems } = await folderPlan(base, [comfy(`text_encoders.${name}.transformer.model.lm_head`, VOCAB, H, '')]);
      expect(problems).toEqual([
        `lora.safetensors: module "text_encoders.${name}.transformer.model.lm_head": names the output head (model.lm_head) of ComfyUI's ${name} text encoder (text_encoders.${name}.), which ComfyUI's model has and patches (loaded from the checkpoint's lm_head.weight), but the base stores no head for it (lm_head.weight, or text_encoders.${name}.transformer.model.lm_head.weight as ComfyUI saves it): merge into the encoder's checkpoint with its head`,
      ]);
    }
  });

  it('Comfy-Org\'s Qwen3.5 9B file, in the checkpoint\'s names ComfyUI renames on loading: each module lands on the key ComfyUI loads it from', async () => {
    const baseBytes = buildSafetensors([
      ...qwen35Lm('model.language_model.'), ...qwen35Visual('model.visual.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16'), tensor(rand, 'mtp.fc.weight', [H, 2 * H], 'BF16'),
    ]);
    const warnings = await mergeFileAndCheck('qwen_3.5_9b.safetensors', baseBytes, [
      comfy(`text_encoders.qwen35_9b.transformer.model.${QKV}`, 20, H, `model.language_model.${QKV}.weight`),
      comfy('text_encoders.qwen35_9b.transformer.visual.blocks.0.attn.qkv', 18, 6, 'model.visual.blocks.0.attn.qkv.weight'),
      comfy('text_encoders.qwen35_9b.transformer.model.lm_head', VOCAB, H, 'lm_head.weight'),
      comfy('text_encoders.qwen35_9b.transformer.mtp.fc', H, 2 * H, 'mtp.fc.weight'),
      comfy('text_encoders.qwen35_4b.transformer.model.lm_head', VOCAB, H, ''),
    ], 0.5);
    expect(warnings).toEqual([leftOutHead('qwen35_4b')]);
  });
});

const GQ = 'layers.0.self_attn.q_proj';
const GATE = 'layers.0.per_layer_input_gate';
/** A Gemma 4 language model under `lm` as transformers (and ComfyUI's Gemma4Transformer) name it, with its per-layer inputs (E2B, E4B). */
const gemma4Lm = (lm: string) => [
  tensor(rand, `${lm}embed_tokens.weight`, [VOCAB, H], 'BF16'), tensor(rand, `${lm}embed_tokens_per_layer.weight`, [VOCAB, 8], 'BF16'),
  tensor(rand, `${lm}per_layer_model_projection.weight`, [8, H], 'BF16'),
  tensor(rand, `${lm}${GQ}.weight`, [H, H], 'BF16'), tensor(rand, `${lm}layers.0.self_attn.k_proj.weight`, [4, H], 'BF16'),
  tensor(rand, `${lm}${GATE}.weight`, [4, H], 'BF16'), tensor(rand, `${lm}layers.0.per_layer_projection.weight`, [H, 4], 'BF16'),
  tensor(rand, `${lm}layers.0.mlp.down_proj.weight`, [H, 20], 'BF16'), tensor(rand, `${lm}layers.0.post_feedforward_layernorm.weight`, [H], 'BF16'),
  tensor(rand, `${lm}norm.weight`, [H], 'BF16'),
];

/** google/gemma-4-E4B-it's config.json (Gemma4ForConditionalGeneration: text, vision and audio). */
const GEMMA4_E4B = {
  architectures: ['Gemma4ForConditionalGeneration'], model_type: 'gemma4', tie_word_embeddings: true, image_token_id: 258880, audio_token_id: 258881,
  text_config: {
    model_type: 'gemma4_text', hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 42, num_attention_heads: 8, num_key_value_heads: 2,
    head_dim: 256, global_head_dim: 512, hidden_size_per_layer_input: 256, num_kv_shared_layers: 18, vocab_size: 262144, final_logit_softcapping: 30.0,
  },
  vision_config: { model_type: 'gemma4_vision', hidden_size: 768, num_hidden_layers: 16, patch_size: 16 },
  audio_config: { model_type: 'gemma4_audio', hidden_size: 1024, num_hidden_layers: 12 },
};

/** google/gemma-4-12B-it's (LTX-2.5's text encoder): the encoder-free "unified" Gemma 4. */
const GEMMA4_12B = {
  architectures: ['Gemma4UnifiedForConditionalGeneration'], model_type: 'gemma4_unified', tie_word_embeddings: true,
  text_config: {
    model_type: 'gemma4_unified_text', hidden_size: 3840, intermediate_size: 15360, num_hidden_layers: 48, num_attention_heads: 16, num_key_value_heads: 8,
    num_global_key_value_heads: 1, attention_k_eq_v: true, head_dim: 256, global_head_dim: 512, vocab_size: 262144,
  },
  vision_config: { model_type: 'gemma4_unified_vision', mm_embed_dim: 3840, patch_size: 16, pooling_kernel_size: 3 },
  audio_config: { model_type: 'gemma4_unified_audio', audio_embed_dim: 640 },
};

describe('Gemma 4 (`gemma4`: E2B, E4B, 12B, 31B under one name)', () => {
  it('google/gemma-4-E4B-it (Gemma4ForConditionalGeneration): its language model merges under `model.language_model.`, per-layer input gate included; its head is left out with a warning', async () => {
    const base = hubFolder(GEMMA4_E4B, [
      ...gemma4Lm('model.language_model.'), tensor(rand, 'model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight', [6, 6], 'BF16'),
      tensor(rand, 'model.embed_vision.embedding_projection.weight', [H, 6], 'BF16'),
    ]);
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.gemma4.transformer.model.${GQ}`, H, H, `model.language_model.${GQ}.weight`),
      comfy(`text_encoders.gemma4.transformer.model.${GATE}`, 4, H, `model.language_model.${GATE}.weight`),
      comfy('text_encoders.gemma4.transformer.model.lm_head', VOCAB, H, ''),
    ], 0.9);
    expect(warnings).toEqual([leftOutHead('gemma4')]);
  });

  it('google/gemma-4-12B-it (Gemma4UnifiedForConditionalGeneration, hidden_size 3840) is ComfyUI\'s gemma4 too; a Gemma 3 12B module is left out there', async () => {
    const base = hubFolder(GEMMA4_12B, gemma4Lm('model.language_model.'));
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.gemma4.transformer.model.${GQ}`, H, H, `model.language_model.${GQ}.weight`),
      comfy(`text_encoders.gemma3_12b.transformer.model.${GQ}`, H, H, ''),
    ], 1.1);
    expect(warnings).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's gemma3_12b text encoder (text_encoders.gemma3_12b.), which the base does not hold (it holds text_encoder (Gemma4UnifiedForConditionalGeneration)) (text_encoders.gemma3_12b.transformer.model.${GQ})`,
    ]);
  });

  it('each other Gemma 4 class stores the language model where transformers names it: Gemma4TextModel, Gemma4ForCausalLM, Gemma4Model and their Unified twins', async () => {
    const cases = [['Gemma4TextModel', ''], ['Gemma4TextModel', 'model.'], ['Gemma4ForCausalLM', 'model.'], ['Gemma4Model', 'language_model.'],
      ['Gemma4UnifiedTextModel', ''], ['Gemma4UnifiedForCausalLM', 'model.'], ['Gemma4UnifiedModel', 'language_model.']] as const;
    for (const [cls, lm] of cases) {
      const config = { ...(cls.includes('Unified') ? GEMMA4_12B : GEMMA4_E4B), architectures: [cls] };
      const specs = [comfy(`text_encoders.gemma4.transformer.model.${GQ}`, H, H, `${lm}${GQ}.weight`)];
      const base = hubFolder(config, gemma4Lm(lm));
      expect(await mergeFolderAndCheck(base, specs, 0.5), cls).toEqual([]);
      expect((await folderPlan(base, [comfy('text_encoders.gemma4.transformer.vision_model.encoder.layers.0.self_attn.q_proj.linear', 6, 6, '')])).problems).toEqual([
        `lora.safetensors: module "text_encoders.gemma4.transformer.vision_model.encoder.layers.0.self_attn.q_proj.linear": names ComfyUI's gemma4 text encoder (text_encoders.gemma4.), but text_encoder (${cls}) does not hold ComfyUI's vision_model. (a ${cls} holds only its model.): not supported`,
      ]);
    }
  });

  it('refuses in one line Gemma 4\'s vision tower, which ComfyUI names its own way (vision_model.), on a transformers folder', async () => {
    const base = hubFolder(GEMMA4_E4B, [...gemma4Lm('model.language_model.'), tensor(rand, 'model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight', [6, 6], 'BF16')]);
    const { problems } = await folderPlan(base, [comfy('text_encoders.gemma4.transformer.vision_model.encoder.layers.0.self_attn.q_proj.linear', 6, 6, '')]);
    expect(problems).toEqual([
      'lora.safetensors: module "text_encoders.gemma4.transformer.vision_model.encoder.layers.0.self_attn.q_proj.linear": names ComfyUI\'s gemma4 text encoder (text_encoders.gemma4.), but text_encoder (Gemma4ForConditionalGeneration) does not hold ComfyUI\'s vision_model. (a Gemma4ForConditionalGeneration holds only its model.): not supported',
    ]);
  });

  it('Comfy-Org\'s Gemma 4 file, in ComfyUI\'s own names: its language model and vision tower land by name; the head is left out', async () => {
    const baseBytes = buildSafetensors([...gemma4Lm('model.'), tensor(rand, 'vision_model.encoder.layers.0.self_attn.q_proj.linear.weight', [6, 6], 'BF16')]);
    const warnings = await mergeFileAndCheck('gemma_4_e4b_it.safetensors', baseBytes, [
      comfy(`text_encoders.gemma4.transformer.model.${GATE}`, 4, H, `model.${GATE}.weight`),
      comfy('text_encoders.gemma4.transformer.vision_model.encoder.layers.0.self_attn.q_proj.linear', 6, 6, 'vision_model.encoder.layers.0.self_attn.q_proj.linear.weight'),
      comfy('text_encoders.gemma4.transformer.model.lm_head', VOCAB, H, ''),
    ], 0.6);
    expect(warnings).toEqual([leftOutHead('gemma4')]);
  });
});

/** A Qwen3-VL language model under `lm` (layer 0's q_proj) and its DeepStack vision tower under `visual`, as transformers names them. */
const qwen3vl = (lm: string, visual: string) => [
  tensor(rand, `${lm}embed_tokens.weight`, [VOCAB, H], 'BF16'), tensor(rand, `${lm}${GQ}.weight`, [H, H], 'BF16'), tensor(rand, `${lm}norm.weight`, [H], 'BF16'),
  tensor(rand, `${visual}blocks.0.attn.qkv.weight`, [18, 6], 'BF16'), tensor(rand, `${visual}deepstack_merger_list.0.linear_fc1.weight`, [24, 24], 'BF16'),
];

describe('Qwen3-VL 32B (`qwen3vl_32b`, MiniMax H3), and Qwen3-VL files in the checkpoint\'s names', () => {
  it('Qwen/Qwen3-VL-32B-Instruct (Qwen3VLForConditionalGeneration, hidden_size 5120): `qwen3vl_32b` and its vision tower land; its head (ComfyUI\'s has none) and `qwen3vl_8b` are left out', async () => {
    const config = {
      architectures: ['Qwen3VLForConditionalGeneration'], model_type: 'qwen3_vl', tie_word_embeddings: false,
      text_config: { model_type: 'qwen3_vl_text', hidden_size: 5120, intermediate_size: 25600, num_hidden_layers: 64, num_attention_heads: 64, num_key_value_heads: 8 },
      vision_config: { model_type: 'qwen3_vl', depth: 27, hidden_size: 1152, out_hidden_size: 5120, deepstack_visual_indexes: [8, 16, 24] },
    };
    const base = hubFolder(config, [...qwen3vl('model.language_model.', 'model.visual.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')]);
    const warnings = await mergeFolderAndCheck(base, [
      comfy(`text_encoders.qwen3vl_32b.transformer.model.${GQ}`, H, H, `model.language_model.${GQ}.weight`),
      // ComfyUI's Qwen3-VL vision tower keeps transformers' names (qwen3vl.py Qwen3VLVisionModel), DeepStack mergers included.
      comfy('text_encoders.qwen3vl_32b.transformer.visual.deepstack_merger_list.0.linear_fc1', 24, 24, 'model.visual.deepstack_merger_list.0.linear_fc1.weight'),
      comfy('text_encoders.qwen3vl_32b.transformer.model.lm_head', VOCAB, H, ''),
      comfy(`text_encoders.qwen3vl_8b.transformer.model.${GQ}`, H, H, ''),
    ], 0.8);
    expect(warnings).toEqual([
      leftOutHead('qwen3vl_32b'),
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's qwen3vl_8b text encoder (text_encoders.qwen3vl_8b.), which the base does not hold (it holds text_encoder (Qwen3VLForConditionalGeneration)) (text_encoders.qwen3vl_8b.transformer.model.${GQ})`,
    ]);
  });

  it('a Qwen3VLModel folder (Qwen3-VL 8B) keeps the language model under `language_model.` and the vision tower under `visual.`', async () => {
    const config = { architectures: ['Qwen3VLModel'], model_type: 'qwen3_vl', text_config: { model_type: 'qwen3_vl_text', hidden_size: 4096, num_hidden_layers: 36 } };
    expect(await mergeFolderAndCheck(hubFolder(config, qwen3vl('language_model.', 'visual.')), [
      comfy(`text_encoders.qwen3vl_8b.transformer.model.${GQ}`, H, H, `language_model.${GQ}.weight`),
      comfy('text_encoders.qwen3vl_8b.transformer.visual.blocks.0.attn.qkv', 18, 6, 'visual.blocks.0.attn.qkv.weight'),
    ], 0.65)).toEqual([]);
  });

  it('MiniMax H3\'s converted file (ComfyUI\'s own `model.` and `visual.`) takes `qwen3vl_32b` by name; a Qwen3-VL 8B file in transformers\' names takes `qwen3vl_8b` where ComfyUI loads it from', async () => {
    const h3 = buildSafetensors(qwen3vl('model.', 'visual.'));
    expect(await mergeFileAndCheck('minimax_h3_qwen3vl_32b.safetensors', h3, [
      comfy(`text_encoders.qwen3vl_32b.transformer.model.${GQ}`, H, H, `model.${GQ}.weight`),
      comfy('text_encoders.qwen3vl_32b.transformer.visual.deepstack_merger_list.0.linear_fc1', 24, 24, 'visual.deepstack_merger_list.0.linear_fc1.weight'),
    ], 1)).toEqual([]);
    const vl8b = buildSafetensors([...qwen3vl('model.language_model.', 'model.visual.'), tensor(rand, 'lm_head.weight', [VOCAB, H], 'BF16')]);
    expect(await mergeFileAndCheck('qwen3vl_8b.safetensors', vl8b, [
      comfy(`text_encoders.qwen3vl_8b.transformer.model.${GQ}`, H, H, `model.language_model.${GQ}.weight`),
      comfy('text_encoders.qwen3vl_8b.transformer.visual.blocks.0.attn.qkv', 18, 6, 'model.visual.blocks.0.attn.qkv.weight'),
      comfy('text_encoders.qwen3vl_8b.transformer.model.lm_head', VOCAB, H, 'lm_head.weight'),
    ], -0.4)).toEqual([]);
  });
});

describe('Lens\'s GPT-OSS 20B (`gpt_oss`)', () => {
  it('is refused in one line on a transformers GptOssForCausalLM folder, whose names ComfyUI\'s own module tree does not share', async () => {
    const config = { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 2880, num_hidden_layers: 24, num_local_experts: 32, vocab_size: 201088 };
    const base = hubFolder(config, [tensor(rand, `model.${GQ}.weight`, [H, H], 'BF16'), tensor(rand, 'model.layers.0.mlp.experts.gate_up_proj', [2, H, 16], 'BF16')]);
    const { problems } = await folderPlan(base, [comfy(`text_encoders.gpt_oss.transformer.${GQ}`, H, H, '')]);
    expect(problems).toEqual([
      `lora.safetensors: module "text_encoders.gpt_oss.transformer.${GQ}": names ComfyUI's gpt_oss text encoder (text_encoders.gpt_oss.), but text_encoder (GptOssForCausalLM) holds it in transformers' names, and ComfyUI's gpt_oss.py keeps the decoder directly under transformer. (layers., embed_tokens, norm) and its experts as fused MoEExperts weights, which are not mapped onto a transformers GptOss folder here: merge into ComfyUI's own gpt_oss text encoder file: not supported`,
    ]);
  });
});
