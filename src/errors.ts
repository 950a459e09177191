import { boundedMessage, inlineText } from './shown-text.js';

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
  | 'WORKER_FAILED'
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
 *
 * Its `name` is `'MergeError'`, except for a cancel (code ABORTED): that one is named
 * `'AbortError'`, as fetch, streams and the DOM name theirs, so that the abort handling an
 * embedder already has (`if (err.name === 'AbortError') return;`) treats a cancelled merge as
 * it treats a cancelled download. A cancel by an AbortSignal has the signal's `reason` as its `cause`.
 */
export class MergeError extends Error {
  readonly code: MergeErrorCode;
  /**
   * `options.lines` keeps the message's line breaks: only a list of problems (formatProblemList),
   * whose entries have theirs escaped, or a message remade from a MergeError's asks for it. Any
   * other message is one line: a line break in it came from a name it quotes (a tensor "a\nb" of a
   * hostile file), which would otherwise start a false line of its own, so it is written `\u000a`.
   */
  constructor(code: MergeErrorCode, message: string, options?: { cause?: unknown; lines?: boolean }) {
    super(boundedMessage(options?.lines ? message : inlineText(message)), options && 'cause' in options ? { cause: options.cause } : undefined);
    this.name = code === 'ABORTED' ? 'AbortError' : 'MergeError';
    this.code = code;
  }
}

/** True for a {@link MergeError}: a failure the user can fix, with a one-line message. */
export function isMergeError(e: unknown): e is MergeError {
  return e instanceof MergeError;
}

/** Throws ABORTED (named AbortError, its cause the signal's reason) if the signal fired; call between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MergeError('ABORTED', 'merge cancelled', { cause: signal.reason });
}

/**
 * An error as an API call that took `signal` rejects with: once the signal fired, a cancel
 * wherever in the work it stopped (an ABORTED MergeError, a platform AbortError from a fetch, the
 * reason itself) is the call's ABORTED MergeError, named AbortError, whose `cause` is the signal's
 * reason (the caller's own `abort(reason)`, or the AbortError DOMException `abort()` makes).
 * `message` replaces the cancel's message where given; any other error is returned as it is.
 */
export function asCancel(e: unknown, signal: AbortSignal | undefined, message?: string): unknown {
  if (!(signal instanceof AbortSignal) || !signal.aborted) return e;
  const isCancel = (isMergeError(e) && e.code === 'ABORTED') || e === signal.reason || (e instanceof Error && e.name === 'AbortError');
  if (!isCancel) return e;
  const text = message ?? (isMergeError(e) ? e.message : 'merge cancelled');
  if (isMergeError(e) && e.cause === signal.reason && e.message === text) return e;
  return new MergeError('ABORTED', text, { cause: signal.reason });
}
