/**
 * The demo page on an LLM folder as transformers saves it: a tied Llama (no lm_head stored) with
 * config.json, generation_config.json and a tokenizer, and a PEFT adapter with a LoRA on lm_head
 * and its own tokenizer files. The page shows the plan's note, merges on WebGPU, and offers every
 * file of the merged folder: the head written as its own tensor (float64 truth here), config.json
 * rewritten to untie it and say the dtype, the adapter's tokenizer in place of the base's. Same
 * contract as demo.test.ts: no page error, no request off the page's origin.
 */
import { join } from 'node:path';
import type { Browser, ElementHandle, Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openDemo, serveDemo, type DemoPage, type DemoServer } from './helpers/browser.js';
import { removeTempDir, seededRandom, writeTempDir } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder } from './helpers/hf-folder.js';
import { expectValues, product } from './helpers/merge-truth.js';

let server: DemoServer;
let browser: Browser;
let demo: DemoPage | undefined;
let dir: string | undefined;

beforeAll(async () => {
  server = await serveDemo();
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  if (demo) {
    expect(demo.errors).toEqual([]);
    expect(demo.foreignRequests).toEqual([]);
    await demo.page.close();
  }
  await browser?.close();
  await server?.close();
  if (dir) removeTempDir(dir);
});

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

describe('demo page on an LLM folder', () => {
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
    dir = writeTempDir(Object.fromEntries([
      ...Object.entries(baseFiles).map(([p, b]) => [`llama/${p}`, b]),
      ...Object.entries(adapterFiles).map(([p, b]) => [`lora/${p}`, b]),
    ]));

    demo = await openDemo(browser, server, '?backend=webgpu');
    const { page } = demo;
    await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
    const baseInput = (await page.$('[data-testid="base-input"]')) as ElementHandle<HTMLInputElement>;
    await baseInput.uploadFile(...Object.keys(baseFiles).map((p) => join(dir!, 'llama', p)));
    const adapterInput = (await page.$('[data-testid="adapter-input"]')) as ElementHandle<HTMLInputElement>;
    await adapterInput.uploadFile(...Object.keys(adapterFiles).map((p) => join(dir!, 'lora', p)));
    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('1modules matched');
    const listed = await page.$$eval('#plan-problems li', (items) => items.map((li) => li.textContent ?? ''));
    expect(listed).toContainEqual(expect.stringMatching(/^note: lm_head\.weight is written as its own tensor and tie_word_embeddings set to false/));

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
