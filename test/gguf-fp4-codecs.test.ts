/**
 * MXFP4, NVFP4, Q1_0 and Q2_0 blocks, written as ggml's reference quantizers write them
 * (quantize_row_*_ref in ggml-quants.c) and read as its dequantize_row_* reads them: golden blocks
 * whose bytes are derived by hand below from the C code, step by step, then blocks of random and
 * adversarial values against a plain transcription of the C loops (helpers/ggml-fp4-reference.ts),
 * and every scale byte decoded against the same.
 */
import { describe, expect, it } from 'vitest';
import { nonFiniteBlockSpan, nonFiniteBlockValues } from '../src/formats/gguf/block-scales.js';
import { blockCodec, CODEC_TYPE_NAMES } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { convertTensorBytes } from '../src/formats/gguf/gguf-convert.js';
import { FP4_REF, type Fp4RefType } from './helpers/ggml-fp4-reference.js';
import { seededRandom } from './helpers/fixtures.js';

const TYPES: Fp4RefType[] = ['MXFP4', 'NVFP4', 'Q1_0', 'Q2_0'];

function codec(name: Fp4RefType) {
  const c = blockCodec(ggmlTypeByName(name)!);
  if (!c) throw new Error(`loramerge does not write ${name}`);
  return c;
}

function encode(name: Fp4RefType, values: ArrayLike<number>): number[] {
  const { size, bytes } = FP4_REF[name];
  const x = Float32Array.from(values);
  expect(x.length % size).toBe(0);
  const out = new Uint8Array((x.length / size) * bytes);
  codec(name).encode(x, out);
  return [...out];
}

/** One block of `size` values: `set` at their indices, zeros elsewhere. */
function block(size: number, set: Record<number, number>): number[] {
  const x = new Array<number>(size).fill(0);
  for (const [i, v] of Object.entries(set)) x[Number(i)] = v;
  return x;
}

/** f32 bits as a value. */
const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];

describe('MXFP4 golden blocks, derived by hand from quantize_row_mxfp4_ref', () => {
  it('scale from the block max, levels of d = 2^(e−128), ties to the code met first (towards zero)', () => {
    // amax = 3: floorf(log2f(3)) = 1, e = 1 − 2 + 127 = 126, d = 2^−2 = 0.25: the levels are
    // 0.25·{0 1 2 3 4 6 8 12} = 0, .25, .5, .75, 1, 1.5, 2, 3 (codes 0–7) and their negatives (9–15).
    // 3 → 7; NaN: every error is NaN, none is < the first → 0; 1.5 → 5; .375 ties .25/.5 → 1;
    // −.75 → 11; −.875 ties −.75/−1 → 11; .1 → 0 (.1 < .15); 1.75 ties 1.5/2 → 5; .125 ties 0/.25
    // → 0; 1.25 ties 1/1.5 → 4; −2.5 ties −2/−3 → 14; −0 → 0; 2.5 ties 2/3 → 6; −.3 → 9.
    const x = block(32, { 0: 3, 16: NaN, 1: 1.5, 17: 0.375, 2: -0.75, 18: -0.875, 3: 0.1, 19: 1.75, 4: 0.125, 5: 1.25, 6: -2.5, 7: -0, 8: 2.5, 9: -0.3 });
    expect(encode('MXFP4', x)).toEqual([126, 0x07, 0x15, 0xbb, 0x50, 0x00, 0x04, 0x0e, 0x00, 0x06, 0x09, 0, 0, 0, 0, 0, 0]);
  });

  it('rounds log2f to f32 before the floor: just below 8 the exponent is 3, just below 4 it is 1', () => {
    // 8·(1 − 2⁻²⁴) (0x40FFFFFF): log2 = 3 − 2⁻²⁴/ln 2 = 3 − 8.6e−8, and the f32 below 3 is
    // 3 − 2.4e−7: log2f gives 3.0, so e = 3 − 2 + 127 = 128, d = 1 and the value takes level 8
    // (code 6), not 6 as floor(log2) = 2 would give; 1 → 1; −5 ties −4/−6 → −4 (code 12).
    expect(encode('MXFP4', block(32, { 0: f32(0x40ffffff), 1: 1, 2: -5 }))).toEqual([128, 0x06, 0x01, 0x0c, ...new Array(13).fill(0)]);
    // 4·(1 − 2⁻²⁴) (0x407FFFFF): log2 = 2 − 8.6e−8, but the f32 below 2 is only 1.2e−7 away (half:
    // 6e−8), so log2f gives 1.9999999, the floor 1, e = 126, d = 0.25: level 3 (code 7).
    expect(encode('MXFP4', block(32, { 0: f32(0x407fffff) }))).toEqual([126, 0x07, ...new Array(15).fill(0)]);
  });

  it('zeros, the largest floats, and blocks too small for an exponent', () => {
    expect(encode('MXFP4', block(32, { 3: -0 }))).toEqual(new Array(17).fill(0));
    // FLT_MAX: log2f = 128 (128 − 8.6e−8 is within half the gap below 128, 3.8e−6), e = 253,
    // d = 2^125; 8·d = 2^128 overflows to Inf (never nearest), so FLT_MAX takes 6·d (code 5),
    // −FLT_MAX code 13, and 1e38 takes 2·d = 8.5e37 (error 1.5e37 < 2.8e37 to 3·d): code 2.
    expect(encode('MXFP4', block(32, { 0: f32(0x7f7fffff), 1: -f32(0x7f7fffff), 2: 1e38 }))).toEqual([253, 0x05, 0x0d, 0x02, ...new Array(13).fill(0)]);
    // amax = 1e−39 (subnormal): floorf(log2f) = −130, so the exponent −130 − 2 + 127 = −5 is no
    // uint8_t: x86 builds convert it to the int −5 and keep its low byte, 251; d = 2^123 and every
    // value is nearest to 0.
    expect(encode('MXFP4', block(32, { 5: 1e-39, 6: -5e-40 }))).toEqual([251, ...new Array(16).fill(0)]);
    // amax = 2^−126: exponent −1 → 255 (a byte ggml_validate_row_data rejects; what x86 writes).
    expect(encode('MXFP4', block(32, { 0: 2 ** -126 }))).toEqual([255, ...new Array(16).fill(0)]);
  });
});

describe('NVFP4, Q1_0 and Q2_0 golden blocks, derived by hand from the C reference', () => {
  it('NVFP4: a UE4M3 scale per 16 values from amax / 6, rounded, clamped and subnormal as ggml does', () => {
    // Sub-block 0: amax 6 → 6/6 = 1 = 2⁰ → UE4M3 exponent 0 + 7, mantissa 0: 0x38; d = 1·0.5, levels
    // 0 .5 1 1.5 2 3 4 6: 6 → 7, −1.25 ties −1/−1.5 → −1 (code 10), 2.5 ties 2/3 → 2 (code 4), .25 ties → 0.
    // Sub-block 1: amax 6.375 → 1.0625 = 1.0001b: mantissa 000 plus the rounding bit 1 → 0x39,
    // d = 1.125·0.5 = .5625; 6.375 → 6.75 (code 7), −6.375 → code 15.
    // Sub-block 2: amax .03 → .005 < 2⁻⁶: subnormal, (int)(.005·512 + .5) = 3 → 0x03, d = 3·2⁻⁹·.5
    // = .0029296875; .03 lies between 8d = .0234 and 12d = .0352, nearer the second: code 7.
    // Sub-block 3: amax 3000 → 500 > 448 → clamped to 448 = 1.75·2⁸: exponent 15 → 0x7E, d = 224;
    // 3000 → 12d (code 7), 1700 → 8d = 1792 (code 6).
    const x = block(64, { 0: 6, 1: -1.25, 2: 2.5, 8: 0.25, 16: 6.375, 25: -6.375, 32: 0.03, 48: 3000, 56: 1700 });
    const want = new Array(36).fill(0);
    want.splice(0, 4, 0x38, 0x39, 0x03, 0x7e);
    want.splice(4, 3, 0x07, 0x0a, 0x04);
    want.splice(12, 2, 0x07, 0xf0);
    want[20] = 0x07;
    want[28] = 0x67;
    expect(encode('NVFP4', x)).toEqual(want);
  });

  it('Q1_0: d = Σ|x| / 128 as f16, a set bit for x ≥ 0 (−0 included)', () => {
    // 43 values of .5 (j ≡ 0 mod 3), x[1] = −0 and 84 of −.25: Σ = 21.5 + 21 = 42.5 (exact in f32 at
    // every step), d = 42.5/128 = .33203125 = 1.328125·2⁻²: f16 exponent 13, mantissa 336 → 0x3550.
    // Bits j ≡ 0 mod 3 repeat every 3 bytes as 0x49 0x92 0x24; −0 ≥ 0 sets bit 1 of byte 0: 0x4B.
    const x: number[] = Array.from({ length: 128 }, (_, j) => (j % 3 === 0 ? 0.5 : -0.25));
    x[1] = -0;
    const bits = Array.from({ length: 16 }, (_, i) => [0x49, 0x92, 0x24][i % 3]);
    bits[0] = 0x4b;
    expect(encode('Q1_0', x)).toEqual([0x50, 0x35, ...bits]);
  });

  it('Q2_0: d = amax, q = roundf(x/d) + 1 clamped to 0–3 (so code 3, level 2d, never comes up)', () => {
    // d = 2 (f16 0x4000), 1/d = .5: 2 → 1 → q 2; 1 → .5 rounds away from zero to 1 → 2; −1 → −1 → 0;
    // .9 → .45 → 0 → 1; −2 → −1 → 0; 1.5 → .75 → 1 → 2; −.4 → −.2 → −0 → 1; 2 → 2. Zeros → 1.
    const x = block(64, { 0: 2, 1: 1, 2: -1, 3: 0.9, 4: -2, 5: 1.5, 6: -0.4, 7: 2 });
    // Byte 2: q 2 2 0 1 at bits 0 2 4 6 → 0x4A; byte 3: q 0 2 1 2 → 0x98; the rest 1 1 1 1 → 0x55.
    expect(encode('Q2_0', x)).toEqual([0x00, 0x40, 0x4a, 0x98, ...new Array(14).fill(0x55)]);
  });
});

/** Blocks of values the quantizers must get right, `count` blocks of `size`. */
function adversarial(size: number, count: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const out = new Float32Array(size * count);
  for (let b = 0; b < count; b++) {
    const scale = 10 ** (rand() * 12 - 9);
    const p2 = 2 ** Math.floor(rand() * 80 - 40);
    for (let j = 0; j < size; j++) {
      let v: number;
      switch (b % 11) {
        case 0: v = gauss() * scale; break;
        case 1: v = (Math.floor(rand() * 25) - 12) / 2 * p2; break; // levels and the midpoints between them
        case 2: v = Math.floor(rand() * 9 - 4) * p2 * 0.25; break;
        case 3: v = rand() < 0.3 ? 0 : gauss() * 1e-39; break; // subnormal values
        case 4: v = j === 7 ? f32(0x7f7fffff) * (rand() < 0.5 ? -1 : 1) : gauss() * 1e37; break;
        case 5: v = j === 3 ? f32((Math.floor(rand() * 250 + 2) << 23) - 1 - Math.floor(rand() * 40)) : gauss() * 0.1; break; // amax just below 2ⁿ
        case 6: v = j % 5 === 0 ? -0 : 0; break;
        case 7: v = (rand() < 0.5 ? 1 : -1) * (1 + Math.floor(rand() * 3)); break;
        case 8: v = gauss() * 3000; break;
        default: v = gauss() * 0.02;
      }
      out[b * size + j] = v;
    }
  }
  return out;
}

describe('the four codecs against a plain transcription of the C loops', () => {
  for (const name of TYPES) {
    const { size, bytes, quantize, dequantize } = FP4_REF[name];

    it(`${name}: 221 blocks of random and adversarial values quantize byte for byte`, () => {
      const x = adversarial(size, 221, size * 31 + bytes);
      const got = encode(name, x);
      for (let b = 0; b < 221; b++) {
        const want = [...quantize(x.subarray(b * size, (b + 1) * size))];
        expect(got.slice(b * bytes, (b + 1) * bytes), `${name} block ${b} (kind ${b % 11})`).toEqual(want);
      }
    });

    it(`${name}: random bytes (every scale byte) decode value for value; re-encoding stays within the block's step`, () => {
      const rand = seededRandom(bytes * 7 + size);
      const n = 257;
      const src = new Uint8Array(n * bytes);
      for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
      for (let b = 0; b < n; b++) {
        // Every scale byte for the byte-scaled types; finite f16 scales for the others.
        if (name === 'MXFP4') src[b * bytes] = b % 256;
        else if (name === 'NVFP4') src[b * bytes + (b % 4)] = b % 256;
        else src[b * bytes + 1] &= 0x7b;
      }
      const out = new Float32Array(n * size);
      codec(name).decode(src, out);
      for (let b = 0; b < n; b++) {
        expect([...out.subarray(b * size, (b + 1) * size)], `${name} block ${b}`).toEqual(dequantize(src.subarray(b * bytes, (b + 1) * bytes)));
      }
      // Decoded values re-encode to values within half the block's largest |x| (Q1_0 keeps signs
      // only: its d is a mean), for blocks of ordinary size: scale bytes past f32's range decode to
      // ±Inf, and the smallest blocks quantize to zero.
      const again = new Float32Array(n * size);
      const blocksOut = new Uint8Array(n * bytes);
      codec(name).encode(out, blocksOut);
      codec(name).decode(blocksOut, again);
      let checked = 0;
      for (let b = 0; b < n && name !== 'Q1_0'; b++) {
        let amax = 0;
        for (let j = 0; j < size; j++) amax = Math.max(amax, Math.abs(out[b * size + j]));
        if (!(amax >= 0.02 && amax <= 6e4)) continue;
        checked++;
        for (let j = 0; j < size; j++) expect(Math.abs(again[b * size + j] - out[b * size + j])).toBeLessThanOrEqual(amax * (0.5 + 2 ** -10));
      }
      if (name !== 'Q1_0') expect(checked).toBeGreaterThan(10);
    });
  }

  it('MXFP4: the exponent byte just below every power of two from 2^−148 to 2^128 (log2f rounded to f32)', () => {
    const amaxes: number[] = [];
    for (let biased = 1; biased <= 255; biased++) {
      for (const j of [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]) amaxes.push(f32((biased << 23) - j));
    }
    for (let p = 4; p <= 22; p++) for (const j of [1, 2, 3, 5, 8]) amaxes.push(f32((1 << p) - j)); // subnormals
    const x = new Float32Array(amaxes.length * 32);
    amaxes.forEach((a, b) => { x[b * 32 + (b % 32)] = a; });
    const got = encode('MXFP4', x);
    const want = amaxes.map((_, b) => FP4_REF.MXFP4.quantize(x.subarray(b * 32, b * 32 + 32))[0]);
    expect(amaxes.map((_, b) => got[b * 17])).toEqual(want);
    // Where log2f's rounding moves the floor (as for 8·(1 − 2⁻²⁴) above), the byte is one higher than floor(log2) gives.
    expect(amaxes.filter((a, b) => got[b * 17] !== ((Math.floor(Math.log2(a)) + 125) & 0xff)).length).toBeGreaterThan(100);
  });

  it('MXFP4: a decoded block re-encodes to the same values (the grid it picks holds them), scale bytes 3–252', () => {
    // gpt-oss's experts come quantized by OpenAI, not by ggml: an expert block the merge leaves as it
    // was must come back unchanged. With kmax the block's largest |level|, the reference picks
    // e − 3 + ⌊log2 kmax⌋, i.e. d, d/2 or d/4, whose levels include every k·d of the block.
    const rand = seededRandom(12);
    const n = 250;
    const src = new Uint8Array(n * 17);
    for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
    for (let b = 0; b < n; b++) {
      src[b * 17] = 3 + b;
      // Some blocks with small codes only (kmax 1–6), so the exponent moves down.
      if (b % 3 === 1) for (let j = 1; j < 17; j++) src[b * 17 + j] &= 0x33 | (b % 2 ? 0x44 : 0);
    }
    const values = new Float32Array(n * 32);
    codec('MXFP4').decode(src, values);
    const again = new Float32Array(n * 32);
    const bytes = new Uint8Array(n * 17);
    codec('MXFP4').encode(values, bytes);
    codec('MXFP4').decode(bytes, again);
    expect([...again]).toEqual([...values]);
    expect(Buffer.from(bytes).equals(Buffer.from(src))).toBe(false);
  });

  it('every type is written, listed for --dtype', () => {
    for (const name of TYPES) expect(CODEC_TYPE_NAMES).toContain(name);
  });
});

describe('non-finite values', () => {
  it('MXFP4 blocks decode to ±Inf only at the largest scale bytes, and nonFiniteBlockValues counts exactly those values', () => {
    const rand = seededRandom(4);
    const src = new Uint8Array(60 * 17);
    for (let i = 0; i < src.length; i++) src[i] = Math.floor(rand() * 256);
    for (let b = 0; b < 60; b++) src[b * 17] = 246 + (b % 10);
    const values = new Float32Array(60 * 32);
    codec('MXFP4').decode(src, values);
    const infinite = values.filter((v) => !Number.isFinite(v)).length;
    expect(infinite).toBeGreaterThan(0);
    expect(values.some(Number.isNaN)).toBe(false);
    expect(nonFiniteBlockValues(ggmlTypeByName('MXFP4')!, src)).toBe(infinite);
    // Where they lie: the first and the last value index the decoder made infinite.
    const at = [...values.keys()].filter((i) => !Number.isFinite(values[i]));
    expect(nonFiniteBlockSpan(ggmlTypeByName('MXFP4')!, src)).toEqual({ count: infinite, first: at[0], last: at[at.length - 1] });
    expect(nonFiniteBlockValues(ggmlTypeByName('NVFP4')!, new Uint8Array(36).fill(0xff))).toBe(0);
  });

  it('converting NaN or Inf to MXFP4 or NVFP4 is refused (the quantizer would store 0); to Q2_0 too (its scale would carry the Inf, which llama-quantize\'s output check refuses)', async () => {
    const values = Float32Array.from({ length: 64 }, (_, i) => (i === 9 ? NaN : i / 64));
    const bytes = new Uint8Array(values.buffer);
    const f32Type = ggmlTypeByName('F32')!;
    for (const to of ['MXFP4', 'NVFP4']) {
      await expect(convertTensorBytes(bytes, f32Type, ggmlTypeByName(to)!)).rejects.toMatchObject({
        code: 'NON_FINITE', message: expect.stringMatching(new RegExp(`NaN or Inf, which ${to} blocks cannot store .*choose f16, bf16 or f32`)),
      });
    }
    values[9] = Infinity;
    await expect(convertTensorBytes(bytes, f32Type, ggmlTypeByName('Q2_0')!)).rejects.toMatchObject({
      code: 'NON_FINITE', message: expect.stringMatching(/NaN or Inf, which Q2_0 blocks cannot store \(ggml's quantizer would carry them into a block's scale, .*choose f16, bf16 or f32/),
    });
  });
});
