/**
 * fp8 checkpoints as people share Flux: F8_E4M3 (or F8_E5M2) weights with bf16 biases and norms,
 * and Comfy-Org's "scaled fp8" files (a `scale_weight` per weight, the real weight being code ×
 * scale, and a zero-size `scaled_fp8` marker). LoRAs merge into them file to file on the CPU and
 * WebGPU against float64 truth; the output stays fp8 unless another dtype is asked for, which then
 * converts every float tensor, fp8 ones included. Scaled e4m3fn files are merged as current
 * ComfyUI patches them (it loads them as comfy_quant layers): each merged weight quantized again
 * with its scale recalculated (rounded to nearest even); e5m2 ones keep their scales, as ComfyUI
 * patched them before; with another dtype they are dequantized (code × scale) and lose them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type FloatDType, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, roundF8Saturating, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, loraTensors, rowsAt, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectMergedFile, trueMerge } from './helpers/merge-truth.js';
import { comfyRequantize } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(808);
const { h } = FLUX;
const kohya = (name: string, r: number, out: number, inF: number, key: string, alpha: number, rows?: LoraSpec['lands'][number]['rows']): LoraSpec => ({
  down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands: [{ key, rows }], scale: alpha / r,
  extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
});
const SPECS: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, 'double_blocks.0.img_attn.qkv.weight', 4),
  kohya('lora_unet_single_blocks_1_linear1', 2, 7 * h, h, 'single_blocks.1.linear1.weight', 2),
  kohya('lora_unet_double_blocks_1_txt_mlp_2', 2, h, 4 * h, 'double_blocks.1.txt_mlp.2.weight', 1),
];
// A diffusers-named module on the same base: one slice of linear1.
const SPECS_DIFFUSERS: LoraSpec[] = [{
  down: 'transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight', up: 'transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight',
  r: 2, out: h, in: h, lands: [{ key: 'single_blocks.0.linear1.weight', rows: rowsAt(h, h) }], scale: 1,
}];
const lora = buildSafetensors(loraTensors(rand, SPECS, 'BF16'), { ss_network_module: 'networks.lora_flux' });
const loraDiffusers = buildSafetensors(loraTensors(rand, SPECS_DIFFUSERS, 'BF16'));

/** Flux in fp8: 2-D weights in `dtype`, biases and norm scales bf16 (as the fp8 Flux files have them). */
function fp8Flux(dtype: 'F8_E4M3' | 'F8_E5M2', scaled: boolean, scaleWeight?: number): Uint8Array {
  const tensors = fluxBflTensors(rand, 'F32').map((t): FixtureTensor => {
    if (t.shape.length < 2) return { ...t, dtype: 'BF16', data: (t.data as number[]).map((x) => roundForDType(x, 'BF16')) };
    const values = Array.from(t.data as ArrayLike<number>, (x) => x * (scaled ? 60 : 1)); // scaled files store W / s
    return { ...t, dtype, data: values.map((x) => roundForDType(x, dtype)) };
  });
  if (!scaled) return buildSafetensors(tensors);
  const scales = tensors.filter((t) => t.shape.length >= 2).map((t): FixtureTensor => ({
    name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [scaleWeight ?? 1 / 60 + (t.name.length % 7) / 1000],
  }));
  return buildSafetensors([...tensors, ...scales, { name: 'scaled_fp8', dtype, shape: [0], data: [] }]);
}

const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const STYLE_AND_DETAIL = [
  { files: memoryInputFileSet({ 'style.safetensors': lora }, 'style.safetensors'), weight: 0.9 },
  { files: memoryInputFileSet({ 'detail.safetensors': loraDiffusers }, 'detail.safetensors'), weight: 1 },
];

async function merge(base: Uint8Array, kind: 'cpu' | 'webgpu', outDtype?: FloatDType, adapters = STYLE_AND_DETAIL) {
  const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': base }, 'flux1-dev-fp8.safetensors'), adapters);
  expect(prepared.plan.problems).toEqual([]);
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: backends[kind]!, outDtype });
  } finally {
    await prepared.close();
  }
  return decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
}

const terms = (scaleOf: (key: string) => number = () => 1) => [
  ...truthTerms(decodeSafetensors(lora).tensors, SPECS, 0.9),
  ...truthTerms(decodeSafetensors(loraDiffusers).tensors, SPECS_DIFFUSERS, 1),
].map((t) => ({ ...t, scale: t.scale / scaleOf(t.baseKey) }));

for (const kind of ['cpu', 'webgpu'] as const) {
  describe(`fp8 Flux checkpoints on ${kind}`, () => {
    for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
      it(`${dtype}: merged weights stay ${dtype}, the rest is copied byte for byte`, async () => {
        const base = fp8Flux(dtype, false);
        const merged = await merge(base, kind);
        expect(merged.tensors.get('double_blocks.0.img_attn.qkv.weight')!.dtype).toBe(dtype);
        expectMergedFile(decodeSafetensors(base).tensors, merged.tensors, terms());
      });
    }

    it('--dtype bf16 converts every float tensor, the fp8 ones included, and merges the rest exactly', async () => {
      const base = fp8Flux('F8_E4M3', false);
      const merged = await merge(base, kind, 'BF16');
      const original = decodeSafetensors(base).tensors;
      for (const [key, t] of merged.tensors) {
        expect(t.dtype, key).toBe('BF16');
        // fp8 and bf16 values are exactly bf16: untouched tensors keep their values.
        if (!terms().some((x) => x.baseKey === key)) expect(t.values, key).toEqual(original.get(key)!.values);
      }
      const asBf16 = new Map([...original].map(([k, t]) => [k, { ...t, dtype: 'BF16' as const }]));
      const touched = new Map([...merged.tensors].filter(([k]) => terms().some((x) => x.baseKey === k)));
      expectMergedFile(new Map([...asBf16].filter(([k]) => touched.has(k))), touched, terms());
    });

    it('scaled fp8 (e4m3fn): merged in the real domain, each merged weight quantized again with its scale_weight recalculated as current ComfyUI does; the rest byte for byte', async () => {
      const base = fp8Flux('F8_E4M3', true);
      const original = decodeSafetensors(base).tensors;
      const merged = await merge(base, kind);
      const touched = new Set(terms().map((t) => t.baseKey));
      expect(touched.size).toBe(4);
      for (const [key, t] of original) {
        const got = merged.tensors.get(key)!;
        expect([got.dtype, got.shape], key).toEqual([t.dtype, t.shape]);
        const weightKey = key.replace(/\.scale_weight$/, '.weight');
        if (touched.has(weightKey)) continue;
        expect(Buffer.from(got.bytes).equals(Buffer.from(t.bytes)), `${key} copied byte for byte`).toBe(true);
      }
      for (const key of touched) {
        const scaleKey = key.replace(/\.weight$/, '.scale_weight');
        const w = original.get(key)!;
        const real = trueMerge({ ...w, values: w.values.map((x) => x * original.get(scaleKey)!.values[0]) }, terms().filter((x) => x.baseKey === key));
        const want = comfyRequantize(real);
        expect(merged.tensors.get(scaleKey)!.values[0], scaleKey).toBe(want.scale);
        expect(want.scale, `${scaleKey}: the recalculated scale differs from the old one`).not.toBe(original.get(scaleKey)!.values[0]);
        const got = merged.tensors.get(key)!.values;
        const wrong = got.findIndex((x, i) => x !== want.codes[i]);
        expect(wrong, `${key}[${wrong}]: ${got[wrong]} × s vs ${want.codes[wrong]} × s`).toBe(-1);
      }
    });

    it('scaled fp8 (e5m2): merged in place by the same scale (code + ΔW / scale_weight, rounded once), scales and marker kept', async () => {
      const base = fp8Flux('F8_E5M2', true);
      const original = decodeSafetensors(base).tensors;
      const merged = await merge(base, kind);
      const scaleOf = (key: string) => original.get(key.replace(/\.weight$/, '.scale_weight'))!.values[0];
      // W' / s = code + ΔW / s, rounded once to e5m2.
      expectMergedFile(original, merged.tensors, terms(scaleOf));
      expect(merged.tensors.get('scaled_fp8')).toMatchObject({ dtype: 'F8_E5M2', shape: [0] });
    });

    // ComfyUI's older scaled fp8 layers copied a scale_weight into their float32 parameter, so one
    // stored as an fp8 code is read as its value (here e4m3fn's code 0x34, 0.75).
    it('scaled fp8 (e5m2) with a scale_weight stored as float8_e4m3fn: merged in place by that scale', async () => {
      const decoded = decodeSafetensors(fp8Flux('F8_E5M2', true));
      const scaleKey = 'double_blocks.0.img_attn.qkv.scale_weight';
      const tensors = [...decoded.tensors].map(([name, t]): FixtureTensor => (name === scaleKey
        ? { name, dtype: 'F8_E4M3', shape: [], data: [0.75] }
        : { name, dtype: t.dtype, shape: t.shape, data: t.bytes }));
      const base = buildSafetensors(tensors);
      const original = decodeSafetensors(base).tensors;
      expect(original.get(scaleKey)!.values[0]).toBe(0.75);
      const merged = await merge(base, kind);
      const scaleOf = (key: string) => original.get(key.replace(/\.weight$/, '.scale_weight'))!.values[0];
      expectMergedFile(original, merged.tensors, terms(scaleOf));
      expect(Buffer.from(merged.tensors.get(scaleKey)!.bytes)).toEqual(Buffer.from(original.get(scaleKey)!.bytes));
    });

    // A subnormal scale_weight takes ΔW / scale past float32 (1e-40: about 1e38 to 1e39 here); the
    // exact code + ΔW / scale is finite, and e5m2 saturates it at ±57344 (the merge was refused,
    // its values "too large for any float dtype": the fp8 rounding went through float32).
    it('scaled fp8 (e5m2) with a subnormal scale_weight: codes past float32 saturate at ±57344, the rest rounded once', async () => {
      const base = fp8Flux('F8_E5M2', true, 1e-40);
      const original = decodeSafetensors(base).tensors;
      const merged = await merge(base, kind);
      const scaleOf = (key: string) => original.get(key.replace(/\.weight$/, '.scale_weight'))!.values[0];
      let saturated = 0, pastF32 = 0;
      for (const key of new Set(terms().map((t) => t.baseKey))) {
        const exact = trueMerge(original.get(key)!, terms(scaleOf).filter((x) => x.baseKey === key));
        const got = merged.tensors.get(key)!.values;
        for (let i = 0; i < exact.length; i++) {
          expect(got[i], `${key}[${i}]: exact ${exact[i]}`).toBe(roundF8Saturating(exact[i], 'F8_E5M2'));
          if (Math.abs(got[i]) === 57344) saturated++;
          if (Math.abs(exact[i]) > 3.4028234663852886e38) pastF32++;
        }
      }
      expect(pastF32).toBeGreaterThan(0);
      expect(saturated).toBeGreaterThanOrEqual(pastF32);
    });

    it('scaled fp8 with --dtype bf16: every weight dequantized (code × scale_weight + ΔW, rounded once), scales and marker left out', async () => {
      const base = fp8Flux('F8_E4M3', true);
      const original = decodeSafetensors(base).tensors;
      const merged = await merge(base, kind, 'BF16');
      expect([...merged.tensors.keys()].filter((k) => k.endsWith('.scale_weight') || k === 'scaled_fp8')).toEqual([]);
      for (const [key, t] of merged.tensors) {
        expect(t.dtype, key).toBe('BF16');
        const scale = key.endsWith('.weight') ? original.get(key.replace(/\.weight$/, '.scale_weight'))?.values[0] ?? 1 : 1;
        const real = { ...original.get(key)!, values: original.get(key)!.values.map((x) => x * scale) };
        const want = trueMerge(real, terms().filter((x) => x.baseKey === key)).map((x) => roundForDType(x, 'BF16'));
        const mismatch = t.values.findIndex((x, i) => x !== want[i]);
        expect(mismatch, `${key}[${mismatch}]: ${t.values[mismatch]} vs ${want[mismatch]}`).toBe(-1);
      }
    });
  });
}

describe('scaled fp8: what is refused, and what the plan says', () => {
  async function planOf(base: Uint8Array, adapter: Uint8Array) {
    const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': base }, 'flux1-dev-fp8.safetensors'), [
      { files: memoryInputFileSet({ 'style.safetensors': adapter }, 'style.safetensors'), weight: 1 },
    ]);
    await prepared.close();
    return prepared.plan;
  }
  const qkv = SPECS[0];
  // LyCORIS DoRA: a norm per input column beside the LoRA factors.
  const doraLora = buildSafetensors([
    ...loraTensors(rand, [qkv], 'BF16'),
    { name: 'lora_unet_double_blocks_0_img_attn_qkv.dora_scale', dtype: 'F32', shape: [1, h], data: Array.from({ length: h }, (_, i) => 1 + i / h) },
  ]);

  it('the note says each merged weight gets its scale_weight recalculated, as current ComfyUI does', async () => {
    const plan = await planOf(fp8Flux('F8_E4M3', true), lora);
    expect(plan.problems).toEqual([]);
    expect(plan.notes.join('\n')).toMatch(/scaled fp8 weights \(float8_e4m3fn, scale_weight per tensor\).*scale_weight recalculated from their largest magnitude, as current ComfyUI's LoRA patch does/);
  });

  for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
    it(`DoRA on a scaled ${dtype} weight: refused naming the module and the weight`, async () => {
      const plan = await planOf(fp8Flux(dtype, true), doraLora);
      expect(plan.problems.map((p) => p.message)).toEqual([expect.stringMatching(/style\.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv": DoRA on the scaled fp8 weight double_blocks\.0\.img_attn\.qkv\.weight .*not supported/)]);
    });
  }

  it('a scale_weight beside a bf16 weight that a LoRA changes: refused naming the tensor (ComfyUI would read it as e4m3fn codes)', async () => {
    const base = decodeSafetensors(fp8Flux('F8_E4M3', true)).tensors;
    const key = 'double_blocks.0.img_attn.qkv.weight';
    const tensors = [...base].map(([name, t]): FixtureTensor => (name === key
      ? { name, dtype: 'BF16', shape: t.shape, data: Array.from(t.values, (x) => roundForDType(x / 60, 'BF16')) }
      : { name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    const plan = await planOf(buildSafetensors(tensors), lora);
    expect(plan.problems.map((p) => p.message)).toEqual([expect.stringMatching(/module "lora_unet_double_blocks_0_img_attn_qkv".*double_blocks\.0\.img_attn\.qkv\.weight is stored quantized: a scale_weight beside a BF16 weight of shape \[\d+, \d+\]/)]);
  });
});

describe('scaled fp8: fp8 output types', () => {
  // The e5m2 file with --dtype f8_e5m2 wrote every F32 scale_weight as an e5m2 code, exit 0; the
  // e4m3fn file with --dtype f8_e4m3 failed inside the writer.
  for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
    it(`a scaled ${dtype} file: f8_e4m3 and f8_e5m2 refused in one line naming a weight and its scale_weight, with or without --dtype-merged-only`, async () => {
      const base = fp8Flux(dtype, true);
      for (const outDtype of ['f8_e4m3', 'f8_e5m2']) {
        for (const dtypeMergedOnly of [false, true]) {
          const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': base }, 'flux1-dev-fp8.safetensors'), STYLE_AND_DETAIL);
          const refused = await mergeModel({ prepared, output: createBlobOutputTarget(), backend: backends.cpu!, outDtype, dtypeMergedOnly }).then(() => 'merged', (e: Error) => e.message);
          await prepared.close();
          expect(refused, `${outDtype}${dtypeMergedOnly ? ' merged-only' : ''}`).toBe(
            `flux1-dev-fp8.safetensors: tensor "img_in.weight" (scaled fp8) keeps its codes and scales or is written dequantized: --dtype ${outDtype} would convert its scale tensors (such as "img_in.scale_weight") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`,
          );
        }
      }
    });
  }
});

describe('scaled fp8 (e4m3fn): a full diff (LyCORIS `diff`) on a scaled weight', () => {
  it('is added in real values and the weight quantized again with its scale recalculated, on both backends', async () => {
    const key = 'double_blocks.1.txt_mlp.2.weight';
    const diff = Array.from({ length: h * 4 * h }, (_, i) => roundForDType(Math.sin(i * 0.37) * 0.05, 'BF16'));
    const adapter = buildSafetensors([{ name: 'lora_unet_double_blocks_1_txt_mlp_2.diff', dtype: 'BF16', shape: [h, 4 * h], data: diff }]);
    const base = fp8Flux('F8_E4M3', true);
    const original = decodeSafetensors(base).tensors;
    const scaleKey = key.replace(/\.weight$/, '.scale_weight');
    const real = original.get(key)!.values.map((code, i) => code * original.get(scaleKey)!.values[0] + 0.7 * diff[i]);
    const want = comfyRequantize(real);
    for (const kind of ['cpu', 'webgpu'] as const) {
      const merged = (await merge(base, kind, undefined, [{ files: memoryInputFileSet({ 'full.safetensors': adapter }, 'full.safetensors'), weight: 0.7 }])).tensors;
      expect(merged.get(scaleKey)!.values[0], `${kind}: ${scaleKey}`).toBe(want.scale);
      const got = merged.get(key)!.values;
      const wrong = got.findIndex((x, i) => x !== want.codes[i]);
      expect(wrong, `${kind}: ${key}[${wrong}]: ${got[wrong]} vs ${want.codes[wrong]}`).toBe(-1);
    }
  });
});
