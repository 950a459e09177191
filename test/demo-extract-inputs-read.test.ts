/**
 * Extract's two models read the moment each is picked, as the merge's base is: a file that is no
 * model is refused at once in the library's one line, under that model and said aloud, Extract off
 * with a line naming it; a model is summed up (container, tensors, type, size) and said politely.
 * A model picked again in its place replaces the refusal. Keyboard, labels, both themes, 390 px.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { formatBytes } from '../src/index.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, openChooser, seriousViolations, tabTo, text, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const fixture = llamaWithPeft(63);
const SHOTS = process.env.DEMO_SHOTS;

/** A model's line once read (not the "Reading…" placeholder), and whether it is shown as an error. */
async function modelFacts(page: Page, which: 'base' | 'tuned') {
  const selector = `[data-testid="job-${which}-facts"]`;
  await page.waitForFunction((s: string) => {
    const facts = document.querySelector(s);
    return facts && !/^Reading/.test(facts.textContent ?? '');
  }, { timeout: 30_000 }, selector);
  return { line: await text(page, selector), isError: await page.$eval(selector, (e) => e.classList.contains('error-text')) };
}
const runDisabled = (page: Page) => page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled);
const alertText = (page: Page) => page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 }).then((h) => h.jsonValue());

describe('extract: the base and the fine-tuned model read as soon as each is picked', PAGE_RETRY, () => {
  it('a fine-tuned "model" that is no model is refused at once under it and aloud, Extract off; a good one is summed up', async () => {
    const notes = 'notes.safetensors';
    const dir = session.dirs.make({
      'llama-base.safetensors': fixture.base,
      'llama-tuned.safetensors': fixture.base,
      [notes]: 'These are my notes about the model, saved with the wrong name.\n',
    });
    const refused = `${notes}: not a safetensors file (it does not start with a header length and a JSON header): another kind of file, or a damaged one; check that this is the file you meant, or download it again`;
    // Five F16 tensors: q_proj 16×16 and down_proj 16×40 in two layers, embed_tokens 50×16.
    const line = `safetensors · 5 tensors · F16 · ${formatBytes(2 * (2 * 16 * 16 + 2 * 16 * 40 + 50 * 16))} of weights`;
    for (const scheme of ['light', 'dark'] as const) {
      const demo = await session.open('?backend=cpu&mode=extract');
      const { page } = demo;
      await page.setViewport({ width: 390, height: 900 });
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);

      await upload(page, 'job-base-input', join(dir, 'llama-base.safetensors'));
      expect(await modelFacts(page, 'base')).toEqual({ line, isError: false });
      expect(await announced(page, /^Base read/)).toBe(`Base read: llama-base.safetensors, ${line.replaceAll(' · ', ', ')}.`);

      await upload(page, 'job-tuned-input', join(dir, notes));
      expect(await modelFacts(page, 'tuned')).toEqual({ line: refused, isError: true });
      expect(await alertText(page)).toBe(refused);
      expect(await runDisabled(page)).toBe(true);
      expect(await text(page, '[data-testid="job-blocked"]')).toBe(`${notes} could not be read: pick another.`);
      expect(await seriousViolations(page)).toEqual([]);
      if (SHOTS) await (await page.$('#job-models-box'))!.screenshot({ path: join(SHOTS, `extract-inputs-refused-390-${scheme}.png`) });

      // The fine-tuned model picked again, by keyboard: the refusal goes, Extract comes on.
      await tabTo(page, '#job-tuned-files-button');
      const chooser = await openChooser(page, 'Enter');
      await chooser.accept([join(dir, 'llama-tuned.safetensors')]);
      expect(await modelFacts(page, 'tuned')).toEqual({ line, isError: false });
      expect(await announced(page, /^Fine-tuned model read/)).toBe(`Fine-tuned model read: llama-tuned.safetensors, ${line.replaceAll(' · ', ', ')}.`);
      await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
      expect(await text(page, '[data-testid="job-blocked"]')).toBe('');
      if (SHOTS) await (await page.$('#job-models-box'))!.screenshot({ path: join(SHOTS, `extract-inputs-read-390-${scheme}.png`) });
      await page.close();
    }
  }, 180_000);

  it('the extraction reads neither model\'s header again: the headers read on pick are used', async () => {
    const dir = session.dirs.make({ 'llama-base.safetensors': fixture.base, 'llama-tuned.safetensors': llamaWithPeft(69).base });
    const demo = await session.open('?backend=cpu&mode=extract');
    const { page } = demo;
    await upload(page, 'job-base-input', join(dir, 'llama-base.safetensors'));
    await upload(page, 'job-tuned-input', join(dir, 'llama-tuned.safetensors'));
    expect((await modelFacts(page, 'base')).isError).toBe(false);
    expect((await modelFacts(page, 'tuned')).isError).toBe(false);
    // The job worker (started by the first pick) counts File.slice on the two models from now on.
    const worker = page.workers().find((w) => /job-worker/.test(w.url()));
    if (!worker) throw new Error(`no job worker among ${page.workers().map((w) => w.url()).join(', ')}`);
    await worker.evaluate(() => {
      const scope = self as unknown as { slices: [string, number][] };
      scope.slices = [];
      const slice = Blob.prototype.slice;
      Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
        if (this instanceof File) scope.slices.push([this.name, start ?? 0]);
        return slice.call(this, start, end, type);
      };
    });
    await typeInto(page, '#job-extract-value', '2');
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await page.waitForSelector('[data-testid="job-download-link"]', { timeout: 60_000 });
    const slices = await worker.evaluate(() => (self as unknown as { slices: [string, number][] }).slices);
    // Both headers are 8 bytes of length and the same JSON (same names, shapes and offsets).
    const headerEnd = 8 + Number(new DataView(fixture.base.buffer, fixture.base.byteOffset).getBigUint64(0, true));
    for (const name of ['llama-base.safetensors', 'llama-tuned.safetensors']) {
      const of = slices.filter(([file]) => file === name);
      expect(of.length, name).toBeGreaterThan(0); // the tensors were read
      expect(of.filter(([, start]) => start < headerEnd), name).toEqual([]);
    }
  }, 120_000);
});
