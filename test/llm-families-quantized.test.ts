/**
 * Quantized and mlx LLM checkpoints as their repositories hold them, each with a LoRA trained on
 * it: Llama 4 Maverick FP8 (compressed-tensors, experts one Linear each), Ministral 3 FP8
 * (FineGrainedFP8 per tensor: `weight_block_size: null`, `weight_scale_inv` of shape [] and a
 * static `activation_scale`), Mistral Small 4 FP8 in transformers' format (its fused FP8 experts,
 * `gate_up_proj_scale_inv` per expert: written dequantized here, merged in fp8-fused-experts.test.ts), Llama 3.1 405B FP8 (fbgemm_fp8, written dequantized), and Llama 4 as mlx-lm and
 * mlx-vlm convert it (SwitchGLU named `experts`: `feed_forward.experts.gate_proj.weight`
 * (E, inter, hidden)), with an mlx-lm LoRASwitchLinear adapter and a PEFT LoRA on one expert, and
 * mlx-community's 8-bit Llama 4 (its stacked experts quantized), and Mistral's own FP8 format
 * (consolidated.safetensors, `qscale_weight`), refused.
 * Merged tensors are compared with float64 truth written out here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';
import { mlxFolder } from './helpers/mlx-lm-folder.js';

const rand = seededRandom(7411);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

const r = 2;
const alpha = 4;

/** A scale tensor: positive values of its dtype's grid. */
function scaleTensor(name: string, shape: number[], dtype: 'BF16' | 'F32'): FixtureTensor {
  const t = randomTensor(name, shape, dtype, rand, 0.02);
  return { ...t, data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(Math.abs(x) + 2 ** -10, dtype)) };
}

/** PEFT factors for each module path (lora_A (r, in), lora_B (out, r)). */
function peftFactors(modules: [path: string, out: number, inF: number][]): FixtureTensor[] {
  return modules.flatMap(([path, out, inF]) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5), randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ]);
}

/** W + α/r·B·A, W given as doubles. */
function loraTruth(w: ArrayLike<number>, factors: Map<string, DecodedTensor>, path: string): Float64Array {
  const delta = product(factors.get(`base_model.model.${path}.lora_B.weight`)!, factors.get(`base_model.model.${path}.lora_A.weight`)!);
  return Float64Array.from(w, (v, i) => v + (alpha / r) * delta[i]);
}

/** code × scale of each output row (a scale per row: (out, 1)), or of the whole tensor (one scale). */
function dequantized(codes: DecodedTensor, scale: DecodedTensor): Float64Array {
  const cols = codes.shape[1];
  return codes.values.map((c, i) => c * scale.values[scale.values.length === 1 ? 0 : Math.floor(i / cols)]);
}

describe('meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8: compressed-tensors FP8 per channel, each expert a Linear of its own', () => {
  // Its config.json: weights 8-bit float per channel, activations per token (dynamic); attention, routers, the vision
  // model, the projector and the head left out (bf16). Its experts are saved one Linear each (the module tree of
  // transformers' SequentialLlama4TextExperts, which loads it), each F8_E4M3 with a BF16 weight_scale (out, 1).
  const config = {
    architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', tie_word_embeddings: false,
    text_config: { model_type: 'llama4_text', hidden_size: 8, intermediate_size: 6, num_local_experts: 2, interleave_moe_layer_step: 2 },
    vision_config: { model_type: 'llama4_vision_model', hidden_size: 8 },
    quantization_config: {
      quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed',
      config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 8, type: 'float', strategy: 'channel', symmetric: true, dynamic: false, observer: 'minmax' }, input_activations: { num_bits: 8, type: 'float', strategy: 'token', symmetric: true, dynamic: true } } },
      ignore: ['re:.*self_attn.*', 're:.*router.*', 're:vision_model.*', 're:multi_modal_projector.*', 'language_model.lm_head'],
    },
  };
  const L = 'language_model.model.layers.1';
  const fp8 = (stem: string, out: number, inF: number) => [randomTensor(`${stem}.weight`, [out, inF], 'F8_E4M3', rand, 100), scaleTensor(`${stem}.weight_scale`, [out, 1], 'BF16')];
  const base = [
    randomTensor('language_model.model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor(`${L}.self_attn.q_proj.weight`, [8, 8], 'BF16', rand),
    randomTensor(`${L}.feed_forward.router.weight`, [2, 8], 'BF16', rand),
    ...[0, 1].flatMap((e) => [...fp8(`${L}.feed_forward.experts.${e}.gate_proj`, 6, 8), ...fp8(`${L}.feed_forward.experts.${e}.up_proj`, 6, 8), ...fp8(`${L}.feed_forward.experts.${e}.down_proj`, 8, 6)]),
    ...fp8(`${L}.feed_forward.shared_expert.gate_proj`, 6, 8),
    randomTensor('language_model.lm_head.weight', [32, 8], 'BF16', rand),
    randomTensor('vision_model.model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
  ];
  const modules: [string, number, number][] = [[`${L}.feed_forward.experts.1.gate_proj`, 6, 8], [`${L}.feed_forward.experts.0.down_proj`, 8, 6], [`${L}.feed_forward.shared_expert.gate_proj`, 6, 8], [`${L}.self_attn.q_proj`, 8, 8]];
  const factors = peftFactors(modules);
  const adapter = peftFolder({ r, lora_alpha: alpha, target_modules: ['gate_proj', 'down_proj', 'q_proj'], peft_version: '0.17.1' }, factors);

  it('a PEFT LoRA on experts, the shared expert and attention: merged into code × weight_scale + ΔW (written f32), the rest as stored', async () => {
    const prepared = await prepare(hfModelFolder(base, config, { shards: 2 }), adapter);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend, 'F32');
    const b = decoded(base);
    const a = decoded(factors);
    for (const [path] of modules) {
      const w = b.get(`${path}.weight`)!;
      const real = w.dtype === 'F8_E4M3' ? dequantized(w, b.get(`${path}.weight_scale`)!) : w.values;
      expectValues(`${path}.weight`, merged.tensors.get(`${path}.weight`)!, loraTruth(real, a, path));
    }
    const untouched = `${L}.feed_forward.experts.0.gate_proj`;
    expectValues(untouched, merged.tensors.get(`${untouched}.weight`)!, dequantized(b.get(`${untouched}.weight`)!, b.get(`${untouched}.weight_scale`)!));
    expect(merged.tensors.has(`${untouched}.weight_scale`)).toBe(false);
    expect(merged.json('config.json').quantization_config).toBeUndefined();
  });

  it('a PEFT LoRA trained on the bf16 release (target_parameters on Llama4TextExperts.gate_up_proj (E, hidden, 2·inter)): expert e\'s gate and up halves land on its FP8 Linears, transposed', async () => {
    // PEFT before 0.19: lora_A (r·E, hidden), lora_B (2·inter, r·E); expert e's ΔW (hidden, 2·inter) = (B_e·A_e)ᵀ, whose
    // columns [0, inter) are gate_proj's rows, [inter, 2·inter) up_proj's (the checkpoint's Linears are the halves transposed).
    const E = 2, H = 8, I = 6;
    const A = randomTensor(`base_model.model.${L}.feed_forward.experts.lora_A.weight`, [r * E, H], 'F32', rand, 0.5);
    const B = randomTensor(`base_model.model.${L}.feed_forward.experts.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5);
    const prepared = await prepare(hfModelFolder(base, config, { shards: 2 }), peftFolder({ r, lora_alpha: alpha, target_modules: [], target_parameters: ['feed_forward.experts.gate_up_proj'], peft_version: '0.17.1' }, [A, B]));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend, 'F32');
    const b = decoded(base);
    const a = decoded([A, B]);
    const [Av, Bv] = [a.get(A.name)!.values, a.get(B.name)!.values];
    for (let e = 0; e < E; e++) {
      for (const [proj, first] of [['gate_proj', 0], ['up_proj', I]] as const) {
        const stem = `${L}.feed_forward.experts.${e}.${proj}`;
        const truth = dequantized(b.get(`${stem}.weight`)!, b.get(`${stem}.weight_scale`)!);
        for (let o = 0; o < I; o++) for (let i = 0; i < H; i++) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += Bv[(first + o) * r * E + k * E + e] * Av[(e * r + k) * H + i];
          truth[o * H + i] += (alpha / r) * sum;
        }
        expectValues(`${stem}.weight`, merged.tensors.get(`${stem}.weight`)!, truth);
      }
    }
  });
});

describe('mistralai/Ministral-3-8B-Instruct-2512 FP8: FineGrainedFP8 with one scale per tensor (weight_block_size null)', () => {
  // transformers' conversion of Mistral's FP8 release (convert_ministral3_weights_to_hf.py): quant_method fp8,
  // activation_scheme static, weight_block_size null; each quantized Linear's weight F8_E4M3 with weight_scale_inv
  // (the quantizer squeezes its one scale to shape []) and activation_scale; vision tower, projector and head bf16.
  const config = {
    architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', tie_word_embeddings: false,
    text_config: { model_type: 'ministral3', hidden_size: 8 }, vision_config: { model_type: 'pixtral', hidden_size: 8 },
    quantization_config: { activation_scheme: 'static', modules_to_not_convert: ['model.vision_tower', 'model.multi_modal_projector', 'lm_head'], quant_method: 'fp8', weight_block_size: null },
  };
  const q = 'model.language_model.layers.0.self_attn.q_proj';
  const k = 'model.language_model.layers.0.self_attn.k_proj';
  const base = [
    randomTensor('model.language_model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor(`${q}.weight`, [8, 8], 'F8_E4M3', rand, 100), scaleTensor(`${q}.weight_scale_inv`, [], 'F32'), scaleTensor(`${q}.activation_scale`, [], 'F32'),
    randomTensor(`${k}.weight`, [4, 8], 'F8_E4M3', rand, 100), scaleTensor(`${k}.weight_scale_inv`, [], 'F32'), scaleTensor(`${k}.activation_scale`, [], 'F32'),
    randomTensor('model.language_model.norm.weight', [8], 'BF16', rand),
    randomTensor('model.vision_tower.transformer.layers.0.attention.q_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('model.multi_modal_projector.linear_1.weight', [8, 8], 'BF16', rand),
    randomTensor('lm_head.weight', [32, 8], 'BF16', rand),
  ];
  const modules: [string, number, number][] = [[q, 8, 8], ['model.vision_tower.transformer.layers.0.attention.q_proj', 8, 8], ['lm_head', 32, 8]];
  const factors = peftFactors(modules);
  const adapter = peftFolder({ r, lora_alpha: alpha, target_modules: ['q_proj', 'lm_head'], peft_version: '0.17.1' }, factors);
  const folder = () => hfModelFolder(base, config, { shards: 2 });

  it('merged, written fp8 again: the codes and the one scale recomputed as FineGrainedFP8 quantizes (q = 448 / amax, scale = 1 / q), activation_scale kept', async () => {
    const prepared = await prepare(folder(), adapter);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(factors);
    const real = loraTruth(dequantized(b.get(`${q}.weight`)!, b.get(`${q}.weight_scale_inv`)!), a, q).map(Math.fround);
    const amax = real.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const quant = Math.fround(448 / amax);
    const codes = merged.tensors.get(`${q}.weight`)!;
    const scale = merged.tensors.get(`${q}.weight_scale_inv`)!;
    expect([codes.dtype, scale.dtype, scale.shape]).toEqual(['F8_E4M3', 'F32', []]);
    expect(scale.values[0]).toBe(Math.fround(1 / quant));
    expect(Array.from(codes.values)).toEqual(Array.from(real, (v) => roundForDType(Math.min(448, Math.max(-448, Math.fround(v * quant))), 'F8_E4M3')));
    for (const key of [`${q}.activation_scale`, `${k}.weight`, `${k}.weight_scale_inv`, `${k}.activation_scale`]) expect(merged.tensors.get(key)!.bytes, key).toEqual(b.get(key)!.bytes);
    for (const path of ['model.vision_tower.transformer.layers.0.attention.q_proj', 'lm_head']) {
      expectValues(`${path}.weight`, merged.tensors.get(`${path}.weight`)!, loraTruth(b.get(`${path}.weight`)!.values, a, path));
    }
    expect(merged.json('config.json').quantization_config).toEqual(config.quantization_config);
  });

  it('with --dtype bf16: every weight code × weight_scale_inv (+ ΔW), the scales and activation_scale left out', async () => {
    const merged = await mergeIntoFolder(await prepare(folder(), adapter), backend, 'BF16');
    const b = decoded(base);
    expectValues(`${q}.weight`, merged.tensors.get(`${q}.weight`)!, loraTruth(dequantized(b.get(`${q}.weight`)!, b.get(`${q}.weight_scale_inv`)!), decoded(factors), q));
    expectValues(`${k}.weight`, merged.tensors.get(`${k}.weight`)!, dequantized(b.get(`${k}.weight`)!, b.get(`${k}.weight_scale_inv`)!));
    expect([...merged.tensors.keys()].filter((key) => key.endsWith('scale') || key.endsWith('scale_inv'))).toEqual([]);
  });
});

describe('Mistral Small 4 in transformers\' format, FP8: FineGrainedFP8 per tensor, its experts fused (experts.gate_up_proj with gate_up_proj_scale_inv)', () => {
  // transformers' FP8 experts keep each fused expert parameter as F8_E4M3 codes (E, 2·inter, hidden) with
  // `<param>_scale_inv` (E, 1, 1) per tensor and a static `<param>_activation_scale` (E); attention Linears as
  // Ministral 3's above (weight_scale_inv of shape [], activation_scale). convert_hf_to_gguf reads the pair as
  // dequant(codes, scale_inv), and the TensorRT-LLM and vLLM loaders of Mistral4MoE split it per expert the same way.
  const E = 2;
  const config = {
    architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', tie_word_embeddings: false,
    text_config: { model_type: 'mistral4', hidden_size: 8, n_routed_experts: E }, vision_config: { model_type: 'pixtral', hidden_size: 8 },
    quantization_config: { activation_scheme: 'static', modules_to_not_convert: ['model.vision_tower', 'model.multi_modal_projector', 'lm_head'], quant_method: 'fp8', weight_block_size: null },
  };
  const ex = 'model.language_model.layers.0.mlp.experts';
  const qa = 'model.language_model.layers.0.self_attn.q_a_proj';
  const base = [
    randomTensor('model.language_model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor(`${qa}.weight`, [8, 8], 'F8_E4M3', rand, 100), scaleTensor(`${qa}.weight_scale_inv`, [], 'F32'), scaleTensor(`${qa}.activation_scale`, [], 'F32'),
    randomTensor(`${ex}.gate_up_proj`, [E, 12, 8], 'F8_E4M3', rand, 100), scaleTensor(`${ex}.gate_up_proj_scale_inv`, [E, 1, 1], 'F32'), scaleTensor(`${ex}.gate_up_proj_activation_scale`, [E], 'F32'),
    randomTensor(`${ex}.down_proj`, [E, 8, 6], 'F8_E4M3', rand, 100), scaleTensor(`${ex}.down_proj_scale_inv`, [E, 1, 1], 'F32'), scaleTensor(`${ex}.down_proj_activation_scale`, [E], 'F32'),
    randomTensor('model.language_model.layers.0.mlp.gate.weight', [E, 8], 'BF16', rand),
    randomTensor('lm_head.weight', [32, 8], 'BF16', rand),
  ];
  const folder = () => hfModelFolder(base, config);

  it('a block grid whose blocks cross from one expert into the next (2·inter not a multiple of bm): a target_parameters LoRA and --dtype refused, naming the scale', async () => {
    const blocked = { ...config, quantization_config: { ...config.quantization_config, weight_block_size: [8, 8] } };
    const crossing = base.map((t) => (t.name.endsWith('_scale_inv') ? scaleTensor(t.name, t.name.startsWith(ex) ? [E, t.name.includes('gate_up') ? 2 : 1, 1] : [1, 1], 'F32') : t));
    const adapter = () => peftFolder({ r, lora_alpha: alpha, target_modules: [], target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' }, [
      randomTensor(`base_model.model.${ex}.lora_A.weight`, [r * E, 8], 'F32', rand, 0.5), randomTensor(`base_model.model.${ex}.lora_B.weight`, [12, r * E], 'F32', rand, 0.5),
    ]);
    const prepared = await prepare(hfModelFolder(crossing, blocked), adapter());
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      `adapter1: module "${ex}.gate_up_proj": the base tensor ${ex}.gate_up_proj is stored quantized, with its scale in ${ex}.gate_up_proj_scale_inv; merging into quantized weights of this kind is not supported: use the unquantized model`,
    ]);
    const attention = peftFolder({ r, lora_alpha: alpha, target_modules: ['q_a_proj'] }, peftFactors([[qa, 8, 8]]));
    await expect(mergeIntoFolder(await prepare(hfModelFolder(crossing, blocked), attention), backend, 'BF16')).rejects.toThrow(
      `base: tensor "${ex}.gate_up_proj" is stored quantized, with its scale in ${ex}.gate_up_proj_scale_inv, in a form not read here (a fused expert parameter with its scale in <parameter>_scale_inv, as transformers' FP8 experts store it), so --dtype would write its codes as if they were the weights; leave out --dtype (unchanged tensors are copied as they are)`,
    );
  });

  it('a LoRA on attention merges as Ministral 3\'s, the experts copied as stored; with --dtype bf16 the experts are written code × their expert\'s scale_inv', async () => {
    const factors = peftFactors([[qa, 8, 8]]);
    const adapter = () => peftFolder({ r, lora_alpha: alpha, target_modules: ['q_a_proj'] }, factors);
    const prepared = await prepare(folder(), adapter());
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const real = loraTruth(dequantized(b.get(`${qa}.weight`)!, b.get(`${qa}.weight_scale_inv`)!), decoded(factors), qa).map(Math.fround);
    const quant = Math.fround(448 / real.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
    expect(merged.tensors.get(`${qa}.weight_scale_inv`)!.values[0]).toBe(Math.fround(1 / quant));
    expect(Array.from(merged.tensors.get(`${qa}.weight`)!.values)).toEqual(Array.from(real, (v) => roundForDType(Math.min(448, Math.max(-448, Math.fround(v * quant))), 'F8_E4M3')));
    for (const key of [...base.map((t) => t.name)].filter((k) => k.startsWith(ex))) expect(merged.tensors.get(key)!.bytes, key).toEqual(b.get(key)!.bytes);
    const dequantizedModel = await mergeIntoFolder(await prepare(folder(), adapter()), backend, 'BF16');
    for (const [param, per] of [['gate_up_proj', 12 * 8], ['down_proj', 8 * 6]] as const) {
      const codes = b.get(`${ex}.${param}`)!;
      const scales = b.get(`${ex}.${param}_scale_inv`)!.values;
      expect(Array.from(dequantizedModel.tensors.get(`${ex}.${param}`)!.values), param).toEqual(Array.from(codes.values, (c, i) => roundForDType(c * scales[Math.floor(i / per)], 'BF16')));
      expect(dequantizedModel.tensors.has(`${ex}.${param}_scale_inv`) || dequantizedModel.tensors.has(`${ex}.${param}_activation_scale`), param).toBe(false);
    }
  });
});

describe('meta-llama/Llama-3.1-405B-Instruct-FP8: fbgemm_fp8 (a weight_scale per row)', () => {
  // Its config.json: quant_method fbgemm_fp8, activation_scale_ub, the head (and the first and last layers) left
  // out; each quantized Linear's weight F8_E4M3 with FbgemmFp8Linear's weight_scale (out, 1), F32.
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, quantization_config: { activation_scale_ub: 1200.0, modules_to_not_convert: ['lm_head'], quant_method: 'fbgemm_fp8' } };
  const q = 'model.layers.0.self_attn.q_proj';
  const o = 'model.layers.0.self_attn.o_proj';
  const base = [
    randomTensor('model.embed_tokens.weight', [16, 8], 'BF16', rand),
    randomTensor(`${q}.weight`, [8, 8], 'F8_E4M3', rand, 100), scaleTensor(`${q}.weight_scale`, [8, 1], 'F32'),
    randomTensor(`${o}.weight`, [8, 8], 'F8_E4M3', rand, 100), scaleTensor(`${o}.weight_scale`, [8, 1], 'F32'),
    randomTensor('lm_head.weight', [16, 8], 'BF16', rand),
  ];
  const factors = peftFactors([[q, 8, 8]]);
  const adapter = () => peftFolder({ r, lora_alpha: alpha, target_modules: ['q_proj'] }, factors);

  it('merged with --dtype bf16: code × its row\'s weight_scale + ΔW, every fp8 weight dequantized, the scales and quantization_config left out', async () => {
    const prepared = await prepare(hfModelFolder(base, config), adapter());
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend, 'BF16');
    const b = decoded(base);
    expectValues(`${q}.weight`, merged.tensors.get(`${q}.weight`)!, loraTruth(dequantized(b.get(`${q}.weight`)!, b.get(`${q}.weight_scale`)!), decoded(factors), q));
    expectValues(`${o}.weight`, merged.tensors.get(`${o}.weight`)!, dequantized(b.get(`${o}.weight`)!, b.get(`${o}.weight_scale`)!));
    expect([...merged.tensors.keys()].filter((k) => k.endsWith('weight_scale'))).toEqual([]);
    expect(merged.json('config.json').quantization_config).toBeUndefined();
  });

  it('without --dtype: refused in one line (re-quantizing as fbgemm does is not written)', async () => {
    await expect(mergeIntoFolder(await prepare(hfModelFolder(base, config), adapter()), backend)).rejects.toThrow(
      'base: its fbgemm fp8 weights are written only dequantized (re-quantizing them to fbgemm fp8 (its quantize_fp8_per_row kernel) is not supported); merge with --dtype bf16 (or f16, f32)',
    );
  });
});

describe('Llama 4 Scout as mlx-lm and mlx-vlm convert it: SwitchGLU named experts, (E, inter, hidden) stacks', () => {
  // mlx-community/Llama-4-Scout-17B-16E-Instruct-bf16 (mlx-vlm): sanitize() splits gate_up_proj (E, hidden, 2·inter) into
  // experts.gate_proj.weight and experts.up_proj.weight (E, inter, hidden) and transposes down_proj to (E, hidden, inter).
  const E = 3, H = 8, I = 6;
  const L = 'language_model.model.layers.0.feed_forward';
  const config = { architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', text_config: { model_type: 'llama4_text', hidden_size: H, intermediate_size: I, num_local_experts: E }, vision_config: { model_type: 'llama4_vision_model' } };
  const base = [
    randomTensor('language_model.model.embed_tokens.weight', [32, H], 'BF16', rand),
    randomTensor('language_model.model.layers.0.self_attn.q_proj.weight', [H, H], 'BF16', rand),
    randomTensor(`${L}.router.weight`, [E, H], 'BF16', rand),
    randomTensor(`${L}.experts.gate_proj.weight`, [E, I, H], 'BF16', rand),
    randomTensor(`${L}.experts.up_proj.weight`, [E, I, H], 'BF16', rand),
    randomTensor(`${L}.experts.down_proj.weight`, [E, H, I], 'BF16', rand),
    randomTensor(`${L}.shared_expert.gate_proj.weight`, [I, H], 'BF16', rand),
    randomTensor('language_model.lm_head.weight', [32, H], 'BF16', rand),
    randomTensor('vision_model.model.layers.0.self_attn.q_proj.weight', [H, H], 'BF16', rand),
  ];
  const folder = () => hfModelFolder(base, config, { shards: 2, metadata: { format: 'mlx' } });

  it('mlx-lm LoRASwitchLinear on experts.gate_proj and experts.down_proj: each expert e += scale·lora_b[e]·lora_a[e]', async () => {
    const scale = 2.5;
    const factors = (path: string, out: number, inF: number) => [
      randomTensor(`${path}.lora_a`, [E, 1, inF], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [E, out, 1], 'F32', rand, 0.5),
    ];
    const tensors = [...factors(`${L}.experts.gate_proj`, I, H), ...factors(`${L}.experts.down_proj`, H, I)];
    const prepared = await prepare(folder(), mlxFolder({ model: 'mlx-community/Llama-4-Scout-17B-16E-Instruct-bf16', lora_parameters: { rank: 1, dropout: 0, scale }, num_layers: 1 }, tensors));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(tensors);
    for (const [proj, out, inF] of [['gate_proj', I, H], ['down_proj', H, I]] as const) {
      const key = `${L}.experts.${proj}.weight`;
      const la = a.get(`${L}.experts.${proj}.lora_a`)!;
      const lb = a.get(`${L}.experts.${proj}.lora_b`)!;
      const truth = Float64Array.from(b.get(key)!.values);
      for (let e = 0; e < E; e++) for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) truth[(e * out + o) * inF + i] += scale * lb.values[e * out + o] * la.values[e * inF + i];
      const got = merged.tensors.get(key)!;
      expect(got.shape).toEqual([E, out, inF]);
      expectValues(key, got, truth);
    }
    for (const t of base.filter((t) => !t.name.includes('gate_proj.weight') && !t.name.includes('down_proj.weight'))) expect(merged.tensors.get(t.name)!.bytes, t.name).toEqual(b.get(t.name)!.bytes);
  });

  it('a PEFT LoRA on expert 2\'s up_proj (per-expert names) lands on rows [2·inter, 3·inter) of experts.up_proj', async () => {
    const modules: [string, number, number][] = [[`${L}.experts.2.up_proj`, I, H], [`${L}.shared_expert.gate_proj`, I, H]];
    const factors = peftFactors(modules);
    const prepared = await prepare(folder(), peftFolder({ r, lora_alpha: alpha, target_modules: ['up_proj', 'gate_proj'], peft_version: '0.17.1' }, factors));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(factors);
    const stacked = b.get(`${L}.experts.up_proj.weight`)!.values;
    const truth = Float64Array.from(stacked);
    truth.set(loraTruth(stacked.slice(2 * I * H), a, `${L}.experts.2.up_proj`), 2 * I * H);
    expectValues(`${L}.experts.up_proj.weight`, merged.tensors.get(`${L}.experts.up_proj.weight`)!, truth);
    expectValues(`${L}.shared_expert.gate_proj.weight`, merged.tensors.get(`${L}.shared_expert.gate_proj.weight`)!, loraTruth(b.get(`${L}.shared_expert.gate_proj.weight`)!.values, a, `${L}.shared_expert.gate_proj`));
  });
});

describe('mlx-community/Llama-4-Scout-17B-16E-Instruct-8bit: the stacked experts quantized (QuantizedSwitchLinear, affine 8-bit, groups of 64)', () => {
  it('LoRASwitchLinear on feed_forward.experts.up_proj merged into q·scale + bias of each expert, written dequantized (bf16)', async () => {
    const E = 2, H = 64, I = 64, G = 64;
    const L = 'language_model.model.layers.0.feed_forward';
    const quantization = { group_size: G, bits: 8, mode: 'affine' };
    const config = { architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', text_config: { model_type: 'llama4_text', hidden_size: H, intermediate_size: I, num_local_experts: E }, quantization, quantization_config: quantization };
    // 8-bit codes: each U32 word holds four codes, the first in its low byte, so the bytes are the codes in order.
    const codes = Array.from({ length: E * I * H }, () => Math.floor(Math.abs(rand()) * 256) % 256);
    const scales = Array.from({ length: E * I * (H / G) }, () => roundForDType(0.002 + Math.abs(rand()) / 100, 'BF16'));
    const biases = scales.map((x) => roundForDType(-128 * x, 'BF16'));
    const stem = `${L}.experts.up_proj`;
    const base: FixtureTensor[] = [
      { name: `${stem}.weight`, dtype: 'U32', shape: [E, I, H / 4], data: Uint8Array.from(codes) },
      { name: `${stem}.scales`, dtype: 'BF16', shape: [E, I, H / G], data: scales },
      { name: `${stem}.biases`, dtype: 'BF16', shape: [E, I, H / G], data: biases },
      randomTensor(`${L}.router.weight`, [E, H], 'BF16', rand),
    ];
    const scale = 2;
    const factors = [randomTensor(`${stem}.lora_a`, [E, 1, H], 'F32', rand, 0.5), randomTensor(`${stem}.lora_b`, [E, I, 1], 'F32', rand, 0.5)];
    const prepared = await prepare(hfModelFolder(base, config, { metadata: { format: 'mlx' } }), mlxFolder({ model: 'mlx-community/Llama-4-Scout-17B-16E-Instruct-8bit', lora_parameters: { rank: 1, dropout: 0, scale }, num_layers: 1 }, factors));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend, 'BF16');
    const a = decoded(factors);
    const [la, lb] = [a.get(`${stem}.lora_a`)!.values, a.get(`${stem}.lora_b`)!.values];
    const truth = new Float64Array(E * I * H);
    for (let row = 0; row < E * I; row++) for (let i = 0; i < H; i++) {
      const g = row * (H / G) + Math.floor(i / G);
      const e = Math.floor(row / I);
      truth[row * H + i] = codes[row * H + i] * scales[g] + biases[g] + scale * lb[row] * la[e * H + i];
    }
    const got = merged.tensors.get(`${stem}.weight`)!;
    expect([got.dtype, got.shape]).toEqual(['BF16', [E, I, H]]);
    expectValues(`${stem}.weight`, got, truth);
    expect([...merged.tensors.keys()].filter((k) => k.endsWith('.scales') || k.endsWith('.biases'))).toEqual([]);
  });
});

describe("Mistral's own format (consolidated.safetensors with params.json), FP8 as Mistral ships it: qscale_weight and qscale_act beside F8_E4M3 weights", () => {
  // Mistral Large 3 / Ministral 3 FP8 in Mistral's format (mistral-inference, vLLM --load-format mistral); the repository's
  // transformers-format files, where present, are what a PEFT LoRA merges into.
  const consolidated = (): Record<string, string | Uint8Array> => {
    const tensors = [
      randomTensor('tok_embeddings.weight', [32, 8], 'BF16', rand),
      randomTensor('layers.0.attention.wq.weight', [8, 8], 'F8_E4M3', rand, 100), scaleTensor('layers.0.attention.wq.qscale_weight', [], 'BF16'), scaleTensor('layers.0.attention.wq.qscale_act', [], 'BF16'),
      randomTensor('layers.0.attention_norm.weight', [8], 'BF16', rand),
      randomTensor('norm.weight', [8], 'BF16', rand),
      randomTensor('output.weight', [32, 8], 'BF16', rand),
    ];
    const { 'model.safetensors': weights } = hfModelFolder(tensors, {});
    return { 'consolidated.safetensors': weights, 'params.json': JSON.stringify({ dim: 8, n_layers: 1, head_dim: 4, n_heads: 2, n_kv_heads: 1, vocab_size: 32, quantization: { qformat_weight: 'fp8_e4m3', qscheme_act: 'TENSOR' } }) };
  };
  const problems = async (adapter: Record<string, string | Uint8Array>) => {
    const prepared = await prepare(consolidated(), adapter);
    await prepared.close();
    return prepared.plan.problems.map((p) => p.message);
  };

  it("a PEFT LoRA in transformers' names: refused in one line saying the format and what to merge into", async () => {
    expect(await problems(peftFolder({ r, lora_alpha: alpha, target_modules: ['q_proj'] }, peftFactors([['model.language_model.layers.0.self_attn.q_proj', 8, 8]])))).toEqual([
      'adapter1: module "model.language_model.layers.0.self_attn.q_proj": the base is in Mistral\'s own format (consolidated.safetensors: layers.N.attention.wq, feed_forward.w1, tok_embeddings), whose tensors transformers\' conversion renames and, for wq and wk, permutes by rows; a LoRA in transformers\' names is not placed on it: merge into the repository\'s transformers-format checkpoint (config.json with model-*.safetensors)',
    ]);
  });

  it("a LoRA in Mistral's names on an FP8 weight: refused, naming its qscale_weight; --dtype bf16 refused too (its codes are no weights)", async () => {
    // mistral-finetune saves its LoRA in the model's own names (lora.safetensors: `layers.N.attention.wq.lora_A.weight`).
    const own = { 'lora.safetensors': buildSafetensors([randomTensor('layers.0.attention.wq.lora_A.weight', [r, 8], 'F32', rand), randomTensor('layers.0.attention.wq.lora_B.weight', [8, r], 'F32', rand)]) };
    expect(await problems(own)).toEqual([
      'adapter1: module "layers.0.attention.wq": the base tensor layers.0.attention.wq.weight is stored quantized, with its scale in layers.0.attention.wq.qscale_weight; merging into quantized weights of this kind is not supported: use the unquantized model',
    ]);
    const onHead = peftFolder({ r, lora_alpha: alpha, target_modules: ['output'] }, peftFactors([['output', 32, 8]]));
    const prepared = await prepare(consolidated(), onHead);
    expect(prepared.plan.problems).toEqual([]);
    await expect(mergeIntoFolder(prepared, backend, 'BF16')).rejects.toThrow('base: tensor "layers.0.attention.wq.weight" is stored quantized, with its scale in layers.0.attention.wq.qscale_weight, in a form not read here (no quantization config that names it), so --dtype would write its codes as if they were the weights; leave out --dtype (unchanged tensors are copied as they are)');
  });
});

describe("Mistral Large 3 FP8 in Mistral's own format (multi-head latent attention: attention.wq_a, wq_b, wkv_a_with_mqa, wkv_b; experts.K.w1)", () => {
  it("a PEFT LoRA in transformers' names: refused, saying the format (renamed, not permuted) and what to merge into", async () => {
    // Mistral-Large-3-675B-Instruct-2512's consolidated-*.safetensors: its MLA and MoE in Mistral's names, FP8 weights
    // with qscale_weight and qscale_act (vLLM's mistral_large_3 maps wq_a → q_a_proj, wkv_b → kv_b_proj, …).
    const q = 'layers.0.attention.wq_a';
    const weights = [
      randomTensor('tok_embeddings.weight', [32, 8], 'BF16', rand),
      randomTensor(`${q}.weight`, [8, 8], 'F8_E4M3', rand, 100), scaleTensor(`${q}.qscale_weight`, [], 'BF16'), scaleTensor(`${q}.qscale_act`, [], 'BF16'),
      randomTensor('layers.0.attention.q_a_norm.weight', [8], 'BF16', rand),
      randomTensor('layers.0.attention.wkv_b.weight', [16, 8], 'F8_E4M3', rand, 100), scaleTensor('layers.0.attention.wkv_b.qscale_weight', [], 'BF16'),
      randomTensor('layers.0.experts.0.w1.weight', [8, 8], 'F8_E4M3', rand, 100), scaleTensor('layers.0.experts.0.w1.qscale_weight', [], 'BF16'),
      randomTensor('output.weight', [32, 8], 'BF16', rand),
    ];
    const base = { 'consolidated.safetensors': hfModelFolder(weights, {})['model.safetensors'], 'params.json': JSON.stringify({ dim: 8, n_layers: 1, q_lora_rank: 8, kv_lora_rank: 8, quantization: { qformat_weight: 'fp8_e4m3', qscheme_act: 'TENSOR' } }) };
    const prepared = await prepare(base, peftFolder({ r, lora_alpha: alpha, target_modules: ['q_a_proj'] }, peftFactors([['model.language_model.layers.0.self_attn.q_a_proj', 8, 8]])));
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.language_model.layers.0.self_attn.q_a_proj": the base is in Mistral\'s own format (consolidated.safetensors: layers.N.attention.wq_a, wkv_b, experts.K.w1, tok_embeddings), whose tensors transformers\' conversion renames; a LoRA in transformers\' names is not placed on it: merge into the repository\'s transformers-format checkpoint (config.json with model-*.safetensors)',
    ]);
  });
});

describe('an mlx-vlm LoRA (mlx_vlm.lora) on Qwen2.5-VL as mlx-vlm converts it', () => {
  it("lands by name: adapter_config.json's lora_parameters (scale = alpha / rank, the keys it wrapped), LoRALinear.fuse's W + scale·(lora_a·lora_b)ᵀ", async () => {
    // mlx-vlm's get_peft_model wraps the language model's Linears by their last name and saves model.config.lora, an
    // mlx-lm-style config without mlx-lm's training arguments; adapters.safetensors holds lora_a (in, r), lora_b (r, out).
    const config = { architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', hidden_size: 8, vision_config: { model_type: 'qwen2_5_vl' }, tie_word_embeddings: false };
    const q = 'language_model.model.layers.0.self_attn.q_proj';
    const base = [
      randomTensor('language_model.model.embed_tokens.weight', [32, 8], 'BF16', rand), randomTensor(`${q}.weight`, [8, 8], 'BF16', rand), randomTensor(`${q}.bias`, [8], 'BF16', rand),
      randomTensor('vision_tower.blocks.0.attn.qkv.weight', [24, 8], 'BF16', rand), randomTensor('language_model.lm_head.weight', [32, 8], 'BF16', rand),
    ];
    const rank = 4;
    const loraAlpha = 16;
    const factors = [randomTensor(`${q}.lora_a`, [8, rank], 'F32', rand, 0.5), randomTensor(`${q}.lora_b`, [rank, 8], 'F32', rand, 0.5)];
    const adapterConfig = JSON.stringify({ fine_tune_type: 'lora', num_layers: 16, lora_parameters: { rank, dropout: 0, scale: loraAlpha / rank, keys: [q] } }, null, 2);
    const prepared = await prepare(hfModelFolder(base, config, { metadata: { format: 'mlx' } }), { 'adapter_config.json': adapterConfig, 'adapters.safetensors': buildSafetensors(factors, { format: 'mlx' }) });
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(factors);
    const [la, lb] = [a.get(`${q}.lora_a`)!.values, a.get(`${q}.lora_b`)!.values];
    const truth = Float64Array.from(b.get(`${q}.weight`)!.values);
    for (let o = 0; o < 8; o++) for (let i = 0; i < 8; i++) for (let k = 0; k < rank; k++) truth[o * 8 + i] += (loraAlpha / rank) * la[i * rank + k] * lb[k * 8 + o];
    expectValues(`${q}.weight`, merged.tensors.get(`${q}.weight`)!, truth);
    for (const t of base.filter((t) => t.name !== `${q}.weight`)) expect(merged.tensors.get(t.name)!.bytes, t.name).toEqual(b.get(t.name)!.bytes);
  });
});

describe("mlx-vlm's legacy LoRA folder (get_peft_model with legacy=True)", () => {
  it("adapter_config.json {rank, alpha, dropout} and LoRaLayer's A / B: refused in one line naming the form", async () => {
    const q = 'language_model.model.layers.0.self_attn.q_proj';
    const base = hfModelFolder([randomTensor(`${q}.weight`, [8, 8], 'BF16', rand)], { architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl' }, { metadata: { format: 'mlx' } });
    const adapter = {
      'adapter_config.json': JSON.stringify({ rank: 4, alpha: 0.1, dropout: 0.1 }, null, 2),
      'adapters.safetensors': buildSafetensors([randomTensor(`${q}.A`, [8, 4], 'F32', rand), randomTensor(`${q}.B`, [4, 8], 'F32', rand)], { format: 'mlx' }),
    };
    await expect(prepare(base, adapter)).rejects.toThrow(
      "adapter1: an mlx-vlm LoRA folder in its legacy form (adapter1/adapter_config.json with rank and alpha, no lora_parameters; adapters.safetensors with LoRaLayer's A and B) is not supported: mlx-vlm's own merge of it (replace_lora_with_linear) adds A·B untransposed, not the alpha / rank · (A·B)ᵀ its forward adds; adapters of a current mlx_vlm.lora (lora_parameters, lora_a / lora_b) are read as mlx-lm's",
    );
  });
});
