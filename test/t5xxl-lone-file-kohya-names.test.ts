/**
 * ComfyUI's T5-XXL text encoder saved alone (comfyanonymous/flux_text_encoders'
 * `t5xxl_fp16.safetensors`: transformers' keys `encoder.block.N.layer.0.SelfAttention.q.weight`,
 * `shared.weight` [32128, 4096], no config.json) with a LoRA whose T5 modules carry kohya's or
 * diffusers' text encoder names. Loaded alone (CLIPLoader: its sd3, ltxv, pixart, chroma, mochi and
 * hidream types all build a model of one `t5xxl`, comfy/sd.py), ComfyUI's model_lora_keys_clip
 * (comfy/lora.py) numbers the T5 after the CLIPs beside it: with none, `lora_te1_<path>` is its one
 * kohya name (`lora_te2_`/`lora_te3_` are it only beside CLIP-L, as FLUX.1's DualCLIPLoader loads it,
 * `lora_te3_` beside CLIP-L and CLIP-G, as SD3's; `lora_te_` is a CLIP's only), and no diffusers
 * name (`text_encoder.`, `text_encoder_2.`, `text_encoder_3.`) reaches a T5 at all; diffusers' SD3
 * and FLUX.1 pipelines load text encoder LoRAs into their CLIPs alone. All of them merged; now
 * `lora_te1_` and `text_encoders.t5xxl.` merge (float64 truth) and the others are left out with a
 * warning naming them and why. On a byT5 glyph encoder file (ComfyUI's `byt5_small`), which no kohya
 * or diffusers name reaches, `lora_te_`, `lora_te1_` and `text_encoder.` merged too; now left out.
 * ComfyUI's T5 identity is read once per base, not once per module.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaSpec, loraTensors, peftSpec, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { headerOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted as comfy } from './helpers/pipeline-merge.js';

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

/**
 * Merges one LoRA of `specs` at `weight` into the file `base` after checking its plan has no
 * problems; checks the written file against W + ΔW in float64 for the modules that land (a `lands`
 * key), and that the plan updates those alone; returns the warnings.
 */
async function mergeChecked(base: Uint8Array, file: string, specs: LoraSpec[], weight: number) {
  const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
  const prepared = await prepareMerge(memoryInputFileSet({ [file]: base }, file), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight }]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: cpu, slabBytes: 1 << 20 });
    const written = output.files().filter((f) => f.path.endsWith('.safetensors'));
    expect(written.length).toBe(1);
    const terms = truthTerms(decodeSafetensors(lora).tensors, specs.filter((s) => s.lands[0].key !== ''), weight);
    expectMergedFile(decodeSafetensors(base).tensors, decodeSafetensors(new Uint8Array(await written[0].blob.arrayBuffer())).tensors, terms);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...new Set(terms.map((t) => t.baseKey))].sort());
    return prepared.plan.warnings;
  } finally {
    await prepared.close();
  }
}

const left = (what: string, modules: string[]) => `lora.safetensors: ${modules.length} module${modules.length === 1 ? '' : 's'} left out, not merged: ${modules.length === 1 ? 'it names' : 'they name'} ${what} (${modules.join(', ')})`;
const ALONE = 'the base is a T5-XXL encoder given alone, which ComfyUI loads as its t5xxl with no CLIP beside it';
const KOHYA_ALONE = (prefix: string, beside: string) => `${ALONE}, where kohya's T5 names reach it as lora_te1_ only (ComfyUI numbers its T5 after the CLIPs loaded with it: ${prefix} reaches it beside ${beside}); to keep it, merge into a checkpoint that holds the T5 with those CLIPs`;
const DIFFUSERS_ALONE = (prefix: string) => `${ALONE}, and it maps no diffusers text encoder name (${prefix}) to a T5 (diffusers' own pipelines load text encoder LoRAs into their CLIPs only)`;

describe('t5xxl_fp16.safetensors given alone', () => {
  it('kohya\'s lora_te1_ and ComfyUI\'s text_encoders.t5xxl. merge; lora_te_, lora_te2_, lora_te3_ and diffusers\' text_encoder., text_encoder_2., text_encoder_3. are left out, each saying why', async () => {
    const file = 't5xxl_fp16.safetensors';
    const specs = [
      kohyaSpec(kohyaQ('lora_te1_'), 4, 64, 4096, [{ key: `${Q}.weight` }], 2),
      comfy(`text_encoders.t5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`),
      kohyaSpec(kohyaQ('lora_te_'), 4, 64, 4096, [{ key: '' }], 4),
      kohyaSpec(kohyaQ('lora_te2_'), 4, 64, 4096, [{ key: '' }], 4),
      kohyaSpec('lora_te3_encoder_block_1_layer_1_DenseReluDense_wo', 4, 4096, 16, [{ key: '' }], 4),
      kohyaSpec(kohyaQ('lora_te3_'), 4, 64, 4096, [{ key: '' }], 4),
      peftSpec(`text_encoder.${Q}`, 4, 64, 4096, [{ key: '' }], 1),
      peftSpec(`text_encoder_2.${Q}`, 4, 64, 4096, [{ key: '' }], 1),
      peftSpec(`text_encoder_3.${Q}`, 4, 64, 4096, [{ key: '' }], 1),
    ];
    expect(await mergeChecked(loneT5(4096, 64), file, specs, 0.8)).toEqual([
      left(`the text encoder, but ${ALONE}, and it maps lora_te_ to a CLIP only`, [kohyaQ('lora_te_')]),
      left(`text encoder 2 (T5), but ${KOHYA_ALONE('lora_te2_', 'CLIP-L alone (FLUX.1) or CLIP-G alone')}`, [kohyaQ('lora_te2_')]),
      left(`text encoder 3 (T5), but ${KOHYA_ALONE('lora_te3_', 'CLIP-L alone (FLUX.1) or CLIP-L and CLIP-G (SD3)')}`, ['lora_te3_encoder_block_1_layer_1_DenseReluDense_wo', kohyaQ('lora_te3_')]),
      left(`diffusers' first text encoder (text_encoder.), but ${DIFFUSERS_ALONE('text_encoder.')}`, [`text_encoder.${Q}`]),
      left(`text encoder 2 (T5), but ${DIFFUSERS_ALONE('text_encoder_2.')}`, [`text_encoder_2.${Q}`]),
      left(`text encoder 3 (T5), but ${DIFFUSERS_ALONE('text_encoder_3.')}`, [`text_encoder_3.${Q}`]),
    ]);
  });

  it('a LoRA of lora_te3_ T5 modules alone (SD3\'s, or kohya\'s FLUX.1 T5) is refused whole: none lands', async () => {
    const lora = buildSafetensors(loraTensors(rand, [kohyaSpec(kohyaQ('lora_te3_'), 4, 64, 4096, [{ key: '' }], 4)], 'BF16'));
    const file = 't5xxl_fp16.safetensors';
    const prepared = await prepareMerge(memoryInputFileSet({ [file]: loneT5(4096, 64) }, file), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
    try {
      expect(prepared.plan.updates).toEqual([]);
      expect(prepared.plan.problems.map((p) => p.message).join('\n')).toContain(`none of its 1 modules lands in this base (they name text encoder 3 (T5), but ${KOHYA_ALONE('lora_te3_', 'CLIP-L alone (FLUX.1) or CLIP-L and CLIP-G (SD3)')})`);
    } finally {
      await prepared.close();
    }
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
      left(`text encoder 1 (CLIP-L), but ${byt5}, ${reach('kohya')}`, [kohyaQ('lora_te1_')]),
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
  it('a lora_te1_ module is planned onto block 23\'s q; the same path as lora_te3_ is left out', async () => {
    const file = 't5xxl_fp16.safetensors';
    const q23 = 'encoder_block_23_layer_0_SelfAttention_q';
    const specs = [kohyaSpec(`lora_te1_${q23}`, 1, 4096, 4096, [{ key: '' }], 1), kohyaSpec(`lora_te3_${q23}`, 1, 4096, 4096, [{ key: '' }], 1)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const prepared = await prepareMerge(headerOnly(file, { [file]: realT5xxl }), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['encoder.block.23.layer.0.SelfAttention.q.weight']);
      expect(prepared.plan.warnings).toEqual([left(`text encoder 3 (T5), but ${KOHYA_ALONE('lora_te3_', 'CLIP-L alone (FLUX.1) or CLIP-L and CLIP-G (SD3)')}`, [`lora_te3_${q23}`])]);
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
    expect(te3.filter((l) => l.found)).toEqual([]);
    expect(te1.filter((l) => !l.found)).toEqual([]);
    expect(reads).toBe(1);
  });
});
