/**
 * Is a path a mount point? Such a folder (or bind-mounted file) cannot be renamed over or away
 * (EBUSY), so an output there is written through instead of replaced. A different device than the
 * parent's says so; a bind mount within one file system keeps the device, so on Linux the mount
 * table is read too.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function isMountPoint(path: string): Promise<boolean> {
  const [self, parent] = await Promise.all([stat(path).catch(() => undefined), stat(dirname(path)).catch(() => undefined)]);
  if (!self || !parent) return false;
  if (self.dev !== parent.dev || (self.ino === parent.ino && self.dev === parent.dev)) return true;
  if (process.platform !== 'linux') return false;
  const [table, real] = await Promise.all([
    readFile('/proc/self/mountinfo', 'utf8').catch(() => ''),
    realpath(path).catch(() => path),
  ]);
  return mountPointsIn(table).has(real);
}

/** The mount points listed in /proc/self/mountinfo (fifth field, octal escapes such as \040 decoded). */
export function mountPointsIn(mountinfo: string): Set<string> {
  const points = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field) points.add(field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  }
  return points;
}
