/**
 * Merging into fp8 weights stored as codes × scales (formats/scaled-fp8.ts), in real values:
 * W' = code × scale + ΔW rounded once, on either backend: each op is a scale step by the block's
 * scales, then the adapters' additive terms, which the certified kernels run as a plain op with a
 * base scale (engine/exact/plain-op.ts); a block grid's row band is one op.
 *
 * Output, as the user asks:
 * - default (each tensor keeps its type): fp8 again, each block (or channel, or tensor) quantized
 *   anew from W' rounded once to float32, with its scale recomputed as the checkpoint's quantizer
 *   computes it (transformers' FineGrainedFP8: q = 448 / amax, code = e4m3(W'·q), scale_inv =
 *   1 / q; compressed-tensors: s = amax / 448, code = e4m3(W' / s)), all in float32. A block ΔW
 *   grows past its old maximum would saturate at ±448 under the old scale; a recomputed one never
 *   does. The scale tensors are rewritten to match; `input_scale` and config.json stay as they are.
 *   ComfyUI's nvfp4 layers go back to nvfp4 (comfy-nvfp4.ts): packed codes, written in a shape and
 *   type of their own (storedAs), and both scale tensors rewritten after them.
 * - `--dtype f32/f16/bf16`: W' itself (correctly rounded), every fp8 weight dequantized the same
 *   way, the scale, input_scale and KV-cache scale tensors left out and `quantization_config`
 *   dropped (nothing reads them then: vLLM loads KV-cache scales only through a quantization
 *   config's KV-cache method, and they calibrate activations the merge has changed).
 * - `--dtype f8_e4m3/f8_e5m2`: refused for every kind, with or without --dtype-merged-only
 *   (fp8OutputBlocker): the output type would convert the scale tensors as if they were weights.
 *
 * Streaming: a weight goes in row slabs that start on its blocks' rows, so every slab holds whole
 * blocks. A per-tensor scale needs max |W'| over the whole tensor before any code can be written,
 * so its first slab merges every slab for that maximum; W' of those slabs is held until each is
 * encoded when the tensor's merged values take at most HELD_SLABS slabs' bytes (each merged once),
 * and merged again slab by slab when larger (memory stays that of a slab).
 * A rewritten scale tensor is written after its weight (the base is seen through a view that
 * orders it so), when all its blocks are known.
 */
import { decodeToF32, DTYPE_BYTES, encodeFromF32, type FloatDType } from '../dtype.js';
import type { MergeBackend, MergeOp } from '../engine/merge-op.js';
import type { UpdateStep } from '../engine/update-steps.js';
import { isMergeError, MergeError, throwIfAborted } from '../errors.js';
import { baseModelView, isSafetensorsModel, type ViewTensor } from '../formats/base-model-view.js';
import { comfyQuantFormat, fp8OutputBlocker, SCALED_FP8_KIND_NAME, type ScaledFp8Base, type ScaledFp8Weight } from '../formats/scaled-fp8.js';
import { keepUnreachedRows } from '../engine/low-rank-factors.js';
import { reachedRows } from '../plan/reached-rows.js';
import { slabOp } from '../plan/load-steps.js';
import type { TensorUpdate } from '../plan/merge-plan.js';
import { unreadScaledWeight } from '../plan/quantized-weights.js';
import { requantizeSlabOn } from './fp8-requantize.js';
import { e8m0Byte, FP4_GROUP, fp4QuantizeOn } from '../formats/deepseek-v4-fp4.js';
import { fp8Maxima } from '../formats/fp8-block-codes.js';
import { blockedScaleShape, mxfp8PastFloat32, mxfp8RowSource, swizzleMxfp8Scales } from '../formats/comfy-mxfp8.js';
import { decodeSourceRows } from '../formats/row-decoders.js';
import { NVFP4_BLOCK, nvfp4TensorScale } from '../formats/comfy-nvfp4.js';
import { comfyCodes } from '../formats/comfy-requantize.js';
import { int8AsBf16 } from '../formats/comfy-int8.js';
import type { PreparedMerge } from './prepare-merge.js';
import { lcm } from '../integers.js';
import { formatBytes } from '../format.js';
import { addOverflow, explainNonFinite, hasNonFinite, noOverflow, overflowInOp, type OverflowSpan } from './value-checks.js';
import { spanRows, type ExpertRows } from '../formats/encode-tally.js';
import { BufferPool } from '../buffer-pool.js';

/** Kinds written only dequantized: what the note calls them, their real value, the format not written again. */
const DEQUANTIZED_ONLY: Partial<Record<ScaledFp8Base['kind'], { what: string; real: string; format: string }>> = {
  'modelopt-nvfp4': { what: 'ModelOpt NVFP4 weights (weight_scale per 16 inputs, weight_scale_2)', real: 'code × (block scale × weight_scale_2), each product in float32 as ModelOpt dequantizes', format: 'NVFP4 as ModelOpt does' },
  'compressed-tensors-int': { what: 'compressed-tensors int weights (weight_packed or int8 weight, weight_scale, weight_zero_point)', real: '(q − zero point) × weight_scale', format: 'compressed-tensors int' },
  gptq: { what: 'GPTQ weights (qweight, qzeros, scales, g_idx)', real: '(q − zero point) × scale of the input\'s group', format: 'GPTQ' },
  awq: { what: 'AWQ GEMM weights (qweight, qzeros, scales)', real: '(q − zero point) × scale of the input\'s group', format: 'AWQ' },
  'mlx-affine': { what: 'mlx affine-quantized weights (uint32 weight, scales, biases)', real: 'q × scale + bias of the input\'s group', format: 'mlx\'s affine quantization' },
  mxfp4: { what: 'MXFP4 expert parameters (_blocks, _scales)', real: 'e2m1 code × 2^(scale − 127)', format: 'MXFP4' },
  'fbgemm-fp8': { what: 'fbgemm fp8 weights (weight_scale per row)', real: 'code × weight_scale of its row', format: 'fbgemm fp8 (its quantize_fp8_per_row kernel)' },
};

/**
 * Why --dtype-merged-only is refused where the quantized weights are written dequantized: the ones
 * no adapter changes would stay quantized beside dequantized ones, under a config.json that no
 * longer names the quantization. What else to pass depends on the kind: a dequantize-only kind
 * cannot be written quantized again (gpt-oss's MXFP4 experts are written bf16 without --dtype).
 */
function mergedOnlyRefusal(scaled: ScaledFp8Base): string {
  const kind = SCALED_FP8_KIND_NAME[scaled.kind];
  if (scaled.kind === 'mxfp4') {
    return '--dtype-merged-only would leave its MXFP4 expert parameters half dequantized, which transformers cannot load (it reads them all as MXFP4 or all as floats); '
      + 'leave it out (every MXFP4 expert parameter is then dequantized to that dtype) or leave out --dtype (they are written bf16, as transformers dequantizes them)';
  }
  if (scaled.rule === 'dequantize-only') {
    return `--dtype-merged-only would leave its ${kind} weights half dequantized; leave it out (every ${kind} weight is then dequantized to that dtype: re-quantizing to ${DEQUANTIZED_ONLY[scaled.kind]?.format ?? kind} is not supported)`;
  }
  return `--dtype-merged-only would leave its ${kind} weights half dequantized; leave it out (every ${kind} weight is then dequantized) or leave out --dtype`;
}

/** The plan's note on such a base. */
export function scaledFp8Note(scaled: ScaledFp8Base): string | undefined {
  if (scaled.rule === 'keep') return undefined; // merged in place, as before (see ScaleRule)
  const n = scaled.weights.size;
  // transformers' FP8 experts: fused parameters with a grid of scales per expert (formats/fp8-fused-experts.ts).
  const fused = [...scaled.weights.keys()].filter((k) => !k.endsWith('.weight')).length;
  // DeepSeek-V4 in DeepSeek's names: E8M0 `.scale` grids, and packed FP4 experts (formats/deepseek-v4-fp4.ts).
  const fp4 = [...scaled.weights.values()].filter((w) => w.scaleLayout === 'fp4-e8m0').length;
  const e8m0 = [...scaled.weights.values()].some((w) => w.scaleDtype === 'F8_E8M0');
  const what = scaled.kind === 'block-fp8' && e8m0
    ? `${n - fp4} block-wise fp8 weights (E8M0 .scale per 128 × 128 block, DeepSeek-V4's)${fp4 > 0 ? ` and ${fp4} packed FP4 weights (E8M0 .scale per 32 inputs)` : ''}`
    : scaled.kind === 'block-fp8'
    ? `${n} block-wise fp8 weights (weight_scale_inv${fused > 0 ? `; ${fused} of them fused expert parameters, <parameter>_scale_inv holding each expert's scales` : ''})`
    : scaled.kind === 'modelopt-fp8' ? `${n} ModelOpt FP8 weights (weight_scale per tensor)`
      : DEQUANTIZED_ONLY[scaled.kind] ? `${n} ${DEQUANTIZED_ONLY[scaled.kind]!.what}`
        : scaled.kind === 'comfy-quant-fp8' ? `${n} ComfyUI ${comfyFormats(scaled)} weights (comfy_quant, weight_scale per tensor${[...scaled.weights.values()].some((w) => w.scaleLayout === 'int8_tensorwise' && w.blockRows < w.rows) ? ' or per row' : ''}${[...scaled.weights.values()].some((w) => w.scaleLayout === 'mxfp8') ? ' or per 32 inputs' : ''}${[...scaled.weights.values()].some((w) => w.scaleLayout === 'nvfp4') ? ', nvfp4 weight_scale per 16 inputs and weight_scale_2' : ''})`
          : scaled.kind === 'comfy-scaled-fp8' ? `${n} scaled fp8 weights (float8_e4m3fn, scale_weight per tensor)`
          : `${n} compressed-tensors fp8 weights (weight_scale)`;
  const runtime = (scaled.quantizationOnly ?? []).filter((k) => !k.endsWith('.input_scale') && !k.endsWith('.activation_scale') && !k.endsWith('.comfy_quant'));
  const kv = runtime.length === 0 ? '' : `; --dtype also leaves out its ${runtime.length} KV-cache scale tensors (such as ${runtime[0]}), which only a quantized runtime reads and whose calibration the merged weights outdate`;
  if (scaled.kind === 'mxfp4') return mxfp4Note(scaled);
  if (scaled.rule === 'dequantize-only') {
    const d = DEQUANTIZED_ONLY[scaled.kind]!;
    return `the base holds ${what}: adapters are merged into their real values (${d.real}) and every weight is written dequantized, with --dtype bf16 (or f16, f32) only: re-quantizing to ${d.format} is not supported; config.json drops quantization_config${kv}`;
  }
  if (scaled.kind === 'comfy-quant-fp8') {
    const unread = scaled.unread.length ? `; ${scaled.unread.length} weights in other comfy_quant formats (such as ${scaled.unread[0]}) are copied as they are and cannot be merged` : '';
    const nvfp4 = [...scaled.weights.values()].some((w) => w.scaleLayout === 'nvfp4') ? '; merged nvfp4 weights (code × (block scale × weight_scale_2), each product in float32 as comfy_kitchen dequantizes) are written as nvfp4 again with weight_scale_2 = max |W\'| / (448 × 6) and their block scales recalculated, as ComfyUI\'s LoRA patch does (rounded to nearest even)' : '';
    return `the base holds ${what}: adapters are merged into their real values (code × weight_scale); merged weights are written in their format again with weight_scale recalculated from their largest magnitude, as ComfyUI's LoRA patch does (rounded to nearest even), comfy_quant and input_scale kept; or dequantized with --dtype f32/f16/bf16${nvfp4}${unread}`;
  }
  if (scaled.kind === 'comfy-scaled-fp8') {
    return `the base holds ${what}: adapters are merged into their real values (code × scale_weight); merged weights are written as fp8 again with scale_weight recalculated from their largest magnitude, as current ComfyUI's LoRA patch does (rounded to nearest even), the marker and scale_input kept; or dequantized with --dtype f32/f16/bf16`;
  }
  if (e8m0) {
    return `the base holds ${what}: adapters are merged into their real values (code × 2^(scale − 127)); merged weights are written in their format again, each block's (or group's) power-of-two scale recomputed as DeepSeek's kernels compute it (2^⌈log2(amax / 448)⌉, or / 6 for FP4), or dequantized with --dtype f32/f16/bf16${kv}`;
  }
  if ([...scaled.weights.values()].some((w) => w.scaleFormat === 'ue8m0')) {
    return `the base holds ${what}: adapters are merged into their real values (code × scale); they are written as fp8 again with each block's power-of-two scale (scale_fmt "ue8m0") recomputed as DeepSeek's kernels compute it (2^⌈log2(amax / 448)⌉), or dequantized with --dtype f32/f16/bf16${kv}`;
  }
  return `the base holds ${what}: adapters are merged into their real values (code × scale); they are written as fp8 again with each block's scale recomputed as the quantizer does, or dequantized with --dtype f32/f16/bf16${kv}`;
}

/**
 * gpt-oss's MXFP4 experts, decoded because an adapter changes some: what is written instead, and
 * how much larger (a value's 4 bits and its share of a block's scale byte, against bf16's 16 bits).
 */
function mxfp4Note(scaled: ScaledFp8Base): string {
  const values = [...scaled.weights.values()].reduce((n, w) => n + w.rows * w.cols, 0);
  const stored = (values * 17) / 32;
  const first = scaled.weights.keys().next().value!;
  return `the base stores its ${scaled.weights.size} expert parameters (such as ${first}) as MXFP4 (_blocks and _scales) and an adapter changes them: `
    + 'every one is decoded exactly as transformers does with Mxfp4Config(dequantize=True) (e2m1 code × 2^(scale − 127), each expert (in, out)), '
    + 'adapters are merged into those values, and each is written under its own name in bf16 (or the --dtype asked), as merge_and_unload saves it; '
    + `config.json drops quantization_config. The output is larger: those parameters take ${formatBytes(values * 2)} in bf16 instead of ${formatBytes(stored)} (3.8×)`;
}

/** The comfy_quant formats of a base's read weights, as its configs name them. */
function comfyFormats(scaled: ScaledFp8Base): string {
  const formats = new Set<string>([...scaled.weights.values()].map(comfyQuantFormat));
  return ['float8_e4m3fn', 'float8_e5m2', 'mxfp8', 'nvfp4', 'int8_tensorwise'].filter((f) => formats.has(f)).join(' and ') || 'fp8';
}

/** Is `x` a positive power of two (an F32 scale of the form scale_fmt "ue8m0" promises)? */
function isPowerOfTwo(x: number): boolean {
  if (!(x > 0) || !Number.isFinite(x)) return false;
  const bits = new DataView(new Float64Array([x]).buffer);
  // float64: no mantissa bit set (every f32, subnormal ones included, is a normal f64).
  return (bits.getUint32(4, true) & 0xfffff) === 0 && bits.getUint32(0, true) === 0;
}

/** What mergeModel needs to merge into and write a base with scaled fp8 weights. */
export interface ScaledFp8Output {
  /** The merge with the base seen so that every rewritten scale tensor follows its weight (or is left out), and config.json's changes. */
  readonly prepared: PreparedMerge;
  /** Tensor updates with no terms for the scaled weights no adapter changes, when all are dequantized. */
  readonly extraUpdates: readonly TensorUpdate[];
  /** Is this weight's every slab computed here? */
  handles(key: string): boolean;
  /** The row multiple its slabs start on. */
  rowBlock(key: string, planned: number): number;
  /** How a weight written in another form than the one it is merged in is stored (a merged nvfp4 weight: U8 pairs of codes), else undefined. */
  storedAs(key: string): { type: string; shape: number[]; rowBytes: number } | undefined;
  /** W' for the slab's rows: fp8 codes (scales kept for {@link scaleChunk}) or the dequantized dtype. */
  mergeSlab(slab: ScaledSlab, backend: MergeBackend, signal?: AbortSignal): Promise<Uint8Array>;
  /** Is this a scale tensor written anew? */
  rewritesScale(key: string): boolean;
  /** Bytes [start, start + length) of a rewritten scale tensor; its weight must be done. */
  scaleChunk(key: string, start: number, length: number): Uint8Array;
  /** The dtype config.json should name: undefined leaves it as the base says (its weights stay quantized). */
  configDtype(written: FloatDType | undefined): FloatDType | undefined;
}

/** One row slab of a scaled weight and how to get the engine's steps for any rows of it. */
export interface ScaledSlab {
  /** The base's file holding the weight, for messages. */
  file: string;
  update: TensorUpdate;
  rowStart: number;
  rowCount: number;
  /** The slab's fp8 codes, rowCount × cols. */
  codes: Uint8Array;
  steps(rowStart: number, rowCount: number): Promise<UpdateStep[]>;
  /**
   * The NaN/Inf codes of the whole weight (value indices from its first row), read again on the
   * error path only, so that a refusal names the weight's first such row and count, not the slab's.
   */
  inTensor?: () => Promise<{ count: number; first: number; last: number }>;
  /**
   * The weight's codes of any rows, as `codes` holds them, read again on the error path only: codes
   * times scales past float32 are counted over the whole weight, not the slab.
   */
  readCodes(rowStart: number, rowCount: number): Promise<Uint8Array>;
  /** For a stack of experts (E, out, in): its rows are named by expert. */
  experts?: ExpertRows;
}

/**
 * The output plan for `prepared`'s scaled fp8 weights, or undefined when it has none. `requested`:
 * the parsed output dtype; throws (one line) for what cannot be written.
 */
export function scaledFp8Output(
  prepared: PreparedMerge, requested: string | undefined, dtypeMergedOnly: boolean, updated: ReadonlySet<string>, slabBytes: number = DEFAULT_HELD_SLAB_BYTES,
): ScaledFp8Output | undefined {
  const scaled = prepared.scaledFp8;
  const base = prepared.base;
  // Codes beside a scale no reader here accounts for (no config names them) would be converted
  // as if they were the weights.
  if (requested !== undefined && !dtypeMergedOnly) {
    const unaccounted = unreadScaledWeight(base.tensors, scaled);
    if (unaccounted) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${unaccounted.key}" is stored quantized, with its scale in ${unaccounted.scaleKey}, in a form not read here (${unaccounted.form ?? 'no quantization config that names it'}), so --dtype would write its codes as if they were the weights; leave out --dtype (unchanged tensors are copied as they are)`);
    }
  }
  if (!scaled) return undefined;
  const kind = SCALED_FP8_KIND_NAME[scaled.kind];
  // Codes of a format not read here would be converted as if they were the weights (and, where
  // this base has no weight that is read, nothing below would stop them).
  if (requested !== undefined && !dtypeMergedOnly && scaled.unread.length > 0) {
    const first = scaled.unread[0];
    const why = scaled.unreadWhy?.get(first) ?? 'it is stored quantized in a way not read here';
    const more = scaled.unread.length > 1 ? ` (and ${scaled.unread.length - 1} more)` : '';
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${first}" cannot be ${requested === 'F8_E4M3' || requested === 'F8_E5M2' ? 'converted' : 'dequantized'}: ${why}${more}; leave out --dtype`);
  }
  if (scaled.weights.size === 0) return undefined;
  if (scaled.rule === 'dequantize-only' && ((requested === undefined && !scaled.writtenAs) || requested === 'F8_E4M3' || requested === 'F8_E5M2')) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: its ${kind} weights are written only dequantized (re-quantizing them to ${DEQUANTIZED_ONLY[scaled.kind]?.format ?? kind} is not supported); merge with --dtype bf16 (or f16, f32)`);
  }
  const blocker = fp8OutputBlocker(scaled);
  if (blocker && (requested === 'F8_E4M3' || requested === 'F8_E5M2')) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${blocker.weight.weightKey}" (${blocker.format}) keeps its codes and scales or is written dequantized: --dtype ${requested.toLowerCase()} would convert its scale tensors (such as "${blocker.weight.scaleKey}") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`);
  }
  // A scaled fp8 file kept in fp8 keeps its scales: the plan merged it in place (code + ΔW / scale).
  if (scaled.rule === 'keep' && requested === undefined) return undefined;
  // A dequantize-only kind whose real values are exact in a dtype is written in it unless one is asked.
  const dequantizeTo = (requested ?? (scaled.rule === 'dequantize-only' ? scaled.writtenAs : undefined)) as FloatDType | undefined;
  const merged = [...scaled.weights.values()].filter((w) => updated.has(w.weightKey));
  // Kept quantized, a weight read through a view is read and written as stored (int8 always, nvfp4
  // unless merged: a merged nvfp4 weight is read through its view and quantized again).
  const copiedAsStored = new Set(dequantizeTo ? [] : [...scaled.weights.values()].filter((w) => w.view && !((w.scaleLayout === 'nvfp4' || w.scaleLayout === 'fp4-e8m0') && updated.has(w.weightKey))).map((w) => w.weightKey));
  if (!dequantizeTo && merged.length === 0) return undefined; // every fp8 weight and scale is copied as it is
  if (dequantizeTo) {
    if (dtypeMergedOnly && requested !== undefined) throw new MergeError('BAD_ARGUMENT', `${base.name}: ${mergedOnlyRefusal(scaled)}`);
  } else if (scaled.scaleFormat && scaled.scaleFormat !== 'float' && scaled.scaleFormat !== 'ue8m0') {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: quantization_config.scale_fmt "${scaled.scaleFormat}" (scales of a special form) is not written here; merge with --dtype bf16 (or f16, f32) to write the merged weights dequantized`);
  } else {
    // scale_fmt "ue8m0" over float scales: a merged weight's scales are written as powers of two,
    // which holds to the file only where its own scales are powers of two.
    for (const w of merged) {
      if (w.scaleFormat !== 'ue8m0') continue;
      const at = w.scales.findIndex((s) => !isPowerOfTwo(s));
      if (at < 0) continue;
      const colBlocks = Math.ceil(w.cols / w.blockCols);
      throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${w.scaleKey}" holds ${w.scales[at]} (block at row ${Math.floor(at / colBlocks) * w.blockRows}, column ${(at % colBlocks) * w.blockCols}), not a power of two, though config.json's quantization_config.scale_fmt is "ue8m0": the file contradicts its config, so the merged ${w.weightKey} is not written with scales of either form; merge with --dtype bf16 (or f16, f32) to write the merged weights dequantized`);
    }
  }
  if (!isSafetensorsModel(base)) throw new Error(`${base.name}: scaled fp8 weights outside a safetensors model`);

  // The view: rewritten scales right after their weights (keep), or no scale tensors (dequantize).
  const rewritten = new Map<string, ScaledFp8Weight>(dequantizeTo ? [] : merged.flatMap((w) => [[w.scaleKey, w], ...(w.blockScaleKey ? [[w.blockScaleKey, w] as const] : [])]));
  const dropped = new Set<string>(dequantizeTo
    ? [...scaled.weights.values()].flatMap((w) => [w.scaleKey, ...(w.blockScaleKey ? [w.blockScaleKey] : []), ...(w.inputScaleKey ? [w.inputScaleKey] : [])]).concat(scaled.quantizationOnly ?? [])
    : []);
  const shardOf = (key: string) => base.shards.findIndex((s) => s.path === base.tensors.get(key)?.shard);
  for (const [scaleKey, w] of rewritten) {
    if (shardOf(scaleKey) < shardOf(w.weightKey)) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${scaleKey} is stored in an earlier shard than ${w.weightKey}, so it cannot be rewritten after the merge; merge with --dtype bf16 (or f16, f32)`);
    }
  }
  const shardView = baseModelView(base, base.shards.map((shard) => {
    const keys: (string | ViewTensor)[] = [];
    const here = new Set(shard.tensors.map((t) => shard.keyPrefix + t.name));
    for (const t of shard.tensors) {
      const key = shard.keyPrefix + t.name;
      const w = scaled.weights.get(key);
      if (dropped.has(key) || (rewritten.has(key) && here.has(rewritten.get(key)!.weightKey))) continue;
      // A weight read through a view (nvfp4) is merged from its view's values when dequantized.
      keys.push(w?.view && !copiedAsStored.has(key) ? w.view : key);
      for (const scaleKey of w ? [w.blockScaleKey, w.scaleKey] : []) if (scaleKey && rewritten.has(scaleKey) && here.has(scaleKey)) keys.push(scaleKey);
    }
    return { path: shard.path, tensors: keys, ...(dequantizeTo && scaled.metadataLeftOut ? { metadataLeftOut: scaled.metadataLeftOut } : {}) };
  }));
  // hf_quant_config.json describes the quantization alone: a dequantized model leaves it out.
  const leftOut = new Set(dequantizeTo ? scaled.quantizationFiles ?? [] : []);
  const view = { ...shardView, otherFiles: shardView.otherFiles.filter((p) => !leftOut.has(p)) };
  const folder = dequantizeTo
    ? { ...prepared.modelFolder, changes: { ...prepared.modelFolder.changes, removeQuantization: true } }
    : prepared.modelFolder;
  const extraUpdates: TensorUpdate[] = dequantizeTo
    ? [...scaled.weights.values()].filter((w) => !updated.has(w.weightKey)).map((w) => ({
      baseKey: w.weightKey, dtype: w.codeDtype, shape: (w.view?.shape ?? base.tensors.get(w.weightKey)!.shape).slice(), rows: w.rows, cols: w.cols, layout: 'out-in',
      outFeatures: w.rows, inFeatures: w.cols, terms: [], rowBlock: 1,
    }))
    : [];

  const newScales = new Map<string, { values: Float64Array; rowsDone: number; encoded?: Uint8Array }>();
  // A merged DeepSeek-V4 FP4 weight's new E8M0 scale bytes, filled as its rows are quantized.
  const fp4Scales = new Map<string, { bytes: Uint8Array; rowsDone: number }>();
  // A merged nvfp4 weight's new weight_scale_2 and swizzled block scales, until both are written.
  const nvfp4Scales = new Map<string, { tensorScale: number; blockScales: Uint8Array; rowsDone: number; written: Set<string> }>();
  const tensorMaxima = new Map<string, Promise<number>>();
  // W' of a per-tensor-scale weight's slabs from its maximum's pass, by first row, until each is encoded.
  const heldSlabs = new Map<string, Map<number, Uint8Array>>();
  const heldLimit = HELD_SLABS * slabBytes;
  // Where they are held: one buffer reused by every such weight (they are merged one after another),
  // the backend's shared memory where it has some (its threads encode from it in place). A buffer
  // per slab, or per weight, was freed only when the garbage collector ran (shared memory): peak
  // RSS 561 MiB against 224 on two threads for four FLUX-sized layers.
  let heldMemory: Uint8Array | undefined;
  const heldBuffer = (bytes: number, backend: MergeBackend): Uint8Array => {
    if (!heldMemory || heldMemory.byteLength < bytes) heldMemory = new Uint8Array(backend.slabMemory?.(bytes) ?? new ArrayBuffer(bytes));
    return heldMemory.subarray(0, bytes);
  };
  // Scales read when their weight is (mxfp8: one per 32 weights), until its last slab.
  const loaded = new Map<string, { scales: Promise<Float64Array>; rowsDone: number }>();
  const gridOf = async (w: ScaledFp8Weight, rowCount: number): Promise<Float64Array> => {
    if (!w.loadScales) return w.scales;
    let entry = loaded.get(w.weightKey);
    if (!entry) loaded.set(w.weightKey, (entry = { scales: w.loadScales(), rowsDone: 0 }));
    entry.rowsDone += rowCount;
    if (entry.rowsDone >= w.rows) loaded.delete(w.weightKey);
    return entry.scales;
  };
  // A slab's joined rows (RowsJoin) when they are encoded here and read no more after: reused
  // buffers, shared memory where the backend has some, so its threads read them in place (fresh
  // ArrayBuffers were copied into the pool's scratch twice a slab, for the maxima and the codes,
  // and allocated and zeroed each slab: block fp8 on two threads, 0.2 s and 0.4 s of garbage
  // collection of the main thread's 1.2 s).
  let joinMemory: { backend: MergeBackend; pool: BufferPool } | undefined;
  const joinOn = (backend: MergeBackend): BufferPool => {
    if (joinMemory?.backend !== backend) joinMemory = { backend, pool: new BufferPool(backend.slabMemory?.bind(backend)) };
    return joinMemory.pool;
  };
  const reader = { ...prepared, base: view };
  return {
    prepared: { ...reader, modelFolder: folder },
    extraUpdates,
    handles: (key) => scaled.weights.has(key),
    rowBlock: (key, planned) => {
      const w = scaled.weights.get(key);
      return w && !isRowGrid(w) ? lcm(planned, w.blockRows) : planned;
    },
    storedAs: (key) => {
      const w = scaled.weights.get(key);
      if (w?.scaleLayout === 'fp4-e8m0' && !dequantizeTo && updated.has(key)) return { type: w.storedDtype!, shape: w.storedShape!.slice(), rowBytes: w.cols / 2 };
      return w?.scaleLayout === 'nvfp4' && !dequantizeTo && updated.has(key) ? { type: 'U8', shape: [w.rows, w.cols / 2], rowBytes: w.cols / 2 } : undefined;
    },
    async mergeSlab(stored, backend, signal) {
      const w = scaled.weights.get(stored.update.baseKey)!;
      // An int8 weight kept int8 is read as stored: its codes as the view's bf16, read again (the error path) as well.
      const int8Kept = w.scaleLayout === 'int8_tensorwise' && !dequantizeTo;
      const slab: ScaledSlab = int8Kept ? { ...stored, readCodes: async (r0, n) => int8AsBf16(await stored.readCodes(r0, n)) } : stored;
      // ModelOpt's quantizer reads W' in the model's dtype: rounded once to it, here.
      const quantizerDtype = scaled.rule === 'modelopt' ? scaled.quantizerDtype ?? 'BF16' : 'F32';
      // A weight no adapter changes whose view already holds its real values (scale 1: MXFP4 experts,
      // integer weights, ComfyUI's nvfp4): those values in the output dtype, rounded once, −0 kept (as
      // transformers and comfy_kitchen keep it; the engine's 0 + W would make it +0).
      const realView = (scaled.rule === 'dequantize-only' && !w.scaleLayout) || w.scaleLayout === 'nvfp4' || w.scaleLayout === 'fp4-e8m0';
      if (realView && dequantizeTo && slab.update.terms.length === 0 && w.scales.length === 1 && w.scales[0] === 1 && !w.loadScales) {
        return w.codeDtype === dequantizeTo ? slab.codes.slice() : encodeFromF32(decodeToF32(slab.codes, w.codeDtype), dequantizeTo);
      }
      const grid = await gridOf(w, slab.rowCount);
      // Written dequantized, the rows go to the output (joined into fresh memory); else into joinOn's, given back once encoded.
      const join = dequantizeTo ? undefined : joinOn(backend);
      const merge = () => realRows(w, grid, scaled.rule, slab, slab.rowStart, slab.rowCount, int8Kept ? int8AsBf16(slab.codes) : slab.codes, dequantizeTo ?? quantizerDtype, backend, signal, join);
      if (dequantizeTo) return merge();
      if (w.scaleLayout === 'fp4-e8m0') {
        // DeepSeek-V4's FP4 again: W' in f32, each row's groups of 32 quantized as DeepSeek's kernel does.
        const values = await merge();
        let state = fp4Scales.get(w.weightKey);
        if (!state) {
          // Shared memory where the backend has some: its threads write the scales in place.
          const n = (w.rows * w.cols) / FP4_GROUP;
          fp4Scales.set(w.weightKey, (state = { bytes: new Uint8Array(backend.slabMemory?.(n) ?? new ArrayBuffer(n), 0, n), rowsDone: 0 }));
        }
        const codes = await fp4QuantizeOn(backend, w.weightKey, new Float32Array(values.buffer, values.byteOffset, values.byteLength / 4), slab.rowStart, w.cols, state.bytes, signal);
        state.rowsDone += slab.rowCount;
        backend.recycle?.(values);
        join?.recycle(values);
        return codes;
      }
      // One maximum for the whole tensor: a first pass over its slabs, once; W' of each slab kept
      // from it where the whole tensor's fits under heldLimit, so no slab is merged twice.
      let tensorMax: number | undefined;
      let values: Uint8Array | undefined;
      if (w.blockRows < w.rows || w.rows === slab.rowCount) tensorMax = undefined;
      else {
        let pass = tensorMaxima.get(w.weightKey);
        if (!pass) {
          const bytes = w.rows * w.cols * DTYPE_BYTES[quantizerDtype];
          const hold = bytes <= heldLimit ? { into: heldBuffer(bytes, backend), slabs: new Map<number, Uint8Array>() } : undefined;
          if (hold) heldSlabs.set(w.weightKey, hold.slabs);
          tensorMaxima.set(w.weightKey, (pass = maxOverTensor(w, scaled.rule, slab, reader.base.readPart.bind(reader.base), quantizerDtype, backend, signal, hold)));
        }
        tensorMax = await pass;
        const hold = heldSlabs.get(w.weightKey);
        values = hold?.get(slab.rowStart);
        hold?.delete(slab.rowStart);
        if (hold?.size === 0) heldSlabs.delete(w.weightKey);
        // Held for other rows than this slab's (slabs cut otherwise): merged here instead.
        if (values && values.byteLength !== slab.rowCount * w.cols * DTYPE_BYTES[quantizerDtype]) values = undefined;
      }
      values ??= await merge();
      const real = quantizerDtype === 'F32' ? new Float32Array(values.buffer, values.byteOffset, values.byteLength / 4) : decodeToF32(values, quantizerDtype);
      if (w.scaleLayout === 'nvfp4') {
        const codes = await nvfp4Codes(w, real, slab, tensorMax, nvfp4Scales, backend, signal);
        backend.recycle?.(values);
        join?.recycle(values);
        return codes;
      }
      let state = newScales.get(w.weightKey);
      if (!state) newScales.set(w.weightKey, (state = { values: Float64Array.from(grid), rowsDone: 0 }));
      const codes = await requantizeSlabOn(backend, w, scaled.rule, real, slab.rowStart, slab.rowCount, state.values, tensorMax, { quantizerDtype }, signal);
      state.rowsDone += slab.rowCount;
      backend.recycle?.(values); // read no more (codes are a buffer of their own)
      join?.recycle(values);
      return codes;
    },
    rewritesScale: (key) => rewritten.has(key),
    scaleChunk(key, start, length) {
      const w = rewritten.get(key)!;
      if (w.scaleLayout === 'fp4-e8m0') {
        const state = fp4Scales.get(w.weightKey);
        if (!state || state.rowsDone !== w.rows) throw new Error(`${key} is written before all of ${w.weightKey} was merged`);
        if (start + length >= state.bytes.byteLength) fp4Scales.delete(w.weightKey); // its last bytes: held no longer
        return state.bytes.subarray(start, start + length);
      }
      if (w.scaleLayout === 'nvfp4') {
        const state = nvfp4Scales.get(w.weightKey);
        if (!state || state.rowsDone !== w.rows) throw new Error(`${key} is written before all of ${w.weightKey} was merged`);
        const bytes = key === w.blockScaleKey ? state.blockScales : encodeFromF32(Float32Array.of(state.tensorScale), 'F32');
        if (start + length >= bytes.byteLength) state.written.add(key);
        if (state.written.size === 2) nvfp4Scales.delete(w.weightKey); // both written: held no longer
        return bytes.subarray(start, start + length);
      }
      const state = newScales.get(w.weightKey);
      if (!state || state.rowsDone !== w.rows) throw new Error(`${key} is written before all of ${w.weightKey} was merged`);
      if (w.scaleLayout === 'mxfp8') {
        state.encoded ??= swizzleMxfp8Scales(state.values, w.rows, w.cols);
        const chunk = state.encoded.subarray(start, start + length);
        if (start + length >= state.encoded.byteLength) newScales.delete(w.weightKey); // its last bytes: held no longer
        return chunk;
      }
      const scaleBytes = w.scaleDtype === 'F8_E8M0' ? Uint8Array.from(state.values, e8m0Byte) : encodeFromF32(Float32Array.from(state.values), w.scaleDtype);
      return scaleBytes.subarray(start, start + length);
    },
    // Written in the kind's own dtype unasked (MXFP4 experts in bf16, the model's): config.json's dtype stands.
    configDtype: (written) => (dequantizeTo && requested !== undefined ? written : undefined),
  };
}

/**
 * A slab of a merged nvfp4 weight quantized again as ComfyUI does (comfy-nvfp4.ts): weight_scale_2
 * from the whole tensor's maximum (`tensorMax`, or the slab's own when it is the whole tensor),
 * the block scales written into the weight's swizzled scale tensor as its rows come.
 */
async function nvfp4Codes(
  w: ScaledFp8Weight, real: Float32Array, slab: ScaledSlab, tensorMax: number | undefined,
  states: Map<string, { tensorScale: number; blockScales: Uint8Array; rowsDone: number; written: Set<string> }>,
  backend: MergeBackend, signal?: AbortSignal,
): Promise<Uint8Array> {
  let state = states.get(w.weightKey);
  if (!state) {
    let amax = tensorMax ?? 0;
    if (tensorMax === undefined) for (let i = 0; i < real.length; i++) amax = Math.max(amax, Math.abs(real[i]));
    const tensorScale = nvfp4TensorScale(amax);
    // All zeros (or so small that amax / 2688 is 0 in f32): ComfyUI would divide 0 by 0 into NaN scales.
    if (!(tensorScale > 0 && Number.isFinite(tensorScale))) {
      throw new MergeError('NON_FINITE', `tensor "${w.weightKey}": its merged weight's largest magnitude is ${amax}, which gives the nvfp4 weight_scale_2 ${tensorScale} (max |W'| / (448 × 6) in float32), with which ComfyUI's quantizer writes NaN or Inf; merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
    }
    const [scaleRows, scaleCols] = blockedScaleShape(w.rows, w.cols / NVFP4_BLOCK);
    // Shared memory where the backend has some: its threads write the block scales in place.
    const blockScales = new Uint8Array(backend.slabMemory?.(scaleRows * scaleCols) ?? new ArrayBuffer(scaleRows * scaleCols), 0, scaleRows * scaleCols);
    states.set(w.weightKey, (state = { tensorScale, blockScales, rowsDone: 0, written: new Set() }));
  }
  // On the backend's threads where it has them (formats/comfy-requantize.ts): the same bytes.
  const codes = await comfyCodes({ format: 'nvfp4', values: real, rowStart: slab.rowStart, rowCount: slab.rowCount, cols: w.cols, tensorScale: state.tensorScale, blockScales: state.blockScales }, backend, signal);
  state.rowsDone += slab.rowCount;
  return codes;
}

/**
 * Which of `codes` (rows `rowStart`… of `cols` columns, decoded) times its factor (`factor(row,
 * col)`, row of the weight), each product in float32 as the dequantization makes it, is past
 * float32: how many, and the first and last row of the weight holding one. NaN codes are the
 * base's own NaN, not counted here.
 */
function pastFloat32(codes: Float32Array, rowStart: number, cols: number, factor: (row: number, col: number) => number): { count: number; first: number; last: number } {
  const past = { count: 0, first: -1, last: -1 };
  for (let i = 0; i < codes.length; i++) {
    const r = rowStart + Math.floor(i / cols);
    if (Number.isNaN(codes[i]) || Number.isFinite(Math.fround(codes[i] * Math.fround(factor(r, i % cols))))) continue;
    if (past.count++ === 0) past.first = r;
    past.last = r;
  }
  return past;
}

/**
 * The values of the whole weight past float32 (`count`: those of rows [r0, r0 + n) from their
 * codes), its codes read again from its first row in runs of the slab's rows: on the error path
 * only, where one op met some, so that the refusal names the weight's first and last such row and
 * how many it holds, not the op's (slabs run side by side, and a slab's rows are merged in several
 * ops).
 */
async function pastFloat32InWeight(
  w: ScaledFp8Weight, slab: ScaledSlab, count: (codes: Uint8Array, r0: number, n: number) => { count: number; first: number; last: number },
): Promise<{ count: number; first: number; last: number }> {
  const span = { count: 0, first: -1, last: -1 };
  const step = Math.max(1, slab.rowCount);
  for (let r0 = 0; r0 < w.rows; r0 += step) {
    const n = Math.min(step, w.rows - r0);
    const found = count(await slab.readCodes(r0, n), r0, n);
    if (found.count === 0) continue;
    if (span.count === 0) span.first = found.first;
    span.count += found.count;
    span.last = found.last;
  }
  return span;
}

/**
 * The refusal of a weight whose codes times its scales are past float32 (Inf in the tools'
 * dequantization): how many over the whole weight (`past`, or the op's where reading it again
 * found none), and its first and last row holding one.
 */
async function pastFloat32Refusal(
  w: ScaledFp8Weight, slab: ScaledSlab, inOp: { count: number; first: number; last: number },
  count: (codes: Uint8Array, r0: number, n: number) => { count: number; first: number; last: number },
): Promise<MergeError> {
  const whole = await pastFloat32InWeight(w, slab, count);
  const past = whole.count ? whole : inOp;
  const where = spanRows({ first: past.first * w.cols, last: past.last * w.cols }, w.cols, slab.experts);
  return new MergeError(
    'NON_FINITE',
    `${slab.file}: tensor "${w.weightKey}" holds ${past.count} value${past.count === 1 ? '' : 's'} past float32 in the base (its codes times its scales, ${w.scaleKey}; ${where}), ` +
      `and the merge ${slab.update.terms.length ? 'updates' : 'dequantizes'} it; the base file is broken: use an intact copy of the base`,
  );
}

/** A grid whose blocks span all columns (per channel, per tensor): its scales are one factor per row. */
function isRowGrid(w: ScaledFp8Weight): boolean {
  return w.blockCols >= w.cols;
}

/** One op of W' (rows [r0, r0 + n)), with what its refusal needs: its scale step, and the op of its terms alone where no scale applies. */
interface RealOp {
  r0: number;
  n: number;
  merge: MergeOp;
  spec: Omit<Parameters<typeof slabOp>[0], 'outDtype'>;
  scale: UpdateStep;
  /** No scale step (a scale of 1 everywhere): the op is its terms alone. */
  termsOnly: boolean;
  /** The op's scale factors, along `axis`. */
  factors: Float64Array;
  axis: 'out' | 'in';
}

/**
 * The ops of W' = code × scale + ΔW for rows [rowStart, rowStart + rowCount) (`codes`: theirs),
 * rounded once to `outDtype`: one for a row grid, one per row block for blocks across the columns.
 * The `keep` rule's terms come from the plan divided by the scale: (code + ΔW / scale) × scale.
 */
async function* realOps(
  w: ScaledFp8Weight, scales: Float64Array, rule: ScaledFp8Base['rule'], slab: ScaledSlab, rowStart: number, rowCount: number, codes: Uint8Array, outDtype: FloatDType,
  signal?: AbortSignal,
): AsyncGenerator<RealOp> {
  const { update } = slab;
  const rowAxis = update.layout === 'out-in' ? 'out' : 'in';
  const colAxis = rowAxis === 'out' ? 'in' : 'out';
  const nColBlocks = Math.ceil(w.cols / w.blockCols);
  const op = async (r0: number, n: number, axis: 'out' | 'in', factors: Float64Array): Promise<RealOp> => {
    throwIfAborted(signal);
    const scale: UpdateStep = { kind: 'scale', axis, factors: { dtype: 'F32', data: new Uint8Array(Float32Array.from(factors).buffer) }, exact: factors };
    const terms = await slab.steps(r0, n);
    // A scale of 1 everywhere (gpt-oss's MXFP4 seen as its bf16 values) is no step: the op is its
    // terms alone, whose rows no term reaches keep their bytes (keepUnreachedRows); behind a scale
    // step those rows keep the sign of W's zeros.
    const termsOnly = factors.every((f) => f === 1);
    const steps = termsOnly ? terms : rule === 'keep' ? [...terms, scale] : [scale, ...terms];
    const b = DTYPE_BYTES[w.codeDtype];
    const base = { dtype: w.codeDtype, data: codes.subarray((r0 - rowStart) * w.cols * b, (r0 - rowStart + n) * w.cols * b) };
    const spec = { name: w.weightKey, rows: w.rows, cols: w.cols, layout: update.layout, base, rowStart: r0, rowCount: n };
    return { r0, n, merge: slabOp({ ...spec, outDtype }, steps), spec, scale, termsOnly, factors, axis };
  };
  if (isRowGrid(w)) {
    const factors = new Float64Array(w.rows);
    for (let r = 0; r < w.rows; r++) factors[r] = scales[Math.floor(r / w.blockRows)];
    yield await op(rowStart, rowCount, rowAxis, factors);
    return;
  }
  // Blocks across the columns: one op per row block, its scales one factor per column.
  for (let r0 = rowStart, r1: number; r0 < rowStart + rowCount; r0 = r1) {
    const rb = Math.floor(r0 / w.blockRows);
    r1 = Math.min(rowStart + rowCount, (rb + 1) * w.blockRows);
    const factors = new Float64Array(w.cols);
    for (let c = 0; c < w.cols; c++) factors[c] = scales[rb * nColBlocks + Math.floor(c / w.blockCols)];
    yield await op(r0, r1 - r0, colAxis, factors);
  }
}

/**
 * The merged values of the whole weight past `outDtype` (and past f32), its codes read again from
 * its first row in runs of the slab's rows and each op merged again in f32 on the CPU: on the error
 * path only, where one op overflowed, so that the refusal counts over the weight (slabs run side by
 * side, and a slab's rows are merged in several ops), not the op's.
 */
async function overflowInWeight(
  w: ScaledFp8Weight, slab: ScaledSlab, ops: (codes: Uint8Array, r0: number, n: number) => AsyncIterable<MergeOp>,
): Promise<OverflowSpan | undefined> {
  const span = noOverflow();
  const step = Math.max(1, slab.rowCount);
  for (let r0 = 0; r0 < w.rows; r0 += step) {
    const n = Math.min(step, w.rows - r0);
    for await (const op of ops(await slab.readCodes(r0, n), r0, n)) {
      if (!addOverflow(span, overflowInOp(op), (op.rowStart ?? 0) * w.cols)) return undefined;
    }
  }
  return span;
}

/**
 * W' = code × scale + ΔW for rows [rowStart, rowStart + rowCount), rounded once to `outDtype` (the
 * ops of {@link realOps}, joined).
 */
async function realRows(
  w: ScaledFp8Weight, scales: Float64Array, rule: ScaledFp8Base['rule'], slab: ScaledSlab, rowStart: number, rowCount: number, codes: Uint8Array, outDtype: FloatDType,
  backend: MergeBackend, signal?: AbortSignal, joinInto?: BufferPool,
): Promise<Uint8Array> {
  if (w.scaleLayout === 'mxfp8') return powerOfTwoGridRows(w, scales, slab, rowStart, rowCount, codes, outDtype, backend, signal, joinInto);
  const { update } = slab;
  const rowAxis = update.layout === 'out-in' ? 'out' : 'in';
  const nColBlocks = Math.ceil(w.cols / w.blockCols);
  // The whole weight's overflow, merged again op by op (the error path only).
  const overflowInTensor = () => overflowInWeight(w, slab, async function* (c, r0, n) {
    for await (const o of realOps(w, scales, rule, slab, r0, n, c, outDtype, signal)) yield o.merge;
  });
  const explain = (e: unknown, merge: MergeOp) => explainNonFinite(e, { file: slab.file, update, base: merge.base.data, op: merge, inTensor: slab.inTensor, overflowInTensor, experts: slab.experts });
  const mergeOne = async ({ r0, merge, spec, scale, termsOnly, factors, axis }: RealOp): Promise<Uint8Array> => {
    const merged = await backend.merge(merge, signal).catch(async (e: unknown) => {
      const base = merge.base;
      // NaN codes are the base's own NaN, whatever the scales: named as such, by the weight's rows.
      if (!isMergeError(e) || e.code !== 'NON_FINITE' || termsOnly || hasNonFinite(base.data, base.dtype)) throw await explain(e, merge);
      // The base's own values, its codes × its scales with no update, past float32: the scales are broken.
      const alone = await backend.merge(slabOp({ ...spec, outDtype: 'F32' }, [scale]), signal).then(() => true, (e2: unknown) => {
        if (isMergeError(e2) && e2.code === 'NON_FINITE') return false;
        throw e2;
      });
      if (!alone) {
        // Any row of the weight's scales: one per row block and column block (one column block for a row grid).
        const scaleOf = (r: number, c: number) => scales[Math.floor(r / w.blockRows) * nColBlocks + Math.floor(c / w.blockCols)];
        const inOp = pastFloat32(decodeToF32(base.data, base.dtype), r0, w.cols, (r, c) => factors[axis === rowAxis ? r : c]);
        throw await pastFloat32Refusal(w, slab, inOp, (codes, from) => pastFloat32(decodeToF32(codes, w.codeDtype), from, w.cols, scaleOf));
      }
      throw await explain(e, merge);
    });
    return keepUnreachedRows(merge, merged, reachedRows(update));
  };
  // A row grid's rows are one op.
  if (isRowGrid(w)) return mergeOne((await realOps(w, scales, rule, slab, rowStart, rowCount, codes, outDtype, signal).next()).value as RealOp);
  const join = new RowsJoin(rowStart, rowCount, w.cols * DTYPE_BYTES[outDtype], backend, joinInto);
  for await (const o of realOps(w, scales, rule, slab, rowStart, rowCount, codes, outDtype, signal)) join.add(o.r0, o.n, await mergeOne(o));
  return join.done();
}

/**
 * The outputs of a slab's ops (one per row block) joined into one slab: a single op's output is the
 * slab's; more are each copied in and given back to the backend as they come, so that it holds one
 * at a time (holding them all, its buffers outnumbered those it keeps, and each slab made fresh
 * shared memory that is freed only when the garbage collector runs: 437 MiB peak on two threads,
 * against 190 MiB on one, for 14 block-wise fp8 projections). The slab is taken from `into` where
 * given (memory its caller gives back when done), else fresh.
 */
class RowsJoin {
  private whole: Uint8Array | undefined;
  private first: Uint8Array | undefined;

  constructor(
    private readonly rowStart: number, private readonly rowCount: number, private readonly rowBytes: number, private readonly backend: MergeBackend,
    private readonly into?: BufferPool,
  ) {}

  add(r0: number, n: number, part: Uint8Array): void {
    if (n === this.rowCount) {
      this.first = part;
      return;
    }
    this.whole ??= this.into?.take(this.rowCount * this.rowBytes) ?? new Uint8Array(this.rowCount * this.rowBytes);
    this.whole.set(part, (r0 - this.rowStart) * this.rowBytes);
    this.backend.recycle?.(part);
  }

  done(): Uint8Array {
    return this.first ?? this.whole!;
  }
}

/** The most values an mxfp8 weight dequantizes for one op (4 MiB of f32). */
const POWER_OF_TWO_OP_VALUES = 1 << 20;

/**
 * W' for mxfp8 rows: a scale per 32 inputs of each row, so a factor step (one per row or one per
 * column) could carry one row's scales per op, and a layer became thousands of ops. Its scales are
 * powers of two, so code × 2^(e − 127) is exact in f32: the rows are dequantized (row-decoders.ts
 * `mxfp8`, on the backend's threads where it has them) and merged as f32 weights in ops of up to
 * POWER_OF_TWO_OP_VALUES, the same W' rounded once.
 */
async function powerOfTwoGridRows(
  w: ScaledFp8Weight, scales: Float64Array, slab: ScaledSlab, rowStart: number, rowCount: number, codes: Uint8Array, outDtype: FloatDType,
  backend: MergeBackend, signal?: AbortSignal, joinInto?: BufferPool,
): Promise<Uint8Array> {
  const { cols } = w;
  const source = mxfp8RowSource(w, scales, codes, rowStart, rowCount);
  const rowsPerOp = Math.max(1, Math.floor(POWER_OF_TWO_OP_VALUES / cols));
  // The whole weight's overflow, its rows dequantized and merged again op by op on the CPU (the error path only).
  const overflowInTensor = () => overflowInWeight(w, slab, async function* (bytes, from, rows) {
    const whole = mxfp8RowSource(w, scales, bytes, from, rows);
    for (let r0 = from; r0 < from + rows; r0 += rowsPerOp) {
      const n = Math.min(rowsPerOp, from + rows - r0);
      yield await powerOfTwoOp(w, slab, decodeSourceRows(whole, r0, r0 + n), r0, n, outDtype);
    }
  });
  const join = new RowsJoin(rowStart, rowCount, cols * DTYPE_BYTES[outDtype], backend, joinInto);
  for (let r0 = rowStart; r0 < rowStart + rowCount; r0 += rowsPerOp) {
    throwIfAborted(signal);
    const n = Math.min(rowsPerOp, rowStart + rowCount - r0);
    const past = mxfp8PastFloat32(w, source, r0, r0 + n);
    if (past.count) throw await pastFloat32Refusal(w, slab, past, (bytes, from, rows) => mxfp8PastFloat32(w, mxfp8RowSource(w, scales, bytes, from, rows), from, from + rows));
    const real = (await backend.decodeRows?.(source, r0, r0 + n, signal)) ?? decodeSourceRows(source, r0, r0 + n);
    const op = await powerOfTwoOp(w, slab, real, r0, n, outDtype);
    const merged = await backend.merge(op, signal).catch(async (e: unknown) => {
      throw await explainNonFinite(e, { file: slab.file, update: slab.update, base: op.base.data, op, inTensor: slab.inTensor, overflowInTensor, experts: slab.experts });
    });
    // Rows no term reaches keep W's values (−0 included) in the output dtype.
    join.add(r0, n, keepUnreachedRows(op, merged, reachedRows(slab.update)));
  }
  return join.done();
}

/** The op of mxfp8 rows [r0, r0 + n) dequantized (`real`, f32) and the adapters' terms on them. */
async function powerOfTwoOp(w: ScaledFp8Weight, slab: ScaledSlab, real: Float32Array, r0: number, n: number, outDtype: FloatDType): Promise<MergeOp> {
  const base = { dtype: 'F32' as const, data: new Uint8Array(real.buffer, real.byteOffset, real.byteLength) };
  return slabOp({ name: w.weightKey, rows: w.rows, cols: w.cols, layout: slab.update.layout, base, outDtype, rowStart: r0, rowCount: n }, await slab.steps(r0, n));
}

/**
 * How many slabs' bytes (mergeModel's slabBytes, 4 MiB by default) of a per-tensor-scale weight's
 * merged values may be held between its maximum's pass and its codes: 256 MiB by default, which
 * holds FLUX.1's 3072 × 12288 MLP layers (151 MB in f32), its 3072 × 15360 linear2 (189 MB) and
 * its 21504 × 3072 linear1 (264 MB: 252 MiB), not Wan2.1-14B's 13824 × 5120 FFN layers (283 MB:
 * 270 MiB), which are merged twice. Held, a merge of the FLUX-shaped fp8mixed layers peaks about
 * one layer's W' higher (see the README's fp8 bench).
 */
const HELD_SLABS = 64;
/** The slab size scaledFp8Output assumes when given none: mergeModel's default. */
const DEFAULT_HELD_SLAB_BYTES = 4 * 1024 * 1024;

/**
 * max |W'| over the whole tensor (per-tensor scales), slab by slab as the merge reads them. With
 * `hold`, each slab's W' (bytes in `dtype`) is copied into `hold.into` (the whole tensor's) and
 * its part listed in `hold.slabs` by its first row, for its codes.
 */
async function maxOverTensor(
  w: ScaledFp8Weight, rule: ScaledFp8Base['rule'], slab: ScaledSlab, readPart: (key: string, start: number, length: number) => Promise<Uint8Array>,
  dtype: 'F32' | 'F16' | 'BF16', backend: MergeBackend, signal?: AbortSignal, hold?: { into: Uint8Array; slabs: Map<number, Uint8Array> },
): Promise<number> {
  let max = 0;
  const step = Math.max(slab.rowCount, 1);
  // An int8 weight is read as stored (one byte a code), its codes as the view's bf16.
  const int8 = w.scaleLayout === 'int8_tensorwise';
  const codeBytes = int8 ? 1 : DTYPE_BYTES[w.codeDtype];
  for (let r0 = 0; r0 < w.rows; r0 += step) {
    const n = Math.min(step, w.rows - r0);
    const stored = await readPart(w.weightKey, r0 * w.cols * codeBytes, n * w.cols * codeBytes);
    const codes = int8 ? int8AsBf16(stored) : stored;
    const bytes = await realRows(w, w.scales, rule, slab, r0, n, codes, dtype, backend, signal);
    const v = dtype === 'F32' ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) : decodeToF32(bytes, dtype);
    // The rows as one block: their largest magnitude, on the backend's threads where it has them.
    const [m] = await fp8Maxima({ values: v, rowStart: 0, rowCount: n, cols: w.cols, blockRows: n, blockCols: w.cols }, backend, signal);
    max = Math.max(max, m);
    if (hold) {
      const part = hold.into.subarray(r0 * w.cols * DTYPE_BYTES[dtype], (r0 + n) * w.cols * DTYPE_BYTES[dtype]);
      part.set(bytes);
      hold.slabs.set(r0, part);
    }
    backend.recycle?.(bytes);
  }
  return max;
}
