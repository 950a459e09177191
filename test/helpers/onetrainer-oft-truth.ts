/**
 * OneTrainer's OFT (modules/module/oft_utils.py) written plainly in float64, for the tests that check
 * its merges: Q = skew(row) (÷ 2·√(b − 1) when scaled), R = I + 2Q + 2Q² + 2Q³ + Q⁴ (its 5-term
 * Cayley–Neumann series; its first four OFT commits, 1336b9b8 to 86ae3811, summed I + 2Q + 2Q² + 2Q³ +
 * 2Q⁴); a Linear rotates its input, W'[o, kb + i] = Σ_j W[o, kb + j]·R[i][j]; a Conv2d rotates its
 * weight, W'[o, kb + c] = Σ_j W[o, kb + j]·R[j][c]. A user weight s blends each block, I + s·(R − I).
 * COFT (7c255ac4's _project_batch) caps each Linear's skew block at ‖Q‖ ≤ ε/√rows. Nothing here
 * imports the library under test.
 */

function matmul(x: Float64Array, y: Float64Array, b: number): Float64Array {
  const z = new Float64Array(b * b);
  for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) for (let k = 0; k < b; k++) z[i * b + j] += x[i * b + k] * y[k * b + j];
  return z;
}

/** OneTrainer's block from a row's upper triangle, blended to I + s·(R − I). */
export function otRotation(row: Float64Array, b: number, scaled: boolean, s: number, first = false): Float64Array {
  const q = new Float64Array(b * b);
  let at = 0;
  for (let i = 0; i < b; i++) {
    for (let j = i + 1; j < b; j++) {
      const v = scaled ? row[at] / (2 * Math.sqrt(b - 1)) : row[at];
      q[i * b + j] = v;
      q[j * b + i] = -v;
      at++;
    }
  }
  const q2 = matmul(q, q, b), q3 = matmul(q2, q, b), q4 = matmul(q3, q, b);
  return q.map((_, i) => {
    const eye = Math.floor(i / b) === i % b ? 1 : 0;
    const r = eye + 2 * q[i] + 2 * q2[i] + 2 * q3[i] + (first ? 2 : 1) * q4[i];
    return eye + s * (r - eye);
  });
}

/** One trained module's shape: `rows` rows of b(b−1)/2 values over a layer of `inF` inputs (in·kh·kw). */
export interface OtModule { rows: number; b: number; inF: number; conv: boolean; scaled: boolean }

/** W (out × inF, row-major) as OneTrainer's forward rotates it, at weight s; coftEps projects a Linear's rows first. */
export function otRotated(w: Float64Array, vec0: Float64Array, m: OtModule, s: number, coftEps?: number, first = false): Float64Array {
  const n = (m.b * (m.b - 1)) / 2;
  let vec = vec0;
  if (coftEps !== undefined && !m.conv) {
    // COFT's _project_batch on a Linear: each skew block (‖Q‖² = 2·Σ row²) capped at ε/√rows.
    const limit = coftEps / Math.sqrt(m.rows);
    vec = vec0.map((x, i) => {
      const k = Math.floor(i / n);
      const norm = Math.sqrt(2 * vec0.subarray(k * n, (k + 1) * n).reduce((a, y) => a + y * y, 0));
      return norm > limit ? (x * limit) / norm : x;
    });
  }
  const out = w.slice();
  for (let k = 0; k < m.inF / m.b; k++) {
    const src = m.rows === 1 ? 0 : k;
    const r = otRotation(vec.subarray(src * n, (src + 1) * n), m.b, m.scaled, s, first);
    for (let o = 0; o < w.length / m.inF; o++) {
      for (let c = 0; c < m.b; c++) {
        let sum = 0;
        for (let j = 0; j < m.b; j++) sum += w[o * m.inF + k * m.b + j] * (m.conv ? r[j * m.b + c] : r[c * m.b + j]);
        out[o * m.inF + k * m.b + c] = sum;
      }
    }
  }
  return out;
}
