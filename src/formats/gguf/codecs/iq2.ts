/**
 * IQ2_XXS, IQ2_XS and IQ2_S (written only with an importance matrix, iq2-search.ts): 256 values per block in groups of 8, each group an
 * entry of a grid (iq-grids.ts) with 8 sign bits, times a 4-bit scale per 32 (or 16) values:
 * x = d·(0.5 + s)·0.25·grid[j]·(±1), as ggml's dequantize_row_iq2_* computes it. Every product is
 * exact in f32, so these are the values llama.cpp computes.
 * - IQ2_XXS (66 bytes): f16 d, then per 32 values two u32: four 8-bit grid indexes, and four 7-bit
 *   sign sets (KSIGNS completes the eighth) with the 4-bit scale in the top bits.
 * - IQ2_XS (74 bytes): f16 d, 32 u16 (9-bit grid index, 7 sign bits), 8 bytes of two 4-bit scales.
 * - IQ2_S (82 bytes): f16 d, 32 bytes of grid indexes' low 8 bits, 32 bytes of sign bytes, 8 bytes
 *   of their top 2 bits (qh), 8 bytes of two 4-bit scales.
 */
import { MergeError } from '../../../errors.js';
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec, BlockDecoder } from './codec.js';
import * as cFloat from './c-float.js';
import { iqGrid, KSIGNS } from './iq-grids.js';
import { encodeIq2SRow, encodeIq2XsRow, encodeIq2XxsRow, iq2STables, iq2XsTables, iq2XxsTables } from './iq2-search.js';
import { encodeIqLowWasm } from './kquant-wasm.js';

const { f16Table, f32, u16At } = cFloat;

/** One group of 8: y[j] = db·grid[j]·(±1), C's order (a zero keeps C's sign). */
function group(out: Float32Array, y: number, db: number, grid: Uint8Array, entry: number, signs: number): void {
  for (let j = 0; j < 8; j++) out[y + j] = f32(f32(db * grid[entry * 8 + j]) * (signs & (1 << j) ? -1 : 1));
}

function u32At(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/**
 * IQ2_XXS: decoded as dequantize_row_iq2_xxs; written only with importance weights, as
 * quantize_iq2_xxs (iq2-search.ts), which asserts that it has them.
 */
export const IQ2_XXS_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ2_XXS')!,
  needsImportance: true,
  encode() {
    throw new MergeError('BAD_ARGUMENT', needsImatrix('IQ2_XXS'));
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIqLowWasm('IQ2_XXS', iq2XxsTables(), src, out, qw)) encodeIq2XxsRow(src, out, qw);
  },
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ2XXS');
    for (let b = 0, at = 0; at < src.length; b++, at += 66) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const q = at + 2 + 8 * ib;
        const aux1 = u32At(src, q + 4);
        const db = f32(f32(d * f32(0.5 + (aux1 >>> 28))) * 0.25);
        for (let l = 0; l < 4; l++) group(out, b * 256 + 32 * ib + 8 * l, db, grid, src[q + l], KSIGNS[(aux1 >>> (7 * l)) & 127]);
      }
    }
  },
};

/** Why a type (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S) is not written without an importance matrix. */
export function needsImatrix(name: string): string {
  // ggml's quantize_iq1_m and quantize_iq2_s run without weights too, but llama-quantize refuses
  // them without an imatrix for every tensor but token_embd.weight and output.weight.
  const why = name === 'IQ1_M' || name === 'IQ2_S'
    ? `llama-quantize refuses ${name} without --imatrix (but for token_embd.weight and output.weight)`
    : `ggml's ${name} quantizer requires one, and llama-quantize refuses ${name} without --imatrix`;
  return `${name} is written only with an importance matrix: ${why}; give --imatrix FILE (made by llama-imatrix for this model)`;
}

/**
 * IQ2_XS: decoded as dequantize_row_iq2_xs; written only with importance weights, as
 * quantize_iq2_xs (iq2-search.ts), which asserts that it has them.
 */
export const IQ2_XS_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ2_XS')!,
  needsImportance: true,
  encode() {
    throw new MergeError('BAD_ARGUMENT', needsImatrix('IQ2_XS'));
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIqLowWasm('IQ2_XS', iq2XsTables(), src, out, qw)) encodeIq2XsRow(src, out, qw);
  },
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ2XS');
    for (let b = 0, at = 0; at < src.length; b++, at += 74) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const sc = src[at + 66 + ib];
        const db = [f32(f32(d * f32(0.5 + (sc & 0x0f))) * 0.25), f32(f32(d * f32(0.5 + (sc >> 4))) * 0.25)];
        for (let l = 0; l < 4; l++) {
          const q = u16At(src, at + 2 + 2 * (4 * ib + l));
          group(out, b * 256 + 32 * ib + 8 * l, db[l >> 1], grid, q & 511, KSIGNS[q >> 9]);
        }
      }
    }
  },
};

/**
 * IQ2_S: decoded as dequantize_row_iq2_s; written with importance weights, as quantize_iq2_s
 * (iq2-search.ts) with them. ggml's quantize_iq2_s also runs without (weights σ²/4 + x², `encode`),
 * which llama-quantize runs only for the tensors tensor_requires_imatrix exempts (token_embd.weight,
 * per_layer_token_embd.weight, output.weight) where it has no weights for them; every other IQ2_S
 * tensor it (and loramerge) writes only with an importance matrix.
 */
export const IQ2_S_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ2_S')!,
  needsImportance: true,
  unweightedForEmbeddingAndHead: true,
  encode(src, out) {
    if (!encodeIqLowWasm('IQ2_S', iq2STables(), src, out, undefined)) encodeIq2SRow(src, out, undefined);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIqLowWasm('IQ2_S', iq2STables(), src, out, qw)) encodeIq2SRow(src, out, qw);
  },
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ2S');
    for (let b = 0, at = 0; at < src.length; b++, at += 82) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const sc = src[at + 74 + ib];
        const qh = src[at + 66 + ib];
        const db = [f32(f32(d * f32(0.5 + (sc & 0x0f))) * 0.25), f32(f32(d * f32(0.5 + (sc >> 4))) * 0.25)];
        for (let l = 0; l < 4; l++) {
          const entry = src[at + 2 + 4 * ib + l] | ((qh << (8 - 2 * l)) & 0x300);
          group(out, b * 256 + 32 * ib + 8 * l, db[l >> 1], grid, entry, src[at + 34 + 4 * ib + l]);
        }
      }
    }
  },
};
