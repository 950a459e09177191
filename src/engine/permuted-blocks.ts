/**
 * A block-diagonal map in permuted coordinates: one butterfly factor of BOFT (LyCORIS and PEFT),
 * and the blocks of PEFT's first OFT format, whose last block may be cut short. Along one axis of
 * ΔW, a vector x is gathered into z[p] = x[σ(p)], z's consecutive blocks of b are mapped by their
 * matrices, and the result is scattered back:
 *
 *   x'[σ(p)] = Σ_n M_k[p − k·b, n] · x[σ(k·b + n)],   k = ⌊p / b⌋,
 *
 * i.e. x' = Sᵀ·diag(M_0, M_1, …)·S·x with S the gather by σ. When b does not divide the axis, the
 * last block has m < b entries and uses the top-left m × m of its matrix. σ keeps every aligned
 * run of `span` indices (a multiple of b) in place, so a slab of stored rows that starts and ends
 * on runs can be mapped alone; the whole axis is never held as a dense matrix.
 */
import { MergeError } from '../errors.js';
import { DTYPE_BYTES, isFloatDType } from '../dtype.js';
import type { FloatTensorBytes, MergeOp } from './merge-op.js';

export interface PermutedBlocksStep {
  kind: 'permuted-blocks';
  axis: 'out' | 'in';
  blockSize: number;
  /** ⌈n / b⌉ blocks of b × b, row-major, for an axis of n. */
  blocks: FloatTensorBytes;
  /** σ (n indices): the permuted vector's entry p is x[σ(p)]. Absent: the identity. */
  gather?: Uint32Array;
  /** σ maps each aligned run of `span` indices onto itself; a multiple of blockSize. */
  span: number;
}

/** Number of blocks for an axis of n. */
export function blockCount(n: number, b: number): number {
  return Math.ceil(n / b);
}

/** σ⁻¹, or undefined for the identity. */
export function scatterOf(step: Pick<PermutedBlocksStep, 'gather'>): Uint32Array | undefined {
  if (!step.gather) return undefined;
  const inverse = new Uint32Array(step.gather.length);
  step.gather.forEach((src, p) => { inverse[src] = p; });
  return inverse;
}

/**
 * Checks the step against the op (the axis it maps is `n` long; stored rows when `onRows`), and
 * that a row slab holds whole runs. Errors name the tensor.
 */
export function checkPermutedBlocks(
  op: Pick<MergeOp, 'name' | 'rows'>, step: PermutedBlocksStep, n: number, onRows: boolean, rowStart: number, rowCount: number, label: string,
): void {
  const fail = (what: string): never => {
    throw new MergeError('SHAPE_MISMATCH', `tensor "${op.name}": ${label}${what}`);
  };
  const b = step.blockSize, span = step.span;
  if (!Number.isSafeInteger(b) || b < 1) fail(`: block size ${b}`);
  if (!Number.isSafeInteger(span) || span < b || span % b !== 0) fail(`: span ${span} is not a multiple of the block size ${b}`);
  if (!isFloatDType(step.blocks.dtype)) {
    throw new MergeError('INVALID_DTYPE', `tensor "${op.name}": ${label} blocks have dtype ${String(step.blocks.dtype)}`);
  }
  const want = blockCount(n, b) * b * b;
  if (step.blocks.data.byteLength !== want * DTYPE_BYTES[step.blocks.dtype]) {
    fail(` blocks hold ${step.blocks.data.byteLength} bytes, expected ${want} values (${blockCount(n, b)} × ${b} × ${b})`);
  }
  if (step.gather) {
    const g = step.gather;
    if (g.length !== n) fail(`: the permutation has ${g.length} entries for an axis of ${n}`);
    const seen = new Uint8Array(n);
    for (let p = 0; p < n; p++) {
      const s = g[p];
      if (s >= n || seen[s] || Math.floor(s / span) !== Math.floor(p / span)) fail(`: entry ${p} of the permutation (${s}) is not a permutation within runs of ${span}`);
      seen[s] = 1;
    }
  }
  if (onRows && (rowStart % span !== 0 || (rowCount % span !== 0 && rowStart + rowCount !== op.rows))) {
    fail(`: row slab [${rowStart}, ${rowStart + rowCount}) splits a run of ${span} rows the map mixes`);
  }
}
