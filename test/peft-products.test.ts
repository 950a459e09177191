/**
 * PEFT VB-LoRA, RandLoRA, DeLoRA and GraLoRA folders as PEFT saves them (adapter name removed from
 * the keys, shared tensors under `base_model.`), merged on both backends against float64 truth
 * written from PEFT's get_delta_weight (and, for GraLoRA, from its forward); and their refusals,
 * through the CLI as one line with nothing written.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { resizeAdapter } from '../src/adapter-ops/resize.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter } from '../src/formats/adapter.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { mergeFolders } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { peftFolder } from './helpers/hf-folder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder } from './helpers/peft-method-folder.js';
import { deloraDelta, graloraDelta, topkSoftmax, vbFactors } from './helpers/peft-delta-truth.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(83);
const vals = gridValues(rand);
const t = fixtureTensor;
const temp = tempDirs();
afterAll(temp.removeAll);

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;
const peftBase = { task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', revision: null, inference_mode: true, peft_version: '0.18.0', auto_mapping: null };
const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';
const key = (module: string, name: string) => `base_model.model.${module}.${name}`;

/** W + s·ΔW with ΔW (out, in) row-major; `transposed`: W stored (in, out). */
function plus(w: Float64Array, delta: Float64Array, out: number, inF: number, s: number, transposed = false): Float64Array {
  const res = w.slice();
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) res[transposed ? i * out + o : o * inF + i] += s * delta[o * inF + i];
  return res;
}
/** B (out × r) · A (r × in). */
function product(b: ArrayLike<number>, a: ArrayLike<number>, out: number, r: number, inF: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) for (let k = 0; k < r; k++) d[o * inF + i] += b[o * r + k] * a[k * inF + i];
  return d;
}

// --- VB-LoRA ---------------------------------------------------------------------------------

const vbConfig = (fields: object) => ({
  ...peftBase, peft_type: 'VBLORA', r: 4, num_vectors: 256, vector_length: 256, topk: 2, target_modules: ['q_proj', 'v_proj'], exclude_modules: null,
  save_only_topk_weights: false, vblora_dropout: 0, fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_vector_bank_bound: 0,
  init_logits_std: 0.1, layers_to_transform: null, layers_pattern: null, ...fields,
});
/** Rows of nv distinct logits (no ties for torch.topk to break), exact in f16 and bf16: a shuffled (i − nv/2)·3/8. */
function distinctLogits(rows: number, nv: number): Float64Array {
  const out = new Float64Array(rows * nv);
  for (let row = 0; row < rows; row++) {
    const order = [...Array(nv).keys()].sort(() => rand() - 0.5);
    for (let i = 0; i < nv; i++) out[row * nv + i] = (order[i] - nv / 2) * 0.375;
  }
  return out;
}
describe.each(['cpu', 'webgpu'])('VB-LoRA (PEFT), %s', (name) => {
  it('full logits: ΔW = B·A from the softmax of each row\'s top-k logits over the shared bank; r = 1 and r = 3, f32 / bf16 / f16', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const nv = 7, len = 3, out = 15, inF = 9;
    for (const [r, topk, dtype] of [[1, 2, 'F32'], [3, 3, 'BF16'], [3, 1, 'F16']] as [number, number, FixtureDType][]) {
      const bank = vals(nv * len, dtype);
      const la = distinctLogits(r * (inF / len), nv), lb = distinctLogits((out / len) * r, nv);
      const w = vals(out * inF, 'BF16');
      const merged = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w)], vbConfig({ r, num_vectors: nv, vector_length: len, topk }), [
        t('base_model.vblora_vector_bank', dtype, [nv, len], bank),
        t(key(q, 'vblora_logits_A'), dtype, [r, inF / len, nv], la), t(key(q, 'vblora_logits_B'), dtype, [out / len, r, nv], lb),
      ], 0.75);
      const { a, b } = vbFactors((row) => topkSoftmax(la.subarray(row * nv, row * nv + nv), topk), (row) => topkSoftmax(lb.subarray(row * nv, row * nv + nv), topk), bank, len, r, out, inF);
      expectMerged(merged.get(`${q}.weight`)!.values, plus(w, product(b, a, out, r, inF), out, inF, 0.75), 'BF16', `${q} r=${r} topk=${topk}`);
    }
  });

  it('save_only_topk_weights: uint8 / int16 indices and the first topk − 1 weights (the last is 1 − their sum); GPT-2 Conv1D under fan_in_fan_out', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const nv = 9, len = 4, out = 8, inF = 12, r = 2, topk = 3;
    const rows = (n: number) => Array.from({ length: n }, () => {
      const idx = [...Array(nv).keys()].sort(() => rand() - 0.5).slice(0, topk);
      const raw = idx.map(() => 0.2 + rand());
      const sum = raw.reduce((x, y) => x + y, 0);
      return { idx, w: raw.map((x) => Math.fround(x / sum)) };
    });
    const selA = rows(r * (inF / len)), selB = rows((out / len) * r);
    const flat = (sel: typeof selA, f: (s: (typeof selA)[number]) => number[]) => Float64Array.from(sel.flatMap(f));
    const bank = vals(nv * len, 'F32');
    const attn = 'transformer.h.0.attn.c_attn';
    const w = vals(inF * out, 'F32');
    for (const indexType of ['U8', 'I16'] as const) {
      const merged = await run(backend, [t(`${attn}.weight`, 'F32', [inF, out], w)],
        vbConfig({ r, num_vectors: nv, vector_length: len, topk, save_only_topk_weights: true, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
          t('base_model.vblora_vector_bank', 'F32', [nv, len], bank),
          t(key(attn, 'vblora_logits_A_topk_indices'), indexType, [r, inF / len, topk], flat(selA, (s) => s.idx)),
          t(key(attn, 'vblora_logits_A_topk_weights'), 'F32', [r, inF / len, topk - 1], flat(selA, (s) => s.w.slice(0, -1))),
          t(key(attn, 'vblora_logits_B_topk_indices'), indexType, [out / len, r, topk], flat(selB, (s) => s.idx)),
          t(key(attn, 'vblora_logits_B_topk_weights'), 'F32', [out / len, r, topk - 1], flat(selB, (s) => s.w.slice(0, -1))),
        ]);
      const last = (s: (typeof selA)[number]) => ({ idx: s.idx, w: [...s.w.slice(0, -1), 1 - s.w.slice(0, -1).reduce((x, y) => x + y, 0)] });
      const { a, b } = vbFactors((row) => last(selA[row]), (row) => last(selB[row]), bank, len, r, out, inF);
      expectMerged(merged.get(`${attn}.weight`)!.values, plus(w, product(b, a, out, r, inF), out, inF, 1, true), 'F32', `${attn} ${indexType}`);
    }
  });
});

// --- RandLoRA --------------------------------------------------------------------------------

const randConfig = (fields: object) => ({
  ...peftBase, peft_type: 'RANDLORA', r: 32, target_modules: ['q_proj', 'v_proj'], projection_prng_key: 0, save_projection: true, sparse: false,
  very_sparse: false, randlora_dropout: 0, fan_in_fan_out: false, randlora_alpha: 640, bias: 'none', modules_to_save: null, init_weights: true,
  layers_to_transform: null, layers_pattern: null, ...fields,
});
/**
 * PEFT's RandLoRA ΔW (out, in), unscaled: update_A = λ[:, :, None]·A·γ[None] flattened over its
 * first two dims, update_B = randlora_B[:max, :nb, :] flattened over its last two, and
 * (update_B·update_A) when in ≤ out, else its transpose. sa (r, 1, minG), sb (maxG, nbG, r).
 */
function randDelta(lambda: Float64Array, gamma: Float64Array, sa: Float64Array, sb: Float64Array, r: number, minG: number, nbG: number, out: number, inF: number): Float64Array {
  const min = Math.min(out, inF), max = Math.max(out, inF), nb = Math.ceil(min / r);
  const ua = new Float64Array(r * nb * min);
  for (let k = 0; k < r; k++) for (let b = 0; b < nb; b++) for (let i = 0; i < min; i++) ua[(k * nb + b) * min + i] = lambda[k * nb + b] * sa[k * minG + i] * gamma[b * min + i];
  const ub = new Float64Array(max * nb * r);
  for (let m = 0; m < max; m++) for (let b = 0; b < nb; b++) for (let k = 0; k < r; k++) ub[m * nb * r + b * r + k] = sb[(m * nbG + b) * r + k];
  const p = product(ub, ua, max, nb * r, min);
  if (inF <= out) return p;
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) d[o * inF + i] = p[i * out + o];
  return d;
}

describe.each(['cpu', 'webgpu'])('RandLoRA (PEFT), %s', (name) => {
  it('three layers (10 → 6, 5 → 13, square 10 → 10) on shared bases sized for the largest; r = 1, r = 4; scale randlora_alpha/r', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // PEFT's _find_dim: the largest (out, in) over the targets, here (13, 10): max 13, min 10.
    const maxG = 13, minG = 10;
    for (const [r, dtype, alpha] of [[1, 'F32', 3], [4, 'BF16', 640]] as [number, FixtureDType, number][]) {
      const nbG = Math.ceil(minG / r);
      const sa = vals(r * minG, dtype), sb = vals(maxG * nbG * r, dtype);
      const layers = [[q, 6, 10], [v, 13, 5], ['model.layers.0.self_attn.k_proj', 10, 10]] as const;
      const base: FixtureTensor[] = [], tensors: FixtureTensor[] = [t('base_model.randlora_A', dtype, [r, 1, minG], sa), t('base_model.randlora_B', dtype, [maxG, nbG, r], sb)];
      const parts = layers.map(([m, out, inF]) => {
        const min = Math.min(out, inF), nb = Math.ceil(min / r);
        const w = vals(out * inF, 'F32'), lambda = vals(r * nb, dtype), gamma = vals(nb * min, dtype, 0.2);
        base.push(t(`${m}.weight`, 'F32', [out, inF], w));
        tensors.push(t(key(m, 'randlora_lambda'), dtype, [r, nb], lambda), t(key(m, 'randlora_gamma'), dtype, [nb, min], gamma));
        return { m, out, inF, w, lambda, gamma };
      });
      const merged = await run(backend, base, randConfig({ r, randlora_alpha: alpha, target_modules: ['q_proj', 'k_proj', 'v_proj'] }), tensors, 0.5);
      for (const p of parts) {
        const d = randDelta(p.lambda, p.gamma, sa, sb, r, minG, nbG, p.out, p.inF);
        expectMerged(merged.get(`${p.m}.weight`)!.values, plus(p.w, d, p.out, p.inF, 0.5 * alpha / r), 'F32', `${p.m} r=${r}`);
      }
    }
  });

  it('GPT-2 Conv1D under fan_in_fan_out, f16 tensors', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const attn = 'transformer.h.0.attn.c_attn', out = 9, inF = 7, r = 3, nb = 3;
    const sa = vals(r * inF, 'F16'), sb = vals(out * nb * r, 'F16'), lambda = vals(r * nb, 'F16'), gamma = vals(nb * inF, 'F16');
    const w = vals(inF * out, 'F16');
    const merged = await run(backend, [t(`${attn}.weight`, 'F16', [inF, out], w)], randConfig({ r, randlora_alpha: 6, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
      t('base_model.randlora_A', 'F16', [r, 1, inF], sa), t('base_model.randlora_B', 'F16', [out, nb, r], sb),
      t(key(attn, 'randlora_lambda'), 'F16', [r, nb], lambda), t(key(attn, 'randlora_gamma'), 'F16', [nb, inF], gamma),
    ]);
    expectMerged(merged.get(`${attn}.weight`)!.values, plus(w, randDelta(lambda, gamma, sa, sb, r, inF, nb, out, inF), out, inF, 2, true), 'F16', attn);
  });
});

it('resize refuses RandLoRA in one line: its tensors do not say the layer\'s larger dim', async () => {
  const r = 2, nb = 2, min = 4;
  const dir = temp.make(peftFolder(randConfig({ r, target_modules: ['q_proj'] }), [
    t('base_model.randlora_A', 'F32', [r, 1, min], vals(r * min, 'F32')), t('base_model.randlora_B', 'F32', [7, nb, r], vals(7 * nb * r, 'F32')),
    t(key(q, 'randlora_lambda'), 'F32', [r, nb], vals(r * nb, 'F32')), t(key(q, 'randlora_gamma'), 'F32', [nb, min], vals(nb * min, 'F32')),
  ]));
  const adapter = await openAdapter(await openNodeInputFileSet(dir));
  try {
    await expect(resizeAdapter(adapter, { kind: 'rank', rank: 1 }, 'peft', new CpuAlgebra()))
      .rejects.toThrow(/^RandLoRA module "model\.layers\.0\.self_attn\.q_proj": its tensors do not say the layer's larger dim or which side is the smaller one; only a merge into a base model can read it$/);
  } finally {
    await adapter.file.source.close();
  }
});

// --- DeLoRA ----------------------------------------------------------------------------------

const deloraConfig = (fields: object) => ({
  ...peftBase, peft_type: 'DELORA', r: 8, delora_lambda: 15, module_dropout: 0, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, bias: 'none',
  init_weights: true, layers_to_transform: null, layers_pattern: null, rank_pattern: {}, lambda_pattern: {}, modules_to_save: null, ...fields,
});
describe.each(['cpu', 'webgpu'])('DeLoRA (PEFT), %s', (name) => {
  it('ΔW = B·diag(λ/r/(‖A_k‖‖B^k‖))·A·diag(w_norm), a row of A below the 1e-4 norm floor; r = 1 by rank_pattern and r = 5', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 11, inF = 7;
    const cases = [[q, 5, 'BF16'], [v, 1, 'F32']] as const;
    const base: FixtureTensor[] = [], tensors: FixtureTensor[] = [];
    const parts = cases.map(([m, r, dtype]) => {
      const a = vals(r * inF, dtype), b = vals(out * r, dtype), lambda = Float64Array.of(dtype === 'F32' ? 14.75 : 3.5), wNorm = vals(inF, dtype).map(Math.abs);
      // Row 0 of A with norm ≈ 2.6e-5: PEFT clamps it to 1e-4.
      if (r > 1) for (let i = 0; i < inF; i++) a[i] = (i % 2 ? -1 : 1) * 2 ** -15;
      const w = vals(out * inF, 'BF16');
      base.push(t(`${m}.weight`, 'BF16', [out, inF], w));
      tensors.push(t(key(m, 'delora_A'), dtype, [r, inF], a), t(key(m, 'delora_B'), dtype, [out, r], b), t(key(m, 'delora_lambda'), dtype, [1], lambda), t(key(m, 'delora_w_norm'), dtype, [inF], wNorm));
      return { m, r, a, b, lambda: lambda[0], wNorm, w };
    });
    const merged = await run(backend, base, deloraConfig({ r: 5, rank_pattern: { v_proj: 1 } }), tensors, 0.5);
    for (const p of parts) expectMerged(merged.get(`${p.m}.weight`)!.values, plus(p.w, deloraDelta(p.a, p.b, p.lambda, p.wNorm, p.r, out, inF), out, inF, 0.5), 'BF16', p.m);
  });
});

// --- GraLoRA ---------------------------------------------------------------------------------

const graloraConfig = (fields: object) => ({
  ...peftBase, peft_type: 'GRALORA', r: 32, hybrid_r: 0, target_modules: ['q_proj', 'v_proj'], alpha: 64, gralora_dropout: 0, gralora_k: 2,
  fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_weights: true, layers_to_transform: null, layers_pattern: null, ...fields,
});
describe.each(['cpu', 'webgpu'])('GraLoRA (PEFT), %s', (name) => {
  it('k = 2 blocks at r = 4, k = 3 at r = 3, k = 1 at r = 1; scale alpha/r', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    for (const [k, r, out, inF, dtype] of [[2, 4, 10, 6, 'F32'], [3, 3, 9, 12, 'BF16'], [1, 1, 5, 7, 'F16']] as [number, number, number, number, FixtureDType][]) {
      const a = vals(k * (inF / k) * r, dtype), b = vals(k * r * (out / k), dtype), w = vals(out * inF, 'BF16');
      const merged = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], w)], graloraConfig({ r, gralora_k: k, alpha: 6 }),
        [t(key(q, 'gralora_A'), dtype, [k, inF / k, r], a), t(key(q, 'gralora_B'), dtype, [k, r, out / k], b)], -0.5);
      expectMerged(merged.get(`${q}.weight`)!.values, plus(w, graloraDelta(a, b, k, r, out, inF), out, inF, -0.5 * 6 / r), 'BF16', `${q} k=${k} r=${r}`);
    }
  });

  it('hybrid_r = 3: the plain pair gralora_A_general / gralora_B_general added, scale alpha/(r + hybrid_r); GPT-2 Conv1D under fan_in_fan_out', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const attn = 'transformer.h.0.attn.c_attn', k = 2, r = 4, h = 3, out = 12, inF = 8;
    const a = vals(k * (inF / k) * r, 'F32'), b = vals(k * r * (out / k), 'F32'), ag = vals(h * inF, 'F32'), bg = vals(out * h, 'F32'), w = vals(inF * out, 'F32');
    const merged = await run(backend, [t(`${attn}.weight`, 'F32', [inF, out], w)], graloraConfig({ r, hybrid_r: h, gralora_k: k, fan_in_fan_out: true, target_modules: ['c_attn'] }), [
      t(key(attn, 'gralora_A'), 'F32', [k, inF / k, r], a), t(key(attn, 'gralora_B'), 'F32', [k, r, out / k], b),
      t(key(attn, 'gralora_A_general.weight'), 'F32', [h, inF], ag), t(key(attn, 'gralora_B_general.weight'), 'F32', [out, h], bg),
    ]);
    expectMerged(merged.get(`${attn}.weight`)!.values, plus(w, graloraDelta(a, b, k, r, out, inF, ag, bg, h), out, inF, 64 / (r + h), true), 'F32', attn);
  });
});

// --- refusals --------------------------------------------------------------------------------

describe('refusals through the CLI: one line, nothing written', () => {
  const out = 6, inF = 6;
  const base = { 'model.safetensors': buildSafetensors([t(`${q}.weight`, 'F32', [out, inF], vals(out * inF, 'F32'))]) };
  const logits = (ties: boolean) => {
    const l = vals(2 * 2 * 4, 'F32');
    if (ties) l[1] = l[2] = 5; // row 0: 5 and 5 compete for topk = 1
    return l;
  };
  const cases: [string, object, FixtureTensor[], RegExp][] = [
    ['RandLoRA saved with save_projection false', randConfig({ r: 2, save_projection: false }),
      [t(key(q, 'randlora_lambda'), 'F32', [2, 3], vals(6, 'F32')), t(key(q, 'randlora_gamma'), 'F32', [3, 6], vals(18, 'F32'))],
      /RandLoRA adapter without base_model\.randlora_A and randlora_B \(saved with save_projection: false\); PEFT regenerates these random bases from projection_prng_key/],
    ['RandLoRA whose gamma does not fit r', randConfig({ r: 4 }),
      [t('base_model.randlora_A', 'F32', [4, 1, 6], vals(24, 'F32')), t('base_model.randlora_B', 'F32', [6, 2, 4], vals(48, 'F32')),
        t(key(q, 'randlora_lambda'), 'F32', [4, 3], vals(12, 'F32')), t(key(q, 'randlora_gamma'), 'F32', [3, 6], vals(18, 'F32'))],
      /q_proj": randlora_lambda \(4, 3\) and randlora_gamma \(3, 6\) are not \(r, nb\) and \(nb, min\(in, out\)\) with nb = ⌈min\(in, out\)\/r⌉ for the config's r = 4/],
    ['VB-LoRA without its vector bank', vbConfig({ r: 1, num_vectors: 4, vector_length: 3 }),
      [t(key(q, 'vblora_logits_A'), 'F32', [1, 2, 4], vals(8, 'F32')), t(key(q, 'vblora_logits_B'), 'F32', [2, 1, 4], vals(8, 'F32'))],
      /VB-LoRA adapter without its shared base_model\.vblora_vector_bank/],
    ['VB-LoRA top-k tensors under save_only_topk_weights false', vbConfig({ r: 1, num_vectors: 4, vector_length: 3, topk: 2 }),
      [t('base_model.vblora_vector_bank', 'F32', [4, 3], vals(12, 'F32')),
        t(key(q, 'vblora_logits_A_topk_indices'), 'U8', [1, 2, 2], Float64Array.of(0, 1, 2, 3)), t(key(q, 'vblora_logits_A_topk_weights'), 'F32', [1, 2, 1], Float64Array.of(0.5, 0.25)),
        t(key(q, 'vblora_logits_B_topk_indices'), 'U8', [2, 1, 2], Float64Array.of(0, 1, 2, 3)), t(key(q, 'vblora_logits_B_topk_weights'), 'F32', [2, 1, 1], Float64Array.of(0.5, 0.25))],
      /q_proj" has top-k indices and weights but the config's save_only_topk_weights is not true/],
    ['VB-LoRA with a tie at the top-k boundary', vbConfig({ r: 2, num_vectors: 4, vector_length: 3, topk: 1 }),
      [t('base_model.vblora_vector_bank', 'F32', [4, 3], vals(12, 'F32')), t(key(q, 'vblora_logits_A'), 'F32', [2, 2, 4], logits(true)), t(key(q, 'vblora_logits_B'), 'F32', [2, 2, 4], logits(false))],
      /VB-LoRA module "model\.layers\.0\.self_attn\.q_proj": vblora_logits_A: row 0 has a tie at its top-1 boundary \(logit 5 there and just past it\), and which of the equal logits torch\.topk keeps is not defined/],
    ['VB-LoRA top-k weights saved in bf16', vbConfig({ r: 1, num_vectors: 4, vector_length: 3, topk: 2, save_only_topk_weights: true }),
      [t('base_model.vblora_vector_bank', 'F32', [4, 3], vals(12, 'F32')),
        t(key(q, 'vblora_logits_A_topk_indices'), 'U8', [1, 2, 2], Float64Array.of(0, 1, 2, 3)), t(key(q, 'vblora_logits_A_topk_weights'), 'BF16', [1, 2, 1], Float64Array.of(0.5, 0.25)),
        t(key(q, 'vblora_logits_B_topk_indices'), 'U8', [2, 1, 2], Float64Array.of(0, 1, 2, 3)), t(key(q, 'vblora_logits_B_topk_weights'), 'BF16', [2, 1, 1], Float64Array.of(0.5, 0.25))],
      /q_proj" has top-k weights in BF16 and BF16: PEFT reads them only as F32/],
    ['DeLoRA without delora_w_norm', deloraConfig({ r: 2 }),
      [t(key(q, 'delora_A'), 'F32', [2, 6], vals(12, 'F32')), t(key(q, 'delora_B'), 'F32', [6, 2], vals(12, 'F32')), t(key(q, 'delora_lambda'), 'F32', [1], Float64Array.of(15))],
      /q_proj" needs delora_A, delora_B, delora_lambda and delora_w_norm \(the base weight's column norms PEFT saves with it\); delora_w_norm is missing/],
    ['GraLoRA blocks that disagree with gralora_k', graloraConfig({ r: 2, gralora_k: 2 }),
      [t(key(q, 'gralora_A'), 'F32', [3, 2, 2], vals(12, 'F32')), t(key(q, 'gralora_B'), 'F32', [3, 2, 2], vals(12, 'F32'))],
      /q_proj": gralora_A \(3, 2, 2\) and gralora_B \(3, 2, 2\) are not \(gralora_k, in\/gralora_k, r\) and \(gralora_k, r, out\/gralora_k\) for the config's gralora_k = 2 and r = 2/],
    ['GraLoRA hybrid_r without its general pair', graloraConfig({ r: 2, gralora_k: 2, hybrid_r: 2 }),
      [t(key(q, 'gralora_A'), 'F32', [2, 3, 2], vals(12, 'F32')), t(key(q, 'gralora_B'), 'F32', [2, 2, 3], vals(12, 'F32'))],
      /q_proj" has hybrid_r = 2 in the config but not both gralora_A_general\.weight and gralora_B_general\.weight/],
  ];
  it.each(cases)('%s', async (_what, config, tensors, message) => {
    const { run: cli, out: path, lines } = await mergeFolders(temp.make, base, peftFolder(config, tensors));
    expect(cli.code).not.toBe(0);
    expect(lines, cli.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(existsSync(path)).toBe(false);
  });
});
