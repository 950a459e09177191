/**
 * What the page says once a run is over and the person moves on, in headless Chromium: the line
 * under the progress bar ("Merged 991 KB…", "Combined 4 modules…", a failure) speaks of the run
 * it follows, so it goes when the inputs change, and never stays as news of the new inputs.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();

/** The bar's value and the line under it. */
async function progressLine(page: Page, bar: string, line: string) {
  return { value: await page.$eval(bar, (p) => (p as HTMLProgressElement).value), line: await text(page, line) };
}
const mergeLine = (page: Page) => progressLine(page, '[data-testid="progress"]', '[data-testid="progress-text"]');
const jobLine = (page: Page) => progressLine(page, '[data-testid="job-progress"]', '[data-testid="job-progress-text"]');

describe('the page after a run', PAGE_RETRY, () => {
  it('a new base or adapter clears the last merge’s line and bar; a weight moved keeps them beside the out-of-date result', async () => {
    const fixture = llamaWithPeft(31);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);
    expect(await mergeLine(page)).toEqual({ value: 1, line: expect.stringMatching(/^Merged [\d.]+ KB/) });

    // The sample's result is withdrawn with its inputs: nothing here is merged yet.
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    expect(await mergeLine(page)).toEqual({ value: 0, line: '' });

    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    const merged = await mergeLine(page);
    expect(merged.line).toMatch(/^Merged [\d.]+ KB/);

    // A weight moved: the result stays, marked out of date, and so does the line that made it.
    await page.evaluate(() => {
      const slider = document.querySelector<HTMLInputElement>('[data-testid="adapter-weight"]')!;
      slider.value = '0.5';
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    });
    expect(await page.$$eval('[data-testid="download-link-stale"]', (els) => els.length)).toBe(1);
    expect(await mergeLine(page)).toEqual(merged);

    // The adapter removed: its result is gone, and so is the line.
    await page.click('[data-testid="adapter"] .remove');
    expect(await page.$$eval('#downloads a', (els) => els.length)).toBe(0);
    expect(await mergeLine(page)).toEqual({ value: 0, line: '' });
  });

  it('in combine mode, another adapter or another mode clears the last job’s line and bar', async () => {
    const fixture = llamaWithPeft(32);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open('?mode=combine');
    const peft = [join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors')];
    await upload(page, 'job-adapter-input', ...peft);
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');
    expect(await jobLine(page)).toEqual({ value: 1, line: expect.stringMatching(/^Combined 4 modules in /) });

    await upload(page, 'job-adapter-input', ...peft);
    expect(await jobLine(page)).toEqual({ value: 0, line: '' });

    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');
    expect((await jobLine(page)).line).toMatch(/^Combined 4 modules in /);
    await page.click('[data-testid="mode-resize"]');
    expect(await jobLine(page)).toEqual({ value: 0, line: '' });
  });
});
