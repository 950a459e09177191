/**
 * Refusals of the adapter readers that no other test reached: a PEFT, mlx-lm or single-file
 * adapter whose config or tensors the tool that wrote it would not load (or would load as
 * something other than what the file says) is refused with one message naming the file, module
 * or field, never planned in part or read as something else. Each adapter is what PEFT, mlx-lm,
 * kohya/LyCORIS or diffusers saves for a Llama of hidden 8 (names, shapes and config fields as
 * they write them), with the one field or tensor changed that each case is about.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';
import { mlxFolder } from './helpers/mlx-lm-folder.js';
import { planRefusal, qProjSingleFile, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(2417);
const Q = 'model.layers.0.self_attn.q_proj';
/** q_proj as PEFT names it in adapter_model.safetensors. */
const P = `base_model.model.${Q}`;
const O = 'base_model.model.model.layers.0.self_attn.o_proj';
/** gpt-oss-style stacked experts: one parameter gate_up_proj (E, in, 2·ffn), which target_parameters adapts. */
const EXPERTS = 'model.layers.1.mlp.experts';
const EP = `base_model.model.${EXPERTS}`;
const DELTA = 'base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta';
const t = (name: string, shape: number[], dtype: FixtureTensor['dtype'] = 'F32') => randomTensor(name, shape, dtype, rand);
const llama = (): Files => ({
  'model.safetensors': buildSafetensors([
    t(`${Q}.weight`, [8, 8]), t('model.layers.0.self_attn.o_proj.weight', [8, 8]), t('model.embed_tokens.weight', [16, 8]),
    t(`${EXPERTS}.gate_up_proj`, [2, 8, 16]),
  ]),
});
const refusal = (adapter: Files) => planRefusal(llama(), { adapter });

/** PEFT's LoRA config (r 2, α 4 on q_proj) with `fields` over it, and its q_proj factors. */
const lora = (fields: object = {}) => ({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], ...fields });
const qLora = () => [t(`${P}.lora_A.weight`, [2, 8]), t(`${P}.lora_B.weight`, [8, 2])];

describe('PEFT LoRA: tensors PEFT would not load', () => {
  it('refuses an adapter_model.safetensors that holds no tensors', async () => {
    expect(await refusal(peftFolder(lora(), []))).toBe('adapter/adapter_model.safetensors: no LoRA tensors found');
  });

  it('refuses a module with both lora_A/B and lora_embedding_A/B (PEFT wraps a layer as Linear or as Embedding, not both)', async () => {
    const files = peftFolder(lora(), [...qLora(), t(`${P}.lora_embedding_A`, [2, 8]), t(`${P}.lora_embedding_B`, [8, 2])]);
    expect(await refusal(files)).toBe(`adapter: module "${Q}" has both linear and embedding LoRA factors`);
  });

  it('refuses a 1-D lora_A (PEFT\'s lora_A is a Linear or Conv weight)', async () => {
    const files = peftFolder(lora(), [t(`${P}.lora_A.weight`, [2]), t(`${P}.lora_B.weight`, [8, 2])]);
    expect(await refusal(files)).toBe(`adapter: module "${Q}": lora_A (2) and lora_B (8, 2) must have at least 2 dims`);
  });

  it('refuses factor names PEFT does not save: lora_A with no .weight, lora_A with a bias', async () => {
    const noWeight = peftFolder(lora(), [t(`${P}.lora_A.default`, [2, 8]), t(`${P}.lora_B.weight`, [8, 2])]);
    expect(await refusal(noWeight)).toBe(['2 problems in adapter:',
      `  - adapter/adapter_model.safetensors: tensor "${P}.lora_A.default" is not a LoRA factor this tool understands`,
      `  - adapter: module "${Q}" has no lora_A`].join('\n'));
    // lora_bias puts a bias on lora_B only; lora_A is always nn.Linear(..., bias=False).
    const biasA = peftFolder(lora(), [...qLora(), t(`${P}.lora_A.bias`, [2])]);
    expect(await refusal(biasA)).toBe(`adapter/adapter_model.safetensors: tensor "${P}.lora_A.bias" is not a LoRA factor this tool understands`);
  });

  it('refuses two lora_A of one module (the adapter name kept on one of them), naming both', async () => {
    const files = peftFolder(lora(), [...qLora(), t(`${P}.lora_A.default.weight`, [2, 8])]);
    expect(await refusal(files)).toBe(`adapter/adapter_model.safetensors: module "${Q}" has two lora_A tensors ("${P}.lora_A.weight" and "${P}.lora_A.default.weight"); several adapters in one file are not supported: save each one separately`);
  });
});

describe('PEFT LoRA on target_parameters (ParamWrapper): what PEFT cannot build', () => {
  const params = (fields: object = {}) => lora({ target_modules: [], target_parameters: ['experts.gate_up_proj'], peft_version: '0.17.0', ...fields });
  const pair = (at = EP, r = 2) => [t(`${at}.lora_A.weight`, [r * 2, 8]), t(`${at}.lora_B.weight`, [16, r * 2])];

  it('refuses a nested wrapper (base_layer) of a module no entry of target_parameters names', async () => {
    const files = peftFolder(params({ target_parameters: ['self_attn.sinks'] }), pair(`${EP}.base_layer`));
    expect(await refusal(files)).toBe(`adapter: module "${EXPERTS}.base_layer" is a nested LoRA wrapper but no entry of target_parameters names a parameter of "${EXPERTS}"`);
  });

  it('refuses two parameters of one module when their registration order is unknown (which wrapper holds which)', async () => {
    const files = peftFolder(params({ target_parameters: ['experts.gate_up_proj', 'experts.router_scale'] }), pair());
    expect(await refusal(files)).toBe(`adapter: target_parameters names gate_up_proj, router_scale of "${EXPERTS}"; which nested wrapper holds which depends on the order the model registers them, known only for gate_up_proj, gate_up_proj_bias, up_proj, down_proj, down_proj_bias`);
  });

  it('refuses a wrapper nested deeper than target_parameters names parameters', async () => {
    const files = peftFolder(params(), [...pair(), ...pair(`${EP}.base_layer`)]);
    expect(await refusal(files)).toBe(`adapter: module "${EXPERTS}.base_layer" is wrapped 2 deep but target_parameters names only gate_up_proj of "${EXPERTS}"`);
  });

  it('refuses a parameter without lora_B, with a DoRA magnitude, or with factors of the wrong sizes', async () => {
    const at = `adapter: parameter "${EXPERTS}.gate_up_proj"`;
    expect(await refusal(peftFolder(params(), [t(`${EP}.lora_A.weight`, [4, 8])]))).toBe(`${at}: needs exactly lora_A and lora_B`);
    expect(await refusal(peftFolder(params(), [...pair(), t(`${EP}.lora_magnitude_vector`, [16])])))
      .toBe(`${at}: PEFT supports neither DoRA nor lora_bias on target_parameters`);
    expect(await refusal(peftFolder(params(), [t(`${EP}.lora_A.weight`, [4, 8]), t(`${EP}.lora_B.weight`, [16, 2])]))).toBe(`${at}: lora_B (16, 2) does not fit lora_A (4, 8)`);
    // r · experts rows: 3 is no whole number of experts at r 2.
    expect(await refusal(peftFolder(params(), [t(`${EP}.lora_A.weight`, [3, 8]), t(`${EP}.lora_B.weight`, [16, 3])]))).toBe(`${at}: lora_A has 3 rows, not a multiple of the config's rank 2`);
  });
});

describe('PEFT trainable tokens (trainable_token_indices): a delta whose rows the config does not give', () => {
  const tokens = (indices: unknown, rows: number) => peftFolder(lora({ trainable_token_indices: indices }), [...qLora(), t(DELTA, [rows, 8])]);

  it('refuses a delta for a module the indices do not name, or that several entries name', async () => {
    expect(await refusal(tokens({ lm_head: [3] }, 1)))
      .toBe(`adapter/adapter_model.safetensors: tensor "${DELTA}" holds trainable tokens but the config lists no token indices for "model.embed_tokens"`);
    expect(await refusal(tokens({ embed_tokens: [3], 'model.embed_tokens': [4] }, 1)))
      .toBe('adapter/adapter_model.safetensors: trainable tokens of "model.embed_tokens" match several entries of trainable_token_indices (embed_tokens, model.embed_tokens)');
  });

  it('refuses a delta with more rows than the config has token indices', async () => {
    expect(await refusal(tokens([3, 5], 3))).toBe(`adapter/adapter_model.safetensors: tensor "${DELTA}" (3, 8) should have one row per token index (2)`);
  });
});

describe('PEFT BD-LoRA (use_bdlora): compact factors that do not fit the config', () => {
  // r 4 in 2 blocks: q_proj's lora_A is block-diagonal (4, in/2), o_proj's lora_B (out, 4/2).
  const bd = () => lora({ r: 4, target_modules: ['q_proj', 'o_proj'], use_bdlora: { target_modules_bd_a: ['q_proj'], target_modules_bd_b: ['o_proj'], nblocks: 2, match_strict: false } });
  const onQ = (side: string) => `adapter: module "${side === 'A' ? Q : 'model.layers.0.self_attn.o_proj'}" (BD-LoRA, block-diagonal lora_${side}, nblocks 2)`;

  it('refuses a lora_magnitude_vector beside a block-diagonal factor', async () => {
    const files = peftFolder(bd(), [t(`${P}.lora_A.weight`, [4, 4]), t(`${P}.lora_B.weight`, [8, 4]), t(`${P}.lora_magnitude_vector`, [8])]);
    expect(await refusal(files)).toBe(`${onQ('A')}: has a lora_magnitude_vector, which PEFT cannot combine with BD-LoRA`);
  });

  it('refuses factors that are not 2-D, or not of the config\'s rank', async () => {
    expect(await refusal(peftFolder(bd(), [t(`${P}.lora_A.weight`, [16]), t(`${P}.lora_B.weight`, [8, 4])])))
      .toBe(`${onQ('A')}: lora_A (16) and lora_B (8, 4) must be 2-D`);
    expect(await refusal(peftFolder(bd(), [t(`${P}.lora_A.weight`, [2, 4]), t(`${P}.lora_B.weight`, [8, 4])])))
      .toBe(`${onQ('A')}: lora_A (2, 4) and lora_B (8, 4) are not (4, in/2) and (out, 4) for the config's rank 4`);
    // A full (out, r) lora_B where the block-diagonal one is (out, r/nblocks).
    expect(await refusal(peftFolder(bd(), [t(`${O}.lora_A.weight`, [4, 8]), t(`${O}.lora_B.weight`, [8, 4])])))
      .toBe(`${onQ('B')}: lora_A (4, 8) and lora_B (8, 4) are not (4, in) and (out, 2) with out a multiple of 2, for the config's rank 4`);
  });
});

describe('PEFT methods other than LoRA: config values their config classes refuse', () => {
  const loha = () => [t(`${P}.hada_w1_a`, [8, 2]), t(`${P}.hada_w1_b`, [2, 8]), t(`${P}.hada_w2_a`, [8, 2]), t(`${P}.hada_w2_b`, [2, 8])];
  const superTuning = () => [t(`${P}.supertuning_values`, [2]), t(`${P}.supertuning_indices`, [2], 'I32')];
  const tiny = () => [t(`${P}.tinylora_A`, [2, 8]), t(`${P}.tinylora_B`, [8, 2]), t(`${P}.tinylora_P`, [1, 2, 2]), t('base_model.tinylora_v.0', [1])];
  const at = 'adapter/adapter_config.json';
  const cases: [string, object, FixtureTensor[], string][] = [
    ['AdaLoRA init_r below 0', { peft_type: 'ADALORA', init_r: -1, target_r: 1 }, [t(`${P}.lora_A`, [2, 8]), t(`${P}.lora_E`, [2, 1]), t(`${P}.lora_B`, [8, 2])], `${at}: "init_r" must be an integer ≥ 0, got -1`],
    ['a number written as text', { peft_type: 'LOHA', r: '2', alpha: 2 }, [], `${at}: "r" must be a number, got "2"`],
    ['a flag written as text', { peft_type: 'LOHA', r: 2, alpha: 2, fan_in_fan_out: 'false' }, [], `${at}: "fan_in_fan_out" must be true or false`],
    ['Super-Tuning sparsity 1', { peft_type: 'SUPERTUNING', sparsity: 1 }, superTuning(), `${at}: Super-Tuning "sparsity" must be in [0, 1) (SupertuningConfig raises ValueError), got 1`],
    ['Super-Tuning r 2.5', { peft_type: 'SUPERTUNING', r: 2.5 }, superTuning(), `${at}: Super-Tuning "r" must be a positive integer or null (SupertuningConfig raises ValueError), got 2.5`],
    ['Super-Tuning r 0', { peft_type: 'SUPERTUNING', r: 0 }, superTuning(), `${at}: Super-Tuning "r" must be a positive integer or null (SupertuningConfig raises ValueError), got 0`],
    ['TinyLoRA u 0', { peft_type: 'TINYLORA', r: 2, u: 0 }, tiny(), `${at}: TinyLoRA "u" must be a positive integer, got 0`],
    ['TinyLoRA r 0', { peft_type: 'TINYLORA', r: 0, u: 1 }, tiny(), `${at}: TinyLoRA "r" must be a positive integer, got 0`],
    ['TinyLoRA weight_tying 1.5', { peft_type: 'TINYLORA', r: 2, u: 1, weight_tying: 1.5 }, tiny(), `${at}: TinyLoRA "weight_tying" must be between 0 and 1 (TinyLoraConfig raises ValueError), got 1.5`],
    ['DEFT r 0', { peft_type: 'DEFT', r: 0 }, [t(`${P}.deft_P`, [8, 2])], `${at}: DEFT "r" must be a positive integer (update_layer raises ValueError), got 0`],
    ['PEANuT r 0', { peft_type: 'PEANUT', r: 0 }, [t(`${P}.peanut_A`, [2, 8]), t(`${P}.peanut_B`, [8, 2])], `${at}: PEANuT "r" must be a positive integer (PeanutConfig raises ValueError), got 0`],
    ['RoAd group_size 3', { peft_type: 'ROAD', group_size: 3 }, [t(`${P}.road_theta`, [8]), t(`${P}.road_alpha`, [8])], `${at}: RoAd "group_size" must be an even positive integer, got 3`],
    ['(IA)³ feedforward_modules with a number in its list', { peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [1] }, [t(`${P}.ia3_l`, [8, 1])], `${at}: "feedforward_modules" must be a list of module names or a pattern`],
    ['(IA)³ feedforward_modules a number', { peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: 1 }, [t(`${P}.ia3_l`, [8, 1])], `${at}: "feedforward_modules" must be a list of module names or a pattern`],
    // PEFT would test each character of the string as a module name suffix.
    ['modules_to_save a string', { peft_type: 'LOHA', r: 2, alpha: 2, modules_to_save: 'lm_head' }, [], `${at}: "modules_to_save" must be a list of module names`],
  ];
  it.each(cases)('refuses %s', async (_, config, tensors, message) => {
    expect(await refusal(peftFolder(config, tensors.length > 0 ? tensors : loha()))).toBe(message);
  });

  it('refuses a LoHa adapter_model.safetensors that holds no tensors', async () => {
    expect(await refusal(peftFolder({ peft_type: 'LOHA', r: 2, alpha: 2 }, []))).toBe('adapter/adapter_model.safetensors: no LOHA tensors found');
  });
});

describe('mlx-lm: configs and adapters.safetensors mlx_lm.fuse would not load as they say', () => {
  const M = Q;
  const mlx = (fields: object, tensors: FixtureTensor[]) => mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 20 }, ...fields }, tensors);
  const qFactors = () => [t(`${M}.lora_a`, [8, 2]), t(`${M}.lora_b`, [2, 8])];
  const at = 'adapter/adapter_config.json';

  it('refuses a config whose use_dora (before fine_tune_type) is not a boolean, or that has no lora_parameters, or rank 0', async () => {
    expect(await refusal(mlx({ fine_tune_type: undefined, use_dora: 'true' }, qFactors()))).toBe(`${at}: use_dora "true" is not true or false`);
    expect(await refusal(mlx({ lora_parameters: undefined }, qFactors()))).toBe(`${at}: fine-tune type "lora" needs lora_parameters (rank and scale), and it has none`);
    expect(await refusal(mlx({ lora_parameters: { rank: 0, dropout: 0, scale: 20 } }, qFactors()))).toBe(`${at}: lora_parameters.rank 0 is not a positive whole number`);
  });

  it('refuses an adapters.safetensors with no tensors, for LoRA and for a full fine-tune', async () => {
    expect(await refusal(mlx({}, []))).toBe('adapter/adapters.safetensors: no LoRA tensors found');
    expect(await refusal(mlx({ fine_tune_type: 'full' }, []))).toBe('adapter/adapters.safetensors: holds no tensors');
  });

  it('refuses a module without lora_b, with factors that do not fit, or with a DoRA m of the wrong length', async () => {
    const at = `adapter: module "${M}"`;
    expect(await refusal(mlx({}, [t(`${M}.lora_a`, [8, 2])]))).toBe(`${at}: has no lora_b`);
    expect(await refusal(mlx({}, [t(`${M}.lora_a`, [8, 2]), t(`${M}.lora_b`, [8, 2])])))
      .toBe(`${at}: lora_b (8, 2) does not fit lora_a (8, 2) (mlx-lm saves lora_a (in, r) and lora_b (r, out))`);
    expect(await refusal(mlx({ fine_tune_type: 'dora' }, [...qFactors(), t(`${M}.m`, [4])]))).toBe(`${at}: DoRA magnitude m (4) should hold one value per output feature (8)`);
  });

  it('refuses stacked (3-D) factors on a module that is no switch_mlp, and switch_mlp factors of another rank', async () => {
    expect(await refusal(mlx({}, [t(`${M}.lora_a`, [2, 2, 8]), t(`${M}.lora_b`, [2, 8, 2])])))
      .toBe(`adapter: module "${M}": has 3-D factors (stacked experts) on a module mlx-lm's model files do not name switch_mlp.gate_proj, up_proj or down_proj (nor experts.gate_proj, up_proj or down_proj, as Llama 4's)`);
    const sw = 'model.layers.1.mlp.switch_mlp.up_proj';
    expect(await refusal(mlx({}, [t(`${sw}.lora_a`, [2, 4, 8]), t(`${sw}.lora_b`, [2, 8, 4])])))
      .toBe(`adapter: module "${sw}": lora_a has rank 4 but ${at} says lora_parameters.rank 2`);
  });

  it('refuses LoRA factors in a full fine-tune\'s adapters.safetensors', async () => {
    expect(await refusal(mlx({ fine_tune_type: 'full' }, [t(`${Q}.weight`, [8, 8]), ...qFactors()]))).toBe(['2 problems in adapter:',
      `  - adapter/adapters.safetensors: tensor "${M}.lora_a" is a LoRA factor but ${at} says fine_tune_type "full"`,
      `  - adapter/adapters.safetensors: tensor "${M}.lora_b" is a LoRA factor but ${at} says fine_tune_type "full"`].join('\n'));
  });
});

describe('single files: folders, metadata and tensors the loaders would not read as they stand', () => {
  it('refuses a folder of two .safetensors files without adapter_config.json (which one is the adapter?)', async () => {
    const files = { 'a.safetensors': qProjSingleFile(rand)['adapter.safetensors'], 'b.safetensors': qProjSingleFile(rand)['adapter.safetensors'] };
    expect(await refusal(files)).toBe('adapter: holds 2 .safetensors files and no adapter_config.json; name the adapter file itself');
  });

  it('refuses mlx_lm.lora\'s output folder without its adapter_config.json (adapters.safetensors and a checkpoint) as an mlx-lm adapter', async () => {
    const factors = () => buildSafetensors([t(`${Q}.lora_a`, [8, 2]), t(`${Q}.lora_b`, [2, 8])], { format: 'mlx' });
    expect(await refusal({ 'adapters.safetensors': factors(), '0000100_adapters.safetensors': factors() }))
      .toBe('adapter: 0000100_adapters.safetensors looks like an mlx-lm adapter but adapter_config.json is missing (it holds lora_parameters.scale); pass the adapter folder that mlx_lm.lora wrote, with its adapter_config.json');
  });

  it('refuses diffusers\' lora_adapter_metadata that is not JSON, or not a JSON object', async () => {
    const withMetadata = (text: string) => ({ 'adapter.safetensors': buildSafetensors([t(`${Q}.lora_A.weight`, [2, 8]), t(`${Q}.lora_B.weight`, [8, 2])], { lora_adapter_metadata: text }) });
    expect(await refusal(withMetadata('{"r": 2, "lora_alpha": 4')))
      .toMatch(/^adapter\/adapter\.safetensors: metadata "lora_adapter_metadata" is not valid JSON \(.+\)$/);
    expect(await refusal(withMetadata('[2, 4]'))).toBe('adapter/adapter.safetensors: metadata "lora_adapter_metadata" is not a JSON object');
  });

  it('refuses a LyCORIS LoHa module with a tensor LoHa does not read (a LoCon lora_mid)', async () => {
    const k = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const files = { 'adapter.safetensors': buildSafetensors([
      t(`${k}.hada_w1_a`, [8, 2]), t(`${k}.hada_w1_b`, [2, 8]), t(`${k}.hada_w2_a`, [8, 2]), t(`${k}.hada_w2_b`, [2, 8]), t(`${k}.lora_mid.weight`, [2, 2, 3, 3]),
    ]) };
    expect(await refusal(files)).toBe(`adapter/adapter.safetensors: module "${k}" is LoHa, which does not read "${k}.lora_mid.weight"`);
  });

  it('refuses a LyCORIS (IA)³ on_input that is not one number', async () => {
    const k = 'lora_unet_down_blocks_0_attentions_0_proj_in';
    const files = { 'adapter.safetensors': buildSafetensors([t(`${k}.weight`, [8]), t(`${k}.on_input`, [2], 'I64')]) };
    expect(await refusal(files)).toBe(`adapter/adapter.safetensors: module "${k}" has an on_input that is not one finite number: ${k}.on_input is I64 (2) with 2 values`);
  });
});
