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

/** llama_ftype values (llama.h) by the names llama-quantize and model cards use. */
const FILE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M',
  13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS',
  21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL', 26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S',
  29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16', 36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE', 39: 'NVFP4',
  40: 'Q1_0', 41: 'Q2_0',
};

/** The llama-quantize name of a `general.file_type` value (`Q4_K_M` for 15), if it has one. */
export function fileTypeName(value: number): string | undefined {
  return FILE_TYPE_NAMES[value];
}
