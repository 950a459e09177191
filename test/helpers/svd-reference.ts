/**
 * Float64 truth for the adapter algebra, written plainly: dense products, and singular values as
 * square roots of the eigenvalues of the Gram matrix by the classical two-sided Jacobi method
 * (a different algorithm from the library's one-sided Jacobi). The optimal rank-k error follows
 * from Eckart–Young: ‖D − D_k‖²_F = Σ_{i>k} σᵢ².
 */
import type { WrittenModule } from '../../src/formats/adapter-writer.js';

export interface Dense {
  rows: number;
  cols: number;
  /** row-major f64 */
  data: Float64Array;
}

export function dense(rows: number, cols: number, f: (i: number, j: number) => number): Dense {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[i * cols + j] = f(i, j);
  return { rows, cols, data };
}

export function product(a: Dense, b: Dense): Dense {
  if (a.cols !== b.rows) throw new Error('shapes');
  return dense(a.rows, b.cols, (i, j) => {
    let s = 0;
    for (let k = 0; k < a.cols; k++) s += a.data[i * a.cols + k] * b.data[k * b.cols + j];
    return s;
  });
}

/** Σ scale·B·A over the terms (all of one shape), in float64: a weighted sum of LoRA updates. */
export function weightedSum(terms: readonly { b: Dense; a: Dense; scale: number }[]): Dense {
  const out = dense(terms[0].b.rows, terms[0].a.cols, () => 0);
  for (const { a, b, scale } of terms) {
    const ba = product(b, a);
    for (let i = 0; i < out.data.length; i++) out.data[i] += scale * ba.data[i];
  }
  return out;
}

export function fromF32(rows: number, cols: number, data: Float32Array | ArrayLike<number>): Dense {
  return { rows, cols, data: Float64Array.from(data as ArrayLike<number>) };
}

export function frob2(d: Dense): number {
  let s = 0;
  for (const x of d.data) s += x * x;
  return s;
}

export function minus(a: Dense, b: Dense): Dense {
  return dense(a.rows, a.cols, (i, j) => a.data[i * a.cols + j] - b.data[i * b.cols + j]);
}

/** Eigenvalues of a symmetric matrix (row-major n × n), descending, by cyclic two-sided Jacobi. */
export function symmetricEigenvalues(n: number, input: Float64Array): number[] {
  const a = Float64Array.from(input);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    let diag = 0;
    for (let p = 0; p < n; p++) diag += a[p * n + p] ** 2;
    if (off <= 1e-30 * diag) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(a[i * n + i]);
  return out.sort((x, y) => y - x);
}

/** Singular values of d, descending (min(rows, cols) of them). */
export function singularValues(d: Dense): number[] {
  const small = Math.min(d.rows, d.cols);
  const g = new Float64Array(small * small);
  const wide = d.cols > d.rows; // Gram of the smaller side
  for (let i = 0; i < small; i++) {
    for (let j = i; j < small; j++) {
      let s = 0;
      if (wide) for (let k = 0; k < d.cols; k++) s += d.data[i * d.cols + k] * d.data[j * d.cols + k];
      else for (let k = 0; k < d.rows; k++) s += d.data[k * d.cols + i] * d.data[k * d.cols + j];
      g[i * small + j] = s;
      g[j * small + i] = s;
    }
  }
  return symmetricEigenvalues(small, g).map((x) => Math.sqrt(Math.max(0, x)));
}

/** ‖D − D_k‖_F, the smallest error any rank-k matrix can have. */
export function optimalError(d: Dense, k: number): number {
  const s = singularValues(d);
  let tail = 0;
  for (let i = k; i < s.length; i++) tail += s[i] * s[i];
  return Math.sqrt(tail);
}

/** A matrix with chosen singular values: U·diag(s)·Vᵀ from Gram–Schmidt-orthonormalised Gaussians. */
export function withSpectrum(rows: number, cols: number, s: number[], random: () => number): Dense {
  const u = orthonormalColumns(rows, s.length, random);
  const v = orthonormalColumns(cols, s.length, random);
  return dense(rows, cols, (i, j) => {
    let x = 0;
    for (let k = 0; k < s.length; k++) x += u[k][i] * s[k] * v[k][j];
    return x;
  });
}

/** k orthonormal columns of length n, each a Gram–Schmidt-orthonormalised Gaussian (twice over). */
export function orthonormalColumns(n: number, k: number, random: () => number): Float64Array[] {
  const cols: Float64Array[] = [];
  for (let c = 0; c < k; c++) {
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = gaussian(random);
    for (let pass = 0; pass < 2; pass++) {
      for (const w of cols) {
        let d = 0;
        for (let i = 0; i < n; i++) d += v[i] * w[i];
        for (let i = 0; i < n; i++) v[i] -= d * w[i];
      }
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) v[i] /= norm;
    cols.push(v);
  }
  return cols;
}

export function gaussian(random: () => number): number {
  const u1 = 1 - random(), u2 = random();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * A dense orthogonal n × n matrix (n a power of two) as a transform: x ↦ S₃·H·Π·S₂·H·S₁·x with
 * random signs S, a random permutation Π and the orthonormal Walsh–Hadamard matrix H. Orthogonal to
 * f64 rounding, and its entries look Gaussian; applying it costs n·log n instead of n².
 */
export function randomOrthogonalTransform(n: number, random: () => number): (x: Float64Array) => void {
  if (n < 1 || (n & (n - 1)) !== 0) throw new Error(`${n} is not a power of two`);
  const signs = () => Float64Array.from({ length: n }, () => (random() < 0.5 ? -1 : 1));
  const [s1, s2, s3] = [signs(), signs(), signs()];
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const scratch = new Float64Array(n);
  const hadamard = (x: Float64Array) => {
    for (let h = 1; h < n; h *= 2) {
      for (let i = 0; i < n; i += 2 * h) {
        for (let j = i; j < i + h; j++) {
          const a = x[j], b = x[j + h];
          x[j] = a + b;
          x[j + h] = a - b;
        }
      }
    }
    const norm = 1 / Math.sqrt(n);
    for (let i = 0; i < n; i++) x[i] *= norm;
  };
  return (x) => {
    for (let i = 0; i < n; i++) x[i] *= s1[i];
    hadamard(x);
    for (let i = 0; i < n; i++) scratch[perm[i]] = x[i] * s2[i];
    x.set(scratch);
    hadamard(x);
    for (let i = 0; i < n; i++) x[i] *= s3[i];
  };
}

/**
 * rows × cols (powers of two) with exactly the singular values `s` (to f64 rounding):
 * P_rows · [diag(s) · first |s| rows of P_colsᵀ; 0], P random orthogonal transforms. Unlike
 * withSpectrum it costs rows·cols·log(rows), so realistic sizes stay fast; the optimal rank-k
 * error is then √(Σ_{i≥k} sᵢ²) with no SVD needed.
 */
export function withSpectrumLarge(rows: number, cols: number, s: ArrayLike<number>, random: () => number): Dense {
  if (s.length > Math.min(rows, cols)) throw new Error('more singular values than the smaller side');
  const left = randomOrthogonalTransform(rows, random);
  const right = randomOrthogonalTransform(cols, random);
  const data = new Float64Array(rows * cols);
  const v = new Float64Array(cols);
  for (let i = 0; i < s.length; i++) {
    // Row i of diag(s)·Vᵀ: s_i times column i of P_cols.
    v.fill(0);
    v[i] = 1;
    right(v);
    for (let j = 0; j < cols; j++) data[i * cols + j] = s[i] * v[j];
  }
  const column = new Float64Array(rows);
  for (let j = 0; j < cols; j++) {
    for (let i = 0; i < rows; i++) column[i] = data[i * cols + j];
    left(column);
    for (let i = 0; i < rows; i++) data[i * cols + j] = column[i];
  }
  return { rows, cols, data };
}

/** √(Σ_{i≥k} sᵢ²) for singular values s: the Eckart–Young optimum of a matrix built with them. */
export function tailNorm(s: ArrayLike<number>, k: number): number {
  let tail = 0;
  for (let i = k; i < s.length; i++) tail += s[i] * s[i];
  return Math.sqrt(tail);
}

/** A written low-rank module's update as its loaders apply it, α/r · up · down, in float64. */
export function writtenUpdate(m: WrittenModule): Dense {
  const up = { rows: m.upShape[0], cols: m.rank, data: Float64Array.from(m.up) };
  const down = { rows: m.rank, cols: m.down.length / m.rank, data: Float64Array.from(m.down) };
  const p = product(up, down);
  return dense(p.rows, p.cols, (i, j) => (m.alpha / m.rank) * p.data[i * p.cols + j]);
}

/** ‖got − want‖_F / ‖want‖_F. */
export function relativeError(got: Dense, want: Dense): number {
  return Math.sqrt(frob2(minus(got, want)) / frob2(want));
}
