/**
 * The page while its work runs, and the header's backend requests, in headless Chromium, used as a
 * person would (keyboard where a person would use one):
 * - the "CPU threads" box asks the page's worker for a backend only for a committed count (Tab,
 *   Enter, an arrow key), never per key typed, never for a refused entry, never for the count it
 *   already has, and counts committed while one is on its way wait for it, the last asked for
 *   after it; counted at the page's worker, as the page posts them; a merge started meanwhile
 *   runs on the backend the menu shows, not on the one the worker was last asked for;
 * - while an adapter job runs (held at the job worker's door, so it is mid-way for as long as the
 *   test needs), Cancel is the only control that can be used: the header's "Run on" and "CPU
 *   threads", the mode switch, the pickers, the weights and the options are off, and each comes
 *   back after a failure, a cancel and a success; a file picked meanwhile is refused in words;
 *   axe-core finds nothing serious in either theme, at 1280 and at 390 px;
 * - and the same while a merge runs; and a base picked while the save picker is open (not modal on
 *   every system) is not merged under the old base's plan.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { backends, hold, release, watchWorkers, type WorkerWatch } from './helpers/worker-watch.js';
import { dense, gaussian } from './helpers/svd-reference.js';

const session = useDemoSession();

/**
 * Every control a person can reach and change now: shown, not disabled (file inputs are opened
 * by their buttons), named by id, accessible label or test id.
 */
const usable = (page: Page) => page.$$eval('input, select, button, textarea', (els) => (els as HTMLInputElement[])
  .filter((e) => !e.disabled && e.type !== 'file' && e.checkVisibility())
  .map((e) => e.id || e.getAttribute('aria-label') || e.dataset.testid || e.outerHTML.slice(0, 60)));

/** Replaces the focused box's entry by keyboard (select all, then the keys). */
async function retype(page: Page, entry: string): Promise<void> {
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  await page.keyboard.type(entry);
}

const focused = (page: Page) => page.evaluate(() => document.activeElement?.id ?? '');
const autoThreads = (page: Page) => page.evaluate(() => Math.min(Math.max(1, Math.floor(navigator.hardwareConcurrency || 1)), 8));
const headerSays = (page: Page, pattern: RegExp) =>
  page.waitForFunction((source: string) => new RegExp(source).test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 }, pattern.source);

/** A page on the CPU backend, its workers watched, with a Llama and its PEFT LoRA (seed `seed`) planned and Merge on. */
async function llamaMergeReady(seed: number): Promise<{ dir: string; page: Page }> {
  const dir = session.dirs.make(llamaWithPeft(seed).files);
  const { page } = await session.open('?backend=cpu');
  await watchWorkers(page);
  await upload(page, 'base-input', join(dir, 'llama.safetensors'));
  await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
  await planReady(page);
  await mergeEnabled(page);
  await headerSays(page, /^cpu · /);
  return { dir, page };
}

/** Two PEFT adapters on q_proj and v_proj of other input widths (16, 24): combined, they fail with a problem per module. */
function mismatchedAdapters(seed: number): string {
  const rand = seededRandom(seed);
  const files: Record<string, Uint8Array | string> = {};
  for (const [folder, inFeatures] of [['narrow', 16], ['wide', 24]] as const) {
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'].map((name) => ({
      name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, inFeatures, () => gaussian(rand)),
    }));
    for (const [path, content] of Object.entries(peftFiles(modules))) files[`${folder}/${path}`] = content;
  }
  return session.dirs.make(files);
}

describe('the header\'s backend requests, and the page while its work runs', PAGE_RETRY, () => {
  it('the CPU threads box asks for a backend once per committed new count: not per key, not for a refused entry, not for the count it has', async () => {
    const { page } = await session.open('?backend=cpu');
    await watchWorkers(page);
    const auto = await autoThreads(page);
    await headerSays(page, new RegExp(`^cpu · CPU \\(WebAssembly SIMD, ${auto} threads?; requested\\)$`));
    expect(await backends(page)).toEqual([{ choice: 'cpu', threads: auto }]);

    // Typed key by key, 1 then 10: nothing is asked until Tab commits it, then once, for 10.
    await page.focus('body');
    await tabTo(page, '[data-testid="threads"]');
    await retype(page, '10');
    expect(await backends(page)).toHaveLength(1);
    await page.keyboard.press('Tab');
    await headerSays(page, /^cpu · CPU \(WebAssembly SIMD, 10 threads; requested\)$/);
    expect(await backends(page)).toEqual([{ choice: 'cpu', threads: auto }, { choice: 'cpu', threads: 10 }]);

    // A refused entry asks for nothing (it is read out); nor does the count it had, typed again.
    await page.keyboard.down('Shift');
    await page.keyboard.press('Tab');
    await page.keyboard.up('Shift');
    expect(await focused(page)).toBe('threads');
    await retype(page, '0');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /^CPU threads is 0: /.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 10_000 });
    await retype(page, '10');
    await page.keyboard.press('Enter');
    expect(await page.$eval('[data-testid="threads"]', (e) => e.getAttribute('aria-invalid'))).toBe('false');
    expect(await backends(page)).toHaveLength(2);
    expect(await text(page, '#backend')).toBe('cpu · CPU (WebAssembly SIMD, 10 threads; requested)');

    // Enter commits a new count where the focus is.
    await retype(page, '3');
    await page.keyboard.press('Enter');
    await headerSays(page, /^cpu · CPU \(WebAssembly SIMD, 3 threads; requested\)$/);
    expect((await backends(page)).map((b) => b.threads)).toEqual([auto, 10, 3]);
    // So does each arrow key; counts committed while a backend is on its way wait for it, and only
    // the last is asked for after it (the worker holding the first until the keys are pressed).
    await hold(page, 'backend');
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowUp');
    expect(await page.$eval('[data-testid="threads"]', (e) => (e as HTMLInputElement).value)).toBe('6');
    expect((await backends(page)).map((b) => b.threads)).toEqual([auto, 10, 3, 4]);
    expect(await text(page, '#backend')).toBe('starting…');
    await release(page);
    await headerSays(page, /^cpu · CPU \(WebAssembly SIMD, 6 threads; requested\)$/);
    expect((await backends(page)).map((b) => b.threads)).toEqual([auto, 10, 3, 4, 6]);
    expect(await focused(page)).toBe('threads');
  });

  it('a merge runs on the backend the header shows as it starts, while the header\'s request for it still waits its turn', async () => {
    const { page } = await llamaMergeReady(83);
    // A new count on its way (held at the worker), then "Run on" moved to WebGPU by keyboard: that
    // request waits for the first; Merge pressed meanwhile runs on WebGPU, as the menu says.
    await hold(page, 'backend');
    await page.focus('[data-testid="threads"]');
    await retype(page, '1');
    await page.keyboard.press('Enter');
    await page.focus('[data-testid="backend-choice"]');
    await page.keyboard.press('ArrowUp');
    expect(await page.$eval('#backend-choice', (e) => (e as HTMLSelectElement).value)).toBe('webgpu');
    expect((await backends(page)).slice(1)).toEqual([{ choice: 'cpu', threads: 1 }]);
    await page.click('[data-testid="merge-button"]');
    // The first request and the merge go; the WebGPU request, once sent, is held until the merge is over.
    await page.evaluate(() => {
      const watch = (window as unknown as { workerWatch: WorkerWatch }).workerWatch;
      watch.release();
      watch.hold(['backend']);
    });
    await downloadBytes(page);
    expect(await text(page, '#results-note')).toMatch(/^Merged on WebGPU: .*, with 1 CPU thread for what the GPU leaves to the CPU in /);
    await release(page);
    await headerSays(page, /^webgpu · .*, with 1 CPU thread for what the GPU leaves to the CPU$/);
    expect((await backends(page)).slice(1)).toEqual([{ choice: 'cpu', threads: 1 }, { choice: 'webgpu', threads: 1 }]);
  });

  it('while an adapter job runs only Cancel can be used, "Run on" and "CPU threads" included; all come back after a failure, a cancel and a success', async () => {
    const dir = mismatchedAdapters(81);
    const { page } = await session.open('?mode=combine&backend=cpu');
    await watchWorkers(page);
    for (const folder of ['narrow', 'wide']) await upload(page, 'job-adapter-input', join(dir, folder, 'adapter_config.json'), join(dir, folder, 'adapter_model.safetensors'));
    const runEnabled = () => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await runEnabled();
    await headerSays(page, /^cpu · /);
    const before = await usable(page);
    expect(before).toEqual(expect.arrayContaining(['backend-choice', 'threads', 'job-method', 'job-format', 'job-run', 'Weight of PEFT adapter', 'Remove PEFT adapter #2']));
    const cards = () => page.$$eval('[data-testid="job-adapter"]', (els) => els.length);

    /** Runs the job by keyboard, held mid-way: Cancel has the focus and is all that can be used. */
    const runHeld = async () => {
      await hold(page, 'run');
      await page.focus('body');
      await tabTo(page, '[data-testid="job-run"]');
      await page.keyboard.press('Enter');
      expect(await focused(page)).toBe('job-cancel');
      expect(await usable(page)).toEqual(['job-cancel']);
    };

    // A failure (the adapters' widths differ).
    await runHeld();
    expect(await page.$eval('#backend-choice', (e) => (e as HTMLSelectElement).disabled)).toBe(true);
    // A file picked meanwhile (a chooser opened before) is refused in words, and the job's inputs stay as they were.
    await upload(page, 'job-adapter-input', join(dir, 'narrow/adapter_config.json'), join(dir, 'narrow/adapter_model.safetensors'));
    const refusal = 'Nothing picked was added, as a job was running: pick it again when that is over.';
    expect(await page.$eval('[data-testid="page-error"]', (e) => ((e as HTMLElement).hidden ? '(hidden)' : e.textContent))).toBe(refusal);
    await page.waitForFunction((m: string) => document.querySelector('[data-testid="alert"]')!.textContent === m, { timeout: 10_000 }, refusal);
    expect(await cards()).toBe(2);
    // As it looks, and what axe-core finds, mid-way: in both themes, on a desktop and on a 390 px phone.
    mkdirSync('test-output', { recursive: true });
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 });
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
        await page.screenshot({ path: `test-output/demo-while-running-${width}-${scheme}.png`, fullPage: true });
        expect(await seriousViolations(page), `${width} px, ${scheme}`).toEqual([]);
      }
    }
    await page.setViewport({ width: 1280, height: 900 });
    await release(page);
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="job-errors"]')!.hidden, { timeout: 30_000 });
    expect(await usable(page)).toEqual(before);

    // A cancel: Enter on the Cancel that took the focus.
    await page.click('#job-adapter-list li:nth-child(2) .remove');
    await runEnabled();
    const one = await usable(page);
    expect(one).toEqual(expect.arrayContaining(['backend-choice', 'threads']));
    await runHeld();
    await page.keyboard.press('Enter');
    await release(page);
    await page.waitForFunction(() => /Cancelled/.test(document.querySelector('[data-testid="job-progress-text"]')!.textContent ?? ''), { timeout: 30_000 });
    expect(await usable(page)).toEqual(one);

    // A success: the same controls, and the result's own beside them.
    await runHeld();
    await release(page);
    await downloadBytes(page, 'job-download-link');
    expect(await usable(page)).toEqual(expect.arrayContaining(one));
  });

  it('a base picked while the save picker is open is not merged under the old one\'s plan: nothing is merged, the picked file goes, and the page says so', async () => {
    const first = llamaWithPeft(84);
    const dir = session.dirs.make(first.files);
    const other = session.dirs.make({ 'other.safetensors': llamaWithPeft(85).base });
    const { page } = await session.open('?backend=cpu');
    // A save picker that makes the file (as a browser's does) and answers when the test says, in OPFS `picked/`.
    await page.evaluateOnNewDocument(() => {
      const folder = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
      let answer: () => void = () => {};
      Object.assign(window, {
        answerPicker: () => answer(),
        showSaveFilePicker: async (options: { suggestedName: string }) => {
          const handle = await (await folder()).getFileHandle(options.suggestedName, { create: true });
          await new Promise<void>((resolve) => { answer = resolve; });
          return handle;
        },
        showDirectoryPicker: async () => folder(),
      });
    });
    await page.reload({ waitUntil: 'load' });
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.select('[data-testid="destination"]', 'picked');
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(async () => {
      const picked = await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
      for await (const _ of (picked as unknown as { keys(): AsyncIterable<string> }).keys()) return true;
      return false;
    }, { timeout: 10_000 });
    // The picker open: the page is not busy yet, so another base can be picked; then the picker answers.
    await upload(page, 'base-input', join(other, 'other.safetensors'));
    await page.waitForFunction(() => /^other\.safetensors/.test(document.querySelector('[data-testid="base-summary"]')?.textContent ?? ''));
    await page.evaluate(() => (window as unknown as { answerPicker(): void }).answerPicker());
    const said = 'Nothing was merged: the base or the adapters changed while the destination was being chosen. Press Merge again to merge what is picked now.';
    await page.waitForFunction((m: string) => document.querySelector('[data-testid="progress-text"]')!.textContent === m, { timeout: 30_000 }, said);
    await page.waitForFunction((m: string) => document.querySelector('[data-testid="alert"]')!.textContent === m, { timeout: 10_000 }, said);
    expect(await page.$$eval('[data-testid^="download-link"]', (els) => els.length)).toBe(0);
    expect(await page.evaluate(async () => {
      const picked = await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
      const names: string[] = [];
      for await (const name of (picked as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
      return names;
    })).toEqual([]);
    // The new plan arriving leaves the line: it speaks of these inputs.
    await planReady(page);
    await mergeEnabled(page);
    expect(await text(page, '[data-testid="progress-text"]')).toBe(said);
  });

  it('while a merge runs only Cancel can be used, and a file picked meanwhile is refused in words; all comes back after it', async () => {
    const { dir, page } = await llamaMergeReady(82);
    const before = await usable(page);
    expect(before).toEqual(expect.arrayContaining(['backend-choice', 'threads', 'out-dtype', 'merge-button', 'Weight of PEFT adapter']));

    await hold(page, 'merge');
    await page.focus('body');
    await tabTo(page, '[data-testid="merge-button"]');
    await page.keyboard.press('Enter');
    expect(await focused(page)).toBe('cancel-button');
    expect(await usable(page)).toEqual(['cancel-button']);
    // Taken, the same base picked again would have sent the plan back to "reading".
    const plan = await text(page, '[data-testid="plan-status"]');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    expect(await text(page, '[data-testid="page-error"]')).toBe('Nothing picked was added, as a merge was running: pick it again when that is over.');
    expect(await text(page, '[data-testid="plan-status"]')).toBe(plan);
    await release(page);
    await downloadBytes(page);
    expect(await usable(page)).toEqual(expect.arrayContaining(before));
  });
});
