/**
 * Shared steps of combine, resize and extract: the truncated SVD of one update (exact from factors
 * when the stacked rank is small, else dense), and its rank-k factors as a module to write.
 */
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import type { Mat } from '../algebra/matrix.js';
import { denseExactSvd, factoredSvd, randomizedSvd, type SingularSplit, type TruncatedSvd } from '../algebra/truncated-svd.js';
import type { WrittenModule } from '../formats/adapter-writer.js';
import type { ModuleShape } from './module-updates.js';

/** Above this stacked rank the factored SVD's R × R core costs more than a dense one. */
export const FACTORED_RANK_LIMIT = 512;
/** Dense updates whose smaller side is at most this get an exact SVD instead of a randomized one. */
export const EXACT_SIDE_LIMIT = 48;

export interface Decomposed {
  svd: TruncatedSvd;
  /** ‖ΔW‖²_F, for the fraction kept. */
  total2: number;
}

/** ΔW = Σ B_t·A_t (factors stacked): exact from factors, or dense past FACTORED_RANK_LIMIT. */
export async function decomposeFactors(backend: AlgebraBackend, b: Mat, a: Mat, wantedRank: number, signal?: AbortSignal): Promise<Decomposed> {
  if (b.cols <= FACTORED_RANK_LIMIT) {
    const svd = await factoredSvd(backend, b, a, signal);
    return { svd, total2: sumSquares(svd.s) };
  }
  const resident = await backend.upload(b);
  let dense: Mat;
  try {
    dense = await backend.times(resident, a, signal);
  } finally {
    resident.release();
  }
  return decomposeDense(backend, dense, wantedRank, undefined, signal);
}

/** A dense ΔW: exact when small, else a randomized SVD for `wantedRank` triplets. */
export async function decomposeDense(backend: AlgebraBackend, d: Mat, wantedRank: number, seed?: number, signal?: AbortSignal): Promise<Decomposed> {
  const total2 = sumSquares(d.data);
  if (Math.min(d.rows, d.cols) <= EXACT_SIDE_LIMIT) return { svd: await denseExactSvd(backend, d, signal), total2 };
  const resident = await backend.upload(d);
  try {
    return { svd: await randomizedSvd(backend, resident, { rank: Math.min(wantedRank, d.rows, d.cols), seed, signal }), total2 };
  } finally {
    resident.release();
  }
}

/** Rank-k factors as a module; columns past the singular values found are zero. `signal` goes to the factors' products. */
export async function moduleFromSvd(svd: TruncatedSvd, rank: number, split: SingularSplit, name: string, shape: ModuleShape, alpha: number, signal?: AbortSignal): Promise<WrittenModule> {
  const found = Math.min(rank, svd.s.length);
  const { up, down } = await svd.factors(found, split, signal);
  const upData = new Float32Array(shape.out * rank);
  for (let i = 0; i < shape.out; i++) upData.set(up.data.subarray(i * found, (i + 1) * found), i * rank);
  const downData = new Float32Array(rank * shape.in);
  downData.set(down.data);
  return {
    name, kind: shape.kind, up: upData, down: downData, rank, alpha,
    upShape: [shape.out, rank, ...shape.upTail], downShape: [rank, ...shape.downTail],
  };
}

export function sumSquares(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return s;
}

/** √(Σ_{i<k} σᵢ² / ‖ΔW‖²): the share of the update's Frobenius norm a rank-k module keeps. */
export function froKept(s: Float64Array, rank: number, total2: number): number {
  if (total2 <= 0) return 1;
  let kept = 0;
  for (let i = 0; i < Math.min(rank, s.length); i++) kept += s[i] * s[i];
  return Math.min(1, Math.sqrt(kept / total2));
}
