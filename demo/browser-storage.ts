/**
 * Runs in the worker: merged files kept in the browser's private disk space (the Origin Private
 * File System), one folder per merge. They are disk-backed, so a download link to one costs no
 * memory whatever the model's size. Folders are deleted when the page withdraws a result and, on
 * start, whatever an earlier visit left behind. Each folder is held by a Web Lock while its page is
 * open, so a second tab never deletes the first one's files.
 */
import { makeZip } from 'client-zip';

const ROOT = 'loramerge-merges';

async function root(): Promise<FileSystemDirectoryHandle> {
  return (await navigator.storage.getDirectory()).getDirectoryHandle(ROOT, { create: true });
}

/** Whether this browser has an Origin Private File System. */
export function hasBrowserStorage(): boolean {
  return typeof navigator !== 'undefined' && typeof navigator.storage?.getDirectory === 'function';
}

const lockName = (job: string) => `loramerge-${job}`;
/** Releases the lock of each job this page holds. */
const held = new Map<string, () => void>();

/** Holds a job's lock until it is deleted or the page closes; resolves once held. */
function holdLock(job: string): Promise<void> {
  if (!navigator.locks) return Promise.resolve();
  return new Promise((acquired) => {
    void navigator.locks.request(lockName(job), () => new Promise<void>((release) => {
      held.set(job, release);
      acquired();
    }));
  });
}

/** A fresh, empty folder for one merge. */
export async function newJobFolder(): Promise<{ job: string; folder: FileSystemDirectoryHandle }> {
  const job = `merge-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  await holdLock(job);
  return { job, folder: await (await root()).getDirectoryHandle(job, { create: true }) };
}

export async function deleteJob(job: string): Promise<void> {
  await (await root()).removeEntry(job, { recursive: true }).catch(() => undefined);
  held.get(job)?.();
  held.delete(job);
}

/** Deletes the merge folders no open page holds: called once when the worker starts. */
export async function deleteAllJobs(): Promise<void> {
  if (!hasBrowserStorage()) return;
  const jobs = await root();
  const names: string[] = [];
  for await (const name of jobs.keys()) names.push(name);
  for (const name of names) {
    const job = name.replace(/-zip$/, '');
    const free = !navigator.locks || await navigator.locks.request(lockName(job), { ifAvailable: true }, (lock) => lock !== null);
    if (free) await jobs.removeEntry(name, { recursive: true }).catch(() => undefined);
  }
}

/** The File at a '/' path under `folder` (disk-backed). */
export async function fileAt(folder: FileSystemDirectoryHandle, path: string): Promise<File> {
  const parts = path.split('/');
  let dir = folder;
  for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part);
  return (await dir.getFileHandle(parts[parts.length - 1])).getFile();
}

/** Every file under a folder, with '/' paths. */
async function listFiles(folder: FileSystemDirectoryHandle, prefix = ''): Promise<{ path: string; file: File }[]> {
  const out: { path: string; file: File }[] = [];
  for await (const [name, handle] of folder.entries()) {
    if (handle.kind === 'directory') out.push(...await listFiles(handle as FileSystemDirectoryHandle, `${prefix}${name}/`));
    else out.push({ path: `${prefix}${name}`, file: await (handle as FileSystemFileHandle).getFile() });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/**
 * Streams a merge's files into one zip (stored, not compressed: weights do not compress) beside
 * them, `<zipFolder>/…` inside, and returns it. Memory stays at the stream's buffers.
 */
export async function zipJob(job: string, zipFolder: string): Promise<File> {
  const jobs = await root();
  const folder = await jobs.getDirectoryHandle(job);
  const files = await listFiles(folder);
  const zips = await jobs.getDirectoryHandle(`${job}-zip`, { create: true });
  const handle = await zips.getFileHandle(`${zipFolder}.zip`, { create: true });
  const stream = makeZip(files.map(({ path, file }) => ({ name: `${zipFolder}/${path}`, input: file, size: file.size, lastModified: file.lastModified })));
  await stream.pipeTo(await handle.createWritable());
  return handle.getFile();
}

/** Deletes a merge's zip, if one was made. */
export async function deleteJobZip(job: string): Promise<void> {
  await (await root()).removeEntry(`${job}-zip`, { recursive: true }).catch(() => undefined);
}
