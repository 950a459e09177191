/**
 * IQ4_NL and IQ4_XS: 4-bit indexes into 16 non-linear levels (KVALUES_IQ4NL), decoded as ggml's
 * dequantize_row_iq4_* computes them (every product exact in f32).
 * - IQ4_NL (18 bytes, 32 values): f16 d, 16 bytes: value j in the low nibble of byte j, value
 *   j + 16 in its high nibble; x = d·level.
 * - IQ4_XS (136 bytes, 256 values): f16 d, u16 of the scales' top 2 bits, 4 bytes of their low 4
 *   bits, then per 32 values 16 bytes laid out as IQ4_NL's; x = d·(ls − 32)·level.
 *
 * Encoded as llama-quantize writes them: quantize_iq4_nl and
 * quantize_iq4_xs, i.e. quantize_row_iq4_nl_impl with the weights x² (with an imatrix qw·sqrtf(σ² + x²)) and
 * a search over 15 trial scales (ntry = 7) per 32 values. Every float step is C's f32 step
 * (c-float.ts), unfused; in WebAssembly (wasm/kquant-encoder.ts) where it compiles, with these
 * functions as its fallback and twin.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { KVALUES_IQ4NL } from './iq-grids.js';
import { importanceWeights, sumSquares } from './importance.js';
import { encodeIq4Wasm } from './kquant-wasm.js';

const { GROUP_MAX_EPS, f16Table, f32, nearestInt, putU16, toF16Bits, u16At } = cFloat;

/** The trial scales run from (values[0] − NTRY)/max to (values[0] + NTRY)/max. */
const NTRY = 7;
/** values[j−1] + values[j]: a value x takes level j once 2x reaches it (the midpoints, doubled). */
const DOUBLED_MIDPOINTS = Int32Array.from(KVALUES_IQ4NL, (v, j) => (j ? KVALUES_IQ4NL[j - 1] + v : 0));
const LEVELS = Int32Array.from(KVALUES_IQ4NL);

/**
 * best_index_int8 for the 16 sorted levels: a branch-free binary search on 2x against the doubled
 * midpoints, both exact, so a tie takes the upper level and NaN (no comparison holds) level 0.
 */
function bestLevel(x: number): number {
  const x2 = f32(x + x);
  let idx = x2 >= DOUBLED_MIDPOINTS[8] ? 8 : 0;
  if (x2 >= DOUBLED_MIDPOINTS[idx + 4]) idx += 4;
  if (x2 >= DOUBLED_MIDPOINTS[idx + 2]) idx += 2;
  if (x2 >= DOUBLED_MIDPOINTS[idx + 1]) idx += 1;
  return idx;
}

// Σ w·q·x and Σ w·q² of the last sums() call (module scratch: sums runs 16 times per 32 values).
let sumQX = 0;
let sumQ2 = 0;
const weights = new Float64Array(32);

/** Σ w·q·x and Σ w·q² (w in `weights`) over 32 values with the levels scale `id` picks, as C sums them. */
function sums(x: Float32Array, from: number, id: number): void {
  let sumqx = 0;
  let sumq2 = 0;
  for (let j = 0; j < 32; j++) {
    const xj = x[from + j];
    const q = LEVELS[bestLevel(f32(id * xj))];
    const wq = f32(weights[j] * q);
    sumqx = f32(sumqx + f32(wq * xj));
    sumq2 = f32(sumq2 + f32(wq * q));
  }
  sumQX = sumqx;
  sumQ2 = sumq2;
}

/**
 * The scale of 32 values (quantize_row_iq4_nl_impl's inner loop): from the value of largest
 * magnitude, refined by least squares, then the best of the 15 trial scales; 0 for a block below
 * GROUP_MAX_EPS. (The levels C picks on the way are all picked again from the final scales.)
 */
function blockScale(x: Float32Array, from: number, qw?: Float32Array, sigma2 = 0): number {
  let amax = 0;
  let max = 0;
  for (let j = from; j < from + 32; j++) {
    const ax = Math.abs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < GROUP_MAX_EPS) return 0;
  // With an imatrix qw·sqrtf(σ² + x²), σ² = 2·Σx²/(super-block size); without one x².
  if (qw) importanceWeights(x, from, qw, from, sigma2, 32, weights);
  else for (let j = 0; j < 32; j++) weights[j] = f32(x[from + j] * x[from + j]);
  const v0 = KVALUES_IQ4NL[0];
  sums(x, from, f32(1 / f32(-max / v0)));
  let d = sumQ2 > 0 ? f32(sumQX / sumQ2) : 0;
  let best = f32(d * sumQX);
  for (let itry = -NTRY; itry <= NTRY; itry++) {
    sums(x, from, f32((itry + v0) / max));
    if (sumQ2 > 0 && f32(sumQX * sumQX) > f32(best * sumQ2)) {
      d = f32(sumQX / sumQ2);
      best = f32(d * sumQX);
    }
  }
  return d;
}

/** 32 levels from `levels[at…]` packed as 16 bytes at `out[to…]`: j in the low nibble, j + 16 in the high. */
function pack(levels: Uint8Array, at: number, out: Uint8Array, to: number): void {
  for (let j = 0; j < 16; j++) out[to + j] = levels[at + j] | (levels[at + 16 + j] << 4);
}

function levelsOf(x: Float32Array, from: number, id: number, levels: Uint8Array, at: number): void {
  for (let j = 0; j < 32; j++) levels[at + j] = bestLevel(f32(id * x[from + j]));
}

/** C's `d ? 1/d : 0`: NaN counts as true there (a scale overflowed to Inf/Inf), giving NaN, not 0. */
function inverse(d: number): number {
  return d !== 0 ? f32(1 / d) : 0;
}

function thirtyTwo(src: Uint8Array, qs: number, out: Float32Array, y: number, d: number): void {
  for (let j = 0; j < 16; j++) {
    out[y + j] = f32(d * KVALUES_IQ4NL[src[qs + j] & 0x0f]);
    out[y + j + 16] = f32(d * KVALUES_IQ4NL[src[qs + j] >> 4]);
  }
}

export const IQ4_NL_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ4_NL')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 18) thirtyTwo(src, at + 2, out, b * 32, half[u16At(src, at)]);
  },
  encode(src, out) {
    if (!encodeIq4Wasm('IQ4_NL', src, out)) encodeNl(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIq4Wasm('IQ4_NL', src, out, qw)) encodeNl(src, out, qw);
  },
};

/** quantize_iq4_nl: super-blocks of 32 (so σ² is taken over each 32 values); in TypeScript, the WebAssembly encoder's fallback and twin. */
export function encodeNl(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const levels = new Uint8Array(32);
  for (let b = 0, at = 0; b * 32 < src.length; b++, at += 18) {
    const d = blockScale(src, b * 32, qw, qw && f32(sumSquares(src, b * 32, 32) * f32(2 / 32)));
    putU16(out, at, toF16Bits(d));
    // With trial scales (ntry > 0) the levels are picked again from the chosen scale, unrounded.
    levelsOf(src, b * 32, inverse(d), levels, 0);
    pack(levels, 0, out, at + 2);
  }
}

export const IQ4_XS_CODEC: BlockCodec = {
  type: ggmlTypeByName('IQ4_XS')!,
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 136) {
      const d = half[u16At(src, at)];
      const high = u16At(src, at + 2);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((src[at + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 0x0f) | (((high >> (2 * ib)) & 3) << 4);
        thirtyTwo(src, at + 8 + 16 * ib, out, b * 256 + 32 * ib, f32(d * (ls - 32)));
      }
    }
  },
  encode(src, out) {
    if (!encodeIq4Wasm('IQ4_XS', src, out)) encodeXs(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeIq4Wasm('IQ4_XS', src, out, qw)) encodeXs(src, out, qw);
  },
};

/** quantize_iq4_xs: super-blocks of 256, σ² over each; in TypeScript, the WebAssembly encoder's fallback and twin. */
export function encodeXs(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const levels = new Uint8Array(256);
  const scales = new Float64Array(8);
  for (let b = 0, at = 0; b * 256 < src.length; b++, at += 136) {
    const x = b * 256;
    let maxScale = 0;
    let amaxScale = 0;
    const sigma2 = qw && f32(sumSquares(src, x, 256) * f32(2 / 256));
    for (let ib = 0; ib < 8; ib++) {
      const d = blockScale(src, x + 32 * ib, qw, sigma2);
      scales[ib] = d;
      if (Math.abs(d) > amaxScale) {
        amaxScale = Math.abs(d);
        maxScale = d;
      }
    }
    // One f16 scale for the 256 values, and per 32 a 6-bit multiple of it (offset by 32), found
    // from the unrounded super-scale d as C does; the levels are picked again from d·l.
    const d = f32(-maxScale / 32);
    putU16(out, at, toF16Bits(d));
    const id = inverse(d);
    let high = 0;
    out.fill(0, at + 4, at + 8);
    for (let ib = 0; ib < 8; ib++) {
      let l = nearestInt(f32(id * scales[ib]));
      l = Math.max(-32, Math.min(31, l));
      const dl = f32(d * l);
      levelsOf(src, x + 32 * ib, inverse(dl), levels, 32 * ib);
      l += 32;
      out[at + 4 + (ib >> 1)] |= (l & 0x0f) << (4 * (ib & 1));
      high |= (l >> 4) << (2 * ib);
    }
    putU16(out, at + 2, high);
    for (let ib = 0; ib < 8; ib++) pack(levels, 32 * ib, out, at + 8 + 16 * ib);
  }
}
