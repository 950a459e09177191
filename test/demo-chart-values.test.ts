/**
 * The charts' values without a mouse, in headless Chromium, as a keyboard or screen-reader user
 * meets them: Tab reaches the plan's chart and the spectrum of singular values; the arrow keys
 * (Home, End) step through them, and a polite line under each says what a hover's tooltip says,
 * checked against float64 truth computed here from the files picked (the plan: w·‖ΔW‖/‖W‖ per
 * block and module kind; the spectrum: σᵢ and the share of ‖ΔW‖_F kept by rank i). The spectrum
 * is drawn again in the dark theme's colours when the system switches: its words are drawn in the
 * theme's text colour, at least 4.5:1 on the card. axe-core finds nothing serious meanwhile. An
 * extract that makes no low-rank module (only a norm changed, saved whole) says there are no
 * singular values to show, not that it was "an exact concatenation".
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyInput, Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { planReady, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import { readStoredZip } from './helpers/stored-zip.js';
import { withSpectrum } from './helpers/svd-reference.js';

mkdirSync('test-output', { recursive: true });

const session = useDemoSession();

/** w·‖(α/r)·B·A‖_F / ‖W‖_F in percent, in float64 from the files' own values. */
function updatePercent(base: Map<string, { values: Float64Array; shape: number[] }>, adapter: Map<string, { values: Float64Array; shape: number[] }>, module: string, scale: number): number {
  const w = base.get(`${module}.weight`)!;
  const b = adapter.get(`base_model.model.${module}.lora_B.weight`)!;
  const a = adapter.get(`base_model.model.${module}.lora_A.weight`)!;
  const [out, rank] = b.shape;
  const inF = a.shape[1];
  let delta2 = 0;
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < inF; j++) {
      let x = 0;
      for (let k = 0; k < rank; k++) x += b.values[i * rank + k] * a.values[k * inF + j];
      delta2 += (scale * x) ** 2;
    }
  }
  const w2 = w.values.reduce((s, x) => s + x * x, 0);
  return 100 * Math.sqrt(delta2 / w2);
}

/** Presses `key` on the focused chart and returns the line under it once it says something new. */
async function step(page: Page, key: KeyInput, readout: string): Promise<string> {
  const before = await text(page, readout);
  await page.keyboard.press(key);
  await page.waitForFunction((s: string, b: string) => (document.querySelector(s)!.textContent ?? '') !== b, { timeout: 10_000 }, readout, before);
  return text(page, readout);
}

const focused = (page: Page) => page.evaluate(() => document.activeElement?.id);

/** WCAG's contrast ratio of two `rgb(…)` or `#rrggbb` colours. */
function contrast(one: string, two: string): number {
  const channels = (c: string) => (c.startsWith('#') ? [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)) : c.match(/\d+(\.\d+)?/g)!.slice(0, 3).map(Number));
  const luminance = (c: string) => {
    const [r, g, b] = channels(c).map((v) => v / 255).map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [luminance(one), luminance(two)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

describe('the charts\' values by keyboard', PAGE_RETRY, () => {
  it('the plan\'s chart: Tab reaches it, the arrows step through its blocks, the line under it says each bar\'s value', async () => {
    const fixture = llamaWithPeft(81);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    const base = readSafetensors(fixture.base);
    const adapter = readSafetensors(fixture.adapter);
    const scale = fixture.alpha / fixture.rank;

    await page.focus('body');
    await tabTo(page, '#magnitude-chart');
    expect(await page.$eval('#chart-readout', (e) => e.getAttribute('aria-live'))).toBe('polite');
    // The ring shows inside the box that clips the canvas.
    expect(await page.$eval('#magnitude-chart', (e) => [getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineOffset])).toEqual(['solid', '-3px']);
    const bars = (line: string) => {
      const m = line.match(/^(layer \d): self_attn\.q_proj: \+([\d.]+) %; mlp\.down_proj: \+([\d.]+) %$/);
      expect(m, line).not.toBeNull();
      return { block: m![1], q: Number(m![2]), down: Number(m![3]) };
    };
    const expectBlock = (line: string, layer: number) => {
      const seen = bars(line);
      expect(seen.block).toBe(`layer ${layer}`);
      // Three significant digits, as the tooltip shows them.
      expect(seen.q).toBeCloseTo(updatePercent(base, adapter, `model.layers.${layer}.self_attn.q_proj`, scale), 2 - Math.floor(Math.log10(seen.q)));
      expect(seen.down).toBeCloseTo(updatePercent(base, adapter, `model.layers.${layer}.mlp.down_proj`, scale), 2 - Math.floor(Math.log10(seen.down)));
    };
    expectBlock(await step(page, 'ArrowRight', '#chart-readout'), 0);
    expectBlock(await step(page, 'ArrowRight', '#chart-readout'), 1);
    expectBlock(await step(page, 'Home', '#chart-readout'), 0);
    expectBlock(await step(page, 'End', '#chart-readout'), 1);
    expect(await focused(page)).toBe('magnitude-chart');
    expect(await seriousViolations(page)).toEqual([]);
    await (await page.$('#plan-section'))!.screenshot({ path: 'test-output/chart-keys-plan.png' }).catch(() => undefined);
  });

  it('the spectrum: Tab reaches it, the arrows step through σᵢ with the share kept; a theme switch redraws its words in the new text colour', async () => {
    const S = [4, 2, 1, 0.5, 0.25, 0.1];
    const rand = seededRandom(82);
    const name = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q';
    // B·A with exactly the singular values S (B = U·diag(S), A with orthonormal rows).
    const module = { name, b: withSpectrum(40, S.length, S, rand), a: withSpectrum(S.length, 32, S.map(() => 1), rand), alpha: 3 };
    const dir = session.dirs.make({ 'style.safetensors': kohyaFile([module]) });
    const { page } = await session.open('?backend=cpu&mode=resize');
    // The words each chart draws, and the colour they are drawn in.
    await page.evaluateOnNewDocument(() => {
      const drawn: Record<string, string> = {};
      (window as unknown as { drawn: typeof drawn }).drawn = drawn;
      const fillText = CanvasRenderingContext2D.prototype.fillText;
      CanvasRenderingContext2D.prototype.fillText = function (this: CanvasRenderingContext2D, words: string, ...rest: [number, number, number?]) {
        drawn[words] = String(this.fillStyle);
        return fillText.call(this, words, ...rest);
      };
    });
    await page.reload({ waitUntil: 'load' });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    await upload(page, 'job-adapter-input', join(dir, 'style.safetensors'));
    await page.focus('#job-resize-value');
    await page.keyboard.down('Control');
    await page.keyboard.press('a');
    await page.keyboard.up('Control');
    await page.keyboard.type('3');
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');

    const total = S.reduce((s, x) => s + x * x, 0);
    const share = (i: number) => 100 * Math.sqrt(S.slice(0, i).reduce((s, x) => s + x * x, 0) / total);
    const expectPoint = (line: string, i: number) => {
      const m = line.match(/^σ(\d+) = ([\d.]+), rank \1 keeps ([\d.]+) % of ‖ΔW‖_F, (.*)$/);
      expect(m, line).not.toBeNull();
      expect(Number(m![1])).toBe(i);
      expect(Number(m![2]) / S[i - 1]).toBeCloseTo(1, 3);
      expect(Number(m![3])).toBeCloseTo(share(i), 2);
      if (i === 3) expect(m![4]).toBe('(the rank chosen)');
      else expect(m![4]).toMatch(new RegExp(`^chosen: rank 3, ${share(3).toFixed(2).replace('.', '\\.')}\\d\\d %$`));
    };
    await page.focus('#job-results');
    await tabTo(page, '#spectrum-chart');
    expectPoint(await step(page, 'ArrowRight', '#spectrum-readout'), 1);
    expectPoint(await step(page, 'ArrowRight', '#spectrum-readout'), 2);
    expectPoint(await step(page, 'ArrowRight', '#spectrum-readout'), 3);
    expectPoint(await step(page, 'End', '#spectrum-readout'), 6);
    expectPoint(await step(page, 'ArrowLeft', '#spectrum-readout'), 5);
    expect(await focused(page)).toBe('spectrum-chart');
    expect(await seriousViolations(page)).toEqual([]);

    // The system turns dark: the chart's words are drawn again, in the dark theme's text colour.
    const words = ['i (largest first)', 'σᵢ (log scale)'];
    const colours = () => page.evaluate((w: string[]) => {
      const probe = document.createElement('span');
      probe.style.color = 'var(--text)';
      document.body.append(probe);
      const theme = getComputedStyle(probe).color;
      probe.remove();
      const card = getComputedStyle(document.getElementById('job-section')!).backgroundColor;
      const drawn = (window as unknown as { drawn: Record<string, string> }).drawn;
      return { theme, card, drawn: w.map((x) => drawn[x]) };
    }, words);
    const light = await colours();
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
    await page.waitForFunction((w: string, before: string) => (window as unknown as { drawn: Record<string, string> }).drawn[w] !== before, { timeout: 10_000 }, words[0], light.drawn[0]);
    const dark = await colours();
    expect(dark.theme).not.toBe(light.theme);
    for (const seen of [light, dark]) {
      for (const colour of seen.drawn) {
        expect(contrast(colour, seen.card), `${colour} on ${seen.card}`).toBeGreaterThanOrEqual(4.5);
        expect(contrast(colour, seen.theme), `${colour} is the theme's ${seen.theme}`).toBeCloseTo(1, 5);
      }
    }
    await (await page.$('#spectrum-figure'))!.screenshot({ path: 'test-output/chart-keys-spectrum-dark.png' }).catch(() => undefined);
  });
  it('an extract that makes no low-rank module says there are no singular values, and its file holds the norm that changed', async () => {
    const rand = seededRandom(86);
    const norm = 'model.layers.0.input_layernorm.weight';
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const qValues = Array.from({ length: 16 * 16 }, () => rand() - 0.5);
    const tunedNorm = Array.from({ length: 16 }, (_, i) => 1 + i / 64);
    const model = (normValues: number[]) => buildSafetensors([
      { name: q, dtype: 'F32', shape: [16, 16], data: qValues },
      { name: norm, dtype: 'F32', shape: [16], data: normValues },
    ]);
    const dir = session.dirs.make({ 'base/model.safetensors': model(tunedNorm.map(() => 1)), 'tuned/model.safetensors': model(tunedNorm) });
    const { page } = await session.open('?backend=cpu&mode=extract');
    await upload(page, 'job-base-input', join(dir, 'base/model.safetensors'));
    await upload(page, 'job-tuned-input', join(dir, 'tuned/model.safetensors'));
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    const zip = readStoredZip(await downloadBytes(page, 'job-download-link'));
    const saved = readSafetensors(zip.get('model-extracted/adapter_model.safetensors')!);
    expect([...saved.keys()]).toEqual([`base_model.model.${norm}`]);
    expect(Array.from(saved.get(`base_model.model.${norm}`)!.values)).toEqual(tunedNorm.map((x) => Math.fround(x)));
    const note = await text(page, '[data-testid="spectrum-note"]');
    expect(note).toBe('No low-rank module was made, so there are no singular values to show: the files above hold what changed.');
    expect(note).not.toMatch(/concatenation/);
  });
});
