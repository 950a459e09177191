/**
 * Random tensors of fp8 checkpoints' tests (DeepSeek-V3.1, DeepSeek-V4): finite e4m3fn codes and
 * BF16 tensors of values on a 1/256 grid in [-1, 1], drawn from the test's own seeded stream; a
 * merge's output read back raw.
 */
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import type { FixtureTensor } from './fixtures.js';

export function fp8CheckpointFixtures(rand: () => number) {
  return {
    /** A finite e4m3fn code (not 0x7f / 0xff). */
    e4m3Code: (): number => {
      const c = Math.floor(rand() * 254);
      return c >= 0x7f ? c + 1 : c;
    },
    /** A BF16 tensor of values on a 1/256 grid in [-1, 1]. */
    bf16: (name: string, shape: number[]): FixtureTensor => ({
      name, dtype: 'BF16', shape, data: Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.round((rand() * 2 - 1) * 256) / 256),
    }),
  };
}

/** A written tensor as stored: dtype, shape and bytes, for dtypes the fixtures do not decode (F8_E8M0, packed FP4). */
export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** The tensors of a written safetensors file, raw. */
export function rawTensors(bytes: Uint8Array): Map<string, RawTensor> {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) if (name !== '__metadata__') out.set(name, { dtype: t.dtype, shape: t.shape, bytes: bytes.slice(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) });
  return out;
}

/** Merges `prepared` (closed afterwards) in slabs of 4 KiB: the one-file model's tensors raw, and its config.json. */
export async function mergeRaw(prepared: PreparedMerge, backend: MergeBackend, outDtype?: 'BF16' | 'F32'): Promise<{ tensors: Map<string, RawTensor>; config: Record<string, unknown> }> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend, ...(outDtype ? { outDtype } : {}), slabBytes: 4096 });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return { tensors: rawTensors(files.get('model.safetensors')!), config: JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown> };
}
