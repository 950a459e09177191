/**
 * Merged values whose float64 pass overflows (a scale near float64's largest times factors of
 * 1e10), recomputed for a refusal's count (mergeStepsOnCpu keeping NaN/Inf): rows past every
 * float, rows where two terms cancel back to W exactly (float64 gives Inf − Inf there), rows whose
 * difference of terms is still past float64 or past f32 only, and a factor holding Inf (no exact
 * value: NaN). Each output dtype rounds them as it rounds the exact value: Inf past f16/bf16/f32,
 * fp8 saturated, W itself where the terms cancel. A whole 512 × 512 slab past float64 is counted.
 */
import { describe, expect, it } from 'vitest';
import { mergeStepsOnCpu } from '../src/engine/cpu/cpu-steps.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import type { FloatDType } from '../src/dtype.js';
import { decodeValues } from './helpers/fixtures.js';

const f32Bytes = (v: number[] | Float32Array) => new Uint8Array(Float32Array.from(v).buffer);
/** The largest finite value of each dtype (fp8 saturates there); Inf for the others. */
const PAST: Record<FloatDType, number> = { F32: Infinity, F16: Infinity, BF16: Infinity, F8_E4M3: 448, F8_E5M2: 57344 };

// W (5 × 8, f32, |W| < 1); term 1: s = 1e300, term 2: s = −1e300, both rank 1 on the same A of
// ±1e10 (sign alternating by column), their B by row:
//   row 0: B1 = 1e10, B2 = 0                → W ± 1e320: past float64
//   row 1: B1 = B2 = 1e10                   → W exactly (float64: Inf − Inf)
//   row 2: B1 = 2^33, B2 = 2^33 − 2^13      → W ± 1e300 · 1e10 · 2^13: past float64
//   row 3: B1 = 1, B2 = 1 − 2^-23           → W ± 1e310 · 2^-23 ≈ 1.2e303: past f32, within float64
//   row 4: B1 = Inf, B2 = 0                 → Inf · A: NaN
// and a term 3 (s = 1, A3 = 2^-11, B3 1 in row 5 alone) on a row 5 of W = 1: 1 + 2^-11, an f16 tie
// (rounded to even: 1), exact in f32, which float64 leaves to the exact recomputation.
const COLS = 8;
const W = Array.from({ length: 6 * COLS }, (_, i) => (i >= 5 * COLS ? 1 : Math.fround(Math.sin(i + 1) / 2)));
const A = Array.from({ length: COLS }, (_, c) => Math.fround(c % 2 ? -1e10 : 1e10));
const B1 = [Math.fround(1e10), Math.fround(1e10), 2 ** 33, 1, Infinity, 0];
const B2 = [0, Math.fround(1e10), 2 ** 33 - 2 ** 13, 1 - 2 ** -23, 0, 0];
const op = (outDtype: FloatDType): MergeOp => ({
  name: 'model.layers.0.self_attn.q_proj.weight', rows: 6, cols: COLS, layout: 'out-in', base: { dtype: 'F32', data: f32Bytes(W) }, outDtype,
  terms: [
    { a: { dtype: 'F32', data: f32Bytes(A) }, b: { dtype: 'F32', data: f32Bytes(B1) }, rank: 1, scale: 1e300 },
    { a: { dtype: 'F32', data: f32Bytes(A) }, b: { dtype: 'F32', data: f32Bytes(B2) }, rank: 1, scale: -1e300 },
    { a: { dtype: 'F32', data: f32Bytes(Array(COLS).fill(2 ** -11)) }, b: { dtype: 'F32', data: f32Bytes([0, 0, 0, 0, 0, 1]) }, rank: 1, scale: 1 },
  ],
});

describe.each(['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'] as FloatDType[])('%s', (dtype) => {
  it('each row as its exact value rounds', () => {
    const got = decodeValues(mergeStepsOnCpu(op(dtype), undefined, undefined, true), dtype);
    const sign = (c: number) => (c % 2 ? -1 : 1);
    // W of row 1 in the dtype, through an op with no terms (a plain conversion, rounded once).
    const plain = decodeValues(mergeStepsOnCpu({ ...op(dtype), terms: [] }), dtype);
    const want = Array.from({ length: 6 * COLS }, (_, i) => {
      const [r, c] = [Math.floor(i / COLS), i % COLS];
      if (r === 5) return dtype === 'F32' ? 1 + 2 ** -11 : 1;
      return r === 1 ? plain[i] : r === 4 ? NaN : sign(c) * PAST[dtype];
    });
    expect(Array.from(got)).toEqual(want);
  });
});

it('a 512 × 512 slab past float64 everywhere: every value Inf, with the sign of its product', () => {
  const n = 512;
  const w = Float32Array.from({ length: n * n }, (_, i) => Math.fround(Math.cos(i) / 8));
  const a = Float32Array.from({ length: n }, (_, c) => (c % 3 ? 1e10 : -1e10));
  const b = Float32Array.from({ length: n }, (_, r) => (r % 5 ? 1e10 : -1e10));
  const big: MergeOp = {
    name: 'w', rows: n, cols: n, layout: 'out-in', base: { dtype: 'F32', data: new Uint8Array(w.buffer) }, outDtype: 'F16',
    terms: [{ a: { dtype: 'F32', data: f32Bytes(a) }, b: { dtype: 'F32', data: f32Bytes(b) }, rank: 1, scale: 1e300 }],
  };
  const got = decodeValues(mergeStepsOnCpu(big, undefined, undefined, true), 'F16');
  let wrong = 0;
  for (let i = 0; i < n * n; i++) if (got[i] !== Math.sign(a[i % n] * b[Math.floor(i / n)]) * Infinity) wrong++;
  expect(wrong).toBe(0);
});
