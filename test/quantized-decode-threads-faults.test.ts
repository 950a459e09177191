/**
 * Cancellation and worker faults while a quantized base's rows are decoded on the CPU backend's
 * worker threads (formats/row-decoders.ts on the pool): the thread fuzzer's bases
 * (helpers/fuzz-thread-worlds.ts, real Llama key names, shapes and quantization configs),
 * merged into a folder on disk.
 *   - An abort while the first slab is being decoded stops the merge: ABORTED with the reason,
 *     no slab decoded after it, at most one piece per thread handed out after it, nothing left
 *     at the output (not even a temporary file); and the pool then merges the base to the bytes
 *     of one thread (no piece of the cancelled call still writing into its scratch).
 *   - A worker that dies while it decodes or merges (its thread exits) ends the merge in one line,
 *     not a hang: a WORKER_FAILED MergeError naming the tensor and saying what to do (one thread,
 *     or fewer threads or more memory), the CLI's exit code for a failed merge, nothing at the output.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { RowBlockPool, type PoolWorker } from '../src/engine/cpu/row-block-pool.js';
import type { WorkerReply } from '../src/engine/cpu/cpu-worker-protocol.js';
import type { RowSource } from '../src/formats/row-decoders.js';
import { isMergeError } from '../src/errors.js';
import { EXIT_FAILED, exitCodeFor } from '../src/cli/exit-codes.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type OutputTarget } from '../src/index.js';
import { createNodeOutputTarget } from '../src/node.js';
import { tempDirs } from './helpers/fixtures.js';
import { threadCase, type ThreadCase, type ThreadFormat } from './helpers/fuzz-thread-worlds.js';
import { threadBackends } from './helpers/thread-backends.js';

const threads = threadBackends();
const temp = tempDirs();
afterAll(temp.removeAll);

/**
 * A hostile-free case of `format` whose q_proj spans two slabs or more, each above the pool's
 * 64 Ki-value floor: slabs of 280 000 bytes hold 70 000 f32 values (140 000 of a 2-byte view).
 */
function severalSlabs(format: ThreadFormat): ThreadCase {
  for (let i = 0; ; i++) {
    const c = threadCase(20261401, i, { formats: [format], hostileShare: 0 });
    if (c.rows['model.layers.0.self_attn.q_proj'] * c.cols >= 190_000) return { ...c, slabBytes: 280_000, label: c.label.replace(/slab \d+ B/, 'slab 280000 B') };
  }
}

async function mergeInto(c: ThreadCase, backend: CpuBackend, output: OutputTarget, signal?: AbortSignal): Promise<unknown> {
  const prepared = await prepareMerge(memoryInputFileSet(c.files, 'model'), [{ files: memoryInputFileSet(c.adapter, 'adapter') }]);
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend, outDtype: c.outDtype, slabBytes: c.slabBytes, ...(signal ? { signal } : {}) });
    return undefined;
  } catch (e) {
    return e;
  } finally {
    await prepared.close();
  }
}

async function mergedBytes(c: ThreadCase, backend: CpuBackend): Promise<Uint8Array> {
  const output = createBlobOutputTarget();
  expect(await mergeInto(c, backend, output)).toBeUndefined();
  return new Uint8Array(await output.files().find((f) => f.path === 'model.safetensors')!.blob.arrayBuffer());
}

describe('cancelling a merge while its quantized rows are decoded on the worker threads', () => {
  it.for(['bnb-nf4', 'bnb-int8', 'mlx-affine', 'gptq', 'awq', 'ct-packed', 'ct-int8', 'modelopt-nvfp4', 'comfy-nvfp4', 'comfy-mxfp8'] as ThreadFormat[])(
    '%s: ABORTED with the reason, no further slab or piece, nothing at the output; the pool then merges as one thread does',
    async (format) => {
      const c = severalSlabs(format);
      const backend = threads.backend(threads.sharedPool);
      const controller = new AbortController();
      const stop = new Error('the user pressed stop');
      // The backend's decoder, entered: the abort comes once the first slab's pieces are out. The
      // pipeline reads slabs ahead, so more may be asked for; none may be decoded or shared.
      const pool = threads.sharedPool.sent;
      const before = pool.decodePieces;
      let atAbort: { pieces: number; sources: number } | undefined;
      const decodeRows = backend.decodeRows.bind(backend);
      backend.decodeRows = (source, r0, r1, signal, out) => {
        const running = decodeRows(source, r0, r1, signal, out);
        if (!controller.signal.aborted) {
          controller.abort(stop);
          atAbort = { pieces: pool.decodePieces, sources: pool.decodeSources };
        }
        return running;
      };
      const dir = temp.make();
      const out = join(dir, 'merged');
      const error = await mergeInto(c, backend, await createNodeOutputTarget(out, 'folder', []), controller.signal);
      expect((error as Error)?.name, c.label).toBe('AbortError');
      expect(isMergeError(error) && error.code).toBe('ABORTED');
      expect((error as Error).cause).toBe(stop);
      // No piece handed out and no source copied to the threads once the signal was aborted.
      expect(atAbort, c.label).toBeDefined();
      expect(atAbort!.pieces, `the first slab went to the worker\n${c.label}`).toBeGreaterThan(before);
      expect({ pieces: pool.decodePieces, sources: pool.decodeSources }, c.label).toEqual(atAbort);
      expect(readdirSync(dir), c.label).toEqual([]);
      backend.decodeRows = decodeRows;
      const single = threads.backend();
      expect(Buffer.from(await mergedBytes(c, backend)).equals(Buffer.from(await mergedBytes(c, single))), c.label).toBe(true);
    },
  );
});

/**
 * Node worker threads running the real worker script, of which the first job of kind `dies` makes
 * its thread exit (terminated from outside, as an out-of-memory kill would); `merge` is a plain
 * merge block (a job with no kind). `posted` counts the jobs of that kind the pool sent.
 */
function dyingWorkers(dies: string, posted = { jobs: 0 }): { count: number; start(): PoolWorker } {
  const url = pathToFileURL(join(import.meta.dirname, '..', 'dist/engine/cpu/cpu-worker.js'));
  return {
    count: 1,
    start() {
      const worker = new Worker(url);
      return {
        post(job) {
          if (('kind' in job ? job.kind : 'merge') === dies) {
            posted.jobs++;
            void worker.terminate();
          } else worker.postMessage(job);
        },
        listen(onReply: (r: WorkerReply) => void, onFail: (e: Error) => void) {
          worker.on('message', onReply);
          worker.on('error', onFail);
          worker.on('exit', (code) => onFail(new Error(`a CPU worker thread exited (code ${code})`)));
        },
        hold: (busy) => (busy ? worker.ref() : worker.unref()),
        terminate: () => {
          worker.removeAllListeners('exit');
          void worker.terminate();
        },
      };
    },
  };
}

describe('a worker that dies while it decodes quantized rows or merges them', () => {
  it.for([['bnb-int8', 'decode'], ['gptq', 'decode'], ['comfy-nvfp4', 'decode'], ['bnb-int8', 'merge']] as [ThreadFormat, string][])(
    '%s, dying on a %s job: the merge ends in one line naming the tensor and what to do, nothing at the output', async ([format, dies]) => {
    const c = severalSlabs(format);
    const posted = { jobs: 0 };
    const pool = new RowBlockPool(dyingWorkers(dies, posted), () => new Promise((r) => setImmediate(r)), true, { sharedSlabs: true });
    const backend = new CpuBackend('test', { pool });
    try {
      const dir = temp.make();
      const error = await mergeInto(c, backend, await createNodeOutputTarget(join(dir, 'merged'), 'folder', []));
      expect(error, c.label).toBeInstanceOf(Error);
      expect(posted.jobs, c.label).toBe(1);
      expect(isMergeError(error) && error.code, c.label).toBe('WORKER_FAILED');
      expect((error as Error).message, c.label).toMatch(new RegExp(
        '^tensor "model\\.layers\\.\\d+\\.[a-z_]+\\.[a-z_]+(\\.weight)?": a CPU worker thread exited \\(code \\d+\\); the thread was killed, ' +
        'ran out of memory or crashed: retry with one thread \\(--threads 1\\), or fewer threads or more memory$'));
      expect(exitCodeFor(error)).toBe(EXIT_FAILED);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      backend.dispose();
    }
  });
});

describe('a worker whose decoder throws', () => {
  it('the call ends in one line naming the weight, once every piece in flight has settled', async () => {
    // An LLM.int8 q_proj of 256 × 512 (131 072 values): eight pieces, the worker's answered with an error.
    const rows = 256, cols = 512;
    const source: RowSource = {
      name: 'model.layers.0.self_attn.q_proj.weight', decoder: 'bnb-int8', cols, firstRow: 0,
      arrays: { q: new Int8Array(rows * cols).fill(3), scb: new Float32Array(rows).fill(0.5) }, params: {},
    };
    let posted = 0, answered = 0;
    let reply: (r: WorkerReply) => void = () => {};
    const failing: PoolWorker = {
      post: (job) => {
        posted++;
        setTimeout(() => { answered++; reply({ id: job.id, error: 'Cannot read properties of undefined (reading \'length\')' }); }, 20);
      },
      listen: (onReply) => { reply = onReply; },
      hold: () => {},
      terminate: () => {},
    };
    const pool = new RowBlockPool([failing], () => new Promise((r) => setImmediate(r)), true);
    try {
      const error = await pool.decodeRows(source, 0, rows).then(() => undefined, (e: unknown) => e);
      expect((error as Error).message).toBe("model.layers.0.self_attn.q_proj.weight: a CPU worker failed to decode it: Cannot read properties of undefined (reading 'length')");
      expect(isMergeError(error)).toBe(false);
      expect(posted).toBeGreaterThan(0);
      expect(answered).toBe(posted);
    } finally {
      pool.dispose();
    }
  });
});
