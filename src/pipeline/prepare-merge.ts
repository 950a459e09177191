/**
 * The cheap first half of a merge: open the base and the adapters (headers and configs only),
 * match every module to a base tensor and collect every problem. Nothing heavy is read yet, so
 * front ends can show the plan and let the user fix problems before any work starts.
 */
import { openAdapter, type ParsedAdapter } from '../formats/adapter.js';
import type { BaseModel } from '../formats/base-model.js';
import { openModel } from '../formats/open-model.js';
import type { InputFileSet } from '../io/types.js';
import { buildMergePlan, type MergePlan } from '../plan/merge-plan.js';
import { MergeError } from '../errors.js';
import { repeatedAdapterWarnings } from '../plan/same-adapter.js';

/** One adapter for {@link prepareMerge}: its files and the weight it is merged at. */
export interface AdapterInput {
  files: InputFileSet;
  /** The user's weight for this adapter (default 1; negative subtracts). */
  weight?: number;
}

/** The opened inputs and their plan, ready for {@link mergeModel}. */
export interface PreparedMerge {
  baseFiles: InputFileSet;
  base: BaseModel;
  adapters: { adapter: ParsedAdapter; weight: number }[];
  plan: MergePlan;
  /** Releases the open files. */
  close(): Promise<void>;
}

/** Opens the base and the adapters (headers and configs only) and plans the merge: every problem is in `plan.problems`, nothing heavy is read. Close the result when done. */
export async function prepareMerge(baseFiles: InputFileSet, adapterInputs: readonly AdapterInput[]): Promise<PreparedMerge> {
  if (adapterInputs.length === 0) throw new MergeError('BAD_ARGUMENT', 'no adapter given');
  for (const input of adapterInputs) {
    const weight = input.weight ?? 1;
    if (!Number.isFinite(weight)) throw new MergeError('BAD_ARGUMENT', `${input.files.name}: weight ${weight} is not a finite number`);
  }
  const base = await openModel(baseFiles);
  const adapters: { adapter: ParsedAdapter; weight: number }[] = [];
  const close = async () => {
    await Promise.allSettled([base.close(), ...adapters.map(({ adapter }) => adapter.file.source.close())]);
  };
  try {
    for (const input of adapterInputs) {
      adapters.push({ adapter: await openAdapter(input.files), weight: input.weight ?? 1 });
    }
    const plan = buildMergePlan(base, adapters);
    plan.warnings.unshift(...base.warnings);
    plan.warnings.push(...(await repeatedAdapterWarnings(adapters)));
    plan.problems.push(...(base.planProblems?.(plan, adapters.map((a) => a.adapter)) ?? []));
    plan.warnings.push(...(base.planWarnings?.(plan) ?? []));
    return { baseFiles, base, adapters, plan, close };
  } catch (e) {
    await close();
    throw e;
  }
}
