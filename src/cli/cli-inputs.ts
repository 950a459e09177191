/**
 * Inputs as the command line names them: a path on disk, or an http:// or https:// URL of one
 * remote file, read by HTTP Range requests (url-input-files.ts), so a multi-GB base is merged
 * without being downloaded first; a Hugging Face token from the environment or `hf auth login`'s
 * file (hf-token.ts) goes with the requests to Hugging Face (and to the Hub HF_ENDPOINT names),
 * and to no other host. An adapter may also be a Hub URL of a repository, a `tree/` page or an
 * `adapter_model.safetensors` link, read as the PEFT folder of its `adapter_config.json` and
 * `adapter_model.safetensors` (hub-adapters.ts, as the library's merge() reads it). A URL of
 * another scheme is refused naming it (a `file://` one with the path to give instead), and so is a
 * URL as --out: the output is written to disk.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isHttpUrl, schemeOfUrl } from '../api-arguments.js';
import { MAX_INPUT_FILES } from '../limits.js';
import { MergeError } from '../errors.js';
import { isGgufSplitPart, nodeInputFilePaths, openNodeAdapterFileSet, openNodeGgufSplitSet, openNodeInputFileSet, statOrNotFound } from '../io/node-input-files.js';
import { hfAuthFor } from '../io/hf-token.js';
import { decodedSegment, explainLoneHubWeights, folderUrlRefusal, isLoneWeightsRefusal, openHubSource, PEFT_WEIGHTS } from '../io/hub-adapters.js';
import { urlInputFileSetWithAuth } from '../io/url-input-files.js';
import type { InputFileSet } from '../io/types.js';

/** `scheme://…` of a scheme other than http(s), or undefined (a path, or an http(s) URL). */
function otherScheme(text: string): string | undefined {
  const scheme = schemeOfUrl(text);
  return scheme !== 'http' && scheme !== 'https' ? scheme : undefined;
}

/** The path a `file://` URL names, or undefined where it names none on this system (another host). */
function pathOfFileUrl(text: string): string | undefined {
  try {
    return fileURLToPath(text);
  } catch {
    return undefined;
  }
}

/**
 * An input of a scheme that is not read (`ftp://`, `file://`), refused as a usage error naming it.
 * `what` names the argument ("--base", "inspect's PATH").
 */
function refuseOtherScheme(text: string, what: string): void {
  const scheme = otherScheme(text);
  if (scheme === undefined) return;
  const path = scheme === 'file' ? pathOfFileUrl(text) : undefined;
  throw new MergeError('BAD_ARGUMENT', path !== undefined
    ? `${text}: ${what} takes a path or an http(s) URL, not a file:// URL; give the path ${path} instead`
    : `${text}: ${what} reads only http:// and https:// URLs, not ${scheme}://; download the file and give its path`);
}

/**
 * --out must be a path: a URL (http(s) or another scheme) is refused as a usage error before any
 * input is read.
 */
export function checkOutputPath(out: string): void {
  if (isHttpUrl(out) || otherScheme(out) !== undefined) {
    throw new MergeError('BAD_ARGUMENT', `${out}: --out is a URL; the output is written to disk, so give a path for it`);
  }
}

/** One input as named on the command line, opened (no byte read yet). */
export interface CliInput {
  /** As typed. */
  text: string;
  files: InputFileSet;
  /** A remote file: no path on disk for the output to keep off, nor to stamp. */
  url: boolean;
  /** Names more than one file (a folder on disk, or a split GGUF): a merge's output is then a folder. */
  many: boolean;
  /** The paths the output may not replace: the input as typed and its files on disk; none for a URL. */
  diskPaths: readonly string[];
  /** For a single file: its name (a URL's last path segment, percent-decoded), for an --out that names a folder. */
  fileName?: string;
  /**
   * A Hugging Face link of an `adapter_model.safetensors` read alone: the URL of the
   * `adapter_config.json` beside it, which the repository does not have (HTTP 404).
   */
  absentConfigUrl?: string;
}

/** The parts of a split GGUF (`name-00001-of-00003.gguf`) that a URL of one part names, in order. */
function ggufPartUrls(href: string): string[] | undefined {
  const url = new URL(href);
  const segments = url.pathname.split('/');
  const m = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i.exec(segments[segments.length - 1]);
  if (!m || Number(m[3]) < 1) return undefined;
  if (Number(m[3]) > MAX_INPUT_FILES) {
    throw new MergeError('BAD_ARGUMENT', `${href}: names ${Number(m[3])} parts, more than ${MAX_INPUT_FILES} (the limit MAX_INPUT_FILES); download the parts and give one's path`);
  }
  const parts: string[] = [];
  for (let i = 1; i <= Number(m[3]); i++) {
    segments[segments.length - 1] = `${m[1]}-${String(i).padStart(5, '0')}-of-${m[3]}.gguf`;
    url.pathname = segments.join('/');
    parts.push(url.href);
  }
  return parts;
}

/**
 * The file a URL names: its last path segment, percent-decoded, without query or fragment. A URL
 * of a folder (a path that ends in `/`) is refused saying which URL to give; a Hugging Face page
 * (`blob/`, `tree/`) was refused before, by openHubSource.
 */
function urlFileName(href: string, what: string): string {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    throw new MergeError('BAD_ARGUMENT', `${href}: is not a valid URL; check it`);
  }
  const last = url.pathname.split('/').pop() ?? '';
  if (last === '') throw folderUrlRefusal(href, what);
  const name = decodedSegment(last, href);
  if (name === '.' || name === '..' || /[\\/\0]/.test(name)) {
    throw new MergeError('BAD_ARGUMENT', `${href}: its last path segment, "${name}", is no file name; give the URL of one file`);
  }
  return name;
}

/** How {@link openCliInput} takes an input. */
export interface OpenInputOptions {
  /** The argument, for refusals ("--base", "inspect"). */
  what: string;
  /** One part of a split GGUF stands for the whole set (merge's --base, inspect), as on disk. */
  splitGguf?: boolean;
  /** Cancels the requests of a URL input, those in flight included. */
  signal?: AbortSignal;
  /**
   * An adapter (merge's, combine's and resize's --adapter, inspect): a Hugging Face URL of a model
   * repository, a `tree/` page or an `adapter_model.safetensors` link is read as a PEFT adapter's folder.
   */
  adapter?: boolean;
}

/**
 * Opens a path or an http(s) URL (one remote file; with `splitGguf`, the part URLs beside one part
 * of a split GGUF), refusing other schemes; a missing path is NOT_FOUND naming it.
 */
export async function openCliInput(text: string, options: OpenInputOptions): Promise<CliInput> {
  refuseOtherScheme(text, options.what);
  if (isHttpUrl(text)) {
    // Hugging Face's token, found as huggingface_hub finds it, goes only to its hosts over https
    // and to HF_ENDPOINT's (a bad HF_ENDPOINT is refused here, before any request).
    const auth = hfAuthFor(undefined);
    const hub = await openHubSource(text, { what: options.what, adapter: options.adapter === true }, { signal: options.signal }, auth);
    if (hub) {
      // A folder of two files, as on disk: `many`, and no file name of its own.
      return hub.many ? { text, files: hub.files, url: true, many: true, diskPaths: [] }
        : { text, files: hub.files, url: true, many: false, diskPaths: [], fileName: PEFT_WEIGHTS, absentConfigUrl: hub.absentConfigUrl };
    }
    const fileName = urlFileName(text, options.what);
    const parts = options.splitGguf ? ggufPartUrls(text) : undefined;
    const files = urlInputFileSetWithAuth(parts ?? [text], text, { signal: options.signal }, auth);
    // A split GGUF gives a split output, a folder, as on disk (even of one part).
    return parts ? { text, files, url: true, many: true, diskPaths: [] } : { text, files, url: true, many: false, diskPaths: [], fileName };
  }
  let info = options.splitGguf ? await statOrNotFound(text, text) : undefined;
  const split = info !== undefined && info.isFile() && isGgufSplitPart(text);
  // refuses what is missing or no file or folder; an adapter's lone file comes with what its trainer writes beside it
  const files = split ? await openNodeGgufSplitSet(text) : options.adapter ? await openNodeAdapterFileSet(text) : await openNodeInputFileSet(text);
  info ??= await stat(text);
  const onDisk = nodeInputFilePaths(files);
  return {
    text, files, url: false, many: split || info.isDirectory(),
    // A split part stands for its parts, the one typed among them.
    diskPaths: split ? [...onDisk] : [text, ...onDisk],
    ...(info.isFile() ? { fileName: basename(text) } : {}),
  };
}

/**
 * The engine's refusal of a lone PEFT weights file says its config is missing; for a URL, which is
 * one file, it says what to do instead. Other errors are returned as they are.
 */
export function explainUrlInputError(e: unknown, inputs: readonly CliInput[]): unknown {
  if (!isLoneWeightsRefusal(e)) return e;
  const input = inputs.find((i) => i.url && e.message.startsWith(`${i.files.name}:`));
  if (!input) return e;
  if (input.absentConfigUrl !== undefined) return explainLoneHubWeights(e, [{ text: input.text, files: input.files, many: false, absentConfigUrl: input.absentConfigUrl }]);
  return new MergeError('BAD_CONFIG', `${input.text}: is a PEFT adapter's weights, which need its adapter_config.json (r and lora_alpha) beside them; a URL is read as one file, so download both into a folder and give the folder's path`, { cause: e });
}

/**
 * Makes `signal` (the command's cancel signal, which exists only once the output does) abort
 * `inputs` too: the controller the URL inputs were opened with, before it existed.
 */
export function forwardAbort(signal: AbortSignal, inputs: AbortController): void {
  if (signal.aborted) inputs.abort();
  else signal.addEventListener('abort', () => inputs.abort(), { once: true });
}
