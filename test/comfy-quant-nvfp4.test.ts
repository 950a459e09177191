/**
 * LoRAs merged into ComfyUI `comfy_quant` nvfp4 layers and written back as nvfp4, as Comfy-Org
 * ships FLUX.2 nvfp4 checkpoints (the transformer under `model.diffusion_model.`): `<m>.weight` U8
 * (rows, cols/2), two e2m1 codes a byte, element 2k in the high nibble; `<m>.weight_scale`
 * F8_E4M3, one scale per 16 inputs of a row in cuBLAS' swizzled layout (zeros in the padding);
 * `<m>.weight_scale_2` F32 (); `<m>.comfy_quant` `{"format": "nvfp4"}`; some `<m>.input_scale`.
 *
 * Truth is written here: W as comfy_kitchen dequantizes it into float32, f32(e2m1(code) ×
 * f32(e4m3(block scale) × weight_scale_2)), code 8 −0; in float64 W' = W +
 * Σ weight · scale · B·A, then quantized again as ComfyUI's LoRA patch does (scale "recalculate",
 * comfy_kitchen's quantize_nvfp4, rounded to nearest even where ComfyUI rounds stochastically),
 * in float32 on w = f32(W'): s2 = f32(max |w| / 2688); per block of 16, b = e4m3(min(f32(f32(amax
 * / 6) / s2), 448)); t = f32(s2 · b); code = the e2m1 value nearest f32(w / t) clamped to ±6 (ties
 * to the even code), its sign kept; t = 0 gives codes 0. The layers are chosen so that the scale
 * tensor needs padding both ways (144 rows, 3 blocks a row), and one row gets no ΔW so that a
 * block of zeros and a block whose new scale rounds to 0 stay in it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { memoryInputFileSet, type MergeBackend } from '../src/index.js';
import { quantizeNvfp4Rows } from '../src/formats/comfy-nvfp4.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { FLUX2, flux2BflTensors, type Flux2Dims } from './helpers/dit-fixtures.js';
import { flux2StyleAndDetail, loraTensors, truthTerms, type LoraSpec, type WeightedAdapter } from './helpers/diffusion-fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';
import { trueMerge, type TruthTerm } from './helpers/merge-truth.js';
import { blockedOrder, comfyNvfp4Requantize, comfyNvfp4Value, e2m1Value, e4m3Byte, e4m3Value, unswizzled } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(4242);
const P = 'model.diffusion_model.';
// h = 48: qkv is 144 × 48 (rows not a multiple of 128, 3 blocks a row: the scales padded both ways).
const DIMS: Flux2Dims = { ...FLUX2, h: 48, head: 16 };
const { h } = DIMS;
const FILE = 'flux2_dev_nvfp4mixed.safetensors';
const QKV = `${P}double_blocks.0.img_attn.qkv`;
const NVFP4_LAYERS = [QKV, `${P}single_blocks.0.linear2`, `${P}double_blocks.0.img_mlp.0`, `${P}double_blocks.0.img_attn.proj`];
/** json.dumps as ComfyUI writes it. */
const NVFP4_CONFIG = Array.from(new TextEncoder().encode('{"format": "nvfp4"}'));
/** Row of qkv that no LoRA changes (its lora_B row is zeros): block 1 all zeros, block 2 tiny. */
const QUIET_ROW = 5;

// --- the base: FLUX.2 with four nvfp4 layers, the rest bf16 --------------------------------------

/** `zeroLayer`: a layer whose codes are all 0 (its weight zeros). */
function nvfp4Base(zeroLayer?: string): Uint8Array {
  const tensors: FixtureTensor[] = [];
  for (const t of flux2BflTensors(rand, 'BF16', DIMS, P)) {
    const m = t.name.slice(0, -'.weight'.length);
    if (!NVFP4_LAYERS.includes(m)) {
      tensors.push(t);
      continue;
    }
    const [rows, cols] = t.shape;
    const blocks = cols / 16;
    const codes = Array.from({ length: rows * cols }, () => (m === zeroLayer ? 0 : Math.floor(rand() * 16)));
    const scaleBytes = Array.from({ length: rows * blocks }, () => 0x28 + Math.floor(rand() * 0x30));
    if (m === QKV) {
      // A block of zeros, and one whose values are so small that its new scale rounds to 0.
      for (let c = 16; c < 32; c++) codes[QUIET_ROW * cols + c] = c % 2 ? 8 : 0;
      for (let c = 32; c < 48; c++) codes[QUIET_ROW * cols + c] = c % 2 ? 9 : 1;
      scaleBytes[QUIET_ROW * blocks + 2] = 0x01;
    }
    tensors.push({ name: t.name, dtype: 'U8', shape: [rows, cols / 2], data: Array.from({ length: rows * cols / 2 }, (_, k) => (codes[2 * k] << 4) | codes[2 * k + 1]) });
    const { order, shape } = blockedOrder(rows, blocks);
    tensors.push({ name: `${m}.weight_scale`, dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : scaleBytes[at])) });
    tensors.push({ name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.0005 + rand() * 0.0002)] });
    if (m.includes('single_blocks')) tensors.push({ name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.03)] });
    tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [NVFP4_CONFIG.length], data: NVFP4_CONFIG });
  }
  // The block scales are e4m3 bytes: stored as F8_E4M3 (written as U8 above to keep the bytes exact).
  return buildSafetensors(tensors.map((t) => (t.name.endsWith('.weight_scale') ? { ...t, dtype: 'F8_E4M3', data: Uint8Array.from(t.data as number[]) } : t)));
}
const BASE = nvfp4Base();

// --- the LoRAs: ai-toolkit's (PEFT form, scale 1) and musubi-tuner's (kohya form, α/r) ------------

const peft = (m: string, r: number, out: number, inF: number): LoraSpec => ({
  down: `diffusion_model.${m}.lora_A.weight`, up: `diffusion_model.${m}.lora_B.weight`, r, out, in: inF, lands: [{ key: `${P}${m}.weight` }], scale: 1,
});
const AI_TOOLKIT: LoraSpec[] = [peft('double_blocks.0.img_attn.qkv', 4, 3 * h, h), peft('double_blocks.0.img_mlp.0', 2, 6 * h, h), peft('double_stream_modulation_img.lin', 2, 6 * h, h)];
const MUSUBI: LoraSpec[] = [{
  down: 'lora_unet_single_blocks_0_linear2.lora_down.weight', up: 'lora_unet_single_blocks_0_linear2.lora_up.weight', r: 4, out: h, in: 4 * h,
  lands: [{ key: `${P}single_blocks.0.linear2.weight` }], scale: 8 / 4, extra: [{ name: 'lora_unet_single_blocks_0_linear2.alpha', dtype: 'F32', shape: [], data: [8] }],
}];
const aiToolkitTensors = loraTensors(rand, AI_TOOLKIT, 'BF16').map((t) => {
  if (t.name !== AI_TOOLKIT[0].up) return t;
  const data = Array.from(t.data as ArrayLike<number>);
  data.fill(0, QUIET_ROW * 4, QUIET_ROW * 4 + 4); // lora_B row QUIET_ROW: no ΔW there
  return { ...t, data };
});
const aiToolkit = buildSafetensors(aiToolkitTensors);
const musubi = buildSafetensors(loraTensors(rand, MUSUBI, 'BF16'), { ss_network_module: 'networks.lora_flux_2' });
const { adapters: ADAPTERS, terms: TERMS, termsOf } = flux2StyleAndDetail(aiToolkit, AI_TOOLKIT, musubi, MUSUBI);

// --- the truth ------------------------------------------------------------------------------------

/**
 * W as comfy_kitchen dequantizes it, f32(e2m1(code) × f32(e4m3(block scale) × weight_scale_2)), or
 * (`exact`) e2m1 × e4m3 × weight_scale_2 in float64; code c of a row in byte ⌊c/2⌋'s high nibble when c is even.
 */
function nvfp4Values(base: Map<string, DecodedTensor>, m: string, exact = false): { values: Float64Array; rows: number; cols: number } {
  const w = base.get(`${m}.weight`)!;
  const rows = w.shape[0], cols = w.shape[1] * 2;
  const blocks = unswizzled(base.get(`${m}.weight_scale`)!, rows, cols / 16);
  const s2 = base.get(`${m}.weight_scale_2`)!.values[0];
  const values = Float64Array.from({ length: rows * cols }, (_, i) => {
    const byte = w.bytes[i >> 1];
    const code = i % 2 === 0 ? byte >> 4 : byte & 0x0f, scale = blocks[r(i, cols) * (cols / 16) + Math.floor((i % cols) / 16)];
    return exact ? e2m1Value(code) * e4m3Value(scale) * s2 : comfyNvfp4Value(code, scale, s2);
  });
  return { values, rows, cols };
}
const r = (i: number, cols: number) => Math.floor(i / cols);

// --- merging --------------------------------------------------------------------------------------

const backends = mergeBackends({ cpu: 'both' });

/** The merged file's tensors and metadata, and the plan's notes. */
async function merge(base: Uint8Array, backend: MergeBackend, outDtype?: string, adapters = ADAPTERS) {
  let notes: string[] = [];
  const { bytes } = await mergeFileInMemory({ backend, base: { [FILE]: base }, adapters, ...(outDtype ? { outDtype } : {}), inspect: (p) => { notes = p.plan.notes; } });
  return { ...decodeSafetensors(bytes), notes };
}

/** The one line a merge is refused with (none: merged). */
async function refusal(base: Uint8Array, outDtype: string | undefined, adapters = ADAPTERS): Promise<string[]> {
  try {
    await mergeFileInMemory({ backend: backends['cpu (js)']!, base: { [FILE]: base }, adapters, ...(outDtype ? { outDtype } : {}) });
    return [];
  } catch (e) {
    return [(e as Error).message];
  }
}

const original = decodeSafetensors(BASE);
const MERGED = NVFP4_LAYERS.filter((m) => termsOf(`${m}.weight`).length > 0);
const truths = new Map(MERGED.map((m) => {
  const { values, rows, cols } = nvfp4Values(original.tensors, m);
  return [m, comfyNvfp4Requantize(trueMerge({ ...original.tensors.get(`${m}.weight`)!, shape: [rows, cols], values }, termsOf(`${m}.weight`)), rows, cols)];
}));

describe('the truth exercises what it should', () => {
  it('three nvfp4 layers merged, one not; codes saturated at ±6 (block scales rounded down), negative values rounded to −0, blocks whose scale is 0', () => {
    expect(MERGED).toEqual([QKV, `${P}single_blocks.0.linear2`, `${P}double_blocks.0.img_mlp.0`]);
    const all = [...truths.values()];
    expect(all.reduce((n, t) => n + t.saturated, 0)).toBeGreaterThan(0);
    expect(all.reduce((n, t) => n + t.negativeZeros, 0)).toBeGreaterThan(0);
    expect(truths.get(QKV)!.zeroScaleBlocks).toBe(2); // the block of zeros and the tiny one
    expect(original.tensors.get(`${QKV}.weight_scale`)!.shape).toEqual([256, 4]);
  });

  it('every nvfp4 layer holds values where comfy_kitchen\'s float32 order and the exact product differ', () => {
    for (const m of NVFP4_LAYERS) {
      const ours = nvfp4Values(original.tensors, m).values, exact = nvfp4Values(original.tensors, m, true).values;
      expect(ours.filter((x, i) => x !== Math.fround(exact[i])).length, m).toBeGreaterThan(0);
    }
  });
});

for (const backendName of ['cpu (js)', 'cpu (wasm)', 'webgpu']) {
  describe(`ComfyUI nvfp4 (comfy_quant) FLUX.2 written as nvfp4 on ${backendName}`, () => {
    it('merged nvfp4 weights quantized again as ComfyUI does (packed codes, swizzled block scales, weight_scale_2); comfy_quant and input_scale kept; the rest byte for byte', async () => {
      const merged = await merge(BASE, backends[backendName]!);
      expect(merged.notes.join('\n')).toMatch(/merged nvfp4 weights .* written as nvfp4 again with weight_scale_2 = max \|W'\| \/ \(448 × 6\)/);
      expect([...merged.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
      for (const m of MERGED) {
        const want = truths.get(m)!;
        const weight = merged.tensors.get(`${m}.weight`)!;
        const scale = merged.tensors.get(`${m}.weight_scale`)!;
        const s2 = merged.tensors.get(`${m}.weight_scale_2`)!;
        expect([weight.dtype, weight.shape], m).toEqual(['U8', original.tensors.get(`${m}.weight`)!.shape]);
        expect([scale.dtype, scale.shape], m).toEqual(['F8_E4M3', original.tensors.get(`${m}.weight_scale`)!.shape]);
        expect([s2.dtype, s2.shape, s2.values[0]], m).toEqual(['F32', [], want.s2]);
        const wrong = weight.bytes.findIndex((b, i) => b !== want.packed[i]);
        expect(wrong, `${m}.weight byte ${wrong}: ${weight.bytes[wrong]?.toString(16)} vs ${want.packed[wrong]?.toString(16)}`).toBe(-1);
        const wrongScale = scale.bytes.findIndex((b, i) => b !== want.scales[i]);
        expect(wrongScale, `${m}.weight_scale byte ${wrongScale}: ${scale.bytes[wrongScale]} vs ${want.scales[wrongScale]}`).toBe(-1);
      }
      for (const [key, t] of original.tensors) {
        if (MERGED.some((m) => key === `${m}.weight` || key === `${m}.weight_scale` || key === `${m}.weight_scale_2`)) continue;
        if (termsOf(key).length > 0) continue; // the bf16 modulation the LoRA changes
        expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
      }
    });
  });
}

describe('ComfyUI nvfp4: rounding, saturation and what is refused', () => {
  it('e2m1 codes round to nearest even (ties to the even code), saturate at 6, keep their sign (−0 is code 8); element 2k in the high nibble', () => {
    // weight_scale_2 1 and a block maximum of 6: the block scale is 1, so each code is its value's.
    const values = Float32Array.of(6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.25, -0.1, 0, -0, 5.5, 4.9, 0.5, -1);
    const scales = new Uint8Array(128 * 4);
    const packed = quantizeNvfp4Rows(values, 0, 1, 16, 1, scales);
    const codes = Array.from(packed).flatMap((b) => [b >> 4, b & 15]);
    expect(codes).toEqual([7, 0, 2, 2, 4, 4, 6, 6, 8, 8, 0, 8, 7, 6, 1, 10]);
    expect(scales[0]).toBe(e4m3Byte(1));
    // A block past 6 · 448 · weight_scale_2 (not reachable from the whole tensor's maximum, but the
    // scale saturates at 448 and the codes at ±6): codes ±6, the block scale 448.
    const big = new Float32Array(16).fill(-4000);
    big[1] = 4000;
    const bigCodes = quantizeNvfp4Rows(big, 0, 1, 16, 1, scales);
    expect(Array.from(bigCodes)).toEqual([0xf7, ...new Array(7).fill(0xff)]);
    expect(e4m3Value(scales[0])).toBe(448);
  });

  it('the block scale is f32(f32(amax / 6) / weight_scale_2), two float32 divisions; the codes are quotients by f32(weight_scale_2 × block scale)', () => {
    const scales = new Uint8Array(128 * 4);
    // f32(f32(m / 6) / s2) is 4.25 exactly, the tie between e4m3's 4 and 4.5: 4 (even). One
    // division, m / (6 · s2), would round to 4.2500005 and take 4.5.
    const s2 = Math.fround(1.1979761123657227), m = Math.fround(30.54839324951172);
    expect(Math.fround(Math.fround(m / 6) / s2)).toBe(4.25);
    expect(Math.fround(m / (6 * s2))).toBeGreaterThan(4.25);
    quantizeNvfp4Rows(Float32Array.of(m, ...new Array(15).fill(0)), 0, 1, 16, s2, scales);
    expect(e4m3Value(scales[0])).toBe(4);
    // Block scale 1.625 (its maximum 6 · 1.625 · t2); x / f32(t2 × 1.625) is 1.25 exactly, the tie
    // between e2m1's 1 and 1.5: code 2 (1, even). Divided by the exact product it would be
    // 1.2500001: code 3.
    const t2 = Math.fround(1.7799913883209229), x = Math.fround(3.615607738494873);
    const total = Math.fround(t2 * 1.625);
    expect(Math.fround(x / total)).toBe(1.25);
    expect(Math.fround(x / (t2 * 1.625))).toBeGreaterThan(1.25);
    const block = Float32Array.of(Math.fround(6 * total), x, ...new Array(14).fill(0));
    const codes = quantizeNvfp4Rows(block, 0, 1, 16, t2, scales);
    expect(e4m3Value(scales[0])).toBe(1.625);
    expect(codes[0]).toBe(0x72);
    // A quotient, not a product by the reciprocal: y / f32(u2 × 1.625) is 1.25 exactly (code 2);
    // y × f32(1 / that) would be 1.2500001 (code 3).
    const u2 = Math.fround(1.4204087257385254), y = Math.fround(2.8852052688598633);
    const divisor = Math.fround(u2 * 1.625);
    expect(Math.fround(y / divisor)).toBe(1.25);
    expect(Math.fround(y * Math.fround(1 / divisor))).toBeGreaterThan(1.25);
    expect(quantizeNvfp4Rows(Float32Array.of(Math.fround(6 * divisor), y, ...new Array(14).fill(0)), 0, 1, 16, u2, scales)[0]).toBe(0x72);
    expect(e4m3Value(scales[0])).toBe(1.625);
  });

  it('--dtype bf16 still writes every nvfp4 weight dequantized (code × block scale × weight_scale_2 + ΔW, rounded once)', async () => {
    const merged = await merge(BASE, backends['cpu (wasm)']!, 'bf16');
    expect([...merged.tensors.keys()].filter((k) => /\.(weight_scale|weight_scale_2|comfy_quant|input_scale)$/.test(k))).toEqual([]);
    for (const m of NVFP4_LAYERS) expect(merged.tensors.get(`${m}.weight`)!.dtype, m).toBe('BF16');
  });

  it('--dtype f32: a layer no LoRA changes is comfy_kitchen\'s float32 values bit for bit (code 8 −0); a merged one is W + ΔW rounded once', async () => {
    const merged = await merge(BASE, backends['cpu (wasm)']!, 'f32');
    const still = `${P}double_blocks.0.img_attn.proj`;
    const want = nvfp4Values(original.tensors, still).values;
    const got = merged.tensors.get(`${still}.weight`)!;
    expect(got.dtype).toBe('F32');
    const bits = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];
    const wrong = want.findIndex((x, i) => bits(x) !== bits(got.values[i]));
    expect(wrong, `value ${wrong}: ${got.values[wrong]} vs ${want[wrong]}`).toBe(-1);
    expect(want.some((x) => Object.is(x, -0))).toBe(true);
    for (const m of MERGED) {
      const { values, rows, cols } = nvfp4Values(original.tensors, m);
      const truth = trueMerge({ ...original.tensors.get(`${m}.weight`)!, shape: [rows, cols], values }, termsOf(`${m}.weight`));
      const out = merged.tensors.get(`${m}.weight`)!.values;
      const off = Array.from(truth).findIndex((x, i) => Math.fround(x) !== out[i]);
      expect(off, `${m} value ${off}: ${out[off]} vs ${Math.fround(truth[off])}`).toBe(-1);
    }
  });

  it('--dtype f8_e4m3 and f8_e5m2 on a file with nvfp4 layers: refused in one line naming the tensor', async () => {
    for (const dtype of ['f8_e4m3', 'f8_e5m2']) {
      const messages = await refusal(BASE, dtype);
      expect(messages, dtype).toEqual([`base: tensor "${NVFP4_LAYERS[0]}.weight" (comfy_quant format "nvfp4") keeps its codes and scales or is written dequantized: --dtype ${dtype} would convert its scale tensors (such as "${NVFP4_LAYERS[0]}.weight_scale_2") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`]);
    }
  });

  it('a merged nvfp4 weight that is all zeros (ComfyUI would write NaN scales): refused in one line naming it', async () => {
    // A weight of zero codes and a LoRA whose lora_B is zeros: W' is all zeros.
    const spec = peft('double_blocks.0.img_attn.proj', 2, h, h);
    const lora = buildSafetensors(loraTensors(seededRandom(7), [spec], 'BF16').map((t) => (t.name === spec.up ? { ...t, data: new Array(h * 2).fill(0) } : t)));
    const messages = await refusal(nvfp4Base(`${P}double_blocks.0.img_attn.proj`), undefined, [{ files: { 'zero.safetensors': lora }, weight: 1 }]);
    expect(messages).toEqual([expect.stringMatching(/tensor "model\.diffusion_model\.double_blocks\.0\.img_attn\.proj\.weight": its merged weight's largest magnitude is 0, .*merge with --dtype bf16/)]);
  });

  it("the page's plan: keeping the dtypes is allowed once a LoRA changes an nvfp4 layer; fp8 outputs are refused before the click", async () => {
    const summary = await summarizePlan(memoryInputFileSet({ [FILE]: BASE }, FILE),
      ADAPTERS.map((a) => ({ files: memoryInputFileSet(a.files, Object.keys(a.files)[0]), weight: a.weight })));
    const reason = `its comfy_quant format "nvfp4" weights (such as ${NVFP4_LAYERS[0]}.weight) keep their codes and scales or are written dequantized: leave the types as they are, or choose bf16, f16 or f32`;
    expect(summary.output.refused).toEqual({ f8_e4m3: reason, f8_e5m2: reason });
  });

  const temp = tempDirs();
  afterAll(temp.removeAll);
  it('the CLI: a LoRA on nvfp4 layers without --dtype writes them as nvfp4 (bytes as the truth); --dtype f8_e4m3 is refused in one line, nothing written', async () => {
    const dir = temp.make({ [FILE]: BASE, 'flux2_style_ai_toolkit.safetensors': aiToolkit });
    const out = join(dir, 'merged.safetensors');
    const run = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, 'flux2_style_ai_toolkit.safetensors'), '--weight', '0.75', '--out', out, '--backend', 'cpu']);
    expect(errorLines(run.stderr)).toEqual([]);
    expect(run.code).toBe(0);
    const written = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const onlyAiToolkit = TERMS.filter((t) => t.baseKey === `${QKV}.weight` && t.scale === 0.75);
    const { values, rows, cols } = nvfp4Values(original.tensors, QKV);
    const want = comfyNvfp4Requantize(trueMerge({ ...original.tensors.get(`${QKV}.weight`)!, shape: [rows, cols], values }, onlyAiToolkit), rows, cols);
    expect(written.get(`${QKV}.weight`)!.bytes).toEqual(want.packed);
    expect(written.get(`${QKV}.weight_scale`)!.bytes).toEqual(want.scales);
    expect(written.get(`${QKV}.weight_scale_2`)!.values[0]).toBe(want.s2);

    const refusedOut = join(dir, 'refused.safetensors');
    const refused = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, 'flux2_style_ai_toolkit.safetensors'), '--out', refusedOut, '--dtype', 'f8_e4m3', '--backend', 'cpu']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toEqual([expect.stringMatching(/qkv\.weight" \(comfy_quant format "nvfp4"\) keeps its codes and scales or is written dequantized: --dtype f8_e4m3 would convert its scale tensors/)]);
    expect(existsSync(refusedOut)).toBe(false);
  });
});
