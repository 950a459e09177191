/**
 * The page's plan (demo/plan-summary.ts, run here as the worker runs it) on LLM checkpoints: every
 * matched module is listed and measured as the merge plans it, through config.json's
 * architecture (a LLaVA checkpoint in the old naming with an adapter in the new one) and a tied
 * head (a PEFT ensure_weight_tying adapter whose head factors mirror the embedding's); a
 * bitsandbytes base's files say their quantized weights are written as floats, and a GGUF's that
 * an output type converts every quantizable matrix. Magnitudes are
 * checked against ‖s·B·A‖_F / ‖W‖_F computed in float64 here.
 */
import { describe, expect, it } from 'vitest';
import { fileFate } from '../demo/panels/plan-panel.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { memoryInputFileSet } from '../src/index.js';
import { seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { decoded, hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { product } from './helpers/merge-truth.js';

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
      'the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both',
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
