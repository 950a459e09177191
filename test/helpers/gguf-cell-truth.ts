/**
 * PEFT LoRAs on GGUF bases checked cell by cell: each trained module says, for every tensor it
 * lands on, which cell of its ΔW (row, column) each GGUF (row, column) holds, written in the test
 * from what convert_hf_to_gguf does to the weight. The truth is float64: base + scale · B·A at
 * that cell; every tensor no module lands on must come back byte for byte.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor } from './fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, typeName, type MetaValue } from './gguf-builder.js';
import { expectMerged } from './expect-merged.js';
import { mergeFileInMemory } from './merge-backends.js';
import type { MergeBackend } from '../../src/index.js';

export function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

/** Which cell of ΔW (row, column) a GGUF tensor's (row, column) holds, or undefined for none. */
export type Cell = (row: number, col: number) => [number, number] | undefined;
export interface Landing { tensor: string; cell: Cell }
/** A trained module: its HF path, ΔW (out, in), and where the converter put ΔW's cells. */
export interface Target { module: string; out: number; in: number; lands: Landing[]; embedding?: true }

export const whole = (tensor: string): Landing[] => [{ tensor, cell: (row, col) => [row, col] }];
/** An embedding's LoRA: ΔW = B·A is (embedding dim, vocabulary), added to the (vocabulary, dim) weight transposed. */
export const transposedWhole = (tensor: string): Landing[] => [{ tensor, cell: (row, col) => [col, row] }];
/** Expert e's `per` rows of a stacked expert tensor (E, per, in), seen as E·per rows. */
export const expert = (tensor: string, e: number, per: number): Landing[] => [
  { tensor, cell: (row, col) => (row >= e * per && row < (e + 1) * per ? [row - e * per, col] : undefined) },
];

export interface CellCase {
  arch: string;
  hfModel: string;
  /** GGUF tensors as [name, ne (columns first), type where not BF16 (1-D ones are F32)]. */
  tensors: [string, number[], string?][];
  metadata: [string, MetaValue][];
  targets: Target[];
  rank: number;
  alpha: number;
}

export interface CellBase { bytes: Uint8Array; values: Map<string, Float64Array>; shapes: Map<string, number[]> }

/** The base GGUF, BF16 as the converter writes it: its architecture and name, `common` keys, the case's keys. */
export function cellBaseGguf(c: CellCase, common: [string, MetaValue][]): CellBase {
  const specs = c.tensors.map(([name, ne, type]) => ({ name, ne, type: type ?? (ne.length === 1 ? 'F32' : 'BF16') }));
  const { tensors, values } = randomTensors(specs, gaussian(3));
  const metadata: [string, MetaValue][] = [
    ['general.architecture', { type: 'string', value: c.arch }], ['general.name', { type: 'string', value: `${c.arch} tiny` }],
    ...common, ...c.metadata, ['general.file_type', { type: 'u32', value: 32 }], // LLAMA_FTYPE_MOSTLY_BF16
  ];
  return { bytes: buildGguf({ metadata, tensors }), values, shapes: new Map(specs.map((s) => [s.name, s.ne])) };
}

/** The adapter's files (`config` and `tensors` added to PEFT's), and each module's factors. */
export function cellPeftAdapter(c: CellCase, targets = c.targets, config: Record<string, unknown> = {}, tensors: FixtureTensor[] = []) {
  const g = gaussian(29);
  const factors = targets.map((t) => ({
    ...t,
    a: Float64Array.from({ length: c.rank * t.in }, () => Math.fround(0.1 * g())),
    b: Float64Array.from({ length: t.out * c.rank }, () => Math.fround(0.1 * g())),
  }));
  const files = {
    'adapter_config.json': JSON.stringify({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: c.hfModel, r: c.rank, lora_alpha: c.alpha,
      target_modules: [...new Set(targets.map((t) => t.module.split('.').at(-1)))], peft_version: '0.17.1', ...config,
    }),
    // PEFT names an Embedding's factors lora_embedding_A (r, vocabulary) and lora_embedding_B (dim, r).
    'adapter_model.safetensors': buildSafetensors([...factors.flatMap((f): FixtureTensor[] => [
      { name: `base_model.model.${f.module}.${f.embedding ? 'lora_embedding_A' : 'lora_A.weight'}`, dtype: 'F32', shape: [c.rank, f.in], data: f.a },
      { name: `base_model.model.${f.module}.${f.embedding ? 'lora_embedding_B' : 'lora_B.weight'}`, dtype: 'F32', shape: [f.out, c.rank], data: f.b },
    ]), ...tensors]),
  };
  return { files, factors };
}

/** The merged GGUF (F32, or the base's type where it is kept) holds base + scale · ΔW at each landing's cells, and every other tensor as it was. */
export function expectCellsMerged(
  merged: Uint8Array, base: CellBase, factors: ReturnType<typeof cellPeftAdapter>['factors'], rank: number, scale: number,
): void {
  const out = readGguf(merged);
  const expected = new Map<string, Float64Array>();
  for (const f of factors) {
    for (const { tensor, cell } of f.lands) {
      const ne = base.shapes.get(tensor)!;
      const cols = ne[0], rows = ne.slice(1).reduce((x, y) => x * y, 1);
      const want = expected.get(tensor) ?? base.values.get(tensor)!.slice();
      for (let row = 0; row < rows; row++) {
        for (let col = 0; col < cols; col++) {
          const at = cell(row, col);
          if (!at) continue;
          let sum = 0;
          for (let k = 0; k < rank; k++) sum += f.b[at[0] * rank + k] * f.a[k * f.in + at[1]];
          want[row * cols + col] += scale * sum;
        }
      }
      expected.set(tensor, want);
    }
  }
  for (const [tensor, want] of expected) {
    // Merged tensors come back F32, but those llama-quantize leaves alone keep the base's type (a BF16 router).
    const merged = out.tensors.find((t) => t.name === tensor)!;
    const type = typeName(merged.typeId) as 'F32' | 'BF16';
    expectMerged(tensorValues(type, merged.data), want, type, tensor);
  }
  for (const t of readGguf(base.bytes).tensors.filter((x) => !expected.has(x.name))) {
    expect(Buffer.from(out.tensors.find((x) => x.name === t.name)!.data).equals(Buffer.from(t.data)), t.name).toBe(true);
  }
}

/**
 * For each case, on each backend (skipped where absent): the case's adapter at `weight`, merged
 * into its base, holds what expectCellsMerged says.
 */
export function describeCellCases<C extends CellCase & { name: string }>(
  cases: C[], baseGguf: (c: C) => CellBase, weight: number, backends: Record<string, MergeBackend | undefined>,
): void {
  describe.each(cases)('PEFT LoRA on a $name GGUF', (c) => {
    const base = baseGguf(c);
    const adapter = cellPeftAdapter(c);

    it.for(['cpu', 'webgpu'])('lands each module where the converter put its weight, as float64 truth says, on %s', async (name, ctx) => {
      const backend = backends[name];
      if (!backend) return ctx.skip();
      const { bytes } = await mergeFileInMemory({
        backend, base: { [`${c.arch}-tiny-BF16.gguf`]: base.bytes }, adapters: [{ files: adapter.files, name: `${c.arch}-lora`, weight }],
        outDtype: 'f32', dtypeMergedOnly: true, slabBytes: 1024,
      });
      expectCellsMerged(bytes, base, adapter.factors, c.rank, weight * c.alpha / c.rank);
    });
  });
}
