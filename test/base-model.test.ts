/** Base model layouts: single files, transformers and diffusers folders (sharded or not), refusals. */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openBaseModel } from '../src/formats/base-model.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { MergeError, type MergeErrorCode } from '../src/errors.js';
import type { InputFileSet } from '../src/io/types.js';
import {
  buildSafetensors, decodeValues, randomValues, removeTempDir, roundForDType, seededRandom, writeTempDir,
  type FixtureDType, type FixtureTensor,
} from './helpers/fixtures.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeTempDir(dirs.pop()!);
});

const rand = seededRandom(42);

/** A tensor of random values with odd sizes; `values` keeps the f64 originals for checking reads. */
function tensor(name: string, shape: number[], dtype: FixtureDType = 'F32'): FixtureTensor & { values: Float64Array } {
  const values = randomValues(shape.reduce((a, b) => a * b, 1), rand, 3);
  return { name, dtype, shape, data: values, values };
}

async function expectValues(read: Promise<Uint8Array>, t: { dtype: FixtureDType; values: ArrayLike<number> }, from = 0) {
  const got = decodeValues(await read, t.dtype);
  const wanted = Array.from(t.values).slice(from, from + got.length).map((v) => roundForDType(v, t.dtype));
  expect(got.length).toBeGreaterThan(0);
  expect(Array.from(got)).toEqual(wanted);
}

async function refusal(files: InputFileSet, code: MergeErrorCode, ...mentions: string[]): Promise<void> {
  const error = await openBaseModel(files).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(MergeError);
  expect((error as MergeError).code, (error as MergeError).message).toBe(code);
  for (const m of mentions) expect((error as MergeError).message).toContain(m);
}

/** An input set that fails the test if a file matching `forbidden` is ever opened or read. */
function guarded(files: InputFileSet, forbidden: RegExp): InputFileSet {
  return {
    name: files.name,
    list: () => files.list(),
    open: (p) => (forbidden.test(p) ? Promise.reject(new Error(`opened ${p}`)) : files.open(p)),
    readText: (p) => (forbidden.test(p) ? Promise.reject(new Error(`read ${p}`)) : files.readText(p)),
  };
}

describe('base model layouts', () => {
  it('opens a single .safetensors file from disk', async () => {
    const w = tensor('layers.0.weight', [7, 13], 'BF16');
    const b = tensor('layers.0.bias', [7], 'F16');
    const dir = writeTempDir({ 'sd15.safetensors': buildSafetensors([w, b], { format: 'pt' }) });
    dirs.push(dir);
    const model = await openBaseModel(await openNodeInputFileSet(join(dir, 'sd15.safetensors')));
    expect(model.kind).toBe('file');
    expect([...model.tensors.keys()]).toEqual(['layers.0.weight', 'layers.0.bias']);
    expect(model.tensors.get('layers.0.weight')).toMatchObject({ dtype: 'BF16', shape: [7, 13], shard: 'sd15.safetensors' });
    expect(model.shards.map((s) => s.path)).toEqual(['sd15.safetensors']);
    expect(model.shards[0].file.metadata).toEqual({ format: 'pt' });
    expect(model.otherFiles).toEqual([]);
    await expectValues(model.read('layers.0.weight'), w);
    await expectValues(model.readPart('layers.0.weight', 2 * 13 * 2, 13 * 2), w, 2 * 13);
    await expect(model.read('nope')).rejects.toThrow(/no tensor "nope"/);
    await model.close();
  });

  it('opens a transformers folder and lists the small files to copy', async () => {
    const w = tensor('model.embed_tokens.weight', [11, 5]);
    const files = memoryInputFileSet({
      'model.safetensors': buildSafetensors([w]),
      'config.json': '{"model_type":"llama"}',
      'generation_config.json': '{}',
      'tokenizer.json': '{}',
      'tokenizer/special_tokens_map.json': '{}',
      'README.md': '# model',
      'pytorch_model.bin': 'stale pickle, never opened',
      'pytorch_model.bin.index.json': '{}',
      'tf_model.h5': 'x',
      'flax_model.msgpack': 'x',
    }, 'llama-tiny');
    const model = await openBaseModel(guarded(files, /\.(bin|h5|msgpack)$/));
    expect(model.kind).toBe('transformers');
    expect(model.index).toBeUndefined();
    expect(model.otherFiles).toEqual(['README.md', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer/special_tokens_map.json']);
    await expectValues(model.read('model.embed_tokens.weight'), w);
  });

  it('opens a sharded transformers folder, validated against its index', async () => {
    const tensors = [
      tensor('a.weight', [3, 17], 'BF16'), tensor('b.weight', [1, 9], 'F16'),
      tensor('c.weight', [5], 'F32'), tensor('d.weight', [0, 4], 'F32'), tensor('e.weight', [31, 2], 'F16'),
    ];
    const shardOf = ['model-00001-of-00003.safetensors', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    const index = { metadata: { total_size: 1234 }, weight_map: Object.fromEntries(tensors.map((t, i) => [t.name, shardOf[i]])) };
    const files: Record<string, Uint8Array | string> = {
      'model.safetensors.index.json': JSON.stringify(index),
      'config.json': '{}',
    };
    for (const shard of new Set(shardOf)) files[shard] = buildSafetensors(tensors.filter((_, i) => shardOf[i] === shard));
    const dir = writeTempDir(files);
    dirs.push(dir);
    const model = await openBaseModel(await openNodeInputFileSet(dir));
    expect(model.kind).toBe('transformers');
    expect(model.shards.map((s) => s.path)).toEqual([...new Set(shardOf)]);
    expect(model.indexPath).toBe('model.safetensors.index.json');
    // Its fields other than the weight map, which the shards' headers were checked against and then dropped.
    expect(model.index).toEqual({ metadata: { total_size: 1234 } });
    expect(model.otherFiles).toEqual(['config.json']);
    expect(model.tensors.size).toBe(5);
    for (const [i, t] of tensors.entries()) {
      expect(model.tensors.get(t.name)!.shard).toBe(shardOf[i]);
      if (t.values.length) await expectValues(model.read(t.name), t);
    }
    await expectValues(model.readPart('e.weight', 2 * 10, 2 * 7), tensors[4], 10);
    expect((await model.read('d.weight')).byteLength).toBe(0);
    await model.close();
  });

  it('opens diffusers folders, whole or sharded', async () => {
    const w = tensor('conv_in.weight', [4, 3, 3, 3], 'F16');
    const v = tensor('time_embedding.linear_1.weight', [9, 7], 'F32');
    const whole = memoryInputFileSet({ 'diffusion_pytorch_model.safetensors': buildSafetensors([w, v]), 'config.json': '{}' }, 'unet');
    const model = await openBaseModel(whole);
    expect(model.kind).toBe('diffusers');
    expect(model.otherFiles).toEqual(['config.json']);
    await expectValues(model.read('conv_in.weight'), w);

    const sharded = memoryInputFileSet({
      'diffusion_pytorch_model-00001-of-00002.safetensors': buildSafetensors([w]),
      'diffusion_pytorch_model-00002-of-00002.safetensors': buildSafetensors([v]),
      'diffusion_pytorch_model.safetensors.index.json': JSON.stringify({
        weight_map: { 'conv_in.weight': 'diffusion_pytorch_model-00001-of-00002.safetensors', 'time_embedding.linear_1.weight': 'diffusion_pytorch_model-00002-of-00002.safetensors' },
      }),
    }, 'unet');
    const model2 = await openBaseModel(sharded);
    expect(model2.kind).toBe('diffusers');
    expect(model2.shards.length).toBe(2);
    await expectValues(model2.read('time_embedding.linear_1.weight'), v);
  });

  it('accepts shards without an index when the series is complete', async () => {
    const a = tensor('a', [2, 3]);
    const b = tensor('b', [3]);
    const model = await openBaseModel(memoryInputFileSet({
      'model-00002-of-00002.safetensors': buildSafetensors([b]),
      'model-00001-of-00002.safetensors': buildSafetensors([a]),
    }));
    expect(model.shards.map((s) => s.path)).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    await expectValues(model.read('b'), b);
    await refusal(memoryInputFileSet({
      'model-00001-of-00003.safetensors': buildSafetensors([a]),
      'model-00003-of-00003.safetensors': buildSafetensors([b]),
    }), 'NOT_FOUND', 'shard 2 of 3');
    await refusal(memoryInputFileSet({
      'model-00001-of-00002.safetensors': buildSafetensors([a]),
      'model-00002-of-00002.safetensors': buildSafetensors([a]),
    }), 'BAD_CONFIG', '"a"', 'both');
  });

  it('accepts any folder holding exactly one .safetensors file', async () => {
    const w = tensor('lm_head.weight', [3, 3]);
    const model = await openBaseModel(memoryInputFileSet({ 'weights/custom-name.safetensors': buildSafetensors([w]), 'notes.txt': 'x' }, 'my-model'));
    expect(model.kind).toBe('folder');
    expect(model.otherFiles).toEqual(['notes.txt']);
    await expectValues(model.read('lm_head.weight'), w);
  });
});

describe('base model refusals', () => {
  const a = tensor('a', [2]);
  const b = tensor('b', [3]);
  const s1 = 'model-00001-of-00002.safetensors';
  const s2 = 'model-00002-of-00002.safetensors';
  const sharded = (weightMap: Record<string, string>, extra: Record<string, Uint8Array | string> = {}) => memoryInputFileSet({
    [s1]: buildSafetensors([a]),
    [s2]: buildSafetensors([b]),
    'model.safetensors.index.json': JSON.stringify({ weight_map: weightMap }),
    ...extra,
  }, 'sharded-model');

  it('refuses an index entry pointing at the wrong shard, a missing tensor, or an unlisted tensor or shard', async () => {
    await refusal(sharded({ a: s2, b: s1 }), 'BAD_CONFIG', '"a"', s2);
    await refusal(sharded({ a: s1, b: s2, c: s2 }), 'BAD_CONFIG', '"c"', 'does not hold');
    await refusal(sharded({ a: s1 }), 'BAD_CONFIG', s2, 'not named');
    await refusal(sharded({ a: s1, b: 'model-00009-of-00009.safetensors' }), 'NOT_FOUND', 'model-00009-of-00009.safetensors');
    const extra = tensor('extra', [1]);
    const withExtra = memoryInputFileSet({
      [s1]: buildSafetensors([a, extra]),
      [s2]: buildSafetensors([b]),
      'model.safetensors.index.json': JSON.stringify({ weight_map: { a: s1, b: s2 } }),
    }, 'm');
    await refusal(withExtra, 'BAD_CONFIG', '"extra"', 'not listed');
  });

  it('refuses an index that is not JSON or has no weight_map', async () => {
    await refusal(memoryInputFileSet({ [s1]: buildSafetensors([a]), 'model.safetensors.index.json': '{oops' }, 'm'), 'BAD_CONFIG', 'model.safetensors.index.json');
    await refusal(memoryInputFileSet({ [s1]: buildSafetensors([a]), 'model.safetensors.index.json': '{"metadata":{}}' }, 'm'), 'BAD_CONFIG', 'weight_map');
    await refusal(memoryInputFileSet({ [s1]: buildSafetensors([a]), 'model.safetensors.index.json': '{"weight_map":{"a":"x.bin"}}' }, 'm'), 'BAD_CONFIG', 'x.bin');
  });

  it('refuses pickle checkpoints without opening them', async () => {
    const files = memoryInputFileSet({ 'pytorch_model.bin': 'PK\u0003\u0004 pickle', 'config.json': '{}' }, 'old-model');
    await expect(openBaseModel(guarded(files, /\.bin$/))).rejects.toThrow(/pytorch_model\.bin is a pickle file; loramerge reads weights from \.safetensors and \.gguf files only \(convert it to \.safetensors first\)/);
    await refusal(guarded(files, /\.bin$/), 'PICKLE_REFUSED', 'old-model');
    for (const name of ['v1-5.ckpt', 'lora.pt', 'weights.pth']) {
      await refusal(guarded(memoryInputFileSet({ [name]: 'x' }, name), /./), 'PICKLE_REFUSED', name, 'pickle');
    }
  });

  it('refuses several unrelated weight files, other formats, and folders without weights', async () => {
    await refusal(memoryInputFileSet({ 'unet/a.safetensors': buildSafetensors([a]), 'vae/b.safetensors': buildSafetensors([b]) }, 'pipeline'), 'UNSUPPORTED_FORMAT', 'unet/a.safetensors');
    await refusal(memoryInputFileSet({ 'model.gguf': 'GGUF' }, 'q4'), 'UNSUPPORTED_FORMAT', 'model.gguf');
    await refusal(memoryInputFileSet({ 'config.json': '{}' }, 'empty-model'), 'NOT_FOUND', 'empty-model');
  });

  it('names the broken shard and closes the ones already open', async () => {
    const good = buildSafetensors([a]);
    const broken = buildSafetensors([b]).subarray(0, 20);
    const inner = memoryInputFileSet({ [s1]: good, [s2]: broken }, 'half-downloaded');
    let open = 0;
    const counting: InputFileSet = {
      ...inner,
      list: () => inner.list(),
      async open(p) {
        const source = await inner.open(p);
        open++;
        return { ...source, read: (o, l) => source.read(o, l), close: async () => void open-- };
      },
    };
    const error = await openBaseModel(counting).catch((e: MergeError) => e);
    expect((error as MergeError).message).toContain(s2);
    expect(open).toBe(0);
  });
});
