/**
 * The demo page with spacepxl's Wan 2.1 tile control LoRA (its `patch_embedding.reshape_weight`) on
 * Comfy-Org's wan2.1_t2v_1.3B_bf16.safetensors, through its usual controls: the plan's notes say
 * patch_embedding is written with 32 input channels, and the downloaded file holds it so, every
 * tensor checked against float64 truth (helpers/wan-control-fixtures.ts); a reshape to a smaller
 * size is one error and the merge cannot run.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { WAN } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { controlLora, expectAll, LORA_FILE, truth, WAN_FILE, wanT2v } from './helpers/wan-control-fixtures.js';

const rand = seededRandom(20261206);
const { dim } = WAN;
const base = buildSafetensors(wanT2v(rand), { format: 'pt' });
const lora = buildSafetensors(controlLora(rand, 32));
const smaller = buildSafetensors(controlLora(rand, 32).map((t) => (t.name.endsWith('.reshape_weight') ? { ...t, data: [dim, 8, 1, 2, 2] } : t)));

const session = useDemoSession();
let dir: string;
beforeAll(() => {
  dir = session.dirs.make({ [WAN_FILE]: base, [LORA_FILE]: lora, 'smaller.safetensors': smaller });
});

describe('demo page with a Wan control LoRA (reshape_weight)', PAGE_RETRY, () => {
  it('says patch_embedding is padded to 32 input channels, and the download holds it padded and merged', async () => {
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-input', join(dir, WAN_FILE));
    await upload(demo.page, 'adapter-input', join(dir, LORA_FILE));
    await planReady(demo.page);
    const notes = await demo.page.$$eval('[data-testid="plan-notes"] li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(notes).toContainEqual(`patch_embedding.weight is written (${dim}, 32, 1, 2, 2), 16 zero input channels added to the base's 16 before the adapter's update (ComfyUI's reshape_weight): the merged model takes 32 input channels where the base took 16, as ComfyUI reads them from this tensor`);
    await demo.page.click('[data-testid="merge-button"]');
    const merged = decodeSafetensors(await downloadBytes(demo.page)).tensors;
    const baseTensors = decodeSafetensors(base).tensors;
    expectAll(merged, baseTensors, truth(baseTensors, decodeSafetensors(lora).tensors, 1, 32), 32);
  });

  it('a reshape to a smaller size is one error naming the module, and the merge cannot run', async () => {
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-input', join(dir, WAN_FILE));
    await upload(demo.page, 'adapter-input', join(dir, 'smaller.safetensors'));
    await planReady(demo.page);
    await demo.page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent, { timeout: 30_000 });
    const problems = await demo.page.$$eval('[data-testid="plan-problems"] li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(problems).toEqual([expect.stringMatching(/smaller\.safetensors: module "diffusion_model\.patch_embedding": reshape_weight pads patch_embedding\.weight \(8, 16, 1, 2, 2\) to \(8, 8, 1, 2, 2\), smaller in dimension 1/)]);
    expect(await text(demo.page, '[data-testid="alert"]')).toMatch(/^The plan has 1 error\. First: smaller\.safetensors: module "diffusion_model\.patch_embedding"/);
    expect(await demo.page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
  });
});
