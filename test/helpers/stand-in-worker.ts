/**
 * A stand-in for a module Web Worker running the library's browser CPU worker script, for the
 * browser entry's threads tested in Node: it runs the library's worker job handler (the code
 * browser-cpu-worker.ts runs) on the same thread, and records what it was started with, how many
 * jobs it ran and whether it was stopped.
 */
import { runWorkerJob, type PoolJob } from '../../src/engine/cpu/cpu-worker-protocol.js';
import { createWasmKernel } from '../../src/engine/cpu/wasm-kernel.js';

export class StandInWorker extends EventTarget {
  /** Every worker started since the last reset. */
  static started: StandInWorker[] = [];
  jobs = 0;
  terminated = false;
  private readonly kernel = createWasmKernel();
  constructor(readonly url: URL | string, readonly options?: WorkerOptions) {
    super();
    StandInWorker.started.push(this);
  }
  postMessage(job: PoolJob): void {
    this.jobs++;
    void runWorkerJob(this.kernel, job).then((reply) => {
      if (!this.terminated) this.dispatchEvent(new MessageEvent('message', { data: reply }));
    });
  }
  terminate(): void {
    this.terminated = true;
  }
}
