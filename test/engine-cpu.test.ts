/**
 * The CPU backend's pieces that the merge tests reach only by chance: rounding a double once to
 * f16/bf16 (no double rounding through f32), cancellation, and input checks.
 */
import { describe, expect, it } from 'vitest';
import { f64ToBf16Bits, f64ToF16Bits } from '../src/engine/cpu/round-f64.js';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { MergeError } from '../src/errors.js';
import { compareWithReference, encodeValues, randomOp, roundedBits, seededRandom } from './helpers/reference-math.js';

describe('rounding a double once', () => {
  const rand = seededRandom(5);
  /** Doubles just above and below every kind of tie, where going through f32 first would be wrong. */
  function nearTies(bits: number, emin: number, emax: number): number[] {
    const out: number[] = [];
    for (let e = emin; e <= emax; e++) {
      for (let k = 0; k < 6; k++) {
        const tie = (2 ** bits + Math.floor(rand() * 2 ** bits) + 0.5) * 2 ** (e - bits);
        for (const d of [0, 2 ** -40, -(2 ** -40), 2 ** -30, -(2 ** -30)]) out.push(tie * (1 + d), -tie * (1 + d));
      }
    }
    for (let i = 0; i < 5000; i++) out.push((rand() - 0.5) * 2 ** (Math.floor(rand() * 80) - 40));
    return out;
  }

  it('f16: matches the correctly rounded value for ties, near-ties, subnormals and overflow', () => {
    const xs = [...nearTies(10, -25, 15), 65504, 65519.999999, 65520, 2 ** -25, 2 ** -25 * (1 + 2 ** -40), 2 ** -26, 1e-9, Infinity, -Infinity];
    for (const x of xs) expect(f64ToF16Bits(x), `x = ${x}`).toBe(roundedBits(x, 'F16'));
  });

  it('bf16: matches the correctly rounded value for ties, near-ties, subnormals and overflow', () => {
    const xs = [...nearTies(7, -133, 127), 3.4e38, 3.3961e38, 2 ** -133, 2 ** -134 * (1 + 2 ** -40), 1e-45];
    for (const x of xs) expect(f64ToBf16Bits(x), `x = ${x}`).toBe(roundedBits(x, 'BF16'));
  });
});

describe('CPU merge', () => {
  it('a sum that cancels to a tiny value is still exact', async () => {
    // W = 1 + 2^-20, ΔW = -1 exactly: the result 2^-20 must survive (bf16 of it is exact).
    const op = randomOp(1, { rows: 1, cols: 1, ranks: [1], outDtype: 'BF16' });
    op.base = { dtype: 'F32', data: encodeValues([1 + 2 ** -20], 'F32') };
    op.terms[0] = { rank: 1, scale: -1, a: { dtype: 'F32', data: encodeValues([1], 'F32') }, b: { dtype: 'F32', data: encodeValues([1], 'F32') } };
    for (const backend of [new CpuBackend('test', { executor: 'js' }), new CpuBackend('test')]) {
      expect(Array.from(new Uint16Array((await backend.merge(op)).buffer))).toEqual([roundedBits(2 ** -20, 'BF16')]);
    }
  });

  it('Inf after rounding to f16 → NON_FINITE naming the tensor', async () => {
    const op = randomOp(2, { rows: 2, cols: 3, ranks: [1], outDtype: 'F16', name: 'lm_head.weight' });
    new Float32Array(op.base.data.buffer)[4] = 66000;
    await expect(new CpuBackend().merge(op)).rejects.toMatchObject({ code: 'NON_FINITE', message: expect.stringContaining('tensor "lm_head.weight"') });
  });

  it('cancellation → ABORTED', async () => {
    const op = randomOp(3, { rows: 8, cols: 8, ranks: [2] });
    const ctl = new AbortController();
    ctl.abort();
    await expect(new CpuBackend().merge(op, ctl.signal)).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('DoRA column norms on a row slab → PLAN_INVALID', async () => {
    const op = randomOp(4, { rows: 10, cols: 6, ranks: [2], dora: 'in', rowStart: 2, rowCount: 4 });
    await expect(new CpuBackend('test', { executor: 'js' }).merge(op)).rejects.toThrow(MergeError);
    await expect(new CpuBackend('test', { executor: 'js' }).merge(op)).rejects.toThrow(/tensor "w10x6": DoRA norms run across rows/);
  });

  it('a slab outside the matrix → SHAPE_MISMATCH', async () => {
    const op = randomOp(5, { rows: 10, cols: 6, ranks: [2], rowStart: 8, rowCount: 2 });
    op.rowCount = 4;
    await expect(new CpuBackend('test', { executor: 'js' }).merge(op)).rejects.toThrow(/row slab \[8, 12\) is outside its 10 rows/);
  });
});

describe('JS executor (the fallback where WebAssembly SIMD is missing, and DoRA)', () => {
  const backend = new CpuBackend('test', { executor: 'js' });
  it('is selected on request', () => {
    expect(backend.executor).toBe('js');
    expect(backend.description).toContain('JavaScript');
  });
  for (const [i, [baseDtype, outDtype, rows, cols, ranks]] of ([
    ['F16', 'F16', 13, 29, [1]], ['BF16', 'F32', 7, 61, [40, 3]], ['F32', 'BF16', 22, 9, [8]],
  ] as const).entries()) {
    it(`${baseDtype} → ${outDtype}, ${rows}×${cols}, ranks ${ranks.join('+')}: within 1 ulp, f32 within 1e-6`, async () => {
      const op = randomOp(70 + i, { rows, cols, baseDtype, outDtype, ranks: [...ranks] });
      const c = compareWithReference(op, await backend.merge(op));
      if (outDtype === 'F32') expect(c.maxRelError, c.firstMismatch).toBeLessThanOrEqual(1e-6);
      else expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
    });
  }
});
