/**
 * bitsandbytes-quantized weights in a safetensors base, found by their companion tensors
 * (bitsandbytes nn/modules.py `_save_to_state_dict`, functional.py `QuantState.as_dict`):
 * - 4-bit (`Linear4bit`): `<m>.weight` holds the packed nibbles (uint8, or another storage dtype
 *   reinterpreted), with `<m>.weight.absmax`, `.quant_map`, optional `.nested_absmax` and
 *   `.nested_quant_map`, and `.quant_state.bitsandbytes__nf4|fp4`: JSON in a uint8 tensor with
 *   quant_type, blocksize, dtype, shape and the nested fields.
 * - 8-bit (`Linear8bitLt`): `<m>.weight` int8 with `<m>.SCB` (float32 per output row) and
 *   `<m>.weight_format` (0: row-major, the only format bitsandbytes still writes).
 * Everything is checked against the header before any merge starts; a file bitsandbytes could not
 * have written is refused with the tensor named.
 */
import type { DType, FloatDType } from '../../dtype.js';
import { DTYPE_BYTES } from '../../dtype.js';
import { isMergeError } from '../../errors.js';
import { MAX_CONFIG_BYTES } from '../../limits.js';
import type { BaseModel } from '../base-model.js';
import { parseBoundedJson } from '../bounded-json.js';
import { fourBitCode, type FourBitType } from './bnb-codes.js';
import { product } from '../../integers.js';

const BLOCKSIZES = new Set([32, 64, 128, 256, 512, 1024, 2048, 4096]);
const TORCH_FLOAT: Readonly<Record<string, FloatDType>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const QUANT_STATE = /^(.+)\.quant_state\.bitsandbytes__(nf4|fp4)$/;
const SCB = /^(.+)\.SCB$/;

export interface FourBitTensor {
  kind: '4bit';
  /** The weight's name (`<m>.weight`), also the packed tensor's. */
  name: string;
  quantType: FourBitType;
  code: Float32Array;
  blocksize: number;
  /** What bitsandbytes dequantizes to. */
  dtype: FloatDType;
  shape: number[];
  absmaxKey: string;
  nested?: { absmaxKey: string; code: Float32Array; blocksize: number; offset: number };
  /** Tensors of the file this weight consumes (packed weight, statistics, quant state). */
  parts: string[];
}

export interface Int8Tensor {
  kind: '8bit';
  name: string;
  shape: [number, number];
  scbKey: string;
  parts: string[];
}

export type QuantizedTensor = FourBitTensor | Int8Tensor;

type Problem = { tensor: string; message: string };

/** Every quantized weight of the base, or the problems that keep one from being read. */
export async function findQuantizedTensors(base: BaseModel): Promise<{ tensors: QuantizedTensor[]; problems: Problem[] }> {
  const tensors: QuantizedTensor[] = [];
  const problems: Problem[] = [];
  for (const key of base.tensors.keys()) {
    const fourBit = QUANT_STATE.exec(key);
    if (fourBit) {
      const t = await readFourBit(base, fourBit[1], fourBit[2] as FourBitType, key, problems);
      if (t) tensors.push(t);
      continue;
    }
    const scb = SCB.exec(key);
    if (scb) {
      const t = await readInt8(base, scb[1], key, problems);
      if (t) tensors.push(t);
    }
  }
  return { tensors, problems };
}

async function readFourBit(base: BaseModel, name: string, type: FourBitType, stateKey: string, problems: Problem[]): Promise<FourBitTensor | null> {
  const fail = (message: string) => {
    problems.push({ tensor: name, message });
    return null;
  };
  const packed = base.tensors.get(name);
  if (!packed) return fail(`has a quant state (${stateKey}) but no packed weight`);
  const stateTensor = base.tensors.get(stateKey)!;
  if (stateTensor.dtype !== 'U8') return fail(`${stateKey} is ${stateTensor.dtype}, not the uint8 JSON bitsandbytes writes`);
  if (stateTensor.byteLength > MAX_CONFIG_BYTES) return fail(`${stateKey} is ${stateTensor.byteLength} bytes, above the limit MAX_CONFIG_BYTES for JSON (${MAX_CONFIG_BYTES})`);
  let state: Record<string, unknown>;
  try {
    state = parseBoundedJson(new TextDecoder('utf-8', { fatal: true }).decode(await base.read(stateKey)), stateKey) as Record<string, unknown>;
  } catch (e) {
    if (isMergeError(e) && e.code === 'LIMIT_EXCEEDED') return fail(e.message);
    return fail(`${stateKey} does not hold JSON`);
  }
  if (typeof state !== 'object' || state === null || Array.isArray(state)) return fail(`${stateKey} does not hold a JSON object`);
  if (state.quant_type !== type) return fail(`${stateKey} says quant_type ${JSON.stringify(state.quant_type)}`);
  const blocksize = state.blocksize;
  if (typeof blocksize !== 'number' || !BLOCKSIZES.has(blocksize)) return fail(`blocksize ${shown(blocksize)} is not one bitsandbytes uses`);
  const dtype = typeof state.dtype === 'string' ? TORCH_FLOAT[state.dtype] : undefined;
  if (!dtype) return fail(`dtype ${JSON.stringify(state.dtype)} is not float32, float16 or bfloat16`);
  const shape = state.shape;
  if (!Array.isArray(shape) || shape.length === 0 || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d <= 0)) {
    return fail(`shape ${JSON.stringify(shape)} is not a list of dimensions`);
  }
  const n = product(shape as number[]);
  if (packed.byteLength !== Math.ceil(n / 2)) {
    return fail(`packed weight has ${packed.byteLength} bytes; ${n} values of 4 bits need ${Math.ceil(n / 2)}`);
  }
  const blocks = Math.ceil(n / blocksize);
  const absmaxKey = `${name}.absmax`;
  const mapKey = `${name}.quant_map`;
  const parts = [name, stateKey, absmaxKey, mapKey];
  const code = fourBitCode(type);
  const map = await readF32(base, mapKey, 16, problems, name);
  if (!map) return null;
  if (map.some((x, i) => x !== code[i])) return fail(`${mapKey} differs from bitsandbytes' ${type.toUpperCase()} table, which its kernels use`);

  const t: FourBitTensor = { kind: '4bit', name, quantType: type, code, blocksize, dtype, shape: shape as number[], absmaxKey, parts };
  const nestedKey = `${name}.nested_absmax`;
  if (base.tensors.has(nestedKey)) {
    const nestedBlocksize = state.nested_blocksize;
    const offset = state.nested_offset;
    if (typeof nestedBlocksize !== 'number' || !BLOCKSIZES.has(nestedBlocksize)) return fail(`nested_blocksize ${shown(nestedBlocksize)} is not one bitsandbytes uses`);
    if (state.nested_dtype !== 'float32') return fail(`nested_dtype ${JSON.stringify(state.nested_dtype)} is not float32`);
    if (typeof offset !== 'number' || !Number.isFinite(offset)) return fail(`nested_offset ${shown(offset)} is not a finite number`);
    if (!expect(base, absmaxKey, 'U8', blocks, problems, name) || !expect(base, nestedKey, 'F32', Math.ceil(blocks / nestedBlocksize), problems, name)) return null;
    const nestedCode = await readF32(base, `${name}.nested_quant_map`, 256, problems, name);
    if (!nestedCode) return null;
    t.nested = { absmaxKey: nestedKey, code: nestedCode, blocksize: nestedBlocksize, offset };
    parts.push(nestedKey, `${name}.nested_quant_map`);
  } else {
    if (state.nested_blocksize !== undefined) return fail(`the quant state is nested but ${nestedKey} is missing`);
    if (!expect(base, absmaxKey, 'F32', blocks, problems, name)) return null;
  }
  return t;
}

async function readInt8(base: BaseModel, module: string, scbKey: string, problems: Problem[]): Promise<Int8Tensor | null> {
  const name = `${module}.weight`;
  const fail = (message: string) => {
    problems.push({ tensor: name, message });
    return null;
  };
  const weight = base.tensors.get(name);
  if (!weight) return fail(`has SCB statistics (${scbKey}) but no int8 weight`);
  if (weight.dtype !== 'I8' || weight.shape.length !== 2) return fail(`is ${weight.dtype} (${weight.shape.join(', ')}); an 8-bit bitsandbytes weight is a 2-D int8 tensor`);
  if (!expect(base, scbKey, 'F32', weight.shape[0], problems, name)) return null;
  const parts = [name, scbKey];
  const format = base.tensors.get(`${module}.weight_format`);
  if (format) {
    if (format.dtype !== 'U8' || format.byteLength !== 1) return fail(`${module}.weight_format is not a uint8 scalar`);
    // bitsandbytes writes only 0 (row-major) and refuses to load col32 and the GPU tile formats.
    const value = (await base.read(format.name))[0];
    if (value !== 0) return fail(`${module}.weight_format is ${value}, a tiled layout bitsandbytes no longer reads; only 0 (row-major) is supported`);
    parts.push(format.name);
  }
  return { kind: '8bit', name, shape: [weight.shape[0], weight.shape[1]], scbKey, parts };
}

/** A quant state's value as its JSON says it: a NaN or Infinity (Python's json writes them) as such, not as JSON.stringify's null. */
function shown(value: unknown): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** Checks a statistics tensor's dtype and element count. */
function expect(base: BaseModel, key: string, dtype: DType, count: number, problems: Problem[], name: string): boolean {
  const t = base.tensors.get(key);
  const has = t ? t.byteLength / DTYPE_BYTES[t.dtype] : 0;
  if (t && t.dtype === dtype && has === count) return true;
  problems.push({ tensor: name, message: t ? `${key} is ${t.dtype} with ${has} values; expected ${count} ${dtype}` : `${key} is missing` });
  return false;
}

async function readF32(base: BaseModel, key: string, count: number, problems: Problem[], name: string): Promise<Float32Array | null> {
  if (!expect(base, key, 'F32', count, problems, name)) return null;
  const bytes = await base.read(key);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
