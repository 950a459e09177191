/**
 * Who performs an OPFS output's synchronous writes. In the thread that runs the merge
 * (`inThreadOpfsWriter`), every write blocks that thread, which also reads the inputs and hands
 * slabs to the backend. `opfsWriterWorker` moves the writes to a worker of their own: measured in
 * the page on a 0.97 GB merge, the merging thread spent 1.3 s of 3.4 s inside OPFS writes while the
 * CPU backend's threads sat idle 80 % of the time.
 */
import { MergeError } from '../errors.js';
import { nextTask } from '../event-turns.js';
import type { OpfsWriterReply, OpfsWriterRequest } from './opfs-writer-protocol.js';

/** A file opened for writing at offsets. */
export interface OpfsOpenFile {
  /** Writes all of `chunk` at `at`; the caller may reuse `chunk` once this resolves. */
  write(chunk: Uint8Array, at: number): Promise<void>;
  /** Releases the file (its bytes stay); safe to call twice. */
  close(): Promise<void>;
}

/** Opens OPFS files for writing, on whichever thread it writes from. */
export interface OpfsFileWriter {
  /** Opens `handle` (creating its synchronous access handle) for writes at offsets. */
  open(handle: FileSystemFileHandle): Promise<OpfsOpenFile>;
}

interface SyncHandle {
  write(buffer: ArrayBufferView, options: { at: number }): number;
  close(): void;
}
type SyncFileHandle = FileSystemFileHandle & { createSyncAccessHandle(): Promise<SyncHandle> };

/** Whether this context can write OPFS files synchronously (dedicated workers only). */
export function opfsSyncWritesAvailable(): boolean {
  const handleClass = (globalThis as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle;
  return !!handleClass && 'createSyncAccessHandle' in handleClass.prototype;
}

/** Writes all of `chunk` at `at` through a synchronous handle (a write may take part of it). */
export function writeAll(sync: SyncHandle, chunk: Uint8Array, at: number): void {
  let done = 0;
  while (done < chunk.byteLength) done += sync.write(chunk.subarray(done), { at: at + done });
}

/** Opens `handle` for synchronous writes. */
export async function openSyncHandle(handle: FileSystemFileHandle): Promise<SyncHandle> {
  return (handle as SyncFileHandle).createSyncAccessHandle();
}

/** Writes on the calling thread (a dedicated worker's). */
export function inThreadOpfsWriter(): OpfsFileWriter {
  return {
    async open(handle) {
      let sync: SyncHandle | undefined = await openSyncHandle(handle);
      return {
        async write(chunk, at) {
          // A synchronous write blocks this thread: it waits for the next task, by when a merge
          // pipeline has handed its next slab to the backend, so the two overlap.
          await nextTask();
          if (!sync) throw new Error(`${handle.name}: write after close`);
          writeAll(sync, chunk, at);
        },
        async close() {
          sync?.close();
          sync = undefined;
        },
      };
    },
  };
}

/** An OPFS writer in a worker of its own; `dispose()` ends the worker. */
export interface OpfsWriterWorker extends OpfsFileWriter {
  /** Ends the worker; writes still pending fail. */
  dispose(): void;
}

/** An error as the worker reported it: a DOMException keeps its name (QuotaExceededError). */
function rebuilt(error: { name: string; message: string }): Error {
  return typeof DOMException === 'function' ? new DOMException(error.message, error.name) : Object.assign(new Error(error.message), { name: error.name });
}

/**
 * Starts the writer worker (`createWorker`; the default works where the bundler understands
 * `new Worker(new URL(…, import.meta.url))`). Chunks in shared memory are handed over as views, so
 * nothing is copied; others are copied once. Should the worker fail to start (a policy that forbids
 * it), files are written on the calling thread instead.
 */
export function opfsWriterWorker(options: { createWorker?: () => Worker } = {}): OpfsWriterWorker {
  const start = options.createWorker
    ?? (() => new Worker(new URL('./opfs-writer-worker.js', import.meta.url), { type: 'module', name: 'loramerge-writer' }));
  let worker: Worker | undefined;
  let failed: string | undefined;
  let nextId = 1;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const failAll = (why: string) => {
    failed = why;
    for (const p of pending.values()) p.reject(new MergeError('FILESYSTEM', `the output writer stopped: ${why}`));
    pending.clear();
  };
  const ensure = (): Worker | undefined => {
    if (failed) return undefined;
    if (!worker) {
      try {
        worker = start();
      } catch (e) {
        failed = e instanceof Error ? e.message : String(e);
        return undefined;
      }
      worker.addEventListener('message', (event: MessageEvent<OpfsWriterReply>) => {
        const reply = event.data;
        const p = pending.get(reply.id);
        pending.delete(reply.id);
        if (reply.error) p?.reject(rebuilt(reply.error));
        else p?.resolve();
      });
      worker.addEventListener('error', (event) => {
        event.preventDefault();
        failAll(event.message || 'the worker script did not load');
      });
    }
    return worker;
  };
  const call = (request: OpfsWriterRequest, transfer: Transferable[] = []): Promise<void> => new Promise((resolve, reject) => {
    if (failed || !worker) {
      reject(new MergeError('FILESYSTEM', `the output writer stopped: ${failed ?? 'not started'}`));
      return;
    }
    pending.set(request.id, { resolve, reject });
    worker.postMessage(request, transfer);
  });
  const fallback = inThreadOpfsWriter();

  return {
    async open(handle) {
      const w = ensure();
      const file = nextId++;
      try {
        if (!w) throw new Error(failed);
        await call({ op: 'open', id: nextId++, file, handle });
      } catch (e) {
        // Not started, or stopped before this file: the calling thread writes it.
        if (failed) return fallback.open(handle);
        throw e;
      }
      let closed = false;
      return {
        async write(chunk, at) {
          if (closed) throw new Error(`${handle.name}: write after close`);
          // A page that is not cross-origin isolated has no SharedArrayBuffer at all.
          if (typeof SharedArrayBuffer === 'function' && chunk.buffer instanceof SharedArrayBuffer) {
            await call({ op: 'write', id: nextId++, file, bytes: chunk, at });
          } else {
            const copy = chunk.slice();
            await call({ op: 'write', id: nextId++, file, bytes: copy, at }, [copy.buffer]);
          }
        },
        async close() {
          if (closed) return;
          closed = true;
          await call({ op: 'close', id: nextId++, file });
        },
      };
    },
    dispose() {
      worker?.terminate();
      worker = undefined;
      failAll('disposed');
    },
  };
}
