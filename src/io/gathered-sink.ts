/**
 * Small chunks gathered into one buffer before they reach a file: a checkpoint of 140 000 tiny
 * tensors (fp8 scales beside expert weights) otherwise costs one file write per tensor, with its
 * promises and request objects (Node), its message to the OPFS writer, or its stream write. Larger
 * chunks pass straight through, after whatever was gathered before them.
 */
import type { ByteSink } from './types.js';

/** Chunks shorter than this are gathered. */
export const SMALL_WRITE_BYTES = 64 * 1024;
/** The gathering buffer: written out when the next small chunk would not fit. */
export const GATHER_BYTES = 1024 * 1024;

/** `sink` with small writes gathered; `name` (the file) for the message of a write after close. */
export function gatherSmallWrites(sink: ByteSink, name = 'output'): ByteSink {
  let gather: Uint8Array | undefined;
  let gathered = 0;
  let closed = false;
  // Calls run one after another, each once the one before is done: a caller may start a write
  // before the previous one resolved, and the gathering buffer is refilled only after its bytes
  // were written (a sink may read a chunk until its write resolves), with the file's order kept.
  let queue: Promise<unknown> = Promise.resolve();
  const inTurn = <T>(op: () => Promise<T>): Promise<T> => {
    const run = queue.then(op);
    queue = run.catch(() => {});
    return run;
  };
  const writeGathered = async () => {
    if (gathered === 0 || !gather) return;
    const bytes = gather.subarray(0, gathered);
    gathered = 0;
    await sink.write(bytes);
  };
  return {
    write(chunk: Uint8Array): Promise<void> {
      if (closed) return Promise.reject(new Error(`${name}: write after close`));
      return inTurn(async () => {
        if (chunk.byteLength >= SMALL_WRITE_BYTES) {
          await writeGathered();
          return sink.write(chunk);
        }
        if (gathered + chunk.byteLength > GATHER_BYTES) await writeGathered();
        // Copied: the caller may reuse its chunk once this resolves.
        gather ??= new Uint8Array(GATHER_BYTES);
        gather.set(chunk, gathered);
        gathered += chunk.byteLength;
      });
    },
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      closed = true;
      return inTurn(async () => {
        await writeGathered();
        gather = undefined;
        await sink.close();
      });
    },
  };
}
