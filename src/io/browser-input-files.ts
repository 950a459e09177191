/**
 * Files picked or dropped in a page as an InputFileSet. A folder pick gives each File a
 * `webkitRelativePath` ("my-model/config.json"); the shared top folder is stripped so paths read
 * like the folder's own listing. Dot-files and dot-folders are skipped, as on the command line.
 */
import { badArgument, checkOptions, isBlobLike, shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { MAX_CONFIG_BYTES } from '../limits.js';
import { blobByteSource } from './blob-byte-source.js';
import { readAheadSource, smallReadWindows } from './read-ahead.js';
import { keyedFileSet } from './keyed-file-set.js';
import { decodeUtf8 } from './strict-utf8.js';
import type { InputFileSet } from './types.js';

/** Files from an `<input type="file">` (a folder pick keeps its paths) as an InputFileSet; `options` as {@link blobInputFileSet}'s. */
export function inputFileSetFromFiles(files: Iterable<File> | ArrayLike<File>, name?: string, options: BlobReadOptions = {}): InputFileSet {
  const iterable = typeof files === 'object' && files !== null && (Symbol.iterator in files || typeof (files as ArrayLike<File>).length === 'number');
  if (!iterable) throw badArgument(`inputFileSetFromFiles: files must be a list of Files (an input's .files, or an array), not ${shown(files)}`);
  const all = Array.from(files as ArrayLike<File>);
  all.forEach((f, i) => {
    if (!(f instanceof File)) throw badArgument(`inputFileSetFromFiles: files[${i}] must be a File (with its name), not ${shown(f)}`);
  });
  if (name !== undefined && typeof name !== 'string') throw badArgument(`inputFileSetFromFiles: name must be a string, not ${shown(name)}`);
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
  // Loose files (no folder pick, no name given) are only labelled: no folder's name to take.
  return namedBlobFileSet(setName, byPath, (path) => (top ? `${top}/${path}` : path), options, name !== undefined || top !== undefined);
}

/** How a {@link blobInputFileSet} reads its files. */
export interface BlobReadOptions {
  /**
   * Serve long sequential runs from 8 MiB windows read ahead (the default: a merge reads each file
   * front to back). `false` for a set only planned from (headers, factors, sampled rows): there a
   * run of whole small tensors (a layer's k_proj and v_proj, 2 MiB) followed by the next tensor's
   * first sampled rows looks like a merge's run, and its windows pulled 32 MiB at each layer's
   * o_proj into a plan that asked for under 5 MiB a layer. A function: windows are read ahead only
   * while it returns true, for one set that is planned from and then merged: the one-call `merge`
   * plans without read-ahead (a GGUF's metadata, a run of several MiB, started windows that pulled
   * 43 MB into the plan of a 38 MB file that asked for 11 MB; a merge took its tensors from them,
   * a refused plan dropped them).
   */
  readAhead?: boolean | (() => boolean);
}

/**
 * Blobs or Files whose relative paths the caller already knows (dropped folders give Files without
 * `webkitRelativePath`, and paths do not survive a trip to a worker). Sequential reads are served
 * from read-ahead windows (see read-ahead.ts): large ones from windows read ahead once a run is
 * long enough (unless `options.readAhead` is false), and runs of small ones from small windows, so
 * that a shard of tiny tensors is not one blob read per tensor.
 */
export function blobInputFileSet(
  name: string,
  files: ReadonlyMap<string, Blob>,
  sourceName: (path: string) => string = (path) => `${name}/${path}`,
  options: BlobReadOptions = {},
): InputFileSet {
  return namedBlobFileSet(name, files, sourceName, options, true);
}

/**
 * {@link blobInputFileSet}, `namesFolder` saying whether `name` is the files' folder's (or one their
 * caller gave) or only a label for files picked without their folder (InputFileSet.namesFolder).
 */
export function namedBlobFileSet(
  name: string, files: ReadonlyMap<string, Blob>, sourceName: (path: string) => string, options: BlobReadOptions, namesFolder: boolean,
): InputFileSet {
  if (typeof name !== 'string') throw badArgument(`blobInputFileSet: name must be a string, not ${shown(name)}`);
  if (!(files instanceof Map)) throw badArgument(`blobInputFileSet: files must be a Map from relative path to Blob, not ${shown(files)}`);
  for (const [path, blob] of files) {
    if (typeof path !== 'string' || !isBlobLike(blob)) throw badArgument(`blobInputFileSet: files must map relative paths to Blobs; ${JSON.stringify(String(path))} maps to ${shown(blob)}`);
  }
  if (typeof sourceName !== 'function') throw badArgument(`blobInputFileSet: sourceName must be a function from path to name, not ${shown(sourceName)}`);
  checkOptions('blobInputFileSet options', options, ['readAhead']);
  if (options.readAhead !== undefined && typeof options.readAhead !== 'boolean' && typeof options.readAhead !== 'function') {
    throw badArgument(`blobInputFileSet: readAhead must be true, false or a function, not ${shown(options.readAhead)}`);
  }
  const readAhead = options.readAhead ?? true;
  return keyedFileSet(name, files, {
    open: (blob, path) => {
      const source = blobByteSource(blob, sourceName(path));
      if (typeof readAhead === 'function') return smallReadWindows(readAheadSource(source, undefined, undefined, undefined, readAhead));
      if (readAhead) return smallReadWindows(readAheadSource(source));
      // Plain slice reads only: a byte stream (`readTransferring`) opened for one small window is a
      // new data pipe left open until the next read elsewhere.
      return smallReadWindows({ name: source.name, size: source.size, read: (offset, length) => source.read(offset, length), close: () => source.close() });
    },
    readText: async (blob, path) => {
      if (blob.size > MAX_CONFIG_BYTES) {
        throw new MergeError('LIMIT_EXCEEDED', `${sourceName(path)}: ${blob.size} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`);
      }
      return decodeUtf8(new Uint8Array(await blob.arrayBuffer()), sourceName(path));
    },
  }, namesFolder);
}

/** The first path segment when every file lives under the same one (a picked folder). */
function commonTopFolder(paths: string[][]): string | undefined {
  if (paths.length === 0 || paths.some((p) => p.length < 2)) return undefined;
  const first = paths[0][0];
  return paths.every((p) => p[0] === first) ? first : undefined;
}
