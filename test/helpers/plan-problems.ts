/**
 * What the plan says of adapters on a base held in memory, for tests of its refusals: the plan's
 * problems, or the MergeError that stops it before there is a plan; and an adapter those tests share.
 */
import { memoryInputFileSet, prepareMerge } from '../../src/index.js';
import { buildSafetensors } from './fixtures.js';
import { randomTensor } from './hf-folder.js';

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

/**
 * A single-file LoRA in diffusers' form (PEFT's key names without `base_model.model.`) on a Llama's
 * `model.layers.0.self_attn.q_proj` (hidden 8, r 2), with `extra` tensors (name and shape) beside it.
 */
export function qProjSingleFile(rand: () => number, extra: [name: string, shape: number[]][] = []): Files {
  const q = 'model.layers.0.self_attn.q_proj';
  return {
    'adapter.safetensors': buildSafetensors([
      randomTensor(`${q}.lora_A.weight`, [2, 8], 'F32', rand), randomTensor(`${q}.lora_B.weight`, [8, 2], 'F32', rand),
      ...extra.map(([name, shape]) => randomTensor(name, shape, 'F32', rand)),
    ]),
  };
}
