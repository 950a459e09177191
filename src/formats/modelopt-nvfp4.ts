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
import { decodeToF32, encodeFromF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';
import { modelOptGroupSize, type ModelOptQuantization } from './modelopt-config.js';
import { runtimeScales, type ScaledFp8Base, type ScaledFp8Weight } from './scaled-fp8.js';
import { product } from '../integers.js';
import { E2M1, e4m3Bytes, nvfp4CodeValues, nvfp4GlobalFits, type Nvfp4Reading } from './nvfp4-values.js';

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

/** ModelOpt's reading: element 2k in the low nibble, code 8 (−0) read as +0 as its `e2m1_values` table does. */
const MODELOPT: Nvfp4Reading = { evenHigh: false, negativeZero: false };

/**
 * The bf16 pair table of FP4 (e2m1) bytes under 256 scale bytes: entry s·256 + b holds the bf16 bits
 * of byte b's two values, e2m1(code) × scale(s), the low nibble's in the low half and the high
 * nibble's in the high half; each product taken in float64 and rounded through float32 to bf16.
 * MXFP4's E8M0 block scales (mxfp4-experts.ts) decode by it: powers of two, so exact.
 */
export function e2m1Bf16Pairs(scale: (byte: number) => number): Uint32Array {
  const values = new Float32Array(256 * 16);
  for (let s = 0; s < 256; s++) {
    for (let code = 0; code < 16; code++) {
      const magnitude = E2M1[code & 7] * scale(s);
      values[s * 16 + code] = code & 8 ? -magnitude : magnitude;
    }
  }
  const encoded = encodeFromF32(values, 'BF16');
  const bits = new Uint16Array(encoded.buffer, encoded.byteOffset, values.length);
  const table = new Uint32Array(256 * 256);
  for (let s = 0; s < 256; s++) {
    for (let byte = 0; byte < 256; byte++) table[s * 256 + byte] = (bits[s * 16 + (byte & 0x0f)] | (bits[s * 16 + (byte >> 4)] << 16)) >>> 0;
  }
  return table;
}

/**
 * The weight as f32 values, decoded a row range at a time. With `cols` a multiple of the group,
 * value v of the tensor is nibble v mod 2 of packed byte ⌊v/2⌋ and its scale is scale ⌊v/group⌋,
 * both counted from the tensor's start; with an even group a byte's two values share a scale, so
 * each byte is one lookup of its pair of values.
 */
function viewTensor(base: SafetensorsBaseModel, w: Nvfp4Weight): ViewTensor {
  const rowBytes = w.cols * 4;
  const groups = w.cols / w.group;
  return {
    name: w.key, dtype: 'F32', shape: [w.rows, w.cols], byteLength: w.rows * rowBytes,
    async readPart(start, length) {
      if (start % 4 !== 0 || length % 4 !== 0) throw new RangeError(`${w.key}: bytes ${start}+${length} are not whole f32 values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      const packed = await base.readPart(w.key, r0 * (w.cols / 2), (r1 - r0) * (w.cols / 2));
      const scales = await base.readPart(w.scaleKey, r0 * groups, (r1 - r0) * groups);
      const { nan } = e4m3Bytes();
      for (let j = 0; j < scales.length; j++) {
        if (nan[scales[j]]) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${w.scaleKey}" holds NaN (row ${r0 + Math.floor(j / groups)})`);
      }
      const { bits, pairs } = nvfp4CodeValues(w.global, MODELOPT);
      // Values [v0, v1) of the rows read, widened to whole bytes [p0, p1).
      const v0 = start / 4 - r0 * w.cols;
      const v1 = v0 + length / 4;
      const p0 = v0 >> 1;
      const p1 = (v1 + 1) >> 1;
      const out = new Float64Array(p1 - p0);
      if (w.group % 2 === 0) {
        const half = w.group / 2;
        let p = p0;
        for (let s = Math.floor(p0 / half); p < p1; s++) {
          const at = scales[s] << 8;
          const stop = Math.min((s + 1) * half, p1);
          for (; p < stop; p++) out[p - p0] = pairs[at | packed[p]];
        }
      } else {
        // An odd group: a byte's two values may have different scales, so each value is looked up on its own.
        const values = new Uint32Array(out.buffer);
        let s = Math.floor((2 * p0) / w.group);
        let next = (s + 1) * w.group;
        for (let v = 2 * p0; v < 2 * p1; v++) {
          if (v === next) { s++; next += w.group; }
          values[v - 2 * p0] = bits[(scales[s] << 4) | ((packed[v >> 1] >> ((v & 1) << 2)) & 0x0f)];
        }
      }
      return new Uint8Array(out.buffer, (v0 & 1) * 4, length);
    },
  };
}
