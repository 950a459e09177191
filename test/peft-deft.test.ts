/**
 * PEFT DEFT (peft_type DEFT): `<module>.deft_P` (out, r) and, unless the config's `para` is true,
 * `<module>.deft_R` (r, in), saved as PEFT saves a ParameterDict (the adapter name removed). PEFT's
 * merge adds ΔW = Q_P · (s·R − rightᵀ·W), s = alpha / r where alpha is set (else 1), W the base
 * weight as (out, in) (a Conv1D's transposed), with Q_P = P and right = relu(P) under
 * decomposition_method "relu", Q_P = right = torch.linalg.qr(P).Q under "qr"; PaRa (para true)
 * drops R: ΔW = −Q_P · rightᵀ·W. The truth below is that formula in float64; the QR cases use
 * numbers from torch itself (test/reference/peft-deft-qr.{py,json}).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { householderQ } from '../src/formats/algorithms/peft-deft.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { estimateUpdateMagnitudes } from '../src/plan/update-magnitudes.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(97);
const vals = gridValues(rand);
const t = fixtureTensor;
const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** The fields PEFT writes to a DEFT adapter_config.json (DeftConfig and PeftConfig's own). */
const deftConfig = (fields: object = {}) => ({
  peft_type: 'DEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: 8, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, decomposition_method: 'relu', init_scale: 1.0, alpha: null,
  para: false, fan_in_fan_out: false, deft_dropout: 0.0, init_weights: true, layers_to_transform: null, layers_pattern: null, bias: 'none', modules_to_save: null, ...fields,
});

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const saved = (module: string, param: string) => `base_model.model.${module}.${param}`;

/**
 * PEFT DEFT's merged weight in float64: W + weight·Q_P·(s·R − rightᵀ·W), or with `r` null (PaRa)
 * W − weight·Q_P·rightᵀ·W; Q_P and right (out, rank) given, W (out, in).
 */
function deftTruth(w: ArrayLike<number>, out: number, inF: number, qp: ArrayLike<number>, right: ArrayLike<number>, rank: number, r: ArrayLike<number> | null, s: number, weight = 1): Float64Array {
  const m = new Float64Array(rank * inF);
  for (let k = 0; k < rank; k++) for (let i = 0; i < inF; i++) {
    let x = r ? s * r[k * inF + i] : 0;
    for (let o = 0; o < out; o++) x -= right[o * rank + k] * w[o * inF + i];
    m[k * inF + i] = x;
  }
  const res = Float64Array.from(w);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let d = 0;
    for (let k = 0; k < rank; k++) d += qp[o * rank + k] * m[k * inF + i];
    res[o * inF + i] += weight * d;
  }
  return res;
}

const relu = (p: Float64Array) => p.map((x) => Math.max(x, 0));

describe.each(['cpu', 'webgpu'])('DEFT (PEFT), %s', (name) => {
  it('relu: P·(s·R − relu(P)ᵀ·W) on q_proj (9, 7) and v_proj (5, 7) in bf16, r = 2, alpha 3 (s = 1.5), with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const inF = 7, r = 2;
    const mods = [{ m: q, out: 9 }, { m: v, out: 5 }].map(({ m, out }) => ({ m, out, w: vals(out * inF, 'BF16'), p: vals(out * r, 'BF16'), r: vals(r * inF, 'BF16') }));
    const tensors = await run(backend, mods.map(({ m, out, w }) => t(`${m}.weight`, 'BF16', [out, inF], w)), deftConfig({ r, alpha: 3 }),
      mods.flatMap(({ m, out, p, r: rv }) => [t(saved(m, 'deft_P'), 'BF16', [out, r], p), t(saved(m, 'deft_R'), 'BF16', [r, inF], rv)]), 0.5);
    for (const { m, out, w, p, r: rv } of mods) expectMerged(tensors.get(`${m}.weight`)!.values, deftTruth(w, out, inF, p, relu(p), r, rv, 1.5, 0.5), 'BF16', m);
  });

  it('PaRa (para true, no deft_R): W − P·relu(P)ᵀ·W on a (40, 33) layer merged by row slabs, r = 3 (alpha ignored)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 40, inF = 33, r = 3;
    const w = vals(out * inF, 'F32'), p = vals(out * r, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], deftConfig({ r, para: true, alpha: 4, target_modules: ['q_proj'] }), [t(saved(q, 'deft_P'), 'F32', [out, r], p)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, deftTruth(w, out, inF, p, relu(p), r, null, 1), 'F32', q);
  });
});

interface RefCase { name: string; out: number; in: number; r: number; decomposition_method: string; alpha: number | null; para: boolean; P: number[]; R: number[] | null; W: number[]; Q: number[]; merged: number[] }
const reference = JSON.parse(readFileSync(new URL('./reference/peft-deft-qr.json', import.meta.url), 'utf8')) as { cases: RefCase[] };

it('Householder Q of deft_P with torch.linalg.qr\'s signs (r < out, and r = out whose last reflector is the identity)', () => {
  for (const c of reference.cases.filter((x) => x.decomposition_method === 'qr')) {
    const got = householderQ(c.P, c.out, c.r);
    c.Q.forEach((want, i) => expect(got[i], `${c.name} Q[${i}]`).toBeCloseTo(want, 12));
  }
});

it.each(reference.cases.map((c) => [c.name, c] as const))('merges as torch computes PEFT\'s formula: %s', async (_, c) => {
  const tensors = await run(backends.cpu!, [t(`${q}.weight`, 'F32', [c.out, c.in], Float64Array.from(c.W))],
    deftConfig({ r: c.r, alpha: c.alpha, para: c.para, decomposition_method: c.decomposition_method, target_modules: ['q_proj'] }),
    [t(saved(q, 'deft_P'), 'F32', [c.out, c.r], Float64Array.from(c.P)), ...(c.R ? [t(saved(q, 'deft_R'), 'F32', [c.r, c.in], Float64Array.from(c.R))] : [])]);
  expectMerged(tensors.get(`${q}.weight`)!.values, c.merged, 'F32', c.name);
});

it('config r above out_features: PEFT keeps min(r, out) directions (r = 8 on a (3, 4) layer gives rank 3)', async () => {
  const out = 3, inF = 4, r = 3;
  const w = vals(out * inF, 'F32'), p = vals(out * r, 'F32'), rv = vals(r * inF, 'F32');
  const tensors = await run(backends.cpu!, [t(`${q}.weight`, 'F32', [out, inF], w)], deftConfig({ r: 8, alpha: 6, target_modules: ['q_proj'] }),
    [t(saved(q, 'deft_P'), 'F32', [out, r], p), t(saved(q, 'deft_R'), 'F32', [r, inF], rv)]);
  // alpha / r with the capped r: 6 / 3.
  expectMerged(tensors.get(`${q}.weight`)!.values, deftTruth(w, out, inF, p, relu(p), r, rv, 2), 'F32', q);
});

it('DEFT on a GPT-2 Conv1D under fan_in_fan_out: W is the (in, out) weight transposed, ΔW transposed back onto it', async () => {
  const c = 'transformer.h.0.attn.c_attn', inF = 5, out = 9, r = 2;
  const w = vals(inF * out, 'F32'), p = vals(out * r, 'F32'), rv = vals(r * inF, 'F32');
  const tensors = await run(backends.cpu!, [t(`${c}.weight`, 'F32', [inF, out], w)], deftConfig({ r, fan_in_fan_out: true, target_modules: ['c_attn'] }),
    [t(`base_model.model.${c}.deft_P`, 'F32', [out, r], p), t(`base_model.model.${c}.deft_R`, 'F32', [r, inF], rv)]);
  const logical = new Float64Array(out * inF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < out; o++) logical[o * inF + i] = w[i * out + o];
  const merged = deftTruth(logical, out, inF, p, relu(p), r, rv, 1);
  const want = w.map((_, idx) => merged[(idx % out) * inF + Math.floor(idx / out)]);
  expectMerged(tensors.get(`${c}.weight`)!.values, want, 'F32', c);
});

it('on GPT-2, whose config.json names c_attn a Conv1D, DEFT merges transposed under fan_in_fan_out false too, as PEFT\'s _create_new_module turns the flag on', async () => {
  const c = 'transformer.h.0.attn.c_attn', inF = 4, out = 6, r = 2;
  const w = vals(inF * out, 'F32'), p = vals(out * r, 'F32'), rv = vals(r * inF, 'F32');
  const tensors = await run(backends.cpu!, [t('h.0.attn.c_attn.weight', 'F32', [inF, out], w)], deftConfig({ r, alpha: 1, fan_in_fan_out: false, target_modules: ['c_attn'] }),
    [t(`base_model.model.${c}.deft_P`, 'F32', [out, r], p), t(`base_model.model.${c}.deft_R`, 'F32', [r, inF], rv)], 1, { model_type: 'gpt2' });
  const logical = new Float64Array(out * inF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < out; o++) logical[o * inF + i] = w[i * out + o];
  const merged = deftTruth(logical, out, inF, p, relu(p), r, rv, 0.5);
  expectMerged(tensors.get('h.0.attn.c_attn.weight')!.values, w.map((_, idx) => merged[(idx % out) * inF + Math.floor(idx / out)]), 'F32', c);
});

it('refuses DEFT files that disagree with their config, or that PEFT would not have made', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const pq = t(saved(q, 'deft_P'), 'F32', [4, 2], vals(8, 'F32')), rq = t(saved(q, 'deft_R'), 'F32', [2, 5], vals(10, 'F32'));
  await expect(preparePeftFolder(base, deftConfig({ r: 2 }), [pq])).rejects.toThrow(/q_proj" has deft_P without deft_R \(the config's para is false\): PEFT would keep the R it initialised/);
  await expect(preparePeftFolder(base, deftConfig({ r: 2, para: true }), [pq, rq])).rejects.toThrow(/q_proj" has deft_R, but the config's para is true/);
  await expect(preparePeftFolder(base, deftConfig({ r: 3 }), [pq, rq])).rejects.toThrow(/deft_P \(4, 2\) has rank 2, but the config's r 3 gives 3 on a layer of 4 outputs/);
  await expect(preparePeftFolder(base, deftConfig({ r: 2, decomposition_method: 'svd' }), [pq, rq])).rejects.toThrow(/DEFT "decomposition_method" must be "relu" or "qr" \(DeftConfig raises ValueError\), got "svd"/);
  await expect(preparePeftFolder(base, deftConfig({ r: null }), [pq, rq])).rejects.toThrow(/"r" is null, which PEFT cannot load/);
});

it('refuses DEFT on layers PEFT\'s DEFT does not wrap (it wraps Linear and Conv1D): a Conv2d, an embedding named so in a llama model', async () => {
  const conv = 'unet.conv_in', e = 'model.embed_tokens';
  const refusals = await refusalsInMemory({
    backend: backends.cpu!,
    base: { 'model.safetensors': buildSafetensors([t(`${conv}.weight`, 'F32', [4, 3, 3, 3], vals(108, 'F32')), t(`${e}.weight`, 'F32', [6, 5], vals(30, 'F32'))]), 'config.json': JSON.stringify({ model_type: 'llama' }) },
    adapters: [{ name: 'adapter', weight: 1, files: peftFolder(deftConfig({ r: 2, target_modules: ['conv_in', 'embed_tokens'] }), [
      t(saved(conv, 'deft_P'), 'F32', [4, 2], vals(8, 'F32')), t(saved(conv, 'deft_R'), 'F32', [2, 27], vals(54, 'F32')),
      t(saved(e, 'deft_P'), 'F32', [6, 2], vals(12, 'F32')), t(saved(e, 'deft_R'), 'F32', [2, 5], vals(10, 'F32')),
    ]) }],
  });
  expect(refusals).toEqual([
    expect.stringMatching(/module "unet\.conv_in": DEFT \(PEFT\) wraps only Linear and Conv1D layers; "unet\.conv_in\.weight" is a Conv2d weight .*so PEFT cannot have trained this module on it/),
    expect.stringMatching(/module "model\.embed_tokens": DEFT \(PEFT\) wraps only Linear and Conv1D layers; "model\.embed_tokens\.weight" is an Embedding weight .*so PEFT cannot have trained this module on it/),
  ]);
});

it('the CLI refuses in one line and writes nothing: a DEFT module without its deft_R; resize of a DEFT adapter (its update reads W)', async () => {
  await expectPeftCliRefusal([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], deftConfig({ r: 2, target_modules: ['q_proj'] }), [t(saved(q, 'deft_P'), 'F32', [4, 2], vals(8, 'F32'))],
    /q_proj" has deft_P without deft_R/);
  await expectPeftCliRefusal([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], deftConfig({ r: 2, target_modules: ['q_proj'] }),
    [t(saved(q, 'deft_P'), 'F32', [4, 2], vals(8, 'F32')), t(saved(q, 'deft_R'), 'F32', [2, 5], vals(10, 'F32'))],
    /q_proj" is DEFT \(PEFT\), whose update is not a low-rank product; resize cannot express it as a LoRA/, 'resize');
});

it('after a LoRA on the same layer, DEFT projects the weight as the LoRA left it (PEFT merges adapters one after another)', async () => {
  const out = 6, inF = 5, r = 2;
  const w = vals(out * inF, 'F32'), la = vals(inF, 'F32'), lb = vals(out, 'F32'), p = vals(out * r, 'F32'), rv = vals(r * inF, 'F32');
  const { tensors } = await mergeInMemory({
    backend: backends.cpu!,
    base: { 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'F32', [out, inF], w)]) },
    adapters: [
      { name: 'lora', weight: 1, files: peftFolder({ peft_type: 'LORA', r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [t(saved(q, 'lora_A.weight'), 'F32', [1, inF], la), t(saved(q, 'lora_B.weight'), 'F32', [out, 1], lb)]) },
      { name: 'deft', weight: 1, files: peftFolder(deftConfig({ r, target_modules: ['q_proj'] }), [t(saved(q, 'deft_P'), 'F32', [out, r], p), t(saved(q, 'deft_R'), 'F32', [r, inF], rv)]) },
    ],
  });
  const afterLora = w.map((x, idx) => x + lb[Math.floor(idx / inF)] * la[idx % inF]);
  expectMerged(tensors.get(`${q}.weight`)!.values, deftTruth(afterLora, out, inF, p, relu(p), r, rv, 1), 'F32', q);
});

it('the update magnitude of a DEFT module is ‖ΔW‖ of its merge, with W read whole for rightᵀ·W', async () => {
  const out = 6, inF = 5, r = 2;
  const w = vals(out * inF, 'F32'), p = vals(out * r, 'F32'), rv = vals(r * inF, 'F32');
  const prepared = await preparePeftFolder([t(`${q}.weight`, 'F32', [out, inF], w)], deftConfig({ r, alpha: 4, target_modules: ['q_proj'] }),
    [t(saved(q, 'deft_P'), 'F32', [out, r], p), t(saved(q, 'deft_R'), 'F32', [r, inF], rv)]);
  const magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (_, r0, n) => ({ dtype: 'F32', data: new Uint8Array(Float32Array.from(w.subarray(r0 * inF, (r0 + n) * inF)).buffer) }));
  await prepared.close();
  const merged = deftTruth(w, out, inF, p, relu(p), r, rv, 2);
  const norm = Math.sqrt(merged.reduce((s, x, i) => s + (x - w[i]) ** 2, 0));
  expect(magnitudes).toHaveLength(1);
  expect(magnitudes[0].updateNorm).toBeCloseTo(norm, 5);
});
