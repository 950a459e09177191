/** The page's side of the merge worker: one promise per request, progress through a callback. */
import type { BackendChoice } from '../src/index.js';
import type {
  AdapterInput, AdapterReading, BackendInfo, MergedFile, OutDTypeChoice, OutputChoice, PickedFile, PlanCheck, PlanSummary, ProgressEvent,
  WorkerRequest, WorkerResponse,
} from './worker-protocol.js';

export class CancelledError extends Error {
  constructor() {
    super('merge cancelled');
    this.name = 'CancelledError';
  }
}

/** A plan that could not be made, with each adapter as it reads alone. */
export class PlanFailedError extends Error {
  constructor(message: string, readonly adapters: AdapterReading[]) {
    super(message);
    this.name = 'PlanFailedError';
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onProgress?: (progress: ProgressEvent) => void;
}

export interface MergeRequest {
  baseName: string;
  base: PickedFile[];
  adapters: AdapterInput[];
  outDtype: OutDTypeChoice;
  /** The output dtype for the merged tensors only; the others are copied as stored. */
  dtypeMergedOnly: boolean;
  output: OutputChoice;
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

type Request = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class MergeWorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Rejected when the worker cannot start at all. */
  readonly started: Promise<void>;

  constructor() {
    this.worker = new Worker(new URL('./merge-worker.ts', import.meta.url), { type: 'module', name: 'loramerge' });
    this.started = new Promise((_, reject) => {
      this.worker.addEventListener('error', (event) => reject(new Error(`the merge worker failed to start: ${event.message}`)), { once: true });
    });
    this.started.catch(() => {});
    this.worker.addEventListener('message', (event: MessageEvent<WorkerResponse>) => this.receive(event.data));
  }

  /** Chooses the backend for later merges; resolves with what `auto` picked (or fails saying why). */
  setBackend(choice: BackendChoice): Promise<BackendInfo> {
    return this.send({ type: 'backend', choice }) as Promise<BackendInfo>;
  }

  plan(baseName: string, base: PickedFile[], adapters: AdapterInput[]): Promise<PlanSummary> {
    return this.send({ type: 'plan', baseName, base, adapters }) as Promise<PlanSummary>;
  }

  /** The plan's problems again at the adapters' current weights. */
  check(baseName: string, base: PickedFile[], adapters: AdapterInput[]): Promise<PlanCheck> {
    return this.send({ type: 'check', baseName, base, adapters }) as Promise<PlanCheck>;
  }

  /** The built-in sample as files, generated in the worker so the page stays responsive. */
  sample(preset: 'small' | 'large'): Promise<{ base: PickedFile[]; adapter: PickedFile[] }> {
    return this.send({ type: 'sample', preset }) as Promise<{ base: PickedFile[]; adapter: PickedFile[] }>;
  }

  /** Deletes a merge's files from browser storage. */
  withdraw(job: string): Promise<void> {
    return this.send({ type: 'withdraw', job }).then(() => undefined);
  }

  /** One zip of a merge's files (in browser storage), named `<folder>.zip`. */
  zip(job: string, folder: string): Promise<File> {
    return this.send({ type: 'zip', job, folder }) as Promise<File>;
  }

  /** Starts a merge; `cancel()` on the returned handle aborts it inside the worker. */
  merge(request: MergeRequest): { done: Promise<MergeDone>; cancel(): void } {
    const { onProgress, ...rest } = request;
    const id = this.nextId;
    const done = this.send({ type: 'merge', ...rest }, onProgress) as Promise<MergeDone>;
    return { done, cancel: () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest) };
  }

  private send(request: Request, onProgress?: (p: ProgressEvent) => void): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ ...request, id } as WorkerRequest);
    });
  }

  private receive(message: WorkerResponse): void {
    const pending = this.pending.get(message.id);
    if (!pending) return;
    switch (message.type) {
      case 'progress':
        pending.onProgress?.(message.progress);
        return;
      case 'backend':
        pending.resolve(message.backend);
        break;
      case 'plan':
        pending.resolve(message.plan);
        break;
      case 'checked':
        pending.resolve(message.check);
        break;
      case 'sample':
        pending.resolve({ base: message.base, adapter: message.adapter });
        break;
      case 'merged':
        pending.resolve({ job: message.job, files: message.files, seconds: message.seconds, backend: message.backend, warnings: message.warnings });
        break;
      case 'done':
        pending.resolve(message.file);
        break;
      case 'plan-failed':
        pending.reject(new PlanFailedError(message.message, message.adapters));
        break;
      case 'cancelled':
        pending.reject(new CancelledError());
        break;
      case 'error':
        pending.reject(new Error(message.message));
        break;
    }
    this.pending.delete(message.id);
  }
}
