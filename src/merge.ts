/**
 * The one-call merge for browsers and workers: sources are Files, Blobs, URLs or InputFileSets; the
 * output is a File System Access handle, an OutputTarget, or nothing (then Blobs come back).
 */
import { createBackend } from './engine/create-backend.js';
import { MergeError } from './errors.js';
import { blobInputFileSet, inputFileSetFromFiles, type BlobReadOptions } from './io/browser-input-files.js';
import { createFileSystemAccessOutputTarget } from './io/fs-access-output.js';
import type { InputFileSet, OutputTarget } from './io/types.js';
import { urlInputFileSet } from './io/url-input-files.js';
import { oneCallMerge, type MergeOutcome, type OneCallMergeOptions } from './pipeline/one-call-merge.js';

/**
 * A model or adapter as a page has it: a File or Blob (one file), a URL (one remote file, read by
 * HTTP Range requests), several Files (a picked folder: their `webkitRelativePath`s are kept) or
 * URLs (taken as one folder), or an InputFileSet for anything else.
 */
export type MergeSource = InputFileSet | Blob | URL | string | readonly (Blob | URL | string)[];

/** Where a browser merge writes: a picked file or folder, or any OutputTarget. */
export type MergeDestination = OutputTarget | FileSystemFileHandle | FileSystemDirectoryHandle;

/** Options of {@link merge}. */
export type MergeOptions = OneCallMergeOptions<MergeSource, MergeDestination>;

/** Default file names of a lone Blob, which has none of its own. */
const BLOB_NAMES = { base: 'model.safetensors', adapter: 'adapter_model.safetensors' } as const;

function isInputFileSet(x: unknown): x is InputFileSet {
  return typeof x === 'object' && x !== null && typeof (x as InputFileSet).list === 'function' && typeof (x as InputFileSet).open === 'function';
}

function isOutputTarget(x: unknown): x is OutputTarget {
  return typeof x === 'object' && x !== null && typeof (x as OutputTarget).createFile === 'function';
}

/**
 * Opens a browser-side source; Node's entry adds paths on top of this. `readAhead`: Blobs and Files
 * read ahead only while it returns true (see {@link BlobReadOptions}); by default always.
 */
export async function openBrowserSource(
  source: MergeSource, role: 'base' | 'adapter', signal?: AbortSignal, readAhead: BlobReadOptions['readAhead'] = true,
): Promise<InputFileSet> {
  if (isInputFileSet(source)) return source;
  if (source instanceof Blob) {
    const name = typeof File !== 'undefined' && source instanceof File ? source.name : BLOB_NAMES[role];
    return blobInputFileSet(name, new Map([[name, source]]), () => name, { readAhead });
  }
  if (typeof source === 'string' || source instanceof URL) return urlInputFileSet([source], undefined, { signal });
  const list = Array.from(source as readonly (Blob | URL | string)[]);
  if (list.length === 0) throw new MergeError('BAD_ARGUMENT', `the ${role} is an empty list of files`);
  if (list.every((x) => typeof File !== 'undefined' && x instanceof File)) return inputFileSetFromFiles(list as File[], undefined, { readAhead });
  if (list.every((x) => typeof x === 'string' || x instanceof URL)) return urlInputFileSet(list as (string | URL)[], undefined, { signal });
  throw new MergeError('BAD_ARGUMENT', `the ${role}: a list must be all Files (with names) or all URLs; wrap other Blobs in Files`);
}

/** Opens a browser-side destination. */
export function openBrowserDestination(out: MergeDestination): OutputTarget {
  if (isOutputTarget(out)) return out;
  return createFileSystemAccessOutputTarget(out);
}

/**
 * Merges adapters into a base model in one call: plans (a plan with problems is refused with one
 * MergeError listing every one), picks the backend (`auto`: the CPU on a software adapter or
 * none, WebGPU on a discrete GPU, else the faster on a test merge, kept in localStorage where the
 * context has it), streams the model through it into `out`, and
 * releases everything. Without `out`, the result's `blobs` hold the files (small models only: a
 * Blob is held by the browser).
 *
 * @example
 * const { blobs } = await merge({ base: baseFile, adapters: [{ source: loraFile, weight: 0.8 }], dtype: 'f16' });
 */
export function merge(options: MergeOptions): Promise<MergeOutcome> {
  return oneCallMerge(options, {
    openSource: openBrowserSource,
    openOutput: async (out) => openBrowserDestination(out),
    createBackend: (kind, calibrationDtype) => createBackend({ kind, calibrationDtype }),
  });
}
