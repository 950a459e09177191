/**
 * Merges built to land on the output dtype's rounding boundaries. With W on the grid around 1 (or
 * in the subnormal range) and every product a multiple of a quarter grid step, a quarter of the
 * exact results are ties (odd multiples of half a step). Variants push them a hair off the tie
 * (2^-60 of a step, below what even f64 sums resolve), cancel large terms against each other, or
 * do both with several adapters.
 */
import type { FloatDType } from '../../src/dtype.js';
import type { LowRankTerm, MergeOp } from '../../src/engine/merge-op.js';
import { encodeValues, seededRandom } from './fixtures.js';

export const TIE_DTYPES: FloatDType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'];

/** log2 of the grid step on [1, 2), and of the smallest subnormal step. */
const STEP: Record<FloatDType, [number, number]> = {
  F32: [-23, -149], F16: [-10, -24], BF16: [-7, -133], F8_E4M3: [-3, -9], F8_E5M2: [-2, -16],
};

function term(rank: number, scale: number, a: number[], b: number[]): LowRankTerm {
  return { rank, scale, a: { dtype: 'F32', data: encodeValues(a, 'F32') }, b: { dtype: 'F32', data: encodeValues(b, 'F32') } };
}

/**
 * Ops into `out`: ties around 1, near ties, cancellation with two adapters, and ties in the
 * subnormal range (f16 and fp8), each rows × cols with rank-3 terms of small integers.
 */
export function tieOps(out: FloatDType, seed: number, rows = 24, cols = 40): MergeOp[] {
  const rand = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const [stepExp, subExp] = STEP[out];
  const ops: MergeOp[] = [];
  const rank = 3;
  const make = (name: string, baseExp: number, withHair: boolean, cancel: boolean): MergeOp => {
    const step = 2 ** baseExp;
    // W: 1 + j·step (or j·step in the subnormal range: baseExp is the subnormal step there).
    const w = Array.from({ length: rows * cols }, () => (baseExp === stepExp ? 1 : 0) + int(0, 60) * step);
    // Products b·a = (i·2^-2)·(j·2^-2) with scale step·2^-? so that every product is a multiple of step/4.
    const a = Array.from({ length: rank * cols }, () => int(-3, 3) / 4);
    const b = Array.from({ length: rows * rank }, () => int(-3, 3) / 4);
    const s = step * 4; // (i/4)(j/4)·4·step = i·j·step/4
    const terms: LowRankTerm[] = [term(rank, s, a, b)];
    if (cancel) {
      // A large adapter and its negation (weights +1 and −1): the sum of its products cancels
      // exactly, but f32 sums of them lose everything below their size.
      const big = Array.from({ length: rank * cols }, () => int(-7, 7) * 64);
      const bb = Array.from({ length: rows * rank }, () => int(-7, 7));
      terms.push(term(rank, s, big, bb), term(rank, -s, big, bb));
    }
    if (withHair) {
      // ±2^-60 of a step on every element: exact results just beside the ties, closer than f64 resolves.
      const hair = Array.from({ length: cols }, () => (rand() < 0.5 ? -1 : 1));
      const ones = Array.from({ length: rows }, () => (rand() < 0.5 ? -1 : 1));
      terms.push(term(1, step * 2 ** -60, hair, ones));
    }
    return {
      name, rows, cols, layout: 'out-in', outDtype: out,
      base: { dtype: 'F32', data: encodeValues(w, 'F32') },
      terms,
    };
  };
  ops.push(make(`${out} ties`, stepExp, false, false));
  ops.push(make(`${out} near ties`, stepExp, true, false));
  ops.push(make(`${out} cancelling adapters`, stepExp, false, true));
  ops.push(make(`${out} cancelling adapters near ties`, stepExp, true, true));
  // f32 subnormals are f32 inputs' own grid: ties there cannot be built from f32 W; the others can.
  if (out !== 'F32' && out !== 'BF16') ops.push(make(`${out} subnormal ties`, subExp, true, false));
  return ops;
}
