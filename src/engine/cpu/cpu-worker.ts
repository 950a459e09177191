/**
 * A worker thread of the CPU backend (Node worker_threads): one WASM kernel instance that merges
 * the row blocks it is sent. W and the output live in a SharedArrayBuffer owned by the pool; the
 * right factor comes once per key and stays in the kernel's memory.
 */
import { parentPort } from 'node:worker_threads';
import { createWasmKernel, type RowJob } from './wasm-kernel.js';

/** A block of rows; its W and output are byte ranges of `shared`. */
export interface WorkerJob extends Omit<RowJob, 'w'> {
  id: number;
  shared: SharedArrayBuffer;
  wOffset: number;
  wLength: number;
  outOffset: number;
  outLength: number;
}

export type WorkerReply = { id: number; finite: boolean } | { id: number; error: string };

const kernel = createWasmKernel();

// Every handler awaits the same promise, so jobs still run (and are answered) in arrival order.
parentPort?.on('message', async (job: WorkerJob) => {
  let reply: WorkerReply;
  try {
    const finite = (await kernel).run(
      { ...job, w: new Uint8Array(job.shared, job.wOffset, job.wLength) },
      new Uint8Array(job.shared, job.outOffset, job.outLength),
    );
    reply = { id: job.id, finite };
  } catch (e) {
    reply = { id: job.id, error: (e as Error).message };
  }
  parentPort!.postMessage(reply);
});
