/**
 * The CLI's exit codes, documented in the README: scripts may branch on them.
 *   0    success
 *   1    the merge failed: an input does not exist, is broken, unsupported, over a limit, changed
 *        while merging, or the result would hold NaN/Inf
 *   2    usage: a bad or missing option (no --base), an output path that cannot be used
 *   3    the filesystem refused: disk full, read-only, permission denied, busy, name too long
 *   130  cancelled (Ctrl-C, SIGTERM, SIGHUP)
 */
import { isMergeError, type MergeErrorCode } from '../errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_FILESYSTEM = 3;
export const EXIT_CANCELLED = 130;

/** Signals that cancel a running command cleanly with EXIT_CANCELLED (a closed terminal sends SIGHUP). */
export const CANCEL_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const USAGE_CODES: ReadonlySet<MergeErrorCode> = new Set(['BAD_ARGUMENT', 'OUTPUT_EXISTS', 'OUTPUT_IS_INPUT', 'OUTPUT_BUSY']);

export function exitCodeFor(e: unknown): number {
  if (!isMergeError(e)) return EXIT_FAILED;
  if (e.code === 'ABORTED') return EXIT_CANCELLED;
  if (e.code === 'FILESYSTEM') return EXIT_FILESYSTEM;
  return USAGE_CODES.has(e.code) ? EXIT_USAGE : EXIT_FAILED;
}
