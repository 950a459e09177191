/**
 * The library's InputFileSet over files whose folder paths the page already knows (dropped folders
 * give Files without webkitRelativePath, and paths do not survive the trip to the worker).
 * Reads go through the library's Blob source: only the bytes asked for are ever loaded.
 */
import { blobByteSource, MergeError, type InputFileSet } from '../src/index.js';
import type { PickedFile } from './worker-protocol.js';

export function pickedFileSet(name: string, files: readonly PickedFile[]): InputFileSet {
  const byPath = new Map(files.map((f) => [f.path, f.file]));
  const sorted = [...byPath.keys()].sort();
  const get = (path: string): File => {
    const file = byPath.get(path);
    if (!file) throw new MergeError('NOT_FOUND', `${name}: no file "${path}"`);
    return file;
  };
  return {
    name,
    list: () => sorted.slice(),
    open: async (path) => blobByteSource(get(path), `${name}/${path}`),
    readText: async (path) => get(path).text(),
  };
}
