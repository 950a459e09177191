/**
 * A bitsandbytes-quantized base seen as the float model it stands for: each quantized weight is
 * one tensor of its original shape, in the dtype bitsandbytes dequantizes it to (a 4-bit weight:
 * the quant state's dtype; an 8-bit one: float32), decoded on demand a row slab at a time; its
 * statistics and quant state are no longer tensors of the model. Merges add to these values and
 * round once; unmerged tensors are written in the model's dtype (config.json `torch_dtype`, as
 * transformers' `dequantize()` casts them; bf16 when the config names none).
 *
 * The decoding sits behind one small interface (a view tensor's `readPart`), so it can move into
 * a container seam that decodes stored tensors per row.
 */
import { DTYPE_BYTES, encodeFromF32, type FloatDType } from '../../dtype.js';
import { MergeError } from '../../errors.js';
import { formatProblemList } from '../../plan/problems.js';
import type { BaseModel, SafetensorsBaseModel } from '../base-model.js';
import { viewReplacing, type ViewTensor } from '../base-model-view.js';
import { languageModelField, type ModelConfig } from '../model-config.js';
import { dequantizeFourBit, dequantizeInt8, dequantizeNestedAbsmax } from './bnb-dequantize.js';
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
    throw new MergeError('UNSUPPORTED_FORMAT', formatProblemList(`${base.name} (bitsandbytes weights)`, problems.map((p) => `${base.name}: tensor "${p.tensor}" ${p.message}`)));
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
  const elements = product(t.shape);
  const width = DTYPE_BYTES[dtype];
  const values = t.kind === '4bit' ? (start: number, count: number) => fourBitValues(base, t, start, count) : (start: number, count: number) => int8Values(base, t, start, count);
  return {
    name: t.name, dtype, shape: t.shape.slice(), byteLength: elements * width, writeDtype,
    async readPart(start, length) {
      if (start % width !== 0 || length % width !== 0) throw new RangeError(`${t.name}: reads must be whole ${dtype} values`);
      const decoded = await values(start / width, length / width);
      // What bitsandbytes returns: the float32 product cast once to the quant state's dtype.
      return dtype === 'F32' ? new Uint8Array(decoded.buffer) : encodeFromF32(decoded, dtype);
    },
  };
}

async function fourBitValues(base: BaseModel, t: FourBitTensor, start: number, count: number): Promise<Float32Array> {
  const byte0 = start >>> 1;
  const packed = await base.readPart(t.name, byte0, ((start + count + 1) >>> 1) - byte0);
  const block0 = Math.floor(start / t.blocksize);
  const blocks = Math.floor((start + count - 1) / t.blocksize) - block0 + 1;
  let absmax: Float32Array;
  if (t.nested) {
    const q = await base.readPart(t.absmaxKey, block0, blocks);
    const nested0 = Math.floor(block0 / t.nested.blocksize);
    const nestedCount = Math.floor((block0 + blocks - 1) / t.nested.blocksize) - nested0 + 1;
    const scales = f32(await base.readPart(t.nested.absmaxKey, nested0 * 4, nestedCount * 4));
    absmax = dequantizeNestedAbsmax(q, block0, t.nested.code, scales, nested0, t.nested.blocksize, t.nested.offset);
  } else {
    absmax = f32(await base.readPart(t.absmaxKey, block0 * 4, blocks * 4));
  }
  return dequantizeFourBit({ packed, absmax }, t.code, t.blocksize, start, count);
}

async function int8Values(base: BaseModel, t: Int8Tensor, start: number, count: number): Promise<Float32Array> {
  const cols = t.shape[1];
  const q = await base.readPart(t.name, start, count);
  const row0 = Math.floor(start / cols);
  const rows = Math.floor((start + count - 1) / cols) - row0 + 1;
  const scb = f32(await base.readPart(t.scbKey, row0 * 4, rows * 4));
  return dequantizeInt8(new Int8Array(q.buffer, q.byteOffset, q.byteLength), scb, start, cols);
}

function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
