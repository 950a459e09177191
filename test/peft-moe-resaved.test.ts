/**
 * A PEFT LoRA trained on transformers 4's per-expert MoE modules, loaded by PEFT ≥ 0.19 onto the
 * model transformers 5 builds (fused experts) and saved again. PEFT converts it as it loads
 * (peft/utils/transformers_weight_conversion.py) and saves what it converted:
 * - the per-expert factors of `experts.K.gate_proj` / `up_proj` (Mixtral `w1` / `w3`) become one
 *   ParamWrapper on `mlp.experts.gate_up_proj`, saved under `mlp.experts.base_layer` (the inner
 *   wrapper): lora_A (E·2r, hidden), expert e's rows [e·2r, e·2r + r) gate's A then up's
 *   (MergeModulelist(dim=0), Concatenate(dim=1), FlattenDims(0, 1)); lora_B (2·inter, 2r·E), each
 *   expert's gate and up B block-diagonal, column k·E + e (PeftConcatenate: block_diag, permute(2, 0,
 *   1), flatten(0, 1), .T);
 * - `experts.K.down_proj` (`w2`) becomes the outer wrapper on `mlp.experts.down_proj`, saved under
 *   `mlp.experts`: lora_A (E·r, inter), lora_B (hidden, r·E), column k·E + e;
 * - the router `gate` (Mixtral `block_sparse_moe.gate`, renamed `mlp.gate`) becomes target_parameters
 *   `gate.weight`, its factors unchanged;
 * - adapter_config.json: those projections leave target_modules for target_parameters
 *   (`gate_up_proj`, `down_proj`, `gate.weight`), rank_pattern and alpha_pattern get
 *   `.*\.gate_up_proj` at 2r and 2α (α/r kept), and peft_version stays the one the adapter was
 *   first saved with (PeftConfig fills it only when absent).
 * The truth is written plainly from the per-expert factors before conversion: each expert's
 * α/r·B·A in float64 on its rows, rounded once to the base's dtype; every other tensor bit for bit.
 * Checked on a transformers 5 checkpoint (fused tensors) and on a transformers 4 one (one tensor per
 * expert, which transformers 5 stacks when it loads it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne, randomTensor, type Files } from './helpers/hf-folder.js';

const rand = seededRandom(20260);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

const r = 2;
const alpha = 6;
const P = 'base_model.model';

/** A MoE model's names and sizes: how transformers 4 and 5 name its layer's MoE block, experts and projections. */
interface Moe {
  E: number;
  H: number;
  I: number;
  /** transformers 4's block (`mlp`, Mixtral `block_sparse_moe`) and transformers 5's (`mlp`). */
  v4: string;
  v5: string;
  /** gate, up, down as transformers 4 names them. */
  proj: readonly [string, string, string];
  config: Record<string, unknown>;
  dtype: 'BF16' | 'F32';
}

// Qwen/Qwen3-30B-A3B (hidden 2048, moe_intermediate 768, 128 experts) scaled down: hidden 8, moe_intermediate 6, 4 experts.
const QWEN: Moe = {
  E: 4, H: 8, I: 6, v4: 'mlp', v5: 'mlp', proj: ['gate_proj', 'up_proj', 'down_proj'], dtype: 'BF16',
  config: { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: 8, moe_intermediate_size: 6, intermediate_size: 16, num_experts: 4, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16' },
};
// allenai/OLMoE-1B-7B (hidden 2048, intermediate 1024: gate_up_proj is square per expert) scaled down: hidden 8, intermediate 4.
const OLMOE: Moe = {
  E: 3, H: 8, I: 4, v4: 'mlp', v5: 'mlp', proj: ['gate_proj', 'up_proj', 'down_proj'], dtype: 'BF16',
  config: { architectures: ['OlmoeForCausalLM'], model_type: 'olmoe', hidden_size: 8, intermediate_size: 4, num_experts: 3, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16' },
};
// mistralai/Mixtral-8x7B-v0.1 (hidden 4096, intermediate 14336, 8 experts) scaled down: hidden 8, intermediate 5, 3 experts.
const MIXTRAL: Moe = {
  E: 3, H: 8, I: 5, v4: 'block_sparse_moe', v5: 'mlp', proj: ['w1', 'w3', 'w2'], dtype: 'F32',
  config: { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: 8, intermediate_size: 5, num_local_experts: 3, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'float32' },
};

const L = 'model.layers.0';

/** The checkpoint: transformers 5's fused experts, or transformers 4's tensor per expert. */
function baseOf(m: Moe, fused: boolean): FixtureTensor[] {
  const block = fused ? m.v5 : m.v4;
  const experts = fused
    ? [randomTensor(`${L}.mlp.experts.gate_up_proj`, [m.E, 2 * m.I, m.H], m.dtype, rand), randomTensor(`${L}.mlp.experts.down_proj`, [m.E, m.H, m.I], m.dtype, rand)]
    : Array.from({ length: m.E }, (_, e) => [
      randomTensor(`${L}.${block}.experts.${e}.${m.proj[0]}.weight`, [m.I, m.H], m.dtype, rand),
      randomTensor(`${L}.${block}.experts.${e}.${m.proj[1]}.weight`, [m.I, m.H], m.dtype, rand),
      randomTensor(`${L}.${block}.experts.${e}.${m.proj[2]}.weight`, [m.H, m.I], m.dtype, rand),
    ]).flat();
  return [
    randomTensor('model.embed_tokens.weight', [32, m.H], m.dtype, rand),
    randomTensor(`${L}.self_attn.q_proj.weight`, [8, m.H], m.dtype, rand),
    randomTensor(`${L}.${block}.gate.weight`, [m.E, m.H], m.dtype, rand),
    ...experts,
    randomTensor('lm_head.weight', [32, m.H], m.dtype, rand),
  ];
}

/** One LoRA module of the adapter as trained (transformers 4 names): its factors, and where its ΔW lands on each checkpoint. */
interface Trained {
  path: string;
  A: FixtureTensor;
  B: FixtureTensor;
  out: number;
  inF: number;
  /** transformers 5: the tensor and its first row (of the tensor seen as rows × last dim). */
  v5: { key: string; row: number };
  /** transformers 4: the tensor. */
  v4: string;
}

function trainedAdapter(m: Moe): Trained[] {
  const mod = (path: string, out: number, inF: number, v5: Trained['v5'], v4: string): Trained => ({
    path, out, inF, v5, v4,
    A: randomTensor(`${P}.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    B: randomTensor(`${P}.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  });
  const mods = [
    mod(`${L}.self_attn.q_proj`, 8, m.H, { key: `${L}.self_attn.q_proj.weight`, row: 0 }, `${L}.self_attn.q_proj.weight`),
    mod(`${L}.${m.v4}.gate`, m.E, m.H, { key: `${L}.${m.v5}.gate.weight`, row: 0 }, `${L}.${m.v4}.gate.weight`),
  ];
  for (let e = 0; e < m.E; e++) {
    m.proj.forEach((proj, j) => {
      const down = j === 2;
      const key = `${L}.mlp.experts.${down ? 'down_proj' : 'gate_up_proj'}`;
      const row = down ? e * m.H : e * 2 * m.I + j * m.I;
      mods.push(mod(`${L}.${m.v4}.experts.${e}.${proj}`, down ? m.H : m.I, down ? m.I : m.H, { key, row }, `${L}.${m.v4}.experts.${e}.${proj}.weight`));
    });
  }
  return mods;
}

/**
 * What PEFT 0.20 saves after loading `mods` onto transformers 5's model, written out from
 * transformers_weight_conversion.py's operations on the saved tensors.
 */
function resaved(m: Moe, mods: Trained[], peftVersion: string, original: Record<string, unknown>): Files {
  const { E, H, I } = m;
  const values = decoded(mods.flatMap((x) => [x.A, x.B]));
  const factor = (path: string, f: 'A' | 'B') => values.get(`${P}.${path}.lora_${f}.weight`)!.values;
  const expert = (e: number, j: number) => `${L}.${m.v4}.experts.${e}.${m.proj[j]}`;
  // gate_up_proj, lora_A: stack each projection's A over experts (E, r, H), concatenate gate and up on dim 1 (E, 2r, H), flatten (E·2r, H).
  const gateUpA = new Float64Array(E * 2 * r * H);
  for (let e = 0; e < E; e++) for (let j = 0; j < 2; j++) for (let k = 0; k < r; k++) for (let i = 0; i < H; i++) gateUpA[(e * 2 * r + j * r + k) * H + i] = factor(expert(e, j), 'A')[k * H + i];
  // lora_B: per expert block_diag(B_gate, B_up) (2I, 2r), stacked (E, 2I, 2r); permute(2, 0, 1) (2r, E, 2I); flatten (2r·E, 2I); transpose (2I, 2r·E).
  const bd = (e: number, o: number, k: number) => {
    const j = o < I ? 0 : 1;
    return Math.floor(k / r) === j ? factor(expert(e, j), 'B')[(o - j * I) * r + (k - j * r)] : 0;
  };
  const stacked = new Float64Array(2 * r * E * 2 * I);
  for (let k = 0; k < 2 * r; k++) for (let e = 0; e < E; e++) for (let o = 0; o < 2 * I; o++) stacked[(k * E + e) * 2 * I + o] = bd(e, o, k);
  const gateUpB = new Float64Array(2 * I * 2 * r * E);
  for (let c = 0; c < 2 * r * E; c++) for (let o = 0; o < 2 * I; o++) gateUpB[o * 2 * r * E + c] = stacked[c * 2 * I + o];
  // down_proj, lora_A: stacked (E, r, I), flattened (E·r, I). lora_B: stacked (E, H, r), permute(2, 0, 1) (r, E, H), flatten (r·E, H), transpose (H, r·E).
  const downA = new Float64Array(E * r * I);
  for (let e = 0; e < E; e++) downA.set(factor(expert(e, 2), 'A'), e * r * I);
  const downB = new Float64Array(H * r * E);
  for (let k = 0; k < r; k++) for (let e = 0; e < E; e++) for (let o = 0; o < H; o++) downB[o * r * E + k * E + e] = factor(expert(e, 2), 'B')[o * r + k];
  const at = `${P}.${L}.mlp.experts`;
  const tensors: FixtureTensor[] = [
    mods[0].A, mods[0].B,
    // The router, renamed (Mixtral's WeightRenaming .block_sparse_moe.gate → .mlp.gate), factors as they were.
    { ...mods[1].A, name: `${P}.${L}.${m.v5}.gate.lora_A.weight` },
    { ...mods[1].B, name: `${P}.${L}.${m.v5}.gate.lora_B.weight` },
    { name: `${at}.base_layer.lora_A.weight`, dtype: 'F32', shape: [E * 2 * r, H], data: Array.from(gateUpA) },
    { name: `${at}.base_layer.lora_B.weight`, dtype: 'F32', shape: [2 * I, 2 * r * E], data: Array.from(gateUpB) },
    { name: `${at}.lora_A.weight`, dtype: 'F32', shape: [E * r, I], data: Array.from(downA) },
    { name: `${at}.lora_B.weight`, dtype: 'F32', shape: [H, r * E], data: Array.from(downB) },
  ];
  return peftFolder({
    ...original,
    peft_version: peftVersion,
    target_modules: ['q_proj'],
    // A Python set saved as a list: its order is not fixed.
    target_parameters: ['down_proj', 'gate.weight', 'gate_up_proj'],
    rank_pattern: { '.*\\.gate_up_proj': 2 * r },
    alpha_pattern: { '.*\\.gate_up_proj': 2 * alpha },
  }, tensors);
}

const ORIGINAL = { r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', peft_type: 'LORA', use_rslora: false, use_dora: false, fan_in_fan_out: false, rank_pattern: {}, alpha_pattern: {} };

/** Merges `adapter` into the checkpoint and checks every tensor against α/r·B·A of each trained module, in float64. */
async function expectExact(m: Moe, fused: boolean, base: FixtureTensor[], mods: Trained[], adapter: Files): Promise<void> {
  const prepared = await prepareOne(hfModelFolder(base, m.config), adapter);
  expect(prepared.plan.problems).toEqual([]);
  const merged = await mergeIntoFolder(prepared, backend);
  const b = decoded(base);
  const f = decoded(mods.flatMap((x) => [x.A, x.B]));
  const truths = new Map<string, Float64Array>();
  for (const x of mods) {
    const key = fused ? x.v5.key : x.v4;
    const w = b.get(key);
    expect(w, `${key} in the base`).toBeDefined();
    const cols = w!.shape[w!.shape.length - 1];
    expect(cols, x.path).toBe(x.inF);
    const truth = truths.get(key) ?? Float64Array.from(w!.values);
    truths.set(key, truth);
    const A = f.get(x.A.name)!.values;
    const B = f.get(x.B.name)!.values;
    const row = fused ? x.v5.row : 0;
    for (let o = 0; o < x.out; o++) {
      for (let i = 0; i < x.inF; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += B[o * r + k] * A[k * x.inF + i];
        truth[(row + o) * cols + i] += (alpha / r) * d;
      }
    }
  }
  for (const [key, w] of b) {
    const got = merged.tensors.get(key)!;
    expect([got.dtype, got.shape], key).toEqual([w.dtype, w.shape]);
    const truth = truths.get(key);
    if (!truth) {
      expect(got.bytes, `${key} unchanged`).toEqual(w.bytes);
      continue;
    }
    const want = Array.from(truth, (v) => roundForDType(v, m.dtype));
    const wrong = want.filter((v, j) => !Object.is(v, got.values[j])).length;
    expect(wrong, `${key}: ${wrong} of ${want.length} elements differ from the float64 truth`).toBe(0);
  }
}

describe('a per-expert PEFT LoRA that PEFT 0.20 loaded onto transformers 5 (fused experts) and saved again', () => {
  for (const [name, m] of [['Qwen3-MoE', QWEN], ['Mixtral (block_sparse_moe → mlp, w1/w3/w2)', MIXTRAL], ['OLMoE (gate_up_proj square per expert)', OLMOE]] as const) {
    for (const fused of [true, false]) {
      it(`${name}, on a transformers ${fused ? '5 checkpoint (fused experts)' : '4 checkpoint (a tensor per expert)'}: every expert, the router and q_proj exactly as trained (first saved by PEFT 0.15.2)`, async () => {
        const mods = trainedAdapter(m);
        await expectExact(m, fused, baseOf(m, fused), mods, resaved(m, mods, '0.15.2', ORIGINAL));
      });
    }
  }

  it('first saved by PEFT 0.18.0, 0.19.1 or with no peft_version (PEFT 0.20 writes its own then): the same, on the square OLMoE experts', async () => {
    for (const version of ['0.18.0', '0.19.1', '0.20.0']) {
      const mods = trainedAdapter(OLMOE);
      await expectExact(OLMOE, true, baseOf(OLMOE, true), mods, resaved(OLMOE, mods, version, ORIGINAL));
    }
  });
});

describe('a re-saved converted adapter that cannot be merged as PEFT would: refused in one line', () => {
  const refusal = async (base: Files, adapter: Files): Promise<string[]> => {
    try {
      const prepared = await prepareOne(base, adapter);
      await prepared.close();
      return prepared.plan.problems.map((p) => p.message);
    } catch (e) {
      return [(e as Error).message];
    }
  };

  it('on a checkpoint with another number of experts; with use_rslora (the fused gate and up scaled apart from training); with lora_dropout, which ParamWrapper refuses (PEFT cannot have loaded it)', async () => {
    const mods = trainedAdapter(QWEN);
    const other = { ...QWEN, E: 8, config: { ...QWEN.config, num_experts: 8 } };
    expect(await refusal(hfModelFolder(baseOf(other, true), other.config), resaved(QWEN, mods, '0.15.2', ORIGINAL))).toEqual([
      'adapter1: module "model.layers.0.mlp.gate.weight": ΔW (4, 8) does not fit base model.layers.0.mlp.gate.weight (8, 8): ΔW has 4 rows (outputs), the base 8',
      'adapter1: module "model.layers.0.mlp.experts.gate_up_proj": on model.layers.0.mlp.experts.gate_up_proj: lora_A (16, 8) holds the factors of 4 experts at rank 4, and the base tensor (8, 12, 8) holds 8, for which PEFT\'s ParamWrapper saves lora_A (32, ·) and lora_B (·, 32): the adapter was trained on a model with another number of experts; merge it into that one',
      'adapter1: module "model.layers.0.mlp.experts.down_proj": on model.layers.0.mlp.experts.down_proj: lora_A (8, 6) holds the factors of 4 experts at rank 2, and the base tensor (8, 8, 6) holds 8, for which PEFT\'s ParamWrapper saves lora_A (16, ·) and lora_B (·, 16): the adapter was trained on a model with another number of experts; merge it into that one',
    ]);
    // use_rslora: PEFT scales the fused gate and up by 2α/√(2r), √2 times the α/√r each expert was trained with.
    expect(await refusal(hfModelFolder(baseOf(QWEN, true), QWEN.config), resaved(QWEN, mods, '0.15.2', { ...ORIGINAL, use_rslora: true }))).toEqual([
      'adapter1: parameter "model.layers.0.mlp.experts.gate_up_proj": use_rslora with the gate and up factors PEFT\'s conversion for transformers 5 fused (rank 4, lora_alpha 12, twice the per-expert r and α): PEFT then scales them by 12/√4, √2 times the α/√r they were trained with per expert, so which scale is the adapter\'s cannot be told; merge the per-expert adapter as saved before that conversion',
    ]);
    const dropout = await refusal(hfModelFolder(baseOf(QWEN, true), QWEN.config), resaved(QWEN, mods, '0.15.2', { ...ORIGINAL, lora_dropout: 0.05 }));
    // One line per parameter PEFT would wrap: the router's and both expert parameters'.
    const lines = dropout[0].split('\n');
    expect(lines[0]).toBe('3 problems in adapter1:');
    for (const param of ['mlp.gate.weight', 'mlp.experts.gate_up_proj', 'mlp.experts.down_proj']) {
      expect(lines.filter((l) => l.includes(`parameter "model.layers.0.${param}": the config has lora_dropout 0.05 (it must be 0), which PEFT's ParamWrapper refuses when it builds the layer`)), param).toHaveLength(1);
    }
  });
});

/**
 * PhiMoE (microsoft/Phi-3.5-MoE-instruct): transformers 4 names its MoE block `block_sparse_moe`, router
 * `gate` (a Linear), experts `experts.K.w1` / `w3` / `w2`; transformers 5 (conversion_mapping.py,
 * "phimoe") renames the router `.block_sparse_moe.gate` → `.mlp.router` (PhimoeTopKRouter, an
 * nn.Linear) and stacks the experts into `mlp.experts.gate_up_proj` (w1 rows then w3 rows) and
 * `mlp.experts.down_proj`. PEFT's conversion of adapters for transformers 5 rewrites the config only for
 * Mixtral-like and Qwen2-MoE-like models (its _MODEL_TO_CONVERSION_PATTERN has no phimoe), so a PhiMoE
 * adapter in transformers 5's names is one trained there: a LoRA module on `mlp.router` and
 * target_parameters on the fused experts (PEFT ≥ 0.19's ParamWrapper: W[e] += α/r·B_e·A_e, A_e rows
 * [e·r, (e+1)·r) of lora_A, B_e columns k·E + e of lora_B).
 * Truth in float64 from those factors: expert e's gate_up ΔW (2·inter, hidden) rows [0, inter) on w1,
 * [inter, 2·inter) on w3; its down ΔW on w2; the router's on `block_sparse_moe.gate.weight`.
 */
describe('PhiMoE: its router `mlp.router` (transformers 5) and `block_sparse_moe.gate` (transformers 4), each on the other\'s checkpoint', () => {
  // microsoft/Phi-3.5-MoE-instruct (hidden 4096, intermediate 6400, 16 experts, bf16) scaled down: hidden 8, intermediate 5, 3 experts.
  const E = 3, H = 8, I = 5;
  const CONFIG = { architectures: ['PhiMoEForCausalLM'], model_type: 'phimoe', hidden_size: H, intermediate_size: I, num_local_experts: E, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32, tie_word_embeddings: false, lm_head_bias: false, torch_dtype: 'bfloat16' };
  const common = () => [
    randomTensor('model.embed_tokens.weight', [32, H], 'BF16', rand),
    randomTensor(`${L}.self_attn.q_proj.weight`, [8, H], 'BF16', rand),
    randomTensor('lm_head.weight', [32, H], 'BF16', rand),
  ];
  const v4Base = () => [
    ...common(),
    randomTensor(`${L}.block_sparse_moe.gate.weight`, [E, H], 'BF16', rand),
    ...Array.from({ length: E }, (_, e) => [
      randomTensor(`${L}.block_sparse_moe.experts.${e}.w1.weight`, [I, H], 'BF16', rand),
      randomTensor(`${L}.block_sparse_moe.experts.${e}.w2.weight`, [H, I], 'BF16', rand),
      randomTensor(`${L}.block_sparse_moe.experts.${e}.w3.weight`, [I, H], 'BF16', rand),
    ]).flat(),
  ];
  const v5Base = () => [
    ...common(),
    randomTensor(`${L}.mlp.router.weight`, [E, H], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.gate_up_proj`, [E, 2 * I, H], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.down_proj`, [E, H, I], 'BF16', rand),
  ];
  const factor = (name: string, shape: number[]) => randomTensor(name, shape, 'F32', rand, 0.5);
  const s = alpha / r;

  /** ΔW (out × in) = s·B·A with A rows [first, first + r) and B's column k at col(k). */
  const product = (A: Float64Array, B: Float64Array, out: number, inF: number, bCols: number, first: number, col: (k: number) => number) => {
    const d = new Float64Array(out * inF);
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) for (let k = 0; k < r; k++) d[o * inF + i] += s * B[o * bCols + col(k)] * A[(first + k) * inF + i];
    return d;
  };

  /** Every tensor against the truth: `deltas` added to rows [row, row + out) of each key (a 3-D tensor seen as its rows), once rounded; the rest bit for bit. */
  async function expectMerged(base: FixtureTensor[], adapter: Files, deltas: { key: string; row: number; d: Float64Array; out: number }[]): Promise<void> {
    const prepared = await prepareOne(hfModelFolder(base, CONFIG), adapter);
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const truths = new Map<string, Float64Array>();
    for (const x of deltas) {
      const w = b.get(x.key);
      expect(w, x.key).toBeDefined();
      const cols = w!.shape[w!.shape.length - 1];
      const t = truths.get(x.key) ?? Float64Array.from(w!.values);
      truths.set(x.key, t);
      for (let o = 0; o < x.out; o++) for (let i = 0; i < cols; i++) t[(x.row + o) * cols + i] += x.d[o * cols + i];
    }
    for (const [key, w] of b) {
      const got = merged.tensors.get(key)!;
      expect([got.dtype, got.shape], key).toEqual([w.dtype, w.shape]);
      const t = truths.get(key);
      if (!t) {
        expect(got.bytes, `${key} unchanged`).toEqual(w.bytes);
        continue;
      }
      const want = Array.from(t, (v) => roundForDType(v, 'BF16'));
      const wrong = want.filter((v, j) => !Object.is(v, got.values[j])).length;
      expect(wrong, `${key}: ${wrong} of ${want.length} elements differ from the float64 truth`).toBe(0);
    }
  }

  /** A LoRA trained on transformers 5's PhiMoE: q_proj and the router `mlp.router` as modules, the fused experts as target_parameters. */
  function v5Adapter() {
    const at = `${P}.${L}.mlp`;
    const t = {
      qA: factor(`${P}.${L}.self_attn.q_proj.lora_A.weight`, [r, H]), qB: factor(`${P}.${L}.self_attn.q_proj.lora_B.weight`, [8, r]),
      rA: factor(`${at}.router.lora_A.weight`, [r, H]), rB: factor(`${at}.router.lora_B.weight`, [E, r]),
      // gate_up_proj is registered first, so its wrapper is the inner one, saved under base_layer.
      guA: factor(`${at}.experts.base_layer.lora_A.weight`, [E * r, H]), guB: factor(`${at}.experts.base_layer.lora_B.weight`, [2 * I, r * E]),
      dA: factor(`${at}.experts.lora_A.weight`, [E * r, I]), dB: factor(`${at}.experts.lora_B.weight`, [H, r * E]),
    };
    const files = peftFolder({ ...ORIGINAL, peft_version: '0.19.1', target_modules: ['q_proj', 'router'], target_parameters: ['experts.gate_up_proj', 'experts.down_proj'] }, Object.values(t));
    const v = decoded(Object.values(t));
    const get = (x: FixtureTensor) => v.get(x.name)!.values;
    return {
      files,
      q: product(get(t.qA), get(t.qB), 8, H, r, 0, (k) => k),
      router: product(get(t.rA), get(t.rB), E, H, r, 0, (k) => k),
      gateUp: (e: number) => product(get(t.guA), get(t.guB), 2 * I, H, r * E, e * r, (k) => k * E + e),
      down: (e: number) => product(get(t.dA), get(t.dB), H, I, r * E, e * r, (k) => k * E + e),
    };
  }

  it('a LoRA trained on transformers 5 (router mlp.router, a Linear; experts by target_parameters) on a transformers 4 checkpoint: the router on block_sparse_moe.gate.weight, each expert on its w1 / w3 / w2', async () => {
    const a = v5Adapter();
    const deltas = [
      { key: `${L}.self_attn.q_proj.weight`, row: 0, d: a.q, out: 8 },
      { key: `${L}.block_sparse_moe.gate.weight`, row: 0, d: a.router, out: E },
    ];
    for (let e = 0; e < E; e++) {
      const gu = a.gateUp(e);
      deltas.push({ key: `${L}.block_sparse_moe.experts.${e}.w1.weight`, row: 0, d: gu.slice(0, I * H), out: I });
      deltas.push({ key: `${L}.block_sparse_moe.experts.${e}.w3.weight`, row: 0, d: gu.slice(I * H), out: I });
      deltas.push({ key: `${L}.block_sparse_moe.experts.${e}.w2.weight`, row: 0, d: a.down(e), out: H });
    }
    await expectMerged(v4Base(), a.files, deltas);
  });

  it('the same adapter on a transformers 5 checkpoint lands by name (mlp.router.weight; expert e on its slab of gate_up_proj and down_proj)', async () => {
    const a = v5Adapter();
    const deltas = [
      { key: `${L}.self_attn.q_proj.weight`, row: 0, d: a.q, out: 8 },
      { key: `${L}.mlp.router.weight`, row: 0, d: a.router, out: E },
    ];
    for (let e = 0; e < E; e++) {
      deltas.push({ key: `${L}.mlp.experts.gate_up_proj`, row: e * 2 * I, d: a.gateUp(e), out: 2 * I });
      deltas.push({ key: `${L}.mlp.experts.down_proj`, row: e * H, d: a.down(e), out: H });
    }
    await expectMerged(v5Base(), a.files, deltas);
  });

  it('a LoRA trained on transformers 4 (block_sparse_moe.gate, experts.K.w1 / w3 / w2) on a transformers 5 checkpoint: the router on mlp.router.weight, expert K on its rows', async () => {
    const mods: { path: string; out: number; inF: number; key: string; row: number }[] = [
      { path: `${L}.block_sparse_moe.gate`, out: E, inF: H, key: `${L}.mlp.router.weight`, row: 0 },
    ];
    for (let e = 0; e < E; e++) {
      mods.push({ path: `${L}.block_sparse_moe.experts.${e}.w1`, out: I, inF: H, key: `${L}.mlp.experts.gate_up_proj`, row: e * 2 * I });
      mods.push({ path: `${L}.block_sparse_moe.experts.${e}.w3`, out: I, inF: H, key: `${L}.mlp.experts.gate_up_proj`, row: e * 2 * I + I });
      mods.push({ path: `${L}.block_sparse_moe.experts.${e}.w2`, out: H, inF: I, key: `${L}.mlp.experts.down_proj`, row: e * H });
    }
    const tensors = mods.flatMap((m) => [factor(`${P}.${m.path}.lora_A.weight`, [r, m.inF]), factor(`${P}.${m.path}.lora_B.weight`, [m.out, r])]);
    const v = decoded(tensors);
    const deltas = mods.map((m) => ({
      key: m.key, row: m.row, out: m.out,
      d: product(v.get(`${P}.${m.path}.lora_A.weight`)!.values, v.get(`${P}.${m.path}.lora_B.weight`)!.values, m.out, m.inF, r, 0, (k) => k),
    }));
    await expectMerged(v5Base(), peftFolder({ ...ORIGINAL, peft_version: '0.15.2', target_modules: ['gate', 'w1', 'w2', 'w3'] }, tensors), deltas);
  });

  it("one model's router name on another's transformers 4 checkpoint is refused, naming both: PhiMoE's mlp.router on Mixtral, Mixtral's mlp.gate.weight on PhiMoE", async () => {
    const refusal = async (base: Files, adapter: Files) => {
      const prepared = await prepareOne(base, adapter);
      await prepared.close();
      return prepared.plan.problems.map((p) => p.message);
    };
    const routerLora = (name: string) => [factor(`${P}.${L}.mlp.${name}.lora_A.weight`, [r, H]), factor(`${P}.${L}.mlp.${name}.lora_B.weight`, [E, r])];
    const mixtral = hfModelFolder(v4Base(), { ...CONFIG, architectures: ['MixtralForCausalLM'], model_type: 'mixtral' });
    expect(await refusal(mixtral, peftFolder({ ...ORIGINAL, target_modules: ['router'] }, routerLora('router')))).toEqual([
      `adapter1: module "${L}.mlp.router": transformers 5 names MixtralForCausalLM's router mlp.gate, not mlp.router, so this is not the router of ${L}.block_sparse_moe.gate.weight: merge into the model the adapter was trained on`,
    ]);
    expect(await refusal(hfModelFolder(v4Base(), CONFIG), peftFolder({ ...ORIGINAL, peft_version: '0.20.0', target_modules: [], target_parameters: ['gate.weight'] }, routerLora('gate')))).toEqual([
      `adapter1: module "${L}.mlp.gate.weight": transformers 5 names PhiMoEForCausalLM's router mlp.router, not mlp.gate, so this is not the router of ${L}.block_sparse_moe.gate.weight: merge into the model the adapter was trained on`,
    ]);
  });
});
