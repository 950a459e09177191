/**
 * The line under the progress bar, on the merge page and the adapter-jobs page alike
 * (demo/progress-view.ts), in Chromium: a failure that is a list of problems (src/plan/problems.ts)
 * is its title and one list item per problem, as the plan's status shows it; a one-line failure
 * stays one line; names in either are shown with their controls escaped.
 */
import type { Browser, Page } from 'puppeteer';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatProblemList } from '../src/plan/problems.js';
import { launchChromium } from './helpers/browser.js';

let browser: Browser;
let page: Page;

beforeAll(async () => {
  // The page's own module, bundled alone, in a page holding the two elements it writes to.
  const out = await build({
    configFile: false,
    logLevel: 'error',
    build: { write: false, minify: false, lib: { entry: 'demo/progress-view.ts', formats: ['iife'], name: 'progressView' } },
  });
  const chunk = (Array.isArray(out) ? out[0] : out as { output: { code?: string }[] }).output.find((o) => 'code' in o && o.code)!;
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setContent('<progress id="bar"></progress><div id="text" class="hint"></div>');
  await page.addScriptTag({ content: (chunk as { code: string }).code });
}, 120_000);

afterAll(async () => { await browser?.close(); });

/** What `fail(message)` leaves under the bar. */
async function failed(message: string) {
  return page.evaluate((m) => {
    const { ProgressView } = (window as unknown as { progressView: typeof import('../demo/progress-view.js') }).progressView;
    const text = document.getElementById('text')!;
    new ProgressView(document.getElementById('bar') as HTMLProgressElement, text).fail(m);
    return {
      className: text.className,
      title: text.querySelector('.message-title')?.textContent ?? null,
      items: [...text.querySelectorAll('ul.message-list > li')].map((li) => li.textContent),
      text: text.textContent,
      paragraphs: text.querySelectorAll('p').length,
    };
  }, message);
}

describe('the progress line on a failure', () => {
  it('shows a list of problems as its title and one item per problem', async () => {
    const problems = [
      'adapter.safetensors: module "model.layers.0.self_attn.q_proj" has rank 8 in lora_A but 4 in lora_B',
      'adapter.safetensors: module "rlo\u202Eexe.txt" matches no base tensor',
    ];
    expect(await failed(formatProblemList('adapter.safetensors', problems))).toEqual({
      className: 'error-text',
      title: '2 problems in adapter.safetensors:',
      items: [problems[0], 'adapter.safetensors: module "rlo\\u202eexe.txt" matches no base tensor'],
      text: expect.any(String),
      paragraphs: 1,
    });
  });

  it('keeps a one-line failure one line of text', async () => {
    const seen = await failed('The resize failed: see the problems below.');
    expect(seen).toMatchObject({ className: 'error-text', title: null, items: [], text: 'The resize failed: see the problems below.', paragraphs: 0 });
  });
});
