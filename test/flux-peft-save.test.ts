/**
 * fal's FLUX.1 Kontext LoRAs: one .safetensors of PEFT keys (`base_model.model.` + BFL names,
 * `lora_A`/`lora_B`, no α, no adapter_config.json). diffusers reads them without a config
 * (_convert_fal_kontext_lora_to_diffusers; its FLUX.2 loader turns `base_model.model.` into
 * `diffusion_model.` likewise) at α = r: scale 1. Onto a BFL file (Comfy-Org's fp8 Kontext) by
 * name, and onto diffusers' FluxTransformer2DModel as flux-bfl places BFL names, against float64
 * truth on the CPU and on WebGPU; a FLUX.2 PEFT save likewise. A lone `base_model.model.` file of any other model is still
 * refused: its α is in the config it lacks.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, fluxDiffusersTensors, loraTensors, rowsFrom, swappedHalves, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { FLUX2, flux2BflTensors } from './helpers/dit-fixtures.js';
import { loraCaseSuite, type LoraCase } from './helpers/lora-case.js';
import { mergeBackends, refusalsInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(20261207);
const { h } = FLUX;
const H2 = FLUX2.h;
const P = 'base_model.model.';

const peft = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands']): LoraSpec =>
  ({ down: `${P}${name}.lora_A.weight`, up: `${P}${name}.lora_B.weight`, r, out, in: inF, lands, scale: 1 });

/** fal's modules, landing on BFL names (`bfl`) or diffusers' (the rows flux-bfl gives them). */
function falKontext(bfl: boolean): LoraSpec[] {
  const DB = (i: number, rest: string) => `double_blocks.${i}.${rest}.weight`;
  const SB = (i: number, rest: string) => `single_blocks.${i}.${rest}.weight`;
  const T = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
  const S = (i: number, rest: string) => `single_transformer_blocks.${i}.${rest}.weight`;
  return [
    peft('double_blocks.0.img_attn.qkv', 4, 3 * h, h, bfl ? [{ key: DB(0, 'img_attn.qkv') }]
      : [{ key: T(0, 'attn.to_q'), rows: rowsFrom(0, h) }, { key: T(0, 'attn.to_k'), rows: rowsFrom(h, h) }, { key: T(0, 'attn.to_v'), rows: rowsFrom(2 * h, h) }]),
    peft('double_blocks.1.txt_mod.lin', 4, 6 * h, h, [{ key: bfl ? DB(1, 'txt_mod.lin') : T(1, 'norm1_context.linear') }]),
    peft('double_blocks.1.img_mlp.2', 4, h, 4 * h, [{ key: bfl ? DB(1, 'img_mlp.2') : T(1, 'ff.net.2') }]),
    peft('single_blocks.0.linear2', 4, h, 5 * h, [{ key: bfl ? SB(0, 'linear2') : S(0, 'proj_out') }]),
    peft('final_layer.adaLN_modulation.1', 4, 2 * h, h, [bfl ? { key: 'final_layer.adaLN_modulation.1.weight' } : { key: 'norm_out.linear.weight', rows: swappedHalves(h) }]),
    peft('img_in', 4, h, FLUX.inChannels, [{ key: bfl ? 'img_in.weight' : 'x_embedder.weight' }]),
  ];
}

const KONTEXT = 'flux1-kontext-dev-fp8-e4m3fn.safetensors';
const CASES: LoraCase[] = [
  {
    name: 'FLUX.1 Kontext, an fp8 BFL file ← fal\'s Kontext LoRA (base_model.model. + BFL names, no config: scale 1)',
    base: { [KONTEXT]: buildSafetensors(fluxBflTensors(rand, 'F8_E4M3')) }, baseName: KONTEXT,
    adapters: [{ file: 'kontext-lora.safetensors', specs: falKontext(true), weight: 1 }],
  },
  {
    name: 'diffusers FluxTransformer2DModel ← the same LoRA (qkv split into to_q/to_k/to_v, the final modulation\'s halves swapped)',
    base: { 'diffusion_pytorch_model.safetensors': buildSafetensors(fluxDiffusersTensors(rand, 'BF16')), 'config.json': JSON.stringify({ _class_name: 'FluxTransformer2DModel' }) },
    baseName: 'transformer', adapters: [{ file: 'kontext-lora.safetensors', specs: falKontext(false), weight: 0.75 }],
  },
  {
    name: 'FLUX.2 klein, a BFL file ← a lone PEFT save in BFL names (its shared modulations, a fused single block)',
    base: { 'flux-2-klein-4b.safetensors': buildSafetensors(flux2BflTensors(rand, 'BF16')) }, baseName: 'flux-2-klein-4b.safetensors',
    adapters: [{
      file: 'klein-lora.safetensors', weight: 1.2, specs: [
        peft('double_stream_modulation_img.lin', 2, 6 * H2, H2, [{ key: 'double_stream_modulation_img.lin.weight' }]),
        peft('single_blocks.1.linear1', 2, 9 * H2, H2, [{ key: 'single_blocks.1.linear1.weight' }]),
        peft('double_blocks.0.txt_attn.proj', 2, H2, H2, [{ key: 'double_blocks.0.txt_attn.proj.weight' }]),
      ],
    }],
  },
];

loraCaseSuite(CASES, rand, 'BF16');

describe('a lone PEFT save of another model', () => {
  it('is refused, saying its config is missing', async () => {
    const lora = buildSafetensors(loraTensors(rand, [
      { down: `${P}model.layers.0.self_attn.q_proj.lora_A.weight`, up: `${P}model.layers.0.self_attn.q_proj.lora_B.weight`, r: 2, out: 8, in: 8, lands: [], scale: 1 },
    ], 'BF16'));
    const problems = await refusalsInMemory({
      backend: mergeBackends({ cpu: 'default' }).cpu!, base: { [KONTEXT]: buildSafetensors(fluxBflTensors(rand, 'BF16')) }, adapters: [{ files: { 'adapter_model.safetensors': lora } }],
    });
    expect(problems).toEqual([expect.stringMatching(/looks like a PEFT adapter but adapter_config\.json is missing \(it holds r and lora_alpha\)/)]);
  });
});
