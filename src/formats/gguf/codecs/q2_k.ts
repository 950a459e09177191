/**
 * Q2_K: super-blocks of 256 values, 84 bytes: 16 bytes of 4-bit scale (low nibble) and min (high
 * nibble) per 16 values, 64 bytes of 2-bit levels, f16 d, f16 dmin. Sub-block j is
 * x = d·sc_j·q − dmin·m_j. In each half of 128 values, value l + 32s (l < 32, s < 4) is bits
 * 2s…2s+1 of qs[32·half + l].
 * Quantization is quantize_row_q2_K_ref: make_qkx2_quants per 16 values (weights |x|, absolute
 * error), 4-bit scales and mins relative to the largest, then every value requantized against the
 * stored (f16-rounded) scales.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { makeQkx2Quants, makeQpQuants } from './k-quant-search.js';
import { importanceWeights, sumF32, sumSquares } from './importance.js';
import { encodeKQuantWasm, encodeKQuantWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, cmin, f16Table, f32, nearestInt, putU16, toF16Bits, u16At } = cFloat;

const QK_K = 256;
const BYTES = 84;
const QS = 16;
const D = 80;

export const Q2_K_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q2_K')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at + D)];
      const dmin = half[u16At(src, at + D + 2)];
      for (let k = 0; k < QK_K; k += 16) {
        const sc = src[at + (k >> 4)];
        const dl = f32(d * (sc & 0x0f));
        const ml = f32(dmin * (sc >> 4));
        // Value k + l sits in byte 32·(k / 128) + (k mod 32) + l, at bit 2·((k mod 128) / 32).
        const q = at + QS + 32 * (k >> 7) + (k & 31);
        const shift = 2 * ((k & 127) >> 5);
        const y = b * QK_K + k;
        for (let l = 0; l < 16; l++) out[y + l] = f32(f32(dl * ((src[q + l] >> shift) & 3)) - ml);
      }
    }
  },
  encode(src, out) {
    if (!encodeKQuantWasm('Q2_K', src, out)) encodeQ2KBlocks(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeKQuantWeightedWasm('Q2_K', src, out, qw)) encodeQ2KBlocks(src, out, qw);
  },
};

const L = new Uint8Array(QK_K);
const Laux = new Uint8Array(16);
const weights = new Float32Array(16);
const scales = new Float32Array(16);
const mins = new Float32Array(16);
const sw = new Float32Array(16);
const Ls = new Uint8Array(16);
const Lm = new Uint8Array(16);

/**
 * quantize_row_q2_K_ref in TypeScript (the WebAssembly encoder's fallback and twin). With
 * importance weights `qw` (one row), quantize_row_q2_K_impl: per 16 values the weights
 * qw·sqrtf(σ² + x²) (σ² = Σx²/256), make_qkx3_quants(16, 3, …, −0.9, 0.05, 36) with squared
 * errors, and the 4-bit scales and mins fitted by make_qp_quants weighted by each 16's Σ weights.
 */
export function encodeQ2KBlocks(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const half = f16Table();
  const n = src.length / QK_K;
  for (let b = 0; b < n; b++) {
    const x = b * QK_K;
    const at = b * BYTES;
    out.fill(0, at, at + BYTES);
    const [dBits, dminBits] = qw ? weightedScales(src, x, qw, out, at) : scalesAndMins(src, x, out, at);
    putU16(out, at + D, dBits);
    putU16(out, at + D + 2, dminBits);
    for (let j = 0; j < 16; j++) {
      const d = f32(half[dBits] * (out[at + j] & 0x0f));
      if (d === 0) continue; // C's `if (!d)`: a NaN scale goes on
      const dm = f32(half[dminBits] * (out[at + j] >> 4));
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(f32(src[x + 16 * j + ii] + dm) / d));
        L[16 * j + ii] = cmax(0, cmin(3, l));
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      const qs = at + QS + j / 4;
      for (let l = 0; l < 32; l++) {
        out[qs + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
      }
    }
  }
}

/** quantize_row_q2_K_impl's scales and mins with importance weights; the d and dmin bits. */
function weightedScales(src: Float32Array, x: number, qw: Float32Array, out: Uint8Array, at: number): [number, number] {
  const sigma2 = f32(sumSquares(src, x, QK_K) / QK_K);
  for (let j = 0; j < 16; j++) {
    importanceWeights(src, x + 16 * j, qw, x + 16 * j, sigma2, 16, weights);
    sw[j] = sumF32(weights, 16);
    const fit = makeQkx2Quants(16, 3, src, x + 16 * j, weights, L, 16 * j, Laux, f32(-0.9), f32(0.05), 36, false);
    scales[j] = fit.scale;
    mins[j] = fit.theMin;
  }
  const dm = makeQpQuants(16, 15, scales, Ls, sw);
  const mm = makeQpQuants(16, 15, mins, Lm, sw);
  for (let j = 0; j < 16; j++) out[at + j] = (Ls[j] | (Lm[j] << 4)) & 0xff;
  return [toF16Bits(dm), toF16Bits(mm)];
}

/** quantize_row_q2_K_ref's scales and mins: 4-bit multiples of the largest; the d and dmin bits. */
function scalesAndMins(src: Float32Array, x: number, out: Uint8Array, at: number): [number, number] {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(src[x + 16 * j + l]);
    const fit = makeQkx2Quants(16, 3, src, x + 16 * j, weights, L, 16 * j, Laux, -0.5, f32(0.1), 15, true);
    scales[j] = fit.scale;
    mins[j] = fit.theMin;
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  let dBits = 0;
  if (maxScale > 0) {
    const iscale = f32(15 / maxScale);
    for (let j = 0; j < 16; j++) out[at + j] = nearestInt(f32(iscale * scales[j])) & 0xff;
    dBits = toF16Bits(f32(maxScale / 15));
  }
  let dminBits = 0;
  if (maxMin > 0) {
    const iscale = f32(15 / maxMin);
    for (let j = 0; j < 16; j++) out[at + j] = (out[at + j] | (nearestInt(f32(iscale * mins[j])) << 4)) & 0xff;
    dminBits = toF16Bits(f32(maxMin / 15));
  }
  return [dBits, dminBits];
}
