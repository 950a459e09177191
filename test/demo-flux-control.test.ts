/**
 * The demo page with BFL's FLUX.1 Canny control LoRA on flux1-dev.safetensors, through its usual
 * controls: the plan's notes say img_in is written wider than the base's, and the downloaded file
 * holds it so, every tensor checked against float64 truth.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { controlLora, expectAll, fluxDevBfl, H, identity, IN, truth } from './helpers/flux-control-fixtures.js';

const rand = seededRandom(20261204);
const base = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });
const lora = buildSafetensors(controlLora(rand));
// A crafted control LoRA: img_in.lora_A written 3-D, (r, 2·in, 1).
const crafted = buildSafetensors(controlLora(rand).map((t) => (t.name === 'img_in.lora_A.weight' ? { ...t, shape: [...t.shape, 1] } : t)));

const session = useDemoSession();
let dir: string;
beforeAll(() => {
  dir = session.dirs.make({ 'flux1-dev.safetensors': base, 'flux1-canny-dev-lora.safetensors': lora, 'crafted-lora.safetensors': crafted });
});

describe('demo page with a FLUX.1 control LoRA', PAGE_RETRY, () => {
  it('says img_in is widened, and the download holds it widened and merged', async () => {
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-input', join(dir, 'flux1-dev.safetensors'));
    await upload(demo.page, 'adapter-input', join(dir, 'flux1-canny-dev-lora.safetensors'));
    await planReady(demo.page);
    const notes = await demo.page.$$eval('[data-testid="plan-notes"] li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(notes).toContainEqual(`img_in.weight is written (${H}, ${2 * IN}), ${IN} zero columns added to the base's ${IN} before the adapter's update: the merged model takes ${2 * IN} input channels where the base took ${IN}`);
    await demo.page.click('[data-testid="merge-button"]');
    const merged = decodeSafetensors(await downloadBytes(demo.page)).tensors;
    const baseTensors = decodeSafetensors(base).tensors;
    expect(merged.get('img_in.weight')!.shape).toEqual([H, 2 * IN]);
    expectAll(merged, baseTensors, truth(baseTensors, decodeSafetensors(lora).tensors, 1, identity, (n) => n));
  });

  it('a crafted img_in (lora_A 3-D) is one error naming the module, and the merge cannot run', async () => {
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-input', join(dir, 'flux1-dev.safetensors'));
    await upload(demo.page, 'adapter-input', join(dir, 'crafted-lora.safetensors'));
    await planReady(demo.page);
    await demo.page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent, { timeout: 30_000 });
    const problems = await demo.page.$$eval('[data-testid="plan-problems"] li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(problems).toEqual([expect.stringMatching(/crafted-lora\.safetensors: module "diffusion_model\.img_in": ΔW \(8, 32, 1\) does not fit base img_in\.weight \(8, 16\)/)]);
    expect(await text(demo.page, '[data-testid="alert"]')).toMatch(/^The plan has 1 error\. First: crafted-lora\.safetensors: module "diffusion_model\.img_in"/);
    expect(await demo.page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
  });
});
