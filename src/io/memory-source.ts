/**
 * In-memory bytes as a ByteSource and InputFileSet: for tests, and for pages that already hold a
 * small file in an ArrayBuffer.
 */
import { badArgument, shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { MAX_CONFIG_BYTES } from '../limits.js';
import { keyedFileSet } from './keyed-file-set.js';
import { checkReadRange } from './read-range.js';
import { decodeUtf8 } from './strict-utf8.js';
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

/** Files given as relative '/' paths → contents, named `given` (as their folder), else "memory" (a label, no folder's name). */
export function memoryInputFileSet(files: Record<string, Uint8Array | string>, given?: string): InputFileSet {
  const name = given ?? 'memory';
  if (typeof files !== 'object' || files === null || Array.isArray(files)) {
    throw badArgument(`memoryInputFileSet: files must be an object from relative path to bytes or text, not ${shown(files)}`);
  }
  if (typeof name !== 'string') throw badArgument(`memoryInputFileSet: name must be a string, not ${shown(name)}`);
  const encoded = new Map<string, Uint8Array>();
  for (const [path, content] of Object.entries(files)) {
    if (typeof content !== 'string' && !(content instanceof Uint8Array)) {
      throw badArgument(`memoryInputFileSet: files[${JSON.stringify(path)}] must be a Uint8Array or a string, not ${shown(content)}`);
    }
    encoded.set(path, typeof content === 'string' ? new TextEncoder().encode(content) : content);
  }
  return keyedFileSet(name, encoded, {
    open: (bytes, path) => bytesSource(bytes, `${name}/${path}`),
    readText: async (bytes, path) => {
      // As on disk and in the page: a config or index of gigabytes is refused before it is decoded.
      if (bytes.byteLength > MAX_CONFIG_BYTES) {
        throw new MergeError('LIMIT_EXCEEDED', `${name}/${path}: ${bytes.byteLength} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`);
      }
      return decodeUtf8(bytes, `${name}/${path}`);
    },
  }, given !== undefined);
}
