/** Opening adapters: format detection, PEFT configs and keys, kohya/LyCORIS files, and bad input. */
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  buildSafetensors, randomValues, removeTempDir, seededRandom, writeTempDir, type FixtureDType, type FixtureTensor,
} from './helpers/fixtures.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { isMergeError, type MergeErrorCode } from '../src/errors.js';

const rand = seededRandom(42);
const t = (name: string, shape: number[], dtype: FixtureDType = 'F32'): FixtureTensor =>
  ({ name, dtype, shape, data: randomValues(shape.reduce((a, b) => a * b, 1), rand) });
const pair = (module: string, r: number, out: number, inF: number, tag = ''): FixtureTensor[] => [
  t(`base_model.model.${module}.lora_A${tag}.weight`, [r, inF]),
  t(`base_model.model.${module}.lora_B${tag}.weight`, [out, r]),
];

function peftFiles(config: object | string, tensors: FixtureTensor[], extra: Record<string, Uint8Array | string> = {}) {
  return {
    'adapter_config.json': typeof config === 'string' ? config : JSON.stringify({ peft_type: 'LORA', ...config }),
    'adapter_model.safetensors': buildSafetensors(tensors),
    ...extra,
  };
}

async function open(files: Record<string, Uint8Array | string>, name = 'my-adapter'): Promise<ParsedAdapter> {
  return openAdapter(memoryInputFileSet(files, name));
}

/** Opening must fail with `code`, and the message must name each of `mentions`. */
async function expectFailure(files: Record<string, Uint8Array | string>, code: MergeErrorCode, mentions: (string | RegExp)[]): Promise<string> {
  try {
    await open(files);
  } catch (e) {
    if (!isMergeError(e)) throw e;
    expect(e.code, e.message).toBe(code);
    for (const m of mentions) expect(e.message).toMatch(m);
    return e.message;
  }
  return expect.fail('opening should have failed');
}

describe('PEFT adapters', () => {
  const temp: string[] = [];
  afterAll(() => temp.forEach(removeTempDir));

  it('reads modules, ranks, scales and options from a folder on disk', async () => {
    const dir = writeTempDir(peftFiles({ r: 4, lora_alpha: 16, use_rslora: true, fan_in_fan_out: true, rank_pattern: { 'c_proj': 2 } }, [
      ...pair('transformer.h.0.attn.c_attn', 4, 9, 3),
      ...pair('transformer.h.0.attn.c_proj', 2, 3, 3),
    ]), 'adapter-');
    temp.push(dir);
    const files = await openNodeInputFileSet(dir);
    const adapter = await openAdapter(files);
    try {
      expect(adapter.format).toBe('peft');
      expect(adapter.config.lora_alpha).toBe(16);
      expect(adapter.modules.map((m) => [m.address, m.kind, m.rank, m.alpha, m.scale, m.fanInFanOut])).toEqual([
        [{ path: 'transformer.h.0.attn.c_attn', flat: false }, 'linear', 4, 16, 8, true],
        [{ path: 'transformer.h.0.attn.c_proj', flat: false }, 'linear', 2, 16, 16 / Math.SQRT2, true],
      ]);
      expect(adapter.warnings).toEqual([]);
    } finally {
      await adapter.file.source.close();
    }
  });

  it('understands adapter-name keys, embeddings, convs, DoRA, lora_bias and modules_to_save', async () => {
    // lora_bias is read in its own adapter: PEFT refuses it with use_dora.
    const biased = await open(peftFiles({ r: 2, lora_bias: true }, [...pair('fc', 2, 4, 3), t('base_model.model.fc.lora_B.bias', [4])]));
    expect(biased.modules.map((m) => [m.key, m.dora, m.biasB?.name])).toEqual([['base_model.model.fc', undefined, 'base_model.model.fc.lora_B.bias']]);
    await biased.file.source.close();
    const adapter = await open(peftFiles({ r: 2, use_dora: true, modules_to_save: ['classifier'] }, [
      t('base_model.model.embed.lora_embedding_A.default', [2, 11]),
      t('base_model.model.embed.lora_embedding_B.default', [5, 2]),
      t('base_model.model.embed.lora_magnitude_vector.default.weight', [5]),
      ...pair('conv', 2, 4, 3, '.default').map((x, i) => ({ ...x, shape: i === 0 ? [2, 3, 3, 3] : [4, 2, 1, 1], data: randomValues(i === 0 ? 54 : 8, rand) })),
      t('base_model.model.conv.lora_magnitude_vector.default.weight', [1, 4, 1, 1]),
      ...pair('fc', 2, 4, 3),
      t('base_model.model.fc.lora_magnitude_vector', [4]),
      t('base_model.model.classifier.weight', [2, 4]),
      t('base_model.model.score.modules_to_save.default.weight', [2, 4]),
    ]));
    expect(adapter.modules.map((m) => [m.key, m.kind, m.dora?.axis, m.dora?.epsilon, m.biasB?.name])).toEqual([
      ['base_model.model.embed', 'embedding', 'out', 0, undefined],
      ['base_model.model.conv', 'conv', 'out', 0, undefined],
      ['base_model.model.fc', 'linear', 'out', 0, undefined],
    ]);
    expect(adapter.modules.every((m) => m.scale === 4)).toBe(true); // lora_alpha defaults to 8
    expect(adapter.warnings.join('\n')).toMatch(/lora_alpha missing.*default 8/);
    expect(adapter.replacements.map((r) => r.path)).toEqual(['classifier.weight', 'score.weight']);
  });

  it('warns about initialisations that modify the base (PiSSA, OLoRA, CorDA, LoRA-GA, LoftQ)', async () => {
    for (const init of ['pissa', 'pissa_niter_4', 'olora', 'corda', 'lora_ga', 'loftq']) {
      const adapter = await open(peftFiles({ r: 1, lora_alpha: 1, init_lora_weights: init }, pair('q', 1, 2, 2)));
      expect(adapter.warnings.join('\n')).toContain(`"${init}"`);
      expect(adapter.warnings.join('\n')).toContain('modified base');
    }
    const plain = await open(peftFiles({ r: 1, lora_alpha: 1, init_lora_weights: 'gaussian' }, pair('q', 1, 2, 2)));
    expect(plain.warnings).toEqual([]);
  });

  it('refuses broken configs with the file named', async () => {
    const tensors = pair('q', 2, 2, 2);
    await expectFailure(peftFiles('{"r": 2, "lora_alpha":', tensors), 'BAD_CONFIG', ['my-adapter/adapter_config.json', /JSON/]);
    await expectFailure(peftFiles('[1, 2]', tensors), 'BAD_CONFIG', ['adapter_config.json']);
    await expectFailure(peftFiles({ r: 0 }, tensors), 'BAD_CONFIG', ['adapter_config.json', '"r"']);
    await expectFailure(peftFiles({ r: 2, lora_alpha: 'x' }, tensors), 'BAD_CONFIG', ['lora_alpha']);
    await expectFailure(peftFiles({ r: 2, rank_pattern: { 'q(': 2 } }, tensors), 'BAD_CONFIG', ['rank_pattern', 'q(']);
    for (const type of ['POLY', 'LILY']) {
      await expectFailure(peftFiles({ peft_type: type }, tensors), 'UNSUPPORTED_FORMAT', [type, 'not supported']);
    }
    // AdaLoRA is read (peft-adalora.test.ts): LoRA factors without lora_E are refused, naming it.
    await expectFailure(peftFiles({ peft_type: 'ADALORA' }, tensors), 'UNSUPPORTED_FORMAT', ['without the lora_E tensor ADALORA needs']);
    // LoHa, LoKr, VeRA, OFT, BOFT and IA3 are read (peft-methods.test.ts), FourierFT too (peft-fourierft.test.ts); LoRA tensors in them are named.
    for (const type of ['LOHA', 'LOKR', 'OFT', 'BOFT', 'IA3', 'VERA', 'FOURIERFT']) {
      await expectFailure(peftFiles({ peft_type: type }, tensors), 'UNSUPPORTED_FORMAT', [`is neither a ${type} tensor`, 'q.lora_A', 'modules_to_save']);
    }
    await expectFailure(peftFiles({ peft_type: 'SOMETHING' }, tensors), 'UNSUPPORTED_FORMAT', ['unknown peft_type "SOMETHING"']);
  });

  it('refuses LoRA variants that are not W + s·B·A on the base, and reads their unset defaults as plain LoRA', async () => {
    const tensors = pair('q', 2, 2, 2);
    const variants: [string, unknown, string][] = [
      ['layer_replication', [[0, 4], [2, 5]], 'deeper model'],
      ['alora_invocation_tokens', [32, 1001], 'Activated LoRA'],
      ['use_qalora', true, 'QALoRA'],
      ['arrow_config', { top_k: 3, router_temperature: 1 }, 'Arrow'],
      ['kasa_config', { beta: 1e-4, gamma: 1e-3 }, 'KaSA'],
    ];
    for (const [key, value, why] of variants) {
      await expectFailure(peftFiles({ r: 2, [key]: value }, tensors), 'UNSUPPORTED_FORMAT', ['adapter_config.json', `"${key}" is set`, why]);
    }
    // BD-LoRA, MonteCLoRA and VeLoRA are read (peft-lora-variants.test.ts).
    // PEFT writes every field; unset variants are null, false or an empty list.
    const unset = await open(peftFiles({
      r: 2, lora_alpha: 2, layer_replication: null, alora_invocation_tokens: null, use_qalora: false, arrow_config: null,
      kasa_config: null, use_bdlora: null, monteclora_config: null,
    }, tensors));
    expect(unset.modules).toHaveLength(1);
    expect(unset.warnings).toEqual([]);
  });

  it('an Activated LoRA (alora_invocation_tokens), in one line saying why no merge reproduces it: its change applies only from the invocation tokens on, and PEFT cannot merge it', async () => {
    // PEFT's ALoraLinearVariant (tuners/lora/variants.py): forward adds B·A·x·s on the masked positions only; merge raises.
    const message = await expectFailure(peftFiles({ r: 2, lora_alpha: 4, target_modules: ['q'], alora_invocation_tokens: [32, 1001] }, pair('q', 2, 2, 2)), 'UNSUPPORTED_FORMAT', []);
    expect(message).toBe('my-adapter/adapter_config.json: "alora_invocation_tokens" is set: Activated LoRA applies only from its invocation tokens on (PEFT adds its change to those positions alone and leaves every token before them to the base weights), so no merged weight reproduces it, and PEFT cannot merge it either ("aLoRA does not support merging"): load it at run time with PEFT instead; such adapters are not supported');
  });

  it('names the module when ranks disagree or a factor is missing, all at once', async () => {
    await expectFailure(peftFiles({ r: 8, lora_alpha: 8 }, pair('model.layers.0.q_proj', 4, 6, 6)), 'BAD_CONFIG',
      ['module "model.layers.0.q_proj"', 'rank 4', 'says 8']);
    await expectFailure(peftFiles({ r: 4, rank_pattern: { q_proj: 2 } }, pair('model.layers.0.q_proj', 4, 6, 6)), 'BAD_CONFIG',
      ['rank_pattern', 'says 2']);
    await expectFailure(peftFiles({ r: 2 }, [...pair('a.q', 2, 3, 3).slice(0, 1), ...pair('a.k', 2, 3, 3).slice(1), ...pair('a.v', 2, 3, 3)]),
      'UNSUPPORTED_FORMAT', [/2 problems/, 'module "a.q" has no lora_B', 'module "a.k" has no lora_A']);
    await expectFailure(peftFiles({ r: 2 }, [t('base_model.model.a.q.lora_A.weight', [2, 3]), t('base_model.model.a.q.lora_B.weight', [3, 3])]),
      'SHAPE_MISMATCH', ['module "a.q"', 'lora_B (3, 3)']);
    await expectFailure(peftFiles({ r: 2 }, [...pair('a.q', 2, 3, 3), t('base_model.model.a.q.hada_w1_a', [2, 3])]),
      'UNSUPPORTED_FORMAT', ['hada_w1_a']);
    // PEFT saves model tensors (embedding layers, biases) under base_model.model.; anything else is unknown.
    await expectFailure(peftFiles({ r: 2 }, [...pair('a.q', 2, 3, 3), t('lm_head.weight', [3, 3])]),
      'UNSUPPORTED_FORMAT', ['lm_head.weight', 'modules_to_save']);
    await expectFailure(peftFiles({ r: 2 }, [...pair('a.q', 2, 3, 3, '.one'), ...pair('a.k', 2, 3, 3, '.two')]),
      'UNSUPPORTED_FORMAT', ['several adapters']);
    await expectFailure(peftFiles({ r: 2, use_dora: true }, pair('a.q', 2, 3, 3)), 'BAD_CONFIG', ['use_dora', 'lora_magnitude_vector']);
    await expectFailure(peftFiles({ r: 2, use_dora: true, lora_bias: true }, [...pair('a.q', 2, 3, 3), t('base_model.model.a.q.lora_magnitude_vector', [3])]),
      'BAD_CONFIG', ['adapter_config.json', 'use_dora and lora_bias are both true', 'PEFT refuses']);
    await expectFailure(peftFiles({ r: 2, use_dora: true }, [...pair('a.q', 2, 3, 3), t('base_model.model.a.q.lora_magnitude_vector', [3]), ...pair('a.k', 2, 3, 3)]),
      'BAD_CONFIG', ['adapter_config.json: use_dora is true', '1 of its LoRA modules has no lora_magnitude_vector (first "a.k")', 'PEFT would start those magnitudes from the base weights']);
    await expectFailure(peftFiles({ r: 2, use_dora: false }, [...pair('a.q', 2, 3, 3), t('base_model.model.a.q.lora_magnitude_vector', [3])]),
      'BAD_CONFIG', ['adapter_config.json: use_dora is false', '1 lora_magnitude_vector tensor (first "base_model.model.a.q.lora_magnitude_vector")', 'PEFT would load it without DoRA and leave them unused']);
    await expectFailure(peftFiles({ r: 2 }, [...pair('a.q', 2, 3, 3), t('base_model.model.a.q.lora_B.bias', [3])]),
      'BAD_CONFIG', ['adapter_config.json: lora_bias is false', '1 lora_B bias (first "base_model.model.a.q.lora_B.bias")', 'PEFT would load it without them']);
  });

  it('refuses pickles without reading them, and explains missing files', async () => {
    const pickle = new Uint8Array([0x80, 0x02, 0x7d, 0x71]);
    await expectFailure({ 'adapter_config.json': '{"r": 2}', 'adapter_model.bin': pickle }, 'PICKLE_REFUSED', ['my-adapter/adapter_model.bin', 'safetensors']);
    await expectFailure({ 'lora.ckpt': pickle }, 'PICKLE_REFUSED', ['lora.ckpt']);
    await expectFailure({ 'adapter_config.json': '{"r": 2}' }, 'NOT_FOUND', ['adapter_model.safetensors']);
    await expectFailure({ 'adapter_model.safetensors': buildSafetensors(pair('q', 1, 2, 2)) }, 'BAD_CONFIG', ['adapter_config.json is missing']);
    await expectFailure({ 'README.md': 'hi' }, 'NOT_FOUND', ['no adapter found']);
    await expectFailure({ 'x.safetensors': buildSafetensors([t('weight', [2, 2])]) }, 'UNSUPPORTED_FORMAT', ['x.safetensors', 'not a LoRA adapter']);
    // A model's weights given as the adapter: asked whether it is the base.
    const model = buildSafetensors([t('model.embed_tokens.weight', [4, 2]), t('model.layers.0.self_attn.q_proj.weight', [2, 2]), t('model.layers.0.self_attn.q_proj.bias', [2])]);
    await expectFailure({ 'model.safetensors': model }, 'UNSUPPORTED_FORMAT',
      ['model.safetensors: not a LoRA adapter', '; it holds a model\'s weights (3 tensors such as model.embed_tokens.weight): is it the base model, given as an adapter?']);
    // Other tensors than weights and biases: no such guess.
    const other = buildSafetensors([t('model.layers.0.q.weight', [2, 2]), t('model.layers.0.q.hypothetical_factor', [2, 2])]);
    expect(await expectFailure({ 'odd.safetensors': other }, 'UNSUPPORTED_FORMAT', ['odd.safetensors: not a LoRA adapter this tool recognises']))
      .toBe('my-adapter/odd.safetensors: not a LoRA adapter this tool recognises (no lora_up/lora_down, lora_A/lora_B or LyCORIS tensors)');
  });
});

describe('kohya / LyCORIS files', () => {
  const k = (module: string, r: number, out: number, inF: number, kernel: number[] = []): FixtureTensor[] => [
    t(`${module}.lora_down.weight`, [r, inF, ...kernel], 'F16'),
    t(`${module}.lora_up.weight`, [out, r, ...kernel.map(() => 1)], 'F16'),
  ];

  it('reads alpha (or defaults it to the rank), parts, LoCon kernels, DoRA axes and metadata', async () => {
    const adapter = await open({
      'style.safetensors': buildSafetensors([
        ...k('lora_unet_down_blocks_0_attentions_0_proj_in', 8, 6, 5),
        { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.alpha', dtype: 'BF16', shape: [], data: [4] },
        ...k('lora_te1_text_model_encoder_layers_0_mlp_fc1', 3, 7, 5),
        ...k('lora_te2_text_model_encoder_layers_0_mlp_fc1', 2, 7, 5),
        { name: 'lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha', dtype: 'F64', shape: [1], data: [0.5] },
        t('lora_te2_text_model_encoder_layers_0_mlp_fc1.dora_scale', [7, 1]),
        ...k('lora_unet_down_blocks_0_resnets_0_conv1', 4, 6, 3, [3, 3]),
        t('lora_unet_down_blocks_0_resnets_0_conv1.dora_scale', [1, 3, 1, 1]),
      ], { ss_network_dim: '8', ss_network_alpha: '4', modelspec_title: 'x' }),
    }, 'style.safetensors');
    expect(adapter.format).toBe('kohya');
    expect(adapter.config).toEqual({ ss_network_dim: '8', ss_network_alpha: '4' });
    expect(adapter.modules.map((m) => [m.address, m.algorithm, m.kind, m.deltaShape, m.rank, m.alpha, m.scale, m.dora?.axis])).toEqual([
      [{ part: 'unet', path: 'down_blocks_0_attentions_0_proj_in', flat: true }, 'lora', 'linear', [6, 5], 8, 4, 0.5, undefined],
      [{ part: 'te1', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true }, 'lora', 'linear', [7, 5], 3, 3, 1, undefined],
      [{ part: 'te2', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true }, 'lora', 'linear', [7, 5], 2, 0.5, 0.25, 'out'],
      [{ part: 'unet', path: 'down_blocks_0_resnets_0_conv1', flat: true }, 'lora', 'conv', [6, 3, 3, 3], 4, 4, 1, 'in'],
    ]);
    expect(adapter.modules[3].dora?.epsilon).toBe(2 ** -23);
  });

  it('names an incomplete LoHa, LoKr and broken modules, all at once', async () => {
    const message = await expectFailure({
      'odd.safetensors': buildSafetensors([
        ...k('lora_unet_ok', 2, 3, 3),
        t('lora_unet_mid_block_attn.hada_w1_a', [3, 2]), t('lora_unet_mid_block_attn.hada_w1_b', [2, 3]),
        t('lora_te_text_model_encoder_layers_1_k_proj.lokr_w1', [2, 2]),
        t('lora_unet_only_down.lora_down.weight', [2, 3]),
        ...k('lora_unet_bad_alpha', 2, 3, 3),
        t('lora_unet_bad_alpha.alpha', [2]),
        t('something_else.weight', [2]),
      ]),
    }, 'UNSUPPORTED_FORMAT', [
      '5 problems', 'module "lora_unet_mid_block_attn" needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b', 'module "lora_te_text_model_encoder_layers_1_k_proj" needs lokr_w1 or lokr_w1_a with lokr_w1_b, and lokr_w2',
      'module "lora_unet_only_down" has lora_unet_only_down.lora_down.weight but no lora_unet_only_down.lora_up.weight',
      'module "lora_unet_bad_alpha" has an alpha that is not one finite number', 'something_else',
    ]);
    expect(message.split('\n')).toHaveLength(6);
  });

  it('checks that lora_up fits lora_down', async () => {
    await expectFailure({
      'x.safetensors': buildSafetensors([t('lora_unet_a.lora_down.weight', [4, 3]), t('lora_unet_a.lora_up.weight', [3, 2])]),
    }, 'SHAPE_MISMATCH', ['module "lora_unet_a"', 'lora_up.weight (3, 2)']);
  });
});
