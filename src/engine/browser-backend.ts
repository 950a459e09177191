/**
 * The backend the browser entry's one-call merge() makes, chosen as the command line chooses
 * (`auto`: the CPU on a software adapter or none, WebGPU on a discrete GPU, else the faster on a
 * test merge), with the CPU on Web Workers sharing memory wherever the context allows it (a
 * cross-origin isolated page or worker), as the command line runs it on worker threads. Where it
 * cannot, the CPU runs on one thread and its description says so and why. The browser entry's
 * adapter jobs take their CPU threads from {@link browserCpuThreads} too.
 */
import type { FloatDType } from '../dtype.js';
import type { BackendChoice } from './backend-choice.js';
import { browserCpuPoolUnavailable, createBrowserCpuWorkerPool, type BrowserCpuPoolOptions } from './cpu/browser-cpu-pool.js';
import { CpuBackend, noWorkerThreads, type CpuMergePool } from './cpu/cpu-backend.js';
import { createBackend } from './create-backend.js';
import type { MergeBackend } from './merge-op.js';

/** The CPU's threads in this context: how to start its pool of Web Workers, or why it has none. */
export type BrowserCpuThreads =
  | { pool: () => CpuMergePool | undefined; lost?: undefined }
  | { pool?: undefined; lost: string };

/**
 * Where the context can share memory (see browserCpuPoolUnavailable), a pool of Web Workers to
 * start once the CPU is chosen (its threads stop with its dispose()); elsewhere the reason, which a
 * one-thread CPU says in its description (noWorkerThreads).
 */
export function browserCpuThreads(options?: BrowserCpuPoolOptions): BrowserCpuThreads {
  const lost = browserCpuPoolUnavailable();
  return lost ? { lost } : { pool: () => createBrowserCpuWorkerPool(options) };
}

/**
 * `kind` as createBackend takes it, with a CPU pool of Web Workers, only where the context can
 * share memory (see browserCpuThreads), for the CPU chosen or for what a GPU leaves to the CPU
 * (the WebGPU description says how many threads); its workers start when work needs them and
 * stop with the backend's dispose(). A CPU backend without one notes `no worker threads: <why>`
 * in its description, which the merge's outcome carries (`backend`).
 */
export async function createBrowserBackend(
  kind: BackendChoice, options: { calibrationDtype?: FloatDType; pool?: BrowserCpuPoolOptions } = {},
): Promise<MergeBackend> {
  const threads = browserCpuThreads(options.pool);
  const backend = await createBackend({ kind, calibrationDtype: options.calibrationDtype, cpuPool: threads.pool });
  if (backend instanceof CpuBackend && threads.lost && backend.executor === 'wasm') backend.note(noWorkerThreads(threads.lost));
  return backend;
}
