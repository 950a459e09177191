/**
 * What the IQ1 and IQ2 codec tests (gguf-iq1-codecs, gguf-iq2-codecs) share: the golden files'
 * hex encodings and the FNV-1a of a table dump; the check of a codec (the WebAssembly encoder where
 * it compiles) against ggml's golden blocks, with importance weights and without; and a llama GGUF of two IQ1_S or IQ2_XXS tensors
 * with a rank-2 LoRA on one of them and llama-imatrix's GGUF output for it, merged through the CLI.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { blockCodec } from '../../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../../src/formats/gguf/ggml-types.js';
import { runCli, type CliResult } from './cli.js';
import { seededRandom, tempDirs } from './fixtures.js';
import { buildGguf, readGguf, tensorData } from './gguf-builder.js';
import { ggufLoraAdapter } from './gguf-models.js';
import { gaussian } from './svd-reference.js';

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const f32FromHex = (h: string): Float32Array => new Float32Array(new Uint8Array(Buffer.from(h, 'hex')).buffer);

/** FNV-1a of a text (as the golden scripts hash the harness's table dump). */
export function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A golden block: inputs as hex, and per type the block ggml writes (hex) or null where it aborts. */
export type GoldenBlock = { name: string; x: string; qw: string } & Record<string, string | null>;

/**
 * Tests that `type`'s codec writes each golden block as ggml does and refuses (NON_FINITE, naming
 * `family`) those ggml aborts on, block by block and as one row of every written block.
 */
export function codecWritesGolden(type: string, bytes: number, blocks: readonly GoldenBlock[], family: 'IQ1' | 'IQ2'): void {
  const codec = blockCodec(ggmlTypeByName(type)!)!;
  it('writes each golden block as ggml does, and refuses those ggml aborts on', () => {
    for (const b of blocks) {
      const out = new Uint8Array(bytes);
      const run = () => codec.encodeWeighted!(f32FromHex(b.x), out, f32FromHex(b.qw));
      if (b[type] === null) expect(run, b.name).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringContaining(`${family} block`) }));
      else {
        run();
        expect(hex(out), b.name).toBe(b[type]);
      }
    }
  });

  it('writes a row of every golden block ggml writes as those blocks', () => {
    const ok = blocks.filter((b) => b[type] !== null);
    const x = new Float32Array(ok.length * 256);
    const qw = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => {
      x.set(f32FromHex(b.x), i * 256);
      qw.set(f32FromHex(b.qw), i * 256);
    });
    const out = new Uint8Array(ok.length * bytes);
    codec.encodeWeighted!(x, out, qw);
    expect(hex(out)).toBe(ok.map((b) => b[type]).join(''));
  });
}

/**
 * Tests that `type`'s quantizer without importance weights (`encodeRow` with none, then the codec's
 * encode: the WebAssembly encoder where it compiles) writes each golden block's `field` as ggml
 * does and refuses (NON_FINITE) those it holds null for, block by block and as one row of every
 * written block.
 */
export function unweightedWritesGolden(type: string, bytes: number, blocks: readonly GoldenBlock[], field: string, encodeRow: (x: Float32Array, out: Uint8Array, qw: undefined) => void): void {
  it.each(blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const out = new Uint8Array(bytes);
    if (b[field] === null) {
      expect(() => encodeRow(x, out, undefined)).toThrow(expect.objectContaining({ code: 'NON_FINITE' }));
    } else {
      encodeRow(x, out, undefined);
      expect(hex(out)).toBe(b[field]);
    }
  });

  it('through the codec\'s encode (the WebAssembly encoder where it compiles), block by block and as one row', () => {
    const codec = blockCodec(ggmlTypeByName(type)!)!;
    for (const b of blocks) {
      const out = new Uint8Array(bytes);
      const run = () => codec.encode(f32FromHex(b.x), out);
      if (b[field] === null) expect(run, b.name).toThrow(expect.objectContaining({ code: 'NON_FINITE' }));
      else {
        run();
        expect(hex(out), b.name).toBe(b[field]);
      }
    }
    const ok = blocks.filter((b) => b[field] !== null);
    const x = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => x.set(f32FromHex(b.x), i * 256));
    const out = new Uint8Array(ok.length * bytes);
    codec.encode(x, out);
    expect(hex(out)).toBe(ok.map((b) => b[field]).join(''));
  });
}

/** One row of a weighted quantizer: `out` from `x` and one importance weight per value. */
type EncodeRow = (x: Float32Array, out: Uint8Array, qw: Float32Array) => void;

/**
 * A llama GGUF (4 heads, general.file_type `fileType`) of blk.0.attn_v.weight (rows.v × 256) and
 * blk.0.attn_q.weight (rows.q × 256) in `type`, their blocks from `encodeRow` (values 0.02·N(0, 1),
 * weights 1, seeds blockSeeds), a rank-2 LoRA on attn_v (seed loraSeed), and llama-imatrix's GGUF
 * output (`<name>.in_sum2` ne [256, 1], `<name>.counts` 40) with entries for both tensors
 * (both.imatrix.gguf) or attn_q only (q-only.imatrix.gguf). Call inside a describe (it registers
 * the removal of its folders).
 */
export function iqImatrixLlama(o: { type: string; fileType: number; bytes: number; encodeRow: EncodeRow; rows: { v: number; q: number }; seed: number; blockSeeds: [number, number]; loraSeed: number }) {
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const rand = seededRandom(o.seed);
  const g = () => gaussian(rand);
  const blocks = (n: number, seed: number) => {
    const r = seededRandom(seed);
    const x = Float32Array.from({ length: 256 * n }, () => 0.02 * gaussian(r));
    const out = new Uint8Array(o.bytes * n);
    o.encodeRow(x, out, new Float32Array(256 * n).fill(1));
    return out;
  };
  const v = blocks(o.rows.v, o.blockSeeds[0]);
  const q = blocks(o.rows.q, o.blockSeeds[1]);
  const base = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: o.fileType }]],
    tensors: [
      { name: 'blk.0.attn_v.weight', type: o.type, ne: [256, o.rows.v], data: v },
      { name: 'blk.0.attn_q.weight', type: o.type, ne: [256, o.rows.q], data: q },
    ],
  });
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 2, in: 256, out: o.rows.v, aType: 'F32', bType: 'F32' }], 2, o.loraSeed);
  const sums = Array.from({ length: 256 }, () => 40 * Math.exp(2 * g()) * 0.1);
  const imatrix = (names: string[]) => buildGguf({
    metadata: [
      ['general.type', { type: 'string', value: 'imatrix' }],
      ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }],
      ['imatrix.chunk_count', { type: 'u32', value: 10 }],
      ['imatrix.chunk_size', { type: 'u32', value: 512 }],
    ],
    tensors: names.flatMap((name) => [
      { name: `${name}.in_sum2`, type: 'F32', ne: [256, 1], data: tensorData('F32', sums) },
      { name: `${name}.counts`, type: 'F32', ne: [1, 1], data: tensorData('F32', [40]) },
    ]),
  });
  const files = () => temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes, 'both.imatrix.gguf': imatrix(['blk.0.attn_v.weight', 'blk.0.attn_q.weight']), 'q-only.imatrix.gguf': imatrix(['blk.0.attn_q.weight']) });
  const merge = (dir: string, out: string, ...extra: string[]): Promise<CliResult> => runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, out), '--backend', 'cpu', ...extra]);
  /** The imatrix's weights, as llama-quantize reads them: in_sum2 / counts in f32. */
  const qw = Float32Array.from(sums, (s) => Math.fround(Math.fround(s) / 40));
  let merged: Promise<Float32Array> | undefined;
  /** The merged attn_v before quantization: the same merge written as f32 (once). */
  const mergedValues = () => (merged ??= (async () => {
    const dir = files();
    const f32 = await merge(dir, 'f32.gguf', '--dtype', 'f32', '--dtype-merged-only');
    expect(f32.code, f32.stderr).toBe(0);
    return new Float32Array(Uint8Array.from(readGguf(readFileSync(join(dir, 'f32.gguf'))).tensors[0].data).buffer);
  })());
  /** What `encodeRow` writes for the merged attn_v, row by row with the imatrix's weights. */
  const expected = async (encodeRow: EncodeRow, bytes: number) => {
    const x = await mergedValues();
    const want = new Uint8Array(bytes * o.rows.v);
    for (let r = 0; r < o.rows.v; r++) encodeRow(x.subarray(256 * r, 256 * (r + 1)), want.subarray(bytes * r, bytes * (r + 1)), qw);
    return want;
  };
  return { v, q, files, merge, expected };
}
