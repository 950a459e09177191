/**
 * LoRA to LoRA in one call, for browsers and workers: combine several adapters into one, resize an
 * adapter's rank, or extract an adapter from a fine-tuned model and its base. Each opens its
 * sources, checks its options, runs the adapter algebra on WebGPU (`navigator.gpu`) or the CPU,
 * writes a PEFT folder or a kohya file into `out` (or Blobs), and releases everything; a failure
 * or a cancel leaves nothing at `out`. The rules are the command line's (`loramerge combine`,
 * `resize`, `extract`). Options are checked before anything is read: a wrong type or an unknown
 * option name is a BAD_ARGUMENT MergeError naming it; a signal already aborted is ABORTED. An
 * adapter may be a Hugging Face Hub URL as merge() takes it (hub-adapters.ts: a repository, `tree/`
 * page or weights link read as its PEFT folder, no token sent); a `blob/` page, and a repository or
 * `tree/` page as extract's base or tuned model, are refused before any request.
 */
import { combineAdapters, optionsWithoutEffect, type CombineMethod } from './adapter-ops/combine.js';
import { extractAdapter, openExtractModel } from './adapter-ops/extract.js';
import { kohyaNamedAdapter, type OutputFormat } from './adapter-ops/module-updates.js';
import type { ModuleReport, OpResult } from './adapter-ops/op-common.js';
import { resizeAdapter } from './adapter-ops/resize.js';
import type { AlgebraBackend } from './algebra/algebra-backend.js';
import { createAlgebraBackend } from './algebra/create-algebra.js';
import type { MajoritySign } from './algebra/merge-rules.js';
import type { RankRule } from './algebra/rank-rules.js';
import { getBrowserGpu } from './engine/gpu/browser-gpu.js';
import { isMergeError, MergeError } from './errors.js';
import { openAdapter, type ParsedAdapter } from './formats/adapter.js';
import { writeAdapter } from './formats/adapter-writer.js';
import type { BaseModel } from './formats/base-model.js';
import { modelNameOrPath } from './formats/model-config.js';
import { createBlobOutputTarget, type OutputBlob } from './io/blob-output.js';
import { explainLoneHubWeights, type OpenedHubAdapter } from './io/hub-adapters.js';
import type { ByteSink, InputFileSet, OutputTarget } from './io/types.js';
import {
  BROWSER_FOLDER_ADVICE, checkBrowserDestination, checkBrowserSource, checkHubSource, openBrowserDestination, openBrowserOrHubSource,
  type MergeDestination, type MergeSource,
} from './merge.js';
import { badArgument, checkCallback, checkChoice, checkOptions, checkSignal, isFileSystemHandle, nearestName, shown } from './api-arguments.js';
import { checkAdapterList, isWeighted, type WeightedSource } from './pipeline/one-call-merge.js';
import type { ProgressListener } from './pipeline/progress.js';

export type { CombineMethod } from './adapter-ops/combine.js';
export type { MajoritySign } from './algebra/merge-rules.js';
export type { RankRule } from './algebra/rank-rules.js';
export type { ModuleReport } from './adapter-ops/op-common.js';

/** How `combineLoras` merges the adapters' updates (the CLI's `--method`). */
export const COMBINE_METHODS: readonly CombineMethod[] = ['cat', 'svd', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'];

/** What every adapter job takes besides its inputs and rule. */
export interface AdapterJobOptions {
  /**
   * `peft`: a folder (adapter_config.json + adapter_model.safetensors); `kohya`: one
   * `adapter.safetensors`. Default: kohya when an input adapter has kohya module names (they cannot
   * be written as PEFT paths), else PEFT.
   */
  format?: 'peft' | 'kohya';
  /** Where the files go: a picked folder (PEFT) or file (kohya), or any OutputTarget; omitted, Blobs come back. */
  out?: MergeDestination;
  /** `auto` (default: a hardware GPU, else the CPU), `webgpu` (or fail saying why) or `cpu`. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  /** WebGPU entry point; defaults to `navigator.gpu`. */
  gpu?: GPU;
  /** Cancels the job (a MergeError with code ABORTED, before anything is read if it already is); nothing is left at `out`. */
  signal?: AbortSignal;
  /** Called before each module and at the end. */
  onProgress?: ProgressListener;
}

/** Options of {@link combineLoras}. */
export interface CombineLorasOptions extends AdapterJobOptions {
  /**
   * The adapters, each a source or `{ source, weight }` (default weight 1; negative subtracts). A
   * Hugging Face Hub URL of a repository, `tree/` page or `adapter_model.safetensors` link is read
   * as its PEFT folder, as merge() reads it.
   */
  adapters: readonly (MergeSource | WeightedSource<MergeSource>)[];
  method: CombineMethod;
  /** Rank of every output module for all methods but `cat` (default: the largest input rank). */
  rank?: number;
  /** Fraction of each update kept by `ties`, `dare_*` and `magnitude_prune` (required by them), 0 < D ≤ 1. */
  density?: number;
  /** How `ties` and `dare_ties` elect each element's sign (default `total`). */
  majoritySign?: MajoritySign;
  /** Seeds DARE's random drops and the randomized SVD the element-wise rules end with (default 0); `cat` and `svd` draw nothing. */
  seed?: number;
  /** Clamps both output factors to ± this quantile of their values, 0 < Q ≤ 1 (kohya's and PEFT's clamp). */
  clampQuantile?: number;
}

/** Options of {@link resizeLora}. */
export interface ResizeLoraOptions extends AdapterJobOptions {
  /** The adapter; a Hugging Face Hub URL of a repository, `tree/` page or weights link is read as its PEFT folder. */
  adapter: MergeSource;
  /** `{ kind: 'rank', rank }`, or one of kohya's dynamic rules `{ kind: 'sv_ratio' | 'sv_fro' | 'sv_cumulative', value }`. */
  rule: RankRule;
}

/** Options of {@link extractLora}: exactly one of `rank` and `energy`. */
export interface ExtractLoraOptions extends AdapterJobOptions {
  /** The base model; a URL is of one file (a Hugging Face repository or `tree/` URL is refused: give one file's `resolve/` link). */
  base: MergeSource;
  /** The fine-tuned model, as `base` is given. */
  tuned: MergeSource;
  /** Rank of every extracted module. */
  rank?: number;
  /** Per module, the smallest rank keeping this fraction of ‖T − B‖²_F (0 < X ≤ 1, at most rank 512). */
  energy?: number;
  /** Seeds the randomized SVD's range finder (default 0). */
  seed?: number;
}

/** What an adapter job made. */
export interface AdapterJobOutcome {
  /** What was written: a PEFT folder or a kohya file. */
  format: 'peft' | 'kohya';
  /** Files written, relative to `out`. */
  files: string[];
  /** Per module: the rank written, the share of its update kept and the singular values it was chosen from. */
  modules: ModuleReport[];
  /** Things left out or without effect, in words. */
  warnings: string[];
  /** The files when `out` was omitted; otherwise empty. */
  blobs: OutputBlob[];
  /** What ran the algebra, in words. */
  backend: string;
}

/**
 * Combines several LoRA adapters into one: `cat` exactly (ranks concatenated), `svd` as the best
 * rank-k approximation of Σ wᵢ·sᵢ·ΔWᵢ, or PEFT's `ties`, `dare_linear`, `dare_ties`,
 * `magnitude_prune` on the full updates, then reduced by SVD.
 *
 * @example
 * const { blobs, modules } = await combineLoras({ adapters: [a, { source: b, weight: 0.5 }], method: 'svd', rank: 16 });
 */
export async function combineLoras(options: CombineLorasOptions): Promise<AdapterJobOutcome> {
  checkJobOptions('combineLoras', options, ['adapters', 'method', 'rank', 'density', 'majoritySign', 'seed', 'clampQuantile']);
  checkAdapterList(options.adapters, (source, what) => checkJobSource(what, source, true));
  const inputs = options.adapters.map((a) => (isWeighted(a) ? { source: a.source, weight: a.weight ?? 1 } : { source: a, weight: 1 }));
  const warnings = checkCombine(options);
  const adapters: ParsedAdapter[] = [];
  const hubAdapters: OpenedHubAdapter[] = [];
  try {
    for (const [i, input] of inputs.entries()) adapters.push(await openAdapter(await openJobSource(input.source, `adapters[${i}]`, true, hubAdapters, options.signal)));
    const format = adapterFormat(adapters, options.format);
    const outcome = await run('combine', options, format, (backend, signal) => combineAdapters(
      adapters.map((adapter, i) => ({ adapter, weight: inputs[i].weight })),
      {
        method: options.method, rank: options.rank, density: options.density, majoritySign: options.majoritySign,
        seed: options.seed, clampQuantile: options.clampQuantile, format,
      },
      backend, { signal, onProgress: options.onProgress }));
    outcome.warnings.unshift(...warnings);
    return outcome;
  } catch (e) {
    throw explainLoneHubWeights(e, hubAdapters);
  } finally {
    await Promise.all(adapters.map((a) => a.file.source.close()));
  }
}

/**
 * Gives every module of one adapter a new rank, as kohya's resize_lora does: a fixed rank or one of
 * its dynamic rules on the module's singular values; the new α keeps each module's scale.
 *
 * @example
 * const { blobs, modules } = await resizeLora({ adapter: loraFile, rule: { kind: 'sv_fro', value: 0.9 } });
 */
export async function resizeLora(options: ResizeLoraOptions): Promise<AdapterJobOutcome> {
  checkJobOptions('resizeLora', options, ['adapter', 'rule']);
  checkJobSource('adapter', options.adapter, true);
  checkRule(options.rule);
  const hubAdapters: OpenedHubAdapter[] = [];
  let adapter: ParsedAdapter | undefined;
  try {
    adapter = await openAdapter(await openJobSource(options.adapter, 'adapter', true, hubAdapters, options.signal));
    const opened = adapter;
    const format = adapterFormat([opened], options.format);
    return await run('resize', options, format, (backend, signal) => resizeAdapter(opened, options.rule, format, backend, { signal, onProgress: options.onProgress }));
  } catch (e) {
    throw explainLoneHubWeights(e, hubAdapters);
  } finally {
    await adapter?.file.source.close();
  }
}

/**
 * Extracts a LoRA whose B·A best approximates T − B for every module of a fine-tuned model T and
 * its base B (mergekit's extract_lora), streamed one module at a time; changed norms and
 * embeddings are saved whole (PEFT `modules_to_save`).
 *
 * @example
 * const { blobs, modules } = await extractLora({ base: baseFile, tuned: tunedFile, rank: 32 });
 */
export async function extractLora(options: ExtractLoraOptions): Promise<AdapterJobOutcome> {
  checkJobOptions('extractLora', options, ['base', 'tuned', 'rank', 'energy', 'seed']);
  checkJobSource('base', options.base, false);
  checkJobSource('tuned', options.tuned, false);
  if ((options.rank === undefined) === (options.energy === undefined)) throw badArgument('extract takes exactly one of rank and energy');
  if (options.rank !== undefined) positiveInteger('rank', options.rank);
  if (options.energy !== undefined) fraction('energy', options.energy);
  if (options.seed !== undefined) seedValue(options.seed);
  const baseFiles = await openJobSource(options.base, 'base', false, [], options.signal);
  const base = await openExtractModel(baseFiles);
  let tuned: BaseModel | undefined;
  try {
    tuned = await openExtractModel(await openJobSource(options.tuned, 'tuned', false, [], options.signal));
    const t = tuned;
    const format = options.format ?? 'peft';
    const baseModelName = await modelNameOrPath(baseFiles);
    return await run('extract', options, format, (backend, signal) => extractAdapter(base, t,
      { rank: options.rank, energy: options.energy, seed: options.seed, format, baseModelName }, backend, { signal, onProgress: options.onProgress }));
  } finally {
    await base.close();
    await tuned?.close();
  }
}

/**
 * A job's source checked as merge() checks one: what checkBrowserSource refuses, and, before any
 * request, a Hugging Face page it cannot be (checkHubSource): a `blob/` page, and a repository or
 * `tree/` page unless `adapter` (then it is the adapter's PEFT folder).
 */
function checkJobSource(what: string, source: unknown, adapter: boolean): void {
  checkBrowserSource(what, source);
  checkHubSource(source, { what, adapter, folderAdvice: BROWSER_FOLDER_ADVICE }, undefined);
}

/**
 * Opens a job's source (`what` its argument) as merge() opens one (openBrowserOrHubSource, no
 * token): an adapter's Hub URL as its PEFT folder, noted in `opened`; anything else as one model.
 */
function openJobSource(
  source: MergeSource, what: string, adapter: boolean, opened: OpenedHubAdapter[], signal: AbortSignal | undefined,
): Promise<InputFileSet> {
  const use = { what, adapter, folderAdvice: BROWSER_FOLDER_ADVICE };
  return openBrowserOrHubSource(source, adapter ? 'adapter' : 'base', use, opened, signal);
}

/** Output, backend, the operation, then the files; a failure or cancel aborts the output. */
async function run(
  command: string, options: AdapterJobOptions, format: OutputFormat,
  make: (backend: AlgebraBackend, signal: AbortSignal | undefined) => Promise<OpResult>,
): Promise<AdapterJobOutcome> {
  if (format !== 'peft' && format !== 'kohya') throw badArgument(`format must be peft or kohya, not "${String(format)}"`);
  if (format === 'peft' && isFileSystemHandle(options.out, 'file')) {
    throw badArgument('a PEFT adapter is a folder (adapter_config.json + adapter_model.safetensors): give a folder, or ask for the kohya format');
  }
  const memory = options.out === undefined ? createBlobOutputTarget(command) : undefined;
  const files: string[] = [];
  const output = recording(memory ?? openBrowserDestination(options.out!), files);
  let backend: AlgebraBackend | undefined;
  try {
    backend = await createAlgebraBackend(options.backend ?? 'auto', options.gpu ?? getBrowserGpu());
    const result = await make(backend, options.signal);
    if (options.signal?.aborted) throw new MergeError('ABORTED', `${command} cancelled`);
    await writeAdapter(output, result.adapter);
    await output.commit();
    return { format, files, modules: result.report, warnings: result.warnings.slice(), blobs: memory?.files() ?? [], backend: backend.description };
  } catch (e) {
    await output.abort();
    if (isMergeError(e) && e.code === 'ABORTED') throw new MergeError('ABORTED', `${command} cancelled`, { cause: e });
    throw e;
  } finally {
    backend?.dispose();
  }
}

/** The target, noting each file's path as it is created. */
function recording(target: OutputTarget, paths: string[]): OutputTarget {
  return {
    name: target.name,
    createFile: (path: string): Promise<ByteSink> => {
      paths.push(path);
      return target.createFile(path);
    },
    commit: () => target.commit(),
    abort: () => target.abort(),
  };
}

function adapterFormat(adapters: readonly ParsedAdapter[], wanted: OutputFormat | undefined): OutputFormat {
  const kohya = kohyaNamedAdapter(adapters);
  if (wanted === 'peft' && kohya) {
    throw badArgument(`${kohya.name}: a kohya adapter's module names (lora_unet_…) cannot be written as a PEFT folder; ask for the kohya format`);
  }
  return wanted ?? (kohya ? 'kohya' : 'peft');
}

/** What every job takes besides its own options: `own` are the job's option names. */
function checkJobOptions(job: string, options: AdapterJobOptions, own: readonly string[]): void {
  checkOptions(`${job} options`, options, [...own, 'format', 'out', 'backend', 'gpu', 'signal', 'onProgress'], { outPath: 'did you mean "out"?' });
  checkChoice('format', options.format, ['peft', 'kohya']);
  checkChoice('backend', options.backend, ['auto', 'webgpu', 'cpu']);
  checkBrowserDestination(options.out);
  checkSignal('signal', options.signal);
  checkCallback('onProgress', options.onProgress);
  if (options.signal?.aborted) throw new MergeError('ABORTED', `${job.replace(/Loras?$/, '').toLowerCase()} cancelled`);
}

/** The method and its options (the adapters and weights are checked by checkAdapterList); the warnings of options without effect. */
function checkCombine(options: CombineLorasOptions): string[] {
  const method = options.method;
  if (!COMBINE_METHODS.includes(method)) {
    const near = typeof method === 'string' ? nearestName(method, COMBINE_METHODS) : undefined;
    throw badArgument(`method must be one of ${COMBINE_METHODS.join(', ')}, not ${shown(method)}${near ? ` (did you mean "${near}"?)` : ''}`);
  }
  if (options.rank !== undefined) positiveInteger('rank', options.rank);
  if (options.density !== undefined) fraction('density', options.density);
  if (options.clampQuantile !== undefined) fraction('clampQuantile', options.clampQuantile);
  if (options.seed !== undefined) seedValue(options.seed);
  if (options.majoritySign !== undefined && options.majoritySign !== 'total' && options.majoritySign !== 'frequency') {
    throw badArgument(`majoritySign must be total or frequency, not "${String(options.majoritySign)}"`);
  }
  const pruning = method === 'ties' || method === 'magnitude_prune' || method.startsWith('dare');
  if (pruning && options.density === undefined) throw badArgument(`method ${method} needs a density (the fraction of each update kept, 0 < D ≤ 1)`);
  return optionsWithoutEffect(options).map(({ option, why }) => `${option} has no effect with method ${method}${why}`);
}

function checkRule(rule: RankRule): void {
  switch (rule?.kind) {
    case 'rank': return void positiveInteger('rank', rule.rank);
    case 'sv_ratio':
      if (typeof rule.value !== 'number' || !Number.isFinite(rule.value) || rule.value <= 0) throw badArgument(`sv_ratio must be a positive number, not ${valueText(rule.value)}`);
      return;
    case 'sv_fro':
    case 'sv_cumulative': return void fraction(rule.kind, rule.value);
    default: throw badArgument('rule must be { kind: "rank", rank } or { kind: "sv_ratio" | "sv_fro" | "sv_cumulative", value }');
  }
}

function positiveInteger(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) throw badArgument(`${name} must be a positive integer, not ${valueText(n)}`);
}

function fraction(name: string, x: number): void {
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0 || x > 1) throw badArgument(`${name} must be a number in (0, 1], not ${valueText(x)}`);
}

function seedValue(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw badArgument(`seed must be a non-negative integer, not ${valueText(n)}`);
}

/** A number as it is; anything else as what it is (`the string "4"`), so "not 4" never hides a string. */
function valueText(x: unknown): string {
  return typeof x === 'number' && !Number.isNaN(x) ? String(x) : shown(x);
}

