/**
 * combine and resize on both backends, checked against float64 math written in the test: cat
 * reproduces Σ w·s·B·A, svd reaches the Eckart–Young optimum, PEFT's ties / dare / magnitude-prune
 * rules hold element by element, kohya's dynamic rank rules and clamp quantile are reproduced.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { combineAdapters, type CombineOptions } from '../src/adapter-ops/combine.js';
import { resizeAdapter } from '../src/adapter-ops/resize.js';
import type { AlgebraBackend } from '../src/algebra/algebra-backend.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { createWebGpuAlgebra } from '../src/algebra/gpu-algebra.js';
import { dareSeed } from '../src/algebra/merge-rules.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { createRandom } from '../src/sample/seeded-random.js';
import { kohyaFile, peftFiles, type FixtureModule } from './helpers/adapter-fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { dense, frob2, gaussian, minus, optimalError, product, singularValues, withSpectrum, type Dense, writtenUpdate } from './helpers/svd-reference.js';

const temp = tempDirs();
let nodeGpu: NodeGpu | undefined;
const backends: Record<string, AlgebraBackend | undefined> = { cpu: new CpuAlgebra() };
const opened: ParsedAdapter[] = [];

beforeAll(async () => {
  nodeGpu = await getNodeGpu();
  try {
    backends.webgpu = await createWebGpuAlgebra(nodeGpu.gpu);
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
  }
});

afterAll(async () => {
  for (const b of Object.values(backends)) b?.dispose();
  nodeGpu?.dispose();
  await Promise.all(opened.map((a) => a.file.source.close()));
  temp.removeAll();
});

const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';

function randomDense(rows: number, cols: number, rand: () => number, scale = 1): Dense {
  return dense(rows, cols, () => gaussian(rand) * scale);
}

async function peft(modules: FixtureModule[], config: Record<string, unknown> = {}): Promise<ParsedAdapter> {
  const a = await openAdapter(await openNodeInputFileSet(temp.make(peftFiles(modules, config))));
  opened.push(a);
  return a;
}

/** A kohya file of `modules` saved as `name`, opened. */
async function file(name: string, modules: FixtureModule[]): Promise<ParsedAdapter> {
  const a = await openAdapter(await openNodeInputFileSet(temp.make({ [name]: kohyaFile(modules) })));
  opened.push(a);
  return a;
}


const scaled = (d: Dense, s: number) => dense(d.rows, d.cols, (i, j) => s * d.data[i * d.cols + j]);
const sum = (xs: Dense[]) => dense(xs[0].rows, xs[0].cols, (i, j) => xs.reduce((s, x) => s + x.data[i * x.cols + j], 0));
const relError = (got: Dense, want: Dense) => Math.sqrt(frob2(minus(got, want)) / Math.max(frob2(want), 1e-300));

for (const name of ['cpu', 'webgpu']) {
  describe(`${name} backend`, () => {
    const get = (skip: (note?: string) => void): AlgebraBackend => {
      if (!backends[name]) skip('no WebGPU adapter on this machine');
      return backends[name]!;
    };

    it('cat reproduces Σ w·s·B·A to f32 accuracy (different ranks, a module in one adapter only)', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(1);
      const m1 = { name: Q, b: randomDense(24, 4, rand), a: randomDense(4, 20, rand), alpha: 8 };
      const m2 = { name: Q, b: randomDense(24, 6, rand), a: randomDense(6, 20, rand), alpha: 3 };
      const v1 = { name: V, b: randomDense(12, 4, rand), a: randomDense(4, 20, rand), alpha: 8 };
      const [x, y] = [await peft([m1, v1]), await peft([m2], { r: 6, lora_alpha: 3 })];
      const out = await combineAdapters([{ adapter: x, weight: 0.7 }, { adapter: y, weight: -1.3 }], { method: 'cat', format: 'peft' }, backend);
      const q = out.adapter.modules.find((m) => m.name === Q)!;
      expect(q.rank).toBe(10);
      const want = sum([scaled(product(m1.b, m1.a), 0.7 * 8 / 4), scaled(product(m2.b, m2.a), -1.3 * 3 / 6)]);
      expect(relError(writtenUpdate(q), want)).toBeLessThan(1e-6);
      const v = out.adapter.modules.find((m) => m.name === V)!;
      expect(v.rank).toBe(4);
      expect(relError(writtenUpdate(v), scaled(product(v1.b, v1.a), 0.7 * 2))).toBeLessThan(1e-6);
    });

    it('svd --rank k is within 1e-3 of the optimal rank-k error of Σ w·s·B·A', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(2);
      const mods = [0, 1, 2].map(() => ({ name: Q, b: randomDense(70, 8, rand), a: randomDense(8, 90, rand, 0.1), alpha: 16 }));
      const adapters = await Promise.all(mods.map((m) => peft([m], { lora_alpha: 16 })));
      const weights = [1, 0.5, -0.25];
      const want = sum(mods.map((m, i) => scaled(product(m.b, m.a), weights[i] * 2)));
      for (const k of [1, 5, 12]) {
        const out = await combineAdapters(adapters.map((adapter, i) => ({ adapter, weight: weights[i] })), { method: 'svd', rank: k, format: 'peft' }, backend);
        const m = out.adapter.modules[0];
        expect(m.rank).toBe(k);
        expect(m.alpha).toBe(k);
        const err = Math.sqrt(frob2(minus(writtenUpdate(m), want)));
        expect(err).toBeLessThanOrEqual(optimalError(want, k) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(want)));
      }
    });

    /** Rules written from PEFT's merge_utils, on full-rank small cases so the SVD step is exact. */
    async function checkRule(method: CombineOptions['method'], density: number, majority: 'total' | 'frequency', seed: number) {
      const backend = backends[name]!;
      const rand = seededRandom(10 + seed);
      const [m, n, r] = [7, 6, 6];
      const mods = [0, 1, 2].map((i) => ({ name: Q, b: randomDense(m, r, rand), a: randomDense(r, n, rand), alpha: [6, 3, 12][i] }));
      const adapters = await Promise.all(mods.map((mod) => peft([mod], { r, lora_alpha: mod.alpha })));
      const weights = [0.9, -0.6, 0.4];
      const out = await combineAdapters(adapters.map((adapter, i) => ({ adapter, weight: weights[i] })),
        { method, rank: 6, density, majoritySign: majority, seed, format: 'peft' }, backend);
      const got = writtenUpdate(out.adapter.modules[0]);
      // Tᵢ = sᵢ·BᵢAᵢ in f32, as the library forms them.
      const tasks = mods.map((mod) => Array.from(Float32Array.from(product(mod.b, mod.a).data, (x) => Math.fround(x * mod.alpha / r))));
      let pruned: number[][];
      if (method.startsWith('dare')) {
        const random = createRandom(dareSeed(seed, Q));
        pruned = tasks.map((t) => t.map((x) => (random() < density ? Math.fround(x / density) : 0)));
      } else {
        const k = Math.floor(density * m * n);
        pruned = tasks.map((t) => {
          const threshold = [...t].map(Math.abs).sort((p, q) => q - p)[k - 1];
          return t.map((x) => (Math.abs(x) >= threshold ? x : 0));
        });
      }
      const want = new Float64Array(m * n);
      for (let i = 0; i < m * n; i++) {
        if (method === 'magnitude_prune' || method === 'dare_linear') {
          want[i] = pruned.reduce((s, p, t) => s + weights[t] * p[i], 0);
          continue;
        }
        const vote = pruned.reduce((s, p) => s + (majority === 'total' ? p[i] : Math.sign(p[i])), 0);
        const sign = vote >= 0 ? 1 : -1;
        let total = 0, count = 0;
        pruned.forEach((p, t) => {
          if (Math.sign(p[i]) === sign) {
            total += weights[t] * p[i];
            count++;
          }
        });
        want[i] = total / Math.max(count, 1);
      }
      const scale = Math.sqrt(frob2({ rows: m, cols: n, data: want }) / (m * n));
      for (let i = 0; i < m * n; i++) expect(Math.abs(got.data[i] - want[i]), `element ${i}`).toBeLessThan(2e-5 * scale);
    }

    it('ties (total and frequency) element by element', async (ctx) => {
      get(ctx.skip);
      await checkRule('ties', 0.5, 'total', 1);
      await checkRule('ties', 0.3, 'frequency', 2);
    });
    it('dare_linear and dare_ties element by element, with the documented draws', async (ctx) => {
      get(ctx.skip);
      await checkRule('dare_linear', 0.6, 'total', 3);
      await checkRule('dare_ties', 0.5, 'frequency', 4);
    });
    it('magnitude_prune element by element', async (ctx) => {
      get(ctx.skip);
      await checkRule('magnitude_prune', 0.4, 'total', 5);
      await checkRule('magnitude_prune', 1, 'total', 6);
    });

    it('--clamp-quantile clamps up and down to ± the q-quantile of their values', async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(7);
      const adapter = await peft([{ name: Q, b: randomDense(30, 4, rand), a: randomDense(4, 25, rand) }]);
      const plain = (await combineAdapters([{ adapter, weight: 1 }, { adapter, weight: 0.5 }], { method: 'svd', rank: 3, format: 'peft' }, backend)).adapter.modules[0];
      const clamped = (await combineAdapters([{ adapter, weight: 1 }, { adapter, weight: 0.5 }], { method: 'svd', rank: 3, clampQuantile: 0.9, format: 'peft' }, backend)).adapter.modules[0];
      const values = [...plain.up, ...plain.down].sort((x, y) => x - y);
      const pos = 0.9 * (values.length - 1);
      const hi = values[Math.floor(pos)] + (pos - Math.floor(pos)) * (values[Math.ceil(pos)] - values[Math.floor(pos)]);
      const clip = (x: number) => Math.min(Math.max(x, -hi), hi);
      [...plain.up].forEach((x, i) => expect(clamped.up[i]).toBeCloseTo(clip(x), 5));
      [...plain.down].forEach((x, i) => expect(clamped.down[i]).toBeCloseTo(clip(x), 5));
    });

    it("resize follows kohya's dynamic rules, keeps each module's scale, and is optimal", async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(8);
      const s = [5, 3, 2, 1, 0.5, 0.2, 0.1, 0.05];
      const w = withSpectrum(40, 30, s, rand);
      // B = U·√S, A = √S·Vᵀ of w: any factorisation of the same product.
      const b = randomDense(40, 8, rand);
      const pinv = solveFactor(b, w);
      const adapter = await file('x.safetensors', [{ name: 'lora_unet_mid_block_attentions_0_proj_in', b, a: pinv, alpha: 4 }]);
      const target = product(b, pinv);
      const sv = singularValues(target);
      const n = Math.min(40, 30);
      const clampIndex = (i: number) => Math.max(1, Math.min(i, n - 1));
      const sum1 = sv.reduce((p, x) => p + x, 0), sum2 = sv.reduce((p, x) => p + x * x, 0);
      const firstReaching = (frac: (i: number) => number, t: number) => { let i = 0; while (i < n && frac(i) < t) i++; return i; };
      const cum = (p: number) => (i: number) => sv.slice(0, i + 1).reduce((a, x) => a + x ** p, 0) / (p === 1 ? sum1 : sum2);
      const expected: [Parameters<typeof resizeAdapter>[1], number][] = [
        [{ kind: 'rank', rank: 3 }, 3],
        [{ kind: 'sv_ratio', value: 12 }, Math.min(8, clampIndex(sv.filter((x) => x > sv[0] / 12).length) + 1)],
        [{ kind: 'sv_fro', value: 0.95 }, Math.min(8, clampIndex(firstReaching(cum(2), 0.95 ** 2) + 1) + 1)],
        [{ kind: 'sv_cumulative', value: 0.8 }, Math.min(8, clampIndex(firstReaching(cum(1), 0.8) + 1) + 1)],
      ];
      for (const [rule, rank] of expected) {
        const out = await resizeAdapter(adapter, rule, 'kohya', backend);
        const m = out.adapter.modules[0];
        expect(m.rank, JSON.stringify(rule)).toBe(rank);
        expect(m.alpha / m.rank).toBeCloseTo(4 / 8, 12);
        const err = Math.sqrt(frob2(minus(writtenUpdate(m), scaled(target, 0.5))));
        expect(err).toBeLessThanOrEqual(optimalError(scaled(target, 0.5), rank) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
        expect(out.report[0].froKept).toBeCloseTo(Math.sqrt(sv.slice(0, rank).reduce((a, x) => a + x * x, 0) / sum2), 5);
      }
    });

    it("resize with a dynamic rule and a maximum rank keeps the rule's rank capped there, as kohya's --new_rank beside --dynamic_method", async (ctx) => {
      const backend = get(ctx.skip);
      const rand = seededRandom(18);
      const w = withSpectrum(40, 30, [5, 3, 2, 1, 0.5, 0.2, 0.1, 0.05], rand);
      const b = randomDense(40, 8, rand);
      const a = solveFactor(b, w);
      const adapter = await file('x.safetensors', [{ name: 'lora_unet_mid_block_attentions_0_proj_in', b, a, alpha: 4 }]);
      const target = product(b, a);
      const sv = singularValues(target);
      const n = 30;
      // kohya's rank_resize written out: the rule's index + 1, clamped to [1, n − 1] first, then capped at new_rank.
      const clampIndex = (i: number) => Math.max(1, Math.min(i, n - 1));
      const sum2 = sv.reduce((p, x) => p + x * x, 0);
      let froIndex = 0;
      for (let run = 0; froIndex < n && (run += sv[froIndex] ** 2) / sum2 < 0.999 ** 2;) froIndex++;
      const ratioRank = clampIndex(sv.filter((x) => x > sv[0] / 1e6).length) + 1;
      const froRank = clampIndex(froIndex + 1) + 1;
      const cases: [Parameters<typeof resizeAdapter>[1], number][] = [
        [{ kind: 'sv_fro', value: 0.999, maxRank: 3 }, Math.min(froRank, 3)],
        [{ kind: 'sv_fro', value: 0.999, maxRank: 20 }, Math.min(froRank, 20)],
        // The rule's off-by-one goes past the module's rank 8; a cap above it lets it, as kohya does.
        [{ kind: 'sv_ratio', value: 1e6, maxRank: 12 }, Math.min(ratioRank, 12)],
        [{ kind: 'sv_ratio', value: 1e6, maxRank: 2 }, Math.min(ratioRank, 2)],
      ];
      expect(froRank).toBeGreaterThan(3);
      expect(ratioRank).toBe(9);
      for (const [rule, rank] of cases) {
        const out = await resizeAdapter(adapter, rule, 'kohya', backend);
        const m = out.adapter.modules[0];
        expect(m.rank, JSON.stringify(rule)).toBe(rank);
        expect(m.alpha / m.rank).toBeCloseTo(4 / 8, 12);
        const err = Math.sqrt(frob2(minus(writtenUpdate(m), scaled(target, 0.5))));
        expect(err, JSON.stringify(rule)).toBeLessThanOrEqual(optimalError(scaled(target, 0.5), rank) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
        expect(out.adapter.metadata.loramerge_rule).toBe(`${rule.kind} ${'value' in rule ? rule.value : ''} at most rank ${'maxRank' in rule ? rule.maxRank : ''}`);
      }
    });
  });
}

describe('one base weight named two ways (a diffusers-named PEFT UNet LoRA beside a kohya SDXL one in LDM names)', () => {
  const diffusersPath = 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q';
  const ldmKey = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';
  const onlyKohya = 'lora_unet_input_blocks_4_1_proj_in';
  async function pair(seed: number) {
    const rand = seededRandom(seed);
    const b1 = randomDense(40, 4, rand), a1 = randomDense(4, 30, rand);
    const b2 = randomDense(40, 4, rand), a2 = randomDense(4, 30, rand);
    const b3 = randomDense(40, 2, rand), a3 = randomDense(2, 30, rand);
    const diffusers = await peft([{ name: diffusersPath, b: b1, a: a1, alpha: 8 }], { target_modules: ['to_q'], base_model_name_or_path: 'stabilityai/stable-diffusion-xl-base-1.0', task_type: null });
    const kohya = await file('k.safetensors', [{ name: ldmKey, b: b2, a: a2, alpha: 2 }, { name: onlyKohya, b: b3, a: a3, alpha: 2 }]);
    // The update asked for on to_q, in float64: 1 · (8/4)·B₁A₁ + 0.5 · (2/4)·B₂A₂.
    const target = sum([scaled(product(b1, a1), 2), scaled(product(b2, a2), 0.25)]);
    return { inputs: [{ adapter: diffusers, weight: 1 }, { adapter: kohya, weight: 0.5 }], target, only: scaled(product(b3, a3), 0.5) };
  }
  const cpu = () => backends.cpu!;
  const outName = `lora_unet_${diffusersPath.replace(/\./g, '_')}`;

  it('svd reduces their sum to its best rank k as one module, named as the first adapter names it', async () => {
    const { inputs, target, only } = await pair(40);
    const out = await combineAdapters(inputs, { method: 'svd', rank: 3, format: 'kohya' }, cpu());
    expect(out.adapter.modules.map((m) => m.name)).toEqual([outName, onlyKohya]);
    const [m, rest] = out.adapter.modules;
    const err = Math.sqrt(frob2(minus(writtenUpdate(m), target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 3) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
    expect(relError(writtenUpdate(rest), only)).toBeLessThan(1e-5);
  });

  it("the element-wise rules take each adapter's update on the weight as one task (magnitude_prune at density 1: their weighted sum)", async () => {
    const { inputs, target } = await pair(41);
    const out = await combineAdapters(inputs, { method: 'magnitude_prune', density: 1, rank: 3, format: 'kohya' }, cpu());
    expect(out.adapter.modules.map((m) => m.name)).toEqual([outName, onlyKohya]);
    const err = Math.sqrt(frob2(minus(writtenUpdate(out.adapter.modules[0]), target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 3) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
  });

  it('ties takes an adapter that names the weight both ways as one task: the sum of its two modules', async () => {
    const rand = seededRandom(43);
    const b1 = randomDense(40, 2, rand), a1 = randomDense(2, 30, rand), b2 = randomDense(40, 2, rand), a2 = randomDense(2, 30, rand);
    const b3 = randomDense(40, 3, rand), a3 = randomDense(3, 30, rand);
    const both = await file('both.safetensors', [{ name: outName, b: b1, a: a1, alpha: 2 }, { name: ldmKey, b: b2, a: a2, alpha: 1 }]);
    const other = await file('other.safetensors', [{ name: ldmKey, b: b3, a: a3, alpha: 3 }]);
    // PEFT's ties at density 1, in float64: signs elected from T₁ + T₂, the weighted values of that sign averaged over how many have it.
    const t1 = sum([product(b1, a1), scaled(product(b2, a2), 0.5)]);
    const t2 = product(b3, a3);
    const weights = [1, -0.7];
    const merged = dense(40, 30, (i, j) => {
      const x = [t1.data[i * 30 + j], t2.data[i * 30 + j]];
      const sign = x[0] + x[1] >= 0 ? 1 : -1;
      const agree = [0, 1].filter((t) => Math.sign(x[t]) === sign);
      return agree.reduce((s, t) => s + weights[t] * x[t], 0) / Math.max(agree.length, 1);
    });
    const out = await combineAdapters([{ adapter: both, weight: 1 }, { adapter: other, weight: -0.7 }], { method: 'ties', density: 1, rank: 4, format: 'kohya' }, cpu());
    expect(out.adapter.modules.map((m) => m.name)).toEqual([outName]);
    const err = Math.sqrt(frob2(minus(writtenUpdate(out.adapter.modules[0]), merged)));
    expect(err).toBeLessThanOrEqual(optimalError(merged, 4) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(merged)));
  });

  it('cat writes the two as one module of rank 8 holding their sum exactly', async () => {
    const { inputs, target } = await pair(42);
    const out = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, cpu());
    expect(out.adapter.modules.map((m) => [m.name, m.rank])).toEqual([[outName, 8], [onlyKohya, 2]]);
    expect(relError(writtenUpdate(out.adapter.modules[0]), target)).toBeLessThan(1e-6);
  });
});

it("refuses svd where one Flux weight is named BFL's way (qkv) and diffusers' way (to_q, a third of its rows), naming both; cat writes both exactly", async () => {
  const rand = seededRandom(45);
  const qkv = 'lora_unet_double_blocks_0_img_attn_qkv';
  const kohya = await file('bfl.safetensors', [{ name: qkv, b: randomDense(24, 2, rand), a: randomDense(2, 8, rand) }]);
  const diffusers = await peft([{ name: 'transformer_blocks.0.attn.to_q', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }, { name: 'transformer_blocks.0.attn.to_out.0', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }], { target_modules: ['to_q', 'to_out.0'], task_type: null });
  const inputs = [{ adapter: kohya, weight: 1 }, { adapter: diffusers, weight: 1 }];
  for (const method of ['svd', 'ties'] as const) {
    const refused = await combineAdapters(inputs, { method, density: method === 'ties' ? 0.5 : undefined, format: 'kohya' }, backends.cpu!).catch((e: Error) => e);
    expect((refused as Error).message).toBe(`combine: "${qkv}" (${kohya.name}) and "lora_unet_transformer_blocks_0_attn_to_q" (${diffusers.name}) name rows of one base weight (double_blocks.0.img_attn.qkv.weight) in two namings, which only the base places; --method ${method} would reduce each on its own, not their sum: combine adapters of one naming, or use --method cat (exact)`);
  }
  const cat = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, backends.cpu!);
  expect(cat.adapter.modules.map((m) => m.name)).toEqual([qkv, 'lora_unet_transformer_blocks_0_attn_to_q', 'lora_unet_transformer_blocks_0_attn_to_out_0']);
  // Diffusers-named adapters alone (to_q, to_k: different thirds) are no overlap.
  const other = await peft([{ name: 'transformer_blocks.0.attn.to_k', b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) }], { target_modules: ['to_k'], task_type: null });
  await expect(combineAdapters([{ adapter: diffusers, weight: 1 }, { adapter: other, weight: 1 }], { method: 'svd', format: 'kohya' }, backends.cpu!)).resolves.toBeDefined();
});

it('cat says which modules it writes at a rank above MAX_RANK, which merge refuses, and nothing at that rank', async () => {
  const rand = seededRandom(44);
  const lora = (r: number) => peft([{ name: Q, b: randomDense(16, r, rand), a: randomDense(r, 16, rand) }]);
  const [x, y, z] = [await lora(512), await lora(512), await lora(1)];
  const atLimit = await combineAdapters([{ adapter: x, weight: 1 }, { adapter: y, weight: 1 }], { method: 'cat', format: 'peft' }, backends.cpu!);
  expect(atLimit.adapter.modules[0].rank).toBe(1024);
  expect(atLimit.warnings).toEqual([]);
  const past = await combineAdapters([{ adapter: x, weight: 1 }, { adapter: y, weight: 1 }, { adapter: z, weight: 1 }], { method: 'cat', format: 'peft' }, backends.cpu!);
  expect(past.adapter.modules[0].rank).toBe(1025);
  expect(past.warnings).toEqual([`1 module(s) are written at a rank above 1024 (${Q} (rank 1025)), which loramerge merge refuses (MAX_RANK); --method svd with a --rank writes their best approximation at a rank it takes`]);
});

it('refuses, naming the module and its method, adapters whose update is no product of two factors (PEFT HRA, SHiRA)', async () => {
  const rand = seededRandom(12);
  const u = Array.from({ length: 16 }, () => gaussian(rand));
  const hra = await openAdapter(await openNodeInputFileSet(temp.make(peftFolder({ peft_type: 'HRA', r: 2, apply_GS: false, target_modules: ['q_proj'] }, [
    { name: `base_model.model.${Q}.hra_u`, dtype: 'F32', shape: [8, 2], data: u },
  ]))));
  const shira = await openAdapter(await openNodeInputFileSet(temp.make(peftFolder({ peft_type: 'SHIRA', r: 1, mask_type: 'random', target_modules: ['q_proj'] }, [
    { name: `base_model.model.${Q}.shira_weight`, dtype: 'F32', shape: [2], data: [0.5, -0.25] },
    { name: `base_model.model.${Q}.shira_indices`, dtype: 'I32', shape: [2, 2], data: [3, 1, 5, 0] },
  ]))));
  opened.push(hra, shira);
  const cpu = backends.cpu!;
  const line = (what: string, command: string) => new RegExp(`^[^\\n]*module "base_model\\.model\\.${Q.replace(/\./g, '\\.')}" is ${what}, whose update is not a low-rank product; ${command} cannot express it as a LoRA \\(merge it into the base instead\\)$`);
  await expect(resizeAdapter(hra, { kind: 'rank', rank: 1 }, 'peft', cpu)).rejects.toThrow(line('HRA \\(PEFT\\)', 'resize'));
  await expect(resizeAdapter(shira, { kind: 'rank', rank: 1 }, 'peft', cpu)).rejects.toThrow(line('SHiRA \\(PEFT\\)', 'resize'));
  await expect(combineAdapters([{ adapter: shira, weight: 1 }, { adapter: hra, weight: 0.5 }], { method: 'cat', format: 'peft' }, cpu)).rejects.toThrow(/combine cannot express it as a LoRA/);
});

/** A with b·A = w for a full-column-rank b (normal equations, f64, by Gaussian elimination). */
function solveFactor(b: Dense, w: Dense): Dense {
  const r = b.cols;
  const g = dense(r, r, (i, j) => { let s = 0; for (let k = 0; k < b.rows; k++) s += b.data[k * r + i] * b.data[k * r + j]; return s; });
  const rhs = dense(r, w.cols, (i, j) => { let s = 0; for (let k = 0; k < b.rows; k++) s += b.data[k * r + i] * w.data[k * w.cols + j]; return s; });
  for (let p = 0; p < r; p++) {
    for (let i = p + 1; i < r; i++) {
      const f = g.data[i * r + p] / g.data[p * r + p];
      for (let j = 0; j < r; j++) g.data[i * r + j] -= f * g.data[p * r + j];
      for (let j = 0; j < w.cols; j++) rhs.data[i * w.cols + j] -= f * rhs.data[p * w.cols + j];
    }
  }
  const x = dense(r, w.cols, () => 0);
  for (let i = r - 1; i >= 0; i--) {
    for (let j = 0; j < w.cols; j++) {
      let s = rhs.data[i * w.cols + j];
      for (let k = i + 1; k < r; k++) s -= g.data[i * r + k] * x.data[k * w.cols + j];
      x.data[i * w.cols + j] = s / g.data[i * r + i];
    }
  }
  return x;
}

describe('one text encoder weight named two ways (kohya beside diffusers; open_clip beside transformers)', () => {
  const cpu = () => backends.cpu!;

  it("SD1.x's encoder: kohya's lora_te_ and diffusers' text_encoder. are one module, for svd and cat", async () => {
    const rand = seededRandom(46);
    const b1 = randomDense(24, 4, rand), a1 = randomDense(4, 16, rand), b2 = randomDense(24, 2, rand), a2 = randomDense(2, 16, rand);
    const kohyaName = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
    const kohya = await file('kohya.safetensors', [{ name: kohyaName, b: b1, a: a1, alpha: 2 }]);
    const diffusers = await file('diffusers.safetensors', [{ name: 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj', b: b2, a: a2, alpha: 4 }]);
    const inputs = [{ adapter: kohya, weight: 1 }, { adapter: diffusers, weight: 0.5 }];
    // In float64: 1 · (2/4)·B₁A₁ + 0.5 · (4/2)·B₂A₂, the update of the first encoder's q_proj.
    const target = sum([scaled(product(b1, a1), 0.5), scaled(product(b2, a2), 1)]);
    const cat = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, cpu());
    expect(cat.adapter.modules.map((m) => [m.name, m.rank])).toEqual([[kohyaName, 6]]);
    expect(relError(writtenUpdate(cat.adapter.modules[0]), target)).toBeLessThan(1e-6);
    const svd = await combineAdapters(inputs, { method: 'svd', rank: 3, format: 'kohya' }, cpu());
    expect(svd.adapter.modules.map((m) => m.name)).toEqual([kohyaName]);
    const err = Math.sqrt(frob2(minus(writtenUpdate(svd.adapter.modules[0]), target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 3) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
  });

  it("SDXL's second encoder: open_clip's names (LDM checkpoint) and transformers' are one module each, for svd and cat", async () => {
    const rand = seededRandom(47);
    const f = () => ({ b: randomDense(32, 2, rand), a: randomDense(2, 16, rand) });
    const [fc1Open, fc1Hf, outOpen, outHf] = [f(), f(), f(), f()];
    const open = await file('ldm.safetensors', [
      { name: 'conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc', ...fc1Open, alpha: 1 },
      { name: 'lora_te2_transformer_resblocks_0_attn_out_proj', ...outOpen, alpha: 2 },
    ]);
    const hf = await file('hf.safetensors', [
      { name: 'lora_te2_text_model_encoder_layers_0_mlp_fc1', ...fc1Hf, alpha: 2 },
      { name: 'text_encoder_2.text_model.encoder.layers.0.self_attn.out_proj', ...outHf, alpha: 4 },
    ]);
    const inputs = [{ adapter: hf, weight: 1 }, { adapter: open, weight: -0.5 }];
    // In float64, per landing weight: Σ wᵢ · (αᵢ/rᵢ) · BᵢAᵢ.
    const target = {
      lora_te2_text_model_encoder_layers_0_mlp_fc1: sum([scaled(product(fc1Hf.b, fc1Hf.a), 1), scaled(product(fc1Open.b, fc1Open.a), -0.25)]),
      lora_te2_text_model_encoder_layers_0_self_attn_out_proj: sum([scaled(product(outHf.b, outHf.a), 2), scaled(product(outOpen.b, outOpen.a), -0.5)]),
    };
    const cat = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, cpu());
    expect(cat.adapter.modules.map((m) => [m.name, m.rank])).toEqual(Object.keys(target).map((n) => [n, 4]));
    for (const m of cat.adapter.modules) expect(relError(writtenUpdate(m), target[m.name as keyof typeof target]), m.name).toBeLessThan(1e-6);
    const svd = await combineAdapters(inputs, { method: 'svd', rank: 2, format: 'kohya' }, cpu());
    expect(svd.adapter.modules.map((m) => m.name)).toEqual(Object.keys(target));
    for (const m of svd.adapter.modules) {
      const want = target[m.name as keyof typeof target];
      const err = Math.sqrt(frob2(minus(writtenUpdate(m), want)));
      expect(err, m.name).toBeLessThanOrEqual(optimalError(want, 2) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(want)));
    }
  });
});

describe("single-file checkpoints' text encoder namings (SD1/SD2 cond_stage_model., SDXL conditioner.embedders.) beside kohya's and diffusers'", () => {
  const cpu = () => backends.cpu!;
  /** The update Σ wᵢ·(αᵢ/rᵢ)·BᵢAᵢ in float64. */
  const target = (parts: { m: { b: Dense; a: Dense; alpha: number }; w: number }[]) =>
    sum(parts.map(({ m, w }) => scaled(product(m.b, m.a), (w * m.alpha) / m.b.cols)));
  const withinOptimal = (got: Dense, want: Dense, k: number) =>
    Math.sqrt(frob2(minus(got, want))) <= optimalError(want, k) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(want));

  it("SD2's OpenCLIP-H in open_clip's naming (cond_stage_model.model.…resblocks) is kohya's lora_te_ and diffusers' text_encoder. module, for svd", async () => {
    const rand = seededRandom(61);
    const f = (alpha: number) => ({ b: randomDense(32, 2, rand), a: randomDense(2, 16, rand), alpha });
    const [outLdm, fc2Ldm, outKohya, fc2Diffusers] = [f(1), f(2), f(4), f(2)];
    const ldm = await file('sd2-ldm.safetensors', [
      { name: 'cond_stage_model.model.transformer.resblocks.3.attn.out_proj', ...outLdm },
      { name: 'cond_stage_model.model.transformer.resblocks.3.mlp.c_proj', ...fc2Ldm },
    ]);
    const kohya = await file('sd2-kohya.safetensors', [{ name: 'lora_te_text_model_encoder_layers_3_self_attn_out_proj', ...outKohya }]);
    const diffusers = await file('sd2-diffusers.safetensors', [{ name: 'text_encoder.text_model.encoder.layers.3.mlp.fc2', ...fc2Diffusers }]);
    const inputs = [{ adapter: kohya, weight: 1 }, { adapter: ldm, weight: 0.5 }, { adapter: diffusers, weight: -1 }];
    const want: Record<string, Dense> = {
      lora_te_text_model_encoder_layers_3_self_attn_out_proj: target([{ m: outKohya, w: 1 }, { m: outLdm, w: 0.5 }]),
      lora_te_cond_stage_model_model_transformer_resblocks_3_mlp_c_proj: target([{ m: fc2Ldm, w: 0.5 }, { m: fc2Diffusers, w: -1 }]),
    };
    const svd = await combineAdapters(inputs, { method: 'svd', rank: 2, format: 'kohya' }, cpu());
    expect(svd.adapter.modules.map((m) => m.name)).toEqual(Object.keys(want));
    for (const m of svd.adapter.modules) expect(withinOptimal(writtenUpdate(m), want[m.name], 2), m.name).toBe(true);
  });

  it("SDXL's CLIP-L as its checkpoint names it (conditioner.embedders.0.transformer.), lora_te1_ and text_encoder. are one module; its CLIP-G's stays apart", async () => {
    const rand = seededRandom(62);
    const f = (alpha: number) => ({ b: randomDense(24, 3, rand), a: randomDense(3, 16, rand), alpha });
    const [qSgm, qKohya, qDiffusers, qG] = [f(3), f(1.5), f(6), f(3)];
    const sgm = await file('sdxl-sgm.safetensors', [{ name: 'conditioner.embedders.0.transformer.text_model.encoder.layers.5.self_attn.q_proj', ...qSgm }]);
    const kohya = await file('sdxl-kohya.safetensors', [
      { name: 'lora_te1_text_model_encoder_layers_5_self_attn_q_proj', ...qKohya },
      { name: 'lora_te2_text_model_encoder_layers_5_self_attn_q_proj', ...qG },
    ]);
    const diffusers = await file('sdxl-diffusers.safetensors', [{ name: 'text_encoder.text_model.encoder.layers.5.self_attn.q_proj', ...qDiffusers }]);
    const inputs = [{ adapter: kohya, weight: 0.75 }, { adapter: diffusers, weight: 1 }, { adapter: sgm, weight: 2 }];
    const want: Record<string, Dense> = {
      lora_te1_text_model_encoder_layers_5_self_attn_q_proj: target([{ m: qKohya, w: 0.75 }, { m: qDiffusers, w: 1 }, { m: qSgm, w: 2 }]),
      lora_te2_text_model_encoder_layers_5_self_attn_q_proj: target([{ m: qG, w: 0.75 }]),
    };
    const svd = await combineAdapters(inputs, { method: 'svd', rank: 3, format: 'kohya' }, cpu());
    expect(svd.adapter.modules.map((m) => m.name)).toEqual(Object.keys(want));
    for (const m of svd.adapter.modules) expect(withinOptimal(writtenUpdate(m), want[m.name], 3), m.name).toBe(true);
    // kohya's two spellings of the CLIP-L alone (lora_te_ is the CLIP-L wherever lora_te1_ lands).
    const kohyaTe = await file('sdxl-kohya-te.safetensors', [{ name: 'lora_te_text_model_encoder_layers_5_self_attn_q_proj', ...qSgm }]);
    const pair = await combineAdapters([{ adapter: kohyaTe, weight: 1 }, { adapter: kohya, weight: 1 }], { method: 'svd', rank: 3, format: 'kohya' }, cpu());
    expect(pair.adapter.modules.map((m) => m.name)).toEqual(['lora_te_text_model_encoder_layers_5_self_attn_q_proj', 'lora_te2_text_model_encoder_layers_5_self_attn_q_proj']);
    expect(withinOptimal(writtenUpdate(pair.adapter.modules[0]), target([{ m: qSgm, w: 1 }, { m: qKohya, w: 1 }]), 3)).toBe(true);
  });

  it("a bare text_model. module, SD1's checkpoint naming and a combine output's kohya name of it are one module with lora_te_ and text_encoder.'s, whatever order the adapters come in", async () => {
    const rand = seededRandom(63);
    const f = (alpha: number) => ({ b: randomDense(20, 2, rand), a: randomDense(2, 12, rand), alpha });
    const named: [string, string][] = [
      ['bare', 'text_model.encoder.layers.0.mlp.fc1'],
      ['kohya', 'lora_te_text_model_encoder_layers_0_mlp_fc1'],
      ['diffusers', 'text_encoder.text_model.encoder.layers.0.mlp.fc1'],
      ['ldm', 'cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1'],
      // What combine writes for the LDM name in a kohya file (kohyaPartFor): the same output name.
      ['combined', 'lora_te_cond_stage_model_transformer_text_model_encoder_layers_0_mlp_fc1'],
    ];
    const weighted = await Promise.all(named.map(async ([label, name], i) => {
      const m = f(i + 1);
      return { adapter: await file(`${label}.safetensors`, [{ name, ...m }]), weight: [1, -0.5, 2, 0.25, -1][i], m };
    }));
    const want = target(weighted.map(({ m, weight }) => ({ m, w: weight })));
    const orders = (xs: number[]): number[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x) => orders(xs.filter((y) => y !== x)).map((o) => [x, ...o])));
    for (const order of orders([0, 1, 2, 3, 4])) {
      const inputs = order.map((i) => ({ adapter: weighted[i].adapter, weight: weighted[i].weight }));
      const cat = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, cpu());
      expect(cat.adapter.modules.map((m) => m.rank), `order ${order}`).toEqual([10]);
      expect(relError(writtenUpdate(cat.adapter.modules[0]), want), `order ${order}`).toBeLessThan(1e-6);
    }
  });
});

it("refuses svd where Stable Cascade's attention q is named OneTrainer's way (attention.attn.in_proj.0) and ComfyUI's (attn.to_q) or diffusers' (attention.to_q), naming both; cat writes both", async () => {
  const rand = seededRandom(46);
  const lora = (name: string) => ({ name, b: randomDense(8, 2, rand), a: randomDense(2, 8, rand) });
  const oneTrainer = await file('onetrainer_cascade.safetensors', [lora('lora_unet_down_blocks_0_2_attention_attn_in_proj_0')]);
  const comfy = await file('comfy_cascade.safetensors', [lora('lora_unet_down_blocks_0_2_attention_attn_to_q'), lora('lora_unet_down_blocks_0_2_attention_attn_to_k')]);
  const diffusers = await peft([lora('down_blocks.0.2.attention.to_q')], { target_modules: ['to_q'], task_type: null });
  for (const [other, module, tensor] of [
    [comfy, 'lora_unet_down_blocks_0_2_attention_attn_to_q', 'down_blocks.0.2.attention.attn.to_q.weight'],
    [diffusers, 'lora_unet_down_blocks_0_2_attention_to_q', 'down_blocks.0.2.attention.to_q.weight'],
  ] as const) {
    const inputs = [{ adapter: oneTrainer, weight: 1 }, { adapter: other, weight: 1 }];
    const refused = await combineAdapters(inputs, { method: 'svd', format: 'kohya' }, backends.cpu!).catch((e: Error) => e);
    expect((refused as Error).message).toBe(`combine: "lora_unet_down_blocks_0_2_attention_attn_in_proj_0" (${oneTrainer.name}) and "${module}" (${other.name}) name rows of one base weight (${tensor}) in two namings, which only the base places; --method svd would reduce each on its own, not their sum: combine adapters of one naming, or use --method cat (exact)`);
    const cat = await combineAdapters(inputs, { method: 'cat', format: 'kohya' }, backends.cpu!);
    expect(cat.adapter.modules.map((m) => m.name)).toContain('lora_unet_down_blocks_0_2_attention_attn_in_proj_0');
  }
  // in_proj.1 (k) beside ComfyUI's to_q: other rows, no overlap.
  const k = await file('onetrainer_k.safetensors', [lora('lora_unet_down_blocks_0_2_attention_attn_in_proj_1')]);
  await expect(combineAdapters([{ adapter: k, weight: 1 }, { adapter: diffusers, weight: 1 }], { method: 'svd', format: 'kohya' }, backends.cpu!)).resolves.toBeDefined();
});
