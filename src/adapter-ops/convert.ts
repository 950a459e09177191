/**
 * convert: one adapter's modules as plain LoRA pairs, their factors as they are (no algebra, no
 * rounding beyond the file's dtype), each at its own scale (α' = s·r, s being α/r, α/√r under
 * rsLoRA, or the algorithm's), for a renaming such as gguf-lora-names.ts's. A module that is no
 * low-rank product, DoRA or a bias change is refused by collectModules, as combine and resize refuse it.
 */
import { throwIfAborted } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { WrittenModule } from '../formats/adapter-writer.js';
import type { ProgressListener } from '../pipeline/progress.js';
import { factorBytes, readFactors, type OutputFormat } from './module-updates.js';
import { collectModules, finishAdapter, type ModuleReport, type OpResult } from './op-common.js';

/** `adapter` written again as `format` names its modules, every update exact. */
export async function convertAdapter(
  adapter: ParsedAdapter, format: OutputFormat, run: { signal?: AbortSignal; onProgress?: ProgressListener } = {},
): Promise<OpResult> {
  const groups = collectModules([adapter], format, 'convert');
  const modules: WrittenModule[] = [];
  const report: ModuleReport[] = [];
  const bytesTotal = adapter.modules.reduce((n, m) => n + factorBytes(m), 0);
  let bytesDone = 0;
  for (const [name, [ref]] of groups) {
    throwIfAborted(run.signal);
    run.onProgress?.({ phase: 'merge', tensorsDone: modules.length, tensorsTotal: groups.size, bytesDone, bytesTotal, tensor: name });
    const { b, a, rank } = await readFactors(adapter, ref.module);
    const { shape } = ref;
    modules.push({
      name, kind: shape.kind, up: b.data, down: a.data, rank, alpha: ref.module.scale * rank,
      upShape: [shape.out, rank, ...shape.upTail], downShape: [rank, ...shape.downTail],
    });
    report.push({ name, rank, froKept: 1, singularValues: [] });
    bytesDone += factorBytes(ref.module);
  }
  run.onProgress?.({ phase: 'done', tensorsDone: modules.length, tensorsTotal: groups.size, bytesDone, bytesTotal });
  return finishAdapter([adapter], modules, report, format, {
    loramerge_command: 'convert',
    loramerge_sources: JSON.stringify([{ adapter: adapter.name, format: adapter.format }]),
  }, 'converted');
}
