/**
 * compressed-tensors integer weights (RedHat / neuralmagic `*-quantized.w4a16`, `*.w8a16`,
 * `*.w8a8`), config.json `quant_method: "compressed-tensors"` with every config group's weights
 * `type: "int"`, as compressed-tensors writes them (pack_quantized.py, forward.py `dequantize`):
 * - `pack-quantized`: `<m>.weight_packed` I32 (out, ⌈in/p⌉) with p = ⌊32 / num_bits⌋ values per
 *   word, input c in bits num_bits·(c mod p) of word ⌊c/p⌋, each stored as q + 2^(num_bits−1)
 *   (unsigned); `<m>.weight_shape` (2,) the float weight's (out, in); `<m>.weight_scale` (out,
 *   groups); asymmetric group/channel schemes add `<m>.weight_zero_point` I32 packed the same way
 *   along the output axis (⌈out/p⌉, groups), stored with the same offset;
 * - `int-quantized`: `<m>.weight` I8 (out, in) of q itself and `<m>.weight_scale` (out, groups);
 *   a zero point, where present, is `<m>.weight_zero_point` I8 (out, groups).
 * The real weight is (q − zero) × scale of the input's group: ⌊c / group_size⌋ (a channel or
 * tensor scheme: one group), or `<m>.weight_g_idx[c]` under act-order (`actorder: "group"`).
 * Each slab's codes, scales and zero points are read here and decoded by row-decoders.ts (on the
 * CPU backend's threads where it has them).
 */
import { decodeToF32 } from '../dtype.js';
import { MergeError } from '../errors.js';
import { badScaleRows, countBad, eachRowPiece, noBad } from './bad-scales.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { product } from '../integers.js';
import type { ModelConfig } from './model-config.js';
import { checkedScales, configRefusal, int32s, notAsWritten, quantizationRecord, scaleDtype, type IntWeight, type IntWeights } from './int-weights.js';

const FORMAT = 'compressed-tensors int';

interface Scheme {
  format: 'pack-quantized' | 'int-quantized';
  bits: number;
  /** Inputs per scale: group_size, or undefined for one scale per row (channel, tensor). */
  groupSizes: Set<number>;
}

/** The integer weights of a compressed-tensors base, or undefined when its config is not an all-int one. */
export async function compressedTensorsIntWeights(base: SafetensorsBaseModel, config: ModelConfig | undefined): Promise<IntWeights | undefined> {
  const scheme = readScheme(base.name, quantizationRecord(config));
  if (!scheme) return undefined;
  const weights: IntWeight[] = [];
  for (const [key, t] of base.tensors) {
    const packed = key.endsWith('.weight_packed');
    const int8 = key.endsWith('.weight') && t.dtype === 'I8' && base.tensors.has(`${key}_scale`);
    if (!packed && !int8) continue;
    // The format picks compressed-tensors' decompressor, which reads only its own tensors: the
    // other format's codes would be left as they are stored.
    const stored = packed ? 'pack-quantized' : 'int-quantized';
    if (stored !== scheme.format) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${key}" is stored ${stored}, but config.json quantization_config says format "${scheme.format}"; a weight stored other than its config says is not read`);
    weights.push(await (packed ? packedWeight(base, key.slice(0, -'.weight_packed'.length), scheme) : int8Weight(base, key.slice(0, -'.weight'.length))));
  }
  return { kind: 'compressed-tensors-int', weights };
}

function readScheme(baseName: string, qc: Record<string, unknown> | undefined): Scheme | undefined {
  if (qc?.quant_method !== 'compressed-tensors') return undefined;
  const groups = qc.config_groups;
  if (typeof groups !== 'object' || groups === null) return undefined;
  const list = Object.values(groups as Record<string, unknown>).map((g) => (typeof g === 'object' && g !== null ? (g as Record<string, unknown>) : {}));
  const weightsOf = (g: Record<string, unknown>) => (typeof g.weights === 'object' && g.weights !== null ? (g.weights as Record<string, unknown>) : undefined);
  // Float groups (FP8) are formats/scaled-fp8.ts's; a mix stays refused by the guard.
  if (list.length === 0 || !list.every((g) => weightsOf(g)?.type === 'int')) return undefined;
  const sparsity = qc.sparsity_config as Record<string, unknown> | null | undefined;
  if (sparsity && typeof sparsity === 'object' && sparsity.format !== undefined && sparsity.format !== 'dense') {
    throw configRefusal(baseName, FORMAT, `sparsity format "${String(sparsity.format)}" is not read`);
  }
  const formats = new Set(list.map((g) => g.format ?? qc.format));
  const bits = new Set(list.map((g) => weightsOf(g)!.num_bits));
  if (formats.size !== 1) throw configRefusal(baseName, FORMAT, `config groups in several formats (${[...formats].join(', ')}) are not read`);
  const format = [...formats][0];
  if (format !== 'pack-quantized' && format !== 'int-quantized') throw configRefusal(baseName, FORMAT, `format "${String(format)}" is not read (only pack-quantized and int-quantized)`);
  if (bits.size !== 1) throw configRefusal(baseName, FORMAT, `config groups with different num_bits (${[...bits].join(', ')}) are not read`);
  const n = [...bits][0];
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 8 || (format === 'int-quantized' && n !== 8)) {
    throw configRefusal(baseName, FORMAT, `num_bits ${String(n)} is not read in ${format}`);
  }
  const groupSizes = new Set<number>();
  for (const g of list) {
    const w = weightsOf(g)!;
    if (w.strategy === 'group') {
      if (typeof w.group_size !== 'number' || !Number.isSafeInteger(w.group_size) || w.group_size < 1) throw configRefusal(baseName, FORMAT, `group_size ${String(w.group_size)}`);
      groupSizes.add(w.group_size);
    } else if (w.strategy !== 'channel' && w.strategy !== 'tensor') {
      throw configRefusal(baseName, FORMAT, `weight strategy "${String(w.strategy)}" is not read (only group, channel and tensor)`);
    }
    if (w.dynamic === true) throw configRefusal(baseName, FORMAT, 'dynamic weight quantization is not read');
  }
  return { format, bits: n, groupSizes };
}

/** Which group of scales each input column uses: from g_idx, or by group size (the whole row for one scale per row). */
function columnGroups(base: SafetensorsBaseModel, stem: string, cols: number, groups: number, scheme: Scheme, why: (s: string) => Error): () => Promise<Int32Array> {
  const gIdxKey = `${stem}.weight_g_idx`;
  const g = base.tensors.get(gIdxKey);
  if (g) {
    if (g.dtype !== 'I32' || g.shape.length !== 1 || g.shape[0] !== cols) throw why(`${gIdxKey} is ${g.dtype} [${g.shape.join(', ')}]; expected I32 (${cols})`);
    // Read as the merge reaches the weight, once (a model's group indices together are large).
    let idx: Promise<Int32Array> | undefined;
    return () => (idx ??= base.read(gIdxKey).then((bytes) => {
      const read = int32s(bytes);
      const bad = read.findIndex((x) => x < 0 || x >= groups);
      if (bad >= 0) throw why(`${gIdxKey}[${bad}] is ${read[bad]}, outside its ${groups} groups`);
      return read;
    }));
  }
  if (groups === 1) return async () => new Int32Array(cols);
  const size = [...scheme.groupSizes].find((s) => Math.ceil(cols / s) === groups);
  if (size === undefined) throw why(`${stem}.weight_scale has ${groups} scales per row for ${cols} inputs; config.json's group_size is ${[...scheme.groupSizes].join(' or ') || 'none'}`);
  const plain = Int32Array.from({ length: cols }, (_, c) => Math.floor(c / size));
  return async () => plain;
}

/** The scale table: (out, groups), or one scale for the tensor ((1,), () or (1, 1)) spread over its rows. */
function scaleTable(base: SafetensorsBaseModel, key: string, rows: number, why: (s: string) => Error) {
  const s = base.tensors.get(key);
  if (!s) throw why(`${key} is missing`);
  const dtype = scaleDtype(base.name, key, s.dtype);
  const perTensor = s.shape.every((d) => d === 1);
  if (!perTensor && (s.shape.length !== 2 || s.shape[0] !== rows)) throw why(`${key} has shape [${s.shape.join(', ')}]; expected (${rows}, groups)`);
  const groups = perTensor ? 1 : s.shape[1];
  return {
    groups,
    /** Scales of rows [r0, r1), row-major (r1 − r0) × groups. */
    async rows(r0: number, r1: number): Promise<Float32Array> {
      if (perTensor) {
        const one = decodeToF32(await base.read(key), dtype)[0];
        return checkedScales(base.name, key, new Float32Array(r1 - r0).fill(one), 0);
      }
      const values = decodeToF32(await base.readPart(key, r0 * groups * 2, (r1 - r0) * groups * 2), dtype);
      if (values.some((v) => !(v >= 0 && v < Infinity))) throw await badScalesOfTable(base, key, dtype, rows, groups);
      return values;
    },
  };
}

/**
 * The refusal of a scale table (rows, groups) holding NaN, Inf or negative scales, met by a slab:
 * the table read again whole, so that it names how many it holds and its first and last row.
 */
async function badScalesOfTable(base: SafetensorsBaseModel, key: string, dtype: 'F16' | 'BF16', rows: number, groups: number): Promise<MergeError> {
  const span = noBad();
  await eachRowPiece((start, length) => base.readPart(key, start, length), rows, groups * 2, (bytes, r0) => {
    const values = decodeToF32(bytes, dtype);
    for (let j = 0; j < values.length; j++) if (!(values[j] >= 0 && values[j] < Infinity)) countBad(span, r0 + Math.floor(j / groups));
  });
  return badScaleRows(base.name, key, span, ['scale that is NaN, Inf or negative', 'scales that are NaN, Inf or negative'], 'scales must be finite and not negative');
}

async function packedWeight(base: SafetensorsBaseModel, stem: string, scheme: Scheme): Promise<IntWeight> {
  const key = `${stem}.weight`;
  const packedKey = `${stem}.weight_packed`;
  const shapeKey = `${stem}.weight_shape`;
  const zeroKey = `${stem}.weight_zero_point`;
  const why = (s: string) => notAsWritten(base.name, key, 'compressed-tensors pack-quantized', s);
  const packed = base.tensors.get(packedKey)!;
  const shapeTensor = base.tensors.get(shapeKey);
  if (!shapeTensor) throw why(`${shapeKey} is missing`);
  if ((shapeTensor.dtype !== 'I32' && shapeTensor.dtype !== 'I64') || shapeTensor.shape.length !== 1 || shapeTensor.shape[0] !== 2) throw why(`${shapeKey} is ${shapeTensor.dtype} [${shapeTensor.shape.join(', ')}]; expected two integers`);
  const shapeBytes = await base.read(shapeKey);
  const dims = new DataView(shapeBytes.buffer, shapeBytes.byteOffset, shapeBytes.byteLength);
  const [rows, cols] = shapeTensor.dtype === 'I32' ? [dims.getInt32(0, true), dims.getInt32(4, true)] : [Number(dims.getBigInt64(0, true)), Number(dims.getBigInt64(8, true))];
  const bits = scheme.bits;
  const perWord = Math.floor(32 / bits);
  const words = Math.ceil(cols / perWord);
  if (packed.dtype !== 'I32' || packed.shape.length !== 2 || packed.shape[0] !== rows || packed.shape[1] !== words) {
    throw why(`${packedKey} is ${packed.dtype} [${packed.shape.join(', ')}]; for ${shapeKey} (${rows}, ${cols}) and num_bits ${bits} expected I32 (${rows}, ${words})`);
  }
  const scales = scaleTable(base, `${stem}.weight_scale`, rows, why);
  const groupIndex = columnGroups(base, stem, cols, scales.groups, scheme, why);
  const zeros = zeroPoints(base, zeroKey, rows, scales.groups, bits, true, why);
  return {
    key, rows, cols, scaleKey: `${stem}.weight_scale`,
    parts: [packedKey, shapeKey, `${stem}.weight_scale`, ...(zeros ? [zeroKey] : []), ...(base.tensors.has(`${stem}.weight_g_idx`) ? [`${stem}.weight_g_idx`] : [])],
    async rowSource(r0, r1) {
      const q = int32s(await base.readPart(packedKey, r0 * words * 4, (r1 - r0) * words * 4));
      const s = await scales.rows(r0, r1);
      const z = zeros ? await zeros(r0, r1) : undefined;
      const groupOf = await groupIndex();
      return {
        name: key, decoder: 'compressed-tensors-packed', cols, firstRow: r0,
        arrays: { q, scales: s, groupOf, ...(z ? { zeros: z } : {}) }, params: { bits, words, groups: scales.groups, zeroed: z ? 1 : 0 },
      };
    },
  };
}

async function int8Weight(base: SafetensorsBaseModel, stem: string): Promise<IntWeight> {
  const key = `${stem}.weight`;
  const zeroKey = `${stem}.weight_zero_point`;
  const why = (s: string) => notAsWritten(base.name, key, 'compressed-tensors int-quantized', s);
  const w = base.tensors.get(key)!;
  if (w.shape.length !== 2) throw why(`its shape is [${w.shape.join(', ')}]; expected (out, in)`);
  const [rows, cols] = w.shape;
  const scales = scaleTable(base, `${stem}.weight_scale`, rows, why);
  if (cols % scales.groups !== 0) throw why(`${stem}.weight_scale has ${scales.groups} scales per row for ${cols} inputs`);
  const size = cols / scales.groups;
  const zeros = zeroPoints(base, zeroKey, rows, scales.groups, 8, false, why);
  if (base.tensors.has(`${stem}.weight_g_idx`)) throw why(`${stem}.weight_g_idx beside int8 codes is not read`);
  return {
    key, rows, cols, scaleKey: `${stem}.weight_scale`,
    parts: [key, `${stem}.weight_scale`, ...(zeros ? [zeroKey] : [])],
    async rowSource(r0, r1) {
      const bytes = await base.readPart(key, r0 * cols, (r1 - r0) * cols);
      const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const s = await scales.rows(r0, r1);
      const z = zeros ? await zeros(r0, r1) : undefined;
      return {
        name: key, decoder: 'compressed-tensors-int8', cols, firstRow: r0,
        arrays: { q, scales: s, ...(z ? { zeros: z } : {}) }, params: { groups: scales.groups, size, zeroed: z ? 1 : 0 },
      };
    },
  };
}

/**
 * The zero points of rows [r0, r1) as signed values, (r1 − r0) × groups, or undefined when the
 * weight has none: I8 (out, groups) as stored, or (pack-quantized) I32 packed along the output
 * axis, (⌈out/p⌉, groups), with the codes' offset.
 */
function zeroPoints(base: SafetensorsBaseModel, key: string, rows: number, groups: number, bits: number, packedAllowed: boolean, why: (s: string) => Error) {
  const z = base.tensors.get(key);
  if (!z) return undefined;
  const perWord = Math.floor(32 / bits);
  if (z.dtype === 'I8' && product(z.shape) === 1 && groups === 1) {
    // A tensor scheme's one zero point, spread over the rows.
    return async (r0: number, r1: number): Promise<Int32Array> => {
      const bytes = await base.read(key);
      return new Int32Array(r1 - r0).fill(new Int8Array(bytes.buffer, bytes.byteOffset, 1)[0]);
    };
  }
  if (z.dtype === 'I8' && (product(z.shape) === rows * groups) && (z.shape.length === 2 ? z.shape[0] === rows : groups === 1)) {
    return async (r0: number, r1: number): Promise<Int32Array> => {
      const bytes = await base.readPart(key, r0 * groups, (r1 - r0) * groups);
      return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    };
  }
  if (packedAllowed && z.dtype === 'I32' && z.shape.length === 2 && z.shape[0] === Math.ceil(rows / perWord) && z.shape[1] === groups) {
    const mask = 2 ** bits - 1;
    const offset = 2 ** (bits - 1);
    return async (r0: number, r1: number): Promise<Int32Array> => {
      const w0 = Math.floor(r0 / perWord);
      const w1 = Math.floor((r1 - 1) / perWord) + 1;
      const words = int32s(await base.readPart(key, w0 * groups * 4, (w1 - w0) * groups * 4));
      const out = new Int32Array((r1 - r0) * groups);
      for (let r = r0; r < r1; r++) for (let g = 0; g < groups; g++) {
        out[(r - r0) * groups + g] = ((words[(Math.floor(r / perWord) - w0) * groups + g] >>> (bits * (r % perWord))) & mask) - offset;
      }
      return out;
    };
  }
  throw why(`${key} is ${z.dtype} [${z.shape.join(', ')}]; expected I8 (${rows}, ${groups})${packedAllowed ? ` or I32 packed along the outputs (${Math.ceil(rows / perWord)}, ${groups})` : ''}`);
}
