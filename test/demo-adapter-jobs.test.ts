/**
 * The page's combine, resize and extract mode, driven as a person would in headless Chromium: the
 * mode switch, pickers, weights and options, the run, the download, and the chart of singular
 * values with the rank chosen. Each adapter downloaded is read plainly and checked against
 * float64 truth computed here: cat reproduces the weighted sum, resize, svd and extract come
 * within 1e-3 of the Eckart–Young optimum on updates built from known singular values. Also: the
 * whole flow by keyboard, failures listed and announced, cancel, axe-core in both colour schemes,
 * and a 390 px phone. And on the CPU: the job's algebra on Web Workers where the page is
 * cross-origin isolated, on one thread (the result saying why) where it is not, the same bytes.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { kohyaFile, peftFiles, type FixtureModule } from './helpers/adapter-fixtures.js';
import { serveDemo, type DemoPage } from './helpers/browser.js';
import { count, openChooser, seriousViolations, tabTo, text, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { kohyaUpdates, peftUpdates, relativeError } from './helpers/lora-truth.js';
import { readStoredZip } from './helpers/stored-zip.js';
import { dense, frob2, gaussian, minus, optimalError, product, withSpectrum, type Dense } from './helpers/svd-reference.js';
import { PAGE_RETRY } from './helpers/browser.js';

const session = useDemoSession();
const { dirs } = session;
let demo: DemoPage;

const Q = 'model.layers.0.self_attn.q_proj';
const V = 'model.layers.0.self_attn.v_proj';
const gaussianDense = (rows: number, cols: number, rand: () => number, scale = 1): Dense => dense(rows, cols, () => gaussian(rand) * scale);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const factsRead = (page: Page, n: number) => page.waitForFunction((want: number) => {
  const facts = [...document.querySelectorAll('[data-testid="job-adapter-facts"]')].map((e) => e.textContent ?? '');
  return facts.length === want && facts.every((f) => f !== '' && !f.startsWith('reading'));
}, { timeout: 30_000 }, n);

const runEnabled = (page: Page) => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });

function weightedSum(terms: { b: Dense; a: Dense; scale: number }[]): Dense {
  const out = dense(terms[0].b.rows, terms[0].a.cols, () => 0);
  for (const t of terms) {
    const p = product(t.b, t.a);
    for (let i = 0; i < out.data.length; i++) out.data[i] += t.scale * p.data[i];
  }
  return out;
}

/** Two Llama-style PEFT adapters: `one/` (r = 3, α = 6) on q_proj and v_proj, `two/` (r = 2, α = 1) on q_proj. */
function twoPeftAdapters(seed: number) {
  const rand = seededRandom(seed);
  const one = { q: { b: gaussianDense(32, 3, rand, 0.3), a: gaussianDense(3, 32, rand, 0.3) }, v: { b: gaussianDense(16, 3, rand, 0.3), a: gaussianDense(3, 32, rand, 0.3) } };
  const two = { q: { b: gaussianDense(32, 2, rand, 0.3), a: gaussianDense(2, 32, rand, 0.3) } };
  const files: Record<string, Uint8Array | string> = {};
  for (const [path, content] of Object.entries(peftFiles([{ name: Q, ...one.q }, { name: V, ...one.v }], { r: 3, lora_alpha: 6 }))) files[`one/${path}`] = content;
  for (const [path, content] of Object.entries(peftFiles([{ name: Q, ...two.q }], { r: 2, lora_alpha: 1 }))) files[`two/${path}`] = content;
  const dir = dirs.make(files);
  const adapterPaths = (name: string) => [join(dir, name, 'adapter_config.json'), join(dir, name, 'adapter_model.safetensors')];
  return { one, two, dir, adapterPaths };
}

/** B·A with exactly the singular values `s`: B = U·diag(s) (out × r), A with orthonormal rows. */
function moduleWithSpectrum(name: string, out: number, inF: number, s: number[], alpha: number, rand: () => number): FixtureModule {
  return { name, b: withSpectrum(out, s.length, s, rand), a: withSpectrum(s.length, inF, s.map(() => 1), rand), alpha };
}

const TO_Q = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q';
const TO_K = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k';
const SPECTRUM_Q = [4, 2, 1, 0.5, 0.25, 0.1];
const SPECTRUM_K = [1, 0.9, 0.1, 0.01];

/** A kohya file of two SDXL UNet modules whose unscaled updates have the singular values above. */
function kohyaWithSpectra(seed: number) {
  const rand = seededRandom(seed);
  const modules = [moduleWithSpectrum(TO_Q, 40, 32, SPECTRUM_Q, 3, rand), moduleWithSpectrum(TO_K, 40, 32, SPECTRUM_K, 4, rand)];
  const dir = dirs.make({ 'style.safetensors': kohyaFile(modules) });
  return { modules, path: join(dir, 'style.safetensors') };
}

/**
 * Each module of {@link kohyaWithSpectra}, resized to `rank`, within 1e-3 of the Eckart–Young
 * optimum: the norm of the singular values dropped, times the module's α/r.
 */
function expectNearOptimum(updates: ReturnType<typeof kohyaUpdates>, modules: FixtureModule[], rank: number): void {
  for (const [m, s] of [[modules[0], SPECTRUM_Q], [modules[1], SPECTRUM_K]] as const) {
    const scale = m.alpha! / s.length;
    const truth = product({ ...m.b, data: m.b.data.map((x) => x * scale) }, m.a);
    const optimum = scale * Math.sqrt(s.slice(rank).reduce((t, x) => t + x * x, 0));
    const err = Math.sqrt(frob2(minus(updates.get(m.name)!, truth)));
    expect(err, m.name).toBeLessThanOrEqual(optimum * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(truth)));
  }
}

async function resizeToRank3(page: Page, path: string): Promise<void> {
  await upload(page, 'job-adapter-input', path);
  await factsRead(page, 1);
  await typeInto(page, '#job-resize-value', '3');
  await runEnabled(page);
  await page.click('[data-testid="job-run"]');
}

describe('the adapter jobs on the page', PAGE_RETRY, () => {
  it('combine, cat: the mode switch is announced, and the PEFT zip reproduces the weighted sum', async () => {
    const { one, two, adapterPaths } = twoPeftAdapters(31);
    demo = await session.open();
    const { page } = demo;
    await page.click('[data-testid="mode-combine"]');
    await page.waitForFunction(() => /Combine mode/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''));
    expect(await page.$eval('#merge-section', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await page.$eval('#job-section', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await text(page, '#job-heading')).toBe('Combine adapters');

    await upload(page, 'job-adapter-input', ...adapterPaths('one'));
    await upload(page, 'job-adapter-input', ...adapterPaths('two'));
    await factsRead(page, 2);
    const facts = await page.$$eval('[data-testid="job-adapter-facts"]', (els) => els.map((e) => e.textContent));
    expect(facts[0]).toContain('r = 3');
    expect(facts[1]).toContain('α/r = 0.5');
    // Both picks are a PEFT adapter's loose files, named as such: the second is told apart.
    expect(await page.$$eval('#job-adapter-list .adapter-name', (els) => els.map((e) => e.textContent))).toEqual(['PEFT adapter', 'PEFT adapter #2']);
    await page.evaluate(() => {
      const box = document.querySelectorAll<HTMLInputElement>('[data-testid="job-adapter-weight-number"]')[1];
      box.value = '-0.5';
      box.dispatchEvent(new Event('input', { bubbles: true }));
      const first = document.querySelectorAll<HTMLInputElement>('[data-testid="job-adapter-weight-number"]')[0];
      first.value = '0.7';
      first.dispatchEvent(new Event('input', { bubbles: true }));
    });
    // cat has no rank: its options are not offered.
    expect(await page.$eval('#job-rank', (e) => (e.closest('.field') as HTMLElement).hidden)).toBe(true);
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    const zip = readStoredZip(await downloadBytes(page, 'job-download-link'));
    expect(await page.$eval('[data-testid="job-download-link"]', (a) => (a as HTMLAnchorElement).download)).toBe('PEFT adapter-combined.zip');
    expect([...zip.keys()].sort()).toEqual(['PEFT adapter-combined/adapter_config.json', 'PEFT adapter-combined/adapter_model.safetensors']);
    const updates = peftUpdates(decode(zip.get('PEFT adapter-combined/adapter_config.json')!), zip.get('PEFT adapter-combined/adapter_model.safetensors')!);
    expect(relativeError(updates.get(Q)!, weightedSum([{ ...one.q, scale: 0.7 * 2 }, { ...two.q, scale: -0.5 * 0.5 }]))).toBeLessThan(1e-6);
    expect(relativeError(updates.get(V)!, weightedSum([{ ...one.v, scale: 0.7 * 2 }]))).toBeLessThan(1e-6);
    // An exact concatenation: ranks 5 and 3, no singular values to chart.
    expect(await text(page, '[data-testid="spectrum-note"]')).toMatch(/exact concatenation/);
    const rows = await page.$$eval('[data-testid="job-modules"] tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(rows).toEqual([[Q, '5', '100.0000 %'], [V, '3', '100.0000 %']]);
    // A weight moved afterwards marks the result out of date.
    await page.evaluate(() => {
      const box = document.querySelectorAll<HTMLInputElement>('[data-testid="job-adapter-weight-number"]')[1];
      box.value = '1';
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
    expect(await count(page, '[data-testid="job-download-link"]')).toBe(0);
    expect(await count(page, '[data-testid="job-download-link-stale"]')).toBe(1);
  });

  it('resize to rank 3: a kohya file within 1e-3 of the optimum, and the chart marks the rank chosen', async () => {
    const { modules, path } = kohyaWithSpectra(32);
    demo = await session.open('?mode=resize');
    const { page } = demo;
    await resizeToRank3(page, path);
    // kohya module names can only be written as a kohya file.
    expect(await page.$eval('#job-format', (s) => [(s as HTMLSelectElement).value, (s.querySelector('option[value="peft"]') as HTMLOptionElement).disabled])).toEqual(['kohya', true]);
    const file = await downloadBytes(page, 'job-download-link');
    expect(await page.$eval('[data-testid="job-download-link"]', (a) => (a as HTMLAnchorElement).download)).toBe('style-resized.safetensors');
    const updates = kohyaUpdates(file);
    expectNearOptimum(updates, modules, 3);
    // The chart of to_q: its six singular values, rank 3 marked; the table says the same.
    const canvas = '[data-testid="spectrum-chart"]';
    const pick = (name: string) => page.$eval('[data-testid="spectrum-module"]', (select, want) => {
      const s = select as HTMLSelectElement;
      s.value = [...s.options].find((o) => o.text.startsWith(`${want} `))!.value;
      s.dispatchEvent(new Event('change', { bubbles: true }));
    }, name);
    await pick(TO_Q);
    expect(await page.$eval(canvas, (c) => (c as HTMLElement).dataset.rank)).toBe('3');
    expect(await page.$eval(canvas, (c) => c.getAttribute('aria-label'))).toMatch(new RegExp(`^Singular values of ${TO_Q} on a log scale: 6 values from 4\\.00 down to 0\\.100; rank 3 chosen, keeping 9[89]\\.\\d{4} % of the update\\.$`));
    const inked = await page.$eval(canvas, (c) => {
      const data = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, (c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      return n;
    });
    expect(inked).toBeGreaterThan(1000);
    const table = await page.$$eval('[data-testid="spectrum-table"] tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? '')));
    expect(table.map((r) => Number(r[1]))).toEqual(SPECTRUM_Q.map((s) => expect.closeTo(s, 4)));
    expect(table.map((r) => r[3])).toEqual(['kept', 'kept', 'kept · the rank chosen', 'dropped', 'dropped', 'dropped']);
    const total = SPECTRUM_Q.reduce((t, x) => t + x * x, 0);
    expect(Number.parseFloat(table[2][2])).toBeCloseTo(100 * Math.sqrt((16 + 4 + 1) / total), 3);
    // The other module, picked from the menu.
    await pick(TO_K);
    expect(await page.$eval(canvas, (c) => c.getAttribute('aria-label'))).toContain(`${TO_K} on a log scale: 4 values`);
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-resize.png', fullPage: true });
  });

  it('resize by sv-cumulative with a largest rank: the box shows for the dynamic rules only, and every module is capped at it, within 1e-3 of the rank-2 optimum', async () => {
    const { modules, path } = kohyaWithSpectra(34);
    demo = await session.open('?mode=resize');
    const { page } = demo;
    const maxHidden = () => page.$eval('#job-resize-max', (e) => (e.closest('.field') as HTMLElement).hidden);
    expect(await maxHidden()).toBe(true);
    await upload(page, 'job-adapter-input', path);
    await factsRead(page, 1);
    await page.select('#job-resize-rule', 'sv_cumulative');
    expect(await maxHidden()).toBe(false);
    // 99 % of Σσ keeps more than two values of either spectrum; the largest rank caps both at 2.
    await typeInto(page, '#job-resize-value', '0.99');
    await typeInto(page, '#job-resize-max', '2');
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    const updates = kohyaUpdates(await downloadBytes(page, 'job-download-link'));
    expectNearOptimum(updates, modules, 2);
    const ranks = await page.$$eval('[data-testid="job-modules"] tbody tr', (trs) => trs.map((tr) => [tr.children[0].textContent, tr.children[1].textContent]));
    expect(Object.fromEntries(ranks)).toEqual({ [TO_Q]: '2', [TO_K]: '2' });
  });

  it('extract on WebGPU: within 1e-3 of the optimum, a changed norm saved whole', async () => {
    const rand = seededRandom(33);
    const base: Record<string, Dense> = {
      [`${Q}.weight`]: gaussianDense(64, 64, rand, 0.1),
      [`${V}.weight`]: gaussianDense(32, 64, rand, 0.1),
      'model.layers.0.input_layernorm.weight': dense(1, 64, () => 1),
    };
    const spectrum = [3, 2, 1, 0.5, 0.2, 0.1, 0.05];
    const diffs = { [`${Q}.weight`]: withSpectrum(64, 64, spectrum, rand), [`${V}.weight`]: withSpectrum(32, 64, [1, 0.5, 0.25, 0.1, 0.05], rand) };
    const tuned: Record<string, Dense> = { ...base, 'model.layers.0.input_layernorm.weight': dense(1, 64, (_, j) => 1 + j / 100) };
    for (const [name, d] of Object.entries(diffs)) tuned[name] = dense(d.rows, d.cols, (i, j) => base[name].data[i * d.cols + j] + d.data[i * d.cols + j]);
    const file = (tensors: Record<string, Dense>) => buildSafetensors(Object.entries(tensors).map(([name, d]) => ({
      name, dtype: 'F32' as const, shape: name.includes('layernorm') ? [d.cols] : [d.rows, d.cols], data: d.data,
    })));
    const dir = dirs.make({ 'base/model.safetensors': file(base), 'base/config.json': '{"_name_or_path": "org/tiny-llama"}', 'tuned/model.safetensors': file(tuned) });

    demo = await session.open('?backend=webgpu&mode=extract');
    const { page } = demo;
    await upload(page, 'job-base-input', join(dir, 'base/model.safetensors'), join(dir, 'base/config.json'));
    await upload(page, 'job-tuned-input', join(dir, 'tuned/model.safetensors'));
    expect(await text(page, '[data-testid="job-tuned-summary"] div')).toMatch(/^model\.safetensors · 1 file, [\d.]+ KB$/);
    await typeInto(page, '#job-extract-value', '4');
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    const zip = readStoredZip(await downloadBytes(page, 'job-download-link'));
    expect(await text(page, '#job-results-note')).toMatch(/^Extracted on WebGPU/);
    const config = decode(zip.get('model-extracted/adapter_config.json')!);
    expect(JSON.parse(config)).toMatchObject({ r: 4, lora_alpha: 4, base_model_name_or_path: 'org/tiny-llama', modules_to_save: ['model.layers.0.input_layernorm'] });
    const updates = peftUpdates(config, zip.get('model-extracted/adapter_model.safetensors')!);
    for (const [name, d] of Object.entries(diffs)) {
      const err = Math.sqrt(frob2(minus(updates.get(name.replace(/\.weight$/, ''))!, d)));
      expect(err, name).toBeLessThanOrEqual(optimalError(d, 4) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(d)));
    }
    expect(await page.$eval('[data-testid="spectrum-chart"]', (c) => c.getAttribute('aria-label'))).toContain('rank 4 chosen');
  });

  it('works by keyboard alone: mode, pickers, weight, method, rank, format, run, and the chart’s numbers', async () => {
    const { one, two, adapterPaths } = twoPeftAdapters(34);
    demo = await session.open();
    const { page } = demo;
    await page.focus('body');
    await tabTo(page, '[data-testid="mode-merge"]');
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => /Combine mode/.test(document.querySelector('[data-testid="status"]')!.textContent ?? ''));
    await tabTo(page, '#job-adapter-files-button');
    await (await openChooser(page, 'Enter')).accept(adapterPaths('one'));
    await factsRead(page, 1);
    await tabTo(page, '#job-adapter-files-button');
    await (await openChooser(page, 'Space')).accept(adapterPaths('two'));
    await factsRead(page, 2);
    await tabTo(page, '#job-adapter-list li:nth-child(2) [data-testid="job-adapter-weight-number"]');
    await page.keyboard.down('Control');
    await page.keyboard.press('a');
    await page.keyboard.up('Control');
    await page.keyboard.type('-0.5');
    expect(await page.$eval('#job-adapter-list li:nth-child(2) [data-testid="job-adapter-weight"]', (e) => (e as HTMLInputElement).value)).toBe('-0.5');
    await tabTo(page, '#job-method');
    await page.keyboard.press('ArrowDown'); // cat → svd
    expect(await page.$eval('#job-method', (e) => (e as HTMLSelectElement).value)).toBe('svd');
    await tabTo(page, '#job-rank');
    await page.keyboard.type('2');
    await tabTo(page, '#job-format');
    await page.keyboard.press('ArrowDown'); // PEFT → kohya
    expect(await page.$eval('#job-format', (e) => (e as HTMLSelectElement).value)).toBe('kohya');
    await tabTo(page, '[data-testid="job-run"]');
    await runEnabled(page);
    await page.keyboard.press('Enter');
    const file = await downloadBytes(page, 'job-download-link');
    await page.waitForFunction(() => document.activeElement?.id === 'job-results');
    const updates = kohyaUpdates(file);
    const qKey = [...updates.keys()].find((k) => k.endsWith('q_proj'))!;
    expect(qKey).toBe('lora_te_model_layers_0_self_attn_q_proj');
    const target = weightedSum([{ ...one.q, scale: 2 }, { ...two.q, scale: -0.5 * 0.5 }]);
    const err = Math.sqrt(frob2(minus(updates.get(qKey)!, target)));
    expect(err).toBeLessThanOrEqual(optimalError(target, 2) * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(target)));
    // The chart's numbers are reachable: the module menu, then the table behind its disclosure.
    await tabTo(page, '[data-testid="spectrum-module"]');
    await tabTo(page, '#spectrum-details summary');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe('Singular values of the module');
    expect(await count(page, '[data-testid="spectrum-table"] tbody tr')).toBe(5);
    const unreachable = await page.$$eval('#job-section input:not([type=file]), #job-section select, #job-section button, #mode-switch input', (els) =>
      els.filter((e) => (e as HTMLElement).tabIndex < 0).map((e) => e.id || e.outerHTML.slice(0, 60)));
    expect(unreachable).toEqual([]);
  });

  it('extract refuses two models of different sizes in one line, said aloud, with nothing to download', async () => {
    const rand = seededRandom(36);
    const model = (hidden: number) => buildSafetensors([
      { name: `${Q}.weight`, dtype: 'F32' as const, shape: [hidden, hidden], data: gaussianDense(hidden, hidden, rand).data },
    ]);
    const dir = dirs.make({ 'small.safetensors': model(16), 'large.safetensors': model(32) });
    demo = await session.open('?backend=cpu&mode=extract');
    const { page } = demo;
    await upload(page, 'job-base-input', join(dir, 'small.safetensors'));
    await upload(page, 'job-tuned-input', join(dir, 'large.safetensors'));
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="job-errors"]')!.hidden, { timeout: 30_000 });
    const refusal = `large.safetensors: tensor "${Q}.weight" is (32, 32) here but (16, 16) in small.safetensors; extract takes a fine-tune of the same model and size (only an embedding's vocabulary may grow): are they the same architecture and size?`;
    expect(await page.$$eval('#job-error-list li', (els) => els.map((e) => e.textContent ?? ''))).toEqual([refusal]);
    await page.waitForFunction((want: string) => document.querySelector('[data-testid="alert"]')!.textContent === want, { timeout: 10_000 }, `The extraction failed: ${refusal}`);
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);
  });

  it('lists and announces every problem of a failed job; a cancelled one leaves nothing', async () => {
    const rand = seededRandom(35);
    const files: Record<string, Uint8Array | string> = {};
    const put = (name: string, inF: number) => {
      const modules = [Q, V].map((m) => ({ name: m, b: gaussianDense(16, 2, rand), a: gaussianDense(2, inF, rand) }));
      for (const [path, content] of Object.entries(peftFiles(modules))) files[`${name}/${path}`] = content;
    };
    put('narrow', 16);
    put('wide', 24);
    const dir = dirs.make(files);
    demo = await session.open('?mode=combine');
    const { page } = demo;
    await upload(page, 'job-adapter-input', join(dir, 'narrow/adapter_config.json'), join(dir, 'narrow/adapter_model.safetensors'));
    await upload(page, 'job-adapter-input', join(dir, 'wide/adapter_config.json'), join(dir, 'wide/adapter_model.safetensors'));
    await factsRead(page, 2);
    await runEnabled(page);
    await page.click('[data-testid="job-run"]');
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="job-errors"]')!.hidden, { timeout: 30_000 });
    const problems = await page.$$eval('#job-error-list li', (els) => els.map((e) => e.textContent ?? ''));
    expect(problems).toEqual([
      `module "${Q}": PEFT adapter #2 has a linear update of 16×24 but PEFT adapter has a linear update of 16×16`,
      `module "${V}": PEFT adapter #2 has a linear update of 16×24 but PEFT adapter has a linear update of 16×16`,
    ]);
    expect(await text(page, '#job-errors-heading')).toBe('The combination failed: 2 problems');
    await page.waitForFunction(() => /The combination failed: 2 problems\. First: module/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''));
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);

    // Without the wide one it would work: run, and cancel at once.
    await page.click('#job-adapter-list li:nth-child(2) .remove');
    await runEnabled(page);
    expect(await page.$eval('[data-testid="job-errors"]', (e) => (e as HTMLElement).hidden)).toBe(true);
    await page.evaluate(() => {
      document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.click();
      document.querySelector<HTMLButtonElement>('[data-testid="job-cancel"]')!.click();
    });
    await page.waitForFunction(() => /Cancelled/.test(document.querySelector('[data-testid="job-progress-text"]')!.textContent ?? ''), { timeout: 30_000 });
    await runEnabled(page);
    expect(await count(page, '[data-testid^="job-download-link"]')).toBe(0);
    await page.waitForFunction(async () => {
      const root = await navigator.storage.getDirectory();
      const jobs = await root.getDirectoryHandle('loramerge-merges', { create: true });
      for await (const _ of (jobs as unknown as { keys(): AsyncIterable<string> }).keys()) return false;
      return true;
    }, { timeout: 30_000 });
  });

  for (const scheme of ['light', 'dark'] as const) {
    it(`has no serious or critical accessibility violations with a result and its chart (axe-core, ${scheme})`, async () => {
      const { path } = kohyaWithSpectra(36);
      demo = await session.open('?mode=resize');
      const { page } = demo;
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await resizeToRank3(page, path);
      await downloadBytes(page, 'job-download-link');
      await page.$$eval('#job-section details', (ds) => ds.forEach((d) => { (d as HTMLDetailsElement).open = true; }));
      expect(await seriousViolations(page)).toEqual([]);
      mkdirSync('test-output', { recursive: true });
      await page.screenshot({ path: `test-output/demo-jobs-${scheme}.png`, fullPage: true });
    });
  }

  it('fits a 390 px phone with long kohya module names, the run button on screen', async () => {
    const { path } = kohyaWithSpectra(37);
    demo = await session.open('?mode=resize');
    const { page } = demo;
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    await resizeToRank3(page, path);
    await downloadBytes(page, 'job-download-link');
    await page.$$eval('#job-section details', (ds) => ds.forEach((d) => { (d as HTMLDetailsElement).open = true; }));
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const box = await page.$eval('[data-testid="job-run"]', (b) => b.getBoundingClientRect().toJSON());
    expect(box.left).toBeGreaterThanOrEqual(0);
    expect(box.right).toBeLessThanOrEqual(390);
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-jobs-390px.png', fullPage: true });
  });
});

/** An SDXL UNet to_q (1280 × 1280) whose rank-32 update has singular values 2·0.8^i, α = r: products large enough for the threads. */
const TO_Q_1280 = 'lora_unet_down_blocks_2_attentions_0_transformer_blocks_0_attn1_to_q';
const SPECTRUM_WIDE = Array.from({ length: 32 }, (_, i) => 2 * 0.8 ** i);

describe('the adapter jobs on the page, on the CPU', PAGE_RETRY, () => {
  it('resize runs on Web Workers where the page is cross-origin isolated, on one thread saying why where not: the same bytes, within 1e-3 of the optimum', async () => {
    const module = moduleWithSpectrum(TO_Q_1280, 1280, 1280, SPECTRUM_WIDE, 32, seededRandom(43));
    const path = join(dirs.make({ 'wide.safetensors': kohyaFile([module]) }), 'wide.safetensors');
    const resized = async (page: Page): Promise<{ note: string; file: Uint8Array }> => {
      await resizeToRank3(page, path);
      await page.waitForFunction(() => /^Resized on /.test(document.querySelector('#job-results-note')?.textContent ?? ''), { timeout: 90_000 });
      return { note: await text(page, '#job-results-note'), file: await downloadBytes(page, 'job-download-link') };
    };
    demo = await session.open('?backend=cpu&mode=resize');
    expect(await demo.page.evaluate(() => crossOriginIsolated)).toBe(true);
    const threaded = await resized(demo.page);
    const threads = Number(/^Resized on CPU \(WebAssembly SIMD, (\d+) threads\) in /.exec(threaded.note)?.[1]);
    expect(threads, threaded.note).toBeGreaterThanOrEqual(2);

    const plain = await serveDemo({ crossOriginIsolated: false });
    try {
      demo = await session.open('?backend=cpu&mode=resize', plain);
      expect(await demo.page.evaluate(() => crossOriginIsolated)).toBe(false);
      const alone = await resized(demo.page);
      expect(alone.note).toMatch(/^Resized on CPU \(WebAssembly SIMD, 1 thread; no worker threads: the page is not cross-origin isolated, so workers cannot share memory\) in /);
      // Each element of a product is the same f32 sum however the rows are cut among threads.
      expect(Buffer.from(alone.file).equals(Buffer.from(threaded.file))).toBe(true);
    } finally {
      await plain.close();
    }
    const truth = product(module.b, module.a);
    const optimum = Math.sqrt(SPECTRUM_WIDE.slice(3).reduce((t, x) => t + x * x, 0));
    const err = Math.sqrt(frob2(minus(kohyaUpdates(threaded.file).get(TO_Q_1280)!, truth)));
    expect(err).toBeLessThanOrEqual(optimum * (1 + 1e-3) + 1e-6 * Math.sqrt(frob2(truth)));
  });
});
