/**
 * A bitsandbytes-quantized base seen as the float model it stands for: each quantized weight is
 * one tensor of its original shape, in the dtype bitsandbytes dequantizes it to (a 4-bit weight:
 * the quant state's dtype; an 8-bit one: float32), decoded on demand a row slab at a time; its
 * statistics and quant state are no longer tensors of the model. Merges add to these values and
 * round once; unmerged tensors are written in the model's dtype (config.json `torch_dtype`, as
 * transformers' `dequantize()` casts them; bf16 when the config names none).
 *
 * A read decodes the whole rows it falls in, by row-decoders.ts's `bnb-4bit` and `bnb-int8` (on the
 * CPU backend's threads where it has them), from the stored bytes and statistics of those rows.
 */
import { DTYPE_BYTES, encodeFromF32, type FloatDType } from '../../dtype.js';
import { MergeError } from '../../errors.js';
import { formatProblemList } from '../../plan/problems.js';
import type { BaseModel, SafetensorsBaseModel } from '../base-model.js';
import { viewReplacing, type ViewTensor } from '../base-model-view.js';
import { languageModelField, type ModelConfig } from '../model-config.js';
import { decodeSourceRows, type RowSource } from '../row-decoders.js';
import { findQuantizedTensors, type FourBitTensor, type Int8Tensor, type QuantizedTensor } from './bnb-tensors.js';
import { product } from '../../integers.js';

const TORCH_FLOAT: Readonly<Record<string, FloatDType>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

export interface DequantizedBase {
  base: SafetensorsBaseModel;
  fourBit: number;
  eightBit: number;
}

/** The dequantized view of `base`, or undefined when it holds no bitsandbytes weights. */
export async function dequantizedBaseModel(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<DequantizedBase | undefined> {
  const { tensors, problems } = await findQuantizedTensors(base);
  if (problems.length > 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', formatProblemList(`${base.name} (bitsandbytes weights)`, problems.map((p) => `${base.name}: tensor "${p.tensor}" ${p.message}`)), { lines: true });
  }
  if (tensors.length === 0) return undefined;
  const configured = languageModelField(config, 'torch_dtype') ?? languageModelField(config, 'dtype');
  const modelDtype = typeof configured === 'string' ? TORCH_FLOAT[configured] : undefined;
  // Without a config: a 4-bit weight as bitsandbytes dequantizes it, an 8-bit one in bf16.
  const writeDtype = (t: QuantizedTensor): FloatDType => modelDtype ?? (t.kind === '4bit' ? t.dtype : 'BF16');
  const view = viewReplacing(base, new Map(tensors.map((t) => [t.name, viewTensor(base, t, writeDtype(t))])), new Set(tensors.flatMap((t) => t.parts)));
  return {
    base: view,
    fourBit: tensors.filter((t) => t.kind === '4bit').length,
    eightBit: tensors.filter((t) => t.kind === '8bit').length,
  };
}

function viewTensor(base: BaseModel, t: QuantizedTensor, writeDtype: FloatDType): ViewTensor {
  const dtype: FloatDType = t.kind === '4bit' ? t.dtype : 'F32';
  // Rows of the weight as stored, row-major: (out, in); a 1-D shape is rows of one value.
  const cols = product(t.shape.slice(1));
  const width = DTYPE_BYTES[dtype];
  const rowBytes = cols * width;
  const source = t.kind === '4bit' ? (r0: number, r1: number) => fourBitSource(base, t, cols, r0, r1) : (r0: number, r1: number) => int8Source(base, t, r0, r1);
  return {
    name: t.name, dtype, shape: t.shape.slice(), byteLength: product(t.shape) * width, writeDtype,
    async readPart(start, length, into, decodeOn) {
      if (start % width !== 0 || length % width !== 0) throw new RangeError(`${t.name}: reads must be whole ${dtype} values`);
      const r0 = Math.floor(start / rowBytes);
      const r1 = Math.ceil((start + length) / rowBytes);
      // Whole f32 rows go straight into the buffer offered (the pipeline's reused slab memory).
      const whole = dtype === 'F32' && start === r0 * rowBytes && length === (r1 - r0) * rowBytes && into?.byteLength === length && into.byteOffset % 4 === 0;
      const out = whole ? new Float32Array(into.buffer, into.byteOffset, length / 4) : undefined;
      const src = await source(r0, r1);
      // On the CPU backend's threads where it takes them, else here: the same decoder either way.
      const values = (await decodeOn?.(src, r0, r1, out)) ?? decodeSourceRows(src, r0, r1, out);
      const first = start / width - r0 * cols;
      const part = values.subarray(first, first + length / width);
      // What bitsandbytes returns: the float32 product cast once to the quant state's dtype.
      return dtype === 'F32' ? new Uint8Array(part.buffer, part.byteOffset, part.byteLength) : encodeFromF32(part, dtype);
    },
  };
}

/**
 * The decoder's inputs for rows [r0, r1) of a 4-bit weight: the packed bytes holding their values
 * and the statistics of the blocks those values fall in (nested ones as stored: the decoder
 * dequantizes them).
 */
async function fourBitSource(base: BaseModel, t: FourBitTensor, cols: number, r0: number, r1: number): Promise<RowSource> {
  const start = r0 * cols, end = r1 * cols;
  const byte0 = Math.floor(start / 2);
  const packed = int8s(await base.readPart(t.name, byte0, Math.ceil(end / 2) - byte0));
  const block0 = Math.floor(start / t.blocksize);
  const blocks = Math.floor((end - 1) / t.blocksize) - block0 + 1;
  const source = { name: t.name, decoder: 'bnb-4bit', cols, firstRow: r0 } as const;
  if (!t.nested) {
    const absmax = f32(await base.readPart(t.absmaxKey, block0 * 4, blocks * 4));
    return { ...source, arrays: { packed, code: t.code, absmax }, params: { blocksize: t.blocksize, block0, nested: 0, nestedBlocksize: 0, nested0: 0, offset: 0 } };
  }
  const { blocksize, offset } = t.nested;
  const absmaxCodes = int8s(await base.readPart(t.absmaxKey, block0, blocks));
  const nested0 = Math.floor(block0 / blocksize);
  const nestedCount = Math.floor((block0 + blocks - 1) / blocksize) - nested0 + 1;
  const nestedAbsmax = f32(await base.readPart(t.nested.absmaxKey, nested0 * 4, nestedCount * 4));
  return {
    ...source, arrays: { packed, code: t.code, absmaxCodes, nestedAbsmax, nestedCode: t.nested.code },
    params: { blocksize: t.blocksize, block0, nested: 1, nestedBlocksize: blocksize, nested0, offset },
  };
}

/** The decoder's inputs for rows [r0, r1) of an 8-bit weight: their int8 values and SCB. */
async function int8Source(base: BaseModel, t: Int8Tensor, r0: number, r1: number): Promise<RowSource> {
  const cols = t.shape[1];
  const q = int8s(await base.readPart(t.name, r0 * cols, (r1 - r0) * cols));
  const scb = f32(await base.readPart(t.scbKey, r0 * 4, (r1 - r0) * 4));
  return { name: t.name, decoder: 'bnb-int8', cols, firstRow: r0, arrays: { q, scb }, params: {} };
}

/** Bytes seen as int8 (the decoders' arrays are int8, int32 or float32: a uint8 code is read `& 0xff`). */
function int8s(bytes: Uint8Array): Int8Array {
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
