/**
 * The rows of a fused tensor that an adapter's module does not reach keep the sign of W's zeros
 * where W' is written in another dtype or behind a real scale step, as the source tools leave them:
 * PEFT/diffusers merge into a slice of the tensor and leave the other rows as they are, and a cast
 * (`tensor.to(torch.bfloat16)`) keeps −0; ComfyUI dequantizes a scaled fp8 weight (code × scale,
 * −0 × s = −0), adds the LoRA to the module's slice alone, and quantizes again with
 * clamp(w · f32(1 / s), ±448).to(float8_e4m3fn), which keeps −0 as the code 0x80.
 *
 * The base is the BFL FLUX.1 single file (flux1-dev.safetensors naming) at a tiny hidden size; the
 * LoRA a diffusers-named module (transformer.single_transformer_blocks.0.attn.to_k), which lands
 * on rows [h, 2h) of single_blocks.0.linear1 alone. Rows outside it must be W itself (rounded once
 * to the output dtype, −0 kept); the merged rows are W + ΔW in float64 rounded once.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type FloatDType } from '../src/index.js';
import { buildSafetensors, decodeSafetensors, roundF8Saturating, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, type FluxDims, loraTensors, rowsAt, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { blockedOrder, comfyMxfp8Requantize, comfyRequantize, e4m3Value, e8m0Value, unswizzled } from './helpers/e4m3-by-hand.js';
import { trueMerge } from './helpers/merge-truth.js';

const rand = seededRandom(4242);
const { h } = FLUX;
const KEY = 'single_blocks.0.linear1.weight';
const SPECS: LoraSpec[] = [{
  down: 'transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight', up: 'transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight',
  r: 2, out: h, in: h, lands: [{ key: KEY, rows: rowsAt(h, h) }], scale: 1,
}];
const lora = buildSafetensors(loraTensors(rand, SPECS, 'BF16'));
/** The same module on FLUX.1 at hidden size 32 (rows [32, 64) of linear1). */
const SPECS_32: LoraSpec[] = [{ ...SPECS[0], out: 32, in: 32, lands: [{ key: KEY, rows: rowsAt(32, 32) }] }];
const lora32 = buildSafetensors(loraTensors(rand, SPECS_32, 'BF16'));
const reached = (row: number) => row >= h && row < 2 * h;

/** Every fourth value of each 2-D weight −0 (W holds many: pruned or quantized weights). */
const withNegativeZeros = (values: ArrayLike<number>) => Array.from(values, (x, i) => (i % 4 === 1 ? -0 : x));

/** FLUX in f32, or Comfy-Org's scaled fp8 (e4m3fn codes, a `scale_weight` F32 () each, the `scaled_fp8` marker). */
function base(kind: 'f32' | 'scaled-fp8'): Uint8Array {
  const tensors = fluxBflTensors(rand, 'F32').map((t): FixtureTensor => {
    if (t.shape.length < 2) return { ...t, dtype: 'BF16', data: (t.data as number[]).map((x) => roundForDType(x, 'BF16')) };
    const values = withNegativeZeros(t.data as ArrayLike<number>);
    return kind === 'f32' ? { ...t, data: values } : { ...t, dtype: 'F8_E4M3', data: values.map((x) => roundF8Saturating(x * 60, 'F8_E4M3')) };
  });
  if (kind === 'f32') return buildSafetensors(tensors);
  const scales = tensors.filter((t) => t.shape.length >= 2).map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [Math.fround(1 / 60)] }));
  return buildSafetensors([...tensors, ...scales, { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] }]);
}

/**
 * FLUX.1 at hidden size 32 with single_blocks.0.linear1 stored as ComfyUI's mxfp8 (comfy_quant
 * `{"format": "mxfp8"}`: F8_E4M3 codes, every fourth −0, and a U8 e8m0 exponent per 32 inputs in
 * cuBLAS' swizzled layout), the other weights bf16.
 */
function mxfp8Base(): { bytes: Uint8Array; real: Float64Array; rows: number; cols: number } {
  const dims: FluxDims = { ...FLUX, h: 32 };
  let real = new Float64Array(0), rows = 0, cols = 0;
  const tensors = fluxBflTensors(rand, 'BF16', dims).flatMap((t): FixtureTensor[] => {
    if (t.name !== KEY) return [t];
    [rows, cols] = t.shape;
    const codes = Array.from({ length: rows * cols }, (_, i) => (i % 4 === 1 ? -0 : e4m3Value(Math.floor(rand() * 0x7e) | (rand() < 0.5 ? 0x80 : 0))));
    const exponents = Array.from({ length: rows * cols / 32 }, () => 118 + Math.floor(rand() * 6));
    real = Float64Array.from(codes, (c, i) => c * e8m0Value(exponents[Math.floor(i / 32)]));
    const { order, shape } = blockedOrder(rows, cols / 32);
    const conf = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
    return [
      { name: KEY, dtype: 'F8_E4M3', shape: [rows, cols], data: codes },
      { name: KEY.replace(/\.weight$/, '.weight_scale'), dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) },
      { name: KEY.replace(/\.weight$/, '.comfy_quant'), dtype: 'U8', shape: [conf.length], data: conf },
    ];
  });
  return { bytes: buildSafetensors(tensors), real, rows, cols };
}

async function merge(bytes: Uint8Array, outDtype?: FloatDType, adapter = lora) {
  const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev.safetensors': bytes }, 'flux1-dev.safetensors'),
    [{ files: memoryInputFileSet({ 'detail.safetensors': adapter }, 'detail.safetensors') }]);
  expect(prepared.plan.problems).toEqual([]);
  const output = createBlobOutputTarget();
  const backend = new CpuBackend('test');
  try {
    await mergeModel({ prepared, output, backend, ...(outDtype ? { outDtype } : {}) });
  } finally {
    await prepared.close();
    backend.dispose();
  }
  return decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer())).tensors;
}

/** W' of linear1 in float64 (merge-truth.ts: B·A added to rows [h, 2h) alone), from W's real values. */
const truth = (w: DecodedTensor, real: Float64Array) => trueMerge({ ...w, values: real }, truthTerms(decodeSafetensors(lora).tensors, SPECS, 1));

/** Index of the first value that differs from `want` (the sign of a zero included), or -1. */
const firstDifference = (got: ArrayLike<number>, want: ArrayLike<number>) => Array.from(got).findIndex((x, i) => !Object.is(x, want[i]));
/** A value as the messages show it, −0 apart from +0. */
const shown = (x: number) => (Object.is(x, -0) ? '-0' : String(x));

describe('−0 in rows no module reaches', () => {
  it('f32 base, --dtype bf16: rows outside the module\'s slice are W cast to bf16, −0 kept; its rows W + ΔW rounded once', async () => {
    const bytes = base('f32');
    const w = decodeSafetensors(bytes).tensors.get(KEY)!;
    const cols = w.shape[1];
    const got = (await merge(bytes, 'BF16')).get(KEY)!;
    expect(got.dtype).toBe('BF16');
    const want = Array.from(truth(w, Float64Array.from(w.values)), (x) => roundForDType(x, 'BF16'));
    const negativeZeros = want.filter((x, i) => Object.is(x, -0) && !reached(Math.floor(i / cols))).length;
    expect(negativeZeros).toBeGreaterThan(10);
    const wrong = firstDifference(got.values, want);
    expect(wrong, `element ${wrong} (row ${Math.floor(wrong / cols)}): ${shown(got.values[wrong])}, expected ${shown(want[wrong])}`).toBe(-1);
  });

  it('scaled fp8, written as fp8 again (ComfyUI\'s recalculated scale_weight): −0 codes outside the slice stay 0x80', async () => {
    const bytes = base('scaled-fp8');
    const tensors = decodeSafetensors(bytes).tensors;
    const w = tensors.get(KEY)!;
    const cols = w.shape[1];
    const s = tensors.get(KEY.replace(/\.weight$/, '.scale_weight'))!.values[0];
    const merged = await merge(bytes);
    const expected = comfyRequantize(truth(w, Float64Array.from(w.values, (c) => c * s)));
    expect(merged.get(KEY.replace(/\.weight$/, '.scale_weight'))!.values[0]).toBe(expected.scale);
    const got = merged.get(KEY)!;
    expect(got.dtype).toBe('F8_E4M3');
    expect(Array.from(expected.codes).filter((x, i) => Object.is(x, -0) && !reached(Math.floor(i / cols))).length).toBeGreaterThan(10);
    const wrong = firstDifference(got.values, expected.codes);
    expect(wrong, `code ${wrong} (row ${Math.floor(wrong / cols)}): ${shown(got.values[wrong])}, expected ${shown(expected.codes[wrong])}`).toBe(-1);
  });

  it('scaled fp8, --dtype bf16: rows outside the slice are code × scale_weight in bf16, −0 kept', async () => {
    const bytes = base('scaled-fp8');
    const tensors = decodeSafetensors(bytes).tensors;
    const w = tensors.get(KEY)!;
    const cols = w.shape[1];
    const s = tensors.get(KEY.replace(/\.weight$/, '.scale_weight'))!.values[0];
    const got = (await merge(bytes, 'BF16')).get(KEY)!;
    const want = Array.from(truth(w, Float64Array.from(w.values, (c) => c * s)), (x) => roundForDType(x, 'BF16'));
    expect(want.filter((x, i) => Object.is(x, -0) && !reached(Math.floor(i / cols))).length).toBeGreaterThan(10);
    const wrong = firstDifference(got.values, want);
    expect(wrong, `element ${wrong} (row ${Math.floor(wrong / cols)}): ${shown(got.values[wrong])}, expected ${shown(want[wrong])}`).toBe(-1);
  });

  it('ComfyUI mxfp8, --dtype bf16 and written as mxfp8 again: rows outside the slice keep −0', async () => {
    const { bytes, real, rows, cols } = mxfp8Base();
    const w: DecodedTensor = { dtype: 'F32', shape: [rows, cols], values: real, bytes: new Uint8Array(0) };
    const merged = trueMerge(w, truthTerms(decodeSafetensors(lora32).tensors, SPECS_32, 1));
    const outside = (i: number) => Math.floor(i / cols) < 32 || Math.floor(i / cols) >= 64;

    const dequantized = (await merge(bytes, 'BF16', lora32)).get(KEY)!;
    const want = Array.from(merged, (x) => roundForDType(x, 'BF16'));
    expect(want.filter((x, i) => Object.is(x, -0) && outside(i)).length).toBeGreaterThan(10);
    let wrong = firstDifference(dequantized.values, want);
    expect(wrong, `element ${wrong} (row ${Math.floor(wrong / cols)}): ${shown(dequantized.values[wrong])}, expected ${shown(want[wrong])}`).toBe(-1);

    const requantized = await merge(bytes, undefined, lora32);
    const expected = comfyMxfp8Requantize(merged, rows, cols);
    expect(Array.from(unswizzled(requantized.get(KEY.replace(/\.weight$/, '.weight_scale'))!, rows, cols / 32))).toEqual(Array.from(expected.exponents));
    wrong = firstDifference(requantized.get(KEY)!.values, expected.codes);
    expect(wrong, `code ${wrong} (row ${Math.floor(wrong / cols)}): ${shown(requantized.get(KEY)!.values[wrong])}, expected ${shown(expected.codes[wrong])}`).toBe(-1);
  });
});
