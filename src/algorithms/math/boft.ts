/**
 * Butterfly OFT (BOFT): R is a product of butterfly factors F_{m−1}···F_1·F_0, each a
 * block-diagonal matrix of b × b rotations in permuted coordinates, F_i = Sᵢᵀ·diag(B_i)·Sᵢ with Sᵢ
 * the gather by σᵢ (permuted entry p is x[σᵢ(p)]). σᵢ keeps aligned runs of 2^i·b indices in
 * place. The two training tools build σᵢ and the blocks differently:
 *
 * - LyCORIS (lycoris/modules/boft.py): each run of 2k = 2^i·b indices is viewed as (2, k) and
 *   transposed to (k, 2) — permuted entry c·2k + 2j + g holds c·2k + g·k + j. Blocks are the Cayley
 *   rotations (I + Q)(I − Q)⁻¹ of Q = B − Bᵀ, Q scaled to norm κ when its Frobenius norm over all
 *   factors and blocks (+1e-8) exceeds κ = α·out; the map is W ← F·W along the output rows.
 * - PEFT (tuners/boft/layer.py): P_i (`block_butterfly_perm`) reorders each run of 2^i·b inputs in
 *   halves of blocks: sub-runs of b/2 taken evens first, then odds; F_i = P_i·diag(B_i)·P_iᵀ, so
 *   σᵢ = P_i's gather inverted. Blocks are (I − S)(I + S)⁻¹ with S = ½(A − Aᵀ); W ← (R·Wᵀ)ᵀ.
 *   With one factor P is the identity.
 * Computed in f64.
 */
import { cayley } from './oft.js';

/** LyCORIS's σᵢ for an axis of n (a multiple of 2^i·b; b even). */
export function lycorisButterflyGather(n: number, b: number, i: number): Uint32Array {
  const k = 2 ** i * (b / 2);
  const sigma = new Uint32Array(n);
  for (let p = 0; p < n; p++) {
    const c = Math.floor(p / (2 * k)), rest = p % (2 * k);
    sigma[p] = c * 2 * k + (rest % 2) * k + Math.floor(rest / 2);
  }
  return sigma;
}

/**
 * PEFT's σᵢ = πᵢ⁻¹ for an axis of n, with πᵢ = block_butterfly_perm(n, blocks / 2^i, b / 2):
 * within each run of 2^i·b, sub-run s of b/2 entries comes from sub-run order[s] (evens first).
 * One factor in all (`factors` = 1): the identity.
 */
export function peftButterflyGather(n: number, b: number, i: number, factors: number): Uint32Array {
  const sigma = new Uint32Array(n);
  if (factors === 1) {
    for (let p = 0; p < n; p++) sigma[p] = p;
    return sigma;
  }
  const run = 2 ** i * b, half = b / 2, subRuns = run / half;
  const order = [...Array.from({ length: subRuns / 2 }, (_, j) => 2 * j), ...Array.from({ length: subRuns / 2 }, (_, j) => 2 * j + 1)];
  for (let start = 0; start < n; start += run) {
    order.forEach((from, s) => {
      for (let t = 0; t < half; t++) {
        // π(start + s·half + t) = start + from·half + t, and σ = π⁻¹.
        sigma[start + from * half + t] = start + s * half + t;
      }
    });
  }
  return sigma;
}

/**
 * LyCORIS BOFT's rotations minus I for blocks B (factors × blocks × b × b, all of them): the
 * engine maps each block by I + s·(R − I), as LyCORIS's `bi·scale + (1 − scale)·I`.
 */
export function lycorisBoftDeltas(blocks: ArrayLike<number>, b: number, constraint: number): Float32Array {
  const q = new Float64Array(blocks.length);
  for (let k = 0; k < blocks.length / (b * b); k++) {
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) q[k * b * b + i * b + j] = blocks[k * b * b + i * b + j] - blocks[k * b * b + j * b + i];
  }
  if (constraint > 0) {
    const norm = Math.sqrt(q.reduce((s, x) => s + x * x, 0)) + 1e-8;
    if (norm > constraint) for (let i = 0; i < q.length; i++) q[i] *= constraint / norm;
  }
  const out = new Float32Array(blocks.length);
  for (let k = 0; k < blocks.length / (b * b); k++) {
    const r = cayley(q.subarray(k * b * b, (k + 1) * b * b), b);
    for (let i = 0; i < b * b; i++) out[k * b * b + i] = r[i] - (Math.floor(i / b) === i % b ? 1 : 0);
  }
  return out;
}

/**
 * PEFT's Cayley rotation of raw blocks A (as BOFT's `cayley_batch` and OFT's before PEFT 0.16):
 * S = ½(A − Aᵀ), R = (I − S)(I + S)⁻¹, for each b × b block; returns R − I.
 */
export function peftHalfSkewDeltas(blocks: ArrayLike<number>, b: number): Float32Array {
  const out = new Float32Array(blocks.length);
  const negS = new Float64Array(b * b);
  for (let k = 0; k < blocks.length / (b * b); k++) {
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) negS[i * b + j] = -0.5 * (blocks[k * b * b + i * b + j] - blocks[k * b * b + j * b + i]);
    // (I − S)(I + S)⁻¹ = (I + Q)(I − Q)⁻¹ with Q = −S.
    const r = cayley(negS, b);
    for (let i = 0; i < b * b; i++) out[k * b * b + i] = r[i] - (Math.floor(i / b) === i % b ? 1 : 0);
  }
  return out;
}
