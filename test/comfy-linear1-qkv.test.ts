/**
 * ComfyUI's `single_blocks.N.linear1_qkv` LoRA name, as a file saved after ComfyUI's USO conversion
 * holds it (comfy/lora_convert.py convert_uso_lora: `diffusion_model.` + the processor names renamed,
 * `.down/.up.weight` → `.lora_down/.lora_up.weight`, no α, so scale 1), onto the Flux-family bases
 * people hold, against float64 truth on the CPU and on WebGPU. Where each module lands is written
 * here by hand from ComfyUI's key map (comfy/lora.py model_lora_keys_unet, on comfy.model_base.Flux
 * and its subclasses Chroma and Flux2: `diffusion_model.single_blocks.N.linear1_qkv` → rows
 * [0, 3·hidden_size) of `single_blocks.N.linear1`, hidden_size being linear1's input width) and from
 * diffusers' conversions (FLUX.1 / Chroma: linear1 = to_q, to_k, to_v, proj_mlp, h rows each and 4h;
 * FLUX.2: linear1 = attn.to_qkv_mlp_proj whole). Also onto a FLUX.1 GGUF as ComfyUI-GGUF writes it
 * (Q8_0, BFL names), checked up to one requantization.
 */
import { describe, expect, it } from 'vitest';
import { comfyLinear1Qkv } from '../src/formats/layouts/comfy-linear1-qkv.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, fluxDiffusersTensors, rowsAt, rowsFrom, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { CHROMA, FLUX2, chromaBflTensors, flux2BflTensors, flux2DiffusersTensors } from './helpers/dit-fixtures.js';
import { hunyuanOriginalTensors } from './helpers/hunyuan-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase } from './helpers/lora-case.js';
import { buildGguf, randomTensors, readGguf, tensorValues, type MetaValue } from './helpers/gguf-builder.js';
import { mergeBackends, mergeFileInMemory } from './helpers/merge-backends.js';
import { expectQ8Near } from './helpers/merge-truth.js';

const rand = seededRandom(20261205);

/** ComfyUI's converted form: `diffusion_model.<name>.lora_down/.lora_up.weight`, no `.alpha` (scale 1). */
function comfy(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands']): LoraSpec {
  return { down: `diffusion_model.${name}.lora_down.weight`, up: `diffusion_model.${name}.lora_up.weight`, r, out, in: inF, lands, scale: 1 };
}
const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const folder = (className: string, tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: className }),
});
const { h } = FLUX;

/** onto BFL's FLUX.1 names under `p`: linear1_qkv on linear1's first 3h rows (of 7h), the rest whole. */
const onFluxBfl = (p: string, hh = h): LoraSpec[] => [
  comfy('single_blocks.0.linear1_qkv', 4, 3 * hh, hh, [{ key: `${p}single_blocks.0.linear1.weight`, rows: rowsAt(0, 3 * hh) }]),
  comfy('single_blocks.1.linear1_qkv', 4, 3 * hh, hh, [{ key: `${p}single_blocks.1.linear1.weight`, rows: rowsAt(0, 3 * hh) }]),
  comfy('single_blocks.1.linear2', 4, hh, 5 * hh, [{ key: `${p}single_blocks.1.linear2.weight` }]),
  comfy('double_blocks.0.img_attn.qkv', 4, 3 * hh, hh, [{ key: `${p}double_blocks.0.img_attn.qkv.weight` }]),
];
/** The same file onto diffusers' FluxTransformer2DModel: q, k, v rows of ΔW on to_q, to_k, to_v. */
const onFluxDiffusers: LoraSpec[] = [
  comfy('single_blocks.0.linear1_qkv', 4, 3 * h, h, ['to_q', 'to_k', 'to_v'].map((t, i) => ({ key: `single_transformer_blocks.0.attn.${t}.weight`, rows: rowsFrom(i * h, h) }))),
  comfy('single_blocks.1.linear1_qkv', 4, 3 * h, h, ['to_q', 'to_k', 'to_v'].map((t, i) => ({ key: `single_transformer_blocks.1.attn.${t}.weight`, rows: rowsFrom(i * h, h) }))),
  comfy('single_blocks.1.linear2', 4, h, 5 * h, [{ key: 'single_transformer_blocks.1.proj_out.weight' }]),
  comfy('double_blocks.0.img_attn.qkv', 4, 3 * h, h, ['to_q', 'to_k', 'to_v'].map((t, i) => ({ key: `transformer_blocks.0.attn.${t}.weight`, rows: rowsFrom(i * h, h) }))),
];
/** FLUX.2: linear1 is 3h q, k, v rows then 6h SwiGLU rows; linear1_qkv takes the first 3h, in either naming. */
const onFlux2 = (key: (i: number) => string): LoraSpec[] => [0, 1].map((i) => comfy(`single_blocks.${i}.linear1_qkv`, 4, 3 * FLUX2.h, FLUX2.h, [{ key: key(i), rows: rowsAt(0, 3 * FLUX2.h) }]));

const cm = 'model.diffusion_model.';
const CASES: LoraCase[] = [
  {
    name: 'FLUX.1-dev, BFL\'s file (flux1-dev.safetensors) ← two LoRAs saved after ComfyUI\'s USO conversion (linear1_qkv)', layout: 'comfy-linear1-qkv',
    base: file('flux1-dev.safetensors', fluxBflTensors(rand, 'BF16')), baseName: 'flux1-dev.safetensors',
    adapters: [
      { file: 'uso-comfy.safetensors', specs: onFluxBfl(''), weight: 1 },
      { file: 'uso-comfy-2.safetensors', specs: onFluxBfl('').slice(0, 2), weight: -0.5 },
    ],
  },
  {
    name: 'FLUX.1, diffusers FluxTransformer2DModel ← the same (linear1_qkv on to_q, to_k, to_v)', layout: 'comfy-linear1-qkv',
    base: folder('FluxTransformer2DModel', fluxDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'uso-comfy.safetensors', specs: onFluxDiffusers, weight: 0.8 }],
  },
  {
    name: 'Chroma, Comfy-Org\'s file (model.diffusion_model.) ← linear1_qkv', layout: 'comfy-linear1-qkv',
    base: file('chroma1-hd.safetensors', chromaBflTensors(rand, 'BF16', CHROMA, cm)), baseName: 'chroma1-hd.safetensors',
    adapters: [{ file: 'uso-comfy.safetensors', specs: onFluxBfl(cm, CHROMA.h).slice(0, 2), weight: 0.7 }],
  },
  {
    name: 'FLUX.2-dev, Comfy-Org\'s file (model.diffusion_model.) ← linear1_qkv on linear1\'s first 3h of 9h rows', layout: 'comfy-linear1-qkv',
    base: file('flux2-dev.safetensors', flux2BflTensors(rand, 'BF16', FLUX2, cm)), baseName: 'flux2-dev.safetensors',
    adapters: [{ file: 'uso-comfy.safetensors', specs: onFlux2((i) => `${cm}single_blocks.${i}.linear1.weight`), weight: 1 }],
  },
  {
    name: 'FLUX.2-dev, diffusers Flux2Transformer2DModel ← linear1_qkv on attn.to_qkv_mlp_proj\'s first 3h rows', layout: 'comfy-linear1-qkv',
    base: folder('Flux2Transformer2DModel', flux2DiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'uso-comfy.safetensors', specs: onFlux2((i) => `single_transformer_blocks.${i}.attn.to_qkv_mlp_proj.weight`), weight: -1 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('ComfyUI\'s linear1_qkv', () => {
  it('the comfy-linear1-qkv layout places them; without it they are refused', async () => {
    for (const k of [CASES[0], CASES[1], CASES[3]]) {
      const prepared = await prepare(k);
      expect(new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout))).has('comfy-linear1-qkv')).toBe(true);
      await prepared.close();
      await withoutLayout(comfyLinear1Qkv, async () => {
        const p = await prepare(k);
        expect(p.plan.problems.map((x) => x.message).filter((m) => m.includes('linear1_qkv')).length).toBeGreaterThan(0);
        await p.close();
      });
    }
  });

  it('refused in one line each: on a HunyuanVideo base, past the last block, and with ΔW rows that are not q, k and v', async () => {
    const hunyuan = await planProblemsOf(file('hunyuan_video_t2v_720p_bf16.safetensors', hunyuanOriginalTensors(rand, 'BF16')), 'hunyuan_video_t2v_720p_bf16.safetensors',
      [comfy('single_blocks.0.linear1_qkv', 2, 24, 8, [])], rand);
    expect(hunyuan).toEqual([
      'lora.safetensors: module "diffusion_model.single_blocks.0.linear1_qkv": is ComfyUI\'s name for the q, k, v rows of a Flux single block\'s linear1, which ComfyUI reads only on FLUX.1, Chroma and FLUX.2; the base is a Hunyuan DiT',
    ]);
    const flux = await planProblemsOf(file('flux1-dev.safetensors', fluxBflTensors(rand, 'BF16')), 'flux1-dev.safetensors', [
      comfy('single_blocks.2.linear1_qkv', 2, 3 * h, h, []),
      comfy('single_blocks.0.linear1_qkv', 2, 7 * h, h, []),
    ], rand);
    expect(flux).toEqual([
      'lora.safetensors: module "diffusion_model.single_blocks.2.linear1_qkv": no matching tensor in the UNet/transformer',
      'lora.safetensors: module "diffusion_model.single_blocks.0.linear1_qkv": ΔW (56, 8) does not fit where comfy-linear1-qkv puts it (rows 0–23 of single_blocks.0.linear1.weight): ΔW rows 24–55 land nowhere',
    ]);
    for (const m of [...hunyuan, ...flux]) expect(m).not.toContain('\n');
  });

  it('refuses a bias change beside it in one line, on FLUX.1 (BFL and diffusers) and FLUX.2: ComfyUI, its one reader, never loads it', async () => {
    // comfy/lora.py files `linear1_qkv.diff_b` under the bias of its (key, offset) pair cut short,
    // which is no tensor of the model, and logs it NOT LOADED: the weight change alone is what ComfyUI applies.
    const withBias = (out: number, inF: number): LoraSpec[] => [{
      ...comfy('single_blocks.0.linear1_qkv', 2, out, inF, []), extra: [{ name: 'diffusion_model.single_blocks.0.linear1_qkv.diff_b', dtype: 'BF16', shape: [out], data: Array.from({ length: out }, (_, i) => i / 64) }],
    }];
    const line = 'lora.safetensors: module "diffusion_model.single_blocks.0.linear1_qkv": has diffusion_model.single_blocks.0.linear1_qkv.diff_b, a change of its bias, but ComfyUI, the one tool that reads the name linear1_qkv, leaves a bias change there unloaded (it logs the patch as NOT LOADED), so it cannot be merged as ComfyUI applies it: remove the bias tensor to merge the weight change alone';
    expect(await planProblemsOf(file('flux1-dev.safetensors', fluxBflTensors(rand, 'BF16')), 'flux1-dev.safetensors', withBias(3 * h, h), rand)).toEqual([line]);
    expect(await planProblemsOf(folder('FluxTransformer2DModel', fluxDiffusersTensors(rand, 'BF16')), 'transformer', withBias(3 * h, h), rand)).toEqual([line]);
    expect(await planProblemsOf(file('flux2-dev.safetensors', flux2BflTensors(rand, 'BF16')), 'flux2-dev.safetensors', withBias(3 * FLUX2.h, FLUX2.h), rand)).toEqual([line]);
    // Without the bias tensor the same module is merged.
    expect(await planProblemsOf(file('flux1-dev.safetensors', fluxBflTensors(rand, 'BF16')), 'flux1-dev.safetensors', [comfy('single_blocks.0.linear1_qkv', 2, 3 * h, h, [])], rand)).toEqual([]);
  });
});

describe('a FLUX.1 GGUF (ComfyUI-GGUF, Q8_0) with a linear1_qkv LoRA', () => {
  // ComfyUI-GGUF's converter keeps BFL's names; ne is the torch shape reversed: linear1 (7h, h) is ne [h, 7h].
  const H = 64, R = 4;
  const LINEAR1 = 'single_blocks.0.linear1.weight';
  const specs = [
    { name: 'img_in.weight', ne: [64, H], type: 'F32' }, { name: 'img_in.bias', ne: [H], type: 'F32' },
    { name: 'double_blocks.0.img_attn.qkv.weight', ne: [H, 3 * H], type: 'Q8_0' },
    { name: 'double_blocks.0.img_attn.norm.query_norm.scale', ne: [H / 4], type: 'F32' },
    { name: LINEAR1, ne: [H, 7 * H], type: 'Q8_0' }, { name: 'single_blocks.0.linear1.bias', ne: [7 * H], type: 'F32' },
    { name: 'single_blocks.0.linear2.weight', ne: [5 * H, H], type: 'Q8_0' },
    { name: 'final_layer.linear.weight', ne: [H, 64], type: 'F32' },
  ];
  const seeded = seededRandom(99);
  const g = () => Math.sqrt(-2 * Math.log(Math.max(seeded(), 1e-12))) * Math.cos(2 * Math.PI * seeded());
  const { tensors, values } = randomTensors(specs, g);
  const str = (value: string): MetaValue => ({ type: 'string', value });
  const u32 = (value: number): MetaValue => ({ type: 'u32', value });
  const base = buildGguf({ metadata: [['general.architecture', str('flux')], ['general.quantization_version', u32(2)], ['general.file_type', u32(7)]], tensors });
  const down = Float64Array.from({ length: R * H }, () => Math.fround(0.15 * g()));
  const up = Float64Array.from({ length: 3 * H * R }, () => Math.fround(0.15 * g()));
  const lora = {
    'uso-comfy.safetensors': buildSafetensors([
      { name: 'diffusion_model.single_blocks.0.linear1_qkv.lora_down.weight', dtype: 'F32', shape: [R, H], data: down },
      { name: 'diffusion_model.single_blocks.0.linear1_qkv.lora_up.weight', dtype: 'F32', shape: [3 * H, R], data: up },
    ]),
  };
  // linear1's rows [0, 3h) get up·down (scale 1: no α), rows [3h, 7h) stay.
  const want = values.get(LINEAR1)!.slice();
  for (let o = 0; o < 3 * H; o++) for (let k = 0; k < R; k++) for (let i = 0; i < H; i++) want[o * H + i] += up[o * R + k] * down[k * H + i];
  const backends = mergeBackends({ cpu: 'default' });

  it.for(['cpu', 'webgpu'])('merges into linear1\'s q, k, v rows and keeps Q8_0, on %s', async (name, ctx) => {
    const backend = backends[name];
    if (!backend) return ctx.skip();
    const { bytes } = await mergeFileInMemory({ backend, base: { 'flux1-dev-Q8_0.gguf': base }, adapters: [{ files: lora, name: 'lora0' }], slabBytes: 2048 });
    const out = readGguf(bytes);
    expectQ8Near(tensorValues('Q8_0', out.tensors.find((t) => t.name === LINEAR1)!.data), want, LINEAR1);
  });
});
