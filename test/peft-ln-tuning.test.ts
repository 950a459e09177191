/**
 * PEFT LN tuning folders (peft_type LN_TUNING): PEFT trains a copy of each target layer and saves
 * its parameters as `<module>.ln_tuning_layers.<param>`; merging swaps the copy in, so each saved
 * tensor replaces the base's `<module>.<param>` and nothing else changes.
 */
import { describe, expect, it } from 'vitest';
import { roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(47);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT 0.17 writes to an LN tuning adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'LN_TUNING', task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.17.1', revision: null,
  target_modules: ['input_layernorm', 'post_attention_layernorm', 'norm'], exclude_modules: null, modules_to_save: null, inference_mode: true, ...fields,
});

const run = mergePeftFolder;

describe.each(['cpu', 'webgpu'])('LN tuning (PEFT), %s', (name) => {
  it('RMSNorm weights of a Qwen2-style model replaced by the trained copies, rounded to the base dtype', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const hidden = 23;
    const norms = ['model.layers.0.input_layernorm', 'model.layers.0.post_attention_layernorm', 'model.norm'];
    const base = norms.map((n) => t(`${n}.weight`, 'BF16', [hidden], vals(hidden, 'BF16')));
    const q = t('model.layers.0.self_attn.q_proj.weight', 'BF16', [hidden, hidden], vals(hidden * hidden, 'BF16'));
    const trained = norms.map(() => vals(hidden, 'F32'));
    const { tensors, warnings } = await run(backend, [...base, q], config({}), norms.map((n, i) => t(`base_model.model.${n}.ln_tuning_layers.weight`, 'F32', [hidden], trained[i])), 0.5);
    norms.forEach((n, i) => expect(Array.from(tensors.get(`${n}.weight`)!.values), n).toEqual(Array.from(trained[i], (x) => roundForDType(x, 'BF16'))));
    expect(Array.from(tensors.get(q.name)!.values)).toEqual(Array.from(q.data));
    // PEFT has no weight for LN tuning: the copy is swapped in whole, and the merge says so.
    expect(warnings.join('\n')).toMatch(/weight 0\.5 does not apply to the replaced tensor model\.norm\.weight/);
  });

  it('a LayerNorm with bias (GPT-2 ln_1), both parameters replaced', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const ln = 'transformer.h.0.ln_1', n = 17;
    const w = vals(n, 'F16'), b = vals(n, 'F16'), tw = vals(n, 'F16'), tb = vals(n, 'F16');
    const { tensors } = await run(backend, [t(`${ln}.weight`, 'F16', [n], w), t(`${ln}.bias`, 'F16', [n], b)],
      config({ target_modules: ['ln_1'], task_type: null, base_model_name_or_path: 'gpt2' }),
      [t(`base_model.model.${ln}.ln_tuning_layers.weight`, 'F16', [n], tw), t(`base_model.model.${ln}.ln_tuning_layers.bias`, 'F16', [n], tb)]);
    expect(Array.from(tensors.get(`${ln}.weight`)!.values)).toEqual(Array.from(tw));
    expect(Array.from(tensors.get(`${ln}.bias`)!.values)).toEqual(Array.from(tb));
  });
});

it('refuses a saved copy of a parameter the base layer lacks, a copy of another shape, and a tensor of another method', async () => {
  const open = (tensors: FixtureTensor[]) => preparePeftFolder([t('model.norm.weight', 'F32', [8], vals(8, 'F32'))], config({}), tensors);
  // Both are plan problems, each naming the module, the saved tensor and what is wrong.
  const problems = async (tensors: FixtureTensor[]) => (await open(tensors)).plan.problems.map((p) => p.message).join('\n');
  expect(await problems([t('base_model.model.model.norm.ln_tuning_layers.bias', 'F32', [8], vals(8, 'F32'))]))
    .toMatch(/module "model\.norm\.bias": saved tensor base_model\.model\.model\.norm\.ln_tuning_layers\.bias: no matching tensor in the base model/);
  expect(await problems([t('base_model.model.model.norm.ln_tuning_layers.weight', 'F32', [9], vals(9, 'F32'))])).toMatch(/replacement \(9\) does not match base model\.norm\.weight \(8\)/);
  await expect(open([t('base_model.model.model.norm.weight.lora_E', 'F32', [2, 1], vals(2, 'F32'))])).rejects.toThrow(/neither a LN_TUNING tensor/);
});
