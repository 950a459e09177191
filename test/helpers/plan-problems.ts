/**
 * What the plan says of adapters on a base held in memory, for tests of its refusals: the plan's
 * problems, or the MergeError that stops it before there is a plan.
 */
import { memoryInputFileSet, prepareMerge } from '../../src/index.js';

/** A folder or file set in memory: path → bytes or text. */
export type Files = Record<string, string | Uint8Array>;

/** The plan's problems (messages) for the adapters (named by their keys, merged in that order) on `base`, with the files closed again. */
export async function planProblems(base: Files, adapters: Record<string, Files>): Promise<string[]> {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), Object.entries(adapters).map(([name, files]) => ({ files: memoryInputFileSet(files, name) })));
  try {
    return prepared.plan.problems.map((p) => p.message);
  } finally {
    await prepared.close();
  }
}

/** The MergeError prepareMerge throws for the adapters (named by their keys) on `base`, as text ('' if none). */
export async function planRefusal(base: Files, adapters: Record<string, Files>): Promise<string> {
  try {
    await (await prepareMerge(memoryInputFileSet(base, 'base'), Object.entries(adapters).map(([name, files]) => ({ files: memoryInputFileSet(files, name) })))).close();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}
