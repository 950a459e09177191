/**
 * Watching a Node child process's CPU worker threads from outside: a preload (`--require`) that
 * counts the messages its main thread posts to worker threads (the CPU pool's jobs: every product
 * block and merge piece is one) and writes the count to the file `POOL_WATCH_JOBS` names when the
 * process exits; where `POOL_WATCH_CORES` is set, Node reports that many processors
 * (os.availableParallelism), so that the default thread count is known.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PRELOAD = `const os = require('node:os');
const { Worker, isMainThread } = require('node:worker_threads');
if (process.env.POOL_WATCH_CORES) {
  os.availableParallelism = () => Number(process.env.POOL_WATCH_CORES);
  require('node:module').syncBuiltinESMExports();
}
if (isMainThread && process.env.POOL_WATCH_JOBS) {
  let jobs = 0;
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (...args) { jobs++; return post.apply(this, args); };
  process.on('exit', () => require('node:fs').writeFileSync(process.env.POOL_WATCH_JOBS, String(jobs)));
}
`;

export interface PoolWatch {
  /** Node's arguments that load the preload. */
  nodeArgs: string[];
  /** The environment of one run: where its count goes and, optionally, the processors Node reports. */
  env(cores?: number): Record<string, string>;
  /** The jobs posted to worker threads in the last run given env(). */
  jobs(): number;
}

/** The preload written into `dir` (a temporary folder of the test's). */
export function poolWatch(dir: string): PoolWatch {
  const preload = join(dir, 'pool-watch.cjs');
  const jobsFile = join(dir, 'pool-jobs.txt');
  writeFileSync(preload, PRELOAD);
  return {
    nodeArgs: ['--require', preload],
    env(cores?: number) {
      writeFileSync(jobsFile, 'not written');
      return { POOL_WATCH_JOBS: jobsFile, ...(cores === undefined ? {} : { POOL_WATCH_CORES: String(cores) }) };
    },
    jobs() {
      const text = readFileSync(jobsFile, 'utf8');
      if (!/^\d+$/.test(text)) throw new Error(`the watched process wrote no count of pool jobs (${text})`);
      return Number(text);
    },
  };
}
