/**
 * IQ4_NL and IQ4_XS written as llama-quantize writes them without an importance matrix
 * (ggml-quants.c quantize_iq4_nl / quantize_iq4_xs with quant_weights = NULL): golden blocks from
 * ggml's C, blocks of random and adversarial values against a plain transcription of the C
 * (helpers/ggml-iq4-reference.ts), the --dtype rules (llama-quantize's fallback IQ4_XS → IQ4_NL →
 * F16; NaN and Inf refused), and merges that keep the IQ4 types, on the CPU and on WebGPU.
 */
import { describe, expect, it } from 'vitest';
import { blockCodec, CODEC_TYPE_NAMES } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { convertTensorBytes } from '../src/formats/gguf/gguf-convert.js';
import { fittingType } from '../src/formats/gguf/quantize-rule.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { seededRandom } from './helpers/fixtures.js';
import { buildGguf, readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { IQ4_REF, type Iq4RefType } from './helpers/ggml-iq4-reference.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { gaussian } from './helpers/svd-reference.js';

function encode(name: Iq4RefType, values: ArrayLike<number>): Uint8Array {
  const { size, bytes } = IQ4_REF[name];
  const x = Float32Array.from(values);
  expect(x.length % size).toBe(0);
  const out = new Uint8Array((x.length / size) * bytes);
  const codec = blockCodec(ggmlTypeByName(name)!);
  if (!codec) throw new Error(`loramerge does not write ${name}`);
  codec.encode(x, out);
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const FLT_MAX = 3.4028234663852886e38;

/** The golden inputs (IQ4_NL: 32 values, IQ4_XS: 256), by name. */
function nlCases(): [string, number[]][] {
  const one = (i: number, v: number, rest: (j: number) => number = () => 0) => Array.from({ length: 32 }, (_, j) => (j === i ? v : rest(j)));
  const levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
  return [
    ['zeros', new Array<number>(32).fill(0)],
    ['ramp', Array.from({ length: 32 }, (_, j) => (j - 15.5) / 8)],
    ['the levels themselves, then halved', [...levels, ...levels.map((v) => v / 2)]],
    ['midpoints of the levels (ties)', [127, -115.5, -93.5, -74, -57, -42, -28.5, -16, -4.5, 7, 19, 31.5, 45.5, 61, 79, 101, 127, -115.5, -93.5, -74, -57, -42, -28.5, -16, -4.5, 7, 19, 31.5, 45.5, 61, 79, 101]],
    ['largest magnitude negative', Array.from({ length: 32 }, (_, j) => (j === 3 ? -2 : Math.sin(j) * 0.7))],
    ['equal magnitudes of both signs (the first is max)', Array.from({ length: 32 }, (_, j) => (j % 3 === 0 ? 0.5 : j % 3 === 1 ? -0.5 : 0.25))],
    ['one huge value', one(7, 1e5, (j) => Math.cos(j) * 1e-3)],
    ['one value near FLT_MAX (sums overflow: NaN scale)', one(2, 3e38, (j) => j - 16)],
    ['negative extremes', one(9, -FLT_MAX, (j) => -j)],
    ['−FLT_MAX alone', one(0, -FLT_MAX)],
    ['below GROUP_MAX_EPS', one(4, 9e-16, () => -5e-16)],
    ['exactly GROUP_MAX_EPS, the rest subnormal', one(4, 1e-15, () => 1e-40)],
    ['a NaN among finite values', one(11, NaN, (j) => (j - 10) / 4)],
    ['an Inf among finite values', one(20, Infinity, (j) => (j - 10) / 4)],
    ['a −Inf alone', one(0, -Infinity)],
  ];
}

function xsCases(): [string, number[]][] {
  const s = (j: number) => Math.sin(j * 0.37) * (1 + (j >> 5));
  const levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
  return [
    ['zeros', new Array<number>(256).fill(0)],
    ['sub-blocks of growing size', Array.from({ length: 256 }, (_, j) => s(j))],
    ['one sub-block zero, one with the largest magnitude negative', Array.from({ length: 256 }, (_, j) => (j < 32 ? 0 : j === 100 ? -20 : s(j)))],
    ['levels and their midpoints, scaled per sub-block', Array.from({ length: 256 }, (_, j) => {
      const v = j % 32 < 16 ? levels[j % 16] : (levels[j % 16] + levels[Math.min(15, (j % 16) + 1)]) / 2;
      return (v * (1 + (j >> 5))) / 64;
    })],
    ['one huge value', Array.from({ length: 256 }, (_, j) => (j === 77 ? 6e4 : s(j) * 1e-2))],
    ['one value near FLT_MAX', Array.from({ length: 256 }, (_, j) => (j === 200 ? 3e38 : s(j)))],
    ['negative extremes', Array.from({ length: 256 }, (_, j) => (j % 64 === 5 ? -FLT_MAX : -Math.abs(s(j))))],
    ['a NaN in one sub-block', Array.from({ length: 256 }, (_, j) => (j === 40 ? NaN : s(j)))],
    ['tiny sub-blocks next to normal ones', Array.from({ length: 256 }, (_, j) => (j < 128 ? s(j) * 1e-15 : s(j)))],
  ];
}

// The bytes ggml writes for the inputs above: ggml-quants.c's quantize_row_iq4_nl_impl, best_index_int8
// and nearest_int (llama.cpp at 01243c5) built locally with gcc 12.2 -O2 on x86-64 (no FMA) into a
// small harness calling them as quantize_iq4_nl / quantize_iq4_xs do with quant_weights = NULL
// (ntry = 7), f16 by the compiler's _Float16 conversion (round to nearest even), bytes printed in hex.
// Read them so: zeros take level 8 (the value 1, nearest to 0: 0 ≥ (−10 + 1)/2 and 0 < (1 + 13)/2);
// IQ4_XS of zeros has the super-scale −0/32 = −0 (f16 0x8000) and each 6-bit scale 0 + 32 (0xaaaa);
// a NaN is left out of the largest magnitude but poisons the least-squares sums, so the scale
// stays 0 and the whole block is written as 0 (which is why converting NaN to these types is
// refused, below); sums that overflow give Inf/Inf, a NaN scale (f16 0xfe00) and level 0 everywhere.
const NL_GOLDEN: Record<string, string> = {
  'zeros': '000088888888888888888888888888888888',
  'ramp': '22248091a1a1b2b2c3c3d3d4e4e5e6f6f7f8',
  'the levels themselves, then halved': '023c304152536465767788899a9bacbdbecf',
  'midpoints of the levels (ties)': '05bc00ffeeddccbbaa998877665544332211',
  'largest magnitude negative': '0724784b5b80b5b4875a5b79b6b496594b6a',
  'equal magnitudes of both signs (the first is max)': '3e9cf03f03f03f03f03f03f03f03f03f03f0',
  'one huge value': 'ea62888888888888888f8888888888888888',
  'one value near FLT_MAX (sums overflow: NaN scale)': '00fe00000000000000000000000000000000',
  'negative extremes': '00fe00000000000000000000000000000000',
  '−FLT_MAX alone': '00fe00000000000000000000000000000000',
  'below GROUP_MAX_EPS': '000088888888888888888888888888888888',
  'exactly GROUP_MAX_EPS, the rest subnormal': '0000888888888f8888888888888888888888',
  'a NaN among finite values': '000088888888888888888888888088888888',
  'an Inf among finite values': '00fe00000000000000000000000000000000',
  'a −Inf alone': '00fe00000000000000000000000000000000',
};

const XS_GOLDEN: Record<string, string> = {
  'zeros':
    '0080aaaa0000000088888888888888888888888888888888888888888888888888888888888888888888888888888888'
    + '888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888'
    + '88888888888888888888888888888888888888888888888888888888888888888888888888888888',
  'sub-blocks of growing size':
    '2698560084048c04b884422110000113366aaddeeffffffe1224488cceeffffffeeddaa66331100000011225588cceef'
    + 'fffffeedd9966331311000011225588cceeffffffeecc9969553311000011225589cceeffffffeececc9955331100001'
    + '1225599cceeffffffffeecc99553311000011225599cceefeffffffeecc99552211000011235599c',
  'one sub-block zero, one with the largest magnitude negative':
    '0a9d1655d00b6835888888888888888888888888888888880224488cceeffffffffddaa66321100000011225588cceef'
    + 'fffffeedc99663317666666660677889999aaaaaaaa998879553311000011225589cceeffffffeececc9955331100001'
    + '1225599cceeffffffffeecc99552211000011225599cceefeffffffeecc99552211000011225599c',
  'levels and their midpoints, scaled per sub-block':
    'ad9b55008c048c04001122334455667798a9bacbdcedfeff001122334455667798a9bacbdcedfeff0011223344556677'
    + '98a9bacbdcedfeff001122334455667798a9bacbdcedfeff001122334455667798a9bacbdcedfeff0011223344556677'
    + '98a9bacbdcedfeff001122334455667798a9bacbdcedfeff001122334455667798a9bacbdcedfeff',
  'one huge value':
    '26cc8aaa0000000088888888888888888888888888888888888888888888888888888888888888888888888888888888'
    + '88888888888f888888888888888888888888888888888888888888888888888888888888888888888888888888888888'
    + '88888888888888888888888888888888888888888888888888888888888888888888888888888888',
  'one value near FLT_MAX':
    '2698562084048c00b884422110000113366aaddeeffffffe1224488cceeffffffeeddaa66331100000011225588cceef'
    + 'fffffeedd9966331311000011225588cceeffffffeecc9969553311000011225589cceeffffffeececc9955331100001'
    + '1225599cceefffff88888888888888888888888888888888effffffeecc99552211000011235599c',
  'negative extremes':
    'd19766228000800088888888888888888888888888888888022448844220000001133666633110008888888888888888'
    + '888888888888888831100001122457744220000001133665888888888888888888888888888888881337755221100001'
    + '12255774411000008888888888888888888888888888888810000001133775522110000112255773',
  'a NaN in one sub-block':
    '26985a0004048c04b884422110000113366aaddeeffffffe8888888888888888808888888888888800011225588cceef'
    + 'fffffeedd9966331311000011225588cceeffffffeecc9969553311000011225589cceeffffffeececc9955331100001'
    + '1225599cceeffffffffeecc99553311000011225599cceefeffffffeecc99552211000011235599c',
  'tiny sub-blocks next to normal ones':
    '2698aa0000008c0488888888888888888888888888888888888888888888888888888888888888888888888888888888'
    + '8888888888888888888888888888888888888888888888889553311000011225589cceeffffffeececc9955331100001'
    + '1225599cceeffffffffeecc99553311000011225599cceefeffffffeecc99552211000011235599c',
};

describe('golden blocks from ggml-quants.c (no importance matrix)', () => {
  it.each(nlCases())('IQ4_NL: %s', (name, x) => {
    expect(hex(encode('IQ4_NL', x))).toBe(NL_GOLDEN[name]);
    expect(hex(IQ4_REF.IQ4_NL.quantize(Float32Array.from(x)))).toBe(NL_GOLDEN[name]);
  });

  it.each(xsCases())('IQ4_XS: %s', (name, x) => {
    expect(hex(encode('IQ4_XS', x))).toBe(XS_GOLDEN[name]);
    expect(hex(IQ4_REF.IQ4_XS.quantize(Float32Array.from(x)))).toBe(XS_GOLDEN[name]);
  });
});

/** Blocks of values the quantizer must get right, `count` blocks of `size`. */
function adversarial(size: number, count: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  const g = () => gaussian(rand);
  const levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
  const x = new Float32Array(size * count);
  for (let b = 0; b < count; b++) {
    const kind = b % 8;
    const scale = 10 ** (rand() * 12 - 8);
    for (let j = 0; j < size; j++) {
      const i = b * size + j;
      if (kind <= 2) x[i] = g() * scale;
      else if (kind === 3) x[i] = Math.round(g() * 8) * scale; // many equal values
      else if (kind === 4) x[i] = levels[Math.floor(rand() * 16)] * (rand() < 0.5 ? 1 : 0.5); // levels and ties
      else if (kind === 5) x[i] = rand() < 0.3 ? 0 : g() * 1e-40; // subnormal, below GROUP_MAX_EPS
      else if (kind === 6) x[i] = rand() < 0.05 ? (rand() < 0.5 ? 3e38 : -3e38) : g() * scale; // sums overflow
      else x[i] = (rand() < 0.5 ? -1 : 1) * (rand() < 0.5 ? 1 : rand()) * scale; // equal magnitudes of both signs
    }
  }
  return x;
}

describe('random and adversarial blocks against the transcription of the C', () => {
  for (const [name, count] of [['IQ4_NL', 1600], ['IQ4_XS', 200]] as const) {
    it(`${name}: every block equal`, () => {
      const { size, bytes, quantize } = IQ4_REF[name];
      for (const seed of [1, 2]) {
        const x = adversarial(size, count, seed);
        const got = encode(name, x);
        for (let b = 0; b < count; b++) {
          const want = quantize(x.subarray(b * size, (b + 1) * size));
          expect(hex(got.subarray(b * bytes, (b + 1) * bytes)), `${name} seed ${seed} block ${b}`).toBe(hex(want));
        }
      }
    });
  }

  it('decodes what it encodes as dequantize_row_iq4_* does', () => {
    for (const name of ['IQ4_NL', 'IQ4_XS'] as const) {
      const { size, dequantize } = IQ4_REF[name];
      const bytes = encode(name, adversarial(size, 64, 3).map((v) => (Number.isFinite(v) ? v : 0)));
      const out = new Float32Array((bytes.length / IQ4_REF[name].bytes) * size);
      blockCodec(ggmlTypeByName(name)!)!.decode(bytes, out);
      const want = Array.from({ length: bytes.length / IQ4_REF[name].bytes }, (_, b) => dequantize(bytes.subarray(b * IQ4_REF[name].bytes, (b + 1) * IQ4_REF[name].bytes))).flat();
      expect(Array.from(out)).toEqual(want);
    }
  });
});

describe('--dtype iq4_nl and iq4_xs', () => {
  it('both are written and offered', () => {
    for (const name of ['IQ4_NL', 'IQ4_XS']) expect(CODEC_TYPE_NAMES).toContain(name);
  });

  it('llama-quantize\'s fallback where a row is not whole blocks: IQ4_XS → IQ4_NL → F16, IQ4_NL → F16', () => {
    expect(fittingType('IQ4_XS', 512)).toBe('IQ4_XS');
    expect(fittingType('IQ4_XS', 96)).toBe('IQ4_NL');
    expect(fittingType('IQ4_XS', 100)).toBe('F16');
    expect(fittingType('IQ4_NL', 96)).toBe('IQ4_NL');
    expect(fittingType('IQ4_NL', 100)).toBe('F16');
  });

  it('converting NaN or Inf to IQ4_NL or IQ4_XS is refused (the quantizer drops them from the scale)', async () => {
    const values = Float32Array.from({ length: 256 }, (_, i) => (i === 9 ? NaN : i / 256));
    const f32Type = ggmlTypeByName('F32')!;
    for (const bad of [NaN, Infinity]) {
      values[9] = bad;
      for (const to of ['IQ4_NL', 'IQ4_XS']) {
        await expect(convertTensorBytes(new Uint8Array(values.buffer), f32Type, ggmlTypeByName(to)!)).rejects.toMatchObject({
          code: 'NON_FINITE', message: expect.stringMatching(new RegExp(`NaN or Inf, which ${to} blocks cannot store .*choose f16, bf16 or f32`)),
        });
      }
    }
  });
});

const backends = mergeBackends({ cpu: 'default' });

/** IQ4 blocks of 0.02·gaussian values (as a quantized model's), and the values they decode to. */
function iq4Tensor(name: Iq4RefType, count: number, seed: number) {
  const rand = seededRandom(seed);
  const data = tensorData(name, Float64Array.from({ length: count }, () => 0.02 * gaussian(rand)));
  return { data, values: tensorValues(name, data) };
}

describe.each(['cpu', 'webgpu'])('a llama.cpp LoRA merged into IQ4_XS and IQ4_NL tensors (%s)', (backendName) => {
  const up = iq4Tensor('IQ4_XS', 256 * 64, 11);
  const down = iq4Tensor('IQ4_NL', 96 * 48, 12);
  const v = iq4Tensor('IQ4_XS', 256 * 16, 13);
  const norm = tensorData('F32', new Float64Array(256).fill(1));
  const base = {
    'iq4.gguf': buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 30 }]],
      tensors: [
        { name: 'blk.0.attn_norm.weight', type: 'F32', ne: [256], data: norm },
        { name: 'blk.0.attn_v.weight', type: 'IQ4_XS', ne: [256, 16], data: v.data },
        { name: 'blk.0.ffn_up.weight', type: 'IQ4_XS', ne: [256, 64], data: up.data },
        { name: 'blk.0.ffn_down.weight', type: 'IQ4_NL', ne: [96, 48], data: down.data },
      ],
    }),
  };
  const lora = ggufLoraAdapter([
    { tensor: 'blk.0.ffn_up.weight', rank: 4, in: 256, out: 64, aType: 'F32', bType: 'F32' },
    { tensor: 'blk.0.ffn_down.weight', rank: 4, in: 96, out: 48, aType: 'F32', bType: 'F32' },
  ], 4);
  // α = r = 4: W + B·A in float64.
  const truth = new Map([['blk.0.ffn_up.weight', { w: up.values, cols: 256, type: 'IQ4_XS' as const }], ['blk.0.ffn_down.weight', { w: down.values, cols: 96, type: 'IQ4_NL' as const }]].map(([name, t]) => {
    const { w, cols } = t as { w: Float64Array; cols: number };
    const f = lora.factors.get(name as string)!;
    return [name as string, { ...(t as { type: Iq4RefType }), values: w.map((x, i) => {
      const o = Math.floor(i / cols);
      const c = i % cols;
      let s = 0;
      for (let k = 0; k < 4; k++) s += f.b[o * 4 + k] * f.a[k * cols + c];
      return x + s;
    }) }];
  }));

  async function run(outDtype?: string) {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const output = createBlobOutputTarget();
      await mergeModel({ prepared, output, backend: backends[backendName]!, outDtype });
      return readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
    } finally {
      await prepared.close();
    }
  }

  it('keeps each type: blocks of the merged f32 values as ggml quantizes them, within its own error of the float64 merge', async (ctx) => {
    if (!backends[backendName]) return ctx.skip();
    const [out, inF32] = [await run(), await run('f32')];
    const byName = (file: typeof out, name: string) => file.tensors.find((t) => t.name === name)!;
    expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['F32', 'IQ4_XS', 'IQ4_XS', 'IQ4_NL']);
    expect(hex(byName(out, 'blk.0.attn_norm.weight').data)).toBe(hex(norm));
    expect(hex(byName(out, 'blk.0.attn_v.weight').data)).toBe(hex(v.data));
    for (const [name, t] of truth) {
      // The f32 merge is the float64 one to within f32 accumulation.
      const merged = tensorValues('F32', byName(inF32, name).data);
      let off = 0;
      for (let i = 0; i < merged.length; i++) off = Math.max(off, Math.abs(merged[i] - t.values[i]));
      expect(off, name).toBeLessThan(1e-6);
      // Block for block what the C quantizer makes of those f32 values.
      const { size, bytes, quantize } = IQ4_REF[t.type];
      const got = byName(out, name).data;
      for (let b = 0; b < merged.length / size; b++) {
        expect(hex(got.subarray(b * bytes, (b + 1) * bytes)), `${name} block ${b}`).toBe(hex(quantize(merged.subarray(b * size, (b + 1) * size))));
      }
      // And its values are the float64 merge up to the quantizer's own error: that of the C
      // quantizer applied to the float64 merge itself.
      const decoded = tensorValues(t.type, got);
      const direct = tensorValues(t.type, tensorData(t.type, t.values));
      let err = 0;
      let errDirect = 0;
      for (let i = 0; i < decoded.length; i++) {
        err += (decoded[i] - t.values[i]) ** 2;
        errDirect += (direct[i] - t.values[i]) ** 2;
      }
      expect(err, name).toBeGreaterThan(0);
      expect(Math.sqrt(err / errDirect), name).toBeLessThan(1.02);
    }
    expect(out.metadata.get('general.file_type')!.value).toBe(30);
  });
});

describe('--dtype iq4_xs on an F16 and F32 base', () => {
  const rand = seededRandom(21);
  const values = (n: number) => Float64Array.from({ length: n }, () => 0.02 * gaussian(rand));
  const wide = tensorData('F16', values(256 * 8));
  const narrow = tensorData('F16', values(96 * 8));
  const odd = tensorData('F32', values(40 * 8));
  const base = {
    'f16.gguf': buildGguf({
      metadata: [['general.architecture', { type: 'string', value: 'llama' }], ['llama.attention.head_count', { type: 'u32', value: 4 }], ['general.file_type', { type: 'u32', value: 1 }]],
      tensors: [
        { name: 'blk.0.ffn_up.weight', type: 'F16', ne: [256, 8], data: wide },
        { name: 'blk.0.ffn_down.weight', type: 'F16', ne: [96, 8], data: narrow },
        { name: 'blk.0.ffn_gate.weight', type: 'F32', ne: [40, 8], data: odd },
      ],
    }),
  };
  const lora = ggufLoraAdapter([{ tensor: 'blk.0.ffn_up.weight', rank: 2, in: 256, out: 8, aType: 'F32', bType: 'F32' }], 2);

  it('writes IQ4_XS, falls back to IQ4_NL and then F16 as llama-quantize does, saying so', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'base'), [{ files: memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora') }]);
    try {
      const output = createBlobOutputTarget();
      const warnings: string[] = [];
      await mergeModel({ prepared, output, backend: backends.cpu!, outDtype: 'iq4_xs', onWarning: (w) => warnings.push(w) });
      const out = readGguf(new Uint8Array(await output.files()[0].blob.arrayBuffer()));
      expect(out.tensors.map((t) => typeName(t.typeId))).toEqual(['IQ4_XS', 'IQ4_NL', 'F16']);
      // The untouched matrix: the C quantizer's blocks of its exact values.
      expect(hex(out.tensors[1].data)).toBe(hex(tensorData('IQ4_NL', tensorValues('F16', narrow))));
      expect(hex(out.tensors[2].data)).toBe(hex(tensorData('F16', tensorValues('F32', odd))));
      expect(warnings.join('\n')).toMatch(/1 tensor is written as IQ4_NL, not IQ4_XS: its rows are not whole IQ4_XS blocks.*blk\.0\.ffn_down\.weight/);
      expect(warnings.join('\n')).toMatch(/1 tensor is written as F16, not IQ4_XS.*blk\.0\.ffn_gate\.weight/);
      // Most weights are IQ4_XS now: LLAMA_FTYPE_MOSTLY_IQ4_XS (30).
      expect(out.metadata.get('general.file_type')!.value).toBe(30);
    } finally {
      await prepared.close();
    }
  });
});
