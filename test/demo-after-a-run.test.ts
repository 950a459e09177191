/**
 * What the page says once a run is over and the person moves on, in headless Chromium: the line
 * under the progress bar ("Merged 991 KB…", "Combined 4 modules…", a failure) speaks of the run
 * it follows, so it goes when the inputs change, and never stays as news of the new inputs. And
 * where the focus is, by keyboard alone: a pressed Merge (or Combine) is disabled under it, so
 * Cancel takes it, and a cancelled or failed run gives it back to the button that runs again.
 * And a result made with other settings than the current ones is marked out of date in every
 * link and button it offers, the zip of a folder model's files included; and files dropped
 * while a merge runs are refused in words, not ignored; a backend chosen after a merge stays
 * the one the header names; on a 390 px phone the merge's options keep their labels by them; and
 * the alert and status regions hold no error or result that is gone; and while the sample is
 * made, the settings it sets itself cannot be changed.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { announced, dropFiles, mergeEnabled, planReady, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft, sdxlWithKohya } from './helpers/page-fixtures.js';
import { dense, gaussian } from './helpers/svd-reference.js';

const session = useDemoSession();

/** The bar's value and the line under it. */
async function progressLine(page: Page, bar: string, line: string) {
  return { value: await page.$eval(bar, (p) => (p as HTMLProgressElement).value), line: await text(page, line) };
}
const mergeLine = (page: Page) => progressLine(page, '[data-testid="progress"]', '[data-testid="progress-text"]');
const jobLine = (page: Page) => progressLine(page, '[data-testid="job-progress"]', '[data-testid="job-progress-text"]');
/** How long a line says the run took (its last ` in <1 s`, ` in 12 s`…). */
const took = (line: string) => line.match(/ in (<?[\d.]+ s|\d+ min \d+ s)\b/g)?.at(-1);
/** The focused element's id ('' for the body: focus lost). */
const focused = (page: Page) => page.evaluate(() => (document.activeElement === document.body ? '' : document.activeElement?.id ?? ''));

/**
 * A merge that runs a while on any machine (as demo.test's cancel): one 4096 × 4096 f32 weight
 * under a rank-256 LoRA, to merge on the CPU.
 */
function slowMergeDir(seed: number): string {
  const rand = seededRandom(seed);
  const noise = (n: number, scale: number) => {
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = (rand() - 0.5) * scale;
    return new Uint8Array(values.buffer);
  };
  const n = 4096, r = 256;
  return session.dirs.make({
    'model.safetensors': buildSafetensors([{ name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [n, n], data: noise(n * n, 0.1) }]),
    'lora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r, target_modules: ['down_proj'] }),
    'lora/adapter_model.safetensors': buildSafetensors([
      { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight', dtype: 'F32', shape: [r, n], data: noise(r * n, 0.02) },
      { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight', dtype: 'F32', shape: [n, r], data: noise(n * r, 0.02) },
    ]),
  });
}

describe('the page after a run', PAGE_RETRY, () => {
  it('a new base or adapter clears the last merge’s line and bar; a weight moved keeps them beside the out-of-date result', async () => {
    const fixture = llamaWithPeft(31);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);
    expect(await mergeLine(page)).toEqual({ value: 1, line: expect.stringMatching(/^Merged [\d.]+ KB/) });

    // The sample's result is withdrawn with its inputs: nothing here is merged yet.
    await announced(page, /^Merged /);
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    expect(await mergeLine(page)).toEqual({ value: 0, line: '' });
    // Nor does the hidden status region still say "Merged …" to a screen reader going through the
    // page: it is empty, or already says what the new base is once read ("Base read: …", which
    // may come first on a fast machine).
    expect(await text(page, '[data-testid="status"]')).toMatch(/^(|Base read: llama\.safetensors, .*)$/);

    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    const merged = await mergeLine(page);
    expect(merged.line).toMatch(/^Merged [\d.]+ KB/);
    // The line and the result's note give the merge's time alike ("<1 s" in both, never "0.0 s" beside it).
    expect(took(merged.line)).toBeDefined();
    expect(took(await text(page, '#results-note'))).toBe(took(merged.line));

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

  it('after the sample, the plan asks only for what is missing: a base for the user’s adapter, an adapter for their base', async () => {
    const fixture = llamaWithPeft(35);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    expect(await text(page, '[data-testid="plan-status"]')).toBe('Pick a base model and at least one adapter to see what will change.');
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);
    // The user's adapter replaces the sample's, and the sample's base goes with it.
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    expect(await page.$eval('[data-testid="base-summary"]', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await text(page, '[data-testid="plan-status"]')).toBe('Pick a base model to see what will change.');
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe('Pick a base model first.');
    await page.click('[data-testid="adapter"] .remove');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    expect(await text(page, '[data-testid="plan-status"]')).toBe('Add at least one adapter to see what will change.');
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe('Add at least one adapter.');
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
    expect(took((await jobLine(page)).line)).toBeDefined();
    expect(took(await text(page, '#job-results-note'))).toBe(took((await jobLine(page)).line));

    await upload(page, 'job-adapter-input', ...peft);
    expect(await jobLine(page)).toEqual({ value: 0, line: '' });

    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');
    expect((await jobLine(page)).line).toMatch(/^Combined 4 modules in /);
    await page.click('[data-testid="mode-resize"]');
    expect(await jobLine(page)).toEqual({ value: 0, line: '' });
  });

  it('by keyboard: Enter on Merge puts the focus on Cancel; Enter there cancels and puts it back on Merge', async () => {
    const dir = slowMergeDir(33);
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'model.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'lora/adapter_config.json'), join(dir, 'lora/adapter_model.safetensors'));
    await mergeEnabled(page);
    await page.focus('body');
    await tabTo(page, '[data-testid="merge-button"]');
    await page.keyboard.press('Enter');
    expect(await focused(page)).toBe('cancel-button');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /Cancelled/.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    expect(await page.$$eval('#downloads a', (els) => els.length)).toBe(0);
    expect(await focused(page)).toBe('merge-button');
  });

  it('by keyboard: a combination that fails gives the focus back to Combine', async () => {
    // Two adapters whose updates have other shapes: the combination fails with a problem per module.
    const rand = seededRandom(34);
    const adapter = (inFeatures: number) => peftFiles(['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'].map((name) => ({
      name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, inFeatures, () => gaussian(rand)),
    })));
    const files: Record<string, Uint8Array | string> = {};
    for (const [folder, inFeatures] of [['narrow', 16], ['wide', 24]] as const) {
      for (const [path, content] of Object.entries(adapter(inFeatures))) files[`${folder}/${path}`] = content;
    }
    const dir = session.dirs.make(files);
    const { page } = await session.open('?mode=combine');
    for (const folder of ['narrow', 'wide']) await upload(page, 'job-adapter-input', join(dir, folder, 'adapter_config.json'), join(dir, folder, 'adapter_model.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.focus('body');
    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="job-errors"]')!.hidden, { timeout: 30_000 });
    expect(await text(page, '#job-errors-heading')).toBe('The combination failed: 2 problems');
    expect(await focused(page)).toBe('job-run');
  });

  it('a folder model’s zip, packed or still to pack, is marked out of date with the other links, and current again with the weight back', async () => {
    const { page } = await session.open();
    const setWeight = (weight: string) => page.evaluate((w) => {
      const slider = document.querySelector<HTMLInputElement>('[data-testid="adapter-weight"]')!;
      slider.value = w;
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    }, weight);
    /** Each download link and button by test id, with its text. */
    const offered = () => page.$$eval('#downloads a, #downloads button', (els) => els.map((e) => `${(e as HTMLElement).dataset.testid}: ${e.textContent}`));
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);
    // Packed while current, then a weight moved.
    await page.click('[data-testid="zip-button"]');
    await downloadBytes(page, 'download-zip');
    await setWeight('0.5');
    expect(await offered()).toEqual([
      'download-link-stale: Out of date: Download model.safetensors',
      'download-link-extra-stale: Out of date: Download config.json',
      'download-zip-stale: Out of date: Download sample-small-merged.zip',
    ]);
    await setWeight('1');
    expect((await offered())[2]).toBe('download-zip: Download sample-small-merged.zip');

    // Merged again, the weight moved before packing: the button says so, and so does the zip it packs.
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => !!document.querySelector('[data-testid="zip-button"]'), { timeout: 90_000 });
    await setWeight('0.5');
    expect((await offered())[2]).toBe('zip-button-stale: Out of date: Pack all files into sample-small-merged.zip');
    await page.click('[data-testid="zip-button-stale"]');
    await page.waitForFunction(() => !!document.querySelector('[data-testid="download-zip-stale"]'), { timeout: 30_000 });
    expect((await offered())[2]).toBe('download-zip-stale: Out of date: Download sample-small-merged.zip');
  });

  it('files dropped during a merge are refused aloud and on the page, not ignored in silence', async () => {
    const dir = slowMergeDir(36);
    const llama = llamaWithPeft(36);
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'model.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'lora/adapter_config.json'), join(dir, 'lora/adapter_model.safetensors'));
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await dropFiles(page, 'adapter-drop', { 'adapter_config.json': new TextEncoder().encode(llama.files['llama-lora/adapter_config.json'] as string), 'adapter_model.safetensors': llama.adapter });
    const refusal = 'Nothing dropped was added, as a merge was running: drop it again when that is over.';
    expect(await page.$eval('[data-testid="page-error"]', (e) => ((e as HTMLElement).hidden ? '(hidden)' : e.textContent))).toBe(refusal);
    await page.waitForFunction((m: string) => document.querySelector('[data-testid="alert"]')!.textContent === m, { timeout: 30_000 }, refusal);
    expect(await page.$$eval('[data-testid="adapter"]', (els) => els.length)).toBe(1);
    await page.click('[data-testid="cancel-button"]');
    await page.waitForFunction(() => /Cancelled/.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    // Still on the page once the merge is over, and still true (it says what was, not what is).
    expect(await text(page, '[data-testid="page-error"]')).toBe(refusal);
  });

  it('the backend chosen after a merge stays in the header when the page redraws, beside the result made on the old one', async () => {
    const fixture = llamaWithPeft(37);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    // Whichever kind "the fastest here" ran on, the person now picks the other one.
    const ranOn = (await text(page, '[data-testid="backend"]')).split(' · ')[0];
    const other = ranOn === 'cpu' ? 'webgpu' : 'cpu';
    await page.select('[data-testid="backend-choice"]', other);
    await page.waitForFunction((kind: string) => document.getElementById('backend')!.textContent!.startsWith(`${kind} · `), { timeout: 30_000 }, other);
    // A dtype chosen and taken back: the result is current again, and the page redraws.
    await page.select('[data-testid="out-dtype"]', 'f16');
    await page.select('[data-testid="out-dtype"]', 'same');
    expect(await page.$$eval('[data-testid="download-link"]', (els) => els.length)).toBe(1);
    expect((await text(page, '[data-testid="backend"]')).split(' · ')[0]).toBe(other);
    expect(await text(page, '#results-note')).toMatch(ranOn === 'cpu' ? /^Merged on CPU/ : /^Merged on WebGPU/);
  });

  it('on a 390 px phone, the merge’s options keep each label beside or above its menu, and each menu’s choice unclipped', async () => {
    const fixture = llamaWithPeft(38);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await mergeEnabled(page);
    const layout = await page.evaluate(() => {
      const box = (id: string) => document.getElementById(id)!.getBoundingClientRect();
      const label = (id: string) => document.querySelector(`label[for="${id}"]`)!.getBoundingClientRect();
      const canvas = document.createElement('canvas').getContext('2d')!;
      // Room left in a menu beside its chosen text: Chrome draws its arrow in about 20 px of it.
      const room = (id: string) => {
        const select = document.getElementById(id) as HTMLSelectElement;
        const style = getComputedStyle(select);
        canvas.font = style.font;
        return select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - canvas.measureText(select.selectedOptions[0].text).width;
      };
      return {
        // "Save to" starts below the dtype menu's line, not at its end.
        saveToBelowDtype: label('destination').top >= box('out-dtype').bottom,
        saveToAboveItsMenu: label('destination').bottom <= box('destination').top + 1,
        rooms: [room('out-dtype'), room('destination')],
        scrollWidth: document.documentElement.scrollWidth,
      };
    });
    expect(layout.saveToBelowDtype).toBe(true);
    expect(layout.saveToAboveItsMenu).toBe(true);
    for (const room of layout.rooms) expect(room).toBeGreaterThanOrEqual(16);
    expect(layout.scrollWidth).toBeLessThanOrEqual(390);
  });

  it('while the sample is made, the merge’s settings cannot be changed: the sample sets the dtype itself when it arrives, so a choice made meanwhile was lost', async () => {
    const { page } = await session.open();
    // Read the controls at the moment the page says the sample is being made.
    await page.evaluate(() => {
      const seen: boolean[][] = [];
      (window as unknown as { seenWhileMaking: boolean[][] }).seenWhileMaking = seen;
      const line = document.querySelector('[data-testid="progress-text"]')!;
      new MutationObserver(() => {
        if (!/^Generating the /.test(line.textContent ?? '')) return;
        seen.push(['out-dtype', 'dtype-merged-only', 'destination', 'backend-choice', 'threads'].map((id) => (document.getElementById(id) as HTMLSelectElement).disabled));
      }).observe(line, { childList: true, characterData: true, subtree: true });
    });
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);
    const seen = await page.evaluate(() => (window as unknown as { seenWhileMaking: boolean[][] }).seenWhileMaking);
    expect(seen.length).toBeGreaterThan(0);
    for (const controls of seen) expect(controls).toEqual([true, true, true, true, true]);
    // And free again once it is merged.
    expect(await page.$eval('[data-testid="out-dtype"]', (s) => (s as HTMLSelectElement).disabled)).toBe(false);
    expect(await page.$eval('[data-testid="threads"]', (s) => (s as HTMLInputElement).disabled)).toBe(false);
  });

  it('the alert region empties once the plan’s error is gone, so a screen reader going through the page does not meet it as current', async () => {
    const llama = llamaWithPeft(39);
    const sdxl = sdxlWithKohya(39);
    const dir = session.dirs.make({ ...llama.files, ...sdxl.files });
    const { page } = await session.open();
    const alert = () => text(page, '[data-testid="alert"]');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'sdxl-style.safetensors'));
    await page.waitForFunction(() => /diffusion UNet/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 30_000 });
    await page.click('[data-testid="adapter"]:nth-child(2) .remove');
    await announced(page, /^Plan ready: 4 modules matched\./);
    expect(await alert()).toBe('');
    // Weight 0 for a moment is a warning, not an error: nothing comes back to the alert.
    await page.evaluate(() => {
      const slider = document.querySelector<HTMLInputElement>('[data-testid="adapter-weight"]')!;
      slider.value = '0';
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await announced(page, /^Warning: PEFT adapter: weight 0/);
    expect(await alert()).toBe('');
  });
});
