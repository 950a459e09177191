/**
 * ComfyUI's T5-XXL text encoder saved alone (comfyanonymous/flux_text_encoders'
 * `t5xxl_fp16.safetensors`: transformers' keys `encoder.block.N.layer.0.SelfAttention.q.weight`,
 * `shared.weight` [32128, 4096], no config.json) with a LoRA whose T5 modules carry kohya's or
 * diffusers' text encoder names. The same file is loaded alone (CLIPLoader), beside CLIP-L
 * (FLUX.1's DualCLIPLoader) or beside CLIP-L and CLIP-G (SD3's TripleCLIPLoader), and ComfyUI's
 * model_lora_keys_clip (comfy/lora.py) numbers the T5 after the CLIPs beside it (`lora_te1_`
 * alone, `lora_te2_`/`lora_te3_` beside CLIP-L, `lora_te3_` beside both); the training tools write
 * the other names and apply them to this T5 (sd-scripts' `lora_te3_`, OneTrainer's `lora_te2_`,
 * `text_encoder_2.`, `text_encoder_3.` and PixArt's `lora_te_`, diffusers' Chroma `text_encoder.`).
 * So every one of them merges there (float64 truth). On a byT5 glyph encoder file (ComfyUI's
 * `byt5_small`), which no kohya or diffusers name reaches, they are left out with a warning.
 * ComfyUI's T5 identity is read once per base, not once per module.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { headerOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { comfyExtracted as comfy, mergeLoneFileChecked } from './helpers/pipeline-merge.js';

const rand = seededRandom(32128);
const Q = 'encoder.block.0.layer.0.SelfAttention.q';
const WO = 'encoder.block.1.layer.1.DenseReluDense.wo';
const kohyaQ = (prefix: string) => `${prefix}encoder_block_0_layer_0_SelfAttention_q`;

/**
 * A T5 encoder file in transformers' names at its real d_model (`dModel`: T5-XXL's 4096, byT5's
 * 1472), the other sizes cut (q to `inner` rows, d_ff to 16, the vocabulary to 24), two blocks, the
 * relative attention bias ([32 buckets, heads]) in block 0 only, F16 as ComfyUI saves it.
 */
const loneT5 = (dModel: number, inner: number) => buildSafetensors([
  tensor(rand, 'shared.weight', [24, dModel], 'F16'),
  tensor(rand, 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', [32, 6], 'F16'),
  tensor(rand, `${Q}.weight`, [inner, dModel], 'F16'),
  tensor(rand, 'encoder.block.1.layer.0.SelfAttention.q.weight', [inner, dModel], 'F16'),
  tensor(rand, `${WO}.weight`, [dModel, 16], 'F16'),
  tensor(rand, 'encoder.final_layer_norm.weight', [dModel], 'F16'),
]);

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());

const mergeChecked = (base: Uint8Array, file: string, specs: LoraSpec[], weight: number) => mergeLoneFileChecked(cpu, rand, base, file, specs, weight);

const left = (what: string, modules: string[]) => `lora.safetensors: ${modules.length} module${modules.length === 1 ? '' : 's'} left out, not merged: ${modules.length === 1 ? 'it names' : 'they name'} ${what} (${modules.join(', ')})`;

describe('t5xxl_fp16.safetensors given alone', () => {
  it('every kohya and diffusers T5 name merges (lora_te_, lora_te1_, lora_te2_, lora_te3_, text_encoder., text_encoder_2., text_encoder_3.), as does ComfyUI\'s text_encoders.t5xxl.', async () => {
    const file = 't5xxl_fp16.safetensors';
    const base = loneT5(4096, 64);
    const K = 'encoder.block.1.layer.0.SelfAttention.q';
    const kohyaK = (prefix: string) => `${prefix}encoder_block_1_layer_0_SelfAttention_q`;
    const kohyaWO = (prefix: string) => `${prefix}encoder_block_1_layer_1_DenseReluDense_wo`;
    // Each name on its own weight: two names of one adapter on one weight are refused as a double target.
    expect(await mergeChecked(base, file, [
      kohyaSpec(kohyaQ('lora_te_'), 3, 64, 4096, [{ key: `${Q}.weight` }], 4),
      kohyaSpec(kohyaK('lora_te1_'), 2, 64, 4096, [{ key: `${K}.weight` }], 2),
      kohyaSpec(kohyaWO('lora_te2_'), 1, 4096, 16, [{ key: `${WO}.weight` }], 2),
    ], 0.8)).toEqual([]);
    expect(await mergeChecked(base, file, [
      kohyaSpec(kohyaQ('lora_te3_'), 4, 64, 4096, [{ key: `${Q}.weight` }], 8),
      peftSpec(`text_encoder.${K}`, 2, 64, 4096, [{ key: `${K}.weight` }], 1),
      peftSpec(`text_encoder_2.${WO}`, 1, 4096, 16, [{ key: `${WO}.weight` }], 1),
    ], -0.6)).toEqual([]);
    expect(await mergeChecked(base, file, [
      peftSpec(`text_encoder_3.${Q}`, 2, 64, 4096, [{ key: `${Q}.weight` }], 1),
      comfy(`text_encoders.t5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`),
    ], 1)).toEqual([]);
  });

  it('a LoRA of lora_te3_ T5 modules alone (sd-scripts\' FLUX.1 or SD3 T5) merges', async () => {
    const file = 't5xxl_fp16.safetensors';
    expect(await mergeChecked(loneT5(4096, 64), file, [kohyaSpec(kohyaQ('lora_te3_'), 4, 64, 4096, [{ key: `${Q}.weight` }], 4)], 1)).toEqual([]);
  });
});

describe('a byT5 glyph encoder file given alone (ComfyUI\'s byt5_small)', () => {
  it('kohya\'s lora_te_/lora_te1_ and diffusers\' text_encoder. T5 modules are left out (they merged); byt5_small\'s merges', async () => {
    const file = 'byt5_small_glyphxl_fp16.safetensors';
    const specs = [
      comfy(`text_encoders.byt5_small.transformer.${WO}`, 1472, 16, `${WO}.weight`),
      kohyaSpec(kohyaQ('lora_te1_'), 4, 384, 1472, [{ key: '' }], 4),
      kohyaSpec(kohyaQ('lora_te_'), 4, 384, 1472, [{ key: '' }], 4),
      peftSpec(`text_encoder.${Q}`, 4, 384, 1472, [{ key: '' }], 1),
    ];
    const byt5 = 'the base is a byT5 encoder, not T5-XXL: its d_model, the length of encoder.final_layer_norm.weight, is 1472, byT5\'s (T5-XXL\'s is 4096); ComfyUI loads such a file as its byt5_small';
    const reach = (who: string) => `which no ${who} text encoder name reaches (ComfyUI maps kohya's T5 names to its t5xxl alone, and diffusers' to no T5)`;
    expect(await mergeChecked(loneT5(1472, 384), file, specs, -0.7)).toEqual([
      left(`text encoder 1 (T5), but ${byt5}, ${reach('kohya')}`, [kohyaQ('lora_te1_')]),
      left(`the text encoder, but ${byt5}, ${reach('kohya')}`, [kohyaQ('lora_te_')]),
      left(`diffusers' first text encoder (text_encoder.), but ${byt5}, ${reach('diffusers')}`, [`text_encoder.${Q}`]),
    ]);
  });
});

/**
 * T5-XXL at its real shapes (24 blocks, d_model 4096, 64 heads, d_ff 10240, 32128 tokens), F16 as
 * `t5xxl_fp16.safetensors` stores it.
 */
const realT5xxl: Declared[] = [
  { name: 'shared.weight', dtype: 'F16', shape: [32128, 4096] },
  { name: 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', dtype: 'F16', shape: [32, 64] },
  ...Array.from({ length: 24 }, (_, i): Declared[] => [
    ...['q', 'k', 'v', 'o'].map((p): Declared => ({ name: `encoder.block.${i}.layer.0.SelfAttention.${p}.weight`, dtype: 'F16', shape: [4096, 4096] })),
    { name: `encoder.block.${i}.layer.0.layer_norm.weight`, dtype: 'F16', shape: [4096] },
    { name: `encoder.block.${i}.layer.1.DenseReluDense.wi_0.weight`, dtype: 'F16', shape: [10240, 4096] },
    { name: `encoder.block.${i}.layer.1.DenseReluDense.wi_1.weight`, dtype: 'F16', shape: [10240, 4096] },
    { name: `encoder.block.${i}.layer.1.DenseReluDense.wo.weight`, dtype: 'F16', shape: [4096, 10240] },
    { name: `encoder.block.${i}.layer.1.layer_norm.weight`, dtype: 'F16', shape: [4096] },
  ]).flat(),
  { name: 'encoder.final_layer_norm.weight', dtype: 'F16', shape: [4096] },
];

describe('at its real shapes', () => {
  it('lora_te1_ and lora_te3_ modules are planned onto their blocks\' q', async () => {
    const file = 't5xxl_fp16.safetensors';
    const q = (i: number) => `encoder_block_${i}_layer_0_SelfAttention_q`;
    const specs = [kohyaSpec(`lora_te1_${q(23)}`, 1, 4096, 4096, [{ key: '' }], 1), kohyaSpec(`lora_te3_${q(22)}`, 1, 4096, 4096, [{ key: '' }], 1)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const prepared = await prepareMerge(headerOnly(file, { [file]: realT5xxl }), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(['encoder.block.22.layer.0.SelfAttention.q.weight', 'encoder.block.23.layer.0.SelfAttention.q.weight']);
      expect(prepared.plan.warnings).toEqual([]);
    } finally {
      await prepared.close();
    }
  });

  it('which T5 the file is, is read from its shapes once for a LoRA of 168 T5 modules, not once per module', () => {
    const NORM = 'encoder.final_layer_norm.weight';
    let reads = 0;
    const tensors = new Map(realT5xxl.map((t) => [t.name, { shape: t.shape }]));
    const counting = new Proxy(tensors, {
      get(target, prop) {
        if (prop === 'get') return (key: string) => { if (key === NORM) reads++; return target.get(key); };
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const locator = new ModuleLocator({ tensors: counting });
    const paths = Array.from({ length: 24 }, (_, i) => [
      ...['q', 'k', 'v', 'o'].map((p) => `encoder_block_${i}_layer_0_SelfAttention_${p}`),
      ...['wi_0', 'wi_1', 'wo'].map((p) => `encoder_block_${i}_layer_1_DenseReluDense_${p}`),
    ]).flat();
    expect(paths.length).toBe(168);
    const te3 = paths.map((p) => locator.locate(moduleAddress(`lora_te3_${p}`)));
    const te1 = paths.map((p) => locator.locate(moduleAddress(`lora_te1_${p}`)));
    expect(te3.filter((l) => !l.found)).toEqual([]);
    expect(te1.filter((l) => !l.found)).toEqual([]);
    expect(reads).toBe(1);
  });
});
