/**
 * Newer inputs cancel the plan under way inside the worker: picked while an adapter's plan still
 * reads it, another adapter's plan is shown, and the first plan stops reading (it never reaches the
 * tensor the adapter saves whole) and answers with a cancel, never with its plan, so a stale plan
 * can neither be shown nor hold the worker's reads.
 */
import { join } from 'node:path';
import type { WebWorker } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { PAGE_RETRY } from './helpers/browser.js';
import { mergeEnabled, planReady, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, randomValues, seededRandom } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const session = useDemoSession();
const SAVED = 'base_model.model.model.embed_tokens.modules_to_save.default.weight';

/** What the worker's hooks record: the messages in and out ([direction, type, id]), reads of the slow file, reads held. */
interface Hooks { log: [string, string, number][]; slowReads: [number, number][]; held: number; release(): void }

describe('a plan made stale by newer inputs', PAGE_RETRY, () => {
  it('is cancelled in the worker: it stops reading and never answers with its plan; the newer plan is shown', async () => {
    const rand = seededRandom(5101);
    const fixture = llamaWithPeft(5102);
    const lora = fixture.files['llama-lora/adapter_model.safetensors'] as Uint8Array;
    const factors = [...decodeSafetensors(lora).tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.values }));
    // The slow adapter saves embed_tokens whole: a finished plan reads it (its values are checked).
    const slow = buildSafetensors([...factors, { name: SAVED, dtype: 'F32', shape: [50, 16], data: randomValues(50 * 16, rand) }]);
    const headerLength = Number(new DataView(slow.buffer, slow.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(slow.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: [number, number] }>;
    const [from, to] = header[SAVED].data_offsets.map((o) => 8 + headerLength + o);
    const config = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'] };
    const dir = session.dirs.make({
      'llama.safetensors': fixture.base,
      'slow-lora/adapter_config.json': JSON.stringify({ ...config, modules_to_save: ['embed_tokens'] }), 'slow-lora/adapter_model.safetensors': slow,
      'quick-lora/adapter_config.json': JSON.stringify(config), 'quick-lora/adapter_model.safetensors': lora,
    });
    expect(slow.byteLength).not.toBe(lora.byteLength);

    const { page } = await session.open('?backend=cpu');
    const find = () => page.workers().find((w) => /merge-worker/.test(w.url()));
    for (let i = 0; i < 100 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
    const worker: WebWorker | undefined = find();
    if (!worker) throw new Error('no merge worker');
    // Every read of the slow adapter's weights waits until released: its plan is under way for as long as the test wants.
    await worker.evaluate((slowSize: number) => {
      const scope = self as unknown as Hooks & { postMessage(m: unknown, ...rest: unknown[]): void };
      scope.log = [];
      scope.slowReads = [];
      scope.held = 0;
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      scope.release = open;
      self.addEventListener('message', (e: MessageEvent<{ type: string; id: number }>) => scope.log.push(['in', e.data.type, e.data.id]));
      const post = scope.postMessage.bind(self);
      scope.postMessage = (m: unknown, ...rest: unknown[]) => {
        const { type, id } = m as { type: string; id: number };
        scope.log.push(['out', type, id]);
        post(m, ...rest);
      };
      const slice = Blob.prototype.slice;
      Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
        const part = slice.call(this, start, end, type);
        if (this instanceof File && this.size === slowSize) {
          scope.slowReads.push([start ?? 0, end ?? this.size]);
          const read = part.arrayBuffer.bind(part);
          part.arrayBuffer = async () => {
            scope.held++;
            await gate;
            return read();
          };
        }
        return part;
      };
    }, slow.byteLength);
    const hooks = () => worker.evaluate(() => {
      const { log, slowReads, held } = self as unknown as Hooks;
      return { log, slowReads, held };
    });

    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-folder-input', join(dir, 'slow-lora'));
    // The slow adapter's plan is under way: its first read waits.
    for (let i = 0; i < 300 && (await hooks()).held === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const { log: before } = await hooks();
    const plans = before.filter(([dir_, type]) => dir_ === 'in' && type === 'plan').map(([, , id]) => id);
    expect(plans).toHaveLength(1);
    const stale = plans[0];

    // Another adapter in its place while that plan waits: its plan is made and shown.
    await page.click('[data-testid="adapter"] button.remove');
    await upload(page, 'adapter-folder-input', join(dir, 'quick-lora'));
    await planReady(page);
    await mergeEnabled(page);
    expect(await texts(page, '[data-testid="adapter-facts"]')).toHaveLength(1);
    expect((await texts(page, '[data-testid="adapter-facts"]'))[0]).not.toMatch(/replaced/);

    // The stale plan was cancelled in the worker; released, it reads no further and answers only that.
    expect((await hooks()).log).toContainEqual(['in', 'cancel', stale]);
    await worker.evaluate(() => (self as unknown as Hooks).release());
    let answers: string[] = [];
    for (let i = 0; i < 300 && answers.length === 0; i++) {
      answers = (await hooks()).log.filter(([d, , id]) => d === 'out' && id === stale).map(([, type]) => type);
      if (answers.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(answers).toEqual(['cancelled']);
    // Whatever else was under way settles before the counts are read.
    await new Promise((r) => setTimeout(r, 500));
    const { slowReads } = await hooks();
    expect(slowReads.filter(([s, e]) => s < to && e > from)).toEqual([]);
    // The page still shows the newer plan: one adapter, nothing replaced, Merge on.
    expect(await texts(page, '[data-testid="adapter-facts"]')).toHaveLength(1);
    expect((await texts(page, '[data-testid="adapter-facts"]'))[0]).not.toMatch(/replaced/);
    await mergeEnabled(page);
  }, 60_000);
});
