/**
 * Overflow refusals over the whole weight where its scales come in blocks: a block-wise fp8
 * checkpoint (Qwen3-*-FP8, DeepSeek-V3: F8_E4M3 codes and an F32 `weight_scale_inv` per 128 × 128
 * block, partial blocks at the edges) and ComfyUI's mxfp8 layers (an e8m0 exponent per 32 inputs of
 * a row, cuBLAS' swizzled grid). The overflowing values lie in two rows of different row blocks and
 * slabs and across two column blocks, so a count made from the slab met, or from one block's op,
 * falls short; written dequantized to f16 (values past f16) and quantized again (values past f32:
 * no scale holds them). Counts, first and last rows worked out in float64; on the CPU and WebGPU.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { fluxBflTensors } from './helpers/diffusion-fixtures.js';
import { blockedOrder, e4m3Value } from './helpers/e4m3-by-hand.js';
import { hfModelFolder, peftFolder, prepareFolders, randomTensor } from './helpers/hf-folder.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { DIMS, nonFiniteStop, QKV } from './helpers/non-finite-cases.js';
import { F16_INF_FROM, F32_INF_FROM, pastOf } from './helpers/overflow-cases.js';

const rand = seededRandom(20261907);
const backends = mergeBackends({ cpu: 'default' });

/** e4m3 codes (values) under 1 in magnitude. */
const smallCodes = (n: number) => Array.from({ length: n }, () => e4m3Value(Math.floor(rand() * 0x38) | (rand() < 0.5 ? 0x80 : 0)));

// Qwen3 block fp8, q_proj 300 × 200: row blocks 0–127, 128–255, 256–299, column blocks 0–127,
// 128–199; slabs of 20 rows (4096 bytes of codes). A rank-1 PEFT LoRA (α = r = 1): B nonzero in
// rows 10 (row block 0) and 260 (row block 2), A on inputs 100–149 (both column blocks).
const ROWS = 300, COLS = 200;
const Q = 'model.layers.0.self_attn.q_proj';
const BLOCK_CONFIG = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: COLS, torch_dtype: 'bfloat16', tie_word_embeddings: false,
  quantization_config: { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', weight_block_size: [128, 128] },
};

async function blockFp8Stop(backend: MergeBackend, big: number, from: number, outDtype: string | undefined) {
  const codes = smallCodes(ROWS * COLS);
  const scales = Array.from({ length: 3 * 2 }, () => Math.fround(0.0005 + rand() * 0.0001));
  const base: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [32, COLS], 'BF16', rand),
    { name: `${Q}.weight`, dtype: 'F8_E4M3', shape: [ROWS, COLS], data: codes },
    { name: `${Q}.weight_scale_inv`, dtype: 'F32', shape: [3, 2], data: scales },
    randomTensor('lm_head.weight', [32, COLS], 'BF16', rand),
  ];
  const b = (r: number) => (r === 10 ? 2 : r === 260 ? -2 : 0);
  const a = Array.from({ length: COLS }, (_, j) => (j >= 100 && j < 150 ? big : 0));
  const merged = (r: number, c: number) => codes[r * COLS + c] * scales[Math.floor(r / 128) * 2 + Math.floor(c / 128)] + b(r) * a[c];
  const past = pastOf(merged, ROWS, COLS, from);
  expect([past.count, past.first, past.last]).toEqual([100, 10, 260]);
  const adapter = peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [
    { name: `base_model.model.${Q}.lora_A.weight`, dtype: 'F32', shape: [1, COLS], data: a },
    { name: `base_model.model.${Q}.lora_B.weight`, dtype: 'F32', shape: [ROWS, 1], data: Array.from({ length: ROWS }, (_, r) => b(r)) },
  ]);
  const prepared = await prepareFolders(hfModelFolder(base, BLOCK_CONFIG), [adapter]);
  return { past, message: await nonFiniteStop(prepared, backend, outDtype as string) };
}
const BLOCK_AT = `base/model.safetensors: tensor "${Q}.weight"`;
const BLOCK_MODULE = `adapter1 module "${Q}" (scale 1)`;

// ComfyUI's mxfp8 Flux cut to h = 64: the qkv F8_E4M3 (192 × 64, two blocks of 32 a row) with
// e8m0 exponents 118–123; slabs of 64 rows. A kohya LoRA (rank 1, alpha 1) on it: lora_up
// nonzero in rows 10 and 100 (two slabs), lora_down on inputs 20–49 (both blocks).
const { h } = DIMS;
const KOHYA = 'lora_unet_double_blocks_0_img_attn_qkv';

async function mxfp8Stop(backend: MergeBackend, big: number, from: number, outDtype: string | undefined) {
  const config = Array.from(new TextEncoder().encode('{"format": "mxfp8"}'));
  const blocks = h / 32;
  const codes = smallCodes(3 * h * h);
  const exponents = Array.from({ length: 3 * h * blocks }, () => 118 + Math.floor(rand() * 6));
  const { order, shape } = blockedOrder(3 * h, blocks);
  const base = fluxBflTensors(rand, 'BF16', DIMS).flatMap((t): FixtureTensor[] => (t.name !== `${QKV}.weight` ? [t] : [
    { name: t.name, dtype: 'F8_E4M3', shape: t.shape, data: codes },
    { name: `${QKV}.weight_scale`, dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : exponents[at])) },
    { name: `${QKV}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
  ]));
  const up = (r: number) => (r === 10 ? 2 : r === 100 ? -2 : 0);
  const down = Array.from({ length: h }, (_, j) => (j >= 20 && j < 50 ? big : 0));
  const merged = (r: number, c: number) => codes[r * h + c] * 2 ** (exponents[r * blocks + Math.floor(c / 32)] - 127) + up(r) * down[c];
  const past = pastOf(merged, 3 * h, h, from);
  expect([past.count, past.first, past.last]).toEqual([60, 10, 100]);
  const lora = buildSafetensors([
    { name: `${KOHYA}.lora_down.weight`, dtype: 'F32', shape: [1, h], data: down },
    { name: `${KOHYA}.lora_up.weight`, dtype: 'F32', shape: [3 * h, 1], data: Array.from({ length: 3 * h }, (_, r) => up(r)) },
    { name: `${KOHYA}.alpha`, dtype: 'F32', shape: [], data: [1] },
  ], { ss_network_module: 'networks.lora_flux' });
  const file = 'flux1-dev-mxfp8.safetensors';
  const prepared = await prepareMerge(memoryInputFileSet({ [file]: buildSafetensors(base) }, file), [
    { files: memoryInputFileSet({ 'style.safetensors': lora }, 'style.safetensors') },
  ]);
  return { past, message: await nonFiniteStop(prepared, backend, outDtype as string) };
}
const MX_AT = `flux1-dev-mxfp8.safetensors/flux1-dev-mxfp8.safetensors: tensor "${QKV}.weight"`;
const MX_MODULE = `style.safetensors module "${KOHYA}" (scale 1)`;

const overflowLine = (at: string, module: string, past: ReturnType<typeof pastOf>, first: number, last: number) =>
  `${at}: merged values up to ${past.largest.toPrecision(3)} overflow F16 (largest finite 65504): ${past.count} values (first in row ${first}, last in row ${last}), ` +
  `after the update from ${module}; write with --dtype bf16 or f32, or lower --weight`;
const pastF32Line = (at: string, module: string, past: ReturnType<typeof pastOf>, first: number, last: number) =>
  `${at}: the update from ${module} makes ${past.count} values (first in row ${first}, last in row ${last}) too large for any float dtype; check the adapter and --weight`;

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it('block fp8 (weight_scale_inv per 128 × 128) written dequantized to f16: values past f16 in row blocks 0 and 2, across both column blocks', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip('no WebGPU adapter');
    const { past, message } = await blockFp8Stop(backend, 1e5, F16_INF_FROM, 'F16');
    expect(message).toBe(overflowLine(BLOCK_AT, BLOCK_MODULE, past, 10, 260));
  });

  it('block fp8 quantized again (its block scales recomputed): values past f32 in row blocks 0 and 2, across both column blocks', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip('no WebGPU adapter');
    const { past, message } = await blockFp8Stop(backend, 3e38, F32_INF_FROM, undefined);
    expect(message).toBe(pastF32Line(BLOCK_AT, BLOCK_MODULE, past, 10, 260));
  });

  it('mxfp8 (an e8m0 scale per 32 inputs) written dequantized to f16: values past f16 in rows 10 and 100, across both blocks of each row', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip('no WebGPU adapter');
    const { past, message } = await mxfp8Stop(backend, 1e5, F16_INF_FROM, 'F16');
    expect(message).toBe(overflowLine(MX_AT, MX_MODULE, past, 10, 100));
  });

  it('mxfp8 quantized again (its block exponents recomputed): values past f32 in rows 10 and 100, across both blocks of each row', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip('no WebGPU adapter');
    const { past, message } = await mxfp8Stop(backend, 3e38, F32_INF_FROM, undefined);
    expect(message).toBe(pastF32Line(MX_AT, MX_MODULE, past, 10, 100));
  });
});
