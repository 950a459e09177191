/**
 * What stays in browser storage (OPFS), listed there: each mode's live result stays while another
 * mode runs; an out-of-date result stays, marked, until any mode makes a new result, which deletes
 * it (its links gone with it); and a new visit deletes whatever the last one left.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { count, mergeEnabled, planReady, text, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { dense, gaussian } from './helpers/svd-reference.js';

const session = useDemoSession();

/** The page's folder in browser storage, each entry with the files under it (sorted). */
function stored(page: Page): Promise<Record<string, string[]>> {
  return page.evaluate(async () => {
    const list = async (dir: FileSystemDirectoryHandle, prefix = ''): Promise<string[]> => {
      const out: string[] = [];
      for await (const [name, handle] of (dir as unknown as AsyncIterable<[string, FileSystemHandle]>)) {
        if (handle.kind === 'directory') out.push(...await list(handle as FileSystemDirectoryHandle, `${prefix}${name}/`));
        else out.push(`${prefix}${name}`);
      }
      return out.sort();
    };
    const root = await navigator.storage.getDirectory();
    const names: string[] = [];
    for await (const name of (root as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
    if (!names.includes('loramerge-merges')) return {};
    const jobs = await root.getDirectoryHandle('loramerge-merges');
    const entries: Record<string, string[]> = {};
    for await (const [name, handle] of (jobs as unknown as AsyncIterable<[string, FileSystemHandle]>)) entries[name] = await list(handle as FileSystemDirectoryHandle);
    return entries;
  });
}

/** The stored results by what they hold (their folder names are made up per run). */
const held = (entries: Record<string, string[]>) => Object.entries(entries).map(([name, files]) => `${name.endsWith('-zip') ? 'zip: ' : ''}${files.join(', ')}`).sort();

/** Waits until what is stored is `want` (deletions run in a worker, after the page has moved on). */
async function storedBecomes(page: Page, want: string[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (JSON.stringify(held(await stored(page))) === JSON.stringify(want)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(held(await stored(page))).toEqual(want);
}

async function switchTo(page: Page, mode: string): Promise<void> {
  await page.click(`[data-testid="mode-${mode}"]`);
  await page.waitForFunction((m: string) => document.querySelector<HTMLInputElement>(`[data-testid="mode-${m}"]`)!.checked, {}, mode);
}

const MERGED = ['llama.safetensors'];
const RESIZED = ['adapter_config.json', 'adapter_model.safetensors'];
const RESIZED_ZIP = ['zip: PEFT adapter-resized.zip'];

describe('results in browser storage', PAGE_RETRY, () => {
  it('live results of each mode stay; out-of-date ones go at the next result of any mode; a new visit starts empty', async () => {
    const files: Record<string, Uint8Array | string> = { ...llamaWithPeft(66).files };
    const rand = seededRandom(66);
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj'].map((name) => ({
      name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, 16, () => gaussian(rand)),
    }));
    for (const [path, content] of Object.entries(peftFiles(modules))) files[`first/${path}`] = content;
    const dir = session.dirs.make(files);
    const demo = await session.open('?backend=cpu');
    const { page } = demo;
    await storedBecomes(page, []);

    // A merge: its file stored.
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForSelector('[data-testid="download-link"]', { timeout: 60_000 });
    await storedBecomes(page, [MERGED.join(', ')]);

    // A resize while the merge is live: both stored (the resize's PEFT folder, and its zip).
    await switchTo(page, 'resize');
    await upload(page, 'job-adapter-input', join(dir, 'first/adapter_config.json'), join(dir, 'first/adapter_model.safetensors'));
    await typeInto(page, '#job-resize-value', '1');
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await page.waitForSelector('[data-testid="job-download-link"]', { timeout: 60_000 });
    await storedBecomes(page, [MERGED.join(', '), RESIZED.join(', '), ...RESIZED_ZIP].sort());

    // The resize's rank changed: out of date, still stored and offered, marked.
    await typeInto(page, '#job-resize-value', '2');
    await page.waitForSelector('[data-testid="job-download-link-stale"]', { timeout: 10_000 });
    expect(await text(page, '#job-results-note')).toMatch(/^Out of date: .* deleted from browser storage when the page makes its next result, of any mode/);
    await storedBecomes(page, [MERGED.join(', '), RESIZED.join(', '), ...RESIZED_ZIP].sort());

    // A merge at another weight: the new merge replaces the old one, and the resize out of date goes with it.
    await switchTo(page, 'merge');
    await typeInto(page, '[data-testid="adapter-weight-number"]', '0.5');
    await page.keyboard.press('Tab');
    await page.waitForSelector('[data-testid="download-link-stale"]', { timeout: 10_000 });
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="merge-button"]');
    await page.waitForSelector('[data-testid="download-link"]', { timeout: 60_000 });
    await storedBecomes(page, [MERGED.join(', ')]);
    await switchTo(page, 'resize');
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#job-results')!.hidden, { timeout: 10_000 });
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);

    // A new visit: what this one left is deleted as the page starts.
    await page.reload({ waitUntil: 'load' });
    await storedBecomes(page, []);
  }, 180_000);
});
