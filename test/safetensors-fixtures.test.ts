/** The fixture builders are the reference for everything else, so they get checked against known values. */
import { describe, expect, it } from 'vitest';
import {
  bf16BitsFromF64, buildSafetensors, decodeValues, encodeValues, f16BitsFromF64, roundForDType,
  ALL_FIXTURE_DTYPES, seededRandom, randomValues,
} from './helpers/fixtures.js';

describe('fixture encoders', () => {
  it('round f64 to bf16 once, not via f32', () => {
    // 1 + 2^-8 + 2^-30: to f32 it becomes 1 + 2^-8 (a bf16 tie), which would round to 1; directly it is above the tie.
    const x = 1 + 2 ** -8 + 2 ** -30;
    expect(bf16BitsFromF64(x)).toBe(0x3f81);
    expect(bf16BitsFromF64(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(bf16BitsFromF64(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(bf16BitsFromF64(-0)).toBe(0x8000);
    expect(bf16BitsFromF64(Infinity)).toBe(0x7f80);
    expect(bf16BitsFromF64(3.5e38)).toBe(0x7f80);
    expect(bf16BitsFromF64(NaN)).toBe(0x7fc0);
    expect(bf16BitsFromF64(2 ** -133)).toBe(0x0001); // smallest subnormal
    expect(bf16BitsFromF64(2 ** -134)).toBe(0x0000); // tie with zero → even
    expect(bf16BitsFromF64(2 ** -134 * 1.0001)).toBe(0x0001);
  });

  it('agree with the f16 library on the f16 grid for random doubles', () => {
    const rand = seededRandom(7);
    for (let i = 0; i < 20000; i++) {
      const x = (rand() * 2 - 1) * 2 ** Math.floor(rand() * 40 - 28);
      const viaBits = decodeValues(encodeValues([x], 'F16'), 'F16')[0];
      expect(roundForDType(x, 'F16')).toBe(viaBits);
      expect(f16BitsFromF64(x)).toBe(new Uint16Array(encodeValues([x], 'F16').buffer)[0]);
    }
  });

  it('decode what they encode for every dtype', () => {
    const rand = seededRandom(11);
    const values = Array.from(randomValues(257, rand, 100), (v) => Math.round(v));
    for (const dtype of ALL_FIXTURE_DTYPES) {
      const input = dtype.startsWith('U') ? values.map(Math.abs) : dtype === 'BOOL' ? values.map((v) => (v > 0 ? 1 : 0)) : values;
      const wanted = input.map((v) => roundForDType(v, dtype));
      expect(Array.from(decodeValues(encodeValues(input, dtype), dtype)), dtype).toEqual(wanted);
    }
  });

  it('encode known 8-bit floats', () => {
    expect(Array.from(encodeValues([1, -2, 448, 500, 0.001953125], 'F8_E4M3'))).toEqual([0x38, 0xc0, 0x7e, 0x7f, 0x01]);
    expect(Array.from(encodeValues([1, -2, 57344, 1e6, 2 ** -16], 'F8_E5M2'))).toEqual([0x3c, 0xc0, 0x7b, 0x7c, 0x01]);
  });

  it('lay out a safetensors file with an 8-byte-aligned header', () => {
    const bytes = buildSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: [1, 2] }], { k: 'v' });
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    expect(header).toEqual({ __metadata__: { k: 'v' }, w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
    expect(Array.from(decodeValues(bytes.subarray(8 + headerLength), 'F32'))).toEqual([1, 2]);
  });
});
