/**
 * The page's controls when they are off, and the count a run takes, in headless Chromium:
 * - a disabled control (a run button, Cancel, a menu, a number box, the header's "CPU threads", a
 *   file picker's button) is told from an enabled one by more than colour, in both themes: its
 *   border is dashed (an enabled one's solid), it has no fill, its cursor is not-allowed; checked
 *   on the same controls idle and while an adapter job is held mid-way (Combine off, Cancel on),
 *   with axe-core finding nothing serious (enabled text's contrast among its rules) at 1280 and
 *   390 px; screenshots in test-output/;
 * - a weight slider and the "only for the tensors the merge changes" check box, off while a merge
 *   runs, are marked as the others are: a dashed edge, the accent's fill gone to the off-border's
 *   grey, a not-allowed cursor (its words' too); on, no edge and the accent's fill;
 * - a count typed in "CPU threads" and not committed (the box never left) is the count a run
 *   takes, however the run starts: Merge, the sample and Combine, each clicked by a script that
 *   moves no focus, run with the typed count (their results say it), and the header asks for a
 *   backend with it once.
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
import { dense, gaussian } from './helpers/svd-reference.js';
import { backends, hold, release, watchWorkers } from './helpers/worker-watch.js';

const session = useDemoSession();

/** Two PEFT adapters (r = 2) on a Llama's q_proj and v_proj, 16 wide: combined by concatenation, they succeed. */
function twoAdapters(seed: number): string {
  const rand = seededRandom(seed);
  const files: Record<string, Uint8Array | string> = {};
  for (const folder of ['first', 'second']) {
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'].map((name) => ({
      name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, 16, () => gaussian(rand)),
    }));
    for (const [path, content] of Object.entries(peftFiles(modules))) files[`${folder}/${path}`] = content;
  }
  return session.dirs.make(files);
}

/** What tells a control's state apart besides colour, and its fill. */
interface Look {
  disabled: boolean;
  /** Number boxes take a text cursor while on. */
  typing: boolean;
  border: string;
  cursor: string;
  fill: string;
}

/** The controls compared: a run button, Cancel, a menu, an adapter's weight box, the header's menu and box, a picker's button. */
const CONTROLS = ['#job-run', '#job-cancel', '#job-method', '#job-adapter-list li:first-child input[type=number]', '#backend-choice', '#threads', '#job-adapter-files-button'];

const looks = (page: Page) => page.evaluate((selectors: string[]) => Object.fromEntries(selectors.map((s) => {
  const e = document.querySelector<HTMLInputElement>(s)!;
  const style = getComputedStyle(e);
  return [s, { disabled: e.disabled, typing: e.type === 'number', border: style.borderTopStyle, cursor: style.cursor, fill: style.backgroundColor }];
})), CONTROLS) as Promise<Record<string, Look>>;

const NO_FILL = 'rgba(0, 0, 0, 0)';

/** Each control looks as its state says: off, dashed, unfilled and not-allowed; on, solid and filled, with its own cursor. */
function expectLooks(all: Record<string, Look>, disabled: string[], label: string): void {
  for (const [selector, look] of Object.entries(all)) {
    const off = disabled.includes(selector);
    expect(look.disabled, `${label}: ${selector} disabled`).toBe(off);
    if (off) {
      expect([look.border, look.cursor, look.fill], `${label}: ${selector}`).toEqual(['dashed', 'not-allowed', NO_FILL]);
    } else {
      expect([look.border, look.cursor], `${label}: ${selector}`).toEqual(['solid', look.typing ? 'text' : 'pointer']);
      expect(look.fill, `${label}: ${selector} filled`).not.toBe(NO_FILL);
    }
  }
}

/** Replaces the focused box's entry by keyboard (select all, then the keys), without leaving it. */
async function retype(page: Page, entry: string): Promise<void> {
  await page.keyboard.down('Control');
  await page.keyboard.press('a');
  await page.keyboard.up('Control');
  await page.keyboard.type(entry);
}

/** Types `count` into the CPU threads box and leaves the focus there: typed, not committed. */
async function typeThreads(page: Page, count: number): Promise<void> {
  await page.focus('[data-testid="threads"]');
  await retype(page, String(count));
  expect(await page.$eval('[data-testid="threads"]', (e) => [(e as HTMLInputElement).value, document.activeElement === e])).toEqual([String(count), true]);
}

/** Clicks the button by script, as assistive tools and scripts can: the focus stays in the threads box, so it is never left. */
async function clickWithoutFocus(page: Page, selector: string): Promise<void> {
  const stayed = await page.evaluate((s: string) => {
    const box = document.getElementById('threads');
    document.querySelector<HTMLButtonElement>(s)!.click();
    return document.activeElement === box || document.activeElement === document.body;
  }, selector);
  expect(stayed, `${selector} took the focus`).toBe(true);
}

const autoThreads = (page: Page) => page.evaluate(() => Math.min(Math.max(1, Math.floor(navigator.hardwareConcurrency || 1)), 8));
const threadsWord = (n: number) => `${n} thread${n === 1 ? '' : 's'}`;

describe('disabled controls, and the count a run takes', PAGE_RETRY, () => {
  it('a disabled control is dashed, unfilled and not-allowed in both themes, idle and mid-job; an enabled one solid and filled; axe finds nothing serious', async () => {
    const dir = twoAdapters(91);
    const { page } = await session.open('?mode=combine&backend=cpu');
    await watchWorkers(page);
    for (const folder of ['first', 'second']) await upload(page, 'job-adapter-input', join(dir, folder, 'adapter_config.json'), join(dir, folder, 'adapter_model.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.waitForFunction(() => /^cpu · /.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    mkdirSync('test-output', { recursive: true });

    /** Screenshots, axe-core and each control's look at both widths, in both themes. */
    const inspect = async (when: string, disabled: string[]) => {
      for (const width of [1280, 390]) {
        await page.setViewport({ width, height: 900 });
        for (const scheme of ['light', 'dark'] as const) {
          await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
          await page.screenshot({ path: `test-output/demo-disabled-look-${when}-${width}-${scheme}.png`, fullPage: true });
          expect(await seriousViolations(page), `${when}, ${width} px, ${scheme}`).toEqual([]);
          expectLooks(await looks(page), disabled, `${when}, ${width} px, ${scheme}`);
        }
      }
      await page.setViewport({ width: 1280, height: 900 });
    };

    await inspect('idle', ['#job-cancel']);
    // Held mid-way: everything but Cancel is off.
    await hold(page, 'run');
    await page.focus('body');
    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('job-cancel');
    await inspect('running', CONTROLS.filter((s) => s !== '#job-cancel'));
    // The mode switch, off, is dashed too.
    expect(await page.$$eval('.mode-options label', (els) => els.map((e) => getComputedStyle(e).borderTopStyle))).toEqual(Array(5).fill('dashed'));
    await release(page);
    await downloadBytes(page, 'job-download-link');
    expect(await page.$$eval('.mode-options label', (els) => els.map((e) => getComputedStyle(e).borderTopStyle))).toEqual(Array(5).fill('solid'));
  });

  it('a weight slider and a check box off while a merge runs: dashed, grey, not-allowed in both themes; on, the accent and no edge', async () => {
    const dir = session.dirs.make(llamaWithPeft(94).files);
    const { page } = await session.open('?backend=cpu');
    await watchWorkers(page);
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    // A type chosen offers the check box; by keyboard, as a person would tick it.
    await page.select('[data-testid="out-dtype"]', 'f16');
    await page.waitForFunction(() => document.querySelector<HTMLElement>('[data-testid="dtype-merged-only"]')!.offsetParent !== null);
    await mergeEnabled(page);
    const SELECTORS = ['[data-testid="adapter-weight"]', '[data-testid="dtype-merged-only"]'];
    const marks = () => page.evaluate((selectors: string[]) => {
      // The theme's colours as the page resolves them, to compare with the controls' own.
      const probe = document.createElement('span');
      document.body.append(probe);
      const colour = (v: string) => { probe.style.color = `var(${v})`; return getComputedStyle(probe).color; };
      const theme = { accent: colour('--accent'), off: colour('--off-border') };
      probe.remove();
      const label = document.querySelector('label[for="dtype-merged-only"]')!;
      return {
        theme,
        label: getComputedStyle(label).cursor,
        controls: selectors.map((s) => {
          const e = document.querySelector<HTMLInputElement>(s)!;
          const style = getComputedStyle(e);
          return { disabled: e.disabled, accent: style.accentColor, outline: style.outlineStyle, outlineColour: style.outlineColor, cursor: style.cursor };
        }),
      };
    }, SELECTORS);
    mkdirSync('test-output', { recursive: true });

    const inspect = async (when: 'idle' | 'running') => {
      for (const width of [1280, 390]) {
        await page.setViewport({ width, height: 900 });
        for (const scheme of ['light', 'dark'] as const) {
          await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
          const label = `${when}, ${width} px, ${scheme}`;
          for (const section of ['adapters', 'merge']) await (await page.$(`#${section}-section`))!.screenshot({ path: `test-output/demo-disabled-${section}-${when}-${width}-${scheme}.png` });
          const seen = await marks();
          expect(seen.theme.accent, label).not.toBe(seen.theme.off);
          for (const control of seen.controls) {
            if (when === 'running') {
              expect(control, label).toEqual({ disabled: true, accent: seen.theme.off, outline: 'dashed', outlineColour: seen.theme.off, cursor: 'not-allowed' });
            } else {
              expect({ ...control, outlineColour: undefined }, label).toEqual({ disabled: false, accent: seen.theme.accent, outline: 'none', outlineColour: undefined, cursor: 'default' });
            }
          }
          expect(seen.label, label).toBe(when === 'running' ? 'not-allowed' : 'default');
          expect(await seriousViolations(page), label).toEqual([]);
        }
      }
      await page.setViewport({ width: 1280, height: 900 });
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    };

    await inspect('idle');
    await hold(page, 'merge');
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => document.querySelector<HTMLInputElement>('[data-testid="adapter-weight"]')!.disabled);
    await inspect('running');
    await release(page);
    await downloadBytes(page);
    await inspect('idle');
  });

  it('a count typed and not committed is the one a run takes, started by a click that moves no focus: Merge, the sample, Combine', async () => {
    const dir = session.dirs.make(llamaWithPeft(92).files);
    const { page } = await session.open('?backend=cpu');
    await watchWorkers(page);
    const auto = await autoThreads(page);
    const counts = [1, 2, 3, 4].filter((n) => n !== auto);
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.waitForFunction(() => /^cpu · /.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });

    // Merge.
    await typeThreads(page, counts[0]);
    await clickWithoutFocus(page, '[data-testid="merge-button"]');
    await downloadBytes(page);
    expect(await text(page, '#results-note')).toMatch(new RegExp(`^Merged on CPU \\(WebAssembly SIMD, ${threadsWord(counts[0])}; requested\\) in `));

    // The sample, which merges as soon as it is made. (Its making takes long enough for the box, off
    // meanwhile, to lose the focus and commit the count itself: this step guards the outcome, the
    // Merge and Combine steps the commit as the run starts.)
    await mergeEnabled(page);
    await typeThreads(page, counts[1]);
    await clickWithoutFocus(page, '[data-testid="sample-button"]');
    await page.waitForFunction(() => /^sample-small/.test(document.querySelector('[data-testid="base-summary"]')?.textContent ?? ''), { timeout: 60_000 });
    await downloadBytes(page);
    expect(await text(page, '#results-note')).toMatch(new RegExp(`^Merged on CPU \\(WebAssembly SIMD, ${threadsWord(counts[1])}; requested\\) in `));

    // Combine, in its mode.
    const adapters = twoAdapters(93);
    await page.click('[data-testid="mode-combine"]');
    for (const folder of ['first', 'second']) await upload(page, 'job-adapter-input', join(adapters, folder, 'adapter_config.json'), join(adapters, folder, 'adapter_model.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await typeThreads(page, counts[2]);
    await clickWithoutFocus(page, '[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');
    expect(await text(page, '#job-results-note')).toMatch(new RegExp(`^Combined on CPU \\(WebAssembly SIMD, ${threadsWord(counts[2])}\\) in `));

    // The header asked for a backend once per count, as it does for a count committed by Tab.
    expect((await backends(page)).map((b) => b.threads)).toEqual([auto, ...counts.slice(0, 3)]);
  });
});
