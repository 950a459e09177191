/**
 * PEFT folders whose config's target_modules, exclude_modules, layers_to_transform / layers_pattern
 * (and modules_to_save) leave a saved module out: PeftModel.from_pretrained puts adapter layers only
 * on the modules check_target_module_exists accepts and loads the file with strict=False, so such a
 * module's tensors go unused. Modules PEFT targets merge (W + α/r·B·A, checked in float64); a file
 * holding one it does not is refused in one line, through the CLI with nothing written.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { mm } from './helpers/dense-f64.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(97);
const vals = gridValues(rand);
const t = fixtureTensor;
const d = 8, r = 2, alpha = 4;

/** The fields PEFT 0.17 writes to a LoRA adapter_config.json. */
const loraConfig = (fields: object) => ({
  peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', revision: null, inference_mode: true,
  r, lora_alpha: alpha, lora_dropout: 0.05, fan_in_fan_out: false, bias: 'none', use_rslora: false, use_dora: false,
  modules_to_save: null, init_lora_weights: true, layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {},
  exclude_modules: null, target_modules: ['q_proj', 'v_proj'], ...fields,
});

interface Layer { path: string; w: Float64Array; a: Float64Array; b: Float64Array }
const layer = (path: string): Layer => ({ path, w: vals(d * d, 'F32'), a: vals(r * d, 'F32'), b: vals(d * r, 'F32') });
const baseOf = (layers: Layer[]): FixtureTensor[] => layers.map((l) => t(`${l.path}.weight`, 'F32', [d, d], l.w));
const factorsOf = (layers: Layer[]): FixtureTensor[] => layers.flatMap((l) => [
  t(`base_model.model.${l.path}.lora_A.weight`, 'F32', [r, d], l.a), t(`base_model.model.${l.path}.lora_B.weight`, 'F32', [d, r], l.b),
]);
/** W + α/r · B·A in float64. */
const truth = (l: Layer) => {
  const ba = mm(l.b, l.a, d, r, d);
  return l.w.map((x, i) => x + (alpha / r) * ba[i]);
};

const llama = (i: number, m: string) => `model.layers.${i}.self_attn.${m}`;
const t5 = (stack: 'encoder' | 'decoder', i: number, attn: 'SelfAttention' | 'EncDecAttention', m: string) => `${stack}.block.${i}.layer.${attn === 'SelfAttention' ? 0 : 1}.${attn}.${m}`;

/** Configs PEFT targets every saved module of, as it would have written them. */
const targeted: { name: string; config: object; paths: string[] }[] = [
  { name: 'Llama target_modules ["q_proj", "v_proj"]', config: {}, paths: [llama(0, 'q_proj'), llama(0, 'v_proj'), llama(1, 'q_proj')] },
  { name: 'a full module name in target_modules', config: { target_modules: ['model.layers.1.self_attn.v_proj'] }, paths: [llama(1, 'v_proj')] },
  {
    name: 'T5 regex ".*decoder.*(SelfAttention|EncDecAttention).*(q|v)$"',
    config: { target_modules: '.*decoder.*(SelfAttention|EncDecAttention).*(q|v)$', task_type: 'SEQ_2_SEQ_LM' },
    paths: [t5('decoder', 0, 'SelfAttention', 'q'), t5('decoder', 0, 'EncDecAttention', 'v')],
  },
  // The output head all-linear leaves out is the base config's: peft-layer-names.test.ts.
  { name: 'all-linear', config: { target_modules: 'all-linear' }, paths: [llama(0, 'q_proj'), 'model.layers.0.mlp.down_proj'] },
  { name: 'no target_modules (PEFT picks them by model type)', config: { target_modules: null }, paths: [llama(0, 'k_proj')] },
  { name: 'exclude_modules leaving the saved ones in', config: { exclude_modules: ['k_proj'] }, paths: [llama(0, 'q_proj')] },
  { name: 'layers_to_transform [1, 2] with layers_pattern "layers"', config: { layers_to_transform: [1, 2], layers_pattern: 'layers' }, paths: [llama(1, 'q_proj'), llama(2, 'v_proj')] },
  { name: 'layers_to_transform 0 without layers_pattern', config: { layers_to_transform: 0 }, paths: [llama(0, 'v_proj')] },
];

describe.each(['cpu', 'webgpu'])('PEFT target_modules: merged where PEFT targets, %s', (name) => {
  it.for(targeted)('$name', async ({ config, paths }, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const layers = paths.map(layer);
    const { tensors } = await mergePeftFolder(backend, baseOf(layers), loraConfig(config), factorsOf(layers));
    for (const l of layers) expectMerged(tensors.get(`${l.path}.weight`)!.values, truth(l), 'F32', l.path);
  });
});

/** Configs that leave one saved module out, with the part of the line naming why. */
const untargeted: { name: string; config: object; paths: string[]; left: string; why: RegExp }[] = [
  { name: 'k_proj saved, target_modules ["q_proj", "v_proj"]', config: {}, paths: [llama(0, 'q_proj'), llama(0, 'k_proj')], left: llama(0, 'k_proj'), why: /not targeted by target_modules \["q_proj","v_proj"\]/ },
  // The suffix rule is on whole names: "proj" is not a "."-suffix of "q_proj".
  { name: 'an entry that is only the end of a name', config: { target_modules: ['proj'] }, paths: [llama(0, 'q_proj')], left: llama(0, 'q_proj'), why: /not targeted by target_modules \["proj"\]/ },
  {
    // A regex must match the whole name (re.fullmatch): the encoder's q is not the decoder's.
    name: 'T5 regex, an encoder module saved', config: { target_modules: '.*decoder.*(SelfAttention|EncDecAttention).*(q|v)$' },
    paths: [t5('decoder', 0, 'SelfAttention', 'q'), t5('encoder', 0, 'SelfAttention', 'q')], left: t5('encoder', 0, 'SelfAttention', 'q'), why: /not targeted by target_modules ".*decoder/,
  },
  { name: 'a regex a part of the name matches', config: { target_modules: 'self_attn\\.q_proj' }, paths: [llama(0, 'q_proj')], left: llama(0, 'q_proj'), why: /not targeted by target_modules "self_attn/ },
  { name: 'exclude_modules as a list', config: { exclude_modules: ['v_proj'] }, paths: [llama(0, 'q_proj'), llama(0, 'v_proj')], left: llama(0, 'v_proj'), why: /is excluded by exclude_modules \["v_proj"\]/ },
  { name: 'exclude_modules as a regex', config: { exclude_modules: '.*layers\\.1\\..*' }, paths: [llama(0, 'q_proj'), llama(1, 'q_proj')], left: llama(1, 'q_proj'), why: /is excluded by exclude_modules ".*layers/ },
  { name: 'layers_to_transform [1] with layers_pattern "layers"', config: { layers_to_transform: [1], layers_pattern: 'layers' }, paths: [llama(1, 'q_proj'), llama(0, 'q_proj')], left: llama(0, 'q_proj'), why: /is outside layers_to_transform \[1\] \(layer 0\)/ },
  { name: 'layers_to_transform 1 without layers_pattern', config: { layers_to_transform: 1 }, paths: [llama(1, 'v_proj'), llama(2, 'v_proj')], left: llama(2, 'v_proj'), why: /is outside layers_to_transform 1 \(layer 2\)/ },
  { name: 'a module under modules_to_save', config: { modules_to_save: ['self_attn'] }, paths: [llama(0, 'q_proj')], left: llama(0, 'q_proj'), why: /is in modules_to_save \["self_attn"\]/ },
];

describe('PEFT target_modules: refused where PEFT leaves a saved module out', () => {
  it.each(untargeted)('$name (CLI: one line, nothing written)', async ({ config, paths, left, why }) => {
    const layers = paths.map(layer);
    const escaped = left.replaceAll('.', '\\.');
    const line = new RegExp(`^error: .*adapter_config\\.json: module "${escaped}" is in .*adapter_model\\.safetensors but ${why.source}.*; PEFT would leave its tensors unused`);
    await expectPeftCliRefusal(baseOf(layers), loraConfig(config), factorsOf(layers), line);
  });

  it('refuses the same for other PEFT methods (LoHa outside layers_to_transform)', async () => {
    const w = vals(d * d, 'F32');
    const loha = (i: number) => ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'].map((n) => t(`base_model.model.${llama(i, 'q_proj')}.${n}`, 'F32', n.endsWith('_a') ? [d, r] : [r, d], vals(d * r, 'F32')));
    await expectPeftCliRefusal([t(`${llama(0, 'q_proj')}.weight`, 'F32', [d, d], w), t(`${llama(3, 'q_proj')}.weight`, 'F32', [d, d], w)],
      { peft_type: 'LOHA', r, alpha, target_modules: ['q_proj'], layers_to_transform: [0], layers_pattern: 'layers', rank_dropout: 0, module_dropout: 0 },
      [...loha(0), ...loha(3)], /module "model\.layers\.3\.self_attn\.q_proj" is in .* but is outside layers_to_transform \[0\] \(layer 3\)/);
  });
});

describe('PEFT target fields of the wrong type', () => {
  const layers = [layer(llama(0, 'q_proj'))];
  it.each([
    ['target_modules', 5, /"target_modules" must be a list of module names or a pattern string, got 5/],
    ['target_modules', ['q_proj', 3], /"target_modules" must be a list of module names or a pattern string/],
    ['exclude_modules', { v_proj: true }, /"exclude_modules" must be a list of module names or a pattern string/],
    ['layers_to_transform', '0', /"layers_to_transform" must be a layer index or a list of layer indexes, got "0"/],
    ['layers_to_transform', [0.5], /"layers_to_transform" must be a layer index or a list of layer indexes/],
    ['layers_pattern', 7, /"layers_pattern" must be a list of module names or a pattern string, got 7/],
  ])('%s = %j is refused', async (field, value, message) => {
    await expect(preparePeftFolder(baseOf(layers), loraConfig({ [field]: value }), factorsOf(layers))).rejects.toThrow(message);
  });

  it('LoRA refuses layers_to_transform with a string target_modules, as LoraConfig does', async () => {
    await expect(preparePeftFolder(baseOf(layers), loraConfig({ target_modules: '.*q_proj', layers_to_transform: [0] }), factorsOf(layers)))
      .rejects.toThrow(/"layers_to_transform" is set while target_modules is a string, which PEFT refuses/);
  });
});
