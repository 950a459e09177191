/** A worker thread of the CPU backend in Node (worker_threads): one WASM kernel instance. */
import { parentPort } from 'node:worker_threads';
import { runWorkerJob, type PoolJob } from './cpu-worker-protocol.js';
import { createWasmKernel } from './wasm-kernel.js';

const kernel = createWasmKernel();
parentPort?.on('message', async (job: PoolJob) => parentPort!.postMessage(await runWorkerJob(kernel, job)));
