/**
 * FP4 base weights decoded on the CPU backend's worker threads (formats/row-decoders.ts `nvfp4`
 * and `mxfp4`): a ModelOpt NVFP4 Llama, ComfyUI nvfp4 (comfy_quant) layers and gpt-oss's MXFP4
 * experts, merged on two threads (slabs read into shared memory, as the command line reads them),
 * on two threads through the pool's scratch (a page's pool, whose slabs are no shared memory) and
 * on one thread with no pool, give the same bytes; those bytes are W + ΔW rounded once, W
 * dequantized here in float64 by the tools' own formulas; and the decoding did go to the workers.
 * A NaN block scale (or an mxfp8 product past float32) is refused in the same one line on every thread.
 *
 * ModelOpt NVFP4 (nvidia/*-FP4, hf_quant_config.json `quant_algo: "NVFP4"`, NVFP4QTensor.dequantize):
 * `<m>.weight` U8 (out, in/2), element 2k in the low nibble; `<m>.weight_scale` F8_E4M3 (out, in/16);
 * `<m>.weight_scale_2` F32 (); W = f32(e2m1(code) × f32(e4m3(block scale) × weight_scale_2)), code 8
 * giving +0 (its `e2m1_values` table).
 * ComfyUI nvfp4 (comfy_kitchen's dequantize_nvfp4): the same codes with element 2k in the HIGH
 * nibble, the (out, in/16) block scales in cuBLAS' swizzled layout (to_blocked), code 8 −0.
 * gpt-oss MXFP4 (transformers' convert_moe_packed_tensors): `<p>_blocks` U8 (E, out, in/32, 16),
 * `<p>_scales` U8 (E, out, in/32); the parameter (E, in, out) is FP4_VALUES[code] × 2^(scale − 127),
 * code 2k of a block in the low nibble of byte k; PEFT 0.17's target_parameters LoRA adds
 * s·Σ_k B[o][k·E + e]·A[e·r + k][i] to W[e][i][o].
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { MergeError } from '../src/errors.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { decodeSourceRows, type RowSource } from '../src/formats/row-decoders.js';
import { nvfp4CodeValues } from '../src/formats/nvfp4-values.js';
import { blockedOrder, comfyNvfp4Value, e4m3Value, e8m0Value, modelOptNvfp4Value } from './helpers/e4m3-by-hand.js';
import { buildSafetensors, decodeSafetensors, randomValues, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { threadBackends, peftLoraOn } from './helpers/thread-backends.js';

const rand = seededRandom(20261207);
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const K = `${L}.self_attn.k_proj`;
const V = `${L}.self_attn.v_proj`;
/** Outputs of each module; k_proj no adapter changes (it is decoded and written all the same). */
const ROWS: Record<string, number> = { [Q]: 384, [K]: 128, [V]: 256 };
const COLS = 512;
const R = 16, ALPHA = 32;
/** 128 f32 rows of 512: 65 536 values a slab, enough for the pool, and q_proj in three slabs. */
const SLAB_BYTES = 128 * COLS * 4;

type Files = Record<string, Uint8Array | string>;
interface Case {
  name: string;
  files: Files;
  adapter: Files;
  /** Per written tensor: its real values (float64) and ΔW, where an adapter changes it. */
  real: Map<string, { shape: number[]; w: Float64Array; delta?: Float64Array }>;
  outDtype: 'f16' | 'bf16';
  /** Row ranges decoded on the pool, one merge: each cut into 4 pieces, at least one of which goes to the worker. */
  slabs: number;
  /** Weights (or experts) whose arrays the pool shares, one merge. */
  sources: number;
  /**
   * The sign of a zero is not compared: mxfp8 weights are merged as code × scale through the
   * engine even where no ΔW is added, whose 0 + W writes a −0 as +0 (ComfyUI keeps −0).
   */
  unsignedZeros?: boolean;
  /** A copy of the base with one NaN block scale, and the line that refuses it. */
  /** A hostile base and its refusal (UNSUPPORTED_FORMAT unless `code` says otherwise). */
  hostile: { files: Files; message: string; code?: string };
}

/** Block-scale bytes as trained weights have them, with e4m3's edges now and then: 0, its smallest subnormal, 448. */
function scaleByte(): number {
  const u = rand();
  if (u < 0.02) return 0x00;
  if (u < 0.04) return 0x01;
  if (u < 0.06) return 0x7e;
  return 0x28 + Math.floor(rand() * 0x30);
}
const weightScale2 = () => Math.fround(0.000123 + rand() * 0.0001); // 24 significant bits: f32(e4m3 × it) rounds

const llamaConfig = () => JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, intermediate_size: 1376, num_attention_heads: 8, torch_dtype: 'bfloat16',
});

const lora = peftLoraOn({ [Q]: ROWS[Q], [V]: ROWS[V] }, COLS, R, ALPHA, rand);

/** Codes (rows × cols, 0…15) and row-major block-scale bytes (rows × cols/16) of one NVFP4 weight. */
function nvfp4Codes(rows: number): { codes: number[]; scales: number[] } {
  return { codes: Array.from({ length: rows * COLS }, () => Math.floor(rand() * 16)), scales: Array.from({ length: rows * (COLS / 16) }, scaleByte) };
}

/** ModelOpt NVFP4 q/k/v_proj, group 16, as nvidia/Llama-3.1-8B-Instruct-FP4 stores them. */
function modelOptCase(): Case {
  const tensors: FixtureTensor[] = [];
  const real: Case['real'] = new Map();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const { codes, scales } = nvfp4Codes(n);
    const s2 = weightScale2();
    const w = Float64Array.from(codes, (code, i) => modelOptNvfp4Value(code, scales[Math.floor(i / COLS) * (COLS / 16) + Math.floor((i % COLS) / 16)], s2));
    real.set(`${m}.weight`, { shape: [n, COLS], w, delta: lora.delta.get(m) });
    tensors.push({ name: `${m}.weight`, dtype: 'U8', shape: [n, COLS / 2], data: Uint8Array.from({ length: n * COLS / 2 }, (_, k) => codes[2 * k] | (codes[2 * k + 1] << 4)) });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape: [n, COLS / 16], data: Uint8Array.from(scales) });
    tensors.push({ name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: [s2] });
    tensors.push({ name: `${m}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.02)] });
  }
  const quantConfig = JSON.stringify({ producer: { name: 'modelopt', version: '0.29.0' }, quantization: { quant_algo: 'NVFP4', kv_cache_quant_algo: null, group_size: 16, exclude_modules: ['lm_head'] } });
  const files = (t: FixtureTensor[]): Files => ({ 'model.safetensors': buildSafetensors(t), 'config.json': llamaConfig(), 'hf_quant_config.json': quantConfig });
  // Row 300 of q_proj (its third slab) gets E4M3FN's NaN byte as a block scale.
  const hostile = tensors.map((t) => (t.name === `${Q}.weight_scale` ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (b, k) => (k === 300 * (COLS / 16) + 5 ? 0x7f : b)) } : t));
  return {
    name: 'ModelOpt NVFP4 group 16', files: files(tensors), adapter: lora.files, real, outDtype: 'f16',
    // Stored by output: each slab's codes and scales shared (q_proj 3 slabs, k_proj 1, v_proj 2).
    slabs: 6, sources: 6,
    hostile: { files: files(hostile), message: `model: tensor "${Q}.weight_scale" holds 1 NaN scale (row 300); the base file is broken: use an intact copy of the base` },
  };
}

/** ComfyUI nvfp4 comfy_quant layers (comfy_kitchen's NVFP4 layout) on the same modules, in one file. */
function comfyCase(): Case {
  const tensors: FixtureTensor[] = [];
  const real: Case['real'] = new Map();
  const config = Array.from(new TextEncoder().encode('{"format": "nvfp4"}'));
  const swizzled = new Map<string, { order: Int32Array; scales: number[] }>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    const { codes, scales } = nvfp4Codes(n);
    const s2 = weightScale2();
    const w = Float64Array.from(codes, (code, i) => comfyNvfp4Value(code, scales[Math.floor(i / COLS) * (COLS / 16) + Math.floor((i % COLS) / 16)], s2));
    real.set(`${m}.weight`, { shape: [n, COLS], w, delta: lora.delta.get(m) });
    const { order, shape } = blockedOrder(n, COLS / 16);
    swizzled.set(m, { order, scales });
    tensors.push({ name: `${m}.weight`, dtype: 'U8', shape: [n, COLS / 2], data: Uint8Array.from({ length: n * COLS / 2 }, (_, k) => (codes[2 * k] << 4) | codes[2 * k + 1]) });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : scales[at])) });
    tensors.push({ name: `${m}.weight_scale_2`, dtype: 'F32', shape: [], data: [s2] });
    tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config });
  }
  const files = (t: FixtureTensor[]): Files => ({ 'model.safetensors': buildSafetensors(t), 'config.json': llamaConfig() });
  // Row 200 of q_proj, inputs 48–63 (block 3), gets E4M3FN's NaN byte (0xff) as its scale.
  const { order } = swizzled.get(Q)!;
  const nanAt = order.indexOf(200 * (COLS / 16) + 3);
  const hostile = tensors.map((t) => (t.name === `${Q}.weight_scale` ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (b, k) => (k === nanAt ? 0xff : b)) } : t));
  return {
    name: 'ComfyUI nvfp4 (comfy_quant)', files: files(tensors), adapter: lora.files, real, outDtype: 'f16', slabs: 6, sources: 6,
    hostile: { files: files(hostile), message: `model: tensor "${Q}.weight_scale" holds 1 NaN scale (row 200); the base file is broken: use an intact copy of the base` },
  };
}

/**
 * ComfyUI mxfp8 comfy_quant layers (comfy_kitchen's MXFP8 layout): `<m>.weight` F8_E4M3 (out, in),
 * `<m>.weight_scale` U8 e8m0 exponents, one per 32 inputs of a row, swizzled (to_blocked);
 * W = e4m3(code) × 2^(e − 127), e = 0 read as 0 (comfy_kitchen's e8m0_to_f32).
 */
function mxfp8Case(): Case {
  const tensors: FixtureTensor[] = [];
  const real: Case['real'] = new Map();
  const config = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
  const blocks = COLS / 32;
  const orders = new Map<string, { order: Int32Array; exponents: number[]; codes: Uint8Array }>();
  for (const m of [Q, K, V]) {
    const n = ROWS[m];
    // Any byte but E4M3FN's NaNs (0x7f, 0xff); exponents as trained weights have them, a few 0.
    const codes = Uint8Array.from({ length: n * COLS }, () => {
      const b = Math.floor(rand() * 254);
      return b >= 0x7f ? b + 1 : b;
    });
    const exponents = Array.from({ length: n * blocks }, () => (rand() < 0.02 ? 0 : 112 + Math.floor(rand() * 8)));
    const w = Float64Array.from(codes, (code, i) => e4m3Value(code) * e8m0Value(exponents[Math.floor(i / COLS) * blocks + Math.floor((i % COLS) / 32)]));
    real.set(`${m}.weight`, { shape: [n, COLS], w, delta: lora.delta.get(m) });
    const { order, shape } = blockedOrder(n, blocks);
    orders.set(m, { order, exponents, codes });
    tensors.push({ name: `${m}.weight`, dtype: 'F8_E4M3', shape: [n, COLS], data: codes });
    tensors.push({ name: `${m}.weight_scale`, dtype: 'U8', shape, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) });
    tensors.push({ name: `${m}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config });
  }
  const files = (t: FixtureTensor[]): Files => ({ 'model.safetensors': buildSafetensors(t), 'config.json': llamaConfig() });
  // Row 300 of q_proj, block 2 (inputs 64–95): exponent 254 (2^127), codes below 2 but 448 at input 70, past float32.
  const { order, exponents, codes } = orders.get(Q)!;
  const hostile = tensors.map((t) => {
    if (t.name === `${Q}.weight_scale`) return { ...t, data: Uint8Array.from(order, (at) => (at < 0 ? 0 : at === 300 * blocks + 2 ? 254 : exponents[at])) };
    if (t.name === `${Q}.weight`) return { ...t, data: Uint8Array.from(codes, (b, k) => (k === 300 * COLS + 70 ? 0x7e : Math.floor(k / COLS) === 300 && k % COLS >= 64 && k % COLS < 96 ? b & 0xb7 : b)) };
    return t;
  });
  return {
    name: 'ComfyUI mxfp8 (comfy_quant)', files: files(tensors), adapter: lora.files, real, outDtype: 'f16',
    // Its slabs are of codes, a byte a value: each weight one slab, its rows' codes and scales shared once.
    slabs: 3, sources: 3, unsignedZeros: true,
    hostile: {
      files: files(hostile),
      // The one value past float32 (448 × 2^127), counted over the whole weight: row 300 alone.
      code: 'NON_FINITE',
      message: `model/model.safetensors: tensor "${Q}.weight" holds 1 value past float32 in the base (its codes times its scales, ${Q}.weight_scale; row 300), and the merge updates it; the base file is broken: use an intact copy of the base`,
    },
  };
}

/** transformers' FP4_VALUES: e2m1 by its 4-bit code, sign in bit 3. */
const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
const E = 2, H = 512, I = 256, ER = 4, EALPHA = 8;
const EXPERTS = 'model.layers.0.mlp.experts';

/** gpt-oss with one layer of MXFP4 experts, and the cookbook's LoRA on both expert parameters (target_parameters). */
function gptOssCase(): Case {
  const tensors: FixtureTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [40, H], data: randomValues(40 * H, rand, 0.1) },
    { name: `${L}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [64, H], data: randomValues(64 * H, rand, 0.1) },
    { name: `${L}.mlp.router.weight`, dtype: 'BF16', shape: [E, H], data: randomValues(E * H, rand, 0.1) },
  ];
  const adapter: FixtureTensor[] = [];
  const real: Case['real'] = new Map();
  // Scale bytes as trained weights have them (2^-10 … 2^-3), a few tiny ones (bf16 subnormals) and a few large.
  const scale = () => {
    const u = rand();
    return u < 0.03 ? Math.floor(rand() * 3) : u < 0.05 ? 127 + Math.floor(rand() * 4) : 117 + Math.floor(rand() * 8);
  };
  for (const [param, out, inF, wrapper] of [['gate_up_proj', 2 * I, H, `${EXPERTS}.base_layer`], ['down_proj', H, I, EXPERTS]] as const) {
    const groups = inF / 32;
    const blocks = Uint8Array.from({ length: E * out * groups * 16 }, () => Math.floor(rand() * 256));
    const scales = Uint8Array.from({ length: E * out * groups }, scale);
    const w = new Float64Array(E * inF * out);
    for (let e = 0; e < E; e++) for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
      const g = Math.floor(i / 32);
      const byte = blocks[((e * out + o) * groups + g) * 16 + Math.floor((i % 32) / 2)];
      const code = i % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
      w[(e * inF + i) * out + o] = FP4[code] * 2 ** (scales[(e * out + o) * groups + g] - 127);
    }
    const a = Array.from(randomValues(ER * E * inF, rand, 0.3), Math.fround);
    const b = Array.from(randomValues(out * ER * E, rand, 0.3), Math.fround);
    const delta = new Float64Array(E * inF * out);
    for (let e = 0; e < E; e++) for (let i = 0; i < inF; i++) for (let o = 0; o < out; o++) {
      let d = 0;
      for (let k = 0; k < ER; k++) d += b[o * ER * E + k * E + e] * a[(e * ER + k) * inF + i];
      delta[(e * inF + i) * out + o] = (EALPHA / ER) * d;
    }
    real.set(`${EXPERTS}.${param}`, { shape: [E, inF, out], w, delta });
    tensors.push({ name: `${EXPERTS}.${param}_blocks`, dtype: 'U8', shape: [E, out, groups, 16], data: blocks });
    tensors.push({ name: `${EXPERTS}.${param}_scales`, dtype: 'U8', shape: [E, out, groups], data: scales });
    tensors.push({ name: `${EXPERTS}.${param}_bias`, dtype: 'BF16', shape: [E, out], data: randomValues(E * out, rand, 0.1) });
    adapter.push({ name: `base_model.model.${wrapper}.lora_A.weight`, dtype: 'F32', shape: [ER * E, inF], data: a });
    adapter.push({ name: `base_model.model.${wrapper}.lora_B.weight`, dtype: 'F32', shape: [out, ER * E], data: b });
  }
  const config = JSON.stringify({
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', hidden_size: H, intermediate_size: I,
    num_hidden_layers: 1, num_local_experts: E, experts_per_token: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    vocab_size: 40, tie_word_embeddings: true, swiglu_limit: 7.0, layer_types: ['full_attention'],
    quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
  });
  const files = (t: FixtureTensor[]): Files => ({ 'model.safetensors': buildSafetensors(t), 'config.json': config });
  // Expert 1's block (output 7, inputs 64–95) of down_proj gets E8M0's NaN (255).
  const nanAt = (1 * H + 7) * (I / 32) + 2;
  const hostile = tensors.map((t) => (t.name === `${EXPERTS}.down_proj_scales` ? { ...t, data: Uint8Array.from(t.data as Uint8Array, (x, k) => (k === nanAt ? 255 : x)) } : t));
  return {
    name: 'gpt-oss MXFP4 experts', real, outDtype: 'bf16', files: files(tensors),
    adapter: {
      'adapter_config.json': JSON.stringify({
        peft_type: 'LORA', r: ER, lora_alpha: EALPHA, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', target_modules: [],
        target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'], peft_version: '0.17.1',
      }),
      'adapter_model.safetensors': buildSafetensors(adapter),
    },
    // Slabs of 256 bf16 rows: gate_up_proj's 1024 rows in 4, down_proj's 512 in 2; an expert's
    // blocks and scales shared once for all its slabs: two experts of two parameters.
    slabs: 6, sources: 4,
    hostile: { files: files(hostile), message: `model: tensor "${EXPERTS}.down_proj_scales" holds 255 (E8M0's NaN) at [1, 7, 2]; transformers would decode its block to Inf, and its zero codes to NaN` },
  };
}

const threads = threadBackends();

async function mergeOn(files: Files, c: Case, on: CpuBackend): Promise<Uint8Array> {
  const prepared = await prepareMerge(memoryInputFileSet(files, 'model'), [{ files: memoryInputFileSet(c.adapter, 'adapter') }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend: on, outDtype: c.outDtype, slabBytes: SLAB_BYTES });
  } finally {
    await prepared.close();
  }
  const file = output.files().find((f) => f.path === 'model.safetensors')!;
  return new Uint8Array(await file.blob.arrayBuffer());
}

describe('FP4 base weights decoded on the worker threads', () => {
  for (const make of [modelOptCase, comfyCase, mxfp8Case, gptOssCase]) {
    const c = make();
    it(`${c.name}: two threads (shared slabs, or the pool's scratch) write the bytes of one thread, W + ΔW rounded once`, async () => {
      const [pieces, sources] = [threads.sharedPool.sent.decodePieces, threads.sharedPool.sent.decodeSources];
      const scratchPieces = threads.scratchPool.sent.decodePieces;
      const threaded = await mergeOn(c.files, c, threads.backend(threads.sharedPool));
      // Slabs of 65 536 values or more, each cut into 4 pieces; the calling thread takes some, so
      // at least one a slab went to the worker.
      expect(threads.sharedPool.sent.decodePieces - pieces).toBeGreaterThanOrEqual(c.slabs);
      expect(threads.sharedPool.sent.decodeSources - sources).toBe(c.sources);
      const throughScratch = await mergeOn(c.files, c, threads.backend(threads.scratchPool));
      expect(threads.scratchPool.sent.decodePieces - scratchPieces).toBeGreaterThanOrEqual(c.slabs);
      const oneThread = await mergeOn(c.files, c, threads.backend());
      expect(Buffer.from(threaded).equals(Buffer.from(oneThread))).toBe(true);
      expect(Buffer.from(throughScratch).equals(Buffer.from(oneThread))).toBe(true);

      const dtype = c.outDtype === 'f16' ? 'F16' : 'BF16';
      const written = decodeSafetensors(threaded).tensors;
      for (const [key, { shape, w, delta }] of c.real) {
        const t = written.get(key)!;
        expect([t.dtype, t.shape], key).toEqual([dtype, shape]);
        // Signed where no ΔW is added: ComfyUI's code 8 is −0, ModelOpt's +0, and a negative code times a zero scale −0.
        const want = (i: number) => roundForDType(delta ? w[i] + delta[i] : w[i], dtype);
        const wrong = t.values.findIndex((got, i) => !Object.is(got, want(i)) && !((delta || c.unsignedZeros) && got === 0 && want(i) === 0));
        const shown = (x: number) => (Object.is(x, -0) ? '-0' : String(x));
        expect(wrong, `${key}: element ${wrong} is ${shown(t.values[wrong])}, expected ${shown(want(wrong))}`).toBe(-1);
      }
    });

    it(`${c.name}: a NaN block scale (mxfp8: a product past float32) is refused in one line on two threads and on one`, async () => {
      for (const on of [threads.backend(threads.sharedPool), threads.backend(threads.scratchPool), threads.backend()]) {
        const refused = await mergeOn(c.hostile.files, c, on).then(() => undefined, (e: unknown) => e);
        expect(refused).toBeInstanceOf(MergeError);
        expect([(refused as MergeError).code, (refused as MergeError).message]).toEqual([c.hostile.code ?? 'UNSUPPORTED_FORMAT', c.hostile.message]);
      }
    });
  }
});

describe('the nvfp4 row decoder', () => {
  it('writes the same ModelOpt values into memory on an 8-byte boundary and 4 bytes past one (a slab may start there)', () => {
    const rows = 6, n = rows * COLS;
    const { codes, scales } = nvfp4Codes(rows);
    const s2 = weightScale2();
    const source: RowSource = {
      name: `${Q}.weight`, decoder: 'nvfp4', cols: COLS, firstRow: 2,
      arrays: {
        codes: Int8Array.from({ length: n / 2 }, (_, k) => codes[2 * k] | (codes[2 * k + 1] << 4)),
        scales: Int8Array.from(scales),
        values: nvfp4CodeValues(s2, { evenHigh: false, negativeZero: false }).values,
      },
      params: { group: 16, evenHigh: 0, scaleCols: 0 },
    };
    // Rows 3…6 of the weight: rows 1…4 of the source's arrays.
    const truth = Float64Array.from({ length: 4 * COLS }, (_, i) => modelOptNvfp4Value(codes[COLS + i], scales[Math.floor(COLS / 16 + i / 16)], s2));
    for (const byteOffset of [0, 4]) {
      const out = new Float32Array(new ArrayBuffer(byteOffset + 4 * COLS * 4), byteOffset, 4 * COLS);
      decodeSourceRows(source, 3, 7, out);
      const wrong = out.findIndex((v, i) => !Object.is(v, truth[i]));
      expect(wrong, `at byte offset ${byteOffset}: element ${wrong} is ${out[wrong]}, expected ${truth[wrong]}`).toBe(-1);
    }
  });
});
