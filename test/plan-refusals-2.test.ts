/**
 * More refusals of the merge plan that no other test fed a wrong input to (a mutation sweep of
 * src/plan found each check could be deleted with every test still passing). Each input is what
 * the tool it stands for saves — PEFT's key names and adapter_config.json, a transformers folder's
 * config.json — broken in one way, and the plan must name what is wrong rather than merge it.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, fluxDiffusersTensors } from './helpers/diffusion-fixtures.js';
import { hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { planProblems, planRefusal, qProjSingleFile, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(20261206);

const problems = (base: Files, adapter: Files) => planProblems(base, { adapter });
const refusal = (base: Files, adapter: Files) => planRefusal(base, { adapter });

/** A one-layer Llama folder (hidden 8, vocabulary 16), F32, with config.json as transformers writes it. */
function llama(extra: Files = {}): Files {
  const t = (name: string, shape: number[]) => randomTensor(name, shape, 'F32', rand);
  const p = 'model.layers.0.';
  return hfModelFolder([
    t('model.embed_tokens.weight', [16, 8]), t(`${p}self_attn.q_proj.weight`, [8, 8]), t(`${p}self_attn.k_proj.weight`, [4, 8]),
    t(`${p}self_attn.v_proj.weight`, [4, 8]), t(`${p}self_attn.o_proj.weight`, [8, 8]), t(`${p}input_layernorm.weight`, [8]),
    t('model.norm.weight', [8]), t('lm_head.weight', [16, 8]),
  ], {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
    num_key_value_heads: 1, vocab_size: 16, tie_word_embeddings: false, torch_dtype: 'float32',
  }, { extra });
}

/** PEFT's LoRA (r 2, alpha 4) on the Llama's q_proj, with `extra` files beside adapter_config.json. */
function loraOnQ(extra: Files = {}): Files {
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, [
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
    randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
  ], extra);
}

/**
 * Flux (BFL names) as Comfy-Org's scaled fp8 files store it: each 2-D weight in `dtype` codes of
 * W / s, its `scale_weight` s (F32, shape ()) beside it, the zero-size `scaled_fp8` marker.
 */
function scaledFp8Flux(dtype: 'F8_E4M3' | 'F8_E5M2'): Files {
  const tensors = fluxBflTensors(rand, 'F32').map((t): FixtureTensor => (t.shape.length < 2
    ? { ...t, dtype: 'BF16', data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(x, 'BF16')) }
    : { ...t, dtype, data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(x * 60, dtype)) }));
  const scales = tensors.filter((t) => t.shape.length >= 2).map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 60] }));
  return { 'flux1-dev-fp8.safetensors': buildSafetensors([...tensors, ...scales, { name: 'scaled_fp8', dtype, shape: [0], data: [] }]) };
}

/**
 * A Llama text encoder as Comfy-Org's scaled fp8 files store one: its Linear weights (q_proj,
 * lm_head) as `dtype` codes with a `scale_weight` beside each (ComfyUI's scaled fp8 ops scale
 * Linear layers only), the embedding and norms BF16, and the zero-size `scaled_fp8` marker.
 */
function scaledFp8Llama(dtype: 'F8_E4M3' | 'F8_E5M2'): Files {
  const linear = [randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], dtype, rand), randomTensor('lm_head.weight', [16, 8], dtype, rand)];
  const scales = linear.map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 60] }));
  const bf16 = (name: string, shape: number[]) => randomTensor(name, shape, 'BF16', rand);
  return {
    'llama-fp8-scaled.safetensors': buildSafetensors([
      bf16('model.embed_tokens.weight', [16, 8]), ...linear, ...scales, bf16('model.layers.0.input_layernorm.weight', [8]), bf16('model.norm.weight', [8]),
      { name: 'scaled_fp8', dtype, shape: [0], data: [] },
    ]),
  };
}

/** LyCORIS (IA)³ on Flux's double_blocks.1.txt_mlp.2 (out h): one scale per output (on_input 0), kohya's key names. */
function ia3OnTxtMlp2(): Files {
  const m = 'lora_unet_double_blocks_1_txt_mlp_2';
  return {
    'ia3.safetensors': buildSafetensors([
      { name: `${m}.weight`, dtype: 'F32', shape: [FLUX.h], data: Array.from({ length: FLUX.h }, (_, i) => 0.01 * (i + 1)) },
      { name: `${m}.on_input`, dtype: 'F32', shape: [], data: [0] },
    ]),
  };
}

const P = 'base_model.model';

/** PEFT's LoRA on the Llama's embed_tokens, as PEFT saves an nn.Embedding's: lora_embedding_A (r, vocabulary), lora_embedding_B (dim, r). */
function loraOnEmbedding(extra: FixtureTensor[] = [], config: object = {}): Files {
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['embed_tokens'], ...config }, [
    randomTensor(`${P}.model.embed_tokens.lora_embedding_A`, [2, 16], 'F32', rand), randomTensor(`${P}.model.embed_tokens.lora_embedding_B`, [8, 2], 'F32', rand),
    ...extra,
  ]);
}

/** LoRA on q_proj with the whole `module` trained and saved beside it (modules_to_save), `rows` rows. */
function savingWhole(module: 'lm_head' | 'embed_tokens', rows = 16): Files {
  const path = module === 'lm_head' ? 'lm_head' : 'model.embed_tokens';
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], modules_to_save: [module] }, [
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
    randomTensor(`${P}.${path}.modules_to_save.default.weight`, [rows, 8], 'F32', rand),
  ]);
}

/** LoRA on q_proj with trainable tokens 3 and 7 on embed_tokens (LoraConfig trainable_token_indices). */
function tokens37(): Files {
  return peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], trainable_token_indices: [3, 7] }, [
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
    randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
    randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, 8], 'F32', rand),
  ]);
}

describe('plan refusals (2)', () => {
  it('refuses target_modules and layers_to_transform of a type PEFT cannot use, a pattern past the length limit, and a module with no layer index under layers_to_transform, naming each', async () => {
    const q = `${P}.model.layers.0.self_attn.q_proj`;
    const adapter = (fields: object, withEmbedding = false) => peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], ...fields }, [
      randomTensor(`${q}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${q}.lora_B.weight`, [8, 2], 'F32', rand),
      ...(withEmbedding ? [randomTensor(`${P}.model.embed_tokens.lora_embedding_A`, [2, 16], 'F32', rand), randomTensor(`${P}.model.embed_tokens.lora_embedding_B`, [8, 2], 'F32', rand)] : []),
    ]);
    const file = 'adapter/adapter_config.json';
    expect(await refusal(llama(), adapter({ target_modules: ['q_proj', 'embed_tokens'] }, true))).toBe('');
    expect(await refusal(llama(), adapter({ target_modules: 7 }))).toBe(`${file}: "target_modules" must be a list of module names or a pattern string, got 7`);
    expect(await refusal(llama(), adapter({ layers_to_transform: '0' }))).toBe(`${file}: "layers_to_transform" must be a layer index or a list of layer indexes, got "0"`);
    // A pattern past MAX_PATTERN_LENGTH (1000) and its 40-character allowance is refused before it is compiled.
    const long = `.*\\.(q_proj|${Array.from({ length: 120 }, (_, i) => `unused_${i}`).join('|')})`;
    expect(long.length).toBeGreaterThan(1040);
    expect(await refusal(llama(), adapter({ target_modules: long }))).toBe(
      `${file}: target_modules "${long.slice(0, 80)}…" is ${long.length} characters long, above the limit of 1000 (MAX_PATTERN_LENGTH)`,
    );
    // Under layers_to_transform PEFT keeps a module matched by its last names only where its name has a listed layer index: embed_tokens has none.
    expect(await refusal(llama(), adapter({ target_modules: ['q_proj', 'embed_tokens'], layers_to_transform: [0] }, true))).toBe(
      `${file}: module "model.embed_tokens" is in adapter/adapter_model.safetensors but is targeted by target_modules ["q_proj","embed_tokens"], with no layer index for layers_to_transform [0]; PEFT would leave its tensors unused, so this adapter cannot have been trained as PEFT loads it — fix adapter_config.json or remove the module`,
    );
  });

  it('refuses adapter_config.json fields of a type LoraConfig cannot load (bias, a flag, a name list, a pattern table), naming the field and the value', async () => {
    const withConfig = (fields: object) => peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], ...fields }, [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
    ]);
    const file = 'adapter/adapter_config.json';
    expect(await refusal(llama(), withConfig({ bias: 'none', use_rslora: false, modules_to_save: null, rank_pattern: {} }))).toBe('');
    expect(await refusal(llama(), withConfig({ bias: 'lora' }))).toBe(`${file}: "bias" must be "none", "all" or "lora_only", got "lora"`);
    expect(await refusal(llama(), withConfig({ use_rslora: 'true' }))).toBe(`${file}: "use_rslora" must be true or false, got "true"`);
    expect(await refusal(llama(), withConfig({ modules_to_save: 'lm_head' }))).toBe(`${file}: "modules_to_save" must be a list of module names`);
    expect(await refusal(llama(), withConfig({ rank_pattern: [['q_proj', 4]] }))).toBe(`${file}: "rank_pattern" must be an object`);
  });

  it('refuses trainable_token_indices that are not token indices (a negative, a repeat, neither list nor object), naming the field', async () => {
    // LoraConfig's trainable_token_indices: a list of token ids, or an object of module name → list.
    const withIndices = (indices: unknown) => peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], trainable_token_indices: indices }, [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
      randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, 8], 'F32', rand),
    ]);
    const file = 'adapter/adapter_config.json';
    expect(await refusal(llama(), withIndices({ embed_tokens: [3, 7] }))).toBe('');
    expect(await refusal(llama(), withIndices([3, -7]))).toBe(`${file}: "trainable_token_indices" must be a list of token indices (integers ≥ 0)`);
    expect(await refusal(llama(), withIndices({ embed_tokens: [3, 3] }))).toBe(`${file}: "trainable_token_indices"["embed_tokens"] lists token 3 twice`);
    expect(await refusal(llama(), withIndices('3,7'))).toBe(`${file}: "trainable_token_indices" must be a list of token indices or an object of module name → list`);
  });

  it('refuses a TRAINABLE_TOKENS adapter whose config has no token_indices, naming the config: it does not say which rows its deltas set', async () => {
    const adapter = (indices?: number[]) => ({
      'adapter_config.json': JSON.stringify({ peft_type: 'TRAINABLE_TOKENS', task_type: 'CAUSAL_LM', ...(indices ? { token_indices: indices } : {}), target_modules: ['embed_tokens'] }),
      'adapter_model.safetensors': buildSafetensors([randomTensor(`${P}.model.embed_tokens.trainable_tokens_delta`, [2, 8], 'F32', rand)]),
    });
    expect(await refusal(llama(), adapter([3, 7]))).toBe('');
    // A config written by hand without the field (PEFT writes the list it trained).
    expect(await refusal(llama(), adapter())).toBe('adapter/adapter_config.json: TRAINABLE_TOKENS config has no "token_indices"');
  });

  it('refuses a bias diff alone on a weight another module of the same file already changes, naming both modules', async () => {
    // One layer under ComfyUI's name (a LoRA) and under kohya's (a diff_b alone), as a file joined from two sources holds it.
    const h = FLUX.h;
    const base = { 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) };
    const lora = { 'mixed.safetensors': buildSafetensors([
      randomTensor('diffusion_model.double_blocks.0.img_attn.proj.lora_down.weight', [2, h], 'F32', rand),
      randomTensor('diffusion_model.double_blocks.0.img_attn.proj.lora_up.weight', [h, 2], 'F32', rand),
      randomTensor('lora_unet_double_blocks_0_img_attn_proj.diff_b', [h], 'F32', rand),
    ]) };
    expect(await problems(base, lora)).toEqual([
      'adapter: module "lora_unet_double_blocks_0_img_attn_proj": targets double_blocks.0.img_attn.proj.weight, as module "diffusion_model.double_blocks.0.img_attn.proj" of the same adapter does',
    ]);
  });

  it('refuses an adapter that saved its own bias (bias "all") after another adapter\'s lora_B bias updates it, naming the bias and the other adapter', async () => {
    const t = (name: string, shape: number[]) => randomTensor(name, shape, 'F32', rand);
    const q = 'model.layers.0.self_attn.q_proj';
    const base = hfModelFolder([t('model.embed_tokens.weight', [16, 8]), t(`${q}.weight`, [8, 8]), t(`${q}.bias`, [8]), t('model.norm.weight', [8])], {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 16, tie_word_embeddings: false,
    });
    const factors = () => [t(`${P}.${q}.lora_A.weight`, [2, 8]), t(`${P}.${q}.lora_B.weight`, [8, 2]), t(`${P}.${q}.lora_B.bias`, [8])];
    const other = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], lora_bias: true }, factors());
    // bias "all": PEFT trains every bias of the model and saves them under their own names.
    const own = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], lora_bias: true, bias: 'all' }, [...factors(), t(`${P}.${q}.bias`, [8])]);
    expect(await planProblems(base, { own, other })).toEqual([]);
    expect(await planProblems(base, { other, own })).toEqual([
      `own: module "${q}": the adapter saved ${q}.bias, which other already updates`,
      `own: replaces ${q}.bias, which other (module "${q}") also updates with LoRA`,
    ]);
  });

  it('refuses a LoRA none of whose modules lands in the base (text-encoder modules on a Flux transformer file), naming the count and the component', async () => {
    // diffusers' key names for CLIP-L's q_proj; flux1-dev.safetensors holds the transformer only.
    const te = 'text_encoder.text_model.encoder.layers.0.self_attn';
    const lora = { 'te.safetensors': buildSafetensors(['q_proj', 'k_proj'].flatMap((m) => [
      randomTensor(`${te}.${m}.lora_A.weight`, [2, 12], 'F32', rand), randomTensor(`${te}.${m}.lora_B.weight`, [12, 2], 'F32', rand),
    ])) };
    expect(await problems({ 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) }, lora)).toEqual([
      'adapter: none of its 2 modules lands in this base (they name text encoder 1 (CLIP-L), which the base does not hold (it holds the UNet/transformer))',
    ]);
  });

  it('refuses a single-file LoRA holding two down factors for one module (PEFT\'s and kohya\'s names), naming the module and both tensors', async () => {
    // diffusers' form (PEFT key names without base_model.model.), with a kohya-named lora_down of the same module beside it.
    const q = 'model.layers.0.self_attn.q_proj';
    expect(await refusal(llama(), qProjSingleFile(rand))).toBe('');
    expect(await refusal(llama(), qProjSingleFile(rand, [[`${q}.lora_down.weight`, [2, 8]]]))).toBe(
      `adapter/adapter.safetensors: module "${q}" has two down tensors ("${q}.lora_A.weight" and "${q}.lora_down.weight")`,
    );
  });

  it('refuses an embedding LoRA (lora_embedding_A/B) on a 1-D base tensor, naming the module and both shapes', async () => {
    // PEFT saves lora_embedding_A/B for an nn.Embedding, a (vocabulary, dim) weight; model.norm's is a vector.
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['norm'] }, [
      randomTensor(`${P}.model.norm.lora_embedding_A`, [2, 16], 'F32', rand), randomTensor(`${P}.model.norm.lora_embedding_B`, [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual(['adapter: module "model.norm": ΔW (8, 16) does not fit base model.norm.weight (8): expected a 2-D (in, out) weight']);
  });

  it('refuses target_parameters LoRA factors on fused experts that hold another expert count or fit neither side, naming the factors and the tensor', async () => {
    // gpt-oss as transformers stores it: experts.gate_up_proj (E, hidden, 2·intermediate), 2 experts, hidden 8.
    const experts = 'model.layers.0.mlp.experts';
    const base = hfModelFolder([randomTensor('model.embed_tokens.weight', [16, 8], 'BF16', rand), randomTensor(`${experts}.gate_up_proj`, [2, 8, 12], 'BF16', rand)], {
      architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 8, intermediate_size: 6, num_local_experts: 2, num_hidden_layers: 1, vocab_size: 16,
    });
    // PEFT's ParamWrapper: lora_A (r·E, ·), lora_B (·, r·E), r 2 from the config.
    const onExperts = (a: number[], b: number[]) => peftFolder({ r: 2, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], lora_dropout: 0, peft_version: '0.17.1' }, [
      randomTensor(`${P}.${experts}.lora_A.weight`, a, 'F32', rand), randomTensor(`${P}.${experts}.lora_B.weight`, b, 'F32', rand),
    ]);
    expect(await problems(base, onExperts([4, 8], [12, 4]))).toEqual([]);
    const m = `adapter: module "${experts}.gate_up_proj": on ${experts}.gate_up_proj`;
    expect(await problems(base, onExperts([6, 8], [12, 6]))).toEqual([
      `${m}: lora_A (6, 8) holds the factors of 3 experts at rank 2, and the base tensor (2, 8, 12) holds 2, for which PEFT's ParamWrapper saves lora_A (4, ·) and lora_B (·, 4): the adapter was trained on a model with another number of experts; merge it into that one`,
    ]);
    // Factors of one expert's rank (lora_A (r, ·)): PEFT trains every expert of the parameter, none alone.
    expect(await problems(base, onExperts([2, 8], [12, 2]))).toEqual([
      `${m}: lora_A (2, 8) holds the factors of 1 expert at rank 2, and the base tensor (2, 8, 12) holds 2, for which PEFT's ParamWrapper saves lora_A (4, ·) and lora_B (·, 4); a LoRA on one expert of a fused parameter is not supported (PEFT's ParamWrapper trains every expert of it, and factors of one say not which expert they are for): merge into the model the adapter was trained on`,
    ]);
    expect(await problems(base, onExperts([4, 7], [12, 4]))).toEqual([`${m}: lora_A (4, 7) and lora_B (12, 4) fit neither (E, out, in) nor (E, in, out) of the base tensor (2, 8, 12)`]);
  });

  it('refuses a lora_B bias on a base whose bias is stored as integers, naming the base bias and its dtype', async () => {
    // A Qwen2 layer (q_proj has a bias); the bias here holds I32 values, which the merge cannot add floats to.
    const t = (name: string, shape: number[], dtype: 'F32' | 'I32' = 'F32') => randomTensor(name, shape, dtype, rand);
    const q = 'model.layers.0.self_attn.q_proj';
    const base = (biasType: 'F32' | 'I32') => hfModelFolder([t('model.embed_tokens.weight', [16, 8]), t(`${q}.weight`, [8, 8]), t(`${q}.bias`, [8], biasType), t('model.norm.weight', [8])], {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 16, tie_word_embeddings: false,
    });
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], lora_bias: true }, [
      t(`${P}.${q}.lora_A.weight`, [2, 8]), t(`${P}.${q}.lora_B.weight`, [8, 2]), t(`${P}.${q}.lora_B.bias`, [8]),
    ]);
    expect(await problems(base('F32'), adapter)).toEqual([]);
    expect(await problems(base('I32'), adapter)).toEqual([
      `adapter: module "${q}": base ${q}.bias is I32; only F32, F16, BF16 and fp8 can be merged`,
    ]);
  });

  it('refuses a Linear LoRA on a 1-D base tensor with more than one output, naming the module and both shapes', async () => {
    // lora_A/lora_B saved for the final RMSNorm, whose weight is a vector (8): no Linear of 8 outputs is stored there.
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['norm'] }, [
      randomTensor(`${P}.model.norm.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${P}.model.norm.lora_B.weight`, [8, 2], 'F32', rand),
    ]);
    expect(await problems(llama(), adapter)).toEqual([
      'adapter: module "model.norm": ΔW (8, 8) does not fit base model.norm.weight (8): the base is not a matrix',
    ]);
  });

  it('refuses a bias diff alone on a module that is part of a fused tensor, naming the module and the tensor', async () => {
    // diffusers' to_q of a Flux single block is the first h rows of BFL's fused linear1 (q, k, v, mlp);
    // with no weight update to place those rows, the bias part is not placed either.
    const base = { 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) };
    const biasDiff = (name: string) => ({ 'bias.safetensors': buildSafetensors([{ name, dtype: 'F32', shape: [FLUX.h], data: Array.from({ length: FLUX.h }, (_, i) => i / 100) }]) });
    expect(await problems(base, biasDiff('transformer.single_transformer_blocks.0.attn.to_q.diff_b'))).toEqual([
      'adapter: module "transformer.single_transformer_blocks.0.attn.to_q": transformer.single_transformer_blocks.0.attn.to_q.diff_b on a module that lands on part of a tensor (single_blocks.0.linear1.weight) without a weight update is not supported',
    ]);
    // The other way round: BFL's fused linear1 on a diffusers base splits into four whole tensors.
    const diffusers = { 'transformer.safetensors': buildSafetensors(fluxDiffusersTensors(rand, 'BF16')) };
    const linear1 = { 'bias.safetensors': buildSafetensors([{ name: 'diffusion_model.single_blocks.0.linear1.diff_b', dtype: 'F32', shape: [7 * FLUX.h], data: Array.from({ length: 7 * FLUX.h }, (_, i) => i / 100) }]) };
    expect(await problems(diffusers, linear1)).toEqual([
      'adapter: module "diffusion_model.single_blocks.0.linear1": diffusion_model.single_blocks.0.linear1.diff_b on a module whose rows land on several tensors (single_transformer_blocks.0.attn.to_q.weight, single_transformer_blocks.0.attn.to_k.weight, single_transformer_blocks.0.attn.to_v.weight, single_transformer_blocks.0.proj_mlp.weight) without a weight update is not supported',
    ]);
  });
  it('refuses a modules_to_save copy of lm_head beside another adapter\'s LoRA on it, naming both: the copy replaces what the LoRA changes', async () => {
    const head = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, [
      randomTensor(`${P}.lm_head.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${P}.lm_head.lora_B.weight`, [16, 2], 'F32', rand),
    ]);
    expect(await planProblems(llama(), { saved: savingWhole('lm_head') })).toEqual([]);
    expect(await planProblems(llama(), { saved: savingWhole('lm_head'), head })).toEqual([
      'saved: replaces lm_head.weight, which head (module "lm_head") also updates with LoRA',
    ]);
  });

  it('refuses trainable tokens beside another adapter that changes the same embedding, naming the tensor and the other adapter', async () => {
    expect(await planProblems(llama(), { tokens: tokens37(), embedding: loraOnEmbedding() })).toEqual([
      'tokens: sets rows of model.embed_tokens.weight (trainable tokens), and embedding (module "model.embed_tokens") also updates it; merge them one after the other',
    ]);
    expect(await planProblems(llama(), { tokens: tokens37(), saved: savingWhole('embed_tokens') })).toEqual([
      'tokens: sets rows of model.embed_tokens.weight (trainable tokens), and saved replaces it whole; merge them one after the other',
    ]);
  });

  it('refuses an adapter that saved its own embedding (save_embedding_layers) after another adapter updates it, naming both and the order to take', async () => {
    // PEFT's save_embedding_layers writes the embedding its LoRA was trained on as embed_tokens.base_layer.weight.
    const own = loraOnEmbedding([randomTensor(`${P}.model.embed_tokens.base_layer.weight`, [16, 8], 'F32', rand)]);
    expect(await planProblems(llama(), { own, other: loraOnEmbedding() })).toEqual([]);
    expect(await planProblems(llama(), { other: loraOnEmbedding(), own })).toEqual([
      `own: module "model.embed_tokens": own saved model.embed_tokens.weight (${P}.model.embed_tokens.base_layer.weight), which other already updates; merge own first`,
      'own: replaces model.embed_tokens.weight, which other (module "model.embed_tokens") also updates with LoRA',
    ]);
  });

  it('refuses a modules_to_save copy of a resized embedding, naming it and PEFT\'s option that saves it as a resized base', async () => {
    expect(await problems(llama(), savingWhole('embed_tokens', 20))).toEqual([
      'adapter: module "model.embed_tokens.weight": replacement (20, 8) does not match base model.embed_tokens.weight (16, 8): a modules_to_save copy of a resized vocabulary; save the adapter with save_embedding_layers',
    ]);
  });

  it('refuses an ensure_weight_tying adapter beside one that changes the tied head alone, naming the first and the embedding', async () => {
    // Saved tied, as transformers saves it: the embedding only, no lm_head.weight.
    const t = (name: string, shape: number[]) => randomTensor(name, shape, 'F32', rand);
    const tied = hfModelFolder([t('model.embed_tokens.weight', [16, 8]), t('model.layers.0.self_attn.q_proj.weight', [8, 8]), t('model.norm.weight', [8])], {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, num_hidden_layers: 1, vocab_size: 16, tie_word_embeddings: true, torch_dtype: 'float32',
    });
    // PEFT with ensure_weight_tying saves the embedding's LoRA and the head's, its transposed copy (lora_A = Bᵀ, lora_B = Aᵀ).
    const a = Array.from({ length: 2 * 16 }, () => rand() - 0.5), b = Array.from({ length: 8 * 2 }, () => rand() - 0.5);
    /** `v` (rows × cols, row-major) transposed. */
    const transposed = (v: number[], rows: number, cols: number) => Array.from({ length: v.length }, (_, k) => v[(k % rows) * cols + Math.floor(k / rows)]);
    const ensured = peftFolder({ r: 2, lora_alpha: 2, target_modules: ['embed_tokens'], ensure_weight_tying: true }, [
      { name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: 'F32', shape: [2, 16], data: a },
      { name: 'base_model.model.model.embed_tokens.lora_embedding_B', dtype: 'F32', shape: [8, 2], data: b },
      { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [2, 8], data: transposed(b, 8, 2) },
      { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [16, 2], data: transposed(a, 2, 16) },
    ]);
    const head = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, [
      randomTensor('base_model.model.lm_head.lora_A.weight', [2, 8], 'F32', rand), randomTensor('base_model.model.lm_head.lora_B.weight', [16, 2], 'F32', rand),
    ]);
    expect(await planRefusal(tied, { tied: ensured })).toBe('');
    expect(await planRefusal(tied, { tied: ensured, head })).toBe(
      'tied was trained with ensure_weight_tying (its head follows model.embed_tokens.weight), but another change unties the two; merge the adapters one after the other',
    );
  });

  it('refuses two adapter folders carrying different tokenizer files, naming both: the merged folder can hold one tokenizer', async () => {
    // A trainer saves the tokenizer beside the adapter when it changed it (a chat template, added tokens).
    const chatml = { 'tokenizer_config.json': JSON.stringify({ model_max_length: 64, chat_template: '{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}' }) };
    const llama3 = { 'tokenizer_config.json': JSON.stringify({ model_max_length: 64, chat_template: '{% for m in messages %}<|start_header_id|>{{ m.content }}{% endfor %}' }) };
    expect(await planProblems(llama(), { first: loraOnQ(chatml), second: loraOnQ(chatml) })).toEqual([]);
    expect(await planProblems(llama(), { first: loraOnQ(chatml), second: loraOnQ(llama3) })).toEqual([
      "second: carries tokenizer files that differ from first's; merge them one after the other",
    ]);
    // The same tokenizer_config.json and one more file (a BPE tokenizer's vocab.json): another tokenizer all the same.
    expect(await planProblems(llama(), { first: loraOnQ(chatml), second: loraOnQ({ ...chatml, 'vocab.json': '{"<s>": 0}' }) })).toEqual([
      "second: carries tokenizer files that differ from first's; merge them one after the other",
    ]);
  });

  it('refuses LyCORIS (IA)³ on a scaled fp8 weight, naming the module and the weight: a map of W is not an addition', async () => {
    // e5m2 files are merged in place (codes + ΔW / s): a map of W would have to act on W itself.
    expect(await problems(scaledFp8Flux('F8_E5M2'), ia3OnTxtMlp2())).toEqual([
      'adapter: module "lora_unet_double_blocks_1_txt_mlp_2": (IA)³ on the scaled fp8 weight double_blocks.1.txt_mlp.2.weight is not supported',
    ]);
    // e4m3fn files are merged in real values and quantized again (scaled-fp8-output.ts): only additions are.
    expect(await problems(scaledFp8Flux('F8_E4M3'), ia3OnTxtMlp2())).toEqual([
      'adapter: module "lora_unet_double_blocks_1_txt_mlp_2": (IA)³ maps the weight itself; on the scaled fp8 weight double_blocks.1.txt_mlp.2.weight it is not supported; merge it into the unquantized model',
    ]);
  });

  it('refuses trainable tokens on a scaled fp8 head, naming the delta and the weight: the rows they set are W, not its codes W / s', async () => {
    // LoraConfig(trainable_token_indices={"lm_head": [3, 7]}): PEFT's TrainableTokensLayer wraps the head's nn.Linear.
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], trainable_token_indices: { lm_head: [3, 7] } }, [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
      randomTensor(`${P}.lm_head.token_adapter.trainable_tokens_delta`, [2, 8], 'F32', rand),
    ]);
    // The same tokens on the BF16 embedding, beside the same LoRA on the scaled q_proj, plan without problems.
    expect(await problems(scaledFp8Llama('F8_E5M2'), tokens37())).toEqual([]);
    // e5m2 files are merged in place (codes + ΔW / s), which rows set outright are not.
    expect(await problems(scaledFp8Llama('F8_E5M2'), adapter)).toEqual([
      `adapter: module "lm_head.weight": trainable tokens ${P}.lm_head.token_adapter.trainable_tokens_delta: setting rows of the scaled fp8 weight lm_head.weight is not supported`,
    ]);
    // e4m3fn files are merged in real values and quantized again: only additions are.
    expect(await problems(scaledFp8Llama('F8_E4M3'), adapter)).toEqual([
      'adapter: module "lm_head.weight": setting rows of the scaled fp8 weight lm_head.weight is not supported; merge it into the unquantized model',
    ]);
  });

  it('refuses an adapter that saved its own scaled fp8 head (save_embedding_layers) for its LoRA there, naming the weight: its codes are not what the LoRA starts from', async () => {
    // PEFT's save_embedding_layers writes the head its LoRA was trained on as lm_head.base_layer.weight.
    const adapter = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, [
      randomTensor(`${P}.lm_head.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${P}.lm_head.lora_B.weight`, [16, 2], 'F32', rand),
      randomTensor(`${P}.lm_head.base_layer.weight`, [16, 8], 'F32', rand),
    ]);
    // e5m2 files are merged in place (codes + ΔW / s): the saved head cannot be written as such codes.
    expect(await problems(scaledFp8Llama('F8_E5M2'), adapter)).toEqual([
      'adapter: module "lm_head.weight": replacing the scaled fp8 weight lm_head.weight is not supported',
    ]);
    // e4m3fn files are merged in real values and quantized again with the scale recalculated.
    expect(await problems(scaledFp8Llama('F8_E4M3'), adapter)).toEqual([
      'adapter: module "lm_head": the adapter saves its own lm_head.weight, which is a scaled fp8 weight here; this is not supported; merge it into the unquantized model',
    ]);
  });

  it('refuses a ComfyUI set_weight of BFL\'s fused qkv on a diffusers base, naming the three tensors it would be split over', async () => {
    // ComfyUI replaces a weight whole by a `.set_weight` key; a diffusers Flux holds BFL's img_attn.qkv as to_q, to_k and to_v.
    const base = { 'flux1-dev-diffusers.safetensors': buildSafetensors(fluxDiffusersTensors(rand, 'BF16')) };
    const qkv = 'diffusion_model.double_blocks.0.img_attn.qkv.set_weight';
    const adapter = { 'set.safetensors': buildSafetensors([randomTensor(qkv, [3 * FLUX.h, FLUX.h], 'F32', rand)]) };
    const b = 'transformer_blocks.0.attn';
    expect(await problems(base, adapter)).toEqual([
      `adapter: module "double_blocks.0.img_attn.qkv": set_weight tensor ${qkv}: it maps to part of ${b}.to_q.weight, ${b}.to_k.weight, ${b}.to_v.weight (flux-bfl), not a whole tensor to replace`,
    ]);
  });

  it('refuses a ComfyUI set_weight of a norm in a double block the base does not have (a FLUX.1-dev control LoRA on a model with fewer blocks), naming it', async () => {
    // ComfyUI saves a control LoRA's q/k norms as set_weight; this base has double blocks 0 and 1 only
    // (as a FLUX.1-dev pruned to fewer double blocks has fewer than its 19).
    const base = { 'flux1-dev.safetensors': buildSafetensors(fluxBflTensors(rand, 'BF16')) };
    const norm = (block: number) => `diffusion_model.double_blocks.${block}.img_attn.norm.query_norm.scale.set_weight`;
    const control = (block: number) => ({ 'control.safetensors': buildSafetensors([randomTensor(norm(block), [FLUX.h / 2], 'F32', rand)]) });
    expect(await problems(base, control(1))).toEqual([]);
    expect(await problems(base, control(2))).toEqual([
      `adapter: module "double_blocks.2.img_attn.norm.query_norm.scale": set_weight tensor ${norm(2)}: no matching tensor in the UNet/transformer`,
    ]);
  });

  it('refuses 1×1-conv LoRA factors on a GPT-2 Conv1D, naming the weight and the flag: which way their ΔW lies on the (in, out) weight is not PEFT\'s Conv1D rule', async () => {
    // openai-community/gpt2's names; c_proj is transformers' Conv1D, stored (in, out), here square.
    const gpt2 = hfModelFolder([
      randomTensor('wte.weight', [16, 8], 'F32', rand), randomTensor('h.0.attn.c_attn.weight', [8, 24], 'F32', rand),
      randomTensor('h.0.attn.c_proj.weight', [8, 8], 'F32', rand), randomTensor('ln_f.weight', [8], 'F32', rand),
    ], { architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 8, n_head: 2, n_layer: 1, vocab_size: 16, torch_dtype: 'float32' });
    const m = `${P}.transformer.h.0.attn.c_proj`;
    const lora = (a: number[], b: number[], config: object = {}) => peftFolder({ r: 2, lora_alpha: 4, target_modules: ['c_proj'], ...config }, [
      randomTensor(`${m}.lora_A.weight`, a, 'F32', rand), randomTensor(`${m}.lora_B.weight`, b, 'F32', rand),
    ]);
    // PEFT's own factors for a Conv1D, (r, in) and (out, r): fan_in_fan_out is turned on as PEFT does.
    expect(await problems(gpt2, lora([2, 8], [8, 2]))).toEqual([]);
    // A conv's (r, in, 1, 1) and (out, r, 1, 1), which PEFT's Conv1D LoRA (a Linear pair) cannot load, with or without the flag.
    for (const fanInFanOut of [false, true]) {
      expect(await problems(gpt2, lora([2, 8, 1, 1], [8, 2, 1, 1], { fan_in_fan_out: fanInFanOut }))).toEqual([
        'adapter: module "transformer.h.0.attn.c_proj": "h.0.attn.c_proj.weight" is transformers\' Conv1D, stored (in, out), in a gpt2 model, and its factors are a conv module\'s (ΔW (8, 8, 1, 1)), which PEFT\'s LoRA of a Conv1D (a Linear\'s) cannot load',
      ]);
    }
  });
});
