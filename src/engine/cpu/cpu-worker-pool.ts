/**
 * Node worker threads for the CPU backend: an op's rows are cut into blocks that the calling thread
 * and the workers take from one queue (so a slow core does not hold the others up). The calling
 * thread would otherwise sit waiting, so it takes blocks too and one core needs no worker (each
 * costs about 10 MiB). W and the output go through one SharedArrayBuffer, and each worker is sent a
 * tensor's right factor only once. Cancellation stops handing out blocks; those in flight finish.
 *
 * Measured on the 0.97 GB benchmark model (2 cores, CLI, alternating runs): one worker per core
 * with an idle calling thread was 10–20 % faster (1.5–1.8 s against 1.7–2.1 s) but its peak RSS
 * was 15–25 MiB higher, which put `auto` (Dawn adds ~50 MiB) at 224–231 MiB, at the limit of a
 * quarter of the model; the calling thread taking blocks keeps it near 200 MiB.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DTYPE_BYTES } from '../../dtype.js';
import { MergeError } from '../../errors.js';
import type { MergeOp } from '../merge-op.js';
import { checkOp } from '../op-shape.js';
import type { CpuMergePool } from './cpu-backend.js';
import type { WorkerJob, WorkerReply } from './cpu-worker.js';
import { prepareFactors, type PreparedFactors } from './prepared-factors.js';
import { createWasmKernel, type WasmKernel } from './wasm-kernel.js';
import { nonFiniteError, rowJob, rowsPerBlock } from './wasm-merge.js';

const BLOCK_CAP_BYTES = 2 * 1024 * 1024;

interface Slot {
  worker: Worker;
  rightKey: number;
  /** Jobs posted and not yet answered, oldest first (a worker answers in order). */
  pending: { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }[];
}

/** The compiled worker script next to this module (absent when running from TypeScript sources). */
export const DEFAULT_WORKER_URL = new URL('./cpu-worker.js', import.meta.url);

/** Options of {@link createCpuWorkerPool}. */
export interface CpuWorkerPoolOptions {
  /** Threads that merge, the calling one included (default: os.availableParallelism()). */
  threads?: number;
  workerUrl?: URL;
}

/** A pool, or undefined when the worker script cannot be found or there is only one core. */
export function createCpuWorkerPool(options: CpuWorkerPoolOptions = {}): CpuWorkerPool | undefined {
  const threads = options.threads ?? availableParallelism();
  const url = options.workerUrl ?? DEFAULT_WORKER_URL;
  if (threads < 2 || !existsSync(fileURLToPath(url))) return undefined;
  return new CpuWorkerPool(url, threads);
}

export class CpuWorkerPool implements CpuMergePool {
  readonly threads: number;
  private slots: Slot[];
  private nextId = 1;
  private shared: SharedArrayBuffer | undefined;
  private sharedBusy = false;
  private broken: Error | undefined;
  /** Blocks sent to workers, and how many of them carried a right factor (once per worker and tensor). */
  readonly sent = { blocks: 0, rightFactors: 0 };
  private readonly local: Promise<WasmKernel>;

  /** `threads` merge: the calling thread and threads − 1 workers. */
  constructor(url: URL, threads: number) {
    this.threads = Math.max(1, threads);
    this.slots = Array.from({ length: this.threads - 1 }, () => this.spawn(url));
    this.local = createWasmKernel();
    this.local.catch(() => {}); // reported by the first merge
  }

  private spawn(url: URL): Slot {
    // A worker allocates little but the factors it is sent: a small young generation keeps that
    // garbage from piling up to V8's default of tens of MiB per worker before it is collected.
    const worker = new Worker(url, { resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    const slot: Slot = { worker, rightKey: -1, pending: [] };
    slot.worker.on('message', (reply: WorkerReply) => {
      const p = slot.pending.shift();
      if (slot.pending.length === 0) slot.worker.unref();
      p?.resolve(reply);
    });
    slot.worker.on('error', (e: Error) => this.fail(e));
    slot.worker.on('exit', (code) => this.fail(new Error(`a CPU worker thread exited (code ${code})`)));
    // Only jobs in flight keep the process alive, so a pool that is never disposed does not hang
    // it. After the listeners: adding a 'message' listener refs the worker's port again.
    slot.worker.unref();
    return slot;
  }

  private fail(e: Error): void {
    this.broken ??= e;
    for (const s of this.slots) for (const p of s.pending.splice(0)) p.reject(e);
  }

  private run(slot: Slot, job: WorkerJob): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      slot.pending.push({ resolve, reject });
      slot.worker.ref();
      slot.worker.postMessage(job);
    });
  }

  /** One buffer for W and the output, reused unless another merge holds it. */
  private takeShared(bytes: number): SharedArrayBuffer {
    if (this.sharedBusy || !this.shared || this.shared.byteLength < bytes) {
      const buffer = new SharedArrayBuffer(bytes);
      if (this.sharedBusy) return buffer;
      this.shared = buffer;
    }
    this.sharedBusy = true;
    return this.shared;
  }

  async merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.broken) throw this.broken;
    const shape = checkOp(op);
    const f = prepareFactors(op, shape);
    const wb = DTYPE_BYTES[op.base.dtype], ob = DTYPE_BYTES[op.outDtype];
    const rows = shape.rowCount, cols = op.cols;
    const wBytes = rows * cols * wb, outBytes = rows * cols * ob;
    const outOffset = (wBytes + 15) & ~15;
    const shared = this.takeShared(outOffset + outBytes);
    const ownsShared = shared === this.shared;
    try {
      new Uint8Array(shared, 0, wBytes).set(op.base.data);
      // Two blocks per worker even out uneven progress; bigger ones amortise the messages better
      // (measured on a 4 MiB f16 slab: 3.7 ms against 4.7 ms with 16 blocks of 256 KiB). The cap
      // bounds each worker's memory and how long cancellation waits on a huge unslabbed op.
      const step = Math.max(4, Math.min(rowsPerBlock(op, BLOCK_CAP_BYTES), Math.ceil(rows / (this.threads * 2) / 4) * 4));
      let next = 0;
      let finite = true;
      let aborted = false;
      /** The next block's first row and row count, or undefined when done or cancelled. */
      const take = (): [number, number] | undefined => {
        if (next >= rows || aborted) return undefined;
        if (signal?.aborted) {
          aborted = true;
          return undefined;
        }
        const r0 = next, n = Math.min(step, rows - r0);
        next += n;
        return [r0, n];
      };
      const drain = async (slot: Slot): Promise<void> => {
        for (let block = take(); block; block = take()) {
          const reply = await this.run(slot, this.job(op, f, slot, shared, block[0], block[1], outOffset));
          if ('error' in reply) throw new Error(`tensor "${op.name}": a CPU worker failed: ${reply.error}`);
          if (!reply.finite) finite = false;
        }
      };
      const drainHere = async (): Promise<void> => {
        const kernel = await this.local;
        for (let block = take(); block; block = take()) {
          const [r0, n] = block;
          const target = new Uint8Array(shared, outOffset + r0 * cols * ob, n * cols * ob);
          if (!kernel.run(rowJob(op, f, r0, n, !kernel.holds(f.rightKey)), target)) finite = false;
          // Let the workers' replies (and the pipeline's I/O callbacks) in between blocks.
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      await Promise.all([...this.slots.map(drain), drainHere()]);
      if (aborted) throw new MergeError('ABORTED', 'merge cancelled');
      if (!finite) throw nonFiniteError(op);
      return new Uint8Array(shared, outOffset, outBytes).slice();
    } finally {
      if (ownsShared) this.sharedBusy = false;
    }
  }

  private job(op: MergeOp, f: PreparedFactors, slot: Slot, shared: SharedArrayBuffer, r0: number, n: number,
    outOffset: number): WorkerJob {
    const sendRight = slot.rightKey !== f.rightKey;
    slot.rightKey = f.rightKey;
    this.sent.blocks++;
    if (sendRight) this.sent.rightFactors++;
    // W goes by its place in `shared`; left is copied (posting a view would copy its whole buffer).
    const { w, left, ...block } = rowJob(op, f, r0, n, sendRight);
    const outBytes = n * op.cols * DTYPE_BYTES[op.outDtype];
    return {
      ...block,
      id: this.nextId++,
      shared,
      wOffset: w.byteOffset - op.base.data.byteOffset,
      wLength: w.byteLength,
      outOffset: outOffset + r0 * op.cols * DTYPE_BYTES[op.outDtype],
      outLength: outBytes,
      left: left.slice(),
    };
  }

  dispose(): void {
    const slots = this.slots;
    this.slots = [];
    this.broken ??= new MergeError('ABORTED', 'the CPU backend was disposed');
    for (const s of slots) {
      s.worker.removeAllListeners('exit');
      for (const p of s.pending.splice(0)) p.reject(this.broken);
      void s.worker.terminate();
    }
  }
}
