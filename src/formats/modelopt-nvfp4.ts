/**
 * NVIDIA ModelOpt NVFP4 weights (nvidia/*-FP4: `quant_algo: "NVFP4"`, `group_size: 16`), as its
 * unified Hugging Face export writes them (modelopt's NVFP4QTensor and vLLM's ModelOpt NVFP4
 * loader agree on this layout):
 * - `<m>.weight` U8 (out, in/2): two e2m1 codes per byte, element 2k in the low nibble and 2k+1 in
 *   the high one; a code is a sign bit (8) and a magnitude index into 0, ½, 1, 1½, 2, 3, 4, 6;
 * - `<m>.weight_scale` F8_E4M3 (out, in/16): one scale per 16 inputs of a row;
 * - `<m>.weight_scale_2` F32 (): the tensor's global scale; `<m>.input_scale` F32 (): activations'.
 * The real weight is taken as ModelOpt's own dequantization computes it (NVFP4QTensor.dequantize):
 * in float32, the block's scale first, f32(e4m3(block scale) × weight_scale_2), then each value
 * f32(e2m1(code) × that), code 8 (−0) giving +0 as its value table does. That differs from the
 * exact product e2m1 × e4m3 × weight_scale_2 where f32(e4m3 × weight_scale_2) rounds (the global
 * scale has 24 significant bits). The view lists each such weight as an f32 tensor (out, in) of
 * those values, and the merge sees a weight with one scale of 1 (the `dequantize-only` rule), adds
 * ΔW in real values and rounds once to --dtype. The block scales are no longer tensors of the view.
 * Such a base is written dequantized only (see scaled-fp8-output.ts).
 */
import { decodeToF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScaleRows, BROKEN_BASE, countBad, eachRowPiece, noBad } from './bad-scales.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';
import { modelOptGroupSize, type ModelOptQuantization } from './modelopt-config.js';
import { runtimeScales, type ScaledFp8Base, type ScaledFp8Weight } from './scaled-fp8.js';
import { product } from '../integers.js';
import { e4m3Bytes, nvfp4CodeValues, nvfp4GlobalFits, nvfp4ViewRows, sourceBytes, type Nvfp4Reading } from './nvfp4-values.js';
import type { RowSource } from './row-decoders.js';

export interface Nvfp4Base {
  /** The base with every NVFP4 weight an f32 tensor of its values as ModelOpt dequantizes them. */
  base: SafetensorsBaseModel;
  scaled: ScaledFp8Base;
}

interface Nvfp4Weight {
  key: string;
  scaleKey: string;
  rows: number;
  cols: number;
  group: number;
  /** weight_scale_2. */
  global: number;
}

/** The view of a ModelOpt NVFP4 base; malformed weights throw, naming the tensor. */
export async function nvfp4BaseModel(base: SafetensorsBaseModel, quantization: ModelOptQuantization): Promise<Nvfp4Base> {
  const found = new Map<string, Nvfp4Weight>();
  const hidden = new Set<string>();
  const weights = new Map<string, ScaledFp8Weight>();
  const group = modelOptGroupSize(quantization, base.name);
  for (const [key, t] of base.tensors) {
    if (!key.endsWith('.weight_scale_2')) continue;
    const stem = key.slice(0, -'.weight_scale_2'.length);
    const weightKey = `${stem}.weight`;
    const scaleKey = `${stem}.weight_scale`;
    const w = base.tensors.get(weightKey);
    const s = base.tensors.get(scaleKey);
    const bad = (why: string) => new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${weightKey} is not an NVFP4 weight as ModelOpt writes it (${why})`);
    if (!w || !s) throw bad(`${!w ? weightKey : scaleKey} is missing`);
    if (w.dtype !== 'U8' || w.shape.length !== 2) throw bad(`its dtype is ${w.dtype} [${w.shape.join(', ')}]; expected U8 codes (out, in/2)`);
    if (s.dtype !== 'F8_E4M3' || s.shape.length !== 2 || s.shape[0] !== w.shape[0]) throw bad(`${scaleKey} is ${s.dtype} [${s.shape.join(', ')}]; expected F8_E4M3 (${w.shape[0]}, in/16)`);
    if (t.dtype !== 'F32' || product(t.shape) !== 1) throw bad(`${key} is ${t.dtype} [${t.shape.join(', ')}]; expected one F32 value`);
    const rows = w.shape[0];
    const cols = w.shape[1] * 2;
    if (cols % group !== 0 || s.shape[1] !== cols / group) throw bad(`${scaleKey} has ${s.shape[1]} scales per row for ${cols} inputs in groups of ${group}`);
    const global = decodeToF32(await base.read(key), 'F32')[0];
    if (!Number.isFinite(global) || global < 0) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${key}" holds the scale ${global}; scales must be finite and not negative`);
    // ModelOpt multiplies it by each block scale in float32: past float32 there, no weight could be read.
    if (!nvfp4GlobalFits(global)) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${key}" holds the scale ${global}; times the largest block scale (448) it is beyond float32, so ModelOpt's dequantization gives no finite weight`);
    found.set(weightKey, { key: weightKey, scaleKey, rows, cols, group, global });
    hidden.add(scaleKey);
    const entry: ScaledFp8Weight = {
      weightKey, codeDtype: 'F32', scaleKey: key, scaleDtype: 'F32', rows, cols, blockRows: rows, blockCols: cols, scales: Float64Array.of(1),
    };
    if (base.tensors.has(`${stem}.input_scale`)) entry.inputScaleKey = `${stem}.input_scale`;
    weights.set(weightKey, entry);
  }
  const view = viewReplacing(base, new Map([...found].map(([key, w]) => [key, viewTensor(base, w)])), hidden);
  return {
    base: view,
    scaled: {
      kind: 'modelopt-nvfp4', rule: 'dequantize-only', weights, unread: [], quantizationOnly: runtimeScales(base),
      ...(quantization.file ? { quantizationFiles: [quantization.file] } : {}),
    },
  };
}

/**
 * The refusal of a weight whose block scales hold NaN (E4M3's 0x7f, 0xff), met by a slab: the scale
 * tensor read again whole, so that it names how many the weight holds and its first and last row.
 */
async function nanScales(base: SafetensorsBaseModel, w: Nvfp4Weight): Promise<MergeError> {
  const groups = w.cols / w.group;
  const { nan } = e4m3Bytes();
  const span = noBad();
  await eachRowPiece((start, length) => base.readPart(w.scaleKey, start, length), w.rows, groups, (bytes, r0) => {
    for (let j = 0; j < bytes.length; j++) if (nan[bytes[j]]) countBad(span, r0 + Math.floor(j / groups));
  });
  return badScaleRows(base.name, w.scaleKey, span, ['NaN scale', 'NaN scales'], BROKEN_BASE);
}

/** ModelOpt's reading: element 2k in the low nibble, code 8 (−0) read as +0 as its `e2m1_values` table does. */
const MODELOPT: Nvfp4Reading = { evenHigh: false, negativeZero: false };

/**
 * The weight as f32 values, decoded a row range at a time by row-decoders.ts' `nvfp4` (on the CPU
 * backend's threads where the merge has them): row r is bytes r·in/2… of the codes and scales
 * r·in/group… of the block scales, read for the rows asked and checked here for NaN scales.
 */
function viewTensor(base: SafetensorsBaseModel, w: Nvfp4Weight): ViewTensor {
  const rowBytes = w.cols * 4;
  const groups = w.cols / w.group;
  return {
    name: w.key, dtype: 'F32', shape: [w.rows, w.cols], byteLength: w.rows * rowBytes,
    async readPart(start, length, into, decodeOn) {
      if (start % 4 !== 0 || length % 4 !== 0) throw new RangeError(`${w.key}: bytes ${start}+${length} are not whole f32 values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      const packed = await base.readPart(w.key, r0 * (w.cols / 2), (r1 - r0) * (w.cols / 2));
      const scales = await base.readPart(w.scaleKey, r0 * groups, (r1 - r0) * groups);
      const { nan } = e4m3Bytes();
      for (let j = 0; j < scales.length; j++) {
        if (nan[scales[j]]) throw await nanScales(base, w);
      }
      const source: RowSource = {
        name: w.key, decoder: 'nvfp4', cols: w.cols, firstRow: r0,
        arrays: { codes: sourceBytes(packed), scales: sourceBytes(scales), values: nvfp4CodeValues(w.global, MODELOPT).values },
        params: { group: w.group, evenHigh: 0, scaleCols: 0 },
      };
      return nvfp4ViewRows(source, r0, r1, start - r0 * rowBytes, length, into, decodeOn);
    },
  };
}
