// A worker thread that runs the built CLI's front end in-process, one command line per message, so
// the fuzzer can run many cases without starting Node each time, and can still stop a case that
// hangs (by terminating the worker). A message may set the merge's row slab size (small: a layer
// streams in several slabs). Replies { code, stdout, stderr, ms }. A message { memory: true } is
// answered with what this thread's heap still holds after full collections ({ retained } bytes:
// V8 heap plus memory outside it held by JS objects, array buffers and WASM memories included),
// which grows across cases only where something is kept from one merge to the next, and the
// process's threads where Linux says (a thread a merge leaves running adds to them).
import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { runCommandLine } from '../../dist/cli/run-cli.js';

// gc() without starting Node with --expose-gc: a context made after the flag is set has it.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

/** Bytes reachable from this thread after full collections. */
async function retained() {
  gc();
  // Array buffers' backing stores are freed after the collection, on a later turn.
  await new Promise((r) => setTimeout(r, 0));
  gc();
  const { heapUsed, external } = process.memoryUsage();
  return heapUsed + external;
}

/** The process's threads, where /proc says; undefined elsewhere. */
function threads() {
  const status = existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '';
  const count = /^Threads:\s+(\d+)/m.exec(status)?.[1];
  return count === undefined ? undefined : Number(count);
}

parentPort.on('message', async ({ id, argv, slabBytes, memory }) => {
  if (memory) {
    parentPort.postMessage({ id, retained: await retained(), threads: threads() });
    return;
  }
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
