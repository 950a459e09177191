/**
 * The OPFS writer worker (src/io/opfs-writer*.ts), run in Node: the worker script is loaded against
 * a stand-in worker scope and the client talks to it through a stand-in Worker, with OPFS files
 * faked by synchronous handles that take at most 1000 bytes per write (as a real one may take part
 * of a buffer). Checked: the bytes land at their offsets in order, shared-memory chunks are handed
 * over without a copy and others copied, the worker's errors keep their name (a full disk must still
 * read as QuotaExceededError), and a worker that cannot start leaves the writing to the caller.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SMALL_WRITE_BYTES } from '../src/io/gathered-sink.js';
import { createOpfsOutputTarget } from '../src/io/opfs-output.js';
import { opfsWriterWorker } from '../src/io/opfs-writer.js';
import { seededRandom } from './helpers/fixtures.js';

/** A file of the fake OPFS: its bytes, and how many writes each thread made to it. */
class FakeFile {
  bytes = new Uint8Array(0);
  writes = 0;
  open = false;
  failWith?: DOMException;
  constructor(public name: string) {}
  async createSyncAccessHandle() {
    if (this.open) throw new DOMException('already open', 'NoModificationAllowedError');
    this.open = true;
    return {
      write: (view: ArrayBufferView, { at }: { at: number }) => {
        if (this.failWith) throw this.failWith;
        const piece = new Uint8Array(view.buffer, view.byteOffset, Math.min(view.byteLength, 1000));
        if (at + piece.length > this.bytes.length) {
          const grown = new Uint8Array(at + piece.length);
          grown.set(this.bytes);
          this.bytes = grown;
        }
        this.bytes.set(piece, at);
        this.writes++;
        return piece.length;
      },
      close: () => {
        this.open = false;
      },
    };
  }
}

/** A folder of the fake OPFS, with move() on its files as Chromium has. */
class FakeFolder {
  files = new Map<string, FakeFile>();
  constructor(public name: string) {}
  async getFileHandle(name: string, options?: { create?: boolean }) {
    let file = this.files.get(name);
    if (!file) {
      if (!options?.create) throw new DOMException(name, 'NotFoundError');
      file = new FakeFile(name);
      this.files.set(name, file);
    }
    const folder = this;
    return Object.assign(file, {
      async move(to: string) {
        folder.files.delete(file!.name);
        file!.name = to;
        folder.files.set(to, file!);
      },
    });
  }
  async getDirectoryHandle(): Promise<never> {
    throw new DOMException('no subfolders here', 'NotFoundError');
  }
  async removeEntry(name: string) {
    if (!this.files.delete(name)) throw new DOMException(name, 'NotFoundError');
  }
}

/**
 * The worker script loaded against a stand-in scope, and a Worker talking to it. Messages are
 * delivered in a later task, copied as postMessage copies them: shared memory stays shared,
 * transferred buffers move (the sender's copy is detached), everything else is cloned.
 */
async function startWriterWorker() {
  const toWorker: ((event: { data: unknown }) => void)[] = [];
  const toClient: ((event: { data: unknown }) => void)[] = [];
  const sent = { shared: 0, copied: 0 };
  vi.stubGlobal('self', {
    addEventListener: (_type: string, listener: (event: { data: unknown }) => void) => toWorker.push(listener),
    postMessage: (data: unknown) => setTimeout(() => toClient.forEach((l) => l({ data: structuredClone(data) }))),
  });
  vi.resetModules();
  await import('../src/io/opfs-writer-worker.js');
  const worker = {
    addEventListener: (type: string, listener: (event: { data: unknown }) => void) => {
      if (type === 'message') toClient.push(listener);
    },
    postMessage(data: { bytes?: Uint8Array; handle?: unknown }, transfer: Transferable[] = []) {
      if (data.bytes) {
        if (data.bytes.buffer instanceof SharedArrayBuffer) sent.shared++;
        else sent.copied++;
      }
      // A file handle crosses as itself (structured-cloneable in a browser).
      const { handle, ...rest } = data;
      const copy = { ...structuredClone(rest, { transfer }), ...(handle ? { handle } : {}) };
      setTimeout(() => toWorker.forEach((l) => l({ data: copy })));
    },
    terminate() {},
  };
  return { worker: worker as unknown as Worker, sent };
}

afterEach(() => {
  vi.unstubAllGlobals();
});

function randomBytes(length: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  return Uint8Array.from({ length }, () => Math.floor(rand() * 256));
}

describe('OPFS writer worker', () => {
  it('writes every chunk at its offset, shared-memory chunks without a copy, and leaves the merging thread free', async () => {
    const { worker, sent } = await startWriterWorker();
    const writer = opfsWriterWorker({ createWorker: () => worker });
    const folder = new FakeFolder('job-1');
    const target = createOpfsOutputTarget(folder as unknown as FileSystemDirectoryHandle, 'job-1', { writer });
    const sink = await target.createFile('model.safetensors');
    const expected = randomBytes(900_013, 3);
    const shared = new Uint8Array(new SharedArrayBuffer(SMALL_WRITE_BYTES + 4096));
    // Chunks of uneven sizes, some in shared memory (a CPU slab) and some not, two outstanding as
    // the pipeline has; a shared slab is reused only once its write resolved. Every third chunk is
    // small (a norm, a scale): gathered with its neighbours before it reaches the writer.
    let pending: Promise<void> | undefined;
    for (let at = 0, i = 0; at < expected.length; i++) {
      const length = Math.min(expected.length - at, (i % 3 === 2 ? 0 : SMALL_WRITE_BYTES) + 1 + ((i * 2311) % 4096));
      let chunk: Uint8Array;
      if (i % 2 === 0 && length >= SMALL_WRITE_BYTES) {
        await pending; // the shared slab is free again
        chunk = shared.subarray(0, length);
        chunk.set(expected.subarray(at, at + length));
      } else {
        chunk = expected.slice(at, at + length);
      }
      const write = sink.write(chunk);
      await pending;
      pending = write;
      at += length;
    }
    await pending;
    await sink.close();
    await target.commit();
    const file = folder.files.get('model.safetensors');
    expect(Buffer.from(file!.bytes).equals(Buffer.from(expected))).toBe(true);
    expect(file?.writes).toBeGreaterThan(900); // took at most 1000 bytes a time: the loop wrote the rest
    expect([...folder.files.keys()]).toEqual(['model.safetensors']);
    expect(sent.shared).toBeGreaterThan(0);
    expect(sent.copied).toBeGreaterThan(0);
    expect(file?.open).toBe(false);
    writer.dispose();
  });

  it("reports the browser's full-disk error by its name and leaves nothing after abort", async () => {
    const { worker } = await startWriterWorker();
    const writer = opfsWriterWorker({ createWorker: () => worker });
    const folder = new FakeFolder('job-2');
    const target = createOpfsOutputTarget(folder as unknown as FileSystemDirectoryHandle, 'job-2', { writer });
    const sink = await target.createFile('model.safetensors');
    await sink.write(randomBytes(SMALL_WRITE_BYTES, 4));
    folder.files.get('.model.safetensors.partial')!.failWith = new DOMException('quota exceeded', 'QuotaExceededError');
    const error = await sink.write(randomBytes(SMALL_WRITE_BYTES, 5)).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DOMException);
    expect((error as DOMException).name).toBe('QuotaExceededError');
    await target.abort();
    expect(folder.files.size).toBe(0);
    writer.dispose();
  });

  it('writes on the calling thread when the worker cannot start (a policy forbids it)', async () => {
    const writer = opfsWriterWorker({
      createWorker: () => {
        throw new DOMException('worker-src forbids it', 'SecurityError');
      },
    });
    const folder = new FakeFolder('job-3');
    const handle = await folder.getFileHandle('out.bin', { create: true });
    const file = await writer.open(handle as unknown as FileSystemFileHandle);
    const bytes = randomBytes(2500, 6);
    await file.write(bytes, 0);
    await file.close();
    expect(folder.files.get('out.bin')?.bytes).toEqual(bytes);
  });

  it('fails a write in flight, naming the writer, when its worker dies after opening the file', async () => {
    const listeners = { message: [] as ((event: { data: unknown }) => void)[], error: [] as ((event: { message: string; preventDefault(): void }) => void)[] };
    let received = 0;
    const dying = {
      addEventListener: (type: 'message' | 'error', listener: never) => listeners[type].push(listener),
      postMessage: (data: { id: number }) => setTimeout(() => {
        // Answers the open, then dies on the first write.
        if (received++ === 0) listeners.message.forEach((l) => l({ data: { id: data.id } }));
        else listeners.error.forEach((l) => l({ message: 'out of memory', preventDefault() {} }));
      }),
      terminate() {},
    } as unknown as Worker;
    const writer = opfsWriterWorker({ createWorker: () => dying });
    const folder = new FakeFolder('job-4');
    const handle = await folder.getFileHandle('out.bin', { create: true });
    const file = await writer.open(handle as unknown as FileSystemFileHandle);
    await expect(file.write(new Uint8Array([1, 2, 3]), 0)).rejects.toMatchObject({ code: 'FILESYSTEM', message: 'the output writer stopped: out of memory' });
  });
});
