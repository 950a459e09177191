/**
 * The one-call merge for browsers and workers: sources are Files, Blobs, URLs or InputFileSets; the
 * output is a File System Access handle, an OutputTarget, or nothing (then Blobs come back).
 */
import {
  badArgument, checkList, isFileSystemHandle, isInputFileSet, isOutputTarget, shown, urlScheme,
} from './api-arguments.js';
import { createBrowserBackend } from './engine/browser-backend.js';
import { blobInputFileSet, inputFileSetFromFiles, type BlobReadOptions } from './io/browser-input-files.js';
import { createFileSystemAccessOutputTarget } from './io/fs-access-output.js';
import type { HfEndpoint } from './io/hf-endpoint.js';
import { checkHfTokenOption, explicitHfAuth } from './io/hf-token-option.js';
import { checkHubSourceUrl, explainLoneHubWeights, openHubSource, type HubSourceUse, type OpenedHubAdapter } from './io/hub-adapters.js';
import type { InputFileSet, OutputTarget } from './io/types.js';
import { urlInputFileSetWithAuth, type HfAuth } from './io/url-input-files.js';
import { printable } from './shown-text.js';
import { oneCallMerge, type MergeOutcome, type OneCallMergeOptions } from './pipeline/one-call-merge.js';

/**
 * A model or adapter as a page has it: a File or Blob (one file), a URL (one remote file, read by
 * HTTP Range requests), several Files (a picked folder: their `webkitRelativePath`s are kept) or
 * URLs (taken as one folder), or an InputFileSet for anything else. An adapter may also be a
 * Hugging Face Hub URL of a model repository (`https://huggingface.co/ORG/NAME`), of a
 * `tree/REV[/SUBFOLDER]` page or of an `adapter_model.safetensors` download link: it is read as
 * the PEFT folder of `adapter_config.json` + `adapter_model.safetensors` at
 * `…/resolve/REV/[SUBFOLDER/]` (a gated or private one with the `hfToken` option). A
 * repository or `tree/` URL as the base is refused: the base is the URL of one file; so is a
 * Hugging Face `blob/` page (HTML about a file) anywhere, naming the file's `resolve/` link.
 */
export type MergeSource = InputFileSet | Blob | URL | string | readonly (Blob | URL | string)[];

/** Where a browser merge writes: a picked file (for a one-file base) or folder, or any OutputTarget. */
export type MergeDestination = OutputTarget | FileSystemFileHandle | FileSystemDirectoryHandle;

/** Options of {@link merge}. */
export interface MergeOptions extends OneCallMergeOptions<MergeSource, MergeDestination> {
  /**
   * A Hugging Face token, for URL sources in gated or private repositories: sent only over https
   * to huggingface.co and hf.co themselves (never over plain http, never to another host), and
   * never past a redirect to another host: Hugging Face's downloads redirect to signed links on
   * their CDN, which do not get it (in a browser, which hides where a redirect leads, the browser
   * drops it there, as the Fetch standard has it). Left out or `false`, none is sent: this entry
   * reads no environment (`loramerge/node` also finds HF_TOKEN and `hf auth login`'s token). Mind
   * where a page gets it: a token in a page's code is anyone's who loads the page.
   */
  hfToken?: string | false;
}

/**
 * The option the browser entry's one-call functions take beyond the shared ones (merge() and the
 * adapter jobs alike): `hfToken`, checked before anything is read.
 */
export const BROWSER_CALL_OPTIONS = {
  names: ['hfToken'],
  check: (o: Readonly<Record<string, unknown>>): void => checkHfTokenOption('hfToken', o.hfToken),
} as const;

/** The HfAuth of one browser call from its `hfToken`, made at the first source opened (the options are checked by then). */
export function browserHfAuth(options: { hfToken?: unknown }): () => HfAuth {
  let auth: HfAuth | undefined;
  return () => (auth ??= explicitHfAuth(options.hfToken));
}

/** Default file names of a lone Blob, which has none of its own. */
const BLOB_NAMES = { base: 'model.safetensors', adapter: 'adapter_model.safetensors' } as const;

const SOURCE_KINDS = 'a File or Blob, an http(s) URL, an array of Files or of URLs, or an InputFileSet';

/** A URL a browser source may be: http(s), or a relative one (read against the page's location). */
function checkUrl(what: string, url: string | URL): void {
  const text = String(url);
  if (text.trim() === '') throw badArgument(`${what} is an empty string; give ${SOURCE_KINDS}`);
  const scheme = url instanceof URL ? url.protocol.slice(0, -1) : urlScheme(text);
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    throw badArgument(`${what} is a URL of scheme ${scheme}: ("${text.slice(0, 80)}"); only http:// and https:// URLs are read (pass a File or Blob for other bytes)`);
  }
  // Without a location (Node) a relative URL is most likely a path: say where paths go.
  if (scheme === undefined && (globalThis as { location?: unknown }).location === undefined) {
    throw badArgument(`${what} ("${text.slice(0, 80)}") is not a URL; a path is given to merge() from loramerge/node (and to its combineLoras, resizeLora and extractLora), or opened with openNodeInputFileSet`);
  }
}

/**
 * Refuses, before anything is opened, what {@link openBrowserSource} cannot open: `what` names
 * the argument (`the base`, `adapters[1]`). Node's entry checks paths itself first.
 */
export function checkBrowserSource(what: string, source: unknown): void {
  if (isInputFileSet(source) || source instanceof Blob) return;
  if (typeof source === 'string' || source instanceof URL) return checkUrl(what, source);
  if (Array.isArray(source)) {
    checkList(what, source, 'a File (with its name) or a URL');
    source.forEach((x: unknown, i) => {
      if (typeof x === 'string' || x instanceof URL) checkUrl(`${what}[${i}]`, x);
      else if (!(x instanceof Blob)) throw badArgument(`${what}[${i}] must be a File or a URL, not ${shown(x)}`);
      // A list is a folder: its files are told apart by name, which a bare Blob lacks.
      else if (!isFile(x)) throw badArgument(`${what}[${i}] is a Blob without a name; a list is a folder and takes Files, named as the folder's files: new File([blob], 'model.safetensors')`);
    });
    const files = source.filter(isFile).length;
    if (files > 0 && files < source.length) throw badArgument(`${what} mixes Files and URLs; a list is one folder, all Files or all URLs`);
    return;
  }
  throw badArgument(`${what} must be ${SOURCE_KINDS}, not ${shown(source)}`);
}

/** Refuses what {@link openBrowserDestination} cannot write to (`out` absent is fine: Blobs come back). */
export function checkBrowserDestination(out: unknown, paths = false): void {
  if (out === undefined || isOutputTarget(out) || isFileSystemHandle(out, 'file') || isFileSystemHandle(out, 'directory')) return;
  const kinds = `${paths ? 'a path, ' : ''}a File System Access handle (showSaveFilePicker, showDirectoryPicker, an OPFS folder) or an OutputTarget`;
  const why = out instanceof Blob ? ' (a File or Blob is something to read, not a place to write)'
    // Without a location (Node) a string is most likely a path: say where paths go, as for sources.
    : !paths && typeof out === 'string' && (globalThis as { location?: unknown }).location === undefined
      ? '; a path is written by merge() from loramerge/node (and by its combineLoras, resizeLora and extractLora)' : '';
  throw badArgument(`out must be ${kinds}, or left out to get Blobs back; not ${shown(out)}${why}`);
}

/**
 * Opens a browser-side source; Node's entry adds paths on top of this. `readAhead`: Blobs and Files
 * read ahead only while it returns true (see {@link BlobReadOptions}); by default always. `hfAuth`:
 * the call's Hugging Face token, for URLs (none by default).
 */
export async function openBrowserSource(
  source: MergeSource, role: 'base' | 'adapter', signal?: AbortSignal, readAhead: BlobReadOptions['readAhead'] = true, hfAuth?: HfAuth,
): Promise<InputFileSet> {
  checkBrowserSource(`the ${role}`, source);
  if (isInputFileSet(source)) return source;
  if (source instanceof Blob) {
    const name = isFile(source) ? source.name : BLOB_NAMES[role];
    return blobInputFileSet(name, new Map([[name, source]]), () => name, { readAhead });
  }
  if (typeof source === 'string' || source instanceof URL) return urlInputFileSetWithAuth([source], undefined, { signal }, hfAuth);
  // Checked above: a non-empty list, all Files or all URLs.
  const list = Array.from(source as readonly (File | URL | string)[]);
  if (list.every(isFile)) return inputFileSetFromFiles(list, undefined, { readAhead });
  return urlInputFileSetWithAuth(list as (string | URL)[], undefined, { signal }, hfAuth);
}

/** How a merge() source of `role` is taken where it is a Hub URL (hub-adapters.ts); `folderAdvice` says where a downloaded folder goes. */
export function hubSourceUse(role: 'base' | 'adapter', folderAdvice: string): HubSourceUse {
  return { what: `the ${role}`, adapter: role === 'adapter', folderAdvice };
}

/** Where the browser entry's refusals of a Hub folder send a downloaded one: a page gives Files. */
export const BROWSER_FOLDER_ADVICE = 'download the folder and give its files';

/**
 * Refuses, before any request, a Hugging Face URL that cannot be `source` (checkHubSourceUrl): a
 * `blob/` page, and a repository or `tree/` page where one file is read. `use.adapter` says whether
 * `source` is an adapter (then a repository or `tree/` page is its PEFT folder); each URL of a list
 * is one file of a folder. `endpoint` is HF_ENDPOINT's Hub where a Node entry reads it.
 */
export function checkHubSource(source: unknown, use: HubSourceUse, endpoint: HfEndpoint | undefined): void {
  if (typeof source === 'string' || source instanceof URL) return checkHubSourceUrl(String(source), use, endpoint);
  if (!Array.isArray(source)) return;
  source.forEach((x: unknown, i) => {
    if (typeof x === 'string' || x instanceof URL) checkHubSourceUrl(String(x), { ...use, what: `${use.what}[${i}]`, adapter: false }, endpoint);
  });
}

/**
 * Opens a browser-side source as {@link openBrowserSource} does, a Hub URL as `use` takes it
 * (hub-adapters.ts, with the call's `hfAuth`): an adapter's repository, `tree/` page or weights link
 * as its PEFT folder, noted in `opened` (for explainLoneHubWeights); a refusal of one as a file,
 * before any request.
 */
export async function openBrowserOrHubSource(
  source: MergeSource, role: 'base' | 'adapter', use: HubSourceUse, opened: OpenedHubAdapter[],
  signal?: AbortSignal, readAhead?: BlobReadOptions['readAhead'], hfAuth?: HfAuth,
): Promise<InputFileSet> {
  if (typeof source === 'string' || source instanceof URL) {
    // The token is the hfToken option's only: the browser entry reads no environment.
    const hub = await openHubSource(String(source), use, { signal }, hfAuth);
    if (hub) return (opened.push(hub), hub.files);
  }
  return openBrowserSource(source, role, signal, readAhead, hfAuth);
}

/** A File (a Blob with a name), where the context has them. */
function isFile(x: unknown): x is File {
  return typeof File !== 'undefined' && x instanceof File;
}

/**
 * Opens a browser-side destination. `baseFiles`, where a merged model goes there, are the base's
 * files: a model of several mirrors them into a folder, so a picked file is refused for one before
 * anything is written (else the merge would write the first file whole, then fail on the second).
 */
export function openBrowserDestination(out: MergeDestination, baseFiles?: readonly string[]): OutputTarget {
  checkBrowserDestination(out);
  if (isOutputTarget(out)) return out;
  if (baseFiles && baseFiles.length > 1 && isFileSystemHandle(out, 'file')) {
    const names = baseFiles.slice(0, 3).map((f) => printable(f)).join(', ') + (baseFiles.length > 3 ? ', …' : '');
    throw badArgument(`out is a file (${printable(out.name)}), but the base is ${baseFiles.length} files (${names}) and the merged model mirrors them; give a folder (showDirectoryPicker, an OPFS folder) instead`);
  }
  return createFileSystemAccessOutputTarget(out);
}

/**
 * Merges adapters into a base model in one call: plans (a plan with problems is refused with one
 * MergeError listing every one), picks the backend (`auto`: the CPU on a software adapter or
 * none, WebGPU on a discrete GPU, else the faster on a test merge, kept in localStorage where the
 * context has it; the CPU on Web Workers sharing memory where the page or worker is cross-origin
 * isolated, `threads` of them where given, else on one thread, which the outcome's `backend`
 * says), streams the model through it
 * into `out`, and
 * releases everything. Without `out`, the result's `blobs` hold the files (small models only: a
 * Blob is held by the browser). Every option is checked first: a wrong type, an unknown option
 * name, a URL that is not http(s) or an `hfToken` that is no token is a BAD_ARGUMENT MergeError
 * naming the argument.
 *
 * @example
 * const { blobs } = await merge({ base: baseFile, adapters: [{ source: loraFile, weight: 0.8 }], dtype: 'f16' });
 */
export function merge(options: MergeOptions): Promise<MergeOutcome> {
  // Hub adapter URLs of this merge, for explaining a refusal of weights read without their config.
  const hubAdapters: OpenedHubAdapter[] = [];
  const hfAuth = browserHfAuth(options ?? {});
  return oneCallMerge(options, {
    moreOptions: BROWSER_CALL_OPTIONS,
    openSource: (source, role, signal, readAhead) =>
      openBrowserOrHubSource(source, role, hubSourceUse(role, BROWSER_FOLDER_ADVICE), hubAdapters, signal, readAhead, hfAuth()),
    explainError: (e) => explainLoneHubWeights(e, hubAdapters),
    openOutput: async (out, prepared) => openBrowserDestination(out, prepared.baseFiles.list()),
    createBackend: (kind, calibrationDtype, threads) => createBrowserBackend(kind, { calibrationDtype, pool: threads === undefined ? undefined : { threads } }),
    checkSource(source, what, role) {
      checkBrowserSource(what, source);
      checkHubSource(source, { what, adapter: role === 'adapter', folderAdvice: BROWSER_FOLDER_ADVICE }, undefined);
    },
    checkOutput: (out) => checkBrowserDestination(out),
  });
}
