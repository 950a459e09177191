/**
 * LoRAs merged into ComfyUI's per-layer quantized checkpoints, as Comfy-Org ships FLUX.2 dev
 * ("flux2_dev_fp8mixed.safetensors": the transformer under `model.diffusion_model.`): each block's
 * Linear weight F8_E4M3 with `<m>.weight_scale` F32 () and `<m>.comfy_quant` U8 (the UTF-8 bytes of
 * `{"format": "float8_e4m3fn"}` as Python's json.dumps writes them), some with `<m>.input_scale`
 * F32 (); the embedders, modulations, final layer and norms stay bf16. The same configs may sit in
 * the header's `_quantization_metadata` instead.
 *
 * Truth is float64 written here: W = e4m3(code) × weight_scale, W' = W + Σ weight · scale · B·A;
 * the default output is W' quantized again as ComfyUI's LoRA patch does (ops.py set_weight:
 * scale "recalculate"), rounded to nearest even (ComfyUI rounds stochastically):
 *   w = f32(W'), s = f32(max |w| / 448), code = e4m3(clamp(f32(w · f32(1 / s)), ±448)).
 * `--dtype bf16`: W' rounded once to bf16, every fp8 weight dequantized, weight_scale, comfy_quant,
 * input_scale and the header entry left out. A mixed file adds float8_e5m2 layers (F8_E5M2 codes,
 * s = f32(max |w| / 57344)) and mxfp8 ones (F8_E4M3 codes, U8 e8m0 exponents per 32 inputs in
 * cuBLAS' swizzled layout; per block e = clamp(ceil(f32(log2(max(f32(amax / 448), 2^-127)))) + 127,
 * 0, 254), codes e4m3(w / 2^(e − 127)), a zero block e = 0), merged by a diffusers-form LoRA too.
 * nvfp4 layers (U8 e2m1 pairs, element 2k in the high nibble; F8_E4M3 block scales per 16 inputs,
 * swizzled; weight_scale_2 F32 ()) dequantized with --dtype: W = f32(e2m1 × f32(block scale ×
 * weight_scale_2)) as comfy_kitchen dequantizes it, + ΔW, rounded once (written as nvfp4 again without it: test/comfy-quant-nvfp4.test.ts). int8 and malformed configs are refused. Both backends; slabs small enough that the merged
 * weights stream in several.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { requantizeSlab } from '../src/pipeline/fp8-requantize.js';
import { summarizePlan } from '../demo/plan-summary.js';
import type { ScaledFp8Weight } from '../src/formats/scaled-fp8.js';
import { FLUX2_FP8MIXED_QUANTIZED } from './helpers/comfy-fp8mixed.js';
import { FLUX2, flux2BflTensors, type Flux2Dims } from './helpers/dit-fixtures.js';
import { flux2StyleAndDetail, loraTensors, truthTerms, type LoraSpec, type WeightedAdapter } from './helpers/diffusion-fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundF8Saturating, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { trueMerge, type TruthTerm } from './helpers/merge-truth.js';
import { blockedOrder, comfyMxfp8Requantize, comfyNvfp4Value, comfyRequantize, e2m1Value, e4m3Value, e5m2Value, e8m0Value, unswizzled } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(2718);
const P = 'model.diffusion_model.';
const DIMS: Flux2Dims = { ...FLUX2, h: 64, head: 16 };
const { h } = DIMS;
const FILE = 'flux2_dev_fp8mixed.safetensors';
/** The Linear layers Comfy-Org's fp8mixed FLUX.2 stores in fp8: the blocks' projections and MLPs. */
const QUANTIZED = FLUX2_FP8MIXED_QUANTIZED;
/** json.dumps({"format": …}) as ComfyUI writes it (a space after each colon and comma). */
const configBytes = (conf: Record<string, unknown>) => Array.from(new TextEncoder().encode(JSON.stringify(conf).replace(/":/g, '": ').replace(/,"/g, ', "')));

// --- random e4m3fn codes -------------------------------------------------------------------------

const randomCode = () => {
  let b: number;
  do b = Math.floor(rand() * 256); while ((b & 0x7f) === 0x7f);
  return b;
};

// --- the base -------------------------------------------------------------------------------------

interface BaseOptions {
  /**
   * The per-layer configs in the header's `_quantization_metadata` instead of comfy_quant tensors,
   * the layers named by their keys or without `model.diffusion_model.` (as ComfyUI's loader of a
   * lone diffusion model holds them).
   */
  inHeader?: 'keys' | 'bare';
  /** Layers stored in another comfy_quant format: layer key (without `.weight`) → format. */
  otherFormats?: Record<string, string>;
}

function fp8mixed(options: BaseOptions = {}): Uint8Array {
  const tensors: FixtureTensor[] = [];
  const layers: Record<string, Record<string, unknown>> = {};
  for (const t of flux2BflTensors(rand, 'BF16', DIMS, P)) {
    if (!QUANTIZED.test(t.name)) {
      tensors.push(t);
      continue;
    }
    const m = t.name.slice(0, -'.weight'.length);
    const [rows, cols] = t.shape;
    const format = options.otherFormats?.[m];
    if (format === 'nvfp4') {
      // Two e2m1 codes a byte (element 2k in the high nibble), positive e4m3 block scales per 16
      // inputs in cuBLAS' swizzled layout (zeros in the padding), weight_scale_2 F32 ().
      tensors.push({ name: t.name, dtype: 'U8', shape: [rows, cols / 2], data: Array.from({ length: rows * cols / 2 }, () => Math.floor(rand() * 256)) });
      const blockScales = Array.from({ length: rows * cols / 16 }, () => e4m3Value(0x20 + Math.floor(rand() * 0x50)));
      const { order, shape } = blockedOrder(rows, cols / 16);
      tensors.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape, data: Array.from(order, (at) => (at < 0 ? 0 : blockScales[at])) });
      tensors.push({ name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.0007 + rand() * 0.0001)] });
    } else if (format === 'mxfp8') {
      // e8m0 exponents per 32 inputs (every 7th block all zeros, exponent 0), stored in cuBLAS' swizzled layout.
      const exponents = Array.from({ length: rows * cols / 32 }, (_, b) => (b % 7 === 3 ? 0 : 116 + Math.floor(rand() * 8)));
      tensors.push({ name: t.name, dtype: 'F8_E4M3', shape: [rows, cols], data: Array.from({ length: rows * cols }, (_, i) => (exponents[Math.floor(i / 32)] === 0 ? 0 : e4m3Value(randomCode()))) });
      const { order, shape } = blockedOrder(rows, cols / 32);
      tensors.push({ name: `${m}.weight_scale`, dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) });
    } else {
      const dtype = format === 'float8_e5m2' ? 'F8_E5M2' : 'F8_E4M3';
      const codes = Array.from({ length: rows * cols }, (_, i) => (i % 53 === 0 ? 0 : e4m3Value(randomCode())));
      tensors.push({ name: t.name, dtype, shape: [rows, cols], data: dtype === 'F8_E4M3' ? codes : codes.map((x) => roundF8Saturating(x, 'F8_E5M2')) });
      tensors.push({ name: `${m}.weight_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0004 + rand() * 0.0004)] });
      // Comfy-Org's files give some layers a static activation scale.
      if (m.includes('single_blocks')) tensors.push({ name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.03)] });
    }
    const conf: Record<string, unknown> = { format: format ?? 'float8_e4m3fn' };
    if (m.endsWith('single_blocks.1.linear1')) conf.full_precision_matrix_mult = true;
    layers[options.inHeader === 'bare' ? m.slice(P.length) : m] = conf;
    if (!options.inHeader) tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [configBytes(conf).length], data: configBytes(conf) });
  }
  const metadata = options.inHeader ? { _quantization_metadata: JSON.stringify({ format_version: '1.0', layers }) } : undefined;
  return buildSafetensors(tensors, metadata);
}

// --- the LoRAs: ai-toolkit's (diffusion_model. + BFL names, PEFT form, scale 1) and musubi-tuner's (kohya form, α/r) ---

const peft = (m: string, r: number, out: number, inF: number): LoraSpec => ({
  down: `diffusion_model.${m}.lora_A.weight`, up: `diffusion_model.${m}.lora_B.weight`, r, out, in: inF, lands: [{ key: `${P}${m}.weight` }], scale: 1,
});
const AI_TOOLKIT: LoraSpec[] = [
  peft('double_blocks.0.img_attn.qkv', 4, 3 * h, h),
  peft('single_blocks.1.linear1', 2, 9 * h, h),
  peft('double_blocks.1.txt_mlp.2', 2, h, 3 * h),
  peft('double_stream_modulation_img.lin', 2, 6 * h, h), // bf16 in fp8mixed files
];
const MUSUBI: LoraSpec[] = [{
  down: 'lora_unet_single_blocks_0_linear2.lora_down.weight', up: 'lora_unet_single_blocks_0_linear2.lora_up.weight', r: 4, out: h, in: 4 * h,
  lands: [{ key: `${P}single_blocks.0.linear2.weight` }], scale: 8 / 4, extra: [{ name: 'lora_unet_single_blocks_0_linear2.alpha', dtype: 'F32', shape: [], data: [8] }],
}];
const aiToolkit = buildSafetensors(loraTensors(rand, AI_TOOLKIT, 'BF16'));
const musubi = buildSafetensors(loraTensors(rand, MUSUBI, 'BF16'), { ss_network_module: 'networks.lora_flux_2' });
const { adapters: ADAPTERS, terms: TERMS, termsOf } = flux2StyleAndDetail(aiToolkit, AI_TOOLKIT, musubi, MUSUBI);
const MERGED_FP8 = [...new Set(TERMS.map((t) => t.baseKey))].filter((k) => QUANTIZED.test(k));

/** The row-major e8m0 exponents of an mxfp8 weight_scale. */
const mxfp8Exponents = (scale: DecodedTensor, rows: number, cols: number) => unswizzled(scale, rows, cols / 32);

/**
 * W' = fp8(code) × weight_scale + ΔW, in float64 (the codes e4m3fn or e5m2, as the weight's dtype
 * says; an mxfp8 weight, its weight_scale U8, × 2^(e − 127) of its block).
 */
function truth(base: Map<string, DecodedTensor>, key: string, terms = termsOf(key)): Float64Array {
  const w = base.get(key)!;
  const scale = base.get(key.replace(/\.weight$/, '.weight_scale'))!;
  if (w.dtype === 'U8') return trueMerge({ ...w, shape: [w.shape[0], w.shape[1] * 2], values: nvfp4Values(base, key) }, terms);
  if (scale.dtype === 'U8') {
    const [rows, cols] = w.shape;
    const grid = mxfp8Exponents(scale, rows, cols);
    return trueMerge({ ...w, values: Float64Array.from(w.bytes, (b, i) => e4m3Value(b) * e8m0Value(grid[Math.floor(i / 32)])) }, terms);
  }
  const decode = w.dtype === 'F8_E5M2' ? e5m2Value : e4m3Value;
  return trueMerge({ ...w, values: Float64Array.from(w.bytes, (b) => decode(b) * scale.values[0]) }, terms);
}

/**
 * An nvfp4 weight's real values as comfy_kitchen dequantizes them: W[r][c] = f32(e2m1(code) ×
 * f32(e4m3(block scale) × weight_scale_2)), code c of a row in byte ⌊c/2⌋'s high nibble when c is
 * even, the scales unswizzled by cuBLAS' order.
 */
function nvfp4Values(base: Map<string, DecodedTensor>, key: string): Float64Array {
  const w = base.get(key)!;
  const rows = w.shape[0], cols = w.shape[1] * 2;
  const blocks = unswizzled(base.get(key.replace(/\.weight$/, '.weight_scale'))!, rows, cols / 16);
  const global = base.get(key.replace(/\.weight$/, '.weight_scale_2'))!.values[0];
  return Float64Array.from({ length: rows * cols }, (_, i) => {
    const byte = w.bytes[i >> 1];
    return comfyNvfp4Value(i % 2 === 0 ? byte >> 4 : byte & 0x0f, blocks[Math.floor(i / 16)], global);
  });
}

// --- merging --------------------------------------------------------------------------------------

const backends = mergeBackends({ cpu: 'both' });

async function merge(base: Uint8Array, backend: MergeBackend, outDtype?: string, adapters = ADAPTERS) {
  const prepared = await prepareMerge(memoryInputFileSet({ [FILE]: base }, FILE),
    adapters.map((a) => ({ files: memoryInputFileSet(a.files, Object.keys(a.files)[0]), weight: a.weight })));
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend, slabBytes: 4096, ...(outDtype ? { outDtype } : {}) });
    return { ...decodeSafetensors(new Uint8Array(await output.files()[0].blob.arrayBuffer())), notes: prepared.plan.notes };
  } finally {
    await prepared.close();
  }
}

async function refusal(base: Uint8Array, outDtype?: string, adapters = ADAPTERS): Promise<string[]> {
  let prepared;
  try {
    prepared = await prepareMerge(memoryInputFileSet({ [FILE]: base }, FILE),
      adapters.map((a) => ({ files: memoryInputFileSet(a.files, Object.keys(a.files)[0]), weight: a.weight })));
  } catch (e) {
    return [(e as Error).message];
  }
  try {
    if (prepared.plan.problems.length) return prepared.plan.problems.map((p) => p.message);
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend: backends['cpu (js)']!, ...(outDtype ? { outDtype } : {}) });
    return [];
  } catch (e) {
    return [(e as Error).message];
  } finally {
    await prepared.close();
  }
}

for (const backendName of ['cpu (js)', 'cpu (wasm)', 'webgpu']) {
  describe(`Comfy-Org fp8mixed FLUX.2 on ${backendName}`, () => {
    for (const inHeader of [undefined, 'keys', 'bare'] as const) {
      const where = inHeader ? `configs in the header's _quantization_metadata (${inHeader === 'bare' ? 'names without model.diffusion_model.' : 'the keys\' names'})` : 'comfy_quant tensors';
      const base = fp8mixed({ inHeader });
      const original = decodeSafetensors(base);

      it(`${where}: merged fp8 weights quantized again with weight_scale recalculated as ComfyUI does; the rest byte for byte`, async () => {
        const merged = await merge(base, backends[backendName]!);
        expect(merged.notes.join('\n')).toMatch(/ComfyUI float8_e4m3fn weights .*recalculated/);
        expect([...merged.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
        expect(merged.metadata._quantization_metadata).toBe(original.metadata._quantization_metadata);
        let clipped = 0;
        for (const key of MERGED_FP8) {
          const real = truth(original.tensors, key);
          const want = comfyRequantize(real);
          const w = merged.tensors.get(key)!;
          const s = merged.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!;
          expect([w.dtype, w.shape, s.dtype, s.shape]).toEqual(['F8_E4M3', original.tensors.get(key)!.shape, 'F32', []]);
          expect(s.values[0], `${key} weight_scale`).toBe(want.scale);
          const wrong = Array.from(w.bytes).findIndex((b, i) => e4m3Value(b) !== want.codes[i]);
          expect(wrong, `${key}[${wrong}]: ${e4m3Value(w.bytes[wrong])} × s vs ${want.codes[wrong]} × s`).toBe(-1);
          const old = original.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!.values[0];
          clipped += real.filter((x) => Math.abs(x) > 448 * old).length;
        }
        // Under their old scales these merged weights would have clipped: the scale had to be recalculated.
        expect(clipped).toBeGreaterThan(0);
        // The bf16 modulation the LoRA changes: W' rounded once.
        const mod = `${P}double_stream_modulation_img.lin.weight`;
        const wantMod = trueMerge(original.tensors.get(mod)!, termsOf(mod)).map((x) => roundForDType(x, 'BF16'));
        expect(merged.tensors.get(mod)!.values.findIndex((x, i) => x !== wantMod[i])).toBe(-1);
        // Everything else, comfy_quant and input_scale included, is written as it was.
        const changed = new Set([...MERGED_FP8, ...MERGED_FP8.map((k) => k.replace(/\.weight$/, '.weight_scale')), mod]);
        for (const [key, t] of original.tensors) {
          if (!changed.has(key)) expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
        }
        if (!inHeader) expect(new TextDecoder().decode(merged.tensors.get(`${P}single_blocks.1.linear1.comfy_quant`)!.bytes)).toBe('{"format": "float8_e4m3fn", "full_precision_matrix_mult": true}');
      });

      it(`${where}, --dtype bf16: every fp8 weight dequantized (code × weight_scale + ΔW, rounded once); weight_scale, comfy_quant, input_scale and the header entry left out`, async () => {
        const merged = await merge(base, backends[backendName]!, 'bf16');
        expect([...merged.tensors.keys()].filter((k) => /\.(weight_scale|comfy_quant|input_scale)$/.test(k))).toEqual([]);
        expect(merged.metadata._quantization_metadata).toBeUndefined();
        for (const [key, t] of merged.tensors) {
          expect(t.dtype, key).toBe('BF16');
          const o = original.tensors.get(key)!;
          const want = QUANTIZED.test(key) ? truth(original.tensors, key) : trueMerge(o, termsOf(key));
          const rounded = want.map((x) => roundForDType(x, 'BF16'));
          const wrong = t.values.findIndex((x, i) => x !== rounded[i]);
          expect(wrong, `${key}[${wrong}]: ${t.values[wrong]} vs ${rounded[wrong]}`).toBe(-1);
        }
      });
    }
  });
}

// --- float8_e5m2 layers (TensorCoreFP8E5M2Layout: e5m2 codes, one weight_scale) and mxfp8 ones
// (TensorCoreMXFP8Layout: e4m3fn codes, U8 e8m0 scales per 32 inputs, swizzled) beside e4m3fn ones --

/** The layers a mixed file stores in the other formats; the remaining fp8 layers stay float8_e4m3fn. */
const MIXED: Record<string, string> = {
  [`${P}double_blocks.0.img_attn.qkv`]: 'mxfp8', [`${P}single_blocks.0.linear2`]: 'float8_e5m2',
  [`${P}single_blocks.1.linear2`]: 'mxfp8', [`${P}double_blocks.1.txt_attn.proj`]: 'float8_e5m2',
};
/** diffusers' train_dreambooth_lora_flux2.py: `transformer.` + diffusers names, r 4, α 8 in `lora_adapter_metadata`. */
const DIFFUSERS: LoraSpec[] = [
  { down: 'transformer.single_transformer_blocks.1.attn.to_out.lora_A.weight', up: 'transformer.single_transformer_blocks.1.attn.to_out.lora_B.weight', r: 4, out: h, in: 4 * h, lands: [{ key: `${P}single_blocks.1.linear2.weight` }], scale: 2 },
  { down: 'transformer.transformer_blocks.1.attn.to_add_out.lora_A.weight', up: 'transformer.transformer_blocks.1.attn.to_add_out.lora_B.weight', r: 4, out: h, in: h, lands: [{ key: `${P}double_blocks.1.txt_attn.proj.weight` }], scale: 2 },
];
const diffusers = buildSafetensors(loraTensors(rand, DIFFUSERS, 'BF16'), {
  format: 'pt', lora_adapter_metadata: JSON.stringify({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.peft_type': 'LORA', 'transformer.use_dora': false }),
});
const WITH_DIFFUSERS: WeightedAdapter[] = [...ADAPTERS, { files: { 'flux2_diffusers_lora.safetensors': diffusers }, weight: 0.5 }];
const E5M2_TERMS: TruthTerm[] = [...TERMS, ...truthTerms(decodeSafetensors(diffusers).tensors, DIFFUSERS, 0.5)];
const e5m2TermsOf = (key: string) => E5M2_TERMS.filter((t) => t.baseKey === key);

for (const backendName of ['cpu (js)', 'cpu (wasm)', 'webgpu']) {
  describe(`Comfy-Org FLUX.2 with float8_e5m2 and mxfp8 layers on ${backendName}`, () => {
    for (const inHeader of [undefined, 'keys'] as const) {
      const where = inHeader ? 'configs in _quantization_metadata' : 'comfy_quant tensors';
      const base = fp8mixed({ inHeader, otherFormats: MIXED });
      const original = decodeSafetensors(base);

      it(`${where}: merged e5m2 weights quantized again as e5m2 with weight_scale = f32(amax / 57344), mxfp8 ones with new e8m0 block scales, beside e4m3fn ones; the rest byte for byte`, async () => {
        const merged = await merge(base, backends[backendName]!, undefined, WITH_DIFFUSERS);
        expect(merged.notes.join('\n')).toMatch(/ComfyUI float8_e4m3fn and float8_e5m2 and mxfp8 weights .*recalculated/);
        const changed = [...new Set(E5M2_TERMS.map((t) => t.baseKey))].filter((k) => QUANTIZED.test(k));
        expect(changed.filter((k) => MIXED[k.slice(0, -'.weight'.length)])).toHaveLength(4);
        for (const key of changed) {
          if (MIXED[key.slice(0, -'.weight'.length)] === 'mxfp8') {
            const [rows, cols] = original.tensors.get(key)!.shape;
            const want = comfyMxfp8Requantize(truth(original.tensors, key, e5m2TermsOf(key)), rows, cols);
            const w = merged.tensors.get(key)!;
            const s = merged.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!;
            const { order, shape } = blockedOrder(rows, cols / 32);
            expect([w.dtype, w.shape, s.dtype, s.shape], key).toEqual(['F8_E4M3', [rows, cols], 'U8', shape]);
            expect(Array.from(s.bytes), `${key} weight_scale`).toEqual(Array.from(order, (at) => (at < 0 ? 0 : want.exponents[at])));
            const wrong = Array.from(w.bytes).findIndex((b, i) => e4m3Value(b) !== want.codes[i]);
            expect(wrong, `${key}[${wrong}]: ${e4m3Value(w.bytes[wrong])} vs ${want.codes[wrong]}`).toBe(-1);
            // The merge moved some blocks' exponents: their scales were recalculated, not kept.
            expect(Array.from(mxfp8Exponents(s, rows, cols)).some((e, b) => e !== mxfp8Exponents(original.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!, rows, cols)[b])).toBe(true);
            continue;
          }
          const codes = original.tensors.get(key)!.dtype as 'F8_E4M3' | 'F8_E5M2';
          const want = comfyRequantize(truth(original.tensors, key, e5m2TermsOf(key)), 'F32', codes);
          const w = merged.tensors.get(key)!;
          const s = merged.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!;
          expect([w.dtype, w.shape, s.dtype, s.shape], key).toEqual([codes, original.tensors.get(key)!.shape, 'F32', []]);
          expect(s.values[0], `${key} weight_scale`).toBe(want.scale);
          const decode = codes === 'F8_E5M2' ? e5m2Value : e4m3Value;
          const wrong = Array.from(w.bytes).findIndex((b, i) => decode(b) !== want.codes[i]);
          expect(wrong, `${key}[${wrong}]: ${decode(w.bytes[wrong])} × s vs ${want.codes[wrong]} × s`).toBe(-1);
        }
        const rewritten = new Set([...changed, ...changed.map((k) => k.replace(/\.weight$/, '.weight_scale')), `${P}double_stream_modulation_img.lin.weight`]);
        for (const [key, t] of original.tensors) if (!rewritten.has(key)) expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
        expect(merged.metadata._quantization_metadata).toBe(original.metadata._quantization_metadata);
      });

      it(`${where}, --dtype bf16: e5m2, mxfp8 and e4m3fn weights dequantized (code × scale + ΔW, rounded once), their quantization tensors left out`, async () => {
        const merged = await merge(base, backends[backendName]!, 'bf16', WITH_DIFFUSERS);
        expect([...merged.tensors.keys()].filter((k) => /\.(weight_scale|comfy_quant|input_scale)$/.test(k))).toEqual([]);
        expect(merged.metadata._quantization_metadata).toBeUndefined();
        for (const [key, t] of merged.tensors) {
          expect(t.dtype, key).toBe('BF16');
          const want = QUANTIZED.test(key) ? truth(original.tensors, key, e5m2TermsOf(key)) : trueMerge(original.tensors.get(key)!, e5m2TermsOf(key));
          const rounded = want.map((x) => roundForDType(x, 'BF16'));
          const wrong = t.values.findIndex((x, i) => x !== rounded[i]);
          expect(wrong, `${key}[${wrong}]: ${t.values[wrong]} vs ${rounded[wrong]}`).toBe(-1);
        }
      });
    }
  });
}

// ComfyUI nvfp4 layers: two merged (qkv by ai-toolkit's LoRA, linear2 by musubi's) and one not (proj).
const NVFP4_LAYERS = ['double_blocks.0.img_attn.qkv', 'single_blocks.0.linear2', 'double_blocks.0.img_attn.proj'].map((m) => P + m);
const nvfp4Base = fp8mixed({ otherFormats: Object.fromEntries(NVFP4_LAYERS.map((m) => [m, 'nvfp4'])) });
for (const backendName of ['cpu (js)', 'cpu (wasm)', 'webgpu']) {
  describe(`ComfyUI nvfp4 (comfy_quant) on ${backendName}`, () => {
    const original = decodeSafetensors(nvfp4Base);
    it('--dtype bf16: nvfp4 weights (merged or not) are code × block scale × weight_scale_2 + ΔW rounded once; their quantization tensors left out', async () => {
      const merged = await merge(nvfp4Base, backends[backendName]!, 'bf16');
      expect(merged.notes.join('\n')).toMatch(/merged nvfp4 weights .* written as nvfp4 again/);
      expect([...merged.tensors.keys()].filter((k) => /\.(weight_scale|weight_scale_2|comfy_quant|input_scale)$/.test(k))).toEqual([]);
      expect(merged.metadata._quantization_metadata).toBeUndefined();
      for (const m of NVFP4_LAYERS) {
        const key = `${m}.weight`;
        const t = merged.tensors.get(key)!;
        expect([t.dtype, t.shape], key).toEqual(['BF16', [original.tensors.get(key)!.shape[0], original.tensors.get(key)!.shape[1] * 2]]);
      }
      expect(NVFP4_LAYERS.filter((m) => termsOf(`${m}.weight`).length > 0)).toHaveLength(2);
      for (const [key, t] of merged.tensors) {
        expect(t.dtype, key).toBe('BF16');
        const want = QUANTIZED.test(key) ? truth(original.tensors, key) : trueMerge(original.tensors.get(key)!, termsOf(key));
        const rounded = want.map((x) => roundForDType(x, 'BF16'));
        const wrong = t.values.findIndex((x, i) => x !== rounded[i]);
        expect(wrong, `${key}[${wrong}]: ${t.values[wrong]} vs ${rounded[wrong]}`).toBe(-1);
      }
    });
  });
}

describe('ComfyUI float8_e5m2 and mxfp8 (comfy_quant): what is refused', () => {
  const QKV = `${P}double_blocks.0.img_attn.qkv`;
  const e5m2Base = () => decodeSafetensors(fp8mixed({ otherFormats: { [QKV]: 'float8_e5m2' } })).tensors;
  const mxfp8Base = () => decodeSafetensors(fp8mixed({ otherFormats: { [QKV]: 'mxfp8' } })).tensors;
  // Swizzled byte 17 is row 1's block 1 (a tile's row r at (r mod 32)·16 + ⌊r/32⌋·4, block j at j mod 4 beside it).
  const nanScale = (t: DecodedTensor): FixtureTensor => ({ name: `${QKV}.weight_scale`, dtype: 'U8', shape: t.shape, data: Array.from(t.bytes, (b, i) => (i === 17 ? 255 : b)) });
  const rebuilt = (tensors: Map<string, DecodedTensor>, key: string, replace: (t: DecodedTensor) => FixtureTensor | undefined) => buildSafetensors([...tensors].flatMap(([name, t]) => {
    const out = name === key ? replace(t) : { name, dtype: t.dtype, shape: t.shape, data: t.bytes };
    return out ? [out] : [];
  }));
  const onQkv: WeightedAdapter[] = [{ files: { 'qkv.safetensors': buildSafetensors(loraTensors(rand, [peft('double_blocks.0.img_attn.qkv', 2, 3 * h, h)], 'BF16')) }, weight: 1 }];
  const dora: WeightedAdapter[] = [{
    files: {
      'qkv_dora.safetensors': buildSafetensors([
        ...loraTensors(rand, [{ down: 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', up: 'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', r: 2, out: 3 * h, in: h, lands: [], scale: 1 }], 'BF16'),
        { name: 'lora_unet_double_blocks_0_img_attn_qkv.dora_scale', dtype: 'F32', shape: [1, h], data: Array.from({ length: h }, (_, i) => 1 + i / h) },
      ]),
    },
    weight: 1,
  }];
  const cases: [string, () => Uint8Array, WeightedAdapter[], RegExp][] = [
    ['e4m3fn codes marked float8_e5m2', () => rebuilt(e5m2Base(), `${QKV}.weight`, (t) => ({ name: `${QKV}.weight`, dtype: 'F8_E4M3', shape: t.shape, data: t.bytes })), onQkv,
      /qkv\.weight \(comfy_quant format "float8_e5m2"\) is F8_E4M3; ComfyUI stores float8_e5m2 weights as F8_E5M2/],
    ['a weight_scale per row', () => rebuilt(e5m2Base(), `${QKV}.weight_scale`, () => ({ name: `${QKV}.weight_scale`, dtype: 'F32', shape: [3 * h], data: Array.from({ length: 3 * h }, () => 0.001) })), onQkv,
      /qkv\.weight \(comfy_quant format "float8_e5m2"\): its scale .*qkv\.weight_scale has shape \[192\] \(F32\); float8_e5m2 needs one F32 scale per weight/],
    ['no weight_scale', () => rebuilt(e5m2Base(), `${QKV}.weight_scale`, () => undefined), onQkv, /"float8_e5m2"\): its scale .*qkv\.weight_scale is missing/],
    ['an infinite weight_scale', () => rebuilt(e5m2Base(), `${QKV}.weight_scale`, () => ({ name: `${QKV}.weight_scale`, dtype: 'F32', shape: [], data: [Infinity] })), onQkv,
      /"float8_e5m2"\): its scale .*qkv\.weight_scale is Infinity; a scale must be finite/],
    ['DoRA on a float8_e5m2 weight', () => buildSafetensors([...e5m2Base()].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.bytes }))), dora,
      /qkv_dora\.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv": DoRA on the ComfyUI fp8 \(comfy_quant\) weight .*qkv\.weight .*not supported/],
    ['an mxfp8 weight_scale stored unswizzled, one row per weight row', () => rebuilt(mxfp8Base(), `${QKV}.weight_scale`, () => ({ name: `${QKV}.weight_scale`, dtype: 'U8', shape: [3 * h, h / 32], data: Array.from({ length: 3 * h * h / 32 }, () => 120) })), onQkv,
      /qkv\.weight \(comfy_quant format "mxfp8", .*\): its scale .*qkv\.weight_scale is U8 \[192, 2\]; mxfp8 needs U8 e8m0 block scales of shape \[256, 4\]/],
    ['an mxfp8 weight_scale stored as F32', () => rebuilt(mxfp8Base(), `${QKV}.weight_scale`, (t) => ({ name: `${QKV}.weight_scale`, dtype: 'F32', shape: t.shape, data: Array.from(t.bytes, () => 1) })), onQkv,
      /qkv\.weight_scale is F32 \[256, 4\]; mxfp8 needs U8/],
    ['an mxfp8 weight that is not F8_E4M3', () => rebuilt(mxfp8Base(), `${QKV}.weight`, (t) => ({ name: `${QKV}.weight`, dtype: 'F8_E5M2', shape: t.shape, data: t.bytes })), onQkv,
      /qkv\.weight \(comfy_quant format "mxfp8", .*\) is F8_E5M2 \[192, 64\]; ComfyUI stores mxfp8 weights as F8_E4M3/],
    ['an e8m0 scale of 255 (NaN) in an mxfp8 layer a LoRA changes', () => rebuilt(mxfp8Base(), `${QKV}.weight_scale`, nanScale), onQkv,
      /tensor "model\.diffusion_model\.double_blocks\.0\.img_attn\.qkv\.weight_scale" holds 1 NaN scale \(e8m0 255; row 1\); the base file is broken: use an intact copy of the base$/],
    // 448 × 2^(254 − 127) is past float32's largest value: no weight ComfyUI could hold.
    ['an e8m0 scale of 254 above a code of 448 in an mxfp8 layer a LoRA changes', () => {
      const tensors = mxfp8Base();
      const weight = tensors.get(`${QKV}.weight`)!;
      const { order } = blockedOrder(3 * h, h / 32);
      const codes = Uint8Array.from(weight.bytes, (b, i) => (i === 0 ? 0x7e : b)); // 448
      const withCode = new Map(tensors).set(`${QKV}.weight`, { ...weight, bytes: codes });
      return rebuilt(withCode, `${QKV}.weight_scale`, (t) => ({ name: `${QKV}.weight_scale`, dtype: 'U8', shape: t.shape, data: Array.from(t.bytes, (b, i) => (order[i] === 0 ? 254 : b)) }));
    }, onQkv,
      /tensor "model\.diffusion_model\.double_blocks\.0\.img_attn\.qkv\.weight" holds \d+ values? past float32 in the base \(its codes times its scales, model\.diffusion_model\.double_blocks\.0\.img_attn\.qkv\.weight_scale; row 0\), and the merge updates it; the base file is broken/],
    ['DoRA on an mxfp8 weight', () => buildSafetensors([...mxfp8Base()].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.bytes }))), dora,
      /module "lora_unet_double_blocks_0_img_attn_qkv": DoRA on the ComfyUI fp8 \(comfy_quant\) weight .*qkv\.weight .*not supported/],
  ];
  for (const [what, base, adapters, message] of cases) {
    it(`${what}: refused in one line naming the tensor`, async () => {
      const messages = await refusal(base(), undefined, adapters);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toMatch(message);
      expect(messages[0]).not.toContain('\n');
    });
  }

  const temp = tempDirs();
  afterAll(temp.removeAll);
  it('the CLI: e4m3fn codes marked float8_e5m2, DoRA on a float8_e5m2 layer, an unswizzled mxfp8 scale and a NaN e8m0 scale are refused in one line each, nothing written', async () => {
    for (const [, base, adapters, message] of [cases[0], cases[4], cases[5], cases[8]]) {
      const [adapterName, adapterBytes] = Object.entries(adapters[0].files)[0];
      const dir = temp.make({ [FILE]: base(), [adapterName]: adapterBytes });
      const out = join(dir, 'merged.safetensors');
      const run = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, adapterName), '--out', out, '--backend', 'cpu']);
      expect(run.code).not.toBe(0);
      expect(errorLines(run.stderr)).toEqual([expect.stringMatching(message)]);
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe('ComfyUI fp8 (comfy_quant): what is refused', () => {
  const onQkv: WeightedAdapter[] = [{ files: { 'qkv.safetensors': buildSafetensors(loraTensors(rand, [peft('double_blocks.0.img_attn.qkv', 2, 3 * h, h)], 'BF16')) }, weight: 1 }];
  const onModulation: WeightedAdapter[] = [{ files: { 'mod.safetensors': buildSafetensors(loraTensors(rand, [peft('double_stream_modulation_img.lin', 2, 6 * h, h)], 'BF16')) }, weight: 1 }];
  const QKV = `${P}double_blocks.0.img_attn.qkv`;

  it('a LoRA on an nvfp4 layer without --dtype merges (written as nvfp4 again); merged elsewhere, its tensors are copied byte for byte; --dtype f8_e4m3 refused', async () => {
    const base = fp8mixed({ otherFormats: { [QKV]: 'nvfp4' } });
    expect(await refusal(base, undefined, onQkv)).toEqual([]);
    const original = decodeSafetensors(base).tensors;
    const merged = await merge(base, backends['cpu (wasm)']!, undefined, onModulation);
    const nvfp4Keys = [...original.keys()].filter((k) => k.startsWith(`${QKV}.`));
    expect(nvfp4Keys.sort()).toEqual(['comfy_quant', 'weight', 'weight_scale', 'weight_scale_2'].map((s) => `${QKV}.${s}`));
    for (const key of nvfp4Keys) expect(merged.tensors.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
    expect(await refusal(base, 'f8_e4m3', onModulation)).toEqual([expect.stringMatching(/qkv\.weight" \(comfy_quant format "nvfp4"\) keeps its codes and scales or is written dequantized: --dtype f8_e4m3 would convert its scale tensors \(such as "[^"]+qkv\.weight_scale_2"\) as if they were weights/)]);
  });

  it("the page's plan refuses before the click what the merge refuses: an fp8 output for a file with nvfp4 layers, whether or not a LoRA changes one", async () => {
    const base = fp8mixed({ otherFormats: { [QKV]: 'nvfp4' } });
    const refusedOn = async (adapters: WeightedAdapter[]) => (await summarizePlan(memoryInputFileSet({ [FILE]: base }, FILE),
      adapters.map((a) => ({ files: memoryInputFileSet(a.files, Object.keys(a.files)[0]), weight: a.weight })))).output.refused;
    const reason = `its comfy_quant format "nvfp4" weights (such as ${QKV}.weight) keep their codes and scales or are written dequantized: leave the types as they are, or choose bf16, f16 or f32`;
    expect(await refusedOn(onQkv)).toEqual({ f8_e4m3: reason, f8_e5m2: reason });
    expect(await refusedOn(onModulation)).toEqual({ f8_e4m3: reason, f8_e5m2: reason });
  });

  it("the page's plan measures ‖ΔW‖ / ‖W‖ against the real weight, not its codes: an e4m3fn layer (code × weight_scale) and an nvfp4 one (through its view)", async () => {
    const [[adapterName, adapterBytes]] = Object.entries(onQkv[0].files);
    const [term] = truthTerms(decodeSafetensors(adapterBytes).tensors, [peft('double_blocks.0.img_attn.qkv', 2, 3 * h, h)], 1);
    // ‖s·B·A‖_F in float64.
    let updateSquares = 0;
    for (let o = 0; o < 3 * h; o++) for (let i = 0; i < h; i++) {
      let sum = 0;
      for (let k = 0; k < 2; k++) sum += term.b.values[o * 2 + k] * term.a.values[k * h + i];
      updateSquares += (term.scale * sum) ** 2;
    }
    const norm = (values: ArrayLike<number>) => Math.sqrt(Array.from(values).reduce((a, v) => a + v * v, 0));
    for (const format of ['float8_e4m3fn', 'nvfp4']) {
      const base = fp8mixed({ otherFormats: { [QKV]: format } });
      const tensors = decodeSafetensors(base).tensors;
      const w = tensors.get(`${QKV}.weight`)!;
      const real = format === 'nvfp4' ? nvfp4Values(tensors, `${QKV}.weight`) : Float64Array.from(w.bytes, (b) => e4m3Value(b) * tensors.get(`${QKV}.weight_scale`)!.values[0]);
      const summary = await summarizePlan(memoryInputFileSet({ [FILE]: base }, FILE), [{ files: memoryInputFileSet({ [adapterName]: adapterBytes }, adapterName), weight: 1 }]);
      const measured = summary.magnitudes.find((m) => m.target === `${QKV}.weight`)!;
      expect(measured.ratio / (Math.sqrt(updateSquares) / norm(real)), format).toBeCloseTo(1, 5);
    }
  });

  const nvfp4Tensors = () => decodeSafetensors(fp8mixed({ otherFormats: { [QKV]: 'nvfp4' } })).tensors;
  const replaced = (key: string, replace: (t: DecodedTensor) => FixtureTensor | undefined) => buildSafetensors([...nvfp4Tensors()].flatMap(([name, t]) => {
    const out = name === key ? replace(t) : { name, dtype: t.dtype, shape: t.shape, data: t.bytes };
    return out ? [out] : [];
  }));
  const malformedNvfp4: [string, () => Uint8Array, RegExp][] = [
    ['a weight_scale stored unswizzled, one row per weight row', () => replaced(`${QKV}.weight_scale`, () => ({ name: `${QKV}.weight_scale`, dtype: 'F8_E4M3', shape: [3 * h, h / 16], data: Array.from({ length: 3 * h * h / 16 }, () => 1) })),
      /qkv\.weight \(comfy_quant format "nvfp4", .*\): its scale .*qkv\.weight_scale is F8_E4M3 \[192, 4\]; nvfp4 needs F8_E4M3 block scales of shape \[256, 4\]/],
    ['a weight_scale stored as U8', () => replaced(`${QKV}.weight_scale`, (t) => ({ name: `${QKV}.weight_scale`, dtype: 'U8', shape: t.shape, data: t.bytes })),
      /qkv\.weight_scale is U8 \[256, 4\]; nvfp4 needs F8_E4M3/],
    ['no weight_scale_2', () => replaced(`${QKV}.weight_scale_2`, () => undefined), /"nvfp4", .*\): its scale .*qkv\.weight_scale_2 is missing/],
    ['a weight_scale_2 per row', () => replaced(`${QKV}.weight_scale_2`, () => ({ name: `${QKV}.weight_scale_2`, dtype: 'F32', shape: [3 * h], data: Array.from({ length: 3 * h }, () => 0.001) })),
      /qkv\.weight_scale_2 is F32 \[192\]; nvfp4 needs one F32 scale per weight/],
    ['an infinite weight_scale_2', () => replaced(`${QKV}.weight_scale_2`, () => ({ name: `${QKV}.weight_scale_2`, dtype: 'F32', shape: [], data: [Infinity] })),
      /tensor ".*qkv\.weight_scale_2" holds the scale Infinity/],
    ['a NaN block scale (e4m3 0x7f) for row 0, inputs 0–15', () => replaced(`${QKV}.weight_scale`, (t) => ({ name: `${QKV}.weight_scale`, dtype: 'F8_E4M3', shape: t.shape, data: Uint8Array.from(t.bytes, (b, i) => (i === 0 ? 0x7f : b)) })),
      /tensor ".*qkv\.weight_scale" holds 1 NaN scale \(row 0\); the base file is broken: use an intact copy of the base$/],
    ['an nvfp4 weight stored as F8_E4M3 (rows, cols)', () => replaced(`${QKV}.weight`, () => ({ name: `${QKV}.weight`, dtype: 'F8_E4M3', shape: [3 * h, h], data: new Array(3 * h * h).fill(0) })),
      /qkv\.weight \(comfy_quant format "nvfp4", .*\) is F8_E4M3 \[192, 64\]; ComfyUI stores nvfp4 weights as U8/],
  ];
  for (const [what, base, message] of malformedNvfp4) {
    it(`nvfp4, ${what}: refused in one line naming the tensor`, async () => {
      const messages = await refusal(base(), 'bf16', onModulation);
      expect(messages).toEqual([expect.stringMatching(message)]);
      expect(messages[0]).not.toContain('\n');
    });
  }

  for (const format of ['int8']) {
    it(`a LoRA on a ${format} layer: refused naming the tensor and the format; merged elsewhere, its tensors are copied byte for byte`, async () => {
      const base = fp8mixed({ otherFormats: { [QKV]: format } });
      const messages = await refusal(base, undefined, onQkv);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toContain(`${QKV}.weight`);
      expect(messages[0]).toContain(`"${format}"`);
      expect(messages[0]).not.toContain('\n');

      const original = decodeSafetensors(base).tensors;
      const merged = await merge(base, backends['cpu (wasm)']!, undefined, onModulation);
      for (const key of [...original.keys()].filter((k) => k.startsWith(`${QKV}.`))) expect(merged.tensors.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);

      // Dequantizing the model would need every layer's format: refused, naming it.
      const dequantize = await refusal(base, 'bf16', onModulation);
      expect(dequantize).toHaveLength(1);
      expect(dequantize[0]).toMatch(new RegExp(`${QKV}\\.weight" cannot be dequantized: its comfy_quant format is "${format}"`));
    });
  }

  it('a file whose every quantized layer is nvfp4: merged elsewhere, its codes and scales are copied byte for byte; --dtype f8_e4m3 refused', async () => {
    const layers = flux2BflTensors(seededRandom(1), 'BF16', DIMS, P).map((t) => t.name).filter((n) => QUANTIZED.test(n)).map((n) => n.slice(0, -'.weight'.length));
    const base = fp8mixed({ otherFormats: Object.fromEntries(layers.map((m) => [m, 'nvfp4'])) });
    const original = decodeSafetensors(base).tensors;
    const merged = await merge(base, backends['cpu (wasm)']!, undefined, onModulation);
    for (const [key, t] of original) if (!key.endsWith('double_stream_modulation_img.lin.weight')) expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
    const messages = await refusal(base, 'f8_e4m3', onModulation);
    expect(messages).toEqual([expect.stringMatching(/: tensor "model\.diffusion_model\..*\.weight" \(comfy_quant format "nvfp4"\) keeps its codes and scales or is written dequantized: --dtype f8_e4m3 would convert its scale tensors/)]);
  });

  const withTensor = (key: string, replace: (t: DecodedTensor) => FixtureTensor | undefined) => {
    const decoded = decodeSafetensors(fp8mixed());
    const tensors: FixtureTensor[] = [];
    for (const [name, t] of decoded.tensors) {
      const out = name === key ? replace(t) : { name, dtype: t.dtype, shape: t.shape, data: t.bytes };
      if (out) tensors.push(out);
    }
    return buildSafetensors(tensors);
  };
  const text = (s: string) => Array.from(new TextEncoder().encode(s));
  const cases: [string, Uint8Array, RegExp][] = [
    ['comfy_quant that is not JSON', withTensor(`${QKV}.comfy_quant`, () => ({ name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [21], data: text('{"format": float8_e4m') })),
      /tensor "model\.diffusion_model\.double_blocks\.0\.img_attn\.qkv\.comfy_quant" is not JSON/],
    ['comfy_quant without a format', withTensor(`${QKV}.comfy_quant`, () => ({ name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [15], data: text('{"fmt": "fp8"} ') })),
      /qkv\.comfy_quant" is not ComfyUI's quantization config/],
    ['comfy_quant stored as F32', withTensor(`${QKV}.comfy_quant`, () => ({ name: `${QKV}.comfy_quant`, dtype: 'F32', shape: [2], data: [1, 2] })),
      /qkv\.comfy_quant" is F32 \(2\), not ComfyUI's quantization config/],
    ['a weight_scale per row', withTensor(`${QKV}.weight_scale`, () => ({ name: `${QKV}.weight_scale`, dtype: 'F32', shape: [3 * h], data: Array.from({ length: 3 * h }, () => 0.001) })),
      /qkv\.weight \(comfy_quant format "float8_e4m3fn"\): its scale .*qkv\.weight_scale has shape \[192\] \(F32\)/],
    ['no weight_scale', withTensor(`${QKV}.weight_scale`, () => undefined), /qkv\.weight_scale is missing/],
    ['a negative weight_scale', withTensor(`${QKV}.weight_scale`, (t) => ({ name: `${QKV}.weight_scale`, dtype: 'F32', shape: t.shape, data: [-0.001] })),
      /qkv\.weight_scale is -0\.00100/],
    ['a bf16 weight marked float8_e4m3fn', withTensor(`${QKV}.weight`, (t) => ({ name: `${QKV}.weight`, dtype: 'BF16', shape: t.shape, data: t.values })),
      /qkv\.weight \(comfy_quant format "float8_e4m3fn"\) is BF16; ComfyUI stores float8_e4m3fn weights as F8_E4M3/],
  ];
  for (const [what, base, message] of cases) {
    it(`${what}: refused in one line naming the tensor`, async () => {
      const messages = await refusal(base, undefined, onModulation);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toMatch(message);
      expect(messages[0]).not.toContain('\n');
    });
  }

  it('a weight with a weight_scale but no comfy_quant (a config left out): a LoRA on it and --dtype are refused, naming it', async () => {
    const base = withTensor(`${QKV}.comfy_quant`, () => undefined);
    const onIt = await refusal(base, undefined, onQkv);
    expect(onIt).toEqual([expect.stringMatching(/qkv\.weight is stored quantized: it has a weight_scale beside it but no comfy_quant config/)]);
    const dequantize = await refusal(base, 'bf16', onModulation);
    expect(dequantize).toEqual([expect.stringMatching(/tensor "model\.diffusion_model\.double_blocks\.0\.img_attn\.qkv\.weight" cannot be dequantized: it has a weight_scale beside it but no comfy_quant config/)]);
  });

  it('fp8 weights with weight_scale beside them and no config at all: --dtype is refused naming one, a merge elsewhere copies them', async () => {
    const decoded = decodeSafetensors(fp8mixed());
    const tensors: FixtureTensor[] = [];
    for (const [name, t] of decoded.tensors) if (!name.endsWith('.comfy_quant')) tensors.push({ name, dtype: t.dtype, shape: t.shape, data: t.bytes });
    const base = buildSafetensors(tensors);
    for (const dtype of ['bf16', 'f32', 'f8_e4m3']) {
      const messages = await refusal(base, dtype, onModulation);
      expect(messages, dtype).toHaveLength(1);
      expect(messages[0]).toMatch(/tensor "model\.diffusion_model\.[^"]+\.weight" is stored quantized, with its scale in model\.diffusion_model\.[^ ]+\.weight_scale, in a form not read here .*leave out --dtype/);
    }
    expect(await refusal(base, undefined, onModulation)).toEqual([]);
  });

  it('--dtype f8_e4m3 on a comfy_quant fp8 file is refused in one line, whether a LoRA changes an fp8 layer or not (it would convert the F32 weight_scale tensors too)', async () => {
    for (const adapters of [ADAPTERS, onModulation]) {
      expect(await refusal(fp8mixed(), 'f8_e4m3', adapters)).toEqual([expect.stringMatching(/: tensor "model\.diffusion_model\.[^"]+\.weight" \(comfy_quant format "float8_e4m3fn"\) keeps its codes and scales or is written dequantized: --dtype f8_e4m3 would convert its scale tensors \(such as "[^"]+\.weight_scale"\) as if they were weights, with or without --dtype-merged-only; leave out --dtype \(merged weights are written in their format again\)/)]);
      // The page refuses the same output types before the click.
      const refused = (await summarizePlan(memoryInputFileSet({ [FILE]: fp8mixed() }, FILE),
        adapters.map((x) => ({ files: memoryInputFileSet(x.files, Object.keys(x.files)[0]), weight: x.weight })))).output.refused;
      expect(Object.keys(refused).sort()).toEqual(['f8_e4m3', 'f8_e5m2']);
      expect(refused.f8_e4m3).toMatch(/its comfy_quant format "float8_e4m3fn" weights \(such as model\.diffusion_model\.[^)]+\.weight\) keep their codes and scales or are written dequantized/);
    }
  });

  const temp = tempDirs();
  afterAll(temp.removeAll);
  it('the CLI: a comfy_quant that is not JSON is refused in one line, nothing written', async () => {
    const cases: [Uint8Array, RegExp][] = [
      [withTensor(`${QKV}.comfy_quant`, () => ({ name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [6], data: text('{"form') })), /qkv\.comfy_quant" is not JSON/],
    ];
    for (const [base, message] of cases) {
      const dir = temp.make({ [FILE]: base, 'qkv.safetensors': onQkv[0].files['qkv.safetensors'] });
      const out = join(dir, 'merged.safetensors');
      const run = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, 'qkv.safetensors'), '--out', out, '--backend', 'cpu']);
      expect(run.code).not.toBe(0);
      expect(errorLines(run.stderr)).toEqual([expect.stringMatching(message)]);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a malformed _quantization_metadata header entry (JSON null, a number, a string, an array included): refused in one line', async () => {
    const decoded = decodeSafetensors(fp8mixed({ inHeader: 'keys' }));
    const tensors = [...decoded.tensors].map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: t.bytes }));
    for (const text of ['{"layers": ["x"]}', 'null', '5', '"layers"', '[]']) {
      const messages = await refusal(buildSafetensors(tensors, { _quantization_metadata: text }), undefined, onModulation);
      expect(messages, text).toEqual([expect.stringMatching(/_quantization_metadata header entry has no "layers" object/)]);
    }
  });
});

describe('the comfy rule: codes are W times the scale\'s f32 reciprocal, as ComfyUI computes them', () => {
  // e4m3fn: 3 mantissa bits, normal exponents -6…8, largest 448; e5m2: 2 bits, -14…15, largest 57344.
  const formats = [
    { dtype: 'F8_E4M3', max: 448, mantBits: 3, exps: [-6, 7], decode: e4m3Value },
    { dtype: 'F8_E5M2', max: 57344, mantBits: 2, exps: [-14, 15], decode: e5m2Value },
  ] as const;
  for (const { dtype, max, mantBits, exps, decode } of formats) {
    it(`${dtype}: values where W · f32(1/s) and W / s round to different codes get the product's; s = f32(amax / ${max})`, () => {
      // Values a few f32 steps from m · s, m a tie (halfway between two codes): there the
      // quotient and the product by the rounded reciprocal can fall on different sides of the tie.
      const amax = 0.37;
      const s = Math.fround(amax / max);
      const inverse = Math.fround(1 / s);
      const picked = [amax];
      for (let e = exps[0]; e <= exps[1]; e++) for (let j = 0; j < 2 ** mantBits; j++) for (let ulps = -4; ulps <= 4; ulps++) {
        const near = Math.fround((1 + (2 * j + 1) / 2 ** (mantBits + 1)) * 2 ** e * s);
        const x = Math.fround(near * (1 + ulps * 2 ** -23));
        if (x >= amax) continue;
        if (roundF8Saturating(Math.fround(x * inverse), dtype) !== roundF8Saturating(Math.fround(x / s), dtype)) picked.push(x, -x);
      }
      expect(picked.length).toBeGreaterThan(4);
      const values = Float32Array.from(picked);
      const cols = values.length;
      const w: ScaledFp8Weight = {
        weightKey: 'w.weight', codeDtype: dtype, scaleKey: 'w.weight_scale', scaleDtype: 'F32', rows: 1, cols, blockRows: 1, blockCols: cols, scales: Float64Array.of(1),
      };
      for (const encoder of ['wasm', 'js'] as const) {
        const scales = Float64Array.of(1);
        const codes = requantizeSlab(w, 'comfy', values, 0, 1, scales, undefined, { encoder });
        expect(scales[0]).toBe(s);
        const want = Array.from(values, (x) => roundF8Saturating(Math.fround(x * inverse), dtype));
        expect(Array.from(codes, decode)).toEqual(want);
      }
    });
  }
});

describe('the mxfp8 rule: e8m0 exponents as ComfyUI picks them', () => {
  const block = (amax: number) => Float32Array.from({ length: 32 }, (_, i) => (i === 5 ? amax : i === 9 ? -amax / 3 : amax / (i + 7)));
  const weight = (cols: number): ScaledFp8Weight => ({
    weightKey: 'w.weight', codeDtype: 'F8_E4M3', scaleKey: 'w.weight_scale', scaleDtype: 'F32', rows: 1, cols, blockRows: 1, blockCols: 32,
    scales: new Float64Array(cols / 32), scaleLayout: 'mxfp8',
  });
  it('a block of zeros gets exponent 0 (scale 0) whatever it had; 448·2^-10 gets 2^-10; a maximum whose f32 log2 rounds down to an integer keeps that exponent, its largest code clamped to 448', () => {
    // log2(1 + 2^-20) · 2^20 ≈ 1.44 float32 steps above -10 (rounds up: exponent -9); log2(1 + 2^-22) is 0.36 of a step (rounds to -10).
    const maxima = [0, 448 * 2 ** -10, Math.fround(448 * 2 ** -10 * (1 + 2 ** -20)), Math.fround(448 * 2 ** -10 * (1 + 2 ** -22))];
    const values = new Float32Array(32 * maxima.length);
    maxima.forEach((m, b) => { if (m !== 0) values.set(block(m), b * 32); });
    for (const encoder of ['wasm', 'js'] as const) {
      const scales = Float64Array.of(2 ** -5, 2 ** -5, 2 ** -5, 2 ** -5);
      const codes = requantizeSlab(weight(values.length), 'comfy', values, 0, 1, scales, undefined, { encoder });
      expect(Array.from(scales)).toEqual([0, 2 ** -10, 2 ** -9, 2 ** -10]);
      expect(Array.from(codes.subarray(0, 32))).toEqual(new Array(32).fill(0));
      expect([e4m3Value(codes[32 + 5]), e4m3Value(codes[64 + 5]), e4m3Value(codes[96 + 5])]).toEqual([448, 224, 448]);
      expect(Array.from(codes, e4m3Value)).toEqual(Array.from(comfyMxfp8Requantize(Float64Array.from(values), 1, values.length).codes));
    }
  });
  it('a non-zero block too small for an e8m0 scale ComfyUI can divide by (exponent 0): refused, naming the tensor and the block', () => {
    expect(() => requantizeSlab(weight(32), 'comfy', block(1e-40), 0, 1, new Float64Array(1))).toThrow(/tensor "w\.weight": its merged block at row 0, columns 0–31 .* too small for an e8m0 scale/);
  });
});
