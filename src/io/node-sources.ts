/**
 * Sources as the Node entry's one-call functions take them (merge(), combineLoras, resizeLora,
 * extractLora): a path on disk (a file or a folder; a string that does not start with http:// or
 * https://), an http(s) URL or a list of them (the Hugging Face token sent as hf-token.ts finds it,
 * HF_ENDPOINT's Hub known), a Hub adapter URL read as its PEFT folder (hub-adapters.ts), or what the
 * browser entry takes (Files, Blobs, InputFileSets). One {@link NodeSources} per call: it holds the
 * call's token, the stamps of the files on disk (checked again before the output is committed) and
 * the Hub adapters it opened (for explaining a refusal of their weights).
 */
import { stat } from 'node:fs/promises';
import { badArgument, isHttpUrl, schemeOfUrl, shown } from '../api-arguments.js';
import { checkBrowserDestination, checkBrowserSource, checkHubSource, openBrowserSource, type MergeSource } from '../merge.js';
import type { BlobReadOptions } from './browser-input-files.js';
import { hfAuthFor } from './hf-token.js';
import { checkHfTokenOption } from './hf-token-option.js';
import { explainLoneHubWeights, openHubSource, type HubSourceUse, type OpenedHubAdapter } from './hub-adapters.js';
import { stampInputFiles, type InputStamps } from './input-stamps.js';
import { isGgufSplitPart, nodeInputFilePaths, openNodeAdapterFileSet, openNodeGgufSplitSet, openNodeInputFileSet } from './node-input-files.js';
import type { InputFileSet } from './types.js';
import { urlInputFileSetWithAuth, type HfAuth } from './url-input-files.js';

/** Where the Node entry's refusals of a Hub folder send a downloaded one. */
export const NODE_FOLDER_ADVICE = 'download the folder and give its path';

/** A string the Node entry takes as a path: any that is not an http(s) URL. */
export const isPath = (x: unknown): x is string => typeof x === 'string' && !isHttpUrl(x);

/** A source that is one URL or a list of URLs (checked before: a list is all Files or all URLs). */
function urlsOf(source: unknown): (string | URL)[] | undefined {
  if (typeof source === 'string' || source instanceof URL) return [source];
  if (Array.isArray(source) && source.length > 0 && source.every((x) => typeof x === 'string' || x instanceof URL)) return [...source] as (string | URL)[];
  return undefined;
}

/**
 * The options the Node entry's one-call functions take beyond the browser's (merge() and the
 * adapter jobs alike): `hfToken` (a token, or false) and `overwrite` (a boolean), checked before
 * anything is read.
 */
export const NODE_CALL_OPTIONS = {
  names: ['hfToken', 'overwrite'],
  check(o: Readonly<Record<string, unknown>>): void {
    checkHfTokenOption('hfToken', o.hfToken);
    if (o.overwrite !== undefined && typeof o.overwrite !== 'boolean') throw badArgument(`overwrite must be true or false, not ${shown(o.overwrite)}`);
  },
} as const;

/** A path must be one: not empty, and no URL of a scheme other than http(s) (`ftp://…`, `file://…`). */
export function checkPath(what: string, path: string): void {
  if (path.trim() === '') throw badArgument(`${what} is an empty string; give a path, a URL, a File or Blob, or an InputFileSet`);
  const scheme = schemeOfUrl(path);
  if (scheme !== undefined) {
    throw badArgument(`${what} is a URL of scheme ${scheme}: ("${path.slice(0, 80)}"); give a path on disk, or an http:// or https:// URL`);
  }
}

/**
 * Refuses an `out` a Node call cannot write `product` to ("the merged model"): what the browser
 * entry refuses, bar a path; an empty path, an http(s) URL or one of another scheme.
 */
export function checkNodeOut(out: unknown, product: string): void {
  if (typeof out !== 'string') return checkBrowserDestination(out, true);
  if (out.trim() === '') throw badArgument('out is an empty string; name the output file or folder (or leave out to get Blobs back)');
  if (isHttpUrl(out)) throw badArgument(`out is a URL ("${out.slice(0, 80)}"); ${product} is written to a path on disk, a File System Access handle or an OutputTarget`);
  checkPath('out', out);
}

/** How {@link NodeSources.open} reads one source. */
export interface NodeSourceOpening {
  /** Cancels the requests of a URL source, those in flight included. */
  signal?: AbortSignal;
  /** Blobs and Files read ahead only while it returns true (see BlobReadOptions). */
  readAhead?: BlobReadOptions['readAhead'];
  /**
   * A path that is one part of a split GGUF (`-00001-of-00003.gguf`, a file) stands for the whole
   * set; any other path (a one-file GGUF, a folder) is opened as it is.
   */
  splitGguf?: boolean;
}

/** The sources of one Node call: checks and opens each, and keeps what the call needs of them after. */
export class NodeSources {
  /** Hub adapter URLs opened, for explaining a refusal of weights read without their config. */
  readonly hubAdapters: OpenedHubAdapter[] = [];
  private readonly stamps: InputStamps[] = [];
  private readonly paths: string[] = [];
  private auth: HfAuth | undefined;

  /**
   * `hfToken`: the call's option, asked for only once the options are checked (at the first URL):
   * one token for the whole call, HF_ENDPOINT read with it. `operation` names the call where a
   * file on disk changed while it read it ("the merge", "the combine").
   */
  constructor(private readonly hfToken: () => string | false | undefined, private readonly operation = 'the merge') {}

  private hfAuth(): HfAuth {
    return this.auth ??= hfAuthFor(this.hfToken());
  }

  /**
   * Refuses, before anything is opened, a source this entry cannot open as `use` says (`use.what`
   * names the argument): an empty path or one of another scheme, a path in a list, what the browser
   * entry refuses, and a Hugging Face page it cannot be (a bad HF_ENDPOINT too).
   */
  check(source: unknown, use: HubSourceUse): void {
    const { what } = use;
    if (isPath(source)) return checkPath(what, source);
    // A list is a picked folder's Files or a remote folder's URLs; on disk the folder is the path.
    const path = Array.isArray(source) ? source.findIndex(isPath) : -1;
    if (path >= 0) {
      throw badArgument(`${what}[${path}] is a path in a list; give the path of the folder that holds the files, or of the one file, as one string`);
    }
    checkBrowserSource(what, source);
    // HF_ENDPOINT (a bad one refused here) says which URLs are the Hub's, for its pages too.
    if (urlsOf(source)) checkHubSource(source, use, this.hfAuth().endpoint);
  }

  /**
   * Opens a checked source: a path as its file or folder (its files stamped before a tensor is read;
   * only a lone adapter file's header is looked at first, to tell whether a params.json beside it is its trainer's),
   * a URL with the token, an adapter's Hub URL as its PEFT folder, anything else as the browser
   * entry opens it.
   */
  async open(source: MergeSource, use: HubSourceUse, opening: NodeSourceOpening = {}): Promise<InputFileSet> {
    const { signal } = opening;
    const urls = isPath(source) ? undefined : urlsOf(source);
    if (urls && !Array.isArray(source)) {
      const hub = await openHubSource(String(urls[0]), use, { signal }, this.hfAuth());
      if (hub) return (this.hubAdapters.push(hub), hub.files);
    }
    if (urls) return urlInputFileSetWithAuth(urls, undefined, { signal }, this.hfAuth());
    // Paths read no windows ahead (node-input-files.ts): only Blobs and Files take `readAhead`.
    if (!isPath(source)) return openBrowserSource(source, use.adapter ? 'adapter' : 'base', signal, opening.readAhead);
    // An adapter's lone file comes with what its trainer writes beside it (mistral-finetune's params.json).
    // (A path that is not there, or no file, is refused by openNodeInputFileSet in its words.)
    const split = opening.splitGguf && isGgufSplitPart(source) && await stat(source).then((info) => info.isFile(), () => false);
    const set = split ? await openNodeGgufSplitSet(source) : use.adapter ? await openNodeAdapterFileSet(source) : await openNodeInputFileSet(source);
    const files = nodeInputFilePaths(set);
    this.paths.push(source, ...files);
    this.stamps.push(await stampInputFiles(files, this.operation));
    return set;
  }

  /** The paths given and the files read from them: an output may replace none of them. */
  diskPaths(): string[] {
    return [...this.paths];
  }

  /** Throws INPUT_CHANGED where a file on disk changed since it was opened (just before an output is committed). */
  async verify(): Promise<void> {
    for (const s of this.stamps) await s.verify();
  }

  /** An error as the caller is to see it: a Hub adapter's weights read without their config explained. */
  explain(e: unknown): unknown {
    return explainLoneHubWeights(e, this.hubAdapters);
  }
}
