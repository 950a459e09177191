/**
 * PEFT folders of (IA)³ and of OFT as each PEFT version saved it, plus modules_to_save in method
 * folders, with PEFT's key names, shapes and config fields: (IA)³ on Linear, GPT-2 Conv1D
 * (fan_in_fan_out) and conv layers, inputs or outputs by feedforward_modules (a list or a regex),
 * the bias scaled with the outputs; OFT `oft_r` (PEFT ≤ 0.13: blocks over the outputs, the last
 * cut short), `oft_r` + `oft_s` (0.14–0.15: over the inputs), `oft_R` from 0.16–0.17 (the older
 * Cayley–Neumann series) and from 0.18. Merged on both backends in row slabs against float64 truth
 * transcribed from each version's merge.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { estimateUpdateMagnitudes } from '../src/plan/update-magnitudes.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { asMat, block, blockDiag, eye, flat, inverse, lin, mul, transpose, type Mat } from './helpers/dense-f64.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });

interface T { shape: number[]; dtype: FixtureDType; v: Float64Array }
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const rand = seededRandom(77);
const rnd = (shape: number[], dtype: FixtureDType = 'F32', scale = 1, offset = 0): T =>
  ({ shape, dtype, v: randomValues(numel(shape), rand, scale).map((x) => roundForDType(offset + x, dtype)) });
const fx = (name: string, t: T): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.v });

async function merge(backend: MergeBackend, base: Record<string, T>, adapters: { config: object; tensors: FixtureTensor[]; weight?: number }[], outDtype?: string) {
  return mergeInMemory({
    backend,
    base: { 'model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) },
    adapters: adapters.map((a) => ({ files: { 'adapter_config.json': JSON.stringify(a.config), 'adapter_model.safetensors': buildSafetensors(a.tensors) }, weight: a.weight })),
    outDtype,
  });
}

async function problem(base: Record<string, T>, config: object, tensors: FixtureTensor[]): Promise<string> {
  return prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(Object.entries(base).map(([k, t]) => fx(k, t))) }, 'base'),
    [{ files: memoryInputFileSet({ 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) }, 'adapter') }])
    .then((p) => p.plan.problems.map((x) => x.message).join('\n') || 'no problem', (e: unknown) => (isMergeError(e) ? e.message : String(e)));
}

/** W (rows × cols, stored) with each stored row r times f(r, c). */
const scaled = (w: T, f: (r: number, c: number) => number) => {
  const cols = numel(w.shape.slice(1));
  return w.v.map((x, i) => x * f(Math.floor(i / cols), i % cols));
};

// --- (IA)³ ---------------------------------------------------------------------------------------

describe.each(['cpu', 'webgpu'])('(IA)³, %s', (name) => {
  it('Linear layers: outputs (and their bias) or inputs by feedforward_modules, then a LoRA on the same layer', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = 'encoder.layer.0.attention.self.query', ff = 'encoder.layer.0.output.dense';
    const base = { [`${q}.weight`]: rnd([24, 16], 'BF16'), [`${q}.bias`]: rnd([24], 'BF16'), [`${ff}.weight`]: rnd([16, 40], 'F16'), [`${ff}.bias`]: rnd([16], 'F16') };
    const lq = rnd([24, 1], 'F32', 0.5, 1), lf = rnd([1, 40], 'F32', 0.5, 1);
    const loraA = rnd([2, 16]), loraB = rnd([24, 2]);
    const { tensors } = await merge(backend, base, [
      { config: { peft_type: 'IA3', target_modules: ['query', 'dense'], feedforward_modules: ['output.dense'], fan_in_fan_out: false },
        tensors: [fx(`base_model.model.${q}.ia3_l`, lq), fx(`base_model.model.${ff}.ia3_l`, lf)] },
      { config: { r: 2, lora_alpha: 4, target_modules: ['query'] }, tensors: [fx(`base_model.model.${q}.lora_A.weight`, loraA), fx(`base_model.model.${q}.lora_B.weight`, loraB)] },
    ]);
    // W ⊙ l (rows), then + 2·B·A.
    const wq = scaled(base[`${q}.weight`], (o) => lq.v[o]).map((x, i) => {
      const o = Math.floor(i / 16), c = i % 16;
      return x + 2 * (loraB.v[o * 2] * loraA.v[c] + loraB.v[o * 2 + 1] * loraA.v[16 + c]);
    });
    expectMerged(tensors.get(`${q}.weight`)!.values, wq, 'BF16', 'query');
    expectMerged(tensors.get(`${q}.bias`)!.values, base[`${q}.bias`].v.map((x, o) => x * lq.v[o]), 'BF16', 'query bias');
    expectMerged(tensors.get(`${ff}.weight`)!.values, scaled(base[`${ff}.weight`], (_, c) => lf.v[c]), 'F16', 'output.dense');
    // A feedforward module leaves the bias alone.
    expect(tensors.get(`${ff}.bias`)!.values).toEqual(base[`${ff}.bias`].v);
  });

  it('GPT-2 Conv1D (fan_in_fan_out), a regex feedforward_modules, weight 0.5, to f8_e5m2', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // Conv1D weights are stored (in, out): c_attn (16, 48), attn.c_proj (16, 16), mlp.c_proj (64, 16).
    const attn = 'transformer.h.0.attn.c_attn', proj = 'transformer.h.0.attn.c_proj', mlp = 'transformer.h.0.mlp.c_proj';
    const base = {
      [`${attn}.weight`]: rnd([16, 48]), [`${attn}.bias`]: rnd([48]),
      [`${proj}.weight`]: rnd([16, 16]), [`${proj}.bias`]: rnd([16]),
      [`${mlp}.weight`]: rnd([64, 16]), [`${mlp}.bias`]: rnd([16]),
    };
    const la = rnd([48, 1], 'F32', 0.5, 1), lp = rnd([16, 1], 'F32', 0.5, 1), lm = rnd([1, 64], 'F32', 0.5, 1);
    const s = 0.5, f = (l: number) => 1 + s * (l - 1);
    const { tensors } = await merge(backend, base, [{
      config: { peft_type: 'IA3', target_modules: ['c_attn', 'c_proj'], feedforward_modules: 'transformer\\.h\\.\\d+\\.mlp\\.c_proj', fan_in_fan_out: true },
      tensors: [fx(`base_model.model.${attn}.ia3_l`, la), fx(`base_model.model.${proj}.ia3_l`, lp), fx(`base_model.model.${mlp}.ia3_l`, lm)],
      weight: s,
    }], 'f8_e5m2');
    // Outputs are the stored columns; the feedforward mlp.c_proj's inputs its stored rows.
    expectMerged(tensors.get(`${attn}.weight`)!.values, scaled(base[`${attn}.weight`], (_, o) => f(la.v[o])), 'F8_E5M2', 'c_attn');
    expectMerged(tensors.get(`${attn}.bias`)!.values, base[`${attn}.bias`].v.map((x, o) => x * f(la.v[o])), 'F8_E5M2', 'c_attn bias');
    expectMerged(tensors.get(`${proj}.weight`)!.values, scaled(base[`${proj}.weight`], (_, o) => f(lp.v[o])), 'F8_E5M2', 'attn.c_proj');
    expectMerged(tensors.get(`${mlp}.weight`)!.values, scaled(base[`${mlp}.weight`], (i) => f(lm.v[i])), 'F8_E5M2', 'mlp.c_proj');
    expectMerged(tensors.get(`${mlp}.bias`)!.values, base[`${mlp}.bias`].v, 'F8_E5M2', 'mlp.c_proj bias');
  });

  it('conv layers: (1, channels, 1, 1) over outputs with the bias, or over inputs; modules_to_save replaced', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const c1 = 'unet.down.0.conv1', c2 = 'unet.down.0.conv2';
    const base = {
      [`${c1}.weight`]: rnd([6, 4, 3, 3], 'F16'), [`${c1}.bias`]: rnd([6], 'F16'),
      [`${c2}.weight`]: rnd([5, 6, 3, 3], 'BF16'), [`${c2}.bias`]: rnd([5], 'BF16'),
      'classifier.weight': rnd([3, 5], 'F32'), 'score.weight': rnd([2, 5], 'F32'),
    };
    const l1 = rnd([1, 6, 1, 1], 'F32', 0.5, 1), l2 = rnd([1, 6, 1, 1], 'F32', 0.5, 1);
    const classifier = rnd([3, 5], 'F32'), score = rnd([2, 5], 'F32');
    const { tensors } = await merge(backend, base, [{
      config: { peft_type: 'IA3', target_modules: ['conv1', 'conv2'], feedforward_modules: ['conv2'], modules_to_save: ['classifier'] },
      tensors: [fx(`base_model.model.${c1}.ia3_l`, l1), fx(`base_model.model.${c2}.ia3_l`, l2),
        fx('base_model.model.classifier.weight', classifier), fx('base_model.model.score.modules_to_save.default.weight', score)],
    }]);
    expectMerged(tensors.get(`${c1}.weight`)!.values, scaled(base[`${c1}.weight`], (o) => l1.v[o]), 'F16', 'conv1');
    expectMerged(tensors.get(`${c1}.bias`)!.values, base[`${c1}.bias`].v.map((x, o) => x * l1.v[o]), 'F16', 'conv1 bias');
    // Inputs of a conv: each input channel's 3·3 columns.
    expectMerged(tensors.get(`${c2}.weight`)!.values, scaled(base[`${c2}.weight`], (_, c) => l2.v[Math.floor(c / 9)]), 'BF16', 'conv2');
    expect(tensors.get(`${c2}.bias`)!.values).toEqual(base[`${c2}.bias`].v);
    expect(tensors.get('classifier.weight')!.values).toEqual(classifier.v);
    expect(tensors.get('score.weight')!.values).toEqual(score.v);
  });
});

it('(IA)³: without feedforward_modules a Linear\'s ia3_l says its side by its shape, a conv\'s cannot; shapes are checked', async () => {
  const base = { 'm.q.weight': rnd([4, 6]), 'm.conv.weight': rnd([4, 6, 1, 1]) };
  expect(await problem(base, { peft_type: 'IA3' }, [fx('base_model.model.m.q.ia3_l', rnd([1, 6]))])).toBe('no problem');
  expect(await problem(base, { peft_type: 'IA3' }, [fx('base_model.model.m.conv.ia3_l', rnd([1, 4, 1, 1]))])).toMatch(/module "m\.conv" needs feedforward_modules/);
  expect(await problem(base, { peft_type: 'IA3', feedforward_modules: ['q'] }, [fx('base_model.model.m.q.ia3_l', rnd([4, 1]))])).toMatch(/ia3_l \(4, 1\) does not fit a feedforward module/);
  expect(await problem(base, { peft_type: 'IA3', feedforward_modules: '(a+)+\\1' }, [fx('base_model.model.m.q.ia3_l', rnd([4, 1]))])).toMatch(/feedforward_modules .* not a pattern this tool can match safely/);
  // Another method's tensors are named: under an (IA)³ module as its unknown tensor, elsewhere as no IA3
  // tensor; a saved parameter must exist in the base, as in LoRA folders.
  expect(await problem(base, { peft_type: 'IA3', feedforward_modules: [] }, [fx('base_model.model.m.q.ia3_l', rnd([4, 1])), fx('base_model.model.m.q.lora_A.weight', rnd([2, 6]))]))
    .toMatch(/module "m\.q": unknown tensor "lora_A\.weight" \("base_model\.model\.m\.q\.lora_A\.weight"\), which no adapter algorithm reads \(PEFT \(IA\)³: ia3_l, /);
  expect(await problem(base, { peft_type: 'IA3', feedforward_modules: [] }, [fx('base_model.model.m.q.ia3_l', rnd([4, 1])), fx('base_model.model.m.k.lora_A.weight', rnd([2, 6]))]))
    .toMatch(/"base_model\.model\.m\.k\.lora_A\.weight" is neither a IA3 tensor .* nor listed in modules_to_save/);
  expect(await problem(base, { peft_type: 'IA3', feedforward_modules: [] }, [fx('base_model.model.m.q.ia3_l', rnd([4, 1])), fx('base_model.model.m.other.weight', rnd([2]))]))
    .toMatch(/saved tensor base_model\.model\.m\.other\.weight: no matching tensor in the base model/);
});

// --- OFT as each PEFT version saved it ------------------------------------------------------------

/** PEFT ≤ 0.15 `_cayley_batch`: S = ½(A − Aᵀ), R = (I − S)(I + S)⁻¹. */
function cayleyHalf(a: Mat): Mat {
  const s = lin(a, transpose(a), 0.5, -0.5);
  return mul(lin(eye(a.length), s, 1, -1), inverse(lin(eye(a.length), s, 1, 1)));
}

/** `_project_batch(oft_r, eps)`: each block's Frobenius norm capped at eps / √(blocks). */
function projectRaw(blocks: Mat[], eps: number): Mat[] {
  const limit = eps / Math.sqrt(blocks.length);
  return blocks.map((m) => {
    const norm = Math.sqrt(m.flat().reduce((x, y) => x + y * y, 0));
    return norm <= limit ? m : m.map((row) => row.map((x) => (limit * x) / norm));
  });
}

describe.each(['cpu', 'webgpu'])('OFT before PEFT 0.16, %s', (name) => {
  it('PEFT 0.13 (oft_r only): output rows W′ = R[:out, :out]ᵀ·W, a short last block, COFT, block_share, a conv', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // q_proj: out 10, r = 4 → blocks of n = ⌈10/4⌉ = 3, R is 12 × 12, cut to 10 × 10.
    const q = 'model.layers.0.self_attn.q_proj', k = 'model.layers.0.self_attn.k_proj', conv = 'vae.encoder.conv_in';
    const base = { [`${q}.weight`]: rnd([10, 7], 'BF16'), [`${k}.weight`]: rnd([8, 7], 'F16'), [`${conv}.weight`]: rnd([8, 3, 3, 3], 'F32') };
    const rq = rnd([4, 3, 3], 'F32', 0.4), rk = rnd([1, 2, 2], 'F32', 0.4), rc = rnd([2, 4, 4], 'F32', 0.3);
    const eps = 6e-3;
    const common = { peft_type: 'OFT', module_dropout: 0, coft: true, eps, init_weights: true };
    // The k_proj and conv adapters share blocks or have two; one config each (PEFT has one per adapter).
    const { tensors } = await merge(backend, base, [
      { config: { ...common, r: 4, target_modules: ['q_proj'] }, tensors: [fx(`base_model.model.${q}.oft_r`, rq)] },
      { config: { ...common, r: 4, block_share: true, coft: false, target_modules: ['k_proj'] }, tensors: [fx(`base_model.model.${k}.oft_r`, rk)] },
      { config: { ...common, r: 2, target_modules: ['conv_in'] }, tensors: [fx(`base_model.model.${conv}.oft_r`, rc)] },
    ]);
    /** merge(): new = Wᵀ·R[:out, :out] (Wᵀ is (in, out)), then transposed back. */
    const truth = (w: T, out: number, rs: Mat[]) => {
      const R = blockDiag(rs).slice(0, out).map((row) => row.slice(0, out));
      return flat(transpose(mul(transpose(asMat(w.v, out, w.v.length / out)), R)));
    };
    const blocksOf = (t: T) => Array.from({ length: t.shape[0] }, (_, i) => block(t.v, i * t.shape[1] ** 2, t.shape[1]));
    // COFT: eps·n² over √(oft_r's first dim), on the raw blocks.
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(base[`${q}.weight`], 10, projectRaw(blocksOf(rq), eps * 9).map(cayleyHalf)), 'BF16', 'q_proj');
    const shared = cayleyHalf(blocksOf(rk)[0]);
    expectMerged(tensors.get(`${k}.weight`)!.values, truth(base[`${k}.weight`], 8, [shared, shared, shared, shared]), 'F16', 'k_proj');
    expectMerged(tensors.get(`${conv}.weight`)!.values, truth(base[`${conv}.weight`], 8, projectRaw(blocksOf(rc), eps * 16).map(cayleyHalf)), 'F32', 'conv_in');
  });

  it('PEFT 0.14–0.15 (oft_r + oft_s): W′ = (R·Wᵀ)ᵀ ⊙ oft_s over the inputs, COFT with ⌈out/r⌉², weight 0.5', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = 'model.layers.1.self_attn.q_proj';
    const base = { [`${q}.weight`]: rnd([9, 12], 'F16') };
    // r = 3 blocks of 4 inputs.
    const r = rnd([3, 4, 4], 'F32', 0.4), s = rnd([9, 1], 'F32', 0.2, 1);
    const eps = 4e-3, w = 0.5;
    const { tensors } = await merge(backend, base, [{
      config: { peft_type: 'OFT', r: 3, oft_block_size: 0, module_dropout: 0, coft: true, eps, block_share: false, target_modules: ['q_proj'] },
      tensors: [fx(`base_model.model.${q}.oft_r`, r), fx(`base_model.model.${q}.oft_s`, s)],
      weight: w,
    }]);
    const blocks = projectRaw(Array.from({ length: 3 }, (_, i) => block(r.v, i * 16, 4)), eps * Math.ceil(9 / 3) ** 2)
      .map((a) => lin(cayleyHalf(a), eye(4), w, 1 - w));
    const merged = transpose(mul(blockDiag(blocks), transpose(asMat(base[`${q}.weight`].v, 9, 12))));
    expectMerged(tensors.get(`${q}.weight`)!.values, flat(merged.map((row, o) => row.map((x) => x * (1 + w * (s.v[o] - 1))))), 'F16', 'q_proj');
  });

  it('PEFT 0.16–0.17 oft_R (no peft_version): the older series I + 2Q + 2Q² + 2Q³ + 2Q⁴, with a warning; 0.18: + Q⁴', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = 'model.layers.2.self_attn.q_proj';
    const base = { [`${q}.weight`]: rnd([5, 6], 'F32') };
    const vec = rnd([2, 3], 'F32', 0.3);
    const skew = (v: ArrayLike<number>): Mat => [[0, v[0], v[1]], [-v[0], 0, v[2]], [-v[1], -v[2], 0]];
    const series = (Q: Mat, last: number) => {
      const Q2 = mul(Q, Q), Q3 = mul(Q2, Q), Q4 = mul(Q3, Q);
      return eye(3).map((row, i) => row.map((x, j) => x + 2 * Q[i][j] + 2 * Q2[i][j] + 2 * Q3[i][j] + last * Q4[i][j]));
    };
    const truth = (last: number) => flat(transpose(mul(blockDiag([0, 1].map((k) => series(skew(vec.v.subarray(3 * k, 3 * k + 3)), last))), transpose(asMat(base[`${q}.weight`].v, 5, 6)))));
    const config = { peft_type: 'OFT', r: 0, oft_block_size: 3, use_cayley_neumann: true, num_cayley_neumann_terms: 5, target_modules: ['q_proj'] };
    const tensors = [fx(`base_model.model.${q}.oft_R.weight`, vec)];
    const older = await merge(backend, base, [{ config, tensors }]);
    expectMerged(older.tensors.get(`${q}.weight`)!.values, truth(2), 'F32', 'PEFT 0.17');
    expect(older.warnings.join('\n')).toMatch(/PEFT 0\.16 or 0\.17: merged with that PEFT's Cayley–Neumann series/);
    const at017 = await merge(backend, base, [{ config: { ...config, peft_version: '0.17.1' }, tensors }]);
    expectMerged(at017.tensors.get(`${q}.weight`)!.values, truth(2), 'F32', 'PEFT 0.17.1');
    const newer = await merge(backend, base, [{ config: { ...config, peft_version: '0.18.1.dev0@1a2b3c' }, tensors }]);
    expectMerged(newer.tensors.get(`${q}.weight`)!.values, truth(1), 'F32', 'PEFT 0.18');
    expect(newer.warnings).toEqual([]);
  });
});

describe.each(['cpu', 'webgpu'])('OFT on embeddings (PEFT ≥ 0.19), %s', (name) => {
  it('oft_embedding_R: W′ = W·R, each embedding vector rotated, beside a q_proj oft_R', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const emb = 'model.embed_tokens', q = 'model.layers.0.self_attn.q_proj';
    const base = { [`${emb}.weight`]: rnd([11, 6], 'BF16'), [`${q}.weight`]: rnd([4, 6], 'F16') };
    const ve = rnd([2, 3], 'F32', 0.3), vq = rnd([2, 3], 'F32', 0.3);
    const skew = (v: ArrayLike<number>): Mat => [[0, v[0], v[1]], [-v[0], 0, v[2]], [-v[1], -v[2], 0]];
    const exact = (Q: Mat) => mul(lin(eye(3), Q, 1, -1), inverse(lin(eye(3), Q, 1, 1)));
    const R = (v: T) => blockDiag([0, 1].map((k) => exact(skew(v.v.subarray(3 * k, 3 * k + 3)))));
    const { tensors } = await merge(backend, base, [{
      config: { peft_type: 'OFT', r: 0, oft_block_size: 3, use_cayley_neumann: false, peft_version: '0.19.0', target_modules: ['embed_tokens', 'q_proj'] },
      tensors: [fx(`base_model.model.${emb}.oft_embedding_R.weight`, ve), fx(`base_model.model.${q}.oft_R.weight`, vq)],
    }]);
    expectMerged(tensors.get(`${emb}.weight`)!.values, flat(mul(asMat(base[`${emb}.weight`].v, 11, 6), R(ve))), 'BF16', 'embed_tokens');
    expectMerged(tensors.get(`${q}.weight`)!.values, flat(transpose(mul(R(vq), transpose(asMat(base[`${q}.weight`].v, 4, 6))))), 'F16', 'q_proj');
  });
});

it('OFT: configs and tensors of different PEFT versions that do not go together are named', async () => {
  const base = { 'm.q.weight': rnd([8, 8]) };
  expect(await problem(base, { peft_type: 'OFT', r: 2 }, [fx('base_model.model.m.q.oft_r', rnd([2, 4, 4])), fx('base_model.model.m.q.oft_s', rnd([8, 1]))]))
    .toMatch(/module "m\.q" has oft_s \(PEFT 0\.14–0\.15 OFT\) but the config has no oft_block_size/);
  expect(await problem(base, { peft_type: 'OFT', r: 2, oft_block_size: 0 }, [fx('base_model.model.m.q.oft_r', rnd([2, 4, 4]))]))
    .toMatch(/has oft_r without oft_s \(PEFT 0\.13 OFT\)/);
  expect(await problem(base, { peft_type: 'OFT', r: 2 }, [fx('base_model.model.m.q.oft_r', rnd([2, 4, 4])), fx('base_model.model.m.q.oft_R.weight', rnd([2, 6]))]))
    .toMatch(/mixes tensors of OFT \(PEFT\) and OFT \(PEFT before 0\.16\)/);
});

it('modules_to_save in LoHa, LoKr, VeRA, OFT and BOFT folders replace their tensors as in LoRA folders', async () => {
  const backend = backends.cpu!;
  const base = { 'm.q.weight': rnd([4, 4]), 'lm_head.weight': rnd([6, 4], 'BF16') };
  const head = rnd([6, 4], 'F32');
  const cases: [object, FixtureTensor[]][] = [
    [{ peft_type: 'LOHA', r: 1, alpha: 1 }, ['hada_w1_a', 'hada_w2_a'].map((n) => fx(`base_model.model.m.q.${n}`, rnd([4, 1]))).concat(['hada_w1_b', 'hada_w2_b'].map((n) => fx(`base_model.model.m.q.${n}`, rnd([1, 4]))))],
    [{ peft_type: 'LOKR', r: 1, alpha: 1 }, [fx('base_model.model.m.q.lokr_w1', rnd([2, 2])), fx('base_model.model.m.q.lokr_w2', rnd([2, 2]))]],
    [{ peft_type: 'VERA', r: 2, save_projection: true }, [fx('base_model.vera_A', rnd([2, 4])), fx('base_model.vera_B', rnd([4, 2])), fx('base_model.model.m.q.vera_lambda_b', rnd([4])), fx('base_model.model.m.q.vera_lambda_d', rnd([2]))]],
    [{ peft_type: 'OFT', r: 0, oft_block_size: 2, peft_version: '0.18.0' }, [fx('base_model.model.m.q.oft_R.weight', rnd([2, 1]))]],
    [{ peft_type: 'BOFT', boft_block_size: 2 }, [fx('base_model.model.m.q.boft_R', rnd([1, 2, 2, 2])), fx('base_model.model.m.q.boft_s', rnd([4, 1]))]],
  ];
  for (const [config, tensors] of cases) {
    const { tensors: merged } = await merge(backend, base, [{ config: { ...config, modules_to_save: ['lm_head'] }, tensors: [...tensors, fx('base_model.model.lm_head.weight', head)] }]);
    expect(merged.get('lm_head.weight')!.values, JSON.stringify(config)).toEqual(head.v.map((x) => roundForDType(x, 'BF16')));
  }
});

describe('random shapes and dtypes: PEFT 0.13 OFT over the outputs, then (IA)³', () => {
  const DTYPES: FixtureDType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];
  describe.each(['cpu', 'webgpu'])('%s', (name) => {
    it.each([1, 2, 3, 4, 5])('seed %i', async (seed) => {
      const backend = backends[name];
      if (!backend) return;
      const r = seededRandom(900 + seed);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const pick = <X>(xs: X[]) => xs[int(0, xs.length - 1)];
      const kernel = pick([[], [3, 3], [1, 3]]);
      const out = int(2, 30), blocks = int(1, Math.min(6, out)), n = Math.ceil(out / blocks), inC = int(1, 5);
      const dtype = pick(DTYPES);
      const key = 'model.encoder.block.1.conv';
      const wt: T = { shape: [out, inC, ...kernel], dtype, v: randomValues(out * inC * numel(kernel), r, 2).map((x) => roundForDType(x, dtype)) };
      const oftR: T = { shape: [blocks, n, n], dtype: pick(['F32', 'BF16']), v: randomValues(blocks * n * n, r, 0.4) };
      oftR.v = oftR.v.map((x) => roundForDType(x, oftR.dtype));
      const ia3: T = { shape: kernel.length ? [1, out, ...kernel.map(() => 1)] : [out, 1], dtype: 'F32', v: randomValues(out, r, 0.5).map((x) => Math.fround(1 + x)) };
      const s = pick([1, 0.5, -0.5]);
      const { tensors } = await merge(backend, { [`${key}.weight`]: wt }, [
        { config: { peft_type: 'OFT', r: blocks, module_dropout: 0, target_modules: ['conv'] }, tensors: [fx(`base_model.model.${key}.oft_r`, oftR)], weight: s },
        { config: { peft_type: 'IA3', target_modules: ['conv'], feedforward_modules: [] }, tensors: [fx(`base_model.model.${key}.ia3_l`, ia3)] },
      ]);
      const rs = Array.from({ length: blocks }, (_, i) => lin(cayleyHalf(block(oftR.v, i * n * n, n)), eye(n), s, 1 - s));
      const R = blockDiag(rs).slice(0, out).map((row) => row.slice(0, out));
      const rotated = transpose(mul(transpose(asMat(wt.v, out, wt.v.length / out)), R));
      expectMerged(tensors.get(`${key}.weight`)!.values, flat(rotated.map((row, o) => row.map((x) => x * ia3.v[o]))), dtype, `out ${out}, ${blocks} blocks of ${n}, kernel ${kernel}`);
    });
  });
});

it('sizes a PEFT 0.13 OFT update for the chart from whole blocks, the short last one included', async () => {
  // 1030 outputs in blocks of ⌈1030 / 8⌉ = 129: the last block has 127 rows; large enough to be sampled.
  const key = 'model.layers.0.mlp.up_proj';
  const w = rnd([1030, 1100], 'F32');
  const oftR = rnd([8, 129, 129], 'F32', 0.01);
  const prepared = await prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors([fx(`${key}.weight`, w)]) }, 'base'),
    [{ files: memoryInputFileSet({ 'adapter_config.json': JSON.stringify({ peft_type: 'OFT', r: 8 }), 'adapter_model.safetensors': buildSafetensors([fx(`base_model.model.${key}.oft_r`, oftR)]) }, 'adapter') }]);
  const magnitudes = await estimateUpdateMagnitudes(prepared.plan, async (_, r0, n) => ({ dtype: 'F32', data: new Uint8Array(Float32Array.from(w.v.subarray(r0 * 1100, (r0 + n) * 1100)).buffer) }));
  await prepared.close();
  expect(magnitudes).toHaveLength(1);
  expect(magnitudes[0].updateNorm).toBeGreaterThan(0);
  expect(Number.isFinite(magnitudes[0].updateNorm)).toBe(true);
});
