/**
 * A stand-in for a module Web Worker running the library's browser CPU worker script, for the
 * browser entry's threads tested in Node: it runs the library's worker job handler (the code
 * browser-cpu-worker.ts runs) on the same thread, and records what it was started with, how many
 * jobs it ran and whether it was stopped.
 */
import { vi } from 'vitest';
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

/** Jobs the stand-in workers started since the last reset have run, together. */
export const jobsOnWorkers = (): number => StandInWorker.started.reduce((n, w) => n + w.jobs, 0);

/** A cross-origin isolated context of 4 cores whose Web Workers are stand-ins, none started yet. */
export function stubIsolatedContext(): void {
  StandInWorker.started = [];
  vi.stubGlobal('Worker', StandInWorker);
  vi.stubGlobal('navigator', { hardwareConcurrency: 4 });
  vi.stubGlobal('crossOriginIsolated', true);
}
