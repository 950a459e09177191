/**
 * The engine's messages on the page name the page's controls, not the command line's options
 * (demo/page-wording.ts, applied where the merge worker posts its answers): a plan problem at a
 * weight whose scale is past float64, and a merge whose f16 result overflows, as a person meets them.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { mergeEnabled, planReady, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();

/** No option of the command line's that the page has a control for. */
const OPTION = /--(dtype|weight|adapter|base|backend)\b/;

describe('the engine’s messages on the page', PAGE_RETRY, () => {
  it('say “weight” and “Output dtype” where the CLI says --weight and --dtype', async () => {
    const fixture = llamaWithPeft(73);
    const dir = session.dirs.make(fixture.files);
    const { page } = await session.open();
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    const setWeight = (value: string) => page.evaluate((v) => {
      const box = document.querySelector<HTMLInputElement>('[data-testid="adapter-weight-number"]')!;
      box.value = v;
      box.dispatchEvent(new Event('input', { bubbles: true }));
      box.dispatchEvent(new Event('change', { bubbles: true }));
    }, value);

    // α/r = 2 times 1e308 is past float64: a problem of the plan, one per module.
    await setWeight('1e308');
    await page.waitForFunction(() => /past float64/.test(document.querySelector('[data-testid="plan-problems"]')?.textContent ?? ''), { timeout: 30_000 });
    const listed = await texts(page, '[data-testid="plan-problems"] li');
    // The warnings beside them (a weight past 10 is a multiplier, not a percentage) use the page's words too.
    for (const line of listed) expect(line).not.toMatch(OPTION);
    const problems = listed.filter((line) => !line.startsWith('warning:'));
    expect(problems.length).toBeGreaterThan(0);
    for (const problem of problems) expect(problem).toMatch(/its scale 2 times the weight 1e\+308 is past float64; use a smaller weight$/);

    // Merged at 1e6 the f16 result overflows: the merge fails saying what to choose on the page.
    await setWeight('1e6');
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => /overflow F16/.test(document.querySelector('[data-testid="progress-text"]')?.textContent ?? ''), { timeout: 60_000 });
    const failure = await text(page, '[data-testid="progress-text"]');
    expect(failure).toMatch(/overflow F16 \(largest finite 65504\): \d+ values? \((row \d+|first in row \d+, last in row \d+)\), after the update from .* module ".*" \(scale 2000000\); choose bf16 or f32 as the Output dtype, or lower the adapter’s weight$/);
    expect(failure).not.toMatch(OPTION);
    await page.waitForFunction(() => /The merge failed/.test(document.querySelector('[data-testid="alert"]')?.textContent ?? ''), { timeout: 30_000 });
    const alert = await text(page, '[data-testid="alert"]');
    expect(alert).toContain('choose bf16 or f32 as the Output dtype, or lower the adapter’s weight');
    expect(alert).not.toMatch(OPTION);
  });
});
