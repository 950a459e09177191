/**
 * What the merge would stop on, said by the plan when the inputs are picked, not when Merge is
 * pressed: a tensor an adapter saves whole (modules_to_save, trainable tokens) holding NaN/Inf or
 * overflowing the output dtype is an error of the plan, listed, read out, Merge off, in the words
 * the command line's merge stops with; one that depends on the output dtype comes and goes with
 * the dtype menu. And an importance matrix, once read, makes the plan's warnings the command line's
 * plan warnings with --imatrix; removed, they are those without it again.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { pageWording } from '../demo/page-wording.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { announced, mergeEnabled, planReady, seriousViolations, text, texts, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, randomValues, seededRandom } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { llamaWithPeft, sdxlPipelineWithTextEncoderLora } from './helpers/page-fixtures.js';
import { imatrixDat } from './helpers/imatrix-dat.js';

const session = useDemoSession();
const P = 'base_model.model';
const HIDDEN = 16;

/** The plan's list as the page shows it, each line `error: …` or `warning: …`. */
const problems = (page: Page) => texts(page, '[data-testid="plan-problems"] li');
const mergeDisabled = (page: Page) => page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled);
const alertText = (page: Page) => text(page, '[data-testid="alert"]');
/** The alert's text once it says `want` (the announcer writes it 50 ms after clearing), or what it says after 30 s. */
async function alertOnceSaid(page: Page, want: string): Promise<string> {
  await page.waitForFunction((w: string) => document.querySelector('[data-testid="alert"]')?.textContent === w, { timeout: 30_000 }, want).catch(() => undefined);
  return alertText(page);
}

/**
 * The one `error: …` line the command line's merge of `dir`'s `base` and `adapter` stops with, its
 * inputs named as the page names them (the file or folder's name, not the path given).
 */
async function cliRefusal(dir: string, base: string, adapter: string): Promise<string> {
  const cli = await runCli(['merge', '--base', join(dir, base), '--adapter', join(dir, adapter), '--out', join(dir, 'out.safetensors'), '--backend', 'cpu']);
  expect(cli.code, cli.stderr).not.toBe(0);
  const line = cli.stderr.split('\n').find((l) => l.startsWith('error: '));
  expect(line, cli.stderr).toBeDefined();
  return line!.slice('error: '.length).replaceAll(`${dir}/`, '');
}

/** The one `error: …` line of the command line's dry run of `dir`'s files (no --out), named as the page names them. */
async function cliDryRunRefusal(dir: string, args: string[]): Promise<string> {
  const cli = await runCli(['merge', ...args.map((a) => (a.startsWith('--') ? a : join(dir, a))), '--backend', 'cpu', '--dry-run']);
  expect(cli.code, cli.stderr).toBe(1);
  const lines = cli.stderr.split('\n').filter((l) => l.startsWith('error: '));
  expect(lines, cli.stderr).toHaveLength(1);
  return lines[0].slice('error: '.length).replaceAll(`${dir}/`, '');
}

/** The `warning: …` lines of the command line's dry run (its plan) of `dir`'s files, named as the page names them. */
async function cliPlanWarnings(dir: string, args: string[]): Promise<string[]> {
  const cli = await runCli(['merge', ...args.map((a) => (a.startsWith('--') ? a : join(dir, a))), '--dry-run']);
  expect(cli.code, cli.stderr).toBe(0);
  return cli.stderr.split('\n').filter((l) => l.startsWith('warning: ')).map((l) => l.slice('warning: '.length).replaceAll(`${dir}/`, ''));
}

describe('the plan says on pick what the merge would stop on', PAGE_RETRY, () => {
  it('saved tensors with NaN, trainable tokens past F16: listed, read out, Merge off; the dtype menu takes the overflow away', async () => {
    const rand = seededRandom(4401);
    const fixture = llamaWithPeft(4402);
    const lora = fixture.files['llama-lora/adapter_model.safetensors'] as Uint8Array;
    const loraTensors = [...decodeSafetensors(lora).tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.values }));
    // modules_to_save: embed_tokens saved whole, NaN in rows 3 and 40.
    const saved = randomValues(50 * HIDDEN, rand);
    saved[3 * HIDDEN + 2] = NaN;
    saved[40 * HIDDEN + 9] = NaN;
    const nanAdapter = buildSafetensors([...loraTensors, { name: `${P}.model.embed_tokens.modules_to_save.default.weight`, dtype: 'F32', shape: [50, HIDDEN], data: saved }]);
    // Trainable tokens: token 7's row holds 1e6, finite in F32, past F16's 65504 (the base's type).
    const delta = randomValues(HIDDEN, rand);
    delta[5] = 1e6;
    const tokensAdapter = buildSafetensors([...loraTensors, { name: `${P}.model.embed_tokens.token_adapter.trainable_tokens_delta`, dtype: 'F32', shape: [1, HIDDEN], data: delta }]);
    const config = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'] };
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'saved-nan/adapter_config.json': JSON.stringify({ ...config, modules_to_save: ['embed_tokens'] }), 'saved-nan/adapter_model.safetensors': nanAdapter,
      'big-token/adapter_config.json': JSON.stringify({ ...config, trainable_token_indices: [7] }), 'big-token/adapter_model.safetensors': tokensAdapter,
    });
    const nanRefusal = await cliRefusal(dir, 'llama.safetensors', 'saved-nan');
    expect(nanRefusal).toMatch(/^saved-nan: tensor ".*embed_tokens\.modules_to_save\.default\.weight" \(replacing model\.embed_tokens\.weight, modules_to_save\) holds 2 NaN or Inf values \(first in row 3, last in row 40\); the adapter file is broken$/);
    const tokenRefusal = await cliRefusal(dir, 'llama.safetensors', 'big-token');
    expect(tokenRefusal).toMatch(/values of row 7 \(set by trainable tokens\) overflow F16/);

    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'saved-nan'));
    await planReady(page);
    // Listed as the plan's error, before any click; read out; Merge off saying why.
    await page.waitForFunction(() => /^1 error stops the merge/.test(document.getElementById('plan-problems-heading')!.textContent ?? ''), { timeout: 30_000 });
    expect(await problems(page)).toEqual([`error: ${pageWording(nanRefusal)}`]);
    expect(await alertOnceSaid(page, `The plan has 1 error. First: ${pageWording(nanRefusal)}`)).toBe(`The plan has 1 error. First: ${pageWording(nanRefusal)}`);
    expect(await mergeDisabled(page)).toBe(true);
    expect(await text(page, '#merge-blocked')).toBe('The plan has 1 error: fix it first.');
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
    }
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await (await page.$('#plan-section'))!.screenshot({ path: 'test-output/demo-plan-ahead-saved-nan-390px-dark.png' });
    await page.setViewport({ width: 1280, height: 900 });

    // Another adapter in its place: its refusal depends on the output dtype (F16, the base's).
    await page.click('[data-testid="adapter"] button.remove');
    await upload(page, 'adapter-folder-input', join(dir, 'big-token'));
    await page.waitForFunction((want: string) => [...document.querySelectorAll('[data-testid="plan-problems"] li')].some((li) => li.textContent === want), { timeout: 30_000 }, `error: ${pageWording(tokenRefusal)}`);
    expect(await problems(page)).toEqual([`error: ${pageWording(tokenRefusal)}`]);
    expect(await mergeDisabled(page)).toBe(true);
    // f32 holds 1e6: the error goes, said, and Merge comes on.
    await page.select('[data-testid="out-dtype"]', 'f32');
    await mergeEnabled(page);
    expect(await problems(page)).toEqual(['✓ Every adapter module found its base tensor.']);
    // Back to the base's types: the error again, read out as new.
    await page.select('[data-testid="out-dtype"]', 'same');
    await page.waitForFunction(() => document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled, { timeout: 30_000 });
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 30_000 }, `Error: ${pageWording(tokenRefusal)}`);
    expect(await problems(page)).toEqual([`error: ${pageWording(tokenRefusal)}`]);
  }, 180_000);

  it('an importance matrix read: the plan\'s warnings are the command line\'s with --imatrix; removed, those without it', async () => {
    const TARGET = 'blk.0.attn_output.weight';
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: TARGET, rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const sums = Array.from({ length: LLAMA.hidden }, (_, c) => 1 + (c % 5));
    const dir = session.dirs.make({
      'tiny-llama-Q4_K_M.gguf': base.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes,
      'tiny-llama.imatrix.dat': imatrixDat([{ name: TARGET, ncall: 10, sums }]),
    });
    const args = ['--base', 'tiny-llama-Q4_K_M.gguf', '--adapter', 'lora.gguf'];
    const without = (await cliPlanWarnings(dir, args)).map((w) => `warning: ${pageWording(w)}`);
    const withMatrix = (await cliPlanWarnings(dir, [...args, '--imatrix', 'tiny-llama.imatrix.dat'])).map((w) => `warning: ${pageWording(w)}`);
    expect(withMatrix).not.toEqual(without);
    expect(withMatrix.some((w) => w.includes('with the importance matrix tiny-llama.imatrix.dat'))).toBe(true);

    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora.gguf'));
    await planReady(page);
    await mergeEnabled(page);
    expect(await problems(page)).toEqual(without);

    await upload(page, 'imatrix-input', join(dir, 'tiny-llama.imatrix.dat'));
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="plan-problems"] li')?.textContent === want, { timeout: 30_000 }, withMatrix[0]);
    expect(await problems(page)).toEqual(withMatrix);
    // The new wording is said as a warning of the plan.
    await announced(page, /with the importance matrix tiny-llama\.imatrix\.dat/);
    await mergeEnabled(page);

    await page.click('[data-testid="imatrix-remove"]');
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="plan-problems"] li')?.textContent === want, { timeout: 30_000 }, without[0]);
    expect(await problems(page)).toEqual(without);
  }, 180_000);

  it('a GGUF base: a modules_to_save head too large for its Q6_K blocks is the dry run\'s error on pick, listed, read out, Merge off', async () => {
    const model = q4kmLlama();
    const peft = peftLlamaAdapter();
    const config = { ...JSON.parse(peft.files['adapter_config.json'] as string), modules_to_save: ['lm_head'] };
    // Finite in the adapter's f32; re-quantized to output.weight's Q6_K the blocks' f16 scales overflow.
    const head = Float64Array.from({ length: LLAMA.vocab * LLAMA.hidden }, (_, i) => ((i % 7) - 3) * 1e9);
    const factors = peft.factors.flatMap((f) => [
      { name: `${P}.${f.module}.lora_A.weight`, dtype: 'BF16' as const, shape: [f.rank, f.in], data: f.a },
      { name: `${P}.${f.module}.lora_B.weight`, dtype: 'BF16' as const, shape: [f.out, f.rank], data: f.b },
    ]);
    const dir = session.dirs.make({
      'tiny-llama-Q4_K_M.gguf': model.files['tiny-llama-Q4_K_M.gguf'],
      'big-head/adapter_config.json': JSON.stringify(config),
      'big-head/adapter_model.safetensors': buildSafetensors([...factors, { name: `${P}.lm_head.weight`, dtype: 'F32', shape: [LLAMA.vocab, LLAMA.hidden], data: head }]),
    });
    const refusal = await cliDryRunRefusal(dir, ['--base', 'tiny-llama-Q4_K_M.gguf', '--adapter', 'big-head']);
    expect(refusal).toBe("tiny-llama-Q4_K_M.gguf: tensor \"output.weight\": merged values up to 3.00e+9 are too large for Q6_K blocks: 16384 values (first in row 0, last in row 63) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight");

    const { page } = await session.open('?backend=cpu');
    await page.setViewport({ width: 390, height: 844 });
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-folder-input', join(dir, 'big-head'));
    await planReady(page);
    const want = `error: ${pageWording(refusal)}`;
    await page.waitForFunction((line: string) => document.querySelector('[data-testid="plan-problems"] li')?.textContent === line, { timeout: 30_000 }, want);
    expect((await problems(page)).filter((p) => p.startsWith('error: '))).toEqual([want]);
    expect(await alertOnceSaid(page, `The plan has 1 error. First: ${pageWording(refusal)}`)).toBe(`The plan has 1 error. First: ${pageWording(refusal)}`);
    expect(await mergeDisabled(page)).toBe(true);
    expect(await text(page, '#merge-blocked')).toBe('The plan has 1 error: fix it first.');
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      await (await page.$('#plan-section'))!.screenshot({ path: `test-output/demo-plan-ahead-gguf-blocks-390px-${scheme}.png` });
    }
    // f32 holds the values: the error goes and Merge comes on.
    await page.select('[data-testid="out-dtype"]', 'f32');
    await mergeEnabled(page);
  }, 120_000);

  it('a language model\'s LoRA on an SDXL pipeline picked as a folder: the base is named a diffusion UNet, not a text encoder', async () => {
    const { pipeline } = sdxlPipelineWithTextEncoderLora(4403);
    const fixture = llamaWithPeft(4404);
    const dir = session.dirs.make({ ...Object.fromEntries(Object.entries(pipeline).map(([path, data]) => [`sdxl/${path}`, data])), ...fixture.files });
    const { page } = await session.open('?backend=cpu');
    await page.setViewport({ width: 390, height: 844 });
    await upload(page, 'base-folder-input', join(dir, 'sdxl'));
    await upload(page, 'adapter-folder-input', join(dir, 'llama-lora'));
    await planReady(page);
    const want = 'error: llama-lora: this adapter is for a language model, but the base is a diffusion UNet: none of its 4 modules has a tensor there (such as "model.layers.0.self_attn.q_proj"); pick the base it was trained on';
    await page.waitForFunction((line: string) => document.querySelector('[data-testid="plan-problems"] li')?.textContent === line, { timeout: 30_000 }, want);
    expect(await problems(page)).toEqual([want]);
    expect(await alertOnceSaid(page, `The plan has 1 error. First: ${want.slice('error: '.length)}`)).toBe(`The plan has 1 error. First: ${want.slice('error: '.length)}`);
    expect(await mergeDisabled(page)).toBe(true);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  }, 120_000);

  it('a slider moved: the tensors an adapter saves whole are read for the plan, not again for each check the weights make', async () => {
    const rand = seededRandom(4405);
    const fixture = llamaWithPeft(4406);
    const lora = fixture.files['llama-lora/adapter_model.safetensors'] as Uint8Array;
    const loraTensors = [...decodeSafetensors(lora).tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.values }));
    const SAVED = `${P}.model.embed_tokens.modules_to_save.default.weight`;
    const weights = buildSafetensors([...loraTensors, { name: SAVED, dtype: 'F32', shape: [50, HIDDEN], data: randomValues(50 * HIDDEN, rand) }]);
    // Where the saved tensor's bytes lie in the file.
    const headerLength = Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(weights.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: [number, number] }>;
    const [from, to] = header[SAVED].data_offsets.map((o) => 8 + headerLength + o);
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'saved/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'], modules_to_save: ['embed_tokens'] }),
      'saved/adapter_model.safetensors': weights,
    });
    const { page } = await session.open('?backend=cpu');
    const find = () => page.workers().find((w) => /merge-worker/.test(w.url()));
    for (let i = 0; i < 100 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
    const worker = find();
    if (!worker) throw new Error('no merge worker');
    await worker.evaluate(() => {
      const scope = self as unknown as { slices: [number, number][] };
      scope.slices = [];
      const slice = Blob.prototype.slice;
      Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
        if (this instanceof File && this.name === 'adapter_model.safetensors') scope.slices.push([start ?? 0, end ?? this.size]);
        return slice.call(this, start, end, type);
      };
    });
    const savedReads = () => worker.evaluate((a: number, b: number) => {
      const scope = self as unknown as { slices: [number, number][] };
      const n = scope.slices.filter(([s, e]) => s < b && e > a).length;
      scope.slices = [];
      return n;
    }, from, to);
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'saved'));
    await planReady(page);
    await mergeEnabled(page);
    // The plan read it (the count sees the reads it must).
    expect(await savedReads()).toBeGreaterThan(0);
    // Weight 0, then 0.5: two checks, each seen by its warning coming and going.
    await typeInto(page, '[data-testid="adapter-weight-number"]', '0');
    await page.keyboard.press('Tab');
    await page.waitForFunction(() => /weight 0 leaves out/.test(document.getElementById('plan-problems')!.textContent ?? ''), { timeout: 30_000 });
    await typeInto(page, '[data-testid="adapter-weight-number"]', '0.5');
    await page.keyboard.press('Tab');
    await page.waitForFunction(() => !/weight 0 leaves out/.test(document.getElementById('plan-problems')!.textContent ?? ''), { timeout: 30_000 });
    expect(await savedReads()).toBe(0);
    // Another output dtype: what the saved tensor becomes is checked again, so it is read again.
    await page.select('[data-testid="out-dtype"]', 'f16');
    for (let i = 0; i < 100; i++) {
      const n = await worker.evaluate(() => (self as unknown as { slices: unknown[] }).slices.length);
      if (n > 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await savedReads()).toBeGreaterThan(0);
  }, 120_000);
});
