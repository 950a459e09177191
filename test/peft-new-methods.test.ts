/**
 * PEFT methods added after 0.18: BEFT (peft_type BEFT), a trained bias change `<module>.beft_bias`
 * (1, out) that PEFT's merge adds to the base bias; Super-Tuning (peft_type SUPERTUNING), trained
 * `<module>.supertuning_values` (n) at `<module>.supertuning_indices` (n) int32 flat positions of the
 * (out, in) weight, plus with a config `r` ("Supra") `supertuning_lora_A.weight` (r, in) and
 * `supertuning_lora_B.weight` (out, r) scaled by lora_alpha / r (lora_alpha defaults to 2r). PEFT's
 * merge: W.flatten().scatter_add_(indices, values); W += (lora_alpha / r)·B·A. The truth below is
 * that formula in float64. TinyLoRA (peft_type TINYLORA): `<module>.tinylora_A` (r, in) and
 * `tinylora_B` (out, r), the base's SVD factors saved with the adapter, `tinylora_P` (u, r, r), and
 * the vector v shared by every module when weight_tying puts them in one group,
 * `base_model.tinylora_v.0` (u); PEFT's get_delta_weight is B·(Σ_i v_i·P_i)·A. PVeRA (peft_type
 * PVERA): `<module>.pvera_lambda_b` (out), `pvera_lambda_d` (2r), shared `base_model.pvera_A`
 * (2r, in_max) and `base_model.pvera_B` (out_max, r); PEFT merges the mean half,
 * (λ_b ⊙ B[:out]) · (λ_d[:r] ⊙ A[:r, :in]). UniLoRA (peft_type UNILORA) under save_indices:
 * `<module>.unilora_indices_A` (r, in) / `_B` (out, r) int64 and `unilora_scales_A` / `_B` of the
 * same shapes, with the shared `base_model.unilora_theta_d`; PEFT's ΔW is B·A with
 * A = θ[indices_A] ⊙ scales_A, B = θ[indices_B] ⊙ scales_B. And the methods
 * refused, by name, with why.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { veraTruth } from './helpers/peft-delta-truth.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(71);
const vals = gridValues(rand);
const t = fixtureTensor;
const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** The fields PEFT writes to a BEFT adapter_config.json (BeftConfig and PeftConfig's own). */
const beftConfig = (fields: object = {}) => ({
  peft_type: 'BEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, target_modules: ['q_proj', 'k_proj', 'v_proj'], modules_to_save: null, init_weights: true, ...fields,
});

/** The fields PEFT writes to a Super-Tuning adapter_config.json; __post_init__ has set lora_alpha to 2r where r is given. */
const superConfig = (fields: object = {}) => ({
  peft_type: 'SUPERTUNING', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, target_modules: ['q_proj', 'v_proj'], modules_to_save: null, sparsity: 0.99, select_top: true, r: null, lora_alpha: null,
  lora_dropout: 0.0, init_weights: true, save_precomputed_indices: true, ...fields,
});

const q = 'model.layers.0.self_attn.q_proj', k = 'model.layers.0.self_attn.k_proj', v = 'model.layers.0.self_attn.v_proj';
const saved = (module: string, param: string) => `base_model.model.${module}.${param}`;

/** n flat positions of an (out, in) weight as torch.topk would give them: distinct, in no particular order. */
function flatPositions(n: number, size: number): Float64Array {
  const all = Array.from({ length: size }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return Float64Array.from(all.slice(0, n));
}

/** PEFT Super-Tuning's merge in float64: scatter_add of the values, then (α/r)·B·A, all times the user weight. */
function superTruth(w: Float64Array, out: number, inF: number, at: Float64Array, x: Float64Array, weight = 1, lora?: { a: Float64Array; b: Float64Array; r: number; alpha: number }) {
  const res = w.slice();
  for (let i = 0; i < x.length; i++) res[at[i]] += weight * x[i];
  if (lora) {
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < inF; j++) {
        let s = 0;
        for (let c = 0; c < lora.r; c++) s += lora.b[o * lora.r + c] * lora.a[c * inF + j];
        res[o * inF + j] += weight * (lora.alpha / lora.r) * s;
      }
    }
  }
  return res;
}

/** The fields PEFT writes to a TinyLoRA adapter_config.json (TinyLoraConfig and PeftConfig's own). */
const tinyConfig = (fields: object = {}) => ({
  peft_type: 'TINYLORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: 2, u: 64, weight_tying: 1.0, projection_seed: 42, save_projection: true, init_v_bound: 0.02, target_modules: ['q_proj', 'v_proj'],
  tinylora_dropout: 0.0, fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_weights: true, layers_to_transform: null, layers_pattern: null, ...fields,
});

/** PEFT TinyLoRA's ΔW in float64: B (out, r) · (Σ_i v_i·P_i) (r, r) · A (r, in), times the user weight, added to W. */
function tinyTruth(w: Float64Array, out: number, inF: number, r: number, a: Float64Array, b: Float64Array, p: Float64Array, v: Float64Array, weight = 1) {
  const rm = new Float64Array(r * r);
  for (let i = 0; i < v.length; i++) for (let j = 0; j < r * r; j++) rm[j] += v[i] * p[i * r * r + j];
  const res = w.slice();
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < inF; c++) {
      let s = 0;
      for (let j = 0; j < r; j++) for (let k = 0; k < r; k++) s += b[o * r + j] * rm[j * r + k] * a[k * inF + c];
      res[o * inF + c] += weight * s;
    }
  }
  return res;
}

describe.each(['cpu', 'webgpu'])('TinyLoRA (PEFT), %s', (name) => {
  it('B·(Σ v_i·P_i)·A with one v shared by q_proj and v_proj (weight_tying 1.0), r = 2, u = 3, with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 9, inF = 7, r = 2, u = 3;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16'), x = vals(u, 'F32');
    const aq = vals(r * inF, 'BF16'), bq = vals(out * r, 'BF16'), pq = vals(u * r * r, 'F32');
    const av = vals(r * inF, 'BF16'), bv = vals(out * r, 'BF16'), pv = vals(u * r * r, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)], tinyConfig({ u }), [
      t(saved(q, 'tinylora_A'), 'BF16', [r, inF], aq), t(saved(q, 'tinylora_B'), 'BF16', [out, r], bq), t(saved(q, 'tinylora_P'), 'F32', [u, r, r], pq),
      t(saved(v, 'tinylora_A'), 'BF16', [r, inF], av), t(saved(v, 'tinylora_B'), 'BF16', [out, r], bv), t(saved(v, 'tinylora_P'), 'F32', [u, r, r], pv),
      t('base_model.tinylora_v.0', 'F32', [u], x),
    ], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, tinyTruth(wq, out, inF, r, aq, bq, pq, x, 0.5), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, tinyTruth(wv, out, inF, r, av, bv, pv, x, 0.5), 'BF16', v);
  });

  it('a layer narrower than r keeps min(r, out, in) directions (r = 4 on a (3, 5) layer), and r = 1 with u = 1 on a single module (weight_tying 0)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 3, inF = 5, kept = 3, u = 2;
    const w = vals(out * inF, 'F32'), a = vals(kept * inF, 'F32'), b = vals(out * kept, 'F32'), p = vals(u * kept * kept, 'F32'), x = vals(u, 'F32');
    const narrow = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], tinyConfig({ r: 4, u, target_modules: ['q_proj'] }), [
      t(saved(q, 'tinylora_A'), 'F32', [kept, inF], a), t(saved(q, 'tinylora_B'), 'F32', [out, kept], b), t(saved(q, 'tinylora_P'), 'F32', [u, kept, kept], p), t('base_model.tinylora_v.0', 'F32', [u], x),
    ]);
    expectMerged(narrow.get(`${q}.weight`)!.values, tinyTruth(w, out, inF, kept, a, b, p, x), 'F32', `${q} r=4`);
    const o1 = 67, i1 = 33;
    const w1 = vals(o1 * i1, 'F32'), a1 = vals(i1, 'F32'), b1 = vals(o1, 'F32'), p1 = vals(1, 'F32'), x1 = vals(1, 'F32');
    const one = await run(backend, [t(`${k}.weight`, 'F32', [o1, i1], w1)], tinyConfig({ r: 1, u: 1, weight_tying: 0.0, target_modules: ['k_proj'] }), [
      t(saved(k, 'tinylora_A'), 'F32', [1, i1], a1), t(saved(k, 'tinylora_B'), 'F32', [o1, 1], b1), t(saved(k, 'tinylora_P'), 'F32', [1, 1, 1], p1), t('base_model.tinylora_v.0', 'F32', [1], x1),
    ]);
    expectMerged(one.get(`${k}.weight`)!.values, tinyTruth(w1, o1, i1, 1, a1, b1, p1, x1), 'F32', `${k} r=1`);
  });
});

it('TinyLoRA on a GPT-2 Conv1D under fan_in_fan_out: A (r, in), B (out, r), ΔW transposed onto the (in, out) weight', async () => {
  const c = 'transformer.h.0.attn.c_attn', inF = 5, out = 9, r = 2, u = 2;
  const w = vals(inF * out, 'F32'), a = vals(r * inF, 'F32'), b = vals(out * r, 'F32'), p = vals(u * r * r, 'F32'), x = vals(u, 'F32');
  const tensors = await run(backends.cpu!, [t(`${c}.weight`, 'F32', [inF, out], w)], tinyConfig({ u, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
    t(`base_model.model.${c}.tinylora_A`, 'F32', [r, inF], a), t(`base_model.model.${c}.tinylora_B`, 'F32', [out, r], b), t(`base_model.model.${c}.tinylora_P`, 'F32', [u, r, r], p), t('base_model.tinylora_v.0', 'F32', [u], x),
  ]);
  // ΔW (out, in) from the truth on a zero weight, added transposed.
  const delta = tinyTruth(new Float64Array(out * inF), out, inF, r, a, b, p, x);
  const want = w.map((wi, idx) => wi + delta[(idx % out) * inF + Math.floor(idx / out)]);
  expectMerged(tensors.get(`${c}.weight`)!.values, want, 'F32', c);
});

it('TinyLoRA on an embedding: its (vocab, dim) weight takes B·R·A as PEFT\'s Embedding layer forms it', async () => {
  const e = 'model.embed_tokens', vocab = 11, dim = 6, r = 2, u = 2;
  const w = vals(vocab * dim, 'F32'), a = vals(r * dim, 'F32'), b = vals(vocab * r, 'F32'), p = vals(u * r * r, 'F32'), x = vals(u, 'F32');
  const tensors = await run(backends.cpu!, [t(`${e}.weight`, 'F32', [vocab, dim], w)], tinyConfig({ u, target_modules: ['embed_tokens'] }), [
    t(saved(e, 'tinylora_A'), 'F32', [r, dim], a), t(saved(e, 'tinylora_B'), 'F32', [vocab, r], b), t(saved(e, 'tinylora_P'), 'F32', [u, r, r], p), t('base_model.tinylora_v.0', 'F32', [u], x),
  ]);
  expectMerged(tensors.get(`${e}.weight`)!.values, tinyTruth(w, vocab, dim, r, a, b, p, x), 'F32', e);
});

it('refuses TinyLoRA files whose v cannot be matched to modules, without saved projections, or that disagree with their config', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32')), t(`${v}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const mod = (m: string, r = 2, u = 3, withP = true) => [t(saved(m, 'tinylora_A'), 'F32', [r, 5], vals(r * 5, 'F32')), t(saved(m, 'tinylora_B'), 'F32', [4, r], vals(4 * r, 'F32')), ...(withP ? [t(saved(m, 'tinylora_P'), 'F32', [u, r, r], vals(u * r * r, 'F32'))] : [])];
  const vec = (g: number, u = 3) => t(`base_model.tinylora_v.${g}`, 'F32', [u], vals(u, 'F32'));
  await expect(preparePeftFolder(base, tinyConfig({ u: 3, weight_tying: 0.0 }), [...mod(q), ...mod(v), vec(0), vec(1)]))
    .rejects.toThrow(/TinyLoRA with 2 shared vectors v \(2 modules, weight_tying 0\): PEFT hands each module the v of its group by the module's position in the model's named_modules\(\) order/);
  await expect(preparePeftFolder(base, tinyConfig({ u: 3, save_projection: false }), [...mod(q, 2, 3, false), vec(0)]))
    .rejects.toThrow(/q_proj" has no tinylora_P \(saved with save_projection: false\): PEFT regenerates these projections/);
  await expect(preparePeftFolder(base, tinyConfig({ u: 3, r: 3 }), [...mod(q), vec(0)])).rejects.toThrow(/has rank 2 and u 3, but the config \(r 3, u 3\) gives rank 3/);
  await expect(preparePeftFolder(base, tinyConfig({ u: 3 }), mod(q))).rejects.toThrow(/TinyLoRA adapter without its shared base_model\.tinylora_v vector/);
});

/** The fields PEFT writes to a PVeRA adapter_config.json (PveraConfig and PeftConfig's own). */
const pveraConfig = (fields: object = {}) => ({
  peft_type: 'PVERA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: 256, target_modules: ['q_proj', 'v_proj'], projection_prng_key: 0, save_projection: true, pvera_dropout: 0.0, d_initial: 0.1,
  fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_weights: true, layers_to_transform: null, layers_pattern: null, sample_at_inference: false, generator_seed: null, ...fields,
});


describe.each(['cpu', 'webgpu'])('PVeRA (PEFT), %s', (name) => {
  it('the mean half of the shared projections, sliced to each layer (q_proj (8, 6), v_proj (4, 3)), r = 2, with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const r = 2, outMax = 8, inMax = 6;
    const a = vals(2 * r * inMax, 'F32'), b = vals(outMax * r, 'F32');
    const wq = vals(8 * 6, 'BF16'), wv = vals(4 * 3, 'BF16');
    const lbq = vals(8, 'F32'), ldq = vals(2 * r, 'F32'), lbv = vals(4, 'F32'), ldv = vals(2 * r, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [8, 6], wq), t(`${v}.weight`, 'BF16', [4, 3], wv)], pveraConfig({ r }), [
      t('base_model.pvera_A', 'F32', [2 * r, inMax], a), t('base_model.pvera_B', 'F32', [outMax, r], b),
      t(saved(q, 'pvera_lambda_b'), 'F32', [8], lbq), t(saved(q, 'pvera_lambda_d'), 'F32', [2 * r], ldq),
      t(saved(v, 'pvera_lambda_b'), 'F32', [4], lbv), t(saved(v, 'pvera_lambda_d'), 'F32', [2 * r], ldv),
    ], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, veraTruth(wq, 8, 6, r, a, inMax, b, lbq, ldq, 0.5), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, veraTruth(wv, 4, 3, r, a, inMax, b, lbv, ldv, 0.5), 'BF16', v);
  });
});

it('PVeRA r = 1 on a GPT-2 Conv1D under fan_in_fan_out: ΔW transposed onto the (in, out) weight', async () => {
  const c = 'transformer.h.0.attn.c_attn', inF = 5, out = 7, r = 1;
  const w = vals(inF * out, 'F32'), a = vals(2 * inF, 'F32'), b = vals(out, 'F32'), lb = vals(out, 'F32'), ld = vals(2, 'F32');
  const tensors = await run(backends.cpu!, [t(`${c}.weight`, 'F32', [inF, out], w)], pveraConfig({ r, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
    t('base_model.pvera_A', 'F32', [2, inF], a), t('base_model.pvera_B', 'F32', [out, 1], b),
    t(`base_model.model.${c}.pvera_lambda_b`, 'F32', [out], lb), t(`base_model.model.${c}.pvera_lambda_d`, 'F32', [2], ld),
  ]);
  const delta = veraTruth(new Float64Array(out * inF), out, inF, r, a, inF, b, lb, ld);
  expectMerged(tensors.get(`${c}.weight`)!.values, w.map((wi, idx) => wi + delta[(idx % out) * inF + Math.floor(idx / out)]), 'F32', c);
});

it('refuses PVeRA without its projections whose config does not say save_projection: false, or with a rank its config does not give', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const mod = [t(saved(q, 'pvera_lambda_b'), 'F32', [4], vals(4, 'F32')), t(saved(q, 'pvera_lambda_d'), 'F32', [4], vals(4, 'F32'))];
  const shared = [t('base_model.pvera_A', 'F32', [4, 5], vals(20, 'F32')), t('base_model.pvera_B', 'F32', [4, 2], vals(8, 'F32'))];
  await expect(preparePeftFolder(base, pveraConfig({ r: 2 }), mod)).rejects.toThrow(/PVeRA adapter without base_model\.pvera_A and pvera_B, and its config does not say save_projection: false \(PEFT refuses to load it\)/);
  await expect(preparePeftFolder(base, pveraConfig({ r: 4 }), [...mod, ...shared])).rejects.toThrow(/q_proj" has rank 2 but the config's r is 4/);
});

/** The fields PEFT writes to a UniLoRA adapter_config.json (UniLoraConfig and PeftConfig's own). */
const uniConfig = (fields: object = {}) => ({
  peft_type: 'UNILORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: 4, proj_seed: 42, theta_d_length: 256, target_modules: ['q_proj', 'v_proj'], unilora_dropout: 0.0, fan_in_fan_out: false, bias: 'none',
  modules_to_save: null, init_theta_d_bound: 0.02, init_weights: true, save_indices: true, layers_to_transform: null, layers_pattern: null, ...fields,
});

/** Integer indices into θ, drawn uniformly. */
const thetaIndices = (n: number, length: number) => Float64Array.from({ length: n }, () => Math.floor(rand() * length));

/** PEFT UniLoRA's ΔW in float64: B·A with A = θ[ia] ⊙ sa (r, in), B = θ[ib] ⊙ sb (out, r), times the user weight, added to W. */
function uniTruth(w: Float64Array, out: number, inF: number, r: number, theta: Float64Array, ia: Float64Array, sa: Float64Array, ib: Float64Array, sb: Float64Array, weight = 1) {
  const res = w.slice();
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let c = 0; c < r; c++) s += theta[ib[o * r + c]] * sb[o * r + c] * theta[ia[c * inF + i]] * sa[c * inF + i];
      res[o * inF + i] += weight * s;
    }
  }
  return res;
}

describe.each(['cpu', 'webgpu'])('UniLoRA (PEFT), %s', (name) => {
  it('A and B gathered from the shared theta_d by their saved int64 indices and bf16 scales, r = 2 and (rank_pattern ignored) on two layers, with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const r = 2, len = 16, theta = vals(len, 'F32');
    const layer = (out: number, inF: number) => ({ w: vals(out * inF, 'BF16'), ia: thetaIndices(r * inF, len), sa: vals(r * inF, 'BF16'), ib: thetaIndices(out * r, len), sb: vals(out * r, 'BF16') });
    const lq = layer(9, 7), lv = layer(3, 7);
    const files = (m: string, l: ReturnType<typeof layer>, out: number, inF: number) => [
      t(saved(m, 'unilora_indices_A'), 'I64', [r, inF], l.ia), t(saved(m, 'unilora_indices_B'), 'I64', [out, r], l.ib),
      t(saved(m, 'unilora_scales_A'), 'BF16', [r, inF], l.sa), t(saved(m, 'unilora_scales_B'), 'BF16', [out, r], l.sb),
    ];
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [9, 7], lq.w), t(`${v}.weight`, 'BF16', [3, 7], lv.w)], uniConfig({ r, theta_d_length: len, rank_pattern: { q_proj: 8 } }),
      [...files(q, lq, 9, 7), ...files(v, lv, 3, 7), t('base_model.unilora_theta_d', 'F32', [len], theta)], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, uniTruth(lq.w, 9, 7, r, theta, lq.ia, lq.sa, lq.ib, lq.sb, 0.5), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, uniTruth(lv.w, 3, 7, r, theta, lv.ia, lv.sa, lv.ib, lv.sb, 0.5), 'BF16', v);
  });
});

it('UniLoRA r = 1 on a GPT-2 Conv1D under fan_in_fan_out: ΔW transposed onto the (in, out) weight', async () => {
  const c = 'transformer.h.0.attn.c_attn', inF = 5, out = 6, len = 4, theta = vals(len, 'F32');
  const w = vals(inF * out, 'F32'), ia = thetaIndices(inF, len), sa = vals(inF, 'F32'), ib = thetaIndices(out, len), sb = vals(out, 'F32');
  const tensors = await run(backends.cpu!, [t(`${c}.weight`, 'F32', [inF, out], w)], uniConfig({ r: 1, theta_d_length: len, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
    t(`base_model.model.${c}.unilora_indices_A`, 'I64', [1, inF], ia), t(`base_model.model.${c}.unilora_indices_B`, 'I64', [out, 1], ib),
    t(`base_model.model.${c}.unilora_scales_A`, 'F32', [1, inF], sa), t(`base_model.model.${c}.unilora_scales_B`, 'F32', [out, 1], sb), t('base_model.unilora_theta_d', 'F32', [len], theta),
  ]);
  const delta = uniTruth(new Float64Array(out * inF), out, inF, 1, theta, ia, sa, ib, sb);
  expectMerged(tensors.get(`${c}.weight`)!.values, w.map((wi, idx) => wi + delta[(idx % out) * inF + Math.floor(idx / out)]), 'F32', c);
});

it('refuses UniLoRA saved without its indices, with a theta_d its config does not size, or an index outside theta_d', async () => {
  const base = [t(`${q}.weight`, 'F32', [3, 4], vals(12, 'F32'))];
  const mod = (ia: number[]) => [
    t(saved(q, 'unilora_indices_A'), 'I64', [1, 4], Float64Array.from(ia)), t(saved(q, 'unilora_indices_B'), 'I64', [3, 1], Float64Array.from([0, 1, 2])),
    t(saved(q, 'unilora_scales_A'), 'F32', [1, 4], vals(4, 'F32')), t(saved(q, 'unilora_scales_B'), 'F32', [3, 1], vals(3, 'F32')),
  ];
  const theta = (n: number) => t('base_model.unilora_theta_d', 'F32', [n], vals(n, 'F32'));
  await expect(preparePeftFolder(base, uniConfig({ r: 1, theta_d_length: 4, save_indices: false }), [theta(4)]))
    .rejects.toThrow(/UniLoRA adapter without unilora_indices and unilora_scales \(saved with save_indices: false, PEFT's default\): PEFT regenerates them from proj_seed/);
  await expect(preparePeftFolder(base, uniConfig({ r: 1, theta_d_length: 8 }), [...mod([0, 1, 2, 3]), theta(4)])).rejects.toThrow(/has rank 1 and a theta_d of 4, but the config says r 1 and theta_d_length 8/);
  await expect(run(backends.cpu!, base, uniConfig({ r: 1, theta_d_length: 4 }), [...mod([0, 1, 4, 3]), theta(4)])).rejects.toThrow(/UniLoRA module "model\.layers\.0\.self_attn\.q_proj": unilora_indices_A entry 2 \(4\) is outside theta_d's 4 values/);
});

describe.each(['cpu', 'webgpu'])('BEFT (PEFT), %s', (name) => {
  it('adds beft_bias (1, out) to each base bias, times the user weight; the weights stay as they are', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 7, inF = 5;
    const wq = vals(out * inF, 'BF16'), bq = vals(out, 'BF16'), wv = vals(out * inF, 'BF16'), bv = vals(out, 'BF16');
    const dq = vals(out, 'F32'), dv = vals(out, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${q}.bias`, 'BF16', [out], bq), t(`${v}.weight`, 'BF16', [out, inF], wv), t(`${v}.bias`, 'BF16', [out], bv)],
      beftConfig(), [t(saved(q, 'beft_bias'), 'F32', [1, out], dq), t(saved(v, 'beft_bias'), 'F32', [1, out], dv)], 0.5);
    expectMerged(tensors.get(`${q}.bias`)!.values, bq.map((b, i) => b + 0.5 * dq[i]), 'BF16', `${q}.bias`);
    expectMerged(tensors.get(`${v}.bias`)!.values, bv.map((b, i) => b + 0.5 * dv[i]), 'BF16', `${v}.bias`);
    expect(Array.from(tensors.get(`${q}.weight`)!.values)).toEqual(Array.from(wq));
    expect(Array.from(tensors.get(`${v}.weight`)!.values)).toEqual(Array.from(wv));
  });
});

describe.each(['cpu', 'webgpu'])('Super-Tuning (PEFT), %s', (name) => {
  it('sparse values scatter-added at their int32 flat positions (r null), with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 9, inF = 11, nq = 5, nv = 1;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const aq = flatPositions(nq, out * inF), av = flatPositions(nv, out * inF), xq = vals(nq, 'F32'), xv = vals(nv, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)], superConfig(), [
      t(saved(q, 'supertuning_values'), 'F32', [nq], xq), t(saved(q, 'supertuning_indices'), 'I32', [nq], aq),
      t(saved(v, 'supertuning_values'), 'F32', [nv], xv), t(saved(v, 'supertuning_indices'), 'I32', [nv], av),
    ], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, superTruth(wq, out, inF, aq, xq, 0.5), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, superTruth(wv, out, inF, av, xv, 0.5), 'BF16', v);
  });

  it('Supra: r = 1 with lora_alpha 2 (PEFT\'s 2r), and r = 3 with lora_alpha null (2r too), on a larger layer merged by row slabs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 67, inF = 33, n = 22;
    const w = vals(out * inF, 'F32'), at = flatPositions(n, out * inF), x = vals(n, 'F32');
    const a1 = vals(inF, 'F32'), b1 = vals(out, 'F32');
    const one = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], superConfig({ r: 1, lora_alpha: 2 }), [
      t(saved(q, 'supertuning_values'), 'F32', [n], x), t(saved(q, 'supertuning_indices'), 'I32', [n], at),
      t(saved(q, 'supertuning_lora_A.weight'), 'F32', [1, inF], a1), t(saved(q, 'supertuning_lora_B.weight'), 'F32', [out, 1], b1),
    ]);
    expectMerged(one.get(`${q}.weight`)!.values, superTruth(w, out, inF, at, x, 1, { a: a1, b: b1, r: 1, alpha: 2 }), 'F32', `${q} r=1`);
    const a3 = vals(3 * inF, 'F32'), b3 = vals(out * 3, 'F32');
    const three = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], superConfig({ r: 3 }), [
      t(saved(q, 'supertuning_values'), 'F32', [n], x), t(saved(q, 'supertuning_indices'), 'I32', [n], at),
      t(saved(q, 'supertuning_lora_A.weight'), 'F32', [3, inF], a3), t(saved(q, 'supertuning_lora_B.weight'), 'F32', [out, 3], b3),
    ], 0.75);
    expectMerged(three.get(`${q}.weight`)!.values, superTruth(w, out, inF, at, x, 0.75, { a: a3, b: b3, r: 3, alpha: 6 }), 'F32', `${q} r=3`);
  });
});

it('Super-Tuning: an explicit lora_alpha scales the pair by lora_alpha / r; a position listed twice gets both values, as scatter_add sums them', async () => {
  const out = 5, inF = 4, n = 3;
  const w = vals(out * inF, 'F32'), at = Float64Array.from([6, 19, 6]), x = vals(n, 'F32');
  const a = vals(2 * inF, 'F32'), b = vals(out * 2, 'F32');
  const tensors = await run(backends.cpu!, [t(`${k}.weight`, 'F32', [out, inF], w)], superConfig({ target_modules: ['k_proj'], r: 2, lora_alpha: 3 }), [
    t(saved(k, 'supertuning_values'), 'F32', [n], x), t(saved(k, 'supertuning_indices'), 'I64', [n], at),
    t(saved(k, 'supertuning_lora_A.weight'), 'F32', [2, inF], a), t(saved(k, 'supertuning_lora_B.weight'), 'F32', [out, 2], b),
  ]);
  expectMerged(tensors.get(`${k}.weight`)!.values, superTruth(w, out, inF, at, x, 1, { a, b, r: 2, alpha: 3 }), 'F32', k);
});

it('refuses Super-Tuning files that do not say where the values go or disagree with their config', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const sparse = (at: number[]) => [t(saved(q, 'supertuning_values'), 'F32', [at.length], vals(at.length, 'F32')), t(saved(q, 'supertuning_indices'), 'I32', [at.length], Float64Array.from(at))];
  const pair = [t(saved(q, 'supertuning_lora_A.weight'), 'F32', [2, 5], vals(10, 'F32')), t(saved(q, 'supertuning_lora_B.weight'), 'F32', [4, 2], vals(8, 'F32'))];
  await expect(preparePeftFolder(base, superConfig({ save_precomputed_indices: false }), sparse([3]).slice(0, 1)))
    .rejects.toThrow(/q_proj" has no supertuning_indices \(saved with save_precomputed_indices: false\): PEFT recomputes these positions with a top-k/);
  await expect(run(backends.cpu!, base, superConfig(), sparse([3, 20]))).rejects.toThrow(/Super-Tuning module "model\.layers\.0\.self_attn\.q_proj": supertuning_indices entry 1 \(20\) is outside the layer's 4 × 5 = 20 elements/);
  await expect(preparePeftFolder(base, superConfig({ lora_alpha: 4 }), sparse([3]))).rejects.toThrow(/"lora_alpha" is set but "r" is not, which SupertuningConfig refuses/);
  await expect(preparePeftFolder(base, superConfig(), [...sparse([3]), ...pair])).rejects.toThrow(/has base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.supertuning_lora_A\.weight but the config has no r/);
  await expect(preparePeftFolder(base, superConfig({ r: 2, lora_alpha: 4 }), sparse([3]))).rejects.toThrow(/the config's r is 2 \(Supra\), but supertuning_lora_A\.weight is missing/);
  await expect(preparePeftFolder(base, superConfig({ r: 3, lora_alpha: 6 }), [...sparse([3]), ...pair])).rejects.toThrow(/do not fit the config's r 3/);
});

it('refuses BEFT on a layer without a bias, as PEFT\'s merge raises', async () => {
  const prepared = await preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], beftConfig(), [t(saved(q, 'beft_bias'), 'F32', [1, 4], vals(4, 'F32'))]);
  expect(prepared.plan.problems.map((p) => p.message).join('\n')).toMatch(/has base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.beft_bias, a change of its bias, but the base has no model\.layers\.0\.self_attn\.q_proj\.bias/);
  await prepared.close();
});

it('refuses the newer PEFT methods whose files do not fix a merged weight, saying why', async () => {
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], cfg, tensors);
  const any = [t(saved(q, 'x'), 'F32', [2], vals(2, 'F32'))];
  await expect(open({ peft_type: 'OSF' }, any)).rejects.toThrow(/PEFT method OSF is not supported: its merge replaces the weight by U_high·S_high·V_high .* recomputes it with an SVD of the base weight/);
  await expect(open({ peft_type: 'PSOFT' }, any)).rejects.toThrow(/PEFT method PSOFT is not supported: its factors A and B are not saved/);
  await expect(open({ peft_type: 'FROD' }, any)).rejects.toThrow(/PEFT method FROD is not supported: its U is not saved/);
  await expect(open({ peft_type: 'CARTRIDGE' }, any)).rejects.toThrow(/PEFT method CARTRIDGE is not supported: it stores a key\/value cache prefix/);
  await expect(open({ peft_type: 'ADAMSS' }, any)).rejects.toThrow(/PEFT method ADAMSS is not supported: which output rows each of its subspaces updates is not saved: PEFT recomputes it .* by clustering the base weight's singular vectors/);
});

describe('refusals through the CLI: one line, nothing written', () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  it('Super-Tuning saved without its indices', async () => {
    await expectPeftCliRefusal(base, superConfig({ save_precomputed_indices: false }), [t(saved(q, 'supertuning_values'), 'F32', [1], vals(1, 'F32'))],
      /q_proj" has no supertuning_indices \(saved with save_precomputed_indices: false\)/);
  });
  it('OSF, whose high-rank part PEFT recomputes from the base at load', async () => {
    await expectPeftCliRefusal(base, { peft_type: 'OSF', target_modules: ['q_proj'] }, [t(saved(q, 'osf_svd_params.U_low'), 'F32', [4, 2], vals(8, 'F32'))],
      /PEFT method OSF is not supported: its merge replaces the weight by U_high·S_high·V_high/);
  });
});
