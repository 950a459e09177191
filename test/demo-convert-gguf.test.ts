/**
 * The page's convert mode: a PEFT adapter and the GGUF model it is for, picked by keyboard, written
 * as a llama.cpp LoRA GGUF into browser storage and offered as one download, `<adapter>-converted.gguf`.
 * Its bytes are the library's: convertLora (loramerge/node, run here in Node) of the same files
 * writes the same file byte for byte. The run is labelled, announced, and its result takes the
 * focus. What convert cannot take whatever the model (a kohya file, a llama.cpp LoRA, DoRA) is refused
 * when picked, in the library's line, on its card and announced, Convert off. axe-core finds
 * nothing serious in either theme; screenshots at 1280 and 390 px in both (test-output/).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { convertLora, memoryInputFileSet } from '../src/node.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, count, openChooser, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { ggufLoraAdapter, LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { readGguf } from './helpers/gguf-builder.js';

const session = useDemoSession();
const BASE = 'tiny-llama-Q4_K_M.gguf';
const adapter = peftLlamaAdapter(41);
const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));

const runEnabled = (page: Page) => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
const blockedSays = (page: Page) => text(page, '[data-testid="job-blocked"]');
/** A GGUF's general.* keys past architecture and type (those convert_lora_to_gguf.py takes from the adapter's folder). */
const folderKeys = (bytes: Uint8Array) => [...readGguf(bytes).metadata]
  .filter(([k]) => k.startsWith('general.') && !['general.architecture', 'general.type', 'general.quantization_version'].includes(k)).map(([k, v]) => [k, v.value]);

describe('convert to a llama.cpp LoRA on the page', PAGE_RETRY, () => {
  it('by keyboard: the page writes the library’s GGUF byte for byte, announced, the result focused; axe clean in both themes, 390 px', async () => {
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('llama-lora', adapter.files) });
    const out = join(dir, 'library.gguf');
    // The library, in Node, on the same files: the adapter under the name the page gives it (its
    // folder's), which the GGUF records (loramerge.sources), not under its path on disk.
    const library = await convertLora({ adapter: memoryInputFileSet(adapter.files, 'llama-lora'), base: join(dir, BASE), out });
    expect([library.format, library.modules.length]).toEqual(['gguf', 7]);

    const demo = await session.open();
    const { page } = demo;
    await page.focus('body');
    await tabTo(page, '[data-testid="mode-merge"]');
    // merge → combine → resize → extract → convert
    for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowRight');
    expect(await announced(page, /Convert mode/)).toBe('Convert mode: pick the PEFT adapter and the model it is for.');
    expect(await text(page, '#job-heading')).toBe('Convert to a llama.cpp LoRA (GGUF)');
    expect(await text(page, '[data-testid="job-run"]')).toBe('Convert');
    expect(await blockedSays(page)).toBe('Pick the PEFT adapter to convert.');
    // No options to set: no empty group is shown.
    expect(await page.$eval('#job-options', (e) => (e as HTMLElement).hidden)).toBe(true);

    await tabTo(page, '#job-adapter-folder-button');
    await (await openChooser(page, 'Enter')).accept([join(dir, 'llama-lora')]);
    await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter"] .adapter-name')).toBe('llama-lora');
    expect(await blockedSays(page)).toBe('Pick the model the LoRA is for.');
    await tabTo(page, '#job-target-files-button');
    expect(await page.evaluate(() => document.activeElement!.getAttribute('aria-describedby'))).toBe('job-target-hint');
    await (await openChooser(page, 'Space')).accept([join(dir, BASE)]);
    expect(await announced(page, /^Model read/)).toMatch(new RegExp(`^Model read: ${BASE.replaceAll('.', '\\.')}, gguf`));
    await runEnabled(page);

    await tabTo(page, '[data-testid="job-run"]');
    await page.keyboard.press('Enter');
    const bytes = await downloadBytes(page, 'job-download-link');
    await page.waitForFunction(() => document.activeElement?.id === 'job-results', { timeout: 30_000 });
    expect(await announced(page, /^Converted/)).toMatch(/^Converted 7 modules in (<1 s|[\d.]+ s)\. The adapter is under “Your adapter”, with each module’s rank\.$/);
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(out))).toBe(0);
    // Picked as its folder: the folder's name, as the script takes it.
    expect(folderKeys(bytes)).toEqual([['general.name', 'Llama Lora']]);
    expect(await page.$$eval('[data-testid="job-download-link"]', (links) => links.map((a) => (a as HTMLAnchorElement).download))).toEqual(['llama-lora-converted.gguf']);
    expect(await text(page, '#job-results-note')).toMatch(/^Converted in (<1 s|[\d.]+ s): 7 LoRA modules, ranks 4–8\.$/);
    expect(await text(page, '#spectrum-heading')).toBe('Each module’s rank');
    expect(await text(page, '[data-testid="spectrum-note"]')).toBe('A conversion keeps every module’s factors as they are: there are no singular values to choose from.');
    expect(await count(page, '[data-testid="job-modules"] tbody tr')).toBe(7);

    mkdirSync('test-output', { recursive: true });
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 });
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
        expect(await seriousViolations(page), `${width} px ${scheme}`).toEqual([]);
        expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), `${width} px`).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `test-output/demo-convert-${width}px-${scheme}.png`, fullPage: true });
      }
    }
  }, 120_000);

  it('what convert cannot take, refused when picked: one line on its card, announced, Convert off; a PEFT adapter then is taken', async () => {
    const rand = seededRandom(5);
    const g = () => rand() - 0.5;
    const dense = (rows: number, cols: number) => ({ rows, cols, data: Float64Array.from({ length: rows * cols }, g) });
    const kohya = kohyaFile([{ name: 'lora_te_model_layers_0_self_attn_q_proj', alpha: 2, b: dense(256, 2), a: dense(2, 256) }]);
    const gguf = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 2, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F32', bType: 'F32' }], 4);
    // PEFT's DoRA: lora_magnitude_vector beside the factors, use_dora in the config.
    const q = 'base_model.model.model.layers.0.self_attn.q_proj';
    const dora = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, lora_alpha: 2, use_dora: true, target_modules: ['q_proj'], base_model_name_or_path: 'tiny-llama' }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `${q}.lora_A.weight`, dtype: 'F32', shape: [2, 256], data: dense(2, 256).data },
        { name: `${q}.lora_B.weight`, dtype: 'F32', shape: [256, 2], data: dense(256, 2).data },
        { name: `${q}.lora_magnitude_vector`, dtype: 'F32', shape: [256], data: new Float64Array(256).fill(1) },
      ]),
    };
    const dir = session.dirs.make({
      [BASE]: q4kmLlama().files[BASE], 'style.safetensors': kohya, 'llama-lora.gguf': gguf.bytes,
      ...within('dora', dora), ...within('llama-lora', adapter.files),
    });
    const demo = await session.open('?mode=convert');
    const { page } = demo;
    await upload(page, 'job-target-input', join(dir, BASE));
    await announced(page, /^Model read/);
    const cases: [string[], string, string][] = [
      [[join(dir, 'style.safetensors')], 'style.safetensors',
        'style.safetensors: a kohya adapter\'s module names (lora_unet_…, flattened) are not mapped to llama.cpp\'s tensor names; give the PEFT adapter'],
      [[join(dir, 'llama-lora.gguf')], 'llama-lora.gguf',
        'llama-lora.gguf: a llama.cpp LoRA already names the GGUF\'s tensors; there is nothing to convert: load it with llama.cpp\'s --lora as it is'],
      [[join(dir, 'dora')], 'dora',
        'dora: module "base_model.model.model.layers.0.self_attn.q_proj" is DoRA, whose update depends on the base weights; convert cannot express it as a LoRA'],
    ];
    for (const [files, name, line] of cases) {
      await upload(page, name === 'dora' ? 'job-adapter-folder-input' : 'job-adapter-input', ...files);
      // Said at once, before Convert is pressed.
      await page.waitForFunction((want: string) => {
        const facts = document.querySelector('[data-testid="job-adapter-facts"]')?.textContent;
        return document.querySelector('[data-testid="job-adapter"] .adapter-name')?.textContent === want && facts !== 'reading…'
          && document.querySelector('[data-testid="alert"]')!.textContent === facts;
      }, { timeout: 30_000 }, name);
      expect(await text(page, '[data-testid="alert"]')).toBe(line);
      expect(await text(page, '[data-testid="job-adapter"] .adapter-name')).toBe(name);
      expect(await text(page, '[data-testid="job-adapter-facts"]')).toBe(line);
      expect(await page.$eval('[data-testid="job-adapter-facts"]', (e) => e.classList.contains('error-text'))).toBe(true);
      expect(await blockedSays(page)).toBe(`${name} cannot be converted: remove it or pick another.`);
      expect(await page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
      expect(await count(page, '#job-error-list li')).toBe(0);
    }
    // The line it would have failed with: the library's own, when given the same files.
    for (const [source, line] of [[join(dir, 'style.safetensors'), cases[0][2]], [join(dir, 'dora'), cases[2][2]]] as const) {
      await expect(convertLora({ adapter: source, base: join(dir, BASE), out: join(dir, 'never.gguf') })).rejects.toThrow(line.replace(/^[^:]+/, source));
    }
    await upload(page, 'job-adapter-input', join(dir, 'llama-lora', 'adapter_config.json'), join(dir, 'llama-lora', 'adapter_model.safetensors'));
    await runEnabled(page);
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toMatch(/^PEFT/);
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);
    await page.setViewport({ width: 390, height: 900 });
    await upload(page, 'job-adapter-input', join(dir, 'style.safetensors'));
    await page.waitForFunction(() => document.querySelector('[data-testid="job-adapter-facts"]')!.classList.contains('error-text'), { timeout: 30_000 });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBeLessThanOrEqual(0);
      await page.screenshot({ path: `test-output/demo-convert-refused-390px-${scheme}.png`, fullPage: true });
    }
  }, 90_000);

  it('files picked without their folder: the label "PEFT adapter" gives no general.name; the README.md picked with them is read; the library’s bytes', async () => {
    const readme = ['---', 'base_model: meta-llama/Llama-3.2-1B', 'license: apache-2.0', '---', '', '# A LoRA'].join('\n');
    const files = { ...adapter.files, 'README.md': readme };
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('llama-lora', files) });
    const out = join(dir, 'library.gguf');
    // The library on a set named as the page names the pick, which says no folder's name (no namesFolder).
    const { namesFolder: _folder, ...loose } = memoryInputFileSet(files, 'PEFT adapter');
    await convertLora({ adapter: loose, base: join(dir, BASE), out });

    const demo = await session.open('?mode=convert');
    const { page } = demo;
    await upload(page, 'job-target-input', join(dir, BASE));
    await announced(page, /^Model read/);
    await upload(page, 'job-adapter-input', ...Object.keys(files).map((f) => join(dir, 'llama-lora', f)));
    await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter"] .adapter-name')).toBe('PEFT adapter');
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    const bytes = await downloadBytes(page, 'job-download-link');
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(out))).toBe(0);
    expect(folderKeys(bytes)).toEqual([
      ['general.license', 'apache-2.0'], ['general.base_model.count', 1], ['general.base_model.0.name', 'Llama 3.2 1B'],
      ['general.base_model.0.organization', 'Meta Llama'], ['general.base_model.0.repo_url', 'https://huggingface.co/meta-llama/Llama-3.2-1B'],
    ]);
  }, 90_000);
});
