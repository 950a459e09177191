/**
 * The demo page with the diffusion files people bring, driven through its usual controls (upload,
 * plan, merge, download link): a Flux fp8 single file with a kohya Flux LoRA whose CLIP-L modules
 * the file cannot take (the plan says they are left out), and an SDXL single file with a
 * diffusers-format SDXL LoRA. The downloaded bytes are checked against float64 truth.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { planReady, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, loraTensors, rowsAt, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';

/** The CLIP modules a diffusers text encoder LoraConfig targets (target_modules, as its trainers save it in lora_adapter_metadata). */
const CLIP_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'];

const rand = seededRandom(4242);
const { h } = FLUX;

/** Uploads a base file and one adapter file, waits for the plan and returns its stats and messages. */
async function plan(page: Page, dir: string, baseFile: string, adapterFile: string): Promise<{ stats: string; messages: string[] }> {
  await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
  await upload(page, 'base-input', join(dir, baseFile));
  await upload(page, 'adapter-input', join(dir, adapterFile));
  await planReady(page);
  return {
    stats: await page.$eval('#plan-stats', (e) => e.textContent ?? ''),
    messages: await page.$$eval('#plan-problems li', (lis) => lis.map((li) => `${li.className}: ${li.textContent}`)),
  };
}

const kohya = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], alpha: number): LoraSpec => ({
  down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands, scale: alpha / r,
  extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] } satisfies FixtureTensor],
});

// Flux fp8 (e4m3fn weights, bf16 biases and norms) and a kohya Flux LoRA with CLIP-L modules.
const fluxFp8 = buildSafetensors(fluxBflTensors(rand, 'F32').map((t) => ({
  ...t, dtype: t.shape.length < 2 ? 'BF16' : 'F8_E4M3',
  data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(x, t.shape.length < 2 ? 'BF16' : 'F8_E4M3')),
} satisfies FixtureTensor)));
const FLUX_SPECS: LoraSpec[] = [
  kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, [{ key: 'double_blocks.0.img_attn.qkv.weight' }], 4),
  kohya('lora_unet_single_blocks_1_linear1', 2, 7 * h, h, [{ key: 'single_blocks.1.linear1.weight' }], 1),
  kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, 12, 12, [], 2),
  kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 2, 24, 12, [], 2),
];
const fluxLora = buildSafetensors(loraTensors(rand, FLUX_SPECS, 'BF16'), { ss_network_module: 'networks.lora_flux' });

// SDXL (SGM names) and a diffusers-format SDXL LoRA with its α in lora_adapter_metadata.
const U = (rest: string) => `model.diffusion_model.${rest}.weight`;
const TE2 = 'conditioner.embedders.1.model.transformer.resblocks.0';
const sdxl = buildSafetensors([
  tensor(rand, U('input_blocks.4.1.transformer_blocks.0.attn1.to_q'), [16, 16], 'F16'),
  tensor(rand, U('output_blocks.1.1.proj_out'), [24, 24], 'F16'),
  tensor(rand, 'conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight', [12, 12], 'F16'),
  tensor(rand, `${TE2}.attn.in_proj_weight`, [48, 16], 'F16'),
]);
const peft = (name: string, r: number, out: number, inF: number, lands: LoraSpec['lands'], scale: number): LoraSpec =>
  ({ down: `${name}.lora_A.weight`, up: `${name}.lora_B.weight`, r, out, in: inF, lands, scale });
const SDXL_SPECS: LoraSpec[] = [
  peft('unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 4, 16, 16, [{ key: U('input_blocks.4.1.transformer_blocks.0.attn1.to_q') }], 4),
  peft('unet.up_blocks.0.attentions.1.proj_out', 4, 24, 24, [{ key: U('output_blocks.1.1.proj_out') }], 4),
  peft('text_encoder.text_model.encoder.layers.0.self_attn.q_proj', 2, 12, 12, [{ key: 'conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight' }], 1),
  peft('text_encoder_2.text_model.encoder.layers.0.self_attn.v_proj', 2, 16, 16, [{ key: `${TE2}.attn.in_proj_weight`, rows: rowsAt(32, 16) }], 1),
];
const sdxlLora = buildSafetensors(loraTensors(rand, SDXL_SPECS, 'F16'), {
  lora_adapter_metadata: JSON.stringify({ 'unet.r': 4, 'unet.lora_alpha': 16, 'text_encoder.r': 2, 'text_encoder.lora_alpha': 2, 'text_encoder_2.r': 2, 'text_encoder_2.lora_alpha': 2,
    'text_encoder.target_modules': CLIP_TARGETS, 'text_encoder_2.target_modules': CLIP_TARGETS }),
});

const session = useDemoSession();
let dir: string;

beforeAll(() => {
  dir = session.dirs.make({
    'flux1-dev-fp8.safetensors': fluxFp8, 'flux-style.safetensors': fluxLora,
    'sd_xl_base_1.0.safetensors': sdxl, 'pytorch_lora_weights.safetensors': sdxlLora,
  });
});

describe('demo page with diffusion files', PAGE_RETRY, () => {
  it('plans and merges a Flux fp8 file with a kohya LoRA, saying which modules it leaves out', async () => {
    const demo = await session.open('?backend=webgpu');
    const { stats, messages } = await plan(demo.page, dir, 'flux1-dev-fp8.safetensors', 'flux-style.safetensors');
    expect(stats).toContain('2modules matched');
    expect(messages.join('\n')).toMatch(/^warning: .*2 modules left out, not merged: they name text encoder 1 \(CLIP-L\), which the base does not hold/m);
    await demo.page.click('[data-testid="merge-button"]');
    const merged = decodeSafetensors(await downloadBytes(demo.page));
    expect(merged.tensors.get('double_blocks.0.img_attn.qkv.weight')!.dtype).toBe('F8_E4M3');
    expect(JSON.parse(merged.metadata['loramerge.left_out']).map((m: { module: string }) => m.module)).toEqual([
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'lora_te1_text_model_encoder_layers_0_mlp_fc1',
    ]);
    expectMergedFile(decodeSafetensors(fluxFp8).tensors, merged.tensors, truthTerms(decodeSafetensors(fluxLora).tensors, FLUX_SPECS, 1));
  });

  it('plans and merges an SDXL file with a diffusers-format LoRA (UNet, both text encoders)', async () => {
    const demo = await session.open('?backend=webgpu');
    const { stats, messages } = await plan(demo.page, dir, 'sd_xl_base_1.0.safetensors', 'pytorch_lora_weights.safetensors');
    expect(stats).toContain('4modules matched');
    expect(messages).toEqual(['ok: ✓ Every adapter module found its base tensor.']);
    const facts = await demo.page.$$eval('[data-testid="adapter-facts"]', (els) => els.map((e) => e.textContent ?? ''));
    expect(facts[0]).toContain('diffusers');
    await demo.page.click('[data-testid="merge-button"]');
    const merged = decodeSafetensors(await downloadBytes(demo.page));
    expectMergedFile(decodeSafetensors(sdxl).tensors, merged.tensors, truthTerms(decodeSafetensors(sdxlLora).tensors, SDXL_SPECS, 1));
  });
});
