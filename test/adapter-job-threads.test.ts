/**
 * The adapter jobs' `threads` option (the command line's `--threads`), from both entry points:
 * `threads: 1` runs every product on the calling thread and the outcome's `backend` says
 * `1 thread`; `threads: 3` runs the large products on 3 threads and says so; the bytes written are
 * the same, and within f32 of float64 truth. A count that is not an integer from 1 to 1024 is
 * refused before any source is opened. On WebGPU, the products the device cannot bind run on the
 * CPU's threads too, as the plain CPU path's do. Threads are counted by the jobs handed to them,
 * never by time. The browser entry's Web Workers are stood in for by a class that runs the
 * library's worker job handler (test/helpers/stand-in-worker.ts); the Node entry runs from the
 * built library in a child process, whose worker threads' jobs a preload counts
 * (test/helpers/pool-watch.ts). Inputs: test/helpers/thread-job-cases.ts.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { combineLoras, extractLora, resizeLora, type AdapterJobOutcome } from '../src/adapter-jobs.js';
import { isMergeError } from '../src/errors.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { resizeLora as nodeResizeLora } from '../src/node.js';
import { REPO_ROOT } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { peftUpdates, relativeError } from './helpers/lora-truth.js';
import { narrowGpu } from './helpers/narrow-gpu.js';
import { poolWatch } from './helpers/pool-watch.js';
import { StandInWorker, jobsOnWorkers, stubIsolatedContext } from './helpers/stand-in-worker.js';
import type { Dense } from './helpers/svd-reference.js';
import { threadJobCases } from './helpers/thread-job-cases.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const cases = threadJobCases();

/** The three jobs from the browser entry on the CPU, with `more` options. */
const jobs = {
  resize: (more: object) => resizeLora({
    adapter: memoryInputFileSet(cases.resize.adapter, 'lora'), rule: { kind: 'rank', rank: cases.resize.rank }, backend: 'cpu', ...more,
  }),
  combine: (more: object) => combineLoras({
    adapters: [memoryInputFileSet(cases.combine.one, 'one'), { source: memoryInputFileSet(cases.combine.two, 'two'), weight: cases.combine.weights[1] }],
    method: 'svd', rank: cases.combine.rank, backend: 'cpu', ...more,
  }),
  extract: (more: object) => extractLora({
    base: memoryInputFileSet(cases.extract.base, 'base'), tuned: memoryInputFileSet(cases.extract.tuned, 'tuned'), rank: cases.extract.rank, backend: 'cpu', ...more,
  }),
};

async function peftOutput(outcome: AdapterJobOutcome): Promise<{ updates: Map<string, Dense>; bytes: Buffer }> {
  const blob = (path: string) => outcome.blobs.find((b) => b.path === path)!.blob;
  const bytes = Buffer.from(await blob('adapter_model.safetensors').arrayBuffer());
  return { updates: peftUpdates(await blob('adapter_config.json').text(), bytes), bytes };
}


beforeEach(stubIsolatedContext);
afterEach(() => vi.unstubAllGlobals());

describe('threads of the browser entry\'s jobs, in a cross-origin isolated context', () => {
  for (const name of ['resize', 'combine', 'extract'] as const) {
    it(`${name}: threads 1 runs on the calling thread and says 1 thread; threads 3 hands the products to 3 Web Workers and says so; the same bytes, within f32 of float64 truth`, async () => {
      const one = await jobs[name]({ threads: 1 });
      expect(one.backend).toBe('CPU (WebAssembly SIMD, 1 thread)');
      expect(StandInWorker.started).toEqual([]);

      const three = await jobs[name]({ threads: 3 });
      expect(three.backend).toBe('CPU (WebAssembly SIMD, 3 threads)');
      expect(StandInWorker.started.length).toBeLessThanOrEqual(3);
      expect(jobsOnWorkers()).toBeGreaterThan(0);
      expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);

      const [a, b] = [await peftOutput(one), await peftOutput(three)];
      expect(b.bytes.equals(a.bytes)).toBe(true);
      for (const [module, want] of Object.entries(cases[name].truth)) {
        expect(relativeError(a.updates.get(module)!, want), module).toBeLessThan(2e-5);
      }
    });
  }

  it('refuses a count that is not an integer from 1 to 1024, naming the option, before any source is opened', async () => {
    const refusal = (threads: unknown) => resizeLora({ adapter: memoryInputFileSet({}, 'empty'), rule: { kind: 'rank', rank: 2 }, threads } as never)
      .then(() => undefined, (e: unknown) => (isMergeError(e) ? [e.code, e.message] : e));
    expect(await refusal(0)).toEqual(['BAD_ARGUMENT', 'threads must be a positive integer, not the number 0']);
    expect(await refusal(1.5)).toEqual(['BAD_ARGUMENT', 'threads must be a positive integer, not the number 1.5']);
    expect(await refusal('4')).toEqual(['BAD_ARGUMENT', 'threads must be a positive integer, not the string "4"']);
    expect(await refusal(Number.NaN)).toEqual(['BAD_ARGUMENT', 'threads must be a positive integer, not NaN']);
    expect(await refusal(1025)).toEqual(['BAD_ARGUMENT', expect.stringMatching(/^threads is 1025; at most 1024 \(the limit MAX_THREADS/)]);
    expect(StandInWorker.started).toEqual([]);
    // The Node entry, the same way: the path is never looked at.
    const node = await nodeResizeLora({ adapter: '/nonexistent/lora', rule: { kind: 'rank', rank: 2 }, threads: -1 })
      .then(() => undefined, (e: unknown) => (isMergeError(e) ? [e.code, e.message] : e));
    expect(node).toEqual(['BAD_ARGUMENT', 'threads must be a positive integer, not the number -1']);
  });
});

describe('products the GPU cannot bind run on the CPU\'s threads, as the plain CPU path\'s do', () => {
  it('resize on WebGPU: its products, all too wide for the device, go to the Web Workers (threads as asked, 1: none), the device and the workers end with the job, and the bytes are the CPU\'s', async () => {
    const onCpu = await peftOutput(await jobs.resize({ threads: 1 }));

    const narrow = narrowGpu();
    const threaded = await jobs.resize({ backend: 'webgpu', gpu: narrow.gpu });
    expect(threaded.backend).toBe('WebGPU: nvidia hopper (narrow bindings), with 4 CPU threads for what the GPU leaves to the CPU');
    // The default: one per core (4 here), at most 8.
    expect(StandInWorker.started.length).toBeGreaterThan(0);
    expect(StandInWorker.started.length).toBeLessThanOrEqual(4);
    expect(jobsOnWorkers()).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
    expect(narrow.destroyed()).toBe(true);

    StandInWorker.started = [];
    const single = await jobs.resize({ backend: 'webgpu', gpu: narrowGpu().gpu, threads: 1 });
    expect(single.backend).toBe('WebGPU: nvidia hopper (narrow bindings), with 1 CPU thread for what the GPU leaves to the CPU');
    expect(StandInWorker.started).toEqual([]);

    for (const outcome of [threaded, single]) expect((await peftOutput(outcome)).bytes.equals(onCpu.bytes)).toBe(true);
  });
});

describe('threads of the Node entry\'s jobs (the built library, in a child process)', () => {
  it('threads 1 posts no job to a worker thread and says 1 thread; threads 3 posts them and says 3 threads; the same bytes', () => {
    const inFolder = (folder: string, files: Record<string, Uint8Array | string>) => Object.fromEntries(Object.entries(files).map(([f, b]) => [`${folder}/${f}`, b]));
    const dir = temp.make({ ...inFolder('base', cases.extract.base), ...inFolder('tuned', cases.extract.tuned) });
    const watch = poolWatch(dir);
    const node = pathToFileURL(join(REPO_ROOT, 'dist/node.js')).href;
    const script = `
      const { extractLora } = await import(${JSON.stringify(node)});
      const [dir, threads] = process.argv.slice(-2);
      const done = await extractLora({ base: dir + '/base', tuned: dir + '/tuned', rank: 8, backend: 'cpu', threads: Number(threads), out: dir + '/out-' + threads });
      console.log(done.backend);
    `;
    const run = (threads: number) => {
      const backend = execFileSync(process.execPath, [...watch.nodeArgs, '--input-type=module', '-e', script, dir, String(threads)],
        { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...watch.env() } }).trim();
      return { backend, jobs: watch.jobs(), bytes: readFileSync(join(dir, `out-${threads}`, 'adapter_model.safetensors')) };
    };
    const one = run(1), three = run(3);
    expect([one.backend, one.jobs]).toEqual(['CPU (WebAssembly SIMD, 1 thread)', 0]);
    expect(three.backend).toBe('CPU (WebAssembly SIMD, 3 threads)');
    expect(three.jobs).toBeGreaterThan(0);
    expect(three.bytes.equals(one.bytes)).toBe(true);
  });
});
