/** Running a command from the repository root and timing it, for the benchmarks. */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Runs `cmd` with `args` in the repository root, `env` added to this process's environment.
 * Resolves with { seconds, stdout, stderr } (wall time); rejects naming the command, with the last
 * lines of its stderr, when it exits with another code than 0.
 */
export function runTimed(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code === 0) resolve({ seconds, stdout, stderr });
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${stderr.trim().split('\n').slice(-5).join('\n')}`));
    });
  });
}
