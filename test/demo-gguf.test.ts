/**
 * The demo page with GGUF: upload a Q4_K_M-style base and a llama.cpp LoRA, merge on WebGPU in
 * headless Chromium (blocks decoded in WGSL), download the .gguf, and check it here: every tensor's
 * type and bytes kept where untouched, the merged one within one more quantization of the float64
 * truth. Same contract as demo.test.ts: no page error, no request off the page's origin.
 */
import { join } from 'node:path';
import type { Browser, ElementHandle } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openDemo, serveDemo, type DemoPage, type DemoServer, PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { removeTempDir, writeTempDir } from './helpers/fixtures.js';
import { referenceQuantizeBlock } from './helpers/ggml-reference.js';
import { readGguf, tensorValues } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama, truthWithLora } from './helpers/gguf-models.js';

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

describe('demo page with GGUF', PAGE_RETRY, () => {
  it('merges a llama.cpp LoRA into a Q4_K_M-style GGUF, keeping its types', async () => {
    const base = q4kmLlama();
    const target = 'blk.0.attn_output.weight';
    const lora = ggufLoraAdapter([{ tensor: target, rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    dir = writeTempDir({ 'base.gguf': base.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes });

    demo = await openDemo(browser, server, '?backend=webgpu');
    const { page } = demo;
    await page.waitForFunction(() => /webgpu/i.test(document.querySelector('[data-testid="backend"]')!.textContent ?? ''), { timeout: 60_000 });
    const baseInput = (await page.$('[data-testid="base-input"]')) as ElementHandle<HTMLInputElement>;
    await baseInput.uploadFile(join(dir, 'base.gguf'));
    const adapterInput = (await page.$('[data-testid="adapter-input"]')) as ElementHandle<HTMLInputElement>;
    await adapterInput.uploadFile(join(dir, 'lora.gguf'));
    await page.waitForFunction(() => !document.getElementById('plan')!.hidden, { timeout: 30_000 });
    expect(await page.$eval('#plan-stats', (e) => e.textContent)).toContain('1modules matched');
    await page.click('[data-testid="merge-button"]');
    const merged = readGguf(await downloadBytes(page));
    // A one-file GGUF downloads as a GGUF.
    expect(await page.$eval('[data-testid="download-link"]', (a) => (a as HTMLAnchorElement).download)).toBe('base-merged.gguf');

    const input = readGguf(base.files['tiny-llama-Q4_K_M.gguf']);
    expect(merged.tensors.map((t) => [t.name, t.typeId])).toEqual(input.tensors.map((t) => [t.name, t.typeId]));
    for (const t of merged.tensors) {
      if (t.name === target) continue;
      expect(Buffer.compare(t.data, input.tensors.find((x) => x.name === t.name)!.data), t.name).toBe(0);
    }
    const want = truthWithLora(base.tensors.get(target)!.values, LLAMA.hidden, LLAMA.hidden, lora.factors.get(target)!, 8 / 4, false);
    const got = tensorValues('Q4_K', merged.tensors.find((t) => t.name === target)!.data);
    const direct = tensorValues('Q4_K', Buffer.concat(Array.from({ length: want.length / 256 }, (_, b) => referenceQuantizeBlock('Q4_K', want.subarray(b * 256, (b + 1) * 256)))));
    let worst = 0;
    let worstDirect = 0;
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - want[i]));
      worstDirect = Math.max(worstDirect, Math.abs(direct[i] - want[i]));
    }
    expect(worst).toBeLessThan(2.5 * worstDirect);
    expect(merged.metadata.get('general.file_type')!.value).toBe(15);
  });
});
