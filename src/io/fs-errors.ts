/**
 * Filesystem failures as one line a user can act on: which path, what went wrong in words, and what
 * to do. Node's own messages (`ENOSPC: no space left on device, write`) name neither the path the
 * user gave nor a fix.
 */
import { MergeError, isMergeError } from '../errors.js';

/** What each errno means for a merge's output, and the fix to suggest. */
const EXPLAINED: Record<string, { what: string; fix: string }> = {
  ENOSPC: { what: 'no space left on the device', fix: 'free some space or choose another --out' },
  EDQUOT: { what: 'disk quota exceeded', fix: 'free some space or choose another --out' },
  EFBIG: { what: 'the file would be larger than the file-size limit (ulimit -f) or the file system allows', fix: 'raise the limit or choose an --out on another file system' },
  EROFS: { what: 'the file system is read-only', fix: 'choose an --out on a writable file system' },
  EACCES: { what: 'permission denied', fix: 'check the permissions of the folder or choose another --out' },
  EPERM: { what: 'operation not permitted', fix: 'check the permissions of the folder or choose another --out' },
  EBUSY: { what: 'busy (a mount point or in use by another program)', fix: 'choose another --out' },
  ENAMETOOLONG: { what: 'the name is too long for the file system', fix: 'choose a shorter --out' },
  ENOTEMPTY: { what: 'appeared while merging (another merge into the same place?)', fix: 'remove it or choose another --out, then run again' },
  EEXIST: { what: 'appeared while merging (another merge into the same place?)', fix: 'remove it or choose another --out, then run again' },
  EMFILE: { what: 'too many open files', fix: 'raise the open-file limit (ulimit -n) and run again' },
  ENFILE: { what: 'too many open files on the system', fix: 'close other programs and run again' },
  EIO: { what: 'an input/output error from the device', fix: 'check the disk (dmesg) and run again' },
  ENOTDIR: { what: 'a part of the path is not a folder', fix: 'check the path' },
  EISDIR: { what: 'is a folder', fix: 'check the path' },
  ENOENT: { what: 'does not exist (removed while merging?)', fix: 'check the path and run again' },
  ELOOP: { what: 'too many levels of symbolic links', fix: 'check the links on the path' },
  EXDEV: { what: 'cannot be moved across file systems', fix: 'choose an --out on one file system' },
};

const SYSCALL_WORDS: Record<string, string> = {
  open: 'opening', read: 'reading', write: 'writing', fsync: 'flushing to disk', close: 'closing',
  rename: 'renaming', mkdir: 'creating a folder', rmdir: 'removing a folder', unlink: 'removing a file',
  stat: 'reading its status', lstat: 'reading its status', scandir: 'listing it', copyfile: 'copying',
};

export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/**
 * The MergeError for a failed filesystem call on `path` while `doing` ("writing", "renaming into
 * place" ...); MergeErrors pass through unchanged, other non-errno errors too. `destination` names
 * what the user chose the path with, in the fix ("choose another --out"; `sample` takes a DIR).
 */
export function fsError(e: unknown, path: string, doing: string, destination = '--out'): unknown {
  if (isMergeError(e)) return e;
  const code = errnoOf(e);
  if (!code) return e;
  const known = EXPLAINED[code];
  const message = known
    ? `${path}: ${known.what} while ${doing} (${code}); ${known.fix.replaceAll('--out', destination)}`
    : `${path}: ${doing} failed (${code}: ${(e as Error).message.replace(/^[A-Z]+: /, '')})`;
  return new MergeError('FILESYSTEM', message, { cause: e });
}

/**
 * fsError for an input being read (a file or folder given as --base, --adapter, --tuned): the fix
 * is about that input, not --out ("choose another --out" sent users to the wrong path).
 */
export function inputFsError(e: unknown, path: string, doing: string): unknown {
  if (isMergeError(e)) return e;
  const code = errnoOf(e);
  if (!code) return e;
  const known = EXPLAINED[code];
  const fix = code === 'EACCES' || code === 'EPERM' ? 'check its permissions (inputs are only read)'
    : code === 'EMFILE' || code === 'ENFILE' || code === 'EIO' ? known.fix
    : 'check the input path';
  const what = known ? known.what : `failed (${code}: ${(e as Error).message.replace(/^[A-Z]+: /, '')})`;
  // A link loop or a file used as a folder: the path, as typed, leads to no input (exit 1, as a
  // missing one), where a refusal of the filesystem itself (permissions, I/O) is exit 3.
  const leadsNowhere = code === 'ELOOP' || code === 'ENOTDIR';
  return new MergeError(leadsNowhere ? 'NOT_FOUND' : 'FILESYSTEM', `${path}: ${what} while ${doing} (${code}); ${fix}`, { cause: e });
}

/** Runs a filesystem call, turning its errno failure into one clear line about `path`. */
export async function onPath<T>(path: string, doing: string, call: () => Promise<T>, destination = '--out'): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fsError(e, path, doing, destination);
  }
}

/**
 * The last resort for an errno error that escaped every layer: still one line, naming the path Node
 * reports (or the system call) instead of a stack trace.
 */
export function describeStrayFsError(e: unknown): MergeError | undefined {
  const code = errnoOf(e);
  if (!code) return undefined;
  const err = e as NodeJS.ErrnoException;
  const where = err.path ?? (err as { dest?: string }).dest ?? `(${err.syscall ?? 'a file operation'})`;
  const mapped = fsError(e, where, SYSCALL_WORDS[err.syscall ?? ''] ?? 'accessing it');
  return isMergeError(mapped) ? mapped : undefined;
}
