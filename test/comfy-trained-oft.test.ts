/**
 * OFT files trained by ComfyUI's own trainer (comfy_extras/nodes_train.py `TrainLoraNode`,
 * algorithm "OFT" = comfy/weight_adapter/oft.py): for every Linear of the diffusion model it
 * saves the module's parameters under ComfyUI's key names, `diffusion_model.<path>.oft_blocks`
 * (n, b, b) with b, n = factorization(out, rank) (the rank input, 8 by default) and `.alpha`, a
 * 0-d tensor holding 1 (create_train's alpha = 1.0), plus `.diff_b` for every bias, all in the
 * node's lora_dtype (bf16 by default), with `safetensors.torch.save_file` and no metadata.
 *
 * ComfyUI applies such a module (OFTAdapter.calculate_weight) by its own rule, not LyCORIS's:
 * Q = B − Bᵀ over all blocks, scaled to norm α when ‖Q‖ + 1e-8 > α (LyCORIS: α·out),
 * R = (I + Q)(I − Q)⁻¹, and the strength s twice: W' = W + s·einsum("k n m, k n … -> k m …",
 * s·R − s·I, W); rescale is never applied. diff_b: bias' = bias + s·diff_b. The truth below is
 * that formula in float64, with the inverse formed by Gauss–Jordan elimination (helpers/dense-f64.ts); the same
 * tensors under LyCORIS's names merge by LyCORIS's rule (κ = α·out, s once).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { FLUX, fluxBflTensors, tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { expectWeightsMerged } from './helpers/merge-truth.js';
import { inverseFlat } from './helpers/dense-f64.js';

const rand = seededRandom(20261206);
const { h } = FLUX;
const D = 'diffusion_model.';
const base: FixtureTensor[] = fluxBflTensors(rand, 'BF16');
const BASE_FILE = 'flux1-dev.safetensors';

/** One trained module: its blocks (n, b, b) at this spread, over `out` rows of `weight`. */
interface Trained { path: string; n: number; b: number; spread: number; bias: boolean }
// rank 4: factorization(24, 4) = (4, 6), (8, 4) = (2, 4), (56, 4) = (4, 14).
const TRAINED: Trained[] = [
  { path: 'double_blocks.0.img_attn.qkv', n: 6, b: 4, spread: 0.3, bias: true }, // ‖Q‖ ≈ 3.5: capped at α = 1, not at α·out = 24
  { path: 'double_blocks.0.img_attn.proj', n: 4, b: 2, spread: 0.05, bias: false }, // ‖Q‖ < 1: not capped
  { path: 'single_blocks.0.linear1', n: 14, b: 4, spread: 0.1, bias: true }, // ‖Q‖ ≈ 1.8: capped
];
const comfyFile: FixtureTensor[] = TRAINED.flatMap((m) => [
  tensor(rand, `${D}${m.path}.oft_blocks`, [m.n, m.b, m.b], 'BF16', m.spread),
  { name: `${D}${m.path}.alpha`, dtype: 'BF16' as const, shape: [], data: [1] },
  ...(m.bias ? [tensor(rand, `${D}${m.path}.diff_b`, [m.n * m.b], 'BF16', 0.1)] : []),
]);

const values = (tensors: readonly FixtureTensor[], name: string) => Float64Array.from(tensors.find((t) => t.name === name)!.data as ArrayLike<number>);


/** The rotation blocks R_k = (I + Q_k)·inv(I − Q_k), Q = B − Bᵀ scaled to norm `cap` when larger. */
function rotations(blocks: Float64Array, n: number, b: number, cap: number): Float64Array[] {
  const q = blocks.map((_, i) => {
    const k = Math.floor(i / (b * b)), r = Math.floor(i / b) % b, c = i % b;
    return blocks[i] - blocks[k * b * b + c * b + r];
  });
  const norm = Math.sqrt(q.reduce((s, x) => s + x * x, 0)) + 1e-8;
  const f = cap > 0 && norm > cap ? cap / norm : 1;
  return Array.from({ length: n }, (_, k) => {
    const qk = q.subarray(k * b * b, (k + 1) * b * b).map((x) => x * f);
    const plus = qk.map((x, i) => x + (Math.floor(i / b) === i % b ? 1 : 0));
    const minusInv = inverseFlat(qk.map((x, i) => -x + (Math.floor(i / b) === i % b ? 1 : 0)), b);
    const r = new Float64Array(b * b);
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) for (let t = 0; t < b; t++) r[i * b + j] += plus[i * b + t] * minusInv[t * b + j];
    return r;
  });
}

/** W'[k·b + m] = W[k·b + m] + Σ_n M_k[n][m]·W[k·b + n]: einsum("k n m, k n c -> k m c", M, W) added to W. */
function addEinsum(w: Float64Array, cols: number, b: number, m: (k: number, n: number, mm: number) => number): Float64Array {
  const out = w.slice();
  for (let row = 0; row < w.length / cols; row++) {
    const k = Math.floor(row / b), mm = row % b;
    for (let c = 0; c < cols; c++) {
      let sum = 0;
      for (let n = 0; n < b; n++) sum += m(k, n, mm) * w[(k * b + n) * cols + c];
      out[row * cols + c] += sum;
    }
  }
  return out;
}

/** ComfyUI's OFTAdapter.calculate_weight at strength s (κ = α = 1), and its diff_b patch. */
function comfyTruth(s: number): Map<string, Float64Array> {
  const truth = new Map<string, Float64Array>();
  for (const m of TRAINED) {
    const r = rotations(values(comfyFile, `${D}${m.path}.oft_blocks`), m.n, m.b, 1);
    const w = values(base, `${m.path}.weight`);
    const diff = (k: number, n: number, mm: number) => s * (s * r[k][n * m.b + mm] - s * (n === mm ? 1 : 0));
    truth.set(`${m.path}.weight`, addEinsum(w, w.length / (m.n * m.b), m.b, diff));
    if (m.bias) truth.set(`${m.path}.bias`, values(base, `${m.path}.bias`).map((x, i) => x + s * values(comfyFile, `${D}${m.path}.diff_b`)[i]));
  }
  return truth;
}


const backends = mergeBackends({ cpu: 'both' });

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it.for([1, 0.5, -0.5])('merges a ComfyUI-trained Flux OFT at weight %d as ComfyUI applies it', async (weight, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { tensors, warnings } = await mergeInMemory({
      backend, base: { [BASE_FILE]: buildSafetensors(base) },
      adapters: [{ name: 'ComfyUI_trained_lora_400_steps_00001_.safetensors', files: { 'ComfyUI_trained_lora_400_steps_00001_.safetensors': buildSafetensors(comfyFile) }, weight }],
    });
    expectWeightsMerged(tensors, comfyTruth(weight), base, `weight ${weight}`, { mostChanged: false });
    // The weight squared is said, once, where it is not 1.
    const said = warnings.filter((w) => /the weight squared/.test(w));
    expect(said.length).toBe(weight === 1 ? 0 : 1);
  });
});

describe('the same tensors under LyCORIS names', () => {
  it('merge by LyCORIS rule (constraint α·out, the weight once), which trained such a file', async () => {
    const m = TRAINED[0];
    const blocks = comfyFile.find((t) => t.name === `${D}${m.path}.oft_blocks`)!;
    const n = `lora_unet_${m.path.replace(/\./g, '_')}`;
    const lycoris: FixtureTensor[] = [{ ...blocks, name: `${n}.oft_blocks` }, { name: `${n}.alpha`, dtype: 'BF16', shape: [], data: [1] }];
    const s = 0.5;
    const { tensors, warnings } = await mergeInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: [{ files: { 'oft.safetensors': buildSafetensors(lycoris) }, weight: s }] });
    const r = rotations(values(comfyFile, blocks.name), m.n, m.b, 1 * m.n * m.b);
    const w = values(base, `${m.path}.weight`);
    // W'_k = (s·R − s·I + I)ᵀ·W_k.
    expectWeightsMerged(tensors, new Map([[`${m.path}.weight`, addEinsum(w, h, m.b, (k, nn, mm) => s * r[k][nn * m.b + mm] - s * (nn === mm ? 1 : 0))]]), base, 'LyCORIS names', { mostChanged: false });
    expect(warnings.filter((x) => /the weight squared/.test(x))).toEqual([]);
  });
});

describe('refused under ComfyUI key names', () => {
  const adapterOf = (tensors: FixtureTensor[]) => [{ name: 'comfy.safetensors', files: { 'comfy.safetensors': buildSafetensors(tensors) }, weight: 1 }];
  it('a rescale, which ComfyUI ignores', async () => {
    const qkv = comfyFile.filter((t) => t.name.startsWith(`${D}${TRAINED[0].path}.`));
    const rescale = tensor(rand, `${D}${TRAINED[0].path}.rescale`, [3 * h, 1], 'BF16');
    const refusals = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: adapterOf([...qkv, rescale]) });
    expect(refusals).toEqual([expect.stringMatching(/module "diffusion_model\.double_blocks\.0\.img_attn\.qkv" has "diffusion_model\.double_blocks\.0\.img_attn\.qkv\.rescale" under ComfyUI's key names: ComfyUI, which reads such files, ignores rescale when it merges them \(Load LoRA\) and applies it in its bypass loader.*remove the tensor/)]);
  });
  it('BOFT, which ComfyUI applies by its own rule', async () => {
    // LyCORIS BOFT on 24 rows: b = 6, n = 4 blocks, m = log2(4) + 1 = 3 factors.
    const boft = [tensor(rand, `${D}${TRAINED[0].path}.oft_blocks`, [3, 4, 6, 6], 'BF16', 0.1), { name: `${D}${TRAINED[0].path}.alpha`, dtype: 'BF16' as const, shape: [], data: [1] }];
    const refusals = await refusalsInMemory({ backend: backends['cpu (js)']!, base: { [BASE_FILE]: buildSafetensors(base) }, adapters: adapterOf(boft) });
    expect(refusals).toEqual([expect.stringMatching(/module "diffusion_model\.double_blocks\.0\.img_attn\.qkv" is BOFT under ComfyUI's key names.*not supported/)]);
  });
});

describe('the command line', () => {
  const dirs = tempDirs();
  afterAll(() => dirs.removeAll());
  const FILE = 'ComfyUI_trained_lora_400_steps_00001_.safetensors';

  it('--dry-run says the weight enters squared, and plans the OFT term at w²', async () => {
    const dir = dirs.make({ [BASE_FILE]: buildSafetensors(base), [FILE]: buildSafetensors(comfyFile) });
    const result = await runCli(['merge', '--base', join(dir, BASE_FILE), '--adapter', join(dir, FILE), '--weight', '0.5', '--out', join(dir, 'merged.safetensors'), '--dry-run']);
    expect(result.code, result.stderr).toBe(0);
    const text = result.stdout + result.stderr;
    expect(text).toContain(`warning: ${join(dir, FILE)}: weight 0.5 merges 3 OFT modules (diffusion_model.double_blocks.0.img_attn.qkv, diffusion_model.double_blocks.0.img_attn.proj, diffusion_model.single_blocks.0.linear1) at 0.25, the weight squared, as ComfyUI, whose key names the file uses, applies it: twice (W + w·(w·R − w·I)ᵀ·W), so a negative weight acts as its positive`);
    expect(text).toMatch(/double_blocks\.0\.img_attn\.qkv\.weight .*← diffusion_model\.double_blocks\.0\.img_attn\.qkv OFT scale=0\.25 \(weight², as ComfyUI applies it\)\n/);
    expect(text).toMatch(/double_blocks\.0\.img_attn\.qkv\.bias \(bias\) ← diffusion_model\.double_blocks\.0\.img_attn\.qkv scale=0\.5\n/);
  });

  it('refuses a rescale under ComfyUI key names in one line, writing nothing', async () => {
    const rescale = tensor(rand, `${D}${TRAINED[0].path}.rescale`, [3 * h, 1], 'BF16');
    const dir = dirs.make({ [BASE_FILE]: buildSafetensors(base), [FILE]: buildSafetensors([...comfyFile, rescale]) });
    const result = await runCli(['merge', '--base', join(dir, BASE_FILE), '--adapter', join(dir, FILE), '--out', join(dir, 'merged.safetensors'), '--backend', 'cpu']);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(/rescale" under ComfyUI's key names: ComfyUI, which reads such files, ignores rescale when it merges them \(Load LoRA\) and applies it in its bypass loader/)]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir).sort()).toEqual([BASE_FILE, FILE].sort());
  });
});
