/**
 * Temporary outputs: recognisable, short names, and removal of the ones an interrupted merge left.
 *
 * A merge writes under `.loramerge-<pid>-<random>.tmp` beside its output and renames that into place
 * when done. The name's length does not depend on the output's, so any output name the file system
 * accepts also works for the temporary one. A merge that is killed (SIGKILL, power loss) leaves its
 * temporary behind; the next merge into the same folder removes it once the process that wrote it
 * is gone. Names from older versions (`.<out>.loramerge-<random>.tmp`) carry no process id, so
 * they are only reported, with the command to remove them.
 */
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

const CURRENT = /^\.loramerge-(\d+)-[0-9a-f]{12}\.(tmp|old)$/;
const LEGACY = /^\..+\.loramerge-[0-9a-f]{12}\.(tmp|old)$/;

/** A fresh temporary path in `dir` for this process: `.tmp` for new output, `.old` for output moved aside. */
export function temporaryPath(dir: string, kind: 'tmp' | 'old'): string {
  return join(dir, `.loramerge-${process.pid}-${randomBytes(6).toString('hex')}.${kind}`);
}

/** Is this entry name one of our temporaries or locks (so a folder holding only those is empty)? */
export function isLoramergeEntry(name: string): boolean {
  return name.startsWith('.loramerge-');
}

/** Does process `pid` still run? (EPERM: it runs under another user.) */
export function isProcessRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporaries in `dir` whose writer is gone and reports each; reports legacy ones.
 * Failures to list or remove are reported, never fatal: the merge itself may still succeed.
 */
export async function removeStaleTemporaries(dir: string, notice: (message: string) => void): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(dir, name);
    const current = CURRENT.exec(name);
    if (current) {
      const pid = Number(current[1]);
      if (isProcessRunning(pid)) continue;
      try {
        await rm(path, { recursive: true, force: true });
        notice(`removed ${path}, left by an interrupted merge (process ${pid})`);
      } catch (e) {
        notice(`${path} was left by an interrupted merge (process ${pid}) but could not be removed (${(e as NodeJS.ErrnoException).code}); remove it with: rm -r '${path}'`);
      }
    } else if (LEGACY.test(name)) {
      notice(`${path} looks like a temporary file left by an interrupted merge; if no merge is running, remove it with: rm -r '${path}'`);
    }
  }
}
