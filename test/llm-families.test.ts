/**
 * The LLM and VLM checkpoints people download from the Hugging Face Hub today, one family per
 * case, each as its repository holds it (config.json's `architectures`, `model_type`,
 * `text_config`/`vision_config`, `tie_word_embeddings`; the real key names, sizes scaled down;
 * bf16 shards with model.safetensors.index.json), with a PEFT LoRA named as PEFT saves it for the
 * class it was trained on (`base_model.model.` + that class's module names, in the VLM naming of
 * transformers before and after 4.52 where the class was renamed). Each merged tensor is compared
 * with float64 truth written out here: W + α/r·B·A for a Linear, and for a fused 3-D expert
 * parameter (PEFT `target_parameters`) each expert's (B_e·A_e)ᵀ, as PEFT before 0.19 forms it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom, type DecodedTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(6311);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

/** A LoRA on a Linear: its path in the class trained on, the checkpoint key it lands on, and the Linear's (out, in) where that key is not its weight. */
type Linear = [path: string, baseKey: string, shape?: [number, number]];
/** PEFT `target_parameters` on a fused (E, d1, d2) parameter: the wrapped module's path, the parameter's name, and its checkpoint key. */
type Param = [path: string, parameter: string, baseKey: string];

interface Family {
  title: string;
  config: object;
  base: [key: string, shape: number[]][];
  linears?: Linear[];
  params?: Param[];
  /** Refused, with these plan problems; else merged. */
  refused?: string[];
  /** The shards' `__metadata__` (mlx's converters write `format: mlx`). */
  metadata?: Record<string, string>;
}

const r = 2;
const alpha = 4;

// --- meta-llama/Llama-4-Scout-17B-16E-Instruct: its module tree is its checkpoint's (no VLM rename).
const llama4Config = {
  architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', tie_word_embeddings: false,
  text_config: { model_type: 'llama4_text', hidden_size: 8, intermediate_size: 6, intermediate_size_mlp: 12, num_local_experts: 4, vocab_size: 32, tie_word_embeddings: false },
  vision_config: { model_type: 'llama4_vision_model', hidden_size: 8 },
};
const llama4: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [32, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.0.self_attn.k_proj.weight', [4, 8]],
  ['language_model.model.layers.0.input_layernorm.weight', [8]],
  ['language_model.model.layers.0.feed_forward.router.weight', [4, 8]],
  // Llama4TextExperts: gate_up_proj (E, hidden, 2·inter), down_proj (E, inter, hidden).
  ['language_model.model.layers.0.feed_forward.experts.gate_up_proj', [4, 8, 12]],
  ['language_model.model.layers.0.feed_forward.experts.down_proj', [4, 6, 8]],
  ['language_model.model.layers.0.feed_forward.shared_expert.gate_proj.weight', [6, 8]],
  ['language_model.model.layers.0.feed_forward.shared_expert.down_proj.weight', [8, 6]],
  ['language_model.model.norm.weight', [8]],
  ['language_model.lm_head.weight', [32, 8]],
  ['vision_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['vision_model.model.layers.0.mlp.fc1.weight', [16, 8]],
  ['multi_modal_projector.linear_1.weight', [8, 8]],
];

// --- mistralai/Mistral-Small-3.1-24B-Instruct-2503 and 3.2: saved in the names before transformers' VLM refactor.
const mistral3Config = { architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', text_config: { model_type: 'mistral', hidden_size: 8 }, vision_config: { model_type: 'pixtral', hidden_size: 8 } };
const mistral3: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [32, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.0.mlp.gate_proj.weight', [16, 8]],
  ['language_model.model.norm.weight', [8]],
  ['language_model.lm_head.weight', [32, 8]],
  ['vision_tower.patch_conv.weight', [8, 3, 2, 2]],
  ['vision_tower.ln_pre.weight', [8]],
  ['vision_tower.transformer.layers.0.attention.q_proj.weight', [8, 8]],
  ['vision_tower.transformer.layers.0.feed_forward.gate_proj.weight', [16, 8]],
  ['multi_modal_projector.norm.weight', [8]],
  ['multi_modal_projector.patch_merger.merging_layer.weight', [8, 32]],
  ['multi_modal_projector.linear_1.weight', [8, 8]],
];
/** transformers' Mistral 3 / LLaVA mapping, old name → new. */
const llavaNew = (key: string) => key.replace(/^language_model\.model/, 'model.language_model').replace(/^language_model\.lm_head/, 'lm_head').replace(/^(vision_tower|multi_modal_projector)/, 'model.$1');
const mistral3Modules: Linear[] = [
  ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
  ['vision_tower.transformer.layers.0.attention.q_proj', 'vision_tower.transformer.layers.0.attention.q_proj.weight'],
  ['multi_modal_projector.patch_merger.merging_layer', 'multi_modal_projector.patch_merger.merging_layer.weight'],
  ['language_model.lm_head', 'language_model.lm_head.weight'],
];

// --- meta-llama/Llama-3.2-11B-Vision-Instruct (cross-attention layers, gated).
const mllamaConfig = { architectures: ['MllamaForConditionalGeneration'], model_type: 'mllama', text_config: { model_type: 'mllama_text_model', hidden_size: 8, cross_attention_layers: [1] }, vision_config: { model_type: 'mllama_vision_model' } };
const mllama: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [40, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.1.cross_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.1.cross_attn.q_norm.weight', [2]],
  ['language_model.model.layers.1.cross_attn_attn_gate', [1]],
  ['language_model.model.layers.1.cross_attn_mlp_gate', [1]],
  ['language_model.model.norm.weight', [8]],
  ['language_model.lm_head.weight', [32, 8]],
  ['vision_model.patch_embedding.weight', [8, 3, 2, 2]],
  ['vision_model.transformer.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['vision_model.global_transformer.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['vision_model.global_transformer.layers.0.gate_attn', [1]],
  ['multi_modal_projector.weight', [8, 8]],
  ['multi_modal_projector.bias', [8]],
];
const mllamaModules: Linear[] = [
  ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
  ['language_model.model.layers.1.cross_attn.q_proj', 'language_model.model.layers.1.cross_attn.q_proj.weight'],
  ['vision_model.transformer.layers.0.self_attn.q_proj', 'vision_model.transformer.layers.0.self_attn.q_proj.weight'],
  ['vision_model.global_transformer.layers.0.self_attn.q_proj', 'vision_model.global_transformer.layers.0.self_attn.q_proj.weight'],
  ['multi_modal_projector', 'multi_modal_projector.weight'],
];
/** Mllama's mapping, old name → new. */
const mllamaNew = (key: string) => key.replace(/^language_model\.model/, 'model.language_model').replace(/^(vision_model|multi_modal_projector)/, 'model.$1');

// --- OpenGVLab/InternVL3-8B (remote code) and its transformers conversion InternVL3-8B-hf.
const internvlOriginal: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [32, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.bias', [8]],
  ['language_model.lm_head.weight', [32, 8]],
  ['vision_model.embeddings.patch_embedding.weight', [8, 3, 2, 2]],
  ['vision_model.encoder.layers.0.attn.qkv.weight', [24, 8]],
  ['vision_model.encoder.layers.0.attn.proj.weight', [8, 8]],
  ['vision_model.encoder.layers.0.ls1', [8]],
  ['mlp1.0.weight', [32]],
  ['mlp1.1.weight', [8, 32]],
  ['mlp1.3.weight', [8, 8]],
];
const internvlHf: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [32, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]],
  ['language_model.model.layers.0.self_attn.q_proj.bias', [8]],
  ['language_model.lm_head.weight', [32, 8]],
  ['vision_tower.encoder.layer.0.attention.q_proj.weight', [8, 8]],
  ['vision_tower.encoder.layer.0.attention.projection_layer.weight', [8, 8]],
  ['multi_modal_projector.layer_norm.weight', [32]],
  ['multi_modal_projector.linear_1.weight', [8, 32]],
];

// --- Hybrid and MoE language models.
const qwen3Next: [string, number[]][] = [
  ['model.embed_tokens.weight', [32, 8]],
  ['model.layers.0.linear_attn.in_proj_qkvz.weight', [24, 8]],
  ['model.layers.0.linear_attn.in_proj_ba.weight', [4, 8]],
  ['model.layers.0.linear_attn.conv1d.weight', [16, 1, 4]],
  ['model.layers.0.linear_attn.A_log', [2]],
  ['model.layers.0.linear_attn.dt_bias', [2]],
  ['model.layers.0.linear_attn.norm.weight', [4]],
  ['model.layers.0.linear_attn.out_proj.weight', [8, 8]],
  ['model.layers.0.mlp.gate.weight', [2, 8]],
  ['model.layers.0.mlp.experts.0.gate_proj.weight', [6, 8]],
  ['model.layers.0.mlp.experts.0.up_proj.weight', [6, 8]],
  ['model.layers.0.mlp.experts.0.down_proj.weight', [8, 6]],
  ['model.layers.0.mlp.experts.1.gate_proj.weight', [6, 8]],
  ['model.layers.0.mlp.experts.1.up_proj.weight', [6, 8]],
  ['model.layers.0.mlp.experts.1.down_proj.weight', [8, 6]],
  ['model.layers.0.mlp.shared_expert.gate_proj.weight', [6, 8]],
  ['model.layers.0.mlp.shared_expert_gate.weight', [1, 8]],
  ['model.layers.1.self_attn.q_proj.weight', [16, 8]],
  ['model.layers.1.self_attn.q_norm.weight', [4]],
  ['model.norm.weight', [8]],
  ['lm_head.weight', [32, 8]],
  ['mtp.layers.0.self_attn.q_proj.weight', [16, 8]],
  ['mtp.fc.weight', [8, 16]],
];
const granite4: [string, number[]][] = [
  ['model.embed_tokens.weight', [32, 8]],
  ['model.layers.0.mamba.in_proj.weight', [40, 8]],
  ['model.layers.0.mamba.conv1d.weight', [24, 1, 4]],
  ['model.layers.0.mamba.conv1d.bias', [24]],
  ['model.layers.0.mamba.A_log', [2]],
  ['model.layers.0.mamba.D', [2]],
  ['model.layers.0.mamba.dt_bias', [2]],
  ['model.layers.0.mamba.norm.weight', [16]],
  ['model.layers.0.mamba.out_proj.weight', [8, 16]],
  // GraniteMoeHybridParallelExperts: a (E, out, in) parameter, not a Linear.
  ['model.layers.0.block_sparse_moe.input_linear.weight', [4, 12, 8]],
  ['model.layers.0.block_sparse_moe.output_linear.weight', [4, 8, 6]],
  ['model.layers.0.block_sparse_moe.router.layer.weight', [4, 8]],
  ['model.layers.0.shared_mlp.input_linear.weight', [32, 8]],
  ['model.layers.0.shared_mlp.output_linear.weight', [8, 16]],
  ['model.layers.1.self_attn.q_proj.weight', [8, 8]],
  ['model.layers.1.input_layernorm.weight', [8]],
  ['model.norm.weight', [8]],
];
const granite4Config = { architectures: ['GraniteMoeHybridForCausalLM'], model_type: 'granitemoehybrid', hidden_size: 8, num_local_experts: 4, layer_types: ['mamba', 'attention'], tie_word_embeddings: true };

// --- Qwen/Qwen3-VL-2B-Instruct, saved in the refactored names (model.language_model., model.visual.); its head tied (no lm_head.weight).
const qwen3vl: [string, number[]][] = [
  ['model.language_model.embed_tokens.weight', [32, 8]],
  ['model.language_model.layers.0.self_attn.q_proj.weight', [16, 8]],
  ['model.language_model.layers.0.self_attn.q_norm.weight', [4]],
  ['model.language_model.layers.0.mlp.down_proj.weight', [8, 12]],
  ['model.language_model.norm.weight', [8]],
  ['model.visual.patch_embed.proj.weight', [8, 3, 2, 2, 2]],
  ['model.visual.patch_embed.proj.bias', [8]],
  ['model.visual.pos_embed.weight', [16, 8]],
  ['model.visual.blocks.0.attn.qkv.weight', [24, 8]],
  ['model.visual.blocks.0.attn.qkv.bias', [24]],
  ['model.visual.blocks.0.mlp.linear_fc1.weight', [16, 8]],
  ['model.visual.merger.norm.weight', [8]],
  ['model.visual.merger.linear_fc1.weight', [32, 32]],
  ['model.visual.deepstack_merger_list.0.norm.weight', [32]],
  ['model.visual.deepstack_merger_list.0.linear_fc2.weight', [8, 32]],
];
/** mlx-vlm's qwen3_vl sanitize(): `model.language_model` → `language_model.model`, `model.visual` → `vision_tower`, `lm_head` → `language_model.lm_head`. */
const mlxVlmQwen3 = (key: string) => key.replace(/^model\.language_model/, 'language_model.model').replace(/^model\.visual/, 'vision_tower').replace(/^lm_head/, 'language_model.lm_head');

// --- google/t5gemma-2b-2b-ul2: T5GemmaModel's encoder and decoder under model., the head lm_head.out_proj tied to model.decoder.embed_tokens (not stored).
const t5gemmaConfig = {
  architectures: ['T5GemmaForConditionalGeneration'], model_type: 't5gemma', is_encoder_decoder: true, tie_word_embeddings: true,
  encoder: { model_type: 't5gemma_module', hidden_size: 8, num_hidden_layers: 1 }, decoder: { model_type: 't5gemma_module', hidden_size: 8, num_hidden_layers: 1, cross_attention_hidden_size: 8 },
};
const t5gemma: [string, number[]][] = [
  ['model.encoder.embed_tokens.weight', [32, 8]],
  ['model.encoder.layers.0.self_attn.q_proj.weight', [16, 8]],
  ['model.encoder.layers.0.pre_self_attn_layernorm.weight', [8]],
  ['model.encoder.layers.0.mlp.gate_proj.weight', [24, 8]],
  ['model.encoder.layers.0.post_feedforward_layernorm.weight', [8]],
  ['model.encoder.norm.weight', [8]],
  ['model.decoder.embed_tokens.weight', [32, 8]],
  ['model.decoder.layers.0.self_attn.v_proj.weight', [8, 8]],
  ['model.decoder.layers.0.pre_cross_attn_layernorm.weight', [8]],
  ['model.decoder.layers.0.cross_attn.k_proj.weight', [8, 8]],
  ['model.decoder.layers.0.cross_attn.o_proj.weight', [8, 16]],
  ['model.decoder.norm.weight', [8]],
];

// --- Qwen/Qwen2.5-7B-Instruct: an untied head; Qwen2.5-3B and smaller tie it and store none.
const qwen25: [string, number[]][] = [
  ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.layers.0.self_attn.q_proj.bias', [8]],
  ['model.layers.0.mlp.up_proj.weight', [16, 8]], ['model.norm.weight', [8]], ['lm_head.weight', [32, 8]],
];

const same = (keys: string[]): Linear[] => keys.map((k) => [k, `${k}.weight`]);

const FAMILIES: Family[] = [
  {
    title: 'Llama 4 Scout (Llama4ForConditionalGeneration): attention, shared expert, router, vision encoder, projector, head',
    config: llama4Config, base: llama4,
    linears: same(['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.feed_forward.shared_expert.gate_proj', 'language_model.model.layers.0.feed_forward.router',
      'vision_model.model.layers.0.self_attn.q_proj', 'multi_modal_projector.linear_1', 'language_model.lm_head']),
  },
  {
    title: 'Llama 4 Scout: target_parameters on the fused experts as the checkpoint stores them',
    config: llama4Config, base: llama4,
    params: [
      ['language_model.model.layers.0.feed_forward.experts', 'gate_up_proj', 'language_model.model.layers.0.feed_forward.experts.gate_up_proj'],
    ],
  },
  {
    title: 'Llama 4 Scout: text-only names (Llama4ForCausalLM, which AutoModelForCausalLM makes of it)',
    config: llama4Config, base: llama4,
    linears: [
      ['model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['model.layers.0.self_attn.k_proj', 'language_model.model.layers.0.self_attn.k_proj.weight'],
      ['model.layers.0.feed_forward.shared_expert.down_proj', 'language_model.model.layers.0.feed_forward.shared_expert.down_proj.weight'],
      ['lm_head', 'language_model.lm_head.weight'],
    ],
  },
  {
    title: 'Gemma 3n (Gemma3nForConditionalGeneration): language model, LAuReL, audio tower, vision embedder',
    config: { architectures: ['Gemma3nForConditionalGeneration'], model_type: 'gemma3n', text_config: { model_type: 'gemma3n_text', hidden_size: 8, tie_word_embeddings: true }, vision_config: { model_type: 'gemma3n_vision' }, audio_config: { model_type: 'gemma3n_audio' } },
    base: [
      ['model.language_model.embed_tokens.weight', [32, 8]], ['model.language_model.embed_tokens_per_layer.weight', [32, 4]],
      ['model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.language_model.layers.0.self_attn.q_norm.weight', [4]],
      ['model.language_model.layers.0.laurel.linear_left.weight', [2, 8]], ['model.language_model.layers.0.per_layer_input_gate.weight', [4, 8]],
      ['model.language_model.layers.0.altup.correction_coefs.weight', [4, 4]], ['model.language_model.norm.weight', [8]],
      ['model.vision_tower.timm_model.blocks.0.0.conv_exp.weight', [16, 8, 3, 3]],
      ['model.audio_tower.conformer.0.attention.attn.q_proj.weight', [8, 8]], ['model.embed_vision.embedding_projection.weight', [8, 8]],
    ],
    linears: same(['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.laurel.linear_left', 'model.audio_tower.conformer.0.attention.attn.q_proj', 'model.embed_vision.embedding_projection']),
  },
  {
    title: 'Mistral Small 3.1/3.2 (Mistral3ForConditionalGeneration), adapter in the names since transformers 4.52',
    config: mistral3Config, base: mistral3, linears: mistral3Modules.map(([path, key]) => [llavaNew(path), key]),
  },
  {
    title: 'Mistral Small 3.1/3.2, adapter in the names before transformers 4.52',
    config: mistral3Config, base: mistral3, linears: mistral3Modules,
  },
  {
    title: 'Mistral Small 3.1/3.2 saved in the new names, adapter in the old',
    config: mistral3Config, base: mistral3.map(([k, s]) => [llavaNew(k), s]), linears: mistral3Modules.map(([path, key]) => [path, llavaNew(key)]),
  },
  {
    title: 'Pixtral 12B (LlavaForConditionalGeneration with a Pixtral tower), adapter in the new names',
    config: { ...mistral3Config, architectures: ['LlavaForConditionalGeneration'], model_type: 'llava' },
    base: mistral3.filter(([k]) => !k.includes('patch_merger') && !k.startsWith('multi_modal_projector.norm')),
    linears: mistral3Modules.filter(([path]) => !path.includes('merger')).map(([path, key]) => [llavaNew(path), key]),
  },
  ...(['new', 'old'] as const).map((naming): Family => ({
    // llava-hf/llava-onevision-qwen2-7b-ov-hf: saved in the names before transformers 4.52 (language_model.model., vision_tower.,
    // multi_modal_projector., image_newline, language_model.lm_head); a Qwen2 language model, a SigLIP tower.
    title: `LLaVA-OneVision (LlavaOnevisionForConditionalGeneration, Qwen2 + SigLIP), adapter in the ${naming} names: attention with its bias, MLP, vision tower, projector, head`,
    config: {
      architectures: ['LlavaOnevisionForConditionalGeneration'], model_type: 'llava_onevision', tie_word_embeddings: false,
      text_config: { model_type: 'qwen2', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'siglip_vision_model', hidden_size: 12 },
    },
    base: [
      ['language_model.model.embed_tokens.weight', [32, 8]], ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['language_model.model.layers.0.self_attn.q_proj.bias', [8]],
      ['language_model.model.layers.0.mlp.down_proj.weight', [8, 16]], ['language_model.model.norm.weight', [8]], ['language_model.lm_head.weight', [32, 8]],
      ['vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12]], ['vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight', [24, 12]],
      ['vision_tower.vision_model.post_layernorm.weight', [12]], ['multi_modal_projector.linear_1.weight', [8, 12]], ['multi_modal_projector.linear_2.weight', [8, 8]],
      ['image_newline', [8]],
    ],
    linears: ([
      ['language_model.model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'], ['language_model.model.layers.0.mlp.down_proj', 'model.language_model.layers.0.mlp.down_proj'],
      ['vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 'model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj'],
      ['vision_tower.vision_model.encoder.layers.0.mlp.fc1', 'model.vision_tower.vision_model.encoder.layers.0.mlp.fc1'],
      ['multi_modal_projector.linear_1', 'model.multi_modal_projector.linear_1'], ['language_model.lm_head', 'lm_head'],
    ] as const).map(([old, renamed]): Linear => [naming === 'new' ? renamed : old, `${old}.weight`]),
  })),
  {
    title: "Phi-4-multimodal in transformers' classes (Phi4MultimodalForCausalLM): fused qkv_proj and gate_up_proj, the image encoder",
    config: { architectures: ['Phi4MultimodalForCausalLM'], model_type: 'phi4_multimodal', hidden_size: 8, tie_word_embeddings: true },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.qkv_proj.weight', [16, 8]], ['model.layers.0.self_attn.o_proj.weight', [8, 8]],
      ['model.layers.0.mlp.gate_up_proj.weight', [32, 8]], ['model.layers.0.mlp.down_proj.weight', [8, 16]], ['model.norm.weight', [8]],
      ['model.embed_tokens_extend.image_embed.img_processor.encoder.layers.0.self_attn.q_proj.weight', [8, 8]],
    ],
    linears: same(['model.layers.0.self_attn.qkv_proj', 'model.layers.0.mlp.gate_up_proj', 'model.embed_tokens_extend.image_embed.img_processor.encoder.layers.0.self_attn.q_proj']),
  },
  {
    title: 'InternVL3 original (InternVLChatModel, remote code), adapter trained on it',
    config: { architectures: ['InternVLChatModel'], model_type: 'internvl_chat', llm_config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8 }, vision_config: { model_type: 'intern_vit_6b' } },
    base: internvlOriginal, linears: same(['language_model.model.layers.0.self_attn.q_proj', 'vision_model.encoder.layers.0.attn.qkv', 'mlp1.1', 'language_model.lm_head']),
  },
  {
    title: 'InternVL3 -hf (InternVLForConditionalGeneration), adapter in the new names',
    config: { architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', text_config: { model_type: 'qwen2', hidden_size: 8 }, vision_config: { model_type: 'internvl_vision' } },
    base: internvlHf,
    linears: [
      ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['model.vision_tower.encoder.layer.0.attention.q_proj', 'vision_tower.encoder.layer.0.attention.q_proj.weight'],
      ['model.multi_modal_projector.linear_1', 'multi_modal_projector.linear_1.weight'],
      ['lm_head', 'language_model.lm_head.weight'],
    ],
  },
  {
    title: 'Llama 3.2 Vision (MllamaForConditionalGeneration), adapter in the new names: self- and cross-attention, both vision transformers, the projector',
    config: mllamaConfig, base: mllama, linears: mllamaModules.map(([path, key]) => [mllamaNew(path), key]),
  },
  {
    title: 'Llama 3.2 Vision, adapter in the old names',
    config: mllamaConfig, base: mllama, linears: mllamaModules,
  },
  {
    title: 'Llama 3.2 Vision: text-only names (MllamaForCausalLM, which AutoModelForCausalLM makes of it)',
    config: mllamaConfig, base: mllama,
    linears: [
      ['model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['model.layers.1.cross_attn.q_proj', 'language_model.model.layers.1.cross_attn.q_proj.weight'],
      ['lm_head', 'language_model.lm_head.weight'],
    ],
  },
  ...(['SmolVLMForConditionalGeneration:smolvlm', 'Idefics3ForConditionalGeneration:idefics3'].map((entry): Family => {
    const [arch, type] = entry.split(':');
    return {
      title: `${arch} (never renamed: model.text_model., model.vision_model., model.connector.)`,
      config: { architectures: [arch], model_type: type, text_config: { model_type: 'llama', hidden_size: 8 }, vision_config: { model_type: `${type}_vision` }, tie_word_embeddings: false },
      base: [
        ['model.text_model.embed_tokens.weight', [32, 8]], ['model.text_model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.text_model.norm.weight', [8]],
        ['model.vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.vision_model.encoder.layers.0.self_attn.q_proj.bias', [8]],
        ['model.connector.modality_projection.proj.weight', [8, 32]], ['lm_head.weight', [32, 8]],
      ],
      linears: same(['model.text_model.layers.0.self_attn.q_proj', 'model.vision_model.encoder.layers.0.self_attn.q_proj', 'model.connector.modality_projection.proj', 'lm_head']),
    };
  })),
  {
    title: 'GLM-4.1V (Glm4vForConditionalGeneration, saved in the new names): attention, fused gate_up_proj, vision blocks, merger, head',
    config: { architectures: ['Glm4vForConditionalGeneration'], model_type: 'glm4v', text_config: { model_type: 'glm4v_text', hidden_size: 8 }, vision_config: { model_type: 'glm4v' }, tie_word_embeddings: false },
    base: [
      ['model.language_model.embed_tokens.weight', [32, 8]], ['model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.language_model.layers.0.self_attn.q_proj.bias', [8]],
      ['model.language_model.layers.0.mlp.gate_up_proj.weight', [32, 8]], ['model.language_model.layers.0.mlp.down_proj.weight', [8, 16]],
      ['model.language_model.layers.0.post_self_attn_layernorm.weight', [8]], ['model.language_model.norm.weight', [8]],
      ['model.visual.patch_embed.proj.weight', [8, 3, 2, 2, 2]], ['model.visual.blocks.0.attn.qkv.weight', [24, 8]], ['model.visual.blocks.0.attn.proj.weight', [8, 8]],
      ['model.visual.blocks.0.mlp.gate_proj.weight', [16, 8]], ['model.visual.merger.proj.weight', [8, 8]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.mlp.gate_up_proj', 'model.visual.blocks.0.attn.qkv', 'model.visual.merger.proj', 'lm_head']),
  },
  ...((): Family[] => {
    const config = { architectures: ['Glm4vMoeForConditionalGeneration'], model_type: 'glm4v_moe', text_config: { model_type: 'glm4v_moe_text', hidden_size: 8, n_routed_experts: 2 }, vision_config: { model_type: 'glm4v_moe' }, tie_word_embeddings: false };
    const base: [string, number[]][] = [
      ['model.language_model.embed_tokens.weight', [32, 8]], ['model.language_model.layers.0.mlp.gate_proj.weight', [16, 8]],
      ['model.language_model.layers.1.mlp.gate.weight', [2, 8]], ['model.language_model.layers.1.mlp.gate.e_score_correction_bias', [2]],
      ...[0, 1].flatMap((e): [string, number[]][] => [
        [`model.language_model.layers.1.mlp.experts.${e}.gate_proj.weight`, [6, 8]], [`model.language_model.layers.1.mlp.experts.${e}.up_proj.weight`, [6, 8]],
        [`model.language_model.layers.1.mlp.experts.${e}.down_proj.weight`, [8, 6]],
      ]),
      ['model.language_model.layers.1.mlp.shared_experts.gate_proj.weight', [6, 8]], ['model.visual.blocks.0.attn.qkv.weight', [24, 8]], ['lm_head.weight', [32, 8]],
    ];
    return [{
      title: 'GLM-4.5V (Glm4vMoeForConditionalGeneration): one expert, the shared experts, the vision tower',
      config, base, linears: same(['model.language_model.layers.1.mlp.experts.1.gate_proj', 'model.language_model.layers.1.mlp.shared_experts.gate_proj', 'model.visual.blocks.0.attn.qkv']),
    }];
  })(),
  {
    title: 'Qwen3-Next (Qwen3NextForCausalLM): gated DeltaNet projections, gated attention, an expert, the shared expert gate, the router',
    config: { architectures: ['Qwen3NextForCausalLM'], model_type: 'qwen3_next', hidden_size: 8, num_experts: 2, tie_word_embeddings: false },
    base: qwen3Next,
    linears: same(['model.layers.0.linear_attn.in_proj_qkvz', 'model.layers.0.linear_attn.in_proj_ba', 'model.layers.0.linear_attn.out_proj', 'model.layers.1.self_attn.q_proj',
      'model.layers.0.mlp.experts.1.down_proj', 'model.layers.0.mlp.shared_expert_gate', 'model.layers.0.mlp.gate']),
  },
  {
    title: 'gpt-oss in bf16 (GptOssForCausalLM, unsloth/gpt-oss-20b-BF16): attention, and target_parameters on the fused (E, in, out) experts',
    config: { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 8, num_local_experts: 2, tie_word_embeddings: false },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.q_proj.weight', [16, 8]], ['model.layers.0.self_attn.q_proj.bias', [16]], ['model.layers.0.self_attn.sinks', [2]],
      ['model.layers.0.mlp.router.weight', [2, 8]], ['model.layers.0.mlp.router.bias', [2]], ['model.layers.0.mlp.experts.gate_up_proj', [2, 8, 12]],
      ['model.layers.0.mlp.experts.gate_up_proj_bias', [2, 12]], ['model.layers.0.mlp.experts.down_proj', [2, 6, 8]], ['model.layers.0.mlp.experts.down_proj_bias', [2, 8]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.layers.0.self_attn.q_proj']),
    params: [['model.layers.0.mlp.experts', 'gate_up_proj', 'model.layers.0.mlp.experts.gate_up_proj']],
  },
  // Unsloth's split experts (experts.gate_up_projs.K) on this fused checkpoint, and axolotl's on Llama 4's: test/split-experts-fused.test.ts.
  {
    title: "gpt-oss with the experts split as Unsloth saves it: a LoRA on experts.gate_up_projs.K lands by name",
    config: { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 8, num_local_experts: 2, tie_word_embeddings: false },
    base: [0, 1].flatMap((e): [string, number[]][] => [
      [`model.layers.0.mlp.experts.gate_up_projs.${e}.weight`, [12, 8]], [`model.layers.0.mlp.experts.gate_up_projs.${e}.bias`, [12]],
      [`model.layers.0.mlp.experts.down_projs.${e}.weight`, [8, 6]], [`model.layers.0.mlp.experts.down_projs.${e}.bias`, [8]],
    ]),
    linears: same(['model.layers.0.mlp.experts.gate_up_projs.1', 'model.layers.0.mlp.experts.down_projs.0']),
  },
  {
    title: 'DeepSeek-V3 in bf16 (DeepseekV3ForCausalLM): MLA projections, an expert, the shared experts',
    config: { architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', hidden_size: 8, n_routed_experts: 2, tie_word_embeddings: false },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.q_a_proj.weight', [4, 8]], ['model.layers.0.self_attn.q_a_layernorm.weight', [4]],
      ['model.layers.0.self_attn.q_b_proj.weight', [12, 4]], ['model.layers.0.self_attn.kv_a_proj_with_mqa.weight', [6, 8]], ['model.layers.0.self_attn.kv_b_proj.weight', [16, 4]],
      ['model.layers.0.self_attn.o_proj.weight', [8, 8]], ['model.layers.0.mlp.gate_proj.weight', [16, 8]], ['model.layers.1.mlp.gate.weight', [2, 8]],
      ['model.layers.1.mlp.gate.e_score_correction_bias', [2]], ['model.layers.1.mlp.experts.0.gate_proj.weight', [6, 8]], ['model.layers.1.mlp.experts.1.gate_proj.weight', [6, 8]],
      ['model.layers.1.mlp.shared_experts.gate_proj.weight', [6, 8]], ['model.norm.weight', [8]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.layers.0.self_attn.q_a_proj', 'model.layers.0.self_attn.kv_b_proj', 'model.layers.1.mlp.experts.1.gate_proj', 'model.layers.1.mlp.shared_experts.gate_proj']),
  },
  {
    title: 'Kimi-VL (KimiVLForConditionalGeneration, remote code): DeepSeek-V3 language model, MoonViT tower, projector',
    config: { architectures: ['KimiVLForConditionalGeneration'], model_type: 'kimi_vl', text_config: { model_type: 'deepseek_v3', hidden_size: 8 }, vision_config: { model_type: 'moonvit' }, tie_word_embeddings: false },
    base: [
      ['language_model.model.embed_tokens.weight', [32, 8]], ['language_model.model.layers.0.self_attn.q_proj.weight', [12, 8]],
      ['language_model.model.layers.0.self_attn.kv_a_proj_with_mqa.weight', [6, 8]], ['language_model.model.layers.1.mlp.experts.0.gate_proj.weight', [6, 8]],
      ['language_model.lm_head.weight', [32, 8]], ['vision_tower.encoder.blocks.0.wqkv.weight', [24, 8]], ['vision_tower.encoder.blocks.0.wqkv.bias', [24]],
      ['vision_tower.encoder.blocks.0.wo.weight', [8, 8]], ['vision_tower.encoder.blocks.0.mlp.fc0.weight', [16, 8]],
      ['multi_modal_projector.pre_norm.weight', [32]], ['multi_modal_projector.linear_1.weight', [8, 32]],
    ],
    linears: same(['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.1.mlp.experts.0.gate_proj', 'vision_tower.encoder.blocks.0.wqkv', 'multi_modal_projector.linear_1']),
  },
  {
    title: 'SmolLM3 (SmolLM3ForCausalLM, tied head)',
    config: { architectures: ['SmolLM3ForCausalLM'], model_type: 'smollm3', hidden_size: 8, tie_word_embeddings: true },
    base: [['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.layers.0.mlp.down_proj.weight', [8, 16]], ['model.norm.weight', [8]]],
    linears: same(['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj']),
  },
  {
    title: 'Granite 4.0-H (GraniteMoeHybridForCausalLM): Mamba 2 projections, shared MLP, attention, router',
    config: granite4Config, base: granite4,
    linears: same(['model.layers.0.mamba.in_proj', 'model.layers.0.mamba.out_proj', 'model.layers.0.shared_mlp.input_linear', 'model.layers.1.self_attn.q_proj', 'model.layers.0.block_sparse_moe.router.layer']),
  },
  {
    // LiquidAI/LFM2-1.2B: short-conv layers (conv.in_proj, the depthwise conv.conv (hidden, 1, L), conv.out_proj) and
    // attention layers (q_proj … out_proj with q_layernorm / k_layernorm); the SwiGLU as feed_forward.w1 / w3 / w2; the
    // final norm named embedding_norm; the head tied (no lm_head.weight). Its own LoRA recipe targets these Linears.
    title: 'LFM2 (Lfm2ForCausalLM, tied head): short-conv in_proj/out_proj, attention, feed_forward.w1/w2',
    config: { architectures: ['Lfm2ForCausalLM'], model_type: 'lfm2', hidden_size: 8, layer_types: ['conv', 'full_attention'], tie_word_embeddings: true },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.embedding_norm.weight', [8]],
      ['model.layers.0.operator_norm.weight', [8]], ['model.layers.0.conv.in_proj.weight', [24, 8]], ['model.layers.0.conv.conv.weight', [8, 1, 3]], ['model.layers.0.conv.out_proj.weight', [8, 8]],
      ['model.layers.0.ffn_norm.weight', [8]], ['model.layers.0.feed_forward.w1.weight', [16, 8]], ['model.layers.0.feed_forward.w3.weight', [16, 8]], ['model.layers.0.feed_forward.w2.weight', [8, 16]],
      ['model.layers.1.self_attn.q_proj.weight', [8, 8]], ['model.layers.1.self_attn.q_layernorm.weight', [4]], ['model.layers.1.self_attn.out_proj.weight', [8, 8]],
    ],
    linears: same(['model.layers.0.conv.in_proj', 'model.layers.0.conv.out_proj', 'model.layers.0.feed_forward.w1', 'model.layers.0.feed_forward.w2', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.out_proj']),
  },
  {
    // tiiuae/Falcon-H1: each layer a Mamba 2 mixer (mamba.in_proj, conv1d, A_log, D, dt_bias, norm, out_proj) beside
    // attention, then feed_forward.gate_proj / up_proj / down_proj; its µP multipliers act on those layers' outputs in
    // transformers' forward (mlx-lm folds them into the weights, refused there), so ΔW adds to the weights as stored.
    title: 'Falcon-H1 (FalconH1ForCausalLM): Mamba 2 in_proj/out_proj, attention, feed_forward, head',
    config: { architectures: ['FalconH1ForCausalLM'], model_type: 'falcon_h1', hidden_size: 8, mlp_multipliers: [0.5, 2], ssm_multipliers: [1, 1, 1, 1, 1], tie_word_embeddings: false },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.input_layernorm.weight', [8]],
      ['model.layers.0.mamba.in_proj.weight', [40, 8]], ['model.layers.0.mamba.conv1d.weight', [24, 1, 4]], ['model.layers.0.mamba.conv1d.bias', [24]],
      ['model.layers.0.mamba.A_log', [2]], ['model.layers.0.mamba.D', [2]], ['model.layers.0.mamba.dt_bias', [2]], ['model.layers.0.mamba.norm.weight', [16]], ['model.layers.0.mamba.out_proj.weight', [8, 16]],
      ['model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.layers.0.self_attn.o_proj.weight', [8, 8]],
      ['model.layers.0.pre_ff_layernorm.weight', [8]], ['model.layers.0.feed_forward.gate_proj.weight', [16, 8]], ['model.layers.0.feed_forward.down_proj.weight', [8, 16]],
      ['model.final_layernorm.weight', [8]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.layers.0.mamba.in_proj', 'model.layers.0.mamba.out_proj', 'model.layers.0.self_attn.q_proj', 'model.layers.0.feed_forward.gate_proj', 'model.layers.0.feed_forward.down_proj', 'lm_head']),
  },
  {
    // zai-org/GLM-4.5-Air: the first layer dense (mlp.gate_proj), the rest MoE (mlp.experts.K, mlp.shared_experts, the
    // router mlp.gate with e_score_correction_bias); attention with q/k/v biases; the MTP layer stored as one more layer
    // (model.layers.<num_hidden_layers>: eh_proj, enorm, hnorm, shared_head), which transformers leaves unloaded.
    title: 'GLM-4.5 / 4.6 (Glm4MoeForCausalLM): attention, dense MLP, an expert, the shared experts; the MTP layer copied',
    config: { architectures: ['Glm4MoeForCausalLM'], model_type: 'glm4_moe', hidden_size: 8, num_hidden_layers: 2, first_k_dense_replace: 1, n_routed_experts: 2, tie_word_embeddings: false },
    base: [
      ['model.embed_tokens.weight', [32, 8]], ['model.layers.0.self_attn.q_proj.weight', [8, 8]], ['model.layers.0.self_attn.q_proj.bias', [8]], ['model.layers.0.mlp.gate_proj.weight', [16, 8]],
      ['model.layers.1.self_attn.o_proj.weight', [8, 8]], ['model.layers.1.mlp.gate.weight', [2, 8]], ['model.layers.1.mlp.gate.e_score_correction_bias', [2]],
      ['model.layers.1.mlp.experts.1.up_proj.weight', [6, 8]], ['model.layers.1.mlp.shared_experts.down_proj.weight', [8, 6]],
      ['model.layers.2.eh_proj.weight', [8, 16]], ['model.layers.2.enorm.weight', [8]], ['model.layers.2.hnorm.weight', [8]], ['model.layers.2.shared_head.norm.weight', [8]],
      ['model.norm.weight', [8]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.gate_proj', 'model.layers.1.self_attn.o_proj', 'model.layers.1.mlp.experts.1.up_proj', 'model.layers.1.mlp.shared_experts.down_proj']),
  },
  {
    // Qwen/Qwen3-Omni-30B-A3B-Instruct: the thinker (thinker.model., thinker.visual., thinker.audio_tower., thinker.lm_head),
    // the talker (talker.model. …, the same decoder names) and code2wav in one checkpoint; a LoRA trained on the whole
    // Qwen3OmniMoeForConditionalGeneration names the thinker's modules with their prefix.
    title: 'Qwen3-Omni (Qwen3OmniMoeForConditionalGeneration), adapter on the whole model: thinker attention, an expert, vision and audio towers; the talker untouched',
    config: { architectures: ['Qwen3OmniMoeForConditionalGeneration'], model_type: 'qwen3_omni_moe', thinker_config: { text_config: { hidden_size: 8 } }, talker_config: { text_config: { hidden_size: 8 } } },
    base: [
      ['thinker.model.embed_tokens.weight', [32, 8]], ['thinker.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['thinker.model.layers.0.mlp.experts.1.down_proj.weight', [8, 6]],
      ['thinker.model.layers.0.mlp.gate.weight', [2, 8]], ['thinker.visual.blocks.0.attn.qkv.weight', [24, 8]], ['thinker.audio_tower.layers.0.self_attn.q_proj.weight', [8, 8]],
      ['thinker.lm_head.weight', [32, 8]],
      ['talker.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['talker.model.layers.0.mlp.experts.1.down_proj.weight', [8, 6]], ['code2wav.decoder.0.conv.weight', [8, 8, 3]],
    ],
    linears: same(['thinker.model.layers.0.self_attn.q_proj', 'thinker.model.layers.0.mlp.experts.1.down_proj', 'thinker.visual.blocks.0.attn.qkv', 'thinker.audio_tower.layers.0.self_attn.q_proj']),
  },
  {
    // The thinker fine-tuned alone (Qwen3OmniMoeThinkerForConditionalGeneration, base_model_prefix "thinker": transformers
    // loads the checkpoint's thinker.* keys into it and leaves the talker's unused), its adapter in that class's names.
    title: 'Qwen3-Omni, adapter on the thinker class: model.layers.N lands on thinker.model.layers.N, never on the talker\'s decoder that ends the same',
    config: { architectures: ['Qwen3OmniMoeForConditionalGeneration'], model_type: 'qwen3_omni_moe', thinker_config: { text_config: { hidden_size: 8 } }, talker_config: { text_config: { hidden_size: 8 } } },
    base: [
      ['thinker.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['thinker.model.layers.0.mlp.experts.1.down_proj.weight', [8, 6]], ['thinker.visual.blocks.0.attn.qkv.weight', [24, 8]],
      ['thinker.audio_tower.layers.0.self_attn.q_proj.weight', [8, 8]], ['thinker.lm_head.weight', [32, 8]],
      ['talker.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['talker.model.layers.0.mlp.experts.1.down_proj.weight', [8, 6]],
    ],
    linears: [
      ['model.layers.0.self_attn.q_proj', 'thinker.model.layers.0.self_attn.q_proj.weight'], ['model.layers.0.mlp.experts.1.down_proj', 'thinker.model.layers.0.mlp.experts.1.down_proj.weight'],
      ['visual.blocks.0.attn.qkv', 'thinker.visual.blocks.0.attn.qkv.weight'], ['audio_tower.layers.0.self_attn.q_proj', 'thinker.audio_tower.layers.0.self_attn.q_proj.weight'], ['lm_head', 'thinker.lm_head.weight'],
    ],
  },
  {
    title: "Granite 4.0-H: target_parameters on the experts' 3-D input_linear.weight",
    config: granite4Config, base: granite4,
    params: [['model.layers.0.block_sparse_moe.input_linear', 'weight', 'model.layers.0.block_sparse_moe.input_linear.weight']],
  },
  {
    title: 'Qwen3-VL 2B (Qwen3VLForConditionalGeneration, tied head): attention, MLP, vision blocks, merger and DeepStack mergers',
    config: { architectures: ['Qwen3VLForConditionalGeneration'], model_type: 'qwen3_vl', text_config: { model_type: 'qwen3_vl_text', hidden_size: 8, tie_word_embeddings: true }, vision_config: { model_type: 'qwen3_vl', deepstack_visual_indexes: [0] }, tie_word_embeddings: true },
    base: qwen3vl,
    linears: same(['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.mlp.down_proj', 'model.visual.blocks.0.attn.qkv', 'model.visual.blocks.0.mlp.linear_fc1',
      'model.visual.merger.linear_fc1', 'model.visual.deepstack_merger_list.0.linear_fc2']),
  },
  {
    // Qwen/Qwen3-VL-30B-A3B-Instruct ships its experts fused and stored (E, in, out) under the refactored names; a LoRA
    // trained on transformers 4.57 (router mlp.gate an nn.Linear there) by PEFT 0.17.1: lora_A (r·E, inter), lora_B (hidden, r·E).
    title: 'Qwen3-VL-MoE 30B-A3B (Qwen3VLMoeForConditionalGeneration, untied head): attention, router, target_parameters on the fused (E, in, out) down_proj, vision blocks, mergers',
    config: {
      architectures: ['Qwen3VLMoeForConditionalGeneration'], model_type: 'qwen3_vl_moe', tie_word_embeddings: false,
      text_config: { model_type: 'qwen3_vl_moe_text', hidden_size: 8, moe_intermediate_size: 6, num_experts: 4, num_experts_per_tok: 2, tie_word_embeddings: false },
      vision_config: { model_type: 'qwen3_vl_moe', deepstack_visual_indexes: [0] },
    },
    base: [
      ['model.language_model.embed_tokens.weight', [32, 8]], ['model.language_model.layers.0.self_attn.q_proj.weight', [16, 8]], ['model.language_model.layers.0.self_attn.k_norm.weight', [4]],
      ['model.language_model.layers.0.mlp.gate.weight', [4, 8]],
      // Qwen3VLMoeTextExperts as the checkpoint stores them: gate_up_proj (E, hidden, 2·inter), down_proj (E, inter, hidden).
      ['model.language_model.layers.0.mlp.experts.gate_up_proj', [4, 8, 12]], ['model.language_model.layers.0.mlp.experts.down_proj', [4, 6, 8]],
      ['model.language_model.norm.weight', [8]], ['model.visual.blocks.0.attn.qkv.weight', [24, 8]], ['model.visual.merger.linear_fc1.weight', [32, 32]],
      ['model.visual.deepstack_merger_list.0.linear_fc2.weight', [8, 32]], ['lm_head.weight', [32, 8]],
    ],
    linears: same(['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.mlp.gate', 'model.visual.blocks.0.attn.qkv', 'model.visual.merger.linear_fc1',
      'model.visual.deepstack_merger_list.0.linear_fc2', 'lm_head']),
    params: [['model.language_model.layers.0.mlp.experts', 'down_proj', 'model.language_model.layers.0.mlp.experts.down_proj']],
  },
  {
    title: 'Qwen3-VL 2B as mlx-vlm converts it (language_model.model., vision_tower., format mlx), a PEFT LoRA in transformers\' names',
    config: { architectures: ['Qwen3VLForConditionalGeneration'], model_type: 'qwen3_vl', text_config: { model_type: 'qwen3_vl_text', hidden_size: 8, tie_word_embeddings: true }, vision_config: { model_type: 'qwen3_vl' }, tie_word_embeddings: true },
    base: qwen3vl.map(([k, s]) => [mlxVlmQwen3(k), s]), metadata: { format: 'mlx' },
    linears: [
      ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['model.visual.blocks.0.attn.qkv', 'vision_tower.blocks.0.attn.qkv.weight'],
      ['model.visual.merger.linear_fc1', 'vision_tower.merger.linear_fc1.weight'],
    ],
  },
  {
    title: 'Qwen2.5-VL 7B as mlx-vlm converts it from the names before transformers 4.52, a PEFT LoRA in either naming',
    config: { architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', hidden_size: 8, vision_config: { model_type: 'qwen2_5_vl' }, tie_word_embeddings: false },
    base: [
      ['language_model.model.embed_tokens.weight', [32, 8]], ['language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]], ['language_model.model.layers.0.self_attn.q_proj.bias', [8]],
      ['language_model.model.norm.weight', [8]], ['vision_tower.patch_embed.proj.weight', [8, 2, 2, 2, 3]], ['vision_tower.blocks.0.attn.qkv.weight', [24, 8]],
      ['vision_tower.blocks.0.mlp.gate_proj.weight', [16, 8]], ['vision_tower.merger.mlp.0.weight', [32, 32]], ['language_model.lm_head.weight', [32, 8]],
    ],
    metadata: { format: 'mlx' },
    linears: [
      ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['visual.blocks.0.attn.qkv', 'vision_tower.blocks.0.attn.qkv.weight'],
      ['model.visual.merger.mlp.0', 'vision_tower.merger.mlp.0.weight'],
      ['lm_head', 'language_model.lm_head.weight'],
    ],
  },
  {
    title: 'T5Gemma (T5GemmaForConditionalGeneration, encoder-decoder, head tied to the decoder\'s embedding): encoder and decoder attention, cross-attention, MLP',
    config: t5gemmaConfig, base: t5gemma,
    linears: same(['model.encoder.layers.0.self_attn.q_proj', 'model.encoder.layers.0.mlp.gate_proj', 'model.decoder.layers.0.self_attn.v_proj', 'model.decoder.layers.0.cross_attn.k_proj',
      'model.decoder.layers.0.cross_attn.o_proj']),
  },
  {
    title: 'Qwen2.5-7B (Qwen2ForCausalLM, untied: lm_head.weight stored): attention with its bias, the head',
    config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, tie_word_embeddings: false },
    base: qwen25, linears: same(['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.up_proj', 'lm_head']),
  },
  {
    title: 'Qwen2.5-3B (Qwen2ForCausalLM, tied: no lm_head.weight): attention and MLP',
    config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, tie_word_embeddings: true },
    base: qwen25.filter(([k]) => k !== 'lm_head.weight'), linears: same(['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.up_proj']),
  },
];

/**
 * Expert e's (B_e·A_e)ᵀ added to W[e] at α/r, as PEFT before 0.19 forms a ParamWrapper's update: lora_A (r·E, d1) with
 * expert e's rows at [e·r, (e+1)·r), lora_B (d2, r·E) with expert e's column k at k·E + e.
 */
function expertsTruth(w: DecodedTensor, A: DecodedTensor, B: DecodedTensor): Float64Array {
  const [E, d1, d2] = w.shape;
  const out = w.values.slice();
  for (let e = 0; e < E; e++) {
    for (let i = 0; i < d1; i++) {
      for (let j = 0; j < d2; j++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += B.values[j * r * E + k * E + e] * A.values[(e * r + k) * d1 + i];
        out[(e * d1 + i) * d2 + j] += (alpha / r) * sum;
      }
    }
  }
  return out;
}

describe('LLM and VLM families as downloaded, with a PEFT LoRA trained on each', () => {
  for (const family of FAMILIES) {
    it(`${family.title}: ${family.refused ? 'refused in one line' : 'merged exactly'}`, async () => {
      const shapes = new Map(family.base);
      const base = family.base.map(([key, shape]) => randomTensor(key, shape, 'BF16', rand));
      const linears = family.linears ?? [];
      const params = family.params ?? [];
      const adapter = [
        ...linears.flatMap(([path, key, shape]) => {
          const [out, inF] = shape ?? shapes.get(key)!;
          return [randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5), randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5)];
        }),
        ...params.flatMap(([path, , key]) => {
          const [E, d1, d2] = shapes.get(key)!;
          return [randomTensor(`base_model.model.${path}.lora_A.weight`, [r * E, d1], 'F32', rand, 0.5), randomTensor(`base_model.model.${path}.lora_B.weight`, [d2, r * E], 'F32', rand, 0.5)];
        }),
      ];
      const peft = {
        r, lora_alpha: alpha, peft_version: '0.17.1',
        target_modules: [...new Set(linears.map(([path]) => path.split('.').pop()!))],
        ...(params.length ? { target_parameters: params.map(([path, parameter]) => `${path.split('.').slice(-2).join('.')}.${parameter}`) } : {}),
      };
      const folder = hfModelFolder(base, family.config, { shards: 2, ...(family.metadata ? { metadata: family.metadata } : {}) });
      const prepared = await prepare(folder, peftFolder(peft, adapter));
      if (family.refused) {
        await prepared.close();
        expect(prepared.plan.problems.map((p) => p.message)).toEqual(family.refused);
        return;
      }
      expect(prepared.plan.problems).toEqual([]);
      const changed = [...linears, ...params].map((m) => m[m.length - 1]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...changed].sort());
      const merged = await mergeIntoFolder(prepared, backend);
      const a = decoded(adapter);
      const b = decoded(base);
      for (const [path, key] of linears) {
        const delta = product(a.get(`base_model.model.${path}.lora_B.weight`)!, a.get(`base_model.model.${path}.lora_A.weight`)!);
        expectValues(key, merged.tensors.get(key)!, b.get(key)!.values.map((v, i) => v + (alpha / r) * delta[i]));
      }
      for (const [path, , key] of params) {
        expectValues(key, merged.tensors.get(key)!, expertsTruth(b.get(key)!, a.get(`base_model.model.${path}.lora_A.weight`)!, a.get(`base_model.model.${path}.lora_B.weight`)!));
      }
      for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      expect(merged.json('model.safetensors.index.json').weight_map).toEqual(JSON.parse(folder['model.safetensors.index.json'] as string).weight_map);
    });
  }
});

describe('a LoRA on the output head of a base that ties it to an embedding (no head stored)', () => {
  // PEFT wraps the head's Linear, whose weight is the embedding's: the LoRA changes the logits, not the
  // inputs. The merged model keeps that: the head written as its own tensor (the embedding + ΔW), the
  // embedding as stored, config.json's tie_word_embeddings set to false.
  const cases: { title: string; config: Record<string, unknown>; base: [string, number[]][]; head: string; embedding: string }[] = [
    {
      title: 'Qwen2.5-3B (Qwen2ForCausalLM): lm_head on model.embed_tokens',
      config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, tie_word_embeddings: true },
      base: qwen25.filter(([k]) => k !== 'lm_head.weight'), head: 'lm_head', embedding: 'model.embed_tokens.weight',
    },
    {
      title: "T5Gemma (T5GemmaForConditionalGeneration): lm_head.out_proj on the decoder's model.decoder.embed_tokens",
      config: t5gemmaConfig, base: t5gemma, head: 'lm_head.out_proj', embedding: 'model.decoder.embed_tokens.weight',
    },
  ];
  for (const c of cases) {
    it(`${c.title}: the head written untied, embedding + ΔW`, async () => {
      const base = c.base.map(([key, shape]) => randomTensor(key, shape, 'BF16', rand));
      const [vocab, hidden] = c.base.find(([k]) => k === c.embedding)![1];
      const adapter = [randomTensor(`base_model.model.${c.head}.lora_A.weight`, [r, hidden], 'F32', rand, 0.5), randomTensor(`base_model.model.${c.head}.lora_B.weight`, [vocab, r], 'F32', rand, 0.5)];
      const prepared = await prepare(hfModelFolder(base, c.config, { shards: 2 }), peftFolder({ r, lora_alpha: alpha, target_modules: [c.head.split('.').pop()!], peft_version: '0.17.1' }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backend);
      const a = decoded(adapter);
      const b = decoded(base);
      const delta = product(a.get(`base_model.model.${c.head}.lora_B.weight`)!, a.get(`base_model.model.${c.head}.lora_A.weight`)!);
      expectValues(`${c.head}.weight`, merged.tensors.get(`${c.head}.weight`)!, b.get(c.embedding)!.values.map((v, i) => v + (alpha / r) * delta[i]));
      for (const [key, w] of b) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      expect(merged.json('config.json').tie_word_embeddings).toBe(false);
    });
  }

  it('T5Gemma under target_modules "all-linear": a LoRA on lm_head.out_proj, the head PEFT leaves out (get_output_embeddings), is refused in one line', async () => {
    const base = t5gemma.map(([key, shape]) => randomTensor(key, shape, 'BF16', rand));
    const adapter = [randomTensor('base_model.model.lm_head.out_proj.lora_A.weight', [r, 8], 'F32', rand), randomTensor('base_model.model.lm_head.out_proj.lora_B.weight', [32, r], 'F32', rand)];
    await expect(prepare(hfModelFolder(base, t5gemmaConfig), peftFolder({ r, lora_alpha: alpha, target_modules: 'all-linear' }, adapter))).rejects.toThrow(
      'adapter1/adapter_config.json: module "lm_head.out_proj" is in adapter1/adapter_model.safetensors but is the output head, which target_modules "all-linear" leaves out; PEFT would leave its tensors unused, so this adapter cannot have been trained as PEFT loads it — fix adapter_config.json or remove the module',
    );
  });
});
