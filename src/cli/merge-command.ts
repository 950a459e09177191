/** `loramerge merge`: plan, report, merge with a progress bar; Ctrl-C cancels and cleans up. */
import { stat } from 'node:fs/promises';
import { MergeError } from '../errors.js';
import { createNodeOutputTarget } from '../io/node-output.js';
import { openNodeInputFileSet } from '../io/node-input-files.js';
import { assertPlanValid } from '../plan/merge-plan.js';
import { mergeModel } from '../pipeline/merge-model.js';
import { prepareMerge, type PreparedMerge } from '../pipeline/prepare-merge.js';
import { dominantUpdateDtype } from '../pipeline/dominant-dtype.js';
import type { MergeCommand } from './args.js';
import { createNodeBackend } from '../engine/node-backend.js';
import { describePlan } from './plan-report.js';
import { formatBytes } from '../format.js';
import { createProgressDisplay } from './progress-bar.js';

export async function runMerge(cmd: MergeCommand, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<number> {
  const baseInfo = await stat(cmd.base).catch(() => undefined);
  if (!baseInfo) throw new MergeError('NOT_FOUND', `${cmd.base}: no such file or folder`);
  const baseFiles = await openNodeInputFileSet(cmd.base);
  const adapters = [];
  for (const a of cmd.adapters) adapters.push({ files: await openNodeInputFileSet(a.path), weight: a.weight });

  const prepared: PreparedMerge = await prepareMerge(baseFiles, adapters);
  try {
    for (const warning of prepared.plan.warnings) log(`warning: ${warning}`);
    if (cmd.dryRun) {
      process.stdout.write(describePlan(prepared, true) + '\n');
      return prepared.plan.problems.length === 0 ? 0 : 1;
    }
    assertPlanValid(prepared.plan);
    log(describePlan(prepared, false));

    const output = await createNodeOutputTarget(cmd.out, baseInfo.isDirectory() ? 'folder' : 'file', [
      cmd.base,
      ...cmd.adapters.map((a) => a.path),
    ], { overwrite: cmd.overwrite });
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.on('SIGINT', onSignal); // every Ctrl-C during the merge cancels it; none kills it mid-write
    process.on('SIGTERM', onSignal);
    let backend;
    try {
      backend = await createNodeBackend(cmd.backend, { calibrationDtype: dominantUpdateDtype(prepared) });
    } catch (e) {
      await output.abort();
      throw e;
    }
    log(`backend: ${backend.description}`);
    const progress = createProgressDisplay();
    try {
      const result = await mergeModel({
        prepared,
        output,
        backend,
        outDtype: cmd.dtype,
        signal: controller.signal,
        onProgress: (e) => progress.update(e),
      });
      progress.stop();
      const rate = formatBytes(result.bytesWritten / Math.max(result.seconds, 1e-3));
      log(
        `merged ${result.tensorsUpdated} of ${result.tensors} tensors into ${cmd.out}: ` +
          `${formatBytes(result.bytesWritten)} in ${result.seconds.toFixed(2)} s (${rate}/s)`,
      );
      return 0;
    } finally {
      progress.stop();
      backend.dispose();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } finally {
    await prepared.close();
  }
}
