/**
 * A cancel while the library's openModel, the adapter jobs or the CLI's inspect open their inputs.
 * prepareMerge sees its signal between a sharded base's headers and between an adapter's header and
 * its modules (open-cancel.test.ts); openModel took no signal, and extractLora, resizeLora and
 * combineLoras opened their inputs without looking at theirs, so an abort during the opening of
 * DeepSeek-V3's 163 shards was seen only once the base (and, for extract, the tuned model) was open.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openAdapter } from '../src/formats/adapter.js';
import { openModel } from '../src/formats/open-model.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { extractLora, resizeLora } from '../src/node.js';
import { errorLines, runCliSignalledOnceOpen } from './helpers/cli.js';
import { deepseekV3Folder, watchingOpens, deepseekV3PeftConfig, expertLoraTensors, expertRankPattern, writeHeaderOnly } from './helpers/deepseek-v3-headers.js';
import { tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

let dir = '';

beforeAll(() => {
  dir = deepseekV3Folder(temp.make({}));
});

/**
 * Work counted instead of timed (a busy machine changes the time, not the count): safetensors
 * headers parsed (openSafetensors, one a shard) and PEFT adapters' modules parsed (parsePeftAdapter).
 */
const parses = vi.hoisted(() => ({ headers: 0, peftModules: 0 }));
vi.mock('../src/formats/safetensors-reader.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/safetensors-reader.js')>();
  return { ...real, openSafetensors: (...args: Parameters<typeof real.openSafetensors>) => (parses.headers++, real.openSafetensors(...args)) };
});
vi.mock('../src/formats/peft.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/peft.js')>();
  return { ...real, parsePeftAdapter: (...args: Parameters<typeof real.parsePeftAdapter>) => (parses.peftModules++, real.parsePeftAdapter(...args)) };
});

/** `run` given a signal aborted with `reason` on the next task after its start: what it settled with. */
async function cancelledRun(run: (signal: AbortSignal) => Promise<unknown>, reason: Error): Promise<unknown> {
  const controller = new AbortController();
  setTimeout(() => controller.abort(reason), 0);
  return run(controller.signal).then(async (opened) => {
    await (opened as { close?(): Promise<void> }).close?.();
    return opened;
  }, (e: unknown) => e);
}

describe('a signal aborted while a sharded base of 163 shards opens', () => {
  it('ends openModel({ signal }) between the headers: ABORTED, named AbortError, the reason its cause', async () => {
    const reason = new Error('user pressed stop');
    const files = await openNodeInputFileSet(dir);
    const all = watchingOpens(files);
    await (await openModel(all.files)).close();
    expect([...all.opened].filter((p) => p.endsWith('.safetensors'))).toHaveLength(163);
    const { files: watched, opened: shardsOpened } = watchingOpens(files);
    const outcome = await cancelledRun((signal) => openModel(watched, { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'openModel cancelled', cause: reason });
    // Seen after the index (parsed in one piece) and the first turn's shards; unpaced, the open ran
    // to its end, all 163 shards. Counted in shards, not in milliseconds.
    expect(shardsOpened.size, `${shardsOpened.size} of the 163 shards opened after the abort`).toBeLessThan(163 / 2);
  }, 120_000);

  it('openModel refuses a signal of the wrong kind, and one already aborted before any file is read', async () => {
    const files = await openNodeInputFileSet(dir);
    await expect(openModel(files, { signal: 'stop' as never })).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: /^openModel options: signal must be an AbortSignal/ });
    await expect(openModel(files, { sigal: 1 } as never)).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: /did you mean "signal"/ });
    const reason = new Error('already');
    const read: string[] = [];
    const watched: typeof files = {
      name: files.name, list: () => files.list(),
      open: (p) => (read.push(p), files.open(p)), readText: (p) => (read.push(p), files.readText(p)),
    };
    await expect(openModel(watched, { signal: AbortSignal.abort(reason) })).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'openModel cancelled', cause: reason });
    expect(read).toEqual([]);
  });

  it("ends extractLora({ base, signal }) while the base opens, long before it (or the tuned model) is open", async () => {
    const reason = new Error('user pressed stop');
    parses.headers = 0;
    const outcome = await cancelledRun((signal) => extractLora({ base: dir, tuned: dir, rank: 8, backend: 'cpu', signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'extract cancelled', cause: reason });
    // Unpaced, both models were opened (326 shard headers) before the job's first look at its
    // signal; paced, the open stops within the base's first turn. Counted in headers parsed.
    expect(parses.headers, `${parses.headers} shard headers parsed of the base's 163`).toBeLessThan(163 / 2);
  }, 120_000);
});

describe("a signal aborted while resizeLora opens an adapter of 89,088 tensors", () => {
  it("is seen between the adapter's header and the parse of its 44,544 modules", async () => {
    // A rank_pattern of 1000 module paths, as PEFT saves it: the parse of the modules is then most of the open.
    const adapterDir = temp.make({ 'adapter_config.json': deepseekV3PeftConfig(['gate_proj', 'up_proj', 'down_proj'], expertRankPattern()) });
    writeHeaderOnly(join(adapterDir, 'adapter_model.safetensors'), expertLoraTensors());
    const files = await openNodeInputFileSet(adapterDir);
    parses.peftModules = 0;
    await (await openAdapter(files)).file.source.close();
    expect(parses.peftModules).toBe(1);
    const reason = new Error('user pressed stop');
    parses.headers = parses.peftModules = 0;
    const outcome = await cancelledRun((signal) => resizeLora({ adapter: adapterDir, rule: { kind: 'rank', rank: 4 }, backend: 'cpu', signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'resize cancelled', cause: reason });
    // Unpaced, the adapter was parsed whole before the job's first look at its signal; paced, the
    // abort (due once the header's read began) is seen at the turn after the header, before its
    // modules. Counted in parses, not in milliseconds.
    expect(parses.headers).toBe(1);
    expect(parses.peftModules).toBe(0);
  }, 120_000);
});

/**
 * From the first shard's opening to the signal: the opening of the other 162 is under way. Short,
 * so that a fast machine has not finished the open by then (its rest took 300 ms when measured).
 */
const SIGNAL_DELAY_MS = 20;

/** `loramerge inspect` of the folder; SIGNAL_DELAY_MS after the process has the first shard open, `signal` is sent if given. */
const inspect = (signal?: NodeJS.Signals) => runCliSignalledOnceOpen(['inspect', dir], join(dir, 'model-00001-of-000163.safetensors'), SIGNAL_DELAY_MS, signal);

describe('Ctrl-C while `loramerge inspect` opens the 163 shards', () => {
  it.skipIf(process.platform !== 'linux')('exits 130 with the one cancel line, before the open ends and anything is listed', async () => {
    const full = await inspect();
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toMatch(/base model \(transformers\)/);
    expect(full.afterSignalMs, 'the open ended before the signal would have been sent').toBeGreaterThan(0);
    const run = await inspect('SIGINT');
    expect(run.code, run.stderr).toBe(130);
    expect(errorLines(run.stderr)).toEqual(['error: inspect cancelled']);
    expect(run.stderr).not.toMatch(/\n\s+at |internal error/);
    // Nothing listed: the listing follows the open within the same task, so a signal seen only
    // once the open had ended would have found it printed (and the exit code 0). Told by the
    // output, not by comparing two timings, which a busy machine skews.
    expect(run.stdout).toBe('');
  }, 120_000);
});
