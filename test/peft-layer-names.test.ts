/**
 * PEFT folders whose fit depends on what the base model's config.json says about its layers:
 * - target_modules "all-linear" takes every nn.Linear and Conv1D but the output head that
 *   get_output_embeddings() returns, under the model's own name (GPT-NeoX's embed_out, Llama's
 *   lm_head); SEQ_CLS adds the classifier heads to modules_to_save. Where the base does not name
 *   its head, a module outside the numbered layers is refused rather than guessed at.
 * - GPT-2's c_attn / c_proj / c_fc are transformers' Conv1D (weight stored (in, out)); a square one
 *   looks like a Linear, so the model type and the name tell it: Linear-only methods are refused on
 *   it, LoRA merges ΔWᵀ onto it (PEFT turns fan_in_fan_out on for a Conv1D).
 * - Embeddings (embed_tokens, wte …) look like a Linear's matrix: a method that cannot wrap
 *   nn.Embedding, or LoRA's lora_A/B (PEFT saves an embedding's as lora_embedding_A/B), is refused
 *   on one; lora_embedding_A/B still merge.
 * - A single file in diffusers' PEFT form (lora_A/B without a method config) on such a layer is
 *   refused: PEFT saves no lora_A/B for an embedding, and the file does not say how ΔW lies on a Conv1D.
 * Merges are checked against float64 truth written here; refusals name the module and the rule.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';
import { mm } from './helpers/dense-f64.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(2024);
const vals = gridValues(rand);
const t = fixtureTensor;
const r = 2, alpha = 4;

/** The fields PEFT 0.17 writes to a LoRA adapter_config.json. */
const loraConfig = (fields: object) => ({
  peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', revision: null, inference_mode: true,
  r, lora_alpha: alpha, lora_dropout: 0.05, fan_in_fan_out: false, bias: 'none', use_rslora: false, use_dora: false,
  modules_to_save: null, init_lora_weights: true, layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {},
  exclude_modules: null, target_modules: 'all-linear', ...fields,
});
const roadConfig = (fields: object) => ({
  peft_type: 'ROAD', task_type: 'CAUSAL_LM', base_model_name_or_path: 'openai-community/gpt2', peft_version: '0.18.0', revision: null, inference_mode: true,
  variant: 'road_1', group_size: 64, init_weights: true, modules_to_save: null, exclude_modules: null, layers_to_transform: null, layers_pattern: null, ...fields,
});

// config.json as the models' repositories hold it (the fields read here).
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, vocab_size: 96, tie_word_embeddings: false };
const LLAMA_SEQ_CLS = { ...LLAMA, architectures: ['LlamaForSequenceClassification'], num_labels: 2 };
const PYTHIA = { architectures: ['GPTNeoXForCausalLM'], model_type: 'gpt_neox', hidden_size: 64, vocab_size: 96, tie_word_embeddings: false };
const GPT2 = { architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 768, n_head: 12, n_layer: 12, vocab_size: 50257 };
const BIGCODE = { architectures: ['GPTBigCodeForCausalLM'], model_type: 'gpt_bigcode', n_embd: 64, vocab_size: 96, multi_query: true };

interface Lora { path: string; w: Float64Array; a: Float64Array; b: Float64Array; out: number; in: number }
/** A LoRA module on a Linear weight (out, in), or with `stored: 'in-out'` on a Conv1D's (in, out). */
const lora = (path: string, out: number, inF: number, stored: 'out-in' | 'in-out' = 'out-in') => {
  const l: Lora = { path, w: vals(out * inF, 'F32'), a: vals(r * inF, 'F32'), b: vals(out * r, 'F32'), out, in: inF };
  const baseShape = stored === 'out-in' ? [out, inF] : [inF, out];
  return { l, base: t(`${path}.weight`, 'F32', baseShape, l.w), factors: [t(`base_model.model.${path}.lora_A.weight`, 'F32', [r, inF], l.a), t(`base_model.model.${path}.lora_B.weight`, 'F32', [out, r], l.b)] };
};
/** W + α/r · B·A, or for a weight stored (in, out), W[i, o] + α/r · (B·A)[o, i], in float64. */
const loraTruth = (l: Lora, stored: 'out-in' | 'in-out' = 'out-in') => {
  const ba = mm(l.b, l.a, l.out, r, l.in);
  return l.w.map((x, k) => x + (alpha / r) * (stored === 'out-in' ? ba[k] : ba[(k % l.out) * l.in + Math.floor(k / l.out)]));
};
const zeros = (name: string, shape: number[]) => t(name, 'F32', shape, new Float64Array(shape.reduce((a, b) => a * b, 1)));
const roadTensors = (path: string, out: number): FixtureTensor[] => [
  t(`base_model.model.${path}.road_theta`, 'F32', [out / 2], vals(out / 2, 'F32')),
  t(`base_model.model.${path}.road_alpha`, 'F32', [out / 2], vals(out / 2, 'F32')),
];
const problems = async (base: FixtureTensor[], cfg: object, tensors: FixtureTensor[], model?: object) =>
  (await preparePeftFolder(base, cfg, tensors, model)).plan.problems.map((p) => p.message);

describe('target_modules "all-linear" leaves out the output head the base config names', () => {
  it('GPT-NeoX: embed_out is the head and is refused; its layers merge', async () => {
    const qkv = lora('gpt_neox.layers.0.attention.query_key_value', 192, 64);
    const head = lora('embed_out', 96, 64);
    await expect(preparePeftFolder([qkv.base, head.base], loraConfig({ base_model_name_or_path: 'EleutherAI/pythia-70m' }), [...qkv.factors, ...head.factors], PYTHIA))
      .rejects.toThrow(/^adapter\/adapter_config\.json: module "embed_out" is in adapter\/adapter_model\.safetensors but is the output head, which target_modules "all-linear" leaves out; PEFT would leave its tensors unused/);
    const dense = lora('gpt_neox.layers.0.attention.dense', 64, 64);
    const { tensors } = await mergePeftFolder(backends.cpu!, [qkv.base, dense.base, head.base], loraConfig({}), [...qkv.factors, ...dense.factors], 1, PYTHIA);
    for (const m of [qkv, dense]) expectMerged(tensors.get(`${m.l.path}.weight`)!.values, loraTruth(m.l), 'F32', m.l.path);
  });

  it('Llama: lm_head is the head; a GPT-NeoX-named module outside the layers is not refused as one', async () => {
    const q = lora('model.layers.0.self_attn.q_proj', 64, 64);
    const head = lora('lm_head', 96, 64);
    await expect(preparePeftFolder([q.base, head.base], loraConfig({}), [...q.factors, ...head.factors], LLAMA))
      .rejects.toThrow(/module "lm_head" is in adapter\/adapter_model\.safetensors but is the output head, which target_modules "all-linear" leaves out/);
    // The same file against a GPT-NeoX config: lm_head is not that model's head, so PEFT targets it.
    expect(await problems([q.base, head.base], loraConfig({}), [...q.factors, ...head.factors], PYTHIA)).toEqual([]);
  });

  it('SEQ_CLS: score is in modules_to_save (PeftModelForSequenceClassification adds it), the layers merge', async () => {
    const q = lora('model.layers.0.self_attn.q_proj', 64, 64);
    const score = lora('score', 2, 64);
    await expect(preparePeftFolder([q.base, score.base], loraConfig({ task_type: 'SEQ_CLS' }), [...q.factors, ...score.factors], LLAMA_SEQ_CLS))
      .rejects.toThrow(/module "score" is in adapter\/adapter_model\.safetensors but is in modules_to_save \["classifier","score"\] \(task_type SEQ_CLS adds "classifier" and "score"\), which PEFT trains whole and puts no adapter on/);
    const { tensors } = await mergePeftFolder(backends.cpu!, [q.base, score.base], loraConfig({ task_type: 'SEQ_CLS' }), q.factors, 1, LLAMA_SEQ_CLS);
    expectMerged(tensors.get(`${q.l.path}.weight`)!.values, loraTruth(q.l), 'F32', q.l.path);
  });

  it('a base without config.json: a module outside the numbered layers could be the head and is refused (CLI: one line, nothing written)', async () => {
    const q = lora('model.layers.0.self_attn.q_proj', 64, 64);
    const head = lora('lm_head', 96, 64);
    await expectPeftCliRefusal([q.base, head.base], loraConfig({}), [...q.factors, ...head.factors],
      /^error: .*adapter_config\.json: module "lm_head" is in .*adapter_model\.safetensors and target_modules "all-linear" leaves out the model's output head, but the base has no config\.json to name its output head, so whether PEFT put an adapter on "lm_head" cannot be told/);
    await expect(preparePeftFolder([q.base, head.base], loraConfig({}), [...q.factors, ...head.factors])).rejects.toThrow(/module "lm_head" is in .* but the base has no config\.json to name its output head/);
    // The numbered layers' modules are never the head.
    expect(await problems([q.base, head.base], loraConfig({}), q.factors)).toEqual([]);
  });

  it("InternLM2's own model code names its head output; a BERT masked LM's head is not known, so modules outside its layers are refused", async () => {
    const wqkv = lora('model.layers.0.attention.wqkv', 128, 64);
    const output = lora('output', 96, 64);
    const internlm2 = { architectures: ['InternLM2ForCausalLM'], model_type: 'internlm2', auto_map: { AutoModelForCausalLM: 'modeling_internlm2.InternLM2ForCausalLM' }, hidden_size: 64, vocab_size: 96 };
    await expect(preparePeftFolder([wqkv.base, output.base], loraConfig({}), [...wqkv.factors, ...output.factors], internlm2))
      .rejects.toThrow(/module "output" is in adapter\/adapter_model\.safetensors but is the output head, which target_modules "all-linear" leaves out/);
    const bert = { architectures: ['BertForMaskedLM'], model_type: 'bert', hidden_size: 64, vocab_size: 96 };
    const query = lora('bert.encoder.layer.0.attention.self.query', 64, 64);
    const transform = lora('cls.predictions.transform.dense', 64, 64);
    await expect(preparePeftFolder([query.base, transform.base], loraConfig({ task_type: null }), [...query.factors, ...transform.factors], bert))
      .rejects.toThrow(/module "cls\.predictions\.transform\.dense" is in .* but the base's config\.json architectures "BertForMaskedLM" is not a class whose output head this tool knows/);
    expect(await problems([query.base, transform.base], loraConfig({ task_type: null }), query.factors, bert)).toEqual([]);
  });

  it('an embedding under "all-linear" is refused: PEFT takes Linear and Conv1D layers only', async () => {
    const embed = zeros('model.embed_tokens.weight', [96, 64]);
    const factors = [zeros('base_model.model.model.embed_tokens.lora_embedding_A', [r, 96]), zeros('base_model.model.model.embed_tokens.lora_embedding_B', [64, r])];
    expect(await problems([embed], loraConfig({}), factors, LLAMA)).toEqual([
      'adapter: module "model.embed_tokens": LoRA (PEFT) under target_modules "all-linear" wraps only Linear and Conv1D layers; "model.embed_tokens.weight" is an Embedding weight (shape (96, 64), by its name in a llama model), so PEFT cannot have trained this module on it',
    ]);
  });
});

describe('fan_in_fan_out true on an nn.Linear, told by the model type: PEFT turns it off there', () => {
  it('LoRA merges B·A as for any Linear, on a square and a non-square weight', async () => {
    const qProj = lora('model.layers.0.self_attn.q_proj', 64, 64), kProj = lora('model.layers.0.self_attn.k_proj', 16, 64);
    const cfg = loraConfig({ fan_in_fan_out: true, target_modules: ['q_proj', 'k_proj'] });
    const { tensors } = await mergePeftFolder(backends.cpu!, [qProj.base, kProj.base], cfg, [...qProj.factors, ...kProj.factors], 1, LLAMA);
    for (const m of [qProj, kProj]) expectMerged(tensors.get(m.base.name)!.values, loraTruth(m.l), 'F32', m.l.path);
  });

  it('without the base\'s config.json the flag is followed as written: the square weight takes ΔWᵀ', async () => {
    const qProj = lora('model.layers.0.self_attn.q_proj', 64, 64);
    const { tensors } = await mergePeftFolder(backends.cpu!, [qProj.base], loraConfig({ fan_in_fan_out: true, target_modules: ['q_proj'] }), qProj.factors, 1);
    expectMerged(tensors.get(qProj.base.name)!.values, loraTruth(qProj.l, 'in-out'), 'F32', qProj.l.path);
  });
});

describe("GPT-2's Conv1D (c_attn (768, 2304), c_proj (768, 768)) told by the model type", () => {
  // openai-community/gpt2 stores its weights without the `transformer.` prefix PEFT's paths have.
  it('LoRA with fan_in_fan_out merges ΔWᵀ onto the (in, out) weights, the square one included', async () => {
    const cAttn = lora('transformer.h.0.attn.c_attn', 2304, 768, 'in-out');
    const cProj = lora('transformer.h.0.attn.c_proj', 768, 768, 'in-out');
    const base = [cAttn, cProj].map((m) => ({ ...m.base, name: m.base.name.replace('transformer.', '') }));
    const cfg = loraConfig({ base_model_name_or_path: 'openai-community/gpt2', fan_in_fan_out: true, target_modules: ['c_attn', 'c_proj'] });
    const { tensors } = await mergePeftFolder(backends.cpu!, base, cfg, [...cAttn.factors, ...cProj.factors], 1, GPT2);
    for (const m of [cAttn, cProj]) expectMerged(tensors.get(m.base.name.replace('transformer.', ''))!.values, loraTruth(m.l, 'in-out'), 'F32', m.l.path);
  });

  it('LoRA with fan_in_fan_out false merges transposed all the same: PEFT turns the flag on for a Conv1D', async () => {
    const cProj = lora('transformer.h.0.attn.c_proj', 768, 768, 'in-out');
    const { tensors } = await mergePeftFolder(backends.cpu!, [cProj.base], loraConfig({ target_modules: ['c_proj'] }), cProj.factors, 1, GPT2);
    expectMerged(tensors.get(cProj.base.name)!.values, loraTruth(cProj.l, 'in-out'), 'F32', cProj.l.path);
  });

  it('(IA)³ with fan_in_fan_out false on the square c_proj scales its outputs, the (in, out) columns: PEFT turns the flag on for a Conv1D', async () => {
    const ia3 = { peft_type: 'IA3', task_type: 'CAUSAL_LM', target_modules: ['c_proj'], feedforward_modules: [], fan_in_fan_out: false, init_ia3_weights: true };
    const w = vals(768 * 768, 'F32'), l = vals(768, 'F32');
    const { tensors } = await mergePeftFolder(backends.cpu!, [t('h.0.attn.c_proj.weight', 'F32', [768, 768], w)], ia3, [t('base_model.model.transformer.h.0.attn.c_proj.ia3_l', 'F32', [768, 1], l)], 1, GPT2);
    expectMerged(tensors.get('h.0.attn.c_proj.weight')!.values, w.map((x, k) => x * l[k % 768]), 'F32', 'c_proj');
  });

  it('VeRA with fan_in_fan_out false on the square c_proj merges ΔWᵀ: PEFT turns the flag on for a Conv1D (vera/model.py _create_new_module)', async () => {
    const n = 768, rank = 4;
    const w = vals(n * n, 'F32'), va = vals(rank * n, 'F32'), vb = vals(n * rank, 'F32'), lb = vals(n, 'F32'), ld = vals(rank, 'F32');
    const vera = { peft_type: 'VERA', task_type: 'CAUSAL_LM', r: rank, target_modules: ['c_proj'], fan_in_fan_out: false, save_projection: true, projection_prng_key: 0 };
    const p = 'base_model.model.transformer.h.0.attn.c_proj';
    const { tensors } = await mergePeftFolder(backends.cpu!, [t('h.0.attn.c_proj.weight', 'F32', [n, n], w)], vera, [
      t(`${p}.vera_lambda_b`, 'F32', [n], lb), t(`${p}.vera_lambda_d`, 'F32', [rank], ld), t('base_model.vera_A', 'F32', [rank, n], va), t('base_model.vera_B', 'F32', [n, rank], vb),
    ], 1, GPT2);
    // ΔW[o, i] = λ_b[o]·Σ_k B[o, k]·λ_d[k]·A[k, i], added at the stored (i, o).
    const delta = mm(vb.map((x, k) => x * lb[Math.floor(k / rank)] * ld[k % rank]), va, n, rank, n);
    expectMerged(tensors.get('h.0.attn.c_proj.weight')!.values, w.map((x, k) => x + delta[(k % n) * n + Math.floor(k / n)]), 'F32', 'c_proj');
  });

  it('RoAd (nn.Linear only) on c_attn and on the square c_proj is refused by name', async () => {
    const base = [zeros('h.0.attn.c_attn.weight', [768, 2304]), zeros('h.0.attn.c_proj.weight', [768, 768])];
    const road = roadConfig({ target_modules: ['c_attn', 'c_proj'] });
    expect(await problems(base, road, [...roadTensors('transformer.h.0.attn.c_attn', 2304), ...roadTensors('transformer.h.0.attn.c_proj', 768)], GPT2)).toEqual([
      'adapter: module "transformer.h.0.attn.c_attn": RoAd (PEFT) wraps only Linear layers; "h.0.attn.c_attn.weight" is a Conv1D weight stored (in, out) (shape (768, 2304), by its name in a gpt2 model), so PEFT cannot have trained this module on it',
      'adapter: module "transformer.h.0.attn.c_proj": RoAd (PEFT) wraps only Linear layers; "h.0.attn.c_proj.weight" is a Conv1D weight stored (in, out) (shape (768, 768), by its name in a gpt2 model), so PEFT cannot have trained this module on it',
    ]);
  });

  it('GPT-BigCode names its layers c_attn / c_proj too but builds nn.Linear: RoAd is planned there', async () => {
    const base = [zeros('transformer.h.0.attn.c_proj.weight', [64, 64])];
    expect(await problems(base, roadConfig({ target_modules: ['c_proj'] }), roadTensors('transformer.h.0.attn.c_proj', 64), BIGCODE)).toEqual([]);
  });
});

describe('an embedding told by its name in a model with a config.json', () => {
  const embed = zeros('model.embed_tokens.weight', [128, 64]);
  it('RoAd (nn.Linear only) on embed_tokens is refused', async () => {
    expect(await problems([embed], roadConfig({ target_modules: ['embed_tokens'] }), roadTensors('model.embed_tokens', 128), LLAMA)).toEqual([
      'adapter: module "model.embed_tokens": RoAd (PEFT) wraps only Linear layers; "model.embed_tokens.weight" is an Embedding weight (shape (128, 64), by its name in a llama model), so PEFT cannot have trained this module on it',
    ]);
    // Without a config nothing says it is an embedding: the shape is a Linear's.
    expect(await problems([embed], roadConfig({ target_modules: ['embed_tokens'] }), roadTensors('model.embed_tokens', 128))).toEqual([]);
  });

  it("LoRA's lora_A/B on embed_tokens is refused: PEFT saves an embedding's as lora_embedding_A/B", async () => {
    const factors = [zeros('base_model.model.model.embed_tokens.lora_A.weight', [r, 64]), zeros('base_model.model.model.embed_tokens.lora_B.weight', [128, r])];
    expect(await problems([embed], loraConfig({ target_modules: ['embed_tokens'] }), factors, LLAMA)).toEqual([
      'adapter: module "model.embed_tokens": lora_A/B (PEFT LoRA) wraps only Linear, Conv1D, Conv1d, Conv2d and Conv3d layers; "model.embed_tokens.weight" is an Embedding weight (shape (128, 64), by its name in a llama model), so PEFT cannot have trained this module on it',
    ]);
  });

  it('lora_embedding_A (r, vocab) and lora_embedding_B (dim, r) merge: W[v, j] + α/r · (B·A)[j, v]', async () => {
    const vocab = 128, dim = 64;
    const w = vals(vocab * dim, 'F32'), a = vals(r * vocab, 'F32'), b = vals(dim * r, 'F32');
    const factors = [t('base_model.model.model.embed_tokens.lora_embedding_A', 'F32', [r, vocab], a), t('base_model.model.model.embed_tokens.lora_embedding_B', 'F32', [dim, r], b)];
    const { tensors } = await mergePeftFolder(backends.cpu!, [t('model.embed_tokens.weight', 'F32', [vocab, dim], w)], loraConfig({ target_modules: ['embed_tokens'] }), factors, 1, LLAMA);
    const ba = mm(b, a, dim, r, vocab);
    expectMerged(tensors.get('model.embed_tokens.weight')!.values, w.map((x, k) => x + (alpha / r) * ba[(k % dim) * vocab + Math.floor(k / dim)]), 'F32', 'embed_tokens');
  });
});

describe('a single-file LoRA (diffusers\' PEFT form) on a layer the config names', () => {
  const refusals = (base: FixtureTensor[], lora: FixtureTensor[], model: object) => refusalsInMemory({
    backend: backends.cpu!, base: { 'model.safetensors': buildSafetensors(base), 'config.json': JSON.stringify(model) },
    adapters: [{ name: 'lora', files: { 'pytorch_lora_weights.safetensors': buildSafetensors(lora) } }],
  });
  it("on GPT-2's square c_proj: refused, not merged as a Linear", async () => {
    const factors = [zeros('transformer.h.0.attn.c_proj.lora_A.weight', [r, 768]), zeros('transformer.h.0.attn.c_proj.lora_B.weight', [768, r])];
    expect(await refusals([zeros('transformer.h.0.attn.c_proj.weight', [768, 768])], factors, GPT2)).toEqual([
      expect.stringMatching(/^lora: module "transformer\.h\.0\.attn\.c_proj": "transformer\.h\.0\.attn\.c_proj\.weight" is a Conv1D weight stored \(in, out\) \(shape \(768, 768\), by its name in a gpt2 model\): a diffusers single-file LoRA module on it is not supported/),
    ]);
  });
  it('on embed_tokens: refused; the same file on q_proj is planned', async () => {
    const embed = zeros('model.embed_tokens.weight', [128, 64]);
    const factors = [zeros('model.embed_tokens.lora_A.weight', [r, 64]), zeros('model.embed_tokens.lora_B.weight', [128, r])];
    expect(await refusals([embed], factors, LLAMA)).toEqual([
      expect.stringMatching(/^lora: module "model\.embed_tokens": "model\.embed_tokens\.weight" is an Embedding weight \(shape \(128, 64\), by its name in a llama model\): a diffusers single-file LoRA module on it is not supported \(PEFT saves an embedding's LoRA as lora_embedding_A\/B\)$/),
    ]);
    // The same file and the same layer of a q_proj name merge.
    const q = [zeros('model.layers.0.self_attn.q_proj.lora_A.weight', [r, 64]), zeros('model.layers.0.self_attn.q_proj.lora_B.weight', [64, r])];
    expect(await refusals([zeros('model.layers.0.self_attn.q_proj.weight', [64, 64])], q, LLAMA)).toEqual([]);
  });
});

describe('ensure_weight_tying takes lm_head beside a targeted embed_tokens only where the base ties them', () => {
  // PEFT ties the head's LoRA to the embedding's (lora_A = embedding Bᵀ, lora_B = embedding Aᵀ) and saves both.
  const embA = vals(r * 96, 'F32'), embB = vals(64 * r, 'F32');
  const transposed = (x: Float64Array, rows: number, cols: number) => x.map((_, k) => x[(k % rows) * cols + Math.floor(k / rows)]);
  const tensors = [
    t('base_model.model.model.embed_tokens.lora_embedding_A', 'F32', [r, 96], embA), t('base_model.model.model.embed_tokens.lora_embedding_B', 'F32', [64, r], embB),
    t('base_model.model.lm_head.lora_A.weight', 'F32', [r, 64], transposed(embB, r, 64)), t('base_model.model.lm_head.lora_B.weight', 'F32', [96, r], transposed(embA, 96, r)),
  ];
  const cfg = loraConfig({ ensure_weight_tying: true, target_modules: ['embed_tokens'] });
  const embedding = () => t('model.embed_tokens.weight', 'F32', [96, 64], vals(96 * 64, 'F32'));
  const head = () => t('lm_head.weight', 'F32', [96, 64], vals(96 * 64, 'F32'));
  const untargeted = 'not targeted by target_modules ["embed_tokens"] otherwise';

  it('refuses lm_head against a base whose config.json unties them: PEFT finds no tied layer and leaves its tensors unused', async () => {
    await expect(preparePeftFolder([embedding(), head()], cfg, tensors, LLAMA)).rejects.toThrow(
      `adapter/adapter_config.json: module "lm_head" is in adapter/adapter_model.safetensors only as a layer tied to the embedding under ensure_weight_tying (${untargeted}), but the base's config.json has tie_word_embeddings false, so PEFT finds no tied layer and puts no adapter on it (it would leave these tensors unused)`);
  });

  it('refuses it where the base does not say: no tie_word_embeddings and a model type of unknown default, or no config.json', async () => {
    const { tie_word_embeddings: _, ...silent } = LLAMA;
    await expect(preparePeftFolder([embedding()], cfg, tensors, { ...silent, architectures: ['InternLM3ForCausalLM'], model_type: 'internlm3' })).rejects.toThrow(/module "lm_head" .* but the base's config\.json has no tie_word_embeddings and its model_type has no known default \(the model class's\)/);
    // LlamaConfig's own default is false.
    await expect(preparePeftFolder([embedding()], cfg, tensors, silent)).rejects.toThrow(/module "lm_head" .* but the base's config\.json has no tie_word_embeddings and model_type "llama" defaults to false, so PEFT finds no tied layer/);
    await expect(preparePeftFolder([embedding()], cfg, tensors)).rejects.toThrow(/module "lm_head" .* but the base has no config\.json to say whether it ties them/);
  });

  it('refuses it on a tied base when target_modules names neither layer, or modules_to_save names one: PEFT then ties no adapter layer', async () => {
    const q = lora('model.layers.0.self_attn.q_proj', 64, 64);
    const tied = { ...LLAMA, tie_word_embeddings: true };
    const lmHead = tensors.slice(2);
    await expect(preparePeftFolder([embedding(), q.base], loraConfig({ ensure_weight_tying: true, target_modules: ['q_proj'] }), [...q.factors, ...lmHead], tied))
      .rejects.toThrow(/module "lm_head" .* but PEFT ties adapter layers only when target_modules names embed_tokens or lm_head and modules_to_save names neither, which this config does not$/);
    await expect(preparePeftFolder([embedding()], loraConfig({ ensure_weight_tying: true, target_modules: ['embed_tokens'], modules_to_save: ['embed_tokens'] }), lmHead, tied))
      .rejects.toThrow(/module "lm_head" .* which this config does not$/);
    // A pattern PEFT matches against the names (re.fullmatch) counts as naming it.
    await expect(preparePeftFolder([embedding()], loraConfig({ ensure_weight_tying: true, target_modules: '.*embed_tokens' }), tensors, tied)).resolves.toBeDefined();
  });

  it('takes it against a base that ties them (no lm_head stored): the shared weight takes the embedding\'s update once', async () => {
    const w = vals(96 * 64, 'F32');
    const { tensors: merged } = await mergePeftFolder(backends.cpu!, [t('model.embed_tokens.weight', 'F32', [96, 64], w)], cfg, tensors, 1, { ...LLAMA, tie_word_embeddings: true });
    // Embedding ΔW = (B·A)ᵀ · α/r onto the (vocab, dim) weight.
    const ba = mm(embB, embA, 64, r, 96);
    expectMerged(merged.get('model.embed_tokens.weight')!.values, w.map((x, k) => x + (alpha / r) * ba[(k % 64) * 96 + Math.floor(k / 64)]), 'F32', 'embed_tokens');
    expect([...merged.keys()]).toEqual(['model.embed_tokens.weight']);
  });
});
