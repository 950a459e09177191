/**
 * Q3_K: super-blocks of 256 values, 110 bytes: 32 bytes hmask (third bits), 64 bytes of 2-bit low
 * levels (laid out as Q2_K's), 12 bytes of sixteen 6-bit scales, f16 d. Sub-block j (16 values) is
 * x = d·(sc_j − 32)·(q − 4), where q's third bit of value k is bit k / 32 of hmask[k mod 32].
 * Scale j keeps its low 4 bits in byte j (j < 8, low nibble) or j − 8 (high nibble), and its top 2
 * bits in byte 8 + j mod 4 at bit 2·(j / 4).
 * Quantization is quantize_row_q3_K_ref: make_q3_quants (weights x², five refinement passes) per
 * 16 values, 6-bit scales relative to the largest, then every value requantized against the
 * stored scales.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { makeQ3Quants, makeQxQuantsRmse1 } from './k-quant-search.js';
import { importanceWeights, sumF32, sumSquares } from './importance.js';
import { encodeKQuantWasm, encodeKQuantWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, cmin, f16Table, f32, largestMagnitude, nearestInt, putU16, toF16Bits, toInt8, u16At } = cFloat;

const QK_K = 256;
const BYTES = 110;
const QS = 32;
const SCALES = 96;
const D = 108;

/** 6-bit scale j (0…63) of the 12 bytes at `at`. */
export function q3Scale(bytes: Uint8Array, at: number, j: number): number {
  const low = j < 8 ? bytes[at + j] & 0x0f : bytes[at + j - 8] >> 4;
  return low | (((bytes[at + 8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4);
}

export const Q3_K_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q3_K')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at + D)];
      for (let k = 0; k < QK_K; k += 16) {
        const dl = f32(d * (q3Scale(src, at + SCALES, k >> 4) - 32));
        const q = at + QS + 32 * (k >> 7) + (k & 31);
        const shift = 2 * ((k & 127) >> 5);
        const hm = at + (k & 31);
        const bit = 1 << (k >> 5);
        const y = b * QK_K + k;
        for (let l = 0; l < 16; l++) out[y + l] = f32(dl * (((src[q + l] >> shift) & 3) - (src[hm + l] & bit ? 0 : 4)));
      }
    }
  },
  encode(src, out) {
    if (!encodeKQuantWasm('Q3_K', src, out)) encodeQ3KBlocks(src, out);
  },
  encodeWeighted(src, out, qw) {
    if (!encodeKQuantWeightedWasm('Q3_K', src, out, qw)) encodeQ3KBlocks(src, out, qw);
  },
};

const L = new Int8Array(QK_K);
/** L as C's make_qx_quants writes it (levels 0…7 there, the same bytes). */
const Lu = new Uint8Array(L.buffer);
const scales = new Float32Array(16);
const weight = new Float32Array(16);
const sw = new Float32Array(16);
const Ls = new Uint8Array(16);

/**
 * quantize_row_q3_K_ref in TypeScript (the WebAssembly encoder's fallback and twin). With
 * importance weights `qw` (one row), quantize_row_q3_K_impl: per 16 values make_qx_quants(16, 4)
 * weighted by qw·sqrtf(σ² + x²) (σ² = 2·Σx²/256), and the 6-bit scales by make_qx_quants(16, 32)
 * of the 16 scales weighted by each 16's Σ weights; the levels are then found as the reference does.
 */
export function encodeQ3KBlocks(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const half = f16Table();
  const n = src.length / QK_K;
  for (let b = 0; b < n; b++) {
    const x = b * QK_K;
    const at = b * BYTES;
    out.fill(0, at, at + BYTES);
    const sc = at + SCALES;
    const dBits = qw ? weightedScales(src, x, qw, out, sc) : scaleCodes(src, x, out, sc);
    putU16(out, at + D, dBits);
    for (let j = 0; j < 16; j++) {
      const d = f32(half[dBits] * (q3Scale(out, sc, j) - 32));
      if (d === 0) continue; // C's `if (!d)`: a NaN scale goes on
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(src[x + 16 * j + ii] / d));
        L[16 * j + ii] = cmax(-4, cmin(3, l)) + 4;
      }
    }
    // The third bit of value k goes to bit k / 32 of hmask[k mod 32].
    for (let k = 0; k < QK_K; k++) {
      if (L[k] > 3) {
        out[at + (k & 31)] |= 1 << (k >> 5);
        L[k] -= 4;
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      const qs = at + QS + j / 4;
      for (let l = 0; l < 32; l++) {
        out[qs + l] = (L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)) & 0xff;
      }
    }
  }
}

/** The same 6-bit code packing for both paths: code l (0…63) of sub-block j. */
function putScaleCode(out: Uint8Array, sc: number, j: number, l: number): void {
  if (j < 8) out[sc + j] = l & 0x0f;
  else out[sc + j - 8] |= (l & 0x0f) << 4;
  out[sc + 8 + (j & 3)] |= (l >> 4) << (2 * (j >> 2));
}

/** quantize_row_q3_K_ref's scales: make_q3_quants per 16, codes relative to the largest; the d bits. */
function scaleCodes(src: Float32Array, x: number, out: Uint8Array, sc: number): number {
  for (let j = 0; j < 16; j++) scales[j] = makeQ3Quants(16, 4, src, x + 16 * j, L, 16 * j);
  const maxScale = largestMagnitude(scales, 0, 16);
  if (maxScale === 0) return 0; // C's `if (max_scale)`
  const iscale = f32(-32 / maxScale);
  // int8_t l = nearest_int(…); l = MAX(-32, MIN(31, l)) + 32;
  for (let j = 0; j < 16; j++) putScaleCode(out, sc, j, cmax(-32, cmin(31, toInt8(nearestInt(f32(iscale * scales[j]))))) + 32);
  return toF16Bits(f32(1 / iscale));
}

/** quantize_row_q3_K_impl's scales with importance weights; the d bits. */
function weightedScales(src: Float32Array, x: number, qw: Float32Array, out: Uint8Array, sc: number): number {
  const sigma2 = f32(f32(2 * sumSquares(src, x, QK_K)) / QK_K);
  for (let j = 0; j < 16; j++) {
    importanceWeights(src, x + 16 * j, qw, x + 16 * j, sigma2, 16, weight);
    sw[j] = sumF32(weight, 16);
    scales[j] = makeQxQuantsRmse1(16, 4, src, x + 16 * j, Lu, 16 * j, weight);
  }
  const dBlock = makeQxQuantsRmse1(16, 32, scales, 0, Ls, 0, sw);
  for (let j = 0; j < 16; j++) putScaleCode(out, sc, j, Ls[j]);
  return toF16Bits(dBlock);
}
