/**
 * IQ3_XXS and IQ3_S (decoded only): 256 values per block, in groups of 4 taken from a grid
 * (iq-grids.ts), 8 sign bits per 8 values, and a scale per 32 (IQ3_XXS) or 32 of each 64 (IQ3_S),
 * as ggml's dequantize_row_iq3_* computes them (every product exact in f32).
 * - IQ3_XXS (98 bytes): f16 d, 64 bytes of 8-bit grid indexes, then per 32 values a u32 of four
 *   7-bit sign sets (KSIGNS completes them) and a 4-bit scale: x = d·(0.5 + s)·0.5·grid·(±1).
 * - IQ3_S (110 bytes): f16 d, 64 bytes of grid indexes' low 8 bits, 8 bytes of their ninth bits,
 *   32 bytes of signs, 4 bytes of two 4-bit scales: x = d·(1 + 2s)·grid·(±1).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockDecoder } from './codec.js';
import * as cFloat from './c-float.js';
import { iqGrid, KSIGNS } from './iq-grids.js';

const { f16Table, f32, u16At } = cFloat;

/** Values y … y+8 from two grid entries of 4 and one sign byte, C's order. */
function eight(out: Float32Array, y: number, db: number, grid: Uint8Array, e1: number, e2: number, signs: number): void {
  for (let j = 0; j < 4; j++) {
    out[y + j] = f32(f32(db * grid[e1 * 4 + j]) * (signs & (1 << j) ? -1 : 1));
    out[y + j + 4] = f32(f32(db * grid[e2 * 4 + j]) * (signs & (1 << (j + 4)) ? -1 : 1));
  }
}

export const IQ3_XXS_DECODER: BlockDecoder = {
  type: ggmlTypeByName('IQ3_XXS')!,
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ3XXS');
    for (let b = 0, at = 0; at < src.length; b++, at += 98) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const s = at + 66 + 4 * ib;
        const aux = (src[s] | (src[s + 1] << 8) | (src[s + 2] << 16) | (src[s + 3] << 24)) >>> 0;
        const db = f32(f32(d * f32(0.5 + (aux >>> 28))) * 0.5);
        const qs = at + 2 + 8 * ib;
        for (let l = 0; l < 4; l++) eight(out, b * 256 + 32 * ib + 8 * l, db, grid, src[qs + 2 * l], src[qs + 2 * l + 1], KSIGNS[(aux >>> (7 * l)) & 127]);
      }
    }
  },
};

export const IQ3_S_DECODER: BlockDecoder = {
  type: ggmlTypeByName('IQ3_S')!,
  decode(src, out) {
    const half = f16Table();
    const grid = iqGrid('IQ3S');
    for (let b = 0, at = 0; at < src.length; b++, at += 110) {
      const d = half[u16At(src, at)];
      for (let ib = 0; ib < 8; ib++) {
        const sc = src[at + 106 + (ib >> 1)];
        const db = f32(d * (1 + 2 * (ib & 1 ? sc >> 4 : sc & 0x0f)));
        const qs = at + 2 + 8 * ib;
        const qh = src[at + 66 + ib];
        for (let l = 0; l < 4; l++) {
          const e1 = src[qs + 2 * l] | ((qh << (8 - 2 * l)) & 256);
          const e2 = src[qs + 2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
          eight(out, b * 256 + 32 * ib + 8 * l, db, grid, e1, e2, src[at + 74 + 4 * ib + l]);
        }
      }
    }
  },
};
