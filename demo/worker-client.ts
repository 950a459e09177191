/** The page's side of the merge worker: one promise per request, progress through a callback. */
import type {
  AdapterInput, MergedFile, OutDTypeChoice, OutputChoice, PickedFile, PlanSummary, ProgressEvent,
  WorkerRequest, WorkerResponse,
} from './worker-protocol.js';

export interface BackendInfo {
  kind: 'webgpu' | 'cpu';
  description: string;
}

export class CancelledError extends Error {
  constructor() {
    super('merge cancelled');
    this.name = 'CancelledError';
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
  output: OutputChoice;
  onProgress(progress: ProgressEvent): void;
}

export class MergeWorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  readonly backend: Promise<BackendInfo>;

  constructor() {
    this.worker = new Worker(new URL('./merge-worker.ts', import.meta.url), { type: 'module', name: 'loramerge' });
    this.backend = new Promise((resolve, reject) => {
      this.worker.addEventListener('error', (event) => reject(new Error(`merge worker failed to start: ${event.message}`)), { once: true });
      this.worker.addEventListener('message', (event: MessageEvent<WorkerResponse>) => {
        if (event.data.type === 'backend') resolve({ kind: event.data.kind, description: event.data.description });
      });
    });
    this.worker.addEventListener('message', (event: MessageEvent<WorkerResponse>) => this.receive(event.data));
  }

  plan(baseName: string, base: PickedFile[], adapters: AdapterInput[]): Promise<PlanSummary> {
    const id = this.nextId++;
    return this.send({ type: 'plan', id, baseName, base, adapters }) as Promise<PlanSummary>;
  }

  /** The built-in sample as files, generated in the worker so the page stays responsive. */
  sample(preset: 'small' | 'large'): Promise<{ base: PickedFile[]; adapter: PickedFile[] }> {
    const id = this.nextId++;
    return this.send({ type: 'sample', id, preset }) as Promise<{ base: PickedFile[]; adapter: PickedFile[] }>;
  }

  /** Starts a merge; `cancel()` on the returned handle aborts it inside the worker. */
  merge(request: MergeRequest): { id: number; done: Promise<{ files: MergedFile[]; seconds: number }>; cancel(): void } {
    const id = this.nextId++;
    const { onProgress, ...rest } = request;
    const done = this.send({ type: 'merge', id, ...rest }, onProgress) as Promise<{ files: MergedFile[]; seconds: number }>;
    return { id, done, cancel: () => this.worker.postMessage({ type: 'cancel', id } satisfies WorkerRequest) };
  }

  private send(request: WorkerRequest, onProgress?: (p: ProgressEvent) => void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject, onProgress });
      this.worker.postMessage(request);
    });
  }

  private receive(message: WorkerResponse): void {
    if (message.type === 'backend') return;
    const pending = this.pending.get(message.id);
    if (!pending) return;
    switch (message.type) {
      case 'progress':
        pending.onProgress?.(message.progress);
        return;
      case 'plan':
        pending.resolve(message.plan);
        break;
      case 'sample':
        pending.resolve({ base: message.base, adapter: message.adapter });
        break;
      case 'merged':
        pending.resolve({ files: message.files, seconds: message.seconds });
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
