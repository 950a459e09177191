/**
 * The browser entry's adapter jobs (resizeLora, combineLoras, extractLora) run the CPU algebra as
 * merge() runs the CPU merge: on Web Workers sharing memory wherever the context can have them (a
 * cross-origin isolated page or worker), stopped when the job ends however it ends; elsewhere on
 * one thread, the outcome saying so and why. Here in Node, Web Workers are stood in for by a class
 * that runs the library's worker job handler (test/helpers/stand-in-worker.ts), so what is tested
 * is the choice, the threads' use and their end, and the results: against float64 truth computed
 * here, and byte for byte against the same job on one thread. Inputs: Llama module names, PEFT
 * factors in F32, and F32 base and tuned weights, at sizes whose products go to the threads.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { combineLoras, extractLora, resizeLora } from '../src/adapter-jobs.js';
import type { ResidentMatrix } from '../src/algebra/algebra-backend.js';
import { CpuAlgebra } from '../src/algebra/cpu-algebra.js';
import type { Mat } from '../src/algebra/matrix.js';
import { isMergeError } from '../src/errors.js';
import { Pacer } from '../src/event-turns.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import type { PoolJob } from '../src/engine/cpu/cpu-worker-protocol.js';
import type { OutputTarget } from '../src/io/types.js';
import { peftLoraOn } from './helpers/adapter-fixtures.js';
import { buildSafetensors, seededRandom } from './helpers/fixtures.js';
import { peftUpdates } from './helpers/lora-truth.js';
import { StandInWorker } from './helpers/stand-in-worker.js';
import { frob2, minus, type Dense } from './helpers/svd-reference.js';
import { Q, threadJobCases } from './helpers/thread-job-cases.js';

const ONE_THREAD = 'CPU (WebAssembly SIMD, 1 thread; no worker threads: the page is not cross-origin isolated, so workers cannot share memory)';

const relative = (got: Dense, want: Dense) => Math.sqrt(frob2(minus(got, want)) / frob2(want));

async function peftOutput(outcome: Awaited<ReturnType<typeof resizeLora>>): Promise<{ updates: Map<string, Dense>; bytes: Uint8Array }> {
  const blob = (path: string) => outcome.blobs.find((b) => b.path === path)!.blob;
  const bytes = new Uint8Array(await blob('adapter_model.safetensors').arrayBuffer());
  return { updates: peftUpdates(await blob('adapter_config.json').text(), bytes), bytes };
}

/** The three jobs on inputs whose products are large enough for the threads (thread-job-cases.ts), with their float64 truth. */
function jobs() {
  const { resize, combine, extract } = threadJobCases();
  return {
    resize: {
      run: (more: object = {}) => resizeLora({ adapter: memoryInputFileSet(resize.adapter, 'lora'), rule: { kind: 'rank', rank: resize.rank }, backend: 'cpu', ...more }),
      truth: resize.truth, singularValues: resize.singularValues,
    },
    combine: {
      run: (more: object = {}) => combineLoras({
        adapters: [memoryInputFileSet(combine.one, 'one'), { source: memoryInputFileSet(combine.two, 'two'), weight: combine.weights[1] }],
        method: 'svd', rank: combine.rank, backend: 'cpu', ...more,
      }),
      truth: combine.truth, singularValues: undefined,
    },
    extract: {
      run: (more: object = {}) => extractLora({
        base: memoryInputFileSet(extract.base, 'base'), tuned: memoryInputFileSet(extract.tuned, 'tuned'), rank: extract.rank, backend: 'cpu', ...more,
      }),
      truth: extract.truth, singularValues: extract.singularValues,
    },
  };
}

beforeEach(() => {
  StandInWorker.started = [];
  vi.stubGlobal('Worker', StandInWorker);
  vi.stubGlobal('navigator', { hardwareConcurrency: 4 });
});
afterEach(() => vi.unstubAllGlobals());

describe('adapter jobs from the browser entry: threads where the context is cross-origin isolated, one thread and why elsewhere', () => {
  const cases = jobs();
  for (const name of ['resize', 'combine', 'extract'] as const) {
    it(`${name}: on Web Workers (the library's worker script), stopped at the end, the same bytes as on one thread, within f32 of float64 truth`, async () => {
      const job = cases[name];
      vi.stubGlobal('crossOriginIsolated', true);
      const threaded = await job.run();
      expect(threaded.backend).toBe('CPU (WebAssembly SIMD, 4 threads)');
      const working = StandInWorker.started.filter((w) => w.jobs > 0);
      expect(working.length).toBeGreaterThanOrEqual(2);
      expect(StandInWorker.started.every((w) => String(w.url).endsWith('/browser-cpu-worker.js') && w.options?.type === 'module')).toBe(true);
      expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);

      StandInWorker.started = [];
      vi.stubGlobal('crossOriginIsolated', false);
      const alone = await job.run();
      expect(alone.backend).toBe(ONE_THREAD);
      expect(StandInWorker.started).toEqual([]);

      const [many, one] = [await peftOutput(threaded), await peftOutput(alone)];
      // Each output element is the same f32 sum, in the same order, however the rows were cut.
      expect(Buffer.from(many.bytes).equals(Buffer.from(one.bytes))).toBe(true);
      for (const [module, want] of Object.entries(job.truth)) {
        expect(relative(many.updates.get(module)!, want), module).toBeLessThan(2e-5);
      }
      if (job.singularValues) {
        const found = threaded.modules[0].singularValues;
        expect(found.slice(0, 8).map((s, i) => s / job.singularValues[i])).toEqual(found.slice(0, 8).map(() => expect.closeTo(1, 5)));
      }
    });
  }

  it('a cancelled job stops its workers', async () => {
    vi.stubGlobal('crossOriginIsolated', true);
    const controller = new AbortController();
    const error = await cases.combine.run({ signal: controller.signal, onProgress: (e: { tensorsDone: number }) => { if (e.tensorsDone >= 1) controller.abort(); } })
      .then(() => undefined, (e: unknown) => e);
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect(StandInWorker.started.filter((w) => w.jobs > 0).length).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
  });

  it('a cancel while a product runs on the workers is seen within a block: extract rejects ABORTED once the blocks in flight answer, no block is handed out after it, and every worker stops', async () => {
    vi.stubGlobal('crossOriginIsolated', true);
    // A 1024-hidden model's up_proj (intermediate 4096), F32: the randomized SVD's first product,
    // ΔW (4096 × 1024) by 160 columns at rank 128, goes to the threads in 8 blocks of 512 rows.
    const rand = seededRandom(7);
    const up = 'model.layers.0.mlp.up_proj.weight';
    const base = new Float32Array(4096 * 1024).map(() => Math.fround((rand() - 0.5) * 0.04));
    const tuned = base.map((x) => Math.fround(x + (rand() - 0.5) * 0.002));
    const model = (w: Float32Array) => memoryInputFileSet({ 'model.safetensors': buildSafetensors([{ name: up, dtype: 'F32', shape: [4096, 1024], data: w }]) }, 'model');
    const extract = (more: object = {}) => extractLora({ base: model(base), tuned: model(tuned), rank: 128, backend: 'cpu', ...more });

    // Every product block a stand-in worker is posted and answers, in order, with the product's key.
    type Seen = { what: 'post' | 'reply'; key: number; at: number };
    let seen: Seen[] = [];
    let onReply: ((key: number) => void) | undefined;
    class Watched extends StandInWorker {
      constructor(url: URL | string, options?: WorkerOptions) {
        super(url, options);
        // Before the pool's own listener: the pool sees an abort made here at once.
        this.addEventListener('message', () => {
          const key = this.keys.shift()!;
          seen.push({ what: 'reply', key, at: performance.now() });
          onReply?.(key);
        });
      }
      private readonly keys: number[] = [];
      override postMessage(job: PoolJob): void {
        if (!('kind' in job)) {
          this.keys.push(job.rightKey);
          seen.push({ what: 'post', key: job.rightKey, at: performance.now() });
        }
        super.postMessage(job);
      }
    }
    vi.stubGlobal('Worker', Watched);

    // Uncancelled: how many blocks the first product hands out (8 of 512 rows on 4 threads).
    await extract();
    const first = seen[0].key;
    const blocksOf = (events: Seen[], key: number) => events.filter((e) => e.key === key && e.what === 'post').length;
    const productBlocks = blocksOf(seen, first);
    expect(productBlocks).toBe(8);

    // Cancelled once a worker answers the first product's first block.
    StandInWorker.started = [];
    seen = [];
    const controller = new AbortController();
    let abortedAt = 0;
    onReply = () => {
      if (abortedAt) return;
      abortedAt = performance.now();
      controller.abort(new Error('stop'));
    };
    const error = await extract({ signal: controller.signal }).then(() => undefined, (e: unknown) => e);
    const atRejection = [...seen];
    onReply = undefined;
    expect(isMergeError(error) && [error.code, error.message, error.cause]).toEqual(['ABORTED', 'extract cancelled', controller.signal.reason]);
    expect(abortedAt).toBeGreaterThan(0);
    // Counted in events, not in milliseconds: without the signal the product would hand out all 8
    // blocks; with it, only those already handed to the 4 threads run, and none is handed out after.
    expect(seen.filter((e) => e.what === 'post' && e.at > abortedAt)).toEqual([]);
    const cancelledKey = seen[0].key;
    expect(blocksOf(seen, cancelledKey)).toBeLessThanOrEqual(4);
    expect(blocksOf(seen, cancelledKey)).toBeLessThan(productBlocks);
    // The job rejects only once every block in flight has answered (their memory is then free to reuse).
    expect(atRejection.filter((e) => e.what === 'reply').length).toBe(atRejection.filter((e) => e.what === 'post').length);
    expect(StandInWorker.started.filter((w) => w.jobs > 0).length).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
  });

  it('on one thread (a page that is not cross-origin isolated), a cancel from a timer is seen while a product runs: extract rejects ABORTED before the product ends, no block starts after it, and every product of the job is given the signal', async () => {
    vi.stubGlobal('crossOriginIsolated', false);
    // Llama-2-7B's q_proj (4096 × 4096), F32: at rank 128 the randomized SVD's passes over ΔW are
    // products by 160 columns, 2.7·10⁹ multiply-adds each, a large fraction of a second each on one thread.
    const rand = seededRandom(11);
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const base = new Float32Array(4096 * 4096).map(() => Math.fround((rand() - 0.5) * 0.04));
    const tuned = base.map((x) => Math.fround(x + (rand() - 0.5) * 0.002));
    const model = (w: Float32Array) => memoryInputFileSet({ 'model.safetensors': buildSafetensors([{ name: q, dtype: 'F32', shape: [4096, 4096], data: w }]) }, 'model');
    const extract = (signal: AbortSignal) => extractLora({ base: model(base), tuned: model(tuned), rank: 128, backend: 'cpu', signal });

    // Blocks counted, not milliseconds: on one thread a product looks at its signal, and gives the
    // event loop its turns, through a pacer's tick before each block of 64 rows.
    let ticks = 0;
    const tick = Pacer.prototype.tick;
    vi.spyOn(Pacer.prototype, 'tick').mockImplementation(function (this: Pacer) {
      ticks++;
      return tick.call(this);
    });
    // Every product the job asks of the CPU algebra: which, its size, its signal, when it ran, and
    // the ticks (blocks) before it began and once it ended.
    type Call = { kind: 'times' | 'timesT'; macs: number; signal: AbortSignal | undefined; start: number; end?: number; ticks: number; ticksAtEnd?: number };
    let calls: Call[] = [];
    let onCall: ((call: Call) => void) | undefined;
    const times = CpuAlgebra.prototype.times, timesT = CpuAlgebra.prototype.timesT;
    const watch = (kind: Call['kind'], real: typeof times) => async function (this: CpuAlgebra, a: ResidentMatrix, y: Mat, signal?: AbortSignal) {
      const call: Call = { kind, macs: a.rows * a.cols * y.cols, signal, start: performance.now(), ticks };
      calls.push(call);
      onCall?.(call);
      try {
        return await real.call(this, a, y, signal);
      } finally {
        call.end = performance.now();
        call.ticksAtEnd = ticks;
      }
    };
    vi.spyOn(CpuAlgebra.prototype, 'times').mockImplementation(watch('times', times));
    vi.spyOn(CpuAlgebra.prototype, 'timesT').mockImplementation(watch('timesT', timesT));
    const isPass = (c: Call) => c.macs === 4096 * 4096 * 160;

    try {
      // Uncancelled, under a signal that never fires: every product has it (the passes over ΔW,
      // the re-orthonormalisations' Gram matrices and bases, the factors' projections), and the
      // first Aᵀ·Y pass's blocks (ΔW's 4096 columns in blocks of 64).
      const idle = new AbortController();
      const outcome = await extract(idle.signal);
      expect(outcome.backend).toBe(ONE_THREAD);
      expect(calls.filter(isPass).map((c) => c.kind)).toEqual(['times', 'timesT', 'times', 'timesT', 'times', 'timesT', 'times', 'timesT']);
      expect(calls.filter((c) => c.macs >= 1 << 20).length).toBeGreaterThan(20);
      expect(calls.filter((c) => c.signal !== idle.signal)).toEqual([]);
      const pass = calls.find((c) => isPass(c) && c.kind === 'timesT')!;
      const passBlocks = pass.ticksAtEnd! - pass.ticks;
      expect(passBlocks).toBe(4096 / 64);

      // Cancelled from a timer set as that pass starts: the timer can only fire once the product
      // gives the event loop a turn.
      calls = [];
      const controller = new AbortController();
      let started = false, abortedAt = 0, ticksAtAbort = -1;
      onCall = (c) => {
        if (started || !isPass(c) || c.kind !== 'timesT') return;
        started = true;
        setTimeout(() => {
          abortedAt = performance.now();
          ticksAtAbort = ticks;
          controller.abort(new Error('stop'));
        }, 0);
      };
      const error = await extract(controller.signal).then(() => undefined, (e: unknown) => e);
      expect(isMergeError(error) && [error.code, error.message, error.cause]).toEqual(['ABORTED', 'extract cancelled', controller.signal.reason]);
      expect(abortedAt).toBeGreaterThan(0);
      // The abort came while that pass ran (after some of its blocks), no block started after it,
      // and the pass ended with fewer blocks than it has.
      const cancelled = calls.filter(isPass);
      expect(cancelled.length).toBe(2);
      expect(abortedAt).toBeLessThan(cancelled[1].end!);
      expect(ticksAtAbort).toBeGreaterThan(cancelled[1].ticks);
      expect(ticks, 'blocks started after the abort').toBe(ticksAtAbort);
      expect(cancelled[1].ticksAtEnd! - cancelled[1].ticks).toBeLessThan(passBlocks);
    } finally {
      onCall = undefined;
      vi.restoreAllMocks();
    }
  }, 120_000);

  it('a job that fails after its workers ran stops them too, and leaves its output aborted', async () => {
    vi.stubGlobal('crossOriginIsolated', true);
    const calls: string[] = [];
    const out: OutputTarget = {
      name: 'out',
      createFile: async () => { throw new Error('the disk is full'); },
      commit: async () => { calls.push('commit'); },
      abort: async () => { calls.push('abort'); },
    };
    const error = await cases.resize.run({ out }).then(() => undefined, (e: unknown) => e);
    expect((error as Error).message).toMatch(/the disk is full/);
    expect(calls).toEqual(['abort']);
    expect(StandInWorker.started.filter((w) => w.jobs > 0).length).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
  });

  it('in Node, where there are no Web Workers, the browser entry says where the threads are', async () => {
    vi.stubGlobal('Worker', undefined);
    const outcome = await resizeLora({
      adapter: memoryInputFileSet(peftLoraOn(Q, 64, 64, seededRandom(2), 4), 'lora'),
      rule: { kind: 'rank', rank: 2 }, backend: 'cpu',
    });
    expect(outcome.backend).toBe('CPU (WebAssembly SIMD, 1 thread; no worker threads: Node has no Web Workers (loramerge/node runs the CPU backend on worker threads))');
  });
});
