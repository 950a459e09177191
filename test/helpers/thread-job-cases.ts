/**
 * Inputs of resize, combine and extract at sizes whose products go to the CPU's threads (a million
 * multiply-adds or more: POOL_MIN_PRODUCT), as files (a PEFT folder's two files, a model's one
 * safetensors file) with their float64 truth, for the tests of the jobs' and commands' threads.
 * Llama module names, PEFT factors in F32, F32 base and tuned weights.
 */
import { peftFiles } from './adapter-fixtures.js';
import { buildSafetensors, seededRandom } from './fixtures.js';
import { dense, gaussian, minus, orthonormalColumns, weightedSum, withSpectrum, type Dense } from './svd-reference.js';

export const Q = 'model.layers.0.self_attn.q_proj';
export const O = 'model.layers.0.self_attn.o_proj';

type Files = Record<string, Uint8Array | string>;

/** Values rounded to f32, as the files store them, so the float64 truth is that of the stored factors. */
const f32 = (d: Dense): Dense => ({ ...d, data: d.data.map(Math.fround) });
const gaussianDense = (rows: number, cols: number, rand: () => number, scale: number): Dense => f32(dense(rows, cols, () => gaussian(rand) * scale));

/** B = U·diag(s) (out × r) and A = Vᵀ (r × in): an update whose singular values are `s`. */
function spectrumFactors(out: number, inFeatures: number, s: number[], rand: () => number): { b: Dense; a: Dense } {
  const u = orthonormalColumns(out, s.length, rand), v = orthonormalColumns(inFeatures, s.length, rand);
  return {
    b: f32(dense(out, s.length, (i, k) => u[k][i] * s[k])),
    a: f32(dense(s.length, inFeatures, (k, j) => v[k][j])),
  };
}

export interface ThreadJobCases {
  /** A rank-32 update of known singular values on a 1024 × 1024 q_proj (α = r), to be cut to rank 8. */
  resize: { adapter: Files; rank: 8; truth: Record<string, Dense>; singularValues: number[] };
  /**
   * Two rank-16 adapters, `one` on q_proj and o_proj (α = 32), `two` on q_proj (α = 8), to be
   * combined as 1·one − 0.5·two by svd at rank 32: their sum, whole.
   */
  combine: { one: Files; two: Files; weights: [1, -0.5]; rank: 32; truth: Record<string, Dense> };
  /** A planted rank-8 difference between a 512 × 1024 q_proj base and its tuned weights, to be extracted at rank 8. */
  extract: { base: Files; tuned: Files; rank: 8; truth: Record<string, Dense>; singularValues: number[] };
}

export function threadJobCases(): ThreadJobCases {
  const rand = seededRandom(41);
  const spectrum = Array.from({ length: 32 }, (_, i) => 2 * 0.85 ** i);
  const big = spectrumFactors(1024, 1024, spectrum, rand);
  // The best rank-8 approximation: the first 8 columns of B times the first 8 rows of A (α = r).
  const b8 = dense(1024, 8, (i, k) => big.b.data[i * 32 + k]), a8 = dense(8, 1024, (k, j) => big.a.data[k * 1024 + j]);
  const resizeTruth = weightedSum([{ b: b8, a: a8, scale: 1 }]);

  const one = { q: { b: gaussianDense(1024, 16, rand, 0.05), a: gaussianDense(16, 1024, rand, 0.05) }, o: { b: gaussianDense(1024, 16, rand, 0.05), a: gaussianDense(16, 1024, rand, 0.05) } };
  const two = { q: { b: gaussianDense(1024, 16, rand, 0.05), a: gaussianDense(16, 1024, rand, 0.05) } };

  const base = gaussianDense(512, 1024, rand, 0.02);
  const planted = [4, 3, 2, 1.5, 1, 0.5, 0.25, 0.125];
  const diff = withSpectrum(512, 1024, planted, rand);
  const tuned = f32(dense(512, 1024, (i, j) => base.data[i * 1024 + j] + diff.data[i * 1024 + j]));
  const model = (w: Dense) => ({ 'model.safetensors': buildSafetensors([{ name: `${Q}.weight`, dtype: 'F32', shape: [512, 1024], data: w.data }]) });

  return {
    resize: { adapter: peftFiles([{ name: Q, ...big }], { r: 32, lora_alpha: 32 }), rank: 8, truth: { [Q]: resizeTruth }, singularValues: spectrum },
    combine: {
      one: peftFiles([{ name: Q, ...one.q }, { name: O, ...one.o }], { r: 16, lora_alpha: 32, target_modules: ['q_proj', 'o_proj'] }),
      two: peftFiles([{ name: Q, ...two.q }], { r: 16, lora_alpha: 8 }),
      weights: [1, -0.5], rank: 32,
      truth: {
        [Q]: weightedSum([{ ...one.q, scale: 2 }, { ...two.q, scale: -0.5 * 0.5 }]),
        [O]: weightedSum([{ ...one.o, scale: 2 }]),
      },
    },
    // The difference the files hold (tuned rounded to f32), in float64.
    extract: { base: model(base), tuned: model(tuned), rank: 8, truth: { [Q]: minus(tuned, base) }, singularValues: planted },
  };
}
