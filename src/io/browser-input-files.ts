/**
 * Files picked or dropped in a page as an InputFileSet. A folder pick gives each File a
 * `webkitRelativePath` ("my-model/config.json"); the shared top folder is stripped so paths read
 * like the folder's own listing. Dot-files and dot-folders are skipped, as on the command line.
 */
import { MergeError } from '../errors.js';
import { blobByteSource } from './blob-byte-source.js';
import type { ByteSource, InputFileSet } from './types.js';

export function inputFileSetFromFiles(files: Iterable<File> | ArrayLike<File>, name?: string): InputFileSet {
  const all = Array.from(files as ArrayLike<File>);
  const paths = all.map((f) => (f.webkitRelativePath || f.name).split('/').filter((p) => p !== ''));
  const top = commonTopFolder(paths);
  const byPath = new Map<string, File>();
  for (const [i, parts] of paths.entries()) {
    const rel = (top ? parts.slice(1) : parts);
    if (rel.some((p) => p.startsWith('.'))) continue;
    const path = rel.join('/');
    if (byPath.has(path)) throw new MergeError('BAD_ARGUMENT', `${name ?? top ?? path}: "${path}" was given twice`);
    byPath.set(path, all[i]);
  }
  const setName = name ?? top ?? (all.length === 1 ? all[0].name : 'selected files');
  const sorted = [...byPath.keys()].sort();
  const get = (path: string): File => {
    const file = byPath.get(path);
    if (!file) throw new MergeError('NOT_FOUND', `${setName}: no file "${path}"`);
    return file;
  };
  return {
    name: setName,
    list: () => sorted.slice(),
    async open(path: string): Promise<ByteSource> {
      return blobByteSource(get(path), top ? `${top}/${path}` : path);
    },
    async readText(path: string): Promise<string> {
      return get(path).text();
    },
  };
}

/** The first path segment when every file lives under the same one (a picked folder). */
function commonTopFolder(paths: string[][]): string | undefined {
  if (paths.length === 0 || paths.some((p) => p.length < 2)) return undefined;
  const first = paths[0][0];
  return paths.every((p) => p[0] === first) ? first : undefined;
}
