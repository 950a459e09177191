/**
 * IQ1_S and IQ1_M (written only with an importance matrix, iq1-search.ts): 256 values in groups of 8 from a grid of ternary entries
 * (iq1s_grid: −1, 0, 1), shifted by ±1/8 and scaled: x = d·(2s + 1)·(grid[j] + δ), as ggml's
 * dequantize_row_iq1_* computes it (every product exact in f32).
 * - IQ1_S (50 bytes): f16 d, 32 bytes of grid indexes' low 8 bits, then per 32 values a u16 with
 *   four 3-bit index tops, a 3-bit scale (bits 12–14) and δ's sign (bit 15).
 * - IQ1_M (56 bytes): 32 bytes of index low bits, 16 bytes (per 16 values: two 3-bit index tops and
 *   two δ signs), then four u16 of 3-bit scales whose top nibbles make the f16 d.
 */
import { MergeError } from '../../../errors.js';
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { encodeIq1MRow, encodeIq1SRow, iq1Tables } from './iq1-search.js';
import { iqGrid } from './iq-grids.js';
import { needsImatrix } from './iq2.js';
import { encodeIqLowWasm } from './kquant-wasm.js';

const { f16Table, f32, u16At } = cFloat;

const DELTA = 0.125;

/** y[j] = dl·(grid[j] + δ) for one entry of iq1s_grid (bytes as int8). */
function group(out: Float32Array, y: number, dl: number, grid: Uint8Array, entry: number, delta: number): void {
  for (let j = 0; j < 8; j++) out[y + j] = f32(dl * f32(((grid[entry * 8 + j] << 24) >> 24) + delta));
}

/**
 * IQ1_S: decoded as dequantize_row_iq1_s; written only with importance weights, as quantize_iq1_s
 * (iq1-search.ts), which asserts that it has them.
 */
export const IQ1_S_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ1_S')!,
  needsImportance: true,
  encode() {
    throw new MergeError('BAD_ARGUMENT', needsImatrix('IQ1_S'));
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIqLowWasm('IQ1_S', iq1Tables(), src, out, qw)) encodeIq1SRow(src, out, qw);
  },
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ1S');
    for (let b = 0, at = 0; at < src.length; b++, at += 50) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const qh = u16At(src, at + 34 + 2 * ib);
        const dl = f32(d * (2 * ((qh >> 12) & 7) + 1));
        const delta = qh & 0x8000 ? -DELTA : DELTA;
        for (let l = 0; l < 4; l++) {
          group(out, b * 256 + 32 * ib + 8 * l, dl, grid, src[at + 2 + 4 * ib + l] | (((qh >> (3 * l)) & 7) << 8), delta);
        }
      }
    }
  },
};

/**
 * IQ1_M: decoded as dequantize_row_iq1_m; written with importance weights, as quantize_iq1_m
 * (iq1-search.ts) with them. ggml's quantize_iq1_m also runs without (weights x², `encode`), which
 * llama-quantize runs only for the tensors tensor_requires_imatrix exempts (token_embd.weight,
 * per_layer_token_embd.weight, output.weight) where it has no weights for them; every other IQ1_M
 * tensor it (and loramerge) writes only with an importance matrix.
 */
export const IQ1_M_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ1_M')!,
  needsImportance: true,
  unweightedForEmbeddingAndHead: true,
  encode(src, out) {
    if (!encodeIqLowWasm('IQ1_M', iq1Tables(), src, out, undefined)) encodeIq1MRow(src, out, undefined);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIqLowWasm('IQ1_M', iq1Tables(), src, out, qw)) encodeIq1MRow(src, out, qw);
  },
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ1S');
    for (let b = 0, at = 0; at < src.length; b++, at += 56) {
      const sc = [0, 1, 2, 3].map((i) => u16At(src, at + 48 + 2 * i));
      const d = half[(sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)];
      for (let ib = 0; ib < 8; ib++) {
        const s = sc[ib >> 1] >> (6 * (ib & 1));
        const dl1 = f32(d * (2 * (s & 7) + 1));
        const dl2 = f32(d * (2 * ((s >> 3) & 7) + 1));
        const qs = at + 4 * ib;
        const [h0, h1] = [src[at + 32 + 2 * ib], src[at + 33 + 2 * ib]];
        const y = b * 256 + 32 * ib;
        group(out, y, dl1, grid, src[qs] | ((h0 << 8) & 0x700), h0 & 0x08 ? -DELTA : DELTA);
        group(out, y + 8, dl1, grid, src[qs + 1] | ((h0 << 4) & 0x700), h0 & 0x80 ? -DELTA : DELTA);
        group(out, y + 16, dl2, grid, src[qs + 2] | ((h1 << 8) & 0x700), h1 & 0x08 ? -DELTA : DELTA);
        group(out, y + 24, dl2, grid, src[qs + 3] | ((h1 << 4) & 0x700), h1 & 0x80 ? -DELTA : DELTA);
      }
    }
  },
};
