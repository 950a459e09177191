/**
 * A sharded base's `model.safetensors.index.json` from the internet: its bytes, nesting, values and
 * weight_map entries are bounded, and every entry is checked before a shard is opened. A hostile
 * index (gigabytes, millions of entries, nested for ever, a value that is no file name, a shard
 * name out of the folder) is refused in one line naming the file and what is wrong; a key written
 * twice is read as Python's json (transformers) reads it, the last one counting.
 */
import { closeSync, ftruncateSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../src/formats/open-model.js';
import { MAX_CONFIG_BYTES, MAX_CONFIG_NESTING, MAX_CONFIG_VALUES, MAX_TENSORS } from '../src/limits.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import type { InputFileSet } from '../src/io/types.js';
import { watchingOpens } from './helpers/deepseek-v3-headers.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const INDEX = 'model.safetensors.index.json';
const s1 = 'model-00001-of-00002.safetensors', s2 = 'model-00002-of-00002.safetensors';
// Two shards of a Llama's first layer (F16, hidden 8): q_proj in the first, k_proj in the second.
const q = 'model.layers.0.self_attn.q_proj.weight', k = 'model.layers.0.self_attn.k_proj.weight';
const shards = {
  [s1]: buildSafetensors([{ name: q, dtype: 'F16', shape: [8, 8], data: new Uint8Array(128) }], { format: 'pt' }),
  [s2]: buildSafetensors([{ name: k, dtype: 'F16', shape: [8, 8], data: new Uint8Array(128) }], { format: 'pt' }),
};
const indexText = (weightMap: Record<string, unknown>) => JSON.stringify({ metadata: { total_size: 256 }, weight_map: weightMap });
const model = (index: string | Uint8Array) => memoryInputFileSet({ ...shards, [INDEX]: index }, 'llama');

/** What opening `files` as a base ends in, and how many shards it opened on the way. */
async function opened(files: InputFileSet): Promise<{ code?: string; message: string; shardsOpened: number }> {
  const { files: watched, opened: paths } = watchingOpens(files);
  const outcome = await openModel(watched).then(async (m): Promise<{ code?: string; message: string }> => {
    await m.close();
    return { message: `opened ${[...m.tensors.keys()].sort().join(', ')}` };
  }, (e: unknown) => e as { code?: string; message: string });
  return { code: outcome.code, message: outcome.message, shardsOpened: paths.size };
}

describe('a shard index', () => {
  it('as written (the control): both shards open, each tensor where the index says', async () => {
    expect(await opened(model(indexText({ [q]: s1, [k]: s2 })))).toEqual({ code: undefined, message: `opened ${k}, ${q}`, shardsOpened: 2 });
  });

  it(`of more than MAX_CONFIG_BYTES (${MAX_CONFIG_BYTES}) is refused from its size, on disk and in memory, before it is parsed`, async () => {
    const dir = temp.make(shards);
    // On disk, a sparse file of the size: refused from its size, never read.
    const fd = openSync(join(dir, INDEX), 'w');
    ftruncateSync(fd, MAX_CONFIG_BYTES + 1);
    closeSync(fd);
    expect(await opened(await openNodeInputFileSet(dir))).toEqual({
      code: 'LIMIT_EXCEEDED', message: `${join(dir, INDEX)}: ${MAX_CONFIG_BYTES + 1} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`, shardsOpened: 0,
    });
    // In memory (a server's upload, a page's buffer): the same line, not a decode and parse of it.
    expect(await opened(model(new Uint8Array(MAX_CONFIG_BYTES + 1).fill(0x20)))).toEqual({
      code: 'LIMIT_EXCEEDED', message: `llama/${INDEX}: ${MAX_CONFIG_BYTES + 1} bytes is too large for a config or index (the limit MAX_CONFIG_BYTES is ${MAX_CONFIG_BYTES})`, shardsOpened: 0,
    });
    // At the limit, on disk, it is read (and refused for what it holds: blanks are no JSON).
    writeFileSync(join(dir, INDEX), ' '.repeat(MAX_CONFIG_BYTES));
    expect((await opened(await openNodeInputFileSet(dir))).message).toBe(`${join(dir, INDEX)}: empty, not JSON (an interrupted download?): download the file again`);
  }, 60_000);

  it('nested deeper than MAX_CONFIG_NESTING, or of more values than MAX_CONFIG_VALUES, is refused before it is parsed', async () => {
    const deep = `{"weight_map":{"${q}":${'['.repeat(MAX_CONFIG_NESTING)}${']'.repeat(MAX_CONFIG_NESTING)}}}`;
    expect(await opened(model(deep))).toEqual({
      code: 'LIMIT_EXCEEDED', message: `llama/${INDEX}: nests deeper than ${MAX_CONFIG_NESTING} levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`, shardsOpened: 0,
    });
    // Millions of entries (a million short ones, 12 MB: long ones pass MAX_CONFIG_BYTES first).
    const millions = `{"weight_map":{${Array.from({ length: 1_000_000 }, (_, i) => `"${i}":0`).join(',')}}}`;
    expect(await opened(model(millions))).toEqual({
      code: 'LIMIT_EXCEEDED', message: `llama/${INDEX}: holds more than ${MAX_CONFIG_VALUES} values (the limit MAX_CONFIG_VALUES); not a config this tool reads`, shardsOpened: 0,
    });
  }, 60_000);

  it(`listing more tensors than MAX_TENSORS (${MAX_TENSORS}) is refused in one line before any shard is opened`, async () => {
    // Within MAX_CONFIG_VALUES, but more tensors than any model this tool opens may hold over its shards.
    const map = Object.fromEntries(Array.from({ length: MAX_TENSORS + 1 }, (_, i) => [`model.layers.${i}.mlp.up_proj.weight`, i % 2 === 0 ? s1 : s2]));
    expect(await opened(model(indexText(map)))).toEqual({
      code: 'LIMIT_EXCEEDED',
      message: `llama/${INDEX}: its weight_map lists ${MAX_TENSORS + 1} tensors, more than a model may hold (the limit MAX_TENSORS, ${MAX_TENSORS}); not an index of a model this tool reads`,
      shardsOpened: 0,
    });
  }, 60_000);

  it('mapping a tensor to anything but the name of a .safetensors file in its folder is refused naming the entry, before any shard is opened', async () => {
    const notAFile = (shown: string) => `llama/${INDEX}: tensor "${q}" maps to ${shown}, not a .safetensors file; an index maps each tensor to the shard file that holds it`;
    for (const [value, shown] of [[1, '1'], [null, 'null'], [true, 'true'], [{ file: s1 }, `{"file":"${s1}"}`], [[s1], `["${s1}"]`], ['model-00001-of-00002.bin', '"model-00001-of-00002.bin"']] as const) {
      expect(await opened(model(indexText({ [q]: value, [k]: s2 }))), shown).toEqual({ code: 'BAD_CONFIG', message: notAFile(shown), shardsOpened: 0 });
    }
    const outside = (shard: string) => `llama/${INDEX}: tensor "${q}" maps to ${JSON.stringify(shard)}, outside the model's folder; an index names shards of its own folder`;
    for (const shard of [`../${s1}`, `shards/../../${s1}`, `/models/llama/${s1}`, `C:\\models\\${s1}`, `\\\\server\\share\\${s1}`, `..\\${s1}`]) {
      expect(await opened(model(indexText({ [k]: s2, [q]: shard }))), shard).toEqual({ code: 'BAD_CONFIG', message: outside(shard), shardsOpened: 0 });
    }
    for (const map of ['[]', `[["${q}","${s1}"]]`, `"${s1}"`]) {
      expect(await opened(model(`{"weight_map":${map}}`)), map).toEqual({ code: 'BAD_CONFIG', message: `llama/${INDEX}: no "weight_map" object`, shardsOpened: 0 });
    }
  });

  it('quotes a name of the file cut and escaped: one line, whatever it holds', async () => {
    const name = `${'x'.repeat(100_000)}\n\u001b[2Jerror: all good`;
    const { code, message } = await opened(model(indexText({ [name]: 5 })));
    expect(code).toBe('BAD_CONFIG');
    expect(message).toBe(`llama/${INDEX}: tensor "${'x'.repeat(79)}… maps to 5, not a .safetensors file; an index maps each tensor to the shard file that holds it`);
  });

  it('with a key written twice is read as Python\'s json reads it: the last one counts', async () => {
    // json.loads (transformers reads the index with it) keeps the last value of a repeated key.
    const twice = (first: string, last: string) => `{"weight_map":{"${q}":"${first}","${k}":"${s2}","${q}":"${last}"}}`;
    expect(await opened(model(twice(s2, s1)))).toEqual({ code: undefined, message: `opened ${k}, ${q}`, shardsOpened: 2 });
    // The last puts q_proj in the second shard: the first is named by no entry (transformers would not load it).
    expect(await opened(model(twice(s1, s2)))).toEqual({ code: 'BAD_CONFIG', message: `llama: shard ${s1} is not named in ${INDEX}`, shardsOpened: 0 });
  });
});
