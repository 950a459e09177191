/**
 * The adapter jobs for Node (`combineLoras`, `resizeLora`, `extractLora` of `loramerge/node`): the
 * browser entry's jobs (adapter-ops/one-call-jobs.ts), with the Node entry's merge() contract for
 * sources and the output. A source may also be a path on disk (a file or a folder) and a URL is
 * read with the Hugging Face token (node-sources.ts); `out` may be a path, written as the command
 * line's `combine`, `resize`, `extract` and `convert` write it (node-output.ts): a name ending in
 * `.safetensors` is a kohya file, one ending in `.gguf` a llama.cpp LoRA GGUF (combine and resize
 * of GGUF LoRAs, or of PEFT adapters with a `base`; convertLora), anything else a PEFT folder, written under temporary names and
 * moved into place only when the job succeeded. The algebra runs on Dawn's WebGPU (the optional
 * `webgpu` package) or the CPU on worker threads (as the CPU merge), and is released before the
 * job returns, however it ends, so nothing keeps the process alive after it.
 */
import {
  combineLorasJob, convertLoraJob, extractLoraJob, resizeLoraJob, type AdapterJobHooks, type AdapterJobOptions, type AdapterJobOutcome,
  type CombineLorasOptions, type ConvertLoraOptions, type ExtractLoraOptions, type ResizeLoraOptions,
} from './adapter-ops/one-call-jobs.js';
import { cliOutputFormat } from './adapter-ops/module-updates.js';
import { createAlgebraBackend } from './algebra/create-algebra.js';
import { createNodeAlgebra, nodeCpuAlgebra } from './algebra/node-algebra.js';
import { badArgument } from './api-arguments.js';
import { checkOutputFolder, createNodeOutputTarget } from './io/node-output.js';
import { checkNodeOut, isPath, NODE_CALL_OPTIONS, NodeSources, NODE_FOLDER_ADVICE } from './io/node-sources.js';
import { openBrowserDestination, type MergeDestination } from './merge.js';

/** What every adapter job of `loramerge/node` takes besides its inputs and rule. */
export interface NodeAdapterJobOptions extends AdapterJobOptions<MergeDestination | string> {
  /**
   * Where the files go: a path, as the command line's `--out` (a name ending in `.safetensors` is a
   * kohya file, one ending in `.gguf` a llama.cpp LoRA GGUF (combineLoras and resizeLora only: of
   * GGUF LoRAs, or of PEFT adapters given a `base`), each replaced if it exists; anything else a PEFT folder, new or empty unless `overwrite`),
   * written under temporary names and moved into place only when the job succeeded; an output that
   * is an input, or holds one or lies inside one, is refused. Or a File System Access handle or an
   * OutputTarget, as in the browser; omitted, Blobs come back. A path decides the format: a
   * `format` that says otherwise is refused.
   */
  out?: MergeDestination | string;
  /** Replace a non-empty PEFT output folder, as a whole and only once the job succeeded (the command line's `--overwrite`). */
  overwrite?: boolean;
  /** {@inheritDoc NodeMergeOptions.hfToken} */
  hfToken?: string | false;
}

/** Options of the Node {@link combineLoras}: the browser's, and sources and `out` may be paths. */
export interface NodeCombineLorasOptions extends NodeAdapterJobOptions, CombineLorasOptions<MergeDestination | string> {}

/** Options of the Node {@link resizeLora}: the browser's, and the adapter and `out` may be paths. */
export interface NodeResizeLoraOptions extends NodeAdapterJobOptions, ResizeLoraOptions<MergeDestination | string> {}

/** Options of the Node {@link extractLora}: the browser's, and the models and `out` may be paths. */
export interface NodeExtractLoraOptions extends NodeAdapterJobOptions, ExtractLoraOptions<MergeDestination | string> {}

/** Options of {@link convertLora}: sources may be paths or URLs, `out` is a path ending in `.gguf`. */
export interface NodeConvertLoraOptions extends ConvertLoraOptions<string> {}

/**
 * Combines several LoRA adapters into one (see the browser entry's `combineLoras` for the methods),
 * from paths, URLs (the Hugging Face token sent), Files, Blobs or InputFileSets, into an `out`
 * path, a handle, an OutputTarget or Blobs.
 *
 * @example
 * await combineLoras({ adapters: ['style/', { source: 'detail.safetensors', weight: 0.5 }], method: 'svd', rank: 16, out: 'combined/' });
 */
export function combineLoras(options: NodeCombineLorasOptions): Promise<AdapterJobOutcome> {
  return combineLorasJob(options, nodeJobHooks(options, 'combine'));
}

/**
 * Gives every module of one adapter a new rank, as kohya's resize_lora does (see the browser
 * entry's `resizeLora`), from a path, a URL or what the browser takes, into an `out` path or any
 * output the browser takes.
 *
 * @example
 * await resizeLora({ adapter: 'lora.safetensors', rule: { kind: 'sv_fro', value: 0.9 }, out: 'lora-small.safetensors' });
 */
export function resizeLora(options: NodeResizeLoraOptions): Promise<AdapterJobOutcome> {
  return resizeLoraJob(options, nodeJobHooks(options, 'resize'));
}

/**
 * Writes one PEFT adapter as a llama.cpp LoRA GGUF for the model `base` (a GGUF or a Hugging Face
 * safetensors folder), as the command line's `convert` does and llama.cpp's convert_lora_to_gguf.py
 * names it: its factors as they are, each module at its own scale, no algebra run. A failure or a
 * cancel leaves nothing at `out`.
 *
 * @example
 * await convertLora({ adapter: 'my-lora/', base: 'Llama-3.2-1B-F16.gguf', out: 'my-lora.gguf' });
 */
export function convertLora(options: NodeConvertLoraOptions): Promise<AdapterJobOutcome> {
  return convertLoraJob(options, nodeJobHooks(options, 'convert'));
}

/**
 * Extracts a LoRA from a fine-tuned model and its base (see the browser entry's `extractLora`),
 * each a path (a file or a folder of shards), a URL of one file or what the browser takes, into an
 * `out` path or any output the browser takes.
 *
 * @example
 * await extractLora({ base: 'llama/', tuned: 'llama-tuned/', rank: 32, out: 'extracted/' });
 */
export function extractLora(options: NodeExtractLoraOptions): Promise<AdapterJobOutcome> {
  return extractLoraJob(options, nodeJobHooks(options, 'extract'));
}

const PATH_FORMATS = { kohya: 'a kohya file (a name ending in .safetensors)', peft: 'a PEFT folder', gguf: 'a llama.cpp LoRA GGUF (a name ending in .gguf)' } as const;

/**
 * Node's side of one job (`command` names it where an input changed while it was read): sources
 * through {@link NodeSources}, an `out` path through createNodeOutputTarget, the algebra on Dawn
 * or the CPU's worker threads (createNodeAlgebra; `threads` of them where given), or on a GPU given
 * (its CPU on the threads too).
 */
function nodeJobHooks(options: NodeAdapterJobOptions | NodeConvertLoraOptions, command: string): AdapterJobHooks<MergeDestination | string> {
  // Read only once the options are checked (checkOptions refuses anything but an object).
  const sources = new NodeSources(() => options.hfToken, `the ${command}`);
  const use = (what: string, adapter: boolean) => ({ what, adapter, folderAdvice: NODE_FOLDER_ADVICE });
  // A GGUF base may be one part of a split model, standing for the set (the command line's --base).
  const opening = (what: string, signal: AbortSignal | undefined) => ({ signal, splitGguf: what === 'base' && command !== 'extract' });
  return {
    moreOptions: NODE_CALL_OPTIONS,
    checkSource: (source, what, adapter) => sources.check(source, use(what, adapter)),
    checkOutput(out, format) {
      checkNodeOut(out, 'the adapter');
      // extract reads safetensors models, whose module names are not llama.cpp's tensor names.
      if (command === 'extract' && isPath(out) && cliOutputFormat(out) === 'gguf') {
        throw badArgument(`out "${out}": extractLora writes no GGUF (it reads safetensors models, whose module names are not llama.cpp's); name out a folder (PEFT) and convert it with convertLora`);
      }
      if (!isPath(out) || format === undefined || format === cliOutputFormat(out)) return;
      throw badArgument(`format is ${format}, but out "${out}" names ${PATH_FORMATS[cliOutputFormat(out)]}; leave format out, or name ${PATH_FORMATS[format]}`);
    },
    fixedFormat: (out) => (isPath(out)
      ? { format: cliOutputFormat(out), kohyaAdvice: `give out a name ending in .safetensors (a kohya file) instead of "${out}"` }
      : undefined),
    openSource: (source, what, adapter, signal) => sources.open(source, use(what, adapter), opening(what, signal)),
    // A path whose folder cannot take the output is refused before a source is read.
    checkOutputPlace: async (out) => (isPath(out) ? checkOutputFolder(out) : undefined),
    async openOutput(out, format) {
      if (!isPath(out)) return openBrowserDestination(out);
      return createNodeOutputTarget(out, format === 'peft' ? 'folder' : 'file', sources.diskPaths(), {
        overwrite: 'overwrite' in options ? options.overwrite : undefined,
        beforeCommit: () => sources.verify(),
      });
    },
    createAlgebra: (kind, gpu, threads) => (gpu ? createAlgebraBackend(kind, gpu, () => nodeCpuAlgebra(threads)) : createNodeAlgebra(kind, { threads })),
    explainError: (e) => sources.explain(e),
  };
}
