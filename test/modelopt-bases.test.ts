/**
 * LoRAs merged into NVIDIA ModelOpt checkpoints, with the tensors, dtypes and configs its unified
 * Hugging Face export writes:
 * - FP8 (nvidia/Llama-3.1-8B-Instruct-FP8): `<m>.weight` F8_E4M3, `<m>.weight_scale` F32 () and
 *   `<m>.input_scale` F32 () per linear layer, `k_proj.k_scale` / `v_proj.v_scale` F32 () for the
 *   KV cache, hf_quant_config.json `{"producer": {"name": "modelopt"}, "quantization":
 *   {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}`, or (newer
 *   exports) config.json `quantization_config: {"quant_method": "modelopt", "quant_algo": "FP8"}`.
 * - NVFP4 (nvidia/Llama-3.1-8B-Instruct-FP4): `<m>.weight` U8 (out, in/2) of two e2m1 codes,
 *   `<m>.weight_scale` F8_E4M3 (out, in/16), `<m>.weight_scale_2` F32 (), `<m>.input_scale` F32 ().
 * Truth is float64 written here, codes decoded by hand: W = e4m3(code) × weight_scale (FP8) or, as
 * ModelOpt's NVFP4QTensor.dequantize computes it in float32, f32(e2m1(nibble) × f32(e4m3(block
 * scale) × weight_scale_2)) (NVFP4; element 2k in the low nibble), and W' = W + weight · α/r · B·A. FP8 is written again as ModelOpt's exporter would quantize W'
 * (the rule is spelled out below) or dequantized with --dtype; NVFP4 only dequantized. Both
 * backends; odd sizes; slabs small enough that every weight streams in several.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { mergeFolders } from './helpers/cli.js';
import { peftLoraOn } from './helpers/adapter-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mergeSingleFile } from './helpers/single-file-merge.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { e2m1Value, e4m3Value, modelOptNvfp4Value, modelOptRequantize } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(4711);
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;
const WEIGHT = 0.8;
const ALPHA = 16;

// --- codes decoded by hand ---------------------------------------------------------------------

/** A random e4m3 byte that is not NaN, as its value. */
const randomE4m3 = (lo = 0, hi = 0xfe) => {
  let b: number;
  do b = lo + Math.floor(rand() * (hi - lo + 1)); while ((b & 0x7f) === 0x7f);
  return e4m3Value(b);
};

// --- the adapter: PEFT LoRA, r = 16 on q_proj, r = 1 on v_proj ----------------------------------

function adapterFolder(rows: Record<string, number>, cols: number, extra: Record<string, unknown> = {}): Record<string, Uint8Array | string> {
  const tensors: FixtureTensor[] = [];
  for (const [m, r] of [[Q, 16], [V, 1]] as const) {
    tensors.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: Array.from(randomValues(r * cols, rand, 0.3), Math.fround) });
    tensors.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows[m], r], data: Array.from(randomValues(rows[m] * r, rand, 0.3), Math.fround) });
  }
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: ALPHA, rank_pattern: { v_proj: 1 }, target_modules: ['q_proj', 'v_proj'], ...extra }),
    'adapter_model.safetensors': buildSafetensors(tensors),
  };
}

/** W + weight · α/r · B·A in float64, for the modules the adapter has. */
function addLora(w: Float64Array, rows: number, cols: number, lora: Map<string, DecodedTensor>, m: string): Float64Array {
  const a = lora.get(`base_model.model.${m}.lora_A.weight`);
  if (!a) return w;
  const b = lora.get(`base_model.model.${m}.lora_B.weight`)!;
  const r = a.shape[0];
  const out = Float64Array.from(w);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    let d = 0;
    for (let k = 0; k < r; k++) d += b.values[i * r + k] * a.values[k * cols + j];
    out[i * cols + j] += WEIGHT * (ALPHA / r) * d;
  }
  return out;
}

const backends = mergeBackends({ cpu: 'default' });

const merge = (base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, backend: MergeBackend, outDtype?: string) =>
  mergeSingleFile(base, adapter, backend, WEIGHT, outDtype);

const temp = tempDirs();
afterAll(temp.removeAll);
const cli = (base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, extra: string[] = []) =>
  mergeFolders(temp.make, base, adapter, extra);

// --- ModelOpt FP8 -------------------------------------------------------------------------------

describe('ModelOpt FP8 (nvidia/Llama-3.1-8B-Instruct-FP8)', () => {
  const COLS = 200;
  const ROWS: Record<string, number> = { [Q]: 300, [K]: 130, [V]: 130 };
  const HF_QUANT = { producer: { name: 'modelopt', version: '0.15.0' }, quantization: { quant_algo: 'FP8', kv_cache_quant_algo: 'FP8', exclude_modules: ['lm_head'] } };
  type Variant = 'hf_quant_config.json, bfloat16' | 'config.json quantization_config, float16';
  const VARIANTS: Variant[] = ['hf_quant_config.json, bfloat16', 'config.json quantization_config, float16'];
  const dtypeOf = (v: Variant) => (v.endsWith('float16') && !v.endsWith('bfloat16') ? 'F16' : 'BF16');

  function baseFolder(variant: Variant): Record<string, Uint8Array | string> {
    const d = dtypeOf(variant);
    const tensors: FixtureTensor[] = [
      { name: 'model.embed_tokens.weight', dtype: d, shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, d)) },
      { name: `${L}.input_layernorm.weight`, dtype: d, shape: [COLS], data: Array.from({ length: COLS }, () => 1) },
    ];
    for (const m of [Q, K, V]) {
      // Codes over the whole e4m3 range, some zeros; one scale per tensor, as ModelOpt's amax / 448.
      tensors.push({ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [ROWS[m], COLS], data: Array.from({ length: ROWS[m] * COLS }, (_, i) => (i % 97 === 0 ? 0 : randomE4m3())) });
      tensors.push({ name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0213)] });
      tensors.push({ name: `${m}.weight_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0005 + rand() * 0.0001)] });
    }
    tensors.push({ name: `${K}.k_scale`, dtype: 'F32', shape: [], data: [1] });
    tensors.push({ name: `${V}.v_scale`, dtype: 'F32', shape: [], data: [1] });
    tensors.push({ name: 'lm_head.weight', dtype: d, shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, d)) });
    const config: Record<string, unknown> = {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, torch_dtype: d === 'F16' ? 'float16' : 'bfloat16',
    };
    const files: Record<string, Uint8Array | string> = { 'model.safetensors': buildSafetensors(tensors) };
    if (variant.startsWith('hf_quant_config')) files['hf_quant_config.json'] = JSON.stringify(HF_QUANT);
    else config.quantization_config = { quant_method: 'modelopt', quant_algo: 'FP8', kv_cache_scheme: { num_bits: 8, type: 'float', dynamic: false }, ignore: ['lm_head'] };
    files['config.json'] = JSON.stringify(config);
    return files;
  }

  /** W' in float64: e4m3(code) × weight_scale + the LoRA. */
  const truth = (base: Map<string, DecodedTensor>, lora: Map<string, DecodedTensor>, m: string) => {
    const codes = base.get(`${m}.weight`)!;
    const s = base.get(`${m}.weight_scale`)!.values[0];
    const w = Float64Array.from(codes.bytes, (b) => e4m3Value(b) * s);
    return addLora(w, ROWS[m], COLS, lora, m);
  };


  for (const variant of VARIANTS) {
    const base = baseFolder(variant);
    const adapter = adapterFolder(ROWS, COLS);
    const original = decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors;
    const lora = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
    const d = dtypeOf(variant);

    for (const backendName of ['cpu', 'webgpu']) {
      describe(`${variant} on ${backendName}`, () => {
        it('default: FP8 again, each merged weight quantized as ModelOpt\'s exporter does, its weight_scale recomputed', async () => {
          const { weights, config, paths } = await merge(base, adapter, backends[backendName]!);
          expect(config).toEqual(JSON.parse(base['config.json'] as string));
          if (variant.startsWith('hf_quant_config')) expect(paths).toContain('hf_quant_config.json');
          let grown = 0;
          for (const m of [Q, K, V]) {
            const w = weights.get(`${m}.weight`)!;
            const s = weights.get(`${m}.weight_scale`)!;
            expect(w.dtype).toBe('F8_E4M3');
            expect([s.dtype, s.shape]).toEqual(['F32', []]);
            if (m === K) {
              expect(w.bytes).toEqual(original.get(`${m}.weight`)!.bytes);
              expect(s.bytes).toEqual(original.get(`${m}.weight_scale`)!.bytes);
              continue;
            }
            const real = truth(original, lora, m);
            const expected = modelOptRequantize(real, d); // ModelOpt's exporter, written out in e4m3-by-hand.ts
            expect(s.values[0], `${m} weight_scale`).toBe(expected.scale);
            const wrong = Array.from(w.bytes).findIndex((b, i) => e4m3Value(b) !== expected.codes[i]);
            expect(wrong, `${m}: element ${wrong}`).toBe(-1);
            const old = original.get(`${m}.weight_scale`)!.values[0];
            grown += real.filter((x) => Math.abs(x) > 448 * old).length;
          }
          // The old scale would have clipped the merged weights: it had to be recomputed.
          expect(grown).toBeGreaterThan(0);
          // Activation and KV-cache scales are kept as they are (see the README).
          for (const key of [`${Q}.input_scale`, `${K}.input_scale`, `${V}.input_scale`, `${K}.k_scale`, `${V}.v_scale`, 'lm_head.weight']) {
            expect(weights.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
          }
        });

        it('--dtype bf16: W\' rounded once, every weight dequantized, the scales, quantization_config and hf_quant_config.json gone', async () => {
          const { weights, config, paths } = await merge(base, adapter, backends[backendName]!, 'bf16');
          expect(config.quantization_config).toBeUndefined();
          expect(config.torch_dtype).toBe('bfloat16');
          expect(paths).not.toContain('hf_quant_config.json');
          expect([...weights.keys()].filter((k) => /scale/.test(k))).toEqual([]);
          for (const m of [Q, K, V]) {
            const w = weights.get(`${m}.weight`)!;
            expect(w.dtype).toBe('BF16');
            const expected = truth(original, lora, m).map((x) => roundForDType(x, 'BF16'));
            const wrong = w.values.findIndex((x, i) => x !== expected[i]);
            expect(wrong, `${m}: element ${wrong}`).toBe(-1);
          }
        });
      });
    }
  }

  it('DoRA on a ModelOpt FP8 weight: refused in one line naming the module, nothing written', async () => {
    const adapter = adapterFolder(ROWS, COLS, { use_dora: true });
    const a = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
    const tensors: FixtureTensor[] = [...a].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: Array.from(t.values) }));
    tensors.push({ name: `base_model.model.${Q}.lora_magnitude_vector`, dtype: 'F32', shape: [ROWS[Q]], data: Array.from({ length: ROWS[Q] }, () => 1) });
    tensors.push({ name: `base_model.model.${V}.lora_magnitude_vector`, dtype: 'F32', shape: [ROWS[V]], data: Array.from({ length: ROWS[V] }, () => 1) });
    const { run, out, lines } = await cli(baseFolder(VARIANTS[0]), { ...adapter, 'adapter_model.safetensors': buildSafetensors(tensors) });
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/DoRA on the ModelOpt FP8 weight model\.layers\.0\.self_attn\.(q|v)_proj\.weight .*not supported/);
    expect(existsSync(out)).toBe(false);
  });

  it('an F8_E4M3 weight without its weight_scale: refused in one line naming it, with --dtype too, nothing written', async () => {
    const files = baseFolder(VARIANTS[0]);
    const tensors = [...decodeSafetensors(files['model.safetensors'] as Uint8Array).tensors]
      .filter(([name]) => name !== `${Q}.weight_scale`)
      .map(([name, t]): FixtureTensor => (t.dtype === 'F8_E4M3' ? { name, dtype: t.dtype, shape: t.shape, data: t.bytes } : { name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    for (const extra of [[], ['--dtype', 'bf16']]) {
      const { run, out, lines } = await cli({ ...files, 'model.safetensors': buildSafetensors(tensors) }, adapterFolder(ROWS, COLS), extra);
      expect(run.code, extra.join(' ')).not.toBe(0);
      expect(lines).toEqual([expect.stringMatching(/q_proj\.weight.* F8_E4M3 codes with no model\.layers\.0\.self_attn\.q_proj\.weight_scale beside them/)]);
      expect(existsSync(out)).toBe(false);
    }
  });

  // FP8 has one scale per tensor and never reads group_size (NVFP4 does, and refuses a bad one).
  it('a group_size FP8 does not read (0, -16, a string) leaves the merge as it is', async () => {
    for (const groupSize of [0, -16, '16']) {
      const files = baseFolder(VARIANTS[0]);
      const hf = { ...HF_QUANT, quantization: { ...HF_QUANT.quantization, group_size: groupSize } };
      const prepared = await prepareMerge(
        memoryInputFileSet({ ...files, 'hf_quant_config.json': JSON.stringify(hf) }, 'model'),
        [{ files: memoryInputFileSet(adapterFolder(ROWS, COLS), 'adapter'), weight: 1 }],
      );
      await prepared.close();
      expect(prepared.plan.problems, String(groupSize)).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort(), String(groupSize)).toEqual([Q, V].map((m) => `${m}.weight`).sort());
    }
  });

  it('ModelOpt FP8 with per-channel scales (FP8_PER_CHANNEL_PER_TOKEN) stays refused by its scale tensor', async () => {
    const files = baseFolder(VARIANTS[0]);
    const rowsOf = (name: string) => ROWS[name.slice(0, -'.weight_scale'.length)];
    const tensors = [...decodeSafetensors(files['model.safetensors'] as Uint8Array).tensors].map(([name, t]): FixtureTensor => (
      name.endsWith('weight_scale')
        ? { name, dtype: 'F32', shape: [rowsOf(name)], data: Array.from({ length: rowsOf(name) }, () => 0.0005) }
        : { name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    const hf = { ...HF_QUANT, quantization: { ...HF_QUANT.quantization, quant_algo: 'FP8_PER_CHANNEL_PER_TOKEN' } };
    const prepared = await prepareMerge(
      memoryInputFileSet({ ...files, 'model.safetensors': buildSafetensors(tensors), 'hf_quant_config.json': JSON.stringify(hf) }, 'model'),
      [{ files: memoryInputFileSet(adapterFolder(ROWS, COLS), 'adapter'), weight: 1 }],
    );
    await prepared.close();
    const messages = prepared.plan.problems.map((p) => p.message);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/q_proj\.weight is stored quantized, with its scale in .*q_proj\.weight_scale/);
  });

  it('--dtype f8_e4m3 or f8_e5m2, with or without --dtype-merged-only, a LoRA on an FP8 layer or on lm_head: one line naming the weight and its weight_scale, nothing written', async () => {
    // On lm_head alone no FP8 weight is merged, and the F32 weight_scale, input_scale, k_scale and
    // v_scale tensors were written as fp8 codes, as if they were weights.
    const onHead = peftLoraOn('lm_head', 64, COLS, seededRandom(11));
    for (const [where, adapter] of [['q_proj', adapterFolder(ROWS, COLS)], ['lm_head', onHead]] as const) {
      for (const extra of [['--dtype', 'f8_e4m3'], ['--dtype', 'f8_e5m2'], ['--dtype', 'f8_e4m3', '--dtype-merged-only']]) {
        const { run, out, lines } = await cli(baseFolder(VARIANTS[0]), adapter, extra);
        expect(run.code, `${where} ${extra.join(' ')}`).not.toBe(0);
        expect(lines, `${where} ${extra.join(' ')}`).toHaveLength(1);
        expect(lines[0].slice(lines[0].indexOf(': tensor "') + 2), `${where} ${extra.join(' ')}`).toEqual(
          `tensor "${Q}.weight" (ModelOpt FP8) keeps its codes and scales or is written dequantized: --dtype ${extra[1]} would convert its scale tensors (such as "${Q}.weight_scale") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`,
        );
        expect(existsSync(out)).toBe(false);
      }
    }
  });
});

// --- ModelOpt NVFP4 -----------------------------------------------------------------------------

describe('ModelOpt NVFP4 (nvidia/Llama-3.1-8B-Instruct-FP4)', () => {
  const COLS = 208; // 13 groups of 16 inputs
  const ROWS: Record<string, number> = { [Q]: 37, [K]: 21, [V]: 21 };
  const HF_QUANT = { producer: { name: 'modelopt', version: '0.29.0' }, quantization: { quant_algo: 'NVFP4', kv_cache_quant_algo: 'FP8', group_size: 16, exclude_modules: ['lm_head'] } };
  const CONFIG = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, torch_dtype: 'bfloat16',
    quantization_config: { quant_method: 'modelopt', quant_algo: 'NVFP4', group_size: 16, kv_cache_scheme: { num_bits: 8, type: 'float', dynamic: false }, ignore: ['lm_head'] },
  };

  function baseFolder(): Record<string, Uint8Array | string> {
    const tensors: FixtureTensor[] = [
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, 'BF16')) },
    ];
    for (const m of [Q, K, V]) {
      const rows = ROWS[m];
      tensors.push({ name: `${m}.weight`, dtype: 'U8', shape: [rows, COLS / 2], data: Array.from({ length: (rows * COLS) / 2 }, () => Math.floor(rand() * 256)) });
      tensors.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape: [rows, COLS / 16], data: Array.from({ length: (rows * COLS) / 16 }, (_, i) => (i % 29 === 0 ? randomE4m3(1, 7) : randomE4m3(0x28, 0x5f))) });
      // k_proj's drawn value happens to round the same in both orders everywhere: a fixed one that does not.
      const drawn = Math.fround(0.000731 + rand() * 0.0001);
      tensors.push({ name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: [m === K ? Math.fround(0.00078) : drawn] });
      tensors.push({ name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0017)] });
    }
    tensors.push({ name: `${K}.k_scale`, dtype: 'F32', shape: [], data: [1] });
    tensors.push({ name: `${V}.v_scale`, dtype: 'F32', shape: [], data: [1] });
    tensors.push({ name: 'lm_head.weight', dtype: 'BF16', shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, 'BF16')) });
    return { 'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(CONFIG), 'hf_quant_config.json': JSON.stringify(HF_QUANT) };
  }

  /**
   * W as ModelOpt dequantizes it, f32(e2m1(nibble) × f32(e4m3(its block's scale) × weight_scale_2)),
   * or (`exact`) the product e2m1 × e4m3 × weight_scale_2 in float64; element 2k is the low nibble of byte k.
   */
  const dequantized = (base: Map<string, DecodedTensor>, m: string, exact = false) => {
    const packed = base.get(`${m}.weight`)!.bytes;
    const blocks = base.get(`${m}.weight_scale`)!.bytes;
    const global = base.get(`${m}.weight_scale_2`)!.values[0];
    const rows = ROWS[m];
    const w = new Float64Array(rows * COLS);
    for (let i = 0; i < rows; i++) for (let j = 0; j < COLS; j++) {
      const byte = packed[(i * COLS + j) >> 1];
      const nibble = j % 2 === 0 ? byte & 0x0f : byte >> 4;
      const block = blocks[i * (COLS / 16) + Math.floor(j / 16)];
      w[i * COLS + j] = exact ? e2m1Value(nibble) * e4m3Value(block) * global : modelOptNvfp4Value(nibble, block, global);
    }
    return w;
  };

  const base = baseFolder();
  const adapter = adapterFolder(ROWS, COLS);
  const original = decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors;
  const lora = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;

  it('the fixture holds values where ModelOpt\'s float32 order and the exact product round to different f32 values (so the f32 outputs below tell them apart)', () => {
    for (const m of [Q, K, V]) {
      const ours = dequantized(original, m), exact = dequantized(original, m, true);
      expect(ours.filter((x, i) => x !== Math.fround(exact[i])).length, m).toBeGreaterThan(20);
    }
  });

  for (const backendName of ['cpu', 'webgpu']) {
    it(`on ${backendName}: --dtype bf16 and f32 write W' rounded once, every NVFP4 weight dequantized, its scales and the quantization config gone`, async () => {
      for (const dtype of ['BF16', 'F32'] as const) {
        const { weights, config, paths } = await merge(base, adapter, backends[backendName]!, dtype.toLowerCase());
        expect(config.quantization_config).toBeUndefined();
        expect(paths).not.toContain('hf_quant_config.json');
        expect([...weights.keys()].sort()).toEqual(['lm_head.weight', 'model.embed_tokens.weight', `${K}.weight`, `${Q}.weight`, `${V}.weight`].sort());
        for (const m of [Q, K, V]) {
          const w = weights.get(`${m}.weight`)!;
          expect([w.dtype, w.shape], m).toEqual([dtype, [ROWS[m], COLS]]);
          const real = addLora(dequantized(original, m), ROWS[m], COLS, lora, m);
          // f32: where the float64 truth (off by a few 2^-53 of itself) straddles a rounding boundary, either neighbour.
          const near = (x: number, got: number) => (dtype === 'BF16' ? [x] : [x, x * (1 + 2 ** -50), x * (1 - 2 ** -50)]).some((t) => roundForDType(t, dtype) === got);
          const wrong = real.findIndex((x, i) => !near(x, w.values[i]));
          expect(wrong, `${m} in ${dtype}: element ${wrong}`).toBe(-1);
        }
      }
    });
  }

  it('the plan says how it is merged; without --dtype the merge is refused in one line and nothing is written', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes.join('\n')).toMatch(/3 ModelOpt NVFP4 weights .*written dequantized, with --dtype bf16 \(or f16, f32\) only/);
    for (const extra of [[], ['--dtype', 'f8_e4m3']]) {
      const { run, out, lines } = await cli(base, adapter, extra);
      expect(run.code, extra.join(' ')).not.toBe(0);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/ModelOpt NVFP4 weights are written only dequantized .*--dtype bf16/);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('--dtype bf16 --dtype-merged-only: one line naming NVFP4, offering no --dtype-less merge (it is refused), nothing written', async () => {
    const { run, out, lines } = await cli(base, adapter, ['--dtype', 'bf16', '--dtype-merged-only']);
    expect(run.code).not.toBe(0);
    expect(lines).toEqual([expect.stringMatching(/^error: .*: --dtype-merged-only /)]);
    expect(lines[0].replace(/^error: .*?: --dtype-merged-only/, '--dtype-merged-only')).toBe(
      '--dtype-merged-only would leave its ModelOpt NVFP4 weights half dequantized; leave it out (every ModelOpt NVFP4 weight is then dequantized to that dtype: re-quantizing to NVFP4 as ModelOpt does is not supported)',
    );
    expect(existsSync(out)).toBe(false);
  });

  it('W4A16_NVFP4 named in hf_quant_config.json alone (no input_scale, config.json without quantization_config): dequantized the same way', async () => {
    const tensors = [...original].filter(([name]) => !name.endsWith('input_scale')).map(([name, t]): FixtureTensor => ({ name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    const { quantization_config: _, ...plain } = CONFIG;
    const files = {
      'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(plain),
      'hf_quant_config.json': JSON.stringify({ ...HF_QUANT, quantization: { ...HF_QUANT.quantization, quant_algo: 'W4A16_NVFP4' } }),
    };
    const { weights, paths } = await merge(files, adapter, backends.cpu!, 'bf16');
    expect(paths).not.toContain('hf_quant_config.json');
    const w = weights.get(`${Q}.weight`)!;
    const expected = addLora(dequantized(original, Q), ROWS[Q], COLS, lora, Q).map((x) => roundForDType(x, 'BF16'));
    expect(w.values.findIndex((x, i) => x !== expected[i])).toBe(-1);
  });

  it('a block scale table that does not fit the weight is refused naming the tensor', async () => {
    const tensors = [...original].map(([name, t]): FixtureTensor => (name === `${Q}.weight_scale`
      ? { name, dtype: 'F8_E4M3', shape: [ROWS[Q], 6], data: Array.from({ length: ROWS[Q] * 6 }, () => 1) }
      : { name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) }));
    await expect(prepareMerge(memoryInputFileSet({ ...base, 'model.safetensors': buildSafetensors(tensors) }, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: 1 }]))
      .rejects.toThrow(/q_proj\.weight is not an NVFP4 weight as ModelOpt writes it \(.*q_proj\.weight_scale has 6 scales per row for 208 inputs in groups of 16\)/);
  });

  it('a group_size that is no positive whole number is refused naming the file and the field, also where the scales fit it', async () => {
    // 6.5 inputs per scale over 208 columns is 32 scales a row: with such a table the weights were
    // decoded with fractional groups, which neither ModelOpt nor vLLM reads.
    const withScales = (n: number) => buildSafetensors([...original].map(([name, t]): FixtureTensor => (name.endsWith('.weight_scale') && t.dtype === 'F8_E4M3'
      ? { name, dtype: 'F8_E4M3', shape: [t.shape[0], n], data: Array.from({ length: t.shape[0] * n }, () => 1) }
      : { name, dtype: t.dtype, shape: t.shape, data: Array.from(t.values) })));
    const cases: [string, number, Record<string, Uint8Array | string>, RegExp][] = [];
    for (const [text, scales, shown] of [['6.5', 32, '6.5'], ['NaN', 13, 'NaN'], ['-16', 13, '-16'], ['0', 13, '0'], ['Infinity', 13, 'Infinity'], ['1e300', 1, '1e+300'], ['"16"', 13, '"16"']] as const) {
      cases.push([text, scales, {
        'config.json': JSON.stringify({ ...CONFIG, quantization_config: { ...CONFIG.quantization_config, group_size: 16 } }).replace('"group_size":16', `"group_size":${text}`),
      }, new RegExp(`^model: config\\.json quantization_config\\.group_size is ${shown.replace(/[.+]/g, '\\$&')}; ModelOpt's group_size is a positive whole number of inputs per scale$`)]);
      cases.push([text, scales, {
        'config.json': JSON.stringify({ ...CONFIG, quantization_config: undefined }),
        'hf_quant_config.json': JSON.stringify(HF_QUANT).replace('"group_size":16', `"group_size":${text}`),
      }, new RegExp(`^model: hf_quant_config\\.json quantization\\.group_size is ${shown.replace(/[.+]/g, '\\$&')}; ModelOpt's group_size is a positive whole number of inputs per scale$`)]);
    }
    for (const [text, scales, files, message] of cases) {
      const folder = memoryInputFileSet({ ...base, ...files, 'model.safetensors': withScales(scales) }, 'model');
      const error = await prepareMerge(folder, [{ files: memoryInputFileSet(adapter, 'adapter'), weight: 1 }]).then(() => undefined, (e: Error) => e);
      expect(error?.message ?? 'no error: prepared', `${text}: ${Object.keys(files).join(', ')}`).toMatch(message);
    }
  });
});

// --- ModelOpt KV-cache-only -------------------------------------------------------------------

describe('ModelOpt config that quantizes only the KV cache (quant_algo null, kv_cache_quant_algo FP8)', () => {
  const COLS = 75;
  const ROWS: Record<string, number> = { [Q]: 40, [K]: 24, [V]: 24 };
  const QUANT = { quant_algo: null, kv_cache_quant_algo: 'FP8', exclude_modules: ['lm_head'] };
  // The weights stay bf16; the KV cache's scales sit beside k_proj and v_proj.
  const tensors: FixtureTensor[] = [
    ...[Q, K, V].map((m) => ({ name: `${m}.weight`, dtype: 'BF16' as const, shape: [ROWS[m], COLS], data: randomValues(ROWS[m] * COLS, rand, 0.5) })),
    { name: `${K}.k_scale`, dtype: 'F32', shape: [], data: [0.0234375] },
    { name: `${V}.v_scale`, dtype: 'F32', shape: [], data: [0.01171875] },
  ];
  const llama = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16' };
  const VARIANTS: Record<string, Record<string, Uint8Array | string>> = {
    'hf_quant_config.json': {
      'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(llama),
      'hf_quant_config.json': JSON.stringify({ producer: { name: 'modelopt', version: '0.29.0' }, quantization: QUANT }),
    },
    'config.json quantization_config': {
      'model.safetensors': buildSafetensors(tensors),
      'config.json': JSON.stringify({ ...llama, quantization_config: { quant_method: 'modelopt', ...QUANT } }),
    },
  };
  const adapter = adapterFolder(ROWS, COLS);
  const lora = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;

  for (const [variant, base] of Object.entries(VARIANTS)) {
    const original = decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors;
    for (const backendName of ['cpu', 'webgpu']) {
      it(`${variant} on ${backendName}: the float weights merge exactly, the config and KV-cache scales are kept, and the plan says so`, async () => {
        const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
        const notes = prepared.plan.notes;
        await prepared.close();
        expect(notes.some((n) => n.includes(`ModelOpt config (${variant === 'hf_quant_config.json' ? 'hf_quant_config.json' : 'config.json quantization_config'}) quantizes only the KV cache (kv_cache_quant_algo FP8)`)), JSON.stringify(notes)).toBe(true);
        const { weights, config, paths } = await merge(base, adapter, backends[backendName]!);
        // Kept, quantization_config included; the written dtype is also named as transformers 4.56+ reads it.
        expect(config).toEqual({ ...JSON.parse(base['config.json'] as string), dtype: 'bfloat16' });
        if (variant === 'hf_quant_config.json') expect(paths).toContain('hf_quant_config.json');
        for (const m of [Q, V]) {
          const w = original.get(`${m}.weight`)!;
          const want = addLora(Float64Array.from(w.values), ROWS[m], COLS, lora, m).map((x) => roundForDType(x, 'BF16'));
          const got = weights.get(`${m}.weight`)!;
          expect(got.dtype).toBe('BF16');
          const wrong = Array.from(got.values).findIndex((x, i) => x !== want[i]);
          expect(wrong, `${m}: element ${wrong}`).toBe(-1);
        }
        for (const key of [`${K}.weight`, `${K}.k_scale`, `${V}.v_scale`]) expect(weights.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
      });
    }
  }

  it('with --dtype f16, bf16 or f8_e4m3 the weights take that type (W\' rounded once) and the KV-cache scales keep their F32 bytes, as the kept config\'s runtime reads them', async () => {
    const base = VARIANTS['config.json quantization_config'];
    const original = decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors;
    for (const dtype of ['F16', 'BF16', 'F8_E4M3'] as const) {
      const { weights, config } = await merge(base, adapter, backends.cpu!, dtype.toLowerCase());
      expect(config.quantization_config, dtype).toEqual(JSON.parse(base['config.json'] as string).quantization_config);
      for (const key of [`${K}.k_scale`, `${V}.v_scale`]) {
        expect([weights.get(key)!.dtype, weights.get(key)!.bytes], `${key} with ${dtype}`).toEqual(['F32', original.get(key)!.bytes]);
      }
      for (const m of [Q, K, V]) {
        const want = addLora(Float64Array.from(original.get(`${m}.weight`)!.values), ROWS[m], COLS, lora, m).map((x) => roundForDType(x, dtype));
        const got = weights.get(`${m}.weight`)!;
        expect(got.dtype).toBe(dtype);
        const wrong = Array.from(got.values).findIndex((x, i) => x !== want[i]);
        expect(wrong, `${m} in ${dtype}: element ${wrong}`).toBe(-1);
      }
    }
  });

  it('a weight with a weight_scale beside it is still refused, whatever the config says', async () => {
    const withScale = [...tensors, { name: `${Q}.weight_scale`, dtype: 'F32' as const, shape: [], data: [0.01] }];
    const base = { ...VARIANTS['config.json quantization_config'], 'model.safetensors': buildSafetensors(withScale) };
    const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    const problems = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/module "model\.layers\.0\.self_attn\.q_proj": the base tensor model\.layers\.0\.self_attn\.q_proj\.weight is stored quantized, with its scale in model\.layers\.0\.self_attn\.q_proj\.weight_scale/);
  });
});
