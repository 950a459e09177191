/**
 * Whole-file cases of full diffs and kohya-form LoRA pairs (`lora_down`/`lora_up` with `.alpha`)
 * on a safetensors base: each change names the base tensor it lands on; the adapter is built from
 * the base's shapes (BF16 factors of rank `rank`), merged on the CPU and on WebGPU, and every output
 * tensor is checked against float64 truth written out here: base + weight · diff, base + weight ·
 * (α/r) · up·down; every other tensor copied byte for byte.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, type DecodedTensor, type FixtureTensor } from './fixtures.js';
import { tensor } from './diffusion-fixtures.js';
import { mergeBackends, mergeInMemory } from './merge-backends.js';
import { expectMerged } from './expect-merged.js';

/** One change of the adapter: a diff (shaped like the tensor it lands on) or a LoRA pair with its α. */
export type Change =
  | { kind: 'diff'; name: string; lands: string }
  | { kind: 'lora'; module: string; alpha: number; lands: string };

export const diff = (name: string, lands: string): Change => ({ kind: 'diff', name, lands });
export const lora = (module: string, alpha: number, lands: string): Change => ({ kind: 'lora', module, alpha, lands });

export interface DiffLoraCase {
  name: string;
  base: FixtureTensor[];
  baseFile: string;
  /** Other files of the base (a diffusers folder's config.json). */
  extra?: Record<string, string>;
  weight: number;
  changes: Change[];
}

/** The adapter's tensors: diffs shaped like the tensor they land on, LoRA pairs of rank `rank`, all BF16. */
function adapterTensors(c: DiffLoraCase, rand: () => number, rank: number): FixtureTensor[] {
  const shapes = new Map(c.base.map((t) => [t.name, t.shape]));
  return c.changes.flatMap((ch): FixtureTensor[] => {
    const shape = shapes.get(ch.lands);
    if (!shape) throw new Error(`${c.name}: the base has no ${ch.lands}`);
    if (ch.kind === 'diff') return [tensor(rand, ch.name, shape, 'BF16', 0.5)];
    return [
      tensor(rand, `${ch.module}.lora_down.weight`, [rank, shape[1]], 'BF16', 0.5),
      tensor(rand, `${ch.module}.lora_up.weight`, [shape[0], rank], 'BF16', 0.5),
      { name: `${ch.module}.alpha`, dtype: 'BF16', shape: [], data: [ch.alpha] },
    ];
  });
}

/** base + weight · diff, base + weight · (α/r) · up·down, in float64; null for a tensor no change names. */
function truthOf(c: DiffLoraCase, key: string, w: DecodedTensor, adapter: Map<string, DecodedTensor>, rank: number): Float64Array | null {
  const mine = c.changes.filter((ch) => ch.lands === key);
  if (mine.length === 0) return null;
  const out = w.values.slice();
  for (const ch of mine) {
    if (ch.kind === 'diff') {
      const d = adapter.get(ch.name)!.values;
      for (let i = 0; i < out.length; i++) out[i] += c.weight * d[i];
      continue;
    }
    const down = adapter.get(`${ch.module}.lora_down.weight`)!.values, up = adapter.get(`${ch.module}.lora_up.weight`)!.values;
    const [rows, cols] = w.shape;
    const scale = c.weight * (ch.alpha / rank);
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += up[o * rank + k] * down[k * cols + i];
        out[o * cols + i] += scale * sum;
      }
    }
  }
  return out;
}

/** Registers, per case, "<what> on cpu / webgpu": the merge of its adapter (saved as `adapterFile`) against the truth. */
export function diffLoraCaseSuite(cases: readonly DiffLoraCase[], o: { rand: () => number; rank: number; adapterFile: string; what: string }): void {
  const backends = mergeBackends({ cpu: 'default' });
  for (const c of cases) {
    describe(c.name, () => {
      const baseBytes = buildSafetensors(c.base, { format: 'pt' });
      const adapterBytes = buildSafetensors(adapterTensors(c, o.rand, o.rank));
      for (const kind of ['cpu', 'webgpu'] as const) {
        it(`${o.what}, on ${kind}`, async () => {
          const { tensors: merged } = await mergeInMemory({
            backend: backends[kind]!, base: { [c.baseFile]: baseBytes, ...c.extra },
            adapters: [{ files: { [o.adapterFile]: adapterBytes }, weight: c.weight }],
          });
          const base = decodeSafetensors(baseBytes).tensors;
          const adapter = decodeSafetensors(adapterBytes).tensors;
          expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
          let changed = 0;
          for (const [key, w] of base) {
            const got = merged.get(key)!;
            expect(got.dtype, key).toBe(w.dtype);
            const truth = truthOf(c, key, w, adapter, o.rank);
            if (!truth) expect(got.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
            else {
              expectMerged(got.values, truth, got.dtype, key);
              changed++;
            }
          }
          expect(changed).toBe(new Set(c.changes.map((ch) => ch.lands)).size);
        });
      }
    });
  }
}
