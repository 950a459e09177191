/**
 * `--imatrix`: llama-imatrix's importance matrices (its GGUF output, `<name>.in_sum2` and
 * `<name>.counts` with imatrix.* metadata, and the legacy .dat) read as llama-quantize reads them
 * (weights = in_sum2 / count per expert, 1 where an expert saw no input; legacy sums / ncall), and
 * merged tensors re-quantized with them as `llama-quantize --imatrix` does: each weighted type's
 * bytes against a plain transcription of ggml's quantize_row_*_impl in the test helpers (and
 * checked to differ from the unweighted bytes, so ignoring the weights fails), hostile files
 * refused in one line, and the CLI end to end on a Q4_K_M llama.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blockCodec, CODEC_TYPE_NAMES } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { readImportanceMatrix } from '../src/formats/gguf/imatrix.js';
import { encodeWeightedRowsInto } from '../src/formats/gguf/codecs/encode-blocks.js';
import { importanceRows, type ImportanceTarget } from '../src/formats/gguf/imatrix-rows.js';
import { bytesSource } from '../src/io/memory-source.js';
import { merge as browserMerge } from '../src/merge.js';
import { errorLines, runCli } from './helpers/cli.js';
import { concatBytes, f16BitsFromF64, seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, type MetaValue } from './helpers/gguf-builder.js';
import { makeQx, q6_K } from './helpers/ggml-reference.js';
import { quantizeIq4NlBlock, quantizeIq4XsBlock } from './helpers/ggml-iq4-reference.js';
import { quantizeIq3sBlock } from './helpers/ggml-iq3s-reference.js';
import { affineRow, legacyRow, makeQp, q2KBlock, q3KBlock, scaleMinKBlock } from './helpers/ggml-imatrix-reference.js';
import { makeQpQuants } from '../src/formats/gguf/codecs/k-quant-search.js';
import { encodeKQuantWeightedWasm, encodeLegacyWeightedWasm } from '../src/formats/gguf/codecs/kquant-wasm.js';
import { encodeQ4_0Weighted } from '../src/formats/gguf/codecs/q4_0.js';
import { encodeQ5_0Weighted } from '../src/formats/gguf/codecs/q5_0.js';
import { encodeQ3KBlocks } from '../src/formats/gguf/codecs/q3_k.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const F = Math.fround;

function gaussian(seed: number): () => number {
  const rand = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
}

/** A row of weights like llama-imatrix's: mean squared activations, spread over orders of magnitude. */
function importance(n: number, seed: number): Float32Array {
  const g = gaussian(seed);
  return Float32Array.from({ length: n }, () => Math.exp(2 * g()));
}

/** Super-block references applied along a row: block b takes qw's values at the same positions. */
function perBlock(size: number, quantize: (x: number[], qw: number[]) => Uint8Array) {
  return (x: Float32Array, qw: Float32Array): Uint8Array =>
    concatBytes(Array.from({ length: x.length / size }, (_, b) => quantize(Array.from(x.subarray(b * size, (b + 1) * size)), Array.from(qw.subarray(b * size, (b + 1) * size)))));
}

const WEIGHTED: Record<string, (x: Float32Array, qw: Float32Array) => Uint8Array> = {
  Q4_0: (x, qw) => legacyRow(x, qw, 4),
  Q5_0: (x, qw) => legacyRow(x, qw, 5),
  Q4_1: (x, qw) => affineRow(x, qw, 4),
  Q5_1: (x, qw) => affineRow(x, qw, 5),
  Q2_K: perBlock(256, (x, qw) => q2KBlock(x, qw)),
  Q3_K: perBlock(256, (x, qw) => q3KBlock(x, qw)),
  Q4_K: perBlock(256, (x, qw) => scaleMinKBlock(x, qw, 4)),
  Q5_K: perBlock(256, (x, qw) => scaleMinKBlock(x, qw, 5)),
  Q6_K: perBlock(256, (x, qw) => q6_K(x, qw)),
  IQ4_NL: perBlock(32, (x, qw) => quantizeIq4NlBlock(x, qw)),
  IQ4_XS: perBlock(256, (x, qw) => quantizeIq4XsBlock(x, qw)),
  IQ3_S: perBlock(256, (x, qw) => quantizeIq3sBlock(x, qw)),
};

describe('importance-weighted quantizers', () => {
  it.for(Object.keys(WEIGHTED))('%s: a row quantized with imatrix weights is what ggml writes, and not the unweighted bytes', (name) => {
    const type = ggmlTypeByName(name)!;
    const codec = blockCodec(type)!;
    const cols = 512;
    const g = gaussian(7);
    for (const seed of [1, 2, 3]) {
      // Weight rows of a merged model: small values, a few outliers (what imatrix weighting is for).
      const x = Float32Array.from({ length: cols }, (_, i) => 0.02 * g() * (i % 97 === seed ? 8 : 1));
      const qw = importance(cols, 100 + seed);
      const got = new Uint8Array((cols / type.blockSize) * type.blockBytes);
      codec.encodeWeighted!(x, got, qw);
      expect(got).toEqual(WEIGHTED[name](x, qw));
      const plain = new Uint8Array(got.length);
      codec.encode(x, plain);
      expect(got).not.toEqual(plain);
    }
  });

  it('make_qp_quants (the 6-bit and 4-bit sub-block scales of the weighted k-quants) as ggml computes it, its level-moving passes included', () => {
    const rand = seededRandom(17);
    let moved = 0;
    for (let c = 0; c < 3000; c++) {
      const [n, nmax] = c % 2 ? [8, 63] : [16, 15];
      // Spread scales (a few near zero, as sub-blocks of small values give) and uneven weights.
      const x = Float32Array.from({ length: n }, () => F(rand() ** 3));
      const w = Float32Array.from({ length: n }, () => F(Math.exp(3 * (rand() - 0.5))));
      const L = new Uint8Array(n);
      const scale = makeQpQuants(n, nmax, x, L, w);
      const want = makeQp(Array.from(x), nmax, Array.from(w));
      expect([scale, ...L]).toEqual([want.scale, ...want.L]);
      // Cases whose levels are not x rounded at the final scale: the trial scales and passes at work.
      const iscaleLevels = Array.from(x, (v) => Math.min(nmax, Math.round(v * (want.scale ? 1 / want.scale : 0))));
      if (iscaleLevels.some((l, i) => l !== want.L[i])) moved++;
    }
    expect(moved).toBeGreaterThan(0);
  });

  // Weights near FLT_MAX times sqrtf(σ² + x²) > 1 overflow to Inf, and Inf·0 (a level 0) makes
  // make_qx_quants' Σw·l² NaN; C's `suml2 ? sumlx/suml2 : 0.0f` takes NaN as true, so the scale,
  // and the block's f16 d, are NaN (which llama-quantize's row check then refuses), not 0.
  it.for([['Q4_0', 18, 32], ['Q5_0', 22, 32], ['Q3_K', 110, 256]] as const)('%s: weights overflowing f32 give the NaN scale make_qx_quants gives (C takes a NaN sum as true), in TypeScript and WebAssembly alike', ([name, bytes, size]) => {
    const g = gaussian(23);
    const x = Float32Array.from({ length: 512 }, () => 2 * g());
    const qw = Float32Array.from({ length: 512 }, (_, i) => (i < 32 ? 3.4e38 : Math.exp(g())));
    const want = WEIGHTED[name](x, qw);
    const ts = new Uint8Array(want.length);
    const wasm = new Uint8Array(want.length);
    if (name === 'Q3_K') {
      encodeQ3KBlocks(x, ts, qw);
      expect(encodeKQuantWeightedWasm('Q3_K', x, wasm, qw)).toBe(true);
    } else {
      (name === 'Q4_0' ? encodeQ4_0Weighted : encodeQ5_0Weighted)(x, ts, qw);
      expect(encodeLegacyWeightedWasm(name, x, wasm, qw)).toBe(true);
    }
    // d: Q4_0/Q5_0's first two bytes, Q3_K's last two. Its NaN's sign is the CPU's (x86: 0xfe00).
    const dAt = name === 'Q3_K' ? bytes - 2 : 0;
    const d = (b: Uint8Array, block: number) => b[block * bytes + dAt] | (b[block * bytes + dAt + 1] << 8);
    const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    for (const got of [ts, wasm]) {
      expect(isNaN16(d(got, 0)), `${name} block 0 d ${d(got, 0).toString(16)}`).toBe(true);
      expect(isNaN16(d(want, 0))).toBe(true);
      for (let b = 0; b < want.length / bytes; b++) {
        const strip = (v: Uint8Array) => { const c = v.slice(b * bytes, (b + 1) * bytes); c[dAt] = c[dAt + 1] = 0; return [...c]; };
        expect(strip(got), `${name} block ${b}`).toEqual(strip(want));
        if (b > 0) expect(isNaN16(d(got, b))).toBe(false);
      }
      expect(size * (want.length / bytes)).toBe(512);
    }
  });

  it('a merge whose Q4_0 blocks come out NaN that way is refused in one line naming the importance matrix and the tensor (llama-quantize stops on the NaN d too)', async () => {
    const g = gaussian(29);
    const base = buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }]],
      tensors: [{ name: 'blk.0.attn_q.weight', type: 'F32', ne: [256, 8], data: tensorData('F32', Array.from({ length: 256 * 8 }, () => 2 * g())) }],
    });
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 2, in: 256, out: 8, aType: 'F32', bType: 'F32' }], 2);
    const importance = { file: 'huge.imatrix.gguf', entries: new Map([['blk.0.attn_q.weight', Float32Array.from({ length: 256 }, (_, i) => (i < 32 ? 3.4e38 : 1))]]) };
    const run = (extra: object) => browserMerge({
      base: new File([base as Uint8Array<ArrayBuffer>], 'base.gguf'), adapters: [new File([lora.bytes as Uint8Array<ArrayBuffer>], 'lora.gguf')], backend: 'cpu', dtype: 'q4_0', ...extra,
    });
    await expect(run({ importance })).rejects.toThrow(/^importance matrix huge\.imatrix\.gguf: tensor "blk\.0\.attn_q\.weight" quantized to Q4_0 with its weights comes out NaN, Inf or zeroed [^\n]*leave out importance$/);
    expect((await run({})).blobs).toHaveLength(1);
  });

  it('make_qp_quants\' guards (ggml d99724f, since b466b4d): scales below GROUP_MAX_EPS give levels 0 and scale 0; weights all 0 give scale 0, not 0/0', () => {
    const L = new Uint8Array(8).fill(9);
    const tiny = Float32Array.from({ length: 8 }, (_, i) => F(1e-16 * (i + 1)));
    expect(makeQpQuants(8, 63, tiny, L, new Float32Array(8).fill(1))).toBe(0);
    expect([...L]).toEqual(new Array(8).fill(0));
    const x = Float32Array.from({ length: 8 }, (_, i) => F(0.01 * (i + 1)));
    expect(makeQpQuants(8, 63, x, L, new Float32Array(8))).toBe(0);
    // The levels are x at the first trial scale 63/max (no pass moves one without weights).
    expect([...L]).toEqual(Array.from(x, (_, i) => Math.round((63 * (i + 1)) / 8)));
    for (const [xs, w] of [[tiny, new Float32Array(8).fill(1)], [x, new Float32Array(8)]] as const) expect(makeQp(Array.from(xs), 63, Array.from(w)).scale).toBe(0);
  });

  it('IQ3_XXS takes the weights through the same grid search as IQ3_S (its bytes change with them)', () => {
    const type = ggmlTypeByName('IQ3_XXS')!;
    const codec = blockCodec(type)!;
    const g = gaussian(9);
    const x = Float32Array.from({ length: 512 }, () => 0.02 * g());
    const weighted = new Uint8Array(2 * type.blockBytes);
    const plain = new Uint8Array(2 * type.blockBytes);
    codec.encodeWeighted!(x, weighted, importance(512, 5));
    codec.encode(x, plain);
    expect(weighted).not.toEqual(plain);
  });

  it('every written type either has a weighted quantizer or is one whose ggml quantizer ignores quant_weights', () => {
    const flags = (n: string) => [blockCodec(ggmlTypeByName(n)!)!.ignoresImportance ?? false, !!blockCodec(ggmlTypeByName(n)!)!.encodeWeighted];
    for (const n of ['F16', 'BF16', 'F32', 'Q8_0', 'MXFP4', 'NVFP4', 'Q1_0', 'Q2_0', 'TQ1_0', 'TQ2_0']) expect(flags(n), n).toEqual([true, false]);
    for (const n of [...Object.keys(WEIGHTED), 'IQ3_XXS']) expect(flags(n), n).toEqual([false, true]);
    expect(CODEC_TYPE_NAMES.filter((n) => flags(n)[0] === flags(n)[1])).toEqual([]);
  });
});

// ---- importance files as llama-imatrix writes them ----

interface Entry { name: string; ne0: number; sums: number[]; counts: number[] }

const IMATRIX_META: [string, MetaValue][] = [
  ['general.type', { type: 'string', value: 'imatrix' }],
  ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }],
  ['imatrix.chunk_count', { type: 'u32', value: 125 }],
  ['imatrix.chunk_size', { type: 'u32', value: 512 }],
];

/** llama-imatrix's GGUF output: per matrix `<name>.in_sum2` ne [ne0, n] and `<name>.counts` ne [1, n], F32. */
function imatrixGguf(entries: Entry[], metadata = IMATRIX_META, extra: { name: string; type: string; ne: number[]; data: Uint8Array }[] = []): Uint8Array {
  const tensors = entries.flatMap((e) => [
    { name: `${e.name}.in_sum2`, type: 'F32', ne: [e.ne0, e.counts.length], data: tensorData('F32', e.sums) },
    { name: `${e.name}.counts`, type: 'F32', ne: [1, e.counts.length], data: tensorData('F32', e.counts) },
  ]);
  return buildGguf({ metadata, tensors: [...tensors, ...extra] });
}

/** The legacy .dat: i32 n; per entry i32 len, name, i32 ncall, i32 nval, f32 × nval; then i32 chunks, i32 len, dataset. */
function imatrixDat(entries: { name: string; ncall: number; sums: number[] }[], trailer = true): Uint8Array {
  const parts: Uint8Array[] = [];
  const i32 = (v: number) => new Uint8Array(new Int32Array([v]).buffer);
  parts.push(i32(entries.length));
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    parts.push(i32(name.length), name, i32(e.ncall), i32(e.sums.length), new Uint8Array(new Float32Array(e.sums).buffer));
  }
  if (trailer) {
    const ds = new TextEncoder().encode('wiki.train.raw');
    parts.push(i32(100), i32(ds.length), ds);
  }
  return concatBytes(parts);
}

const read = (bytes: Uint8Array, name = 'model.imatrix.gguf') => readImportanceMatrix(bytesSource(bytes, name));

describe('reading importance matrices', () => {
  it('reads llama-imatrix GGUF output: in_sum2 / counts per expert, 1 for an expert that saw nothing', async () => {
    const q = Array.from({ length: 8 }, (_, i) => 3 * i + 1);
    const experts = [2, 4, 6, 8, 1, 3, 5, 7, 9, 9, 9, 9];
    const im = await read(imatrixGguf([
      { name: 'blk.0.attn_q.weight', ne0: 8, sums: q, counts: [10] },
      { name: 'blk.0.ffn_up_exps.weight', ne0: 4, sums: experts, counts: [2, 0, 3] },
    ]));
    expect([...im.entries.keys()].sort()).toEqual(['blk.0.attn_q.weight', 'blk.0.ffn_up_exps.weight']);
    expect([...im.entries.get('blk.0.attn_q.weight')!]).toEqual(q.map((v) => F(v / 10)));
    expect([...im.entries.get('blk.0.ffn_up_exps.weight')!]).toEqual([1, 2, 3, 4, 1, 1, 1, 1, F(9 / 3), 3, 3, 3]);
  });

  it('reads the legacy .dat: sums / ncall (the sums of 0 as they are where ncall is 0), with or without its trailer', async () => {
    for (const trailer of [true, false]) {
      const im = await read(imatrixDat([
        { name: 'blk.0.attn_k.weight', ncall: 3, sums: [1, 2, 3, 4] },
        { name: 'output.weight', ncall: 0, sums: [0, 0] },
      ], trailer), 'imatrix.dat');
      expect([...im.entries.get('blk.0.attn_k.weight')!]).toEqual([F(1 / 3), F(2 / 3), 1, F(4 / 3)]);
      expect([...im.entries.get('output.weight')!]).toEqual([0, 0]);
    }
    // An older llama-imatrix wrote the chunk count alone after the entries.
    const chunksOnly = concatBytes([imatrixDat([{ name: 'blk.0.attn_k.weight', ncall: 2, sums: [2, 4] }], false), new Uint8Array(new Int32Array([10]).buffer)]);
    expect([...(await read(chunksOnly, 'imatrix.dat')).entries.get('blk.0.attn_k.weight')!]).toEqual([1, 2]);
  });

  it('reads a .dat MoE entry (ffn_up_exps: ne0 values per expert under one ncall, as llama-imatrix\'s legacy writer stores them) and gives each expert\'s rows its own', async () => {
    // 3 experts of ne0 4: llama-imatrix stores each expert's mean times ncall; llama-quantize divides by ncall.
    const sums = [2, 4, 6, 8, 4, 4, 4, 4, 8, 6, 4, 2];
    const im = await read(imatrixDat([{ name: 'blk.0.ffn_up_exps.weight', ncall: 2, sums }]), 'imatrix.dat');
    expect([...im.entries.get('blk.0.ffn_up_exps.weight')!]).toEqual(sums.map((v) => v / 2));
    const rows = importanceRows(im, [{ name: 'blk.0.ffn_up_exps.weight', shape: [3, 5, 4], type: 'Q4_K', outType: 'Q4_K', changed: true }]);
    expect(rows.get('blk.0.ffn_up_exps.weight')).toMatchObject({ cols: 4, rowsPerExpert: 5 });
    // One expert's worth for a stack of 3: refused naming the entry and the experts.
    const one = await read(imatrixDat([{ name: 'blk.0.ffn_up_exps.weight', ncall: 2, sums: sums.slice(0, 4) }]), 'imatrix.dat');
    expect(() => importanceRows(one, [{ name: 'blk.0.ffn_up_exps.weight', shape: [3, 5, 4], type: 'Q4_K', outType: 'Q4_K', changed: true }]))
      .toThrow(/^importance matrix imatrix\.dat: its entry "blk\.0\.ffn_up_exps\.weight" has 4 values, but the tensor \[3, 5, 4\] takes 4 × 3 experts/);
  });

  const refusals: [string, () => Uint8Array, RegExp][] = [
    ['a GGUF model given for the imatrix', () => buildGguf({ metadata: [['general.type', { type: 'string', value: 'model' }]], tensors: [] }), /general\.type is "model", not "imatrix"/],
    ['a GGUF without in_sum2 tensors', () => buildGguf({ metadata: [], tensors: [{ name: 'blk.0.attn_q.weight', type: 'F32', ne: [4, 4], data: tensorData('F32', new Array(16).fill(0)) }] }), /no <tensor>\.in_sum2/],
    ['sums without counts', () => imatrixGguf([], IMATRIX_META, [{ name: 'blk.0.attn_q.weight.in_sum2', type: 'F32', ne: [4, 1], data: tensorData('F32', [1, 2, 3, 4]) }]), /"blk\.0\.attn_q\.weight" has \.in_sum2 but no \.counts/],
    ['counts of the wrong shape', () => imatrixGguf([], IMATRIX_META, [
      { name: 'blk.0.attn_q.weight.in_sum2', type: 'F32', ne: [4, 2], data: tensorData('F32', new Array(8).fill(1)) },
      { name: 'blk.0.attn_q.weight.counts', type: 'F32', ne: [1, 1], data: tensorData('F32', [1]) },
    ]), /counts has ne \[1, 1\], not \[1, 2\]/],
    ['a fractional count', () => imatrixGguf([{ name: 'blk.0.attn_q.weight', ne0: 2, sums: [1, 2], counts: [1.5] }]), /holds 1\.5, not a count/],
    ['a non-finite weight', () => imatrixGguf([{ name: 'blk.0.attn_q.weight', ne0: 2, sums: [Infinity, 2], counts: [1] }]), /"blk\.0\.attn_q\.weight" holds a value that is not finite/],
    ['sums stored as F16', () => imatrixGguf([], IMATRIX_META, [
      { name: 'x.in_sum2', type: 'F16', ne: [4, 1], data: tensorData('F16', [1, 2, 3, 4]) },
      { name: 'x.counts', type: 'F32', ne: [1, 1], data: tensorData('F32', [1]) },
    ]), /x\.in_sum2 is F16, not F32/],
    ['a .dat entry count past its size', () => imatrixDat([{ name: 'a', ncall: 1, sums: [1] }]).map((b, i) => (i === 3 ? 0x7f : b)), /entry count of \d+ for \d+ bytes/],
    ['a .dat name length past the end', () => { const b = imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 1, sums: [1] }]); new DataView(b.buffer).setInt32(4, 1 << 20, true); return b; }, /entry 1 has a name length of 1048576/],
    ['a .dat value count past the end', () => { const b = imatrixDat([{ name: 'q', ncall: 1, sums: [1, 2] }]); new DataView(b.buffer).setInt32(13, 1 << 28, true); return b; }, /entry "q" claims 268435456 values/],
    ['a .dat cut inside an entry', () => imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 1, sums: [1, 2, 3, 4, 5] }], false).subarray(0, 30), /ends inside|claims/],
    ['a .dat cut inside its dataset name', () => { const b = imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 1, sums: [1, 2] }, { name: 'blk.0.ffn_up_exps.weight', ncall: 2, sums: [2, 4, 6, 8] }]); return b.subarray(0, b.length - 5); },
      /: after its 2 entries, 17 bytes that are not llama-imatrix's trailer \(the chunk count and the dataset's name\): the file is cut short or damaged$/],
    ['a .dat whose entry count is one short', () => { const b = imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 1, sums: [1, 2] }, { name: 'blk.0.ffn_up_exps.weight', ncall: 2, sums: [2, 4, 6, 8] }]); new DataView(b.buffer).setInt32(0, 1, true); return b; },
      /: its entry count is 1, but entry 2 "blk\.0\.ffn_up_exps\.weight" follows: the count is wrong \(llama-quantize would read the first 1 and leave the rest out\)$/],
    ['a .dat entry with a negative call count', () => imatrixDat([{ name: 'blk.0.attn_k.weight', ncall: -3, sums: [1, 2] }]), /: entry "blk\.0\.attn_k\.weight" has a call count of -3; llama-imatrix writes 0 or more, so the file is damaged$/],
    ['a .dat entry with a call count of 0 beside sums', () => imatrixDat([{ name: 'blk.0.ffn_down_exps.weight', ncall: 0, sums: [0, 5] }]), /: entry "blk\.0\.ffn_down_exps\.weight" has a call count of 0 but sums that are not 0; /],
    ['a .dat name twice', () => imatrixDat([{ name: 'q', ncall: 1, sums: [1] }, { name: 'q', ncall: 1, sums: [2] }]), /entry "q" appears twice/],
    ['three bytes', () => new Uint8Array(3), /too short/],
    // The GGUF reader's own refusals, which named the file alone (beside a GGUF base and adapters,
    // not saying that the --imatrix input is the broken one).
    ['a GGUF of version 0', () => imatrixGguf([{ name: 'blk.0.attn_q.weight', ne0: 2, sums: [1, 2], counts: [1] }]).map((b, i) => (i === 4 ? 0 : b)), /^importance matrix bad\.imatrix: unknown GGUF version 0$/],
    ['a GGUF cut inside its header', () => imatrixGguf([{ name: 'blk.0.attn_q.weight', ne0: 2, sums: [1, 2], counts: [1] }]).subarray(0, 40), /^importance matrix bad\.imatrix: .*(bytes|header|ends)/],
  ];
  it('refuses a file larger than it reads before reading any of it', async () => {
    let reads = 0;
    const huge = { name: 'huge.imatrix', size: 3 * 2 ** 30, read: async () => { reads++; return new Uint8Array(0); }, close: async () => {} };
    await expect(readImportanceMatrix(huge)).rejects.toThrow(/^importance matrix huge\.imatrix: 3221225472 bytes, more than the \d+ read$/);
    expect(reads).toBe(0);
  });

  it('quotes a name holding a line break or other controls with them escaped, on one line', async () => {
    // A GGUF tensor name or a .dat entry name may be any string; the messages quoted it as it was,
    // and a newline in it made the library's message two lines, the second of the file's choosing.
    const injected = 'blk.0.attn_q.weight\nerror: ok\x1b[2K';
    const shown = 'blk.0.attn_q.weight\\u000aerror: ok\\u001b[2K';
    const messages = await Promise.all([
      read(imatrixGguf([], IMATRIX_META, [{ name: `${injected}.in_sum2`, type: 'F32', ne: [2, 1], data: tensorData('F32', [1, 2]) }]), 'bad.imatrix'),
      read(imatrixDat([{ name: injected, ncall: 1, sums: [1] }, { name: injected, ncall: 1, sums: [2] }]), 'bad.imatrix'),
      read(imatrixGguf([{ name: injected, ne0: 2, sums: [Infinity, 2], counts: [1] }]), 'bad.imatrix'),
      read(imatrixGguf([{ name: injected, ne0: 2, sums: [1, 2], counts: [1] }]), 'bad.imatrix')
        .then((im) => importanceRows(im, [{ name: 'blk.0.attn_q.weight', shape: [4, 2], type: 'Q6_K', outType: 'Q6_K', changed: true }])),
    ].map((p) => p.then(() => 'read', (e: Error) => e.message)));
    expect(messages).toEqual([
      `importance matrix bad.imatrix: "${shown}" has .in_sum2 but no .counts`,
      `importance matrix bad.imatrix: entry "${shown}" appears twice`,
      `importance matrix bad.imatrix: entry "${shown}" holds a value that is not finite`,
      `importance matrix bad.imatrix: its entry "${shown}" is no tensor of this model (was it made for another model?)`,
    ]);
  });

  it.for(refusals)('refuses %s in one line naming the file', async ([, bytes, message]) => {
    const e = await read(bytes(), 'bad.imatrix').then(() => undefined, (err: Error) => err);
    expect(e?.message).toMatch(/^importance matrix bad\.imatrix: /);
    expect(e?.message).toMatch(message);
    expect(e?.message).not.toContain('\n');
  });
});

describe('matching an importance matrix to the model', () => {
  const target = (name: string, shape: number[], type: string, changed = true, outType = type): ImportanceTarget => ({ name, shape, type, outType, changed });
  const im = (entries: Record<string, number>) => ({ file: 'i.gguf', entries: new Map(Object.entries(entries).map(([k, n]) => [k, Float32Array.from({ length: n }, (_, i) => i + 1)])) });

  it('gives each row of a stacked expert tensor its expert\'s weights, and a 2-D tensor its one row of weights', () => {
    const entries = { 'blk.0.ffn_down_exps.weight': importance(2 * 64, 3), 'blk.0.attn_q.weight': importance(64, 4) };
    const rows = importanceRows({ file: 'i.gguf', entries: new Map(Object.entries(entries)) }, [
      target('blk.0.ffn_down_exps.weight', [2, 3, 64], 'IQ4_NL'), target('blk.0.attn_q.weight', [5, 64], 'IQ4_NL'),
    ]);
    expect(rows.get('blk.0.ffn_down_exps.weight')).toMatchObject({ cols: 64, rowsPerExpert: 3 });
    expect(rows.get('blk.0.attn_q.weight')).toMatchObject({ cols: 64, rowsPerExpert: 5 });
    // Rows 2…5 of the experts' tensor (a slab from row 2): expert 0's weights for row 2, expert 1's for 3–5.
    const codec = blockCodec(ggmlTypeByName('IQ4_NL')!)!;
    const g = gaussian(21);
    const x = Float32Array.from({ length: 4 * 64 }, () => 0.02 * g());
    const { values, cols, rowsPerExpert } = rows.get('blk.0.ffn_down_exps.weight')!;
    const got = new Uint8Array(4 * 36);
    encodeWeightedRowsInto('IQ4_NL', x, got, { weights: values, cols, rowsPerExpert, firstRow: 2 });
    const want = new Uint8Array(4 * 36);
    [0, 1, 1, 1].forEach((e, r) => codec.encodeWeighted!(x.subarray(64 * r, 64 * r + 64), want.subarray(36 * r, 36 * r + 36), entries['blk.0.ffn_down_exps.weight'].subarray(64 * e, 64 * e + 64)));
    expect(got).toEqual(want);
  });

  it('leaves out tensors written in a type whose quantizer ignores the weights, unchanged tensors, and a misfitting token_embd (as llama-quantize)', () => {
    const rows = importanceRows(im({ 'blk.0.attn_v.weight': 64, 'blk.0.attn_k.weight': 64, 'token_embd.weight': 7 }), [
      target('blk.0.attn_v.weight', [4, 64], 'Q8_0'), target('blk.0.attn_k.weight', [4, 64], 'Q4_K', false), target('token_embd.weight', [9, 64], 'Q4_0'),
    ]);
    expect([...rows.keys()]).toEqual([]);
  });

  const refused: [string, () => unknown, RegExp][] = [
    ['an entry naming no tensor of the model', () => importanceRows(im({ 'blk.0.attn_q.weight': 64, 'blk.9.attn_q.weight': 64 }), [target('blk.0.attn_q.weight', [4, 64], 'Q6_K')]), /its entry "blk\.9\.attn_q\.weight" is no tensor of this model/],
    ['an entry of the wrong length', () => importanceRows(im({ 'blk.0.attn_q.weight': 32 }), [target('blk.0.attn_q.weight', [4, 64], 'Q6_K')]), /"blk\.0\.attn_q\.weight" has 32 values, but the tensor \[4, 64\] takes 64/],
    ['an expert entry for one expert only', () => importanceRows(im({ 'blk.0.ffn_up_exps.weight': 64 }), [target('blk.0.ffn_up_exps.weight', [8, 4, 64], 'Q6_K')]), /takes 64 × 8 experts/],
    ['an unmerged tensor --dtype converts', () => importanceRows(im({ 'blk.0.attn_q.weight': 256 }), [target('blk.0.attn_q.weight', [4, 256], 'F16', false, 'Q6_K')]), /converted to Q6_K by --dtype without being merged/],
  ];
  it.for(refused)('refuses %s, naming the file and tensor', ([, run, message]) => {
    expect(run).toThrow(message);
    expect(run).toThrow(/^importance matrix i\.gguf: /);
  });
});

describe('loramerge merge --imatrix', () => {
  const cols = LLAMA.hidden;
  const matrices = ['blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.attn_output.weight', 'blk.0.ffn_gate.weight', 'blk.0.ffn_up.weight', 'blk.0.ffn_down.weight', 'output.weight'];
  /** What llama-imatrix records for the llama: every matrix multiplied by activations (not token_embd). */
  const entries = (names: string[]) => names.map((name, i) => ({ name, ne0: cols, sums: Array.from(importance(cols, 50 + i), (v) => 40 * v), counts: [40] }));

  it('re-quantizes the merged Q6_K and Q4_K tensors of a Q4_K_M llama with the imatrix, as llama-quantize --imatrix, and copies the rest', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([
      { tensor: 'blk.0.attn_v.weight', rank: 4, in: cols, out: 128, aType: 'F32', bType: 'F32' },
      { tensor: 'blk.0.ffn_up.weight', rank: 4, in: cols, out: LLAMA.ffn, aType: 'F32', bType: 'F32' },
    ], 8);
    const imatrix = imatrixGguf(entries(matrices));
    const dir = temp.make({ ...base.files, 'lora.gguf': lora.bytes, 'llama.imatrix.gguf': imatrix });
    const run = (out: string, ...extra: string[]) => runCli(['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, out), '--backend', 'cpu', ...extra]);
    const weighted = await run('weighted.gguf', '--imatrix', join(dir, 'llama.imatrix.gguf'));
    expect(weighted.code, weighted.stderr).toBe(0);
    expect(weighted.stderr.split('\n')).toContain(`note: ${join(dir, 'llama.imatrix.gguf')}: importance matrix for ${matrices.length} tensors; merged tensors are re-quantized with it`);
    // The plan knows the imatrix: its warning says the merged tensors are quantized with it, not by the reference rules.
    expect(weighted.stderr.split('\n')).toContain(`warning: ${join(dir, 'tiny-llama-Q4_K_M.gguf')}: the merged tensors (1 Q6_K, 1 Q4_K: blk.0.attn_v.weight, blk.0.ffn_up.weight) are re-quantized to their own types (Q6_K, Q4_K) with the importance matrix ${join(dir, 'llama.imatrix.gguf')}, as llama-quantize --imatrix quantizes them; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)`);
    expect(weighted.stderr).not.toMatch(/reference rules/);
    // The merged values before quantization: the same merge written as f32 for the merged tensor.
    const f32 = await run('f32.gguf', '--dtype', 'f32', '--dtype-merged-only');
    expect(f32.code, f32.stderr).toBe(0);
    const plain = await run('plain.gguf');
    expect(plain.code, plain.stderr).toBe(0);
    const got = readGguf(readFileSync(join(dir, 'weighted.gguf')));
    const tensorOf = (file: string, name: string) => Uint8Array.from(readGguf(readFileSync(join(dir, file))).tensors.find((t) => t.name === name)!.data);
    const merged: [string, string, number, number][] = [['blk.0.attn_v.weight', 'Q6_K', 14, 128], ['blk.0.ffn_up.weight', 'Q4_K', 12, LLAMA.ffn]];
    for (const [name, type, typeId, rows] of merged) {
      const x = new Float32Array(tensorOf('f32.gguf', name).buffer);
      // What llama-quantize divides: the f32 in_sum2 by the count.
      const qw = Float32Array.from(entries(matrices)[matrices.indexOf(name)].sums, (v) => F(F(v) / 40));
      const want = concatBytes(Array.from({ length: rows }, (_, r) => WEIGHTED[type](x.subarray(r * cols, (r + 1) * cols), qw)));
      const v = got.tensors.find((t) => t.name === name)!;
      expect(v.typeId, name).toBe(typeId);
      expect(Uint8Array.from(v.data), name).toEqual(want);
      expect(Uint8Array.from(v.data), name).not.toEqual(tensorOf('plain.gguf', name));
    }
    // Tensors the merge does not change are copied byte for byte, imatrix or not.
    for (const t of got.tensors.filter((t) => !merged.some(([name]) => name === t.name))) expect(Uint8Array.from(t.data), t.name).toEqual(base.tensors.get(t.name)!.data);
  });

  it('the library\'s merge() takes the importance matrix as `importance`, as the CLI\'s --imatrix', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_v.weight', rank: 4, in: cols, out: 128, aType: 'F32', bType: 'F32' }], 8);
    const importance = await readImportanceMatrix(bytesSource(imatrixGguf(entries(matrices)), 'llama.imatrix.gguf'));
    const run = async (extra: object) => {
      const file = new File([base.files['tiny-llama-Q4_K_M.gguf'] as Uint8Array<ArrayBuffer>], 'tiny-llama-Q4_K_M.gguf');
      const { blobs } = await browserMerge({ base: file, adapters: [new File([lora.bytes as Uint8Array<ArrayBuffer>], 'lora.gguf')], backend: 'cpu', ...extra });
      return readGguf(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors.find((t) => t.name === 'blk.0.attn_v.weight')!.data;
    };
    const f32 = await run({ dtype: 'f32' });
    const x = new Float32Array(Uint8Array.from(f32).buffer);
    const qw = importance.entries.get('blk.0.attn_v.weight')!;
    const want = concatBytes(Array.from({ length: 128 }, (_, r) => WEIGHTED.Q6_K(x.subarray(r * cols, (r + 1) * cols), qw)));
    expect(Uint8Array.from(await run({ importance }))).toEqual(want);
  });

  it('refuses in one line, leaving nothing, --dtype converting unmerged tensors, an imatrix of another model, and a broken file', async () => {
    const base = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_q.weight', rank: 4, in: cols, out: cols, aType: 'F32', bType: 'F32' }], 8);
    const dir = temp.make({
      ...base.files, 'lora.gguf': lora.bytes,
      'good.imatrix.gguf': imatrixGguf(entries(matrices)),
      'other.imatrix.gguf': imatrixGguf(entries([...matrices, 'blk.1.attn_q.weight'])),
      'broken.dat': imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 1, sums: [1, 2] }], false).subarray(0, 20),
      // "GGUF" and then version 0: the GGUF reader's refusal, said of the importance matrix.
      'version0.imatrix.gguf': imatrixGguf(entries(matrices)).map((b, i) => (i === 4 ? 0 : b)),
    });
    const cases: [string, RegExp, string[], number][] = [
      ['good.imatrix.gguf', /"blk\.0\.attn_k\.weight" is converted to Q4_K by --dtype without being merged, .*add --dtype-merged-only/, ['--dtype', 'q4_k'], 2],
      ['other.imatrix.gguf', /its entry "blk\.1\.attn_q\.weight" is no tensor of this model/, [], 2],
      ['broken.dat', /importance matrix .*broken\.dat: /, [], 1],
      ['version0.imatrix.gguf', new RegExp(`^error: importance matrix ${join(dir, 'version0.imatrix.gguf').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: unknown GGUF version 0$`), [], 1],
    ];
    for (const [file, message, extra, code] of cases) {
      const out = join(dir, `out-${file}.gguf`);
      const r = await runCli(['merge', '--base', join(dir, 'tiny-llama-Q4_K_M.gguf'), '--adapter', join(dir, 'lora.gguf'), '--imatrix', join(dir, file), '--out', out, '--backend', 'cpu', ...extra]);
      expect(r.code, file).toBe(code);
      const errors = errorLines(r.stderr);
      expect(errors, r.stderr).toHaveLength(1);
      expect(errors[0]).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  });
});
