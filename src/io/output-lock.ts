/**
 * One merge at a time per output: a lock file beside the temporaries, created exclusively and
 * holding the writer's process id. A second merge into the same place is refused at once, instead
 * of doing all the work and then failing to rename. A lock whose process is gone is taken over.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MergeError } from '../errors.js';
import { fsError } from './fs-errors.js';
import { isProcessRunning } from './temp-files.js';

export interface OutputLock {
  readonly path: string;
  release(): Promise<void>;
}

/** A lock file that is still empty this soon after its creation is being written, not stale. */
const FRESH_LOCK_MS = 5000;

/** Locks output `out` (an absolute path) with a file in `dir`; `name` is --out as the user gave it. */
export async function acquireOutputLock(dir: string, out: string, name: string): Promise<OutputLock> {
  const path = join(dir, `.loramerge-${createHash('sha256').update(out).digest('hex').slice(0, 16)}.lock`);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx');
      try {
        try {
          await handle.writeFile(`${process.pid}\n`);
        } finally {
          await handle.close();
        }
      } catch (e) {
        // Created but not written (a full disk, ulimit -f 0): it is ours, and must not stay behind.
        await rm(path, { force: true }).catch(() => undefined);
        throw e;
      }
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          await rm(path, { force: true }).catch(() => undefined);
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(e, name, 'creating a lock file beside it');
    }
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // released meanwhile: try again
    const pid = Number(text.trim());
    const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0);
    if (isProcessRunning(pid) || (text.trim() === '' && age < FRESH_LOCK_MS)) {
      throw new MergeError(
        'OUTPUT_BUSY',
        `${name}: another merge${pid ? ` (process ${pid})` : ''} is writing this output; wait for it to finish or choose another --out`,
      );
    }
    await rm(path, { force: true }).catch(() => undefined); // its process is gone
  }
  throw new MergeError('OUTPUT_BUSY', `${name}: could not lock this output (${path} keeps coming back); is another merge running?`);
}
