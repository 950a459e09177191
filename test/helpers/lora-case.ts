/**
 * One whole-file LoRA case merged and checked: the prepared merge runs on a backend into memory,
 * and every tensor of the output is compared with the float64 truth built from the adapters'
 * specs (what each module's rows are and where they land, written by hand in the test).
 */
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { decodeSafetensors } from './fixtures.js';
import { truthTerms, type LoraSpec } from './diffusion-fixtures.js';
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
