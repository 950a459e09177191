/**
 * The library's InputFileSet over files picked in the page. Reads are File.slice(): the browser
 * fetches only the bytes asked for, so a model of any size is never loaded whole.
 */
import { MergeError, type ByteSource, type InputFileSet } from '../src/index.js';
import type { PickedFile } from './worker-protocol.js';

function fileSource(file: File, name: string): ByteSource {
  return {
    name,
    size: file.size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (offset < 0 || length < 0 || offset + length > file.size) {
        throw new MergeError('TRUNCATED', `${name}: wanted bytes ${offset}..${offset + length} of a ${file.size}-byte file`);
      }
      return new Uint8Array(await file.slice(offset, offset + length).arrayBuffer());
    },
    async close(): Promise<void> {},
  };
}

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
    open: async (path) => fileSource(get(path), `${name}/${path}`),
    readText: async (path) => get(path).text(),
  };
}
