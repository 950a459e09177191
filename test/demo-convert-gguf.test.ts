/**
 * The page's convert mode: a PEFT adapter and the GGUF model it is for, picked by keyboard, written
 * as a llama.cpp LoRA GGUF into browser storage and offered as one download, `<adapter>-converted.gguf`.
 * Its bytes are the library's: convertLora (loramerge/node, run here in Node) of the same files
 * writes the same file byte for byte. The run is labelled, announced, and its result takes the
 * focus; a kohya file is refused in one line, listed and announced, nothing offered. axe-core finds
 * nothing serious in either theme; screenshots at 1280 and 390 px in both (test-output/).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { convertLora, memoryInputFileSet } from '../src/node.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, count, openChooser, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { seededRandom } from './helpers/fixtures.js';

const session = useDemoSession();
const BASE = 'tiny-llama-Q4_K_M.gguf';
const adapter = peftLlamaAdapter(41);
const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));

const runEnabled = (page: Page) => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
const blockedSays = (page: Page) => text(page, '[data-testid="job-blocked"]');

describe('convert to a llama.cpp LoRA on the page', PAGE_RETRY, () => {
  it('by keyboard: the page writes the library’s GGUF byte for byte, announced, the result focused; axe clean in both themes, 390 px', async () => {
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('llama-lora', adapter.files) });
    const out = join(dir, 'library.gguf');
    // The library, in Node, on the same files: the adapter under the name the page gives it (its
    // folder's), which the GGUF records (loramerge.sources), not under its path on disk.
    const library = await convertLora({ adapter: memoryInputFileSet(adapter.files, 'llama-lora'), base: join(dir, BASE), out });
    expect([library.format, library.modules.length]).toEqual(['gguf', 7]);

    const demo = await session.open();
    const { page } = demo;
    await page.focus('body');
    await tabTo(page, '[data-testid="mode-merge"]');
    // merge → combine → resize → extract → convert
    for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowRight');
    expect(await announced(page, /Convert mode/)).toBe('Convert mode: pick the PEFT adapter and the model it is for.');
    expect(await text(page, '#job-heading')).toBe('Convert to a llama.cpp LoRA (GGUF)');
    expect(await text(page, '[data-testid="job-run"]')).toBe('Convert');
    expect(await blockedSays(page)).toBe('Pick the PEFT adapter to convert.');
    // No options to set: no empty group is shown.
    expect(await page.$eval('#job-options', (e) => (e as HTMLElement).hidden)).toBe(true);

    await tabTo(page, '#job-adapter-folder-button');
    await (await openChooser(page, 'Enter')).accept([join(dir, 'llama-lora')]);
    await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter"] .adapter-name')).toBe('llama-lora');
    expect(await blockedSays(page)).toBe('Pick the model the LoRA is for.');
    await tabTo(page, '#job-target-files-button');
    expect(await page.evaluate(() => document.activeElement!.getAttribute('aria-describedby'))).toBe('job-target-hint');
    await (await openChooser(page, 'Space')).accept([join(dir, BASE)]);
    expect(await announced(page, /^Model read/)).toMatch(new RegExp(`^Model read: ${BASE.replaceAll('.', '\\.')}, gguf`));
    await runEnabled(page);

    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    const bytes = await downloadBytes(page, 'job-download-link');
    await page.waitForFunction(() => document.activeElement?.id === 'job-results', { timeout: 30_000 });
    expect(await announced(page, /^Converted/)).toMatch(/^Converted 7 modules in (<1 s|[\d.]+ s)\. The adapter is under “Your adapter”, with each module’s rank\.$/);
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(out))).toBe(0);
    expect(await page.$$eval('[data-testid="job-download-link"]', (links) => links.map((a) => (a as HTMLAnchorElement).download))).toEqual(['llama-lora-converted.gguf']);
    expect(await text(page, '#job-results-note')).toMatch(/^Converted in (<1 s|[\d.]+ s): 7 LoRA modules, ranks 4–8\.$/);
    expect(await text(page, '#spectrum-heading')).toBe('Each module’s rank');
    expect(await text(page, '[data-testid="spectrum-note"]')).toBe('A conversion keeps every module’s factors as they are: there are no singular values to choose from.');
    expect(await count(page, '[data-testid="job-modules"] tbody tr')).toBe(7);

    mkdirSync('test-output', { recursive: true });
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 });
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
        expect(await seriousViolations(page), `${width} px ${scheme}`).toEqual([]);
        expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), `${width} px`).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `test-output/demo-convert-${width}px-${scheme}.png`, fullPage: true });
      }
    }
  }, 120_000);

  it('a kohya file: refused in one line, listed and announced, nothing offered', async () => {
    const rand = seededRandom(5);
    const g = () => rand() - 0.5;
    const kohya = kohyaFile([{
      name: 'lora_te_model_layers_0_self_attn_q_proj', alpha: 2,
      b: { rows: 256, cols: 2, data: Float64Array.from({ length: 512 }, g) }, a: { rows: 2, cols: 256, data: Float64Array.from({ length: 512 }, g) },
    }]);
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], 'style.safetensors': kohya });
    const demo = await session.open('?mode=convert');
    const { page } = demo;
    await upload(page, 'job-adapter-input', join(dir, 'style.safetensors'));
    await upload(page, 'job-target-input', join(dir, BASE));
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    await page.waitForFunction(() => !document.getElementById('job-errors')!.hidden, { timeout: 30_000 });
    const lines = await page.$$eval('#job-error-list li', (items) => items.map((li) => li.textContent));
    expect(lines).toEqual(['style.safetensors: a kohya adapter\'s module names (lora_unet_…, flattened) are not mapped to llama.cpp\'s tensor names; give the PEFT adapter']);
    const alert = await (await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 })).jsonValue();
    expect(alert).toBe(`The conversion failed: ${lines[0]}`);
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);
  }, 60_000);
});
