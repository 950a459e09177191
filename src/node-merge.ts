/**
 * The one-call merge for Node: everything the browser one takes, plus paths on disk for sources
 * and for the output. A string is a path unless it starts with http:// or https://. One part of a
 * split GGUF (`name-00001-of-00003.gguf`) stands for the whole set, as on the command line.
 */
import { stat } from 'node:fs/promises';
import { badArgument, isHttpUrl, schemeOfUrl } from './api-arguments.js';
import { checkHfTokenOption, hfAuthFor } from './io/hf-token.js';
import { explainLoneHubWeights, openHubSource, type OpenedHubAdapter } from './io/hub-adapters.js';
import { urlInputFileSetWithAuth, type HfAuth } from './io/url-input-files.js';
import { createNodeBackend } from './engine/node-backend.js';
import { stampInputFiles, type InputStamps } from './io/input-stamps.js';
import { createNodeOutputTarget } from './io/node-output.js';
import { isGgufSplitPart, nodeInputFilePaths, openNodeGgufSplitSet, openNodeInputFileSet } from './io/node-input-files.js';
import type { InputFileSet, OutputTarget } from './io/types.js';
import {
  checkBrowserDestination, checkBrowserSource, checkHubSource, hubSourceUse, openBrowserDestination, openBrowserSource, type MergeDestination, type MergeSource,
} from './merge.js';
import { oneCallMerge, type MergeOutcome, type OneCallMergeOptions } from './pipeline/one-call-merge.js';

/** Options of the Node {@link merge}: sources and `out` may also be paths. */
export interface NodeMergeOptions extends OneCallMergeOptions<MergeSource, MergeDestination | string> {
  /**
   * The Hugging Face token for URL sources: sent only to https://huggingface.co and https://hf.co
   * and to the Hub HF_ENDPOINT names (over its own scheme, as huggingface_hub sends it), never to
   * the hosts their downloads redirect to, nor over plain http to Hugging Face. Left out, it is found as
   * huggingface_hub finds it: HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the file HF_TOKEN_PATH,
   * else HF_HOME/token (by default ~/.cache/huggingface/token, which `hf auth login` writes), unless
   * HF_HUB_DISABLE_IMPLICIT_TOKEN is set. `false` sends none.
   */
  hfToken?: string | false;
}

/** Where the Node entry's refusals of a Hub folder send a downloaded one. */
const NODE_FOLDER_ADVICE = 'download the folder and give its path';

const isPath = (x: unknown): x is string => typeof x === 'string' && !isHttpUrl(x);

/** A source that is one URL or a list of URLs (checked before: a list is all Files or all URLs). */
function urlsOf(source: MergeSource): (string | URL)[] | undefined {
  if (typeof source === 'string' || source instanceof URL) return [source];
  if (Array.isArray(source) && source.length > 0 && source.every((x) => typeof x === 'string' || x instanceof URL)) return [...source] as (string | URL)[];
  return undefined;
}

/** A path must be one: not empty, and no URL of a scheme other than http(s) (`ftp://…`, `file://…`). */
function checkPath(what: string, path: string): void {
  if (path.trim() === '') throw badArgument(`${what} is an empty string; give a path, a URL, a File or Blob, or an InputFileSet`);
  const scheme = schemeOfUrl(path);
  if (scheme !== undefined) {
    throw badArgument(`${what} is a URL of scheme ${scheme}: ("${path.slice(0, 80)}"); give a path on disk, or an http:// or https:// URL`);
  }
}

/**
 * Merges adapters into a base model in one call (see the browser {@link merge} for the rules).
 * `out` as a path is a file when the base is one file, else a new or empty folder mirroring the
 * base; it is written under temporary names and appears only when the merge succeeded, and an
 * output that is one of the inputs is refused. Options are checked as the browser one's, and a
 * path that is a URL of another scheme (`ftp://`, `file://`) is refused too.
 *
 * @example
 * await merge({ base: 'llama/', adapters: ['lora/'], out: 'merged/', dtype: 'bf16' });
 */
export function merge(options: NodeMergeOptions): Promise<MergeOutcome> {
  // Each path's files, stamped before a byte is read and checked before the output is moved into
  // place: a file rewritten meanwhile would give an output that matches neither version.
  const stamps: InputStamps[] = [];
  // One token for the whole merge (HF_ENDPOINT read with it as the sources are checked), looked
  // for at the first request to Hugging Face.
  let hfAuth: HfAuth | undefined;
  // Hub adapter URLs of this merge, for explaining a refusal of weights read without their config.
  const hubAdapters: OpenedHubAdapter[] = [];
  return oneCallMerge<MergeSource, MergeDestination | string>(options, {
    moreOptions: { names: ['hfToken'], check: (o) => checkHfTokenOption('hfToken', o.hfToken) },
    openSource: async (source, role, signal, readAhead): Promise<InputFileSet> => {
      const urls = isPath(source) ? undefined : urlsOf(source);
      // Read as the sources were checked (checkSource); HF_ENDPOINT with it.
      if (urls) hfAuth ??= hfAuthFor(options.hfToken);
      if (urls && !Array.isArray(source)) {
        const hub = await openHubSource(String(urls[0]), hubSourceUse(role, NODE_FOLDER_ADVICE), { signal }, hfAuth);
        if (hub) return (hubAdapters.push(hub), hub.files);
      }
      if (urls) return urlInputFileSetWithAuth(urls, undefined, { signal }, hfAuth);
      // Paths read no windows ahead (node-input-files.ts): only Blobs and Files take `readAhead`.
      if (!isPath(source)) return openBrowserSource(source, role, signal, readAhead);
      const set = (await splitPart(source)) ? await openNodeGgufSplitSet(source) : await openNodeInputFileSet(source);
      stamps.push(await stampInputFiles(nodeInputFilePaths(set)));
      return set;
    },
    async openOutput(out, prepared, sources): Promise<OutputTarget> {
      if (!isPath(out)) return openBrowserDestination(out);
      const split = isPath(sources.base) && (await splitPart(sources.base));
      const baseIsFolder = isPath(sources.base)
        ? split || (await stat(sources.base)).isDirectory()
        : prepared.baseFiles.list().length > 1;
      const inputs = [...(split ? nodeInputFilePaths(prepared.baseFiles) : [sources.base]), ...sources.adapters].filter(isPath);
      // The files behind them too: a folder's files may be links to elsewhere.
      inputs.push(...[prepared.baseFiles, ...prepared.adapters.map((a) => a.files)].flatMap((set) => [...nodeInputFilePaths(set)]));
      return createNodeOutputTarget(out, baseIsFolder ? 'folder' : 'file', inputs, {
        beforeCommit: async () => {
          for (const s of stamps) await s.verify();
        },
      });
    },
    createBackend: (kind, calibrationDtype) => createNodeBackend(kind, { calibrationDtype }),
    explainError: (e) => explainLoneHubWeights(e, hubAdapters),
    checkSource(source, what, role) {
      if (isPath(source)) return checkPath(what, source);
      // A list is a picked folder's Files or a remote folder's URLs; on disk the folder is the path.
      const path = Array.isArray(source) ? source.findIndex(isPath) : -1;
      if (path >= 0) {
        throw badArgument(`${what}[${path}] is a path in a list; give the path of the folder that holds the files, or of the one file, as one string`);
      }
      checkBrowserSource(what, source);
      // HF_ENDPOINT (a bad one refused here) says which URLs are the Hub's, for its pages too.
      if (urlsOf(source as MergeSource)) {
        hfAuth ??= hfAuthFor(options.hfToken);
        checkHubSource(source, { what, adapter: role === 'adapter', folderAdvice: NODE_FOLDER_ADVICE }, hfAuth.endpoint);
      }
    },
    checkOutput(out) {
      if (typeof out !== 'string') return checkBrowserDestination(out, true);
      if (out.trim() === '') throw badArgument('out is an empty string; name the output file or folder (or leave out to get Blobs back)');
      if (isHttpUrl(out)) throw badArgument(`out is a URL ("${out.slice(0, 80)}"); the merged model is written to a path on disk, a File System Access handle or an OutputTarget`);
      checkPath('out', out);
    },
  });
}

/** Is this path a file that is one part of a split GGUF? */
async function splitPart(path: string): Promise<boolean> {
  return isGgufSplitPart(path) && ((await stat(path).catch(() => undefined))?.isFile() ?? false);
}
