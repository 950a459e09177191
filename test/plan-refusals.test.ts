/**
 * Refusals of the merge plan that no other test fed a wrong input to: each input below is what a
 * real tool would save (PEFT's key names and adapter_config.json, a transformers folder's
 * config.json), broken in one way, and the plan must name the module or tensor and what is wrong
 * rather than merge it.
 */
import { describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { seededRandom, type FixtureDType } from './helpers/fixtures.js';
import { hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { buildGguf, randomTensors } from './helpers/gguf-builder.js';
import { planProblems, planRefusal, qProjSingleFile, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(20261205);

const problems = (base: Files, adapter: Files) => planProblems(base, { adapter });
const refusal = (base: Files, adapter: Files) => planRefusal(base, { adapter });

/** A two-layer Llama folder (hidden 8, intermediate 12, vocabulary 16), weights in `dtype`. */
function llama(dtype: FixtureDType = 'F32'): Files {
  const t = (name: string, shape: number[]) => randomTensor(name, shape, dtype, rand);
  const tensors = [t('model.embed_tokens.weight', [16, 8])];
  for (let i = 0; i < 2; i++) {
    const p = `model.layers.${i}.`;
    tensors.push(
      t(`${p}self_attn.q_proj.weight`, [8, 8]), t(`${p}self_attn.k_proj.weight`, [4, 8]), t(`${p}self_attn.v_proj.weight`, [4, 8]),
      t(`${p}self_attn.o_proj.weight`, [8, 8]), t(`${p}mlp.gate_proj.weight`, [12, 8]), t(`${p}mlp.up_proj.weight`, [12, 8]),
      t(`${p}mlp.down_proj.weight`, [8, 12]), t(`${p}input_layernorm.weight`, [8]), t(`${p}post_attention_layernorm.weight`, [8]),
    );
  }
  tensors.push(t('model.norm.weight', [8]), t('lm_head.weight', [16, 8]));
  return hfModelFolder(tensors, {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
    num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 16, tie_word_embeddings: false, torch_dtype: 'float32',
  });
}

/** PEFT's LoRA on `modules` of the Llama above (r 2, alpha 4), key names as save_pretrained writes them. */
function loraOn(targets: string[], shapes: Record<string, [out: number, inFeatures: number]>, config: object = {}): Files {
  const tensors = Object.entries(shapes).flatMap(([module, [out, inFeatures]]) => [
    randomTensor(`base_model.model.${module}.lora_A.weight`, [2, inFeatures], 'F32', rand),
    randomTensor(`base_model.model.${module}.lora_B.weight`, [out, 2], 'F32', rand),
  ]);
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: targets, ...config }, tensors);
}

const DELTA = 'base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta';

/** LoRA on q_proj with trainable tokens on embed_tokens (LoraConfig trainable_token_indices), the delta as PEFT saves it. */
function tokensOn(indices: number[], deltaShape: number[], dtype: FixtureDType = 'F32'): Files {
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], trainable_token_indices: indices }, [
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
    randomTensor(DELTA, deltaShape, dtype, rand),
  ]);
}

describe('plan refusals', () => {
  it('plans a LoRA with trainable tokens that fit, without problems (the inputs below differ in one thing)', async () => {
    expect(await problems(llama(), tokensOn([3, 15], [2, 8]))).toEqual([]);
  });

  it('refuses trainable-token deltas narrower than the embedding, naming the delta, the embedding and both shapes', async () => {
    // PEFT's TrainableTokensLayer would fail to index_copy (2, 6) rows into a (16, 8) embedding.
    expect(await problems(llama(), tokensOn([3, 15], [2, 6]))).toEqual([
      `adapter: module "model.embed_tokens.weight": trainable tokens ${DELTA}: deltas (2, 6) do not fit model.embed_tokens.weight (16, 8)`,
    ]);
  });

  it('refuses a trainable token index past the vocabulary, naming it and the row count', async () => {
    expect(await problems(llama(), tokensOn([3, 16], [2, 8]))).toEqual([
      `adapter: module "model.embed_tokens.weight": trainable tokens ${DELTA}: token 16 is outside model.embed_tokens.weight's 16 rows`,
    ]);
  });

  it('refuses integer trainable-token deltas: the rows set must be float values', async () => {
    expect(await problems(llama(), tokensOn([3, 15], [2, 8], 'I32'))).toEqual([
      `adapter: module "model.embed_tokens.weight": trainable tokens ${DELTA}: only float tensors can have rows set`,
    ]);
  });

  it('refuses a modules_to_save copy stored as integers, naming the tensor, the base weight and both dtypes', async () => {
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], modules_to_save: ['lm_head'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
      randomTensor('base_model.model.lm_head.modules_to_save.default.weight', [16, 8], 'I32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "lm_head.weight": replacement I32 for base lm_head.weight F32: only float tensors can be replaced',
    ]);
  });

  it('refuses an embedding LoRA for another vocabulary size, naming the module, ΔW and the base shape', async () => {
    // PEFT saves an nn.Embedding's LoRA as lora_embedding_A (r, num_embeddings) and lora_embedding_B (embedding_dim, r).
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['embed_tokens'] }, [
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 20], 'F32', rand),
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "model.embed_tokens": ΔW (8, 20) does not fit base model.embed_tokens.weight (16, 8): expected (20, 8)',
    ]);
  });

  it('refuses an embedding LoRA for another hidden size (the same vocabulary), naming the module, ΔW and the base shape', async () => {
    // Trained on a model of hidden size 6: lora_embedding_B is (6, r) where this embedding is (16, 8).
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['embed_tokens'] }, [
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 16], 'F32', rand),
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [6, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "model.embed_tokens": ΔW (6, 16) does not fit base model.embed_tokens.weight (16, 8): expected (16, 6)',
    ]);
  });

  it('refuses a LoRA whose lora_A has fewer inputs than the Linear it names, naming the module, ΔW and the base shape', async () => {
    // A LoRA trained on a model of hidden size 6: its q_proj lora_A is (r, 6), this q_proj is (8, 8).
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 6], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "model.layers.0.self_attn.q_proj": ΔW (8, 6) does not fit base model.layers.0.self_attn.q_proj.weight (8, 8): ΔW has 6 inputs, the base 8',
    ]);
  });

  it('refuses a one-output Linear LoRA of another width on a GGUF vector (Qwen2-MoE shared_expert_gate on ffn_gate_inp_shexp)', async () => {
    // convert_hf_to_gguf writes shared_expert_gate (1, hidden) as the vector blk.N.ffn_gate_inp_shexp {hidden}.
    const { tensors } = randomTensors([
      { name: 'token_embd.weight', ne: [32, 16], type: 'F32' }, { name: 'blk.0.ffn_gate_inp_shexp.weight', ne: [32], type: 'F32' },
    ], rand);
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'qwen2moe' }], ['qwen2moe.block_count', { type: 'u32', value: 1 }]],
      tensors,
    });
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['shared_expert_gate'] }, [
      randomTensor('base_model.model.model.layers.0.mlp.shared_expert_gate.lora_A.weight', [2, 24], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.mlp.shared_expert_gate.lora_B.weight', [1, 2], 'F32', rand),
    ]);
    expect(await problems({ 'model.gguf': base }, adapter)).toEqual([
      'adapter: module "model.layers.0.mlp.shared_expert_gate": ΔW (1, 24) does not fit base blk.0.ffn_gate_inp_shexp.weight (32): ΔW has 24 inputs, the base 32',
    ]);
  });

  /** PEFT's DoRA (use_dora) on q_proj: lora_A, lora_B and the magnitude as PEFT 0.12+ saves it (lora_magnitude_vector). */
  function doraOnQ(magnitude: number[], dtype: FixtureDType = 'F32'): Files {
    return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], use_dora: true }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', magnitude, dtype, rand),
    ]);
  }

  it('refuses a DoRA magnitude with a value count other than the output features, naming the module and both counts', async () => {
    expect(await problems(llama(), doraOnQ([8]))).toEqual([]);
    // PEFT cannot load it either: refused as the adapter is read, before any plan.
    expect(await planRefusal(llama(), { adapter: doraOnQ([6]) })).toBe(
      'adapter: module "model.layers.0.self_attn.q_proj": lora_magnitude_vector base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector (6) should hold one value per output feature (8)',
    );
  });

  it('refuses an integer DoRA magnitude, naming the tensor and its dtype', async () => {
    expect(await problems(llama(), doraOnQ([8], 'I32'))).toEqual([
      'adapter: module "model.layers.0.self_attn.q_proj": DoRA magnitude base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector is I32; only F32, F16, BF16 and fp8 factors can be merged (linear module)',
    ]);
  });

  /** A one-layer Qwen2 folder: its q, k and v projections have biases (hidden 8, q 8 rows; `qBias` values in q's bias). */
  function qwen2(qBias = 8): Files {
    const t = (name: string, shape: number[]) => randomTensor(name, shape, 'F32', rand);
    const p = 'model.layers.0.self_attn.';
    return hfModelFolder([
      t('model.embed_tokens.weight', [16, 8]), t(`${p}q_proj.weight`, [8, 8]), t(`${p}q_proj.bias`, [qBias]),
      t(`${p}k_proj.weight`, [4, 8]), t(`${p}k_proj.bias`, [4]), t(`${p}v_proj.weight`, [4, 8]), t(`${p}v_proj.bias`, [4]),
      t(`${p}o_proj.weight`, [8, 8]), t('model.norm.weight', [8]), t('lm_head.weight', [16, 8]),
    ], { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 16, tie_word_embeddings: false });
  }

  /** PEFT's LoRA with lora_bias (its lora_B Linear has a bias, saved as lora_B.bias) on q_proj. */
  function biasOnQ(bias: number[], dtype: FixtureDType = 'F32'): Files {
    return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], lora_bias: true }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias', bias, dtype, rand),
    ]);
  }

  it('refuses a lora_B bias whose length is not the output features, and a base bias of another length than its weight\'s outputs', async () => {
    expect(await problems(qwen2(), biasOnQ([8]))).toEqual([]);
    expect(await planRefusal(qwen2(), { adapter: biasOnQ([6]) })).toBe(
      'adapter: module "model.layers.0.self_attn.q_proj": lora_B bias base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias (6) should hold one value per output feature (8)',
    );
    // The base at fault: q_proj.bias holds 6 values beside its 8-row weight.
    expect(await problems(qwen2(6), biasOnQ([8]))).toEqual([
      'adapter: module "model.layers.0.self_attn.q_proj": base model.layers.0.self_attn.q_proj.bias (6) does not hold one value per output feature of model.layers.0.self_attn.q_proj.weight (8); the base file is broken',
    ]);
  });

  it('refuses an integer lora_B bias, naming the tensor and its dtype', async () => {
    expect(await problems(qwen2(), biasOnQ([8], 'I32'))).toEqual([
      'adapter: module "model.layers.0.self_attn.q_proj": factor base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias is I32; only F32, F16, BF16 and fp8 factors can be merged (linear module)',
    ]);
  });

  it('refuses a rank above MAX_RANK (1024) before reading the factors, naming the module and the limit', async () => {
    const adapter = peftFolder({ r: 1025, lora_alpha: 1025, target_modules: ['v_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', [1025, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight', [4, 1025], 'F32', rand),
    ]);
    const prepared = await prepareMerge(memoryInputFileSet(llama(), 'base'), [{ files: memoryInputFileSet(adapter, 'adapter') }]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => [p.code, p.message])).toEqual([[
      'LIMIT_EXCEEDED',
      'adapter: module "model.layers.0.self_attn.v_proj": rank 1025 is above the limit of 1024 (MAX_RANK), which bounds the memory a merge takes',
    ]]);
  });

  it('refuses integer LoRA factors, naming the module, the factor and its dtype', async () => {
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'I32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "model.layers.0.self_attn.q_proj": factor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight is I32; only F32, F16, BF16 and fp8 factors can be merged (linear module)',
    ]);
  });

  it('refuses two adapters that set the same trainable token, naming the token and the other adapter', async () => {
    expect(await planProblems(llama(), { first: tokensOn([3, 15], [2, 8]), second: tokensOn([7, 3], [2, 8]) })).toEqual([
      `second: module "model.embed_tokens.weight": trainable tokens ${DELTA}: sets token 3, which first also sets (PEFT refuses overlapping trainable tokens)`,
    ]);
  });

  it('refuses two modules of one adapter on the same weight, naming both', async () => {
    // The same q_proj saved twice, once under the causal-LM wrapper's path and once under the bare model's.
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
      randomTensor('base_model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "layers.0.self_attn.q_proj": targets model.layers.0.self_attn.q_proj.weight, as module "model.layers.0.self_attn.q_proj" of the same adapter does',
    ]);
  });

  it('refuses a single-file LoRA holding a tensor it does not recognise, rather than merging the rest', async () => {
    // diffusers' form (PEFT key names without base_model.model.), as a single .safetensors file.
    const q = 'model.layers.0.self_attn.q_proj';
    expect(await refusal(llama(), qProjSingleFile(rand))).toBe('');
    expect(await refusal(llama(), qProjSingleFile(rand, [[`${q}.lora_C`, [8]]]))).toBe(`adapter/adapter.safetensors: tensor "${q}.lora_C" is not an adapter tensor this tool recognises`);
  });
});
