/**
 * In-memory bytes as a ByteSource and InputFileSet: for tests, and for pages that already hold a
 * small file in an ArrayBuffer.
 */
import { MergeError } from '../errors.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource, InputFileSet } from './types.js';

export function bytesSource(bytes: Uint8Array, name: string): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(name, bytes.byteLength, offset, length);
      return bytes.slice(offset, offset + length); // a copy, aligned at offset 0 like file reads
    },
    async close(): Promise<void> {},
  };
}

/** Files given as relative '/' paths → contents. */
export function memoryInputFileSet(files: Record<string, Uint8Array | string>, name = 'memory'): InputFileSet {
  const encoded = new Map<string, Uint8Array>();
  for (const [path, content] of Object.entries(files)) {
    encoded.set(path, typeof content === 'string' ? new TextEncoder().encode(content) : content);
  }
  const sorted = [...encoded.keys()].sort();
  const get = (path: string): Uint8Array => {
    const bytes = encoded.get(path);
    if (!bytes) throw new MergeError('NOT_FOUND', `${name}: no file "${path}"`);
    return bytes;
  };
  return {
    name,
    list: () => sorted.slice(),
    open: async (path) => bytesSource(get(path), `${name}/${path}`),
    readText: async (path) => new TextDecoder().decode(get(path)),
  };
}
