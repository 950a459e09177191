/**
 * LLM checkpoints as they are on disk, merged file to file: each folder carries its architecture's
 * real key names and config fields (sizes scaled down), each adapter PEFT's real key names
 * (save_and_load.py, tuners/lora, tuners/trainable_tokens), and each merged tensor is compared
 * with float64 truth written out below, on the CPU and on WebGPU, together with the output's
 * config.json, index and metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorLines, runCli } from './helpers/cli.js';
import { roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder, prepareFolders as prepare } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(1212);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));


async function merge(prepared: PreparedMerge, kind: 'cpu' | 'webgpu', outDtype?: 'F32' | 'F16' | 'BF16'): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend: backends[kind]!, ...(outDtype ? { outDtype } : {}) });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}

/** W + Σ s·ΔW for ΔW given whole (out × in, row-major), as doubles. */
function plus(w: DecodedTensor, ...terms: [scale: number, delta: Float64Array][]): Float64Array {
  const out = w.values.slice();
  for (const [s, d] of terms) for (let i = 0; i < out.length; i++) out[i] += s * d[i];
  return out;
}

function transpose(values: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** Every tensor not in `changed` is written byte for byte as the base holds it. */
function expectUnchanged(merged: MergedFolder, base: Map<string, DecodedTensor>, changed: string[]): void {
  for (const [key, t] of base) {
    if (changed.includes(key)) continue;
    expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(t.bytes);
  }
}

/** The index lists every written tensor in its shard, sorted by name as transformers writes it, and total_size counts their bytes. */
function expectIndex(merged: MergedFolder): void {
  const index = merged.json('model.safetensors.index.json');
  expect(index.metadata.total_size).toBe(merged.tensorBytes);
  const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  expect(Object.keys(index.weight_map)).toEqual([...merged.tensors.keys()].sort(byCodePoint));
  for (const [name, shard] of Object.entries(index.weight_map)) expect(merged.shardOf.get(name), name).toBe(shard);
  for (const [, metadata] of merged.metadata) expect(metadata.format).toBe('pt');
}

const KINDS = ['cpu', 'webgpu'] as const;

// --- vision-language models: two namings of one module tree ------------------------------------

/** Qwen2.5-VL keys as checkpoints saved before transformers' VLM refactor name them. */
function qwenVlBase(): FixtureTensor[] {
  return [
    randomTensor('model.embed_tokens.weight', [32, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.bias', [8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.k_proj.weight', [4, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.k_proj.bias', [4], 'BF16', rand),
    randomTensor('model.layers.0.mlp.down_proj.weight', [8, 12], 'BF16', rand),
    randomTensor('model.norm.weight', [8], 'BF16', rand),
    randomTensor('visual.blocks.0.attn.qkv.weight', [12, 4], 'BF16', rand),
    randomTensor('visual.blocks.0.attn.proj.weight', [4, 4], 'BF16', rand),
    randomTensor('visual.merger.mlp.0.weight', [8, 16], 'BF16', rand),
    randomTensor('lm_head.weight', [32, 8], 'BF16', rand),
  ];
}
const QWEN_VL_CONFIG = {
  architectures: ['Qwen2_5_VLForConditionalGeneration'], model_type: 'qwen2_5_vl', torch_dtype: 'bfloat16',
  hidden_size: 8, vocab_size: 32, tie_word_embeddings: false, vision_config: { depth: 1, hidden_size: 4 },
};
/** transformers' Qwen2-VL conversion, written out: `visual` → `model.visual`, `model.` → `model.language_model.`. */
const qwenNew = (key: string) => key.startsWith('visual.') ? `model.${key}` : key.startsWith('model.') ? `model.language_model.${key.slice(6)}` : key;

/** LoRA modules on the language model and the vision tower: module path (new naming), out, in, r, α. */
const QWEN_MODULES: [string, number, number, number, number][] = [
  ['model.language_model.layers.0.self_attn.q_proj', 8, 8, 2, 4],
  ['model.language_model.layers.0.self_attn.k_proj', 4, 8, 2, 4],
  ['model.language_model.layers.0.mlp.down_proj', 8, 12, 3, 3],
  ['model.visual.blocks.0.attn.qkv', 12, 4, 1, 2],
];

function loraTensors(modules: [string, number, number, number, number][], rename: (path: string) => string = (p) => p): FixtureTensor[] {
  return modules.flatMap(([path, out, inF, r]) => [
    randomTensor(`base_model.model.${rename(path)}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${rename(path)}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ]);
}

describe('vision-language models in either naming', () => {
  const baseOld = qwenVlBase();
  const baseNew = baseOld.map((t) => ({ ...t, name: qwenNew(t.name) }));
  const adapterNew = loraTensors(QWEN_MODULES);
  /** transformers' conversion run backwards, as adapters saved before the refactor name modules. */
  const qwenOld = (path: string) => path.replace('model.language_model.', 'model.').replace(/^model\.visual\./, 'visual.');
  const adapterOld = loraTensors(QWEN_MODULES, qwenOld);
  const config = { r: 2, lora_alpha: 4, rank_pattern: { down_proj: 3, qkv: 1 }, alpha_pattern: { down_proj: 3, qkv: 2 } };

  for (const [title, base, adapter, naming] of [
    ['an old-naming checkpoint with a new-naming adapter', baseOld, adapterNew, (p: string) => p],
    ['a new-naming checkpoint with an old-naming adapter', baseNew, adapterOld, qwenOld],
  ] as const) {
    for (const kind of KINDS) {
      it(`Qwen2.5-VL: merges ${title} exactly on ${kind}`, async () => {
        const prepared = await prepare(hfModelFolder(base, QWEN_VL_CONFIG, { shards: 2 }), [peftFolder(config, adapter)]);
        expect(prepared.plan.problems).toEqual([]);
        const merged = await merge(prepared, kind);
        const b = decoded(base);
        const a = decoded(adapter);
        const changed: string[] = [];
        for (const [path, , , r, alpha] of QWEN_MODULES) {
          const key = base === baseOld ? `${qwenOld(path)}.weight` : `${path}.weight`;
          const name = `base_model.model.${naming(path)}`;
          changed.push(key);
          expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, [alpha / r, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)]));
        }
        expectUnchanged(merged, b, changed);
        expectIndex(merged);
        const out = merged.json('config.json');
        expect([out.dtype, out.torch_dtype, out.architectures, out.vision_config]).toEqual(['bfloat16', 'bfloat16', QWEN_VL_CONFIG.architectures, QWEN_VL_CONFIG.vision_config]);
        expect(merged.text('generation_config.json')).toContain('eos_token_id');
      });
    }
  }

  // LLaVA before the refactor: the language model under language_model.model., its head under
  // language_model.lm_head, and a CLIP vision tower with the very same layer suffixes.
  const llava: FixtureTensor[] = [
    randomTensor('language_model.model.embed_tokens.weight', [32, 8], 'F16', rand),
    randomTensor('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
    randomTensor('language_model.model.layers.0.self_attn.v_proj.weight', [8, 8], 'F16', rand),
    randomTensor('language_model.lm_head.weight', [32, 8], 'F16', rand),
    randomTensor('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
    randomTensor('vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight', [8, 8], 'F16', rand),
    randomTensor('multi_modal_projector.linear_1.weight', [8, 8], 'F16', rand),
  ];
  const LLAVA_CONFIG = {
    architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', torch_dtype: 'float16',
    text_config: { model_type: 'llama', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'clip_vision_model' },
  };
  // New-naming module paths → the old checkpoint keys transformers converts from.
  const LLAVA_MODULES: [string, string][] = [
    ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight'],
    ['model.vision_tower.vision_model.encoder.layers.0.self_attn.v_proj', 'vision_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight'],
    ['model.multi_modal_projector.linear_1', 'multi_modal_projector.linear_1.weight'],
    ['lm_head', 'language_model.lm_head.weight'],
  ];

  for (const kind of KINDS) {
    it(`LLaVA: a new-naming adapter lands on an old-naming checkpoint, head included, on ${kind}`, async () => {
      const adapter = LLAVA_MODULES.flatMap(([path], i) => [
        randomTensor(`base_model.model.${path}.lora_A.weight`, [2, 8], 'BF16', rand, 0.5),
        randomTensor(`base_model.model.${path}.lora_B.weight`, [i === 3 ? 32 : 8, 2], 'BF16', rand, 0.5),
      ]);
      const prepared = await prepare(hfModelFolder(llava, LLAVA_CONFIG), [peftFolder({ r: 2, lora_alpha: 2 }, adapter)], [0.5]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout])).toEqual(
        llava.filter((t) => LLAVA_MODULES.some(([, key]) => key === t.name)).map((t) => [t.name, 'vlm-checkpoint']),
      );
      const merged = await merge(prepared, kind);
      const b = decoded(llava);
      const a = decoded(adapter);
      for (const [path, key] of LLAVA_MODULES) {
        const name = `base_model.model.${path}`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, [0.5, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)]));
      }
      expectUnchanged(merged, b, LLAVA_MODULES.map(([, key]) => key));
      const out = merged.json('config.json');
      expect([out.dtype, out.torch_dtype, out.text_config]).toEqual(['float16', 'float16', LLAVA_CONFIG.text_config]);
    });
  }

  it('LLaVA: an adapter path that fits the language model and the vision tower is an error naming both', async () => {
    const adapter = [
      randomTensor('base_model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 8], 'F32', rand),
      randomTensor('base_model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 2], 'F32', rand),
    ];
    const prepared = await prepare(hfModelFolder(llava, LLAVA_CONFIG), [peftFolder({ r: 2 }, adapter)]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => [p.code, p.message])).toEqual([[
      'AMBIGUOUS_MODULE',
      'adapter1: module "layers.0.self_attn.q_proj": matches 2 base tensors (language_model.model.layers.0.self_attn.q_proj.weight, ' +
        'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight)',
    ]]);
  });
});

// --- PEFT's saved base tensors: biases and embedding layers --------------------------------------

describe('tensors PEFT saves with the adapter', () => {
  // Qwen2: q, k and v carry biases.
  const qwen2: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [24, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.bias', [8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.k_proj.weight', [4, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.k_proj.bias', [4], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.v_proj.weight', [4, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.v_proj.bias', [4], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.o_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('model.norm.weight', [8], 'BF16', rand),
    randomTensor('lm_head.weight', [24, 8], 'BF16', rand),
  ];
  const QWEN2_CONFIG = { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', torch_dtype: 'bfloat16', vocab_size: 24, tie_word_embeddings: false };

  for (const kind of KINDS) {
    it(`Qwen2 bias="all": saved biases replace the base's, LoRA terms add to the weights, on ${kind}`, async () => {
      const p = 'base_model.model.model.layers.0.self_attn';
      const adapter = [
        ...loraTensors([['model.layers.0.self_attn.q_proj', 8, 8, 2, 2], ['model.layers.0.self_attn.k_proj', 4, 8, 2, 2]]),
        // bias="lora_only" and "all" save a wrapped layer's bias as base_layer.bias; "all" also
        // saves unwrapped layers' biases under their own names.
        randomTensor(`${p}.q_proj.base_layer.bias`, [8], 'F32', rand),
        randomTensor(`${p}.k_proj.base_layer.bias`, [4], 'F32', rand),
        randomTensor(`${p}.v_proj.bias`, [4], 'F32', rand),
      ];
      const prepared = await prepare(hfModelFolder(qwen2, QWEN2_CONFIG), [peftFolder({ r: 2, lora_alpha: 2, bias: 'all' }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const b = decoded(qwen2);
      const a = decoded(adapter);
      for (const m of ['q_proj', 'k_proj']) {
        const key = `model.layers.0.self_attn.${m}.weight`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, [1, product(a.get(`${p}.${m}.lora_B.weight`)!, a.get(`${p}.${m}.lora_A.weight`)!)]));
      }
      // A set, not an add: the saved f32 bias rounded once to the base's bf16.
      for (const [key, saved] of [['q_proj.bias', 'q_proj.base_layer.bias'], ['k_proj.bias', 'k_proj.base_layer.bias'], ['v_proj.bias', 'v_proj.bias']]) {
        const got = merged.tensors.get(`model.layers.0.self_attn.${key}`)!;
        expect(got.dtype).toBe('BF16');
        expect([...got.values]).toEqual([...a.get(`${p}.${saved}`)!.values].map((x) => roundForDType(x, 'BF16')));
      }
      expectUnchanged(merged, b, ['q_proj.weight', 'k_proj.weight', 'q_proj.bias', 'k_proj.bias', 'v_proj.bias'].map((k) => `model.layers.0.self_attn.${k}`));
    });
  }

  // A Llama-style model whose vocabulary grew from 24 to 27 tokens while training: PEFT saves the
  // resized embedding and head (save_embedding_layers) as base_layer weights, with LoRA on both.
  const llama: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [24, 8], 'F16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'F16', rand),
    randomTensor('model.norm.weight', [8], 'F16', rand),
    randomTensor('lm_head.weight', [24, 8], 'F16', rand),
  ];
  const LLAMA_CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float16', vocab_size: 24, tie_word_embeddings: false };
  const baseTokenizer = {
    'tokenizer.json': JSON.stringify({ added_tokens: [] }), 'tokenizer_config.json': '{"model_max_length": 64}',
    'tokenizer.model': new Uint8Array([1, 2, 3]), 'special_tokens_map.json': '{"bos_token": "<s>"}',
  };

  for (const kind of KINDS) {
    it(`a resized vocabulary: saved embedding and head, LoRA on both, config and tokenizer follow, on ${kind}`, async () => {
      const p = 'base_model.model';
      const adapter = [
        randomTensor(`${p}.model.embed_tokens.base_layer.weight`, [27, 8], 'F32', rand),
        randomTensor(`${p}.model.embed_tokens.lora_embedding_A`, [2, 27], 'F32', rand, 0.5),
        randomTensor(`${p}.model.embed_tokens.lora_embedding_B`, [8, 2], 'F32', rand, 0.5),
        randomTensor(`${p}.lm_head.base_layer.weight`, [27, 8], 'F32', rand),
        randomTensor(`${p}.lm_head.lora_A.weight`, [2, 8], 'F32', rand, 0.5),
        randomTensor(`${p}.lm_head.lora_B.weight`, [27, 2], 'F32', rand, 0.5),
        ...loraTensors([['model.layers.0.self_attn.q_proj', 8, 8, 2, 4]]),
      ];
      const addedTokens = JSON.stringify({ added_tokens: [{ id: 24, content: '<tool>' }, { id: 25, content: '</tool>' }, { id: 26, content: '<pad>' }] });
      const prepared = await prepare(hfModelFolder(llama, LLAMA_CONFIG, { shards: 2, extra: baseTokenizer }), [peftFolder(
        { r: 2, lora_alpha: 4, target_modules: ['embed_tokens', 'lm_head', 'q_proj'] }, adapter,
        { 'tokenizer.json': addedTokens, 'tokenizer_config.json': '{"model_max_length": 64, "added": 3}' },
      )]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual(['the vocabulary grows from 24 to 27 tokens; config.json vocab_size follows', 'tokenizer files come from adapter1 (tokenizer.json, tokenizer_config.json)']);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const b = decoded(llama);
      // Embedding: ΔW = (B·A)ᵀ, (27, 8), added to the saved (27, 8) weight.
      const embedDelta = transpose(product(a.get(`${p}.model.embed_tokens.lora_embedding_B`)!, a.get(`${p}.model.embed_tokens.lora_embedding_A`)!), 8, 27);
      const embed = merged.tensors.get('model.embed_tokens.weight')!;
      expect([embed.dtype, embed.shape]).toEqual(['F16', [27, 8]]);
      expectValues('embed_tokens', embed, plus(a.get(`${p}.model.embed_tokens.base_layer.weight`)!, [2, embedDelta]));
      const head = merged.tensors.get('lm_head.weight')!;
      expect(head.shape).toEqual([27, 8]);
      expectValues('lm_head', head, plus(a.get(`${p}.lm_head.base_layer.weight`)!, [2, product(a.get(`${p}.lm_head.lora_B.weight`)!, a.get(`${p}.lm_head.lora_A.weight`)!)]));
      expectUnchanged(merged, b, ['model.embed_tokens.weight', 'lm_head.weight', 'model.layers.0.self_attn.q_proj.weight']);
      expectIndex(merged);
      const out = merged.json('config.json');
      expect([out.vocab_size, out.dtype, out.torch_dtype, out.tie_word_embeddings]).toEqual([27, 'float16', 'float16', false]);
      expect(merged.text('tokenizer.json')).toBe(addedTokens);
      expect(merged.text('tokenizer_config.json')).toContain('"added": 3');
      expect(merged.files.get('tokenizer.model')).toEqual(new Uint8Array([1, 2, 3]));
      expect(merged.text('special_tokens_map.json')).toBe(baseTokenizer['special_tokens_map.json']);
    });
  }

  it('refuses a resized embedding without the resized head the model needs', async () => {
    const adapter = [
      randomTensor('base_model.model.model.embed_tokens.base_layer.weight', [27, 8], 'F32', rand),
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 27], 'F32', rand),
      randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand),
    ];
    const prepared = await prepare(hfModelFolder(llama, LLAMA_CONFIG), [peftFolder({ r: 2 }, adapter)]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: resizes the vocabulary (model.embed_tokens.weight has 27 rows, lm_head.weight 24); the adapter must also hold the resized lm_head.weight (PEFT save_embedding_layers)',
    ]);
  });
});

// --- trainable tokens and tied embeddings --------------------------------------------------------

describe('trainable tokens and tied embeddings', () => {
  const untied: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [40, 8], 'BF16', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
    randomTensor('lm_head.weight', [40, 8], 'BF16', rand),
  ];
  const tied = untied.filter((t) => t.name !== 'lm_head.weight');
  const config = (tie: boolean) => ({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', vocab_size: 40, tie_word_embeddings: tie });
  const TOKENS = [3, 39, 0, 17];

  for (const kind of KINDS) {
    it(`trainable tokens set their rows of the embedding (LoRA trainable_token_indices), on ${kind}`, async () => {
      const adapter = [
        ...loraTensors([['model.layers.0.self_attn.q_proj', 8, 8, 2, 2]]),
        randomTensor('base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta', [4, 8], 'F32', rand),
      ];
      const prepared = await prepare(hfModelFolder(untied, config(false)), [peftFolder({ r: 2, lora_alpha: 2, trainable_token_indices: TOKENS }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const b = decoded(untied);
      const want = b.get('model.embed_tokens.weight')!.values.slice();
      const delta = a.get('base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta')!.values;
      TOKENS.forEach((row, i) => want.set(delta.subarray(i * 8, (i + 1) * 8).map((x) => roundForDType(x, 'BF16')), row * 8));
      expect([...merged.tensors.get('model.embed_tokens.weight')!.values]).toEqual([...want]);
      const q = 'model.layers.0.self_attn.q_proj';
      expectValues(q, merged.tensors.get(`${q}.weight`)!, plus(b.get(`${q}.weight`)!, [1, product(a.get(`base_model.model.${q}.lora_B.weight`)!, a.get(`base_model.model.${q}.lora_A.weight`)!)]));
      expect(merged.tensors.get('lm_head.weight')!.bytes).toEqual(b.get('lm_head.weight')!.bytes);
    });

    it(`a tied model keeps its tie when trainable tokens set rows of the shared weight (TRAINABLE_TOKENS), on ${kind}`, async () => {
      const adapter = [randomTensor('base_model.model.model.embed_tokens.trainable_tokens_delta', [4, 8], 'BF16', rand)];
      const prepared = await prepare(hfModelFolder(tied, config(true)), [{
        'adapter_config.json': JSON.stringify({ peft_type: 'TRAINABLE_TOKENS', token_indices: TOKENS, target_modules: ['embed_tokens'] }),
        'adapter_model.safetensors': (await import('./helpers/fixtures.js')).buildSafetensors(adapter),
      }]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual(['the output head stays tied to model.embed_tokens.weight: trainable tokens set rows of the shared weight, as PEFT applies them to both']);
      const merged = await merge(prepared, kind);
      expect([...merged.tensors.keys()].sort()).toEqual(tied.map((t) => t.name).sort());
      const want = decoded(tied).get('model.embed_tokens.weight')!.values.slice();
      const delta = decoded(adapter).get(adapter[0].name)!.values;
      TOKENS.forEach((row, i) => want.set(delta.subarray(i * 8, (i + 1) * 8), row * 8));
      expect([...merged.tensors.get('model.embed_tokens.weight')!.values]).toEqual([...want]);
      expect(merged.json('config.json').tie_word_embeddings).toBe(true);
    });

    it(`ensure_weight_tying: the embedding's LoRA goes into the shared weight once, the mirrored head factors are not added again, on ${kind}`, async () => {
      const A = randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 40], 'F32', rand, 0.5);
      const B = randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand, 0.5);
      // PEFT ties the head's LoRA to the embedding's: lora_A = Bᵀ, lora_B = Aᵀ (saved as copies).
      const d = decoded([A, B]);
      const headA: FixtureTensor = { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [2, 8], data: transpose(d.get(B.name)!.values, 8, 2) };
      const headB: FixtureTensor = { name: 'base_model.model.lm_head.lora_B.weight', dtype: 'F32', shape: [40, 2], data: transpose(d.get(A.name)!.values, 2, 40) };
      const prepared = await prepare(hfModelFolder(tied, config(true)), [peftFolder({ r: 2, lora_alpha: 2, ensure_weight_tying: true, target_modules: ['embed_tokens'] }, [A, B, headA, headB])]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual([
        "the output head stays tied to model.embed_tokens.weight: the adapter was trained with ensure_weight_tying, so its changes apply to both, once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)",
      ]);
      const merged = await merge(prepared, kind);
      expect([...merged.tensors.keys()].sort()).toEqual(tied.map((t) => t.name).sort());
      const embedDelta = transpose(product(d.get(B.name)!, d.get(A.name)!), 8, 40);
      expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(decoded(tied).get('model.embed_tokens.weight')!, [1, embedDelta]));
      expect(merged.json('config.json').tie_word_embeddings).toBe(true);
    });

    it(`a tied model whose vocabulary grew: the head starts from the saved embedding, the embedding gains its LoRA, on ${kind}`, async () => {
      // save_embedding_layers on a tied model saves the resized embedding; the head, tied to it
      // while training, is not LoRA-wrapped and is not saved.
      const adapter = [
        randomTensor('base_model.model.model.embed_tokens.base_layer.weight', [43, 8], 'F32', rand),
        randomTensor('base_model.model.model.embed_tokens.lora_embedding_A', [2, 43], 'F32', rand, 0.5),
        randomTensor('base_model.model.model.embed_tokens.lora_embedding_B', [8, 2], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(hfModelFolder(tied, config(true)), [peftFolder({ r: 2, lora_alpha: 2, target_modules: ['embed_tokens'] }, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual([
        'lm_head.weight is written as its own tensor and tie_word_embeddings set to false: adapter1 brings a LoRA on model.embed_tokens, which changes the input embedding only',
        'the vocabulary grows from 40 to 43 tokens; config.json vocab_size follows',
      ]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const saved = a.get(adapter[0].name)!;
      expect([...merged.tensors.get('lm_head.weight')!.values]).toEqual([...saved.values].map((x) => roundForDType(x, 'BF16')));
      const delta = transpose(product(a.get(adapter[2].name)!, a.get(adapter[1].name)!), 8, 43);
      expectValues('embed_tokens', merged.tensors.get('model.embed_tokens.weight')!, plus(saved, [1, delta]));
      expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, vocab_size: 43 });
    });

    it(`a tied Llama with a LoRA on lm_head gets its own head and tie_word_embeddings false, on ${kind}`, async () => {
      const adapter = loraTensors([['lm_head', 40, 8, 2, 4], ['model.layers.0.self_attn.q_proj', 8, 8, 2, 4]]);
      const prepared = await prepare(hfModelFolder(tied, config(true), { shards: 2 }), [peftFolder({ r: 2, lora_alpha: 4 }, adapter)], [0.5]);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.notes).toEqual([
        'lm_head.weight is written as its own tensor and tie_word_embeddings set to false: adapter1 brings a LoRA on lm_head, which changes the output head only',
      ]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const b = decoded(tied);
      // The head the model computed logits with while training: the shared weight plus the LoRA.
      const head = merged.tensors.get('lm_head.weight')!;
      expect([head.dtype, head.shape]).toEqual(['BF16', [40, 8]]);
      expectValues('lm_head', head, plus(b.get('model.embed_tokens.weight')!, [1, product(a.get('base_model.model.lm_head.lora_B.weight')!, a.get('base_model.model.lm_head.lora_A.weight')!)]));
      expect(merged.tensors.get('model.embed_tokens.weight')!.bytes).toEqual(b.get('model.embed_tokens.weight')!.bytes);
      expect(merged.shardOf.get('lm_head.weight')).toBe(merged.shardOf.get('model.embed_tokens.weight'));
      expectIndex(merged);
      expect(merged.json('config.json').tie_word_embeddings).toBe(false);
    });
  }
});

// --- fused 3-D expert tensors (target_parameters) ------------------------------------------------

describe('LoRA on fused expert tensors', () => {
  const E = 3;
  // gpt-oss keeps experts (E, in, out): gate_up_proj (E, hidden, 2·intermediate), down_proj
  // (E, intermediate, hidden); with intermediate = hidden, down_proj is square per expert.
  const gptOss: FixtureTensor[] = [
    randomTensor('model.layers.0.mlp.router.weight', [E, 8], 'BF16', rand),
    randomTensor('model.layers.0.mlp.experts.gate_up_proj', [E, 8, 16], 'BF16', rand),
    randomTensor('model.layers.0.mlp.experts.gate_up_proj_bias', [E, 16], 'BF16', rand),
    randomTensor('model.layers.0.mlp.experts.down_proj', [E, 8, 8], 'BF16', rand),
    randomTensor('model.layers.0.mlp.experts.down_proj_bias', [E, 8], 'BF16', rand),
  ];
  const GPT_OSS_CONFIG = { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', torch_dtype: 'bfloat16', num_local_experts: E };
  const r = 2;
  const experts = 'base_model.model.model.layers.0.mlp.experts';

  /**
   * PEFT's delta for a fused parameter, as its einsum defines it: A (r·E, i) reshaped (E, r, i),
   * B (o, r·E) reshaped (o, r, E); `e i o` gives W[e][i][o] += s·Σ_k B[o][k][e]·A[e][k][i],
   * `e o i` gives W[e][o][i] += the same sum.
   */
  function expertDelta(a: DecodedTensor, b: DecodedTensor, shape: number[], form: 'e i o' | 'e o i'): Float64Array {
    const [, d1, d2] = shape;
    const out = new Float64Array(E * d1 * d2);
    const inF = a.shape[1];
    const outF = b.shape[0];
    for (let e = 0; e < E; e++) {
      for (let o = 0; o < outF; o++) {
        for (let i = 0; i < inF; i++) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += b.values[o * r * E + k * E + e] * a.values[(e * r + k) * inF + i];
          out[form === 'e i o' ? (e * d1 + i) * d2 + o : (e * d1 + o) * d2 + i] = sum;
        }
      }
    }
    return out;
  }

  for (const kind of KINDS) {
    it(`gpt-oss: gate_up_proj and down_proj wrapped on one module (PEFT 0.17: e i o), on ${kind}`, async () => {
      // The module registers gate_up_proj first, so its wrapper is the inner one (base_layer).
      const adapter = [
        randomTensor(`${experts}.base_layer.lora_A.weight`, [r * E, 8], 'F32', rand, 0.5),
        randomTensor(`${experts}.base_layer.lora_B.weight`, [16, r * E], 'F32', rand, 0.5),
        randomTensor(`${experts}.lora_A.weight`, [r * E, 8], 'F32', rand, 0.5),
        randomTensor(`${experts}.lora_B.weight`, [8, r * E], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(hfModelFolder(gptOss, GPT_OSS_CONFIG), [peftFolder(
        { r, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'], peft_version: '0.17.1' }, adapter,
      )]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const b = decoded(gptOss);
      for (const [param, wrapper] of [['gate_up_proj', `${experts}.base_layer`], ['down_proj', experts]]) {
        const key = `model.layers.0.mlp.experts.${param}`;
        const shape = b.get(key)!.shape;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, [2, expertDelta(a.get(`${wrapper}.lora_A.weight`)!, a.get(`${wrapper}.lora_B.weight`)!, shape, 'e i o')]));
      }
      expectUnchanged(merged, b, ['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.0.mlp.experts.down_proj']);
    });

    it(`(E, out, in) experts with PEFT 0.20 (e o i), on ${kind}`, async () => {
      const base = [randomTensor('model.layers.1.mlp.experts.gate_up_proj', [E, 12, 8], 'F16', rand)];
      const adapter = [
        randomTensor('base_model.model.model.layers.1.mlp.experts.lora_A.weight', [r * E, 8], 'F32', rand, 0.5),
        randomTensor('base_model.model.model.layers.1.mlp.experts.lora_B.weight', [12, r * E], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(hfModelFolder(base, { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'float16' }), [peftFolder(
        { r, lora_alpha: 2, target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' }, adapter,
      )]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const key = 'model.layers.1.mlp.experts.gate_up_proj';
      expectValues(key, merged.tensors.get(key)!, plus(decoded(base).get(key)!, [1, expertDelta(a.get(adapter[0].name)!, a.get(adapter[1].name)!, [E, 12, 8], 'e o i')]));
    });
  }

  it('a stack of one expert: lora_A (r, in) and lora_B (out, r), as ParamWrapper saves them for E = 1, merge as W[0] += s·B·A (PEFT 0.20: e o i)', async () => {
    const key = 'model.layers.0.mlp.experts.gate_up_proj';
    const base = [randomTensor(key, [1, 12, 8], 'BF16', rand)];
    const adapter = [
      randomTensor('base_model.model.model.layers.0.mlp.experts.lora_A.weight', [r, 8], 'F32', rand, 0.5),
      randomTensor('base_model.model.model.layers.0.mlp.experts.lora_B.weight', [12, r], 'F32', rand, 0.5),
    ];
    const prepared = await prepare(hfModelFolder(base, { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'bfloat16' }), [peftFolder(
      { r, lora_alpha: 2, target_parameters: ['experts.gate_up_proj'], peft_version: '0.20.0' }, adapter,
    )]);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared, 'cpu');
    const a = decoded(adapter);
    const A = a.get(adapter[0].name)!.values;
    const B = a.get(adapter[1].name)!.values;
    const delta = new Float64Array(12 * 8);
    for (let o = 0; o < 12; o++) for (let i = 0; i < 8; i++) for (let k = 0; k < r; k++) delta[o * 8 + i] += B[o * r + k] * A[k * 8 + i];
    expectValues(key, merged.tensors.get(key)!, plus(decoded(base).get(key)!, [1, delta]));
  });

  it('a square expert tensor without peft_version is an error naming both layouts', async () => {
    const adapter = [
      randomTensor(`${experts}.lora_A.weight`, [r * E, 8], 'F32', rand),
      randomTensor(`${experts}.lora_B.weight`, [8, r * E], 'F32', rand),
    ];
    const prepared = await prepare(hfModelFolder(gptOss, GPT_OSS_CONFIG), [peftFolder({ r, target_parameters: ['mlp.experts.down_proj'] }, adapter)]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => [p.code, p.message])).toEqual([[
      'AMBIGUOUS_MODULE',
      'adapter1: module "model.layers.0.mlp.experts.down_proj": on model.layers.0.mlp.experts.down_proj: the base tensor (3, 8, 8) is square per expert, ' +
        'so its factors fit both W[e] += B_e·A_e and W[e] += (B_e·A_e)ᵀ; PEFT chose by its version, which the adapter_config.json does not record (peft_version; PEFT 0.17 wrote none and used (B_e·A_e)ᵀ): ' +
        'set peft_version in adapter_config.json to the PEFT release whose layout the one that trained it had',
    ]]);
  });
});

describe('LoRA on a 2-D parameter (target_parameters)', () => {
  // openai-community/gpt2's names; its attention and MLP are transformers' Conv1D, stored (in, out).
  const gpt2: FixtureTensor[] = [
    randomTensor('wte.weight', [16, 8], 'BF16', rand), randomTensor('h.0.attn.c_attn.weight', [8, 24], 'BF16', rand),
    randomTensor('h.0.mlp.c_fc.weight', [8, 32], 'BF16', rand), randomTensor('h.0.mlp.c_fc.bias', [32], 'BF16', rand),
    randomTensor('ln_f.weight', [8], 'BF16', rand),
  ];
  const GPT2_CONFIG = { architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 8, n_head: 2, n_layer: 1, vocab_size: 16, torch_dtype: 'bfloat16' };
  const config = { r: 2, lora_alpha: 4, target_modules: [], target_parameters: ['mlp.c_fc.weight'], lora_dropout: 0, peft_version: '0.17.1' };
  const m = 'base_model.model.transformer.h.0.mlp.c_fc';

  for (const kind of KINDS) {
    it(`on a GPT-2 Conv1D weight: PEFT's ParamWrapper takes any 2-D parameter as (out, in), so B·A is added as stored, on ${kind}`, async () => {
      // tuners/lora/layer.py ParamWrapper: a 2-D parameter gives in_features = shape[1], out_features =
      // shape[0], and get_delta_weight is Linear's (fan_in_fan_out must be false), added to the parameter
      // as it is; dispatch_default builds it before any Conv1D rule, so the layer's (in, out) storage
      // plays no part. Here that is ΔW (8, 32) on c_fc.weight (8, 32), scale 4 / 2.
      const adapter = [randomTensor(`${m}.lora_A.weight`, [2, 32], 'F32', rand, 0.5), randomTensor(`${m}.lora_B.weight`, [8, 2], 'F32', rand, 0.5)];
      const prepared = await prepare(hfModelFolder(gpt2, GPT2_CONFIG), [peftFolder(config, adapter)]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const a = decoded(adapter);
      const b = decoded(gpt2);
      const key = 'h.0.mlp.c_fc.weight';
      expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, [2, product(a.get(`${m}.lora_B.weight`)!, a.get(`${m}.lora_A.weight`)!)]));
      expectUnchanged(merged, b, [key]);
    });
  }

  it('factors laid as (in, out) for the Conv1D do not fit the parameter ParamWrapper sees, and are refused', async () => {
    const adapter = [randomTensor(`${m}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${m}.lora_B.weight`, [32, 2], 'F32', rand)];
    const prepared = await prepare(hfModelFolder(gpt2, GPT2_CONFIG), [peftFolder(config, adapter)]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "transformer.h.0.mlp.c_fc.weight": ΔW (32, 8) does not fit base h.0.mlp.c_fc.weight (8, 32): ΔW has 32 rows (outputs), the base 8',
    ]);
  });
});

// --- the command line ----------------------------------------------------------------------------

describe('the command line on an LLM folder', () => {
  const temp = tempDirs();
  afterAll(temp.removeAll);

  it('--dry-run says the head will be untied; the merge writes it and the config', async () => {
    const base = [
      randomTensor('model.embed_tokens.weight', [40, 8], 'BF16', rand),
      randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
      randomTensor('model.norm.weight', [8], 'BF16', rand),
    ];
    const baseDir = temp.make(hfModelFolder(base, { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', tie_word_embeddings: true }, {
      extra: { 'tokenizer.json': '{}' },
    }));
    const adapterDir = temp.make(peftFolder({ r: 2, lora_alpha: 2, target_modules: ['lm_head'] }, loraTensors([['lm_head', 40, 8, 2, 2]])));
    const dry = await runCli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', join(baseDir, '..', 'never'), '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stderr).toContain('note: lm_head.weight is written as its own tensor and tie_word_embeddings set to false');
    expect(dry.stdout).toContain('lm_head.weight [40×8] out-in ← lm_head LoRA r=2');
    const out = join(temp.make(), 'merged');
    const result = await runCli(['merge', '--base', baseDir, '--adapter', adapterDir, '--out', out, '--backend', 'cpu']);
    expect(errorLines(result.stderr), result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    const files = new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))]));
    const merged = readMergedFolder(files);
    expect([...merged.tensors.keys()].sort()).toEqual(['lm_head.weight', ...base.map((t) => t.name)].sort());
    expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, dtype: 'bfloat16', torch_dtype: 'bfloat16' });
    expect(merged.text('tokenizer.json')).toBe('{}');
  });
});
