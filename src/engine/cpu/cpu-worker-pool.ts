/** The CPU backend's worker threads in Node (worker_threads); see row-block-pool.ts for how they share work. */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { checkOptions, checkThreadCount } from '../../api-arguments.js';
import type { WorkerJob, WorkerReply } from './cpu-worker-protocol.js';
import { defaultCpuThreads } from './default-threads.js';
import { RowBlockPool, type PoolWorker } from './row-block-pool.js';

/** The compiled worker script next to this module (absent when running from TypeScript sources). */
export const DEFAULT_WORKER_URL = new URL('./cpu-worker.js', import.meta.url);

/** Options of {@link createCpuWorkerPool}. */
export interface CpuWorkerPoolOptions {
  /** Threads that merge, the calling one included (default: one per core, at most 8; see default-threads.ts). */
  threads?: number;
  /** The worker script (default: the compiled cpu-worker.js beside this module). */
  workerUrl?: URL;
}

/** A pool, or undefined when the worker script cannot be found or there is only one core; `threads` that is no positive integer is a BAD_ARGUMENT MergeError. */
export function createCpuWorkerPool(options: CpuWorkerPoolOptions = {}): CpuWorkerPool | undefined {
  checkOptions('createCpuWorkerPool options', options, ['threads', 'workerUrl']);
  checkThreadCount('createCpuWorkerPool: threads', options.threads);
  const threads = options.threads ?? defaultCpuThreads(availableParallelism());
  const url = options.workerUrl ?? DEFAULT_WORKER_URL;
  if (threads < 2 || !existsSync(fileURLToPath(url))) return undefined;
  return new CpuWorkerPool(url, threads);
}

/** Node worker threads running `url`; `threads` merge, the calling thread included. */
export class CpuWorkerPool extends RowBlockPool {
  /**
   * `sharedSlabs` (default true): slabs are read into shared memory and outputs written from it,
   * which Node's file writes take; false copies them through the pool's scratch, as pages do.
   */
  constructor(url: URL, threads: number, options: { sharedSlabs?: boolean } = {}) {
    super({ count: Math.max(1, threads) - 1, start: () => nodeWorker(url) }, () => new Promise((r) => setImmediate(r)), true,
      { sharedSlabs: options.sharedSlabs ?? true });
  }
}

function nodeWorker(url: URL): PoolWorker {
  // A worker allocates little but the factors it is sent: a small young generation keeps that
  // garbage from piling up to V8's default of tens of MiB per worker before it is collected.
  const worker = new Worker(url, { resourceLimits: { maxYoungGenerationSizeMb: 4 }, execArgv: workerExecArgv(process.execArgv) });
  return {
    post: (job: WorkerJob) => worker.postMessage(job),
    listen(onReply, onFail) {
      worker.on('message', (reply: WorkerReply) => onReply(reply));
      worker.on('error', onFail);
      worker.on('exit', (code) => onFail(new Error(`a CPU worker thread exited (code ${code})`)));
    },
    // Only jobs in flight keep the process alive, so a pool that is never disposed does not hang
    // it. Called after listen(): adding a 'message' listener refs the worker's port again.
    hold: (busy) => (busy ? worker.ref() : worker.unref()),
    terminate() {
      worker.removeAllListeners('exit');
      void worker.terminate();
    },
  };
}

/**
 * The process's Node options for a worker thread, less `--input-type`: a worker inherits them and
 * refuses that one, so a script run as `node --input-type=module -e …` could start no thread.
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input-type') i++;
    else if (!argv[i].startsWith('--input-type=')) kept.push(argv[i]);
  }
  return kept;
}
