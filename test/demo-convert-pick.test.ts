/**
 * Convert mode says on pick what the conversion would stop on from the adapter's own files, not
 * only once Convert is pressed: a README.md beside the adapter that is not UTF-8 (which
 * convert_lora_to_gguf.py reads for the general.* keys and stops on) is refused on the adapter's
 * card in the command line's `convert` line, announced, Convert off; the same adapter without it
 * is taken.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { announced, seriousViolations, text, upload, useDemoSession } from './helpers/demo-session.js';
import { peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { pageWording } from '../demo/page-wording.js';

const session = useDemoSession();
const BASE = 'tiny-llama-Q4_K_M.gguf';
const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));
const runDisabled = (page: Page) => page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled);

describe('convert mode: the adapter\'s files refused on pick', PAGE_RETRY, () => {
  it('a README.md that is not UTF-8 beside the adapter: the command line\'s line on its card, announced, Convert off', async () => {
    const adapter = peftLlamaAdapter(43);
    // Latin-1 "café" (0xE9 alone is no UTF-8).
    const readme = Uint8Array.from([...new TextEncoder().encode('# Llama LoRA, caf'), 0xe9, 0x0a]);
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('latin-card', { ...adapter.files, 'README.md': readme }), ...within('llama-lora', adapter.files) });
    const cli = await runCli(['convert', '--adapter', join(dir, 'latin-card'), '--base', join(dir, BASE), '--out', join(dir, 'out.gguf')]);
    expect(cli.code, cli.stderr).not.toBe(0);
    const errors = cli.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors, cli.stderr).toHaveLength(1);
    const line = pageWording(errors[0].slice('error: '.length).replaceAll(`${dir}/`, ''));
    expect(line).toMatch(/^latin-card: README\.md is not UTF-8 \(.*\), and convert_lora_to_gguf\.py stops on it/);

    const { page } = await session.open('?mode=convert');
    await page.setViewport({ width: 390, height: 900 });
    await upload(page, 'job-target-input', join(dir, BASE));
    await announced(page, /^Model read/);
    await upload(page, 'job-adapter-folder-input', join(dir, 'latin-card'));
    // Said at once, before Convert is pressed: on the card, in the alert.
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="job-adapter-facts"]')?.textContent === want
      && document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 30_000 }, line);
    expect(await page.$eval('[data-testid="job-adapter-facts"]', (e) => e.classList.contains('error-text'))).toBe(true);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe('latin-card cannot be converted: remove it or pick another.');
    expect(await runDisabled(page)).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBeLessThanOrEqual(0);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      await (await page.$('#job-section'))!.screenshot({ path: `test-output/demo-convert-pick-card-390px-${scheme}.png` });
    }
    // The same adapter without the README is taken.
    await upload(page, 'job-adapter-folder-input', join(dir, 'llama-lora'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toMatch(/^PEFT/);
  }, 60_000);
});
