/**
 * LoRAs merged into fp8 LLM checkpoints that store codes beside scale tensors, as the Hub ships
 * them: block-wise fp8 (Qwen3-*-FP8, DeepSeek-V3: `weight_scale_inv` F32 per 128 × 128 block,
 * quantization_config quant_method "fp8") and compressed-tensors FP8 (RedHat Llama-3.1-8B-Instruct-
 * FP8-dynamic: `weight_scale` BF16 per output channel; the static "-FP8" kind with `input_scale`;
 * a per-tensor scale). Shapes are not multiples of 128 (partial blocks). Truth is float64 written
 * here: W = code × scale of its block, W' = W + s·B·A; the output is W' re-quantized by the
 * quantizer's own rule (written out below) with the scales recomputed, or, with --dtype, W'
 * rounded once with the scales and quantization_config gone. Both backends; slabs small enough
 * that every weight streams in several.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { peftLoraOn } from './helpers/adapter-fixtures.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { CpuWorkerPool } from '../src/engine/cpu/cpu-worker-pool.js';
import { mergeFolders } from './helpers/cli.js';
import { threadBackends } from './helpers/thread-backends.js';
import { compressedTensorsRequantize } from './helpers/e4m3-by-hand.js';
import { hfModelFolder, readMergedFolder } from './helpers/hf-folder.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';

const rand = seededRandom(90210);
const ROWS = 300; // 3 row blocks of 128, the last one 44 rows
const COLS = 200; // 2 column blocks, the last one 72 columns
const KV_ROWS = 130;
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;

// --- the base models ------------------------------------------------------------------------

/** Random e4m3fn codes over the whole range, a few exact zeros among them. */
function codes(n: number): number[] {
  return Array.from(randomValues(n, rand), (x, i) => (i % 97 === 0 ? 0 : roundForDType(x * 440, 'F8_E4M3')));
}

type Kind = 'block' | 'channel' | 'channel-static' | 'tensor';
const SCALE_NAME: Record<Kind, string> = { block: 'weight_scale_inv', channel: 'weight_scale', 'channel-static': 'weight_scale', tensor: 'weight_scale' };

/** The scale tensor of a weight of `rows` × `cols` for each kind, with the shapes and dtypes the Hub's files have. */
function scaleTensor(kind: Kind, name: string, rows: number, cols = COLS): FixtureTensor {
  const pick = () => 0.0005 + rand() * 0.0001;
  if (kind === 'block') {
    const shape = [Math.ceil(rows / 128), Math.ceil(cols / 128)];
    return { name, dtype: 'F32', shape, data: Array.from({ length: shape[0] * shape[1] }, () => Math.fround(pick())) };
  }
  if (kind === 'tensor') return { name, dtype: 'F32', shape: [1], data: [Math.fround(pick())] };
  return { name, dtype: 'BF16', shape: [rows, 1], data: Array.from({ length: rows }, () => roundForDType(pick(), 'BF16')) };
}

function config(kind: Kind): Record<string, unknown> {
  if (kind === 'block') {
    return {
      architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: COLS, torch_dtype: 'bfloat16',
      quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] },
    };
  }
  const staticInput = kind === 'channel-static';
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, torch_dtype: 'bfloat16',
    quantization_config: {
      quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed', ignore: ['lm_head'],
      config_groups: {
        group_0: {
          targets: ['Linear'],
          weights: { num_bits: 8, type: 'float', strategy: kind === 'tensor' ? 'tensor' : 'channel', symmetric: true, dynamic: false, observer: 'minmax' },
          input_activations: staticInput
            ? { num_bits: 8, type: 'float', strategy: 'tensor', symmetric: true, dynamic: false }
            : { num_bits: 8, type: 'float', strategy: 'token', symmetric: true, dynamic: true },
        },
      },
      // The static kind also quantizes the KV cache (RedHat's "-FP8-KV" checkpoints): k_scale and v_scale per attention layer.
      ...(staticInput ? { kv_cache_scheme: { num_bits: 8, type: 'float', strategy: 'tensor', dynamic: false, symmetric: true } } : {}),
    },
  };
}

function baseTensors(kind: Kind): FixtureTensor[] {
  const tensors: FixtureTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, 'BF16')) },
    { name: `${L}.input_layernorm.weight`, dtype: 'BF16', shape: [COLS], data: Array.from({ length: COLS }, () => 1) },
  ];
  for (const [m, rows] of [[Q, ROWS], [K, KV_ROWS], [V, KV_ROWS]] as const) {
    tensors.push({ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, COLS], data: codes(rows * COLS) });
    tensors.push(scaleTensor(kind, `${m}.${SCALE_NAME[kind]}`, rows));
    if (kind === 'channel-static') tensors.push({ name: `${m}.input_scale`, dtype: 'BF16', shape: [1], data: [roundForDType(0.02, 'BF16')] });
  }
  if (kind === 'channel-static') {
    tensors.push({ name: `${L}.self_attn.k_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0371)] });
    tensors.push({ name: `${L}.self_attn.v_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0123)] });
  }
  tensors.push({ name: 'lm_head.weight', dtype: 'BF16', shape: [64, COLS], data: Array.from(randomValues(64 * COLS, rand), (x) => roundForDType(x, 'BF16')) });
  return tensors;
}

function baseFolder(kind: Kind): Record<string, Uint8Array | string> {
  return { 'model.safetensors': buildSafetensors(baseTensors(kind)), 'config.json': JSON.stringify(config(kind)) };
}

// --- the adapter: PEFT LoRA, r = 16 on q_proj (large enough to push block maxima), r = 1 on v_proj --

const ALPHA = 16;
const RANKS = { [Q]: 16, [V]: 1 } as Record<string, number>;
function adapterFolder(extra: Record<string, unknown> = {}): Record<string, Uint8Array | string> {
  const tensors: FixtureTensor[] = [];
  for (const [m, r] of Object.entries(RANKS)) {
    const rows = m === Q ? ROWS : KV_ROWS;
    tensors.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, COLS], data: Array.from(randomValues(r * COLS, rand, 0.3), Math.fround) });
    tensors.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows, r], data: Array.from(randomValues(rows * r, rand, 0.3), Math.fround) });
  }
  return {
    'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 16, lora_alpha: ALPHA, rank_pattern: { v_proj: 1 }, target_modules: ['q_proj', 'v_proj'], ...extra }),
    'adapter_model.safetensors': buildSafetensors(tensors),
  };
}
const WEIGHT = 0.8;

// --- float64 truth ----------------------------------------------------------------------------

interface Grid { blockRows: number; blockCols: number }
const gridOf = (kind: Kind, rows: number, cols = COLS): Grid =>
  kind === 'block' ? { blockRows: 128, blockCols: 128 } : kind === 'tensor' ? { blockRows: rows, blockCols: cols } : { blockRows: 1, blockCols: cols };

/** W' in f64: code × its block's scale, plus weight · α/r · B·A for the modules the adapter has. */
function truth(base: Map<string, DecodedTensor>, adapter: Map<string, DecodedTensor>, kind: Kind, m: string): Float64Array {
  const w = base.get(`${m}.weight`)!;
  const [rows, cols] = w.shape;
  const scales = base.get(`${m}.${SCALE_NAME[kind]}`)!.values;
  const { blockRows, blockCols } = gridOf(kind, rows, cols);
  const nCB = Math.ceil(cols / blockCols);
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    out[i * cols + j] = w.values[i * cols + j] * scales[Math.floor(i / blockRows) * nCB + Math.floor(j / blockCols)];
  }
  const a = adapter.get(`base_model.model.${m}.lora_A.weight`);
  if (!a) return out;
  const b = adapter.get(`base_model.model.${m}.lora_B.weight`)!;
  const r = a.shape[0];
  const s = WEIGHT * ALPHA / r;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    let d = 0;
    for (let k = 0; k < r; k++) d += b.values[i * r + k] * a.values[k * cols + j];
    out[i * cols + j] += s * d;
  }
  return out;
}

/**
 * The quantizers' rules on float32 values, block by block (amax = the block's largest magnitude):
 * - block fp8 (transformers FineGrainedFP8): q = f32(448 / amax); code = e4m3(clamp(f32(w·q), ±448)); scale_inv = f32(1 / q);
 * - compressed-tensors: s = max(f32(amax / 448), 2^-23), stored in the scale's dtype; code = e4m3(clamp(f32(w / s), ±448))
 *   (compressedTensorsRequantize, e4m3-by-hand.ts).
 * A block of zeros keeps its scale.
 */
function requantize(values: Float64Array, rows: number, cols: number, grid: Grid, kind: Kind, oldScales: Float64Array, scaleDtype: 'F32' | 'BF16') {
  const w32 = values.map(Math.fround);
  const nRB = Math.ceil(rows / grid.blockRows);
  const nCB = Math.ceil(cols / grid.blockCols);
  const codesOut = new Float64Array(rows * cols);
  const scales = Float64Array.from(oldScales);
  const e4m3 = (x: number) => roundForDType(Math.min(448, Math.max(-448, x)), 'F8_E4M3');
  for (let rb = 0; rb < nRB; rb++) for (let cb = 0; cb < nCB; cb++) {
    const cells: number[] = [];
    for (let i = rb * grid.blockRows; i < Math.min(rows, (rb + 1) * grid.blockRows); i++) {
      for (let j = cb * grid.blockCols; j < Math.min(cols, (cb + 1) * grid.blockCols); j++) cells.push(i * cols + j);
    }
    const amax = cells.reduce((m, c) => Math.max(m, Math.abs(w32[c])), 0);
    if (kind === 'block') {
      if (amax === 0) continue;
      const q = Math.fround(448 / amax);
      scales[rb * nCB + cb] = Math.fround(1 / q);
      for (const c of cells) codesOut[c] = e4m3(Math.fround(w32[c] * q));
    } else {
      const again = compressedTensorsRequantize(cells.map((c) => w32[c]), scaleDtype);
      scales[rb * nCB + cb] = again.scale;
      cells.forEach((c, k) => (codesOut[c] = again.codes[k]));
    }
  }
  return { codes: codesOut, scales };
}


/** The merged fp8 weights and scales against the truth re-quantized by the rule above; untouched ones byte for byte. */
function expectRequantized(weights: Map<string, DecodedTensor>, original: Map<string, DecodedTensor>, lora: Map<string, DecodedTensor>, kind: Kind): void {
  const scaleKey = (m: string) => `${m}.${SCALE_NAME[kind]}`;
  let grown = 0;
  for (const m of [Q, K, V]) {
    const rows = m === Q ? ROWS : KV_ROWS;
    const grid = gridOf(kind, rows);
    const oldScale = original.get(scaleKey(m))!;
    const merged = weights.get(`${m}.weight`)!;
    const scale = weights.get(scaleKey(m))!;
    expect(merged.dtype, m).toBe('F8_E4M3');
    expect(scale.dtype, m).toBe(oldScale.dtype);
    expect(scale.shape, m).toEqual(oldScale.shape);
    if (m === K) {
      // No adapter module: codes and scales byte for byte.
      expect(merged.bytes, m).toEqual(original.get(`${m}.weight`)!.bytes);
      expect(scale.bytes, m).toEqual(oldScale.bytes);
      continue;
    }
    const real = truth(original, lora, kind, m);
    const expected = requantize(real, rows, COLS, grid, kind, oldScale.values, oldScale.dtype as 'F32' | 'BF16');
    expect(Array.from(scale.values), `${m} scales`).toEqual(Array.from(expected.scales));
    const mismatch = merged.values.findIndex((x, i) => x !== expected.codes[i]);
    expect(mismatch, `${m}: element ${mismatch}`).toBe(-1);
    // The update grows blocks past what their old scale can hold: kept, they would saturate.
    grown += real.filter((x, i) => {
      const nCB = Math.ceil(COLS / grid.blockCols);
      const s = oldScale.values[Math.floor(Math.floor(i / COLS) / grid.blockRows) * nCB + Math.floor((i % COLS) / grid.blockCols)];
      return Math.abs(x) > 448 * s;
    }).length;
  }
  expect(grown).toBeGreaterThan(0);
}

// --- running merges -----------------------------------------------------------------------------

const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

async function merge(base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, backend: MergeBackend, outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
  expect(prepared.plan.problems).toEqual([]);
  const output = createBlobOutputTarget();
  try {
    // Small slabs: every weight streams in several (row slabs on 128-row block boundaries).
    await mergeModel({ prepared, output, backend, outDtype, slabBytes: 4096 });
  } finally {
    await prepared.close();
  }
  const files = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
  return { weights: decodeSafetensors(files.get('model.safetensors')!).tensors, config: JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown> };
}

const KINDS: Kind[] = ['block', 'channel', 'channel-static', 'tensor'];
const LABEL: Record<Kind, string> = {
  block: 'block-wise fp8 (Qwen3-8B-FP8)',
  channel: 'compressed-tensors FP8-dynamic, per channel (RedHat Llama-3.1-8B-Instruct-FP8-dynamic)',
  'channel-static': 'compressed-tensors FP8 with static input_scale (RedHat Llama-3.1-8B-Instruct-FP8)',
  tensor: 'compressed-tensors FP8, one scale per tensor',
};

for (const kind of KINDS) {
  const base = baseFolder(kind);
  const adapter = adapterFolder();
  const original = decodeSafetensors(base['model.safetensors'] as Uint8Array).tensors;
  const lora = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
  const scaleKey = (m: string) => `${m}.${SCALE_NAME[kind]}`;

  for (const backendKind of ['cpu', 'webgpu'] as const) {
    describe(`${LABEL[kind]} on ${backendKind}`, () => {
      it('default: fp8 again, each block re-quantized with its scale recomputed by the quantizer\'s rule', async () => {
        const { weights, config: cfg } = await merge(base, adapter, backends[backendKind]!);
        expect(cfg).toEqual(config(kind)); // quantization_config and torch_dtype as they were
        expectRequantized(weights, original, lora, kind);
        if (kind === 'channel-static') {
          for (const key of [Q, K, V].map((m) => `${m}.input_scale`).concat([`${L}.self_attn.k_scale`, `${L}.self_attn.v_scale`])) {
            expect(weights.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
          }
        }
        expect(weights.get('lm_head.weight')!.bytes).toEqual(original.get('lm_head.weight')!.bytes);
      });

      it('--dtype bf16: W\' rounded once, every fp8 weight dequantized, scales and quantization_config gone', async () => {
        const { weights, config: cfg } = await merge(base, adapter, backends[backendKind]!, 'bf16');
        expect(cfg.quantization_config).toBeUndefined();
        expect(cfg.torch_dtype).toBe('bfloat16');
        expect([...weights.keys()].filter((k) => /scale/.test(k))).toEqual([]);
        for (const m of [Q, K, V]) {
          const merged = weights.get(`${m}.weight`)!;
          expect(merged.dtype).toBe('BF16');
          const expected = truth(original, lora, kind, m).map((x) => roundForDType(x, 'BF16'));
          const mismatch = merged.values.findIndex((x, i) => x !== expected[i]);
          expect(mismatch, `${m}: element ${mismatch}`).toBe(-1);
        }
      });
    });
  }
}

describe('weights large enough for the CPU worker threads: each 128-row band merged in pieces on every thread, then re-quantized whole', () => {
  // 300 × 600: three row blocks (the last 44 rows) of five column blocks (the last 88 columns).
  const rows = 300, cols = 600;
  // The pools run the built worker script (the helper builds it where it is missing).
  const threads = threadBackends();
  const folders = (kind: Kind, r: number) => {
    const tensors: FixtureTensor[] = [
      { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [8, cols], data: Array.from(randomValues(8 * cols, rand), (x) => roundForDType(x, 'BF16')) },
      { name: `${Q}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes(rows * cols) },
      scaleTensor(kind, `${Q}.${SCALE_NAME[kind]}`, rows, cols),
      { name: `${K}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], data: codes(rows * cols) },
      scaleTensor(kind, `${K}.${SCALE_NAME[kind]}`, rows, cols),
    ];
    const cfg = { ...config(kind), hidden_size: cols };
    const lora: FixtureTensor[] = [
      { name: `base_model.model.${Q}.lora_A.weight`, dtype: 'F32', shape: [r, cols], data: Array.from(randomValues(r * cols, rand, 0.3), Math.fround) },
      { name: `base_model.model.${Q}.lora_B.weight`, dtype: 'F32', shape: [rows, r], data: Array.from(randomValues(rows * r, rand, 0.3), Math.fround) },
    ];
    return {
      base: { 'model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify(cfg) },
      adapter: {
        'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: ALPHA, target_modules: ['q_proj'] }),
        'adapter_model.safetensors': buildSafetensors(lora),
      },
    };
  };
  const pools: CpuWorkerPool[] = [];
  const made: MergeBackend[] = [];
  afterAll(() => made.forEach((b) => b.dispose()));
  const executors = {
    'three threads': () => {
      const pool = threads.pool(3);
      pools.push(pool);
      return threads.backend(pool);
    },
    'plain JavaScript': () => new CpuBackend('test', { executor: 'js' }),
  };

  const cases: [Kind, number, keyof typeof executors][] = [
    ['block', 1, 'three threads'], ['block', 128, 'three threads'], ['block', 1, 'plain JavaScript'],
    ['channel', 128, 'three threads'], ['channel', 1, 'plain JavaScript'], ['tensor', 1, 'three threads'],
  ];
  for (const [kind, r, name] of cases) {
    const make = executors[name];
    it(`${LABEL[kind]}, r = ${r}, ${name}: re-quantized and dequantized as the truth, with whole slabs and with one band per slab`, async () => {
      const { base, adapter } = folders(kind, r);
      const original = decodeSafetensors(base['model.safetensors']).tensors;
      const a = decodeSafetensors(adapter['adapter_model.safetensors']).tensors;
      const real = truth(original, a, kind, Q);
      const oldScale = original.get(`${Q}.${SCALE_NAME[kind]}`)!;
      const expected = requantize(real, rows, cols, gridOf(kind, rows, cols), kind, oldScale.values, oldScale.dtype as 'F32' | 'BF16');
      const backend = make();
      made.push(backend);
      const sentBefore = pools.at(-1)?.sent.blocks ?? 0;
      for (const slabBytes of [undefined, 4096]) {
        const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
        const output = createBlobOutputTarget();
        await mergeModel({ prepared, output, backend, slabBytes });
        await prepared.close();
        const written = decodeSafetensors(new Uint8Array(await output.files().find((f) => f.path === 'model.safetensors')!.blob.arrayBuffer())).tensors;
        const q = written.get(`${Q}.weight`)!;
        expect(Array.from(written.get(`${Q}.${SCALE_NAME[kind]}`)!.values), `scales, slabs of ${slabBytes ?? 'any size'}`).toEqual(Array.from(expected.scales));
        const wrong = q.values.findIndex((x, i) => x !== expected.codes[i]);
        expect(wrong, `element ${wrong}, slabs of ${slabBytes ?? 'any size'}`).toBe(-1);
      }
      // Dequantized: q_proj merged, k_proj (no adapter module) code × scale alone, where a
      // sixteenth of the products are f32 ties.
      const untouched = truth(original, a, kind, K);
      for (const dtype of ['BF16', 'F32'] as const) {
        const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
        const output = createBlobOutputTarget();
        await mergeModel({ prepared, output, backend, outDtype: dtype.toLowerCase() });
        await prepared.close();
        const written = decodeSafetensors(new Uint8Array(await output.files().find((f) => f.path === 'model.safetensors')!.blob.arrayBuffer())).tensors;
        for (const [m, want] of [[Q, real], [K, untouched]] as const) {
          const got = written.get(`${m}.weight`)!;
          expect(got.dtype).toBe(dtype);
          // The float64 truth is off by a few 2^-53 of itself (two roundings): where that
          // straddles a rounding boundary of f32 either neighbour is the truth rounded (the
          // exact ties are settled in correct-rounding.test.ts against exact arithmetic).
          const near = (x: number, i: number) => [x, x * (1 + 2 ** -50), x * (1 - 2 ** -50)].some((t) => roundForDType(t, dtype) === got.values[i]);
          const wrong = want.findIndex((x, i) => !near(x, i));
          expect(wrong, `${m} in ${dtype}: element ${wrong}`).toBe(-1);
        }
      }
      // The threads took pieces of the bands (not the calling thread alone).
      if (name === 'three threads') expect(pools.at(-1)!.sent.blocks).toBeGreaterThan(sentBefore);
    });
  }
});

describe('KV-cache scales (compressed-tensors kv_cache_scheme: self_attn.k_scale, v_scale)', () => {
  it('kept with the fp8 weights; left out with --dtype, which the plan\'s note says beforehand', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(baseFolder('channel-static'), 'model'), [{ files: memoryInputFileSet(adapterFolder(), 'adapter'), weight: WEIGHT }]);
    await prepared.close();
    const note = prepared.plan.notes.find((n) => n.includes('KV-cache'));
    expect(note).toMatch(/--dtype also leaves out its 2 KV-cache scale tensors \(such as model\.layers\.0\.self_attn\.k_scale\)/);
    // (the merges above check both outputs: kept byte for byte, and no tensor named *scale* after --dtype bf16)
    const plain = await prepareMerge(memoryInputFileSet(baseFolder('channel'), 'model'), [{ files: memoryInputFileSet(adapterFolder(), 'adapter'), weight: WEIGHT }]);
    await plain.close();
    expect(plain.plan.notes.some((n) => n.includes('KV-cache'))).toBe(false);
  });
});

describe('a sharded block-wise fp8 folder (model-0000N-of-00003.safetensors and its index)', () => {
  const adapter = adapterFolder();
  const lora = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
  const mergeFolder = async (files: Record<string, Uint8Array | string>, outDtype?: string) => {
    const prepared = await prepareMerge(memoryInputFileSet(files, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    const output = createBlobOutputTarget();
    try {
      expect(prepared.plan.problems).toEqual([]);
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype, slabBytes: 4096 });
    } finally {
      await prepared.close();
    }
    return readMergedFolder(new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const))));
  };
  const byName = (tensors: FixtureTensor[], names: string[]) => names.map((n) => tensors.find((t) => t.name.endsWith(n))!);

  it('a scale in the shard after its weight is rewritten there; the index maps what was written', async () => {
    const tensors = baseTensors('block');
    const files = hfModelFolder(tensors, config('block'), { shards: 3 }); // q_proj.weight ends shard 1, its scale starts shard 2
    const original = readMergedFolder(new Map(Object.entries(files).filter(([, v]) => v instanceof Uint8Array) as [string, Uint8Array][])).tensors;
    const merged = await mergeFolder(files);
    expect(merged.shardOf.get(`${Q}.weight`)).toBe('model-00001-of-00003.safetensors');
    expect(merged.shardOf.get(`${Q}.weight_scale_inv`)).toBe('model-00002-of-00003.safetensors');
    expectRequantized(merged.tensors, original, lora, 'block');
    const index = merged.json('model.safetensors.index.json') as { weight_map: Record<string, string> };
    expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());

    const dequantized = await mergeFolder(files, 'bf16');
    const dIndex = dequantized.json('model.safetensors.index.json') as { weight_map: Record<string, string> };
    expect(Object.keys(dIndex.weight_map).filter((k) => k.includes('scale'))).toEqual([]);
    expect(Object.keys(dIndex.weight_map).sort()).toEqual([...dequantized.tensors.keys()].sort());
    expect(dequantized.json('config.json').quantization_config).toBeUndefined();
    const q = dequantized.tensors.get(`${Q}.weight`)!;
    const expected = truth(original, lora, 'block', Q).map((x) => roundForDType(x, 'BF16'));
    expect(q.values.findIndex((x, i) => x !== expected[i])).toBe(-1);
  });

  it('a merged weight whose scale sits in an earlier shard: refused in one line without --dtype, dequantized with it', async () => {
    const tensors = baseTensors('block');
    // [embed, norm, v_proj.weight_scale_inv] [q_proj.weight, q scale, k_proj.weight] [k scale, v_proj.weight, lm_head]
    const order = byName(tensors, ['embed_tokens.weight', 'input_layernorm.weight', 'v_proj.weight_scale_inv', 'q_proj.weight', 'q_proj.weight_scale_inv', 'k_proj.weight', 'k_proj.weight_scale_inv', 'v_proj.weight', 'lm_head.weight']);
    const files = hfModelFolder(order, config('block'), { shards: 3 });
    await expect(mergeFolder(files)).rejects.toThrow(/v_proj\.weight_scale_inv is stored in an earlier shard than model\.layers\.0\.self_attn\.v_proj\.weight.*--dtype bf16/);
    const dequantized = await mergeFolder(files, 'bf16');
    expect(dequantized.tensors.get(`${V}.weight`)!.dtype).toBe('BF16');
  });
});

describe('what stays refused, by name', () => {
  const temp = tempDirs();
  afterAll(temp.removeAll);
  const cli = (base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, extra: string[] = []) =>
    mergeFolders(temp.make, base, adapter, extra);

  it('DoRA on a block-wise fp8 weight: one line naming the module', async () => {
    const adapter = adapterFolder({ use_dora: true });
    const a = decodeSafetensors(adapter['adapter_model.safetensors'] as Uint8Array).tensors;
    const tensors: FixtureTensor[] = [...a].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: Array.from(t.values) }));
    tensors.push({ name: `base_model.model.${Q}.lora_magnitude_vector`, dtype: 'F32', shape: [ROWS], data: Array.from({ length: ROWS }, () => 1) });
    tensors.push({ name: `base_model.model.${V}.lora_magnitude_vector`, dtype: 'F32', shape: [KV_ROWS], data: Array.from({ length: KV_ROWS }, () => 1) });
    const { run, out, lines } = await cli(baseFolder('block'), { ...adapter, 'adapter_model.safetensors': buildSafetensors(tensors) });
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/DoRA on the block-wise fp8 weight model\.layers\.0\.self_attn\.(q|v)_proj\.weight .*not supported/);
    expect(existsSync(out)).toBe(false);
  });

  it('an F8_E4M3 weight without its scale tensor: its codes are no weights, so merging it or --dtype is refused in one line naming it', async () => {
    for (const kind of ['block', 'channel'] as const) {
      const tensors = baseTensors(kind).filter((t) => t.name !== `${Q}.${SCALE_NAME[kind]}`);
      for (const extra of [[], ['--dtype', 'bf16']]) {
        const { run, out, lines } = await cli({ ...baseFolder(kind), 'model.safetensors': buildSafetensors(tensors) }, adapterFolder(), extra);
        expect(run.code, `${kind} ${extra.join(' ')}`).not.toBe(0);
        expect(lines).toEqual([expect.stringMatching(new RegExp(`${Q}\\.weight.* F8_E4M3 codes with no ${Q}\\.${SCALE_NAME[kind]} beside them`))]);
        expect(existsSync(out)).toBe(false);
      }
    }
  });

  it('a weight_scale_inv holding the grid\'s count in another shape (transposed, flat): one line naming it, nothing written', async () => {
    // q_proj's grid is [3, 2]; its six scales as [2, 3] or [6] would be read into the wrong blocks.
    for (const shape of [[2, 3], [6]]) {
      const tensors = baseTensors('block').map((t) => (t.name === `${Q}.weight_scale_inv` ? { ...t, shape } : t));
      const { run, out, lines } = await cli({ ...baseFolder('block'), 'model.safetensors': buildSafetensors(tensors) }, adapterFolder(), ['--dtype', 'bf16']);
      expect(run.code, shape.join()).not.toBe(0);
      expect(lines).toEqual([expect.stringMatching(new RegExp(`tensor "${Q}\\.weight_scale_inv" has shape \\[${shape.join(', ')}\\], which is no grid of scales over ${Q}\\.weight \\[300, 200\\]`))]);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('--dtype f8_e4m3, f8_e5m2 and --dtype-merged-only: one line each, nothing written (no lock file beside --out either)', async () => {
    for (const extra of [['--dtype', 'f8_e4m3'], ['--dtype', 'f8_e5m2', '--dtype-merged-only'], ['--dtype', 'bf16', '--dtype-merged-only']]) {
      const { run, out, lines } = await cli(baseFolder('channel'), adapterFolder(), extra);
      expect(run.code, extra.join(' ')).not.toBe(0);
      expect(lines, extra.join(' ')).toHaveLength(1);
      expect(lines[0]).toMatch(extra[1].startsWith('f8')
        ? new RegExp(`\\(compressed-tensors fp8\\) keeps its codes and scales or is written dequantized: --dtype ${extra[1]} would convert its scale tensors`)
        : /: --dtype-merged-only would leave its compressed-tensors fp8 weights half dequantized; leave it out \(every compressed-tensors fp8 weight is then dequantized\) or leave out --dtype$/);
      expect(readdirSync(dirname(out)).sort(), extra.join(' ')).toEqual(['adapter', 'base']);
    }
  });

  it('scale_fmt "ue8m0" (DeepSeek-V3.1) over scales that are no powers of two: refused without --dtype in one line naming the scale, nothing left beside --out; merged with --dtype bf16', async () => {
    const cfg = config('block') as { quantization_config: Record<string, unknown> };
    cfg.quantization_config.scale_fmt = 'ue8m0';
    const base = { ...baseFolder('block'), 'config.json': JSON.stringify(cfg) };
    const refused = await cli(base, adapterFolder());
    expect(refused.run.code).not.toBe(0);
    expect(refused.lines).toEqual([expect.stringMatching(new RegExp(`tensor "${Q}\\.weight_scale_inv" holds \\S+ \\(block at row 0, column 0\\), not a power of two, though config\\.json's quantization_config\\.scale_fmt is "ue8m0": the file contradicts its config, .*; merge with --dtype bf16`))]);
    expect(readdirSync(dirname(refused.out)).sort()).toEqual(['adapter', 'base']);
    const dequantized = await cli(base, adapterFolder(), ['--dtype', 'bf16']);
    expect(dequantized.run.code, dequantized.run.stderr).toBe(0);
    expect(readdirSync(dequantized.out).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('a compressed-tensors int (W8A8) config over fp8 codes stays refused, naming the scale and the method', async () => {
    const base = baseFolder('channel');
    const cfg = config('channel') as { quantization_config: { config_groups: { group_0: { weights: Record<string, unknown> } }; format: string } };
    cfg.quantization_config.format = 'int-quantized';
    cfg.quantization_config.config_groups.group_0.weights = { num_bits: 8, type: 'int', strategy: 'channel', symmetric: true };
    const { run, lines } = await cli({ ...base, 'config.json': JSON.stringify(cfg) }, adapterFolder());
    expect(run.code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/stored quantized, with its scale in .*weight_scale .*compressed-tensors/);
  });

  it('the CLI writes a loadable folder: header, index-free single file and config agree', async () => {
    const { run, out } = await cli(baseFolder('block'), adapterFolder());
    expect(run.code, run.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    const written = decodeSafetensors(new Uint8Array(readFileSync(join(out, 'model.safetensors'))));
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { weight_block_size: number[] } };
    for (const m of [Q, K, V]) {
      const w = written.tensors.get(`${m}.weight`)!;
      const s = written.tensors.get(`${m}.weight_scale_inv`)!;
      expect(s.shape).toEqual(w.shape.map((n, i) => Math.ceil(n / cfg.quantization_config.weight_block_size[i])));
    }
  });
});

describe('fp8 output types on fp8 checkpoints with scale tensors', () => {
  // A LoRA on the bf16 lm_head (in the config's ignore list): no fp8 weight is merged, yet an
  // fp8 --dtype converted every F32 / BF16 scale tensor (weight_scale_inv, weight_scale,
  // input_scale, k_scale, v_scale) to fp8 codes as if it were a weight, and wrote it with exit 0.
  const onHead = peftLoraOn('lm_head', 64, COLS, seededRandom(7));
  const refusal = async (base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, outDtype: string, dtypeMergedOnly: boolean) => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
    try {
      await mergeModel({ prepared, output: createBlobOutputTarget(), backend: backends.cpu!, outDtype, dtypeMergedOnly });
      return undefined;
    } catch (e) {
      return (e as Error).message;
    } finally {
      await prepared.close();
    }
  };

  for (const kind of KINDS) {
    it(`${LABEL[kind]}: f8_e4m3 and f8_e5m2 refused in one line naming the weight and its scale, with or without --dtype-merged-only, a LoRA on an fp8 layer or elsewhere; the page refuses them too`, async () => {
      const base = baseFolder(kind);
      const format = kind === 'block' ? 'block-wise fp8' : 'compressed-tensors fp8';
      for (const [where, adapter] of [['q_proj', adapterFolder()], ['lm_head', onHead]] as const) {
        for (const dtype of ['f8_e4m3', 'f8_e5m2']) {
          for (const mergedOnly of [false, true]) {
            expect(await refusal(base, adapter, dtype, mergedOnly), `${where} ${dtype}${mergedOnly ? ' merged-only' : ''}`).toBe(
              `model: tensor "${Q}.weight" (${format}) keeps its codes and scales or is written dequantized: --dtype ${dtype} would convert its scale tensors (such as "${Q}.${SCALE_NAME[kind]}") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized`,
            );
          }
        }
        const summary = await summarizePlan(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: WEIGHT }]);
        const reason = `its ${format} weights (such as ${Q}.weight) keep their codes and scales or are written dequantized: leave the types as they are, or choose bf16, f16 or f32`;
        expect(summary.output.refused, where).toEqual({ f8_e4m3: reason, f8_e5m2: reason });
      }
    });
  }
});
