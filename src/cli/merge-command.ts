/** `loramerge merge`: plan, report, merge with a progress bar; Ctrl-C cancels and cleans up. */
import { availableParallelism } from 'node:os';
import { cancellable, cancelledMessage } from './cancel-signals.js';
import { isMergeError, MergeError } from '../errors.js';
import { stampInputFiles } from '../io/input-stamps.js';
import { checkOutputFolder, createNodeOutputTarget } from '../io/node-output.js';
import { nodeInputFilePaths } from '../io/node-input-files.js';
import { checkOutputPath, explainUrlInputError, forwardAbort, openCliInput } from './cli-inputs.js';
import { assertPlanValid } from '../plan/merge-plan.js';
import { mergeModel, savedTensorErrors } from '../pipeline/merge-model.js';
import { throwIfProblems } from '../plan/problems.js';
import { checkOutputFormatName } from '../pipeline/output-name.js';
import { prepareMerge, type PreparedMerge } from '../pipeline/prepare-merge.js';
import { dominantUpdateDtype } from '../pipeline/dominant-dtype.js';
import type { MergeCommand } from './args.js';
import { createNodeBackend } from '../engine/node-backend.js';
import { describePlan } from './plan-report.js';
import { formatBytes } from '../format.js';
import { createProgressDisplay } from './progress-bar.js';
import { listingLine, oneLine, stderrLine, stdoutLine } from './terminal-text.js';
import { threadsWarning } from './threads-option.js';
import { readImportanceMatrix, type ImportanceMatrix } from '../formats/gguf/imatrix.js';
import { openNodeByteSource } from '../io/node-byte-source.js';

/** Where the command prints: results (the dry-run plan) to `out`, messages to `err`. */
export interface MergeOutput {
  out(line: string): void;
  err(line: string): void;
  /** Bytes of the base per row slab; the library's default where absent (tests make it small, so layers stream in several slabs). */
  slabBytes?: number;
}

const stdio: MergeOutput = { out: stdoutLine, err: stderrLine };

export async function runMerge(cmd: MergeCommand, io: MergeOutput = stdio): Promise<number> {
  const log = io.err;
  // Before any input is read or the plan printed: a folder that cannot take --out fails the run
  // anyway, and a dry run (which needs no --out) is there to say what the real run would do.
  if (cmd.out !== '') {
    checkOutputPath(cmd.out);
    await checkOutputFolder(cmd.out);
  }
  // URL inputs are opened before the cancel signal exists (it comes with the output): Ctrl-C reaches
  // their requests through this controller.
  const urlRequests = new AbortController();
  // One part of a split GGUF stands for the whole set, and a split input gives a split output.
  const base = await openCliInput(cmd.base, { what: '--base', splitGguf: true, signal: urlRequests.signal });
  const importance = cmd.imatrix === undefined ? undefined : await readImportanceFile(cmd.imatrix);
  if (importance) log(listingLine(`note: ${cmd.imatrix}: importance matrix for ${importance.entries.size} tensors; merged tensors are re-quantized with it`));
  const inputs = [base];
  for (const a of cmd.adapters) inputs.push(await openCliInput(a.path, { what: '--adapter', adapter: true, signal: urlRequests.signal }));
  const baseFiles = base.files;
  const adapters = cmd.adapters.map((a, i) => ({ files: inputs[i + 1].files, weight: a.weight, ...(cmd.oneTrainerCoft !== undefined ? { oneTrainerCoft: cmd.oneTrainerCoft } : {}) }));
  // Recorded before any tensor is read, compared again before the output is moved into place.
  const inputFiles = [baseFiles, ...adapters.map((a) => a.files)].flatMap((set) => [...nodeInputFilePaths(set)]);
  const stamps = await stampInputFiles(inputFiles);

  let prepared: PreparedMerge;
  try {
    prepared = await prepareMerge(baseFiles, adapters, { dtype: cmd.dtype, ...(importance ? { importance } : {}) });
  } catch (e) {
    throw explainUrlInputError(e, inputs);
  }
  try {
    if (cmd.dtype !== undefined) prepared.base.format.parseOutputType(cmd.dtype, '--dtype', importance !== undefined);
    for (const warning of prepared.plan.warnings) log(`warning: ${oneLine(warning)}`);
    for (const note of prepared.plan.notes) log(`note: ${oneLine(note)}`);
    if (cmd.dryRun) {
      io.out(describePlan(prepared, true)); // every problem on its own line, then the usual error
      assertPlanValid(prepared.plan);
      // The output types and the importance matrix matched to the base as the real run matches them
      // (headers only), then the tensors adapters save whole and the bias updates read as the merge
      // reads them: each refusal as a problem line, then the merge's own error (the first's words).
      const refusals = await savedTensorErrors(prepared, { outDtype: cmd.dtype, dtypeMergedOnly: cmd.dtypeMergedOnly, ...(importance ? { importance } : {}) });
      for (const e of refusals) io.out(listingLine(`problem: ${oneLine(e.message)}`));
      if (refusals.length === 1) throw refusals[0];
      throwIfProblems('the merge', refusals);
      return 0;
    }
    assertPlanValid(prepared.plan);
    // After the plan's own problems, which say more about the inputs than the output's name does.
    checkOutputFormatName(cmd.out, prepared.base.format.name, base.many);
    log(describePlan(prepared, false));

    // Every Ctrl-C (or SIGTERM, SIGHUP) from here on cancels the merge; none ends the process before
    // the output and its lock are gone (cancel-signals.ts).
    return await cancellable(async (signal) => {
      forwardAbort(signal, urlRequests);
      // Only paths: a URL is no place on disk for the output to replace.
      const output = await createNodeOutputTarget(cmd.out, base.many ? 'folder' : 'file', inputs.flatMap((i) => i.diskPaths), {
        overwrite: cmd.overwrite,
        fileName: base.fileName,
        beforeCommit: () => stamps.verify(),
        onNotice: (message) => log(`note: ${oneLine(message)}`),
      });
      let backend;
      try {
        backend = await createNodeBackend(cmd.backend, { calibrationDtype: dominantUpdateDtype(prepared), threads: cmd.threads });
      } catch (e) {
        await output.abort();
        throw e;
      }
      log(`backend: ${backend.description}`);
      const extraThreads = backend.kind === 'cpu' ? threadsWarning(cmd.threads, availableParallelism()) : undefined;
      if (extraThreads) log(`warning: ${extraThreads}`);
      const progress = createProgressDisplay();
      try {
        const result = await mergeModel({
          prepared,
          output,
          backend,
          outDtype: cmd.dtype,
          dtypeMergedOnly: cmd.dtypeMergedOnly,
          ...(importance ? { importance } : {}),
          ...(io.slabBytes ? { slabBytes: io.slabBytes } : {}),
          signal,
          onProgress: (e) => progress.update(e),
          onWarning: (message) => {
            progress.stop();
            log(`warning: ${oneLine(message)}`);
          },
        });
        progress.stop();
        const rate = formatBytes(result.bytesWritten / Math.max(result.seconds, 1e-3));
        // A line break in --out is shown escaped: the report stays one line per line, as the plan's do.
        log(listingLine(
          `merged ${result.tensorsUpdated} of ${result.tensors} tensors into ${cmd.out}: ` +
            `${formatBytes(result.bytesWritten)} in ${result.seconds.toFixed(2)} s (${rate}/s)`,
        ));
        return 0;
      } catch (e) {
        // A user who pressed Ctrl-C wants to know whether a half-written model is left: it is not.
        if (isMergeError(e) && e.code === 'ABORTED') throw new MergeError('ABORTED', cancelledMessage('merge', cmd.out), { cause: e });
        throw e;
      } finally {
        progress.stop();
        backend.dispose();
      }
    });
  } finally {
    await prepared.close();
  }
}

/** --imatrix's file, read whole and checked (imatrix.ts); the file is closed either way. */
async function readImportanceFile(path: string): Promise<ImportanceMatrix> {
  const source = await openNodeByteSource(path);
  try {
    return await readImportanceMatrix(source);
  } finally {
    await source.close();
  }
}
