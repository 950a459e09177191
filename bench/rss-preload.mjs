/**
 * Loaded with `node --import` into a measured child process: at exit, appends the process's peak
 * resident set size (kilobytes, from getrusage) to the file named by LORAMERGE_BENCH_RSS_FILE,
 * and where LORAMERGE_BENCH_USAGE_FILE is set, writes there its CPU seconds (user, system) and
 * minor page faults as JSON.
 */
import { appendFileSync, writeFileSync } from 'node:fs';

const target = process.env.LORAMERGE_BENCH_RSS_FILE;
const usageTarget = process.env.LORAMERGE_BENCH_USAGE_FILE;
if (target || usageTarget) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    if (target) appendFileSync(target, `${u.maxRSS}\n`);
    if (usageTarget) {
      writeFileSync(usageTarget, JSON.stringify({ userSeconds: u.userCPUTime / 1e6, systemSeconds: u.systemCPUTime / 1e6, minorFaults: u.minorPageFault }));
    }
  });
}
