/**
 * A T5 encoder whose files lack `encoder.final_layer_norm.weight` (an fp8 or pruned export of
 * comfyanonymous/flux_text_encoders' `t5xxl_fp16.safetensors`, or a diffusers `text_encoder_2/`
 * downloaded as its shards alone, without config.json). Its d_model is told from `shared.weight`
 * ([vocab, d_model]) or the first block's `SelfAttention.q.weight` ([heads·d_kv, d_model]), which
 * every such file holds, so T5-XXL (4096) is still told from byT5 (1472): ComfyUI loads the file
 * as that encoder and leaves the other one's keys unloaded, which the merge leaves out with a
 * warning (they were refused as a shape mismatch). A shard folder without config.json is a T5 by
 * its keys, not the CLIP-G its position would say: T5-XXL's modules in every naming (kohya's and
 * OneTrainer's `lora_te3_`/`lora_te2_`, ComfyUI's `text_encoders.t5xxl.`, diffusers'
 * `text_encoder_2.`) land on it (they were left out), against float64 truth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { headerOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted as comfy } from './helpers/pipeline-merge.js';

const rand = seededRandom(10240);
const Q = 'encoder.block.0.layer.0.SelfAttention.q';
const WO = 'encoder.block.0.layer.1.DenseReluDense.wo';

/**
 * A T5 encoder file in transformers' names without its final norm, d_model `dModel` real, the
 * other sizes cut (q to `inner` rows, d_ff to 16, the vocabulary to 24), F16 as ComfyUI saves it.
 */
const noFinalNorm = (dModel: number, inner: number) => buildSafetensors([
  tensor(rand, 'shared.weight', [24, dModel], 'F16'),
  tensor(rand, `${Q}.weight`, [inner, dModel], 'F16'),
  tensor(rand, 'encoder.block.0.layer.0.layer_norm.weight', [dModel], 'F16'),
  tensor(rand, `${WO}.weight`, [dModel, 16], 'F16'),
]);

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());

/**
 * Merges one LoRA of `specs` at `weight` into `base`, after checking its plan has no problems;
 * checks every written weight file's tensors against W + ΔW in float64 (the modules that land) and
 * returns the warnings.
 */
async function mergeChecked(base: Record<string, Uint8Array | string>, baseName: string, specs: LoraSpec[], weight: number, weightFiles: string[]) {
  const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
  const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight }]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend: cpu, slabBytes: 1 << 20 });
    const written = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
    const terms = truthTerms(decodeSafetensors(lora).tensors, specs.filter((s) => s.lands[0].key !== ''), weight);
    const safetensors = [...written.keys()].filter((p) => p.endsWith('.safetensors'));
    expect(safetensors.length).toBe(weightFiles.length);
    for (const file of weightFiles) {
      const before = decodeSafetensors(base[file] as Uint8Array).tensors;
      const after = decodeSafetensors(written.get(file) ?? [...written.values()][0]).tensors;
      const mine = terms.filter((t) => before.has(t.baseKey));
      if (mine.length > 0) expectMergedFile(before, after, mine);
      else expect(after, `${file} is the base's`).toEqual(before);
    }
    // Each module that lands is written: none of them is left out unseen.
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...new Set(terms.map((t) => t.baseKey))].sort());
    return prepared.plan.warnings;
  } finally {
    await prepared.close();
  }
}

const T5XXL_WHY = (by: string) => `the base is a T5-XXL encoder, not byT5: its d_model, ${by}, is 4096, T5-XXL's (byT5's is 1472)`;
const BYT5_WHY = (by: string) => `the base is a byT5 encoder, not T5-XXL: its d_model, ${by}, is 1472, byT5's (T5-XXL's is 4096)`;

describe('a T5 encoder file given alone without encoder.final_layer_norm.weight', () => {
  it('t5xxl_fp16.safetensors: T5-XXL\'s modules in ComfyUI\'s, kohya\'s, OneTrainer\'s and diffusers\' names merge; byt5_small\'s is left out with a warning naming shared.weight\'s width', async () => {
    const file = 't5xxl_fp16.safetensors';
    const base = { [file]: noFinalNorm(4096, 64) };
    const specs = [
      comfy(`text_encoders.t5xxl.transformer.${Q}`, 64, 4096, `${Q}.weight`),
      comfy('lora_te3_encoder_block_0_layer_1_DenseReluDense_wo', 4096, 16, `${WO}.weight`),
      comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, ''),
    ];
    const warnings = await mergeChecked(base, file, specs, 0.7, [file]);
    expect(warnings).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), but ${T5XXL_WHY('the width of shared.weight (shape [24, 4096])')}; ComfyUI loads such a file as its t5xxl, which holds no byt5_small keys (text_encoders.byt5_small.transformer.${Q})`,
    ]);
    // OneTrainer's Flux lora_te2_ and diffusers' text_encoder_2. name the same T5.
    for (const spec of [comfy('lora_te2_encoder_block_0_layer_0_SelfAttention_q', 64, 4096, `${Q}.weight`), comfy(`text_encoder_2.${Q}`, 64, 4096, `${Q}.weight`)]) {
      expect(await mergeChecked(base, file, [spec], -0.5, [file])).toEqual([]);
    }
  });

  it('a byT5 glyph encoder file: ComfyUI\'s t5xxl and kohya\'s lora_te3_ modules are left out with a warning (they were refused as a shape mismatch); byt5_small\'s merges', async () => {
    const file = 'byt5_small_glyphxl_fp16.safetensors';
    const base = { [file]: noFinalNorm(1472, 384) };
    const specs = [
      comfy(`text_encoders.byt5_small.transformer.${WO}`, 1472, 16, `${WO}.weight`),
      { ...comfy(`text_encoders.t5xxl.transformer.${Q}`, 4096, 4096, ''), r: 1 },
      { ...comfy('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 4096, 4096, ''), r: 1 },
    ];
    const why = BYT5_WHY('the width of shared.weight (shape [24, 1472])');
    expect(await mergeChecked(base, file, specs, 0.9, [file])).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), but ${why}; ComfyUI loads such a file as its t5xxl, which holds no t5xxl keys (text_encoders.t5xxl.transformer.${Q})`.replace('loads such a file as its t5xxl, which holds no t5xxl', 'loads such a file as its byt5_small, which holds no t5xxl'),
      `lora.safetensors: 1 module left out, not merged: it names text encoder 3 (T5), which ComfyUI maps to its t5xxl only, but ${why}; ComfyUI loads such a file as its byt5_small, which holds no t5xxl keys (lora_te3_encoder_block_0_layer_0_SelfAttention_q)`,
    ]);
  });
});

/** FLUX.1's text_encoder_2/ as its shards: the final norm in the second, beside block 1; no config.json. */
function t5Shards(dModel: number, inner: number): Record<string, Uint8Array | string> {
  const first = buildSafetensors([tensor(rand, 'shared.weight', [24, dModel], 'F16'), tensor(rand, `${Q}.weight`, [inner, dModel], 'F16'), tensor(rand, `${WO}.weight`, [dModel, 16], 'F16')]);
  const second = buildSafetensors([tensor(rand, 'encoder.block.1.layer.0.SelfAttention.q.weight', [inner, dModel], 'F16'), tensor(rand, 'encoder.final_layer_norm.weight', [dModel], 'F16')]);
  const [one, two] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  return {
    [one]: first, [two]: second,
    'model.safetensors.index.json': JSON.stringify({
      metadata: { total_size: first.byteLength + second.byteLength },
      weight_map: { 'shared.weight': one, [`${Q}.weight`]: one, [`${WO}.weight`]: one, 'encoder.block.1.layer.0.SelfAttention.q.weight': two, 'encoder.final_layer_norm.weight': two },
    }),
  };
}
const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

describe('a T5 text_encoder_2/ folder of shards without config.json', () => {
  it('is a T5-XXL by its keys and shapes: T5-XXL\'s modules in every naming merge (they were left out as SDXL\'s CLIP-G or an absent T5); byt5_small\'s is left out, saying its d_model', async () => {
    const base = t5Shards(4096, 64);
    const specs = [
      comfy('lora_te2_encoder_block_0_layer_0_SelfAttention_q', 64, 4096, `${Q}.weight`),
      comfy('lora_te3_encoder_block_1_layer_0_SelfAttention_q', 64, 4096, 'encoder.block.1.layer.0.SelfAttention.q.weight'),
      comfy(`text_encoders.t5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`),
      { ...comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, ''), r: 1 },
    ];
    expect(await mergeChecked(base, 'text_encoder_2', specs, 0.8, SHARDS)).toEqual([
      `lora.safetensors: 1 module left out, not merged: it names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), which the base does not hold (it holds text_encoder_2 (T5 encoder), whose d_model, the length of encoder.final_layer_norm.weight, is 4096, T5-XXL's (byT5's is 1472)) (text_encoders.byt5_small.transformer.${Q})`,
    ]);
    expect(await mergeChecked(base, 'text_encoder_2', [comfy(`text_encoder_2.${Q}`, 64, 4096, `${Q}.weight`)], 1, SHARDS)).toEqual([]);
  });

  it('of byT5 widths: byt5_small lands; T5-XXL\'s modules are left out, as the base holds no T5-XXL', async () => {
    const base = t5Shards(1472, 384);
    const specs = [
      comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, `${Q}.weight`),
      { ...comfy('lora_te3_encoder_block_0_layer_1_DenseReluDense_wo', 4096, 10240, ''), r: 1 },
    ];
    expect(await mergeChecked(base, 'text_encoder_2', specs, 0.6, SHARDS)).toEqual([
      'lora.safetensors: 1 module left out, not merged: it names text encoder 3 (T5), which the base does not hold (it holds text_encoder_2 (T5 encoder)) (lora_te3_encoder_block_0_layer_1_DenseReluDense_wo)',
    ]);
  });
});

describe('T5-XXL at its real shapes (24 blocks, d_model 4096, d_ff 10240, a vocabulary of 32128), fp8 without its final norm', () => {
  const linear = (name: string, shape: number[]): Declared => ({ name, dtype: 'F8_E4M3', shape });
  const t5xxlFp8: Declared[] = [
    { name: 'shared.weight', dtype: 'BF16', shape: [32128, 4096] },
    { name: 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', dtype: 'BF16', shape: [32, 64] },
    ...Array.from({ length: 24 }, (_, i) => [
      ...['q', 'k', 'v', 'o'].map((p) => linear(`encoder.block.${i}.layer.0.SelfAttention.${p}.weight`, [4096, 4096])),
      { name: `encoder.block.${i}.layer.0.layer_norm.weight`, dtype: 'BF16', shape: [4096] } as Declared,
      linear(`encoder.block.${i}.layer.1.DenseReluDense.wi_0.weight`, [10240, 4096]), linear(`encoder.block.${i}.layer.1.DenseReluDense.wi_1.weight`, [10240, 4096]),
      linear(`encoder.block.${i}.layer.1.DenseReluDense.wo.weight`, [4096, 10240]),
      { name: `encoder.block.${i}.layer.1.layer_norm.weight`, dtype: 'BF16', shape: [4096] } as Declared,
    ]).flat(),
  ];

  it('t5xxl_fp8_e4m3fn.safetensors: a t5xxl module is planned onto its q; a byt5_small one is left out, by shared.weight\'s width', async () => {
    const file = 't5xxl_fp8_e4m3fn.safetensors';
    const specs = [comfy(`text_encoders.t5xxl.transformer.encoder.block.23.layer.0.SelfAttention.q`, 4096, 4096, ''), comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, '')];
    const lora = buildSafetensors(loraTensors(rand, specs.map((s) => ({ ...s, r: 1 })), 'BF16'));
    const prepared = await prepareMerge(headerOnly(file, { [file]: t5xxlFp8 }), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['encoder.block.23.layer.0.SelfAttention.q.weight']);
      expect(prepared.plan.warnings).toEqual([
        `lora.safetensors: 1 module left out, not merged: it names ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), but ${T5XXL_WHY('the width of shared.weight (shape [32128, 4096])')}; ComfyUI loads such a file as its t5xxl, which holds no byt5_small keys (text_encoders.byt5_small.transformer.${Q})`,
      ]);
    } finally {
      await prepared.close();
    }
  });
});
