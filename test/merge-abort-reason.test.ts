/**
 * merge() cancelled through its AbortSignal: the ABORTED MergeError carries the signal's reason as
 * its cause, so an embedder can tell its own stop button (abort(reason)) from other failures, and
 * nothing comes back. Its name is 'AbortError', as a cancelled fetch's is, so that the abort
 * handling an embedder already has (`err.name === 'AbortError'`) takes it; any other failure is
 * still named 'MergeError'. On the sample model (Llama names, BF16 base, a PEFT LoRA in F32).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  combineLoras, createBlobOutputTarget, generateSample, isMergeError, memoryInputFileSet, merge, mergeModel, mergeTensor,
  prepareMerge, resizeLora, type MergeOp, type MergeProgress,
} from '../src/index.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { createCpuWorkerPool } from '../src/node.js';
import { REPO_ROOT } from './helpers/cli.js';

/** The CPU backend on two threads: the worker script is the built one (dist/, made by build:lib). */
const pooledCpu = () => new CpuBackend('requested', { pool: createCpuWorkerPool({ threads: 2, workerUrl: pathToFileURL(join(REPO_ROOT, 'dist/engine/cpu/cpu-worker.js')) }) }).ready();

/** What an embedder's own abort handling looks at: the name, beside our code and the cause. */
function expectCancel(error: unknown, cause: unknown): void {
  expect((error as Error).name).toBe('AbortError');
  expect(isMergeError(error) && error.code).toBe('ABORTED');
  expect((error as Error).cause).toBe(cause);
}

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
    expectCancel(error, stop);
    expect(events.at(-1)?.phase).toBe('merge');
  });

  it('abort() without a reason: the cause is the AbortError the signal made', async () => {
    const sample = await generateSample('small');
    const { error, reason } = await cancelled((signal, abort) => merge({
      base: files(sample.base), adapters: [files(sample.adapter)], backend: 'cpu', signal,
      onProgress: (e) => { if (e.tensorsDone >= 3) abort(); },
    }), (c) => c.abort());
    expectCancel(error, reason);
    expect((reason as DOMException).name).toBe('AbortError');
  });

  it('a signal aborted before the call: refused before any source is opened, with the same cause', async () => {
    const stop = new Error('closed before it started');
    const { error } = await cancelled((signal, abort) => {
      abort();
      return merge({ base: new Blob([]), adapters: [new Blob([])], signal });
    }, (c) => c.abort(stop));
    expectCancel(error, stop);
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
    expectCancel(error, stop);
  });
});

describe('an adapter job cancelled while a URL is read', () => {
  it('resizeLora: "resize cancelled" (not the reader\'s "merge cancelled"), AbortError, cause the reason', async () => {
    // A server that takes the request and never answers: the cancel finds the read in flight.
    let asked: () => void = () => {};
    const requested = new Promise<void>((resolve) => { asked = resolve; });
    const server = createServer(() => asked());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const controller = new AbortController();
    const stop = new Error('the user pressed stop');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/adapter_model.safetensors`;
      const running = resizeLora({ adapter: url, rule: { kind: 'rank', rank: 1 }, backend: 'cpu', hfToken: false, signal: controller.signal }).then(() => undefined, (e: unknown) => e);
      await requested;
      controller.abort(stop);
      const error = await running;
      expectCancel(error, stop);
      expect((error as Error).message).toBe('resize cancelled');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('the step-by-step API cancelled by its signal', () => {
  it('mergeModel on the CPU backend\'s worker threads, mid-merge: AbortError, code ABORTED, cause the reason; nothing written', async () => {
    const sample = await generateSample('small');
    const prepared = await prepareMerge(memoryInputFileSet(sample.base, 'base'), [{ files: memoryInputFileSet(sample.adapter, 'adapter') }]);
    const backend = await pooledCpu();
    const output = createBlobOutputTarget();
    const controller = new AbortController();
    const stop = new Error('the user pressed stop');
    try {
      const error = await mergeModel({
        prepared, output, backend, signal: controller.signal,
        onProgress: (e) => { if (e.tensorsDone >= 3) controller.abort(stop); },
      }).then(() => undefined, (e: unknown) => e);
      expect(backend.description).toMatch(/threads/);
      expectCancel(error, stop);
      expect(output.files()).toEqual([]);
    } finally {
      backend.dispose();
      await prepared.close();
    }
  });

  it('mergeTensor on the worker threads, cancelled while it runs: AbortError with the reason', async () => {
    const backend = await pooledCpu();
    const [rows, cols, rank] = [1024, 1024, 4];
    const f32 = (n: number) => ({ dtype: 'F32' as const, data: new Uint8Array(new Float32Array(n).fill(0.5).buffer) });
    const op: MergeOp = {
      name: 'model.layers.0.mlp.down_proj.weight', rows, cols, layout: 'out-in', outDtype: 'F32', base: f32(rows * cols),
      terms: [{ rank, scale: 1, a: f32(rank * cols), b: f32(rows * rank) }],
    };
    const controller = new AbortController();
    const stop = new Error('closed');
    try {
      const running = mergeTensor(op, backend, controller.signal).then(() => undefined, (e: unknown) => e);
      controller.abort(stop);
      expectCancel(await running, stop);
    } finally {
      backend.dispose();
    }
  });

  it('a failure that is no cancel keeps the name MergeError', async () => {
    const error = await merge({ base: new Blob([new Uint8Array(4)]), adapters: [new Blob([new Uint8Array(4)])] }).then(() => undefined, (e: unknown) => e);
    expect(isMergeError(error) && error.code).not.toBe('ABORTED');
    expect((error as Error).name).toBe('MergeError');
  });
});
