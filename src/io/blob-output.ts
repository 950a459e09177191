/**
 * An OutputTarget for pages: each file's chunks become a Blob, offered as downloads once the merge
 * commits. Chunks are folded into intermediate Blobs as they arrive, so the browser may move them
 * out of the JavaScript heap (Chromium spills large Blobs to disk) instead of holding every array.
 */
import { badArgument, shown } from '../api-arguments.js';
import type { ByteSink, OutputTarget } from './types.js';

/** One finished file of a {@link BlobOutputTarget}. */
export interface OutputBlob {
  /** Relative '/' path, as the merge named it. */
  path: string;
  blob: Blob;
}

export interface BlobOutputTarget extends OutputTarget {
  /** The finished files, in creation order; empty until commit(). */
  files(): OutputBlob[];
}

/** Pending arrays are folded into a Blob once they reach this size. */
const FOLD_BYTES = 64 * 1024 * 1024;

/** An OutputTarget that keeps each file as a Blob (for small models: the browser holds them). */
export function createBlobOutputTarget(name = 'merged', mimeType = 'application/octet-stream'): BlobOutputTarget {
  if (typeof name !== 'string') throw badArgument(`createBlobOutputTarget: name must be a string, not ${shown(name)}`);
  if (typeof mimeType !== 'string') throw badArgument(`createBlobOutputTarget: mimeType must be a string, not ${shown(mimeType)}`);
  const files: { path: string; parts: Blob[]; pending: Uint8Array[]; pendingBytes: number; blob?: Blob }[] = [];
  let state: 'open' | 'committed' | 'aborted' = 'open';
  const requireOpen = () => {
    if (state !== 'open') throw new Error(`${name}: output already ${state}`);
  };
  const fold = (file: (typeof files)[number]) => {
    if (file.pending.length === 0) return;
    file.parts.push(new Blob(file.pending as BlobPart[]));
    file.pending = [];
    file.pendingBytes = 0;
  };
  return {
    name,
    async createFile(path: string): Promise<ByteSink> {
      requireOpen();
      if (files.some((f) => f.path === path)) throw new Error(`${name}: "${path}" created twice`);
      const file = { path, parts: [] as Blob[], pending: [] as Uint8Array[], pendingBytes: 0, blob: undefined as Blob | undefined };
      files.push(file);
      return {
        async write(chunk: Uint8Array): Promise<void> {
          requireOpen();
          if (file.blob) throw new Error(`${path}: write after close`);
          // Copy: callers may reuse their buffer once write() returns.
          file.pending.push(chunk.slice());
          file.pendingBytes += chunk.byteLength;
          if (file.pendingBytes >= FOLD_BYTES) fold(file);
        },
        async close(): Promise<void> {
          if (file.blob) return;
          fold(file);
          file.blob = new Blob(file.parts, { type: mimeType });
          file.parts = [];
        },
      };
    },
    async commit(): Promise<void> {
      requireOpen();
      const open = files.find((f) => !f.blob);
      if (open) throw new Error(`${open.path}: still being written, cannot commit`);
      state = 'committed';
    },
    async abort(): Promise<void> {
      if (state !== 'open') return;
      state = 'aborted';
      files.length = 0;
    },
    files(): OutputBlob[] {
      return state === 'committed' ? files.map((f) => ({ path: f.path, blob: f.blob! })) : [];
    },
  };
}
