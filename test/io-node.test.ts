/** Node byte sources, input folders and output targets, on real temporary folders. */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { openNodeByteSource } from '../src/io/node-byte-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { createNodeOutputTarget } from '../src/io/node-output.js';
import { copyInputFile } from '../src/io/copy-file.js';
import { createSafetensorsWriter } from '../src/formats/safetensors-writer.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { MergeError } from '../src/errors.js';
import { decodeValues, encodeValues, randomValues, removeTempDir, roundForDType, seededRandom, writeTempDir } from './helpers/fixtures.js';

const dirs: string[] = [];
function tempDir(files: Record<string, Uint8Array | string> = {}): string {
  const dir = writeTempDir(files);
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  while (dirs.length) removeTempDir(dirs.pop()!);
});

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(MergeError);
    return (e as MergeError).code;
  }
  return 'no error';
}

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

describe('Node byte source', () => {
  it('reads exact ranges, and names the file when a range is past its end', async () => {
    const dir = tempDir({ 'w.bin': bytes(100) });
    const path = join(dir, 'w.bin');
    const source = await openNodeByteSource(path);
    expect(source.size).toBe(100);
    expect(await source.read(10, 5)).toEqual(bytes(100).subarray(10, 15));
    expect((await source.read(100, 0)).byteLength).toBe(0);
    const error = await source.read(90, 11).catch((e: MergeError) => e);
    expect((error as MergeError).code).toBe('TRUNCATED');
    expect((error as MergeError).message).toContain(path);
    await source.close();
  });

  it('refuses a folder given where a file is expected, when opened (Linux opens a folder for reading; only its reads failed, raw)', async () => {
    const dir = tempDir({ 'lora/adapter_model.safetensors': 'x' });
    const error = await openNodeByteSource(join(dir, 'lora')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MergeError);
    expect([(error as MergeError).code, (error as MergeError).message]).toEqual(['NOT_FOUND', `${join(dir, 'lora')}: is a folder, expected a file`]);
  });

  it('reports a file that shrinks while open as truncated', async () => {
    const dir = tempDir({ 'w.bin': bytes(100) });
    const source = await openNodeByteSource(join(dir, 'w.bin'));
    truncateSync(join(dir, 'w.bin'), 50);
    expect(await codeOf(source.read(40, 20))).toBe('TRUNCATED');
    await source.close();
  });

  it("reads an input folder's file exactly whatever the pattern: runs of small reads (served from 64 KiB windows), jumps, large reads, into given buffers", async () => {
    const size = 300_000;
    const want = new Uint8Array(size);
    const random = seededRandom(41);
    for (let i = 0; i < size; i++) want[i] = Math.floor(random() * 256);
    const dir = tempDir({ 'w.bin': want });
    for (let round = 0; round < 4; round++) {
      const source = await (await openNodeInputFileSet(dir)).open('w.bin');
      let at = 0;
      for (let op = 0; op < 400; op++) {
        const kind = random();
        // Mostly runs of tiny tensors (a few bytes to 40 KB, across the 32 KiB cut), some jumps, some slabs.
        if (kind < 0.1) at = Math.floor(random() * size);
        const length = Math.min(size - at, kind < 0.8 ? Math.floor(random() * (random() < 0.5 ? 64 : 40_000)) : Math.floor(random() * 200_000));
        const into = random() < 0.3 ? new Uint8Array(length) : undefined;
        const got = await source.read(at, length, into);
        expect(got.byteLength).toBe(length);
        if (into) expect(got).toBe(into);
        expect(Buffer.from(got).equals(Buffer.from(want.subarray(at, at + length))), `read ${at}+${length}`).toBe(true);
        got.fill(0xee); // the caller owns what a read returns: the next read must not see this
        at = at + length >= size ? 0 : at + length;
      }
      await source.close();
    }
  });

  it('reports a missing file as not found', async () => {
    expect(await codeOf(openNodeByteSource(join(tempDir(), 'nope.safetensors')))).toBe('NOT_FOUND');
  });
});

describe('Node input file set', () => {
  it('lists a folder recursively with "/" paths, skipping dot-folders and dot-files', async () => {
    const dir = tempDir({
      'config.json': '{}',
      'model.safetensors': bytes(8),
      'unet/diffusion_pytorch_model.safetensors': bytes(4),
      '.git/objects/ab': 'x',
      '.gitattributes': 'x',
      'sub/.hidden/file': 'x',
    });
    const set = await openNodeInputFileSet(dir);
    expect(set.name).toBe(dir);
    expect(set.list()).toEqual(['config.json', 'model.safetensors', 'unet/diffusion_pytorch_model.safetensors']);
    expect(await set.readText('config.json')).toBe('{}');
    const source = await set.open('unet/diffusion_pytorch_model.safetensors');
    expect(source.name).toContain('unet');
    expect(await source.read(0, 4)).toEqual(bytes(4));
    await source.close();
    expect(await codeOf(set.open('missing.json'))).toBe('NOT_FOUND');
  });

  it('follows links, as in a Hugging Face cache snapshot', async () => {
    const dir = tempDir({ 'blobs/0123abcd': bytes(16) });
    mkdirSync(join(dir, 'snapshots/rev'), { recursive: true });
    symlinkSync(join(dir, 'blobs/0123abcd'), join(dir, 'snapshots/rev/model.safetensors'));
    symlinkSync(join(dir, 'blobs/missing'), join(dir, 'snapshots/rev/dangling.json'));
    const set = await openNodeInputFileSet(join(dir, 'snapshots/rev'));
    expect(set.list()).toEqual(['model.safetensors']);
    const source = await set.open('model.safetensors');
    expect(source.size).toBe(16);
    await source.close();
  });

  it('treats a file as a set of one named by its base name', async () => {
    const dir = tempDir({ 'lora.safetensors': bytes(12) });
    const set = await openNodeInputFileSet(join(dir, 'lora.safetensors'));
    expect(set.list()).toEqual(['lora.safetensors']);
    const source = await set.open('lora.safetensors');
    expect(source.size).toBe(12);
    await source.close();
  });

  it('reports a missing path as not found', async () => {
    expect(await codeOf(openNodeInputFileSet(join(tempDir(), 'absent')))).toBe('NOT_FOUND');
  });
});

describe('Node output target', () => {
  it('writes a file under a temporary name and renames it on commit', async () => {
    const dir = tempDir({ 'old.safetensors': 'previous' });
    const out = join(dir, 'old.safetensors');
    const target = await createNodeOutputTarget(out, 'file', []);
    const sink = await target.createFile('merged.safetensors');
    await sink.write(bytes(10));
    await sink.write(bytes(5, 7));
    expect(readFileSync(out, 'utf8')).toBe('previous'); // not replaced before commit
    // A file holds one file: a second is a refusal saying what to give instead, not a bare Error.
    await expect(target.createFile('config.json')).rejects.toMatchObject({
      code: 'BAD_ARGUMENT', message: `${out}: is one file, but more than one is written ("config.json" too); give a folder instead`,
    });
    await sink.close();
    await target.commit();
    expect(new Uint8Array(readFileSync(out))).toEqual(new Uint8Array([...bytes(10), ...bytes(5, 7)]));
    expect(readdirSync(dir)).toEqual(['old.safetensors']);
  });

  it('writes chunks of every size in order, small ones gathered; a chunk may be reused once its write resolves', async () => {
    const dir = tempDir();
    const out = join(dir, 'out.bin');
    const target = await createNodeOutputTarget(out, 'file', []);
    const sink = await target.createFile('out.bin');
    const random = seededRandom(42);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 600; i++) {
      // Runs of tiny chunks (fp8 scales) between slabs, and enough of them to fill the 1 MiB gather buffer.
      const length = random() < 0.85 ? Math.floor(random() * (random() < 0.5 ? 16 : 60_000)) : 64 * 1024 + Math.floor(random() * 300_000);
      const chunk = new Uint8Array(length);
      for (let k = 0; k < length; k++) chunk[k] = Math.floor(random() * 256);
      parts.push(chunk.slice());
      await sink.write(chunk);
      chunk.fill(0xee); // reused by the caller, as the merge's slab pool does
    }
    await sink.close();
    await target.commit();
    const written = readFileSync(out);
    expect(written.byteLength).toBe(parts.reduce((n, p) => n + p.byteLength, 0));
    expect(written.equals(Buffer.concat(parts))).toBe(true);
  });

  it('leaves nothing behind on abort, for files and folders', async () => {
    const dir = tempDir({ 'keep.txt': 'k' });
    const fileTarget = await createNodeOutputTarget(join(dir, 'out.safetensors'), 'file', []);
    const sink = await fileTarget.createFile('out.safetensors');
    await sink.write(bytes(100));
    await fileTarget.abort(); // while still open
    const folderTarget = await createNodeOutputTarget(join(dir, 'merged'), 'folder', []);
    const a = await folderTarget.createFile('model-00001-of-00002.safetensors');
    await a.write(bytes(7));
    await a.close();
    const b = await folderTarget.createFile('tokenizer/vocab.json');
    await b.write(bytes(3));
    await folderTarget.abort();
    await folderTarget.abort(); // idempotent
    expect(readdirSync(dir)).toEqual(['keep.txt']);
  });

  it('builds a folder aside and renames it into place on commit', async () => {
    const dir = tempDir();
    const out = join(dir, 'merged');
    const target = await createNodeOutputTarget(out, 'folder', []);
    for (const path of ['model.safetensors', 'tokenizer/vocab.json']) {
      const sink = await target.createFile(path);
      await sink.write(new TextEncoder().encode(path));
      await sink.close();
    }
    expect(existsSync(out)).toBe(false);
    await expect(target.createFile('model.safetensors')).rejects.toThrow(/twice/);
    await expect(target.createFile('../escape')).rejects.toThrow(/invalid/);
    await target.commit();
    expect(readdirSync(dir)).toEqual(['merged']);
    expect(readFileSync(join(out, 'tokenizer/vocab.json'), 'utf8')).toBe('tokenizer/vocab.json');
    await expect(target.createFile('late')).rejects.toThrow(/committed/);
  });

  it('refuses to commit while a file is still open', async () => {
    const dir = tempDir();
    const target = await createNodeOutputTarget(join(dir, 'x.safetensors'), 'file', []);
    await target.createFile('x');
    await expect(target.commit()).rejects.toThrow(/still being written/);
    await target.abort();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a non-empty folder unless overwriting, and then replaces it whole', async () => {
    const dir = tempDir({ 'merged/stale-shard.safetensors': 'old', 'other/x': 'x' });
    const out = join(dir, 'merged');
    expect(await codeOf(createNodeOutputTarget(out, 'folder', []))).toBe('OUTPUT_EXISTS');
    const target = await createNodeOutputTarget(out, 'folder', [], { overwrite: true });
    const sink = await target.createFile('model.safetensors');
    await sink.close();
    await target.commit();
    expect(readdirSync(out)).toEqual(['model.safetensors']);
    expect(readdirSync(dir).sort()).toEqual(['merged', 'other']);
  });

  it('accepts an existing empty folder', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'out'));
    const target = await createNodeOutputTarget(join(dir, 'out'), 'folder', []);
    await (await target.createFile('a.json')).close();
    await target.commit();
    expect(readdirSync(join(dir, 'out'))).toEqual(['a.json']);
  });

  it('refuses an output of the wrong kind or in a missing folder', async () => {
    const dir = tempDir({ 'file.safetensors': 'x', 'folder/a': 'y' });
    expect(await codeOf(createNodeOutputTarget(join(dir, 'folder'), 'file', []))).toBe('OUTPUT_EXISTS');
    expect(await codeOf(createNodeOutputTarget(join(dir, 'file.safetensors'), 'folder', []))).toBe('OUTPUT_EXISTS');
    expect(await codeOf(createNodeOutputTarget(join(dir, 'no/such/out.safetensors'), 'file', []))).toBe('BAD_ARGUMENT');
  });

  it('refuses an output that is, is inside, or contains an input, through links too', async () => {
    const dir = tempDir({ 'base/model.safetensors': 'w', 'lora.safetensors': 'l' });
    symlinkSync(join(dir, 'base'), join(dir, 'base-link'));
    const inputs = [join(dir, 'base'), join(dir, 'lora.safetensors')];
    const cases: [string, 'file' | 'folder'][] = [
      [join(dir, 'lora.safetensors'), 'file'],
      [join(dir, 'base'), 'folder'],
      [join(dir, 'base/model.safetensors'), 'file'],
      [join(dir, 'base-link/model.safetensors'), 'file'],
      [join(dir, 'base-link/new.safetensors'), 'file'],
      [join(dir, 'base/../lora.safetensors'), 'file'],
      [dir, 'folder'],
    ];
    for (const [out, kind] of cases) {
      const error = await createNodeOutputTarget(out, kind, inputs, { overwrite: true }).catch((e: MergeError) => e);
      expect((error as MergeError).code, out).toBe('OUTPUT_IS_INPUT');
    }
    // A sibling whose name merely starts with the input's name is fine.
    const ok = await createNodeOutputTarget(join(dir, 'base-merged'), 'folder', inputs);
    await ok.abort();
  });

  it('copies a file from an input set unchanged', async () => {
    const big = bytes(9 * 1024 * 1024 + 3); // more than one copy chunk
    const src = tempDir({ 'config.json': '{"a":1}', 'big.bin': big });
    const set = await openNodeInputFileSet(src);
    const outDir = tempDir();
    const target = await createNodeOutputTarget(join(outDir, 'merged'), 'folder', [src]);
    await copyInputFile(set, 'config.json', target);
    await copyInputFile(set, 'big.bin', target, 'nested/copy.bin');
    await target.commit();
    expect(readFileSync(join(outDir, 'merged/config.json'), 'utf8')).toBe('{"a":1}');
    // Buffer.equals: a deep toEqual over 9 MB is far too slow.
    expect(readFileSync(join(outDir, 'merged/nested/copy.bin')).equals(big)).toBe(true);
    expect(readFileSync(join(outDir, 'merged/nested/copy.bin')).equals(big.subarray(1))).toBe(false);
  });
});


describe('streaming a safetensors file to disk and back', () => {
  it('writes slabs of a large tensor through the output target and reads parts back exactly', async () => {
    const rows = 257;
    const cols = 1031; // odd sizes: slabs do not line up with anything
    const values = randomValues(rows * cols, seededRandom(3), 10);
    const dir = tempDir();
    const out = join(dir, 'merged.safetensors');
    const target = await createNodeOutputTarget(out, 'file', []);
    const writer = await createSafetensorsWriter(await target.createFile('merged.safetensors'), [
      { name: 'small', dtype: 'F16', shape: [3] },
      { name: 'big', dtype: 'BF16', shape: [rows, cols] },
    ], { merged_with: 'two adapters' });
    await writer.writeTensor('small', encodeValues([1, 2, 3], 'F16'));
    for (let r = 0; r < rows; r += 19) {
      const slab = values.subarray(r * cols, Math.min(rows, r + 19) * cols);
      await writer.writeChunk('big', encodeValues(slab, 'BF16'));
    }
    await writer.finish();
    await target.commit();
    expect(readdirSync(dir)).toEqual(['merged.safetensors']);

    const file = await openSafetensors(await openNodeByteSource(out));
    expect(file.metadata).toEqual({ merged_with: 'two adapters' });
    const big = file.get('big')!;
    expect(big.offset % 2).toBe(0);
    const row = 200;
    const got = decodeValues(await file.readPart(big, row * cols * 2, cols * 2), 'BF16');
    expect(Array.from(got)).toEqual(Array.from(values.subarray(row * cols, (row + 1) * cols), (v) => roundForDType(v, 'BF16')));
    const all = decodeValues(await file.read(big), 'BF16');
    let mismatches = 0;
    for (let i = 0; i < all.length; i++) if (all[i] !== roundForDType(values[i], 'BF16')) mismatches++;
    expect(mismatches).toBe(0);
    await file.source.close();
  });
});
