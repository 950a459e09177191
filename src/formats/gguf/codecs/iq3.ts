/**
 * IQ3_XXS and IQ3_S: 256 values per block, in groups of 4 taken from a grid (iq-grids.ts), 8
 * sign bits per 8 values, and a scale per 32 (IQ3_XXS) or 32 of each 64 (IQ3_S), as ggml's
 * dequantize_row_iq3_* computes them (every product exact in f32).
 * - IQ3_XXS (98 bytes): f16 d, 64 bytes of 8-bit grid indexes, then per 32 values a u32 of four
 *   7-bit sign sets (KSIGNS completes them) and a 4-bit scale: x = d·(0.5 + s)·0.5·grid·(±1).
 * - IQ3_S (110 bytes): f16 d, 64 bytes of grid indexes' low 8 bits, 8 bytes of their ninth bits,
 *   32 bytes of signs, 4 bytes of two 4-bit scales: x = d·(1 + 2s)·grid·(±1).
 *
 * Encoded as llama-quantize writes them: quantize_iq3_xxs and quantize_iq3_s, with or without
 * importance weights (the search over 32 values is in iq3-search.ts; the whole encoder runs in
 * WebAssembly, kquant-wasm.ts, where it compiles, with the same bytes), then
 * one f16 scale per 256 from the largest scale of 32 (÷ 31, times C's fudge factor 1.0125 or
 * 1.033) and a 4-bit sub-scale each, rounded by nearest_int against the unfudged scale.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { iqGrid, KSIGNS } from './iq-grids.js';
import { sumSquares } from './importance.js';
import { iq3Tables, type Iq3Search, searchEntries, searchSigns, searchThirtyTwo } from './iq3-search.js';
import { encodeIq3Wasm } from './kquant-wasm.js';

const { cmax, f16Table, f32, nearestInt, putU16, putU32, toF16Bits, u16At, u32At } = cFloat;

/** Values y … y+8 from two grid entries of 4 and one sign byte, C's order. */
function eight(out: Float32Array, y: number, db: number, grid: Uint8Array, e1: number, e2: number, signs: number): void {
  for (let j = 0; j < 4; j++) {
    out[y + j] = f32(f32(db * grid[e1 * 4 + j]) * (signs & (1 << j) ? -1 : 1));
    out[y + j + 4] = f32(f32(db * grid[e2 * 4 + j]) * (signs & (1 << (j + 4)) ? -1 : 1));
  }
}

/** The 4-bit sub-scale l of a scale of 32: (1 + 2l)·d approximates it; nearest_int(0.5·(id·scale − 1)) in 0…15. */
function subScale(id: number, scale: number): number {
  const l = nearestInt(f32(0.5 * f32(f32(id * scale) - 1)));
  return l < 0 ? 0 : l > 15 ? 15 : l;
}

/** IQ3_XXS: decoded as dequantize_row_iq3_xxs, encoded as quantize_iq3_xxs. */
export const IQ3_XXS_CODEC: BlockCodec = {
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
  encode(src, out) {
    if (!encodeIq3Wasm('IQ3_XXS', iq3Tables('IQ3_XXS'), src, out)) encodeXxs(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIq3Wasm('IQ3_XXS', iq3Tables('IQ3_XXS'), src, out, qw)) encodeXxs(src, out, qw);
  },
};

/** The TypeScript quantizer (the WebAssembly encoder's twin, and where it is unavailable). */
export function encodeXxs(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const search: Iq3Search = { tables: iq3Tables('IQ3_XXS'), trials: 15, xxs: true };
  const scales = new Float64Array(8);
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 98) {
    out.fill(0, at, at + 98);
    let maxScale = 0;
    // With an imatrix: σ² = 2·Σx²/256 over the 256 values (C: 2*sumx2/QK_K).
    const sigma2 = qw && f32(f32(2 * sumSquares(src, b * 256, 256)) / 256);
    for (let ib = 0; ib < 8; ib++) {
      const scale = searchThirtyTwo(src, b * 256 + 32 * ib, search, qw, sigma2);
      scales[ib] = scale ?? 0;
      if (scale === undefined) continue;
      for (let k = 0; k < 8; k++) out[at + 2 + 8 * ib + k] = searchEntries[k];
      putU32(out, at + 66 + 4 * ib, searchSigns[0] | (searchSigns[1] << 7) | (searchSigns[2] << 14) | (searchSigns[3] << 21));
      maxScale = cmax(maxScale, scale);
    }
    // All 32s skipped or of scale 0: C zeroes the whole block.
    if (maxScale === 0) {
      out.fill(0, at, at + 98);
      continue;
    }
    const d = f32(maxScale / 31);
    putU16(out, at, toF16Bits(f32(d * f32(1.0125))));
    const id = f32(1 / d);
    for (let ib = 0; ib < 8; ib++) {
      const l = subScale(id, scales[ib]);
      putU32(out, at + 66 + 4 * ib, (u32At(out, at + 66 + 4 * ib) | (l << 28)) >>> 0);
    }
  }
}

/** IQ3_S: decoded as dequantize_row_iq3_s, encoded as quantize_iq3_s. */
export const IQ3_S_CODEC: BlockCodec = {
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
  encode(src, out) {
    if (!encodeIq3Wasm('IQ3_S', iq3Tables('IQ3_S'), src, out)) encodeS(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIq3Wasm('IQ3_S', iq3Tables('IQ3_S'), src, out, qw)) encodeS(src, out, qw);
  },
};

/** The TypeScript quantizer (the WebAssembly encoder's twin, and where it is unavailable). */
export function encodeS(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const search: Iq3Search = { tables: iq3Tables('IQ3_S'), trials: 9, xxs: false };
  const scales = new Float64Array(8);
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 110) {
    out.fill(0, at, at + 110);
    let maxScale = 0;
    // With an imatrix: σ² = 2·Σx²/256 over the 256 values (C: 2*sumx2/QK_K).
    const sigma2 = qw && f32(f32(2 * sumSquares(src, b * 256, 256)) / 256);
    // C advances its entry and sign pointers only past 32s it does not skip, so after an
    // all-zero 32 the following ones' entries and signs land one slot early (their ninth bits
    // and scales do not move); llama-quantize writes that, and so do we.
    let qs = at + 2;
    let signs = at + 74;
    for (let ib = 0; ib < 8; ib++) {
      const scale = searchThirtyTwo(src, b * 256 + 32 * ib, search, qw, sigma2);
      scales[ib] = scale ?? 0;
      if (scale === undefined) continue;
      for (let k = 0; k < 8; k++) {
        out[qs + k] = searchEntries[k] & 255;
        out[at + 66 + ib] |= (searchEntries[k] >> 8) << k;
      }
      for (let k = 0; k < 4; k++) out[signs + k] = searchSigns[k];
      qs += 8;
      signs += 4;
      maxScale = cmax(maxScale, scale);
    }
    // Unlike IQ3_XXS, C leaves the entries and signs written when every scale is 0.
    if (maxScale === 0) continue;
    const d = f32(maxScale / 31);
    putU16(out, at, toF16Bits(f32(d * f32(1.033))));
    const id = f32(1 / d);
    for (let ib = 0; ib < 8; ib += 2) out[at + 106 + ib / 2] = subScale(id, scales[ib]) | (subScale(id, scales[ib + 1]) << 4);
  }
}
