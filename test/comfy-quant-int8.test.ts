/**
 * LoRAs merged into ComfyUI's int8_tensorwise comfy_quant layers (quant_ops.py's
 * TensorWiseINT8Layout, comfy_kitchen), in a FLUX.2 diffusion model saved on its own (BFL names, no
 * `model.diffusion_model.`): each block's Linear weight I8 with `<m>.comfy_quant` U8 (the bytes of
 * `{"format": "int8_tensorwise"}` as json.dumps writes them) and `<m>.weight_scale` F32, one for the
 * tensor (shape []) or one per row (shape [rows, 1], as comfy_kitchen's rowwise quantizer writes
 * it); the embedders, modulations and norms stay bf16.
 *
 * Truth is float64 written here: W = q × weight_scale, W' = W + Σ weight · scale · B·A; the default
 * output is W' quantized again as ComfyUI's LoRA patch does (requantize_from_float, scale
 * "recalculate"; per row where the stored scale has a dimension), rounded to nearest even where
 * ComfyUI rounds stochastically:
 *   w = f32(W'), s = max(f32(max |w| / 127), f32(1e-30)) over the tensor or the row,
 *   q = clamp(round-half-even(f32(w / s)), −128, 127).
 * `--dtype bf16`: W' rounded once to bf16, every int8 weight dequantized, weight_scale and
 * comfy_quant left out. kohya-form (musubi-tuner) and PEFT-form (ai-toolkit) LoRAs; the CPU's
 * JavaScript and WebAssembly executors and WebGPU; slabs small enough that a weight streams in
 * several.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { memoryInputFileSet, type MergeBackend } from '../src/index.js';
import { requantizeSlab } from '../src/pipeline/fp8-requantize.js';
import { summarizePlan } from '../demo/plan-summary.js';
import type { ScaledFp8Weight } from '../src/formats/scaled-fp8.js';
import { FLUX2, flux2BflTensors, type Flux2Dims } from './helpers/dit-fixtures.js';
import { flux2StyleAndDetail, loraTensors, truthTerms, type LoraSpec, type WeightedAdapter } from './helpers/diffusion-fixtures.js';
import { errorLines, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeFileInMemory, refusalsInMemory } from './helpers/merge-backends.js';
import { trueMerge, type TruthTerm } from './helpers/merge-truth.js';
import { comfyInt8Requantize } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(1127);
const DIMS: Flux2Dims = { ...FLUX2, h: 64, head: 16 };
const { h } = DIMS;
const FILE = 'flux2_dev_int8.safetensors';
/** The Linear layers stored in int8: the blocks' projections and MLPs. */
const QUANTIZED = /^(double|single)_blocks\.\d+\.(img_attn\.qkv|txt_attn\.qkv|img_attn\.proj|txt_attn\.proj|img_mlp\.[02]|txt_mlp\.[02]|linear1|linear2)\.weight$/;
/** Layers whose weight_scale is one per row ([rows, 1]); the others have one per tensor ([]). */
const PER_ROW = /^(single_blocks\.\d+\.linear2|double_blocks\.1\.txt_mlp\.2)\.weight$/;
/** json.dumps({"format": …}) as ComfyUI writes it (a space after each colon and comma). */
const configBytes = (conf: Record<string, unknown>) => Array.from(new TextEncoder().encode(JSON.stringify(conf).replace(/":/g, '": ').replace(/,"/g, ', "')));
const text = (s: string) => Array.from(new TextEncoder().encode(s));

// --- the base -------------------------------------------------------------------------------------

/** Layer (without `.weight`) → a config other than {"format": "int8_tensorwise"}, or tensors of its own. */
type Override = (m: string, rows: number, cols: number) => FixtureTensor[];

function int8Model(overrides: Record<string, Override> = {}): Uint8Array {
  const tensors: FixtureTensor[] = [];
  for (const t of flux2BflTensors(rand, 'BF16', DIMS)) {
    if (!QUANTIZED.test(t.name)) {
      tensors.push(t);
      continue;
    }
    const m = t.name.slice(0, -'.weight'.length);
    const [rows, cols] = t.shape;
    if (overrides[m]) {
      tensors.push(...overrides[m](m, rows, cols));
      continue;
    }
    // Codes over the whole range, zeros and the −128 a quantizer clamping at −128 may leave included.
    tensors.push({ name: t.name, dtype: 'I8', shape: [rows, cols], data: Array.from({ length: rows * cols }, (_, i) => (i % 61 === 0 ? 0 : i % 97 === 5 ? -128 : Math.floor(rand() * 255) - 127)) });
    if (PER_ROW.test(t.name)) tensors.push({ name: `${m}.weight_scale`, dtype: 'F32', shape: [rows, 1], data: Array.from({ length: rows }, () => Math.fround(0.0002 + rand() * 0.0006)) });
    else tensors.push({ name: `${m}.weight_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0003 + rand() * 0.0004)] });
    tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [configBytes({ format: 'int8_tensorwise' }).length], data: configBytes({ format: 'int8_tensorwise' }) });
  }
  return buildSafetensors(tensors);
}

// --- the LoRAs: ai-toolkit's (diffusion_model. + BFL names, PEFT form, scale 1) and musubi-tuner's (kohya form, α/r) ---

const peft = (m: string, r: number, out: number, inF: number): LoraSpec => ({
  down: `diffusion_model.${m}.lora_A.weight`, up: `diffusion_model.${m}.lora_B.weight`, r, out, in: inF, lands: [{ key: `${m}.weight` }], scale: 1,
});
const kohya = (m: string, r: number, alpha: number, out: number, inF: number): LoraSpec => {
  const stem = `lora_unet_${m.replace(/\./g, '_')}`;
  return {
    down: `${stem}.lora_down.weight`, up: `${stem}.lora_up.weight`, r, out, in: inF, lands: [{ key: `${m}.weight` }], scale: alpha / r,
    extra: [{ name: `${stem}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
};
const AI_TOOLKIT: LoraSpec[] = [
  peft('double_blocks.0.img_attn.qkv', 4, 3 * h, h),
  peft('single_blocks.1.linear1', 2, 9 * h, h),
  peft('double_blocks.1.txt_mlp.2', 2, h, 3 * h),
  peft('double_stream_modulation_img.lin', 2, 6 * h, h), // bf16 in these files
];
const MUSUBI: LoraSpec[] = [kohya('single_blocks.0.linear2', 4, 8, h, 4 * h)];
const aiToolkit = buildSafetensors(loraTensors(rand, AI_TOOLKIT, 'BF16'));
const musubi = buildSafetensors(loraTensors(rand, MUSUBI, 'BF16'), { ss_network_module: 'networks.lora_flux_2' });
const { adapters: ADAPTERS, terms: TERMS, termsOf } = flux2StyleAndDetail(aiToolkit, AI_TOOLKIT, musubi, MUSUBI);
const MERGED_INT8 = [...new Set(TERMS.map((t) => t.baseKey))].filter((k) => QUANTIZED.test(k));

// --- the truth ------------------------------------------------------------------------------------

/** W = q × weight_scale (of the tensor, or of the row), in float64. */
function int8Values(base: Map<string, DecodedTensor>, key: string): Float64Array {
  const w = base.get(key)!;
  const scale = base.get(key.replace(/\.weight$/, '.weight_scale'))!;
  const cols = w.shape[1];
  return Float64Array.from(w.values, (q, i) => q * (scale.shape.length === 0 ? scale.values[0] : scale.values[Math.floor(i / cols)]));
}

const truth = (base: Map<string, DecodedTensor>, key: string) => trueMerge({ ...base.get(key)!, values: int8Values(base, key) }, termsOf(key));

// --- merging --------------------------------------------------------------------------------------

const backends = mergeBackends({ cpu: 'both' });

/** Each adapter named by its file, as messages name it. */
const named = (adapters: WeightedAdapter[]) => adapters.map((a) => ({ ...a, name: Object.keys(a.files)[0] }));

/** The merge in slabs small enough that each weight streams in several: its tensors and the plan's notes. */
async function merge(base: Uint8Array, backend: MergeBackend, outDtype?: string, adapters = ADAPTERS) {
  let notes: string[] = [];
  const { bytes } = await mergeFileInMemory({ backend, base: { [FILE]: base }, baseName: FILE, adapters: named(adapters), ...(outDtype ? { outDtype } : {}), inspect: (p) => { notes = p.plan.notes.slice(); } });
  return { ...decodeSafetensors(bytes), notes };
}

const refusal = (base: Uint8Array, outDtype?: string, adapters = ADAPTERS) =>
  refusalsInMemory({ backend: backends['cpu (js)']!, base: { [FILE]: base }, baseName: FILE, adapters: named(adapters), ...(outDtype ? { outDtype } : {}) });

const base = int8Model();
const original = decodeSafetensors(base);

for (const backendName of ['cpu (js)', 'cpu (wasm)', 'webgpu']) {
  describe(`ComfyUI int8_tensorwise FLUX.2 on ${backendName}`, () => {
    it('merged int8 weights quantized again with weight_scale recalculated as ComfyUI does (per tensor, or per row); the rest byte for byte', async () => {
      const merged = await merge(base, backends[backendName]!);
      expect(merged.notes.join('\n')).toMatch(/ComfyUI int8_tensorwise weights \(comfy_quant, weight_scale per tensor or per row\): .*recalculated/);
      expect([...merged.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
      expect(MERGED_INT8.filter((k) => PER_ROW.test(k)).length).toBe(2);
      let grown = 0;
      for (const key of MERGED_INT8) {
        const real = truth(original.tensors, key);
        const [rows, cols] = original.tensors.get(key)!.shape;
        const perRow = PER_ROW.test(key);
        const want = comfyInt8Requantize(real, rows, perRow);
        const w = merged.tensors.get(key)!;
        const s = merged.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!;
        expect([w.dtype, w.shape, s.dtype, s.shape]).toEqual(['I8', [rows, cols], 'F32', perRow ? [rows, 1] : []]);
        expect(Array.from(s.values), `${key} weight_scale`).toEqual(want.scales);
        const wrong = Array.from(w.values).findIndex((q, i) => q !== want.codes[i]);
        expect(wrong, `${key}[${wrong}]: ${w.values[wrong]} vs ${want.codes[wrong]}`).toBe(-1);
        const old = original.tensors.get(key.replace(/\.weight$/, '.weight_scale'))!.values;
        grown += Number(want.scales.some((x, g) => x !== old[g]));
      }
      // Every merged weight got new scales: kept, they would clip or waste the range.
      expect(grown).toBe(MERGED_INT8.length);
      // The bf16 modulation the LoRA changes: W' rounded once.
      const mod = 'double_stream_modulation_img.lin.weight';
      const wantMod = trueMerge(original.tensors.get(mod)!, termsOf(mod)).map((x) => roundForDType(x, 'BF16'));
      expect(merged.tensors.get(mod)!.values.findIndex((x, i) => x !== wantMod[i])).toBe(-1);
      // Everything else, comfy_quant included, is written as it was.
      const changed = new Set([...MERGED_INT8, ...MERGED_INT8.map((k) => k.replace(/\.weight$/, '.weight_scale')), mod]);
      for (const [key, t] of original.tensors) {
        if (!changed.has(key)) expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
      }
    });

    it('--dtype bf16: every int8 weight dequantized (q × weight_scale + ΔW, rounded once); weight_scale and comfy_quant left out', async () => {
      const merged = await merge(base, backends[backendName]!, 'bf16');
      expect([...merged.tensors.keys()].filter((k) => /\.(weight_scale|comfy_quant)$/.test(k))).toEqual([]);
      for (const key of [...original.tensors.keys()].filter((k) => QUANTIZED.test(k))) {
        const want = (MERGED_INT8.includes(key) ? truth(original.tensors, key) : int8Values(original.tensors, key)).map((x) => roundForDType(x, 'BF16'));
        const w = merged.tensors.get(key)!;
        expect([w.dtype, w.shape], key).toEqual(['BF16', original.tensors.get(key)!.shape]);
        const wrong = w.values.findIndex((x, i) => x !== want[i]);
        expect(wrong, `${key}[${wrong}]: ${w.values[wrong]} vs ${want[wrong]}`).toBe(-1);
      }
    });
  });
}

describe("ComfyUI int8_tensorwise configs in the header's _quantization_metadata", () => {
  it('read as the tensors are: the same merged bytes, the header entry kept', async () => {
    const fromTensors = await merge(base, backends['cpu (wasm)']!);
    // The same tensors, each comfy_quant moved into the header as ComfyUI's converter reads it.
    const configs = [...original.tensors.keys()].filter((k) => k.endsWith('.comfy_quant'));
    const headerBase = buildSafetensors([...original.tensors].filter(([k]) => !k.endsWith('.comfy_quant')).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.bytes })),
      { _quantization_metadata: JSON.stringify({ format_version: '1.0', layers: Object.fromEntries(configs.map((k) => [k.slice(0, -'.comfy_quant'.length), { format: 'int8_tensorwise' }])) }) });
    const merged = await merge(headerBase, backends['cpu (wasm)']!);
    expect(merged.metadata._quantization_metadata).toBe(decodeSafetensors(headerBase).metadata._quantization_metadata);
    for (const key of MERGED_INT8.flatMap((k) => [k, k.replace(/\.weight$/, '.weight_scale')])) expect(merged.tensors.get(key)!.bytes, key).toEqual(fromTensors.tensors.get(key)!.bytes);
  });
});

describe('the int8 rule: scales and codes as comfy_kitchen computes them', () => {
  const weight = (rows: number, cols: number, perRow: boolean): ScaledFp8Weight => ({
    weightKey: 'double_blocks.0.img_attn.qkv.weight', codeDtype: 'BF16', scaleKey: 'double_blocks.0.img_attn.qkv.weight_scale', scaleDtype: 'F32',
    rows, cols, blockRows: perRow ? 1 : rows, blockCols: cols, scales: new Float64Array(perRow ? rows : 1), scaleLayout: 'int8_tensorwise',
  });
  const codes = (bytes: Uint8Array) => Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));

  it('s = f32(amax / 127): ties round to even (0.5 → 0, 1.5 → 2, 2.5 → 2, −2.5 → −2, −3.5 → −4), the largest value to ±127', () => {
    const scales = new Float64Array(1);
    const values = Float32Array.of(127, 0.5, 1.5, 2.5, -2.5, -3.5, 126.5, -127);
    expect(codes(requantizeSlab(weight(1, 8, false), 'comfy', values, 0, 1, scales))).toEqual([127, 0, 2, 2, -2, -4, 126, -127]);
    expect(scales[0]).toBe(1);
    const scaled = Float32Array.from(values, (x) => x * 2 ** -10);
    expect(codes(requantizeSlab(weight(1, 8, false), 'comfy', scaled, 0, 1, scales))).toEqual([127, 0, 2, 2, -2, -4, 126, -127]);
    expect(scales[0]).toBe(2 ** -10);
  });

  it('the quotient is rounded to f32 before it is rounded to an integer, as torch divides float32 tensors: one just below 3.5 in float64 is 3.5 in f32, and goes to 4', () => {
    const scales = new Float64Array(1);
    const [amax, x] = [1.1478023529052734, 0.03163234889507294]; // s = f32(amax / 127); x / s = 3.4999999485 in float64
    expect(Math.fround(x / Math.fround(amax / 127))).toBe(3.5);
    expect(codes(requantizeSlab(weight(1, 2, false), 'comfy', Float32Array.of(amax, x), 0, 1, scales))).toEqual([127, 4]);
  });

  it('a weight of zeros gets the smallest scale comfy_kitchen allows (f32(1e-30)) and codes 0; per row, each row its own', () => {
    const scales = new Float64Array(2);
    const values = Float32Array.of(0, 0, 0, 0, 254, -63.5, 0, 1);
    expect(codes(requantizeSlab(weight(2, 4, true), 'comfy', values, 0, 2, scales))).toEqual([0, 0, 0, 0, 127, -32, 0, 0]);
    expect(Array.from(scales)).toEqual([Math.fround(1e-30), 2]);
  });

  it('a merged weight with an infinite value: refused, naming the tensor', () => {
    expect(() => requantizeSlab(weight(1, 2, false), 'comfy', Float32Array.of(1, Infinity), 0, 1, new Float64Array(1)))
      .toThrow(/tensor "double_blocks\.0\.img_attn\.qkv\.weight": its merged weight has the largest magnitude Infinity, which no int8 scale holds; merge with --dtype bf16/);
  });
});

describe('ComfyUI int8_tensorwise (comfy_quant): the page', () => {
  const QKV = 'double_blocks.0.img_attn.qkv';
  const onQkv: WeightedAdapter[] = [{ files: { 'qkv.safetensors': buildSafetensors(loraTensors(rand, [peft(QKV, 2, 3 * h, h)], 'BF16')) }, weight: 1 }];

  it("measures ‖ΔW‖ / ‖W‖ against the real weight (q × weight_scale), not its codes; refuses before the click the f8_e4m3 output the merge refuses", async () => {
    const [[adapterName, adapterBytes]] = Object.entries(onQkv[0].files);
    const [term] = truthTerms(decodeSafetensors(adapterBytes).tensors, [peft(QKV, 2, 3 * h, h)], 1);
    const norm = (values: ArrayLike<number>) => Math.sqrt(Array.from(values).reduce((n, v) => n + v * v, 0));
    const w = original.tensors.get(`${QKV}.weight`)!;
    const update = norm(trueMerge({ ...w, values: new Float64Array(w.values.length) }, [term])); // ‖s·B·A‖ in float64
    const real = int8Values(original.tensors, `${QKV}.weight`);
    const summary = await summarizePlan(memoryInputFileSet({ [FILE]: base }, FILE), [{ files: memoryInputFileSet({ [adapterName]: adapterBytes }, adapterName), weight: 1 }]);
    const measured = summary.magnitudes.find((m) => m.target === `${QKV}.weight`)!;
    expect(measured.ratio / (update / norm(real))).toBeCloseTo(1, 5);
    // A layer with a scale per row, through the whole merge's adapters.
    const linear2 = 'single_blocks.0.linear2.weight';
    const w2 = original.tensors.get(linear2)!;
    const full = await summarizePlan(memoryInputFileSet({ [FILE]: base }, FILE), ADAPTERS.map((a) => ({ files: memoryInputFileSet(a.files, Object.keys(a.files)[0]), weight: a.weight })));
    const ratio = full.magnitudes.find((m) => m.target === linear2)!.ratio;
    expect(ratio / (norm(trueMerge({ ...w2, values: new Float64Array(w2.values.length) }, termsOf(linear2))) / norm(int8Values(original.tensors, linear2)))).toBeCloseTo(1, 5);
    expect(summary.mergeable).toBe(true);
    const reason = `its comfy_quant format "int8_tensorwise" weights (such as ${QKV}.weight) keep their codes and scales or are written dequantized: leave the types as they are, or choose bf16, f16 or f32`;
    expect(summary.output.refused).toEqual({ f8_e4m3: reason, f8_e5m2: reason });
  });
});

describe('ComfyUI int8_tensorwise (comfy_quant): what is refused', () => {
  const QKV = 'double_blocks.0.img_attn.qkv';
  const onQkv: WeightedAdapter[] = [{ files: { 'qkv.safetensors': buildSafetensors(loraTensors(rand, [peft(QKV, 2, 3 * h, h)], 'BF16')) }, weight: 1 }];
  const onModulation: WeightedAdapter[] = [{ files: { 'mod.safetensors': buildSafetensors(loraTensors(rand, [peft('double_stream_modulation_img.lin', 2, 6 * h, h)], 'BF16')) }, weight: 1 }];
  const conf = (m: string, c: Record<string, unknown>): FixtureTensor => ({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [configBytes(c).length], data: configBytes(c) });
  const codes = (m: string, rows: number, cols: number, dtype: 'I8' | 'F8_E4M3' = 'I8'): FixtureTensor => ({ name: `${m}.weight`, dtype, shape: [rows, cols], data: new Array(rows * cols).fill(1) });
  const scale = (m: string, shape: number[], data: number[], dtype: 'F32' | 'BF16' = 'F32'): FixtureTensor => ({ name: `${m}.weight_scale`, dtype, shape, data });
  const qkv = (make: Override) => int8Model({ [QKV]: make });
  const fmt = 'comfy_quant format "int8_tensorwise"';

  // Malformed: refused when the base is read, in one line naming the tensor.
  const malformed: [string, Uint8Array, RegExp][] = [
    ['e4m3fn codes marked int8_tensorwise', qkv((m, r, c) => [codes(m, r, c, 'F8_E4M3'), scale(m, [], [0.001]), conf(m, { format: 'int8_tensorwise' })]),
      /qkv\.weight \(comfy_quant format "int8_tensorwise", .*\) is F8_E4M3; ComfyUI stores int8_tensorwise weights as I8/],
    ['no weight_scale', qkv((m, r, c) => [codes(m, r, c), conf(m, { format: 'int8_tensorwise' })]), /qkv\.weight \(comfy_quant format "int8_tensorwise", .*\): its scale double_blocks\.0\.img_attn\.qkv\.weight_scale is missing/],
    ['a NaN weight_scale', qkv((m, r, c) => [codes(m, r, c), scale(m, [], [NaN]), conf(m, { format: 'int8_tensorwise' })]), /qkv\.weight_scale holds NaN; a scale must be finite and not negative/],
    ['an infinite weight_scale', qkv((m, r, c) => [codes(m, r, c), scale(m, [], [Infinity]), conf(m, { format: 'int8_tensorwise' })]), /qkv\.weight_scale holds Infinity; a scale must be finite/],
    ['a negative weight_scale', qkv((m, r, c) => [codes(m, r, c), scale(m, [], [-0.001]), conf(m, { format: 'int8_tensorwise' })]), /qkv\.weight_scale holds -0\.0010000000474974513; a scale must be finite and not negative/],
    ['a per-row weight_scale with a NaN in row 5', qkv((m, r, c) => [codes(m, r, c), scale(m, [r, 1], Array.from({ length: r }, (_, i) => (i === 5 ? NaN : 0.001))), conf(m, { format: 'int8_tensorwise' })]),
      /qkv\.weight_scale holds NaN for row 5; a scale must be finite/],
    ['a weight_scale of shape [3, 64] (no grid int8_tensorwise has)', qkv((m, r, c) => [codes(m, r, c), scale(m, [3, 64], new Array(192).fill(0.001)), conf(m, { format: 'int8_tensorwise' })]),
      /qkv\.weight_scale has shape \[3, 64\]; int8_tensorwise needs one F32 scale \(shape \[\]\) or one per row \(shape \[192, 1\]\)/],
  ];
  for (const [what, bad, message] of malformed) {
    it(`${what}: refused in one line naming the tensor`, async () => {
      const lines = await refusal(bad, undefined, onModulation);
      expect(lines).toEqual([expect.stringMatching(message)]);
      expect(lines[0]).toContain(`${FILE}: ${QKV}.weight (${fmt}`);
    });
  }

  // Forms not read: copied as they are where nothing changes them; a LoRA on one, or --dtype, refused naming it.
  const unread: [string, Uint8Array, RegExp][] = [
    ['a convrot layer (Hadamard-rotated codes, per-row scales)', qkv((m, r, c) => [codes(m, r, c), scale(m, [r, 1], new Array(r).fill(0.001)), conf(m, { format: 'int8_tensorwise', convrot: true, convrot_groupsize: 64 })]),
      /marks it convrot: Hadamard-rotated int8 codes, which loramerge does not read/],
    ['convrot in the config\'s "params"', qkv((m, r, c) => [codes(m, r, c), scale(m, [r, 1], new Array(r).fill(0.001)), conf(m, { format: 'int8_tensorwise', params: { convrot: true } })]),
      /marks it convrot/],
    ['a weight_scale of shape [1] (ComfyUI re-quantizes it per row, [rows, 1])', qkv((m, r, c) => [codes(m, r, c), scale(m, [1], [0.001]), conf(m, { format: 'int8_tensorwise' })]),
      /its scale double_blocks\.0\.img_attn\.qkv\.weight_scale has shape \[1\]: ComfyUI re-quantizes such a layer with per-row scales of shape \[192, 1\]/],
    ['a BF16 weight_scale', qkv((m, r, c) => [codes(m, r, c), scale(m, [], [0.001], 'BF16'), conf(m, { format: 'int8_tensorwise' })]),
      /weight_scale is BF16, where ComfyUI's int8 quantizer writes F32/],
    ['a convrot_w4a4 layer (packed 4-bit codes in I8, per-row scales)', qkv((m, r, c) => [codes(m, r, c / 2), scale(m, [r], new Array(r).fill(0.001)), conf(m, { format: 'convrot_w4a4', convrot_groupsize: 64 })]),
      /comfy_quant format is "convrot_w4a4" \(.*qkv\.comfy_quant\), which loramerge does not read/],
  ];
  for (const [what, bad, message] of unread) {
    it(`${what}: a LoRA on it and --dtype are refused naming the tensor; merged elsewhere, its tensors are copied byte for byte`, async () => {
      const lora = await refusal(bad, undefined, onQkv);
      expect(lora).toEqual([expect.stringMatching(message)]);
      expect(lora[0]).toContain(`${QKV}.weight`);
      const dtype = await refusal(bad, 'bf16', onModulation);
      expect(dtype).toEqual([expect.stringMatching(new RegExp(`tensor "${QKV}\\.weight" cannot be dequantized: .*${message.source}.*; leave out --dtype`))]);
      const before = decodeSafetensors(bad).tensors;
      const merged = await merge(bad, backends['cpu (wasm)']!, undefined, onModulation);
      for (const key of [...before.keys()].filter((k) => k.startsWith(`${QKV}.`))) expect(merged.tensors.get(key)!.bytes, key).toEqual(before.get(key)!.bytes);
    });
  }

  it('--dtype f8_e4m3 (which would convert the F32 weight_scale tensors too) and f8_e5m2: refused in one line', async () => {
    for (const dtype of ['f8_e4m3', 'f8_e5m2']) {
      expect(await refusal(base, dtype)).toEqual([`${FILE}: tensor "${QKV}.weight" (comfy_quant format "int8_tensorwise") keeps its codes and scales or is written dequantized: --dtype ${dtype} would convert its scale tensors (such as "${QKV}.weight_scale") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`]);
    }
  });

  it('DoRA on an int8_tensorwise weight (its norms would be taken over the codes): refused in one line naming the module and the weight', async () => {
    const dora: WeightedAdapter[] = [{
      files: {
        'qkv_dora.safetensors': buildSafetensors([
          ...loraTensors(rand, [{ down: 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', up: 'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight', r: 2, out: 3 * h, in: h, lands: [], scale: 1 }], 'BF16'),
          { name: 'lora_unet_double_blocks_0_img_attn_qkv.dora_scale', dtype: 'F32', shape: [1, h], data: Array.from({ length: h }, (_, i) => 1 + i / h) },
        ]),
      },
      weight: 1,
    }];
    expect(await refusal(base, undefined, dora)).toEqual([`qkv_dora.safetensors: module "lora_unet_double_blocks_0_img_attn_qkv": DoRA on the ComfyUI int8_tensorwise (comfy_quant) weight ${QKV}.weight (its norms would be taken over the codes) is not supported; merge it into the unquantized model`]);
  });

  const temp = tempDirs();
  afterAll(temp.removeAll);
  it('the CLI: e4m3fn codes marked int8_tensorwise, a LoRA on a convrot layer and one on a convrot_w4a4 layer are refused in one line each, nothing written', async () => {
    for (const [, bad, message] of [malformed[0], unread[0], unread[4]]) {
      const dir = temp.make({ [FILE]: bad, 'qkv.safetensors': onQkv[0].files['qkv.safetensors'] });
      const out = join(dir, 'merged.safetensors');
      const run = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, 'qkv.safetensors'), '--out', out, '--backend', 'cpu']);
      expect(run.code).not.toBe(0);
      expect(errorLines(run.stderr)).toEqual([expect.stringMatching(message)]);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('the CLI merges an int8_tensorwise file: the merged layer is int8 again with its recalculated scale', async () => {
    const dir = temp.make({ [FILE]: base, 'qkv.safetensors': onQkv[0].files['qkv.safetensors'] });
    const out = join(dir, 'merged.safetensors');
    const run = await runCli(['merge', '--base', join(dir, FILE), '--adapter', join(dir, 'qkv.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(run.stderr).not.toMatch(/error/i);
    expect(run.code).toBe(0);
    const { readFileSync } = await import('node:fs');
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
    const [term] = truthTerms(decodeSafetensors(onQkv[0].files['qkv.safetensors']).tensors, [peft(QKV, 2, 3 * h, h)], 1);
    const want = comfyInt8Requantize(trueMerge({ ...original.tensors.get(`${QKV}.weight`)!, values: int8Values(original.tensors, `${QKV}.weight`) }, [term]), 3 * h, false);
    expect(Array.from(merged.get(`${QKV}.weight_scale`)!.values)).toEqual(want.scales);
    expect(Array.from(merged.get(`${QKV}.weight`)!.values)).toEqual(want.codes);
  });
});
