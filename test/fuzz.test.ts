/**
 * The fuzzer: valid safetensors bases, PEFT configs and kohya files, mutated (bit flips, truncation,
 * header edits, JSON type changes, huge numbers, deep nesting, pathological regexes, NaN/Inf and
 * overflowing values), run through the CLI. For every mutation, either
 *   - exit 0, and the output equals the float64 truth worked out from the mutated files
 *     (fuzz-reference.ts), NaN/Inf copied from the base is warned about, and --out holds only the
 *     output; or
 *   - one clear `error:` line, no stack trace, no internal error, a documented exit code, and
 *     nothing at --out;
 * and every case ends in bounded time and memory.
 *
 * Most cases run the CLI's own front end (runCommandLine, from the build in dist/) in a worker
 * thread: no Node start-up per case, and a case that hangs is stopped by terminating the worker.
 * A few run the real `loramerge` process with its peak RSS measured. The run is seeded; `npm test`
 * runs a bounded number of cases, `npm run fuzz` many more (FUZZ_RUNS, FUZZ_CLI_RUNS, FUZZ_SEED).
 * Run `npm run build:lib` first when calling vitest directly: the cases run the built CLI.
 */
import fc from 'fast-check';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from './helpers/cli.js';
import { decodeSafetensors, roundForDType, tempDirs } from './helpers/fixtures.js';
import { fuzzCase, writeCase, type FuzzCase } from './helpers/fuzz-cases.js';
import { referenceMerge, type Reference } from './helpers/fuzz-reference.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 800);
const CLI_RUNS = Number(process.env.FUZZ_CLI_RUNS ?? 10);
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
/** A case taking longer than this hangs (the slowest real case takes well under a second). */
const CASE_TIMEOUT_MS = 30_000;
const MB = 1024 * 1024;
const RSS_LIMIT = 400 * MB;

const temp = tempDirs();
const root = temp.make();
afterAll(temp.removeAll);

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

// --- the in-process runner ---------------------------------------------------------------------

let worker: Worker | undefined;
let nextId = 0;

function runInWorker(argv: string[]): Promise<Outcome | { hung: true } | { crashed: string }> {
  worker ??= new Worker(new URL('./helpers/fuzz-worker.mjs', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 1024 } });
  const w = worker;
  const id = ++nextId;
  return new Promise((resolve) => {
    const done = (result: Outcome | { hung: true } | { crashed: string }) => {
      clearTimeout(timer);
      w.off('message', onMessage);
      w.off('error', onError);
      resolve(result);
    };
    const onMessage = (m: Outcome & { id: number }) => m.id === id && done(m);
    const onError = (e: Error) => {
      worker = undefined;
      done({ crashed: String(e) });
    };
    const timer = setTimeout(() => {
      void w.terminate();
      worker = undefined;
      done({ hung: true });
    }, CASE_TIMEOUT_MS);
    w.on('message', onMessage);
    w.on('error', onError);
    w.postMessage({ id, argv });
  });
}

afterAll(async () => {
  await worker?.terminate();
});

// --- one case ------------------------------------------------------------------------------------

interface Paths {
  dir: string;
  base: string;
  adapter: string;
  outDir: string;
  out: string;
}

function materialise(c: FuzzCase, name: string): Paths {
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  const files = writeCase(c);
  mkdirSync(join(dir, 'adapter'), { recursive: true });
  mkdirSync(join(dir, 'out'));
  writeFileSync(join(dir, 'base.safetensors'), files.base);
  let adapter: string;
  if (c.world.kind === 'peft') {
    writeFileSync(join(dir, 'adapter', 'adapter_model.safetensors'), files.adapter);
    writeFileSync(join(dir, 'adapter', 'adapter_config.json'), files.config ?? '');
    adapter = join(dir, 'adapter');
  } else {
    adapter = join(dir, 'adapter', 'lora.safetensors');
    writeFileSync(adapter, files.adapter);
  }
  return { dir, base: join(dir, 'base.safetensors'), adapter, outDir: join(dir, 'out'), out: join(dir, 'out', 'merged.safetensors') };
}

function argvOf(c: FuzzCase, p: Paths): string[] {
  const { command, dtype, weight } = c.command;
  if (command === 'inspect-base') return ['inspect', p.base];
  if (command === 'inspect-adapter') return ['inspect', p.adapter];
  const args = ['merge', '--base', p.base, '--adapter', p.adapter];
  if (weight !== undefined) args.push('--weight', weight);
  if (dtype) args.push('--dtype', dtype);
  args.push(command === 'dry-run' ? '--dry-run' : '--out', ...(command === 'dry-run' ? [] : [p.out]), '--backend', 'cpu');
  return args;
}

const stats = { cases: 0, merged: 0, refused: 0, unknown: 0, byCode: new Map<number, number>() };

/** The largest difference allowed between a written value and the exact one. */
function tolerance(exact: number, magnitude: number, underflow: number, dtype: string): number {
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(exact === 0 ? minExp : Math.floor(Math.log2(Math.abs(exact))), minExp);
  // One ulp of the output dtype, or the f32 accumulation's rounding on the terms' magnitude, plus
  // what f32 products lose below its smallest subnormal (2^-149).
  return Math.max(2 ** (e - mant), 8 * 2 ** -24 * magnitude) + 2 ** -148 * (4 + underflow);
}

/** Checks one outcome against the properties; throws (failing the property) when one breaks. */
function check(c: FuzzCase, p: Paths, result: Outcome, files = writeCase(c)): void {
  stats.cases++;
  stats.byCode.set(result.code, (stats.byCode.get(result.code) ?? 0) + 1);
  const context = `${c.command.command} → exit ${result.code}\n${result.stderr}`;
  expect(result.stderr, context).not.toMatch(/\n\s+at |internal error|runCommandLine threw/);
  const left = readdirSync(p.outDir);
  if (result.code !== 0) {
    stats.refused++;
    expect([1, 2, 3], context).toContain(result.code);
    expect(errorLines(result.stderr), context).toHaveLength(1);
    expect(left, context).toEqual([]);
    return;
  }
  expect(errorLines(result.stderr), context).toEqual([]);
  if (c.command.command !== 'merge') {
    expect(left, context).toEqual([]);
    return;
  }
  stats.merged++;
  expect(left, context).toEqual(['merged.safetensors']);
  const reference: Reference = referenceMerge(files, c.world.kind, c.command);
  if (reference.kind === 'unknown') {
    stats.unknown++;
    return;
  }
  expect(reference.kind === 'invalid' ? reference.why : 'valid', `the merge succeeded on inputs the reference refuses\n${context}`).toBe('valid');
  if (reference.kind !== 'expected') return;
  const output = decodeSafetensors(new Uint8Array(readFileSync(p.out)));
  expect([...output.tensors.keys()], context).toEqual(reference.tensors.map((t) => t.name));
  for (const want of reference.tensors) {
    const got = output.tensors.get(want.name)!;
    expect([got.dtype, got.shape], `${want.name}\n${context}`).toEqual([want.dtype, want.shape]);
    if (want.values === null) {
      expect(Buffer.from(got.bytes).equals(Buffer.from(want.bytes)), `${want.name} copied bit for bit\n${context}`).toBe(true);
      continue;
    }
    for (let i = 0; i < want.values.length; i++) {
      const exact = want.values[i];
      const value = got.values[i];
      if (want.copied || !want.magnitude) {
        // Converted once from the stored value (NaN stays NaN; finite values may not overflow).
        const rounded = roundForDType(exact, want.dtype);
        expect(Object.is(value, rounded) || (Number.isNaN(value) && Number.isNaN(rounded)) || value === rounded, `${want.name}[${i}]: ${value} vs ${rounded}\n${context}`).toBe(true);
        if (Number.isFinite(exact)) expect(Number.isFinite(value), `${want.name}[${i}] overflowed\n${context}`).toBe(true);
      } else {
        expect(Number.isFinite(value), `${want.name}[${i}] = ${value}\n${context}`).toBe(true);
        expect(Math.abs(value - exact), `${want.name}[${i}]: ${value} vs exact ${exact}\n${context}`).toBeLessThanOrEqual(tolerance(exact, want.magnitude[i], want.underflow?.[i] ?? 0, want.dtype));
      }
    }
  }
  for (const name of reference.nonFiniteCopies) {
    expect(result.stderr, `no warning about ${name}\n${context}`).toMatch(new RegExp(`warning: .*already holds? NaN or Inf.*${name.replaceAll('.', '\\.')}`));
  }
}

describe('fuzzing the CLI with mutated inputs', () => {
  it(`${RUNS} cases through the CLI's front end in-process`, async () => {
    const rssBefore = process.resourceUsage().maxRSS * 1024;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const p = materialise(c, `case-${n++}`);
        try {
          const result = await runInWorker(argvOf(c, p));
          if ('hung' in result) throw new Error(`hung for ${CASE_TIMEOUT_MS} ms`);
          if ('crashed' in result) throw new Error(`worker died (memory?): ${result.crashed}`);
          check(c, p, result);
        } finally {
          rmSync(p.dir, { recursive: true, force: true });
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    const grew = process.resourceUsage().maxRSS * 1024 - rssBefore;
    console.log(
      `fuzz: ${stats.cases} cases: ${stats.merged} merged (${stats.unknown} outside the reference's model), ${stats.refused} refused; ` +
        `exit codes ${JSON.stringify(Object.fromEntries(stats.byCode))}; peak RSS grew by ${(grew / MB).toFixed(0)} MiB`,
    );
    expect(grew, 'peak memory of all cases together').toBeLessThan(RSS_LIMIT);
    // The mutations must reach both outcomes, or the property proves little.
    expect(stats.merged).toBeGreaterThan(RUNS / 10);
    expect(stats.refused).toBeGreaterThan(RUNS / 10);
  }, Math.max(600_000, RUNS * 2000));

  it(`${CLI_RUNS} cases through the real loramerge process, peak RSS measured`, async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const p = materialise(c, `cli-${n++}`);
        try {
          const rssFile = join(p.dir, 'rss.txt');
          const result = await runCli(argvOf(c, p), { LORAMERGE_RSS_FILE: rssFile }, ['--import', join(__dirname, 'helpers', 'report-rss.mjs')]);
          check(c, p, result);
          const peak = Number(readFileSync(rssFile, 'utf8'));
          expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(RSS_LIMIT);
        } finally {
          rmSync(p.dir, { recursive: true, force: true });
        }
      }),
      { seed: SEED + 1, numRuns: CLI_RUNS, endOnFailure: true },
    );
  }, Math.max(300_000, CLI_RUNS * 20_000));
});
