/**
 * NVFP4: blocks of 64 values, 36 bytes: four UE4M3 scale bytes (one per 16 values), then 32 bytes
 * of 4-bit e2m1 codes, 8 per sub-block s (value j of the sub-block in the low nibble of byte
 * 4 + 8s + j, j + 8 in the high). x = level·d_s with the levels doubled (KVALUES_MXFP4) and
 * d_s = ggml_ue4m3_to_fp32(scale byte), which halves the UE4M3 value to match: exact products.
 *
 * Quantization (quantize_row_nvfp4_ref), per sub-block: amax = the largest |x| (NaN never wins),
 * scale byte = ggml_fp32_to_ue4m3(amax / 6), then each value takes the nearest level of the
 * decoded scale by best_index_mxfp4 (fp4.ts).
 */
import { ggmlTypeByName } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import { f32Bits } from './c-float.js';
import { Fp4Scale, KVALUES_MXFP4 } from './fp4.js';

const f32 = Math.fround;

/**
 * ggml_ue4m3_to_fp32, halved as ggml returns it: 0 for bytes 0 and 0x7F (E4M3's NaN), else
 * exponent bits 3–6 (bias 7) and mantissa bits 0–2, subnormal when the exponent is 0; bit 7 is
 * ignored (0xFF reads as 0x7F's value would without the NaN rule: 240). All exact.
 */
export function ue4m3Half(byte: number): number {
  if (byte === 0 || byte === 0x7f) return 0;
  const exp = (byte >> 3) & 0xf;
  const man = byte & 0x7;
  const raw = exp === 0 ? man * 2 ** -9 : (1 + man / 8) * 2 ** (exp - 7);
  return raw * 0.5;
}

const UE4M3_HALF = Float32Array.from({ length: 256 }, (_, b) => ue4m3Half(b));

/**
 * ggml_fp32_to_ue4m3: 0 for x ≤ 0 or NaN; x clamped to 448; below 2^−6 a subnormal
 * (int)(x·512 + 0.5) clamped to 7 (0 when it is 0); from 256 up 0x7E (448); otherwise the
 * exponent and the top three mantissa bits of the f32, plus the fourth bit as rounding (halves up,
 * bits below ignored), a carry moving to the next exponent and saturating at 0x7E.
 */
export function toUe4m3(x: number): number {
  if (!(x > 0)) return 0;
  if (x > 448) x = 448;
  const bits = f32Bits(x);
  const fp32Exp = ((bits >>> 23) & 0xff) - 127;
  const fp32Man = (bits >>> 20) & 0x7;
  let exp = fp32Exp + 7;
  if (exp <= 0) {
    const man = Math.trunc(f32(f32(x * 512) + 0.5));
    if (man < 1) return 0;
    return man > 7 ? 7 : man;
  }
  if (exp >= 15) return 0x7e;
  let man = fp32Man + ((bits >>> 19) & 1);
  if (man > 7) {
    man = 0;
    exp++;
    if (exp >= 15) return 0x7e;
  }
  return (exp << 3) | man;
}

export const NVFP4_CODEC: BlockCodec = {
  type: ggmlTypeByName('NVFP4')!,
  ignoresImportance: true, // quantize_nvfp4(…, quant_weights) does not use them
  decode(src, out) {
    for (let b = 0, at = 0; at < src.length; b++, at += 36) {
      for (let s = 0; s < 4; s++) {
        const d = UE4M3_HALF[src[at + s]];
        const y = b * 64 + s * 16;
        const q = at + 4 + s * 8;
        for (let j = 0; j < 8; j++) {
          out[y + j] = f32(KVALUES_MXFP4[src[q + j] & 0x0f] * d);
          out[y + j + 8] = f32(KVALUES_MXFP4[src[q + j] >> 4] * d);
        }
      }
    }
  },
  encode(src, out) {
    const scale = new Fp4Scale();
    for (let x = 0, at = 0; x < src.length; x += 64, at += 36) {
      for (let s = 0; s < 4; s++) {
        const xb = x + s * 16;
        let amax = 0;
        for (let j = 0; j < 16; j++) {
          const v = Math.abs(src[xb + j]);
          if (amax < v) amax = v;
        }
        const byte = toUe4m3(f32(amax / 6));
        out[at + s] = byte;
        scale.set(UE4M3_HALF[byte]);
        const q = at + 4 + s * 8;
        for (let j = 0; j < 8; j++) out[q + j] = scale.bestIndex(src[xb + j]) | (scale.bestIndex(src[xb + 8 + j]) << 4);
      }
    }
  },
};
