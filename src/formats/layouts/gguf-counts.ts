/**
 * The counts convert_hf_to_gguf's row orders depend on (heads, kv heads, experts, ranks), read from
 * a GGUF base's metadata, and the refusal for a module that cannot be placed because a count is
 * missing or does not fit the tensors. A hand-edited or truncated header would otherwise surface
 * as "no matching tensor", which points at the adapter rather than at the metadata key at fault.
 */
import type { BaseView, LayoutResolution } from './layout.js';

/** A positive safe integer (GGUF stores counts as u32 or u64), or undefined. */
export function positiveInt(value: unknown): number | undefined {
  const n = typeof value === 'bigint' ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** A per-layer metadata value (hybrid models write head counts as one per block), for `block`. */
export function perBlock(value: unknown, block: string): number | undefined {
  return positiveInt(Array.isArray(value) ? value[Number(block)] : value);
}

/** A count read from the metadata, or why there is none, as a clause naming the key. */
export type Count = { n: number; why?: undefined } | { n?: undefined; why: string };

const shown = (value: unknown): string => (typeof value === 'string' ? JSON.stringify(value) : String(value));

/**
 * The count under `key`: one per block where the value is an array (then `block` picks it). A
 * missing key, a zero, a non-integer, or a block past the array's end is a reason naming the key.
 */
export function metadataCount(base: BaseView, key: string, block?: string): Count {
  const raw = base.metadata?.(key);
  const n = block === undefined ? positiveInt(raw) : perBlock(raw, block);
  if (n !== undefined) return { n };
  if (raw === undefined) return { why: `the GGUF records no ${key}` };
  if (Array.isArray(raw)) {
    const index = Number(block);
    return { why: index < raw.length ? `the GGUF's ${key} gives block ${block} ${shown(raw[index])}` : `the GGUF's ${key} has ${raw.length} per-block entries, none for block ${block}` };
  }
  return { why: `the GGUF's ${key} is ${shown(raw)}, not a positive count` };
}

/** A count with what it counts and the key it came from ("8 heads (llama.attention.head_count)"), for messages. */
export const counted = (n: number, what: string, key: string): string => `${n} ${what} (${key})`;

/**
 * Refused because the converter's row order for this module cannot be rebuilt from the file:
 * `reason` names the metadata key or tensor shape at fault.
 */
export function unplaceable(reason: string): LayoutResolution {
  return {
    found: false, ambiguous: false, candidates: [],
    why: `cannot be placed where convert_hf_to_gguf put its rows: ${reason}; check the GGUF is whole and unedited, or merge into the safetensors model and convert that`,
  };
}
