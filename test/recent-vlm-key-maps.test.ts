/**
 * Models whose checkpoints and the module trees adapters are trained on name the same weights
 * differently, end to end against float64 truth:
 *
 * - T5Gemma 2 (google/t5gemma-2-270m-270m): the checkpoint names the encoder's text model
 *   `model.encoder.layers.N…`, transformers' T5Gemma2Encoder `model.encoder.text_model.layers.N…`
 *   (conversion_mapping.py "t5gemma2_encoder"); the decoder (`model.decoder.layers.N…`) and the SigLIP
 *   tower (`model.encoder.vision_tower.vision_model.encoder.layers.N…`) end with the same tails.
 * - π0 / π0.5 as LeRobot saves a policy (`model.paligemma_with_expert.paligemma.model.…`,
 *   `model.paligemma_with_expert.gemma_expert.model.…`, `model.state_proj`, …; a config.json with
 *   `"type": "pi0"` and no `architectures`) and openpi's conversion (the same without `model.`),
 *   against adapters trained on transformers' PI0ForConditionalGeneration (`model.vlm.…`, `model.dit.…`,
 *   `embed_action_time.state_proj`, `action_out_proj`; conversion_mapping.py "pi0") or on LeRobot's
 *   policy before its openpi port (PaliGemma's names before transformers' VLM refactor); every action and
 *   state head of π0 and π0.5 in transformers', LeRobot's and openpi's names.
 * - Gemma 4 (Gemma4ForConditionalGeneration: `model.language_model.…`, `model.vision_tower.encoder.…`,
 *   `model.audio_tower.…`) with an adapter trained text-only on Gemma4ForCausalLM (`model.layers.N…`).
 * - Gemma 4 Unified (Gemma4UnifiedForConditionalGeneration: the same language model, encoder-free
 *   `model.embed_vision.…` / `model.embed_audio.…`, no towers) with adapters of Gemma4UnifiedForCausalLM,
 *   of its own class and of Gemma4ForConditionalGeneration.
 *
 * Sizes are scaled down; names, dtypes and config.json fields are the repositories'.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MergeBackend, type PreparedMerge } from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { runCli } from './helpers/cli.js';
import { decodeSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, mergeIntoFolder, peftFolder, prepareOne as prepare, randomTensor, type MergedFolder } from './helpers/hf-folder.js';
import { expectValues, plus, product } from './helpers/merge-truth.js';

const rand = seededRandom(2046);
let cpu: MergeBackend;
beforeAll(async () => {
  cpu = await createNodeBackend('cpu');
});
afterAll(() => cpu.dispose());
const temp = tempDirs();
afterAll(temp.removeAll);

const merge = (prepared: PreparedMerge): Promise<MergedFolder> => mergeIntoFolder(prepared, cpu);
const t = (name: string, shape: number[], dtype: 'BF16' | 'F32' = 'BF16') => randomTensor(name, shape, dtype, rand);

/** [module path in the adapter, the base tensor it lands on, out, in, r] */
type Module = [path: string, baseKey: string, out: number, inF: number, r: number];

function loraOf(modules: readonly Module[]): FixtureTensor[] {
  return modules.flatMap(([path, , out, inF, r]) => [
    randomTensor(`base_model.model.${path}.lora_A.weight`, [r, inF], 'F32', rand, 0.5),
    randomTensor(`base_model.model.${path}.lora_B.weight`, [out, r], 'F32', rand, 0.5),
  ]);
}

function peftConfig(modules: readonly Module[]): object {
  return { r: 2, lora_alpha: 4, target_modules: [...new Set(modules.map(([p]) => p.split('.').pop()!))], rank_pattern: Object.fromEntries(modules.map(([p, , , , r]) => [p, r])) };
}

/** Each module's tensor is W + (4/r)·B·A, rounded once; every other tensor is copied bit for bit. */
function expectMerged(merged: MergedFolder, base: FixtureTensor[], adapter: FixtureTensor[], modules: readonly Module[]): void {
  const b = decoded(base);
  const a = decoded(adapter);
  for (const [path, key, , , r] of modules) {
    expectValues(key, merged.tensors.get(key)!, plus(b.get(key)!, 4 / r, product(a.get(`base_model.model.${path}.lora_B.weight`)!, a.get(`base_model.model.${path}.lora_A.weight`)!)));
  }
  const changed = new Set(modules.map(([, key]) => key));
  for (const [key, w] of b) if (!changed.has(key)) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
  expect([...merged.tensors.keys()].sort()).toEqual([...b.keys()].sort());
}

// --- T5Gemma 2 -----------------------------------------------------------------------------------

describe('T5Gemma 2: the checkpoint\'s model.encoder.layers and transformers\' model.encoder.text_model', () => {
  // google/t5gemma-2-270m-270m: text 640 wide, 4 heads of 256, 1 KV head, MLP 2048, vocab 262144;
  // SigLIP 1152 wide; the projector's mm_input_projection_weight (1152, 640). Scaled: heads of 4.
  const H = 8;
  const V = 6;
  const base: FixtureTensor[] = [
    t('model.encoder.embed_tokens.weight', [32, H]),
    t('model.encoder.embed_tokens.eoi_embedding', [H]),
    t('model.encoder.layers.0.self_attn.q_proj.weight', [8, H]),
    t('model.encoder.layers.0.self_attn.k_proj.weight', [4, H]),
    t('model.encoder.layers.0.self_attn.v_proj.weight', [4, H]),
    t('model.encoder.layers.0.self_attn.o_proj.weight', [H, 8]),
    t('model.encoder.layers.0.self_attn.q_norm.weight', [4]),
    t('model.encoder.layers.0.mlp.gate_proj.weight', [12, H]),
    t('model.encoder.layers.0.mlp.up_proj.weight', [12, H]),
    t('model.encoder.layers.0.mlp.down_proj.weight', [H, 12]),
    t('model.encoder.layers.0.input_layernorm.weight', [H]),
    t('model.encoder.layers.0.post_feedforward_layernorm.weight', [H]),
    t('model.encoder.norm.weight', [H]),
    t('model.encoder.multi_modal_projector.mm_input_projection_weight', [V, H]),
    t('model.encoder.multi_modal_projector.mm_soft_emb_norm.weight', [V]),
    t('model.encoder.vision_tower.vision_model.embeddings.patch_embedding.weight', [V, 3, 2, 2]),
    t('model.encoder.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', [V, V]),
    t('model.encoder.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias', [V]),
    t('model.encoder.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight', [10, V]),
    t('model.encoder.vision_tower.vision_model.post_layernorm.weight', [V]),
    t('model.decoder.embed_tokens.weight', [32, H]),
    t('model.decoder.layers.0.self_attn.q_proj.weight', [8, H]),
    t('model.decoder.layers.0.self_attn.k_proj.weight', [4, H]),
    t('model.decoder.layers.0.self_attn.o_proj.weight', [H, 8]),
    t('model.decoder.layers.0.mlp.down_proj.weight', [H, 12]),
    t('model.decoder.norm.weight', [H]),
  ];
  const text = { model_type: 't5gemma2_text', hidden_size: H, intermediate_size: 12, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, num_hidden_layers: 1, vocab_size: 32, hidden_activation: 'gelu_pytorch_tanh', query_pre_attn_scalar: 4, sliding_window: 512 };
  const config = {
    architectures: ['T5Gemma2ForConditionalGeneration'], model_type: 't5gemma2', dtype: 'bfloat16', is_encoder_decoder: true, tie_word_embeddings: true,
    eoi_token_index: 256000, image_token_index: 256001,
    encoder: {
      model_type: 't5gemma2_encoder', mm_tokens_per_image: 256, boi_token_index: 255999, eoi_token_index: 256000, image_token_index: 256001,
      text_config: text, vision_config: { model_type: 'siglip_vision_model', hidden_size: V, intermediate_size: 10, num_hidden_layers: 1, num_attention_heads: 2, patch_size: 2, image_size: 4, vision_use_head: false },
    },
    decoder: { ...text, model_type: 't5gemma2_decoder' },
  };
  // Trained on transformers' T5Gemma2ForConditionalGeneration with T5Gemma2Encoder's text_model.
  const modules: Module[] = [
    ['model.encoder.text_model.layers.0.self_attn.q_proj', 'model.encoder.layers.0.self_attn.q_proj.weight', 8, H, 2],
    ['model.encoder.text_model.layers.0.self_attn.v_proj', 'model.encoder.layers.0.self_attn.v_proj.weight', 4, H, 1],
    ['model.encoder.text_model.layers.0.mlp.down_proj', 'model.encoder.layers.0.mlp.down_proj.weight', H, 12, 3],
    ['model.decoder.layers.0.self_attn.q_proj', 'model.decoder.layers.0.self_attn.q_proj.weight', 8, H, 2],
    ['model.decoder.layers.0.mlp.down_proj', 'model.decoder.layers.0.mlp.down_proj.weight', H, 12, 2],
    ['model.encoder.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 'model.encoder.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', V, V, 2],
  ];

  it('an adapter in text_model names lands on the checkpoint\'s encoder, never on the decoder or the tower, exactly', async () => {
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(base, config, { shards: 2 }), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([, k]) => k).sort());
    expectMerged(await merge(prepared), base, adapter, modules);
    // A bare tail that the encoder's text model, the decoder and the tower all end with is still refused in one line.
    const bare = await prepare(hfModelFolder(base, config), peftFolder({ r: 2, target_modules: ['q_proj'] }, loraOf([['layers.0.self_attn.q_proj', '', 8, H, 2]])));
    await bare.close();
    expect(bare.plan.problems.map((p) => p.message)).toEqual([
      'adapter1: module "layers.0.self_attn.q_proj": matches 3 base tensors (model.decoder.layers.0.self_attn.q_proj.weight, model.encoder.layers.0.self_attn.q_proj.weight, model.encoder.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight)',
    ]);
  });

  it('one tied embedding: a LoRA on the encoder\'s or decoder\'s embed_tokens or on lm_head.out_proj is refused naming the tie', async () => {
    // T5Gemma2Model ties model.decoder.embed_tokens, T5Gemma2ForConditionalGeneration lm_head.out_proj, to model.encoder.embed_tokens.
    const cases: [string, FixtureTensor[], string][] = [
      ['model.encoder.text_model.embed_tokens', [randomTensor('base_model.model.model.encoder.text_model.embed_tokens.lora_embedding_A', [2, 32], 'F32', rand), randomTensor('base_model.model.model.encoder.text_model.embed_tokens.lora_embedding_B', [H, 2], 'F32', rand)],
        'adapter1: module "model.encoder.text_model.embed_tokens" lands on model.encoder.embed_tokens.weight, which the model ties to model.decoder.embed_tokens.weight, lm_head.out_proj.weight (one shared tensor), while training applied it to that module alone; a tied tensor cannot hold that, so it is not merged'],
      ['model.decoder.embed_tokens', [randomTensor('base_model.model.model.decoder.embed_tokens.lora_embedding_A', [2, 32], 'F32', rand), randomTensor('base_model.model.model.decoder.embed_tokens.lora_embedding_B', [H, 2], 'F32', rand)],
        'adapter1: module "model.decoder.embed_tokens" lands on model.decoder.embed_tokens.weight, which the model ties to model.encoder.embed_tokens.weight, lm_head.out_proj.weight'],
      ['lm_head.out_proj', loraOf([['lm_head.out_proj', '', 32, H, 2]]),
        'adapter1: module "lm_head.out_proj" lands on lm_head.out_proj.weight, which the model ties to model.encoder.embed_tokens.weight, model.decoder.embed_tokens.weight'],
    ];
    for (const [path, tensors, message] of cases) {
      await expect(prepare(hfModelFolder(base, config), peftFolder({ r: 2, lora_alpha: 4, target_modules: [path.split('.').pop()] }, tensors))).rejects.toThrow(message);
    }
    // "all-linear" leaves out the head get_output_embeddings() returns, T5Gemma 2's lm_head.out_proj.
    await expect(prepare(hfModelFolder(base, config), peftFolder({ r: 2, lora_alpha: 4, target_modules: 'all-linear' }, loraOf([['lm_head.out_proj', '', 32, H, 2]]))))
      .rejects.toThrow('adapter1/adapter_config.json: module "lm_head.out_proj" is in adapter1/adapter_model.safetensors but is the output head, which target_modules "all-linear" leaves out');
  });

  it('an adapter trained on the encoder alone (T5Gemma2Encoder: text_model.layers.N…) lands on the encoder of the whole model', async () => {
    const alone: Module[] = [['text_model.layers.0.self_attn.q_proj', 'model.encoder.layers.0.self_attn.q_proj.weight', 8, H, 2]];
    const adapter = loraOf(alone);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(alone), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expectMerged(await merge(prepared), base, adapter, alone);
  });

  it('the encoder alone (T5Gemma2Encoder, model_type t5gemma2_encoder) saved in text_model names, an adapter of the class before text_model', async () => {
    // The encoder's state dict as the module tree names it (a trainer's own save, not reverted by save_pretrained).
    const encoder = base.filter((x) => x.name.startsWith('model.encoder.')).map((x) => ({ ...x, name: x.name.slice('model.encoder.'.length).replace(/^(?=(layers|embed_tokens|norm)\.)/, 'text_model.') }));
    expect(encoder.map((x) => x.name)).toContain('text_model.layers.0.self_attn.q_proj.weight');
    expect(encoder.map((x) => x.name)).toContain('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight');
    const encoderConfig = { ...config.encoder, architectures: ['T5Gemma2Encoder'], dtype: 'bfloat16' };
    const own: Module[] = [
      ['layers.0.self_attn.q_proj', 'text_model.layers.0.self_attn.q_proj.weight', 8, H, 2],
      ['layers.0.mlp.down_proj', 'text_model.layers.0.mlp.down_proj.weight', H, 12, 1],
      ['vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', 'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight', V, V, 2],
    ];
    const adapter = loraOf(own);
    const prepared = await prepare(hfModelFolder(encoder, encoderConfig), peftFolder(peftConfig(own), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expectMerged(await merge(prepared), encoder, adapter, own);
  });

});

// --- π0 / π0.5 -----------------------------------------------------------------------------------

describe('π0 and π0.5 as LeRobot and openpi save them, adapters of transformers\' PI0 class or of LeRobot', () => {
  // lerobot/pi0_base: PaliGemma's Gemma 2B (2048 wide, 8 heads of 256, 1 KV head) and the 300M
  // action expert (1024 wide, 8 heads of 256), max_state_dim = max_action_dim = 32. Scaled: VLM 16
  // wide, expert 8 wide, heads of 4, state and action 4 wide.
  const P = 'model.paligemma_with_expert';
  const lerobot = (pi05: boolean): FixtureTensor[] => [
    t(`${P}.paligemma.lm_head.weight`, [32, 16]),
    t(`${P}.paligemma.model.language_model.layers.0.self_attn.q_proj.weight`, [16, 16]),
    t(`${P}.paligemma.model.language_model.layers.0.self_attn.k_proj.weight`, [4, 16]),
    t(`${P}.paligemma.model.language_model.layers.0.self_attn.v_proj.weight`, [4, 16]),
    t(`${P}.paligemma.model.language_model.layers.0.mlp.down_proj.weight`, [16, 24]),
    t(`${P}.paligemma.model.language_model.layers.0.input_layernorm.weight`, [16]),
    t(`${P}.paligemma.model.language_model.norm.weight`, [16]),
    t(`${P}.paligemma.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight`, [6, 6], 'F32'),
    t(`${P}.paligemma.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.bias`, [6], 'F32'),
    t(`${P}.paligemma.model.multi_modal_projector.linear.weight`, [16, 6], 'F32'),
    t(`${P}.gemma_expert.model.layers.0.self_attn.q_proj.weight`, [16, 8]),
    t(`${P}.gemma_expert.model.layers.0.self_attn.k_proj.weight`, [4, 8]),
    t(`${P}.gemma_expert.model.layers.0.self_attn.v_proj.weight`, [4, 8]),
    t(`${P}.gemma_expert.model.layers.0.self_attn.o_proj.weight`, [8, 16]),
    t(`${P}.gemma_expert.model.layers.0.mlp.down_proj.weight`, [8, 12]),
    ...(pi05
      ? [t(`${P}.gemma_expert.model.layers.0.input_layernorm.dense.weight`, [24, 8]), t('model.time_mlp_in.weight', [8, 8], 'F32'), t('model.time_mlp_out.weight', [8, 8], 'F32')]
      : [t(`${P}.gemma_expert.model.layers.0.input_layernorm.weight`, [8]), t('model.state_proj.weight', [8, 4], 'F32'), t('model.action_time_mlp_in.weight', [8, 16], 'F32'), t('model.action_time_mlp_out.weight', [8, 8], 'F32')]),
    t('model.action_in_proj.weight', [8, 4], 'F32'),
    t('model.action_out_proj.weight', [4, 8], 'F32'),
    t('model.action_out_proj.bias', [4], 'F32'),
  ];
  const lerobotConfig = (type: 'pi0' | 'pi05') => ({
    type, n_obs_steps: 1, chunk_size: 50, n_action_steps: 50, max_state_dim: 32, max_action_dim: 32,
    paligemma_variant: 'gemma_2b', action_expert_variant: 'gemma_300m', dtype: 'bfloat16', device: 'cuda', use_amp: false,
    input_features: {}, output_features: {},
  });
  const openpi = (tensors: FixtureTensor[]) => tensors.map((x) => ({ ...x, name: x.name.slice('model.'.length) }));

  // Module paths as PEFT names them on transformers' PI0ForConditionalGeneration.
  const pi0Modules = (key: (lerobotKey: string) => string): Module[] => [
    ['model.dit.layers.0.self_attn.q_proj', key(`${P}.gemma_expert.model.layers.0.self_attn.q_proj.weight`), 16, 8, 2],
    ['model.dit.layers.0.self_attn.v_proj', key(`${P}.gemma_expert.model.layers.0.self_attn.v_proj.weight`), 4, 8, 1],
    ['model.vlm.language_model.layers.0.self_attn.q_proj', key(`${P}.paligemma.model.language_model.layers.0.self_attn.q_proj.weight`), 16, 16, 2],
    ['model.vlm.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj', key(`${P}.paligemma.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight`), 6, 6, 2],
    ['embed_action_time.state_proj', key('model.state_proj.weight'), 8, 4, 2],
    ['embed_action_time.action_time_mlp_in', key('model.action_time_mlp_in.weight'), 8, 16, 3],
    ['action_out_proj', key('model.action_out_proj.weight'), 4, 8, 1],
  ];

  for (const [title, base, modules] of [
    ['a LeRobot policy\'s file', lerobot(false), pi0Modules((k) => k)],
    ['openpi\'s conversion (no model. prefix)', openpi(lerobot(false)), pi0Modules((k) => k.slice('model.'.length))],
  ] as const) {
    it(`π0, ${title}: an adapter trained on transformers' PI0ForConditionalGeneration lands on its tensors, exactly`, async () => {
      const adapter = loraOf(modules);
      const prepared = await prepare(hfModelFolder(base, lerobotConfig('pi0')), peftFolder(peftConfig(modules), adapter));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(modules.map(([, k]) => [k, 'vlm-checkpoint']).sort());
      expectMerged(await merge(prepared), base, adapter, modules);
    });
  }

  it('π0 with transformers\' config.json (PI0ForConditionalGeneration) over openpi\'s names: the same', async () => {
    const base = openpi(lerobot(false));
    const modules = pi0Modules((k) => k.slice('model.'.length));
    const config = { architectures: ['PI0ForConditionalGeneration'], model_type: 'pi0', dtype: 'bfloat16', chunk_size: 50, max_state_dim: 32, max_action_dim: 32, vlm_config: { model_type: 'paligemma' }, dit_config: { model_type: 'gemma' } };
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expectMerged(await merge(prepared), base, adapter, modules);
  });

  it('π0: an adapter of LeRobot\'s policy before its openpi port (PaliGemma\'s language_model.model…) lands on today\'s names; π0.5 by its own', async () => {
    const base = lerobot(false);
    const modules: Module[] = [
      [`${P}.paligemma.language_model.model.layers.0.self_attn.q_proj`, `${P}.paligemma.model.language_model.layers.0.self_attn.q_proj.weight`, 16, 16, 2],
      [`${P}.paligemma.multi_modal_projector.linear`, `${P}.paligemma.model.multi_modal_projector.linear.weight`, 16, 6, 1],
      [`${P}.gemma_expert.model.layers.0.self_attn.q_proj`, `${P}.gemma_expert.model.layers.0.self_attn.q_proj.weight`, 16, 8, 2],
      ['model.action_in_proj', 'model.action_in_proj.weight', 8, 4, 2],
    ];
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(base, lerobotConfig('pi0')), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expectMerged(await merge(prepared), base, adapter, modules);
    // π0.5 (time_mlp_in, adaRMS expert norms) on openpi's file: a LeRobot adapter's VLM and expert q_proj land apart.
    const base05 = openpi(lerobot(true));
    const modules05: Module[] = [
      [`${P}.gemma_expert.model.layers.0.self_attn.q_proj`, 'paligemma_with_expert.gemma_expert.model.layers.0.self_attn.q_proj.weight', 16, 8, 2],
      ['model.paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj', 'paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight', 16, 16, 1],
      ['model.time_mlp_in', 'time_mlp_in.weight', 8, 8, 2],
      ['model.action_out_proj', 'action_out_proj.weight', 4, 8, 1],
    ];
    const adapter05 = loraOf(modules05);
    const prepared05 = await prepare(hfModelFolder(base05, lerobotConfig('pi05')), peftFolder(peftConfig(modules05), adapter05));
    expect(prepared05.plan.problems).toEqual([]);
    expectMerged(await merge(prepared05), base05, adapter05, modules05);
  });


  // The PaliGemma's embedding is stored only as `paligemma.lm_head.weight` (tied to the head, one name kept
  // by safetensors; LeRobot copies it into embed_tokens on loading, transformers' "pi0" mapping renames it
  // model.vlm.language_model.embed_tokens). A PEFT Embedding LoRA: lora_embedding_A (r, vocab),
  // lora_embedding_B (hidden, r), W[v][h] += (α/r)·Σk B[h][k]·A[k][v].
  for (const [title, name, pi05, onOpenpi] of [
    ['LeRobot\'s policy (its names)', `${P}.paligemma.model.language_model.embed_tokens`, false, false],
    ['transformers\' PI0ForConditionalGeneration', 'model.vlm.language_model.embed_tokens', false, true],
    ['LeRobot\'s policy before its openpi port', `${P}.paligemma.language_model.model.embed_tokens`, true, true],
  ] as const) {
    it(`${pi05 ? 'π0.5' : 'π0'} on ${onOpenpi ? 'openpi\'s' : 'LeRobot\'s'} file: an embed_tokens LoRA of ${title} lands on the stored paligemma.lm_head, exactly`, async () => {
      const base = onOpenpi ? openpi(lerobot(pi05)) : lerobot(pi05);
      const head = `${onOpenpi ? '' : 'model.'}paligemma_with_expert.paligemma.lm_head.weight`;
      const q = `${onOpenpi ? '' : 'model.'}paligemma_with_expert.gemma_expert.model.layers.0.self_attn.q_proj.weight`;
      const m = `base_model.model.${name}`;
      const A = randomTensor(`${m}.lora_embedding_A`, [2, 32], 'F32', rand, 0.5);
      const B = randomTensor(`${m}.lora_embedding_B`, [16, 2], 'F32', rand, 0.5);
      const qModule: Module = [`${P}.gemma_expert.model.layers.0.self_attn.q_proj`, q, 16, 8, 2];
      const adapter = [A, B, ...loraOf([qModule])];
      const prepared = await prepare(hfModelFolder(base, lerobotConfig(pi05 ? 'pi05' : 'pi0')), peftFolder({ r: 2, lora_alpha: 4, target_modules: ['embed_tokens', 'q_proj'] }, adapter));
      expect(prepared.plan.problems).toEqual([]);
      expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([head, q].sort());
      const merged = await merge(prepared);
      const b = decoded(base);
      const a = decoded(adapter);
      const w = b.get(head)!.values;
      const av = a.get(A.name)!.values;
      const bv = a.get(B.name)!.values;
      const truth = new Float64Array(32 * 16);
      for (let v = 0; v < 32; v++) {
        for (let h = 0; h < 16; h++) truth[v * 16 + h] = w[v * 16 + h] + 2 * (bv[h * 2] * av[v] + bv[h * 2 + 1] * av[32 + v]);
      }
      expectValues(head, merged.tensors.get(head)!, truth);
      expectValues(q, merged.tensors.get(q)!, plus(b.get(q)!, 2, product(a.get(`base_model.model.${qModule[0]}.lora_B.weight`)!, a.get(`base_model.model.${qModule[0]}.lora_A.weight`)!)));
      for (const [key, x] of b) if (key !== head && key !== q) expect(merged.tensors.get(key)?.bytes, `${key} is copied unchanged`).toEqual(x.bytes);
      // No embed_tokens tensor is added: LeRobot, openpi and transformers all read the embedding from the head.
      expect([...merged.tensors.keys()].sort()).toEqual([...b.keys()].sort());
    });
  }

  it('the command line: a LeRobot π0 policy folder and an adapter of transformers\' class, merged exactly', async () => {
    const base = lerobot(false);
    const modules = pi0Modules((k) => k);
    const adapter = loraOf(modules);
    const dir = temp.make({
      ...Object.fromEntries(Object.entries(hfModelFolder(base, lerobotConfig('pi0'))).map(([p, v]) => [`policy/${p}`, v])),
      ...Object.fromEntries(Object.entries(peftFolder(peftConfig(modules), adapter)).map(([p, v]) => [`adapter/${p}`, v])),
    });
    const out = join(dir, 'out');
    const run = await runCli(['merge', '--base', join(dir, 'policy'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const file = decodeSafetensors(new Uint8Array(readFileSync(join(out, 'model.safetensors'))));
    expect(file.tensors.size).toBe(base.length);
    expectMerged({ tensors: file.tensors } as MergedFolder, base, adapter, modules);
  });
});

describe('π0 and π0.5: every action and state head, in each of its three namings, on LeRobot\'s and openpi\'s files', () => {
  // lerobot/pi0_base and lerobot/pi05_base heads (max_state_dim = max_action_dim = 32, the expert 1024 wide):
  // π0 `state_proj` (32 → 1024), `action_in_proj` (32 → 1024), `action_time_mlp_in` (2048 → 1024),
  // `action_time_mlp_out` (1024 → 1024), `action_out_proj` (1024 → 32); π0.5 `action_in_proj`,
  // `time_mlp_in` / `time_mlp_out` (1024 → 1024), `action_out_proj`, and no state_proj. Scaled: expert 8 wide,
  // state and action 4 wide. Each head is named as PEFT saves it on transformers' PI0ForConditionalGeneration
  // (`embed_action_time.…`, `action_out_proj`), on LeRobot's policy (`model.…`) and on openpi's model (root).
  const heads = (pi05: boolean): [name: string, out: number, inF: number][] => pi05
    ? [['action_in_proj', 8, 4], ['time_mlp_in', 8, 8], ['time_mlp_out', 8, 8], ['action_out_proj', 4, 8]]
    : [['state_proj', 8, 4], ['action_in_proj', 8, 4], ['action_time_mlp_in', 8, 16], ['action_time_mlp_out', 8, 8], ['action_out_proj', 4, 8]];
  const P = 'model.paligemma_with_expert';
  const policy = (pi05: boolean, openpi: boolean): FixtureTensor[] => [
    t(`${P}.paligemma.lm_head.weight`, [32, 16]),
    t(`${P}.paligemma.model.language_model.layers.0.self_attn.q_proj.weight`, [16, 16]),
    t(`${P}.gemma_expert.model.layers.0.self_attn.q_proj.weight`, [16, 8]),
    ...heads(pi05).flatMap(([name, out, inF]) => [t(`model.${name}.weight`, [out, inF], 'F32'), t(`model.${name}.bias`, [out], 'F32')]),
  ].map((x) => (openpi ? { ...x, name: x.name.slice('model.'.length) } : x));
  const config = (type: string) => ({ type, chunk_size: 50, n_action_steps: 50, max_state_dim: 32, max_action_dim: 32, dtype: 'bfloat16', input_features: {}, output_features: {} });
  // transformers' class has π0's embed_action_time; π0.5's time_mlp_* it does not hold, so those are LeRobot's and openpi's only.
  const transformersName = (name: string) => (name === 'action_out_proj' ? name : `embed_action_time.${name}`);

  for (const pi05 of [false, true]) {
    for (const openpi of [false, true]) {
      it(`${pi05 ? 'π0.5' : 'π0'} on ${openpi ? 'openpi\'s' : 'LeRobot\'s'} file: each head lands on its tensor, exactly`, async () => {
        const base = policy(pi05, openpi);
        const key = (name: string) => `${openpi ? '' : 'model.'}${name}.weight`;
        const namings: ((name: string) => string)[] = [(n) => `model.${n}`, (n) => n];
        if (!pi05) namings.push(transformersName);
        for (const naming of namings) {
          const modules: Module[] = heads(pi05).map(([name, out, inF], i) => [naming(name), key(name), out, inF, 1 + (i % 3)]);
          const adapter = loraOf(modules);
          const prepared = await prepare(hfModelFolder(base, config(pi05 ? 'pi05' : 'pi0')), peftFolder(peftConfig(modules), adapter));
          expect(prepared.plan.problems).toEqual([]);
          expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([, k]) => k).sort());
          expectMerged(await merge(prepared), base, adapter, modules);
        }
      });
    }
  }

  it('a head the model does not have is refused, naming it: π0\'s state_proj and action_time_mlp_* on π0.5, π0.5\'s time_mlp_* on π0', async () => {
    const cases: [boolean, string[]][] = [
      [true, ['embed_action_time.state_proj', 'model.action_time_mlp_in', 'action_time_mlp_out']],
      [false, ['model.time_mlp_in', 'time_mlp_out']],
    ];
    for (const [pi05, names] of cases) {
      const modules: Module[] = names.map((n) => [n, '', 8, 8, 2]);
      const prepared = await prepare(hfModelFolder(policy(pi05, false), config(pi05 ? 'pi05' : 'pi0')), peftFolder(peftConfig(modules), loraOf(modules)));
      await prepared.close();
      expect(prepared.plan.problems.map((p) => p.message).sort()).toEqual(names.map((n) => `adapter1: module "${n}": no matching tensor in the base model`).sort());
    }
  });
});

// --- Gemma 4 -------------------------------------------------------------------------------------

describe('Gemma 4: an adapter trained on Gemma4ForCausalLM (model.layers.N…) on the multimodal checkpoint', () => {
  // google/gemma-4-E4B-it: text 2560 wide (8 heads of 256, 2 KV heads), a vision tower whose Linears are
  // Gemma4ClippableLinear (`….q_proj.linear.weight`), an audio tower (`model.audio_tower.layers.N…`), the
  // embedders `model.embed_vision.embedding_projection` / `model.embed_audio.…`. Scaled: heads of 4.
  const H = 8;
  const base: FixtureTensor[] = [
    t('model.language_model.embed_tokens.weight', [32, H]),
    t('model.language_model.layers.0.self_attn.q_proj.weight', [8, H]),
    t('model.language_model.layers.0.self_attn.k_proj.weight', [4, H]),
    t('model.language_model.layers.0.self_attn.q_norm.weight', [4]),
    t('model.language_model.layers.0.mlp.down_proj.weight', [H, 12]),
    t('model.language_model.norm.weight', [H]),
    t('model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight', [6, 6]),
    t('model.vision_tower.encoder.layers.0.mlp.gate_proj.linear.weight', [10, 6]),
    t('model.embed_vision.embedding_projection.weight', [H, 6]),
    t('model.audio_tower.layers.0.self_attn.q_proj.linear.weight', [6, 6]),
    t('model.embed_audio.embedding_projection.weight', [H, 6]),
  ];
  const config = {
    architectures: ['Gemma4ForConditionalGeneration'], model_type: 'gemma4', dtype: 'bfloat16', tie_word_embeddings: true,
    text_config: { model_type: 'gemma4_text', hidden_size: H, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, intermediate_size: 12, vocab_size: 32, num_hidden_layers: 1 },
    vision_config: { model_type: 'gemma4_vision', hidden_size: 6 }, audio_config: { model_type: 'gemma4_audio', hidden_size: 6 },
  };
  const modules: Module[] = [
    ['model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj.weight', 8, H, 2],
    ['model.layers.0.self_attn.k_proj', 'model.language_model.layers.0.self_attn.k_proj.weight', 4, H, 1],
    ['model.layers.0.mlp.down_proj', 'model.language_model.layers.0.mlp.down_proj.weight', H, 12, 3],
  ];

  it('each module lands on the language model, never on the towers that end alike, exactly', async () => {
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(modules.map(([, k]) => [k, 'vlm-checkpoint']).sort());
    expectMerged(await merge(prepared), base, adapter, modules);
  });
});

// --- Gemma 4 Unified -----------------------------------------------------------------------------

describe('Gemma 4 Unified (gemma4_unified): adapters of its text-only class, of its own class and of Gemma 4\'s', () => {
  // google/gemma-4-12B (Gemma4UnifiedForConditionalGeneration): the language model `model.language_model.…`
  // (3840 wide, heads of 256) and no towers; Gemma4UnifiedModel's encoder-free embedders
  // `model.embed_vision.{patch_ln1, patch_dense, patch_ln2, pos_embedding, pos_norm}` and
  // `….multimodal_embedder.embedding_projection` (48×48×3 = 6912-wide patches), and
  // `model.embed_audio.embedding_projection` (640-sample frames). Scaled: text 8 wide, heads of 4,
  // patches 12 wide, embedder 6 wide, frames 10 wide.
  const H = 8;
  const base: FixtureTensor[] = [
    t('model.language_model.embed_tokens.weight', [32, H]),
    t('model.language_model.layers.0.self_attn.q_proj.weight', [8, H]),
    t('model.language_model.layers.0.self_attn.k_proj.weight', [4, H]),
    t('model.language_model.layers.0.self_attn.v_proj.weight', [4, H]),
    t('model.language_model.layers.0.self_attn.q_norm.weight', [4]),
    t('model.language_model.layers.0.mlp.down_proj.weight', [H, 12]),
    t('model.language_model.norm.weight', [H]),
    t('model.embed_vision.patch_ln1.weight', [12]),
    t('model.embed_vision.patch_ln1.bias', [12]),
    t('model.embed_vision.patch_dense.weight', [6, 12]),
    t('model.embed_vision.patch_dense.bias', [6]),
    t('model.embed_vision.patch_ln2.weight', [6]),
    t('model.embed_vision.pos_embedding', [4, 2, 6]),
    t('model.embed_vision.pos_norm.weight', [6]),
    t('model.embed_vision.multimodal_embedder.embedding_projection.weight', [H, 6]),
    t('model.embed_audio.embedding_projection.weight', [H, 10]),
  ];
  const config = {
    architectures: ['Gemma4UnifiedForConditionalGeneration'], model_type: 'gemma4_unified', dtype: 'bfloat16', tie_word_embeddings: true,
    text_config: { model_type: 'gemma4_unified_text', hidden_size: H, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, intermediate_size: 12, vocab_size: 32, num_hidden_layers: 1 },
    vision_config: { model_type: 'gemma4_unified_vision', model_patch_size: 2, mm_embed_dim: 6 }, audio_config: { model_type: 'gemma4_unified_audio', hidden_size: 10 },
  };

  it('an adapter of Gemma4UnifiedForCausalLM (model.layers.N…) lands on the language model, exactly', async () => {
    const modules: Module[] = [
      ['model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj.weight', 8, H, 2],
      ['model.layers.0.self_attn.k_proj', 'model.language_model.layers.0.self_attn.k_proj.weight', 4, H, 1],
      ['model.layers.0.mlp.down_proj', 'model.language_model.layers.0.mlp.down_proj.weight', H, 12, 3],
    ];
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => [u.baseKey, u.terms[0].layout]).sort()).toEqual(modules.map(([, k]) => [k, 'vlm-checkpoint']).sort());
    expectMerged(await merge(prepared), base, adapter, modules);
  });

  it('an adapter of its own class, embedders included, lands by name; one of Gemma4ForConditionalGeneration on the language model, its tower and tower embedder refused by name', async () => {
    const own: Module[] = [
      ['model.language_model.layers.0.self_attn.v_proj', 'model.language_model.layers.0.self_attn.v_proj.weight', 4, H, 2],
      ['model.embed_vision.patch_dense', 'model.embed_vision.patch_dense.weight', 6, 12, 2],
      ['model.embed_vision.multimodal_embedder.embedding_projection', 'model.embed_vision.multimodal_embedder.embedding_projection.weight', H, 6, 1],
      ['model.embed_audio.embedding_projection', 'model.embed_audio.embedding_projection.weight', H, 10, 2],
    ];
    const adapter = loraOf(own);
    const prepared = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(own), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expectMerged(await merge(prepared), base, adapter, own);
    // Gemma 4's (E4B, 31B …) tower and its embedder's projection are no module of the unified model.
    const gemma4: Module[] = [
      ['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.q_proj.weight', 8, H, 2],
      ['model.vision_tower.encoder.layers.0.self_attn.q_proj.linear', '', 6, 6, 2],
      ['model.embed_vision.embedding_projection', '', H, 6, 2],
    ];
    const refused = await prepare(hfModelFolder(base, config), peftFolder(peftConfig(gemma4), loraOf(gemma4)));
    await refused.close();
    expect(refused.plan.problems.map((p) => p.message).sort()).toEqual([
      'adapter1: module "model.embed_vision.embedding_projection": no matching tensor in the base model',
      'adapter1: module "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear": no matching tensor in the base model',
    ]);
    expect(refused.plan.updates.map((u) => u.baseKey)).toEqual(['model.language_model.layers.0.self_attn.q_proj.weight']);
  });

  it('an adapter of the multimodal class on a text-only checkpoint (model.layers.N…) is refused module by module, saying PEFT cannot load it there', async () => {
    const text = base.filter((x) => x.name.startsWith('model.language_model.')).map((x) => ({ ...x, name: x.name.replace('model.language_model.', 'model.') }));
    const modules: Module[] = [
      ['model.language_model.layers.0.self_attn.q_proj', '', 8, H, 2],
      ['model.vision_tower.encoder.layers.0.self_attn.q_proj.linear', '', 6, 6, 2],
      ['model.embed_audio.embedding_projection', '', H, 10, 2],
    ];
    for (const [architecture, modelType] of [['Gemma4UnifiedForCausalLM', 'gemma4_unified_text'], ['Gemma4ForCausalLM', 'gemma4_text']]) {
      const prepared = await prepare(hfModelFolder(text, { ...config.text_config, architectures: [architecture], model_type: modelType, dtype: 'bfloat16' }), peftFolder(peftConfig(modules), loraOf(modules)));
      await prepared.close();
      expect(prepared.plan.updates).toEqual([]);
      expect(prepared.plan.problems.map((p) => p.message).sort()).toEqual([
      `adapter1: module "model.embed_audio.embedding_projection": Gemma 4's model.embed_audio is no part of a text-only ${architecture} checkpoint, which holds the language model alone: merge it into the multimodal checkpoint`,
      `adapter1: module "model.language_model.layers.0.self_attn.q_proj": a module of Gemma 4's multimodal class (model.language_model.…) on a text-only ${architecture} checkpoint (model.layers.N…), where PEFT cannot load it (the class has no _checkpoint_conversion_mapping and transformers' conversion_mapping.py no Gemma 4 entry, so the key stays unloaded): merge it into the multimodal checkpoint`,
      `adapter1: module "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear": Gemma 4's model.vision_tower is no part of a text-only ${architecture} checkpoint, which holds the language model alone: merge it into the multimodal checkpoint`,
      ]);
    }
  });

  it('the bare Gemma4UnifiedModel (language_model.…, embed_vision.… at the root): adapters of the text class, of the multimodal class and of its own land, exactly; a tower and the head are refused', async () => {
    const bare = base.map((x) => ({ ...x, name: x.name.slice('model.'.length) }));
    const bareConfig = { ...config, architectures: ['Gemma4UnifiedModel'] };
    const modules: Module[] = [
      ['model.layers.0.self_attn.q_proj', 'language_model.layers.0.self_attn.q_proj.weight', 8, H, 2],
      ['model.language_model.layers.0.self_attn.k_proj', 'language_model.layers.0.self_attn.k_proj.weight', 4, H, 1],
      ['language_model.layers.0.mlp.down_proj', 'language_model.layers.0.mlp.down_proj.weight', H, 12, 3],
      ['model.embed_vision.patch_dense', 'embed_vision.patch_dense.weight', 6, 12, 2],
      ['embed_audio.embedding_projection', 'embed_audio.embedding_projection.weight', H, 10, 2],
    ];
    const adapter = loraOf(modules);
    const prepared = await prepare(hfModelFolder(bare, bareConfig), peftFolder(peftConfig(modules), adapter));
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual(modules.map(([, k]) => k).sort());
    expectMerged(await merge(prepared), bare, adapter, modules);
    const refusedModules: Module[] = [['model.vision_tower.encoder.layers.0.self_attn.q_proj.linear', '', 6, 6, 2], ['lm_head', '', 32, H, 2]];
    const refused = await prepare(hfModelFolder(bare, bareConfig), peftFolder(peftConfig(refusedModules), loraOf(refusedModules)));
    await refused.close();
    expect(refused.plan.problems.map((p) => p.message).sort()).toEqual([
      'adapter1: module "lm_head": no matching tensor in the base model',
      'adapter1: module "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear": no matching tensor in the base model',
    ]);
  });
});
