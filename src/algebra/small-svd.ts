/**
 * Singular value decomposition of small f64 matrices (the cores of the factored SVDs, Gram
 * matrices): one-sided Jacobi (Hestenes), which is accurate to the last bits of f64 even for tiny
 * singular values. It costs about 8 sweeps of m·n² multiply-adds: meant for n up to a few hundred.
 */
import type { Mat64 } from './matrix.js';

export interface SmallSvd {
  /** m × k, orthonormal columns (a column whose singular value is 0 is 0). */
  u: Mat64;
  /** k values, descending. */
  s: Float64Array;
  /** n × k, orthonormal columns. */
  v: Mat64;
}

const MAX_SWEEPS = 80;

/** a = u · diag(s) · vᵀ with k = min(m, n). */
export function smallSvd(a: Mat64): SmallSvd {
  if (a.rows < a.cols) {
    const t = smallSvd(transposed(a));
    return { u: t.v, s: t.s, v: t.u };
  }
  const m = a.rows, n = a.cols;
  // Columns as contiguous arrays: the rotations work on pairs of columns.
  const cols: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const c = new Float64Array(m);
    for (let i = 0; i < m; i++) c[i] = a.data[i * n + j];
    cols.push(c);
  }
  const vcols: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const c = new Float64Array(n);
    c[j] = 1;
    vcols.push(c);
  }
  const norms = cols.map(dotSelf);
  const eps = 2 ** -52;
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const alpha = norms[p], beta = norms[q];
        if (alpha === 0 || beta === 0) continue;
        const up = cols[p], uq = cols[q];
        let gamma = 0;
        for (let i = 0; i < m; i++) gamma += up[i] * uq[i];
        if (Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(up, uq, c, s);
        rotate(vcols[p], vcols[q], c, s);
        norms[p] = dotSelf(up);
        norms[q] = dotSelf(uq);
      }
    }
    if (!rotated) break;
  }
  const order = [...Array(n).keys()].sort((x, y) => norms[y] - norms[x]);
  const k = n;
  const u = new Float64Array(m * k), v = new Float64Array(n * k), s = new Float64Array(k);
  order.forEach((j, col) => {
    const sigma = Math.sqrt(norms[j]);
    s[col] = sigma;
    const c = cols[j];
    if (sigma > 0) for (let i = 0; i < m; i++) u[i * k + col] = c[i] / sigma;
    const vc = vcols[j];
    for (let i = 0; i < n; i++) v[i * k + col] = vc[i];
  });
  return { u: { rows: m, cols: k, data: u }, s, v: { rows: n, cols: k, data: v } };
}

function rotate(x: Float64Array, y: Float64Array, c: number, s: number): void {
  for (let i = 0; i < x.length; i++) {
    const a = x[i], b = y[i];
    x[i] = c * a - s * b;
    y[i] = s * a + c * b;
  }
}

function dotSelf(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
}

function transposed(a: Mat64): Mat64 {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return { rows: a.cols, cols: a.rows, data: out };
}
