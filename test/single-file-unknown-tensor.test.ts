/**
 * A single-file adapter tensor under an ending no algorithm reads, beside a module's known tensors
 * (`<module>.x.weight` next to `<module>.lora_down.weight`), is refused as an unknown tensor of that
 * module, naming the module and the ending, not read as a module `<module>.x` of its own. Names are
 * kohya's for an SD UNet and diffusers' PEFT-style ones for a Llama.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { randomTensor } from './helpers/hf-folder.js';
import { planRefusal, qProjSingleFile, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(5150);
const llama = (): Files => ({ 'model.safetensors': buildSafetensors([randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'F32', rand)]) });
const K = 'lora_unet_down_blocks_0_attentions_0_proj_in';
const kohya = (extra: string): Files => ({
  'adapter.safetensors': buildSafetensors([
    randomTensor(`${K}.lora_down.weight`, [2, 8], 'F32', rand), randomTensor(`${K}.lora_up.weight`, [8, 2], 'F32', rand),
    randomTensor(`${K}.alpha`, [], 'F32', rand), randomTensor(extra, [8], 'F32', rand),
  ]),
});
const KNOWN = '(LoRA: lora_down.weight, lora_up.weight, alpha; LoRA with split_dims: lora_down.N.weight, lora_up.N.weight (N 0 to 7); LoHa: hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b; LoKr: lokr_w1, lokr_w2 and their _a/_b; full: diff, diff_b); remove it or name it as one of those';

describe('single-file adapters: an unknown tensor of a known module', () => {
  it('kohya: <module>.x.weight is module <module>\'s unknown tensor "x.weight"', async () => {
    expect(await planRefusal(llama(), { adapter: kohya(`${K}.x.weight`) })).toBe(
      `adapter/adapter.safetensors: module "${K}": unknown tensor "x.weight" ("${K}.x.weight"), which no adapter algorithm reads ${KNOWN}`);
  });

  it('kohya: <module>.foo (no known ending at all) names the module and "foo"', async () => {
    expect(await planRefusal(llama(), { adapter: kohya(`${K}.foo`) })).toBe(
      `adapter/adapter.safetensors: module "${K}": unknown tensor "foo" ("${K}.foo"), which no adapter algorithm reads ${KNOWN}`);
  });

  it('diffusers: q_proj.x.weight beside q_proj.lora_A/B is q_proj\'s unknown tensor', async () => {
    const q = 'model.layers.0.self_attn.q_proj';
    expect(await planRefusal(llama(), { adapter: qProjSingleFile(rand, [[`${q}.x.weight`, [8]]]) })).toBe(
      `adapter/adapter.safetensors: module "${q}": unknown tensor "x.weight" ("${q}.x.weight"), which no adapter algorithm reads ${KNOWN}`);
  });

  it('kohya: <module>.x.y.weight before <module>.x.weight are both <module>\'s, not y.weight a tensor of "module" <module>.x', async () => {
    // Each lone weight belongs to the nearest name that is a module, whatever the file's order:
    // `<module>.x` is none, being an unknown tensor itself.
    const files: Files = {
      'adapter.safetensors': buildSafetensors([
        randomTensor(`${K}.lora_down.weight`, [2, 8], 'F32', rand), randomTensor(`${K}.lora_up.weight`, [8, 2], 'F32', rand),
        randomTensor(`${K}.x.y.weight`, [8], 'F32', rand), randomTensor(`${K}.x.weight`, [8], 'F32', rand),
      ]),
    };
    expect(await planRefusal(llama(), { adapter: files })).toBe(['2 problems in adapter:', ...['x.y.weight', 'x.weight'].map((e) =>
      `  - adapter/adapter.safetensors: module "${K}": unknown tensor "${e}" ("${K}.${e}"), which no adapter algorithm reads ${KNOWN}`)].join('\n'));
  });
});
