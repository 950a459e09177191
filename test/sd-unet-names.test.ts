/**
 * diffusers → LDM names of the SD1/SD2 UNet, checked against pairs written out by hand from the two
 * layouts (diffusers' UNet2DConditionModel and the original checkpoint's input/middle/output blocks).
 */
import { describe, expect, it } from 'vitest';
import { diffusersUnetName, ldmUnetNames } from '../src/formats/layouts/sd-ldm-unet.js';

const flat = (dotted: string): string => dotted.replaceAll('.', '_');

const PAIRS: Array<[string, string]> = [
  ['conv_in', 'input_blocks.0.0'],
  ['time_embedding.linear_1', 'time_embed.0'],
  ['time_embedding.linear_2', 'time_embed.2'],
  ['down_blocks.0.resnets.0.conv1', 'input_blocks.1.0.in_layers.2'],
  ['down_blocks.0.attentions.0.proj_in', 'input_blocks.1.1.proj_in'],
  ['down_blocks.0.resnets.1.time_emb_proj', 'input_blocks.2.0.emb_layers.1'],
  ['down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q', 'input_blocks.2.1.transformer_blocks.0.attn1.to_q'],
  ['down_blocks.0.downsamplers.0.conv', 'input_blocks.3.0.op'],
  ['down_blocks.1.resnets.0.conv_shortcut', 'input_blocks.4.0.skip_connection'],
  ['down_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj', 'input_blocks.5.1.transformer_blocks.0.ff.net.0.proj'],
  ['down_blocks.2.downsamplers.0.conv', 'input_blocks.9.0.op'],
  ['down_blocks.3.resnets.1.conv2', 'input_blocks.11.0.out_layers.3'],
  ['mid_block.resnets.0.norm1', 'middle_block.0.in_layers.0'],
  ['mid_block.attentions.0.transformer_blocks.0.attn2.to_k', 'middle_block.1.transformer_blocks.0.attn2.to_k'],
  ['mid_block.resnets.1.conv2', 'middle_block.2.out_layers.3'],
  ['up_blocks.0.resnets.2.conv1', 'output_blocks.2.0.in_layers.2'],
  ['up_blocks.1.resnets.0.norm2', 'output_blocks.3.0.out_layers.0'],
  ['up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0', 'output_blocks.5.1.transformer_blocks.0.attn2.to_out.0'],
  ['up_blocks.3.attentions.2.proj_out', 'output_blocks.11.1.proj_out'],
  ['conv_norm_out', 'out.0'],
  ['conv_out', 'out.2'],
];

describe('SD UNet names, diffusers → LDM', () => {
  it.each(PAIRS)('%s → %s', (diffusers, ldm) => {
    expect(ldmUnetNames(flat(diffusers))).toEqual([flat(ldm)]);
  });

  it('an upsampler sits after the resnet (index 1) or the resnet and attention (index 2)', () => {
    expect(ldmUnetNames('up_blocks_0_upsamplers_0_conv')).toEqual(['output_blocks_2_1_conv', 'output_blocks_2_2_conv']);
    expect(ldmUnetNames('up_blocks_2_upsamplers_0_conv')).toEqual(['output_blocks_8_1_conv', 'output_blocks_8_2_conv']);
  });

  it('names that are not diffusers UNet modules map to nothing', () => {
    for (const name of ['input_blocks_4_1_proj_in', 'text_model_encoder_layers_0_mlp_fc1', 'down_blocks_0_resnets_0_nonsense', 'mid_block_attention']) {
      expect(ldmUnetNames(name), name).toEqual([]);
    }
  });
});

describe('LDM/SGM → diffusers UNet names (the other way)', () => {
  it.each(PAIRS)('%s ← %s', (diffusers, ldm) => {
    expect(diffusersUnetName(flat(ldm))).toBe(flat(diffusers));
  });
  it('knows SDXL size conditioning and refuses names that are not LDM UNet names', () => {
    expect(diffusersUnetName('label_emb_0_0')).toBe('add_embedding_linear_1');
    expect(diffusersUnetName('label_emb_0_2')).toBe('add_embedding_linear_2');
    for (const name of ['input_blocks_3_0_in_layers_2', 'input_blocks_4_0_unknown', 'output_blocks_0_2_conv', 'double_blocks_0_img_attn_qkv']) {
      expect(diffusersUnetName(name), name).toBeNull();
    }
  });
});
