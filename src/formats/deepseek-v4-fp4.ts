/**
 * DeepSeek-V4's microscaling weights, as deepseek-ai/DeepSeek-V4-Flash and -Pro ship them
 * (config.json `quantization_config`: `quant_method: "fp8"`, `fmt: "e4m3"`, `scale_fmt: "ue8m0"`,
 * `weight_block_size: [128, 128]`; `expert_dtype: "fp4"`), in DeepSeek's own tensor names:
 * - attention, compressors, indexer and shared expert: `<m>.weight` F8_E4M3 (out, in) beside
 *   `<m>.scale` F8_E8M0 (⌈out/128⌉, ⌈in/128⌉): block-wise fp8 (scaled-fp8.ts reads them, with the
 *   power-of-two scales below);
 * - routed experts: `<m>.weight` (out, in/2) of packed E2M1 codes (I8 in DeepSeek's files; U8, or
 *   F4 (out, in) counting elements, taken too), element 2k in the low nibble of byte k and 2k + 1
 *   in the high one, a code a sign bit (8) and a magnitude index into 0, ½, 1, 1½, 2, 3, 4, 6
 *   (DeepSeek's convert.py FP4_TABLE, which reads code 8 as +0), beside `<m>.scale` F8_E8M0
 *   (out, in/32): one scale per 32 inputs of a row. W = e2m1(code) × 2^(byte − 127).
 * Such a weight is seen as f32 values (out, in) (exact: at most two significant bits, from 2^-128
 * up), merged in real values, and written either dequantized (--dtype) or as FP4 again, each group
 * of 32 quantized as DeepSeek's inference kernel (kernel.py `fp4_quant_kernel`) quantizes: amax =
 * max(|W'| over the group, 6·2^-126) in f32, s = 2^⌈log2(f32(amax · f32(1/6)))⌉, code = e2m1(clamp(W'/s,
 * ±6)) rounded to nearest, ties to even, the scale byte log2(s) + 127.
 */
import { MergeError } from '../errors.js';
import type { BaseModel } from './base-model.js';
import type { ViewTensor } from './base-model-view.js';
import { e2m1CodeValues } from './e2m1.js';
import { deepseekFp4RowCodes, FP4_BAD_GROUP } from './deepseek-fp4-codes.js';
import { comfyCodes, type ComfyThreads } from './comfy-requantize.js';
import { sourceBytes } from './nvfp4-values.js';
import { decodeSourceRows, DEEPSEEK_FP4_FIRST_UNSAFE_SCALE, type RowDecodeRunner, type RowSource } from './row-decoders.js';
import type { ScaledFp8Weight } from './scaled-fp8.js';

/** Inputs per FP4 scale. */
export const FP4_GROUP = 32;

/** An E8M0 byte's value: 2^(byte − 127), 255 NaN. */
export function e8m0Value(byte: number): number {
  return byte === 255 ? NaN : 2 ** (byte - 127);
}

/** F8_E8M0 bytes as their values (exact in f64). */
export function e8m0Values(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = e8m0Value(bytes[i]);
  return out;
}

/** The E8M0 byte of a power of two 2^e (−127 ≤ e ≤ 127); anything else is no E8M0 value. */
export function e8m0Byte(s: number): number {
  const e = Math.log2(s);
  if (!Number.isInteger(e) || e < -127 || e > 127) throw new RangeError(`${s} is no E8M0 value`);
  return e + 127;
}

/**
 * ⌈log2 x⌉ of a positive f32 x as DeepSeek's kernels take it (`fast_log2_ceil`): the exponent of
 * its bits, plus one where any mantissa bit is set.
 */
export function f32Log2Ceil(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer)[0];
  const exponent = ((bits >>> 23) & 0xff) - 127;
  return exponent + ((bits & 0x7fffff) !== 0 ? 1 : 0);
}

/** DeepSeek's power-of-two scale for a block whose largest magnitude is `amax` (f32), the codes' largest value `max`, the floor `min`. */
export function deepseekPowerOfTwoScale(amax: number, max: number, min: number): number {
  const a = Math.max(Math.fround(amax), Math.fround(min));
  return 2 ** f32Log2Ceil(Math.fround(a * Math.fround(1 / max)));
}

/** The packed FP4 weights of a DeepSeek-V4 base: `<m>.weight` beside an F8_E8M0 `<m>.scale` (out, in/32). */
export interface Fp4Weight {
  key: string;
  scaleKey: string;
  rows: number;
  cols: number;
  /** The dtype and shape the codes are stored in (I8/U8 (out, in/2), F4 (out, in)). */
  storedDtype: 'I8' | 'U8' | 'F4';
  storedShape: number[];
}

/** Is `key` (a `.weight` beside an F8_E8M0 `.scale`) packed FP4 codes rather than fp8 ones? Malformed pairs throw, naming both. */
export function fp4WeightOf(base: BaseModel, scaleKey: string): Fp4Weight | undefined {
  const scale = base.tensors.get(scaleKey);
  if (!scale || scale.dtype !== 'F8_E8M0' || !scaleKey.endsWith('.scale')) return undefined;
  const key = `${scaleKey.slice(0, -'.scale'.length)}.weight`;
  const w = base.tensors.get(key);
  if (!w || (w.dtype !== 'I8' && w.dtype !== 'U8' && w.dtype !== 'F4')) return undefined;
  const rows = w.shape[0];
  const cols = w.dtype === 'F4' ? w.shape[1] : w.shape[1] * 2;
  if (w.shape.length !== 2 || scale.shape.length !== 2 || scale.shape[0] !== rows || cols % FP4_GROUP !== 0 || scale.shape[1] !== cols / FP4_GROUP) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${key}" (${w.dtype} [${w.shape.join(', ')}]) beside "${scaleKey}" (F8_E8M0 [${scale.shape.join(', ')}]) is not DeepSeek-V4's packed FP4: expected codes (out, in/2) and one E8M0 scale per ${FP4_GROUP} inputs, (out, in/${FP4_GROUP})`);
  }
  return { key, scaleKey, rows, cols, storedDtype: w.dtype, storedShape: w.shape.slice() };
}

/** The signed value of each 4-bit code (code 8, −0, read as +0, as DeepSeek's FP4_TABLE). */
const CODE_VALUES = e2m1CodeValues(false);

/**
 * The weight as f32 values (rows, cols), a row range at a time: the codes and scales of those rows
 * read and decoded by the row decoder (row-decoders.ts `deepseek-fp4`), on `decodeOn`'s threads
 * where it takes them; rows holding a scale byte from which a value can pass f32 (253 up: 255 is
 * E8M0's NaN, 6·2^126 is past f32) decoded here instead, value by value, the first value past f32
 * (or NaN) refused by name.
 */
export function fp4ViewTensor(base: BaseModel & { readPart(key: string, start: number, length: number): Promise<Uint8Array> }, w: Fp4Weight): ViewTensor {
  const rowBytes = w.cols * 4;
  const groups = w.cols / FP4_GROUP;
  return {
    name: w.key, dtype: 'F32', shape: [w.rows, w.cols], byteLength: w.rows * rowBytes,
    decodedFrom: `decoded from DeepSeek-V4's packed FP4 ${w.key} (${w.storedDtype} [${w.storedShape.join(', ')}]) and its E8M0 scales ${w.scaleKey}`,
    async readPart(start, length, into, decodeOn) {
      if (start % 4 !== 0 || length % 4 !== 0) throw new RangeError(`${w.key}: bytes ${start}+${length} are not whole f32 values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      const [packed, scales] = await Promise.all([
        base.readPart(w.key, r0 * (w.cols / 2), (r1 - r0) * (w.cols / 2)),
        base.readPart(w.scaleKey, r0 * groups, (r1 - r0) * groups),
      ]);
      const offset = start - r0 * rowBytes;
      let unsafe = false;
      for (let i = 0; i < scales.length && !unsafe; i++) unsafe = scales[i] >= DEEPSEEK_FP4_FIRST_UNSAFE_SCALE;
      if (unsafe) return fp4CheckedRows(base.name, w, packed, scales, r0, offset, length, into);
      const source: RowSource = {
        name: w.key, model: base.name, decoder: 'deepseek-fp4', cols: w.cols, firstRow: r0,
        arrays: { codes: sourceBytes(packed), scales: sourceBytes(scales) }, params: {},
      };
      // Whole rows straight into `into` where it is offered (the pipeline's slab memory, which the threads then write in place).
      const whole = offset === 0 && length === (r1 - r0) * rowBytes && into?.byteLength === length && into.byteOffset % 4 === 0;
      const out = whole ? new Float32Array(into.buffer, into.byteOffset, length / 4) : undefined;
      const values = (await decodeOn?.(source, r0, r1, out)) ?? decodeSourceRows(source, r0, r1, out);
      if (whole) return into;
      const bytes = new Uint8Array(values.buffer, values.byteOffset + offset, length);
      if (into && into.byteLength === length) {
        into.set(bytes);
        return into;
      }
      return bytes.slice();
    },
  };
}

/** Rows from `r0` decoded value by value, the first value past f32 (or NaN) refused, naming its row, group and scale; bytes [offset, offset + length) of them returned. */
function fp4CheckedRows(model: string, w: Fp4Weight, packed: Uint8Array, scales: Uint8Array, r0: number, offset: number, length: number, into?: Uint8Array): Uint8Array {
  const values = new Float32Array((packed.length * 2));
  for (let i = 0; i < values.length; i++) {
    const byte = packed[i >> 1];
    const code = i & 1 ? byte >> 4 : byte & 0x0f;
    const s = scales[Math.floor(i / FP4_GROUP)];
    const v = Math.fround(CODE_VALUES[code] * e8m0Value(s));
    if (!Number.isFinite(v)) {
      const row = r0 + Math.floor(i / w.cols), col = i % w.cols;
      throw new MergeError('UNSUPPORTED_FORMAT', `${model}: tensor "${w.scaleKey}" holds ${s === 255 ? "255 (E8M0's NaN)" : `the scale 2^${s - 127}`} for row ${row}, inputs ${col - (col % FP4_GROUP)}–${col - (col % FP4_GROUP) + FP4_GROUP - 1} of ${w.key}, whose value there is ${v}, not a finite float32 weight`);
    }
    values[i] = v;
  }
  const bytes = new Uint8Array(values.buffer, offset, length);
  if (into && into.byteLength === length) {
    into.set(bytes);
    return into;
  }
  return bytes.slice();
}

/** The entry scaled-fp8.ts lists for an FP4 weight: its view's values with one scale of 1. */
export function fp4ScaledWeight(base: Parameters<typeof fp4ViewTensor>[0], w: Fp4Weight): ScaledFp8Weight {
  return {
    weightKey: w.key, codeDtype: 'F32', scaleKey: w.scaleKey, scaleDtype: 'F8_E8M0', rows: w.rows, cols: w.cols,
    blockRows: w.rows, blockCols: w.cols, scales: Float64Array.of(1), scaleLayout: 'fp4-e8m0', view: fp4ViewTensor(base, w),
    storedDtype: w.storedDtype, storedShape: w.storedShape,
  };
}

/**
 * Rows of merged f32 values W' (rows × cols) quantized as DeepSeek's FP4 quantizer (see the file's
 * note; deepseek-fp4-codes.ts): the packed codes (rows × cols/2 bytes) and each group's E8M0 scale
 * byte into `scaleBytes` from row `rowStart`, on the calling thread. A group whose scale passes
 * E8M0's range (a W' past 6·2^127, or NaN) throws, naming the first such.
 */
export function fp4Quantize(weightKey: string, values: Float32Array, rowStart: number, cols: number, scaleBytes: Uint8Array): Uint8Array {
  const rowCount = values.length / cols;
  const out = new Uint8Array((rowCount * cols) / 2);
  deepseekFp4RowCodes({ values, rowStart, rowCount, cols, blockScales: scaleBytes }, 0, rowCount, out);
  checkFp4Scales(weightKey, values, rowStart, cols, scaleBytes);
  return out;
}

/** {@link fp4Quantize} with its rows on `threads` where they take them (the CPU backend's worker pool): the same bytes and refusal. `scaleBytes` is best shared memory (the threads then write it in place). */
export async function fp4QuantizeOn(threads: ComfyThreads | undefined, weightKey: string, values: Float32Array, rowStart: number, cols: number, scaleBytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
  const codes = await comfyCodes({ format: 'fp4-e8m0', values, rowStart, rowCount: values.length / cols, cols, blockScales: scaleBytes }, threads, signal);
  checkFp4Scales(weightKey, values, rowStart, cols, scaleBytes);
  return codes;
}

/** Throws for the first group of the slab whose scale the quantizer could not write ({@link FP4_BAD_GROUP}), naming its row, inputs and largest magnitude. */
function checkFp4Scales(weightKey: string, values: Float32Array, rowStart: number, cols: number, scaleBytes: Uint8Array): void {
  const groups = cols / FP4_GROUP;
  const from = rowStart * groups, to = from + values.length / FP4_GROUP;
  const bad = scaleBytes.subarray(from, to).indexOf(FP4_BAD_GROUP);
  if (bad < 0) return;
  const r = Math.floor(bad / groups), g = bad % groups;
  let amax = 0;
  for (let k = 0; k < FP4_GROUP; k++) amax = Math.max(amax, Math.abs(values[r * cols + g * FP4_GROUP + k]));
  throw new MergeError('NON_FINITE', `tensor "${weightKey}": its merged row ${rowStart + r}, inputs ${g * FP4_GROUP}–${g * FP4_GROUP + FP4_GROUP - 1} (largest magnitude ${amax}) needs an FP4 scale past E8M0's range; merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
}
