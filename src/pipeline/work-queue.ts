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
  units: Iterable<Unit>,
  stages: PipelineStages<Unit, Input, Output>,
  signal?: AbortSignal,
): Promise<void> {
  // Taken from the iterable one at a time, so a caller may make units as they are reached.
  const order = units[Symbol.iterator]();
  let current = order.next();
  if (current.done) return;
  let nextRead: Promise<Input> | undefined = stages.read(current.value);
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    while (!current.done) {
      throwIfAborted(signal);
      const unit = current.value;
      const input: Input = await nextRead!;
      current = order.next();
      nextRead = current.done ? undefined : stages.read(current.value);
      // A failed read ahead must not surface as an unhandled rejection while we compute.
      nextRead?.catch(() => {});
      const output = await stages.compute(unit, input);
      await pendingWrite;
      throwIfAborted(signal);
      pendingWrite = stages.write(unit, output);
      pendingWrite.catch(() => {});
    }
    await pendingWrite;
  } finally {
    // Let in-flight I/O settle before the caller aborts the output (closing files mid-write races).
    await Promise.allSettled([nextRead, pendingWrite]);
  }
}
