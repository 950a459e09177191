/**
 * Several adapters on one page, as a person picks, drops and reads them: each module's row names
 * its adapter (as its card does, same-named picks told apart by `#2`, a folder really named
 * `lora (2)` kept as it is); an adapter that cannot be read says so on its own card while the
 * others show their facts, and the plan is blocked by it with the way out said and read out; a
 * refusal listing problems is shown as a list and read out as its title and first problem; a
 * config that is not UTF-8 is refused naming the file and the offset; a base and a PEFT adapter's
 * two loose files dropped onto the drop zones make the plan.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, count, dropFiles, mergeEnabled, planReady, seriousViolations, tabTo, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();

const fixture = llamaWithPeft(51);
const other = llamaWithPeft(52);
const config = (fixture.files['llama-lora/adapter_config.json'] as string);
/** The modules llamaWithPeft's adapters hold, in the plan's order (by base tensor, as the file lists them). */
const MODULES = ['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.mlp.down_proj'];

/** A PEFT adapter whose file also holds 14 tensors that are no LoRA factor: 14 problems, one refusal. */
function strayTensors(): Uint8Array {
  return buildSafetensors(Array.from({ length: 14 }, (_, i) => ({
    name: `base_model.model.model.layers.${i}.self_attn.q_proj.scaling_buffer`, dtype: 'F32' as const, shape: [2], data: [1, 2],
  })));
}

const alertText = async (page: Page) => (await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 })).jsonValue();

describe('several adapters on the page', PAGE_RETRY, () => {
  it('names each module row\'s adapter as its card does: `lora`, a real `lora (2)`, a second `lora` as `lora #2`', async () => {
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'a/lora/adapter_config.json': config, 'a/lora/adapter_model.safetensors': fixture.adapter,
      'lora (2)/adapter_config.json': config, 'lora (2)/adapter_model.safetensors': other.adapter,
      'b/lora/adapter_config.json': config, 'b/lora/adapter_model.safetensors': other.adapter,
    });
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    for (const folder of ['a/lora', 'lora (2)', 'b/lora']) await upload(page, 'adapter-folder-input', join(dir, folder));
    await planReady(page);
    await announced(page, /Plan ready: 12 modules matched/);
    const names = ['lora', 'lora (2)', 'lora #2'];
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(names);
    // The table, opened by keyboard as a person would: Tab to its summary, Enter.
    await tabTo(page, '#modules-details > summary');
    await page.keyboard.press('Enter');
    expect(await page.$eval('#modules-details', (d) => (d as HTMLDetailsElement).open)).toBe(true);
    const table = await page.$$eval('#plan-modules tr', (trs) => trs.map((tr) => [...tr.children].map((c) => [c.tagName, c.getAttribute('scope'), c.textContent])));
    expect(table[0].map(([tag, scope, label]) => `${tag} ${scope} ${label}`)).toEqual([
      'TH col Adapter', 'TH col Module', 'TH col Base tensor', 'TH col Algorithm', 'TH col Shape', 'TH col Scale × weight', 'TH col w·‖ΔW‖ / ‖W‖',
    ]);
    // Each row: its adapter, then its module as the row's header; every module three times, told apart by the adapter.
    const rows = table.slice(1);
    expect(rows.every((r) => r[1][0] === 'TH' && r[1][1] === 'row')).toBe(true);
    const pairs = rows.map((r) => `${r[0][2]} · ${r[1][2]}`).sort();
    expect(pairs).toEqual(names.flatMap((n) => MODULES.map((m) => `${n} · ${m}`)).sort());
    // Same module, other adapters: the rows differ only by the adapter cell (different files, same scale).
    const q0 = rows.filter((r) => r[1][2] === MODULES[0]);
    expect(q0.map((r) => r[0][2])).toEqual(names);
    expect(new Set(q0.map((r) => r.slice(1, 6).map((c) => c[2]).join('|'))).size).toBe(1);

    // 390 px: the table scrolls inside its focusable region; the page itself does not widen.
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const region = await page.$eval('#modules-details .table-scroll', (r) => ({ label: r.getAttribute('aria-label'), role: r.getAttribute('role'), tab: r.getAttribute('tabindex'), scrolls: r.scrollWidth > r.clientWidth }));
    expect(region).toEqual({ label: 'Matched modules', role: 'region', tab: '0', scrolls: true });
  }, 120_000);

  it('an unreadable adapter: its card says why, the other card its facts, the plan is blocked by it, listed and read out; removing it makes the plan', async () => {
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'style/adapter_config.json': config, 'style/adapter_model.safetensors': fixture.adapter,
      'broken/adapter_config.json': config, 'broken/adapter_model.safetensors': strayTensors(),
    });
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'style'));
    await upload(page, 'adapter-folder-input', join(dir, 'broken'));
    await page.waitForFunction(() => !document.getElementById('plan-blocked')!.hidden, { timeout: 30_000 });

    const stray = (i: number) => `broken/adapter_model.safetensors: tensor "base_model.model.model.layers.${i}.self_attn.q_proj.scaling_buffer" is neither a LoRA factor nor listed in modules_to_save`;
    const listed = [...Array.from({ length: 12 }, (_, i) => stray(i)), '... and 2 more'];
    // The refusal as its title and a list, one problem an item, in the plan's place.
    expect(await text(page, '[data-testid="plan-status"] .message-title')).toBe('14 problems in broken:');
    expect(await texts(page, '[data-testid="plan-status"] .message-list li')).toEqual(listed);
    const blocked = 'The plan is blocked by broken, which cannot be read: remove it, or fix it and pick it again.';
    expect(await text(page, '[data-testid="plan-blocked"]')).toBe(blocked);
    // The good adapter's card shows what it is; the broken one's card its own refusal, as a list too.
    const [style, broken] = await page.$$('[data-testid="adapter-facts"]');
    expect(await style.evaluate((e) => [e.textContent, e.className])).toEqual(['PEFT · LoRA · 4 modules · r = 2 · α = 4 · α/r = 2', 'adapter-facts']);
    // (folded under its title: the plan lists the same; opened by keyboard)
    expect(await broken.evaluate((e) => e.className)).toBe('adapter-facts error-text');
    expect(await broken.$eval('summary', (e) => e.textContent)).toBe('cannot be read: 14 problems in broken:');
    await tabTo(page, '[data-testid="adapter"]:nth-child(2) summary');
    await page.keyboard.press('Enter');
    expect(await broken.$eval('details', (d) => (d as HTMLDetailsElement).open)).toBe(true);
    expect(await broken.$$eval('li', (els) => els.map((e) => e.textContent))).toEqual(listed);
    // No merge; the button says why, naming the adapter.
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe(blocked);
    // Read out once: the title (which counts them) and the first problem, then the way out; not 14 lines.
    expect(await alertText(page)).toBe(`14 problems in broken, listed in the plan. The first: ${stray(0)} ${blocked}`);

    mkdirSync('test-output', { recursive: true });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      await page.screenshot({ path: `test-output/demo-blocked-adapter-${scheme}.png`, fullPage: true });
    }
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await seriousViolations(page), '390 px').toEqual([]);
    // The list spans the card, under the Remove button, not a narrow column beside it.
    const [factsBox, removeBox] = [await broken.boundingBox(), await (await page.$('[data-testid="adapter"]:nth-child(2) .remove'))!.boundingBox()];
    expect(factsBox!.x + factsBox!.width).toBeGreaterThan(removeBox!.x + removeBox!.width / 2);
    expect(factsBox!.y).toBeGreaterThan(removeBox!.y);
    await page.screenshot({ path: 'test-output/demo-blocked-adapter-390px.png', fullPage: true });
    await (await page.$('#adapters-section'))!.screenshot({ path: 'test-output/demo-blocked-adapter-390px-cards.png' });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    await page.setViewport({ width: 1280, height: 900 });

    // Removed by keyboard: the plan is made with the adapter that is left, and the merge can run.
    await tabTo(page, '[data-testid="adapter"]:nth-child(2) .remove');
    expect(await page.evaluate(() => document.activeElement!.getAttribute('aria-label'))).toBe('Remove broken');
    await page.keyboard.press('Enter');
    await planReady(page);
    await announced(page, /Plan ready: 4 modules matched/);
    expect(await page.$eval('#plan-blocked', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['PEFT · LoRA · 4 modules · r = 2 · α = 4 · α/r = 2']);
    await mergeEnabled(page);
  }, 180_000);

  it('a base that cannot be read: every adapter card still shows its facts, and no adapter is blamed', async () => {
    const dir = session.dirs.make({ 'empty.safetensors': new Uint8Array(0), ...fixture.files });
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'empty.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'llama-lora'));
    await page.waitForFunction(() => document.getElementById('plan-status')!.className === 'error-text', { timeout: 30_000 });
    expect(await text(page, '[data-testid="plan-status"]')).toBe('empty.safetensors: file is empty, not a safetensors file');
    expect(await alertText(page)).toBe('empty.safetensors: file is empty, not a safetensors file');
    expect(await page.$eval('#plan-blocked', (e) => (e as HTMLElement).hidden)).toBe(true);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['PEFT · LoRA · 4 modules · r = 2 · α = 4 · α/r = 2']);
  }, 60_000);

  it('an adapter_config.json that is not UTF-8 is refused naming the file and the offset of its first bad byte', async () => {
    // A name holding 0xFF, a byte UTF-8 never holds (Latin-1's ÿ), as an editor set to another encoding saves it.
    const head = config.slice(0, -1) + ', "base_model_name_or_path": "ma';
    const bytes = new Uint8Array([...new TextEncoder().encode(head), 0xff, ...new TextEncoder().encode('"}')]);
    const dir = session.dirs.make({ 'llama.safetensors': fixture.base, 'latin1-lora/adapter_config.json': bytes, 'latin1-lora/adapter_model.safetensors': fixture.adapter });
    const { page } = await session.open('?backend=cpu');
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'latin1-lora'));
    await page.waitForFunction(() => !document.getElementById('plan-blocked')!.hidden, { timeout: 30_000 });
    const message = `latin1-lora/adapter_config.json: is not valid UTF-8 (byte 0xff at offset ${head.length}), which Python's json (PEFT, transformers) refuses; save it as UTF-8`;
    expect(await text(page, '[data-testid="plan-status"]')).toBe(message);
    expect(await text(page, '[data-testid="adapter-facts"]')).toBe(`cannot be read: ${message}`);
    expect(await alertText(page)).toBe(`${message} The plan is blocked by latin1-lora, which cannot be read: remove it, or fix it and pick it again.`);
  }, 60_000);

  it('a base and a PEFT adapter\'s two loose files dropped onto the drop zones make the plan; the pickers are the keyboard\'s way', async () => {
    const { page } = await session.open('?backend=cpu');
    await dropFiles(page, 'base-drop', { 'llama.safetensors': fixture.base });
    await page.waitForFunction(() => !document.getElementById('base-summary')!.hidden, { timeout: 30_000 });
    expect(await text(page, '[data-testid="base-summary"]')).toMatch(/^llama\.safetensors · 1 file, /);
    await dropFiles(page, 'adapter-drop', {
      'adapter_config.json': new TextEncoder().encode(config),
      'adapter_model.safetensors': fixture.adapter,
    });
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 4 modules matched.');
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(['PEFT adapter']);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['PEFT · LoRA · 4 modules · r = 2 · α = 4 · α/r = 2']);
    expect(await count(page, '#plan-modules tbody tr')).toBe(4);
    await mergeEnabled(page);

    // Each drop zone holds the keyboard's way in: two buttons, reached by Tab, named, and described by the hint.
    const zones = [
      ['base-drop', 'base-hint', 'Drop a file or folder here, or', ['Choose base files…', 'Choose a base folder…']],
      ['adapter-drop', 'adapter-hint', 'Drop adapter folders or files here, or', ['Choose adapter files…', 'Choose an adapter folder…']],
    ] as const;
    for (const [zone, hint, says, names] of zones) {
      expect(await text(page, `#${zone} > p`)).toBe(says);
      for (const name of names) {
        const id = await page.$eval(`#${zone}`, (z, n) => [...z.querySelectorAll('button')].find((b) => b.textContent === n)!.id, name);
        await tabTo(page, `#${id}`);
        expect(await page.evaluate(() => document.activeElement!.getAttribute('aria-describedby'))).toBe(hint);
      }
    }
  }, 120_000);
});
