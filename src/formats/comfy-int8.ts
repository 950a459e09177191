/**
 * ComfyUI's `int8_tensorwise` comfy_quant layers (quant_ops.py's TensorWiseINT8Layout, from
 * comfy_kitchen): `<m>.weight` I8 (rows, cols), `<m>.weight_scale` F32, either one scale (shape
 * `[]`) or one per row (shape `[rows, 1]`, as comfy_kitchen's `quantize_int8_rowwise` writes it);
 * W = q × scale (comfy_kitchen dequantizes `q.float() * scale`). An int8 value is exact in bf16, so
 * the weight is seen through a view of bf16 codes, the scales one factor per tensor or per row.
 *
 * ComfyUI re-quantizes a patched layer with the layout's quantize (`requantize_from_float`,
 * scale "recalculate"); the layout picks per-row scales whenever the stored scale has a dimension
 * (`requantize_kwargs`: `per_channel = scale.dim() > 0`), else one scale for the tensor. Either way
 * (comfy_kitchen's `quantize_int8_tensorwise` / `quantize_int8_rowwise`): s = max(f32(amax / 127),
 * f32(1e-30)) over the tensor or the row, q = clamp(round(f32(W' / s)), −128, 127), rounded half to
 * even (stochastically in ComfyUI's patch: here to nearest even). A quotient never passes ±127.5, so
 * the code −128 is never written; one in a base is read as −128 × scale, as ComfyUI reads it.
 *
 * Not read (refused where an adapter changes them or the model is dequantized): `convrot` layers
 * (Hadamard-rotated weights), a scale of shape `[1]` or `[rows]` (ComfyUI's patch turns it into
 * per-row scales of another shape), a scale that is not F32, a weight that is not a matrix.
 */
import { decodeToF32, f32BitsToBf16Bits } from '../dtype.js';
import { MergeError } from '../errors.js';
import { countBad, noBad } from './bad-scales.js';
import { product } from '../integers.js';
import type { BaseModel } from './base-model.js';
import type { ViewTensor } from './base-model-view.js';
import type { ScaledFp8Weight } from './scaled-fp8.js';

/** The largest code ComfyUI's scale maps the largest magnitude to. */
const INT8_MAX = 127;
/** comfy_kitchen's smallest recalculated scale: `clamp(min=1e-30)` on a float32 tensor. */
const INT8_MIN_SCALE = Math.fround(1e-30);

/** Reads one int8_tensorwise layer; malformed tensors throw, naming them; a form not read here is returned as the reason. */
export async function readComfyInt8(base: BaseModel, layer: string, from: string, config: Readonly<Record<string, unknown>>): Promise<ScaledFp8Weight | string> {
  const weightKey = `${layer}.weight`;
  const scaleKey = `${layer}.weight_scale`;
  const weight = base.tensors.get(weightKey)!;
  const scale = base.tensors.get(scaleKey);
  const where = `${base.name}: ${weightKey} (comfy_quant format "int8_tensorwise", ${from})`;
  if (weight.dtype !== 'I8') throw new MergeError('UNSUPPORTED_FORMAT', `${where} is ${weight.dtype}; ComfyUI stores int8_tensorwise weights as I8`);
  const params = typeof config.params === 'object' && config.params !== null ? config.params as Record<string, unknown> : {};
  if (config.convrot ?? params.convrot) return `its comfy_quant config (${from}) marks it convrot: Hadamard-rotated int8 codes, which loramerge does not read`;
  if (weight.shape.length !== 2) return `an int8_tensorwise weight of shape [${weight.shape.join(', ')}] (${from}), which loramerge does not read`;
  const [rows, cols] = weight.shape;
  if (!scale) throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} is missing`);
  const perRow = scale.shape.length === 2 && scale.shape[0] === rows && scale.shape[1] === 1;
  if (!(scale.shape.length === 0 || perRow)) {
    // One value in another shape ([1], [1, 1]) or a row vector: ComfyUI reads it, but patches it into [rows, 1].
    if (product(scale.shape) === 1 || (scale.shape.length === 1 && scale.shape[0] === rows)) {
      return `its scale ${scaleKey} has shape [${scale.shape.join(', ')}]: ComfyUI re-quantizes such a layer with per-row scales of shape [${rows}, 1], which loramerge does not write in place of it`;
    }
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} has shape [${scale.shape.join(', ')}]; int8_tensorwise needs one F32 scale (shape []) or one per row (shape [${rows}, 1])`);
  }
  if (scale.dtype !== 'F32') return `its scale ${scaleKey} is ${scale.dtype}, where ComfyUI's int8 quantizer writes F32`;
  const scales = Float64Array.from(decodeToF32(await base.read(scaleKey), 'F32'));
  // Read whole: every bad scale is counted, named by its row where there is one a row.
  const bad = noBad();
  for (let r = 0; r < scales.length; r++) if (!Number.isFinite(scales[r]) || scales[r] < 0) countBad(bad, r);
  if (bad.count === 1 || (bad.count && !perRow)) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} holds ${scales[bad.first]}${perRow ? ` for row ${bad.first}` : ''}; a scale must be finite and not negative`);
  }
  if (bad.count) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${where}: its scale ${scaleKey} holds ${bad.count} scales that are NaN, Inf or negative (first ${scales[bad.first]} for row ${bad.first}, last ${scales[bad.last]} for row ${bad.last}); a scale must be finite and not negative`);
  }
  return {
    weightKey, codeDtype: 'BF16', scaleKey, scaleDtype: 'F32', rows, cols, blockRows: perRow ? 1 : rows, blockCols: cols, scales,
    scaleLayout: 'int8_tensorwise', view: int8View(base, weightKey, rows, cols),
  };
}

/** The weight's codes as bf16 (exact), rows × cols, read a range at a time. */
function int8View(base: BaseModel, key: string, rows: number, cols: number): ViewTensor {
  return {
    name: key, dtype: 'BF16', shape: [rows, cols], byteLength: rows * cols * 2,
    async readPart(start, length) {
      if (start % 2 !== 0 || length % 2 !== 0) throw new RangeError(`${key}: bytes ${start}+${length} are not whole bf16 values`);
      return int8AsBf16(await base.readPart(key, start / 2, length / 2));
    },
  };
}

/** The bf16 bits of each byte's int8 value, by the byte (every int8 value is exact in bf16). */
let bf16OfByte: Uint16Array | undefined;

/**
 * I8 bytes → the same integers as little-endian bf16 bytes, by a 256-entry table. It runs on the
 * calling thread (a view's reads, a merged slab's codes): converting through f32 and rounding each
 * value took 0.66 s for a FLUX.1 3072 × 12288 layer on the loaded 2-core VM, the table 0.25 s.
 */
export function int8AsBf16(codes: Uint8Array): Uint8Array {
  bf16OfByte ??= Uint16Array.from({ length: 256 }, (_, b) => f32BitsToBf16Bits(new Uint32Array(Float32Array.of((b << 24) >> 24).buffer)[0]));
  const out = new Uint16Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = bf16OfByte[codes[i]];
  return new Uint8Array(out.buffer);
}

/** ComfyUI's recalculated scale for a tensor's or a row's largest magnitude (f32). */
export function int8Scale(amax: number): number {
  return Math.max(Math.fround(amax / INT8_MAX), INT8_MIN_SCALE);
}

/**
 * int8 codes (as bytes) for a slab's f32 values, rows [rowStart, rowStart + rowCount) of `w`, each
 * scale recalculated into `scales` (one per tensor, or per row). `tensorMax`: the whole tensor's
 * largest magnitude for a per-tensor scale.
 */
export function requantizeInt8Slab(w: ScaledFp8Weight, values: Float32Array, rowStart: number, rowCount: number, scales: Float64Array, tensorMax?: number): Uint8Array {
  const out = new Uint8Array(rowCount * w.cols);
  const rows = int8Rows(w, values, rowStart, rowCount, tensorMax);
  int8RowCodes(rows, 0, rowCount, out);
  int8Scales(rows, scales);
  return out;
}

/**
 * A slab of an int8 weight as {@link int8RowCodes} reads it: its values from row `rowStart`, and
 * either the tensor's scale `s` (computed and checked here) or `rowScales`, where each row's is
 * written as its codes are.
 */
export interface Int8Rows {
  /** The weight's key, for messages. */
  name: string;
  /** W' of the slab, f32, row-major. */
  values: Float32Array;
  /** The weight's row the slab starts at. */
  rowStart: number;
  /** Rows of the slab. */
  rowCount: number;
  /** Values a row. */
  cols: number;
  /** The tensor's scale; NaN with per-row scales. */
  s: number;
  /** One scale a row of the slab (per-row scales), written by {@link int8RowCodes}. */
  rowScales?: Float64Array;
}

/** The rows of a slab, with the tensor's scale (from `tensorMax`, or the slab's own maximum) or room for a scale per row. */
export function int8Rows(w: ScaledFp8Weight, values: Float32Array, rowStart: number, rowCount: number, tensorMax?: number): Int8Rows {
  const perRow = w.blockRows === 1 && w.rows > 1;
  const rows: Int8Rows = { name: w.weightKey, values, rowStart, rowCount, cols: w.cols, s: NaN, ...(perRow ? { rowScales: new Float64Array(rowCount) } : {}) };
  if (!perRow) {
    let amax = tensorMax ?? 0;
    if (tensorMax === undefined) for (let i = 0; i < values.length; i++) amax = Math.max(amax, Math.abs(values[i]));
    rows.s = int8Scale(amax);
    if (!Number.isFinite(rows.s)) throw nonFiniteScale(rows, undefined);
  }
  return rows;
}

/** The slab's recalculated scales into the weight's `scales`, once its codes are made. */
export function int8Scales(rows: Int8Rows, scales: Float64Array): void {
  if (rows.rowScales) scales.set(rows.rowScales, rows.rowStart);
  else scales[0] = rows.s;
}

function nonFiniteScale(rows: Int8Rows, row: number | undefined): MergeError {
  const s = row === undefined ? rows.s : rows.rowScales![row - rows.rowStart];
  return new MergeError('NON_FINITE', `tensor "${rows.name}": its merged ${row !== undefined ? `row ${row}` : 'weight'} has the largest magnitude ${s * INT8_MAX}, which no int8 scale holds; merge with --dtype bf16 (or f16, f32) to write the weights dequantized`);
}

/**
 * Codes of the slab's rows [p0, p0 + n) (counted from its first) into `out` (n × cols bytes),
 * each row's scale into `rowScales` where the slab has one per row. A row's codes depend on its
 * values and its scale alone, so rows may be cut anywhere and run on any thread (the CPU pool's
 * workers run them: formats/comfy-requantize.ts).
 */
export function int8RowCodes(rows: Int8Rows, p0: number, n: number, out: Uint8Array): void {
  const { values, cols, rowScales } = rows;
  let s = rows.s;
  for (let r = p0; r < p0 + n; r++) {
    const row = values.subarray(r * cols, (r + 1) * cols);
    if (rowScales) {
      let amax = 0;
      for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(row[c]));
      s = rowScales[r] = int8Scale(amax);
      if (!Number.isFinite(s)) throw nonFiniteScale(rows, rows.rowStart + r);
    }
    const o = (r - p0) * cols;
    for (let c = 0; c < cols; c++) {
      const q = Math.fround(row[c] / s);
      if (Number.isNaN(q)) throw new MergeError('NON_FINITE', `tensor "${rows.name}": its merged value at row ${rows.rowStart + r}, column ${c} is NaN`);
      out[o + c] = Math.min(127, Math.max(-128, roundHalfEven(q))) & 0xff;
    }
  }
}

/** torch.round: to the nearest integer, halves to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}
