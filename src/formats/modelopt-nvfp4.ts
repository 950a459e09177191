/**
 * NVIDIA ModelOpt NVFP4 weights (nvidia/*-FP4: `quant_algo: "NVFP4"`, `group_size: 16`), as its
 * unified Hugging Face export writes them (modelopt's NVFP4QTensor and vLLM's ModelOpt NVFP4
 * loader agree on this layout):
 * - `<m>.weight` U8 (out, in/2): two e2m1 codes per byte, element 2k in the low nibble and 2k+1 in
 *   the high one; a code is a sign bit (8) and a magnitude index into 0, ½, 1, 1½, 2, 3, 4, 6;
 * - `<m>.weight_scale` F8_E4M3 (out, in/16): one scale per 16 inputs of a row;
 * - `<m>.weight_scale_2` F32 (): the tensor's global scale; `<m>.input_scale` F32 (): activations'.
 * The real weight is code × weight_scale × weight_scale_2. A code times its block scale has at
 * most 2 + 4 significant bits and lies in [2⁻¹⁰, 2688], so it is exact in bf16: the view lists
 * each such weight as a bf16 tensor (out, in) of those products, and the merge sees a weight with
 * one f32 scale per tensor (weight_scale_2) like ModelOpt FP8's, whose products code × scale are
 * exact in float64. The block scales are no longer tensors of the view. Such a base is written
 * dequantized only (see scaled-fp8-output.ts).
 */
import { decodeToF32, encodeFromF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';
import { modelOptGroupSize, type ModelOptQuantization } from './modelopt-config.js';
import { runtimeScales, type ScaledFp8Base, type ScaledFp8Weight } from './scaled-fp8.js';
import { product } from '../integers.js';

/** e2m1 magnitudes by the code's low three bits. */
export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6] as const;

export interface Nvfp4Base {
  /** The base with every NVFP4 weight a bf16 tensor of code × block scale. */
  base: SafetensorsBaseModel;
  scaled: ScaledFp8Base;
}

interface Nvfp4Weight {
  key: string;
  scaleKey: string;
  rows: number;
  cols: number;
  group: number;
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
    found.set(weightKey, { key: weightKey, scaleKey, rows, cols, group });
    hidden.add(scaleKey);
    const entry: ScaledFp8Weight = {
      weightKey, codeDtype: 'BF16', scaleKey: key, scaleDtype: 'F32', rows, cols, blockRows: rows, blockCols: cols, scales: Float64Array.of(global),
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

/** The weight as bf16 code × block scale, decoded a row range at a time. */
function viewTensor(base: SafetensorsBaseModel, w: Nvfp4Weight): ViewTensor {
  const rowBytes = w.cols * 2;
  return {
    name: w.key, dtype: 'BF16', shape: [w.rows, w.cols], byteLength: w.rows * rowBytes,
    async readPart(start, length) {
      if (start % 2 !== 0 || length % 2 !== 0) throw new RangeError(`${w.key}: bytes ${start}+${length} are not whole bf16 values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      const packed = await base.readPart(w.key, r0 * (w.cols / 2), (r1 - r0) * (w.cols / 2));
      const groups = w.cols / w.group;
      const scales = decodeToF32(await base.readPart(w.scaleKey, r0 * groups, (r1 - r0) * groups), 'F8_E4M3');
      const nan = scales.findIndex((x) => Number.isNaN(x));
      if (nan >= 0) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${w.scaleKey}" holds NaN (row ${r0 + Math.floor(nan / groups)})`);
      const values = new Float32Array((r1 - r0) * w.cols);
      for (let i = 0; i < values.length; i++) {
        const byte = packed[i >> 1];
        const code = i & 1 ? byte >> 4 : byte & 0x0f;
        const magnitude = E2M1[code & 7] * scales[Math.floor(i / w.cols) * groups + Math.floor((i % w.cols) / w.group)];
        values[i] = code & 8 ? -magnitude : magnitude;
      }
      const offset = start - r0 * rowBytes;
      return encodeFromF32(values, 'BF16').subarray(offset, offset + length);
    },
  };
}
