/**
 * ComfyUI's per-layer quantization ("mixed precision": Comfy-Org's "fp8mixed" and newer
 * "fp8_scaled" diffusion models): a quantized Linear `<m>` has `<m>.weight` in the format's
 * storage type, `<m>.comfy_quant` (a U8 tensor holding UTF-8 JSON such as
 * `{"format": "float8_e4m3fn"}`), the format's scales (`<m>.weight_scale`, and `weight_scale_2`
 * for nvfp4) and sometimes `<m>.input_scale`; every other layer stays a float. The same per-layer
 * configs may come instead (or as well) from the file's `_quantization_metadata` header entry
 * (`{"layers": {"<m>": {...}}}`), which ComfyUI's convert_old_quants turns into comfy_quant
 * tensors, replacing those of the same layers; it is read the same way here.
 *
 * ComfyUI's QUANT_ALGOS names the formats: float8_e4m3fn and float8_e5m2 (one scalar weight_scale:
 * W = code × scale), nvfp4 (e2m1 pairs, swizzled e4m3 block scales and weight_scale_2), mxfp8
 * (e8m0 scales per 32, swizzled), int8_tensorwise (int8 codes, a scale per tensor or per row), and
 * packed 4-bit ones. The two per-tensor fp8 formats (PER_TENSOR_FP8), mxfp8 (comfy-mxfp8.ts) and
 * int8_tensorwise (comfy-int8.ts) are read here, and merged as ComfyUI's LoRA patch does (dequantize,
 * add, quantize again with the scale recalculated from the merged weight's amax over the format's
 * largest value: the `comfy` rule of scaled-fp8.ts). nvfp4 (comfy-nvfp4.ts) is read too, and a
 * merged nvfp4 layer is written as nvfp4 again by that file's rule. Every other format is left as it is and refused,
 * naming the tensor and the format, wherever an adapter would change it or the model would be
 * dequantized.
 */
import { decodeToF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { checkJsonBounds } from './bounded-json.js';
import type { BaseModel } from './base-model.js';
import { isSafetensorsModel } from './base-model-view.js';
import { readComfyInt8 } from './comfy-int8.js';
import { readComfyMxfp8 } from './comfy-mxfp8.js';
import { readComfyNvfp4 } from './comfy-nvfp4.js';
import type { ScaledFp8Base, ScaledFp8Weight } from './scaled-fp8.js';
import { product } from '../integers.js';

const COMFY_QUANT = '.comfy_quant';
/** The safetensors `__metadata__` entry ComfyUI reads per-layer configs from. */
export const QUANTIZATION_METADATA = '_quantization_metadata';
const SCALE_DTYPES = new Set(['F32', 'BF16', 'F16']);
/**
 * The formats ComfyUI stores as fp8 codes times one weight_scale (quant_ops.py's
 * TensorCoreFP8E4M3Layout and TensorCoreFP8E5M2Layout), and their codes' dtype.
 */
const PER_TENSOR_FP8: Readonly<Record<string, 'F8_E4M3' | 'F8_E5M2'>> = { float8_e4m3fn: 'F8_E4M3', float8_e5m2: 'F8_E5M2' };
/** The formats read by their own file: the weight, or why a form of it is not read. */
type LayerReader = (base: BaseModel, layer: string, from: string, config: Readonly<Record<string, unknown>>) => Promise<ScaledFp8Weight | string>;
const LAYER_READERS: Readonly<Record<string, LayerReader>> = { mxfp8: readComfyMxfp8, nvfp4: readComfyNvfp4, int8_tensorwise: readComfyInt8 };
/** A comfy_quant tensor is a few dozen bytes of JSON; anything past this is not one. */
const MAX_LAYER_CONFIG_BYTES = 4096;

/** The base's ComfyUI-quantized layers, or undefined when it has none. Malformed configs and scales throw, naming the tensor. */
export async function findComfyQuant(base: BaseModel): Promise<ScaledFp8Base | undefined> {
  const configs = new Map<string, { format: string; from: string; config: Record<string, unknown> }>();
  for (const [key, t] of base.tensors) {
    if (!key.endsWith(COMFY_QUANT)) continue;
    const where = `${base.name}: tensor "${key}"`;
    if (t.storedType !== 'U8' || t.shape.length !== 1 || t.byteLength > MAX_LAYER_CONFIG_BYTES) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${t.storedType} (${t.shape.join(', ')}), not ComfyUI's quantization config (U8 bytes of a JSON object); fix or remove it`);
    }
    const text = decodeUtf8(await base.read(key));
    configs.set(key.slice(0, -COMFY_QUANT.length), { ...formatOf(text, where), from: key });
  }
  // The header's configs replace the tensors' for the same layers, as ComfyUI's loader has it.
  const leftOutMetadata: string[] = [];
  if (isSafetensorsModel(base)) {
    for (const shard of base.shards) {
      const text = shard.file.metadata[QUANTIZATION_METADATA];
      if (text === undefined) continue;
      leftOutMetadata.push(QUANTIZATION_METADATA);
      const where = `${base.name}: ${shard.path}'s ${QUANTIZATION_METADATA} header entry`;
      const parsed = parseJson(text, where);
      // JSON null, a number or a string has no fields to read (null's would throw).
      const layers = typeof parsed === 'object' && parsed !== null ? (parsed as { layers?: unknown }).layers : undefined;
      if (typeof layers !== 'object' || layers === null || Array.isArray(layers)) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${where} has no "layers" object; fix or remove it`);
      }
      for (const [layer, conf] of Object.entries(layers as Record<string, unknown>)) {
        configs.set(headerLayerKey(base, shard.keyPrefix, layer), { ...formatOf(conf, `${where}, layer "${layer}"`), from: `${QUANTIZATION_METADATA} (${layer})` });
      }
    }
  }
  if (configs.size === 0) return undefined;

  const weights = new Map<string, ScaledFp8Weight>();
  const unread: string[] = [];
  const unreadWhy = new Map<string, string>();
  const quantizationOnly: string[] = [];
  for (const [layer, { format, from, config }] of configs) {
    if (base.tensors.has(layer + COMFY_QUANT)) quantizationOnly.push(layer + COMFY_QUANT);
    const weightKey = `${layer}.weight`;
    const weight = base.tensors.get(weightKey);
    if (!weight) continue; // ComfyUI skips such a layer too ("Missing weight")
    if (Object.hasOwn(LAYER_READERS, format)) {
      const read = await LAYER_READERS[format](base, layer, from, config);
      if (typeof read !== 'string') weights.set(weightKey, read);
      else {
        unread.push(weightKey);
        unreadWhy.set(weightKey, read);
      }
      continue;
    }
    const codeDtype = Object.hasOwn(PER_TENSOR_FP8, format) ? PER_TENSOR_FP8[format] : undefined;
    if (!codeDtype) {
      unread.push(weightKey);
      unreadWhy.set(weightKey, `its comfy_quant format is "${format}" (${from}), which loramerge does not read`);
      continue;
    }
    const scaleKey = `${layer}.weight_scale`;
    const scale = base.tensors.get(scaleKey);
    const where = `${base.name}: ${weightKey} (comfy_quant format "${format}")`;
    if (weight.dtype !== codeDtype) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${weight.dtype}; ComfyUI stores ${format} weights as ${codeDtype}`);
    }
    if (weight.shape.length < 2) {
      unread.push(weightKey);
      unreadWhy.set(weightKey, `a ${format} weight of shape [${weight.shape.join(', ')}] (${from}), which loramerge does not read`);
      continue;
    }
    if (!scale || !SCALE_DTYPES.has(scale.dtype) || product(scale.shape) !== 1 || scale.shape.length > 1) {
      const what = scale ? `has shape [${scale.shape.join(', ')}] (${scale.dtype})` : 'is missing';
      throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} ${what}; ${format} needs one F32 scale per weight (shape [] or [1])`);
    }
    const value = decodeToF32(await base.read(scaleKey), scale.dtype as FloatDType)[0];
    if (!Number.isFinite(value) || value < 0) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} is ${value}; a scale must be finite and not negative`);
    }
    // A conv's kernel dimensions folded into the columns: one scale covers the whole tensor.
    const rows = weight.shape[0];
    const cols = product(weight.shape.slice(1));
    const entry: ScaledFp8Weight = {
      weightKey, codeDtype, scaleKey, scaleDtype: scale.dtype as ScaledFp8Weight['scaleDtype'],
      rows, cols, blockRows: rows, blockCols: cols, scales: Float64Array.of(value),
    };
    if (base.tensors.has(`${layer}.input_scale`)) entry.inputScaleKey = `${layer}.input_scale`;
    weights.set(weightKey, entry);
  }
  // A weight with a scale beside it but no config would be read as plain codes: never converted or merged.
  for (const key of base.tensors.keys()) {
    if (!key.endsWith('.weight_scale')) continue;
    const weightKey = `${key.slice(0, -'.weight_scale'.length)}.weight`;
    if (!base.tensors.has(weightKey) || weights.has(weightKey) || unreadWhy.has(weightKey)) continue;
    unread.push(weightKey);
    unreadWhy.set(weightKey, `it has a weight_scale beside it but no comfy_quant config, so its format is unknown`);
  }
  return {
    kind: 'comfy-quant-fp8', rule: 'comfy', weights, unread, unreadWhy, quantizationOnly,
    ...(leftOutMetadata.length ? { metadataLeftOut: [QUANTIZATION_METADATA] } : {}),
  };
}

/**
 * The base key of a layer the header names. ComfyUI matches the header's names to the keys as its
 * loader holds them: with `model.diffusion_model.` when loading a checkpoint, without it when
 * loading a diffusion model on its own (the prefix is removed first); a file is read either way.
 */
function headerLayerKey(base: BaseModel, keyPrefix: string, layer: string): string {
  const key = keyPrefix + layer;
  if (base.tensors.has(`${key}.weight`)) return key;
  for (const prefix of DIFFUSION_MODEL_PREFIXES) {
    if (base.tensors.has(`${keyPrefix}${prefix}${layer}.weight`)) return `${keyPrefix}${prefix}${layer}`;
    if (layer.startsWith(prefix) && base.tensors.has(`${keyPrefix}${layer.slice(prefix.length)}.weight`)) return keyPrefix + layer.slice(prefix.length);
  }
  return key;
}
const DIFFUSION_MODEL_PREFIXES = ['model.diffusion_model.'];

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return '\uFFFD'; // not UTF-8: reported as not JSON
  }
}

function parseJson(text: string, where: string): unknown {
  checkJsonBounds(text, where);
  try {
    return JSON.parse(text);
  } catch {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where} is not JSON (${JSON.stringify(text.slice(0, 60))}); fix or remove it`);
  }
}

/** A layer config and its `format`: a JSON object's string field, else one line saying what is wrong. */
function formatOf(config: unknown, where: string): { format: string; config: Record<string, unknown> } {
  const parsed = typeof config === 'string' ? parseJson(config, where) : config;
  const format = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as { format?: unknown }).format : undefined;
  if (typeof format !== 'string' || format === '') {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where} is not ComfyUI's quantization config (a JSON object with a "format" string, such as {"format": "float8_e4m3fn"}); fix or remove it`);
  }
  return { format, config: parsed as Record<string, unknown> };
}
