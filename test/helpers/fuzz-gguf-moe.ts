/**
 * The thread fuzzer's GGUF worlds added after the llama layers (fuzz-threads.test.ts draws them by
 * a count and a stream of their own, FUZZ_THREAD_GGUF_RUNS, so that a seed's earlier cases stay
 * what they were):
 *   - `gguf-moe`: one mixture-of-experts block whose experts are stacked 3-D tensors
 *     `blk.0.ffn_{gate,up,down}_exps.weight` (ne [in, out, experts], experts stacked as rows), of a
 *     quantized type, an IQ type (IQ4_NL, IQ4_XS, IQ3_S, IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M),
 *     or llama-quantize's Q4_K_M mix for one
 *     block (gate and up Q4_K, down Q6_K: its `use_more_bits` gives the last block's ffn_down
 *     Q6_K), with the F32 router `ffn_gate_inp`; the adapter is one of those the README merges onto
 *     them: a PEFT LoRA on per-expert modules (Mixtral's `block_sparse_moe.experts.K.w1`/`w3`/`w2`
 *     on a `llama` GGUF, Qwen3-MoE's `mlp.experts.K.gate_proj`/`up_proj`/`down_proj` on a
 *     `qwen3moe` one, some experts only), a PEFT `target_parameters` LoRA on transformers 5's fused
 *     Qwen3-MoE experts (`mlp.experts.gate_up_proj` (E, 2·ffn, hidden), gate rows then up rows,
 *     `down_proj`), or a llama.cpp LoRA GGUF with 3-D factors (lora_a ne [in, r, E], lora_b ne
 *     [r, out, E]); sometimes `--dtype` (a quantized, IQ, f16 or bf16 type, merged-only or not)
 *     and sometimes `--imatrix` with one entry per expert (`in_sum2` ne [in, E], `counts` ne [1, E]),
 *     then now and then `--dtype` of a type llama-quantize writes only with one (IQ1_S, IQ1_M,
 *     IQ2_XXS, IQ2_XS, IQ2_S; IQ4_NL, weighted, for rows not of whole 256-value blocks). A merged
 *     tensor of those types is written in its type with the imatrix (which then has its entry), as
 *     F16 without one (export-lora's rule);
 *   - `gguf-retype`: the same files, always with `--dtype`, drawn among the IQ types, f16 and bf16;
 *   - `gguf-imatrix-dat`: the llama layer world's `--imatrix` cases (fuzz-gguf-layers.ts) with the
 *     importance matrix in llama-imatrix's legacy `.dat` format instead of its GGUF.
 * The truth, in float64 here: expert e of a tensor gets ΔW_e on rows [e·out, (e + 1)·out):
 *   - per-expert PEFT: s·B·A of module `experts.e.<proj>` (s = α / r);
 *   - fused `target_parameters` (PEFT ≥ 0.19, experts stored (E, out, in)): A (r·E, in) grouped by
 *     expert, B (out, r·E) interleaved: ΔW_e[o, i] = s·Σ_k B[o, k·E + e]·A[e·r + k, i]; gate_up's
 *     rows [0, ffn) are gate's, [ffn, 2·ffn) up's (transformers' chunk(2));
 *   - llama.cpp LoRA: s·B_e·A_e with s = adapter.lora.alpha / r (ggml_mul_mat_id, slice e);
 * and each written tensor is then the reference quantizer of its type (ggml-reference.ts,
 * ggml-imatrix-reference.ts, ggml-iq4-reference.ts, ggml-iq3s-reference.ts: transcriptions of
 * ggml's C written for the tests; for IQ3_XXS and the IQ1 and IQ2 types loramerge's codecs, which
 * their codec tests hold to ggml's own blocks, see iqSearch) on W' rounded to f32, weighted by expert e's importance for
 * expert e's rows (W of every IQ base decoded by ggml-iq-decode-reference.ts or the IQ4/IQ3_S references); f16 and bf16 outputs within half an ulp of W' (W exactly where unchanged).
 * Hostile changes: a block's f16 d made NaN or ±Inf (refused where the tensor is decoded, copied
 * as stored where not), the file ending inside a tensor, a wrong expert count (the file's
 * `<arch>.expert_count` not the tensors', or an adapter for more experts than the file holds),
 * the merged tensor's imatrix entry of the wrong length (one value short, or one expert short), a
 * huge ΔW.
 */
import { buildSafetensors, roundForDType, seededRandom, f16BitsFromF64, type FixtureTensor } from './fixtures.js';
import { buildGguf, readGguf, tensorValues, type FixtureTensor as GgufTensor, type MetaValue } from './gguf-builder.js';
import { REF_BLOCK, q6_K, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './ggml-reference.js';
import { affineRow, legacyRow, q2KBlock, q3KBlock, scaleMinKBlock } from './ggml-imatrix-reference.js';
import { dequantizeIq4NlBlock, dequantizeIq4XsBlock, quantizeIq4NlBlock, quantizeIq4XsBlock } from './ggml-iq4-reference.js';
import { dequantizeIq3sBlock, quantizeIq3sBlock } from './ggml-iq3s-reference.js';
import { referenceIqBlock } from './ggml-iq-decode-reference.js';
import { blockCodec } from '../../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../../src/formats/gguf/ggml-types.js';
import { ggufMoeLoraAdapter } from './gguf-models.js';
import type { Draw, RequantCase, RequantHostility } from './fuzz-requant-worlds.js';
import { ggufLayerCase } from './fuzz-gguf-layers.js';

export const GGUF_MORE_FORMATS = ['gguf-moe', 'gguf-retype', 'gguf-imatrix-dat'] as const;
export type GgufMoreFormat = (typeof GGUF_MORE_FORMATS)[number];

/** The IQ types whose quantizers are ggml's grid searches: IQ3_XXS, and those written only with an imatrix. */
type IqSearch = 'IQ1_S' | 'IQ1_M' | 'IQ2_XXS' | 'IQ2_XS' | 'IQ2_S' | 'IQ3_XXS';
type QType = RefType | 'IQ4_NL' | 'IQ4_XS' | 'IQ3_S' | IqSearch;
type OutType = QType | 'F16' | 'BF16';

const F = Math.fround;

/** Per quantized type: block size and bytes, ggml's type id, byte offsets of its f16 scales, its reference codec. */
const Q: Record<QType, { size: number; bytes: number; id: number; halves: number[]; dequantize(b: Uint8Array): number[]; quantize(x: Float32Array, qw?: Float32Array): Uint8Array }> = {
  ...(Object.fromEntries((['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const).map((t) => [t, {
    ...REF_BLOCK[t],
    id: { Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14 }[t],
    halves: { Q8_0: [0], Q4_0: [0], Q5_0: [0], Q4_1: [0, 2], Q5_1: [0, 2], Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] }[t],
    dequantize: (b: Uint8Array) => referenceDequantizeBlock(t, b),
    quantize: (x: Float32Array, qw?: Float32Array) => {
      if (!qw || t === 'Q8_0') return referenceQuantizeBlock(t, x);
      const xs = Array.from(x), ws = Array.from(qw);
      if (t === 'Q4_0' || t === 'Q5_0') return legacyRow(x, qw, t === 'Q4_0' ? 4 : 5);
      if (t === 'Q4_1' || t === 'Q5_1') return affineRow(x, qw, t === 'Q4_1' ? 4 : 5);
      return t === 'Q2_K' ? q2KBlock(xs, ws) : t === 'Q3_K' ? q3KBlock(xs, ws) : t === 'Q6_K' ? q6_K(xs, ws) : scaleMinKBlock(xs, ws, t === 'Q4_K' ? 4 : 5);
    },
  }])) as Record<RefType, never>),
  IQ4_NL: { size: 32, bytes: 18, id: 20, halves: [0], dequantize: dequantizeIq4NlBlock, quantize: (x, qw) => quantizeIq4NlBlock(x, qw) },
  IQ4_XS: { size: 256, bytes: 136, id: 23, halves: [0], dequantize: dequantizeIq4XsBlock, quantize: (x, qw) => quantizeIq4XsBlock(x, qw) },
  IQ3_S: { size: 256, bytes: 110, id: 21, halves: [0], dequantize: dequantizeIq3sBlock, quantize: (x, qw) => quantizeIq3sBlock(x, qw) },
  IQ3_XXS: iqSearch('IQ3_XXS', 18),
  IQ2_XXS: iqSearch('IQ2_XXS', 16),
  IQ2_XS: iqSearch('IQ2_XS', 17),
  IQ2_S: iqSearch('IQ2_S', 22),
  IQ1_S: iqSearch('IQ1_S', 19),
  IQ1_M: iqSearch('IQ1_M', 29),
};
/**
 * An IQ type of ggml's grid searches: decoded by the plain reading of its layout
 * (ggml-iq-decode-reference.ts); quantized by loramerge's codec, which gguf-iq1-codecs,
 * gguf-iq2-codecs and gguf-iq3-codecs.test.ts hold to ggml's own blocks (golden files made by its
 * C), block for block with importance weights and without: here the fuzzer checks what reaches the
 * quantizer (W' of each row, the expert's weights, the type and its fallback) and what the threads
 * make of it. IQ1_M has no f16 d of its own: its bits are the top nibbles of the four scale words.
 */
function iqSearch(t: IqSearch, id: number): (typeof Q)[QType] {
  const type = ggmlTypeByName(t)!;
  return {
    size: 256, bytes: type.blockBytes, id, halves: t === 'IQ1_M' ? [] : [0],
    dequantize: (b) => referenceIqBlock(t, b, 256),
    quantize: (x, qw) => {
      const codec = blockCodec(type)!, out = new Uint8Array(type.blockBytes);
      if (qw) codec.encodeWeighted!(x, out, qw);
      else codec.encode(x, out);
      return out;
    },
  };
}
/** Types llama-quantize writes only with an importance matrix (IQ3_XXS is written without one too). */
const WEIGHTED_ONLY: ReadonlySet<OutType> = new Set<OutType>(['IQ1_S', 'IQ1_M', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S']);
/** A block's f16 d set to `bits` (IQ1_M: the top nibbles of its four scale words, low nibble first). */
function setD(type: QType, block: Uint8Array, bits: number): void {
  if (type === 'IQ1_M') {
    for (let k = 0; k < 4; k++) block[49 + 2 * k] = (block[49 + 2 * k] & 0x0f) | (((bits >> (4 * k)) & 15) << 4);
    return;
  }
  for (const at of Q[type].halves) { block[at] = bits & 0xff; block[at + 1] = bits >> 8; }
}
const BASE_TYPES: readonly QType[] = ['Q8_0', 'Q4_0', 'Q5_1', 'Q4_K', 'Q6_K', 'Q3_K', 'IQ4_NL', 'IQ4_XS', 'IQ3_S'];
const DTYPES: readonly OutType[] = ['Q8_0', 'Q4_0', 'Q4_K', 'Q5_K', 'IQ4_NL', 'IQ4_XS', 'IQ3_S', 'F16', 'BF16'];
const RETYPES: readonly OutType[] = ['IQ4_NL', 'IQ4_XS', 'IQ3_S', 'F16', 'BF16'];
/** The grid-search IQ types as bases, drawn by a stream of their own (moeCase). */
const SEARCH_TYPES: readonly IqSearch[] = ['IQ3_XXS', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S', 'IQ1_S', 'IQ1_M'];
/** `--dtype` types drawn only with `--imatrix`. */
const WEIGHTED_DTYPES: readonly OutType[] = ['IQ1_S', 'IQ1_M', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S'];
/** llama-quantize's tensor_type_fallback (llama-quant.cpp) for a row that is not whole blocks. */
const FALLBACK: Partial<Record<QType, QType>> = {
  IQ1_S: 'IQ4_NL', IQ1_M: 'IQ4_NL', IQ2_XXS: 'IQ4_NL', IQ2_XS: 'IQ4_NL', IQ2_S: 'IQ4_NL', IQ3_XXS: 'IQ4_NL',
  IQ3_S: 'IQ4_NL', IQ4_XS: 'IQ4_NL', Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0',
};
const fitting = (t: OutType, cols: number): OutType => (t === 'F16' || t === 'BF16' || cols % Q[t].size === 0 ? t : fitting(FALLBACK[t]!, cols));
const typeId = (t: OutType) => (t === 'F16' ? 1 : t === 'BF16' ? 30 : Q[t].id);

type Proj = 'gate' | 'up' | 'down';
const PROJS: readonly Proj[] = ['gate', 'up', 'down'];
type AdapterKind = 'peft-mixtral' | 'peft-qwen' | 'peft-fused' | 'llama-lora';

/** Random blocks of `type` with f16 scales giving values of about ±0.05; W decoded. */
function randomBlocks(d: Draw, type: QType, n: number): { data: Uint8Array; w: Float64Array } {
  const { size, bytes } = Q[type];
  const data = new Uint8Array((n / size) * bytes);
  const w = new Float64Array(n);
  const one = f16BitsFromF64(1);
  for (let b = 0; b < n / size; b++) {
    const block = data.subarray(b * bytes, (b + 1) * bytes);
    for (let i = 0; i < bytes; i++) block[i] = d.int(0, 255);
    setD(type, block, one);
    const amax = Q[type].dequantize(block).reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
    setD(type, block, f16BitsFromF64((0.02 + 0.06 * d.rand()) / amax));
    w.set(Q[type].dequantize(block), b * size);
  }
  return { data, w };
}

function gaussian(d: Draw): number {
  return Math.sqrt(-2 * Math.log(Math.max(d.rand(), 1e-12))) * Math.cos(2 * Math.PI * d.rand());
}

/** Case `index` of the stream `seed` among `formats`. */
export function ggufMoreCase(seed: number, index: number, formats: readonly GgufMoreFormat[], hostileShare = 0.3, iqType?: IqDrawn): RequantCase {
  const rand = seededRandom((seed * 7919 + index * 104729 + 29) >>> 0);
  const d: Draw = { rand, int: (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)), pick: (xs) => xs[Math.floor(rand() * xs.length)] };
  // The formats in turn (so that the few cases of `npm test` reach each), the rest drawn.
  const format = formats[index % formats.length];
  const hostileKind: RequantHostility | undefined = d.rand() < hostileShare ? d.pick(['nan', 'inf', 'short-stats', 'short-weight', 'wide-weight', 'huge'] as const) : undefined;
  const hostileMerged = d.rand() < 0.7 || hostileKind === 'huge';
  if (format === 'gguf-imatrix-dat') {
    const c = ggufLayerCase(d, seed, index, 'gguf-imatrix', hostileKind, hostileMerged, 'dat');
    return { ...c, format };
  }
  return moeCase(d, seed, index, format, hostileKind, hostileMerged, iqType);
}

/** The grid-search IQ types a seed's few `npm test` cases may never draw: drawn in turn by {@link iqSearchCase}. */
export const IQ_DRAWN = ['IQ1_S', 'IQ1_M', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS'] as const;
export type IqDrawn = (typeof IQ_DRAWN)[number];

/**
 * Case `index` of the stream `seed`: a `gguf-moe` case whose MoE tensors are all of IQ_DRAWN's type
 * number `index` (in turn), or, every other case, whose merge is written in it (`--dtype`; IQ1 and
 * IQ2 with the `--imatrix` llama-quantize needs for them); the rest drawn as the other cases draw it.
 */
export function iqSearchCase(seed: number, index: number): RequantCase {
  const type = IQ_DRAWN[index % IQ_DRAWN.length];
  return ggufMoreCase(seed, index, ['gguf-moe'], 0.3, type);
}

function moeCase(d: Draw, seed: number, index: number, world: 'gguf-moe' | 'gguf-retype', hostileKind: RequantHostility | undefined, hostileMerged: boolean, iqType?: IqDrawn): RequantCase {
  // A forced IQ type: the base's tensors of it on even cases, the written type on odd ones.
  const forceBase = iqType !== undefined && index % 2 === 0 ? iqType : undefined;
  const forceOut = iqType !== undefined && index % 2 === 1 ? iqType : undefined;
  // The grid-search IQ types (IQ3_XXS, IQ2_*, IQ1_*) by a stream of their own, so that a seed's
  // cases that draw none of them stay what they were.
  const iq = seededRandom((seed * 613 + index * 31 + 17) >>> 0);
  const iqPick = <T>(xs: readonly T[]): T => xs[Math.floor(iq() * xs.length)];
  const adapterKind: AdapterKind = d.pick(['peft-mixtral', 'peft-qwen', 'peft-fused', 'llama-lora']);
  const arch = adapterKind === 'peft-qwen' || adapterKind === 'peft-fused' ? 'qwen3moe' : 'llama';
  // Q4_K_M's one-block mix now and then, else one type throughout.
  const mix = !forceBase && d.rand() < 0.2;
  const typeOf: Record<Proj, QType> = mix ? { gate: 'Q4_K', up: 'Q4_K', down: 'Q6_K' } : (() => {
    const drawn = d.pick(BASE_TYPES);
    const t = forceBase ?? (iq() < 0.35 ? iqPick(SEARCH_TYPES) : drawn);
    return { gate: t, up: t, down: t };
  })();
  // A forced written IQ type needs rows of whole 256-value blocks too, or it falls back.
  const big = forceOut !== undefined || [typeOf.gate, typeOf.down].some((t) => Q[t].size === 256);
  // Sizes: each expert tensor's rows whole blocks, just above the pool's floor, at most 256 Ki values.
  let hidden = 0, ffn = 0, experts = 0;
  for (let tries = 0; ; tries++) {
    hidden = big ? 256 : d.pick([128, 160, 192, 256, 288]);
    ffn = big ? d.pick([256, 512]) : d.pick([64, 96, 128, 160, 224]);
    experts = d.pick([2, 3, 4, 6, 8]);
    const n = hidden * ffn * experts;
    if (n > 65536 && n <= 256 * 1024) break;
    if (tries > 1000) throw new Error('no MoE sizes');
  }
  const shape = (p: Proj) => (p === 'down' ? { cols: ffn, out: hidden } : { cols: hidden, out: ffn });
  const name = (p: Proj) => `blk.0.ffn_${p}_exps.weight`;

  // The projections the adapter changes (the fused LoRA: gate and up together through gate_up_proj, and/or down).
  let merged: Proj[];
  if (adapterKind === 'peft-fused') merged = d.pick([['gate', 'up'], ['down'], ['gate', 'up', 'down']] as Proj[][]);
  else merged = PROJS.filter(() => d.rand() < 0.5);
  if (!merged.length) merged = [d.pick(PROJS)];
  // Experts with an update (the fused LoRA and a llama.cpp LoRA change all of them).
  const touched = adapterKind === 'peft-fused' || adapterKind === 'llama-lora' ? Array.from({ length: experts }, (_, e) => e)
    : Array.from({ length: experts }, (_, e) => e).filter(() => d.rand() < 0.6);
  if (!touched.length) touched.push(d.int(0, experts - 1));

  // --dtype and --imatrix.
  let outType: OutType | undefined;
  let mergedOnly = false;
  if (world === 'gguf-retype' || d.rand() < 0.4) {
    outType = d.pick(world === 'gguf-retype' ? RETYPES : DTYPES);
    if (outType !== 'F16' && outType !== 'BF16' && iq() < 0.2) outType = 'IQ3_XXS';
    mergedOnly = d.rand() < 0.4;
  }
  if (forceOut) outType = forceOut;
  const withImatrix = world === 'gguf-moe' && (forceOut ? WEIGHTED_ONLY.has(forceOut) : d.rand() < 0.35) && outType !== undefined && outType !== 'F16' && outType !== 'BF16';
  if (withImatrix && outType) {
    mergedOnly = true;
    // The types written only with an importance matrix, now and then (a row not of whole 256-value
    // blocks falls back to IQ4_NL, weighted).
    if (!forceOut && iq() < 0.4) outType = iqPick(WEIGHTED_DTYPES);
  }

  // Hostile changes of this world.
  const imatrixHostile = withImatrix && hostileKind === 'short-stats';
  const wrongCount = hostileKind === 'wide-weight' ? (d.rand() < 0.5 ? 'metadata' : 'adapter') : undefined;
  const cut = !imatrixHostile && (hostileKind === 'short-stats' || hostileKind === 'short-weight');
  const poison = hostileKind === 'nan' || hostileKind === 'inf' ? hostileKind : undefined;
  const copied = PROJS.filter((p) => !merged.includes(p));
  const hostileProj: Proj = imatrixHostile || wrongCount || !copied.length || hostileMerged ? d.pick(merged) : d.pick(copied);

  const tensors: GgufTensor[] = [
    { name: 'blk.0.ffn_norm.weight', type: 'F32', ne: [hidden], data: new Uint8Array(Float32Array.from({ length: hidden }, () => 1).buffer) },
    { name: 'blk.0.ffn_gate_inp.weight', type: 'F32', ne: [hidden, experts], data: new Uint8Array(Float32Array.from({ length: hidden * experts }, () => F(0.1 * gaussian(d))).buffer) },
  ];
  const w = new Map<Proj, Float64Array>();
  for (const p of PROJS) {
    const { cols, out } = shape(p);
    const blocks = randomBlocks(d, typeOf[p], cols * out * experts);
    w.set(p, blocks.w);
    tensors.push({ name: name(p), type: typeOf[p], ne: [cols, out, experts], data: blocks.data });
  }
  if (poison) {
    const t = tensors.find((x) => x.name === name(hostileProj))!;
    const { bytes, size } = Q[typeOf[hostileProj]];
    const b = d.int(0, t.data.length / bytes - 1);
    const bits = poison === 'nan' ? 0x7e00 : d.rand() < 0.5 ? 0x7c00 : 0xfc00;
    setD(typeOf[hostileProj], t.data.subarray(b * bytes, (b + 1) * bytes), bits);
    // W of that block as ggml decodes it now (NaN or ±Inf where d multiplies a code).
    w.get(hostileProj)!.set(Q[typeOf[hostileProj]].dequantize(t.data.subarray(b * bytes, (b + 1) * bytes)), b * size);
  }
  if (cut) tensors.push(tensors.splice(tensors.findIndex((x) => x.name === name(hostileProj)), 1)[0]);

  // The adapter, and ΔW per merged projection: (experts·out, cols), zero rows for experts left alone.
  const r = d.int(1, 8);
  const alpha = hostileKind === 'huge' ? r * 10 ** d.int(4, 11) : d.pick([r, 2 * r, 16]);
  const s = alpha / r;
  const adapterExperts = wrongCount === 'adapter' ? experts + d.int(1, 2) : experts;
  const delta = new Map<Proj, Float64Array>();
  let adapter: Record<string, Uint8Array | string>;
  const factor = (n: number) => Array.from({ length: n }, () => F(0.3 * (2 * d.rand() - 1)));
  if (adapterKind === 'llama-lora') {
    const targets = merged.map((p) => ({ tensor: name(p).replace(/\.weight$/, ''), in: shape(p).cols, out: shape(p).out, rank: r, aType: d.pick(['F32', 'F16']), bType: 'F32' }));
    const lora = ggufMoeLoraAdapter(targets.map((t) => ({ ...t, tensor: `${t.tensor}.weight` })), alpha, adapterExperts, d.int(1, 2 ** 30));
    adapter = { 'moe-lora.gguf': lora.bytes };
    for (const p of merged) {
      const f = lora.factors.get(name(p))!;
      const { cols, out } = shape(p);
      const dw = new Float64Array(experts * out * cols);
      for (let e = 0; e < Math.min(experts, adapterExperts); e++) for (let o = 0; o < out; o++) for (let i = 0; i < cols; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += f.b[e][o * r + k] * f.a[e][k * cols + i];
        dw[(e * out + o) * cols + i] = s * sum;
      }
      delta.set(p, dw);
    }
  } else if (adapterKind === 'peft-fused') {
    const st: FixtureTensor[] = [];
    const E = adapterExperts;
    const prefix = 'base_model.model.model.layers.0.mlp.experts';
    const targetParameters: string[] = [];
    const fused = (key: string, rows: number, cols: number, lands: { p: Proj; from: number }[]) => {
      const a = factor(r * E * cols), b = factor(rows * r * E);
      st.push({ name: `${key}.lora_A.weight`, dtype: 'F32', shape: [r * E, cols], data: a }, { name: `${key}.lora_B.weight`, dtype: 'F32', shape: [rows, r * E], data: b });
      for (const { p, from } of lands) {
        const { out } = shape(p);
        const dw = new Float64Array(experts * out * cols);
        for (let e = 0; e < Math.min(experts, E); e++) for (let o = 0; o < out; o++) for (let i = 0; i < cols; i++) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += b[(from + o) * r * E + k * E + e] * a[(e * r + k) * cols + i];
          dw[(e * out + o) * cols + i] = s * sum;
        }
        delta.set(p, dw);
      }
    };
    // PEFT's nesting: the first parameter registered (gate_up_proj) is the inner wrapper, under base_layer.
    const both = merged.includes('gate') && merged.includes('down');
    if (merged.includes('gate')) { fused(both ? `${prefix}.base_layer` : prefix, 2 * ffn, hidden, [{ p: 'gate', from: 0 }, { p: 'up', from: ffn }]); targetParameters.push('mlp.experts.gate_up_proj'); }
    if (merged.includes('down')) { fused(prefix, hidden, ffn, [{ p: 'down', from: 0 }]); targetParameters.push('mlp.experts.down_proj'); }
    adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, target_modules: [], target_parameters: targetParameters, peft_version: '0.19.1', bias: 'none', fan_in_fan_out: false }),
      'adapter_model.safetensors': buildSafetensors(st),
    };
  } else {
    const st: FixtureTensor[] = [];
    const module = (p: Proj, e: number) => (adapterKind === 'peft-mixtral' ? `model.layers.0.block_sparse_moe.experts.${e}.${{ gate: 'w1', up: 'w3', down: 'w2' }[p]}` : `model.layers.0.mlp.experts.${e}.${p}_proj`);
    // An adapter for more experts names one past the file's.
    const experts2 = wrongCount === 'adapter' ? [...touched, experts + d.int(0, 1)] : touched;
    for (const p of merged) {
      const { cols, out } = shape(p);
      const dw = new Float64Array(experts * out * cols);
      for (const e of experts2) {
        const a = factor(r * cols), b = factor(out * r);
        st.push({ name: `base_model.model.${module(p, e)}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: a }, { name: `base_model.model.${module(p, e)}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: b });
        if (e >= experts) continue;
        for (let o = 0; o < out; o++) for (let i = 0; i < cols; i++) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * cols + i];
          dw[(e * out + o) * cols + i] = s * sum;
        }
      }
      delta.set(p, dw);
    }
    const targets = [...new Set(merged.map((p) => module(p, 0).slice(module(p, 0).lastIndexOf('.') + 1)))];
    adapter = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, target_modules: targets, bias: 'none', fan_in_fan_out: false }),
      'adapter_model.safetensors': buildSafetensors(st),
    };
  }

  // The importance matrix: one entry per expert of a stacked tensor (llama-imatrix's GGUF).
  const weights = new Map<Proj, Float32Array>();
  let importance: RequantCase['importance'];
  let imatrixWrong = '';
  if (withImatrix) {
    const entries: GgufTensor[] = [];
    // A merged tensor written in a type quantized only with weights must have its entry (llama-quantize
    // stops without it: a refusal the fuzzer keeps for hostile cases).
    const needed = (p: Proj) => merged.includes(p) && WEIGHTED_ONLY.has(fitting(outType ?? typeOf[p], shape(p).cols));
    for (const p of PROJS) {
      if (!(d.rand() < (merged.includes(p) ? 0.85 : 0.4) || needed(p) || (imatrixHostile && p === hostileProj))) continue;
      const { cols } = shape(p);
      const counts = Float32Array.from({ length: experts }, () => d.pick([1, 3, 512, 64000]));
      const sums = Float32Array.from({ length: cols * experts }, (_, j) => F(Math.exp(2 * gaussian(d)) * counts[Math.floor(j / cols)]));
      weights.set(p, Float32Array.from(sums, (v, j) => F(v / counts[Math.floor(j / cols)])));
      let [n0, n1] = [cols, experts];
      if (imatrixHostile && p === hostileProj) {
        // One value short per expert, or one expert short.
        if (d.rand() < 0.5) { n0 = cols - 1; imatrixWrong = `${cols - 1} values per expert`; } else { n1 = experts - 1; imatrixWrong = `${experts - 1} experts`; }
      }
      const sumsOut = new Float32Array(n0 * n1);
      for (let e = 0; e < n1; e++) sumsOut.set(sums.subarray(e * cols, e * cols + n0), e * n0);
      entries.push({ name: `${name(p)}.in_sum2`, type: 'F32', ne: [n0, n1], data: new Uint8Array(sumsOut.buffer) });
      entries.push({ name: `${name(p)}.counts`, type: 'F32', ne: [1, n1], data: new Uint8Array(counts.slice(0, n1).buffer) });
    }
    if (!entries.length) {
      const p = d.pick(PROJS), { cols } = shape(p);
      entries.push({ name: `${name(p)}.in_sum2`, type: 'F32', ne: [cols, experts], data: new Uint8Array(Float32Array.from({ length: cols * experts }, () => 1).buffer) });
      entries.push({ name: `${name(p)}.counts`, type: 'F32', ne: [1, experts], data: new Uint8Array(Float32Array.from({ length: experts }, () => 1).buffer) });
      weights.set(p, Float32Array.from({ length: cols * experts }, () => 1));
    }
    importance = {
      name: 'moe.imatrix.gguf',
      bytes: buildGguf({
        metadata: [
          ['general.type', { type: 'string', value: 'imatrix' }], ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }],
          ['imatrix.chunk_count', { type: 'u32', value: 125 }], ['imatrix.chunk_size', { type: 'u32', value: 512 }],
        ],
        tensors: entries,
      }),
    };
  }

  const u32 = (value: number): MetaValue => ({ type: 'u32', value });
  const declared = wrongCount === 'metadata' ? d.pick([experts - 1, experts + 1, 2 * experts].filter((n) => n >= 1)) : experts;
  let file = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: arch }],
      ['general.name', { type: 'string', value: arch === 'llama' ? 'Tiny Mixtral' : 'Tiny Qwen3 MoE' }],
      [`${arch}.block_count`, u32(1)], [`${arch}.context_length`, u32(4096)], [`${arch}.embedding_length`, u32(hidden)],
      [`${arch}.feed_forward_length`, u32(ffn)], ...(arch === 'qwen3moe' ? [[`${arch}.expert_feed_forward_length`, u32(ffn)] satisfies [string, MetaValue]] : []),
      [`${arch}.attention.head_count`, u32(4)], [`${arch}.attention.head_count_kv`, u32(2)],
      [`${arch}.expert_count`, u32(declared)], [`${arch}.expert_used_count`, u32(Math.min(2, declared))],
      [`${arch}.rope.freq_base`, { type: 'f32', value: 1e6 }], [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-5 }],
      ['general.file_type', u32(mix ? 15 : 7)], ['general.quantization_version', u32(2)],
    ],
    tensors,
  });
  if (cut) {
    const last = tensors[tensors.length - 1];
    file = file.subarray(0, file.length - (32 - (last.data.length % 32)) % 32 - d.int(1, Q[typeOf[hostileProj]].bytes * 3));
  }
  const slabBytes = d.int(65536, 220 * 1024) * 4 + (d.rand() < 0.3 ? d.int(1, 3) : 0);

  /** The type a projection is written in where the merge decodes it (merged, or re-typed by --dtype), else undefined. */
  const writtenType = (p: Proj): OutType | undefined => {
    const cols = shape(p).cols;
    if (merged.includes(p)) {
      // A type written only with weights, where there are none (no --imatrix): F16, as export-lora writes it.
      const t = outType ? fitting(outType, cols) : typeOf[p];
      return WEIGHTED_ONLY.has(t) && !weights.has(p) ? 'F16' : t;
    }
    if (!outType || mergedOnly) return undefined;
    const t = fitting(outType, cols);
    return t === typeOf[p] ? undefined : t;
  };
  const hostileName = name(hostileProj);
  // A NaN or Inf the base holds: refused in a merged tensor (the base is broken) and where --dtype
  // converts it to a type whose blocks cannot hold it; re-typed to f16 or bf16 unmerged, it is kept
  // as it is (README: the way the refusal of the other types points to).
  const hostileType = writtenType(hostileProj);
  const decodedHostile = poison !== undefined && hostileType !== undefined && (merged.includes(hostileProj) || (hostileType !== 'F16' && hostileType !== 'BF16'));
  const mayMerge = hostileKind === 'huge' || (!!poison && !decodedHostile);
  // A wrong expert count refuses every expert module the adapter has (one problem each), in
  // each merged tensor, and a huge ΔW overflows each merged tensor (the refusal names the first
  // met): the refusals name `_exps` tensors, the one made hostile only where it is the one merged.
  const everyMerged = (wrongCount || hostileKind === 'huge') && merged.length > 1;
  const hostile = hostileKind ? { kind: hostileKind, module: everyMerged ? '_exps.weight' : hostileName, mayMerge } : undefined;
  const adapterFile = adapterKind === 'llama-lora' ? 'moe-lora.gguf' : undefined;
  const hostileText = !hostile ? '' : `, hostile: ${cut ? 'file ending inside' : wrongCount === 'metadata' ? `${arch}.expert_count ${declared}` : wrongCount ? `adapter for ${adapterExperts} experts` : imatrixHostile ? `imatrix entry of ${imatrixWrong}` : hostile.kind} in ${hostile.module}`;
  return {
    label: `case ${index} (seed ${seed}): ${arch} MoE GGUF ${world} ${mix ? 'Q4_K_M mix (gate/up Q4_K, down Q6_K)' : typeOf.gate}, ${adapterKind}, merged ${merged.join(' + ')} of experts ${touched.join(',')}/${experts}, hidden ${hidden}, ffn ${ffn}, rank ${r}, alpha ${alpha}${outType ? `, --dtype ${outType.toLowerCase()}${mergedOnly ? ' --dtype-merged-only' : ''}` : ''}${importance ? `, --imatrix (${[...weights.keys()].join(', ')})` : ''}, slab ${slabBytes} B${hostileText}`,
    format: world, files: { 'model.gguf': file }, adapter, output: 'model.gguf', slabBytes, hostile,
    ...(adapterFile ? { adapterFile } : {}),
    ...(outType ? { outDtype: outType.toLowerCase(), ...(mergedOnly ? { dtypeMergedOnly: true } : {}) } : {}),
    ...(importance ? { importance } : {}),
    check(bytes) {
      const written = readGguf(bytes);
      const got = new Map(written.tensors.map((t) => [t.name, t]));
      const names = tensors.map((t) => t.name).sort();
      if ([...got.keys()].sort().join() !== names.join()) return `the file holds ${[...got.keys()].sort().join(', ')}, not ${names.join(', ')}`;
      for (const kept of ['blk.0.ffn_norm.weight', 'blk.0.ffn_gate_inp.weight']) {
        const stored = tensors.find((t) => t.name === kept)!, g = got.get(kept)!;
        if (g.typeId !== 0 || !Buffer.from(g.data.subarray(0, stored.data.length)).equals(Buffer.from(stored.data))) return `${kept} not copied as stored`;
      }
      for (const p of PROJS) {
        const n = name(p);
        const stored = tensors.find((t) => t.name === n)!;
        const g = got.get(n)!;
        const { cols, out } = shape(p);
        if (g.ne.join() !== `${cols},${out},${experts}`) return `${n} has ne ${g.ne}`;
        const outT = writtenType(p);
        if (outT === undefined) {
          if (g.typeId !== Q[typeOf[p]].id || !Buffer.from(g.data.subarray(0, stored.data.length)).equals(Buffer.from(stored.data))) return `${n} not copied as stored (type ${g.typeId})`;
          continue;
        }
        if (g.typeId !== typeId(outT)) return `${n} is type ${g.typeId}, expected ${outT} (${typeId(outT)})`;
        const wv = w.get(p)!;
        const dw = delta.get(p);
        const rows = experts * out;
        if (outT === 'F16' || outT === 'BF16') {
          const values = tensorValues(outT, g.data.subarray(0, rows * cols * 2));
          for (let i = 0; i < rows * cols; i++) {
            const exact = dw ? wv[i] + dw[i] : wv[i];
            const want = roundForDType(exact, outT);
            if (!dw || dw[i] === 0) {
              if (!Object.is(values[i], want) && !(values[i] === 0 && want === 0)) return `${n}[${i}] is ${values[i]}, expected ${want}`;
              continue;
            }
            const e = Math.max(exact === 0 ? -14 : Math.floor(Math.log2(Math.abs(exact))), outT === 'F16' ? -14 : -126);
            const bound = 2 ** (e - (outT === 'F16' ? 10 : 7) - 1) + 2 ** -40 * (Math.abs(wv[i]) + Math.abs(dw[i]));
            if (Number.isFinite(want) ? !(Math.abs(values[i] - exact) <= bound) : values[i] !== want) return `${n}[${i}] is ${values[i]}, expected ${exact} (bound ${bound})`;
          }
          continue;
        }
        const { size, bytes: blockBytes } = Q[outT];
        const rowBytes = (cols / size) * blockBytes;
        const qw = dw ? weights.get(p) : undefined;
        for (let row = 0; row < rows; row++) {
          const x = Float32Array.from({ length: cols }, (_, i) => wv[row * cols + i] + (dw ? dw[row * cols + i] : 0));
          const e = Math.floor(row / out);
          const ws = qw?.subarray(e * cols, (e + 1) * cols);
          const want = quantizeRow(outT, x, ws);
          const have = g.data.subarray(row * rowBytes, (row + 1) * rowBytes);
          if (!Buffer.from(have).equals(Buffer.from(want))) {
            return `${n}: row ${row} (expert ${e}) differs from ggml's ${outT}${ws ? ' (importance-weighted)' : ''} quantization of ${dw ? "W'" : 'W'} (${Buffer.from(have).toString('hex').slice(0, 24)}… vs ${Buffer.from(want).toString('hex').slice(0, 24)}…)`;
          }
        }
      }
      return undefined;
    },
  };
}

/** One row quantized to `type` block by block, weighted where `qw` (one per column) is given (the legacy and affine types quantize the row whole). */
function quantizeRow(type: QType, x: Float32Array, qw: Float32Array | undefined): Uint8Array {
  const { size, bytes } = Q[type];
  if (qw && (type === 'Q4_0' || type === 'Q5_0' || type === 'Q4_1' || type === 'Q5_1')) return Q[type].quantize(x, qw);
  const out = new Uint8Array((x.length / size) * bytes);
  for (let b = 0; b < x.length / size; b++) out.set(Q[type].quantize(x.subarray(b * size, (b + 1) * size), qw?.subarray(b * size, (b + 1) * size)), b * bytes);
  return out;
}
