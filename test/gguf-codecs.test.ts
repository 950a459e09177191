/**
 * GGML block codecs against a plain transcription of llama.cpp's reference rules
 * (helpers/ggml-reference.ts): quantization block for block on random and adversarial inputs,
 * dequantization element for element from the block layouts.
 */
import { describe, expect, it } from 'vitest';
import { encodeKQuantWasm } from '../src/formats/gguf/codecs/kquant-wasm.js';
import { encodeQ2KBlocks } from '../src/formats/gguf/codecs/q2_k.js';
import { encodeQ3KBlocks } from '../src/formats/gguf/codecs/q3_k.js';
import { encodeScaleMinBlocks } from '../src/formats/gguf/codecs/q4_k.js';
import { encodeQ6KBlocks } from '../src/formats/gguf/codecs/q6_k.js';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { REF_BLOCK, referenceDequantizeBlock, referenceQuantizeBlock, type RefType } from './helpers/ggml-reference.js';
import { seededRandom } from './helpers/fixtures.js';

const TYPES: RefType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

/** Byte offsets of each block's f16 scales. */
const HALVES: Record<RefType, number[]> = {
  Q8_0: [0], Q4_0: [0], Q5_0: [0], Q4_1: [0, 2], Q5_1: [0, 2],
  Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
};

function codecOf(type: string) {
  const codec = blockCodec(ggmlTypeByName(type)!);
  if (!codec) throw new Error(`no codec for ${type}`);
  return codec;
}

/** Blocks of `size` values of each kind the quantizers must get right. */
function inputBlocks(size: number, seed: number): { name: string; values: Float32Array }[] {
  const rand = seededRandom(seed);
  const gauss = () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
  const block = (name: string, f: (i: number) => number) => ({ name, values: Float32Array.from({ length: size }, (_, i) => f(i)) });
  const blocks = [
    block('zeros', () => 0),
    block('negative zeros', () => -0),
    block('all equal positive', () => 0.37),
    block('all equal negative', () => -1.5),
    block('one non-zero', (i) => (i === size >> 1 ? 0.8 : 0)),
    block('outlier', (i) => (i === 3 ? 40 : gauss() * 0.01)),
    block('negative outlier', (i) => (i === size - 1 ? -25 : gauss() * 0.02)),
    block('all positive', () => 0.5 + rand()),
    block('all negative', () => -0.5 - rand()),
    block('integers (ties)', () => Math.round((rand() - 0.5) * 16)),
    block('halves (ties)', () => Math.round((rand() - 0.5) * 32) / 2),
    block('alternating', (i) => (i % 2 ? 1 : -1) * (1 + (i % 7))),
    block('sparse', () => (rand() < 0.1 ? gauss() : 0)),
    block('large', () => gauss() * 3000),
    // A block scale beyond f16's range: d is stored as Inf (the merge refuses such blocks).
    block('huge', () => gauss() * 1e9),
    block('two signs of outliers', (i) => (i === 5 ? 9 : i === 200 % size ? -11 : gauss() * 0.1)),
    block('one value per sub-block', (i) => (i % 16 === 7 ? gauss() : 0)),
  ];
  // Scales down to where f16 d becomes subnormal or zero while the f32 math stays in range.
  // Below 1e-13, x² and x³ are f32 subnormals in the weighted sums; below 1e-15 blocks are zero for
  // the symmetric types' GROUP_MAX_EPS, and near 1e-38 the values themselves are subnormal.
  for (const scale of [1, 0.02, 1e-3, 1e-5, 1e-7, 1e-9, 1e-13, 1e-20, 1e-38]) {
    for (let k = 0; k < 4; k++) blocks.push(block(`gaussian ×${scale} #${k}`, () => gauss() * scale));
  }
  for (let k = 0; k < 6; k++) blocks.push(block(`uniform #${k}`, () => rand() * 2 - 1));
  return blocks;
}

describe('GGUF block codecs', () => {
  for (const type of TYPES) {
    const { size, bytes } = REF_BLOCK[type];

    it(`${type}: quantizes every block as quantize_row_${type.toLowerCase()}_ref does`, () => {
      const blocks = inputBlocks(size, 1000 + size + bytes);
      const src = new Float32Array(blocks.length * size);
      blocks.forEach((b, i) => src.set(b.values, i * size));
      const out = new Uint8Array(blocks.length * bytes);
      codecOf(type).encode(src, out);
      blocks.forEach((b, i) => {
        const expected = referenceQuantizeBlock(type, b.values);
        const actual = out.subarray(i * bytes, (i + 1) * bytes);
        expect({ block: b.name, bytes: [...actual] }).toEqual({ block: b.name, bytes: [...expected] });
      });
    });

    it(`${type}: dequantizes random blocks exactly, element by element`, () => {
      const rand = seededRandom(77 + bytes);
      const n = 24;
      const src = new Uint8Array(n * bytes);
      for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
      // Keep the f16 scales finite (an Inf or NaN scale has no meaningful value to compare).
      for (let b = 0; b < n; b++) {
        for (const at of HALVES[type]) src[b * bytes + at + 1] &= 0x7b; // exponent ≤ 30, sign kept
      }
      const out = new Float32Array(n * size);
      codecOf(type).decode(src, out);
      for (let b = 0; b < n; b++) {
        const expected = referenceDequantizeBlock(type, src.subarray(b * bytes, (b + 1) * bytes));
        expect([...out.subarray(b * size, (b + 1) * size)]).toEqual(expected);
      }
    });

    it(`${type}: quantize then dequantize stays within the block's quantization step`, () => {
      const rand = seededRandom(5 + bytes);
      const values = Float32Array.from({ length: size * 16 }, () => rand() * 2 - 1);
      const q = new Uint8Array(16 * bytes);
      codecOf(type).encode(values, q);
      const back = new Float32Array(values.length);
      codecOf(type).decode(q, back);
      const levels = { Q8_0: 127, Q4_0: 8, Q4_1: 15, Q5_0: 16, Q5_1: 31, Q2_K: 3, Q3_K: 4, Q4_K: 15, Q5_K: 31, Q6_K: 32 }[type];
      // Half a step of a scale of 2/levels, with slack for the 6-bit sub-block scales of k-quants.
      const bound = (2 / levels) * (type.endsWith('_K') ? 1.2 : 0.51) + 1e-3;
      let worst = 0;
      for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(back[i] - values[i]));
      expect(worst).toBeLessThan(bound);
      expect(worst).toBeGreaterThan(0);
    });
  }

  // The k-quants have two encoders, WebAssembly (used when it compiles) and TypeScript (the
  // fallback): each is held to the reference on its own.
  const TWINS: [RefType, (src: Float32Array, out: Uint8Array) => void, (src: Float32Array, out: Uint8Array) => boolean][] = [
    ['Q2_K', encodeQ2KBlocks, (s, o) => encodeKQuantWasm('Q2_K', s, o)],
    ['Q3_K', encodeQ3KBlocks, (s, o) => encodeKQuantWasm('Q3_K', s, o)],
    ['Q4_K', (s, o) => encodeScaleMinBlocks(s, o, 15), (s, o) => encodeKQuantWasm('Q4_K', s, o)],
    ['Q5_K', (s, o) => encodeScaleMinBlocks(s, o, 31), (s, o) => encodeKQuantWasm('Q5_K', s, o)],
    ['Q6_K', encodeQ6KBlocks, (s, o) => encodeKQuantWasm('Q6_K', s, o)],
  ];
  for (const [type, typescript, wasm] of TWINS) {
    it(`${type}: the TypeScript and the WebAssembly encoders both write the reference blocks`, () => {
      const { size, bytes } = REF_BLOCK[type];
      const blocks = inputBlocks(size, 4242 + bytes);
      const src = new Float32Array(blocks.length * size);
      blocks.forEach((b, i) => src.set(b.values, i * size));
      const fromTs = new Uint8Array(blocks.length * bytes);
      const fromWasm = new Uint8Array(blocks.length * bytes);
      typescript(src, fromTs);
      expect(wasm(src, fromWasm)).toBe(true);
      blocks.forEach((b, i) => {
        const expected = [...referenceQuantizeBlock(type, b.values)];
        expect({ block: b.name, bytes: [...fromTs.subarray(i * bytes, (i + 1) * bytes)] }).toEqual({ block: b.name, bytes: expected });
        expect({ block: b.name, bytes: [...fromWasm.subarray(i * bytes, (i + 1) * bytes)] }).toEqual({ block: b.name, bytes: expected });
      });
    });
  }

  it('F32, F16 and BF16 round trip through their codecs', () => {
    const values = Float32Array.from([0, -0, 1, -2.5, 65504, 1e-7, 3.14159]);
    for (const type of ['F32', 'F16', 'BF16']) {
      const codec = codecOf(type);
      const bytes = new Uint8Array(values.length * codec.type.blockBytes);
      codec.encode(values, bytes);
      const back = new Float32Array(values.length);
      codec.decode(bytes, back);
      if (type === 'F32') expect([...back]).toEqual([...values]);
      else expect(back[3]).toBe(-2.5);
    }
  });
});
