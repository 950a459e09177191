/**
 * `combine`, `resize` and `extract --threads N`, as merge's: an integer from 1 to 1024, once, or one
 * usage line (exit 2) in merge's words; `--threads 1` runs every product on the calling thread and
 * the backend line says `1 thread`; without it, one thread per core (at most 8), said as many; the
 * files written are the same bytes either way, within f32 of float64 truth; a count above the
 * processors is warned about as merge warns. The built CLI runs in a child process whose
 * processor count and worker-thread jobs a preload sets and counts (test/helpers/pool-watch.ts):
 * the threads are counted by the jobs handed to them, never by time. Inputs:
 * test/helpers/thread-job-cases.ts, on disk as a user has them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../src/cli/args.js';
import { errorLines, expectOneLine, runCli } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { peftUpdates, relativeError } from './helpers/lora-truth.js';
import { poolWatch } from './helpers/pool-watch.js';
import { threadJobCases } from './helpers/thread-job-cases.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** Each command's arguments, as a user types them, but --backend and --threads: its inputs' folders under `dir`, its --out `out`. */
function commandArgs(name: 'combine' | 'resize' | 'extract', dir: string, out: string): string[] {
  const at = (folder: string) => join(dir, folder);
  switch (name) {
    case 'combine': return ['combine', '--adapter', at('one'), '--adapter', at('two'), '--weight', '-0.5', '--method', 'svd', '--rank', '32', '--out', out];
    case 'resize': return ['resize', '--adapter', at('lora'), '--rank', '8', '--out', out];
    case 'extract': return ['extract', '--base', at('base'), '--tuned', at('tuned'), '--rank', '8', '--out', out];
  }
}
const NAMES = ['combine', 'resize', 'extract'] as const;
const typed = (name: typeof NAMES[number]) => commandArgs(name, '.', 'out');

describe('--threads of combine, resize and extract, parsed as merge\'s', () => {
  it.each(NAMES)('%s takes an integer from 1 to 1024, once, and leaves it out when not given', (name) => {
    expect(parseCommandLine([...typed(name), '--threads', '16'])).toMatchObject({ command: name, threads: 16 });
    expect(parseCommandLine([...typed(name), '--threads', '1'])).toMatchObject({ command: name, threads: 1 });
    expect(parseCommandLine(typed(name))).not.toHaveProperty('threads');
    for (const bad of ['0', '-2', '1.5', '8.0', '1e1', 'eight', '1025', '0x8', ' 4', '']) {
      const refusal = `--threads must be an integer from 1 to 1024, not "${bad}" (see loramerge --help)`;
      expect(() => parseCommandLine([...typed(name), '--threads', bad]), bad).toThrow(refusal);
      // merge's words, exactly.
      expect(() => parseCommandLine(['merge', '--base', 'm', '--adapter', 'x', '--out', 'o', '--threads', bad]), bad).toThrow(refusal);
    }
    expect(() => parseCommandLine([...typed(name), '--threads', '2', '--threads', '4'])).toThrow('--threads given twice (see loramerge --help)');
    expect(() => parseCommandLine([...typed(name), '--threads'])).toThrow('--threads needs a value: an integer from 1 to 1024 (see loramerge --help)');
  });

  it.each(NAMES)('%s refuses a bad count in one line, exit 2, before reading any file', async (name) => {
    const run = await runCli([...commandArgs(name, '/nonexistent', '/nonexistent/out'), '--threads', '-1']);
    expect(run.code).toBe(2);
    expectOneLine(run.stderr, /^error: --threads must be an integer from 1 to 1024, not "-1" \(see loramerge --help\)$/);
  });

  it('is in the usage of every command that runs on the CPU\'s threads', async () => {
    const help = (await runCli(['resize', '--help'])).stdout;
    expect(help).toContain('(combine, resize, extract also take [--backend auto|webgpu|cpu] [--threads N] [--overwrite];');
    expect(help).toMatch(/--threads +threads of the CPU merge, or of combine's, resize's and extract's products on the CPU/);
  });
});

describe('combine, resize and extract on the CPU\'s threads', () => {
  const cases = threadJobCases();
  const inFolder = (folder: string, files: Record<string, Uint8Array | string>) => Object.fromEntries(Object.entries(files).map(([f, b]) => [`${folder}/${f}`, b]));
  const dir = temp.make({
    ...inFolder('lora', cases.resize.adapter), ...inFolder('one', cases.combine.one), ...inFolder('two', cases.combine.two),
    ...inFolder('base', cases.extract.base), ...inFolder('tuned', cases.extract.tuned),
  });
  const watch = poolWatch(dir);

  /** Runs a command with the inputs of `dir`, into its own --out, as if on `cores` processors; its stderr, worker-thread jobs and weights. */
  async function run(name: typeof NAMES[number], extra: string[], cores: number, out: string) {
    const r = await runCli([...commandArgs(name, dir, join(dir, out)), '--backend', 'cpu', ...extra], watch.env(cores), watch.nodeArgs);
    expect(r.code, r.stderr).toBe(0);
    const bytes = readFileSync(join(dir, out, 'adapter_model.safetensors'));
    const updates = peftUpdates(readFileSync(join(dir, out, 'adapter_config.json'), 'utf8'), bytes);
    return { stderr: r.stderr, jobs: watch.jobs(), bytes, updates };
  }

  it.each(NAMES)('%s --threads 1 hands no job to a worker thread and says 1 thread; without it, on 3 cores, 3 threads take jobs; the same bytes, within f32 of float64 truth', async (name) => {
    const one = await run(name, ['--threads', '1'], 3, `${name}-1`);
    expect(one.stderr).toMatch(/^backend: CPU \(WebAssembly SIMD, 1 thread\)$/m);
    expect(one.jobs).toBe(0);
    const byDefault = await run(name, [], 3, `${name}-default`);
    expect(byDefault.stderr).toMatch(/^backend: CPU \(WebAssembly SIMD, 3 threads\)$/m);
    expect(byDefault.jobs).toBeGreaterThan(0);
    expect(byDefault.bytes.equals(one.bytes)).toBe(true);
    for (const [module, want] of Object.entries(cases[name].truth)) {
      expect(relativeError(one.updates.get(module)!, want), module).toBeLessThan(2e-5);
    }
    // Neither count is above the 3 processors: no word of threads among the warnings (combine's rank one is expected).
    for (const r of [one, byDefault]) expect(r.stderr).not.toMatch(/^warning: --threads/m);
  });

  // Dawn's WebGPU (SwiftShader where there is no GPU): the products run on the GPU, and the line names the CPU's threads for those it cannot bind.
  it.for([3, 1])('resize --backend webgpu --threads %i: the backend line names the CPU threads for what the GPU leaves to the CPU, within f32 of float64 truth', async (threads, ctx) => {
    const out = `resize-webgpu-${threads}`;
    const r = await runCli([...commandArgs('resize', dir, join(dir, out)), '--backend', 'webgpu', '--threads', String(threads)], watch.env(3), watch.nodeArgs);
    if (r.code !== 0 && /WebGPU for Node could not start|no usable GPU|no GPU adapter/i.test(r.stderr)) ctx.skip();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^backend: WebGPU: .+, with ${threads} CPU threads? for what the GPU leaves to the CPU$`, 'm'));
    const updates = peftUpdates(readFileSync(join(dir, out, 'adapter_config.json'), 'utf8'), readFileSync(join(dir, out, 'adapter_model.safetensors')));
    for (const [module, want] of Object.entries(cases.resize.truth)) {
      expect(relativeError(updates.get(module)!, want), module).toBeLessThan(2e-5);
    }
  });

  it('warns of a count above the processors as merge does, and runs on that many threads', async () => {
    const r = await run('resize', ['--threads', '3'], 2, 'resize-3-on-2');
    expect(r.stderr).toMatch(/^backend: CPU \(WebAssembly SIMD, 3 threads\)$/m);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('warning:'))).toEqual([
      'warning: --threads 3 is more than the 2 processors here: the threads past them add no speed, and each takes about 14 MiB of memory',
    ]);
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.jobs).toBeGreaterThan(0);
  });
});
