/**
 * Baidu's vision-language models and their checkpoints' names against transformers' classes, end to
 * end against float64 truth: PaddleOCR-VL (PaddlePaddle/PaddleOCR-VL, written for its remote code:
 * `visual.vision_model.…`, `mlp_AR.…`, `model.layers.…`; and the `-hf` conversion:
 * `model.visual.…`, `model.projector.…`, `model.language_model.…`), with adapters trained on either;
 * ERNIE-4.5-VL-28B-A3B-PT (one tensor per expert, text experts then vision experts, routers stored
 * (hidden, E)) with an adapter trained on transformers 5's Ernie4_5_VLMoeForConditionalGeneration
 * (`model.language_model.…`, `model.vision_tower.…`, fused `text_moe` / `vision_moe` experts and
 * routers by `target_parameters`) and one trained on the remote code; ERNIE-4.5-21B-A3B-PT (text
 * MoE) with adapters of transformers 4 (per expert) and 5 (fused experts). Sizes are scaled down;
 * names, dtypes and layouts are the repositories'.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor, type MergedFolder } from './helpers/hf-folder.js';
import { expectPeftLorasByName, expectValues, expertDelta, plus, product } from './helpers/merge-truth.js';

const rand = seededRandom(8451);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const merge = (prepared: PreparedMerge, kind: 'cpu' | 'webgpu'): Promise<MergedFolder> => mergeIntoFolder(prepared, backends[kind]!);
const t = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => randomTensor(name, shape, dtype, rand);

/** A (rows × cols) matrix transposed. */
function transpose(m: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = m[i * cols + j];
  return out;
}

function lora(path: string, out: number, inF: number, r: number): FixtureTensor[] {
  return [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ];
}

// --- PaddleOCR-VL --------------------------------------------------------------------------------

describe('PaddleOCR-VL: the remote-code checkpoint and the -hf conversion, adapters of either', () => {
  // PaddlePaddle/PaddleOCR-VL's names (ERNIE-4.5-0.3B language model: 16 heads of 128, 2 KV heads;
  // SigLIP tower 1152 wide; projector 4608 → 4608 → 1024), scaled: heads of 8, tower 8 wide, 2×2 merge.
  const remote: FixtureTensor[] = [
    t('model.embed_tokens.weight', [64, 16]),
    t('model.layers.0.self_attn.q_proj.weight', [16, 16]),
    t('model.layers.0.self_attn.k_proj.weight', [8, 16]),
    t('model.layers.0.self_attn.v_proj.weight', [8, 16]),
    t('model.layers.0.self_attn.o_proj.weight', [16, 16]),
    t('model.layers.0.mlp.gate_proj.weight', [24, 16]),
    t('model.layers.0.mlp.down_proj.weight', [16, 24]),
    t('model.layers.0.input_layernorm.weight', [16]),
    t('model.norm.weight', [16]),
    t('visual.vision_model.embeddings.patch_embedding.weight', [8, 3, 2, 2]),
    t('visual.vision_model.embeddings.position_embedding.weight', [16, 8]),
    t('visual.vision_model.encoder.layers.0.self_attn.q_proj.weight', [8, 8]),
    t('visual.vision_model.encoder.layers.0.self_attn.q_proj.bias', [8]),
    t('visual.vision_model.encoder.layers.0.mlp.fc1.weight', [12, 8]),
    t('visual.vision_model.post_layernorm.weight', [8]),
    t('visual.vision_model.head.attention.in_proj_weight', [24, 8]),
    t('mlp_AR.pre_norm.weight', [8]),
    t('mlp_AR.linear_1.weight', [32, 32]),
    t('mlp_AR.linear_1.bias', [32]),
    t('mlp_AR.linear_2.weight', [16, 32]),
  ];
  const remoteConfig = {
    architectures: ['PaddleOCRVLForConditionalGeneration'], model_type: 'paddleocr_vl', torch_dtype: 'bfloat16',
    auto_map: { AutoConfig: 'configuration_paddleocr_vl.PaddleOCRVLConfig', AutoModelForCausalLM: 'modeling_paddleocr_vl.PaddleOCRVLForConditionalGeneration' },
    hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, intermediate_size: 24, vocab_size: 64, tie_word_embeddings: true,
    vision_config: { model_type: 'paddleocr_vl', hidden_size: 8, spatial_merge_size: 2 },
  };
  // convert_paddleocr_vl_to_hf.py: ^visual. → model.visual., ^mlp_AR. → model.projector., other model. → model.language_model.
  const toHf = (name: string) => name.startsWith('visual.') ? `model.${name}` : name.startsWith('mlp_AR.') ? `model.projector.${name.slice(7)}`
    : name.startsWith('model.') ? `model.language_model.${name.slice(6)}` : name;
  const hf = remote.map((x) => ({ ...x, name: toHf(x.name) }));
  const hfConfig = {
    architectures: ['PaddleOCRVLForConditionalGeneration'], model_type: 'paddleocr_vl', torch_dtype: 'bfloat16', tie_word_embeddings: true,
    text_config: { model_type: 'paddleocr_vl_text', hidden_size: 16, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, vocab_size: 64 },
    vision_config: { model_type: 'paddleocr_vl_vision', hidden_size: 8, spatial_merge_size: 2 },
  };
  // [remote code's module path, transformers' module path, out, in, r]
  const modules: [string, string, number, number, number][] = [
    ['model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj', 16, 16, 2],
    ['model.layers.0.self_attn.v_proj', 'model.language_model.layers.0.self_attn.v_proj', 8, 16, 1],
    ['model.layers.0.mlp.down_proj', 'model.language_model.layers.0.mlp.down_proj', 16, 24, 3],
    ['visual.vision_model.encoder.layers.0.self_attn.q_proj', 'model.visual.vision_model.encoder.layers.0.self_attn.q_proj', 8, 8, 2],
    ['mlp_AR.linear_1', 'model.projector.linear_1', 32, 32, 2],
    ['mlp_AR.linear_2', 'model.projector.linear_2', 16, 32, 1],
  ];
  const peft = (naming: 0 | 1) => ({
    r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj', 'down_proj', 'linear_1', 'linear_2'],
    rank_pattern: Object.fromEntries(modules.map((m) => [m[naming], m[4]])),
  });

  for (const [title, base, config, naming, kind] of [
    ['the remote-code checkpoint, an adapter trained on transformers\' class', remote, remoteConfig, 1, 'cpu'],
    ['the remote-code checkpoint, an adapter trained on transformers\' class', remote, remoteConfig, 1, 'webgpu'],
    ['the -hf checkpoint, an adapter trained on the remote code', hf, hfConfig, 0, 'cpu'],
    ['the remote-code checkpoint, an adapter trained on the remote code', remote, remoteConfig, 0, 'cpu'],
  ] as const) {
    it(`${title}: each module lands on its tensor, exactly, on ${kind}`, async () => {
      const adapter = modules.flatMap((m) => lora(m[naming], m[2], m[3], m[4]));
      const prepared = await prepare(hfModelFolder(base, config), peftFolder(peft(naming), adapter));
      expect(prepared.plan.problems).toEqual([]);
      const keyOf = (m: (typeof modules)[number]) => `${base === remote ? m[0] : m[1]}.weight`;
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(modules.map((m) => [keyOf(m), 'vlm-checkpoint']).sort());
      const merged = await merge(prepared, kind);
      const b = decoded(base);
      const a = decoded(adapter);
      for (const m of modules) {
        const name = `base_model.model.${m[naming]}`;
        expectValues(keyOf(m), merged.tensors.get(keyOf(m))!, plus(b.get(keyOf(m))!, 4 / m[4], product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
      }
      const changed = modules.map(keyOf);
      for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
    });
  }

  it('refused in one line: a module named by a tail that both the language model and the vision tower end with', async () => {
    const adapter = lora('layers.0.self_attn.q_proj', 16, 16, 2);
    const prepared = await prepare(hfModelFolder(remote, remoteConfig), peftFolder({ r: 2, target_modules: ['q_proj'] }, adapter));
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "layers.0.self_attn.q_proj": matches 2 base tensors (model.layers.0.self_attn.q_proj.weight, visual.vision_model.encoder.layers.0.self_attn.q_proj.weight)',
    ]);
  });
});

// --- ERNIE-4.5-VL MoE ----------------------------------------------------------------------------

describe('ERNIE-4.5-VL-28B-A3B-PT: an adapter trained on transformers 5\'s class, and one on the remote code', () => {
  // baidu/ERNIE-4.5-VL-28B-A3B-PT: moe_num_experts [64, 64], moe_intermediate_size [1536, 512], 2 shared
  // experts; layer 0 dense, the rest MoE. Scaled: 4 + 4 experts, 12 and 6 wide, hidden 16.
  const ET = 4;
  const EV = 4;
  const IT = 12;
  const IV = 6;
  const H = 16;
  const L1 = 'model.layers.1.mlp';
  const base: FixtureTensor[] = [
    t('model.embed_tokens.weight', [64, H]),
    t('model.layers.0.self_attn.q_proj.weight', [H, H]),
    t('model.layers.0.self_attn.k_proj.weight', [8, H]),
    t('model.layers.0.mlp.gate_proj.weight', [24, H]),
    t('model.layers.0.mlp.down_proj.weight', [H, 24]),
    t('model.layers.0.input_layernorm.weight', [H]),
    t('model.layers.1.self_attn.q_proj.weight', [H, H]),
    t(`${L1}.gate.weight`, [H, ET], 'F32'),
    t(`${L1}.gate.weight_1`, [H, EV], 'F32'),
    t(`${L1}.moe_statics.e_score_correction_bias`, [2, ET], 'F32'),
    t(`${L1}.shared_experts.gate_proj.weight`, [2 * IT, H]),
    t(`${L1}.shared_experts.down_proj.weight`, [H, 2 * IT]),
    t('model.norm.weight', [H]),
    t('vision_model.patch_embed.proj.weight', [8, 12]),
    t('vision_model.blocks.0.attn.qkv.weight', [24, 8]),
    t('vision_model.blocks.0.attn.qkv.bias', [24]),
    t('vision_model.blocks.0.attn.proj.weight', [8, 8]),
    t('vision_model.blocks.0.norm1.weight', [8]),
    t('vision_model.ln.weight', [8]),
    t('model.resampler_model.spatial_linear.0.weight', [32, 32]),
    t('model.resampler_model.spatial_linear.2.weight', [32, 32]),
    t('model.resampler_model.spatial_linear.3.weight', [32]),
    t('model.resampler_model.temporal_linear.0.weight', [32, 64]),
    t('model.resampler_model.mlp.weight', [H, 32]),
    t('model.resampler_model.after_norm.weight', [H]),
  ];
  for (let e = 0; e < ET + EV; e++) {
    const inter = e < ET ? IT : IV;
    base.push(t(`${L1}.experts.${e}.gate_proj.weight`, [inter, H]), t(`${L1}.experts.${e}.up_proj.weight`, [inter, H]), t(`${L1}.experts.${e}.down_proj.weight`, [H, inter]));
  }
  const config = {
    architectures: ['Ernie4_5_VLMoeForConditionalGeneration'], model_type: 'ernie4_5_moe_vl', torch_dtype: 'bfloat16',
    auto_map: { AutoConfig: 'configuration_ernie4_5_vl.Ernie4_5_VLMoEConfig', AutoModelForCausalLM: 'modeling_ernie4_5_vl.Ernie4_5_VLMoeForConditionalGeneration' },
    hidden_size: H, intermediate_size: 24, num_attention_heads: 2, num_key_value_heads: 1, num_hidden_layers: 2, vocab_size: 64, tie_word_embeddings: true,
    moe_num_experts: [ET, EV], moe_intermediate_size: [IT, IV], moe_k: 2, moe_layer_start_index: 1, moe_layer_end_index: [1, 1], moe_layer_interval: 1, moe_num_shared_experts: 2,
    spatial_conv_size: 2, temporal_conv_size: 2, im_patch_id: 100295,
    vision_config: { depth: 1, hidden_size: 8, num_heads: 2, mlp_ratio: 4, patch_size: 2, in_channels: 3, spatial_merge_size: 2 },
  };
  const r = 2;
  // [transformers 5 module path, checkpoint key, out, in]
  const linears: [string, string, number, number][] = [
    ['model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj.weight', H, H],
    ['model.language_model.layers.0.mlp.down_proj', 'model.layers.0.mlp.down_proj.weight', H, 24],
    ['model.language_model.layers.1.mlp.shared_experts.gate_proj', `${L1}.shared_experts.gate_proj.weight`, 2 * IT, H],
    ['model.vision_tower.blocks.0.attn.qkv', 'vision_model.blocks.0.attn.qkv.weight', 24, 8],
    ['model.resampler_model.spatial_linear.fc1', 'model.resampler_model.spatial_linear.0.weight', 32, 32],
    ['model.resampler_model.mlp', 'model.resampler_model.mlp.weight', H, 32],
  ];
  const TEXT = 'model.language_model.layers.1.mlp.text_moe';
  const VISION = 'model.language_model.layers.1.mlp.vision_moe';
  const nativeAdapter = (): FixtureTensor[] => [
    ...linears.flatMap(([path, , out, inF]) => lora(path, out, inF, r)),
    // text_moe.experts.gate_up_proj (4, 2·12, 16), vision_moe.experts.down_proj (4, 16, 6), text_moe.gate.weight (4, 16).
    randomTensor(`base_model.model.${TEXT}.experts.lora_A.weight`, [r * ET, H], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${TEXT}.experts.lora_B.weight`, [2 * IT, r * ET], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${VISION}.experts.lora_A.weight`, [r * EV, IV], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${VISION}.experts.lora_B.weight`, [H, r * EV], 'F32', rand, 0.5),
    ...lora(`${TEXT}.gate`, ET, H, r),
    ...lora(`${VISION}.gate`, EV, H, r),
  ];
  const nativeConfig = {
    r, lora_alpha: 4, peft_version: '0.19.1', target_modules: ['q_proj', 'down_proj', 'shared_experts.gate_proj', 'qkv', 'spatial_linear.fc1', 'resampler_model.mlp'],
    target_parameters: ['text_moe.experts.gate_up_proj', 'vision_moe.experts.down_proj', 'text_moe.gate.weight', 'vision_moe.gate.weight'],
  };

  for (const kind of ['cpu', 'webgpu'] as const) {
    it(`transformers 5's names land on the checkpoint's: linears by the key map, expert e of text_moe on experts.e, of vision_moe on experts.${ET}+e, the routers transposed on mlp.gate.weight and mlp.gate.weight_1, exactly, on ${kind}`, async () => {
      const adapter = nativeAdapter();
      const prepared = await prepare(hfModelFolder(base, config, { shards: 2 }), peftFolder(nativeConfig, adapter));
      expect(prepared.plan.problems).toEqual([]);
      const textKeys = Array.from({ length: ET }, (_, e) => [`${L1}.experts.${e}.gate_proj.weight`, `${L1}.experts.${e}.up_proj.weight`]).flat();
      const visionKeys = Array.from({ length: EV }, (_, e) => `${L1}.experts.${ET + e}.down_proj.weight`);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual([
        ...linears.map(([, key]) => [key, 'vlm-checkpoint']),
        ...[...textKeys, ...visionKeys, `${L1}.gate.weight`, `${L1}.gate.weight_1`].map((k) => [k, 'ernie-vl-experts']),
      ].sort());
      const merged = await merge(prepared, kind);
      const b = decoded(base);
      const a = decoded(adapter);
      const s = 4 / r;
      for (const [path, key] of linears) {
        const name = `base_model.model.${path}`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, s, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
      }
      for (let e = 0; e < ET; e++) {
        // Expert e's gate_up ΔW (2·12 × 16): rows [0, 12) its gate_proj, [12, 24) its up_proj.
        const delta = expertDelta(a.get(`base_model.model.${TEXT}.experts.lora_A.weight`)!, a.get(`base_model.model.${TEXT}.experts.lora_B.weight`)!, e, ET, r);
        for (const [part, from] of [['gate_proj', 0], ['up_proj', IT]] as const) {
          const key = `${L1}.experts.${e}.${part}.weight`;
          expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, s, delta.slice(from * H, (from + IT) * H)));
        }
      }
      for (let e = 0; e < EV; e++) {
        const key = `${L1}.experts.${ET + e}.down_proj.weight`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, s, expertDelta(a.get(`base_model.model.${VISION}.experts.lora_A.weight`)!, a.get(`base_model.model.${VISION}.experts.lora_B.weight`)!, e, EV, r)));
      }
      // The routers: transformers' parameter (E, hidden) is the stored (hidden, E) transposed.
      for (const [moe, key, E] of [[TEXT, `${L1}.gate.weight`, ET], [VISION, `${L1}.gate.weight_1`, EV]] as const) {
        const router = `base_model.model.${moe}.gate`;
        const routerDelta = transpose(product(a.get(`${router}.lora_B.weight`)!, a.get(`${router}.lora_A.weight`)!), E, H);
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, s, routerDelta));
      }
      const changed = [...linears.map(([, key]) => key), ...textKeys, ...visionKeys, `${L1}.gate.weight`, `${L1}.gate.weight_1`];
      for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
    });
  }

  it('an adapter trained on the remote code (per-expert Linears, vision_model, spatial_linear.0) lands by name', async () => {
    const modules: [string, number, number][] = [
      ['model.layers.1.self_attn.q_proj', H, H], [`${L1}.experts.1.up_proj`, IT, H], [`${L1}.experts.${ET + 2}.gate_proj`, IV, H],
      ['vision_model.blocks.0.attn.proj', 8, 8], ['model.resampler_model.spatial_linear.0', 32, 32],
    ];
    const adapter = modules.flatMap(([path, out, inF]) => lora(path, out, inF, r));
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, target_modules: ['q_proj', 'up_proj', 'gate_proj', 'proj', 'spatial_linear.0'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([path]) => `${path}.weight`).sort());
    const merged = await merge(prepared, 'cpu');
    expectPeftLorasByName(merged.tensors, decoded(base), decoded(adapter), modules.map(([path]) => path), 2);
  });

  it('refused in one line, naming the tensor: a vision expert without its up_proj, and vision experts of another count than the factors\'', async () => {
    const adapter = [
      randomTensor(`base_model.model.${VISION}.experts.lora_A.weight`, [r * EV, H], 'F32', rand),
      randomTensor(`base_model.model.${VISION}.experts.lora_B.weight`, [2 * IV, r * EV], 'F32', rand),
    ];
    const peftConfig = { r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['vision_moe.experts.gate_up_proj'] };
    const noUp = base.filter((x) => x.name !== `${L1}.experts.6.up_proj.weight`);
    const first = await prepare(hfModelFolder(noUp, config), peftFolder(peftConfig, adapter));
    await first.close();
    expect(first.plan.problems.map((p) => p.message)).toEqual([
      `adapter1: module "${VISION}.experts.gate_up_proj": the base stores ERNIE-4.5-VL's experts one tensor per expert, but expert 6 has no up_proj (model.layers.1.mlp.experts.6.up_proj.weight)`,
    ]);
    // The last vision expert left out: transformers splits the 7 experts 4 / 3, and 3 vision experts do not take factors of 4.
    const seven = base.filter((x) => !x.name.startsWith(`${L1}.experts.7.`));
    const second = await prepare(hfModelFolder(seven, config), peftFolder(peftConfig, adapter));
    await second.close();
    expect(second.plan.problems.map((p) => p.message)).toEqual([
      `adapter1: module "${VISION}.experts.gate_up_proj": on model.layers.1.mlp.experts.4.gate_proj.weight: lora_A (8, 16) holds the factors of 4 experts at rank 2, and the parameter (3, 12, 16) holds 3, `
        + 'for which PEFT\'s ParamWrapper saves lora_A (6, ·) and lora_B (·, 6): the adapter was trained on a model with another number of experts; merge it into that one',
    ]);
  });
});

// --- ERNIE-4.5 MoE (text) ------------------------------------------------------------------------

describe('ERNIE-4.5-21B-A3B-PT (Ernie4_5_MoeForCausalLM): adapters of transformers 4 (per expert) and 5 (fused experts)', () => {
  // baidu/ERNIE-4.5-21B-A3B-PT: 64 experts of 1536, 2 shared experts, router mlp.gate (E, hidden) in f32,
  // moe_statics.e_score_correction_bias (1, E). Scaled: 4 experts of 6, hidden 8.
  const E = 4;
  const I = 6;
  const H = 8;
  const L1 = 'model.layers.1.mlp';
  const base: FixtureTensor[] = [
    t('model.embed_tokens.weight', [32, H]),
    t('model.layers.1.self_attn.q_proj.weight', [H, H]),
    t(`${L1}.gate.weight`, [E, H], 'F32'),
    t(`${L1}.moe_statics.e_score_correction_bias`, [1, E], 'F32'),
    t(`${L1}.shared_experts.up_proj.weight`, [2 * I, H]),
    t('model.norm.weight', [H]),
  ];
  for (let e = 0; e < E; e++) base.push(t(`${L1}.experts.${e}.gate_proj.weight`, [I, H]), t(`${L1}.experts.${e}.up_proj.weight`, [I, H]), t(`${L1}.experts.${e}.down_proj.weight`, [H, I]));
  const config = {
    architectures: ['Ernie4_5_MoeForCausalLM'], model_type: 'ernie4_5_moe', torch_dtype: 'bfloat16', hidden_size: H, intermediate_size: 12, vocab_size: 32,
    moe_num_experts: E, moe_intermediate_size: I, moe_k: 2, moe_num_shared_experts: 2, moe_layer_start_index: 1, moe_layer_interval: 1, tie_word_embeddings: true,
  };
  const r = 2;

  it('transformers 4 per-expert Linears and the router (an nn.Linear there) land by name, exactly', async () => {
    const modules: [string, number, number][] = [[`${L1}.experts.2.up_proj`, I, H], [`${L1}.experts.3.down_proj`, H, I], [`${L1}.gate`, E, H], [`${L1}.shared_experts.up_proj`, 2 * I, H]];
    const adapter = modules.flatMap(([path, out, inF]) => lora(path, out, inF, r));
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, target_modules: ['up_proj', 'down_proj', 'gate'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared, 'cpu');
    expectPeftLorasByName(merged.tensors, decoded(base), decoded(adapter), modules.map(([path]) => path), 2);
  });

  it('transformers 5 fused experts (target_parameters) land expert by expert; its router parameter mlp.gate.weight by name, exactly', async () => {
    const experts = `base_model.model.${L1}.experts`;
    const adapter = [
      randomTensor(`${experts}.lora_A.weight`, [r * E, H], 'F32', rand, 0.5),
      randomTensor(`${experts}.lora_B.weight`, [2 * I, r * E], 'F32', rand, 0.5),
      ...lora(`${L1}.gate`, E, H, r),
    ];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r, lora_alpha: 4, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.gate_up_proj', 'mlp.gate.weight'] }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    const merged = await merge(prepared, 'cpu');
    const b = decoded(base);
    const a = decoded(adapter);
    for (let e = 0; e < E; e++) {
      const delta = expertDelta(a.get(`${experts}.lora_A.weight`)!, a.get(`${experts}.lora_B.weight`)!, e, E, r);
      for (const [part, from] of [['gate_proj', 0], ['up_proj', I]] as const) {
        const key = `${L1}.experts.${e}.${part}.weight`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 2, delta.slice(from * H, (from + I) * H)));
      }
    }
    const gate = `base_model.model.${L1}.gate`;
    expectValues(`${L1}.gate.weight`, merged.tensors.get(`${L1}.gate.weight`)!, plus(b.get(`${L1}.gate.weight`)!, 2, product(a.get(`${gate}.lora_B.weight`)!, a.get(`${gate}.lora_A.weight`)!)));
  });
});
