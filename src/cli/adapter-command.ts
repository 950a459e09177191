/**
 * `loramerge combine | resize | extract | convert`: open the inputs, make the adapter with a progress bar,
 * write it under temporary names and commit, print each module's rank and the share of its update
 * kept. Ctrl-C cancels; a failure or a cancel leaves nothing at --out.
 */
import { availableParallelism } from 'node:os';
import { combineAdapters, optionsWithoutEffect } from '../adapter-ops/combine.js';
import { extractAdapter, openExtractModel } from '../adapter-ops/extract.js';
import { checkFormatFits, cliOutputFormat, type OutputFormat } from '../adapter-ops/module-updates.js';
import { checkGgufBase, openGgufBase, renameFor, type GgufBase } from '../adapter-ops/gguf-base.js';
import { openJobAdapter, type OpResult } from '../adapter-ops/op-common.js';
import { resizeAdapter } from '../adapter-ops/resize.js';
import { convertAdapter, ggufLoraCardOf } from '../adapter-ops/convert.js';
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import { createNodeAlgebra } from '../algebra/node-algebra.js';
import { isMergeError, MergeError } from '../errors.js';
import { cancellable, cancelledMessage } from './cancel-signals.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import { writeAdapter } from '../formats/adapter-writer.js';
import type { BaseModel } from '../formats/base-model.js';
import { modelNameOrPath } from '../formats/model-config.js';
import { stampInputFiles, type InputStamps } from '../io/input-stamps.js';
import { checkOutputFolder, createNodeOutputTarget } from '../io/node-output.js';
import { nodeInputFilePaths } from '../io/node-input-files.js';
import { checkOutputPath, explainUrlInputError, forwardAbort, openCliInput, type CliInput } from './cli-inputs.js';
import type { InputFileSet } from '../io/types.js';
import type { ProgressListener } from '../pipeline/progress.js';
import type { CombineCommand, ConvertCommand, ExtractCommand, ResizeCommand } from './adapter-args.js';
import { createProgressDisplay } from './progress-bar.js';
import { listingLine, oneLine, stderrLine, stdoutLine } from './terminal-text.js';
import { threadsWarning } from './threads-option.js';

type Log = (line: string) => void;
const stderrLog: Log = stderrLine;

/** The inputs as given, their paths on disk, those files' stamps taken before any byte is read, and Ctrl-C's way to their URL requests. */
interface Inputs {
  opened: CliInput[];
  /** The paths the output may not replace: the inputs given as paths, and their files. */
  diskPaths: string[];
  stamps: InputStamps;
  /** Aborts the requests of URL inputs, which are opened before the cancel signal exists. */
  urlRequests: AbortController;
}

/**
 * Lists each input, a path or an http(s) URL (no byte read yet), and stamps its files on disk,
 * which must stay unchanged until commit. `named`: each input as given, with its option.
 */
async function listInputs(command: string, out: string, named: [string, string][]): Promise<{ sets: InputFileSet[]; inputs: Inputs }> {
  checkOutputPath(out);
  await checkOutputFolder(out);
  const urlRequests = new AbortController();
  const opened: CliInput[] = [];
// combine's and resize's --adapter may be a Hugging Face adapter repository; extract's inputs are models;
  // combine's and resize's --base is a GGUF model, one part of a split one standing for all, as merge's.
  for (const [what, text] of named) opened.push(await openCliInput(text, { what, adapter: what === '--adapter', splitGguf: what === '--base' && command !== 'extract', signal: urlRequests.signal }));
  const files = opened.flatMap((input) => [...nodeInputFilePaths(input.files)]);
  return {
    sets: opened.map((input) => input.files),
    inputs: { opened, diskPaths: opened.flatMap((input) => input.diskPaths), stamps: await stampInputFiles(files, `the ${command}`), urlRequests },
  };
}

export async function runCombine(cmd: CombineCommand, log: Log = stderrLog, print: Log = stdoutLine): Promise<number> {
  const named: [string, string][] = cmd.adapters.map((a) => ['--adapter', a.path]);
  if (cmd.base !== undefined) named.push(['--base', cmd.base]);
  const { sets, inputs } = await listInputs(cmd.command, cmd.out, named);
  const adapters = await openAdapters(cmd.base !== undefined ? sets.slice(0, -1) : sets, inputs.opened, 'combine');
  let base: GgufBase | undefined;
  try {
    const format = cliOutputFormat(cmd.out);
    base = await openCliGgufBase(cmd, format, adapters, sets.at(-1)!);
    const opFormat = base ? 'peft' : format;
    checkFormatFits(adapters, opFormat, cmd.out);
    for (const { option, why } of optionsWithoutEffect(cmd)) {
      log(`warning: --${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} has no effect with --method ${cmd.method}${why}`);
    }
    const renamed = cliRenameFor(base, cmd);
    return await produce(cmd, inputs, log, print, async (backend, run) => renamed(await combineAdapters(
      adapters.map((adapter, i) => ({ adapter, weight: cmd.adapters[i].weight })),
      { method: cmd.method, rank: cmd.rank, density: cmd.density, majoritySign: cmd.majoritySign, seed: cmd.seed, clampQuantile: cmd.clampQuantile, format: opFormat },
      backend, run)));
  } finally {
    await Promise.all(adapters.map((a) => a.file.source.close()));
    await base?.model.close();
  }
}

export async function runResize(cmd: ResizeCommand, log: Log = stderrLog, print: Log = stdoutLine): Promise<number> {
  const named: [string, string][] = [['--adapter', cmd.adapter]];
  if (cmd.base !== undefined) named.push(['--base', cmd.base]);
  const { sets, inputs } = await listInputs(cmd.command, cmd.out, named);
  const [adapter] = await openAdapters(sets.slice(0, 1), inputs.opened, 'resize');
  let base: GgufBase | undefined;
  try {
    const format = cliOutputFormat(cmd.out);
    base = await openCliGgufBase(cmd, format, [adapter], sets.at(-1)!);
    const opFormat = base ? 'peft' : format;
    checkFormatFits([adapter], opFormat, cmd.out);
    const renamed = cliRenameFor(base, cmd);
    return await produce(cmd, inputs, log, print, async (backend, run) => renamed(await resizeAdapter(adapter, cmd.rule, opFormat, backend, run)));
  } finally {
    await adapter.file.source.close();
    await base?.model.close();
  }
}

/** combine's, resize's and convert's --base (gguf-base.ts), checked then opened; none without --base. */
async function openCliGgufBase(
  cmd: { command: string; base?: string; out: string }, format: OutputFormat, adapters: readonly ParsedAdapter[], files: InputFileSet,
): Promise<GgufBase | undefined> {
  if (cmd.base === undefined) return undefined;
  checkGgufBase({ command: cmd.command, base: cmd.base }, format, adapters);
  return openGgufBase(files, cmd.base);
}

/** {@link renameFor} of the command's --base. */
function cliRenameFor(base: GgufBase | undefined, cmd: { command: string; base?: string }): (result: OpResult) => OpResult {
  return renameFor(base, cmd.base, cmd.command);
}

export async function runConvert(cmd: ConvertCommand, log: Log = stderrLog, print: Log = stdoutLine): Promise<number> {
  const { sets, inputs } = await listInputs(cmd.command, cmd.out, [['--adapter', cmd.adapter], ['--base', cmd.base]]);
  const [adapter] = await openAdapters(sets.slice(0, 1), inputs.opened, 'convert');
  let base: GgufBase | undefined;
  try {
    base = await openCliGgufBase(cmd, 'gguf', [adapter], sets[1]);
    checkFormatFits([adapter], 'peft', cmd.out);
    const renamed = cliRenameFor(base, cmd);
    const card = await ggufLoraCardOf(sets[0]);
    return await produce(cmd, inputs, log, print, async (_backend, run) => renamed(await convertAdapter(adapter, 'peft', run, cmd.outtype, card)));
  } finally {
    await adapter.file.source.close();
    await base?.model.close();
  }
}

export async function runExtract(cmd: ExtractCommand, log: Log = stderrLog, print: Log = stdoutLine): Promise<number> {
  // extract reads safetensors models, whose module names are not llama.cpp's tensor names.
  if (cliOutputFormat(cmd.out) === 'gguf') {
    throw new MergeError('BAD_ARGUMENT', `--out ${cmd.out}: extract writes no GGUF (it reads safetensors models, whose module names are not llama.cpp's); name --out a folder (PEFT) and convert it with llama.cpp's convert_lora_to_gguf.py`);
  }
  const { sets: [baseFiles, tunedFiles], inputs } = await listInputs(cmd.command, cmd.out, [['--base', cmd.base], ['--tuned', cmd.tuned]]);
  const base = await openExtractModel(baseFiles);
  let tuned: BaseModel | undefined;
  try {
    tuned = await openExtractModel(tunedFiles);
    const t = tuned;
    const baseModelName = await modelNameOrPath(baseFiles);
    return await produce(cmd, inputs, log, print, (backend, run) => extractAdapter(base, t,
      { rank: cmd.rank, energy: cmd.energy, format: cliOutputFormat(cmd.out), baseModelName }, backend, run));
  } finally {
    await base.close();
    await tuned?.close();
  }
}

/** The adapters of `command` (combine, resize), a model among them refused in that command's words. */
async function openAdapters(sets: InputFileSet[], inputs: readonly CliInput[], command: string): Promise<ParsedAdapter[]> {
  const opened: ParsedAdapter[] = [];
  try {
    for (const set of sets) opened.push(await openJobAdapter(set, command));
    return opened;
  } catch (e) {
    await Promise.all(opened.map((a) => a.file.source.close()));
    throw explainUrlInputError(e, inputs);
  }
}

/** Output target, backend, Ctrl-C, progress; the operation; then the file(s) and the report. */
async function produce(
  cmd: { command: string; out: string; backend: 'auto' | 'webgpu' | 'cpu'; threads?: number; overwrite: boolean }, inputs: Inputs, log: Log, print: Log,
  make: (backend: AlgebraBackend, run: { signal: AbortSignal; onProgress: ProgressListener }) => Promise<OpResult>,
): Promise<number> {
  const format = cliOutputFormat(cmd.out);
  // From the lock on, a signal cancels; none ends the process before the output is gone (cancel-signals.ts).
  return cancellable(async (signal) => {
    forwardAbort(signal, inputs.urlRequests);
    const output = await createNodeOutputTarget(cmd.out, format === 'peft' ? 'folder' : 'file', inputs.diskPaths, {
      overwrite: cmd.overwrite,
      beforeCommit: () => inputs.stamps.verify(),
    });
    const progress = createProgressDisplay();
    let backend: AlgebraBackend | undefined;
    try {
      backend = await createNodeAlgebra(cmd.backend, { threads: cmd.threads });
      log(`backend: ${backend.description}`);
      // As merge warns: only where the CPU runs every product (on a GPU it runs only those the device cannot bind).
      const extraThreads = backend.kind === 'cpu' ? threadsWarning(cmd.threads, availableParallelism()) : undefined;
      if (extraThreads) log(`warning: ${extraThreads}`);
      const started = performance.now();
      const result = await make(backend, { signal, onProgress: (e) => progress.update(e) });
      progress.stop();
      for (const w of result.warnings) log(`warning: ${oneLine(w)}`);
      if (signal.aborted) throw new MergeError('ABORTED', `${cmd.command} cancelled`);
      // A signal while it writes stops the writing, and one after it keeps the output from being committed.
      await writeAdapter(output, result.adapter, signal);
      if (signal.aborted) throw new MergeError('ABORTED', `${cmd.command} cancelled`);
      await output.commit();
      printReport(result, print);
      const seconds = (performance.now() - started) / 1000;
      const { modules, whole } = result.adapter;
      log(listingLine(`wrote ${modules.length} LoRA module${modules.length === 1 ? '' : 's'}${whole.length ? ` and ${whole.length} whole tensor${whole.length === 1 ? '' : 's'}` : ''} to ${cmd.out} (${format === 'kohya' ? 'kohya file' : format === 'gguf' ? 'llama.cpp LoRA GGUF' : 'PEFT folder'}) in ${seconds.toFixed(2)} s`));
      return 0;
    } catch (e) {
      await output.abort();
      // The steps below say "merge cancelled"; name the command that was, and that no output is left.
      if (isMergeError(e) && e.code === 'ABORTED') throw new MergeError('ABORTED', cancelledMessage(cmd.command, cmd.out), { cause: e });
      throw e;
    } finally {
      progress.stop();
      backend?.dispose();
    }
  });
}

/**
 * One line per module on stdout (`print`: the caller's, so that runCommandLine's output gets it):
 * name, rank, share of ‖ΔW‖_F kept. Four decimals: extractions
 * keep 99.98–99.999 %, which two decimals cannot tell apart.
 */
function printReport(result: OpResult, print: Log): void {
  const width = Math.min(80, Math.max(6, ...result.report.map((r) => r.name.length)));
  const lines = [`${'module'.padEnd(width)}  rank  kept`];
  for (const r of result.report) lines.push(`${listingLine(r.name).padEnd(width)}  ${String(r.rank).padStart(4)}  ${(100 * r.froKept).toFixed(4)}%`);
  print(lines.join('\n'));
}

