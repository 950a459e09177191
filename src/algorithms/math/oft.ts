/**
 * LyCORIS diag-OFT (lycoris/modules/diag_oft.py): block-diagonal rotations of W's output rows.
 * Per block, Q = B − Bᵀ (skew-symmetric); with constraint κ > 0 (the stored `alpha` times out_dim),
 * Q is scaled to norm κ when ‖Q‖_F + 1e-8 > κ, the Frobenius norm taken over all blocks at once;
 * R = (I + Q)(I − Q)⁻¹ (Cayley). The merged weight with multiplier s is, per block of rows,
 * W'_k = (s·R_k − s·I + I)ᵀ·W_k (einsum "k n m, k n ... -> k m ..."), then ⊙ rescale (per row) when
 * the module has one. Computed in f64.
 */

/** (I + Q)(I − Q)⁻¹ for one b × b skew-symmetric Q (row-major), by Gauss–Jordan elimination. */
export function cayley(q: Float64Array, b: number): Float64Array {
  // Solve X·(I − Q) = (I + Q)  ⇔  (I − Q)ᵀ·Xᵀ = (I + Q)ᵀ.
  const m = new Float64Array(b * 2 * b); // [(I − Q)ᵀ | (I + Q)ᵀ]
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < b; j++) {
      const id = i === j ? 1 : 0;
      m[i * 2 * b + j] = id - q[j * b + i];
      m[i * 2 * b + b + j] = id + q[j * b + i];
    }
  }
  for (let col = 0; col < b; col++) {
    let pivot = col;
    for (let r = col + 1; r < b; r++) if (Math.abs(m[r * 2 * b + col]) > Math.abs(m[pivot * 2 * b + col])) pivot = r;
    if (m[pivot * 2 * b + col] === 0) throw new RangeError('I − Q is singular');
    if (pivot !== col) {
      for (let j = 0; j < 2 * b; j++) [m[col * 2 * b + j], m[pivot * 2 * b + j]] = [m[pivot * 2 * b + j], m[col * 2 * b + j]];
    }
    const p = m[col * 2 * b + col];
    for (let j = 0; j < 2 * b; j++) m[col * 2 * b + j] /= p;
    for (let r = 0; r < b; r++) {
      if (r === col) continue;
      const f = m[r * 2 * b + col];
      if (f === 0) continue;
      for (let j = 0; j < 2 * b; j++) m[r * 2 * b + j] -= f * m[col * 2 * b + j];
    }
  }
  // The right half is Xᵀ.
  const x = new Float64Array(b * b);
  for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) x[j * b + i] = m[i * 2 * b + b + j];
  return x;
}

/**
 * The engine's rotate-step blocks (M_k acting on each column of a block of rows, row-major) for
 * diag-OFT blocks B (n × b × b), constraint κ (0: none), multiplier s: M_k = (s·R_k − s·I + I)ᵀ.
 */
export function diagOftBlocks(blocks: ArrayLike<number>, blockSize: number, constraint: number, multiplier: number): Float32Array {
  const b = blockSize;
  const n = blocks.length / (b * b);
  const q = new Float64Array(blocks.length);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) q[k * b * b + i * b + j] = blocks[k * b * b + i * b + j] - blocks[k * b * b + j * b + i];
  }
  if (constraint > 0) {
    const norm = Math.sqrt(q.reduce((s, x) => s + x * x, 0)) + 1e-8;
    if (norm > constraint) for (let i = 0; i < q.length; i++) q[i] *= constraint / norm;
  }
  const out = new Float32Array(blocks.length);
  for (let k = 0; k < n; k++) {
    const r = cayley(q.subarray(k * b * b, (k + 1) * b * b), b);
    for (let i = 0; i < b; i++) {
      for (let j = 0; j < b; j++) {
        // M[i, j] = (s·R − s·I + I)[j, i]
        out[k * b * b + i * b + j] = multiplier * r[j * b + i] + (i === j ? 1 - multiplier : 0);
      }
    }
  }
  return out;
}

/** The b × b skew-symmetric matrix whose upper triangle (row by row, diagonal excluded) is `vec`. */
export function skewFromUpper(vec: ArrayLike<number>, b: number): Float64Array {
  const q = new Float64Array(b * b);
  let n = 0;
  for (let i = 0; i < b; i++) {
    for (let j = i + 1; j < b; j++) {
      q[i * b + j] = vec[n];
      q[j * b + i] = -vec[n];
      n++;
    }
  }
  return q;
}

/**
 * PEFT OFT's rotation of one block (tuners/oft/layer.py `_cayley_batch`): with the Cayley–Neumann
 * form of n = `terms` terms, PEFT ≥ 0.18 sums R = I + 2Q + 2Q² + 2Q³ + … + 2Q^(n−2) + Q^(n−1)
 * (n = 3 gives I + 2Q + 2Q² + Q³, as its loop does; n = 2: I + 2Q; n = 1: I); PEFT 0.16 and 0.17
 * (`olderSeries`) summed I + 2Q + 2Q² + … + 2Q^(n−1). Without it, R solves R·(I + Q) = I − Q,
 * i.e. (I − Q)(I + Q)⁻¹.
 */
export function peftOftRotation(q: Float64Array, b: number, neumann: boolean, terms: number, olderSeries = false): Float64Array {
  if (!neumann) return cayley(q.map((x) => -x), b);
  const r = new Float64Array(b * b);
  for (let i = 0; i < b; i++) r[i * b + i] = 1;
  if (terms <= 1) return r;
  const mul = (x: Float64Array, y: Float64Array) => {
    const z = new Float64Array(b * b);
    for (let i = 0; i < b; i++) for (let k = 0; k < b; k++) for (let j = 0; j < b; j++) z[i * b + j] += x[i * b + k] * y[k * b + j];
    return z;
  };
  const add = (x: Float64Array, c: number) => x.forEach((v, i) => { r[i] += c * v; });
  add(q, 2);
  if (terms === 2) return r;
  let p = mul(q, q);
  add(p, 2);
  if (olderSeries) {
    for (let n = 3; n < terms; n++) {
      p = mul(p, q);
      add(p, 2);
    }
    return r;
  }
  for (let n = 3; n < terms - 1; n++) {
    p = mul(p, q);
    add(p, 2);
  }
  add(mul(p, q), 1);
  return r;
}

/**
 * PEFT COFT (`_project_batch`): each block's skew matrix keeps its Frobenius norm when within
 * ε/√(blocks), and is scaled to that norm otherwise.
 */
export function coftProject(q: Float64Array, b: number, blocks: number, eps: number): Float64Array {
  const limit = eps / Math.sqrt(blocks);
  const out = q.slice();
  for (let k = 0; k < blocks; k++) {
    const block = out.subarray(k * b * b, (k + 1) * b * b);
    const norm = Math.sqrt(block.reduce((s, x) => s + x * x, 0));
    if (norm > limit) for (let i = 0; i < block.length; i++) block[i] *= limit / norm;
  }
  return out;
}
