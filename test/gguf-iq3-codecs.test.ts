/**
 * IQ3_XXS and IQ3_S written as llama-quantize writes them without an importance matrix
 * (ggml-quants.c quantize_iq3_xxs / quantize_iq3_s with quant_weights = NULL): golden blocks and
 * a checksum of the grid map and neighbour tables from ggml's own C (test/reference/
 * ggml-iq3-golden.json, made by ggml-iq3-golden.mjs through ggml-iq3-harness.c), what the blocks
 * decode to, the --dtype rules, merges that keep the IQ3 types on the CPU and on WebGPU, and the
 * refusal to write IQ1/IQ2.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { iq3Tables } from '../src/formats/gguf/codecs/iq3-search.js';
import { iqGrid, KSIGNS } from '../src/formats/gguf/codecs/iq-grids.js';
import { blockCodec, blockDecoder, CODEC_TYPE_NAMES, PLAIN_CODEC_TYPE_NAMES } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { convertTensorBytes } from '../src/formats/gguf/gguf-convert.js';
import { fittingType } from '../src/formats/gguf/quantize-rule.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { seededRandom } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName, type FixtureTensor } from './helpers/gguf-builder.js';
import { dequantizeIq3sBlock, iq3sTables, quantizeIq3sBlock } from './helpers/ggml-iq3s-reference.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { gaussian } from './helpers/svd-reference.js';

type Iq3 = 'IQ3_XXS' | 'IQ3_S';
const BYTES: Record<Iq3, number> = { IQ3_XXS: 98, IQ3_S: 110 };

interface Golden {
  tables: Record<Iq3, number>;
  blocks: { name: string; x: string; IQ3_XXS: string | null; IQ3_S: string | null }[];
}
const GOLDEN = JSON.parse(readFileSync(new URL('./reference/ggml-iq3-golden.json', import.meta.url), 'utf8')) as Golden;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const f32FromHex = (h: string) => new Float32Array(new Uint8Array(Buffer.from(h, 'hex')).buffer);

function encode(name: Iq3, x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 256) * BYTES[name]);
  blockCodec(ggmlTypeByName(name)!)!.encode(x, out);
  return out;
}

function decode(name: string, bytes: Uint8Array): Float32Array {
  const type = ggmlTypeByName(name)!;
  const out = new Float32Array((bytes.length / type.blockBytes) * type.blockSize);
  blockDecoder(type)!.decode(bytes, out);
  return out;
}

/** FNV-1a of a text (as the golden script hashes the harness's table dump). */
function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

describe('golden blocks from ggml-quants.c (no importance matrix)', () => {
  for (const name of ['IQ3_XXS', 'IQ3_S'] as const) {
    it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))(`${name}: %s`, (_, b) => {
      const x = f32FromHex(b.x);
      const want = b[name];
      if (want === null) {
        // ggml stops (GGML_ASSERT) on this block; so do we, with an error saying what to do.
        expect(() => encode(name, x)).toThrow(expect.objectContaining({ code: 'NON_FINITE', message: expect.stringMatching(/IQ3 block.*llama-quantize cannot write them either; choose --dtype f16/) }));
      } else {
        expect(hex(encode(name, x))).toBe(want);
      }
    });
  }

  it('the grid map and neighbour lists are those iq3xs_init_impl builds (checksum of its dump)', () => {
    for (const [name, size] of [['IQ3_XXS', 256], ['IQ3_S', 512]] as const) {
      const t = iq3Tables(name);
      const lines: string[] = [];
      for (let e = 0; e < size; e++) {
        let v = 0;
        for (let i = 0; i < 4; i++) v |= (2 * t.levels[4 * e + i] + 1) << (8 * i);
        lines.push(`g ${e} ${(v >>> 0).toString(16).padStart(8, '0')}`);
      }
      for (let u = 0; u < 4096; u++) {
        const m = t.map[u];
        if (m >= 0) lines.push(`m ${u} ${m}`);
        else lines.push(`n ${u} ${Array.from(t.neighbours.subarray(-m - 1, -m + t.neighbours[-m - 1])).join(' ')}`);
      }
      expect(fnv(lines.join('\n') + '\n'), name).toBe(GOLDEN.tables[name]);
    }
  });
});

// The tests' own IQ3_S quantizer (helpers/ggml-iq3s-reference.ts, written apart from src/) is the
// truth the surface fuzzer's gguf-type-mixes world checks IQ3_S tensors against: it must be ggml's.
describe('the tests\' IQ3_S reference quantizer against ggml-quants.c', () => {
  it('builds iq3xs_init_impl(512)\'s map and neighbour lists (checksum of ggml\'s dump)', () => {
    const t = iq3sTables();
    const lines: string[] = [];
    for (let e = 0; e < 512; e++) {
      let v = 0;
      for (let i = 0; i < 4; i++) v |= t.grid[4 * e + i] << (8 * i);
      lines.push(`g ${e} ${(v >>> 0).toString(16).padStart(8, '0')}`);
    }
    for (let u = 0; u < 4096; u++) {
      const list = t.neighbours.get(u);
      lines.push(t.map[u] >= 0 ? `m ${u} ${t.map[u]}` : `n ${u} ${[list!.length, ...list!].join(' ')}`);
    }
    expect(fnv(lines.join('\n') + '\n')).toBe(GOLDEN.tables.IQ3_S);
  });

  it.each(GOLDEN.blocks.map((b) => [b.name, b] as const))('writes ggml\'s block: %s', (_, b) => {
    const x = f32FromHex(b.x);
    if (b.IQ3_S === null) {
      expect(() => quantizeIq3sBlock(x)).toThrow(/ggml aborts/);
      return;
    }
    const got = quantizeIq3sBlock(x);
    expect(hex(got)).toBe(b.IQ3_S);
    // Its dequantizer reads the layout as the plain reading below does (which takes a finite d).
    if (((got[1] >> 2) & 31) !== 31) expect(dequantizeIq3sBlock(got)).toEqual(Array.from({ length: 256 }, (_, i) => plainValue('IQ3_S', got, i)));
  });
});

/** The value at i of an IQ3 block as ggml-common.h lays it out and dequantize_row_iq3_* computes it, read plainly. */
function plainValue(name: Iq3, b: Uint8Array, i: number): number {
  const F = Math.fround;
  const d = Number(new DataView(b.buffer, b.byteOffset).getUint16(0, true));
  const half = (h: number) => (((h >> 10) & 31) === 0 ? (h & 1023) * 2 ** -24 : (1 + (h & 1023) / 1024) * 2 ** (((h >> 10) & 31) - 15)) * (h & 0x8000 ? -1 : 1);
  const ib = i >> 5;
  const l = (i >> 3) & 3;
  const j = i & 7;
  if (name === 'IQ3_XXS') {
    const aux = new DataView(b.buffer, b.byteOffset).getUint32(66 + 4 * ib, true);
    const db = F(F(half(d) * F(0.5 + (aux >>> 28))) * 0.5);
    const entry = b[2 + 8 * ib + 2 * l + (j >> 2)];
    const sign = KSIGNS[(aux >>> (7 * l)) & 127] & (1 << j) ? -1 : 1;
    return F(F(db * iqGrid('IQ3XXS')[4 * entry + (j & 3)]) * sign);
  }
  const sc = b[106 + (ib >> 1)];
  const db = F(half(d) * (1 + 2 * (ib & 1 ? sc >> 4 : sc & 15)));
  const entry = b[2 + 8 * ib + 2 * l + (j >> 2)] | (((b[66 + ib] >> (2 * l + (j >> 2))) & 1) << 8);
  const sign = (b[74 + 4 * ib + l] >> j) & 1 ? -1 : 1;
  return F(F(db * iqGrid('IQ3S')[4 * entry + (j & 3)]) * sign);
}

describe('what the blocks decode to', () => {
  const rand = seededRandom(5);
  const x = Float32Array.from({ length: 256 * 32 }, () => 0.02 * gaussian(rand));

  it.each(['IQ3_XXS', 'IQ3_S'] as const)('%s: decode(encode(x)) is the layout read plainly, close to x, with x\'s signs', (name) => {
    const bytes = encode(name, x);
    const y = decode(name, bytes);
    let err = 0;
    let norm = 0;
    let flipped = 0;
    for (let i = 0; i < x.length; i++) {
      const b = i >> 8;
      expect(y[i]).toBe(plainValue(name, bytes.subarray(b * BYTES[name], (b + 1) * BYTES[name]), i & 255));
      err += (y[i] - x[i]) ** 2;
      norm += x[i] ** 2;
      if (y[i] * x[i] < 0) flipped++;
    }
    // 3.06 (IQ3_XXS) and 3.44 (IQ3_S) bits per weight on gaussian values: about a fifth of the RMS.
    expect(Math.sqrt(err / norm)).toBeLessThan(name === 'IQ3_XXS' ? 0.22 : 0.2);
    // IQ3_S stores every sign; IQ3_XXS gives up at most one per 8 values (an odd count of negatives).
    if (name === 'IQ3_S') expect(flipped).toBe(0);
    else expect(flipped).toBeLessThanOrEqual(x.length / 8);
  });
});

describe('--dtype iq3_xxs and iq3_s', () => {
  it('both are written and offered (the IQ1 and IQ2 types only with an imatrix: gguf-iq1-codecs.test.ts, gguf-iq2-codecs.test.ts)', () => {
    for (const name of ['IQ3_XXS', 'IQ3_S']) expect(PLAIN_CODEC_TYPE_NAMES).toContain(name);
    for (const name of ['IQ1_S', 'IQ1_M', 'IQ2_XXS']) expect(CODEC_TYPE_NAMES).toContain(name);
    for (const name of ['IQ1_S', 'IQ1_M', 'IQ2_XXS']) expect(PLAIN_CODEC_TYPE_NAMES).not.toContain(name);
  });

  it('llama-quantize\'s fallback where a row is not whole blocks: IQ3 → IQ4_NL → F16', () => {
    for (const name of ['IQ3_XXS', 'IQ3_S']) {
      expect(fittingType(name, 512)).toBe(name);
      expect(fittingType(name, 96)).toBe('IQ4_NL');
      expect(fittingType(name, 100)).toBe('F16');
    }
  });

  it('converting NaN or Inf to IQ3 is refused (ggml\'s quantizer stops on most such blocks)', async () => {
    const values = Float32Array.from({ length: 256 }, (_, i) => i / 256);
    for (const bad of [NaN, Infinity]) {
      values[9] = bad;
      for (const to of ['IQ3_XXS', 'IQ3_S']) {
        await expect(convertTensorBytes(new Uint8Array(values.buffer), ggmlTypeByName('F32')!, ggmlTypeByName(to)!)).rejects.toMatchObject({
          code: 'NON_FINITE', message: expect.stringMatching(new RegExp(`NaN or Inf, which ${to} blocks cannot store \\(ggml's quantizer would stop on most blocks holding them\\).*choose f16, bf16 or f32`)),
        });
      }
    }
  });
});

const backends = mergeBackends({ cpu: 'default' });

/**
 * A llama.cpp LoRA (convert_lora_to_gguf layout, α = r) whose factors are multiples of 2⁻⁸ below
 * 2⁻³: every product and sum of B·A is exact in f32, so the merged f32 values are the float64
 * merge rounded once, and the written blocks can be compared byte for byte with the encoder's.
 */
function exactLora(targets: { tensor: string; in: number; out: number }[], rank: number, seed: number) {
  const rand = seededRandom(seed);
  const grid = () => Math.round(gaussian(rand) * 8) / 256;
  const tensors: FixtureTensor[] = [];
  const factors = new Map<string, { a: Float64Array; b: Float64Array }>();
  for (const t of targets) {
    const a = Float64Array.from({ length: rank * t.in }, grid); // (r, in), ne [in, r]
    const b = Float64Array.from({ length: t.out * rank }, grid); // (out, r), ne [r, out]
    factors.set(t.tensor, { a, b });
    tensors.push({ name: `${t.tensor}.lora_a`, type: 'F32', ne: [t.in, rank], data: tensorData('F32', a) });
    tensors.push({ name: `${t.tensor}.lora_b`, type: 'F32', ne: [rank, t.out], data: tensorData('F32', b) });
  }
  const bytes = buildGguf({
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }], ['general.type', { type: 'string', value: 'adapter' }],
      ['adapter.type', { type: 'string', value: 'lora' }], ['adapter.lora.alpha', { type: 'f32', value: rank }],
    ],
    tensors,
  });
  /** W + B·A in float64 (scale α/r = 1). */
  const merge = (tensor: string, w: ArrayLike<number>, cols: number) => {
    const { a, b } = factors.get(tensor)!;
    return Float64Array.from({ length: w.length }, (_, i) => {
      const o = Math.floor(i / cols);
      const c = i % cols;
      let s = 0;
      for (let k = 0; k < rank; k++) s += b[o * rank + k] * a[k * cols + c];
      return w[i] + s;
    });
  };
  return { bytes, merge };
}

/** IQ3 blocks of 0.02·gaussian values, as a quantized model's. */
function iq3Tensor(name: Iq3, count: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  return encode(name, Float32Array.from({ length: count }, () => 0.02 * gaussian(rand)));
}

const llamaMeta = (fileType: number): [string, { type: 'string'; value: string } | { type: 'u32'; value: number }][] => [
  ['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: fileType }],
];

describe.each(['cpu', 'webgpu'])('a llama.cpp LoRA merged into IQ3_XXS and IQ3_S tensors, an IQ3_M file (%s)', (backendName) => {
  const q = iq3Tensor('IQ3_XXS', 256 * 32, 11);
  const up = iq3Tensor('IQ3_S', 512 * 16, 12);
  const k = iq3Tensor('IQ3_S', 256 * 16, 13);
  const norm = tensorData('F32', new Float64Array(256).fill(1));
  const base = {
    'iq3_m.gguf': buildGguf({
      metadata: llamaMeta(27), // LLAMA_FTYPE_MOSTLY_IQ3_M
      tensors: [
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [256], data: norm },
        { name: 'blk.0.attn_q.weight', type: 'IQ3_XXS', ne: [256, 32], data: q },
        { name: 'blk.0.attn_k.weight', type: 'IQ3_S', ne: [256, 16], data: k },
        { name: 'blk.0.ffn_up.weight', type: 'IQ3_S', ne: [512, 16], data: up },
      ],
    }),
  };
  const lora = exactLora([{ tensor: 'blk.0.attn_q.weight', in: 256, out: 32 }, { tensor: 'blk.0.ffn_up.weight', in: 512, out: 16 }], 4, 31);

  it('keeps each type: the blocks ggml writes for the float64 merge, untouched tensors byte-copied', async (ctx) => {
    const backend = backends[backendName];
    if (!backend) return ctx.skip();
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      const byName = (name: string) => out.tensors.find((t) => t.name === name)!;
      expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', 'IQ3_XXS', 'IQ3_S', 'IQ3_S']);
      expect(hex(byName('blk.0.attn_norm.weight').data)).toBe(hex(norm));
      expect(hex(byName('blk.0.attn_k.weight').data)).toBe(hex(k));
      for (const [name, type, bytes, cols] of [['blk.0.attn_q.weight', 'IQ3_XXS', q, 256], ['blk.0.ffn_up.weight', 'IQ3_S', up, 512]] as const) {
        const truth = lora.merge(name, decode(type, bytes), cols);
        const want = encode(type, Float32Array.from(truth));
        const got = byName(name).data;
        expect(got.length).toBe(want.length);
        for (let b = 0; b < want.length / BYTES[type]; b++) {
          expect(hex(got.subarray(b * BYTES[type], (b + 1) * BYTES[type])), `${name} block ${b}`).toBe(hex(want.subarray(b * BYTES[type], (b + 1) * BYTES[type])));
        }
        // And the values are the merge to within IQ3's own error (about a fifth of the RMS).
        const merged = decode(type, got);
        let err = 0;
        let norm = 0;
        for (let i = 0; i < truth.length; i++) {
          err += (merged[i] - truth[i]) ** 2;
          norm += truth[i] ** 2;
        }
        expect(Math.sqrt(err / norm), name).toBeLessThan(0.25);
      }
      // Every tensor keeps its type: the base's IQ3_M label stays.
      expect(out.metadata.get('general.file_type')!.value).toBe(27);
    } finally {
      await prepared.close();
    }
  });
});

describe('--dtype iq3_xxs / iq3_s on an F16 base (llama-quantize --pure)', () => {
  const rand = seededRandom(21);
  const values = (n: number) => Float64Array.from({ length: n }, () => 0.02 * gaussian(rand));
  const wide = tensorData('F16', values(256 * 8));
  const other = tensorData('F16', values(256 * 8));
  const narrow = tensorData('F16', values(96 * 8));
  const odd = tensorData('F32', values(40 * 8));
  const norm = tensorData('F32', new Float64Array(256).fill(1));
  const base = {
    'f16.gguf': buildGguf({
      metadata: llamaMeta(1),
      tensors: [
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [256], data: norm },
        { name: 'blk.0.attn_v.weight', type: 'F16', ne: [256, 8], data: other },
        { name: 'blk.0.ffn_up.weight', type: 'F16', ne: [256, 8], data: wide },
        { name: 'blk.0.ffn_down.weight', type: 'F16', ne: [96, 8], data: narrow },
        { name: 'blk.0.ffn_gate.weight', type: 'F32', ne: [40, 8], data: odd },
      ],
    }),
  };
  const lora = exactLora([{ tensor: 'blk.0.ffn_up.weight', in: 256, out: 8 }], 2, 41);

  it.each([['iq3_xxs', 'IQ3_XXS', 23], ['iq3_s', 'IQ3_S', 26]] as const)('--dtype %s writes %s, falls back to IQ4_NL then F16, saying so', async (dtype, type, fileType) => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      const output = createBlobOutputTarget();
      const warnings: string[] = [];
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype: dtype, onWarning: (w) => warnings.push(w) });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', type, type, 'IQ4_NL', 'F16']);
      expect(hex(out.tensors[0].data)).toBe(hex(norm));
      // The untouched matrix: ggml's blocks of its exact values; the merged one: of the float64 merge.
      expect(hex(out.tensors[1].data)).toBe(hex(encode(type, Float32Array.from(tensorValues('F16', other)))));
      expect(hex(out.tensors[2].data)).toBe(hex(encode(type, Float32Array.from(lora.merge('blk.0.ffn_up.weight', tensorValues('F16', wide), 256)))));
      expect(hex(out.tensors[3].data)).toBe(hex(tensorData('IQ4_NL', tensorValues('F16', narrow))));
      expect(hex(out.tensors[4].data)).toBe(hex(tensorData('F16', tensorValues('F32', odd))));
      expect(warnings.join('\n')).toMatch(new RegExp(`1 tensor is written as IQ4_NL, not ${type}: its rows are not whole ${type} blocks.*blk\\.0\\.ffn_down\\.weight`));
      expect(warnings.join('\n')).toMatch(new RegExp(`1 tensor is written as F16, not ${type}.*blk\\.0\\.ffn_gate\\.weight`));
      // Most weights are of the IQ3 type now: LLAMA_FTYPE_MOSTLY_IQ3_XXS (23) / IQ3_S (26).
      expect(out.metadata.get('general.file_type')!.value).toBe(fileType);
    } finally {
      await prepared.close();
    }
  });
});

describe('IQ1 and IQ2 are not written without an importance matrix', () => {
  const q = new Uint8Array(82 * 4).map((_, i) => (i % 82 === 1 ? 0x10 : (i * 37) & 255)); // IQ2_S blocks, d ≈ 5e-4
  const base = {
    'iq2_m.gguf': buildGguf({
      metadata: llamaMeta(29), // LLAMA_FTYPE_MOSTLY_IQ2_M
      tensors: [{ name: 'blk.0.attn_q.weight', type: 'IQ2_S', ne: [256, 4], data: q }],
    }),
  };
  const lora = exactLora([{ tensor: 'blk.0.attn_q.weight', in: 256, out: 4 }], 2, 51);

  it('a merge into an IQ2_S tensor writes it as F16, as export-lora does, never as IQ2_S', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends.cpu! });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F16']);
      // F16 now holds every weight: LLAMA_FTYPE_MOSTLY_F16, as export-lora labels its output.
      expect(out.metadata.get('general.file_type')!.value).toBe(1);
    } finally {
      await prepared.close();
    }
  });
});
