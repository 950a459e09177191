/**
 * The merge worker: owns the backend (WebGPU when the browser has a usable adapter, else the CPU),
 * answers plan requests, runs merges with progress, and cancels them through an AbortController.
 * The page never touches the library directly, so a long merge never blocks its main thread.
 */
import {
  createBackend, generateSample, isMergeError, mergeModel, parseOutDType,
  type MergeBackend, type OutputTarget,
} from '../src/index.js';
import { DirectoryOutput } from './directory-output.js';
import { MemoryOutput } from './memory-output.js';
import { pickedFileSet } from './picked-file-set.js';
import { summarizePlan } from './plan-summary.js';
import type { MergedFile, PickedFile, WorkerRequest, WorkerResponse } from './worker-protocol.js';

const post = (message: WorkerResponse): void => self.postMessage(message);
const running = new Map<number, AbortController>();

const backend: Promise<MergeBackend> = createBackend({ kind: 'auto' });
backend.then(
  (b) => post({ type: 'backend', kind: b.kind, description: b.description }),
  (e: Error) => post({ type: 'backend', kind: 'cpu', description: `CPU (${e.message})` }),
);

function errorMessage(error: unknown): string {
  if (isMergeError(error)) return error.message;
  return `unexpected error: ${error instanceof Error ? error.message : String(error)}`;
}

function toFiles(path: string, bytes: Uint8Array): PickedFile {
  return { path, file: new File([bytes as Uint8Array<ArrayBuffer>], path.split('/').pop() ?? path) };
}

async function merge(request: Extract<WorkerRequest, { type: 'merge' }>): Promise<void> {
  const controller = new AbortController();
  running.set(request.id, controller);
  const started = performance.now();
  const memory = request.output.kind === 'memory' ? new MemoryOutput() : undefined;
  const disk = request.output.kind === 'directory' ? new DirectoryOutput(request.output.handle) : undefined;
  const output: OutputTarget = (memory ?? disk)!;
  const written: string[] = [];
  const tracked: OutputTarget = {
    name: output.name,
    createFile: (path) => { written.push(path); return output.createFile(path); },
    commit: () => output.commit(),
    abort: () => output.abort(),
  };
  try {
    await mergeModel({
      base: pickedFileSet(request.baseName, request.base),
      adapters: request.adapters.map((a) => ({ files: pickedFileSet(a.name, a.files), weight: a.weight })),
      output: tracked,
      outDtype: request.outDtype === 'same' ? undefined : parseOutDType(request.outDtype),
      backend: await backend,
      signal: controller.signal,
      onProgress: (progress) => post({ type: 'progress', id: request.id, progress: { ...progress } }),
    });
    const files: MergedFile[] = memory
      ? memory.files().map((f) => ({ path: f.path, size: f.blob.size, blob: f.blob }))
      : await disk!.files(written);
    post({ type: 'merged', id: request.id, files, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    if (controller.signal.aborted) post({ type: 'cancelled', id: request.id });
    else post({ type: 'error', id: request.id, message: errorMessage(error) });
  } finally {
    running.delete(request.id);
  }
}

self.addEventListener('message', (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  switch (request.type) {
    case 'plan':
      summarizePlan(
        pickedFileSet(request.baseName, request.base),
        request.adapters.map((a) => pickedFileSet(a.name, a.files)),
      ).then(
        (plan) => post({ type: 'plan', id: request.id, plan }),
        (error) => post({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
    case 'merge':
      void merge(request);
      break;
    case 'cancel':
      running.get(request.id)?.abort();
      break;
    case 'sample':
      generateSample(request.preset).then(
        (sample) => post({
          type: 'sample',
          id: request.id,
          base: Object.entries(sample.base).map(([p, b]) => toFiles(p, b)),
          adapter: Object.entries(sample.adapter).map(([p, b]) => toFiles(p, b)),
        }),
        (error) => post({ type: 'error', id: request.id, message: errorMessage(error) }),
      );
      break;
  }
});
