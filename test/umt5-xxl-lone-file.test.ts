/**
 * Wan 2.1/2.2's UMT5-XXL text encoder saved alone (Comfy-Org's Wan repackage:
 * `umt5_xxl_fp16.safetensors`, `umt5_xxl_fp16.safetensors`, in transformers' T5 keys:
 * d_model 4096, d_ff 10240, 24 blocks, a vocabulary of 256384, and a relative attention bias in every
 * block). Its d_model is T5-XXL's, so it was read as one: ComfyUI's `text_encoders.t5xxl.` and
 * kohya's and diffusers' T5 modules merged into it, where ComfyUI, which loads such a file only as
 * Wan's `umt5xxl` (comfy/text_encoders/wan.py; its t5xxl's vocabulary is 32128), maps none of them
 * (comfy/lora.py model_lora_keys_clip: `text_encoders.umt5xxl.transformer.<key>` alone), and
 * diffusers' Wan pipelines load no text encoder LoRA. Now it is told UMT5 by its vocabulary, or where
 * a cut file's vocabulary is neither model's, by the bias in its later blocks: `umt5xxl` merges
 * (float64 truth), the others are left out with a warning naming the module and why, and a
 * `umt5xxl` module on a T5-XXL file is left out the same way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { loraTensors, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { headerOnly, type Declared } from './helpers/deepseek-v3-headers.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { comfyExtracted as comfy, mergeLoneFileChecked } from './helpers/pipeline-merge.js';

const rand = seededRandom(256384);
const Q = 'encoder.block.0.layer.0.SelfAttention.q';
const WO = 'encoder.block.1.layer.1.DenseReluDense.wo';
const BIAS = (i: number) => `encoder.block.${i}.layer.0.SelfAttention.relative_attention_bias.weight`;

/**
 * A T5 encoder file of d_model 4096 in transformers' names, the other sizes cut (q to 64 rows, d_ff
 * to 16, the vocabulary to 24): two blocks, the relative attention bias ([32 buckets, 64 heads]) in
 * both (UMT5) or in the first only (T5), F16 as ComfyUI saves it.
 */
const twoBlocks = (umt5: boolean) => buildSafetensors([
  tensor(rand, 'shared.weight', [24, 4096], 'F16'),
  tensor(rand, BIAS(0), [32, 64], 'F16'),
  tensor(rand, `${Q}.weight`, [64, 4096], 'F16'),
  ...(umt5 ? [tensor(rand, BIAS(1), [32, 64], 'F16')] : []),
  tensor(rand, 'encoder.block.1.layer.0.SelfAttention.q.weight', [64, 4096], 'F16'),
  tensor(rand, `${WO}.weight`, [4096, 16], 'F16'),
  tensor(rand, 'encoder.final_layer_norm.weight', [4096], 'F16'),
]);

let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());

const mergeChecked = (base: Uint8Array, file: string, specs: LoraSpec[], weight: number) => mergeLoneFileChecked(cpu, rand, base, file, specs, weight);

const UMT5_BY_BIAS = `the base is a UMT5-XXL encoder, not T5-XXL: its block 1 holds a relative_attention_bias of its own (${BIAS(1)}), as every UMT5 block does (T5-XXL's first block only)`;
const NOT_LOADED = "ComfyUI loads such a file as its umt5xxl, whose keys only text_encoders.umt5xxl.transformer. names reach, and diffusers' Wan pipelines load no text encoder LoRA";
const left = (what: string, module: string) => `lora.safetensors: 1 module left out, not merged: it names ${what} (${module})`;

describe('a UMT5-XXL text encoder file given alone (Wan\'s umt5_xxl_fp16.safetensors)', () => {
  it('`text_encoders.umt5xxl.` merges; ComfyUI\'s t5xxl, byt5_small and pile_t5xl, kohya\'s lora_te_/lora_te1_/lora_te3_ and diffusers\' text_encoder./text_encoder_3. T5 modules are left out, each with why', async () => {
    const file = 'umt5_xxl_fp16.safetensors';
    const specs = [
      comfy(`text_encoders.umt5xxl.transformer.${Q}`, 64, 4096, `${Q}.weight`),
      comfy(`text_encoders.umt5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`),
      comfy(`text_encoders.t5xxl.transformer.${Q}`, 64, 4096, ''),
      comfy('lora_te3_encoder_block_0_layer_0_SelfAttention_q', 64, 4096, ''),
      comfy('lora_te_encoder_block_0_layer_0_SelfAttention_q', 64, 4096, ''),
      comfy('lora_te1_encoder_block_0_layer_0_SelfAttention_q', 64, 4096, ''),
      comfy(`text_encoder.${Q}`, 64, 4096, ''),
      comfy(`text_encoder_3.${Q}`, 64, 4096, ''),
      { ...comfy(`text_encoders.byt5_small.transformer.${Q}`, 384, 1472, ''), r: 1 },
      { ...comfy(`text_encoders.pile_t5xl.transformer.${Q}`, 2048, 2048, ''), r: 1 },
    ];
    expect(await mergeChecked(twoBlocks(true), file, specs, 0.7)).toEqual([
      left(`ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), but ${UMT5_BY_BIAS}; ComfyUI loads such a file as its umt5xxl, which holds no t5xxl keys`, `text_encoders.t5xxl.transformer.${Q}`),
      // kohya's lora_te3_ and diffusers' text_encoder_3. give one reason: the warning names both.
      `lora.safetensors: 2 modules left out, not merged: they name text encoder 3 (T5), which ComfyUI maps to its t5xxl only, but ${UMT5_BY_BIAS}; ComfyUI loads such a file as its umt5xxl, which holds no t5xxl keys (lora_te3_encoder_block_0_layer_0_SelfAttention_q, text_encoder_3.${Q})`,
      left(`the text encoder, but ${UMT5_BY_BIAS}; ${NOT_LOADED}`, 'lora_te_encoder_block_0_layer_0_SelfAttention_q'),
      left(`text encoder 1 (T5), but ${UMT5_BY_BIAS}; ${NOT_LOADED}`, 'lora_te1_encoder_block_0_layer_0_SelfAttention_q'),
      left(`diffusers' first text encoder (text_encoder.), but ${UMT5_BY_BIAS}; ${NOT_LOADED}`, `text_encoder.${Q}`),
      left("ComfyUI's byt5_small text encoder (text_encoders.byt5_small.), but the base is a UMT5-XXL encoder, not byT5: its d_model, the length of encoder.final_layer_norm.weight, is 4096, UMT5-XXL's (byT5's is 1472); ComfyUI loads such a file as its umt5xxl, which holds no byt5_small keys", `text_encoders.byt5_small.transformer.${Q}`),
      left("ComfyUI's pile_t5xl text encoder (text_encoders.pile_t5xl.), but the base is a UMT5-XXL encoder, not Pile-T5-XL: its d_model, the length of encoder.final_layer_norm.weight, is 4096, UMT5-XXL's (Pile-T5-XL's is 2048); ComfyUI loads such a file as its umt5xxl, which holds no pile_t5xl keys", `text_encoders.pile_t5xl.transformer.${Q}`),
    ]);
  });

  it('on a T5-XXL of the same widths (its bias in block 0 only), `text_encoders.umt5xxl.` is left out and `text_encoders.t5xxl.` and kohya\'s lora_te3_ merge, as before', async () => {
    const file = 't5xxl_fp16.safetensors';
    const specs = [
      comfy(`text_encoders.t5xxl.transformer.${Q}`, 64, 4096, `${Q}.weight`),
      comfy('lora_te3_encoder_block_1_layer_1_DenseReluDense_wo', 4096, 16, `${WO}.weight`),
      comfy(`text_encoders.umt5xxl.transformer.${Q}`, 64, 4096, ''),
    ];
    expect(await mergeChecked(twoBlocks(false), file, specs, -0.6)).toEqual([
      left("ComfyUI's umt5xxl text encoder (text_encoders.umt5xxl.), but the base is a T5-XXL encoder, not UMT5-XXL: its blocks past the first hold no relative_attention_bias (every UMT5 block has its own); ComfyUI loads such a file as its t5xxl, which holds no umt5xxl keys", `text_encoders.umt5xxl.transformer.${Q}`),
    ]);
  });
});

/**
 * A T5 encoder at its real shapes (24 blocks, d_model 4096, 64 heads, d_ff 10240), F16 as
 * Comfy-Org's `umt5_xxl_fp16.safetensors` and `t5xxl_fp16.safetensors` store it: UMT5-XXL's
 * (`umt5`: a vocabulary of 256384, a relative attention bias in every block) or T5-XXL's (32128,
 * the bias in block 0 only).
 */
function realT5(umt5: boolean): Declared[] {
  const linear = (name: string, shape: number[]): Declared[] => [{ name: `${name}.weight`, dtype: 'F16', shape }];
  return [
    { name: 'shared.weight', dtype: 'F16', shape: [umt5 ? 256384 : 32128, 4096] },
    ...Array.from({ length: 24 }, (_, i): Declared[] => [
      ...(umt5 || i === 0 ? [{ name: BIAS(i), dtype: 'F16', shape: [32, 64] } as Declared] : []),
      ...['q', 'k', 'v', 'o'].flatMap((p) => linear(`encoder.block.${i}.layer.0.SelfAttention.${p}`, [4096, 4096])),
      { name: `encoder.block.${i}.layer.0.layer_norm.weight`, dtype: 'F16', shape: [4096] },
      ...linear(`encoder.block.${i}.layer.1.DenseReluDense.wi_0`, [10240, 4096]), ...linear(`encoder.block.${i}.layer.1.DenseReluDense.wi_1`, [10240, 4096]),
      ...linear(`encoder.block.${i}.layer.1.DenseReluDense.wo`, [4096, 10240]),
      { name: `encoder.block.${i}.layer.1.layer_norm.weight`, dtype: 'F16', shape: [4096] },
    ]).flat(),
    { name: 'encoder.final_layer_norm.weight', dtype: 'F16', shape: [4096] },
  ];
}

/** The plan of a rank-1 LoRA of `specs` on the header-only `file` of `tensors`: its problems, updated keys and warnings. */
async function planOn(file: string, tensors: Declared[], specs: LoraSpec[]) {
  const lora = buildSafetensors(loraTensors(rand, specs.map((s) => ({ ...s, r: 1 })), 'BF16'));
  const prepared = await prepareMerge(headerOnly(file, { [file]: tensors }), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
  try {
    return { problems: prepared.plan.problems.map((p) => p.message), updates: prepared.plan.updates.map((u) => u.baseKey), warnings: prepared.plan.warnings };
  } finally {
    await prepared.close();
  }
}

describe('at their real shapes, told by the vocabulary of shared.weight', () => {
  const Q23 = 'encoder.block.23.layer.0.SelfAttention.q';

  it('umt5_xxl_fp16.safetensors: a umt5xxl module is planned onto its q; a t5xxl one is left out', async () => {
    const { problems, updates, warnings } = await planOn('umt5_xxl_fp16.safetensors', realT5(true), [
      comfy(`text_encoders.umt5xxl.transformer.${Q23}`, 4096, 4096, ''), comfy(`text_encoders.t5xxl.transformer.${Q23}`, 4096, 4096, ''),
    ]);
    expect(problems).toEqual([]);
    expect(updates).toEqual([`${Q23}.weight`]);
    expect(warnings).toEqual([
      left("ComfyUI's t5xxl text encoder (text_encoders.t5xxl.), but the base is a UMT5-XXL encoder, not T5-XXL: its shared.weight holds 256384 tokens, UMT5's vocabulary (T5-XXL's is 32128); ComfyUI loads such a file as its umt5xxl, which holds no t5xxl keys", `text_encoders.t5xxl.transformer.${Q23}`),
    ]);
  });

  it('t5xxl_fp16.safetensors: a t5xxl module is planned onto its q; a umt5xxl one is left out', async () => {
    const { problems, updates, warnings } = await planOn('t5xxl_fp16.safetensors', realT5(false), [
      comfy(`text_encoders.t5xxl.transformer.${Q23}`, 4096, 4096, ''), comfy(`text_encoders.umt5xxl.transformer.${Q23}`, 4096, 4096, ''),
    ]);
    expect(problems).toEqual([]);
    expect(updates).toEqual([`${Q23}.weight`]);
    expect(warnings).toEqual([
      left("ComfyUI's umt5xxl text encoder (text_encoders.umt5xxl.), but the base is a T5-XXL encoder, not UMT5-XXL: its shared.weight holds 32128 tokens, T5-XXL's vocabulary (UMT5's is 256384); ComfyUI loads such a file as its t5xxl, which holds no umt5xxl keys", `text_encoders.umt5xxl.transformer.${Q23}`),
    ]);
  });
});

/** Wan's text_encoder/ as its shards alone, without config.json: a UMT5 of the cut widths above, block 1 in the second shard. */
function umt5Shards(): Record<string, Uint8Array | string> {
  const first = buildSafetensors([tensor(rand, 'shared.weight', [24, 4096], 'F16'), tensor(rand, BIAS(0), [32, 64], 'F16'), tensor(rand, `${Q}.weight`, [64, 4096], 'F16')]);
  const second = buildSafetensors([tensor(rand, BIAS(1), [32, 64], 'F16'), tensor(rand, `${WO}.weight`, [4096, 16], 'F16'), tensor(rand, 'encoder.final_layer_norm.weight', [4096], 'F16')]);
  const [one, two] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  return {
    [one]: first, [two]: second,
    'model.safetensors.index.json': JSON.stringify({
      metadata: { total_size: first.byteLength + second.byteLength },
      weight_map: { 'shared.weight': one, [BIAS(0)]: one, [`${Q}.weight`]: one, [BIAS(1)]: two, [`${WO}.weight`]: two, 'encoder.final_layer_norm.weight': two },
    }),
  };
}

describe('Wan\'s text_encoder/ folder of shards without config.json', () => {
  it('is a UMT5 by its shapes: `text_encoders.umt5xxl.` lands on both shards (it was left out); `text_encoders.t5xxl.` and kohya\'s lora_te3_ are left out (they merged)', async () => {
    const base = umt5Shards();
    const lora = (specs: LoraSpec[]) => buildSafetensors(loraTensors(rand, specs, 'BF16'));
    const specs = [
      comfy(`text_encoders.umt5xxl.transformer.${Q}`, 64, 4096, `${Q}.weight`),
      comfy(`text_encoders.umt5xxl.transformer.${WO}`, 4096, 16, `${WO}.weight`),
      comfy(`text_encoders.t5xxl.transformer.${Q}`, 64, 4096, ''),
      comfy('lora_te3_encoder_block_1_layer_1_DenseReluDense_wo', 4096, 16, ''),
    ];
    const bytes = lora(specs);
    const prepared = await prepareMerge(memoryInputFileSet(base, 'text_encoder'), [{ files: memoryInputFileSet({ 'lora.safetensors': bytes }, 'lora.safetensors'), weight: 0.8 }]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
      expect(prepared.plan.warnings).toEqual([
        `lora.safetensors: 2 modules left out, not merged: they name text encoder 3 (T5), which the base does not hold (it holds text_encoder (T5 encoder)) (text_encoders.t5xxl.transformer.${Q}, lora_te3_encoder_block_1_layer_1_DenseReluDense_wo)`,
      ]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: cpu, slabBytes: 1 << 20 });
      const written = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
      const terms = truthTerms(decodeSafetensors(bytes).tensors, specs.slice(0, 2), 0.8);
      for (const file of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
        const before = decodeSafetensors(base[file] as Uint8Array).tensors;
        expectMergedFile(before, decodeSafetensors(written.get(file)!).tensors, terms.filter((t) => before.has(t.baseKey)));
      }
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([`${WO}.weight`, `${Q}.weight`].sort());
    } finally {
      await prepared.close();
    }
  });
});
