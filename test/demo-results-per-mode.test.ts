/**
 * Each mode keeps its own result, in headless Chromium, driven as a person would (pickers, the mode
 * switch, the run buttons): a result made in one mode (merge, combine, resize, extract) stays,
 * current and downloadable byte for byte, while a person runs another mode and then changes that
 * mode's input; the changed mode's result alone is withdrawn (its box and links gone).
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { count, mergeEnabled, planReady, text, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { dense, gaussian } from './helpers/svd-reference.js';

const session = useDemoSession();

type Mode = 'merge' | 'combine' | 'resize' | 'extract';

/**
 * One folder with all a person picks in every mode: a Llama (16 wide) and its PEFT adapter for the
 * merge, a second Llama of the same shapes (the "fine-tuned" model for extract), and three PEFT
 * adapters (r = 2) on its q_proj and v_proj for combine and resize.
 */
function inputs(seed: number): string {
  const files: Record<string, Uint8Array | string> = { ...llamaWithPeft(seed).files };
  files['tuned/llama.safetensors'] = llamaWithPeft(seed + 1).files['llama.safetensors'];
  const rand = seededRandom(seed);
  for (const folder of ['first', 'second', 'third']) {
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'].map((name) => ({
      name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, 16, () => gaussian(rand)),
    }));
    for (const [path, content] of Object.entries(peftFiles(modules))) files[`${folder}/${path}`] = content;
  }
  return session.dirs.make(files);
}

const adapter = (dir: string, folder: string) => [join(dir, folder, 'adapter_config.json'), join(dir, folder, 'adapter_model.safetensors')];
const LINK: Record<Mode, string> = { merge: 'download-link', combine: 'job-download-link', resize: 'job-download-link', extract: 'job-download-link' };
const BOX: Record<Mode, string> = { merge: '#results', combine: '#job-results', resize: '#job-results', extract: '#job-results' };
const NOTE: Record<Mode, string> = { merge: '#results-note', combine: '#job-results-note', resize: '#job-results-note', extract: '#job-results-note' };
const DONE: Record<Mode, RegExp> = { merge: /^Merged on CPU/, combine: /^Combined on CPU/, resize: /^Resized on CPU/, extract: /^Extracted on CPU/ };

/** Clicks the mode's radio button, as a person picks "Combine adapters". */
async function switchTo(page: Page, mode: Mode): Promise<void> {
  await page.click(`[data-testid="mode-${mode}"]`);
  await page.waitForFunction((m: string) => document.querySelector<HTMLInputElement>(`[data-testid="mode-${m}"]`)!.checked, {}, mode);
}

/** Picks the mode's inputs, runs it by its button and returns the downloaded bytes of its result. */
async function pickAndRun(page: Page, dir: string, mode: Mode): Promise<Uint8Array> {
  await switchTo(page, mode);
  if (mode === 'merge') {
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
  } else {
    if (mode === 'combine') for (const folder of ['first', 'second']) await upload(page, 'job-adapter-input', ...adapter(dir, folder));
    if (mode === 'resize') {
      await upload(page, 'job-adapter-input', ...adapter(dir, 'first'));
      await typeInto(page, '#job-resize-value', '1');
    }
    if (mode === 'extract') {
      await upload(page, 'job-base-input', join(dir, 'llama.safetensors'));
      await upload(page, 'job-tuned-input', join(dir, 'tuned/llama.safetensors'));
      await typeInto(page, '#job-extract-value', '2');
    }
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
  }
  const bytes = await downloadBytes(page, LINK[mode]);
  expect(await text(page, NOTE[mode])).toMatch(DONE[mode]);
  return bytes;
}

/** Changes one input of the mode, in it, as a person would: another adapter, or another fine-tuned model. */
async function changeInput(page: Page, dir: string, mode: Mode): Promise<void> {
  if (mode === 'merge') await upload(page, 'adapter-input', ...adapter(dir, 'third'));
  if (mode === 'combine' || mode === 'resize') await upload(page, 'job-adapter-input', ...adapter(dir, 'third'));
  if (mode === 'extract') await upload(page, 'job-tuned-input', join(dir, 'llama.safetensors'));
}

/** The mode's result box is gone, and every link of it. */
async function expectWithdrawn(page: Page, mode: Mode): Promise<void> {
  await page.waitForFunction((box: string) => document.querySelector<HTMLElement>(box)!.hidden, { timeout: 30_000 }, BOX[mode]);
  expect(await count(page, `[data-testid^="${LINK[mode]}"]`), `${mode}'s links`).toBe(0);
}

/** Each mode, and the mode a person turns to after it. */
const PAIRS: [Mode, Mode][] = [['merge', 'combine'], ['combine', 'resize'], ['resize', 'extract'], ['extract', 'merge']];

describe('each mode keeps its result while another mode\'s input changes', PAGE_RETRY, () => {
  it.for(PAIRS.map(([kept, other], i) => ({ kept, other, seed: 70 + i })))('$kept: run, then $other run and its input changed: $kept\'s result stays, $other\'s is withdrawn', async ({ kept, other, seed }) => {
    const dir = inputs(seed);
    const { page } = await session.open('?backend=cpu');
    const first = await pickAndRun(page, dir, kept);
    await pickAndRun(page, dir, other);
    await changeInput(page, dir, other);
    await expectWithdrawn(page, other);

    await switchTo(page, kept);
    await page.waitForFunction((box: string) => !document.querySelector<HTMLElement>(box)!.hidden, { timeout: 10_000 }, BOX[kept]);
    expect(await text(page, NOTE[kept])).toMatch(DONE[kept]);
    expect(await count(page, `[data-testid="${LINK[kept]}-stale"]`)).toBe(0);
    // Still current, and its files are still in browser storage: the same bytes download again.
    expect(await downloadBytes(page, LINK[kept])).toEqual(first);
  });
});
