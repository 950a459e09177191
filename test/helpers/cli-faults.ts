/**
 * Running the CLI where faults are real: in a private mount namespace (unshare -m, root only) with a
 * small tmpfs that fills up, a read-only remount or a mount point, or as an unprivileged user. Tests
 * that need these skip when the machine does not allow them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { CLI, type CliResult } from './cli.js';

/** Can this process make private mount namespaces and mount tmpfs in them? */
export const canMount = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt'], { stdio: 'ignore' });
  return probe.status === 0;
})();

/**
 * Can this process run the CLI as the unprivileged user `nobody`? Both must hold: `setpriv` works, and
 * `nobody` can reach the checkout (a clone inside a private folder, such as one made by `mktemp -d`,
 * is not readable by other users, so the CLI would not even start there).
 */
export const canDropPrivileges = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '--version'], { stdio: 'ignore' });
  return probe.status === 0;
})();

function collect(command: string, args: string[], timeoutMs: number): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** What `runCliWithMounts` printed after the CLI: the listing of `inspect`, before the mounts go. */
export const LISTING_MARK = '--- listing ---';

/**
 * `setup` (shell, as root in a private mount namespace), then the CLI with `args`, then `ls -A` of
 * `inspect` (appended to stdout after LISTING_MARK): mounts vanish with the namespace, so what was
 * left in them must be looked at inside it.
 */
export function runCliWithMounts(setup: string, args: string[], inspect: string, timeoutMs = 60_000): Promise<CliResult & { listing: string[] }> {
  const script = `${setup} || exit 99; "$@"; rc=$?; echo '${LISTING_MARK}'; ls -A '${inspect}'; exit $rc`;
  return collect('unshare', ['-m', 'sh', '-c', script, 'sh', process.execPath, CLI, ...args], timeoutMs).then((result) => {
    const [stdout, listing = ''] = result.stdout.split(`${LISTING_MARK}\n`);
    return { ...result, stdout, listing: listing.split('\n').filter((l) => l !== '') };
  });
}

/** The CLI as user `nobody` (uid 65534). */
export function runCliUnprivileged(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return collect('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args], timeoutMs);
}
