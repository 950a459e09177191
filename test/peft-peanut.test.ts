/**
 * PEFT PEANuT (peft_type PEANUT): `<module>.peanut_A.weight` (r, out), `<module>.peanut_B.weight`
 * (out, r) and `depth` bias-free layers `<module>.peanut_encoders.<i>.weight` and
 * `<module>.peanut_decoders.<i>.weight` (r, r), the adapter name removed as PEANuT's
 * `_remove_adapter_name_from_key` saves them. PEFT's merge adds ΔW whose column j is
 * scaling·B·net(W[:, j]): h = act(A·x), per encoder h kept as a residual and h = act(E_i·h), per
 * decoder h = act(D_i·h) + the residual of the same depth from the end. The truth below is that
 * network in float64; more cases use numbers from torch's own activations
 * (test/reference/peft-peanut.{py,json}).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PEANUT_ACTIVATION_NAMES, PEANUT_ACTIVATIONS } from '../src/formats/algorithms/peft-peanut.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { peftFolder } from './helpers/hf-folder.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(113);
const vals = gridValues(rand);
const t = fixtureTensor;
const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** The fields PEFT writes to a PEANuT adapter_config.json (PeanutConfig and PeftConfig's own). */
const peanutConfig = (fields: object = {}) => ({
  peft_type: 'PEANUT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: 32, depth: 0, act_fn: 'relu', scaling: 1.0, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, modules_to_save: null,
  layers_to_transform: null, layers_pattern: null, init_weights: true, ...fields,
});

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const saved = (module: string, param: string) => `base_model.model.${module}.${param}`;

/** PEANuT's merged weight in float64: W + weight·scaling·B·net(W[:, j]) per column j. */
function peanutTruth(w: ArrayLike<number>, out: number, inF: number, r: number, a: ArrayLike<number>, b: ArrayLike<number>, enc: ArrayLike<number>[], dec: ArrayLike<number>[], act: (x: number) => number, scaling: number, weight = 1): Float64Array {
  const lin = (m: ArrayLike<number>, x: number[], rows: number, cols: number) => Array.from({ length: rows }, (_, i) => {
    let s = 0;
    for (let k = 0; k < cols; k++) s += m[i * cols + k] * x[k];
    return s;
  });
  const res = Float64Array.from(w);
  for (let j = 0; j < inF; j++) {
    const x = Array.from({ length: out }, (_, o) => w[o * inF + j]);
    let h = lin(a, x, r, out).map(act);
    const kept: number[][] = [];
    for (const e of enc) {
      kept.push(h);
      h = lin(e, h, r, r).map(act);
    }
    dec.forEach((d, i) => {
      const back = kept[enc.length - 1 - i];
      h = lin(d, h, r, r).map(act).map((y, k) => y + back[k]);
    });
    const y = lin(b, h, out, r);
    for (let o = 0; o < out; o++) res[o * inF + j] += weight * scaling * y[o];
  }
  return res;
}

const relu = (x: number) => Math.max(x, 0);

describe.each(['cpu', 'webgpu'])('PEANuT (PEFT), %s', (name) => {
  it('relu, depth 1, r 2, scaling 0.5 on q_proj (6, 5) and v_proj (4, 5) in bf16, with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const inF = 5, r = 2;
    const mods = [{ m: q, out: 6 }, { m: v, out: 4 }].map(({ m, out }) => ({
      m, out, w: vals(out * inF, 'BF16', 2), a: vals(r * out, 'BF16'), b: vals(out * r, 'BF16'), e: vals(r * r, 'BF16'), d: vals(r * r, 'BF16'),
    }));
    const tensors = await run(backend, mods.map(({ m, out, w }) => t(`${m}.weight`, 'BF16', [out, inF], w)), peanutConfig({ r, depth: 1, scaling: 0.5 }),
      mods.flatMap(({ m, out, a, b, e, d }) => [
        t(saved(m, 'peanut_A.weight'), 'BF16', [r, out], a), t(saved(m, 'peanut_B.weight'), 'BF16', [out, r], b),
        t(saved(m, 'peanut_encoders.0.weight'), 'BF16', [r, r], e), t(saved(m, 'peanut_decoders.0.weight'), 'BF16', [r, r], d),
      ]), 0.75);
    for (const { m, out, w, a, b, e, d } of mods) expectMerged(tensors.get(`${m}.weight`)!.values, peanutTruth(w, out, inF, r, a, b, [e], [d], relu, 0.5, 0.75), 'BF16', m);
  });

  it('relu, depth 0 (A and B alone), r 3 on a (40, 33) layer merged by row slabs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 40, inF = 33, r = 3;
    const w = vals(out * inF, 'F32'), a = vals(r * out, 'F32'), b = vals(out * r, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], peanutConfig({ r, target_modules: ['q_proj'] }),
      [t(saved(q, 'peanut_A.weight'), 'F32', [r, out], a), t(saved(q, 'peanut_B.weight'), 'F32', [out, r], b)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, peanutTruth(w, out, inF, r, a, b, [], [], relu, 1), 'F32', q);
  });
});

it('each activation as transformers\' ACT2FN class computes it on torch, on a grid from −25 to 30', () => {
  expect(Object.keys(reference.activations).sort()).toEqual([...PEANUT_ACTIVATION_NAMES].sort());
  for (const [act, ys] of Object.entries(reference.activations)) {
    reference.x.forEach((x, i) => expect(PEANUT_ACTIVATIONS[act](x), `${act}(${x})`).toBeCloseTo(ys[i], 13));
  }
});

it('every activation keeps NaN, as torch\'s do (relu and relu2 once turned it into 0)', () => {
  for (const act of PEANUT_ACTIVATION_NAMES) expect(PEANUT_ACTIVATIONS[act](Number.NaN), act).toBeNaN();
});

it.each(['relu', 'relu2'])('a NaN in peanut_A under %s is refused naming the tensor, not merged away (PEFT\'s merge writes NaN)', async (act) => {
  const a = vals(2 * 4, 'F32');
  a[5] = Number.NaN;
  const refusals = await refusalsInMemory({
    backend: backends.cpu!,
    base: { 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))]) },
    adapters: [{ name: 'adapter', weight: 1, files: peftFolder(peanutConfig({ r: 2, act_fn: act, target_modules: ['q_proj'] }), [
      t(saved(q, 'peanut_A.weight'), 'F32', [2, 4], a), t(saved(q, 'peanut_B.weight'), 'F32', [4, 2], vals(8, 'F32')),
    ]) }],
  });
  expect(refusals).toEqual([expect.stringMatching(/factor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.peanut_A\.weight holds 1 NaN or Inf value \(row 1\); the adapter file is broken/)]);
});

interface RefCase { name: string; out: number; in: number; r: number; depth: number; act_fn: string; scaling: number; W: number[]; A: number[]; B: number[]; enc: number[][]; dec: number[][]; merged: number[] }
const reference = JSON.parse(readFileSync(new URL('./reference/peft-peanut.json', import.meta.url), 'utf8')) as { cases: RefCase[]; x: number[]; activations: Record<string, number[]> };

it.each(reference.cases.map((c) => [c.name, c] as const))('merges as torch computes PEFT\'s network: %s', async (_, c) => {
  const f = (n: string, shape: number[], data: number[]) => t(saved(q, n), 'F32', shape, Float64Array.from(data));
  const tensors = await run(backends.cpu!, [t(`${q}.weight`, 'F32', [c.out, c.in], Float64Array.from(c.W))],
    peanutConfig({ r: c.r, depth: c.depth, act_fn: c.act_fn, scaling: c.scaling, target_modules: ['q_proj'] }), [
      f('peanut_A.weight', [c.r, c.out], c.A), f('peanut_B.weight', [c.out, c.r], c.B),
      ...c.enc.map((e, i) => f(`peanut_encoders.${i}.weight`, [c.r, c.r], e)), ...c.dec.map((d, i) => f(`peanut_decoders.${i}.weight`, [c.r, c.r], d)),
    ]);
  expectMerged(tensors.get(`${q}.weight`)!.values, c.merged, 'F32', c.name);
});

it('refuses PEANuT files that disagree with their config, and networks this tool does not form', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const ab = (r = 2) => [t(saved(q, 'peanut_A.weight'), 'F32', [r, 4], vals(r * 4, 'F32')), t(saved(q, 'peanut_B.weight'), 'F32', [4, r], vals(4 * r, 'F32'))];
  const layer = (kind: string, i: number) => t(saved(q, `${kind}.${i}.weight`), 'F32', [2, 2], vals(4, 'F32'));
  await expect(preparePeftFolder(base, peanutConfig({ r: 2, depth: 1 }), [...ab(), layer('peanut_encoders', 0)])).rejects.toThrow(/q_proj": lacks peanut_decoders\.0, but the config's depth is 1/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 2 }), [...ab(), layer('peanut_encoders', 0), layer('peanut_decoders', 0)])).rejects.toThrow(/has peanut_encoders\.0, peanut_decoders\.0, but the config's depth is 0/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 3 }), ab())).rejects.toThrow(/peanut_A \(2, 4\), peanut_B \(4, 2\) and the 0 encoder and decoder layers are not \(r, out\), \(out, r\) and \(r, r\) for the config's r = 3/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 2, act_fn: 'prelu' }), ab())).rejects.toThrow(/PEANuT act_fn "prelu" is not one whose formula this tool forms/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 2, depth: 9 }), ab())).rejects.toThrow(/PEANuT depth 9 is not supported: this tool reads networks of depth 8 or less/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 2, scaling: null }), ab())).rejects.toThrow(/"scaling" is null, which PEFT cannot load \(`delta_w \* scaling` in _compute_delta_weight raises TypeError\)/);
  await expect(preparePeftFolder(base, peanutConfig({ r: 2, depth: -1 }), ab())).rejects.toThrow(/PEANuT "depth" must be a non-negative integer/);
});

it('refuses PEANuT on layers PEFT\'s PEANuT does not wrap (nn.Linear only): GPT-2\'s Conv1D named so in its config', async () => {
  const c = 'transformer.h.0.attn.c_attn';
  const refusals = await refusalsInMemory({
    backend: backends.cpu!,
    base: { 'model.safetensors': buildSafetensors([t('h.0.attn.c_attn.weight', 'F32', [5, 6], vals(30, 'F32'))]), 'config.json': JSON.stringify({ model_type: 'gpt2' }) },
    adapters: [{ name: 'adapter', weight: 1, files: peftFolder(peanutConfig({ r: 2, target_modules: ['c_attn'] }), [
      t(`base_model.model.${c}.peanut_A.weight`, 'F32', [2, 6], vals(12, 'F32')), t(`base_model.model.${c}.peanut_B.weight`, 'F32', [6, 2], vals(12, 'F32')),
    ]) }],
  });
  expect(refusals).toEqual([expect.stringMatching(/PEANuT \(PEFT\) wraps only Linear layers; "h\.0\.attn\.c_attn\.weight" is a Conv1D weight stored \(in, out\) .*so PEFT cannot have trained this module on it/)]);
});

it('the CLI refuses a PEANuT file with an activation it does not form in one line and writes nothing', async () => {
  await expectPeftCliRefusal([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], peanutConfig({ r: 2, act_fn: 'xielu', target_modules: ['q_proj'] }),
    [t(saved(q, 'peanut_A.weight'), 'F32', [2, 4], vals(8, 'F32')), t(saved(q, 'peanut_B.weight'), 'F32', [4, 2], vals(8, 'F32'))],
    /PEANuT act_fn "xielu" is not one whose formula this tool forms/);
});
