/**
 * Broken scales of quantized bases read a row slab at a time are refused with how many the whole
 * scale tensor holds and its first and last row (or, for gpt-oss's expert stacks, element), not
 * the first met by the first slab: ModelOpt NVFP4 and ComfyUI nvfp4 NaN block scales (E4M3's 0x7f,
 * 0xff), ComfyUI mxfp8 e8m0 exponents 255 (NaN), gpt-oss MXFP4 scale bytes 255 (E8M0's NaN) and
 * scales whose codes overflow bf16, mlx affine scales and biases holding NaN or Inf, compressed-
 * tensors scales NaN, Inf or negative, and ComfyUI int8_tensorwise per-row scales. Each case puts
 * the bad scales in two different slabs of mergeModel's smallest (4096 bytes: 16 f32 rows of 64,
 * 32 bf16 rows of 64, 64 fp8 rows of 64), so a message built from one slab names that slab's only;
 * the padding of cuBLAS' swizzled scale tensors is never read, so a NaN there is not counted.
 */
import { describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { blockedOrder } from './helpers/e4m3-by-hand.js';
import { buildSafetensors, randomValues, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { peftLoraOn } from './helpers/thread-backends.js';
import { DIMS, QKV, qkvLora } from './helpers/non-finite-cases.js';

const rand = seededRandom(20261209);
const backends = mergeBackends({ cpu: 'default' });
const SLAB_BYTES = 4096;
const L = 'model.layers.0';
const Q = `${L}.self_attn.q_proj`;
const COLS = 64;
type Files = Record<string, Uint8Array | string>;

const llamaConfig = (extra: object = {}) => JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: COLS, intermediate_size: 128, num_attention_heads: 8, torch_dtype: 'bfloat16', ...extra,
});

/** The one error a merge of `base` (a folder or one file, input `model`) with `adapter` stops with (prepare or merge), its code and message. */
async function mergeError(base: Files, adapter: Files, backend: MergeBackend, outDtype?: string): Promise<string> {
  let error: unknown;
  try {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter') }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      await mergeModel({ prepared, output: createBlobOutputTarget(), backend, slabBytes: SLAB_BYTES, ...(outDtype ? { outDtype } : {}) });
    } finally {
      await prepared.close();
    }
  } catch (e) {
    error = e;
  }
  expect(isMergeError(error) && error.code, String(error)).toBe('UNSUPPORTED_FORMAT');
  return (error as Error).message;
}

/** How many of `at` (row, column of a row-major grid) there are and their first and last row, worked out plainly. */
function rowsOf(at: readonly (readonly [number, number])[]): { count: number; first: number; last: number } {
  const rows = at.map(([r]) => r);
  return { count: at.length, first: Math.min(...rows), last: Math.max(...rows) };
}

/** "holds N <what> (first in row F, last in row L); <why>" as the refusals word it. */
const heldLine = (key: string, n: { count: number; first: number; last: number }, what: string, why: string) =>
  `model: tensor "${key}" holds ${n.count} ${what} (first in row ${n.first}, last in row ${n.last}); ${why}`;
const BROKEN = 'the base file is broken: use an intact copy of the base';

/** Block-scale bytes as trained weights have them (E4M3 0.0078 … 2). */
const scaleByte = () => 0x28 + Math.floor(rand() * 0x30);

/**
 * ModelOpt NVFP4 (nvidia/Llama-3.1-8B-Instruct-FP4's layout) q_proj (128 × 64): U8 codes (128, 32),
 * F8_E4M3 weight_scale (128, 4), F32 weight_scale_2; NaN block scales (0x7f, 0xff) at `nan`.
 */
function modelOptBase(nan: readonly (readonly [number, number])[]): Files {
  const rows = 128, groups = COLS / 16;
  const scales = Uint8Array.from({ length: rows * groups }, scaleByte);
  nan.forEach(([r, g], k) => { scales[r * groups + g] = k % 2 ? 0xff : 0x7f; });
  const tensors: FixtureTensor[] = [
    { name: `${Q}.weight`, dtype: 'U8', shape: [rows, COLS / 2], data: Uint8Array.from({ length: rows * COLS / 2 }, () => Math.floor(rand() * 256)) },
    { name: `${Q}.weight_scale`, dtype: 'F8_E4M3', shape: [rows, groups], data: scales },
    { name: `${Q}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.000123)] },
    { name: `${Q}.input_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.02)] },
  ];
  const quant = JSON.stringify({ producer: { name: 'modelopt', version: '0.29.0' }, quantization: { quant_algo: 'NVFP4', kv_cache_quant_algo: null, group_size: 16, exclude_modules: ['lm_head'] } });
  return { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig(), 'hf_quant_config.json': quant };
}

/**
 * ComfyUI nvfp4 (comfy_quant `{"format": "nvfp4"}`) q_proj (160 × 64): U8 codes (160, 32), the
 * (160, 4) F8_E4M3 block scales swizzled into (256, 4), F32 weight_scale_2; NaN at `nan` (row,
 * block) and, not read, in a padding row.
 */
function comfyNvfp4Base(nan: readonly (readonly [number, number])[]): Files {
  const rows = 160, blocks = COLS / 16;
  const grid = Array.from({ length: rows * blocks }, scaleByte);
  nan.forEach(([r, j], k) => { grid[r * blocks + j] = k % 2 ? 0xff : 0x7f; });
  const { order, shape } = blockedOrder(rows, blocks);
  const padding = order.indexOf(-1);
  const config = Array.from(new TextEncoder().encode('{"format": "nvfp4"}'));
  const tensors: FixtureTensor[] = [
    { name: `${Q}.weight`, dtype: 'U8', shape: [rows, COLS / 2], data: Uint8Array.from({ length: rows * COLS / 2 }, () => Math.floor(rand() * 256)) },
    { name: `${Q}.weight_scale`, dtype: 'F8_E4M3', shape, data: Uint8Array.from(order, (at, k) => (k === padding ? 0x7f : at < 0 ? 0 : grid[at])) },
    { name: `${Q}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.000123)] },
    { name: `${Q}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
  ];
  return { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig() };
}

/**
 * ComfyUI mxfp8 (comfy_quant `{"format": "mxfp8"}`) q_proj (160 × 64): F8_E4M3 codes, the (160, 2)
 * e8m0 exponents swizzled into (256, 4); 255 (NaN) at `nan` (row, block) and in a padding byte.
 */
function mxfp8Base(nan: readonly (readonly [number, number])[]): Files {
  const rows = 160, blocks = COLS / 32;
  const exponents = Array.from({ length: rows * blocks }, () => 118 + Math.floor(rand() * 6));
  for (const [r, j] of nan) exponents[r * blocks + j] = 255;
  const { order, shape } = blockedOrder(rows, blocks);
  const padding = order.indexOf(-1);
  const config = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
  const tensors: FixtureTensor[] = [
    { name: `${Q}.weight`, dtype: 'F8_E4M3', shape: [rows, COLS], data: Uint8Array.from({ length: rows * COLS }, () => Math.floor(rand() * 0x70)) },
    { name: `${Q}.weight_scale`, dtype: 'U8', shape, data: Uint8Array.from(order, (at, k) => (k === padding ? 255 : at < 0 ? 0 : exponents[at])) },
    { name: `${Q}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
  ];
  return { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig() };
}

/**
 * mlx-community's 4-bit layout (mlx_lm.convert -q, group 32) q_proj (128 × 64): U32 codes (128, 8),
 * F16 scales and biases (128, 2); NaN or Inf scales at `scales`, biases at `biases`.
 */
function mlxBase(scales: readonly (readonly [number, number, number])[], biases: readonly (readonly [number, number, number])[], extra: FixtureTensor[] = []): Files {
  const rows = 128, groups = 2;
  const s = Array.from({ length: rows * groups }, () => 0.01 + Math.floor(rand() * 8) / 1024);
  const b = Array.from({ length: rows * groups }, () => -0.08);
  for (const [r, g, v] of scales) s[r * groups + g] = v;
  for (const [r, g, v] of biases) b[r * groups + g] = v;
  const tensors: FixtureTensor[] = [
    { name: `${Q}.weight`, dtype: 'U32', shape: [rows, COLS / 8], data: Uint8Array.from({ length: rows * COLS / 2 }, () => Math.floor(rand() * 256)) },
    { name: `${Q}.scales`, dtype: 'F16', shape: [rows, groups], data: s },
    { name: `${Q}.biases`, dtype: 'F16', shape: [rows, groups], data: b },
    ...extra,
  ];
  const quantization = { group_size: 32, bits: 4 };
  return { 'model.safetensors': buildSafetensors(tensors, { format: 'mlx' }), 'config.json': llamaConfig({ quantization, quantization_config: quantization }) };
}

/**
 * compressed-tensors pack-quantized W4A16 group 32 symmetric (RedHatAI `*-quantized.w4a16`) q_proj
 * (128 × 64): I32 weight_packed (128, 8), I64 weight_shape, BF16 weight_scale (128, 2); `bad` (row,
 * group, value) in the scales.
 */
function compressedTensorsBase(bad: readonly (readonly [number, number, number])[]): Files {
  const rows = 128, groups = 2;
  const scale = Array.from({ length: rows * groups }, () => 0.001 + Math.floor(rand() * 64) / 8192);
  for (const [r, g, v] of bad) scale[r * groups + g] = v;
  const tensors: FixtureTensor[] = [
    { name: `${Q}.weight_packed`, dtype: 'I32', shape: [rows, COLS / 8], data: Uint8Array.from({ length: rows * COLS / 2 }, () => Math.floor(rand() * 256)) },
    { name: `${Q}.weight_scale`, dtype: 'BF16', shape: [rows, groups], data: scale },
    { name: `${Q}.weight_shape`, dtype: 'I64', shape: [2], data: [rows, COLS] },
  ];
  const quantization = {
    config_groups: {
      group_0: {
        input_activations: null, output_activations: null, targets: ['Linear'],
        weights: { actorder: null, block_structure: null, dynamic: false, group_size: 32, num_bits: 4, observer: 'minmax', observer_kwargs: {}, strategy: 'group', symmetric: true, type: 'int' },
      },
    },
    format: 'pack-quantized', global_compression_ratio: 1.89, ignore: ['lm_head'], kv_cache_scheme: null, quant_method: 'compressed-tensors', quantization_status: 'compressed',
  };
  return { 'model.safetensors': buildSafetensors(tensors), 'config.json': llamaConfig({ quantization_config: quantization }) };
}

const E = 2, H = 64, I = 32;
const EXPERTS = `${L}.mlp.experts`;

/**
 * gpt-oss with one layer of MXFP4 experts (openai/gpt-oss-20b's layout cut to 2 experts, hidden 64,
 * intermediate 32): `<p>_blocks` U8 (E, out, in/32, 16), `<p>_scales` U8 (E, out, in/32), and the
 * cookbook's PEFT LoRA on both expert parameters (target_parameters). Codes below 1.5 (magnitude
 * index ≤ 3) and scales 2^-10 … 2^-3 but where `edit` changes them.
 */
function gptOss(edit: (param: string, blocks: Uint8Array, scales: Uint8Array, groups: number) => void): { base: Files; adapter: Files } {
  const tensors: FixtureTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [40, H], data: randomValues(40 * H, rand, 0.1) },
    { name: `${L}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [64, H], data: randomValues(64 * H, rand, 0.1) },
    { name: `${L}.mlp.router.weight`, dtype: 'BF16', shape: [E, H], data: randomValues(E * H, rand, 0.1) },
  ];
  const adapter: FixtureTensor[] = [];
  const R = 2;
  for (const [param, out, inF, wrapper] of [['gate_up_proj', 2 * I, H, `${EXPERTS}.base_layer`], ['down_proj', H, I, EXPERTS]] as const) {
    const groups = inF / 32;
    const blocks = Uint8Array.from({ length: E * out * groups * 16 }, () => Math.floor(rand() * 4) | (Math.floor(rand() * 4) << 4));
    const scales = Uint8Array.from({ length: E * out * groups }, () => 117 + Math.floor(rand() * 8));
    edit(param, blocks, scales, groups);
    tensors.push({ name: `${EXPERTS}.${param}_blocks`, dtype: 'U8', shape: [E, out, groups, 16], data: blocks });
    tensors.push({ name: `${EXPERTS}.${param}_scales`, dtype: 'U8', shape: [E, out, groups], data: scales });
    tensors.push({ name: `${EXPERTS}.${param}_bias`, dtype: 'BF16', shape: [E, out], data: randomValues(E * out, rand, 0.1) });
    adapter.push({ name: `base_model.model.${wrapper}.lora_A.weight`, dtype: 'F32', shape: [R * E, inF], data: randomValues(R * E * inF, rand, 0.3) });
    adapter.push({ name: `base_model.model.${wrapper}.lora_B.weight`, dtype: 'F32', shape: [out, R * E], data: randomValues(out * R * E, rand, 0.3) });
  }
  const config = JSON.stringify({
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', hidden_size: H, intermediate_size: I,
    num_hidden_layers: 1, num_local_experts: E, experts_per_token: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    vocab_size: 40, tie_word_embeddings: true, swiglu_limit: 7.0, layer_types: ['full_attention'],
    quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
  });
  return {
    base: { 'model.safetensors': buildSafetensors(tensors), 'config.json': config },
    adapter: {
      'adapter_config.json': JSON.stringify({
        peft_type: 'LORA', r: R, lora_alpha: 2 * R, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', target_modules: [],
        target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'], peft_version: '0.17.1',
      }),
      'adapter_model.safetensors': buildSafetensors(adapter),
    },
  };
}

const qLora = (rows = 128) => peftLoraOn({ [Q]: rows }, COLS, 2, 4, rand).files;

describe.each(['cpu', 'webgpu'])('%s: broken scales counted over the whole scale tensor', (name) => {
  it('ModelOpt NVFP4: NaN block scales in rows 10 and 100 (slabs 0 and 6), two in row 100: the count and both rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const nan = [[10, 1], [100, 0], [100, 3]] as const;
    expect(rowsOf(nan)).toEqual({ count: 3, first: 10, last: 100 });
    expect(await mergeError(modelOptBase(nan), qLora(), backend, 'f16')).toBe(heldLine(`${Q}.weight_scale`, rowsOf(nan), 'NaN scales', BROKEN));
  });

  it('ModelOpt NVFP4: one NaN block scale, in row 50: "1 NaN scale (row 50)"', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    expect(await mergeError(modelOptBase([[50, 2]]), qLora(), backend, 'f16')).toBe(`model: tensor "${Q}.weight_scale" holds 1 NaN scale (row 50); ${BROKEN}`);
  });

  it('ComfyUI nvfp4: NaN block scales in rows 3, 70 and 150 (slabs 0, 4 and 9), a NaN in the padding not counted', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const nan = [[3, 0], [70, 2], [150, 3]] as const;
    expect(rowsOf(nan)).toEqual({ count: 3, first: 3, last: 150 });
    const message = heldLine(`${Q}.weight_scale`, rowsOf(nan), 'NaN scales', BROKEN);
    expect(await mergeError(comfyNvfp4Base(nan), qLora(160), backend)).toBe(message);
    // Written dequantized: the same line.
    expect(await mergeError(comfyNvfp4Base(nan), qLora(160), backend, 'bf16')).toBe(message);
  });

  it('ComfyUI mxfp8: e8m0 exponents 255 in rows 10 and 100 (slabs 0 and 1 of 64 rows), a 255 in the padding not counted', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const nan = [[10, 1], [100, 0]] as const;
    expect(await mergeError(mxfp8Base(nan), qLora(160), backend)).toBe(
      `model: tensor "${Q}.weight_scale" holds 2 NaN scales (e8m0 255; first in row 10, last in row 100); ${BROKEN}`,
    );
  });

  it('mlx affine: NaN and Inf scales in rows 5 and 90 (slabs 0 and 5), an Inf bias too: the scales first, their count and both rows', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const bad = [[5, 1, NaN], [90, 0, Infinity], [90, 1, -Infinity]] as const;
    const n = rowsOf(bad.map(([r, g]) => [r, g] as const));
    expect(n).toEqual({ count: 3, first: 5, last: 90 });
    expect(await mergeError(mlxBase(bad, [[40, 0, Infinity]]), qLora(), backend, 'f16')).toBe(
      heldLine(`${Q}.scales`, n, 'values that are NaN or Inf', 'scales and biases must be finite'),
    );
  });

  it('mlx affine: NaN biases in rows 20 and 120 (slabs 1 and 7), the scales finite: the biases named', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    expect(await mergeError(mlxBase([], [[20, 0, NaN], [120, 1, NaN]]), qLora(), backend, 'f16')).toBe(
      heldLine(`${Q}.biases`, { count: 2, first: 20, last: 120 }, 'values that are NaN or Inf', 'scales and biases must be finite'),
    );
  });

  it('mlx affine switch_mlp (2 experts of 32 × 64, dequantized by --dtype f16): NaN scales in expert 0 row 3 and expert 1 row 30 (slabs 0 and 3), by expert', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const S = `${L}.mlp.switch_mlp.up_proj`;
    const [experts, out, groups] = [2, 32, 2];
    const scales = Array.from({ length: experts * out * groups }, () => 0.01);
    for (const [e, o, g] of [[0, 3, 1], [1, 30, 0]]) scales[(e * out + o) * groups + g] = NaN;
    const stacked: FixtureTensor[] = [
      { name: `${S}.weight`, dtype: 'U32', shape: [experts, out, COLS / 8], data: Uint8Array.from({ length: experts * out * COLS / 2 }, () => Math.floor(rand() * 256)) },
      { name: `${S}.scales`, dtype: 'F16', shape: [experts, out, groups], data: scales },
      { name: `${S}.biases`, dtype: 'F16', shape: [experts, out, groups], data: new Array(experts * out * groups).fill(-0.08) },
    ];
    expect(await mergeError(mlxBase([], [], stacked), qLora(), backend, 'f16')).toBe(
      `model: tensor "${S}.scales" holds 2 values that are NaN or Inf (first in row 3 of expert 0, last in row 30 of expert 1); scales and biases must be finite`,
    );
  });

  it('compressed-tensors W4A16: NaN, Inf and negative scales in rows 7, 64 and 127 (slabs 0, 4 and 7): the count and both ends', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const bad = [[7, 0, NaN], [64, 1, Infinity], [127, 0, -0.5]] as const;
    const n = rowsOf(bad.map(([r, g]) => [r, g] as const));
    expect(n).toEqual({ count: 3, first: 7, last: 127 });
    expect(await mergeError(compressedTensorsBase(bad), qLora(), backend, 'f16')).toBe(
      heldLine(`${Q}.weight_scale`, n, 'scales that are NaN, Inf or negative', 'scales must be finite and not negative'),
    );
  });

  it('gpt-oss MXFP4: scale bytes 255 in experts 0 and 1 of gate_up_proj (slabs 0–1 and 2–3): the count and the first and last', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // [expert, output, group] of gate_up_proj_scales (2, 64, 2).
    const nan = [[0, 5, 1], [1, 60, 0], [1, 60, 1]];
    const { base, adapter } = gptOss((param, _blocks, scales, groups) => {
      if (param === 'gate_up_proj') for (const [e, o, g] of nan) scales[(e * 2 * I + o) * groups + g] = 255;
    });
    expect(await mergeError(base, adapter, backend)).toBe(
      `model: tensor "${EXPERTS}.gate_up_proj_scales" holds 3 scales 255 (E8M0's NaN) (first at [0, 5, 1], last at [1, 60, 1]); ` +
        'transformers would decode their blocks to Inf, and their zero codes to NaN',
    );
  });

  it('gpt-oss MXFP4: codes past bf16 under scale 254 in experts 0 and 1 of down_proj (slabs 0 and 1): the count and the first and last value', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    // down_proj (E, in 32, out 64): one block a row. Blocks of codes 0.5 under 2^127 (exact in bf16)
    // but code 6 (7) at input 1 of expert 0's output 3 and −6 (15) at input 10 of expert 1's output 40:
    // 6·2^127 passes bf16's largest (about 3.39e38). Expert 1's output 50 is 2^127 over zeros: fine.
    const { base, adapter } = gptOss((param, blocks, scales) => {
      if (param !== 'down_proj') return;
      for (const o of [[0, 3], [1, 40], [1, 50]]) {
        const j = o[0] * H + o[1];
        scales[j] = 254;
        blocks.fill(o[1] === 50 ? 0 : 0x11, j * 16, j * 16 + 16);
      }
      blocks[(0 * H + 3) * 16 + 0] = 0x71; // input 1: high nibble of byte 0
      blocks[(1 * H + 40) * 16 + 5] = 0x1f; // input 10: low nibble of byte 5
    });
    expect(6 * 2 ** 127).toBeGreaterThan((2 - 2 ** -7) * 2 ** 127);
    expect(await mergeError(base, adapter, backend)).toBe(
      `model: ${EXPERTS}.down_proj holds 2 values that overflow bf16 (first ${EXPERTS}.down_proj[0, 1, 3] = 6·2^127, last ${EXPERTS}.down_proj[1, 10, 40] = 6·2^127); ` +
        'transformers would decode them to Inf',
    );
  });

  it(`ComfyUI int8_tensorwise per-row weight_scale with NaN at row 12 and −1 at row 150 (the whole scale read when the base is opened)`, async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { h } = DIMS;
    const config = Array.from(new TextEncoder().encode('{"format": "int8_tensorwise"}'));
    const tensors = fluxBflTensors(rand, 'BF16', DIMS).flatMap((t): FixtureTensor[] => t.name !== `${QKV}.weight` ? [t] : [
      { name: t.name, dtype: 'I8', shape: t.shape, data: Array.from({ length: 3 * h * h }, () => Math.floor(rand() * 21) - 10) },
      { name: `${QKV}.weight_scale`, dtype: 'F32', shape: [3 * h, 1], data: Array.from({ length: 3 * h }, (_, r) => (r === 12 ? NaN : r === 150 ? -1 : 0.001)) },
      { name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
    ]);
    const message = await mergeError({ 'flux1-dev-int8.safetensors': buildSafetensors(tensors) }, { 'style.safetensors': qkvLora(rand) }, backend);
    expect(message).toMatch(new RegExp(`^model: ${QKV.replace(/\./g, '\\.')}\\.weight \\(comfy_quant format "int8_tensorwise", [^)]*\\): its scale ${QKV.replace(/\./g, '\\.')}\\.weight_scale holds 2 scales that are NaN, Inf or negative \\(first NaN for row 12, last -1 for row 150\\); a scale must be finite and not negative$`));
  });
});
