/**
 * A cancel while the library's openModel, the adapter jobs or the CLI's inspect open their inputs.
 * prepareMerge sees its signal between a sharded base's headers and between an adapter's header and
 * its modules (open-cancel.test.ts); openModel took no signal, and extractLora, resizeLora and
 * combineLoras opened their inputs without looking at theirs, so an abort during the opening of
 * DeepSeek-V3's 163 shards was seen only once the base (and, for extract, the tuned model) was open.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { RE2JS } from 're2js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openAdapter } from '../src/formats/adapter.js';
import { openModel } from '../src/formats/open-model.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { extractLora, resizeLora } from '../src/node.js';
import { CLI, errorLines, openFiles } from './helpers/cli.js';
import { deepseekV3Folder, watchingOpens, deepseekV3PeftConfig, expertLoraTensors, expertRankPattern, uncancelledMs, writeHeaderOnly } from './helpers/deepseek-v3-headers.js';
import { tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

let dir = '';

beforeAll(() => {
  dir = deepseekV3Folder(temp.make({}));
});

/**
 * `run` given a signal aborted with `reason` on the next task after its start, twice: what the first
 * settled with, and the faster one's time (a busy machine slows one run, not both).
 */
async function cancelledRun(run: (signal: AbortSignal) => Promise<unknown>, reason: Error): Promise<{ outcome: unknown; ms: number }> {
  const once = async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 0);
    const started = performance.now();
    const outcome = await run(controller.signal).then(async (opened) => {
      await (opened as { close?(): Promise<void> }).close?.();
      return opened;
    }, (e: unknown) => e);
    return { outcome, ms: performance.now() - started };
  };
  const first = await once();
  const second = await once();
  return { outcome: first.outcome, ms: Math.min(first.ms, second.ms) };
}

const openBase = async () => (await openModel(await openNodeInputFileSet(dir))).close();

describe('a signal aborted while a sharded base of 163 shards opens', () => {
  it('ends openModel({ signal }) between the headers: ABORTED, named AbortError, the reason its cause', async () => {
    const whole = await uncancelledMs(openBase);
    const reason = new Error('user pressed stop');
    const files = await openNodeInputFileSet(dir);
    const { files: watched, opened: shardsOpened } = watchingOpens(files);
    const { outcome, ms } = await cancelledRun((signal) => openModel(watched, { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'openModel cancelled', cause: reason });
    // Seen after the index (parsed in one piece) and the first turn's shards; unpaced, the open ran
    // to its end, all 163 shards. Counted in shards (both runs together), which a busy machine does
    // not change; in time a third of the open on a quiet machine, bounded at the open's whole time.
    expect(shardsOpened.size, `${shardsOpened.size} of the 163 shards opened after the abort`).toBeLessThan(163 / 2);
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the base takes ${whole.toFixed(0)} ms`).toBeLessThan(whole);
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
    const whole = await uncancelledMs(openBase);
    const reason = new Error('user pressed stop');
    const { outcome, ms } = await cancelledRun((signal) => extractLora({ base: dir, tuned: dir, rank: 8, backend: 'cpu', signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'extract cancelled', cause: reason });
    // Unpaced, both models were opened (twice the open) before the job's first look at its signal;
    // paced, a third of one open when measured quietly. Bounded at one open, for a busy machine.
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the base takes ${whole.toFixed(0)} ms`).toBeLessThan(whole);
  }, 120_000);
});

describe("a signal aborted while resizeLora opens an adapter of 89,088 tensors", () => {
  it("is seen between the adapter's header and the parse of its 44,544 modules", async () => {
    // A rank_pattern of 1000 module paths, as PEFT saves it, and 8 regexes: the parse of the modules is then most of the open.
    const adapterDir = temp.make({ 'adapter_config.json': deepseekV3PeftConfig(['gate_proj', 'up_proj', 'down_proj'], expertRankPattern()) });
    writeHeaderOnly(join(adapterDir, 'adapter_model.safetensors'), expertLoraTensors());
    const files = await openNodeInputFileSet(adapterDir);
    const open = await uncancelledMs(async () => (await openAdapter(files)).file.source.close());
    // The regexes tried while the modules are parsed count how far the parse got, whatever the machine's load.
    const matches = vi.spyOn(RE2JS.prototype, 'matches');
    await (await openAdapter(files)).file.source.close();
    const parsed = matches.mock.calls.length;
    expect(parsed).toBeGreaterThanOrEqual(43_544 * 8);
    matches.mockClear();
    const reason = new Error('user pressed stop');
    const { outcome, ms } = await cancelledRun((signal) => resizeLora({ adapter: adapterDir, rule: { kind: 'rank', rank: 4 }, backend: 'cpu', signal }), reason);
    const cancelledAfter = matches.mock.calls.length;
    matches.mockRestore();
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'resize cancelled', cause: reason });
    // Unpaced, the adapter was parsed whole before the job's first look at its signal. Module paths
    // are looked up by hash, so the parse is no longer most of the open's time: it is told by the
    // regexes tried, and the time bounded loosely.
    expect(cancelledAfter, `${cancelledAfter} of ${parsed} regex tests made after the abort`).toBeLessThan(parsed / 10);
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the adapter takes ${open.toFixed(0)} ms`).toBeLessThan(open);
  }, 120_000);
});

/**
 * From the first shard's opening to the signal: the opening of the other 162 is under way. Short,
 * so that a fast machine has not finished the open by then (its rest took 300 ms when measured).
 */
const SIGNAL_DELAY_MS = 20;

/**
 * `loramerge inspect` of the folder; SIGNAL_DELAY_MS after the process has the first shard open,
 * `signal` is sent if given. `afterSignal`: ms from that moment (the signal, or when it would have
 * been sent) to the exit.
 */
function inspect(signal?: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string; afterSignal: number }> {
  const child = spawn(process.execPath, [CLI, 'inspect', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const first = join(dir, 'model-00001-of-000163.safetensors');
  let sent: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const poll = setInterval(() => {
    if (!openFiles(child.pid!).includes(first)) return;
    clearInterval(poll);
    timer = setTimeout(() => {
      sent = performance.now();
      if (signal) child.kill(signal);
    }, SIGNAL_DELAY_MS);
  }, 2);
  return new Promise((resolve) => child.on('exit', (code) => {
    clearInterval(poll);
    clearTimeout(timer);
    resolve({ code, stdout, stderr, afterSignal: sent === undefined ? NaN : performance.now() - sent });
  }));
}

describe('Ctrl-C while `loramerge inspect` opens the 163 shards', () => {
  it.skipIf(process.platform !== 'linux')('exits 130 with the one cancel line, long before the open would have ended', async () => {
    const full = await inspect();
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toMatch(/base model \(transformers\)/);
    expect(full.afterSignal, 'the open ended before the signal would have been sent').toBeGreaterThan(0);
    const run = await inspect('SIGINT');
    expect(run.code, run.stderr).toBe(130);
    expect(errorLines(run.stderr)).toEqual(['error: inspect cancelled']);
    expect(run.stderr).not.toMatch(/\n\s+at |internal error/);
    expect(run.stdout).toBe('');
    expect(run.afterSignal, `exit ${run.afterSignal.toFixed(0)} ms after the signal; the open's rest took ${full.afterSignal.toFixed(0)} ms`)
      .toBeLessThan(0.6 * full.afterSignal);
  }, 120_000);
});
