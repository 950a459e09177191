import { boundedMessage } from './shown-text.js';

/**
 * Every failure a user can cause is a MergeError: one line that names the file, tensor or module
 * at fault. Front ends print `error: <message>` and nothing else; other errors are bugs.
 * This is its `code`, which says what kind of failure it is.
 */
export type MergeErrorCode =
  // safetensors format rules, in the order they are checked
  | 'HEADER_TOO_SMALL'
  | 'HEADER_TOO_LARGE'
  | 'INVALID_HEADER'
  | 'INVALID_DTYPE'
  | 'INVALID_SHAPE'
  | 'INVALID_OFFSET'
  | 'SIZE_MISMATCH'
  | 'OVERLAP'
  | 'TRAILING_BYTES'
  | 'TRUNCATED'
  // models and adapters
  | 'NOT_FOUND'
  | 'UNSUPPORTED_FORMAT'
  | 'PICKLE_REFUSED'
  | 'BAD_CONFIG'
  | 'UNKNOWN_MODULE'
  | 'AMBIGUOUS_MODULE'
  | 'SHAPE_MISMATCH'
  | 'PLAN_INVALID'
  // running
  | 'NON_FINITE'
  | 'DORA_NORM'
  | 'GPU_UNAVAILABLE'
  | 'GPU_FAILURE'
  | 'OUTPUT_IS_INPUT'
  | 'OUTPUT_EXISTS'
  | 'OUTPUT_BUSY'
  | 'INPUT_CHANGED'
  | 'LIMIT_EXCEEDED'
  | 'FILESYSTEM'
  | 'ABORTED'
  | 'BAD_ARGUMENT';

/**
 * A failure the user caused or can fix, with a one-line message naming the file, tensor or module.
 * The message quotes names from files, so it is made safe to show as it is built: control
 * characters escaped (`\u001b`) and its length bounded (see shown-text.ts).
 */
export class MergeError extends Error {
  readonly code: MergeErrorCode;
  constructor(code: MergeErrorCode, message: string, options?: { cause?: unknown }) {
    super(boundedMessage(message), options);
    this.name = 'MergeError';
    this.code = code;
  }
}

/** True for a {@link MergeError}: a failure the user can fix, with a one-line message. */
export function isMergeError(e: unknown): e is MergeError {
  return e instanceof MergeError;
}

/** Throws ABORTED if the signal fired; call between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MergeError('ABORTED', 'merge cancelled');
}
