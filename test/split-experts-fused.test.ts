/**
 * A LoRA on one expert's Linear layer of experts a trainer split into Linear layers, merged into a
 * checkpoint that stores the experts fused as 3-D parameters (E, in, out), as the trainer's own
 * merge puts it:
 * - Unsloth's gpt-oss (`mlp.experts.gate_up_projs.K`, Linear(hidden, 2·inter) whose outputs keep
 *   gpt-oss's interleaved gate/up columns; `down_projs.K`, Linear(inter, hidden)) on
 *   openai/gpt-oss in bf16: unsloth_zoo folds expert K's LoRA into `W[K].T` and writes it back
 *   transposed, so ΔWᵀ lands on the whole slab K;
 * - axolotl's linearized Llama 4 (`feed_forward.experts.gate_projs.K` / `up_projs.K`,
 *   Linear(hidden, inter); `down_projs.K`, Linear(inter, hidden)) on meta-llama's checkpoint:
 *   `delinearize-llama4` writes gate_up_proj[K] = cat(gate.T, up.T) on the last axis, so gate's
 *   ΔWᵀ lands on slab K's first `inter` columns and up's on the last.
 * The truth is written plainly: each fused tensor in float64, expert K's slab's columns moved by
 * α/r·(B·A)ᵀ, rounded once to bf16; every other element bit-identical to the base.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mergeBackends } from './helpers/merge-backends.js';
import { spansOverlap, type RowSpan } from '../src/plan/row-spans.js';
import { roundForDType, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareFolders, prepareOne, randomTensor, type Files, type MergedFolder } from './helpers/hf-folder.js';

const rand = seededRandom(4121);
const backends = mergeBackends({ cpu: 'both' });
const temp = tempDirs();
afterAll(temp.removeAll);

const r = 2;
const alpha = 5;
const s = alpha / r;

/** A LoRA on a split expert's Linear: its module path, the fused key, the expert, and which columns of the slab (its out × in). */
interface SplitLora {
  path: string;
  fused: string;
  expert: number;
  /** The slab's columns the Linear's outputs are, in order. */
  columns: (o: number) => number;
  out: number;
  inF: number;
}

function adapterOf(loras: readonly SplitLora[], extra: object = {}): { files: Files; tensors: FixtureTensor[] } {
  const tensors = loras.flatMap((l) => [
    randomTensor(`base_model.model.${l.path}.lora_A.weight`, [r, l.inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${l.path}.lora_B.weight`, [l.out, r], 'F32', rand, 0.5),
  ]);
  const config = {
    r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', peft_type: 'LORA', peft_version: '0.17.1',
    // PEFT matches a listed name as the module path's tail: each expert's Linear by `gate_up_projs.1`.
    target_modules: [...new Set(loras.map((l) => l.path.split('.').slice(-2).join('.')))], ...extra,
  };
  return { files: peftFolder(config, tensors), tensors };
}

/**
 * Every element of every fused tensor: on expert K's slab, the Linear's columns get
 * W[K][i][col(o)] + s·Σ_k B[o][k]·A[k][i] rounded once to bf16; all else the base's bits.
 */
function expectSlabs(merged: MergedFolder, base: FixtureTensor[], adapter: FixtureTensor[], loras: readonly SplitLora[], deltaOf?: (l: SplitLora) => Float64Array, alsoChanged: readonly string[] = []): void {
  const b = decoded(base);
  const a = decoded(adapter);
  // s·B·A of a LoRA (out × in), or the ΔW given.
  const delta = deltaOf ?? ((l: SplitLora) => {
    const A = a.get(`base_model.model.${l.path}.lora_A.weight`)!;
    const B = a.get(`base_model.model.${l.path}.lora_B.weight`)!;
    const d = new Float64Array(l.out * l.inF);
    for (let o = 0; o < l.out; o++) for (let i = 0; i < l.inF; i++) for (let k = 0; k < r; k++) d[o * l.inF + i] += B.values[o * r + k] * A.values[k * l.inF + i];
    return d.map((v) => s * v);
  });
  const fusedKeys = new Set(loras.map((l) => l.fused));
  for (const key of fusedKeys) {
    const w = b.get(key)!;
    const [, inF, cols] = w.shape;
    const truth = Float64Array.from(w.values);
    const moved = new Set<number>();
    for (const l of loras.filter((x) => x.fused === key)) {
      const d = delta(l);
      for (let o = 0; o < l.out; o++) {
        for (let i = 0; i < inF; i++) {
          const at = (l.expert * inF + i) * cols + l.columns(o);
          expect(moved.has(at), `${key}[${at}] is moved by one Linear only`).toBe(false);
          moved.add(at);
          truth[at] += d[o * inF + i];
        }
      }
    }
    const got = merged.tensors.get(key)!;
    expect([got.dtype, got.shape], key).toEqual(['BF16', w.shape]);
    const bytes = (j: number, t: { bytes: Uint8Array }) => t.bytes[2 * j] | (t.bytes[2 * j + 1] << 8);
    let wrong = 0;
    let first = '';
    for (let j = 0; j < truth.length; j++) {
      const ok = moved.has(j) ? Object.is(got.values[j], roundForDType(truth[j], 'BF16')) : bytes(j, got) === bytes(j, w);
      if (ok) continue;
      if (!wrong) first = `[${j}] (${moved.has(j) ? 'moved' : 'untouched'}): got ${got.values[j]}, want ${moved.has(j) ? roundForDType(truth[j], 'BF16') : w.values[j]}`;
      wrong++;
    }
    expect(wrong, `${key}: ${wrong} wrong elements, first ${first}`).toBe(0);
    expect(moved.size, `${key}: elements moved`).toBeGreaterThan(0);
    expect(w.values.some((v, j) => Object.is(v, -0) && !moved.has(j)), `${key} holds −0 where nothing is added`).toBe(true);
  }
  for (const [key, t] of b) if (!fusedKeys.has(key) && !alsoChanged.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(t.bytes);
}

/**
 * A fused expert tensor as a dequantized gpt-oss holds it: random, with −0 at every 5th element
 * (MXFP4's code 8), which rows no Linear reaches keep bit for bit.
 */
function fusedTensor(name: string, shape: number[]): FixtureTensor {
  const t = randomTensor(name, shape, 'BF16', rand);
  return { ...t, data: Array.from(t.data as ArrayLike<number>, (v, j) => (j % 5 === 0 ? -0 : v)) };
}

// --- openai/gpt-oss-20b in bf16 (unsloth/gpt-oss-20b-BF16), sizes scaled down: hidden 8, inter 6, 3 experts.
const G = { E: 3, H: 8, I: 6 };
const gptOssConfig = { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: G.H, intermediate_size: G.I, num_local_experts: G.E, tie_word_embeddings: false, torch_dtype: 'bfloat16' };
const gptOssBase = (): FixtureTensor[] => [
  randomTensor('model.embed_tokens.weight', [32, G.H], 'BF16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.weight', [16, G.H], 'BF16', rand),
  randomTensor('model.layers.0.mlp.router.weight', [G.E, G.H], 'BF16', rand),
  // GptOssExperts: gate_up_proj (E, hidden, 2·inter), gate and up in alternate columns; down_proj (E, inter, hidden).
  fusedTensor('model.layers.0.mlp.experts.gate_up_proj', [G.E, G.H, 2 * G.I]),
  randomTensor('model.layers.0.mlp.experts.gate_up_proj_bias', [G.E, 2 * G.I], 'BF16', rand),
  fusedTensor('model.layers.0.mlp.experts.down_proj', [G.E, G.I, G.H]),
  randomTensor('model.layers.0.mlp.experts.down_proj_bias', [G.E, G.H], 'BF16', rand),
  fusedTensor('model.layers.1.mlp.experts.gate_up_proj', [G.E, G.H, 2 * G.I]),
  fusedTensor('model.layers.1.mlp.experts.down_proj', [G.E, G.I, G.H]),
  randomTensor('lm_head.weight', [32, G.H], 'BF16', rand),
];
/** Unsloth's Linear layers: gate_up_projs.K (2·inter, hidden) the whole slab K of gate_up_proj transposed, interleaving kept. */
const gateUp = (layer: number, expert: number): SplitLora => ({ path: `model.layers.${layer}.mlp.experts.gate_up_projs.${expert}`, fused: `model.layers.${layer}.mlp.experts.gate_up_proj`, expert, columns: (o) => o, out: 2 * G.I, inF: G.H });
const down = (layer: number, expert: number): SplitLora => ({ path: `model.layers.${layer}.mlp.experts.down_projs.${expert}`, fused: `model.layers.${layer}.mlp.experts.down_proj`, expert, columns: (o) => o, out: G.H, inF: G.I });
const UNSLOTH = [gateUp(0, 1), gateUp(0, 2), down(0, 0), down(1, 2)];

// --- meta-llama/Llama-4-Scout-17B-16E-Instruct, sizes scaled down: hidden 8, inter 6, 4 experts.
const L = { E: 4, H: 8, I: 6 };
const llama4Config = {
  architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', tie_word_embeddings: false,
  text_config: { model_type: 'llama4_text', hidden_size: L.H, intermediate_size: L.I, intermediate_size_mlp: 12, num_local_experts: L.E, vocab_size: 32, tie_word_embeddings: false },
  vision_config: { model_type: 'llama4_vision_model', hidden_size: 8 },
};
const llama4Base = (): FixtureTensor[] => [
  randomTensor('language_model.model.embed_tokens.weight', [32, L.H], 'BF16', rand),
  randomTensor('language_model.model.layers.0.self_attn.q_proj.weight', [8, L.H], 'BF16', rand),
  randomTensor('language_model.model.layers.0.feed_forward.router.weight', [L.E, L.H], 'BF16', rand),
  // Llama4TextExperts: gate_up_proj (E, hidden, 2·inter), gate's columns then up's; down_proj (E, inter, hidden).
  fusedTensor('language_model.model.layers.0.feed_forward.experts.gate_up_proj', [L.E, L.H, 2 * L.I]),
  fusedTensor('language_model.model.layers.0.feed_forward.experts.down_proj', [L.E, L.I, L.H]),
  randomTensor('language_model.model.layers.0.feed_forward.shared_expert.gate_proj.weight', [L.I, L.H], 'BF16', rand),
  randomTensor('language_model.lm_head.weight', [32, L.H], 'BF16', rand),
  randomTensor('vision_model.model.layers.0.mlp.fc1.weight', [16, 8], 'BF16', rand),
];
const FF = 'language_model.model.layers.0.feed_forward.experts';
/** axolotl's Linear layers: gate_projs.K / up_projs.K (inter, hidden), down_projs.K (hidden, inter). */
const half = (name: 'gate_projs' | 'up_projs', expert: number): SplitLora => ({ path: `${FF}.${name}.${expert}`, fused: `${FF}.gate_up_proj`, expert, columns: (o) => (name === 'up_projs' ? L.I + o : o), out: L.I, inF: L.H });
const AXOLOTL = [half('gate_projs', 1), half('up_projs', 1), half('up_projs', 3), { path: `${FF}.down_projs.2`, fused: `${FF}.down_proj`, expert: 2, columns: (o: number) => o, out: L.H, inF: L.I }];

const problems = async (base: Files, adapter: Files) => {
  const prepared = await prepareOne(base, adapter);
  await prepared.close();
  return prepared.plan.problems.map((p) => p.message);
};

describe("a LoRA on one expert's Linear layer of split experts, on a checkpoint with the experts fused", () => {
  for (const kind of ['cpu (js)', 'cpu (wasm)', 'webgpu'] as const) {
    it(`Unsloth's gpt-oss gate_up_projs.K / down_projs.K: ΔWᵀ on the whole slab K, interleaved gate/up columns as they are (${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const base = gptOssBase();
      const { files, tensors } = adapterOf(UNSLOTH);
      const prepared = await prepareOne(hfModelFolder(base, gptOssConfig, { shards: 2 }), files);
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.layout)])).toEqual(expect.arrayContaining([
        ['model.layers.0.mlp.experts.gate_up_proj', ['linearized-experts', 'linearized-experts']],
      ]));
      expectSlabs(await mergeIntoFolder(prepared, backend), base, tensors, UNSLOTH);
    });

    it(`Unsloth's gpt-oss with lora_bias: each Linear's lora_B.bias on expert K's row of gate_up_proj_bias / down_proj_bias, its bias (${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const base = gptOssBase();
      const loras = [gateUp(0, 1), down(0, 2)];
      const { tensors } = adapterOf(loras);
      const biasB = loras.map((l) => randomTensor(`base_model.model.${l.path}.lora_B.bias`, [l.out], 'F32', rand, 0.5));
      const files = peftFolder({ r, lora_alpha: alpha, lora_bias: true, target_modules: ['gate_up_projs.1', 'down_projs.2'], peft_version: '0.17.1' }, [...tensors, ...biasB]);
      const prepared = await prepareOne(hfModelFolder(base, gptOssConfig, { shards: 2 }), files);
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backend);
      const biasKeys = ['model.layers.0.mlp.experts.gate_up_proj_bias', 'model.layers.0.mlp.experts.down_proj_bias'];
      expectSlabs(merged, base, tensors, loras, undefined, biasKeys);
      // PEFT's forward adds s·lora_B.bias to the Linear's output; the split Linear's bias is expert K's row of the fused bias.
      const b = decoded(base);
      const a = decoded(biasB);
      loras.forEach((l, n) => {
        const truth = Float64Array.from(b.get(biasKeys[n])!.values);
        const add = a.get(biasB[n].name)!.values;
        for (let o = 0; o < l.out; o++) truth[l.expert * l.out + o] += s * add[o];
        const got = merged.tensors.get(biasKeys[n])!;
        expect(got.shape).toEqual(b.get(biasKeys[n])!.shape);
        for (let j = 0; j < truth.length; j++) expect(got.values[j], `${biasKeys[n]}[${j}]`).toBe(roundForDType(truth[j], 'BF16'));
      });
    });

    it(`axolotl's linearized Llama 4 gate_projs.K / up_projs.K on the first / second half of slab K's columns, down_projs.K on the whole slab (${kind})`, async () => {
      const backend = backends[kind];
      if (!backend) throw new Error(`no ${kind} backend`);
      const base = llama4Base();
      const { files, tensors } = adapterOf(AXOLOTL);
      const prepared = await prepareOne(hfModelFolder(base, llama4Config, { shards: 2 }), files);
      expect(prepared.plan.problems).toEqual([]);
      expectSlabs(await mergeIntoFolder(prepared, backend, undefined, 96), base, tensors, AXOLOTL);
    });
  }

  it.for(['cpu (js)', 'webgpu'] as const)('a PEFT LoKr with both factors full (a dense ΔW read by rows) on gpt-oss down_projs.0 and Llama 4 up_projs.1 (every other row of the slab) (%s)', async (kind) => {
    const backend = backends[kind];
    if (!backend) throw new Error(`no ${kind} backend`);
    // ΔW = kron(lokr_w1 (a, c), lokr_w2 (b, d)) at α/r = 1, (a·b, c·d): product rank past a quarter of ΔW's smaller side, so merged from ΔW's rows.
    const lokr = (l: SplitLora, [a1, c1, b1, d1]: number[]) => ({
      l, w1: randomTensor(`base_model.model.${l.path}.lokr_w1`, [a1, c1], 'F32', rand, 0.5), w2: randomTensor(`base_model.model.${l.path}.lokr_w2`, [b1, d1], 'F32', rand, 0.5),
      delta: (w1: number[], w2: number[]) => {
        const out = new Float64Array(a1 * b1 * c1 * d1);
        for (let o1 = 0; o1 < a1; o1++) for (let o2 = 0; o2 < b1; o2++) for (let i1 = 0; i1 < c1; i1++) for (let i2 = 0; i2 < d1; i2++) out[(o1 * b1 + o2) * c1 * d1 + i1 * d1 + i2] = w1[o1 * c1 + i1] * w2[o2 * d1 + i2];
        return out;
      },
    });
    const config = (target: string) => ({ peft_type: 'LOKR', task_type: 'CAUSAL_LM', peft_version: '0.17.1', r: 1, alpha: 1, rank_dropout: 0, module_dropout: 0, use_effective_conv2d: false, decompose_both: false, decompose_factor: -1, target_modules: [target] });
    for (const [m, baseOf, cfg] of [
      [lokr(down(0, 0), [2, 2, 4, 3]), () => gptOssBase(), gptOssConfig],
      [lokr(half('up_projs', 1), [2, 2, 3, 4]), () => llama4Base(), llama4Config],
    ] as const) {
      const base = baseOf();
      const tensors = [m.w1, m.w2];
      const prepared = await prepareOne(hfModelFolder(base, cfg), peftFolder(config(m.l.path.split('.').slice(-2).join('.')), tensors));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.module.update.kind))).toEqual(['dense']);
      const f = decoded(tensors);
      expectSlabs(await mergeIntoFolder(prepared, backend, undefined, 96), base, tensors, [m.l], () => m.delta([...f.get(m.w1.name)!.values], [...f.get(m.w2.name)!.values]));
    }
  });

  it('refused in one line, naming the fused tensor: gate_projs on gpt-oss (interleaved), an expert past the last, a bias change, DoRA, another size', async () => {
    const gpt = hfModelFolder(gptOssBase(), gptOssConfig);
    const onGptOss = (loras: SplitLora[], extra?: object) => problems(gpt, adapterOf(loras, extra).files);
    const fusedIn = (key: string, shape: string) => `names expert {K}'s Linear layer of experts split into Linear layers (Unsloth's gpt-oss, axolotl's linearized Llama 4), which this base stores fused in ${key} [${shape}]; `;
    const gu = 'model.layers.0.mlp.experts.gate_up_proj';
    expect(await onGptOss([{ ...gateUp(0, 1), path: 'model.layers.0.mlp.experts.gate_projs.1', out: G.I }])).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.gate_projs.1": ${fusedIn(gu, '3, 8, 12').replace('{K}', '1')}which of its columns the gate layer stands for is known for Llama 4 alone (axolotl's: gate's half, then up's), and this base's config.json names no Llama 4 architecture: merge into the checkpoint with the experts split that the adapter was trained on`,
    ]);
    expect(await onGptOss([gateUp(0, 3)])).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.gate_up_projs.3": ${fusedIn(gu, '3, 8, 12').replace('{K}', '3')}it holds 3 experts, none numbered 3: merge into the checkpoint with the experts split that the adapter was trained on`,
    ]);
    // A LoRA of a wider model: the Linear's 10 inputs are not the slab's 8 rows.
    expect(await onGptOss([{ ...gateUp(0, 1), inF: 10 }])).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.gate_up_projs.1": ΔW (12, 10) does not fit base ${gu} (3, 8, 12): ΔW has 10 inputs, the rows of the slab it lands on transposed 8`,
    ]);
    // …and one of another intermediate size: 14 outputs where the slab has 12 columns.
    expect(await onGptOss([{ ...gateUp(0, 1), out: 14 }])).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.gate_up_projs.1": ΔW (14, 8) does not fit where linearized-experts puts it (${gu}, ΔW transposed on its rows from 8 as 24 × 12): ΔW rows 12–13 land nowhere`,
    ]);
    const dora = adapterOf([gateUp(0, 1)], { use_dora: true });
    dora.tensors.push(randomTensor('base_model.model.model.layers.0.mlp.experts.gate_up_projs.1.lora_magnitude_vector', [12], 'F32', rand));
    expect(await problems(gpt, peftFolder({ r, lora_alpha: alpha, use_dora: true, target_modules: ['gate_up_projs.1'], peft_version: '0.17.1' }, dora.tensors))).toEqual([
      `adapter1: module "model.layers.0.mlp.experts.gate_up_projs.1": DoRA on a module whose weight the base stores transposed (${gu}, ΔW transposed on its rows from 8 as 24 × 12) is not supported`,
    ]);
    // Layer 1 of this base stores no fused bias, which a lora_B.bias would need.
    const biased = adapterOf([gateUp(1, 1)]);
    biased.tensors.push(randomTensor('base_model.model.model.layers.1.mlp.experts.gate_up_projs.1.lora_B.bias', [12], 'F32', rand));
    expect(await problems(gpt, peftFolder({ r, lora_alpha: alpha, lora_bias: true, target_modules: ['gate_up_projs.1'], peft_version: '0.17.1' }, biased.tensors))).toEqual([
      'adapter1: module "model.layers.1.mlp.experts.gate_up_projs.1": has base_model.model.model.layers.1.mlp.experts.gate_up_projs.1.lora_B.bias, a change of its bias, but the Linear layer\'s bias is not model.layers.1.mlp.experts.gate_up_proj\'s, and this base holds no model.layers.1.mlp.experts.gate_up_proj_bias of shape [3, 12] (one row per expert) to take a change of expert 1\'s bias',
    ]);
  });

  it("refused in one line: two modules of one adapter on the same half of an expert's slab (Llama4ForConditionalGeneration's and Llama4ForCausalLM's names for it)", async () => {
    const folder = hfModelFolder(llama4Base(), llama4Config);
    // Llama4ForCausalLM's `model.layers.N…` is the checkpoint's language model (its base_model_prefix strips `language_model.`).
    const text = { ...half('gate_projs', 1), path: 'model.layers.0.feed_forward.experts.gate_projs.1' };
    const both = adapterOf([half('gate_projs', 1), half('up_projs', 2), text]);
    expect(await problems(folder, both.files)).toEqual([
      `adapter1: module "model.layers.0.feed_forward.experts.gate_projs.1": targets ${FF}.gate_up_proj, ΔW transposed on its rows from 16 every 2 as 64 × 6, as module "${FF}.gate_projs.1" of the same adapter does`,
    ]);
  });

  it('the row clash check, a sweep over sorted spans, agrees with comparing every pair (single rows every other row, runs, unsorted)', () => {
    const spans = (): RowSpan[] => Array.from({ length: Math.floor(rand() * 6) }, () => {
      const from = Math.floor(rand() * 40);
      return [from, from + 1 + Math.floor(rand() * (rand() < 0.5 ? 1 : 8))];
    });
    let overlapping = 0;
    for (let t = 0; t < 2000; t++) {
      const x = spans(), y = spans();
      const pairwise = x.some(([a0, a1]) => y.some(([b0, b1]) => a0 < b1 && b0 < a1));
      expect(spansOverlap(x, y), JSON.stringify([x, y])).toBe(pairwise);
      if (pairwise) overlapping++;
    }
    expect(overlapping).toBeGreaterThan(200);
  });

  it('refused in one line: a LoRA on the fused parameter (target_parameters) and one on a half of it, in one merge, see it in other rows', async () => {
    const base = llama4Base();
    const folder = hfModelFolder(base, llama4Config);
    const E = L.E;
    const param = peftFolder({ r, lora_alpha: alpha, target_modules: [], target_parameters: ['feed_forward.experts.gate_up_proj'], peft_version: '0.17.1' }, [
      randomTensor(`base_model.model.${FF}.lora_A.weight`, [r * E, L.H], 'F32', rand), randomTensor(`base_model.model.${FF}.lora_B.weight`, [2 * L.I, r * E], 'F32', rand),
    ]);
    const prepared = await prepareFolders(folder, [param, adapterOf([half('gate_projs', 1)]).files]);
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      `adapter2: module "${FF}.gate_projs.1": lands on ${FF}.gate_up_proj (4, 8, 12) seen as 64 rows of 6, where adapter1 (module "${FF}.gate_up_proj") updates it seen as 32 rows of 12: merge the two one after the other`,
    ]);
  });

  it('--dry-run shows where each Linear lands: its slab, as rows of the tensor seen as the Linear sees it (the CLI, built)', async () => {
    const base = temp.make(hfModelFolder(llama4Base(), llama4Config));
    const adapter = temp.make(adapterOf(AXOLOTL).files);
    const dry = await runCli(['merge', '--base', base, '--adapter', adapter, '--out', `${temp.make()}/merged`, '--backend', 'cpu', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    const lines = (dry.stdout + dry.stderr).split('\n');
    // gate_projs.1: slab 1 (rows 8–15 of the slab view), gate's half: rows 16, 18, …, 30 of (4·8·2) × 6.
    expect(lines.some((l) => l.includes('→ transposed, on rows 16–30 every 2 of 64 × 6')), dry.stdout).toBe(true);
    expect(lines.some((l) => l.includes('→ transposed, on rows 17–31 every 2 of 64 × 6')), dry.stdout).toBe(true);
    // down_projs.2: rows 12–17 of (4·6) × 8.
    expect(lines.some((l) => l.includes('→ transposed, on rows 12–17 of 24 × 8')), dry.stdout).toBe(true);
  });
});
