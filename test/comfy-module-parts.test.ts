/**
 * Adapters whose modules pair a weight update with a bias diff, as ComfyUI's "Extract and Save
 * Lora" node writes them (comfy_extras/nodes_lora_extract.py with bias_diff on, the default):
 * `lora_up`/`lora_down` in f16 for every weight of two or more dims, `.diff` for the 1-D ones
 * (norms), `.diff_b` for every bias, no `.alpha`, all under `diffusion_model.`; a weight its SVD
 * fails on (Wan's 5-D patch embedding) keeps its `.diff_b` alone. Kijai's extracted Wan LoRAs
 * add `.alpha`; LyCORIS files may pair `diff_b` with LoHa. ComfyUI (comfy/lora.py load_lora) adds
 * each as its own patch: W by its algorithm at strength·α/r, bias' = bias + strength·diff_b
 * (a "diff" patch: no α), W += strength·diff. Truth is float64, written out below; each merge on
 * the CPU and on WebGPU.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizePlan } from '../demo/plan-summary.js';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundF8Saturating, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, WAN, fluxBflTensors, fluxDiffusersTensors, tensor, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { ulpOf } from './helpers/merge-truth.js';
import { comfyRequantize } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(20251201);
const f16 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F16', 0.5);
const alpha = (name: string, value: number): FixtureTensor => ({ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [value] });

/** Tensors by name, values as doubles. */
function byName(tensors: readonly FixtureTensor[]): Map<string, Float64Array> {
  return new Map(tensors.map((t) => [t.name, Float64Array.from(t.data as ArrayLike<number>)]));
}

/** up (out × r) · down (r × in), plainly. */
function product(up: Float64Array, down: Float64Array, out: number, r: number): Float64Array {
  const cols = down.length / r;
  const result = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < cols; c++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += up[o * r + k] * down[k * cols + c];
      result[o * cols + c] = sum;
    }
  }
  return result;
}

/** What the merged file must hold: base values plus these additions (rows src… of `delta` onto rows dst… of the tensor). */
interface Addition { key: string; delta: Float64Array; scale: number; rows?: { src: number; dst: number; count: number } }

function expectMerged(base: readonly FixtureTensor[], merged: Map<string, DecodedTensor>, additions: readonly Addition[]): void {
  expect([...merged.keys()].sort()).toEqual(base.map((t) => t.name).sort());
  const touched = new Set(additions.map((a) => a.key));
  for (const t of base) {
    const got = merged.get(t.name)!;
    expect(got.dtype, t.name).toBe(t.dtype);
    const truth = Float64Array.from(t.data as ArrayLike<number>);
    if (!touched.has(t.name)) {
      expect([...got.values], `${t.name} is copied unchanged`).toEqual([...truth]);
      continue;
    }
    const cols = truth.length / t.shape[0];
    for (const a of additions.filter((x) => x.key === t.name)) {
      const { src, dst, count } = a.rows ?? { src: 0, dst: 0, count: t.shape[0] };
      for (let i = 0; i < count * cols; i++) truth[dst * cols + i] += a.scale * a.delta[src * cols + i];
    }
    for (let i = 0; i < truth.length; i++) {
      const want = t.dtype === 'F8_E4M3' || t.dtype === 'F8_E5M2' ? roundF8Saturating(truth[i], t.dtype) : roundForDType(truth[i], t.dtype);
      if (got.values[i] !== want) {
        expect(Math.abs(got.values[i] - truth[i]), `${t.name}[${i}]: got ${got.values[i]}, truth ${truth[i]}`).toBeLessThanOrEqual(ulpOf(truth[i], t.dtype));
      }
    }
  }
}

// --- Wan 2.1 in Wan's own naming (Comfy-Org's repackaged files) ← a ComfyUI-extracted Wan LoRA ---

const { dim, ffn } = WAN;
const wanBase: FixtureTensor[] = [
  ...wanOriginalTensors(rand, 'BF16'),
  // Conv3d (dim, 16, 1, 2, 2): the extract node's SVD fails on 5-D weights, so its bias diff comes alone.
  tensor(rand, 'patch_embedding.weight', [dim, 16, 1, 2, 2], 'BF16'), tensor(rand, 'patch_embedding.bias', [dim], 'F32'),
];
const WAN_FILE = 'wan2.1_t2v_14B_bf16.safetensors';

const D = 'diffusion_model.';
const wanLora: FixtureTensor[] = [
  // A LoRA and a bias diff, no α: the extract node's standard output for a Linear.
  f16(`${D}blocks.0.self_attn.q.lora_up.weight`, [dim, 4]), f16(`${D}blocks.0.self_attn.q.lora_down.weight`, [4, dim]),
  f16(`${D}blocks.0.self_attn.q.diff_b`, [dim]),
  // With α (Kijai's files): α/r scales the LoRA only, not diff_b.
  f16(`${D}blocks.0.ffn.0.lora_up.weight`, [ffn, 3]), f16(`${D}blocks.0.ffn.0.lora_down.weight`, [3, dim]), alpha(`${D}blocks.0.ffn.0`, 1.5),
  f16(`${D}blocks.0.ffn.0.diff_b`, [ffn]),
  // Rank 1.
  f16(`${D}time_projection.1.lora_up.weight`, [6 * dim, 1]), f16(`${D}time_projection.1.lora_down.weight`, [1, dim]),
  f16(`${D}time_projection.1.diff_b`, [6 * dim]),
  // A LayerNorm's weight and bias diffs; an RMSNorm's weight diff (it has no bias).
  f16(`${D}blocks.0.norm3.diff`, [dim]), f16(`${D}blocks.0.norm3.diff_b`, [dim]),
  f16(`${D}blocks.0.self_attn.norm_q.diff`, [dim]),
  // A bias diff alone.
  f16(`${D}patch_embedding.diff_b`, [dim]),
  // LoHa with a bias diff (LyCORIS): the same part beside another algorithm. α/r = 1/2.
  f16(`${D}blocks.1.self_attn.k.hada_w1_a`, [dim, 2]), f16(`${D}blocks.1.self_attn.k.hada_w1_b`, [2, dim]),
  f16(`${D}blocks.1.self_attn.k.hada_w2_a`, [dim, 2]), f16(`${D}blocks.1.self_attn.k.hada_w2_b`, [2, dim]), alpha(`${D}blocks.1.self_attn.k`, 1),
  f16(`${D}blocks.1.self_attn.k.diff_b`, [dim]),
  // A LoRA alone (the base's head.head has no bias here).
  f16(`${D}head.head.lora_up.weight`, [WAN.patchOut, 2]), f16(`${D}head.head.lora_down.weight`, [2, dim]),
];
const WAN_WEIGHT = 0.7;

function wanTruth(): Addition[] {
  const t = byName(wanLora);
  const lora = (m: string, out: number, r: number) => product(t.get(`${D}${m}.lora_up.weight`)!, t.get(`${D}${m}.lora_down.weight`)!, out, r);
  const hada = (m: string) => {
    const one = product(t.get(`${D}${m}.hada_w1_a`)!, t.get(`${D}${m}.hada_w1_b`)!, dim, 2);
    const two = product(t.get(`${D}${m}.hada_w2_a`)!, t.get(`${D}${m}.hada_w2_b`)!, dim, 2);
    return one.map((x, i) => x * two[i]);
  };
  const s = WAN_WEIGHT;
  return [
    { key: 'blocks.0.self_attn.q.weight', delta: lora('blocks.0.self_attn.q', dim, 4), scale: s },
    { key: 'blocks.0.self_attn.q.bias', delta: t.get(`${D}blocks.0.self_attn.q.diff_b`)!, scale: s },
    { key: 'blocks.0.ffn.0.weight', delta: lora('blocks.0.ffn.0', ffn, 3), scale: s * 1.5 / 3 },
    { key: 'blocks.0.ffn.0.bias', delta: t.get(`${D}blocks.0.ffn.0.diff_b`)!, scale: s },
    { key: 'time_projection.1.weight', delta: lora('time_projection.1', 6 * dim, 1), scale: s },
    { key: 'time_projection.1.bias', delta: t.get(`${D}time_projection.1.diff_b`)!, scale: s },
    { key: 'blocks.0.norm3.weight', delta: t.get(`${D}blocks.0.norm3.diff`)!, scale: s },
    { key: 'blocks.0.norm3.bias', delta: t.get(`${D}blocks.0.norm3.diff_b`)!, scale: s },
    { key: 'blocks.0.self_attn.norm_q.weight', delta: t.get(`${D}blocks.0.self_attn.norm_q.diff`)!, scale: s },
    { key: 'patch_embedding.bias', delta: t.get(`${D}patch_embedding.diff_b`)!, scale: s },
    { key: 'blocks.1.self_attn.k.weight', delta: hada('blocks.1.self_attn.k'), scale: s * 1 / 2 },
    { key: 'blocks.1.self_attn.k.bias', delta: t.get(`${D}blocks.1.self_attn.k.diff_b`)!, scale: s },
    { key: 'head.head.weight', delta: lora('head.head', WAN.patchOut, 2), scale: s },
  ];
}

/**
 * Comfy-Org's scaled fp8 Wan (wan2.1_t2v_14B_fp8_scaled.safetensors): each 2-D weight stored as
 * e4m3fn codes of W / scale_weight, norms, biases and the patch embedding as they were, a
 * zero-size `scaled_fp8` marker. Current ComfyUI loads it as comfy_quant float8_e4m3fn layers, so
 * a patched weight is W' = code × scale_weight + s·ΔW quantized again with its scale recalculated;
 * the bias, stored as it is, gains s·diff_b, not divided by its weight's scale.
 */
const wanScaledBase: FixtureTensor[] = (() => {
  const scaleOf = (name: string) => Math.fround(1 / 50 + (name.length % 5) / 1000);
  const out: FixtureTensor[] = [];
  for (const t of wanBase) {
    if (t.shape.length !== 2) {
      out.push(t);
      continue;
    }
    const scale = scaleOf(t.name);
    out.push({ ...t, dtype: 'F8_E4M3', data: Array.from(t.data as ArrayLike<number>, (x) => roundF8Saturating(x / scale, 'F8_E4M3')) });
    out.push({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [scale] });
  }
  return [...out, { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] }];
})();
const SCALED_MODULES = ['blocks.0.self_attn.q', 'blocks.0.ffn.0', 'time_projection.1', 'blocks.0.norm3', 'patch_embedding'];
const wanScaledLora = wanLora.filter((t) => SCALED_MODULES.some((m) => t.name.startsWith(`${D}${m}.`)));
const wanScaledTruth = () => wanTruth().filter((a) => SCALED_MODULES.some((m) => a.key.startsWith(`${m}.`)));

/** The scaled Wan merged: patched weights quantized again as ComfyUI does, everything else as expectMerged checks it. */
function expectScaledMerged(merged: Map<string, DecodedTensor>): void {
  const additions = wanScaledTruth();
  const base = byName(wanScaledBase);
  const requantized = new Set(additions.map((a) => a.key).filter((k) => k.endsWith('.weight') && base.has(k.replace(/\.weight$/, '.scale_weight'))));
  expect(requantized.size).toBe(3);
  const isPart = (name: string) => requantized.has(name) || requantized.has(name.replace(/\.scale_weight$/, '.weight'));
  expectMerged(wanScaledBase.filter((t) => !isPart(t.name)), new Map([...merged].filter(([k]) => !isPart(k))), additions.filter((a) => !requantized.has(a.key)));
  for (const key of requantized) {
    const scaleKey = key.replace(/\.weight$/, '.scale_weight');
    const real = base.get(key)!.map((code) => code * base.get(scaleKey)![0]);
    for (const a of additions.filter((x) => x.key === key)) for (let i = 0; i < real.length; i++) real[i] += a.scale * a.delta[i];
    const want = comfyRequantize(real);
    expect(merged.get(scaleKey)!.values[0], scaleKey).toBe(want.scale);
    const got = merged.get(key)!;
    expect(got.dtype, key).toBe('F8_E4M3');
    const wrong = got.values.findIndex((x, i) => x !== want.codes[i]);
    expect(wrong, `${key}[${wrong}]: ${got.values[wrong]} × s vs ${want.codes[wrong]} × s`).toBe(-1);
  }
}

// --- Flux: BFL's single file and diffusers' transformer ← a ComfyUI-extracted Flux LoRA ----------

const { h } = FLUX;
const fluxLora: FixtureTensor[] = [
  f16(`${D}double_blocks.0.img_attn.qkv.lora_up.weight`, [3 * h, 4]), f16(`${D}double_blocks.0.img_attn.qkv.lora_down.weight`, [4, h]),
  f16(`${D}double_blocks.0.img_attn.qkv.diff_b`, [3 * h]),
  f16(`${D}single_blocks.0.linear1.lora_up.weight`, [7 * h, 2]), f16(`${D}single_blocks.0.linear1.lora_down.weight`, [2, h]),
  f16(`${D}single_blocks.0.linear1.diff_b`, [7 * h]),
  f16(`${D}img_in.lora_up.weight`, [h, 3]), f16(`${D}img_in.lora_down.weight`, [3, FLUX.inChannels]), f16(`${D}img_in.diff_b`, [h]),
];
const FLUX_WEIGHT = 1.3;
const fluxBfl: FixtureTensor[] = fluxBflTensors(rand, 'BF16');
/** diffusers' transformer with the biases of the layers the LoRA reaches (the real model has them all). */
const fluxDiffusers: FixtureTensor[] = [
  ...fluxDiffusersTensors(rand, 'BF16'),
  ...['to_q', 'to_k', 'to_v'].map((p) => tensor(rand, `transformer_blocks.0.attn.${p}.bias`, [h], 'BF16')),
  ...['to_q', 'to_k', 'to_v'].map((p) => tensor(rand, `single_transformer_blocks.0.attn.${p}.bias`, [h], 'BF16')),
  tensor(rand, 'single_transformer_blocks.0.proj_mlp.bias', [4 * h], 'BF16'), tensor(rand, 'x_embedder.bias', [h], 'BF16'),
];

function fluxTruth(onto: 'bfl' | 'diffusers'): Addition[] {
  const t = byName(fluxLora);
  const lora = (m: string, out: number, r: number) => product(t.get(`${D}${m}.lora_up.weight`)!, t.get(`${D}${m}.lora_down.weight`)!, out, r);
  const bias = (m: string) => t.get(`${D}${m}.diff_b`)!;
  const s = FLUX_WEIGHT;
  const qkv = lora('double_blocks.0.img_attn.qkv', 3 * h, 4);
  const linear1 = lora('single_blocks.0.linear1', 7 * h, 2);
  const imgIn = lora('img_in', h, 3);
  if (onto === 'bfl') {
    return [
      { key: 'double_blocks.0.img_attn.qkv.weight', delta: qkv, scale: s },
      { key: 'double_blocks.0.img_attn.qkv.bias', delta: bias('double_blocks.0.img_attn.qkv'), scale: s },
      { key: 'single_blocks.0.linear1.weight', delta: linear1, scale: s },
      { key: 'single_blocks.0.linear1.bias', delta: bias('single_blocks.0.linear1'), scale: s },
      { key: 'img_in.weight', delta: imgIn, scale: s },
      { key: 'img_in.bias', delta: bias('img_in'), scale: s },
    ];
  }
  // Fused rows split over diffusers' tensors: q, k, v (and proj_mlp), weight and bias alike.
  const rows = (src: number, count: number) => ({ src, dst: 0, count });
  const T = 'transformer_blocks.0.attn.';
  const S = 'single_transformer_blocks.0.';
  const out: Addition[] = [];
  for (const [i, p] of ['to_q', 'to_k', 'to_v'].entries()) {
    out.push({ key: `${T}${p}.weight`, delta: qkv, scale: s, rows: rows(i * h, h) });
    out.push({ key: `${T}${p}.bias`, delta: bias('double_blocks.0.img_attn.qkv'), scale: s, rows: rows(i * h, h) });
    out.push({ key: `${S}attn.${p}.weight`, delta: linear1, scale: s, rows: rows(i * h, h) });
    out.push({ key: `${S}attn.${p}.bias`, delta: bias('single_blocks.0.linear1'), scale: s, rows: rows(i * h, h) });
  }
  out.push({ key: `${S}proj_mlp.weight`, delta: linear1, scale: s, rows: rows(3 * h, 4 * h) });
  out.push({ key: `${S}proj_mlp.bias`, delta: bias('single_blocks.0.linear1'), scale: s, rows: rows(3 * h, 4 * h) });
  out.push({ key: 'x_embedder.weight', delta: imgIn, scale: s }, { key: 'x_embedder.bias', delta: bias('img_in'), scale: s });
  return out;
}

const CASES = [
  { name: 'Wan 2.1 (Wan\'s naming) ← ComfyUI-extracted LoRA with diff_b, norm diffs, a lone diff_b, LoHa + diff_b', base: wanBase, baseFile: WAN_FILE, lora: wanLora, weight: WAN_WEIGHT, truth: wanTruth },
  {
    name: 'Comfy-Org\'s scaled fp8 Wan ← the same LoRA: patched weights quantized again with scale_weight recalculated, biases s·diff_b',
    base: wanScaledBase, baseFile: 'wan2.1_t2v_14B_fp8_scaled.safetensors', lora: wanScaledLora, weight: WAN_WEIGHT, truth: wanScaledTruth, check: expectScaledMerged,
  },
  { name: 'Flux BFL single file ← ComfyUI-extracted LoRA with diff_b', base: fluxBfl, baseFile: 'flux1-dev.safetensors', lora: fluxLora, weight: FLUX_WEIGHT, truth: () => fluxTruth('bfl') },
  {
    name: 'diffusers Flux transformer ← the same file: fused qkv and linear1 biases split over q, k, v, proj_mlp',
    base: fluxDiffusers, baseFile: 'diffusion_pytorch_model.safetensors', lora: fluxLora, weight: FLUX_WEIGHT, truth: () => fluxTruth('diffusers'),
    config: { 'config.json': JSON.stringify({ _class_name: 'FluxTransformer2DModel' }) },
  },
];

const backends = mergeBackends({ cpu: 'default' });

for (const c of CASES) {
  describe(c.name, () => {
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`merges both patches of each module exactly on ${kind}`, async () => {
        const { tensors } = await mergeInMemory({
          backend: backends[kind]!,
          base: { [c.baseFile]: buildSafetensors(c.base, { format: 'pt' }), ...c.config },
          adapters: [{ files: { 'ComfyUI_extracted_lora_00001_.safetensors': buildSafetensors(c.lora) }, weight: c.weight }],
        });
        if ('check' in c && c.check) c.check(tensors);
        else expectMerged(c.base, tensors, c.truth());
      });
    }
  });
}

// --- what is refused, and how ---------------------------------------------------------------------

async function problemsOf(lora: FixtureTensor[], base: FixtureTensor[] = wanBase): Promise<string[]> {
  const prepared = await prepareMerge(memoryInputFileSet({ [WAN_FILE]: buildSafetensors(base) }, WAN_FILE), [
    { files: memoryInputFileSet({ 'extracted.safetensors': buildSafetensors(lora) }, 'extracted.safetensors'), weight: 1 },
  ]).catch((e: Error) => e);
  if (prepared instanceof Error) return [prepared.message];
  await prepared.close();
  return prepared.plan.problems.map((p) => p.message);
}

describe('modules with a bias diff that cannot be merged as ComfyUI merges them', () => {
  it('a diff_b for a layer whose base has no bias is refused naming the module and tensor', async () => {
    // Wan's cross_attn.k has no bias in this base.
    const withLora = [f16(`${D}blocks.0.cross_attn.k.lora_up.weight`, [dim, 2]), f16(`${D}blocks.0.cross_attn.k.lora_down.weight`, [2, dim]), f16(`${D}blocks.0.cross_attn.k.diff_b`, [dim])];
    expect(await problemsOf(withLora)).toEqual([
      'extracted.safetensors: module "diffusion_model.blocks.0.cross_attn.k": has diffusion_model.blocks.0.cross_attn.k.diff_b, a change of its bias, but the base has no blocks.0.cross_attn.k.bias',
    ]);
    expect(await problemsOf([f16(`${D}blocks.0.self_attn.norm_q.diff_b`, [dim])])).toEqual([
      'extracted.safetensors: module "diffusion_model.blocks.0.self_attn.norm_q": has diffusion_model.blocks.0.self_attn.norm_q.diff_b, a change of its bias, but the base has no blocks.0.self_attn.norm_q.bias',
    ]);
  });

  it('a diff_b of the wrong length is refused with both shapes', async () => {
    const lora = [f16(`${D}blocks.0.self_attn.q.lora_up.weight`, [dim, 2]), f16(`${D}blocks.0.self_attn.q.lora_down.weight`, [2, dim]), f16(`${D}blocks.0.self_attn.q.diff_b`, [dim + 1])];
    expect(await problemsOf(lora)).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.0\.self_attn\.q": diff_b diffusion_model\.blocks\.0\.self_attn\.q\.diff_b \(9\) should hold one value per output feature of its weight's update \(8\)/)]);
    expect(await problemsOf([f16(`${D}patch_embedding.diff_b`, [dim + 2])])).toEqual(['extracted.safetensors: module "diffusion_model.patch_embedding": diffusion_model.patch_embedding.diff_b (10) does not fit base patch_embedding.weight (8, 16, 1, 2, 2): it should hold one value per output feature (8)']);
  });

  it('a LoRA and a full diff of one weight are refused: ComfyUI keeps only the diff, LyCORIS only the LoRA', async () => {
    const lora = [f16(`${D}blocks.0.self_attn.q.lora_up.weight`, [dim, 2]), f16(`${D}blocks.0.self_attn.q.lora_down.weight`, [2, dim]), f16(`${D}blocks.0.self_attn.q.diff`, [dim, dim]), f16(`${D}blocks.0.self_attn.q.diff_b`, [dim])];
    expect(await problemsOf(lora)).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.0\.self_attn\.q" mixes tensors of LoRA and full diff \(.*\), two updates of one weight .*ComfyUI keeps only the last it reads, LyCORIS the first/)]);
  });

  it('two bias updates in one module (LyCORIS b_norm and diff_b) are refused', async () => {
    const lora = [f16(`${D}blocks.0.norm3.w_norm`, [dim]), f16(`${D}blocks.0.norm3.b_norm`, [dim]), f16(`${D}blocks.0.norm3.diff_b`, [dim])];
    expect(await problemsOf(lora)).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.0\.norm3" has two updates of its bias \(diffusion_model\.blocks\.0\.norm3\.b_norm and diffusion_model\.blocks\.0\.norm3\.diff_b\)/)]);
  });

  it('reshape_weight beside LoHa is refused by name: ComfyUI reads it beside a LoRA only (merged: wan-control-reshape.test.ts)', async () => {
    const reshape: FixtureTensor = { name: `${D}blocks.1.self_attn.k.reshape_weight`, dtype: 'I64', shape: [2], data: [dim, 2 * dim] };
    const withReshape = [...wanLora.filter((t) => t.name.startsWith(`${D}blocks.1.self_attn.k.`) && !t.name.endsWith('diff_b')), reshape];
    expect(await problemsOf(withReshape)).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.1\.self_attn\.k" has "diffusion_model\.blocks\.1\.self_attn\.k\.reshape_weight" beside LoHa: ComfyUI reads reshape_weight only beside a LoRA of the weight .*; remove it$/)]);
  });
});

// --- the command line goes through the same plan ----------------------------------------------

describe('the CLI on a ComfyUI-extracted Wan LoRA', () => {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const noBias = [f16(`${D}blocks.0.cross_attn.k.lora_up.weight`, [dim, 2]), f16(`${D}blocks.0.cross_attn.k.lora_down.weight`, [2, dim]), f16(`${D}blocks.0.cross_attn.k.diff_b`, [dim])];

  it('merges both patches of each module (loramerge merge)', async () => {
    const dir = temp.make({ [WAN_FILE]: buildSafetensors(wanBase), 'extracted.safetensors': buildSafetensors(wanLora) });
    const out = join(dir, 'merged.safetensors');
    const result = await runCli(['merge', '--base', join(dir, WAN_FILE), '--adapter', join(dir, 'extracted.safetensors'), '--weight', String(WAN_WEIGHT), '--out', out, '--backend', 'cpu']);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    expectMerged(wanBase, decodeSafetensors(new Uint8Array(readFileSync(out))).tensors, wanTruth());
  });

  it('refuses a diff_b without a base bias in one line naming module and tensor, and writes nothing', async () => {
    const dir = temp.make({ [WAN_FILE]: buildSafetensors(wanBase), 'extracted.safetensors': buildSafetensors(noBias) });
    const result = await runCli(['merge', '--base', join(dir, WAN_FILE), '--adapter', join(dir, 'extracted.safetensors'), '--out', join(dir, 'merged.safetensors'), '--backend', 'cpu']);
    expect(result.code).toBe(1);
    expect(errorLines(result.stderr).join('\n')).toMatch(/module "diffusion_model\.blocks\.0\.cross_attn\.k": has diffusion_model\.blocks\.0\.cross_attn\.k\.diff_b, a change of its bias, but the base has no blocks\.0\.cross_attn\.k\.bias/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(['extracted.safetensors', WAN_FILE].sort());
  });

  it('resize refuses a module with a bias diff by name rather than dropping it', async () => {
    const dir = temp.make({ 'extracted.safetensors': buildSafetensors(wanLora) });
    const result = await runCli(['resize', '--adapter', join(dir, 'extracted.safetensors'), '--rank', '2', '--out', join(dir, 'small.safetensors'), '--backend', 'cpu']);
    expect(result.code).toBe(1);
    expect(errorLines(result.stderr).join('\n')).toMatch(/module "diffusion_model\.blocks\.0\.self_attn\.q" changes a bias \(diffusion_model\.blocks\.0\.self_attn\.q\.diff_b\), which resize does not support yet/);
    expect(listDir(dir)).toEqual(['extracted.safetensors']);
  });
});

describe('the page\'s plan of a ComfyUI-extracted Wan LoRA', () => {
  it('names each module\'s parts, lists the lone bias diff, and counts the biases among the changed tensors', async () => {
    const summary = await summarizePlan(memoryInputFileSet({ [WAN_FILE]: buildSafetensors(wanBase) }, WAN_FILE), [
      { files: memoryInputFileSet({ 'extracted.safetensors': buildSafetensors(wanLora) }, 'extracted.safetensors'), weight: WAN_WEIGHT },
    ]);
    expect(summary.mergeable).toBe(true);
    expect(summary.adapters[0].facts).toEqual(expect.arrayContaining(['ComfyUI', 'LoRA + bias ×3', 'LoRA ×1', 'full diff + bias ×1', 'full diff ×1', 'LoHa + bias ×1', 'bias diff ×1', '8 modules']));
    const byModule = new Map(summary.modules.map((m) => [m.module, m]));
    expect(byModule.get(`${D}blocks.0.ffn.0`)).toMatchObject({ target: 'blocks.0.ffn.0.weight', algorithm: 'LoRA + bias', rank: 3, scale: 0.5 });
    expect(byModule.get(`${D}patch_embedding`)).toEqual({ adapter: 0, module: `${D}patch_embedding`, target: 'patch_embedding.bias', shape: [dim], algorithm: 'bias diff', scale: 1 });
    expect(summary.modules).toHaveLength(8);
    expect(summary.files[0].changed).toBe(wanTruth().length);
  });
});

describe('a scaled fp8 checkpoint whose scale_weight ComfyUI could not have written', () => {
  it('a zero, NaN or two-value scale_weight is refused naming the tensor', async () => {
    const key = 'blocks.0.self_attn.q.scale_weight';
    const withScale = (t: Partial<FixtureTensor>) => wanScaledBase.map((x) => (x.name === key ? { ...x, ...t } : x));
    expect(await problemsOf(wanScaledLora, withScale({ data: [0] }))).toEqual([`${WAN_FILE}: tensor "${key}" should be one finite, non-zero scale (F32 ())`]);
    expect(await problemsOf(wanScaledLora, withScale({ data: [NaN] }))).toEqual([`${WAN_FILE}: tensor "${key}" should be one finite, non-zero scale (F32 ())`]);
    expect(await problemsOf(wanScaledLora, withScale({ shape: [2], data: [0.02, 0.02] }))).toEqual([`${WAN_FILE}: tensor "${key}" should be one finite, non-zero scale (F32 (2))`]);
  });
});
