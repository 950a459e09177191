/**
 * A merge in memory of a base folder holding one `model.safetensors` and a `config.json`, with
 * slabs small enough that every weight streams in several: the files written, decoded.
 */
import { expect } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../../src/index.js';
import { decodeSafetensors } from './fixtures.js';

type Files = Record<string, Uint8Array | string>;

/** Merges `adapter` at `weight` into `base` (the plan must have no problems); written paths, tensors and config.json. */
export async function mergeSingleFile(base: Files, adapter: Files, backend: MergeBackend, weight: number, outDtype?: string) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter'), weight }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend, outDtype, slabBytes: 4096 });
  } finally {
    await prepared.close();
  }
  const files = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
  return {
    paths: [...files.keys()].sort(),
    weights: decodeSafetensors(files.get('model.safetensors')!).tensors,
    config: JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown>,
  };
}
