/**
 * The command line as a function: parse, run, and turn every failure into one `error: …` line and
 * an exit code (see exit-codes.ts). `main.ts` runs it for the process; tests run it in-process.
 */
import { readFileSync } from 'node:fs';
import { isMergeError } from '../errors.js';
import { describeStrayFsError } from '../io/fs-errors.js';
import { parseCommandLine, USAGE } from './args.js';
import { EXIT_OK, EXIT_USAGE, exitCodeFor } from './exit-codes.js';
import { runInspect } from './inspect-command.js';
import { runMerge } from './merge-command.js';
import { runSample } from './sample-command.js';
import { oneLine, stderrLine, stdoutLine } from './terminal-text.js';
import { runCombine, runConvert, runExtract, runResize } from './adapter-command.js';

/** Where a run writes: results to `out` (stdout), messages to `err` (stderr), one line per call. */
export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
  /** Print stack traces of failures (LORAMERGE_DEBUG). */
  debug?: boolean;
  /** Bytes of the base per row slab of a merge (see MergeOutput). */
  slabBytes?: number;
}

export const processOutput: CliOutput = {
  out: stdoutLine,
  err: stderrLine,
  debug: !!process.env.LORAMERGE_DEBUG,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function dispatch(argv: string[], io: CliOutput): Promise<number> {
  const command = parseCommandLine(argv);
  switch (command.command) {
    case 'help':
      // Asked for, the usage is the result (stdout, 0); a bare `loramerge` names no command, a
      // usage fault like any other (stderr, EXIT_USAGE), so a script that forgot its arguments fails.
      if (command.asked) {
        io.out(USAGE);
        return EXIT_OK;
      }
      io.err(USAGE);
      return EXIT_USAGE;
    case 'version':
      io.out(version());
      return 0;
    case 'inspect':
      return runInspect(command, io.out);
    case 'merge':
      return runMerge(command, io);
    case 'sample':
      return runSample(command, io);
    case 'combine':
      return runCombine(command, io.err, io.out);
    case 'resize':
      return runResize(command, io.err, io.out);
    case 'extract':
      return runExtract(command, io.err, io.out);
    case 'convert':
      return runConvert(command, io.err, io.out);
  }
}

/** Runs one command line to its exit code; never throws. */
export async function runCommandLine(argv: string[], io: CliOutput = processOutput): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (io.debug) io.err(String((e as Error)?.stack ?? e));
    const known = isMergeError(e) ? e : describeStrayFsError(e);
    const message = known ? known.message : `internal error: ${(e as Error)?.message ?? String(e)}`;
    io.err(`error: ${oneLine(message)}`);
    return exitCodeFor(known ?? e);
  }
}
