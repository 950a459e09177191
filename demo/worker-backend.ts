/**
 * Runs in the worker: the backend for each choice, by the CLI's rule (`auto`: the CPU on a software
 * adapter or none, a discrete GPU, else the faster on a test merge of the merge's dtype). The CPU path runs on
 * Web Workers sharing memory when the page is cross-origin isolated, as many as the page's "CPU
 * threads" box says; otherwise on one thread, and its description says what was lost.
 */
import { isMergeError, type BackendChoice, type FloatDType, type MergeBackend } from '../src/index.js';
import { createBrowserBackend } from '../src/engine/browser-backend.js';
import { dtypeClass } from '../src/engine/auto-choice.js';
import type { BackendInfo } from './worker-protocol.js';

const backends = new Map<string, { threads: number | undefined; backend: Promise<MergeBackend> }>();

function make(choice: BackendChoice, dtype: FloatDType, threads: number | undefined): Promise<MergeBackend> {
  // As the library's merge() makes it (a pool where the page is isolated, else a note of what was
  // lost). The page writes to OPFS synchronous handles or the picked files' streams (which copy),
  // so the workers may merge slabs in shared memory.
  return createBrowserBackend(choice, {
    calibrationDtype: dtype,
    pool: {
      threads,
      sharedSlabs: true,
      createWorker: () => new Worker(new URL('../src/engine/cpu/browser-cpu-worker.ts', import.meta.url), { type: 'module', name: 'loramerge-cpu' }),
    },
  });
}

/**
 * The backend for a choice, the dtype most of the merge is in and the CPU's threads (undefined:
 * the library's default), made once, then kept. `auto` decides per class of kernel (bf16 and f16
 * share one), so a bf16 model does not start a second pool of CPU workers beside the one the page
 * opened with. With `retire` (the page chose a backend and no merge runs), backends of other
 * thread counts are disposed: their workers (about 14 MiB each) would otherwise stay for the
 * page's life after the count was changed.
 */
export function backendFor(choice: BackendChoice, dtype: FloatDType = 'F16', threads?: number, retire = false): Promise<MergeBackend> {
  if (retire) retireOtherThreads(threads);
  const key = `${choice === 'auto' ? `auto-${dtypeClass(dtype)}` : choice}/${threads ?? 'default'}`;
  let made = backends.get(key);
  if (!made) {
    made = { threads, backend: make(choice, dtype, threads) };
    backends.set(key, made);
    const mine = made;
    made.backend.catch(() => { if (backends.get(key) === mine) backends.delete(key); }); // a failed start is tried again next time
  }
  return made.backend;
}

function retireOtherThreads(threads: number | undefined): void {
  for (const [key, made] of backends) {
    if (made.threads === threads) continue;
    backends.delete(key);
    made.backend.then((b) => b.dispose(), () => {});
  }
}

/** The backend as the page shows it: the library's description says the CPU threads on either backend. */
export function describe(choice: BackendChoice, backend: MergeBackend): BackendInfo {
  return { choice, kind: backend.kind, description: backend.description };
}

export function backendError(error: unknown): string {
  return isMergeError(error) ? error.message : `the backend failed to start: ${error instanceof Error ? error.message : String(error)}`;
}
