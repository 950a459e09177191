/**
 * Loaded with `node --import` into a measured child process: at exit, appends the process's peak
 * resident set size (kilobytes) to the file named by LORAMERGE_BENCH_RSS_FILE, and where
 * LORAMERGE_BENCH_USAGE_FILE is set, writes there its CPU seconds (user, system), the main
 * thread's user CPU seconds where /proc has them (the rest is worker threads' and V8's helpers')
 * and minor page faults as JSON.
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

/** User CPU seconds of the main thread (its task id is the process id), or undefined without /proc. */
function mainThreadUserSeconds() {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command name in parentheses: state is field 3, utime field 14 (clock ticks, 100 a second).
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]) / 100;
  } catch {
    return undefined;
  }
}

const target = process.env.LORAMERGE_BENCH_RSS_FILE;
const usageTarget = process.env.LORAMERGE_BENCH_USAGE_FILE;
if (target || usageTarget) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    if (target) appendFileSync(target, `${peakRssKiB()}\n`);
    if (usageTarget) {
      writeFileSync(usageTarget, JSON.stringify({ userSeconds: u.userCPUTime / 1e6, systemSeconds: u.systemCPUTime / 1e6, mainUserSeconds: mainThreadUserSeconds(), minorFaults: u.minorPageFault }));
    }
  });
}
