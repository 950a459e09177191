/**
 * Q4_K: super-blocks of 256 values, 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins
 * (k-scales.ts), 128 bytes of nibbles. Sub-block j (32 values) is x = d·sc_j·q − dmin·m_j; each
 * group of 64 values keeps its first 32 in the low nibbles of 32 bytes and the next 32 in the high.
 * Quantization is quantize_row_q4_K_ref (and q5_k.ts shares it with 5-bit levels).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { kMin, kScale, putKScaleMin } from './k-scales.js';
import { makeQkx2Quants, makeQpQuants } from './k-quant-search.js';
import { importanceWeights, sumF32, sumSquares } from './importance.js';
import { encodeKQuantWasm, encodeKQuantWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, cmin, f16Table, f32, nearestInt, putU16, toF16Bits, u16At } = cFloat;

const QK_K = 256;
const BYTES = 144;

export const Q4_K_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q4_K')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at)];
      const dmin = half[u16At(src, at + 2)];
      let y = b * QK_K;
      let q = at + 16;
      for (let j = 0; j < 8; j += 2) {
        const d1 = f32(d * kScale(src, at + 4, j));
        const m1 = f32(dmin * kMin(src, at + 4, j));
        const d2 = f32(d * kScale(src, at + 4, j + 1));
        const m2 = f32(dmin * kMin(src, at + 4, j + 1));
        for (let l = 0; l < 32; l++) out[y + l] = f32(f32(d1 * (src[q + l] & 0x0f)) - m1);
        for (let l = 0; l < 32; l++) out[y + 32 + l] = f32(f32(d2 * (src[q + l] >> 4)) - m2);
        y += 64;
        q += 32;
      }
    }
  },
  encode(src, out) {
    if (!encodeKQuantWasm('Q4_K', src, out)) encodeScaleMinBlocks(src, out, 15);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeKQuantWeightedWasm('Q4_K', src, out, qw)) encodeScaleMinBlocks(src, out, 15, qw);
  },
};

const L = new Uint8Array(QK_K);
const Laux = new Uint8Array(32);
const weights = new Float32Array(32);
const scales = new Float32Array(8);
const mins = new Float32Array(8);
const sw = new Float32Array(8);
const Ls = new Uint8Array(8);
const Lm = new Uint8Array(8);

/**
 * quantize_row_q4_K_ref (nmax 15) and quantize_row_q5_K_ref (nmax 31): a weighted scale-and-min
 * fit per 32 values, 6-bit scales and mins relative to the largest, then every value requantized
 * against the stored (f16-rounded) scales. Q4_K writes 144-byte blocks, Q5_K 176-byte ones.
 * With importance weights `qw` (one row), quantize_row_q4_K_impl / _q5_K_impl: the fit weighted
 * by qw·sqrtf(σ² + x²) (σ² = 2·Σx²/256) with make_qkx3_quants' steps, and the 6-bit scales and
 * mins fitted by make_qp_quants, weighted by each 32's Σ weights.
 */
export function encodeScaleMinBlocks(src: Float32Array, out: Uint8Array, nmax: 15 | 31, qw?: Float32Array): void {
  const half = f16Table();
  const blockBytes = nmax === 15 ? 144 : 176;
  const [rmin, nstep] = nmax === 15 ? [-1, 20] : [-0.5, 15];
  const n = src.length / QK_K;
  for (let b = 0; b < n; b++) {
    const x = b * QK_K;
    const at = b * blockBytes;
    out.fill(0, at, at + blockBytes);
    if (qw) {
      const [dBits, dminBits] = weightedScales(src, x, qw, out, at, nmax);
      requantizeAndPack(src, x, out, at, nmax, half, dBits, dminBits);
      continue;
    }
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) {
        const v = src[x + 32 * j + l];
        sumX2 = f32(sumX2 + f32(v * v));
      }
      const avX = f32(Math.sqrt(f32(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = f32(avX + Math.abs(src[x + 32 * j + l]));
      const fit = makeQkx2Quants(32, nmax, src, x + 32 * j, weights, L, 32 * j, Laux, rmin, f32(0.1), nstep, false);
      scales[j] = fit.scale;
      mins[j] = fit.theMin;
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const invScale = maxScale > 0 ? f32(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? f32(63 / maxMin) : 0;
    for (let j = 0; j < 8; j++) {
      const ls = cmin(63, nearestInt(f32(invScale * scales[j])) & 0xff);
      const lm = cmin(63, nearestInt(f32(invMin * mins[j])) & 0xff);
      putKScaleMin(out, at + 4, j, ls, lm);
    }
    const dBits = toF16Bits(f32(maxScale / 63));
    const dminBits = toF16Bits(f32(maxMin / 63));
    putU16(out, at, dBits);
    putU16(out, at + 2, dminBits);
    requantizeAndPack(src, x, out, at, nmax, half, dBits, dminBits);
  }
}

/** quantize_row_q{4,5}_K_impl's scale fit with importance weights: the super-block's scales written, its d and dmin bits returned. */
function weightedScales(src: Float32Array, x: number, qw: Float32Array, out: Uint8Array, at: number, nmax: 15 | 31): [number, number] {
  const sigma2 = f32(f32(2 * sumSquares(src, x, QK_K)) / QK_K);
  for (let j = 0; j < 8; j++) {
    importanceWeights(src, x + 32 * j, qw, x + 32 * j, sigma2, 32, weights);
    sw[j] = sumF32(weights, 32);
    const fit = makeQkx2Quants(32, nmax, src, x + 32 * j, weights, L, 32 * j, Laux, f32(-0.9), f32(0.05), 36, false);
    scales[j] = fit.scale;
    mins[j] = fit.theMin;
  }
  const dBlock = makeQpQuants(8, 63, scales, Ls, sw);
  const mBlock = makeQpQuants(8, 63, mins, Lm, sw);
  // Q5_K's impl clamps to 63 (a no-op unless a level wrapped); Q4_K's stores them as they are.
  for (let j = 0; j < 8; j++) putKScaleMin(out, at + 4, j, nmax === 31 ? cmin(63, Ls[j]) : Ls[j], nmax === 31 ? cmin(63, Lm[j]) : Lm[j]);
  const dBits = toF16Bits(dBlock);
  const dminBits = toF16Bits(mBlock);
  putU16(out, at, dBits);
  putU16(out, at + 2, dminBits);
  return [dBits, dminBits];
}

/** Every value requantized against the stored (f16) scales and mins, then packed (4 bits, or 4 + 1 high bit). */
function requantizeAndPack(src: Float32Array, x: number, out: Uint8Array, at: number, nmax: 15 | 31, half: Float32Array, dBits: number, dminBits: number): void {
  for (let j = 0; j < 8; j++) {
    const d = f32(half[dBits] * kScale(out, at + 4, j));
    if (d === 0) continue; // C's `if (!d)`: a NaN scale goes on
    const dm = f32(half[dminBits] * kMin(out, at + 4, j));
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(f32(f32(src[x + 32 * j + ii] + dm) / d));
      L[32 * j + ii] = cmax(0, cmin(nmax, l));
    }
  }
  if (nmax === 15) {
    let q = at + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) out[q + l] = (L[j + l] | (L[j + l + 32] << 4)) & 0xff;
      q += 32;
    }
  } else {
    const qh = at + 16;
    let ql = at + 48;
    let m1 = 1;
    let m2 = 2;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) {
        let l1 = L[j + l];
        if (l1 > 15) {
          l1 -= 16;
          out[qh + l] |= m1;
        }
        let l2 = L[j + l + 32];
        if (l2 > 15) {
          l2 -= 16;
          out[qh + l] |= m2;
        }
        out[ql + l] = (l1 | (l2 << 4)) & 0xff;
      }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
  }
}
