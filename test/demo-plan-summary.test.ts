/**
 * The page's plan (demo/plan-summary.ts, run here as the worker runs it) on LLM checkpoints: every
 * matched module is listed and measured as the merge plans it, through config.json's
 * architecture (a LLaVA checkpoint in the old naming with an adapter in the new one) and a tied
 * head (a PEFT ensure_weight_tying adapter whose head factors mirror the embedding's); a
 * bitsandbytes base's files say their quantized weights are written as floats, and a GGUF's that
 * an output type converts every quantizable matrix. Magnitudes are
 * checked against ‖s·B·A‖_F / ‖W‖_F computed in float64 here. Diffusion norm changes
 * (ComfyUI's `.diff` / `.diff_b`, LyCORIS's `w_norm` / `b_norm`) named in the other naming are
 * listed by the tensor the converter renames them to, measured as ‖diff‖ / ‖W‖ and placed in
 * their block.
 */
import { describe, expect, it } from 'vitest';
import { fileFate } from '../demo/panels/plan-panel.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { memoryInputFileSet } from '../src/index.js';
import { seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { decoded, hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { product } from './helpers/merge-truth.js';
import { buildSafetensors, decodeSafetensors } from './helpers/fixtures.js';
import { fluxBflTensors, tensor, wanOriginalTensors } from './helpers/diffusion-fixtures.js';
import { zImageComfyTensors } from './helpers/dit-fixtures.js';
import { HEAD_DIM, HIDDEN, IDX_DIM, IDX_HEADS, METADATA, Q_RANK, TENSORS, VOCAB, EXPERT_FFN, attention, deepseek4BaseGguf } from './helpers/deepseek4-gguf.js';
import { cellPeftAdapter, transposedWhole, whole, type CellCase } from './helpers/gguf-cell-truth.js';

const rand = seededRandom(4411);

function norm(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}

/** ‖scale·B·A‖_F / ‖W‖_F in float64. */
function ratio(w: DecodedTensor, a: DecodedTensor, b: DecodedTensor, scale: number): number {
  return (Math.abs(scale) * norm(product(b, a))) / norm(w.values);
}

describe('the page\'s plan of LLM checkpoints', () => {
  it('lists and measures a new-naming adapter\'s modules on an old-naming LLaVA checkpoint, head included', async () => {
    const base: FixtureTensor[] = [
      randomTensor('language_model.model.embed_tokens.weight', [32, 8], 'F16', rand),
      randomTensor('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
      randomTensor('language_model.model.layers.0.self_attn.v_proj.weight', [8, 8], 'F16', rand),
      randomTensor('language_model.lm_head.weight', [32, 8], 'F16', rand),
      randomTensor('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
      randomTensor('vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight', [8, 8], 'F16', rand),
      randomTensor('multi_modal_projector.linear_1.weight', [8, 8], 'F16', rand),
    ];
    const config = {
      architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', torch_dtype: 'float16',
      text_config: { model_type: 'llama', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'clip_vision_model' },
    };
    // Module path in the new naming → the old checkpoint's key it lands on.
    const modules: [string, string][] = [
      ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
      ['model.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj', 'vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight'],
      ['model.multi_modal_projector.linear_1', 'multi_modal_projector.linear_1.weight'],
      ['lm_head', 'language_model.lm_head.weight'],
    ];
    const ranks = [1, 2, 3, 2];
    const adapter = modules.flatMap(([path], i) => [
      randomTensor(`base_model.model.${path}.lora_A.weight`, [ranks[i], 8], 'BF16', rand, 0.5),
      randomTensor(`base_model.model.${path}.lora_B.weight`, [path === 'lm_head' ? 32 : 8, ranks[i]], 'BF16', rand, 0.5),
    ]);
    const rankPattern = Object.fromEntries(modules.map(([path], i) => [path, ranks[i]]));
    const summary = await summarizePlan(memoryInputFileSet(hfModelFolder(base, config), 'llava'), [
      { files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 4, rank_pattern: rankPattern }, adapter), 'lora'), weight: 0.5 },
    ]);
    expect(summary.problems).toEqual([]);
    expect(summary.mergeable).toBe(true);
    // Scales at weight 1: the page multiplies them by the slider.
    // Listed in the base's order.
    const listed = [0, 3, 1, 2];
    expect(summary.modules.map((m) => [m.target, m.rank, m.scale])).toEqual(listed.map((i) => [modules[i][1], ranks[i], 4 / ranks[i]]));
    const w = decoded(base);
    const a = decoded(adapter);
    expect(summary.magnitudes.map((m) => m.target)).toEqual(listed.map((i) => modules[i][1]));
    for (const [n, i] of listed.entries()) {
      const [path, key] = modules[i];
      const want = ratio(w.get(key)!, a.get(`base_model.model.${path}.lora_A.weight`)!, a.get(`base_model.model.${path}.lora_B.weight`)!, 4 / ranks[i]);
      expect(summary.magnitudes[n].ratio, key).toBeCloseTo(want, 6);
    }
  });

  it('measures an ensure_weight_tying adapter once, through the embedding, and says the head stays tied', async () => {
    const base: FixtureTensor[] = [
      randomTensor('model.embed_tokens.weight', [40, 8], 'BF16', rand),
      randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
      randomTensor('model.norm.weight', [8], 'BF16', rand),
    ];
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', vocab_size: 40, tie_word_embeddings: true };
    const A = randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 40], 'F32', rand, 0.5);
    const B = randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand, 0.5);
    // PEFT saves the head's LoRA as copies of the embedding's, transposed: lora_A = Bᵀ, lora_B = Aᵀ.
    const headA: FixtureTensor = { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [2, 8], data: transposed(B) };
    const headB: FixtureTensor = { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [40, 2], data: transposed(A) };
    const summary = await summarizePlan(memoryInputFileSet(hfModelFolder(base, config), 'llama'), [{
      files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 6, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, [A, B, headA, headB]), 'lora'),
      weight: 1,
    }]);
    expect(summary.problems).toEqual([]);
    expect(summary.notes).toEqual([
      "the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both, once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)",
    ]);
    expect(summary.modules.map((m) => [m.target, m.scale])).toEqual([['model.embed_tokens.weight', 3]]);
    const d = decoded([A, B]);
    // ΔW of an embedding is (B·A)ᵀ: the same norm as B·A.
    const want = ratio(decoded(base).get('model.embed_tokens.weight')!, d.get(A.name)!, d.get(B.name)!, 3);
    expect(summary.magnitudes.map((m) => m.target)).toEqual(['model.embed_tokens.weight']);
    expect(summary.magnitudes[0].ratio).toBeCloseTo(want, 6);
    // The head is no tensor of the file, but it changes: the file's line says so.
    expect(summary.files.map((f) => `${f.path}: ${fileFate(f, summary, 'same')}`)).toEqual([
      'model.safetensors: merged: 1 of 3 tensors change; the output head lm_head.weight stays tied to model.embed_tokens.weight and changes with it',
    ]);
  });

  it('says a head untied by a change to the embedding alone is added as a tensor of its own, unchanged', async () => {
    const base: FixtureTensor[] = [
      randomTensor('model.embed_tokens.weight', [40, 8], 'BF16', rand),
      randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
      randomTensor('model.norm.weight', [8], 'BF16', rand),
    ];
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', vocab_size: 40, tie_word_embeddings: true };
    const embeddingLora = [
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 40], 'F32', rand, 0.5),
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand, 0.5),
    ];
    const summary = await summarizePlan(memoryInputFileSet(hfModelFolder(base, config), 'llama'), [{
      files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 4, target_modules: ['embed_tokens'] }, embeddingLora), 'lora'),
      weight: 1,
    }]);
    expect(summary.problems).toEqual([]);
    expect(summary.notes).toContainEqual(expect.stringMatching(/^lm_head\.weight is written as its own tensor and tie_word_embeddings set to false/));
    expect(summary.files.map((f) => `${f.path}: ${fileFate(f, summary, 'same')}`)).toEqual([
      'model.safetensors: merged: 1 of 4 tensors change; lm_head.weight is added as a tensor of its own, holding the embedding as it was (untied from it)',
    ]);
    // A head an adapter changes itself is counted among the changed tensors.
    const headLora = [
      randomTensor('base_model.model.lm_head.lora_A.weight', [2, 8], 'F32', rand, 0.5),
      randomTensor('base_model.model.lm_head.lora_B.weight', [40, 2], 'F32', rand, 0.5),
    ];
    const onHead = await summarizePlan(memoryInputFileSet(hfModelFolder(base, config), 'llama'), [{
      files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, headLora), 'lora'),
      weight: 1,
    }]);
    expect(onHead.files.map((f) => `${f.path}: ${fileFate(f, onHead, 'same')}`)).toEqual([
      'model.safetensors: merged: 1 of 4 tensors change; lm_head.weight is written as a tensor of its own (untied from the embedding)',
    ]);
  });
  it('refuses, before the click, the output types a GPTQ base cannot be written in (it is written only dequantized)', async () => {
    const L = 'model.layers.0.self_attn.q_proj';
    // 4-bit GPTQ, 16 inputs × 8 outputs in one group of 16: qweight (in/8, out), qzeros (groups, out/8), scales (groups, out).
    const base = hfModelFolder([
      { name: `${L}.qweight`, dtype: 'I32', shape: [2, 8], data: Array.from({ length: 16 }, () => Math.floor(rand() * 2 ** 31)) },
      { name: `${L}.qzeros`, dtype: 'I32', shape: [1, 1], data: [0x77777777] },
      { name: `${L}.scales`, dtype: 'F16', shape: [1, 8], data: Array.from({ length: 8 }, () => 0.01) },
      { name: `${L}.g_idx`, dtype: 'I32', shape: [16], data: Array.from({ length: 16 }, () => 0) },
      randomTensor('model.norm.weight', [16], 'F16', rand),
    ], {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16',
      quantization_config: { quant_method: 'gptq', bits: 4, group_size: 16, desc_act: false, sym: true, checkpoint_format: 'gptq' },
    });
    const A = randomTensor(`base_model.model.${L}.lora_A.weight`, [2, 16], 'F32', rand, 0.5);
    const B = randomTensor(`base_model.model.${L}.lora_B.weight`, [8, 2], 'F32', rand, 0.5);
    const summary = await summarizePlan(memoryInputFileSet(base, 'gptq'), [{ files: memoryInputFileSet(peftFolder({ r: 2, lora_alpha: 2 }, [A, B]), 'lora'), weight: 1 }]);
    expect(summary.problems.filter((p) => p.severity === 'error')).toEqual([]);
    const reason = 'its GPTQ weights are written only dequantized: choose bf16, f16 or f32';
    expect(summary.output.refused).toEqual({ same: reason, f8_e4m3: reason, f8_e5m2: reason });
  });

  it('says which files of a bitsandbytes base are dequantized and written as floats, and measures against the dequantized weight', async () => {
    const L = 'model.layers.0.self_attn';
    const q = int8Weight(`${L}.q_proj`, [24, 16]);
    const o = int8Weight(`${L}.o_proj`, [16, 24]);
    const norm16 = randomTensor('model.norm.weight', [16], 'F16', rand);
    // Two shards: q_proj's three tensors and the norm, then o_proj's three.
    const base = hfModelFolder([...q.tensors, norm16, ...o.tensors], {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16',
      quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true },
    }, { shards: 2 });
    const A = randomTensor(`base_model.model.${L}.q_proj.lora_A.weight`, [3, 16], 'F32', rand, 0.5);
    const B = randomTensor(`base_model.model.${L}.q_proj.lora_B.weight`, [24, 3], 'F32', rand, 0.5);
    const summary = await summarizePlan(memoryInputFileSet(base, 'int8'), [{ files: memoryInputFileSet(peftFolder({ r: 3, lora_alpha: 6 }, [A, B]), 'qlora'), weight: 1 }]);
    expect(summary.problems.filter((p) => p.severity === 'error')).toEqual([]);
    expect(summary.notes).toContainEqual(expect.stringMatching(/^the base holds 2 8-bit bitsandbytes weights: they are dequantized/));
    expect(summary.output.refused).toEqual({});
    expect(summary.files.map((f) => [f.path, f.tensors, f.changed, f.dequantized, f.mirrorable])).toEqual([
      ['model-00001-of-00002.safetensors', 2, 1, 1, false],
      ['model-00002-of-00002.safetensors', 1, 0, 1, false],
    ]);
    expect(summary.files.map((f) => fileFate(f, summary, 'same'))).toEqual([
      'merged: 1 of 2 tensors change; its 1 quantized weight dequantized and written as floats',
      'no adapter changes it; its 1 quantized weight dequantized and written as floats, the rest copied as it is',
    ]);
    expect(fileFate(summary.files[1], summary, 'BF16')).toBe(
      'nothing in it changes; every float tensor converted to BF16 (copied as it is if already BF16); its 1 quantized weight dequantized and written as BF16',
    );
    const d = decoded([A, B]);
    const w: DecodedTensor = { values: q.values, shape: [24, 16], dtype: 'F32', bytes: new Uint8Array(0) };
    expect(summary.magnitudes.map((m) => m.target)).toEqual([`${L}.q_proj.weight`]);
    expect(summary.magnitudes[0].ratio).toBeCloseTo(ratio(w, d.get(A.name)!, d.get(B.name)!, 2), 6);
  });
  it('lists a PEFT LoRA on a DeepSeek-V4 GGUF by the tensors the converter writes, measured, each in its layer', async () => {
    const flash: CellCase = {
      arch: 'deepseek4', hfModel: 'deepseek-ai/DeepSeek-V4-Flash', rank: 2, alpha: 6, tensors: TENSORS, metadata: METADATA,
      targets: [
        ...attention(0).slice(0, 2),
        { module: 'model.layers.0.mlp.shared_experts.down_proj', out: HIDDEN, in: EXPERT_FFN, lands: whole('blk.0.ffn_down_shexp.weight') },
        { module: 'model.layers.1.self_attn.compressor.kv_proj', out: 2 * HEAD_DIM, in: HIDDEN, lands: whole('blk.1.attn_compressor_kv.weight') },
        { module: 'model.layers.1.self_attn.compressor.indexer.q_b_proj', out: IDX_HEADS * IDX_DIM, in: Q_RANK, lands: whole('blk.1.indexer.attn_q_b.weight') },
        { module: 'model.layers.2.self_attn.compressor.gate_proj', out: HEAD_DIM, in: HIDDEN, lands: whole('blk.2.attn_compressor_gate.weight') },
        { module: 'lm_head', out: VOCAB, in: HIDDEN, lands: whole('output.weight') },
        { module: 'model.embed_tokens', out: HIDDEN, in: VOCAB, lands: transposedWhole('token_embd.weight'), embedding: true },
      ],
    };
    const base = deepseek4BaseGguf(flash);
    const { files, factors } = cellPeftAdapter(flash);
    const summary = await summarizePlan(memoryInputFileSet({ 'DeepSeek-V4-Flash-tiny-Q8_0.gguf': base.bytes }, 'DeepSeek-V4-Flash-tiny-Q8_0.gguf'), [
      { files: memoryInputFileSet(files, 'lora'), weight: 0.5 },
    ]);
    // Only the warning that the merged Q8_0 tensors are requantized.
    expect(summary.problems.map((p) => p.severity)).toEqual(['warning']);
    expect(summary.mergeable).toBe(true);
    // Module → the tensor it lands on, in the file's order; every scale α/r at weight 1.
    const landed = [
      ['model.embed_tokens', 'token_embd.weight', 'token_embd'],
      ['model.layers.0.self_attn.q_a_proj', 'blk.0.attn_q_a.weight', 'layer 0 | attn_q_a'],
      ['model.layers.0.self_attn.q_b_proj', 'blk.0.attn_q_b.weight', 'layer 0 | attn_q_b'],
      ['model.layers.0.mlp.shared_experts.down_proj', 'blk.0.ffn_down_shexp.weight', 'layer 0 | ffn_down_shexp'],
      ['model.layers.1.self_attn.compressor.kv_proj', 'blk.1.attn_compressor_kv.weight', 'layer 1 | attn_compressor_kv'],
      ['model.layers.1.self_attn.compressor.indexer.q_b_proj', 'blk.1.indexer.attn_q_b.weight', 'layer 1 | indexer.attn_q_b'],
      ['model.layers.2.self_attn.compressor.gate_proj', 'blk.2.attn_compressor_gate.weight', 'layer 2 | attn_compressor_gate'],
      ['lm_head', 'output.weight', 'output'],
    ];
    expect(summary.modules.map((m) => [m.module, m.target, m.rank, m.scale])).toEqual(landed.map(([module, target]) => [module, target, 2, 3]));
    expect(summary.magnitudes.map((m) => `${m.place.group.label} | ${m.place.kind}`)).toEqual(
      landed.map(([, , place]) => (place.startsWith('layer') ? place : `other | ${place}`)));
    // 3·‖B·A‖ / ‖W‖ in float64 over the Q8_0 base's values (an embedding's ΔW is transposed: the same norm).
    for (const m of summary.magnitudes) {
      const f = factors.find((x) => x.module === m.module)!;
      const ba = product({ values: f.b, shape: [f.out, 2] } as DecodedTensor, { values: f.a, shape: [2, f.in] } as DecodedTensor);
      const want = (3 * norm(ba)) / norm(base.values.get(m.target)!);
      expect(Math.abs(m.ratio / want - 1), m.target).toBeLessThan(1e-6);
    }
  });

  it('says a GGUF output type converts every matrix llama-quantize quantizes, merged or not', async () => {
    const gguf = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const summary = await summarizePlan(memoryInputFileSet({ 'tiny-llama-Q4_K_M.gguf': gguf.files['tiny-llama-Q4_K_M.gguf'] }, 'tiny-llama-Q4_K_M.gguf'), [
      { files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora.gguf'), weight: 1 },
    ]);
    expect(summary.base.container).toBe('gguf');
    // Rows that are not whole blocks take llama-quantize's fallback type: no choice is refused.
    expect(summary.output.refused).toEqual({});
    const [file] = summary.files;
    expect(fileFate(file, summary, 'q8_0')).toBe(`merged: 1 of ${file.tensors} tensors change, every matrix llama-quantize quantizes written as Q8_0`);
    expect(fileFate({ ...file, changed: 0 }, summary, 'f16')).toBe('nothing in it changes; every matrix llama-quantize quantizes converted to F16');
  });
});

describe('the page\'s plan of the newer PEFT methods', () => {
  const q = 'model.layers.0.self_attn.q_proj';
  const peft = { task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', inference_mode: true, target_modules: ['q_proj'], bias: 'none' };
  const summarize = (base: FixtureTensor[], config: object, adapter: FixtureTensor[]) => summarizePlan(
    memoryInputFileSet({ 'model.safetensors': buildSafetensors(base) }, 'llama'), [{ files: memoryInputFileSet(peftFolder(config, adapter), 'adapter'), weight: 1 }]);

  it('measures MiSS on all the layer\'s inputs, ΔW[o, i] = block[i mod r, o], not on r of them', async () => {
    const out = 6, inF = 10, r = 4;
    const base = [randomTensor(`${q}.weight`, [out, inF], 'BF16', rand)];
    const block = randomTensor(`base_model.model.${q}.miss_block`, [r, out], 'F32', rand, 0.5);
    const summary = await summarize(base, { ...peft, peft_type: 'MISS', peft_version: '0.17.1', r, mini_r: 1, init_weights: true }, [block]);
    expect(summary.problems).toEqual([]);
    expect(summary.modules.map((m) => [m.algorithm, m.rank, m.scale])).toEqual([['MiSS (PEFT)', r, 1]]);
    const b = decoded([block]).get(block.name)!.values;
    const delta = Array.from({ length: out * inF }, (_, k) => b[(k % inF % r) * out + Math.floor(k / inF)]);
    expect(summary.magnitudes.map((m) => m.target)).toEqual([`${q}.weight`]);
    expect(summary.magnitudes[0].ratio).toBeCloseTo(norm(delta) / norm(decoded(base).get(`${q}.weight`)!.values), 6);
  });

  it('states α and α/√r for a LoRA trained with use_rslora, and measures it at α/√r', async () => {
    const out = 6, inF = 5, r = 4, alpha = 16;
    const base = [randomTensor(`${q}.weight`, [out, inF], 'BF16', rand)];
    const a = randomTensor(`base_model.model.${q}.lora_A.weight`, [r, inF], 'F32', rand, 0.5);
    const b = randomTensor(`base_model.model.${q}.lora_B.weight`, [out, r], 'F32', rand, 0.5);
    const summary = await summarize(base, { ...peft, peft_type: 'LORA', peft_version: '0.17.1', r, lora_alpha: alpha, use_rslora: true, lora_dropout: 0, fan_in_fan_out: false }, [a, b]);
    expect(summary.problems).toEqual([]);
    expect(summary.adapters[0].facts).toEqual(['PEFT', 'LoRA', '1 module', `r = ${r}`, `α = ${alpha}`, `α/√r = ${alpha / Math.sqrt(r)}`]);
    const [w, av, bv] = [base[0], a, b].map((t) => decoded([t]).get(t.name)!);
    expect(summary.magnitudes[0].ratio).toBeCloseTo(ratio(w, av, bv, alpha / Math.sqrt(r)), 6);
  });

  it('says which modules of a single-file LoRA state no α (taken as r, scale 1), beside the α the others state', async () => {
    const v = 'model.layers.0.self_attn.v_proj';
    const base = [randomTensor(`${q}.weight`, [6, 5], 'BF16', rand), randomTensor(`${v}.weight`, [6, 5], 'BF16', rand)];
    // q_proj: r = 4 with .alpha 8 (α/r = 2); v_proj: r = 2 and no .alpha (α = r, α/r = 1).
    const lora = [
      randomTensor(`${q}.lora_down.weight`, [4, 5], 'F32', rand), randomTensor(`${q}.lora_up.weight`, [6, 4], 'F32', rand),
      { name: `${q}.alpha`, dtype: 'F32' as const, shape: [], data: Float64Array.of(8) },
      randomTensor(`${v}.lora_down.weight`, [2, 5], 'F32', rand), randomTensor(`${v}.lora_up.weight`, [6, 2], 'F32', rand),
    ];
    const summary = await summarizePlan(memoryInputFileSet({ 'model.safetensors': buildSafetensors(base) }, 'llama'),
      [{ files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors(lora) }, 'lora.safetensors'), weight: 1 }]);
    expect(summary.problems).toEqual([]);
    expect(summary.adapters[0].facts.slice(1)).toEqual(['LoRA', '2 modules', 'r = 2–4', 'α = 8', '1 module without α (α = 2)', 'α/r = 1–2']);
    expect(summary.modules.map((m) => [m.module, m.scale])).toEqual([[q, 2], [v, 1]]);
  });

  it('measures HiRA, a map of W, as ‖W ⊙ B·A‖ / ‖W‖ (W\' − W), with no rank listed', async () => {
    const out = 6, inF = 5, r = 2;
    const base = [randomTensor(`${q}.weight`, [out, inF], 'BF16', rand)];
    const adapter = [randomTensor(`base_model.model.${q}.hira_A`, [r, inF], 'F32', rand, 0.5), randomTensor(`base_model.model.${q}.hira_B`, [out, r], 'F32', rand, 0.5)];
    const summary = await summarize(base, { ...peft, peft_type: 'HIRA', peft_version: '0.18.0', r, hira_dropout: 0 }, adapter);
    expect(summary.problems).toEqual([]);
    expect(summary.modules.map((m) => [m.algorithm, m.rank, m.scale])).toEqual([['HiRA (PEFT)', undefined, 1]]);
    // PEFT's HiRA has no α and no scaling: nothing to state.
    expect(summary.adapters[0].facts).toEqual(['PEFT', 'HiRA (PEFT)', '1 module']);
    const w = decoded(base).get(`${q}.weight`)!.values;
    const [a, b] = adapter.map((t) => decoded(adapter).get(t.name)!.values);
    const delta = Array.from(w, (x, k) => {
      const o = Math.floor(k / inF), i = k % inF;
      let ba = 0;
      for (let j = 0; j < r; j++) ba += b[o * r + j] * a[j * inF + i];
      return x * ba;
    });
    expect(summary.magnitudes[0].ratio).toBeCloseTo(norm(delta) / norm(w), 6);
  });

  it('plans and measures RandLoRA, whose dims only the base says: ΔW = Σ_k B[o, 0, k]·λ[k, 0]·A[k, 0, i]·γ[0, i], scale randlora_alpha/r', async () => {
    // A square layer with r = min(in, out): nb = 1, so ΔW is one plain sum over k.
    const n = 6, r = 6;
    const base = [randomTensor(`${q}.weight`, [n, n], 'BF16', rand)];
    const adapter = [
      randomTensor('base_model.randlora_A', [r, 1, n], 'F32', rand, 0.5), randomTensor('base_model.randlora_B', [n, 1, r], 'F32', rand, 0.5),
      randomTensor(`base_model.model.${q}.randlora_lambda`, [r, 1], 'F32', rand), randomTensor(`base_model.model.${q}.randlora_gamma`, [1, n], 'F32', rand),
    ];
    const summary = await summarize(base, { ...peft, peft_type: 'RANDLORA', peft_version: '0.18.0', r, randlora_alpha: 9, save_projection: true, projection_prng_key: 0 }, adapter);
    expect(summary.problems).toEqual([]);
    expect(summary.modules.map((m) => [m.algorithm, m.scale])).toEqual([['RandLoRA (PEFT)', 9 / r]]);
    const [a, b, lambda, gamma] = adapter.map((t) => decoded(adapter).get(t.name)!.values);
    const delta = Array.from({ length: n * n }, (_, k) => {
      const o = Math.floor(k / n), i = k % n;
      let sum = 0;
      for (let j = 0; j < r; j++) sum += b[o * r + j] * lambda[j] * a[j * n + i] * gamma[i];
      return (9 / r) * sum;
    });
    expect(summary.magnitudes[0].ratio).toBeCloseTo(norm(delta) / norm(decoded(base).get(`${q}.weight`)!.values), 6);
  });

  // The cards' scale wording, against PEFT's definitions (tuners/*/layer.py) written out here.
  it('words an AdaLoRA card\'s scale α/init_r: PEFT scales by lora_alpha / ranknum, ranknum = init_r', async () => {
    const out = 6, inF = 5, initR = 3, alpha = 32;
    const base = [randomTensor(`${q}.weight`, [out, inF], 'BF16', rand)];
    const adapter = [
      randomTensor(`base_model.model.${q}.lora_A`, [initR, inF], 'F32', rand), randomTensor(`base_model.model.${q}.lora_E`, [initR, 1], 'F32', rand),
      randomTensor(`base_model.model.${q}.lora_B`, [out, initR], 'F32', rand),
    ];
    const summary = await summarize(base, {
      ...peft, peft_type: 'ADALORA', peft_version: '0.17.1', r: 8, target_r: 2, init_r: initR, lora_alpha: alpha, lora_dropout: 0,
      tinit: 0, tfinal: 0, deltaT: 1, total_step: 10, fan_in_fan_out: false, rank_pattern: null,
    }, adapter);
    expect(summary.problems).toEqual([]);
    expect(summary.adapters[0].facts).toEqual(['PEFT', 'AdaLoRA (PEFT)', '1 module', `r = ${initR}`, `α = ${alpha}`, `α/init_r = ${Number((alpha / initR).toPrecision(4))}`]);
  });

  it('words a GraLoRA card\'s scale α/(r + h): PEFT scales by alpha / (r + hybrid_r)', async () => {
    const out = 8, inF = 6, k = 2, r = 4, h = 2, alpha = 9;
    const base = [randomTensor(`${q}.weight`, [out, inF], 'BF16', rand)];
    const adapter = [
      randomTensor(`base_model.model.${q}.gralora_A`, [k, inF / k, r], 'F32', rand), randomTensor(`base_model.model.${q}.gralora_B`, [k, r, out / k], 'F32', rand),
      randomTensor(`base_model.model.${q}.gralora_A_general.weight`, [h, inF], 'F32', rand), randomTensor(`base_model.model.${q}.gralora_B_general.weight`, [out, h], 'F32', rand),
    ];
    const summary = await summarize(base, { ...peft, peft_type: 'GRALORA', peft_version: '0.18.0', r, hybrid_r: h, gralora_k: k, alpha, gralora_dropout: 0, fan_in_fan_out: false }, adapter);
    expect(summary.problems).toEqual([]);
    // The rank shown is the update's (k·r + h); the scale divides by r + h, as PEFT's does.
    expect(summary.adapters[0].facts).toEqual(['PEFT', 'GraLoRA (PEFT)', '1 module', `r = ${k * r + h}`, `α = ${alpha}`, `α/(r + h) = ${alpha / (r + h)}`]);
  });

  it('words a LyCORIS LoKr card under rs_lora: both factors full, scale √r (the .alpha holds r·√r); a decomposed one, the stored α over r', async () => {
    const toK = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight', toV = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight';
    const kohyaName = (key: string) => `lora_unet_${key.replace(/\.weight$/, '').replace(/\./g, '_')}`;
    const dim = 16, alpha = 2, r = 4;
    const unet = [randomTensor(toK, [40, 60], 'F32', rand), randomTensor(toV, [40, 60], 'F32', rand)];
    const lokr = buildSafetensors([
      // to_k: w1 (4, 6) and w2 (10, 10) full; LyCORIS sets α = lora_dim and stores lora_dim·√lora_dim.
      randomTensor(`${kohyaName(toK)}.lokr_w1`, [4, 6], 'F32', rand), randomTensor(`${kohyaName(toK)}.lokr_w2`, [10, 10], 'F32', rand),
      { name: `${kohyaName(toK)}.alpha`, dtype: 'F32', shape: [], data: [dim * Math.sqrt(dim)] },
      // to_v: w2 = (10, r)·(r, 10); LyCORIS stores α·√r, so that α/r read back is α/√r.
      randomTensor(`${kohyaName(toV)}.lokr_w1`, [4, 6], 'F32', rand), randomTensor(`${kohyaName(toV)}.lokr_w2_a`, [10, r], 'F32', rand),
      randomTensor(`${kohyaName(toV)}.lokr_w2_b`, [r, 10], 'F32', rand), { name: `${kohyaName(toV)}.alpha`, dtype: 'F32', shape: [], data: [alpha * Math.sqrt(r)] },
    ], {
      ss_network_module: 'lycoris.kohya', ss_network_dim: String(dim), ss_network_alpha: '8.0', ss_base_model_version: 'sd_v1',
      ss_network_args: JSON.stringify({ algo: 'lokr', rs_lora: 'True', conv_dim: '10', conv_alpha: '4' }),
    });
    const summary = await summarizePlan(memoryInputFileSet({ 'diffusion_pytorch_model.safetensors': buildSafetensors(unet) }, 'unet'),
      [{ files: memoryInputFileSet({ 'lokr.safetensors': lokr }, 'lokr.safetensors'), weight: 1 }]);
    expect(summary.problems.filter((p) => p.severity === 'error')).toEqual([]);
    // The rank is the decomposed module's only (the full one is a dense update); scales in the file's order.
    expect(summary.adapters[0].facts).toEqual([
      'kohya/LyCORIS', 'LoKr', '2 modules', `r = ${r}`, `α = ${alpha * Math.sqrt(r)}`, `scale = √r (rs_lora, both factors full) = ${Math.sqrt(dim)}`, `α/r = ${alpha / Math.sqrt(r)}`,
    ]);
  });
});

describe('the page\'s plan of diffusion norm changes named in the other naming', () => {
  /** `<module>.<role>` → the base tensor it lands on, written from the converters by hand. */
  type Change = [string, string];
  const CASES: { name: string; base: FixtureTensor[]; file: string; weight: number; changes: Change[]; listed: [string, string, string, number[]][]; placed: string[] }[] = [
    {
      name: 'FLUX.1 BFL file: diffusers\' norm_q / norm_added_q / norm_k and ComfyUI\'s `query_norm.scale.diff`', base: fluxBflTensors(rand, 'BF16'), file: 'flux1-dev.safetensors', weight: 0.8,
      changes: [
        ['transformer.transformer_blocks.0.attn.norm_q.diff', 'double_blocks.0.img_attn.norm.query_norm.scale'],
        ['transformer.transformer_blocks.1.attn.norm_added_q.diff', 'double_blocks.1.txt_attn.norm.query_norm.scale'],
        ['transformer.single_transformer_blocks.1.attn.norm_k.diff', 'single_blocks.1.norm.key_norm.scale'],
        ['diffusion_model.single_blocks.0.norm.key_norm.scale.diff', 'single_blocks.0.norm.key_norm.scale'],
      ],
      // In the base's order: module, target, algorithm, shape.
      listed: [
        ['transformer.transformer_blocks.0.attn.norm_q', 'double_blocks.0.img_attn.norm.query_norm.scale', 'full diff', [4]],
        ['transformer.transformer_blocks.1.attn.norm_added_q', 'double_blocks.1.txt_attn.norm.query_norm.scale', 'full diff', [4]],
        ['diffusion_model.single_blocks.0.norm.key_norm.scale', 'single_blocks.0.norm.key_norm.scale', 'full diff', [4]],
        ['transformer.single_transformer_blocks.1.attn.norm_k', 'single_blocks.1.norm.key_norm.scale', 'full diff', [4]],
      ],
      placed: ['double block 0 | img_attn.query_norm', 'double block 1 | txt_attn.query_norm', 'single block 0 | key_norm', 'single block 1 | key_norm'],
    },
    {
      name: 'Wan\'s own file: diffusers\' norm2 is Wan\'s norm3 (weight and bias), LyCORIS norm tuning, the image embedder\'s LayerNorm', base: wanOriginalTensors(rand, 'BF16'), file: 'wan2.1_t2v_14B_bf16.safetensors', weight: -0.6,
      changes: [
        ['diffusion_model.blocks.0.norm2.diff', 'blocks.0.norm3.weight'], ['diffusion_model.blocks.0.norm2.diff_b', 'blocks.0.norm3.bias'],
        ['lycoris_blocks_1_norm2.w_norm', 'blocks.1.norm3.weight'], ['lycoris_blocks_1_norm2.b_norm', 'blocks.1.norm3.bias'],
        ['diffusion_model.blocks.1.attn1.norm_q.diff', 'blocks.1.self_attn.norm_q.weight'],
        ['diffusion_model.condition_embedder.image_embedder.norm1.diff', 'img_emb.proj.0.weight'],
      ],
      listed: [
        ['diffusion_model.condition_embedder.image_embedder.norm1', 'img_emb.proj.0.weight', 'full diff', [10]],
        ['diffusion_model.blocks.0.norm2', 'blocks.0.norm3.weight', 'full diff + bias', [8]],
        ['diffusion_model.blocks.1.attn1.norm_q', 'blocks.1.self_attn.norm_q.weight', 'full diff', [8]],
        ['lycoris_blocks_1_norm2', 'blocks.1.norm3.weight', 'norm diff + bias', [8]],
      ],
      // The image embedder is in no block; a bias change is no bar (the chart measures weights).
      placed: ['other | proj', 'layer 0 | norm3', 'layer 1 | self_attn.norm_q', 'layer 1 | norm3'],
    },
    {
      name: 'Z-Image ComfyUI file: diffusers\' norm_q / norm_k, in a main layer and in the context refiner', base: zImageComfyTensors(rand, 'BF16'), file: 'z_image_turbo_bf16.safetensors', weight: 1,
      changes: [
        ['transformer.layers.1.attention.norm_q.diff', 'layers.1.attention.q_norm.weight'],
        ['transformer.context_refiner.0.attention.norm_k.diff', 'context_refiner.0.attention.k_norm.weight'],
      ],
      listed: [
        ['transformer.layers.1.attention.norm_q', 'layers.1.attention.q_norm.weight', 'full diff', [4]],
        ['transformer.context_refiner.0.attention.norm_k', 'context_refiner.0.attention.k_norm.weight', 'full diff', [4]],
      ],
      placed: ['layer 1 | attention.q_norm', 'context refiner 0 | attention.k_norm'],
    },
  ];

  for (const c of CASES) {
    it(`${c.name}: listed by the tensor each lands on, measured as ‖diff‖ / ‖W‖, in its block`, async () => {
      const shapes = new Map(c.base.map((t) => [t.name, t.shape]));
      const changes = c.changes.map(([name, lands]) => tensor(rand, name, shapes.get(lands)!, 'F32', 0.5));
      const baseBytes = buildSafetensors(c.base, { format: 'pt' });
      const summary = await summarizePlan(memoryInputFileSet({ [c.file]: baseBytes }, c.file), [
        { files: memoryInputFileSet({ 'norms.safetensors': buildSafetensors(changes) }, 'norms.safetensors'), weight: c.weight },
      ]);
      expect(summary.problems).toEqual([]);
      expect(summary.leftOut).toEqual([]);
      // Scales at weight 1: the page multiplies them by the slider.
      expect(summary.modules.map((m) => [m.module, m.target, m.algorithm, m.shape, m.scale])).toEqual(c.listed.map((l) => [...l, 1]));
      // ‖ΔW‖ / ‖W‖ of each weight change, in float64: the diff's own norm over the base tensor's.
      const w = decodeSafetensors(baseBytes).tensors;
      const weightChanges = c.changes.flatMap(([name, lands], i) => (/\.(diff|w_norm)$/.test(name) ? [{ lands, values: changes[i].data as ArrayLike<number> }] : []));
      const byTarget = new Map(weightChanges.map((x) => [x.lands, norm(x.values) / norm(w.get(x.lands)!.values)]));
      expect(summary.magnitudes.map((m) => `${m.place.group.label} | ${m.place.kind}`)).toEqual(c.placed);
      expect(summary.magnitudes).toHaveLength(weightChanges.length);
      for (const m of summary.magnitudes) {
        const want = byTarget.get(m.target)!;
        expect(Math.abs(m.ratio / want - 1), m.target).toBeLessThan(1e-6);
      }
    });
  }
});

/** A Linear8bitLt weight as bitsandbytes saves it, and its values as int8_vectorwise_dequant returns them (float32 products). */
function int8Weight(module: string, shape: [number, number]): { tensors: FixtureTensor[]; values: Float64Array } {
  const q = Int8Array.from({ length: shape[0] * shape[1] }, () => Math.floor(rand() * 255) - 127);
  const scb = Float32Array.from({ length: shape[0] }, () => 0.5 + rand() * 3);
  const inv127 = Math.fround(1 / 127);
  return {
    tensors: [
      { name: `${module}.weight`, dtype: 'I8', shape, data: new Uint8Array(q.buffer) },
      { name: `${module}.SCB`, dtype: 'F32', shape: [shape[0]], data: new Uint8Array(scb.buffer) },
      { name: `${module}.weight_format`, dtype: 'U8', shape: [], data: new Uint8Array([0]) },
    ],
    values: Float64Array.from(q, (x, i) => Math.fround(Math.fround(x * scb[Math.floor(i / shape[1])]) * inv127)),
  };
}

/** A 2-D tensor's values transposed (rows ↔ columns), in float64. */
function transposed(t: FixtureTensor): Float64Array {
  const [rows, cols] = t.shape;
  const values = decoded([t]).get(t.name)!.values;
  const out = new Float64Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}
