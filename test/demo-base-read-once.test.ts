/**
 * A base's headers are read from disk once: on pick. The plan, the checks after a weight moves and
 * the merge take the same bytes again from that reading while the base is the very File picked;
 * counted here as the merge worker's File.slice calls on the base that touch its header.
 */
import { join } from 'node:path';
import type { Page, WebWorker } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const fixture = llamaWithPeft(64);
const BASE = 'llama.safetensors';
/** Where the base's header ends: its 8-byte length, then that many bytes of JSON. */
const HEADER_END = 8 + Number(new DataView(fixture.base.buffer, fixture.base.byteOffset).getBigUint64(0, true));

/** The merge worker, with File.slice on the base counted from now on (start and end of each). */
async function countBaseSlices(page: Page): Promise<WebWorker> {
  const find = () => page.workers().find((w) => /merge-worker/.test(w.url()));
  for (let i = 0; i < 100 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
  const worker = find();
  if (!worker) throw new Error(`no merge worker among ${page.workers().map((w) => w.url()).join(', ')}`);
  await worker.evaluate((name: string) => {
    const scope = self as unknown as { baseSlices: [number, number][] };
    scope.baseSlices = [];
    const slice = Blob.prototype.slice;
    Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
      if (this instanceof File && this.name === name) scope.baseSlices.push([start ?? 0, end ?? this.size]);
      return slice.call(this, start, end, type);
    };
  }, BASE);
  return worker;
}

/** The slices counted since the last call, and the count started again. */
const takeSlices = (worker: WebWorker) => worker.evaluate(() => {
  const scope = self as unknown as { baseSlices: [number, number][] };
  return scope.baseSlices.splice(0);
});
const touchingHeader = (slices: [number, number][]) => slices.filter(([start]) => start < HEADER_END);

describe('a base read once', PAGE_RETRY, () => {
  it('the plan, a check and the merge read none of the base header the pick read', async () => {
    const dir = session.dirs.make(fixture.files);
    const demo = await session.open('?backend=cpu');
    const { page } = demo;
    const worker = await countBaseSlices(page);

    await upload(page, 'base-input', join(dir, BASE));
    await page.waitForFunction(() => /^safetensors/.test(document.querySelector('[data-testid="base-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    // The pick read the header (the count sees the reads it must).
    expect(touchingHeader(await takeSlices(worker)).length).toBeGreaterThan(0);

    await upload(page, 'adapter-folder-input', join(dir, 'llama-lora'));
    await planReady(page);
    await mergeEnabled(page);
    // A weight moved: the plan's problems are checked again, on the base's headers.
    await page.$eval('[data-testid="adapter-weight-number"]', (input) => {
      (input as HTMLInputElement).value = '0.5';
      input.dispatchEvent(new Event('input', { bubbles: true }));
      input.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await page.click('[data-testid="merge-button"]');
    await page.waitForSelector('[data-testid="download-link"]', { timeout: 60_000 });
    const after = await takeSlices(worker);
    // The merge read the tensors (past the header): the count sees the base's reads after the pick.
    expect(after.length).toBeGreaterThan(0);
    expect(touchingHeader(after), JSON.stringify(after)).toEqual([]);

    // The same file picked again is another File: read again, as any new pick is.
    await upload(page, 'base-input', join(dir, BASE));
    await page.waitForFunction(() => /^safetensors/.test(document.querySelector('[data-testid="base-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    await planReady(page);
    expect(touchingHeader(await takeSlices(worker)).length).toBeGreaterThan(0);
    expect(await text(page, '[data-testid="base-summary"] b')).toBe(BASE);
  }, 120_000);
});
