/**
 * What a person reads on a phone (390 px) and by keyboard, in headless Chromium, in both themes:
 * an adapter card's short facts (`r = 2`, `α/r = 2`) are never split across lines, the text reading
 * as before; and after a merge started by keyboard the focus lands on the results with its ring
 * clear of their text (at least 4 px), the ring's colour at least 3:1 on the card. In the
 * screen-reader view (the accessibility tree), the focus after a merge or a combine lands on a region
 * named by the results' heading and described by their one-line note, not on a nameless box read
 * out whole, and the run's end is said in the polite status; switching modes by keyboard empties
 * the alert of the mode left (a merge's unreadable adapter is no news in Combine).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { dense, gaussian } from './helpers/svd-reference.js';

mkdirSync('test-output', { recursive: true });

const session = useDemoSession();

/** How many lines each of `facts` takes in the first adapter card's facts, found by the text's own boxes. */
const linesOf = (page: Page, facts: string[]) => page.evaluate((wanted: string[]) => {
  const box = document.querySelector('[data-testid="adapter-facts"]')!;
  const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
  const nodes: Text[] = [];
  while (walker.nextNode()) nodes.push(walker.currentNode as Text);
  const whole = nodes.map((n) => n.data).join('');
  /** The text node and offset of a character of the whole text. */
  const at = (i: number): [Text, number] => {
    for (const n of nodes) {
      if (i <= n.data.length) return [n, i];
      i -= n.data.length;
    }
    throw new Error('past the end');
  };
  return wanted.map((fact) => {
    const start = whole.indexOf(fact);
    if (start < 0) return -1;
    const range = document.createRange();
    range.setStart(...at(start));
    range.setEnd(...at(start + fact.length));
    return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
  });
}, facts);

interface AxNode { role?: string; name?: string; description?: string; focused?: boolean; children?: AxNode[] }

/** The node a screen reader is on: the focused one of the accessibility tree. */
async function focusedNode(page: Page): Promise<AxNode | undefined> {
  const find = (n: AxNode | null | undefined): AxNode | undefined => (n?.focused ? n : n?.children?.map(find).find(Boolean));
  return find((await page.accessibility.snapshot()) as AxNode | null);
}

describe('reading the page on a phone and by keyboard', PAGE_RETRY, () => {
  it('an adapter card\'s short facts each stay on one line at 390 px; its text reads as before', async () => {
    const dir = session.dirs.make(llamaWithPeft(83).files);
    const { page } = await session.open('?backend=cpu');
    await page.setViewport({ width: 390, height: 900 });
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    const facts = ['PEFT', 'LoRA', '4 modules', 'r = 2', 'α = 4', 'α/r = 2'];
    expect(await text(page, '[data-testid="adapter-facts"]')).toBe(facts.join(' · '));
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      // The card's facts take two lines here: some fact starts the second one whole.
      expect(await linesOf(page, [facts.join(' · ')]), scheme).toEqual([2]);
      expect(await linesOf(page, facts), scheme).toEqual(facts.map(() => 1));
      await (await page.$('#adapters-section'))!.screenshot({ path: `test-output/phone-facts-${scheme}.png` }).catch(() => undefined);
    }
    expect(await seriousViolations(page)).toEqual([]);
  });

  it('after a merge by keyboard the focus is on the results, its ring at least 4 px clear of their text and 3:1 on the card', async () => {
    const dir = session.dirs.make(llamaWithPeft(84).files);
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    await page.focus('body');
    await tabTo(page, '[data-testid="merge-button"]');
    await page.keyboard.press('Enter');
    await downloadBytes(page);
    await page.waitForFunction(() => document.activeElement?.id === 'results', { timeout: 30_000 });
    const node = await focusedNode(page);
    expect([node?.role, node?.name], 'the focused node').toEqual(['region', 'Merged files']);
    expect(node?.description).toMatch(/^Merged on CPU \(WebAssembly SIMD, \d+ threads?; requested\) in /);
    // The status is written a moment after the result shows (so the same words twice are said twice).
    await page.waitForFunction(() => /^Merged [\d.]+ KB in .* The files are listed under “Merged files”\.$/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 10_000 });
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 });
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
        const seen = await page.evaluate(() => {
          const box = document.getElementById('results')!;
          const style = getComputedStyle(box);
          const outer = box.getBoundingClientRect();
          const offset = parseFloat(style.outlineOffset);
          const ring = { left: outer.left - offset, top: outer.top - offset, right: outer.right + offset };
          const range = document.createRange();
          range.selectNodeContents(box);
          const words = [...range.getClientRects()].filter((r) => r.width > 0);
          return {
            focusVisible: box.matches(':focus-visible'),
            outline: style.outlineStyle,
            ringColour: style.outlineColor,
            card: getComputedStyle(box.closest('.card')!).backgroundColor,
            gap: Math.min(...words.map((r) => Math.min(r.left - ring.left, r.top - ring.top, ring.right - r.right))),
          };
        });
        const label = `${width} px, ${scheme}`;
        expect([seen.focusVisible, seen.outline], label).toEqual([true, 'solid']);
        expect(seen.gap, label).toBeGreaterThanOrEqual(4);
        expect(contrast(seen.ringColour, seen.card), label).toBeGreaterThanOrEqual(3);
        await (await page.$('#merge-section'))!.screenshot({ path: `test-output/results-focus-${width}-${scheme}.png` }).catch(() => undefined);
      }
    }
  });
  it('after a combine by keyboard the focus is on a region named "Your adapter", described by its note, and the end is said', async () => {
    const rand = seededRandom(85);
    const files: Record<string, Uint8Array | string> = {};
    for (const folder of ['first', 'second']) {
      const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'].map((name) => ({
        name, b: dense(16, 2, () => gaussian(rand)), a: dense(2, 16, () => gaussian(rand)),
      }));
      for (const [path, content] of Object.entries(peftFiles(modules))) files[`${folder}/${path}`] = content;
    }
    const dir = session.dirs.make(files);
    const { page } = await session.open('?backend=cpu&mode=combine');
    for (const folder of ['first', 'second']) await upload(page, 'job-adapter-input', join(dir, folder, 'adapter_config.json'), join(dir, folder, 'adapter_model.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.focus('body');
    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    await downloadBytes(page, 'job-download-link');
    await page.waitForFunction(() => document.activeElement?.id === 'job-results', { timeout: 30_000 });
    const node = await focusedNode(page);
    expect([node?.role, node?.name], 'the focused node').toEqual(['region', 'Your adapter']);
    expect(node?.description).toMatch(/^Combined on CPU \(WebAssembly SIMD, \d+ threads?\) in .*: 2 LoRA modules, rank 4\.$/);
    await page.waitForFunction(() => /^Combined 2 modules in /.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 10_000 });
    expect(await text(page, '[data-testid="status"]')).toMatch(/The adapter is under “Your adapter”, with the rank chosen for each module\.$/);
    expect(await seriousViolations(page)).toEqual([]);
  });
  it('switching modes by keyboard empties the alert of the mode left; the merge\'s refusal is still on its page', async () => {
    const dir = session.dirs.make({ ...llamaWithPeft(87).files, 'junk/adapter_model.safetensors': 'not a safetensors file at all' });
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'junk/adapter_model.safetensors'));
    await page.waitForFunction(() => /^adapter_model\.safetensors: not a safetensors file/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 30_000 });
    await page.focus('[data-testid="mode-merge"]');
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => /^Combine mode/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 10_000 });
    expect(await text(page, '[data-testid="alert"]')).toBe('');
    await page.keyboard.press('ArrowLeft');
    await page.waitForFunction(() => /^Merge mode/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''), { timeout: 10_000 });
    expect(await text(page, '[data-testid="plan-status"]')).toMatch(/^adapter_model\.safetensors: not a safetensors file/);
  });
});

/** WCAG's contrast ratio of two `rgb(…)` colours. */
function contrast(one: string, two: string): number {
  const luminance = (c: string) => {
    const [r, g, b] = c.match(/\d+(\.\d+)?/g)!.slice(0, 3).map(Number).map((v) => v / 255).map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [luminance(one), luminance(two)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
