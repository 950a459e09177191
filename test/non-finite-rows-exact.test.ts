/**
 * The NaN/Inf refusals of non-finite-rows-more, on the paths it leaves: fp8 codes times their scales
 * past float32 (a per-tensor fp8mixed or int8 weight_scale, an mxfp8 layer's block scales), counted
 * over the whole weight and named by its first and last row, whether the merge updates the weight or
 * only dequantizes it; an adapter's own tensors (a LoRA factor, a DoRA magnitude, an IA3 vector)
 * holding NaN or Inf, named with the count and the first and last row (element, for a vector); and
 * the adapter jobs (a factor resize meets, a model's own NaN/Inf or a difference past float32 that
 * extract meets). Each merge case puts the bad values in two different slabs (mergeModel's smallest,
 * 4096 bytes: 64 rows of 64 fp8 or int8 codes), so a message built from one slab or op names that
 * slab's values only.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { extractLora, resizeLora } from '../src/adapter-jobs.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { randomTensor } from './helpers/hf-folder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { blockedOrder, e4m3Value, e8m0Value } from './helpers/e4m3-by-hand.js';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { DIMS, H, llama, mergeError, P, poison, prepareLlama, QKV, qkvLora, SLAB_BYTES } from './helpers/non-finite-cases.js';

const rand = seededRandom(20261208);
const backends = mergeBackends({ cpu: 'default' });
const { h } = DIMS;

/** How many of `codes` times `scaleOf` (by flat index) are past float32 in float32 (NaN codes not), and their first and last row. */
function pastFloat32ByHand(codes: number[], cols: number, scaleOf: (i: number) => number): { count: number; first: number; last: number } {
  const past = codes.map((c, i) => i).filter((i) => !Number.isNaN(codes[i]) && !Number.isFinite(Math.fround(Math.fround(codes[i]) * Math.fround(scaleOf(i)))));
  return { count: past.length, first: Math.floor(past[0] / cols), last: Math.floor(past[past.length - 1] / cols) };
}

/** "N values past float32 in the base (… first in row F, last in row L)", the refusal's words, from a count made by hand. */
function pastFloat32Line(file: string, key: string, scaleKey: string, past: { count: number; first: number; last: number }, verb: 'updates' | 'dequantizes'): string {
  return `${file}: tensor "${key}" holds ${past.count} values past float32 in the base (its codes times its scales, ${scaleKey}; first in row ${past.first}, last in row ${past.last}), ` +
    `and the merge ${verb} it; the base file is broken: use an intact copy of the base`;
}

/** e4m3 codes (values) of a 3h × h weight, all below 1 in magnitude: |code| × a scale under 3.4e38 stays finite. */
function smallCodes(n: number): number[] {
  return Array.from({ length: n }, () => e4m3Value(Math.floor(rand() * 0x38) | (rand() < 0.5 ? 0x80 : 0)));
}

/**
 * Comfy-Org's fp8mixed Flux (comfy_quant `{"format": "float8_e4m3fn"}`): the qkv F8_E4M3 with a
 * per-tensor F32 weight_scale of 3e38 (its codes below 1 but 2 at rows 10 (twice) and 100, past
 * float32 there: slabs 0–63 and 64–127), the rest bf16.
 */
function fp8mixedFlux(): { bytes: Uint8Array; codes: number[] } {
  const config = Array.from(new TextEncoder().encode('{"format": "float8_e4m3fn"}'));
  let codes: number[] = [];
  const tensors = fluxBflTensors(rand, 'BF16', DIMS).flatMap((t): FixtureTensor[] => {
    if (t.name !== `${QKV}.weight`) return [t];
    codes = smallCodes(3 * h * h);
    for (const [i, v] of [[10 * h + 3, 2], [10 * h + 40, -2], [100 * h + 6, 2]]) codes[i] = v;
    return [
      { name: t.name, dtype: 'F8_E4M3', shape: t.shape, data: codes },
      { name: `${QKV}.weight_scale`, dtype: 'F32', shape: [], data: [3e38] },
      { name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
    ];
  });
  return { bytes: buildSafetensors(tensors), codes };
}

/**
 * ComfyUI's mxfp8 Flux (comfy_quant `{"format": "mxfp8"}`): the qkv F8_E4M3 (3h × h, two blocks of
 * 32 a row) with e8m0 exponents 118–123 in cuBLAS' swizzled layout, but 254 (2^127) for row 10's
 * first block and row 100's second, whose codes are below 1 but 448 at inputs 3 and 5 of row 10 and
 * −448 at input 40 of row 100: past float32 in slabs 0–63 and 64–127.
 */
function mxfp8Flux(): { bytes: Uint8Array; codes: number[]; exponents: number[] } {
  const config = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
  const blocks = h / 32;
  let codes: number[] = [], exponents: number[] = [];
  const tensors = fluxBflTensors(rand, 'BF16', DIMS).flatMap((t): FixtureTensor[] => {
    if (t.name !== `${QKV}.weight`) return [t];
    codes = smallCodes(3 * h * h);
    exponents = Array.from({ length: 3 * h * blocks }, () => 118 + Math.floor(rand() * 6));
    exponents[10 * blocks] = 254;
    exponents[100 * blocks + 1] = 254;
    for (const [i, v] of [[10 * h + 3, 448], [10 * h + 5, 448], [100 * h + 40, -448]]) codes[i] = v;
    const { order, shape } = blockedOrder(3 * h, blocks);
    return [
      { name: t.name, dtype: 'F8_E4M3', shape: t.shape, data: codes },
      { name: `${QKV}.weight_scale`, dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) },
      { name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
    ];
  });
  return { bytes: buildSafetensors(tensors), codes, exponents };
}

/**
 * ComfyUI's int8 Flux (comfy_quant `{"format": "int8_tensorwise"}`): the qkv I8 codes (−10…10, but
 * 127 at rows 12 and 99, −127 at row 99 again) with one F32 weight_scale of 3e37 (10 × 3e37 is
 * finite, 127 × 3e37 past float32: slabs 0–63 and 64–127 of one byte a code), the rest bf16.
 */
function int8Flux(): { bytes: Uint8Array; codes: number[] } {
  const config = Array.from(new TextEncoder().encode('{"format": "int8_tensorwise"}'));
  let codes: number[] = [];
  const tensors = fluxBflTensors(rand, 'BF16', DIMS).flatMap((t): FixtureTensor[] => {
    if (t.name !== `${QKV}.weight`) return [t];
    codes = Array.from({ length: 3 * h * h }, () => Math.floor(rand() * 21) - 10);
    for (const [i, v] of [[12 * h + 1, 127], [99 * h + 2, 127], [99 * h + 60, -127]]) codes[i] = v;
    return [
      { name: t.name, dtype: 'I8', shape: t.shape, data: codes },
      { name: `${QKV}.weight_scale`, dtype: 'F32', shape: [], data: [3e37] },
      { name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
    ];
  });
  return { bytes: buildSafetensors(tensors), codes };
}

/** A kohya LoRA on Flux's final_layer.linear (rank 2), bf16: a layer other than the qkv. */
function finalLayerLora(): Uint8Array {
  const name = 'lora_unet_final_layer_linear';
  const out = fluxBflTensors(rand, 'BF16', DIMS).find((t) => t.name === 'final_layer.linear.weight')!.shape;
  return buildSafetensors([
    randomTensor(`${name}.lora_down.weight`, [2, out[1]], 'BF16', rand, 0.1),
    randomTensor(`${name}.lora_up.weight`, [out[0], 2], 'BF16', rand, 0.1),
    { name: `${name}.alpha`, dtype: 'F32', shape: [], data: [2] },
  ], { ss_network_module: 'networks.lora_flux' });
}

/** The one error a merge of `base` (one file) and `adapter` (one kohya file) stops with, on `backend`. */
async function fluxMergeError(file: string, base: Uint8Array, adapter: Uint8Array, backend: MergeBackend, outDtype?: string): Promise<string> {
  const prepared = await prepareMerge(memoryInputFileSet({ [file]: base }, file), [{ files: memoryInputFileSet({ 'style.safetensors': adapter }, 'style.safetensors') }]);
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  let error: unknown;
  try {
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend, slabBytes: SLAB_BYTES, ...(outDtype ? { outDtype } : {}) });
  } catch (e) {
    error = e;
  } finally {
    await prepared.close();
  }
  expect(isMergeError(error) && error.code, String(error)).toBe('NON_FINITE');
  return (error as Error).message;
}

describe.each(['cpu', 'webgpu'])('%s: values past float32 and adapter tensors, over the whole tensor', (name) => {
  it(`an fp8mixed ${QKV} whose codes times its weight_scale pass float32 in rows 10 and 100, under a LoRA: the weight's count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes, codes } = fp8mixedFlux();
    const past = pastFloat32ByHand(codes, h, () => 3e38);
    expect(past).toEqual({ count: 3, first: 10, last: 100 });
    expect(await fluxMergeError('flux1-dev-fp8mixed.safetensors', bytes, qkvLora(rand), backend)).toBe(
      pastFloat32Line('flux1-dev-fp8mixed.safetensors/flux1-dev-fp8mixed.safetensors', `${QKV}.weight`, `${QKV}.weight_scale`, past, 'updates'),
    );
  });

  it(`the same fp8mixed ${QKV} written dequantized (--dtype bf16): the weight's count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes, codes } = fp8mixedFlux();
    const past = pastFloat32ByHand(codes, h, () => 3e38);
    expect(await fluxMergeError('flux1-dev-fp8mixed.safetensors', bytes, qkvLora(rand), backend, 'bf16')).toBe(
      pastFloat32Line('flux1-dev-fp8mixed.safetensors/flux1-dev-fp8mixed.safetensors', `${QKV}.weight`, `${QKV}.weight_scale`, past, 'updates'),
    );
  });

  it(`an int8_tensorwise ${QKV} kept int8 whose codes times its weight_scale pass float32 in rows 12 and 99, under a LoRA: the weight's count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes, codes } = int8Flux();
    const past = pastFloat32ByHand(codes, h, () => 3e37);
    expect(past).toEqual({ count: 3, first: 12, last: 99 });
    expect(await fluxMergeError('flux1-dev-int8.safetensors', bytes, qkvLora(rand), backend)).toBe(
      pastFloat32Line('flux1-dev-int8.safetensors/flux1-dev-int8.safetensors', `${QKV}.weight`, `${QKV}.weight_scale`, past, 'updates'),
    );
  });

  it(`an mxfp8 ${QKV} whose codes times its block scales pass float32 in rows 10 and 100, under a LoRA: the weight's count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes, codes, exponents } = mxfp8Flux();
    const past = pastFloat32ByHand(codes, h, (i) => e8m0Value(exponents[Math.floor(i / h) * (h / 32) + Math.floor((i % h) / 32)]));
    expect(past).toEqual({ count: 3, first: 10, last: 100 });
    expect(await fluxMergeError('flux1-dev-mxfp8.safetensors', bytes, qkvLora(rand), backend)).toBe(
      pastFloat32Line('flux1-dev-mxfp8.safetensors/flux1-dev-mxfp8.safetensors', `${QKV}.weight`, `${QKV}.weight_scale`, past, 'updates'),
    );
  });

  it(`the same mxfp8 ${QKV} dequantized (--dtype bf16) while a LoRA changes another layer: "dequantizes", the count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes, codes, exponents } = mxfp8Flux();
    const past = pastFloat32ByHand(codes, h, (i) => e8m0Value(exponents[Math.floor(i / h) * (h / 32) + Math.floor((i % h) / 32)]));
    expect(await fluxMergeError('flux1-dev-mxfp8.safetensors', bytes, finalLayerLora(), backend, 'bf16')).toBe(
      pastFloat32Line('flux1-dev-mxfp8.safetensors/flux1-dev-mxfp8.safetensors', `${QKV}.weight`, `${QKV}.weight_scale`, past, 'dequantizes'),
    );
  });

  it(`a kohya lora_up holding NaN in rows 10 and 100 of the ${QKV} (slabs of 16 rows): the factor, its count and both rows`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const lora = 'lora_unet_double_blocks_0_img_attn_qkv';
    const adapter = buildSafetensors([
      randomTensor(`${lora}.lora_down.weight`, [2, h], 'BF16', rand, 0.1),
      poison(randomTensor(`${lora}.lora_up.weight`, [3 * h, 2], 'BF16', rand, 0.1), [2 * 10, 2 * 10 + 1, 2 * 100 + 1], NaN),
      { name: `${lora}.alpha`, dtype: 'F32', shape: [], data: [2] },
    ], { ss_network_module: 'networks.lora_flux' });
    const base = buildSafetensors(fluxBflTensors(rand, 'F32', DIMS));
    expect(await fluxMergeError('flux1-dev.safetensors', base, adapter, backend)).toBe(
      `style.safetensors module "${lora}": factor ${lora}.lora_up.weight holds 3 NaN or Inf values (first in row 10, last in row 100); ` +
        `the adapter file is broken (flux1-dev.safetensors/flux1-dev.safetensors: tensor "${QKV}.weight")`,
    );
  });

  it('a PEFT DoRA lora_magnitude_vector holding Inf at elements 2 and 200 (slabs of 8 rows): the magnitude, its count and both elements', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = `${P}.model.layers.0.self_attn.q_proj`;
    const adapter = [
      randomTensor(`${q}.lora_A.weight`, [2, H], 'F32', rand),
      randomTensor(`${q}.lora_B.weight`, [H, 2], 'F32', rand),
      poison(randomTensor(`${q}.lora_magnitude_vector`, [H], 'F32', rand), [2, 200], Infinity),
    ];
    expect(await mergeError(await prepareLlama(llama(rand), { r: 2, target_modules: ['q_proj'], use_dora: true }, adapter), backend)).toBe(
      `adapter1 module "model.layers.0.self_attn.q_proj": DoRA magnitude ${q}.lora_magnitude_vector holds 2 NaN or Inf values (first in element 2, last in element 200); ` +
        'the adapter file is broken (base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight")',
    );
  });

  it('a PEFT IA3 ia3_l (out, 1) holding NaN at elements 5 and 250 (slabs of 8 rows): the vector, its count and both elements', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const q = `${P}.model.layers.0.self_attn.q_proj`;
    const adapter = [poison(randomTensor(`${q}.ia3_l`, [H, 1], 'F32', rand), [5, 250], NaN)];
    expect(await mergeError(await prepareLlama(llama(rand), { peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [] }, adapter), backend)).toBe(
      `adapter1 module "model.layers.0.self_attn.q_proj": factor ${q}.ia3_l holds 2 NaN or Inf values (first in element 5, last in element 250); ` +
        'the adapter file is broken (base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight")',
    );
  });
});

describe('the adapter jobs: a factor or a model tensor holding NaN or Inf, or a difference past float32, over the whole tensor', () => {
  /** The one error `job` stops with, as its message (NON_FINITE). */
  const jobError = async (job: Promise<unknown>): Promise<string> => {
    const error = await job.then(() => undefined, (e: unknown) => e);
    expect(isMergeError(error) && error.code, String(error)).toBe('NON_FINITE');
    return (error as Error).message;
  };
  const Q = 'model.layers.0.self_attn.q_proj';
  const model = (values: Float64Array) => buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [64, 64], data: values }]);
  const values = () => Float64Array.from({ length: 64 * 64 }, () => rand() - 0.5);

  it('resizeLora on a PEFT lora_B (16 × 4) holding NaN in rows 2 and 13: the tensor, its count and both rows', async () => {
    const b = Float64Array.from({ length: 16 * 4 }, () => rand() - 0.5);
    for (const i of [2 * 4 + 1, 13 * 4, 13 * 4 + 3]) b[i] = NaN;
    const adapter = memoryInputFileSet(peftFiles([{ name: Q, b: { rows: 16, cols: 4, data: b }, a: { rows: 4, cols: 16, data: Float64Array.from({ length: 64 }, () => rand() - 0.5) } }]), 'lora');
    expect(await jobError(resizeLora({ adapter, rule: { kind: 'rank', rank: 2 }, backend: 'cpu' }))).toBe(
      `lora: tensor "base_model.model.${Q}.lora_B.weight" holds 3 NaN or Inf values (first in row 2, last in row 13); the adapter file is broken`,
    );
  });

  it('extractLora from a tuned model whose weight holds NaN in rows 3 and 40: the tuned model, its count and both rows', async () => {
    const base = values();
    const tuned = base.map((x) => x + 0.01);
    tuned[3 * 64 + 9] = NaN;
    tuned[40 * 64] = Infinity;
    expect(await jobError(extractLora({ base: memoryInputFileSet({ 'model.safetensors': model(base) }, 'base'), tuned: memoryInputFileSet({ 'model.safetensors': model(tuned) }, 'tuned'), rank: 2, backend: 'cpu' }))).toBe(
      `tuned: tensor "${Q}.weight" holds 2 NaN or Inf values (first in row 3, last in row 40); the model file is broken`,
    );
  });

  it('extractLora where tuned − base passes float32 in rows 5 and 50 (±3e38 on each side): the count and both rows', async () => {
    const base = values();
    const tuned = base.map((x) => x + 0.01);
    for (const i of [5 * 64 + 1, 50 * 64 + 63]) [base[i], tuned[i]] = [-3e38, 3e38];
    // f32(3e38 − (−3e38)) is Inf, each side finite.
    expect(Math.fround(Math.fround(3e38) - Math.fround(-3e38))).toBe(Infinity);
    expect(await jobError(extractLora({ base: memoryInputFileSet({ 'model.safetensors': model(base) }, 'base'), tuned: memoryInputFileSet({ 'model.safetensors': model(tuned) }, 'tuned'), rank: 2, backend: 'cpu' }))).toBe(
      `tensor "${Q}.weight": the difference tuned − base is past float32 in 2 values (first in row 5, last in row 50); no f32 LoRA can hold it`,
    );
  });
});
