// Preloaded into a CLI run (`node --import`): writes the process's peak RSS in bytes at exit.
// Linux's VmHWM where /proc has it: getrusage's maxRSS of a spawned child starts from its parent's
// resident size at fork (kept across exec), so it would count the test runner's memory.
import { readFileSync, writeFileSync } from 'node:fs';

function peakRssBytes() {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // no /proc: getrusage below
  }
  return process.resourceUsage().maxRSS * 1024;
}

process.on('exit', () => {
  if (process.env.LORAMERGE_RSS_FILE) writeFileSync(process.env.LORAMERGE_RSS_FILE, String(peakRssBytes()));
});
