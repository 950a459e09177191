/**
 * IQ2_XXS, IQ2_XS and IQ2_S written as `llama-quantize --imatrix` writes them (ggml-quants.c
 * quantize_iq2_xxs / quantize_iq2_xs / quantize_iq2_s with importance weights): golden blocks and a checksum of the grid map and neighbour tables from
 * ggml's own C (test/reference/ggml-iq2-golden.json, made by ggml-iq2-golden.mjs through
 * ggml-iq2-harness.c), met by the TypeScript quantizers and by the codecs (the WebAssembly encoder where it
 * compiles); `loramerge merge --imatrix` keeping a merged IQ2_XXS tensor in its type (or writing IQ2_XS / IQ2_S),
 * the same bytes on --backend webgpu (SwiftShader here; skipped where Node's webgpu finds no adapter)
 * as on --backend cpu, and the refusals without an imatrix (or without its entry for the tensor).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebGpuBackend } from '../src/engine/create-backend.js';
import { getNodeGpu } from '../src/engine/gpu/node-gpu.js';
import { encodeIq2SRow, encodeIq2XsRow, encodeIq2XxsRow, iq2STables, iq2XsTables, iq2XxsTables, type Iq2Tables } from '../src/formats/gguf/codecs/iq2-search.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { fittingType } from '../src/formats/gguf/quantize-rule.js';
import { errorLines, runCli } from './helpers/cli.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, typeName } from './helpers/gguf-builder.js';
import { encodeIq1SRow } from '../src/formats/gguf/codecs/iq1-search.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { gaussian } from './helpers/svd-reference.js';
import { codecWritesGolden, f32FromHex, fnv, hex, iqImatrixLlama, unweightedWritesGolden, type GoldenBlock } from './helpers/iq-low-golden.js';

interface Golden {
  tables: { IQ2_XXS: number; IQ2_XS: number; IQ2_S: number };
  blocks: (GoldenBlock & { IQ2_XXS: string | null; IQ2_XS: string | null; IQ2_S: string | null; IQ2_S_unweighted: string | null })[];
}
const GOLDEN = JSON.parse(readFileSync(new URL('./reference/ggml-iq2-golden.json', import.meta.url), 'utf8')) as Golden;

function encode(x: Float32Array, qw: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * 66);
  encodeIq2XxsRow(x, out, qw);
  return out;
}

describe('IQ2_S golden blocks from ggml-quants.c (with importance weights)', () => {
  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const qw = f32FromHex(b.qw);
    const encodeS = () => {
      const out = new Uint8Array(82);
      encodeIq2SRow(x, out, qw);
      return out;
    };
    if (b.IQ2_S === null) {
      expect(encodeS).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ2 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
    } else {
      expect(hex(encodeS())).toBe(b.IQ2_S);
    }
  });

  it('the grid map and neighbour lists are those iq2xs_init_impl builds (checksum of its dump)', () => {
    expect(fnv(dump(iq2STables(), 1024))).toBe(GOLDEN.tables.IQ2_S);
  });
});

describe('IQ2_S golden blocks from ggml-quants.c without importance weights (quant_weights NULL: weights σ²/4 + x², what llama-quantize runs for token_embd.weight and output.weight without an importance matrix)', () => {
  unweightedWritesGolden('IQ2_S', 82, GOLDEN.blocks, 'IQ2_S_unweighted', encodeIq2SRow);
});

describe('IQ2_XS golden blocks from ggml-quants.c (with importance weights)', () => {
  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const qw = f32FromHex(b.qw);
    const encodeXs = () => {
      const out = new Uint8Array(74);
      encodeIq2XsRow(x, out, qw);
      return out;
    };
    if (b.IQ2_XS === null) {
      expect(encodeXs).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ2 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
    } else {
      expect(hex(encodeXs())).toBe(b.IQ2_XS);
    }
  });

  it('the grid map and neighbour lists are those iq2xs_init_impl builds (checksum of its dump)', () => {
    expect(fnv(dump(iq2XsTables(), 512))).toBe(GOLDEN.tables.IQ2_XS);
  });
});

/** The harness's `tables` dump of our tables: grid entries as C's uint64 in hex, the map, the neighbour lists. */
function dump(t: Iq2Tables, size: number): string {
  const lines: string[] = [];
  for (let e = 0; e < size; e++) {
    let v = '';
    for (let i = 7; i >= 0; i--) v += (2 * t.levels[8 * e + i] + 1).toString(16).padStart(2, '0');
    lines.push(`g ${e} ${v}`);
  }
  for (let u = 0; u < 43692; u++) {
    const m = t.map[u];
    if (m >= 0) lines.push(`m ${u} ${m}`);
    else lines.push(`n ${u} ${Array.from(t.neighbours.subarray(-m - 1, -m + t.neighbours[-m - 1])).join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

describe('IQ2_XXS golden blocks from ggml-quants.c (with importance weights)', () => {
  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('%s', (_, b) => {
    const x = f32FromHex(b.x);
    const qw = f32FromHex(b.qw);
    if (b.IQ2_XXS === null) {
      // ggml stops (GGML_ASSERT / GGML_ABORT) on this block; so do we, saying what to do.
      expect(() => encode(x, qw)).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ2 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
    } else {
      expect(hex(encode(x, qw))).toBe(b.IQ2_XXS);
    }
  });

  it('a row of many blocks is its blocks one after another (σ² and weights per block)', () => {
    const ok = GOLDEN.blocks.filter((b) => b.IQ2_XXS !== null).slice(0, 6);
    const x = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => x.set(f32FromHex(b.x), i * 256));
    // quantize_iq2_xxs takes one weight per column of the row: here each block's own.
    const qw = new Float32Array(ok.length * 256);
    ok.forEach((b, i) => qw.set(f32FromHex(b.qw), i * 256));
    expect(hex(encode(x, qw))).toBe(ok.map((b) => b.IQ2_XXS).join(''));
  });

  it('the grid map and neighbour lists are those iq2xs_init_impl builds (checksum of its dump)', () => {
    expect(fnv(dump(iq2XxsTables(), 256))).toBe(GOLDEN.tables.IQ2_XXS);
  });
});

describe.each([['IQ2_XXS', 66], ['IQ2_XS', 74], ['IQ2_S', 82]] as const)('%s through its codec (the WebAssembly encoder where it compiles, else the TypeScript one)', (type, bytes) => {
  codecWritesGolden(type, bytes, GOLDEN.blocks, 'IQ2');
});

describe('loramerge merge --imatrix on an IQ2_XXS llama', () => {
  const rows = { v: 32, q: 16 };
  // A base whose IQ2_XXS blocks come from the quantizer itself (any valid blocks would do).
  const { v, q, files, merge, expected } = iqImatrixLlama({ type: 'IQ2_XXS', fileType: 19, bytes: 66, encodeRow: encodeIq2XxsRow, rows, seed: 77, blockSeeds: [5, 6], loraSeed: 9 });

  it('quantizes the merged tensor to IQ2_XXS with the weights, as quantize_iq2_xxs does, and copies the rest', async () => {
    const dir = files();
    const weighted = await merge(dir, 'weighted.gguf', '--imatrix', join(dir, 'both.imatrix.gguf'));
    expect(weighted.code, weighted.stderr).toBe(0);
    // The imatrix is read before the plan, so its warning says what happens, not "F16 unless".
    expect(weighted.stderr).toMatch(/^warning: \S*base\.gguf: the merged tensors \(1 IQ2_XXS: blk\.0\.attn_v\.weight\) are re-quantized to IQ2_XXS with the importance matrix \S*both\.imatrix\.gguf, as llama-quantize --imatrix quantizes them; requantizing adds the quantization error once more \(f16 or q8_0 keep more of the update\)$/m);
    expect(weighted.stderr).not.toMatch(/written as F16/);
    // The merged values before quantization: the same merge written as f32 for the merged tensor.
    const want = await expected(encodeIq2XxsRow, 66);
    const got = readGguf(readFileSync(join(dir, 'weighted.gguf')));
    expect(got.tensors.map((t) => typeName(t.typeId))).toEqual(['IQ2_XXS', 'IQ2_XXS']);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(want))).toBe(true);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(v))).toBe(false);
    expect(Buffer.from(got.tensors[1].data).equals(Buffer.from(q))).toBe(true);
    expect(got.metadata.get('general.file_type')!.value).toBe(19);
  });

  it.each([['IQ2_XS', 74, encodeIq2XsRow], ['IQ2_S', 82, encodeIq2SRow]] as const)('--dtype %s --dtype-merged-only --imatrix writes the merged tensor in that type, as ggml\'s quantizer does with the weights', async (type, bytes, encodeRow) => {
    const dir = files();
    const r = await merge(dir, 'xs.gguf', '--imatrix', join(dir, 'both.imatrix.gguf'), '--dtype', type.toLowerCase(), '--dtype-merged-only');
    expect(r.code, r.stderr).toBe(0);
    const want = await expected(encodeRow, bytes);
    const got = readGguf(readFileSync(join(dir, 'xs.gguf')));
    expect(got.tensors.map((t) => typeName(t.typeId))).toEqual([type, 'IQ2_XXS']);
    expect(Buffer.from(got.tensors[0].data).equals(Buffer.from(want))).toBe(true);
    expect(Buffer.from(got.tensors[1].data).equals(Buffer.from(q))).toBe(true);
  });

  // The WebGPU backend merges on the GPU and quantizes on the CPU: the merged values, and so the
  // weighted search's blocks, are the CPU backend's, byte for byte (SwiftShader in Node here).
  let gpu = false;
  beforeAll(async () => {
    const node = await getNodeGpu();
    try {
      (await createWebGpuBackend(node.gpu)).dispose();
      gpu = true;
    } catch (e) {
      if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
    } finally {
      node.dispose();
    }
  });
  it.for([['IQ2_XXS', []], ['IQ2_XS', ['--dtype', 'iq2_xs', '--dtype-merged-only']], ['IQ2_S', ['--dtype', 'iq2_s', '--dtype-merged-only']]] as const)('--imatrix on --backend webgpu writes the same %s bytes as on --backend cpu', async ([type, extra], ctx) => {
    if (!gpu) return ctx.skip();
    const dir = files();
    const imatrixArgs = ['--imatrix', join(dir, 'both.imatrix.gguf'), ...extra];
    const onCpu = await merge(dir, 'cpu.gguf', ...imatrixArgs);
    expect(onCpu.code, onCpu.stderr).toBe(0);
    const onGpu = await runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, 'gpu.gguf'), '--backend', 'webgpu', ...imatrixArgs]);
    expect(onGpu.code, onGpu.stderr).toBe(0);
    expect(onGpu.stderr).toMatch(/^backend: WebGPU: /m);
    const [c, g] = ['cpu.gguf', 'gpu.gguf'].map((f) => readGguf(readFileSync(join(dir, f))));
    expect(g.tensors.map((t) => typeName(t.typeId))).toEqual([type, 'IQ2_XXS']);
    expect(hex(g.tensors[0].data)).toBe(hex(c.tensors[0].data));
    expect(hex(g.tensors[1].data)).toBe(hex(q));
    expect(hex(g.tensors[0].data)).not.toBe(hex(v));
  });

  it('refuses --dtype iq2_xxs without --imatrix, and an imatrix without an entry for the merged tensor, in one line, leaving nothing', async () => {
    const dir = files();
    const cases: [string[], RegExp][] = [
      [['--dtype', 'iq2_xxs'], /^error: --dtype iq2_xxs: IQ2_XXS is written only with an importance matrix: ggml's IQ2_XXS quantizer requires one, and llama-quantize refuses IQ2_XXS without --imatrix; give --imatrix FILE \(made by llama-imatrix for this model\), or choose another --dtype$/],
      [['--imatrix', join(dir, 'q-only.imatrix.gguf')], /"blk\.0\.attn_v\.weight" is written as IQ2_XXS, which is quantized only with importance weights, and this importance matrix has no entry for it \(llama-quantize stops there too: "Missing importance matrix for tensor"\)/],
    ];
    for (const [extra, message] of cases) {
      const r = await merge(dir, 'out.gguf', ...extra);
      expect(r.code, r.stderr).toBe(2);
      const errors = errorLines(r.stderr);
      expect(errors, r.stderr).toHaveLength(1);
      expect(errors[0]).toMatch(message);
      expect(existsSync(join(dir, 'out.gguf'))).toBe(false);
    }
  });
});

describe('rows that are not whole 256-value blocks', () => {
  it("take llama-quantize's fallback (tensor_type_fallback) for the IQ1 and IQ2 types too: IQ4_NL, then F16", () => {
    for (const name of ['IQ1_S', 'IQ1_M', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S']) {
      expect(fittingType(name, 512), name).toBe(name);
      expect(fittingType(name, 160), name).toBe('IQ4_NL');
      expect(fittingType(name, 100), name).toBe('F16');
    }
  });
});

describe('loramerge merge without --imatrix on a llama whose token_embd, output and attn_v are IQ2_S', () => {
  // llama-quant.cpp's tensor_requires_imatrix exempts token_embd.weight and output.weight (and
  // per_layer_token_embd.weight), and ggml's quantize_iq2_s runs without weights (σ²/4 + x²), so
  // llama-quantize writes those two IQ2_S with no importance matrix; attn_v it refuses
  // ("Missing importance matrix for tensor"), and loramerge writes the merged attn_v F16.
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const [h, vocab] = [256, 16];
  const blocks = (n: number, seed: number) => {
    const r = seededRandom(seed);
    const x = Float32Array.from({ length: 256 * n }, () => 0.02 * gaussian(r));
    const out = new Uint8Array(82 * n);
    encodeIq2SRow(x, out, new Float32Array(256 * n).fill(1));
    return out;
  };
  const names = ['token_embd.weight', 'blk.0.attn_v.weight', 'output.weight'];
  const data = names.map((_, i) => blocks(vocab, 50 + i));
  const base = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 28 }]],
    tensors: names.map((name, i) => ({ name, type: 'IQ2_S', ne: [h, vocab], data: data[i] })),
  });
  const lora = ggufLoraAdapter([
    { tensor: 'token_embd.weight', rank: 2, in: vocab, out: h, aType: 'F32', bType: 'F32' },
    { tensor: 'blk.0.attn_v.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
    { tensor: 'output.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
  ], 2, 12);

  it('writes the merged token_embd and output IQ2_S as quantize_iq2_s does without weights, the merged attn_v F16; with an imatrix lacking token_embd, token_embd without weights and the others with theirs', async () => {
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes });
    const merge = (out: string, ...extra: string[]) => runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, out), '--backend', 'cpu', ...extra]);
    // The merged values before quantization: the same merge written as f32.
    const f32 = await merge('f32.gguf', '--dtype', 'f32');
    expect(f32.code, f32.stderr).toBe(0);
    const values = readGguf(readFileSync(join(dir, 'f32.gguf'))).tensors;
    const r = await merge('m.gguf');
    expect(r.code, r.stderr).toBe(0);
    const got = readGguf(readFileSync(join(dir, 'm.gguf')));
    expect(got.tensors.map((t) => [t.name, typeName(t.typeId)])).toEqual([['token_embd.weight', 'IQ2_S'], ['blk.0.attn_v.weight', 'F16'], ['output.weight', 'IQ2_S']]);
    for (const i of [0, 2]) {
      const x = new Float32Array(Uint8Array.from(values[i].data).buffer);
      const want = new Uint8Array(82 * vocab);
      encodeIq2SRow(x, want, undefined);
      expect(Buffer.from(got.tensors[i].data).equals(Buffer.from(want)), names[i]).toBe(true);
      expect(Buffer.from(got.tensors[i].data).equals(Buffer.from(data[i])), `${names[i]} changed`).toBe(false);
      // Not the bytes of the weighted search with weights 1 (the unweighted weights are used).
      const ones = new Uint8Array(82 * vocab);
      encodeIq2SRow(x, ones, new Float32Array(256 * vocab).fill(1));
      expect(Buffer.from(got.tensors[i].data).equals(Buffer.from(ones)), `${names[i]} weighted`).toBe(false);
    }
    expect(r.stderr).toContain('(1 IQ2_S: blk.0.attn_v.weight) are written as F16');

    // With an imatrix holding attn_v and output but not token_embd (llama-imatrix's usual file):
    // token_embd without weights (llama-quantize: "did not find weights", then quant_weights NULL),
    // attn_v and output with the entry's weights (in_sum2 / counts in f32).
    const sums = Array.from({ length: 256 }, (_, i) => 1 + (i % 7));
    writeFileSync(join(dir, 'im.gguf'), buildGguf({
      metadata: [['general.type', { type: 'string', value: 'imatrix' }], ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }], ['imatrix.chunk_count', { type: 'u32', value: 10 }], ['imatrix.chunk_size', { type: 'u32', value: 512 }]],
      tensors: ['blk.0.attn_v.weight', 'output.weight'].flatMap((name) => [
        { name: `${name}.in_sum2`, type: 'F32', ne: [256, 1], data: tensorData('F32', sums) },
        { name: `${name}.counts`, type: 'F32', ne: [1, 1], data: tensorData('F32', [10]) },
      ]),
    }));
    const w = await merge('w.gguf', '--imatrix', join(dir, 'im.gguf'));
    expect(w.code, w.stderr).toBe(0);
    const weighted = readGguf(readFileSync(join(dir, 'w.gguf'))).tensors;
    expect(weighted.map((t) => typeName(t.typeId))).toEqual(['IQ2_S', 'IQ2_S', 'IQ2_S']);
    const qw = new Float32Array(256 * vocab).map((_, i) => Math.fround(sums[i % 256] / 10));
    for (const [i, weights] of [[0, undefined], [1, qw], [2, qw]] as const) {
      const x = new Float32Array(Uint8Array.from(values[i].data).buffer);
      const want = new Uint8Array(82 * vocab);
      encodeIq2SRow(x, want, weights);
      expect(Buffer.from(weighted[i].data).equals(Buffer.from(want)), names[i]).toBe(true);
    }
  });
});

describe.each([['IQ2_XXS', 66, encodeIq2XxsRow, 19], ['IQ2_XS', 74, encodeIq2XsRow, 20], ['IQ1_S', 50, encodeIq1SRow, 24]] as const)('loramerge merge on a llama whose token_embd, output and attn_v are %s (no quantizer without weights)', (type, bytes, encodeRow, fileType) => {
  // tensor_requires_imatrix exempts token_embd.weight and output.weight, so llama-quantize runs
  // ggml's quantizer on them without weights even with an imatrix that lacks them, and
  // quantize_iq2_xxs / quantize_iq2_xs / quantize_iq1_s abort there (GGML_ASSERT(quant_weights)).
  const temp = tempDirs();
  afterAll(() => temp.removeAll());
  const [h, vocab] = [256, 16];
  const names = ['token_embd.weight', 'blk.0.attn_v.weight', 'output.weight'];
  const data = names.map((_, i) => {
    const r = seededRandom(60 + i);
    const x = Float32Array.from({ length: 256 * vocab }, () => 0.02 * gaussian(r));
    const out = new Uint8Array(bytes * vocab);
    encodeRow(x, out, new Float32Array(x.length).fill(1));
    return out;
  });
  const base = buildGguf({
    metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: fileType }]],
    tensors: names.map((name, i) => ({ name, type, ne: [h, vocab], data: data[i] })),
  });
  const lora = ggufLoraAdapter([
    { tensor: 'token_embd.weight', rank: 2, in: vocab, out: h, aType: 'F32', bType: 'F32' },
    { tensor: 'blk.0.attn_v.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
    { tensor: 'output.weight', rank: 2, in: h, out: vocab, aType: 'F32', bType: 'F32' },
  ], 2, 13);
  // llama-imatrix's file: entries for the matrix multiplications (attn_v, output), none for token_embd (a row lookup).
  const imatrix = buildGguf({
    metadata: [['general.type', { type: 'string', value: 'imatrix' }], ['imatrix.datasets', { type: 'array', itemType: 'string', value: ['calibration_datav3.txt'] }], ['imatrix.chunk_count', { type: 'u32', value: 10 }], ['imatrix.chunk_size', { type: 'u32', value: 512 }]],
    tensors: ['blk.0.attn_v.weight', 'output.weight'].flatMap((name) => [
      { name: `${name}.in_sum2`, type: 'F32', ne: [256, 1], data: tensorData('F32', Array.from({ length: 256 }, (_, i) => 1 + (i % 7))) },
      { name: `${name}.counts`, type: 'F32', ne: [1, 1], data: tensorData('F32', [10]) },
    ]),
  });

  it('without --imatrix the three merged tensors are F16, as every merged tensor of the type; with an imatrix lacking token_embd the merge is refused naming it, leaving nothing', async () => {
    const dir = temp.make({ 'base.gguf': base, 'lora.gguf': lora.bytes, 'im.gguf': imatrix });
    const merge = (out: string, ...extra: string[]) => runCli(['merge', '--base', join(dir, 'base.gguf'), '--adapter', join(dir, 'lora.gguf'), '--out', join(dir, out), '--backend', 'cpu', ...extra]);
    const plain = await merge('plain.gguf');
    expect(plain.code, plain.stderr).toBe(0);
    expect(readGguf(readFileSync(join(dir, 'plain.gguf'))).tensors.map((t) => [t.name, typeName(t.typeId)])).toEqual(names.map((n) => [n, 'F16']));
    const r = await merge('out.gguf', '--imatrix', join(dir, 'im.gguf'));
    expect(r.code, r.stderr).toBe(2);
    const errors = errorLines(r.stderr);
    expect(errors, r.stderr).toHaveLength(1);
    expect(errors[0]).toContain(`"token_embd.weight" is written as ${type}, which is quantized only with importance weights, and this importance matrix has no entry for it (llama-quantize stops there too: it exempts token_embd.weight from its importance matrix check, and ggml's ${type} quantizer then aborts ("missing quantization weights"))`);
    expect(existsSync(join(dir, 'out.gguf'))).toBe(false);
  });
});
