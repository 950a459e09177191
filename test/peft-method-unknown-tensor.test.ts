/**
 * PEFT's methods other than LoRA refuse a tensor under one of their modules with an ending the method
 * never saves there (`<module>.x.weight`, `<module>.foo`, another method's factor) in the wording
 * PEFT LoRA and single files use: the module, the ending found, and the endings the method reads.
 * The layer's own tensors saved beside (bias="all" `<module>.bias`, `base_layer.weight`) still
 * replace the base's.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';
import { planProblems, planRefusal, type Files } from './helpers/plan-problems.js';

const rand = seededRandom(4242);
const Q = 'model.layers.0.self_attn.q_proj';
const NORM = 'model.layers.0.input_layernorm';
const llama = (): Files => ({
  'model.safetensors': buildSafetensors([
    randomTensor(`${Q}.weight`, [8, 8], 'F32', rand), randomTensor(`${Q}.bias`, [8], 'F32', rand), randomTensor(`${NORM}.weight`, [8], 'F32', rand),
  ]),
});
const FILE = 'adapter/adapter_model.safetensors';
const tail = (reads: string) => `, which no adapter algorithm reads (${reads}); remove it or name it as one of those`;

/** Each method's config and its own tensors for q_proj (hidden 8), as PEFT saves them, and the endings it names. */
const METHODS: Record<string, { config: object; tensors: [string, number[]][]; reads: string }> = {
  HRA: { config: { peft_type: 'HRA', r: 2, target_modules: ['q_proj'] }, tensors: [[`${Q}.hra_u`, [8, 2]]], reads: 'PEFT HRA: hra_u, base_layer.weight, base_layer.bias' },
  IA3: { config: { peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [] }, tensors: [[`${Q}.ia3_l`, [8, 1]]], reads: 'PEFT (IA)³: ia3_l, base_layer.weight, base_layer.bias' },
  OFT: {
    config: { peft_type: 'OFT', r: 0, oft_block_size: 4, target_modules: ['q_proj'], peft_version: '0.18.0' }, tensors: [[`${Q}.oft_R.weight`, [2, 6]]],
    reads: 'PEFT OFT: oft_R.weight, oft_embedding_R.weight, oft_r, oft_s, base_layer.weight, base_layer.bias',
  },
  ADALORA: {
    config: { peft_type: 'ADALORA', init_r: 2, lora_alpha: 2, target_modules: ['q_proj'] }, tensors: [[`${Q}.lora_A`, [2, 8]], [`${Q}.lora_E`, [2, 1]], [`${Q}.lora_B`, [8, 2]]],
    reads: 'PEFT AdaLoRA: lora_A, lora_E, lora_B, base_layer.weight, base_layer.bias',
  },
};

const folder = (method: string, extra: string[]): Files => peftFolder(METHODS[method].config, [
  ...METHODS[method].tensors.map(([n, s]) => randomTensor(`base_model.model.${n}`, s, 'F32', rand)),
  ...extra.map((n) => randomTensor(n, [8], 'F32', rand)),
]);

describe('PEFT methods: an unknown tensor of a module', () => {
  for (const method of Object.keys(METHODS)) {
    for (const ending of ['x.weight', 'foo', 'lora_magnitude_vector']) {
      it(`${method}: q_proj.${ending} is q_proj's unknown tensor "${ending}"`, async () => {
        const key = `base_model.model.${Q}.${ending}`;
        expect(await planRefusal(llama(), { adapter: folder(method, [key]) })).toBe(`${FILE}: module "${Q}": unknown tensor "${ending}" ("${key}")${tail(METHODS[method].reads)}`);
      });
    }
  }

  it('LN tuning: a tensor beside a layer copy is the layer\'s unknown tensor', async () => {
    const key = `base_model.model.${NORM}.foo`;
    const files = peftFolder({ peft_type: 'LN_TUNING', target_modules: ['input_layernorm'] }, [
      randomTensor(`base_model.model.${NORM}.ln_tuning_layers.weight`, [8], 'F32', rand), randomTensor(key, [8], 'F32', rand),
    ]);
    expect(await planRefusal(llama(), { adapter: files })).toBe(`${FILE}: module "${NORM}": unknown tensor "foo" ("${key}")${tail('PEFT LN tuning: ln_tuning_layers.<parameter>, base_layer.weight, base_layer.bias')}`);
  });

  it('the module\'s own bias (bias="all") and base_layer.weight are still saved base tensors', async () => {
    expect(await planProblems(llama(), { adapter: folder('HRA', [`base_model.model.${Q}.bias`]) })).toEqual([]);
    const files = peftFolder(METHODS.HRA.config, [
      randomTensor(`base_model.model.${Q}.hra_u`, [8, 2], 'F32', rand), randomTensor(`base_model.model.${Q}.base_layer.weight`, [8, 8], 'F32', rand),
    ]);
    expect(await planProblems(llama(), { adapter: files })).toEqual([]);
  });
});
