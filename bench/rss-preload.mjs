/**
 * Loaded with `node --import` into a measured child process: at exit, appends the process's peak
 * resident set size (kilobytes, from getrusage) to the file named by LORAMERGE_BENCH_RSS_FILE.
 */
import { appendFileSync } from 'node:fs';

const target = process.env.LORAMERGE_BENCH_RSS_FILE;
if (target) {
  process.on('exit', () => {
    appendFileSync(target, `${process.resourceUsage().maxRSS}\n`);
  });
}
