/**
 * A transformers model's config.json, read for what the merge needs to know about the model (its
 * architectures, whether its embeddings are tied, its vocabulary size, a quantization it was
 * saved with). Vision-language models keep the language model's fields in `text_config`; a field
 * is looked up there when the top level does not have it.
 */
import type { InputFileSet } from '../io/types.js';
import { parseBoundedJson } from './bounded-json.js';

export const MODEL_CONFIG_FILE = 'config.json';

export interface ModelConfig {
  /** Relative path in the base folder. */
  readonly path: string;
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * The base folder's config.json when it is a transformers model config (it names `architectures`
 * or a `model_type`); undefined for a single file, a diffusers component or a folder without one.
 */
export async function readModelConfig(files: InputFileSet): Promise<ModelConfig | undefined> {
  if (!files.list().includes(MODEL_CONFIG_FILE)) return undefined;
  // readText refuses a file above MAX_CONFIG_BYTES; the parse checks nesting and size first.
  const raw = parseBoundedJson(await files.readText(MODEL_CONFIG_FILE), `${files.name}/${MODEL_CONFIG_FILE}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const obj = raw as Record<string, unknown>;
  if (!Array.isArray(obj.architectures) && typeof obj.model_type !== 'string') return undefined;
  return { path: MODEL_CONFIG_FILE, raw: obj };
}

/**
 * The model's Hugging Face name (`_name_or_path` in its config.json), else the file set's name. A
 * config that cannot be read only costs the name; it is parsed within the config limits all the same.
 */
export async function modelNameOrPath(files: Pick<InputFileSet, 'name' | 'list' | 'readText'>): Promise<string> {
  if (files.list().includes(MODEL_CONFIG_FILE)) {
    try {
      const config = parseBoundedJson(await files.readText(MODEL_CONFIG_FILE), `${files.name}/${MODEL_CONFIG_FILE}`) as { _name_or_path?: unknown } | null;
      if (typeof config?._name_or_path === 'string' && config._name_or_path !== '') return config._name_or_path;
    } catch {
      // an unreadable config only costs the name
    }
  }
  return files.name;
}

/** `architectures` as strings (`['Qwen2_5_VLForConditionalGeneration']`), empty when absent. */
export function modelArchitectures(config: ModelConfig | undefined): string[] {
  const list = config?.raw.architectures;
  return Array.isArray(list) ? list.filter((a): a is string => typeof a === 'string') : [];
}

/** The language model's sub-config of a vision-language model, if it has one. */
export function textConfig(config: ModelConfig | undefined): Readonly<Record<string, unknown>> | undefined {
  const text = config?.raw.text_config;
  return typeof text === 'object' && text !== null && !Array.isArray(text) ? (text as Record<string, unknown>) : undefined;
}

/** A language-model field: the top level's, else `text_config`'s. */
export function languageModelField(config: ModelConfig | undefined, key: string): unknown {
  if (config === undefined) return undefined;
  return Object.hasOwn(config.raw, key) ? config.raw[key] : textConfig(config)?.[key];
}

/**
 * `tie_word_embeddings` of a config class that does not name it in config.json: the class's own
 * default, the same in transformers 4.57 and 5.x (every class listed sets it or inherits
 * PretrainedConfig's 4.x `True`). Only language models whose config has no `text_config`: a
 * multimodal config's default can differ between its top level and its text model.
 */
const TIE_WORD_EMBEDDINGS_DEFAULT: Readonly<Record<string, boolean>> = {
  cohere: true, cohere2: true, ernie4_5: true, falcon: true, gemma: true, gemma2: true, gemma3_text: true,
  gpt2: true, lfm2: true, opt: true, smollm3: true, starcoder2: true,
  apertus: false, bitnet: false, deepseek_v3: false, exaone4: false, glm4: false, gpt_oss: false, granite: false,
  granitemoe: false, hunyuan_v1_dense: false, llama: false, mistral: false, mixtral: false, nemotron: false,
  olmo: false, olmo2: false, olmo3: false, phi: false, phi3: false, phimoe: false, qwen2: false, qwen2_moe: false,
  qwen3: false, qwen3_moe: false, qwen3_next: false, seed_oss: false, stablelm: false,
};

/**
 * Whether transformers ties the model's output head to its input embedding: config.json's
 * `tie_word_embeddings` (top level, else `text_config`'s), else the config class's default for a
 * `model_type` listed above; undefined where neither tells (no config, another model type).
 */
export function tiesWordEmbeddings(config: ModelConfig | undefined): boolean | undefined {
  const field = languageModelField(config, 'tie_word_embeddings');
  if (typeof field === 'boolean') return field;
  if (config === undefined || field !== undefined || textConfig(config) !== undefined) return undefined;
  const type = config.raw.model_type;
  return typeof type === 'string' && Object.hasOwn(TIE_WORD_EMBEDDINGS_DEFAULT, type) ? TIE_WORD_EMBEDDINGS_DEFAULT[type] : undefined;
}

/** `quantization_config.quant_method` (`bitsandbytes`, `gptq`, …), if the config names one. */
export function quantizationMethod(config: ModelConfig | undefined): string | undefined {
  const q = config?.raw.quantization_config;
  if (typeof q !== 'object' || q === null) return undefined;
  const qc = q as Record<string, unknown>;
  const method = qc.quant_method;
  // A ModelOpt config without a quant_algo quantizes only the KV cache: the weights are floats.
  const modelopt = modelOptFields(qc);
  if (modelopt && modelOptWeightsUnquantized(modelopt)) return undefined;
  return typeof method === 'string' ? method : 'unknown';
}

/** A `quantization_config` that is ModelOpt's (`quant_method: "modelopt…"`): its fields, at its top level or under `quantization`. */
export function modelOptFields(qc: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (typeof qc?.quant_method !== 'string' || !qc.quant_method.toLowerCase().startsWith('modelopt')) return undefined;
  const inner = qc.quantization;
  return typeof inner === 'object' && inner !== null && !Array.isArray(inner) ? (inner as Record<string, unknown>) : qc;
}

/** ModelOpt quantization fields (config.json's, or hf_quant_config.json's `quantization`) that name no weight algorithm. */
export function modelOptWeightsUnquantized(fields: Record<string, unknown>): boolean {
  return fields.quant_algo === undefined || fields.quant_algo === null;
}
