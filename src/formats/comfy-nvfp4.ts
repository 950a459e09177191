/**
 * ComfyUI's `nvfp4` comfy_quant layers (quant_ops.py's TensorCoreNVFP4Layout, comfy_kitchen's
 * NVFP4): `<m>.weight` U8 (rows, cols/2), two e2m1 codes per byte with element 2k in the HIGH
 * nibble and 2k+1 in the low one (comfy_kitchen packs `hi_first`, the opposite of ModelOpt's);
 * `<m>.weight_scale` F8_E4M3, one scale per 16 inputs of a row, the (rows, cols/16) grid in cuBLAS'
 * swizzled block-scale layout (`to_blocked`, as mxfp8's: padded to ⌈rows/128⌉·128 rows and
 * ⌈cols/64⌉·4 scale columns); `<m>.weight_scale_2` F32 (): the tensor's scale. The quantizer pads the
 * weight to a multiple of 16 in both directions and ComfyUI loads the stored tensor as the layer's
 * codes, so the stored shape is read as the weight's. W = e2m1(code) × e4m3(block scale) × weight_scale_2.
 *
 * Read as ComfyUI dequantizes it to apply a LoRA (the patch asks for its float32 compute dtype;
 * comfy_kitchen's CUDA kernel, which its registry picks first, and its eager reference agree there):
 * in float32, the block's scale first, f32(e4m3(block scale) × weight_scale_2), then each value
 * f32(e2m1(code) × that), code 8 giving −0 (its table's −0.0, the CUDA conversion's too). That is
 * ModelOpt's order (modelopt-nvfp4.ts, whose table this shares) but for −0, and differs from the
 * exact product where f32(e4m3 × weight_scale_2) rounds. The view lists the weight as those f32
 * values and the merge sees it with one scale of 1, adds ΔW in real values and rounds once. A
 * weight_scale_2 whose product with the largest block scale (448) is beyond float32 is refused.
 *
 * A merged layer is quantized again as ComfyUI's LoRA patch does (the layout's quantize with scale
 * "recalculate"), by comfy_kitchen's quantize_nvfp4 (its eager reference), all in float32 on W'
 * rounded once to f32: weight_scale_2 = f32(amax / (448·6)); per 16 inputs of a row, block scale =
 * e4m3(min(f32(f32(block amax / 6) / weight_scale_2), 448)) to nearest even; codes =
 * e2m1(clamp(f32(W' / f32(weight_scale_2 × block scale)), ±6)) to nearest even, the sign kept
 * (a negative value that rounds to 0 is code 8); a block whose scale is 0 gets codes 0. ComfyUI
 * rounds the codes stochastically (comfy/float.py); here they round to nearest even.
 */
import { decodeToF32, f32BitsToF8Bits, f8DecodeTable } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScaleRows, BROKEN_BASE, countBad, eachRowPiece, noBad } from './bad-scales.js';
import { e2m1Code } from './e2m1.js';
import { product } from '../integers.js';
import type { BaseModel } from './base-model.js';
import type { ViewTensor } from './base-model-view.js';
import { blockedScaleShape, swizzledOffset } from './comfy-mxfp8.js';
import { e4m3Bytes, nvfp4CodeValues, nvfp4GlobalFits, nvfp4ViewRows, sourceBytes, type Nvfp4Reading } from './nvfp4-values.js';
import type { RowSource } from './row-decoders.js';
import type { ScaledFp8Weight } from './scaled-fp8.js';

export const NVFP4_BLOCK = 16;

/** Reads one nvfp4 layer's weight and scales; malformed ones throw, naming them. */
export async function readComfyNvfp4(base: BaseModel, layer: string, from: string): Promise<ScaledFp8Weight> {
  const weightKey = `${layer}.weight`;
  const scaleKey = `${layer}.weight_scale`;
  const globalKey = `${layer}.weight_scale_2`;
  const weight = base.tensors.get(weightKey)!;
  const scale = base.tensors.get(scaleKey);
  const global = base.tensors.get(globalKey);
  const where = `${base.name}: ${weightKey} (comfy_quant format "nvfp4", ${from})`;
  if (weight.dtype !== 'U8' || weight.shape.length !== 2 || weight.shape[0] % NVFP4_BLOCK !== 0 || (weight.shape[1] * 2) % NVFP4_BLOCK !== 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${weight.dtype} [${weight.shape.join(', ')}]; ComfyUI stores nvfp4 weights as U8 (rows, cols/2), rows and cols multiples of 16`);
  }
  const rows = weight.shape[0];
  const cols = weight.shape[1] * 2;
  const want = blockedScaleShape(rows, cols / NVFP4_BLOCK);
  if (!scale || scale.dtype !== 'F8_E4M3' || scale.shape.length !== 2 || scale.shape[0] !== want[0] || scale.shape[1] !== want[1]) {
    const what = scale ? `is ${scale.dtype} [${scale.shape.join(', ')}]` : 'is missing';
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} ${what}; nvfp4 needs F8_E4M3 block scales of shape [${want.join(', ')}] (one per 16 inputs, in cuBLAS' swizzled layout)`);
  }
  if (!global || global.dtype !== 'F32' || product(global.shape) !== 1 || global.shape.length > 1) {
    const what = global ? `is ${global.dtype} [${global.shape.join(', ')}]` : 'is missing';
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${globalKey} ${what}; nvfp4 needs one F32 scale per weight (shape [] or [1])`);
  }
  const value = decodeToF32(await base.read(globalKey), 'F32')[0];
  if (!Number.isFinite(value) || value < 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${globalKey}" holds the scale ${value}; a scale must be finite and not negative`);
  }
  // comfy_kitchen multiplies it by each block scale in float32: past float32 there, no weight could be read.
  if (!nvfp4GlobalFits(value)) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${globalKey}" holds the scale ${value}; times the largest block scale (448) it is beyond float32, so ComfyUI's dequantization gives no finite weight`);
  }
  const entry: ScaledFp8Weight = {
    weightKey, codeDtype: 'F32', scaleKey: globalKey, scaleDtype: 'F32', rows, cols, blockRows: rows, blockCols: cols, scales: Float64Array.of(1),
    scaleLayout: 'nvfp4', blockScaleKey: scaleKey, view: nvfp4View(base, weightKey, scaleKey, value, rows, cols),
  };
  if (base.tensors.has(`${layer}.input_scale`)) entry.inputScaleKey = `${layer}.input_scale`;
  return entry;
}

/** comfy_kitchen's reading: element 2k in the high nibble (`hi_first`), code 8 −0. */
const COMFY: Nvfp4Reading = { evenHigh: true, negativeZero: true };

/**
 * The weight as f32 values (rows, cols) in comfy_kitchen's order, decoded a row range at a time by
 * row-decoders.ts' `nvfp4` (on the CPU backend's threads where the merge has them) from the rows'
 * codes and the 128-row tiles of swizzled scales that hold their blocks', read and checked for NaN
 * scales here.
 */
function nvfp4View(base: BaseModel, key: string, scaleKey: string, global: number, rows: number, cols: number): ViewTensor {
  const rowBytes = cols * 4;
  const blocks = cols / NVFP4_BLOCK;
  const scaleCols = blockedScaleShape(rows, blocks)[1];
  const tileBytes = 128 * scaleCols; // a 128-row tile of the swizzled scales is contiguous
  return {
    name: key, dtype: 'F32', shape: [rows, cols], byteLength: rows * rowBytes,
    async readPart(start, length, into, decodeOn) {
      if (start % 4 !== 0 || length % 4 !== 0) throw new RangeError(`${key}: bytes ${start}+${length} are not whole f32 values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      const packed = await base.readPart(key, r0 * (cols / 2), (r1 - r0) * (cols / 2));
      const t0 = Math.floor(r0 / 128);
      const t1 = Math.ceil(r1 / 128);
      const tiles = await base.readPart(scaleKey, t0 * tileBytes, (t1 - t0) * tileBytes);
      const { nan } = e4m3Bytes();
      for (let r = r0; r < r1; r++) {
        for (let j = 0; j < blocks; j++) {
          if (nan[tiles[swizzledOffset(r, j, scaleCols) - t0 * tileBytes]]) throw await nanScales(base, scaleKey, rows, cols);
        }
      }
      const source: RowSource = {
        name: key, decoder: 'nvfp4', cols, firstRow: r0,
        arrays: { codes: sourceBytes(packed), scales: sourceBytes(tiles), values: nvfp4CodeValues(global, COMFY).values },
        params: { group: NVFP4_BLOCK, evenHigh: 1, scaleCols },
      };
      return nvfp4ViewRows(source, r0, r1, start - r0 * rowBytes, length, into, decodeOn);
    },
  };
}

/**
 * The refusal of a weight whose block scales hold NaN (E4M3's 0x7f, 0xff) where they are read (the
 * padding is not), met by a slab: the swizzled scales read again whole, a 128-row tile at a time,
 * so that it names how many the weight holds and its first and last row.
 */
async function nanScales(base: BaseModel, scaleKey: string, rows: number, cols: number): Promise<MergeError> {
  const blocks = cols / NVFP4_BLOCK;
  const scaleCols = blockedScaleShape(rows, blocks)[1];
  const tileBytes = 128 * scaleCols;
  const { nan } = e4m3Bytes();
  const span = noBad();
  await eachRowPiece((start, length) => base.readPart(scaleKey, start, length), Math.ceil(rows / 128), tileBytes, (tiles, t0, n) => {
    for (let r = t0 * 128; r < Math.min(rows, (t0 + n) * 128); r++) {
      for (let j = 0; j < blocks; j++) if (nan[tiles[swizzledOffset(r, j, scaleCols) - t0 * tileBytes]]) countBad(span, r);
    }
  });
  return badScaleRows(base.name, scaleKey, span, ['NaN scale', 'NaN scales'], BROKEN_BASE);
}

/** e4m3fn's largest finite magnitude times e2m1's: ComfyUI's divisor for a recalculated weight_scale_2. */
const NVFP4_RANGE = 448 * 6;

/** weight_scale_2 as ComfyUI recalculates it from the merged weight's largest magnitude: f32(amax / (448·6)). */
export function nvfp4TensorScale(amax: number): number {
  return Math.fround(Math.fround(amax) / NVFP4_RANGE);
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * Rows [rowStart, rowStart + rowCount) of W' (f32, rowCount × cols) as nvfp4 codes, two a byte
 * with element 2k in the high nibble; each block's e4m3 scale byte is written into `blockScales`,
 * the weight's whole scale tensor in cuBLAS' swizzled layout (its padding left as it is: zeros).
 */
export function quantizeNvfp4Rows(values: Float32Array, rowStart: number, rowCount: number, cols: number, tensorScale: number, blockScales: Uint8Array): Uint8Array {
  const out = new Uint8Array(rowCount * cols / 2);
  nvfp4RowCodes({ values, rowStart, rowCount, cols, tensorScale, blockScales }, 0, rowCount, out);
  return out;
}

/** A slab of W' to quantize as nvfp4 (see {@link quantizeNvfp4Rows}), as {@link nvfp4RowCodes} reads it. */
export interface Nvfp4Rows {
  /** W' of the slab, f32, row-major. */
  values: Float32Array;
  /** The weight's row the slab starts at. */
  rowStart: number;
  /** Rows of the slab. */
  rowCount: number;
  /** Values a row (a multiple of 16). */
  cols: number;
  /** weight_scale_2, recalculated from the whole weight's maximum. */
  tensorScale: number;
  /** The weight's whole swizzled block-scale tensor, written for the rows quantized. */
  blockScales: Uint8Array;
}

/**
 * Codes of the slab's rows [p0, p0 + n) (counted from its first) into `out` (n × cols/2 bytes),
 * their block scales into `rows.blockScales`. A block's scale and codes depend on its 16 values and
 * weight_scale_2 alone, so rows may be cut anywhere and run on any thread (the CPU pool's workers
 * run them: formats/comfy-requantize.ts).
 */
export function nvfp4RowCodes(rows: Nvfp4Rows, p0: number, n: number, out: Uint8Array): void {
  const { values, rowStart, cols, tensorScale, blockScales } = rows;
  const blocks = cols / NVFP4_BLOCK;
  const scaleCols = blockedScaleShape(rowStart + rows.rowCount, blocks)[1];
  const e4m3 = f8DecodeTable('F8_E4M3');
  for (let r = p0; r < p0 + n; r++) {
    for (let j = 0; j < blocks; j++) {
      const at = r * cols + j * NVFP4_BLOCK;
      let amax = 0;
      for (let i = 0; i < NVFP4_BLOCK; i++) amax = Math.max(amax, Math.abs(values[at + i]));
      f32[0] = Math.min(Math.fround(Math.fround(amax / 6) / tensorScale), 448);
      const scaleByte = f32BitsToF8Bits(f32Bits[0], 'F8_E4M3');
      blockScales[swizzledOffset(rowStart + r, j, scaleCols)] = scaleByte;
      const total = Math.fround(tensorScale * e4m3[scaleByte]);
      const o = (at - p0 * cols) >> 1;
      for (let i = 0; i < NVFP4_BLOCK; i += 2) {
        const hi = total === 0 ? 0 : e2m1Code(Math.fround(values[at + i] / total));
        const lo = total === 0 ? 0 : e2m1Code(Math.fround(values[at + i + 1] / total));
        out[o + (i >> 1)] = (hi << 4) | lo;
      }
    }
  }
}
