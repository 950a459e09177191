/**
 * A FLUX.1 [dev] LoRA that trained the guidance embedder (kohya's `lora_unet_guidance_in_in_layer`,
 * diffusers' `transformer.time_text_embed.guidance_embedder.linear_1`) on a FLUX.1 model without
 * one (FLUX.1 [schnell]: no guidance distillation; Chroma): refused, naming the module, what the
 * base lacks and what to do, not the bare "no matching tensor". On a [dev] base it lands.
 */
import { describe, expect, it } from 'vitest';
import { ModuleLocator } from '../src/formats/layouts/index.js';
import { moduleAddress } from '../src/formats/module-address.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, fluxDiffusersTensors, tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(1206);
const GUIDANCE = /^(model\.diffusion_model\.)?guidance_in\.|^time_text_embed\.guidance_embedder\./;
const schnellBfl = fluxBflTensors(rand, 'BF16').filter((t) => !GUIDANCE.test(t.name));
const schnellDiffusers = fluxDiffusersTensors(rand, 'BF16').filter((t) => !GUIDANCE.test(t.name));
const locator = (names: { name: string; shape: number[] }[]) => new ModuleLocator({ tensors: new Map(names.map((t) => [t.name, { shape: t.shape }])) });
const where = (l: ModuleLocator, module: string) => {
  const r = l.locate(moduleAddress(module));
  return r.found ? r.targets.map((t) => t.baseKey) : r.message;
};
const WHY = /^is FLUX\.1's guidance embedder \(guidance_in, diffusers' time_text_embed\.guidance_embedder\), which this base does not have: it is FLUX\.1 \[schnell\] or another FLUX\.1 model without guidance distillation \(Chroma\), and the LoRA was trained on a guidance-distilled one \(FLUX\.1 \[dev\], Kontext, Fill\): merge it into the model it was trained on$/;

describe('FLUX.1 guidance embedder LoRA modules', () => {
  it('are refused on FLUX.1 [schnell], BFL-named or diffusers-named, in either naming, saying why and what to do', () => {
    for (const base of [locator(schnellBfl), locator(schnellDiffusers)]) {
      for (const module of ['lora_unet_guidance_in_in_layer', 'lora_unet_guidance_in_out_layer', 'transformer.time_text_embed.guidance_embedder.linear_1', 'diffusion_model.guidance_in.out_layer']) {
        expect(where(base, module), module).toMatch(WHY);
      }
      // The other modules still land.
    }
    expect(where(locator(schnellBfl), 'lora_unet_double_blocks_0_img_attn_proj')).toEqual(['double_blocks.0.img_attn.proj.weight']);
    expect(where(locator(schnellDiffusers), 'lora_unet_double_blocks_0_img_attn_proj')).toEqual(['transformer_blocks.0.attn.to_out.0.weight']);
  });

  it('land on FLUX.1 [dev]', () => {
    expect(where(locator(fluxBflTensors(rand, 'BF16')), 'lora_unet_guidance_in_in_layer')).toEqual(['guidance_in.in_layer.weight']);
    const devDiffusers = [...schnellDiffusers, ...['linear_1', 'linear_2'].map((l) => tensor(rand, `time_text_embed.guidance_embedder.${l}.weight`, [FLUX.h, l === 'linear_1' ? FLUX.time : FLUX.h], 'BF16'))];
    expect(where(locator(devDiffusers), 'lora_unet_guidance_in_out_layer')).toEqual(['time_text_embed.guidance_embedder.linear_2.weight']);
  });

  const backends = mergeBackends({ cpu: 'default' });
  it('stop the merge with that line', async () => {
    const lora = buildSafetensors([
      tensor(rand, 'lora_unet_guidance_in_in_layer.lora_down.weight', [2, FLUX.time], 'BF16'), tensor(rand, 'lora_unet_guidance_in_in_layer.lora_up.weight', [FLUX.h, 2], 'BF16'),
      { name: 'lora_unet_guidance_in_in_layer.alpha', dtype: 'F32', shape: [], data: [2] },
      tensor(rand, 'lora_unet_double_blocks_0_img_attn_proj.lora_down.weight', [2, FLUX.h], 'BF16'), tensor(rand, 'lora_unet_double_blocks_0_img_attn_proj.lora_up.weight', [FLUX.h, 2], 'BF16'),
    ]);
    const problems = await refusalsInMemory({
      backend: backends.cpu!, base: { 'flux1-schnell.safetensors': buildSafetensors(schnellBfl) },
      adapters: [{ files: { 'flux_dev_style.safetensors': lora }, name: 'flux_dev_style.safetensors' }],
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^flux_dev_style\.safetensors: module "lora_unet_guidance_in_in_layer": is FLUX\.1's guidance embedder/);
  });
});
