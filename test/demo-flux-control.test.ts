/**
 * The demo page with BFL's FLUX.1 Canny control LoRA on flux1-dev.safetensors, through its usual
 * controls: the plan's notes say img_in is written wider than the base's, and the downloaded file
 * holds it so, every tensor checked against float64 truth.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { planReady, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { controlLora, expectAll, fluxDevBfl, H, identity, IN, truth } from './helpers/flux-control-fixtures.js';

const rand = seededRandom(20261204);
const base = buildSafetensors(fluxDevBfl(rand, 'BF16'), { format: 'pt' });
const lora = buildSafetensors(controlLora(rand));

const session = useDemoSession();
let dir: string;
beforeAll(() => {
  dir = session.dirs.make({ 'flux1-dev.safetensors': base, 'flux1-canny-dev-lora.safetensors': lora });
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
});
