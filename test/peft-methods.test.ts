/**
 * PEFT LoHa, LoKr and VeRA folders (adapter_config.json peft_type LOHA / LOKR / VERA) with PEFT's
 * key names and shapes: the scale is α/r from the config, rank_pattern and alpha_pattern included,
 * whatever the factors' form; VeRA slices its shared projections per layer and honours
 * fan_in_fan_out. Merged on both backends against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { mm } from './helpers/dense-f64.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(99);
const vals = (n: number, dtype: FixtureDType, scale = 1) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));
const t = (name: string, dtype: FixtureDType, shape: number[], data: Float64Array): FixtureTensor => ({ name, dtype, shape, data });

async function run(backend: MergeBackend, base: FixtureTensor[], config: object, tensors: FixtureTensor[], weight = 1) {
  const adapter = { name: 'adapter', files: { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) }, weight };
  return (await mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors(base) }, adapters: [adapter] })).tensors;
}

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it('LoHa: (w1a·w1b) ⊙ (w2a·w2b)·α/r, with rank_pattern and alpha_pattern', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 40, inF = 36;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const f = (r: number) => ({ w1a: vals(out * r, 'F32'), w1b: vals(r * inF, 'F32'), w2a: vals(out * r, 'F32'), w2b: vals(r * inF, 'F32') });
    const fq = f(4), fv = f(2);
    const tensorsOf = (m: string, x: ReturnType<typeof f>, r: number) => [
      t(`base_model.model.${m}.hada_w1_a`, 'F32', [out, r], x.w1a), t(`base_model.model.${m}.hada_w1_b`, 'F32', [r, inF], x.w1b),
      t(`base_model.model.${m}.hada_w2_a`, 'F32', [out, r], x.w2a), t(`base_model.model.${m}.hada_w2_b`, 'F32', [r, inF], x.w2b),
    ];
    const merged = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)],
      { peft_type: 'LOHA', r: 4, alpha: 8, rank_pattern: { v_proj: 2 }, alpha_pattern: { v_proj: 1 } },
      [...tensorsOf(q, fq, 4), ...tensorsOf(v, fv, 2)], 0.5);
    const truth = (w: Float64Array, x: ReturnType<typeof f>, r: number, s: number) => {
      const d1 = mm(x.w1a, x.w1b, out, r, inF), d2 = mm(x.w2a, x.w2b, out, r, inF);
      return w.map((y, i) => y + s * d1[i] * d2[i]);
    };
    expectMerged(merged.get(`${q}.weight`)!.values, truth(wq, fq, 4, 0.5 * 8 / 4), 'BF16', q);
    expectMerged(merged.get(`${v}.weight`)!.values, truth(wv, fv, 2, 0.5 * 1 / 2), 'BF16', v);
  });

  it('LoKr: kron(w1, w2_a·w2_b)·α/r, and α/r too when both factors are full', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 48, inF = 32;
    const wq = vals(out * inF, 'F16'), wv = vals(out * inF, 'F16');
    const w1 = vals(4 * 4, 'F32'), w2a = vals(12 * 3, 'F32'), w2b = vals(3 * 8, 'F32');
    const v1 = vals(4 * 4, 'F32'), v2 = vals(12 * 8, 'F32', 0.3);
    const merged = await run(backend, [t(`${q}.weight`, 'F16', [out, inF], wq), t(`${v}.weight`, 'F16', [out, inF], wv)],
      { peft_type: 'LOKR', r: 3, alpha: 6 }, [
        t(`base_model.model.${q}.lokr_w1`, 'F32', [4, 4], w1), t(`base_model.model.${q}.lokr_w2_a`, 'F32', [12, 3], w2a), t(`base_model.model.${q}.lokr_w2_b`, 'F32', [3, 8], w2b),
        t(`base_model.model.${v}.lokr_w1`, 'F32', [4, 4], v1), t(`base_model.model.${v}.lokr_w2`, 'F32', [12, 8], v2),
      ]);
    const kron = (x: Float64Array, y: Float64Array) => {
      const d = new Float64Array(out * inF);
      for (let o1 = 0; o1 < 4; o1++) for (let o2 = 0; o2 < 12; o2++) for (let i1 = 0; i1 < 4; i1++) for (let i2 = 0; i2 < 8; i2++) {
        d[(o1 * 12 + o2) * inF + i1 * 8 + i2] = x[o1 * 4 + i1] * y[o2 * 8 + i2];
      }
      return d;
    };
    const dq = kron(w1, mm(w2a, w2b, 12, 3, 8)), dv = kron(v1, v2);
    expectMerged(merged.get(`${q}.weight`)!.values, wq.map((x, i) => x + 2 * dq[i]), 'F16', q);
    expectMerged(merged.get(`${v}.weight`)!.values, wv.map((x, i) => x + 2 * dv[i]), 'F16', v);
  });

  it('VeRA: shared projections sliced per layer, λ_b and λ_d, fan_in_fan_out', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // GPT-2 style Conv1D weights stored (in, out): c_attn (24, 72), c_proj (24, 24); r = 4.
    const r = 4, inMax = 24, outMax = 72;
    const attn = 'transformer.h.0.attn.c_attn', proj = 'transformer.h.0.attn.c_proj';
    const wa = vals(24 * 72, 'F32'), wp = vals(24 * 24, 'F32');
    const A = vals(r * inMax, 'F32'), B = vals(outMax * r, 'F32');
    const lbA = vals(72, 'F32'), ldA = vals(r, 'F32'), lbP = vals(24, 'F32'), ldP = vals(r, 'F32');
    const merged = await run(backend, [t(`${attn}.weight`, 'F32', [24, 72], wa), t(`${proj}.weight`, 'F32', [24, 24], wp)],
      { peft_type: 'VERA', r, fan_in_fan_out: true, save_projection: true }, [
        t('base_model.vera_A', 'F32', [r, inMax], A), t('base_model.vera_B', 'F32', [outMax, r], B),
        t(`base_model.model.${attn}.vera_lambda_b`, 'F32', [72], lbA), t(`base_model.model.${attn}.vera_lambda_d`, 'F32', [r], ldA),
        t(`base_model.model.${proj}.vera_lambda_b`, 'F32', [24], lbP), t(`base_model.model.${proj}.vera_lambda_d`, 'F32', [r], ldP),
      ], -1);
    const truth = (w: Float64Array, out: number, inF: number, lb: Float64Array, ld: Float64Array) => {
      const res = w.slice();
      // ΔW[o, i] = Σ_k λ_b[o]·B[o, k]·λ_d[k]·A[k, i]; stored transposed: W[i, o].
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += lb[o] * B[o * r + k] * ld[k] * A[k * inMax + i];
        res[i * out + o] -= d;
      }
      return res;
    };
    expectMerged(merged.get(`${attn}.weight`)!.values, truth(wa, 72, 24, lbA, ldA), 'F32', attn);
    expectMerged(merged.get(`${proj}.weight`)!.values, truth(wp, 24, 24, lbP, ldP), 'F32', proj);
  });
});

it('refuses a VeRA adapter without its projections whose config does not say save_projection: false, and ranks that disagree with the config', async () => {
  const open = (config: object, tensors: FixtureTensor[]) => prepareMerge(
    memoryInputFileSet({ 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'F32', [4, 4], vals(16, 'F32'))]) }, 'base'),
    [{ files: memoryInputFileSet({ 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) }, 'adapter') }],
  );
  const failure = async (p: Promise<unknown>) => p.then(() => expect.fail('should throw'), (e: unknown) => {
    expect(isMergeError(e)).toBe(true);
    return (e as Error).message;
  });
  expect(await failure(open({ peft_type: 'VERA', r: 2 }, [
    t(`base_model.model.${q}.vera_lambda_b`, 'F32', [4], vals(4, 'F32')), t(`base_model.model.${q}.vera_lambda_d`, 'F32', [2], vals(2, 'F32')),
  ]))).toMatch(/VeRA adapter without base_model\.vera_A and vera_B, and its config does not say save_projection: false/);
  expect(await failure(open({ peft_type: 'LOHA', r: 8 }, [
    t(`base_model.model.${q}.hada_w1_a`, 'F32', [4, 2], vals(8, 'F32')), t(`base_model.model.${q}.hada_w1_b`, 'F32', [2, 4], vals(8, 'F32')),
    t(`base_model.model.${q}.hada_w2_a`, 'F32', [4, 2], vals(8, 'F32')), t(`base_model.model.${q}.hada_w2_b`, 'F32', [2, 4], vals(8, 'F32')),
  ]))).toMatch(/module "model\.layers\.0\.self_attn\.q_proj" has rank 2 but the config \(r\) says 8/);
});

describe.each(['cpu', 'webgpu'])('OFT (PEFT oft_R), %s', (name) => {
  const b = 3, out = 20, inF = 12;
  /** 3 × 3 products and the inverse by the adjugate, in f64. */
  const mul = (x: number[][], y: number[][]) => x.map((row) => y[0].map((_, j) => row.reduce((s, v, k) => s + v * y[k][j], 0)));
  const inverse = (m: number[][]) => {
    const [[a, b1, c], [d, e, f], [g, h, i]] = m;
    const det = a * (e * i - f * h) - b1 * (d * i - f * g) + c * (d * h - e * g);
    return [[e * i - f * h, c * h - b1 * i, b1 * f - c * e], [f * g - d * i, a * i - c * g, c * d - a * f], [d * h - e * g, b1 * g - a * h, a * e - b1 * d]].map((row) => row.map((v) => v / det));
  };
  const eye = () => [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
  const skew = (v: ArrayLike<number>) => [[0, v[0], v[1]], [-v[0], 0, v[2]], [-v[1], -v[2], 0]];
  const lin = (x: number[][], y: number[][], cx: number, cy: number) => x.map((row, i) => row.map((v, j) => cx * v + cy * y[i][j]));
  /** W' = (R·Wᵀ)ᵀ: each row's inputs, in blocks of 3, mapped by R_k. */
  const rotateInputs = (w: Float64Array, rs: number[][][]) => {
    const res = new Float64Array(w.length);
    for (let o = 0; o < out; o++) for (let k = 0; k < inF / b; k++) for (let m = 0; m < b; m++) {
      let s = 0;
      for (let n = 0; n < b; n++) s += rs[k][m][n] * w[o * inF + k * b + n];
      res[o * inF + k * b + m] = s;
    }
    return res;
  };

  it('Cayley–Neumann with 5 terms (PEFT ≥ 0.18): R = I + 2Q + 2Q² + 2Q³ + Q⁴, one block per 3 inputs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(out * inF, 'F32');
    const vec = vals(4 * 3, 'F32', 0.2);
    const merged = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], { peft_type: 'OFT', r: 0, oft_block_size: 3, peft_version: '0.18.0' },
      [t(`base_model.model.${q}.oft_R.weight`, 'F32', [4, 3], vec)]);
    const rs = Array.from({ length: 4 }, (_, k) => {
      const Q = skew(vec.subarray(k * 3, k * 3 + 3));
      const Q2 = mul(Q, Q), Q3 = mul(Q2, Q), Q4 = mul(Q3, Q);
      return eye().map((row, i) => row.map((v, j) => v + 2 * Q[i][j] + 2 * Q2[i][j] + 2 * Q3[i][j] + Q4[i][j]));
    });
    expectMerged(merged.get(`${q}.weight`)!.values, rotateInputs(w, rs), 'F32', q);
  });

  it('exact Cayley (I − Q)(I + Q)⁻¹, COFT projection and a block shared by every input block', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(out * inF, 'BF16');
    const vec = vals(3, 'F32', 0.5);
    const eps = 0.3;
    const merged = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w)],
      { peft_type: 'OFT', r: 0, oft_block_size: 3, use_cayley_neumann: false, coft: true, eps, block_share: true },
      [t(`base_model.model.${q}.oft_R.weight`, 'F32', [1, 3], vec)]);
    // COFT: the skew block's Frobenius norm (√2·‖vec‖) capped at eps/√(rows of oft_R) = eps.
    const norm = Math.sqrt(2 * (vec[0] ** 2 + vec[1] ** 2 + vec[2] ** 2));
    const Q = skew(Array.from(vec, (v) => (norm > eps ? v * eps / norm : v)));
    const R = mul(lin(eye(), Q, 1, -1), inverse(lin(eye(), Q, 1, 1)));
    expectMerged(merged.get(`${q}.weight`)!.values, rotateInputs(w, [R, R, R, R]), 'BF16', q);
  });
});
