/**
 * Tensor names as the public tools write them, split into module and role by the key-form table,
 * and module names split into model part and path. Names are written out by hand from kohya
 * sd-scripts (networks/lora.py), LyCORIS (modules/*.py), diffusers (training scripts, the 0.19/0.20
 * attention processors), ai-toolkit, OneTrainer, SimpleTuner and ComfyUI (comfy/lora.py).
 */
import { describe, expect, it } from 'vitest';
import { KEY_FORMS, partnerTensorName, ROLES, splitTensorName } from '../src/formats/key-forms.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { ALGORITHMS, SHARED_ROLES } from '../src/formats/algorithms/index.js';
import { PART_ROLES } from '../src/formats/algorithms/module-parts.js';

const CASES: Array<[string, string, string]> = [
  // kohya / LyCORIS LoCon
  ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight', 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', 'down'],
  ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight', 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', 'up'],
  ['lora_te2_text_model_encoder_layers_0_self_attn_q_proj.alpha', 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 'alpha'],
  ['lora_unet_down_blocks_0_resnets_0_conv1.lora_mid.weight', 'lora_unet_down_blocks_0_resnets_0_conv1', 'mid'],
  ['lora_unet_double_blocks_0_img_attn_qkv.dora_scale', 'lora_unet_double_blocks_0_img_attn_qkv', 'dora_scale'],
  // diffusers / PEFT-style single files (diffusers trainers, ai-toolkit, SimpleTuner)
  ['transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight', 'transformer.single_transformer_blocks.0.attn.to_q', 'down'],
  ['transformer.single_transformer_blocks.0.attn.to_q.lora_magnitude_vector', 'transformer.single_transformer_blocks.0.attn.to_q', 'magnitude'],
  ['transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector.weight', 'transformer.transformer_blocks.0.attn.to_q', 'magnitude'],
  ['transformer.transformer_blocks.0.attn.to_k.lora_B.bias', 'transformer.transformer_blocks.0.attn.to_k', 'up_bias'],
  ['unet.down_blocks.1.attentions.0.proj_in.lora_B.weight', 'unet.down_blocks.1.attentions.0.proj_in', 'up'],
  ['text_encoder_2.text_model.encoder.layers.3.mlp.fc1.lora_A.default.weight', 'text_encoder_2.text_model.encoder.layers.3.mlp.fc1', 'down'],
  ['transformer_blocks.0.attn.to_k.lora_B', 'transformer_blocks.0.attn.to_k', 'up'],
  ['unet.mid_block.attentions.0.proj_out.lora.up.weight', 'unet.mid_block.attentions.0.proj_out', 'up'],
  ['text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight', 'text_encoder.text_model.encoder.layers.0.self_attn.k_proj', 'down'],
  // diffusers 0.19/0.20 attention processors
  ['unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight', 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q', 'down'],
  ['up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight', 'up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0', 'up'],
  // ComfyUI "Extract and Save Lora"
  ['diffusion_model.double_blocks.0.img_mod.lin.lora_up.weight', 'diffusion_model.double_blocks.0.img_mod.lin', 'up'],
  ['diffusion_model.final_layer.norm_final.diff', 'diffusion_model.final_layer.norm_final', 'diff'],
  ['diffusion_model.double_blocks.0.img_attn.qkv.diff_b', 'diffusion_model.double_blocks.0.img_attn.qkv', 'diff_b'],
  // LightX2V's Wan LoRAs: a diff of the block's `modulation` parameter
  ['diffusion_model.blocks.0.diff_m', 'diffusion_model.blocks.0.modulation', 'diff'],
  ['diffusion_model.head.diff_m', 'diffusion_model.head.modulation', 'diff'],
  // kohya LoRAModule with split_dims (musubi-tuner's forks): one numbered pair per part
  ['lora_unet_double_blocks_0_img_attn_qkv.lora_down.0.weight', 'lora_unet_double_blocks_0_img_attn_qkv', 'split_down_0'],
  ['lora_unet_single_blocks_0_linear1.lora_up.3.weight', 'lora_unet_single_blocks_0_linear1', 'split_up_3'],
  // LyCORIS algorithms
  ['lora_unet_mid_block_attentions_0_proj_in.hada_w1_a', 'lora_unet_mid_block_attentions_0_proj_in', 'hada_w1_a'],
  ['lora_unet_mid_block_attentions_0_proj_in.hada_t2', 'lora_unet_mid_block_attentions_0_proj_in', 'hada_t2'],
  ['lora_te1_text_model_encoder_layers_1_mlp_fc2.lokr_w1', 'lora_te1_text_model_encoder_layers_1_mlp_fc2', 'lokr_w1'],
  ['lora_te1_text_model_encoder_layers_1_mlp_fc2.lokr_w2_b', 'lora_te1_text_model_encoder_layers_1_mlp_fc2', 'lokr_w2_b'],
  ['lycoris_transformer_blocks_0_attn_to_q.lokr_t2', 'lycoris_transformer_blocks_0_attn_to_q', 'lokr_t2'],
  ['lora_unet_out_0.w_norm', 'lora_unet_out_0', 'w_norm'],
  ['lora_unet_out_0.b_norm', 'lora_unet_out_0', 'b_norm'],
  ['lora_unet_input_blocks_1_1_proj_in.a1.weight', 'lora_unet_input_blocks_1_1_proj_in', 'a1'],
  ['lora_unet_input_blocks_1_1_proj_in.b2.weight', 'lora_unet_input_blocks_1_1_proj_in', 'b2'],
  ['lora_unet_input_blocks_1_1_proj_in.oft_blocks', 'lora_unet_input_blocks_1_1_proj_in', 'oft_blocks'],
  ['lora_unet_input_blocks_1_1_proj_in.rescale', 'lora_unet_input_blocks_1_1_proj_in', 'rescale'],
  ['lora_unet_input_blocks_1_1_proj_in.on_input', 'lora_unet_input_blocks_1_1_proj_in', 'on_input'],
  ['lora_unet_input_blocks_1_1_proj_in.weight', 'lora_unet_input_blocks_1_1_proj_in', 'weight'],
];

describe('key forms', () => {
  it.each(CASES)('%s → module and role', (name, module, role) => {
    expect(splitTensorName(name)).toEqual({ module, role });
  });

  it('fits no form to names that are not adapter tensors', () => {
    for (const name of ['.weight', 'model.layers.0.q_proj.bias', 'alpha', 'x.lora_A.bias', 'something']) {
      expect(splitTensorName(name), name).toBeNull();
    }
  });

  it('names the missing partner of an up/down pair in the same form', () => {
    expect(partnerTensorName('lora_unet_a.lora_down.weight')).toBe('lora_unet_a.lora_up.weight');
    expect(partnerTensorName('t.x.to_q.lora_B.weight')).toBe('t.x.to_q.lora_A.weight');
    expect(partnerTensorName('t.x.to_q.lora_A.default.weight')).toBe('t.x.to_q.lora_B.default.weight');
    expect(partnerTensorName('u.attn1.processor.to_out_lora.up.weight')).toBe('u.attn1.processor.to_out_lora.down.weight');
    expect(partnerTensorName('u.k.lora_linear_layer.down.weight')).toBe('u.k.lora_linear_layer.up.weight');
  });

  it('every role is read by some algorithm, by every algorithm, or as a part of any module', () => {
    const read = new Set([...ALGORITHMS.flatMap((a) => a.roles), ...SHARED_ROLES, ...PART_ROLES]);
    for (const role of ROLES) expect(read.has(role), role).toBe(true);
    expect(new Set(KEY_FORMS.map((f) => f.suffix)).size).toBe(KEY_FORMS.length);
  });
});

describe('module prefixes', () => {
  it.each([
    ['lora_unet_input_blocks_4_1_proj_in', { part: 'unet', path: 'input_blocks_4_1_proj_in', flat: true }],
    ['lora_te_text_model_encoder_layers_0_mlp_fc1', { part: 'te', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true }],
    ['lora_te1_text_model_encoder_layers_0_mlp_fc1', { part: 'te1', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true }],
    ['lora_te2_text_model_encoder_layers_0_mlp_fc1', { part: 'te2', path: 'text_model_encoder_layers_0_mlp_fc1', flat: true }],
    ['lora_te3_encoder_block_0_layer_0_SelfAttention_q', { part: 'te3', path: 'encoder_block_0_layer_0_SelfAttention_q', flat: true }],
    ['lora_transformer_single_transformer_blocks_0_attn_to_q', { part: 'unet', path: 'single_transformer_blocks_0_attn_to_q', flat: true }],
    ['lycoris_transformer_blocks_0_attn_to_q', { part: 'unet', path: 'transformer_blocks_0_attn_to_q', flat: true }],
    ['unet.down_blocks.0.attentions.0.proj_in', { part: 'unet', path: 'down_blocks.0.attentions.0.proj_in', flat: false }],
    ['transformer.transformer_blocks.0.attn.to_q', { part: 'unet', path: 'transformer_blocks.0.attn.to_q', flat: false }],
    ['text_encoder.text_model.encoder.layers.0.mlp.fc1', { part: 'te1', path: 'text_model.encoder.layers.0.mlp.fc1', flat: false, anyFirstEncoder: true }],
    ['text_encoder_2.text_model.encoder.layers.0.mlp.fc1', { part: 'te2', path: 'text_model.encoder.layers.0.mlp.fc1', flat: false }],
    // ComfyUI's own key naming: algorithms whose rules differ between the tools follow ComfyUI's for it.
    ['diffusion_model.double_blocks.0.img_attn.qkv', { part: 'unet', path: 'double_blocks.0.img_attn.qkv', flat: false, comfyNaming: true }],
    ['text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1', { part: 'te1', path: 'text_model.encoder.layers.0.mlp.fc1', flat: false, comfyEncoder: 'clip_l', comfyNaming: true }],
    ['base_model.model.model.layers.0.self_attn.q_proj', { path: 'model.layers.0.self_attn.q_proj', flat: false }],
    ['double_blocks.0.img_attn.proj', { path: 'double_blocks.0.img_attn.proj', flat: false }],
  ])('%s', (name, address) => {
    expect(moduleAddress(name)).toEqual(address);
  });
});
