/**
 * A PEFT LoRA trained on transformers 4's per-expert MoE modules (`mlp.experts.K.gate_proj`,
 * `up_proj`, `down_proj`; Mixtral's `block_sparse_moe.experts.K.w1` / `w3` / `w2` and its router
 * `block_sparse_moe.gate`) merged into a checkpoint that holds the experts fused as transformers 5
 * builds them: `mlp.experts.gate_up_proj` (E, 2·inter, hidden), each expert's gate rows before its up
 * rows (conversion_mapping.py: MergeModulelist(dim=0), then Concatenate(dim=1)), and
 * `mlp.experts.down_proj` (E, hidden, inter); Mixtral's router `mlp.gate.weight`.
 * The truth is written plainly: each fused tensor in float64, expert K's gate rows [0, inter) of its
 * slab moved by α/r·B·A of its gate_proj, its up rows [inter, 2·inter) by up_proj's, its down slab by
 * down_proj's, rounded once to the tensor's dtype; every other element bit-identical to the base.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mergeBackends } from './helpers/merge-backends.js';
import { roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareFolders, prepareOne, randomTensor, type Files, type MergedFolder } from './helpers/hf-folder.js';

const rand = seededRandom(50917);
const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);

const r = 2;
const alpha = 6;
const s = alpha / r;
const P = 'base_model.model';

/** One per-expert LoRA module: its path, the fused tensor, the expert, the first row of its slab it lands on, its out × in. */
interface ExpertLora {
  path: string;
  fused: string;
  expert: number;
  offset: number;
  out: number;
  inF: number;
}

function adapterOf(loras: readonly ExpertLora[], targets: string[], extra: object = {}): { files: Files; tensors: FixtureTensor[] } {
  const tensors = loras.flatMap((l) => [
    randomTensor(`${P}.${l.path}.lora_A.weight`, [r, l.inF], 'F32', rand, 0.5),
    randomTensor(`${P}.${l.path}.lora_B.weight`, [l.out, r], 'F32', rand, 0.5),
  ]);
  const config = { r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', peft_type: 'LORA', peft_version: '0.15.2', target_modules: targets, ...extra };
  return { files: peftFolder(config, tensors), tensors };
}

/** s·B·A of a module (out × in), in float64. */
function deltaOf(a: ReturnType<typeof decoded>, l: ExpertLora): Float64Array {
  const A = a.get(`${P}.${l.path}.lora_A.weight`)!.values;
  const B = a.get(`${P}.${l.path}.lora_B.weight`)!.values;
  const d = new Float64Array(l.out * l.inF);
  for (let o = 0; o < l.out; o++) for (let i = 0; i < l.inF; i++) for (let k = 0; k < r; k++) d[o * l.inF + i] += B[o * r + k] * A[k * l.inF + i];
  return d.map((v) => s * v);
}

/** Every element of every tensor: the fused ones moved where each module lands, once rounded; all else the base's bytes. */
function expectMerged(merged: MergedFolder, base: FixtureTensor[], adapter: FixtureTensor[], loras: readonly ExpertLora[], others: Readonly<Record<string, Float64Array>> = {}): void {
  const b = decoded(base);
  const a = decoded(adapter);
  const fusedKeys = new Set([...loras.map((l) => l.fused), ...Object.keys(others)]);
  for (const key of fusedKeys) {
    const w = b.get(key)!;
    const cols = w.shape[w.shape.length - 1];
    const rowsPerExpert = w.shape.length === 3 ? w.shape[1] : 0;
    const truth = Float64Array.from(w.values);
    const moved = new Set<number>();
    const add = (at: number, v: number) => {
      expect(moved.has(at), `${key}[${at}] is moved by one module only`).toBe(false);
      moved.add(at);
      truth[at] += v;
    };
    for (const l of loras.filter((x) => x.fused === key)) {
      expect(l.inF, `${l.path}: inputs`).toBe(cols);
      const d = deltaOf(a, l);
      for (let o = 0; o < l.out; o++) for (let i = 0; i < cols; i++) add((l.expert * rowsPerExpert + l.offset + o) * cols + i, d[o * cols + i]);
    }
    others[key]?.forEach((v, j) => add(j, v));
    const got = merged.tensors.get(key)!;
    expect([got.dtype, got.shape], key).toEqual([w.dtype, w.shape]);
    const size = w.dtype === 'F32' ? 4 : 2;
    const same = (j: number) => got.bytes.subarray(j * size, (j + 1) * size).every((x, n) => x === w.bytes[j * size + n]);
    let wrong = 0;
    let first = '';
    for (let j = 0; j < truth.length; j++) {
      const want = roundForDType(truth[j], w.dtype as 'F32' | 'BF16');
      if (moved.has(j) ? Object.is(got.values[j], want) : same(j)) continue;
      if (!wrong) first = `[${j}] (${moved.has(j) ? 'moved' : 'untouched'}): got ${got.values[j]}, want ${moved.has(j) ? want : w.values[j]}`;
      wrong++;
    }
    expect(wrong, `${key}: ${wrong} wrong elements, first ${first}`).toBe(0);
    expect(moved.size, `${key}: elements moved`).toBeGreaterThan(0);
  }
  for (const [key, t] of b) if (!fusedKeys.has(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(t.bytes);
}

// --- Qwen/Qwen3-30B-A3B as transformers 5 saves it, sizes scaled down: hidden 8, moe_intermediate 6, 4 experts, 2 layers.
const Q = { E: 4, H: 8, I: 6 };
const qwenConfig = {
  architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: Q.H, moe_intermediate_size: Q.I, intermediate_size: 16, num_experts: Q.E,
  num_experts_per_tok: 2, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16',
};
const qwenBase = (): FixtureTensor[] => [
  randomTensor('model.embed_tokens.weight', [32, Q.H], 'BF16', rand),
  ...[0, 1].flatMap((n) => [
    randomTensor(`model.layers.${n}.self_attn.q_proj.weight`, [8, Q.H], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.gate.weight`, [Q.E, Q.H], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.experts.gate_up_proj`, [Q.E, 2 * Q.I, Q.H], 'BF16', rand),
    randomTensor(`model.layers.${n}.mlp.experts.down_proj`, [Q.E, Q.H, Q.I], 'BF16', rand),
  ]),
  randomTensor('model.norm.weight', [Q.H], 'BF16', rand),
  randomTensor('lm_head.weight', [32, Q.H], 'BF16', rand),
];
const qwen = (layer: number, expert: number, proj: 'gate_proj' | 'up_proj' | 'down_proj'): ExpertLora => ({
  path: `model.layers.${layer}.mlp.experts.${expert}.${proj}`,
  fused: `model.layers.${layer}.mlp.experts.${proj === 'down_proj' ? 'down_proj' : 'gate_up_proj'}`,
  expert, offset: proj === 'up_proj' ? Q.I : 0, out: proj === 'down_proj' ? Q.H : Q.I, inF: proj === 'down_proj' ? Q.I : Q.H,
});
const ALL_QWEN = [0, 1].flatMap((n) => Array.from({ length: Q.E }, (_, e) => (['gate_proj', 'up_proj', 'down_proj'] as const).map((p) => qwen(n, e, p))).flat());
const SOME_QWEN = [qwen(0, 0, 'gate_proj'), qwen(0, 2, 'gate_proj'), qwen(0, 3, 'up_proj'), qwen(1, 1, 'down_proj')];

// --- mistralai/Mixtral-8x7B-v0.1 as transformers 5 saves it (f32), sizes scaled down: hidden 8, intermediate 4, 3 experts.
const M = { E: 3, H: 8, I: 4 };
const mixtralConfig = {
  architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: M.H, intermediate_size: M.I, num_local_experts: M.E, num_experts_per_tok: 2,
  num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'float32',
};
const mixtralBase = (): FixtureTensor[] => [
  randomTensor('model.embed_tokens.weight', [32, M.H], 'F32', rand),
  randomTensor('model.layers.0.self_attn.q_proj.weight', [8, M.H], 'F32', rand),
  randomTensor('model.layers.0.mlp.gate.weight', [M.E, M.H], 'F32', rand),
  randomTensor('model.layers.0.mlp.experts.gate_up_proj', [M.E, 2 * M.I, M.H], 'F32', rand),
  randomTensor('model.layers.0.mlp.experts.down_proj', [M.E, M.H, M.I], 'F32', rand),
  randomTensor('lm_head.weight', [32, M.H], 'F32', rand),
];
const mixtral = (expert: number, w: 'w1' | 'w2' | 'w3'): ExpertLora => ({
  path: `model.layers.0.block_sparse_moe.experts.${expert}.${w}`,
  fused: `model.layers.0.mlp.experts.${w === 'w2' ? 'down_proj' : 'gate_up_proj'}`,
  expert, offset: w === 'w3' ? M.I : 0, out: w === 'w2' ? M.H : M.I, inF: w === 'w2' ? M.I : M.H,
});

const problems = async (base: Files, adapter: Files) => {
  const prepared = await prepareOne(base, adapter);
  await prepared.close();
  return prepared.plan.problems.map((p) => p.message);
};

describe("a PEFT LoRA on transformers 4's per-expert modules, on a checkpoint with the experts fused as transformers 5 holds them", () => {
  for (const kind of ['cpu (js)', 'cpu (wasm)', 'webgpu'] as const) {
    it(`Qwen3-MoE, every expert's gate_proj, up_proj and down_proj of both layers: gate on rows [0, inter) of its slab, up on [inter, 2·inter), down on its slab of down_proj (bf16, ${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const base = qwenBase();
      const { files, tensors } = adapterOf(ALL_QWEN, ['gate_proj', 'up_proj', 'down_proj']);
      const prepared = await prepareOne(hfModelFolder(base, qwenConfig, { shards: 2 }), files);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.shape, u.rows, u.cols, new Set(u.terms.map((t) => t.layout))])).toEqual([0, 1].flatMap((n) => [
        [`model.layers.${n}.mlp.experts.gate_up_proj`, [Q.E, 2 * Q.I, Q.H], Q.E * 2 * Q.I, Q.H, new Set(['fused-expert-rows'])],
        [`model.layers.${n}.mlp.experts.down_proj`, [Q.E, Q.H, Q.I], Q.E * Q.H, Q.I, new Set(['fused-expert-rows'])],
      ]));
      expectMerged(await mergeIntoFolder(prepared, backend, undefined, 4096), base, tensors, ALL_QWEN);
    });

    it(`Qwen3-MoE, some experts only (gate of 0 and 2, up of 3, down of 1 in layer 1): the other experts' rows bit for bit (${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const base = qwenBase();
      const { files, tensors } = adapterOf(SOME_QWEN, ['experts.0.gate_proj', 'experts.2.gate_proj', 'experts.3.up_proj', 'experts.1.down_proj']);
      const prepared = await prepareOne(hfModelFolder(base, qwenConfig), files);
      expect(prepared.plan.problems).toEqual([]);
      expectMerged(await mergeIntoFolder(prepared, backend), base, tensors, SOME_QWEN);
    });
  }

  it.for(['cpu (js)', 'webgpu'] as const)("Mixtral's w1 / w3 / w2 under block_sparse_moe, which transformers 5 renames mlp, and its router block_sparse_moe.gate on mlp.gate.weight (f32, %s)", async (kind) => {
    const backend = backends[kind];
    if (!backend) throw new Error(`no ${kind} backend`);
    const base = mixtralBase();
    const loras = [mixtral(0, 'w1'), mixtral(0, 'w3'), mixtral(2, 'w3'), mixtral(1, 'w2'), mixtral(2, 'w2')];
    const { tensors } = adapterOf(loras, []);
    const router = [
      randomTensor(`${P}.model.layers.0.block_sparse_moe.gate.lora_A.weight`, [r, M.H], 'F32', rand, 0.5),
      randomTensor(`${P}.model.layers.0.block_sparse_moe.gate.lora_B.weight`, [M.E, r], 'F32', rand, 0.5),
    ];
    const files = peftFolder({ r, lora_alpha: alpha, target_modules: ['w1', 'w2', 'w3', 'gate'], peft_version: '0.15.2' }, [...tensors, ...router]);
    const prepared = await prepareOne(hfModelFolder(base, mixtralConfig), files);
    expect(prepared.plan.problems).toEqual([]);
    const gate = deltaOf(decoded(router), { path: 'model.layers.0.block_sparse_moe.gate', fused: '', expert: 0, offset: 0, out: M.E, inF: M.H });
    expectMerged(await mergeIntoFolder(prepared, backend), base, tensors, loras, { 'model.layers.0.mlp.gate.weight': gate });
  });

  it.for(['cpu (js)', 'webgpu'] as const)("a PEFT LoKr with both factors full (a dense ΔW read by rows) on expert 2's up_proj and expert 0's down_proj (%s)", async (kind) => {
    const backend = backends[kind];
    if (!backend) throw new Error(`no ${kind} backend`);
    // ΔW = kron(lokr_w1 (a, c), lokr_w2 (b, d)) at α/r = 1, (a·b, c·d).
    const kron = (l: ExpertLora, [a1, c1, b1, d1]: number[]) => {
      const w1 = randomTensor(`${P}.${l.path}.lokr_w1`, [a1, c1], 'F32', rand, 0.5);
      const w2 = randomTensor(`${P}.${l.path}.lokr_w2`, [b1, d1], 'F32', rand, 0.5);
      const f = decoded([w1, w2]);
      const [x, y] = [f.get(w1.name)!.values, f.get(w2.name)!.values];
      const delta = new Float64Array(a1 * b1 * c1 * d1);
      for (let o1 = 0; o1 < a1; o1++) for (let o2 = 0; o2 < b1; o2++) for (let i1 = 0; i1 < c1; i1++) for (let i2 = 0; i2 < d1; i2++) delta[(o1 * b1 + o2) * c1 * d1 + i1 * d1 + i2] = x[o1 * c1 + i1] * y[o2 * d1 + i2];
      return { l, tensors: [w1, w2], delta };
    };
    const mods = [kron(qwen(0, 2, 'up_proj'), [2, 2, 3, 4]), kron(qwen(0, 0, 'down_proj'), [2, 2, 4, 3])];
    const base = qwenBase();
    const files = peftFolder({ peft_type: 'LOKR', task_type: 'CAUSAL_LM', peft_version: '0.15.2', r: 1, alpha: 1, rank_dropout: 0, module_dropout: 0, use_effective_conv2d: false, decompose_both: false, decompose_factor: -1, target_modules: ['up_proj', 'down_proj'] }, mods.flatMap((m) => m.tensors));
    const prepared = await prepareOne(hfModelFolder(base, qwenConfig), files);
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.flatMap((u) => u.terms.map((t) => [t.layout, t.module.update.kind]))).toEqual([['fused-expert-rows', 'dense'], ['fused-expert-rows', 'dense']]);
    const merged = await mergeIntoFolder(prepared, backend, undefined, 4096);
    const b = decoded(base);
    for (const m of mods) {
      const w = b.get(m.l.fused)!;
      const cols = w.shape[2];
      const truth = Float64Array.from(w.values);
      for (let o = 0; o < m.l.out; o++) for (let i = 0; i < cols; i++) truth[(m.l.expert * w.shape[1] + m.l.offset + o) * cols + i] += m.delta[o * cols + i];
      expect(Array.from(merged.tensors.get(m.l.fused)!.values), m.l.path).toEqual(Array.from(truth, (v) => roundForDType(v, 'BF16')));
    }
  });

  it("the same bytes as the adapter PEFT converts it to for transformers 5 (transformers_weight_conversion.py: experts stacked, gate's and up's factors block-diagonal, r and α doubled on gate_up_proj)", async () => {
    const base = qwenBase();
    const loras = ALL_QWEN.filter((l) => l.path.startsWith('model.layers.0.'));
    const { files, tensors } = adapterOf(loras, ['gate_proj', 'up_proj', 'down_proj']);
    const a = decoded(tensors);
    const factor = (e: number, proj: string, f: 'A' | 'B') => a.get(`${P}.model.layers.0.mlp.experts.${e}.${proj}.lora_${f}.weight`)!.values;
    const { E, H, I } = Q;
    // gate_up_proj (inner wrapper, `base_layer`): lora_A (E·2r, H), expert e's rows [e·2r, e·2r + r) gate's A, then up's;
    // lora_B (2I, 2r·E), its column k·E + e: gate's B on rows [0, I) for k < r, up's on [I, 2I) for k ≥ r, zeros elsewhere.
    const gateUpA = new Float64Array(E * 2 * r * H);
    const gateUpB = new Float64Array(2 * I * 2 * r * E);
    // down_proj (outer wrapper): lora_A (E·r, I), lora_B (H, r·E), its column k·E + e.
    const downA = new Float64Array(E * r * I);
    const downB = new Float64Array(H * r * E);
    for (let e = 0; e < E; e++) {
      (['gate_proj', 'up_proj'] as const).forEach((proj, half) => {
        const A = factor(e, proj, 'A');
        const B = factor(e, proj, 'B');
        for (let k = 0; k < r; k++) for (let i = 0; i < H; i++) gateUpA[(e * 2 * r + half * r + k) * H + i] = A[k * H + i];
        for (let o = 0; o < I; o++) for (let k = 0; k < r; k++) gateUpB[(half * I + o) * 2 * r * E + (half * r + k) * E + e] = B[o * r + k];
      });
      const A = factor(e, 'down_proj', 'A');
      const B = factor(e, 'down_proj', 'B');
      downA.set(A, e * r * I);
      for (let o = 0; o < H; o++) for (let k = 0; k < r; k++) downB[o * r * E + k * E + e] = B[o * r + k];
    }
    const at = 'base_model.model.model.layers.0.mlp.experts';
    const converted = peftFolder({
      r, lora_alpha: alpha, target_modules: [], target_parameters: ['gate_up_proj', 'down_proj'], peft_version: '0.20.0',
      rank_pattern: { '.*\\.gate_up_proj': 2 * r }, alpha_pattern: { '.*\\.gate_up_proj': 2 * alpha },
    }, [
      { name: `${at}.base_layer.lora_A.weight`, dtype: 'F32', shape: [E * 2 * r, H], data: Array.from(gateUpA) },
      { name: `${at}.base_layer.lora_B.weight`, dtype: 'F32', shape: [2 * I, 2 * r * E], data: Array.from(gateUpB) },
      { name: `${at}.lora_A.weight`, dtype: 'F32', shape: [E * r, I], data: Array.from(downA) },
      { name: `${at}.lora_B.weight`, dtype: 'F32', shape: [H, r * E], data: Array.from(downB) },
    ]);
    const perExpert = await prepareOne(hfModelFolder(base, qwenConfig), files);
    const fused = await prepareOne(hfModelFolder(base, qwenConfig), converted);
    expect([perExpert.plan.problems, fused.plan.problems]).toEqual([[], []]);
    const one = await mergeIntoFolder(perExpert, backends['cpu (js)']!);
    const two = await mergeIntoFolder(fused, backends['cpu (js)']!);
    expectMerged(one, base, tensors, loras);
    for (const key of ['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.0.mlp.experts.down_proj']) {
      expect(two.tensors.get(key)!.bytes, key).toEqual(one.tensors.get(key)!.bytes);
    }
  });

  it('a LoRA on the fused parameter (target_parameters) and one on per-expert modules, in one merge: both land, the tensor seen as the same rows', async () => {
    const base = qwenBase();
    const key = 'model.layers.0.mlp.experts.gate_up_proj';
    // PEFT ≥ 0.19.1 on (E, out, in): lora_A (r·E, hidden), expert e's rows e·r…; lora_B (2·inter, r·E), its column k at k·E + e.
    const A = randomTensor(`${P}.model.layers.0.mlp.experts.lora_A.weight`, [r * Q.E, Q.H], 'F32', rand, 0.5);
    const B = randomTensor(`${P}.model.layers.0.mlp.experts.lora_B.weight`, [2 * Q.I, r * Q.E], 'F32', rand, 0.5);
    const param = peftFolder({ r, lora_alpha: alpha, target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'], peft_version: '0.20.0' }, [A, B]);
    const loras = [qwen(0, 1, 'up_proj')];
    const { files, tensors } = adapterOf(loras, ['up_proj']);
    const prepared = await prepareFolders(hfModelFolder(base, qwenConfig), [param, files]);
    expect(prepared.plan.problems).toEqual([]);
    const f = decoded([A, B]);
    const a = f.get(A.name)!.values;
    const bv = f.get(B.name)!.values;
    const param64 = new Float64Array(Q.E * 2 * Q.I * Q.H);
    for (let e = 0; e < Q.E; e++) for (let o = 0; o < 2 * Q.I; o++) for (let i = 0; i < Q.H; i++) {
      let d = 0;
      for (let k = 0; k < r; k++) d += bv[o * r * Q.E + k * Q.E + e] * a[(e * r + k) * Q.H + i];
      param64[(e * 2 * Q.I + o) * Q.H + i] = s * d;
    }
    // The two changes add on rows both reach: the truth here is the sum, so that check is done apart.
    const merged = await mergeIntoFolder(prepared, backends['cpu (js)']!);
    const w = decoded(base).get(key)!;
    const d = deltaOf(decoded(tensors), loras[0]);
    const truth = Float64Array.from(w.values, (v, j) => v + param64[j]);
    for (let o = 0; o < Q.I; o++) for (let i = 0; i < Q.H; i++) truth[(1 * 2 * Q.I + Q.I + o) * Q.H + i] += d[o * Q.H + i];
    expect(Array.from(merged.tensors.get(key)!.values)).toEqual(Array.from(truth, (x) => roundForDType(x, 'BF16')));
  });

  it('refused in one line naming the module: another intermediate size, another hidden size, an expert past the last, DoRA, and per-expert names on gpt-oss (experts (E, in, out))', async () => {
    const folder = hfModelFolder(qwenBase(), qwenConfig);
    const gu = 'model.layers.0.mlp.experts.gate_up_proj';
    const dp = 'model.layers.0.mlp.experts.down_proj';
    // gate_proj of a model with inter 7: 7 rows where its half of the slab has 6.
    expect(await problems(folder, adapterOf([{ ...qwen(0, 1, 'gate_proj'), out: 7 }], ['gate_proj']).files)).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.1.gate_proj": ΔW (7, 8) does not fit where fused-expert-rows puts it (rows 12–17 of ${gu}): ΔW rows 6–6 land nowhere`,
    ]);
    // down_proj of a model with hidden 10: 10 inputs… and of one with inter 5 (5 inputs where the stack has 6 columns).
    expect(await problems(folder, adapterOf([{ ...qwen(0, 2, 'down_proj'), inF: 5 }], ['down_proj']).files)).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.2.down_proj": ΔW (8, 5) does not fit base ${dp} (4, 8, 6) seen as 32 × 6: ΔW has 5 inputs, the base 6`,
    ]);
    expect(await problems(folder, adapterOf([qwen(0, 4, 'up_proj')], ['up_proj']).files)).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.4.up_proj": names expert 4's up_proj of a model whose experts this base stores fused in ${gu} [4, 12, 8]; it holds 4 experts, none numbered 4`,
    ]);
    const dora = adapterOf([qwen(0, 1, 'gate_proj')], ['gate_proj'], { use_dora: true });
    dora.tensors.push(randomTensor(`${P}.model.layers.0.mlp.experts.1.gate_proj.lora_magnitude_vector`, [Q.I], 'F32', rand));
    expect(await problems(folder, peftFolder({ r, lora_alpha: alpha, use_dora: true, target_modules: ['gate_proj'] }, dora.tensors))).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.1.gate_proj": DoRA on a module that lands on part of a tensor (rows 12–17 of ${gu}) is not supported`,
    ]);
    // gpt-oss: GptOssExperts' gate_up_proj (E, hidden, 2·inter), gate and up in alternate columns.
    const gptOss = hfModelFolder([
      randomTensor('model.layers.0.mlp.router.weight', [3, 8], 'BF16', rand),
      randomTensor(gu, [3, 8, 12], 'BF16', rand), randomTensor(dp, [3, 6, 8], 'BF16', rand),
    ], { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 8, intermediate_size: 6, num_local_experts: 3 });
    expect(await problems(gptOss, adapterOf([{ ...qwen(0, 1, 'gate_proj'), out: 6 }], ['gate_proj']).files)).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.1.gate_proj": names expert 1's gate_proj of a model whose experts this base stores fused in ${gu} [3, 8, 12]; GptOssForCausalLM stores its experts (experts, in, out) with gate and up in alternate columns, and no trainer of that model names its experts' projections one by one: merge into the checkpoint the adapter was trained on`,
    ]);
  });

  it('--dry-run shows where each expert lands: its rows of the fused tensor (the CLI, built)', async () => {
    const base = temp.make(hfModelFolder(qwenBase(), qwenConfig));
    const adapter = temp.make(adapterOf(SOME_QWEN, ['gate_proj', 'up_proj', 'down_proj']).files);
    const dry = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', `${temp.make()}/merged`, '--backend', 'cpu', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    const lines = (dry.stdout + dry.stderr).split('\n');
    // Expert 2's gate: rows [2·12, 2·12 + 6) of (4·12) × 8; expert 3's up: [3·12 + 6, 4·12); expert 1's down: [8, 16) of (4·8) × 6.
    expect(lines.find((l) => l.includes('model.layers.0.mlp.experts.gate_up_proj [4×12×8]')), dry.stdout).toContain(
      'model.layers.0.mlp.experts.0.gate_proj LoRA r=2 scale=3 → rows 0–5, then model.layers.0.mlp.experts.2.gate_proj LoRA r=2 scale=3 → rows 24–29 (from 0–5), then model.layers.0.mlp.experts.3.up_proj LoRA r=2 scale=3 → rows 42–47 (from 0–5)',
    );
    expect(lines.find((l) => l.includes('model.layers.1.mlp.experts.down_proj [4×8×6]')), dry.stdout).toContain('model.layers.1.mlp.experts.1.down_proj LoRA r=2 scale=3 → rows 8–15 (from 0–7)');
  });
});
