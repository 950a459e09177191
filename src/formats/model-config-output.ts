/**
 * config.json as the merged model needs it: transformers reads the dtype it loads in from `dtype`
 * (4.56 and later) or `torch_dtype` (before), so both say what was written; a dequantized model
 * drops its `quantization_config` (transformers would otherwise quantize it again, or refuse it);
 * a resized vocabulary changes `vocab_size`; a diffusers transformer
 * with a widened x_embedder (BFL's control LoRAs) changes `in_channels`; an output head written on its own needs
 * `tie_word_embeddings: false`, or loading ties it back to the embedding. A vision-language
 * model's language fields live in `text_config`, and the fields are set there too.
 */
import type { FloatDType } from '../dtype.js';

export interface ConfigChanges {
  /** The dtype most of the written tensors are in. */
  dtype?: FloatDType;
  removeQuantization?: boolean;
  vocabSize?: number;
  untieEmbeddings?: boolean;
  /** A diffusers transformer whose x_embedder was widened: its `in_channels`, and `out_channels` where the config left it to in_channels. */
  inChannels?: number;
  outChannels?: number;
}

/** torch's names, as transformers writes them. */
const TORCH_DTYPE: Readonly<Record<FloatDType, string>> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8_e4m3fn', F8_E5M2: 'float8_e5m2',
};

export function rewriteModelConfig(raw: Readonly<Record<string, unknown>>, changes: ConfigChanges): Record<string, unknown> {
  const config: Record<string, unknown> = structuredClone(raw) as Record<string, unknown>;
  const text = typeof config.text_config === 'object' && config.text_config !== null && !Array.isArray(config.text_config)
    ? (config.text_config as Record<string, unknown>)
    : undefined;
  if (changes.dtype) {
    config.dtype = TORCH_DTYPE[changes.dtype];
    config.torch_dtype = TORCH_DTYPE[changes.dtype];
    for (const key of ['dtype', 'torch_dtype']) if (text && Object.hasOwn(text, key)) text[key] = TORCH_DTYPE[changes.dtype];
  }
  if (changes.removeQuantization) {
    delete config.quantization_config;
    // mlx-lm's own key for it (mlx-community checkpoints), which mlx-lm reads before quantization_config.
    delete config.quantization;
    if (text) delete text.quantization_config;
  }
  if (changes.vocabSize !== undefined) setLanguageField(config, text, 'vocab_size', changes.vocabSize);
  if (changes.inChannels !== undefined) config.in_channels = changes.inChannels;
  if (changes.outChannels !== undefined) config.out_channels = changes.outChannels;
  if (changes.untieEmbeddings) {
    config.tie_word_embeddings = false;
    if (text) text.tie_word_embeddings = false;
  }
  return config;
}

/** Sets a field where the config keeps it: the top level, `text_config`, or both; the top level if neither. */
function setLanguageField(config: Record<string, unknown>, text: Record<string, unknown> | undefined, key: string, value: unknown): void {
  const inText = text !== undefined && Object.hasOwn(text, key);
  if (Object.hasOwn(config, key) || !inText) config[key] = value;
  if (inText) text![key] = value;
}
