/**
 * The merge worker: owns the backend (WebGPU when the browser has a usable adapter, else the CPU),
 * answers plan requests, runs merges with progress, and cancels them through an AbortController.
 * The page never touches the library directly, so a long merge never blocks its main thread.
 */
import {
  createBackend, createBlobOutputTarget, createFileSystemAccessOutputTarget, generateSample, isMergeError,
  mergeModel, parseOutDType, prepareMerge,
  type MergeBackend, type OutputTarget,
} from '../src/index.js';
import { pickedFileSet } from './picked-file-set.js';
import { summarizePlan } from './plan-summary.js';
import type { MergedFile, PickedFile, WorkerRequest, WorkerResponse } from './worker-protocol.js';

const post = (message: WorkerResponse): void => self.postMessage(message);
const running = new Map<number, AbortController>();

/**
 * WebGPU whenever the browser offers an adapter, even a software one: this page exists to show the
 * GPU path. Without one, the CPU, and the page says why.
 */
async function chooseBackend(): Promise<MergeBackend> {
  try {
    return await createBackend({ kind: 'webgpu' });
  } catch (error) {
    const reason = isMergeError(error) ? error.message : String(error);
    const cpu = await createBackend({ kind: 'cpu' });
    return { kind: cpu.kind, description: `CPU fallback: ${reason}`, merge: (op, signal) => cpu.merge(op, signal), dispose: () => cpu.dispose() };
  }
}

const backend = chooseBackend();
backend.then(
  (b) => post({ type: 'backend', kind: b.kind, description: b.description }),
  (e: Error) => post({ type: 'backend', kind: 'cpu', description: `no backend: ${e.message}` }),
);

function errorMessage(error: unknown): string {
  if (isMergeError(error)) return error.message;
  return `unexpected error: ${error instanceof Error ? error.message : String(error)}`;
}

function toFiles(path: string, bytes: Uint8Array): PickedFile {
  return { path, file: new File([bytes as Uint8Array<ArrayBuffer>], path.split('/').pop() ?? path) };
}

/** What a merge into a folder published, read back lazily from disk for the download links. */
async function filesOnDisk(root: FileSystemDirectoryHandle, paths: string[]): Promise<MergedFile[]> {
  const out: MergedFile[] = [];
  for (const path of paths) {
    const parts = path.split('/');
    let folder = root;
    for (const part of parts.slice(0, -1)) folder = await folder.getDirectoryHandle(part);
    const file = await (await folder.getFileHandle(parts[parts.length - 1])).getFile();
    out.push({ path, size: file.size, blob: file });
  }
  return out;
}

async function merge(request: Extract<WorkerRequest, { type: 'merge' }>): Promise<void> {
  const controller = new AbortController();
  running.set(request.id, controller);
  const started = performance.now();
  const memory = request.output.kind === 'memory' ? createBlobOutputTarget('download') : undefined;
  const folder = request.output.kind === 'directory' ? request.output.handle : undefined;
  const output: OutputTarget = memory ?? createFileSystemAccessOutputTarget(folder!);
  let prepared: Awaited<ReturnType<typeof prepareMerge>> | undefined;
  try {
    prepared = await prepareMerge(
      pickedFileSet(request.baseName, request.base),
      request.adapters.map((a) => ({ files: pickedFileSet(a.name, a.files), weight: a.weight })),
    );
    const result = await mergeModel({
      prepared,
      output,
      outDtype: request.outDtype === 'same' ? undefined : parseOutDType(request.outDtype),
      backend: await backend,
      signal: controller.signal,
      onProgress: (progress) => post({ type: 'progress', id: request.id, progress: { ...progress } }),
    });
    const files: MergedFile[] = memory
      ? memory.files().map((f) => ({ path: f.path, size: f.blob.size, blob: f.blob }))
      : await filesOnDisk(folder!, result.files);
    post({ type: 'merged', id: request.id, files, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    if (controller.signal.aborted) post({ type: 'cancelled', id: request.id });
    else post({ type: 'error', id: request.id, message: errorMessage(error) });
  } finally {
    await prepared?.close();
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
