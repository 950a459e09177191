/** A prepared merge run into memory and read back as a folder (tensors, shards, configs). */
import { createBlobOutputTarget, mergeModel, type MergeBackend, type PreparedMerge } from '../../src/index.js';
import { readMergedFolder, type MergedFolder } from './hf-folder.js';

/**
 * Runs `prepared` on `backend` (closing it after), writing every tensor in `outDtype` when given,
 * in slabs of `slabBytes` when given (4096, the least the pipeline takes, makes slabs end inside
 * tensors' row groups as well as on their edges).
 */
export async function mergeIntoFolder(prepared: PreparedMerge, backend: MergeBackend, outDtype?: 'F32' | 'F16' | 'BF16', slabBytes?: number): Promise<MergedFolder> {
  const output = createBlobOutputTarget();
  try {
    await mergeModel({ prepared, output, backend, ...(outDtype ? { outDtype } : {}), ...(slabBytes ? { slabBytes } : {}) });
  } finally {
    await prepared.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const f of output.files()) files.set(f.path, new Uint8Array(await f.blob.arrayBuffer()));
  return readMergedFolder(files);
}
