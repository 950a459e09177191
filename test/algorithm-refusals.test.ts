/**
 * Refusals of the per-algorithm shape and completeness checks (src/formats/algorithms): each file
 * here is one a tool would not write or could not load, with the real key names and shapes of its
 * layout, and the plan (or the MergeError) must name the module and what is wrong. Without the check
 * each of these would reach the engine: some crash with a TypeError, some merge a wrong-shaped update.
 */
import { expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { isMergeError } from '../src/errors.js';
import { buildSafetensors, randomValues, seededRandom, type FixtureDType, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';
import { preparePeftFolder } from './helpers/peft-method-folder.js';

const rand = seededRandom(97);
const t = (name: string, shape: number[], dtype: FixtureDType = 'F32'): FixtureTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  // Integer tensors (positions, indices) hold zeros: every check here refuses on shapes or dtypes.
  return { name, dtype, shape, data: dtype.startsWith('I') ? new Float64Array(n) : randomValues(n, rand, 0.5) };
};
const scalar = (name: string, value: number): FixtureTensor => ({ name, dtype: 'F32', shape: [], data: [value] });

/**
 * What a plan of `adapter` on `base` says is wrong: its problems, or the MergeError it throws.
 * Anything else (a TypeError from a check let through) fails the test with its stack.
 */
async function refusal(base: FixtureTensor[], adapter: FixtureTensor[]): Promise<string> {
  const files = { 'model.safetensors': buildSafetensors(base) };
  try {
    const { plan } = await prepareMerge(memoryInputFileSet(files, 'base'), [{ files: memoryInputFileSet({ 'a.safetensors': buildSafetensors(adapter) }, 'a') }]);
    return plan.problems.map((p) => p.message).join('\n');
  } catch (e) {
    if (!isMergeError(e)) throw e;
    return e.message;
  }
}

// An SD UNet's to_q (out 8, in 6) under its kohya/LyCORIS name, and a 3×3 conv (out 4, in 2).
const TO_Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const CONV = 'down_blocks.0.resnets.0.conv1';
const toQ = `lora_unet_${TO_Q.replace(/\./g, '_')}`;
const conv = `lora_unet_${CONV.replace(/\./g, '_')}`;
const base = [t(`${TO_Q}.weight`, [8, 6]), t(`${CONV}.weight`, [4, 2, 3, 3])];
const named = (module: string) => new RegExp(`module "${module}"`);

it('LyCORIS full: a scalar diff is refused, naming the module', async () => {
  const message = await refusal(base, [t(`${toQ}.diff`, [])]);
  expect(message).toMatch(named(toQ));
  expect(message).toMatch(/diff .* is a scalar; it should be shaped like the weight/);
});

it('LyCORIS GLoRA: a module without one of a1, a2, b1, b2, and factors that do not fit, are refused', async () => {
  const glora = (a1: number[], a2: number[], b1: number[], b2: number[]) => [t(`${toQ}.a1.weight`, a1), t(`${toQ}.a2.weight`, a2), t(`${toQ}.b1.weight`, b1), t(`${toQ}.b2.weight`, b2), scalar(`${toQ}.alpha`, 2)];
  const missing = await refusal(base, glora([6, 2], [2, 6], [8, 2], [2, 6]).filter((x) => !x.name.endsWith('.b2.weight')));
  expect(missing).toMatch(named(toQ));
  expect(missing).toMatch(/needs a1\.weight, a2\.weight, b1\.weight and b2\.weight/);
  // b2 of rank 3 against a2's 2.
  const shapes = await refusal(base, glora([6, 2], [2, 6], [8, 2], [3, 6]));
  expect(shapes).toMatch(named(toQ));
  expect(shapes).toMatch(/GLoRA a1 \(6, 2\), a2 \(2, 6\), b1 \(8, 2\), b2 \(3, 6\) do not fit together/);
});

it('LyCORIS (IA)³: on_input without its weight is refused', async () => {
  const message = await refusal(base, [scalar(`${conv}.on_input`, 0)]);
  expect(message).toMatch(named(conv));
  expect(message).toMatch(/needs weight and on_input/);
});

it('LyCORIS (IA)³: a weight that is neither (channels,) nor (1, channels, 1…) is refused', async () => {
  // (2, 4, 1, 1): its second dim is the conv's 4 outputs, so only this check stands between it and the merge.
  const message = await refusal(base, [t(`${conv}.weight`, [2, 4, 1, 1]), scalar(`${conv}.on_input`, 0)]);
  expect(message).toMatch(named(conv));
  expect(message).toMatch(/weight \(2, 4, 1, 1\) is neither \(channels,\) nor \(1, channels, 1…\)/);
});

it('LyCORIS LoHa: factors whose ranks or sides do not fit are refused, plain and Tucker', async () => {
  // hada_w2_a (8, 3) against hada_w2_b's rank 2.
  const plain = await refusal(base, [t(`${toQ}.hada_w1_a`, [8, 2]), t(`${toQ}.hada_w1_b`, [2, 6]), t(`${toQ}.hada_w2_a`, [8, 3]), t(`${toQ}.hada_w2_b`, [2, 6]), scalar(`${toQ}.alpha`, 2)]);
  expect(plain).toMatch(named(toQ));
  expect(plain).toMatch(/LoHa tensors w1_a, w1_b, w2_a, w2_b \(8, 2\), \(2, 6\), \(8, 3\), \(2, 6\) do not fit together/);
  // Tucker: hada_t2 (2, 2, 1, 1) against hada_t1's 3×3 kernel.
  const tucker = await refusal(base, [
    t(`${conv}.hada_w1_a`, [2, 4]), t(`${conv}.hada_w1_b`, [2, 2]), t(`${conv}.hada_t1`, [2, 2, 3, 3]),
    t(`${conv}.hada_w2_a`, [2, 4]), t(`${conv}.hada_w2_b`, [2, 2]), t(`${conv}.hada_t2`, [2, 2, 1, 1]), scalar(`${conv}.alpha`, 2),
  ]);
  expect(tucker).toMatch(named(conv));
  expect(tucker).toMatch(/LoHa tensors w1_a, w1_b, w2_a, w2_b, t1, t2 .* do not fit together/);
});

// A GroupNorm of the same UNet (8 channels) for the norm diffs.
const NORM = 'down_blocks.0.attentions.0.norm';
const norm = `lora_unet_${NORM.replace(/\./g, '_')}`;
const withNorm = [...base, t(`${NORM}.weight`, [8]), t(`${NORM}.bias`, [8])];

it('LyCORIS LoHa, LoKr and LoCon: a dora_scale that fits neither side is refused, not dropped', async () => {
  const loha = [t(`${toQ}.hada_w1_a`, [8, 2]), t(`${toQ}.hada_w1_b`, [2, 6]), t(`${toQ}.hada_w2_a`, [8, 2]), t(`${toQ}.hada_w2_b`, [2, 6]), scalar(`${toQ}.alpha`, 2)];
  const lokr = [t(`${toQ}.lokr_w1`, [2, 2]), t(`${toQ}.lokr_w2`, [4, 3])];
  const locon = [t(`${toQ}.lora_down.weight`, [2, 6]), t(`${toQ}.lora_up.weight`, [8, 2]), scalar(`${toQ}.alpha`, 2)];
  for (const [what, tensors] of [['LoHa', loha], ['LoKr', lokr], ['LoCon', locon]] as const) {
    const message = await refusal(base, [...tensors, t(`${toQ}.dora_scale`, [5, 1])]);
    expect(message, what).toMatch(named(toQ));
    expect(message, what).toMatch(/dora_scale \(5, 1\) fits neither 6 inputs nor 8 outputs/);
  }
});

it('LyCORIS LoKr: factors that do not fit together are refused, for every factor form', async () => {
  const cases: [string, FixtureTensor[]][] = [
    ['w1 3-D', [t(`${toQ}.lokr_w1`, [2, 2, 1]), t(`${toQ}.lokr_w2`, [4, 3])]],
    ['w1_a against w1_b', [t(`${toQ}.lokr_w1_a`, [2, 1]), t(`${toQ}.lokr_w1_b`, [2, 2]), t(`${toQ}.lokr_w2`, [4, 3]), scalar(`${toQ}.alpha`, 1)]],
    ['w2 1-D', [t(`${toQ}.lokr_w1`, [2, 2]), t(`${toQ}.lokr_w2`, [12])]],
    ['w2_a against w2_b', [t(`${toQ}.lokr_w1`, [2, 2]), t(`${toQ}.lokr_w2_a`, [4, 2]), t(`${toQ}.lokr_w2_b`, [1, 3]), scalar(`${toQ}.alpha`, 2)]],
    ['t2 against w2_a', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [1, 2]), t(`${conv}.lokr_w2_b`, [2, 1]), t(`${conv}.lokr_t2`, [2, 2, 3, 3]), scalar(`${conv}.alpha`, 2)]],
  ];
  for (const [what, tensors] of cases) {
    const message = await refusal(base, tensors);
    expect(message, what).toMatch(named(tensors[0].name.slice(0, tensors[0].name.indexOf('.'))));
    expect(message, what).toMatch(/LoKr factors .* do not fit together/);
  }
});

it('LoCon: a lora_mid that does not fit its down and up is refused', async () => {
  // Rank 2, but lora_mid (3, 3, 3, 3).
  const message = await refusal(base, [t(`${conv}.lora_down.weight`, [2, 2, 1, 1]), t(`${conv}.lora_mid.weight`, [3, 3, 3, 3]), t(`${conv}.lora_up.weight`, [4, 2, 1, 1]), scalar(`${conv}.alpha`, 2)]);
  expect(message).toMatch(named(conv));
  expect(message).toMatch(/lora_mid .* \(3, 3, 3, 3\) does not fit down \(2, 2, 1, 1\) and up \(4, 2, 1, 1\)/);
});

it('LyCORIS norm diffs: b_norm without w_norm, and vectors of two sizes, are refused', async () => {
  const lone = await refusal(withNorm, [t(`${norm}.b_norm`, [8])]);
  expect(lone).toMatch(named(norm));
  expect(lone).toMatch(/has b_norm but no w_norm/);
  const sizes = await refusal(withNorm, [t(`${norm}.w_norm`, [8]), t(`${norm}.b_norm`, [4])]);
  expect(sizes).toMatch(named(norm));
  expect(sizes).toMatch(/w_norm \(8\) and b_norm \(4\) should be vectors of one size/);
});

it('LyCORIS diag-OFT: a rescale without oft_blocks is refused', async () => {
  const message = await refusal(base, [t(`${toQ}.rescale`, [8, 1])]);
  expect(message).toMatch(named(toQ));
  expect(message).toMatch(/has rescale but no oft_blocks/);
});

it('a lone diff_b that is not a vector, and a scalar set_weight, are refused', async () => {
  const diffB = await refusal(base, [t(`${toQ}.diff_b`, [8, 1])]);
  expect(diffB).toMatch(named(toQ));
  expect(diffB).toMatch(/diff_b .* \(8, 1\) should be a vector/);
  const setWeight = await refusal(withNorm, [t(`${norm}.set_weight`, [])]);
  expect(setWeight).toMatch(named(norm));
  expect(setWeight).toMatch(/set_weight .* \(\) is a scalar; it should be shaped like the tensor it replaces/);
});

// PEFT methods on a Llama q_proj (8, 8), tensors named and shaped as PEFT saves them.
const Q = 'model.layers.0.self_attn.q_proj';
const A = `base_model.model.${Q}`;
// With a bias, so that BEFT reaches its own shape check.
const peftBase = [t(`${Q}.weight`, [8, 8]), t(`${Q}.bias`, [8])];
const peftNamed = new RegExp(`module "${Q.replace(/\./g, '\\.')}"`);

/** What a plan of a PEFT folder (its config and tensors) on the q_proj base says is wrong. */
async function peftRefusal(config: object, tensors: FixtureTensor[]): Promise<string> {
  try {
    const { plan } = await preparePeftFolder(peftBase, { target_modules: ['q_proj'], ...config }, tensors);
    return plan.problems.map((p) => p.message).join('\n');
  } catch (e) {
    if (!isMergeError(e)) throw e;
    return e.message;
  }
}

it.each<[string, object, FixtureTensor[], RegExp]>([
  ['AdaLoRA lora_E not (r, 1)', { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2 },
    [t(`${A}.lora_A`, [2, 8]), t(`${A}.lora_E`, [2, 2]), t(`${A}.lora_B`, [8, 2])], /lora_A \(2, 8\), lora_E \(2, 2\) and lora_B \(8, 2\) do not fit together/],
  ['BOFT boft_R not 4-D', { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [4, 2, 2]), t(`${A}.boft_s`, [8, 1])], /boft_R \(4, 2, 2\) is not \(factors, blocks, size, size\)/],
  ['BOFT boft_s (8, 2)', { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [1, 4, 2, 2]), t(`${A}.boft_s`, [8, 2])], /boft_s \(8, 2\) is neither \(out, 1\) nor \(1, out\)/],
  ['C3A kernel of another block size', { peft_type: 'C3A', block_size: 4 },
    [t(`${A}.c3a_kernel`, [4, 4, 2])], /c3a_kernel \(4, 4, 2\) is not \(outputs \/ b, inputs \/ b, b\) for the config's block size b = 4/],
  ['DeLoRA w_norm of 6', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [6])], /delora_w_norm \(6\) do not fit together/],
  ['DeLoRA rank against r', { peft_type: 'DELORA', r: 3 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [8])], /has rank 2 but the config \(r or rank_pattern\) says 3/],
  ['GraLoRA B of rank 3', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 0 },
    [t(`${A}.gralora_A`, [2, 4, 4]), t(`${A}.gralora_B`, [2, 3, 4])], /gralora_A \(2, 4, 4\) and gralora_B \(2, 3, 4\) are not/],
  ['GraLoRA general factors of another hybrid_r', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 2 },
    [t(`${A}.gralora_A`, [2, 4, 4]), t(`${A}.gralora_B`, [2, 4, 4]), t(`${A}.gralora_A_general.weight`, [3, 8]), t(`${A}.gralora_B_general.weight`, [8, 3])], /gralora_A_general\.weight \(3, 8\) and gralora_B_general\.weight \(8, 3\) are not \(hybrid_r, 8\)/],
  ['HiRA B of another rank', { peft_type: 'HIRA', r: 2 },
    [t(`${A}.hira_A`, [2, 8]), t(`${A}.hira_B`, [8, 3])], /hira_A \(2, 8\) and hira_B \(8, 3\) are not \(r, inputs\) and \(outputs, r\)/],
  ['HiRA rank against r', { peft_type: 'HIRA', r: 4 },
    [t(`${A}.hira_A`, [2, 8]), t(`${A}.hira_B`, [8, 2])], /hira_A \(2, 8\) has rank 2 but the config's r is 4/],
  ['OFT oft_R not b(b−1)/2 per block', { peft_type: 'OFT', r: 0, oft_block_size: 2 },
    [t(`${A}.oft_R.weight`, [4, 2])], /oft_R \(4, 2\) does not hold b\(b−1\)\/2 values per block/],
  ['OFT block_share with 4 rows', { peft_type: 'OFT', r: 0, oft_block_size: 2, block_share: true },
    [t(`${A}.oft_R.weight`, [4, 1])], /oft_R \(4, 1\) with block_share should have one row/],
  ['RoAd theta and alpha of two sizes', { peft_type: 'ROAD', variant: 'road_1', group_size: 2 },
    [t(`${A}.road_theta`, [8]), t(`${A}.road_alpha`, [6])], /road_theta \(8\) and road_alpha \(6\) are not two vectors/],
  ['RandLoRA lambda not (r, nb)', { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 },
    [t(`${A}.randlora_lambda`, [2, 3]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 1, 8]), t('base_model.randlora_B', [8, 4, 2])], /randlora_lambda \(2, 3\) and randlora_gamma \(4, 8\) are not \(r, nb\)/],
  ['RandLoRA shared A too narrow', { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 },
    [t(`${A}.randlora_lambda`, [2, 4]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 1, 6]), t('base_model.randlora_B', [8, 4, 2])], /the shared randlora_A \(2, 1, 6\) and randlora_B \(8, 4, 2\) are not/],
  ['VB-LoRA bank of another size', { peft_type: 'VBLORA', r: 2, topk: 2, num_vectors: 4, vector_length: 4 },
    [t(`${A}.vblora_logits_A`, [2, 2, 4]), t(`${A}.vblora_logits_B`, [2, 2, 4]), t('base_model.vblora_vector_bank', [4, 2])], /vblora_vector_bank \(4, 2\) is not \(num_vectors, vector_length\) = \(4, 4\)/],
  ['VB-LoRA topk above num_vectors', { peft_type: 'VBLORA', r: 2, topk: 5, num_vectors: 4, vector_length: 4 },
    [t(`${A}.vblora_logits_A`, [2, 2, 4]), t(`${A}.vblora_logits_B`, [2, 2, 4]), t('base_model.vblora_vector_bank', [4, 4])], /topk = 5 is not between 1 and num_vectors = 4/],
  ['VB-LoRA logits_B of another rank', { peft_type: 'VBLORA', r: 2, topk: 2, num_vectors: 4, vector_length: 4 },
    [t(`${A}.vblora_logits_A`, [2, 2, 4]), t(`${A}.vblora_logits_B`, [2, 3, 4]), t('base_model.vblora_vector_bank', [4, 4])], /vblora_logits_B \(2, 3, 4\) is not/],
  ['VeRA vera_A of rank 3', { peft_type: 'VERA', r: 2 },
    [t(`${A}.vera_lambda_b`, [8]), t(`${A}.vera_lambda_d`, [2]), t('base_model.vera_A', [3, 8]), t('base_model.vera_B', [8, 2])], /VeRA vera_lambda_b \(8\), vera_lambda_d \(2\), vera_A \(3, 8\) and vera_B \(8, 2\) do not fit together/],
  ['VeRA without vera_lambda_d', { peft_type: 'VERA', r: 2 },
    [t(`${A}.vera_lambda_b`, [8]), t('base_model.vera_A', [2, 8]), t('base_model.vera_B', [8, 2])], /needs vera_lambda_b, vera_lambda_d and the shared vera_A and vera_B/],
  ['PVeRA lambda_d not 2r', { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 },
    [t(`${A}.pvera_lambda_b`, [8]), t(`${A}.pvera_lambda_d`, [3]), t('base_model.pvera_A', [4, 8]), t('base_model.pvera_B', [8, 2])], /PVeRA pvera_lambda_b \(8\), pvera_lambda_d \(3\), pvera_A \(4, 8\) and pvera_B \(8, 2\) do not fit together/],
  ['SHiRA indices of another count', { peft_type: 'SHIRA', r: 2 },
    [t(`${A}.shira_weight`, [4]), t(`${A}.shira_indices`, [2, 3], 'I32')], /shira_weight \(4\) and shira_indices \(2, 3\) do not fit together/],
  ['Super-Tuning indices of another count', { peft_type: 'SUPERTUNING', r: null, lora_alpha: null, sparsity: 0.99, save_precomputed_indices: true },
    [t(`${A}.supertuning_values`, [5]), t(`${A}.supertuning_indices`, [4], 'I32')], /supertuning_values \(5\) and supertuning_indices \(4\) do not fit together/],
  ['TinyLoRA P not (u, r, r)', { peft_type: 'TINYLORA', r: 2, u: 3, weight_tying: 1.0, projection_seed: 42, save_projection: true },
    [t(`${A}.tinylora_A`, [2, 8]), t(`${A}.tinylora_B`, [8, 2]), t(`${A}.tinylora_P`, [3, 2, 3]), t('base_model.tinylora_v.0', [3])], /tinylora_P \(3, 2, 3\) and tinylora_v \(3\) do not fit together/],
  ['UniLoRA scales_B not shaped like indices_B', { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true },
    [t(`${A}.unilora_indices_A`, [2, 8], 'I64'), t(`${A}.unilora_indices_B`, [8, 2], 'I64'), t(`${A}.unilora_scales_A`, [2, 8]), t(`${A}.unilora_scales_B`, [8, 3]), t('base_model.unilora_theta_d', [16])],
    /unilora_scales_B \(8, 3\) and unilora_theta_d \(16\) do not fit together/],
  ['BEFT bias (2, 8)', { peft_type: 'BEFT' }, [t(`${A}.beft_bias`, [2, 8])], /beft_bias \(2, 8\) should be \(1, out\)/],
  ['OFT (PEFT 0.13) oft_r not (blocks, size, size)', { peft_type: 'OFT', r: 4, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [4, 2, 3])], /oft_r \(4, 2, 3\) is not \(blocks, size, size\)/],
  ['OFT (PEFT 0.14) oft_s (8, 2)', { peft_type: 'OFT', r: 4, oft_block_size: 2, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [4, 2, 2]), t(`${A}.oft_s`, [8, 2])], /oft_s \(8, 2\) is neither \(out, 1\) nor \(1, out\)/],
  ['BOFT without boft_s', { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [1, 4, 2, 2])], /needs boft_R and boft_s \(it has only boft_R\)/],
  ['DeLoRA without delora_w_norm', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [1])], /delora_w_norm .*is missing/],
  ['GraLoRA without gralora_B', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 0 },
    [t(`${A}.gralora_A`, [2, 4, 4])], /needs gralora_A and gralora_B; gralora_B is missing/],
  ['GraLoRA r not a multiple of gralora_k', { peft_type: 'GRALORA', r: 3, gralora_k: 2, hybrid_r: 0 },
    [t(`${A}.gralora_A`, [2, 4, 3]), t(`${A}.gralora_B`, [2, 3, 4])], /r = 3 is not a multiple of gralora_k = 2/],
  ['GraLoRA hybrid_r without the general factors', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 2 },
    [t(`${A}.gralora_A`, [2, 4, 4]), t(`${A}.gralora_B`, [2, 4, 4])], /has hybrid_r = 2 in the config but not both gralora_A_general\.weight and gralora_B_general\.weight/],
  ['HiRA without hira_B', { peft_type: 'HIRA', r: 2 }, [t(`${A}.hira_A`, [2, 8])], /has hira_A without hira_B/],
  ['OFT (PEFT 0.14) oft_s without oft_r', { peft_type: 'OFT', r: 4, oft_block_size: 2, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_s`, [8, 1])], /has oft_s but no oft_r/],
  ['OFT (PEFT 0.13) block_share with 4 blocks', { peft_type: 'OFT', r: 4, block_share: true, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [4, 2, 2])], /oft_r \(4, 2, 2\) with block_share should have one block/],
  ['PVeRA without pvera_lambda_d', { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 },
    [t(`${A}.pvera_lambda_b`, [8]), t('base_model.pvera_A', [4, 8]), t('base_model.pvera_B', [8, 2])], /pvera_lambda_d is missing/],
  ['RandLoRA without randlora_gamma', { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 },
    [t(`${A}.randlora_lambda`, [2, 4]), t('base_model.randlora_A', [2, 1, 8]), t('base_model.randlora_B', [8, 4, 2])], /randlora_gamma is missing/],
  ['RoAd without road_alpha', { peft_type: 'ROAD', variant: 'road_1', group_size: 2 }, [t(`${A}.road_theta`, [8])], /has road_theta without road_alpha/],
  ['SHiRA indices in int8', { peft_type: 'SHIRA', r: 2 },
    [t(`${A}.shira_weight`, [4]), t(`${A}.shira_indices`, [2, 4], 'I8')], /shira_indices is I8; expected I32/],
  ['Super-Tuning indices in float32', { peft_type: 'SUPERTUNING', r: null, lora_alpha: null, sparsity: 0.99, save_precomputed_indices: true },
    [t(`${A}.supertuning_values`, [4]), t(`${A}.supertuning_indices`, [4], 'F32')], /supertuning_indices is F32; expected I32/],
  ['Super-Tuning without supertuning_values', { peft_type: 'SUPERTUNING', r: null, lora_alpha: null, sparsity: 0.99, save_precomputed_indices: true },
    [t(`${A}.supertuning_indices`, [4], 'I32')], /has no supertuning_values/],
  ['TinyLoRA without tinylora_B', { peft_type: 'TINYLORA', r: 2, u: 3, weight_tying: 1.0, projection_seed: 42, save_projection: true },
    [t(`${A}.tinylora_A`, [2, 8]), t(`${A}.tinylora_P`, [3, 2, 2]), t('base_model.tinylora_v.0', [3])], /tinylora_B is missing/],
  ['UniLoRA indices in float32', { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true },
    [t(`${A}.unilora_indices_A`, [2, 8], 'F32'), t(`${A}.unilora_indices_B`, [8, 2], 'F32'), t(`${A}.unilora_scales_A`, [2, 8]), t(`${A}.unilora_scales_B`, [8, 2]), t('base_model.unilora_theta_d', [16])],
    /unilora_indices_A and _B are F32 and F32; expected I64/],
])('PEFT %s is refused, naming the module', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// PEFT-only tensor names in a plain safetensors file (no adapter_config.json): the config these
// methods need (ranks, seeds, block sizes) is not there, so each is refused rather than guessed.
it.each<[string, FixtureTensor[]]>([
  // lora_A/lora_B beside it would read as a LoRA too, which is refused as a mix first.
  ['AdaLoRA', [t(`${toQ}.lora_E`, [2, 1])]],
  ['BEFT', [t(`${toQ}.beft_bias`, [1, 8])]],
  ['C3A', [t(`${toQ}.c3a_kernel`, [4, 3, 2])]],
  ['DEFT', [t(`${toQ}.deft_P`, [8, 2]), t(`${toQ}.deft_R`, [2, 6])]],
  ['DeLoRA', [t(`${toQ}.delora_A`, [2, 6]), t(`${toQ}.delora_B`, [8, 2]), t(`${toQ}.delora_lambda`, [1]), t(`${toQ}.delora_w_norm`, [6])]],
  ['FourierFT', [t(`${toQ}.fourierft_spectrum`, [4])]],
  ['GraLoRA', [t(`${toQ}.gralora_A`, [2, 3, 2]), t(`${toQ}.gralora_B`, [2, 2, 4])]],
  ['GLoRA (PEFT\'s own)', [t(`${toQ}.glora_A.Xd`, [8, 2]), t(`${toQ}.glora_A.Xu`, [2, 6]), t(`${toQ}.glora_B.Xd`, [8, 2]), t(`${toQ}.glora_B.Xu`, [2, 6])]],
  ['HiRA', [t(`${toQ}.hira_A`, [2, 6]), t(`${toQ}.hira_B`, [8, 2])]],
  ['HRA', [t(`${toQ}.hra_u`, [6, 2])]],
  ['MiSS', [t(`${toQ}.miss_block`, [2, 8])]],
  ['OFT (PEFT 0.13)', [t(`${toQ}.oft_r`, [4, 2, 2])]],
  ['PVeRA', [t(`${toQ}.pvera_lambda_b`, [8]), t(`${toQ}.pvera_lambda_d`, [4])]],
  ['RandLoRA', [t(`${toQ}.randlora_lambda`, [2, 3]), t(`${toQ}.randlora_gamma`, [3, 6])]],
  ['RoAd', [t(`${toQ}.road_theta`, [8]), t(`${toQ}.road_alpha`, [8])]],
  ['Super-Tuning', [t(`${toQ}.supertuning_values`, [4]), t(`${toQ}.supertuning_indices`, [4], 'I32')]],
  ['TinyLoRA', [t(`${toQ}.tinylora_A`, [2, 6]), t(`${toQ}.tinylora_B`, [8, 2]), t(`${toQ}.tinylora_P`, [3, 2, 2])]],
  ['UniLoRA', [t(`${toQ}.unilora_indices_A`, [2, 6], 'I64'), t(`${toQ}.unilora_indices_B`, [8, 2], 'I64'), t(`${toQ}.unilora_scales_A`, [2, 6]), t(`${toQ}.unilora_scales_B`, [8, 2])]],
  ['VB-LoRA', [t(`${toQ}.vblora_logits_A`, [2, 2, 4]), t(`${toQ}.vblora_logits_B`, [2, 2, 4])]],
])('PEFT %s tensors outside a PEFT folder are refused, naming the module', async (_what, tensors) => {
  const message = await refusal(base, tensors);
  expect(message).toMatch(named(toQ));
  expect(message).toMatch(/outside a PEFT folder with its adapter_config\.json/);
});

it('an oft_R under PEFT\'s own names without adapter_config.json is refused (OneTrainer\'s OFT, in its own names, merges: onetrainer-oft.test.ts)', async () => {
  const message = await refusal(base, [t('base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.oft_R.weight', [2, 3])]);
  expect(message).toMatch(/looks like a PEFT adapter but adapter_config\.json is missing/);
});

// Checks no other case here reached (found by disabling each check in turn): without them a file
// like these crashed the plan with a TypeError or merged an update shaped by a missing tensor.
it('LyCORIS LoHa: a module without one of its four factors, or with one Tucker core alone (hada_t1 or hada_t2; one factor Tucker, the other not), is refused', async () => {
  const loha = [t(`${toQ}.hada_w1_a`, [8, 2]), t(`${toQ}.hada_w1_b`, [2, 6]), t(`${toQ}.hada_w2_a`, [8, 2]), t(`${toQ}.hada_w2_b`, [2, 6]), scalar(`${toQ}.alpha`, 2)];
  const missing = await refusal(base, loha.filter((x) => !x.name.endsWith('.hada_w2_b')));
  expect(missing).toMatch(named(toQ));
  expect(missing).toMatch(/needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b, and hada_t1 and hada_t2 together or not at all/);
  // A Tucker LoHa on the 3×3 conv that lost hada_t2.
  const oneSided = await refusal(base, [
    t(`${conv}.hada_w1_a`, [2, 4]), t(`${conv}.hada_w1_b`, [2, 2]), t(`${conv}.hada_t1`, [2, 2, 3, 3]),
    t(`${conv}.hada_w2_a`, [2, 4]), t(`${conv}.hada_w2_b`, [2, 2]), scalar(`${conv}.alpha`, 2),
  ]);
  const pairs = /: LyCORIS and PEFT write LoHa's Tucker cores as a pair or not at all \(no trainer makes one Hadamard factor Tucker and the other not\), so this module is incomplete$/;
  expect(oneSided).not.toMatch(/\n/);
  expect(oneSided).toMatch(named(conv));
  expect(oneSided).toMatch(/ has hada_t1 without hada_t2: /);
  expect(oneSided).toMatch(pairs);
  // "Mixed": factor 1 Tucker (hada_t1 (r, r, 3, 3), w1_a (r, out), w1_b (r, in)), factor 2 flattened
  // (w2_a (out, r), w2_b (r, in·3·3)), each side a LyCORIS layout but not together: LoHaModule's
  // use_tucker gives both factors a core or neither. And hada_t2 alone on the flattened form.
  const mixed = await refusal(base, [
    t(`${conv}.hada_t1`, [2, 2, 3, 3]), t(`${conv}.hada_w1_a`, [2, 4]), t(`${conv}.hada_w1_b`, [2, 2]),
    t(`${conv}.hada_w2_a`, [4, 2]), t(`${conv}.hada_w2_b`, [2, 18]), scalar(`${conv}.alpha`, 2),
  ]);
  expect(mixed).not.toMatch(/\n/);
  expect(mixed).toMatch(named(conv));
  expect(mixed).toMatch(/ has hada_t1 without hada_t2: /);
  expect(mixed).toMatch(pairs);
  const secondOnly = await refusal(base, [
    t(`${conv}.hada_w1_a`, [4, 2]), t(`${conv}.hada_w1_b`, [2, 18]),
    t(`${conv}.hada_t2`, [2, 2, 3, 3]), t(`${conv}.hada_w2_a`, [2, 4]), t(`${conv}.hada_w2_b`, [2, 2]), scalar(`${conv}.alpha`, 2),
  ]);
  expect(secondOnly).not.toMatch(/\n/);
  expect(secondOnly).toMatch(/ has hada_t2 without hada_t1: /);
  expect(secondOnly).toMatch(pairs);
});

// LyCORIS lists lokr_t1 in LokrModule.weight_list, but its constructor never builds it (only a
// prototype of 2023-04-07, before LoKr's first release, had one) and make_module_from_state_dict
// drops it unread; PEFT's LoKrLayer and ComfyUI's LoKrAdapter have no such tensor. Refused in one
// line saying so, not as an unknown tensor plus a shape mismatch.
it('LyCORIS LoKr: a module with lokr_t1 (a Tucker core for W₁) is refused in one line naming it', async () => {
  const expected = /^a\/a\.safetensors: module "lora_unet_down_blocks_0_resnets_0_conv1" has lokr_t1, a Tucker core for the first LoKr factor, which no LyCORIS release \(nor PEFT or ComfyUI\) writes or applies: their LoKr has a Tucker core for the second factor only \(lokr_t2\), so what this module does to the weight cannot be told$/;
  // The prototype's layout: t1 (r, r, 3, 3), w1_a (r, a), w1_b (r, c) beside the t2 form of W₂.
  const prototype = await refusal(base, [
    t(`${conv}.lokr_t1`, [2, 2, 3, 3]), t(`${conv}.lokr_w1_a`, [2, 2]), t(`${conv}.lokr_w1_b`, [2, 1]),
    t(`${conv}.lokr_t2`, [2, 2, 3, 3]), t(`${conv}.lokr_w2_a`, [2, 2]), t(`${conv}.lokr_w2_b`, [2, 2]), scalar(`${conv}.alpha`, 2),
  ]);
  expect(prototype).toMatch(expected);
  // A lokr_t1 beside factors that would otherwise merge (w1_a (a, r)·w1_b (r, c), w2 whole).
  const beside = await refusal(base, [
    t(`${conv}.lokr_t1`, [1, 1, 3, 3]), t(`${conv}.lokr_w1_a`, [2, 1]), t(`${conv}.lokr_w1_b`, [1, 1]),
    t(`${conv}.lokr_w2`, [2, 2, 3, 3]), scalar(`${conv}.alpha`, 1),
  ]);
  expect(beside).toMatch(expected);
});

it('LyCORIS (IA)³: a 0-d weight is refused', async () => {
  const message = await refusal(base, [t(`${toQ}.weight`, []), scalar(`${toQ}.on_input`, 0)]);
  expect(message).toMatch(named(toQ));
  expect(message).toMatch(/weight \(\) is neither \(channels,\) nor \(1, channels, 1…\)/);
});

// VB-LoRA saved with save_only_topk_weights (r 2, topk 2, num_vectors 4, vector_length 4 on the 8×8
// q_proj): per factor the top-k indices (…, topk) and the first topk − 1 softmax weights.
const VB_TOPK = { peft_type: 'VBLORA', r: 2, topk: 2, num_vectors: 4, vector_length: 4, save_only_topk_weights: true };
const vbTopk = (indices: FixtureDType, weights: FixtureDType = 'F32') => [
  t(`${A}.vblora_logits_A_topk_indices`, [2, 2, 2], indices), t(`${A}.vblora_logits_A_topk_weights`, [2, 2, 1], weights),
  t(`${A}.vblora_logits_B_topk_indices`, [2, 2, 2], indices), t(`${A}.vblora_logits_B_topk_weights`, [2, 2, 1], weights),
  t('base_model.vblora_vector_bank', [4, 4]),
];

it.each<[string, object, FixtureTensor[], RegExp]>([
  ['HiRA with hira_A beside hira_embedding_A and _B', { peft_type: 'HIRA', r: 2 },
    [t(`${A}.hira_A`, [2, 8]), t(`${A}.hira_embedding_A`, [2, 8]), t(`${A}.hira_embedding_B`, [8, 2])], /mixes a layer's hira_A\/hira_B with an embedding's hira_embedding_A\/hira_embedding_B/],
  ['OFT with both oft_R and oft_embedding_R', { peft_type: 'OFT', r: 0, oft_block_size: 2 },
    [t(`${A}.oft_R.weight`, [4, 1]), t(`${A}.oft_embedding_R.weight`, [4, 1])], /has both oft_R and oft_embedding_R/],
  ['UniLoRA indices without their scales', { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true },
    [t(`${A}.unilora_indices_A`, [2, 8], 'I64'), t(`${A}.unilora_indices_B`, [8, 2], 'I64'), t('base_model.unilora_theta_d', [16])],
    /needs unilora_indices_A\/_B and unilora_scales_A\/_B .*; unilora_scales_A, unilora_scales_B are missing/],
  ['DEFT deft_R of another rank than deft_P', { peft_type: 'DEFT', r: 2 },
    [t(`${A}.deft_P`, [8, 2]), t(`${A}.deft_R`, [3, 8])], /deft_P \(8, 2\) and deft_R \(3, 8\) are not \(out, r\) and \(r, in\)/],
  ['BEFT bias 0-d', { peft_type: 'BEFT' }, [t(`${A}.beft_bias`, [])], /beft_bias \(\) should be \(1, out\)/],
  ['BEFT bias 3-d', { peft_type: 'BEFT' }, [t(`${A}.beft_bias`, [1, 1, 8])], /beft_bias \(1, 1, 8\) should be \(1, out\)/],
  ['PEANuT peanut_A without peanut_B', { peft_type: 'PEANUT', r: 2, depth: 0, act_fn: 'relu', scaling: 1.0 },
    [t(`${A}.peanut_A.weight`, [2, 8])], /has peanut_A without peanut_B/],
  ['VB-LoRA logits_A beside top-k tensors of B', VB_TOPK,
    [t(`${A}.vblora_logits_A`, [2, 2, 4]), ...vbTopk('U8').filter((x) => !x.name.includes('_A_topk'))],
    /needs either vblora_logits_A and vblora_logits_B, or \(save_only_topk_weights\) their _topk_indices and _topk_weights/],
  ['VB-LoRA top-k indices in float32', VB_TOPK, vbTopk('F32'), /top-k indices are F32 and F32; expected integers/],
])('PEFT %s is refused, naming the module (checks no case above reaches)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

it.each<[string, FixtureTensor[]]>([
  ['(IA)³', [t(`${toQ}.ia3_l`, [8, 1])]],
  ['PEANuT', [t(`${toQ}.peanut_A.weight`, [2, 8]), t(`${toQ}.peanut_B.weight`, [8, 2])]],
])('PEFT %s tensors outside a PEFT folder are refused too, naming the module', async (_what, tensors) => {
  const message = await refusal(base, tensors);
  expect(message).toMatch(named(toQ));
  expect(message).toMatch(/outside a PEFT folder with its adapter_config\.json/);
});

// VB-LoRA values the plan cannot see: they are read when the module is merged. Each row here is
// one a training run cannot produce (torch.topk names distinct vectors of the bank, softmax weights
// lie in [0, 1] and the stored topk − 1 of them sum below 1), so the merge stops, naming the row.
const backends = mergeBackends({ cpu: 'default' });
const withValues = (x: FixtureTensor, values: number[]): FixtureTensor => ({ ...x, data: Float64Array.from(values) });

/** What merging the VB-LoRA folder (r 2, num_vectors 4, vector_length 4) into the q_proj base refuses. */
async function vbMergeRefusal(config: object, tensors: FixtureTensor[]): Promise<string[]> {
  const files = peftFolder({ target_modules: ['q_proj'], ...VB_TOPK, ...config }, tensors);
  return refusalsInMemory({ backend: backends.cpu!, base: { 'model.safetensors': buildSafetensors(peftBase) }, adapters: [{ files }] });
}

it.each<[string, object, (tensors: FixtureTensor[]) => FixtureTensor[], RegExp]>([
  ['an index past the bank', {}, ([ia, ...rest]) => [withValues(ia, [0, 1, 2, 4, 0, 1, 2, 3]), ...rest],
    /vblora_logits_A_topk_indices: index 4 in row 1 is outside the vector bank's 4 vectors/],
  ['a vector named twice in a row', {}, ([ia, ...rest]) => [withValues(ia, [0, 1, 2, 2, 0, 1, 2, 3]), ...rest],
    /vblora_logits_A_topk_indices: row 1 names vector 2 twice/],
  // Negative: the row's sum stays below 1, so only this check sees it.
  ['a negative weight', {}, ([ia, wa, ...rest]) => [ia, withValues(wa, [0.5, -0.25, 0.5, 0.5]), ...rest],
    /vblora_logits_A_topk_weights: weight -0\.25 in row 1 is not in \[0, 1\]/],
  ['topk 3 weights summing past 1', { topk: 3 }, () => [
    t(`${A}.vblora_logits_A_topk_indices`, [2, 2, 3], 'U8'), t(`${A}.vblora_logits_A_topk_weights`, [2, 2, 2]),
    t(`${A}.vblora_logits_B_topk_indices`, [2, 2, 3], 'U8'), t(`${A}.vblora_logits_B_topk_weights`, [2, 2, 2]), t('base_model.vblora_vector_bank', [4, 4]),
  ].map((x, i) => (i === 0 || i === 2 ? withValues(x, [0, 1, 2, 1, 2, 3, 2, 3, 0, 3, 0, 1]) : i === 1 ? withValues(x, [0.25, 0.25, 0.75, 0.5, 0.25, 0.25, 0.25, 0.25]) : i === 3 ? withValues(x, Array(8).fill(0.25)) : x)),
    /vblora_logits_A_topk_weights: the weights of row 1 sum to 1\.25, more than 1/],
])('VB-LoRA saved with save_only_topk_weights: %s is refused when merged, naming the module and row', async (_what, config, edit, pattern) => {
  const ok = (ia: FixtureTensor) => withValues(ia, [0, 1, 2, 3, 0, 1, 2, 3]);
  const [ia, wa, ib, wb, bank] = vbTopk('U8');
  const tensors = edit([ok(ia), withValues(wa, [0.5, 0.5, 0.5, 0.5]), ok(ib), withValues(wb, [0.5, 0.5, 0.5, 0.5]), bank]);
  const refusals = await vbMergeRefusal(config, tensors);
  expect(refusals).toHaveLength(1);
  expect(refusals[0]).toMatch(/VB-LoRA module "model\.layers\.0\.self_attn\.q_proj": /);
  expect(refusals[0]).toMatch(pattern);
});

it.each<[string, number[], RegExp]>([
  ['a NaN logit', [NaN, 1, 2, 3], /vblora_logits_A: logit NaN in row 0/],
  ['a row of -Infinity logits', [-Infinity, -Infinity, -Infinity, -Infinity], /vblora_logits_A: row 0 has no finite logit/],
  // Without the check, the row's softmax is exp(∞ − ∞) = NaN in every weight.
  ['a +Infinity logit', [Infinity, 1, 2, 3], /vblora_logits_A: logit Infinity in row 0/],
])('VB-LoRA logits with %s are refused when merged, naming the module and row', async (_what, row0, pattern) => {
  const logits = (name: string, shape: number[]) => withValues(t(name, shape), [...Array(4).keys()].flatMap((r) => (r === 0 && name.endsWith('_A') ? row0 : [r, 3 - r, 0.5, 1.5])));
  const refusals = await vbMergeRefusal({ save_only_topk_weights: false }, [
    logits(`${A}.vblora_logits_A`, [2, 2, 4]), logits(`${A}.vblora_logits_B`, [2, 2, 4]), t('base_model.vblora_vector_bank', [4, 4]),
  ]);
  expect(refusals).toHaveLength(1);
  expect(refusals[0]).toMatch(/VB-LoRA module "model\.layers\.0\.self_attn\.q_proj": /);
  expect(refusals[0]).toMatch(pattern);
});

/** PEFT's refusal of a method sized for a conv's in·kh² inputs on the 3×1 kernel of q_proj (title as a regex). */
const SQUARE_KERNEL_ONLY = (title: string) => new RegExp(`${title} sizes its update for a conv's in·kh² inputs \\(kernel_size\\[0\\] twice\\), as PEFT builds and merges it; "model\\.layers\\.0\\.self_attn\\.q_proj\\.weight" has a 3×1 kernel, on which PEFT cannot merge it`);

/** What merging a PEFT folder (its config, with target_modules q_proj) into `base` refuses, with the CPU backend. */
async function peftMergeRefusal(base: FixtureTensor[], config: object, tensors: FixtureTensor[]): Promise<string[]> {
  const files = peftFolder({ target_modules: ['q_proj'], ...config }, tensors);
  return refusalsInMemory({ backend: backends.cpu!, base: { 'model.safetensors': buildSafetensors(base) }, adapters: [{ files }] });
}

// Adapters trained on a layer of another size, merged into this base: where a side of the update is
// left to the base (shared OFT blocks, RandLoRA's sides, PEFT 0.13 OFT's outputs), only the merge
// meets the mismatch, and it names the module and both sizes.
it.each<[string, FixtureTensor[], object, FixtureTensor[], RegExp]>([
  ['OFT block_share blocks of 3 on 8 inputs', peftBase, { peft_type: 'OFT', r: 0, oft_block_size: 3, block_share: true },
    [t(`${A}.oft_R.weight`, [1, 3])], /OFT module "model\.layers\.0\.self_attn\.q_proj": blocks of 3 do not divide the layer's 8 inputs/],
  // PEFT sizes a conv's rotation as in·kh² (kernel_size[0] twice): on a 3×1 kernel, 2·9 inputs, not the 2·3 there are.
  ['OFT block_share on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'OFT', r: 0, oft_block_size: 3, block_share: true },
    [t(`${A}.oft_R.weight`, [1, 3])], SQUARE_KERNEL_ONLY('OFT \\(PEFT\\)')],
  // Without block_share, and for HRA and BOFT, PEFT's merge views the weight as (out, in·kh²) too, which fails on
  // a 3×1 kernel; an update sized for the 2·3 inputs there are is no file PEFT writes.
  ['OFT on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'OFT', r: 0, oft_block_size: 3, peft_version: '0.18.0' },
    [t(`${A}.oft_R.weight`, [2, 3])], SQUARE_KERNEL_ONLY('OFT \\(PEFT\\)')],
  ['HRA on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'HRA', r: 2 },
    [t(`${A}.hra_u`, [6, 2])], SQUARE_KERNEL_ONLY('HRA \\(PEFT\\)')],
  ['BOFT on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'BOFT', boft_block_size: 3, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [1, 2, 3, 3]), t(`${A}.boft_s`, [8, 1])], SQUARE_KERNEL_ONLY('BOFT \\(PEFT\\)')],
  // Sized as PEFT sizes them, for in·kh² = 2·9 inputs: named the same way, not as a size mismatch.
  ['OFT sized for in·kh² on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'OFT', r: 0, oft_block_size: 3, peft_version: '0.18.0' },
    [t(`${A}.oft_R.weight`, [6, 3])], SQUARE_KERNEL_ONLY('OFT \\(PEFT\\)')],
  ['HRA sized for in·kh² on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'HRA', r: 2 },
    [t(`${A}.hra_u`, [18, 2])], SQUARE_KERNEL_ONLY('HRA \\(PEFT\\)')],
  ['BOFT sized for in·kh² on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'BOFT', boft_block_size: 3, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [1, 6, 3, 3]), t(`${A}.boft_s`, [8, 1])], SQUARE_KERNEL_ONLY('BOFT \\(PEFT\\)')],
  ['OFT (PEFT 0.14) block_share on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'OFT', r: 0, oft_block_size: 3, block_share: true, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [1, 3, 3]), t(`${A}.oft_s`, [8, 1])], SQUARE_KERNEL_ONLY('OFT \\(PEFT before 0\\.16\\)')],
  ['OFT (PEFT 0.14) on a conv with a 3×1 kernel', [t(`${Q}.weight`, [8, 2, 3, 1])], { peft_type: 'OFT', r: 2, oft_block_size: 0, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [2, 3, 3]), t(`${A}.oft_s`, [8, 1])], SQUARE_KERNEL_ONLY('OFT \\(PEFT before 0\\.16\\)')],
  ['OFT (PEFT 0.13) 4 blocks of 3 on 8 outputs', peftBase, { peft_type: 'OFT', r: 4, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [4, 3, 3])], /OFT module "model\.layers\.0\.self_attn\.q_proj": oft_r \(4, 3, 3\) does not hold 4 blocks of ⌈8 \/ 4⌉ over the layer's 8 outputs/],
  ['OFT (PEFT 0.14) shared blocks of 3 on 8 inputs', peftBase, { peft_type: 'OFT', r: 0, oft_block_size: 3, block_share: true, module_dropout: 0, init_weights: true },
    [t(`${A}.oft_r`, [1, 3, 3]), t(`${A}.oft_s`, [8, 1])], /OFT module "model\.layers\.0\.self_attn\.q_proj": oft_r \(1, 3, 3\) does not cover the layer's 8 inputs in blocks of 3/],
  // Trained on a layer whose smaller dim was 6: lambda (r, nb = ⌈6/2⌉), gamma (nb, 6).
  ['RandLoRA gamma for a smaller layer', peftBase, { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 },
    [t(`${A}.randlora_lambda`, [2, 3]), t(`${A}.randlora_gamma`, [3, 6]), t('base_model.randlora_A', [2, 1, 6]), t('base_model.randlora_B', [8, 3, 2])],
    /RandLoRA module "model\.layers\.0\.self_attn\.q_proj": randlora_gamma \(3, 6\) is for a layer whose smaller dim is 6, but the base's is \(8, 8\)/],
  // A q_proj (8, 12) under shared bases from a model whose largest dim was 10.
  ['RandLoRA shared B shorter than the layer', [t(`${Q}.weight`, [8, 12])], { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 },
    [t(`${A}.randlora_lambda`, [2, 4]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 1, 8]), t('base_model.randlora_B', [10, 4, 2])],
    /RandLoRA module "model\.layers\.0\.self_attn\.q_proj": the layer's larger dim is 12, the shared randlora_B has only 10 rows/],
])('PEFT %s is refused when merged, naming the module', async (_what, base, config, tensors, pattern) => {
  const refusals = await peftMergeRefusal(base, config, tensors);
  expect(refusals).toHaveLength(1);
  expect(refusals[0]).toMatch(pattern);
});

it('a diffusers-form LoRA with lora_bias: a lora_B.bias that is not one value per output is refused', async () => {
  // A PEFT LoRA saved by diffusers' trainers into one file: PEFT's key names without base_model.model.
  const lora = [t(`${Q}.lora_A.weight`, [2, 8]), t(`${Q}.lora_B.weight`, [8, 2])];
  for (const shape of [[6], [8, 1]]) {
    const message = await refusal(peftBase, [...lora, t(`${Q}.lora_B.bias`, shape)]);
    expect(message).toMatch(peftNamed);
    expect(message).toMatch(new RegExp(`lora_B bias ${Q.replace(/\./g, '\\.')}\\.lora_B\\.bias \\(${shape.join(', ')}\\) should hold one value per output feature \\(8\\)`));
  }
});

it.each<[string, unknown, RegExp]>([
  ['a list', [[true, false]], /"rank_pattern" must be an object of parameter name → list of true\/false/],
  ['a string', 'q_proj', /"rank_pattern" must be an object of parameter name → list of true\/false/],
  ['a mask that is one flag, not a list', { 'model.layers.0.self_attn.q_proj.lora_E': true }, /rank_pattern\[.*q_proj\.lora_E"\] must name a module's lora_E and give a list of true\/false/],
  ['a key that names no lora_E', { 'base_model.model.model.layers.0.self_attn.q_proj': [true, false] }, /rank_pattern\["base_model\.model\.model\.layers\.0\.self_attn\.q_proj"\] must name a module's lora_E/],
  ['flags given as numbers', { 'base_model.model.model.layers.0.self_attn.q_proj.lora_E': [1, 0] }, /rank_pattern\[.*q_proj\.lora_E"\] must name a module's lora_E and give a list of true\/false/],
])('AdaLoRA rank_pattern as %s is refused, naming the config', async (_what, rankPattern, pattern) => {
  const message = await peftRefusal({ peft_type: 'ADALORA', init_r: 2, target_r: 1, lora_alpha: 2, rank_pattern: rankPattern },
    [t(`${A}.lora_A`, [2, 8]), t(`${A}.lora_E`, [2, 1]), t(`${A}.lora_B`, [8, 2])]);
  expect(message).toMatch(/adapter_config\.json/);
  expect(message).toMatch(pattern);
});

// Single parts of the LyCORIS shape checks that no case above isolates: each file breaks one of them only.
it.each<[string, FixtureTensor[], RegExp]>([
  ['LoCon with a 1-D lora_down', [t(`${toQ}.lora_down.weight`, [2]), t(`${toQ}.lora_up.weight`, [8, 2]), scalar(`${toQ}.alpha`, 2)],
    /up .*lora_up\.weight \(8, 2\) does not fit down .*lora_down\.weight \(2\)/],
  ['LoCon 3×3 whose lora_up has a 3×3 kernel too', [t(`${conv}.lora_down.weight`, [2, 2, 3, 3]), t(`${conv}.lora_up.weight`, [4, 2, 3, 3]), scalar(`${conv}.alpha`, 2)],
    /up .*lora_up\.weight \(4, 2, 3, 3\) does not fit down .*lora_down\.weight \(2, 2, 3, 3\)/],
  ['LoCon with a 2-D lora_mid', [t(`${conv}.lora_down.weight`, [2, 2, 1, 1]), t(`${conv}.lora_mid.weight`, [2, 2]), t(`${conv}.lora_up.weight`, [4, 2, 1, 1]), scalar(`${conv}.alpha`, 2)],
    /lora_mid .* \(2, 2\) does not fit down \(2, 2, 1, 1\) and up \(4, 2, 1, 1\)/],
  ['LoCon lora_mid of another rank on its second side', [t(`${conv}.lora_down.weight`, [2, 2, 1, 1]), t(`${conv}.lora_mid.weight`, [2, 3, 3, 3]), t(`${conv}.lora_up.weight`, [4, 2, 1, 1]), scalar(`${conv}.alpha`, 2)],
    /lora_mid .* \(2, 3, 3, 3\) does not fit down \(2, 2, 1, 1\) and up \(4, 2, 1, 1\)/],
  ['LoCon lora_mid beside a 3×3 lora_down', [t(`${conv}.lora_down.weight`, [2, 2, 3, 3]), t(`${conv}.lora_mid.weight`, [2, 2, 3, 3]), t(`${conv}.lora_up.weight`, [4, 2, 1, 1]), scalar(`${conv}.alpha`, 2)],
    /lora_mid .* \(2, 2, 3, 3\) does not fit down \(2, 2, 3, 3\) and up \(4, 2, 1, 1\)/],
  ['LoHa without hada_w1_a', [t(`${toQ}.hada_w1_b`, [2, 6]), t(`${toQ}.hada_w2_a`, [8, 2]), t(`${toQ}.hada_w2_b`, [2, 6]), scalar(`${toQ}.alpha`, 2)],
    /needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b/],
  ['LoHa without hada_w1_b', [t(`${toQ}.hada_w1_a`, [8, 2]), t(`${toQ}.hada_w2_a`, [8, 2]), t(`${toQ}.hada_w2_b`, [2, 6]), scalar(`${toQ}.alpha`, 2)],
    /needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b/],
  ['LoKr with lokr_w2 alone', [t(`${toQ}.lokr_w2`, [4, 3])], /needs lokr_w1 or lokr_w1_a with lokr_w1_b, and lokr_w2/],
  ['LoKr w1_a 3-D', [t(`${toQ}.lokr_w1_a`, [2, 1, 1]), t(`${toQ}.lokr_w1_b`, [1, 2]), t(`${toQ}.lokr_w2`, [4, 3]), scalar(`${toQ}.alpha`, 1)], /LoKr factors .* do not fit together/],
  ['LoKr w1_b 1-D', [t(`${toQ}.lokr_w1_a`, [2, 1]), t(`${toQ}.lokr_w1_b`, [1]), t(`${toQ}.lokr_w2`, [4, 3]), scalar(`${toQ}.alpha`, 1)], /LoKr factors .* do not fit together/],
  ['LoKr t2 2-D', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [2, 2]), t(`${conv}.lokr_w2_b`, [2, 1]), t(`${conv}.lokr_t2`, [2, 2]), scalar(`${conv}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr t2 not square in its ranks', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [2, 2]), t(`${conv}.lokr_w2_b`, [3, 1]), t(`${conv}.lokr_t2`, [2, 3, 3, 3]), scalar(`${conv}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr Tucker w2_a 3-D', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [2, 2, 1]), t(`${conv}.lokr_w2_b`, [2, 1]), t(`${conv}.lokr_t2`, [2, 2, 3, 3]), scalar(`${conv}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr Tucker w2_b 3-D', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [2, 2]), t(`${conv}.lokr_w2_b`, [2, 1, 1]), t(`${conv}.lokr_t2`, [2, 2, 3, 3]), scalar(`${conv}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr Tucker w2_b of another rank than t2', [t(`${conv}.lokr_w1`, [2, 2]), t(`${conv}.lokr_w2_a`, [2, 2]), t(`${conv}.lokr_w2_b`, [3, 1]), t(`${conv}.lokr_t2`, [2, 2, 3, 3]), scalar(`${conv}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr w2_a 3-D', [t(`${toQ}.lokr_w1`, [2, 2]), t(`${toQ}.lokr_w2_a`, [4, 2, 1]), t(`${toQ}.lokr_w2_b`, [2, 3]), scalar(`${toQ}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['LoKr w2_b 1-D', [t(`${toQ}.lokr_w1`, [2, 2]), t(`${toQ}.lokr_w2_a`, [4, 2]), t(`${toQ}.lokr_w2_b`, [2]), scalar(`${toQ}.alpha`, 2)], /LoKr factors .* do not fit together/],
  ['BOFT blocks not square', [t(`${toQ}.oft_blocks`, [2, 2, 4, 2])], /BOFT oft_blocks \(2, 2, 4, 2\) do not fit/],
  ['BOFT blocks of size 0', [t(`${toQ}.oft_blocks`, [1, 1, 0, 0])], /BOFT oft_blocks \(1, 1, 0, 0\) do not fit/],
  ['diag-OFT blocks not square', [t(`${toQ}.oft_blocks`, [4, 2, 3])], /oft_blocks \(4, 2, 3\) do not fit \(expected \(n, b, b\)/],
  ['diag-OFT blocks 5-D', [t(`${toQ}.oft_blocks`, [4, 2, 2, 1, 1])], /oft_blocks \(4, 2, 2, 1, 1\) do not fit \(expected \(n, b, b\)/],
  ['GLoRA without b1', [t(`${toQ}.a1.weight`, [6, 2]), t(`${toQ}.a2.weight`, [2, 6]), t(`${toQ}.b2.weight`, [2, 6]), scalar(`${toQ}.alpha`, 2)], /needs a1\.weight, a2\.weight, b1\.weight and b2\.weight/],
  ['LoCon with a 2-D diff_b', [t(`${toQ}.lora_down.weight`, [2, 6]), t(`${toQ}.lora_up.weight`, [8, 2]), scalar(`${toQ}.alpha`, 2), t(`${toQ}.diff_b`, [8, 1])],
    /diff_b .*diff_b \(8, 1\) should hold one value per output feature of its weight's update \(8\)/],
])('%s is refused, naming the module (a part of a check no case above isolates)', async (_what, tensors, pattern) => {
  const message = await refusal(withNorm, tensors);
  expect(message).toMatch(named(tensors[0].name.slice(0, tensors[0].name.indexOf('.'))));
  expect(message).toMatch(pattern);
});

it('LyCORIS norm diffs: a 2-D w_norm is refused', async () => {
  const message = await refusal(withNorm, [t(`${norm}.w_norm`, [8, 1]), t(`${norm}.b_norm`, [8])]);
  expect(message).toMatch(named(norm));
  expect(message).toMatch(/w_norm \(8, 1\) and b_norm \(8\) should be vectors of one size/);
});

it('a diffusers-form DoRA: a lora_magnitude_vector (2, 4) for 8 outputs is refused', async () => {
  const message = await refusal(peftBase, [t(`${Q}.lora_A.weight`, [2, 8]), t(`${Q}.lora_B.weight`, [8, 2]), t(`${Q}.lora_magnitude_vector`, [2, 4])]);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(/lora_magnitude_vector .*lora_magnitude_vector \(2, 4\) should hold one value per output feature \(8\)/);
});

// PEFT keeps lora_B's bias as nn.Linear's (out,) and lora_magnitude_vector as one value per output
// (size-1 dims beside it for a conv); it cannot load either in another shape. The plan's bias and
// DoRA terms count values only, so without this a (8, 1) bias or a (2, 4) magnitude merged.
it.each<[string, object, FixtureTensor, RegExp]>([
  ['a lora_B.bias (8, 1)', { lora_bias: true }, t(`${A}.lora_B.bias`, [8, 1]), /lora_B bias .*lora_B\.bias \(8, 1\) should hold one value per output feature \(8\)/],
  ['a lora_magnitude_vector (2, 4)', { use_dora: true }, t(`${A}.lora_magnitude_vector`, [2, 4]), /lora_magnitude_vector .*lora_magnitude_vector \(2, 4\) should hold one value per output feature \(8\)/],
  // BD-LoRA with a block-diagonal lora_A (rank 2, two blocks of 4 inputs): lora_B and its bias are full.
  ['BD-LoRA and a lora_B.bias (8, 1)', { lora_bias: true, use_bdlora: { target_modules_bd_a: ['q_proj'], target_modules_bd_b: null, nblocks: 2, match_strict: true } },
    t(`${A}.lora_B.bias`, [8, 1]), /lora_B bias .*lora_B\.bias \(8, 1\) should hold one value per output feature \(8\)/],
])('PEFT LoRA folder with %s is refused, naming the module', async (_what, config, extra, pattern) => {
  const bd = 'use_bdlora' in config;
  const message = await peftRefusal({ peft_type: 'LORA', r: 2, lora_alpha: 2, ...config }, [t(`${A}.lora_A.weight`, [2, bd ? 4 : 8]), t(`${A}.lora_B.weight`, [8, 2]), extra]);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// Single parts of the PEFT methods' checks that no case above isolates.
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['AdaLoRA without lora_A', { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2 },
    [t(`${A}.lora_E`, [2, 1]), t(`${A}.lora_B`, [8, 2])], /needs lora_A, lora_E and lora_B; lora_A is missing/],
  ['AdaLoRA lora_A of rank 3 beside lora_E of 2', { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2 },
    [t(`${A}.lora_A`, [3, 8]), t(`${A}.lora_E`, [2, 1]), t(`${A}.lora_B`, [8, 2])], /lora_A \(3, 8\), lora_E \(2, 1\) and lora_B \(8, 2\) do not fit together/],
  ['AdaLoRA lora_B of rank 3 beside lora_E of 2', { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2 },
    [t(`${A}.lora_A`, [2, 8]), t(`${A}.lora_E`, [2, 1]), t(`${A}.lora_B`, [8, 3])], /lora_A \(2, 8\), lora_E \(2, 1\) and lora_B \(8, 3\) do not fit together/],
  ['DeLoRA without delora_A', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [8])], /delora_A is missing/],
  ['GraLoRA A of another rank than r', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 0 },
    [t(`${A}.gralora_A`, [2, 4, 2]), t(`${A}.gralora_B`, [2, 4, 4])], /gralora_A \(2, 4, 2\) and gralora_B \(2, 4, 4\) are not/],
  ['GraLoRA A in blocks of another gralora_k', { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 0 },
    [t(`${A}.gralora_A`, [4, 2, 4]), t(`${A}.gralora_B`, [2, 4, 4])], /gralora_A \(4, 2, 4\) and gralora_B \(2, 4, 4\) are not/],
  ['PVeRA without pvera_lambda_b', { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 },
    [t(`${A}.pvera_lambda_d`, [4]), t('base_model.pvera_A', [4, 8]), t('base_model.pvera_B', [8, 2])], /pvera_lambda_b is missing/],
  ['RoAd without road_theta', { peft_type: 'ROAD', variant: 'road_1', group_size: 2 }, [t(`${A}.road_alpha`, [8])], /has road_alpha without road_theta/],
  ['SHiRA without shira_weight', { peft_type: 'SHIRA', r: 2 }, [t(`${A}.shira_indices`, [2, 4], 'I32')], /shira_weight is missing/],
  ['TinyLoRA without tinylora_A', { peft_type: 'TINYLORA', r: 2, u: 3, weight_tying: 1.0, projection_seed: 42, save_projection: true },
    [t(`${A}.tinylora_B`, [8, 2]), t(`${A}.tinylora_P`, [3, 2, 2]), t('base_model.tinylora_v.0', [3])], /tinylora_A is missing/],
])('PEFT %s is refused, naming the module (a part of a check no case above isolates)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// More single parts: factors of another rank or dimension count than their partners.
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['DeLoRA B of rank 3 beside A of 2', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 3]), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [8])], /delora_A \(2, 8\), delora_B \(8, 3\), delora_lambda \(1\) and delora_w_norm \(8\) do not fit together/],
  ['DeLoRA w_norm (8, 1)', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [8, 1])], /delora_w_norm \(8, 1\) do not fit together/],
  ['DeLoRA lambda of 2 values', { peft_type: 'DELORA', r: 2 },
    [t(`${A}.delora_A`, [2, 8]), t(`${A}.delora_B`, [8, 2]), t(`${A}.delora_lambda`, [2]), t(`${A}.delora_w_norm`, [8])], /delora_lambda \(2\) and delora_w_norm \(8\) do not fit together/],
  ['VeRA vera_B of rank 3 beside vera_A of 2', { peft_type: 'VERA', r: 2 },
    [t(`${A}.vera_lambda_b`, [8]), t(`${A}.vera_lambda_d`, [2]), t('base_model.vera_A', [2, 8]), t('base_model.vera_B', [8, 3])], /vera_A \(2, 8\) and vera_B \(8, 3\) do not fit together/],
  ['VeRA lambda_b longer than vera_B', { peft_type: 'VERA', r: 2 },
    [t(`${A}.vera_lambda_b`, [8]), t(`${A}.vera_lambda_d`, [2]), t('base_model.vera_A', [2, 8]), t('base_model.vera_B', [6, 2])], /vera_A \(2, 8\) and vera_B \(6, 2\) do not fit together/],
  ['RoAd theta (8, 1)', { peft_type: 'ROAD', variant: 'road_1', group_size: 2 },
    [t(`${A}.road_theta`, [8, 1]), t(`${A}.road_alpha`, [8])], /road_theta \(8, 1\) and road_alpha \(8\) are not two vectors/],
  ['MiSS block of another r', { peft_type: 'MISS', r: 4 }, [t(`${A}.miss_block`, [2, 8])], /block \(2, 8\) is not \(r, outputs\) for the config's r = 4/],
  ['BOFT boft_R blocks not square', { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1 },
    [t(`${A}.boft_R`, [1, 4, 2, 3]), t(`${A}.boft_s`, [8, 1])], /boft_R \(1, 4, 2, 3\) is not \(factors, blocks, size, size\)/],
  ['HiRA hira_B without hira_A', { peft_type: 'HIRA', r: 2 }, [t(`${A}.hira_B`, [8, 2])], /has hira_B without hira_A/],
  ['SHiRA indices (3, 4)', { peft_type: 'SHIRA', r: 2 },
    [t(`${A}.shira_weight`, [4]), t(`${A}.shira_indices`, [3, 4], 'I32')], /shira_weight \(4\) and shira_indices \(3, 4\) do not fit together/],
])('PEFT %s is refused, naming the module (a part of a check no case above isolates)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

it.each<[string, object, FixtureTensor[], RegExp]>([
  ['PVeRA pvera_A of rank 3 (not 2r)', { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 },
    [t(`${A}.pvera_lambda_b`, [8]), t(`${A}.pvera_lambda_d`, [4]), t('base_model.pvera_A', [3, 8]), t('base_model.pvera_B', [8, 2])], /pvera_A \(3, 8\) and pvera_B \(8, 2\) do not fit together/],
  ['PVeRA lambda_b longer than pvera_B', { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 },
    [t(`${A}.pvera_lambda_b`, [8]), t(`${A}.pvera_lambda_d`, [4]), t('base_model.pvera_A', [4, 8]), t('base_model.pvera_B', [6, 2])], /pvera_A \(4, 8\) and pvera_B \(6, 2\) do not fit together/],
  // Eight blocks of 1 cover the 8 inputs, so only PEFT's even-size rule stands against it.
  ['BOFT two butterfly factors of odd blocks', { peft_type: 'BOFT', boft_block_size: 1, boft_block_num: 0, boft_n_butterfly_factor: 2 },
    [t(`${A}.boft_R`, [2, 8, 1, 1]), t(`${A}.boft_s`, [8, 1])], /boft_R \(2, 8, 1, 1\): 2 butterfly factors need an even block size/],
  ['UniLoRA indices_B of rank 3', { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true },
    [t(`${A}.unilora_indices_A`, [2, 8], 'I64'), t(`${A}.unilora_indices_B`, [8, 3], 'I64'), t(`${A}.unilora_scales_A`, [2, 8]), t(`${A}.unilora_scales_B`, [8, 3]), t('base_model.unilora_theta_d', [16])],
    /unilora_indices_B \(8, 3\), .* do not fit together/],
  ['TinyLoRA B of rank 3', { peft_type: 'TINYLORA', r: 2, u: 3, weight_tying: 1.0, projection_seed: 42, save_projection: true },
    [t(`${A}.tinylora_A`, [2, 8]), t(`${A}.tinylora_B`, [8, 3]), t(`${A}.tinylora_P`, [3, 2, 2]), t('base_model.tinylora_v.0', [3])], /tinylora_B \(8, 3\), .* do not fit together/],
])('PEFT %s is refused, naming the module (a part of a check no case above isolates)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

const RANDLORA = { peft_type: 'RANDLORA', r: 2, randlora_alpha: 4 };
const GRALORA = { peft_type: 'GRALORA', r: 4, gralora_k: 2, hybrid_r: 0 };
const PEANUT = { peft_type: 'PEANUT', r: 2, depth: 0, act_fn: 'relu', scaling: 1.0 };
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['GraLoRA gralora_B without gralora_A', GRALORA, [t(`${A}.gralora_B`, [2, 4, 4])], /needs gralora_A and gralora_B; gralora_A is missing/],
  ['GraLoRA B in blocks of another gralora_k', GRALORA, [t(`${A}.gralora_A`, [2, 4, 4]), t(`${A}.gralora_B`, [4, 4, 2])], /gralora_A \(2, 4, 4\) and gralora_B \(4, 4, 2\) are not/],
  ['GraLoRA general B of another hybrid_r', { ...GRALORA, hybrid_r: 2 },
    [t(`${A}.gralora_A`, [2, 4, 4]), t(`${A}.gralora_B`, [2, 4, 4]), t(`${A}.gralora_A_general.weight`, [2, 8]), t(`${A}.gralora_B_general.weight`, [8, 3])],
    /gralora_A_general\.weight \(2, 8\) and gralora_B_general\.weight \(8, 3\) are not \(hybrid_r, 8\)/],
  ['PEANuT peanut_B without peanut_A', PEANUT, [t(`${A}.peanut_B.weight`, [8, 2])], /has peanut_B without peanut_A/],
  ['PEANuT peanut_B of rank 3', PEANUT, [t(`${A}.peanut_A.weight`, [2, 8]), t(`${A}.peanut_B.weight`, [8, 3])], /peanut_A \(2, 8\), peanut_B \(8, 3\) and the 0 encoder and decoder layers are not/],
  ['PEANuT peanut_A reading 6 outputs', PEANUT, [t(`${A}.peanut_A.weight`, [2, 6]), t(`${A}.peanut_B.weight`, [8, 2])], /peanut_A \(2, 6\), peanut_B \(8, 2\) and the 0 encoder and decoder layers are not/],
  ['SHiRA weight (4, 1)', { peft_type: 'SHIRA', r: 2 }, [t(`${A}.shira_weight`, [4, 1]), t(`${A}.shira_indices`, [2, 4], 'I32')], /shira_weight \(4, 1\) and shira_indices \(2, 4\) do not fit together/],
  ['RandLoRA lambda of rank 3', RANDLORA,
    [t(`${A}.randlora_lambda`, [3, 4]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 1, 8]), t('base_model.randlora_B', [8, 4, 2])], /randlora_lambda \(3, 4\) and randlora_gamma \(4, 8\) are not \(r, nb\)/],
  ['RandLoRA shared A (2, 2, 8)', RANDLORA,
    [t(`${A}.randlora_lambda`, [2, 4]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 2, 8]), t('base_model.randlora_B', [8, 4, 2])], /the shared randlora_A \(2, 2, 8\) and randlora_B \(8, 4, 2\) are not/],
  ['RandLoRA shared B of rank 3', RANDLORA,
    [t(`${A}.randlora_lambda`, [2, 4]), t(`${A}.randlora_gamma`, [4, 8]), t('base_model.randlora_A', [2, 1, 8]), t('base_model.randlora_B', [8, 4, 3])], /the shared randlora_A \(2, 1, 8\) and randlora_B \(8, 4, 3\) are not/],
  ['UniLoRA without unilora_indices_A', { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true },
    [t(`${A}.unilora_indices_B`, [8, 2], 'I64'), t(`${A}.unilora_scales_A`, [2, 8]), t(`${A}.unilora_scales_B`, [8, 2]), t('base_model.unilora_theta_d', [16])], /unilora_indices_A is missing/],
])('PEFT %s is refused, naming the module (a part of a check no case above isolates)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// Super-Tuning with a config r (Supra): the sparse values and, beside them, a LoRA pair of that rank.
const SUPRA = { peft_type: 'SUPERTUNING', r: 2, lora_alpha: 4, sparsity: 0.99, save_precomputed_indices: true };
const sparse = [t(`${A}.supertuning_values`, [4]), t(`${A}.supertuning_indices`, [4], 'I32')];
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['Supra without supertuning_lora_B', SUPRA, [...sparse, t(`${A}.supertuning_lora_A.weight`, [2, 8])], /the config's r is 2 \(Supra\), but supertuning_lora_B\.weight is missing/],
  ['a LoRA B beside a config without r', { ...SUPRA, r: null, lora_alpha: null }, [...sparse, t(`${A}.supertuning_lora_B.weight`, [8, 2])], /has .*supertuning_lora_B\.weight but the config has no r/],
  ['Supra B of rank 3', SUPRA, [...sparse, t(`${A}.supertuning_lora_A.weight`, [2, 8]), t(`${A}.supertuning_lora_B.weight`, [8, 3])],
    /supertuning_lora_A \(2, 8\) and supertuning_lora_B \(8, 3\) do not fit the config's r 2/],
  ['values (4, 1)', SUPRA, [t(`${A}.supertuning_values`, [4, 1]), t(`${A}.supertuning_indices`, [4], 'I32'), t(`${A}.supertuning_lora_A.weight`, [2, 8]), t(`${A}.supertuning_lora_B.weight`, [8, 2])],
    /supertuning_values \(4, 1\) and supertuning_indices \(4\) do not fit together/],
])('PEFT Super-Tuning: %s is refused, naming the module', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// Single dims of the PEFT methods' shape checks that no case above isolates: each file here has
// every tensor right but one, which has a size-1 dim too many or one dim off, so only that part of
// the check stands between it and a merge that reads the tensor as a shape it is not.
const VB = { peft_type: 'VBLORA', r: 2, topk: 2, num_vectors: 4, vector_length: 4 };
const vbLogits = [t(`${A}.vblora_logits_A`, [2, 2, 4]), t(`${A}.vblora_logits_B`, [2, 2, 4])];
const randlora = (lambda: number[], gamma: number[], sa: number[], sb: number[]) => [
  t(`${A}.randlora_lambda`, lambda), t(`${A}.randlora_gamma`, gamma), t('base_model.randlora_A', sa), t('base_model.randlora_B', sb),
];
const UNILORA = { peft_type: 'UNILORA', r: 2, theta_d_length: 16, proj_seed: 42, save_indices: true };
const unilora = (ia: number[], ib: number[], sa: number[], sb: number[], theta: number[], ibType: FixtureDType = 'I64') => [
  t(`${A}.unilora_indices_A`, ia, 'I64'), t(`${A}.unilora_indices_B`, ib, ibType), t(`${A}.unilora_scales_A`, sa), t(`${A}.unilora_scales_B`, sb), t('base_model.unilora_theta_d', theta),
];
const TINYLORA = { peft_type: 'TINYLORA', r: 2, u: 3, weight_tying: 1.0, projection_seed: 42, save_projection: true };
const tinylora = (a: number[], b: number[], p: number[], v: number[]) => [t(`${A}.tinylora_A`, a), t(`${A}.tinylora_B`, b), t(`${A}.tinylora_P`, p), t('base_model.tinylora_v.0', v)];
const gralora = (a: number[], b: number[], general?: [number[], number[]]) => [
  t(`${A}.gralora_A`, a), t(`${A}.gralora_B`, b), ...(general ? [t(`${A}.gralora_A_general.weight`, general[0]), t(`${A}.gralora_B_general.weight`, general[1])] : []),
];
const ADALORA = { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2 };
const adalora = (a: number[], e: number[], b: number[]) => [t(`${A}.lora_A`, a), t(`${A}.lora_E`, e), t(`${A}.lora_B`, b)];
const PVERA = { peft_type: 'PVERA', r: 2, save_projection: true, projection_prng_key: 0 };
const pvera = (lb: number[], ld: number[], a: number[], b: number[]) => [t(`${A}.pvera_lambda_b`, lb), t(`${A}.pvera_lambda_d`, ld), t('base_model.pvera_A', a), t('base_model.pvera_B', b)];
const VERA = { peft_type: 'VERA', r: 2 };
const vera = (lb: number[], ld: number[], a: number[], b: number[]) => [t(`${A}.vera_lambda_b`, lb), t(`${A}.vera_lambda_d`, ld), t('base_model.vera_A', a), t('base_model.vera_B', b)];
const supra = (indices: number[], a: number[], b: number[]) => [t(`${A}.supertuning_values`, [4]), t(`${A}.supertuning_indices`, indices, 'I32'), t(`${A}.supertuning_lora_A.weight`, a), t(`${A}.supertuning_lora_B.weight`, b)];
const BOFT = { peft_type: 'BOFT', boft_block_size: 2, boft_block_num: 0, boft_n_butterfly_factor: 1 };
// OFT as PEFT 0.13 saved it (oft_r alone, r blocks over the outputs) and as 0.14–0.15 did (oft_r and oft_s, blocks of oft_block_size).
const OFT_013 = { peft_type: 'OFT', r: 4, module_dropout: 0, init_weights: true };
const OFT_014 = { peft_type: 'OFT', r: 0, oft_block_size: 2, module_dropout: 0, init_weights: true };
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['VB-LoRA vector bank (4, 4, 1)', VB, [...vbLogits, t('base_model.vblora_vector_bank', [4, 4, 1])], /vblora_vector_bank \(4, 4, 1\) is not \(num_vectors, vector_length\) = \(4, 4\)/],
  ['VB-LoRA vector bank of 5 vectors for num_vectors 4', VB, [...vbLogits, t('base_model.vblora_vector_bank', [5, 4])], /vblora_vector_bank \(5, 4\) is not \(num_vectors, vector_length\) = \(4, 4\)/],
  ['VB-LoRA topk 1.5', { ...VB, topk: 1.5 }, [...vbLogits, t('base_model.vblora_vector_bank', [4, 4])], /topk = 1\.5 is not between 1 and num_vectors = 4/],
  ['VB-LoRA topk 0', { ...VB, topk: 0 }, [...vbLogits, t('base_model.vblora_vector_bank', [4, 4])], /topk = 0 is not between 1 and num_vectors = 4/],
  // PEFT saves every module's top-k indices in one dtype (the smallest holding num_vectors).
  ['VB-LoRA top-k indices of A in uint8, of B in int64', VB_TOPK, vbTopk('U8').map((x) => (x.name.endsWith('_B_topk_indices') ? { ...x, dtype: 'I64' as const } : x)),
    /top-k indices are U8 and I64; expected integers/],
  ['VB-LoRA top-k weights of B in float16', VB_TOPK, vbTopk('U8').map((x) => (x.name.endsWith('_B_topk_weights') ? { ...x, dtype: 'F16' as const } : x)),
    /has top-k weights in F32 and F16: PEFT reads them only as F32/],
  ['RandLoRA without randlora_lambda', RANDLORA, randlora([2, 4], [4, 8], [2, 1, 8], [8, 4, 2]).slice(1), /needs randlora_lambda and randlora_gamma; randlora_lambda is missing/],
  ['RandLoRA lambda (2, 4, 1)', RANDLORA, randlora([2, 4, 1], [4, 8], [2, 1, 8], [8, 4, 2]), /randlora_lambda \(2, 4, 1\) and randlora_gamma \(4, 8\) are not \(r, nb\)/],
  ['RandLoRA gamma (4, 8, 1)', RANDLORA, randlora([2, 4], [4, 8, 1], [2, 1, 8], [8, 4, 2]), /randlora_lambda \(2, 4\) and randlora_gamma \(4, 8, 1\) are not \(r, nb\)/],
  ['RandLoRA shared A (2, 1, 8, 1)', RANDLORA, randlora([2, 4], [4, 8], [2, 1, 8, 1], [8, 4, 2]), /the shared randlora_A \(2, 1, 8, 1\) and randlora_B \(8, 4, 2\) are not/],
  ['RandLoRA shared A of rank 3', RANDLORA, randlora([2, 4], [4, 8], [3, 1, 8], [8, 4, 2]), /the shared randlora_A \(3, 1, 8\) and randlora_B \(8, 4, 2\) are not/],
  ['RandLoRA shared B (8, 4, 2, 1)', RANDLORA, randlora([2, 4], [4, 8], [2, 1, 8], [8, 4, 2, 1]), /the shared randlora_A \(2, 1, 8\) and randlora_B \(8, 4, 2, 1\) are not/],
  ['RandLoRA shared B with 3 bases for nb 4', RANDLORA, randlora([2, 4], [4, 8], [2, 1, 8], [8, 3, 2]), /the shared randlora_A \(2, 1, 8\) and randlora_B \(8, 3, 2\) are not/],
  ['UniLoRA without unilora_indices_B', UNILORA, unilora([2, 8], [8, 2], [2, 8], [8, 2], [16]).filter((x) => !x.name.endsWith('indices_B')), /; unilora_indices_B is missing/],
  ['UniLoRA without unilora_scales_B', UNILORA, unilora([2, 8], [8, 2], [2, 8], [8, 2], [16]).filter((x) => !x.name.endsWith('scales_B')), /; unilora_scales_B is missing/],
  ['UniLoRA indices_A and scales_A (2, 8, 1)', UNILORA, unilora([2, 8, 1], [8, 2], [2, 8, 1], [8, 2], [16]), /unilora_indices_A \(2, 8, 1\), .* do not fit together/],
  ['UniLoRA indices_B and scales_B (8, 2, 1)', UNILORA, unilora([2, 8], [8, 2, 1], [2, 8], [8, 2, 1], [16]), /unilora_indices_B \(8, 2, 1\), .* do not fit together/],
  ['UniLoRA scales_A (2, 6) beside indices_A (2, 8)', UNILORA, unilora([2, 8], [8, 2], [2, 6], [8, 2], [16]), /unilora_scales_A \(2, 6\), .* do not fit together/],
  ['UniLoRA theta_d (16, 1)', UNILORA, unilora([2, 8], [8, 2], [2, 8], [8, 2], [16, 1]), /unilora_theta_d \(16, 1\) do not fit together/],
  ['UniLoRA indices_B in float32', UNILORA, unilora([2, 8], [8, 2], [2, 8], [8, 2], [16], 'F32'), /unilora_indices_A and _B are I64 and F32; expected I64/],
  ['TinyLoRA A (2, 8, 1)', TINYLORA, tinylora([2, 8, 1], [8, 2], [3, 2, 2], [3]), /tinylora_A \(2, 8, 1\), .* do not fit together/],
  ['TinyLoRA B (8, 2, 1)', TINYLORA, tinylora([2, 8], [8, 2, 1], [3, 2, 2], [3]), /tinylora_B \(8, 2, 1\), .* do not fit together/],
  ['TinyLoRA v (3, 1)', TINYLORA, tinylora([2, 8], [8, 2], [3, 2, 2], [3, 1]), /tinylora_v \(3, 1\) do not fit together/],
  ['TinyLoRA P (3, 2, 2, 1)', TINYLORA, tinylora([2, 8], [8, 2], [3, 2, 2, 1], [3]), /tinylora_P \(3, 2, 2, 1\) .* do not fit together/],
  ['TinyLoRA P of 4 projections for a v of 3', TINYLORA, tinylora([2, 8], [8, 2], [4, 2, 2], [3]), /tinylora_P \(4, 2, 2\) .* do not fit together/],
  ['TinyLoRA P (3, 3, 2) for rank 2', TINYLORA, tinylora([2, 8], [8, 2], [3, 3, 2], [3]), /tinylora_P \(3, 3, 2\) .* do not fit together/],
  ['GraLoRA A (2, 4, 4, 1)', GRALORA, gralora([2, 4, 4, 1], [2, 4, 4]), /gralora_A \(2, 4, 4, 1\) and gralora_B \(2, 4, 4\) are not/],
  ['GraLoRA B (2, 4, 4, 1)', GRALORA, gralora([2, 4, 4], [2, 4, 4, 1]), /gralora_A \(2, 4, 4\) and gralora_B \(2, 4, 4, 1\) are not/],
  ['GraLoRA general A (2, 8, 1)', { ...GRALORA, hybrid_r: 2 }, gralora([2, 4, 4], [2, 4, 4], [[2, 8, 1], [8, 2]]), /gralora_A_general\.weight \(2, 8, 1\) and gralora_B_general\.weight \(8, 2\) are not \(hybrid_r, 8\)/],
  ['GraLoRA general B (8, 2, 1)', { ...GRALORA, hybrid_r: 2 }, gralora([2, 4, 4], [2, 4, 4], [[2, 8], [8, 2, 1]]), /gralora_A_general\.weight \(2, 8\) and gralora_B_general\.weight \(8, 2, 1\) are not \(hybrid_r, 8\)/],
  ['GraLoRA general A reading 6 inputs', { ...GRALORA, hybrid_r: 2 }, gralora([2, 4, 4], [2, 4, 4], [[2, 6], [8, 2]]), /gralora_A_general\.weight \(2, 6\) and gralora_B_general\.weight \(8, 2\) are not \(hybrid_r, 8\)/],
  ['GraLoRA general B of 6 outputs', { ...GRALORA, hybrid_r: 2 }, gralora([2, 4, 4], [2, 4, 4], [[2, 8], [6, 2]]), /gralora_A_general\.weight \(2, 8\) and gralora_B_general\.weight \(6, 2\) are not \(hybrid_r, 8\)/],
  ['AdaLoRA lora_E (2, 1, 1)', ADALORA, adalora([2, 8], [2, 1, 1], [8, 2]), /lora_A \(2, 8\), lora_E \(2, 1, 1\) and lora_B \(8, 2\) do not fit together/],
  ['AdaLoRA lora_A (2, 8, 1)', ADALORA, adalora([2, 8, 1], [2, 1], [8, 2]), /lora_A \(2, 8, 1\), lora_E \(2, 1\) and lora_B \(8, 2\) do not fit together/],
  ['AdaLoRA lora_B (8, 2, 1)', ADALORA, adalora([2, 8], [2, 1], [8, 2, 1]), /lora_A \(2, 8\), lora_E \(2, 1\) and lora_B \(8, 2, 1\) do not fit together/],
  ['PVeRA lambda_b (8, 1)', PVERA, pvera([8, 1], [4], [4, 8], [8, 2]), /PVeRA pvera_lambda_b \(8, 1\), .* do not fit together/],
  ['PVeRA lambda_d (4, 1)', PVERA, pvera([8], [4, 1], [4, 8], [8, 2]), /pvera_lambda_d \(4, 1\), .* do not fit together/],
  ['PVeRA shared A (4, 8, 1)', PVERA, pvera([8], [4], [4, 8, 1], [8, 2]), /pvera_A \(4, 8, 1\) and pvera_B \(8, 2\) do not fit together/],
  ['PVeRA shared B (8, 2, 1)', PVERA, pvera([8], [4], [4, 8], [8, 2, 1]), /pvera_A \(4, 8\) and pvera_B \(8, 2, 1\) do not fit together/],
  ['VeRA without vera_lambda_b', VERA, vera([8], [2], [2, 8], [8, 2]).slice(1), /needs vera_lambda_b, vera_lambda_d and the shared vera_A and vera_B/],
  ['VeRA lambda_b (8, 1)', VERA, vera([8, 1], [2], [2, 8], [8, 2]), /VeRA vera_lambda_b \(8, 1\), .* do not fit together/],
  ['VeRA lambda_d (2, 1)', VERA, vera([8], [2, 1], [2, 8], [8, 2]), /vera_lambda_d \(2, 1\), .* do not fit together/],
  ['VeRA shared A (2, 8, 1)', VERA, vera([8], [2], [2, 8, 1], [8, 2]), /vera_A \(2, 8, 1\) and vera_B \(8, 2\) do not fit together/],
  ['VeRA shared B (8, 2, 1)', VERA, vera([8], [2], [2, 8], [8, 2, 1]), /vera_A \(2, 8\) and vera_B \(8, 2, 1\) do not fit together/],
  ['Super-Tuning indices (4, 1)', SUPRA, supra([4, 1], [2, 8], [8, 2]), /supertuning_values \(4\) and supertuning_indices \(4, 1\) do not fit together/],
  ['Supra lora_A (2, 8, 1)', SUPRA, supra([4], [2, 8, 1], [8, 2]), /supertuning_lora_A \(2, 8, 1\) and supertuning_lora_B \(8, 2\) do not fit the config's r 2/],
  ['Supra lora_B (8, 2, 1)', SUPRA, supra([4], [2, 8], [8, 2, 1]), /supertuning_lora_A \(2, 8\) and supertuning_lora_B \(8, 2, 1\) do not fit the config's r 2/],
  ['SHiRA indices (2, 4, 1)', { peft_type: 'SHIRA', r: 2 }, [t(`${A}.shira_weight`, [4]), t(`${A}.shira_indices`, [2, 4, 1], 'I32')], /shira_weight \(4\) and shira_indices \(2, 4, 1\) do not fit together/],
  ['BOFT boft_s without boft_R', BOFT, [t(`${A}.boft_s`, [8, 1])], /needs boft_R and boft_s \(it has only boft_s\)/],
  ['BOFT boft_R of no factors', BOFT, [t(`${A}.boft_R`, [0, 4, 2, 2]), t(`${A}.boft_s`, [8, 1])], /boft_R \(0, 4, 2, 2\) is not \(factors, blocks, size, size\)/],
  ['BOFT boft_R of no blocks', BOFT, [t(`${A}.boft_R`, [1, 0, 2, 2]), t(`${A}.boft_s`, [8, 1])], /boft_R \(1, 0, 2, 2\) is not \(factors, blocks, size, size\)/],
  ['BOFT boft_R of blocks of size 0', BOFT, [t(`${A}.boft_R`, [1, 4, 0, 0]), t(`${A}.boft_s`, [8, 1])], /boft_R \(1, 4, 0, 0\) is not \(factors, blocks, size, size\)/],
  ['BOFT boft_s (8, 1, 1)', BOFT, [t(`${A}.boft_R`, [1, 4, 2, 2]), t(`${A}.boft_s`, [8, 1, 1])], /boft_s \(8, 1, 1\) is neither \(out, 1\) nor \(1, out\)/],
  ['OFT (PEFT 0.13) oft_r (4, 2, 2, 1)', OFT_013, [t(`${A}.oft_r`, [4, 2, 2, 1])], /oft_r \(4, 2, 2, 1\) is not \(blocks, size, size\)/],
  ['OFT (PEFT 0.13) oft_r of no blocks', OFT_013, [t(`${A}.oft_r`, [0, 2, 2])], /oft_r \(0, 2, 2\) is not \(blocks, size, size\)/],
  ['OFT (PEFT 0.13) oft_r of blocks of size 0', OFT_013, [t(`${A}.oft_r`, [4, 0, 0])], /oft_r \(4, 0, 0\) is not \(blocks, size, size\)/],
  ['OFT (PEFT 0.14) oft_s (8, 1, 1)', OFT_014, [t(`${A}.oft_r`, [4, 2, 2]), t(`${A}.oft_s`, [8, 1, 1])], /oft_s \(8, 1, 1\) is neither \(out, 1\) nor \(1, out\)/],
])('PEFT %s is refused, naming the module (one part of a shape check alone)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});

// Positions the plan cannot see (they are read when the module is merged): each one lies outside the
// 8 × 8 q_proj or is not a whole number, which PEFT's scatter or indexing refuses, so the merge stops.
const shiraAt = (positions: number[], dtype: FixtureDType = 'I32') => [t(`${A}.shira_weight`, [4]), withValues(t(`${A}.shira_indices`, [2, 4], dtype), positions)];
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['SHiRA row 0.5 (float32 indices)', { peft_type: 'SHIRA', r: 2 }, shiraAt([0.5, 1, 2, 3, 0, 1, 2, 3], 'F32'), /SHiRA module "model\.layers\.0\.self_attn\.q_proj": shira_indices entry 0 \(0\.5, 0\) is not a whole row and column \(PEFT saves whole numbers there\)/],
  ['SHiRA column 0.5 (float32 indices)', { peft_type: 'SHIRA', r: 2 }, shiraAt([0, 1, 2, 3, 0.5, 1, 2, 3], 'F32'), /shira_indices entry 0 \(0, 0\.5\) is not a whole row and column/],
  ['SHiRA row -1', { peft_type: 'SHIRA', r: 2 }, shiraAt([-1, 1, 2, 3, 0, 1, 2, 3]), /shira_indices entry 0 \(-1, 0\) is outside the layer's \(8, 8\)/],
  ['SHiRA column -1', { peft_type: 'SHIRA', r: 2 }, shiraAt([0, 1, 2, 3, -1, 1, 2, 3]), /shira_indices entry 0 \(0, -1\) is outside the layer's \(8, 8\)/],
  ['SHiRA row 8 of 8', { peft_type: 'SHIRA', r: 2 }, shiraAt([8, 1, 2, 3, 0, 1, 2, 3]), /shira_indices entry 0 \(8, 0\) is outside the layer's \(8, 8\)/],
  ['Super-Tuning position -1', { ...SUPRA, r: null, lora_alpha: null },
    [t(`${A}.supertuning_values`, [4]), withValues(t(`${A}.supertuning_indices`, [4], 'I32'), [-1, 1, 2, 3])],
    /Super-Tuning module "model\.layers\.0\.self_attn\.q_proj": supertuning_indices entry 0 \(-1\) is outside the layer's 8 × 8 = 64 elements/],
])('PEFT %s is refused when merged, naming the module and entry', async (_what, config, tensors, pattern) => {
  const refusals = await peftMergeRefusal(peftBase, config, tensors);
  expect(refusals).toHaveLength(1);
  expect(refusals[0]).toMatch(pattern);
});

// More single parts, of the methods with fewer of them: DeLoRA, PEANuT, RoAd, MiSS, FourierFT, DEFT,
// OFT, HRA and HiRA. Each file is right but for the one tensor the row names.
const DELORA = { peft_type: 'DELORA', r: 2 };
const delora = (a: number[], b: number[]) => [t(`${A}.delora_A`, a), t(`${A}.delora_B`, b), t(`${A}.delora_lambda`, [1]), t(`${A}.delora_w_norm`, [8])];
it.each<[string, object, FixtureTensor[], RegExp]>([
  ['DeLoRA without delora_B', DELORA, delora([2, 8], [8, 2]).filter((x) => !x.name.endsWith('delora_B')), /; delora_B is missing/],
  ['DeLoRA without delora_lambda', DELORA, delora([2, 8], [8, 2]).filter((x) => !x.name.endsWith('delora_lambda')), /; delora_lambda is missing/],
  ['DeLoRA A (2, 8, 1)', DELORA, delora([2, 8, 1], [8, 2]), /delora_A \(2, 8, 1\), delora_B \(8, 2\), .* do not fit together/],
  ['DeLoRA B (8, 2, 1)', DELORA, delora([2, 8], [8, 2, 1]), /delora_A \(2, 8\), delora_B \(8, 2, 1\), .* do not fit together/],
  ['PEANuT peanut_A (2, 8, 1)', PEANUT, [t(`${A}.peanut_A.weight`, [2, 8, 1]), t(`${A}.peanut_B.weight`, [8, 2])], /peanut_A \(2, 8, 1\), peanut_B \(8, 2\) and the 0 encoder and decoder layers are not/],
  ['PEANuT peanut_B (8, 2, 1)', PEANUT, [t(`${A}.peanut_A.weight`, [2, 8]), t(`${A}.peanut_B.weight`, [8, 2, 1])], /peanut_A \(2, 8\), peanut_B \(8, 2, 1\) and the 0 encoder and decoder layers are not/],
  // depth 1: one (r, r) encoder and decoder between A and B; this encoder is (2, 3).
  ['PEANuT encoder (2, 3) for r 2', { ...PEANUT, depth: 1 },
    [t(`${A}.peanut_A.weight`, [2, 8]), t(`${A}.peanut_B.weight`, [8, 2]), t(`${A}.peanut_encoders.0.weight`, [2, 3]), t(`${A}.peanut_decoders.0.weight`, [2, 2])],
    /peanut_A \(2, 8\), peanut_B \(8, 2\) and the 1 encoder and decoder layers are not/],
  // road_1: one θ and α per pair of outputs, 4 for the 8 outputs.
  ['RoAd road_alpha (4, 1)', { peft_type: 'ROAD', variant: 'road_1', group_size: 2 }, [t(`${A}.road_theta`, [4]), t(`${A}.road_alpha`, [4, 1])], /road_theta \(4\) and road_alpha \(4, 1\) are not two vectors/],
  ['MiSS bat block (4, 2, 3) for r 2', { peft_type: 'MISS', r: 2, init_weights: 'bat' }, [t(`${A}.miss_block`, [4, 2, 3])], /bat block \(4, 2, 3\) is not \(outputs \/ r, r, r\) for the config's r = 2/],
  ['MiSS block (4, 8, 1, 1)', { peft_type: 'MISS', r: 4 }, [t(`${A}.miss_block`, [4, 8, 1, 1])], /block \(4, 8, 1, 1\) is not \(r, outputs\) for the config's r = 4/],
  ['FourierFT spectrum (4, 1)', { peft_type: 'FOURIERFT', n_frequency: 4, scaling: 150 }, [t(`${A}.fourierft_spectrum`, [4, 1])], /fourierft_spectrum \(4, 1\) is not \(n_frequency\) for the config's n_frequency 4/],
  ['DEFT deft_P (8, 2, 1)', { peft_type: 'DEFT', r: 2 }, [t(`${A}.deft_P`, [8, 2, 1]), t(`${A}.deft_R`, [2, 8])], /deft_P \(8, 2, 1\) and deft_R \(2, 8\) are not \(out, r\) and \(r, in\)/],
  // One value per block is b = 2; the extra dim is what is wrong.
  ['OFT oft_R (4, 1, 1)', { peft_type: 'OFT', r: 0, oft_block_size: 2 }, [t(`${A}.oft_R.weight`, [4, 1, 1])], /oft_R \(4, 1, 1\) does not hold b\(b−1\)\/2 values per block/],
  ['OFT oft_R of no values per block', { peft_type: 'OFT', r: 0, oft_block_size: 2 }, [t(`${A}.oft_R.weight`, [4, 0])], /oft_R \(4, 0\) does not hold b\(b−1\)\/2 values per block/],
  ['HRA hra_u (8, 2, 1)', { peft_type: 'HRA', r: 2 }, [t(`${A}.hra_u`, [8, 2, 1])], /hra_u \(8, 2, 1\) is not \(inputs, r\) for the config's r = 2/],
  ['HiRA with hira_B beside hira_embedding_A and _B', { peft_type: 'HIRA', r: 2 },
    [t(`${A}.hira_B`, [8, 2]), t(`${A}.hira_embedding_A`, [2, 8]), t(`${A}.hira_embedding_B`, [8, 2])], /mixes a layer's hira_A\/hira_B with an embedding's hira_embedding_A\/hira_embedding_B/],
])('PEFT %s is refused, naming the module (one part of a check alone)', async (_what, config, tensors, pattern) => {
  const message = await peftRefusal(config, tensors);
  expect(message).toMatch(peftNamed);
  expect(message).toMatch(pattern);
});
