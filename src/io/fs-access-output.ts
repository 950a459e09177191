/**
 * An OutputTarget over the File System Access API (a file or folder the user picked with
 * showSaveFilePicker / showDirectoryPicker). A writable stream writes to a swap file that replaces
 * the real one only when closed, so sinks keep their streams open and commit() closes them all;
 * abort() aborts them and removes any file or folder this target had to create.
 *
 * In a picked folder, a file the merge would write over is refused (OUTPUT_EXISTS, nothing is
 * written) unless `replaceExisting` is set; other files already there are left alone. A picked
 * file is written: the save-file picker has already asked before replacing it.
 */
import { badArgument, checkOptions, isFileSystemHandle, shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { printable } from '../shown-text.js';
import { gatherSmallWrites } from './gathered-sink.js';
import type { ByteSink, OutputTarget } from './types.js';

/** Options of {@link createFileSystemAccessOutputTarget}. */
export interface FileSystemAccessOutputOptions {
  /** Replace same-named files in a picked folder on commit (default: refuse them). */
  replaceExisting?: boolean;
}

type Handle = FileSystemFileHandle | FileSystemDirectoryHandle;

interface OpenFile {
  path: string;
  writable: FileSystemWritableFileStream;
  closedBySink: boolean;
}

/** Something this target created, to remove again on abort. */
interface Created {
  parent: FileSystemDirectoryHandle;
  name: string;
}

/**
 * The folders targets of this page or worker are writing. Two merges into one folder at once both
 * found each name free and both wrote it, the last file closed winning, so the folder could end
 * with files of each; the second is refused instead (OUTPUT_BUSY), as a Node output's lock refuses
 * it. Claims are taken one at a time, since comparing two handles (isSameEntry) waits.
 */
const foldersBeingWritten = new Set<FileSystemDirectoryHandle>();
let claims: Promise<unknown> = Promise.resolve();

/** Claims `folder` for one target, or refuses it while another target of this realm writes there. */
function claimFolder(folder: FileSystemDirectoryHandle, name: string): Promise<void> {
  const claim = claims.then(async () => {
    for (const other of foldersBeingWritten) {
      if (other === folder || (await other.isSameEntry?.(folder))) {
        throw new MergeError('OUTPUT_BUSY', `${name}: another merge in this page or worker is writing this folder; wait for it to finish or choose another folder`);
      }
    }
    foldersBeingWritten.add(folder);
  });
  claims = claim.catch(() => undefined);
  return claim;
}

/** An OutputTarget over a picked file or folder (File System Access API, OPFS included); see the module comment. Arguments of the wrong kind are a BAD_ARGUMENT MergeError. */
export function createFileSystemAccessOutputTarget(handle: Handle, handleName?: string,
  options: FileSystemAccessOutputOptions = {}): OutputTarget {
  if (!isFileSystemHandle(handle, 'file') && !isFileSystemHandle(handle, 'directory')) {
    throw badArgument(`createFileSystemAccessOutputTarget: handle must be a file or folder handle (showSaveFilePicker, showDirectoryPicker), not ${shown(handle)}`);
  }
  if (handleName !== undefined && typeof handleName !== 'string') throw badArgument(`createFileSystemAccessOutputTarget: name must be a string, not ${shown(handleName)}`);
  checkOptions('createFileSystemAccessOutputTarget options', options, ['replaceExisting']);
  const name = handleName ?? handle.name;
  const open: OpenFile[] = [];
  const created: Created[] = [];
  const paths = new Set<string>();
  let state: 'open' | 'committed' | 'aborted' = 'open';
  const requireOpen = () => {
    if (state !== 'open') throw new Error(`${name}: output already ${state}`);
  };
  /** The folder's claim, taken by the first file (a target never written to holds nothing). */
  let claimed: Promise<void> | undefined;
  const release = () => {
    if (handle.kind === 'directory') void claimed?.then(() => foldersBeingWritten.delete(handle), () => undefined);
  };

  async function fileHandleFor(path: string): Promise<FileSystemFileHandle> {
    if (handle.kind === 'file') {
      if (paths.size > 0) throw badArgument(`${name}: is one file, but more than one is written ("${printable(path)}" too); give a folder (showDirectoryPicker) instead`);
      return handle;
    }
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..')) throw new Error(`${name}: invalid output file path "${path}"`);
    let dir = handle;
    for (const part of parts.slice(0, -1)) {
      dir = await getOrCreate(dir, part, 'directory');
    }
    const made = created.length;
    const file = await getOrCreate(dir, parts[parts.length - 1], 'file');
    if (created.length === made && !options.replaceExisting) {
      throw new MergeError('OUTPUT_EXISTS', `${name}/${path}: already exists; choose an empty folder (nothing was overwritten)`);
    }
    return file;
  }

  async function getOrCreate<K extends 'file' | 'directory'>(
    dir: FileSystemDirectoryHandle,
    entry: string,
    kind: K,
  ): Promise<K extends 'file' ? FileSystemFileHandle : FileSystemDirectoryHandle> {
    const get = (create: boolean) => (kind === 'file' ? dir.getFileHandle(entry, { create }) : dir.getDirectoryHandle(entry, { create }));
    try {
      return (await get(false)) as never;
    } catch (e) {
      if ((e as DOMException).name !== 'NotFoundError') throw e;
      const made = await get(true);
      created.push({ parent: dir, name: entry });
      return made as never;
    }
  }

  return {
    name,
    async createFile(path: string): Promise<ByteSink> {
      requireOpen();
      if (paths.has(path)) throw new Error(`${name}: "${path}" created twice`);
      if (handle.kind === 'directory') await (claimed ??= claimFolder(handle, name));
      const fileHandle = await fileHandleFor(path);
      paths.add(path);
      const file: OpenFile = { path, writable: await fileHandle.createWritable({ keepExistingData: false }), closedBySink: false };
      open.push(file);
      return gatherSmallWrites({
        async write(chunk: Uint8Array): Promise<void> {
          if (file.closedBySink) throw new Error(`${path}: write after close`);
          // A writable stream refuses views of shared memory (a CPU pool's shared slabs): copy those.
          const own = chunk.buffer instanceof ArrayBuffer ? chunk : chunk.slice();
          await file.writable.write(own as Uint8Array<ArrayBuffer>);
        },
        async close(): Promise<void> {
          file.closedBySink = true; // the stream itself closes on commit, making the file visible
        },
      }, path);
    },
    async commit(): Promise<void> {
      requireOpen();
      const unfinished = open.find((f) => !f.closedBySink);
      if (unfinished) throw new Error(`${unfinished.path}: still being written, cannot commit`);
      try {
        for (const file of open) await file.writable.close();
      } finally {
        release();
      }
      state = 'committed';
    },
    async abort(): Promise<void> {
      if (state !== 'open') return;
      state = 'aborted';
      try {
        await Promise.all(open.map((f) => f.writable.abort().catch(() => undefined)));
        for (const entry of created.reverse()) {
          await entry.parent.removeEntry(entry.name, { recursive: true }).catch(() => undefined);
        }
      } finally {
        release();
      }
    },
  };
}
