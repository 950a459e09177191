/**
 * The GGUF reader and writer on files built by hand in the test (helpers/gguf-builder.ts): every
 * metadata value type, versions 2 and 3, every tensor type, and one test per rule a broken file
 * can break.
 */
import { describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { createGgufWriter } from '../src/formats/gguf/gguf-writer.js';
import { bytesSource } from '../src/io/memory-source.js';
import { concatBytes, randomValues, seededRandom } from './helpers/fixtures.js';
import { buildGguf, encodeKv, GGML_BLOCK, ggufString, readGguf, tensorData, type FixtureTensor, type MetaValue } from './helpers/gguf-builder.js';

const EVERY_VALUE: [string, MetaValue][] = [
  ['general.architecture', { type: 'string', value: 'llama' }],
  ['test.u8', { type: 'u8', value: 250 }],
  ['test.i8', { type: 'i8', value: -120 }],
  ['test.u16', { type: 'u16', value: 65000 }],
  ['test.i16', { type: 'i16', value: -32000 }],
  ['test.u32', { type: 'u32', value: 4_000_000_000 }],
  ['test.i32', { type: 'i32', value: -2_000_000_000 }],
  ['test.f32', { type: 'f32', value: 1.5 }],
  ['test.bool', { type: 'bool', value: true }],
  ['test.string', { type: 'string', value: 'ünïcødé ✓ 日本' }],
  ['test.u64', { type: 'u64', value: 2n ** 60n + 7n }],
  ['test.i64', { type: 'i64', value: -(2n ** 62n) }],
  ['test.f64', { type: 'f64', value: Math.PI }],
  ['test.empty', { type: 'array', itemType: 'u32', value: [] }],
  ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: ['<s>', '</s>', 'é'] }],
  ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: [0, -1.25, 3] }],
  ['test.i64s', { type: 'array', itemType: 'i64', value: [-1n, 5n] }],
  ['test.bools', { type: 'array', itemType: 'bool', value: [true, false] }],
  ['test.i8s', { type: 'array', itemType: 'i8', value: [-1, 2] }],
  ['test.f64s', { type: 'array', itemType: 'f64', value: [0.1, -2] }],
];

const TENSOR_TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'];

function tensorsOfEveryType(): FixtureTensor[] {
  const rand = seededRandom(3);
  const out: FixtureTensor[] = TENSOR_TYPES.map((type, i) => {
    const ne0 = GGML_BLOCK[type][0] === 1 ? 3 + i : GGML_BLOCK[type][0] * 2;
    const ne = [ne0, 3];
    return { name: `blk.${i}.t`, type, ne, data: tensorData(type, randomValues(ne0 * 3, rand)) };
  });
  // Types loramerge does not decode still have to be read (and are byte-copied when merging).
  out.push({ name: 'raw.i32', type: 'I32', ne: [5], data: new Uint8Array(20).fill(7) });
  out.push({ name: 'raw.iq2_xs', type: 'IQ2_XS', ne: [256, 2], data: new Uint8Array(148).fill(9) });
  out.push({ name: 'raw.q3_k', type: 'Q3_K', ne: [256], data: new Uint8Array(110).fill(5) });
  return out;
}

async function open(bytes: Uint8Array, name = 'model.gguf') {
  return openGguf(bytesSource(bytes, name));
}

async function failure(bytes: Uint8Array): Promise<{ code: string; message: string }> {
  const e = await open(bytes).catch((x: unknown) => x);
  if (!isMergeError(e)) throw new Error(`expected a MergeError, got ${String(e)}`);
  return { code: e.code, message: e.message };
}

/** `bytes` with the header's tensor count (u64 at byte 8) replaced. */
function withTensorCount(bytes: Uint8Array, count: bigint): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(8, count, true);
  return out;
}

describe('GGUF reader', () => {
  for (const version of [2, 3]) {
    it(`reads version ${version}: every metadata value type and every tensor type`, async () => {
      const tensors = tensorsOfEveryType();
      const bytes = buildGguf({ version, metadata: EVERY_VALUE, tensors });
      const file = await open(bytes);
      expect(file.version).toBe(version);
      expect(file.alignment).toBe(32);
      expect(file.metadata.map((kv) => kv.key)).toEqual(EVERY_VALUE.map(([k]) => k));
      for (const [key, v] of EVERY_VALUE) {
        expect(file.value(key)!.value).toEqual(v.value);
      }
      expect(file.value('test.f32')!.type).toBe(6);
      expect(file.value('tokenizer.ggml.tokens')!.subType).toBe(8);
      expect(file.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      for (const t of tensors) {
        const got = file.tensor(t.name)!;
        expect(got.type.name).toBe(t.type);
        expect(got.ne).toEqual(t.ne);
        expect(got.shape).toEqual([...t.ne].reverse());
        expect(got.byteLength).toBe(t.data.byteLength);
        expect(got.offset % 32).toBe(0);
        expect([...(await file.readPart(got, 0, got.byteLength))]).toEqual([...t.data]);
      }
      const q4k = file.tensor('blk.8.t')!;
      expect([...(await file.readPart(q4k, 144, 144))]).toEqual([...tensors[8].data.subarray(144, 288)]);
    });
  }

  it('honours general.alignment and a file without the last tensor\'s padding', async () => {
    const tensors: FixtureTensor[] = [
      { name: 'a', type: 'F32', ne: [3], data: new Uint8Array(12).fill(1) },
      { name: 'b', type: 'F16', ne: [5], data: new Uint8Array(10).fill(2) },
    ];
    const bytes = buildGguf({ metadata: [['general.alignment', { type: 'u32', value: 64 }]], tensors, alignment: 64, noTailPadding: true });
    const file = await open(bytes);
    expect(file.alignment).toBe(64);
    expect(file.tensors[1].offset - file.tensors[0].offset).toBe(64);
    expect(file.dataStart % 64).toBe(0);
  });

  it('reads a file with no tensors', async () => {
    const file = await open(buildGguf({ metadata: [['general.architecture', { type: 'string', value: 'llama' }]] }));
    expect(file.tensors).toEqual([]);
  });

  const withU32 = (bytes: Uint8Array, at: number, v: number) => {
    const out = bytes.slice();
    new DataView(out.buffer).setUint32(at, v, true);
    return out;
  };
  const t = (over: Partial<FixtureTensor> = {}): FixtureTensor => ({ name: 'blk.0.attn_q.weight', type: 'F32', ne: [4, 2], data: new Uint8Array(32), ...over });

  it.each([
    ['an empty file', new Uint8Array(0), 'HEADER_TOO_SMALL', /only 0 bytes/],
    ['a truncated fixed header', buildGguf({}).subarray(0, 20), 'HEADER_TOO_SMALL', /only 20 bytes, too short for a GGUF header/],
    ['no magic', concatBytes([new TextEncoder().encode('GGML'), new Uint8Array(40)]), 'INVALID_HEADER', /no "GGUF" magic/],
    ['version 1', buildGguf({ version: 1 }), 'UNSUPPORTED_FORMAT', /version 1/],
    ['an unknown version', buildGguf({ version: 9 }), 'INVALID_HEADER', /version 9/],
    ['a big-endian file', buildGguf({ version: 0x03000000 }), 'UNSUPPORTED_FORMAT', /big-endian/],
    ['an unknown GGML type', buildGguf({ tensors: [t({ type: 99 })] }), 'INVALID_DTYPE', /"blk\.0\.attn_q\.weight" has GGML type id 99/],
    // Q4_0_4_4 files (ARM-interleaved Q4_0, 2024) are still published; current ggml no longer defines the type.
    ['a Q4_0_4_4 tensor', buildGguf({ tensors: [t({ type: 31, ne: [32, 1], data: new Uint8Array(18) })] }), 'INVALID_DTYPE', /"blk\.0\.attn_q\.weight" is Q4_0_4_4 \(GGML type id 31\), a type llama\.cpp removed from GGUF files .*: current llama\.cpp does not load this file either; use the model's Q4_0 file instead$/],
    ['an IQ4_NL_8_8 tensor', buildGguf({ tensors: [t({ type: 38, ne: [32, 1], data: new Uint8Array(18) })] }), 'INVALID_DTYPE', /is IQ4_NL_8_8 \(GGML type id 38\), .*use the model's IQ4_NL file instead$/],
    ['a row that is not whole blocks', buildGguf({ tensors: [t({ type: 'Q4_K', ne: [100, 2], data: new Uint8Array(144) })] }), 'INVALID_SHAPE', /not a whole number of 256-value blocks/],
    ['six dimensions', buildGguf({ tensors: [t({ ne: [1, 1, 1, 1, 1, 8] })] }), 'INVALID_SHAPE', /6 dimensions; GGML allows at most 4$/],
    // Five only in F32, F16 or BF16, as ComfyUI-GGUF's fix_5d_tensors.py stores a Conv3d (wan-control-reshape.test.ts reads one).
    ['five dimensions of a quantized type', buildGguf({ tensors: [t({ type: 'Q8_0', ne: [32, 1, 1, 1, 1], data: new Uint8Array(34) })] }), 'INVALID_SHAPE', /5 dimensions; GGML allows at most 4 \(5 only for an F32, F16 or BF16 tensor/],
    ['a gap between tensors', buildGguf({ tensors: [t(), t({ name: 'b', offset: 64 })] }), 'INVALID_OFFSET', /"b" starts at data offset 64, expected 32/],
    ['overlapping tensors', buildGguf({ tensors: [t(), t({ name: 'b', offset: 0 })] }), 'OVERLAP', /"b" starts at data offset 0, expected 32/],
    ['a truncated tensor', buildGguf({ tensors: [t()] }).subarray(0, -8), 'TRUNCATED', /"blk\.0\.attn_q\.weight" ends at byte/],
    ['a duplicated tensor', buildGguf({ tensors: [t(), t()] }), 'INVALID_HEADER', /declared twice/],
    ['a tensor name over 63 bytes', buildGguf({ tensors: [t({ name: 'x'.repeat(64) })] }), 'INVALID_HEADER', /has a name of 64 bytes, longer than GGML's 63/],
    ['an alignment that is not a power of two', buildGguf({ metadata: [['general.alignment', { type: 'u32', value: 48 }]] }), 'INVALID_HEADER', /power of two/],
    ['an alignment stored as u64', buildGguf({ metadata: [['general.alignment', { type: 'u64', value: 32n }]] }), 'INVALID_HEADER', /u32 power of two/],
    ['a duplicated key', buildGguf({ metadata: [['a', { type: 'u8', value: 1 }], ['a', { type: 'u8', value: 2 }]] }), 'INVALID_HEADER', /duplicated/],
    // The entry and the byte are named: 24 bytes of header, then the key (8 + 1 bytes) and its type (4): the string's length at 37 differs.
    ['invalid UTF-8 in a string', buildGguf({ rawKv: concatBytes([ggufString('k'), new Uint8Array([8, 0, 0, 0]), ggufString(new Uint8Array([0xff, 0xfe]))]), extraKvCount: 1 }), 'INVALID_HEADER', /: metadata "k" could not be read back exactly at byte 37 \(invalid UTF-8/],
    // A bool stored as 2 (only 0 and 1 are written back): the value's byte, after a first entry of 8 + 1 + 4 + 1 bytes and the key (8 + 4) and type (4).
    ['a bool that is neither 0 nor 1', buildGguf({ metadata: [['a', { type: 'u8', value: 1 }]], rawKv: concatBytes([ggufString('flag'), new Uint8Array([7, 0, 0, 0, 2])]), extraKvCount: 1 }), 'INVALID_HEADER', /: metadata "flag" could not be read back exactly at byte 54 \(.*a bool other than 0 or 1/],
    // Value type 13 is none of gguf.h's; the key is named (the parser used before said only "Unsupported metadata type").
    ['an unknown value type', buildGguf({ rawKv: concatBytes([ggufString('general.name'), new Uint8Array([13, 0, 0, 0, 1])]), extraKvCount: 1 }), 'INVALID_HEADER', /: metadata "general\.name" has value type 13, which GGUF does not define$/],
    ['an array of an unknown value type', buildGguf({ rawKv: concatBytes([ggufString('tokenizer.ggml.scores'), new Uint8Array([9, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]), extraKvCount: 1 }), 'INVALID_HEADER', /: metadata "tokenizer\.ggml\.scores" is an array of value type 13, which GGUF does not define$/],
    // n_dims 2^32 - 1 (at byte 24 + 8 + 19, after the name): refused before 32 GB of dimensions are read.
    ['2^32 - 1 dimensions', withU32(buildGguf({ tensors: [t()] }), 24 + 8 + 19, 0xffffffff), 'INVALID_SHAPE', /"blk\.0\.attn_q\.weight" has 4294967295 dimensions; GGML allows at most 4$/],
    ['a dimension past 2^32', buildGguf({ tensors: [t({ ne: [2 ** 32 + 1, 1] })] }), 'INVALID_SHAPE', /"blk\.0\.attn_q\.weight" has dimension 0 of 4294967297, more than 2\^32; the header is damaged$/],
    ['an array of arrays', buildGguf({ metadata: [['nested', { type: 'array', itemType: 'array', value: [] }]] }), 'INVALID_HEADER', /array of arrays/],
    ['a string claiming 2^40 bytes', buildGguf({ rawKv: concatBytes([ggufString('k'), new Uint8Array([8, 0, 0, 0]), new Uint8Array([0, 0, 0, 0, 0, 1, 0, 0])]), extraKvCount: 1 }), 'LIMIT_EXCEEDED', /: metadata "k" is a string of 1099511627776 bytes, more than 41943040 \(the limit MAX_GGUF_STRING_BYTES\); the file has only \d+ bytes, so its header is damaged: download or convert it again$/],
    ['an array claiming 2^40 items', buildGguf({ rawKv: concatBytes([ggufString('k'), new Uint8Array([9, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])]), extraKvCount: 1 }), 'LIMIT_EXCEEDED', /: metadata "k" is an array of 1099511627776 elements, more than 4000000 in all of a header's metadata arrays \(the limit MAX_GGUF_ARRAY_ELEMENTS\); the file has only \d+ bytes, so its header is damaged/],
    ['2^53 metadata entries', buildGguf({ extraKvCount: 2 ** 53 }), 'LIMIT_EXCEEDED', /declares 9007199254740992 metadata entries, more than 65536 \(the limit MAX_METADATA_ENTRIES\)/],
    ['more tensors than MAX_TENSORS', withTensorCount(buildGguf({ tensors: [t()] }), 160_001n), 'LIMIT_EXCEEDED', /declares 160001 tensors, more than 160000 \(the limit MAX_TENSORS\)/],
    // A flipped byte in a fuzz case made a 572-byte file claim 4 194 306 tensors (refused by the limit now).
    ['more tensors than the file can hold', withTensorCount(buildGguf({ tensors: [t()] }), 90_000n), 'TRUNCATED', /declares 90000 tensors and \d+ metadata entries, which take at least \d+ bytes, but the file has \d+/],
    ['a string running past the end', buildGguf({ metadata: [['general.name', { type: 'string', value: 'x'.repeat(100) }]] }).subarray(0, 60), 'TRUNCATED', /: metadata "general.name" runs to byte 156, but the file has only 60 \(truncated download\?\): download the file again$/],
  ])('refuses %s', async (_what, bytes, code, message) => {
    const e = await failure(bytes as Uint8Array);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message as RegExp);
    expect(e.message).toContain('model.gguf');
  });

  it('reads a file with bytes after its last tensor, as llama.cpp does (it reads only the tensors\' ranges), counting them', async () => {
    const tensors: FixtureTensor[] = [
      { name: 'a', type: 'F32', ne: [3], data: Uint8Array.from({ length: 12 }, (_, i) => i + 1) },
      { name: 'b', type: 'F16', ne: [5], data: Uint8Array.from({ length: 10 }, (_, i) => 100 + i) },
    ];
    const sound = buildGguf({ metadata: [['general.name', { type: 'string', value: 'x' }]], tensors });
    for (const extra of [1, 31, 32, 4096]) {
      const file = await open(concatBytes([sound, new Uint8Array(extra).fill(0xab)]));
      expect(file.trailingBytes).toBe(extra);
      expect(file.tensors.map((x) => [x.name, x.offset, x.byteLength])).toEqual((await open(sound)).tensors.map((x) => [x.name, x.offset, x.byteLength]));
      for (const x of tensors) expect([...(await file.readPart(file.tensor(x.name)!, 0, x.data.byteLength))]).toEqual([...x.data]);
    }
    expect((await open(sound)).trailingBytes).toBe(0);
    // Without the last tensor's padding: nothing after it. Without tensors: all after the header's
    // padding to the alignment (which a writer may add).
    expect((await open(buildGguf({ tensors, noTailPadding: true }))).trailingBytes).toBe(0);
    const empty = buildGguf({ metadata: [['general.name', { type: 'string', value: 'x' }]] });
    const headerPadding = (32 - (empty.byteLength % 32)) % 32;
    expect((await open(concatBytes([empty, new Uint8Array(headerPadding)]))).trailingBytes).toBe(0);
    expect((await open(concatBytes([empty, new Uint8Array(headerPadding + 7)]))).trailingBytes).toBe(7);
  });

  describe('a header whose metadata or tensor count does not match what follows, said so with the byte', () => {
    const meta: [string, MetaValue][] = [
      ['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }],
      ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }], ['general.name', { type: 'string', value: 'tiny' }],
    ];
    const tensors: FixtureTensor[] = [
      { name: 'blk.0.attn_q.weight', type: 'F32', ne: [4, 2], data: new Uint8Array(32).fill(3) },
      { name: 'blk.0.attn_k.weight', type: 'F32', ne: [4, 2], data: new Uint8Array(32).fill(4) },
    ];
    const sound = buildGguf({ metadata: meta, tensors });
    /** Where metadata entry `i` starts: 24 header bytes, then the entries as the builder encodes them. */
    const entryStart = (i: number) => 24 + meta.slice(0, i).reduce((n, [k, v]) => n + encodeKv(k, v).byteLength, 0);
    /** A tensor info: name (8 + bytes), n_dims (4), ne (8 each), type (4), offset (8). */
    const infoBytes = (x: FixtureTensor) => 8 + x.name.length + 4 + 8 * x.ne.length + 4 + 8;
    const withKvCount = (count: bigint) => {
      const out = sound.slice();
      new DataView(out.buffer).setBigUint64(16, count, true);
      return out;
    };

    it.each([
      ['one metadata entry fewer', 3n, 'declares 3 metadata entries, but 4 are followed by the 2 tensor infos it declares (from byte ENTRY4)'],
      ['two fewer', 2n, 'declares 2 metadata entries, but 4 are followed by the 2 tensor infos it declares (from byte ENTRY4)'],
      ['one more', 5n, 'declares 5 metadata entries, but 4 are followed by the 2 tensor infos it declares (from byte ENTRY4)'],
      ['none', 0n, 'declares 0 metadata entries, but 4 are followed by the 2 tensor infos it declares (from byte ENTRY4)'],
    ])('%s', async (_what, count, message) => {
      const e = await failure(withKvCount(count));
      expect(e.code).toBe('INVALID_HEADER');
      expect(e.message).toBe(`model.gguf: the header ${message.replace('ENTRY4', String(entryStart(4)))}: the header's metadata count is wrong; the file is damaged: download or convert it again`);
    });

    it('a tensor count that is too low, which would otherwise leave the real data as bytes after the last tensor', async () => {
      const second = entryStart(4) + infoBytes(tensors[0]);
      for (const count of [1n, 0n]) {
        const e = await failure(withTensorCount(sound, count));
        expect(e.code).toBe('INVALID_HEADER');
        const at = count === 1n ? second : entryStart(4);
        const name = tensors[Number(count)].name;
        expect(e.message).toBe(`model.gguf: the header declares ${count} tensor${count === 1n ? '' : 's'}, but 2 tensor infos follow its metadata (tensor "${name}" at byte ${at}): the header's tensor count is wrong; the file is damaged: download or convert it again`);
      }
    });

    it('a tensor count that is too high, where the file ends with the data of those that follow', async () => {
      for (const bytes of [sound, buildGguf({ metadata: meta, tensors, noTailPadding: true })]) {
        const e = await failure(withTensorCount(bytes, 3n));
        expect(e.code).toBe('INVALID_HEADER');
        expect(e.message).toBe('model.gguf: the header declares 3 tensors, but 2 tensor infos follow its metadata and the file ends with their data: the header\'s tensor count is wrong; the file is damaged: download or convert it again');
      }
    });

    it('a tensor count that is too high elsewhere: bytes after the data, a file that ends after its header, a file of metadata only', async () => {
      // llama.cpp loads a file with bytes after its last tensor, so such bytes do not tell a wrong
      // count from a damaged info: the line names both, and the count, and the byte. Before, these
      // were a tensor "" at data offset 216172782113783808, or a header that "runs to byte 289".
      const infosEnd = entryStart(4) + infoBytes(tensors[0]) + infoBytes(tensors[1]);
      const dataStart = Math.ceil(infosEnd / 32) * 32;
      const trailing = concatBytes([sound, new Uint8Array(100).fill(7)]);
      const headerOnly = sound.slice(0, dataStart);
      const metadataOnly = buildGguf({ metadata: meta, tensors: [] });
      const tail = ': the header\'s tensor count is wrong, or the file is cut short or damaged: download or convert it again';
      for (const [bytes, count, message] of [
        [trailing, 3n, `declares 3 tensors, but only 2 tensor infos follow its metadata (byte ${infosEnd} starts no other)`],
        [headerOnly, 3n, `declares 3 tensors, but only 2 tensor infos follow its metadata (byte ${infosEnd} starts no other)`],
        [metadataOnly, 1n, `declares 1 tensor, but no tensor info follows its metadata (the file ends at byte ${metadataOnly.byteLength})`],
      ] as const) {
        const e = await failure(withTensorCount(bytes, count));
        expect(e.code).toBe('INVALID_HEADER');
        expect(e.message).toBe(`model.gguf: the header ${message}${tail}`);
      }
      // The same files with their own counts: read (bytes after the data), or refused as truncated.
      expect((await open(trailing)).trailingBytes).toBe(100);
      expect(await failure(headerOnly)).toEqual({ code: 'TRUNCATED', message: `model.gguf: tensor "${tensors[0].name}" ends at byte ${dataStart + 32} but the file has only ${dataStart} (truncated download?): download the file again` });
      // A count past what any file holds is refused before anything is walked, naming it.
      expect(await failure(withTensorCount(metadataOnly, 2n ** 63n))).toEqual({
        code: 'LIMIT_EXCEEDED', message: 'model.gguf: the header declares 9223372036854775808 tensors, more than 160000 (the limit MAX_TENSORS); not a model this tool merges',
      });
    });

    it('counts that fit are not blamed for other damage', async () => {
      const e = await failure(buildGguf({ metadata: meta, tensors: [tensors[0], { ...tensors[1], offset: 64 }] }));
      expect(e.code).toBe('INVALID_OFFSET');
    });
  });

  it('writes what it reads: metadata, tensor infos, alignment and padding byte for byte', async () => {
    const tensors = tensorsOfEveryType();
    const original = buildGguf({ version: 3, metadata: EVERY_VALUE, tensors });
    const file = await open(original);
    const chunks: Uint8Array[] = [];
    const writer = await createGgufWriter(
      { write: async (c) => void chunks.push(c.slice()), close: async () => {} },
      file.metadata, file.tensors.map((x) => ({ name: x.name, type: x.type, ne: x.ne })), file.alignment,
    );
    for (const x of file.tensors) {
      // In uneven pieces, as the pipeline writes slabs.
      const data = await file.readPart(x, 0, x.byteLength);
      const cut = Math.floor(data.byteLength / 3);
      await writer.writeChunk(x.name, data.subarray(0, cut));
      await writer.writeChunk(x.name, data.subarray(cut));
    }
    await writer.finish();
    const written = concatBytes(chunks);
    expect(written.byteLength).toBe(writer.byteLength);
    expect([...written]).toEqual([...original]);
    const back = readGguf(written);
    expect(back.keys).toEqual(EVERY_VALUE.map(([k]) => k));
  });

  it('writes version 3 for a version 2 input, otherwise unchanged', async () => {
    const original = buildGguf({ version: 2, metadata: EVERY_VALUE.slice(0, 3), tensors: tensorsOfEveryType().slice(0, 2) });
    const file = await open(original);
    const chunks: Uint8Array[] = [];
    const writer = await createGgufWriter({ write: async (c) => void chunks.push(c.slice()), close: async () => {} },
      file.metadata, file.tensors.map((x) => ({ name: x.name, type: x.type, ne: x.ne })), 32);
    for (const x of file.tensors) await writer.writeChunk(x.name, await file.readPart(x, 0, x.byteLength));
    await writer.finish();
    const written = concatBytes(chunks);
    expect(new DataView(written.buffer).getUint32(4, true)).toBe(3);
    expect([...written.subarray(8)]).toEqual([...original.subarray(8)]);
  });

  it('encodes metadata the same way the test builder does', () => {
    expect(encodeKv('k', { type: 'u8', value: 1 }).byteLength).toBe(8 + 1 + 4 + 1);
  });
});
