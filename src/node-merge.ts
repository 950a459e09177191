/**
 * The one-call merge for Node: everything the browser one takes, plus paths on disk for sources
 * and for the output. A string is a path unless it starts with http:// or https://. One part of a
 * split GGUF (`name-00001-of-00003.gguf`) stands for the whole set, as on the command line.
 */
import { stat } from 'node:fs/promises';
import { createNodeBackend } from './engine/node-backend.js';
import { checkOutputFolder, createNodeOutputTarget } from './io/node-output.js';
import { isGgufSplitPart, nodeInputFilePaths } from './io/node-input-files.js';
import { checkNodeOut, isPath, NODE_CALL_OPTIONS, NodeSources, NODE_FOLDER_ADVICE } from './io/node-sources.js';
import type { InputFileSet, OutputTarget } from './io/types.js';
import { hubSourceUse, openBrowserDestination, type MergeDestination, type MergeSource } from './merge.js';
import { oneCallMerge, type MergeOutcome, type OneCallMergeOptions } from './pipeline/one-call-merge.js';
import { checkOutputFormatName, LIBRARY_OUTPUT_NAMES } from './pipeline/output-name.js';

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
  /**
   * Replace a non-empty output folder, as a whole and only once the merge succeeded (the command
   * line's `--overwrite`). Without it such a folder is refused (OUTPUT_EXISTS). A file `out` is
   * replaced either way, as the command line replaces one.
   */
  overwrite?: boolean;
}

/**
 * Merges adapters into a base model in one call (see the browser {@link merge} for the rules).
 * `out` as a path is a file when the base is one file, else a new or empty folder mirroring the
 * base (or, with `overwrite`, a folder replaced whole); it is written under temporary names and appears only when the merge succeeded, and an
 * output that is one of the inputs is refused. Options are checked as the browser one's, and a
 * path that is a URL of another scheme (`ftp://`, `file://`) is refused too.
 *
 * @example
 * await merge({ base: 'llama/', adapters: ['lora/'], out: 'merged/', dtype: 'bf16' });
 */
export function merge(options: NodeMergeOptions): Promise<MergeOutcome> {
  // The paths' files stamped before a tensor is read and checked before the output is moved into
  // place (a file rewritten meanwhile would give an output that matches neither version); one
  // token for the whole merge; the Hub adapters opened, for explaining a refusal of their weights.
  const sources = new NodeSources(() => options.hfToken);
  return oneCallMerge<MergeSource, MergeDestination | string>(options, {
    moreOptions: NODE_CALL_OPTIONS,
    openSource: async (source, role, signal, readAhead): Promise<InputFileSet> =>
      sources.open(source, hubSourceUse(role, NODE_FOLDER_ADVICE), { signal, readAhead, splitGguf: isPath(source) && (await splitPart(source)) }),
    async openOutput(out, prepared, given): Promise<OutputTarget> {
      if (!isPath(out)) return openBrowserDestination(out, prepared.baseFiles.list());
      const split = isPath(given.base) && (await splitPart(given.base));
      const baseIsFolder = isPath(given.base)
        ? split || (await stat(given.base)).isDirectory()
        : prepared.baseFiles.list().length > 1;
      checkOutputFormatName(out, prepared.base.format.name, baseIsFolder, LIBRARY_OUTPUT_NAMES);
      const inputs = [...(split ? nodeInputFilePaths(prepared.baseFiles) : [given.base]), ...given.adapters].filter(isPath);
      // The files behind them too: a folder's files may be links to elsewhere.
      inputs.push(...[prepared.baseFiles, ...prepared.adapters.map((a) => a.files)].flatMap((set) => [...nodeInputFilePaths(set)]));
      return createNodeOutputTarget(out, baseIsFolder ? 'folder' : 'file', inputs, { overwrite: options.overwrite, beforeCommit: () => sources.verify() });
    },
    createBackend: (kind, calibrationDtype, threads) => createNodeBackend(kind, { calibrationDtype, threads }),
    explainError: (e) => sources.explain(e),
    checkSource: (source, what, role) => sources.check(source, { what, adapter: role === 'adapter', folderAdvice: NODE_FOLDER_ADVICE }),
    checkOutput: (out) => checkNodeOut(out, 'the merged model'),
    // A path whose folder cannot take the output is refused before a source is read.
    checkOutputPlace: async (out) => (isPath(out) ? checkOutputFolder(out) : undefined),
  });
}

/** Is this path a file that is one part of a split GGUF? */
async function splitPart(path: string): Promise<boolean> {
  return isGgufSplitPart(path) && ((await stat(path).catch(() => undefined))?.isFile() ?? false);
}
