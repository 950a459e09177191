/**
 * GGUF headers at and past the reader's limits, built byte by byte as llama.cpp's gguf.cpp lays
 * them out (v3: "GGUF", version, tensor count, metadata count, key-value entries, tensor infos,
 * padding to general.alignment, data): a long chat template reads and merges whole, a string past
 * MAX_GGUF_STRING_BYTES and arrays past MAX_GGUF_ARRAY_ELEMENTS are refused by name at once, and
 * only a file that ends before its header does is called truncated.
 */
import { readFileSync, truncateSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MergeError } from '../src/errors.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { bytesSource } from '../src/io/memory-source.js';
import { openNodeByteSource } from '../src/io/node-byte-source.js';
import { urlByteSource } from '../src/io/node-url-inputs.js';
import type { ByteSource } from '../src/io/types.js';
import { MAX_GGUF_ARRAY_ELEMENTS, MAX_GGUF_STRING_BYTES } from '../src/limits.js';
import { errorLines, listDir, runCli } from './helpers/cli.js';
import { concatBytes, sparseSource, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorValues, type FixtureTensor, type MetaValue } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, splitF16Llama, truthWithLora } from './helpers/gguf-models.js';
import { closeServer, listenLocally } from './helpers/local-server.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const enc = new TextEncoder();
const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};
const u64 = (n: number | bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};
const STRING = 8;
const ARRAY = 9;

/** The refusal `run` rejects with: a MergeError of `code`, one line. */
async function refusal(run: () => Promise<unknown>, code: string): Promise<string> {
  const caught = await run().then(() => undefined, (e: unknown) => e);
  expect(caught, `expected ${code}`).toBeInstanceOf(MergeError);
  expect((caught as MergeError).code, (caught as MergeError).message).toBe(code);
  expect((caught as MergeError).message).not.toContain('\n');
  return (caught as MergeError).message;
}

/**
 * A chat template of `bytes` bytes: a Jinja template as tokenizer_config.json carries it, repeated
 * (some models ship one per tool-calling dialect), cut at a character boundary of ASCII.
 */
function chatTemplate(bytes: number): string {
  const piece = "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}\n";
  return piece.repeat(Math.ceil(bytes / piece.length)).slice(0, bytes);
}

/** The small F16 llama of gguf-models.ts in one file, with `extra` metadata after its own. */
function f16Llama(extra: [string, MetaValue][]) {
  const model = splitF16Llama();
  const tensors: FixtureTensor[] = [...model.tensors].map(([name, t]) => ({ name, type: t.type, ne: [...t.shape].reverse(), data: t.data }));
  return { model, bytes: buildGguf({ metadata: [...model.metadata, ...extra], tensors }) };
}

/** The fixed header of a v3 file of `tensors` tensors and `entries` metadata entries. */
const fixedHeader = (tensors: number, entries: number) => concatBytes([enc.encode('GGUF'), u32(3), u64(tensors), u64(entries)]);
/** A metadata key and value type. */
const keyOf = (key: string, type: number) => concatBytes([u64(enc.encode(key).length), enc.encode(key), u32(type)]);

describe('a GGUF whose metadata holds a string of megabytes', () => {
  // @huggingface/gguf read a string through a window grown 2 MB at a time and cut it at the
  // window's end without an error: 2.5 MB was refused as invalid, 5 MB as truncated.
  const template = chatTemplate(3_000_000);
  const { model, bytes } = f16Llama([['tokenizer.chat_template', { type: 'string', value: template }]]);

  it('reads a 3 MB tokenizer.chat_template whole', async () => {
    const file = await openGguf(bytesSource(bytes, 'Llama-3-8B-Instruct-F16.gguf'));
    expect(file.value('tokenizer.chat_template')?.value).toBe(template);
    // What follows it is read from where it ends.
    expect(file.tensors.map((t) => t.name)).toEqual([...model.tensors.keys()]);
    expect(file.value('general.architecture')?.value).toBe('llama');
  });

  it('merges and inspects such a base through the CLI, writing the template back unchanged', async () => {
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F32' }], 8);
    const dir = temp.make({ 'base.gguf': bytes, 'lora.gguf': lora.bytes });
    const inspect = await runCli(['inspect', join(dir, 'base.gguf')]);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(/base model \(gguf\)/);
    const out = join(dir, 'merged.gguf');
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', out, '--backend', 'cpu']);
    expect(result.code, result.stderr).toBe(0);
    const merged = readGguf(readFileSync(out));
    expect(merged.metadata.get('tokenizer.chat_template')?.value).toBe(template);
    const f = lora.factors.get('blk.0.attn_v.weight')!;
    const want = truthWithLora(model.tensors.get('blk.0.attn_v.weight')!.values, 128, LLAMA.hidden, f, 8 / 4, false);
    const got = tensorValues('F16', merged.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!.data);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / 2 ** Math.max(Math.floor(Math.log2(Math.abs(want[i]))) - 10, -24));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('a file cut in the middle of the template is truncated, naming the key and both sizes, in the reader and the CLI', async () => {
    // The template's bytes start after the fixed header and the model's own metadata.
    const before = buildGguf({ metadata: model.metadata }).byteLength + 8 + 'tokenizer.chat_template'.length + 4 + 8;
    const cut = before + 1_500_000;
    expect(await refusal(() => openGguf(bytesSource(bytes.subarray(0, cut), 'Llama-3-8B-Instruct-F16.gguf')), 'TRUNCATED')).toBe(
      `Llama-3-8B-Instruct-F16.gguf: metadata "tokenizer.chat_template" runs to byte ${before + 3_000_000}, but the file has only ${cut} (truncated download?): download the file again`,
    );
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: LLAMA.hidden, out: 128, aType: 'F32', bType: 'F32' }], 8);
    const dir = temp.make({ 'base.gguf': bytes, 'lora.gguf': lora.bytes });
    truncateSync(join(dir, 'base.gguf'), cut);
    const result = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'out.gguf'), '--backend', 'cpu']);
    expect(result.code, result.stderr).toBe(1);
    expect(errorLines(result.stderr)).toEqual([expect.stringMatching(/: metadata "tokenizer\.chat_template" runs to byte \d+, but the file has only \d+ \(truncated download\?\): download the file again$/)]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(listDir(dir)).toEqual(['base.gguf', 'lora.gguf']);
  });
});

describe(`a string past MAX_GGUF_STRING_BYTES (${MAX_GGUF_STRING_BYTES})`, () => {
  const key = 'tokenizer.huggingface.json';
  /** A file whose one metadata entry is a string declared `length` bytes long, of `size` bytes. */
  const withString = (length: number, size: number) => sparseSource('gemma-3-27b-it-Q4_K_M.gguf', size, [[0, concatBytes([fixedHeader(0, 1), keyOf(key, STRING), u64(length)])]]);
  const start = 24 + 8 + key.length + 4 + 8;

  it('is refused by the limit, naming the key, before its bytes are read', async () => {
    const message = await refusal(() => openGguf(withString(MAX_GGUF_STRING_BYTES + 1, start + MAX_GGUF_STRING_BYTES + 1)), 'LIMIT_EXCEEDED');
    expect(message).toBe(`gemma-3-27b-it-Q4_K_M.gguf: metadata "${key}" is a string of ${MAX_GGUF_STRING_BYTES + 1} bytes, more than ${MAX_GGUF_STRING_BYTES} (the limit MAX_GGUF_STRING_BYTES); not a model this tool merges`);
  });

  it('one of exactly the limit is not refused by it (in a file too short for it, it is truncated)', async () => {
    const message = await refusal(() => openGguf(withString(MAX_GGUF_STRING_BYTES, start + 1000)), 'TRUNCATED');
    expect(message).toBe(`gemma-3-27b-it-Q4_K_M.gguf: metadata "${key}" runs to byte ${start + MAX_GGUF_STRING_BYTES}, but the file has only ${start + 1000} (truncated download?): download the file again`);
  });
});

describe(`metadata arrays past MAX_GGUF_ARRAY_ELEMENTS (${MAX_GGUF_ARRAY_ELEMENTS}) in all`, () => {
  /** A v3 file of string arrays (count, key) whose strings are all empty (8 zero bytes each). */
  function emptyStringArrays(arrays: [string, number][]): Uint8Array {
    const heads = arrays.map(([key, n]) => concatBytes([keyOf(key, ARRAY), u32(STRING), u64(n)]));
    const size = 24 + heads.reduce((t, h, i) => t + h.byteLength + 8 * arrays[i][1], 0);
    const out = new Uint8Array(size);
    out.set(fixedHeader(0, arrays.length), 0);
    let at = 24;
    heads.forEach((h, i) => {
      out.set(h, at);
      at += h.byteLength + 8 * arrays[i][1];
    });
    return out;
  }

  it('an array of 5 000 000 empty strings is refused at once, naming the key and the limit (it took 23–38 s to parse)', async () => {
    const bytes = emptyStringArrays([['tokenizer.ggml.tokens', 5_000_000]]);
    const t0 = performance.now();
    const message = await refusal(() => openGguf(bytesSource(bytes, 'Qwen2.5-7B-Instruct-Q4_K_M.gguf')), 'LIMIT_EXCEEDED');
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(message).toBe(`Qwen2.5-7B-Instruct-Q4_K_M.gguf: metadata "tokenizer.ggml.tokens" is an array of 5000000 elements, more than ${MAX_GGUF_ARRAY_ELEMENTS} in all of a header's metadata arrays (the limit MAX_GGUF_ARRAY_ELEMENTS); not a model this tool merges`);
  });

  it('arrays within the limit each but past it together are refused before any element is decoded, naming the one that passes it', async () => {
    const half = MAX_GGUF_ARRAY_ELEMENTS / 2 + 1;
    const bytes = emptyStringArrays([['tokenizer.ggml.tokens', half], ['tokenizer.ggml.merges', half]]);
    const t0 = performance.now();
    const message = await refusal(() => openGguf(bytesSource(bytes, 'Qwen2.5-7B-Instruct-Q4_K_M.gguf')), 'LIMIT_EXCEEDED');
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(message).toBe(`Qwen2.5-7B-Instruct-Q4_K_M.gguf: metadata "tokenizer.ggml.merges" is an array of ${half} elements (with the header's earlier arrays, ${2 * half}), more than ${MAX_GGUF_ARRAY_ELEMENTS} in all of a header's metadata arrays (the limit MAX_GGUF_ARRAY_ELEMENTS); not a model this tool merges`);
  });

  it('a real tokenizer reads: 262 144 tokens, scores and types and 280 147 merges (about a quarter of the limit)', async () => {
    // Gemma 3's vocabulary size and Llama 3's merge count, in the arrays convert_hf_to_gguf writes.
    const vocab = 262_144;
    const merges = 280_147;
    const token = (i: number) => (i < 256 ? `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>` : `▁tok${i}`);
    const meta: [string, MetaValue][] = [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: Array.from({ length: vocab }, (_, i) => token(i)) }],
      ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: Array.from({ length: vocab }, (_, i) => -i) }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: Array.from({ length: vocab }, (_, i) => (i < 256 ? 6 : 1)) }],
      ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: Array.from({ length: merges }, (_, i) => `Ġ${i % 977} ${i}`) }],
    ];
    const file = await openGguf(bytesSource(buildGguf({ metadata: meta }), 'gemma-3-27b-it-Q4_K_M.gguf'));
    const tokens = file.value('tokenizer.ggml.tokens')!.value as string[];
    expect(tokens).toHaveLength(vocab);
    expect([tokens[0], tokens[255], tokens[vocab - 1]]).toEqual(['<0x00>', '<0xFF>', `▁tok${vocab - 1}`]);
    const read = file.value('tokenizer.ggml.merges')!.value as string[];
    expect([read[0], read[merges - 1]]).toEqual(['Ġ0 0', `Ġ${(merges - 1) % 977} ${merges - 1}`]);
    expect((file.value('tokenizer.ggml.scores')!.value as number[])[vocab - 1]).toBe(-(vocab - 1));
  });

  it('an array longer than @huggingface/gguf\'s cap of 1 000 000 elements reads (it was refused as an invalid header)', async () => {
    const charsmap = Array.from({ length: 1_000_001 }, (_, i) => (i * 37) & 0xff);
    const bytes = buildGguf({ metadata: [['general.architecture', { type: 'string', value: 't5' }], ['tokenizer.ggml.precompiled_charsmap', { type: 'array', itemType: 'u8', value: charsmap }]] });
    const file = await openGguf(bytesSource(bytes, 't5-v1_1-xxl-encoder-Q8_0.gguf'));
    expect(file.value('tokenizer.ggml.precompiled_charsmap')!.value).toEqual(charsmap);
  });
});

describe('a header that ends exactly at the file\'s end', () => {
  it('is read, not called truncated: a file of metadata only whose last bytes are a 4.5 MB template', async () => {
    // Longer than the reader's first read of 4 MiB, so its end is checked against the file's.
    const template = chatTemplate(4_500_000);
    const bytes = buildGguf({ metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['tokenizer.chat_template', { type: 'string', value: template }]] });
    const file = await openGguf(bytesSource(bytes, 'meta.gguf'));
    expect(file.value('tokenizer.chat_template')?.value).toBe(template);
    expect(file.trailingBytes).toBe(0);
  });
});

describe('an 8 MB tokenizer header is read from its source once', () => {
  // A byte-level BPE vocabulary of 262 144 tokens with its merges (the size of Gemma 3's), as
  // convert_hf_to_gguf.py writes it: tokens, token types, merges "left right".
  const vocab = 262_144;
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const word = (i: number) => {
    let w = '';
    for (let n = i; w.length === 0 || n > 0; n = Math.floor(n / 26)) w += letters[n % 26];
    return w;
  };
  const tokens = Array.from({ length: vocab }, (_, i) => (i < 256 ? `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>` : `Ġ${word(i)}`));
  const merges = tokens.slice(256).map((t) => `${t.slice(0, 2)} ${t.slice(2) || 'e'}`);
  const tokenizer: [string, MetaValue][] = [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: tokens.map((_, i) => (i < 256 ? 6 : 1)) }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: merges }],
  ];
  // The small llama's own tokenizer keys give way to these.
  const model = splitF16Llama();
  const bytes = buildGguf({
    metadata: [...model.metadata.filter(([key]) => !tokenizer.some(([k]) => k === key)), ...tokenizer],
    tensors: [...model.tensors].map(([name, t]) => ({ name, type: t.type, ne: [...t.shape].reverse(), data: t.data })),
  });
  // The data section: each tensor padded to the default alignment of 32; the header is what precedes it.
  const dataBytes = [...model.tensors.values()].reduce((n, t) => n + Math.ceil(t.data.byteLength / 32) * 32, 0);
  const headerBytes = bytes.byteLength - dataBytes;
  /** What the reader reads past what it needs, at most: one window of 4 MiB. */
  const WINDOW = 4 << 20;

  /** `source`, each read recorded as [offset, length]. */
  const counting = (source: ByteSource, reads: [number, number][]): ByteSource => ({
    name: source.name,
    size: source.size,
    read: (offset, length, into) => {
      reads.push([offset, length]);
      return source.read(offset, length, into);
    },
    close: () => source.close(),
  });
  /** Bytes that two reads both read. */
  const reread = (reads: [number, number][]) => {
    const sorted = [...reads].sort((a, b) => a[0] - b[0]);
    let twice = 0;
    let end = 0;
    for (const [offset, length] of sorted) {
      twice += Math.max(0, Math.min(end, offset + length) - offset);
      end = Math.max(end, offset + length);
    }
    return twice;
  };
  const checkRead = (reads: [number, number][]) => {
    expect(reread(reads)).toBe(0);
    const total = reads.reduce((n, [, length]) => n + length, 0);
    expect(total).toBeGreaterThanOrEqual(headerBytes);
    expect(total).toBeLessThanOrEqual(headerBytes + WINDOW);
    // The fixed 24 bytes, then the header in windows of 4 MiB.
    expect(reads.length).toBeLessThanOrEqual(1 + Math.ceil(headerBytes / WINDOW));
  };

  it('from a file: no byte twice, at most one window past the header', async () => {
    expect(headerBytes).toBeGreaterThan(8_000_000);
    const dir = temp.make({ 'gemma-3-27b-it-F16.gguf': bytes });
    const reads: [number, number][] = [];
    const file = await openGguf(counting(await openNodeByteSource(join(dir, 'gemma-3-27b-it-F16.gguf')), reads));
    try {
      const read = file.value('tokenizer.ggml.tokens')!.value as string[];
      expect([read[0], read[255], read[256], read[vocab - 1]]).toEqual(['<0x00>', '<0xFF>', 'Ġjd', `Ġ${word(vocab - 1)}`]);
      expect((file.value('tokenizer.ggml.merges')!.value as string[]).at(-1)).toBe(merges.at(-1));
      expect(file.dataStart).toBe(headerBytes);
      checkRead(reads);
    } finally {
      await file.source.close();
    }
  });

  it('with bytes after its last tensor (the wrong-count walk runs): still no byte twice', async () => {
    const reads: [number, number][] = [];
    const file = await openGguf(counting(bytesSource(concatBytes([bytes, new Uint8Array(4096)]), 'gemma-3-27b-it-F16.gguf'), reads));
    expect(file.trailingBytes).toBe(4096);
    checkRead(reads);
  });

  it('from a URL: as few range requests, of no byte twice', async () => {
    const ranges: [number, number][] = [];
    const server = createServer((request, response) => {
      if (request.method === 'HEAD') return void response.writeHead(200, { 'Content-Length': bytes.byteLength, 'Accept-Ranges': 'bytes', ETag: '"v1"' }).end();
      const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '')!;
      const [start, end] = [Number(a), Number(b)];
      ranges.push([start, end - start + 1]);
      response.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${bytes.byteLength}`, 'Content-Length': end - start + 1, ETag: '"v1"' });
      response.end(bytes.subarray(start, end + 1));
    });
    const origin = `http://127.0.0.1:${await listenLocally(server)}`;
    try {
      const file = await openGguf(await urlByteSource(`${origin}/google/gemma-3-27b-it/resolve/main/gemma-3-27b-it-F16.gguf`));
      expect((file.value('tokenizer.ggml.tokens')!.value as string[])[vocab - 1]).toBe(`Ġ${word(vocab - 1)}`);
      checkRead(ranges);
    } finally {
      await closeServer(server);
    }
  });
});
