/**
 * mlx-lm adapters (mlx_lm.lora) merged into Hugging Face checkpoints as mlx_lm.fuse applies them:
 * folders as lora.py writes them (adapter_config.json of the training arguments, sorted, and
 * adapters.safetensors with mlx's `format: mlx` metadata), keys by mlx-lm's module paths, lora_a
 * (in, r) and lora_b (r, out) in float32 as mlx trains them, and each merged tensor compared with
 * float64 truth written out below (tuner/lora.py and tuner/dora.py fuse()), on the CPU and WebGPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mergeFolders } from './helpers/cli.js';
import { buildSafetensors, roundForDType, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, type MergedFolder, prepareFolders as prepare, type Files } from './helpers/hf-folder.js';
import { expectValues } from './helpers/merge-truth.js';
import { mergeIntoFolder } from './helpers/merged-folder.js';
import { readGguf, tensorValues } from './helpers/gguf-builder.js';
import { peftLlamaAdapter, splitF16Llama, truthWithPeft } from './helpers/gguf-models.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import { aTimesB, linearTruth, mlxConfig, mlxFolder } from './helpers/mlx-lm-folder.js';
import { refusalsInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(4711);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));
const dirs = tempDirs();
afterAll(() => dirs.removeAll());

const KINDS = ['cpu', 'webgpu'] as const;

// A Llama checkpoint, sizes scaled down and odd: hidden 10, 6 key/value features, MLP 14, vocabulary 17.
const HIDDEN = 10, KV = 6, FFN = 14, VOCAB = 17;
function llamaBase(): FixtureTensor[] {
  const layer = (n: number): FixtureTensor[] => [
    randomTensor(`model.layers.${n}.self_attn.q_proj.weight`, [HIDDEN, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.self_attn.k_proj.weight`, [KV, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.self_attn.v_proj.weight`, [KV, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.self_attn.o_proj.weight`, [HIDDEN, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.gate_proj.weight`, [FFN, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.up_proj.weight`, [FFN, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.down_proj.weight`, [HIDDEN, FFN], 'BF16', rand),
    randomTensor(`model.layers.${n}.input_layernorm.weight`, [HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${n}.post_attention_layernorm.weight`, [HIDDEN], 'BF16', rand),
  ];
  return [
    randomTensor('model.embed_tokens.weight', [VOCAB, HIDDEN], 'BF16', rand),
    ...layer(0), ...layer(1),
    randomTensor('model.norm.weight', [HIDDEN], 'BF16', rand),
    randomTensor('lm_head.weight', [VOCAB, HIDDEN], 'BF16', rand),
  ];
}
const LLAMA_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16',
  hidden_size: HIDDEN, intermediate_size: FFN, num_hidden_layers: 2, vocab_size: VOCAB, tie_word_embeddings: false,
};
const BASE = llamaBase();
const BASE_VALUES = decoded(BASE);

/** lora_a (in, r) and lora_b (r, out) of a module, as LoRALinear holds them (an embedding's: (vocab, r), (r, dims)). */
function loraFactors(path: string, inF: number, outF: number, r: number): FixtureTensor[] {
  return [
    randomTensor(`${path}.lora_a`, [inF, r], 'F32', rand, 0.5),
    randomTensor(`${path}.lora_b`, [r, outF], 'F32', rand, 0.5),
  ];
}

/** LoRAEmbedding.fuse: W (vocab, dims) + scale·lora_a·lora_b. */
function embeddingTruth(w: DecodedTensor, a: DecodedTensor, b: DecodedTensor, scale: number): Float64Array {
  const ab = aTimesB(a, b);
  return w.values.map((v, i) => v + scale * ab[i]);
}

/** DoRA's fuse: each row of V = W + ΔW scaled to m[row] / ‖V_row‖ (DoRALinear and DoRAEmbedding alike, rows of the stored weight). */
function doraRows(v: Float64Array, rows: number, m: DecodedTensor): Float64Array {
  const cols = v.length / rows;
  const out = new Float64Array(v.length);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < cols; c++) sq += v[r * cols + c] ** 2;
    const f = m.values[r] / Math.sqrt(sq);
    for (let c = 0; c < cols; c++) out[r * cols + c] = f * v[r * cols + c];
  }
  return out;
}

const merge = (prepared: PreparedMerge, kind: 'cpu' | 'webgpu'): Promise<MergedFolder> => mergeIntoFolder(prepared, backends[kind]!);

function expectUnchanged(merged: MergedFolder, changed: string[]): void {
  for (const [key, t] of BASE_VALUES) {
    if (changed.includes(key)) continue;
    expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(t.bytes);
  }
}

// lora_parameters.keys as a user lists them: layer-relative paths for the last num_layers layers,
// full paths for modules outside them (tuner/utils.py linear_to_lora_layers).
const KEYS = ['self_attn.q_proj', 'self_attn.k_proj', 'mlp.down_proj', 'model.embed_tokens', 'lm_head'];
/** Module path, in, out (an embedding: vocabulary, width), whether an embedding. */
const MODULES: [string, number, number, boolean][] = [
  ['model.layers.1.self_attn.q_proj', HIDDEN, HIDDEN, false],
  ['model.layers.1.self_attn.k_proj', HIDDEN, KV, false],
  ['model.layers.1.mlp.down_proj', FFN, HIDDEN, false],
  ['model.embed_tokens', VOCAB, HIDDEN, true],
  ['lm_head', HIDDEN, VOCAB, false],
];

describe('mlx-lm LoRA', () => {
  for (const [rank, scale, weight] of [[1, 20, 1], [3, 7.5, 0.5]] as const) {
    const tensors = MODULES.flatMap(([path, inF, outF]) => loraFactors(path, inF, outF, rank));
    const adapter = mlxFolder({ lora_parameters: { rank, dropout: 0.05, scale, keys: KEYS } }, tensors);
    for (const kind of KINDS) {
      it(`r = ${rank}, scale ${scale}, weight ${weight}: every module as LoRALinear/LoRAEmbedding.fuse adds it, into a sharded checkpoint, on ${kind}`, async () => {
        const prepared = await prepare(hfModelFolder(BASE, LLAMA_CONFIG, { shards: 2 }), [adapter], [weight]);
        expect(prepared.plan.problems).toEqual([]);
        expect(prepared.plan.adapters.map((a) => a.format)).toEqual(['mlx']);
        const merged = await merge(prepared, kind);
        const a = decoded(tensors);
        for (const [path, , , embedding] of MODULES) {
          const key = `${path}.weight`;
          const truth = (embedding ? embeddingTruth : linearTruth)(BASE_VALUES.get(key)!, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, weight * scale);
          expectValues(key, merged.tensors.get(key)!, truth);
        }
        expectUnchanged(merged, MODULES.map(([p]) => `${p}.weight`));
        expect(merged.json('config.json').torch_dtype).toBe('bfloat16');
      });
    }
  }

  it('a folder with the trainer\'s checkpoints merges adapters.safetensors, the file mlx_lm.fuse reads', async () => {
    const final = loraFactors('model.layers.1.self_attn.q_proj', HIDDEN, HIDDEN, 2);
    const checkpoint = loraFactors('model.layers.1.self_attn.q_proj', HIDDEN, HIDDEN, 2);
    const adapter = mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, final, {
      '0000100_adapters.safetensors': buildSafetensors(checkpoint, { format: 'mlx' }),
      '0000200_adapters.safetensors': buildSafetensors(checkpoint, { format: 'mlx' }),
    });
    const merged = await merge(await prepare(hfModelFolder(BASE, LLAMA_CONFIG), [adapter]), 'cpu');
    const a = decoded(final);
    const key = 'model.layers.1.self_attn.q_proj.weight';
    expectValues(key, merged.tensors.get(key)!, linearTruth(BASE_VALUES.get(key)!, a.get('model.layers.1.self_attn.q_proj.lora_a')!, a.get('model.layers.1.self_attn.q_proj.lora_b')!, 10));
  });

  it('a config from before fine_tune_type (lora_layers, alpha equal to rank) merges at its scale', async () => {
    const tensors = loraFactors('model.layers.1.mlp.down_proj', FFN, HIDDEN, 4);
    const adapter = mlxFolder({ fine_tune_type: undefined, num_layers: undefined, lora_layers: 1, use_dora: false, lora_parameters: { rank: 4, alpha: 4, dropout: 0, scale: 10 } }, tensors);
    const merged = await merge(await prepare(hfModelFolder(BASE, LLAMA_CONFIG), [adapter]), 'cpu');
    const a = decoded(tensors);
    const key = 'model.layers.1.mlp.down_proj.weight';
    expectValues(key, merged.tensors.get(key)!, linearTruth(BASE_VALUES.get(key)!, a.get('model.layers.1.mlp.down_proj.lora_a')!, a.get('model.layers.1.mlp.down_proj.lora_b')!, 10));
  });
});

/** LoRASwitchLinear's factors: lora_a (experts, r, in), lora_b (experts, out, r). */
function switchFactors(path: string, experts: number, inF: number, outF: number, r: number): FixtureTensor[] {
  return [
    randomTensor(`${path}.lora_a`, [experts, r, inF], 'F32', rand, 0.5),
    randomTensor(`${path}.lora_b`, [experts, outF, r], 'F32', rand, 0.5),
  ];
}

/** LoRASwitchLinear.fuse for expert e: W_e + scale·lora_b[e]·lora_a[e]. */
function expertTruth(w: DecodedTensor, a: DecodedTensor, b: DecodedTensor, e: number, scale: number): Float64Array {
  const [, r, inF] = a.shape;
  const out = b.shape[1];
  const merged = w.values.slice();
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let sum = 0;
    for (let k = 0; k < r; k++) sum += b.values[(e * out + o) * r + k] * a.values[(e * r + k) * inF + i];
    merged[o * inF + i] += scale * sum;
  }
  return merged;
}

describe('mlx-lm LoRA on stacked experts (switch_mlp)', () => {
  const EXPERTS = 3;
  const qwenMoe = [
    randomTensor('model.layers.0.mlp.gate.weight', [EXPERTS, HIDDEN], 'BF16', rand),
    ...Array.from({ length: EXPERTS }, (_, e) => [
      randomTensor(`model.layers.0.mlp.experts.${e}.gate_proj.weight`, [FFN, HIDDEN], 'BF16', rand),
      randomTensor(`model.layers.0.mlp.experts.${e}.up_proj.weight`, [FFN, HIDDEN], 'BF16', rand),
      randomTensor(`model.layers.0.mlp.experts.${e}.down_proj.weight`, [HIDDEN, FFN], 'BF16', rand),
    ]).flat(),
  ];
  const mixtral = Array.from({ length: EXPERTS }, (_, e) => [
    randomTensor(`model.layers.0.block_sparse_moe.experts.${e}.w1.weight`, [FFN, HIDDEN], 'F16', rand),
    randomTensor(`model.layers.0.block_sparse_moe.experts.${e}.w2.weight`, [HIDDEN, FFN], 'F16', rand),
    randomTensor(`model.layers.0.block_sparse_moe.experts.${e}.w3.weight`, [FFN, HIDDEN], 'F16', rand),
  ]).flat();
  const cases = [
    ['Qwen3-MoE (mlp.experts.E.gate_proj, down_proj)', qwenMoe, { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe' },
      [['model.layers.0.mlp.switch_mlp.gate_proj', 'gate_proj', HIDDEN, FFN], ['model.layers.0.mlp.switch_mlp.down_proj', 'down_proj', FFN, HIDDEN]]],
    ['Mixtral (block_sparse_moe.experts.E.w3, w2)', mixtral, { architectures: ['MixtralForCausalLM'], model_type: 'mixtral' },
      [['model.layers.0.block_sparse_moe.switch_mlp.up_proj', 'w3', HIDDEN, FFN], ['model.layers.0.block_sparse_moe.switch_mlp.down_proj', 'w2', FFN, HIDDEN]]],
  ] as const;
  for (const [title, base, config, modules] of cases) {
    const tensors = modules.flatMap(([path, , inF, outF]) => switchFactors(path, EXPERTS, inF, outF, 2));
    const adapter = mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 8 } }, tensors);
    for (const kind of KINDS) {
      it(`${title}: each expert's slice of LoRASwitchLinear.fuse on that expert's tensor, on ${kind}`, async () => {
        const prepared = await prepare(hfModelFolder(base, config, { shards: 2 }), [adapter]);
        expect(prepared.plan.problems).toEqual([]);
        const merged = await merge(prepared, kind);
        const a = decoded(tensors);
        const b = decoded(base);
        const changed: string[] = [];
        for (const [path, hfName] of modules) {
          for (let e = 0; e < EXPERTS; e++) {
            const key = `${path.replace(/switch_mlp\.[a-z_]+$/, `experts.${e}.${hfName}`)}.weight`;
            changed.push(key);
            expectValues(key, merged.tensors.get(key)!, expertTruth(b.get(key)!, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, e, 8));
          }
        }
        for (const [key, t] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, key).toEqual(t.bytes);
      });
    }
  }
});

describe('mlx-lm DoRA', () => {
  it('a config from before fine_tune_type with use_dora true is a DoRA', async () => {
    const path = 'model.layers.1.self_attn.k_proj';
    const tensors = [...loraFactors(path, HIDDEN, KV, 2), randomTensor(`${path}.m`, [KV], 'F32', () => 1 + Math.abs(rand()))];
    const adapter = mlxFolder({ fine_tune_type: undefined, num_layers: undefined, lora_layers: 1, use_dora: true, lora_parameters: { rank: 2, alpha: 16, dropout: 0, scale: 2 } }, tensors);
    await expect(prepare(hfModelFolder(BASE, LLAMA_CONFIG), [adapter])).rejects.toThrow(/alpha 16 beside rank 2/);
    const sameScale = { ...adapter, 'adapter_config.json': adapter['adapter_config.json'].toString().replace('"alpha": 16', '"alpha": 2') };
    const merged = await merge(await prepare(hfModelFolder(BASE, LLAMA_CONFIG), [sameScale]), 'cpu');
    const a = decoded(tensors);
    const key = `${path}.weight`;
    const w = BASE_VALUES.get(key)!;
    expectValues(key, merged.tensors.get(key)!, doraRows(linearTruth(w, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, 2), KV, a.get(`${path}.m`)!));
  });

  const DORA: [string, number, number, boolean][] = [MODULES[0], MODULES[2], MODULES[3]];
  const tensors = DORA.flatMap(([path, inF, outF, embedding]) => [
    ...loraFactors(path, inF, outF, 2),
    // m: the norms of the base rows at the start (set_linear), trained from there.
    randomTensor(`${path}.m`, [embedding ? inF : outF], 'F32', () => 1 + Math.abs(rand())),
  ]);
  const adapter = mlxFolder({ fine_tune_type: 'dora', lora_parameters: { rank: 2, dropout: 0, scale: 4, keys: ['self_attn.q_proj', 'mlp.down_proj', 'model.embed_tokens'] } }, tensors);
  for (const kind of KINDS) {
    it(`DoRALinear and DoRAEmbedding: rows of W + ΔW scaled to m, on ${kind}`, async () => {
      const prepared = await prepare(hfModelFolder(BASE, LLAMA_CONFIG), [adapter]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const a = decoded(tensors);
      for (const [path, , , embedding] of DORA) {
        const key = `${path}.weight`;
        const w = BASE_VALUES.get(key)!;
        const v = (embedding ? embeddingTruth : linearTruth)(w, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, 4);
        expectValues(key, merged.tensors.get(key)!, doraRows(v, w.shape[0], a.get(`${path}.m`)!));
      }
      expectUnchanged(merged, DORA.map(([p]) => `${p}.weight`));
    });
  }
});

describe('mlx-lm full fine-tune', () => {
  it('fine_tune_type "full": the last num_layers layers\' trained parameters replace the base\'s', async () => {
    const trained = BASE.filter((t) => t.name.startsWith('model.layers.1.')).map((t) => randomTensor(t.name, t.shape, 'BF16', rand));
    const adapter = mlxFolder({ fine_tune_type: 'full', lora_parameters: null }, trained);
    const merged = await merge(await prepare(hfModelFolder(BASE, LLAMA_CONFIG, { shards: 2 }), [adapter]), 'cpu');
    const t = decoded(trained);
    for (const [key, value] of t) expect(merged.tensors.get(key)?.bytes, key).toEqual(value.bytes);
    expectUnchanged(merged, [...t.keys()]);
    // mlx_lm.fuse has no weight: a weight other than 1 leaves them whole, and says so.
    const halved = await prepare(hfModelFolder(BASE, LLAMA_CONFIG), [adapter], [0.5]);
    await halved.close();
    expect(halved.plan.warnings).toContain('adapter1: weight 0.5 does not apply to the replaced tensor model.layers.1.self_attn.q_proj.weight (saved with the adapter)');
  });
});

describe('mlx-lm refusals', () => {
  const base = hfModelFolder(BASE, LLAMA_CONFIG);
  const q = loraFactors('model.layers.1.self_attn.q_proj', HIDDEN, HIDDEN, 2);
  const refused = async (adapter: Files, message: RegExp) => {
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base, adapters: [{ files: adapter }] });
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(message);
    expect(refusals[0]).not.toContain('\n');
  };

  it('adapters.safetensors without its config, by the CLI and the library: the scale lives in the config', async () => {
    await expectRefusedByCliAndLibrary(dirs.make, backends.cpu!, base, { 'adapters.safetensors': buildSafetensors(q, { format: 'mlx' }) },
      /adapters\.safetensors looks like an mlx-lm adapter but adapter_config\.json is missing \(it holds lora_parameters\.scale\); pass the adapter folder/);
  });

  it('a lone file of mlx-lm factors under another name is not taken for kohya or PEFT', async () => {
    await refused({ 'my_lora.safetensors': buildSafetensors(q, { format: 'mlx' }) }, /my_lora\.safetensors looks like an mlx-lm adapter but adapter_config\.json is missing/);
  });

  it('a folder with checkpoints but no adapters.safetensors names one', async () => {
    await refused({ 'adapter_config.json': mlxConfig({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }), '0000100_adapters.safetensors': buildSafetensors(q) },
      /an mlx-lm adapter folder without adapters\.safetensors \(it has checkpoints such as 0000100_adapters\.safetensors: copy the one to merge/);
  });

  it("LoRASwitchLinear on a checkpoint that stores its experts fused as transformers 5 does (gate_up_proj (E, 2·ffn, hidden)): each expert's slice of LoRASwitchLinear.fuse on its gate rows", async () => {
    const base = [
      randomTensor('model.layers.0.mlp.experts.gate_up_proj', [3, 2 * FFN, HIDDEN], 'BF16', rand),
      randomTensor('model.layers.0.mlp.experts.down_proj', [3, HIDDEN, FFN], 'BF16', rand),
    ];
    const factors = switchFactors('model.layers.0.mlp.switch_mlp.gate_proj', 3, HIDDEN, FFN, 2);
    const prepared = await prepare(hfModelFolder(base, { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe' }), [mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, factors)]);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared, 'cpu');
    const a = decoded(factors);
    const key = 'model.layers.0.mlp.experts.gate_up_proj';
    const w = decoded(base).get(key)!;
    // Expert e's gate_proj is rows [e·2·ffn, e·2·ffn + ffn) of the fused tensor (gate's half, then up's).
    const truth = w.values.slice();
    for (let e = 0; e < 3; e++) {
      const slab = { ...w, shape: [FFN, HIDDEN], values: w.values.slice(e * 2 * FFN * HIDDEN, (e * 2 + 1) * FFN * HIDDEN) };
      truth.set(expertTruth(slab, a.get('model.layers.0.mlp.switch_mlp.gate_proj.lora_a')!, a.get('model.layers.0.mlp.switch_mlp.gate_proj.lora_b')!, e, 10), e * 2 * FFN * HIDDEN);
    }
    expectValues(key, merged.tensors.get(key)!, truth);
    expect(merged.tensors.get('model.layers.0.mlp.experts.down_proj')!.bytes).toEqual(decoded(base).get('model.layers.0.mlp.experts.down_proj')!.bytes);
  });

  it('LoRASwitchLinear factors that do not fit, a magnitude on switch_mlp, switch_mlp in a DoRA fine-tune', async () => {
    const bad = [randomTensor('model.layers.1.mlp.switch_mlp.up_proj.lora_a', [3, 2, HIDDEN], 'F32', rand), randomTensor('model.layers.1.mlp.switch_mlp.up_proj.lora_b', [3, 2, FFN], 'F32', rand)];
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, bad), /module "model\.layers\.1\.mlp\.switch_mlp\.up_proj": lora_b \(3, 2, 14\) does not fit lora_a \(3, 2, 10\)/);
    const withM = [...switchFactors('model.layers.1.mlp.switch_mlp.up_proj', 3, HIDDEN, FFN, 2), randomTensor('model.layers.1.mlp.switch_mlp.up_proj.m', [3, FFN], 'F32', rand)];
    await refused(mlxFolder({ fine_tune_type: 'dora', lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, withM), /has a DoRA magnitude on switch_mlp, which mlx-lm does not train/);
    // Without a magnitude too: mlx-lm's linear_to_lora_layers raises for a SwitchLinear under DoRA.
    await refused(mlxFolder({ fine_tune_type: 'dora', lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, switchFactors('model.layers.1.mlp.switch_mlp.up_proj', 3, HIDDEN, FFN, 2)),
      /module "model\.layers\.1\.mlp\.switch_mlp\.up_proj": has LoRASwitchLinear factors on switch_mlp, but .*adapter_config\.json names a DoRA fine-tune, which mlx-lm refuses for switch_mlp/);
  });

  it('an old config whose alpha differs from rank: which scale mlx-lm used is not stated', async () => {
    await refused(mlxFolder({ fine_tune_type: undefined, num_layers: undefined, lora_layers: 16, lora_parameters: { rank: 2, alpha: 16, dropout: 0, scale: 10 } }, q),
      /lora_parameters has alpha 16 beside rank 2: mlx-lm from April to June 2024 scaled ΔW by scale·alpha\/rank \(80\), later versions by scale alone \(10\)/);
  });

  it('a module whose mlx-lm path names no tensor of the checkpoint', async () => {
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, loraFactors('model.layers.1.self_attn.qkv_proj', HIDDEN, 30, 2)), /model\.layers\.1\.self_attn\.qkv_proj/);
  });

  it('rank against lora_parameters.rank, a magnitude in a LoRA, an unknown fine_tune_type, a stray tensor', async () => {
    await refused(mlxFolder({ lora_parameters: { rank: 4, dropout: 0, scale: 10 } }, q), /module "model\.layers\.1\.self_attn\.q_proj": lora_a has rank 2 but .*adapter_config\.json says lora_parameters\.rank 4/);
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, [...q, randomTensor('model.layers.1.self_attn.q_proj.m', [HIDDEN], 'F32', rand)]), /has a DoRA magnitude "model\.layers\.1\.self_attn\.q_proj\.m" but .* names no DoRA fine-tune/);
    await refused(mlxFolder({ fine_tune_type: 'dora', lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, q), /has no DoRA magnitude "model\.layers\.1\.self_attn\.q_proj\.m"/);
    await refused(mlxFolder({ fine_tune_type: 'qlora' }, q), /fine_tune_type "qlora" is not one mlx-lm defines/);
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0 } }, q), /lora_parameters\.scale .* is not a finite number/);
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, [...q, randomTensor('model.norm.weight', [HIDDEN], 'F32', rand)]), /tensor "model\.norm\.weight" is not an mlx-lm LoRA parameter/);
  });

  it('LoRALinear\'s factors on a layer the checkpoint\'s config names an embedding', async () => {
    // A name mlx-lm does not take for an embedding (its LoRAEmbedding goes by embed_tokens, wte, …).
    const bert = hfModelFolder([randomTensor('embeddings.position_embeddings.weight', [VOCAB, HIDDEN], 'F16', rand)], { architectures: ['BertModel'], model_type: 'bert' });
    const refusals = await refusalsInMemory({
      backend: backends.cpu!, base: bert,
      adapters: [{ files: mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, loraFactors('embeddings.position_embeddings', HIDDEN, VOCAB, 2)) }],
    });
    expect(refusals).toEqual([expect.stringMatching(/LoRALinear \(mlx-lm\) wraps only Linear layers; "embeddings\.position_embeddings\.weight" is an Embedding weight .*so mlx-lm cannot have trained this module on it/)]);
  });

  it('models whose mlx-lm loader changes a tensor it keeps the name of: falcon_h1 for a LoRA, qwen3_next\'s norms for a full fine-tune', async () => {
    const as = (modelType: string) => hfModelFolder(BASE, { ...LLAMA_CONFIG, model_type: modelType });
    const lora = mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, q);
    const full = mlxFolder({ fine_tune_type: 'full', lora_parameters: null }, [randomTensor('model.layers.1.input_layernorm.weight', [HIDDEN], 'BF16', rand)]);
    const refusals = (baseFiles: Files, adapter: Files) => refusalsInMemory({ backend: backends.cpu!, base: baseFiles, adapters: [{ files: adapter }] });
    expect(await refusals(as('falcon_h1'), lora)).toEqual([expect.stringMatching(/^adapter0: adapter0\/adapters\.safetensors was trained in mlx-lm, whose falcon_h1 model folds the attention and MLP multipliers into the projection weights when it loads the checkpoint: merging it into the checkpoint's own tensors is not supported$/)]);
    expect(await refusals(as('qwen3_next'), full)).toEqual([expect.stringMatching(/whose qwen3_next model adds 1 to the norm weights/)]);
    expect(await refusals(as('qwen3_next'), lora)).toEqual([]);
    expect(await refusals(as('constructor'), lora)).toEqual([]);
  });

  it('mlx-community quantized weights without config.json\'s quantization are refused as what they are', async () => {
    // mlx_lm.convert -q: 4-bit codes, 8 per uint32 word, one scale and bias per group of 10 inputs here.
    const quantized = hfModelFolder([
      { name: 'model.layers.1.self_attn.q_proj.weight', dtype: 'U32', shape: [HIDDEN, 2], data: Array.from({ length: HIDDEN * 2 }, (_, i) => i * 2654435761 % 2 ** 32) },
      randomTensor('model.layers.1.self_attn.q_proj.scales', [HIDDEN, 1], 'BF16', rand),
      randomTensor('model.layers.1.self_attn.q_proj.biases', [HIDDEN, 1], 'BF16', rand),
    ], LLAMA_CONFIG);
    const refusals = await refusalsInMemory({ backend: backends.cpu!, base: quantized, adapters: [{ files: mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, q) }] });
    expect(refusals).toEqual(['adapter0: module "model.layers.1.self_attn.q_proj": the base tensor model.layers.1.self_attn.q_proj.weight is stored quantized: ' +
      'mlx\'s affine quantization (uint32 codes with model.layers.1.self_attn.q_proj.scales and model.layers.1.self_attn.q_proj.biases), which loramerge does not read; merge into the unquantized model, or a float8_e4m3fn one']);
  });

  it('an embedding\'s factors laid out as a Linear\'s', async () => {
    // lora_a (10, 2), lora_b (2, 17) on embed_tokens (17, 10): LoRAEmbedding's are (17, r) and (r, 10).
    await refused(mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 10 } }, loraFactors('model.embed_tokens', HIDDEN, VOCAB, 2)), /model\.embed_tokens.*does not fit/);
  });
});

describe('mlx-community quantized bases', () => {
  const IN = 32;
  /** A layer as mlx_lm.convert -q writes it: codes packed 32/bits per uint32 word, lowest bits first; scales and biases per group. */
  function quantizedLayer(stem: string, out: number, bits: number, groupSize: number) {
    const perWord = 32 / bits;
    const codes = Array.from({ length: out * IN }, () => Math.floor(Math.abs(rand()) * 2 ** bits) % 2 ** bits);
    const words = new Array<number>(out * IN / perWord).fill(0);
    codes.forEach((c, j) => { words[Math.floor(j / perWord)] += c * 2 ** (bits * (j % perWord)); });
    const groups = IN / groupSize;
    // mlx's quantizer: the scale is negative where the group's largest magnitude is its minimum, and
    // the bias is that edge value, q0·scale for a whole q0, stored in bf16.
    const sv = Array.from({ length: out * groups }, (_, g) => roundForDType((g % 3 === 0 ? -1 : 1) * (0.002 + Math.abs(rand()) / 100), 'BF16'));
    const bv = sv.map((x) => roundForDType(-(2 ** (bits - 1)) * x * (1 + rand() / 100), 'BF16'));
    const scales: FixtureTensor = { name: `${stem}.scales`, dtype: 'BF16', shape: [out, groups], data: sv };
    const biases: FixtureTensor = { name: `${stem}.biases`, dtype: 'BF16', shape: [out, groups], data: bv };
    const real = new Float64Array(out * IN);
    for (let o = 0; o < out; o++) for (let i = 0; i < IN; i++) {
      const g = o * groups + Math.floor(i / groupSize);
      real[o * IN + i] = codes[o * IN + i] * sv[g] + bv[g];
    }
    const weight: FixtureTensor = { name: `${stem}.weight`, dtype: 'U32', shape: [out, IN / perWord], data: words };
    return { tensors: [weight, scales, biases], real };
  }
  const q = quantizedLayer('model.layers.0.self_attn.q_proj', 6, 4, 16);
  const k = quantizedLayer('model.layers.0.self_attn.k_proj', 4, 8, 32);
  const embed = quantizedLayer('model.embed_tokens', 5, 4, 16);
  const norm = randomTensor('model.layers.0.input_layernorm.weight', [IN], 'BF16', rand);
  const config = {
    ...LLAMA_CONFIG, hidden_size: IN, vocab_size: 5,
    quantization: { group_size: 16, bits: 4, 'model.layers.0.self_attn.k_proj': { group_size: 32, bits: 8 } },
    quantization_config: { group_size: 16, bits: 4, 'model.layers.0.self_attn.k_proj': { group_size: 32, bits: 8 } },
  };
  const base = hfModelFolder([...embed.tensors, ...q.tensors, ...k.tensors, norm], config);
  const factors = [...loraFactors('model.layers.0.self_attn.q_proj', IN, 6, 2), ...loraFactors('model.layers.0.self_attn.k_proj', IN, 4, 2)];
  const adapter = mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 20 } }, factors);

  for (const kind of KINDS) {
    it(`a QLoRA merged into q·scale + bias (4-bit, and an 8-bit layer by its own config entry), written dequantized in bf16, on ${kind}`, async () => {
      const prepared = await prepare(base, [adapter]);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, 'BF16');
      const a = decoded(factors);
      for (const [stem, layer, out] of [['model.layers.0.self_attn.q_proj', q, 6], ['model.layers.0.self_attn.k_proj', k, 4]] as const) {
        const w: DecodedTensor = { ...decoded([norm]).get(norm.name)!, shape: [out, IN], values: layer.real };
        expectValues(`${stem}.weight`, merged.tensors.get(`${stem}.weight`)!, linearTruth(w, a.get(`${stem}.lora_a`)!, a.get(`${stem}.lora_b`)!, 20));
      }
      expectValues('model.embed_tokens.weight', merged.tensors.get('model.embed_tokens.weight')!, embed.real);
      expect([...merged.tensors.keys()].sort()).toEqual(['model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.0.self_attn.k_proj.weight', 'model.layers.0.self_attn.q_proj.weight']);
      expect(merged.tensors.get(norm.name)!.bytes).toEqual(decoded([norm]).get(norm.name)!.bytes);
      const written = merged.json('config.json');
      expect([written.quantization, written.quantization_config, written.torch_dtype]).toEqual([undefined, undefined, 'bfloat16']);
    });
  }

  it('refused: a DoRA on a quantized weight (its norms are a map of W, not an addition)', async () => {
    const dora = mlxFolder({ fine_tune_type: 'dora', lora_parameters: { rank: 2, dropout: 0, scale: 20 } }, [
      ...loraFactors('model.layers.0.self_attn.q_proj', IN, 6, 2), randomTensor('model.layers.0.self_attn.q_proj.m', [6], 'F32', rand),
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base, adapters: [{ files: dora }], outDtype: 'BF16' })).toEqual([
      expect.stringMatching(/module "model\.layers\.0\.self_attn\.q_proj": .*DoRA/),
    ]);
  });

  it('refused: no --dtype, a config saying 3 bits over 4-bit codes, another quantization mode', async () => {
    expect(await refusalsInMemory({ backend: backends.cpu!, base, adapters: [{ files: adapter }] })).toEqual(['base: its mlx affine weights are written only dequantized (re-quantizing them to mlx\'s affine quantization is not supported); merge with --dtype bf16 (or f16, f32)']);
    const with3 = { ...base, 'config.json': JSON.stringify({ ...config, quantization: { group_size: 16, bits: 3 } }) };
    expect(await refusalsInMemory({ backend: backends.cpu!, base: with3, adapters: [{ files: adapter }], outDtype: 'BF16' })).toEqual(['base: model.embed_tokens.weight is not a mlx affine weight as it writes them (its 4 words per row do not hold a whole number of 3-bit codes)']);
    // A bias far below its scale: q·scale + bias needs more bits than f32 has.
    const inexact = hfModelFolder([
      ...q.tensors.map((t) => t.name.endsWith('.biases') ? { ...t, data: Array.from({ length: 12 }, (_, g) => (g === 5 ? 2 ** -40 : 0)) } : t), ...k.tensors,
    ], config);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: inexact, adapters: [{ files: adapter }], outDtype: 'BF16' })).toEqual([
      expect.stringMatching(/^base: model\.layers\.0\.self_attn\.q_proj\.weight\[2, 1[6-9]\] = \d+·[-\d.e]+ \+ 9\.094947017729282e-13 is not exact in f32, in which the merge reads dequantized weights$/),
    ]);
    const mxfp4 = { ...base, 'config.json': JSON.stringify({ ...config, quantization: { group_size: 32, bits: 4, mode: 'mxfp4' } }) };
    expect(await refusalsInMemory({ backend: backends.cpu!, base: mxfp4, adapters: [{ files: adapter }], outDtype: 'BF16' })).toEqual([expect.stringMatching(/quantization\.mode "mxfp4" is not read \(only "affine"\)/)]);
  });

  it('refused: trainable tokens on a quantized embedding, naming the weight (rows are set outright, not added)', async () => {
    // PEFT's trainable_token_indices on embed_tokens; the embedding here is mlx's 4-bit codes.
    const tokens = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], trainable_token_indices: [1, 3] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, IN], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [6, 2], 'F32', rand),
      randomTensor('base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta', [2, IN], 'F32', rand),
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base, adapters: [{ files: tokens }], outDtype: 'BF16' })).toEqual([
      'adapter0: module "model.embed_tokens.weight": setting rows of the mlx affine weight model.embed_tokens.weight is not supported; merge it into the unquantized model',
    ]);
  });

  it('refused: a LoRA on the head of a tied model whose embedding is uint32 codes the merge does not read, naming the embedding', async () => {
    // A tied model (mlx-community's Qwen2.5-0.5B-Instruct-4bit is one) stores no lm_head: a LoRA on the head alone
    // unties it, writing the head from the embedding. Without config.json's quantization the codes are not read as
    // weights (the refusal above), so no head can be written from them.
    const { quantization: _, quantization_config: __, ...unquantized } = config;
    const tied = hfModelFolder([...embed.tensors, ...q.tensors, ...k.tensors, norm], { ...unquantized, tie_word_embeddings: true });
    const head = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, [
      randomTensor('base_model.model.lm_head.lora_A.weight', [2, IN], 'F32', rand), randomTensor('base_model.model.lm_head.lora_B.weight', [5, 2], 'F32', rand),
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: tied, adapters: [{ files: head }], outDtype: 'BF16' })).toEqual([
      'base: the tied embedding model.embed_tokens.weight is U32; only a float one can be written as the head too',
    ]);
  });
});

describe('mlx-lm onto a GGUF base', () => {
  it('module paths mapped to llama.cpp names, q/k rows permuted, merged in f32 from a split F16 llama', async () => {
    const base = splitF16Llama();
    // The PEFT fixture's rank-8 modules, saved as mlx-lm does: lora_a = Aᵀ (in, r), lora_b = Bᵀ (r, out).
    const modules = peftLlamaAdapter().factors.filter((f) => f.rank === 8);
    const transposed = (m: Float64Array, rows: number, cols: number) => Float64Array.from({ length: m.length }, (_, i) => m[(i % rows) * cols + Math.floor(i / rows)]);
    const tensors: FixtureTensor[] = modules.flatMap((f) => [
      { name: `${f.module}.lora_a`, dtype: 'BF16' as const, shape: [f.in, 8], data: transposed(f.a, 8, f.in) },
      { name: `${f.module}.lora_b`, dtype: 'BF16' as const, shape: [8, f.out], data: transposed(f.b, f.out, 8) },
    ]);
    const prepared = await prepareMerge(memoryInputFileSet(base.files, 'base'), [{ files: memoryInputFileSet(mlxFolder({ lora_parameters: { rank: 8, dropout: 0, scale: 3 } }, tensors), 'adapter'), weight: 1 }]);
    expect(prepared.plan.problems).toEqual([]);
    const output = createBlobOutputTarget();
    try {
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype: 'f32' });
    } finally {
      await prepared.close();
    }
    const written = new Map<string, { name: string; data: Uint8Array }>();
    for (const f of output.files()) for (const t of readGguf(new Uint8Array(await f.blob.arrayBuffer())).tensors) written.set(t.name, t);
    for (const f of modules) {
      const want = truthWithPeft(base.tensors.get(f.gguf)!.values, f, 3);
      const got = tensorValues('F32', written.get(f.gguf)!.data);
      // f32 output: the truth correctly rounded, or within one f32 ulp of it.
      const miss = want.findIndex((w, i) => Math.abs(got[i] - w) > 2 ** -23 * Math.max(Math.abs(w), 2 ** -126));
      expect(miss, `${f.gguf}[${miss}]`).toBe(-1);
    }
  });
});

describe('mlx-lm through the CLI', () => {
  it('merges an adapter folder with `loramerge merge`, values as LoRALinear.fuse gives', async () => {
    const tensors = MODULES.slice(0, 3).flatMap(([path, inF, outF]) => loraFactors(path, inF, outF, 2));
    const { run, out } = await mergeFolders(dirs.make, hfModelFolder(BASE, LLAMA_CONFIG), mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 16 } }, tensors));
    expect(run.code, run.stderr).toBe(0);
    const files = new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))]));
    const merged = readMergedFolder(files);
    const a = decoded(tensors);
    for (const [path] of MODULES.slice(0, 3)) {
      const key = `${path}.weight`;
      expectValues(key, merged.tensors.get(key)!, linearTruth(BASE_VALUES.get(key)!, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, 16));
    }
    expectUnchanged(merged, MODULES.slice(0, 3).map(([p]) => `${p}.weight`));
  });
});
