/**
 * One whole-file LoRA case merged and checked: the prepared merge runs on a backend into memory,
 * and every tensor of the output is compared with the float64 truth built from the adapters'
 * specs (what each module's rows are and where they land, written by hand in the test).
 */
import { describe, expect, it } from 'vitest';
import { LAYOUTS, type Layout } from '../../src/formats/layouts/index.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { buildSafetensors, decodeSafetensors, type FixtureDType } from './fixtures.js';
import { loraTensors, truthTerms, type LoraSpec } from './diffusion-fixtures.js';
import { mergeBackends } from './merge-backends.js';
import { expectMergedFile } from './merge-truth.js';

export interface LoraCaseAdapter {
  /** The adapter file's bytes, as given to the merge. */
  bytes: Uint8Array;
  specs: LoraSpec[];
  weight: number;
}

/**
 * Merges `prepared` (closing it) and checks the output's weights file against `base` plus every
 * adapter's terms; returns the decoded output for further checks (its metadata, for example).
 */
export async function mergeAndCheckLoraCase(
  prepared: PreparedMerge, backend: MergeBackend, base: Record<string, Uint8Array | string>, adapters: LoraCaseAdapter[],
): Promise<ReturnType<typeof decodeSafetensors>> {
  const output = createBlobOutputTarget();
  await mergeModel({ prepared, output, backend });
  await prepared.close();
  const weights = output.files().find((f) => f.path.endsWith('.safetensors'))!;
  const merged = decodeSafetensors(new Uint8Array(await weights.blob.arrayBuffer()));
  const baseBytes = base[Object.keys(base).find((p) => p.endsWith('.safetensors'))!] as Uint8Array;
  const terms = adapters.flatMap((a) => truthTerms(decodeSafetensors(a.bytes).tensors, a.specs, a.weight));
  expectMergedFile(decodeSafetensors(baseBytes).tensors, merged.tensors, terms);
  return merged;
}

/** One adapter of a whole-file case: its file name, modules, user weight, metadata; a PEFT folder's name and config. */
export interface LoraCaseAdapterSpec {
  file: string;
  specs: LoraSpec[];
  weight: number;
  metadata?: Record<string, string>;
  /** A PEFT folder: its name and adapter_config.json. */
  folder?: { name: string; config: string };
}

/** A whole-file case: a base (file or folder) and the adapters merged into it. */
export interface LoraCase {
  name: string;
  base: Record<string, Uint8Array | string>;
  baseName: string;
  adapters: LoraCaseAdapterSpec[];
  layout?: string;
}

/**
 * The cases' adapter files (random factors in `dtype`) and a `prepare` for each case; registers,
 * per case, "merges exactly on cpu / webgpu": no plan problems, nothing left out, every output
 * tensor against the float64 truth.
 */
export function loraCaseSuite(cases: readonly LoraCase[], rand: () => number, dtype: FixtureDType) {
  const bytes = new Map(cases.flatMap((c) => c.adapters.map((a) => [a, buildSafetensors(loraTensors(rand, a.specs, dtype), a.metadata)] as const)));
  const prepare = (c: LoraCase) => prepareMerge(memoryInputFileSet(c.base, c.baseName), c.adapters.map((a) => ({
    files: a.folder
      ? memoryInputFileSet({ [a.file]: bytes.get(a)!, 'adapter_config.json': a.folder.config }, a.folder.name)
      : memoryInputFileSet({ [a.file]: bytes.get(a)! }, a.file),
    weight: a.weight,
  })));
  const backends = mergeBackends({ cpu: 'default' });
  for (const c of cases) {
    describe(c.name, () => {
      for (const kind of ['cpu', 'webgpu'] as const) {
        it(`merges exactly on ${kind}`, async () => {
          const prepared = await prepare(c);
          expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
          expect(prepared.plan.leftOut).toEqual([]);
          await mergeAndCheckLoraCase(prepared, backends[kind]!, c.base, c.adapters.map((a) => ({ bytes: bytes.get(a)!, specs: a.specs, weight: a.weight })));
        });
      }
    });
  }
  return { prepare, adapterBytes: (a: LoraCaseAdapterSpec) => bytes.get(a)! };
}

/** Runs `run` with `layout` taken out of the layout registry (put back afterwards, where it was). */
export async function withoutLayout<T>(layout: Layout, run: () => Promise<T>): Promise<T> {
  const registry = LAYOUTS as Layout[];
  const at = registry.indexOf(layout);
  expect(at).toBeGreaterThanOrEqual(0);
  registry.splice(at, 1);
  try {
    return await run();
  } finally {
    registry.splice(at, 0, layout);
  }
}

/**
 * For each case: the plan places modules by `layout` (by it alone where `only`), and with `layout` taken
 * out of the registry the same case has problems: the layout is what makes the case merge.
 */
export async function expectLayoutNeeded(
  prepare: (c: LoraCase) => Promise<PreparedMerge>, cases: readonly LoraCase[], layout: Layout, { only = false } = {},
): Promise<void> {
  for (const k of cases) {
    const prepared = await prepare(k);
    const used = new Set(prepared.plan.updates.flatMap((u) => u.terms.map((t) => t.layout)));
    if (only) expect(used, k.name).toEqual(new Set([layout.name]));
    else expect(used.has(layout.name), k.name).toBe(true);
    await prepared.close();
    await withoutLayout(layout, async () => {
      const p = await prepare(k);
      expect(p.plan.problems.length, k.name).toBeGreaterThan(0);
      await p.close();
    });
  }
}

/** The plan's problems for one LoRA of `specs` (random factors in BF16) on `base`. */
export async function planProblemsOf(base: Record<string, Uint8Array | string>, baseName: string, specs: LoraSpec[], rand: () => number): Promise<string[]> {
  const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
  const prepared = await prepareMerge(memoryInputFileSet(base, baseName), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
  const problems = prepared.plan.problems.map((p) => p.message);
  await prepared.close();
  return problems;
}
