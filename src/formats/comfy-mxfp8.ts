/**
 * ComfyUI's `mxfp8` comfy_quant layers (quant_ops.py's TensorCoreMXFP8Layout, comfy_kitchen's
 * MXFP8): `<m>.weight` F8_E4M3 (rows, cols), both multiples of 32 (the quantizer pads to them, and
 * ComfyUI loads the stored tensor as the layer's codes); `<m>.weight_scale` U8 (ComfyUI views it as
 * float8_e8m0fnu): one e8m0 exponent e per 32 inputs of a row, W = code × 2^(e − 127) (comfy_kitchen's
 * e8m0_to_f32 reads e = 0 as 0, and 255 is NaN), the (rows, cols/32) grid stored in cuBLAS' swizzled
 * block-scale layout (`to_blocked`): padded with zeros to (⌈rows/128⌉·128, ⌈cols/128⌉·4) and laid
 * out in tiles of 128 rows × 4 scale columns, 512 bytes each, row r of a tile at (r mod 32)·16 +
 * ⌊r/32⌋·4 within it.
 *
 * ComfyUI quantizes a patched layer again with comfy/float.py's stochastic_round_quantize_mxfp8_by_block:
 * per block of 32, s = max(f32(amax / 448), 2^-127), e = clamp(ceil(log2 s) + 127, 0, 254) with
 * log2 in float32, codes = W' / 2^(e − 127) rounded (stochastically there, to nearest even here) to
 * e4m3fn and clamped to ±448; a block of zeros gets e = 0 and codes 0.
 */
import { f8DecodeTable } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScaleRows, BROKEN_BASE, countBad, noBad } from './bad-scales.js';
import type { BaseModel } from './base-model.js';
import type { RowSource } from './row-decoders.js';
import type { ScaledFp8Weight } from './scaled-fp8.js';

export const MXFP8_BLOCK = 32;

/** The shape of the swizzled scale tensor for a rows × cols weight. */
export function mxfp8ScaleShape(rows: number, cols: number): [number, number] {
  return blockedScaleShape(rows, cols / MXFP8_BLOCK);
}

/** cuBLAS' swizzled block-scale tensor (`to_blocked`) for a rows × blocks grid: padded to 128 rows and 4 scale columns. */
export function blockedScaleShape(rows: number, blocks: number): [number, number] {
  return [Math.ceil(rows / 128) * 128, Math.ceil(blocks / 4) * 4];
}

/** Where the scale of row r, block column j sits in the swizzled tensor of `scaleCols` columns (`to_blocked`'s order). */
export function swizzledOffset(r: number, j: number, scaleCols: number): number {
  return (Math.floor(r / 128) * (scaleCols / 4) + Math.floor(j / 4)) * 512 + (r % 32) * 16 + Math.floor((r % 128) / 32) * 4 + (j % 4);
}

/**
 * The weight's block scales, as stored (swizzled e8m0 bytes, the whole tensor), → row-major
 * 2^(e − 127) values; a byte 255 (NaN) where a block's scale is read (not in the padding) is
 * refused with how many the weight holds and its first and last row.
 */
export function unswizzleMxfp8Scales(bytes: Uint8Array, rows: number, cols: number, baseName: string, key: string): Float64Array {
  const blocks = cols / MXFP8_BLOCK;
  const scaleCols = mxfp8ScaleShape(rows, cols)[1];
  // swizzledOffset(r, j) is a part of r plus a part of j: each worked out once, not per scale.
  const colPart = Int32Array.from({ length: blocks }, (_, j) => Math.floor(j / 4) * 512 + (j % 4));
  const value = Float64Array.from({ length: 256 }, (_, e) => (e === 0 ? 0 : 2 ** (e - 127)));
  const out = new Float64Array(rows * blocks);
  const nan = noBad();
  for (let r = 0; r < rows; r++) {
    const rowPart = swizzledOffset(r, 0, scaleCols);
    for (let j = 0; j < blocks; j++) {
      const e = bytes[rowPart + colPart[j]];
      if (e === 255) countBad(nan, r);
      out[r * blocks + j] = value[e];
    }
  }
  if (nan.count) throw badScaleRows(baseName, key, nan, ['NaN scale', 'NaN scales'], BROKEN_BASE, undefined, 'e8m0 255');
  return out;
}

/** Row-major block scales (powers of two, or 0) → the swizzled e8m0 bytes ComfyUI stores, padding zeros. */
export function swizzleMxfp8Scales(scales: Float64Array, rows: number, cols: number): Uint8Array {
  const blocks = cols / MXFP8_BLOCK;
  const [scaleRows, scaleCols] = mxfp8ScaleShape(rows, cols);
  const out = new Uint8Array(scaleRows * scaleCols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < blocks; j++) {
      const s = scales[r * blocks + j];
      out[swizzledOffset(r, j, scaleCols)] = s === 0 ? 0 : Math.log2(s) + 127;
    }
  }
  return out;
}

/**
 * A block's e8m0 exponent as ComfyUI's quantizer picks it from the block's largest magnitude (f32):
 * ceil(log2(max(f32(amax / 448), 2^-127))) + 127, clamped to [0, 254]; log2's float32 result is
 * taken correctly rounded (a block maximum a few float32 steps above 448 × 2^k is where torch's
 * log2 may round to k).
 */
export function mxfp8Exponent(amax: number): number {
  const s = Math.max(Math.fround(amax / 448), 2 ** -127);
  return Math.min(254, Math.max(0, Math.ceil(Math.fround(Math.log2(s))) + 127));
}

/** Reads one mxfp8 layer's grid; malformed weights and scales throw, naming them. */
export async function readComfyMxfp8(base: BaseModel, layer: string, from: string): Promise<ScaledFp8Weight> {
  const weightKey = `${layer}.weight`;
  const scaleKey = `${layer}.weight_scale`;
  const weight = base.tensors.get(weightKey)!;
  const scale = base.tensors.get(scaleKey);
  const where = `${base.name}: ${weightKey} (comfy_quant format "mxfp8", ${from})`;
  if (weight.dtype !== 'F8_E4M3' || weight.shape.length !== 2 || weight.shape[0] % MXFP8_BLOCK !== 0 || weight.shape[1] % MXFP8_BLOCK !== 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${weight.dtype} [${weight.shape.join(', ')}]; ComfyUI stores mxfp8 weights as F8_E4M3 (rows, cols), both multiples of 32`);
  }
  const [rows, cols] = weight.shape;
  const want = mxfp8ScaleShape(rows, cols);
  if (!scale || scale.dtype !== 'U8' || scale.shape.length !== 2 || scale.shape[0] !== want[0] || scale.shape[1] !== want[1]) {
    const what = scale ? `is ${scale.dtype} [${scale.shape.join(', ')}]` : 'is missing';
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} ${what}; mxfp8 needs U8 e8m0 block scales of shape [${want.join(', ')}] (one per 32 inputs, in cuBLAS' swizzled layout)`);
  }
  // A scale per 32 weights: read when the weight is merged or dequantized, not held for the whole model.
  const entry: ScaledFp8Weight = {
    weightKey, codeDtype: 'F8_E4M3', scaleKey, scaleDtype: 'F32', rows, cols, blockRows: 1, blockCols: MXFP8_BLOCK, scales: new Float64Array(0), scaleLayout: 'mxfp8',
    loadScales: async () => unswizzleMxfp8Scales(await base.read(scaleKey), rows, cols, base.name, scaleKey),
  };
  if (base.tensors.has(`${layer}.input_scale`)) entry.inputScaleKey = `${layer}.input_scale`;
  return entry;
}

/**
 * Rows [rowStart, rowStart + rowCount) of an mxfp8 weight as a row source of row-decoders.ts'
 * `mxfp8`: their codes (`codes`, the slab's bytes) and their block scales (`scales`, the weight's
 * row-major 2^(e − 127) values from {@link unswizzleMxfp8Scales}, exact in f32: 2^-127 is an f32
 * subnormal).
 */
export function mxfp8RowSource(w: ScaledFp8Weight, scales: Float64Array, codes: Uint8Array, rowStart: number, rowCount: number): RowSource {
  const nColBlocks = Math.ceil(w.cols / w.blockCols);
  return {
    name: w.weightKey, decoder: 'mxfp8', cols: w.cols, firstRow: rowStart,
    arrays: {
      codes: new Int8Array(codes.buffer, codes.byteOffset, rowCount * w.cols),
      scales: Float32Array.from(scales.subarray(rowStart * nColBlocks, (rowStart + rowCount) * nColBlocks)),
      table: f8DecodeTable('F8_E4M3'),
    },
    params: { blockCols: w.blockCols, nColBlocks },
  };
}

/**
 * The values of rows [r0, r1) whose code times its block scale is past float32 (no weight ComfyUI
 * could hold): how many, and the first and last row holding one (−1 where none). An e4m3 code is
 * below 2^9, so only blocks of a scale of 2^119 or more can hold one, and only those are read;
 * NaN codes stay NaN (the merge reports them), not counted here.
 */
export function mxfp8PastFloat32(w: ScaledFp8Weight, source: RowSource, r0: number, r1: number): { count: number; first: number; last: number } {
  const { codes, scales, table } = source.arrays as { codes: Int8Array; scales: Float32Array; table: Float32Array };
  const { blockCols, nColBlocks } = source.params;
  const past = { count: 0, first: -1, last: -1 };
  for (let r = r0; r < r1; r++) {
    const row = r - source.firstRow;
    for (let j = 0; j < nColBlocks; j++) {
      const scale = scales[row * nColBlocks + j];
      if (scale < 2 ** 119) continue;
      for (let c = j * blockCols; c < Math.min((j + 1) * blockCols, w.cols); c++) {
        const exact = table[codes[row * w.cols + c] & 0xff] * scale;
        if (Math.fround(exact) === exact || Number.isNaN(exact)) continue;
        if (past.count++ === 0) past.first = r;
        past.last = r;
      }
    }
  }
  return past;
}
