/**
 * `.alpha` tensors stored as float8 (F8_E4M3, F8_E5M2). kohya's sd-scripts reads an alpha with
 * `alpha.detach().float()` and ComfyUI's load_lora with `.item()`: both take the float8 value exactly
 * (there is nothing to round: every float8 value is a double). So a kohya-named file, and a
 * diffusers-named one on any model other than FLUX.1 (the single-file rule, as ComfyUI applies it),
 * merge at scale = α/r with α the float8 value. diffusers' FLUX.1 loader keeps the alpha as a float8
 * tensor and PEFT divides it by the rank (`lora_alpha / r`), which torch does not implement for
 * float8: that file is refused read alone and on a FLUX.1 base (on the bases sharing FLUX.1's names it
 * takes the single-file rule: flux1-refusals-by-base.test.ts). The alpha bytes are written by hand here (not by the fixture
 * encoder), with their values worked out below.
 */
import { describe, expect, it } from 'vitest';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { parseSingleFileAdapter } from '../src/formats/single-file-adapter.js';
import { bytesSource } from '../src/io/memory-source.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './helpers/merge-backends.js';

const rand = seededRandom(20261207);

/** E4M3 0x55 = 0 1010 101: 2^(10-7) · (1 + 5/8) = 13. */
const E4M3_13 = { dtype: 'F8_E4M3', byte: 0x55, value: 13 } as const;
/** E4M3 0x03 = 0 0000 011, a subnormal: 2^(1-7) · 3/8 = 3/512. */
const E4M3_SUBNORMAL = { dtype: 'F8_E4M3', byte: 0x03, value: 3 / 512 } as const;
/** E5M2 0x36 = 0 01101 10: 2^(13-15) · (1 + 2/4) = 0.375. */
const E5M2_0375 = { dtype: 'F8_E5M2', byte: 0x36, value: 0.375 } as const;
type F8Alpha = typeof E4M3_13 | typeof E4M3_SUBNORMAL | typeof E5M2_0375;

function alphaTensor(name: string, alpha: F8Alpha): FixtureTensor {
  return { name, dtype: alpha.dtype, shape: [], data: Uint8Array.of(alpha.byte) };
}

async function parse(tensors: FixtureTensor[]) {
  const file = await openSafetensors(bytesSource(buildSafetensors(tensors), 'f8_alpha.safetensors'));
  return parseSingleFileAdapter('f8_alpha.safetensors', file);
}

/** SD 1.5's first transformer's proj_in (a 1×1 conv, 320 channels) in kohya's names. */
const KOHYA = 'lora_unet_down_blocks_0_attentions_0_proj_in';
function kohyaLora(r: number, alpha: F8Alpha): FixtureTensor[] {
  return [
    tensor(rand, `${KOHYA}.lora_down.weight`, [r, 320, 1, 1], 'F32', 0.1), tensor(rand, `${KOHYA}.lora_up.weight`, [320, r, 1, 1], 'F32', 0.1),
    alphaTensor(`${KOHYA}.alpha`, alpha),
  ];
}

describe('float8 .alpha tensors', () => {
  it('takes a kohya file\'s float8 alpha at its exact value (α/r)', async () => {
    for (const [alpha, r] of [[E4M3_13, 16], [E5M2_0375, 4], [E4M3_SUBNORMAL, 4]] as const) {
      const [module] = (await parse(kohyaLora(r, alpha))).modules;
      expect(module.alpha, alpha.dtype).toBe(alpha.value);
      expect(module.scale, alpha.dtype).toBe(alpha.value / r);
    }
  });

  it('takes a diffusers-named SDXL file\'s float8 alpha at its exact value, as ComfyUI does', async () => {
    // SDXL's down_blocks.1 transformers are 640 wide, proj_in a Linear.
    const m = 'unet.down_blocks.1.attentions.0.proj_in';
    const [module] = (await parse([
      tensor(rand, `${m}.lora_A.weight`, [8, 640], 'F32', 0.1), tensor(rand, `${m}.lora_B.weight`, [640, 8], 'F32', 0.1), alphaTensor(`${m}.alpha`, E5M2_0375),
    ])).modules;
    expect([module.alpha, module.scale]).toEqual([0.375, 0.375 / 8]);
  });

  it('refuses a float8 alpha in a FLUX.1 file in diffusers\' names, whose loader cannot divide it', async () => {
    const m = 'transformer.single_transformer_blocks.0.attn.to_q';
    const message = await parse([
      tensor(rand, `${m}.lora_A.weight`, [4, 3072], 'F32', 0.1), tensor(rand, `${m}.lora_B.weight`, [3072, 4], 'F32', 0.1), alphaTensor(`${m}.alpha`, E4M3_13),
    ]).then(() => 'parsed', (e: Error) => e.message);
    expect(message).toBe('f8_alpha.safetensors: tensor "transformer.single_transformer_blocks.0.attn.to_q.alpha" is an alpha of dtype F8_E4M3: diffusers\' FluxLoraLoaderMixin keeps each alpha as the tensor it is and PEFT divides it by the rank in that dtype (lora_alpha / r), a division torch does not implement for float8 tensors, so diffusers cannot load this file; not supported — store the file\'s alphas as F32');
  });

  const backends = mergeBackends({ cpu: 'default' });
  it('merges W + (13/16)·up·down for an E4M3 alpha of 13 at rank 16', async () => {
    const base = [tensor(rand, 'model.diffusion_model.input_blocks.1.1.proj_in.weight', [320, 320, 1, 1], 'F32')];
    const lora = kohyaLora(16, E4M3_13);
    const { tensors: out } = await mergeInMemory({ backend: backends.cpu!, base: { 'sd15.safetensors': buildSafetensors(base) }, adapters: [{ files: { 'f8_alpha.safetensors': buildSafetensors(lora) } }] });
    const values = (name: string) => Array.from([...base, ...lora].find((t) => t.name === name)!.data as ArrayLike<number>);
    const w = values('model.diffusion_model.input_blocks.1.1.proj_in.weight'), down = values(`${KOHYA}.lora_down.weight`), up = values(`${KOHYA}.lora_up.weight`);
    const got = out.get('model.diffusion_model.input_blocks.1.1.proj_in.weight')!.values;
    let worst = 0;
    for (let o = 0; o < 320; o += 29) for (let i = 0; i < 320; i += 31) {
      let d = 0;
      for (let k = 0; k < 16; k++) d += up[o * 16 + k] * down[k * 320 + i];
      worst = Math.max(worst, Math.abs(got[o * 320 + i] - (w[o * 320 + i] + (13 / 16) * d)));
    }
    expect(worst).toBeLessThan(1e-6);
  });
});
