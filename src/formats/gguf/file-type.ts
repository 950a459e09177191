/**
 * `general.file_type` (llama_ftype) for a merged file. When every tensor keeps its type, the
 * base's value stays. When merged tensors change type (--dtype), the value names the type holding
 * the most weights, mapped as llama.cpp's loader maps it when it guesses a file's type; if that
 * type is the base's dominant one too, the base's finer label (Q4_K_S vs Q4_K_M) stays.
 */
import type { StoredShard } from '../container.js';

/** GGML type → llama_ftype, as llama-model-loader.cpp maps the most common tensor type. */
const FTYPE_OF_TYPE: Readonly<Record<string, number>> = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K: 12, Q4_K: 15, Q5_K: 17, Q6_K: 18,
  IQ2_XXS: 19, IQ2_XS: 20, IQ3_XXS: 23, IQ1_S: 24, IQ4_NL: 25, IQ3_S: 26, IQ2_S: 28, IQ4_XS: 30, IQ1_M: 31,
  BF16: 32, TQ1_0: 36, TQ2_0: 37, MXFP4: 38, NVFP4: 39, Q1_0: 40, Q2_0: 41,
};

/** The type holding the most elements. */
export function dominantType(shards: readonly StoredShard[]): string | undefined {
  const elements = new Map<string, bigint>();
  for (const shard of shards) {
    for (const t of shard.tensors) {
      const n = t.shape.reduce((p, d) => p * BigInt(d), 1n);
      elements.set(t.type, (elements.get(t.type) ?? 0n) + n);
    }
  }
  let best: string | undefined;
  for (const [type, n] of elements) if (best === undefined || n > elements.get(best)!) best = type;
  return best;
}

/** The merged file's general.file_type given the base's value and both files' tensor types. */
export function mergedFileType(baseValue: number, input: readonly StoredShard[], output: readonly StoredShard[]): number {
  const unchanged = input.every((s, i) => s.tensors.every((t, j) => output[i].tensors[j].type === t.type));
  if (unchanged) return baseValue;
  const before = dominantType(input);
  const after = dominantType(output);
  if (after === undefined || after === before) return baseValue;
  return FTYPE_OF_TYPE[after] ?? baseValue;
}
