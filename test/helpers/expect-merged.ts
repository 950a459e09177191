/**
 * Merged values against float64 truth: every element the correctly rounded value of the truth in
 * the output dtype, or within one ulp of it (f32 work between steps may miss a near-tie); f32
 * outputs within 1e-5 of the tensor's scale; and almost all of a 16- or 8-bit tensor bit-exact.
 */
import { expect } from 'vitest';
import { roundF8Saturating, roundForDType, type FixtureDType } from './fixtures.js';

const FORMAT: Partial<Record<FixtureDType, [mantissa: number, minExponent: number]>> = {
  F16: [10, -14], BF16: [7, -126], F8_E4M3: [3, -6], F8_E5M2: [2, -14],
};

export function expectMerged(got: ArrayLike<number>, exact: ArrayLike<number>, dtype: FixtureDType, what: string): void {
  expect(got.length, what).toBe(exact.length);
  let scale = 0;
  for (let i = 0; i < exact.length; i++) scale = Math.max(scale, Math.abs(exact[i]));
  let exactCount = 0;
  for (let i = 0; i < exact.length; i++) {
    const want = dtype === 'F8_E4M3' || dtype === 'F8_E5M2' ? roundF8Saturating(exact[i], dtype) : roundForDType(exact[i], dtype);
    if (got[i] === want) {
      exactCount++;
      continue;
    }
    let ulp: number;
    if (dtype === 'F32') ulp = 1e-5 * scale;
    else {
      const [mant, minExp] = FORMAT[dtype]!;
      ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.max(Math.abs(exact[i]), 2 ** minExp))), minExp) - mant);
    }
    // f32 work cannot resolve a result that cancels to far below its summands (≈ the tensor's scale).
    if (Math.abs(got[i] - exact[i]) > Math.max(ulp, 1e-6 * scale)) expect.fail(`${what}[${i}]: got ${got[i]}, truth ${exact[i]} (${dtype})`);
  }
  if (dtype !== 'F32' && exact.length >= 64) expect(exactCount / exact.length, what).toBeGreaterThan(0.95);
}
