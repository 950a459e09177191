/**
 * DoRA on a tensor that other adapters also change, applied in --adapter order as PEFT merges
 * adapters one after another: V = W + (earlier adapters); then a DoRA adapter renormalises
 * V + its ΔW with its magnitudes; later adapters add to the result. PEFT's norms are per output
 * row; LyCORIS's dora_scale (per input column) needs every row and is streamed in two passes.
 * Both backends, row slabs, against float64 truth.
 */
import { describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { buildSafetensors, randomValues, roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';
import { dora } from './helpers/dense-f64.js';

const backends = mergeBackends({ cpu: 'both' });

const rand = seededRandom(77);
const vals = (n: number, dtype: FixtureDType, scale = 1) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));

/** W (out × in) += s·B·A in f64. */
function addLowRank(w: Float64Array, b: Float64Array, a: Float64Array, out: number, r: number, inF: number, s: number): Float64Array {
  const res = w.slice();
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let d = 0;
    for (let k = 0; k < r; k++) d += b[o * r + k] * a[k * inF + i];
    res[o * inF + i] += s * d;
  }
  return res;
}

async function run(backend: MergeBackend, baseFiles: Record<string, Uint8Array>, adapters: { files: Record<string, Uint8Array | string>; weight: number }[]) {
  return (await mergeInMemory({ backend, base: baseFiles, adapters })).tensors;
}

const peft = (config: object, tensors: FixtureTensor[]) => ({
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', ...config }),
  'adapter_model.safetensors': buildSafetensors(tensors),
});

describe.each(['cpu (js)', 'cpu (wasm)', 'webgpu'])('%s', (name) => {
  it('PEFT: LoRA, then a DoRA adapter, then LoRA on the same tensor (norms per output row)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 48, inF = 40, key = 'model.layers.0.self_attn.q_proj';
    const w = vals(out * inF, 'BF16');
    const lora1 = { a: vals(2 * inF, 'F32'), b: vals(out * 2, 'F32') };
    const doraA = { a: vals(3 * inF, 'F16'), b: vals(out * 3, 'F16'), m: vals(out, 'F32').map((x) => roundForDType(2 + x, 'F32')) };
    const lora3 = { a: vals(inF, 'F32'), b: vals(out, 'F32') };
    const merged = await run(backend, { 'model.safetensors': buildSafetensors([{ name: `${key}.weight`, dtype: 'BF16', shape: [out, inF], data: w }]) }, [
      { files: peft({ r: 2, lora_alpha: 4 }, [
        { name: `base_model.model.${key}.lora_A.weight`, dtype: 'F32', shape: [2, inF], data: lora1.a },
        { name: `base_model.model.${key}.lora_B.weight`, dtype: 'F32', shape: [out, 2], data: lora1.b },
      ]), weight: 0.5 },
      { files: peft({ r: 3, lora_alpha: 3, use_dora: true }, [
        { name: `base_model.model.${key}.lora_A.weight`, dtype: 'F16', shape: [3, inF], data: doraA.a },
        { name: `base_model.model.${key}.lora_B.weight`, dtype: 'F16', shape: [out, 3], data: doraA.b },
        { name: `base_model.model.${key}.lora_magnitude_vector`, dtype: 'F32', shape: [out], data: doraA.m },
      ]), weight: 1 },
      { files: peft({ r: 1, lora_alpha: 2 }, [
        { name: `base_model.model.${key}.lora_A.weight`, dtype: 'F32', shape: [1, inF], data: lora3.a },
        { name: `base_model.model.${key}.lora_B.weight`, dtype: 'F32', shape: [out, 1], data: lora3.b },
      ]), weight: -1 },
    ]);
    let v: Float64Array = addLowRank(w, lora1.b, lora1.a, out, 2, inF, 0.5 * 2);
    v = dora(addLowRank(v, doraA.b, doraA.a, out, 3, inF, 1), doraA.m, out, inF, 'out', 0);
    v = addLowRank(v, lora3.b, lora3.a, out, 1, inF, -2);
    expectMerged(merged.get(`${key}.weight`)!.values, v, 'BF16', key);
  });

  it('LyCORIS: a LoKr, then a LoRA with dora_scale (norms per input column, over all slabs), then a LoRA', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 64, inF = 36, key = 'down_blocks.1.attentions.0.proj_in';
    const flat = 'lora_unet_down_blocks_1_attentions_0_proj_in';
    const w = vals(out * inF, 'F16');
    const w1 = vals(4 * 3, 'F32'), w2 = vals(16 * 12, 'F32', 0.3);
    const down = vals(2 * inF, 'BF16'), up = vals(out * 2, 'BF16'), m = vals(inF, 'F32').map((x) => roundForDType(5 + x, 'F32'));
    const down3 = vals(inF, 'F32'), up3 = vals(out, 'F32');
    const merged = await run(backend, { 'diffusion_pytorch_model.safetensors': buildSafetensors([{ name: `${key}.weight`, dtype: 'F16', shape: [out, inF], data: w }]) }, [
      { files: { 'kron.safetensors': buildSafetensors([
        { name: `${flat}.lokr_w1`, dtype: 'F32', shape: [4, 3], data: w1 },
        { name: `${flat}.lokr_w2`, dtype: 'F32', shape: [16, 12], data: w2 },
      ]) }, weight: 1 },
      { files: { 'dora.safetensors': buildSafetensors([
        { name: `${flat}.lora_down.weight`, dtype: 'BF16', shape: [2, inF], data: down },
        { name: `${flat}.lora_up.weight`, dtype: 'BF16', shape: [out, 2], data: up },
        { name: `${flat}.alpha`, dtype: 'F32', shape: [], data: [1] },
        { name: `${flat}.dora_scale`, dtype: 'F32', shape: [1, inF], data: m },
      ]) }, weight: 1 },
      { files: { 'last.safetensors': buildSafetensors([
        { name: `${flat}.lora_down.weight`, dtype: 'F32', shape: [1, inF], data: down3 },
        { name: `${flat}.lora_up.weight`, dtype: 'F32', shape: [out, 1], data: up3 },
      ]) }, weight: 0.7 },
    ]);
    // kron(W1 (4 × 3), W2 (16 × 12)), scale 1 (both factors full).
    const kron = new Float64Array(out * inF);
    for (let o1 = 0; o1 < 4; o1++) for (let o2 = 0; o2 < 16; o2++) for (let i1 = 0; i1 < 3; i1++) for (let i2 = 0; i2 < 12; i2++) {
      kron[(o1 * 16 + o2) * inF + i1 * 12 + i2] = w1[o1 * 3 + i1] * w2[o2 * 12 + i2];
    }
    let v: Float64Array = w.map((x, i) => x + kron[i]);
    v = dora(addLowRank(v, up, down, out, 2, inF, 0.5), m, out, inF, 'in', 2 ** -23);
    v = addLowRank(v, up3, down3, out, 1, inF, 0.7);
    expectMerged(merged.get(`${key}.weight`)!.values, v, 'F16', key);
  });

  it('LyCORIS: dora_scale at a weight other than 1 interpolates the DoRA factor, as LyCORIS merges it (get_merged_weight)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // V = W + α/r·up·down at full strength; W' = V · (s·(m / (‖V‖ + ε) − 1) + 1). One module with
    // LyCORIS's default (1, in) magnitudes, one trained with wd_on_out ((out, 1)).
    const out = 48, inF = 40, s = 0.6;
    const keys = ['down_blocks.1.attentions.0.proj_in', 'down_blocks.1.attentions.0.proj_out'];
    const flats = ['lora_unet_down_blocks_1_attentions_0_proj_in', 'lora_unet_down_blocks_1_attentions_0_proj_out'];
    const axes = ['in', 'out'] as const;
    const ws = keys.map(() => vals(out * inF, 'F16'));
    const downs = keys.map(() => vals(4 * inF, 'F32')), ups = keys.map(() => vals(out * 4, 'F32'));
    const ms = axes.map((a) => vals(a === 'in' ? inF : out, 'F32').map((x) => roundForDType(3 + x, 'F32')));
    const merged = await run(backend, { 'diffusion_pytorch_model.safetensors': buildSafetensors(keys.map((key, j) => ({ name: `${key}.weight`, dtype: 'F16' as const, shape: [out, inF], data: ws[j] }))) }, [
      { files: { 'dora.safetensors': buildSafetensors(flats.flatMap((flat, j) => [
        { name: `${flat}.lora_down.weight`, dtype: 'F32' as const, shape: [4, inF], data: downs[j] },
        { name: `${flat}.lora_up.weight`, dtype: 'F32' as const, shape: [out, 4], data: ups[j] },
        { name: `${flat}.alpha`, dtype: 'F32' as const, shape: [], data: [2] },
        { name: `${flat}.dora_scale`, dtype: 'F32' as const, shape: axes[j] === 'in' ? [1, inF] : [out, 1], data: ms[j] },
      ])) }, weight: s },
    ]);
    keys.forEach((key, j) => {
      const v = addLowRank(ws[j], ups[j], downs[j], out, 4, inF, 2 / 4);
      const normalised = dora(v, ms[j], out, inF, axes[j], 2 ** -23);
      // V·(s·(q − 1) + 1) = s·(q·V) + (1 − s)·V, q·V being the DoRA result at weight 1.
      const exact = v.map((x, i) => s * normalised[i] + (1 - s) * x);
      expectMerged(merged.get(`${key}.weight`)!.values, exact, 'F16', key);
    });
  });

  it('diffusers\' single-file LoRA with PEFT\'s DoRA (`lora_magnitude_vector`) and `lora_B.bias`: norms per output row after s·α/r·ΔW, the bias gains s·α/r·bias', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // What diffusers' Flux trainers write with --use_dora (PEFT's state dict under `transformer.`,
    // the LoraConfig in lora_adapter_metadata); diffusers turns on use_dora / lora_bias from the names.
    // An f32 weight, so that a norm taken with an ε (LyCORIS's) would show.
    const out = 48, inF = 40, r = 4, s = 0.7, alpha = 8;
    const q = 'transformer_blocks.0.attn.to_q', k = 'transformer_blocks.0.attn.to_k';
    const wq = vals(out * inF, 'F32'), wk = vals(out * inF, 'BF16'), bq = vals(out, 'BF16'), bk = vals(out, 'BF16');
    const aq = vals(r * inF, 'BF16'), bqUp = vals(out * r, 'BF16'), m = vals(out, 'BF16').map((x) => roundForDType(4 + x, 'BF16'));
    const ak = vals(r * inF, 'BF16'), bkUp = vals(out * r, 'BF16'), biasUp = vals(out, 'BF16');
    const T = (name: string, shape: number[], data: ArrayLike<number>, dtype: FixtureDType = 'BF16'): FixtureTensor => ({ name, dtype, shape, data });
    // PEFT refuses use_dora with lora_bias in one config, so DoRA and the bias come in two files.
    const metadata = (dora: boolean) => ({ lora_adapter_metadata: JSON.stringify({ 'transformer.r': r, 'transformer.lora_alpha': alpha, 'transformer.use_dora': dora, 'transformer.lora_bias': !dora, 'transformer.peft_type': 'LORA' }) });
    const { tensors: merged, warnings } = await mergeInMemory({ backend, base: { 'diffusion_pytorch_model.safetensors': buildSafetensors([
      T(`${q}.weight`, [out, inF], wq, 'F32'), T(`${q}.bias`, [out], bq), T(`${k}.weight`, [out, inF], wk), T(`${k}.bias`, [out], bk),
    ]) }, adapters: [{ files: { 'pytorch_lora_weights.safetensors': buildSafetensors([
      T(`transformer.${q}.lora_A.weight`, [r, inF], aq), T(`transformer.${q}.lora_B.weight`, [out, r], bqUp), T(`transformer.${q}.lora_magnitude_vector`, [out], m),
    ], metadata(true)) }, weight: s }, { files: { 'pytorch_lora_weights.safetensors': buildSafetensors([
      T(`transformer.${k}.lora_A.weight`, [r, inF], ak), T(`transformer.${k}.lora_B.weight`, [out, r], bkUp), T(`transformer.${k}.lora_B.bias`, [out], biasUp),
    ], metadata(false)) }, weight: s }] });
    const scale = s * alpha / r;
    expectMerged(merged.get(`${q}.weight`)!.values, dora(addLowRank(wq, bqUp, aq, out, r, inF, scale), m, out, inF, 'out', 0), 'F32', q);
    expectMerged(merged.get(`${q}.bias`)!.values, bq, 'BF16', `${q}.bias`);
    expectMerged(merged.get(`${k}.weight`)!.values, addLowRank(wk, bkUp, ak, out, r, inF, scale), 'BF16', k);
    expectMerged(merged.get(`${k}.bias`)!.values, bk.map((b, o) => b + scale * biasUp[o]), 'BF16', `${k}.bias`);
    expect(warnings.join('\n')).toMatch(/DoRA module "transformer\.transformer_blocks\.0\.attn\.to_q" with weight 0\.7: the weight scales ΔW/);
  });

  it('diffusers\' single-file DoRA without lora_adapter_metadata: use_dora from the names, α = r (scale 1), every module of the component with its magnitude', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // diffusers' get_peft_kwargs: use_dora as any tensor is a lora_magnitude_vector, lora_alpha = r.
    const out = 24, inF = 20, r = 2;
    const q = 'transformer_blocks.0.attn.to_q', k = 'transformer_blocks.0.attn.to_k';
    const T = (tensorName: string, shape: number[], data: ArrayLike<number>): FixtureTensor => ({ name: tensorName, dtype: 'BF16', shape, data });
    const w: Record<string, Float64Array> = { [q]: vals(out * inF, 'BF16'), [k]: vals(out * inF, 'BF16') };
    const f = Object.fromEntries([q, k].map((key) => [key, { a: vals(r * inF, 'BF16'), b: vals(out * r, 'BF16'), m: vals(out, 'BF16').map((x) => roundForDType(4 + x, 'BF16')) }]));
    const merged = await run(backend, { 'diffusion_pytorch_model.safetensors': buildSafetensors([q, k].map((key) => T(`${key}.weight`, [out, inF], w[key]))) }, [
      { files: { 'pytorch_lora_weights.safetensors': buildSafetensors([q, k].flatMap((key) => [
        T(`transformer.${key}.lora_A.weight`, [r, inF], f[key].a), T(`transformer.${key}.lora_B.weight`, [out, r], f[key].b), T(`transformer.${key}.lora_magnitude_vector`, [out], f[key].m),
      ])) }, weight: 1 },
    ]);
    for (const key of [q, k]) expectMerged(merged.get(`${key}.weight`)!.values, dora(addLowRank(w[key], f[key].b, f[key].a, out, r, inF, 1), f[key].m, out, inF, 'out', 0), 'BF16', key);
  });

  it('LyCORIS: a 3×3 LoCon with dora_scale (1, in, 1, 1): one norm per input channel over (out, kh, kw)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 40, cin = 6, K = 9, inF = cin * K, key = 'down_blocks.0.resnets.1.conv2';
    const flat = 'lora_unet_down_blocks_0_resnets_1_conv2';
    const w = vals(out * inF, 'BF16');
    const down = vals(2 * inF, 'F32'), up = vals(out * 2, 'F32'), m = vals(cin, 'F32').map((x) => roundForDType(4 + x, 'F32'));
    const merged = await run(backend, { 'diffusion_pytorch_model.safetensors': buildSafetensors([{ name: `${key}.weight`, dtype: 'BF16', shape: [out, cin, 3, 3], data: w }]) }, [
      { files: { 'locon.safetensors': buildSafetensors([
        { name: `${flat}.lora_down.weight`, dtype: 'F32', shape: [2, cin, 3, 3], data: down },
        { name: `${flat}.lora_up.weight`, dtype: 'F32', shape: [out, 2, 1, 1], data: up },
        { name: `${flat}.alpha`, dtype: 'F32', shape: [], data: [2] },
        { name: `${flat}.dora_scale`, dtype: 'F32', shape: [1, cin, 1, 1], data: m },
      ]) }, weight: 1 },
    ]);
    const v = addLowRank(w, up, down, out, 2, inF, 1);
    // weight.transpose(0, 1).reshape(in, -1).norm(dim=1): channel c over every output and kernel position.
    const exact = v.slice();
    for (let c = 0; c < cin; c++) {
      let ss = 0;
      for (let o = 0; o < out; o++) for (let k = 0; k < K; k++) ss += v[o * inF + c * K + k] ** 2;
      for (let o = 0; o < out; o++) for (let k = 0; k < K; k++) exact[o * inF + c * K + k] *= m[c] / (Math.sqrt(ss) + 2 ** -23);
    }
    expectMerged(merged.get(`${key}.weight`)!.values, exact, 'BF16', key);
  });
});

it('a file whose every module is named lycoris_… is recognised', async () => {
  const merged = await run(backends['cpu (wasm)']!, {
    'diffusion_pytorch_model.safetensors': buildSafetensors([{ name: 'mid_block.attentions.0.proj_out.weight', dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] }]),
  }, [{ files: { 'x.safetensors': buildSafetensors([
    { name: 'lycoris_mid_block_attentions_0_proj_out.diff', dtype: 'F32', shape: [2, 2], data: [0.5, 0.25, -1, 2] },
  ]) }, weight: 2 }]);
  expect(Array.from(merged.get('mid_block.attentions.0.proj_out.weight')!.values)).toEqual([2, 2.5, 1, 8]);
});
