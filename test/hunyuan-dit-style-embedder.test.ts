/**
 * HunyuanDiT v1.0/v1.1's style embedder (Tencent's `style_embedder`, an Embedding of one row and
 * hidden-size columns; diffusers' `time_extra_emb.style_embedder` when the transformer's config has
 * `use_style_cond_and_image_meta_size`), in either naming onto the other, against float64 truth on the
 * CPU and on WebGPU. Where each module lands is written here by hand from diffusers'
 * scripts/convert_hunyuandit_to_diffusers.py (`time_extra_emb.style_embedder.weight` =
 * `style_embedder.weight[0:1]`, all of its one row; `extra_embedder.0` → `time_extra_emb.extra_embedder.linear_1`).
 * The LoRA on the Embedding is the up/down pair ComfyUI applies to any weight of its shape
 * (lora_up (1, r) · lora_down (r, hidden)), as its "Extract and Save Lora" writes it (rank ≤ 1 here).
 * v1.1's extra embedder takes the pooled text, six 256-wide size embeddings and the style embedding
 * (1024 + 6·256 + 1408 inputs; here text + 6·freq + dim).
 */
import { describe, expect, it } from 'vitest';
import { hunyuanDit } from '../src/formats/layouts/hunyuan-dit.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { HUNYUAN_DIT, hunyuanDitDiffusersTensors, hunyuanDitOriginalTensors, type HunyuanDitDims } from './helpers/auraflow-pixart-fixtures.js';
import { loraCaseSuite, planProblemsOf, withoutLayout, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261206);

/** kohya / ComfyUI form: `.lora_down/.lora_up.weight`, `.alpha` when given (else scale 1). */
function kohya(name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha?: number): LoraSpec {
  return {
    down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands,
    scale: alpha === undefined ? 1 : alpha / r, extra: alpha === undefined ? [] : [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
  };
}

const V11: HunyuanDitDims = { ...HUNYUAN_DIT, extra: HUNYUAN_DIT.text + 6 * HUNYUAN_DIT.freq + HUNYUAN_DIT.dim };
const { dim: y, extra } = V11;
const cm = 'model.diffusion_model.';
const HY11 = 'hunyuan_dit_1.1.safetensors';
/** ComfyUI's hunyuan_dit_1.1.safetensors: Tencent's names under model.diffusion_model., fp16, with the style embedder. */
const original11 = () => ({ [HY11]: buildSafetensors([...hunyuanDitOriginalTensors(rand, 'F16', V11, cm), tensor(rand, `${cm}style_embedder.weight`, [1, y], 'F16')]) });
/** diffusers' HunyuanDiT2DModel of Tencent-Hunyuan/HunyuanDiT-v1.1-Diffusers (`transformer/`). */
const diffusers11 = () => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors([...hunyuanDitDiffusersTensors(rand, 'F16', V11), tensor(rand, 'time_extra_emb.style_embedder.weight', [1, y], 'F16')] as FixtureTensor[]),
  'config.json': JSON.stringify({ _class_name: 'HunyuanDiT2DModel', hidden_size: 1408, use_style_cond_and_image_meta_size: true }),
});

const CASES: LoraCase[] = [
  {
    name: 'HunyuanDiT v1.1, ComfyUI\'s file ← diffusers names (kohya form, flattened) and ComfyUI\'s own', layout: 'hunyuan-dit',
    base: original11(), baseName: HY11,
    adapters: [
      {
        file: 'hydit-diffusers-names.safetensors', weight: 1, specs: [
          kohya('lora_unet_time_extra_emb_style_embedder', 1, 1, y, [{ key: `${cm}style_embedder.weight` }], 2),
          kohya('lora_unet_time_extra_emb_extra_embedder_linear_1', 2, 4 * y, extra, [{ key: `${cm}extra_embedder.0.weight` }], 1),
        ],
      },
      { file: 'hydit-comfy-extract.safetensors', weight: -0.6, specs: [kohya('diffusion_model.style_embedder', 1, 1, y, [{ key: `${cm}style_embedder.weight` }])] },
    ],
  },
  {
    name: 'HunyuanDiT v1.1, diffusers transformer ← ComfyUI-extracted and sd-scripts-form LoRAs (Tencent\'s names)', layout: 'hunyuan-dit',
    base: diffusers11(), baseName: 'transformer',
    adapters: [
      {
        file: 'hydit-comfy-extract.safetensors', weight: 0.9, specs: [
          kohya('diffusion_model.style_embedder', 1, 1, y, [{ key: 'time_extra_emb.style_embedder.weight' }]),
          kohya('diffusion_model.extra_embedder.0', 2, 4 * y, extra, [{ key: 'time_extra_emb.extra_embedder.linear_1.weight' }]),
        ],
      },
      { file: 'hydit-sd-scripts.safetensors', weight: 1, specs: [kohya('lora_unet_style_embedder', 1, 1, y, [{ key: 'time_extra_emb.style_embedder.weight' }], 1)] },
    ],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('HunyuanDiT v1.1 style_embedder', () => {
  it('the hunyuan-dit layout places it in both namings; without the layout the flattened diffusers name is refused on Tencent\'s names', async () => {
    for (const k of CASES) {
      const prepared = await prepare(k);
      const terms = prepared.plan.updates.flatMap((u) => u.terms.filter((t) => u.baseKey.endsWith('style_embedder.weight')).map((t) => t.layout));
      expect(terms.length).toBeGreaterThan(0);
      expect(new Set(terms)).toEqual(new Set(['hunyuan-dit']));
      await prepared.close();
    }
    await withoutLayout(hunyuanDit, async () => {
      const p = await prepare(CASES[0]);
      expect(p.plan.problems.map((x) => x.message)).toContain('hydit-diffusers-names.safetensors: module "lora_unet_time_extra_emb_style_embedder": no matching tensor in the UNet/transformer (model.diffusion_model.)');
      await p.close();
    });
  });

  it('refused in one line each: on v1.2 (no style embedder), and with more rows than the embedder has', async () => {
    const v12 = { 'hunyuan_dit_1.2.safetensors': buildSafetensors(hunyuanDitOriginalTensors(rand, 'F16', HUNYUAN_DIT, cm)) };
    expect(await planProblemsOf(v12, 'hunyuan_dit_1.2.safetensors', [kohya('diffusion_model.style_embedder', 1, 1, y, [])], rand)).toEqual([
      'lora.safetensors: module "diffusion_model.style_embedder": no matching tensor in the UNet/transformer (model.diffusion_model.)',
    ]);
    const problems = await planProblemsOf(diffusers11(), 'transformer', [kohya('diffusion_model.style_embedder', 1, 2, y, [])], rand);
    expect(problems).toEqual([
      'lora.safetensors: module "diffusion_model.style_embedder": ΔW (2, 8) does not fit base time_extra_emb.style_embedder.weight (1, 8): ΔW has 2 rows (outputs), the base 1',
    ]);
  });
});
