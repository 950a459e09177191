/**
 * The backend the browser entry's one-call merge() makes, chosen as the command line chooses
 * (`auto`: the CPU on a software adapter or none, WebGPU on a discrete GPU, else the faster on a
 * test merge), with the CPU on Web Workers sharing memory wherever the context allows it (a
 * cross-origin isolated page or worker), as the command line runs it on worker threads. Where it
 * cannot, the CPU runs on one thread and its description says so and why.
 */
import type { FloatDType } from '../dtype.js';
import type { BackendChoice } from './backend-choice.js';
import { browserCpuPoolUnavailable, createBrowserCpuWorkerPool, type BrowserCpuPoolOptions } from './cpu/browser-cpu-pool.js';
import { CpuBackend } from './cpu/cpu-backend.js';
import { createBackend } from './create-backend.js';
import type { MergeBackend } from './merge-op.js';

/**
 * `kind` as createBackend takes it, with a CPU pool of Web Workers made only if the CPU is
 * chosen and only where the context can share memory (see browserCpuPoolUnavailable); its threads
 * stop with the backend's dispose(). A CPU backend without one notes `no worker threads: <why>`
 * in its description, which the merge's outcome carries (`backend`).
 */
export async function createBrowserBackend(
  kind: BackendChoice, options: { calibrationDtype?: FloatDType; pool?: BrowserCpuPoolOptions } = {},
): Promise<MergeBackend> {
  const lost = browserCpuPoolUnavailable();
  const cpuPool = lost ? undefined : () => createBrowserCpuWorkerPool(options.pool);
  const backend = await createBackend({ kind, calibrationDtype: options.calibrationDtype, cpuPool });
  if (backend instanceof CpuBackend && lost && backend.executor === 'wasm') backend.note(`no worker threads: ${lost}`);
  return backend;
}
