/**
 * Q6_K: super-blocks of 256 values, 210 bytes: 128 bytes ql (low 4 bits), 64 bytes qh (high 2
 * bits), 16 int8 scales, f16 d. Sub-block j (16 values) is x = d·sc_j·(q − 32). Within each half
 * of 128 values, value l + 32k (l < 32, k < 4) takes its low bits from ql[l + 32·(k mod 2)] (low
 * nibble for k < 2, high for k ≥ 2) and its high bits from qh[l] bits 2k…2k+1.
 * Quantization is quantize_row_q6_K_ref: make_qx_quants per 16 values, 8-bit scales relative to
 * the largest, then every value requantized against the stored scales.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';
import { makeQxQuantsRmse1 } from './k-quant-search.js';
import { encodeKQuantWasm, encodeKQuantWeightedWasm } from './kquant-wasm.js';

// Bound once: the loops below call these per value (a module binding may be a getter).
const { cmax, cmin, f16Table, f32, GROUP_MAX_EPS, largestMagnitude, nearestInt, putU16, toF16Bits, u16At } = cFloat;

const QK_K = 256;
const BYTES = 210;

const L = new Uint8Array(QK_K);
const scales = new Float32Array(16);

export const Q6_K_CODEC: BlockCodec = {
  type: ggmlTypeByName('Q6_K')!,
  decode(src, out) {
    const half = f16Table();
    const n = src.length / BYTES;
    for (let b = 0; b < n; b++) {
      const at = b * BYTES;
      const d = half[u16At(src, at + 208)];
      let ql = at;
      let qh = at + 128;
      let sc = at + 192;
      let y = b * QK_K;
      for (let half128 = 0; half128 < 2; half128++) {
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const h = src[qh + l];
          const q1 = ((src[ql + l] & 0x0f) | ((h & 3) << 4)) - 32;
          const q2 = ((src[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
          const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
          const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
          out[y + l] = f32(f32(d * int8(src[sc + is])) * q1);
          out[y + l + 32] = f32(f32(d * int8(src[sc + is + 2])) * q2);
          out[y + l + 64] = f32(f32(d * int8(src[sc + is + 4])) * q3);
          out[y + l + 96] = f32(f32(d * int8(src[sc + is + 6])) * q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
      }
    }
  },
  encode(src, out) {
    if (!encodeKQuantWasm('Q6_K', src, out)) encodeQ6KBlocks(src, out);
  },
  // quantize_row_q6_K_impl: make_qx_quants takes the importance weights as they are (no σ² term).
  encodeWeighted(src, out, qw) {
    if (!encodeKQuantWeightedWasm('Q6_K', src, out, qw)) encodeQ6KBlocks(src, out, qw);
  },
};

/**
 * quantize_row_q6_K_ref in TypeScript (the WebAssembly encoder's fallback and twin); with `qw`,
 * quantize_row_q6_K_impl, which differs only in the weights of the 16-value scale search.
 */
export function encodeQ6KBlocks(src: Float32Array, out: Uint8Array, qw?: Float32Array): void {
  const half = f16Table();
  const n = src.length / QK_K;
  for (let b = 0; b < n; b++) {
    const x = b * QK_K;
    const at = b * BYTES;
    for (let ib = 0; ib < 16; ib++) scales[ib] = makeQxQuantsRmse1(16, 32, src, x + 16 * ib, L, 16 * ib, qw ? qw.subarray(x + 16 * ib) : null);
    const maxScale = largestMagnitude(scales, 0, 16);
    out.fill(0, at, at + BYTES);
    if (Math.abs(maxScale) < GROUP_MAX_EPS) continue; // an all-zero block, d = +0
    const iscale = f32(-128 / maxScale);
    const dBits = toF16Bits(f32(1 / iscale));
    putU16(out, at + 208, dBits);
    for (let ib = 0; ib < 16; ib++) out[at + 192 + ib] = cmin(127, nearestInt(f32(iscale * scales[ib]))) & 0xff;
    for (let j = 0; j < 16; j++) {
      const d = f32(half[dBits] * int8(out[at + 192 + j]));
      if (d === 0) continue; // C's `if (!d)`: a NaN scale goes on
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(f32(src[x + 16 * j + ii] / d));
        L[16 * j + ii] = cmax(-32, cmin(31, l)) + 32;
      }
    }
    let ql = at;
    let qh = at + 128;
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        const a = L[j + l], bq = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
        out[ql + l] = ((a & 0x0f) | ((c & 0x0f) << 4)) & 0xff;
        out[ql + l + 32] = ((bq & 0x0f) | ((e & 0x0f) << 4)) & 0xff;
        out[qh + l] = ((a >> 4) | ((bq >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)) & 0xff;
      }
      ql += 64;
      qh += 32;
    }
  }
}

function int8(byte: number): number {
  return (byte << 24) >> 24;
}
