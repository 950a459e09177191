/**
 * PEFT GLoRA's bias path b' = b + s·(b ⊙ D + E + W·C) (GloraLayer.merge: W·C from the layer's real
 * weight W) where the base stores W otherwise than as plain floats of its own:
 * - fp8 codes times a grid of scales: block-wise fp8 (`weight_scale_inv`, Qwen2.5-7B-Instruct-FP8
 *   style, quantization_config quant_method "fp8"), a Comfy-Org scaled fp8 text encoder (Qwen2.5-VL
 *   as Qwen-Image ships it: `scale_weight` and a `scaled_fp8` marker) in e4m3fn, merged in real
 *   values, and in e5m2, merged in place by its scale: W = code × scale either way;
 * - the module's rows of a fused tensor: diffusers' `transformer_blocks.N.attn.to_q/to_k/to_v`
 *   onto BFL Flux's `double_blocks.N.img_attn.qkv` (3h, h) with its bias (3h).
 * The truth decodes the codes, multiplies by the scales and sums W·C in float64 in the test.
 */
import { describe, expect, it } from 'vitest';
import { FLUX, fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeFileInMemory, mergeInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { buildGguf, readGguf, tensorData, tensorValues } from './helpers/gguf-builder.js';
import { LLAMA, modelOptNvfp4Llama } from './helpers/gguf-models.js';
import { fixtureTensor as t, gridValues } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(20261208);
const vals = gridValues(rand);

/** b[o] + s·(b[o]·D[o] + E[o] + Σ_i W[o, i]·C[i]), W row-major (out, in). */
function biasTruth(w: Float64Array, b: Float64Array, inF: number, c: Float64Array, d: Float64Array, e: Float64Array, s: number): Float64Array {
  return Float64Array.from(b, (bo, o) => {
    let wc = 0;
    for (let i = 0; i < inF; i++) wc += w[o * inF + i] * c[i];
    return bo + s * (bo * d[o] + e[o] + wc);
  });
}

/** A bias-only GLoRA folder (config_A_B "none", config_C and config_D_E "vector") on `modules`, each (out, in). */
function biasOnlyFolder(modules: { key: string; out: number; inF: number }[], baseModel: string) {
  const paths = modules.map(({ key, out, inF }) => ({ key, c: vals(inF, 'F32'), d: vals(out, 'F32'), e: vals(out, 'F32'), out, inF }));
  const p = (key: string, rest: string) => `base_model.model.${key}.${rest}`;
  const tensors = paths.flatMap(({ key, c, d, e, out, inF }) => [
    t(p(key, 'glora_A.zeros'), 'F32', [out, inF], new Float64Array(out * inF)), t(p(key, 'glora_B.zeros'), 'F32', [out, inF], new Float64Array(out * inF)),
    t(p(key, 'glora_C.X'), 'F32', [inF, 1], c), t(p(key, 'glora_D.X'), 'F32', [out], d), t(p(key, 'glora_E.X'), 'F32', [out], e),
  ]);
  const config = {
    peft_type: 'GLORA', task_type: null, base_model_name_or_path: baseModel, peft_version: '0.20.0', r: 4, bias: 'none', inference_mode: true,
    target_modules: [...new Set(modules.map((m) => m.key.split('.').pop()))], config_A_B: 'none', config_C: 'vector', config_D_E: 'vector',
  };
  return { paths, files: peftFolder(config, tensors) };
}

/** The value of each e4m3fn / e5m2 code (finite codes only are drawn). */
function fp8Codes(n: number, dtype: 'F8_E4M3' | 'F8_E5M2'): Float64Array {
  return Float64Array.from({ length: n }, () => roundForDType((rand() * 2 - 1) * (dtype === 'F8_E4M3' ? 400 : 1000), dtype));
}

const q = 'model.layers.0.self_attn.q_proj';
const out = 8, inF = 6;

describe.each(['cpu', 'webgpu'])('GLoRA (PEFT) bias path on fp8 codes times scales, %s: W·C from code × scale', (name) => {
  it('block-wise fp8: weight_scale_inv (2 × 2 blocks of 4 × 3), quant_method "fp8"', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const codes = fp8Codes(out * inF, 'F8_E4M3'), scales = Float64Array.from([2 ** -9, 3 * 2 ** -10, 2 ** -8, 5 * 2 ** -12]), bias = vals(out, 'BF16');
    const base: FixtureTensor[] = [t(`${q}.weight`, 'F8_E4M3', [out, inF], codes), t(`${q}.weight_scale_inv`, 'F32', [2, 2], scales), t(`${q}.bias`, 'BF16', [out], bias)];
    const config = { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', quantization_config: { quant_method: 'fp8', activation_scheme: 'dynamic', fmt: 'e4m3', weight_block_size: [4, 3] } };
    const { paths, files } = biasOnlyFolder([{ key: q, out, inF }], 'Qwen/Qwen2.5-7B-Instruct');
    const { tensors } = await mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors(base), 'config.json': JSON.stringify(config) }, adapters: [{ files, weight: 0.5 }] });
    const w = Float64Array.from(codes, (x, j) => x * scales[Math.floor(Math.floor(j / inF) / 4) * 2 + Math.floor((j % inF) / 3)]);
    const { c, d, e } = paths[0];
    expectMerged(tensors.get(`${q}.bias`)!.values, biasTruth(w, bias, inF, c, d, e, 0.5), 'BF16', `${q}.bias`);
    expect(Array.from(tensors.get(`${q}.weight`)!.values)).toEqual(Array.from(codes));
  });

  it.for(['F8_E4M3', 'F8_E5M2'] as const)('Comfy-Org scaled fp8 (%s): scale_weight and the scaled_fp8 marker', async (dtype, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const codes = fp8Codes(out * inF, dtype), scale = 3 * 2 ** -11, bias = vals(out, 'BF16');
    const base: FixtureTensor[] = [
      t(`${q}.weight`, dtype, [out, inF], codes), t(`${q}.scale_weight`, 'F32', [], Float64Array.from([scale])), t(`${q}.bias`, 'BF16', [out], bias),
      { name: 'scaled_fp8', dtype, shape: [0], data: [] },
    ];
    const { paths, files } = biasOnlyFolder([{ key: q, out, inF }], 'Qwen/Qwen2.5-VL-7B-Instruct');
    const { tensors } = await mergeInMemory({ backend, base: { 'qwen_2.5_vl_7b_fp8_scaled.safetensors': buildSafetensors(base) }, adapters: [{ files, weight: -1 }] });
    const w = Float64Array.from(codes, (x) => x * scale);
    const { c, d, e } = paths[0];
    expectMerged(tensors.get(`${q}.bias`)!.values, biasTruth(w, bias, inF, c, d, e, -1), 'BF16', `${q}.bias`);
  });
});

/**
 * A GGUF converted from a ModelOpt NVFP4 checkpoint: attn_v NVFP4 with its `.scale` (weight_scale_2)
 * beside it, which llama.cpp multiplies the matmul's output by: W = dequantized blocks × scale.
 */
describe.each(['cpu', 'webgpu'])('GLoRA (PEFT) bias path on a GGUF weight with a kept .scale, %s', (name) => {
  it('b + s·(b ⊙ D + E + W·C), W the NVFP4 attn_v times blk.0.attn_v.scale', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const model = modelOptNvfp4Llama({ seed: 7 });
    const kv = (LLAMA.hidden / LLAMA.heads) * LLAMA.kvHeads, inF2 = LLAMA.hidden;
    const bias = Float64Array.from({ length: kv }, (_, i) => Math.fround(0.01 * ((i % 7) - 3)));
    const tensors = [...model.tensors].map(([n, x]) => ({ name: n, type: x.type, ne: [...x.shape].reverse(), data: x.data }));
    tensors.push({ name: 'blk.0.attn_v.bias', type: 'F32', ne: [kv], data: tensorData('F32', bias) });
    const { paths, files } = biasOnlyFolder([{ key: 'model.layers.0.self_attn.v_proj', out: kv, inF: inF2 }], 'meta-llama/Llama-3.2-1B');
    const { bytes } = await mergeFileInMemory({ backend, base: { 'tiny-llama-NVFP4.gguf': buildGguf({ metadata: model.metadata, tensors }) }, adapters: [{ files, weight: 0.5 }] });
    const merged = readGguf(bytes);
    const stored = model.tensors.get('blk.0.attn_v.weight')!;
    expect(stored.type).toBe('NVFP4');
    const s = model.scales.get('blk.0.attn_v.weight')![0];
    const { c, d, e } = paths[0];
    const want = biasTruth(stored.values.map((x) => x * s), bias, inF2, c, d, e, 0.5);
    const got = tensorValues('F32', merged.tensors.find((x) => x.name === 'blk.0.attn_v.bias')!.data);
    for (let o = 0; o < kv; o++) expect(Math.abs(got[o] - want[o]), `bias[${o}]`).toBeLessThanOrEqual(2 ** -23 * Math.max(Math.abs(want[o]), 2 ** -10));
  });
});

describe.each(['cpu', 'webgpu'])('GLoRA (PEFT) bias path on rows of a fused tensor, %s', (name) => {
  it('diffusers to_q, to_k, to_v onto BFL Flux double_blocks.0.img_attn.qkv (3h, h) and its bias: each W·C from its own rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { h } = FLUX;
    const baseTensors = fluxBflTensors(rand, 'BF16');
    const get = (key: string) => Float64Array.from(baseTensors.find((x) => x.name === key)!.data as ArrayLike<number>);
    const qkv = get('double_blocks.0.img_attn.qkv.weight'), bias = get('double_blocks.0.img_attn.qkv.bias');
    const parts = ['to_q', 'to_k', 'to_v'].map((p) => ({ key: `transformer_blocks.0.attn.${p}`, out: h, inF: h }));
    const { paths, files } = biasOnlyFolder(parts, 'black-forest-labs/FLUX.1-dev');
    const { tensors } = await mergeInMemory({ backend, base: { 'flux1-dev.safetensors': buildSafetensors(baseTensors) }, adapters: [{ files, weight: 0.75 }] });
    // Part k is rows [k·h, (k + 1)·h) of qkv and of its bias.
    const want = new Float64Array(3 * h);
    paths.forEach(({ c, d, e }, k) => want.set(biasTruth(qkv.subarray(k * h * h, (k + 1) * h * h), bias.subarray(k * h, (k + 1) * h), h, c, d, e, 0.75), k * h));
    expectMerged(tensors.get('double_blocks.0.img_attn.qkv.bias')!.values, want, 'BF16', 'qkv.bias');
    expect(Array.from(tensors.get('double_blocks.0.img_attn.qkv.weight')!.values)).toEqual(Array.from(qkv));
  });
});

describe('GLoRA (PEFT) bias path: a weight whose real values are not read whole is refused, one line', () => {
  it('a ComfyUI int8_tensorwise layer (comfy_quant), its codes read through a view', async () => {
    const json = Array.from(new TextEncoder().encode('{"format": "int8_tensorwise"}'));
    const base: FixtureTensor[] = [
      t(`${q}.weight`, 'I8', [out, inF], Float64Array.from({ length: out * inF }, (_, i) => (i * 37) % 255 - 127)), t(`${q}.weight_scale`, 'F32', [], Float64Array.from([2 ** -10])),
      { name: `${q}.comfy_quant`, dtype: 'U8', shape: [json.length], data: json }, t(`${q}.bias`, 'BF16', [out], vals(out, 'BF16')),
    ];
    const { files } = biasOnlyFolder([{ key: q, out, inF }], 'Qwen/Qwen2.5-VL-7B-Instruct');
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: { 'qwen_2.5_vl_7b_int8.safetensors': buildSafetensors(base) }, adapters: [{ files }] });
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(/q_proj": its trained GLoRA bias path \(b ⊙ D \+ E \+ W·C\) needs the real values of the ComfyUI int8_tensorwise \(comfy_quant\) weight model\.layers\.0\.self_attn\.q_proj\.weight, which are not read whole here; this is not supported; merge it into the unquantized model$/);
  });
});
