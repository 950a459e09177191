/**
 * The header's "CPU threads" box on the page (the CLI's --threads, the library's `threads`), one
 * setting for every job the page runs, used as a person would, in headless Chromium: set to 1 by
 * keyboard alone, the merge says `1 thread` and writes the same bytes as a merge at the default
 * count (both checked against float64 truth), and so does a resize (within 1e-3 of the
 * Eckart–Young optimum), on the CPU and on WebGPU, where the library's own description names the
 * threads; an entry that is no count (0, 1.5, nothing, past the limit) is refused in one line, read
 * out, and the current mode's run button (Merge, Resize) stays off until it is fixed; served
 * without cross-origin isolation the box is off at 1 and says why; on WebGPU it stays on and says
 * what the threads still run, and the result names them; axe-core finds nothing serious in either
 * theme with the box refusing an entry, and the box fits a 390 px phone. The base's matrices are
 * large enough (≥ 64 Ki elements) for the CPU to cut them among its threads.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY, serveDemo } from './helpers/browser.js';
import { checkMerged, downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { kohyaFile, type FixtureModule } from './helpers/adapter-fixtures.js';
import { seededRandom } from './helpers/fixtures.js';
import { kohyaUpdates } from './helpers/lora-truth.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { frob2, minus, product, withSpectrum } from './helpers/svd-reference.js';

const session = useDemoSession();

/**
 * A two-layer Llama slice in F16 (hidden 256, MLP 512) and a PEFT LoRA (r = 4, α = 8, F32) on its
 * q_proj and down_proj: 65 536 and 131 072 elements, at or above the size the CPU hands to its threads.
 */
const wideLlama = (seed: number) => llamaWithPeft(seed, { hidden: 256, mlp: 512, rank: 4, alpha: 8 });

async function pickLlama(page: Page, dir: string): Promise<void> {
  await upload(page, 'base-input', join(dir, 'llama.safetensors'));
  await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
  await planReady(page);
}

/** Replaces the box's entry by keyboard (select all, then the keys; nothing typed empties it) and commits it with Tab; focused first unless it has the focus. */
async function typeInto(page: Page, selector: string, entry: string): Promise<void> {
  if (!(await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector))) await page.focus(selector);
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  if (entry === '') await page.keyboard.press('Backspace');
  else await page.keyboard.type(entry);
  await page.keyboard.press('Tab');
}

/** The library's default here, as its rule says: one per core the browser reports, at most 8. */
const autoThreads = (page: Page) => page.evaluate(() => Math.min(Math.max(1, Math.floor(navigator.hardwareConcurrency || 1)), 8));
const resultNote = (page: Page) => text(page, '#results-note');
const threadsWord = (n: number) => `${n} thread${n === 1 ? '' : 's'}`;

/**
 * A kohya SDXL LoRA of one 1280-wide attention module whose unscaled update B·A has the singular
 * values 2·0.8^i (i < 32), α 32 at rank 32: B = U·diag(s), A with orthonormal rows.
 */
function wideKohya(seed: number, dir: (files: Record<string, Uint8Array>) => string) {
  const rand = seededRandom(seed);
  const spectrum = Array.from({ length: 32 }, (_, i) => 2 * 0.8 ** i);
  const module: FixtureModule = {
    name: 'lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q',
    b: withSpectrum(1280, 32, spectrum, rand), a: withSpectrum(32, 1280, spectrum.map(() => 1), rand), alpha: 32,
  };
  return { module, spectrum, path: join(dir({ 'wide.safetensors': kohyaFile([module]) }), 'wide.safetensors') };
}

/** The resized module within 1e-3 of the Eckart–Young optimum at rank 3: the norm of the singular values dropped (α/r = 1). */
function expectRank3Optimum(bytes: Uint8Array, fixture: ReturnType<typeof wideKohya>): void {
  const truth = product(fixture.module.b, fixture.module.a);
  const optimum = Math.sqrt(fixture.spectrum.slice(3).reduce((t, x) => t + x * x, 0));
  const err = Math.sqrt(frob2(minus(kohyaUpdates(bytes).get(fixture.module.name)!, truth)));
  expect(err).toBeLessThanOrEqual(optimum * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(truth)));
}

const jobRunEnabled = (page: Page) => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });

/** Waits for the job's note to match `note`, then reads its kohya file. */
async function jobOutput(page: Page, note: RegExp): Promise<{ note: string; bytes: Uint8Array }> {
  await page.waitForFunction((source: string) => new RegExp(source).test(document.querySelector('#job-results-note')?.textContent ?? ''), { timeout: 90_000 }, note.source);
  return { note: await text(page, '#job-results-note'), bytes: await downloadBytes(page, 'job-download-link') };
}

describe('the CPU threads box', PAGE_RETRY, () => {
  it('set to 1 by keyboard alone: the header and the result say 1 thread, and the bytes are the default count\'s, both exact', async () => {
    const fixture = wideLlama(61);
    const dir = session.dirs.make(fixture.files);
    const truth = [{ tensors: readSafetensors(fixture.adapter), scale: fixture.alpha / fixture.rank }];

    // The default first, on a page of its own: the box holds auto's count, and the merge uses it.
    const first = await session.open('?backend=cpu');
    const auto = await autoThreads(first.page);
    expect(await first.page.$eval('[data-testid="threads"]', (e) => (e as HTMLInputElement).value)).toBe(String(auto));
    expect(await text(first.page, '[data-testid="threads-hint"]')).toContain(`Auto here: ${auto} (one per processor core the browser reports`);
    await pickLlama(first.page, dir);
    await mergeEnabled(first.page);
    await first.page.click('[data-testid="merge-button"]');
    const byDefault = await downloadBytes(first.page);
    expect(await resultNote(first.page)).toMatch(new RegExp(`^Merged on CPU \\(WebAssembly SIMD, ${threadsWord(auto)}; requested\\) in `));
    checkMerged(byDefault, readSafetensors(fixture.base), truth);

    const { page } = await session.open('?backend=cpu');
    await pickLlama(page, dir);
    await page.focus('body');
    await tabTo(page, '[data-testid="threads"]');
    await typeInto(page, '[data-testid="threads"]', '1');
    // The header's backend is asked for again with the new count; Tab goes on to Merge.
    await page.waitForFunction(() => /^cpu · CPU \(WebAssembly SIMD, 1 thread; requested\)$/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 30_000 });
    await mergeEnabled(page);
    await tabTo(page, '[data-testid="merge-button"]');
    await page.keyboard.press('Enter');
    const oneThread = await downloadBytes(page);
    expect(await resultNote(page)).toMatch(/^Merged on CPU \(WebAssembly SIMD, 1 thread; requested\) in /);
    expect(Buffer.from(oneThread).equals(Buffer.from(byDefault))).toBe(true);
    checkMerged(oneThread, readSafetensors(fixture.base), truth);

    // Another count makes the same file: the result stays current (as after another backend), its note still saying how it was made.
    await typeInto(page, '[data-testid="threads"]', String(auto + 1));
    await page.waitForFunction((n: number) => document.getElementById('backend')!.textContent!.includes(`, ${n} threads;`), { timeout: 30_000 }, auto + 1);
    expect(await page.$$eval('[data-testid="download-link"]', (els) => els.length)).toBe(1);
    expect(await resultNote(page)).toMatch(/^Merged on CPU \(WebAssembly SIMD, 1 thread; requested\) in /);
  });

  it('one count for every job: a resize at 1 thread says so in the library\'s words, on the CPU and on WebGPU, and writes the default count\'s bytes; a refused entry holds Resize', async () => {
    const fixture = wideKohya(71, (files) => session.dirs.make(files));
    const { page } = await session.open('?backend=cpu&mode=resize');
    const auto = await autoThreads(page);
    expect(auto, 'the browser reports one core: nothing to compare').toBeGreaterThanOrEqual(2);
    await upload(page, 'job-adapter-input', fixture.path);
    await typeInto(page, '#job-resize-value', '3');
    await jobRunEnabled(page);
    await page.click('[data-testid="job-run"]');
    const byDefault = await jobOutput(page, new RegExp(`^Resized on CPU \\(WebAssembly SIMD, ${auto} threads\\) in `));
    expectRank3Optimum(byDefault.bytes, fixture);

    // The header's box holds this mode's run button as it holds Merge, and says so.
    const box = '[data-testid="threads"]';
    await page.$eval('[data-testid="alert"]', (e) => { e.textContent = ''; });
    await typeInto(page, box, '0');
    const problem = `CPU threads is 0: enter a whole number from 1 to 1024 (auto here: ${auto}).`;
    const alert = await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 10_000 });
    expect(await alert.jsonValue()).toBe(`${problem} Resize stays off until it is fixed.`);
    expect(await page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe(problem);

    // 1, by keyboard: the job says 1 thread, and its bytes are the default count's.
    await typeInto(page, box, '1');
    await jobRunEnabled(page);
    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    const one = await jobOutput(page, /^Resized on CPU \(WebAssembly SIMD, 1 thread\) in /);
    expect(Buffer.from(one.bytes).equals(Buffer.from(byDefault.bytes))).toBe(true);

    // On WebGPU the same count runs what the GPU leaves to the CPU, and the library's description says it.
    await page.select('#backend-choice', 'webgpu');
    await page.waitForFunction(() => /^webgpu · .*, with 1 CPU thread for what the GPU leaves to the CPU$/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    await jobRunEnabled(page);
    await page.click('[data-testid="job-run"]');
    const onGpu = await jobOutput(page, /^Resized on WebGPU: .*, with 1 CPU thread for what the GPU leaves to the CPU in /);
    expectRank3Optimum(onGpu.bytes, fixture);
  });

  it('an entry that is no thread count is refused in one line, read out, and Merge stays off until it is fixed', async () => {
    const dir = session.dirs.make(llamaWithPeft(62).files);
    const { page } = await session.open('?backend=cpu');
    await pickLlama(page, dir);
    await mergeEnabled(page);
    const auto = await autoThreads(page);
    const box = '[data-testid="threads"]';
    expect(await page.$eval(box, (e) => [e.getAttribute('aria-describedby'), [...(e as HTMLInputElement).labels!].map((l) => l.textContent).join()]))
      .toEqual(['threads-hint', 'CPU threads']);
    const rule = `enter a whole number from 1 to 1024 (auto here: ${auto}).`;
    for (const [entry, said] of [['0', 'is 0'], ['1.5', 'is 1.5'], ['', 'is empty'], ['2000', 'is 2000']]) {
      await page.$eval('[data-testid="alert"]', (e) => { e.textContent = ''; });
      await typeInto(page, box, entry);
      const problem = `CPU threads ${said}: ${rule}`;
      const alert = await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 10_000 });
      expect(await alert.jsonValue(), entry).toBe(`${problem} Merge stays off until it is fixed.`);
      expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled), entry).toBe(true);
      expect(await text(page, '[data-testid="merge-blocked"]'), entry).toBe(problem);
      expect(await page.$eval(box, (e) => e.getAttribute('aria-invalid')), entry).toBe('true');
      expect(await page.$eval('[data-testid="threads-hint"]', (e) => [e.className, e.textContent]), entry).toEqual(['error-text small', problem]);
      // And the sample, which merges as soon as it is made, does not start with another count than the box shows.
      if (entry === '0') {
        await page.click('[data-testid="sample-button"]');
        expect(await text(page, '[data-testid="page-error"]')).toBe(`${problem} The sample merges with the count in the box.`);
        await page.waitForFunction(() => /The sample merges/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 10_000 });
        expect(await page.$eval('[data-testid="base-summary"]', (e) => e.textContent)).toMatch(/^llama\.safetensors/);
      }
    }
    await typeInto(page, box, '3');
    await mergeEnabled(page);
    expect(await page.$eval(box, (e) => e.getAttribute('aria-invalid'))).toBe('false');
    expect(await text(page, '[data-testid="threads-hint"]')).toMatch(/^Auto here: /);
  });

  it('served without cross-origin isolation, the box is off at 1 and says why; Merge is not held by it', async () => {
    const plain = await serveDemo({ crossOriginIsolated: false });
    try {
      const { page } = await session.open('?backend=cpu', plain);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      const box = await page.$eval('[data-testid="threads"]', (e) => ({ disabled: (e as HTMLInputElement).disabled, value: (e as HTMLInputElement).value, describedBy: e.getAttribute('aria-describedby') }));
      expect(box).toEqual({ disabled: true, value: '1', describedBy: 'threads-hint' });
      expect(await text(page, '[data-testid="threads-hint"]')).toMatch(/^1 only: the page is not cross-origin isolated, so workers cannot share memory; the CPU runs every job on one thread\. More need a server that sends the Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy headers\.$/);
      await pickLlama(page, session.dirs.make(llamaWithPeft(63).files));
      await mergeEnabled(page);
    } finally {
      await plain.close();
    }
  });

  it('on WebGPU the box stays on, says what the threads still run there, and the result names how many', async () => {
    const dir = session.dirs.make(llamaWithPeft(64).files);
    const { page } = await session.open('?backend=webgpu');
    await page.waitForFunction(() => /^webgpu · /.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    const auto = await autoThreads(page);
    expect(await page.$eval('[data-testid="threads"]', (e) => (e as HTMLInputElement).disabled)).toBe(false);
    expect(await text(page, '[data-testid="threads-hint"]')).toMatch(/^On WebGPU the CPU threads run what the GPU leaves to the CPU \(f32 outputs, DoRA and other update steps, a tensor or product the device cannot bind\); the rest runs on the GPU\. Auto here: /);
    // The library's description says the count, in the header as in the result.
    expect(await text(page, '#backend')).toMatch(new RegExp(`^webgpu · .*, with ${auto} CPU threads? for what the GPU leaves to the CPU$`));
    await pickLlama(page, dir);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    expect(await resultNote(page)).toMatch(new RegExp(`^Merged on WebGPU: .*, with ${auto} CPU threads? for what the GPU leaves to the CPU in `));
    await typeInto(page, '[data-testid="threads"]', '1');
    await page.waitForFunction(() => /^webgpu · /.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => / with 1 CPU thread for what the GPU leaves to the CPU in /.test(document.getElementById('results-note')?.textContent ?? ''), { timeout: 60_000 });
  });

  it('refusing an entry, it has no serious or critical axe-core violations in either theme, and fits a 390 px phone', async () => {
    const { page } = await session.open('?backend=cpu');
    await pickLlama(page, session.dirs.make(llamaWithPeft(65).files));
    mkdirSync('test-output', { recursive: true });
    await page.setViewport({ width: 1280, height: 900 });
    const settings = async (name: string) => {
      const area = (await page.$('.masthead'))!;
      await area.scrollIntoView();
      await area.screenshot({ path: `test-output/demo-threads-${name}.png` });
    };
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await settings(`${scheme}`);
      expect(await seriousViolations(page), scheme).toEqual([]);
    }
    await typeInto(page, '[data-testid="threads"]', '0');
    await page.waitForFunction(() => document.querySelector('[data-testid="threads"]')!.getAttribute('aria-invalid') === 'true');
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await settings(`refused-${scheme}`);
      expect(await seriousViolations(page), `refused, ${scheme}`).toEqual([]);
    }
    await page.setViewport({ width: 390, height: 844 });
    const layout = await page.evaluate(() => {
      const box = (selector: string) => document.querySelector(selector)!.getBoundingClientRect();
      return {
        scrollWidth: document.documentElement.scrollWidth,
        input: box('#threads').toJSON() as DOMRect,
        label: box('label[for="threads"]').toJSON() as DOMRect,
        hint: box('#threads-hint').toJSON() as DOMRect,
      };
    });
    expect(layout.scrollWidth).toBeLessThanOrEqual(390);
    for (const part of [layout.input, layout.label, layout.hint]) expect([part.left >= 0, part.right <= 390]).toEqual([true, true]);
    await settings('390px');
    expect(await seriousViolations(page), '390 px').toEqual([]);
  });
});
