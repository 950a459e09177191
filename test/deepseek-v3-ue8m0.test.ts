/**
 * DeepSeek-V3.1 / V3.2 as deepseek-ai ships them, scaled down: transformers' DeepseekV3 names
 * (`model.layers.N.self_attn.q_a_proj`, `kv_a_proj_with_mqa`, `o_proj`, `mlp.experts.K.down_proj`),
 * each fp8 weight F8_E4M3 beside an F32 `weight_scale_inv` per 128 × 128 block, config.json's
 * `quantization_config` `{quant_method: "fp8", fmt: "e4m3", scale_fmt: "ue8m0",
 * weight_block_size: [128, 128]}`: every scale a power of two. A PEFT LoRA merged into them is
 * checked against float64 truth re-quantized by a quantizer written here (DeepSeek's act_quant
 * with scale_fmt: amax floored at 1e-4, s = 2^⌈log2 f32(amax · f32(1/448))⌉ by the f32's bits,
 * codes = e4m3(W' / s)); the scales stay F32 powers of two, quantization_config as it was, the
 * other tensors byte for byte. A scale that is no power of two under scale_fmt "ue8m0" is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { decodeValues, encodeValues, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { quantizeUe8m0Blocks } from './helpers/deepseek-ue8m0-truth.js';
import { hfModelFolder, peftFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { fp8CheckpointFixtures, mergeRaw } from './helpers/fp8-checkpoint-fixtures.js';

const rand = seededRandom(3108);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());
const merge = (prepared: PreparedMerge) => mergeRaw(prepared, backend);

const HIDDEN = 256, Q_RANK = 192, KV = 96, O_IN = 200, INTER = 64, VOCAB = 16, r = 2;
const L = 'model.layers.0';

const f32Bytes = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);
const { e4m3Code, bf16 } = fp8CheckpointFixtures(rand);
/** An fp8 weight and its (⌈out/128⌉, ⌈in/128⌉) F32 grid of powers of two 2^-12 … 2^-7, as V3.1 stores them. */
const fp8 = (m: string, out: number, inF: number): FixtureTensor[] => {
  const grid = [Math.ceil(out / 128), Math.ceil(inF / 128)];
  return [
    { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [out, inF], data: Uint8Array.from({ length: out * inF }, e4m3Code) },
    { name: `${m}.weight_scale_inv`, dtype: 'F32', shape: grid, data: f32Bytes(Array.from({ length: grid[0] * grid[1] }, () => 2 ** (-12 + Math.floor(rand() * 6)))) },
  ];
};

const BASE: FixtureTensor[] = [
  bf16('model.embed_tokens.weight', [VOCAB, HIDDEN]),
  bf16(`${L}.input_layernorm.weight`, [HIDDEN]),
  ...fp8(`${L}.self_attn.q_a_proj`, Q_RANK, HIDDEN),
  ...fp8(`${L}.self_attn.kv_a_proj_with_mqa`, KV, HIDDEN),
  ...fp8(`${L}.self_attn.o_proj`, HIDDEN, O_IN),
  bf16(`${L}.mlp.gate.weight`, [2, HIDDEN]),
  { name: `${L}.mlp.gate.e_score_correction_bias`, dtype: 'F32', shape: [2], data: [0.125, -0.5] },
  ...fp8(`${L}.mlp.experts.0.down_proj`, HIDDEN, INTER),
  ...fp8(`${L}.mlp.experts.1.down_proj`, HIDDEN, INTER),
  bf16('model.norm.weight', [HIDDEN]),
  bf16('lm_head.weight', [VOCAB, HIDDEN]),
];
const QUANT = { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] };
const CONFIG = {
  architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', torch_dtype: 'bfloat16', hidden_size: HIDDEN, q_lora_rank: Q_RANK,
  num_hidden_layers: 1, n_routed_experts: 2, moe_intermediate_size: INTER, vocab_size: VOCAB, quantization_config: QUANT,
};
// o_proj's second column block (columns 128–199) all zeros in the base and in ΔW: its scale is then
// the quantizer's floor (amax 1e-4 → 2^-22), not the old one.
const ZERO = `${L}.self_attn.o_proj`;
for (const t of BASE) if (t.name === `${ZERO}.weight`) (t.data as Uint8Array).forEach((_, i, a) => { if (i % O_IN >= 128) a[i] = 0; });
const byName = new Map(BASE.map((t) => [t.name, t]));

/** W of an fp8 weight in float64: code × its block's scale. */
function realValues(m: string): { values: Float64Array; rows: number; cols: number } {
  const w = byName.get(`${m}.weight`)!;
  const s = byName.get(`${m}.weight_scale_inv`)!.data as Uint8Array;
  const scales = new Float32Array(s.buffer, s.byteOffset, s.byteLength / 4);
  const [rows, cols] = w.shape;
  const gc = Math.ceil(cols / 128);
  const codes = decodeValues(w.data as Uint8Array, 'F8_E4M3');
  return { rows, cols, values: Float64Array.from(codes, (v, i) => v * scales[Math.floor(Math.floor(i / cols) / 128) * gc + Math.floor((i % cols) / 128)]) };
}

/** W' (f32 values) re-quantized block by block: [e4m3 codes, F32 scale bytes]. */
function quantize(w: Float64Array, rows: number, cols: number): [Uint8Array, Uint8Array] {
  const { codes, scales } = quantizeUe8m0Blocks(w, rows, cols);
  return [codes, f32Bytes(scales)];
}

const factor = (n: number) => Float64Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 64) / 1024);
const S = 2; // lora_alpha 4 / r 2
/** [module, out, in] a PEFT LoRA (transformers' DeepseekV3 names) lands on. */
const TARGETS: [string, number, number][] = [[`${L}.self_attn.q_a_proj`, Q_RANK, HIDDEN], [ZERO, HIDDEN, O_IN], [`${L}.mlp.experts.1.down_proj`, HIDDEN, INTER]];
function adapter() {
  const tensors: FixtureTensor[] = [];
  const deltas = new Map<string, Float64Array>();
  for (const [m, out, inF] of TARGETS) {
    const A = factor(r * inF).map((v, i) => (m === ZERO && i % inF >= 128 ? 0 : v)), B = factor(out * r);
    tensors.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, inF], data: A }, { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: B });
    const d = new Float64Array(out * inF);
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) { let s = 0; for (let k = 0; k < r; k++) s += B[o * r + k] * A[k * inF + i]; d[o * inF + i] = s; }
    deltas.set(m, d);
  }
  const files = peftFolder({ r, lora_alpha: 4, peft_version: '0.17.1', target_modules: ['q_a_proj', 'o_proj', 'down_proj'], base_model_name_or_path: 'deepseek-ai/DeepSeek-V3.1' }, tensors);
  return { files, deltas };
}

describe('DeepSeek-V3.1 (F32 weight_scale_inv, scale_fmt "ue8m0") with a PEFT LoRA, written back as fp8', () => {
  const { files, deltas } = adapter();

  it('merges each module exactly and writes it as fp8 with F32 power-of-two scales as DeepSeek\'s ue8m0 rule computes them; quantization_config and the rest as they were', async () => {
    const prepared = await prepare(hfModelFolder(BASE, CONFIG), files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes.join('|')).toContain('the base holds 5 block-wise fp8 weights (weight_scale_inv): adapters are merged into their real values (code × scale); they are written as fp8 again with each block\'s power-of-two scale (scale_fmt "ue8m0") recomputed as DeepSeek\'s kernels compute it (2^⌈log2(amax / 448)⌉), or dequantized with --dtype f32/f16/bf16');
    const out = await merge(prepared);
    for (const [m, delta] of deltas) {
      const { values, rows, cols } = realValues(m);
      const [codes, scales] = quantize(values.map((v, i) => Math.fround(v + S * delta[i])), rows, cols);
      const w = out.tensors.get(`${m}.weight`)!, s = out.tensors.get(`${m}.weight_scale_inv`)!;
      expect([w.dtype, w.shape, s.dtype, s.shape], m).toEqual(['F8_E4M3', [rows, cols], 'F32', [Math.ceil(rows / 128), Math.ceil(cols / 128)]]);
      expect(s.bytes, `${m}.weight_scale_inv`).toEqual(scales);
      expect(w.bytes, `${m}.weight`).toEqual(codes);
      const written = new Float32Array(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength / 4);
      for (const x of written) expect(2 ** Math.round(Math.log2(x)), `${m}: ${x} is a power of two`).toBe(x);
      if (m === ZERO) expect(written[1]).toBe(2 ** -22);
    }
    const changed = new Set([...deltas.keys()].flatMap((m) => [`${m}.weight`, `${m}.weight_scale_inv`]));
    for (const t of BASE) {
      if (changed.has(t.name)) continue;
      const got = out.tensors.get(t.name)!;
      expect([got.dtype, got.shape, got.bytes], `${t.name} is copied as stored`).toEqual([t.dtype, t.shape, t.data instanceof Uint8Array ? t.data : encodeValues(t.data, t.dtype)]);
    }
    expect(out.tensors.size).toBe(BASE.length);
    expect(out.config.quantization_config).toEqual(QUANT);
  });

  it('a merged weight whose weight_scale_inv holds a scale that is no power of two is refused, naming it: the file contradicts its config', async () => {
    const bad = BASE.map((t) => {
      if (t.name !== `${L}.self_attn.q_a_proj.weight_scale_inv`) return t;
      const data = Uint8Array.from(t.data as Uint8Array);
      new DataView(data.buffer).setFloat32(4, 0.0005, true); // block (0, 1)
      return { ...t, data };
    });
    const prepared = await prepare(hfModelFolder(bad, CONFIG), files);
    await expect(merge(prepared)).rejects.toThrow(
      `tensor "${L}.self_attn.q_a_proj.weight_scale_inv" holds ${Math.fround(0.0005)} (block at row 0, column 128), not a power of two, though config.json's quantization_config.scale_fmt is "ue8m0": the file contradicts its config, so the merged ${L}.self_attn.q_a_proj.weight is not written with scales of either form; merge with --dtype bf16 (or f16, f32) to write the merged weights dequantized`,
    );
  });
});

describe('DeepSeek-V3.1 whose quantization_config.scale_fmt is no string', () => {
  const { files } = adapter();
  // It read as no scale_fmt at all: the merged weights written with float scales, silently, where
  // DeepSeek's kernels round to powers of two for any scale_fmt that is not None.
  it.for<[string, unknown]>([['true', true], ['a number', 8], ['a list', ['ue8m0']], ['an object', { fmt: 'ue8m0' }]])('scale_fmt %s is refused, naming it', async ([, value]) => {
    await expect(prepare(hfModelFolder(BASE, { ...CONFIG, quantization_config: { ...QUANT, scale_fmt: value } }), files)).rejects.toThrow(
      `config.json quantization_config.scale_fmt is ${JSON.stringify(value)}, not a string (DeepSeek writes "ue8m0"): fix config.json`,
    );
  });
  it('scale_fmt null is none (DeepSeek-V3\'s own config has none): float scales', async () => {
    const prepared = await prepare(hfModelFolder(BASE, { ...CONFIG, quantization_config: { ...QUANT, scale_fmt: null } }), files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes.join('|')).not.toContain('ue8m0');
  });
});
