/**
 * PEFT GLoRA folders (peft_type GLORA, PEFT's own tuners/glora, not LyCORIS's a1/a2/b1/b2): on an
 * nn.Linear, `<module>.glora_A.Xd` (out, r) and `.Xu` (r, in) (config_A_B "lora"), `glora_A.X`
 * (out, 1) ("vector") or (1) ("constant"), the same for glora_B, and the zero buffers
 * `glora_C.zeros` (in, 1), `glora_D.zeros` / `glora_E.zeros` (out) that a layer without a bias
 * keeps. PEFT merges W' = W + W ⊙ A + B, and on a layer with a bias (its trained `glora_C`, `glora_D`,
 * `glora_E`) b' = b + b ⊙ D + E + W·C with the original W. The truth forms A, B, C and the sums in
 * float64, element by element, with a user weight s scaling what is added.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { peftFolder } from './helpers/hf-folder.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeFileInMemory, mergeInMemory } from './helpers/merge-backends.js';
import { buildGguf, readGguf, tensorData, tensorValues } from './helpers/gguf-builder.js';
import { LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { fixtureTensor, gridValues, mergePeftFolder, expectPeftCliRefusal } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(71);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT writes to a GLoRA adapter_config.json (GloraConfig.to_dict). */
const config = (fields: object) => ({
  task_type: 'CAUSAL_LM', peft_type: 'GLORA', auto_mapping: null, base_model_name_or_path: 'meta-llama/Llama-3.2-1B', revision: null,
  inference_mode: true, peft_version: '0.20.0', r: 3, target_modules: ['q_proj', 'v_proj'], bias: 'none', modules_to_save: null,
  config_A_B: 'lora', config_C: 'lora', config_D_E: 'constant', init_weights: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** W[o, i] + s·(W[o, i]·A[o, i] + B[o, i]), A and B given element by element. */
function truth(w: Float64Array, out: number, inF: number, a: (o: number, i: number) => number, b: (o: number, i: number) => number, s = 1): Float64Array {
  const res = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) res[o * inF + i] = w[o * inF + i] + s * (w[o * inF + i] * a(o, i) + b(o, i));
  return res;
}

/** (Xd·Xu)[o, i] for Xd (out, r), Xu (r, in). */
const product = (xd: Float64Array, xu: Float64Array, r: number, inF: number) => (o: number, i: number) => {
  let m = 0;
  for (let k = 0; k < r; k++) m += xd[o * r + k] * xu[k * inF + i];
  return m;
};

/** b[o] + s·(b[o]·D[o] + E[o] + Σ_i W[o, i]·C[i]): GloraLayer.merge's b0 * D + E + W0 @ C. */
function biasTruth(w: Float64Array, b: Float64Array, out: number, inF: number, c: (i: number) => number, d: (o: number) => number, e: (o: number) => number, s: number): Float64Array {
  return Float64Array.from({ length: out }, (_, o) => {
    let wc = 0;
    for (let i = 0; i < inF; i++) wc += w[o * inF + i] * c(i);
    return b[o] + s * (b[o] * d(o) + e(o) + wc);
  });
}

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const p = (key: string, rest: string) => `base_model.model.${key}.${rest}`;
/** The zero buffers PEFT saves for the bias path of a layer without a bias. */
const biasZeros = (key: string, out: number, inF: number) => [
  t(p(key, 'glora_C.zeros'), 'F32', [inF, 1], new Float64Array(inF)), t(p(key, 'glora_D.zeros'), 'F32', [out], new Float64Array(out)), t(p(key, 'glora_E.zeros'), 'F32', [out], new Float64Array(out)),
];
const loraPaths = (key: string, dtype: 'F32' | 'BF16' | 'F16', out: number, inF: number, r: number) => {
  const ad = vals(out * r, dtype), au = vals(r * inF, dtype), bd = vals(out * r, dtype), bu = vals(r * inF, dtype);
  return {
    ad, au, bd, bu,
    tensors: [t(p(key, 'glora_A.Xd'), dtype, [out, r], ad), t(p(key, 'glora_A.Xu'), dtype, [r, inF], au), t(p(key, 'glora_B.Xd'), dtype, [out, r], bd), t(p(key, 'glora_B.Xu'), dtype, [r, inF], bu), ...biasZeros(key, out, inF)],
  };
};

/** A trained bias path as PEFT saves it under config_C "lora", config_D_E "constant": C = Xd (in, r) · Xu (r, 1), D and E one value each. */
const biasPath = (key: string, dtype: 'F32' | 'BF16', out: number, inF: number, r: number) => {
  const cd = vals(inF * r, dtype), cu = vals(r, dtype), d = vals(1, dtype), e = vals(1, dtype);
  return { cd, cu, d, e, tensors: [t(p(key, 'glora_C.Xd'), dtype, [inF, r], cd), t(p(key, 'glora_C.Xu'), dtype, [r, 1], cu), t(p(key, 'glora_D.X'), dtype, [1], d), t(p(key, 'glora_E.X'), dtype, [1], e)] };
};

describe.each(['cpu', 'webgpu'])('GLoRA (PEFT), %s', (name) => {
  it('config_A_B "lora": W + W ⊙ (Xd·Xu)_A + (Xd·Xu)_B on two projections (r = 3, f32 paths on a bf16 base, 10 × 7)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 10, inF = 7, r = 3;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const fq = loraPaths(q, 'F32', out, inF, r), fv = loraPaths(v, 'F32', out, inF, r);
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)], config({ r }), [...fq.tensors, ...fv.tensors]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(wq, out, inF, product(fq.ad, fq.au, r, inF), product(fq.bd, fq.bu, r, inF)), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(wv, out, inF, product(fv.ad, fv.au, r, inF), product(fv.bd, fv.bu, r, inF)), 'BF16', v);
  });

  it('r = 1 with bf16 paths on an f32 base (13 × 5), a user weight of 0.5 scaling the added part', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 13, inF = 5, r = 1;
    const w = vals(out * inF, 'F32'), f = loraPaths(q, 'BF16', out, inF, r);
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ r, target_modules: ['q_proj'] }), f.tensors, 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, out, inF, product(f.ad, f.au, r, inF), product(f.bd, f.bu, r, inF), 0.5), 'F32', q);
  });

  it('config_A_B "vector": A and B (out, 1), one value per output row over every input (f16 base, 9 × 6)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 9, inF = 6;
    const w = vals(out * inF, 'F16'), a = vals(out, 'F32'), b = vals(out, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F16', [out, inF], w)], config({ config_A_B: 'vector', target_modules: ['q_proj'] }),
      [t(p(q, 'glora_A.X'), 'F32', [out, 1], a), t(p(q, 'glora_B.X'), 'F32', [out, 1], b), ...biasZeros(q, out, inF)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, out, inF, (o) => a[o], (o) => b[o]), 'F16', q);
  });

  it('config_A_B "constant": one value each for A and B (bf16 base, 11 × 3), weight 0.75', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 11, inF = 3;
    const w = vals(out * inF, 'BF16'), a = vals(1, 'F32'), b = vals(1, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w)], config({ config_A_B: 'constant', config_C: 'none', config_D_E: 'none', target_modules: ['q_proj'] }),
      [t(p(q, 'glora_A.X'), 'F32', [1], a), t(p(q, 'glora_B.X'), 'F32', [1], b), ...biasZeros(q, out, inF)], 0.75);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, out, inF, () => a[0], () => b[0], 0.75), 'BF16', q);
  });

  it.for([1, 0.5])('a trained bias path (Qwen2\'s q_proj has a bias; config_C "lora", config_D_E "constant", the defaults): b + s·(b ⊙ D + E + W·C), W the base weight, at weight %d', async (s, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 6, inF = 5, r = 2;
    const w = vals(out * inF, 'BF16'), bias = vals(out, 'BF16');
    const f = loraPaths(q, 'F32', out, inF, r), c = biasPath(q, 'F32', out, inF, r);
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w), t(`${q}.bias`, 'BF16', [out], bias)],
      config({ r, base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', target_modules: ['q_proj'] }), [...f.tensors.slice(0, 4), ...c.tensors], s);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, out, inF, product(f.ad, f.au, r, inF), product(f.bd, f.bu, r, inF), s), 'BF16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, biasTruth(w, bias, out, inF, (i) => product(c.cd, c.cu, r, 1)(i, 0), () => c.d[0], () => c.e[0], s), 'BF16', `${q}.bias`);
  });

  it('config_C "vector", config_D_E "vector" on an f16 layer with config_A_B "none" (the weight unchanged, the bias merged)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 7, inF = 4;
    const w = vals(out * inF, 'F16'), bias = vals(out, 'F16'), cx = vals(inF, 'F32'), d = vals(out, 'F32'), e = vals(out, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F16', [out, inF], w), t(`${q}.bias`, 'F16', [out], bias)],
      config({ config_A_B: 'none', config_C: 'vector', config_D_E: 'vector', target_modules: ['q_proj'] }), [
        t(p(q, 'glora_A.zeros'), 'F32', [out, inF], new Float64Array(out * inF)), t(p(q, 'glora_B.zeros'), 'F32', [out, inF], new Float64Array(out * inF)),
        t(p(q, 'glora_C.X'), 'F32', [inF, 1], cx), t(p(q, 'glora_D.X'), 'F32', [out], d), t(p(q, 'glora_E.X'), 'F32', [out], e),
      ]);
    expectMerged(tensors.get(`${q}.weight`)!.values, w, 'F16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, biasTruth(w, bias, out, inF, (i) => cx[i], (o) => d[o], (o) => e[o], 1), 'F16', `${q}.bias`);
  });
});

describe('GLoRA (PEFT) refusals through the CLI: one line, nothing written', () => {
  const refuse = expectPeftCliRefusal;
  const w = (key: string, shape: number[]) => t(`${key}.weight`, 'F32', shape, vals(shape[0] * shape[1], 'F32'));

  it('a trained bias path on a layer the base holds no bias for (PEFT builds it only on a layer with one)', async () => {
    const out = 4, inF = 5, r = 2;
    await refuse([w(q, [out, inF])], config({ r, target_modules: ['q_proj'] }), [
      ...loraPaths(q, 'F32', out, inF, r).tensors.slice(0, 4), ...biasPath(q, 'F32', out, inF, r).tensors,
    ], /q_proj": has a trained GLoRA bias path \(base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.glora_C\.Xd\), which PEFT creates only on a layer with a bias, but the base has no model\.layers\.0\.self_attn\.q_proj\.bias/);
  });

  it('a bias path whose C does not fit the layer\'s inputs, or whose D and E disagree with config_D_E', async () => {
    const out = 4, inF = 5, r = 2;
    const base = [w(q, [out, inF]), t(`${q}.bias`, 'F32', [out], vals(out, 'F32'))];
    await refuse(base, config({ r, target_modules: ['q_proj'] }), [
      ...loraPaths(q, 'F32', out, inF, r).tensors.slice(0, 4), ...biasPath(q, 'F32', out, inF + 1, r).tensors,
    ], /q_proj": the GLoRA bias path's C has 6 rows, the layer's inputs are 5/);
    await refuse(base, config({ r, config_D_E: 'vector', target_modules: ['q_proj'] }), [
      ...loraPaths(q, 'F32', out, inF, r).tensors.slice(0, 4), ...biasPath(q, 'F32', out, inF, r).tensors,
    ], /q_proj": the GLoRA bias path's D and E have 1 values, the weight's A and B 4 rows/);
  });

  it('paths that disagree with r or config_A_B, a bad config value, a zero buffer that is not zero', async () => {
    await refuse([w(q, [4, 5])], config({ r: 3, target_modules: ['q_proj'] }), loraPaths(q, 'F32', 4, 5, 2).tensors, /q_proj": glora_A\.Xd \(4, 2\) has rank 2 but the config's r is 3/);
    await refuse([w(q, [4, 5])], config({ r: 2, config_A_B: 'vector', target_modules: ['q_proj'] }), loraPaths(q, 'F32', 4, 5, 2).tensors,
      /config_A_B is "vector", which saves glora_A\.X, but the file lacks glora_A\.X/);
    await refuse([w(q, [4, 5])], config({ config_D_E: 'lora', target_modules: ['q_proj'] }), loraPaths(q, 'F32', 4, 5, 8).tensors,
      /GLoRA "config_D_E" must be "vector", "constant", "none" \(GloraConfig raises ValueError\), got "lora"/);
    const bad = loraPaths(q, 'F32', 4, 5, 2).tensors;
    bad[6] = t(p(q, 'glora_E.zeros'), 'F32', [4], Float64Array.from([0, 0, 0.5, 0]));
    await refuse([w(q, [4, 5])], config({ r: 2, target_modules: ['q_proj'] }), bad, /glora_E\.zeros" holds 0\.5 at element 2; PEFT creates it as zeros/);
  });

  it('resize: a map of W is no low-rank product', async () => {
    await refuse([w(q, [4, 5])], config({ r: 2, target_modules: ['q_proj'] }), loraPaths(q, 'F32', 4, 5, 2).tensors, /q_proj" is GLoRA \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
  });
});

describe('GLoRA (PEFT) bias path on the command line', () => {
  it('inspect names it, and --dry-run plans the bias with it at the weight', async () => {
    const dirs = tempDirs();
    try {
      const out = 4, inF = 5, r = 2;
      const base = [t(`${q}.weight`, 'F32', [out, inF], vals(out * inF, 'F32')), t(`${q}.bias`, 'F32', [out], vals(out, 'F32'))];
      const dir = dirs.make({ 'base.safetensors': buildSafetensors(base), ...Object.fromEntries(Object.entries(peftFolder(config({ r, target_modules: ['q_proj'] }), [...loraPaths(q, 'F32', out, inF, r).tensors.slice(0, 4), ...biasPath(q, 'F32', out, inF, r).tensors])).map(([f, d]) => [`adapter/${f}`, d])) });
      const inspect = await runCli(['inspect', join(dir, 'adapter')]);
      expect(inspect.code, inspect.stderr).toBe(0);
      expect(inspect.stdout).toContain('linear peft-glora+glora bias path ×1');
      expect(inspect.stdout).toMatch(/model\.layers\.0\.self_attn\.q_proj {2}r=2 scale=1 \+ GLoRA bias path \(b ⊙ D \+ E \+ W·C\)/);
      const plan = await runCli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'adapter'), '--weight', '0.5', '--out', join(dir, 'out.safetensors'), '--dry-run']);
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stdout + plan.stderr).toMatch(/model\.layers\.0\.self_attn\.q_proj\.bias \(bias\) ← model\.layers\.0\.self_attn\.q_proj GLoRA bias path scale=0\.5\n/);
    } finally {
      dirs.removeAll();
    }
  });
});

/**
 * Two GLoRA adapters on one layer in one merge: PEFT's GloraLayer.merge (since PR #3098) forms every
 * adapter's change from the original W0 and b0, not one after the other: W' = W0 + Σ s_k·(W0 ⊙ A_k + B_k),
 * b' = b0 + Σ s_k·(b0 ⊙ D_k + E_k + W0·C_k), so the second adapter's W ⊙ A, b ⊙ D and W·C read W0 and b0.
 */
describe.each(['cpu', 'webgpu'])('two GLoRA (PEFT) adapters on one layer, %s: each from the original W0 and b0, as GloraLayer.merge', (name) => {
  const out = 6, inF = 5, r = 2;
  const w = vals(out * inF, 'BF16'), bias = vals(out, 'BF16');
  const base = { 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'BF16', [out, inF], w), t(`${q}.bias`, 'BF16', [out], bias)]) };
  const cfg = (fields: object) => config({ r, base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', target_modules: ['q_proj'], ...fields });
  const f1 = loraPaths(q, 'F32', out, inF, r), c1 = biasPath(q, 'F32', out, inF, r);
  const f2 = loraPaths(q, 'F32', out, inF, r), c2 = biasPath(q, 'F32', out, inF, r);
  const a2 = vals(out, 'F32'), b2 = vals(out, 'F32'), cx2 = vals(inF, 'F32'), d2 = vals(out, 'F32'), e2 = vals(out, 'F32');
  const vector2 = [t(p(q, 'glora_A.X'), 'F32', [out, 1], a2), t(p(q, 'glora_B.X'), 'F32', [out, 1], b2), t(p(q, 'glora_C.X'), 'F32', [inF, 1], cx2), t(p(q, 'glora_D.X'), 'F32', [out], d2), t(p(q, 'glora_E.X'), 'F32', [out], e2)];
  const first = { files: peftFolder(cfg({}), [...f1.tensors.slice(0, 4), ...c1.tensors]), weight: 1 };
  /** W0[o, i] + Σ_k s_k·(W0[o, i]·A_k[o, i] + B_k[o, i]). */
  const weightTruth = (terms: { s: number; a: (o: number, i: number) => number; b: (o: number, i: number) => number }[]) =>
    Float64Array.from({ length: out * inF }, (_, j) => {
      const o = Math.floor(j / inF), i = j % inF;
      return w[j] + terms.reduce((sum, k) => sum + k.s * (w[j] * k.a(o, i) + k.b(o, i)), 0);
    });
  /** b0[o] + Σ_k s_k·(b0[o]·D_k[o] + E_k[o] + Σ_i W0[o, i]·C_k[i]). */
  const biasSum = (terms: { s: number; c: (i: number) => number; d: (o: number) => number; e: (o: number) => number }[]) =>
    Float64Array.from({ length: out }, (_, o) => bias[o] + terms.reduce((sum, k) => {
      let wc = 0;
      for (let i = 0; i < inF; i++) wc += w[o * inF + i] * k.c(i);
      return sum + k.s * (bias[o] * k.d(o) + k.e(o) + wc);
    }, 0));
  const merge = async (adapters: { files: Record<string, Uint8Array | string>; weight: number }[]) =>
    (await mergeInMemory({ backend: backends[name]!, base, adapters })).tensors;

  it('both config_A_B "lora" with trained bias paths, at weights 1 and 0.5', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const tensors = await merge([first, { files: peftFolder(cfg({}), [...f2.tensors.slice(0, 4), ...c2.tensors]), weight: 0.5 }]);
    expectMerged(tensors.get(`${q}.weight`)!.values, weightTruth([
      { s: 1, a: product(f1.ad, f1.au, r, inF), b: product(f1.bd, f1.bu, r, inF) },
      { s: 0.5, a: product(f2.ad, f2.au, r, inF), b: product(f2.bd, f2.bu, r, inF) },
    ]), 'BF16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, biasSum([
      { s: 1, c: (i) => product(c1.cd, c1.cu, r, 1)(i, 0), d: () => c1.d[0], e: () => c1.e[0] },
      { s: 0.5, c: (i) => product(c2.cd, c2.cu, r, 1)(i, 0), d: () => c2.d[0], e: () => c2.e[0] },
    ]), 'BF16', `${q}.bias`);
  });

  it('"lora" then "vector" (config_C and config_D_E "vector" too), at weights 1 and -1', async (ctx) => {
    if (!backends[name]) return ctx.skip();
    const tensors = await merge([first, { files: peftFolder(cfg({ config_A_B: 'vector', config_C: 'vector', config_D_E: 'vector' }), vector2), weight: -1 }]);
    expectMerged(tensors.get(`${q}.weight`)!.values, weightTruth([
      { s: 1, a: product(f1.ad, f1.au, r, inF), b: product(f1.bd, f1.bu, r, inF) },
      { s: -1, a: (o) => a2[o], b: (o) => b2[o] },
    ]), 'BF16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, biasSum([
      { s: 1, c: (i) => product(c1.cd, c1.cu, r, 1)(i, 0), d: () => c1.d[0], e: () => c1.e[0] },
      { s: -1, c: (i) => cx2[i], d: (o) => d2[o], e: (o) => e2[o] },
    ]), 'BF16', `${q}.bias`);
  });
});

/**
 * A GLoRA bias path on a GGUF model whose weight is stored in blocks (Q6_K, as llama.cpp's Q4_K_M
 * recipe stores attn_v): W·C reads the weight dequantized, the values the weight's own merge starts
 * from (the model PEFT's merge would see, loaded from these blocks).
 */
describe('GLoRA (PEFT) bias path on a quantized GGUF weight', () => {
  it('b + s·(b ⊙ D + E + W·C) with W the dequantized Q6_K attn_v, the bias written in F32', async () => {
    const model = q4kmLlama(31);
    const kv = (LLAMA.hidden / LLAMA.heads) * LLAMA.kvHeads, inF = LLAMA.hidden;
    const bias = Float64Array.from({ length: kv }, (_, i) => Math.fround(0.01 * ((i % 7) - 3)));
    const tensors = [...model.tensors].map(([name, x]) => ({ name, type: x.type, ne: [...x.shape].reverse(), data: x.data }));
    tensors.push({ name: 'blk.0.attn_v.bias', type: 'F32', ne: [kv], data: tensorData('F32', bias) });
    const base = buildGguf({ metadata: model.metadata, tensors });
    const key = 'model.layers.0.self_attn.v_proj';
    const cx = vals(inF, 'F32'), d = vals(kv, 'F32'), e = vals(kv, 'F32');
    const folder = peftFolder(config({ config_A_B: 'none', config_C: 'vector', config_D_E: 'vector', target_modules: ['v_proj'] }), [
      t(p(key, 'glora_A.zeros'), 'F32', [kv, inF], new Float64Array(kv * inF)), t(p(key, 'glora_B.zeros'), 'F32', [kv, inF], new Float64Array(kv * inF)),
      t(p(key, 'glora_C.X'), 'F32', [inF, 1], cx), t(p(key, 'glora_D.X'), 'F32', [kv], d), t(p(key, 'glora_E.X'), 'F32', [kv], e),
    ]);
    const { bytes } = await mergeFileInMemory({ backend: backends.cpu!, base: { 'tiny-llama-Q4_K_M.gguf': base }, adapters: [{ files: folder, weight: 0.5 }] });
    const out = readGguf(bytes);
    const w = model.tensors.get('blk.0.attn_v.weight')!;
    expect(w.type).toBe('Q6_K');
    const want = biasTruth(w.values, bias, kv, inF, (i) => cx[i], (o) => d[o], (o) => e[o], 0.5);
    const got = tensorValues('F32', out.tensors.find((x) => x.name === 'blk.0.attn_v.bias')!.data);
    for (let o = 0; o < kv; o++) expect(Math.abs(got[o] - want[o]), `bias[${o}]`).toBeLessThanOrEqual(2 ** -23 * Math.max(Math.abs(want[o]), 2 ** -10));
    // The weight, config_A_B "none", is copied as stored.
    expect(Buffer.from(out.tensors.find((x) => x.name === 'blk.0.attn_v.weight')!.data).equals(Buffer.from(w.data))).toBe(true);
  });
});
