import { roundF8Saturating, roundForDType } from './fixtures.js';

/** torch.float8_e4m3fn decoded by hand: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN. */
export function e4m3Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 3) & 0xf;
  const mant = byte & 7;
  if (exp === 15 && mant === 7) return NaN;
  return sign * (exp === 0 ? (mant / 8) * 2 ** -6 : (1 + mant / 8) * 2 ** (exp - 7));
}

/** torch.float8_e5m2 decoded by hand: sign, 5 exponent bits (bias 15), 2 mantissa bits; exponent 31 is ±Inf (mantissa 0) or NaN. */
export function e5m2Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 2) & 0x1f;
  const mant = byte & 3;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (exp === 0 ? (mant / 4) * 2 ** -14 : (1 + mant / 4) * 2 ** (exp - 15));
}

/** The largest finite value of each fp8 type (torch.finfo(...).max): ComfyUI's divisor for a recalculated scale. */
const FP8_MAX = { F8_E4M3: 448, F8_E5M2: 57344 } as const;

/**
 * ComfyUI's re-quantization of a patched per-tensor fp8 layer with its scale recalculated
 * (comfy_kitchen's per-tensor fp8 quantize), rounded to nearest even instead of stochastically:
 * w = f32(W'), s = f32(max |w| / max) stored in `scaleDtype`, code = fp8(clamp(f32(w · f32(1 / s)), ±max)),
 * max = 448 for float8_e4m3fn codes, 57344 for float8_e5m2 ones.
 */
export function comfyRequantize(
  real: Float64Array, scaleDtype: 'F32' | 'F16' | 'BF16' = 'F32', codes: 'F8_E4M3' | 'F8_E5M2' = 'F8_E4M3',
): { scale: number; codes: Float64Array } {
  const w = real.map(Math.fround);
  const amax = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.fround(amax / FP8_MAX[codes]), scaleDtype);
  const inverse = Math.fround(1 / scale);
  return { scale, codes: w.map((x) => roundF8Saturating(Math.fround(x * inverse), codes)) };
}

/**
 * transformers' FineGrainedFP8 quantizer per 128 × 128 block of f32(W') (the last blocks of a
 * dimension no multiple of 128 partial): q = f32(448 / amax), code = e4m3(clamp(f32(w · q), ±448)),
 * scale_inv = f32(1 / q). A block of zeros has no such q, and is not drawn by the tests.
 */
export function fineGrainedFp8(real: Float64Array, rows: number, cols: number): { codes: Float64Array; scaleInv: number[] } {
  const w = real.map(Math.fround);
  const rowBlocks = Math.ceil(rows / 128), colBlocks = Math.ceil(cols / 128);
  const scaleInv: number[] = [];
  const codes = new Float64Array(w.length);
  for (let br = 0; br < rowBlocks; br++) for (let bc = 0; bc < colBlocks; bc++) {
    const r1 = Math.min(rows, (br + 1) * 128), c1 = Math.min(cols, (bc + 1) * 128);
    let amax = 0;
    for (let r = br * 128; r < r1; r++) for (let c = bc * 128; c < c1; c++) amax = Math.max(amax, Math.abs(w[r * cols + c]));
    if (amax === 0) throw new Error(`fineGrainedFp8: block (${br}, ${bc}) is all zeros`);
    const q = Math.fround(448 / amax);
    scaleInv.push(Math.fround(1 / q));
    for (let r = br * 128; r < r1; r++) for (let c = bc * 128; c < c1; c++) codes[r * cols + c] = roundF8Saturating(Math.fround(w[r * cols + c] * q), 'F8_E4M3');
  }
  return { codes, scaleInv };
}

/**
 * cuBLAS' block-scale layout as comfy_kitchen's to_blocked writes it, step by step: the (rows, cols)
 * grid padded with zeros to (⌈rows/128⌉·128, ⌈cols/4⌉·4), viewed (row tiles, 128, col tiles, 4),
 * permuted to (row tiles, col tiles, 128, 4), the 128 split (4, 32) and those two swapped. Entry k of
 * the result is the grid's index it holds (-1 for padding).
 */
export function blockedOrder(rows: number, cols: number): { order: Int32Array; shape: [number, number] } {
  const rowTiles = Math.ceil(rows / 128), colTiles = Math.ceil(cols / 4);
  const order = new Int32Array(rowTiles * 128 * colTiles * 4);
  let k = 0;
  for (let rt = 0; rt < rowTiles; rt++) {
    for (let ct = 0; ct < colTiles; ct++) {
      for (let inner = 0; inner < 32; inner++) {
        for (let outer = 0; outer < 4; outer++) {
          for (let c = 0; c < 4; c++) {
            const r = rt * 128 + outer * 32 + inner, col = ct * 4 + c;
            order[k++] = r < rows && col < cols ? r * cols + col : -1;
          }
        }
      }
    }
  }
  return { order, shape: [rowTiles * 128, colTiles * 4] };
}

/** A swizzled block-scale tensor's bytes back in row-major order (rows × blocksPerRow), undoing {@link blockedOrder}. */
export function unswizzled(scale: { bytes: Uint8Array }, rows: number, blocksPerRow: number): Uint8Array {
  const grid = new Uint8Array(rows * blocksPerRow);
  blockedOrder(rows, blocksPerRow).order.forEach((at, k) => { if (at >= 0) grid[at] = scale.bytes[k]; });
  return grid;
}

/** comfy_kitchen's e8m0_to_f32: 2^(e − 127), with e = 0 read as 0. */
export const e8m0Value = (e: number) => (e === 0 ? 0 : 2 ** (e - 127));

/**
 * ComfyUI's re-quantization of a patched mxfp8 layer (comfy/float.py's
 * stochastic_round_quantize_mxfp8_by_block), rounded to nearest even instead of stochastically:
 * per 32 inputs of a row, w = f32(W'), s = max(f32(max |w| / 448), 2^-127),
 * e = clamp(ceil(f32(log2 s)) + 127, 0, 254), code = e4m3(clamp(f32(w / 2^(e − 127)), ±448));
 * a block of zeros gets e = 0. The exponents come back row-major, one per block.
 */
export function comfyMxfp8Requantize(real: Float64Array, rows: number, cols: number): { exponents: Uint8Array; codes: Float64Array } {
  const w = real.map(Math.fround);
  const blocks = cols / 32;
  const exponents = new Uint8Array(rows * blocks);
  const codes = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < blocks; j++) {
      const at = r * cols + j * 32;
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(w[at + i]));
      if (amax === 0) continue;
      const s = Math.max(Math.fround(amax / 448), 2 ** -127);
      const e = Math.min(254, Math.max(0, Math.ceil(Math.fround(Math.log2(s))) + 127));
      exponents[r * blocks + j] = e;
      for (let i = 0; i < 32; i++) codes[at + i] = roundF8Saturating(Math.fround(w[at + i] / 2 ** (e - 127)), 'F8_E4M3');
    }
  }
  return { exponents, codes };
}

/** e2m1 (NVFP4's codes) decoded by hand: a sign bit (8) and three bits indexing 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
export function e2m1Value(nibble: number): number {
  const m = [0, 0.5, 1, 1.5, 2, 3, 4, 6][nibble & 7];
  return nibble & 8 ? -m : m;
}

/**
 * One NVFP4 value as ModelOpt's NVFP4QTensor.dequantize computes it, step by step in float32:
 * per_block_scale = f32(e4m3(block scale) × weight_scale_2), then f32(e2m1 × per_block_scale), where
 * its e2m1 table (`e2m1_values`) gives code 8 as +0 (so its value is +0, not −0, under a positive scale).
 */
export function modelOptNvfp4Value(nibble: number, scaleByte: number, weightScale2: number): number {
  const e2m1 = nibble === 8 ? 0 : e2m1Value(nibble);
  return Math.fround(e2m1 * Math.fround(e4m3Value(scaleByte) * weightScale2));
}

/**
 * One nvfp4 value as ComfyUI dequantizes a comfy_quant layer (comfy_kitchen's dequantize_nvfp4 into
 * float32: its CUDA kernel and its eager reference), step by step in float32: decode_scale =
 * f32(e4m3(block scale) × weight_scale_2), then f32(e2m1 × decode_scale), code 8 being −0.
 */
export function comfyNvfp4Value(nibble: number, scaleByte: number, weightScale2: number): number {
  return Math.fround(e2m1Value(nibble) * Math.fround(e4m3Value(scaleByte) * weightScale2));
}

/**
 * ModelOpt's FP8 export of a weight W' held in the model's dtype d (unified_export_hf.py,
 * quant_utils.py): amax = max |W'_d|, weight_scale = f32(amax / 448) (a 0-dim f32 tensor; stored in
 * `scaleDtype` where the file had another), and codes = (W'_d / weight_scale).to(float8_e4m3fn),
 * which torch computes on the GPU with the 0-dim scale cast to d, each quotient in f32 rounded to
 * d, then cast to e4m3 (nearest even, saturating). `divisor`: the scale as d holds it.
 */
export function modelOptRequantize(real: ArrayLike<number>, d: 'F32' | 'BF16' | 'F16', scaleDtype: 'F32' | 'F16' | 'BF16' = 'F32'): { scale: number; divisor: number; codes: Float64Array } {
  const wd = Float64Array.from(real, (x) => roundForDType(x, d));
  const amax = wd.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.fround(amax / 448), scaleDtype);
  const divisor = roundForDType(scale, d);
  return { scale, divisor, codes: wd.map((x) => roundF8Saturating(roundForDType(Math.fround(x / divisor), d), 'F8_E4M3')) };
}

/**
 * compressed-tensors' re-quantization of one block (a channel, or the whole tensor) of W' rounded
 * to f32, as llm-compressor's calculate_qparams and quantize compute it: s = max(f32(amax / 448),
 * float32 eps) stored in the scale's dtype, code = e4m3(clamp(f32(w / s), ±448)).
 */
export function compressedTensorsRequantize(block: ArrayLike<number>, scaleDtype: 'F32' | 'F16' | 'BF16'): { scale: number; codes: Float64Array } {
  const w = Float64Array.from(block, Math.fround);
  const amax = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scale = roundForDType(Math.max(Math.fround(amax / 448), 2 ** -23), scaleDtype);
  return { scale, codes: w.map((x) => roundF8Saturating(Math.fround(x / scale), 'F8_E4M3')) };
}

const E2M1_GRID = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** The e4m3fn byte of a non-negative e4m3 value. */
export function e4m3Byte(v: number): number {
  for (let b = 0; b < 0x80; b++) if (e4m3Value(b) === v) return b;
  throw new RangeError(`${v} is no e4m3fn value`);
}

/**
 * ComfyUI's nvfp4 quantize of W' (comfy_kitchen's quantize_nvfp4, nearest even), by hand, all in
 * float32 on w = f32(W'): s2 = f32(max |w| / 2688); per 16 inputs of a row, block scale b =
 * e4m3(min(f32(f32(amax / 6) / s2), 448)); t = f32(s2 · b); code = the e2m1 value nearest
 * f32(w / t) clamped to ±6 (ties to the even code), its sign kept; t = 0 gives codes 0. The codes
 * come back packed (element 2k in the high nibble), the block scales swizzled (zeros in the padding).
 */
export function comfyNvfp4Requantize(real: Float64Array, rows: number, cols: number): { packed: Uint8Array; scales: Uint8Array; s2: number; saturated: number; negativeZeros: number; zeroScaleBlocks: number } {
  const w = real.map(Math.fround);
  const s2 = Math.fround(w.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / (448 * 6));
  const blocks = cols / 16;
  const grid = new Uint8Array(rows * blocks);
  const codes = new Uint8Array(rows * cols);
  let saturated = 0, negativeZeros = 0, zeroScaleBlocks = 0;
  for (let b = 0; b < rows * blocks; b++) {
    const at = Math.floor(b / blocks) * cols + (b % blocks) * 16;
    const block = w.subarray(at, at + 16);
    const amax = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const scale = roundF8Saturating(Math.min(Math.fround(Math.fround(amax / 6) / s2), 448), 'F8_E4M3');
    grid[b] = e4m3Byte(scale);
    const total = Math.fround(s2 * scale);
    if (total === 0) zeroScaleBlocks++;
    block.forEach((x, i) => {
      if (total === 0) return;
      const q = Math.fround(x / total);
      if (Math.abs(q) > 6) saturated++;
      const a = Math.min(Math.abs(q), 6);
      // The nearest grid value; of two equally near, the even code.
      let best = 0;
      for (let k = 1; k < 8; k++) {
        const d = Math.abs(a - E2M1_GRID[k]) - Math.abs(a - E2M1_GRID[best]);
        if (d < 0 || (d === 0 && k % 2 === 0)) best = k;
      }
      const negative = q < 0 || Object.is(q, -0);
      if (negative && best === 0) negativeZeros++;
      codes[at + i] = negative ? best + 8 : best;
    });
  }
  const packed = Uint8Array.from({ length: rows * cols / 2 }, (_, k) => codes[2 * k] * 16 + codes[2 * k + 1]);
  const scales = Uint8Array.from(blockedOrder(rows, blocks).order, (at) => (at < 0 ? 0 : grid[at]));
  return { packed, scales, s2, saturated, negativeZeros, zeroScaleBlocks };
}

/** torch.round: to the nearest integer, a tie to the even one. */
function roundHalfEven(x: number): number {
  return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

/**
 * comfy_kitchen's quantize_int8_tensorwise / quantize_int8_rowwise on f32(W'): each group (the
 * tensor, or a row) gets s = max(f32(amax / 127), f32(1e-30)) and codes clamp(round(f32(w / s)), −128, 127).
 */
export function comfyInt8Requantize(real: ArrayLike<number>, rows: number, perRow: boolean): { scales: number[]; codes: number[] } {
  const w = Array.from(real, (x) => Math.fround(x));
  const groups = perRow ? rows : 1;
  const span = w.length / groups;
  const scales: number[] = [];
  const codes: number[] = [];
  for (let g = 0; g < groups; g++) {
    const part = w.slice(g * span, (g + 1) * span);
    const amax = part.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const s = Math.max(Math.fround(amax / 127), Math.fround(1e-30));
    scales.push(s);
    for (const x of part) codes.push(Math.min(127, Math.max(-128, roundHalfEven(Math.fround(x / s)))) + 0); // + 0: an int8 has no −0
  }
  return { scales, codes };
}
