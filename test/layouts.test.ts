/**
 * Layouts on their own: a base's components from its real key names, which component a model part
 * names, and where modules land (PEFT paths, kohya flat names, diffusers UNet names on LDM
 * checkpoints), including a module whose prefix names one component and whose path another.
 */
import { describe, expect, it } from 'vitest';
import { baseComponents, componentForPart } from '../src/formats/base-components.js';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';

const SD1 = [
  'model.diffusion_model.input_blocks.1.1.proj_in.weight',
  'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight',
  'model.diffusion_model.input_blocks.4.0.in_layers.2.weight',
  'model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight',
  'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight',
  'cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight',
  'first_stage_model.decoder.conv_in.weight',
  'alphas_cumprod',
];
const SDXL = [
  'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight',
  'conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight',
  'conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight',
  'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight',
  'conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight',
  'first_stage_model.encoder.conv_in.weight',
];
const SD35_BUNDLE = [
  'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight',
  'text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight',
  'text_encoders.clip_g.transformer.text_model.encoder.layers.0.mlp.fc1.weight',
  'text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight',
];
const FLUX_BFL = ['double_blocks.0.img_attn.qkv.weight', 'single_blocks.0.linear1.weight', 'final_layer.linear.weight', 'img_in.weight', 'vector_in.in_layer.weight'];

const shapes = (keys: string[]) => ({ tensors: new Map(keys.map((k) => [k, { shape: [4, 4] }])) });
const names = (keys: string[], part: Parameters<typeof componentForPart>[0]) => componentForPart(part, baseComponents(keys))?.name;

describe('base components', () => {
  it('finds the denoiser, text encoders and VAE of single-file checkpoints', () => {
    expect(baseComponents(SD1).map((c) => [c.name, c.keys.length])).toEqual([
      ['the UNet/transformer (model.diffusion_model.)', 4],
      ['text encoder 1 (CLIP-L) (cond_stage_model.transformer.)', 2],
      ['the VAE (first_stage_model.)', 1],
    ]);
    expect(baseComponents(SDXL).map((c) => [c.role, c.ordinal, c.encoder, c.prefix])).toEqual([
      ['denoiser', undefined, undefined, 'model.diffusion_model.'],
      ['text-encoder', 1, 'clip_l', 'conditioner.embedders.0.transformer.'],
      ['text-encoder', 2, 'clip_g', 'conditioner.embedders.1.model.'],
      ['vae', undefined, undefined, 'first_stage_model.'],
    ]);
    // A Flux file in BFL naming is all denoiser; so is a diffusers UNet with its rarer top-level modules.
    expect(baseComponents(FLUX_BFL).map((c) => [c.role, c.keys.length])).toEqual([['denoiser', 5]]);
    expect(baseComponents(['down_blocks.0.resnets.0.conv1.weight', 'encoder_hid_proj.weight']).map((c) => c.keys.length)).toEqual([2]);
    // An LLM: nothing recognised, so parts never restrict matching.
    expect(baseComponents(['model.layers.0.self_attn.q_proj.weight', 'lm_head.weight'])).toEqual([]);
  });

  it('maps kohya, OneTrainer and diffusers parts to components', () => {
    expect(names(SD1, 'te')).toMatch(/CLIP-L/);
    expect(names(SD1, 'te1')).toMatch(/CLIP-L/);
    expect(names(SD1, 'te2')).toBeUndefined();
    expect(names(SDXL, 'te')).toMatch(/CLIP-L/);
    expect(names(SDXL, 'te2')).toMatch(/CLIP-G.*embedders\.1/);
    expect(names(SD35_BUNDLE, 'te2')).toMatch(/CLIP-G/);
    expect(names(SD35_BUNDLE, 'te3')).toMatch(/T5/);
    // OneTrainer's Flux LoRAs put T5 in te2 when there is no CLIP-G.
    expect(names(['double_blocks.0.img_attn.qkv.weight', 'text_encoders.clip_l.transformer.x.weight', 'text_encoders.t5xxl.transformer.y.weight'], 'te2')).toMatch(/T5/);
    expect(names(FLUX_BFL, 'unet')).toMatch(/UNet\/transformer/);
    expect(names(FLUX_BFL, 'te1')).toBeUndefined();
  });
});

describe('module locator', () => {
  const locate = (keys: string[], module: string) => new ModuleLocator(shapes(keys)).locate(moduleAddress(module));

  it('finds kohya flat names inside their own component only', () => {
    expect(locate(SDXL, 'lora_te1_text_model_encoder_layers_0_mlp_fc1')).toEqual({
      found: true, layout: 'kohya-flat', targets: [{ baseKey: 'conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight' }],
    });
    expect(locate(SD1, 'lora_unet_input_blocks_4_0_in_layers_2')).toMatchObject({ found: true, targets: [{ baseKey: 'model.diffusion_model.input_blocks.4.0.in_layers.2.weight' }] });
  });

  it('reads diffusers UNet names on LDM checkpoints, flat or dotted', () => {
    const want = { found: true, layout: 'sd-ldm-unet', targets: [{ baseKey: 'model.diffusion_model.input_blocks.1.1.proj_in.weight' }] };
    expect(locate(SD1, 'lora_unet_down_blocks_0_attentions_0_proj_in')).toEqual(want);
    expect(locate(SD1, 'unet.down_blocks.0.attentions.0.proj_in')).toEqual(want);
  });

  it('refuses a module whose prefix names one component and whose path lies in another', () => {
    // lora_te_ with a UNet path: its suffix is unique in the base, but it is not a text-encoder tensor.
    const wrong = locate(SD1, 'lora_te_input_blocks_1_1_proj_in');
    expect(wrong.found).toBe(false);
    if (wrong.found) return;
    expect(wrong.code).toBe('UNKNOWN_MODULE');
    expect(wrong.message).toContain('its prefix names the text encoder');
    expect(wrong.message).toContain('model.diffusion_model.input_blocks.1.1.proj_in.weight in the UNet/transformer');
    const unetForTe = locate(SD1, 'lora_unet_text_model_encoder_layers_0_mlp_fc1');
    expect(unetForTe).toMatchObject({ found: false, message: expect.stringContaining('cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight in text encoder 1') });
  });

  it('says when the base lacks the named component, and reports ambiguity instead of guessing', () => {
    expect(locate(FLUX_BFL, 'lora_te1_text_model_encoder_layers_0_mlp_fc1')).toMatchObject({
      found: false, code: 'UNKNOWN_MODULE', message: expect.stringMatching(/names text encoder 1 \(CLIP-L\), which the base does not hold \(it holds the UNet\/transformer\)/),
    });
    expect(locate(SD1, 'lora_unet_output_blocks_0_0_conv')).toMatchObject({ found: false, code: 'UNKNOWN_MODULE', message: 'no matching tensor in the UNet/transformer (model.diffusion_model.)' });
    const twice = ['a.blocks.0.proj.weight', 'b.blocks.0.proj.weight'];
    expect(locate(twice, 'blocks.0.proj')).toMatchObject({ found: false, code: 'AMBIGUOUS_MODULE', message: expect.stringContaining('matches 2 base tensors') });
  });

  it('lets parts through where the base names no components (an LLM)', () => {
    expect(locate(['model.layers.0.mlp.fc1.weight'], 'lora_te_model_layers_0_mlp_fc1')).toMatchObject({ found: true });
  });
});
