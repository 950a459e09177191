/**
 * A low-rank ΔW = B·A (out × in) on a tensor that holds blocks of its rows each transposed
 * (layouts' TransposedBlocks: llama.cpp's MLA attn_k_b holds each head's key rows of kv_b_proj as
 * (kv_lora_rank, nope)). Block i, ΔW's rows [s_i, s_i + n), is stored as (B_i·A)ᵀ = Aᵀ·B_iᵀ on
 * the tensor's rows [i·in, (i+1)·in) (or, for blocks inside a larger tensor, one expert's slab of
 * a fused parameter, the rows `within` names): one rank-r term per block, Aᵀ (in × r) on the left
 * and B_iᵀ (r × n) on the right. ΔW stays low rank, and the transpose is exact.
 */
import { decodeToF32 } from '../dtype.js';
import type { ExactFactors, FloatTensorBytes, LowRankTerm } from '../engine/merge-op.js';
import { transposedBlockSegments, type TransposedBlocks } from '../formats/layouts/index.js';
import { mat, mat64, transpose, transpose64 } from '../algebra/matrix.js';

/** One term per block, each on its own `in` rows of the (blocks·in) × n tensor; `exact` as LowRankTerm.exact. */
export function transposedBlockTerms(a: FloatTensorBytes, b: FloatTensorBytes, rank: number, blocks: TransposedBlocks, scale: number, exact?: ExactFactors): LowRankTerm[] {
  const A = decodeToF32(a.data, a.dtype);
  const B = decodeToF32(b.data, b.dtype);
  const r = rank;
  const inF = A.length / r;
  const n = blocks.rows;
  const left = transpose(mat(r, inF, A)).data; // Aᵀ, shared by every block
  const leftBytes: FloatTensorBytes = { dtype: 'F32', data: new Uint8Array(left.buffer) };
  const left64 = exact && transpose64(mat64(r, inF, exact.a)).data;
  return blocks.starts.map((start, block) => {
    const right = transpose(mat(n, r, B.subarray(start * r, (start + n) * r))).data; // B_iᵀ
    const term: LowRankTerm = {
      a: { dtype: 'F32', data: new Uint8Array(right.buffer) },
      b: leftBytes,
      rank: r,
      scale,
      placement: { deltaRows: inF, segments: transposedBlockSegments(blocks, block, inF) },
    };
    if (exact && left64) term.exact = { a: transpose64(mat64(n, r, exact.b.subarray(start * r, (start + n) * r))).data, b: left64 };
    return term;
  });
}
