/**
 * A merge into a whole diffusers pipeline folder, checked component by component: each written
 * weight file against its base file plus the float64 truth's terms on its folder's keys
 * (`<folder>.<name>`), every other weight file mirrored byte for byte, and the configs copied.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge, type MergeBackend } from '../../src/index.js';
import { createNodeBackend } from '../../src/node.js';
import { buildSafetensors, decodeSafetensors, type FixtureDType } from './fixtures.js';
import { loraTensors, truthTerms, type LoraSpec, type Rand } from './diffusion-fixtures.js';
import { expectMergedFile, type TruthTerm } from './merge-truth.js';

export interface PipelineAdapter { file: string; bytes: Uint8Array; specs: LoraSpec[]; weight: number }

/** Merges, then checks each component file against the truth and the untouched files byte for byte. */
export async function mergePipelineAndCheck(
  backend: MergeBackend, base: Record<string, Uint8Array | string>, adapters: PipelineAdapter[], expectWritten: string[], extraTerms: TruthTerm[] = [],
) {
  const prepared = await prepareMerge(memoryInputFileSet(base, 'pipeline'), adapters.map((a) => ({ files: memoryInputFileSet({ [a.file]: a.bytes }, a.file), weight: a.weight })));
  expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
  expect(prepared.base.kind).toBe('pipeline');
  const output = createBlobOutputTarget();
  await mergeModel({ prepared, output, backend });
  const warnings = prepared.plan.warnings;
  await prepared.close();
  const out = new Map(await Promise.all(output.files().map(async (f) => [f.path, new Uint8Array(await f.blob.arrayBuffer())] as const)));
  const terms = [...adapters.flatMap((a) => truthTerms(decodeSafetensors(a.bytes).tensors, a.specs, a.weight)), ...extraTerms];
  for (const [path, bytes] of Object.entries(base)) {
    if (!path.endsWith('.safetensors')) {
      if (!path.endsWith('.index.json')) expect(new TextDecoder().decode(out.get(path)!), path).toBe(bytes);
      continue;
    }
    if (!out.has(path)) continue;
    const folder = path.slice(0, path.indexOf('/'));
    const local = terms.filter((t) => t.baseKey.startsWith(`${folder}.`)).map((t) => ({ ...t, baseKey: t.baseKey.slice(folder.length + 1) }));
    if (expectWritten.includes(path)) expectMergedFile(decodeSafetensors(bytes as Uint8Array).tensors, decodeSafetensors(out.get(path)!).tensors, local);
    else expect(out.get(path), `${path} is mirrored byte for byte`).toEqual(bytes);
  }
  return { out, warnings };
}

/** A ComfyUI "Extract and Save Lora" module named `name` (lora_up/lora_down, rank 2, no alpha: scale 1), landing on `key`. */
export const comfyExtracted = (name: string, out: number, inF: number, key: string): LoraSpec =>
  ({ down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r: 2, out, in: inF, lands: [{ key }], scale: 1 });

/** The plan's problems and warnings for one LoRA of `specs` (values from `rand`, stored as `dtype`, with the file's `metadata`) on the pipeline folder `base`, at weight 1. */
export async function pipelinePlan(base: Record<string, Uint8Array | string>, specs: LoraSpec[], rand: Rand, dtype: FixtureDType = 'BF16', metadata?: Record<string, string>) {
  const lora = buildSafetensors(loraTensors(rand, specs, dtype), metadata);
  const prepared = await prepareMerge(memoryInputFileSet(base, 'pipeline'), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight: 1 }]);
  try {
    return { problems: prepared.plan.problems.map((p) => p.message), warnings: prepared.plan.warnings };
  } finally {
    await prepared.close();
  }
}

/**
 * A test file's merges of one LoRA of `specs` (values from `rand`, stored as `dtype`, with the file's metadata where given) at `weight`
 * into pipeline folders, on a CPU backend made before the file's tests and disposed after them:
 * merged and checked (mergePipelineAndCheck; `backend()` for merges of the test's own), or only
 * planned (pipelinePlan).
 */
export function onePipelineLora(rand: Rand, weight: number, dtype: FixtureDType = 'BF16') {
  let cpu: MergeBackend | undefined;
  beforeAll(async () => {
    cpu = await createNodeBackend('cpu');
  });
  afterAll(() => cpu?.dispose());
  return {
    backend: () => cpu!,
    mergeAndCheck: (base: Record<string, Uint8Array | string>, specs: LoraSpec[], written: string[], file = 'lora.safetensors', metadata?: Record<string, string>) =>
      mergePipelineAndCheck(cpu!, base, [{ file, bytes: buildSafetensors(loraTensors(rand, specs, dtype), metadata), specs, weight }], written),
    planOf: (base: Record<string, Uint8Array | string>, specs: LoraSpec[], metadata?: Record<string, string>) => pipelinePlan(base, specs, rand, dtype, metadata),
  };
}

/**
 * Merges one LoRA of `specs` (BF16, drawn from `rand`) at `weight` into the single file `base`
 * after checking its plan has no problems; checks the written file against W + ΔW in float64 for
 * the modules that land (a `lands` key) and that the plan updates those alone; returns the
 * warnings.
 */
export async function mergeLoneFileChecked(backend: MergeBackend, rand: Rand, base: Uint8Array, file: string, specs: LoraSpec[], weight: number) {
  const lora = buildSafetensors(loraTensors(rand, specs, 'BF16'));
  const prepared = await prepareMerge(memoryInputFileSet({ [file]: base }, file), [{ files: memoryInputFileSet({ 'lora.safetensors': lora }, 'lora.safetensors'), weight }]);
  try {
    expect(prepared.plan.problems.map((p) => p.message)).toEqual([]);
    const output = createBlobOutputTarget();
    await mergeModel({ prepared, output, backend, slabBytes: 1 << 20 });
    const written = output.files().filter((f) => f.path.endsWith('.safetensors'));
    expect(written.length).toBe(1);
    const terms = truthTerms(decodeSafetensors(lora).tensors, specs.filter((s) => s.lands[0].key !== ''), weight);
    expectMergedFile(decodeSafetensors(base).tensors, decodeSafetensors(new Uint8Array(await written[0].blob.arrayBuffer())).tensors, terms);
    expect(prepared.plan.updates.map((u) => u.baseKey).sort()).toEqual([...new Set(terms.map((t) => t.baseKey))].sort());
    return prepared.plan.warnings;
  } finally {
    await prepared.close();
  }
}
