/**
 * The fuzzer on the input surfaces beyond plain safetensors + LoRA (fuzz-surfaces.ts): GGUF bases
 * and llama.cpp LoRA adapters, the LyCORIS algorithms, PEFT method folders, sharded and diffusers
 * model folders and bitsandbytes bases, mutated, run through the CLI's front end. For every case:
 *   - exit 0, the output equal to the float64 truth (merged tensors within the rounding of their
 *     dtype, every other tensor bit for bit), and --out holding only the output; or
 *   - exactly one clear `error:` line, no stack trace or internal error, a documented exit code,
 *     and nothing at --out;
 * the inputs unchanged, and bounded time and memory. Most cases run in a worker thread (a case that
 * hangs is stopped by terminating it); a few run the real `loramerge` process with its peak RSS
 * measured. Seeded; `npm test` runs a bounded number of cases, `npm run fuzz` many more
 * (FUZZ_SURFACE_RUNS, FUZZ_SURFACE_CLI_RUNS, FUZZ_SEED).
 * Run `npm run build:lib` first when calling vitest directly: the cases run the built CLI.
 */
import fc from 'fast-check';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLines, runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { decodeFiles, surfaceCase, surfaceTruth, writeSurfaceCase, type SurfaceCase } from './helpers/fuzz-surfaces.js';

const RUNS = Number(process.env.FUZZ_SURFACE_RUNS ?? 1200);
const CLI_RUNS = Number(process.env.FUZZ_SURFACE_CLI_RUNS ?? 6);
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
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

function filesUnder(dir: string): Map<string, Uint8Array> {
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

function argvOf(c: SurfaceCase, dir: string): string[] {
  const base = join(dir, 'in', c.world.base);
  const adapter = join(dir, 'in', c.world.adapter);
  switch (c.command.command) {
    case 'inspect-base': return ['inspect', base];
    case 'inspect-adapter': return ['inspect', adapter];
    case 'dry-run': return ['merge', '--base', base, '--adapter', adapter, '--weight', String(c.command.weight), '--dry-run', '--backend', 'cpu'];
    default: return ['merge', '--base', base, '--adapter', adapter, '--weight', String(c.command.weight), '--out', join(dir, 'out', c.world.out), '--backend', 'cpu'];
  }
}

/** One ulp of `dtype` at x, plus the f32 accumulation's error on terms of size `magnitude`. */
function tolerance(exact: number, magnitude: number, dtype: string): number {
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(exact === 0 ? minExp : Math.floor(Math.log2(Math.abs(exact))), minExp);
  return 2 ** (e - mant) + 2 ** -20 * magnitude + 2 ** -126;
}

const stats = { cases: 0, merged: 0, checked: 0, refused: 0, byWorld: new Map<string, string>() };
const tally = (world: string, what: string) => {
  const counts = JSON.parse(stats.byWorld.get(world) ?? '{}') as Record<string, number>;
  counts[what] = (counts[what] ?? 0) + 1;
  stats.byWorld.set(world, JSON.stringify(counts));
};

function check(c: SurfaceCase, dir: string, written: Map<string, Uint8Array>, result: Outcome): void {
  stats.cases++;
  const context = `${c.world.name}: ${c.command.command} → exit ${result.code}\n${result.stderr}`;
  expect(result.stderr, context).not.toMatch(/\n\s+at |internal error|runCommandLine threw/);
  // The inputs are never changed.
  const after = filesUnder(join(dir, 'in'));
  expect([...after.keys()].sort(), context).toEqual([...written.keys()].sort());
  for (const [path, bytes] of written) expect(Buffer.from(after.get(path)!).equals(Buffer.from(bytes)), `${path} changed\n${context}`).toBe(true);
  const left = readdirSync(join(dir, 'out'));
  if (result.code !== 0) {
    stats.refused++;
    tally(c.world.name, 'refused');
    expect([1, 2, 3], context).toContain(result.code);
    expect(errorLines(result.stderr), context).toHaveLength(1);
    expect(left, context).toEqual([]);
    return;
  }
  expect(errorLines(result.stderr), context).toEqual([]);
  if (c.command.command !== 'merge') {
    expect(left, context).toEqual([]);
    tally(c.world.name, 'ok');
    return;
  }
  stats.merged++;
  expect(left, context).toEqual([c.world.out]);
  const truth = surfaceTruth(c, written);
  tally(c.world.name, `merged, ${truth.kind}`);
  if (truth.kind === 'unknown') return;
  expect(truth.kind === 'invalid' ? truth.why : 'valid', `the merge succeeded on inputs it must refuse\n${context}`).toBe('valid');
  if (truth.kind !== 'expected') return;
  stats.checked++;
  // The output, keyed like the base: a folder's files under the base's folder name.
  const outPath = join(dir, 'out', c.world.out);
  const outFiles = statSync(outPath).isDirectory()
    ? new Map([...filesUnder(outPath)].map(([p, b]) => [`${c.world.base}/${p}`, b] as [string, Uint8Array]))
    : new Map([[c.world.out, new Uint8Array(readFileSync(outPath))]]);
  const output = decodeFiles(outFiles);
  expect(output, `the output does not decode\n${context}`).not.toBeNull();
  const baseFiles = new Map([...written].filter(([p]) => p === c.world.base || p.startsWith(`${c.world.base}/`)));
  const base = decodeFiles(baseFiles)!;
  expect([...output!.tensors.keys()].sort(), context).toEqual([...base.tensors.keys()].sort());
  for (const [key, stored] of base.tensors) {
    const got = output!.tensors.get(key)!;
    expect([got.dtype, got.shape], `${key}\n${context}`).toEqual([stored.dtype, stored.shape]);
    const want = truth.merged.get(key);
    if (!want) {
      expect(Buffer.from(got.bytes).equals(Buffer.from(stored.bytes)), `${key} copied bit for bit\n${context}`).toBe(true);
      continue;
    }
    for (let i = 0; i < want.values.length; i++) {
      const exact = want.values[i];
      expect(Number.isFinite(got.values[i]), `${key}[${i}] = ${got.values[i]}\n${context}`).toBe(true);
      expect(Math.abs(got.values[i] - exact), `${key}[${i}]: ${got.values[i]} vs exact ${exact}\n${context}`).toBeLessThanOrEqual(tolerance(exact, want.magnitude, stored.dtype));
    }
  }
}

/** Writes a case's files under dir/in (with an empty dir/out); returns what was written. */
function materialise(c: SurfaceCase, dir: string): Map<string, Uint8Array> {
  rmSync(dir, { recursive: true, force: true });
  const written = writeSurfaceCase(c);
  for (const [path, bytes] of written) {
    mkdirSync(dirname(join(dir, 'in', path)), { recursive: true });
    writeFileSync(join(dir, 'in', path), bytes);
  }
  // An adapter folder whose files were all dropped still exists.
  mkdirSync(join(dir, 'in', c.world.adapter.endsWith('.safetensors') || c.world.adapter.endsWith('.gguf') ? '.' : c.world.adapter), { recursive: true });
  mkdirSync(join(dir, 'out'), { recursive: true });
  return written;
}

describe('fuzzing GGUF, LyCORIS, PEFT methods and model folders', () => {
  it(`${RUNS} cases through the CLI's front end in-process`, async () => {
    const rssBefore = process.resourceUsage().maxRSS * 1024;
    let n = 0;
    await fc.assert(
      fc.asyncProperty(surfaceCase, async (c) => {
        const dir = join(root, `case-${n++}`);
        const written = materialise(c, dir);
        try {
          const result = await runInWorker(argvOf(c, dir));
          if ('hung' in result) throw new Error(`${c.world.name}: hung for ${CASE_TIMEOUT_MS} ms`);
          if ('crashed' in result) throw new Error(`${c.world.name}: worker died (memory?): ${result.crashed}`);
          check(c, dir, written, result);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    const grew = process.resourceUsage().maxRSS * 1024 - rssBefore;
    console.log(
      `fuzz surfaces: ${stats.cases} cases: ${stats.merged} merged (${stats.checked} against the truth), ${stats.refused} refused; peak RSS grew by ${(grew / MB).toFixed(0)} MiB\n` +
        [...stats.byWorld].map(([w, counts]) => `  ${w}: ${counts}`).join('\n'),
    );
    expect(grew, 'peak memory of all cases together').toBeLessThan(RSS_LIMIT);
    // The mutations must reach both outcomes, and merges checked against the truth, or the property proves little.
    expect(stats.checked).toBeGreaterThan(RUNS / 10);
    expect(stats.refused).toBeGreaterThan(RUNS / 10);
  }, Math.max(600_000, RUNS * 2000));

  it(`${CLI_RUNS} cases through the real loramerge process, peak RSS measured`, async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(surfaceCase, async (c) => {
        const dir = join(root, `cli-${n++}`);
        const written = materialise(c, dir);
        try {
          const rssFile = join(dir, 'rss.txt');
          const result = await runCli(argvOf(c, dir), { LORAMERGE_RSS_FILE: rssFile }, ['--import', join(__dirname, 'helpers', 'report-rss.mjs')]);
          check(c, dir, written, result);
          const peak = Number(readFileSync(rssFile, 'utf8'));
          expect(peak, `peak RSS ${(peak / MB).toFixed(0)} MiB`).toBeLessThan(RSS_LIMIT);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { seed: SEED + 1, numRuns: CLI_RUNS, endOnFailure: true },
    );
  }, Math.max(300_000, CLI_RUNS * 20_000));
});
