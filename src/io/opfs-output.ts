/**
 * An OutputTarget in the Origin Private File System for dedicated Web Workers: synchronous access
 * handles write about twice as fast as writable streams (measured in Chromium: 1 GB in 4 MiB
 * chunks, 2.6 s against 4.6 s). Files are written as `.<name>.partial` beside their real name and
 * renamed on commit, replacing same-named files (where the engine cannot rename, they are written
 * under their real names and a failed merge removes them); abort() removes whatever this target
 * created. Meant for a folder of the application's own, such as one made per merge.
 */
import { MergeError } from '../errors.js';
import type { ByteSink, OutputTarget } from './types.js';

interface SyncHandle {
  write(buffer: ArrayBufferView, options: { at: number }): number;
  flush(): void;
  close(): void;
}
type SyncFileHandle = FileSystemFileHandle & {
  createSyncAccessHandle(): Promise<SyncHandle>;
  move?(name: string): Promise<void>;
};

interface Written {
  dir: FileSystemDirectoryHandle;
  name: string;
  tempName: string;
  handle: SyncFileHandle;
  sync?: SyncHandle;
}

/** Resolves in a later task (a message to ourselves: no timer clamp). */
function nextTask(): Promise<void> {
  if (typeof MessageChannel !== 'function') return new Promise((resolve) => setTimeout(resolve, 0));
  const channel = new MessageChannel();
  return new Promise((resolve) => {
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/** Whether this context can write OPFS files synchronously (dedicated workers only). */
export function opfsSyncWritesAvailable(): boolean {
  const handleClass = (globalThis as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle;
  return !!handleClass && 'createSyncAccessHandle' in handleClass.prototype;
}

/** An OutputTarget writing under `folder` (a folder of the Origin Private File System). */
export function createOpfsOutputTarget(folder: FileSystemDirectoryHandle, name: string = folder.name): OutputTarget {
  if (!opfsSyncWritesAvailable()) throw new MergeError('BAD_ARGUMENT', `${name}: synchronous OPFS writes need a dedicated Web Worker`);
  const written: Written[] = [];
  const paths = new Set<string>();
  const createdDirs: { parent: FileSystemDirectoryHandle; name: string }[] = [];
  let state: 'open' | 'committed' | 'aborted' = 'open';
  const requireOpen = () => {
    if (state !== 'open') throw new Error(`${name}: output already ${state}`);
  };

  async function folderFor(parts: string[]): Promise<FileSystemDirectoryHandle> {
    let dir = folder;
    for (const part of parts) {
      const parent = dir;
      try {
        dir = await parent.getDirectoryHandle(part);
      } catch {
        dir = await parent.getDirectoryHandle(part, { create: true });
        createdDirs.push({ parent, name: part });
      }
    }
    return dir;
  }

  const closeAll = () => {
    for (const w of written) {
      w.sync?.close();
      w.sync = undefined;
    }
  };

  return {
    name,
    async createFile(path: string): Promise<ByteSink> {
      requireOpen();
      const parts = path.split('/');
      if (parts.some((p) => p === '' || p === '.' || p === '..')) throw new Error(`${name}: invalid output file path "${path}"`);
      if (paths.has(path)) throw new Error(`${name}: "${path}" created twice`);
      paths.add(path);
      const dir = await folderFor(parts.slice(0, -1));
      const fileName = parts[parts.length - 1];
      const probe = (await dir.getFileHandle(`.${fileName}.partial`, { create: true })) as SyncFileHandle;
      const canRename = typeof probe.move === 'function';
      const handle = canRename ? probe : ((await dir.getFileHandle(fileName, { create: true })) as SyncFileHandle);
      if (!canRename) await dir.removeEntry(`.${fileName}.partial`);
      const file: Written = { dir, name: fileName, tempName: canRename ? `.${fileName}.partial` : fileName, handle, sync: await handle.createSyncAccessHandle() };
      written.push(file);
      let at = 0;
      return {
        async write(chunk: Uint8Array): Promise<void> {
          // A synchronous write blocks this thread: it waits for the next task, by when a merge
          // pipeline has handed its next slab to the backend, so the two overlap.
          await nextTask();
          if (!file.sync) throw new Error(`${path}: write after close`);
          let done = 0;
          while (done < chunk.byteLength) done += file.sync.write(chunk.subarray(done), { at: at + done });
          at += chunk.byteLength;
        },
        async close(): Promise<void> {
          file.sync?.flush();
          file.sync?.close();
          file.sync = undefined;
        },
      };
    },
    async commit(): Promise<void> {
      requireOpen();
      const unfinished = written.find((w) => w.sync);
      if (unfinished) throw new Error(`${unfinished.name}: still being written, cannot commit`);
      for (const w of written) {
        if (w.tempName === w.name) continue;
        await w.dir.removeEntry(w.name).catch(() => undefined); // move() does not replace
        await w.handle.move!(w.name);
      }
      state = 'committed';
    },
    async abort(): Promise<void> {
      if (state !== 'open') return;
      state = 'aborted';
      closeAll();
      for (const w of written) await w.dir.removeEntry(w.tempName).catch(() => undefined);
      for (const d of createdDirs.reverse()) await d.parent.removeEntry(d.name, { recursive: true }).catch(() => undefined);
    },
  };
}
