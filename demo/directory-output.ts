/**
 * An OutputTarget that streams into a folder the user picked (File System Access API). Chrome's
 * writable streams write to a hidden swap file and replace the real file only when closed, so files
 * are closed on commit(); abort() discards the swap files and removes any file this target created.
 */
import type { ByteSink, OutputTarget } from '../src/index.js';

interface OpenFile {
  folder: FileSystemDirectoryHandle;
  name: string;
  writable: FileSystemWritableFileStream;
  /** Created by this target (so abort() deletes it), rather than overwritten. */
  created: boolean;
}

async function folderFor(root: FileSystemDirectoryHandle, path: string): Promise<{ folder: FileSystemDirectoryHandle; name: string }> {
  const parts = path.split('/');
  const name = parts.pop()!;
  let folder = root;
  for (const part of parts) folder = await folder.getDirectoryHandle(part, { create: true });
  return { folder, name };
}

async function exists(folder: FileSystemDirectoryHandle, name: string): Promise<boolean> {
  try {
    await folder.getFileHandle(name);
    return true;
  } catch {
    return false;
  }
}

export class DirectoryOutput implements OutputTarget {
  private readonly open: OpenFile[] = [];

  constructor(private readonly root: FileSystemDirectoryHandle) {}

  get name(): string {
    return this.root.name;
  }

  async createFile(path: string): Promise<ByteSink> {
    const { folder, name } = await folderFor(this.root, path);
    const created = !(await exists(folder, name));
    const handle = await folder.getFileHandle(name, { create: true });
    const writable = await handle.createWritable({ keepExistingData: false });
    this.open.push({ folder, name, writable, created });
    return {
      write: (chunk) => writable.write(chunk as Uint8Array<ArrayBuffer>),
      close: async () => {}, // the swap file is published on commit()
    };
  }

  async commit(): Promise<void> {
    for (const f of this.open) await f.writable.close();
    this.open.length = 0;
  }

  async abort(): Promise<void> {
    for (const f of this.open) {
      await f.writable.abort().catch(() => undefined);
      if (f.created) await f.folder.removeEntry(f.name).catch(() => undefined);
    }
    this.open.length = 0;
  }

  /** What commit() published, read back lazily from disk for the download links. */
  async files(paths: string[]): Promise<{ path: string; size: number; blob: Blob }[]> {
    const out = [];
    for (const path of paths) {
      const { folder, name } = await folderFor(this.root, path);
      const file = await (await folder.getFileHandle(name)).getFile();
      out.push({ path, size: file.size, blob: file });
    }
    return out;
  }
}
