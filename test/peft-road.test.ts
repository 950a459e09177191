/**
 * PEFT RoAd folders (peft_type ROAD): `<module>.road_theta` and `<module>.road_alpha`, config
 * `variant` (road_1, road_2, road_4) and `group_size`. PEFT merges W' = R·W and b' = R·b, R the
 * out × out matrix its _get_delta_weight builds: diag(α·cos θ) plus, within each group of G
 * outputs, −α·sin θ at (j, j + G/2) and α·sin θ at (j + G/2, j). The truth builds R densely in
 * float64 from the variants' reshapes as PEFT writes them.
 */
import { describe, expect, it } from 'vitest';
import { roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, expectPeftCliRefusal } from './helpers/peft-method-folder.js';
import { mm } from './helpers/dense-f64.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(71);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT writes to a RoAd adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'ROAD', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.18.0', revision: null,
  variant: 'road_1', group_size: 64, init_weights: true, target_modules: ['q_proj', 'v_proj'], exclude_modules: null,
  layers_to_transform: null, layers_pattern: null, modules_to_save: null, inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** PEFT's first and second columns (α·cos θ, α·sin θ per output) for a variant. */
function columns(theta: Float64Array, alpha: Float64Array, variant: string, g: number, out: number): [number[], number[]] {
  const h = g / 2;
  if (variant === 'road_1') {
    // reshape(-1, h), each row repeated twice (repeat_interleave along dim 0), flattened.
    const at = (v: Float64Array, i: number) => v[Math.floor(Math.floor(i / h) / 2) * h + (i % h)];
    const idx = Array.from({ length: out }, (_, i) => i);
    return [idx.map((i) => at(alpha, i) * Math.cos(at(theta, i))), idx.map((i) => at(alpha, i) * Math.sin(at(theta, i)))];
  }
  if (variant === 'road_2') return [Array.from(theta, (x, i) => alpha[i] * Math.cos(x)), Array.from(theta, (x, i) => alpha[i] * Math.sin(x))];
  // reshape(-1, 2, g): [:, 0, :] gives the cosines' angles and scales, [:, 1, :] the sines'.
  const first: number[] = [], second: number[] = [];
  for (let k = 0; k < out / g; k++) {
    for (let p = 0; p < g; p++) {
      first.push(alpha[k * 2 * g + p] * Math.cos(theta[k * 2 * g + p]));
      second.push(alpha[k * 2 * g + g + p] * Math.sin(theta[k * 2 * g + g + p]));
    }
  }
  return [first, second];
}

/** R (out × out, row-major) as PEFT's _get_delta_weight builds it. */
function rotation(theta: Float64Array, alpha: Float64Array, variant: string, g: number, out: number): Float64Array {
  const [first, second] = columns(theta, alpha, variant, g, out);
  const r = new Float64Array(out * out);
  for (let i = 0; i < out; i++) r[i * out + i] = first[i];
  for (let g0 = 0; g0 < out; g0 += g) {
    for (let j = 0; j < g / 2; j++) {
      const a = g0 + j, b = g0 + g / 2 + j;
      r[a * out + b] = -second[a];
      r[b * out + a] = second[b];
    }
  }
  return r;
}

/** X + s·(R·X − X) for X (out × cols). */
const rotated = (r: Float64Array, x: Float64Array, out: number, cols: number, s = 1) => {
  const rx = mm(r, x, out, out, cols);
  return x.map((v, i) => v + s * (rx[i] - v));
};

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const angles = (n: number, dtype: 'F32' | 'F16' | 'BF16') => vals(n, dtype, 3);
const scales = (n: number, dtype: 'F32' | 'F16' | 'BF16') => vals(n, dtype).map((x) => roundForDType(1 + 0.5 * x, dtype));

describe.each(['cpu', 'webgpu'])('RoAd (PEFT), %s', (name) => {
  it('road_1 in groups of 8: the weight and its bias rotated (bf16), and a layer without a bias', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 16, inF = 5, g = 8;
    const w = vals(out * inF, 'BF16'), b = vals(out, 'BF16'), wv = vals(out * inF, 'BF16');
    const th = angles(out / 2, 'F32'), al = scales(out / 2, 'F32'), thv = angles(out / 2, 'F32'), alv = scales(out / 2, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w), t(`${q}.bias`, 'BF16', [out], b), t(`${v}.weight`, 'BF16', [out, inF], wv)],
      config({ group_size: g }), [
        t(`base_model.model.${q}.road_theta`, 'F32', [out / 2], th), t(`base_model.model.${q}.road_alpha`, 'F32', [out / 2], al),
        t(`base_model.model.${v}.road_theta`, 'F32', [out / 2], thv), t(`base_model.model.${v}.road_alpha`, 'F32', [out / 2], alv),
      ]);
    const r = rotation(th, al, 'road_1', g, out);
    expectMerged(tensors.get(`${q}.weight`)!.values, rotated(r, w, out, inF), 'BF16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, rotated(r, b, out, 1), 'BF16', `${q}.bias`);
    expectMerged(tensors.get(`${v}.weight`)!.values, rotated(rotation(thv, alv, 'road_1', g, out), wv, out, inF), 'BF16', v);
  });

  it('road_2 in groups of 6 with bf16 angles on an f16 base, user weight 0.5: I + s·(R − I)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 12, inF = 7, g = 6;
    const w = vals(out * inF, 'F16'), b = vals(out, 'F16');
    const th = angles(out, 'BF16'), al = scales(out, 'BF16');
    const tensors = await run(backend, [t(`${q}.weight`, 'F16', [out, inF], w), t(`${q}.bias`, 'F16', [out], b)], config({ variant: 'road_2', group_size: g }),
      [t(`base_model.model.${q}.road_theta`, 'BF16', [out], th), t(`base_model.model.${q}.road_alpha`, 'BF16', [out], al)], 0.5);
    const r = rotation(th, al, 'road_2', g, out);
    expectMerged(tensors.get(`${q}.weight`)!.values, rotated(r, w, out, inF, 0.5), 'F16', q);
    expectMerged(tensors.get(`${q}.bias`)!.values, rotated(r, b, out, 1, 0.5), 'F16', `${q}.bias`);
  });

  it('road_4 at the default group_size (64) over 128 outputs, f16 parameters on an f32 base with a bias', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 128, inF = 9;
    const w = vals(out * inF, 'F32'), b = vals(out, 'F32');
    const th = angles(2 * out, 'F16'), al = scales(2 * out, 'F16');
    const { group_size: _, ...defaults } = config({ variant: 'road_4' });
    const tensors = await run(backend, [t(`${v}.weight`, 'F32', [out, inF], w), t(`${v}.bias`, 'F32', [out], b)], defaults,
      [t(`base_model.model.${v}.road_theta`, 'F16', [2 * out], th), t(`base_model.model.${v}.road_alpha`, 'F16', [2 * out], al)]);
    const r = rotation(th, al, 'road_4', 64, out);
    expectMerged(tensors.get(`${v}.weight`)!.values, rotated(r, w, out, inF), 'F32', v);
    expectMerged(tensors.get(`${v}.bias`)!.values, rotated(r, b, out, 1), 'F32', `${v}.bias`);
  });
});

describe('RoAd refusals through the CLI: one line, nothing written', () => {
  const refuse = expectPeftCliRefusal;
  const w = (key: string, shape: number[]) => t(`${key}.weight`, 'F32', shape, vals(shape.reduce((a, b) => a * b, 1), 'F32'));
  const params = (key: string, n: number, m = n) => [t(`base_model.model.${key}.road_theta`, 'F32', [n], vals(n, 'F32')), t(`base_model.model.${key}.road_alpha`, 'F32', [m], vals(m, 'F32'))];

  it('a variant or group_size PEFT does not accept, vectors that do not fit, a lone road_theta', async () => {
    await refuse([w(q, [8, 4])], config({ variant: 'road_3', group_size: 4 }), params(q, 4), /"variant" must be "road_1", "road_2" or "road_4", got "road_3"/);
    await refuse([w(q, [8, 4])], config({ group_size: 3 }), params(q, 4), /"group_size" must be an even positive integer, got 3/);
    await refuse([w(q, [8, 4])], config({ group_size: 4 }), params(q, 4, 3), /q_proj": road_theta \(4\) and road_alpha \(3\) are not two vectors of 0\.5 values per output for variant road_1/);
    // 12 outputs are not a multiple of the default group_size 64.
    await refuse([w(q, [12, 4])], config({ variant: 'road_2' }), params(q, 12), /road_theta \(12\) and road_alpha \(12\) are not .* a multiple of group_size 64/);
    await refuse([w(q, [8, 4])], config({ group_size: 4 }), params(q, 4).slice(0, 1), /q_proj" has road_theta without road_alpha/);
    await refuse([w(q, [6, 4])], config({ group_size: 4 }), params(q, 4), /q_proj.*\(8, 4\)/);
  });

  it('resize: a map of W is no low-rank product', async () => {
    await refuse([w(q, [8, 4])], config({ group_size: 4 }), params(q, 4), /q_proj" is RoAd \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
  });
});
