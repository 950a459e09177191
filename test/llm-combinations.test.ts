/**
 * LLM checkpoint features combined with the rest of the engine, file to file against float64
 * truth written out here: adapter algorithms as ordered update steps (PEFT DoRA, PEFT LoKr) on a
 * vision-language checkpoint in its old naming; trainable tokens beside a LoRA on another tensor;
 * a tied head written through the safetensors container's writers and its rebuilt index; the value
 * checks on saved, replaced and row-set tensors; the one-call merge() on model folders; and GGUF
 * bases, where a vision-language adapter's language model maps and its vision tower, like any
 * tensor an adapter saves whole, is refused by name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { merge as browserMerge } from '../src/merge.js';
import { merge as nodeMerge } from '../src/node-merge.js';
import { isMergeError } from '../src/errors.js';
import { savedTensorRefusals } from '../src/pipeline/merge-model.js';
import { buildSafetensors, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder, prepareFolders as prepare, type Files } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';
import { buildGguf, readGguf, tensorValues, type MetaValue } from './helpers/gguf-builder.js';

const rand = seededRandom(2025);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
const dirs = tempDirs();
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => {
  Object.values(backends).forEach((b) => b.dispose());
  dirs.removeAll();
});

const KINDS = ['cpu', 'webgpu'] as const;
const P = 'base_model.model';

async function merge(prepared: PreparedMerge, kind: 'cpu' | 'webgpu', options: { outDtype?: string; onWarning?: (w: string) => void } = {}): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: backends[kind]!, slabBytes: 4096, ...options });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}

/**
 * The MergeError a merge fails with; the same line, and only it, is what savedTensorRefusals finds
 * before the merge (the refusal a plan shown ahead of it lists, as the page's does).
 */
async function mergeError(prepared: PreparedMerge, options: { outDtype?: string } = {}): Promise<string> {
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  const ahead = await savedTensorRefusals(prepared, options);
  const error = await merge(prepared, 'cpu', options).then(() => undefined, (e: unknown) => e);
  expect(isMergeError(error), String(error)).toBe(true);
  expect(ahead).toEqual([(error as Error).message]);
  return (error as Error).message;
}

function plus(w: Float64Array, scale: number, delta: Float64Array): Float64Array {
  return w.map((x, i) => x + scale * delta[i]);
}

/** Every tensor not in `changed` is written byte for byte as the base holds it. */
function expectUnchanged(merged: MergedFolder, base: Map<string, DecodedTensor>, changed: string[]): void {
  for (const [key, t] of base) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(t.bytes);
}

// --- a Qwen2.5-VL checkpoint saved before transformers' VLM refactor (old keys) ----------------

function qwenVlOld(): FixtureTensor[] {
  return [
    randomTensor('model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.bias', [8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.k_proj.weight', [4, 8], 'BF16', rand),
    randomTensor('model.layers.0.mlp.down_proj.weight', [8, 12], 'BF16', rand),
    randomTensor('model.norm.weight', [8], 'BF16', rand),
    randomTensor('visual.blocks.0.attn.qkv.weight', [12, 8], 'BF16', rand),
    randomTensor('visual.blocks.0.attn.proj.weight', [8, 8], 'BF16', rand),
    randomTensor('lm_head.weight', [32, 8], 'BF16', rand),
  ];
}
const QWEN_VL_CONFIG = {
  architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', torch_dtype: 'bfloat16',
  hidden_size: 8, vocab_size: 32, tie_word_embeddings: false, vision_config: { depth: 1, hidden_size: 8 },
};
/** The refactored module tree's names, as adapters trained with transformers ≥ 4.52 use them. */
const LM = 'model.language_model';

describe('update steps on a vision-language checkpoint in its old naming', () => {
  for (const kind of KINDS) {
    it(`a PEFT DoRA module and, after it, a PEFT LoKr module (new naming) land on the old keys exactly, on ${kind}`, async () => {
      const base = qwenVlOld();
      // PEFT LoRA with use_dora: lora_A, lora_B and the magnitude (one per output row).
      const dora = [
        randomTensor(`${P}.${LM}.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand, 0.5),
        randomTensor(`${P}.${LM}.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand, 0.5),
        randomTensor(`${P}.${LM}.layers.0.self_attn.q_proj.lora_magnitude_vector.weight`, [8], 'F32', rand),
      ];
      // PEFT LoKr on down_proj (8, 12) = kron(w1 (2, 3), w2_a (4, 1) · w2_b (1, 4)), and on the vision tower.
      const lokr = [
        randomTensor(`${P}.${LM}.layers.0.mlp.down_proj.lokr_w1`, [2, 3], 'F32', rand),
        randomTensor(`${P}.${LM}.layers.0.mlp.down_proj.lokr_w2_a`, [4, 1], 'F32', rand),
        randomTensor(`${P}.${LM}.layers.0.mlp.down_proj.lokr_w2_b`, [1, 4], 'F32', rand),
        randomTensor(`${P}.model.visual.blocks.0.attn.proj.lokr_w1`, [2, 2], 'F32', rand),
        randomTensor(`${P}.model.visual.blocks.0.attn.proj.lokr_w2_a`, [4, 1], 'F32', rand),
        randomTensor(`${P}.model.visual.blocks.0.attn.proj.lokr_w2_b`, [1, 4], 'F32', rand),
      ];
      const prepared = await prepare(hfModelFolder(base, QWEN_VL_CONFIG, { shards: 2 }), [
        peftFolder({ r: 2, lora_alpha: 4, use_dora: true, target_modules: ['q_proj'] }, dora),
        { 'adapter_config.json': JSON.stringify({ peft_type: 'LOKR', r: 1, alpha: 3, target_modules: ['down_proj', 'proj'] }), 'adapter_model.safetensors': buildSafetensors(lokr) },
      ]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout])).toEqual([
        ['model.layers.0.self_attn.q_proj.weight', 'vlm-checkpoint'],
        ['model.layers.0.mlp.down_proj.weight', 'vlm-checkpoint'],
        ['visual.blocks.0.attn.proj.weight', 'vlm-checkpoint'],
      ]);
      const merged = await merge(prepared, kind);
      const b = decoded(base);
      const d = decoded(dora);
      const k = decoded(lokr);

      // DoRA: V = W + (α/r)·B·A, each output row scaled to its magnitude: m_o · V_o / ‖V_o‖.
      const q = 'model.layers.0.self_attn.q_proj.weight';
      const v = plus(b.get(q)!.values, 2, product(d.get(`${P}.${LM}.layers.0.self_attn.q_proj.lora_B.weight`)!, d.get(`${P}.${LM}.layers.0.self_attn.q_proj.lora_A.weight`)!));
      const m = d.get(`${P}.${LM}.layers.0.self_attn.q_proj.lora_magnitude_vector.weight`)!.values;
      for (let o = 0; o < 8; o++) {
        const row = v.subarray(o * 8, o * 8 + 8);
        const norm = Math.sqrt(row.reduce((s, x) => s + x * x, 0));
        for (let i = 0; i < 8; i++) row[i] *= m[o] / norm;
      }
      expectValues(q, merged.tensors.get(q)!, v);

      // LoKr: W + (α/r)·kron(w1, w2_a·w2_b), r = 1, α = 3.
      const kron = (prefix: string, a: number, c: number) => {
        const w1 = k.get(`${prefix}.lokr_w1`)!.values;
        const w2 = product(k.get(`${prefix}.lokr_w2_a`)!, k.get(`${prefix}.lokr_w2_b`)!); // (4, 4)
        const out = new Float64Array(a * 4 * c * 4);
        for (let o1 = 0; o1 < a; o1++) for (let o2 = 0; o2 < 4; o2++) for (let i1 = 0; i1 < c; i1++) for (let i2 = 0; i2 < 4; i2++) {
          out[(o1 * 4 + o2) * (c * 4) + i1 * 4 + i2] = w1[o1 * c + i1] * w2[o2 * 4 + i2];
        }
        return out;
      };
      const down = 'model.layers.0.mlp.down_proj.weight';
      expectValues(down, merged.tensors.get(down)!, plus(b.get(down)!.values, 3, kron(`${P}.${LM}.layers.0.mlp.down_proj`, 2, 3)));
      const proj = 'visual.blocks.0.attn.proj.weight';
      expectValues(proj, merged.tensors.get(proj)!, plus(b.get(proj)!.values, 3, kron(`${P}.model.visual.blocks.0.attn.proj`, 2, 2)));
      expectUnchanged(merged, b, [q, down, proj]);
      const index = merged.json('model.safetensors.index.json');
      expect(index.metadata.total_size).toBe(merged.tensorBytes);
      expect(Object.keys(index.weight_map).sort()).toEqual([...b.keys()].sort());
    });
  }

  for (const kind of KINDS) {
    it(`trainable tokens (new naming) set rows of the old-named embedding beside a LoRA on another tensor, on ${kind}`, async () => {
      const base = qwenVlOld();
      const tokens = [30, 1, 17];
      const adapter = [
        randomTensor(`${P}.${LM}.embed_tokens.token_adapter.trainable_tokens_delta`, [3, 8], 'F32', rand),
        randomTensor(`${P}.${LM}.layers.0.self_attn.k_proj.lora_A.weight`, [3, 8], 'F32', rand, 0.5),
        randomTensor(`${P}.${LM}.layers.0.self_attn.k_proj.lora_B.weight`, [4, 3], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(hfModelFolder(base, QWEN_VL_CONFIG), [peftFolder({ r: 3, lora_alpha: 3, target_modules: ['k_proj'], trainable_token_indices: tokens }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.rowSets.map((r) => r.baseKey)).toEqual(['model.embed_tokens.weight']);
      const merged = await merge(prepared, kind);
      const b = decoded(base);
      const a = decoded(adapter);
      const embed = b.get('model.embed_tokens.weight')!.values.slice();
      const delta = a.get(`${P}.${LM}.embed_tokens.token_adapter.trainable_tokens_delta`)!.values;
      tokens.forEach((t, i) => embed.set(delta.subarray(i * 8, i * 8 + 8), t * 8));
      const got = merged.tensors.get('model.embed_tokens.weight')!;
      expect([...got.values]).toEqual([...embed].map((x) => roundForDType(x, 'BF16')));
      const kKey = 'model.layers.0.self_attn.k_proj.weight';
      expectValues(kKey, merged.tensors.get(kKey)!, plus(b.get(kKey)!.values, 1, product(a.get(`${P}.${LM}.layers.0.self_attn.k_proj.lora_B.weight`)!, a.get(`${P}.${LM}.layers.0.self_attn.k_proj.lora_A.weight`)!)));
      expectUnchanged(merged, b, ['model.embed_tokens.weight', kKey]);
      expect(merged.json('config.json')).toMatchObject({ vocab_size: 32, tie_word_embeddings: false, dtype: 'bfloat16' });
    });
  }
});

// --- a tied Llama in two shards: the head written through the container and its index ----------

const TIED_CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', vocab_size: 20, tie_word_embeddings: true };
function tiedLlama(): FixtureTensor[] {
  return [
    randomTensor('model.embed_tokens.weight', [20, 8], 'F16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
    randomTensor('model.layers.0.mlp.up_proj.weight', [12, 8], 'F16', rand),
    randomTensor('model.norm.weight', [8], 'F16', rand),
  ];
}

describe('a tied head written through the container', () => {
  for (const kind of KINDS) {
    it(`a LoRA on lm_head of a sharded tied model: the head joins the embedding's shard, the index and config follow, on ${kind}`, async () => {
      const base = tiedLlama();
      const adapter = [
        randomTensor(`${P}.lm_head.lora_A.weight`, [2, 8], 'F32', rand, 0.5),
        randomTensor(`${P}.lm_head.lora_B.weight`, [20, 2], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(hfModelFolder(base, TIED_CONFIG, { shards: 2 }), [peftFolder({ r: 2, lora_alpha: 2, target_modules: ['lm_head'] }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const b = decoded(base);
      const a = decoded(adapter);
      const head = merged.tensors.get('lm_head.weight')!;
      expect([head.dtype, head.shape]).toEqual(['F16', [20, 8]]);
      expectValues('lm_head.weight', head, plus(b.get('model.embed_tokens.weight')!.values, 1, product(a.get(`${P}.lm_head.lora_B.weight`)!, a.get(`${P}.lm_head.lora_A.weight`)!)));
      expectUnchanged(merged, b, []);
      const index = merged.json('model.safetensors.index.json');
      expect(index.weight_map['lm_head.weight']).toBe(index.weight_map['model.embed_tokens.weight']);
      expect(merged.shardOf.get('lm_head.weight')).toBe(index.weight_map['lm_head.weight']);
      expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());
      expect(index.metadata.total_size).toBe(merged.tensorBytes);
      for (const [, metadata] of merged.metadata) expect(metadata.format).toBe('pt');
      expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, dtype: 'float16', torch_dtype: 'float16' });
    });
  }
});

// --- value checks on tensors an adapter saved, replaced or set by rows -------------------------

describe('value checks on saved, replaced and row-set tensors', () => {
  const UNTIED = { ...TIED_CONFIG, tie_word_embeddings: false };
  const untied = () => [...tiedLlama(), randomTensor('lm_head.weight', [20, 8], 'F16', rand)];
  const poison = (t: FixtureTensor, at: number, value: number): FixtureTensor => {
    const data = Float64Array.from(t.data as ArrayLike<number>);
    data[at] = value;
    return { ...t, data };
  };

  it('a saved (resized) embedding holding NaN under its LoRA is named, as the adapter file at fault', async () => {
    const adapter = [
      poison(randomTensor(`${P}.model.embed_tokens.base_layer.weight`, [22, 8], 'F32', rand), 13 * 8 + 2, NaN),
      randomTensor(`${P}.model.embed_tokens.lora_embedding_A`, [2, 22], 'F32', rand),
      randomTensor(`${P}.model.embed_tokens.lora_embedding_B`, [8, 2], 'F32', rand),
      randomTensor(`${P}.lm_head.base_layer.weight`, [22, 8], 'F32', rand),
    ];
    const message = await mergeError(await prepare(hfModelFolder(untied(), UNTIED), [peftFolder({ r: 2 }, adapter)]));
    expect(message).toMatch(/^adapter1: tensor "base_model\.model\.model\.embed_tokens\.base_layer\.weight" \(model\.embed_tokens\.weight saved with the adapter\) holds 1 NaN or Inf value \(row 13\); the adapter file is broken$/);
  });

  it('a saved head replacing the base\'s with an Inf is named', async () => {
    const adapter = [
      randomTensor(`${P}.model.embed_tokens.base_layer.weight`, [22, 8], 'F32', rand),
      poison(randomTensor(`${P}.lm_head.base_layer.weight`, [22, 8], 'F32', rand), 5, Infinity),
    ];
    const message = await mergeError(await prepare(hfModelFolder(untied(), UNTIED), [peftFolder({ r: 2 }, adapter)]));
    expect(message).toBe('adapter1: tensor "base_model.model.lm_head.base_layer.weight" (lm_head.weight saved with the adapter) holds 1 NaN or Inf value (row 0); the adapter file is broken');
  });

  it('a trainable-tokens delta holding Inf is named with its token', async () => {
    const adapter = [poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [2, 8], 'F32', rand), 8 + 3, -Infinity)];
    const message = await mergeError(await prepare(hfModelFolder(untied(), UNTIED), [peftFolder({ r: 2, trainable_token_indices: [4, 9] }, adapter)]));
    expect(message).toBe('adapter1: tensor "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta" (trainable tokens of model.embed_tokens.weight) holds 1 NaN or Inf value (the row for token 9); the adapter file is broken');
  });

  it('the base\'s own NaN in a tensor only converted (--dtype bf16) is written as NaN and warned about, not refused as an overflow', async () => {
    const base = untied();
    base[3] = poison(base[3], 5, NaN); // model.norm.weight, F16
    const adapter = [randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [1, 8], 'F32', rand)];
    const warnings: string[] = [];
    const merged = await merge(await prepare(hfModelFolder(base, UNTIED), [peftFolder({ r: 2, trainable_token_indices: [11] }, adapter)]), 'cpu', { outDtype: 'bf16', onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual(['base/model.safetensors: 1 tensor already holds NaN or Inf in the base and is copied as it is: model.norm.weight (1 value)']);
    const norm = merged.tensors.get('model.norm.weight')!;
    expect(norm.dtype).toBe('BF16');
    expect(Number.isNaN(norm.values[5])).toBe(true);
  });

  it('a saved (resized) embedding holding NaN in a row the trainable tokens do not set is named, as the adapter file at fault', async () => {
    const adapter = [
      poison(randomTensor(`${P}.model.embed_tokens.base_layer.weight`, [22, 8], 'F32', rand), 13 * 8 + 2, NaN),
      randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [1, 8], 'F32', rand),
      randomTensor(`${P}.lm_head.base_layer.weight`, [22, 8], 'F32', rand),
    ];
    const message = await mergeError(await prepare(hfModelFolder(untied(), UNTIED), [peftFolder({ r: 2, trainable_token_indices: [4] }, adapter)]));
    expect(message).toBe('adapter1: tensor "base_model.model.model.embed_tokens.base_layer.weight" (model.embed_tokens.weight saved with the adapter) holds 1 NaN or Inf value (row 13); the adapter file is broken');
  });

  /** The merge error of a PEFT lora_bias adapter on q_proj (r = 2, PEFT's default lora_alpha 8) over an F16 q_proj bias, with its lora_B.bias and saved tensors. */
  async function qProjBiasError(loraBBias: FixtureTensor, saved: FixtureTensor[] = []): Promise<string> {
    const base = [...untied(), randomTensor('model.layers.0.self_attn.q_proj.bias', [8], 'F16', rand)];
    const adapter = [
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_A.weight`, [2, 8], 'F32', rand),
      randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.weight`, [8, 2], 'F32', rand),
      loraBBias, ...saved,
    ];
    return mergeError(await prepare(hfModelFolder(base, UNTIED), [peftFolder({ r: 2, target_modules: ['q_proj'], lora_bias: true }, adapter)]));
  }

  it('a saved base_layer.bias holding NaN under lora_B.bias is named, as the adapter file at fault', async () => {
    const message = await qProjBiasError(randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.bias`, [8], 'F32', rand), [
      poison(randomTensor(`${P}.model.layers.0.self_attn.q_proj.base_layer.bias`, [8], 'F32', rand), 3, NaN),
    ]);
    expect(message).toBe('adapter1: tensor "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias" (model.layers.0.self_attn.q_proj.bias saved with the adapter) holds 1 NaN or Inf value (element 3); the adapter file is broken');
  });

  it('a lora_B.bias that takes the F16 bias past 65504 is refused as an overflow of the merged bias, with the fix', async () => {
    // Finite in the file (F32), but 1e5 · α/r is past F16's largest finite value.
    const message = await qProjBiasError(poison(randomTensor(`${P}.model.layers.0.self_attn.q_proj.lora_B.bias`, [8], 'F32', rand), 6, 1e5));
    expect(message).toBe('base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.bias": the merged bias overflows F16 (largest finite 65504); write with --dtype bf16 or f32, or lower --weight');
  });

  it('a set row that overflows the output dtype is refused with the fix', async () => {
    const adapter = [poison(randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [1, 8], 'F32', rand), 0, 1e6)];
    const message = await mergeError(await prepare(hfModelFolder(untied(), UNTIED), [peftFolder({ r: 2, trainable_token_indices: [7] }, adapter)]), { outDtype: 'f16' });
    expect(message).toMatch(/tensor "model\.embed_tokens\.weight": values of row 7 \(set by trainable tokens\) overflow F16 \(largest finite 65504\) when converted; write with --dtype bf16 or f32$/);
  });

  it('the base\'s own NaN in a row the tokens do not set is copied and warned about', async () => {
    const base = untied();
    base[0] = poison(base[0], 2 * 8 + 1, NaN);
    const adapter = [randomTensor(`${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, [1, 8], 'F32', rand)];
    const warnings: string[] = [];
    const merged = await merge(await prepare(hfModelFolder(base, UNTIED), [peftFolder({ r: 2, trainable_token_indices: [11] }, adapter)]), 'cpu', { onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual(['base/model.safetensors: 1 tensor already holds NaN or Inf in the base and is copied as it is: model.embed_tokens.weight (1 value)']);
    expect(Number.isNaN(merged.tensors.get('model.embed_tokens.weight')!.values[2 * 8 + 1])).toBe(true);
  });
});

// --- the one-call merge() on model folders ------------------------------------------------------

function writeFolder(files: Files): string {
  const dir = dirs.make();
  for (const [path, bytes] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), bytes);
  }
  return dir;
}

describe('merge() in one call on an LLM folder', () => {
  const base = tiedLlama();
  const adapter = [
    randomTensor(`${P}.lm_head.lora_A.weight`, [2, 8], 'F32', rand, 0.5),
    randomTensor(`${P}.lm_head.lora_B.weight`, [20, 2], 'F32', rand, 0.5),
  ];
  // weight 0.5 · α/r (1/2)
  const truth = () => plus(decoded(base).get('model.embed_tokens.weight')!.values, 0.25, product(decoded(adapter).get(`${P}.lm_head.lora_B.weight`)!, decoded(adapter).get(`${P}.lm_head.lora_A.weight`)!));
  const baseFiles = hfModelFolder(base, TIED_CONFIG, { extra: { 'tokenizer.json': '{"base": true}' } });
  const adapterFiles = peftFolder({ r: 2, lora_alpha: 1, target_modules: ['lm_head'] }, adapter, { 'tokenizer.json': '{"adapter": true}' });

  it('Node: folder paths in, a folder out with the head untied and the adapter\'s tokenizer', async () => {
    const out = join(dirs.make(), 'merged');
    await nodeMerge({ base: writeFolder(baseFiles), adapters: [{ source: writeFolder(adapterFiles), weight: 0.5 }], out, backend: 'cpu' });
    const merged = readMergedFolder(new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))])));
    expectValues('lm_head.weight', merged.tensors.get('lm_head.weight')!, truth());
    expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, dtype: 'float16', torch_dtype: 'float16' });
    expect(merged.text('tokenizer.json')).toBe('{"adapter": true}');
  });

  it('browser entry: file sets in, an output target out, config.json rewritten to the written dtype', async () => {
    const output = createBlobOutputTarget();
    await browserMerge({
      base: memoryInputFileSet(baseFiles, 'tiny-llama'), adapters: [{ source: memoryInputFileSet(adapterFiles, 'lora'), weight: 0.5 }],
      out: output, backend: 'cpu', dtype: 'bf16',
    });
    const files = new Map<string, Uint8Array>();
    for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
    const merged = readMergedFolder(files);
    expect(merged.tensors.get('lm_head.weight')!.dtype).toBe('BF16');
    expectValues('lm_head.weight', merged.tensors.get('lm_head.weight')!, truth());
    expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, dtype: 'bfloat16', torch_dtype: 'bfloat16' });
  });
});

// --- GGUF bases ----------------------------------------------------------------------------------

describe('a vision-language adapter on a GGUF base', () => {
  // Qwen2.5-VL's language model as convert_hf_to_gguf writes it (architecture qwen2vl, F32 here so
  // the truth is exact); its vision tower would be a separate mmproj file.
  const shapes: Record<string, [number, number]> = {
    'token_embd.weight': [32, 8], 'blk.0.attn_q.weight': [8, 8], 'blk.0.attn_k.weight': [4, 8], 'blk.0.ffn_down.weight': [8, 12], 'output.weight': [32, 8],
  };
  const values = new Map(Object.entries(shapes).map(([name, [rows, cols]]) => [name, Float64Array.from({ length: rows * cols }, () => Math.fround(rand() - 0.5))]));
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: 'qwen2vl' }],
    ['qwen2vl.block_count', { type: 'u32', value: 1 }],
    ['qwen2vl.attention.head_count', { type: 'u32', value: 2 }],
    ['qwen2vl.attention.head_count_kv', { type: 'u32', value: 1 }],
  ];
  const gguf = buildGguf({
    metadata,
    tensors: [...values].map(([name, v]) => ({ name, type: 'F32', ne: [shapes[name][1], shapes[name][0]], data: new Uint8Array(Float32Array.from(v).buffer) })),
  });
  const base = { 'qwen2.5-vl-3b-F32.gguf': gguf };
  const MODULES: [string, string, number, number][] = [
    [`${LM}.layers.0.self_attn.q_proj`, 'blk.0.attn_q.weight', 8, 8],
    ['model.layers.0.self_attn.k_proj', 'blk.0.attn_k.weight', 4, 8], // the old naming maps too
    [`${LM}.layers.0.mlp.down_proj`, 'blk.0.ffn_down.weight', 8, 12],
  ];
  const lora = (modules: [string, number, number][]) => modules.flatMap(([path, out, inF]) => [
    randomTensor(`${P}.${path}.lora_A.weight`, [2, inF], 'F32', rand, 0.5),
    randomTensor(`${P}.${path}.lora_B.weight`, [out, 2], 'F32', rand, 0.5),
  ]);

  for (const kind of KINDS) {
    it(`its language model lands on the converter's tensor names, on ${kind}`, async () => {
      const adapter = lora(MODULES.map(([path, , out, inF]) => [path, out, inF]));
      const prepared = await prepare(base, [peftFolder({ r: 2, lora_alpha: 4 }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout])).toEqual(MODULES.map(([, key]) => [key, 'hf-to-gguf']));
      const output = createBlobOutputTarget();
      try {
        await mergeModel({ prepared, output, backend: backends[kind]! });
      } finally {
        await prepared.close();
      }
      const [file] = output.files();
      expect(file.path).toBe('qwen2.5-vl-3b-F32.gguf');
      const merged = readGguf(new Uint8Array(await file.blob.arrayBuffer()));
      const a = decoded(adapter);
      for (const [path, key] of MODULES) {
        const want = plus(values.get(key)!, 2, product(a.get(`${P}.${path}.lora_B.weight`)!, a.get(`${P}.${path}.lora_A.weight`)!));
        const got = tensorValues('F32', merged.tensors.find((t) => t.name === key)!.data);
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${key}[${i}]`).toBeLessThanOrEqual(4 * 2 ** -24 * (Math.abs(want[i]) + 1));
      }
      for (const name of ['token_embd.weight', 'output.weight']) {
        expect(tensorValues('F32', merged.tensors.find((t) => t.name === name)!.data)).toEqual(values.get(name));
      }
    });
  }

  it('a config.json beside the GGUF does not bring the safetensors key maps in: the GGUF names decide, the config is copied as it is', async () => {
    const config = JSON.stringify(QWEN_VL_CONFIG);
    const prepared = await prepare({ ...base, 'config.json': config }, [peftFolder({ r: 2 }, lora(MODULES.map(([path, , out, inF]) => [path, out, inF])))]);
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.terms[0].layout)).toEqual(['hf-to-gguf', 'hf-to-gguf', 'hf-to-gguf']);
    expect(prepared.modelFolder.config).toBeUndefined();
    expect(prepared.base.otherFiles).toEqual(['config.json']);
  });

  it('its vision tower, in either naming, is refused saying where llama.cpp keeps it', async () => {
    const adapter = lora([[`${LM}.layers.0.self_attn.q_proj`, 8, 8], ['model.visual.blocks.0.attn.qkv', 24, 8], ['visual.merger.mlp.0', 8, 32]]);
    const prepared = await prepare(base, [peftFolder({ r: 2 }, adapter)]);
    await prepared.close();
    const why = 'names a vision-language model\'s vision side, which llama.cpp converts to a separate mmproj GGUF, not into this qwen2vl base';
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      `adapter1: module "model.visual.blocks.0.attn.qkv": ${why}`,
      `adapter1: module "visual.merger.mlp.0": ${why}`,
    ]);
  });

  it('tensors the adapter saves whole (trainable tokens, a resized embedding) are refused by name', async () => {
    const adapter = [
      randomTensor(`${P}.${LM}.embed_tokens.token_adapter.trainable_tokens_delta`, [1, 8], 'F32', rand),
      randomTensor(`${P}.lm_head.base_layer.weight`, [34, 8], 'F32', rand),
    ];
    const prepared = await prepare(base, [peftFolder({ r: 2, trainable_token_indices: [3] }, adapter)]);
    await prepared.close();
    const why = 'of the tensors an adapter saves whole, a GGUF base takes modules_to_save copies of tensors convert_hf_to_gguf maps whole (lm_head, embed_tokens, a projection); others (base_layer weights, trainable tokens, norms) are not merged into it: merge into the safetensors model and convert that';
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      `adapter1: module "lm_head.weight": saved tensor base_model.model.lm_head.base_layer.weight: ${why}`,
      `adapter1: module "${LM}.embed_tokens.weight": trainable tokens base_model.model.${LM}.embed_tokens.token_adapter.trainable_tokens_delta: ${why}`,
    ]);
  });
});
