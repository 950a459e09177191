/**
 * Small dense matrices of f32 values, row-major, for adapter factors: the shapes are explicit so
 * that every reshape an algorithm does is visible. Products accumulate in f64 and round once to f32.
 */
export interface Matrix {
  rows: number;
  cols: number;
  /** rows × cols, row-major. */
  data: Float32Array;
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  const m = { rows, cols, data: new Float32Array(rows * cols) };
  if (data) {
    if (data.length !== rows * cols) throw new RangeError(`${data.length} values for a ${rows} × ${cols} matrix`);
    m.data.set(data);
  }
  return m;
}

export function identity(n: number): Matrix {
  const m = matrix(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function transpose(m: Matrix): Matrix {
  const t = matrix(m.cols, m.rows);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) t.data[j * m.rows + i] = m.data[i * m.cols + j];
  return t;
}

/** Kronecker product: (p·r) × (q·s), element [i·r + k, j·s + l] = x[i, j]·y[k, l]. */
export function kron(x: Matrix, y: Matrix): Matrix {
  const out = matrix(x.rows * y.rows, x.cols * y.cols);
  const cols = out.cols;
  for (let i = 0; i < x.rows; i++) {
    for (let j = 0; j < x.cols; j++) {
      const v = x.data[i * x.cols + j];
      for (let k = 0; k < y.rows; k++) {
        const row = (i * y.rows + k) * cols + j * y.cols;
        for (let l = 0; l < y.cols; l++) out.data[row + l] = v * y.data[k * y.cols + l];
      }
    }
  }
  return out;
}

/** Each row scaled: out[i, :] = f[i] · m[i, :]. */
export function scaleRows(m: Matrix, f: ArrayLike<number>): Matrix {
  const out = matrix(m.rows, m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out.data[i * m.cols + j] = f[i] * m.data[i * m.cols + j];
  return out;
}

/** The leading rows × cols block of m. */
export function slice(m: Matrix, rows: number, cols: number): Matrix {
  if (rows > m.rows || cols > m.cols) throw new RangeError(`cannot take ${rows} × ${cols} from a ${m.rows} × ${m.cols} matrix`);
  const out = matrix(rows, cols);
  for (let i = 0; i < rows; i++) out.data.set(m.data.subarray(i * m.cols, i * m.cols + cols), i * cols);
  return out;
}
