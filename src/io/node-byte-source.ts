/** A file on disk as a ByteSource: positional reads through one FileHandle (Node only). */
import { open } from 'node:fs/promises';
import { shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { inputFsError } from './fs-errors.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource } from './types.js';

/** Node's positional reads are limited to 2 GiB each; large tensors are read in pieces. */
const MAX_READ = 1 << 30;

/** A file on disk as a ByteSource (Node only). */
export async function openNodeByteSource(path: string, name: string = path): Promise<ByteSource> {
  if (typeof path !== 'string' || path === '') throw new MergeError('BAD_ARGUMENT', `openNodeByteSource: path must be a file path, not ${shown(path)}`);
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MergeError('NOT_FOUND', `${name}: no such file`, { cause: e });
    if (code === 'EISDIR') throw new MergeError('NOT_FOUND', `${name}: is a folder, expected a file`, { cause: e });
    throw inputFsError(e, name, 'opening it');
  }
  const fileHandle = handle;
  const info = await fileHandle.stat().catch(async (e: unknown) => {
    await fileHandle.close();
    throw e;
  });
  // Linux and macOS open a folder for reading without EISDIR; only its first read would fail, raw.
  if (info.isDirectory()) {
    await fileHandle.close();
    throw new MergeError('NOT_FOUND', `${name}: is a folder, expected a file`);
  }
  const { size } = info;
  return {
    name,
    size,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      checkReadRange(name, size, offset, length);
      const out = into?.byteLength === length ? into : new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fileHandle.read(out, done, Math.min(length - done, MAX_READ), offset + done);
        if (bytesRead === 0) {
          throw new MergeError('TRUNCATED', `${name}: file ended at byte ${offset + done}, expected ${offset + length} (changed while reading?)`);
        }
        done += bytesRead;
      }
      return out;
    },
    close: () => fileHandle.close(),
  };
}
