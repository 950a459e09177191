/**
 * TQ1_0 and TQ2_0, ternary weights: x = (q − 1)·d with q ∈ {0, 1, 2}, as ggml's
 * dequantize_row_tq* computes it.
 * - TQ2_0 (66 bytes): 64 bytes of 2-bit q (value 32·(4i + l)… of each 128: bits 2l of byte
 *   32i + m), f16 d.
 * - TQ1_0 (54 bytes): 48 bytes holding 5 values each and 4 bytes holding 4 each, as base-3 digits
 *   scaled to a byte (digit n of byte q is ⌊(q·3ⁿ mod 256)·3 / 256⌋), f16 d.
 * Quantization (quantize_row_tq{1,2}_0_ref): d = the largest |x| (by C's MAX macro, whose NaN
 * handling is kept), q = lroundf(x/d) + 1; TQ1_0 packs five (or four) q as base-3 digits, most
 * significant first, and stores ⌈digits·256 / 243⌉.
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import * as cFloat from './c-float.js';

const { cmax, f16Table, f32, putU16, roundf, toF16Bits, u16At } = cFloat;
const POW3 = [1, 3, 9, 27, 81, 243];

const trit = (byte: number, n: number) => ((((byte * POW3[n]) & 0xff) * 3) >> 8) - 1;

/** The block's d (f32) and 1/d, written as its f16 d at `dAt`. */
function blockScale(src: Float32Array, x: number, out: Uint8Array, dAt: number): number {
  let amax = 0;
  for (let j = 0; j < 256; j++) amax = cmax(amax, Math.abs(src[x + j]));
  putU16(out, dAt, toF16Bits(amax));
  return amax !== 0 ? f32(1 / amax) : 0;
}

/**
 * lroundf(v) + 1, as an int: v is within ±1 (one rounding past) unless 1/d overflowed or the
 * block holds NaN; x86's lroundf then returns LONG_MIN, whose low 32 bits after + 1 are 1.
 */
function ternary(v: number): number {
  const r = roundf(v);
  return Number.isFinite(r) ? r + 1 : 1;
}

/** ⌈q·256 / 243⌉ of five base-3 digits q (uint8_t arithmetic, as in C). */
const scaleDigits = (q: number) => Math.floor(((q & 0xff) * 256 + 242) / 243);

export const TQ1_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('TQ1_0')!,
  ignoresImportance: true, // quantize_tq1_0(…, quant_weights) does not use them
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 54) {
      const d = half[u16At(src, at + 52)];
      let y = b * 256;
      for (const [start, width] of [[0, 32], [32, 16]]) {
        for (let n = 0; n < 5; n++) for (let m = 0; m < width; m++) out[y++] = f32(trit(src[at + start + m], n) * d);
      }
      for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) out[y++] = f32(trit(src[at + 48 + j], n) * d);
    }
  },
  encode(src, out) {
    for (let x = 0, at = 0; x < src.length; x += 256, at += 54) {
      const id = blockScale(src, x, out, at + 52);
      // Bytes 0–31: values m + 32n (n < 5); bytes 32–47: 160 + m + 16n; bytes 48–51: 240 + j + 4m (m < 4).
      for (const [start, width, first] of [[0, 32, 0], [32, 16, 160]]) {
        for (let m = 0; m < width; m++) {
          let q = 0;
          for (let n = 0; n < 5; n++) q = (q * 3 + ternary(f32(src[x + first + m + n * width] * id))) & 0xff;
          out[at + start + m] = scaleDigits(q);
        }
      }
      for (let j = 0; j < 4; j++) {
        let q = 0;
        for (let m = 0; m < 4; m++) q = (q * 3 + ternary(f32(src[x + 240 + j + m * 4] * id))) & 0xff;
        out[at + 48 + j] = scaleDigits(q * 3);
      }
    }
  },
};

export const TQ2_0_CODEC: BlockCodec = {
  type: ggmlTypeByName('TQ2_0')!,
  ignoresImportance: true, // quantize_tq2_0(…, quant_weights) does not use them
  decode(src, out) {
    const half = f16Table();
    for (let b = 0, at = 0; at < src.length; b++, at += 66) {
      const d = half[u16At(src, at + 64)];
      let y = b * 256;
      for (let j = 0; j < 64; j += 32) {
        for (let l = 0; l < 4; l++) for (let m = 0; m < 32; m++) out[y++] = f32((((src[at + j + m] >> (2 * l)) & 3) - 1) * d);
      }
    }
  },
  encode(src, out) {
    for (let x = 0, at = 0; x < src.length; x += 256, at += 66) {
      const id = blockScale(src, x, out, at + 64);
      for (let j = 0; j < 64; j += 32) {
        for (let m = 0; m < 32; m++) {
          let q = 0;
          for (let n = 0; n < 4; n++) q += (ternary(f32(src[x + 4 * j + m + n * 32] * id)) & 3) << (2 * n);
          out[at + j + m] = q & 0xff;
        }
      }
    }
  },
};
