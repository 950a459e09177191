/**
 * The importance weighting ggml's `quantize_row_*_impl` functions share: a row's (or block's)
 * Σx² in C's f32 order, and per value qw·sqrtf(σ² + x²) with that type's σ².
 */
import { f32 } from './c-float.js';

/** Σ x² over x[from … from+n), summed in index order in f32 as C does. */
export function sumSquares(x: Float32Array, from: number, n: number): number {
  let s = 0;
  for (let j = from; j < from + n; j++) s = f32(s + f32(x[j] * x[j]));
  return s;
}

/** into[0 … n) = qw[at + j]·sqrtf(sigma2 + x[from + j]²), each step rounded to f32. */
export function importanceWeights(x: Float32Array, from: number, qw: Float32Array, at: number, sigma2: number, n: number, into: Float32Array | Float64Array): void {
  for (let j = 0; j < n; j++) {
    const v = x[from + j];
    into[j] = f32(qw[at + j] * f32(Math.sqrt(f32(sigma2 + f32(v * v)))));
  }
}

/** Σ values[0 … n) in index order in f32: a block's summed importance weights, as C sums them. */
export function sumF32(values: Float32Array, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s = f32(s + values[j]);
  return s;
}
