/** A browser File or Blob as a ByteSource: each read slices just the bytes asked for. */
import { MergeError } from '../errors.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource } from './types.js';

export function blobByteSource(blob: Blob, name: string = (blob as File).name ?? 'blob'): ByteSource {
  const size = blob.size;
  return {
    name,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkReadRange(name, size, offset, length);
      let buffer: ArrayBuffer;
      try {
        buffer = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        // Browsers fail reads of a File that changed or vanished since it was picked.
        throw new MergeError('NOT_FOUND', `${name}: could not be read (changed or removed since it was chosen?)`, { cause: e });
      }
      if (buffer.byteLength !== length) {
        throw new MergeError('TRUNCATED', `${name}: got ${buffer.byteLength} of ${length} bytes at ${offset}`);
      }
      return new Uint8Array(buffer);
    },
    async close(): Promise<void> {},
  };
}
