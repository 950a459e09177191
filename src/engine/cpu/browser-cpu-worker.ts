/** A worker thread of the CPU backend in a browser (a module Web Worker): one WASM kernel instance. */
import { runWorkerJob, type PoolJob } from './cpu-worker-protocol.js';
import { createWasmKernel } from './wasm-kernel.js';

const kernel = createWasmKernel();
self.addEventListener('message', async (event: MessageEvent<PoolJob>) => {
  self.postMessage(await runWorkerJob(kernel, event.data));
});
