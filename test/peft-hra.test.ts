/**
 * PEFT HRA folders (peft_type HRA): `<module>.hra_u` (in, r) Householder vectors; PEFT merges
 * W' = W·H with H the product of the reflections I − 2uuᵀ of the normalised columns in order, or,
 * with apply_GS, I − 2QQᵀ for the Gram–Schmidt orthonormalised columns. The truth builds H as a
 * dense float64 matrix, one reflection at a time.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';
import { mm } from './helpers/dense-f64.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(53);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT 0.17 writes to an HRA adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'HRA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null,
  r: 3, apply_GS: false, init_weights: true, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, layers_to_transform: null,
  layers_pattern: null, bias: 'none', modules_to_save: null, inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** Column i of u (n × r) scaled to unit length. */
const unit = (c: number[]) => {
  const norm = Math.sqrt(c.reduce((s, x) => s + x * x, 0));
  return c.map((x) => x / norm);
};
const column = (u: Float64Array, n: number, r: number, i: number) => Array.from({ length: n }, (_, k) => u[k * r + i]);
const eye = (n: number) => Float64Array.from({ length: n * n }, (_, k) => (k % (n + 1) === 0 ? 1 : 0));
/** H·(I − 2vvᵀ). */
const reflect = (h: Float64Array, v: number[], n: number) => {
  const out = h.slice();
  for (let a = 0; a < n; a++) {
    let hv = 0;
    for (let k = 0; k < n; k++) hv += h[a * n + k] * v[k];
    for (let b = 0; b < n; b++) out[a * n + b] -= 2 * hv * v[b];
  }
  return out;
};
function householder(u: Float64Array, n: number, r: number, gs: boolean): Float64Array {
  if (!gs) {
    let h = eye(n);
    for (let i = 0; i < r; i++) h = reflect(h, unit(column(u, n, r, i)), n);
    return h;
  }
  const q: number[][] = [];
  for (let i = 0; i < r; i++) {
    let c = column(u, n, r, i);
    for (const p of q) {
      const d = p.reduce((s, x, k) => s + x * c[k], 0);
      c = c.map((x, k) => x - d * p[k]);
    }
    q.push(unit(c));
  }
  const h = eye(n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) for (const p of q) h[a * n + b] -= 2 * p[a] * p[b];
  return h;
}
/** W + s·(W·H − W), W (out × n). */
const merged = (w: Float64Array, h: Float64Array, out: number, n: number, s = 1) => {
  const wh = mm(w, h, out, n, n);
  return w.map((x, i) => x + s * (wh[i] - x));
};

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

describe.each(['cpu', 'webgpu'])('HRA (PEFT), %s', (name) => {
  it('a chain of r reflections (r = 3, and r = 1), W·H0·H1·H2 in that order', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 10, inF = 7;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const uq = vals(inF * 3, 'F32'), uv = vals(inF, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)],
      config({}), [t(`base_model.model.${q}.hra_u`, 'F32', [inF, 3], uq)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, merged(wq, householder(uq, inF, 3, false), out, inF), 'BF16', q);
    const tensors1 = await run(backend, [t(`${v}.weight`, 'BF16', [out, inF], wv)], config({ r: 1 }), [t(`base_model.model.${v}.hra_u`, 'F32', [inF, 1], uv)]);
    expectMerged(tensors1.get(`${v}.weight`)!.values, merged(wv, householder(uv, inF, 1, false), out, inF), 'BF16', v);
  });

  it('apply_GS: I − 2QQᵀ after Gram–Schmidt, and a user weight of 0.5 merging W·(I + s·(H − I))', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 11, inF = 9, r = 4;
    const w = vals(out * inF, 'F32');
    const u = vals(inF * r, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ r, apply_GS: true }), [t(`base_model.model.${q}.hra_u`, 'F32', [inF, r], u)], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, merged(w, householder(u, inF, r, true), out, inF, 0.5), 'F32', q);
  });

  it('a 3×3 conv: reflections over in·kh·kw', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const conv = 'unet.down_blocks.0.resnets.0.conv1', out = 6, cin = 3, n = cin * 9;
    const w = vals(out * n, 'F16');
    const u = vals(n * 2, 'F32');
    const tensors = await run(backend, [t(`${conv}.weight`, 'F16', [out, cin, 3, 3], w)], config({ r: 2, target_modules: ['conv1'], task_type: null }),
      [t(`base_model.model.${conv}.hra_u`, 'F32', [n, 2], u)]);
    expectMerged(tensors.get(`${conv}.weight`)!.values, merged(w, householder(u, n, 2, false), out, n), 'F16', conv);
  });
});

it('refuses an hra_u whose columns disagree with r, and a zero column PEFT would divide by', async () => {
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], cfg, tensors);
  await expect(open(config({ r: 3 }), [t(`base_model.model.${q}.hra_u`, 'F32', [5, 2], vals(10, 'F32'))])).rejects.toThrow(/module "model\.layers\.0\.self_attn\.q_proj": hra_u \(5, 2\) is not \(inputs, r\) for the config's r = 3/);
  // A zero second column: PEFT's division by its norm gives NaN.
  const u = vals(10, 'F32');
  for (let k = 0; k < 5; k++) u[k * 2 + 1] = 0;
  const backend = backends.cpu!;
  await expect(run(backend, [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], config({ r: 2, apply_GS: true }), [t(`base_model.model.${q}.hra_u`, 'F32', [5, 2], u)]))
    .rejects.toThrow(/HRA module "model\.layers\.0\.self_attn\.q_proj": hra_u column 1 has norm zero after Gram–Schmidt/);
});
