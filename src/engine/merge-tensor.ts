/** Merges one tensor: validates the op, runs it on the backend, returns W' in `op.outDtype`. */
import { badArgument, checkSignal, shown } from '../api-arguments.js';
import { asCancel, throwIfAborted } from '../errors.js';
import type { MergeBackend, MergeOp } from './merge-op.js';
import { checkOp } from './op-shape.js';
import { keepUnreachedRows } from './low-rank-factors.js';

/**
 * Runs one {@link MergeOp} on `backend` and returns W′ in `op.outDtype`. An op without a name, or a
 * backend that is none, is a BAD_ARGUMENT MergeError (the op's own checks name its tensor).
 * `signal` cancels it: a MergeError of code ABORTED, named `'AbortError'`, whose `cause` is the
 * signal's reason.
 */
export async function mergeTensor(op: MergeOp, backend: MergeBackend, signal?: AbortSignal): Promise<Uint8Array> {
  if (typeof op !== 'object' || op === null || typeof op.name !== 'string') {
    throw badArgument(`mergeTensor: op must be a MergeOp naming its tensor (op.name), not ${shown(op)}`);
  }
  if (typeof backend !== 'object' || backend === null || typeof backend.merge !== 'function') {
    throw badArgument(`mergeTensor: backend must be a MergeBackend (from createBackend or createNodeBackend), not ${shown(backend)}`);
  }
  checkSignal('mergeTensor: signal', signal);
  throwIfAborted(signal);
  checkOp(op);
  const merged = await backend.merge(op, signal).catch((e: unknown) => {
    throw asCancel(e, signal);
  });
  return keepUnreachedRows(op, merged);
}
