/**
 * Inputs must not change while a merge reads them: a base rewritten in place (`dd conv=notrunc`)
 * halfway through would give an output that matches neither version. Each input file's identity,
 * size and modification time are recorded before any byte is read and compared again just before
 * the output is moved into place; a difference aborts the merge.
 */
import { stat } from 'node:fs/promises';
import { MergeError } from '../errors.js';

interface Stamp {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

export interface InputStamps {
  /** Throws INPUT_CHANGED naming the first file that differs from when it was stamped. */
  verify(): Promise<void>;
}

async function stampOf(path: string): Promise<Stamp | undefined> {
  const s = await stat(path, { bigint: true }).catch(() => undefined);
  return s && { dev: s.dev, ino: s.ino, size: s.size, mtimeNs: s.mtimeNs };
}

/** Stamps each file now; `operation` names what reads them in the message ("the merge", "the extract"). */
export async function stampInputFiles(paths: Iterable<string>, operation = 'the merge'): Promise<InputStamps> {
  const stamps = new Map<string, Stamp | undefined>();
  for (const path of new Set(paths)) stamps.set(path, await stampOf(path));
  return {
    async verify() {
      for (const [path, before] of stamps) {
        const now = await stampOf(path);
        const why = !before || !now
          ? 'was removed or replaced'
          : now.dev !== before.dev || now.ino !== before.ino
            ? 'was replaced by another file'
            : now.size !== before.size
              ? `changed size from ${before.size} to ${now.size} bytes`
              : now.mtimeNs !== before.mtimeNs
                ? 'was modified'
                : undefined;
        if (why) {
          throw new MergeError('INPUT_CHANGED', `${path} ${why} while ${operation} read it; nothing was written; run ${operation} again once it stays unchanged`);
        }
      }
    },
  };
}
