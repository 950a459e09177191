/**
 * What the page reads when a file is picked is not read from disk again by the job that uses it
 * (as the base's headers: demo-base-read-once): an adapter's header, read when it is picked for
 * combine (its card's facts), serves the combination; an importance matrix, read whole when it is
 * picked (how many tensors it covers), serves the merge; the model a conversion is for, read
 * when it is picked (its summary line), serves the conversion. Counted as each worker's File.slice calls
 * on those files. The same file picked again is another File, and is read again. Past the 64 MiB the
 * job worker keeps of adapters' headers, the oldest pick's are dropped and the run reads them again.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page, WebWorker } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { peftFiles } from './helpers/adapter-fixtures.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { downloadBytes } from './helpers/demo-merge-check.js';
import { announced, mergeEnabled, planReady, upload, useDemoSession } from './helpers/demo-session.js';
import { buildSafetensors, decodeSafetensors, seededRandom } from './helpers/fixtures.js';
import { combineLoras } from '../src/node.js';
import { ggufLoraAdapter, LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';
import { readStoredZip } from './helpers/stored-zip.js';

const session = useDemoSession();
const WEIGHTS = 'adapter_model.safetensors';
const IMATRIX = 'tiny-llama.imatrix.dat';
const TARGET = 'blk.0.attn_output.weight';

/** The worker whose script matches `pattern`, with File.slice counted on files named `name` from now on (start and end of each). */
async function countSlices(page: Page, pattern: RegExp, name: string): Promise<WebWorker> {
  const find = () => page.workers().find((w) => pattern.test(w.url()));
  for (let i = 0; i < 100 && !find(); i++) await new Promise((r) => setTimeout(r, 100));
  const worker = find();
  if (!worker) throw new Error(`no worker like ${pattern} among ${page.workers().map((w) => w.url()).join(', ')}`);
  await worker.evaluate((wanted: string) => {
    const scope = self as unknown as { slices: [number, number][] };
    scope.slices = [];
    const slice = Blob.prototype.slice;
    Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
      if (this instanceof File && this.name === wanted) scope.slices.push([start ?? 0, end ?? this.size]);
      return slice.call(this, start, end, type);
    };
  }, name);
  return worker;
}

/** The worker whose script matches `pattern`, with File.slice counted on files named `name`: the file's size, start and end of each. */
async function countSizedSlices(page: Page, pattern: RegExp, name: string): Promise<WebWorker> {
  const worker = await countSlices(page, pattern, name);
  await worker.evaluate((wanted: string) => {
    const scope = self as unknown as { sized: [number, number, number][] };
    scope.sized = [];
    const slice = Blob.prototype.slice;
    Blob.prototype.slice = function (this: Blob, start?: number, end?: number, type?: string) {
      if (this instanceof File && this.name === wanted) scope.sized.push([this.size, start ?? 0, end ?? this.size]);
      return slice.call(this, start, end, type);
    };
  }, name);
  return worker;
}

/** The sized slices counted since the last call, and the count started again. */
const takeSizedSlices = (worker: WebWorker) => worker.evaluate(() => (self as unknown as { sized: [number, number, number][] }).sized.splice(0));

/** The slices counted since the last call, and the count started again. */
const takeSlices = (worker: WebWorker) => worker.evaluate(() => (self as unknown as { slices: [number, number][] }).slices.splice(0));

/** A PEFT adapter on q_proj and v_proj (r 2), its values from `seed`: every such adapter's header is as long. */
function adapter(seed: number) {
  const rand = seededRandom(seed);
  const dense = (rows: number, cols: number) => ({ rows, cols, data: Float64Array.from({ length: rows * cols }, () => rand() - 0.5) });
  return peftFiles([
    { name: 'model.layers.0.self_attn.q_proj', b: dense(32, 2), a: dense(2, 32) },
    { name: 'model.layers.0.self_attn.v_proj', b: dense(16, 2), a: dense(2, 32) },
  ]);
}

const within = (folder: string, files: Record<string, string | Uint8Array>) => Object.fromEntries(Object.entries(files).map(([k, v]) => [`${folder}/${k}`, v]));

/** llama-imatrix's legacy .dat: i32 n; per entry i32 name length, name, i32 ncall, i32 nval, nval f32 sums. */
function imatrixDat(name: string, sums: number[]): Uint8Array {
  const bytes = new Uint8Array(4 + 4 + name.length + 8 + 4 * sums.length);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, 1, true);
  view.setInt32(4, name.length, true);
  bytes.set(new TextEncoder().encode(name), 8);
  view.setInt32(8 + name.length, 10, true);
  view.setInt32(12 + name.length, sums.length, true);
  sums.forEach((s, i) => view.setFloat32(16 + name.length + 4 * i, s, true));
  return bytes;
}

describe('inputs read once', PAGE_RETRY, () => {
  it('combine: the adapters\' headers read on pick serve the combination, which reads only their tensors', async () => {
    const files = { ...within('first', adapter(1)), ...within('second', adapter(2)), ...within('starter', adapter(3)) };
    const headerEnd = 8 + Number(new DataView((files['first/adapter_model.safetensors'] as Uint8Array).buffer).getBigUint64(0, true));
    const dir = session.dirs.make(files);
    const { page } = await session.open('?mode=combine&backend=cpu');
    const facts = (n: number) => page.waitForFunction((want: number) => {
      const shown = [...document.querySelectorAll('[data-testid="job-adapter-facts"]')].map((e) => e.textContent ?? '');
      return shown.length === want && shown.every((f) => /^PEFT/.test(f));
    }, { timeout: 30_000 }, n);
    // The job worker starts on first use: a first adapter starts it, then the count begins.
    await upload(page, 'job-adapter-input', join(dir, 'starter', 'adapter_config.json'), join(dir, 'starter', WEIGHTS));
    await facts(1);
    await page.click('[data-testid="job-adapter"] .remove');
    const worker = await countSlices(page, /job-worker/, WEIGHTS);

    for (const name of ['first', 'second']) await upload(page, 'job-adapter-input', join(dir, name, 'adapter_config.json'), join(dir, name, WEIGHTS));
    await facts(2);
    const onPick = await takeSlices(worker);
    // Each pick read its header (the count sees the reads it must).
    expect(onPick.filter(([start]) => start < headerEnd).length).toBeGreaterThanOrEqual(2);

    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    const zip = readStoredZip(await downloadBytes(page, 'job-download-link'));
    expect([...zip.keys()].some((path) => path.endsWith(WEIGHTS))).toBe(true);
    const inRun = await takeSlices(worker);
    // The run read the factors (past the header), and none of the headers again.
    expect(inRun.filter(([start]) => start >= headerEnd).length).toBeGreaterThan(0);
    expect(inRun.filter(([start]) => start < headerEnd), JSON.stringify(inRun)).toEqual([]);

    // The same files picked again are other Files: read again, as any new pick is.
    await upload(page, 'job-adapter-input', join(dir, 'first', 'adapter_config.json'), join(dir, 'first', WEIGHTS));
    await facts(3);
    expect((await takeSlices(worker)).filter(([start]) => start < headerEnd).length).toBeGreaterThan(0);
  }, 120_000);

  it('combine past the 64 MiB kept for adapters\' headers: the oldest pick\'s header is dropped and read again by the run, the result the library\'s', async () => {
    // Three PEFT adapters whose headers are 23 MB each (a long __metadata__ value, as ss_tag_frequency
    // makes kohya's): 69 MB together, past the 64 MiB the job worker keeps of adapters read on pick.
    // Told apart by their weights file's size (each one's padding differs).
    const big = (seed: number, pad: number) => {
      const files = adapter(seed);
      const rand = seededRandom(seed);
      const dense = (rows: number, cols: number) => ({ rows, cols, data: Float64Array.from({ length: rows * cols }, () => Math.fround(rand() - 0.5)) });
      files[WEIGHTS] = buildSafetensors([
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 32], data: dense(2, 32).data },
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [32, 2], data: dense(32, 2).data },
      ], { format: 'pt', notes: 'x'.repeat(23_000_000 + pad) });
      return files;
    };
    const names = ['first', 'second', 'third'];
    const made = names.map((_, i) => big(11 + i, 1000 * i));
    const files = Object.assign({}, ...names.map((name, i) => within(name, made[i])), within('starter', adapter(3))) as Record<string, string | Uint8Array>;
    const sizes = made.map((f) => (f[WEIGHTS] as Uint8Array).byteLength);
    const headerEnds = made.map((f) => 8 + Number(new DataView((f[WEIGHTS] as Uint8Array).buffer).getBigUint64(0, true)));
    expect(headerEnds.reduce((a, b) => a + b, 0)).toBeGreaterThan(64 * 1024 * 1024);
    expect(headerEnds[1] + headerEnds[2]).toBeLessThan(64 * 1024 * 1024);
    const dir = session.dirs.make(files);
    const { page } = await session.open('?mode=combine&backend=cpu');
    const facts = (n: number) => page.waitForFunction((want: number) => {
      const shown = [...document.querySelectorAll('[data-testid="job-adapter-facts"]')].map((e) => e.textContent ?? '');
      return shown.length === want && shown.every((f) => /^PEFT/.test(f));
    }, { timeout: 60_000 }, n);
    await upload(page, 'job-adapter-input', join(dir, 'starter', 'adapter_config.json'), join(dir, 'starter', WEIGHTS));
    await facts(1);
    await page.click('[data-testid="job-adapter"] .remove');
    const worker = await countSizedSlices(page, /job-worker/, WEIGHTS);
    const headerReads = (slices: [number, number, number][], i: number) => slices.filter(([size, start]) => size === sizes[i] && start < headerEnds[i]);

    // One at a time, each read on pick before the next (so the oldest is the first).
    for (const [i, name] of names.entries()) {
      await upload(page, 'job-adapter-input', join(dir, name, 'adapter_config.json'), join(dir, name, WEIGHTS));
      await facts(i + 1);
    }
    const onPick = await takeSizedSlices(worker);
    for (const i of [0, 1, 2]) expect(headerReads(onPick, i).length, names[i]).toBeGreaterThan(0);

    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    const zip = readStoredZip(await downloadBytes(page, 'job-download-link'));
    const inRun = await takeSizedSlices(worker);
    // The first's header, dropped, is read from its file again; the two kept are not.
    expect(headerReads(inRun, 0).length, JSON.stringify(inRun)).toBeGreaterThan(0);
    expect(headerReads(inRun, 1)).toEqual([]);
    expect(headerReads(inRun, 2)).toEqual([]);

    // And read right: the library's combination of the same three.
    const out = join(dir, 'library');
    await combineLoras({ adapters: names.map((name) => join(dir, name)), method: 'cat', out, backend: 'cpu' });
    const pageWeights = [...zip].find(([path]) => path.endsWith(WEIGHTS))![1];
    const libraryTensors = decodeSafetensors(readFileSync(join(out, WEIGHTS))).tensors;
    const pageTensors = decodeSafetensors(pageWeights).tensors;
    expect([...pageTensors.keys()].sort()).toEqual([...libraryTensors.keys()].sort());
    for (const [name, t] of libraryTensors) expect(Buffer.compare(Buffer.from(pageTensors.get(name)!.bytes), Buffer.from(t.bytes)), name).toBe(0);
  }, 180_000);

  it('convert: the model read on pick serves the conversion, which reads none of it again', async () => {
    const model = 'tiny-llama-Q4_K_M.gguf';
    const dir = session.dirs.make({ ...q4kmLlama().files, ...within('lora', peftLlamaAdapter(43).files) });
    const { page } = await session.open('?mode=convert');
    // The adapter starts the job worker; the count begins before the model is picked.
    await upload(page, 'job-adapter-input', join(dir, 'lora', 'adapter_config.json'), join(dir, 'lora', WEIGHTS));
    await page.waitForFunction(() => /^PEFT/.test(document.querySelector('[data-testid="job-adapter-facts"]')?.textContent ?? ''), { timeout: 30_000 });
    const worker = await countSlices(page, /job-worker/, model);
    await upload(page, 'job-target-input', join(dir, model));
    await announced(page, /^Model read/);
    expect((await takeSlices(worker)).length).toBeGreaterThan(0);
    await page.waitForFunction(() => !document.querySelector<HTMLButtonElement>('[data-testid="job-run"]')!.disabled, { timeout: 30_000 });
    await page.click('[data-testid="job-run"]');
    await downloadBytes(page, 'job-download-link');
    expect(await takeSlices(worker)).toEqual([]);
  }, 120_000);

  it('merge: the importance matrix read on pick serves the merge, which reads none of it', async () => {
    const lora = ggufLoraAdapter([{ tensor: TARGET, rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const sums = Array.from({ length: LLAMA.hidden }, (_, c) => (c % 7 === 0 ? 400 : 0.01) * (1 + (c % 5)));
    const dir = session.dirs.make({ ...q4kmLlama().files, 'lora.gguf': lora.bytes, [IMATRIX]: imatrixDat(TARGET, sums) });
    const { page } = await session.open('?backend=cpu');
    const worker = await countSlices(page, /merge-worker/, IMATRIX);
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora.gguf'));
    await planReady(page);
    await upload(page, 'imatrix-input', join(dir, IMATRIX));
    await announced(page, /^Importance matrix read/);
    // The pick read it (the count sees the reads it must).
    expect((await takeSlices(worker)).length).toBeGreaterThan(0);

    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    expect(await takeSlices(worker)).toEqual([]);

    // The same file picked again is another File: read again.
    await upload(page, 'imatrix-input', join(dir, IMATRIX));
    await announced(page, /^Importance matrix read/);
    expect((await takeSlices(worker)).length).toBeGreaterThan(0);
  }, 120_000);
});
