/**
 * Dense row-major matrices for the adapter algebra: f32 for the heavy products (what the kernels
 * compute with), f64 for the small factors the host decomposes exactly.
 */

/** rows × cols, row-major f32. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float32Array;
}

/** rows × cols, row-major f64 (small matrices on the host). */
export interface Mat64 {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: Float32Array): Mat {
  const d = data ?? new Float32Array(rows * cols);
  if (d.length !== rows * cols) throw new RangeError(`matrix ${rows}×${cols} needs ${rows * cols} values, got ${d.length}`);
  return { rows, cols, data: d };
}

export function mat64(rows: number, cols: number, data?: Float64Array): Mat64 {
  const d = data ?? new Float64Array(rows * cols);
  if (d.length !== rows * cols) throw new RangeError(`matrix ${rows}×${cols} needs ${rows * cols} values, got ${d.length}`);
  return { rows, cols, data: d };
}

export function transpose(m: Mat): Mat {
  const out = new Float32Array(m.rows * m.cols);
  const { rows, cols, data } = m;
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[row + j];
  }
  return { rows: cols, cols: rows, data: out };
}

export function transpose64(m: Mat64): Mat64 {
  const out = new Float64Array(m.rows * m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out[j * m.rows + i] = m.data[i * m.cols + j];
  return { rows: m.cols, cols: m.rows, data: out };
}

export function toF32(m: Mat64): Mat {
  return { rows: m.rows, cols: m.cols, data: Float32Array.from(m.data) };
}

export function toF64(m: Mat): Mat64 {
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data) };
}

/** a · b in f64 (small matrices only). */
export function multiply64(a: Mat64, b: Mat64): Mat64 {
  if (a.cols !== b.rows) throw new RangeError(`cannot multiply ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const x = a.data[i * a.cols + k];
      if (x === 0) continue;
      const brow = k * b.cols, orow = i * b.cols;
      for (let j = 0; j < b.cols; j++) out[orow + j] += x * b.data[brow + j];
    }
  }
  return { rows: a.rows, cols: b.cols, data: out };
}

/** Columns [c0, c0 + n) of m. */
export function columns64(m: Mat64, c0: number, n: number): Mat64 {
  const out = new Float64Array(m.rows * n);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < n; j++) out[i * n + j] = m.data[i * m.cols + c0 + j];
  return { rows: m.rows, cols: n, data: out };
}

/** Squared Frobenius norm, accumulated in f64. */
export function frobeniusSquared(data: Float32Array | Float64Array): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * data[i];
  return s;
}
