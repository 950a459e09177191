/**
 * LLM checkpoints as they are on disk, merged file to file: each folder carries its architecture's
 * real key names and config fields (sizes scaled down), each adapter PEFT's real key names
 * (save_and_load.py, tuners/lora, tuners/trainable_tokens), and each merged tensor is compared
 * with float64 truth written out below, on the CPU and on WebGPU, together with the output's
 * config.json, index and metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(1212);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

type Files = Record<string, string | Uint8Array>;

async function prepare(base: Files, adapters: Files[], weights: number[] = []): Promise<PreparedMerge> {
  return prepareMerge(memoryInputFileSet(base, 'base'), adapters.map((files, i) => ({
    files: memoryInputFileSet(files, `adapter${i + 1}`), weight: weights[i] ?? 1,
  })));
}

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

/** The index lists every written tensor in its shard, and total_size counts their bytes. */
function expectIndex(merged: MergedFolder): void {
  const index = merged.json('model.safetensors.index.json');
  expect(index.metadata.total_size).toBe(merged.tensorBytes);
  expect(Object.keys(index.weight_map).sort()).toEqual([...merged.tensors.keys()].sort());
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
