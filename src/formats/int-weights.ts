/**
 * Integer weight-only quantized LLM checkpoints (compressed-tensors int, GPTQ, AWQ), seen as the
 * float model they stand for: each quantized linear weight is one F32 tensor (out, in) of
 * (q − zero) × scale. With |q − zero| < 2⁸ and an f16 or bf16 scale (at most 11 significant bits)
 * the product has at most 19 significant bits, so it is exact in f32; the merge then sees a weight
 * with one scale of 1 (the `dequantize-only` rule of formats/scaled-fp8.ts), adds ΔW in real values
 * and rounds once to the --dtype asked for. The stored codes, scales, zero points, group indices
 * and shapes are no longer tensors of the view. Each format reads its own tensors into
 * {@link IntWeight}s (compressed-tensors-int.ts, gptq.ts, awq.ts).
 */
import { decodeToF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScales } from './bad-scales.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';
import type { ModelConfig } from './model-config.js';
import { decodeSourceRows, type RowDecodeRunner, type RowSource } from './row-decoders.js';
import { runtimeScales, type ScaledFp8Base, type ScaledFp8Weight } from './scaled-fp8.js';

/** One quantized weight as the format reads it. */
export interface IntWeight {
  /** `<m>.weight`: the float tensor it stands for. */
  key: string;
  rows: number;
  cols: number;
  /**
   * The float tensor's shape as the file holds it, where it is not (rows, cols): mlx's stacked
   * experts (E, out, in), whose E·out rows the merge reads and places; written in this shape.
   */
  shape?: readonly number[];
  /** The stored tensor that holds its scales (named in messages). */
  scaleKey: string;
  /** Stored tensors it replaces: left out of the view. */
  parts: readonly string[];
  /**
   * Its values for rows [r0, r1) ((q − zero) × scale, each exact in f32) by a decoder of
   * row-decoders.ts, which the CPU backend's worker threads run too: the decoder's inputs for
   * those rows, read and checked here (a format whose slabs each need every stored row gives the
   * same source, of the whole weight, for all).
   */
  rowSource(r0: number, r1: number): Promise<RowSource>;
}

/**
 * A memo of the last `keep` keys asked for, each value made once while it is kept (the oldest
 * dropped first): the merge reads one weight's slabs in turn, and a DoRA norm pass reads them
 * again first.
 */
function recentlyMade<T>(keep: number): (key: string, make: () => Promise<T>) => Promise<T> {
  const made = new Map<string, Promise<T>>();
  return (key, make) => {
    let value = made.get(key);
    if (!value) {
      value = make();
      made.set(key, value);
      if (made.size > keep) made.delete(made.keys().next().value!);
    }
    return value;
  };
}

/** Sources of the last weights read, made once each (see {@link recentSources}). */
export type RecentSources = (key: string, make: () => Promise<RowSource>) => Promise<RowSource>;

/**
 * The row sources of the last two weights asked for, each made once: a source is the same object
 * for all of a weight's slabs, which the CPU pool copies into shared memory once.
 */
export function recentSources(keep = 2): RecentSources {
  return recentlyMade<RowSource>(keep);
}

/** What a format's reader returns: its weights, and the files and tensors meaningful only while quantized. */
export interface IntWeights {
  kind: Extract<ScaledFp8Base['kind'], 'compressed-tensors-int' | 'gptq' | 'awq' | 'mlx-affine'>;
  weights: readonly IntWeight[];
  /** Files of the folder that describe the quantization alone (AutoGPTQ's quantize_config.json): left out of the dequantized model. */
  quantizationFiles?: readonly string[];
}

/** config.json's `quantization_config` as an object, or undefined. */
export function quantizationRecord(config: ModelConfig | undefined): Record<string, unknown> | undefined {
  const q = config?.raw.quantization_config;
  return typeof q === 'object' && q !== null && !Array.isArray(q) ? (q as Record<string, unknown>) : undefined;
}

/** A scale tensor's dtype, which must be f16 or bf16 for (q − zero) × scale to be exact in f32. */
export function scaleDtype(baseName: string, key: string, dtype: string): 'F16' | 'BF16' {
  if (dtype === 'F16' || dtype === 'BF16') return dtype;
  throw new MergeError('UNSUPPORTED_FORMAT', `${baseName}: tensor "${key}" holds ${dtype} scales; only F16 and BF16 scales (as the quantizers write them) are read, whose products with the integer codes are exact`);
}

/** The view of `base` with every weight of `found` dequantized, as a scaled base written only dequantized. */
export function intWeightView(base: SafetensorsBaseModel, found: IntWeights): { base: SafetensorsBaseModel; scaled: ScaledFp8Base } | undefined {
  // A config that names the format over weights stored otherwise: left to the guard (plan/quantized-weights.ts), which names both.
  if (found.weights.length === 0) return undefined;
  // A static activation scheme's zero point (W8A8 static) means nothing to a float model; its
  // `input_scale` goes with the runtime scales. A stored tensor under a weight's own key (an int8
  // `weight`, one of its own parts) gives way to it too.
  const hidden = new Set(found.weights.flatMap((w) => [...w.parts, w.key, `${w.key.slice(0, -'weight'.length)}input_zero_point`]));
  const weights = new Map<string, ScaledFp8Weight>();
  for (const w of found.weights) {
    weights.set(w.key, {
      weightKey: w.key, codeDtype: 'F32', scaleKey: w.scaleKey, scaleDtype: 'F32', rows: w.rows, cols: w.cols,
      blockRows: w.rows, blockCols: w.cols, scales: Float64Array.of(1),
    });
  }
  // The float weight takes the place of its first stored part.
  const view = viewReplacing(base, new Map(found.weights.map((w) => [w.parts[0], viewTensor(w)])), hidden);
  const files = (found.quantizationFiles ?? []).filter((f) => base.otherFiles.includes(f));
  return {
    base: view,
    scaled: { kind: found.kind, rule: 'dequantize-only', weights, unread: [], quantizationOnly: runtimeScales(base), ...(files.length ? { quantizationFiles: files } : {}) },
  };
}

function viewTensor(w: IntWeight): ViewTensor {
  const rowBytes = w.cols * 4;
  return {
    name: w.key, dtype: 'F32', shape: [w.rows, w.cols], byteLength: w.rows * rowBytes,
    ...(w.shape ? { storedShape: w.shape.slice() } : {}),
    async readPart(start, length, into, decodeOn) {
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      // Whole rows go straight into the buffer offered (the pipeline's reused slab memory).
      const whole = start === r0 * rowBytes && length === (r1 - r0) * rowBytes && into?.byteLength === length && into.byteOffset % 4 === 0;
      const values = await decodedRows(w, r0, r1, decodeOn, whole ? new Float32Array(into.buffer, into.byteOffset, length / 4) : undefined);
      const offset = start - r0 * rowBytes;
      return new Uint8Array(values.buffer, values.byteOffset + offset, length);
    },
  };
}

/** Rows [r0, r1) of `w` (into `out` where given): by its row source, on `decodeOn`'s threads where it takes them, else here. */
async function decodedRows(w: IntWeight, r0: number, r1: number, decodeOn: RowDecodeRunner | undefined, out?: Float32Array): Promise<Float32Array> {
  const source = await w.rowSource(r0, r1);
  return (await decodeOn?.(source, r0, r1, out)) ?? decodeSourceRows(source, r0, r1, out);
}

/**
 * Little-endian int32s of `bytes`, read only: a view where the bytes are 4-aligned (a weight's
 * cached qweight is read once per slab; copying it each time cost a copy of the tensor per slab).
 */
export function int32s(bytes: Uint8Array): Int32Array {
  if (bytes.byteOffset % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/**
 * A scale table's values, checked finite and not negative; `first` is its first element's index in
 * the tensor (a per-tensor scale's one value; a table read a slab at a time is counted whole where
 * a slab meets a bad scale, and whole tables by {@link lastScales}, both by bad-scales.ts).
 */
export function checkedScales(baseName: string, key: string, values: Float32Array, first: number): Float32Array {
  const bad = values.findIndex((s) => !Number.isFinite(s) || s < 0);
  if (bad >= 0) throw new MergeError('UNSUPPORTED_FORMAT', `${baseName}: tensor "${key}" holds the scale ${values[bad]} (element ${first + bad}); scales must be finite and not negative`);
  return values;
}

/**
 * The checked float32 values of the scale tensor last asked for, decoded once for all of a
 * weight's slabs (each slab's outputs take scales from every group, and the merge reads one
 * weight's slabs in turn) and kept for that one tensor only.
 */
export function lastScales(baseName: string): (key: string, bytes: Uint8Array, dtype: 'F16' | 'BF16') => Float32Array {
  let last: { key: string; bytes: Uint8Array; values: Float32Array } | undefined;
  return (key, bytes, dtype) => {
    if (last?.key !== key || last.bytes !== bytes) {
      const values = decodeToF32(bytes, dtype);
      const bad = badScales(baseName, key, values);
      if (bad) throw bad;
      last = { key, bytes, values };
    }
    return last.values;
  };
}

/** The refusal of a weight whose tensors are not what the format writes. */
export function notAsWritten(baseName: string, key: string, format: string, why: string): MergeError {
  return new MergeError('UNSUPPORTED_FORMAT', `${baseName}: ${key} is not a ${format} weight as it writes them (${why})`);
}

/** The refusal of a config the reader does not match exactly. */
export function configRefusal(baseName: string, format: string, why: string): MergeError {
  return new MergeError('UNSUPPORTED_FORMAT', `${baseName}: config.json quantization_config (${format}): ${why}; merging into such a base is not supported: use the unquantized model`);
}

/**
 * The whole stored bytes of a few tensors, kept for the last weights read: GPTQ and AWQ store a
 * weight transposed, so a slab of output rows needs every stored row, and the merge reads one
 * weight's slabs in turn.
 */
export function wholeTensorCache(base: SafetensorsBaseModel, keep = 8): (key: string) => Promise<Uint8Array> {
  const recent = recentlyMade<Uint8Array>(keep);
  return (key) => recent(key, () => base.read(key));
}
