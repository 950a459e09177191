/**
 * PEFT `target_parameters` on a fused MoE `down_proj` (tuners/lora/layer.py `ParamWrapper`), version
 * by version, as PEFT's history writes it. For a parameter (E, d1, d2) every version saves
 * lora_A as nn.Linear(in_features, r·E).weight and lora_B as nn.Linear(r·E, out_features).weight,
 * reads A as (E, r, ·) (expert e's rows [e·r, (e+1)·r)) and B as (·, r, E) (expert e's column k at
 * k·E + e), and forms ΔW with one einsum; what changed is which of d1, d2 is in_features:
 * - 0.16.1.dev0 (target_parameters' start, commit f3b97c3) to 0.18.1, and 0.18.2.dev0 before commit
 *   5356277: in_features = d1, `o r e, e r i -> e i o`: A (r·E, d1), B (d2, r·E), W[e] += (B_e·A_e)ᵀ;
 * - 0.18.2.dev0 from commit 5356277 (2026-04-01) and 0.19.0: the same, except on expert modules with
 *   `is_transposed` (transformers 5's gpt-oss, stored (E, in, out)): in and out swapped, `e o i`:
 *   A (r·E, d2), B (d1, r·E), W[e] += B_e·A_e;
 * - 0.19.1.dev0 from commit e84dd8f (2026-04-16), 0.19.1, 0.20.0, 0.20.1.dev0: swapped unless
 *   `is_transposed`: B_e·A_e on (E, out, in) experts (Qwen3-MoE, Mixtral), (B_e·A_e)ᵀ on gpt-oss.
 * Where d1 ≠ d2 the factors' shapes say which (Qwen3-30B-A3B's down_proj is (128, 2048, 768),
 * Mixtral-8x7B's (8, 4096, 14336)); gpt-oss's is square (32, 2880, 2880), where the version decides,
 * and a dev version numbered for a span in which the layout changed is refused, naming the commit.
 * PEFT's conversion of a per-expert adapter for transformers 5 (utils/transformers_weight_conversion.py)
 * writes a lone down_proj (w2) as B_e·A_e, adds bare "down_proj" to target_parameters and keeps the
 * peft_version the adapter was first saved with: on a square tensor under a version that writes
 * (B_e·A_e)ᵀ that is refused too. Truth: α/r times each expert's product, in float64, added to its
 * slab and rounded once to bf16.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne, randomTensor } from './helpers/hf-folder.js';

const rand = seededRandom(20261207);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

const r = 2;
const alpha = 6;
const L = 'model.layers.0';
const AT = `base_model.model.${L}.mlp.experts`;
type Form = 'B·A' | '(B·A)ᵀ';

interface Model {
  name: string;
  E: number;
  /** down_proj's (d1, d2) per expert. */
  d1: number;
  d2: number;
  config: Record<string, unknown>;
  base(): FixtureTensor[];
}

/** Qwen/Qwen3-30B-A3B (hidden 2048, moe_intermediate 768): down_proj (E, hidden, inter) in transformers 5; scaled to hidden 8, inter `inter`. */
function qwen3Moe(inter: number): Model {
  const E = 4;
  return {
    name: `Qwen3-MoE (down_proj (${E}, 8, ${inter}))`, E, d1: 8, d2: inter,
    config: { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: 8, moe_intermediate_size: inter, intermediate_size: 16, num_experts: E, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, vocab_size: 32, torch_dtype: 'bfloat16' },
    base: () => [
      randomTensor('model.embed_tokens.weight', [32, 8], 'BF16', rand),
      randomTensor(`${L}.self_attn.q_proj.weight`, [8, 8], 'BF16', rand),
      randomTensor(`${L}.mlp.gate.weight`, [E, 8], 'BF16', rand),
      randomTensor(`${L}.mlp.experts.gate_up_proj`, [E, 2 * inter, 8], 'BF16', rand),
      randomTensor(`${L}.mlp.experts.down_proj`, [E, 8, inter], 'BF16', rand),
    ],
  };
}

/** mistralai/Mixtral-8x7B-v0.1 (hidden 4096, intermediate 14336) as transformers 5 names it (block_sparse_moe → mlp); scaled to hidden 8, intermediate 5. */
const MIXTRAL: Model = {
  name: 'Mixtral (down_proj (3, 8, 5))', E: 3, d1: 8, d2: 5,
  config: { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: 8, intermediate_size: 5, num_local_experts: 3, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32, torch_dtype: 'bfloat16' },
  base: () => [
    randomTensor(`${L}.self_attn.q_proj.weight`, [8, 8], 'BF16', rand),
    randomTensor(`${L}.mlp.gate.weight`, [3, 8], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.gate_up_proj`, [3, 10, 8], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.down_proj`, [3, 8, 5], 'BF16', rand),
  ],
};

/** openai/gpt-oss-20b (hidden 2880, intermediate 2880, 32 experts; experts stored (E, in, out)); scaled to 8, 8, 4 experts. */
const GPT_OSS: Model = {
  name: 'gpt-oss (down_proj (4, 8, 8), stored (E, in, out))', E: 4, d1: 8, d2: 8,
  config: { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: 8, intermediate_size: 8, num_local_experts: 4, num_experts_per_tok: 2, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, vocab_size: 32, torch_dtype: 'bfloat16' },
  base: () => [
    randomTensor(`${L}.mlp.router.weight`, [4, 8], 'BF16', rand),
    randomTensor(`${L}.mlp.router.bias`, [4], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.gate_up_proj`, [4, 8, 16], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.gate_up_proj_bias`, [4, 16], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.down_proj`, [4, 8, 8], 'BF16', rand),
    randomTensor(`${L}.mlp.experts.down_proj_bias`, [4, 8], 'BF16', rand),
  ],
};

/** The factors a ParamWrapper writing `form` saves for down_proj: (B·A)ᵀ has in_features d1, B·A in_features d2. */
function factors(m: Model, form: Form): FixtureTensor[] {
  const [inF, outF] = form === '(B·A)ᵀ' ? [m.d1, m.d2] : [m.d2, m.d1];
  return [
    randomTensor(`${AT}.lora_A.weight`, [r * m.E, inF], 'F32', rand, 0.5),
    randomTensor(`${AT}.lora_B.weight`, [outF, r * m.E], 'F32', rand, 0.5),
  ];
}

function config(version: string | null, target = 'mlp.experts.down_proj'): Record<string, unknown> {
  return {
    r, lora_alpha: alpha, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', fan_in_fan_out: false, use_rslora: false, use_dora: false,
    target_modules: ['q_proj'], target_parameters: [target], rank_pattern: {}, alpha_pattern: {}, ...(version === null ? {} : { peft_version: version }),
  };
}

/** Merges and checks down_proj against W[e] += α/r·(B_e·A_e or its transpose), in float64; every other tensor bit for bit. */
async function expectMerged(m: Model, adapter: FixtureTensor[], version: string | null, form: Form, target?: string): Promise<string[]> {
  const base = m.base();
  const prepared = await prepareOne(hfModelFolder(base, m.config), peftFolder(config(version, target), adapter));
  expect(prepared.plan.problems).toEqual([]);
  const warnings = prepared.plan.warnings;
  const merged = await mergeIntoFolder(prepared, backend);
  const f = decoded(adapter);
  const A = f.get(`${AT}.lora_A.weight`)!;
  const B = f.get(`${AT}.lora_B.weight`)!;
  const aCols = A.shape[1];
  const bRows = B.shape[0];
  const key = `${L}.mlp.experts.down_proj`;
  const w = decoded(base).get(key)!;
  const { E, d1, d2 } = m;
  const truth = Float64Array.from(w.values);
  for (let e = 0; e < E; e++) {
    for (let o = 0; o < bRows; o++) {
      for (let i = 0; i < aCols; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += B.values[o * r * E + k * E + e] * A.values[(e * r + k) * aCols + i];
        // B·A: row o, column i of expert e's (d1, d2) slab; (B·A)ᵀ: row i, column o.
        const [row, col] = form === 'B·A' ? [o, i] : [i, o];
        truth[e * d1 * d2 + row * d2 + col] += (alpha / r) * s;
      }
    }
  }
  const want = Array.from(truth, (v) => roundForDType(v, 'BF16'));
  const got = merged.tensors.get(key)!;
  expect([got.dtype, got.shape]).toEqual(['BF16', [E, d1, d2]]);
  const wrong = want.filter((v, j) => !Object.is(v, got.values[j])).length;
  expect(wrong, `${key}: ${wrong} of ${want.length} elements differ from the float64 truth`).toBe(0);
  for (const [name, t] of decoded(base)) {
    if (name !== key) expect(merged.tensors.get(name)?.bytes, `${name} unchanged`).toEqual(t.bytes);
  }
  return warnings;
}

/** The warning where PEFT's layout on a square tensor also hung on the transformers version or its patch. */
const TRUSTED = (m: Model, version: string, read: Form, when: string) =>
  `adapter1: module "${L}.mlp.experts.down_proj": on ${L}.mlp.experts.down_proj: the base tensor (${m.E}, ${m.d1}, ${m.d2}) is square per expert, so the factors do not say their layout: ` +
  `read as PEFT ${version} writes it on transformers 5, W[e] += ${read === 'B·A' ? 'B_e·A_e' : '(B_e·A_e)ᵀ'}; that PEFT wrote ${read === 'B·A' ? '(B_e·A_e)ᵀ' : 'B_e·A_e'} ${when}`;
const PATCH = "where transformers' patch_moe_parameter_targeting was active in the training process";

async function problems(m: Model, adapter: FixtureTensor[], version: string | null, target?: string): Promise<string[]> {
  const prepared = await prepareOne(hfModelFolder(m.base(), m.config), peftFolder(config(version, target), adapter));
  await prepared.close();
  return prepared.plan.problems.map((p) => `${p.code}: ${p.message}`);
}

const SQUARE = (m: Model) => `${m.E}, ${m.d1}, ${m.d2}`;
const AMBIGUOUS = (m: Model) =>
  `AMBIGUOUS_MODULE: adapter1: module "${L}.mlp.experts.down_proj": on ${L}.mlp.experts.down_proj: the base tensor (${SQUARE(m)}) is square per expert, so its factors fit both W[e] += B_e·A_e and W[e] += (B_e·A_e)ᵀ; PEFT chose by its version`;

describe('down_proj of (E, out, in) experts (transformers 5): the factors\' shapes say the layout', () => {
  // (B·A)ᵀ up to 0.19.0 and in 0.18.2.dev0, B·A from 0.19.1; a dev build of 0.19.1 wrote either.
  const written: [string | null, Form][] = [
    ['0.17.0', '(B·A)ᵀ'], ['0.17.1', '(B·A)ᵀ'], ['0.18.0', '(B·A)ᵀ'], ['0.18.1', '(B·A)ᵀ'], ['0.18.2.dev0@5356277d0', '(B·A)ᵀ'], ['0.19.0', '(B·A)ᵀ'],
    ['0.19.1.dev0@UNKNOWN', '(B·A)ᵀ'], ['0.19.1.dev0@e84dd8f40', 'B·A'], ['0.19.1', 'B·A'], ['0.20.0', 'B·A'], ['0.20.1.dev0@5d602fdbf', 'B·A'],
  ];
  for (const m of [qwen3Moe(6), MIXTRAL]) {
    it(`${m.name}: every version's factors exactly, whatever the version (also without one, or one contradicting them)`, async () => {
      // The shapes decide: no warning, whatever the version.
      for (const [version, form] of written) expect(await expectMerged(m, factors(m, form), version, form), `${version}`).toEqual([]);
      // A config without peft_version (PEFT 0.17 wrote none), and factors of the other layout than the version's: the shapes decide.
      await expectMerged(m, factors(m, '(B·A)ᵀ'), null, '(B·A)ᵀ');
      await expectMerged(m, factors(m, 'B·A'), '0.18.1', 'B·A');
      await expectMerged(m, factors(m, '(B·A)ᵀ'), '0.20.0', '(B·A)ᵀ');
    });
  }
  it('Qwen3-MoE with bare "down_proj" in target_parameters (as PEFT\'s conversion writes it) under PEFT 0.18.1: the shapes still decide', async () => {
    const m = qwen3Moe(6);
    await expectMerged(m, factors(m, 'B·A'), '0.18.1', 'B·A', 'down_proj');
    await expectMerged(m, factors(m, '(B·A)ᵀ'), '0.18.1', '(B·A)ᵀ', 'down_proj');
  });
});

describe('gpt-oss down_proj (square, stored (E, in, out), is_transposed in transformers 5): the version decides', () => {
  const written: [string, Form][] = [
    ['0.17.0', '(B·A)ᵀ'], ['0.17.1', '(B·A)ᵀ'], ['0.18.0', '(B·A)ᵀ'], ['0.18.1', '(B·A)ᵀ'], ['0.18.1.dev0@abc1234', '(B·A)ᵀ'],
    ['0.19.0', 'B·A'], ['0.19.1', '(B·A)ᵀ'], ['0.20.0', '(B·A)ᵀ'], ['0.19.2.dev0@a0887f672', '(B·A)ᵀ'], ['0.20.1.dev0@5d602fdbf', '(B·A)ᵀ'],
  ];
  for (const [version, form] of written) {
    // From 0.19 PEFT read is_transposed, which transformers 4's GptOssExperts lacks, and from 0.19.1 transformers 5's patch swaps gpt-oss's features again: said in a warning.
    const when = version.startsWith('0.17') || version.startsWith('0.18') ? undefined : version === '0.19.0' ? 'on transformers 4 (no is_transposed)' : `on transformers 4 (no is_transposed) or ${PATCH}`;
    it(`PEFT ${version}: W[e] += α/r·${form === 'B·A' ? 'B_e·A_e' : '(B_e·A_e)ᵀ'}, exactly${when ? ', with a warning naming the other layout and when PEFT wrote it' : ''}`, async () => {
      const warnings = await expectMerged(GPT_OSS, factors(GPT_OSS, form), version, form);
      expect(warnings).toEqual(when ? [TRUSTED(GPT_OSS, version, form, when)] : []);
    });
  }
  it('refused in one line, naming the commit to tell by: a 0.18.2.dev0 or 0.19.1.dev0 build; no peft_version; one that is no version', async () => {
    const a = factors(GPT_OSS, '(B·A)ᵀ');
    expect(await problems(GPT_OSS, a, '0.18.2.dev0@UNKNOWN')).toEqual([
      `${AMBIGUOUS(GPT_OSS)}, and peft_version "0.18.2.dev0@UNKNOWN" is a development build from before PEFT 0.19.0, in which ParamWrapper turned from (B_e·A_e)ᵀ to B_e·A_e on experts stored (E, in, out) (commit 5356277, 2026-04-01): set peft_version in adapter_config.json to 0.18.1 if the build is older than that commit, else to 0.19.0`,
    ]);
    expect(await problems(GPT_OSS, a, '0.19.1.dev0@3f1c0aa')).toEqual([
      `${AMBIGUOUS(GPT_OSS)}, and peft_version "0.19.1.dev0@3f1c0aa" is a development build from between PEFT 0.19.0 and 0.19.1, which swapped ParamWrapper's two layouts (commit e84dd8f, 2026-04-16): set peft_version in adapter_config.json to 0.19.0 if the build is older than that commit, else to 0.19.1`,
    ]);
    expect(await problems(GPT_OSS, a, null)).toEqual([
      `${AMBIGUOUS(GPT_OSS)}, which the adapter_config.json does not record (peft_version; PEFT 0.17 wrote none and used (B_e·A_e)ᵀ): set peft_version in adapter_config.json to the PEFT release whose layout the one that trained it had`,
    ]);
    expect(await problems(GPT_OSS, a, 'main')).toEqual([
      `${AMBIGUOUS(GPT_OSS)}, and peft_version "main" is no PEFT version: set peft_version in adapter_config.json to the PEFT release whose layout the one that trained it had`,
    ]);
  });
});

describe('a square down_proj of (E, out, in) experts (Qwen3-MoE names, hidden = moe_intermediate_size = 8)', () => {
  const m = qwen3Moe(8);
  const written: [string, Form][] = [
    ['0.17.1', '(B·A)ᵀ'], ['0.18.1', '(B·A)ᵀ'], ['0.18.2.dev0@UNKNOWN', '(B·A)ᵀ'], ['0.19.0', '(B·A)ᵀ'], ['0.19.1', 'B·A'], ['0.20.0', 'B·A'], ['0.19.2.dev0@a0887f672', 'B·A'],
  ];
  it('target_parameters "mlp.experts.down_proj": each version\'s layout, exactly (0.18.2.dev0 wrote (B_e·A_e)ᵀ here before and after commit 5356277); 0.19.0 with a warning', async () => {
    for (const [version, form] of written) {
      const warnings = await expectMerged(m, factors(m, form), version, form);
      // transformers 5's patch swapped the features of 0.19.0's ParamWrapper on any down_proj.
      expect(warnings, version).toEqual(version === '0.19.0' ? [TRUSTED(m, version, form, PATCH)] : []);
    }
  });
  it('bare "down_proj" as PEFT\'s conversion writes it: B_e·A_e under 0.19.1 and later (the conversion\'s layout too); named "experts.down_proj", 0.18.1\'s (B_e·A_e)ᵀ', async () => {
    await expectMerged(m, factors(m, 'B·A'), '0.19.1', 'B·A', 'down_proj');
    await expectMerged(m, factors(m, '(B·A)ᵀ'), '0.18.1', '(B·A)ᵀ', 'experts.down_proj');
  });
  it('refused in one line: bare "down_proj" under a version that wrote (B_e·A_e)ᵀ (trained there, or converted and first saved by it); a 0.19.1.dev0 build', async () => {
    const a = factors(m, '(B·A)ᵀ');
    for (const version of ['0.18.1', '0.19.0']) {
      expect(await problems(m, a, version, 'down_proj')).toEqual([
        `${AMBIGUOUS(m)}: PEFT ${version} wrote (B_e·A_e)ᵀ for a LoRA it trained on this parameter, but PEFT's conversion of a per-expert adapter for transformers 5 writes B_e·A_e and keeps the version the adapter was first saved with, and target_parameters "down_proj" is what that conversion writes: if PEFT trained the adapter on this parameter, name it "experts.down_proj" in target_parameters; if it was converted, set peft_version to 0.19.1`,
      ]);
    }
    expect(await problems(m, a, '0.19.1.dev0')).toEqual([
      `${AMBIGUOUS(m)}, and peft_version "0.19.1.dev0" is a development build from between PEFT 0.19.0 and 0.19.1, which swapped ParamWrapper's two layouts (commit e84dd8f, 2026-04-16): set peft_version in adapter_config.json to 0.19.0 if the build is older than that commit, else to 0.19.1`,
    ]);
  });
});

/**
 * Qwen/Qwen3-VL-30B-A3B-Instruct: the checkpoint holds the experts fused (E, in, out) under the
 * refactored names (`model.language_model.layers.N.mlp.experts.gate_up_proj` (E, hidden, 2·inter),
 * `down_proj` (E, inter, hidden)). transformers 4.57's Qwen3VLMoeTextExperts held them so; later
 * transformers 5 holds them (E, out, in) (gate_up_proj (E, 2·inter, hidden), no `is_transposed`). A
 * LoRA on both parameters nests two ParamWrappers: gate_up_proj (registered first) inside, saved
 * under `experts.base_layer`, down_proj outside, under `experts`. PEFT 0.18.1 on transformers 4.57
 * ((B_e·A_e)ᵀ, in_features = d1 = hidden) and PEFT 0.20.0 on the (E, out, in) model (B_e·A_e,
 * in_features = d2 = hidden) save the same shapes and the same ΔW per expert in (out, in) order,
 * which lands transposed on the checkpoint's (E, in, out) slabs.
 */
describe('Qwen3-VL-MoE: gate_up_proj and down_proj (nested wrappers) on the checkpoint\'s (E, in, out) experts', () => {
  const E = 4;
  const H = 8;
  const I = 6;
  const LM = 'model.language_model.layers.0';
  const cfg = {
    architectures: ['Qwen3VLMoeForConditionalGeneration'], model_type: 'qwen3_vl_moe', tie_word_embeddings: false,
    text_config: { model_type: 'qwen3_vl_moe_text', hidden_size: H, moe_intermediate_size: I, num_experts: E, num_experts_per_tok: 2 },
    vision_config: { model_type: 'qwen3_vl_moe', deepstack_visual_indexes: [0] },
  };
  const at = `base_model.model.${LM}.mlp.experts`;
  for (const version of ['0.18.1', '0.20.0']) {
    it(`PEFT ${version}: each expert's gate, up and down ΔW (out, in) added transposed to its slab, exactly; the rest bit for bit`, async () => {
      const base = [
        randomTensor(`${LM}.self_attn.q_proj.weight`, [16, H], 'BF16', rand),
        randomTensor(`${LM}.mlp.gate.weight`, [E, H], 'BF16', rand),
        randomTensor(`${LM}.mlp.experts.gate_up_proj`, [E, H, 2 * I], 'BF16', rand),
        randomTensor(`${LM}.mlp.experts.down_proj`, [E, I, H], 'BF16', rand),
        randomTensor('model.visual.blocks.0.attn.qkv.weight', [24, H], 'BF16', rand),
        randomTensor('lm_head.weight', [32, H], 'BF16', rand),
      ];
      // (out, in) of each expert's projection: gate_up (2I, H), down (H, I).
      const adapter = [
        randomTensor(`${at}.base_layer.lora_A.weight`, [r * E, H], 'F32', rand, 0.5), randomTensor(`${at}.base_layer.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5),
        randomTensor(`${at}.lora_A.weight`, [r * E, I], 'F32', rand, 0.5), randomTensor(`${at}.lora_B.weight`, [H, r * E], 'F32', rand, 0.5),
      ];
      const peft = { ...config(version), target_modules: [], target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'] };
      const prepared = await prepareOne(hfModelFolder(base, cfg), peftFolder(peft, adapter));
      expect(prepared.plan.problems).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backend);
      const f = decoded(adapter);
      const b = decoded(base);
      for (const [param, wrapper] of [['gate_up_proj', `${at}.base_layer`], ['down_proj', at]] as const) {
        const key = `${LM}.mlp.experts.${param}`;
        const w = b.get(key)!;
        const [, d1, d2] = w.shape; // (in, out)
        const A = f.get(`${wrapper}.lora_A.weight`)!.values; // (r·E, in)
        const B = f.get(`${wrapper}.lora_B.weight`)!.values; // (out, r·E)
        const truth = Float64Array.from(w.values);
        for (let e = 0; e < E; e++) {
          for (let o = 0; o < d2; o++) {
            for (let i = 0; i < d1; i++) {
              let s = 0;
              for (let k = 0; k < r; k++) s += B[o * r * E + k * E + e] * A[(e * r + k) * d1 + i];
              truth[e * d1 * d2 + i * d2 + o] += (alpha / r) * s;
            }
          }
        }
        const want = Array.from(truth, (v) => roundForDType(v, 'BF16'));
        const got = merged.tensors.get(key)!;
        const wrong = want.filter((v, j) => !Object.is(v, got.values[j])).length;
        expect(wrong, `${key}: ${wrong} of ${want.length} elements differ from the float64 truth`).toBe(0);
      }
      for (const [name, t] of b) {
        if (!name.includes('.experts.')) expect(merged.tensors.get(name)?.bytes, `${name} unchanged`).toEqual(t.bytes);
      }
    });
  }
});

/**
 * Checkpoints that store one tensor per expert, which transformers 5 stacks into the fused
 * parameters when it loads them (conversion_mapping.py: glm4v_moe and deepseek_v3 map to qwen2_moe's
 * rules, gate's rows then up's): zai-org/GLM-4.5V (`model.language_model.layers.N.mlp.experts.K.*`)
 * and deepseek-ai/DeepSeek-V3 in bf16 (`model.layers.N.mlp.experts.K.*`). A LoRA PEFT 0.20.0
 * trained on transformers 5 with target_parameters on both fused parameters (gate_up_proj inside,
 * under `experts.base_layer`; down_proj outside, under `experts`): expert e's B_e·A_e of gate_up_proj
 * (2·inter, hidden) has its first inter rows on experts.e.gate_proj, the rest on up_proj; down_proj's
 * (hidden, inter) on experts.e.down_proj.
 */
describe('GLM-4.5V and DeepSeek-V3 checkpoints with a tensor per expert: a transformers 5 target_parameters LoRA on each expert\'s tensors', () => {
  const E = 2;
  const H = 8;
  const I = 6;
  for (const [name, cfg, layer] of [
    ['GLM-4.5V (Glm4vMoeForConditionalGeneration)', { architectures: ['Glm4vMoeForConditionalGeneration'], model_type: 'glm4v_moe', text_config: { model_type: 'glm4v_moe_text', hidden_size: H, moe_intermediate_size: I, n_routed_experts: E }, vision_config: { model_type: 'glm4v_moe' }, tie_word_embeddings: false }, 'model.language_model.layers.1'],
    ['DeepSeek-V3 in bf16 (DeepseekV3ForCausalLM)', { architectures: ['DeepseekV3ForCausalLM'], model_type: 'deepseek_v3', hidden_size: H, moe_intermediate_size: I, n_routed_experts: E, tie_word_embeddings: false }, 'model.layers.1'],
  ] as const) {
    it(`${name}: PEFT 0.20.0, every expert's gate, up and down exactly; the router, shared experts and the rest bit for bit`, async () => {
      const base = [
        randomTensor(`${layer}.mlp.gate.weight`, [E, H], 'BF16', rand),
        randomTensor(`${layer}.mlp.gate.e_score_correction_bias`, [E], 'F32', rand),
        ...Array.from({ length: E }, (_, e) => [
          randomTensor(`${layer}.mlp.experts.${e}.gate_proj.weight`, [I, H], 'BF16', rand), randomTensor(`${layer}.mlp.experts.${e}.up_proj.weight`, [I, H], 'BF16', rand),
          randomTensor(`${layer}.mlp.experts.${e}.down_proj.weight`, [H, I], 'BF16', rand),
        ]).flat(),
        randomTensor(`${layer}.mlp.shared_experts.gate_proj.weight`, [I, H], 'BF16', rand),
        randomTensor('lm_head.weight', [32, H], 'BF16', rand),
      ];
      const at2 = `base_model.model.${layer}.mlp.experts`;
      const adapter = [
        randomTensor(`${at2}.base_layer.lora_A.weight`, [r * E, H], 'F32', rand, 0.5), randomTensor(`${at2}.base_layer.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5),
        randomTensor(`${at2}.lora_A.weight`, [r * E, I], 'F32', rand, 0.5), randomTensor(`${at2}.lora_B.weight`, [H, r * E], 'F32', rand, 0.5),
      ];
      const peft = { ...config('0.20.0'), target_modules: [], target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj'] };
      const prepared = await prepareOne(hfModelFolder(base, cfg), peftFolder(peft, adapter));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.warnings).toEqual([]);
      const merged = await mergeIntoFolder(prepared, backend);
      const f = decoded(adapter);
      const b = decoded(base);
      const changed = new Set<string>();
      for (const [wrapper, outF, inF, parts] of [
        [`${at2}.base_layer`, 2 * I, H, [['gate_proj', 0], ['up_proj', I]]],
        [at2, H, I, [['down_proj', 0]]],
      ] as const) {
        const A = f.get(`${wrapper}.lora_A.weight`)!.values; // (r·E, in)
        const B = f.get(`${wrapper}.lora_B.weight`)!.values; // (out, r·E)
        for (let e = 0; e < E; e++) {
          for (const [proj, from] of parts) {
            const key = `${layer}.mlp.experts.${e}.${proj}.weight`;
            changed.add(key);
            const w = b.get(key)!;
            const rows = w.shape[0];
            const truth = Float64Array.from(w.values);
            for (let o = 0; o < rows; o++) {
              for (let i = 0; i < inF; i++) {
                let s = 0;
                for (let k = 0; k < r; k++) s += B[(from + o) * r * E + k * E + e] * A[(e * r + k) * inF + i];
                truth[o * inF + i] += (alpha / r) * s;
              }
            }
            expect(rows + from).toBeLessThanOrEqual(outF);
            const want = Array.from(truth, (v) => roundForDType(v, 'BF16'));
            const got = merged.tensors.get(key)!;
            const wrong = want.filter((v, j) => !Object.is(v, got.values[j])).length;
            expect(wrong, `${key}: ${wrong} of ${want.length} elements differ from the float64 truth`).toBe(0);
          }
        }
      }
      for (const [key, t] of b) if (!changed.has(key)) expect(merged.tensors.get(key)?.bytes, `${key} unchanged`).toEqual(t.bytes);
    });
  }
});
