/**
 * TQ1_0 and TQ2_0 blocks, written as quantize_row_tq{1,2}_0_ref writes them: golden blocks derived
 * by hand from the C code, then random and adversarial blocks against a plain transcription of its
 * loops (helpers/ggml-ternary-reference.ts).
 */
import { describe, expect, it } from 'vitest';
import { blockCodec } from '../src/formats/gguf/codecs/registry.js';
import { ggmlTypeByName } from '../src/formats/gguf/ggml-types.js';
import { TERNARY_REF } from './helpers/ggml-ternary-reference.js';
import { seededRandom } from './helpers/fixtures.js';

function encode(name: 'TQ1_0' | 'TQ2_0', values: ArrayLike<number>): number[] {
  const codec = blockCodec(ggmlTypeByName(name)!);
  if (!codec) throw new Error(`loramerge does not write ${name}`);
  const x = Float32Array.from(values);
  const out = new Uint8Array((x.length / 256) * TERNARY_REF[name].bytes);
  codec.encode(x, out);
  return [...out];
}

function block(set: Record<number, number>): number[] {
  const x = new Array<number>(256).fill(0);
  for (const [i, v] of Object.entries(set)) x[Number(i)] = v;
  return x;
}

describe('ternary golden blocks, derived by hand from the C reference', () => {
  it('TQ2_0: d = amax, q = lroundf(x/d) + 1, four 2-bit q per byte (value m + 32n of each 128 at bits 2n)', () => {
    // d = 2 (f16 0x4000), 1/d = .5: 2 → 1 → q 2; 1 → .5 rounds away from zero → 2; −1 → 0; .9 → .45 → 1;
    // −2 → 0 (x[32], n = 1 of byte 0); zeros → 1. Byte 0: 2 | 0<<2 | 1<<4 | 1<<6 = 0x52; byte 1: x[1]
    // → 0x56; byte 2: x[2] → 0x54; byte 3 (.9): 0x55 as the rest. x[200] = −1.5 → −.75 → −1 → q 0:
    // second half, 200 − 128 = 72 = 8 + 32·2: byte 32 + 8, bits 4–5 → 0x45.
    const want = new Array(66).fill(0x55);
    want.splice(0, 3, 0x52, 0x56, 0x54);
    want[40] = 0x45;
    want.splice(64, 2, 0x00, 0x40);
    expect(encode('TQ2_0', block({ 0: 2, 1: 1, 2: -1, 3: 0.9, 32: -2, 200: -1.5 }))).toEqual(want);
  });

  it('TQ1_0: five base-3 digits per byte, most significant first, stored as ⌈q·256/243⌉', () => {
    // d = 1 (f16 0x3C00). All-zero digits q = 1 each: 81 + 27 + 9 + 3 + 1 = 121 → ⌈121·256/243⌉ = 128.
    // Byte 0: x[0] = 1 → first digit 2: 162 + 40 = 202 → ⌈51712/243⌉ = 213. Byte 1: x[1] = −1 → 0 and
    // x[33] = .6 → lroundf 1 → 2 (second digit): 54 + 13 = 67 → ⌈17152/243⌉ = 71. Byte 32 holds
    // values 160 + 16n: x[160] = −.5 rounds away from zero to −1 → 0: 40 → ⌈10240/243⌉ = 43. Bytes
    // 48–51 hold 240 + j + 4m, four digits then ·3: all ones 40·3 = 120 → 127; x[245] = 1 (j = 1,
    // m = 1): ((1·3 + 2)·3 + 1)·3 + 1 = 49, ·3 = 147 → ⌈37632/243⌉ = 155.
    const want = new Array(54).fill(128);
    want.splice(0, 2, 213, 71);
    want[32] = 43;
    want.splice(48, 6, 127, 155, 127, 127, 0x00, 0x3c);
    expect(encode('TQ1_0', block({ 0: 1, 1: -1, 33: 0.6, 160: -0.5, 245: 1 }))).toEqual(want);
  });
});

describe('TQ1_0 and TQ2_0 against a plain transcription of the C loops', () => {
  for (const name of ['TQ1_0', 'TQ2_0'] as const) {
    it(`${name}: 37 blocks of random and adversarial values quantize byte for byte, and decode as the reference does`, () => {
      const rand = seededRandom(name.length * 101 + (name === 'TQ1_0' ? 1 : 2));
      const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
      const n = 37;
      const x = new Float32Array(n * 256);
      for (let b = 0; b < n; b++) {
        for (let j = 0; j < 256; j++) {
          const kind = b % 6;
          x[b * 256 + j] = kind === 0 ? gauss() * 0.02
            : kind === 1 ? Math.round(gauss() * 2) / 2 // halves: ties of lroundf
              : kind === 2 ? (j === 77 ? NaN : gauss()) // a NaN: C's MAX keeps going, lroundf(NaN) → 0
                : kind === 3 ? gauss() * 1e-39 // a subnormal d: 1/d overflows
                  : kind === 4 ? (j % 9 === 0 ? -0 : 0)
                    : gauss() * 1e5; // d past f16's range: stored as Inf
        }
      }
      const ref = TERNARY_REF[name];
      const got = encode(name, x);
      for (let b = 0; b < n; b++) {
        expect(got.slice(b * ref.bytes, (b + 1) * ref.bytes), `${name} block ${b}`).toEqual([...ref.quantize(x.subarray(b * 256, (b + 1) * 256))]);
      }
      const bytes = Uint8Array.from(got);
      const values = new Float32Array(n * 256);
      blockCodec(ggmlTypeByName(name)!)!.decode(bytes, values);
      for (let b = 0; b < n; b++) {
        expect([...values.subarray(b * 256, (b + 1) * 256)], `${name} block ${b}`).toEqual(ref.dequantize(bytes.subarray(b * ref.bytes, (b + 1) * ref.bytes)));
      }
    });
  }
});
