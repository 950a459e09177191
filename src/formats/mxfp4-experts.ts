/**
 * gpt-oss's MXFP4 experts as openai ships them (config.json `quantization_config.quant_method:
 * "mxfp4"`), seen as the bf16 parameters transformers makes of them when it loads the model with
 * `Mxfp4Config(dequantize=True)`, the way the OpenAI cookbook's and TRL's fine-tuning recipes load
 * it to train a LoRA (integrations/mxfp4.py `convert_moe_packed_tensors`):
 * - `<p>_blocks` U8 (E, out, in/32, 16): 32 e2m1 codes per block, code 2k in the low nibble of
 *   byte k and 2k + 1 in the high one; a code is a sign bit (8) and a magnitude index into
 *   0, ½, 1, 1½, 2, 3, 4, 6 (transformers' FP4_VALUES);
 * - `<p>_scales` U8 (E, out, in/32): E8M0 exponents, the block's scale 2^(byte − 127);
 * - the parameter `<p>` = code × 2^(byte − 127), transposed to (E, in, out) (gpt-oss's experts
 *   compute x @ W[e]), for `p` = `gate_up_proj` (in = hidden, out = 2·intermediate, gate and up
 *   in alternate columns) and `down_proj` (in = intermediate, out = hidden).
 * A value has at most two significant bits and, from 2⁻¹²⁸ up to bf16's largest, is exact in bf16
 * (its smallest ones are subnormal, as in transformers' bf16 tensor), so the view lists each parameter
 * as a bf16 tensor of its real values under the parameter's own name, and the merge sees a weight
 * with one scale of 1 (the `dequantize-only` rule), written bf16 unless another dtype is asked.
 * Scale byte 255 (E8M0's NaN) and values past bf16's range, which transformers turns into Inf or
 * NaN, are refused by name. The values are decoded by row-decoders.ts (on the CPU backend's threads
 * where the merge has them), an expert's blocks and scales read and checked here once. The biases (`<p>_bias`) are float parameters of their own, untouched.
 *
 * Only when an adapter changes an MXFP4 parameter (PEFT `target_parameters` on it, or a LoRA on one
 * expert's Linear layer of Unsloth's split experts, which lands on it transposed): otherwise the experts are copied as stored (a
 * LoRA on the attention keeps the model MXFP4). Then every MXFP4 parameter is decoded, since
 * transformers loads a checkpoint whose config names MXFP4 only as blocks and scales, and one
 * without it only as floats.
 */
import { MergeError } from '../errors.js';
import { countBad, eachRowPiece, noBad } from './bad-scales.js';
import type { AdapterModule } from './adapter.js';
import type { SafetensorsBaseModel } from './base-model.js';
import { viewReplacing, type ViewTensor } from './base-model-view.js';
import type { ModelConfig } from './model-config.js';
import { quantizationRecord } from './int-weights.js';
import { E2M1, sourceBytes } from './nvfp4-values.js';
import { mxfp4ExpertRows, type RowDecodeRunner, type RowSource } from './row-decoders.js';
import { fusedExpertParameter } from './layouts/linearized-experts.js';
import type { ScaledFp8Base, ScaledFp8Weight } from './scaled-fp8.js';

/** The largest finite bf16 value: a decoded value past it is Inf in transformers' tensor. */
const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;

interface Mxfp4Parameter {
  /** `<p>`: the parameter the view lists. */
  key: string;
  blocksKey: string;
  scalesKey: string;
  experts: number;
  /** Stored rows per expert (the parameter's columns) and inputs per row (its rows). */
  out: number;
  in: number;
  groups: number;
  /** What a refusal says the parameter is made of (BaseTensor.decodedFrom). */
  decodedFrom: string;
}

/**
 * Does an adapter module name this parameter (PEFT `target_parameters`, any prefix before it), or
 * one expert's Linear layer of it split (Unsloth's `experts.gate_up_projs.K`, layouts/linearized-experts.ts)?
 */
function namedBy(modules: readonly AdapterModule[], key: string): boolean {
  const names = (path: string) => path === key || key.endsWith(`.${path}`) || path.endsWith(`.${key}`);
  return modules.some((m) => {
    if (m.address.flat) return false;
    if (m.experts !== undefined) return names(m.address.path);
    const fused = m.address.tensor ? undefined : fusedExpertParameter(m.address.path);
    return fused !== undefined && names(fused);
  });
}

/**
 * The view of a gpt-oss base whose MXFP4 experts an adapter changes, or undefined (no MXFP4
 * config, no such parameter, or no adapter changing one). Malformed tensors throw, naming them.
 */
export function mxfp4ExpertsView(
  base: SafetensorsBaseModel, config: ModelConfig | undefined, modules: readonly AdapterModule[],
): { base: SafetensorsBaseModel; scaled: ScaledFp8Base } | undefined {
  if (quantizationRecord(config)?.quant_method !== 'mxfp4') return undefined;
  const params: Mxfp4Parameter[] = [];
  for (const [blocksKey, blocks] of base.tensors) {
    if (!blocksKey.endsWith('_blocks')) continue;
    const key = blocksKey.slice(0, -'_blocks'.length);
    const scalesKey = `${key}_scales`;
    const scales = base.tensors.get(scalesKey);
    if (!scales) continue;
    const bad = (why: string) => new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${key} is not an MXFP4 parameter as transformers reads it (${why})`);
    const [experts, out, groups, bytes] = blocks.shape;
    if (blocks.dtype !== 'U8' || blocks.shape.length !== 4 || bytes !== 16) throw bad(`${blocksKey} is ${blocks.dtype} [${blocks.shape.join(', ')}]; expected U8 (experts, out, in/32, 16)`);
    if (scales.dtype !== 'U8' || scales.shape.length !== 3 || scales.shape[0] !== experts || scales.shape[1] !== out || scales.shape[2] !== groups) {
      throw bad(`${scalesKey} is ${scales.dtype} [${scales.shape.join(', ')}]; expected U8 (${experts}, ${out}, ${groups})`);
    }
    if (base.tensors.has(key)) throw bad(`the base also holds ${key} itself`);
    const from = `decoded from MXFP4 ${blocksKey} (${blocks.shape.join(', ')}) and ${scalesKey} (${scales.shape.join(', ')}) `
      + "(each expert's stored (out, in) transposed, as transformers' Mxfp4Config(dequantize=True) loads it)";
    params.push({ key, blocksKey, scalesKey, experts, out, in: groups * 32, groups, decodedFrom: from });
  }
  if (params.length === 0 || !params.some((p) => namedBy(modules, p.key))) return undefined;

  const weights = new Map<string, ScaledFp8Weight>();
  for (const p of params) {
    const rows = p.experts * p.in;
    weights.set(p.key, {
      weightKey: p.key, codeDtype: 'BF16', scaleKey: p.scalesKey, scaleDtype: 'F32', rows, cols: p.out,
      blockRows: rows, blockCols: p.out, scales: Float64Array.of(1),
    });
  }
  // The parameter takes its blocks' place; its scales are no tensor of the view.
  const view = viewReplacing(base, new Map(params.map((p) => [p.blocksKey, viewTensor(base, p)])), new Set(params.map((p) => p.scalesKey)));
  return { base: view, scaled: { kind: 'mxfp4', rule: 'dequantize-only', writtenAs: 'BF16', weights, unread: [] } };
}

/**
 * Scale bytes whose values are NaN or past bf16's range in transformers' tensor: 255 (E8M0's NaN)
 * and those where the largest code, 6, times 2^(s − 127) passes bf16's largest value. A block with
 * one is refused before it is decoded.
 */
const BAD_SCALE = Uint8Array.from({ length: 256 }, (_, scale) => (scale === 255 || E2M1[7] * 2 ** (scale - 127) > BF16_MAX ? 1 : 0));

/**
 * Values [from, to) of one expert's (in, out) matrix into `dst` from `at`: whole rows by
 * row-decoders.ts' `mxfp4` (on `decodeOn`'s threads where they take them: an even `out`, as
 * gpt-oss's, and a destination on a 4-byte boundary), a row the range cuts through into a row of
 * its own, decoded here.
 */
async function decodeValues(p: Mxfp4Parameter, source: RowSource, from: number, to: number, dst: Uint16Array, at: number, decodeOn?: RowDecodeRunner): Promise<void> {
  for (let v = from; v < to;) {
    const i = Math.floor(v / p.out);
    const rowStart = i * p.out;
    if (v === rowStart && to >= rowStart + p.out) {
      const rows = Math.floor((to - v) / p.out);
      const r0 = source.firstRow + i, r1 = r0 + rows;
      const place = at + v - from;
      const words = p.out % 2 === 0 && (dst.byteOffset + place * 2) % 4 === 0 ? new Float32Array(dst.buffer, dst.byteOffset + place * 2, (rows * p.out) / 2) : undefined;
      // The threads decode into `words` itself (a RowDecodeRunner writes into the array it is given).
      if (!(words && (await decodeOn?.(source, r0, r1, words)))) mxfp4ExpertRows(source, r0, r1, dst, place);
      v += rows * p.out;
    } else {
      const row = new Uint16Array(p.out);
      mxfp4ExpertRows(source, source.firstRow + i, source.firstRow + i + 1, row, 0);
      const n = Math.min(rowStart + p.out, to) - v;
      dst.set(row.subarray(v - rowStart, v - rowStart + n), at + v - from);
      v += n;
    }
  }
}

/**
 * The parameter (E, in, out) as bf16, a row range at a time. Row r is input r mod `in` of expert
 * ⌊r / in⌋: a column of the stored (out, in) expert, so an expert's blocks and scales are read
 * whole (`in`·`out`/2 + `out`·`in`/32 bytes, about 8.8 MB for gpt-oss's gate_up_proj) when a
 * slab first needs them, checked, and kept as one row source until a slab ends the expert, as the
 * merge reads in order (the CPU backend's threads get its arrays once); each read decodes its rows
 * straight into the bytes it returns (the slab memory offered, where it is). No tensor is ever
 * read or decoded whole.
 */
function viewTensor(base: SafetensorsBaseModel, p: Mxfp4Parameter): ViewTensor {
  const rowBytes = p.out * 2;
  const expertValues = p.in * p.out;
  const expertBlockBytes = p.out * p.groups * 16;
  const expertScaleBytes = p.out * p.groups;
  let cached: { expert: number; source: RowSource } | undefined;
  const load = async (e: number): Promise<RowSource> => {
    if (cached?.expert === e) return cached.source;
    const [blocks, scales] = await Promise.all([
      base.readPart(p.blocksKey, e * expertBlockBytes, expertBlockBytes),
      base.readPart(p.scalesKey, e * expertScaleBytes, expertScaleBytes),
    ]);
    for (let j = 0; j < scales.length; j++) if (BAD_SCALE[scales[j]] && badBlock(p, blocks, scales[j], j)) throw await badParameter(base, p);
    const source: RowSource = {
      // Two bf16 values a word of the decoder's output (used only where `out` is even).
      name: p.key, decoder: 'mxfp4', cols: p.out >> 1, firstRow: e * p.in,
      arrays: { blocks: sourceBytes(blocks), scales: sourceBytes(scales) }, params: { out: p.out, groups: p.groups },
    };
    cached = { expert: e, source };
    return source;
  };
  return {
    name: p.key, dtype: 'BF16', shape: [p.experts, p.in, p.out], decodedFrom: p.decodedFrom, byteLength: p.experts * p.in * rowBytes,
    async readPart(start, length, into, decodeOn) {
      if (start % 2 !== 0 || length % 2 !== 0) throw new RangeError(`${p.key}: bytes ${start}+${length} are not whole bf16 values`);
      const bytes = into?.byteLength === length && into.byteOffset % 2 === 0 ? into : new Uint8Array(length);
      const out = new Uint16Array(bytes.buffer, bytes.byteOffset, length / 2);
      const end = (start + length) / 2;
      let at = start / 2;
      while (at < end) {
        const e = Math.floor(at / expertValues);
        const source = await load(e);
        const from = at - e * expertValues;
        const to = Math.min(expertValues, end - e * expertValues);
        await decodeValues(p, source, from, to, out, at - start / 2, decodeOn);
        at += to - from;
        // The read reached the expert's end, its last (the merge reads in order): held no longer.
        if (to === expertValues) cached = undefined;
      }
      return bytes;
    },
  };
}

/**
 * Does the block at `j` (an expert's scale index, o·groups + g) hold a value transformers cannot
 * decode: its scale byte 255 (E8M0's NaN: transformers' ldexp multiplies by a float32 2^128, Inf,
 * so its codes become Inf and its zeros NaN), or a code whose value passes bf16's range?
 */
function badBlock(p: Mxfp4Parameter, blocks: Uint8Array, scale: number, j: number): boolean {
  if (scale === 255) return true;
  for (let k = 0; k < 32; k++) if (E2M1[codeAt(blocks, j, k) & 7] * 2 ** (scale - 127) > BF16_MAX) return true;
  return false;
}

/** Code k (0…31) of the block at `j` of an expert's blocks: code 2k in the low nibble of byte k. */
function codeAt(blocks: Uint8Array, j: number, k: number): number {
  const byte = blocks[j * 16 + (k >> 1)];
  return k & 1 ? byte >> 4 : byte & 0x0f;
}

/**
 * The refusal of a parameter a block of which transformers cannot decode (see {@link badBlock}),
 * met where an expert is read: its scales read again whole (and the blocks of experts with a scale
 * past bf16's range), so that it names how many scale bytes 255 the parameter holds, or else how
 * many values past bf16's range, with the first and the last, not the first met alone.
 */
async function badParameter(base: SafetensorsBaseModel, p: Mxfp4Parameter): Promise<MergeError> {
  const expertScales = p.out * p.groups;
  const at = (i: number) => `[${Math.floor(i / expertScales)}, ${Math.floor((i % expertScales) / p.groups)}, ${i % p.groups}]`;
  const nan = noBad();
  const experts = new Set<number>();
  await eachRowPiece((start, length) => base.readPart(p.scalesKey, start, length), p.experts * p.out, p.groups, (bytes, r0) => {
    for (let j = 0; j < bytes.length; j++) {
      const i = r0 * p.groups + j;
      if (bytes[j] === 255) countBad(nan, i);
      else if (BAD_SCALE[bytes[j]]) experts.add(Math.floor(i / expertScales));
    }
  });
  if (nan.count === 1) return new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${p.scalesKey}" holds 255 (E8M0's NaN) at ${at(nan.first)}; transformers would decode its block to Inf, and its zero codes to NaN`);
  if (nan.count > 1) {
    return new MergeError('UNSUPPORTED_FORMAT', `${base.name}: tensor "${p.scalesKey}" holds ${nan.count} scales 255 (E8M0's NaN) (first at ${at(nan.first)}, last at ${at(nan.last)}); transformers would decode their blocks to Inf, and their zero codes to NaN`);
  }
  // Values past bf16's range, by their place in the parameter (E, in, out): [e, input, output].
  let count = 0, first = Infinity, last = -1, firstText = '', lastText = '';
  for (const e of [...experts].sort((a, b) => a - b)) {
    const [blocks, scales] = await Promise.all([
      base.readPart(p.blocksKey, e * expertScales * 16, expertScales * 16),
      base.readPart(p.scalesKey, e * expertScales, expertScales),
    ]);
    for (let j = 0; j < scales.length; j++) {
      if (!BAD_SCALE[scales[j]]) continue;
      const o = Math.floor(j / p.groups), g = j % p.groups;
      for (let k = 0; k < 32; k++) {
        const magnitude = E2M1[codeAt(blocks, j, k) & 7];
        if (magnitude * 2 ** (scales[j] - 127) <= BF16_MAX) continue;
        const flat = (e * p.in + g * 32 + k) * p.out + o;
        const text = `${p.key}[${e}, ${g * 32 + k}, ${o}] = ${magnitude}·2^${scales[j] - 127}`;
        count++;
        if (flat < first) [first, firstText] = [flat, text];
        if (flat > last) [last, lastText] = [flat, text];
      }
    }
  }
  if (count === 1) return new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${firstText} overflows bf16 (transformers would decode it to Inf)`);
  return new MergeError('UNSUPPORTED_FORMAT', `${base.name}: ${p.key} holds ${count} values that overflow bf16 (first ${firstText}, last ${lastText}); transformers would decode them to Inf`);
}
