/**
 * The request/response plumbing the page's worker clients share (the merge worker's and the
 * adapter-job worker's): each request gets an id and a promise, progress for that id goes to its
 * callback, and the worker's one answer for it settles the promise.
 */
import type { ProgressEvent } from './worker-protocol.js';

/**
 * A request was cancelled inside the worker before it finished. Named `AbortError`, as the library's
 * own cancel (an ABORTED MergeError) and a cancelled fetch are, so one abort check serves them all.
 */
export class CancelledError extends Error {
  constructor() {
    super('merge cancelled');
    this.name = 'AbortError';
  }
}

/** The answers every worker protocol has besides its own results. */
type CommonResponse =
  | { type: 'progress'; id: number; progress: ProgressEvent }
  | { type: 'cancelled'; id: number }
  | { type: 'error'; id: number; message: string };

/** A request as a client writes it: the id is added when it is sent. */
export type Unsent<R> = R extends { id: number } ? Omit<R, 'id'> : never;

/** What a result answer settles its request with. */
export type Outcome = { value: unknown } | { error: Error };

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onProgress?: (progress: ProgressEvent) => void;
}

/** One worker's pending requests: `Req` the protocol's requests, `Res` its answers, each carrying the request's id. */
export class WorkerRpc<Req extends { id: number }, Res extends { type: string; id: number }> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Set once the worker itself has failed: a dead worker never answers, so later requests fail at once. */
  private failure?: Error;

  /**
   * `worker` gives the worker to post to (it may start it on first use); `outcome` says what each
   * answer of the protocol's own (not progress, cancelled or error) settles its request with.
   */
  constructor(
    private readonly worker: () => Worker,
    private readonly outcome: (response: Exclude<Res, CommonResponse>) => Outcome,
  ) {}

  /** Posts the request; `id` addresses it later (a cancel), `done` settles with the worker's answer. */
  send(request: Unsent<Req>, onProgress?: (p: ProgressEvent) => void): { id: number; done: Promise<unknown> } {
    const id = this.nextId++;
    if (this.failure) return { id, done: Promise.reject(this.failure) };
    const worker = this.worker();
    const done = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      worker.postMessage({ ...request, id } as unknown as Req);
    });
    return { id, done };
  }

  /** Hands an answer from the worker to its request; answers for no pending request are dropped. */
  receive(response: Res): void {
    const pending = this.pending.get(response.id);
    if (!pending) return;
    const common = response as CommonResponse;
    if (common.type === 'progress') {
      pending.onProgress?.(common.progress);
      return;
    }
    if (common.type === 'cancelled') pending.reject(new CancelledError());
    else if (common.type === 'error') pending.reject(new Error(common.message));
    else {
      const settled = this.outcome(response as Exclude<Res, CommonResponse>);
      if ('error' in settled) pending.reject(settled.error);
      else pending.resolve(settled.value);
    }
    this.pending.delete(response.id);
  }

  /** The worker itself failed: rejects every pending request, and every later one, with `error`. */
  failAll(error: Error): void {
    this.failure ??= error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}
