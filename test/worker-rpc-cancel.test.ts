/**
 * The page's worker client: a request the worker reports cancelled rejects with an error named
 * 'AbortError', as the library's cancel and a cancelled fetch are; a failure is no AbortError.
 */
import { describe, expect, it } from 'vitest';
import { CancelledError, WorkerRpc } from '../demo/worker-rpc.js';

type Req = { type: 'merge'; id: number };
type Res = { type: 'progress' | 'cancelled' | 'error' | 'done'; id: number; message?: string };

function rpc() {
  const posted: Req[] = [];
  const worker = { postMessage: (r: Req) => posted.push(r) } as unknown as Worker;
  return { posted, client: new WorkerRpc<Req, Res>(() => worker, () => ({ value: 'done' })) };
}

describe('the page\'s worker client on a cancel', () => {
  it('rejects with an AbortError (a CancelledError)', async () => {
    const { client } = rpc();
    const { id, done } = client.send({ type: 'merge' });
    client.receive({ type: 'cancelled', id });
    const error = await done.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as Error).name).toBe('AbortError');
  });

  it('a worker error is not named AbortError', async () => {
    const { client } = rpc();
    const { id, done } = client.send({ type: 'merge' });
    client.receive({ type: 'error', id, message: 'model.safetensors: not a safetensors file' });
    const error = await done.then(() => undefined, (e: unknown) => e);
    expect((error as Error).name).not.toBe('AbortError');
  });
});
