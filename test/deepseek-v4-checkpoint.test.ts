/**
 * DeepSeek-V4 as deepseek-ai/DeepSeek-V4-Flash ships it, scaled down: DeepSeek's own tensor names
 * (`layers.N.attn.wq_a`, `ffn.experts.K.w1`, `embed`, `head`, `mtp.0.…`), block-wise fp8 attention
 * and shared expert with F8_E8M0 `.scale` grids (128 × 128, `scale_fmt: "ue8m0"`), routed experts
 * as packed FP4 (I8 (out, in/2), two E2M1 codes a byte, low nibble first) with an F8_E8M0 scale per
 * 32 inputs (`expert_dtype: "fp4"`). PEFT adapters in transformers 5's DeepseekV4ForCausalLM names
 * land on them, merged in real values against float64 truth and written back in the checkpoint's
 * format (each block's or group's scale recomputed as DeepSeek's kernels compute them), or
 * dequantized with --dtype; untouched tensors copied byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { decodeValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { hfModelFolder, peftFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { fp8CheckpointFixtures, mergeRaw, rawTensors } from './helpers/fp8-checkpoint-fixtures.js';
import { fp4QuantizeTruth, fp4Value } from './helpers/deepseek-fp4-truth.js';
import { log2Ceil, quantizeUe8m0Blocks } from './helpers/deepseek-ue8m0-truth.js';

const rand = seededRandom(4404);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());
const merge = (prepared: PreparedMerge, outDtype?: 'BF16' | 'F32') => mergeRaw(prepared, backend, outDtype);

const HIDDEN = 256, Q_RANK = 192, KV = 64, VOCAB = 16, E = 2, INTER = 64, r = 2;
const e8m0 = (byte: number) => 2 ** (byte - 127);

/** A plain raw tensor (dtypes the fixtures do not encode are given as bytes). */
const raw = (name: string, dtype: string, shape: number[], data: Uint8Array): FixtureTensor => ({ name, dtype: dtype as FixtureDType, shape, data });
const randomBytes = (n: number, pick: () => number) => Uint8Array.from({ length: n }, pick);
const { e4m3Code, bf16 } = fp8CheckpointFixtures(rand);
/** fp8 weight + its (⌈out/128⌉, ⌈in/128⌉) E8M0 grid, scales 2^-10 … 2^-5. */
const fp8 = (stem: string, out: number, inF: number): FixtureTensor[] => [
  raw(`${stem}.weight`, 'F8_E4M3', [out, inF], randomBytes(out * inF, e4m3Code)),
  raw(`${stem}.scale`, 'F8_E8M0', [Math.ceil(out / 128), Math.ceil(inF / 128)], randomBytes(Math.ceil(out / 128) * Math.ceil(inF / 128), () => 117 + Math.floor(rand() * 6))),
];
/** Packed FP4 expert weight (out, in/2) I8 + (out, in/32) E8M0 scales 2^-8 … 2^-4. */
const fp4 = (stem: string, out: number, inF: number): FixtureTensor[] => [
  raw(`${stem}.weight`, 'I8', [out, inF / 2], randomBytes((out * inF) / 2, () => Math.floor(rand() * 256))),
  raw(`${stem}.scale`, 'F8_E8M0', [out, inF / 32], randomBytes((out * inF) / 32, () => 119 + Math.floor(rand() * 5))),
];

const BASE: FixtureTensor[] = [
  bf16('embed.weight', [VOCAB, HIDDEN]),
  bf16('layers.0.attn_norm.weight', [HIDDEN]),
  ...fp8('layers.0.attn.wq_a', Q_RANK, HIDDEN),
  bf16('layers.0.attn.q_norm.weight', [Q_RANK]),
  ...fp8('layers.0.attn.wq_b', HIDDEN, Q_RANK),
  ...fp8('layers.0.attn.wkv', KV, HIDDEN),
  ...fp8('layers.0.attn.indexer.wq_b', 128, Q_RANK),
  { name: 'layers.0.attn.attn_sink', dtype: 'F32', shape: [4], data: [0.5, -1, 2, 0.25] },
  bf16('layers.0.ffn.gate.weight', [E, HIDDEN]),
  { name: 'layers.0.ffn.gate.bias', dtype: 'F32', shape: [E], data: [0.125, -0.5] },
  ...Array.from({ length: E }, (_, e) => [
    ...fp4(`layers.0.ffn.experts.${e}.w1`, INTER, HIDDEN), ...fp4(`layers.0.ffn.experts.${e}.w2`, HIDDEN, INTER), ...fp4(`layers.0.ffn.experts.${e}.w3`, INTER, HIDDEN),
  ]).flat(),
  ...fp8('layers.0.ffn.shared_experts.w1', INTER, HIDDEN), ...fp8('layers.0.ffn.shared_experts.w2', HIDDEN, INTER), ...fp8('layers.0.ffn.shared_experts.w3', INTER, HIDDEN),
  ...fp8('mtp.0.attn.wq_a', Q_RANK, HIDDEN),
  bf16('norm.weight', [HIDDEN]),
  bf16('head.weight', [VOCAB, HIDDEN]),
];
const QUANT = { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] };
const CONFIG = {
  architectures: ['DeepseekV4ForCausalLM'], model_type: 'deepseek_v4', torch_dtype: 'bfloat16', hidden_size: HIDDEN, q_lora_rank: Q_RANK,
  num_hidden_layers: 1, n_routed_experts: E, n_shared_experts: 1, moe_intermediate_size: INTER, vocab_size: VOCAB, expert_dtype: 'fp4', quantization_config: QUANT,
};
// The indexer's second column block all zeros in the base and in ΔW (its A's columns there too):
// its scale is then the quantizer's floor (amax 1e-4), not the old one.
const ZERO_BLOCK = 'layers.0.attn.indexer.wq_b';
for (const t of BASE) if (t.name === `${ZERO_BLOCK}.weight`) (t.data as Uint8Array).forEach((_, i, a) => { if (i % Q_RANK >= 128) a[i] = 0; });
const byName = new Map(BASE.map((t) => [t.name, t]));
const bytesOf = (name: string) => byName.get(name)!.data as Uint8Array;

/** The real values of a DeepSeek-V4 weight: fp8 code × its block's 2^(e − 127), or FP4 code × its group's. */
function realValues(stem: string): { values: Float64Array; rows: number; cols: number } {
  const w = byName.get(`${stem}.weight`)!;
  const scale = bytesOf(`${stem}.scale`);
  if (w.dtype === 'F8_E4M3') {
    const [rows, cols] = w.shape;
    const codes = decodeValues(w.data as Uint8Array, 'F8_E4M3');
    const gridCols = Math.ceil(cols / 128);
    return { rows, cols, values: codes.map((v, i) => v * e8m0(scale[Math.floor(Math.floor(i / cols) / 128) * gridCols + Math.floor((i % cols) / 128)])) };
  }
  const rows = w.shape[0], cols = w.shape[1] * 2;
  const packed = w.data as Uint8Array;
  const values = new Float64Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = fp4Value(i & 1 ? packed[i >> 1] >> 4 : packed[i >> 1] & 15) * e8m0(scale[Math.floor(i / 32)]);
  return { rows, cols, values };
}

/** W' (f32) quantized to e4m3 blocks of 128 × 128 with E8M0 scales: [codes, scale bytes]. */
function fp8Truth(w: Float64Array, rows: number, cols: number): [Uint8Array, Uint8Array] {
  const { codes, scales } = quantizeUe8m0Blocks(w, rows, cols);
  return [codes, Uint8Array.from(scales, (x) => Math.log2(x) + 127)];
}


/** B·A (out × in) of PEFT factors given as values. */
function ba(B: Float64Array, A: Float64Array, out: number, inF: number, rank: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) { let s = 0; for (let k = 0; k < rank; k++) s += B[o * rank + k] * A[k * inF + i]; d[o * inF + i] = s; }
  return d;
}
const factor = (n: number) => Float64Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 64) / 1024);

/** [transformers 5 module path, DeepSeek's stem, out, in]. */
const LINEARS: [string, string, number, number][] = [
  ['model.layers.0.self_attn.q_a_proj', 'layers.0.attn.wq_a', Q_RANK, HIDDEN],
  ['model.layers.0.self_attn.kv_proj', 'layers.0.attn.wkv', KV, HIDDEN],
  ['model.layers.0.self_attn.compressor.indexer.q_b_proj', 'layers.0.attn.indexer.wq_b', 128, Q_RANK],
  ['model.layers.0.mlp.shared_experts.down_proj', 'layers.0.ffn.shared_experts.w2', HIDDEN, INTER],
];
const S = 2; // lora_alpha 4 / r 2

/** A PEFT adapter on LINEARS, lm_head, and the fused experts' down_proj (target_parameters, PEFT 0.19.1: W[e] += B_e·A_e). */
function adapter() {
  const tensors: FixtureTensor[] = [];
  const deltas = new Map<string, Float64Array>();
  for (const [path, stem, out, inF] of [...LINEARS, ['lm_head', 'head', VOCAB, HIDDEN] as const]) {
    const A = factor(r * inF).map((v, i) => (stem === ZERO_BLOCK && i % inF >= 128 ? 0 : v)), B = factor(out * r);
    tensors.push({ name: `base_model.model.${path}.lora_A.weight`, dtype: 'F32', shape: [r, inF], data: A }, { name: `base_model.model.${path}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: B });
    deltas.set(stem, ba(B, A, out, inF, r));
  }
  const A = factor(r * E * INTER), B = factor(HIDDEN * r * E);
  tensors.push({ name: 'base_model.model.model.layers.0.mlp.experts.lora_A.weight', dtype: 'F32', shape: [r * E, INTER], data: A }, { name: 'base_model.model.model.layers.0.mlp.experts.lora_B.weight', dtype: 'F32', shape: [HIDDEN, r * E], data: B });
  for (let e = 0; e < E; e++) {
    const Ae = A.slice(e * r * INTER, (e + 1) * r * INTER);
    const Be = Float64Array.from({ length: HIDDEN * r }, (_, i) => B[Math.floor(i / r) * r * E + (i % r) * E + e]);
    deltas.set(`layers.0.ffn.experts.${e}.w2`, ba(Be, Ae, HIDDEN, INTER, r));
  }
  const files = peftFolder({
    r, lora_alpha: 4, peft_version: '0.19.1', target_modules: ['q_a_proj', 'kv_proj', 'q_b_proj', 'down_proj', 'lm_head'], target_parameters: ['mlp.experts.down_proj'],
    base_model_name_or_path: 'deepseek-ai/DeepSeek-V4-Flash',
  }, tensors);
  return { files, deltas };
}

describe('DeepSeek-V4-Flash (DeepSeek\'s names, fp8 with E8M0 block scales, FP4 experts) with a PEFT LoRA in transformers 5\'s names', () => {
  const { files, deltas } = adapter();
  const merged = [...deltas.keys()].map((stem) => `${stem}.weight`);

  it('lands each module on DeepSeek\'s tensor, merged exactly and written back as fp8 / FP4 with scales as DeepSeek\'s kernels compute them; the rest byte for byte', async () => {
    const prepared = await prepare(hfModelFolder(BASE, CONFIG), files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(merged.sort());
    // 8 fp8 weights (attention, indexer, shared expert, MTP) and 6 FP4 expert weights.
    expect(prepared.plan.notes, prepared.plan.notes.join("|")).toContain("the base holds 8 block-wise fp8 weights (E8M0 .scale per 128 × 128 block, DeepSeek-V4's) and 6 packed FP4 weights (E8M0 .scale per 32 inputs): adapters are merged into their real values (code × 2^(scale − 127)); merged weights are written in their format again, each block's (or group's) power-of-two scale recomputed as DeepSeek's kernels compute it (2^⌈log2(amax / 448)⌉, or / 6 for FP4), or dequantized with --dtype f32/f16/bf16");
    const out = await merge(prepared);
    for (const [stem, delta] of deltas) {
      const w = byName.get(`${stem}.weight`)!;
      const got = out.tensors.get(`${stem}.weight`)!;
      expect([got.dtype, got.shape], stem).toEqual([w.dtype, w.shape]);
      if (w.dtype === 'BF16') continue; // the head: checked below
      const { values, rows, cols } = realValues(stem);
      const truth = values.map((v, i) => Math.fround(v + S * delta[i]));
      const [codes, scales] = w.dtype === 'I8' ? fp4QuantizeTruth(truth) : fp8Truth(truth, rows, cols);
      expect(got.bytes, `${stem}.weight`).toEqual(codes);
      expect(out.tensors.get(`${stem}.scale`)!.bytes, `${stem}.scale`).toEqual(scales);
      expect(out.tensors.get(`${stem}.scale`)!.dtype).toBe('F8_E8M0');
      if (stem === ZERO_BLOCK) expect(out.tensors.get(`${stem}.scale`)!.bytes[1]).toBe(log2Ceil(Math.fround(Math.fround(1e-4) * Math.fround(1 / 448))) + 127);
    }
    const head = decodeValues(out.tensors.get('head.weight')!.bytes, 'BF16');
    const headBase = decodeValues(encode(byName.get('head.weight')!), 'BF16');
    const headDelta = deltas.get('head')!;
    expect([...head]).toEqual([...headBase.map((v, i) => roundBf16(v + S * headDelta[i]))]);
    const changed = new Set(merged.flatMap((k) => [k, k.replace(/weight$/, 'scale')]));
    for (const t of BASE) {
      if (changed.has(t.name)) continue;
      const got = out.tensors.get(t.name)!;
      expect([got.dtype, got.shape, got.bytes], `${t.name} is copied as stored`).toEqual([t.dtype, t.shape, encode(t)]);
    }
    expect(out.tensors.size).toBe(BASE.length);
    expect(out.config.quantization_config).toEqual(QUANT);
  });

  it('with --dtype bf16: every fp8 and FP4 weight dequantized (W + s·ΔW rounded once), the scales and quantization_config left out', async () => {
    const prepared = await prepare(hfModelFolder(BASE, CONFIG), files);
    const out = await merge(prepared, 'BF16');
    for (const t of BASE) {
      if (t.name.endsWith('.scale')) {
        expect(out.tensors.has(t.name), t.name).toBe(false);
        continue;
      }
      const got = out.tensors.get(t.name)!;
      const stem = t.name.replace(/\.weight$/, '');
      if (t.dtype === 'F8_E4M3' || t.dtype === 'I8') {
        const { values, rows, cols } = realValues(stem);
        const delta = deltas.get(stem);
        expect([got.dtype, got.shape], t.name).toEqual(['BF16', [rows, cols]]);
        // An untouched weight's −0 codes stay −0 (code × scale, as transformers dequantizes).
        const want = values.map((v, i) => roundBf16(delta ? v + S * delta[i] : v));
        const have = decodeValues(got.bytes, 'BF16');
        const bad = [...have.keys()].filter((i) => !Object.is(have[i], want[i]));
        expect(bad.slice(0, 5).map((i) => [i, have[i], want[i], values[i]]), t.name).toEqual([]);
      } else if (!deltas.has(stem)) {
        // --dtype converts every float tensor (the F32 attention sinks and router bias too).
        expect([got.dtype, [...decodeValues(got.bytes, 'BF16')]], t.name).toEqual(['BF16', [...decodeValues(encode(t), t.dtype).map(roundBf16)]]);
      }
    }
    expect(out.config.quantization_config).toBeUndefined();
  });

  it('an expert stored as F4 (out, in), the dtype safetensors names packed E2M1 by, is read alike and written back F4', async () => {
    const stem = 'layers.0.ffn.experts.1.w2';
    const f4 = BASE.map((t) => (t.name === `${stem}.weight` ? { ...t, dtype: 'F4' as FixtureDType, shape: [HIDDEN, INTER] } : t));
    const out = await merge(await prepare(hfModelFolder(f4, CONFIG), files));
    const { values, rows, cols } = realValues(stem);
    const delta = deltas.get(stem)!;
    const [codes, scales] = fp4QuantizeTruth(values.map((v, i) => Math.fround(v + S * delta[i])));
    const got = out.tensors.get(`${stem}.weight`)!;
    expect([got.dtype, got.shape]).toEqual(['F4', [HIDDEN, INTER]]);
    expect(got.bytes).toEqual(codes);
    expect(out.tensors.get(`${stem}.scale`)!.bytes).toEqual(scales);
  });

  it('refuses what it cannot merge exactly, in one line naming the module and the tensor', async () => {
    // DoRA on an FP4 expert's weight (norms over codes), and on an fp8 weight.
    const dora = await prepare(hfModelFolder(BASE, CONFIG), peftFolder({ r, lora_alpha: 4, use_dora: true, target_modules: ['q_a_proj'] }, [
      { name: 'base_model.model.model.layers.0.self_attn.q_a_proj.lora_A.weight', dtype: 'F32', shape: [r, HIDDEN], data: factor(r * HIDDEN) },
      { name: 'base_model.model.model.layers.0.self_attn.q_a_proj.lora_B.weight', dtype: 'F32', shape: [Q_RANK, r], data: factor(Q_RANK * r) },
      { name: 'base_model.model.model.layers.0.self_attn.q_a_proj.lora_magnitude_vector', dtype: 'F32', shape: [Q_RANK], data: factor(Q_RANK) },
    ]));
    await dora.close();
    expect(dora.plan.problems.map((p) => p.message)).toEqual([expect.stringMatching(/module "model\.layers\.0\.self_attn\.q_a_proj": DoRA on the block-wise fp8 weight layers\.0\.attn\.wq_a\.weight .*is not supported/)]);
    // A scale byte 255 (E8M0's NaN) in a merged expert's group.
    const broken = BASE.map((t) => (t.name === 'layers.0.ffn.experts.1.w2.scale' ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (b, i) => (i === 5 ? 255 : b)) } : t));
    await expect(merge(await prepare(hfModelFolder(broken, CONFIG), files))).rejects.toThrow(/tensor "layers\.0\.ffn\.experts\.1\.w2\.scale" holds 255 \(E8M0's NaN\) for row 2, inputs 32–63 of layers\.0\.ffn\.experts\.1\.w2\.weight/);
    // Scales that are no FP4 grid.
    const wrong = BASE.map((t) => (t.name === 'layers.0.ffn.experts.0.w1.scale' ? { ...t, shape: [INTER / 2, (HIDDEN / 32) * 2] } : t));
    await expect(prepare(hfModelFolder(wrong, CONFIG), files)).rejects.toThrow(/tensor "layers\.0\.ffn\.experts\.0\.w1\.weight" \(I8 \[64, 128\]\) beside "layers\.0\.ffn\.experts\.0\.w1\.scale" \(F8_E8M0 \[32, 16\]\) is not DeepSeek-V4's packed FP4/);
  });
});

function encode(t: FixtureTensor): Uint8Array {
  return t.data instanceof Uint8Array ? t.data : hfBytes(t);
}
function hfBytes(t: FixtureTensor): Uint8Array {
  const files = hfModelFolder([t], {});
  return rawTensors(files['model.safetensors'] as Uint8Array).get(t.name)!.bytes;
}
function roundBf16(x: number): number {
  return roundForDType(x, 'BF16');
}
