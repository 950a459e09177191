/**
 * Browser I/O run in Node: Blob/File exist here natively; File System Access handles are faked by a
 * small in-memory model of the API (a writable writes to a swap copy that replaces the file on close).
 */
import { describe, expect, it } from 'vitest';
import { blobByteSource } from '../src/io/blob-byte-source.js';
import { blobInputFileSet, inputFileSetFromFiles } from '../src/io/browser-input-files.js';
import { createBlobOutputTarget } from '../src/io/blob-output.js';
import { createFileSystemAccessOutputTarget } from '../src/io/fs-access-output.js';
import { createSafetensorsWriter } from '../src/formats/safetensors-writer.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { MergeError } from '../src/errors.js';
import { buildSafetensors, decodeValues, encodeValues, seededRandom } from './helpers/fixtures.js';

function pickedFile(relativePath: string, content: string | Uint8Array): File {
  const file = new File([content as BlobPart], relativePath.split('/').pop()!);
  Object.defineProperty(file, 'webkitRelativePath', { value: relativePath });
  return file;
}

describe('Blob byte source', () => {
  it('reads exact ranges and names the file when asked for more', async () => {
    const source = blobByteSource(new File([new Uint8Array([1, 2, 3, 4, 5])], 'lora.safetensors'));
    expect(source.name).toBe('lora.safetensors');
    expect(Array.from(await source.read(1, 3))).toEqual([2, 3, 4]);
    const error = await source.read(3, 3).catch((e: MergeError) => e);
    expect((error as MergeError).code).toBe('TRUNCATED');
    expect((error as MergeError).message).toContain('lora.safetensors');
  });

  it('reads ranges into the memory it is offered, over and over, through the Blob\'s byte stream', async () => {
    const bytes = Uint8Array.from({ length: 70_001 }, (_, i) => (i * 7 + 3) & 255);
    const source = blobByteSource(new File([bytes], 'model.safetensors'));
    let memory = new ArrayBuffer(32_768);
    for (const [offset, length] of [[0, 32_768], [32_768, 32_768], [65_536, 4465], [5, 1]]) {
      const offered = memory;
      const got = await source.readTransferring!(offset, length, offered);
      expect(got).toEqual(bytes.subarray(offset, offset + length));
      // The bytes are in the offered memory: the offered buffer is detached (moved), not copied.
      expect(offered.byteLength).toBe(0);
      expect(got.buffer.byteLength).toBe(32_768);
      memory = got.buffer as ArrayBuffer;
    }
    const error = await source.readTransferring!(70_000, 2, memory).catch((e: MergeError) => e);
    expect((error as MergeError).code).toBe('TRUNCATED');
    expect((error as MergeError).message).toContain('model.safetensors');
  });

  it('serves a sequential run of reads from one stream of the file, and starts another where a read jumps', async () => {
    const bytes = Uint8Array.from({ length: 300_007 }, (_, i) => (i * 31 + (i >> 8)) & 255);
    const file = new File([bytes], 'model.safetensors');
    const streamsFrom: number[] = [];
    // The Blob as the source sees it, noting where each stream it opens starts.
    const counted = {
      size: file.size,
      slice(start?: number, end?: number) {
        if (end === undefined) streamsFrom.push(start ?? 0);
        return file.slice(start, end);
      },
    } as unknown as Blob;
    const source = blobByteSource(counted, 'model.safetensors');
    let seed = 12345;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const runsFrom: number[] = [];
    let end = -1;
    for (let batch = 0; batch < 40; batch++) {
      // Up to four reads in flight at once, as a read-ahead issues them; every fifth batch jumps.
      let at = batch % 5 === 0 ? random(bytes.length - 1000) : end;
      if (at !== end) runsFrom.push(at);
      const reads: [number, number][] = [];
      for (let k = 0, n = 1 + random(4); k < n && at < bytes.length; k++) {
        const length = Math.min(1 + random(20_000), bytes.length - at);
        reads.push([at, length]);
        at += length;
      }
      end = at;
      const got = await Promise.all(reads.map(([offset, length]) => source.readTransferring!(offset, length, new ArrayBuffer(length + random(3)))));
      reads.forEach(([offset, length], i) => expect(got[i]).toEqual(bytes.subarray(offset, offset + length)));
    }
    expect(runsFrom.length).toBeGreaterThan(5);
    expect(streamsFrom).toEqual(runsFrom);
    // Closed, the run's stream is let go, and reads still queued (windows read ahead) open no other.
    await source.close();
    const late = await source.readTransferring!(Math.min(end, bytes.length - 1), 1, new ArrayBuffer(1)).catch((e: MergeError) => e);
    expect((late as MergeError).code).toBe('ABORTED');
    expect(streamsFrom).toEqual(runsFrom);
  });
});

describe('input files from a page', () => {
  it('strips the picked folder and skips dot-folders', async () => {
    const set = inputFileSetFromFiles([
      pickedFile('my-model/config.json', '{"a":1}'),
      pickedFile('my-model/.git/HEAD', 'x'),
      pickedFile('my-model/unet/diffusion_pytorch_model.safetensors', new Uint8Array(9)),
    ]);
    expect(set.name).toBe('my-model');
    expect(set.list()).toEqual(['config.json', 'unet/diffusion_pytorch_model.safetensors']);
    expect(await set.readText('config.json')).toBe('{"a":1}');
    const source = await set.open('unet/diffusion_pytorch_model.safetensors');
    expect(source.size).toBe(9);
    expect(source.name).toBe('my-model/unet/diffusion_pytorch_model.safetensors');
    await expect(set.open('nope')).rejects.toThrow(/no file "nope"/);
  });

  it('reads a shard of tiny tensors one tensor after another in a few reads of the file, not one per tensor', async () => {
    // One of 61 shards of a mixture-of-experts checkpoint (BF16 [1, 1] experts, as the
    // tensor-count bench makes them), read as a merge copies it: header, then each tensor in turn.
    const rand = seededRandom(61);
    const names = Array.from({ length: 2623 }, (_, j) =>
      `model.layers.00.mlp.experts.${String(Math.floor(j / 3)).padStart(3, '0')}.${['gate_proj', 'up_proj', 'down_proj'][j % 3]}.weight`);
    const bytes = buildSafetensors(names.map((name) => ({ name, dtype: 'BF16', shape: [1, 1], data: [rand() * 2 - 1] })));
    const file = new File([bytes as BlobPart], 'model-00001-of-00061.safetensors');
    let reads = 0;
    // The Blob as the page's source sees it: every slice is one read of the file (a round trip
    // to the browser's blob store), a stream or a whole range.
    const counted = {
      size: file.size,
      slice(start?: number, end?: number) {
        reads++;
        return file.slice(start, end);
      },
    } as unknown as Blob;
    const set = blobInputFileSet('Kimi-K2', new Map([['model-00001-of-00061.safetensors', counted]]));
    const shard = await openSafetensors(await set.open('model-00001-of-00061.safetensors'));
    const dataStart = bytes.byteLength - names.length * 2;
    for (const [j, name] of names.entries()) {
      expect(await shard.read(shard.get(name)!)).toEqual(bytes.subarray(dataStart + j * 2, dataStart + j * 2 + 2));
    }
    // 5.2 KB of tensors after a 270 KB header: one read per 64 KiB window at most (each tensor
    // its own read before, 2623 of them).
    expect(reads).toBeLessThanOrEqual(2 + Math.ceil(bytes.byteLength / 65_536));
  });

  it('uses plain names for dropped files and refuses duplicates', async () => {
    const set = inputFileSetFromFiles([new File(['a'], 'b.safetensors'), new File(['c'], 'a.json')]);
    expect(set.list()).toEqual(['a.json', 'b.safetensors']);
    expect(set.name).toBe('selected files');
    expect(inputFileSetFromFiles([new File(['a'], 'one.safetensors')]).name).toBe('one.safetensors');
    expect(() => inputFileSetFromFiles([new File(['a'], 'x'), new File(['b'], 'x')])).toThrow(MergeError);
  });
});

describe('Blob output target', () => {
  it('collects files as Blobs available after commit, readable back as safetensors', async () => {
    const target = createBlobOutputTarget('merged');
    const sink = await target.createFile('model.safetensors');
    const writer = await createSafetensorsWriter(sink, [{ name: 'w', dtype: 'F16', shape: [3, 5] }], { merged: 'yes' });
    const values = [0.5, -1, 2, 3.25, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    const data = encodeValues(values, 'F16');
    await writer.writeChunk('w', data.subarray(0, 7));
    data.fill(0, 0, 7); // the target must have copied what it was given
    await writer.writeChunk('w', encodeValues(values, 'F16').subarray(7));
    await writer.finish();
    const config = await target.createFile('config.json');
    await config.write(new TextEncoder().encode('{}'));
    expect(target.files()).toEqual([]);
    await config.close();
    await target.commit();
    const [model, configOut] = target.files();
    expect(configOut.path).toBe('config.json');
    expect(await configOut.blob.text()).toBe('{}');
    const file = await openSafetensors(blobByteSource(model.blob, model.path));
    expect(file.metadata).toEqual({ merged: 'yes' });
    expect(Array.from(decodeValues(await file.read(file.get('w')!), 'F16'))).toEqual(values);
  });

  it('refuses to commit with an open file, and drops everything on abort', async () => {
    const target = createBlobOutputTarget();
    const sink = await target.createFile('a');
    await sink.write(new Uint8Array(3));
    await expect(target.commit()).rejects.toThrow(/still being written/);
    await target.abort();
    expect(target.files()).toEqual([]);
    await expect(target.createFile('b')).rejects.toThrow(/aborted/);
  });
});

// --- a minimal in-memory File System Access model ---------------------------------------------

class FakeFile {
  kind = 'file' as const;
  content = new Uint8Array(0);
  constructor(public name: string) {}
  async createWritable() {
    const chunks: Uint8Array[] = [];
    let done = false;
    return {
      write: async (chunk: Uint8Array) => {
        if (done) throw new Error('closed');
        chunks.push(chunk.slice());
      },
      close: async () => {
        done = true;
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
        let at = 0;
        for (const c of chunks) (all.set(c, at), (at += c.byteLength));
        this.content = all;
      },
      abort: async () => {
        done = true;
      },
    };
  }
}

class FakeDir {
  kind = 'directory' as const;
  entries = new Map<string, FakeFile | FakeDir>();
  constructor(public name: string) {}
  private async get(name: string, create: boolean | undefined, make: () => FakeFile | FakeDir) {
    let entry = this.entries.get(name);
    if (!entry) {
      if (!create) throw Object.assign(new Error('not found'), { name: 'NotFoundError' });
      entry = make();
      this.entries.set(name, entry);
    }
    return entry;
  }
  async getFileHandle(name: string, options?: { create?: boolean }): Promise<FakeFile> {
    return (await this.get(name, options?.create, () => new FakeFile(name))) as FakeFile;
  }
  async getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<FakeDir> {
    return (await this.get(name, options?.create, () => new FakeDir(name))) as FakeDir;
  }
  async removeEntry(name: string) {
    this.entries.delete(name);
  }
  tree(prefix = ''): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, e] of this.entries) {
      if (e instanceof FakeDir) Object.assign(out, e.tree(`${prefix}${name}/`), { [`${prefix}${name}/`]: '' });
      else out[prefix + name] = new TextDecoder().decode(e.content);
    }
    return out;
  }
}

const text = (s: string) => new TextEncoder().encode(s);

describe('File System Access output target', () => {
  it('makes files visible only on commit', async () => {
    const root = new FakeDir('picked');
    const existing = await root.getFileHandle('config.json', { create: true });
    existing.content = text('old');
    const target = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle, 'picked', { replaceExisting: true });
    expect(target.name).toBe('picked');
    for (const [path, body] of [['config.json', 'new'], ['tokenizer/vocab.json', 'v']]) {
      const sink = await target.createFile(path);
      await sink.write(text(body));
      await sink.close();
    }
    expect(root.tree()['config.json']).toBe('old');
    await target.commit();
    expect(root.tree()).toEqual({ 'config.json': 'new', 'tokenizer/': '', 'tokenizer/vocab.json': 'v' });
  });

  it('refuses to write over a file already in the picked folder, unless asked to', async () => {
    const root = new FakeDir('picked');
    const existing = await root.getFileHandle('model.safetensors', { create: true });
    existing.content = text('the base');
    const target = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle);
    await expect(target.createFile('model.safetensors')).rejects.toMatchObject({ code: 'OUTPUT_EXISTS', message: expect.stringContaining('picked/model.safetensors') });
    await target.abort();
    expect(root.tree()).toEqual({ 'model.safetensors': 'the base' });
  });

  it('removes what it created on abort and leaves existing files alone', async () => {
    const root = new FakeDir('picked');
    (await root.getFileHandle('keep.txt', { create: true })).content = text('keep');
    await root.getDirectoryHandle('existing', { create: true });
    const target = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle, 'picked', { replaceExisting: true });
    for (const path of ['keep.txt', 'existing/new.bin', 'made/deep/x.bin']) {
      const sink = await target.createFile(path);
      await sink.write(text('partial'));
    }
    await expect(target.createFile('../x')).rejects.toThrow(/invalid/);
    await target.abort();
    expect(root.tree()).toEqual({ 'keep.txt': 'keep', 'existing/': '' });
  });

  it('refuses a second writer of a folder while the first writes (OUTPUT_BUSY), so their files never mix', async () => {
    const root = new FakeDir('picked');
    const write = async (target: ReturnType<typeof createFileSystemAccessOutputTarget>, path: string, body: string) => {
      const sink = await target.createFile(path);
      await sink.write(text(body));
      await sink.close();
    };
    const first = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle);
    const second = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle);
    const elsewhere = createFileSystemAccessOutputTarget(new FakeDir('other') as unknown as FileSystemDirectoryHandle);
    await write(first, 'model.safetensors', 'first');
    await expect(write(second, 'config.json', 'second')).rejects.toMatchObject({
      code: 'OUTPUT_BUSY', message: 'picked: another merge in this page or worker is writing this folder; wait for it to finish or choose another folder',
    });
    await second.abort();
    await write(elsewhere, 'model.safetensors', 'elsewhere'); // another folder is free
    await elsewhere.commit();
    await write(first, 'config.json', 'first');
    await first.commit();
    expect(root.tree()).toEqual({ 'model.safetensors': 'first', 'config.json': 'first' });
    // Once the first is done, the folder is free again (its files refused as existing, not busy).
    const third = createFileSystemAccessOutputTarget(root as unknown as FileSystemDirectoryHandle, 'picked', { replaceExisting: true });
    await write(third, 'config.json', 'third');
    await third.commit();
    expect(root.tree()).toEqual({ 'model.safetensors': 'first', 'config.json': 'third' });
  });

  it('writes one file through a file handle', async () => {
    const file = new FakeFile('merged.safetensors');
    const target = createFileSystemAccessOutputTarget(file as unknown as FileSystemFileHandle);
    const sink = await target.createFile('whatever.safetensors');
    await sink.write(text('abc'));
    await sink.close();
    await expect(target.createFile('config.json')).rejects.toMatchObject({
      code: 'BAD_ARGUMENT', message: 'merged.safetensors: is one file, but more than one is written ("config.json" too); give a folder (showDirectoryPicker) instead',
    });
    await target.commit();
    expect(new TextDecoder().decode(file.content)).toBe('abc');
  });
});
