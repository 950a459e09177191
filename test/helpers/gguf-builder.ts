/**
 * GGUF files for tests, built and read back by hand from the format's description (llama.cpp
 * docs/gguf.md), independently of src/: a small writer with every metadata value type and any
 * tensor layout (including broken ones), tensor data of every type from float64 values (through the
 * reference quantizers of ggml-reference.ts), and a small parser for checking written files.
 */
import { concatBytes, encodeValues } from './fixtures.js';
import { FP4_REF } from './ggml-fp4-reference.js';
import { IQ3S_REF } from './ggml-iq3s-reference.js';
import { IQ4_REF } from './ggml-iq4-reference.js';
import { TERNARY_REF } from './ggml-ternary-reference.js';
import { REF_BLOCK, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './ggml-reference.js';

/** Reference quantizers of the types ggml-reference.ts leaves out. */
const MORE_REF: Record<string, { size: number; bytes: number; quantize: (x: ArrayLike<number>) => Uint8Array; dequantize: (b: Uint8Array) => number[] }> = {
  ...FP4_REF, ...TERNARY_REF, ...IQ4_REF, ...IQ3S_REF,
};

export const VALUE_TYPE = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;
export type ScalarKind = Exclude<keyof typeof VALUE_TYPE, 'array'>;

export type MetaValue =
  | { type: ScalarKind; value: number | bigint | boolean | string }
  | { type: 'array'; itemType: ScalarKind | 'array'; value: (number | bigint | boolean | string)[] };

export const GGML_TYPE_ID: Record<string, number> = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14,
  IQ2_XXS: 16, IQ2_XS: 17, IQ3_XXS: 18, IQ1_S: 19, IQ4_NL: 20, IQ3_S: 21, IQ2_S: 22, IQ4_XS: 23, I32: 26, IQ1_M: 29, BF16: 30, TQ1_0: 34, TQ2_0: 35, MXFP4: 39, NVFP4: 40, Q1_0: 41, Q2_0: 42,
};
/** [values per block, bytes per block]. */
export const GGML_BLOCK: Record<string, [number, number]> = {
  F32: [1, 4], F16: [1, 2], BF16: [1, 2], I32: [1, 4], IQ2_XXS: [256, 66], IQ2_XS: [256, 74], IQ2_S: [256, 82], IQ3_XXS: [256, 98], IQ3_S: [256, 110], IQ1_S: [256, 50], IQ1_M: [256, 56],
  ...Object.fromEntries(Object.entries(REF_BLOCK).map(([k, v]) => [k, [v.size, v.bytes]])),
  ...Object.fromEntries(Object.entries(MORE_REF).map(([k, v]) => [k, [v.size, v.bytes]])),
};

const enc = new TextEncoder();

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function u64(v: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

export function ggufString(s: string | Uint8Array): Uint8Array {
  const bytes = typeof s === 'string' ? enc.encode(s) : s;
  return concatBytes([u64(bytes.byteLength), bytes]);
}

function scalar(kind: ScalarKind, v: number | bigint | boolean | string): Uint8Array {
  if (kind === 'string') return ggufString(v as string);
  const size = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 }[kind];
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  switch (kind) {
    case 'u8': d.setUint8(0, v as number); break;
    case 'i8': d.setInt8(0, v as number); break;
    case 'bool': d.setUint8(0, v ? 1 : 0); break;
    case 'u16': d.setUint16(0, v as number, true); break;
    case 'i16': d.setInt16(0, v as number, true); break;
    case 'u32': d.setUint32(0, v as number, true); break;
    case 'i32': d.setInt32(0, v as number, true); break;
    case 'f32': d.setFloat32(0, v as number, true); break;
    case 'u64': d.setBigUint64(0, BigInt(v as bigint), true); break;
    case 'i64': d.setBigInt64(0, BigInt(v as bigint), true); break;
    case 'f64': d.setFloat64(0, v as number, true); break;
  }
  return b;
}

export function encodeKv(key: string, v: MetaValue): Uint8Array {
  if (v.type !== 'array') return concatBytes([ggufString(key), u32(VALUE_TYPE[v.type]), scalar(v.type, v.value)]);
  const items = v.itemType === 'array' ? [] : v.value.map((x) => scalar(v.itemType as ScalarKind, x));
  return concatBytes([ggufString(key), u32(VALUE_TYPE.array), u32(VALUE_TYPE[v.itemType]), u64(v.value.length), ...items]);
}

export interface FixtureTensor {
  name: string;
  /** GGML type name (`Q4_K`) or a raw id. */
  type: string | number;
  /** GGML order: fastest dimension first. */
  ne: number[];
  data: Uint8Array;
  /** Override the offset written in the tensor info (for broken files). */
  offset?: number;
}

export interface BuildOptions {
  version?: number;
  metadata?: [string, MetaValue][];
  /** Raw metadata bytes appended after `metadata` (and counted as `extraKvCount` entries). */
  rawKv?: Uint8Array;
  extraKvCount?: number;
  tensors?: FixtureTensor[];
  alignment?: number;
  /** Leave out the zero padding after the last tensor. */
  noTailPadding?: boolean;
}

const pad = (n: number, a: number) => (a - (n % a)) % a;

export function buildGguf(o: BuildOptions): Uint8Array {
  const alignment = o.alignment ?? 32;
  const tensors = o.tensors ?? [];
  const kvs = (o.metadata ?? []).map(([k, v]) => encodeKv(k, v));
  if (o.rawKv) kvs.push(o.rawKv);
  const infos: Uint8Array[] = [];
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    const id = typeof t.type === 'number' ? t.type : GGML_TYPE_ID[t.type];
    infos.push(concatBytes([ggufString(t.name), u32(t.ne.length), ...t.ne.map((d) => u64(d)), u32(id), u64(t.offset ?? offset)]));
    offset += t.data.byteLength + pad(t.data.byteLength, alignment);
  }
  const head = concatBytes([
    enc.encode('GGUF'), u32(o.version ?? 3), u64(tensors.length), u64((o.metadata ?? []).length + (o.extraKvCount ?? 0)), ...kvs, ...infos,
  ]);
  const parts = [head, new Uint8Array(tensors.length ? pad(head.byteLength, alignment) : 0)];
  tensors.forEach((t, i) => {
    parts.push(t.data);
    const last = i === tensors.length - 1;
    if (!(last && o.noTailPadding)) parts.push(new Uint8Array(pad(t.data.byteLength, alignment)));
  });
  return concatBytes(parts);
}

/** Tensor bytes of `type` for float64 values (block types through the reference quantizers). */
export function tensorData(type: string, values: ArrayLike<number>): Uint8Array {
  if (type === 'F32' || type === 'F16' || type === 'BF16') return encodeValues(values, type);
  if (Object.hasOwn(MORE_REF, type)) {
    const ref = MORE_REF[type];
    const blocks: Uint8Array[] = [];
    for (let i = 0; i < values.length; i += ref.size) blocks.push(ref.quantize(Array.from({ length: ref.size }, (_, j) => values[i + j])));
    return concatBytes(blocks);
  }
  const { size } = REF_BLOCK[type as RefType];
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < values.length; i += size) {
    blocks.push(referenceQuantizeBlock(type as RefType, Array.from({ length: size }, (_, j) => values[i + j])));
  }
  return concatBytes(blocks);
}

/**
 * Tensors of `specs` filled with 0.02 · `rand()` in their types, and the values those bytes hold
 * (block types through the reference dequantizers), by name.
 */
export function randomTensors(specs: readonly { name: string; ne: number[]; type: string }[], rand: () => number): { tensors: FixtureTensor[]; values: Map<string, Float64Array> } {
  const values = new Map<string, Float64Array>();
  const tensors = specs.map((s) => {
    const n = s.ne.reduce((a, b) => a * b, 1);
    const data = tensorData(s.type, Float64Array.from({ length: n }, () => 0.02 * rand()));
    values.set(s.name, tensorValues(s.type, data));
    return { ...s, data };
  });
  return { tensors, values };
}

/** Values of tensor bytes of `type` (block types through the reference dequantizers). */
export function tensorValues(type: string, data: Uint8Array): Float64Array {
  if (type === 'F32' || type === 'F16' || type === 'BF16') {
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const n = data.byteLength / (type === 'F32' ? 4 : 2);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      if (type === 'F32') out[i] = dv.getFloat32(i * 4, true);
      else if (type === 'BF16') out[i] = new Float32Array(new Uint32Array([dv.getUint16(i * 2, true) << 16]).buffer)[0];
      else out[i] = referenceHalf(dv.getUint16(i * 2, true));
    }
    return out;
  }
  if (Object.hasOwn(MORE_REF, type)) {
    const ref = MORE_REF[type];
    const out = new Float64Array((data.byteLength / ref.bytes) * ref.size);
    for (let b = 0; b * ref.bytes < data.byteLength; b++) out.set(ref.dequantize(data.subarray(b * ref.bytes, (b + 1) * ref.bytes)), b * ref.size);
    return out;
  }
  const { size, bytes } = REF_BLOCK[type as RefType];
  const out = new Float64Array((data.byteLength / bytes) * size);
  for (let b = 0; b * bytes < data.byteLength; b++) {
    out.set(referenceDequantizeBlock(type as RefType, data.subarray(b * bytes, (b + 1) * bytes)), b * size);
  }
  return out;
}

function referenceHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 31;
  const mant = h & 1023;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return exp === 0 ? sign * mant * 2 ** -24 : sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// --- reading back ------------------------------------------------------------------------------

export interface ReadTensor {
  name: string;
  typeId: number;
  ne: number[];
  offset: number;
  data: Uint8Array;
}

export interface ReadGguf {
  version: number;
  metadata: Map<string, { type: number; itemType?: number; value: unknown }>;
  keys: string[];
  tensors: ReadTensor[];
  dataStart: number;
}

export function readGguf(bytes: Uint8Array): ReadGguf {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const r32 = () => { const v = dv.getUint32(at, true); at += 4; return v; };
  const r64 = () => { const v = dv.getBigUint64(at, true); at += 8; return v; };
  const rstr = () => { const n = Number(r64()); const s = new TextDecoder().decode(bytes.subarray(at, at + n)); at += n; return s; };
  const rval = (t: number): unknown => {
    switch (t) {
      case 0: return dv.getUint8(at++);
      case 1: return dv.getInt8(at++);
      case 7: return dv.getUint8(at++) !== 0;
      case 2: { const v = dv.getUint16(at, true); at += 2; return v; }
      case 3: { const v = dv.getInt16(at, true); at += 2; return v; }
      case 4: return r32();
      case 5: { const v = dv.getInt32(at, true); at += 4; return v; }
      case 6: { const v = dv.getFloat32(at, true); at += 4; return v; }
      case 8: return rstr();
      case 10: return r64();
      case 11: { const v = dv.getBigInt64(at, true); at += 8; return v; }
      case 12: { const v = dv.getFloat64(at, true); at += 8; return v; }
      default: throw new Error(`value type ${t}`);
    }
  };
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== 'GGUF') throw new Error('not GGUF');
  at = 4;
  const version = r32();
  const nTensors = Number(r64());
  const nKv = Number(r64());
  const metadata = new Map<string, { type: number; itemType?: number; value: unknown }>();
  const keys: string[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = rstr();
    const type = r32();
    keys.push(key);
    if (type === 9) {
      const itemType = r32();
      const n = Number(r64());
      const value = Array.from({ length: n }, () => rval(itemType));
      metadata.set(key, { type, itemType, value });
    } else {
      metadata.set(key, { type, value: rval(type) });
    }
  }
  const infos: Omit<ReadTensor, 'data'>[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = rstr();
    const nd = r32();
    const ne = Array.from({ length: nd }, () => Number(r64()));
    const typeId = r32();
    infos.push({ name, ne, typeId, offset: Number(r64()) });
  }
  const alignment = (metadata.get('general.alignment')?.value as number | undefined) ?? 32;
  const dataStart = at + pad(at, alignment);
  const tensors = infos.map((t) => {
    const name = Object.entries(GGML_TYPE_ID).find(([, id]) => id === t.typeId)![0];
    const [size, blockBytes] = GGML_BLOCK[name];
    const n = t.ne.reduce((a, b) => a * b, 1);
    const start = dataStart + t.offset;
    return { ...t, data: bytes.subarray(start, start + (n / size) * blockBytes) };
  });
  return { version, metadata, keys, tensors, dataStart };
}

/** The GGML type name of an id; an id ggml does not define (a fuzzed one) as `type <id>`. */
export function typeName(id: number): string {
  return Object.entries(GGML_TYPE_ID).find(([, v]) => v === id)?.[0] ?? `type ${id}`;
}
