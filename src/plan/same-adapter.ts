/**
 * The same adapter given twice is applied twice (its weights add up): legal, but rarely meant, so
 * it is said aloud. Two adapters count as the same when their configs and tensor tables agree and
 * their bytes agree at spread-out samples; checkpoints of one training run share the table but not
 * the values, so they are not confused.
 */
import type { ParsedAdapter } from '../formats/adapter.js';

/** Bytes compared at each of SAMPLES places of two equally long files. */
const SAMPLE_BYTES = 4096;
const SAMPLES = 16;

function tableOf(adapter: ParsedAdapter): string {
  const tensors = adapter.file.tensors.map((t) => [t.name, t.dtype, t.shape, t.offset]);
  return JSON.stringify([adapter.format, adapter.config, adapter.file.metadata, tensors]);
}

async function sameBytes(a: ParsedAdapter, b: ParsedAdapter): Promise<boolean> {
  const size = a.file.source.size;
  if (size !== b.file.source.size) return false;
  const step = Math.max(SAMPLE_BYTES, Math.floor(size / SAMPLES));
  for (let at = 0; at < size; at += step) {
    const length = Math.min(SAMPLE_BYTES, size - at);
    const [x, y] = await Promise.all([a.file.source.read(at, length), b.file.source.read(at, length)]);
    for (let i = 0; i < length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

export async function repeatedAdapterWarnings(adapters: readonly { adapter: ParsedAdapter; weight: number }[]): Promise<string[]> {
  const warnings: string[] = [];
  const tables = adapters.map(({ adapter }) => tableOf(adapter));
  const reported = new Set<number>();
  for (let j = 1; j < adapters.length; j++) {
    for (let i = 0; i < j; i++) {
      if (reported.has(j) || tables[i] !== tables[j] || !(await sameBytes(adapters[i].adapter, adapters[j].adapter))) continue;
      reported.add(j);
      const [a, b] = [adapters[i], adapters[j]];
      const same = a.adapter.name === b.adapter.name ? `${b.adapter.name} is given twice` : `${b.adapter.name} is the same adapter as ${a.adapter.name} (identical files)`;
      warnings.push(`${same}: it is applied twice, weights ${a.weight} and ${b.weight} adding up to ${a.weight + b.weight}; give it once with weight ${a.weight + b.weight} if that is what you mean`);
    }
  }
  return warnings;
}
