/**
 * The error bounds behind the correct rounding, and the constants the kernels get.
 *
 * What "exact" means here. An op's inputs are numbers: W's and the factors' decoded values (for
 * factors derived from the stored ones, LoHa's Khatri–Rao products, LoKr's krons and VeRA's scaled
 * projections, their float64 values, each a product of two f32 values: LowRankTerm.exact), each
 * term's scale (a double), a trailing scale step's factors. Its exact result is the real number
 * x = f · (w + Σ_t s_t · Σ_k b_t[o,k] · a_t[k,i]) (f = 1 without a scale step), which is a
 * dyadic rational. An output is correct when it is x rounded once to the output dtype, to nearest
 * with ties to even (fp8 saturating at its largest finite value). Three tiers get there:
 *
 * 1. The kernels (WebAssembly, WGSL) compute V in f32 and a bound B ≥ |V − x| per element, and
 *    list the elements for which a rounding boundary of the output may lie within B of V
 *    (float-formats.ts: roundingIsCertain). For every other element, V and x round alike.
 * 2. The host recomputes listed elements in float64 with a bound E (below); most are decided.
 * 3. The rest (exact ties, extreme cancellation) are computed exactly (dyadic.ts).
 *
 * Tier 1, the f32 bound. Notation: u is the unit roundoff (2^-24 for f32 rounded to nearest; on
 * WebGPU, whose f32 operations are only faithfully rounded, 2^-23), l_k and r_k the k-th values of
 * the element's row of `left` and column of `right` (k over all terms' ranks, R in all; one of the
 * two carries the term's scale), T = Σ_k |l_k r_k|. Facts used (Higham, Accuracy and Stability,
 * ch. 2–3): fl(a ∘ b) = (a ∘ b)(1 + δ), |δ| ≤ u; a sum of n terms in any order has error at most
 * γ_(n−1) Σ|terms|, γ_n = n·u / (1 − n·u).
 * - The stored scaled factor is fl32(fl64(s·b)): relative error at most u + 2^-53 + u·2^-53.
 * - Each product rounds once (≤ u relative), the R products are summed from zero in R − 1 adds:
 *   |S − Σ_k s·b_k·a_k| ≤ ((R − 1)·u + 2u + O(R²u²)) · T ≤ (R + 2) · u · (1 + 2^-10) · T
 *   for R ≤ 2^12 (an FMA only removes roundings).
 * - V = fl(S + w) with w exact: |V − (S + w)| ≤ u · |V| (to nearest; faithful rounding: 2u|S+w|,
 *   which is why WebGPU's u is 2^-23: u·|V|(1 + u) there).
 * - By Cauchy–Schwarz T ≤ ‖l‖₂ · ‖r‖₂. The host computes nL = ‖l‖₂ per row and nR = ‖r‖₂ per
 *   column in f64 and rounds them up to f32 (see roundUpF32).
 * So B = G · nL · nR + U · |V| with G = (R + 2)·u·(1 + 2^-10) and U = u.
 * - A derived factor's value v on the `right` side is stored as fl32(v) = v(1 + ε), |ε| ≤ 2^-24 ≤ u
 *   (rounded on the host). With l_k r_k = s·b_k·v_k·(1 + η_k)(1 + ε_k), the products' distance from
 *   the exact ones is at most (2u + 2^-53 + O(u²))·T instead of (u + 2^-53 + O(u²))·T, so the sum's
 *   error is at most ((R + 2)·u + 2^-53 + O(R²u²))·T ≤ (R + 3)·u·(1 + 2^-10)·T (R·u ≤ 2^-11):
 *   G = (R + 3)·u·(1 + 2^-10) when any term is derived (f32KernelBound's `roundedRight`). On the
 *   left side a derived value is one more double in fl32(fl64(s·b)), whose bound is as above.
 * Underflow: products and
 * sums below 2^-126 have absolute errors up to 2^-150 each (2^-126 where subnormals flush to zero,
 * as WGSL allows), at most 2R + 2 of them. Raising non-zero nL and nR to at least 2^-40 makes
 * G · nL · nR ≥ R · 2^-23 · 2^-80, which covers them (and inputs flushed to zero on a GPU, whose
 * error is at most 2^-126 · Σ(|l_k| + |r_k|) ≤ 2^-126 · √R · (nL + nR)). When nL or nR is 0,
 * every product is exactly 0 and V = w exactly. A factor value rounded to f32 on the host (left,
 * a derived right value, the f64 kernel's parts below) may lose up to 2^-150 to underflow, an error
 * of at most 2^-150·Σ_k |other factor| ≤ 2^-150·√R·(nL + nR)·(1 + u), covered the same way; the
 * norms are taken at least as large as those of the unrounded values, so a row or column whose
 * values all rounded to zero is not taken for zeros (nL, nR ≥ 2^-40 still).
 * The kernels evaluate B in f32 (three roundings) and compare strictly, so G and U carry a further
 * factor 1 + 2^-18; a trailing scale step folded into W and one factor adds one rounding of f·w
 * (≤ u·|f·w| ≤ u·(|V| + (1 + 2u)·T)) and one of the folded factor: G += 2u, U += u.
 *
 * A scale of W alone before the terms (fp8 codes times their scales, PlainOp.baseScale) makes the
 * exact op's w the product f·w, exact in f64. The f64 kernel multiplies W by it in f64, so its
 * bound is W's own; the f32 kernels get W·f rounded to f32, one rounding as for a folded trailing
 * scale, whose bound covers it (the factors stay unrounded here).
 *
 * The f64 kernel (f32 outputs) takes a derived value v of `right`, which it reads as f32, as two
 * rows: hi = fl32(v) and lo = fl32(v − hi) (v − hi is exact in f64, Sterbenz), each with the same
 * left value, so R counts both. |v − hi − lo| ≤ 2^-24·|v − hi| ≤ 2^-48·|v| (plus underflow, as
 * above), and |v| ≤ (|hi| + |lo|)/(1 − 2^-48), so representing v by hi + lo costs at most
 * 2^-48·(1 + 2^-47)·T: with γ_R·T for the products and sums and 2^-53·T for fl64(s·b), the error is
 * at most (R + 1 + 32)·2^-53·(1 + 2^-40)·T, within G = (R + 2 + 32)·2^-53·(1 + 2^-10)
 * (f64KernelBound's `split`).
 *
 * Tier 2, the f64 bound. For a listed element the host sums the products b·a of each term in f64
 * (two f32 values multiply exactly in f64; two derived values, each up to 48 significant bits, do
 * not: one rounding each), scales by s_t, adds the terms to w, and multiplies by f: in all at most
 * R + R_d + n_T + 2 roundings (R_d the summed ranks of derived terms) of numbers bounded by
 * M = |w| + Σ_t |s_t| Σ_k |b a|, so |x̂ − x| ≤ E = (R + R_d + n_T + 3) · 2^-53 · (|f| · M + |x̂|) ·
 * (1 + 2^-20) (the last factor covers the rounding of M's own computation; a rounded product's
 * |b a| is within 2^-53 of the exact one, inside the same factor). A term whose products are all zero adds nothing and
 * rounds nothing; with no other term and no scale step x̂ = w exactly (E = 0), as also in the f64
 * kernel when there are no terms at all (its bound is then 0).
 */

/** 2^-24: f32's unit roundoff to nearest. */
export const U_F32 = 2 ** -24;
/** WGSL's f32 arithmetic is only faithfully rounded (either neighbour): one ulp, 2^-23 relative. */
export const U_WGSL = 2 ** -23;
export const U_F64 = 2 ** -53;
/** The smallest value non-zero row and column norms are raised to (covers underflow, see above). */
export const NORM_FLOOR = 2 ** -40;
/** Compensates the bound's own f32 evaluation and turns ≤ into the kernels' strict compare. */
const SLACK = 1 + 2 ** -18;

export interface KernelBound {
  /** Multiplies nL (the host stores G · nL per row). */
  g: number;
  /** Multiplies |V|. */
  u: number;
}

/**
 * The f32 kernels' bound for `rank` summed rank steps (all terms). `unit` is U_F32 (WebAssembly)
 * or U_WGSL; `folded`: a trailing scale step was folded into W and the factors; `roundedRight`:
 * some values of `right` are derived factors' float64 values rounded to f32 (one more rounding).
 */
export function f32KernelBound(rank: number, unit: number, folded = false, roundedRight = false): KernelBound {
  if (rank > 4096) throw new RangeError(`a rank of ${rank} is past the bound's validity (4096)`);
  return {
    g: ((rank + (roundedRight ? 3 : 2)) * unit * (1 + 2 ** -10) + (folded ? 2 * unit : 0)) * SLACK,
    u: unit * (folded ? 2 : 1) * SLACK,
  };
}

/**
 * The f64 kernel's bound (f32 outputs): left in f64 is fl64(s·b) (one rounding), each product of
 * it with an f32 value rounds once, R − 1 adds, then w: G = (R + 2)·2^-53·(1 + 2^-10), U = 2^-53.
 * `split`: derived values are held as two f32 parts (hi + lo within 2^-48 of the value), R counting
 * both: G = (R + 2 + 32)·2^-53·(1 + 2^-10).
 */
export function f64KernelBound(rank: number, split = false): KernelBound {
  return { g: (rank + 2 + (split ? 32 : 0)) * U_F64 * (1 + 2 ** -10) * SLACK, u: U_F64 * SLACK };
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** The smallest f32 at or above x ≥ 0. */
export function roundUpF32(x: number): number {
  f32[0] = x;
  if (f32[0] >= x) return f32[0];
  f32Bits[0] += 1; // the next f32 up (x > 0, so its bits are positive)
  return f32[0];
}

/**
 * A row's or column's 2-norm from its f64 sum of squares, as the bound uses it: rounded up past
 * the f64 evaluation's own error (under 2^-45 relative for any length below 2^40), 0 kept as 0
 * (the products are then exactly 0), anything else at least NORM_FLOOR.
 */
export function boundNorm(sumOfSquares: number): number {
  if (sumOfSquares === 0) return 0;
  return Math.max(Math.sqrt(sumOfSquares) * (1 + 2 ** -40), NORM_FLOOR);
}
