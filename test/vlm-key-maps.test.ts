/**
 * Vision-language checkpoints whose keys transformers renames when it loads them (each model
 * class's `_checkpoint_conversion_mapping`): an adapter named in one form merged into a base saved
 * in the other, for families beyond Qwen2-VL and LLaVA (llm-checkpoints.test.ts), on the CPU and on
 * WebGPU, against float64 truth; every architecture with a key map checked in both directions;
 * and InternVL's original (remote-code) checkpoints, whose vision tower and InternLM2 language
 * model transformers' conversion splits, refused with what differs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { checkpointKeyMapArchitectures } from '../src/formats/layouts/checkpoint-key-maps.js';
import { seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, mergeIntoFolder, randomTensor, type MergedFolder, prepareOne as prepare } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const rand = seededRandom(5207);
const backends: Partial<Record<'cpu' | 'webgpu', MergeBackend>> = {};
beforeAll(async () => {
  backends.cpu = await createNodeBackend('cpu');
  backends.webgpu = await createNodeBackend('webgpu');
});
afterAll(() => Object.values(backends).forEach((b) => b.dispose()));

const KINDS = ['cpu', 'webgpu'] as const;

const merge = (prepared: PreparedMerge, kind: 'cpu' | 'webgpu'): Promise<MergedFolder> => mergeIntoFolder(prepared, backends[kind]!);

/** W + s·ΔW, as doubles. */
function plus(w: DecodedTensor, s: number, delta: Float64Array): Float64Array {
  const out = w.values.slice();
  for (let i = 0; i < out.length; i++) out[i] += s * delta[i];
  return out;
}

/** A LoRA module: its path in the checkpoint's (old) naming, in the module tree's (new) naming, out, in, r. */
type Module = [oldPath: string, newPath: string, out: number, inF: number, r: number];

interface Family {
  title: string;
  config: object;
  /** The checkpoint as transformers saves it (old names). */
  base: FixtureTensor[];
  /** transformers' conversion for this class, written out for the keys above. */
  toNew: (key: string) => string;
  modules: Module[];
}

const t = (name: string, shape: number[]) => randomTensor(name, shape, 'BF16', rand);

/** `from` → `to` at the start of a key, else the key as it is. */
const prefix = (key: string, pairs: [string, string][]) => {
  for (const [from, to] of pairs) if (key.startsWith(from)) return to + key.slice(from.length);
  return key;
};

const LLAVA_PAIRS: [string, string][] = [
  ['language_model.model.', 'model.language_model.'],
  ['language_model.lm_head.', 'lm_head.'],
  ['vision_tower.', 'model.vision_tower.'],
  ['multi_modal_projector.', 'model.multi_modal_projector.'],
];

const FAMILIES: Family[] = [
  {
    // OpenGVLab/InternVL3-1B-hf: Qwen2 language model, InternViT tower split into q/k/v, projector with a layer norm.
    title: 'InternVL (-hf)',
    config: {
      architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', torch_dtype: 'bfloat16',
      text_config: { model_type: 'qwen2', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'internvl_vision', hidden_size: 4 }, downsample_ratio: 0.5,
    },
    base: [
      t('language_model.model.embed_tokens.weight', [32, 8]),
      t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('language_model.model.layers.0.self_attn.q_proj.bias', [8]),
      t('language_model.model.layers.0.mlp.down_proj.weight', [8, 12]),
      t('language_model.model.norm.weight', [8]),
      t('language_model.lm_head.weight', [32, 8]),
      t('vision_tower.encoder.layer.0.attention.q_proj.weight', [4, 4]),
      t('vision_tower.encoder.layer.0.mlp.fc1.weight', [16, 4]),
      t('multi_modal_projector.layer_norm.weight', [16]),
      t('multi_modal_projector.linear_1.weight', [8, 16]),
    ],
    toNew: (key) => prefix(key, LLAVA_PAIRS),
    modules: [
      ['language_model.model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj', 8, 8, 2],
      ['language_model.model.layers.0.mlp.down_proj', 'model.language_model.layers.0.mlp.down_proj', 8, 12, 3],
      ['vision_tower.encoder.layer.0.attention.q_proj', 'model.vision_tower.encoder.layer.0.attention.q_proj', 4, 4, 1],
      ['multi_modal_projector.linear_1', 'model.multi_modal_projector.linear_1', 8, 16, 2],
      ['language_model.lm_head', 'lm_head', 32, 8, 2],
    ],
  },
  {
    // rhymes-ai/Aria: MoE language model (shared experts), Idefics3 vision tower, cross-attention projector.
    title: 'Aria',
    config: {
      architectures: ['AriaForConditionalGeneration'], model_type: 'aria', torch_dtype: 'bfloat16',
      text_config: { model_type: 'aria_text', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'idefics3_vision', hidden_size: 4 },
    },
    base: [
      t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('language_model.model.layers.0.mlp.shared_experts.down_proj.weight', [8, 12]),
      t('language_model.lm_head.weight', [32, 8]),
      t('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [4, 4]),
      t('multi_modal_projector.feed_forward.linear_in.weight', [12, 4]),
    ],
    toNew: (key) => prefix(key, LLAVA_PAIRS),
    modules: [
      ['language_model.model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj', 8, 8, 2],
      ['language_model.model.layers.0.mlp.shared_experts.down_proj', 'model.language_model.layers.0.mlp.shared_experts.down_proj', 8, 12, 1],
      ['vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 'model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 4, 4, 2],
      ['multi_modal_projector.feed_forward.linear_in', 'model.multi_modal_projector.feed_forward.linear_in', 12, 4, 2],
    ],
  },
  {
    // LanguageBind/Video-LLaVA-7B-hf: two CLIP towers with the same layer names, one per modality.
    title: 'Video-LLaVA',
    config: {
      architectures: ['VideoLlavaForConditionalGeneration'], model_type: 'video_llava', torch_dtype: 'bfloat16',
      text_config: { model_type: 'llama', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'clip_vision_model', hidden_size: 4 },
    },
    base: [
      t('language_model.model.layers.0.self_attn.v_proj.weight', [8, 8]),
      t('language_model.lm_head.weight', [32, 8]),
      t('image_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight', [4, 4]),
      t('video_tower.vision_model.encoder.layers.0.self_attn.v_proj.weight', [4, 4]),
      t('multi_modal_projector.linear_1.weight', [8, 4]),
    ],
    toNew: (key) => prefix(key, [
      ['language_model.model.', 'model.language_model.'], ['language_model.lm_head.', 'lm_head.'],
      ['image_tower.', 'model.image_tower.'], ['video_tower.', 'model.video_tower.'], ['multi_modal_projector.', 'model.multi_modal_projector.'],
    ]),
    modules: [
      ['language_model.model.layers.0.self_attn.v_proj', 'model.language_model.layers.0.self_attn.v_proj', 8, 8, 2],
      ['image_tower.vision_model.encoder.layers.0.self_attn.v_proj', 'model.image_tower.vision_model.encoder.layers.0.self_attn.v_proj', 4, 4, 1],
      ['video_tower.vision_model.encoder.layers.0.self_attn.v_proj', 'model.video_tower.vision_model.encoder.layers.0.self_attn.v_proj', 4, 4, 3],
      ['language_model.lm_head', 'lm_head', 32, 8, 2],
    ],
  },
  {
    // BAAI/Emu3-Chat-hf: the language model is `text_model`, images are VQ-VAE tokens.
    title: 'Emu3',
    config: {
      architectures: ['Emu3ForConditionalGeneration'], model_type: 'emu3', torch_dtype: 'bfloat16',
      text_config: { model_type: 'emu3_text_model', hidden_size: 8, vocab_size: 32 }, vq_config: { model_type: 'emu3_vqgan' },
    },
    base: [
      t('text_model.model.embed_tokens.weight', [32, 8]),
      t('text_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('text_model.model.layers.0.mlp.gate_proj.weight', [12, 8]),
      t('text_model.lm_head.weight', [32, 8]),
      t('vqmodel.quantize.embedding.weight', [16, 4]),
    ],
    toNew: (key) => prefix(key, [['text_model.model.', 'model.text_model.'], ['text_model.lm_head.', 'lm_head.'], ['vqmodel.', 'model.vqmodel.']]),
    modules: [
      ['text_model.model.layers.0.self_attn.q_proj', 'model.text_model.layers.0.self_attn.q_proj', 8, 8, 2],
      ['text_model.model.layers.0.mlp.gate_proj', 'model.text_model.layers.0.mlp.gate_proj', 12, 8, 4],
      ['text_model.lm_head', 'lm_head', 32, 8, 1],
    ],
  },
  {
    // vidore/colqwen2-v1.0-hf (convert_colqwen2_weights_to_hf.py: Qwen2-VL under `vlm.` in 4.52's names), and
    // transformers 5's ColQwen2ForRetrieval, whose `vlm` is a Qwen2VLModel (conversion_mapping.py "colqwen2").
    title: 'ColQwen2',
    config: {
      architectures: ['ColQwen2ForRetrieval'], model_type: 'colqwen2', torch_dtype: 'bfloat16', embedding_dim: 8,
      vlm_config: { model_type: 'qwen2_vl', text_config: { model_type: 'qwen2_vl_text', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'qwen2_vl', embed_dim: 4 } },
    },
    base: [
      t('vlm.model.language_model.embed_tokens.weight', [32, 8]),
      t('vlm.model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('vlm.model.language_model.layers.0.self_attn.q_proj.bias', [8]),
      t('vlm.model.language_model.layers.0.mlp.down_proj.weight', [8, 12]),
      t('vlm.model.language_model.norm.weight', [8]),
      t('vlm.model.visual.blocks.0.attn.qkv.weight', [12, 4]),
      t('vlm.model.visual.merger.mlp.0.weight', [16, 16]),
      t('embedding_proj_layer.weight', [8, 8]),
    ],
    toNew: (key) => prefix(key, [['vlm.model.', 'vlm.']]),
    modules: [
      ['vlm.model.language_model.layers.0.self_attn.q_proj', 'vlm.language_model.layers.0.self_attn.q_proj', 8, 8, 2],
      ['vlm.model.language_model.layers.0.mlp.down_proj', 'vlm.language_model.layers.0.mlp.down_proj', 8, 12, 3],
      ['vlm.model.visual.blocks.0.attn.qkv', 'vlm.visual.blocks.0.attn.qkv', 12, 4, 1],
      ['vlm.model.visual.merger.mlp.0', 'vlm.visual.merger.mlp.0', 16, 16, 2],
      ['embedding_proj_layer', 'embedding_proj_layer', 8, 8, 2],
    ],
  },
  {
    // A Gemma 3n text model saved by transformers (it writes the multimodal tree's names back),
    // and adapters trained on Gemma3nForCausalLM, whose tree has none.
    title: 'Gemma 3n text',
    config: { architectures: ['Gemma3nForCausalLM'], model_type: 'gemma3n_text', torch_dtype: 'bfloat16', hidden_size: 8, vocab_size: 32 },
    base: [
      t('model.language_model.embed_tokens.weight', [32, 8]),
      t('model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('model.language_model.layers.0.mlp.up_proj.weight', [12, 8]),
      t('model.language_model.layers.0.altup.modality_router.weight', [4, 8]),
    ],
    toNew: (key) => prefix(key, [['model.language_model.', 'model.']]),
    modules: [
      ['model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj', 8, 8, 2],
      ['model.language_model.layers.0.mlp.up_proj', 'model.layers.0.mlp.up_proj', 12, 8, 3],
    ],
  },
];

function adapterFor(modules: Module[], naming: 'old' | 'new'): FixtureTensor[] {
  return modules.flatMap(([oldPath, newPath, out, inF, r]) => {
    const path = naming === 'old' ? oldPath : newPath;
    return [
      randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
      randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
    ];
  });
}

describe('vision-language checkpoints in either naming, more families', () => {
  for (const family of FAMILIES) {
    const baseOld = family.base;
    const baseNew = baseOld.map((x) => ({ ...x, name: family.toNew(x.name) }));
    for (const [title, base, naming] of [
      ['an old-naming checkpoint with a new-naming adapter', baseOld, 'new'],
      ['a new-naming checkpoint with an old-naming adapter', baseNew, 'old'],
    ] as const) {
      for (const kind of KINDS) {
        it(`${family.title}: merges ${title} exactly on ${kind}`, async () => {
          const adapter = adapterFor(family.modules, naming);
          // lora_alpha 4 over each module's r (rank_pattern by the module's full path).
          const rankPattern = Object.fromEntries(family.modules.map(([o, n, , , r]) => [naming === 'old' ? o : n, r]));
          const prepared = await prepare(hfModelFolder(base, family.config, { shards: 2 }), peftFolder({ r: 2, lora_alpha: 4, rank_pattern: rankPattern }, adapter));
          expect(prepared.plan.problems).toEqual([]);
          const baseKey = (m: Module) => (base === baseOld ? baseOld : baseNew).find((x) => x.name === `${base === baseOld ? m[0] : m[1]}.weight`)!.name;
          expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(family.modules.map((m) => [baseKey(m), 'vlm-checkpoint']).sort());
          const merged = await merge(prepared, kind);
          const b = decoded(base);
          const a = decoded(adapter);
          const changed = family.modules.map(baseKey);
          for (const m of family.modules) {
            const name = `base_model.model.${naming === 'old' ? m[0] : m[1]}`;
            const key = baseKey(m);
            expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 4 / m[4], product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
          }
          for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
          expect(merged.json('config.json').architectures).toEqual((family.config as { architectures: string[] }).architectures);
        });
      }
    }
  }
});

/**
 * One language-model module per architecture with a key map, in the checkpoint's name and the
 * module tree's (transformers' mapping applied by hand): the map lands each on the other.
 */
const EVERY_MAP: [architecture: string, modelType: string, oldPath: string, newPath: string][] = [
  ...([
    ['LlavaForConditionalGeneration', 'llava'], ['VipLlavaForConditionalGeneration', 'vipllava'],
    ['LlavaNextForConditionalGeneration', 'llava_next'], ['LlavaNextVideoForConditionalGeneration', 'llava_next_video'],
    ['LlavaOnevisionForConditionalGeneration', 'llava_onevision'], ['Mistral3ForConditionalGeneration', 'mistral3'],
    ['Gemma3ForConditionalGeneration', 'gemma3'], ['PaliGemmaForConditionalGeneration', 'paligemma'],
    ['MllamaForConditionalGeneration', 'mllama'], ['InternVLForConditionalGeneration', 'internvl'],
    ['AriaForConditionalGeneration', 'aria'], ['AyaVisionForConditionalGeneration', 'aya_vision'],
    ['GotOcr2ForConditionalGeneration', 'got_ocr2'], ['VideoLlavaForConditionalGeneration', 'video_llava'],
    ['FuyuForCausalLM', 'fuyu'], ['InternVLChatModel', 'internvl_chat'],
  ] as const).map(([arch, type]) => [arch, type, 'language_model.model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'] as [string, string, string, string]),
  ['Qwen2VLForConditionalGeneration', 'qwen2_vl', 'model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'],
  ['Qwen2_5_VLForConditionalGeneration', 'qwen2_5_vl', 'model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'],
  ['Emu3ForConditionalGeneration', 'emu3', 'text_model.model.layers.0.self_attn.q_proj', 'model.text_model.layers.0.self_attn.q_proj'],
  ['ColPaliForRetrieval', 'colpali', 'vlm.language_model.model.layers.0.self_attn.q_proj', 'vlm.model.language_model.layers.0.self_attn.q_proj'],
  ['ShieldGemma2ForImageClassification', 'shieldgemma2', 'model.language_model.model.layers.0.self_attn.q_proj', 'model.model.language_model.layers.0.self_attn.q_proj'],
  ['Gemma3nForCausalLM', 'gemma3n_text', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  // The text-only class's names (Gemma3nForCausalLM, Llama4ForCausalLM) on the multimodal checkpoint.
  ['Gemma3nForConditionalGeneration', 'gemma3n', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Gemma4ForConditionalGeneration', 'gemma4', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Gemma4UnifiedForConditionalGeneration', 'gemma4_unified', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Gemma4Model', 'gemma4', 'language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Gemma4UnifiedModel', 'gemma4_unified', 'language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'],
  ['Llama4ForConditionalGeneration', 'llama4', 'language_model.model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Qwen3_5ForConditionalGeneration', 'qwen3_5', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Qwen3_5MoeForConditionalGeneration', 'qwen3_5_moe', 'model.language_model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['PaddleOCRVLForConditionalGeneration', 'paddleocr_vl', 'model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'],
  ['Ernie4_5_VLMoeForConditionalGeneration', 'ernie4_5_moe_vl', 'model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj'],
  ['ColQwen2ForRetrieval', 'colqwen2', 'vlm.model.language_model.layers.0.self_attn.q_proj', 'vlm.language_model.layers.0.self_attn.q_proj'],
  ['NemotronHForCausalLM', 'nemotron_h', 'backbone.layers.0.mixer.q_proj', 'model.layers.0.mixer.q_proj'],
  ['Sam3Model', 'sam3', 'detector_model.detr_encoder.layers.0.self_attn.q_proj', 'detr_encoder.layers.0.self_attn.q_proj'],
  // T5Gemma 2's encoder text model before and after transformers' `text_model` (conversion_mapping.py "t5gemma2_encoder").
  ['T5Gemma2ForConditionalGeneration', 't5gemma2', 'model.encoder.layers.0.self_attn.q_proj', 'model.encoder.text_model.layers.0.self_attn.q_proj'],
  ['T5Gemma2ForSequenceClassification', 't5gemma2', 'model.encoder.layers.0.mlp.up_proj', 'model.encoder.text_model.layers.0.mlp.up_proj'],
  ['T5Gemma2ForTokenClassification', 't5gemma2', 'model.encoder.layers.0.self_attn.o_proj', 'model.encoder.text_model.layers.0.self_attn.o_proj'],
  ['T5Gemma2Model', 't5gemma2', 'encoder.layers.0.self_attn.q_proj', 'encoder.text_model.layers.0.self_attn.q_proj'],
  ['T5Gemma2Encoder', 't5gemma2_encoder', 'layers.0.self_attn.q_proj', 'text_model.layers.0.self_attn.q_proj'],
  // π0 as LeRobot saves it, and transformers' PI0ForConditionalGeneration (conversion_mapping.py "pi0").
  ['PI0ForConditionalGeneration', 'pi0', 'model.paligemma_with_expert.gemma_expert.model.layers.0.self_attn.q_proj', 'model.dit.layers.0.self_attn.q_proj'],
  // MoE checkpoints whose shared expert transformers renames (conversion_mapping.py "hy_v3", "laguna").
  ['HYV3ForCausalLM', 'hy_v3', 'model.layers.1.mlp.shared_mlp.gate_proj', 'model.layers.1.mlp.shared_experts.gate_proj'],
  ['LagunaForCausalLM', 'laguna', 'model.layers.1.mlp.shared_expert.down_proj', 'model.layers.1.mlp.shared_experts.down_proj'],
  ['DeepseekV4ForCausalLM', 'deepseek_v4', 'layers.0.attn.wq_a', 'model.layers.0.self_attn.q_a_proj'],
  // The Thinker class's names (base_model_prefix `thinker`) on an Omni checkpoint.
  ['Qwen2_5OmniForConditionalGeneration', 'qwen2_5_omni', 'thinker.model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Qwen2_5OmniModel', 'qwen2_5_omni', 'thinker.model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.q_proj'],
  ['Qwen3OmniMoeForConditionalGeneration', 'qwen3_omni_moe', 'thinker.audio_tower.layers.0.self_attn.q_proj', 'audio_tower.layers.0.self_attn.q_proj'],
];

describe('every architecture with a checkpoint key map', () => {
  it('is listed here, and nothing listed here lacks one', () => {
    expect(EVERY_MAP.map(([arch]) => arch).sort()).toEqual(checkpointKeyMapArchitectures().sort());
  });

  for (const [arch, modelType, oldPath, newPath] of EVERY_MAP) {
    for (const [baseName, adapterName] of [[oldPath, newPath], [newPath, oldPath]]) {
      it(`${arch}: ${adapterName} lands on ${baseName} through the key map`, async () => {
        const base = [t(`${baseName}.weight`, [8, 8]), t('unrelated.norm.weight', [8])];
        const adapter = [
          randomTensor(`base_model.model.${adapterName}.lora_A.weight`, [2, 8], 'F32', rand),
          randomTensor(`base_model.model.${adapterName}.lora_B.weight`, [8, 2], 'F32', rand),
        ];
        const prepared = await prepare(hfModelFolder(base, { architectures: [arch], model_type: modelType, torch_dtype: 'bfloat16' }), peftFolder({ r: 2 }, adapter));
        await prepared.close();
        expect(prepared.plan.problems).toEqual([]);
        expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout])).toEqual([[`${baseName}.weight`, 'vlm-checkpoint']]);
      });
    }
  }
});

/**
 * An adapter trained on Gemma3ForCausalLM (the language model of google/gemma-3-4b-it loaded
 * text-only, as trainers do: `base_model.model.model.layers.N…`) merged into the multimodal
 * checkpoint (Gemma3ForConditionalGeneration), saved in either naming. Its SigLIP vision tower has
 * the same `layers.0.self_attn.q_proj` suffix and must stay untouched.
 */
describe('a Gemma3ForCausalLM adapter on a Gemma3ForConditionalGeneration checkpoint', () => {
  const config = {
    architectures: ['Gemma3ForConditionalGeneration'], model_type: 'gemma3', torch_dtype: 'bfloat16',
    text_config: { model_type: 'gemma3_text', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'siglip_vision_model', hidden_size: 6 },
  };
  const oldBase = [
    t('language_model.model.embed_tokens.weight', [32, 8]),
    t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
    t('language_model.model.layers.0.self_attn.k_proj.weight', [4, 8]),
    t('language_model.model.layers.0.mlp.down_proj.weight', [8, 11]),
    t('language_model.model.norm.weight', [8]),
    t('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [6, 6]),
    t('multi_modal_projector.mm_input_projection_weight', [6, 8]),
  ];
  const newBase = oldBase.map((x) => ({ ...x, name: prefix(x.name, LLAVA_PAIRS) }));
  // Module path in Gemma3ForCausalLM, out, in, r.
  const modules: [string, number, number, number][] = [
    ['model.layers.0.self_attn.q_proj', 8, 8, 2], ['model.layers.0.self_attn.k_proj', 4, 8, 1], ['model.layers.0.mlp.down_proj', 8, 11, 3],
  ];
  const adapter = modules.flatMap(([path, out, inF, r]) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ]);
  const rankPattern = Object.fromEntries(modules.map(([path, , , r]) => [path, r]));

  for (const [naming, base, languageModel] of [['old', oldBase, 'language_model.model.'], ['new', newBase, 'model.language_model.']] as const) {
    for (const kind of KINDS) {
      it(`lands each module on the language model (${naming} naming, ${languageModel}…) exactly on ${kind}`, async () => {
        const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 2, lora_alpha: 4, rank_pattern: rankPattern, target_modules: ['q_proj', 'k_proj', 'down_proj'] }, adapter));
        expect(prepared.plan.problems).toEqual([]);
        const keyOf = (path: string) => `${languageModel}${path.slice('model.'.length)}.weight`;
        expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([path]) => keyOf(path)).sort());
        const merged = await merge(prepared, kind);
        const b = decoded(base);
        const a = decoded(adapter);
        for (const [path, , , r] of modules) {
          const name = `base_model.model.${path}`;
          expectValues(keyOf(path), merged.tensors.get(keyOf(path))!, plus(b.get(keyOf(path))!, 4 / r, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
        }
        const changed = modules.map(([path]) => keyOf(path));
        for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      });
    }
  }

  it('a Gemma 3 text-only checkpoint (Gemma3ForCausalLM, gemma-3-1b) is not rewritten: model.layers… lands as it is', async () => {
    const base = [t('model.layers.0.self_attn.q_proj.weight', [8, 8]), t('model.norm.weight', [8])];
    const one = adapter.slice(0, 2);
    const prepared = await prepare(hfModelFolder(base, { architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', torch_dtype: 'bfloat16' }), peftFolder({ r: 2 }, one));
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey)).toEqual(['model.layers.0.self_attn.q_proj.weight']);
  });
});

/**
 * Adapters trained on the text-only class transformers loads a multimodal checkpoint's language
 * model into, merged into that checkpoint as it is downloaded (sharded, with its index):
 * Llama4ForCausalLM, which AutoModelForCausalLM makes of a Llama 4 repository (its
 * `base_model_prefix` `language_model` is stripped from the checkpoint's keys), and
 * Gemma3nForCausalLM (its mapping `model.language_model` → `model`). Each one's `model.layers.N…`
 * lands on the language model; the Llama 4 vision encoder's `vision_model.model.layers.N…`, whose
 * tail is the same, stays untouched.
 */
describe('a text-only class\'s adapter (Llama4ForCausalLM, Gemma3nForCausalLM, Qwen3_5ForCausalLM) on its multimodal checkpoint', () => {
  const cases: { title: string; config: object; base: FixtureTensor[]; languageModel: string; modules: [path: string, out: number, inF: number, r: number][] }[] = [
    {
      // meta-llama/Llama-4-Scout-17B-16E-Instruct's names; experts fused (E, hidden, 2·inter) as the checkpoint stores them.
      title: 'Llama 4 (Llama4ForConditionalGeneration)',
      config: {
        architectures: ['Llama4ForConditionalGeneration'], model_type: 'llama4', torch_dtype: 'bfloat16', tie_word_embeddings: false,
        text_config: { model_type: 'llama4_text', hidden_size: 8, intermediate_size: 6, num_local_experts: 2, vocab_size: 32, tie_word_embeddings: false },
        vision_config: { model_type: 'llama4_vision_model', hidden_size: 8 },
      },
      base: [
        t('language_model.model.embed_tokens.weight', [32, 8]),
        t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
        t('language_model.model.layers.0.self_attn.k_proj.weight', [4, 8]),
        t('language_model.model.layers.0.self_attn.o_proj.weight', [8, 8]),
        t('language_model.model.layers.0.feed_forward.router.weight', [2, 8]),
        t('language_model.model.layers.0.feed_forward.experts.gate_up_proj', [2, 8, 12]),
        t('language_model.model.layers.0.feed_forward.shared_expert.down_proj.weight', [8, 6]),
        t('language_model.model.norm.weight', [8]),
        t('language_model.lm_head.weight', [32, 8]),
        t('vision_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
        t('vision_model.model.layers.0.self_attn.k_proj.weight', [8, 8]),
        t('vision_model.model.layers.0.self_attn.o_proj.weight', [8, 8]),
        t('multi_modal_projector.linear_1.weight', [8, 8]),
      ],
      languageModel: 'language_model.model.',
      modules: [
        ['model.layers.0.self_attn.q_proj', 8, 8, 2], ['model.layers.0.self_attn.k_proj', 4, 8, 1], ['model.layers.0.self_attn.o_proj', 8, 8, 2],
        ['model.layers.0.feed_forward.shared_expert.down_proj', 8, 6, 3], ['lm_head', 32, 8, 2],
      ],
    },
    {
      // google/gemma-3n-E4B-it's names (saved in the refactored tree); the head is tied.
      title: 'Gemma 3n (Gemma3nForConditionalGeneration)',
      config: {
        architectures: ['Gemma3nForConditionalGeneration'], model_type: 'gemma3n', torch_dtype: 'bfloat16',
        text_config: { model_type: 'gemma3n_text', hidden_size: 8, vocab_size: 32, tie_word_embeddings: true },
        vision_config: { model_type: 'gemma3n_vision' }, audio_config: { model_type: 'gemma3n_audio' },
      },
      base: [
        t('model.language_model.embed_tokens.weight', [32, 8]),
        t('model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]),
        t('model.language_model.layers.0.mlp.down_proj.weight', [8, 12]),
        t('model.language_model.layers.0.laurel.linear_left.weight', [2, 8]),
        t('model.language_model.norm.weight', [8]),
        t('model.audio_tower.conformer.0.attention.attn.q_proj.weight', [8, 8]),
        t('model.embed_vision.embedding_projection.weight', [8, 8]),
      ],
      languageModel: 'model.language_model.',
      modules: [['model.layers.0.self_attn.q_proj', 8, 8, 2], ['model.layers.0.mlp.down_proj', 8, 12, 1], ['model.layers.0.laurel.linear_left', 2, 8, 2]],
    },
    {
      // Qwen/Qwen3.5-9B's names (saved in the refactored tree): layer 0 a Gated DeltaNet (linear_attn), layer 3 full attention;
      // its vision blocks share no suffix, but its merger's linear_fc1 ends as a layer's would not. Trained on Qwen3_5ForCausalLM.
      title: 'Qwen3.5 (Qwen3_5ForConditionalGeneration)',
      config: {
        architectures: ['Qwen3_5ForConditionalGeneration'], model_type: 'qwen3_5', torch_dtype: 'bfloat16', tie_word_embeddings: false,
        text_config: { model_type: 'qwen3_5_text', hidden_size: 8, vocab_size: 32, layer_types: ['linear_attention', 'linear_attention', 'linear_attention', 'full_attention'] },
        vision_config: { model_type: 'qwen3_5', hidden_size: 8 },
      },
      base: [
        t('model.language_model.embed_tokens.weight', [32, 8]),
        t('model.language_model.layers.0.linear_attn.in_proj_qkv.weight', [24, 8]),
        t('model.language_model.layers.0.linear_attn.in_proj_z.weight', [8, 8]),
        t('model.language_model.layers.0.linear_attn.out_proj.weight', [8, 8]),
        t('model.language_model.layers.0.mlp.gate_proj.weight', [12, 8]),
        t('model.language_model.layers.3.self_attn.q_proj.weight', [16, 8]),
        t('model.language_model.norm.weight', [8]),
        t('model.visual.blocks.0.attn.qkv.weight', [24, 8]),
        t('model.visual.blocks.0.mlp.linear_fc1.weight', [16, 8]),
        t('model.visual.merger.linear_fc1.weight', [32, 32]),
        t('lm_head.weight', [32, 8]),
      ],
      languageModel: 'model.language_model.',
      modules: [
        ['model.layers.0.linear_attn.in_proj_qkv', 24, 8, 2], ['model.layers.0.linear_attn.in_proj_z', 8, 8, 1], ['model.layers.0.linear_attn.out_proj', 8, 8, 2],
        ['model.layers.0.mlp.gate_proj', 12, 8, 3], ['model.layers.3.self_attn.q_proj', 16, 8, 2],
      ],
    },
  ];

  for (const c of cases) {
    const adapter = c.modules.flatMap(([path, out, inF, r]) => [
      randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
      randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
    ]);
    const rankPattern = Object.fromEntries(c.modules.map(([path, , , r]) => [path, r]));
    const targets = [...new Set(c.modules.map(([path]) => path.split('.').pop()!))];
    // `model.layers.0.q_proj` → `<language model>layers.0.q_proj.weight`; `lm_head` → the checkpoint's head.
    const keyOf = (path: string) => (path === 'lm_head' ? 'language_model.lm_head.weight' : `${c.languageModel}${path.slice('model.'.length)}.weight`);
    for (const kind of KINDS) {
      it(`${c.title}: each module lands on the language model, exactly, on ${kind}`, async () => {
        const prepared = await prepare(hfModelFolder(c.base, c.config, { shards: 3 }), peftFolder({ r: 2, lora_alpha: 4, rank_pattern: rankPattern, target_modules: targets }, adapter));
        expect(prepared.plan.problems).toEqual([]);
        expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(c.modules.map(([path]) => keyOf(path)).sort());
        const merged = await merge(prepared, kind);
        const b = decoded(c.base);
        const a = decoded(adapter);
        for (const [path, , , r] of c.modules) {
          const name = `base_model.model.${path}`;
          expectValues(keyOf(path), merged.tensors.get(keyOf(path))!, plus(b.get(keyOf(path))!, 4 / r, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
        }
        const changed = c.modules.map(([path]) => keyOf(path));
        for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      });
    }
  }

  it("Llama 4: the class's own names (language_model.model.…, vision_model.model.…) still land on the tensor of their name", async () => {
    const base = cases[0].base;
    const paths = ['language_model.model.layers.0.self_attn.q_proj', 'vision_model.model.layers.0.self_attn.q_proj'];
    const lora = paths.flatMap((path) => [
      randomTensor(`base_model.model.${path}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`base_model.model.${path}.lora_B.weight`, [8, 2], 'F32', rand),
    ]);
    const prepared = await prepare(hfModelFolder(base, cases[0].config), peftFolder({ r: 2, target_modules: ['q_proj'] }, lora));
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(paths.map((p) => `${p}.weight`).sort());
  });
});

describe("InternVL's original checkpoints (remote code) next to transformers' conversion (-hf)", () => {
  const lora = (paths: [string, number, number][]) => paths.flatMap(([path, out, inF]) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [2, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, 2], 'F32', rand, 0.5),
  ]);

  /** Merges `modules` (adapter path → base key it must land on) at α = r = 2 and checks each against W + B·A. */
  async function expectMerged(base: FixtureTensor[], config: object, modules: [string, string, number, number][], kind: 'cpu' | 'webgpu') {
    const adapter = lora(modules.map(([path, , out, inF]) => [path, out, inF]));
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 2, lora_alpha: 2 }, adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([, key]) => key).sort());
    const merged = await merge(prepared, kind);
    const b = decoded(base);
    const a = decoded(adapter);
    for (const [path, key] of modules) {
      const name = `base_model.model.${path}`;
      expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 1, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
    }
    for (const [key, w] of b) if (!modules.some(([, k]) => k === key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  }

  async function problems(base: FixtureTensor[], config: object, paths: [string, number, number][]): Promise<string[][]> {
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 2 }, lora(paths)));
    await prepared.close();
    return prepared.plan.problems.map((p) => [p.code, p.message]);
  }

  const vision = () => [
    t('vision_model.embeddings.patch_embedding.weight', [4, 3, 2, 2]),
    t('vision_model.encoder.layers.0.attn.qkv.weight', [12, 4]),
    t('vision_model.encoder.layers.0.attn.proj.weight', [4, 4]),
    t('mlp1.0.weight', [16]),
    t('mlp1.1.weight', [8, 16]),
    t('mlp1.3.weight', [8, 8]),
  ];
  const VISION_CONFIG = { architectures: ['InternVisionModel'], model_type: 'intern_vit_6b', hidden_size: 4, qkv_bias: false };

  // OpenGVLab/InternVL3-8B: a Qwen2.5 language model, whose names the conversion keeps.
  const INTERNVL3 = {
    architectures: ['InternVLChatModel'], model_type: 'internvl_chat', torch_dtype: 'bfloat16', downsample_ratio: 0.5,
    auto_map: { AutoModel: 'modeling_internvl_chat.InternVLChatModel' },
    llm_config: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 8, vocab_size: 32 }, vision_config: VISION_CONFIG,
  };
  const internvl3 = [
    ...vision(),
    t('language_model.model.embed_tokens.weight', [32, 8]),
    t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
    t('language_model.model.layers.0.self_attn.k_proj.weight', [4, 8]),
    t('language_model.model.norm.weight', [8]),
    t('language_model.lm_head.weight', [32, 8]),
  ];

  for (const kind of KINDS) {
    it(`InternVL3 original: an -hf adapter's language model, head and projector land by name, exactly, on ${kind}`, async () => {
      await expectMerged(internvl3, INTERNVL3, [
        ['model.language_model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight', 8, 8],
        ['model.language_model.layers.0.self_attn.k_proj', 'language_model.model.layers.0.self_attn.k_proj.weight', 4, 8],
        ['model.multi_modal_projector.linear_1', 'mlp1.1.weight', 8, 16],
        ['lm_head', 'language_model.lm_head.weight', 32, 8],
      ], kind);
    });
  }

  /** ΔW's rows [from, from + count) as a (count × cols) matrix. */
  const rowsOf = (delta: Float64Array, cols: number, from: number, count: number) => delta.slice(from * cols, (from + count) * cols);

  for (const kind of KINDS) {
    it(`InternVL3 original: an -hf adapter's vision q, k, v land on the thirds of InternViT's attn.qkv, the rest by name, on ${kind}`, async () => {
      const paths: [string, number, number][] = [
        ['model.vision_tower.encoder.layer.0.attention.q_proj', 4, 4],
        ['model.vision_tower.encoder.layer.0.attention.k_proj', 4, 4],
        ['model.vision_tower.encoder.layer.0.attention.v_proj', 4, 4],
        ['model.vision_tower.encoder.layer.0.attention.projection_layer', 4, 4],
      ];
      const adapter = lora(paths);
      const prepared = await prepare(hfModelFolder(internvl3, INTERNVL3), peftFolder({ r: 2, lora_alpha: 2 }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((x) => x.layout)]).sort()).toEqual([
        ['vision_model.encoder.layers.0.attn.proj.weight', ['internvl-original']],
        ['vision_model.encoder.layers.0.attn.qkv.weight', ['internvl-original', 'internvl-original', 'internvl-original']],
      ]);
      const merged = await merge(prepared, kind);
      const b = decoded(internvl3);
      const a = decoded(adapter);
      const delta = (path: string) => product(a.get(`base_model.model.${path}.lora_B.weight`)!, a.get(`base_model.model.${path}.lora_A.weight`)!);
      // convert_internvl_weights_to_hf.py: q = qkv[:dim], k = qkv[dim:2dim], v = qkv[-dim:].
      const qkv = b.get('vision_model.encoder.layers.0.attn.qkv.weight')!;
      const truth = qkv.values.slice();
      ['q_proj', 'k_proj', 'v_proj'].forEach((m, third) => {
        const d = delta(`model.vision_tower.encoder.layer.0.attention.${m}`);
        for (let i = 0; i < d.length; i++) truth[third * 16 + i] += d[i];
      });
      expectValues('qkv', merged.tensors.get('vision_model.encoder.layers.0.attn.qkv.weight')!, truth);
      const proj = 'vision_model.encoder.layers.0.attn.proj.weight';
      expectValues(proj, merged.tensors.get(proj)!, plus(b.get(proj)!, 1, delta('model.vision_tower.encoder.layer.0.attention.projection_layer')));
    });
  }

  it("InternVL3 original: an -hf adapter on a vision tensor the conversion does more than rename is refused, saying what differs", async () => {
    expect(await problems(internvl3, INTERNVL3, [
      ['model.language_model.layers.0.self_attn.q_proj', 8, 8],
      ['model.vision_tower.embeddings.patch_embeddings.projection', 4, 12],
    ])).toEqual([[
      'UNKNOWN_MODULE',
      'adapter1: module "model.vision_tower.embeddings.patch_embeddings.projection": names a module of transformers\' InternVL vision tower; '
        + "this base is InternVL's original checkpoint (InternVLChatModel), whose InternViT tower is translated only for the attention's q, k, v "
        + "and projection and the MLP's fc1 and fc2: not supported; merge into the transformers-format (-hf) checkpoint, or use an adapter trained on this one",
    ]]);
  });

  // OpenGVLab/InternVL2_5-8B: an InternLM2 language model, q, k and v in one wqkv by key-value head group.
  const INTERNVL25 = {
    ...INTERNVL3,
    llm_config: { architectures: ['InternLM2ForCausalLM'], model_type: 'internlm2', hidden_size: 8, vocab_size: 32, num_attention_heads: 4, num_key_value_heads: 2 },
  };
  const internvl25 = [
    ...vision(),
    t('language_model.model.tok_embeddings.weight', [32, 8]),
    t('language_model.model.layers.0.attention.wqkv.weight', [16, 8]),
    t('language_model.model.layers.0.attention.wo.weight', [8, 8]),
    t('language_model.model.layers.0.feed_forward.w1.weight', [12, 8]),
    t('language_model.model.layers.0.feed_forward.w3.weight', [12, 8]),
    t('language_model.model.layers.0.feed_forward.w2.weight', [8, 12]),
    t('language_model.output.weight', [32, 8]),
  ];

  for (const kind of KINDS) {
    it(`InternVL2.5 original: an adapter trained on it (InternLM2, InternViT, mlp1) merges exactly on ${kind}`, async () => {
      await expectMerged(internvl25, INTERNVL25, [
        ['language_model.model.layers.0.attention.wqkv', 'language_model.model.layers.0.attention.wqkv.weight', 16, 8],
        ['language_model.model.layers.0.feed_forward.w1', 'language_model.model.layers.0.feed_forward.w1.weight', 12, 8],
        ['language_model.output', 'language_model.output.weight', 32, 8],
        ['vision_model.encoder.layers.0.attn.qkv', 'vision_model.encoder.layers.0.attn.qkv.weight', 12, 4],
        ['mlp1.1', 'mlp1.1.weight', 8, 16],
      ], kind);
    });
  }

  for (const kind of KINDS) {
    it(`InternVL2.5 original: an -hf adapter's o_proj, MLP and head land on InternLM2's wo, w2, w3 and output, exactly, on ${kind}`, async () => {
      await expectMerged(internvl25, INTERNVL25, [
        ['model.language_model.layers.0.self_attn.o_proj', 'language_model.model.layers.0.attention.wo.weight', 8, 8],
        ['model.language_model.layers.0.mlp.down_proj', 'language_model.model.layers.0.feed_forward.w2.weight', 8, 12],
        ['model.language_model.layers.0.mlp.up_proj', 'language_model.model.layers.0.feed_forward.w3.weight', 12, 8],
        ['lm_head', 'language_model.output.weight', 32, 8],
      ], kind);
    });
  }

  it("InternVL2.5 original: an -hf adapter's q_proj and k_proj are refused, one line a module", async () => {
    const why = "names the language model's attention as transformers' InternVL does (q_proj, k_proj, v_proj apart); this base is InternVL's "
      + 'original checkpoint with an InternLM2 language model, whose attention.wqkv interleaves q, k and v by key-value head group: '
      + 'not supported; merge into the transformers-format (-hf) checkpoint, or use an adapter trained on this one';
    expect(await problems(internvl25, INTERNVL25, [
      ['model.language_model.layers.0.self_attn.q_proj', 8, 8],
      ['model.language_model.layers.0.self_attn.k_proj', 4, 8],
      ['model.language_model.layers.0.self_attn.o_proj', 8, 8],
    ])).toEqual([
      ['UNKNOWN_MODULE', `adapter1: module "model.language_model.layers.0.self_attn.q_proj": ${why}`],
      ['UNKNOWN_MODULE', `adapter1: module "model.language_model.layers.0.self_attn.k_proj": ${why}`],
    ]);
  });

  // OpenGVLab/InternVL2_5-8B-MPO-hf as transformers saves it.
  const internvl25hf = [
    t('vision_tower.encoder.layer.0.attention.q_proj.weight', [4, 4]),
    t('vision_tower.encoder.layer.0.attention.k_proj.weight', [4, 4]),
    t('vision_tower.encoder.layer.0.attention.v_proj.weight', [4, 4]),
    t('multi_modal_projector.linear_1.weight', [8, 16]),
    t('language_model.model.embed_tokens.weight', [32, 8]),
    t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
    t('language_model.model.layers.0.self_attn.k_proj.weight', [4, 8]),
    t('language_model.model.layers.0.self_attn.v_proj.weight', [4, 8]),
    t('language_model.model.layers.0.mlp.gate_proj.weight', [12, 8]),
    t('language_model.lm_head.weight', [32, 8]),
  ];
  const INTERNVL25_HF = {
    architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', torch_dtype: 'bfloat16',
    text_config: { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, vocab_size: 32, num_attention_heads: 4, num_key_value_heads: 2 },
    vision_config: { model_type: 'internvl_vision', hidden_size: 4 },
  };

  for (const kind of KINDS) {
    it(`InternVL -hf: an adapter on the original checkpoint's feed_forward.w1 and output lands on gate_proj and lm_head, exactly, on ${kind}`, async () => {
      await expectMerged(internvl25hf, INTERNVL25_HF, [
        ['language_model.model.layers.0.feed_forward.w1', 'language_model.model.layers.0.mlp.gate_proj.weight', 12, 8],
        ['language_model.output', 'language_model.lm_head.weight', 32, 8],
        ['mlp1.1', 'multi_modal_projector.linear_1.weight', 8, 16],
      ], kind);
    });
  }

  it("InternVL -hf: an adapter on the original checkpoint's attention.wqkv or InternViT's patch embedding is refused, one line a module", async () => {
    const lm = "names InternLM2's attention.wqkv as InternVL's original checkpoint does; this base is transformers' InternVL, which splits "
      + "it into q_proj, k_proj and v_proj by key-value head group: not supported; merge into InternVL's original checkpoint, or use an adapter trained on this one";
    const vit = "names a module of InternViT's vision tower as InternVL's original checkpoint does; this base is transformers' InternVL "
      + "(InternVLForConditionalGeneration), whose tower is translated only for the attention's qkv and projection and the MLP's "
      + "fc1 and fc2: not supported; merge into InternVL's original checkpoint, or use an adapter trained on this one";
    expect(await problems(internvl25hf, INTERNVL25_HF, [
      ['language_model.model.layers.0.attention.wqkv', 16, 8],
      ['language_model.model.layers.0.feed_forward.w1', 12, 8],
      ['vision_model.embeddings.patch_embedding', 4, 12],
    ])).toEqual([
      ['UNKNOWN_MODULE', `adapter1: module "language_model.model.layers.0.attention.wqkv": ${lm}`],
      ['UNKNOWN_MODULE', `adapter1: module "vision_model.embeddings.patch_embedding": ${vit}`],
    ]);
  });

  for (const kind of KINDS) {
    it(`InternVL -hf: an adapter on InternViT's attn.qkv lands on q_proj, k_proj and v_proj by thirds, fc2 by name, on ${kind}`, async () => {
      // As transformers saves the -hf model (the old prefixes).
      const hf = [
        t('vision_tower.encoder.layer.0.attention.q_proj.weight', [4, 4]),
        t('vision_tower.encoder.layer.0.attention.k_proj.weight', [4, 4]),
        t('vision_tower.encoder.layer.0.attention.v_proj.weight', [4, 4]),
        t('vision_tower.encoder.layer.0.mlp.fc2.weight', [4, 16]),
        t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      ];
      const config = { architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', torch_dtype: 'bfloat16', vision_config: { model_type: 'internvl_vision', hidden_size: 4 } };
      const adapter = lora([['vision_model.encoder.layers.0.attn.qkv', 12, 4], ['vision_model.encoder.layers.0.mlp.fc2', 4, 16]]);
      const prepared = await prepare(hfModelFolder(hf, config), peftFolder({ r: 2, lora_alpha: 2 }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      const merged = await merge(prepared, kind);
      const b = decoded(hf);
      const a = decoded(adapter);
      const name = 'base_model.model.vision_model.encoder.layers.0.attn.qkv';
      const delta = product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!);
      ['q_proj', 'k_proj', 'v_proj'].forEach((m, third) => {
        const key = `vision_tower.encoder.layer.0.attention.${m}.weight`;
        expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 1, rowsOf(delta, 4, third * 4, 4)));
      });
      const fc2 = 'vision_tower.encoder.layer.0.mlp.fc2.weight';
      const f = 'base_model.model.vision_model.encoder.layers.0.mlp.fc2';
      expectValues(fc2, merged.tensors.get(fc2)!, plus(b.get(fc2)!, 1, product(a.get(`${f}.lora_B.weight`)!, a.get(`${f}.lora_A.weight`)!)));
      const lm = 'language_model.model.layers.0.self_attn.q_proj.weight';
      expect(merged.tensors.get(lm)?.bytes).toEqual(b.get(lm)!.bytes);
    });
  }

  it('InternVL -hf: an adapter from the original checkpoint with a Qwen2 language model and mlp1 lands by name', async () => {
    const hf = [
      t('multi_modal_projector.linear_1.weight', [8, 16]),
      t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('language_model.lm_head.weight', [32, 8]),
    ];
    const config = { architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', torch_dtype: 'bfloat16', text_config: { model_type: 'qwen2', hidden_size: 8, vocab_size: 32 } };
    await expectMerged(hf, config, [
      ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.q_proj.weight', 8, 8],
      ['mlp1.1', 'multi_modal_projector.linear_1.weight', 8, 16],
      ['language_model.lm_head', 'language_model.lm_head.weight', 32, 8],
    ], 'cpu');
  });
});

/**
 * Vision-language checkpoints whose classes keep the names they save (no checkpoint conversion in
 * transformers, or remote code): an adapter trained on them names the same tensors, language model,
 * vision tower and projector alike, and lands by name. Idefics3 (HuggingFaceM4/Idefics3-8B-Llama3)
 * and SmolVLM (HuggingFaceTB/SmolVLM2-2.2B-Instruct) hold `model.text_model.`, `model.vision_model.`
 * (SigLIP, whose q_proj shares the language model's suffix) and `model.connector.`; Phi-3.5-vision
 * (microsoft/Phi-3.5-vision-instruct, remote code Phi3VForCausalLM) holds the language model at
 * `model.layers.` with fused qkv_proj and gate_up_proj, and its CLIP tower and projector under
 * `model.vision_embed_tokens.`.
 */
describe('vision-language checkpoints whose names need no map', () => {
  const idefics = (architecture: string, modelType: string) => ({
    title: `${architecture} (model_type ${modelType})`,
    config: {
      architectures: [architecture], model_type: modelType, torch_dtype: 'bfloat16', scale_factor: 3,
      text_config: { model_type: 'llama', hidden_size: 16, vocab_size: 40 }, vision_config: { model_type: `${modelType}_vision`, hidden_size: 12 },
    },
    base: [
      t('model.text_model.embed_tokens.weight', [40, 16]),
      t('model.text_model.layers.0.self_attn.q_proj.weight', [16, 16]),
      t('model.text_model.layers.0.self_attn.k_proj.weight', [8, 16]),
      t('model.text_model.layers.0.mlp.down_proj.weight', [16, 20]),
      t('model.text_model.norm.weight', [16]),
      t('model.vision_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12]),
      t('model.vision_model.encoder.layers.0.mlp.fc1.weight', [24, 12]),
      t('model.vision_model.post_layernorm.weight', [12]),
      // scale_factor² × the vision hidden size in, the text hidden size out.
      t('model.connector.modality_projection.proj.weight', [16, 108]),
      t('lm_head.weight', [40, 16]),
    ],
    modules: [
      ['model.text_model.layers.0.self_attn.q_proj', 16, 16, 2], ['model.text_model.layers.0.self_attn.k_proj', 8, 16, 1],
      ['model.text_model.layers.0.mlp.down_proj', 16, 20, 3], ['model.vision_model.encoder.layers.0.self_attn.q_proj', 12, 12, 2],
      ['model.connector.modality_projection.proj', 16, 108, 2],
    ] as [string, number, number, number][],
    name: architecture === 'Idefics3ForConditionalGeneration' ? 'HuggingFaceM4/Idefics3-8B-Llama3' : 'HuggingFaceTB/SmolVLM2-2.2B-Instruct',
  });
  const families = [
    idefics('Idefics3ForConditionalGeneration', 'idefics3'),
    idefics('SmolVLMForConditionalGeneration', 'smolvlm'),
    {
      title: 'Phi3VForCausalLM (Phi-3.5-vision, remote code)',
      config: { architectures: ['Phi3VForCausalLM'], model_type: 'phi3_v', torch_dtype: 'bfloat16', hidden_size: 16, vocab_size: 40, embd_layer: { embedding_cls: 'image' } },
      base: [
        t('model.embed_tokens.weight', [40, 16]),
        t('model.layers.0.self_attn.qkv_proj.weight', [48, 16]),
        t('model.layers.0.self_attn.o_proj.weight', [16, 16]),
        t('model.layers.0.mlp.gate_up_proj.weight', [40, 16]),
        t('model.layers.0.mlp.down_proj.weight', [16, 20]),
        t('model.norm.weight', [16]),
        t('model.vision_embed_tokens.img_processor.vision_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12]),
        t('model.vision_embed_tokens.img_projection.0.weight', [16, 48]),
        t('model.vision_embed_tokens.img_projection.2.weight', [16, 16]),
        t('lm_head.weight', [40, 16]),
      ],
      modules: [
        ['model.layers.0.self_attn.qkv_proj', 48, 16, 2], ['model.layers.0.mlp.gate_up_proj', 40, 16, 1], ['model.layers.0.mlp.down_proj', 16, 20, 3],
        ['model.vision_embed_tokens.img_processor.vision_model.encoder.layers.0.self_attn.q_proj', 12, 12, 2], ['model.vision_embed_tokens.img_projection.2', 16, 16, 2],
      ] as [string, number, number, number][],
      name: 'microsoft/Phi-3.5-vision-instruct',
    },
  ];

  for (const family of families) {
    it(`${family.title}: every module lands on the tensor of its name, exactly, on cpu`, async () => {
      const adapter = family.modules.flatMap(([path, out, inF, r]) => [
        randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
        randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
      ]);
      const rankPattern = Object.fromEntries(family.modules.map(([path, , , r]) => [path, r]));
      const prepared = await prepare(hfModelFolder(family.base, family.config), peftFolder({ base_model_name_or_path: family.name, r: 2, lora_alpha: 4, rank_pattern: rankPattern }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.warnings).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(family.modules.map(([path]) => `${path}.weight`).sort());
      const merged = await merge(prepared, 'cpu');
      const b = decoded(family.base);
      const a = decoded(adapter);
      for (const [path, , , r] of family.modules) {
        const name = `base_model.model.${path}`;
        expectValues(`${path}.weight`, merged.tensors.get(`${path}.weight`)!, plus(b.get(`${path}.weight`)!, 4 / r, product(a.get(`${name}.lora_B.weight`)!, a.get(`${name}.lora_A.weight`)!)));
      }
      const changed = family.modules.map(([path]) => `${path}.weight`);
      for (const [key, w] of b) if (!changed.includes(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
    });
  }

  it('SmolVLM: an adapter trained on its language model alone (SmolLM2, model.layers.…) is refused module by module, as PEFT cannot load it there', async () => {
    const family = families[1];
    const adapter = [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [2, 16], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [16, 2], 'F32', rand),
    ];
    const prepared = await prepare(hfModelFolder(family.base, family.config), peftFolder({ r: 2, base_model_name_or_path: 'HuggingFaceTB/SmolLM2-1.7B-Instruct' }, adapter));
    await prepared.close();
    expect(prepared.plan.problems.map((p) => p.message)).toEqual(['adapter1: module "model.layers.0.self_attn.q_proj": no matching tensor in the base model']);
  });
});

describe('a checkpoint storing one tensor under both namings of its key map', () => {
  it('a module there is refused naming both keys, not merged into whichever the map read last', async () => {
    const config = {
      architectures: ['InternVLForConditionalGeneration'], model_type: 'internvl', torch_dtype: 'bfloat16',
      text_config: { model_type: 'qwen2', hidden_size: 8, vocab_size: 32 }, vision_config: { model_type: 'internvl_vision', hidden_size: 4 }, downsample_ratio: 0.5,
    };
    const base = [
      t('language_model.model.embed_tokens.weight', [32, 8]),
      t('language_model.model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('model.language_model.layers.0.self_attn.q_proj.weight', [8, 8]),
      t('language_model.model.layers.0.mlp.down_proj.weight', [8, 12]),
    ];
    const path = 'model.language_model.layers.0.self_attn.q_proj';
    const adapter = [
      randomTensor(`base_model.model.${path}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`base_model.model.${path}.lora_B.weight`, [8, 2], 'F32', rand),
    ];
    const prepared = await prepare(hfModelFolder(base, config), peftFolder({ r: 2, target_modules: ['q_proj'] }, adapter));
    await prepared.close();
    expect(prepared.plan.updates).toEqual([]);
    expect(prepared.plan.problems).toHaveLength(1);
    const [problem] = prepared.plan.problems;
    expect(problem.message).toContain('language_model.model.layers.0.self_attn.q_proj.weight');
    expect(problem.message).toContain('model.language_model.layers.0.self_attn.q_proj.weight');
  });
});
