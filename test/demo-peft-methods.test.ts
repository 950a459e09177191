/**
 * The page with adapters of the newer PEFT methods, dropped as their folders (adapter_config.json
 * and adapter_model.safetensors): RandLoRA, an exact low-rank product whose dims only the base
 * says, and RoAd, a rotation of W's output pairs (its bias turned with them). The plan names each
 * module's algorithm and measures it on the layer it lands on, and the merged download holds the
 * tensors the CLI writes for the same folders, byte for byte. Each state is screenshotted.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { mergeFolders } from './helpers/cli.js';
import { announced, mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';

const session = useDemoSession();
const { dirs } = session;
const rand = seededRandom(907);

const HIDDEN = 16;
const LAYERS = ['model.layers.0.self_attn', 'model.layers.1.self_attn'];
/** A two-layer Llama's attention in bf16, q_proj with a bias (as Qwen2's has), and its embedding. */
function llamaBase(): FixtureTensor[] {
  return [
    randomTensor('model.embed_tokens.weight', [32, HIDDEN], 'BF16', rand),
    ...LAYERS.flatMap((l) => [
      randomTensor(`${l}.q_proj.weight`, [HIDDEN, HIDDEN], 'BF16', rand),
      randomTensor(`${l}.q_proj.bias`, [HIDDEN], 'BF16', rand),
      randomTensor(`${l}.v_proj.weight`, [8, HIDDEN], 'BF16', rand),
    ]),
  ];
}

const PEFT_FIELDS = { task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', revision: null, inference_mode: true, bias: 'none', modules_to_save: null };

/**
 * Drops the base and the folder, checks the plan's module table, merges, and compares every tensor
 * of the download with the CLI's merge of the same files. Returns the page for more checks.
 */
async function mergeAgainstCli(name: string, base: FixtureTensor[], folder: Record<string, Uint8Array | string>, algorithm: string, modules: number) {
  const baseFile = { 'model.safetensors': buildSafetensors(base) };
  const dir = dirs.make({ ...baseFile, ...Object.fromEntries(Object.entries(folder).map(([f, d]) => [`${name}/${f}`, d])) });
  const demo = await session.open();
  const { page } = demo;
  await upload(page, 'base-input', join(dir, 'model.safetensors'));
  await upload(page, 'adapter-input', join(dir, name, 'adapter_config.json'), join(dir, name, 'adapter_model.safetensors'));
  await planReady(page);
  expect(await announced(page, /Plan ready/)).not.toMatch(/error|warning/i);
  expect(await text(page, '[data-testid="adapter-facts"]')).toContain(`PEFT · ${algorithm} · ${modules} modules`);
  await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
  const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  expect(rows).toHaveLength(modules);
  for (const row of rows) expect(row[2]).toMatch(new RegExp(`^${algorithm.replace(/[()]/g, '\\$&')}`));
  // The chart: one group per layer, every bar a finite percentage.
  expect(await page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label'))).toMatch(/: 2 blocks, \d+ module kinds?, largest \d/);
  mkdirSync('/tmp/loramerge-shots', { recursive: true });
  await page.screenshot({ path: `/tmp/loramerge-shots/peft-${name}-plan.png`, fullPage: true });

  await mergeEnabled(page);
  await page.click('[data-testid="merge-button"]');
  const merged = readSafetensors(await downloadBytes(page));
  await page.screenshot({ path: `/tmp/loramerge-shots/peft-${name}-merged.png`, fullPage: true });

  const cli = await mergeFolders(dirs.make, baseFile, folder);
  expect(cli.lines, cli.run.stderr).toEqual([]);
  const want = readSafetensors(readFileSync(join(cli.out, 'model.safetensors')));
  expect([...merged.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [key, t] of want) {
    expect(merged.get(key)!.dtype, key).toBe(t.dtype);
    expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), key).toBe(true);
  }
  return { page, merged };
}

describe('the page with the newer PEFT methods', PAGE_RETRY, () => {
  it('RandLoRA (shared bases sized by the largest layer): planned, measured per layer and merged as the CLI merges it', async () => {
    const base = llamaBase();
    // q_proj 16 → 16 and v_proj 16 → 8 at r = 4: nb = ⌈min(in, out)/r⌉ = 4 and 2; the shared bases
    // hold the largest layer's (r, 1, 16) and (16, 4, r).
    const r = 4;
    const tensors: FixtureTensor[] = [randomTensor('base_model.randlora_A', [r, 1, HIDDEN], 'F32', rand, 0.5), randomTensor('base_model.randlora_B', [HIDDEN, 4, r], 'F32', rand, 0.5)];
    for (const l of LAYERS) {
      for (const [m, min] of [['q_proj', HIDDEN], ['v_proj', 8]] as const) {
        tensors.push(randomTensor(`base_model.model.${l}.${m}.randlora_lambda`, [r, min / r], 'F32', rand), randomTensor(`base_model.model.${l}.${m}.randlora_gamma`, [min / r, min], 'F32', rand, 0.2));
      }
    }
    const config = { ...PEFT_FIELDS, peft_type: 'RANDLORA', peft_version: '0.18.0', r, randlora_alpha: 8, target_modules: ['q_proj', 'v_proj'], projection_prng_key: 0, save_projection: true, sparse: false, very_sparse: false, randlora_dropout: 0, fan_in_fan_out: false };
    const { merged } = await mergeAgainstCli('randlora', base, peftFolder(config, tensors), 'RandLoRA (PEFT)', 4);
    // Every adapted weight changed; the biases and the embedding did not.
    const input = readSafetensors(buildSafetensors(base));
    for (const [key, t] of input) expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), key).toBe(!key.endsWith('proj.weight'));
  });

  it('RoAd (road_1 in groups of 8, a map of W): planned without a rank, merged with the bias turned as the CLI does', async () => {
    const base = llamaBase();
    const tensors = LAYERS.flatMap((l) => [
      randomTensor(`base_model.model.${l}.q_proj.road_theta`, [HIDDEN / 2], 'F32', rand, 3),
      // Scales near 1, as trained ones are (PEFT starts them at 1).
      { ...randomTensor(`base_model.model.${l}.q_proj.road_alpha`, [HIDDEN / 2], 'F32', rand), data: Float64Array.from({ length: HIDDEN / 2 }, (_, i) => 1 + (i % 3) / 8) },
    ]);
    const config = { ...PEFT_FIELDS, peft_type: 'ROAD', peft_version: '0.18.0', variant: 'road_1', group_size: 8, init_weights: true, target_modules: ['q_proj'] };
    const { page, merged } = await mergeAgainstCli('road', base, peftFolder(config, tensors), 'RoAd (PEFT)', 2);
    // RoAd has no rank: the facts do not make one up. Each q_proj's bias turns with its weight.
    expect(await text(page, '[data-testid="adapter-facts"]')).toBe('PEFT · RoAd (PEFT) · 2 modules · α = 1 · α/r = 1');
    expect(await text(page, '#plan-stats')).toMatch(/2modules matched4base tensors changed/);
    const input = readSafetensors(buildSafetensors(base));
    for (const [key, t] of input) expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), key).toBe(!key.includes('q_proj'));
  });
});
