/**
 * LoRA to LoRA in one call, for browsers and workers: combine several adapters into one, resize an
 * adapter's rank, or extract an adapter from a fine-tuned model and its base. Each opens its
 * sources, checks its options, runs the adapter algebra on WebGPU (`navigator.gpu`) or the CPU,
 * writes a PEFT folder or a kohya file into `out` (or Blobs), and releases everything; a failure
 * or a cancel leaves nothing at `out`. The rules are the command line's (`loramerge combine`,
 * `resize`, `extract`). Options are checked before anything is read: a wrong type or an unknown
 * option name is a BAD_ARGUMENT MergeError naming it; a signal already aborted is ABORTED. An
 * adapter may be a Hugging Face Hub URL as merge() takes it (hub-adapters.ts: a repository, `tree/`
 * page or weights link read as its PEFT folder; the `hfToken` option sent as merge() sends it); a `blob/` page, and a repository or
 * `tree/` page as extract's base or tuned model, are refused before any request. The jobs
 * themselves are shared with `loramerge/node` (adapter-ops/one-call-jobs.ts); this module supplies
 * the browser's sources, outputs and GPU.
 */
import {
  combineLorasJob, extractLoraJob, resizeLoraJob, type AdapterJobHooks, type AdapterJobOutcome, type CombineLorasOptions,
  type ExtractLoraOptions, type ResizeLoraOptions,
} from './adapter-ops/one-call-jobs.js';
import { createBrowserAlgebra } from './algebra/browser-algebra.js';
import { getBrowserGpu } from './engine/gpu/browser-gpu.js';
import { explainLoneHubWeights, type OpenedHubAdapter } from './io/hub-adapters.js';
import {
  BROWSER_CALL_OPTIONS, BROWSER_FOLDER_ADVICE, browserHfAuth, checkBrowserDestination, checkBrowserSource, checkHubSource, openBrowserDestination,
  openBrowserOrHubSource, type MergeDestination,
} from './merge.js';

export {
  COMBINE_METHODS, type AdapterJobOptions, type AdapterJobOutcome, type CombineLorasOptions, type ExtractLoraOptions, type ResizeLoraOptions,
} from './adapter-ops/one-call-jobs.js';
export type { CombineMethod } from './adapter-ops/combine.js';
export type { MajoritySign } from './algebra/merge-rules.js';
export type { RankRule } from './algebra/rank-rules.js';
export type { GrownRows, ModuleReport } from './adapter-ops/op-common.js';

/**
 * Combines several LoRA adapters into one: `cat` exactly (ranks concatenated), `svd` as the best
 * rank-k approximation of Σ wᵢ·sᵢ·ΔWᵢ, or PEFT's `ties`, `dare_linear`, `dare_ties`,
 * `magnitude_prune` on the full updates, then reduced by SVD.
 *
 * @example
 * const { blobs, modules } = await combineLoras({ adapters: [a, { source: b, weight: 0.5 }], method: 'svd', rank: 16 });
 */
export function combineLoras(options: CombineLorasOptions): Promise<AdapterJobOutcome> {
  return combineLorasJob(options, browserJobHooks(options));
}

/**
 * Gives every module of one adapter a new rank, as kohya's resize_lora does: a fixed rank or one of
 * its dynamic rules on the module's singular values; the new α keeps each module's scale.
 *
 * @example
 * const { blobs, modules } = await resizeLora({ adapter: loraFile, rule: { kind: 'sv_fro', value: 0.9 } });
 */
export function resizeLora(options: ResizeLoraOptions): Promise<AdapterJobOutcome> {
  return resizeLoraJob(options, browserJobHooks(options));
}

/**
 * Extracts a LoRA whose B·A best approximates T − B for every module of a fine-tuned model T and
 * its base B (mergekit's extract_lora), streamed one module at a time; changed norms and
 * embeddings are saved whole (PEFT `modules_to_save`).
 *
 * @example
 * const { blobs, modules } = await extractLora({ base: baseFile, tuned: tunedFile, rank: 32 });
 */
export function extractLora(options: ExtractLoraOptions): Promise<AdapterJobOutcome> {
  return extractLoraJob(options, browserJobHooks(options));
}

/**
 * The browser's side of one job: sources checked and opened as merge() takes them (a Hub adapter
 * URL as its PEFT folder, the `hfToken` option sent as merge() sends it), outputs a picked file or
 * folder or an OutputTarget, the algebra on `navigator.gpu` unless a GPU is given, its CPU on Web
 * Workers (`threads` of them, where given) where merge() would start them (a cross-origin isolated context), stopped when the job
 * ends however it ends (run() in one-call-jobs.ts disposes the algebra).
 */
function browserJobHooks(options: { hfToken?: unknown }): AdapterJobHooks<MergeDestination> {
  const hubAdapters: OpenedHubAdapter[] = [];
  const hfAuth = browserHfAuth(options ?? {});
  return {
    moreOptions: BROWSER_CALL_OPTIONS,
    checkSource(source, what, adapter) {
      checkBrowserSource(what, source);
      checkHubSource(source, { what, adapter, folderAdvice: BROWSER_FOLDER_ADVICE }, undefined);
    },
    checkOutput: (out) => checkBrowserDestination(out),
    openSource: (source, what, adapter, signal) =>
      openBrowserOrHubSource(source, adapter ? 'adapter' : 'base', { what, adapter, folderAdvice: BROWSER_FOLDER_ADVICE }, hubAdapters, signal, undefined, hfAuth()),
    openOutput: async (out) => openBrowserDestination(out),
    createAlgebra: (kind, gpu, threads) => createBrowserAlgebra(kind, gpu ?? getBrowserGpu(), threads),
    explainError: (e) => explainLoneHubWeights(e, hubAdapters),
  };
}
