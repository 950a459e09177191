/**
 * The base read the moment it is picked, before any adapter: a file that is no model (a text file
 * named .safetensors, a cut-off download, a GGUF with another magic, a folder with no weights) is
 * refused at once in the library's one line, shown under the base and said aloud, merge off; a
 * model is summed up (container, tensors, type, size). A base picked while another is read wins:
 * nothing of the first reaches the page.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatBytes } from '../src/index.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, dropFiles, text, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';
import type { Page } from 'puppeteer';

const session = useDemoSession();
const fixture = llamaWithPeft(61);
const SHOTS = process.env.DEMO_SHOTS;

/** The base's line under its name once read (not the "Reading…" placeholder). */
const baseFacts = async (page: Page) => {
  await page.waitForFunction(() => {
    const facts = document.querySelector('[data-testid="base-facts"]');
    return facts && !/^Reading/.test(facts.textContent ?? '');
  }, { timeout: 30_000 });
  return {
    line: await text(page, '[data-testid="base-facts"]'),
    isError: await page.$eval('[data-testid="base-facts"]', (e) => e.classList.contains('error-text')),
  };
};
const alertText = (page: Page) => page.waitForFunction(() => document.querySelector('[data-testid="alert"]')!.textContent || undefined, { timeout: 30_000 }).then((h) => h.jsonValue());
const mergeDisabled = (page: Page) => page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled);

/** A GGUF header whose magic is not `GGUF` (a llamafile, a file of another tool), 64 bytes. */
function badMagicGguf(): Uint8Array {
  const bytes = new Uint8Array(64);
  bytes.set(new TextEncoder().encode('GGML'), 0);
  new DataView(bytes.buffer).setUint32(4, 3, true);
  return bytes;
}

describe('the base read as soon as it is picked', PAGE_RETRY, () => {
  it('a base that is no model is refused at once, under the base and aloud, with no adapter picked; merge stays off', async () => {
    const dir = session.dirs.make({
      'notes.safetensors': 'These are my notes about the model, saved with the wrong name.\n',
      'cut.safetensors': fixture.base.slice(0, 40),
      'llamafile.gguf': badMagicGguf(),
      'empty-model/config.json': '{"architectures": ["LlamaForCausalLM"]}',
      'empty-model/README.md': '# a model card\n',
    });
    const cases: [string, 'base-input' | 'base-folder-input', string, string][] = [
      ['a text file named .safetensors', 'base-input', 'notes.safetensors', 'notes.safetensors: not a safetensors file (it does not start with a header length and a JSON header): another kind of file, or a damaged one; check that this is the file you meant, or download it again'],
      ['a truncated safetensors', 'base-input', 'cut.safetensors', 'cut.safetensors: header claims 480 bytes but the file has only 32 after the length prefix (truncated download?): download the file again'],
      ['a GGUF with another magic', 'base-input', 'llamafile.gguf', 'llamafile.gguf: not a GGUF file (no "GGUF" magic)'],
      ['a folder with no weights', 'base-folder-input', 'empty-model', 'empty-model: no .safetensors weights found'],
    ];
    for (const [what, input, path, message] of cases) {
      const demo = await session.open('?backend=cpu');
      await upload(demo.page, input, join(dir, path));
      const facts = await baseFacts(demo.page);
      expect(facts, what).toEqual({ line: message, isError: true });
      expect(await alertText(demo.page), what).toBe(message);
      expect(await mergeDisabled(demo.page), what).toBe(true);
      if (SHOTS && input === 'base-input' && path === 'notes.safetensors') {
        await demo.page.setViewport({ width: 390, height: 900 });
        await demo.page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
        await (await demo.page.$('#base-section'))!.screenshot({ path: join(SHOTS, 'base-refused-390-dark.png') });
      }
      await demo.page.close();
    }
    // Dropped rather than picked: the same.
    const demo = await session.open('?backend=cpu');
    await dropFiles(demo.page, 'base-drop', { 'notes.safetensors': Array.from(new TextEncoder().encode('These are my notes about the model, saved with the wrong name.\n')) });
    const dropped = cases[0][3];
    expect(await baseFacts(demo.page)).toEqual({ line: dropped, isError: true });
    expect(await alertText(demo.page)).toBe(dropped);
    expect(await mergeDisabled(demo.page)).toBe(true);
  }, 240_000);

  it('a model is summed up under its name (container, tensors, type, size) and said aloud, before any adapter', async () => {
    const dir = session.dirs.make({ 'llama.safetensors': fixture.base });
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-input', join(dir, 'llama.safetensors'));
    // Five F16 tensors: q_proj 16×16 and down_proj 16×40 in two layers, embed_tokens 50×16.
    const bytes = 2 * (2 * 16 * 16 + 2 * 16 * 40 + 50 * 16);
    const line = `safetensors · 5 tensors · F16 · ${formatBytes(bytes)} of weights`;
    expect(await baseFacts(demo.page)).toEqual({ line, isError: false });
    expect(await announced(demo.page, /^Base read/)).toBe(`Base read: llama.safetensors, ${line.replaceAll(' · ', ', ')}. Add an adapter to see the plan.`);
    expect(await mergeDisabled(demo.page)).toBe(true);
    if (SHOTS) await (await demo.page.$('#base-section'))!.screenshot({ path: join(SHOTS, 'base-read-1280-light.png') });
  }, 120_000);

  it('a base picked while another is read replaces it: no message of the first reaches the page', async () => {
    // The first base is a folder of many shards (seconds of headers), the second a plain model.
    const shards: Record<string, Uint8Array | string> = {};
    const weightMap: Record<string, string> = {};
    const count = 400;
    for (let i = 0; i < count; i++) {
      const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
      const name = `model.layers.${i}.mlp.down_proj.weight`;
      shards[`big/${file}`] = buildSafetensors([{ name, dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }]);
      weightMap[name] = file;
    }
    // …and broken: its last shard is cut short, so its reading ends in a refusal.
    const last = Object.keys(shards).at(-1)!;
    shards[last] = (shards[last] as Uint8Array).slice(0, 20);
    shards['big/model.safetensors.index.json'] = JSON.stringify({ metadata: {}, weight_map: weightMap });
    const dir = session.dirs.make({ ...shards, 'llama.safetensors': fixture.base });
    const demo = await session.open('?backend=cpu');
    await upload(demo.page, 'base-folder-input', join(dir, 'big'));
    await upload(demo.page, 'base-input', join(dir, 'llama.safetensors'));
    const facts = await baseFacts(demo.page);
    expect(facts.isError).toBe(false);
    expect(facts.line).toMatch(/^safetensors · 5 tensors · F16 · /);
    await announced(demo.page, /^Base read: llama\.safetensors/);
    // Long enough for the first base's reading to have ended, had it gone on.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await text(demo.page, '[data-testid="alert"]')).toBe('');
    expect(await baseFacts(demo.page)).toEqual(facts);
    expect(await text(demo.page, '[data-testid="base-summary"] b')).toBe('llama.safetensors');
  }, 120_000);
});
