/**
 * PEFT VeRA and PVeRA adapters saved with save_projection: false hold no shared A and B: PEFT draws
 * them when it loads the adapter, from torch.Generator("cpu").manual_seed(projection_prng_key), A
 * (rows, in_max) then B (out_max, r), each by kaiming-uniform (bound √3·√2/√fan_in, fan_in = the
 * columns) through torch's CPU uniform_, with in_max the widest input among the wrapped layers.
 *
 * test/reference/torch-kaiming-uniform.json was written by torch 1.13 on CPU (its script beside it),
 * once with each kernel build: "avx2" (ATEN_CPU_CAPABILITY=avx2; avx512 wrote the same bits) and
 * "default". The truth here is written plainly: MT19937 as its authors' reference code seeds and
 * steps it, and x·(to − from) + from rounded once to float32 (the AVX2 build fuses it), checked
 * against torch's bits first; the merge is then checked against W + ΔW in float64 from those.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TorchCpuGenerator } from '../src/algorithms/math/torch-cpu-random.js';
import { peftKaimingUniform, torchUniformFloat32 } from '../src/algorithms/math/torch-kaiming.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { low32, plainKaiming, plainMt } from './helpers/torch-draws-plain.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { veraTruth } from './helpers/peft-delta-truth.js';
import { expectPeftCliRefusal, fixtureTensor as t, peftFolderOnCli, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

interface KaimingCase {
  seed: number;
  a: [number, number];
  b: [number, number];
  aBits?: number[];
  bBits?: number[];
  aAt?: Record<string, number>;
  bAt?: Record<string, number>;
  aBitSum?: number;
  bBitSum?: number;
}
const reference = JSON.parse(readFileSync(new URL('./reference/torch-kaiming-uniform.json', import.meta.url), 'utf8')) as {
  producedBy: string;
  rand0: number[];
  kernels: { avx2: KaimingCase[]; default: KaimingCase[] };
};

const bitsOf = (v: Float32Array) => Array.from(new Uint32Array(Float32Array.from(v).buffer));
const bitSum = (v: Float32Array) => bitsOf(v).reduce((s, x) => (s + x) % 2 ** 32, 0);

/** Both projections as PEFT draws them (A first), from the plain generator. */
function plainProjections(c: KaimingCase, fused = true) {
  const next = plainMt(low32(c.seed));
  const a = plainKaiming(next, c.a[0], c.a[1], fused);
  return { a, b: plainKaiming(next, c.b[0], c.b[1], fused) };
}

describe("torch's CPU generator and kaiming-uniform draws", () => {
  it("the MT19937 is the standard one: std::mt19937's 10000th output from the default seed 5489 is 4123659995", () => {
    const ours = new TorchCpuGenerator(5489), plain = plainMt(5489);
    let x = 0, y = 0;
    for (let i = 0; i < 10000; i++) {
      x = ours.random();
      y = plain();
    }
    expect([x, y]).toEqual([4123659995, 4123659995]);
  });

  it(`torch.manual_seed(0); torch.rand(10) gives the widely printed 0.4963, 0.7682, 0.0885, …, and ${reference.producedBy}'s values to the bit`, () => {
    const got = torchUniformFloat32(new TorchCpuGenerator(0), new Float32Array(10), 0, 1);
    expect(Array.from(got, (v) => v.toFixed(4))).toEqual(['0.4963', '0.7682', '0.0885', '0.1320', '0.3074', '0.6341', '0.4901', '0.8964', '0.4556', '0.6323']);
    expect(Array.from(got)).toEqual(reference.rand0);
  });

  it("PEFT's projections, A then B from one generator, are torch's AVX2 kernel's to the bit (seeds past 32 bits and below 0, 256 × 1024)", () => {
    for (const c of reference.kernels.avx2) {
      const g = new TorchCpuGenerator(c.seed);
      const a = peftKaimingUniform(g, c.a[0], c.a[1]), b = peftKaimingUniform(g, c.b[0], c.b[1]);
      const plain = plainProjections(c);
      expect(bitsOf(a), `seed ${c.seed}: plain A`).toEqual(bitsOf(plain.a));
      expect(bitsOf(b), `seed ${c.seed}: plain B`).toEqual(bitsOf(plain.b));
      if (c.aBits) {
        expect(bitsOf(a), `seed ${c.seed}: A`).toEqual(c.aBits);
        expect(bitsOf(b), `seed ${c.seed}: B`).toEqual(c.bBits);
      } else {
        for (const [i, bits] of Object.entries(c.aAt!)) expect(bitsOf(a.subarray(Number(i), Number(i) + 1))[0], `A[${i}]`).toBe(bits);
        for (const [i, bits] of Object.entries(c.bAt!)) expect(bitsOf(b.subarray(Number(i), Number(i) + 1))[0], `B[${i}]`).toBe(bits);
        expect([bitSum(a), bitSum(b)]).toEqual([c.aBitSum, c.bBitSum]);
      }
    }
  });

  it("torch's default kernel rounds the product first: a fifth to half the entries differ, which is why the AVX2 rule is named", () => {
    for (const [i, c] of reference.kernels.default.entries()) {
      const plain = plainProjections(c, false);
      if (c.aBits) {
        expect(bitsOf(plain.a)).toEqual(c.aBits);
        expect(bitsOf(plain.b)).toEqual(c.bBits);
        const avx2 = reference.kernels.avx2[i];
        const differ = [...c.aBits!, ...c.bBits!].filter((bits, k) => bits !== [...avx2.aBits!, ...avx2.bBits!][k]).length;
        expect(differ / (c.aBits!.length + c.bBits!.length)).toBeGreaterThan(0.2);
      } else {
        expect([bitSum(plain.a), bitSum(plain.b)]).toEqual([c.aBitSum, c.bBitSum]);
      }
    }
  });
});

const backends = mergeBackends({ cpu: 'default' });
const vals = gridValues(seededRandom(2027));
const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const saved = (m: string, role: string) => `base_model.model.${m}.${role}`;

/** The fields PEFT writes to a VeRA adapter_config.json, saved without the projections. */
const veraConfig = (fields: object = {}) => ({
  peft_type: 'VERA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null, auto_mapping: null,
  inference_mode: true, r: 4, target_modules: ['q_proj', 'v_proj'], projection_prng_key: 0, save_projection: false, vera_dropout: 0.0, d_initial: 0.1,
  fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_weights: true, layers_to_transform: null, layers_pattern: null, ...fields,
});


describe.each(['cpu', 'webgpu'])('drawn projections, %s', (name) => {
  it("VeRA saved with save_projection: false: vera_A (4, 24) and vera_B (20, 4) drawn from projection_prng_key 0 as torch draws them, sliced per layer", async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // q_proj (20, 24) and v_proj (12, 16): in_max 24, out_max 20, r 4 — torch's first reference case.
    const c = reference.kernels.avx2[0];
    expect([c.seed, c.a, c.b]).toEqual([0, [4, 24], [20, 4]]);
    const { a, b } = plainProjections(c);
    expect(bitsOf(a)).toEqual(c.aBits);
    const r = 4;
    const wq = vals(20 * 24, 'BF16'), wv = vals(12 * 16, 'BF16');
    const lbq = vals(20, 'F32'), ldq = vals(r, 'F32'), lbv = vals(12, 'F32'), ldv = vals(r, 'F32');
    const { tensors: merged } = await mergePeftFolder(backend, [t(`${q}.weight`, 'BF16', [20, 24], wq), t(`${v}.weight`, 'BF16', [12, 16], wv)], veraConfig({ r }), [
      t(saved(q, 'vera_lambda_b'), 'F32', [20], lbq), t(saved(q, 'vera_lambda_d'), 'F32', [r], ldq),
      t(saved(v, 'vera_lambda_b'), 'F32', [12], lbv), t(saved(v, 'vera_lambda_d'), 'F32', [r], ldv),
    ], 0.5);
    expectMerged(merged.get(`${q}.weight`)!.values, veraTruth(wq, 20, 24, r, a, 24, b, lbq, ldq, 0.5), 'BF16', q);
    expectMerged(merged.get(`${v}.weight`)!.values, veraTruth(wv, 12, 16, r, a, 24, b, lbv, ldv, 0.5), 'BF16', v);
  });

  it('PVeRA saved with save_projection: false: pvera_A (6, 7) and pvera_B (9, 3) from a seed past 32 bits, the mean half merged', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c = reference.kernels.avx2[1];
    expect([c.seed, c.a, c.b]).toEqual([2 ** 32 + 5, [6, 7], [9, 3]]);
    const { a, b } = plainProjections(c);
    const r = 3;
    const wq = vals(9 * 7, 'F32'), wv = vals(5 * 4, 'F32');
    const lbq = vals(9, 'F32'), ldq = vals(2 * r, 'F32'), lbv = vals(5, 'F32'), ldv = vals(2 * r, 'F32');
    const config = { ...veraConfig({ r, projection_prng_key: 2 ** 32 + 5 }), peft_type: 'PVERA', peft_version: '0.19.0', sample_at_inference: false, generator_seed: null, pvera_dropout: 0.0 };
    const { tensors: merged } = await mergePeftFolder(backend, [t(`${q}.weight`, 'F32', [9, 7], wq), t(`${v}.weight`, 'F32', [5, 4], wv)], config, [
      t(saved(q, 'pvera_lambda_b'), 'F32', [9], lbq), t(saved(q, 'pvera_lambda_d'), 'F32', [2 * r], ldq),
      t(saved(v, 'pvera_lambda_b'), 'F32', [5], lbv), t(saved(v, 'pvera_lambda_d'), 'F32', [2 * r], ldv),
    ]);
    expectMerged(merged.get(`${q}.weight`)!.values, veraTruth(wq, 9, 7, r, a, 7, b, lbq, ldq), 'F32', q);
    expectMerged(merged.get(`${v}.weight`)!.values, veraTruth(wv, 5, 4, r, a, 7, b, lbv, ldv), 'F32', v);
  });
});

it('refuses a VeRA file without projections whose config does not say save_projection: false, one whose λ_d does not fit r, a seed that is no integer, and one projection without the other', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const mod = [t(saved(q, 'vera_lambda_b'), 'F32', [4], vals(4, 'F32')), t(saved(q, 'vera_lambda_d'), 'F32', [2], vals(2, 'F32'))];
  await expect(preparePeftFolder(base, veraConfig({ r: 2, save_projection: true }), mod))
    .rejects.toThrow(/VeRA adapter without base_model\.vera_A and vera_B, and its config does not say save_projection: false \(PEFT refuses to load it/);
  await expect(preparePeftFolder(base, veraConfig({ r: 3 }), mod)).rejects.toThrow(/vera_lambda_d \(2\) do not fit the config's r 3/);
  await expect(preparePeftFolder(base, veraConfig({ r: 2, projection_prng_key: 1.5 }), mod)).rejects.toThrow(/"projection_prng_key" must be an integer/);
  await expect(preparePeftFolder(base, veraConfig({ r: 2 }), [...mod, t('base_model.vera_A', 'F32', [2, 5], vals(10, 'F32'))]))
    .rejects.toThrow(/VeRA adapter with base_model\.vera_A but without base_model\.vera_B, which PEFT saves and loads together/);
});

it('projection_prng_key is read from its text, as Python reads it: 2^64 − 1 (past 2^53) seeds torch with its low 32 bits; a float (1e3, 7.0) or a key past torch\'s range refused', async () => {
  const backend = backends.cpu!;
  const r = 2;
  const wq = vals(6 * 5, 'F32');
  const lb = vals(6, 'F32'), ld = vals(r, 'F32');
  const mods = [t(saved(q, 'vera_lambda_b'), 'F32', [6], lb), t(saved(q, 'vera_lambda_d'), 'F32', [r], ld)];
  // The config as PEFT writes it, the key's digits as given (JSON.stringify would round them).
  const folder = (key: string) => {
    const files = peftFolder(veraConfig({ r, target_modules: ['q_proj'], projection_prng_key: 1234567 }), mods);
    return { ...files, 'adapter_config.json': (files['adapter_config.json'] as string).replace('"projection_prng_key":1234567', `"projection_prng_key":${key}`) };
  };
  const merge = (key: string) => mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'F32', [6, 5], wq)]) }, adapters: [{ name: 'adapter', files: folder(key), weight: 1 }] });
  // torch: manual_seed(2**64 - 1) keeps 0xffffffff, as manual_seed(4294967295) and manual_seed(-1) do.
  const next = plainMt(0xffffffff);
  const a = plainKaiming(next, r, 5), b = plainKaiming(next, 6, r);
  const want = veraTruth(wq, 6, 5, r, a, 5, b, lb, ld);
  for (const key of ['18446744073709551615', '4294967295', '-1']) expectMerged((await merge(key)).tensors.get(`${q}.weight`)!.values, want, 'F32', `key ${key}`);
  // JSON.parse alone reads 2^64 − 1 as 2^64, whose low 32 bits are 0: not what torch draws from.
  expect(low32(2 ** 64)).toBe(0);
  await expect(merge('1e3')).rejects.toThrow(/VeRA "projection_prng_key" must be an integer \(torch\.Generator\(\)\.manual_seed takes one\), got 1e3$/);
  await expect(merge('7.0')).rejects.toThrow(/must be an integer .*got 7\.0$/);
  await expect(merge('18446744073709551616')).rejects.toThrow(/VeRA "projection_prng_key" is 18446744073709551616, outside the −2\^63 to 2\^64 − 1 that torch\.Generator\(\)\.manual_seed takes \(PEFT stops on it with a RuntimeError\); give a key within it$/);
  await expect(merge('-9223372036854775809')).rejects.toThrow(/is -9223372036854775809, outside the −2\^63 to 2\^64 − 1/);
  // The range's ends are taken.
  expect((await merge('-9223372036854775808')).tensors.has(`${q}.weight`)).toBe(true);
});

it('refuses such a file where the width of vera_A cannot be told: a module that lands on no tensor, and resize, which has no base', async () => {
  const mods = [
    t(saved(q, 'vera_lambda_b'), 'F32', [4], vals(4, 'F32')), t(saved(q, 'vera_lambda_d'), 'F32', [2], vals(2, 'F32')),
    t(saved(v, 'vera_lambda_b'), 'F32', [4], vals(4, 'F32')), t(saved(v, 'vera_lambda_d'), 'F32', [2], vals(2, 'F32')),
  ];
  // v_proj names no tensor of this base: its refusal, and the width's.
  const prepared = await preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], veraConfig({ r: 2 }), mods);
  const problems = prepared.plan.problems.map((p) => p.message);
  expect(problems.some((m) => m.includes('v_proj'))).toBe(true);
  expect(problems.join('\n')).toMatch(/adapter: saved without vera_A and vera_B \(save_projection: false\), which PEFT draws at the width of the widest layer the adapter wraps, and one of its modules lands on no tensor of this base, so that width is unknown/);
  await expectPeftCliRefusal([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], veraConfig({ r: 2, target_modules: ['q_proj'] }), mods.slice(0, 2),
    /VeRA module "model\.layers\.0\.self_attn\.q_proj": the adapter was saved without vera_A and vera_B \(save_projection: false\), which PEFT draws again at the width of the widest layer it wraps; only a merge into the base model tells that width/, 'resize');
});

it('the CLI merges such a folder (the plan sizes the projections before its workers load them)', async () => {
  const r = 2;
  const mods = [
    t(saved(q, 'vera_lambda_b'), 'F32', [6], vals(6, 'F32')), t(saved(q, 'vera_lambda_d'), 'F32', [r], vals(r, 'F32')),
    t(saved(v, 'vera_lambda_b'), 'F32', [4], vals(4, 'F32')), t(saved(v, 'vera_lambda_d'), 'F32', [r], vals(r, 'F32')),
  ];
  const result = await peftFolderOnCli([t(`${q}.weight`, 'BF16', [6, 5], vals(30, 'BF16')), t(`${v}.weight`, 'BF16', [4, 8], vals(32, 'BF16'))], veraConfig({ r }), mods);
  expect(result.code, result.stderr).toBe(0);
  expect(result.listing).toEqual(['adapter', 'base.safetensors', 'out.safetensors']);
});
