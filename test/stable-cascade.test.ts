/**
 * Stable Cascade LoRAs (`lora_prior_unet_` + ComfyUI's names for stage C flattened, kohya form with
 * α: OneTrainer's and the LoRAs made for ComfyUI) onto stage C as people hold it: Stability's
 * `stage_c_bf16.safetensors`, whose attentions keep q, k and v in one MultiheadAttention
 * `in_proj_weight`, and a checkpoint ComfyUI saved, which holds them split. File to file on the CPU
 * and on WebGPU, against float64 truth. Where each module lands is written here by hand from
 * ComfyUI's Stable_Cascade_C.process_unet_state_dict (in_proj rows [0, c) → to_q, [c, 2c) → to_k,
 * [2c, 3c) → to_v) and its key map (comfy/lora.py: `lora_prior_unet_` + every model key flattened).
 */
import { describe, expect, it } from 'vitest';
import { moduleAddress } from '../src/formats/module-address.js';
import { stableCascade } from '../src/formats/layouts/stable-cascade.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { rowsAt, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { STAGE_C, clipGTextTensors, stageCTensors } from './helpers/stable-cascade-fixtures.js';
import { loraCaseSuite, withoutLayout, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261204);

/** kohya form: `.lora_down/.lora_up.weight` and `.alpha`. */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha / r, extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}
const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const { c, cond, clip } = STAGE_C;
const U = 'lora_prior_unet_';

/** onto Stability's file (prefix `p`): q, k, v on thirds of in_proj_weight, the rest by name. */
const onCheckpoint = (p: string): LoraSpec[] => [
  kohya(`${U}down_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 2),
  kohya(`${U}down_blocks_1_2_attention_attn_to_k`, 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(c, c) }], 2),
  kohya(`${U}up_blocks_1_2_attention_attn_to_v`, 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.in_proj_weight`, rows: rowsAt(2 * c, c) }], 2),
  kohya(`${U}up_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}up_blocks.0.2.attention.attn.in_proj_weight`, rows: rowsAt(0, c) }], 2),
  kohya(`${U}down_blocks_0_2_attention_attn_out_proj`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.out_proj.weight` }], 2),
  kohya(`${U}up_blocks_0_2_kv_mapper_1`, 4, c, cond, [{ key: `${p}up_blocks.0.2.kv_mapper.1.weight` }], 2),
  kohya(`${U}down_blocks_1_0_channelwise_0`, 4, 4 * c, c, [{ key: `${p}down_blocks.1.0.channelwise.0.weight` }], 2),
  kohya(`${U}clip_txt_pooled_mapper`, 4, 4 * cond, clip, [{ key: `${p}clip_txt_pooled_mapper.weight` }], 2),
];
/** onto a checkpoint ComfyUI saved (q, k, v split): every module by name. */
const onComfySaved = (p: string): LoraSpec[] => [
  kohya(`${U}down_blocks_0_2_attention_attn_to_q`, 4, c, c, [{ key: `${p}down_blocks.0.2.attention.attn.to_q.weight` }], 4),
  kohya(`${U}up_blocks_1_2_attention_attn_to_v`, 4, c, c, [{ key: `${p}up_blocks.1.2.attention.attn.to_v.weight` }], 4),
  kohya(`${U}down_blocks_1_2_attention_attn_out_proj`, 4, c, c, [{ key: `${p}down_blocks.1.2.attention.attn.out_proj.weight` }], 4),
];

/** lora_prior_te_ modules onto the all-in-one file's CLIP-G (ComfyUI: `text_encoder.clip_g.transformer.`). */
const TE = 'text_encoder.clip_g.transformer.';
const onTextEncoder: LoraSpec[] = [
  kohya('lora_prior_te_text_model_encoder_layers_0_self_attn_q_proj', 2, 6, 6, [{ key: `${TE}text_model.encoder.layers.0.self_attn.q_proj.weight` }], 1),
  kohya('lora_prior_te_text_model_encoder_layers_1_mlp_fc1', 2, 24, 6, [{ key: `${TE}text_model.encoder.layers.1.mlp.fc1.weight` }], 1),
];
/** The same CLIP-G under the names ComfyUI's key map also gives it (no CLIP-L beside it): `lora_te_` and diffusers' `text_encoder.`. */
const onTextEncoderOtherNames: LoraSpec[] = [
  kohya('lora_te_text_model_encoder_layers_1_self_attn_v_proj', 2, 6, 6, [{ key: `${TE}text_model.encoder.layers.1.self_attn.v_proj.weight` }], 3),
  {
    down: 'text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_A.weight', up: 'text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_B.weight',
    r: 2, out: 6, in: 24, lands: [{ key: `${TE}text_model.encoder.layers.0.mlp.fc2.weight` }], scale: 1,
  },
];
const ALL_IN_ONE = 'stable_cascade_stage_c.safetensors';

const SC = 'stage_c_bf16.safetensors';
const CASES: LoraCase[] = [
  {
    name: 'Stable Cascade stage C, Stability\'s file (MultiheadAttention in_proj) ← lora_prior_unet_ LoRAs', layout: 'stable-cascade',
    base: file(SC, stageCTensors(rand, 'BF16')), baseName: SC,
    adapters: [
      { file: 'cascade-lora.safetensors', specs: onCheckpoint(''), weight: 1 },
      { file: 'cascade-lora-2.safetensors', specs: onCheckpoint('').slice(0, 3), weight: -0.5 },
    ],
  },
  {
    name: 'Stable Cascade stage C, a checkpoint ComfyUI saved (model.diffusion_model., q/k/v split) ← lora_prior_unet_ LoRA',
    base: file('stable_cascade_stage_c.safetensors', stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true)), baseName: 'stable_cascade_stage_c.safetensors',
    adapters: [{ file: 'cascade-lora.safetensors', specs: onComfySaved('model.diffusion_model.'), weight: 0.8 }],
  },
  {
    name: 'Stable Cascade all-in-one (ComfyUI: stage C + text_encoder.clip_g.transformer.) ← lora_prior_unet_ and lora_prior_te_ modules',
    base: file(ALL_IN_ONE, [...stageCTensors(rand, 'BF16', STAGE_C, 'model.diffusion_model.', true), ...clipGTextTensors(rand, 'BF16', TE)]), baseName: ALL_IN_ONE,
    adapters: [
      { file: 'cascade-te-lora.safetensors', specs: [...onComfySaved('model.diffusion_model.'), ...onTextEncoder], weight: 0.7 },
      { file: 'cascade-te-lora-2.safetensors', specs: onTextEncoderOtherNames, weight: -0.4 },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('Stable Cascade names', () => {
  it('lora_prior_unet_ names the diffusion model and lora_prior_te_ the text encoder (CLIP-G), as ComfyUI maps them', () => {
    expect(moduleAddress('lora_prior_unet_down_blocks_0_2_attention_attn_to_q')).toEqual({ part: 'unet', path: 'down_blocks_0_2_attention_attn_to_q', flat: true });
    expect(moduleAddress('lora_prior_te_text_model_encoder_layers_0_mlp_fc1')).toEqual({ part: 'te', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true });
  });

  it('the stable-cascade layout places q, k, v on in_proj_weight; without it those are refused', async () => {
    const k = CASES[0];
    const prepared = await prepare(k);
    expect(new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout))).has('stable-cascade')).toBe(true);
    await prepared.close();
    await withoutLayout(stableCascade, async () => {
      const p = await prepare(k);
      expect(p.plan.problems.length).toBeGreaterThan(0);
      await p.close();
    });
  });
});
