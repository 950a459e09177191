/**
 * Float64 truth for whole-file merges, written plainly: each base tensor plus Σ scale · (B·A) on
 * the rows each term lands on, compared with the merged file's values rounded once to its dtype.
 * Imports nothing from the library.
 */
import { expect } from 'vitest';
import { roundF8Saturating, roundForDType, type DecodedTensor, type FixtureDType, type FixtureTensor } from './fixtures.js';

export interface TruthTerm {
  baseKey: string;
  /** down / lora_A: (r, in…) as stored. */
  a: DecodedTensor;
  /** up / lora_B: (out, r…) as stored. */
  b: DecodedTensor;
  scale: number;
  /** ΔW rows [src, src + count) go to base rows [dst, dst + count); absent: one to one. */
  rows?: { src: number; dst: number; count: number }[];
}

/** The exact merged values of one base tensor, as doubles. */
export function trueMerge(w: DecodedTensor, terms: TruthTerm[]): Float64Array {
  const out = w.values.slice();
  const rows = w.shape[0];
  const cols = out.length / rows;
  for (const t of terms) {
    const r = t.a.shape[0];
    const segments = t.rows ?? [{ src: 0, dst: 0, count: rows }];
    for (const { src, dst, count } of segments) {
      for (let i = 0; i < count; i++) {
        for (let c = 0; c < cols; c++) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += t.b.values[(src + i) * r + k] * t.a.values[k * cols + c];
          out[(dst + i) * cols + c] += t.scale * sum;
        }
      }
    }
  }
  return out;
}

/** One unit in the last place of `x` in a float dtype (its normal range). */
export function ulpOf(x: number, dtype: FixtureDType): number {
  const bits: Partial<Record<FixtureDType, [number, number]>> = {
    F32: [23, -126], F16: [10, -14], BF16: [7, -126], F8_E4M3: [3, -6], F8_E5M2: [2, -14],
  };
  const [mant, minExp] = bits[dtype]!;
  const e = x === 0 ? minExp : Math.max(Math.floor(Math.log2(Math.abs(x))), minExp);
  return 2 ** (e - mant);
}

/**
 * Checks every base tensor of `merged`: those with terms against the truth (the correctly rounded
 * value, or within one ulp of it: f32 accumulation may miss a near-tie), the rest unchanged.
 */
export function expectMergedFile(base: Map<string, DecodedTensor>, merged: Map<string, DecodedTensor>, terms: TruthTerm[]): void {
  expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
  let exact = 0;
  let count = 0;
  for (const [key, w] of base) {
    const got = merged.get(key)!;
    const mine = terms.filter((t) => t.baseKey === key);
    if (mine.length === 0) {
      expect(got.bytes, `${key} is copied unchanged`).toEqual(w.bytes);
      continue;
    }
    const truth = trueMerge(w, mine);
    const rounded = (x: number) => (got.dtype === 'F8_E4M3' || got.dtype === 'F8_E5M2' ? roundF8Saturating(x, got.dtype) : roundForDType(x, got.dtype));
    for (let i = 0; i < truth.length; i++) {
      const want = rounded(truth[i]);
      count++;
      if (got.values[i] === want || (Number.isNaN(want) && Number.isNaN(got.values[i]))) {
        exact++;
        continue;
      }
      expect(Math.abs(got.values[i] - truth[i]), `${key}[${i}]: got ${got.values[i]}, truth ${truth[i]}`).toBeLessThanOrEqual(ulpOf(truth[i], got.dtype));
    }
  }
  expect(exact / Math.max(count, 1)).toBeGreaterThanOrEqual(0.99);
}

/**
 * Checks one merged tensor against its float64 truth: each value the correctly rounded truth, or
 * within one ulp of it (f32 accumulation may miss a near-tie), and at least 99 % exactly rounded.
 */
export function expectValues(key: string, got: DecodedTensor, truth: ArrayLike<number>): void {
  expect(got.values.length, `${key}: element count`).toBe(truth.length);
  let exact = 0;
  for (let i = 0; i < truth.length; i++) {
    const want = roundForDType(truth[i], got.dtype);
    if (got.values[i] === want || (Number.isNaN(want) && Number.isNaN(got.values[i]))) {
      exact++;
      continue;
    }
    expect(Math.abs(got.values[i] - truth[i]), `${key}[${i}]: got ${got.values[i]}, truth ${truth[i]}`).toBeLessThanOrEqual(ulpOf(truth[i], got.dtype));
  }
  expect(exact / Math.max(truth.length, 1), `${key}: share exactly rounded`).toBeGreaterThanOrEqual(0.99);
}

/** ΔW = B·A of stored factors (B: out × r, A: r × in), as doubles, row-major out × in. */
export function product(b: DecodedTensor, a: DecodedTensor): Float64Array {
  const out = b.shape[0];
  const r = a.shape[0];
  const cols = a.values.length / r;
  const delta = new Float64Array(out * cols);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < cols; c++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += b.values[o * r + k] * a.values[k * cols + c];
      delta[o * cols + c] = sum;
    }
  }
  return delta;
}

/** W + s·ΔW, as doubles. */
export function plus(w: DecodedTensor, s: number, delta: ArrayLike<number>): Float64Array {
  return w.values.map((v, i) => v + s * delta[i]);
}

/**
 * Each PEFT LoRA module at `paths` (its factors `base_model.model.<path>.lora_A/B.weight` in
 * `adapter`) merged by name onto `<path>.weight`: W + s·B·A, rounded once.
 */
export function expectPeftLorasByName(
  merged: ReadonlyMap<string, DecodedTensor>, base: ReadonlyMap<string, DecodedTensor>, adapter: ReadonlyMap<string, DecodedTensor>, paths: readonly string[], s: number,
): void {
  expectPeftLorasAt(merged, base, adapter, paths.map((path) => [path, `${path}.weight`]), s);
}

/** As expectPeftLorasByName, for modules whose base tensor a key map renames: [module path, base key] pairs. */
export function expectPeftLorasAt(
  merged: ReadonlyMap<string, DecodedTensor>, base: ReadonlyMap<string, DecodedTensor>, adapter: ReadonlyMap<string, DecodedTensor>,
  pairs: readonly (readonly [path: string, key: string])[], s: number,
): void {
  for (const [path, key] of pairs) {
    expectValues(key, merged.get(key)!, plus(base.get(key)!, s, product(adapter.get(`base_model.model.${path}.lora_B.weight`)!, adapter.get(`base_model.model.${path}.lora_A.weight`)!)));
  }
}

/**
 * Expert e's ΔW (out × in) from PEFT's ParamWrapper factors on (E, out, in) experts (PEFT ≥ 0.19.1):
 * lora_A (r·E, in) with expert e's rows [e·r, (e+1)·r), lora_B (out, r·E) with its column k at k·E + e.
 */
export function expertDelta(A: DecodedTensor, B: DecodedTensor, e: number, E: number, r: number): Float64Array {
  const cols = A.shape[1];
  const rows = B.shape[0];
  const M = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < cols; i++) {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += B.values[o * r * E + k * E + e] * A.values[(e * r + k) * cols + i];
      M[o * cols + i] = sum;
    }
  }
  return M;
}

/**
 * Q8_0 output against the truth: each block of 32 is the reference quantizer's (d = amax/127, q =
 * round(x/d), d stored as f16), so each value lies within 0.5·d (plus d's f16 rounding, 127·d·2^-11).
 */
export function expectQ8Near(got: Float64Array, want: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let b = 0; b < want.length / 32; b++) {
    let amax = 0;
    for (let i = b * 32; i < (b + 1) * 32; i++) amax = Math.max(amax, Math.abs(want[i]));
    const bound = 0.57 * (amax / 127) + 1e-7;
    for (let i = b * 32; i < (b + 1) * 32; i++) {
      if (Math.abs(got[i] - want[i]) > bound) expect.fail(`${what}[${i}]: got ${got[i]}, truth ${want[i]} (Q8_0 bound ${bound})`);
    }
  }
}

/**
 * A merged model against its base and the float64 truth of the tensors the merge changes: the same
 * tensor names; each changed tensor in its base's dtype, every element its truth rounded once
 * (within one ulp) and, unless `mostChanged` is false, more than half of them moved from the base;
 * every other tensor copied value for value.
 */
export function expectWeightsMerged(
  merged: Map<string, DecodedTensor>, truth: Map<string, Float64Array>, weights: readonly FixtureTensor[], what: string, { mostChanged = true } = {},
): void {
  expect([...merged.keys()].sort()).toEqual(weights.map((t) => t.name).sort());
  for (const t of weights) {
    const got = merged.get(t.name)!;
    const stored = t.data as ArrayLike<number>;
    const want = truth.get(t.name);
    if (!want) {
      expect([...got.values], `${what}: ${t.name} is copied unchanged`).toEqual([...Float64Array.from(stored)]);
      continue;
    }
    expect(got.dtype, `${what}: ${t.name}'s dtype`).toBe(t.dtype);
    let changed = 0;
    for (let i = 0; i < want.length; i++) {
      if (got.values[i] !== stored[i]) changed++;
      if (got.values[i] === roundForDType(want[i], t.dtype)) continue;
      expect(Math.abs(got.values[i] - want[i]), `${what}: ${t.name}[${i}]: got ${got.values[i]}, truth ${want[i]}`).toBeLessThanOrEqual(ulpOf(want[i], t.dtype));
    }
    if (mostChanged) expect(changed, `${what}: ${t.name} changed`).toBeGreaterThan(want.length / 2);
  }
}
