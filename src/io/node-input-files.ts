/**
 * A path the user named on the command line as an InputFileSet (Node only): a single file is a set
 * of one entry (its base name); a folder is listed recursively. Symbolic links are followed
 * (Hugging Face cache snapshots are links into a blob store); dot-files and dot-folders (.git,
 * .cache, unfinished writes) are skipped; depth and file count are bounded.
 */
import type { Stats } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { shown } from '../api-arguments.js';
import { MergeError } from '../errors.js';
import { looksLikeMistralLora, MISTRAL_PARAMS } from '../formats/mistral-finetune.js';
import { KANDINSKY5_LORA_CONFIG, looksLikeKandinsky5Lora } from '../formats/kandinsky5-lora.js';
import { openSafetensors } from '../formats/safetensors-reader.js';
import type { SafetensorsFile } from '../formats/safetensors-types.js';
import { errnoOf, inputFsError } from './fs-errors.js';
import { MAX_CONFIG_BYTES, MAX_INPUT_DEPTH, MAX_INPUT_FILES } from '../limits.js';
import { openNodeByteSource } from './node-byte-source.js';
import { decodeUtf8 } from './strict-utf8.js';
import { smallReadWindows } from './read-ahead.js';
import { keyedFileSet } from './keyed-file-set.js';
import type { InputFileSet } from './types.js';

/** A file or folder on disk as an InputFileSet (Node only); see the module comment. */
export async function openNodeInputFileSet(path: string): Promise<InputFileSet> {
  if (typeof path !== 'string' || path.trim() === '') throw new MergeError('BAD_ARGUMENT', `openNodeInputFileSet: path must be a file or folder path, not ${shown(path)}`);
  const info = await statOrNotFound(path, path);
  if (info.isFile()) {
    const only = basename(path);
    return nodeFileSet(path, new Map([[only, path]]));
  }
  if (!info.isDirectory()) throw notRegular(path, info, 'a regular file or folder');
  const files = new Map<string, string>();
  await listFolder(path, path, '', 0, files);
  return nodeFileSet(path, files);
}

/**
 * Files a trainer writes beside an adapter's one weights file, read with it when that file is
 * given alone, each with the test that the file is that trainer's: mistral-finetune's params.json
 * (its `lora.scaling`) beside `lora.safetensors`, as when its folder is given, where the file's
 * tensor names are mistral-finetune's; kandinskylab's config_lora.json (a PEFT LoraConfig) beside a
 * Kandinsky 5 LoRA's `lora.safetensors`, where its names are the Kandinsky 5 DiT's. A params.json beside a PEFT, kohya or other file is left
 * alone (not read, not watched for changes, not guarded as an input). Only the adapter's format
 * reads it (formats/mistral-finetune.ts).
 */
const ADAPTER_COMPANIONS: readonly { name: string; belongs: (file: SafetensorsFile) => boolean }[] = [
  { name: MISTRAL_PARAMS, belongs: looksLikeMistralLora },
  { name: KANDINSKY5_LORA_CONFIG, belongs: looksLikeKandinsky5Lora },
];

/** The header of `path` in `set`, or undefined where it cannot be read as safetensors (its own reading refuses it in its words). */
async function safetensorsHeader(set: InputFileSet, path: string): Promise<SafetensorsFile | undefined> {
  const source = await set.open(path).catch(() => undefined);
  if (!source) return undefined;
  try {
    return await openSafetensors(source);
  } catch {
    return undefined;
  } finally {
    await source.close().catch(() => undefined);
  }
}

/**
 * An adapter's path on disk as an InputFileSet: as {@link openNodeInputFileSet}, and for a lone
 * `.safetensors` file, the companion files its trainer writes beside it (ADAPTER_COMPANIONS) where
 * they are there and the file is that trainer's, each named in messages by its own path.
 */
export async function openNodeAdapterFileSet(path: string): Promise<InputFileSet> {
  const set = await openNodeInputFileSet(path);
  const [only] = set.list();
  if (set.list().length !== 1 || only !== basename(path) || !/\.safetensors$/i.test(only)) return set;
  const files = new Map([[only, path]]);
  let header: Promise<SafetensorsFile | undefined> | undefined;
  for (const { name, belongs } of ADAPTER_COMPANIONS) {
    const beside = join(dirname(path), name);
    if (name === only) continue;
    const info = await stat(beside).catch(() => undefined);
    if (!info?.isFile()) continue;
    const file = await (header ??= safetensorsHeader(set, only));
    if (file && belongs(file)) files.set(name, beside);
  }
  if (files.size === 1) return set;
  const companions = nodeFileSet(path, files);
  const named: InputFileSet = { ...companions, fileName: (p) => files.get(p) ?? `${path}/${p}` };
  pathsOnDisk.set(named, [...files.values()]);
  return named;
}

const GGUF_PART = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** Is this file one part of a split GGUF (`name-00001-of-00003.gguf`)? */
export function isGgufSplitPart(path: string): boolean {
  return GGUF_PART.test(basename(path));
}

/**
 * The whole split GGUF that one of its parts belongs to: every `<prefix>-NNNNN-of-<count>.gguf`
 * beside it (the model checks that none is missing). Named after the part the user gave.
 */
export async function openNodeGgufSplitSet(partPath: string): Promise<InputFileSet> {
  const [, prefix, , count] = GGUF_PART.exec(basename(partPath))!;
  const dir = dirname(partPath);
  const files = new Map<string, string>();
  const names = await readdir(dir).catch((e: unknown) => {
    throw inputFsError(e, dir, 'listing it');
  });
  for (const name of names.sort()) {
    const m = GGUF_PART.exec(name);
    if (m && m[1] === prefix && m[3] === count) files.set(name, join(dir, name));
  }
  return nodeFileSet(partPath, files);
}

/**
 * A path that is neither a regular file nor a folder, refused before it is opened: reading a FIFO
 * waits for a writer, and /dev/zero or /dev/urandom never end.
 */
function notRegular(path: string, info: Stats, expected: string): MergeError {
  const kind = info.isFIFO() ? 'a FIFO (named pipe)'
    : info.isSocket() ? 'a socket'
    : info.isCharacterDevice() ? 'a character device'
    : info.isBlockDevice() ? 'a block device'
    : info.isDirectory() ? 'a folder'
    : 'not a regular file';
  return new MergeError('BAD_ARGUMENT', `${path}: is ${kind}, not ${expected}; give the model's or adapter's file or folder`);
}

/**
 * stat() of an input path, following links. Only a path that is not there is "no such file or
 * folder": a link loop, a folder this user may not enter or a file used as a folder is named as
 * such (all three read as missing before, sending the user to look for a path that exists).
 */
export async function statOrNotFound(path: string, name: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new MergeError('NOT_FOUND', `${name}: no such file or folder`, { cause: e });
    throw inputFsError(e, name, 'reading its status');
  }
}

/** Names only a file has in the layouts read here (a config, an index, weights). */
const FILE_NAMES = /\.(json|safetensors|gguf)$/i;

async function listFolder(root: string, dir: string, prefix: string, depth: number, out: Map<string, string>): Promise<void> {
  if (depth > MAX_INPUT_DEPTH) {
    throw new MergeError('BAD_ARGUMENT', `${root}: folders nest deeper than ${MAX_INPUT_DEPTH} levels (the limit MAX_INPUT_DEPTH; a link loop?); point at the model's own folder`);
  }
  const entries = await readdir(dir, { withFileTypes: true }).catch((e: unknown) => {
    throw inputFsError(e, dir, 'listing it');
  });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    const rel = prefix + entry.name;
    let isDir = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      const target = await stat(full).catch(() => undefined); // dangling links are skipped
      if (target && !target.isDirectory() && !target.isFile()) throw notRegular(full, target, 'a regular file');
      isDir = target?.isDirectory() ?? false;
      isFile = target?.isFile() ?? false;
    } else if (!isDir && !isFile) {
      // Skipped, it would read as missing: a FIFO named adapter_model.safetensors is named instead.
      throw notRegular(full, await stat(full), 'a regular file');
    }
    if (isDir && FILE_NAMES.test(entry.name)) {
      // Listed, its contents would stand for it and the file read as missing.
      throw new MergeError('BAD_ARGUMENT', `${full}: is a folder, not a regular file; give the model's or adapter's file or folder`);
    }
    if (isDir) {
      await listFolder(root, full, rel + '/', depth + 1, out);
    } else if (isFile) {
      if (out.size >= MAX_INPUT_FILES) {
        throw new MergeError('BAD_ARGUMENT', `${root}: more than ${MAX_INPUT_FILES} files (the limit MAX_INPUT_FILES); point at the model's own folder`);
      }
      out.set(rel, full);
    }
  }
}

/** Full paths on disk of the files in each set opened here (for checking they stay unchanged). */
const pathsOnDisk = new WeakMap<InputFileSet, readonly string[]>();

/** The files on disk behind a set from openNodeInputFileSet; empty for any other set. */
export function nodeInputFilePaths(set: InputFileSet): readonly string[] {
  return pathsOnDisk.get(set) ?? [];
}

function nodeFileSet(name: string, files: Map<string, string>): InputFileSet {
  const set = keyedFileSet(name, files, {
    // Larger reads go straight to the file: the OS reads ahead.
    open: async (full) => smallReadWindows(await openNodeByteSource(full, full)),
    async readText(full) {
      const info = await statOrNotFound(full, full);
      if (!info.isFile()) throw notRegular(full, info, 'a regular file');
      const size = info.size;
      if (size > MAX_CONFIG_BYTES) {
        throw new MergeError('LIMIT_EXCEEDED', `${full}: ${size} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`);
      }
      return decodeUtf8(await readFile(full).catch((e: unknown) => {
        throw inputFsError(e, full, 'reading it');
      }), full);
    },
  });
  pathsOnDisk.set(set, [...files.values()]);
  return set;
}
