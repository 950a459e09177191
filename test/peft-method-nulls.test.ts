/**
 * `null` in the numeric fields of the PEFT methods other than LoRA: PEFT's from_pretrained passes
 * None to the config class (its default does not apply) and fails where it first compares or
 * divides by it, so such a config is refused, naming the field; where None has a meaning of its own
 * to PEFT (a null flag is false to `if flag:`), that meaning is merged: OFT's null
 * use_cayley_neumann is the exact Cayley transform, not the default Neumann series. A null field the
 * method's config class does not define is dropped by PEFT and here. OFT's fan_in_fan_out, which
 * its dispatcher turns off for nn.Linear and its layers never read, merges as false.
 */
import { expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor as t, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const vals = gridValues(seededRandom(41));
const q = 'model.layers.0.self_attn.q_proj';
const a = `base_model.model.${q}`;
const base = () => [t(`${q}.weight`, 'F32', [8, 8], vals(64, 'F32'))];

/** Each method's tensors for an (8, 8) q_proj, as PEFT names and shapes them. */
const tensors: Record<string, () => FixtureTensor[]> = {
  LOHA: () => [t(`${a}.hada_w1_a`, 'F32', [8, 2], vals(16, 'F32')), t(`${a}.hada_w1_b`, 'F32', [2, 8], vals(16, 'F32')), t(`${a}.hada_w2_a`, 'F32', [8, 2], vals(16, 'F32')), t(`${a}.hada_w2_b`, 'F32', [2, 8], vals(16, 'F32'))],
  LOKR: () => [t(`${a}.lokr_w1`, 'F32', [2, 2], vals(4, 'F32')), t(`${a}.lokr_w2_a`, 'F32', [4, 2], vals(8, 'F32')), t(`${a}.lokr_w2_b`, 'F32', [2, 4], vals(8, 'F32'))],
  VERA: () => [t(`${a}.vera_lambda_b`, 'F32', [8], vals(8, 'F32')), t(`${a}.vera_lambda_d`, 'F32', [2], vals(2, 'F32')), t('base_model.vera_A', 'F32', [2, 8], vals(16, 'F32')), t('base_model.vera_B', 'F32', [8, 2], vals(16, 'F32'))],
  OFT: () => [t(`${a}.oft_R.weight`, 'F32', [4, 1], vals(4, 'F32', 0.2))],
  BOFT: () => [t(`${a}.boft_R`, 'F32', [1, 4, 2, 2], vals(16, 'F32', 0.2)), t(`${a}.boft_s`, 'F32', [8, 1], vals(8, 'F32'))],
  ADALORA: () => [t(`${a}.lora_A`, 'F32', [2, 8], vals(16, 'F32')), t(`${a}.lora_E`, 'F32', [2, 1], vals(2, 'F32')), t(`${a}.lora_B`, 'F32', [8, 2], vals(16, 'F32'))],
  C3A: () => [t(`${a}.c3a_kernel`, 'F32', [2, 2, 4], vals(16, 'F32'))],
  MISS: () => [t(`${a}.miss_block`, 'F32', [2, 8], vals(16, 'F32'))],
  HRA: () => [t(`${a}.hra_u`, 'F32', [8, 2], vals(16, 'F32'))],
  DELORA: () => [t(`${a}.delora_A`, 'F32', [2, 8], vals(16, 'F32')), t(`${a}.delora_B`, 'F32', [8, 2], vals(16, 'F32')), t(`${a}.delora_lambda`, 'F32', [1], vals(1, 'F32')), t(`${a}.delora_w_norm`, 'F32', [8], vals(8, 'F32'))],
  ROAD: () => [t(`${a}.road_theta`, 'F32', [8], vals(8, 'F32')), t(`${a}.road_alpha`, 'F32', [8], vals(8, 'F32'))],
  GRALORA: () => [t(`${a}.gralora_A`, 'F32', [2, 4, 2], vals(16, 'F32')), t(`${a}.gralora_B`, 'F32', [2, 2, 4], vals(16, 'F32'))],
  RANDLORA: () => [t(`${a}.randlora_lambda`, 'F32', [2, 4], vals(8, 'F32')), t(`${a}.randlora_gamma`, 'F32', [4, 8], vals(32, 'F32')), t('base_model.randlora_A', 'F32', [2, 1, 8], vals(16, 'F32')), t('base_model.randlora_B', 'F32', [8, 4, 2], vals(64, 'F32'))],
  VBLORA: () => [t(`${a}.vblora_logits_A`, 'F32', [2, 2, 4], vals(16, 'F32')), t(`${a}.vblora_logits_B`, 'F32', [2, 2, 4], vals(16, 'F32')), t('base_model.vblora_vector_bank', 'F32', [4, 4], vals(16, 'F32'))],
  IA3: () => [t(`${a}.ia3_l`, 'F32', [8, 1], vals(8, 'F32'))],
};

async function refusal(config: Record<string, unknown>): Promise<string> {
  return preparePeftFolder(base(), config, tensors[config.peft_type as string]()).then(() => expect.fail('should throw'), (e: unknown) => {
    expect(isMergeError(e)).toBe(true);
    return (e as Error).message;
  });
}

it.each([
  [{ peft_type: 'LOHA', r: null, alpha: 2 }, 'r', /`r <= 0` in update_layer raises TypeError/],
  [{ peft_type: 'LOHA', r: 2, alpha: null }, 'alpha', /`alpha \/ r` in update_layer/],
  [{ peft_type: 'LOKR', r: 2, alpha: null }, 'alpha', /`alpha \/ r`/],
  [{ peft_type: 'VERA', r: null }, 'r', /`r <= 0`/],
  [{ peft_type: 'OFT', r: null, oft_block_size: 0 }, 'r', /in_features % r/],
  [{ peft_type: 'OFT', r: 0, oft_block_size: null }, 'oft_block_size', /OFTConfig\.__post_init__/],
  [{ peft_type: 'OFT', r: 0, oft_block_size: 2, coft: true, eps: null }, 'eps', /coft is true/],
  [{ peft_type: 'OFT', r: 0, oft_block_size: 2, num_cayley_neumann_terms: null }, 'num_cayley_neumann_terms', /use_cayley_neumann is on/],
  [{ peft_type: 'BOFT', boft_block_size: null, boft_block_num: 4 }, 'boft_block_size', /BOFTConfig/],
  [{ peft_type: 'ADALORA', init_r: null }, 'init_r', /`r < 0`/],
  [{ peft_type: 'ADALORA', init_r: 2, lora_alpha: null }, 'lora_alpha', /`lora_alpha > 0`/],
  [{ peft_type: 'C3A', block_size: null }, 'block_size', /`block_size <= 0`/],
  [{ peft_type: 'MISS', r: null }, 'r', /`r <= 0`/],
  [{ peft_type: 'MISS', r: 2, init_weights: 'mini', mini_r: null }, 'mini_r', /out_features % mini_r/],
  [{ peft_type: 'HRA', r: null }, 'r', /`r <= 0`/],
  [{ peft_type: 'DELORA', r: null }, 'r', /`r <= 0`/],
  [{ peft_type: 'ROAD', group_size: null }, 'group_size', /RoadConfig/],
  [{ peft_type: 'GRALORA', r: 4, gralora_k: null }, 'gralora_k', /in_features % gralora_k/],
  [{ peft_type: 'GRALORA', r: 4, alpha: null }, 'alpha', /alpha \/ \(r \+ hybrid_r\)/],
  [{ peft_type: 'RANDLORA', r: 2, randlora_alpha: null }, 'randlora_alpha', /randlora_alpha \/ r/],
  [{ peft_type: 'VBLORA', r: 2, topk: null }, 'topk', /`topk <= 0`/],
  [{ peft_type: 'VBLORA', r: 2, num_vectors: null }, 'num_vectors', /torch\.zeros/],
])('refuses %j: PEFT cannot load a null %s', async (config, key, failure) => {
  const message = await refusal(config);
  expect(message).toContain(`adapter_config.json: "${key}" is null, which PEFT cannot load (`);
  expect(message).toMatch(failure);
});

it('refuses a null RoAd variant, which RoadConfig refuses', async () => {
  expect(await refusal({ peft_type: 'ROAD', variant: null })).toMatch(/RoAd "variant" must be "road_1", "road_2" or "road_4", got null/);
});

it('takes nulls PEFT never reads: a field the config class lacks, eps without coft, mini_r outside "mini"', async () => {
  for (const config of [{ peft_type: 'IA3', r: null, alpha: null, feedforward_modules: [] }, { peft_type: 'OFT', r: 0, oft_block_size: 2, eps: null, coft: false }, { peft_type: 'MISS', r: 2, mini_r: null }]) {
    await expect(preparePeftFolder(base(), config, tensors[config.peft_type]())).resolves.toBeDefined();
  }
});

it.each([
  ['use_cayley_neumann, num_cayley_neumann_terms, coft and eps null: the exact Cayley transform, as `if use_cayley_neumann:` reads None',
    { use_cayley_neumann: null, num_cayley_neumann_terms: null, coft: null, eps: null, block_share: null }],
  ['fan_in_fan_out true: as false, which oft/layer.py dispatch_default sets for an nn.Linear (OFT layers never read it)',
    { use_cayley_neumann: false, fan_in_fan_out: true }],
])('OFT with %s', async (_, fields) => {
  const w = vals(64, 'F32');
  const blocks = vals(4, 'F32', 0.5);
  const merged = await mergePeftFolder(backends.cpu!, [t(`${q}.weight`, 'F32', [8, 8], w)],
    { peft_type: 'OFT', r: 0, oft_block_size: 2, peft_version: '0.18.0', ...fields },
    [t(`${a}.oft_R.weight`, 'F32', [4, 1], blocks)]);
  // Q = [[0, x], [−x, 0]]; (I − Q)(I + Q)⁻¹ = [[1 − x², −2x], [2x, 1 − x²]] / (1 + x²), applied to each row's inputs by pairs.
  const truth = new Float64Array(64);
  for (let o = 0; o < 8; o++) for (let k = 0; k < 4; k++) {
    const x = blocks[k], d = 1 + x * x, w0 = w[o * 8 + 2 * k], w1 = w[o * 8 + 2 * k + 1];
    truth[o * 8 + 2 * k] = ((1 - x * x) * w0 - 2 * x * w1) / d;
    truth[o * 8 + 2 * k + 1] = (2 * x * w0 + (1 - x * x) * w1) / d;
  }
  expectMerged(merged.tensors.get(`${q}.weight`)!.values, truth, 'F32', q);
});
