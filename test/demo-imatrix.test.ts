/**
 * The merge's importance matrix on the page (the CLI's --imatrix): offered only while the base is a
 * GGUF, read as soon as it is picked (a file that is none is refused in one line, under it and
 * aloud, Merge off), and taken by the merge: the Q4_K tensor the merge changes is re-quantized with
 * it, byte for byte as the library's merge with the same matrix writes it, and not as without one;
 * removed, the next merge is the library's without one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { merge } from '../src/node-merge.js';
import { readImportanceMatrix } from '../src/index.js';
import { openNodeByteSource } from '../src/io/node-byte-source.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { announced, mergeEnabled, openChooser, planReady, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { readGguf } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { imatrixDat } from './helpers/imatrix-dat.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { runCli } from './helpers/cli.js';

const session = useDemoSession();
const TARGET = 'blk.0.attn_output.weight';
const SHOTS = process.env.DEMO_SHOTS;

const imatrixFacts = async (page: Page) => {
  await page.waitForFunction(() => !/reading…$/.test(document.querySelector('[data-testid="imatrix-facts"]')?.textContent ?? 'reading…'), { timeout: 30_000 });
  return { line: await text(page, '[data-testid="imatrix-facts"]'), isError: await page.$eval('[data-testid="imatrix-facts"]', (e) => e.classList.contains('error-text')) };
};
/** The Output dtype menu: each option's value and the heading of its group ('' for none). */
const menu = (page: Page) => page.$$eval('[data-testid="out-dtype"] option', (options) => options.map((o) => ({ value: (o as HTMLOptionElement).value, group: o.parentElement instanceof HTMLOptGroupElement ? o.parentElement.label : '' })));
const boxHidden = (page: Page) => page.$eval('[data-testid="imatrix-box"]', (e) => (e as HTMLElement).hidden);

describe('the importance matrix on the page', PAGE_RETRY, () => {
  it('shown for a GGUF base only, refused at once when it is none, and taken by the merge', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: TARGET, rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    // Column weights far apart, so that the weighted quantization picks other scales than the plain one.
    const sums = Array.from({ length: LLAMA.hidden }, (_, c) => (c % 7 === 0 ? 400 : 0.01) * (1 + (c % 5)));
    const dir = session.dirs.make({
      'tiny-llama-Q4_K_M.gguf': base.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes,
      'tiny-llama.imatrix.dat': imatrixDat([{ name: TARGET, ncall: 10, sums }]),
      'notes.dat': 'calibration notes, not an importance matrix\n',
      ...llamaWithPeft(67).files,
    });
    const demo = await session.open('?backend=cpu');
    const { page } = demo;
    await page.setViewport({ width: 390, height: 900 });
    expect(await boxHidden(page)).toBe(true);
    // A safetensors base: no importance matrix to give.
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await page.waitForSelector('[data-testid="base-summary"]:not([hidden])');
    expect(await boxHidden(page)).toBe(true);

    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora.gguf'));
    await planReady(page);
    await mergeEnabled(page);
    expect(await boxHidden(page)).toBe(false);
    // The IQ2 types are written only with a matrix: not offered without one.
    expect((await menu(page)).filter((o) => o.value.startsWith('iq2'))).toEqual([]);

    // Not an importance matrix: its one line, under it and aloud; Merge off, saying why.
    await upload(page, 'imatrix-input', join(dir, 'notes.dat'));
    const refused = await imatrixFacts(page);
    expect(refused.isError).toBe(true);
    expect(refused.line).toMatch(/^importance matrix notes\.dat: /);
    expect(refused.line.split('\n')).toHaveLength(1);
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 10_000 }, refused.line);
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '#merge-blocked')).toBe('notes.dat cannot be used: remove it or pick another importance matrix.');
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page)).toEqual([]);
      if (SHOTS) await (await page.$('#merge-section'))!.screenshot({ path: join(SHOTS, `imatrix-refused-390-${scheme}.png`) });
    }

    // The right file, picked by keyboard in its place.
    await tabTo(page, '#imatrix-button');
    const chooser = await openChooser(page, 'Enter');
    await chooser.accept([join(dir, 'tiny-llama.imatrix.dat')]);
    expect(await imatrixFacts(page)).toEqual({ line: 'tiny-llama.imatrix.dat: importance matrix for 1 tensor; the merged tensors are re-quantized with it', isError: false });
    expect(await announced(page, /^Importance matrix read/)).toBe('Importance matrix read: tiny-llama.imatrix.dat, importance matrix for 1 tensor; the merged tensors are re-quantized with it. The Output dtype menu also offers iq1_s, iq1_m, iq2_xxs, iq2_xs and iq2_s with it.');
    // Offered now, under their own heading, after the types written without one.
    const offered = await menu(page);
    expect(offered.filter((o) => o.group === 'with the importance matrix').map((o) => o.value)).toEqual(['iq1_s', 'iq1_m', 'iq2_xxs', 'iq2_xs', 'iq2_s']);
    expect(offered.findIndex((o) => o.value === 'iq1_s')).toBeGreaterThan(offered.findIndex((o) => o.value === 'iq4_xs'));
    await mergeEnabled(page);
    if (SHOTS) await (await page.$('#merge-section'))!.screenshot({ path: join(SHOTS, 'imatrix-read-390-dark.png') });
    await page.click('[data-testid="merge-button"]');
    const merged = readGguf(await downloadBytes(page));

    // The library's merge of the same files, with the matrix and without.
    const importance = await (async () => {
      const source = await openNodeByteSource(join(dir, 'tiny-llama.imatrix.dat'));
      try {
        return await readImportanceMatrix(source);
      } finally {
        await source.close();
      }
    })();
    const tensorOf = async (out: string, withMatrix: boolean) => {
      await merge({ base: join(dir, 'tiny-llama-Q4_K_M.gguf'), adapters: [join(dir, 'lora.gguf')], out: join(dir, out), backend: 'cpu', threads: 1, ...(withMatrix ? { importance } : {}) });
      return readGguf(readFileSync(join(dir, out))).tensors.find((t) => t.name === TARGET)!;
    };
    const withMatrix = await tensorOf('with.gguf', true);
    const without = await tensorOf('without.gguf', false);
    const got = merged.tensors.find((t) => t.name === TARGET)!;
    expect(Buffer.compare(withMatrix.data, without.data)).not.toBe(0);
    expect(Buffer.compare(got.data, withMatrix.data)).toBe(0);

    // IQ2_XXS for the merged tensor, chosen by keyboard: the command line's merge --dtype iq2_xxs --dtype-merged-only --imatrix, byte for byte.
    await page.focus('[data-testid="out-dtype"]');
    for (let i = 0; i < 40 && await page.$eval('[data-testid="out-dtype"]', (s) => (s as HTMLSelectElement).value) !== 'iq2_xxs'; i++) await page.keyboard.press('ArrowDown');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/^Matrices requantized to IQ2_XXS .* Written only with the importance matrix, as llama-quantize writes IQ2_XXS only with an importance matrix\.$/);
    await tabTo(page, '[data-testid="dtype-merged-only"]');
    await page.keyboard.press('Space');
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page)).toEqual([]);
      await (await page.$('#merge-section'))!.screenshot({ path: `test-output/demo-imatrix-iq2-390px-${scheme}.png` });
    }
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const iq2 = readGguf(await downloadBytes(page)).tensors.find((t) => t.name === TARGET)!;
    const cli = await runCli(['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'iq2.gguf'),
      '--dtype', 'iq2_xxs', '--dtype-merged-only', '--imatrix', join(dir, 'tiny-llama.imatrix.dat'), '--backend', 'cpu', '--threads', '1']);
    expect(cli.code, cli.stderr).toBe(0);
    const cliTensor = readGguf(readFileSync(join(dir, 'iq2.gguf'))).tensors.find((t) => t.name === TARGET)!;
    expect(cliTensor.typeId).toBe(16); // GGML_TYPE_IQ2_XXS
    expect(iq2.typeId).toBe(16);
    expect(Buffer.compare(iq2.data, cliTensor.data)).toBe(0);

    // Removed: the box says nothing, the IQ2 types leave the menu (the choice back to keeping each
    // tensor's type, said), and the merge result is out of date (it was made with it).
    await page.click('[data-testid="imatrix-remove"]');
    await page.waitForSelector('[data-testid="download-link-stale"]', { timeout: 10_000 });
    expect(await page.$eval('[data-testid="imatrix-picked"]', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('imatrix-button');
    expect(await announced(page, /^Importance matrix removed/)).toBe('Importance matrix removed: the merged tensors are re-quantized without one. iq2_xxs is written only with one: the Output dtype is back to “keep each tensor’s type”.');
    expect((await menu(page)).filter((o) => o.value.startsWith('iq2'))).toEqual([]);
    expect(await page.$eval('[data-testid="out-dtype"]', (s) => (s as HTMLSelectElement).value)).toBe('same');
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page)).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBeLessThanOrEqual(0);
      await (await page.$('#merge-section'))!.screenshot({ path: `test-output/demo-imatrix-removed-390px-${scheme}.png` });
    }

    // Merged again after Remove: as with none picked (the matrix the worker read is not used, nor kept).
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const again = readGguf(await downloadBytes(page)).tensors.find((t) => t.name === TARGET)!;
    expect(Buffer.compare(again.data, without.data)).toBe(0);
  }, 180_000);
});
