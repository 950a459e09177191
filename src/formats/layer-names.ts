/**
 * Layer classes a transformers model's config.json tells by module name where the stored weight's
 * shape cannot: transformers' Conv1D (weight stored (in, out); a square one looks like a Linear)
 * and nn.Embedding ((vocab, dim), a matrix like a Linear's). PEFT methods wrap some of these
 * classes only, and LoRA saves an embedding's factors under lora_embedding_A/B, never lora_A/B.
 *
 * Conv1D: the models of transformers that build layers with it (modeling_gpt2.py GPT2Attention and
 * GPT2MLP, and the classes copied from them): GPT-2, ImageGPT and Decision Transformer (c_attn,
 * q_attn, c_proj, c_fc), OpenAI GPT (c_attn, c_proj, c_fc), and CLVP's decoder MLP (mlp.c_fc,
 * mlp.c_proj; its attention is nn.Linear). GPT-BigCode names its layers the same but builds
 * nn.Linear, so the model type decides, not the name.
 *
 * Embedding: the names transformers gives nn.Embedding layers (embed_tokens, wte, wpe,
 * word_embeddings, position_embeddings, token_type_embeddings, T5's and BART's top-level shared, GPT-NeoX's
 * embed_in, InternLM2's tok_embeddings), taken only for a base with a config.json model_type.
 */
import type { LayerClass } from './adapter.js';

const GPT2_CONV1D = /(?:^|\.)(?:c_attn|q_attn|c_proj|c_fc)\.weight$/;
const CONV1D_BY_MODEL_TYPE: Readonly<Record<string, RegExp>> = {
  gpt2: GPT2_CONV1D,
  imagegpt: GPT2_CONV1D,
  decision_transformer: GPT2_CONV1D,
  'openai-gpt': /(?:^|\.)(?:c_attn|c_proj|c_fc)\.weight$/,
  clvp: /(?:^|\.)mlp\.(?:c_fc|c_proj)\.weight$/,
};

// `shared` only at the top (T5's shared, BART's model.shared): deeper, MoE blocks use the word for experts.
const EMBEDDING = /(?:(?:^|\.)(?:embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|embed_in|tok_embeddings)|^(?:model\.)?shared)\.weight$/;

/** The model types whose config.json says some layers are transformers' Conv1D, for messages and the README. */
export const CONV1D_MODEL_TYPES: readonly string[] = Object.keys(CONV1D_BY_MODEL_TYPE);

/**
 * The class of the layer whose weight is `baseKey` when its name tells, for a base whose
 * config.json has `model_type` (undefined: no config, nothing is told by name).
 */
export function namedLayerClass(modelType: string | undefined, baseKey: string): LayerClass | undefined {
  if (modelType === undefined) return undefined;
  if (Object.hasOwn(CONV1D_BY_MODEL_TYPE, modelType) && CONV1D_BY_MODEL_TYPE[modelType].test(baseKey)) return 'Conv1D';
  if (EMBEDDING.test(baseKey)) return 'Embedding';
  return undefined;
}
