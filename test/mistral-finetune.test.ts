/**
 * mistral-finetune's LoRA (`checkpoints/checkpoint_N/consolidated/lora.safetensors` beside the
 * params.json it writes: `layers.N.attention.wq.lora_A.weight` (r, in), `lora_B.weight` (out, r),
 * for wq, wk, wv, wo and feed_forward.w1, w2, w3, each expert's in a mixture of experts), merged as
 * mistral-inference's load_lora and mistral-finetune's merge_lora.py merge it: W + scaling·(B @ A),
 * scaling from params.json's `lora.scaling` (2.0 where none is given). On Mistral's own
 * consolidated.safetensors it lands by name; on a transformers checkpoint converted from it
 * (convert_mistral_weights_to_hf.py and the Mixtral, Mistral 3 and Pixtral conversions) on the
 * renamed tensors, wq's and wk's rows permuted as the conversion's permute_for_rope permutes them,
 * which is written out here as torch's view / transpose / reshape does it. Every merged tensor is
 * compared with float64 truth computed here.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, mergeModel, type MergeBackend } from '../src/index.js';
import { createNodeBackend, merge } from '../src/node.js';
import { errorLines, mergeArgs, runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, prepareOne as prepare, randomTensor, type Files } from './helpers/hf-folder.js';
import { expectMergedFile, expectValues, product } from './helpers/merge-truth.js';
import { readGguf, tensorValues } from './helpers/gguf-builder.js';
import { bf16LlamaGguf } from './helpers/gguf-models.js';

const rand = seededRandom(5301);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

// A Mistral Nemo-like shape: head_dim (6) is not dim / n_heads (4), as in Nemo's 128 beside 5120 / 32.
const DIM = 16;
const HEADS = 4;
const KV_HEADS = 2;
const HEAD_DIM = 6;
const HIDDEN = 24;
const VOCAB = 32;
const RANK = 2;

/** params.json of Mistral's release (consolidated format), as mistral-inference reads it. */
const MODEL_PARAMS = { dim: DIM, n_layers: 1, head_dim: HEAD_DIM, hidden_dim: HIDDEN, n_heads: HEADS, n_kv_heads: KV_HEADS, norm_eps: 1e-5, vocab_size: VOCAB, rope_theta: 1000000 };

/** Each LoRALinear mistral-finetune wraps in a dense layer, with its (out, in). */
const MODULES: [name: string, out: number, inF: number][] = [
  ['attention.wq', HEADS * HEAD_DIM, DIM], ['attention.wk', KV_HEADS * HEAD_DIM, DIM], ['attention.wv', KV_HEADS * HEAD_DIM, DIM], ['attention.wo', DIM, HEADS * HEAD_DIM],
  ['feed_forward.w1', HIDDEN, DIM], ['feed_forward.w2', DIM, HIDDEN], ['feed_forward.w3', HIDDEN, DIM],
];

/** Mistral's consolidated.safetensors of one decoder layer (BF16, as Mistral ships Nemo). */
function consolidatedTensors(): FixtureTensor[] {
  return [
    randomTensor('tok_embeddings.weight', [VOCAB, DIM], 'BF16', rand),
    ...MODULES.map(([name, out, inF]) => randomTensor(`layers.0.${name}.weight`, [out, inF], 'BF16', rand)),
    randomTensor('layers.0.attention_norm.weight', [DIM], 'BF16', rand), randomTensor('layers.0.ffn_norm.weight', [DIM], 'BF16', rand),
    randomTensor('norm.weight', [DIM], 'BF16', rand), randomTensor('output.weight', [VOCAB, DIM], 'BF16', rand),
  ];
}

/** lora.safetensors as mistral-finetune saves it: every wrapped Linear's lora_A and lora_B, in the run's dtype (BF16). */
function loraTensors(modules: [string, number, number][] = MODULES.map(([n, o, i]) => [`layers.0.${n}`, o, i])): FixtureTensor[] {
  return modules.flatMap(([path, out, inF]) => [
    randomTensor(`${path}.lora_A.weight`, [RANK, inF], 'BF16', rand, 0.5), randomTensor(`${path}.lora_B.weight`, [out, RANK], 'BF16', rand, 0.5),
  ]);
}

/** The folder mistral-finetune writes (consolidated/): lora.safetensors and params.json with the model's and the LoRA's arguments. */
function finetuneFolder(tensors: FixtureTensor[], lora: object = { enable: true, rank: RANK, dropout: 0, scaling: 2 }): Files {
  return { 'lora.safetensors': buildSafetensors(tensors), 'params.json': JSON.stringify({ ...MODEL_PARAMS, lora }), 'tekken.json': '{}' };
}

/**
 * transformers' permute_for_rope on a (rows, cols) weight: view(heads, d/2, 2, cols).transpose(1, 2)
 * .reshape(rows, cols), d = rows / heads: the result's [h][j][i] is the input's [h][i][j].
 */
function permuteForRope(values: ArrayLike<number>, rows: number, cols: number, headDim: number): Float64Array {
  const out = new Float64Array(rows * cols);
  const half = headDim / 2;
  for (let h = 0; h < rows / headDim; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * headDim + i * 2 + j;
        const to = h * headDim + j * half + i;
        for (let c = 0; c < cols; c++) out[to * cols + c] = values[from * cols + c];
      }
    }
  }
  return out;
}

/** transformers' name of a Mistral one, as convert_mistral_weights_to_hf.py's STATE_DICT_MAPPING renames it. */
const HF_NAME: Record<string, string> = {
  'attention.wq': 'self_attn.q_proj', 'attention.wk': 'self_attn.k_proj', 'attention.wv': 'self_attn.v_proj', 'attention.wo': 'self_attn.o_proj',
  'feed_forward.w1': 'mlp.gate_proj', 'feed_forward.w2': 'mlp.down_proj', 'feed_forward.w3': 'mlp.up_proj',
};

/** The conversion of `consolidated` into transformers' names under `prefix` (`model.`), wq and wk permuted. */
function convertedTensors(consolidated: FixtureTensor[], prefix: string, head: string, headDim: number): FixtureTensor[] {
  const byName = decoded(consolidated);
  return consolidated.map((t) => {
    const layer = /^layers\.0\.(.+)\.weight$/.exec(t.name)?.[1];
    const name = t.name === 'tok_embeddings.weight' ? `${prefix}embed_tokens.weight` : t.name === 'output.weight' ? head : t.name === 'norm.weight' ? `${prefix}norm.weight`
      : layer === 'attention_norm' ? `${prefix}layers.0.input_layernorm.weight` : layer === 'ffn_norm' ? `${prefix}layers.0.post_attention_layernorm.weight` : `${prefix}layers.0.${HF_NAME[layer!]}.weight`;
    const permuted = layer === 'attention.wq' || layer === 'attention.wk';
    const values = byName.get(t.name)!.values;
    return { ...t, name, data: permuted ? Array.from(permuteForRope(values, t.shape[0], t.shape[1], headDim)) : Array.from(values) };
  });
}

describe("mistral-finetune's lora.safetensors on Mistral's consolidated.safetensors", () => {
  it('lands by name at params.json lora.scaling: W + scaling·(B @ A), as load_lora merges it, each weight rounded once to BF16', async () => {
    const baseTensors = consolidatedTensors();
    const factors = loraTensors();
    const scaling = 1.5;
    const base = { 'consolidated.safetensors': buildSafetensors(baseTensors), 'params.json': JSON.stringify(MODEL_PARAMS), 'tekken.json': '{}' };
    const prepared = await prepare(base, finetuneFolder(factors, { enable: true, rank: RANK, dropout: 0, scaling }));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.adapters.map((a) => a.format)).toEqual(['mistral']);
    expect(prepared.plan.warnings).toContain(
      "adapter1: merged at lora.scaling 1.5 of adapter1/params.json, as mistral-finetune trained it; mistral-chat's --lora_path applies 2 (load_lora's default) whatever the run set, so it runs this LoRA at another strength than the merged model has",
    );
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    expectMergedFile(decoded(baseTensors), merged.tensors, MODULES.map(([name]) => ({
      baseKey: `layers.0.${name}.weight`, a: f.get(`layers.0.${name}.lora_A.weight`)!, b: f.get(`layers.0.${name}.lora_B.weight`)!, scale: scaling,
    })));
    // The model's own params.json goes with it (mistral-inference reads it to build the model).
    expect(merged.json('params.json')).toEqual(MODEL_PARAMS);
  });

  it('a lone lora.safetensors (no params.json beside it): scaling 2.0, load_lora\'s default, with a warning saying so', async () => {
    const baseTensors = consolidatedTensors();
    const factors = loraTensors([['layers.0.attention.wk', KV_HEADS * HEAD_DIM, DIM]]);
    const prepared = await prepare({ 'consolidated.safetensors': buildSafetensors(baseTensors), 'params.json': JSON.stringify(MODEL_PARAMS) }, { 'lora.safetensors': buildSafetensors(factors) });
    expect(prepared.plan.warnings).toContain(
      "adapter1: no params.json with lora.scaling beside adapter1/lora.safetensors: merged at scaling 2, mistral-finetune's default and the one mistral-inference's load_lora applies; if the run set another lora.scaling, give the folder mistral-finetune wrote, with its params.json",
    );
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    const w = decoded(baseTensors).get('layers.0.attention.wk.weight')!;
    const delta = product(f.get('layers.0.attention.wk.lora_B.weight')!, f.get('layers.0.attention.wk.lora_A.weight')!);
    expectValues('layers.0.attention.wk.weight', merged.tensors.get('layers.0.attention.wk.weight')!, w.values.map((v, i) => v + 2 * delta[i]));
  });

  it('refused in one line each: a tensor that is no LoRA factor, a factor without its partner, a rank params.json does not state, a scaling no run can have', async () => {
    const base = { 'consolidated.safetensors': buildSafetensors(consolidatedTensors()), 'params.json': JSON.stringify(MODEL_PARAMS) };
    const factors = loraTensors([['layers.0.attention.wq', HEADS * HEAD_DIM, DIM]]);
    // merge_lora.py copies a `norm` tensor over the model's, mistral-inference refuses a file with one: no LoRA term either way.
    await expect(prepare(base, finetuneFolder([...factors, randomTensor('layers.0.attention_norm.weight', [DIM], 'BF16', rand)]))).rejects.toThrow(
      'adapter1/lora.safetensors: tensor "layers.0.attention_norm.weight" is not a mistral-finetune LoRA factor (layers.N.attention.wq … or feed_forward.w1 … with .lora_A.weight or .lora_B.weight)',
    );
    await expect(prepare(base, finetuneFolder([factors[0]]))).rejects.toThrow('adapter1: module "layers.0.attention.wq": has layers.0.attention.wq.lora_A.weight but no layers.0.attention.wq.lora_B.weight');
    await expect(prepare(base, finetuneFolder(factors, { rank: 16, scaling: 2 }))).rejects.toThrow(
      'adapter1: module "layers.0.attention.wq": lora_A has rank 2 but adapter1/params.json says lora.rank 16 (mistral-finetune gives every layer that rank): the file and its params.json are not from one run',
    );
    await expect(prepare(base, finetuneFolder(factors, { rank: RANK, scaling: -2 }))).rejects.toThrow(
      'adapter1/params.json: lora.scaling -2 is not a positive finite number (mistral-finetune multiplies ΔW by it)',
    );
  });
});

describe("on Pixtral's and Mistral Large 3's consolidated.safetensors", () => {
  it("Pixtral 12B: a module names the decoder layer's tensor exactly, never the vision encoder's that ends the same (vision_encoder.transformer.layers.N.attention.wq)", async () => {
    // Pixtral-12B-2409's consolidated.safetensors holds its vision encoder under vision_encoder.transformer.layers.N in
    // the same names; mistral-inference's load_lora merges only the decoder's layers (layers.N).
    const baseTensors = [
      ...consolidatedTensors(),
      ...[0, 1].flatMap((n) => [randomTensor(`vision_encoder.transformer.layers.${n}.attention.wq.weight`, [HEADS * HEAD_DIM, DIM], 'BF16', rand)]),
      randomTensor('vision_language_adapter.w_in.weight', [DIM, DIM], 'BF16', rand),
    ];
    const base = { 'consolidated.safetensors': buildSafetensors(baseTensors), 'params.json': JSON.stringify({ ...MODEL_PARAMS, vision_encoder: { hidden_size: DIM } }) };
    const factors = loraTensors([['layers.0.attention.wq', HEADS * HEAD_DIM, DIM]]);
    const prepared = await prepare(base, finetuneFolder(factors));
    expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['layers.0.attention.wq.weight']);
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    expectMergedFile(decoded(baseTensors), merged.tensors, [{ baseKey: 'layers.0.attention.wq.weight', a: f.get('layers.0.attention.wq.lora_A.weight')!, b: f.get('layers.0.attention.wq.lora_B.weight')!, scale: 2 }]);
    // An adapter of a deeper model: its layer 1 is no tensor of this decoder (the vision encoder's layer 1 only ends the same).
    const deeper = await prepare(base, finetuneFolder(loraTensors([['layers.1.attention.wq', HEADS * HEAD_DIM, DIM]])));
    await deeper.close();
    expect(deeper.plan.problems.map((p) => p.message)).toEqual([
      "adapter1: module \"layers.1.attention.wq\": names layers.1.attention.wq.weight, which the base, in Mistral's own format, does not hold: merge into the model the adapter was trained on",
    ]);
  });

  it('Mistral Large 3 (multi-head latent attention: attention.wq_a, wkv_b; experts.K.w1): a module of wq is refused, saying mistral-finetune trains no such model', async () => {
    const base = {
      'consolidated.safetensors': buildSafetensors([
        randomTensor('tok_embeddings.weight', [VOCAB, DIM], 'BF16', rand), randomTensor('layers.0.attention.wq_a.weight', [8, DIM], 'BF16', rand),
        randomTensor('layers.0.attention.wkv_b.weight', [16, 8], 'BF16', rand), randomTensor('layers.0.experts.0.w1.weight', [8, DIM], 'BF16', rand),
      ]),
      'params.json': JSON.stringify({ dim: DIM, n_layers: 1, q_lora_rank: 8, kv_lora_rank: 8, moe: { num_experts: 1 } }),
    };
    const prepared = await prepare(base, finetuneFolder(loraTensors([['layers.0.attention.wq', HEADS * HEAD_DIM, DIM]])));
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      "adapter1: module \"layers.0.attention.wq\": names layers.0.attention.wq.weight, which the base, in Mistral's own format, does not hold (its attention is multi-head latent attention, wq_a, wkv_b …, which mistral-finetune does not train): merge into the model the adapter was trained on",
    ]);
  });
});

describe('on a transformers checkpoint converted from it (convert_mistral_weights_to_hf.py)', () => {
  const hfConfig = (extra: object = {}) => ({
    architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: DIM, intermediate_size: HIDDEN, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS,
    head_dim: HEAD_DIM, num_hidden_layers: 1, vocab_size: VOCAB, torch_dtype: 'bfloat16', tie_word_embeddings: false, ...extra,
  });

  // Ministral 3's text-only checkpoint (convert_ministral3_weights_to_hf.py: Ministral3ForCausalLM) is renamed and permuted alike.
  it.for([['MistralForCausalLM', 'mistral'], ['Ministral3ForCausalLM', 'ministral3']])("%s: every module on its renamed tensor, wq's and wk's ΔW rows permuted within each head: the conversion of the model load_lora merges", async ([arch, type]) => {
    const consolidated = consolidatedTensors();
    const factors = loraTensors();
    const hf = convertedTensors(consolidated, 'model.', 'lm_head.weight', HEAD_DIM);
    const prepared = await prepare(hfModelFolder(hf, hfConfig({ architectures: [arch], model_type: type })), finetuneFolder(factors));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    const w = decoded(consolidated);
    for (const [name, out, inF] of MODULES) {
      const delta = product(f.get(`layers.0.${name}.lora_B.weight`)!, f.get(`layers.0.${name}.lora_A.weight`)!);
      const exact = w.get(`layers.0.${name}.weight`)!.values.map((v, i) => v + 2 * delta[i]);
      const permuted = name === 'attention.wq' || name === 'attention.wk';
      const key = `model.layers.0.${HF_NAME[name]}.weight`;
      expectValues(key, merged.tensors.get(key)!, permuted ? permuteForRope(exact, out, inF, HEAD_DIM) : exact);
    }
    for (const key of ['model.embed_tokens.weight', 'lm_head.weight', 'model.norm.weight']) expect(merged.tensors.get(key)!.bytes).toEqual(decoded(hf).get(key)!.bytes);
  });

  it('the same bytes as merging into consolidated.safetensors and converting that', async () => {
    const consolidated = consolidatedTensors();
    const factors = loraTensors();
    const intoOwn = await mergeIntoFolder(await prepare({ 'consolidated.safetensors': buildSafetensors(consolidated), 'params.json': JSON.stringify(MODEL_PARAMS) }, finetuneFolder(factors)), backend);
    const intoHf = await mergeIntoFolder(await prepare(hfModelFolder(convertedTensors(consolidated, 'model.', 'lm_head.weight', HEAD_DIM), hfConfig()), finetuneFolder(factors)), backend);
    const convertedBack = decoded(convertedTensors([...intoOwn.tensors].map(([name, t]) => ({ name, dtype: 'BF16', shape: t.shape, data: Array.from(t.values) })), 'model.', 'lm_head.weight', HEAD_DIM));
    for (const [key, t] of convertedBack) expect(intoHf.tensors.get(key)!.bytes, key).toEqual(t.bytes);
  });

  it("Mixtral (MixtralForCausalLM, no head_dim in config.json: hidden_size / num_attention_heads): an expert's w1, w2, w3 on block_sparse_moe.experts.K, attention permuted", async () => {
    const d = DIM / HEADS;
    const expertNames = (k: number): [string, number, number][] => [[`feed_forward.experts.${k}.w1`, HIDDEN, DIM], [`feed_forward.experts.${k}.w2`, DIM, HIDDEN], [`feed_forward.experts.${k}.w3`, HIDDEN, DIM]];
    const modules: [string, number, number][] = [['attention.wq', DIM, DIM], ['attention.wk', KV_HEADS * d, DIM], ...expertNames(0), ...expertNames(1)];
    const hfName = (name: string) => (name.startsWith('feed_forward.') ? name.replace('feed_forward.', 'block_sparse_moe.') : HF_NAME[name]);
    const consolidated = modules.map(([name, out, inF]) => randomTensor(`layers.0.${name}.weight`, [out, inF], 'BF16', rand));
    const hf = consolidated.map((t, i) => {
      const name = modules[i][0];
      const data = name.startsWith('attention.') ? Array.from(permuteForRope(decoded([t]).get(t.name)!.values, t.shape[0], t.shape[1], d)) : t.data;
      return { ...t, name: `model.layers.0.${hfName(name)}.weight`, data };
    });
    hf.push(randomTensor('model.layers.0.block_sparse_moe.gate.weight', [2, DIM], 'BF16', rand));
    const config = { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: DIM, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, num_local_experts: 2, torch_dtype: 'bfloat16' };
    const factors = loraTensors(modules.map(([n, o, i]) => [`layers.0.${n}`, o, i]));
    const prepared = await prepare(hfModelFolder(hf, config), finetuneFolder(factors));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    const w = decoded(consolidated);
    for (const [name, out, inF] of modules) {
      const delta = product(f.get(`layers.0.${name}.lora_B.weight`)!, f.get(`layers.0.${name}.lora_A.weight`)!);
      const exact = w.get(`layers.0.${name}.weight`)!.values.map((v, i) => v + 2 * delta[i]);
      const key = `model.layers.0.${hfName(name)}.weight`;
      expectValues(key, merged.tensors.get(key)!, name.startsWith('attention.') ? permuteForRope(exact, out, inF, d) : exact);
    }
  });

  it("Mistral Small 3.1 (Mistral3ForConditionalGeneration, head_dim in text_config): lands on the language model, not the Pixtral tower's attention.q_proj", async () => {
    const consolidated = consolidatedTensors();
    const factors = loraTensors();
    const hf = [
      ...convertedTensors(consolidated, 'language_model.model.', 'language_model.lm_head.weight', HEAD_DIM),
      randomTensor('vision_tower.transformer.layers.0.attention.q_proj.weight', [8, 8], 'BF16', rand), randomTensor('vision_tower.transformer.layers.0.feed_forward.gate_proj.weight', [8, 8], 'BF16', rand),
      randomTensor('multi_modal_projector.linear_1.weight', [DIM, 8], 'BF16', rand),
    ];
    const config = {
      architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', torch_dtype: 'bfloat16',
      text_config: { model_type: 'mistral', hidden_size: DIM, num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, head_dim: HEAD_DIM, intermediate_size: HIDDEN, vocab_size: VOCAB },
      vision_config: { model_type: 'pixtral', hidden_size: 8, head_dim: 4, num_attention_heads: 2 },
    };
    const prepared = await prepare(hfModelFolder(hf, config), finetuneFolder(factors));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(MODULES.map(([name]) => `language_model.model.layers.0.${HF_NAME[name]}.weight`).sort());
    const merged = await mergeIntoFolder(prepared, backend);
    const f = decoded(factors);
    const delta = product(f.get('layers.0.attention.wq.lora_B.weight')!, f.get('layers.0.attention.wq.lora_A.weight')!);
    const exact = decoded(consolidated).get('layers.0.attention.wq.weight')!.values.map((v, i) => v + 2 * delta[i]);
    const key = 'language_model.model.layers.0.self_attn.q_proj.weight';
    expectValues(key, merged.tensors.get(key)!, permuteForRope(exact, HEADS * HEAD_DIM, DIM, HEAD_DIM));
  });

  it('refused, naming why: a base whose conversion from Mistral\'s format is not known here, a config.json without the head size, a base in neither naming', async () => {
    const factors = loraTensors([['layers.0.attention.wq', HEADS * HEAD_DIM, DIM]]);
    const hf = convertedTensors(consolidatedTensors(), 'model.', 'lm_head.weight', HEAD_DIM);
    const problems = async (base: Files) => {
      const prepared = await prepare(base, finetuneFolder(factors));
      await prepared.close();
      return prepared.plan.problems.map((p) => p.message);
    };
    expect(await problems(hfModelFolder(hf, hfConfig({ architectures: ['LlamaForCausalLM'], model_type: 'llama' })))).toEqual([
      'adapter1: module "layers.0.attention.wq": names a module in Mistral\'s own format, and the base is in transformers\' names (config.json architectures LlamaForCausalLM), whose conversion from Mistral\'s format is not known here; it is known for MistralForCausalLM, MixtralForCausalLM, Mistral3ForConditionalGeneration, Ministral3ForCausalLM, LlavaForConditionalGeneration (a Llava whose text_config is a mistral one): merge into the consolidated.safetensors the adapter was trained on',
    ]);
    expect(await problems(hfModelFolder(hf, { architectures: ['MistralForCausalLM'], model_type: 'mistral' }))).toEqual([
      'adapter1: module "layers.0.attention.wq": names a module in Mistral\'s own format, which lands on model.layers.0.self_attn.q_proj.weight with its rows permuted within each head as transformers\' conversion permutes wq and wk, and the base\'s config.json gives no head size (head_dim, or hidden_size and num_attention_heads): not supported',
    ]);
    expect(await problems(hfModelFolder([randomTensor('blocks.0.attn.qkv.weight', [8, 8], 'BF16', rand)], {}))).toEqual([
      'adapter1: module "layers.0.attention.wq": names a module in Mistral\'s own format (mistral-finetune\'s names: layers.N.attention.wq, feed_forward.w1), which the base holds neither by that name nor by transformers\' (layers.0.self_attn.q_proj); merge into the checkpoint the adapter was trained on (consolidated.safetensors) or a transformers checkpoint converted from it',
    ]);
  });
});

describe("on a llama.cpp GGUF of a Mistral model (convert_hf_to_gguf: arch llama, wq's and wk's rows back in Mistral's order)", () => {
  // A BF16 llama GGUF of Mistral 7B's layout (GQA): attn_q and attn_k hold the rows convert_hf_to_gguf puts back
  // (LlamaModel's undo_permute of transformers' permute_for_rope), which are Mistral's own; every other name one to one.
  const sizes = { layers: 1, hidden: 32, heads: 4, kvHeads: 2, ffn: 48, vocab: 16 };
  const kv = (sizes.hidden / sizes.heads) * sizes.kvHeads;
  const GGUF: [mistral: string, gguf: string, out: number, inF: number][] = [
    ['attention.wq', 'attn_q', 32, 32], ['attention.wk', 'attn_k', kv, 32], ['attention.wv', 'attn_v', kv, 32], ['attention.wo', 'attn_output', 32, 32],
    ['feed_forward.w1', 'ffn_gate', 48, 32], ['feed_forward.w2', 'ffn_down', 32, 48], ['feed_forward.w3', 'ffn_up', 48, 32],
  ];

  /** convert_hf_to_gguf's LlamaModel.permute: reshape(heads, 2, rows / heads / 2, cols).swapaxes(1, 2), on transformers' rows. */
  function llamaCppPermute(values: ArrayLike<number>, rows: number, cols: number, heads: number): Float64Array {
    const half = rows / heads / 2;
    const out = new Float64Array(rows * cols);
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < 2; j++) {
        for (let i = 0; i < half; i++) {
          // The input's [h][j][i] is the output's [h][i][j].
          for (let c = 0; c < cols; c++) out[(h * 2 * half + i * 2 + j) * cols + c] = values[(h * 2 * half + j * half + i) * cols + c];
        }
      }
    }
    return out;
  }

  it('every module one to one on its llama.cpp tensor, W + scaling·(B @ A) rounded once to BF16; a Mixtral expert refused', async () => {
    // Why one to one: the two converters' permutations undo each other, so a GGUF's attn_q and attn_k hold
    // Mistral's own rows of wq and wk (here the GGUF's tensors stand for W, whatever model they came from).
    const w = Float64Array.from({ length: 32 * 32 }, () => rand());
    const d = sizes.hidden / sizes.heads;
    expect(llamaCppPermute(permuteForRope(w, 32, 32, d), 32, 32, sizes.heads)).toEqual(w);
    expect(llamaCppPermute(permuteForRope(w.subarray(0, kv * 32), kv, 32, d), kv, 32, sizes.kvHeads)).toEqual(w.subarray(0, kv * 32));
    const gguf = bf16LlamaGguf(sizes, () => rand() * 2 - 1);
    const factors = loraTensors(GGUF.map(([name, , out, inF]) => [`layers.0.${name}`, out, inF]));
    const prepared = await prepare({ 'mistral-7b-bf16.gguf': gguf.bytes }, finetuneFolder(factors));
    expect(prepared.plan.problems).toEqual([]);
    const output = createBlobOutputTarget();
    try {
      await mergeModel({ prepared, output, backend });
    } finally {
      await prepared.close();
    }
    const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    const f = decoded(factors);
    for (const [name, key, out_, inF] of GGUF) {
      const t = out.tensors.find((x) => x.name === `blk.0.${key}.weight`)!;
      const delta = product(f.get(`layers.0.${name}.lora_B.weight`)!, f.get(`layers.0.${name}.lora_A.weight`)!);
      const got: DecodedTensor = { dtype: 'BF16', shape: [out_, inF], values: tensorValues('BF16', t.data), bytes: t.data };
      expectValues(key, got, gguf.values.get(`blk.0.${key}.weight`)!.map((v, i) => v + 2 * delta[i]));
    }
    const experts = await prepare({ 'mistral-7b-bf16.gguf': gguf.bytes }, finetuneFolder([...factors, ...loraTensors([['layers.0.feed_forward.experts.0.w1', 48, 32]])]));
    await experts.close();
    expect(experts.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "layers.0.feed_forward.experts.0.w1": names one expert of a mixture of experts in Mistral\'s own format, which llama.cpp stacks with the others (ffn_gate_exps, ffn_down_exps, ffn_up_exps): not supported on a GGUF; merge into consolidated.safetensors (or a transformers checkpoint converted from it) and convert that',
    ]);
  });
});

describe('names Mistral\'s format shares with diffusion models', () => {
  it("a bare Z-Image LoRA of feed_forward.w1 (no attention.wq: not mistral-finetune's) on a ComfyUI bundle with a Qwen3 text encoder still lands on the diffusion model by its name", async () => {
    const base = hfModelFolder([
      randomTensor('model.diffusion_model.layers.0.attention.qkv.weight', [3 * DIM, DIM], 'BF16', rand), randomTensor('model.diffusion_model.layers.0.feed_forward.w1.weight', [HIDDEN, DIM], 'BF16', rand),
      randomTensor('text_encoders.qwen3_4b.transformer.model.layers.0.self_attn.q_proj.weight', [DIM, DIM], 'BF16', rand),
      randomTensor('text_encoders.qwen3_4b.transformer.model.layers.0.mlp.gate_proj.weight', [HIDDEN, DIM], 'BF16', rand),
    ], {});
    delete base['config.json'];
    const prepared = await prepare(base, { 'z.safetensors': buildSafetensors(loraTensors([['layers.0.feed_forward.w1', HIDDEN, DIM]])) });
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.adapters.map((a) => a.format)).not.toEqual(['mistral']);
    expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout])).toEqual([['model.diffusion_model.layers.0.feed_forward.w1.weight', 'dotted-path']]);
  });
});

describe('lora.safetensors given as a file path, not its folder: the params.json beside it is read as for the folder', () => {
  /** The run's folder on disk (lora.safetensors, params.json at lora.scaling 1.5) and a Mistral consolidated base. */
  function onDisk(withParams: boolean) {
    const baseTensors = consolidatedTensors();
    const factors = loraTensors();
    const baseDir = temp.make({ 'consolidated.safetensors': buildSafetensors(baseTensors), 'params.json': JSON.stringify(MODEL_PARAMS), 'tekken.json': '{}' });
    const run = finetuneFolder(factors, { enable: true, rank: RANK, dropout: 0, scaling: 1.5 });
    if (!withParams) delete run['params.json'];
    const runDir = temp.make(run);
    return { baseTensors, factors, baseDir, runDir, file: join(runDir, 'lora.safetensors') };
  }
  /** consolidated.safetensors merged at `scaling`: W + scaling·(B @ A), each weight rounded once to BF16. */
  function expectScaling(bytes: Uint8Array, baseTensors: FixtureTensor[], factors: FixtureTensor[], scaling: number) {
    const merged = decodeSafetensors(bytes).tensors;
    const f = decoded(factors);
    const w = decoded(baseTensors);
    for (const [name] of MODULES) {
      const delta = product(f.get(`layers.0.${name}.lora_B.weight`)!, f.get(`layers.0.${name}.lora_A.weight`)!);
      expectValues(name, merged.get(`layers.0.${name}.weight`)!, w.get(`layers.0.${name}.weight`)!.values.map((v, i) => v + scaling * delta[i]));
    }
  }

  it('the command line: merged at its lora.scaling 1.5, the warning naming that params.json', async () => {
    const { baseTensors, factors, baseDir, runDir, file } = onDisk(true);
    const out = join(temp.make(), 'merged');
    const run = await runCli(mergeArgs(baseDir, file, out));
    expect([run.code, errorLines(run.stderr)], run.stderr).toEqual([0, []]);
    expect(run.stderr).toContain(`merged at lora.scaling 1.5 of ${join(runDir, 'params.json')}, as mistral-finetune trained it`);
    const bytes = readFileSync(join(out, 'consolidated.safetensors'));
    expectScaling(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), baseTensors, factors, 1.5);
  });

  it('the library (merge() from loramerge/node with a path): merged at its lora.scaling 1.5, the warning naming that params.json', async () => {
    const { baseTensors, factors, baseDir, runDir, file } = onDisk(true);
    const out = join(temp.make(), 'merged');
    const outcome = await merge({ base: baseDir, adapters: [file], out, backend: 'cpu' });
    expect(outcome.plan.warnings.filter((w) => w.includes('lora.scaling'))).toEqual([
      `${file}: merged at lora.scaling 1.5 of ${join(runDir, 'params.json')}, as mistral-finetune trained it; mistral-chat's --lora_path applies 2 (load_lora's default) whatever the run set, so it runs this LoRA at another strength than the merged model has`,
    ]);
    const bytes = readFileSync(join(out, 'consolidated.safetensors'));
    expectScaling(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), baseTensors, factors, 1.5);
  });

  it('with no params.json beside it: scaling 2.0, load_lora\'s default, with the warning saying so (the library)', async () => {
    const { baseTensors, factors, baseDir, file } = onDisk(false);
    const out = join(temp.make(), 'merged');
    const outcome = await merge({ base: baseDir, adapters: [file], out, backend: 'cpu' });
    expect(outcome.plan.warnings.filter((w) => w.includes('scaling'))).toEqual([
      `${file}: no params.json with lora.scaling beside ${file}: merged at scaling 2, mistral-finetune's default and the one mistral-inference's load_lora applies; if the run set another lora.scaling, give the folder mistral-finetune wrote, with its params.json`,
    ]);
    const bytes = readFileSync(join(out, 'consolidated.safetensors'));
    expectScaling(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), baseTensors, factors, 2);
  });
});

describe('a params.json beside a lone file of another trainer: not that adapter\'s, so neither read nor watched', () => {
  // A kohya-style LoRA (lora_down, lora_up, alpha) in transformers' names on an LLM's q_proj, and beside it the
  // params.json of a mistral-finetune run (lora.scaling 1.5) that has nothing to do with it.
  const Q = 'model.layers.0.self_attn.q_proj';
  const weight = randomTensor(`${Q}.weight`, [8, 8], 'F32', rand);
  const down = randomTensor(`${Q}.lora_down.weight`, [2, 8], 'F32', rand, 0.5);
  const up = randomTensor(`${Q}.lora_up.weight`, [8, 2], 'F32', rand, 0.5);
  const alpha: FixtureTensor = { name: `${Q}.alpha`, dtype: 'F32', shape: [], data: [3] };
  const params = JSON.stringify({ ...MODEL_PARAMS, lora: { enable: true, rank: RANK, dropout: 0, scaling: 1.5 } });

  it('kohya names: merged at alpha/r as without it, and rewriting it mid-merge changes nothing (the library)', async () => {
    const baseDir = temp.make({ 'model.safetensors': buildSafetensors([weight]) });
    const merged: Uint8Array[] = [];
    for (const beside of [true, false]) {
      const dir = temp.make({ 'lora.safetensors': buildSafetensors([down, up, alpha]), ...(beside ? { 'params.json': params } : {}) });
      const out = join(temp.make(), 'merged.safetensors');
      let rewritten = false;
      const outcome = await merge({
        base: join(baseDir, 'model.safetensors'), adapters: [join(dir, 'lora.safetensors')], out, backend: 'cpu',
        // Another tool rewriting its own file while the merge runs: no input of this merge.
        onProgress: () => {
          if (beside && !rewritten) writeFileSync(join(dir, 'params.json'), `${params} `);
          rewritten = true;
        },
      });
      expect(outcome.plan.warnings).toEqual([]);
      const bytes = readFileSync(out);
      merged.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
    const got = decodeSafetensors(merged[0]).tensors.get(`${Q}.weight`)!;
    const delta = product(decoded([up]).get(up.name)!, decoded([down]).get(down.name)!);
    expectValues(Q, got, decoded([weight]).get(weight.name)!.values.map((v, i) => v + (3 / 2) * delta[i]));
    expect(merged[0]).toEqual(merged[1]);
  });

  it('a PEFT save given without its adapter_config.json: the same one-line refusal as without params.json (the command line)', async () => {
    const baseDir = temp.make({ 'model.safetensors': buildSafetensors([weight]) });
    const peft = buildSafetensors([{ ...down, name: `base_model.model.${Q}.lora_A.weight` }, { ...up, name: `base_model.model.${Q}.lora_B.weight` }]);
    const lines: string[][] = [];
    for (const beside of [true, false]) {
      const dir = temp.make({ 'adapter_model.safetensors': peft, ...(beside ? { 'params.json': params } : {}) });
      const run = await runCli(mergeArgs(join(baseDir, 'model.safetensors'), join(dir, 'adapter_model.safetensors'), join(temp.make(), 'merged.safetensors')));
      expect(run.code, run.stderr).not.toBe(0);
      lines.push(errorLines(run.stderr).map((l) => l.replace(dir, 'DIR')));
    }
    expect(lines[0]).toEqual(lines[1]);
    expect(lines[0]).toHaveLength(1);
    expect(lines[0][0]).toContain('looks like a PEFT adapter but adapter_config.json is missing');
  });
});

describe('the command line', () => {
  it('merges mistral-finetune\'s checkpoint folder into a Mistral consolidated folder: consolidated.safetensors merged, params.json copied', async () => {
    const baseTensors = consolidatedTensors();
    const factors = loraTensors();
    const baseDir = temp.make({ 'consolidated.safetensors': buildSafetensors(baseTensors), 'params.json': JSON.stringify(MODEL_PARAMS), 'tekken.json': '{}' });
    const runDir = temp.make({ 'checkpoints/checkpoint_000300/consolidated/lora.safetensors': buildSafetensors(factors), 'checkpoints/checkpoint_000300/consolidated/params.json': JSON.stringify({ ...MODEL_PARAMS, lora: { enable: true, rank: RANK, dropout: 0, scaling: 2 } }) });
    const out = join(temp.make(), 'merged');
    const run = await runCli(mergeArgs(baseDir, join(runDir, 'checkpoints/checkpoint_000300/consolidated'), out));
    expect(errorLines(run.stderr), run.stderr).toEqual([]);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(join(out, 'params.json'))).toBe(true);
    const bytes = readFileSync(join(out, 'consolidated.safetensors'));
    const merged = decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).tensors;
    const f = decoded(factors);
    const w = decoded(baseTensors);
    for (const [name] of MODULES) {
      const delta = product(f.get(`layers.0.${name}.lora_B.weight`)!, f.get(`layers.0.${name}.lora_A.weight`)!);
      const got: DecodedTensor = merged.get(`layers.0.${name}.weight`)!;
      expectValues(name, got, w.get(`layers.0.${name}.weight`)!.values.map((v, i) => v + 2 * delta[i]));
    }
    expect(merged.get('output.weight')!.values).toEqual(w.get('output.weight')!.values.map((v) => roundForDType(v, 'BF16')));
  });
});
