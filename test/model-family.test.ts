/**
 * The guess of what kind of model an adapter is for, which the page words a plan's errors with: a
 * Flux LoRA in ComfyUI's names (`diffusion_model.` + BFL's) and BFL's control LoRA, whose modules
 * are named so, are for a diffusion transformer; an SDXL LoRA in ComfyUI's names is for a UNet.
 */
import { describe, expect, it } from 'vitest';
import { familyMismatch, guessModelFamily } from '../src/plan/model-family.js';
import { fluxLinears, fluxNorms } from './helpers/flux-control-fixtures.js';

const fluxBase = [...fluxLinears().flatMap(([m]) => [`${m}.weight`, `${m}.bias`]), ...fluxNorms()];

describe('model family of an adapter', () => {
  it('a control LoRA\'s modules (diffusion_model. + BFL names) are a diffusion transformer\'s: no mismatch with flux1-dev', () => {
    const modules = [...fluxLinears().map(([m]) => `diffusion_model.${m}`), ...fluxNorms()];
    expect(guessModelFamily(modules)).toBe('diffusion transformer');
    expect(familyMismatch('flux1-canny-dev-lora.safetensors', modules, fluxBase)).toBeUndefined();
  });

  it('an SDXL LoRA in ComfyUI\'s names on flux1-dev is a UNet\'s, named as such', () => {
    const modules = ['diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q', 'diffusion_model.output_blocks.1.1.proj_out', 'diffusion_model.middle_block.1.proj_in'];
    expect(familyMismatch('sdxl.safetensors', modules, fluxBase)).toBe('sdxl.safetensors: this adapter is for a diffusion UNet, but the base is a diffusion transformer; pick the base it was trained on');
  });
});
