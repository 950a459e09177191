/**
 * IQ1_S and IQ1_M written as `llama-quantize --imatrix` writes them (ggml-quants.c quantize_iq1_s /
 * quantize_iq1_m with importance weights): golden blocks and a checksum of the grid map and
 * neighbour tables from ggml's own C (test/reference/ggml-iq1-golden.json, made by
 * ggml-iq1-golden.mjs through ggml-iq1-harness.c), met by the TypeScript quantizers and by the codecs (the
 * WebAssembly encoder where it compiles); `loramerge merge --imatrix` keeping a merged
 * IQ1_S tensor in its type (or writing IQ1_M), F16 without an imatrix, and IQ1_M's f16 d (spread
 * over its scales' top nibbles) checked for overflow like any block scale.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeIq1MRow, encodeIq1SRow, iq1Tables } from '../src/formats/gguf/codecs/iq1-search.js';
import { nonFiniteBlockValues, zeroedBlockValues } from '../src/formats/gguf/block-scales.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { runCli } from './helpers/cli.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { gaussian } from './helpers/svd-reference.js';
import { codecWritesGolden, f32FromHex, fnv, hex, iqImatrixLlama, unweightedWritesGolden, type GoldenBlock } from './helpers/iq-low-golden.js';

interface Golden {
  tables: number;
  blocks: (GoldenBlock & { IQ1_S: string | null; IQ1_M: string | null; IQ1_M_unweighted: string | null })[];
}
const GOLDEN = JSON.parse(readFileSync(new URL('./reference/ggml-iq1-golden.json', import.meta.url), 'utf8')) as Golden;

const ENCODERS = { IQ1_S: [encodeIq1SRow, 50], IQ1_M: [encodeIq1MRow, 56] } as const;

function encode(type: keyof typeof ENCODERS, x: Float32Array, qw: Float32Array): Uint8Array {
  const [row, bytes] = ENCODERS[type];
  const out = new Uint8Array((x.length / 256) * bytes);
  row(x, out, qw);
  return out;
}

describe.each(['IQ1_S', 'IQ1_M'] as const)('%s golden blocks from ggml-quants.c (with importance weights)', (type) => {
  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const qw = f32FromHex(b.qw);
    const want = b[type];
    if (want === null) {
      // ggml stops (GGML_ASSERT) on this block; so do we, saying what to do.
      expect(() => encode(type, x, qw)).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ1 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
    } else {
      expect(hex(encode(type, x, qw))).toBe(want);
    }
  });

  it('a row of many blocks is its blocks one after another (σ² and weights per block)', () => {
    const ok = GOLDEN.blocks.filter((b) => b[type] !== null).slice(0, 6);
    const x = new Float32Array(ok.length * 256);
    const qw = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => {
      x.set(f32FromHex(b.x), i * 256);
      qw.set(f32FromHex(b.qw), i * 256);
    });
    expect(hex(encode(type, x, qw))).toBe(ok.map((b) => b[type]).join(''));
  });
});

describe('IQ1_M golden blocks from ggml-quants.c without importance weights (quant_weights NULL: x² weights, what llama-quantize runs for token_embd.weight and output.weight without an importance matrix)', () => {
  unweightedWritesGolden('IQ1_M', 56, GOLDEN.blocks, 'IQ1_M_unweighted', encodeIq1MRow);
});

describe.each(['IQ1_S', 'IQ1_M'] as const)('%s through its codec (the WebAssembly encoder where it compiles, else the TypeScript one)', (type) => {
  codecWritesGolden(type, ENCODERS[type][1], GOLDEN.blocks, 'IQ1');
});

describe('the IQ1 search tables', () => {
  it('are those iq2xs_init_impl builds for IQ1_S and IQ1_M (checksum of its dump: grid, map, neighbours at the 3 nearest distances)', () => {
    const t = iq1Tables();
    const lines: string[] = [];
    for (let e = 0; e < 2048; e++) {
      let v = '';
      for (let i = 7; i >= 0; i--) v += (2 * t.levels[8 * e + i] + 1).toString(16).padStart(2, '0');
      lines.push(`g ${e} ${v}`);
    }
    for (let u = 0; u < 43692; u++) {
      const m = t.map[u];
      if (m >= 0) lines.push(`m ${u} ${m}`);
      else lines.push(`n ${u} ${Array.from(t.neighbours.subarray(-m - 1, -m + t.neighbours[-m - 1])).join(' ')}`);
    }
    expect(fnv(lines.join('\n') + '\n')).toBe(GOLDEN.tables);
  });
});

describe('IQ1_M block scales', () => {
  const type = ggmlTypeByName('IQ1_M')!;
  it('an f16 d that overflowed (values of 1e8, ggml writes Inf) is found in the scales\' top nibbles; a zero d in a block of large values too', () => {
    const big = GOLDEN.blocks.find((b) => b.name.startsWith('1e8'))!;
    const bytes = Uint8Array.from(Buffer.from(big.IQ1_M!, 'hex'));
    // d = top nibbles of the u16 scales at 48, 50, 52, 54 (first lowest): 0x7c00 is +Inf.
    const d = (bytes[49] >> 4) | (bytes[51] & 0xf0) | ((bytes[53] & 0xf0) << 4) | ((bytes[55] & 0xf0) << 8);
    expect(d & 0x7c00).toBe(0x7c00);
    expect(nonFiniteBlockValues(type, bytes)).toBe(256);
    const fine = Uint8Array.from(Buffer.from(GOLDEN.blocks.find((b) => b.name === 'gaussian (σ 1)')!.IQ1_M!, 'hex'));
    expect(nonFiniteBlockValues(type, fine)).toBe(0);
    const zeroD = fine.slice();
    for (const at of [49, 51, 53, 55]) zeroD[at] &= 0x0f;
    expect(zeroedBlockValues(type, zeroD, new Float32Array(256).fill(2))).toBe(256);
    expect(zeroedBlockValues(type, fine, new Float32Array(256).fill(2))).toBe(0);
  });
});

describe('loramerge merge --imatrix on an IQ1_S llama', () => {
  const rows = { v: 16, q: 8 };
  // A base whose IQ1_S blocks come from the quantizer itself (any valid blocks would do).
  const { v, q, files, merge, expected } = iqImatrixLlama({ type: 'IQ1_S', fileType: 24, bytes: 50, encodeRow: encodeIq1SRow, rows, seed: 78, blockSeeds: [7, 8], loraSeed: 10 });

  it('quantizes the merged tensor to IQ1_S with the weights, as quantize_iq1_s does, and copies the rest; without --imatrix it is F16', async () => {
    const dir = files();
    const weighted = await merge(dir, 'weighted.gguf', '--imatrix', join(dir, 'both.imatrix.gguf'));
    expect(weighted.code, weighted.stderr).toBe(0);
    const want = await expected(encodeIq1SRow, 50);
    const got = readGguf(readFileSync(join(dir, 'weighted.gguf')));
    expect(got.tensors.map((t) => typeName(t.typeId))).toEqual(['IQ1_S', 'IQ1_S']);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(want))).toBe(true);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(v))).toBe(false);
    expect(Buffer.from(got.tensors[1].data).equals(Buffer.from(q))).toBe(true);
    expect(got.metadata.get('general.file_type')!.value).toBe(24);

    const plain = await merge(dir, 'plain.gguf');
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toContain('the merged tensors (1 IQ1_S: blk.0.attn_v.weight) are written as F16, as llama.cpp\'s export-lora writes a merged tensor, unless an importance matrix is given (--imatrix): llama-quantize writes IQ1_S only with one, and with one loramerge quantizes it to IQ1_S as llama-quantize --imatrix does');
    expect(readGguf(readFileSync(join(dir, 'plain.gguf'))).tensors.map((t) => typeName(t.typeId))).toEqual(['F16', 'IQ1_S']);
  });

  it('--dtype iq1_m --dtype-merged-only --imatrix writes the merged tensor in IQ1_M, as quantize_iq1_m does with the weights', async () => {
    const dir = files();
    const r = await merge(dir, 'm.gguf', '--imatrix', join(dir, 'both.imatrix.gguf'), '--dtype', 'iq1_m', '--dtype-merged-only');
    expect(r.code, r.stderr).toBe(0);
    const want = await expected(encodeIq1MRow, 56);
    const got = readGguf(readFileSync(join(dir, 'm.gguf')));
    expect(got.tensors.map((t) => typeName(t.typeId))).toEqual(['IQ1_M', 'IQ1_S']);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(want))).toBe(true);
    expect(Buffer.from(got.tensors[1].data).equals(Buffer.from(q))).toBe(true);
  });
});

describe('loramerge merge without --imatrix on a llama whose token_embd, output and attn_v are IQ1_M', () => {
  // llama-quant.cpp's tensor_requires_imatrix exempts token_embd.weight and output.weight (and
  // per_layer_token_embd.weight), and ggml's quantize_iq1_m runs without weights (x²), so
  // llama-quantize writes those two IQ1_M with no importance matrix; attn_v it refuses
  // ("Missing importance matrix for tensor"), and loramerge writes the merged attn_v F16.
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const [h, vocab] = [256, 16];
  const blocks = (n: number, seed: number) => {
    const r = seededRandom(seed);
    const x = Float32Array.from({ length: 256 * n }, () => 0.02 * gaussian(r));
    return encode('IQ1_M', x, new Float32Array(256 * n).fill(1));
  };
  const names = ['token_embd.weight', 'blk.0.attn_v.weight', 'output.weight'];
  const data = names.map((_, i) => blocks(vocab, 40 + i));
  const base = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 31 }]],
    tensors: names.map((name, i) => ({ name, type: 'IQ1_M', ne: [h, vocab], data: data[i] })),
  });
  const lora = ggufLoraAdapter([
    { tensor: 'token_embd.weight', rank: 2, in: vocab, out: h, aType: 'F32', bType: 'F32' },
    { tensor: 'blk.0.attn_v.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
    { tensor: 'output.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
  ], 2, 11);

  it('writes the merged token_embd and output IQ1_M as quantize_iq1_m does without weights, the merged attn_v F16', async () => {
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes });
    const merge = (out: string, ...extra: string[]) => runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, out), '--backend', 'cpu', ...extra]);
    // The merged values before quantization: the same merge written as f32.
    const f32 = await merge('f32.gguf', '--dtype', 'f32');
    expect(f32.code, f32.stderr).toBe(0);
    const values = readGguf(readFileSync(join(dir, 'f32.gguf'))).tensors;
    const r = await merge('m.gguf');
    expect(r.code, r.stderr).toBe(0);
    const got = readGguf(readFileSync(join(dir, 'm.gguf')));
    expect(got.tensors.map((t) => [t.name, typeName(t.typeId)])).toEqual([['token_embd.weight', 'IQ1_M'], ['blk.0.attn_v.weight', 'F16'], ['output.weight', 'IQ1_M']]);
    for (const i of [0, 2]) {
      const x = new Float32Array(Uint8Array.from(values[i].data).buffer);
      const want = new Uint8Array(56 * vocab);
      encodeIq1MRow(x, want, undefined);
      expect(Buffer.from(got.tensors[i].data).equals(Buffer.from(want)), names[i]).toBe(true);
      expect(Buffer.from(got.tensors[i].data).equals(Buffer.from(data[i])), `${names[i]} changed`).toBe(false);
    }
    expect(r.stderr).toContain('(1 IQ1_M: blk.0.attn_v.weight) are written as F16');
  });
});
