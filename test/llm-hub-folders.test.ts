/**
 * LLM model folders as they come from the Hugging Face Hub, with the adapters people train on
 * them: each base carries its model's real key names and config.json fields (sizes scaled down),
 * each adapter PEFT's, and each merged tensor is compared with float64 truth written out here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, mergeIntoFolder, randomTensor, type MergedFolder, prepareOne as prepare, type Files } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(4404);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());


const merge = (prepared: PreparedMerge): Promise<MergedFolder> => mergeIntoFolder(prepared, backend);

/** W + s·ΔW, as doubles. */
function plus(w: DecodedTensor, s: number, delta: Float64Array): Float64Array {
  return w.values.map((v, i) => v + s * delta[i]);
}

/** Raw bytes of a U8 tensor, as a FixtureTensor. */
function bytesTensor(name: string, shape: number[]): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype: 'U8', shape, data: Uint8Array.from({ length: n }, () => Math.floor(rand() * 256)) };
}

// --- gpt-oss as openai ships it: MXFP4 experts, every other weight bf16 ------------------------

describe('gpt-oss with MXFP4 experts (quantization_config mxfp4)', () => {
  const E = 4;
  // openai/gpt-oss-20b's names; the experts' fused parameters as `_blocks` (E, out, in/32, 16) and `_scales` (E, out, in/32).
  const base: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [16, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.bias', [16], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.sinks', [2], 'BF16', rand),
    randomTensor('model.layers.0.mlp.router.weight', [E, 8], 'BF16', rand),
    bytesTensor('model.layers.0.mlp.experts.gate_up_proj_blocks', [E, 12, 1, 16]),
    bytesTensor('model.layers.0.mlp.experts.gate_up_proj_scales', [E, 12, 1]),
    randomTensor('model.layers.0.mlp.experts.gate_up_proj_bias', [E, 12], 'BF16', rand),
    randomTensor('lm_head.weight', [32, 8], 'BF16', rand),
  ];
  const config = {
    architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', hidden_size: 8, num_local_experts: E,
    tie_word_embeddings: false,
    quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
  };
  const q = 'base_model.model.model.layers.0.self_attn.q_proj';

  it('a LoRA on the attention merges into its bf16 weight; the MXFP4 experts and the config are kept as they are', async () => {
    const adapter = [randomTensor(`${q}.lora_A.weight`, [2, 8], 'F32', rand, 0.5), randomTensor(`${q}.lora_B.weight`, [16, 2], 'F32', rand, 0.5)];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    const a = decoded(adapter);
    const b = decoded(base);
    const key = 'model.layers.0.self_attn.q_proj.weight';
    expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 2, product(a.get(`${q}.lora_B.weight`)!, a.get(`${q}.lora_A.weight`)!)));
    for (const [name, t] of b) if (name !== key) expect(merged.tensors.get(name)?.bytes, name).toEqual(t.bytes);
    expect(merged.json('config.json').quantization_config).toEqual(config.quantization_config);
  });

  // Merged (decoded as transformers does) in gpt-oss-mxfp4.test.ts; refused where that cannot be done.
  it('a LoRA on the MXFP4 experts: factors for another hidden size are refused naming the decoded parameter; without the mxfp4 config, naming the blocks and scales', async () => {
    const experts = 'base_model.model.model.layers.0.mlp.experts';
    const adapter = [randomTensor(`${experts}.lora_A.weight`, [2 * E, 8], 'F32', rand), randomTensor(`${experts}.lora_B.weight`, [12, 2 * E], 'F32', rand)];
    const peft = { r: 2, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], peft_version: '0.17.1' };
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peft, adapter));
    await prepared.close();
    // One block of 32 inputs per row: the parameter transformers makes is (4, 32, 12), not (4, 8, 12).
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.layers.0.mlp.experts.gate_up_proj": on model.layers.0.mlp.experts.gate_up_proj: lora_A (8, 8) and lora_B (12, 8) fit neither (E, out, in) nor (E, in, out) of the base tensor (4, 32, 12); '
        + 'the base tensor is decoded from MXFP4 model.layers.0.mlp.experts.gate_up_proj_blocks (4, 12, 1, 16) and model.layers.0.mlp.experts.gate_up_proj_scales (4, 12, 1) '
        + '(each expert\'s stored (out, in) transposed, as transformers\' Mxfp4Config(dequantize=True) loads it): the adapter was trained on another model or size; merge it into the one it was trained on',
    ]);
    const { quantization_config: _q, ...plain } = config;
    const unquantized = await prepare(hfModelFolder(base, plain), peftFolder(peft, adapter));
    await unquantized.close();
    expect(unquantized.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.layers.0.mlp.experts.gate_up_proj": the base stores this parameter as MXFP4 (model.layers.0.mlp.experts.gate_up_proj_blocks ' +
        'and model.layers.0.mlp.experts.gate_up_proj_scales), which transformers unpacks only for a config.json whose quantization_config says quant_method "mxfp4", ' +
        'and this base\'s does not; merge into the model folder as openai ships it (with its config.json), or into one with bf16 experts',
    ]);
  });
});

/**
 * A LoRA trained on transformers 5, which fuses a per-expert checkpoint's experts when it loads it
 * (gate_up_proj: each expert's gate_proj rows, then its up_proj rows; down_proj: the experts
 * stacked), merged into that checkpoint: expert e's ΔW on its own tensors, as transformers 5 writes
 * the merged parameter back split. PEFT's ParamWrapper factors: lora_A (r·E, ·) with expert e's rows
 * at [e·r, (e+1)·r), lora_B (·, r·E) with expert e's column k at k·E + e; ΔW_e = B_e·A_e from PEFT
 * 0.19.1 on (E, out, in) experts, (B_e·A_e)ᵀ before 0.19.
 */
describe('a LoRA on a fused expert parameter (transformers 5) and a checkpoint with one tensor per expert', () => {
  const E = 2;
  const r = 2;
  const experts = 'base_model.model.model.layers.0.mlp.experts';
  let gpu: MergeBackend;
  beforeAll(async () => {
    gpu = await createNodeBackend('webgpu');
  });
  afterAll(() => gpu.dispose());
  const qwenBase: FixtureTensor[] = [randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand)];
  for (let e = 0; e < E; e++) {
    qwenBase.push(randomTensor(`model.layers.0.mlp.experts.${e}.gate_proj.weight`, [6, 8], 'BF16', rand));
    qwenBase.push(randomTensor(`model.layers.0.mlp.experts.${e}.up_proj.weight`, [6, 8], 'BF16', rand));
    qwenBase.push(randomTensor(`model.layers.0.mlp.experts.${e}.down_proj.weight`, [8, 6], 'BF16', rand));
  }
  const qwenConfig = { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'bfloat16', num_experts: E };

  /** Expert e's ΔW (out × in of the fused parameter) from PEFT's factors, in float64. */
  function expertDelta(A: DecodedTensor, B: DecodedTensor, e: number, form: 'e-o-i' | 'e-i-o'): { rows: number; cols: number; values: Float64Array } {
    const aCols = A.shape[1];
    const bRows = B.shape[0];
    // M = B_e·A_e, bRows × aCols.
    const M = new Float64Array(bRows * aCols);
    for (let o = 0; o < bRows; o++) {
      for (let i = 0; i < aCols; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += B.values[o * r * E + k * E + e] * A.values[(e * r + k) * aCols + i];
        M[o * aCols + i] = sum;
      }
    }
    if (form === 'e-o-i') return { rows: bRows, cols: aCols, values: M };
    const T = new Float64Array(bRows * aCols);
    for (let o = 0; o < bRows; o++) for (let i = 0; i < aCols; i++) T[i * bRows + o] = M[o * aCols + i];
    return { rows: aCols, cols: bRows, values: T };
  }

  for (const [form, version, aShape, bShape, kind] of [
    ['e-o-i', '0.19.1', [r * E, 8], [12, r * E], 'cpu'],
    ['e-o-i', '0.19.1', [r * E, 8], [12, r * E], 'webgpu'],
    ['e-i-o', '0.18.0', [r * E, 12], [8, r * E], 'cpu'],
  ] as const) {
    it(`Qwen3-MoE gate_up_proj (PEFT ${version}, ${form}): each expert's gate rows land on experts.e.gate_proj, its up rows on experts.e.up_proj, exactly, on ${kind}`, async () => {
      const adapter = [randomTensor(`${experts}.lora_A.weight`, [...aShape], 'F32', rand, 0.5), randomTensor(`${experts}.lora_B.weight`, [...bShape], 'F32', rand, 0.5)];
      const prepared = await prepare(hfModelFolder(qwenBase, qwenConfig), peftFolder({ r, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], peft_version: version }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      const changed = Array.from({ length: E }, (_, e) => [`model.layers.0.mlp.experts.${e}.gate_proj.weight`, `model.layers.0.mlp.experts.${e}.up_proj.weight`]).flat();
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(changed.map((k) => [k, 'per-expert-tensors']).sort());
      const merged = kind === 'cpu' ? await merge(prepared) : await mergeIntoFolder(prepared, gpu);
      const a = decoded(adapter);
      const b = decoded(qwenBase);
      for (let e = 0; e < E; e++) {
        const delta = expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, form);
        expect([delta.rows, delta.cols]).toEqual([12, 8]);
        for (const [part, from] of [['gate_proj', 0], ['up_proj', 6]] as const) {
          const key = `model.layers.0.mlp.experts.${e}.${part}.weight`;
          expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 4 / r, delta.values.slice(from * 8, (from + 6) * 8)));
        }
      }
      for (const [name, t] of b) if (!changed.includes(name)) expect(merged.tensors.get(name)?.bytes, name).toEqual(t.bytes);
    });
  }

  it("Mixtral down_proj: expert e's ΔW lands on block_sparse_moe.experts.e.w2, exactly", async () => {
    const base = [randomTensor('model.layers.0.block_sparse_moe.experts.0.w2.weight', [8, 6], 'BF16', rand), randomTensor('model.layers.0.block_sparse_moe.experts.1.w2.weight', [8, 6], 'BF16', rand)];
    const adapter = [randomTensor(`${experts}.lora_A.weight`, [r * E, 6], 'F32', rand, 0.5), randomTensor(`${experts}.lora_B.weight`, [8, r * E], 'F32', rand, 0.5)];
    const prepared = await prepare(
      hfModelFolder(base, { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', torch_dtype: 'bfloat16', num_local_experts: E }),
      peftFolder({ r, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.down_proj'], peft_version: '0.19.1' }, adapter),
    );
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    const a = decoded(adapter);
    const b = decoded(base);
    for (let e = 0; e < E; e++) {
      const key = `model.layers.0.block_sparse_moe.experts.${e}.w2.weight`;
      expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 4 / r, expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, 'e-o-i').values));
    }
  });

  it('refused in one line: an expert without its up_proj, factors for another count of experts', async () => {
    const adapter = [randomTensor(`${experts}.lora_A.weight`, [r * E, 8], 'F32', rand), randomTensor(`${experts}.lora_B.weight`, [12, r * E], 'F32', rand)];
    const config = { r, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], peft_version: '0.19.1' };
    const noUp = qwenBase.filter((t) => t.name !== 'model.layers.0.mlp.experts.1.up_proj.weight');
    const first = await prepare(hfModelFolder(noUp, qwenConfig), peftFolder(config, adapter));
    await first.close();
    expect(first.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.layers.0.mlp.experts.gate_up_proj": the base stores this parameter one tensor per expert, but expert 1 has no model.layers.0.mlp.experts.1.up_proj.weight',
    ]);
    const four = [randomTensor(`${experts}.lora_A.weight`, [r * 4, 8], 'F32', rand), randomTensor(`${experts}.lora_B.weight`, [12, r * 4], 'F32', rand)];
    const second = await prepare(hfModelFolder(qwenBase, qwenConfig), peftFolder(config, four));
    await second.close();
    expect(second.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "model.layers.0.mlp.experts.gate_up_proj": on model.layers.0.mlp.experts.0.gate_proj.weight: lora_A (8, 8) holds the factors of 4 experts at rank 2, and the parameter (2, 12, 8) holds 2, for which PEFT\'s ParamWrapper saves lora_A (4, ·) and lora_B (·, 4): the adapter was trained on a model with another number of experts; merge it into that one',
    ]);
  });
});

describe("the adapter's tokenizer and the base's chat_template.jinja", () => {
  const base = [randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand)];
  const config = { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', torch_dtype: 'bfloat16', tie_word_embeddings: false };
  // Qwen's repositories as transformers 4.5x saves them: the template in its own file.
  const baseFolder = () => hfModelFolder(base, config, {
    extra: { 'tokenizer.json': '{"base":1}', 'tokenizer_config.json': '{"eos_token":"<|im_end|>"}', 'chat_template.jinja': '{{ base }}' },
  });
  const q = 'base_model.model.model.layers.0.self_attn.q_proj';
  const lora = () => [randomTensor(`${q}.lora_A.weight`, [1, 8], 'F32', rand), randomTensor(`${q}.lora_B.weight`, [8, 1], 'F32', rand)];

  it('a tokenizer_config.json holding the adapter\'s template: the base\'s template file is left out, as transformers would read it over the adapter\'s', async () => {
    const tokenizerConfig = '{"eos_token":"<|im_end|>","chat_template":"{{ adapter }}"}';
    const prepared = await prepare(baseFolder(), peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, lora(), {
      'tokenizer.json': '{"adapter":1}', 'tokenizer_config.json': tokenizerConfig,
    }));
    expect(prepared.plan.notes).toContain(
      "the base's chat_template.jinja is left out: transformers reads a chat template from that file over the one in tokenizer_config.json, and adapter1's tokenizer_config.json says the adapter's",
    );
    const merged = await merge(prepared);
    expect([...merged.files.keys()].filter((p) => !p.endsWith('.safetensors')).sort()).toEqual(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(merged.text('tokenizer_config.json')).toBe(tokenizerConfig);
  });

  it('an adapter that carries its own chat_template.jinja: it replaces the base\'s', async () => {
    const prepared = await prepare(baseFolder(), peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, lora(), {
      'tokenizer_config.json': '{"eos_token":"<|im_end|>"}', 'chat_template.jinja': '{{ adapter }}',
    }));
    expect(prepared.plan.notes.some((n) => n.includes('left out'))).toBe(false);
    const merged = await merge(prepared);
    expect(merged.text('chat_template.jinja')).toBe('{{ adapter }}');
    expect(merged.text('tokenizer.json')).toBe('{"base":1}');
  });
});

describe('weights a Hub folder holds besides the model the merge writes', () => {
  it("Mistral's consolidated.safetensors and gpt-oss's original/ beside the indexed shards: not written, and the plan says so", async () => {
    const shards = [randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand), randomTensor('model.norm.weight', [8], 'BF16', rand)];
    const folder = hfModelFolder(shards, { architectures: ['MistralForCausalLM'], model_type: 'mistral', torch_dtype: 'bfloat16' }, { shards: 2 });
    // mistral-inference's own copy of the model, under its own names, and params.json beside it.
    const consolidated = hfModelFolder([randomTensor('layers.0.attention.wq.weight', [8, 8], 'BF16', rand)], {})['model.safetensors'];
    const base = { ...folder, 'consolidated.safetensors': consolidated, 'params.json': '{"dim":8}', 'original/model.safetensors': consolidated, 'original/config.json': '{}' };
    const q = 'base_model.model.model.layers.0.self_attn.q_proj';
    const prepared = await prepare(base, peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [
      randomTensor(`${q}.lora_A.weight`, [1, 8], 'F32', rand), randomTensor(`${q}.lora_B.weight`, [8, 1], 'F32', rand),
    ]));
    expect(prepared.plan.warnings).toContain(
      'base: consolidated.safetensors, original/model.safetensors not written (the merge writes model-00001-of-00002.safetensors, model-00002-of-00002.safetensors)',
    );
    const merged = await merge(prepared);
    expect([...merged.files.keys()].sort()).toEqual([
      'config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'original/config.json', 'params.json',
    ]);
  });
});

describe('one adapter that sets trainable tokens and also changes the tensor they live in', () => {
  it('Qwen2 (tied): trainable tokens on the embedding and a LoRA on lm_head in one adapter are refused without asking to merge them one after the other', async () => {
    const base = [randomTensor('model.embed_tokens.weight', [16, 8], 'BF16', rand), randomTensor('model.norm.weight', [8], 'BF16', rand)];
    const config = { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', torch_dtype: 'bfloat16', tie_word_embeddings: true };
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 1, lora_alpha: 1, target_modules: ['lm_head'], trainable_token_indices: { embed_tokens: [3, 4] } }, [
      randomTensor('base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta', [2, 8], 'F32', rand),
      randomTensor('base_model.model.lm_head.lora_A.weight', [1, 8], 'F32', rand), randomTensor('base_model.model.lm_head.lora_B.weight', [16, 1], 'F32', rand),
    ]));
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: sets rows of lm_head.weight (trainable tokens), and its module "lm_head" also updates it; one adapter that does both is not supported',
    ]);
  });
});

describe("a trainer's output folder given as the adapter", () => {
  const weights = [randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand)];
  const base = () => hfModelFolder(weights, { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16' });
  const q = 'base_model.model.model.layers.0.self_attn.q_proj';
  const lora = () => [randomTensor(`${q}.lora_A.weight`, [1, 8], 'F32', rand), randomTensor(`${q}.lora_B.weight`, [8, 1], 'F32', rand)];
  const adapter = (tensors: FixtureTensor[]) => peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, tensors);
  const under = (folder: string, files: Files): Files => Object.fromEntries(Object.entries(files).map(([p, v]) => [`${folder}/${p}`, v]));

  it('two checkpoints side by side (checkpoint-500/, checkpoint-1000/) are refused, naming both, rather than one merged by listing order', async () => {
    const files = { ...under('checkpoint-500', adapter(lora())), ...under('checkpoint-1000', adapter(lora())), 'README.md': '' };
    await expect(prepare(base(), files)).rejects.toThrow(
      'adapter1: holds 2 adapters side by side (checkpoint-1000, checkpoint-500); give the folder of the one to merge',
    );
  });

  it("PEFT's save of several adapters (the default at the top, others in their own folders): the top one, as PeftModel.from_pretrained loads it", async () => {
    const top = lora();
    const prepared = await prepare(base(), { ...adapter(top), ...under('math', adapter(lora())) });
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared);
    const a = decoded(top);
    const key = 'model.layers.0.self_attn.q_proj.weight';
    expectValues(key, merged.tensors.get(key)!, plus(decoded(weights).get(key)!, 1, product(a.get(`${q}.lora_B.weight`)!, a.get(`${q}.lora_A.weight`)!)));
  });
});
