/**
 * LyCORIS (IA)³ (modules/ia3.py: W' = W ⊙ (1 + s·w)) trained on Flux's fused projections (BFL
 * `double_blocks.N.img_attn.qkv` (3h, h), `single_blocks.N.linear1` (7h, h)) merged into a base that
 * holds their rows as split tensors (diffusers' `transformer_blocks.N.attn.to_q/to_k/to_v`,
 * `single_transformer_blocks.N.attn.to_q/…/proj_mlp`). on_input 0: one factor per output row of the
 * fused weight, so each split tensor takes its own rows' factors; on_input 1: one factor per input,
 * the same for every row, so every split tensor is scaled alike. The truth forms W ⊙ (1 + s·w) on the
 * fused weight in float64 and cuts it into the split tensors' rows. PEFT's (IA)³ likewise, biases
 * included, and LyCORIS GLoRA, whose change of each row reads that row alone.
 */
import { describe, expect, it } from 'vitest';
import { FLUX, fluxDiffusersTensors, tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectWeightsMerged } from './helpers/merge-truth.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(20261209);
const { h } = FLUX;
const base = fluxDiffusersTensors(rand, 'BF16');
const BASE_FILE = 'diffusion_pytorch_model.safetensors';
const FILE = 'flux_ia3.safetensors';

const QKV = ['to_q', 'to_k', 'to_v'].map((p) => ({ key: `transformer_blocks.0.attn.${p}.weight`, rows: h }));
const LINEAR1 = [...['to_q', 'to_k', 'to_v'].map((p) => ({ key: `single_transformer_blocks.0.attn.${p}.weight`, rows: h })), { key: 'single_transformer_blocks.0.proj_mlp.weight', rows: 4 * h }];
const values = (tensors: readonly FixtureTensor[], name: string) => Float64Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);
const onInput = (name: string, v: 0 | 1): FixtureTensor => ({ name: `${name}.on_input`, dtype: 'I64' as FixtureDType, shape: [], data: [v] });

/** The split tensors' truth: row r (of the fused rows) and column c of each scaled by 1 + s·w. */
function truth(parts: readonly { key: string; rows: number }[], w: Float64Array, input: boolean, s: number): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  let at = 0;
  for (const p of parts) {
    const v = values(base, p.key);
    out.set(p.key, Float64Array.from(v, (x, j) => x * (1 + s * w[input ? j % h : at + Math.floor(j / h)])));
    at += p.rows;
  }
  return out;
}

describe.each(['cpu', 'webgpu'])('LyCORIS (IA)³ on a fused Flux module onto diffusers split tensors, %s', (name) => {
  it.for([1, -0.5])('img_attn.qkv with on_input 0 (24 output factors) and linear1 with on_input 1 (8 input factors), weight %d', async (s, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const qkv = tensor(rand, 'lycoris_double_blocks_0_img_attn_qkv.weight', [3 * h], 'F32', 0.5);
    const lin = tensor(rand, 'lycoris_single_blocks_0_linear1.weight', [h], 'F32', 0.5);
    const file = buildSafetensors([qkv, onInput('lycoris_double_blocks_0_img_attn_qkv', 0), lin, onInput('lycoris_single_blocks_0_linear1', 1)]);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: FILE, files: { [FILE]: file }, weight: s }] });
    const want = new Map([...truth(QKV, values([qkv], qkv.name), false, s), ...truth(LINEAR1, values([lin], lin.name), true, s)]);
    expectWeightsMerged(tensors, want, base, `ia3 weight ${s}`);
  });
});

/**
 * PEFT's (IA)³ on the output side also scales the layer's bias (IA3Layer.merge: bias ⊙ ia3_l): a
 * fused qkv's factors on the split tensors' weights and biases, each its own rows' (fal-style
 * `base_model.model.` + BFL names, the folder's config naming the module).
 */
describe.each(['cpu', 'webgpu'])('PEFT (IA)³ on a fused Flux qkv onto diffusers split tensors with biases, %s', (name) => {
  it('weights and biases: row r of q, k, v (r of 3h) times ia3_l[r]', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { peftFolder } = await import('./helpers/hf-folder.js');
    const biased = [...base, ...QKV.map((p) => tensor(rand, p.key.replace(/weight$/, 'bias'), [h], 'BF16'))];
    const l = tensor(rand, 'base_model.model.double_blocks.0.img_attn.qkv.ia3_l', [3 * h, 1], 'F32', 0.5);
    const files = peftFolder({ peft_type: 'IA3', task_type: null, base_model_name_or_path: 'black-forest-labs/FLUX.1-dev', target_modules: ['qkv'], feedforward_modules: [], fan_in_fan_out: false, init_ia3_weights: true }, [l]);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(biased) }, adapters: [{ files, weight: 1 }] });
    const f = values([l], l.name);
    const want = truth(QKV, f.map((x) => x - 1), false, 1);
    QKV.forEach((p, k) => want.set(p.key.replace(/weight$/, 'bias'), values(biased, p.key.replace(/weight$/, 'bias')).map((x, o) => x * f[k * h + o])));
    expectWeightsMerged(tensors, want, biased, 'peft ia3');
  });
});

describe('LyCORIS (IA)³ on a split module onto a fused tensor', () => {
  it('to_q onto rows of BFL img_attn.qkv is refused in one line: its factors would scale k and v too (on_input 1), or only some rows (on_input 0)', async () => {
    const { fluxBflTensors } = await import('./helpers/diffusion-fixtures.js');
    const bfl = buildSafetensors(fluxBflTensors(rand, 'BF16'));
    for (const v of [0, 1] as const) {
      const w = tensor(rand, 'lycoris_transformer_blocks_0_attn_to_q.weight', [h], 'F32', 0.5);
      const lines = await refusalsInMemory({ backend: backends.cpu!, base: { 'flux1-dev.safetensors': bfl }, adapters: [{ name: FILE, files: { [FILE]: buildSafetensors([w, onInput('lycoris_transformer_blocks_0_attn_to_q', v)]) }, weight: 1 }] });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/lycoris_transformer_blocks_0_attn_to_q": \(IA\)³ on a module that lands on part of a tensor \(rows 0–7 of double_blocks\.0\.img_attn\.qkv\.weight\): it maps every row of double_blocks\.0\.img_attn\.qkv\.weight, which takes only 8 of its 24 rows from this module$/);
    }
  });
});

/**
 * LyCORIS GLoRA (modules/glora.py: W' = W + s·(α/r)·(W·a1·a2 + b1·b2)) on BFL's fused qkv onto
 * diffusers' split tensors: each output row's change reads that row alone, so each split tensor takes
 * W·a1·a2 of its own rows and its rows of b1·b2. Truth on the fused weight, cut.
 */
describe.each(['cpu', 'webgpu'])('LyCORIS GLoRA on a fused Flux qkv onto diffusers split tensors, %s', (name) => {
  it('W + s·(α/r)·(W·a1·a2 + b1·b2) on the fused weight, cut into to_q, to_k, to_v', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const r = 2, alpha = 1, s = 0.5, n = 'lycoris_double_blocks_0_img_attn_qkv';
    const a1 = tensor(rand, `${n}.a1.weight`, [h, r], 'F32', 0.3), a2 = tensor(rand, `${n}.a2.weight`, [r, h], 'F32', 0.3);
    const b1 = tensor(rand, `${n}.b1.weight`, [3 * h, r], 'F32', 0.3), b2 = tensor(rand, `${n}.b2.weight`, [r, h], 'F32', 0.3);
    const file = buildSafetensors([a1, a2, b1, b2, { name: `${n}.alpha`, dtype: 'F32', shape: [], data: [alpha] }]);
    const { tensors } = await mergeInMemory({ backend, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ name: FILE, files: { [FILE]: file }, weight: s }] });
    const w = Float64Array.from(QKV.flatMap((p) => [...values(base, p.key)]));
    const A1 = values([a1], a1.name), A2 = values([a2], a2.name), B1 = values([b1], b1.name), B2 = values([b2], b2.name);
    const fusedTruth = Float64Array.from(w, (x, j) => {
      const o = Math.floor(j / h), c = j % h;
      let delta = 0;
      for (let k = 0; k < r; k++) {
        let wa = 0;
        for (let i = 0; i < h; i++) wa += w[o * h + i] * A1[i * r + k];
        delta += wa * A2[k * h + c] + B1[o * r + k] * B2[k * h + c];
      }
      return x + s * (alpha / r) * delta;
    });
    const want = new Map(QKV.map((p, k) => [p.key, fusedTruth.slice(k * h * h, (k + 1) * h * h)]));
    expectWeightsMerged(tensors, want, base, 'glora fused→split');
  });
});
