/**
 * PEFT AdaLoRA folders (peft_type ADALORA) as PEFT saves them: `<module>.lora_A` (r, in),
 * `.lora_E` (r, 1), `.lora_B` (out, r), no ranknum, and rank_pattern's boolean masks with the
 * tensors already cut to the kept rows. PEFT's merge: ΔW = B·(A ⊙ E)·scaling/(ranknum + 1e-5),
 * ranknum = init_r, the 1e-5 added in f32, A ⊙ E rounded to f32. Both backends, float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(31);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT 0.17 writes to an AdaLoRA adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'ADALORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.17.1',
  r: 8, target_r: 2, init_r: 3, lora_alpha: 32, lora_dropout: 0.1, tinit: 10, tfinal: 20, deltaT: 5, beta1: 0.85, beta2: 0.85,
  orth_reg_weight: 0.5, total_step: 200, target_modules: ['q_proj', 'v_proj'], fan_in_fan_out: false, inference_mode: true,
  bias: 'none', modules_to_save: null, rank_pattern: null, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

interface Svd { a: Float64Array; e: Float64Array; b: Float64Array; r: number }
const svd = (out: number, inF: number, r: number): Svd => ({ a: vals(r * inF, 'F32'), e: vals(r, 'F32'), b: vals(out * r, 'F32'), r });
const svdTensors = (module: string, x: Svd, out: number, inF: number) => [
  t(`base_model.model.${module}.lora_A`, 'F32', [x.r, inF], x.a), t(`base_model.model.${module}.lora_E`, 'F32', [x.r, 1], x.e),
  t(`base_model.model.${module}.lora_B`, 'F32', [out, x.r], x.b),
];
/** PEFT's divisor: f32 ranknum plus the f32 value of 1e-5, rounded to f32. */
const divisor = (initR: number) => Math.fround(initR + Math.fround(1e-5));
/** W + s·B·(A ⊙ E) with A ⊙ E rounded to f32 as PEFT forms it; `transposed`: W stored (in, out). */
function truth(w: Float64Array, x: Svd, out: number, inF: number, s: number, transposed = false): Float64Array {
  const res = w.slice();
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let d = 0;
    for (let k = 0; k < x.r; k++) d += x.b[o * x.r + k] * Math.fround(x.a[k * inF + i] * x.e[k]);
    res[transposed ? i * out + o : o * inF + i] += s * d;
  }
  return res;
}

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj', k = 'model.layers.1.self_attn.k_proj';

describe.each(['cpu', 'webgpu'])('AdaLoRA (PEFT), %s', (name) => {
  it('B·(A ⊙ E)·lora_alpha/(init_r + 1e-5), rank_pattern cutting modules to 2 and 1 rows while the divisor stays init_r', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 20, inF = 13;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16'), wk = vals(out * inF, 'BF16');
    const xq = svd(out, inF, 2), xv = svd(out, inF, 3), xk = svd(out, inF, 1);
    const merged = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv), t(`${k}.weight`, 'BF16', [out, inF], wk)],
      config({ target_modules: ['q_proj', 'v_proj', 'k_proj'], rank_pattern: { [`${q}.lora_E`]: [true, false, true], [`${v}.lora_E`]: [true, true, true], [`${k}.lora_E`]: [false, false, true] } }),
      [...svdTensors(q, xq, out, inF), ...svdTensors(v, xv, out, inF), ...svdTensors(k, xk, out, inF)], 0.5);
    const s = 0.5 * 32 / divisor(3);
    expectMerged(merged.get(`${q}.weight`)!.values, truth(wq, xq, out, inF, s), 'BF16', q);
    expectMerged(merged.get(`${v}.weight`)!.values, truth(wv, xv, out, inF, s), 'BF16', v);
    expectMerged(merged.get(`${k}.weight`)!.values, truth(wk, xk, out, inF, s), 'BF16', k);
  });

  it('the f32 1e-5 in the divisor, seen in an f32 weight at init_r 1; lora_alpha 0 scales by the rank', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 17, inF = 11;
    // A small base so the update decides every f32 element: 1/(1 + 1e-5) moves it by ~80 ulps.
    const wq = vals(out * inF, 'F32', 0.01), wv = vals(out * inF, 'F32', 0.01);
    const xq = svd(out, inF, 1), xv = svd(out, inF, 1);
    const merged = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], wq), t(`${v}.weight`, 'F32', [out, inF], wv)],
      config({ init_r: 1, lora_alpha: 4 }), [...svdTensors(q, xq, out, inF)]);
    const want = truth(wq, xq, out, inF, 4 / divisor(1));
    const got = merged.get(`${q}.weight`)!.values;
    expectMerged(got, want, 'F32', q);
    const exact = Array.from(got).filter((g, i) => g === Math.fround(want[i])).length;
    expect(exact / got.length).toBeGreaterThan(0.9);

    // lora_alpha ≤ 0: PEFT's scaling is the rank, here the kept count (2 of init_r 4) of a resized module.
    const x2 = svd(out, inF, 2);
    const merged2 = await run(backend, [t(`${v}.weight`, 'F32', [out, inF], wv)],
      config({ init_r: 4, lora_alpha: 0, rank_pattern: { [`${v}.lora_E`]: [false, true, true, false] } }), svdTensors(v, x2, out, inF));
    expectMerged(merged2.get(`${v}.weight`)!.values, truth(wv, x2, out, inF, 2 / divisor(4)), 'F32', v);
  });

  it('a module whose mask kept nothing (tensors of 0 rows) leaves its weight as it is, saying so', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 6, inF = 5;
    const wq = vals(out * inF, 'F32'), wv = vals(out * inF, 'F32');
    const xv = svd(out, inF, 1);
    const { tensors, warnings } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [out, inF], wq), t(`${v}.weight`, 'F32', [out, inF], wv)],
      config({ init_r: 2, rank_pattern: { [`${q}.lora_E`]: [false, false], [`${v}.lora_E`]: [false, true] } }),
      [...svdTensors(q, { a: new Float64Array(0), e: new Float64Array(0), b: new Float64Array(0), r: 0 }, out, inF), ...svdTensors(v, xv, out, inF)]);
    expect(Array.from(tensors.get(`${q}.weight`)!.values)).toEqual(Array.from(wq));
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(wv, xv, out, inF, 32 / divisor(2)), 'F32', v);
    expect(warnings.join('\n')).toMatch(/module "model\.layers\.0\.self_attn\.q_proj" has no update left \(AdaLoRA pruned every singular value\)/);
  });

  it('a 3×3 conv: lora_A over in·kh·kw, ΔW reshaped to the weight as SVDConv2d does', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const conv = 'unet.down_blocks.0.resnets.0.conv1', out = 6, n = 3 * 9;
    const w = vals(out * n, 'BF16');
    const x = svd(out, n, 2);
    const { tensors } = await mergePeftFolder(backend, [t(`${conv}.weight`, 'BF16', [out, 3, 3, 3], w)],
      config({ init_r: 2, lora_alpha: 4, target_modules: ['conv1'], task_type: null }), svdTensors(conv, x, out, n));
    expectMerged(tensors.get(`${conv}.weight`)!.values, truth(w, x, out, n, 4 / divisor(2)), 'BF16', conv);
  });

  it('GPT-2 Conv1D weights stored (in, out) under fan_in_fan_out', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const attn = 'transformer.h.0.attn.c_attn', outF = 45, inF = 15;
    const w = vals(inF * outF, 'F16');
    const x = svd(outF, inF, 5);
    const merged = await run(backend, [t(`${attn}.weight`, 'F16', [inF, outF], w)],
      config({ init_r: 5, lora_alpha: 7, fan_in_fan_out: true, target_modules: ['c_attn'] }), svdTensors(attn, x, outF, inF), -1);
    expectMerged(merged.get(`${attn}.weight`)!.values, truth(w, x, outF, inF, -7 / divisor(5), true), 'F16', attn);
  });
});

it('refuses AdaLoRA files whose rows disagree with init_r or rank_pattern, a missing factor, and an init_r bf16 cannot hold', async () => {
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], cfg, tensors);
  const failure = async (p: Promise<unknown>) => p.then(() => expect.fail('should throw'), (e: unknown) => {
    expect(isMergeError(e)).toBe(true);
    return (e as Error).message;
  });
  const x = svd(4, 5, 2);
  expect(await failure(open(config({}), svdTensors(q, x, 4, 5))))
    .toMatch(/module "model\.layers\.0\.self_attn\.q_proj" has 2 singular values but the config \(init_r\) says 3/);
  expect(await failure(open(config({ rank_pattern: { [`${q}.lora_E`]: [true, true, true] } }), svdTensors(q, x, 4, 5))))
    .toMatch(/has 2 singular values but the config \(rank_pattern\) says 3/);
  expect(await failure(open(config({ init_r: 2 }), svdTensors(q, x, 4, 5).slice(0, 2)))).toMatch(/q_proj" needs lora_A, lora_E and lora_B; lora_B is missing/);
  expect(await failure(open(config({ init_r: 2 }), svdTensors(q, x, 4, 5).filter((e) => !e.name.endsWith('lora_E')))))
    .toMatch(/q_proj" has ".*lora_A", ".*lora_B" without the lora_E tensor ADALORA needs/);
  expect(await failure(open(config({ rank_pattern: { [`${q}.lora_E`]: [true, false] } }), svdTensors(q, x, 4, 5)))).toMatch(/has 2 flags but init_r is 3/);
  expect(await failure(open(config({ init_r: 257 }), svdTensors(q, x, 4, 5)))).toMatch(/init_r 257 is not exact in bf16/);
});
