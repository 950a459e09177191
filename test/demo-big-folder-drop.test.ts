/**
 * A folder of thousands of files dropped on the page (a model folder with a dataset or a cache
 * beside the weights): the page stays responsive while it takes it, as a person sees it: a timer
 * in the page keeps firing (no task blocks the main thread for long), and the summary names how
 * many files were taken and lists the first thousand, not a line for each. Dropped through Chromium's own drag
 * and drop with paths on disk (CDP), so the page walks real FileSystemDirectoryEntry objects.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dropPaths, planReady, text, texts, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftFolder, randomTensor } from './helpers/hf-folder.js';

const session = useDemoSession();
const rand = seededRandom(9000);
const FOLDERS = 90, PER_FOLDER = 100; // 9,000 files beside the model's two

describe('a dropped folder of 9,002 files', () => {
  it('keeps the page\'s timers firing and lists a bounded part of it, in the summary and in the plan', async () => {
    const dir = session.dirs.make();
    const model = join(dir, 'llama-with-data');
    mkdirSync(model);
    writeFileSync(join(model, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, intermediate_size: 20, num_hidden_layers: 1, vocab_size: 16 }));
    writeFileSync(join(model, 'model.safetensors'), buildSafetensors([
      randomTensor('model.embed_tokens.weight', [16, 8], 'BF16', rand),
      randomTensor('model.layers.0.self_attn.q_proj.weight', [8, 8], 'BF16', rand),
    ]));
    for (let d = 0; d < FOLDERS; d++) {
      const sub = join(model, 'data', `shard-${String(d).padStart(3, '0')}`);
      mkdirSync(sub, { recursive: true });
      for (let f = 0; f < PER_FOLDER; f++) writeFileSync(join(sub, `sample-${String(f).padStart(4, '0')}.json`), '{}');
    }
    const lora = join(dir, 'lora');
    mkdirSync(lora);
    for (const [name, bytes] of Object.entries(peftFolder({ r: 1, lora_alpha: 1, target_modules: ['q_proj'] }, [
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [1, 8], 'F32', rand),
      randomTensor('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', [8, 1], 'F32', rand),
    ]))) writeFileSync(join(lora, name), bytes);
    const { page } = await session.open('?backend=cpu');
    // The longest wait between two ticks of a 10 ms timer, from before a drop to what it shows.
    const startTicks = () => page.evaluate(() => {
      const w = window as unknown as { longestGap: number; stopTicks: () => void };
      let last = performance.now();
      w.longestGap = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        w.longestGap = Math.max(w.longestGap, now - last);
        last = now;
      }, 10);
      w.stopTicks = () => clearInterval(timer);
    });
    const settledGap = () => page.evaluate(async () => {
      // The next frames, with what was shown laid out, and a second more (reads in the worker).
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(resolve, 1000))));
      const w = window as unknown as { longestGap: number; stopTicks: () => void };
      w.stopTicks();
      return w.longestGap;
    });
    await startTicks();
    expect(await dropPaths(page, 'base-drop', model)).toEqual(['directory']);
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="base-summary"]')!.hidden, { timeout: 120_000 });
    const longestGap = await settledGap();
    const listed = await texts(page, '[data-testid="base-summary"] li');
    console.log(`longest gap between timer ticks: ${longestGap.toFixed(0)} ms; ${listed.length} lines listed`);
    expect(await text(page, '[data-testid="base-summary"] > div')).toMatch(/^llama-with-data · 9002 files, /);
    // The folder's own files first (the weights and the config), then the rest up to the bound.
    expect(listed.slice(0, 3)).toEqual(['config.json', 'model.safetensors', 'data/shard-000/sample-0000.json']);
    expect(listed).toHaveLength(1001);
    expect(listed.at(-1)).toBe('… and 8002 more files, not listed: the page lists the first 1000');
    // The rows are counted above; the tab's longest stall was 111 ms when measured (a 2-core machine,
    // other tests running), and listing all 9,002 froze it for seconds: bounded at 2 s, so a loaded
    // machine's scheduling does not fail it.
    expect(longestGap).toBeLessThan(2000);

    // An adapter: the plan lists the 9,000 files the merge copies, the first thousand by name.
    await startTicks();
    expect(await dropPaths(page, 'adapter-drop', lora)).toEqual(['directory']);
    await planReady(page);
    const planGap = await settledGap();
    const copiedLine = (await texts(page, '#plan li')).find((line) => line.includes('copied unchanged'));
    console.log(`with the plan: longest gap ${planGap.toFixed(0)} ms`);
    expect(copiedLine).toMatch(/^9001 other files \(configs, tokenizer, scheduler…\) copied unchanged: config\.json, data\/shard-000\/sample-0000\.json, .* … and 8001 more files, not listed: the page lists the first 1000$/);
    expect(planGap).toBeLessThan(2000); // 131 ms when measured
  }, 300_000);
});
