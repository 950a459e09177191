/**
 * The page with adapters of the newer PEFT methods, picked as their folders' two files
 * (adapter_config.json and adapter_model.safetensors) or as the folder: RandLoRA, an exact low-rank
 * product whose dims only the base says; RoAd, a rotation of W's output pairs (its bias turned with
 * them); VB-LoRA, GraLoRA, DeLoRA, C3A and MiSS's bat form. The plan names each module's algorithm
 * and its size w·‖ΔW‖ / ‖W‖ on the layer it lands on (one per method checked against float64
 * truth), the card is named by the folder or, for loose files, `PEFT adapter`, and the merged
 * download holds the tensors the CLI writes for the same folders, byte for byte. Also: a kohya LoRA
 * with a bundled textual-inversion embedding (the warning listed and announced, as the CLI prints
 * it), and a GGUF of an architecture mapped lately (MiniMax-M2) planned by its `blk.N` blocks and
 * merged as the CLI merges it; a map of W on a GGUF llama's q, whose rows llama.cpp stores permuted
 * for RoPE, refused in one line naming the method as users know it. Each state is screenshotted
 * (two of them 390 px wide as well).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { errorLines, mergeFolders, runCli } from './helpers/cli.js';
import { announced, mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, type MetaValue } from './helpers/gguf-builder.js';
import { LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';
import { mm } from './helpers/dense-f64.js';
import { batTruth, circulant, deloraDelta, graloraDelta, topkSoftmax, vbFactors } from './helpers/peft-delta-truth.js';
import { sdxlWithKohya } from './helpers/page-fixtures.js';

mkdirSync('test-output', { recursive: true }); // the screenshots this file writes

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
 * Picks the base and the folder's two files (or, with `pick: 'folder'`, the folder itself), checks
 * the adapter's card and the plan's module table (each module's algorithm and its size
 * w·‖ΔW‖ / ‖W‖), merges, and compares every tensor of the download with the CLI's merge of the same
 * files. Returns the page and the table's rows for more checks.
 */
async function mergeAgainstCli(name: string, base: FixtureTensor[], folder: Record<string, Uint8Array | string>, algorithm: string, modules: number,
  { pick = 'files', phone = false }: { pick?: 'files' | 'folder'; phone?: boolean } = {}) {
  const baseFile = { 'model.safetensors': buildSafetensors(base) };
  const dir = dirs.make({ ...baseFile, ...Object.fromEntries(Object.entries(folder).map(([f, d]) => [`${name}/${f}`, d])) });
  const demo = await session.open();
  const { page } = demo;
  await upload(page, 'base-input', join(dir, 'model.safetensors'));
  if (pick === 'folder') await upload(page, 'adapter-folder-input', join(dir, name));
  else await upload(page, 'adapter-input', join(dir, name, 'adapter_config.json'), join(dir, name, 'adapter_model.safetensors'));
  await planReady(page);
  expect(await announced(page, /Plan ready/)).not.toMatch(/error|warning/i);
  // A folder is named by the folder; its two files picked alone, for what they are (the browser
  // does not say which folder they came from, and adapter_model.safetensors tells no adapter apart).
  expect(await text(page, '[data-testid="adapter"] .adapter-name')).toBe(pick === 'folder' ? name : 'PEFT adapter');
  expect(await text(page, '[data-testid="adapter-facts"]')).toContain(`PEFT · ${algorithm} · ${modules} modules`);
  await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
  const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((r) => [...r.children].slice(1).map((td) => td.textContent ?? '')));
  expect(rows).toHaveLength(modules);
  for (const row of rows) {
    expect(row[2]).toMatch(new RegExp(`^${algorithm.replace(/[()]/g, '\\$&')}`));
    expect(row[5]).toMatch(/ %$/);
    expect(Number(row[5].slice(0, -2)), row[1]).toBeGreaterThan(0);
  }
  // The chart: one group per layer, every bar a finite percentage.
  expect(await page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label'))).toMatch(/: 2 blocks, \d+ module kinds?, largest \d/);
  await page.screenshot({ path: `test-output/demo-peft-${name}-plan.png`, fullPage: true });
  if (phone) {
    // The card, the table's size column and its rows 390 px wide: nothing wider than the screen.
    // (isMobile would reload the page and lose the picks.) The merge then runs at this width.
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: `test-output/demo-peft-${name}-plan-390.png`, fullPage: true });
    await (await page.$('#modules-details'))!.screenshot({ path: `test-output/demo-peft-${name}-modules-390.png` });
  }

  await mergeEnabled(page);
  await page.click('[data-testid="merge-button"]');
  const merged = readSafetensors(await downloadBytes(page));
  await page.screenshot({ path: `test-output/demo-peft-${name}-merged${phone ? '-390' : ''}.png`, fullPage: true });

  const cli = await mergeFolders(dirs.make, baseFile, folder);
  expect(cli.lines, cli.run.stderr).toEqual([]);
  const want = readSafetensors(readFileSync(join(cli.out, 'model.safetensors')));
  expect([...merged.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [key, t] of want) {
    expect(merged.get(key)!.dtype, key).toBe(t.dtype);
    expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), key).toBe(true);
  }
  return { page, merged, rows, cli };
}

/** ‖ΔW‖ / ‖W‖ in percent to the table's three digits: the size column of the module on `target`. */
function expectSize(rows: string[][], target: string, w: ArrayLike<number>, delta: ArrayLike<number>) {
  const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));
  expect(rows.find((row) => row[1] === target)?.[5], target).toBe(`${(100 * norm(delta) / norm(w)).toPrecision(3)} %`);
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
    const { merged, rows } = await mergeAgainstCli('randlora', base, peftFolder(config, tensors), 'RandLoRA (PEFT)', 4);
    // q_proj's bias is the base's, untouched: no row says it changes.
    for (const row of rows) expect(row[2], row[0]).not.toMatch(/bias/);
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
    const { page, merged, rows, cli } = await mergeAgainstCli('road', base, peftFolder(config, tensors), 'RoAd (PEFT)', 2, { phone: true });
    // RoAd has no rank: the facts do not make one up. Each q_proj's bias turns with its weight:
    // counted among the tensors changed, and said in its module's row.
    // Nor an α: RoAd has none (its road_alpha are the map's scales, read per output).
    expect(await text(page, '[data-testid="adapter-facts"]')).toBe('PEFT · RoAd (PEFT) · 2 modules');
    expect(cli.run.stderr).toContain('(peft, 2 modules, weight 1)');
    expect(await text(page, '#plan-stats')).toMatch(/2modules matched4base tensors changed/);
    expect(rows.map((row) => row[2])).toEqual(['RoAd (PEFT) + bias', 'RoAd (PEFT) + bias']);
    // The bars measure the change RoAd makes to W, which is no product of factors.
    expect(await text(page, '#chart-caption')).toMatch(/weight × ‖ΔW‖ \/ ‖W‖ in percent \(ΔW: .*W′ − W for one that maps the weight, such as OFT, HiRA or RoAd/);
    const input = readSafetensors(buildSafetensors(base));
    for (const [key, t] of input) expect(Buffer.from(merged.get(key)!.bytes).equals(Buffer.from(t.bytes)), key).toBe(!key.includes('q_proj'));
  });

  // q_proj 16 × 16 and v_proj 8 × 16 in bf16 in both layers; each method's size checked on layer 0's q_proj.
  const q0 = 'model.layers.0.self_attn.q_proj';
  const key = (l: string, m: string, name: string) => `base_model.model.${l}.${m}.${name}`;
  const outOf = (m: string) => (m === 'q_proj' ? HIDDEN : 8);
  const weightOf = (base: FixtureTensor[], module: string) => base.find((t) => t.name === `${module}.weight`)!.data as Float64Array;
  const valuesOf = (tensors: FixtureTensor[], name: string) => tensors.find((t) => t.name === name)!.data as Float64Array;

  it('VB-LoRA (shared vector bank, top-2 of 8 vectors of length 4), picked as a folder: named by it, sized and merged as the CLI merges it', async () => {
    const base = llamaBase();
    const r = 2, nv = 8, len = 4, topk = 2;
    const tensors: FixtureTensor[] = [randomTensor('base_model.vblora_vector_bank', [nv, len], 'F32', rand, 0.5)];
    for (const l of LAYERS) {
      for (const m of ['q_proj', 'v_proj']) {
        tensors.push(randomTensor(key(l, m, 'vblora_logits_A'), [r, HIDDEN / len, nv], 'F32', rand, 2), randomTensor(key(l, m, 'vblora_logits_B'), [outOf(m) / len, r, nv], 'F32', rand, 2));
      }
    }
    const config = { ...PEFT_FIELDS, peft_type: 'VBLORA', peft_version: '0.18.0', r, num_vectors: nv, vector_length: len, topk, target_modules: ['q_proj', 'v_proj'], save_only_topk_weights: false, vblora_dropout: 0, fan_in_fan_out: false, init_vector_bank_bound: 0.02, init_logits_std: 0.1 };
    const { rows } = await mergeAgainstCli('vblora', base, peftFolder(config, tensors), 'VB-LoRA (PEFT)', 4, { pick: 'folder', phone: true });
    const la = valuesOf(tensors, key(LAYERS[0], 'q_proj', 'vblora_logits_A')), lb = valuesOf(tensors, key(LAYERS[0], 'q_proj', 'vblora_logits_B'));
    const pick = (logits: Float64Array) => (row: number) => topkSoftmax(logits.subarray(row * nv, row * nv + nv), topk);
    const { a, b } = vbFactors(pick(la), pick(lb), valuesOf(tensors, 'base_model.vblora_vector_bank'), len, r, HIDDEN, HIDDEN);
    expectSize(rows, `${q0}.weight`, weightOf(base, q0), mm(b, a, HIDDEN, r, HIDDEN));
  });

  it('GraLoRA (k = 2 blocks at r = 4, scale alpha/r): sized and merged as the CLI merges it', async () => {
    const base = llamaBase();
    const k = 2, r = 4, alpha = 8;
    const tensors = LAYERS.flatMap((l) => ['q_proj', 'v_proj'].flatMap((m) => [
      randomTensor(key(l, m, 'gralora_A'), [k, HIDDEN / k, r], 'F32', rand, 0.2), randomTensor(key(l, m, 'gralora_B'), [k, r, outOf(m) / k], 'F32', rand, 0.2),
    ]));
    const config = { ...PEFT_FIELDS, peft_type: 'GRALORA', peft_version: '0.18.0', r, hybrid_r: 0, alpha, gralora_k: k, gralora_dropout: 0, target_modules: ['q_proj', 'v_proj'], fan_in_fan_out: false, init_weights: true };
    const { rows } = await mergeAgainstCli('gralora', base, peftFolder(config, tensors), 'GraLoRA (PEFT)', 4);
    const delta = graloraDelta(valuesOf(tensors, key(LAYERS[0], 'q_proj', 'gralora_A')), valuesOf(tensors, key(LAYERS[0], 'q_proj', 'gralora_B')), k, r, HIDDEN, HIDDEN);
    expectSize(rows, `${q0}.weight`, weightOf(base, q0), delta.map((x) => x * alpha / r));
  });

  it('DeLoRA (B·diag(λ/r/(‖A_k‖‖B^k‖))·A·diag(w_norm)): sized and merged as the CLI merges it', async () => {
    const base = llamaBase();
    const r = 4;
    const tensors = LAYERS.flatMap((l) => ['q_proj', 'v_proj'].flatMap((m) => [
      randomTensor(key(l, m, 'delora_A'), [r, HIDDEN], 'F32', rand), randomTensor(key(l, m, 'delora_B'), [outOf(m), r], 'F32', rand),
      { name: key(l, m, 'delora_lambda'), dtype: 'F32' as const, shape: [1], data: Float64Array.of(0.75) },
      // PEFT keeps each input column's norm of W, positive.
      { ...randomTensor(key(l, m, 'delora_w_norm'), [HIDDEN], 'F32', rand), data: Float64Array.from({ length: HIDDEN }, (_, i) => 0.5 + i / 16) },
    ]));
    const config = { ...PEFT_FIELDS, peft_type: 'DELORA', peft_version: '0.18.0', r, delora_lambda: 15, module_dropout: 0, target_modules: ['q_proj', 'v_proj'], init_weights: true, rank_pattern: {}, lambda_pattern: {} };
    const { rows } = await mergeAgainstCli('delora', base, peftFolder(config, tensors), 'DeLoRA (PEFT)', 4);
    const part = (name: string) => valuesOf(tensors, key(LAYERS[0], 'q_proj', name));
    expectSize(rows, `${q0}.weight`, weightOf(base, q0), deloraDelta(part('delora_A'), part('delora_B'), 0.75, part('delora_w_norm'), r, HIDDEN, HIDDEN));
  });

  it('C3A (block-circulant kernel, block_size 4, ΔW = C / in): sized and merged as the CLI merges it', async () => {
    const base = llamaBase();
    const b = 4;
    const tensors = LAYERS.flatMap((l) => ['q_proj', 'v_proj'].map((m) => randomTensor(key(l, m, 'c3a_kernel'), [outOf(m) / b, HIDDEN / b, b], 'F32', rand)));
    const config = { ...PEFT_FIELDS, peft_type: 'C3A', peft_version: '0.18.0', block_size: b, block_size_pattern: {}, target_modules: ['q_proj', 'v_proj'], init_weights: 'xavier_uniform' };
    const { page, rows, cli } = await mergeAgainstCli('c3a', base, peftFolder(config, tensors), 'C3A (PEFT)', 4);
    // A dense update: no rank to show, and no α: its scale is PEFT's 1/in, said as such, by the
    // card and by the CLI's plan alike.
    expect(await text(page, '[data-testid="adapter-facts"]')).toBe(`PEFT · C3A (PEFT) · 4 modules · scale = 1/in = ${1 / HIDDEN}`);
    expect(cli.run.stderr).toContain(`(peft, 4 modules, weight 1, scale = 1/in = ${1 / HIDDEN})`);
    const inspect = await runCli(['inspect', join(cli.out, '..', 'adapter')]);
    expect(inspect.stdout).toContain('modules (r, scale):');
    expect(inspect.stdout).toContain(`${q0}  r=${b} scale=${1 / HIDDEN} (1/in)`);
    const c = circulant(valuesOf(tensors, key(LAYERS[0], 'q_proj', 'c3a_kernel')), HIDDEN / b, HIDDEN / b, b);
    expectSize(rows, `${q0}.weight`, weightOf(base, q0), c.map((x) => x / HIDDEN));
  });

  it('MiSS bat (each r × r tile W_ij to W_ij + W_ij·B_i + B_i, r = 4): sized as the map of W it is and merged as the CLI merges it', async () => {
    const base = llamaBase();
    const r = 4;
    const tensors = LAYERS.flatMap((l) => ['q_proj', 'v_proj'].map((m) => randomTensor(key(l, m, 'miss_block'), [outOf(m) / r, r, r], 'F32', rand, 0.1)));
    const config = { ...PEFT_FIELDS, peft_type: 'MISS', peft_version: '0.17.1', r, mini_r: 1, miss_dropout: 0, init_weights: 'bat', target_modules: ['q_proj', 'v_proj'] };
    const { rows } = await mergeAgainstCli('miss-bat', base, peftFolder(config, tensors), 'MiSS (PEFT)', 4);
    const w = weightOf(base, q0);
    expectSize(rows, `${q0}.weight`, w, batTruth(w, valuesOf(tensors, key(LAYERS[0], 'q_proj', 'miss_block')), HIDDEN, HIDDEN, r).map((x, i) => x - w[i]));
  });

  it('lists and announces the warning for a kohya LoRA\'s bundled textual-inversion embedding, and merges the rest', async () => {
    const sdxl = sdxlWithKohya(61);
    const lora = decodeSafetensors(sdxl.files['sdxl-style.safetensors'] as Uint8Array).tensors;
    // SDXL's embedding as A1111 bundles it into the LoRA: one vector per text encoder per token.
    const pivotal = buildSafetensors([
      ...[...lora].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.values })),
      randomTensor('bundle_emb.sks_style.clip_l', [2, 12], 'F16', rand), randomTensor('bundle_emb.sks_style.clip_g', [2, 16], 'F16', rand),
    ]);
    const dir = dirs.make({ ...sdxl.files, 'pivotal.safetensors': pivotal });
    const demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'unet/diffusion_pytorch_model.safetensors'), join(dir, 'unet/config.json'));
    await upload(page, 'adapter-input', join(dir, 'pivotal.safetensors'));
    await planReady(page);
    const warning = /pivotal\.safetensors: bundled textual-inversion embedding "sks_style" \(bundle_emb\.\*\) left out: an embedding adds a prompt token and changes no weight/;
    expect(await announced(page, /Plan ready/)).toMatch(new RegExp(`1 warning: ${warning.source}`));
    const problems = await page.$$eval('[data-testid="plan-problems"] li', (els) => els.map((e) => e.textContent ?? ''));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^warning: ${warning.source}`));
    expect(await text(page, '#plan-problems-heading')).toBe('1 warning: the merge can run, but read it first');
    expect(await text(page, '#plan-stats')).toMatch(/^4modules matched4base tensors changed/);
    await page.screenshot({ path: 'test-output/demo-peft-bundle-emb-plan.png', fullPage: true });
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readSafetensors(await downloadBytes(page));
    expect([...merged.keys()].sort()).toEqual([...decodeSafetensors(sdxl.files['unet/diffusion_pytorch_model.safetensors'] as Uint8Array).tensors.keys()].sort());
  });

  it('plans a PEFT LoRA on a MiniMax-M2 GGUF by its blk.N blocks and merges it as the CLI does', async () => {
    const hidden = 32, heads = 4, kvHeads = 2, headDim = 8, ffn = 16, experts = 4, vocab = 16;
    const block = (n: number) => [
      { name: `blk.${n}.attn_norm.weight`, ne: [hidden], type: 'F32' },
      { name: `blk.${n}.attn_q.weight`, ne: [hidden, heads * headDim], type: 'BF16' },
      // MiniMax-M2's q and k norms span all heads.
      { name: `blk.${n}.attn_q_norm.weight`, ne: [heads * headDim], type: 'F32' },
      { name: `blk.${n}.attn_k.weight`, ne: [hidden, kvHeads * headDim], type: 'BF16' },
      { name: `blk.${n}.attn_k_norm.weight`, ne: [kvHeads * headDim], type: 'F32' },
      { name: `blk.${n}.attn_v.weight`, ne: [hidden, kvHeads * headDim], type: 'BF16' },
      { name: `blk.${n}.attn_output.weight`, ne: [heads * headDim, hidden], type: 'BF16' },
      { name: `blk.${n}.ffn_norm.weight`, ne: [hidden], type: 'F32' },
      { name: `blk.${n}.ffn_gate_inp.weight`, ne: [hidden, experts], type: 'F32' },
      { name: `blk.${n}.ffn_gate_exps.weight`, ne: [hidden, ffn, experts], type: 'BF16' },
      { name: `blk.${n}.ffn_up_exps.weight`, ne: [hidden, ffn, experts], type: 'BF16' },
      { name: `blk.${n}.ffn_down_exps.weight`, ne: [ffn, hidden, experts], type: 'BF16' },
    ];
    const specs = [{ name: 'token_embd.weight', ne: [hidden, vocab], type: 'BF16' }, ...block(0), ...block(1),
      { name: 'output_norm.weight', ne: [hidden], type: 'F32' }, { name: 'output.weight', ne: [hidden, vocab], type: 'BF16' }];
    const u32 = (value: number): MetaValue => ({ type: 'u32', value });
    const arch = 'minimax-m2';
    const gguf = buildGguf({
      tensors: randomTensors(specs, () => rand() - 0.5).tensors,
      metadata: [
        ['general.architecture', { type: 'string', value: arch }], ['general.name', { type: 'string', value: 'MiniMax M2.5 tiny' }],
        [`${arch}.block_count`, u32(2)], [`${arch}.context_length`, u32(4096)], [`${arch}.embedding_length`, u32(hidden)],
        [`${arch}.feed_forward_length`, u32(ffn)], [`${arch}.expert_feed_forward_length`, u32(ffn)],
        [`${arch}.attention.head_count`, u32(heads)], [`${arch}.attention.head_count_kv`, u32(kvHeads)],
        [`${arch}.attention.key_length`, u32(headDim)], [`${arch}.attention.value_length`, u32(headDim)],
        [`${arch}.expert_count`, u32(experts)], [`${arch}.expert_used_count`, u32(2)],
        [`${arch}.rope.freq_base`, { type: 'f32', value: 5e6 }], [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-6 }],
        ['general.file_type', u32(32)],
      ],
    });
    // o_proj of both layers and v_proj of layer 1: rows as they are in the GGUF (no q/k permutation).
    const r = 2;
    const targets: [string, number, number][] = [
      ['model.layers.0.self_attn.o_proj', hidden, heads * headDim], ['model.layers.1.self_attn.o_proj', hidden, heads * headDim], ['model.layers.1.self_attn.v_proj', kvHeads * headDim, hidden],
    ];
    const folder = peftFolder({ ...PEFT_FIELDS, base_model_name_or_path: 'MiniMaxAI/MiniMax-M2.5', peft_version: '0.18.0', r, lora_alpha: 4, target_modules: ['o_proj', 'v_proj'] },
      targets.flatMap(([m, out, inF]) => [
        randomTensor(`base_model.model.${m}.lora_A.weight`, [r, inF], 'F32', rand, 0.05), randomTensor(`base_model.model.${m}.lora_B.weight`, [out, r], 'F32', rand, 0.05),
      ]));
    const dir = dirs.make({ 'MiniMax-M2.5-tiny-BF16.gguf': gguf, ...Object.fromEntries(Object.entries(folder).map(([f, d]) => [`lora/${f}`, d])) });
    const demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'MiniMax-M2.5-tiny-BF16.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora/adapter_config.json'), join(dir, 'lora/adapter_model.safetensors'));
    await planReady(page);
    expect(await announced(page, /Plan ready/)).not.toMatch(/error|warning/i);
    await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
    const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((row) => [...row.children].slice(1).map((td) => td.textContent ?? '')));
    expect(rows.map((row) => [row[1], row[2]])).toEqual([
      ['blk.0.attn_output.weight', 'LoRA, r = 2'], ['blk.1.attn_v.weight', 'LoRA, r = 2'], ['blk.1.attn_output.weight', 'LoRA, r = 2'],
    ]);
    // Grouped by the GGUF's blocks: layer 0 and layer 1, the series attn_output and attn_v.
    expect(await page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label'))).toMatch(/: 2 blocks, 2 module kinds, largest \d/);
    await page.screenshot({ path: 'test-output/demo-peft-gguf-minimax-plan.png', fullPage: true });
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readGguf(await downloadBytes(page));

    const out = join(dir, 'cli.gguf');
    const cli = await runCli(['merge', '--base', join(dir, 'MiniMax-M2.5-tiny-BF16.gguf'), '--adapter', join(dir, 'lora'), '--out', out, '--backend', 'cpu']);
    expect(errorLines(cli.stderr), cli.stderr).toEqual([]);
    const want = readGguf(readFileSync(out));
    expect(merged.tensors.map((t) => [t.name, t.typeId])).toEqual(want.tensors.map((t) => [t.name, t.typeId]));
    const input = readGguf(gguf);
    for (const t of want.tensors) {
      const got = merged.tensors.find((x) => x.name === t.name)!.data;
      expect(Buffer.compare(got, t.data), t.name).toBe(0);
      expect(Buffer.compare(got, input.tensors.find((x) => x.name === t.name)!.data) !== 0, t.name).toBe(rows.some((row) => row[1] === t.name));
    }
  });

  it('refuses HiRA on a GGUF llama\'s permuted q rows: listed and announced as an error naming HiRA (PEFT), merge off', async () => {
    const base = q4kmLlama();
    const q = 'model.layers.0.self_attn.q_proj', h = LLAMA.hidden;
    const folder = peftFolder({ ...PEFT_FIELDS, peft_type: 'HIRA', peft_version: '0.18.0', r: 1, hira_dropout: 0, target_modules: ['q_proj'] }, [
      randomTensor(`base_model.model.${q}.hira_A`, [1, h], 'F32', rand), randomTensor(`base_model.model.${q}.hira_B`, [h, 1], 'F32', rand),
    ]);
    const dir = dirs.make({ ...base.files, ...Object.fromEntries(Object.entries(folder).map(([f, d]) => [`hira/${f}`, d])) });
    const demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'hira/adapter_config.json'), join(dir, 'hira/adapter_model.safetensors'));
    await planReady(page);
    // Headed by the adapter's name as its card shows it: its two files were picked.
    const refusal = /PEFT adapter: module "model\.layers\.0\.self_attn\.q_proj": HiRA \(PEFT\) on a module whose rows the base stores in another order \(blk\.0\.attn_q\.weight, its rows reordered\) is not supported/;
    await page.waitForFunction(() => /HiRA/.test(document.querySelector('[data-testid="alert"]')!.textContent ?? ''), { timeout: 30_000 });
    expect(await text(page, '[data-testid="alert"]')).toMatch(new RegExp(`^The plan has 1 error\\. First: ${refusal.source}$`));
    expect(await page.$$eval('[data-testid="plan-problems"] li', (els) => els.map((e) => e.textContent ?? ''))).toEqual([expect.stringMatching(new RegExp(`^error: ${refusal.source}$`))]);
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe('The plan has 1 error: fix it first.');
    // Nothing matched: neither a chart nor an empty table of modules.
    expect(await page.$eval('#modules-details', (d) => (d as HTMLElement).hidden)).toBe(true);
    await page.screenshot({ path: 'test-output/demo-peft-hira-gguf-refused.png', fullPage: true });
  });
});
