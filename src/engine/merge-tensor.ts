/** Merges one tensor: validates the op, runs it on the backend, returns W' in `op.outDtype`. */
import { throwIfAborted } from '../errors.js';
import type { MergeBackend, MergeOp } from './merge-op.js';
import { checkOp } from './op-shape.js';

/** Runs one {@link MergeOp} on `backend` and returns W′ in `op.outDtype`. */
export async function mergeTensor(op: MergeOp, backend: MergeBackend, signal?: AbortSignal): Promise<Uint8Array> {
  throwIfAborted(signal);
  checkOp(op);
  return backend.merge(op, signal);
}
