/**
 * Truncated SVDs of an update ΔW (m × n), in two ways that end alike: an orthonormal basis on each
 * side (Q_L: m × p, Q_R: n × q) and a small core C (p × q) with ΔW ≈ Q_L · C · Q_Rᵀ. The core's
 * f64 SVD C = U S Vᵀ gives ΔW's singular values S and, for any k, the rank-k factors
 *   up = Q_L · U_k S_k^α,   down = (Q_R · V_k S_k^(1-α))ᵀ.
 *
 * - factoredSvd: ΔW = B·A given by factors (B: m × R, A: R × n), exact: Q_L R_L = B and
 *   Q_R R_R = Aᵀ, C = R_L R_Rᵀ. ΔW is never formed; the cost is (m + n)·R² and an R × R SVD.
 * - randomizedSvd: ΔW resident on the backend, approximate: a Gaussian range finder with power
 *   iterations, each product re-orthonormalised (Halko, Martinsson & Tropp 2011, alg. 4.4):
 *   Q_L spans ΔW·(ΔWᵀΔW)^q·Ω, Q_R R = ΔWᵀ·Q_L, C = Rᵀ. Costs 2q + 2 passes over ΔW.
 */
import { throwIfAborted } from '../errors.js';
import { createRandom } from '../sample/seeded-random.js';
import type { AlgebraBackend, ResidentMatrix } from './algebra-backend.js';
import { orthonormalize } from './orthonormalize.js';
import { multiply64, transpose, transpose64, type Mat, type Mat64 } from './matrix.js';
import { smallSvd, type SmallSvd } from './small-svd.js';

export interface LowRankFactors {
  /** m × k */
  up: Mat;
  /** k × n */
  down: Mat;
}

/** How S is shared between the factors: all in `up` (kohya, PEFT), or √S on each side (mergekit). */
export type SingularSplit = 'up' | 'sqrt';

export interface TruncatedSvd {
  rows: number;
  cols: number;
  /** Singular values found, descending (every nonzero one for factoredSvd; l of them for randomizedSvd). */
  s: Float64Array;
  /** Rank-k factors, k ≤ s.length; `signal` goes to their products. */
  factors(k: number, split: SingularSplit, signal?: AbortSignal): Promise<LowRankFactors>;
}

export async function factoredSvd(backend: AlgebraBackend, b: Mat, a: Mat, signal?: AbortSignal): Promise<TruncatedSvd> {
  if (b.cols !== a.rows) throw new RangeError(`factors ${b.rows}×${b.cols} and ${a.rows}×${a.cols} do not fit`);
  const left = await orthonormalize(backend, b, signal);
  const right = await orthonormalize(backend, transpose(a), signal);
  const core = multiply64(left.r, transpose64(right.r));
  return fromCore(backend, b.rows, a.cols, left.q, right.q, core);
}

export interface RandomizedOptions {
  /** Singular triplets wanted. */
  rank: number;
  /** Extra directions searched (default max(10, rank/4)). */
  oversample?: number;
  /** Power iterations (default 3). */
  powerIterations?: number;
  seed?: number;
  /** Checked before each pass over ΔW and between the blocks of every product: a large ΔW's passes take seconds each. */
  signal?: AbortSignal;
}

export async function randomizedSvd(backend: AlgebraBackend, d: ResidentMatrix, options: RandomizedOptions): Promise<TruncatedSvd> {
  const { rows: m, cols: n } = d;
  const oversample = options.oversample ?? Math.max(10, Math.ceil(options.rank / 4));
  const l = Math.max(1, Math.min(options.rank + oversample, m, n));
  const random = createRandom(options.seed ?? 0x5eed);
  const omega = new Float32Array(n * l);
  for (let i = 0; i < omega.length; i += 2) {
    // Box–Muller: two normals per pair of uniforms.
    const u1 = 1 - random(), u2 = random();
    const radius = Math.sqrt(-2 * Math.log(u1));
    omega[i] = radius * Math.cos(2 * Math.PI * u2);
    if (i + 1 < omega.length) omega[i + 1] = radius * Math.sin(2 * Math.PI * u2);
  }
  const { signal } = options;
  throwIfAborted(signal);
  let q = (await orthonormalize(backend, await backend.times(d, { rows: n, cols: l, data: omega }, signal), signal)).q;
  for (let i = 0; i < (options.powerIterations ?? 3); i++) {
    throwIfAborted(signal);
    const z = (await orthonormalize(backend, await backend.timesT(d, q, signal), signal)).q;
    throwIfAborted(signal);
    q = (await orthonormalize(backend, await backend.times(d, z, signal), signal)).q;
  }
  throwIfAborted(signal);
  const right = await orthonormalize(backend, await backend.timesT(d, q, signal), signal);
  return fromCore(backend, m, n, q, right.q, transpose64(right.r));
}

function fromCore(backend: AlgebraBackend, rows: number, cols: number, qLeft: Mat, qRight: Mat, core: Mat64): TruncatedSvd {
  const svd: SmallSvd | undefined = core.rows > 0 && core.cols > 0 ? smallSvd(core) : undefined;
  const s = svd?.s ?? new Float64Array(0);
  return {
    rows, cols, s,
    async factors(k: number, split: SingularSplit, signal?: AbortSignal): Promise<LowRankFactors> {
      if (k > s.length) throw new RangeError(`rank ${k} asked of ${s.length} singular values`);
      if (!svd || k === 0) return { up: { rows, cols: k, data: new Float32Array(rows * k) }, down: { rows: k, cols, data: new Float32Array(k * cols) } };
      const upScale = (j: number) => (split === 'up' ? s[j] : Math.sqrt(s[j]));
      const downScale = (j: number) => (split === 'up' ? 1 : Math.sqrt(s[j]));
      const up = await project(backend, qLeft, svd.u, k, upScale, signal);
      const downT = await project(backend, qRight, svd.v, k, downScale, signal);
      return { up, down: transpose(downT) };
    },
  };
}

/** q · (first k columns of w, column j scaled by scale(j)). */
async function project(backend: AlgebraBackend, q: Mat, w: Mat64, k: number, scale: (j: number) => number, signal: AbortSignal | undefined): Promise<Mat> {
  const small = new Float32Array(w.rows * k);
  for (let i = 0; i < w.rows; i++) for (let j = 0; j < k; j++) small[i * k + j] = w.data[i * w.cols + j] * scale(j);
  const resident = await backend.upload(q);
  try {
    return await backend.times(resident, { rows: w.rows, cols: k, data: small }, signal);
  } finally {
    resident.release();
  }
}

/** Dense ΔW (m × n), exactly: an orthonormal basis of its smaller side's span, then a small SVD. */
export async function denseExactSvd(backend: AlgebraBackend, d: Mat, signal?: AbortSignal): Promise<TruncatedSvd> {
  const identity = (n: number): Mat => {
    const data = new Float32Array(n * n);
    for (let i = 0; i < n; i++) data[i * n + i] = 1;
    return { rows: n, cols: n, data };
  };
  if (d.cols <= d.rows) {
    const { q, r } = await orthonormalize(backend, d, signal); // d = q·r, r: k × n
    return fromCore(backend, d.rows, d.cols, q, identity(d.cols), r);
  }
  const { q, r } = await orthonormalize(backend, transpose(d), signal); // dᵀ = q·r, d = rᵀ·qᵀ
  return fromCore(backend, d.rows, d.cols, identity(d.rows), q, transpose64(r));
}
