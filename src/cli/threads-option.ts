/**
 * `--threads N` of merge, combine, resize and extract: what it takes and what a count above the
 * processors costs. A module of its own, importing no other of the command line's: args.ts and
 * adapter-args.ts import each other, so a constant of either may not yet be set when the other's
 * tables are built.
 */
import { MAX_THREADS } from '../limits.js';

/** What --threads takes, as its refusals (parseThreads in args.ts) and the usage say it. */
export const THREADS_RANGE = `an integer from 1 to ${MAX_THREADS}`;

/**
 * What a `--threads` count above the machine's processors costs: every thread a large product or
 * tensor has pieces for starts and holds its own engine (about 14 MiB), and the ones past the
 * processors add no speed, so a slip such as 100 for 10 costs over a gigabyte and seconds of
 * start-up. Said, not refused: the count is the user's choice.
 */
export function threadsWarning(threads: number | undefined, processors: number): string | undefined {
  if (threads === undefined || threads <= processors) return undefined;
  return `--threads ${threads} is more than the ${processors} processor${processors === 1 ? '' : 's'} here: `
    + 'the threads past them add no speed, and each takes about 14 MiB of memory';
}
