/**
 * fp8 weights stored as codes beside a scale tensor, as the Hub ships LLM checkpoints: the real
 * weight is W = code × scale of the code's block.
 * - Block-wise fp8 (transformers' FineGrainedFP8, DeepSeek-V3/R1, Qwen3-*-FP8): config.json
 *   `quantization_config.quant_method: "fp8"` with `weight_block_size: [bm, bn]`; each
 *   `<m>.weight` (F8_E4M3, out × in) has `<m>.weight_scale_inv` of shape (⌈out/bm⌉, ⌈in/bn⌉).
 * - compressed-tensors `float-quantized` FP8 (RedHat / neuralmagic "-FP8-dynamic", "-FP8"):
 *   `quant_method: "compressed-tensors"`, every config group's weights 8-bit float, symmetric;
 *   `<m>.weight_scale` per output channel (out, 1), per tensor (1,) or (), or per block.
 * - fbgemm FP8 (Meta's Llama 3.1 405B FP8: `quant_method: "fbgemm_fp8"`): `<m>.weight_scale` (out, 1),
 *   one scale per row; written only dequantized (fbgemm's quantize_fp8_per_row kernel, which would
 *   quantize it again, is not matched here).
 * - NVIDIA ModelOpt FP8 (nvidia/*-FP8: `quant_algo: "FP8"` in hf_quant_config.json or
 *   config.json's `quant_method: "modelopt"` config): `<m>.weight_scale` F32, one per tensor.
 * - Comfy-Org's scaled fp8 (Flux, SD3.5): a zero-size `scaled_fp8` marker and a scalar
 *   `<m>.scale_weight` per weight (read by the base model as its valueScales), the scale written
 *   back as `scale_weight`.
 * - ComfyUI's per-layer quantization (Comfy-Org's "fp8mixed" files): `<m>.comfy_quant`
 *   `{"format": "float8_e4m3fn"}` beside the weight and a scalar `<m>.weight_scale`
 *   (comfy-quant.ts).
 * ModelOpt NVFP4 weights reach this shape through a view (modelopt-nvfp4.ts), and so do integer
 * weights (GPTQ, AWQ, compressed-tensors int: int-weights.ts) with one scale of 1 per tensor.
 * Each scale is one block of a grid over the weight (a channel: 1 × in; a tensor: out × in), so the
 * merge and the re-quantization need to know only the grid. What is read here is what the merge
 * can write back (scaled-fp8-output.ts); a weight with a scale sibling not read here stays refused
 * (plan/quantized-weights.ts).
 */
import { decodeToF32, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScales } from './bad-scales.js';
import { shownValue } from './bounded-json.js';
import { isScaledFp8Marker, type BaseModel } from './base-model.js';
import type { ViewTensor } from './base-model-view.js';
import { findComfyQuant } from './comfy-quant.js';
import { languageModelField, type ModelConfig } from './model-config.js';
import type { ModelOptQuantization } from './modelopt-config.js';
import { product } from '../integers.js';
import { readFusedFp8Experts } from './fp8-fused-experts.js';
import { e8m0Values, fp4ScaledWeight, fp4WeightOf } from './deepseek-v4-fp4.js';

/**
 * How a merged weight gets its scale back (see scaled-fp8-output.ts):
 * - `keep`: ComfyUI's scaled fp8 as it patched it before reading such files as comfy_quant layers,
 *   now only for e5m2 codes: the old scale stays and code' = round(code + ΔW / scale) (the plan
 *   divides the terms' scales by it);
 * - `reciprocal`: transformers' FineGrainedFP8 quantizer: q = 448 / amax, code = e4m3(W·q), and
 *   the stored `weight_scale_inv` is 1 / q;
 * - `divide`: compressed-tensors (llm-compressor): s = amax / 448 (at least float32 eps),
 *   code = e4m3(W / s), and the stored `weight_scale` is s.
 * - `modelopt`: ModelOpt's FP8 export (quant_utils.py, unified_export_hf.py): W in the model's
 *   dtype d (config.json `torch_dtype`), s = f32(amax / 448) stored as a 0-dim f32 tensor, and
 *   code = e4m3(W / s) computed as torch computes a d tensor over a 0-dim f32 one on the GPU:
 *   s cast to d, the quotient in f32 rounded to d, then cast to e4m3.
 * - `comfy`: ComfyUI's LoRA patch on a comfy_quant fp8 layer, or on an e4m3fn scaled fp8 one,
 *   which it loads as such (ops.py set_weight: the quantized layout's quantize with
 *   scale="recalculate"): s = f32(amax) / 448 in f32, stored as the
 *   `weight_scale`, and code = e4m3(clamp(W · f32(1 / s), ±448)) (a product by the reciprocal,
 *   as comfy_kitchen's quantize_per_tensor_fp8 computes it); int8_tensorwise layers by their own
 *   rule (comfy-int8.ts).
 * - `dequantize-only`: weights written only dequantized (ModelOpt NVFP4, integer weights).
 */
export type ScaleRule = 'keep' | 'reciprocal' | 'divide' | 'modelopt' | 'comfy' | 'dequantize-only';

/** How messages name each kind. */
export const SCALED_FP8_KIND_NAME: Readonly<Record<ScaledFp8Base['kind'], string>> = {
  'block-fp8': 'block-wise fp8', 'compressed-tensors-fp8': 'compressed-tensors fp8', 'modelopt-fp8': 'ModelOpt FP8',
  'modelopt-nvfp4': 'ModelOpt NVFP4', 'comfy-scaled-fp8': 'scaled fp8', 'comfy-quant-fp8': 'ComfyUI fp8 (comfy_quant)',
  'compressed-tensors-int': 'compressed-tensors int', gptq: 'GPTQ', awq: 'AWQ', 'mlx-affine': 'mlx affine',
  mxfp4: 'MXFP4', 'fbgemm-fp8': 'fbgemm fp8',
};

/**
 * The weight (and its format, as messages name it) that keeps a base with quantized weights from
 * any fp8 output type, or undefined when it has none: an output type converts every float tensor,
 * so the scale tensors beside the codes (and the input and KV-cache scales) would be converted as
 * if they were weights, and the plain float tensors would become fp8 without scales beside scaled
 * ones, which no reader of these formats takes. Such a base keeps its format (no output type:
 * merged weights are quantized again) or is written dequantized (f32, f16, bf16), whatever kind it
 * is (scaled-fp8-output.ts).
 */
export function fp8OutputBlocker(scaled: ScaledFp8Base | undefined): { weight: ScaledFp8Weight; format: string } | undefined {
  const weight = scaled ? [...scaled.weights.values()][0] : undefined;
  if (!scaled || !weight) return undefined;
  const format = scaled.kind === 'comfy-quant-fp8' ? `comfy_quant format "${comfyQuantFormat(weight)}"` : SCALED_FP8_KIND_NAME[scaled.kind];
  return { weight, format };
}

/** A comfy_quant layer's format as its config names it. */
export function comfyQuantFormat(w: ScaledFp8Weight): string {
  return w.scaleLayout ?? (w.codeDtype === 'F8_E5M2' ? 'float8_e5m2' : 'float8_e4m3fn');
}

/** One weight stored as fp8 codes times a grid of scales. */
export interface ScaledFp8Weight {
  weightKey: string;
  /** The codes' dtype (e4m3fn, or e5m2 in a scaled fp8 file; bf16 for NVFP4 codes times their block scales; f32 for integer weights' (q − zero) × scale). */
  codeDtype: 'F8_E4M3' | 'F8_E5M2' | 'BF16' | 'F32';
  scaleKey: string;
  /** F8_E8M0: DeepSeek-V4's power-of-two scales (deepseek-v4-fp4.ts). */
  scaleDtype: Extract<FloatDType, 'F32' | 'BF16' | 'F16'> | 'F8_E8M0';
  /**
   * `ue8m0`: its scales are powers of two stored as floats (DeepSeek-V3.1 / V3.2's F32
   * `weight_scale_inv` under `quantization_config.scale_fmt: "ue8m0"`), recomputed by the same
   * power-of-two rule as F8_E8M0 scales when the weight is merged.
   */
  scaleFormat?: 'ue8m0';
  /** The weight as rows × cols (a conv's kernel dims folded into cols). */
  rows: number;
  cols: number;
  /** The grid: a block is blockRows × blockCols (the last ones in each direction may be shorter). */
  blockRows: number;
  blockCols: number;
  /** ⌈rows/blockRows⌉ × ⌈cols/blockCols⌉ scales, row-major, as stored (exact in f64). */
  scales: Float64Array;
  /** The activation scale beside it (static schemes), left as it is. */
  inputScaleKey?: string;
  /**
   * `mxfp8`: ComfyUI's mxfp8 layer (comfy-mxfp8.ts): its scales are e8m0 exponents in a swizzled
   * U8 tensor, re-quantized by that layer's rule; `scales` is then empty and `loadScales` reads them.
   */
  scaleLayout?: 'mxfp8' | 'nvfp4' | 'int8_tensorwise' | 'fp4-e8m0';
  loadScales?: () => Promise<Float64Array>;
  /**
   * `nvfp4`: ComfyUI's nvfp4 layer (comfy-nvfp4.ts): `view` is the weight as f32 values (rows,
   * cols) as comfy_kitchen dequantizes them (`scales` is then 1), `scaleKey` its weight_scale_2 and
   * `blockScaleKey` the block scales; both
   * rewritten when it is merged and quantized again, left out when it is dequantized.
   * `int8_tensorwise`: ComfyUI's int8 layer (comfy-int8.ts): `view` is its codes as bf16, its
   * scales one per tensor or per row; written back as int8 codes.
   */
  blockScaleKey?: string;
  view?: ViewTensor;
  /**
   * `fp4-e8m0`: DeepSeek-V4's packed FP4 weight (deepseek-v4-fp4.ts): `view` its f32 values, `scales`
   * one 1 per row, `scaleKey` its E8M0 `.scale`; the dtype and shape its codes are stored in, which a
   * merged one is written in again.
   */
  storedDtype?: 'I8' | 'U8' | 'F4';
  storedShape?: number[];
}

/** A base whose quantized weights are all read here. */
export interface ScaledFp8Base {
  kind: 'block-fp8' | 'compressed-tensors-fp8' | 'modelopt-fp8' | 'modelopt-nvfp4' | 'comfy-scaled-fp8' | 'comfy-quant-fp8'
    | 'compressed-tensors-int' | 'gptq' | 'awq' | 'mlx-affine' | 'mxfp4' | 'fbgemm-fp8';
  rule: ScaleRule;
  /**
   * Under `dequantize-only`, the dtype the weights are written in when no output dtype is asked,
   * where their real values are exact in it (gpt-oss's MXFP4 experts: bf16, as transformers
   * dequantizes them); absent: an output dtype must be asked.
   */
  writtenAs?: Extract<FloatDType, 'BF16'>;
  /** The dtype the quantizer reads W in (the `modelopt` rule): the model's torch_dtype. */
  quantizerDtype?: 'F32' | 'F16' | 'BF16';
  /** Files of the base folder that describe the quantization alone (hf_quant_config.json): left out when dequantized. */
  quantizationFiles?: readonly string[];
  /** Weight key → its codes' grid and scales. */
  weights: ReadonlyMap<string, ScaledFp8Weight>;
  /** Weights with a scale sibling that are not read (another shape or dtype): left as they are, never merged or converted. */
  unread: readonly string[];
  /** Why an unread weight is not read, where the checkpoint says (a comfy_quant format), for the messages refusing it. */
  unreadWhy?: ReadonlyMap<string, string>;
  /** `__metadata__` entries that describe the quantization alone: left out of a dequantized file. */
  metadataLeftOut?: readonly string[];
  /** `quantization_config.scale_fmt` (DeepSeek-V3.1 "ue8m0": power-of-two scales), when set. */
  scaleFormat?: string;
  /**
   * Tensors that mean something only while the weights stay quantized: a scaled fp8 file's marker
   * and input scales; an fp8 LLM checkpoint's activation and KV-cache scales (see RUNTIME_SCALE).
   */
  quantizationOnly?: readonly string[];
}

const SCALE_DTYPES = new Set(['F32', 'BF16', 'F16']);

/**
 * Scales a quantized runtime reads besides the weights' own: static activation scales
 * (`input_scale`; `activation_scale` in transformers' FineGrainedFP8 with `activation_scheme:
 * "static"`, as Ministral 3 and Devstral 2 FP8 ship them) and the KV cache's, under every name vLLM loads them by (weight_utils.py's
 * maybe_remap_kv_scale_name and the fp8 / compressed-tensors cache-scale mappers):
 * `self_attn.k_scale` / `v_scale` (compressed-tensors' kv_cache_scheme), the deprecated
 * `kv_scale`, ModelOpt's `k_proj.k_scale` / `v_proj.v_scale`, Quark's and compressed-tensors'
 * `{q,k,v}_proj.output_scale` and `prob_output_scale`, and `q_scale` / `prob_scale`. vLLM loads them
 * only through the quantization config's KV-cache method; transformers' float models have no such
 * parameters.
 */
const RUNTIME_SCALE = /\.(?:input_scale|activation_scale|k_scale|v_scale|q_scale|kv_scale|prob_scale|prob_output_scale|[qkv]_proj\.output_scale)$/;

/** The fp8 weights of `base` that this reads, or undefined when config.json names neither kind. Malformed ones throw, naming the tensor. */
export async function findScaledFp8(base: BaseModel, config: ModelConfig | undefined, modelopt?: ModelOptQuantization): Promise<ScaledFp8Base | undefined> {
  if (base.valueScales) return comfyScaledFp8(base, base.valueScales);
  const comfyQuant = await findComfyQuant(base);
  if (comfyQuant) return comfyQuant;
  if (modelopt) {
    // FP8 per tensor only: the other ModelOpt formats stay refused by their scale tensors.
    if (modelopt.algo !== 'FP8') return undefined;
    return {
      kind: 'modelopt-fp8', rule: 'modelopt', quantizerDtype: modelDtype(config),
      ...(await readGrids(base, '.weight_scale', (rows, cols, scaleShape) => (scaleShape.length <= 1 && product(scaleShape) === 1 ? [rows, cols] : undefined))),
      quantizationOnly: runtimeScales(base), ...(modelopt.file ? { quantizationFiles: [modelopt.file] } : {}),
    };
  }
  const q = config?.raw.quantization_config;
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  const qc = q as Record<string, unknown>;
  const where = `${base.name}: config.json quantization_config`;
  if (qc.quant_method === 'fp8') {
    if (qc.fmt !== undefined && qc.fmt !== 'e4m3') throw new MergeError('UNSUPPORTED_FORMAT', `${where}: fp8 format "${String(qc.fmt)}" is not supported (only e4m3)`);
    // Absent: FineGrainedFP8Config's default, 128 × 128. null: one scale per tensor (Ministral 3, Devstral 2 FP8), which
    // FP8Linear gives a grid of one block and the quantizer saves squeezed (shape []).
    const perTensor = qc.weight_block_size === null;
    const block = qc.weight_block_size === undefined || perTensor ? [128, 128] : blockShape(qc.weight_block_size, `${where}.weight_block_size`);
    // DeepSeek's kernels round scales to powers of two for any scale_fmt that is not None: one of
    // another JSON type is no form this tool can name, and is refused rather than read as unset.
    if (qc.scale_fmt !== undefined && qc.scale_fmt !== null && typeof qc.scale_fmt !== 'string') {
      throw new MergeError('BAD_CONFIG', `${where}.scale_fmt is ${JSON.stringify(qc.scale_fmt).slice(0, 80)}, not a string (DeepSeek writes "ue8m0"): fix config.json`);
    }
    const scaleFormat = typeof qc.scale_fmt === 'string' ? qc.scale_fmt : undefined;
    // DeepSeek-V4 in DeepSeek's own names: `<m>.scale` F8_E8M0 beside fp8 and packed FP4 weights
    // (deepseek-v4-fp4.ts); transformers' FP8 quantizer renames them `weight_scale_inv` as it loads them.
    const suffix = hasE8m0Scales(base) ? '.scale' : '.weight_scale_inv';
    const fp4 = suffix === '.scale' ? [...base.tensors.keys()].flatMap((k) => fp4WeightOf(base, k) ?? []) : [];
    // Stored as the grid itself, (⌈out/bm⌉, ⌈in/bn⌉): the same count in another shape (transposed, flat) is not read as one.
    const grids = await readGrids(base, suffix, (rows, cols, scaleShape) => (
      perTensor ? (scaleShape.length <= 2 && product(scaleShape) === 1 ? [rows, cols] : undefined)
        : scaleShape.length === 2 && scaleShape[0] === Math.ceil(rows / block[0]) && scaleShape[1] === Math.ceil(cols / block[1]) ? block : undefined));
    // transformers' FP8 experts: fused parameters with a grid of scales per expert (fp8-fused-experts.ts).
    const fused = await readFusedFp8Experts(base, perTensor ? undefined : [block[0], block[1]]);
    const fp4Keys = new Set(fp4.map((w) => w.key));
    return {
      kind: 'block-fp8', rule: 'reciprocal', ...(scaleFormat ? { scaleFormat } : {}),
      ...grids, unread: grids.unread.filter((k) => !fp4Keys.has(k)),
      weights: new Map([...grids.weights, ...fused.map((w) => [w.weightKey, w] as const), ...fp4.map((w) => [w.key, fp4ScaledWeight(base, w)] as const)]
        // scale_fmt "ue8m0" over float scales (DeepSeek-V3.1 / V3.2): powers of two, kept so when re-quantized.
        .map(([k, w]) => [k, scaleFormat === 'ue8m0' && w.scaleDtype !== 'F8_E8M0' ? { ...w, scaleFormat: 'ue8m0' as const } : w] as const)),
      quantizationOnly: runtimeScales(base),
    };
  }
  if (qc.quant_method === 'fbgemm_fp8') {
    return {
      kind: 'fbgemm-fp8', rule: 'dequantize-only',
      // FbgemmFp8Linear's weight_scale: (out, 1), a scale per output row.
      ...(await readGrids(base, '.weight_scale', (rows, cols, scaleShape) => (scaleShape.length === 2 && scaleShape[0] === rows && scaleShape[1] === 1 ? [1, cols] : undefined))),
      quantizationOnly: runtimeScales(base),
    };
  }
  if (qc.quant_method === 'compressed-tensors') {
    const blocks = compressedTensorsBlocks(qc, where);
    if (!blocks) return undefined;
    return {
      kind: 'compressed-tensors-fp8', rule: 'divide',
      ...(await readGrids(base, '.weight_scale', (rows, cols, scaleShape) => {
        const n = product(scaleShape);
        if (n === 1 && scaleShape.length <= 2) return [rows, cols] as const; // per tensor
        if (scaleShape.length === 2 && scaleShape[0] === rows && scaleShape[1] === 1) return [1, cols] as const; // per channel
        return blocks.find(([bm, bn]): boolean => scaleShape.length === 2 && scaleShape[0] === Math.ceil(rows / bm) && scaleShape[1] === Math.ceil(cols / bn));
      })),
      quantizationOnly: runtimeScales(base),
    };
  }
  return undefined;
}

const TORCH_FLOAT: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** config.json's torch_dtype (or dtype) as the quantizer read the weights; bf16 when it names none. */
export function modelDtype(config: ModelConfig | undefined): 'F32' | 'F16' | 'BF16' {
  const named = languageModelField(config, 'torch_dtype') ?? languageModelField(config, 'dtype');
  return (typeof named === 'string' ? TORCH_FLOAT[named] : undefined) ?? 'BF16';
}

/** The base's activation and KV-cache scales (RUNTIME_SCALE): float tensors of a few values. */
export function runtimeScales(base: BaseModel): string[] {
  return [...base.tensors].filter(([key, t]) => RUNTIME_SCALE.test(key) && SCALE_DTYPES.has(t.dtype)).map(([key]) => key);
}

/**
 * The block shapes compressed-tensors' groups allow, or undefined when a group is not symmetric
 * 8-bit float weights in the `float-quantized` format (int, NVFP4, packed, sparse: left to the
 * guard, which refuses them).
 */
function compressedTensorsBlocks(qc: Record<string, unknown>, where: string): [number, number][] | undefined {
  const groups = qc.config_groups;
  if (typeof groups !== 'object' || groups === null) return undefined;
  const sparsity = qc.sparsity_config as Record<string, unknown> | null | undefined;
  if (sparsity && typeof sparsity === 'object' && sparsity.format !== undefined && sparsity.format !== 'dense') return undefined;
  const blocks: [number, number][] = [];
  for (const group of Object.values(groups as Record<string, unknown>)) {
    if (typeof group !== 'object' || group === null) return undefined;
    const g = group as Record<string, unknown>;
    const format = g.format ?? qc.format;
    const w = g.weights as Record<string, unknown> | null | undefined;
    if (format !== 'float-quantized' || !w || w.num_bits !== 8 || w.type !== 'float' || w.symmetric === false || w.dynamic === true) return undefined;
    if (w.strategy === 'block') blocks.push(blockShape(w.block_structure, `${where} block_structure`));
    else if (w.strategy !== 'channel' && w.strategy !== 'tensor') return undefined;
  }
  return blocks;
}

function blockShape(value: unknown, where: string): [number, number] {
  const parsed = typeof value === 'string' ? value.split('x').map(Number) : value;
  if (!Array.isArray(parsed) || parsed.length !== 2 || !parsed.every((n) => Number.isSafeInteger(n) && n > 0)) {
    // Numbers as read: JSON.stringify shows NaN and Infinity (Python's literals, 1e400) as null.
    const quoted = Array.isArray(value) ? `[${value.map(shownValue).join(',')}]` : shownValue(value);
    throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${quoted}; expected two positive block sizes`);
  }
  return [parsed[0], parsed[1]];
}

/** Does the base hold DeepSeek-V4's `<m>.scale` F8_E8M0 beside a `<m>.weight`? */
function hasE8m0Scales(base: BaseModel): boolean {
  for (const [key, t] of base.tensors) if (t.dtype === 'F8_E8M0' && key.endsWith('.scale') && base.tensors.has(`${key.slice(0, -'.scale'.length)}.weight`)) return true;
  return false;
}

/**
 * Every `<m>.weight` with a `<m><suffix>` sibling, its grid checked against the scale's shape; and,
 * not read, every F8_E4M3 `<m>.weight` without one: these checkpoints give each fp8 weight its
 * scale (vLLM and transformers fail to load one without), so its codes are no weights either.
 */
async function readGrids(
  base: BaseModel, suffix: string, gridOf: (rows: number, cols: number, scaleShape: readonly number[]) => readonly number[] | undefined,
): Promise<Pick<ScaledFp8Base, 'weights' | 'unread' | 'unreadWhy'>> {
  const weights = new Map<string, ScaledFp8Weight>();
  const unread: string[] = [];
  for (const [scaleKey, scale] of base.tensors) {
    if (!scaleKey.endsWith(suffix)) continue;
    const stem = scaleKey.slice(0, -suffix.length);
    const weightKey = `${stem}.weight`;
    const weight = base.tensors.get(weightKey);
    const e8m0 = suffix === '.scale' && scale.dtype === 'F8_E8M0';
    if (!weight || weight.dtype !== 'F8_E4M3' || weight.shape.length !== 2 || !(SCALE_DTYPES.has(scale.dtype) || e8m0)) {
      if (weight) unread.push(weightKey);
      continue;
    }
    const [rows, cols] = weight.shape;
    const grid = gridOf(rows, cols, scale.shape);
    const expected = grid ? [Math.ceil(rows / grid[0]), Math.ceil(cols / grid[1])] : undefined;
    const count = product(scale.shape);
    if (!grid || !expected || count !== expected[0] * expected[1]) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${scaleKey}" has shape [${scale.shape.join(', ')}], which is no grid of scales over ${weightKey} [${rows}, ${cols}] that config.json's quantization_config describes`);
    }
    const scales = e8m0 ? e8m0Values(await base.read(scaleKey)) : Float64Array.from(decodeToF32(await base.read(scaleKey), scale.dtype as FloatDType));
    const bad = badScales(base.name, scaleKey, scales);
    if (bad) throw bad;
    const entry: ScaledFp8Weight = {
      weightKey, codeDtype: 'F8_E4M3', scaleKey, scaleDtype: scale.dtype as ScaledFp8Weight['scaleDtype'], rows, cols, blockRows: grid[0], blockCols: grid[1], scales,
    };
    if (base.tensors.has(`${stem}.input_scale`)) entry.inputScaleKey = `${stem}.input_scale`;
    else if (base.tensors.has(`${stem}.activation_scale`)) entry.inputScaleKey = `${stem}.activation_scale`;
    weights.set(weightKey, entry);
  }
  const unreadWhy = new Map<string, string>();
  for (const [key, t] of base.tensors) {
    if (!key.endsWith('.weight') || t.dtype !== 'F8_E4M3' || base.tensors.has(`${key.slice(0, -'.weight'.length)}${suffix}`)) continue;
    unread.push(key);
    unreadWhy.set(key, `F8_E4M3 codes with no ${key.slice(0, -'weight'.length)}${suffix.slice(1)} beside them, which the checkpoint's quantization config gives every fp8 weight`);
  }
  return { weights, unread, unreadWhy };
}

/**
 * Comfy-Org's scaled fp8: one scale per weight, the whole weight its one block. Current ComfyUI
 * loads such a file as comfy_quant float8_e4m3fn layers (utils.py convert_old_quants:
 * `scale_weight` becomes `weight_scale`), so a LoRA patch recalculates each merged layer's scale
 * (the `comfy` rule). It reads every layer as e4m3fn whatever the marker says; a file with e5m2
 * codes is merged by the rule ComfyUI applied before that change (`keep`: the scale stays), which
 * reads its codes as what they are.
 */
function comfyScaledFp8(base: BaseModel, valueScales: ReadonlyMap<string, number>): ScaledFp8Base {
  const weights = new Map<string, ScaledFp8Weight>();
  const unread: string[] = [];
  for (const [weightKey, scale] of valueScales) {
    const weight = base.tensors.get(weightKey)!;
    const scaleKey = `${weightKey.slice(0, -'weight'.length)}scale_weight`;
    const scaleDtype = base.tensors.get(scaleKey)?.dtype;
    if ((weight.dtype !== 'F8_E4M3' && weight.dtype !== 'F8_E5M2') || weight.shape.length < 2 || !scaleDtype || !SCALE_DTYPES.has(scaleDtype)) {
      unread.push(weightKey);
      continue;
    }
    const rows = weight.shape[0];
    const cols = product(weight.shape.slice(1));
    weights.set(weightKey, {
      weightKey, codeDtype: weight.dtype, scaleKey, scaleDtype: scaleDtype as ScaledFp8Weight['scaleDtype'], rows, cols, blockRows: rows, blockCols: cols, scales: Float64Array.of(scale),
    });
  }
  const quantizationOnly = [...base.tensors.keys()].filter((k) => isScaledFp8Marker(k) || k.endsWith('.scale_input'));
  if ([...weights.values()].some((w) => w.codeDtype === 'F8_E5M2')) return { kind: 'comfy-scaled-fp8', rule: 'keep', weights, unread, quantizationOnly };
  // In place, such a weight took ΔW / scale; ComfyUI now reads it as e4m3fn codes, which it is not.
  const unreadWhy = new Map(unread.map((key) => {
    const t = base.tensors.get(key)!;
    return [key, `a scale_weight beside a ${t.dtype} weight of shape [${t.shape.join(', ')}], where a scaled fp8 file holds fp8 codes of a matrix or kernel`];
  }));
  return { kind: 'comfy-scaled-fp8', rule: 'comfy', weights, unread, unreadWhy, quantizationOnly };
}
