/**
 * NVIDIA ModelOpt's quantization config, as its unified Hugging Face export writes it and vLLM
 * reads it (modelopt.py's ModelOptQuantConfigBase.from_config): `hf_quant_config.json`
 * (`{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", ...}}`), and, in newer
 * exports, config.json's `quantization_config` with `quant_method: "modelopt"` and `quant_algo`
 * at its top level (or under `quantization`). `quant_algo` is compared upper-cased, as vLLM does.
 */
import { MergeError } from '../errors.js';
import type { InputFileSet } from '../io/types.js';
import { parseBoundedJson } from './bounded-json.js';
import { modelOptFields, modelOptWeightsUnquantized, type ModelConfig } from './model-config.js';

export const HF_QUANT_CONFIG_FILE = 'hf_quant_config.json';

export interface ModelOptQuantization {
  /** `FP8`, `NVFP4`, `FP8_PER_CHANNEL_PER_TOKEN`, … (upper-cased); `NONE` when the weights are not quantized (a KV-cache-only config). */
  algo: string;
  /** `kv_cache_quant_algo` (upper-cased), when there is one. */
  kvCache?: string;
  /** `group_size` as the config gives it, unchecked: only NVFP4 reads it (modelOptGroupSize). */
  groupSize?: unknown;
  /** Where `group_size` was read, for its refusal. */
  groupSizeField?: string;
  /** hf_quant_config.json when the folder has one: a dequantized model must not keep it. */
  file?: string;
}

const record = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** The ModelOpt quantization of the base folder, or undefined when neither file names one. */
export async function readModelOptQuantization(files: InputFileSet, config: ModelConfig | undefined): Promise<ModelOptQuantization | undefined> {
  const file = files.list().includes(HF_QUANT_CONFIG_FILE) ? HF_QUANT_CONFIG_FILE : undefined;
  const hf = file ? record(parseBoundedJson(await files.readText(file), `${files.name}/${file}`)) : undefined;
  const fromFile = hf && record(record(hf.producer))?.name === 'modelopt' ? record(hf.quantization) : undefined;
  const qc = record(config?.raw.quantization_config);
  const fromConfig = modelOptFields(qc);
  const q = fromConfig ?? fromFile;
  if (!q) return undefined;
  const group = q.group_size;
  const groupSizeField = fromConfig ? `config.json quantization_config${fromConfig === qc ? '' : '.quantization'}.group_size` : `${HF_QUANT_CONFIG_FILE} quantization.group_size`;
  const algo = typeof q.quant_algo === 'string' ? q.quant_algo.toUpperCase() : modelOptWeightsUnquantized(q) ? 'NONE' : 'unknown';
  const kvCache = typeof q.kv_cache_quant_algo === 'string' ? q.kv_cache_quant_algo.toUpperCase() : undefined;
  return { algo, ...(kvCache ? { kvCache } : {}), ...(group !== undefined && group !== null ? { groupSize: group, groupSizeField } : {}), ...(file ? { file } : {}) };
}

/**
 * NVFP4's inputs per block scale: 16 unless the config says otherwise. A group is a whole number
 * (vLLM and ModelOpt index by it); a fractional one whose table happened to fit would decode every
 * weight with groups no tool uses, so anything else is refused. FP8 never reads the field.
 */
export function modelOptGroupSize(quantization: ModelOptQuantization, folder: string): number {
  const group = quantization.groupSize;
  if (group === undefined) return 16;
  if (typeof group === 'number' && Number.isSafeInteger(group) && group >= 1) return group;
  const shown = typeof group === 'string' ? JSON.stringify(group) : String(group);
  throw new MergeError('BAD_CONFIG', `${folder}: ${quantization.groupSizeField} is ${shown}; ModelOpt's group_size is a positive whole number of inputs per scale`);
}
