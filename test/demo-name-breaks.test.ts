/**
 * Long file names on a 390 px phone: the adapter card's title, the base's name and an adapter job's
 * input wrap after a `_`, `.`, `-` or `/` (`adapter_model.` / `safetensors`), never inside a word
 * (`adapter_mod` / `el.safetensors`); the whole name is still the element's text and its tooltip.
 * A tensor's name inside a message (an error under the base, said aloud too) wraps the same way,
 * and the message's text is still the one string a screen reader reads.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { upload, useDemoSession } from './helpers/demo-session.js';
import { buildRawSafetensors } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const fixture = llamaWithPeft(62);
const SHOTS = process.env.DEMO_SHOTS;

/**
 * Each line of `selector`'s text as laid out: characters grouped by the top of their box (the
 * text, joined, is the whole name; a line starting after a letter or digit is a mid-word break).
 */
function linesOf(page: Page, selector: string): Promise<string[]> {
  return page.$eval(selector, (element) => {
    const lines: { top: number; text: string }[] = [];
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const value = node.textContent ?? '';
      for (let i = 0; i < value.length; i++) {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        const top = Math.round(range.getBoundingClientRect().top);
        const last = lines.at(-1);
        if (last && Math.abs(last.top - top) < 4) last.text += value[i];
        else lines.push({ top, text: value[i] });
      }
    }
    return lines.map((l) => l.text);
  });
}

/** Where each line but the first begins: the character before it, which must be a separator. */
const breaksAfter = (lines: string[]) => lines.slice(0, -1).map((line) => line.at(-1));

describe('long file names on a phone', PAGE_RETRY, () => {
  it('wrap after _ . - / and never mid-word, with the full name as text and tooltip', async () => {
    const adapterName = 'pytorch_lora_weights_for_llama_3_instruct_finetune_v2-epoch000012.safetensors';
    const baseName = 'Meta-Llama-3.1-8B-Instruct-abliterated-q_proj-merged.safetensors';
    const dir = session.dirs.make({ [baseName]: fixture.base, [adapterName]: fixture.adapter, 'adapter_config.json': '{}' });
    const demo = await session.open('?backend=cpu');
    const { page } = demo;
    await page.setViewport({ width: 390, height: 900 });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    await upload(page, 'base-input', join(dir, baseName));
    await upload(page, 'adapter-input', join(dir, adapterName));
    await page.waitForSelector('.adapter-name', { timeout: 30_000 });
    for (const [selector, name] of [['.adapter-name', adapterName], ['[data-testid="base-summary"] b', baseName]] as const) {
      const lines = await linesOf(page, selector);
      expect(lines.join(''), selector).toBe(name);
      expect(lines.length, `${selector} wraps on a phone: ${JSON.stringify(lines)}`).toBeGreaterThan(1);
      expect(breaksAfter(lines).filter((c) => !/[_.\-/]/.test(c ?? '')), `${selector}: ${JSON.stringify(lines)}`).toEqual([]);
      expect(await page.$eval(selector, (e) => e.getAttribute('title')), selector).toBe(name);
    }
    if (SHOTS) {
      await (await page.$('#base-section'))!.screenshot({ path: join(SHOTS, 'names-390-dark-base.png') });
      await (await page.$('#adapters-section'))!.screenshot({ path: join(SHOTS, 'names-390-dark-adapters.png') });
    }

    // An adapter job's inputs: the same names in extract mode.
    const jobs = await session.open('?backend=cpu&mode=extract');
    await jobs.page.setViewport({ width: 390, height: 900 });
    await upload(jobs.page, 'job-base-input', join(dir, baseName));
    await jobs.page.waitForFunction(() => document.querySelector('#job-section b[title]'), { timeout: 30_000 });
    const lines = await linesOf(jobs.page, '#job-section b[title]');
    expect(lines.join('')).toBe(baseName);
    expect(lines.length).toBeGreaterThan(1);
    expect(breaksAfter(lines).filter((c) => !/[_.\-/]/.test(c ?? '')), JSON.stringify(lines)).toEqual([]);
  }, 120_000);

  it('a tensor name inside an error line wraps after _ . - / and never mid-word; the text read is the message unchanged', async () => {
    // A Flux file in ComfyUI's names, cut short: its header names a tensor past the file's end.
    const tensor = 'diffusion_model.double_blocks.12.img_attn.qkv.lora_down.weight';
    const file = buildRawSafetensors({ [tensor]: { dtype: 'BF16', shape: [9216, 3072], data_offsets: [0, 9216 * 3072 * 2] } }, new Uint8Array(64));
    const dir = session.dirs.make({ 'flux1-dev.safetensors': file });
    for (const scheme of ['light', 'dark'] as const) {
      const demo = await session.open('?backend=cpu');
      const { page } = demo;
      await page.setViewport({ width: 390, height: 900 });
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await upload(page, 'base-input', join(dir, 'flux1-dev.safetensors'));
      const selector = '[data-testid="base-facts"].error-text';
      await page.waitForSelector(selector, { timeout: 30_000 });
      const message = await page.$eval(selector, (e) => e.textContent ?? '');
      expect(message).toContain(tensor);
      // What is read out: the element's text as the accessibility tree has it, and the alert.
      expect(await page.$eval(selector, (e) => (e as HTMLElement).innerText.replace(/\n/g, ''))).toBe(message);
      const alert = await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 }).then((h) => h.jsonValue());
      expect(alert).toBe(message);
      const lines = await linesOf(page, selector);
      expect(lines.join('')).toBe(message);
      expect(lines.length, JSON.stringify(lines)).toBeGreaterThan(1);
      // Each break after a separator, or at a space (which a line may end or start with).
      const midWord = lines.slice(1).filter((line, i) => !/[_.\-/\s]$/.test(lines[i]) && !/^\s/.test(line));
      expect(midWord, JSON.stringify(lines)).toEqual([]);
      // The name is text, not markup: the only elements inside are the break points.
      expect(await page.$eval(selector, (e) => [...e.querySelectorAll('*')].map((c) => c.tagName).filter((t) => t !== 'WBR'))).toEqual([]);
      if (SHOTS) await (await page.$('#base-section'))!.screenshot({ path: join(SHOTS, `message-names-390-${scheme}.png`) });
    }
  }, 120_000);
});
