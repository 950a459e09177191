/**
 * A three-stage pipeline over ordered work units: while unit i is computed, unit i+1 is being read
 * and unit i-1 written. Reads run at most one ahead and writes stay in order, so at most three
 * units are in memory, each bounded by the slab size.
 */
import { throwIfAborted } from '../errors.js';

export interface PipelineStages<Unit, Input, Output> {
  read(unit: Unit): Promise<Input>;
  compute(unit: Unit, input: Input): Promise<Output>;
  write(unit: Unit, output: Output): Promise<void>;
}

export async function runPipelined<Unit, Input, Output>(
  units: readonly Unit[],
  stages: PipelineStages<Unit, Input, Output>,
  signal?: AbortSignal,
): Promise<void> {
  if (units.length === 0) return;
  let nextRead: Promise<Input> | undefined = stages.read(units[0]);
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    for (let i = 0; i < units.length; i++) {
      throwIfAborted(signal);
      const input: Input = await nextRead!;
      nextRead = i + 1 < units.length ? stages.read(units[i + 1]) : undefined;
      // A failed read ahead must not surface as an unhandled rejection while we compute.
      nextRead?.catch(() => {});
      const output = await stages.compute(units[i], input);
      await pendingWrite;
      throwIfAborted(signal);
      pendingWrite = stages.write(units[i], output);
      pendingWrite.catch(() => {});
    }
    await pendingWrite;
  } finally {
    // Let in-flight I/O settle before the caller aborts the output (closing files mid-write races).
    await Promise.allSettled([nextRead, pendingWrite]);
  }
}
