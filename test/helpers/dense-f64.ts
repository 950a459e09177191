/**
 * Small dense float64 matrices for truths written plainly in tests (row-major number[][], or flat
 * row-major arrays): products, the inverse by Gauss–Jordan with partial pivoting, block diagonals,
 * DoRA's norms. Imports nothing from the library.
 */
export type Mat = number[][];

export const eye = (n: number): Mat => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));

export const transpose = (a: Mat): Mat => a[0].map((_, j) => a.map((row) => row[j]));

export function mul(a: Mat, b: Mat): Mat {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, x, k) => s + x * b[k][j], 0)));
}

export const lin = (a: Mat, b: Mat, ca: number, cb: number): Mat => a.map((row, i) => row.map((x, j) => ca * x + cb * b[i][j]));

export function inverse(a: Mat): Mat {
  const n = a.length;
  const m = a.map((row, i) => [...row, ...eye(n)[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    const d = m[c][c];
    for (let j = 0; j < 2 * n; j++) m[c][j] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c];
      for (let j = 0; j < 2 * n; j++) m[r][j] -= f * m[c][j];
    }
  }
  return m.map((row) => row.slice(n));
}

export function blockDiag(blocks: Mat[]): Mat {
  const n = blocks.reduce((s, b) => s + b.length, 0);
  const out = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  let o = 0;
  for (const b of blocks) {
    b.forEach((row, i) => row.forEach((x, j) => { out[o + i][o + j] = x; }));
    o += b.length;
  }
  return out;
}

/** The b × b matrix at `offset` of a flat row-major array. */
export const block = (v: ArrayLike<number>, offset: number, b: number): Mat =>
  Array.from({ length: b }, (_, i) => Array.from({ length: b }, (_, j) => v[offset + i * b + j]));

/** A flat (rows × cols) array as a matrix, and back. */
export const asMat = (v: ArrayLike<number>, rows: number, cols: number): Mat =>
  Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => v[i * cols + j]));
export const flat = (a: Mat): Float64Array => Float64Array.from(a.flat());

/** inv(M) of a b × b matrix given as a flat row-major array (its first b·b values), flat row-major. */
export const inverseFlat = (m: ArrayLike<number>, b: number): Float64Array => flat(inverse(asMat(m, b, b)));

/** (p × r)(r × q) of flat row-major arrays. */
export function mm(x: ArrayLike<number>, y: ArrayLike<number>, p: number, r: number, q: number): Float64Array {
  const out = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += x[i * r + k] * y[k * q + j];
    out[i * q + j] = s;
  }
  return out;
}

/** DoRA's V ⊙ m / (‖·‖ + eps): norms per row of an out × in matrix (axis 'out'), or per column (axis 'in'). */
export function dora(v: Float64Array, m: Float64Array, out: number, inF: number, axis: 'out' | 'in', eps: number): Float64Array {
  const res = v.slice();
  if (axis === 'out') {
    for (let o = 0; o < out; o++) {
      let ss = 0;
      for (let i = 0; i < inF; i++) ss += v[o * inF + i] ** 2;
      for (let i = 0; i < inF; i++) res[o * inF + i] *= m[o] / (Math.sqrt(ss) + eps);
    }
  } else {
    for (let i = 0; i < inF; i++) {
      let ss = 0;
      for (let o = 0; o < out; o++) ss += v[o * inF + i] ** 2;
      for (let o = 0; o < out; o++) res[o * inF + i] *= m[i] / (Math.sqrt(ss) + eps);
    }
  }
  return res;
}
