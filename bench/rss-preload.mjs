/**
 * Loaded with `node --import` into a measured child process: at exit, appends the process's peak
 * resident set size (kilobytes) to the file named by LORAMERGE_BENCH_RSS_FILE, and where
 * LORAMERGE_BENCH_USAGE_FILE is set, writes there its CPU seconds (user, system) and minor page
 * faults as JSON.
 *
 * The peak is Linux's VmHWM where /proc has it: getrusage's maxRSS of a spawned child starts from
 * its parent's resident size at fork (Linux keeps it across exec), so a child of a large process
 * would report the parent's memory as its own.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

/** Peak resident set of this process in KiB. */
function peakRssKiB() {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // no /proc: getrusage below
  }
  return process.resourceUsage().maxRSS;
}

const target = process.env.LORAMERGE_BENCH_RSS_FILE;
const usageTarget = process.env.LORAMERGE_BENCH_USAGE_FILE;
if (target || usageTarget) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    if (target) appendFileSync(target, `${peakRssKiB()}\n`);
    if (usageTarget) {
      writeFileSync(usageTarget, JSON.stringify({ userSeconds: u.userCPUTime / 1e6, systemSeconds: u.systemCPUTime / 1e6, minorFaults: u.minorPageFault }));
    }
  });
}
