/**
 * `loramerge` on Node: run the command line and exit with its code. Set LORAMERGE_DEBUG=1 to see
 * stack traces.
 */
// Only small modules here: the cancel handlers below must be in place before the engine loads (a
// third of a second), or a Ctrl-C in that time ends the process by the signal, without a word.
import { cancelledMessage, handleCancelSignals, outArgument } from './cancel-signals.js';
import { EXIT_CANCELLED } from './exit-codes.js';
import { oneLine, stderrLine } from './terminal-text.js';

// `loramerge inspect X | head -1`: a reader that goes away is not an error worth a stack trace.
// Whatever is left to print is dropped; the command itself runs to its end.
for (const stream of [process.stdout, process.stderr]) {
  let closed = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') closed = true;
    else if (!closed) throw e; // writes after the pipe closed fail too: ignore those
  });
}

/**
 * Resolves once what was written to `stream` has left the process. A pipe takes 64 KiB at a time:
 * the rest waits in the stream, and process.exit drops it (`inspect X | less` lost all but 64 KiB).
 */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => stream.write('', () => resolve())); // called in order, after the rest; with an error too
}

// From the start: a Ctrl-C before any output exists ends the process with our code too, and one
// after the command finished (while its output drains) with the command's own.
let finished: number | undefined;
const commandName = ['merge', 'combine', 'resize', 'extract', 'convert', 'sample', 'inspect'].includes(process.argv[2]) ? process.argv[2] : 'command';
handleCancelSignals((code) => {
  // Before the command printed its outcome (no output yet, or its cleanup just done): say it here,
  // so that a cancel is always one line.
  if (finished === undefined) stderrLine(`error: ${oneLine(cancelledMessage(commandName, outArgument(process.argv.slice(3))))}`);
  process.exit(code);
}, () => finished ?? EXIT_CANCELLED);

const { runCommandLine } = await import('./run-cli.js');
runCommandLine(process.argv.slice(2)).then(async (code) => {
  finished = code;
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  // Dawn keeps the process alive while its GPU object lives: exit explicitly.
  process.exit(code);
});
