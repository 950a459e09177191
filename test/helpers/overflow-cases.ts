/**
 * The cases of the overflow refusals counted over the whole tensor (overflow-whole-tensor on the CPU's
 * threads, overflow-whole-tensor-gpu on WebGPU): bf16 output, values past f32 itself (no float dtype
 * holds them), a ComfyUI scaled fp8 weight written dequantized to f16 or quantized again,
 * transformers 5's fused experts in f16 and transformers' FP8 experts (a scale per expert). Each
 * case puts the overflowing values in two slabs of mergeModel's smallest (4096 bytes), so a line
 * built from the slab met counts that slab's only; the counts and rows are worked out in float64.
 */
import { expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../../src/index.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './fixtures.js';
import { fluxBflTensors } from './diffusion-fixtures.js';
import { decoded, hfModelFolder, peftFolder, prepareFolders, randomTensor } from './hf-folder.js';
import { DIMS, H, llama, nonFiniteStop, P, prepareLlama, QKV } from './non-finite-cases.js';

const rand = seededRandom(20261208);

/** f32's largest finite value and the magnitude from which values round to Inf in f32 and bf16 (to nearest even). */
export const F32_MAX = (2 - 2 ** -23) * 2 ** 127;
export const F32_INF_FROM = (2 - 2 ** -24) * 2 ** 127;
export const BF16_INF_FROM = (2 - 2 ** -8) * 2 ** 127;
/** f16: from 65520 on values round to Inf. */
export const F16_INF_FROM = 65520;

/** The span of merged values (float64, `rows` × `cols`) at or past `from` in magnitude: count, first and last row, largest finite |value|. */
export function pastOf(merged: (r: number, c: number) => number, rows: number, cols: number, from: number): { count: number; first: number; last: number; largest: number } {
  let count = 0, first = -1, last = -1, largest = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(merged(r, c));
      if (v <= F32_MAX) largest = Math.max(largest, v);
      if (v < from) continue;
      count++;
      if (first < 0) first = r;
      last = r;
    }
  }
  return { count, first, last, largest };
}

const Q = 'model.layers.0.self_attn.q_proj';
/** A rank-1 PEFT LoRA (α = r = 1) on the Llama's q_proj, B nonzero in two rows 90 apart (slabs of 8 f16 rows). */
function rankOne(b: ReadonlyMap<number, number>, a: readonly number[]): FixtureTensor[] {
  return [
    { name: `${P}.${Q}.lora_A.weight`, dtype: 'F32', shape: [1, H], data: a },
    { name: `${P}.${Q}.lora_B.weight`, dtype: 'F32', shape: [H, 1], data: Array.from({ length: H }, (_, r) => b.get(r) ?? 0) },
  ];
}

/** The Llama's q_proj W + B·A, in float64. */
function llamaMerged(base: FixtureTensor[], b: ReadonlyMap<number, number>, a: readonly number[]): (r: number, c: number) => number {
  const W = base.find((t) => t.name === `${Q}.weight`)!.data as ArrayLike<number>;
  return (r, c) => W[r * H + c] + (b.get(r) ?? 0) * a[c];
}

const LLAMA_FILE = `base/model.safetensors: tensor "${Q}.weight"`;
const LLAMA_MODULE = `adapter1 module "${Q}" (scale 1)`;

/** Registers the cases (inside the caller's describe), merged on `backend()` (made in beforeAll). */
export function overflowCases(backend: () => MergeBackend): void {
  it('bf16 output: values in rows 10 and 100 past bf16 (not f32), counted over both slabs', async () => {
    // A of 3.4e38 on every fourth input: W + 3.4e38 rounds to Inf in bf16 and stays finite in f32.
    const b = new Map([[10, 1], [100, -1]]);
    const a = Array.from({ length: H }, (_, j) => (j % 4 === 0 ? 3.4e38 : 0));
    const base = llama(rand);
    const past = pastOf(llamaMerged(base, b, a), H, H, BF16_INF_FROM);
    expect([past.count, past.first, past.last]).toEqual([128, 10, 100]);
    expect(pastOf(llamaMerged(base, b, a), H, H, F32_INF_FROM).count).toBe(0);
    const prepared = await prepareLlama(base, { r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, rankOne(b, a));
    expect(await nonFiniteStop(prepared, backend(), 'BF16')).toBe(
      `${LLAMA_FILE}: merged values up to ${past.largest.toPrecision(3)} overflow BF16 (largest finite 3.39e38): ${past.count} values (first in row 10, last in row 100), ` +
        `after the update from ${LLAMA_MODULE}; write with --dtype f32, or lower --weight`,
    );
  });

  it.each([
    ['F16', F16_INF_FROM, 2 ** -10, 1e5, 'largest finite 65504', 'bf16 or f32'],
    ['BF16', BF16_INF_FROM, 2 ** 100, Math.fround(3.4e38), 'largest finite 3.39e38', 'f32'],
  ])('%s output: row 10 a hair under the rounding edge, which f32 rounds onto the edge, is not counted with row 100 past it', async (out, edge, hair, big, largestText, fix) => {
    // Rank 3: row 10 is W + edge − W − hair (f16) or W + edge − hair (bf16, |W| ≤ 1 far under hair),
    // under the edge: the dtype rounds it to its largest finite value, while its f32 rounding is
    // the edge itself (a tie that rounds to Inf). Row 100 is W + big, past the edge. Only row 100's count.
    const base = llama(rand);
    const W = base.find((t) => t.name === `${Q}.weight`)!.data as ArrayLike<number>;
    const a = [
      Array.from({ length: H }, (_, j) => (j >= 128 ? edge : 0)),
      Array.from({ length: H }, (_, j) => (j < 128 ? 0 : out === 'F16' ? -W[10 * H + j] - hair : -hair)),
      Array.from({ length: H }, (_, j) => (j >= 128 ? big : 0)),
    ];
    expect(a.flat().every((x) => Math.fround(x) === x)).toBe(true);
    const bOf = (r: number) => (r === 10 ? [1, 1, 0] : r === 100 ? [0, 0, 1] : [0, 0, 0]);
    const merged = (r: number, c: number) => W[r * H + c] + bOf(r)[0] * a[0][c] + bOf(r)[1] * a[1][c] + bOf(r)[2] * a[2][c];
    const past = pastOf(merged, H, H, edge);
    expect([past.count, past.first, past.last]).toEqual([128, 100, 100]);
    for (let j = 128; j < H; j++) expect([merged(10, j) < edge, Math.fround(merged(10, j))]).toEqual([true, edge]);
    const adapter: FixtureTensor[] = [
      { name: `${P}.${Q}.lora_A.weight`, dtype: 'F32', shape: [3, H], data: a.flat() },
      { name: `${P}.${Q}.lora_B.weight`, dtype: 'F32', shape: [H, 3], data: Array.from({ length: H }, (_, r) => bOf(r)).flat() },
    ];
    const prepared = await prepareLlama(base, { r: 3, lora_alpha: 3, target_modules: ['q_proj'] }, adapter);
    expect(await nonFiniteStop(prepared, backend(), out)).toBe(
      `${LLAMA_FILE}: merged values up to ${past.largest.toPrecision(3)} overflow ${out} (${largestText}): ${past.count} values (row 100), ` +
        `after the update from ${LLAMA_MODULE}; write with --dtype ${fix}, or lower --weight`,
    );
  });

  it.each(['F16', 'F32'])('values past f32 in rows 10 and 100, written %s: counted over both slabs, no dtype holds them', async (out) => {
    const b = new Map([[10, 2], [100, -2]]);
    const a = Array.from({ length: H }, (_, j) => (j >= 128 ? 3e38 : 0));
    const base = llama(rand);
    const past = pastOf(llamaMerged(base, b, a), H, H, F32_INF_FROM);
    expect([past.count, past.first, past.last]).toEqual([256, 10, 100]);
    const prepared = await prepareLlama(base, { r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, rankOne(b, a));
    expect(await nonFiniteStop(prepared, backend(), out)).toBe(
      `${LLAMA_FILE}: the update from ${LLAMA_MODULE} makes ${past.count} values (first in row 10, last in row 100) too large for any float dtype; check the adapter and --weight`,
    );
  });

  it('f16 overflow in row 10 and values past f32 in row 100: the tensor is refused for the values past f32', async () => {
    const b = new Map([[10, 1], [100, 3e33]]);
    const a = Array.from({ length: H }, (_, j) => (j >= 128 ? 1e6 : 0));
    const base = llama(rand);
    const merged = llamaMerged(base, b, a);
    expect(pastOf(merged, H, H, F16_INF_FROM).count).toBe(256);
    const past = pastOf(merged, H, H, F32_INF_FROM);
    expect([past.count, past.first, past.last]).toEqual([128, 100, 100]);
    const prepared = await prepareLlama(base, { r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, rankOne(b, a));
    expect(await nonFiniteStop(prepared, backend(), 'F16')).toBe(
      `${LLAMA_FILE}: the update from ${LLAMA_MODULE} makes ${past.count} values (row 100) too large for any float dtype; check the adapter and --weight`,
    );
  });

  // Comfy-Org's scaled fp8 Flux cut to h = 64: 2-D weights F8_E4M3 codes with a F32 scale_weight
  // each and the scaled_fp8 marker; the qkv weight (192 × 64) is 64 rows a slab of codes.
  const scale = Math.fround(1 / 60);
  const { h } = DIMS;
  const fluxTensors = (): FixtureTensor[] => fluxBflTensors(rand, 'F32', DIMS).map((t): FixtureTensor => (
    t.shape.length < 2 ? { ...t, dtype: 'BF16' } : { ...t, dtype: 'F8_E4M3', data: Array.from(t.data as ArrayLike<number>, (x) => Math.round(x * 60)) }
  ));
  const scaledFlux = (tensors: FixtureTensor[]) => buildSafetensors([
    ...tensors,
    ...tensors.filter((t) => t.shape.length >= 2).map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [scale] })),
    { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] },
  ]);
  /** A kohya LoRA on the qkv (rank 1, alpha 1): lora_up nonzero in rows 10 and 100 (two slabs). */
  const KOHYA = 'lora_unet_double_blocks_0_img_attn_qkv';
  const qkvLora = (up: ReadonlyMap<number, number>, down: readonly number[]) => buildSafetensors([
    { name: `${KOHYA}.lora_down.weight`, dtype: 'F32', shape: [1, h], data: down },
    { name: `${KOHYA}.lora_up.weight`, dtype: 'F32', shape: [3 * h, 1], data: Array.from({ length: 3 * h }, (_, r) => up.get(r) ?? 0) },
    { name: `${KOHYA}.alpha`, dtype: 'F32', shape: [], data: [1] },
  ], { ss_network_module: 'networks.lora_flux' });
  const scaledMerge = async (up: ReadonlyMap<number, number>, down: readonly number[], from: number, out: string | undefined) => {
    const tensors = fluxTensors();
    const codes = decoded(tensors).get(`${QKV}.weight`)!.values;
    const past = pastOf((r, c) => codes[r * h + c] * scale + (up.get(r) ?? 0) * down[c], 3 * h, h, from);
    const prepared = await prepareMerge(memoryInputFileSet({ 'flux1-dev-fp8.safetensors': scaledFlux(tensors) }, 'flux1-dev-fp8.safetensors'), [
      { files: memoryInputFileSet({ 'style.safetensors': qkvLora(up, down) }, 'style.safetensors') },
    ]);
    return { past, message: await nonFiniteStop(prepared, backend(), out as string) };
  };
  const FLUX_FILE = `flux1-dev-fp8.safetensors/flux1-dev-fp8.safetensors: tensor "${QKV}.weight"`;
  const FLUX_MODULE = `style.safetensors module "${KOHYA}" (scale 1)`;

  it('a scaled fp8 weight (scale_weight) written dequantized to f16: values in rows 10 and 100 past f16, counted over both slabs', async () => {
    const { past, message } = await scaledMerge(new Map([[10, 1], [100, -2]]), Array.from({ length: h }, (_, j) => (j >= 40 ? 1e5 : 0)), F16_INF_FROM, 'F16');
    expect([past.count, past.first, past.last]).toEqual([2 * 24, 10, 100]);
    expect(message).toBe(
      `${FLUX_FILE}: merged values up to ${past.largest.toPrecision(3)} overflow F16 (largest finite 65504): ${past.count} values (first in row 10, last in row 100), ` +
        `after the update from ${FLUX_MODULE}; write with --dtype bf16 or f32, or lower --weight`,
    );
  });

  it('a scaled fp8 weight quantized again (its scale recomputed): values in rows 10 and 100 past f32, counted over both slabs', async () => {
    const { past, message } = await scaledMerge(new Map([[10, 2], [100, -2]]), Array.from({ length: h }, (_, j) => (j >= 40 ? 3e38 : 0)), F32_INF_FROM, undefined);
    expect([past.count, past.first, past.last]).toEqual([2 * 24, 10, 100]);
    expect(message).toBe(`${FLUX_FILE}: the update from ${FLUX_MODULE} makes ${past.count} values (first in row 10, last in row 100) too large for any float dtype; check the adapter and --weight`);
  });

  // Qwen3-MoE as transformers 5 saves it (experts fused (E, 2·inter, hidden)), f16, sizes scaled
  // down: hidden 64, moe_intermediate 64, 4 experts: 128 rows of 64 f16 values an expert, 32 rows a slab.
  const E = 4, D = 64, I = 64;
  const GATE_UP = 'model.layers.0.mlp.experts.gate_up_proj';
  it.each([
    ['f16 overflow', 1e5, F16_INF_FROM],
    ['values past f32', 3e38, F32_INF_FROM],
  ])("transformers 5's fused experts: %s in expert 1's gate rows and expert 2's up rows, named by expert and counted over both slabs", async (_, big, from) => {
    const config = {
      architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: D, moe_intermediate_size: I, intermediate_size: 128, num_experts: E,
      num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 32, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'float16',
    };
    const base = [
      randomTensor('model.embed_tokens.weight', [32, D], 'F16', rand),
      randomTensor('model.layers.0.mlp.gate.weight', [E, D], 'F16', rand),
      randomTensor(GATE_UP, [E, 2 * I, D], 'F16', rand),
      randomTensor('model.layers.0.mlp.experts.down_proj', [E, D, I], 'F16', rand),
      randomTensor('model.norm.weight', [D], 'F16', rand),
      randomTensor('lm_head.weight', [32, D], 'F16', rand),
    ];
    // Expert 1's gate_proj: B 2 in its row 3; expert 2's up_proj: in its row 5 (row I + 5 of expert 2's slab).
    const a = Array.from({ length: D }, (_, j) => (j >= 48 ? big : 0));
    const lora = (expert: number, proj: string, row: number): FixtureTensor[] => [
      { name: `${P}.model.layers.0.mlp.experts.${expert}.${proj}.lora_A.weight`, dtype: 'F32', shape: [1, D], data: a },
      { name: `${P}.model.layers.0.mlp.experts.${expert}.${proj}.lora_B.weight`, dtype: 'F32', shape: [I, 1], data: Array.from({ length: I }, (_, r) => (r === row ? 2 : 0)) },
    ];
    const W = base[2].data as ArrayLike<number>;
    const rowB = (fused: number) => (fused === 1 * 2 * I + 3 || fused === 2 * 2 * I + I + 5 ? 2 : 0);
    const past = pastOf((r, c) => W[r * D + c] + rowB(r) * a[c], E * 2 * I, D, from);
    expect([past.count, past.first, past.last]).toEqual([32, 2 * I + 3, 4 * I + I + 5]);
    const adapter = [...lora(1, 'gate_proj', 3), ...lora(2, 'up_proj', 5)];
    const prepared = await prepareFolders(hfModelFolder(base, config), [peftFolder({ r: 1, lora_alpha: 1, target_modules: ['gate_proj', 'up_proj'] }, adapter)]);
    const where = `${past.count} values (first in row 3 of expert 1, last in row ${I + 5} of expert 2)`;
    const modules = 'adapter1 module "model.layers.0.mlp.experts.1.gate_proj" (scale 1), adapter1 module "model.layers.0.mlp.experts.2.up_proj" (scale 1)';
    expect(await nonFiniteStop(prepared, backend(), 'F16')).toBe(from === F16_INF_FROM
      ? `base/model.safetensors: tensor "${GATE_UP}": merged values up to ${past.largest.toPrecision(3)} overflow F16 (largest finite 65504): ${where}, ` +
        `after the update from ${modules}; write with --dtype bf16 or f32, or lower --weight`
      : `base/model.safetensors: tensor "${GATE_UP}": the update from ${modules} makes ${where} too large for any float dtype; check the adapter and --weight`);
  });
  // transformers' FP8 experts (FineGrainedFP8, weight_block_size null, as Mistral Small 4 ships):
  // gate_up_proj F8_E4M3 codes (E, out, in) with one scale per expert in gate_up_proj_scale_inv
  // (E, 1, 1); cut to 4 experts of 128 × 64 codes: 64 rows a slab.
  it('fp8 fused experts (one scale per expert) written dequantized to f16: overflow in expert 0 and expert 2, named by expert and counted over both slabs', async () => {
    const [FE, OUT, IN] = [4, 128, 64];
    const ex = 'model.language_model.layers.0.mlp.experts';
    const config = {
      architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', tie_word_embeddings: false,
      text_config: { model_type: 'mistral4', hidden_size: IN, n_routed_experts: FE, moe_intermediate_size: OUT / 2 }, vision_config: { model_type: 'pixtral', hidden_size: 8 },
      quantization_config: { activation_scheme: 'static', modules_to_not_convert: ['model.vision_tower', 'model.multi_modal_projector', 'lm_head'], quant_method: 'fp8', weight_block_size: null },
    };
    const scales = [0.015625, 0.03125, 0.0078125, 0.0625];
    const base: FixtureTensor[] = [
      randomTensor('model.language_model.embed_tokens.weight', [32, IN], 'BF16', rand),
      { ...randomTensor(`${ex}.gate_up_proj`, [FE, OUT, IN], 'F32', rand, 100), dtype: 'F8_E4M3' },
      { name: `${ex}.gate_up_proj_scale_inv`, dtype: 'F32', shape: [FE, 1, 1], data: scales },
      { name: `${ex}.gate_up_proj_activation_scale`, dtype: 'F32', shape: [FE], data: [1, 1, 1, 1] },
      { ...randomTensor(`${ex}.down_proj`, [FE, IN, OUT / 2], 'F32', rand, 100), dtype: 'F8_E4M3' },
      { name: `${ex}.down_proj_scale_inv`, dtype: 'F32', shape: [FE, 1, 1], data: scales },
      { name: `${ex}.down_proj_activation_scale`, dtype: 'F32', shape: [FE], data: [1, 1, 1, 1] },
      randomTensor('model.language_model.layers.0.mlp.gate.weight', [FE, IN], 'BF16', rand),
      randomTensor('lm_head.weight', [32, IN], 'BF16', rand),
    ];
    // PEFT ParamWrapper on (E, out, in) (0.19.1+): lora_A (r·E, in), expert e's row e; lora_B (out, r·E), its column e.
    // r = α = 1: expert 0 moved in its row 3, expert 2 in its row 100, by 1e5 on inputs 48 on.
    const aOf = (e: number) => Array.from({ length: IN }, (_, j) => (e % 2 === 0 && j >= 48 ? 1e5 : 0));
    const bOf = (row: number, e: number) => (e === 0 && row === 3 ? 1 : e === 2 && row === 100 ? -1 : 0);
    const factors: FixtureTensor[] = [
      { name: `base_model.model.${ex}.lora_A.weight`, dtype: 'F32', shape: [FE, IN], data: Array.from({ length: FE }, (_, e) => aOf(e)).flat() },
      { name: `base_model.model.${ex}.lora_B.weight`, dtype: 'F32', shape: [OUT, FE], data: Array.from({ length: OUT * FE }, (_, i) => bOf(Math.floor(i / FE), i % FE)) },
    ];
    const codes = decoded(base).get(`${ex}.gate_up_proj`)!.values;
    const past = pastOf((row, c) => {
      const e = Math.floor(row / OUT);
      return codes[row * IN + c] * scales[e] + bOf(row % OUT, e) * aOf(e)[c];
    }, FE * OUT, IN, F16_INF_FROM);
    expect([past.count, past.first, past.last]).toEqual([32, 3, 2 * OUT + 100]);
    const prepared = await prepareFolders(hfModelFolder(base, config), [
      peftFolder({ r: 1, lora_alpha: 1, target_modules: [], target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' }, factors),
    ]);
    expect(await nonFiniteStop(prepared, backend(), 'F16')).toBe(
      `base/model.safetensors: tensor "${ex}.gate_up_proj": merged values up to ${past.largest.toPrecision(3)} overflow F16 (largest finite 65504): ${past.count} values ` +
        `(first in row 3 of expert 0, last in row 100 of expert 2), after the update from adapter1 module "${ex}.gate_up_proj" (scale 1); write with --dtype bf16 or f32, or lower --weight`,
    );
  });
}
