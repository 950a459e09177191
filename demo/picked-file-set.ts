/**
 * The worker's input sets: files whose folder paths the page already knows (dropped folders give
 * Files without webkitRelativePath, and paths do not survive the trip to the worker). Reads go
 * through the library's Blob source: only the bytes asked for are ever loaded.
 */
import type { InputFileSet } from '../src/index.js';
import { namedBlobFileSet } from '../src/io/browser-input-files.js';
import type { PickedFile } from './worker-protocol.js';

/**
 * `use`: 'merge' reads long sequential runs through windows read ahead; 'plan' (headers, factors,
 * sampled rows of W) reads only what it asks for, since windows started for a plan's reads were
 * thrown away unread (see blobInputFileSet's `readAhead`); a function, for a set planned and then
 * merged (the worker's merge): read ahead only once it returns true. `namesFolder`: `name` is the
 * files' folder's (PickedSet.namesFolder), not a label for loose files.
 */
export function pickedFileSet(name: string, files: readonly PickedFile[], use: 'merge' | 'plan' | (() => boolean) = 'merge', namesFolder = false): InputFileSet {
  const readAhead = use === 'merge' ? true : use === 'plan' ? false : use;
  // Messages name a file by its folder and path; a file picked alone is named once, not as `x.safetensors/x.safetensors`.
  return namedBlobFileSet(name, new Map(files.map((f) => [f.path, f.file])), (path) => (path === name ? path : `${name}/${path}`), { readAhead }, namesFolder);
}
