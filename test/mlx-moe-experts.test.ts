/**
 * mlx-lm's LoRASwitchLinear (lora_a (E, r, in), lora_b (E, out, r)) on MoE bases that are not
 * mlx-quantized: a Hugging Face checkpoint with one tensor per expert (`mlp.experts.K.gate_proj`,
 * Mixtral's `block_sparse_moe.experts.K.w1`), and an unquantized mlx-lm checkpoint (or
 * `mlx_lm.fuse --dequantize` output) whose experts are stacked float `switch_mlp` tensors
 * (E, out, in). LoRASwitchLinear.fuse adds scale·lora_b[e]·lora_a[e] to expert e; mlx-lm loads
 * the factors only when they hold the layer's own count of experts (tuner/utils.py load_adapters
 * compares each adapter tensor's shape with the model's parameter), so another count is refused
 * whole, in one line. Truth is float64 written out here; merged on the CPU and WebGPU, in 4 KiB
 * slabs that end inside experts. The mlx files carry `format: mlx`, as mx.save_safetensors writes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mergeFolders } from './helpers/cli.js';
import { seededRandom, tempDirs, type DecodedTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { mergeIntoFolder } from './helpers/merged-folder.js';
import { expectValues } from './helpers/merge-truth.js';
import { mlxFolder } from './helpers/mlx-lm-folder.js';
import { refusalsInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(31337);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));
const KINDS = ['cpu', 'webgpu'] as const;
const dirs = tempDirs();
afterAll(() => dirs.removeAll());

// Qwen3-MoE scaled down to odd sizes: 3 experts, hidden 44, moe_intermediate_size 37.
const E = 3, HIDDEN = 44, FFN = 37, VOCAB = 7;
const L = 'model.layers.0';
const M = 'model.layers.0.block_sparse_moe';
const qwenConfig = {
  architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'bfloat16', hidden_size: HIDDEN, moe_intermediate_size: FFN,
  num_experts: E, num_experts_per_tok: 2, decoder_sparse_step: 1, mlp_only_layers: [], norm_topk_prob: true, num_hidden_layers: 1, vocab_size: VOCAB, tie_word_embeddings: false,
};
const mixtralConfig = {
  architectures: ['MixtralForCausalLM'], model_type: 'mixtral', torch_dtype: 'bfloat16', hidden_size: HIDDEN, intermediate_size: FFN,
  num_local_experts: E, num_experts_per_tok: 2, num_hidden_layers: 1, vocab_size: VOCAB,
};
const norm = randomTensor(`${L}.input_layernorm.weight`, [HIDDEN], 'BF16', rand);
const lora = (rank: number, scale: number) => ({ lora_parameters: { rank, dropout: 0, scale } });

/** LoRASwitchLinear's factors as mlx-lm saves them: lora_a (E, r, in), lora_b (E, out, r). */
const switchFactors = (path: string, experts: number, r: number, inF: number, outF: number) => [
  randomTensor(`${path}.lora_a`, [experts, r, inF], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [experts, outF, r], 'F32', rand, 0.5),
];

/** W_e + scale·lora_b[e]·lora_a[e] of expert e, (out, in), as doubles. */
function expertTruth(w: ArrayLike<number>, a: DecodedTensor, b: DecodedTensor, e: number, scale: number): Float64Array {
  const [, r, inF] = a.shape;
  const out = b.shape[1];
  const merged = Float64Array.from(w);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let sum = 0;
    for (let k = 0; k < r; k++) sum += b.values[(e * out + o) * r + k] * a.values[(e * r + k) * inF + i];
    merged[o * inF + i] += scale * sum;
  }
  return merged;
}

describe('LoRASwitchLinear on a Hugging Face checkpoint with one tensor per expert', () => {
  const perExpert = (proj: string, shape: number[]) => Array.from({ length: E }, (_, k) => randomTensor(`${L}.mlp.experts.${k}.${proj}.weight`, shape, 'BF16', rand));
  const gates = perExpert('gate_proj', [FFN, HIDDEN]);
  const ups = perExpert('up_proj', [FFN, HIDDEN]);
  const downs = perExpert('down_proj', [HIDDEN, FFN]);
  const router = randomTensor(`${L}.mlp.gate.weight`, [E, HIDDEN], 'BF16', rand);
  const qwen = hfModelFolder([router, ...gates, ...ups, ...downs, norm], qwenConfig, { shards: 2 });
  const factors = [...switchFactors(`${L}.mlp.switch_mlp.gate_proj`, E, 1, HIDDEN, FFN), ...switchFactors(`${L}.mlp.switch_mlp.down_proj`, E, 1, FFN, HIDDEN)];
  const adapter = mlxFolder({ model: 'Qwen/Qwen3-30B-A3B', ...lora(1, 2.5), num_layers: 1 }, factors);

  for (const kind of KINDS) {
    it(`merges expert e's factors into experts.e.<proj> (r = 1), every other tensor unchanged, on ${kind}`, async () => {
      const prepared = await prepare(qwen, adapter);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, undefined, 4096);
      const a = decoded(factors);
      const base = decoded([router, ...gates, ...ups, ...downs, norm]);
      for (const [proj, shape] of [['gate_proj', [FFN, HIDDEN]], ['down_proj', [HIDDEN, FFN]]] as const) {
        const p = `${L}.mlp.switch_mlp.${proj}`;
        for (let e = 0; e < E; e++) {
          const key = `${L}.mlp.experts.${e}.${proj}.weight`;
          expect(merged.tensors.get(key)!.shape).toEqual(shape);
          expectValues(key, merged.tensors.get(key)!, expertTruth(base.get(key)!.values, a.get(`${p}.lora_a`)!, a.get(`${p}.lora_b`)!, e, 2.5));
        }
      }
      for (const t of [router, ...ups, norm]) expect(merged.tensors.get(t.name)!.bytes, t.name).toEqual(base.get(t.name)!.bytes);
    });
  }

  it('factors for fewer or more experts than the base are refused in one line naming the module and both counts (mlx-lm fails to load them)', async () => {
    for (const count of [2, 4]) {
      const files = mlxFolder(lora(1, 2.5), switchFactors(`${L}.mlp.switch_mlp.up_proj`, count, 1, HIDDEN, FFN));
      expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files }] })).toEqual([
        `adapter0: module "${L}.mlp.switch_mlp.up_proj": its factors are stacked for ${count} experts, but the base has 3 (${L}.mlp.experts.0–2.up_proj, expert 0 on ${L}.mlp.experts.0.up_proj.weight); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
      ]);
    }
  });

  it('Mixtral (block_sparse_moe.experts.K.w1): two experts\' factors on three are refused in one line; a PEFT LoRA on some experts merges those alone, as PEFT does', async () => {
    const w1 = Array.from({ length: E }, (_, k) => randomTensor(`${M}.experts.${k}.w1.weight`, [FFN, HIDDEN], 'BF16', rand));
    const w2 = Array.from({ length: E }, (_, k) => randomTensor(`${M}.experts.${k}.w2.weight`, [HIDDEN, FFN], 'BF16', rand));
    const gate = randomTensor(`${M}.gate.weight`, [E, HIDDEN], 'BF16', rand);
    const mixtral = hfModelFolder([gate, ...w1, ...w2, norm], mixtralConfig);
    const two = mlxFolder(lora(1, 4), switchFactors(`${M}.switch_mlp.gate_proj`, 2, 1, HIDDEN, FFN));
    expect(await refusalsInMemory({ backend: backends.cpu!, base: mixtral, adapters: [{ files: two }] })).toEqual([
      `adapter0: module "${M}.switch_mlp.gate_proj": its factors are stacked for 2 experts, but the base has 3 (${M}.experts.0–2.w1, expert 0 on ${M}.experts.0.w1.weight); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
    ]);
    // PEFT wraps each expert's Linear it targets: experts 0 and 2 of w1 only.
    const tensors = [0, 2].flatMap((k) => [
      randomTensor(`base_model.model.${M}.experts.${k}.w1.lora_A.weight`, [1, HIDDEN], 'F32', rand, 0.5), randomTensor(`base_model.model.${M}.experts.${k}.w1.lora_B.weight`, [FFN, 1], 'F32', rand, 0.5),
    ]);
    const peft = peftFolder({ r: 1, lora_alpha: 3, target_modules: ['experts.0.w1', 'experts.2.w1'], base_model_name_or_path: 'mistralai/Mixtral-8x7B-v0.1' }, tensors);
    const prepared = await prepare(mixtral, peft);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backends.cpu!, undefined, 4096);
    const t = decoded(tensors);
    const base = decoded([gate, ...w1, ...w2, norm]);
    for (let k = 0; k < E; k++) {
      const key = `${M}.experts.${k}.w1.weight`;
      if (k === 1) {
        expect(merged.tensors.get(key)!.bytes).toEqual(base.get(key)!.bytes);
        continue;
      }
      const A = t.get(`base_model.model.${M}.experts.${k}.w1.lora_A.weight`)!;
      const B = t.get(`base_model.model.${M}.experts.${k}.w1.lora_B.weight`)!;
      const w = Float64Array.from(base.get(key)!.values);
      for (let o = 0; o < FFN; o++) for (let i = 0; i < HIDDEN; i++) w[o * HIDDEN + i] += 3 * B.values[o] * A.values[i];
      expectValues(key, merged.tensors.get(key)!, w);
    }
  });
});

describe('an unquantized mlx-lm MoE checkpoint: float switch_mlp experts (E, out, in)', () => {
  // As mlx_lm.convert (no -q) or mlx_lm.fuse --dequantize writes Qwen3-MoE: every weight bf16, the experts stacked.
  const MLX = { format: 'mlx' };
  const stackedTensor = (stem: string, out: number, inF: number, dtype: 'BF16' | 'F16' | 'F32') => randomTensor(`${stem}.weight`, [E, out, inF], dtype, rand);
  const gate = stackedTensor(`${L}.mlp.switch_mlp.gate_proj`, FFN, HIDDEN, 'BF16');
  const up = stackedTensor(`${L}.mlp.switch_mlp.up_proj`, FFN, HIDDEN, 'BF16');
  const down = stackedTensor(`${L}.mlp.switch_mlp.down_proj`, HIDDEN, FFN, 'BF16');
  const router = randomTensor(`${L}.mlp.gate.weight`, [E, HIDDEN], 'BF16', rand);
  const qProj = randomTensor(`${L}.self_attn.q_proj.weight`, [HIDDEN, HIDDEN], 'BF16', rand);
  const embed = randomTensor('model.embed_tokens.weight', [VOCAB, HIDDEN], 'BF16', rand);
  const head = randomTensor('lm_head.weight', [VOCAB, HIDDEN], 'BF16', rand);
  const qwenTensors = [embed, qProj, router, gate, up, down, norm, head];
  const qwen = hfModelFolder(qwenTensors, qwenConfig, { shards: 2, metadata: MLX });
  const factors = [
    ...switchFactors(`${L}.mlp.switch_mlp.gate_proj`, E, 1, HIDDEN, FFN), ...switchFactors(`${L}.mlp.switch_mlp.down_proj`, E, 1, FFN, HIDDEN),
    randomTensor(`${L}.self_attn.q_proj.lora_a`, [HIDDEN, 1], 'F32', rand, 0.5), randomTensor(`${L}.self_attn.q_proj.lora_b`, [1, HIDDEN], 'F32', rand, 0.5),
  ];
  const adapter = mlxFolder({ model: 'mlx-community/Qwen3-30B-A3B-bf16', ...lora(1, 2.5), num_layers: 1 }, factors);

  /** LoRASwitchLinear.fuse on a stacked tensor: every expert's slab, stacked again. */
  const stackedTruth = (w: DecodedTensor, a: DecodedTensor, b: DecodedTensor, scale: number) => {
    const [, out, inF] = w.shape;
    const merged = new Float64Array(w.values.length);
    for (let e = 0; e < E; e++) merged.set(expertTruth(w.values.slice(e * out * inF, (e + 1) * out * inF), a, b, e, scale), e * out * inF);
    return merged;
  };

  for (const kind of KINDS) {
    it(`LoRASwitchLinear on each expert's rows (slabs ending inside experts), written (E, out, in) in bf16 with format mlx, on ${kind}`, async () => {
      const prepared = await prepare(qwen, adapter);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backends[kind]!, undefined, 4096);
      const a = decoded(factors);
      const base = decoded(qwenTensors);
      for (const proj of ['gate_proj', 'down_proj']) {
        const p = `${L}.mlp.switch_mlp.${proj}`;
        const got = merged.tensors.get(`${p}.weight`)!;
        expect([got.dtype, got.shape]).toEqual(['BF16', base.get(`${p}.weight`)!.shape]);
        expectValues(`${p}.weight`, got, stackedTruth(base.get(`${p}.weight`)!, a.get(`${p}.lora_a`)!, a.get(`${p}.lora_b`)!, 2.5));
      }
      // LoRALinear on q_proj: W + scale·(lora_a·lora_b)ᵀ.
      const qa = a.get(`${L}.self_attn.q_proj.lora_a`)!;
      const qb = a.get(`${L}.self_attn.q_proj.lora_b`)!;
      const q = Float64Array.from(base.get(qProj.name)!.values);
      for (let o = 0; o < HIDDEN; o++) for (let i = 0; i < HIDDEN; i++) q[o * HIDDEN + i] += 2.5 * qa.values[i] * qb.values[o];
      expectValues(qProj.name, merged.tensors.get(qProj.name)!, q);
      for (const t of [embed, router, up, norm, head]) {
        expect(merged.tensors.get(t.name)!.shape, t.name).toEqual(t.shape);
        expect(merged.tensors.get(t.name)!.bytes, t.name).toEqual(base.get(t.name)!.bytes);
      }
      expect([...merged.metadata.values()].map((m) => m.format)).toEqual(['mlx', 'mlx']);
    });
  }

  it('through the CLI: `loramerge merge` writes the stacked experts merged in bf16, no --dtype needed', async () => {
    const { run, out } = await mergeFolders(dirs.make, qwen, adapter);
    expect(run.code, run.stderr).toBe(0);
    const merged = readMergedFolder(new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))])));
    const a = decoded(factors);
    const p = `${L}.mlp.switch_mlp.down_proj`;
    const got = merged.tensors.get(`${p}.weight`)!;
    expect([got.dtype, got.shape]).toEqual(['BF16', [E, HIDDEN, FFN]]);
    expectValues(`${p}.weight`, got, stackedTruth(decoded([down]).get(down.name)!, a.get(`${p}.lora_a`)!, a.get(`${p}.lora_b`)!, 2.5));
    expect(merged.json('config.json').num_experts).toBe(E);
  });

  it('Mixtral in f16: LoRASwitchLinear (r = 2) on switch_mlp.gate_proj and a PEFT LoRA on experts.2.w2 in one merge, each on its expert\'s rows', async () => {
    const w1 = stackedTensor(`${M}.switch_mlp.gate_proj`, FFN, HIDDEN, 'F16');
    const w2 = stackedTensor(`${M}.switch_mlp.down_proj`, HIDDEN, FFN, 'F16');
    const w3 = stackedTensor(`${M}.switch_mlp.up_proj`, FFN, HIDDEN, 'F16');
    const gateM = randomTensor(`${M}.gate.weight`, [E, HIDDEN], 'F16', rand);
    const tensors = [gateM, w1, w2, w3, norm];
    const mixtral = hfModelFolder(tensors, { ...mixtralConfig, torch_dtype: 'float16' }, { metadata: MLX });
    const switchA = switchFactors(`${M}.switch_mlp.gate_proj`, E, 2, HIDDEN, FFN);
    const peftT = [randomTensor(`base_model.model.${M}.experts.2.w2.lora_A.weight`, [1, FFN], 'F32', rand, 0.5), randomTensor(`base_model.model.${M}.experts.2.w2.lora_B.weight`, [HIDDEN, 1], 'F32', rand, 0.5)];
    const prepared = await prepareMerge(memoryInputFileSet(mixtral, 'base'), [
      { files: memoryInputFileSet(mlxFolder(lora(2, 0.75), switchA), 'switch'), weight: 1 },
      { files: memoryInputFileSet(peftFolder({ r: 1, lora_alpha: 5, target_modules: ['experts.2.w2'] }, peftT), 'peft'), weight: 1 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backends.cpu!, undefined, 4096);
    const base = decoded(tensors);
    const a = decoded(switchA);
    const got1 = merged.tensors.get(w1.name)!;
    expect([got1.dtype, got1.shape]).toEqual(['F16', [E, FFN, HIDDEN]]);
    expectValues(w1.name, got1, stackedTruth(base.get(w1.name)!, a.get(`${M}.switch_mlp.gate_proj.lora_a`)!, a.get(`${M}.switch_mlp.gate_proj.lora_b`)!, 0.75));
    // PEFT's Linear on expert 2 of w2 (down_proj): W + (α/r)·B·A = W + 5·B·A on rows [2·HIDDEN, 3·HIDDEN).
    const t = decoded(peftT);
    const A = t.get(`base_model.model.${M}.experts.2.w2.lora_A.weight`)!;
    const B = t.get(`base_model.model.${M}.experts.2.w2.lora_B.weight`)!;
    const want2 = Float64Array.from(base.get(w2.name)!.values);
    for (let o = 0; o < HIDDEN; o++) for (let i = 0; i < FFN; i++) want2[(2 * HIDDEN + o) * FFN + i] += 5 * B.values[o] * A.values[i];
    expect(merged.tensors.get(w2.name)!.shape).toEqual([E, HIDDEN, FFN]);
    expectValues(w2.name, merged.tensors.get(w2.name)!, want2);
    expect(merged.tensors.get(w3.name)!.bytes).toEqual(base.get(w3.name)!.bytes);
  });

  it('refused in one line: factors for another count of experts; a PEFT expert past E', async () => {
    const two = mlxFolder(lora(1, 2.5), switchFactors(`${L}.mlp.switch_mlp.up_proj`, 2, 1, HIDDEN, FFN));
    expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: two }] })).toEqual([
      `adapter0: module "${L}.mlp.switch_mlp.up_proj": its factors are stacked for 2 experts, but the base has 3 (${L}.mlp.experts.0–2.up_proj, expert 0 on ${L}.mlp.switch_mlp.up_proj.weight); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
    ]);
    const beyond = peftFolder({ r: 1, lora_alpha: 2, target_modules: ['up_proj'] }, [
      randomTensor(`base_model.model.${L}.mlp.experts.3.up_proj.lora_A.weight`, [1, HIDDEN], 'F32', rand), randomTensor(`base_model.model.${L}.mlp.experts.3.up_proj.lora_B.weight`, [FFN, 1], 'F32', rand),
    ]);
    expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: beyond }] })).toEqual([
      `adapter0: module "${L}.mlp.experts.3.up_proj": names expert 3, but ${L}.mlp.switch_mlp.up_proj.weight [3, 37, 44] stacks 3 experts`,
    ]);
  });

  describe('an mlx-lm full fine-tune (fine_tune_type "full") saving the stacked weight', () => {
    const full = (tensors: ReturnType<typeof randomTensor>[]) => mlxFolder({ fine_tune_type: 'full', lora_parameters: null, num_layers: 1 }, tensors);
    for (const kind of KINDS) {
      it(`replaces it whole, written (E, out, in) as saved, on ${kind}`, async () => {
        const trained = [randomTensor(up.name, [E, FFN, HIDDEN], 'BF16', rand), randomTensor(norm.name, [HIDDEN], 'BF16', rand)];
        const prepared = await prepare(qwen, full(trained));
        expect(prepared.plan.problems).toEqual([]);
        const merged = await mergeIntoFolder(prepared, backends[kind]!, undefined, 4096);
        const saved = decoded(trained);
        for (const t of trained) {
          expect(merged.tensors.get(t.name)!.shape, t.name).toEqual(t.shape);
          expect(merged.tensors.get(t.name)!.bytes, t.name).toEqual(saved.get(t.name)!.bytes);
        }
        expect(merged.tensors.get(gate.name)!.bytes).toEqual(decoded([gate]).get(gate.name)!.bytes);
      });
    }

    it('refuses a saved weight of another shape, the stacked rows flattened included, by name; and a stacked weight on a base with one tensor per expert', async () => {
      for (const shape of [[E * FFN, HIDDEN], [E + 1, FFN, HIDDEN], [E, HIDDEN, FFN]]) {
        expect(await refusalsInMemory({ backend: backends.cpu!, base: qwen, adapters: [{ files: full([randomTensor(up.name, shape, 'BF16', rand)]) }] })).toEqual([
          `adapter0: module "${up.name}": replacement (${shape.join(', ')}) does not match base ${up.name} (3, 37, 44)`,
        ]);
      }
      const perExpert = hfModelFolder([router, ...Array.from({ length: E }, (_, k) => randomTensor(`${L}.mlp.experts.${k}.up_proj.weight`, [FFN, HIDDEN], 'BF16', rand)), norm], qwenConfig);
      expect(await refusalsInMemory({ backend: backends.cpu!, base: perExpert, adapters: [{ files: full([randomTensor(up.name, [E, FFN, HIDDEN], 'BF16', rand)]) }] })).toEqual([
        `adapter0: module "${up.name}": saved tensor ${up.name}: the base holds this projection one tensor per expert (${L}.mlp.experts.0.up_proj.weight, …), which mlx-lm stacks into ${up.name} when it loads the checkpoint; a saved stacked weight is not split into them here: merge into the checkpoint as mlx-lm saves it (mlx_lm.convert, experts stacked)`,
      ]);
    });
  });
});

describe('the count on a GGUF base (llama.cpp stacks experts as rows of blk.N.ffn_*_exps)', () => {
  // qwen3moe as convert_hf_to_gguf writes it: experts.K.up_proj stacked into ffn_up_exps (E·ffn rows), expert_count 3.
  const metadata: Record<string, unknown> = { 'general.architecture': 'qwen3moe', 'qwen3moe.expert_count': E };
  const gguf = new ModuleLocator({
    tensors: new Map([['blk.0.ffn_up_exps.weight', { shape: [E * FFN, HIDDEN] }], ['blk.0.ffn_gate_inp.weight', { shape: [E, HIDDEN] }]]),
    metadata: (key) => metadata[key],
  });
  // The addresses mlx-lm's parser gives expert e of LoRASwitchLinear factors stacked for `count` experts.
  const at = (count: number, e: number) => gguf.locate({ path: `${L}.mlp.experts.${e}.up_proj`, flat: false, experts: { count, module: `${L}.mlp.switch_mlp.up_proj` } });

  it('places expert e on its rows when the counts match, and refuses another count as the module\'s', () => {
    expect(at(E, 2)).toMatchObject({ found: true, targets: [{ baseKey: 'blk.0.ffn_up_exps.weight', rows: [{ src: 0, dst: 2 * FFN, count: FFN }] }] });
    for (const count of [2, 4]) {
      expect(at(count, 0)).toEqual({
        found: false, code: 'SHAPE_MISMATCH', module: `${L}.mlp.switch_mlp.up_proj`,
        message: `its factors are stacked for ${count} experts, but the base has 3 (${L}.mlp.experts.0–2.up_proj, expert 0 on blk.0.ffn_up_exps.weight); mlx-lm loads LoRASwitchLinear factors only onto a layer of the model's own count of experts: merge into the model the adapter was trained on`,
      });
    }
  });
});
