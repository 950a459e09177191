/**
 * The thread fuzzer's llama GGUF layers (fuzz-requant-worlds.ts draws them): one block of a llama
 * GGUF whose matrices any of a PEFT LoRA's modules may land on (`attn_q`, `attn_k`, `attn_v`,
 * `attn_output`, `ffn_up`, `ffn_gate`, `ffn_down`; sometimes two of them), with GQA head counts and
 * now and then a head size other than hidden / heads (`llama.attention.key_length`, as Mistral Nemo's
 * llama GGUFs have it). Three worlds:
 *   - `gguf-layers`: the merged tensors re-quantized to their own type;
 *   - `gguf-dtype`: `--dtype <type>` (llama-quantize --pure: every matrix in that type, a row that is
 *     not whole blocks of it taking llama-quantize's fallback), or with `--dtype-merged-only` the
 *     merged ones only;
 *   - `gguf-imatrix`: `--imatrix` (a llama-imatrix GGUF: `<name>.in_sum2`, `<name>.counts`), the
 *     merged tensors quantized with importance weights in_sum2 / counts, sometimes with `--dtype
 *     <type> --dtype-merged-only`.
 * The truth, computed here in float64 and quantized by the plain transcriptions of ggml's quantizers
 * (ggml-reference.ts; ggml-imatrix-reference.ts for the weighted ones):
 *   - ΔW of q_proj and k_proj lands on llama.cpp's permuted rows: convert_hf_to_gguf's
 *     LlamaModel.permute reshapes (heads, 2, rows / heads / 2, cols) and swaps axes 1 and 2, q by
 *     the head count and k by the key-value head count, so GGUF row h·2·half + 2i + j holds HF row
 *     h·2·half + j·half + i (written here from the converter, not from src/);
 *   - a merged tensor: the reference quantizer of its written type on W + ΔW (W decoded by ggml's
 *     formula), weighted where the imatrix has its entry and the type's quantizer takes weights
 *     (Q8_0's ignores them);
 *   - a tensor the merge does not change: its bytes as stored, unless `--dtype` (without
 *     merged-only) gives it another type, then that type's reference quantizer on its decoded W;
 *     1-D norms always as stored.
 * The base's blocks are random bytes with f16 scales set so that each block's values are about
 * ±0.05 (no reference quantizer pass is needed to make them); hostile changes as the other GGUF
 * world's: a block's f16 d made NaN or ±Inf, the file ending inside its last tensor, a huge ΔW; in
 * the imatrix world also the merged tensor's entry one value short (refused) or one block of it
 * all zeros (merged with those weights, or refused where ggml's weighted quantizer gives NaN scales).
 */
import { buildGguf, readGguf, type FixtureTensor as GgufTensor, type MetaValue } from './gguf-builder.js';
import { f16BitsFromF64 } from './fixtures.js';
import { REF_BLOCK, q6_K, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './ggml-reference.js';
import { affineRow, legacyRow, q2KBlock, q3KBlock, scaleMinKBlock } from './ggml-imatrix-reference.js';
import { peftLoraOn } from './thread-backends.js';
import type { Draw, RequantCase, RequantHostility } from './fuzz-requant-worlds.js';

export const GGUF_LAYER_FORMATS = ['gguf-layers', 'gguf-dtype', 'gguf-imatrix'] as const;
export type GgufLayerFormat = (typeof GGUF_LAYER_FORMATS)[number];

const TYPES: readonly RefType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];
/** ggml's type ids (ggml.h). */
const TYPE_ID: Record<RefType, number> = { Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14 };
/** llama-quantize's fallback for a row that is not whole blocks of the type (llama-quant.cpp). */
const FALLBACK: Partial<Record<RefType, RefType>> = { Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };
/** Byte offsets of each block's f16 scales (ggml-common.h): d, and dmin / m where the type has one. */
const HALVES: Record<RefType, number[]> = { Q8_0: [0], Q4_0: [0], Q5_0: [0], Q4_1: [0, 2], Q5_1: [0, 2], Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] };

const F = Math.fround;
const L = 'model.layers.0';

/** A llama block's matrices: GGUF name, the HF module, ne = [cols, rows] from the head counts and sizes. */
type Matrix = 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_up' | 'ffn_gate' | 'ffn_down';
const MODULE: Record<Matrix, string> = {
  attn_q: `${L}.self_attn.q_proj`, attn_k: `${L}.self_attn.k_proj`, attn_v: `${L}.self_attn.v_proj`, attn_output: `${L}.self_attn.o_proj`,
  ffn_up: `${L}.mlp.up_proj`, ffn_gate: `${L}.mlp.gate_proj`, ffn_down: `${L}.mlp.down_proj`,
};
const MATRICES = Object.keys(MODULE) as Matrix[];

interface Dims { hidden: number; heads: number; kvHeads: number; headDim: number; ffn: number }

function shapeOf(m: Matrix, s: Dims): { cols: number; rows: number } {
  switch (m) {
    case 'attn_q': return { cols: s.hidden, rows: s.heads * s.headDim };
    case 'attn_k': case 'attn_v': return { cols: s.hidden, rows: s.kvHeads * s.headDim };
    case 'attn_output': return { cols: s.heads * s.headDim, rows: s.hidden };
    case 'ffn_up': case 'ffn_gate': return { cols: s.hidden, rows: s.ffn };
    case 'ffn_down': return { cols: s.ffn, rows: s.hidden };
  }
}

/**
 * The HF row that GGUF row `p` of a permuted q or k holds: LlamaModel.permute views the rows as
 * (heads, 2, half) and writes them as (heads, half, 2).
 */
export function hfRowOfGgufRow(p: number, rows: number, heads: number): number {
  const half = rows / heads / 2;
  const h = Math.floor(p / (2 * half)), r = p % (2 * half);
  return h * 2 * half + (r % 2) * half + Math.floor(r / 2);
}

/** Random blocks of `type` (its codes and sub-block scales any bytes) with f16 scales giving values of about ±0.05; W decoded. */
function randomBlocks(d: Draw, type: RefType, n: number): { data: Uint8Array; w: Float64Array } {
  const { size, bytes } = REF_BLOCK[type];
  const data = new Uint8Array((n / size) * bytes);
  const w = new Float64Array(n);
  const one = f16BitsFromF64(1);
  for (let b = 0; b < n / size; b++) {
    const block = data.subarray(b * bytes, (b + 1) * bytes);
    for (let i = 0; i < bytes; i++) block[i] = d.int(0, 255);
    for (const at of HALVES[type]) { block[at] = one & 0xff; block[at + 1] = one >> 8; }
    // The values are linear in (d, dmin) together: scale both so that the largest is the target.
    const amax = referenceDequantizeBlock(type, block).reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
    const bits = f16BitsFromF64((0.02 + 0.06 * d.rand()) / amax);
    for (const at of HALVES[type]) { block[at] = bits & 0xff; block[at + 1] = bits >> 8; }
    w.set(referenceDequantizeBlock(type, block), b * size);
  }
  return { data, w };
}

/** One row quantized to `type`, with importance weights `qw` (one per column) where given. */
function quantizeRow(type: RefType, x: Float32Array, qw: Float32Array | undefined): Uint8Array {
  const { size, bytes } = REF_BLOCK[type];
  if (qw && type !== 'Q8_0') {
    if (type === 'Q4_0' || type === 'Q5_0') return legacyRow(x, qw, type === 'Q4_0' ? 4 : 5);
    if (type === 'Q4_1' || type === 'Q5_1') return affineRow(x, qw, type === 'Q4_1' ? 4 : 5);
  }
  const out = new Uint8Array((x.length / size) * bytes);
  for (let b = 0; b < x.length / size; b++) {
    const xs = x.subarray(b * size, (b + 1) * size);
    const ws = qw && Array.from(qw.subarray(b * size, (b + 1) * size));
    const block = !ws || type === 'Q8_0' ? referenceQuantizeBlock(type, xs)
      : type === 'Q2_K' ? q2KBlock(Array.from(xs), ws)
        : type === 'Q3_K' ? q3KBlock(Array.from(xs), ws)
          : type === 'Q6_K' ? q6_K(Array.from(xs), ws)
            : scaleMinKBlock(Array.from(xs), ws, type === 'Q4_K' ? 4 : 5);
    out.set(block, b * bytes);
  }
  return out;
}

/** The written type of a tensor of `cols` columns asked to be `type`: it, or llama-quantize's fallback. */
function fittingType(type: RefType, cols: number): RefType {
  return cols % REF_BLOCK[type].size === 0 ? type : fittingType(FALLBACK[type]!, cols);
}

/** Draws the layer's sizes: `target` just above the pool's floor, every quantized matrix's rows whole blocks of `type`. */
function drawDims(d: Draw, type: RefType, present: readonly Matrix[], target: Matrix): Dims {
  const size = REF_BLOCK[type].size;
  for (let tries = 0; ; tries++) {
    const hidden = size === 256 ? d.pick([256, 512]) : d.pick([256, 288, 320, 384, 416, 448, 512]);
    const heads = d.pick([4, 8]);
    // Most often hidden / heads; else a head size of its own (key_length).
    const headDim = d.rand() < 0.6 && (hidden / heads) % 2 === 0 ? hidden / heads : d.pick([32, 48, 64, 80, 96, 128]);
    const kvHeads = heads / d.pick([1, 2, 4]);
    const ffn = size * Math.max(1, Math.round(((2 + d.rand()) * hidden) / size));
    const dims = { hidden, heads, kvHeads, headDim, ffn };
    const { cols, rows } = shapeOf(target, dims);
    // Quantized in the test by the plain reference (about 0.5 s per 64 Ki values of a k-quant): at most 256 Ki values each.
    const fits = present.every((m) => shapeOf(m, dims).cols % size === 0 && shapeOf(m, dims).cols * shapeOf(m, dims).rows <= 256 * 1024);
    if (fits && cols * rows > 65536) return dims;
    if (tries > 1000) throw new Error(`no llama layer of ${type} with ${target} above the pool's floor and ${present.join(', ')} whole blocks`);
  }
}

/**
 * A case of the GGUF layer worlds. `hostileMerged`: the hostile change is in a merged tensor (else
 * in a copied one).
 */
export function ggufLayerCase(d: Draw, seed: number, index: number, world: GgufLayerFormat, hostileKind: RequantHostility | undefined, hostileMerged: boolean, imatrixFormat: 'gguf' | 'dat' = 'gguf'): RequantCase {
  const type = d.pick(TYPES);
  // attn_q and attn_k (permuted) half the time, any other matrix else.
  const target: Matrix = d.rand() < 0.5 ? d.pick(['attn_q', 'attn_k'] as const) : d.pick(MATRICES);
  const partner: Matrix = d.pick(MATRICES.filter((m) => m !== target));
  const dims = drawDims(d, type, [target, partner], target);
  // Both merged where their inputs are the same width (one adapter, one `cols`), now and then (not
  // with a huge ΔW, whose refusal names the one tensor made hostile).
  const merged: Matrix[] = shapeOf(partner, dims).cols === shapeOf(target, dims).cols && d.rand() < 0.35 && hostileKind !== 'huge' ? [target, partner] : [target];
  const cols = shapeOf(target, dims).cols;

  // --dtype (and merged-only), --imatrix.
  let outType: RefType | undefined;
  let mergedOnly = false;
  if (world === 'gguf-dtype' || (world === 'gguf-imatrix' && d.rand() < 0.4)) {
    outType = d.pick(TYPES);
    // With an importance matrix, converting unmerged tensors is refused: merged-only.
    mergedOnly = world === 'gguf-imatrix' || d.rand() < 0.4;
  }
  const weights = new Map<Matrix, Float32Array>();
  let importance: RequantCase['importance'];
  /**
   * The imatrix world's own hostile changes, in place of a short or wide weight: the merged
   * tensor's entry one value short (refused: llama-quantize stops on it), or one block of it all
   * zeros (in_sum2 of a column no token reached: ggml's weighted k-quants then write NaN scales,
   * which llama-quantize refuses; the others quantize, with those weights).
   */
  const imatrixHostility = world !== 'gguf-imatrix' ? undefined : hostileKind === 'short-stats' ? 'short entry' : hostileKind === 'wide-weight' ? 'zero block of weights' : undefined;
  if (world === 'gguf-imatrix') {
    const entries: { name: string; sums: Float32Array; count: number }[] = [];
    for (const m of [target, partner]) {
      if (d.rand() < (merged.includes(m) ? 0.85 : 0.5) || (imatrixHostility && m === target)) {
        const n = shapeOf(m, dims).cols;
        const count = d.pick([1, 7, 125 * 512]);
        // Mean squared activations spread over orders of magnitude, summed over `count` calls.
        const sums = Float32Array.from({ length: n }, () => Math.exp(2 * gaussian(d)) * count);
        entries.push({ name: `blk.0.${m}.weight`, sums, count });
        weights.set(m, Float32Array.from(sums, (s) => F(s / count)));
      }
    }
    // llama-imatrix writes at least one entry: the partner's where the draw gave none.
    if (!entries.length) {
      const n = shapeOf(partner, dims).cols;
      const sums = Float32Array.from({ length: n }, () => Math.exp(2 * gaussian(d)));
      entries.push({ name: `blk.0.${partner}.weight`, sums, count: 1 });
      weights.set(partner, sums);
    }
    const own = entries.find((e) => e.name === `blk.0.${target}.weight`);
    if (imatrixHostility === 'short entry') own!.sums = own!.sums.slice(0, own!.sums.length - 1);
    else if (imatrixHostility) {
      const size = REF_BLOCK[outType ? fittingType(outType, cols) : type].size;
      const at = size * d.int(0, cols / size - 1);
      own!.sums.fill(0, at, at + size);
      weights.set(target, Float32Array.from(own!.sums, (v) => F(v / own!.count)));
    }
    importance = imatrixFormat === 'dat' ? { name: 'imatrix.dat', bytes: imatrixDat(entries) } : { name: 'model.imatrix.gguf', bytes: imatrixGguf(entries) };
  }

  const tensors: GgufTensor[] = [
    { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [dims.hidden], data: new Uint8Array(Float32Array.from({ length: dims.hidden }, () => 1).buffer) },
  ];
  const w = new Map<Matrix, Float64Array>();
  for (const m of [target, partner]) {
    const { cols: c, rows } = shapeOf(m, dims);
    const blocks = randomBlocks(d, type, rows * c);
    w.set(m, blocks.w);
    tensors.push({ name: `blk.0.${m}.weight`, type, ne: [c, rows], data: blocks.data });
  }
  const hostileMatrix = imatrixHostility ? target : hostileMerged ? d.pick(merged) : d.pick([target, partner].filter((m) => !merged.includes(m)).concat(merged.length === 2 ? merged : []));
  const hostileName = `blk.0.${hostileMatrix}.weight`;
  let cut = false;
  if (hostileKind === 'nan' || hostileKind === 'inf') {
    const t = tensors.find((x) => x.name === hostileName)!;
    const { bytes } = REF_BLOCK[type];
    const at = d.int(0, t.data.length / bytes - 1) * bytes + HALVES[type][0];
    const bits = hostileKind === 'nan' ? 0x7e00 : d.rand() < 0.5 ? 0x7c00 : 0xfc00;
    t.data[at] = bits & 0xff;
    t.data[at + 1] = bits >> 8;
  } else if (hostileKind && hostileKind !== 'huge' && !imatrixHostility) cut = true;
  // The tensor made hostile goes last, so that the file can end inside its data.
  if (cut) tensors.push(tensors.splice(tensors.findIndex((x) => x.name === hostileName), 1)[0]);

  const r = d.int(1, 16);
  const alpha = hostileKind === 'huge' ? r * 10 ** d.int(4, 11) : d.pick([r, 2 * r, 16, 32]);
  const lora = peftLoraOn(Object.fromEntries(merged.map((m) => [MODULE[m], shapeOf(m, dims).rows])), cols, r, alpha, d.rand);

  const ownHeadDim = dims.headDim !== dims.hidden / dims.heads || d.rand() < 0.2;
  let file = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['general.name', { type: 'string', value: 'Tiny Llama' }],
      ['llama.block_count', { type: 'u32', value: 1 }],
      ['llama.context_length', { type: 'u32', value: 2048 }],
      ['llama.embedding_length', { type: 'u32', value: dims.hidden }],
      ['llama.feed_forward_length', { type: 'u32', value: dims.ffn }],
      ['llama.attention.head_count', { type: 'u32', value: dims.heads }],
      ['llama.attention.head_count_kv', { type: 'u32', value: dims.kvHeads }],
      ...(ownHeadDim ? [
        ['llama.attention.key_length', { type: 'u32', value: dims.headDim }],
        ['llama.attention.value_length', { type: 'u32', value: dims.headDim }],
      ] satisfies [string, MetaValue][] : []),
      ['llama.rope.freq_base', { type: 'f32', value: 500000 }],
      ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
      ['general.quantization_version', { type: 'u32', value: 2 }],
    ],
    tensors,
  });
  if (cut) file = file.subarray(0, file.length - (32 - (tensors[tensors.length - 1].data.length % 32)) % 32 - d.int(1, REF_BLOCK[type].bytes * 3));
  const slabBytes = d.int(65536, 220 * 1024) * 4 + (d.rand() < 0.3 ? d.int(1, 3) : 0);

  /** Whether the tensor is decoded by the merge: merged, or converted by --dtype to another type. */
  const convertedType = (m: Matrix): RefType | undefined => {
    const c = shapeOf(m, dims).cols;
    if (merged.includes(m)) return outType ? fittingType(outType, c) : type;
    if (!outType || mergedOnly) return undefined;
    const t = fittingType(outType, c);
    // llama-quantize leaves a tensor already of the type as it is.
    return t === type ? undefined : t;
  };
  const hostileDecoded = !cut && hostileKind !== 'huge' && hostileKind !== undefined && convertedType(hostileMatrix) !== undefined;
  const mayMerge = imatrixHostility ? imatrixHostility !== 'short entry' : hostileKind === 'huge' || (!cut && !hostileDecoded);
  const hostile = hostileKind ? { kind: hostileKind, module: hostileName, mayMerge } : undefined;
  const headsText = `${dims.heads} heads, ${dims.kvHeads} kv, head ${dims.headDim}${ownHeadDim ? ' (key_length)' : ''}`;
  const options = `${outType ? `, --dtype ${outType.toLowerCase()}${mergedOnly ? ' --dtype-merged-only' : ''}` : ''}${importance ? `, --imatrix ${importance.name} (${[...weights.keys()].join(', ') || 'no entry of these'})` : ''}`;
  return {
    label: `case ${index} (seed ${seed}): llama GGUF ${type} ${world}, merged ${merged.join(' + ')}, also ${merged.length === 2 ? 'attn_norm' : partner}, hidden ${dims.hidden}, ffn ${dims.ffn}, ${headsText}, rank ${r}${options}, slab ${slabBytes} B${hostile ? `, hostile: ${cut ? 'file ending inside' : imatrixHostility ? `imatrix ${imatrixHostility}` : hostile.kind} in ${hostile.module}` : ''}`,
    format: world, files: { 'model.gguf': file }, adapter: lora.files, output: 'model.gguf', slabBytes, hostile,
    ...(outType ? { outDtype: outType.toLowerCase(), ...(mergedOnly ? { dtypeMergedOnly: true } : {}) } : {}),
    ...(importance ? { importance } : {}),
    check(bytes) {
      const written = readGguf(bytes);
      const got = new Map(written.tensors.map((t) => [t.name, t]));
      const names = tensors.map((t) => t.name).sort();
      if ([...got.keys()].sort().join() !== names.join()) return `the file holds ${[...got.keys()].sort().join(', ')}, not ${names.join(', ')}`;
      const norm = got.get('blk.0.attn_norm.weight')!;
      if (norm.typeId !== 0 || !Buffer.from(norm.data.subarray(0, tensors[0].data.length)).equals(Buffer.from(tensors[0].data))) return 'blk.0.attn_norm.weight not copied as stored';
      for (const m of [target, partner]) {
        const name = `blk.0.${m}.weight`;
        const stored = tensors.find((t) => t.name === name)!;
        const g = got.get(name)!;
        const { cols: c, rows } = shapeOf(m, dims);
        if (g.ne.join() !== `${c},${rows}`) return `${name} has ne ${g.ne}`;
        const outT = convertedType(m);
        if (outT === undefined) {
          if (g.typeId !== TYPE_ID[type] || !Buffer.from(g.data.subarray(0, stored.data.length)).equals(Buffer.from(stored.data))) return `${name} not copied as stored (type ${g.typeId})`;
          continue;
        }
        if (g.typeId !== TYPE_ID[outT]) return `${name} is type ${g.typeId}, expected ${outT} (${TYPE_ID[outT]})`;
        // W' = W + ΔW, ΔW's rows permuted on q and k as the converter permuted the base's.
        const real = Float64Array.from(w.get(m)!);
        const delta = lora.delta.get(MODULE[m]);
        if (delta) {
          const permuteHeads = m === 'attn_q' ? dims.heads : m === 'attn_k' ? dims.kvHeads : 0;
          for (let p = 0; p < rows; p++) {
            const from = permuteHeads ? hfRowOfGgufRow(p, rows, permuteHeads) : p;
            for (let i = 0; i < c; i++) real[p * c + i] += delta[from * c + i];
          }
        }
        const qw = delta ? weights.get(m) : undefined;
        const rowBytes = (c / REF_BLOCK[outT].size) * REF_BLOCK[outT].bytes;
        for (let p = 0; p < rows; p++) {
          const want = quantizeRow(outT, Float32Array.from(real.subarray(p * c, (p + 1) * c)), qw);
          const have = g.data.subarray(p * rowBytes, (p + 1) * rowBytes);
          if (!Buffer.from(have).equals(Buffer.from(want))) {
            return `${name}: row ${p} differs from ggml's ${outT}${qw ? ' (importance-weighted)' : ''} quantization of ${delta ? "W'" : 'W'} (${Buffer.from(have).toString('hex').slice(0, 24)}… vs ${Buffer.from(want).toString('hex').slice(0, 24)}…)`;
          }
        }
      }
      return undefined;
    },
  };
}

/** A standard normal draw (Box–Muller). */
function gaussian(d: Draw): number {
  return Math.sqrt(-2 * Math.log(Math.max(d.rand(), 1e-12))) * Math.cos(2 * Math.PI * d.rand());
}

/** llama-imatrix's GGUF output: per matrix `<name>.in_sum2` (ne [cols, 1]) and `<name>.counts` (ne [1, 1]), F32, with its imatrix.* metadata. */
function imatrixGguf(entries: readonly { name: string; sums: Float32Array; count: number }[]): Uint8Array {
  return buildGguf({
    metadata: [
      ['general.type', { type: 'string', value: 'imatrix' }],
      ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }],
      ['imatrix.chunk_count', { type: 'u32', value: 125 }],
      ['imatrix.chunk_size', { type: 'u32', value: 512 }],
    ],
    tensors: entries.flatMap((e) => [
      { name: `${e.name}.in_sum2`, type: 'F32', ne: [e.sums.length, 1], data: new Uint8Array(e.sums.buffer.slice(0)) },
      { name: `${e.name}.counts`, type: 'F32', ne: [1, 1], data: new Uint8Array(Float32Array.of(e.count).buffer) },
    ]),
  });
}

/**
 * llama-imatrix's legacy `.dat` (its save_imatrix before the GGUF format, as llama-quantize's
 * load_imatrix still reads it): i32 entry count; per entry i32 name length, the name, i32 ncall,
 * i32 nval and nval f32 sums (weight = sum / ncall); then i32 chunk count, i32 dataset name
 * length and the name. All little-endian.
 */
function imatrixDat(entries: readonly { name: string; sums: Float32Array; count: number }[]): Uint8Array {
  const utf8 = new TextEncoder();
  const dataset = utf8.encode('calibration_datav3.txt');
  const parts: number[] = [];
  const i32 = (v: number) => { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); parts.push(...b); };
  i32(entries.length);
  for (const e of entries) {
    const name = utf8.encode(e.name);
    i32(name.length);
    parts.push(...name);
    i32(e.count);
    i32(e.sums.length);
    parts.push(...new Uint8Array(e.sums.buffer.slice(0)));
  }
  i32(125);
  i32(dataset.length);
  parts.push(...dataset);
  return Uint8Array.from(parts);
}
