/**
 * The demo page used as a person uses it, in headless Chromium: the sample and then their own
 * files, a slider moved after a merge, the whole flow by keyboard alone, an adapter for another
 * kind of model, a 390 px phone with real long tensor names, and an accessibility scan (axe-core)
 * in both colour schemes. Merged bytes are checked against float64 truth computed here.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serveDemo, type DemoPage, PAGE_RETRY } from './helpers/browser.js';
import { count, openChooser, planReady, seriousViolations, tabTo, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { checkMerged, downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { llamaWithPeft, sdxlWithKohya } from './helpers/page-fixtures.js';

const session = useDemoSession();
const { dirs } = session;
let demo: DemoPage;


function llamaTruth(fixture: ReturnType<typeof llamaWithPeft>, weight: number) {
  return [{ tensors: readSafetensors(fixture.adapter), scale: weight * (fixture.alpha / fixture.rank) }];
}

describe('the page as a person uses it', PAGE_RETRY, () => {
  it('sample first, then their own files: nothing of the sample is kept, and their merge is exact', async () => {
    const fixture = llamaWithPeft(11);
    const dir = dirs.make(fixture.files);
    demo = await session.open();
    const { page } = demo;
    await page.click('[data-testid="sample-button"]');
    await downloadBytes(page);

    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    // The sample's adapter and its downloads are gone the moment another base is picked.
    expect(await count(page, '[data-testid="adapter"]')).toBe(0);
    expect(await count(page, '[data-testid^="download-link"]')).toBe(0);
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="merge-blocked"]')).toContain('adapter');

    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    expect(await text(page, '#plan-stats')).toContain('4modules matched');
    expect(await text(page, '[data-testid="adapter-facts"]')).toContain('r = 2');
    // The path is not repeated: the name and size, then what the base is.
    await page.waitForFunction(() => !/^Reading/.test(document.querySelector('[data-testid="base-facts"]')?.textContent ?? 'Reading'));
    expect(await text(page, '[data-testid="base-summary"]')).toMatch(/^llama\.safetensors · 1 file, [\d.]+ KBsafetensors · 5 tensors · F16 · [\d.]+ KB of weights$/);
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled);
    await page.click('[data-testid="merge-button"]');
    const output = await downloadBytes(page);
    expect(await page.$eval('[data-testid="download-link"]', (a) => (a as HTMLAnchorElement).download)).toBe('llama-merged.safetensors');
    checkMerged(output, readSafetensors(fixture.base), llamaTruth(fixture, 1));
  });

  it('a slider moved after a merge marks the result out of date; merging again gives the new weights', async () => {
    const fixture = llamaWithPeft(12);
    const dir = dirs.make(fixture.files);
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);

    await page.evaluate(() => {
      const slider = document.querySelector<HTMLInputElement>('[data-testid="adapter-weight"]')!;
      slider.value = '-0.5';
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    });
    expect(await count(page, '[data-testid="download-link"]')).toBe(0);
    expect(await count(page, '[data-testid="download-link-stale"]')).toBe(1);
    expect(await text(page, '[data-testid="results"]')).toContain('Out of date');
    expect(await page.$eval('[data-testid="adapter-weight-number"]', (e) => (e as HTMLInputElement).value)).toBe('-0.5');

    await page.click('[data-testid="merge-button"]');
    const output = await downloadBytes(page);
    expect(await count(page, '[data-testid="download-link-stale"]')).toBe(0);
    checkMerged(output, readSafetensors(fixture.base), llamaTruth(fixture, -0.5));
  });

  it('works by keyboard alone: pickers, weight, merge, and focus lands on the result', async () => {
    const fixture = llamaWithPeft(13);
    const dir = dirs.make(fixture.files);
    demo = await session.open();
    const { page } = demo;
    await page.focus('body');
    await tabTo(page, '#base-files-button');
    const baseChooser = await openChooser(page, 'Enter');
    await baseChooser.accept([join(dir, 'llama.safetensors')]);
    await tabTo(page, '#adapter-files-button');
    const adapterChooser = await openChooser(page, 'Space');
    await adapterChooser.accept([join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors')]);
    await planReady(page);
    // The number box takes a typed weight; the slider follows it.
    await tabTo(page, '[data-testid="adapter-weight-number"]');
    await page.keyboard.down('Control');
    await page.keyboard.press('a');
    await page.keyboard.up('Control');
    await page.keyboard.type('0.75');
    expect(await page.$eval('[data-testid="adapter-weight"]', (e) => (e as HTMLInputElement).value)).toBe('0.75');
    await tabTo(page, '[data-testid="merge-button"]');
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled);
    await page.keyboard.press('Enter');
    const output = await downloadBytes(page);
    await page.waitForFunction(() => document.activeElement?.id === 'results');
    checkMerged(output, readSafetensors(fixture.base), llamaTruth(fixture, 0.75));
    // Every control on the way was reachable; none is a bare label around a hidden input.
    const unreachable = await page.$$eval('input:not([type=file]), select, button', (els) =>
      els.filter((e) => (e as HTMLElement).tabIndex < 0 || (e as HTMLElement).hidden).map((e) => e.id || e.outerHTML.slice(0, 60)));
    expect(unreachable).toEqual([]);
  });

  it('names an adapter for another kind of model, announces the errors and keeps merge disabled', async () => {
    const llama = llamaWithPeft(14);
    const sdxl = sdxlWithKohya(15);
    const dir = dirs.make({ ...llama.files, ...sdxl.files });
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'sdxl-style.safetensors'));
    await planReady(page);
    await page.waitForFunction(() => /diffusion UNet/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''));
    expect(await text(page, '[data-testid="alert"]')).toMatch(/sdxl-style\.safetensors: this adapter is for a diffusion UNet, but the base is a language model/);
    // One line for the adapter, not one per module it misses.
    const problems = await page.$$eval('[data-testid="plan-problems"] li', (els) => els.map((e) => e.textContent));
    expect(problems).toEqual([expect.stringMatching(/^error: sdxl-style\.safetensors: this adapter is for a diffusion UNet, but the base is a language model: none of its 4 modules has a tensor there/)]);
    expect(await text(page, '#plan-problems-heading')).toBe('1 error stops the merge');
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe('The plan has 1 error: fix it first.');
    expect(await text(page, '[data-testid="adapter-facts"]')).not.toContain('reading');
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-errors.png', fullPage: true });
  });

  it('tells two adapters of the same name apart: cards, weight sliders, the refusal and the warning name the second `#2`', async () => {
    const llama = llamaWithPeft(17);
    // The same files again with a config whose r is not the tensors' rank, so the plan refuses it.
    const wrongRank = JSON.stringify({ ...JSON.parse(llama.files['llama-lora/adapter_config.json'] as string), r: 3 });
    const dir = dirs.make({
      ...llama.files, 'wrong/adapter_config.json': wrongRank, 'wrong/adapter_model.safetensors': llama.adapter,
      'a/lora/adapter_config.json': llama.files['llama-lora/adapter_config.json'], 'a/lora/adapter_model.safetensors': llama.adapter,
      'b/lora/adapter_config.json': llama.files['llama-lora/adapter_config.json'], 'b/lora/adapter_model.safetensors': llama.adapter,
    });
    demo = await session.open();
    const { page } = demo;
    const names = () => page.$$eval('[data-testid="adapter"] .adapter-name', (els) => els.map((e) => e.textContent));
    const sliderLabels = () => page.$$eval('[data-testid="adapter-weight"], [data-testid="adapter-weight-number"]', (els) => els.map((e) => e.getAttribute('aria-label')));
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    // Two PEFT adapters picked as files: the browser does not say their folders, both are `PEFT adapter`.
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'wrong/adapter_config.json'), join(dir, 'wrong/adapter_model.safetensors'));
    expect(await names()).toEqual(['PEFT adapter', 'PEFT adapter #2']);
    expect(await sliderLabels()).toEqual(['Weight of PEFT adapter', 'Weight of PEFT adapter, as a number', 'Weight of PEFT adapter #2', 'Weight of PEFT adapter #2, as a number']);
    expect(await page.$$eval('[data-testid="adapter"] .remove', (els) => els.map((e) => e.getAttribute('aria-label')))).toEqual(['Remove PEFT adapter', 'Remove PEFT adapter #2']);
    // The refusal names the second one, not the first.
    await page.waitForFunction(() => /PEFT adapter #2/.test(document.querySelector('[data-testid="plan-status"]')!.textContent ?? ''), { timeout: 30_000 });
    // Shown as its title and a list, one problem an item.
    expect(await text(page, '[data-testid="plan-status"] .message-title')).toBe('4 problems in PEFT adapter #2:');
    expect((await texts(page, '[data-testid="plan-status"] li'))[0]).toBe('PEFT adapter #2: module "model.layers.0.self_attn.q_proj": lora_A has rank 2 but the config (r) says 3');
    await page.waitForFunction(() => (document.querySelector('[data-testid="alert"]')!.textContent ?? '').includes('PEFT adapter #2: module'), { timeout: 30_000 });
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-same-names-refused.png', fullPage: true });

    // The refused one removed and the good files picked again: the new card is `#2` too, and the
    // warning about one adapter given twice tells which is which.
    await page.click('[data-testid="adapter"]:nth-child(2) .remove');
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    expect(await names()).toEqual(['PEFT adapter', 'PEFT adapter #2']);
    expect(await page.$$eval('[data-testid="plan-problems"] li', (els) => els.map((e) => e.textContent))).toEqual([
      'warning: PEFT adapter #2 is the same adapter as PEFT adapter (identical files): it is applied twice, weights 1 and 1 adding up to 2; give it once with weight 2 if that is what you mean',
    ]);

    // Two folders both named `lora`, beside them: `lora` and `lora #2`.
    await upload(page, 'adapter-folder-input', join(dir, 'a/lora'));
    await upload(page, 'adapter-folder-input', join(dir, 'b/lora'));
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="adapter"]').length === 4);
    expect(await names()).toEqual(['PEFT adapter', 'PEFT adapter #2', 'lora', 'lora #2']);
    expect((await sliderLabels()).filter((_, i) => i % 2 === 0)).toEqual(['Weight of PEFT adapter', 'Weight of PEFT adapter #2', 'Weight of lora', 'Weight of lora #2']);
    await planReady(page);
    await page.waitForFunction(() => /lora #2 is the same adapter as PEFT adapter/.test(document.querySelector('[data-testid="plan-problems"]')?.textContent ?? ''), { timeout: 30_000 });
    const facts = await page.$$eval('[data-testid="adapter-facts"]', (els) => els.map((e) => e.textContent));
    expect(facts).toEqual(Array(4).fill(`PEFT · LoRA · 4 modules · r = ${llama.rank} · α = ${llama.alpha} · α/r = ${llama.alpha / llama.rank}`));
    await page.screenshot({ path: 'test-output/demo-same-names.png', fullPage: true });
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: 'test-output/demo-same-names-390.png', fullPage: true });
  });

  it('fits a 390 px phone with real long tensor names, merge controls on screen', async () => {
    const sdxl = sdxlWithKohya(16);
    const dir = dirs.make(sdxl.files);
    demo = await session.open();
    const { page } = demo;
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    await upload(page, 'base-input', join(dir, 'unet/diffusion_pytorch_model.safetensors'), join(dir, 'unet/config.json'));
    await upload(page, 'adapter-input', join(dir, 'sdxl-style.safetensors'));
    await planReady(page);
    await page.$eval('details', (d) => { (d as HTMLDetailsElement).open = true; });
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="merge-button"]')!.disabled);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const box = await page.$eval('[data-testid="merge-button"]', (b) => b.getBoundingClientRect().toJSON());
    expect(box.left).toBeGreaterThanOrEqual(0);
    expect(box.right).toBeLessThanOrEqual(390);
    // The chart groups a UNet by its real blocks.
    const labels = await page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label'));
    expect(labels).toContain('4 blocks');
    mkdirSync('test-output', { recursive: true });
    await page.screenshot({ path: 'test-output/demo-390px.png', fullPage: true });
  });

  it('a second tab does not delete the first one’s merged files; a reload of it does', async () => {
    demo = await session.open();
    const { page } = demo;
    await page.click('[data-testid="sample-button"]');
    const first = await downloadBytes(page);
    const second = await session.open();
    try {
      // The second tab's worker cleans up on start: wait until it has.
      await second.page.waitForFunction(() => !/starting/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
      await second.page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
      expect(await downloadBytes(page)).toEqual(first);
      expect(second.errors).toEqual([]);
    } finally {
      await second.page.close();
    }
    const stored = () => page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const merges = await root.getDirectoryHandle('loramerge-merges', { create: true });
      const names: string[] = [];
      for await (const name of (merges as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
      return names;
    });
    expect((await stored()).length).toBe(1);
    await page.reload({ waitUntil: 'load' });
    await page.waitForFunction(() => !/starting/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    await page.waitForFunction(async () => {
      const root = await navigator.storage.getDirectory();
      const merges = await root.getDirectoryHandle('loramerge-merges', { create: true });
      for await (const _ of (merges as unknown as { keys(): AsyncIterable<string> }).keys()) return false;
      return true;
    }, { timeout: 30_000 });
  });

  it('served without cross-origin isolation, runs the CPU on one thread and says what it lost', async () => {
    const plain = await serveDemo({ crossOriginIsolated: false });
    try {
      demo = await session.open('?backend=cpu', plain);
      const { page } = demo;
      await page.waitForFunction(() => /^cpu/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      expect(await text(page, '#backend')).toMatch(/WebAssembly SIMD, 1 thread; requested; no worker threads: the page is not cross-origin isolated/);
      // And it still merges: the sample, written to browser storage on the writer worker.
      expect(await page.evaluate(() => typeof SharedArrayBuffer)).toBe('undefined');
      await page.click('[data-testid="sample-button"]');
      await page.waitForFunction(() => !!document.querySelector<HTMLAnchorElement>('[data-testid="download-link"]')?.href, { timeout: 90_000 });
    } finally {
      await plain.close();
    }
  });

  it('served cross-origin isolated, runs the CPU on Web Workers', async () => {
    demo = await session.open('?backend=cpu');
    const { page } = demo;
    await page.waitForFunction(() => /^cpu/.test(document.getElementById('backend')!.textContent ?? ''), { timeout: 60_000 });
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(await text(page, '#backend')).toMatch(/WebAssembly SIMD, \d+ threads; requested\)/);
  });

  for (const scheme of ['light', 'dark'] as const) {
    it(`has no serious or critical accessibility violations (axe-core, ${scheme})`, async () => {
      demo = await session.open();
      const { page } = demo;
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await page.click('[data-testid="sample-button"]');
      await downloadBytes(page);
      await planReady(page);
      await page.$eval('details', (d) => { (d as HTMLDetailsElement).open = true; });
      expect(await seriousViolations(page)).toEqual([]);
      mkdirSync('test-output', { recursive: true });
      await page.screenshot({ path: `test-output/demo-${scheme}.png`, fullPage: true });
    });
  }
});
