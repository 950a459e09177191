/**
 * Adapter updates written as exact products ΔW = B·A (B: out × r, A: r × in), so that the engine's
 * fused low-rank kernels run them. Conv weights are (out, in, k…) flattened to (out, in·K), column
 * c·K + k for input channel c and kernel position k (K = the product of the kernel dims).
 */
import { identity, kron, matrix, slice, transpose, type Matrix } from './matrix.js';

export interface Factors {
  /** out × rank */
  b: Matrix;
  /** rank × in */
  a: Matrix;
  /**
   * The exact values of factors derived here (products of two f32 values, exact in float64), in
   * the layout of `b.data` and `a.data`, which hold them rounded to f32: present only where that
   * rounding changed a value, so that the merge can take the module's own ΔW.
   */
  exact?: { b: Float64Array; a: Float64Array };
}

/** Factors from their float64 values: f32 matrices, with the values kept where f32 rounds one. */
function derivedFactors(out: number, rank: number, inF: number, b64: Float64Array, a64: Float64Array): Factors {
  const b = matrix(out, rank, b64), a = matrix(rank, inF, a64);
  const rounded = (exact: Float64Array, f32: Float32Array) => exact.some((v, i) => v !== f32[i]);
  return rounded(b64, b.data) || rounded(a64, a.data) ? { b, a, exact: { b: b64, a: a64 } } : { b, a };
}

/** Derived factors take their inputs' f32 values: a product of two of them is exact in float64. */
function f32Inputs(...fs: Factors[]): void {
  if (fs.some((f) => f.exact)) throw new Error('factors with float64 values cannot be multiplied exactly again');
}

/** kron(x, y)'s values in float64 (each a product of two f32 values: exact). */
function kron64(x: Matrix, y: Matrix): Float64Array {
  const cols = x.cols * y.cols;
  const out = new Float64Array(x.rows * y.rows * cols);
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < x.cols; j++) {
      const v = x.data[i * x.cols + j];
      for (let k = 0; k < y.rows; k++) {
        const row = (i * y.rows + k) * cols + j * y.cols;
        for (let l = 0; l < y.cols; l++) out[row + l] = v * y.data[k * y.cols + l];
      }
    }
  }
  return out;
}

export function rankOf(f: Factors): number {
  return f.b.cols;
}

/** A full matrix as a product with the smaller inner dimension: I·W or W·I. */
export function fullAsFactors(w: Matrix): Factors {
  return w.rows <= w.cols ? { b: identity(w.rows), a: w } : { b: w, a: identity(w.cols) };
}

/**
 * kron(W₁, W₂) of two full matrices as factors of the least rank, rank(W₁)·rank(W₂) at most
 * min(a, c)·min(b, d): where that rank allows, kron(W₁, I)·kron(I, W₂) or kron(I, W₁)·kron(W₂, I),
 * whose values are copies of W₁'s and W₂'s (no product to round), else I·W or W·I on each side.
 */
export function fullKronFactors(w1: Matrix, w2: Matrix): Factors {
  const least = Math.min(w1.rows, w1.cols) * Math.min(w2.rows, w2.cols);
  if (w1.cols * w2.rows === least) return kronFactors({ b: w1, a: identity(w1.cols) }, { b: identity(w2.rows), a: w2 });
  if (w1.rows * w2.cols === least) return kronFactors({ b: identity(w1.rows), a: w1 }, { b: w2, a: identity(w2.cols) });
  return kronFactors(fullAsFactors(w1), fullAsFactors(w2));
}

/**
 * kron(B₁A₁, B₂A₂) = kron(B₁, B₂)·kron(A₁, A₂) (the mixed-product property), rank r₁·r₂. Each value
 * of the krons is a product of two f32 values, kept in float64 where f32 would round it.
 * With a conv's W₂ flattened to (out₂, in₂·K), kron(W₁, W₂) flattened is the conv kron that
 * LyCORIS builds (W₁ gets trailing 1×1 kernel dims): element [o₁·out₂ + o₂, (i₁·in₂ + i₂)·K + k].
 */
export function kronFactors(f1: Factors, f2: Factors): Factors {
  f32Inputs(f1, f2);
  return derivedFactors(f1.b.rows * f2.b.rows, f1.b.cols * f2.b.cols, f1.a.cols * f2.a.cols, kron64(f1.b, f2.b), kron64(f1.a, f2.a));
}

/**
 * Rows [r0, r0 + n) of kron(W₁, W₂) (both full), as one dense block in f64: each product of two
 * f32 values is exact there (48 significant bits at most, and no f32 product over- or underflows
 * f64), where f32 would round it before the merge rounds the result.
 */
export function kronRows(w1: Matrix, w2: Matrix, r0: number, n: number): Float64Array {
  const cols = w1.cols * w2.cols;
  const out = new Float64Array(n * cols);
  for (let r = 0; r < n; r++) {
    const o1 = Math.floor((r0 + r) / w2.rows), o2 = (r0 + r) % w2.rows;
    for (let i1 = 0; i1 < w1.cols; i1++) {
      const v = w1.data[o1 * w1.cols + i1];
      const dst = r * cols + i1 * w2.cols;
      for (let i2 = 0; i2 < w2.cols; i2++) out[dst + i2] = v * w2.data[o2 * w2.cols + i2];
    }
  }
  return out;
}

/**
 * Tucker form, LyCORIS's rebuild_tucker: ΔW[p, q, k] = Σ_ij t[i, j, k]·wa[i, p]·wb[j, q], with
 * t (rᵢ, rⱼ, K), wa (rᵢ, P), wb (rⱼ, Q). As a product: B = waᵀ (P × rᵢ) and
 * A[i, q·K + k] = Σ_j t[i, j, k]·wb[j, q] (rᵢ × Q·K). LoHa's hada_t, LoKr's lokr_t2 and LoCon's
 * lora_mid (with wa = lora_upᵀ, wb = lora_down) are all this.
 */
export function tuckerFactors(t: Float32Array, kernel: number, wa: Matrix, wb: Matrix): Factors {
  const ri = wa.rows, rj = wb.rows, q = wb.cols;
  if (t.length !== ri * rj * kernel) throw new RangeError(`Tucker core has ${t.length} values, expected ${ri} × ${rj} × ${kernel}`);
  const a = matrix(ri, q * kernel);
  for (let i = 0; i < ri; i++) {
    for (let c = 0; c < q; c++) {
      for (let k = 0; k < kernel; k++) {
        let s = 0;
        for (let j = 0; j < rj; j++) s += t[(i * rj + j) * kernel + k] * wb.data[j * q + c];
        a.data[i * q * kernel + c * kernel + k] = s;
      }
    }
  }
  return { b: transpose(wa), a };
}

/**
 * LoHa's Hadamard product (B₁A₁) ⊙ (B₂A₂) as the rank-r₁r₂ product of the factors' Khatri–Rao
 * products: B[o, i·r₂ + j] = B₁[o, i]·B₂[o, j], A[i·r₂ + j, c] = A₁[i, c]·A₂[j, c], kept in float64
 * where f32 would round them. The sides' own factors are f32 values (a Tucker side's fold rounded to
 * f32: its rounding stays).
 */
export function hadamardFactors(f1: Factors, f2: Factors): Factors {
  f32Inputs(f1, f2);
  const r1 = rankOf(f1), r2 = rankOf(f2), out = f1.b.rows, inF = f1.a.cols;
  const b = new Float64Array(out * r1 * r2);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < r1; i++) for (let j = 0; j < r2; j++) b[o * r1 * r2 + i * r2 + j] = f1.b.data[o * r1 + i] * f2.b.data[o * r2 + j];
  }
  const a = new Float64Array(r1 * r2 * inF);
  for (let i = 0; i < r1; i++) {
    for (let j = 0; j < r2; j++) {
      const row = (i * r2 + j) * inF;
      for (let c = 0; c < inF; c++) a[row + c] = f1.a.data[i * inF + c] * f2.a.data[j * inF + c];
    }
  }
  return derivedFactors(out, r1 * r2, inF, b, a);
}

/**
 * PEFT VeRA: ΔW = (λ_b ⊙ B[:out, :]) · (λ_d ⊙ A[:, :in]) with the shared vera_A (r × in_max) and
 * vera_B (out_max × r) sliced to the layer; λ_b scales B's rows, λ_d A's rows (products of two f32
 * values, kept in float64 where f32 would round them).
 */
export function veraFactors(sharedA: Matrix, sharedB: Matrix, lambdaB: ArrayLike<number>, lambdaD: ArrayLike<number>, out: number, inF: number): Factors {
  const r = sharedA.rows;
  if (sharedB.cols !== r) throw new RangeError(`vera_B has ${sharedB.cols} columns, vera_A ${r} rows`);
  if (lambdaB.length !== out || lambdaD.length !== r) {
    throw new RangeError(`vera_lambda_b has ${lambdaB.length} values (expected ${out}), vera_lambda_d ${lambdaD.length} (expected ${r})`);
  }
  return derivedFactors(out, r, inF, scaleRows64(slice(sharedB, out, r), lambdaB), scaleRows64(slice(sharedA, r, inF), lambdaD));
}

/** Row i of m times f[i], in float64 (exact where f holds f32 values, as read from a file). */
function scaleRows64(m: Matrix, f: ArrayLike<number>): Float64Array {
  const out = new Float64Array(m.rows * m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out[i * m.cols + j] = f[i] * m.data[i * m.cols + j];
  return out;
}

/**
 * GLoRA's W·a1·a2 on a conv weight acts on the input channel at every kernel position: in the
 * flattened view it is W·kron(a1·a2, I_K) = W·kron(a1, I_K)·kron(a2, I_K). Returns P (in·K × r·K)
 * and Q (r·K × in·K) of the engine's V·P·Q step; K = 1 for linear layers.
 */
export function gloraProjection(a1: Matrix, a2: Matrix, kernel: number): { p: Matrix; q: Matrix } {
  if (kernel === 1) return { p: a1, q: a2 };
  const i = identity(kernel);
  return { p: kron(a1, i), q: kron(a2, i) };
}
