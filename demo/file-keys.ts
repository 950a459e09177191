/**
 * The page's names for the Files it sends to a worker: a File crosses to a worker as a new object
 * with each message, so the worker is told which File it is by a key (the same File object, the
 * same key), and reuses what it read of a File only for that very File (base-header-cache.ts).
 */
import type { PickedFile } from './worker-protocol.js';

const fileKeys = new WeakMap<File, number>();
let nextFileKey = 1;

/** `files` with their keys. */
export function keyed(files: readonly PickedFile[]): PickedFile[] {
  return files.map((f) => {
    let key = fileKeys.get(f.file);
    if (key === undefined) fileKeys.set(f.file, key = nextFileKey++);
    return { ...f, key };
  });
}
