/** Each header rule of the safetensors format, byte by byte: the error code and a message naming the file. */
import { describe, expect, it } from 'vitest';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { bytesSource } from '../src/io/memory-source.js';
import { MergeError, type MergeErrorCode } from '../src/errors.js';
import { buildRawSafetensors, buildSafetensors, decodeValues } from './helpers/fixtures.js';

const FILE = 'weights/bad-file.safetensors';

function open(bytes: Uint8Array) {
  return openSafetensors(bytesSource(bytes, FILE));
}

async function expectRefused(bytes: Uint8Array, code: MergeErrorCode, ...mentions: string[]): Promise<MergeError> {
  let caught: unknown;
  try {
    await open(bytes);
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(MergeError);
  const error = caught as MergeError;
  expect(error.code, error.message).toBe(code);
  expect(error.message).toContain(FILE);
  for (const m of mentions) expect(error.message).toContain(m);
  expect(error.message).not.toContain('\n');
  return error;
}

const f32 = (name: string, begin: number, end: number, shape = [(end - begin) / 4]) => ({
  [name]: { dtype: 'F32', shape, data_offsets: [begin, end] },
});

describe('safetensors header rules', () => {
  it('refuses an empty file', async () => {
    const e = await expectRefused(new Uint8Array(0), 'HEADER_TOO_SMALL');
    expect(e.message).toContain('empty');
  });

  it('refuses a file shorter than the length prefix', async () => {
    await expectRefused(new Uint8Array([2, 0, 0, 0, 0]), 'HEADER_TOO_SMALL');
    await expectRefused(new Uint8Array(7), 'HEADER_TOO_SMALL');
  });

  it('bytes that are no header length and no JSON header (random, encrypted, an unknown format) are said to be no safetensors file, not a 19-digit header length', async () => {
    // A fixed stand-in for random bytes: a length of about 1.7e19, then no "{" at byte 8.
    const bytes = Uint8Array.from({ length: 4096 }, (_, i) => (i * 151 + 0xe7) & 0xff);
    expect(bytes[8]).not.toBe(0x7b);
    const e = await expectRefused(bytes, 'HEADER_TOO_LARGE');
    expect(e.message).toBe(`${FILE}: not a safetensors file (it does not start with a header length and a JSON header): another kind of file, or a damaged one; check that this is the file you meant, or download it again`);
  });

  it('refuses an absurd header length before reading it', async () => {
    const file = buildRawSafetensors({}, new Uint8Array(0), { headerLength: 2n ** 63n + 5n });
    await expectRefused(file, 'HEADER_TOO_LARGE', '100000000');
    await expectRefused(buildRawSafetensors({}, new Uint8Array(0), { headerLength: 100_000_001n }), 'HEADER_TOO_LARGE');
  });

  it('refuses a header length that runs past the end of the file', async () => {
    const good = buildSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: [1, 2] }]);
    const lying = good.slice();
    new DataView(lying.buffer).setBigUint64(0, BigInt(good.byteLength), true); // 8 more than exist
    await expectRefused(lying, 'TRUNCATED', 'header');
  });

  it('refuses a header that is not UTF-8', async () => {
    const header = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20]); // { \xff\xfe }
    const file = new Uint8Array(8 + header.byteLength);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    file.set(header, 8);
    await expectRefused(file, 'INVALID_HEADER', 'UTF-8');
  });

  it('refuses a header that is not JSON, or not a JSON object', async () => {
    await expectRefused(buildRawSafetensors('{"w": {"dtype": "F32",'), 'INVALID_HEADER', 'JSON');
    await expectRefused(buildRawSafetensors(''), 'INVALID_HEADER', 'JSON');
    await expectRefused(buildRawSafetensors('[]'), 'INVALID_HEADER', 'object');
    await expectRefused(buildRawSafetensors('null'), 'INVALID_HEADER', 'object');
    await expectRefused(buildRawSafetensors('"text"'), 'INVALID_HEADER', 'object');
  });

  it('refuses entries with missing or mistyped fields, naming the tensor', async () => {
    const data = new Uint8Array(8);
    const cases: object[] = [
      { 'layer.w': { shape: [2], data_offsets: [0, 8] } },
      { 'layer.w': { dtype: 4, shape: [2], data_offsets: [0, 8] } },
      { 'layer.w': { dtype: 'F32', data_offsets: [0, 8] } },
      { 'layer.w': { dtype: 'F32', shape: 2, data_offsets: [0, 8] } },
      { 'layer.w': { dtype: 'F32', shape: [2] } },
      { 'layer.w': { dtype: 'F32', shape: [2], data_offsets: [0] } },
      { 'layer.w': { dtype: 'F32', shape: [2], data_offsets: { begin: 0, end: 8 } } },
      { 'layer.w': 'F32' },
      { 'layer.w': null },
    ];
    for (const header of cases) await expectRefused(buildRawSafetensors(header, data), 'INVALID_HEADER', 'layer.w');
  });

  it('refuses __metadata__ that is not string → string', async () => {
    await expectRefused(buildRawSafetensors({ __metadata__: { format: 1 } }), 'INVALID_HEADER', '__metadata__', 'format');
    await expectRefused(buildRawSafetensors({ __metadata__: ['pt'] }), 'INVALID_HEADER', '__metadata__');
    await expectRefused(buildRawSafetensors({ __metadata__: 'pt' }), 'INVALID_HEADER', '__metadata__');
  });

  it('refuses an unknown dtype', async () => {
    const header = { 'up.weight': { dtype: 'F12', shape: [2], data_offsets: [0, 4] } };
    await expectRefused(buildRawSafetensors(header, new Uint8Array(4)), 'INVALID_DTYPE', 'up.weight', 'F12');
    const lower = { 'up.weight': { dtype: 'f32', shape: [1], data_offsets: [0, 4] } };
    await expectRefused(buildRawSafetensors(lower, new Uint8Array(4)), 'INVALID_DTYPE', 'up.weight', 'no safetensors dtype', 'download it again');
  });

  it('names a safetensors dtype it does not read as such, with what to use instead', async () => {
    const header = { 'w': { dtype: 'F6_E2M3', shape: [4], data_offsets: [0, 3] } };
    const error = await expectRefused(buildRawSafetensors(header, new Uint8Array(3)), 'INVALID_DTYPE', '"w"');
    expect(error.message).toMatch(/: dtype "F6_E2M3" \(packed 6-bit floats \(FP6 E2M3\)\) is a safetensors dtype loramerge does not read; use a copy of the file saved in F64, F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0, F4 or integer tensors$/);
    await expectRefused(buildRawSafetensors({ c: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), 'INVALID_DTYPE', '"C64" (complex numbers)');
  });

  it('reads F8_E8M0 (one byte an element) and F4 (two elements a byte, the shape counting elements)', async () => {
    // DeepSeek-V4-Flash's layout: FP8 wq_a with 128×128 E8M0 block scales; an FP4 expert (out, in/2) with per-32 E8M0 scales.
    const header = {
      'layers.0.attn.wq_a.scale': { dtype: 'F8_E8M0', shape: [8, 56], data_offsets: [0, 448] },
      'w4': { dtype: 'F4', shape: [2, 8], data_offsets: [448, 456] },
      'w4odd': { dtype: 'F4', shape: [3, 2], data_offsets: [456, 459] },
    };
    const data = Uint8Array.from({ length: 459 }, (_, i) => (i * 7) & 255);
    const parsed = await open(buildRawSafetensors(header, data));
    expect(parsed.get('layers.0.attn.wq_a.scale')).toMatchObject({ dtype: 'F8_E8M0', shape: [8, 56] });
    expect(parsed.get('w4')).toMatchObject({ dtype: 'F4', shape: [2, 8] });
    expect([...(await parsed.read(parsed.get('w4')!))]).toEqual([...data.subarray(448, 456)]);
    expect([...(await parsed.read(parsed.get('layers.0.attn.wq_a.scale')!))]).toEqual([...data.subarray(0, 448)]);
  });

  it('refuses F4 and F8_E8M0 spans that do not fit their shapes, and an odd count of F4 elements', async () => {
    // F4 [2, 8] is 8 bytes, not 16 (a shape counting bytes would give that).
    await expectRefused(buildRawSafetensors({ w: { dtype: 'F4', shape: [2, 8], data_offsets: [0, 16] } }, new Uint8Array(16)), 'SIZE_MISMATCH', '"w"', 'F4 [2,8] (8 bytes)', 'span 16 bytes');
    await expectRefused(buildRawSafetensors({ w: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, new Uint8Array(2)), 'SIZE_MISMATCH', '"w"', 'odd number of 4-bit elements');
    await expectRefused(buildRawSafetensors({ s: { dtype: 'F8_E8M0', shape: [2, 3], data_offsets: [0, 5] } }, new Uint8Array(5)), 'SIZE_MISMATCH', '"s"', '(6 bytes)', 'span 5 bytes');
  });

  it('refuses negative, fractional or non-number dimensions', async () => {
    for (const shape of [[-1], [2, 1.5], ['2'], [null], [2 ** 53]]) {
      const header = { 'down.weight': { dtype: 'U8', shape, data_offsets: [0, 2] } };
      await expectRefused(buildRawSafetensors(header, new Uint8Array(2)), 'INVALID_SHAPE', 'down.weight');
    }
  });

  it('refuses offsets that are not integers or end before they begin', async () => {
    const data = new Uint8Array(8);
    await expectRefused(buildRawSafetensors({ a: { dtype: 'U8', shape: [0], data_offsets: [8, 0] } }, data), 'INVALID_OFFSET', '"a"');
    await expectRefused(buildRawSafetensors({ a: { dtype: 'U8', shape: [8], data_offsets: [0.5, 8.5] } }, data), 'INVALID_OFFSET', '"a"');
    await expectRefused(buildRawSafetensors({ a: { dtype: 'U8', shape: [8], data_offsets: [-1, 7] } }, data), 'INVALID_OFFSET', '"a"');
  });

  it('refuses a shape whose byte size differs from the offsets, without overflowing', async () => {
    await expectRefused(buildRawSafetensors(f32('w', 0, 8, [3]), new Uint8Array(8)), 'SIZE_MISMATCH', '"w"', '12', '8');
    await expectRefused(buildRawSafetensors({ h: { dtype: 'BF16', shape: [3], data_offsets: [0, 3] } }, new Uint8Array(3)), 'SIZE_MISMATCH', '"h"');
    // 2^30 · 2^30 · 2^30 · 4 bytes is far past 2^53: must not wrap or lose precision into a match.
    const huge = { big: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 0] } };
    await expectRefused(buildRawSafetensors(huge), 'SIZE_MISMATCH', '"big"');
    const zeroDimWithBytes = { z: { dtype: 'F32', shape: [4, 0], data_offsets: [0, 16] } };
    await expectRefused(buildRawSafetensors(zeroDimWithBytes, new Uint8Array(16)), 'SIZE_MISMATCH', '"z"');
  });

  it('refuses overlapping tensors', async () => {
    const header = { ...f32('first', 0, 8), ...f32('second', 4, 12) };
    await expectRefused(buildRawSafetensors(header, new Uint8Array(12)), 'OVERLAP', 'first', 'second');
    const same = { ...f32('x', 0, 8), ...f32('y', 0, 8) };
    await expectRefused(buildRawSafetensors(same, new Uint8Array(8)), 'OVERLAP');
  });

  it('refuses gaps between tensors and data not starting at 0', async () => {
    const gap = { ...f32('first', 0, 8), ...f32('second', 12, 20) };
    await expectRefused(buildRawSafetensors(gap, new Uint8Array(20)), 'INVALID_OFFSET', 'second', 'gap');
    await expectRefused(buildRawSafetensors(f32('late', 4, 12), new Uint8Array(12)), 'INVALID_OFFSET', 'late');
  });

  it('refuses trailing bytes after the last tensor', async () => {
    await expectRefused(buildRawSafetensors(f32('w', 0, 8), new Uint8Array(9)), 'TRAILING_BYTES', '1 unexpected byte');
    await expectRefused(buildRawSafetensors({}, new Uint8Array(3)), 'TRAILING_BYTES');
  });

  it('refuses tensors that run past the end of the file', async () => {
    const good = buildSafetensors([
      { name: 'a', dtype: 'F32', shape: [2], data: [1, 2] },
      { name: 'tail', dtype: 'F16', shape: [3], data: [1, 2, 3] },
    ]);
    await expectRefused(good.subarray(0, good.byteLength - 1), 'TRUNCATED', 'tail');
    await expectRefused(buildRawSafetensors(f32('w', 0, 8), new Uint8Array(4)), 'TRUNCATED', '"w"');
  });
});

describe('safetensors reading', () => {
  it('reads tensors on demand, in offset order, with metadata and zero-size tensors', async () => {
    // Header order differs from data order: entries must come back sorted by offset.
    const values = [1.5, -2.25, 3, 1e-3, 65504, -0];
    const body = new Uint8Array(6 * 2 + 3 * 4);
    const dv = new DataView(body.buffer);
    [7, 8, 9].forEach((v, i) => dv.setUint32(i * 4, v, true));
    const f16 = buildSafetensors([{ name: 'x', dtype: 'F16', shape: [2, 3], data: values }]);
    const f16Data = f16.subarray(f16.byteLength - 12);
    body.set(f16Data, 12);
    const header = {
      __metadata__: { format: 'pt', note: 'ünïcode' },
      'b.f16': { dtype: 'F16', shape: [2, 3], data_offsets: [12, 24] },
      'empty.first': { dtype: 'BF16', shape: [0, 5], data_offsets: [0, 0] },
      'a.u32': { dtype: 'U32', shape: [3], data_offsets: [0, 12] },
      'empty.last': { dtype: 'F32', shape: [3, 0], data_offsets: [24, 24] },
      scalar_empty: { dtype: 'I8', shape: [0], data_offsets: [24, 24] },
    };
    const file = await open(buildRawSafetensors(header, body));
    expect(file.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    expect(file.tensors.map((t) => t.name)).toEqual(['empty.first', 'a.u32', 'b.f16', 'empty.last', 'scalar_empty']);
    const headerBytes = file.source.size - body.byteLength;
    expect(file.get('b.f16')).toEqual({ name: 'b.f16', dtype: 'F16', shape: [2, 3], offset: headerBytes + 12, byteLength: 12 });
    expect(Array.from(decodeValues(await file.read(file.get('a.u32')!), 'U32'))).toEqual([7, 8, 9]);
    expect(Array.from(decodeValues(await file.read(file.get('b.f16')!), 'F16'))).toEqual([1.5, -2.25, 3, 0.0010004043579101562, 65504, -0]);
    expect(Array.from(decodeValues(await file.readPart(file.get('b.f16')!, 4, 6), 'F16'))).toEqual([3, 0.0010004043579101562, 65504]);
    expect((await file.read(file.get('empty.last')!)).byteLength).toBe(0);
    expect(file.get('missing')).toBeUndefined();
    await expect(file.readPart(file.get('a.u32')!, 8, 8)).rejects.toThrow(RangeError);
  });

  it('accepts a file with no tensors and a scalar tensor', async () => {
    expect((await open(buildRawSafetensors({}))).tensors).toEqual([]);
    const scalar = await open(buildSafetensors([{ name: 's', dtype: 'F64', shape: [], data: [Math.PI] }]));
    expect(Array.from(decodeValues(await scalar.read(scalar.tensors[0]), 'F64'))).toEqual([Math.PI]);
  });

  it('reads only the header up front', async () => {
    const bytes = buildSafetensors([{ name: 'w', dtype: 'F32', shape: [1000], data: new Float64Array(1000) }]);
    const inner = bytesSource(bytes, FILE);
    const reads: [number, number][] = [];
    const file = await openSafetensors({ ...inner, read: (o, l) => (reads.push([o, l]), inner.read(o, l)) });
    expect(reads.reduce((n, [, l]) => n + l, 0)).toBe(file.tensors[0].offset);
  });
});
