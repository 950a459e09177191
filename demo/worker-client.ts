/** The page's side of the merge worker: one promise per request, progress through a callback. */
import type { BackendChoice } from '../src/index.js';
import type {
  AdapterInput, AdapterReading, BackendInfo, BaseFacts, MergedFile, OutDTypeChoice, OutputChoice, PickedFile, PlanCheck, PlanSummary, ProgressEvent,
  WorkerRequest, WorkerResponse,
} from './worker-protocol.js';
import { keyed } from './file-keys.js';
import { WorkerRpc, type Outcome } from './worker-rpc.js';

/** Adapters with their Files keyed: what a plan found of their saved tensors is kept for the checks of the same Files. */
const keyedAdapters = (adapters: AdapterInput[]): AdapterInput[] => adapters.map((a) => ({ ...a, files: keyed(a.files) }));

export { CancelledError } from './worker-rpc.js';

/** A plan that could not be made, with each adapter as it reads alone. */
export class PlanFailedError extends Error {
  constructor(message: string, readonly adapters: AdapterReading[]) {
    super(message);
    this.name = 'PlanFailedError';
  }
}

export interface MergeRequest {
  baseName: string;
  base: PickedFile[];
  adapters: AdapterInput[];
  outDtype: OutDTypeChoice;
  /** The output dtype for the merged tensors only; the others are copied as stored. */
  dtypeMergedOnly: boolean;
  output: OutputChoice;
  /** The header's backend choice (`auto` picks per machine and per the merge's dtype). */
  choice: BackendChoice;
  /** Threads of the CPU merge (the library's `threads`); undefined for its default. */
  threads?: number;
  /** An importance matrix for a GGUF base's re-quantized tensors (the CLI's --imatrix). */
  imatrix?: PickedFile;
  onProgress(progress: ProgressEvent): void;
}

export interface MergeDone {
  /** The browser-storage folder holding the files, when they were saved there. */
  job?: string;
  files: MergedFile[];
  seconds: number;
  backend: BackendInfo;
  /** What the merge itself found that the user should know (NaN/Inf copied from the base). */
  warnings: string[];
}

export class MergeWorkerClient {
  private readonly worker: Worker;
  private readonly rpc = new WorkerRpc<WorkerRequest, WorkerResponse>(() => this.worker, outcome);

  /**
   * The page asks for a backend as it loads, so a worker that cannot start, or that dies later,
   * always has a request to report it through: every pending and later request fails with the reason.
   */
  constructor() {
    this.worker = new Worker(new URL('./merge-worker.ts', import.meta.url), { type: 'module', name: 'loramerge' });
    let answered = false;
    this.worker.addEventListener('message', (event: MessageEvent<WorkerResponse>) => {
      answered = true;
      this.rpc.receive(event.data);
    });
    this.worker.addEventListener('error', (event) => {
      // A module worker that fails to load fires a plain error event with no message.
      const why = event.message || 'its script did not load';
      this.rpc.failAll(new Error(answered ? `the merge worker failed: ${why}` : `the merge worker failed to start: ${why}`));
    });
  }

  /**
   * Makes the backend ready for later merges (each merge names its own), with the CPU's `threads`
   * (undefined: the library's default); resolves with what `auto` picked (or fails saying why).
   */
  setBackend(choice: BackendChoice, threads?: number): Promise<BackendInfo> {
    return this.rpc.send({ type: 'backend', choice, threads }).done as Promise<BackendInfo>;
  }

  /**
   * `imatrix`: the importance matrix read on pick (a GGUF base's), which the plan's warnings then
   * name. `signal` cancels the plan inside the worker (newer inputs make it stale): it stops reading
   * and answers with a cancel, never with the plan.
   */
  plan(baseName: string, base: PickedFile[], adapters: AdapterInput[], imatrix?: PickedFile, signal?: AbortSignal): Promise<PlanSummary> {
    const { id, done } = this.rpc.send({ type: 'plan', baseName, base: keyed(base), adapters: keyedAdapters(adapters), ...(imatrix ? { imatrix: keyed([imatrix])[0] } : {}) });
    this.cancelOn(signal, id);
    return done as Promise<PlanSummary>;
  }

  /** Posts a cancel of request `id` when `signal` aborts (at once where it already has). */
  private cancelOn(signal: AbortSignal | undefined, id: number): void {
    if (!signal) return;
    const cancel = () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest);
    if (signal.aborted) cancel();
    else signal.addEventListener('abort', cancel, { once: true });
  }

  /** The base alone, its headers read as the plan reads them; `cancel()` drops it (another base was picked). */
  readBase(baseName: string, base: PickedFile[]): { done: Promise<BaseFacts>; cancel(): void } {
    const { id, done } = this.rpc.send({ type: 'read-base', baseName, base: keyed(base) });
    return { done: done as Promise<BaseFacts>, cancel: () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest) };
  }

  /** An importance matrix read and checked: how many tensors it covers (or fails saying why). */
  readImatrix(file: PickedFile): Promise<number> {
    return this.rpc.send({ type: 'read-imatrix', file: keyed([file])[0] }).done as Promise<number>;
  }

  /** The importance matrix was removed: the worker no longer holds what it read of it. */
  forgetImatrix(): void {
    this.worker.postMessage({ type: 'forget-imatrix', id: 0 } satisfies WorkerRequest);
  }

  /**
   * The plan's problems again at the adapters' current weights, the chosen output dtype and the
   * importance matrix read (if any); `signal` cancels the check inside the worker, as a plan's.
   */
  check(
    baseName: string, base: PickedFile[], adapters: AdapterInput[], settings: { outDtype: OutDTypeChoice; dtypeMergedOnly: boolean; imatrix?: PickedFile }, signal?: AbortSignal,
  ): Promise<PlanCheck> {
    const { imatrix, ...rest } = settings;
    const { id, done } = this.rpc.send({ type: 'check', baseName, base: keyed(base), adapters: keyedAdapters(adapters), ...rest, ...(imatrix ? { imatrix: keyed([imatrix])[0] } : {}) });
    this.cancelOn(signal, id);
    return done as Promise<PlanCheck>;
  }

  /** The built-in sample as files, generated in the worker so the page stays responsive. */
  sample(preset: 'small' | 'large'): Promise<{ base: PickedFile[]; adapter: PickedFile[] }> {
    return this.rpc.send({ type: 'sample', preset }).done as Promise<{ base: PickedFile[]; adapter: PickedFile[] }>;
  }

  /** Deletes a merge's files from browser storage. */
  withdraw(job: string): Promise<void> {
    return this.rpc.send({ type: 'withdraw', job }).done.then(() => undefined);
  }

  /** One zip of a merge's files (in browser storage), named `<folder>.zip`. */
  zip(job: string, folder: string): Promise<File> {
    return this.rpc.send({ type: 'zip', job, folder }).done as Promise<File>;
  }

  /** Starts a merge; `cancel()` on the returned handle aborts it inside the worker. */
  merge(request: MergeRequest): { done: Promise<MergeDone>; cancel(): void } {
    const { onProgress, ...rest } = request;
    // Keyed, so the worker reuses what it read of the very Files it read on pick (the base's headers, the importance matrix).
    const { id, done } = this.rpc.send({ type: 'merge', ...rest, base: keyed(rest.base), ...(rest.imatrix ? { imatrix: keyed([rest.imatrix])[0] } : {}) }, onProgress);
    return { done: done as Promise<MergeDone>, cancel: () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest) };
  }
}

/** What each of the merge worker's own answers settles its request with. */
function outcome(message: Exclude<WorkerResponse, { type: 'progress' | 'cancelled' | 'error' }>): Outcome {
  switch (message.type) {
    case 'backend':
      return { value: message.backend };
    case 'plan':
      return { value: message.plan };
    case 'checked':
      return { value: message.check };
    case 'base-read':
      return { value: message.base };
    case 'imatrix-read':
      return { value: message.tensors };
    case 'sample':
      return { value: { base: message.base, adapter: message.adapter } };
    case 'merged':
      return { value: { job: message.job, files: message.files, seconds: message.seconds, backend: message.backend, warnings: message.warnings } };
    case 'done':
      return { value: message.file };
    case 'plan-failed':
      return { error: new PlanFailedError(message.message, message.adapters) };
  }
}
