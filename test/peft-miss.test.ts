/**
 * PEFT MiSS folders (peft_type MISS, `<module>.miss_block`) and Bone's (peft_type BONE,
 * `bone_block`, MiSS's earlier name): the default block (r, out) is added to every run of r inputs,
 * the last run cut short (ΔW[o, i] = block[i mod r, o]); MiSS's `mini` block (r, mini_r) repeats
 * along the outputs first. The `bat` form (out/r, r, r) maps every r×r tile W_ij (row tile i) to
 * W_ij + W_ij·B_i + B_i; its truth multiplies the tiles out in float64.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { fixtureTensor, gridValues, mergePeftFolder, expectPeftCliRefusal, preparePeftFolder } from './helpers/peft-method-folder.js';
import { batTruth } from './helpers/peft-delta-truth.js';

const backends = mergeBackends({ cpu: 'default' });

const rand = seededRandom(61);
const vals = gridValues(rand);
const t = fixtureTensor;

/** The fields PEFT 0.17 writes to a MiSS adapter_config.json (Bone's lack mini_r). */
const config = (fields: object) => ({
  peft_type: 'MISS', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: '0.17.1', revision: null,
  r: 3, miss_dropout: 0, mini_r: 1, init_weights: true, target_modules: ['q_proj', 'v_proj'], exclude_modules: null, layers_to_transform: null,
  layers_pattern: null, bias: 'none', modules_to_save: null, inference_mode: true, ...fields,
});

const run = async (...args: Parameters<typeof mergePeftFolder>) => (await mergePeftFolder(...args)).tensors;

/** W[o, i] + s·block[i mod r, o mod cols] for a block (r, cols). */
const truth = (w: Float64Array, block: Float64Array, out: number, inF: number, r: number, cols: number, s = 1) =>
  w.map((x, j) => x + s * block[(j % inF % r) * cols + (Math.floor(j / inF) % cols)]);

const q = 'model.layers.0.self_attn.q_proj', v = 'model.layers.0.self_attn.v_proj';

describe.each(['cpu', 'webgpu'])('MiSS and Bone (PEFT), %s', (name) => {
  it('the default block over runs of r = 3 inputs with a short last run (13 inputs), and r = 1', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 10, inF = 13;
    const wq = vals(out * inF, 'BF16'), wv = vals(out * inF, 'BF16');
    const bq = vals(3 * out, 'F32'), bv = vals(out, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [out, inF], wq)], config({}), [t(`base_model.model.${q}.miss_block`, 'F32', [3, out], bq)], 0.5);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(wq, bq, out, inF, 3, out, 0.5), 'BF16', q);
    const tensors1 = await run(backend, [t(`${v}.weight`, 'BF16', [out, inF], wv)], config({ r: 1 }), [t(`base_model.model.${v}.miss_block`, 'F32', [1, out], bv)]);
    expectMerged(tensors1.get(`${v}.weight`)!.values, truth(wv, bv, out, inF, 1, out), 'BF16', v);
  });

  it('mini: a (r, mini_r) block repeated along the outputs', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 10, inF = 9, r = 2, miniR = 5;
    const w = vals(out * inF, 'F32');
    const block = vals(r * miniR, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'F32', [out, inF], w)], config({ r, mini_r: miniR, init_weights: 'mini' }), [t(`base_model.model.${q}.miss_block`, 'F32', [r, miniR], block)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, truth(w, block, out, inF, r, miniR), 'F32', q);
  });

  it('bat: every r×r tile to W_ij + W_ij·B_i + B_i (r = 3 on 12 × 9, f32 blocks on bf16; r = 8 on 16 × 24, bf16 blocks on f32, weight 0.5)', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(12 * 9, 'BF16'), blocks = vals(4 * 3 * 3, 'F32');
    const tensors = await run(backend, [t(`${q}.weight`, 'BF16', [12, 9], w)], config({ r: 3, init_weights: 'bat' }), [t(`base_model.model.${q}.miss_block`, 'F32', [4, 3, 3], blocks)]);
    expectMerged(tensors.get(`${q}.weight`)!.values, batTruth(w, blocks, 12, 9, 3), 'BF16', q);
    const w8 = vals(16 * 24, 'F32'), blocks8 = vals(2 * 8 * 8, 'BF16', 0.5);
    const tensors8 = await run(backend, [t(`${v}.weight`, 'F32', [16, 24], w8)], config({ r: 8, init_weights: 'bat' }), [t(`base_model.model.${v}.miss_block`, 'BF16', [2, 8, 8], blocks8)], 0.5);
    expectMerged(tensors8.get(`${v}.weight`)!.values, batTruth(w8, blocks8, 16, 24, 8, 0.5), 'F32', v);
  });

  it('bat in a Bone folder (bone_block), f16', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const w = vals(8 * 6, 'F16'), blocks = vals(4 * 2 * 2, 'F16');
    const tensors = await run(backend, [t(`${v}.weight`, 'F16', [8, 6], w)],
      { peft_type: 'BONE', r: 2, init_weights: 'bat', target_modules: ['v_proj'], bias: 'none', task_type: 'CAUSAL_LM' }, [t(`base_model.model.${v}.bone_block`, 'F16', [4, 2, 2], blocks)]);
    expectMerged(tensors.get(`${v}.weight`)!.values, batTruth(w, blocks, 8, 6, 2), 'F16', v);
  });

  it('a Bone folder (bone_block), the same rule', async (ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const out = 12, inF = 8, r = 4;
    const w = vals(out * inF, 'F16');
    const block = vals(r * out, 'F16');
    const tensors = await run(backend, [t(`${v}.weight`, 'F16', [out, inF], w)],
      { peft_type: 'BONE', r, init_weights: true, target_modules: ['v_proj'], bias: 'none', task_type: 'CAUSAL_LM' }, [t(`base_model.model.${v}.bone_block`, 'F16', [r, out], block)]);
    expectMerged(tensors.get(`${v}.weight`)!.values, truth(w, block, out, inF, r, out), 'F16', v);
  });
});

it('refuses bat blocks that disagree with r or the config, blocks that disagree with r or mini_r, and a mini_r that does not divide the outputs', async () => {
  const open = (cfg: object, tensors: FixtureTensor[]) => preparePeftFolder([t(`${q}.weight`, 'F32', [6, 6], vals(36, 'F32'))], cfg, tensors);
  await expect(open(config({ r: 2, init_weights: 'bat' }), [t(`base_model.model.${q}.miss_block`, 'F32', [2, 3, 3], vals(18, 'F32'))]))
    .rejects.toThrow(/q_proj": bat block \(2, 3, 3\) is not \(outputs \/ r, r, r\) for the config's r = 2/);
  // The config's init_weights says bat even where the block has the default form's shape, and the other way round.
  await expect(open(config({ r: 3, init_weights: 'bat' }), [t(`base_model.model.${q}.miss_block`, 'F32', [3, 6], vals(18, 'F32'))])).rejects.toThrow(/bat block \(3, 6\) is not/);
  await expect(open(config({ r: 3 }), [t(`base_model.model.${q}.miss_block`, 'F32', [2, 3, 3], vals(18, 'F32'))])).rejects.toThrow(/block \(2, 3, 3\) has the bat form \(outputs \/ r, r, r\), but the config's init_weights is not "bat"/);
  // Outputs that are not the blocks' (2 · 3 ≠ 6 rows fit, 9 do not); inputs that are not a multiple of r.
  await expect(run(backends.cpu!, [t(`${q}.weight`, 'F32', [6, 7], vals(42, 'F32'))], config({ r: 3, init_weights: 'bat' }), [t(`base_model.model.${q}.miss_block`, 'F32', [2, 3, 3], vals(18, 'F32'))]))
    .rejects.toThrow(/the bat form needs the layer's 7 inputs to be a multiple of r = 3/);
  await expect(open(config({ r: 3 }), [t(`base_model.model.${q}.miss_block`, 'F32', [2, 6], vals(12, 'F32'))])).rejects.toThrow(/block \(2, 6\) is not \(r, outputs\) for the config's r = 3/);
  await expect(open(config({ r: 3, init_weights: 'mini', mini_r: 2 }), [t(`base_model.model.${q}.miss_block`, 'F32', [3, 4], vals(12, 'F32'))]))
    .rejects.toThrow(/mini block \(3, 4\) is not \(r, mini_r\) for the config's r = 3 and mini_r = 2/);
  await expect(run(backends.cpu!, [t(`${q}.weight`, 'F32', [6, 6], vals(36, 'F32'))], config({ r: 3, init_weights: 'mini', mini_r: 4 }), [t(`base_model.model.${q}.miss_block`, 'F32', [3, 4], vals(12, 'F32'))]))
    .rejects.toThrow(/mini_r 4 does not divide the layer's 6 outputs/);
});

it('bat refusals through the CLI: one line, nothing written', async () => {
  const refuse = (shape: number[], message: RegExp, command: 'merge' | 'resize' = 'merge') => expectPeftCliRefusal([t(`${q}.weight`, 'F32', shape, vals(shape[0] * shape[1], 'F32'))],
    config({ r: 3, init_weights: 'bat' }), [t(`base_model.model.${q}.miss_block`, 'F32', [2, 3, 3], vals(18, 'F32'))], message, command);
  // Blocks for 6 outputs on a layer of 9.
  await refuse([9, 6], /q_proj.*\(6, 6\)/);
  await refuse([6, 7], /the bat form needs the layer's 7 inputs to be a multiple of r = 3/);
  await refuse([6, 6], /q_proj" is MiSS \(PEFT\), whose update is not a low-rank product; resize cannot express it/, 'resize');
});
