/** A file on disk as a ByteSource: positional reads through one FileHandle (Node only). */
import { open } from 'node:fs/promises';
import { MergeError } from '../errors.js';
import { checkReadRange } from './read-range.js';
import type { ByteSource } from './types.js';

/** Node's positional reads are limited to 2 GiB each; large tensors are read in pieces. */
const MAX_READ = 1 << 30;

/**
 * A read shorter than this that begins where the one before it ended is served from a block of
 * `SMALL_READ_BLOCK` bytes read at once: a checkpoint of 140 000 tiny tensors (fp8 scales beside
 * expert weights) otherwise costs a file read, its promises and request objects per tensor. Reads
 * elsewhere (a header, sampled rows) go straight to the file, so they never pull in a block.
 */
const SMALL_READ_BYTES = 16 * 1024;
const SMALL_READ_BLOCK = 64 * 1024;

/** A file on disk as a ByteSource (Node only). */
export async function openNodeByteSource(path: string, name: string = path): Promise<ByteSource> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MergeError('NOT_FOUND', `${name}: no such file`, { cause: e });
    if (code === 'EISDIR') throw new MergeError('NOT_FOUND', `${name}: is a folder, expected a file`, { cause: e });
    throw new MergeError('NOT_FOUND', `${name}: cannot open (${code ?? (e as Error).message})`, { cause: e });
  }
  const fileHandle = handle;
  const { size } = await fileHandle.stat().catch(async (e: unknown) => {
    await fileHandle.close();
    throw e;
  });
  const readAt = async (out: Uint8Array, offset: number): Promise<Uint8Array> => {
    let done = 0;
    while (done < out.byteLength) {
      const { bytesRead } = await fileHandle.read(out, done, Math.min(out.byteLength - done, MAX_READ), offset + done);
      if (bytesRead === 0) {
        throw new MergeError('TRUNCATED', `${name}: file ended at byte ${offset + done}, expected ${offset + out.byteLength} (changed while reading?)`);
      }
      done += bytesRead;
    }
    return out;
  };
  /** The block small sequential reads are served from: `block` holds the file's bytes from `blockStart`. */
  let block: Uint8Array | undefined;
  let blockStart = 0;
  let lastEnd = -1;
  return {
    name,
    size,
    async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      checkReadRange(name, size, offset, length);
      const out = into?.byteLength === length ? into : new Uint8Array(length);
      const sequential = offset === lastEnd;
      lastEnd = offset + length;
      if (length >= SMALL_READ_BYTES || length === 0) return readAt(out, offset);
      if (!(block && offset >= blockStart && offset + length <= blockStart + block.byteLength)) {
        if (!sequential) return readAt(out, offset);
        const filled = await readAt(new Uint8Array(Math.min(SMALL_READ_BLOCK, size - offset)), offset);
        // Another read may have replaced the block while this one waited; either block is whole.
        block = filled;
        blockStart = offset;
        out.set(filled.subarray(0, length));
        return out;
      }
      out.set(block.subarray(offset - blockStart, offset - blockStart + length));
      return out;
    },
    close: () => fileHandle.close(),
  };
}
