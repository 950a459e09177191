/**
 * A byT5 text encoder folder told by its own config.json (google/byt5-small's `d_model` 1472 and
 * byte vocabulary of 384, which HunyuanVideo 1.5's glyph encoder extends to 1510), not only by the
 * pipeline's class: its class, T5EncoderModel, is T5-XXL's too. On a pipeline of another class
 * (its warning for kohya's names naming the class), or on a `text_encoder_2/` folder given alone,
 * T5-XXL's modules (kohya's `lora_te3_`, OneTrainer's Flux `lora_te2_`, ComfyUI's
 * `text_encoders.t5xxl.`) are left out with a warning, as ComfyUI maps them only to its t5xxl, and ComfyUI's `byt5_small` lands, against float64 truth. A T5-XXL folder
 * (d_model 4096, vocabulary 32128) still takes T5-XXL's modules, and leaves `byt5_small`'s out with
 * a warning saying its config.json rules byT5 out, as ComfyUI loads it as its t5xxl and leaves them
 * unloaded; a ComfyUI t5xxl LoRA's `shared` module lands on its one shared embedding.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { mergeInMemory } from './helpers/merge-backends.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { errorLines, mergeArgs, runCli } from './helpers/cli.js';
import { comfyExtracted as comfy, mergePipelineAndCheck, pipelinePlan } from './helpers/pipeline-merge.js';

const rand = seededRandom(1510);
const json = (o: object) => JSON.stringify(o, null, 2);

/** hunyuanvideo-community/HunyuanVideo-1.5-Diffusers text_encoder_2/config.json (the Glyph-SDXL-v2 byT5). */
const BYT5_GLYPH = {
  architectures: ['T5EncoderModel'], d_ff: 3584, d_kv: 64, d_model: 1472, feed_forward_proj: 'gated-gelu', model_type: 't5',
  num_heads: 6, num_layers: 12, vocab_size: 1510, torch_dtype: 'float32', transformers_version: '4.57.1',
};
/** google/byt5-small's config.json, as a pipeline saving it unchanged keeps it. */
const BYT5_SMALL = {
  _name_or_path: 'google/byt5-small', architectures: ['T5EncoderModel'], d_ff: 3584, d_kv: 64, d_model: 1472, feed_forward_proj: 'gated-gelu',
  model_type: 't5', num_heads: 6, num_layers: 12, vocab_size: 384, torch_dtype: 'float32', transformers_version: '4.57.1',
};
/** google/t5-v1_1-xxl's encoder (SD3's and FLUX.1's text_encoder_2/3): no byT5. */
const T5_XXL = {
  architectures: ['T5EncoderModel'], d_ff: 10240, d_kv: 64, d_model: 4096, feed_forward_proj: 'gated-gelu', model_type: 't5',
  num_heads: 64, num_layers: 24, vocab_size: 32128, torch_dtype: 'float16', transformers_version: '4.41.2',
};

/** A T5 encoder's weights, as transformers names them (small shapes: the config says the model). */
const t5Weights = () => buildSafetensors([
  tensor(rand, 'encoder.block.0.layer.0.SelfAttention.q.weight', [6, 14], 'F32'), tensor(rand, 'encoder.block.0.layer.1.DenseReluDense.wo.weight', [14, 10], 'F32'),
  tensor(rand, 'shared.weight', [20, 14], 'F32'),
]);

/** A pipeline of a class this tool knows nothing of, whose text_encoder_2/ is a T5EncoderModel of `config`. */
const pipeline = (config: object): Record<string, Uint8Array | string> => ({
  'model_index.json': json({
    _class_name: 'GlyphTextToImagePipeline', _diffusers_version: '0.36.0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
    text_encoder_2: ['transformers', 'T5EncoderModel'], tokenizer_2: ['transformers', 'ByT5Tokenizer'],
    transformer: ['diffusers', 'Transformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
  }),
  'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16')]),
  'text_encoder_2/config.json': json(config),
  'text_encoder_2/model.safetensors': t5Weights(),
  'vae/diffusion_pytorch_model.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 4, 3, 3], 'F32')]),
});

const Q = 'encoder.block.0.layer.0.SelfAttention.q';
const WO = 'encoder.block.0.layer.1.DenseReluDense.wo';
const T5XXL_MODULES = [
  comfy('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 6, 14, ''),
  comfy('lora_te2_encoder_block_0_layer_1_DenseReluDense_wo', 14, 10, ''),
  comfy(`text_encoders.t5xxl.transformer.${Q}`, 6, 14, ''),
];

/** The plan of one LoRA of `specs` on the `text_encoder_2/` folder `folder`, given alone. */
async function folderPlan(folder: Record<string, Uint8Array | string>, specs: LoraSpec[]) {
  const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
  const prepared = await prepareMerge(memoryInputFileSet(folder, 'text_encoder_2'), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
  try {
    return { problems: prepared.plan.problems.map((p) => p.message), warnings: prepared.plan.warnings, updates: prepared.plan.updates.map((u) => u.baseKey) };
  } finally {
    await prepared.close();
  }
}

const backends: Partial<Record<'cpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

describe('a byT5 folder told by its config.json', () => {
  for (const [said, config] of [['d_model 1472, vocab_size 1510', BYT5_GLYPH], ['_name_or_path google/byt5-small, vocab_size 384', BYT5_SMALL]] as const) {
    it(`a pipeline of another class (${said}): T5-XXL's modules left out with a warning that names each as a T5; byt5_small lands`, async () => {
      const base = pipeline(config);
      const t5 = await pipelinePlan(base, [comfy('transformer.transformer_blocks.0.attn.to_q', 8, 8, ''), ...T5XXL_MODULES], rand);
      expect(t5.problems).toEqual([]);
      const held = '(it holds text_encoder_2 (T5EncoderModel), the transformer (Transformer2DModel), the VAE)';
      // kohya's names on a pipeline of a class no rule knows: the warning names the class (t5-beside-clips.ts unknownPipelineT5).
      const kohya = (what: string, prefix: string, module: string) =>
        `lora.safetensors: 1 module left out, not merged: it names ${what} as ${prefix}, which ComfyUI maps to its t5xxl alone, and the only text encoder of this GlyphTextToImagePipeline pipeline, text_encoder_2 (T5EncoderModel), is not T5-XXL; no other tool is known to apply kohya's names to that pipeline's T5 (${module})`;
      expect(t5.warnings).toEqual([
        kohya('text encoder 3 (T5)', 'lora_te3_', 'lora_te3_encoder_block_0_layer_0_SelfAttention_q'),
        kohya('text encoder 2 (T5)', 'lora_te2_', 'lora_te2_encoder_block_0_layer_1_DenseReluDense_wo'),
        `lora.safetensors: 1 module left out, not merged: it names text encoder 3 (T5), which the base does not hold ${held} (text_encoders.t5xxl.transformer.${Q})`,
      ]);
      const specs = [
        comfy(`text_encoders.byt5_small.transformer.${Q}`, 6, 14, `text_encoder_2.${Q}.weight`),
        comfy(`text_encoders.byt5_small.transformer.${WO}`, 14, 10, `text_encoder_2.${WO}.weight`),
      ];
      const bytes = buildSafetensors(loraTensors(rand, specs, 'BF16'));
      await mergePipelineAndCheck(backends.cpu!, base, [{ file: 'lora.safetensors', bytes, specs, weight: 0.8 }], ['text_encoder_2/model.safetensors']);
    });
  }

  it('HunyuanVideo 1.5\'s text_encoder_2/ given alone: T5-XXL\'s modules left out, byt5_small lands on its keys', async () => {
    const folder = { 'config.json': json(BYT5_GLYPH), 'model.safetensors': t5Weights() };
    const t5 = await folderPlan(folder, [...T5XXL_MODULES, comfy(`text_encoders.byt5_small.transformer.${WO}`, 14, 10, '')]);
    expect(t5.problems).toEqual([]);
    expect(t5.updates).toEqual([`${WO}.weight`]);
    const held = '(it holds text_encoder_2 (T5EncoderModel))';
    expect(t5.warnings).toEqual([
      `lora.safetensors: 2 modules left out, not merged: they name text encoder 3 (T5), which the base does not hold ${held} (lora_te3_encoder_block_0_layer_0_SelfAttention_q, text_encoders.t5xxl.transformer.${Q})`,
      `lora.safetensors: 1 module left out, not merged: it names text encoder 2 (T5), which the base does not hold ${held} (lora_te2_encoder_block_0_layer_1_DenseReluDense_wo)`,
    ]);
  });

  it('a T5-XXL text_encoder_2/ (its config says d_model 4096, vocab_size 32128) still takes T5-XXL\'s modules; a byt5_small module there is left out with a warning saying why, as ComfyUI leaves it unloaded', async () => {
    const folder = { 'config.json': json(T5_XXL), 'model.safetensors': t5Weights() };
    // One plan each: lora_te3_ and text_encoders.t5xxl. name one weight.
    for (const [spec, key] of [[T5XXL_MODULES[0], Q], [T5XXL_MODULES[1], WO], [T5XXL_MODULES[2], Q]] as const) {
      const t5 = await folderPlan(folder, [spec]);
      expect(t5.problems).toEqual([]);
      expect(t5.warnings).toEqual([]);
      expect(t5.updates).toEqual([`${key}.weight`]);
    }
    // ComfyUI loads this folder's weights as its t5xxl, where a byt5_small key is "not loaded".
    const specs = [comfy(`text_encoders.t5xxl.transformer.${WO}`, 14, 10, `${WO}.weight`), comfy(`text_encoders.byt5_small.transformer.${Q}`, 6, 14, '')];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({
      backend: backends.cpu!, base: folder, baseName: 'text_encoder_2', adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.6 }],
    });
    expect(warnings).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), which the base does not hold (it holds text_encoder_2 (T5EncoderModel), whose config.json says d_model 4096 and vocab_size 32128, not byT5's (d_model 1472, a vocabulary of 384 bytes)) (text_encoders.byt5_small.transformer.${Q})`,
    ]);
    expectMergedFile(decodeSafetensors(folder['model.safetensors']).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 0.6));
  });

  it('ComfyUI\'s extracted t5xxl LoRA, whose `shared` module LoraSave writes as for every 2-D weight, merges on a T5-XXL text_encoder_2/ into its one shared embedding, as ComfyUI\'s T5 reads it', async () => {
    const folder = { 'config.json': json(T5_XXL), 'model.safetensors': t5Weights() };
    const specs = [comfy('text_encoders.t5xxl.transformer.shared', 20, 14, 'shared.weight'), comfy(`text_encoders.t5xxl.transformer.${Q}`, 6, 14, `${Q}.weight`)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({
      backend: backends.cpu!, base: folder, baseName: 'text_encoder_2', adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.7 }],
    });
    expect(warnings).toEqual([]);
    expectMergedFile(decodeSafetensors(folder['model.safetensors']).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs, 0.7));
  });

  it('a T5EncoderModel text_encoder_2/ whose config.json gives no d_model or vocab_size: a byt5_small module is refused, naming what would tell', async () => {
    const folder = { 'config.json': json({ architectures: ['T5EncoderModel'], model_type: 't5' }), 'model.safetensors': t5Weights() };
    const byt5 = await folderPlan(folder, [comfy(`text_encoders.byt5_small.transformer.${Q}`, 6, 14, '')]);
    expect(byt5.updates).toEqual([]);
    expect(byt5.problems).toEqual([
      `lora.safetensors: module "text_encoders.byt5_small.transformer.${Q}": names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), and which of the base's text encoders holds it cannot be told (text_encoder_2 (T5EncoderModel): its config.json does not say its d_model and vocab_size, which tell byT5 from T5-XXL, and no pipeline's _class_name says which of ComfyUI's encoders of its class it holds): not supported`,
    ]);
  });
});

/**
 * ComfyUI's text encoder files, saved alone with no config.json (`t5xxl_fp16.safetensors`,
 * `byt5_small_glyphxl_fp16.safetensors`: transformers' keys, f16): their d_model (the length of
 * `encoder.final_layer_norm.weight`) is the real one, 4096 or 1472; the other dimensions are cut
 * down (T5-XXL's q to one head of 64, each d_ff to 16) to keep the files small. Values of their
 * own: these fixtures are made when the file is collected, before the tests above draw theirs.
 */
const loneRand = seededRandom(4096);
const loneT5 = (dModel: number, inner: number) => buildSafetensors([
  tensor(loneRand, 'shared.weight', [24, dModel], 'F16'),
  tensor(loneRand, 'encoder.block.0.layer.0.SelfAttention.q.weight', [inner, dModel], 'F16'),
  tensor(loneRand, 'encoder.block.0.layer.0.layer_norm.weight', [dModel], 'F16'),
  tensor(loneRand, 'encoder.block.0.layer.1.DenseReluDense.wo.weight', [dModel, 16], 'F16'),
  tensor(loneRand, 'encoder.final_layer_norm.weight', [dModel], 'F16'),
]);
const T5XXL_FILE = 't5xxl_fp16.safetensors';
const BYT5_FILE = 'byt5_small_glyphxl_fp16.safetensors';
const temp = tempDirs();
afterAll(temp.removeAll);

describe('a T5 encoder file given alone, without a config.json: its d_model tells byT5 (1472) from T5-XXL (4096)', () => {
  const t5xxl = loneT5(4096, 64);
  const byt5 = loneT5(1472, 384);
  const why = (wanted: string, held: string) => held === 'T5-XXL'
    ? `but the base is a T5-XXL encoder, not byT5: its d_model, the length of encoder.final_layer_norm.weight, is 4096, T5-XXL's (byT5's is 1472); ComfyUI loads such a file as its t5xxl, which holds no ${wanted} keys`
    : `but the base is a byT5 encoder, not T5-XXL: its d_model, the length of encoder.final_layer_norm.weight, is 1472, byT5's (T5-XXL's is 4096); ComfyUI loads such a file as its byt5_small, which holds no ${wanted} keys`;

  it('on T5-XXL: a byt5_small module is left out with a warning saying so, as ComfyUI leaves it unloaded; the t5xxl module merges', async () => {
    const specs = [comfy(`text_encoders.t5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`), comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, '')];
    const lora = buildSafetensors(loraTensors(loneRand, specs, 'BF16'));
    const { tensors, warnings } = await mergeInMemory({
      backend: backends.cpu!, base: { [T5XXL_FILE]: t5xxl }, baseName: T5XXL_FILE, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.7 }], slabBytes: 1 << 20,
    });
    expect(warnings).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), ${why('byt5_small', 'T5-XXL')} (text_encoders.byt5_small.transformer.${Q})`,
    ]);
    expectMergedFile(decodeSafetensors(t5xxl).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 0.7));
  });

  it('on byT5: ComfyUI\'s t5xxl and kohya\'s lora_te3_ modules are left out with a warning saying so; the byt5_small module merges', async () => {
    const specs = [
      comfy(`text_encoders.byt5_small.transformer.${WO}`, 1472, 16, `${WO}.weight`),
      comfy(`text_encoders.t5xxl.transformer.${Q}`, 4096, 4096, ''),
      comfy('lora_te3_encoder_block_0_layer_1_DenseReluDense_wo', 4096, 10240, ''),
    ];
    const lora = buildSafetensors(loraTensors(loneRand, specs.map((s, i) => (i === 0 ? s : { ...s, r: 1 })), 'BF16'));
    const { tensors, warnings } = await mergeInMemory({
      backend: backends.cpu!, base: { [BYT5_FILE]: byt5 }, baseName: BYT5_FILE, adapters: [{ files: { 'lora.safetensors': lora }, name: 'lora.safetensors', weight: 0.9 }], slabBytes: 1 << 20,
    });
    expect(warnings).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), ${why('t5xxl', 'byT5')} (text_encoders.t5xxl.transformer.${Q})`,
      `lora.safetensors: 1 module left out, not merged: it names text encoder 3 (T5), which ComfyUI maps to its t5xxl only, ${why('t5xxl', 'byT5')} (lora_te3_encoder_block_0_layer_1_DenseReluDense_wo)`,
    ]);
    expectMergedFile(decodeSafetensors(byt5).tensors, tensors, truthTerms(decodeSafetensors(lora).tensors, specs.slice(0, 1), 0.9));
  });

  it('the CLI: a byt5_small LoRA on t5xxl_fp16.safetensors alone is refused in one line naming both encoders and the d_model that told them; nothing written', async () => {
    const dir = temp.make({ [T5XXL_FILE]: t5xxl, 'lora.safetensors': buildSafetensors(loraTensors(loneRand, [comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, '')], 'BF16')) });
    const out = join(temp.make(), 'merged.safetensors');
    const run = await runCli(mergeArgs(join(dir, T5XXL_FILE), join(dir, 'lora.safetensors'), out));
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([
      `error: ${join(dir, 'lora.safetensors')}: none of its 1 modules lands in this base (they name ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), ${why('byt5_small', 'T5-XXL')})`,
    ]);
    expect(existsSync(out)).toBe(false);
  });
});
