/**
 * Turns what the user picked (file inputs, folder inputs, drag and drop of files or folders) into
 * named sets of files with paths relative to the chosen folder, as the library's InputFileSet wants.
 * Inside a folder, dot-files and dot-folders (`.gitattributes`, `.cache/`) are skipped, as the
 * command line skips them: a downloaded pipeline's output holds what the pipeline does.
 */
import { MergeError } from '../src/errors.js';
import { MAX_INPUT_DEPTH, MAX_INPUT_FILES } from '../src/limits.js';
import { MLX_CHECKPOINT, MLX_WEIGHTS } from '../src/formats/mlx-lm.js';
import type { PickedSet } from './page-state.js';
import type { PickedFile } from './worker-protocol.js';

const ADAPTER_CONFIG = 'adapter_config.json';
const PEFT_WEIGHTS = 'adapter_model.safetensors';

/**
 * Files of one input; with `webkitdirectory` their paths start with the folder's name, dropped here.
 * A folder is held to the command line's limits (MAX_INPUT_FILES, MAX_INPUT_DEPTH): the browser
 * lists a picked home folder whole before the page sees it, but the page reads no further.
 */
export function setFromInput(input: HTMLInputElement): PickedSet | undefined {
  const list = Array.from(input.files ?? []);
  if (list.length === 0) return undefined;
  const relative = list.map((file) => file.webkitRelativePath || file.name);
  const folder = relative[0].includes('/') ? relative[0].split('/')[0] : undefined;
  if (folder) {
    checkFolderSize(folder, list.length);
    // A path's parts past the folder's own name, less the file's: how deep it nests (0: at its top).
    for (const path of relative) checkFolderDepth(folder, path.split('/').length - 2);
  }
  const files = list.map((file, i) => ({
    file,
    path: folder && relative[i].startsWith(`${folder}/`) ? relative[i].slice(folder.length + 1) : relative[i],
  })).filter((f) => !folder || !hidden(f.path));
  if (folder) return { name: folder, files: sortByPath(files), origin: 'user', namesFolder: true };
  return { name: nameOfLooseFiles(files), files: sortByPath(files), origin: 'user' };
}

/**
 * Every dropped item becomes one set: a folder with its files (recursively), or one loose file. A
 * folder with no files (or only dot-files) refuses the drop, naming it, as the CLI refuses one.
 */
export async function setsFromDrop(data: DataTransfer): Promise<PickedSet[]> {
  // Entries must be taken synchronously, before the event handler yields. An item with no entry
  // (files a page or an extension put in the drag, not the file manager) is taken as its File.
  const entries = Array.from(data.items)
    .filter((item) => item.kind === 'file')
    .map((item) => item.webkitGetAsEntry() ?? item.getAsFile())
    .filter((entry): entry is FileSystemEntry | File => entry !== null);
  const sets: PickedSet[] = [];
  for (const entry of entries) {
    if (entry instanceof File) {
      sets.push({ name: entry.name, files: [{ path: entry.name, file: entry }], origin: 'user' });
    } else if (entry.isDirectory) {
      const files = await readFolder(entry as FileSystemDirectoryEntry, '', entry.name, 0, { files: 0 });
      // Taken as it is, an empty folder became a base of 0 files with nothing said.
      if (files.length === 0) throw new MergeError('BAD_ARGUMENT', `${entry.name}: the folder holds no files (dot-files such as .DS_Store are not read); drop the folder that holds the model or adapter`);
      sets.push({ name: entry.name, files: sortByPath(files), origin: 'user', namesFolder: true });
    } else {
      sets.push({ name: entry.name, files: [{ path: entry.name, file: await entryFile(entry as FileSystemFileEntry) }], origin: 'user' });
    }
  }
  return sets;
}

/**
 * Dropped items as adapters: each is one, except an adapter folder's files dropped loose (not as
 * their folder), which are one adapter together, as they are when picked with the files button:
 * PEFT's adapter_config.json + adapter_model.safetensors, and mlx-lm's adapter_config.json +
 * adapters.safetensors with the trainer's checkpoints (`0000100_adapters.safetensors`) if dropped
 * beside them (the folder holds them; mlx_lm.fuse reads adapters.safetensors).
 */
export function adapterSets(sets: PickedSet[]): PickedSet[] {
  const isLoose = (s: PickedSet) => s.files.length === 1 && s.files[0].path === s.name;
  const config = sets.find((s) => isLoose(s) && s.name === ADAPTER_CONFIG);
  if (!config) return sets;
  const peft = sets.find((s) => isLoose(s) && s.name === PEFT_WEIGHTS);
  const weights = peft ? [peft] : sets.filter((s) => isLoose(s) && (s.name === MLX_WEIGHTS || MLX_CHECKPOINT.test(s.name)));
  if (weights.length === 0) return sets;
  const grouped = mergeSets([config, ...weights])!;
  return sets.flatMap((s) => (s === weights[0] ? [grouped] : s === config || weights.includes(s) ? [] : [s]));
}

/** Several dropped items taken as one model (loose shards plus config.json, say). */
export function mergeSets(sets: PickedSet[]): PickedSet | undefined {
  if (sets.length === 0) return undefined;
  if (sets.length === 1) return sets[0];
  const files = sortByPath(sets.flatMap((s) => s.files));
  return { name: nameOfLooseFiles(files), files, origin: 'user' };
}

/**
 * Loose files are named after their weights: the one `.safetensors` file, a shard series by its
 * stem (`model-00001-of-00004.safetensors` … → `model`), else the first with how many more; a
 * config alone adds nothing. An adapter folder's files have fixed names and a browser does not say
 * the folder they came from, so PEFT's pair is named for what it is, `PEFT adapter`, and mlx-lm's
 * (config and adapters.safetensors or its checkpoints) `mlx-lm adapter` (the card's facts say the
 * method; messages and download names read `PEFT adapter #2`, `PEFT adapter-combined`).
 */
function nameOfLooseFiles(files: PickedFile[]): string {
  const paths = new Set(files.map((f) => f.path));
  if (paths.has(ADAPTER_CONFIG) && paths.has(PEFT_WEIGHTS)) return 'PEFT adapter';
  if (paths.has(ADAPTER_CONFIG) && [...paths].some((p) => p === MLX_WEIGHTS || MLX_CHECKPOINT.test(p))) return 'mlx-lm adapter';
  const weights = files.map((f) => f.path).filter((p) => /\.(safetensors|gguf)$/i.test(p)).sort();
  const named = weights.length > 0 ? weights : files.map((f) => f.path).sort();
  if (named.length === 1) return named[0];
  const stems = new Set(named.map((p) => /^(.*)-\d+-of-\d+\.\w+$/.exec(p)?.[1]));
  const [stem] = stems;
  if (stems.size === 1 && stem) return stem;
  return `${named[0]} + ${named.length - 1} more`;
}

function entryFile(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/** readEntries hands out a folder's children in batches; an empty batch means the end. */
function readBatch(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function checkFolderSize(root: string, files: number): void {
  if (files > MAX_INPUT_FILES) throw new MergeError('BAD_ARGUMENT', `${root}: more than ${MAX_INPUT_FILES} files (the limit MAX_INPUT_FILES); pick or drop the model's own folder`);
}

function checkFolderDepth(root: string, depth: number): void {
  if (depth > MAX_INPUT_DEPTH) throw new MergeError('BAD_ARGUMENT', `${root}: folders nest deeper than ${MAX_INPUT_DEPTH} levels (the limit MAX_INPUT_DEPTH); pick or drop the model's own folder`);
}

/** A dropped folder's files, refused as soon as it passes the limits (the walk stops there). */
async function readFolder(folder: FileSystemDirectoryEntry, prefix: string, root: string, depth: number, seen: { files: number }): Promise<PickedFile[]> {
  checkFolderDepth(root, depth);
  const reader = folder.createReader();
  const files: PickedFile[] = [];
  for (let batch = await readBatch(reader); batch.length > 0; batch = await readBatch(reader)) {
    for (const entry of batch) {
      if (entry.name.startsWith('.')) continue;
      const path = prefix + entry.name;
      if (entry.isDirectory) files.push(...await readFolder(entry as FileSystemDirectoryEntry, `${path}/`, root, depth + 1, seen));
      else {
        checkFolderSize(root, ++seen.files);
        files.push({ path, file: await entryFile(entry as FileSystemFileEntry) });
      }
    }
  }
  return files;
}

function hidden(path: string): boolean {
  return path.split('/').some((part) => part.startsWith('.'));
}

function sortByPath(files: PickedFile[]): PickedFile[] {
  return files.slice().sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
