/**
 * The page's convert mode on the other models a llama.cpp LoRA is written for (the one-file GGUF is
 * demo-convert-gguf's): a GGUF split in parts as gguf-split writes them, both parts picked together,
 * and a Hugging Face safetensors folder (config.json, two shards and their index) picked as a folder.
 * Picked by keyboard; the page's download is the library's convertLora of the same files, byte for
 * byte (the folder's tensors named as convert_hf_to_gguf names them); one part alone is refused on
 * pick, saying to pick all of them. axe finds nothing serious at 390 px in either theme.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { convertLora, memoryInputFileSet } from '../src/node.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, openChooser, seriousViolations, tabTo, text, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { randomTensor, hfModelFolder } from './helpers/hf-folder.js';
import { LLAMA, peftLlamaAdapter, splitF16Llama } from './helpers/gguf-models.js';
import { seededRandom } from './helpers/fixtures.js';

const session = useDemoSession();
const PARTS = ['tiny-llama-F16-00001-of-00002.gguf', 'tiny-llama-F16-00002-of-00002.gguf'];
const adapter = peftLlamaAdapter(47);
const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));

/** The llama of gguf-models as transformers saves it: config.json, two BF16 shards and model.safetensors.index.json. */
function hfLlama(): Record<string, string | Uint8Array> {
  const { hidden: h, heads, kvHeads, ffn, vocab } = LLAMA;
  const kv = (h / heads) * kvHeads;
  const rand = seededRandom(9);
  const shapes: [string, number[]][] = [
    ['model.embed_tokens.weight', [vocab, h]], ['model.layers.0.input_layernorm.weight', [h]],
    ['model.layers.0.self_attn.q_proj.weight', [h, h]], ['model.layers.0.self_attn.k_proj.weight', [kv, h]], ['model.layers.0.self_attn.v_proj.weight', [kv, h]],
    ['model.layers.0.self_attn.o_proj.weight', [h, h]], ['model.layers.0.post_attention_layernorm.weight', [h]],
    ['model.layers.0.mlp.gate_proj.weight', [ffn, h]], ['model.layers.0.mlp.up_proj.weight', [ffn, h]], ['model.layers.0.mlp.down_proj.weight', [h, ffn]],
    ['model.norm.weight', [h]], ['lm_head.weight', [vocab, h]],
  ];
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: h, num_attention_heads: heads, num_key_value_heads: kvHeads,
    num_hidden_layers: 1, intermediate_size: ffn, vocab_size: vocab, rms_norm_eps: 1e-5, torch_dtype: 'bfloat16',
  };
  return hfModelFolder(shapes.map(([name, shape]) => randomTensor(name, shape, 'BF16', rand, 0.02)), config, { shards: 2 });
}

const runEnabled = (page: Page) => page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });

/** Picks the adapter's folder and then the model by keyboard (`button`: the model's files or folder button), converts, and returns the download. */
async function convertOnPage(page: Page, dir: string, button: string, model: string[], modelName: string): Promise<Uint8Array> {
  await page.focus('body');
  await tabTo(page, '#job-adapter-folder-button');
  await (await openChooser(page, 'Enter')).accept([join(dir, 'llama-lora')]);
  await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
  await tabTo(page, button);
  await (await openChooser(page, 'Enter')).accept(model);
  expect(await announced(page, /^Model read|could not/)).toMatch(new RegExp(`^Model read: ${modelName.replaceAll('.', '\\.')}, `));
  await runEnabled(page);
  await tabTo(page, '[data-testid="job-run"]');
  await page.keyboard.press('Enter');
  const bytes = await downloadBytes(page, 'job-download-link');
  expect(await announced(page, /^Converted/)).toMatch(/^Converted 7 modules in /);
  return bytes;
}

describe('convert on the page: a split GGUF and a Hugging Face folder as the model', PAGE_RETRY, () => {
  it('a split GGUF, both parts picked together: the library’s bytes', async () => {
    const base = splitF16Llama();
    const dir = session.dirs.make({ ...base.files, ...within('llama-lora', adapter.files) });
    const out = join(dir, 'library.gguf');
    const library = await convertLora({ adapter: memoryInputFileSet(adapter.files, 'llama-lora'), base: join(dir, PARTS[0]), out });
    expect([library.format, library.modules.length]).toEqual(['gguf', 7]);

    const { page } = await session.open('?mode=convert');
    const bytes = await convertOnPage(page, dir, '#job-target-files-button', PARTS.map((p) => join(dir, p)), 'tiny-llama-F16');
    // Named as the model, not as its first part; both parts counted.
    expect(await text(page, '[data-testid="job-target-summary"] div')).toMatch(/^tiny-llama-F16 · 2 files, /);
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(out))).toBe(0);
  }, 120_000);

  it('only the first part of a split GGUF picked: refused on pick in one line, shown, announced, Convert off', async () => {
    const dir = session.dirs.make({ ...splitF16Llama().files, ...within('llama-lora', adapter.files) });
    const { page } = await session.open('?mode=convert');
    await upload(page, 'job-adapter-input', join(dir, 'llama-lora', 'adapter_config.json'), join(dir, 'llama-lora', 'adapter_model.safetensors'));
    await upload(page, 'job-target-input', join(dir, PARTS[0]));
    const line = `${PARTS[0]}: split GGUF of 2 parts but 1 picked: pick all 2 parts together`;
    const alert = await page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 });
    expect(await alert.jsonValue()).toBe(line);
    expect(await text(page, '[data-testid="job-target-facts"]')).toBe(line);
    expect(await text(page, '[data-testid="job-blocked"]')).toBe(`${PARTS[0]} could not be read: pick another.`);
    expect(await page.$eval('[data-testid="job-run"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
  }, 60_000);

  it('a Hugging Face folder (config.json, two shards) picked as a folder: the library’s bytes', async () => {
    const dir = session.dirs.make({ ...within('hf-llama', hfLlama()), ...within('llama-lora', adapter.files) });
    const out = join(dir, 'library.gguf');
    const library = await convertLora({ adapter: memoryInputFileSet(adapter.files, 'llama-lora'), base: join(dir, 'hf-llama'), out });
    expect([library.format, library.modules.length]).toEqual(['gguf', 7]);

    const { page } = await session.open('?mode=convert');
    const bytes = await convertOnPage(page, dir, '#job-target-folder-button', [join(dir, 'hf-llama')], 'hf-llama');
    expect(Buffer.compare(Buffer.from(bytes), readFileSync(out))).toBe(0);
    mkdirSync('test-output', { recursive: true });
    await page.setViewport({ width: 390, height: 900 });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(page), scheme).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBeLessThanOrEqual(0);
      await (await page.$('#job-section'))!.screenshot({ path: `test-output/demo-convert-hf-folder-390px-${scheme}.png` });
    }
  }, 120_000);
});
