/**
 * Refusals of bad output paths, inputs and misuse that no other test reached (found by disabling
 * each check in src/io and src/pipeline one at a time). Each asserts the one-line message, and that
 * nothing is left at the output path and no input changed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createNodeOutputTarget } from '../src/io/node-output.js';
import { openNodeByteSource } from '../src/io/node-byte-source.js';
import { urlByteSource, urlInputFileSet } from '../src/io/url-input-files.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { MergeError } from '../src/errors.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** The MergeError a promise rejects with (fails the test if it resolves or throws anything else). */
async function refusal(promise: Promise<unknown>): Promise<MergeError> {
  // Should a check fail to refuse, an output target that was opened is aborted (no lock file left).
  const got = await promise.then(async (value) => {
    await (value as { abort?: () => Promise<void> } | undefined)?.abort?.();
    return 'no error';
  }, (e: unknown) => e);
  expect(got).toBeInstanceOf(MergeError);
  return got as MergeError;
}

describe('--out refusals (createNodeOutputTarget)', () => {
  it('refuses an empty --out', async () => {
    const e = await refusal(createNodeOutputTarget('  ', 'file', []));
    expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', '--out is empty; name the output file or folder']);
  });

  it('writes `--out DIR/` as DIR/<file name>, creating DIR on commit; refuses it without a file name', async () => {
    const dir = temp.make({ 'base.safetensors': 'base' });
    const out = join(dir, 'merged') + '/';
    const e = await refusal(createNodeOutputTarget(out, 'file', []));
    expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', `${out}: names a folder; give the output file's name`]);
    expect(readdirSync(dir)).toEqual(['base.safetensors']);

    const target = await createNodeOutputTarget(out, 'file', [], { fileName: 'base.safetensors' });
    const sink = await target.createFile('base.safetensors');
    await sink.write(new TextEncoder().encode('merged'));
    await sink.close();
    expect(existsSync(join(dir, 'merged'))).toBe(false); // only on commit
    await target.commit();
    expect(readFileSync(join(dir, 'merged', 'base.safetensors'), 'utf8')).toBe('merged');
    expect(readFileSync(join(dir, 'base.safetensors'), 'utf8')).toBe('base');
  });

  it('refuses `--out FILE/` when FILE exists and is a file, leaving it as it was', async () => {
    const dir = temp.make({ 'notes.txt': 'keep me' });
    const out = join(dir, 'notes.txt') + '/';
    const e = await refusal(createNodeOutputTarget(out, 'file', [], { fileName: 'model.safetensors' }));
    expect([e.code, e.message]).toEqual(['OUTPUT_EXISTS', `${out}: exists and is not a folder`]);
    expect(readdirSync(dir)).toEqual(['notes.txt']);
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('refuses a file name longer than 255 bytes before creating anything', async () => {
    const dir = temp.make();
    // 130 two-byte characters: 260 bytes, under 255 characters (the limit is in bytes).
    const out = join(dir, 'é'.repeat(130) + '.safetensors');
    const e = await refusal(createNodeOutputTarget(out, 'file', []));
    expect(e.code).toBe('FILESYSTEM');
    expect(e.message).toBe(`${out}: the name is longer than 255 bytes, which file systems refuse (ENAMETOOLONG); choose a shorter --out`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('names the plain overlap of --out with an input, not a hard link or bind mount, and writes nothing', async () => {
    const dir = temp.make({ 'base/model.safetensors': 'weights', 'lora/adapter_model.safetensors': 'lora' });
    const inputs = [join(dir, 'base'), join(dir, 'lora', 'adapter_model.safetensors')];
    const cases: [string, 'file' | 'folder', string][] = [
      [join(dir, 'lora', 'adapter_model.safetensors'), 'file', `output would overwrite input ${inputs[1]}`], // the input itself
      [join(dir, 'base', 'merged.safetensors'), 'file', `is inside input folder ${inputs[0]}`], // a new file inside an input folder
      [join(dir, 'lora'), 'folder', `holds input ${inputs[1]}`], // a folder holding an input
    ];
    for (const [out, kind, overlap] of cases) {
      const e = await refusal(createNodeOutputTarget(out, kind, inputs, { overwrite: true }));
      expect([e.code, e.message]).toEqual(['OUTPUT_IS_INPUT', `${out}: ${overlap}; choose another output path`]);
    }
    expect(readdirSync(join(dir, 'base'))).toEqual(['model.safetensors']);
    expect(readdirSync(join(dir, 'lora'))).toEqual(['adapter_model.safetensors']);
    expect(readFileSync(inputs[1], 'utf8')).toBe('lora');
  });

  it("refuses misuse of an output target (the writers' bugs, not the user's): a write after close, a second file in a one-file output, a commit of nothing", async () => {
    const dir = temp.make();
    const one = await createNodeOutputTarget(join(dir, 'model.safetensors'), 'file', []);
    const sink = await one.createFile('model.safetensors');
    await sink.close();
    await expect(sink.write(new Uint8Array(8))).rejects.toThrow(/: write after close$/);
    await expect(one.createFile('model-2.safetensors')).rejects.toThrow(`${join(dir, 'model.safetensors')}: is one file, but more than one is written ("model-2.safetensors" too); give a folder instead`);
    await one.abort();
    const empty = await createNodeOutputTarget(join(dir, 'empty.safetensors'), 'file', []);
    await expect(empty.commit()).rejects.toThrow(`${join(dir, 'empty.safetensors')}: nothing was written`);
    await empty.abort();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a second writer of the same output while the first holds it, then lets it in once released', async () => {
    const dir = temp.make();
    const out = join(dir, 'merged');
    const first = await createNodeOutputTarget(out, 'folder', []);
    const e = await refusal(createNodeOutputTarget(out, 'folder', []));
    expect([e.code, e.message]).toEqual(['OUTPUT_BUSY', `${out}: another merge (process ${process.pid}) is writing this output; wait for it to finish or choose another --out`]);
    await first.abort();
    const second = await createNodeOutputTarget(out, 'folder', []);
    await second.abort();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses the current folder as --out', async () => {
    const e = await refusal(createNodeOutputTarget(process.cwd(), 'folder', []));
    expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', `${process.cwd()}: is the current folder or contains it; name a new folder for the output`]);
  });
});

describe('input refusals', () => {
  it('names the range and the size when a read runs past the end of a file, and refuses a negative range', async () => {
    const dir = temp.make({ 'adapter_model.safetensors': new Uint8Array(100) });
    const path = join(dir, 'adapter_model.safetensors');
    const source = await openNodeByteSource(path);
    const e = await refusal(source.read(90, 11));
    expect([e.code, e.message]).toEqual(['TRUNCATED', `${path}: needed bytes 90–101 but the file has only 100 (truncated?)`]);
    // A negative offset is a caller's bug, not a bad file: a RangeError, not a read.
    await expect(source.read(-1, 4)).rejects.toThrow(new RangeError(`${path}: invalid read of 4 bytes at -1`));
    await source.close();
  });

  it('refuses a URL that names no file, and two URLs with the same file name', () => {
    const noFile = () => urlInputFileSet(['https://huggingface.co/'], 'base', async () => new Response(''));
    expect(noFile).toThrow(new MergeError('BAD_ARGUMENT', 'https://huggingface.co/: names no file'));
    const twice = () => urlInputFileSet([
      'https://example.org/a/adapter_model.safetensors',
      'https://example.org/b/adapter_model.safetensors',
    ], 'adapter', async () => new Response(''));
    expect(twice).toThrow(new MergeError('BAD_ARGUMENT', 'https://example.org/b/adapter_model.safetensors: a second file named "adapter_model.safetensors"'));
    expect(twice).toThrow(MergeError);
  });

  it('refuses a server that gives no size, neither by Content-Length nor by Content-Range', async () => {
    const href = 'https://example.org/model.safetensors';
    // HEAD without Content-Length (chunked), then a range answer whose total is "*" (unknown).
    const fetchFn = async (_url: string, init?: RequestInit) => init?.method === 'HEAD'
      ? new Response(null, { status: 200 })
      : new Response(new Uint8Array([7]), { status: 206, headers: { 'Content-Range': 'bytes 0-0/*' } });
    const e = await refusal(urlByteSource(href, fetchFn));
    expect([e.code, e.message]).toEqual(['UNSUPPORTED_FORMAT', `${href}: the server does not say how large the file is`]);
  });
});

describe('prepareMerge argument refusals', () => {
  const base = buildSafetensors([{ name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] }]);

  it('refuses a call with no adapter', async () => {
    const dir = temp.make({ 'model.safetensors': base });
    const e = await refusal(prepareMerge(await openNodeInputFileSet(join(dir, 'model.safetensors')), []));
    expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', 'prepareMerge: adapters is an empty array; give at least one element, an adapter as { files, weight }']);
  });

  it('refuses an adapter weight that is not a finite number, naming the adapter', async () => {
    const dir = temp.make({ 'model.safetensors': base, 'lora/adapter_config.json': '{}' });
    const adapter = await openNodeInputFileSet(join(dir, 'lora'));
    for (const weight of [NaN, Infinity]) {
      const e = await refusal(prepareMerge(await openNodeInputFileSet(join(dir, 'model.safetensors')), [{ files: adapter, weight }]));
      expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', `prepareMerge: adapters[0].weight (${adapter.name}) must be a finite number (default 1; negative subtracts), not ${Number.isNaN(weight) ? 'NaN' : `the number ${weight}`}`]);
    }
  });
});
