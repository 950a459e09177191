/**
 * The one-call merge shared by the browser and Node entry points: open the sources, plan, refuse a
 * plan with problems, pick a backend, merge, and release everything whatever happens. The entry
 * points differ only in what a source or an output may be (Node adds paths), supplied here as hooks.
 */
import {
  badArgument, checkCallback, checkChoice, checkDtypeName, checkList, checkOptions, checkSignal, checkOneTrainerCoft, checkThreadCount, checkWeight, isOutputTarget, shown,
} from '../api-arguments.js';
import type { ImportanceMatrix } from '../formats/gguf/imatrix.js';
import type { FloatDType, OutDTypeName } from '../dtype.js';
import { asCancel, throwIfAborted } from '../errors.js';
import { inLibraryWords, libraryWording } from '../library-wording.js';
import { inlineText, printable } from '../shown-text.js';
import type { BackendChoice } from '../engine/backend-choice.js';
import type { MergeBackend } from '../engine/merge-op.js';
import { createBlobOutputTarget, type OutputBlob } from '../io/blob-output.js';
import type { InputFileSet, OutputTarget } from '../io/types.js';
import { assertPlanValid, type MergePlan } from '../plan/merge-plan.js';
import { dominantUpdateDtype } from './dominant-dtype.js';
import { mergeModel, type MergeResult } from './merge-model.js';
import { prepareMerge, type PreparedMerge } from './prepare-merge.js';
import type { ProgressListener } from './progress.js';

/** An adapter with the weight it is merged at (default 1; negative subtracts). */
export interface WeightedSource<Source> {
  source: Source;
  weight?: number;
  /**
   * merge() only: how a OneTrainer OFT file saved without its training config by a OneTrainer that
   * had COFT was trained (AdapterInput.oneTrainerCoft): false off, true on at coft_eps 1e-4, a
   * number on at that coft_eps.
   */
  oneTrainerCoft?: boolean | number;
}

/**
 * What every one-call merge takes; `Source` and `Out` are what the entry point accepts. Checked
 * before any source is opened: a value of the wrong kind, or an option name not listed here (most
 * likely a typo; one set to `undefined` is fine), is a BAD_ARGUMENT MergeError naming it.
 */
export interface OneCallMergeOptions<Source, Out> {
  /** The base model. */
  base: Source;
  /** Adapters, each a source or `{ source, weight }`; merged together in one pass. */
  adapters: readonly (Source | WeightedSource<Source>)[];
  /** Where the merged model goes; omitted, it is kept in memory and returned as Blobs. */
  out?: Out;
  /**
   * Write every float tensor in this dtype (default: each keeps the base's); for a GGUF base, the
   * type of every matrix llama-quantize would quantize, merged or not, GGML block types included
   * (`q8_0`, `q4_k`…; norms keep theirs). The base's container checks it once the base is open,
   * before anything is written.
   */
  dtype?: OutDTypeName | FloatDType | (string & {});
  /**
   * GGUF: an importance matrix (readImportanceMatrix) the merged tensors are re-quantized with, as
   * `llama-quantize --imatrix` quantizes them (mergeModel's `importance`).
   */
  importance?: ImportanceMatrix;
  /** `auto` (default), `webgpu`, `cpu`, or a backend you made (then it is not disposed here). */
  backend?: BackendChoice | MergeBackend;
  /**
   * Threads of the CPU merge, an integer from 1 to 1024 (`MAX_THREADS`; the command line's
   * `--threads`). Default: one per core, at most 8; each thread adds about 14 MiB of memory. 1
   * merges every tensor on the calling thread, and the outcome's `backend` then says `1 thread`.
   * On WebGPU they run what the GPU leaves to the CPU (f32 outputs, DoRA and the other update steps,
   * a tensor whose rows the device cannot bind). From
   * `loramerge/node` they are worker threads, the calling one included; in a page or worker, Web
   * Workers, only where the context is cross-origin isolated (elsewhere one thread, and `backend`
   * says why). The output's bytes are the same for any count. Not with a `backend` you made, whose
   * threads were set when it was made.
   */
  threads?: number;
  /**
   * Cancels the merge: it rejects with a MergeError of code ABORTED, named `'AbortError'` (as a
   * cancelled fetch is) and whose `cause` is the signal's reason, and nothing is left at the
   * output. One already aborted refuses before any source is opened.
   */
  signal?: AbortSignal;
  /** Called as tensors are written; an error it throws ends the merge with that error, leaving nothing at the output. */
  onProgress?: ProgressListener;
}

/** What a one-call merge did. */
export interface MergeOutcome extends MergeResult {
  /** The plan it followed: every module, the base tensor it landed on, and warnings. */
  plan: MergePlan;
  /** The merged files when `out` was omitted; otherwise empty. */
  blobs: OutputBlob[];
}

/** How an entry point opens what it accepts. */
export interface OneCallHooks<Source, Out> {
  /**
   * `signal` cancels reads in flight where a source can (URLs). `readAhead`: a source that reads
   * ahead (Blobs, Files) does so only while it returns true: false while the merge is planned (reads
   * there are headers and metadata; windows started for them pulled tens of MB never used), true
   * from the merge on, on the same open files.
   */
  openSource(source: Source, role: 'base' | 'adapter', signal?: AbortSignal, readAhead?: () => boolean): Promise<InputFileSet>;
  openOutput(out: Out, prepared: PreparedMerge, sources: { base: Source; adapters: Source[] }): Promise<OutputTarget>;
  /** The merge's backend for `kind`; `threads`, where given (checked), the CPU's threads, on its own or beside the GPU. */
  createBackend(kind: BackendChoice, calibrationDtype: FloatDType | undefined, threads: number | undefined): Promise<MergeBackend>;
  /**
   * Throws BAD_ARGUMENT, naming `what` (`the base`, `adapters[1]`), for a source this entry point
   * cannot open as `role` (a Hugging Face page where a file is read), before any is opened.
   */
  checkSource(source: unknown, what: string, role: 'base' | 'adapter'): void;
  /** Throws BAD_ARGUMENT for an `out` this entry point cannot write to (undefined is fine). */
  checkOutput(out: unknown): void;
  /**
   * Refuses, before any source is opened, an `out` (checked by checkOutput) whose place cannot take
   * the output (Node: a path whose folder does not exist or cannot be written); creates nothing.
   */
  checkOutputPlace?(out: Out): Promise<void>;
  /**
   * An error of the merge as the caller is to see it: where a source the entry point opened its
   * own way explains a refusal better (a Hub link of PEFT weights whose repository has no config).
   */
  explainError?(e: unknown): unknown;
  /** Options this entry point takes beyond OneCallMergeOptions' (Node's `hfToken`), and their check. */
  moreOptions?: { names: readonly string[]; check(options: Readonly<Record<string, unknown>>): void };
}

/** The one-call merge's option names, for refusing typos (`outPath`, `weights`). */
const OPTION_NAMES = ['base', 'adapters', 'out', 'dtype', 'importance', 'backend', 'threads', 'signal', 'onProgress'] as const;
const PER_ADAPTER = 'each adapter has its own weight: adapters: [{ source, weight }]';
const OPTION_HINTS: Readonly<Record<string, string>> = {
  weight: PER_ADAPTER, weights: PER_ADAPTER, scale: PER_ADAPTER,
  alpha: `an adapter's alpha is its own (adapter_config.json); ${PER_ADAPTER}`,
  adapter: 'did you mean "adapters" (an array)?',
};

/** Is this adapter given with its weight (`{ source, weight }`), not as a bare source? */
export function isWeighted<Source>(x: Source | WeightedSource<Source>): x is WeightedSource<Source> {
  return typeof x === 'object' && x !== null && 'source' in x && !(x instanceof Blob);
}

/**
 * A list of adapters as `merge()` and `combineLoras()` take it: a non-empty array of sources or
 * `{ source, weight }` (no other key, a source, a finite weight or none), each source passed to
 * `checkSource` with the argument's name (`adapters[1]`); anything else is a BAD_ARGUMENT.
 */
export function checkAdapterList<Source>(adapters: unknown, checkSource: (source: unknown, what: string) => void, merging = false): asserts adapters is readonly (Source | WeightedSource<Source>)[] {
  checkList('adapters', adapters, 'an adapter (a source or { source, weight })');
  adapters.forEach((a, i) => {
    if (isWeighted(a)) {
      checkOptions(`adapters[${i}]`, a, merging ? ['source', 'weight', 'oneTrainerCoft'] : ['source', 'weight'], { weights: 'did you mean "weight"?', scale: 'did you mean "weight"?' });
      if (a.source === undefined || a.source === null) throw badArgument(`adapters[${i}].source is ${shown(a.source)}; give the adapter`);
      checkWeight(`adapters[${i}].weight`, a.weight);
      checkOneTrainerCoft(`adapters[${i}].oneTrainerCoft`, a.oneTrainerCoft);
    }
    checkSource(isWeighted(a) ? a.source : a, `adapters[${i}]`);
  });
}

/**
 * Every option checked before a file is opened: a wrong type, an unknown option name, an adapter
 * that is the base object itself are BAD_ARGUMENT; an aborted signal is ABORTED.
 */
function checkOneCallOptions<Source, Out>(options: OneCallMergeOptions<Source, Out>, hooks: OneCallHooks<Source, Out>): void {
  checkOptions('merge() options', options, [...OPTION_NAMES, ...(hooks.moreOptions?.names ?? [])], OPTION_HINTS);
  hooks.moreOptions?.check(options as unknown as Readonly<Record<string, unknown>>);
  if (options.base === undefined || options.base === null) throw badArgument(`base is ${shown(options.base)}; give the base model`);
  hooks.checkSource(options.base, 'the base', 'base');
  checkAdapterList(options.adapters, (source, what) => {
    hooks.checkSource(source, what, 'adapter');
    if (source === options.base) throw badArgument(`${what} is the base itself; give the adapter's files (a base given as an adapter merges nothing)`);
  }, true);
  checkDtypeName('dtype', options.dtype);
  if (typeof options.backend !== 'object' || options.backend === null) checkChoice('backend', options.backend, ['auto', 'webgpu', 'cpu']);
  else if (typeof (options.backend as MergeBackend).merge !== 'function') {
    throw badArgument(`backend must be auto, webgpu, cpu or a backend from createBackend, not ${shown(options.backend)}`);
  }
  checkThreadCount('threads', options.threads);
  // A backend the caller made has its threads already: a count here would change nothing.
  if (options.threads !== undefined && typeof options.backend === 'object') {
    throw badArgument('threads is for the backend merge() makes; a backend you made has its threads from when it was made (createNodeBackend\'s threads, createBackend\'s cpuPool)');
  }
  hooks.checkOutput(options.out);
  checkSignal('signal', options.signal);
  checkCallback('onProgress', options.onProgress);
  throwIfAborted(options.signal);
}

/**
 * The one-call merge behind both entry points' `merge()`: checks every option, opens the sources
 * through `hooks`, plans, refuses a plan with problems, merges into `options.out` (or Blobs) and
 * releases everything, whatever happens. Its errors, warnings and notes name the call's options,
 * not the command line's (library-wording.ts).
 */
export async function oneCallMerge<Source, Out>(
  options: OneCallMergeOptions<Source, Out>, hooks: OneCallHooks<Source, Out>,
): Promise<MergeOutcome> {
  // An output target the caller made (a Node one holds its lock from the start) is this call's to
  // abort until mergeModel takes it over, as mergeModel aborts the one it is given: a refusal
  // (an option, a source, the plan, the backend) leaves nothing at the output either.
  let owned: OutputTarget | undefined = typeof options === 'object' && options !== null && isOutputTarget(options.out) ? options.out : undefined;
  try {
    checkOneCallOptions(options, hooks);
    if (options.out !== undefined) await hooks.checkOutputPlace?.(options.out);
    const adapterSources = options.adapters.map((a) => (isWeighted(a) ? a : { source: a, weight: 1 }));
    let merging = false;
    const readAhead = () => merging;
    const baseFiles = await hooks.openSource(options.base, 'base', options.signal, readAhead);
    const adapters = [];
    for (const a of adapterSources) {
      const files = await hooks.openSource(a.source, 'adapter', options.signal, readAhead);
      adapters.push({ files, weight: a.weight ?? 1, ...(a.oneTrainerCoft !== undefined ? { oneTrainerCoft: a.oneTrainerCoft } : {}) });
    }
    const prepared = await prepareMerge(baseFiles, adapters, { dtype: options.dtype, ...(options.importance ? { importance: options.importance } : {}), signal: options.signal });
    try {
      assertPlanValid(prepared.plan);
      // Planned: from here on the files are read front to back.
      merging = true;
      const dtype = options.dtype === undefined ? undefined : prepared.base.format.parseOutputType(options.dtype, 'dtype', options.importance !== undefined);
      const memory = options.out === undefined ? createBlobOutputTarget(`${baseFiles.name}-merged`) : undefined;
      const output = memory ?? await hooks.openOutput(options.out as Out, prepared, {
        base: options.base, adapters: adapterSources.map((a) => a.source),
      });
      owned = output;
      const given = typeof options.backend === 'object' ? options.backend : undefined;
      const backend = given ?? await hooks.createBackend((options.backend as BackendChoice | undefined) ?? 'auto', dominantUpdateDtype(prepared), options.threads);
      owned = undefined; // mergeModel aborts it on any failure
      try {
        const result = await mergeModel({
          prepared, output, backend, outDtype: dtype, ...(options.importance ? { importance: options.importance } : {}), signal: options.signal, onProgress: options.onProgress,
        });
        return outcomeInLibraryWords({ ...result, plan: prepared.plan, blobs: memory?.files() ?? [] });
      } finally {
        if (!given) backend.dispose();
      }
    } finally {
      await prepared.close();
    }
  } catch (e) {
    await owned?.abort().catch(() => {});
    const signal = typeof options === 'object' && options !== null ? options.signal : undefined;
    throw asCancel(inLibraryWords(hooks.explainError ? hooks.explainError(e) : e), signal);
  }
}

/**
 * The outcome's warnings and the plan's notes in the call's words, not the command line's
 * (library-wording.ts), each one printable line: the names they quote come from the files, and a
 * line break or escape sequence in one is shown escaped, as a MergeError's message shows it.
 */
function outcomeInLibraryWords(outcome: MergeOutcome): MergeOutcome {
  const plan = outcome.plan;
  const words = (text: string) => printable(inlineText(libraryWording(text)));
  return {
    ...outcome,
    warnings: outcome.warnings.map(words),
    plan: {
      ...plan,
      warnings: plan.warnings.map(words),
      notes: plan.notes.map(words),
      leftOut: plan.leftOut.map((m) => ({ ...m, reason: words(m.reason) })),
      problems: plan.problems.map((p) => ({ ...p, message: words(p.message) })),
    },
  };
}
