/**
 * "Save to: a file or folder I choose", with the browser's pickers answered by handles into the
 * page's own private storage (OPFS) as a person's choice would: a one-file model streams into the
 * file the save picker returns, suggested as `<base>-merged.safetensors`; a sharded model goes
 * into a new `<base>-merged` folder inside the picked one, and when that name is taken, into
 * `<base>-merged-2` with the existing folder's file left as it was. Merged values are checked
 * against float64 truth computed here.
 */
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import type { DemoPage } from './helpers/browser.js';
import { mergeEnabled, planReady, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { decoded, hfModelFolder, peftFolder, randomTensor, readMergedFolder } from './helpers/hf-folder.js';
import { PAGE_RETRY } from './helpers/browser.js';

const session = useDemoSession();
const { dirs } = session;
let demo: DemoPage;

/** Pickers that answer with folders of OPFS (`picked/`), recording what the page suggested. */
async function stubPickers(page: Page): Promise<void> {
  await page.evaluateOnNewDocument(() => {
    const picked = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
    const calls: unknown[] = [];
    Object.assign(window, {
      pickerCalls: calls,
      showSaveFilePicker: async (options: { suggestedName: string }) => {
        calls.push({ picker: 'file', suggestedName: options.suggestedName });
        return (await picked()).getFileHandle(options.suggestedName, { create: true });
      },
      showDirectoryPicker: async (options: { mode?: string }) => {
        calls.push({ picker: 'folder', mode: options.mode });
        return picked();
      },
    });
  });
}

/** Empties OPFS `picked/` (the page's storage outlives a test). */
async function clearPicked(page: Page): Promise<void> {
  await page.evaluate(async () => (await navigator.storage.getDirectory()).removeEntry('picked', { recursive: true }).catch(() => undefined));
}

/** Every file under OPFS `picked/`, path → bytes. */
async function pickedFiles(page: Page): Promise<Map<string, Uint8Array>> {
  const listed = await page.evaluate(async () => {
    const out: [string, string][] = [];
    const walk = async (dir: FileSystemDirectoryHandle, prefix: string) => {
      for await (const [name, handle] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        if (handle.kind === 'directory') await walk(handle as FileSystemDirectoryHandle, `${prefix}${name}/`);
        else {
          const bytes = new Uint8Array(await (await (handle as FileSystemFileHandle).getFile()).arrayBuffer());
          let s = '';
          for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          out.push([`${prefix}${name}`, btoa(s)]);
        }
      }
    };
    await walk(await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true }), '');
    return out;
  });
  return new Map(listed.map(([path, b64]) => [path, new Uint8Array(Buffer.from(b64, 'base64'))]));
}

/** A llama with F32 weights and a PEFT LoRA (r = 2, α = 4) on q_proj of both layers. */
function llamaAndLora(seed: number) {
  const rand = seededRandom(seed);
  const hidden = 16;
  const base: FixtureTensor[] = [
    randomTensor('model.embed_tokens.weight', [32, hidden], 'F32', rand),
    randomTensor('model.layers.0.self_attn.q_proj.weight', [hidden, hidden], 'F32', rand),
    randomTensor('model.layers.1.self_attn.q_proj.weight', [hidden, hidden], 'F32', rand),
    randomTensor('model.norm.weight', [hidden], 'F32', rand),
  ];
  const lora = [0, 1].flatMap((l) => [
    randomTensor(`base_model.model.model.layers.${l}.self_attn.q_proj.lora_A.weight`, [2, hidden], 'F32', rand, 0.5),
    randomTensor(`base_model.model.model.layers.${l}.self_attn.q_proj.lora_B.weight`, [hidden, 2], 'F32', rand, 0.5),
  ]);
  return { base, lora, adapter: peftFolder({ r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, lora) };
}

/** Every tensor of `merged` against W + 2·B·A in float64 (f32 output: within 1e-5 of the values' size). */
function expectMerged(merged: Map<string, { values: ArrayLike<number>; shape: number[] }>, base: FixtureTensor[], lora: FixtureTensor[]): void {
  const w = decoded(base);
  const f = decoded(lora);
  expect([...merged.keys()].sort()).toEqual([...w.keys()].sort());
  for (const [name, t] of w) {
    const got = merged.get(name)!;
    expect(got.shape, name).toEqual(t.shape);
    const module = `base_model.model.${name.replace(/\.weight$/, '')}`;
    const a = f.get(`${module}.lora_A.weight`);
    const b = f.get(`${module}.lora_B.weight`);
    for (let i = 0; i < t.values.length; i++) {
      let want = t.values[i];
      if (a && b) {
        const cols = t.shape[1];
        const r = Math.floor(i / cols), c = i % cols;
        for (let k = 0; k < 2; k++) want += 2 * b.values[r * 2 + k] * a.values[k * cols + c];
      }
      const size = Math.max(Math.abs(want), Math.abs(t.values[i]));
      if (Math.abs(got.values[i] - want) > 1e-5 * size) expect.fail(`${name}[${i}]: got ${got.values[i]}, want ${want}`);
    }
  }
}

describe('saving through the pickers', PAGE_RETRY, () => {
  it('streams a one-file model into the file the save picker returns, suggested as <base>-merged.safetensors', async () => {
    const { base, lora, adapter } = llamaAndLora(71);
    const dir = dirs.make({ 'tiny-llama.safetensors': hfModelFolder(base, { model_type: 'llama' })['model.safetensors'], ...Object.fromEntries(Object.entries(adapter).map(([p, b]) => [`lora/${p}`, b])) });
    demo = await session.open();
    await stubPickers(demo.page);
    await demo.page.reload({ waitUntil: 'load' });
    await clearPicked(demo.page);
    const { page: p } = demo;
    await upload(p, 'base-input', join(dir, 'tiny-llama.safetensors'));
    await upload(p, 'adapter-input', ...Object.keys(adapter).map((f) => join(dir, 'lora', f)));
    await planReady(p);
    await p.select('[data-testid="destination"]', 'picked');
    await mergeEnabled(p);
    await p.click('[data-testid="merge-button"]');
    await p.waitForFunction(() => /^Merged\b.*\binto tiny-llama-merged\.safetensors /.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    expect(await p.evaluate(() => (window as unknown as { pickerCalls: unknown[] }).pickerCalls)).toEqual([{ picker: 'file', suggestedName: 'tiny-llama-merged.safetensors' }]);
    const files = await pickedFiles(p);
    expect([...files.keys()]).toEqual(['tiny-llama-merged.safetensors']);
    expectMerged(readMergedFolder(files).tensors, base, lora);
    // Nothing went to the browser's own storage: the result names where it was saved.
    expect(await p.$('[data-testid="download-link"]')).toBeNull();
    expect(await text(p, '#progress-text')).toContain('into tiny-llama-merged.safetensors');
  });

  it('a merge into the picked file cancelled midway leaves no file under the model\'s name (the save picker made it empty)', async () => {
    // One 4096 × 4096 f32 weight under a rank-256 LoRA, on the CPU: cancelled once the first slab is written.
    const rand = seededRandom(78);
    const noise = (n: number, scale: number) => Array.from({ length: n }, () => (rand() - 0.5) * scale);
    const n = 4096, r = 256;
    const dir = dirs.make({
      'big.safetensors': buildSafetensors([{ name: 'model.layers.0.mlp.down_proj.weight', dtype: 'F32', shape: [n, n], data: noise(n * n, 0.1) }]),
      'lora/adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r, target_modules: ['down_proj'] }),
      'lora/adapter_model.safetensors': buildSafetensors([
        { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight', dtype: 'F32', shape: [r, n], data: noise(r * n, 0.02) },
        { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight', dtype: 'F32', shape: [n, r], data: noise(n * r, 0.02) },
      ]),
    });
    demo = await session.open('?backend=cpu');
    await stubPickers(demo.page);
    await demo.page.reload({ waitUntil: 'load' });
    await clearPicked(demo.page);
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'big.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'lora/adapter_config.json'), join(dir, 'lora/adapter_model.safetensors'));
    await planReady(page);
    await page.select('[data-testid="destination"]', 'picked');
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => (document.querySelector<HTMLProgressElement>('[data-testid="progress"]')!.value ?? 0) > 0, { timeout: 90_000, polling: 20 });
    // The picker made the file, as a browser's does, before anything is written.
    const names = () => page.evaluate(async () => {
      const picked = await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
      const out: string[] = [];
      for await (const name of (picked as unknown as { keys(): AsyncIterable<string> }).keys()) out.push(name);
      return out.sort();
    });
    expect(await names()).toContain('big-merged.safetensors');
    await page.click('[data-testid="cancel-button"]');
    await page.waitForFunction(() => /cancelled/i.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    expect(await text(page, '#progress-text')).toBe('Cancelled. Nothing was written.');
    // Chromium's swap file goes with the aborted write; the picked file, still empty, with the clean-up.
    expect(await names()).toEqual([]);
  }, 180_000);

  it('writes a sharded model into a new <base>-merged folder in the picked one, never into one that exists', async () => {
    const { base, lora, adapter } = llamaAndLora(72);
    const model = hfModelFolder(base, { architectures: ['LlamaForCausalLM'], model_type: 'llama', tie_word_embeddings: false }, { shards: 2 });
    const dir = dirs.make({
      ...Object.fromEntries(Object.entries(model).map(([p, b]) => [`tiny-llama/${p}`, b])),
      ...Object.fromEntries(Object.entries(adapter).map(([p, b]) => [`lora/${p}`, b])),
    });
    demo = await session.open();
    await stubPickers(demo.page);
    await demo.page.reload({ waitUntil: 'load' });
    await clearPicked(demo.page);
    const { page } = demo;
    // The picked folder already holds a `model-merged` folder with a file of the same name as a shard.
    await page.evaluate(async () => {
      const picked = await (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
      const taken = await picked.getDirectoryHandle('model-merged', { create: true });
      const writable = await (await taken.getFileHandle('model-00001-of-00002.safetensors', { create: true })).createWritable();
      await writable.write('keep me');
      await writable.close();
    });
    await upload(page, 'base-input', ...Object.keys(model).map((f) => join(dir, 'tiny-llama', f)));
    await upload(page, 'adapter-input', ...Object.keys(adapter).map((f) => join(dir, 'lora', f)));
    await planReady(page);
    await page.select('[data-testid="destination"]', 'picked');
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => /^Merged\b.*\binto picked\/model-merged-2\/ /.test(document.getElementById('progress-text')!.textContent ?? ''), { timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { pickerCalls: unknown[] }).pickerCalls)).toEqual([{ picker: 'folder', mode: 'readwrite' }]);

    const files = await pickedFiles(page);
    expect(new TextDecoder().decode(files.get('model-merged/model-00001-of-00002.safetensors'))).toBe('keep me');
    expect([...files.keys()].filter((p) => p.startsWith('model-merged/'))).toEqual(['model-merged/model-00001-of-00002.safetensors']);
    const written = new Map([...files].filter(([p]) => p.startsWith('model-merged-2/')).map(([p, b]) => [p.slice('model-merged-2/'.length), b]));
    expect([...written.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    const merged = readMergedFolder(written);
    expect(merged.shardOf.size).toBe(base.length);
    expect(new Set(merged.shardOf.values()).size).toBe(2);
    expectMerged(merged.tensors, base, lora);
  });
});
