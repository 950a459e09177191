/**
 * An OutputTarget in the Origin Private File System for dedicated Web Workers: synchronous access
 * handles write about twice as fast as writable streams (measured in Chromium: 1 GB in 4 MiB
 * chunks, 2.6 s against 4.6 s). Files are written as `.<name>.partial` beside their real name and
 * renamed on commit, replacing same-named files (where the engine cannot rename, they are written
 * under their real names and a failed merge removes them); abort() removes whatever this target
 * created. Meant for a folder of the application's own, such as one made per merge.
 */
import { badArgument, checkOptions, isFileSystemHandle, shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { inThreadOpfsWriter, opfsSyncWritesAvailable, type OpfsFileWriter, type OpfsOpenFile } from './opfs-writer.js';
import { gatherSmallWrites } from './gathered-sink.js';
import type { ByteSink, OutputTarget } from './types.js';

export { opfsSyncWritesAvailable };

type MovableFileHandle = FileSystemFileHandle & { move?(name: string): Promise<void> };

interface Written {
  dir: FileSystemDirectoryHandle;
  name: string;
  tempName: string;
  handle: MovableFileHandle;
  open?: OpfsOpenFile;
}

/** Options of createOpfsOutputTarget. */
export interface OpfsOutputOptions {
  /**
   * Who writes: by default the calling thread; `opfsWriterWorker()` writes on a worker of its own
   * so the merge's thread keeps reading and dispatching meanwhile.
   */
  writer?: OpfsFileWriter;
}

/** An OutputTarget writing under `folder` (a folder of the Origin Private File System); arguments of the wrong kind are a BAD_ARGUMENT MergeError. */
export function createOpfsOutputTarget(folder: FileSystemDirectoryHandle, folderName?: string, options: OpfsOutputOptions = {}): OutputTarget {
  if (!isFileSystemHandle(folder, 'directory')) {
    throw badArgument(`createOpfsOutputTarget: folder must be a folder handle of the Origin Private File System (navigator.storage.getDirectory()), not ${shown(folder)}`);
  }
  if (folderName !== undefined && typeof folderName !== 'string') throw badArgument(`createOpfsOutputTarget: name must be a string, not ${shown(folderName)}`);
  checkOptions('createOpfsOutputTarget options', options, ['writer']);
  const name = folderName ?? folder.name;
  const writer = options.writer ?? inThreadOpfsWriter();
  if (!options.writer && !opfsSyncWritesAvailable()) throw new MergeError('BAD_ARGUMENT', `${name}: synchronous OPFS writes need a dedicated Web Worker`);
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

  const closeAll = async () => {
    for (const w of written) {
      const open = w.open;
      w.open = undefined;
      await open?.close().catch(() => undefined);
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
      const probe = (await dir.getFileHandle(`.${fileName}.partial`, { create: true })) as MovableFileHandle;
      const canRename = typeof probe.move === 'function';
      const handle = canRename ? probe : ((await dir.getFileHandle(fileName, { create: true })) as MovableFileHandle);
      if (!canRename) await dir.removeEntry(`.${fileName}.partial`);
      const file: Written = { dir, name: fileName, tempName: canRename ? `.${fileName}.partial` : fileName, handle };
      written.push(file);
      file.open = await writer.open(handle);
      let at = 0;
      return gatherSmallWrites({
        async write(chunk: Uint8Array): Promise<void> {
          if (!file.open) throw new Error(`${path}: write after close`);
          const start = at;
          at += chunk.byteLength;
          await file.open.write(chunk, start);
        },
        async close(): Promise<void> {
          // No flush(): it forces the file to disk (0.3 s for 1 GB, with the page waiting), and an
          // OPFS file is only the page's copy until saved; its bytes are readable once written.
          const open = file.open;
          file.open = undefined;
          await open?.close();
        },
      }, path);
    },
    async commit(): Promise<void> {
      requireOpen();
      const unfinished = written.find((w) => w.open);
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
      await closeAll();
      for (const w of written) await w.dir.removeEntry(w.tempName).catch(() => undefined);
      for (const d of createdDirs.reverse()) await d.parent.removeEntry(d.name, { recursive: true }).catch(() => undefined);
    },
  };
}
