/**
 * The GGUF metadata encoder that reading a header re-encodes its metadata with (to prove it was
 * read exactly) and the writer writes with. It made a buffer, a view and a closure per value: a
 * header of 45 arrays of 1 000 000 u8 (45 MB, each array at the parser's limit) took 182 s and
 * 8.2 GB before the merge was killed. It now writes into one growing buffer.
 */
import { describe, expect, it } from 'vitest';
import { ByteWriter, GGUFValueType } from '../src/formats/gguf/gguf-metadata.js';

describe('GGUF ByteWriter', () => {
  it('writes key-values byte for byte across its buffer growing (u32, u64, strings, arrays)', () => {
    const w = new ByteWriter();
    const name = 'x'.repeat(3000); // past the first 1024-byte buffer in one string
    w.keyValue({ key: 'general.name', type: GGUFValueType.STRING, value: name });
    w.keyValue({ key: 'llama.block_count', type: GGUFValueType.UINT32, value: 32 });
    w.keyValue({ key: 'tokenizer.ggml.token_type', type: GGUFValueType.ARRAY, subType: GGUFValueType.INT32, value: Array.from({ length: 700 }, (_, i) => i - 350) });
    w.u64(2n ** 40n + 5n);
    const got = w.take();
    // The same bytes written by hand: u64 length + UTF-8 for strings, u32 type, then the value.
    const want: number[] = [];
    const u32 = (v: number) => { for (let i = 0; i < 4; i++) want.push((v >>> (8 * i)) & 0xff); };
    const u64 = (v: bigint) => { for (let i = 0n; i < 8n; i++) want.push(Number((v >> (8n * i)) & 0xffn)); };
    const str = (s: string) => { u64(BigInt(s.length)); for (const c of s) want.push(c.charCodeAt(0)); };
    str('general.name'); u32(8); str(name);
    str('llama.block_count'); u32(4); u32(32);
    str('tokenizer.ggml.token_type'); u32(9); u32(5); u64(700n); for (let i = 0; i < 700; i++) u32((i - 350) >>> 0);
    u64(2n ** 40n + 5n);
    expect(got.byteLength).toBe(want.length);
    expect(Array.from(got)).toEqual(want);
    expect(w.take().byteLength).toBe(0);
  });

  it('encodes 8 arrays of 1 000 000 u8 (the parser\'s array limit) in well under its timeout', () => {
    const w = new ByteWriter();
    const items = new Array<number>(1_000_000).fill(7);
    for (let a = 0; a < 8; a++) w.keyValue({ key: `a${a}`, type: GGUFValueType.ARRAY, subType: GGUFValueType.UINT8, value: items });
    const out = w.take();
    // Each entry: key (8 + 2), type 4, subtype 4, count 8, 1 000 000 bytes.
    expect(out.byteLength).toBe(8 * (10 + 16 + 1_000_000));
    expect(out[10 + 16]).toBe(7);
    expect(out[out.byteLength - 1]).toBe(7);
  }, 4000);
});
