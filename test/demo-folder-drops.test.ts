/**
 * Whole folders dropped on the page as a file manager drops them: Chromium's own drag and drop
 * with paths on disk (CDP Input.dispatchDragEvent), so each folder reaches the page as a
 * FileSystemDirectoryEntry and the page walks it (webkitGetAsEntry, readEntries), never a
 * DataTransfer of Files built in the page. A sharded Llama folder with a PEFT adapter folder, an
 * mlx-lm adapter folder with a trainer checkpoint, a diffusers pipeline folder (components in
 * sub-folders) with a diffusers-named LoRA, dot-files and a `.git/` left out; an empty folder, and
 * one past the input limits, refused in one line. Downloads are checked against float64 truth written here.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { MAX_INPUT_DEPTH, MAX_INPUT_FILES } from '../src/limits.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { announced, count, dropPaths, mergeEnabled, planReady, text, texts, useDemoSession } from './helpers/demo-session.js';
import { FLUX, fluxDiffusersTensors, loraTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor } from './helpers/hf-folder.js';
import { expectMergedFile, expectValues, type TruthTerm } from './helpers/merge-truth.js';
import { linearTruth, mlxFolder } from './helpers/mlx-lm-folder.js';
import { readStoredZip } from './helpers/stored-zip.js';

const session = useDemoSession();
const rand = seededRandom(9021);
const json = (o: object) => JSON.stringify(o, null, 2);
const under = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([f, d]) => [`${folder}/${f}`, d]));

// A Llama checkpoint in bf16, sizes scaled down: hidden 8, MLP 20, 4 key/value features.
const HIDDEN = 8, MLP = 20, KV = 4;
const LLAMA = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', hidden_size: HIDDEN, intermediate_size: MLP, num_hidden_layers: 2, vocab_size: 16, tie_word_embeddings: false };
const LLAMA_TENSORS: FixtureTensor[] = [
  randomTensor('model.embed_tokens.weight', [16, HIDDEN], 'BF16', rand),
  ...[0, 1].flatMap((i) => [
    randomTensor(`model.layers.${i}.self_attn.q_proj.weight`, [HIDDEN, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${i}.self_attn.v_proj.weight`, [KV, HIDDEN], 'BF16', rand),
    randomTensor(`model.layers.${i}.mlp.down_proj.weight`, [HIDDEN, MLP], 'BF16', rand),
    randomTensor(`model.layers.${i}.input_layernorm.weight`, [HIDDEN], 'BF16', rand),
  ]),
  randomTensor('model.norm.weight', [HIDDEN], 'BF16', rand),
  randomTensor('lm_head.weight', [16, HIDDEN], 'BF16', rand),
];
const LLAMA_VALUES = decoded(LLAMA_TENSORS);

/** Opens the page on the CPU backend (the merges here are small). */
async function open(): Promise<Page> {
  return (await session.open('?backend=cpu')).page;
}

/** The base summary's heading and the files it lists. */
async function baseSummary(page: Page): Promise<{ heading: string; files: string[] }> {
  await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="base-summary"]')!.hidden, { timeout: 30_000 });
  return { heading: await text(page, '[data-testid="base-summary"] > div'), files: await texts(page, '[data-testid="base-summary"] li') };
}

/** Merges, packs the folder model into its zip and returns the zip's files. */
async function mergeToZip(page: Page): Promise<Map<string, Uint8Array>> {
  await mergeEnabled(page);
  await page.click('[data-testid="merge-button"]');
  await downloadBytes(page);
  await page.click('[data-testid="zip-button"]');
  return readStoredZip(await downloadBytes(page, 'download-zip'));
}

describe('folders dropped on the page', PAGE_RETRY, () => {
  it('a sharded Llama folder on the base zone and a PEFT folder on the adapter zone: both walked as directories, dot-files and .git/ left out, merged as W + α/r·B·A', async () => {
    const rank = 2, alpha = 4;
    const targets = LLAMA_TENSORS.filter((t) => /q_proj|down_proj/.test(t.name));
    const factors = targets.flatMap((t) => {
      const module = `base_model.model.${t.name.replace(/\.weight$/, '')}`;
      const [out, inF] = t.shape;
      return [randomTensor(`${module}.lora_A.weight`, [rank, inF], 'F32', rand, 0.3), randomTensor(`${module}.lora_B.weight`, [out, rank], 'F32', rand, 0.3)];
    });
    const adapter = peftFolder({ r: rank, lora_alpha: alpha, target_modules: ['q_proj', 'down_proj'], base_model_name_or_path: 'meta-llama/Llama-3.2-1B', task_type: 'CAUSAL_LM' }, factors, { 'README.md': '---\nlibrary_name: peft\n---\n' });
    const base = hfModelFolder(LLAMA_TENSORS, LLAMA, { shards: 2, extra: { 'tokenizer_config.json': json({ model_max_length: 2048 }) } });
    const dir = session.dirs.make({
      ...under('llama-sharded', { ...base, '.DS_Store': new Uint8Array([0, 0, 0, 1, 66, 117, 100, 49]) }),
      // An adapter cloned from the Hub: its .git/ (objects in sub-folders) beside the two files.
      ...under('llama-lora', { ...adapter, '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n', '.git/HEAD': 'ref: refs/heads/main\n', '.git/objects/4b/825dc642cb6eb9a060e54bf8d69288fbee4904': 'x' }),
    });
    const page = await open();
    expect(await dropPaths(page, 'base-drop', join(dir, 'llama-sharded'))).toEqual(['directory']);
    const summary = await baseSummary(page);
    expect(summary.heading).toMatch(/^llama-sharded · 6 files, /);
    expect(summary.files).toEqual(['config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer_config.json']);
    expect(await dropPaths(page, 'adapter-drop', join(dir, 'llama-lora'))).toEqual(['directory']);
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 4 modules matched.');
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(['llama-lora']);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['PEFT · LoRA · 4 modules · r = 2 · α = 4 · α/r = 2']);
    const fates = await texts(page, '[data-testid="plan-files"] li');
    // The shards split the tensors in order: embed and layer 0 (q, v, down, norm) and layer 1's q in
    // the first (q, down and q adapted), the rest in the second (layer 1's down adapted).
    expect(fates).toEqual([
      'model-00001-of-00002.safetensors: merged: 3 of 6 tensors change',
      'model-00002-of-00002.safetensors: merged: 1 of 5 tensors change',
      '3 other files (configs, tokenizer, scheduler…) copied unchanged: config.json, generation_config.json, tokenizer_config.json',
    ]);

    const zip = await mergeToZip(page);
    const written = Object.keys(base).map((f) => `llama-sharded-merged/${f}`);
    expect([...zip.keys()].sort()).toEqual(written.sort());
    const merged = new Map<string, DecodedTensor>();
    for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      for (const [name, t] of readSafetensors(zip.get(`llama-sharded-merged/${shard}`)!)) merged.set(name, t);
    }
    const a = decoded(factors);
    const terms: TruthTerm[] = targets.map((t) => {
      const module = `base_model.model.${t.name.replace(/\.weight$/, '')}`;
      return { baseKey: t.name, a: a.get(`${module}.lora_A.weight`)!, b: a.get(`${module}.lora_B.weight`)!, scale: alpha / rank };
    });
    expectMergedFile(LLAMA_VALUES, merged, terms);
  }, 180_000);

  it('an mlx-lm adapter folder with a trainer checkpoint: one adapter named by its folder, merged as LoRALinear.fuse adds adapters.safetensors', async () => {
    const modules: [string, number, number][] = [['model.layers.0.self_attn.q_proj', HIDDEN, HIDDEN], ['model.layers.1.self_attn.v_proj', HIDDEN, KV]];
    // lora_a (in, r) and lora_b (r, out), float32, as LoRALinear trains them; the checkpoint holds other values.
    const factors = modules.flatMap(([path, inF, outF]) => [randomTensor(`${path}.lora_a`, [inF, 2], 'F32', rand, 0.5), randomTensor(`${path}.lora_b`, [2, outF], 'F32', rand, 0.5)]);
    const checkpoint = modules.flatMap(([path, inF, outF]) => [randomTensor(`${path}.lora_a`, [inF, 2], 'F32', rand), randomTensor(`${path}.lora_b`, [2, outF], 'F32', rand)]);
    const adapter = mlxFolder({ num_layers: 2, lora_parameters: { rank: 2, dropout: 0, scale: 20, keys: ['self_attn.q_proj', 'self_attn.v_proj'] } },
      factors, { '0000100_adapters.safetensors': buildSafetensors(checkpoint, { format: 'mlx' }) });
    const base = hfModelFolder(LLAMA_TENSORS, LLAMA);
    const dir = session.dirs.make({ ...under('llama', base), ...under('adapters', { ...adapter, '.DS_Store': 'Bud1' }) });
    const page = await open();
    expect(await dropPaths(page, 'base-drop', join(dir, 'llama'))).toEqual(['directory']);
    expect((await baseSummary(page)).files).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    expect(await dropPaths(page, 'adapter-drop', join(dir, 'adapters'))).toEqual(['directory']);
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 2 modules matched.');
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(['adapters']);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['mlx-lm · LoRA (mlx-lm) · 2 modules · r = 2 · scale = lora_parameters.scale = 20']);
    await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
    const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((r) => [...r.children].map((td) => td.textContent ?? '')));
    expect(rows.map((r) => r.slice(0, 4))).toEqual(modules.map(([path]) => ['adapters', path, `${path}.weight`, 'LoRA (mlx-lm), r = 2']));

    const zip = await mergeToZip(page);
    expect([...zip.keys()].sort()).toEqual(Object.keys(base).map((f) => `llama-merged/${f}`).sort());
    const merged = readSafetensors(zip.get('llama-merged/model.safetensors')!);
    const f = decoded(factors);
    for (const [path] of modules) {
      const key = `${path}.weight`;
      expectValues(key, merged.get(key)!, linearTruth(LLAMA_VALUES.get(key)!, f.get(`${path}.lora_a`)!, f.get(`${path}.lora_b`)!, 20));
    }
    for (const [key, w] of LLAMA_VALUES) if (!modules.some(([path]) => key === `${path}.weight`)) expect(merged.get(key)!.bytes, key).toEqual(w.bytes);
  }, 180_000);

  it('a diffusers pipeline folder (components in sub-folders, a .git/ and dot-files inside) and a diffusers-named LoRA file dropped on the adapter zone: the transformer merged, the rest mirrored', async () => {
    const { h } = FLUX;
    const transformer = fluxDiffusersTensors(rand, 'BF16');
    const pipeline: Record<string, string | Uint8Array> = {
      'model_index.json': json({ _class_name: 'FluxPipeline', _diffusers_version: '0.32.0', transformer: ['diffusers', 'FluxTransformer2DModel'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'] }),
      'transformer/config.json': json({ _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.32.0', num_layers: 2, num_single_layers: 2, attention_head_dim: h / 2, num_attention_heads: 2 }),
      'transformer/diffusion_pytorch_model.safetensors': buildSafetensors(transformer),
      'scheduler/scheduler_config.json': json({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 3.0 }),
    };
    // diffusers' save_lora_weights names (transformer.<module>.lora_A/B) with its LoraConfig in
    // lora_adapter_metadata, each field prefixed by the component (r 4, α 8: scale 2).
    const spec = (module: string, r: number): LoraSpec => ({ down: `transformer.${module}.lora_A.weight`, up: `transformer.${module}.lora_B.weight`, r, out: h, in: h, lands: [{ key: `${module}.weight` }], scale: 8 / 4 });
    const specs = [spec('transformer_blocks.0.attn.to_q', 4), spec('single_transformer_blocks.1.attn.to_v', 4)];
    const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'), { lora_adapter_metadata: json({ 'transformer.r': 4, 'transformer.lora_alpha': 8, 'transformer.target_modules': ['to_q', 'to_v'] }) });
    const dir = session.dirs.make({
      ...under('flux-dev', { ...pipeline, '.DS_Store': 'Bud1', 'transformer/.DS_Store': 'Bud1', '.git/refs/heads/main': '0'.repeat(40), '.cache/huggingface/download/transformer.lock': '' }),
      'pytorch_lora_weights.safetensors': lora,
    });
    const page = await open();
    expect(await dropPaths(page, 'base-drop', join(dir, 'flux-dev'))).toEqual(['directory']);
    const summary = await baseSummary(page);
    expect(summary.heading).toMatch(/^flux-dev · 4 files, /);
    expect(summary.files).toEqual(['model_index.json', 'scheduler/scheduler_config.json', 'transformer/config.json', 'transformer/diffusion_pytorch_model.safetensors']);
    expect(await dropPaths(page, 'adapter-drop', join(dir, 'pytorch_lora_weights.safetensors'))).toEqual(['file']);
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe('Plan ready: 2 modules matched.');
    expect(await texts(page, '[data-testid="adapter"] .adapter-name')).toEqual(['pytorch_lora_weights.safetensors']);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toEqual(['diffusers · LoRA · 2 modules · r = 4 · α = 8 · α/r = 2']);
    // The walk reached transformer/ and scheduler/: the plan writes what sits in them.
    expect(await texts(page, '[data-testid="plan-files"] li')).toEqual([
      `transformer/diffusion_pytorch_model.safetensors: merged: 2 of ${transformer.length} tensors change`,
      '3 other files (configs, tokenizer, scheduler…) copied unchanged: model_index.json, scheduler/scheduler_config.json, transformer/config.json',
    ]);

    const zip = await mergeToZip(page);
    expect([...zip.keys()].sort()).toEqual(Object.keys(pipeline).map((p) => `flux-dev-merged/${p}`).sort());
    for (const path of ['model_index.json', 'transformer/config.json', 'scheduler/scheduler_config.json']) {
      expect(new TextDecoder().decode(zip.get(`flux-dev-merged/${path}`)!), path).toBe(pipeline[path]);
    }
    const adapter = decodeSafetensors(lora).tensors;
    expectMergedFile(decodeSafetensors(pipeline['transformer/diffusion_pytorch_model.safetensors'] as Uint8Array).tensors,
      readSafetensors(zip.get('flux-dev-merged/transformer/diffusion_pytorch_model.safetensors')!),
      specs.map((s) => ({ baseKey: s.lands[0].key, a: adapter.get(s.down)!, b: adapter.get(s.up)!, scale: s.scale })));
  }, 180_000);

  it('an empty folder dropped on either zone is refused in one line naming it', async () => {
    // Empty but for a .DS_Store, as Finder leaves one; `lora` holds what a folder must hold.
    const dir = session.dirs.make({ 'empty/.DS_Store': 'Bud1', ...under('lora', peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [1, HIDDEN], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [HIDDEN, 1], 'F32', rand),
    ])) });
    const refusal = 'could not read what was dropped: empty: the folder holds no files (dot-files such as .DS_Store are not read); drop the folder that holds the model or adapter';
    const page = await open();
    const refused = async (zone: string) => {
      expect(await dropPaths(page, zone, join(dir, 'empty'))).toEqual(['directory']);
      await page.waitForFunction(() => !document.getElementById('page-error')!.hidden, { timeout: 30_000 });
      expect(await text(page, '[data-testid="page-error"]')).toBe(refusal);
      await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent, { timeout: 30_000 });
      expect(await text(page, '[data-testid="alert"]')).toBe(refusal);
    };
    await refused('base-drop');
    // Taken as nothing: no base of 0 files.
    expect(await page.$eval('[data-testid="base-summary"]', (e) => (e as HTMLElement).hidden)).toBe(true);
    // A folder with files dropped next clears the refusal and is the base.
    expect(await dropPaths(page, 'base-drop', join(dir, 'lora'))).toEqual(['directory']);
    await page.waitForFunction(() => document.getElementById('page-error')!.hidden, { timeout: 30_000 });
    expect((await baseSummary(page)).heading).toMatch(/^lora · 2 files, /);
    await refused('adapter-drop');
    expect(await count(page, '[data-testid="adapter"]')).toBe(0);
  }, 120_000);

  it('a dropped folder past MAX_INPUT_FILES or MAX_INPUT_DEPTH is refused in one line, as a picked one is', async () => {
    const dir = session.dirs.make();
    mkdirSync(join(dir, 'home'));
    for (let i = 0; i <= MAX_INPUT_FILES; i++) writeFileSync(join(dir, 'home', `f${i}.txt`), '');
    const deep = join(dir, 'nest', ...Array.from({ length: MAX_INPUT_DEPTH + 4 }, (_, i) => `d${i}`));
    mkdirSync(deep, { recursive: true });
    writeFileSync(join(deep, 'model.safetensors'), buildSafetensors(LLAMA_TENSORS.slice(0, 1)));
    for (const [folder, message] of [
      ['home', `home: more than ${MAX_INPUT_FILES} files (the limit MAX_INPUT_FILES); pick or drop the model's own folder`],
      ['nest', `nest: folders nest deeper than ${MAX_INPUT_DEPTH} levels (the limit MAX_INPUT_DEPTH); pick or drop the model's own folder`],
    ]) {
      const page = await open();
      expect(await dropPaths(page, 'base-drop', join(dir, folder))).toEqual(['directory']);
      await page.waitForFunction(() => !document.getElementById('page-error')!.hidden, { timeout: 90_000 });
      expect(await text(page, '[data-testid="page-error"]')).toBe(`could not read what was dropped: ${message}`);
      expect(await page.$eval('[data-testid="base-summary"]', (e) => (e as HTMLElement).hidden)).toBe(true);
    }
  }, 240_000);
});
