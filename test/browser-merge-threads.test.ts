/**
 * The browser entry's one-call merge() runs the CPU backend as the command line does, on threads
 * sharing memory, wherever the context can have them (a cross-origin isolated page or worker), and
 * stops them when the merge ends, however it ends; where it cannot, it runs on one thread and its
 * outcome says so and why. Here in Node, Web Workers are stood in for by a class that runs the
 * library's worker job handler (the code browser-cpu-worker.ts runs) on the same thread, so what is
 * tested is the choice, the pool's use and its end, and the merged values against float64 truth.
 * The sample model: Llama names, a BF16 base, a PEFT LoRA in F32.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createBackend, generateSample, isMergeError, merge } from '../src/index.js';
import { checkMerged, readSafetensors } from './helpers/demo-merge-check.js';
import { StandInWorker } from './helpers/stand-in-worker.js';

const files = (record: Record<string, Uint8Array>) => Object.entries(record).map(([path, bytes]) => new File([bytes as Uint8Array<ArrayBuffer>], path));
const SIZE = { layers: 1, hidden: 256, intermediate: 512, vocab: 512 };

function truth(sample: Awaited<ReturnType<typeof generateSample>>, weight: number) {
  const config = JSON.parse(new TextDecoder().decode(sample.adapter['adapter_config.json']));
  return [{ tensors: readSafetensors(sample.adapter['adapter_model.safetensors']), scale: weight * (config.lora_alpha / config.r) }];
}

beforeEach(() => {
  StandInWorker.started = [];
  vi.stubGlobal('Worker', StandInWorker);
  vi.stubGlobal('navigator', { hardwareConcurrency: 4 });
});
afterEach(() => vi.unstubAllGlobals());

describe('merge() from the browser entry, cross-origin isolated', () => {
  beforeEach(() => vi.stubGlobal('crossOriginIsolated', true));

  it('merges on Web Workers (the library\'s worker script), exactly, and stops them when it is done', async () => {
    const sample = await generateSample(SIZE);
    const outcome = await merge({ base: files(sample.base), adapters: [{ source: files(sample.adapter), weight: 0.75 }], backend: 'cpu' });
    expect(outcome.backend).toMatch(/^CPU \(WebAssembly SIMD, 4 threads/);
    expect(StandInWorker.started.length).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => String(w.url).endsWith('/browser-cpu-worker.js') && w.options?.type === 'module')).toBe(true);
    expect(StandInWorker.started.reduce((n, w) => n + w.jobs, 0)).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
    const model = outcome.blobs.find((b) => b.path === 'model.safetensors')!;
    checkMerged(new Uint8Array(await model.blob.arrayBuffer()), readSafetensors(sample.base['model.safetensors']), truth(sample, 0.75));
  });

  it('a cancelled merge stops its workers too', async () => {
    const sample = await generateSample(SIZE);
    const controller = new AbortController();
    const error = await merge({
      base: files(sample.base), adapters: [files(sample.adapter)], backend: 'cpu', signal: controller.signal,
      onProgress: (e) => { if (e.tensorsDone >= 2) controller.abort(); },
    }).then(() => undefined, (e: unknown) => e);
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect(StandInWorker.started.length).toBeGreaterThan(0);
    expect(StandInWorker.started.every((w) => w.terminated)).toBe(true);
  });

  it('a backend the caller made is used as it is: no workers of the merge\'s own', async () => {
    const sample = await generateSample(SIZE);
    const backend = await createBackend({ kind: 'cpu' });
    try {
      const outcome = await merge({ base: files(sample.base), adapters: [files(sample.adapter)], backend });
      expect(outcome.backend).toBe('CPU (WebAssembly SIMD, 1 thread; requested)');
      expect(StandInWorker.started).toEqual([]);
    } finally {
      backend.dispose();
    }
  });
});

describe('merge() from the browser entry, not cross-origin isolated', () => {
  beforeEach(() => vi.stubGlobal('crossOriginIsolated', false));

  it('merges on one thread, exactly, starts no worker, and its outcome says what it lost and why', async () => {
    const sample = await generateSample(SIZE);
    const outcome = await merge({ base: files(sample.base), adapters: [{ source: files(sample.adapter), weight: 0.75 }], backend: 'cpu' });
    expect(outcome.backend).toBe('CPU (WebAssembly SIMD, 1 thread; requested; no worker threads: the page is not cross-origin isolated, so workers cannot share memory)');
    expect(StandInWorker.started).toEqual([]);
    const model = outcome.blobs.find((b) => b.path === 'model.safetensors')!;
    checkMerged(new Uint8Array(await model.blob.arrayBuffer()), readSafetensors(sample.base['model.safetensors']), truth(sample, 0.75));
  });

  it('in Node, where there are no Web Workers, it says where the threads are', async () => {
    vi.stubGlobal('Worker', undefined);
    const sample = await generateSample(SIZE);
    const outcome = await merge({ base: files(sample.base), adapters: [files(sample.adapter)], backend: 'cpu' });
    expect(outcome.backend).toBe('CPU (WebAssembly SIMD, 1 thread; requested; no worker threads: Node has no Web Workers (loramerge/node runs the CPU backend on worker threads))');
  });
});
