/**
 * PEFT DoRA (`lora_magnitude_vector`, tuners/lora/dora.py DoraLinearLayer: W' = m / ‖W + s·B·A‖ ·
 * (W + s·B·A), the norm per output row over its inputs) trained on Flux's fused BFL projections
 * (`double_blocks.N.img_attn.qkv` (3h, h), `single_blocks.N.linear1` (7h, h)) merged into a base
 * holding their rows as split tensors (diffusers' `to_q`/`to_k`/`to_v`, `proj_mlp`). Each row's norm
 * reads that row alone, so the truth forms the DoRA merge on the fused weight in float64 (norms by
 * hand) and cuts it into the split tensors' rows. LyCORIS's `dora_scale` (1, in), a norm per input
 * column over all the fused rows, stays refused onto split tensors; its `wd_on_output` (out, 1), a
 * norm per output row, merges there as PEFT's does.
 */
import { describe, expect, it } from 'vitest';
import { FLUX, fluxDiffusersTensors, tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectWeightsMerged } from './helpers/merge-truth.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(20261208);
const { h } = FLUX;
const base = fluxDiffusersTensors(rand, 'BF16');
const BASE_FILE = 'diffusion_pytorch_model.safetensors';

const QKV = ['to_q', 'to_k', 'to_v'].map((p) => ({ key: `transformer_blocks.0.attn.${p}.weight`, rows: h }));
const LINEAR1 = [...['to_q', 'to_k', 'to_v'].map((p) => ({ key: `single_transformer_blocks.0.attn.${p}.weight`, rows: h })), { key: 'single_transformer_blocks.0.proj_mlp.weight', rows: 4 * h }];
const values = (tensors: readonly FixtureTensor[], name: string) => Float64Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);

/** The fused weight: the split tensors' rows stacked in order. */
const fused = (parts: readonly { key: string }[], from: Map<string, Float64Array>) => Float64Array.from(parts.flatMap((p) => [...from.get(p.key)!]));
const baseValues = new Map(base.map((t) => [t.name, values(base, t.name)]));

/** PEFT's DoRA merge of (out, h) W with s·B·A: each row o becomes m[o] / ‖V_o‖ · V_o, V = W + s·B·A. */
function peftDora(w: Float64Array, b: Float64Array, a: Float64Array, m: Float64Array, r: number, s: number): Float64Array {
  const out = w.length / h;
  const v = Float64Array.from(w, (x, j) => {
    const o = Math.floor(j / h), c = j % h;
    let sum = 0;
    for (let k = 0; k < r; k++) sum += b[o * r + k] * a[k * h + c];
    return x + s * sum;
  });
  for (let o = 0; o < out; o++) {
    let sq = 0;
    for (let c = 0; c < h; c++) sq += v[o * h + c] ** 2;
    const factor = m[o] / Math.sqrt(sq);
    for (let c = 0; c < h; c++) v[o * h + c] *= factor;
  }
  return v;
}

/** Cut a fused (Σrows, h) weight into the split tensors' rows. */
function cut(parts: readonly { key: string; rows: number }[], w: Float64Array, into = new Map<string, Float64Array>()): Map<string, Float64Array> {
  let at = 0;
  for (const p of parts) {
    into.set(p.key, w.slice(at * h, (at + p.rows) * h));
    at += p.rows;
  }
  return into;
}

function peftAdapter(r: number, alpha: number) {
  const module = (name: string, out: number) => {
    const a = tensor(rand, `base_model.model.${name}.lora_A.weight`, [r, h], 'F32', 0.4);
    const b = tensor(rand, `base_model.model.${name}.lora_B.weight`, [out, r], 'F32', 0.4);
    // A magnitude near the rows' norms, as training leaves it (started from ‖W‖).
    const m: FixtureTensor = { name: `base_model.model.${name}.lora_magnitude_vector`, dtype: 'F32', shape: [out], data: Float64Array.from({ length: out }, () => Math.fround(1 + rand())) };
    return { a, b, m };
  };
  const qkv = module('double_blocks.0.img_attn.qkv', 3 * h);
  const lin = module('single_blocks.0.linear1', 7 * h);
  const files = peftFolder({ r, lora_alpha: alpha, use_dora: true, task_type: null, base_model_name_or_path: 'black-forest-labs/FLUX.1-dev', target_modules: ['qkv', 'linear1'], fan_in_fan_out: false }, [qkv.a, qkv.b, qkv.m, lin.a, lin.b, lin.m]);
  return { qkv, lin, files };
}

describe.each(['cpu', 'webgpu'])('PEFT DoRA on fused Flux modules onto diffusers split tensors, %s', (name) => {
  it.for([1, 0.5])('img_attn.qkv onto to_q/to_k/to_v and linear1 onto to_q/to_k/to_v/proj_mlp, weight %d', async (weight, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const r = 2, alpha = 4;
    const { qkv, lin, files } = peftAdapter(r, alpha);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ files, weight }] });
    const v = (t: FixtureTensor) => values([t], t.name);
    const want = cut(QKV, peftDora(fused(QKV, baseValues), v(qkv.b), v(qkv.a), v(qkv.m), r, weight * alpha / r));
    cut(LINEAR1, peftDora(fused(LINEAR1, baseValues), v(lin.b), v(lin.a), v(lin.m), r, weight * alpha / r), want);
    expectWeightsMerged(tensors, want, base, `dora fused→split weight ${weight}`);
  });

  it('a LoRA on to_k first, then the DoRA adapter: its norms are taken after the LoRA is merged', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const r = 2, alpha = 2;
    const { qkv, lin, files } = peftAdapter(r, alpha);
    // diffusers' own LoRA naming (transformer.<module>.lora_A/B), no alpha: scale 1.
    const down = tensor(rand, 'transformer.transformer_blocks.0.attn.to_k.lora_A.weight', [1, h], 'F32', 0.5);
    const up = tensor(rand, 'transformer.transformer_blocks.0.attn.to_k.lora_B.weight', [h, 1], 'F32', 0.5);
    const first = buildSafetensors([down, up]);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'to_k.safetensors', files: { 'to_k.safetensors': first }, weight: 1 }, { files, weight: 1 }] });
    const v = (t: FixtureTensor) => values([t], t.name);
    const afterLora = new Map(baseValues);
    const k = QKV[1].key, D = v(down), U = v(up);
    afterLora.set(k, Float64Array.from(baseValues.get(k)!, (x, j) => x + U[Math.floor(j / h)] * D[j % h]));
    const want = cut(QKV, peftDora(fused(QKV, afterLora), v(qkv.b), v(qkv.a), v(qkv.m), r, alpha / r));
    cut(LINEAR1, peftDora(fused(LINEAR1, afterLora), v(lin.b), v(lin.a), v(lin.m), r, alpha / r), want);
    expectWeightsMerged(tensors, want, base, 'lora then dora fused→split');
  });
});

/**
 * LyCORIS with `wd_on_output` (dora_scale (out, 1)): one norm per output row too, m / (‖V‖ + eps),
 * V = W + α/r·up·down, eps 2⁻²³ (LyCORIS's torch.finfo(float32).eps); a weight s moves the factor
 * toward 1 (apply_weight_decompose): W' = V·(s·(m / (‖V‖ + eps) − 1) + 1).
 */
describe.each(['cpu', 'webgpu'])('LyCORIS DoRA with a norm per output row on a fused Flux qkv onto split tensors, %s', (name) => {
  it.for([1, 0.5])('dora_scale (3h, 1) on img_attn.qkv, weight %d', async (s, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const n = 'lycoris_double_blocks_0_img_attn_qkv', r = 2, alpha = 1;
    const down = tensor(rand, `${n}.lora_down.weight`, [r, h], 'F32', 0.4), up = tensor(rand, `${n}.lora_up.weight`, [3 * h, r], 'F32', 0.4);
    const scale: FixtureTensor = { name: `${n}.dora_scale`, dtype: 'F32', shape: [3 * h, 1], data: Float64Array.from({ length: 3 * h }, () => Math.fround(1 + rand())) };
    const file = buildSafetensors([down, up, { name: `${n}.alpha`, dtype: 'F32', shape: [], data: [alpha] }, scale]);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'lyco.safetensors', files: { 'lyco.safetensors': file }, weight: s }] });
    const D = values([down], down.name), U = values([up], up.name), m = values([scale], scale.name);
    const v = Float64Array.from(fused(QKV, baseValues), (x, j) => {
      const o = Math.floor(j / h), c = j % h;
      let sum = 0;
      for (let k = 0; k < r; k++) sum += U[o * r + k] * D[k * h + c];
      return x + (alpha / r) * sum;
    });
    for (let o = 0; o < 3 * h; o++) {
      let sq = 0;
      for (let c = 0; c < h; c++) sq += v[o * h + c] ** 2;
      const factor = s * (m[o] / (Math.sqrt(sq) + 2 ** -23) - 1) + 1;
      for (let c = 0; c < h; c++) v[o * h + c] *= factor;
    }
    expectWeightsMerged(tensors, cut(QKV, v), base, `lycoris dora (out, 1) fused→split weight ${s}`);
  });
});

describe('LyCORIS DoRA with a norm per input column on a fused module onto split tensors', () => {
  it('dora_scale (1, in) on img_attn.qkv is refused in one line: its norms run over all the fused rows', async () => {
    const n = 'lycoris_double_blocks_0_img_attn_qkv';
    const file = buildSafetensors([
      tensor(rand, `${n}.lora_down.weight`, [2, h], 'F32', 0.4), tensor(rand, `${n}.lora_up.weight`, [3 * h, 2], 'F32', 0.4),
      { name: `${n}.alpha`, dtype: 'F32', shape: [], data: [2] }, tensor(rand, `${n}.dora_scale`, [1, h], 'F32', 0.5),
    ]);
    const lines = await refusalsInMemory({ backend: backends.cpu!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: 'lyco.safetensors', files: { 'lyco.safetensors': file }, weight: 1 }] });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/lycoris_double_blocks_0_img_attn_qkv": DoRA on a module that lands on part of a tensor \(rows 0–7 of transformer_blocks\.0\.attn\.to_q\.weight.*\) is not supported$/);
  });
});
