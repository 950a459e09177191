/**
 * NaN and ±Inf in GGML blocks, found from their f16 scales alone. Every value a block decodes to
 * is a product with the block's scale (`d·q`, `d·sc·q − dmin·m`, …: ggml-common.h, ggml-quants.c),
 * so a block whose scales are finite decodes to finite values only (|d·q| stays far below f32's
 * range), and a block with a NaN or infinite scale decodes to NaN or ±Inf everywhere (∞·0 is NaN).
 * Counting such blocks counts the non-finite values exactly, at the cost of reading one or two
 * 16-bit words per block instead of decoding every value. MXFP4 and NVFP4, whose scales are bytes,
 * have rules of their own (below).
 */
import type { GgmlType } from './ggml-types.js';

/** Byte offsets of each block's f16 scales (`d`, and `m` / `dmin` where the values have one). */
const F16_SCALES: Readonly<Record<string, readonly number[]>> = {
  Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q8_0: [0], Q8_1: [0],
  Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
  IQ2_XXS: [0], IQ2_XS: [0], IQ2_S: [0], IQ3_XXS: [0], IQ3_S: [0], IQ1_S: [0], IQ4_NL: [0], IQ4_XS: [0],
  TQ1_0: [52], TQ2_0: [64], Q1_0: [0], Q2_0: [0],
};

/** Whether nonFiniteBlockValues can scan this type. */
export function scansBlockScales(type: GgmlType): boolean {
  return Object.hasOwn(F16_SCALES, type.name) || type.name === 'MXFP4' || type.name === 'NVFP4' || type.name === 'IQ1_M';
}

/** IQ1_M's f16 d: the top nibbles of its four u16 scales (bytes 48–55), the first lowest. */
function iq1mScale(bytes: Uint8Array, at: number): number {
  return (bytes[at + 49] >> 4) | (bytes[at + 51] & 0xf0) | ((bytes[at + 53] & 0xf0) << 4) | ((bytes[at + 55] & 0xf0) << 8);
}

/**
 * How many of the values `bytes` (whole blocks of `type`) decode to are NaN or ±Inf; undefined
 * for types that are not blocks. IQ1_M's f16 d is spread over
 * the top nibbles of its scales (iq1mScale). MXFP4 and NVFP4
 * hold no NaN: an NVFP4 value is at most 12·240, and an MXFP4 value level·2^(e−128) overflows
 * only for the largest scale bytes (mxfp4Infinities).
 */
export function nonFiniteBlockValues(type: GgmlType, bytes: Uint8Array): number | undefined {
  return nonFiniteBlockSpan(type, bytes)?.count;
}

/** Where the NaN/±Inf values of `bytes` lie: a count, and the first and last value index holding one (−1 where none). */
export interface NonFiniteSpan {
  count: number;
  first: number;
  last: number;
}

/**
 * nonFiniteBlockValues with where they lie: the index of the first and of the last non-finite value
 * (a bad block's first and last value, whole blocks being non-finite; MXFP4's own values).
 */
export function nonFiniteBlockSpan(type: GgmlType, bytes: Uint8Array): NonFiniteSpan | undefined {
  if (type.name === 'MXFP4') return mxfp4Infinities(bytes);
  if (type.name === 'NVFP4') return { count: 0, first: -1, last: -1 };
  if (type.name === 'IQ1_M') {
    let bad = 0, first = -1, last = -1;
    for (let b = 0; (b + 1) * 56 <= bytes.byteLength; b++) {
      if ((iq1mScale(bytes, b * 56) & 0x7c00) !== 0x7c00) continue;
      bad++;
      if (first < 0) first = b * 256;
      last = (b + 1) * 256 - 1;
    }
    return { count: bad * 256, first, last };
  }
  const offsets = F16_SCALES[type.name];
  if (!offsets || type.blockSize === 1) return undefined;
  let bad = 0, first = -1, last = -1;
  for (let b = 0; (b + 1) * type.blockBytes <= bytes.byteLength; b++) {
    const block = b * type.blockBytes;
    // An f16 is NaN or infinite when its five exponent bits are all ones (little-endian high byte 0x7c).
    if (offsets.some((o) => (bytes[block + o + 1] & 0x7c) === 0x7c)) {
      bad++;
      if (first < 0) first = b * type.blockSize;
      last = (b + 1) * type.blockSize - 1;
    }
  }
  return { count: bad * type.blockSize, first, last };
}

/**
 * How many values of `bytes` (whole blocks of `type`, encoded from `input`) decode to zeros although
 * their input is not small: blocks whose every f16 scale is ±0 while the input block holds a value of
 * magnitude 1 or more (such a scale is far from f16's underflow, which zeroes only tiny blocks).
 * ggml's quantizers sum squares in f32, which overflow for values past about 1e18: Q3_K and Q6_K
 * then write d = 0 and IQ4_XS −0, a block of zeros where the values are huge (nonFiniteBlockValues
 * sees no NaN there). Undefined where nonFiniteBlockValues is. `atLeast` (default 1) is the
 * magnitude an input value must reach for its block to count (the importance check passes the
 * smallest positive number: any block of nonzero values whose scales are all zero).
 */
export function zeroedBlockValues(type: GgmlType, bytes: Uint8Array, input: Float32Array, atLeast = 1): number | undefined {
  if (type.name === 'MXFP4' || type.name === 'NVFP4') return 0;
  const offsets = F16_SCALES[type.name];
  if ((!offsets && type.name !== 'IQ1_M') || type.blockSize === 1) return undefined;
  let zeroed = 0;
  for (let b = 0; (b + 1) * type.blockBytes <= bytes.byteLength; b++) {
    const at = b * type.blockBytes;
    const zero = offsets ? offsets.every((o) => bytes[at + o] === 0 && (bytes[at + o + 1] & 0x7f) === 0) : (iq1mScale(bytes, at) & 0x7fff) === 0;
    if (!zero) continue;
    for (let i = b * type.blockSize; i < (b + 1) * type.blockSize; i++) {
      if (Math.abs(input[i]) >= atLeast) {
        zeroed += type.blockSize;
        break;
      }
    }
  }
  return zeroed;
}

/**
 * Infinite values in MXFP4 blocks: level·2^(e−128) with a doubled e2m1 level of at most 12 reaches
 * 2^128 (f32's overflow) when |level| ≥ 2^(256−e): levels ≥ 8 at e = 253, ≥ 4 at 254, ≥ 2 at 255.
 */
function mxfp4Infinities(bytes: Uint8Array): NonFiniteSpan {
  let bad = 0, first = -1, last = -1;
  for (let b = 0, at = 0; at + 17 <= bytes.byteLength; b++, at += 17) {
    const e = bytes[at];
    if (e < 253) continue;
    // Nibble codes whose |level| (0 1 2 3 4 6 8 12, codes 8–15 the negatives) reaches the bound: 6–7 for ≥ 8, 4–7 for ≥ 4, 2–7 for ≥ 2.
    const lowest = e === 253 ? 6 : e === 254 ? 4 : 2;
    // Byte j's low nibble is value j − 1 of the block, its high nibble value j + 15 (ggml's qs layout).
    for (let j = 1; j < 17; j++) {
      for (const [code, value] of [[bytes[at + j] & 7, j - 1], [bytes[at + j] >> 4 & 7, j + 15]]) {
        if (code < lowest) continue;
        bad++;
        const index = b * 32 + value;
        if (first < 0 || index < first) first = index;
        last = Math.max(last, index);
      }
    }
  }
  return { count: bad, first, last };
}
