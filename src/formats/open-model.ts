/**
 * Opens a base model in whichever container holds it: the registry of file formats, tried in
 * order. A folder with safetensors weights is a safetensors model even if it also holds GGUF
 * files; otherwise `.gguf` files make a GGUF model.
 */
import { checkInputFileSet, checkOptions, checkSignal } from '../api-arguments.js';
import { asCancel, throwIfAborted } from '../errors.js';
import { Pacer } from '../event-turns.js';
import type { InputFileSet } from '../io/types.js';
import { openBaseModel, type BaseModel } from './base-model.js';
import { openGgufModel } from './gguf/gguf-model.js';

interface ContainerEntry {
  name: string;
  claims(paths: readonly string[]): boolean;
  open(files: InputFileSet, pacer: Pacer): Promise<BaseModel>;
}

/** Whether `paths` hold a GGUF model: `.gguf` files and no safetensors weights. */
export function holdsGgufModel(paths: readonly string[]): boolean {
  return paths.some((p) => /\.gguf$/i.test(p)) && !paths.some((p) => /\.safetensors$/i.test(p));
}

const CONTAINERS: readonly ContainerEntry[] = [
  { name: 'gguf', claims: holdsGgufModel, open: openGgufModel },
  { name: 'safetensors', claims: () => true, open: openBaseModel },
];

/** What {@link openModel} takes besides the files. */
export interface OpenModelOptions {
  /**
   * Cancels the opening: it rejects with a MergeError of code ABORTED, named `'AbortError'`, whose
   * `cause` is the signal's reason, and whatever it had opened is closed. A base of hundreds of
   * shards is seconds of headers to read; the abort is seen between them.
   */
  signal?: AbortSignal;
}

/**
 * The base model in `files`, opened by the first container format that claims their paths (headers
 * only; close it when done). `files` that is no InputFileSet, or an option of the wrong kind, is a
 * BAD_ARGUMENT MergeError; a `signal` already aborted is ABORTED before any file is opened.
 */
export async function openModel(files: InputFileSet, options: OpenModelOptions = {}): Promise<BaseModel> {
  checkOptions('openModel options', options, ['signal']);
  checkSignal('openModel options: signal', options.signal);
  const signal = options.signal;
  try {
    throwIfAborted(signal);
    return await openModelPaced(files, new Pacer(signal));
  } catch (e) {
    throw asCancel(e, signal, 'openModel cancelled');
  }
}

/**
 * {@link openModel} with the event loop given a turn, and `pacer`'s signal looked at, between the
 * files it opens (a sharded base's headers), where it throws ABORTED once the signal fired.
 */
export async function openModelPaced(files: InputFileSet, pacer: Pacer): Promise<BaseModel> {
  checkInputFileSet('openModel: files', files);
  const paths = files.list();
  const entry = CONTAINERS.find((c) => c.claims(paths))!;
  return entry.open(files, pacer);
}
