/**
 * PEFT SHiRA folders (peft_type SHIRA): `<module>.shira_weight` (r·(in + out)) values at
 * `<module>.shira_indices` (2, n) int32 positions (float32 when saved on Windows); PEFT merges
 * W += sparse(indices, values) at scaling 1. The truth adds each value at its position.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(67);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT 0.17 writes to a SHiRA adapter_config.json. */
const config = (fields: object) => ({
  peft_type: 'SHIRA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null,
  r: 1, mask_type: 'random', random_seed: 42, target_modules: ['q_proj', 'v_proj'], fan_in_fan_out: false, init_weights: true,
  modules_to_save: null, inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** n distinct (out, in) positions, in no particular order, as PEFT's (2, n) layout: outs, then ins. */
function positions(n: number, out: number, inF: number): Float64Array {
  const all = Array.from({ length: out * inF }, (_, k) => k);
  for (let k = all.length - 1; k > 0; k--) {
    const j = Math.floor(rand() * (k + 1));
    [all[k], all[j]] = [all[j], all[k]];
  }
  const picked = all.slice(0, n);
  return Float64Array.from([...picked.map((p) => Math.floor(p / inF)), ...picked.map((p) => p % inF)]);
}
const truth = (w: Float64Array, at: Float64Array, v: Float64Array, inF: number, s = 1) => {
  const res = w.slice();
  for (let k = 0; k < v.length; k++) res[at[k] * inF + at[v.length + k]] += s * v[k];
  return res;
};

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

describe.each(['cpu', 'webgpu'])('SHiRA (PEFT), %s', (name) => {
  it('values added at their int32 positions, r = 1 and r = 2, with a user weight', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 9, inF = 11;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const nq = out + inF, nv = 2 * (out + inF);
    const aq = positions(nq, out, inF), av = positions(nv, out, inF);
    const xq = vals(nq, 'F32'), xv = vals(nv, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq), t(`${v}.weight`, 'BF16', [out, inF], wv)], config({ rank_pattern: {} }), [
      t(`base_model.model.${q}.shira_weight`, 'F32', [nq], xq), t(`base_model.model.${q}.shira_indices`, 'I32', [2, nq], aq),
      t(`base_model.model.${v}.shira_weight`, 'F32', [nv], xv), t(`base_model.model.${v}.shira_indices`, 'I32', [2, nv], av),
    ], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(wq, aq, xq, inF, 0.5), 'BF16', q);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(wv, av, xv, inF, 0.5), 'BF16', v);
  });

  it('positions saved as float32 (PEFT on Windows), on a larger layer merged by row slabs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 67, inF = 33, n = 3 * (out + inF);
    const w = vals(out * inF, 'F32'), at = positions(n, out, inF), x = vals(n, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ r: 3 }),
      [t(`base_model.model.${q}.shira_weight`, 'F32', [n], x), t(`base_model.model.${q}.shira_indices`, 'F32', [2, n], at)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, at, x, inF), 'F32', q);
  });
});

it('fan_in_fan_out true merges as false: PEFT turns it off for the nn.Linear SHiRA wraps (shira/model.py _create_new_module)', async () => {
  const out = 6, inF = 7, n = 4;
  const w = vals(out * inF, 'F32'), at = positions(n, out, inF), x = vals(n, 'F32');
  const tensors = await run(backends.cpu!, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ fan_in_fan_out: true }),
    [t(`base_model.model.${q}.shira_weight`, 'F32', [n], x), t(`base_model.model.${q}.shira_indices`, 'I32', [2, n], at)]);
  expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, at, x, inF), 'F32', q);
});

it('refuses positions outside the layer or listed twice, and a missing half', async () => {
  const base = [t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))];
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder(base, cfg, tensors);
  const sparse = (at: number[]) => [t(`base_model.model.${q}.shira_weight`, 'F32', [at.length / 2], vals(at.length / 2, 'F32')), t(`base_model.model.${q}.shira_indices`, 'I32', [2, at.length / 2], Float64Array.from(at))];
  await expect(run(backends.cpu!, base, config({}), sparse([0, 3, 1, 4, 0, 5]))).rejects.toThrow(/SHiRA module "model\.layers\.0\.self_attn\.q_proj": shira_indices entry 2 \(1, 5\) is outside the layer's \(4, 5\)/);
  await expect(run(backends.cpu!, base, config({}), sparse([1, 2, 1, 4, 0, 4]))).rejects.toThrow(/shira_indices lists \(1, 4\) twice/);
  await expect(open(config({}), sparse([0, 1, 2, 3]).slice(0, 1))).rejects.toThrow(/q_proj" needs shira_weight and shira_indices; shira_indices is missing/);
});

it('refuses PEFT methods whose files do not fix a merged weight, saying why, and another method\'s tensors in a LoRA folder', async () => {
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder([t(`${q}.weight`, 'F32', [4, 5], vals(20, 'F32'))], cfg, tensors);
  await expect(open({ peft_type: 'LILY', r: 2 }, [t(`base_model.model.${q}.lily_A.weight`, 'F32', [2, 5], vals(10, 'F32'))]))
    .rejects.toThrow(/PEFT method LILY is not supported: its router weighs the shared lily_B experts/);
  await expect(open({ peft_type: 'PREFIX_TUNING', num_virtual_tokens: 4 }, [t('prompt_embeddings', 'F32', [4, 5], vals(20, 'F32'))]))
    .rejects.toThrow(/PEFT method PREFIX_TUNING is not supported: it learns attention key\/value prefixes/);
  await expect(open({ peft_type: 'LORA', r: 2 }, [t(`base_model.model.${q}.hra_u`, 'F32', [5, 2], vals(10, 'F32'))]))
    .rejects.toThrow(/tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.hra_u" belongs to an adapter method other than LoRA/);
});
