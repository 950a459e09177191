/**
 * MoE checkpoints whose names transformers 5 changes as it loads them, with adapters trained on its
 * classes, end to end against float64 truth: Nemotron-H (NVIDIA's checkpoints name the model
 * `backbone.…`, transformers 5's NemotronHForCausalLM `model.…`; its ungated experts, one tensor per
 * expert, become `mixer.experts.up_proj` / `down_proj`), and a Qwen3-Omni thinker's fused experts
 * (Qwen3OmniMoeThinkerForConditionalGeneration's `model.layers.N.mlp.experts.gate_up_proj`) on the
 * whole Omni checkpoint, whose talker repeats the thinker's expert names under `talker.`, and the
 * thinker's per-expert LoRA of transformers 4 on an Omni checkpoint saved with fused experts; LFM2-MoE's
 * `feed_forward.experts.K.w1` / `w3` / `w2`, which transformers 5 fuses as Mixtral's; and Hy3's and
 * Laguna's shared experts (`mlp.shared_mlp.…`, `mlp.shared_expert.…` on disk, `mlp.shared_experts.…` in
 * transformers 5) beside their per-expert experts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor } from './helpers/hf-folder.js';
import { expectPeftLorasAt, expectPeftLorasByName, expectValues, expertDelta, plus, product } from './helpers/merge-truth.js';

const rand = seededRandom(9120);
let backend: MergeBackend;
beforeAll(async () => {
  backend = await createNodeBackend('cpu');
});
afterAll(() => backend.dispose());

const t = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => randomTensor(name, shape, dtype, rand);

function lora(path: string, out: number, inF: number, r: number): FixtureTensor[] {
  return [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ];
}

describe('Nemotron-H (nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 names): backbone.… on disk, model.… in transformers 5', () => {
  // Scaled: hidden 8, Mamba-2 block (layer 0), attention (layer 1), MoE of 4 ungated experts of 6 (layer 2).
  const E = 4;
  const I = 6;
  const H = 8;
  const base: FixtureTensor[] = [
    t('backbone.embeddings.weight', [32, H]),
    t('backbone.layers.0.norm.weight', [H]),
    t('backbone.layers.0.mixer.in_proj.weight', [30, H]),
    t('backbone.layers.0.mixer.conv1d.weight', [12, 1, 4]),
    t('backbone.layers.0.mixer.A_log', [2], 'F32'),
    t('backbone.layers.0.mixer.D', [2], 'F32'),
    t('backbone.layers.0.mixer.dt_bias', [2], 'F32'),
    t('backbone.layers.0.mixer.out_proj.weight', [H, H]),
    t('backbone.layers.1.mixer.q_proj.weight', [H, H]),
    t('backbone.layers.1.mixer.k_proj.weight', [4, H]),
    t('backbone.layers.2.mixer.gate.weight', [E, H], 'F32'),
    t('backbone.layers.2.mixer.gate.e_score_correction_bias', [E], 'F32'),
    t('backbone.layers.2.mixer.shared_experts.up_proj.weight', [12, H]),
    t('backbone.layers.2.mixer.shared_experts.down_proj.weight', [H, 12]),
    t('backbone.norm_f.weight', [H]),
    t('lm_head.weight', [32, H]),
  ];
  for (let e = 0; e < E; e++) base.push(t(`backbone.layers.2.mixer.experts.${e}.up_proj.weight`, [I, H]), t(`backbone.layers.2.mixer.experts.${e}.down_proj.weight`, [H, I]));
  const config = {
    architectures: ['NemotronHForCausalLM'], model_type: 'nemotron_h', torch_dtype: 'bfloat16', hidden_size: H, vocab_size: 32, num_hidden_layers: 3,
    hybrid_override_pattern: 'M*E', n_routed_experts: E, moe_intermediate_size: I, moe_shared_expert_intermediate_size: 12, tie_word_embeddings: false,
    auto_map: { AutoConfig: 'configuration_nemotron_h.NemotronHConfig', AutoModelForCausalLM: 'modeling_nemotron_h.NemotronHForCausalLM' },
  };
  const r = 2;
  // [transformers 5's module path, checkpoint key, out, in]
  const linears: [string, string, number, number][] = [
    ['model.layers.0.mixer.in_proj', 'backbone.layers.0.mixer.in_proj.weight', 30, H],
    ['model.layers.0.mixer.out_proj', 'backbone.layers.0.mixer.out_proj.weight', H, H],
    ['model.layers.1.mixer.q_proj', 'backbone.layers.1.mixer.q_proj.weight', H, H],
    ['model.layers.2.mixer.shared_experts.down_proj', 'backbone.layers.2.mixer.shared_experts.down_proj.weight', H, 12],
  ];

  it("transformers 5's names land on backbone.…; its fused up_proj expert by expert on mixer.experts.e.up_proj, exactly", async () => {
    const experts = 'base_model.model.model.layers.2.mixer.experts';
    const adapter = [
      ...linears.flatMap(([path, , out, inF]) => lora(path, out, inF, r)),
      randomTensor(`${experts}.lora_A.weight`, [r * E, H], 'F32', rand, 0.5),
      randomTensor(`${experts}.lora_B.weight`, [I, r * E], 'F32', rand, 0.5),
    ];
    const prepared = await prepare(
      hfModelFolder(base, config),
      peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: ['in_proj', 'out_proj', 'q_proj', 'down_proj'], target_parameters: ['mixer.experts.up_proj'] }, adapter),
    );
    expect(prepared.plan.problems).toEqual([]);
    const expertKeys = Array.from({ length: E }, (_, e) => `backbone.layers.2.mixer.experts.${e}.up_proj.weight`);
    expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual([
      ...linears.map(([, key]) => [key, 'vlm-checkpoint']), ...expertKeys.map((k) => [k, 'per-expert-tensors']),
    ].sort());
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(adapter);
    expectPeftLorasAt(merged.tensors, b, a, linears.map(([path, key]) => [path, key] as const), 2);
    for (let e = 0; e < E; e++) {
      expectValues(expertKeys[e], merged.tensors.get(expertKeys[e])!, plus(b.get(expertKeys[e])!, 2, expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, E, r)));
    }
    const changed = [...linears.map(([, key]) => key), ...expertKeys];
    for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  });

  it('an adapter trained on the remote code (backbone.…, per-expert Linears) lands by name', async () => {
    const modules: [string, number, number][] = [['backbone.layers.1.mixer.k_proj', 4, H], ['backbone.layers.2.mixer.experts.3.down_proj', H, I]];
    const adapter = modules.flatMap(([path, out, inF]) => lora(path, out, inF, r));
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, target_modules: ['k_proj', 'down_proj'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    expectPeftLorasByName(merged.tensors, decoded(base), decoded(adapter), modules.map(([path]) => path), 2);
  });

  it('a gated model\'s experts.up_proj is no fused parameter: not placed on its per-expert up_proj', async () => {
    const qwen = [t('model.layers.0.mlp.experts.0.gate_proj.weight', [I, H]), t('model.layers.0.mlp.experts.0.up_proj.weight', [I, H]), t('model.layers.0.mlp.experts.0.down_proj.weight', [H, I])];
    const experts = 'base_model.model.model.layers.0.mlp.experts';
    const adapter = [randomTensor(`${experts}.lora_A.weight`, [r, H], 'F32', rand), randomTensor(`${experts}.lora_B.weight`, [I, r], 'F32', rand)];
    const prepared = await prepare(
      hfModelFolder(qwen, { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', torch_dtype: 'bfloat16' }),
      peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.up_proj'] }, adapter),
    );
    await prepared.close();
    expect(prepared.plan.updates).toEqual([]);
    expect(prepared.plan.problems.map((p) => p.message)).toEqual(['adapter1: module "model.layers.0.mlp.experts.up_proj": no matching tensor in the base model']);
  });
});

describe("a Qwen3-Omni thinker's fused experts (target_parameters) on the whole Omni checkpoint", () => {
  const E = 2;
  const I = 6;
  const H = 8;
  const r = 2;
  const base: FixtureTensor[] = [t('thinker.model.layers.0.self_attn.q_proj.weight', [H, H]), t('talker.model.layers.0.self_attn.q_proj.weight', [H, H])];
  for (const part of ['thinker', 'talker']) {
    for (let e = 0; e < E; e++) {
      base.push(t(`${part}.model.layers.0.mlp.experts.${e}.gate_proj.weight`, [I, H]), t(`${part}.model.layers.0.mlp.experts.${e}.up_proj.weight`, [I, H]), t(`${part}.model.layers.0.mlp.experts.${e}.down_proj.weight`, [H, I]));
    }
  }
  const config = { architectures: ['Qwen3OmniMoeForConditionalGeneration'], model_type: 'qwen3_omni_moe', torch_dtype: 'bfloat16' };

  it("the thinker class's model.layers.0.mlp.experts.gate_up_proj lands on thinker.model.layers.0.mlp.experts.e.*, never the talker's, exactly", async () => {
    const experts = 'base_model.model.model.layers.0.mlp.experts';
    const adapter = [randomTensor(`${experts}.lora_A.weight`, [r * E, H], 'F32', rand, 0.5), randomTensor(`${experts}.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5)];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.gate_up_proj'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const changed = Array.from({ length: E }, (_, e) => [`thinker.model.layers.0.mlp.experts.${e}.gate_proj.weight`, `thinker.model.layers.0.mlp.experts.${e}.up_proj.weight`]).flat();
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...changed].sort());
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(adapter);
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, E, r);
      for (const [part, from] of [['gate_proj', 0], ['up_proj', I]] as const) {
        const key = `thinker.model.layers.0.mlp.experts.${e}.${part}.weight`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 2, delta.slice(from * H, (from + I) * H)));
      }
    }
    for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  });
});

describe("a Qwen3-Omni thinker's per-expert LoRA (transformers 4) on an Omni checkpoint with fused experts (transformers 5's)", () => {
  // Scaled: hidden 8, 3 experts of 6 in the thinker's layer 0; the talker's layer 0 repeats the same tails under `talker.`.
  const E = 3;
  const I = 6;
  const H = 8;
  const r = 2;
  const base: FixtureTensor[] = [];
  for (const part of ['thinker', 'talker']) {
    base.push(
      t(`${part}.model.layers.0.self_attn.q_proj.weight`, [H, H]),
      t(`${part}.model.layers.0.mlp.gate.weight`, [E, H]),
      t(`${part}.model.layers.0.mlp.experts.gate_up_proj`, [E, 2 * I, H]),
      t(`${part}.model.layers.0.mlp.experts.down_proj`, [E, H, I]),
    );
  }
  const config = { architectures: ['Qwen3OmniMoeForConditionalGeneration'], model_type: 'qwen3_omni_moe', torch_dtype: 'bfloat16' };
  const experts = 'model.layers.0.mlp.experts';
  // [module path the thinker class names, out, in, fused tensor, first row of the fused tensor seen as its E·rows rows]
  const modules: [string, number, number, string, number][] = [
    [`${experts}.1.gate_proj`, I, H, 'thinker.model.layers.0.mlp.experts.gate_up_proj', 1 * 2 * I],
    [`${experts}.1.up_proj`, I, H, 'thinker.model.layers.0.mlp.experts.gate_up_proj', 1 * 2 * I + I],
    [`${experts}.2.up_proj`, I, H, 'thinker.model.layers.0.mlp.experts.gate_up_proj', 2 * 2 * I + I],
    [`${experts}.0.down_proj`, H, I, 'thinker.model.layers.0.mlp.experts.down_proj', 0],
    [`${experts}.2.down_proj`, H, I, 'thinker.model.layers.0.mlp.experts.down_proj', 2 * H],
  ];

  it("model.layers.0.mlp.experts.K.gate_proj / up_proj / down_proj land on expert K's rows of thinker.…experts.gate_up_proj / down_proj, never the talker's, exactly", async () => {
    const adapter = [...lora('model.layers.0.self_attn.q_proj', H, H, r), ...modules.flatMap(([path, out, inF]) => lora(path, out, inF, r))];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, peft_version: '0.15.2', target_modules: ['q_proj', 'gate_proj', 'up_proj', 'down_proj'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const changed = ['thinker.model.layers.0.self_attn.q_proj.weight', 'thinker.model.layers.0.mlp.experts.gate_up_proj', 'thinker.model.layers.0.mlp.experts.down_proj'];
    expect([...new Set(prepared.plan.updates.map((u) => u.baseKey))].sort()).toEqual([...changed].sort());
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(adapter);
    const s = 4 / r;
    // The truth, plainly: each fused tensor as doubles, every module's s·B·A added on its rows.
    const truth = new Map<string, Float64Array>(changed.map((k) => [k, Float64Array.from(b.get(k)!.values)]));
    for (const [path, out, inF, key, row] of modules) {
      const delta = product(a.get(`base_model.model.${path}.lora_B.weight`)!, a.get(`base_model.model.${path}.lora_A.weight`)!);
      const w = truth.get(key)!;
      for (let i = 0; i < out * inF; i++) w[row * inF + i] += s * delta[i];
    }
    const q = 'thinker.model.layers.0.self_attn.q_proj.weight';
    const qDelta = product(a.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!, a.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!);
    truth.set(q, plus(b.get(q)!, s, qDelta));
    for (const [key, want] of truth) expectValues(key, merged.tensors.get(key)!, want);
    for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  });
});

describe('LFM2-MoE (LiquidAI/LFM2-8B-A1B): feed_forward.experts.K.w1 / w3 / w2 on disk, fused feed_forward.experts.* in transformers 5', () => {
  const E = 2;
  const I = 6;
  const H = 8;
  const r = 2;
  const F = 'model.layers.2.feed_forward';
  const base: FixtureTensor[] = [
    t('model.embed_tokens.weight', [32, H]),
    t('model.layers.0.conv.in_proj.weight', [3 * H, H]),
    t('model.layers.2.self_attn.q_proj.weight', [H, H]),
    t(`${F}.gate.weight`, [E, H]),
    t(`${F}.expert_bias`, [E], 'F32'),
  ];
  for (let e = 0; e < E; e++) base.push(t(`${F}.experts.${e}.w1.weight`, [I, H]), t(`${F}.experts.${e}.w3.weight`, [I, H]), t(`${F}.experts.${e}.w2.weight`, [H, I]));
  const config = { architectures: ['Lfm2MoeForCausalLM'], model_type: 'lfm2_moe', torch_dtype: 'bfloat16', hidden_size: H, num_experts: E, moe_intermediate_size: I };

  it("gate_up_proj's gate rows land on experts.e.w1, its up rows on experts.e.w3, down_proj on experts.e.w2, exactly", async () => {
    const gateUp = `base_model.model.${F}.experts.base_layer`;
    const down = `base_model.model.${F}.experts`;
    const adapter = [
      randomTensor(`${gateUp}.lora_A.weight`, [r * E, H], 'F32', rand, 0.5), randomTensor(`${gateUp}.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5),
      randomTensor(`${down}.lora_A.weight`, [r * E, I], 'F32', rand, 0.5), randomTensor(`${down}.lora_B.weight`, [H, r * E], 'F32', rand, 0.5),
    ];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['feed_forward.experts.gate_up_proj', 'feed_forward.experts.down_proj'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await mergeIntoFolder(prepared, backend);
    const b = decoded(base);
    const a = decoded(adapter);
    const changed: string[] = [];
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(a.get(`${gateUp}.lora_A.weight`)!, a.get(`${gateUp}.lora_B.weight`)!, e, E, r);
      for (const [part, from] of [['w1', 0], ['w3', I]] as const) {
        const key = `${F}.experts.${e}.${part}.weight`;
        changed.push(key);
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 2, delta.slice(from * H, (from + I) * H)));
      }
      const key = `${F}.experts.${e}.w2.weight`;
      changed.push(key);
      expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 2, expertDelta(a.get(`${down}.lora_A.weight`)!, a.get(`${down}.lora_B.weight`)!, e, E, r)));
    }
    for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  });
});

/**
 * Hy3 (tencent/Hy3: 80 layers, 192 experts of 1536 wide, hidden 4096, layer 0 dense) and Laguna
 * (LagunaForCausalLM: 256 experts of 512, a shared expert of 512, hidden 2048): the checkpoints keep one
 * tensor per expert and name the shared expert `mlp.shared_mlp` / `mlp.shared_expert`; an adapter trained
 * on transformers 5's class names it `mlp.shared_experts` and the experts by `target_parameters`.
 * Scaled: 4 experts of 6, hidden 8.
 */
describe('Hy3 and Laguna: the shared expert under the checkpoint\'s name and transformers 5\'s', () => {
  const E = 4;
  const I = 6;
  const H = 8;
  const r = 2;
  for (const [family, arch, modelType, shared, extra] of [
    ['Hy3', 'HYV3ForCausalLM', 'hy_v3', 'shared_mlp', [t('model.layers.1.mlp.router.gate.weight', [E, H], 'F32'), t('model.layers.1.mlp.expert_bias', [E], 'F32')]],
    ['Laguna', 'LagunaForCausalLM', 'laguna', 'shared_expert', [t('model.layers.1.mlp.gate.weight', [E, H], 'F32'), t('model.layers.1.mlp.experts.e_score_correction_bias', [E], 'F32')]],
  ] as const) {
    const base: FixtureTensor[] = [
      t('model.embed_tokens.weight', [32, H]),
      t('model.layers.0.self_attn.q_proj.weight', [H, H]),
      t('model.layers.0.mlp.gate_proj.weight', [12, H]),
      t('model.layers.0.mlp.up_proj.weight', [12, H]),
      t('model.layers.0.mlp.down_proj.weight', [H, 12]),
      t('model.layers.1.self_attn.q_proj.weight', [H, H]),
      ...extra,
      t(`model.layers.1.mlp.${shared}.gate_proj.weight`, [I, H]),
      t(`model.layers.1.mlp.${shared}.up_proj.weight`, [I, H]),
      t(`model.layers.1.mlp.${shared}.down_proj.weight`, [H, I]),
      t('model.norm.weight', [H]),
      t('lm_head.weight', [32, H]),
    ];
    for (let e = 0; e < E; e++) base.push(t(`model.layers.1.mlp.experts.${e}.gate_proj.weight`, [I, H]), t(`model.layers.1.mlp.experts.${e}.up_proj.weight`, [I, H]), t(`model.layers.1.mlp.experts.${e}.down_proj.weight`, [H, I]));
    const config = {
      architectures: [arch], model_type: modelType, torch_dtype: 'bfloat16', hidden_size: H, vocab_size: 32, num_hidden_layers: 2,
      num_experts: E, first_k_dense_replace: 1, tie_word_embeddings: false,
    };
    const linears: [string, string, number, number][] = [
      ['model.layers.1.mlp.shared_experts.gate_proj', `model.layers.1.mlp.${shared}.gate_proj.weight`, I, H],
      ['model.layers.1.mlp.shared_experts.down_proj', `model.layers.1.mlp.${shared}.down_proj.weight`, H, I],
      ['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.q_proj.weight', H, H],
    ];

    it(`${family}: transformers 5's shared_experts land on mlp.${shared}, its fused gate_up_proj expert by expert, exactly`, async () => {
      const experts = 'base_model.model.model.layers.1.mlp.experts';
      const adapter = [
        ...linears.flatMap(([path, , out, inF]) => lora(path, out, inF, r)),
        randomTensor(`${experts}.lora_A.weight`, [r * E, H], 'F32', rand, 0.5),
        randomTensor(`${experts}.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5),
      ];
      const prepared = await prepare(
        hfModelFolder(base, config, { shards: 2 }),
        peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: ['gate_proj', 'down_proj', 'q_proj'], target_parameters: ['mlp.experts.gate_up_proj'] }, adapter),
      );
      expect(prepared.plan.problems).toEqual([]);
      const expertKeys = Array.from({ length: E }, (_, e) => [`model.layers.1.mlp.experts.${e}.gate_proj.weight`, `model.layers.1.mlp.experts.${e}.up_proj.weight`]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...linears.map(([, key]) => key), ...expertKeys.flat()].sort());
      const merged = await mergeIntoFolder(prepared, backend);
      const b = decoded(base);
      const a = decoded(adapter);
      expectPeftLorasAt(merged.tensors, b, a, linears.map(([path, key]) => [path, key] as const), 2);
      for (let e = 0; e < E; e++) {
        const delta = expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, E, r);
        for (const [part, from] of [[0, 0], [1, I]] as const) expectValues(expertKeys[e][part], merged.tensors.get(expertKeys[e][part])!, plus(b.get(expertKeys[e][part])!, 2, delta.slice(from * H, (from + I) * H)));
      }
      const changed = [...linears.map(([, key]) => key), ...expertKeys.flat()];
      for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      expect([...merged.tensors.keys()].sort()).toEqual([...b.keys()].sort());
    });
  }
});
