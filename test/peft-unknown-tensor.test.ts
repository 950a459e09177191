/**
 * A PEFT adapter tensor under a LoRA-wrapped module with an ending PEFT never saves there
 * (`<module>.x.weight` beside `<module>.lora_A/lora_B`) is refused as that module's unknown tensor,
 * naming the module and the ending, not read as a saved base tensor `<module>.x.weight` (which the
 * base lacks). A saved tensor of an unwrapped module still replaces the base's.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';
import { planProblems, planRefusal, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(7331);
const Q = 'model.layers.0.self_attn.q_proj';
const llama = (): Files => ({
  'model.safetensors': buildSafetensors([
    randomTensor(`${Q}.weight`, [8, 8], 'F32', rand), randomTensor('model.layers.0.self_attn.k_proj.bias', [8], 'F32', rand),
  ]),
});
const adapter = (extra: string): Files => peftFolder({ r: 2, lora_alpha: 2, target_modules: ['q_proj'] }, [
  randomTensor(`base_model.model.${Q}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`base_model.model.${Q}.lora_B.weight`, [8, 2], 'F32', rand),
  randomTensor(extra, [8], 'F32', rand),
]);
const KNOWN = '(PEFT LoRA: lora_A.weight, lora_B.weight, lora_B.bias, lora_embedding_A, lora_embedding_B, lora_magnitude_vector, base_layer.weight, base_layer.bias); remove it or name it as one of those';

describe('PEFT adapters: an unknown tensor of a LoRA module', () => {
  it('q_proj.x.weight is q_proj\'s unknown tensor "x.weight"', async () => {
    const key = `base_model.model.${Q}.x.weight`;
    expect(await planRefusal(llama(), { adapter: adapter(key) })).toBe(
      `adapter/adapter_model.safetensors: module "${Q}": unknown tensor "x.weight" ("${key}"), which no adapter algorithm reads ${KNOWN}`);
  });

  it('q_proj.foo (no weight/bias ending) names the module and "foo"', async () => {
    const key = `base_model.model.${Q}.foo`;
    expect(await planRefusal(llama(), { adapter: adapter(key) })).toBe(
      `adapter/adapter_model.safetensors: module "${Q}": unknown tensor "foo" ("${key}"), which no adapter algorithm reads ${KNOWN}`);
  });

  it('a saved bias of an unwrapped module (bias="all") is still a saved base tensor', async () => {
    expect(await planProblems(llama(), { adapter: adapter('base_model.model.model.layers.0.self_attn.k_proj.bias') })).toEqual([]);
  });
});
