/**
 * Mochi 1 LoRAs in the key forms their trainers write — genmo's own fine-tuner and ComfyUI
 * (`blocks.0.attn.qkv_x`, bare or under `diffusion_model.`), sd-scripts form (`lora_unet_…`),
 * diffusers' trainers (`transformer.transformer_blocks.0.attn1.to_q`) — onto genmo's and Comfy-Org's
 * single files and diffusers' MochiTransformer3DModel, file to file on the CPU and on WebGPU,
 * against float64 truth. Where each module's rows land is written out here by hand from diffusers'
 * scripts/convert_mochi_to_diffusers.py: `qkv_x` / `qkv_y` are q, k, v in thirds; `mlp_x.w1` /
 * `mlp_y.w1` are (proj, gate) where diffusers' `net.0.proj` is (gate, proj) (swap_proj_gate) and
 * `final_layer.mod` is (shift, scale) where `norm_out.linear` is (scale, shift): halves swapped;
 * the last block's `mod_y` is `norm1_context.linear_1`, every other block's `norm1_context.linear`.
 */
import { describe, expect, it } from 'vitest';
import { mochi } from '../src/formats/layouts/mochi.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { rowsAt, rowsFrom, swappedHalves, type LoraSpec, kohyaSpec, peftSpec, DIFFUSERS_LORA_METADATA } from './helpers/diffusion-fixtures.js';
import { MOCHI, mochiDiffusersTensors, mochiOriginalTensors } from './helpers/mochi-fixtures.js';
import { loraCaseSuite, withoutLayout, type LoraCase } from './helpers/lora-case.js';

const rand = seededRandom(20261205);

const file = (name: string, tensors: FixtureTensor[]) => ({ [name]: buildSafetensors(tensors) });
const diffusersFolder = (tensors: FixtureTensor[]) => ({
  'diffusion_pytorch_model.safetensors': buildSafetensors(tensors), 'config.json': JSON.stringify({ _class_name: 'MochiTransformer3DModel' }),
});

const { x, y, mx, my, t5, patch } = MOCHI;
const cm = 'model.diffusion_model.';

/** diffusers' trainers onto the original names (prefix `p`). */
const diffusersOnOriginal = (p: string): LoraSpec[] => [
  peftSpec('transformer.transformer_blocks.0.attn1.to_k', 4, x, x, [{ key: `${p}blocks.0.attn.qkv_x.weight`, rows: rowsAt(x, x) }], 2),
  peftSpec('transformer.transformer_blocks.1.attn1.add_v_proj', 4, x, y, [{ key: `${p}blocks.1.attn.qkv_y.weight`, rows: rowsAt(2 * x, x) }], 2),
  peftSpec('transformer.transformer_blocks.0.attn1.to_out.0', 4, x, x, [{ key: `${p}blocks.0.attn.proj_x.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.attn1.to_add_out', 4, y, x, [{ key: `${p}blocks.0.attn.proj_y.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.ff.net.0.proj', 4, 2 * mx, x, [{ key: `${p}blocks.1.mlp_x.w1.weight`, rows: swappedHalves(mx) }], 2),
  peftSpec('transformer.transformer_blocks.0.ff_context.net.0.proj', 4, 2 * my, y, [{ key: `${p}blocks.0.mlp_y.w1.weight`, rows: swappedHalves(my) }], 2),
  peftSpec('transformer.transformer_blocks.0.ff.net.2', 4, x, mx, [{ key: `${p}blocks.0.mlp_x.w2.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.norm1.linear', 4, 4 * x, x, [{ key: `${p}blocks.1.mod_x.weight` }], 2),
  peftSpec('transformer.transformer_blocks.0.norm1_context.linear', 4, 4 * y, x, [{ key: `${p}blocks.0.mod_y.weight` }], 2),
  peftSpec('transformer.transformer_blocks.1.norm1_context.linear_1', 4, y, x, [{ key: `${p}blocks.1.mod_y.weight` }], 2),
  peftSpec('transformer.norm_out.linear', 4, 2 * x, x, [{ key: `${p}final_layer.mod.weight`, rows: swappedHalves(x) }], 2),
  peftSpec('transformer.proj_out', 4, patch, x, [{ key: `${p}final_layer.linear.weight` }], 2),
  peftSpec('transformer.patch_embed.proj', 4, x, patch, [{ key: `${p}x_embedder.proj.weight` }], 2),
  peftSpec('transformer.time_embed.pooler.to_kv', 4, 2 * x, t5, [{ key: `${p}t5_y_embedder.to_kv.weight` }], 2),
  peftSpec('transformer.time_embed.caption_proj', 4, y, t5, [{ key: `${p}t5_yproj.weight` }], 2),
];
const D = (i: number, rest: string) => `transformer_blocks.${i}.${rest}.weight`;
/** genmo's trainer / ComfyUI: the original names (bare, or `diffusion_model.`), PEFT form, scale 1; and sd-scripts form. */
const originalOnDiffusers: LoraSpec[] = [
  peftSpec('blocks.0.attn.qkv_x', 4, 3 * x, x, [0, 1, 2].map((j) => ({ key: D(0, ['attn1.to_q', 'attn1.to_k', 'attn1.to_v'][j]), rows: rowsFrom(j * x, x) })), 1),
  peftSpec('diffusion_model.blocks.1.attn.qkv_y', 4, 3 * x, y, [0, 1, 2].map((j) => ({ key: D(1, ['attn1.add_q_proj', 'attn1.add_k_proj', 'attn1.add_v_proj'][j]), rows: rowsFrom(j * x, x) })), 1),
  peftSpec('blocks.0.mlp_x.w1', 4, 2 * mx, x, [{ key: D(0, 'ff.net.0.proj'), rows: swappedHalves(mx) }], 1),
  peftSpec('blocks.0.mlp_y.w2', 4, y, my, [{ key: D(0, 'ff_context.net.2') }], 1),
  peftSpec('blocks.1.mod_y', 4, y, x, [{ key: D(1, 'norm1_context.linear_1') }], 1),
  peftSpec('blocks.0.mod_y', 4, 4 * y, x, [{ key: D(0, 'norm1_context.linear') }], 1),
  peftSpec('final_layer.mod', 4, 2 * x, x, [{ key: 'norm_out.linear.weight', rows: swappedHalves(x) }], 1),
  kohyaSpec('lora_unet_blocks_1_attn_proj_x', 2, x, x, [{ key: D(1, 'attn1.to_out.0') }], 1),
  kohyaSpec('lora_unet_t_embedder_mlp_0', 2, x, MOCHI.freq, [{ key: 'time_embed.timestep_embedder.linear_1.weight' }], 1),
];

const CASES: LoraCase[] = [
  {
    name: 'Mochi 1, genmo\'s dit.safetensors ← diffusers-named LoRA (q, k, v onto qkv thirds; SwiGLU and final mod halves swapped)', layout: 'mochi',
    base: file('dit.safetensors', mochiOriginalTensors(rand, 'BF16')), baseName: 'dit.safetensors',
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal(''), weight: 0.9, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'Mochi 1, Comfy-Org\'s file (model.diffusion_model.) ← diffusers-named LoRA', layout: 'mochi',
    base: file('mochi_preview_bf16.safetensors', mochiOriginalTensors(rand, 'BF16', MOCHI, cm)), baseName: 'mochi_preview_bf16.safetensors',
    adapters: [{ file: 'pytorch_lora_weights.safetensors', specs: diffusersOnOriginal(cm), weight: 1, metadata: DIFFUSERS_LORA_METADATA }],
  },
  {
    name: 'diffusers Mochi transformer ← genmo / ComfyUI and sd-scripts-form LoRAs (original names)', layout: 'mochi',
    base: diffusersFolder(mochiDiffusersTensors(rand, 'BF16')), baseName: 'transformer',
    adapters: [{ file: 'mochi-lora.safetensors', specs: originalOnDiffusers, weight: -0.8 }],
  },
];

const { prepare } = loraCaseSuite(CASES, rand, 'BF16');

describe('the mochi layout', () => {
  it('places every case\'s modules named the other way; without it they are refused', async () => {
    for (const k of CASES) {
      const prepared = await prepare(k);
      expect(new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout))).has('mochi'), k.name).toBe(true);
      await prepared.close();
    }
    await withoutLayout(mochi, async () => {
      for (const k of CASES) {
        const prepared = await prepare(k);
        expect(prepared.plan.problems.length, k.name).toBeGreaterThan(0);
        await prepared.close();
      }
    });
  });
});
