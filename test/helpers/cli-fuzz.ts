/**
 * What the CLI fuzzers share: seeded fast-check runs of generated cases through the CLI, most in a
 * worker thread running the built front end (fuzz-worker.mjs: no Node start-up per case, and a case
 * that hangs is stopped by terminating the worker), a few as the real `loramerge` process with its
 * peak RSS measured; and the properties every case must hold, whatever its input:
 *   - no stack trace, no internal error, and the inputs unchanged;
 *   - refused: a documented exit code, exactly one `error:` line, nothing in the output folder;
 *   - succeeded: no `error:` line, and the output folder holding only the output (nothing for a
 *     command that writes none), which the fuzzer then checks against its float64 truth;
 * and, over the in-process run, nothing kept from one merge to the next (what the worker holds
 * after gc, and the process's threads, stay level) and no case raising the peak RSS by the limit.
 * The cases run the built CLI: run `npm run build:lib` first when calling vitest directly.
 */
import fc from 'fast-check';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, runCli, type CliResult } from './cli.js';
import { tempDirs } from './fixtures.js';

/** A case taking longer than this hangs (the slowest real case takes well under a second). */
const CASE_TIMEOUT_MS = 30_000;
const MB = 1024 * 1024;
const RSS_LIMIT = 400 * MB;
/**
 * How much more the in-process worker may hold after full collections at the end of a run than
 * after its warm-up: what one merge leaves reachable for the next (a cache that never drops an
 * entry, buffers a module keeps) adds up over the cases here. Its heap itself settles (compiled
 * code, V8's caches): 2.5 MiB more after 2000 surface cases than after 200. The growth of the
 * process's peak RSS cannot tell a leak: it counts the fuzzer's own truths and memory the allocator
 * keeps with nothing in it (447 MiB over 2000 cases with nothing retained; 348 MiB over 500 with
 * 128 KiB kept per merge).
 */
const RETAINED_GROWTH_LIMIT = 32 * MB;
/**
 * How many more threads the process may have at the end than after the warm-up: a thread a merge
 * starts (a CPU pool's, where a layer is large enough) ends with it, though one may still be
 * stopping when counted; a thread left running per merge shows here, not in the heap.
 */
const THREAD_GROWTH_LIMIT = 4;
/** Cases before the worker's retained memory is first measured, and how often it is sampled after. */
const WARM_UP_CASES = 200;
const RETAINED_SAMPLES = 8;

export interface FuzzSettings {
  runs: number;
  cliRuns: number;
  seed: number;
  /** fast-check's path of a failing case (FUZZ_PATH, printed with the failure): that case alone is run again. */
  path?: string;
}

/**
 * How many cases to run: the counts from the environment variables named (`npm run fuzz` sets
 * many), else the bounded ones `npm test` runs; the seed from FUZZ_SEED.
 */
export function fuzzSettings(runsVar: string, cliRunsVar: string, defaults: { runs: number; cliRuns: number }): FuzzSettings {
  return {
    runs: Number(process.env[runsVar] ?? defaults.runs),
    cliRuns: Number(process.env[cliRunsVar] ?? defaults.cliRuns),
    seed: Number(process.env.FUZZ_SEED ?? 20261201),
    ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
  };
}

/** One generated case as files and a command line. */
export interface CliCase {
  /** Names the case at the head of every failure message. */
  label: string;
  /** The summary counts outcomes per group where one is given. */
  group?: string;
  /** The input files, by path under the case's input folder. */
  inputs: Map<string, Uint8Array>;
  /** Folders under the input folder that exist even when no file lies in them. */
  folders?: string[];
  /** The command line, given the input and output folders. */
  argv(inDir: string, outDir: string): string[];
  /** What a successful run leaves in the output folder; null for a command that writes nothing. */
  output: string | null;
  /** Bytes per row slab of the in-process merge (the real process keeps its default). */
  slabBytes?: number;
}

export interface FuzzStats {
  cases: number;
  merged: number;
  refused: number;
  byCode: Map<number, number>;
  /** Outcomes: `refused` (`refused, <what checkRefusal said>`), `ok` (succeeded, wrote nothing), `merged, <what checkOutput said>`. */
  outcomes: Map<string, number>;
  byGroup: Map<string, Record<string, number>>;
}

export interface CliFuzzTarget<C, P extends CliCase> {
  /** Heads the summary line. */
  name: string;
  cases: fc.Arbitrary<C>;
  prepare(c: C): P;
  /** Checks what a successful writing run left at `outPath`; says how it was checked (counted as `merged, <that>`). */
  checkOutput(c: C, p: P, outPath: string, result: CliResult, context: string): string;
  /** Checks a refusal where the target can (says how, counted as `refused, <that>`); undefined where it cannot. */
  checkRefusal?(c: C, p: P, context: string): string | undefined;
  /** The summary's words on the merges, in brackets after their count. */
  mergeDetail(stats: FuzzStats): string;
  /** The outcomes the mutations must reach, or the property proves little. */
  expectReach(stats: FuzzStats, runs: number): void;
}

/** Every file under dir, by path relative to it. */
export function filesUnder(dir: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), new Uint8Array(readFileSync(path)));
    }
  };
  walk(dir);
  return out;
}

/** Runs the built CLI's front end in one worker thread, replaced after a hang or a crash. */
class WorkerRunner {
  private worker: Worker | undefined;
  private nextId = 0;

  run(argv: string[], slabBytes?: number): Promise<CliResult | { hung: true } | { crashed: string }> {
    return this.ask<CliResult>({ argv, slabBytes });
  }

  /** What the worker's heap still holds after full collections, in bytes, and the process's threads where known (see fuzz-worker.mjs). */
  async retained(): Promise<{ bytes: number; threads?: number }> {
    const reply = await this.ask<{ retained: number; threads?: number }>({ memory: true });
    if (!('retained' in reply)) throw new Error(`the worker did not say what it retains: ${JSON.stringify(reply)}`);
    return { bytes: reply.retained, ...(reply.threads !== undefined ? { threads: reply.threads } : {}) };
  }

  private ask<R>(message: object): Promise<R | { hung: true } | { crashed: string }> {
    this.worker ??= new Worker(new URL('./fuzz-worker.mjs', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 1024 } });
    const w = this.worker;
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const done = (result: R | { hung: true } | { crashed: string }) => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('error', onError);
        resolve(result);
      };
      const onMessage = (m: R & { id: number }) => m.id === id && done(m);
      const onError = (e: Error) => {
        this.worker = undefined;
        done({ crashed: String(e) });
      };
      const timer = setTimeout(() => {
        void w.terminate();
        this.worker = undefined;
        done({ hung: true });
      }, CASE_TIMEOUT_MS);
      w.on('message', onMessage);
      w.on('error', onError);
      w.postMessage({ id, ...message });
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
  }
}

/** Writes a case's inputs under dir/in, with an empty dir/out. */
function materialise(p: CliCase, dir: string): { inDir: string; outDir: string } {
  rmSync(dir, { recursive: true, force: true });
  const inDir = join(dir, 'in');
  const outDir = join(dir, 'out');
  for (const [path, bytes] of p.inputs) {
    mkdirSync(dirname(join(inDir, path)), { recursive: true });
    writeFileSync(join(inDir, path), bytes);
  }
  for (const folder of p.folders ?? []) mkdirSync(join(inDir, folder), { recursive: true });
  mkdirSync(inDir, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  return { inDir, outDir };
}

/** The two fuzzing runs of a target (in-process, then the real process) as a describe block. */
export function describeCliFuzz<C, P extends CliCase>(title: string, target: CliFuzzTarget<C, P>, settings: FuzzSettings): void {
  const { runs, cliRuns, seed } = settings;
  const temp = tempDirs();
  const root = temp.make();
  const runner = new WorkerRunner();
  afterAll(async () => {
    await runner.close();
    temp.removeAll();
  });

  const stats: FuzzStats = { cases: 0, merged: 0, refused: 0, byCode: new Map(), outcomes: new Map(), byGroup: new Map() };
  const count = (p: P, what: string) => {
    stats.outcomes.set(what, (stats.outcomes.get(what) ?? 0) + 1);
    if (p.group === undefined) return;
    const counts = stats.byGroup.get(p.group) ?? {};
    counts[what] = (counts[what] ?? 0) + 1;
    stats.byGroup.set(p.group, counts);
  };

  /** Checks one outcome against the properties; throws (failing the property) when one breaks. */
  const check = (c: C, p: P, inDir: string, outDir: string, result: CliResult) => {
    stats.cases++;
    stats.byCode.set(result.code, (stats.byCode.get(result.code) ?? 0) + 1);
    const context = `${p.label} → exit ${result.code}\n${result.stderr}`;
    expect(result.stderr, context).not.toMatch(/\n\s+at |internal error|runCommandLine threw/);
    const after = filesUnder(inDir);
    expect([...after.keys()].sort(), `the inputs changed\n${context}`).toEqual([...p.inputs.keys()].sort());
    for (const [path, bytes] of p.inputs) expect(Buffer.from(after.get(path)!).equals(Buffer.from(bytes)), `${path} changed\n${context}`).toBe(true);
    const left = readdirSync(outDir);
    if (result.code !== 0) {
      stats.refused++;
      expect([1, 2, 3], context).toContain(result.code);
      expect(errorLines(result.stderr), context).toHaveLength(1);
      expect(left, context).toEqual([]);
      const how = target.checkRefusal?.(c, p, context);
      count(p, how === undefined ? 'refused' : `refused, ${how}`);
      return;
    }
    expect(errorLines(result.stderr), context).toEqual([]);
    if (p.output === null) {
      expect(left, context).toEqual([]);
      count(p, 'ok');
      return;
    }
    stats.merged++;
    expect(left, context).toEqual([p.output]);
    count(p, `merged, ${target.checkOutput(c, p, join(outDir, p.output), result, context)}`);
  };

  describe(title, () => {
    it(`${runs} cases through the CLI's front end in-process`, async () => {
      const rssBefore = process.resourceUsage().maxRSS * 1024;
      // The cases that raised the peak the most, so that a failed memory check names them.
      const peakRaisers: { label: string; mib: number }[] = [];
      // What the worker holds after full collections, by case count: from the end of the warm-up on.
      const warmUp = Math.min(WARM_UP_CASES, Math.floor(runs / 4));
      const every = Math.max(1, Math.ceil((runs - warmUp) / RETAINED_SAMPLES));
      const retained: { cases: number; bytes: number; threads?: number; rss: number }[] = [];
      let n = 0;
      await fc.assert(
        fc.asyncProperty(target.cases, async (c) => {
          const dir = join(root, `case-${n++}`);
          const p = target.prepare(c);
          const { inDir, outDir } = materialise(p, dir);
          const peakBefore = process.resourceUsage().maxRSS;
          try {
            const result = await runner.run(p.argv(inDir, outDir), p.slabBytes);
            const raisedMiB = (process.resourceUsage().maxRSS - peakBefore) / 1024;
            if (raisedMiB >= 16) peakRaisers.push({ label: `case ${n - 1}: ${p.label}: ${p.argv('in', 'out').join(' ')}: ${fc.stringify(c).slice(0, 400)}`, mib: raisedMiB });
            if ('hung' in result) throw new Error(`${p.label}: hung for ${CASE_TIMEOUT_MS} ms`);
            if ('crashed' in result) throw new Error(`${p.label}: worker died (memory?): ${result.crashed}`);
            check(c, p, inDir, outDir, result);
            if (!settings.path && n >= warmUp && (n - warmUp) % every === 0) retained.push({ cases: n, ...(await runner.retained()), rss: process.memoryUsage().rss });
          } finally {
            // FUZZ_KEEP=<folder>: each case's files are kept there for a closer look.
            if (process.env.FUZZ_KEEP) cpSync(dir, join(process.env.FUZZ_KEEP, basename(dir)), { recursive: true });
            rmSync(dir, { recursive: true, force: true });
          }
        }),
        { seed, numRuns: settings.path ? 1 : runs, endOnFailure: true, ...(settings.path ? { path: settings.path } : {}) },
      );
      if (!settings.path && retained.at(-1)?.cases !== n) retained.push({ cases: n, ...(await runner.retained()), rss: process.memoryUsage().rss });
      const grew = process.resourceUsage().maxRSS * 1024 - rssBefore;
      const raisers = peakRaisers.sort((a, b) => b.mib - a.mib).slice(0, 5).map((r) => `\n  +${r.mib.toFixed(0)} MiB ${r.label}`).join('');
      const trail = retained.map((r) => `${r.cases}: ${(r.bytes / MB).toFixed(1)} (${r.threads ?? '?'} threads, process RSS ${(r.rss / MB).toFixed(0)})`).join(', ');
      console.log(
        `${target.name}: ${stats.cases} cases: ${stats.merged} merged (${target.mergeDetail(stats)}), ${stats.refused} refused; ` +
          `exit codes ${JSON.stringify(Object.fromEntries(stats.byCode))}; peak RSS grew by ${(grew / MB).toFixed(0)} MiB` +
          [...stats.byGroup].map(([group, counts]) => `\n  ${group}: ${JSON.stringify(counts)}`).join('') +
          `\nretained by the worker after gc, MiB by cases run: ${trail || 'not measured'}` +
          // Printed on a pass too: a peak near the limit says where to look before a run fails on it.
          `\nthe cases that raised the peak most:${raisers || ' none by 16 MiB or more'}`,
      );
      // One case's memory: no case raised the process's peak by the limit (the real-process cases
      // below measure a whole process's peak against it).
      expect(Math.max(0, ...peakRaisers.map((r) => r.mib)) * MB, `the cases that raised the peak RSS most:${raisers}`).toBeLessThan(RSS_LIMIT);
      // Memory kept from one merge to the next: what the worker holds after gc settles after its warm-up.
      if (retained.length >= 2) {
        const [first, last] = [retained[0], retained.at(-1)!];
        expect(last.bytes - first.bytes, `retained by the worker after gc, MiB by cases run: ${trail}`).toBeLessThan(RETAINED_GROWTH_LIMIT);
        if (first.threads !== undefined && last.threads !== undefined) {
          expect(last.threads - first.threads, `the process's threads grew: ${trail}`).toBeLessThan(THREAD_GROWTH_LIMIT);
        }
      }
      if (!settings.path) target.expectReach(stats, runs);
    }, Math.max(600_000, runs * 4000));

    it(`${cliRuns} cases through the real loramerge process, peak RSS measured`, async () => {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(target.cases, async (c) => {
          const dir = join(root, `cli-${n++}`);
          const p = target.prepare(c);
          const { inDir, outDir } = materialise(p, dir);
          try {
            const rssFile = join(dir, 'rss.txt');
            const result = await runCli(p.argv(inDir, outDir), { LORAMERGE_RSS_FILE: rssFile }, ['--import', fileURLToPath(new URL('./report-rss.mjs', import.meta.url))]);
            check(c, p, inDir, outDir, result);
            const peak = Number(readFileSync(rssFile, 'utf8'));
            expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(RSS_LIMIT);
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        }),
        { seed: seed + 1, numRuns: cliRuns, endOnFailure: true },
      );
    }, Math.max(300_000, cliRuns * 20_000));
  });
}
