/**
 * A PEFT method's folder (its adapter_config.json and adapter_model.safetensors) against a
 * one-file base, merged in memory on a backend or prepared only (for the plan and its refusals).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { memoryInputFileSet, prepareMerge, type MergeBackend } from '../../src/index.js';
import { errorLines, runCli } from './cli.js';
import { buildSafetensors, randomValues, roundForDType, tempDirs, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { peftFolder } from './hf-folder.js';
import { mergeInMemory } from './merge-backends.js';

export function fixtureTensor(name: string, dtype: FixtureDType, shape: number[], data: Float64Array): FixtureTensor {
  return { name, dtype, shape, data };
}

/** Random values already on a dtype's grid, drawn from `rand`. */
export function gridValues(rand: () => number): (n: number, dtype: FixtureDType, scale?: number) => Float64Array {
  return (n, dtype, scale = 1) => randomValues(n, rand, scale).map((x) => roundForDType(x, dtype));
}

/** The base's files: model.safetensors, and the model's config.json when one is given. */
function baseFiles(base: FixtureTensor[], modelConfig?: object): Record<string, Uint8Array | string> {
  return { 'model.safetensors': buildSafetensors(base), ...(modelConfig ? { 'config.json': JSON.stringify(modelConfig) } : {}) };
}

export function mergePeftFolder(backend: MergeBackend, base: FixtureTensor[], config: object, tensors: FixtureTensor[], weight = 1, modelConfig?: object) {
  return mergeInMemory({ backend, base: baseFiles(base, modelConfig), adapters: [{ name: 'adapter', files: peftFolder(config, tensors), weight }] });
}

export function preparePeftFolder(base: FixtureTensor[], config: object, tensors: FixtureTensor[], modelConfig?: object) {
  return prepareMerge(memoryInputFileSet(baseFiles(base, modelConfig), 'base'), [{ files: memoryInputFileSet(peftFolder(config, tensors), 'adapter') }]);
}

/**
 * Runs the built CLI's `merge` (or `resize` to rank 1) on a PEFT method's folder written to disk
 * beside a one-file base; returns its exit code, its error lines, and what the folder holds after.
 */
export async function peftFolderOnCli(base: FixtureTensor[], config: object, tensors: FixtureTensor[], command: 'merge' | 'resize' = 'merge') {
  const temp = tempDirs();
  try {
    const dir = temp.make({ 'base.safetensors': buildSafetensors(base), ...Object.fromEntries(Object.entries(peftFolder(config, tensors)).map(([f, d]) => [`adapter/${f}`, d])) });
    const out = join(dir, 'out.safetensors');
    const args = command === 'merge' ? ['merge', '--base', join(dir, 'base.safetensors'), '--adapter', join(dir, 'adapter'), '--out', out, '--backend', 'cpu']
      : ['resize', '--adapter', join(dir, 'adapter'), '--rank', '1', '--out', out, '--backend', 'cpu'];
    const result = await runCli(args);
    return { code: result.code, errors: errorLines(result.stderr), stderr: result.stderr, listing: readdirSync(dir).sort() };
  } finally {
    temp.removeAll();
  }
}

/** The CLI refuses the folder with one error line matching `message` and writes nothing. */
export async function expectPeftCliRefusal(base: FixtureTensor[], config: object, tensors: FixtureTensor[], message: RegExp, command: 'merge' | 'resize' = 'merge'): Promise<void> {
  const r = await peftFolderOnCli(base, config, tensors, command);
  expect(r.code).not.toBe(0);
  expect(r.errors, r.stderr).toHaveLength(1);
  expect(r.errors[0]).toMatch(message);
  expect(r.listing).toEqual(['adapter', 'base.safetensors']);
}
