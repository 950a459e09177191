/**
 * merge() cancelled through its AbortSignal: the ABORTED MergeError carries the signal's reason as
 * its cause, so an embedder can tell its own stop button (abort(reason)) from other failures, and
 * nothing comes back. On the sample model (Llama names, BF16 base, a PEFT LoRA in F32).
 */
import { describe, expect, it } from 'vitest';
import { combineLoras, generateSample, isMergeError, merge, resizeLora, type MergeProgress } from '../src/index.js';

const files = (record: Record<string, Uint8Array>) => Object.entries(record).map(([path, bytes]) => new File([bytes as Uint8Array<ArrayBuffer>], path));

async function cancelled(run: (signal: AbortSignal, abort: () => void) => Promise<unknown>, abort: (c: AbortController) => void) {
  const controller = new AbortController();
  try {
    await run(controller.signal, () => abort(controller));
  } catch (error) {
    return { error, reason: controller.signal.reason as unknown };
  }
  throw new Error('the merge was not cancelled');
}

describe('merge() cancelled by its signal', () => {
  it('mid-merge: code ABORTED, cause the reason given to abort(), no blobs', async () => {
    const sample = await generateSample('small');
    const stop = new Error('the user pressed stop');
    const events: MergeProgress[] = [];
    const { error } = await cancelled((signal, abort) => merge({
      base: files(sample.base), adapters: [files(sample.adapter)], backend: 'cpu', signal,
      onProgress: (e) => { events.push(e); if (e.tensorsDone >= 3) abort(); },
    }), (c) => c.abort(stop));
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect((error as Error).cause).toBe(stop);
    expect(events.at(-1)?.phase).toBe('merge');
  });

  it('abort() without a reason: the cause is the AbortError the signal made', async () => {
    const sample = await generateSample('small');
    const { error, reason } = await cancelled((signal, abort) => merge({
      base: files(sample.base), adapters: [files(sample.adapter)], backend: 'cpu', signal,
      onProgress: (e) => { if (e.tensorsDone >= 3) abort(); },
    }), (c) => c.abort());
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect((error as Error).cause).toBe(reason);
    expect((reason as DOMException).name).toBe('AbortError');
  });

  it('a signal aborted before the call: refused before any source is opened, with the same cause', async () => {
    const stop = new Error('closed before it started');
    const { error } = await cancelled((signal, abort) => {
      abort();
      return merge({ base: new Blob([]), adapters: [new Blob([])], signal });
    }, (c) => c.abort(stop));
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect((error as Error).cause).toBe(stop);
  });
});

// The adapter jobs cancel the same way, so one handler serves merge() and them.
describe('combineLoras and resizeLora cancelled by their signal', () => {
  it('mid-job: code ABORTED, cause the reason given to abort()', async () => {
    const sample = await generateSample('small');
    const stop = new Error('the user pressed stop');
    for (const job of [
      (signal: AbortSignal, abort: () => void) => resizeLora({ adapter: files(sample.adapter), rule: { kind: 'rank', rank: 1 }, backend: 'cpu', signal, onProgress: () => abort() }),
      (signal: AbortSignal, abort: () => void) => combineLoras({ adapters: [files(sample.adapter), files(sample.adapter)], method: 'svd', backend: 'cpu', signal, onProgress: () => abort() }),
    ]) {
      const { error } = await cancelled(job, (c) => c.abort(stop));
      expect(isMergeError(error) && error.code).toBe('ABORTED');
      expect((error as Error).cause).toBe(stop);
    }
  });

  it('a signal aborted before the call: refused with the same cause', async () => {
    const stop = new Error('closed before it started');
    const { error } = await cancelled((signal, abort) => {
      abort();
      return resizeLora({ adapter: new Blob([]), rule: { kind: 'rank', rank: 1 }, signal });
    }, (c) => c.abort(stop));
    expect(isMergeError(error) && error.code).toBe('ABORTED');
    expect((error as Error).cause).toBe(stop);
  });
});
