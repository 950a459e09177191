/**
 * The adapter jobs (combine, resize, extract, convert: LoRA to LoRA in one call) shared by the browser and
 * Node entry points: check every option, open the sources, run the adapter algebra, write a PEFT
 * folder or a kohya file into `out` (or Blobs), or, where the entry point's `out` says so (Node's
 * `.gguf` paths), a llama.cpp LoRA GGUF as the command line does (gguf-base.ts renames PEFT
 * modules onto a `base`; convert runs no algebra), and release everything; a failure or a cancel
 * leaves nothing at `out`. The rules are the command line's (`loramerge combine`, `resize`,
 * `extract`). The entry points differ only in what a source or an output may be, how the token and
 * the GPU are found (Node adds paths, the Hugging Face token and Dawn), supplied here as hooks.
 */
import { combineAdapters, optionsWithoutEffect, type CombineMethod } from './combine.js';
import { extractAdapter, openExtractModel } from './extract.js';
import { checkConvertedFactors, convertAdapter, convertedShapes, GGUF_OUT_TYPES, ggufLoraCardOf, type GgufOutType } from './convert.js';
import { checkGgufLoraForBase } from './gguf-lora-names.js';
import { checkGgufBase, openGgufBase, renameFor, type GgufBase } from './gguf-base.js';
import { checkFormatFits, kohyaNamedAdapter, type OutputFormat } from './module-updates.js';
import { collectModules, openJobAdapter, type GrownRows, type ModuleReport, type OpResult } from './op-common.js';
import { resizeAdapter } from './resize.js';
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import type { MajoritySign } from '../algebra/merge-rules.js';
import type { RankRule } from '../algebra/rank-rules.js';
import { asCancel, isMergeError, MergeError } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { inLibraryWords, libraryWording } from '../library-wording.js';
import { inlineText, printable } from '../shown-text.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import { writeAdapter } from '../formats/adapter-writer.js';
import type { BaseModel } from '../formats/base-model.js';
import { modelNameOrPath } from '../formats/model-config.js';
import { createBlobOutputTarget, type OutputBlob } from '../io/blob-output.js';
import type { ByteSink, InputFileSet, OutputTarget } from '../io/types.js';
import type { MergeDestination, MergeSource } from '../merge.js';
import { badArgument, checkCallback, checkChoice, checkOptions, checkSignal, checkThreadCount, isFileSystemHandle, nearestName, shown } from '../api-arguments.js';
import { checkAdapterList, isWeighted, type WeightedSource } from '../pipeline/one-call-merge.js';
import type { ProgressListener } from '../pipeline/progress.js';

/** How `combineLoras` merges the adapters' updates (the CLI's `--method`). */
export const COMBINE_METHODS: readonly CombineMethod[] = ['cat', 'svd', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'];

/** What every adapter job takes besides its inputs and rule; `Out` is what the entry point writes to. */
export interface AdapterJobOptions<Out = MergeDestination> {
  /**
   * `peft`: a folder (adapter_config.json + adapter_model.safetensors); `kohya`: one
   * `adapter.safetensors`. Default: kohya when an input adapter has kohya module names (they cannot
   * be written as PEFT paths), else PEFT; from `loramerge/node`, an `out` path decides it.
   */
  format?: 'peft' | 'kohya';
  /** Where the files go: a picked folder (PEFT) or file (kohya), or any OutputTarget; omitted, Blobs come back. */
  out?: Out;
  /** `auto` (default: a hardware GPU, else the CPU), `webgpu` (or fail saying why) or `cpu`. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  /** WebGPU entry point; defaults to `navigator.gpu` (from `loramerge/node`, Dawn's, from the optional `webgpu` package). */
  gpu?: GPU;
  /**
   * Threads of the algebra's large products on the CPU, an integer from 1 to 1024 (`MAX_THREADS`;
   * the command line's `--threads`). Default: one per core, at most 8; each thread adds about
   * 14 MiB of memory. 1 runs every product on the calling thread, and `backend` then says
   * `1 thread`. On WebGPU they run the products the device cannot bind (a row, Y or output larger
   * than its largest storage binding). From `loramerge/node` they are worker threads, the calling one included; in a
   * page or worker, Web Workers, only where the context is cross-origin isolated (elsewhere one
   * thread, and `backend` says why). The output's bytes are the same for any count.
   */
  threads?: number;
  /**
   * Cancels the job: a MergeError of code ABORTED, named `'AbortError'` (as a cancelled fetch is),
   * whose `cause` is the signal's reason; before anything is read if it already is. Nothing is left at `out`.
   */
  signal?: AbortSignal;
  /** Called before each module and at the end. */
  onProgress?: ProgressListener;
  /**
   * A Hugging Face token for URL sources in gated or private repositories, sent as merge()'s
   * `hfToken` is: only over https to huggingface.co and hf.co, never to another host nor past a
   * redirect to one. Left out or `false`, none is sent from the browser entry; `loramerge/node`
   * then finds one as huggingface_hub does (HF_TOKEN, `hf auth login`'s token).
   */
  hfToken?: string | false;
}

/** Options of `combineLoras`. */
export interface CombineLorasOptions<Out = MergeDestination> extends AdapterJobOptions<Out> {
  /**
   * The adapters, each a source or `{ source, weight }` (default weight 1; negative subtracts). A
   * Hugging Face Hub URL of a repository, `tree/` page or `adapter_model.safetensors` link is read
   * as its PEFT folder, as merge() reads it.
   */
  adapters: readonly (MergeSource | WeightedSource<MergeSource>)[];
  /** How the updates are merged: see {@link COMBINE_METHODS}. */
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
  /** {@inheritDoc ResizeLoraOptions.base} */
  base?: MergeSource;
}

/** Options of `resizeLora`. */
export interface ResizeLoraOptions<Out = MergeDestination> extends AdapterJobOptions<Out> {
  /** The adapter; a Hugging Face Hub URL of a repository, `tree/` page or weights link is read as its PEFT folder. */
  adapter: MergeSource;
  /**
   * `{ kind: 'rank', rank }`, or one of kohya's dynamic rules `{ kind: 'sv_ratio' | 'sv_fro' |
   * 'sv_cumulative', value, maxRank? }`: `maxRank` caps the rank the rule chooses (kohya's
   * --new_rank beside --dynamic_method); without it a module keeps at most its own rank.
   */
  rule: RankRule;
  /**
   * The model a llama.cpp LoRA GGUF of PEFT adapters is for (the command line's `--base`; only with
   * an `out` ending in `.gguf`, from `loramerge/node`): a GGUF model (one part of a split one
   * standing for all) or a Hugging Face safetensors folder, read for its tensor names and head
   * counts only. The output's modules are renamed onto its tensors as llama.cpp's
   * convert_lora_to_gguf.py names them. GGUF LoRA inputs need none.
   */
  base?: MergeSource;
}

/** Options of `convertLora` (`loramerge/node`): one PEFT adapter written as a llama.cpp LoRA GGUF. */
export interface ConvertLoraOptions<Out = MergeDestination> {
  /** The PEFT adapter; a Hugging Face Hub URL of a repository, `tree/` page or weights link is read as its PEFT folder. */
  adapter: MergeSource;
  /** {@inheritDoc ResizeLoraOptions.base} */
  base: MergeSource;
  /** Where the GGUF goes: a path ending in `.gguf` (the command line's `--out`), replaced if it exists, written only once the job succeeded. */
  out: Out;
  /** {@inheritDoc AdapterJobOptions.signal} */
  signal?: AbortSignal;
  /** {@inheritDoc AdapterJobOptions.onProgress} */
  onProgress?: ProgressListener;
  /** {@inheritDoc AdapterJobOptions.hfToken} */
  hfToken?: string | false;
  /**
   * The factors' type, as convert_lora_to_gguf.py's `--outtype` (the command line's): `f32` (the
   * default, as there), `f16`, `bf16`, `q8_0` (each tensor whose rows are not whole 32-value
   * blocks, most lora_b, in f16), or `auto` (bf16 or f16 as the adapter's first 16-bit pair, else f16).
   */
  outtype?: GgufOutType;
}

/** Options of `extractLora`: exactly one of `rank` and `energy`. */
export interface ExtractLoraOptions<Out = MergeDestination> extends AdapterJobOptions<Out> {
  /** The base model; a URL is of one file (a Hugging Face repository or `tree/` URL is refused: give one file's `resolve/` link). */
  base: MergeSource;
  /** The fine-tuned model, as `base` is given. */
  tuned: MergeSource;
  /** Rank of every extracted module. Give this or `energy`: exactly one of them. */
  rank?: number;
  /** Per module, the smallest rank keeping this fraction of ‖T − B‖²_F (0 < X ≤ 1, at most rank 512). Give this or `rank`: exactly one of them. */
  energy?: number;
  /** Seeds the randomized SVD's range finder (default 0). */
  seed?: number;
}

/** What an adapter job made. */
export interface AdapterJobOutcome {
  /** What was written: a PEFT folder, a kohya file or (from `loramerge/node`) a llama.cpp LoRA GGUF. */
  format: 'peft' | 'kohya' | 'gguf';
  /** Files written, relative to `out`. */
  files: string[];
  /** Per module: the rank written, the share of its update kept and the singular values it was chosen from. */
  modules: ModuleReport[];
  /** Things left out or without effect, in words. */
  warnings: string[];
  /**
   * Extract: embeddings saved whole with more rows than the base's (a vocabulary grown for added
   * tokens; a warning says it too): the adapter loads only on a base resized the same way. Empty otherwise.
   */
  grownRows: GrownRows[];
  /** The files when `out` was omitted; otherwise empty. */
  blobs: OutputBlob[];
  /** What ran the algebra, in words. */
  backend: string;
}

/** An `out` that fixes the format written (a Node path), and what to do where a kohya input cannot go there. */
export interface FixedFormat {
  format: OutputFormat;
  /** How to ask for a kohya file instead (`give out a .safetensors name instead of lora/`). */
  kohyaAdvice: string;
}

/** How an entry point checks and opens what it accepts, one set of hooks per call. */
export interface AdapterJobHooks<Out> {
  /** Options this entry point takes beyond the shared ones (Node's `hfToken`, `overwrite`), and their check. */
  moreOptions?: { names: readonly string[]; check(options: Readonly<Record<string, unknown>>): void };
  /**
   * Throws BAD_ARGUMENT, naming `what` (`adapters[1]`, `base`), for a source this entry point
   * cannot open (as an adapter where `adapter`), before any is opened.
   */
  checkSource(source: unknown, what: string, adapter: boolean): void;
  /** Throws BAD_ARGUMENT for an `out` this entry point cannot write to, or that contradicts `format` (undefined is fine). */
  checkOutput(out: unknown, format: 'peft' | 'kohya' | undefined): void;
  /** The format an `out` fixes, where it does. */
  fixedFormat?(out: Out): FixedFormat | undefined;
  /**
   * Refuses, before any source is opened, an `out` (checked by checkOutput) whose place cannot take
   * the output (Node: a path whose folder does not exist or cannot be written); creates nothing.
   */
  checkOutputPlace?(out: Out): Promise<void>;
  /** Opens a checked source; `signal` cancels its requests where it makes any. */
  openSource(source: MergeSource, what: string, adapter: boolean, signal: AbortSignal | undefined): Promise<InputFileSet>;
  /** Opens `out` for `format` (`command` names the job in refusals: combine, resize, extract, convert). */
  openOutput(out: Out, format: OutputFormat, command: string): Promise<OutputTarget>;
  /**
   * The algebra's backend for `kind`; `gpu`, where the caller gave one, is the WebGPU to use;
   * `threads`, where given (checked), the CPU's threads, on its own or beside the GPU.
   */
  createAlgebra(kind: 'auto' | 'webgpu' | 'cpu', gpu: GPU | undefined, threads: number | undefined): Promise<AlgebraBackend>;
  /** An error of the job as the caller is to see it (a Hub adapter's weights read without their config explained). */
  explainError?(e: unknown): unknown;
}

/** {@link combineLorasJob}, its messages as the engine words them (the command line's options). */
async function combineLorasUnworded<Out>(options: CombineLorasOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  checkJobOptions('combineLoras', options, ['adapters', 'method', 'rank', 'density', 'majoritySign', 'seed', 'clampQuantile', 'base'], hooks);
  checkAdapterList(options.adapters, (source, what) => hooks.checkSource(source, what, true));
  if (options.base !== undefined) hooks.checkSource(options.base, 'base', false);
  const inputs = options.adapters.map((a) => (isWeighted(a) ? { source: a.source, weight: a.weight ?? 1 } : { source: a, weight: 1 }));
  const warnings = checkCombine(options);
  await checkOutputPlace(options, hooks);
  const adapters: ParsedAdapter[] = [];
  let base: GgufBase | undefined;
  // Opening a large adapter is seconds of header and module parse: the signal is looked at between them.
  const pacer = new Pacer(options.signal);
  try {
    for (const [i, input] of inputs.entries()) adapters.push(await openJobAdapter(await hooks.openSource(input.source, `adapters[${i}]`, true, options.signal), 'combineLoras', pacer));
    const format = adapterFormat(adapters, options, hooks);
    base = await openJobBase('combine', options, hooks, format, adapters);
    const opFormat = base ? 'peft' : format;
    const renamed = renameFor(base, sourceName(options.base), 'combine');
    const outcome = await run('combine', options, hooks, format, async (backend, signal) => renamed(await combineAdapters(
      adapters.map((adapter, i) => ({ adapter, weight: inputs[i].weight })),
      {
        method: options.method, rank: options.rank, density: options.density, majoritySign: options.majoritySign,
        seed: options.seed, clampQuantile: options.clampQuantile, format: opFormat,
      },
      backend, { signal, onProgress: options.onProgress })));
    outcome.warnings.unshift(...warnings);
    return outcome;
  } catch (e) {
    throw explained(e, hooks);
  } finally {
    await Promise.all(adapters.map((a) => a.file.source.close()));
    await base?.model.close();
  }
}

/** {@link resizeLoraJob}, its messages as the engine words them. */
async function resizeLoraUnworded<Out>(options: ResizeLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  checkJobOptions('resizeLora', options, ['adapter', 'rule', 'base'], hooks);
  hooks.checkSource(options.adapter, 'adapter', true);
  if (options.base !== undefined) hooks.checkSource(options.base, 'base', false);
  checkRule(options.rule);
  await checkOutputPlace(options, hooks);
  let adapter: ParsedAdapter | undefined;
  let base: GgufBase | undefined;
  // Opening a large adapter is seconds of header and module parse: the signal is looked at between them.
  const pacer = new Pacer(options.signal);
  try {
    adapter = await openJobAdapter(await hooks.openSource(options.adapter, 'adapter', true, options.signal), 'resizeLora', pacer);
    const opened = adapter;
    const format = adapterFormat([opened], options, hooks);
    base = await openJobBase('resize', options, hooks, format, [opened]);
    const opFormat = base ? 'peft' : format;
    const renamed = renameFor(base, sourceName(options.base), 'resize');
    return await run('resize', options, hooks, format, async (backend, signal) => renamed(await resizeAdapter(opened, options.rule, opFormat, backend, { signal, onProgress: options.onProgress })));
  } catch (e) {
    throw explained(e, hooks);
  } finally {
    await adapter?.file.source.close();
    await base?.model.close();
  }
}

/** {@link convertLoraJob}, its messages as the engine words them. */
async function convertLoraUnworded<Out>(options: ConvertLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  // out is one .gguf file, replaced where one is (only a PEFT folder takes overwrite).
  const more = (hooks.moreOptions?.names ?? []).filter((n) => n !== 'overwrite');
  checkOptions('convertLora options', options, ['adapter', 'base', 'out', 'outtype', 'signal', 'onProgress', ...more], {
    outPath: 'did you mean "out"?',
    overwrite: 'convertLora writes one .gguf file, which replaces a file already at out once the job succeeded; leave out overwrite (it is for the PEFT folders combineLoras and resizeLora write)',
    outType: 'did you mean "outtype"?',
  });
  hooks.moreOptions?.check(options as unknown as Readonly<Record<string, unknown>>);
  checkChoice('outtype', options.outtype, GGUF_OUT_TYPES);
  const outtype = options.outtype ?? 'f32';
  if (options.out === undefined) throw badArgument('convertLora needs out, a path ending in .gguf (the llama.cpp LoRA GGUF it writes)');
  hooks.checkOutput(options.out, undefined);
  if (fixedFormat(options, hooks)?.format !== 'gguf') throw badArgument(`out ${typeof options.out === 'string' ? `"${options.out}"` : shown(options.out)}: convertLora writes a llama.cpp LoRA GGUF; give out a path ending in .gguf`);
  checkSignal('signal', options.signal);
  checkCallback('onProgress', options.onProgress);
  if (options.signal?.aborted) throw new MergeError('ABORTED', 'convert cancelled', { cause: options.signal.reason });
  hooks.checkSource(options.adapter, 'adapter', true);
  if (options.base === undefined) throw badArgument('convertLora needs base, the GGUF model (or Hugging Face safetensors folder) the LoRA is for');
  hooks.checkSource(options.base, 'base', false);
  await checkOutputPlace(options, hooks);
  let adapter: ParsedAdapter | undefined;
  let base: GgufBase | undefined;
  const pacer = new Pacer(options.signal);
  try {
    const files = await hooks.openSource(options.adapter, 'adapter', true, options.signal);
    adapter = await openJobAdapter(files, 'convert', pacer);
    const opened = adapter;
    // What no base could change, said before the base is read (the page says it on pick).
    convertAdapterProblems(opened);
    const card = await ggufLoraCardOf(files);
    base = await openJobBase('convert', options, hooks, 'gguf', [opened]);
    checkFormatFits([opened], 'peft', String(options.out), LIBRARY_CONVERT_ADVICE);
    const renamed = renameFor(base, sourceName(options.base), 'convert');
    // convert runs no algebra: its factors are written as they are.
    return await run('convert', options, hooks, 'gguf', async (_backend, signal) => renamed(await convertAdapter(opened, 'peft', { signal, onProgress: options.onProgress }, outtype, card)), false);
  } catch (e) {
    throw explained(e, hooks);
  } finally {
    await adapter?.file.source.close();
    await base?.model.close();
  }
}

/**
 * Refuses an adapter that convert cannot take whatever the model: a llama.cpp LoRA (nothing to
 * convert), kohya module names (mapped to no llama.cpp tensor), a module that is no low-rank
 * product of factors (DoRA, LoHa, OFT, a bias update …). The engine's words.
 */
function convertAdapterProblems(adapter: ParsedAdapter): void {
  checkGgufBase({ command: 'convert', base: 'base' }, 'gguf', [adapter]);
  collectModules([adapter], 'peft', 'convert');
}

/**
 * {@link convertLoraJob}'s refusal of `adapter` where no model could make it convertible, in the
 * call's words (the same line the job throws); the page runs it when an adapter is picked.
 */
export function checkConvertAdapter(adapter: ParsedAdapter): void {
  try {
    convertAdapterProblems(adapter);
  } catch (e) {
    throw inLibraryWords(e);
  }
}

/**
 * {@link convertLoraJob}'s refusals of `adapter` and of the files picked with it where no model
 * could change them, in its order, before any model is read: {@link checkConvertAdapter}'s, then a
 * README.md, config.json or generation_config.json beside it that convert reads whole for the
 * general.* keys and stops on (not UTF-8, past MAX_CONFIG_BYTES). `files`: the adapter's set, as
 * the conversion is given it. The engine's words.
 */
export async function checkConvertInputs(adapter: ParsedAdapter, files: InputFileSet): Promise<void> {
  checkConvertAdapter(adapter);
  try {
    await ggufLoraCardOf(files);
  } catch (e) {
    throw inLibraryWords(e);
  }
}

/**
 * {@link convertLoraJob}'s refusal of a factor of `adapter` holding NaN or Inf (or of factors too
 * large for f32): every factor the conversion writes read as it reads them, no model needed. The
 * page runs it on pick for an adapter whose factors are small enough to read then. The engine's words.
 */
export async function checkConvertFactors(adapter: ParsedAdapter, signal?: AbortSignal): Promise<void> {
  try {
    await checkConvertedFactors(adapter, signal);
  } catch (e) {
    throw inLibraryWords(e);
  }
}

/**
 * {@link convertLoraJob}'s refusals of `adapter` on the model `base` (opened as the job opens it,
 * gguf-base.ts openGgufBase; `baseName` names it as the job's base): a module the model has no
 * tensor for or whose update does not fit it (an adapter for another model), a module or tensor a
 * llama.cpp LoRA cannot hold there. Known from the adapter's header and the model's, before a
 * factor is read: the page runs it once both are picked. The library's words, the job's line.
 */
export function checkConvertOnModel(adapter: ParsedAdapter, base: GgufBase, baseName: string): void {
  try {
    checkConvertAdapter(adapter);
    checkGgufLoraForBase(convertedShapes(adapter), base.named, baseName, 'convert');
  } catch (e) {
    throw inLibraryWords(e);
  }
}

/** checkFormatFits' way to write a PEFT adapter as a llama.cpp LoRA, in calls (the command line's names its options). */
const LIBRARY_CONVERT_ADVICE = (name: string): string => `convertLora({ adapter: "${name}", base: "MODEL.gguf", out: "${name}.gguf" })`;

/** What a base is called in refusals: a path or URL as given, a File's name. */
function sourceName(source: unknown): string | undefined {
  if (source === undefined) return undefined;
  if (typeof source === 'string') return source;
  const name = typeof source === 'object' && source !== null ? (source as { name?: unknown }).name : undefined;
  return typeof name === 'string' ? name : 'base';
}

/**
 * A job's `base` (gguf-base.ts, as the command line's `--base`): refused where it cannot serve, else
 * opened; then the inputs checked against the GGUF output. None without `base`.
 */
async function openJobBase<Out>(
  command: string, options: { base?: MergeSource; out?: Out; signal?: AbortSignal }, hooks: AdapterJobHooks<Out>, format: OutputFormat, adapters: readonly ParsedAdapter[],
): Promise<GgufBase | undefined> {
  let base: GgufBase | undefined;
  if (options.base !== undefined) {
    const name = sourceName(options.base)!;
    checkGgufBase({ command, base: name }, format, adapters);
    base = await openGgufBase(await hooks.openSource(options.base, 'base', false, options.signal), name);
  }
  try {
    if (format === 'gguf') checkFormatFits(adapters, base ? 'peft' : format, String(options.out), LIBRARY_CONVERT_ADVICE);
    return base;
  } catch (e) {
    await base?.model.close();
    throw e;
  }
}

/** {@link extractLoraJob}, its messages as the engine words them. */
async function extractLoraUnworded<Out>(options: ExtractLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  checkJobOptions('extractLora', options, ['base', 'tuned', 'rank', 'energy', 'seed'], hooks);
  hooks.checkSource(options.base, 'base', false);
  hooks.checkSource(options.tuned, 'tuned', false);
  if ((options.rank === undefined) === (options.energy === undefined)) {
    const given = options.rank === undefined ? 'neither was given' : 'not both';
    throw badArgument(`extractLora takes exactly one of rank (every module's rank) and energy (the share of ‖T − B‖²_F each module keeps), such as rank: 32 or energy: 0.9; ${given}`);
  }
  if (options.rank !== undefined) positiveInteger('rank', options.rank);
  if (options.energy !== undefined) fraction('energy', options.energy);
  if (options.seed !== undefined) seedValue(options.seed);
  await checkOutputPlace(options, hooks);
  // A base of hundreds of shards is seconds of headers: the signal is looked at between them.
  const pacer = new Pacer(options.signal);
  const baseFiles = await hooks.openSource(options.base, 'base', false, options.signal);
  const base = await openExtractModel(baseFiles, pacer);
  let tuned: BaseModel | undefined;
  try {
    tuned = await openExtractModel(await hooks.openSource(options.tuned, 'tuned', false, options.signal), pacer);
    const t = tuned;
    const format = options.format ?? fixedFormat(options, hooks)?.format ?? 'peft';
    const baseModelName = await modelNameOrPath(baseFiles);
    return await run('extract', options, hooks, format, (backend, signal) => extractAdapter(base, t,
      { rank: options.rank, energy: options.energy, seed: options.seed, format, baseModelName }, backend, { signal, onProgress: options.onProgress }));
  } catch (e) {
    throw explained(e, hooks);
  } finally {
    await base.close();
    await tuned?.close();
  }
}

/**
 * Combines several LoRA adapters into one (the entry points' `combineLoras`), opening and writing
 * through `hooks`; its errors and warnings name the call's options (library-wording.ts).
 */
export function combineLorasJob<Out>(options: CombineLorasOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  return inCallWords(combineLorasUnworded(options, hooks), 'combine', options);
}

/** Gives every module of one adapter a new rank (the entry points' `resizeLora`), through `hooks`, in the call's words. */
export function resizeLoraJob<Out>(options: ResizeLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  return inCallWords(resizeLoraUnworded(options, hooks), 'resize', options);
}

/** Writes one PEFT adapter as a llama.cpp LoRA GGUF for a base (the Node entry's `convertLora`), through `hooks`, in the call's words. */
export function convertLoraJob<Out>(options: ConvertLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  return inCallWords(convertLoraUnworded(options, hooks), 'convert', options);
}

/** Extracts a LoRA from a fine-tuned model and its base (the entry points' `extractLora`), through `hooks`, in the call's words. */
export function extractLoraJob<Out>(options: ExtractLoraOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<AdapterJobOutcome> {
  return inCallWords(extractLoraUnworded(options, hooks), 'extract', options);
}

/**
 * A job's outcome and refusal in the library's words: the engine's messages name the command
 * line's options. A cancel, wherever it stopped (a URL read included), is `<command> cancelled`
 * with the signal's reason as its cause (asCancel).
 */
async function inCallWords(job: Promise<AdapterJobOutcome>, command: string, options: { signal?: unknown }): Promise<AdapterJobOutcome> {
  try {
    const outcome = await job;
    // Each warning one printable line, as merge()'s are: the module names they quote come from the files.
    return { ...outcome, warnings: outcome.warnings.map((w) => printable(inlineText(libraryWording(w)))) };
  } catch (e) {
    const signal = typeof options === 'object' && options !== null && options.signal instanceof AbortSignal ? options.signal : undefined;
    throw asCancel(inLibraryWords(e), signal, `${command} cancelled`);
  }
}

/** The hooks' checkOutputPlace for a given `out`, once every option is checked and before any source is opened. */
async function checkOutputPlace<Out>(options: AdapterJobOptions<Out>, hooks: AdapterJobHooks<Out>): Promise<void> {
  if (options.out !== undefined) await hooks.checkOutputPlace?.(options.out);
}

function explained(e: unknown, hooks: AdapterJobHooks<unknown>): unknown {
  return hooks.explainError ? hooks.explainError(e) : e;
}

function fixedFormat<Out>(options: AdapterJobOptions<Out>, hooks: AdapterJobHooks<Out>): FixedFormat | undefined {
  return options.out === undefined ? undefined : hooks.fixedFormat?.(options.out);
}

/** Output, backend, the operation, then the files; a failure or cancel aborts the output. */
async function run<Out>(
  command: string, options: AdapterJobOptions<Out>, hooks: AdapterJobHooks<Out>, format: OutputFormat,
  make: (backend: AlgebraBackend, signal: AbortSignal | undefined) => Promise<OpResult>, algebra = true,
): Promise<AdapterJobOutcome> {
  // gguf only where the entry point's `out` fixes it (a Node path ending in .gguf).
  if (format !== 'peft' && format !== 'kohya' && !(format === 'gguf' && fixedFormat(options, hooks)?.format === 'gguf')) throw badArgument(`format must be peft or kohya, not "${String(format)}"`);
  if (format === 'peft' && isFileSystemHandle(options.out, 'file')) {
    throw badArgument('a PEFT adapter is a folder (adapter_config.json + adapter_model.safetensors): give a folder, or ask for the kohya format');
  }
  const memory = options.out === undefined ? createBlobOutputTarget(command) : undefined;
  const files: string[] = [];
  const output = recording(memory ?? await hooks.openOutput(options.out!, format, command), files);
  let backend: AlgebraBackend | undefined;
  try {
    if (algebra) backend = await hooks.createAlgebra(options.backend ?? 'auto', options.gpu, options.threads);
    // No backend only where `algebra` is false, whose `make` (convert's) uses none.
    const result = await make(backend as AlgebraBackend, options.signal);
    if (options.signal?.aborted) throw new MergeError('ABORTED', `${command} cancelled`, { cause: options.signal.reason });
    // A cancel while it writes stops the writing, and one after it keeps the output from being committed.
    await writeAdapter(output, result.adapter, options.signal);
    if (options.signal?.aborted) throw new MergeError('ABORTED', `${command} cancelled`, { cause: options.signal.reason });
    await output.commit();
    return { format, files, modules: result.report, warnings: result.warnings.slice(), grownRows: result.grownRows?.slice() ?? [], blobs: memory?.files() ?? [], backend: backend?.description ?? 'none (no algebra runs)' };
  } catch (e) {
    await output.abort();
    // As merge(): a cancel's cause is the signal's reason; another ABORTED keeps the error it came from.
    if (isMergeError(e) && e.code === 'ABORTED') throw new MergeError('ABORTED', `${command} cancelled`, { cause: options.signal?.aborted ? options.signal.reason : e });
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

/**
 * The format combine and resize write: the one asked for, else the one `out` fixes, else kohya
 * where an input has kohya module names (they cannot be written as PEFT paths), else PEFT.
 */
function adapterFormat<Out>(adapters: readonly ParsedAdapter[], options: AdapterJobOptions<Out>, hooks: AdapterJobHooks<Out>): OutputFormat {
  const kohya = kohyaNamedAdapter(adapters);
  const fixed = fixedFormat(options, hooks);
  const wanted = options.format ?? fixed?.format;
  if (wanted === 'peft' && kohya) {
    const advice = options.format === undefined && fixed ? fixed.kohyaAdvice : 'ask for the kohya format';
    throw badArgument(`${kohya.name}: a kohya adapter's module names (lora_unet_…) cannot be written as a PEFT folder; ${advice}`);
  }
  return wanted ?? (kohya ? 'kohya' : 'peft');
}

/** What every job takes besides its own options: `own` are the job's option names. */
function checkJobOptions<Out>(job: string, options: AdapterJobOptions<Out>, own: readonly string[], hooks: AdapterJobHooks<Out>): void {
  checkOptions(`${job} options`, options, [...own, 'format', 'out', 'backend', 'gpu', 'threads', 'signal', 'onProgress', ...(hooks.moreOptions?.names ?? [])], { outPath: 'did you mean "out"?' });
  hooks.moreOptions?.check(options as unknown as Readonly<Record<string, unknown>>);
  checkChoice('format', options.format, ['peft', 'kohya']);
  checkChoice('backend', options.backend, ['auto', 'webgpu', 'cpu']);
  checkThreadCount('threads', options.threads);
  hooks.checkOutput(options.out, options.format);
  checkSignal('signal', options.signal);
  checkCallback('onProgress', options.onProgress);
  if (options.signal?.aborted) throw new MergeError('ABORTED', `${job.replace(/Loras?$/, '').toLowerCase()} cancelled`, { cause: options.signal.reason });
}

/** The method and its options (the adapters and weights are checked by checkAdapterList); the warnings of options without effect. */
function checkCombine<Out>(options: CombineLorasOptions<Out>): string[] {
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

/** resizeLora's rule: a kind and the one number it takes, and no other key (a misplaced one is named, with where its number goes). */
function checkRule(rule: RankRule): void {
  if (rule?.kind === 'rank') {
    checkOptions('rule', rule, ['kind', 'rank'], { value: 'a rank rule gives its rank: { kind: "rank", rank: 8 }' });
  } else if (rule?.kind === 'sv_ratio' || rule?.kind === 'sv_fro' || rule?.kind === 'sv_cumulative') {
    checkOptions('rule', rule, ['kind', 'value', 'maxRank'], { rank: `a ${rule.kind} rule gives its value: { kind: "${rule.kind}", value }, its largest rank as maxRank; a fixed rank is { kind: "rank", rank }` });
  }
  switch (rule?.kind) {
    case 'rank': return void positiveInteger('rule.rank', rule.rank);
    case 'sv_ratio':
      if (typeof rule.value !== 'number' || !Number.isFinite(rule.value) || rule.value <= 0) throw badArgument(`sv_ratio must be a positive number, not ${valueText(rule.value)}`);
      break;
    case 'sv_fro':
    case 'sv_cumulative':
      fraction(rule.kind, rule.value);
      break;
    default: throw badArgument('rule must be { kind: "rank", rank } or { kind: "sv_ratio" | "sv_fro" | "sv_cumulative", value, maxRank? }');
  }
  if (rule.maxRank !== undefined) positiveInteger('rule.maxRank', rule.maxRank);
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

