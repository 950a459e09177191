/**
 * transformers' FP8 experts as Mistral Small 4 ships in transformers' format: FineGrainedFP8 with
 * `weight_block_size: null`, each fused expert parameter F8_E4M3 codes (E, out, in) with
 * `<param>_scale_inv` F32 (E, 1, 1), one scale per expert (FP8Experts: W_e = code · scale_inv[e]),
 * and a static `<param>_activation_scale` (E). A PEFT `target_parameters` LoRA on
 * `experts.gate_up_proj` merges into each expert's real values; kept fp8, each merged expert is
 * quantized again as FineGrainedFP8 quantizes a tensor (q = 448 / amax over the expert, code =
 * e4m3(W'·q), scale_inv = 1 / q, in float32); with --dtype the experts are written dequantized and
 * their scales and quantization_config left out. Truth in float64 here, fp8 rounding written out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor, readMergedFolder } from './helpers/hf-folder.js';
import { mergeFolders } from './helpers/cli.js';

const rand = seededRandom(90731);
const backends = new Map<number, MergeBackend>();
beforeAll(async () => {
  for (const threads of [1, 2]) backends.set(threads, await createNodeBackend('cpu', { threads }));
});
const temp = tempDirs();
afterAll(() => {
  for (const b of backends.values()) b.dispose();
  temp.removeAll();
});

const r = 2;
const alpha = 4;
const E = 3;
const [INTER2, HIDDEN, INTER] = [12, 8, 6];

/** A scale tensor: positive values of its dtype's grid. */
function scaleTensor(name: string, shape: number[]): FixtureTensor {
  const t = randomTensor(name, shape, 'F32', rand, 0.02);
  return { ...t, data: Array.from(t.data as ArrayLike<number>, (x) => Math.fround(Math.abs(x) + 2 ** -10)) };
}

/** float8_e4m3fn's byte for x (|x| ≤ 448, finite): nearest, ties to even; step 2^-9 below 2^-6, else 2^(e−3). */
function e4m3Byte(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  const e = a < 2 ** -6 ? -6 : Math.floor(Math.log2(a));
  const step = 2 ** (e - 3);
  const q = a / step;
  let n = Math.floor(q);
  if (q - n > 0.5 || (q - n === 0.5 && n % 2 === 1)) n++;
  const v = n * step; // may carry into the next binade
  if (v === 0) return sign;
  const ve = v < 2 ** -6 ? -7 : Math.floor(Math.log2(v));
  if (ve === -7) return sign | (v / 2 ** -9); // subnormal: exponent field 0
  return sign | ((ve + 7) << 3) | (v / 2 ** ve - 1) * 8;
}

const config = {
  architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', tie_word_embeddings: false,
  text_config: { model_type: 'mistral4', hidden_size: HIDDEN, n_routed_experts: E, moe_intermediate_size: INTER }, vision_config: { model_type: 'pixtral', hidden_size: 8 },
  quantization_config: { activation_scheme: 'static', modules_to_not_convert: ['model.vision_tower', 'model.multi_modal_projector', 'lm_head'], quant_method: 'fp8', weight_block_size: null },
};
const ex = 'model.language_model.layers.0.mlp.experts';
const base = [
  randomTensor('model.language_model.embed_tokens.weight', [32, HIDDEN], 'BF16', rand),
  randomTensor(`${ex}.gate_up_proj`, [E, INTER2, HIDDEN], 'F8_E4M3', rand, 100), scaleTensor(`${ex}.gate_up_proj_scale_inv`, [E, 1, 1]), scaleTensor(`${ex}.gate_up_proj_activation_scale`, [E]),
  randomTensor(`${ex}.down_proj`, [E, HIDDEN, INTER], 'F8_E4M3', rand, 100), scaleTensor(`${ex}.down_proj_scale_inv`, [E, 1, 1]), scaleTensor(`${ex}.down_proj_activation_scale`, [E]),
  randomTensor('model.language_model.layers.0.mlp.gate.weight', [E, HIDDEN], 'BF16', rand),
  randomTensor('lm_head.weight', [32, HIDDEN], 'BF16', rand),
];
const b = decoded(base);
// PEFT ParamWrapper on (E, out, in) (0.19.1+, `e-o-i`): lora_A (r·E, in), expert e's rows e·r…; lora_B (out, r·E), its column k at k·E + e.
const factors = [
  randomTensor(`base_model.model.${ex}.lora_A.weight`, [r * E, HIDDEN], 'F32', rand, 0.5),
  randomTensor(`base_model.model.${ex}.lora_B.weight`, [INTER2, r * E], 'F32', rand, 0.5),
];
const f = decoded(factors);
const adapter = () => peftFolder({ r, lora_alpha: alpha, target_modules: [], target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' }, factors);

/** W_e = code · scale_inv[e] of a fused parameter, as doubles (E·out rows). */
function real(param: string): Float64Array {
  const codes = b.get(param)!;
  const per = codes.shape[1] * codes.shape[2];
  return codes.values.map((c, i) => c * b.get(`${param}_scale_inv`)!.values[Math.floor(i / per)]);
}

/** gate_up_proj's merged values W_e + α/r · B_e·A_e, in float64. */
function mergedGateUp(): Float64Array {
  const w = real(`${ex}.gate_up_proj`);
  const A = f.get(`base_model.model.${ex}.lora_A.weight`)!.values;
  const B = f.get(`base_model.model.${ex}.lora_B.weight`)!.values;
  return w.map((v, idx) => {
    const e = Math.floor(idx / (INTER2 * HIDDEN));
    const o = Math.floor(idx / HIDDEN) % INTER2;
    const i = idx % HIDDEN;
    let d = 0;
    for (let k = 0; k < r; k++) d += B[o * r * E + k * E + e] * A[(e * r + k) * HIDDEN + i];
    return v + (alpha / r) * d;
  });
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

describe('Mistral Small 4 in transformers\' format, FP8: fused experts with one scale per expert (gate_up_proj_scale_inv (E, 1, 1))', () => {
  // Slabs of a few rows (each still starting on an expert's first row, holding whole experts), or all experts in one.
  it.for([[1, 64], [2, 64], [1, undefined], [2, undefined]] as const)('a target_parameters LoRA on experts.gate_up_proj, kept fp8: each expert quantized again with its own scale_inv (%i threads, slabs of %s bytes)', async ([threads, slabBytes]) => {
    const prepared = await prepare(hfModelFolder(base, config), adapter());
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.notes).toContain("the base holds 2 block-wise fp8 weights (weight_scale_inv; 2 of them fused expert parameters, <parameter>_scale_inv holding each expert's scales): adapters are merged into their real values (code × scale); they are written as fp8 again with each block's scale recomputed as the quantizer does, or dequantized with --dtype f32/f16/bf16");
    const merged = await mergeIntoFolder(prepared, backends.get(threads)!, undefined, slabBytes);
    const values = mergedGateUp().map(Math.fround); // W' rounded once to float32
    const per = INTER2 * HIDDEN;
    const codes = new Uint8Array(E * per);
    const scales: number[] = [];
    for (let e = 0; e < E; e++) {
      const slab = values.subarray(e * per, (e + 1) * per);
      const q = Math.fround(448 / slab.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
      scales.push(Math.fround(1 / q));
      slab.forEach((v, i) => { codes[e * per + i] = e4m3Byte(Math.min(448, Math.max(-448, Math.fround(v * q)))); });
    }
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.shape).toEqual([E, INTER2, HIDDEN]);
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.dtype).toBe('F8_E4M3');
    expect(merged.tensors.get(`${ex}.gate_up_proj_scale_inv`)!.shape).toEqual([E, 1, 1]);
    expect(merged.tensors.get(`${ex}.gate_up_proj_scale_inv`)!.bytes).toEqual(f32Bytes(scales));
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.bytes).toEqual(codes);
    // The scales differ per expert (else one scale for all would pass as well).
    expect(new Set(scales).size).toBe(E);
    for (const key of [`${ex}.gate_up_proj_activation_scale`, `${ex}.down_proj`, `${ex}.down_proj_scale_inv`, `${ex}.down_proj_activation_scale`]) {
      expect(merged.tensors.get(key)!.bytes, key).toEqual(b.get(key)!.bytes);
    }
    expect(merged.json('config.json').quantization_config).toEqual(config.quantization_config);
  });

  it.for([1, 2])('--dtype bf16: every fused expert parameter dequantized with its experts\' scales, the scales and quantization_config left out (%i threads)', async (threads) => {
    const merged = await mergeIntoFolder(await prepare(hfModelFolder(base, config), adapter()), backends.get(threads)!, 'BF16', 64);
    const bf16 = (v: Float64Array) => Array.from(v, (x) => roundForDType(x, 'BF16'));
    const gateUp = merged.tensors.get(`${ex}.gate_up_proj`)!;
    expect([gateUp.dtype, gateUp.shape]).toEqual(['BF16', [E, INTER2, HIDDEN]]);
    expect(Array.from(gateUp.values)).toEqual(bf16(mergedGateUp()));
    const down = merged.tensors.get(`${ex}.down_proj`)!;
    expect([down.dtype, down.shape]).toEqual(['BF16', [E, HIDDEN, INTER]]);
    expect(Array.from(down.values)).toEqual(bf16(real(`${ex}.down_proj`)));
    expect([...merged.tensors.keys()].filter((k) => k.includes('_scale')).sort()).toEqual([]);
    expect(merged.json('config.json').quantization_config).toBeUndefined();
  });

  it('a negative scale_inv is refused naming it and the expert\'s element', async () => {
    const broken = base.map((t) => (t.name === `${ex}.gate_up_proj_scale_inv` ? { ...t, data: Array.from(t.data as ArrayLike<number>, (x, i) => (i === 1 ? -0.5 : x)) } : t));
    await expect(prepare(hfModelFolder(broken, config), adapter())).rejects.toThrow(
      `base: tensor "${ex}.gate_up_proj_scale_inv" holds the scale -0.5 (element 1); scales must be finite and not negative`,
    );
  });

  it('a scale_inv holding a NaN and a negative scale is refused with their count, the first and the last', async () => {
    const last = E - 1;
    const broken = base.map((t) => (t.name === `${ex}.gate_up_proj_scale_inv` ? { ...t, data: Array.from(t.data as ArrayLike<number>, (x, i) => (i === 0 ? NaN : i === last ? -0.25 : x)) } : t));
    await expect(prepare(hfModelFolder(broken, config), adapter())).rejects.toThrow(
      `base: tensor "${ex}.gate_up_proj_scale_inv" holds 2 scales that are NaN, Inf or negative (first NaN in element 0, last -0.25 in element ${last}); scales must be finite and not negative`,
    );
  });

  it('a scale_inv of another shape than (E, 1, 1) is refused naming it', async () => {
    const broken = base.map((t) => (t.name === `${ex}.down_proj_scale_inv` ? scaleTensor(t.name, [E, 1]) : t));
    await expect(prepare(hfModelFolder(broken, config), adapter())).rejects.toThrow(
      `base: tensor "${ex}.down_proj_scale_inv" has shape [${E}, 1], which is no grid of scales over ${ex}.down_proj [${E}, ${HIDDEN}, ${INTER}] that config.json's quantization_config describes (expected [${E}, 1, 1], one grid per expert)`,
    );
  });
});

describe('a PEFT LoRA on transformers 4\'s per-expert modules (mlp.experts.K.gate_proj / up_proj / down_proj) on the FP8 fused experts', () => {
  // Expert 1's gate_proj and expert 2's up_proj land on their rows of gate_up_proj (gate's first `inter` of the slab,
  // up's last), expert 0's down_proj on its slab of down_proj: ΔW added to the real values code · scale_inv[e].
  const per = [
    { path: `${ex}.1.gate_proj`, param: `${ex}.gate_up_proj`, expert: 1, offset: 0, out: INTER, inF: HIDDEN, rows: INTER2 },
    { path: `${ex}.2.up_proj`, param: `${ex}.gate_up_proj`, expert: 2, offset: INTER, out: INTER, inF: HIDDEN, rows: INTER2 },
    { path: `${ex}.0.down_proj`, param: `${ex}.down_proj`, expert: 0, offset: 0, out: HIDDEN, inF: INTER, rows: HIDDEN },
  ];
  const perFactors = per.flatMap((l) => [
    randomTensor(`base_model.model.${l.path}.lora_A.weight`, [r, l.inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${l.path}.lora_B.weight`, [l.out, r], 'F32', rand, 0.5),
  ]);
  const pf = decoded(perFactors);
  const perAdapter = () => peftFolder({ r, lora_alpha: alpha, target_modules: ['gate_proj', 'up_proj', 'down_proj'], peft_version: '0.15.2' }, perFactors);
  /** A fused parameter's real values with each module's α/r · B·A added on its rows, in float64. */
  const mergedReal = (param: string) => {
    const w = real(param);
    const cols = b.get(param)!.shape[2];
    for (const l of per.filter((x) => x.param === param)) {
      const A = pf.get(`base_model.model.${l.path}.lora_A.weight`)!.values;
      const B = pf.get(`base_model.model.${l.path}.lora_B.weight`)!.values;
      for (let o = 0; o < l.out; o++) for (let i = 0; i < cols; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += B[o * r + k] * A[k * cols + i];
        w[(l.expert * l.rows + l.offset + o) * cols + i] += (alpha / r) * d;
      }
    }
    return w;
  };

  it.for([1, 2])('--dtype bf16: the experts\' rows moved, every other value the dequantized base (%i threads)', async (threads) => {
    const prepared = await prepare(hfModelFolder(base, config), perAdapter());
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.layout)])).toEqual([
      [`${ex}.gate_up_proj`, ['fused-expert-rows', 'fused-expert-rows']], [`${ex}.down_proj`, ['fused-expert-rows']],
    ]);
    const merged = await mergeIntoFolder(prepared, backends.get(threads)!, 'BF16', 64);
    for (const param of [`${ex}.gate_up_proj`, `${ex}.down_proj`]) {
      const got = merged.tensors.get(param)!;
      expect([got.dtype, got.shape]).toEqual(['BF16', b.get(param)!.shape]);
      expect(Array.from(got.values), param).toEqual(Array.from(mergedReal(param), (x) => roundForDType(x, 'BF16')));
    }
  });

  it('kept fp8: each expert of gate_up_proj quantized again with its own scale_inv, as for target_parameters', async () => {
    const merged = await mergeIntoFolder(await prepare(hfModelFolder(base, config), perAdapter()), backends.get(1)!);
    const values = mergedReal(`${ex}.gate_up_proj`).map(Math.fround);
    const slab = INTER2 * HIDDEN;
    const codes = new Uint8Array(E * slab);
    const scales: number[] = [];
    for (let e = 0; e < E; e++) {
      const v = values.subarray(e * slab, (e + 1) * slab);
      const q = Math.fround(448 / v.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
      scales.push(Math.fround(1 / q));
      v.forEach((x, i) => { codes[e * slab + i] = e4m3Byte(Math.min(448, Math.max(-448, Math.fround(x * q)))); });
    }
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.dtype).toBe('F8_E4M3');
    expect(merged.tensors.get(`${ex}.gate_up_proj_scale_inv`)!.bytes).toEqual(f32Bytes(scales));
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.bytes).toEqual(codes);
  });
});

describe('transformers\' FP8 experts with a block grid per expert (weight_block_size [4, 4], gate_up_proj_scale_inv (E, 2·inter/4, ⌈hidden/4⌉))', () => {
  const blocked = { ...config, quantization_config: { ...config.quantization_config, weight_block_size: [4, 4] } };
  const blockBase = base.map((t) => (t.name.endsWith('_scale_inv') ? scaleTensor(t.name, t.name.includes('gate_up') ? [E, INTER2 / 4, HIDDEN / 4] : [E, HIDDEN / 4, Math.ceil(INTER / 4)]) : t));
  const bb = decoded(blockBase);

  it.for([1, 2])('kept fp8: each expert\'s 4 × 4 blocks quantized again with their own scale_inv (%i threads)', async (threads) => {
    const merged = await mergeIntoFolder(await prepare(hfModelFolder(blockBase, blocked), adapter()), backends.get(threads)!, undefined, 64);
    // W' = code · scale_inv[e, ⌊o/4⌋, ⌊i/4⌋] + ΔW_e, rounded once to float32.
    const scaleOf = (idx: number) => {
      const e = Math.floor(idx / (INTER2 * HIDDEN));
      const o = Math.floor(idx / HIDDEN) % INTER2;
      const i = idx % HIDDEN;
      return ((e * (INTER2 / 4) + Math.floor(o / 4)) * (HIDDEN / 4)) + Math.floor(i / 4);
    };
    const w = bb.get(`${ex}.gate_up_proj`)!.values.map((c, idx) => c * bb.get(`${ex}.gate_up_proj_scale_inv`)!.values[scaleOf(idx)]);
    const delta = mergedGateUp().map((v, idx) => v - real(`${ex}.gate_up_proj`)[idx]);
    const values = w.map((v, idx) => Math.fround(v + delta[idx]));
    const nBlocks = E * (INTER2 / 4) * (HIDDEN / 4);
    const amax = new Array<number>(nBlocks).fill(0);
    values.forEach((v, idx) => { amax[scaleOf(idx)] = Math.max(amax[scaleOf(idx)], Math.abs(v)); });
    const q = amax.map((m) => Math.fround(448 / m));
    const codes = Uint8Array.from(values, (v, idx) => e4m3Byte(Math.min(448, Math.max(-448, Math.fround(v * q[scaleOf(idx)])))));
    expect(merged.tensors.get(`${ex}.gate_up_proj_scale_inv`)!.bytes).toEqual(f32Bytes(q.map((x) => Math.fround(1 / x))));
    expect(merged.tensors.get(`${ex}.gate_up_proj`)!.bytes).toEqual(codes);
    expect(merged.tensors.get(`${ex}.down_proj`)!.bytes).toEqual(bb.get(`${ex}.down_proj`)!.bytes);
  });
});

describe('loramerge merge on transformers\' FP8 experts', () => {
  it('--dtype bf16: the experts written dequantized, config.json without quantization_config', async () => {
    const { run, out, lines } = await mergeFolders(temp.make, hfModelFolder(base, config), adapter(), ['--dtype', 'bf16']);
    expect([run.code, lines]).toEqual([0, []]);
    const merged = readMergedFolder(new Map(readdirSync(out).map((name) => [name, new Uint8Array(readFileSync(join(out, name)))])));
    expect(Array.from(merged.tensors.get(`${ex}.gate_up_proj`)!.values)).toEqual(Array.from(mergedGateUp(), (x) => roundForDType(x, 'BF16')));
    expect(merged.json('config.json').quantization_config).toBeUndefined();
  });

  it('a LoRA on a parameter whose grid\'s blocks cross experts: one line naming the scale, nothing written', async () => {
    const blocked = { ...config, quantization_config: { ...config.quantization_config, weight_block_size: [8, 8] } };
    const crossing = base.map((t) => (t.name.endsWith('_scale_inv') ? scaleTensor(t.name, [E, t.name.includes('gate_up') ? 2 : 1, 1]) : t));
    const { run, out, lines } = await mergeFolders(temp.make, hfModelFolder(crossing, blocked), adapter(), ['--dtype', 'bf16']);
    expect(run.code).not.toBe(0);
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^error: .*adapter: module "${ex}.gate_up_proj": the base tensor ${ex}.gate_up_proj is stored quantized, with its scale in ${ex}.gate_up_proj_scale_inv; merging into quantized weights of this kind is not supported: use the unquantized model$`))]);
    expect(existsSync(out)).toBe(false);
  });
});
