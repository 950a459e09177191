// An embedder's Web Worker, bundled by Vite from the installed package: the one-call merge on
// Files, on the CPU backend with its Web Worker threads (the page is cross-origin isolated).
import { createBackend, createBrowserCpuWorkerPool, generateSample, merge } from 'loramerge';

self.onmessage = async () => {
  try {
    const sample = await generateSample({ layers: 1, hidden: 256, intermediate: 512, vocab: 512 });
    const files = (record) => Object.entries(record).map(([path, bytes]) => new File([bytes], path));
    const backend = await createBackend({ kind: 'cpu', cpuPool: () => createBrowserCpuWorkerPool() });
    const outcome = await merge({ base: files(sample.base), adapters: [{ source: files(sample.adapter), weight: -1.5 }], dtype: 'bf16', backend });
    const model = outcome.blobs.find((b) => b.path === 'model.safetensors');
    self.postMessage({ description: backend.description, paths: outcome.blobs.map((b) => b.path), bytes: new Uint8Array(await model.blob.arrayBuffer()) });
    backend.dispose();
  } catch (error) {
    self.postMessage({ error: String(error?.stack ?? error) });
  }
};
