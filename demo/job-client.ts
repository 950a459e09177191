/**
 * The page's side of the adapter-job worker. The worker starts on first use, so a visit that only
 * merges never loads it.
 */
import type { BackendChoice } from '../src/index.js';
import type { AdapterFacts, JobDone, JobInput, JobRequest, JobResponse, JobSpec, ModelSlot } from './job-protocol.js';
import type { BaseFacts, ProgressEvent } from './worker-protocol.js';
import { keyed } from './file-keys.js';
import { WorkerRpc, type Outcome } from './worker-rpc.js';

export class JobWorkerClient {
  private worker?: Worker;
  private readonly rpc = new WorkerRpc<JobRequest, JobResponse>(() => this.start(), outcome);

  /** `check: 'convert'`: picked for a conversion, the facts also say why convert cannot take it (convertRefusal). */
  describe(adapter: JobInput, check?: 'convert'): Promise<AdapterFacts> {
    // Keyed: the job then reads through what this reading kept of the very same Files.
    return this.rpc.send({ type: 'describe', adapter: { ...adapter, files: keyed(adapter.files) }, ...(check && { check }) }).done as Promise<AdapterFacts>;
  }

  /** A model's headers read (an extraction's base or fine-tuned model, a conversion's model); `cancel()` drops it (another was picked). */
  readModel(model: JobInput, slot: ModelSlot): { done: Promise<BaseFacts>; cancel(): void } {
    const { id, done } = this.rpc.send({ type: 'read-model', model: { ...model, files: keyed(model.files) }, slot });
    return { done: done as Promise<BaseFacts>, cancel: () => this.start().postMessage({ type: 'cancel', id } satisfies JobRequest) };
  }

  /** Once both are read: the line convert refuses `adapter` with on `model`, or undefined where it takes it. */
  checkConvert(adapter: JobInput, model: JobInput): Promise<string | undefined> {
    return this.rpc.send({ type: 'check-convert', adapter: { ...adapter, files: keyed(adapter.files) }, model: { ...model, files: keyed(model.files) } }).done as Promise<string | undefined>;
  }

  /**
   * Starts a job on `backend` with the CPU's `threads` (undefined: the library's default);
   * `cancel()` aborts it inside the worker (the promise then rejects with CancelledError).
   */
  run(spec: JobSpec, backend: BackendChoice, threads: number | undefined, outName: string, onProgress: (p: ProgressEvent) => void): { done: Promise<JobDone>; cancel(): void } {
    // Every input keyed, so the worker reuses the headers it read when each was picked.
    const key = <T extends JobInput>(input: T): T => ({ ...input, files: keyed(input.files) });
    const sent: JobSpec = spec.kind === 'combine' ? { ...spec, adapters: spec.adapters.map(key) }
      : spec.kind === 'resize' ? { ...spec, adapter: key(spec.adapter) }
        : spec.kind === 'convert' ? { ...spec, adapter: key(spec.adapter), base: key(spec.base) }
          : { ...spec, base: key(spec.base), tuned: key(spec.tuned) };
    const { id, done } = this.rpc.send({ type: 'run', spec: sent, backend, outName, threads }, onProgress);
    return { done: done as Promise<JobDone>, cancel: () => this.start().postMessage({ type: 'cancel', id } satisfies JobRequest) };
  }

  /** Deletes a result's files from browser storage. */
  withdraw(job: string): Promise<void> {
    return this.rpc.send({ type: 'withdraw', job }).done.then(() => undefined);
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./job-worker.ts', import.meta.url), { type: 'module', name: 'loramerge-jobs' });
    worker.addEventListener('message', (event: MessageEvent<JobResponse>) => this.rpc.receive(event.data));
    worker.addEventListener('error', (event) => this.rpc.failAll(new Error(`the adapter worker failed: ${event.message || 'its script did not load'}`)));
    this.worker = worker;
    return worker;
  }
}

/** What each of the job worker's own answers settles its request with. */
function outcome(message: Exclude<JobResponse, { type: 'progress' | 'cancelled' | 'error' }>): Outcome {
  switch (message.type) {
    case 'described':
      return { value: message.facts };
    case 'model-read':
      return { value: message.facts };
    case 'convert-checked':
      return { value: message.refusal };
    case 'finished':
      return { value: message.done };
    case 'withdrawn':
      return { value: undefined };
  }
}
