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
