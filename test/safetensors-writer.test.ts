/** Writer → reader round trips for every dtype, chunked streaming, and refusal of out-of-order writes. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createSafetensorsWriter } from '../src/formats/safetensors-writer.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { bytesSource } from '../src/io/memory-source.js';
import type { ByteSink } from '../src/io/types.js';
import {
  ALL_FIXTURE_DTYPES, FIXTURE_DTYPE_BYTES, concatBytes, decodeValues, encodeValues, roundForDType,
  type FixtureDType,
} from './helpers/fixtures.js';

/** Collects what is written; records whether close() was called. */
function memorySink() {
  const chunks: Uint8Array[] = [];
  const sink = {
    closed: false,
    async write(chunk: Uint8Array) {
      if (sink.closed) throw new Error('write after close');
      chunks.push(chunk.slice());
    },
    async close() {
      sink.closed = true;
    },
    bytes: () => concatBytes(chunks),
  };
  return sink satisfies ByteSink;
}

const tensorArb = fc.record({
  dtype: fc.constantFrom(...ALL_FIXTURE_DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 0, maxLength: 3 }),
  seed: fc.integer(),
});

const tensorsArb = fc.uniqueArray(
  fc.record({ name: fc.string({ minLength: 1, maxLength: 12 }).filter((n) => n !== '__metadata__'), t: tensorArb }),
  { selector: (x) => x.name, maxLength: 8 },
);

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Where a safetensors file's data section begins: its 8-byte length prefix plus that length. */
const dataStart = (bytes: Uint8Array) => 8 + Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));

describe('safetensors writer', () => {
  it('round-trips random tensors of every dtype, zero-size included, whole or in chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        tensorsArb,
        fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
        fc.integer({ min: 1, max: 9 }),
        async (tensors, metadata, chunkSize) => {
          const declared = tensors.map(({ name, t }) => ({ name, dtype: t.dtype, shape: t.shape }));
          const data = tensors.map(({ t }) => randomBytes(t.shape.reduce((a, b) => a * b, 1) * FIXTURE_DTYPE_BYTES[t.dtype], t.seed));
          const sink = memorySink();
          const writer = await createSafetensorsWriter(sink, declared, metadata);
          for (let i = 0; i < tensors.length; i++) {
            if (i % 2 === 0) {
              await writer.writeTensor(declared[i].name, data[i]);
            } else {
              for (let at = 0; at < data[i].byteLength; at += chunkSize) {
                await writer.writeChunk(declared[i].name, data[i].subarray(at, at + chunkSize));
              }
              if (data[i].byteLength === 0) await writer.writeChunk(declared[i].name, new Uint8Array(0));
            }
          }
          await writer.finish();
          expect(sink.closed).toBe(true);
          const bytes = sink.bytes();
          expect(bytes.byteLength).toBe(writer.byteLength);

          // Independent check of the layout: the header as plain JSON, padded to 8 with spaces.
          const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
          expect(headerLength % 8).toBe(0);
          const text = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
          expect(text).toMatch(/^\{.*\} *$/s);
          const header = JSON.parse(text);
          expect(header.__metadata__ ?? {}).toEqual(metadata);
          let offset = 0;
          for (let i = 0; i < tensors.length; i++) {
            const span = [offset, offset + data[i].byteLength];
            expect(header[declared[i].name]).toEqual({ dtype: declared[i].dtype, shape: declared[i].shape, data_offsets: span });
            expect(bytes.subarray(8 + headerLength + span[0], 8 + headerLength + span[1])).toEqual(data[i]);
            offset = span[1];
          }

          // And the reader agrees.
          const file = await openSafetensors(bytesSource(bytes, 'round-trip.safetensors'));
          expect(file.metadata).toEqual(metadata);
          expect(file.tensors.length).toBe(tensors.length);
          let at = 8 + headerLength;
          for (let i = 0; i < tensors.length; i++) {
            const entry = file.get(declared[i].name)!;
            expect(entry).toEqual({ name: declared[i].name, dtype: declared[i].dtype, shape: declared[i].shape, offset: at, byteLength: data[i].byteLength });
            at += data[i].byteLength;
            expect(await file.read(entry)).toEqual(data[i]);
          }
        },
      ),
      { numRuns: 150, seed: 20240611 },
    );
  });

  it('keeps values of every float dtype exact through a write and read', async () => {
    const values = [0, -0, 1, -1.5, 3.140625, 1e-3, 448, -57344, 65504, 2 ** -14, 1e30, -7.25e-6];
    const floats: FixtureDType[] = ['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];
    const sink = memorySink();
    const declared = floats.map((dtype) => ({ name: `t.${dtype}`, dtype, shape: [3, 4] }));
    const writer = await createSafetensorsWriter(sink, declared, { source: 'test' });
    for (const d of declared) await writer.writeTensor(d.name, encodeValues(values.map((v) => roundForDType(v, d.dtype)), d.dtype));
    await writer.finish();
    const file = await openSafetensors(bytesSource(sink.bytes(), 'floats.safetensors'));
    for (const d of declared) {
      const got = Array.from(decodeValues(await file.read(file.get(d.name)!), d.dtype));
      expect(got, d.dtype).toEqual(values.map((v) => roundForDType(v, d.dtype)));
    }
  });

  it('keeps names like "__proto__" as ordinary tensor and metadata keys', async () => {
    const sink = memorySink();
    const names = ['__proto__', 'constructor', 'toString'];
    const writer = await createSafetensorsWriter(sink, names.map((name) => ({ name, dtype: 'U8', shape: [1] })), { ['__proto__']: 'p', hasOwnProperty: 'h' });
    for (const [i, name] of names.entries()) await writer.writeTensor(name, new Uint8Array([i + 1]));
    await writer.finish();
    const file = await openSafetensors(bytesSource(sink.bytes(), 'proto.safetensors'));
    expect(file.tensors.map((t) => t.name)).toEqual(names);
    expect(Object.entries(file.metadata)).toEqual([['__proto__', 'p'], ['hasOwnProperty', 'h']]);
    expect(Array.from(await file.read(file.get('__proto__')!))).toEqual([1]);
    expect(file.get('valueOf')).toBeUndefined();
  });

  it('aligns the data section to 8 bytes whatever the header length', async () => {
    for (let nameLength = 1; nameLength <= 16; nameLength++) {
      const sink = memorySink();
      const writer = await createSafetensorsWriter(sink, [{ name: 'n'.repeat(nameLength), dtype: 'F32', shape: [1] }]);
      expect(dataStart(sink.bytes()) % 8).toBe(0);
      await writer.writeTensor('n'.repeat(nameLength), new Uint8Array(4));
      await writer.finish();
    }
  });

  it('writes the header before any tensor and streams each chunk as it comes', async () => {
    const sink = memorySink();
    const writer = await createSafetensorsWriter(sink, [{ name: 'big', dtype: 'U8', shape: [10, 10] }]);
    const headerBytes = sink.bytes().byteLength;
    expect(headerBytes).toBe(dataStart(sink.bytes()));
    await writer.writeChunk('big', new Uint8Array(30).fill(1));
    expect(sink.bytes().byteLength).toBe(headerBytes + 30);
    await writer.writeChunk('big', new Uint8Array(70).fill(2));
    await writer.finish();
    expect(sink.bytes().byteLength).toBe(headerBytes + 100);
  });

  it('refuses tensors out of order, wrong lengths, overlong chunks and unfinished files', async () => {
    const declared = [
      { name: 'a', dtype: 'F32' as const, shape: [2] },
      { name: 'empty', dtype: 'F16' as const, shape: [0] },
      { name: 'b', dtype: 'BF16' as const, shape: [3] },
    ];
    const writer = await createSafetensorsWriter(memorySink(), declared);
    await expect(writer.writeTensor('b', new Uint8Array(6))).rejects.toThrow(/expected tensor "a"/);
    await expect(writer.writeTensor('a', new Uint8Array(7))).rejects.toThrow(/needs 8 bytes, got 7/);
    await writer.writeChunk('a', new Uint8Array(4));
    await expect(writer.writeChunk('a', new Uint8Array(5))).rejects.toThrow(/passes/);
    await expect(writer.writeTensor('a', new Uint8Array(8))).rejects.toThrow(/partly written/);
    await expect(writer.finish()).rejects.toThrow(/"a" has 4 of 8 bytes/);
    await writer.writeChunk('a', new Uint8Array(4));
    // The zero-size tensor may be skipped.
    await writer.writeChunk('b', new Uint8Array(2));
    await expect(writer.finish()).rejects.toThrow(/"b" has 2 of 6/);
    await writer.writeChunk('b', new Uint8Array(4));
    await expect(writer.writeTensor('c', new Uint8Array(0))).rejects.toThrow(/after every declared tensor/);
    await writer.finish();
    await expect(writer.finish()).rejects.toThrow(/already finished/);
  });

  it('refuses bad declarations', async () => {
    await expect(createSafetensorsWriter(memorySink(), [{ name: '__metadata__', dtype: 'F32', shape: [1] }])).rejects.toThrow(/reserved/);
    await expect(createSafetensorsWriter(memorySink(), [
      { name: 'x', dtype: 'F32', shape: [1] },
      { name: 'x', dtype: 'F32', shape: [1] },
    ])).rejects.toThrow(/twice/);
    await expect(createSafetensorsWriter(memorySink(), [{ name: 'x', dtype: 'F32', shape: [-1] }])).rejects.toThrow(/dimension/);
  });
});
