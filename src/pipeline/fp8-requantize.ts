/**
 * Merged weights back to e4m3fn codes (e5m2 for ComfyUI's float8_e5m2 layers) with each block's scale recomputed as the checkpoint's own
 * quantizer computes it (see scaled-fp8-output.ts for the two rules), from W' rounded once to f32.
 * The two passes over the values (each block's largest magnitude, then the codes) are
 * formats/fp8-block-codes.ts's, on the calling thread or a backend's worker threads (the same
 * bytes); the scales between them are computed here. Browser-safe.
 */
import { decodeToF32, encodeFromF32 } from '../dtype.js';
import type { ScaledFp8Base, ScaledFp8Weight } from '../formats/scaled-fp8.js';
import { fp8, fp8Bands, fp8Codes, fp8Maxima, fp8RowCodes, fp8RowMaxima, type Fp8Encoding, type Fp8Rows, type Fp8Threads } from '../formats/fp8-block-codes.js';
import { MergeError } from '../errors.js';
import { mxfp8Exponent } from '../formats/comfy-mxfp8.js';
import { deepseekPowerOfTwoScale } from '../formats/deepseek-v4-fp4.js';
import { int8Rows, int8Scales, requantizeInt8Slab } from '../formats/comfy-int8.js';
import { comfyCodes, type ComfyThreads } from '../formats/comfy-requantize.js';

/** e4m3fn's largest finite magnitude. */
const E4M3_MAX = 448;
/** e5m2's largest finite magnitude: the `comfy` rule's divisor for ComfyUI's float8_e5m2 layers. */
const E5M2_MAX = 57344;
/** torch.finfo(torch.float32).eps: compressed-tensors' smallest scale. */
const F32_EPS = 2 ** -23;

/** Values of the slab, its geometry and the options, as the two passes read them. */
function slabRows(w: ScaledFp8Weight, values: Float32Array, rowStart: number, rowCount: number, options: RequantizeOptions): Fp8Rows {
  const { cols, blockRows, blockCols } = w;
  const rows: Fp8Rows = { values, rowStart, rowCount, cols, blockRows, blockCols, ...(options.encoder ? { encoder: options.encoder } : {}), ...(options.pieceValues ? { pieceValues: options.pieceValues } : {}) };
  if (rowStart % blockRows !== 0 && fp8Bands(rows, rowStart, rowCount) > 1) throw new Error(`${w.weightKey}: a slab at row ${rowStart} does not start on a block row`);
  return rows;
}

/** Where the two passes over the values run (see {@link requantizeSlabOn}). */
export type RequantizeThreads = Fp8Threads & ComfyThreads;

/** How a slab is encoded: WebAssembly where it compiles (the default) or TypeScript; values per WebAssembly call (tests make it small). */
export interface RequantizeOptions {
  encoder?: 'wasm' | 'js';
  pieceValues?: number;
  /** The `modelopt` rule's dtype d (the values are already in it): the divisor and each quotient are rounded to d. */
  quantizerDtype?: 'F32' | 'F16' | 'BF16';
}

/**
 * fp8 codes for a slab's f32 values (rows [rowStart, rowStart + rowCount) of the weight), block by
 * block, each block's scale recomputed into `scales` (the weight's whole grid, as stored). A block
 * of zeros keeps its old scale (transformers' rule would divide by zero) and codes 0. `tensorMax`:
 * the maximum of a per-tensor scale, over the whole weight. The slab starts on a block row, or
 * lies inside one block row (a per-tensor scale). On the calling thread; {@link requantizeSlabOn}
 * gives the same bytes on a backend's threads.
 */
export function requantizeSlab(
  w: ScaledFp8Weight, rule: ScaledFp8Base['rule'], values: Float32Array, rowStart: number, rowCount: number, scales: Float64Array,
  tensorMax?: number, options: RequantizeOptions = {},
): Uint8Array {
  // ComfyUI's int8_tensorwise layers: int8 codes, by their own rule.
  if (w.scaleLayout === 'int8_tensorwise') return requantizeInt8Slab(w, values, rowStart, rowCount, scales, tensorMax);
  const rows = slabRows(w, values, rowStart, rowCount, options);
  const enc = slabEncoding(w, rule, rows, tensorMax !== undefined ? tensorMax : fp8RowMaxima(rows, 0, rowCount), scales, options);
  if (rule === 'modelopt' && options.quantizerDtype !== undefined && options.quantizerDtype !== 'F32') return quantizerDtypeCodes(rows, enc, options.quantizerDtype);
  const out = new Uint8Array(rowCount * w.cols);
  fp8RowCodes(rows, enc, 0, rowCount, out);
  return out;
}

/**
 * {@link requantizeSlab} with its two passes over the values (each block's maximum, the codes) on
 * `threads` where they take them (a CPU backend's worker pool): the same bytes, since a block's
 * maximum over pieces of rows is the maximum of their maxima and each code depends on its value and
 * its block's factor alone.
 */
export async function requantizeSlabOn(
  threads: RequantizeThreads | undefined, w: ScaledFp8Weight, rule: ScaledFp8Base['rule'], values: Float32Array, rowStart: number, rowCount: number,
  scales: Float64Array, tensorMax?: number, options: RequantizeOptions = {}, signal?: AbortSignal,
): Promise<Uint8Array> {
  if (w.scaleLayout === 'int8_tensorwise') {
    // ComfyUI's int8 rule, its codes on the threads too (formats/comfy-requantize.ts).
    const int8 = int8Rows(w, values, rowStart, rowCount, tensorMax);
    const codes = await comfyCodes({ format: 'int8', ...int8 }, threads, signal);
    int8Scales(int8, scales);
    return codes;
  }
  const rows = slabRows(w, values, rowStart, rowCount, options);
  const enc = slabEncoding(w, rule, rows, tensorMax !== undefined ? tensorMax : await fp8Maxima(rows, threads, signal), scales, options);
  if (rule === 'modelopt' && options.quantizerDtype !== undefined && options.quantizerDtype !== 'F32') return quantizerDtypeCodes(rows, enc, options.quantizerDtype);
  return fp8Codes(rows, enc, threads, signal);
}

/**
 * Each block's factor (q to multiply by, or s to divide by) from its largest magnitude (`amax`, one
 * per block from the slab's first block row, or one for the whole tensor), its stored scale written
 * into `scales`.
 */
function slabEncoding(
  w: ScaledFp8Weight, rule: ScaledFp8Base['rule'], rows: Fp8Rows, amaxOf: Float32Array | number, scales: Float64Array, options: RequantizeOptions,
): Fp8Encoding {
  const { blockRows, blockCols } = w;
  const colBlocks = Math.ceil(w.cols / blockCols);
  const band0 = Math.floor(rows.rowStart / blockRows);
  const codeDtype = w.codeDtype === 'F8_E5M2' ? 'F8_E5M2' : 'F8_E4M3';
  const powerOfTwo = w.scaleDtype === 'F8_E8M0' || w.scaleFormat === 'ue8m0';
  const factors = new Float32Array(fp8Bands(rows, rows.rowStart, rows.rowCount) * colBlocks);
  for (let i = 0; i < factors.length; i++) {
    const a = typeof amaxOf === 'number' ? Math.fround(amaxOf) : amaxOf[i];
    const at = (band0 + Math.floor(i / colBlocks)) * colBlocks + (i % colBlocks);
    if (rule === 'reciprocal' && powerOfTwo) {
      // DeepSeek-V4's E8M0 block scales (and DeepSeek-V3.1 / V3.2's F32 ones under scale_fmt
      // "ue8m0"), as DeepSeek's act_quant computes them with scale_fmt "ue8m0": amax floored at
      // 1e-4, s = 2^⌈log2(f32(amax · f32(1/448)))⌉, codes = e4m3(W' / s).
      scales[at] = storedScale(deepseekPowerOfTwoScale(a, E4M3_MAX, 1e-4), w.scaleDtype);
      factors[i] = scales[at];
    } else if (rule === 'reciprocal') {
      const q = a === 0 ? 0 : Math.fround(E4M3_MAX / a);
      if (a !== 0) scales[at] = storedScale(Math.fround(1 / q), w.scaleDtype);
      factors[i] = q;
    } else if (rule === 'comfy' && w.scaleLayout === 'mxfp8') {
      // ComfyUI's mxfp8: a power-of-two scale per block, codes = W / scale; a block of zeros gets e8m0 0.
      const e = a === 0 ? 0 : mxfp8Exponent(a);
      if (a !== 0 && e === 0) {
        const r0 = band0 + Math.floor(i / colBlocks), c0 = (i % colBlocks) * blockCols;
        throw new MergeError('NON_FINITE', `tensor "${w.weightKey}": its merged block at row ${r0}, columns ${c0}–${c0 + blockCols - 1} (largest magnitude ${a}) is too small for an e8m0 scale ComfyUI can divide by; merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
      }
      scales[at] = a === 0 ? 0 : 2 ** (e - 127);
      factors[i] = a === 0 ? 1 : scales[at];
    } else if (rule === 'comfy') {
      // ComfyUI: s = f32(amax) / the codes' largest finite value (448 or 57344), codes = W · f32(1 / s); a block of zeros keeps its scale.
      if (a !== 0) scales[at] = storedScale(Math.fround(a / (codeDtype === 'F8_E5M2' ? E5M2_MAX : E4M3_MAX)), w.scaleDtype);
      const q = a === 0 ? 0 : Math.fround(1 / scales[at]);
      factors[i] = q;
    } else if (rule === 'modelopt') {
      // A block of zeros keeps its scale (ModelOpt would divide by zero); its codes are zeros.
      if (a !== 0) scales[at] = storedScale(Math.fround(a / E4M3_MAX), w.scaleDtype);
      factors[i] = a === 0 ? 1 : storedScale(scales[at], options.quantizerDtype ?? 'F32');
    } else {
      const s = storedScale(Math.max(Math.fround(a / E4M3_MAX), F32_EPS), w.scaleDtype);
      scales[at] = s;
      factors[i] = s;
    }
    // A scale its dtype cannot hold (Inf), or a factor that overflows (codes NaN or all ±448, the
    // scale 0): the written block would be Inf or NaN, not W'.
    if (a !== 0 && !(Number.isFinite(scales[at]) && Number.isFinite(factors[i]) && factors[i] > 0)) {
      const r0 = (band0 + Math.floor(i / colBlocks)) * blockRows, c0 = (i % colBlocks) * blockCols;
      throw new MergeError('NON_FINITE', `tensor "${w.weightKey}": its merged block at row ${r0}, column ${c0} (largest magnitude ${a}) needs a scale that ${w.scaleKey} (${w.scaleDtype}) cannot hold (it would be ${scales[at]}, its factor ${factors[i]}); merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
    }
  }

  const divide = (rule !== 'reciprocal' && rule !== 'comfy') || w.scaleLayout === 'mxfp8' || powerOfTwo;
  return { factors, divide, codeDtype };
}

/** The `modelopt` rule in a dtype d other than f32: each quotient rounded to f32, then to d, then to e4m3 (torch: a d tensor over a d scalar, cast). */
function quantizerDtypeCodes(rows: Fp8Rows, enc: Fp8Encoding, d: 'F16' | 'BF16'): Uint8Array {
  const { values, rowStart, rowCount, cols, blockRows, blockCols } = rows;
  const colBlocks = Math.ceil(cols / blockCols);
  const band0 = Math.floor(rowStart / blockRows);
  const quotients = new Float32Array(rowCount * cols);
  for (let r = 0; r < rowCount; r++) {
    const band = Math.floor((rowStart + r) / blockRows) - band0;
    for (let c = 0; c < cols; c++) quotients[r * cols + c] = values[r * cols + c] / enc.factors[band * colBlocks + Math.floor(c / blockCols)];
  }
  const rounded = decodeToF32(encodeFromF32(quotients, d), d);
  const out = new Uint8Array(rowCount * cols);
  for (let i = 0; i < rounded.length; i++) out[i] = fp8(rounded[i], 'F8_E4M3');
  return out;
}

/** A scale as `dtype` stores it (to nearest even): its tensor's dtype, or the `modelopt` rule's d. */
function storedScale(s: number, dtype: ScaledFp8Weight['scaleDtype']): number {
  if (dtype === 'F8_E8M0') return s; // a power of two already (deepseekPowerOfTwoScale)
  return decodeToF32(encodeFromF32(Float32Array.of(s), dtype), dtype)[0];
}
