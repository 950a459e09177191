/**
 * An InputFileSet over files known by relative path (bytes, Blobs, Files, paths on disk): the one
 * place that answers list/open/readText, whatever holds the bytes.
 */
import { MergeError } from '../errors.js';
import type { ByteSource, InputFileSet } from './types.js';

export interface KeyedFileAccess<T> {
  open(item: T, path: string): ByteSource | Promise<ByteSource>;
  readText(item: T, path: string): Promise<string>;
}

/** `namesFolder`: the set's {@link InputFileSet.namesFolder}. */
export function keyedFileSet<T>(name: string, files: ReadonlyMap<string, T>, access: KeyedFileAccess<T>, namesFolder = true): InputFileSet {
  const sorted = [...files.keys()].sort();
  const get = (path: string): T => {
    const item = files.get(path);
    if (item === undefined) throw new MergeError('NOT_FOUND', `${name}: no file "${path}"`);
    return item;
  };
  return {
    name,
    ...(namesFolder && { namesFolder }),
    list: () => sorted.slice(),
    open: async (path) => access.open(get(path), path),
    readText: async (path) => access.readText(get(path), path),
  };
}
