/**
 * Opens a base model in whichever container holds it: the registry of file formats, tried in
 * order. A folder with safetensors weights is a safetensors model even if it also holds GGUF
 * files; otherwise `.gguf` files make a GGUF model.
 */
import { checkInputFileSet } from '../api-arguments.js';
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

/** The base model in `files`, opened by the first container format that claims their paths; `files` that is no InputFileSet is a BAD_ARGUMENT MergeError. */
export async function openModel(files: InputFileSet): Promise<BaseModel> {
  return openModelPaced(files, new Pacer());
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
