/**
 * Merged weights back to e4m3fn codes (e5m2 for ComfyUI's float8_e5m2 layers) with each block's scale recomputed as the checkpoint's own
 * quantizer computes it (see scaled-fp8-output.ts for the two rules), from W' rounded once to f32.
 * The two passes over the values (each block's largest magnitude, then the codes) run in
 * WebAssembly SIMD (wasm/fp8-requantize.ts), in pieces of at most PIECE_VALUES values so that its
 * memory stays small whatever the slab; where WebAssembly SIMD is missing or may not be compiled
 * the same arithmetic runs in TypeScript. Both give the same bytes: an f32 product of two f32
 * values, or an f32 quotient, is correctly rounded either way (a double's 53 bits hold the product
 * exactly, and are enough for the quotient to round once), and both encoders round to nearest even
 * and saturate at ±448. Browser-safe.
 */
import { decodeToF32, encodeFromF32, f32BitsToF8Bits } from '../dtype.js';
import type { ScaledFp8Base, ScaledFp8Weight } from '../formats/scaled-fp8.js';
import { fp8RequantizeWasmBase64 } from './fp8-requantize.generated.js';
import { instantiateEmbeddedWasm } from '../embedded-wasm.js';
import { MergeError } from '../errors.js';
import { mxfp8Exponent } from '../formats/comfy-mxfp8.js';
import { requantizeInt8Slab } from '../formats/comfy-int8.js';

/** e4m3fn's largest finite magnitude. */
const E4M3_MAX = 448;
/** e5m2's largest finite magnitude: the `comfy` rule's divisor for ComfyUI's float8_e5m2 layers. */
const E5M2_MAX = 57344;
/** torch.finfo(torch.float32).eps: compressed-tensors' smallest scale. */
const F32_EPS = 2 ** -23;
/** Values per call into WebAssembly: 4 MiB of f32 in, 1 MiB of codes out. */
const PIECE_VALUES = 1 << 20;

interface Exports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  blockMaxima(values: number, firstRow: number, rows: number, cols: number, blockRows: number, blockCols: number, out: number): void;
  encodeBlocks(values: number, out: number, firstRow: number, rows: number, cols: number, blockRows: number, blockCols: number, factors: number, divide: number): void;
}

let loaded: Exports | null | undefined;

/** The module, compiled synchronously where the engine allows it (it is small); else null. */
function wasm(): Exports | null {
  if (loaded !== undefined) return loaded;
  loaded = instantiateEmbeddedWasm<Exports>(fp8RequantizeWasmBase64);
  return loaded;
}

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
 * lies inside one block row (a per-tensor scale).
 */
export function requantizeSlab(
  w: ScaledFp8Weight, rule: ScaledFp8Base['rule'], values: Float32Array, rowStart: number, rowCount: number, scales: Float64Array,
  tensorMax?: number, options: RequantizeOptions = {},
): Uint8Array {
  // ComfyUI's int8_tensorwise layers: int8 codes, by their own rule.
  if (w.scaleLayout === 'int8_tensorwise') return requantizeInt8Slab(w, values, rowStart, rowCount, scales, tensorMax);
  const { cols, blockRows, blockCols } = w;
  const colBlocks = Math.ceil(cols / blockCols);
  const band0 = Math.floor(rowStart / blockRows);
  const bands = Math.floor((rowStart + rowCount - 1) / blockRows) - band0 + 1;
  if (rowStart % blockRows !== 0 && bands > 1) throw new Error(`${w.weightKey}: a slab at row ${rowStart} does not start on a block row`);
  // The WebAssembly encoder writes e4m3fn codes only; e5m2 codes (ComfyUI's float8_e5m2 layers) are encoded here.
  const codeDtype = w.codeDtype === 'F8_E5M2' ? 'F8_E5M2' : 'F8_E4M3';
  const e = options.encoder === 'js' || codeDtype !== 'F8_E4M3' ? null : wasm();
  const rowsPerPiece = Math.max(1, Math.floor((options.pieceValues ?? PIECE_VALUES) / cols));

  // Each block's largest magnitude over the slab's rows.
  const amax = new Float32Array(bands * colBlocks);
  if (tensorMax !== undefined) amax.fill(tensorMax);
  else if (e) {
    const { valuesAt, outAt } = place(e, rowsPerPiece, cols, bands * colBlocks);
    for (let p0 = 0; p0 < rowCount; p0 += rowsPerPiece) {
      const n = Math.min(rowsPerPiece, rowCount - p0);
      new Float32Array(e.memory.buffer, valuesAt, n * cols).set(values.subarray(p0 * cols, (p0 + n) * cols));
      e.blockMaxima(valuesAt, rowStart + p0, n, cols, blockRows, blockCols, outAt);
      const first = Math.floor((rowStart + p0) / blockRows) - band0;
      const pieceBands = Math.floor((rowStart + p0 + n - 1) / blockRows) - band0 - first + 1;
      const maxima = new Float32Array(e.memory.buffer, outAt, pieceBands * colBlocks);
      for (let i = 0; i < maxima.length; i++) {
        const at = first * colBlocks + i;
        if (maxima[i] > amax[at]) amax[at] = maxima[i];
      }
    }
  } else {
    for (let r = 0; r < rowCount; r++) {
      const band = Math.floor((rowStart + r) / blockRows) - band0;
      for (let c = 0; c < cols; c++) {
        const at = band * colBlocks + Math.floor(c / blockCols);
        const a = Math.abs(values[r * cols + c]);
        if (a > amax[at]) amax[at] = a;
      }
    }
  }

  // Each block's factor (q to multiply by, or s to divide by) and its stored scale.
  const factors = new Float32Array(bands * colBlocks);
  for (let i = 0; i < factors.length; i++) {
    const a = amax[i];
    const at = (band0 + Math.floor(i / colBlocks)) * colBlocks + (i % colBlocks);
    if (rule === 'reciprocal') {
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

  // The codes.
  const out = new Uint8Array(rowCount * cols);
  const divide = (rule !== 'reciprocal' && rule !== 'comfy') || w.scaleLayout === 'mxfp8';
  const d = rule === 'modelopt' ? options.quantizerDtype ?? 'F32' : 'F32';
  if (d !== 'F32') {
    // Each quotient rounded to f32, then to d, then to e4m3 (torch: a d tensor over a d scalar, cast).
    const quotients = new Float32Array(rowCount * cols);
    for (let r = 0; r < rowCount; r++) {
      const band = Math.floor((rowStart + r) / blockRows) - band0;
      for (let c = 0; c < cols; c++) quotients[r * cols + c] = values[r * cols + c] / factors[band * colBlocks + Math.floor(c / blockCols)];
    }
    const rounded = decodeToF32(encodeFromF32(quotients, d), d);
    for (let i = 0; i < rounded.length; i++) out[i] = fp8(rounded[i], 'F8_E4M3');
    return out;
  }
  if (e) {
    const { valuesAt, outAt, factorsAt } = place(e, rowsPerPiece, cols, bands * colBlocks);
    new Float32Array(e.memory.buffer, factorsAt, factors.length).set(factors);
    for (let p0 = 0; p0 < rowCount; p0 += rowsPerPiece) {
      const n = Math.min(rowsPerPiece, rowCount - p0);
      new Float32Array(e.memory.buffer, valuesAt, n * cols).set(values.subarray(p0 * cols, (p0 + n) * cols));
      const first = Math.floor((rowStart + p0) / blockRows) - band0;
      e.encodeBlocks(valuesAt, outAt, rowStart + p0, n, cols, blockRows, blockCols, factorsAt + first * colBlocks * 4, divide ? 1 : 0);
      out.set(new Uint8Array(e.memory.buffer, outAt, n * cols), p0 * cols);
    }
    return out;
  }
  for (let r = 0; r < rowCount; r++) {
    const band = Math.floor((rowStart + r) / blockRows) - band0;
    for (let c = 0; c < cols; c++) {
      const f = factors[band * colBlocks + Math.floor(c / blockCols)];
      const x = values[r * cols + c];
      out[r * cols + c] = fp8(divide ? x / f : x * f, codeDtype);
    }
  }
  return out;
}

/** The module's memory laid out for a piece: values | codes | one f32 per block (maxima or factors). */
function place(e: Exports, rowsPerPiece: number, cols: number, blocks: number): { valuesAt: number; outAt: number; factorsAt: number } {
  const align = (n: number) => (n + 15) & ~15;
  const valuesAt = align(e.heapBase());
  const outAt = align(valuesAt + rowsPerPiece * cols * 4);
  const factorsAt = align(outAt + Math.max(rowsPerPiece * cols, blocks * 4));
  const need = factorsAt + blocks * 4;
  if (e.memory.buffer.byteLength < need) e.memory.grow(Math.ceil((need - e.memory.buffer.byteLength) / 65536));
  return { valuesAt, outAt, factorsAt };
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
/** fp8 code of a value rounded to float32, to nearest even, saturated at ±448 or ±57344 (torch's clamp, then cast). */
function fp8(x: number, dtype: 'F8_E4M3' | 'F8_E5M2'): number {
  f32[0] = x;
  return f32BitsToF8Bits(f32Bits[0], dtype);
}

/** A scale as `dtype` stores it (to nearest even): its tensor's dtype, or the `modelopt` rule's d. */
function storedScale(s: number, dtype: ScaledFp8Weight['scaleDtype']): number {
  return decodeToF32(encodeFromF32(Float32Array.of(s), dtype), dtype)[0];
}
