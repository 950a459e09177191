/**
 * A page worker that fails must fail the page's requests, never leave them waiting: one that cannot
 * load its script, or that throws outside any request, rejects every pending request and every later
 * one with the reason; a request whose own synchronous part throws is answered with that error.
 * Runs without a browser: the Worker here is a stand-in that records what is posted to it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

class StandInWorker extends EventTarget {
  static made: StandInWorker[] = [];
  readonly posted: { type: string; id: number }[] = [];
  constructor(readonly url: URL) {
    super();
    StandInWorker.made.push(this);
  }
  postMessage(message: { type: string; id: number }): void {
    this.posted.push(message);
  }
  answer(data: unknown): void {
    this.dispatchEvent(new MessageEvent('message', { data }));
  }
  /** What a browser fires: a module that fails to load gives a plain Event, with no message. */
  fail(message?: string): void {
    const event = new Event('error') as Event & { message?: string };
    if (message !== undefined) event.message = message;
    this.dispatchEvent(event);
  }
}

/** Settles within the test or says it is still waiting: a hang is the failure these tests look for. */
function settled<T>(promise: Promise<T>): Promise<{ value: T } | { error: Error } | 'waiting'> {
  return Promise.race([
    promise.then((value) => ({ value }), (error: Error) => ({ error })),
    new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 50)),
  ]);
}

afterEach(() => {
  vi.unstubAllGlobals();
  StandInWorker.made = [];
});

describe('the merge worker client', () => {
  it('a worker that cannot load fails the backend request the page makes at once, and every later request', async () => {
    vi.stubGlobal('Worker', StandInWorker);
    const { MergeWorkerClient } = await import('../demo/worker-client.js');
    const client = new MergeWorkerClient();
    const worker = StandInWorker.made[0];
    const backend = client.setBackend('auto');
    expect(await settled(backend)).toBe('waiting');
    worker.fail();
    expect(await settled(backend)).toEqual({ error: new Error('the merge worker failed to start: its script did not load') });
    const posted = worker.posted.length;
    expect(await settled(client.plan('base', [], []))).toEqual({ error: new Error('the merge worker failed to start: its script did not load') });
    expect(worker.posted.length).toBe(posted);
  });

  it('a worker that dies after answering fails the merge in flight with its message', async () => {
    vi.stubGlobal('Worker', StandInWorker);
    const { MergeWorkerClient } = await import('../demo/worker-client.js');
    const client = new MergeWorkerClient();
    const worker = StandInWorker.made[0];
    const backend = client.setBackend('cpu');
    const info = { kind: 'cpu', description: 'CPU' };
    worker.answer({ type: 'backend', id: worker.posted[0].id, backend: info });
    expect(await settled(backend)).toEqual({ value: info });
    const merge = client.merge({
      baseName: 'base', base: [], adapters: [], outDtype: 'same', dtypeMergedOnly: false, output: 'browser-storage', onProgress: () => {},
    } as unknown as Parameters<typeof client.merge>[0]);
    worker.fail('out of memory');
    expect(await settled(merge.done)).toEqual({ error: new Error('the merge worker failed: out of memory') });
  });
});

describe('the adapter-job worker client', () => {
  it('a worker that cannot load fails the pending request and every later one', async () => {
    vi.stubGlobal('Worker', StandInWorker);
    const { JobWorkerClient } = await import('../demo/job-client.js');
    const client = new JobWorkerClient();
    const described = client.describe({ name: 'lora', files: [] } as unknown as Parameters<typeof client.describe>[0]);
    StandInWorker.made[0].fail();
    const why = { error: new Error('the adapter worker failed: its script did not load') };
    expect(await settled(described)).toEqual(why);
    expect(await settled(client.withdraw('job'))).toEqual(why);
    expect(StandInWorker.made).toHaveLength(1);
  });
});

describe('the merge worker', () => {
  it('answers a request whose synchronous part throws with the error, instead of throwing it out of the worker', async () => {
    const scope = new EventTarget() as EventTarget & { postMessage(m: unknown): void };
    const posted: unknown[] = [];
    scope.postMessage = (m) => posted.push(m);
    vi.stubGlobal('self', scope);
    vi.stubGlobal('Worker', StandInWorker);
    await import('../demo/merge-worker.js');
    // Adapters that are not a list make the plan's synchronous setup throw.
    const request = { type: 'plan', id: 7, baseName: 'base', base: [], adapters: null };
    expect(() => scope.dispatchEvent(new MessageEvent('message', { data: request }))).not.toThrow();
    expect(posted).toEqual([{ type: 'error', id: 7, message: expect.stringMatching(/^unexpected error: /) }]);
  });
});
