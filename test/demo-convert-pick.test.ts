/**
 * Convert mode says on pick what the conversion would stop on from the adapter's own files, not
 * only once Convert is pressed: a README.md beside the adapter that is not UTF-8 (which
 * convert_lora_to_gguf.py reads for the general.* keys and stops on) is refused on the adapter's
 * card in the command line's `convert` line, announced, Convert off; the same adapter without it
 * is taken. What convert refuses of the adapter on the model picked with it (an adapter for another
 * model) is said on the adapter's card as soon as both are read, in whichever order they are
 * picked, in the command line's line; another model or adapter is checked again. A factor holding
 * NaN or Inf, which convert meets reading the factors, is said on pick too (the adapter's factors
 * read then, up to the page's MAX_PICK_FACTOR_BYTES), before any model is picked.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { announced, count, seriousViolations, text, upload, useDemoSession } from './helpers/demo-session.js';
import { LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { pageWording } from '../demo/page-wording.js';

const session = useDemoSession();
const BASE = 'tiny-llama-Q4_K_M.gguf';
const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));
const runDisabled = (page: Page) => page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled);

/** At 390 px: nothing scrolls sideways, axe finds nothing serious in either theme; the job section shot in each as `demo-convert-pick-NAME-390px-THEME.png`. */
async function phoneChecks(page: Page, name: string): Promise<void> {
  expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBeLessThanOrEqual(0);
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
    expect(await seriousViolations(page), scheme).toEqual([]);
    await (await page.$('#job-section'))!.screenshot({ path: `test-output/demo-convert-pick-${name}-390px-${scheme}.png` });
  }
}

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
    await phoneChecks(page, 'card');
    // The same adapter without the README is taken.
    await upload(page, 'job-adapter-folder-input', join(dir, 'llama-lora'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toMatch(/^PEFT/);
  }, 60_000);

  it('an adapter for a wider model: convert\'s refusal on that model said on its card once both are read, Convert off; the right adapter is taken', async () => {
    // A PEFT LoRA on layer 0's q_proj of a llama twice as wide (hidden 512): its update does not fit attn_q (256×256).
    const wide = 2 * LLAMA.hidden;
    const q = 'base_model.model.model.layers.0.self_attn.q_proj';
    const values = (n: number) => Float64Array.from({ length: n }, (_, i) => ((i % 7) - 3) / 64);
    const wideLora = {
      'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, lora_alpha: 4, target_modules: ['q_proj'], base_model_name_or_path: 'wide-llama' }),
      'adapter_model.safetensors': buildSafetensors([
        { name: `${q}.lora_A.weight`, dtype: 'F32', shape: [2, wide], data: values(2 * wide) },
        { name: `${q}.lora_B.weight`, dtype: 'F32', shape: [wide, 2], data: values(wide * 2) },
      ]),
    };
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('wide-lora', wideLora), ...within('llama-lora', peftLlamaAdapter(44).files) });
    const cli = await runCli(['convert', '--adapter', join(dir, 'wide-lora'), '--base', join(dir, BASE), '--out', join(dir, 'out.gguf')]);
    expect(cli.code, cli.stderr).not.toBe(0);
    const errors = cli.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors, cli.stderr).toHaveLength(1);
    const line = pageWording(errors[0].slice('error: '.length).replaceAll(`${dir}/`, ''));
    expect(line).toContain(`module "model.layers.0.self_attn.q_proj": its update is ${wide}×${wide}, which does not fit blk.0.attn_q.weight (256×256); the adapter is for another model than ${BASE}`);

    const { page } = await session.open('?mode=convert');
    // The adapter first: read alone it is a PEFT LoRA like any other.
    await upload(page, 'job-adapter-folder-input', join(dir, 'wide-lora'));
    await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-blocked"]')).toBe('Pick the model the LoRA is for.');
    // Then the model: once it is read, convert's line on the adapter's card and aloud.
    await upload(page, 'job-target-input', join(dir, BASE));
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="job-adapter-facts"]')?.textContent === want
      && document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 30_000 }, line);
    expect(await page.$eval('[data-testid="job-adapter-facts"]', (e) => e.classList.contains('error-text'))).toBe(true);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe(`wide-lora cannot be converted for ${BASE}: pick another adapter or model.`);
    expect(await runDisabled(page)).toBe(true);
    expect(await count(page, '#job-error-list li')).toBe(0);
    // The adapter for this model: checked again, taken.
    await upload(page, 'job-adapter-folder-input', join(dir, 'llama-lora'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toMatch(/^PEFT/);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe('');
    // The wide one again, the model already read: said at once, in the same line.
    await upload(page, 'job-adapter-folder-input', join(dir, 'wide-lora'));
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="job-adapter-facts"]')?.textContent === want, { timeout: 30_000 }, line);
    expect(await runDisabled(page)).toBe(true);
    await page.setViewport({ width: 390, height: 900 });
    await phoneChecks(page, 'model');
  }, 90_000);

  it('a factor holding NaN and Inf: the command line\'s line on the adapter\'s card on pick, before a model, announced, Convert off', async () => {
    const good = peftLlamaAdapter(45);
    // The same factors, two values of layer 0's v_proj lora_B made NaN and Inf.
    const v = 'model.layers.0.self_attn.v_proj';
    const tensors = good.factors.flatMap((f) => {
      const b = f.module === v ? Float64Array.from(f.b, (x, i) => (i === 3 ? NaN : i === 40 ? Infinity : x)) : f.b;
      return [
        { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'BF16' as const, shape: [f.rank, f.in], data: f.a },
        { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'BF16' as const, shape: [f.out, f.rank], data: b },
      ];
    });
    const broken = { 'adapter_config.json': good.files['adapter_config.json'], 'adapter_model.safetensors': buildSafetensors(tensors) };
    const dir = session.dirs.make({ [BASE]: q4kmLlama().files[BASE], ...within('nan-lora', broken), ...within('llama-lora', good.files) });
    const cli = await runCli(['convert', '--adapter', join(dir, 'nan-lora'), '--base', join(dir, BASE), '--out', join(dir, 'out.gguf')]);
    expect(cli.code, cli.stderr).not.toBe(0);
    const errors = cli.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors, cli.stderr).toHaveLength(1);
    const line = pageWording(errors[0].slice('error: '.length).replaceAll(`${dir}/`, ''));
    expect(line).toMatch(new RegExp(`^nan-lora: tensor "base_model\\.model\\.${v.replaceAll('.', '\\.')}\\.lora_B\\.weight" holds 2 NaN or Inf values .*; the adapter file is broken$`));

    const { page } = await session.open('?mode=convert');
    await page.setViewport({ width: 390, height: 900 });
    // The adapter alone, no model yet: its factors are read on pick, convert's line said at once.
    await upload(page, 'job-adapter-folder-input', join(dir, 'nan-lora'));
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="job-adapter-facts"]')?.textContent === want
      && document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 30_000 }, line);
    expect(await page.$eval('[data-testid="job-adapter-facts"]', (e) => e.classList.contains('error-text'))).toBe(true);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe('nan-lora cannot be converted: remove it or pick another.');
    expect(await runDisabled(page)).toBe(true);
    // The model picked after it changes nothing: the adapter stays refused.
    await upload(page, 'job-target-input', join(dir, BASE));
    await announced(page, /^Model read/);
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toBe(line);
    expect(await runDisabled(page)).toBe(true);
    await phoneChecks(page, 'nan');
    // The same adapter with finite factors is taken.
    await upload(page, 'job-adapter-folder-input', join(dir, 'llama-lora'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    expect(await text(page, '[data-testid="job-adapter-facts"]')).toMatch(/^PEFT/);
  }, 60_000);
});
