/**
 * The plan's table on a 390 px phone with the tensor names people's files hold: a ComfyUI Flux
 * checkpoint's `model.diffusion_model.double_blocks.18.img_attn.qkv.weight` and a multimodal
 * LLM's `model.language_model.layers.35.self_attn.q_proj.weight`, under a PEFT adapter's
 * `base_model.model.…` modules. Opened, the table widens nothing: the page has no horizontal
 * overflow in either theme (the table scrolls inside its own region), each name wraps inside its
 * cell (the whole name still its text and tooltip) and the merge button stays on screen. Screenshots in test-output/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { planReady, seriousViolations, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';

const session = useDemoSession();
const TARGETS = ['model.diffusion_model.double_blocks.18.img_attn.qkv', 'model.language_model.layers.35.self_attn.q_proj'];

function files() {
  const rand = seededRandom(390);
  const values = (n: number) => Float64Array.from({ length: n }, () => rand() - 0.5);
  const base = buildSafetensors(TARGETS.map((t) => ({ name: `${t}.weight`, dtype: 'F32' as const, shape: [24, 16], data: values(24 * 16) })));
  const adapter = buildSafetensors(TARGETS.flatMap((t) => [
    { name: `base_model.model.${t}.lora_A.weight`, dtype: 'F32' as const, shape: [2, 16], data: values(32) },
    { name: `base_model.model.${t}.lora_B.weight`, dtype: 'F32' as const, shape: [24, 2], data: values(48) },
  ]));
  const config = JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['qkv', 'q_proj'] });
  return { 'model.safetensors': base, 'lora/adapter_config.json': config, 'lora/adapter_model.safetensors': adapter };
}

describe('the plan table on a phone', PAGE_RETRY, () => {
  it('long tensor names wrap inside their cells: no horizontal overflow in either theme, merge on screen', async () => {
    const dir = session.dirs.make(files());
    const { page } = await session.open('?backend=cpu');
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    await upload(page, 'base-input', join(dir, 'model.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'lora'));
    await planReady(page);
    await page.click('#modules-details > summary');
    expect(await page.$eval('#modules-details', (d) => (d as HTMLDetailsElement).open)).toBe(true);
    // The table's other columns scroll inside its own labelled, focusable region, not the page.
    expect(await page.$eval('#modules-details .table-scroll', (e) => [e.getAttribute('role'), e.getAttribute('aria-label'), e.getAttribute('tabindex')]))
      .toEqual(['region', 'Matched modules', '0']);

    // Each row: the module (its header cell) and the base tensor, whole as text and tooltip.
    const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((tr) => {
      const [module, target] = [tr.querySelector('th')!, tr.querySelectorAll('td')[1]];
      const box = (e: Element) => e.getBoundingClientRect();
      // The lines the text itself takes (a cell's box is as tall as its row's tallest cell).
      const lines = (e: Element) => {
        const range = document.createRange();
        range.selectNodeContents(e);
        return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
      };
      return {
        module: [module.textContent, module.getAttribute('title')], target: [target.textContent, target.getAttribute('title')],
        widest: Math.max(box(module).width, box(target).width), moduleLines: lines(module), targetLines: lines(target),
        overflowing: [module, target].filter((e) => e.scrollWidth > e.clientWidth).length,
      };
    }));
    expect(rows.map((r) => r.target[0]).sort()).toEqual(TARGETS.map((t) => `${t}.weight`).sort());
    for (const r of rows) {
      expect(r.target[1]).toBe(r.target[0]);
      expect(r.module[1]).toBe(r.module[0]);
      expect(TARGETS.some((t) => r.module[0]!.includes(t)), r.module[0]!).toBe(true);
      // Wrapped: a 58-character name on one line would be wider than the phone; its cell is far narrower.
      expect(r.targetLines, JSON.stringify(r)).toBeGreaterThan(1);
      expect(r.moduleLines, JSON.stringify(r)).toBeGreaterThan(1);
      expect(r.overflowing, JSON.stringify(r)).toBe(0);
      expect(r.widest, JSON.stringify(r)).toBeLessThan(390 / 2);
    }

    mkdirSync('test-output', { recursive: true });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      const overflow = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      expect(overflow.scroll, `${scheme}: ${JSON.stringify(overflow)}`).toBeLessThanOrEqual(overflow.client);
      expect(await seriousViolations(page), scheme).toEqual([]);
      const merge = await (await page.$('[data-testid="merge-button"]'))!.boundingBox();
      expect(merge!.x + merge!.width, scheme).toBeLessThanOrEqual(390);
      await page.screenshot({ path: `test-output/demo-plan-long-names-390px-${scheme}.png`, fullPage: true });
      await (await page.$('#modules-details'))!.screenshot({ path: `test-output/demo-plan-long-names-390px-${scheme}-table.png` });
    }
  }, 60_000);
});
