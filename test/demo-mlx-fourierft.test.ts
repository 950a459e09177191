/**
 * The page with mlx-lm adapters and a PEFT FourierFT folder, as a person gives them: mlx-lm's
 * adapter_config.json and adapters.safetensors (and a trainer's checkpoint) dropped loose are one
 * adapter, `mlx-lm adapter`, whose card states its scale as lora_parameters.scale; the plan names
 * LoRA (mlx-lm), and the download holds LoRALinear.fuse's merge against float64 truth. An mlx-lm full fine-tune's folder
 * is carded as the tensors it replaces; its adapters.safetensors picked without the config is
 * refused in one line, on its card, in the plan and read out. A FourierFT folder's card says its
 * scale is `scaling` (no α or r), and the download holds W + scaling·Re(ifft2(spectrum)) at
 * torch's positions.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { announced, dropFiles, mergeEnabled, planReady, seriousViolations, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { expectMerged } from './helpers/expect-merged.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { deltaTruth, fourier, fourierftConfig } from './helpers/fourierft-truth.js';
import { decoded, hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { expectValues } from './helpers/merge-truth.js';
import { linearTruth, mlxFolder } from './helpers/mlx-lm-folder.js';

mkdirSync('test-output', { recursive: true }); // the screenshots this file writes

const session = useDemoSession();
const rand = seededRandom(5150);

// A Llama checkpoint in bf16, sizes scaled down: hidden 8, 4 key/value features.
const HIDDEN = 8, KV = 4;
const BASE: FixtureTensor[] = [
  randomTensor('model.embed_tokens.weight', [16, HIDDEN], 'BF16', rand),
  randomTensor('model.layers.0.self_attn.q_proj.weight', [HIDDEN, HIDDEN], 'BF16', rand),
  randomTensor('model.layers.0.self_attn.v_proj.weight', [KV, HIDDEN], 'BF16', rand),
  randomTensor('model.layers.0.input_layernorm.weight', [HIDDEN], 'BF16', rand),
];
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', hidden_size: HIDDEN, num_hidden_layers: 1, vocab_size: 16, tie_word_embeddings: false };
const BASE_VALUES = decoded(BASE);

/** Writes the base's files under base/ and each adapter's under its folder, opens the page and picks the base's files. */
async function pickBase(base: Record<string, string | Uint8Array>, adapters: Record<string, Record<string, string | Uint8Array>> = {}) {
  const under = (folder: string, files: Record<string, string | Uint8Array>) => Object.entries(files).map(([f, d]) => [`${folder}/${f}`, d]);
  const dir = session.dirs.make(Object.fromEntries([...under('base', base), ...Object.entries(adapters).flatMap(([name, files]) => under(name, files))]));
  const { page } = await session.open('?backend=cpu');
  await upload(page, 'base-input', ...Object.keys(base).map((f) => join(dir, 'base', f)));
  return { page, dir };
}

describe('the page with mlx-lm and FourierFT adapters', PAGE_RETRY, () => {
  it('mlx-lm\'s two files and a checkpoint dropped loose: one adapter, its scale on the card, merged as LoRALinear.fuse adds it', async () => {
    const modules: [string, number, number][] = [['model.layers.0.self_attn.q_proj', HIDDEN, HIDDEN], ['model.layers.0.self_attn.v_proj', HIDDEN, KV]];
    // lora_a (in, r) and lora_b (r, out), float32, as LoRALinear trains them.
    const factors = modules.flatMap(([path, inF, outF]) => [
      randomTensor(`${path}.lora_a`, [inF, 2], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [2, outF], 'F32', rand, 0.5),
    ]);
    const adapter = mlxFolder({ lora_parameters: { rank: 2, dropout: 0, scale: 20, keys: ['self_attn.q_proj', 'self_attn.v_proj'] } }, factors);
    const { page } = await pickBase(hfModelFolder(BASE, LLAMA));
    // A trainer's checkpoint dropped with them: part of the adapter, not what is merged (mlx_lm.fuse reads adapters.safetensors).
    const checkpoint = modules.flatMap(([path, inF, outF]) => [randomTensor(`${path}.lora_a`, [inF, 2], 'F32', rand), randomTensor(`${path}.lora_b`, [2, outF], 'F32', rand)]);
    await dropFiles(page, 'adapter-drop', {
      'adapter_config.json': new TextEncoder().encode(adapter['adapter_config.json'] as string),
      '0000100_adapters.safetensors': buildSafetensors(checkpoint, { format: 'mlx' }),
      'adapters.safetensors': adapter['adapters.safetensors'] as Uint8Array,
    });
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 2 modules matched.');
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(['mlx-lm adapter']);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['mlx-lm · LoRA (mlx-lm) · 2 modules · r = 2 · scale = lora_parameters.scale = 20']);
    await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
    const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((r) => [...r.children].map((td) => td.textContent ?? '')));
    expect(rows.map((r) => r.slice(0, 4))).toEqual(modules.map(([path]) => ['mlx-lm adapter', path, `${path}.weight`, 'LoRA (mlx-lm), r = 2']));
    expect(await seriousViolations(page)).toEqual([]);
    await page.screenshot({ path: 'test-output/demo-mlx-loose-plan.png', fullPage: true });

    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readSafetensors(await downloadBytes(page));
    const a = decoded(factors);
    for (const [path] of modules) {
      const key = `${path}.weight`;
      expectValues(key, merged.get(key)!, linearTruth(BASE_VALUES.get(key)!, a.get(`${path}.lora_a`)!, a.get(`${path}.lora_b`)!, 20));
    }
    for (const key of ['model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight']) expect(merged.get(key)!.bytes, key).toEqual(BASE_VALUES.get(key)!.bytes);
  }, 120_000);

  it('an mlx-lm full fine-tune\'s folder is carded by what it replaces; its adapters.safetensors without the config is refused in one line, on its card, in the plan and read out', async () => {
    const norm = randomTensor('model.layers.0.input_layernorm.weight', [HIDDEN], 'BF16', rand);
    const full = mlxFolder({ fine_tune_type: 'full', lora_parameters: null }, [norm]);
    const { page, dir } = await pickBase(hfModelFolder(BASE, LLAMA), { 'full-ft': full });
    const folder = join(dir, 'full-ft');
    await upload(page, 'adapter-folder-input', folder);
    await planReady(page);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['mlx-lm · 1 tensor replaced']);

    await upload(page, 'adapter-input', join(folder, 'adapters.safetensors'));
    await page.waitForFunction(() => !document.getElementById('plan-blocked')!.hidden, { timeout: 30_000 });
    const refusal = 'adapters.safetensors: adapters.safetensors looks like an mlx-lm adapter but adapter_config.json is missing (it holds lora_parameters.scale); pass the adapter folder that mlx_lm.lora wrote, with its adapter_config.json';
    expect(await text(page, '[data-testid="plan-status"]')).toBe(refusal);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['mlx-lm · 1 tensor replaced', `cannot be read: ${refusal}`]);
    const blocked = 'The plan is blocked by adapters.safetensors, which cannot be read: remove it, or fix it and pick it again.';
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe(blocked);
    await page.waitForFunction(() => /mlx-lm/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="alert"]')).toBe(`${refusal} ${blocked}`);
    expect(await seriousViolations(page)).toEqual([]);
    await page.screenshot({ path: 'test-output/demo-mlx-without-config.png', fullPage: true });
  }, 120_000);

  it('a FourierFT folder: its card states scaling, with no α or r; merged as W + scaling·Re(ifft2(spectrum))', async () => {
    const q = 'model.layers.0.self_attn.q_proj';
    const odd = fourier('odd'); // a (5, 7) layer, 9 frequencies at seed 777's positions, scaling 150
    const w = randomTensor(`${q}.weight`, [odd.out, odd.in], 'BF16', rand);
    const spectrum: FixtureTensor = { name: `base_model.model.${q}.fourierft_spectrum`, dtype: 'F32', shape: [odd.spectrum.length], data: Float64Array.from(odd.spectrum) };
    const adapter = peftFolder(fourierftConfig({ n_frequency: odd.n_frequency, random_loc_seed: odd.random_loc_seed, scaling: odd.scaling, target_modules: ['q_proj'] }), [spectrum]);
    const { page, dir } = await pickBase({ 'model.safetensors': buildSafetensors([w]) }, { fourierft: adapter });
    await upload(page, 'adapter-folder-input', join(dir, 'fourierft'));
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 1 module matched.');
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual([`PEFT · FourierFT (PEFT) · 1 module · scale = scaling = ${odd.scaling}`]);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readSafetensors(await downloadBytes(page));
    const d = deltaTruth(odd);
    expectMerged(merged.get(`${q}.weight`)!.values, decoded([w]).get(`${q}.weight`)!.values.map((x, i) => x + d[i]), 'BF16', q);
  }, 120_000);
});
