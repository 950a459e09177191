/**
 * A PEFT method's folder (its adapter_config.json and adapter_model.safetensors) against a
 * one-file base, merged in memory on a backend or prepared only (for the plan and its refusals).
 */
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../../src/index.js';
import { buildSafetensors, randomValues, roundForDType, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { peftFolder } from './hf-folder.js';
import { mergeInMemory } from './merge-backends.js';

export function fixtureTensor(name: string, dtype: FixtureDType, shape: number[], data: Float64Array): FixtureTensor {
  return { name, dtype, shape, data };
}

/** Random values already on a dtype's grid, drawn from `rand`. */
export function gridValues(rand: () => number): (n: number, dtype: FixtureDType, scale?: number) => Float64Array {
  return (n, dtype, scale = 1) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));
}

export function mergePeftFolder(backend: MergeBackend, base: FixtureTensor[], config: object, tensors: FixtureTensor[], weight = 1) {
  return mergeInMemory({ backend, base: { 'model.safetensors': buildSafetensors(base) }, adapters: [{ name: 'adapter', files: peftFolder(config, tensors), weight }] });
}

export function preparePeftFolder(base: FixtureTensor[], config: object, tensors: FixtureTensor[]) {
  return prepareMerge(memoryInputFileSet({ 'model.safetensors': buildSafetensors(base) }, 'base'), [{ files: memoryInputFileSet(peftFolder(config, tensors), 'adapter') }]);
}
