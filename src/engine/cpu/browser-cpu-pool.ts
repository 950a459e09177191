/**
 * The CPU backend's worker threads in a browser: module Web Workers sharing memory with the calling
 * thread. SharedArrayBuffer exists only on cross-origin isolated pages (COOP `same-origin` and COEP
 * `require-corp` or `credentialless`); elsewhere there is no pool and the kernel runs on one thread.
 */
import { checkCallback, checkOptions, checkThreadCount } from '../../api-arguments.js';
import type { WorkerJob, WorkerReply } from './cpu-worker-protocol.js';
import type { CpuMergePool } from './cpu-backend.js';
import { RowBlockPool, type PoolWorker } from './row-block-pool.js';
import { defaultCpuThreads } from './default-threads.js';
import { browserCpuPoolUnavailable } from './browser-pool-unavailable.js';

export { browserCpuPoolUnavailable };

/** Options of {@link createBrowserCpuWorkerPool}. */
export interface BrowserCpuPoolOptions {
  /** Threads that merge (default: navigator.hardwareConcurrency, at most 8; see default-threads.ts). */
  threads?: number;
  /**
   * Whether the calling thread merges too (then `threads − 1` workers start). Default false: in a
   * page's worker it has the reads and the synchronous disk writes to do, which would stall the
   * others (measured: a 0.97 GB merge in Chromium took longer with the caller merging).
   */
  callerTakesBlocks?: boolean;
  /**
   * Starts one worker running the library's browser CPU worker script. The default works where the
   * bundler understands `new Worker(new URL(…, import.meta.url))` (Vite, webpack 5, Parcel).
   */
  createWorker?: () => Worker;
  /**
   * Slabs in shared memory (default false): the merge reads each slab into memory the workers
   * share, they merge it there, and the output target receives views of shared memory, saving a
   * copy of every slab in and out of the workers' scratch memory. Only for output targets that
   * accept such views: OPFS synchronous access handles do, and so do the library's own targets
   * (they copy what they keep); `new Blob([view])` and a writable file stream refuse them.
   */
  sharedSlabs?: boolean;
}

/** A pool of Web Workers, or undefined when the page cannot have one (see {@link browserCpuPoolUnavailable}) or has one core; a mistyped option is a BAD_ARGUMENT MergeError. */
export function createBrowserCpuWorkerPool(options: BrowserCpuPoolOptions = {}): CpuMergePool | undefined {
  checkOptions('createBrowserCpuWorkerPool options', options, ['threads', 'callerTakesBlocks', 'createWorker', 'sharedSlabs']);
  checkThreadCount('createBrowserCpuWorkerPool: threads', options.threads);
  checkCallback('createBrowserCpuWorkerPool: createWorker', options.createWorker);
  if (browserCpuPoolUnavailable()) return undefined;
  const threads = options.threads ?? defaultCpuThreads(globalThis.navigator?.hardwareConcurrency);
  const caller = options.callerTakesBlocks ?? false;
  if (threads < 2) return undefined;
  const start = options.createWorker
    ?? (() => new Worker(new URL('./browser-cpu-worker.js', import.meta.url), { type: 'module', name: 'loramerge-cpu' }));
  return new RowBlockPool({ count: caller ? threads - 1 : threads, start: () => webWorker(start()) }, yieldToEvents, caller,
    { sharedSlabs: options.sharedSlabs ?? false });
}

function webWorker(worker: Worker): PoolWorker {
  return {
    post: (job: WorkerJob) => worker.postMessage(job),
    listen(onReply, onFail) {
      worker.addEventListener('message', (event: MessageEvent<WorkerReply>) => onReply(event.data));
      worker.addEventListener('error', (event) => onFail(new Error(`a CPU worker failed: ${event.message || 'could not start'}`)));
    },
    hold: () => {},
    terminate: () => worker.terminate(),
  };
}

/** A task boundary without setTimeout's 4 ms clamp (the channel is made on first use, in pages only). */
let channel: MessageChannel | undefined;
const waiting: (() => void)[] = [];
function yieldToEvents(): Promise<void> {
  if (typeof MessageChannel !== 'function') return new Promise((resolve) => setTimeout(resolve, 0));
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  const port = channel.port2;
  return new Promise((resolve) => {
    waiting.push(resolve);
    port.postMessage(0);
  });
}
