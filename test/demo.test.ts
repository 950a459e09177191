/**
 * The demo page, driven like a person would in headless Chromium (WebGPU on SwiftShader here):
 * upload files, press merge, fetch the download link's bytes and check them against float64 truth
 * computed here; merge the built-in sample; cancel a merge midway; an LLM folder whose tied head an
 * adapter changes comes out untied, config.json rewritten and the adapter's tokenizer in place. Fails on any page error and on
 * any request that leaves the page's own origin.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ElementHandle, Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { generateSample } from '../src/sample/index.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { mergeEnabled, upload, useDemoSession } from './helpers/demo-session.js';
import { checkMerged, downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { buildSafetensors, randomValues, seededRandom } from './helpers/fixtures.js';
import { readStoredZip } from './helpers/stored-zip.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

const session = useDemoSession();

/** The bytes behind the download link that saves `name`. */
async function downloadNamed(page: Page, name: string): Promise<Uint8Array> {
  const base64 = await page.evaluate(async (file) => {
    const link = [...document.querySelectorAll<HTMLAnchorElement>('[data-testid^="download-link"]')].find((a) => a.download === file);
    if (!link) throw new Error(`no download of ${file}`);
    const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }, name);
  return new Uint8Array(Buffer.from(base64, 'base64'));
}

describe('demo page', PAGE_RETRY, () => {
  it('merges an uploaded base with two adapters (one weighted −0.5) exactly, on WebGPU', async () => {
    const rand = seededRandom(20240611);
    const r1 = 3, r2 = 1, alpha1 = 6, alpha2 = 4;
    const shapes: Record<string, [number, number]> = {
      'model.layers.0.attn.q.weight': [37, 23],
      'model.layers.0.mlp.up.weight': [61, 23],
      'model.layers.1.attn.q.weight': [37, 23],
    };
    const baseTensors = Object.entries(shapes).map(([name, shape]) => ({ name, dtype: 'F16' as const, shape, data: randomValues(shape[0] * shape[1], rand, 0.5) }));
    baseTensors.push({ name: 'model.norm.weight', dtype: 'F16', shape: [23, 1], data: randomValues(23, rand) });
    const adapterFile = (r: number, modules: string[]) => buildSafetensors(modules.flatMap((m) => {
      const [out, inF] = shapes[`${m}.weight`];
      return [
        { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32' as const, shape: [r, inF], data: randomValues(r * inF, rand, 0.3) },
        { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32' as const, shape: [out, r], data: randomValues(out * r, rand, 0.3) },
      ];
    }));
    const config = (r: number, alpha: number) => JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha, target_modules: ['q', 'up'] });
    const baseBytes = buildSafetensors(baseTensors);
    const a1 = adapterFile(r1, ['model.layers.0.attn.q', 'model.layers.0.mlp.up', 'model.layers.1.attn.q']);
    const a2 = adapterFile(r2, ['model.layers.0.attn.q']);
    const dir = session.dirs.make({
      'base/model.safetensors': baseBytes,
      'one/adapter_config.json': config(r1, alpha1), 'one/adapter_model.safetensors': a1,
      'two/adapter_config.json': config(r2, alpha2), 'two/adapter_model.safetensors': a2,
    });

    const demo = await session.open('?backend=webgpu');
    const { page } = demo;
    await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
    const baseInput = (await page.$('[data-testid="base-input"]')) as ElementHandle<HTMLInputElement>;
    await baseInput.uploadFile(join(dir, 'base/model.safetensors'));
    const adapterInput = (await page.$('[data-testid="adapter-input"]')) as ElementHandle<HTMLInputElement>;
    await adapterInput.uploadFile(join(dir, 'one/adapter_config.json'), join(dir, 'one/adapter_model.safetensors'));
    await adapterInput.uploadFile(join(dir, 'two/adapter_config.json'), join(dir, 'two/adapter_model.safetensors'));
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="adapter-weight"]').length === 2);
    await page.evaluate(() => {
      const slider = document.querySelectorAll<HTMLInputElement>('[data-testid="adapter-weight"]')[1];
      slider.value = '-0.5';
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    });
    // The plan: all four modules matched, r and α shown per adapter.
    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    const facts = await page.$$eval('[data-testid="adapter-facts"]', (els) => els.map((e) => e.textContent));
    expect(facts[0]).toContain('r = 3');
    expect(facts[0]).toContain('α = 6');
    expect(facts[1]).toContain('α/r = 4');
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('4modules matched');

    await page.click('[data-testid="merge-button"]');
    const output = await downloadBytes(page);
    checkMerged(output, readSafetensors(baseBytes), [
      { tensors: readSafetensors(a1), scale: alpha1 / r1 },
      { tensors: readSafetensors(a2), scale: -0.5 * (alpha2 / r2) },
    ]);
  });

  it('merges a sharded base with a kohya file into f32, one download per output file', async () => {
    const rand = seededRandom(77);
    const shapes: Record<string, [number, number]> = {
      'down_blocks.0.attentions.0.proj_in.weight': [19, 13],
      'down_blocks.1.attentions.0.proj_out.weight': [13, 19],
    };
    const names = Object.keys(shapes);
    const tensor = (name: string) => ({ name, dtype: 'BF16' as const, shape: shapes[name], data: randomValues(shapes[name][0] * shapes[name][1], rand) });
    const shard1 = buildSafetensors([tensor(names[0])]);
    const shard2 = buildSafetensors([tensor(names[1])]);
    const r = 2, alpha = 1;
    const down = randomValues(r * 13, rand, 0.5), up = randomValues(19 * r, rand, 0.5);
    const kohya = buildSafetensors([
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [r, 13], data: down },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F32', shape: [19, r], data: up },
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.alpha', dtype: 'F32', shape: [], data: [alpha] },
    ]);
    const index = JSON.stringify({ metadata: { total_size: 0 }, weight_map: {
      [names[0]]: 'diffusion_pytorch_model-00001-of-00002.safetensors',
      [names[1]]: 'diffusion_pytorch_model-00002-of-00002.safetensors',
    } });
    const dir = session.dirs.make({
      'unet/diffusion_pytorch_model-00001-of-00002.safetensors': shard1,
      'unet/diffusion_pytorch_model-00002-of-00002.safetensors': shard2,
      'unet/diffusion_pytorch_model.safetensors.index.json': index,
      'unet/config.json': '{"_class_name": "UNet2DConditionModel"}',
      'style.safetensors': kohya,
    });

    const demo = await session.open('?backend=webgpu');
    const { page } = demo;
    await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
    const baseInput = (await page.$('[data-testid="base-input"]')) as ElementHandle<HTMLInputElement>;
    await baseInput.uploadFile(...['diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors',
      'diffusion_pytorch_model.safetensors.index.json', 'config.json'].map((f) => join(dir, 'unet', f)));
    const adapterInput = (await page.$('[data-testid="adapter-input"]')) as ElementHandle<HTMLInputElement>;
    await adapterInput.uploadFile(join(dir, 'style.safetensors'));
    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('1modules matched');
    await page.select('[data-testid="out-dtype"]', 'f32');
    await page.click('[data-testid="merge-button"]');
    const shardOne = await downloadBytes(page);
    const links = await page.$$eval('[data-testid^="download-link"]', (as) => as.map((a) => (a as HTMLAnchorElement).download));
    expect(links).toEqual([
      'diffusion_pytorch_model-00001-of-00002.safetensors', 'diffusion_pytorch_model-00002-of-00002.safetensors',
      'config.json', 'diffusion_pytorch_model.safetensors.index.json',
    ]);
    checkMerged(shardOne, readSafetensors(shard1), [{ tensors: new Map([
      ['base_model.model.down_blocks.0.attentions.0.proj_in.lora_A.weight', readSafetensors(kohya).get('lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight')!],
      ['base_model.model.down_blocks.0.attentions.0.proj_in.lora_B.weight', readSafetensors(kohya).get('lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight')!],
    ]), scale: alpha / r }], 'F32');

    // One streamed zip of the whole folder, named after the base, each file stored as downloaded.
    await page.click('[data-testid="zip-button"]');
    const zip = await downloadBytes(page, 'download-zip');
    expect(await page.$eval('[data-testid="download-zip"]', (a) => (a as HTMLAnchorElement).download)).toBe('diffusion_pytorch_model-merged.zip');
    const entries = readStoredZip(zip);
    expect([...entries.keys()].sort()).toEqual(links.map((name) => `diffusion_pytorch_model-merged/${name}`).sort());
    expect(entries.get(`diffusion_pytorch_model-merged/${links[0]}`)).toEqual(shardOne);
  });

  it('merges the built-in sample with one click, shows the plan and its chart', async () => {
    const demo = await session.open();
    const { page } = demo;
    await page.click('[data-testid="sample-button"]');
    const output = await downloadBytes(page);
    const sample = await generateSample('small');
    const adapterConfig = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
    checkMerged(output, readSafetensors(sample.base['model.safetensors']), [
      { tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: adapterConfig.lora_alpha / adapterConfig.r },
    ]);

    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    const inkedPixels = await page.$eval('[data-testid="magnitude-chart"]', (canvas) => {
      const c = canvas as HTMLCanvasElement;
      const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      return n;
    });
    expect(inkedPixels).toBeGreaterThan(1000);
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('14modules matched');
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-sample.png', fullPage: true });
  });

  it('cancels a merge midway and offers nothing to download', async () => {
    // A merge that takes a while on any machine, whatever its speed: one 4096 × 4096 f32 weight
    // (64 MiB, 16 slabs) under a rank-256 LoRA, on the CPU; cancelled once the first slab is written.
    const rand = seededRandom(77);
    const noise = (n: number, scale: number) => {
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = (rand() - 0.5) * scale;
      return new Uint8Array(values.buffer);
    };
    const n = 4096, r = 256;
    const dir = session.dirs.make({
      'base/model.safetensors': buildSafetensors([{ name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [n, n], data: noise(n * n, 0.1) }]),
      'lora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r, target_modules: ['down_proj'] }),
      'lora/adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight', dtype: 'F32', shape: [r, n], data: noise(r * n, 0.02) },
        { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight', dtype: 'F32', shape: [n, r], data: noise(n * r, 0.02) },
      ]),
    });
    const demo = await session.open('?backend=cpu');
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'base/model.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'lora/adapter_config.json'), join(dir, 'lora/adapter_model.safetensors'));
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => (document.querySelector<HTMLProgressElement>('[data-testid="progress"]')!.value ?? 0) > 0, { timeout: 90_000, polling: 20 });
    await page.click('[data-testid="cancel-button"]');
    await page.waitForFunction(() => /cancelled/i.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    expect(await page.$('[data-testid="download-link"]')).toBeNull();
    // The plan is checked again once the worker is free: then Merge is offered again.
    await mergeEnabled(page);
  });

  it('lets no request leave the page\'s origin, from the page or a worker, and records each one tried', async () => {
    const demo = await session.open();
    const outcomes = await demo.page.evaluate(async () => {
      const fromPage = await fetch('http://example.com/weights').then(() => 'loaded', () => 'failed');
      const script = "fetch('http://93.184.215.14/weights').then(() => postMessage('loaded'), () => postMessage('failed'))";
      const worker = new Worker(URL.createObjectURL(new Blob([script], { type: 'text/javascript' })));
      const fromWorker = await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); });
      worker.terminate();
      return [fromPage, fromWorker];
    });
    expect(outcomes).toEqual(['failed', 'failed']);
    expect([...demo.foreignRequests].sort()).toEqual(['http://93.184.215.14/weights', 'http://example.com/weights']);
    // Both failures are reported on the console; nothing else may be.
    expect(demo.errors.every((e) => /^console: Failed to load resource/.test(e)), demo.errors.join('\n')).toBe(true);
    demo.foreignRequests.length = 0;
    demo.errors.length = 0;
  });

  it('unties a tied head an adapter changes, rewrites config.json and takes the adapter\'s tokenizer', async () => {
    const rand = seededRandom(1207);
    const base = [
      randomTensor('model.embed_tokens.weight', [40, 16], 'BF16', rand),
      randomTensor('model.layers.0.self_attn.q_proj.weight', [16, 16], 'BF16', rand),
      randomTensor('model.norm.weight', [16], 'BF16', rand),
    ];
    const adapter = [
      randomTensor('base_model.model.lm_head.lora_A.weight', [2, 16], 'F32', rand, 0.5),
      randomTensor('base_model.model.lm_head.lora_B.weight', [40, 2], 'F32', rand, 0.5),
    ];
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', vocab_size: 40, tie_word_embeddings: true };
    const baseFiles = hfModelFolder(base, config, { extra: { 'tokenizer.json': '{"from": "base"}', 'tokenizer_config.json': '{"model_max_length": 64}' } });
    const adapterFiles = peftFolder({ r: 2, lora_alpha: 4, target_modules: ['lm_head'] }, adapter, { 'tokenizer.json': '{"from": "adapter"}' });
    const dir = session.dirs.make(Object.fromEntries([
      ...Object.entries(baseFiles).map(([p, b]) => [`llama/${p}`, b]),
      ...Object.entries(adapterFiles).map(([p, b]) => [`lora/${p}`, b]),
    ]));

    const demo = await session.open('?backend=webgpu');
    const { page } = demo;
    await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
    const baseInput = (await page.$('[data-testid="base-input"]')) as ElementHandle<HTMLInputElement>;
    await baseInput.uploadFile(...Object.keys(baseFiles).map((p) => join(dir, 'llama', p)));
    const adapterInput = (await page.$('[data-testid="adapter-input"]')) as ElementHandle<HTMLInputElement>;
    await adapterInput.uploadFile(...Object.keys(adapterFiles).map((p) => join(dir, 'lora', p)));
    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('1modules matched');
    const notes = await page.$$eval('#plan-notes li', (items) => items.map((li) => li.textContent ?? ''));
    expect(notes).toContainEqual(expect.stringMatching(/^lm_head\.weight is written as its own tensor and tie_word_embeddings set to false/));

    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => !!document.querySelector<HTMLAnchorElement>('[data-testid="download-link"]')?.href, { timeout: 90_000 });
    const names = await page.$$eval('[data-testid^="download-link"]', (as) => as.map((a) => (a as HTMLAnchorElement).download));
    expect([...names].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const files = new Map<string, Uint8Array>();
    for (const name of names) files.set(name, await downloadNamed(page, name));
    const merged = readMergedFolder(files);

    const b = decoded(base);
    const a = decoded(adapter);
    const delta = product(a.get('base_model.model.lm_head.lora_B.weight')!, a.get('base_model.model.lm_head.lora_A.weight')!);
    const head = merged.tensors.get('lm_head.weight')!;
    expect([head.dtype, head.shape]).toEqual(['BF16', [40, 16]]);
    expectValues('lm_head.weight', head, b.get('model.embed_tokens.weight')!.values.map((w, i) => w + 2 * delta[i]));
    for (const [key, t] of b) expect(merged.tensors.get(key)!.bytes, key).toEqual(t.bytes);
    expect(merged.json('config.json')).toMatchObject({ tie_word_embeddings: false, dtype: 'bfloat16', torch_dtype: 'bfloat16', vocab_size: 40 });
    expect(merged.text('tokenizer.json')).toBe('{"from": "adapter"}');
    expect(merged.text('tokenizer_config.json')).toBe('{"model_max_length": 64}');
  });
});
