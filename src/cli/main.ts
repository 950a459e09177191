/**
 * `loramerge` on Node: run the command line and exit with its code. Set LORAMERGE_DEBUG=1 to see
 * stack traces.
 */
import { runCommandLine } from './run-cli.js';

// `loramerge inspect X | head -1`: a reader that goes away is not an error worth a stack trace.
// Whatever is left to print is dropped; the command itself runs to its end.
for (const stream of [process.stdout, process.stderr]) {
  let closed = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') closed = true;
    else if (!closed) throw e; // writes after the pipe closed fail too: ignore those
  });
}

runCommandLine(process.argv.slice(2)).then((code) => {
  // Dawn keeps the process alive while its GPU object lives: exit explicitly.
  process.exit(code);
});
