// A worker thread that runs the built CLI's front end in-process, one command line per message, so
// the fuzzer can run many cases without starting Node each time, and can still stop a case that
// hangs (by terminating the worker). A message may set the merge's row slab size (small: a layer
// streams in several slabs). Replies { code, stdout, stderr, ms }.
import { parentPort } from 'node:worker_threads';
import { runCommandLine } from '../../dist/cli/run-cli.js';

parentPort.on('message', async ({ id, argv, slabBytes }) => {
  const out = [];
  const err = [];
  const started = performance.now();
  let code;
  try {
    code = await runCommandLine(argv, { out: (l) => out.push(l), err: (l) => err.push(l), ...(slabBytes ? { slabBytes } : {}) });
  } catch (e) {
    code = -1;
    err.push(`runCommandLine threw: ${e?.stack ?? e}`);
  }
  parentPort.postMessage({ id, code, stdout: out.join('\n'), stderr: err.join('\n'), ms: performance.now() - started });
});
