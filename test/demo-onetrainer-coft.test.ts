/**
 * A OneTrainer OFT file saved by a OneTrainer that had COFT (its `ot_revision` one of the commits
 * from 14 November 2025 to 10 May 2026) without its training config (`ot_config`): the page refuses
 * it as the command line does, in the page's words, which name the card's "OneTrainer COFT" (the
 * CLI's --onetrainer-coft), shown on that card only; chosen by keyboard, it makes the plan again and
 * the merge reads the file as chosen, checked against OneTrainer's forward written plainly in
 * float64: each Linear's skew blocks projected (‖Q_k‖ capped at coft_eps/√rows, its
 * `_project_batch`) with COFT on, left as they are with it off, then R = I + 2Q + 2Q² + 2Q³ + Q⁴
 * and W' = W·Rᵀ per block. A file that asks nothing has no such setting. axe-clean in both themes,
 * and 390 px wide.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { pageWording } from '../demo/page-wording.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { runCli } from './helpers/cli.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { mergeEnabled, planReady, refusal, seriousViolations, tabTo, text, typeInto, upload, useDemoSession } from './helpers/demo-session.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, roundForDType, seededRandom, type FixtureTensor } from './helpers/fixtures.js';

const session = useDemoSession();
const rand = seededRandom(20261208);

// An SD 1.5 UNet's attention layers (diffusers names), small: to_q is trained, to_k only copied.
const TO_Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const TO_K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k';
const OUT = 8;
const IN = 12;
const B = 4;
const ROWS = IN / B;
const PAIRS = (B * (B - 1)) / 2;
const base: FixtureTensor[] = [tensor(rand, `${TO_Q}.weight`, [OUT, IN], 'F16'), tensor(rand, `${TO_K}.weight`, [OUT, IN], 'F16')];
// OneTrainer's KOHYA names: one oft_R.weight of ROWS blocks, b(b−1)/2 values each, no scaled_oft (COFT's time had no Scaled OFT).
const OFT_KEY = `lora_unet_${TO_Q.replace(/\./g, '_')}.oft_R.weight`;
const oft = tensor(rand, OFT_KEY, [ROWS, PAIRS], 'BF16', 0.3);
/** OneTrainer's own header (_create_safetensors_header); 7c255ac4 is a commit of 27 November 2025, with COFT. */
const OT_HEADER = {
  'modelspec.sai_model_spec': '1.0.0',
  'modelspec.architecture': 'stable-diffusion-v1/lora',
  'modelspec.implementation': 'https://github.com/huggingface/diffusers',
  'modelspec.title': 'Stable Diffusion 1.5 LoRA',
  'modelspec.date': '2026-12-08',
  ot_branch: 'master',
  ot_revision: '7c255ac4',
};
const FILE = 'oft_sd15_OneTrainer.safetensors';
const BASE = 'v1-5-pruned.safetensors';

/** OneTrainer's rotation of a Linear's inputs at coft_eps `eps` (undefined: COFT off), W' = W·Rᵀ per block, in float64. */
function truth(eps: number | undefined): Map<string, Float64Array> {
  const w = Float64Array.from(base[0].data as ArrayLike<number>);
  const rows = Array.from({ length: ROWS }, (_, k) => Float64Array.from(oft.data as ArrayLike<number>).slice(k * PAIRS, (k + 1) * PAIRS));
  const out = new Float64Array(OUT * IN);
  for (let k = 0; k < ROWS; k++) {
    let row = rows[k];
    if (eps !== undefined) {
      // ‖Q‖_F of the skew block is √(2·Σ row²); capped at ε/√(number of blocks).
      const norm = Math.sqrt(2 * row.reduce((a, x) => a + x * x, 0));
      const limit = eps / Math.sqrt(ROWS);
      if (norm > limit) row = row.map((x) => (x * limit) / norm);
    }
    const q: number[][] = Array.from({ length: B }, () => new Array<number>(B).fill(0));
    let at = 0;
    for (let i = 0; i < B; i++) for (let j = i + 1; j < B; j++) { q[i][j] = row[at]; q[j][i] = -row[at]; at++; }
    const mul = (x: number[][], y: number[][]) => x.map((r) => y[0].map((_, j) => r.reduce((a, v, l) => a + v * y[l][j], 0)));
    const q2 = mul(q, q), q3 = mul(q2, q), q4 = mul(q3, q);
    const r = q.map((qr, i) => qr.map((_, j) => (i === j ? 1 : 0) + 2 * q[i][j] + 2 * q2[i][j] + 2 * q3[i][j] + q4[i][j]));
    for (let o = 0; o < OUT; o++) {
      for (let c = 0; c < B; c++) {
        let sum = 0;
        for (let j = 0; j < B; j++) sum += w[o * IN + k * B + j] * r[c][j];
        out[o * IN + k * B + c] = sum;
      }
    }
  }
  return new Map([[`${TO_Q}.weight`, out]]);
}

/** The merged file: to_q within one F16 step of the truth (most of it moved), to_k copied as it was. */
function expectMerged(bytes: Uint8Array, want: Map<string, Float64Array>, what: string): void {
  const merged = readSafetensors(bytes);
  expect([...merged.keys()].sort(), what).toEqual(base.map((t) => t.name).sort());
  expect([...merged.get(`${TO_K}.weight`)!.values], what).toEqual(Array.from(base[1].data as ArrayLike<number>));
  const got = merged.get(`${TO_Q}.weight`)!;
  const stored = base[0].data as ArrayLike<number>;
  const goal = want.get(`${TO_Q}.weight`)!;
  let moved = 0;
  for (let i = 0; i < goal.length; i++) {
    if (got.values[i] !== stored[i]) moved++;
    if (got.values[i] === roundForDType(goal[i], 'F16')) continue;
    // One F16 step at the truth's magnitude.
    expect(Math.abs(got.values[i] - goal[i]), `${what}: [${i}] got ${got.values[i]}, truth ${goal[i]}`).toBeLessThanOrEqual(2 ** (Math.max(Math.floor(Math.log2(Math.abs(goal[i]))), -14) - 10));
  }
  expect(moved, what).toBeGreaterThan(goal.length / 2);
}

const coftBoxShown = (page: Page, card = 0) => page.$$eval('[data-testid="adapter"]', (cards, i) => {
  const box = cards[i as number]?.querySelector<HTMLElement>('[data-testid="adapter-coft-box"]');
  return !!box && !box.hidden && box.offsetParent !== null;
}, card);
const focused = (page: Page, selector: string) => page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector);

describe('a OneTrainer OFT file of the COFT commits without its training config', PAGE_RETRY, () => {
  it('is refused naming the card’s setting; chosen by keyboard it re-plans and merges as OneTrainer applied it; axe-clean, 390 px', async () => {
    const dir = session.dirs.make({
      [BASE]: buildSafetensors(base),
      [FILE]: buildSafetensors([oft], OT_HEADER),
      // Saved by e928ddab (10 May 2026), which removed COFT: nothing to ask.
      'oft_later_OneTrainer.safetensors': buildSafetensors([oft], { ...OT_HEADER, ot_revision: 'e928ddab' }),
    });
    // The command line's refusal of the same files, for the page's words to be checked against.
    const cli = await runCli(['merge', '--base', join(dir, BASE), '--adapter', join(dir, FILE), '--out', join(dir, 'out.safetensors'), '--backend', 'cpu']);
    expect(cli.code, cli.stderr).not.toBe(0);
    const cliLine = cli.stderr.split('\n').find((l) => l.startsWith('error: '))!.slice('error: '.length).replaceAll(`${dir}/`, '');
    expect(cliLine).toMatch(/merge it with --onetrainer-coft off, --onetrainer-coft on \(coft_eps 1e-4, OneTrainer's default\) or --onetrainer-coft EPS$/);

    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, BASE));
    await upload(page, 'adapter-input', join(dir, FILE));
    const refused = await refusal(page);
    // The command line's line in the page's words: the card's setting named, no command-line option.
    const worded = pageWording(cliLine);
    expect(worded).toMatch(/, or, knowing how it was trained, choose “off”, “on, coft_eps 1e-4 \(OneTrainer’s default\)” or “on, the run’s coft_eps” under “OneTrainer COFT” on the adapter’s card$/);
    expect(worded).not.toMatch(/--onetrainer-coft|oneTrainerCoft|no setting/);
    expect(refused.status).toBe(worded);
    expect(refused.mergeDisabled).toBe(true);
    expect(refused.alert).toContain('under “OneTrainer COFT” on the adapter’s card');
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe(`The plan is blocked by ${FILE}, which cannot be read until you say how it was trained: choose under “OneTrainer COFT” on its card, or remove it.`);
    expect(await text(page, '[data-testid="plan-blocked"]')).toBe(await text(page, '[data-testid="merge-blocked"]'));

    // The setting, on that card only: a menu labelled with the adapter's name, described by its hint.
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="adapter-coft-box"]')!.hidden, { timeout: 30_000 });
    expect(await coftBoxShown(page)).toBe(true);
    const menu = '[data-testid="adapter-coft"]';
    expect(await page.$eval(menu, (s) => [...(s as HTMLSelectElement).labels].map((l) => l.textContent).join(' '))).toBe(`OneTrainer COFT of ${FILE}`);
    expect(await page.$eval(menu, (s) => [...(s as HTMLSelectElement).options].map((o) => o.textContent)))
      .toEqual(['not said (the file is refused)', 'off', 'on, coft_eps 1e-4 (OneTrainer’s default)', 'on, the run’s coft_eps']);
    expect(await page.$eval(menu, (s) => document.getElementById(s.getAttribute('aria-describedby')!)?.textContent)).toMatch(/^This OneTrainer OFT file was saved by a OneTrainer of 14 November 2025 – 10 May 2026, which had COFT/);

    // By keyboard: Tab to the menu, the arrow keys to "the run's coft_eps", Tab to its box, type it, Tab away.
    await tabTo(page, menu);
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowDown');
    expect(await page.$eval(menu, (s) => (s as HTMLSelectElement).value)).toBe('eps');
    const eps = '[data-testid="adapter-coft-eps"]';
    await page.waitForFunction((s: string) => document.querySelector<HTMLElement>(s)!.offsetParent !== null, { timeout: 30_000 }, eps);
    expect(await page.$eval(eps, (e) => [...(e as HTMLInputElement).labels!].map((l) => l.textContent).join(' '))).toBe(`coft_eps of ${FILE}`);
    // Nothing typed yet: still refused.
    await refusal(page);
    // A coft_eps of 0 is none: said beside the box, which is marked invalid; still refused.
    await page.keyboard.press('Tab');
    expect(await focused(page, eps)).toBe(true);
    await page.keyboard.type('0');
    await page.keyboard.press('Tab');
    await page.waitForFunction((s: string) => document.querySelector(s)!.getAttribute('aria-invalid') === 'true', { timeout: 30_000 }, eps);
    expect(await page.$eval(eps, (e) => e.getAttribute('aria-describedby')!.split(' ').map((id) => document.getElementById(id)!.textContent).join(' ')))
      .toMatch(/coft_eps is a number above 0/);
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    await typeInto(page, eps, '0.2');
    await page.keyboard.press('Tab');
    await planReady(page);
    await mergeEnabled(page);
    expect(await page.$eval(eps, (e) => e.getAttribute('aria-invalid'))).toBe('false');
    // The setting stays on the card once the plan is made, to be changed again.
    expect(await coftBoxShown(page)).toBe(true);
    await page.click('[data-testid="merge-button"]');
    expectMerged(await downloadBytes(page), truth(0.2), 'COFT on at coft_eps 0.2');

    // Off, by keyboard: the result goes out of date, the plan is made again, the merge unprojected.
    await page.focus(menu);
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowUp');
    expect(await page.$eval(menu, (s) => (s as HTMLSelectElement).value)).toBe('off');
    expect(await focused(page, menu)).toBe(true);
    await page.waitForSelector('[data-testid="download-link-stale"]', { timeout: 30_000 });
    await mergeEnabled(page);
    expect(await focused(page, menu)).toBe(true); // the new plan left the focus where it was
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => !document.querySelector('[data-testid="download-link-stale"]'), { timeout: 60_000 });
    const off = await downloadBytes(page);
    expectMerged(off, truth(undefined), 'COFT off');

    // Screenshots of the card with its setting, both themes, then 390 px wide; axe-clean each time.
    mkdirSync('test-output', { recursive: true });
    await page.select(menu, 'eps');
    await typeInto(page, eps, '0.2');
    await page.keyboard.press('Tab');
    await mergeEnabled(page);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      await (await page.$('#adapters-section'))!.screenshot({ path: `test-output/demo-onetrainer-coft-${scheme}.png` });
    }
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const box = await page.$eval('[data-testid="adapter-coft"]', (s) => s.getBoundingClientRect().toJSON());
    expect([box.left >= 0, box.right <= 390]).toEqual([true, true]);
    expect(await seriousViolations(page), '390 px').toEqual([]);
    await (await page.$('#adapters-section'))!.screenshot({ path: 'test-output/demo-onetrainer-coft-390px-dark.png' });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    await (await page.$('#adapters-section'))!.screenshot({ path: 'test-output/demo-onetrainer-coft-390px-light.png' });
    // The refused state too, at 390 px: its hint and the card's refusal.
    await page.select(menu, 'unsaid');
    await refusal(page);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await seriousViolations(page), '390 px, refused').toEqual([]);
    await (await page.$('#adapters-section'))!.screenshot({ path: 'test-output/demo-onetrainer-coft-refused-390px-light.png' });
    await page.setViewport({ width: 1280, height: 900 });

    // A file of a OneTrainer after COFT asks nothing: its card has no such setting.
    await page.select(menu, 'off');
    await mergeEnabled(page);
    await upload(page, 'adapter-input', join(dir, 'oft_later_OneTrainer.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    expect([await coftBoxShown(page, 0), await coftBoxShown(page, 1)]).toEqual([true, false]);
  }, 180_000);
});
