/**
 * Merge mode given an adapter whose LoRA factor holds NaN (a broken download, a diverged run): the
 * plan reads headers only, so the merge meets it, and stops with the command line's one line,
 * naming the adapter, the factor tensor and the base tensor, in the page's words, read out; no
 * download link appears, and nothing is left behind: the merge's folder in browser storage is
 * deleted, and a file picked to save into is removed (it was empty: a merge writes it only when it
 * completes). The inputs as they are merge once the factor is intact.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { pageWording } from '../demo/page-wording.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { checkMerged, downloadBytes } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const BROKEN = 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight';

/** Every file the page's storage holds, by path, with its size: the merges' folders and a picked file alike. */
function storedFiles(page: Page): Promise<Record<string, number>> {
  return page.evaluate(async () => {
    const out: Record<string, number> = {};
    const walk = async (dir: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [name, handle] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        if (handle.kind === 'directory') await walk(handle as FileSystemDirectoryHandle, `${prefix}${name}/`);
        else out[`${prefix}${name}`] = (await (handle as FileSystemFileHandle).getFile()).size;
      }
    };
    await walk(await navigator.storage.getDirectory(), '');
    return out;
  });
}

/** The line under the progress bar once the merge has failed. */
async function failedLine(page: Page): Promise<string> {
  await page.waitForFunction(() => document.querySelector('[data-testid="progress-text"]')?.className === 'error-text', { timeout: 60_000 });
  return text(page, '[data-testid="progress-text"]');
}

describe('a LoRA factor holding NaN, in Merge mode', PAGE_RETRY, () => {
  it('stops the merge with one line naming the adapter and tensor, read out; no download link, nothing left in storage or in a picked file', async () => {
    const fixture = llamaWithPeft(4811);
    const tensors = [...decodeSafetensors(fixture.adapter).tensors].map(([name, t]) => ({
      name, dtype: 'F32' as const, shape: t.shape, data: Float64Array.from(t.values).map((v, i) => (name === BROKEN && i === 5 ? NaN : v)),
    }));
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'broken-lora/adapter_config.json': fixture.files['llama-lora/adapter_config.json'],
      'broken-lora/adapter_model.safetensors': buildSafetensors(tensors),
      'llama-lora/adapter_config.json': fixture.files['llama-lora/adapter_config.json'],
      'llama-lora/adapter_model.safetensors': fixture.adapter,
    });
    // The command line's line for the same files, named as the page names them.
    const cli = await runCli(['merge', '--base', join(dir, 'llama.safetensors'), '--adapter', join(dir, 'broken-lora'), '--out', join(dir, 'out.safetensors'), '--backend', 'cpu']);
    expect(cli.code, cli.stderr).toBe(1);
    const errors = cli.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors).toHaveLength(1);
    const line = errors[0].slice('error: '.length).replaceAll(`${dir}/`, '');
    expect(line).toBe(`broken-lora module "model.layers.1.mlp.down_proj": factor ${BROKEN} holds 1 NaN or Inf value (row 2); the adapter file is broken (llama.safetensors: tensor "model.layers.1.mlp.down_proj.weight")`);

    const { page } = await session.open('?backend=cpu');
    // "A file I choose" answered with a file of the page's own storage, as a person would pick one.
    await page.evaluateOnNewDocument(() => {
      (window as unknown as { showSaveFilePicker(o: { suggestedName: string }): Promise<FileSystemFileHandle> }).showSaveFilePicker =
        async (o) => (await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true })).getFileHandle(o.suggestedName, { create: true });
    });
    await page.reload({ waitUntil: 'load' });
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'broken-lora'));
    await planReady(page);
    await mergeEnabled(page);

    for (const destination of ['browser-storage', 'picked'] as const) {
      await page.select('[data-testid="destination"]', destination);
      // By keyboard: focus on Merge, Enter.
      await page.focus('[data-testid="merge-button"]');
      await page.keyboard.press('Enter');
      // One line, the command line's in the page's words, under the progress bar and read out.
      const shown = await failedLine(page);
      expect(shown, destination).toBe(pageWording(line));
      await page.waitForFunction((want: string) => document.querySelector('[data-testid="alert"]')?.textContent === want, { timeout: 30_000 }, `The merge failed: ${pageWording(line)}`);
      // No result, no download link, and nothing in storage: the merge's folder deleted, the picked file removed.
      await mergeEnabled(page);
      expect(await page.$$eval('[data-testid^="download-link"]', (as) => as.length), destination).toBe(0);
      expect(await page.$eval('[data-testid="results"]', (r) => (r as HTMLElement).hidden), destination).toBe(true);
      await page.waitForFunction(async () => {
        const root = await navigator.storage.getDirectory();
        for await (const [name, handle] of (root as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
          if (name === 'picked' && handle.kind === 'directory') {
            for await (const _ of (handle as unknown as { keys(): AsyncIterable<string> }).keys()) return false;
          }
          if (name === 'loramerge-merges' && handle.kind === 'directory') {
            for await (const _ of (handle as unknown as { keys(): AsyncIterable<string> }).keys()) return false;
          }
        }
        return true;
      }, { timeout: 30_000 });
      expect(await storedFiles(page), destination).toEqual({});
    }

    // The intact adapter in its place merges, against float64 truth: the refusal was the factor's.
    await page.select('[data-testid="destination"]', 'browser-storage');
    await page.click('[data-testid="adapter"] .remove');
    await upload(page, 'adapter-folder-input', join(dir, 'llama-lora'));
    await planReady(page);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    checkMerged(await downloadBytes(page), decodeSafetensors(fixture.base).tensors, [{ tensors: decodeSafetensors(fixture.adapter).tensors, scale: fixture.alpha / fixture.rank }]);
  }, 180_000);
});
