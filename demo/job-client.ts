/**
 * The page's side of the adapter-job worker. The worker starts on first use, so a visit that only
 * merges never loads it.
 */
import type { BackendChoice } from '../src/index.js';
import type { AdapterFacts, JobDone, JobInput, JobRequest, JobResponse, JobSpec } from './job-protocol.js';
import type { ProgressEvent } from './worker-protocol.js';
import { CancelledError } from './worker-client.js';

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onProgress?: (progress: ProgressEvent) => void;
}

type Request = JobRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class JobWorkerClient {
  private worker?: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  describe(adapter: JobInput): Promise<AdapterFacts> {
    return this.send({ type: 'describe', adapter }) as Promise<AdapterFacts>;
  }

  /** Starts a job; `cancel()` aborts it inside the worker (the promise then rejects with CancelledError). */
  run(spec: JobSpec, backend: BackendChoice, outName: string, onProgress: (p: ProgressEvent) => void): { done: Promise<JobDone>; cancel(): void } {
    const id = this.nextId;
    const done = this.send({ type: 'run', spec, backend, outName }, onProgress) as Promise<JobDone>;
    return { done, cancel: () => this.start().postMessage({ type: 'cancel', id } satisfies JobRequest) };
  }

  /** Deletes a result's files from browser storage. */
  withdraw(job: string): Promise<void> {
    return this.send({ type: 'withdraw', job }).then(() => undefined);
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./job-worker.ts', import.meta.url), { type: 'module', name: 'loramerge-jobs' });
    worker.addEventListener('message', (event: MessageEvent<JobResponse>) => this.receive(event.data));
    worker.addEventListener('error', (event) => {
      const error = new Error(`the adapter worker failed: ${event.message}`);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    });
    this.worker = worker;
    return worker;
  }

  private send(request: Request, onProgress?: (p: ProgressEvent) => void): Promise<unknown> {
    const id = this.nextId++;
    const worker = this.start();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      worker.postMessage({ ...request, id } as JobRequest);
    });
  }

  private receive(message: JobResponse): void {
    const pending = this.pending.get(message.id);
    if (!pending) return;
    switch (message.type) {
      case 'progress':
        pending.onProgress?.(message.progress);
        return;
      case 'described':
        pending.resolve(message.facts);
        break;
      case 'finished':
        pending.resolve(message.done);
        break;
      case 'withdrawn':
        pending.resolve(undefined);
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
