// An embedder's Web Worker, bundled by Vite from the installed package: the one-call merge on
// Files, then on URLs, on the CPU backend with its Web Worker threads (the page is cross-origin isolated).
import { createBackend, createBrowserCpuWorkerPool, generateSample, merge } from 'loramerge';

self.onmessage = async () => {
  try {
    const sample = await generateSample({ layers: 1, hidden: 256, intermediate: 512, vocab: 512 });
    const files = (record) => Object.entries(record).map(([path, bytes]) => new File([bytes], path));
    const backend = await createBackend({ kind: 'cpu', cpuPool: () => createBrowserCpuWorkerPool() });
    const outcome = await merge({ base: files(sample.base), adapters: [{ source: files(sample.adapter), weight: -1.5 }], dtype: 'bf16', backend });
    const model = outcome.blobs.find((b) => b.path === 'model.safetensors');
    // The same files as URLs the page serves, relative to the worker's origin, read with the
    // browser's own fetch (by Range requests).
    const adapterUrls = Object.keys(sample.adapter).map((path) => `/sample/adapter/${path}`);
    const fromUrls = await merge({ base: '/sample/base/model.safetensors', adapters: [{ source: adapterUrls, weight: -1.5 }], dtype: 'bf16', backend });
    // The CPU by name: merge() starts its own Web Worker threads here (the page is isolated), from
    // the worker script as Vite bundled it, and stops them when it ends.
    const byName = await merge({ base: files(sample.base), adapters: [{ source: files(sample.adapter), weight: -1.5 }], dtype: 'bf16', backend: 'cpu' });
    const byNameModel = byName.blobs.find((b) => b.path === 'model.safetensors');
    // Cancelled mid-merge, on the worker threads: rejected with an AbortError whose cause is the reason.
    const controller = new AbortController();
    const stop = new Error('the user pressed stop');
    let cancel;
    try {
      await merge({
        base: files(sample.base), adapters: [files(sample.adapter)], backend, signal: controller.signal,
        onProgress: (e) => { if (e.tensorsDone >= 1) controller.abort(stop); },
      });
      cancel = { blobs: 'came back' };
    } catch (error) {
      cancel = { name: error.name, code: error.code, causeIsReason: error.cause === stop, blobs: 'none' };
    }
    self.postMessage({
      cancel, byNameBackend: byName.backend, byNameBytes: new Uint8Array(await byNameModel.blob.arrayBuffer()),
      description: backend.description, paths: outcome.blobs.map((b) => b.path), bytes: new Uint8Array(await model.blob.arrayBuffer()),
      urlPaths: fromUrls.blobs.map((b) => b.path), urlBytes: new Uint8Array(await fromUrls.blobs[0].blob.arrayBuffer()),
    });
    backend.dispose();
  } catch (error) {
    self.postMessage({ error: String(error?.stack ?? error) });
  }
};
