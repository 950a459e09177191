/**
 * LoRA variants of PEFT's LoraConfig that the merge reads (tuners/lora/variants.py):
 * - MonteCLoRA (`monteclora_config`): MontecloraLinearVariant.merge_safe/merge_unsafe add
 *   get_delta_weight, plain scale·B·A; the saved sampler state
 *   `<module>.lora_monteclora_sampler.{std_prior (r), expert_weights_prior (num_samples),
 *   gaussian_var_prior (r, r), expert_weights (num_samples)}` only perturbs lora_A while training.
 * - VeLoRA (`velora_config`): its forward is lora_A(x) as usual (only the backward keeps compressed
 *   activations), its merge get_delta_weight; `<module>.lora_velora_embed` (ceil(in/num_groups)) is
 *   saved (a persistent BufferDict) and not part of the weight.
 * - BD-LoRA (`use_bdlora`): under target_modules_bd_a lora_A is saved (r, in/N) and merges as
 *   block_diag of its N row chunks; under target_modules_bd_b lora_B is saved (out, r/N), likewise.
 * All three exist on PEFT's Linear layer only; two variants at once PEFT refuses. The truth is
 * written here in float64: the block-diagonal factor is formed entry by entry from which block
 * its row and column fall in.
 */
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';
import { mm } from './helpers/dense-f64.js';
import { resizeAdapter } from '../src/adapter-ops/resize.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import { openAdapter } from '../src/formats/adapter.js';
import { memoryInputFileSet } from '../src/index.js';
import { peftFolder } from './helpers/hf-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(123);
const vals = gridValues(rand);
const t = fixtureTensor;
const saved = (module: string, param: string) => `base_model.model.${module}.${param}`;
const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj', o = 'model.layers.0.self_attn.o_proj';

/** Every field PEFT's LoraConfig.to_dict writes (runtime_config popped), at its default, then `fields`. */
const loraConfig = (fields: object = {}) => ({
  peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', revision: null, inference_mode: true,
  auto_mapping: null, peft_version: '0.19.1', r: 4, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, lora_alpha: 8,
  lora_dropout: 0.05, fan_in_fan_out: false, bias: 'none', use_rslora: false, modules_to_save: null, init_lora_weights: true,
  layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, megatron_config: null, megatron_core: 'megatron.core',
  trainable_token_indices: null, loftq_config: {}, eva_config: null, corda_config: null, lora_ga_config: null, use_dora: false,
  velora_config: null, alora_invocation_tokens: null, use_qalora: false, qalora_group_size: 16, monteclora_config: null,
  layer_replication: null, lora_bias: false, target_parameters: null, use_bdlora: null, arrow_config: null, kasa_config: null,
  ensure_weight_tying: false, ...fields,
});
/** MontecloraConfig as asdict writes it, at PEFT's defaults. */
const MONTECLORA = { num_samples: 8, use_entropy: false, dirichlet_prior: 0.1, sample_scaler: 1e-4, kl_loss_weight: 1e-5, buffer_size: 150 };
const VELORA = { num_groups: 4, scale: 1.0, init_type: 'batch_average' };

const out = 24, inF = 16, r = 4;
const baseOf = (...modules: [string, number, number][]) => modules.map(([m, rows, cols]) => t(`${m}.weight`, 'BF16', [rows, cols], vals(rows * cols, 'BF16')));
const pairOf = (m: string, a: Float64Array, aShape: number[], b: Float64Array, bShape: number[]) => [
  t(saved(m, 'lora_A.weight'), 'F32', aShape, a), t(saved(m, 'lora_B.weight'), 'F32', bShape, b),
];
const plus = (w: ArrayLike<number>, d: Float64Array, s: number) => Float64Array.from(w, (x, i) => x + s * d[i]);

/** MonteCLoRA's sampler for one module as PEFT saves it (adapter name removed). */
const sampler = (m: string, samples = 8): FixtureTensor[] => [
  t(saved(m, 'lora_monteclora_sampler.std_prior'), 'F32', [r], vals(r, 'F32')),
  t(saved(m, 'lora_monteclora_sampler.expert_weights_prior'), 'F32', [samples], vals(samples, 'F32')),
  t(saved(m, 'lora_monteclora_sampler.gaussian_var_prior'), 'F32', [r, r], vals(r * r, 'F32')),
  t(saved(m, 'lora_monteclora_sampler.expert_weights'), 'F32', [samples], vals(samples, 'F32')),
];

/** block_diag of the N row chunks of a (rows, cols) matrix, entry by entry: nonzero where row block = column block. */
function blockDiag(x: Float64Array, rows: number, cols: number, n: number): Float64Array {
  const wide = cols * n, d = new Float64Array(rows * wide);
  for (let i = 0; i < rows; i++) for (let j = 0; j < wide; j++) {
    if (Math.floor(i / (rows / n)) === Math.floor(j / cols)) d[i * wide + j] = x[i * cols + (j % cols)];
  }
  return d;
}

async function refusal(base: FixtureTensor[], config: object, tensors: FixtureTensor[]): Promise<string> {
  try {
    const prepared = await preparePeftFolder(base, config, tensors);
    const problems = prepared.plan.problems.map((p) => p.message);
    await prepared.close();
    return problems.join('\n') || 'merged';
  } catch (e) {
    if (!isMergeError(e)) throw e;
    return e.message;
  }
}

describe.each(['cpu', 'webgpu'])('%s', (name) => {
  it('MonteCLoRA merges as plain LoRA (α/r·B·A), its sampler tensors recognised, left out and named in a warning', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const base = baseOf([q, out, inF], [v, out, inF]);
    const aq = vals(r * inF, 'F32'), bq = vals(out * r, 'F32'), av = vals(r * inF, 'F32'), bv = vals(out * r, 'F32');
    const { tensors, warnings } = await mergePeftFolder(backend, base, loraConfig({ monteclora_config: MONTECLORA }), [
      ...pairOf(q, aq, [r, inF], bq, [out, r]), ...sampler(q), ...pairOf(v, av, [r, inF], bv, [out, r]), ...sampler(v),
    ], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, plus(base[0].data, mm(bq, aq, out, r, inF), 0.5 * 8 / r), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, plus(base[1].data, mm(bv, av, out, r, inF), 0.5 * 8 / r), 'BF16', v);
    const note = warnings.find((w) => w.includes('monteclora_config'));
    expect(note).toMatch(/merged as plain LoRA.*8 sampler tensors \(lora_monteclora_sampler, first ".*q_proj\.lora_monteclora_sampler\.std_prior"\) are recognised and not applied/);
  });

  it('VeLoRA merges as plain LoRA, its lora_velora_embed recognised and left out', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const base = baseOf([q, out, inF]);
    const a = vals(r * inF, 'F32'), b = vals(out * r, 'F32');
    const { tensors, warnings } = await mergePeftFolder(backend, base, loraConfig({ target_modules: ['q_proj'], velora_config: VELORA, use_rslora: true }), [
      ...pairOf(q, a, [r, inF], b, [out, r]), t(saved(q, 'lora_velora_embed'), 'BF16', [inF / VELORA.num_groups], vals(inF / VELORA.num_groups, 'BF16')),
    ]);
    expectMerged(tensors.get(`${q}.weight`)!.values, plus(base[0].data, mm(b, a, out, r, inF), 8 / Math.sqrt(r)), 'BF16', q);
    expect(warnings.find((w) => w.includes('velora_config'))).toMatch(/merged as plain LoRA.*1 lora_velora_embed tensor .* is recognised and not applied/);
  });

  it('BD-LoRA: block-diagonal lora_A (bd_a) and lora_B (bd_b) expanded to block_diag, a plain module beside them under match_strict false', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const n = 2, oIn = 32, oOut = 16;
    const base = baseOf([q, out, inF], [o, oOut, oIn], [v, out, inF]);
    const aq = vals(r * (inF / n), 'F32'), bq = vals(out * r, 'F32');
    const ao = vals(r * oIn, 'F32'), bo = vals(oOut * (r / n), 'F32');
    const av = vals(r * inF, 'F32'), bv = vals(out * r, 'F32');
    const config = loraConfig({
      target_modules: ['q_proj', 'o_proj', 'v_proj'], alpha_pattern: { o_proj: 2 },
      use_bdlora: { target_modules_bd_a: ['q_proj'], target_modules_bd_b: ['o_proj'], nblocks: n, match_strict: false },
    });
    const { tensors } = await mergePeftFolder(backend, base, config, [
      ...pairOf(q, aq, [r, inF / n], bq, [out, r]), ...pairOf(o, ao, [r, oIn], bo, [oOut, r / n]), ...pairOf(v, av, [r, inF], bv, [out, r]),
    ]);
    expectMerged(tensors.get(`${q}.weight`)!.values, plus(base[0].data, mm(bq, blockDiag(aq, r, inF / n, n), out, r, inF), 8 / r), 'BF16', q);
    expectMerged(tensors.get(`${o}.weight`)!.values, plus(base[1].data, mm(blockDiag(bo, oOut, r / n, n), ao, oOut, r, oIn), 2 / r), 'BF16', o);
    expectMerged(tensors.get(`${v}.weight`)!.values, plus(base[2].data, mm(bv, av, out, r, inF), 8 / r), 'BF16', v);
  });
});

describe('refusals', () => {
  const base = baseOf([q, out, inF], [v, out, inF]);
  const plain = [...pairOf(q, vals(r * inF, 'F32'), [r, inF], vals(out * r, 'F32'), [out, r])];

  it('MonteCLoRA and VeLoRA: only on Linear layers, never together with another variant, state only with its config', async () => {
    const embed = [t(saved('model.embed_tokens', 'lora_embedding_A'), 'F32', [r, 50], vals(r * 50, 'F32')), t(saved('model.embed_tokens', 'lora_embedding_B'), 'F32', [out, r], vals(out * r, 'F32'))];
    const withEmbed = [...baseOf([q, out, inF]), t('model.embed_tokens.weight', 'BF16', [50, out], vals(50 * out, 'BF16'))];
    expect(await refusal(withEmbed, loraConfig({ target_modules: ['q_proj', 'embed_tokens'], monteclora_config: MONTECLORA }), [...plain, ...embed]))
      .toMatch(/module "model\.embed_tokens" is an embedding .* sets monteclora_config, which PEFT builds on Linear layers only/);
    const conv = [t(saved('conv', 'lora_A.weight'), 'F32', [r, 3, 3, 3], vals(r * 27, 'F32')), t(saved('conv', 'lora_B.weight'), 'F32', [8, r, 1, 1], vals(8 * r, 'F32'))];
    expect(await refusal([t('conv.weight', 'F32', [8, 3, 3, 3], vals(8 * 27, 'F32'))], loraConfig({ target_modules: ['conv'], velora_config: VELORA }), conv))
      .toMatch(/module "conv" is a convolution .* sets velora_config, which PEFT builds on Linear layers only/);
    expect(await refusal(base, loraConfig({ monteclora_config: MONTECLORA, use_dora: true }), plain))
      .toMatch(/use_dora and monteclora_config are set together, which PEFT refuses .*Invalid or unsupported variant combination/);
    expect(await refusal(base, loraConfig({ velora_config: VELORA, use_bdlora: { target_modules_bd_a: ['q_proj'] } }), plain))
      .toMatch(/velora_config and use_bdlora are set together/);
    expect(await refusal(base, loraConfig(), [...plain, ...sampler(q)]))
      .toMatch(/^adapter\/adapter_model\.safetensors: holds 4 MonteCLoRA sampler tensors \(first "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_monteclora_sampler\.std_prior"\) but adapter\/adapter_config\.json does not set monteclora_config/);
    expect(await refusal(base, loraConfig(), [...plain, t(saved(q, 'lora_velora_embed'), 'F32', [4], vals(4, 'F32'))]))
      .toMatch(/holds 1 VeLoRA activation projection tensor \(first ".*q_proj\.lora_velora_embed"\) but .* does not set velora_config/);
    expect(await refusal(base, loraConfig({ monteclora_config: { ...MONTECLORA, num_samples: 0 } }), plain)).toMatch(/monteclora_config\.num_samples is 0, which PEFT refuses/);
    expect(await refusal(base, loraConfig({ velora_config: true }), plain)).toMatch(/"velora_config" must be an object/);
    expect(await refusal(base, loraConfig({ monteclora_config: MONTECLORA }), [...plain, ...sampler(v)]))
      .toMatch(/lora_monteclora_sampler\.std_prior" belongs to module "model\.layers\.0\.self_attn\.v_proj", which has no lora_A\/lora_B/);
  });

  it('BD-LoRA: patterns, strictness, shapes and lora_bias on a block-diagonal lora_B', async () => {
    const bd = (fields: object) => loraConfig({ use_bdlora: { target_modules_bd_a: ['q_proj'], target_modules_bd_b: null, nblocks: 2, match_strict: true, ...fields } });
    const compactA = [...pairOf(q, vals(r * 8, 'F32'), [r, 8], vals(out * r, 'F32'), [out, r])];
    const plainV = [...pairOf(v, vals(r * inF, 'F32'), [r, inF], vals(out * r, 'F32'), [out, r])];
    expect(await refusal(base, bd({}), [...compactA, ...plainV]))
      .toMatch(/module "model\.layers\.0\.self_attn\.v_proj" matches neither target_modules_bd_a nor target_modules_bd_b while use_bdlora\.match_strict is true/);
    expect(await refusal(base, bd({ target_modules_bd_a: ['self_attn'], target_modules_bd_b: ['q_proj'] }), compactA))
      .toMatch(/matches both target_modules_bd_a and target_modules_bd_b/);
    expect(await refusal(base, bd({ target_modules_bd_b: ['q_proj'] }), compactA)).toMatch(/lists "q_proj" in both target_modules_bd_a and target_modules_bd_b/);
    // A full-width lora_A under bd_a is not what BlockDiagonalLinear saves: ΔW would be 32 wide.
    expect(await refusal(base, bd({ match_strict: false }), plain)).toMatch(/module "model\.layers\.0\.self_attn\.q_proj": ΔW \(24, 32\) does not fit base .*\(24, 16\)/);
    expect(await refusal(base, bd({ nblocks: 3 }), compactA)).toMatch(/rank 4 is not a multiple of nblocks/);
    const bdB = [...pairOf(q, vals(r * inF, 'F32'), [r, inF], vals(out * 2, 'F32'), [out, 2]), t(saved(q, 'lora_B.bias'), 'F32', [out], vals(out, 'F32'))];
    expect(await refusal(base, loraConfig({ lora_bias: true, use_bdlora: { target_modules_bd_b: ['q_proj'], nblocks: 2 } }), bdB))
      .toMatch(/block-diagonal lora_B, nblocks 2\): has a lora_B bias/);
    expect(await refusal(base, bd({ unknown_field: 1 }), compactA)).toMatch(/"use_bdlora" has an unknown field "unknown_field"/);
  });

  it('an empty use_bdlora dict is no variant (PEFT tests bool(use_bdlora)), so the folder is plain LoRA', async () => {
    const prepared = await preparePeftFolder(base, loraConfig({ use_bdlora: {} }), plain);
    expect(prepared.plan.problems).toEqual([]);
    await prepared.close();
  });

  it('resize takes a BD-LoRA module as the plain LoRA its expanded factors are (full rank: the same ΔW)', async () => {
    const n = 2, aq = vals(r * (inF / n), 'F32'), bq = vals(out * r, 'F32');
    const config = loraConfig({ target_modules: ['q_proj'], use_bdlora: { target_modules_bd_a: ['q_proj'], target_modules_bd_b: null, nblocks: n, match_strict: true } });
    const adapter = await openAdapter(memoryInputFileSet(peftFolder(config, pairOf(q, aq, [r, inF / n], bq, [out, r])), 'adapter'));
    const resized = await resizeAdapter(adapter, { kind: 'rank', rank: r }, 'peft', new CpuAlgebra());
    const m = resized.adapter.modules[0];
    expect([m.name, m.rank, m.downShape, m.upShape]).toEqual([q, r, [r, inF], [out, r]]);
    const got = mm(Float64Array.from(m.up), Float64Array.from(m.down), out, r, inF).map((x) => (m.alpha / m.rank) * x);
    const want = mm(bq, blockDiag(aq, r, inF / n, n), out, r, inF).map((x) => (8 / r) * x);
    const err = Math.sqrt(got.reduce((acc, x, i) => acc + (x - want[i]) ** 2, 0) / want.reduce((acc, x) => acc + x * x, 0));
    expect(err).toBeLessThan(1e-5);
  });

  it('target_parameters under a config PEFT\'s ParamWrapper refuses (lora_dropout ≠ 0, fan_in_fan_out, lora_bias, use_dora)', async () => {
    const experts = 'model.layers.1.mlp.experts', e = 2;
    const base = [t(`${experts}.gate_up_proj`, 'F16', [e, 12, 8], vals(e * 96, 'F16'))];
    const tensors = pairOf(experts, vals(r * e * 8, 'F32'), [r * e, 8], vals(12 * r * e, 'F32'), [12, r * e]);
    const params = { target_modules: [], target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' };
    expect(await refusal(base, loraConfig({ ...params, lora_dropout: 0.05 }), tensors))
      .toMatch(/parameter "model\.layers\.1\.mlp\.experts\.gate_up_proj": the config has lora_dropout 0\.05 \(it must be 0\), which PEFT's ParamWrapper refuses/);
    expect(await refusal(base, loraConfig({ ...params, lora_dropout: 0, fan_in_fan_out: true }), tensors)).toMatch(/the config has fan_in_fan_out true, which PEFT's ParamWrapper refuses/);
    expect(await refusal(base, loraConfig({ ...params, lora_dropout: 0, monteclora_config: MONTECLORA }), tensors))
      .toMatch(/parameter "model\.layers\.1\.mlp\.experts\.gate_up_proj" is a target_parameters parameter .* sets monteclora_config, which PEFT builds on Linear layers only/);
    expect(await refusal(base, loraConfig({ ...params, lora_dropout: 0 }), tensors)).toBe('merged');
  });
});
