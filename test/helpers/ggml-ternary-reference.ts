/**
 * A plain transcription of ggml's ternary quantizers and dequantizers (ggml-quants.c:
 * quantize_row_tq1_0_ref, quantize_row_tq2_0_ref, dequantize_row_tq*), written for the tests
 * independently of src/: C's loops with their moving x pointer, C's MAX macro (a NaN is replaced by
 * the next value), lroundf halving away from zero and, for NaN or ±Inf, what x86's lroundf returns
 * (LONG_MIN, whose low 32 bits after + 1 are 1), uint8_t arithmetic as such, f16 from
 * @petamoriken/float16.
 */
import { getFloat16 } from '@petamoriken/float16';
import { f16BitsFromF64 } from './fixtures.js';

const cell = new Float32Array(1);
function F(x: number): number {
  cell[0] = x;
  return cell[0];
}

const MAX = (a: number, b: number) => (a > b ? a : b);

/** (int)(lroundf(v) + 1) on x86-64. */
function lroundfPlusOne(v: number): number {
  if (!Number.isFinite(v)) return 1;
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5) + 1;
}

function scale(x: ArrayLike<number>): { d: number; id: number; bits: number } {
  let amax = 0;
  for (let j = 0; j < 256; j++) amax = MAX(amax, Math.abs(x[j]));
  const d = amax;
  return { d, id: d ? F(1 / d) : 0, bits: f16BitsFromF64(d) };
}

export function quantizeTq1_0Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(54); // qs[48], qh[4], d
  const { id, bits } = scale(x);
  y[52] = bits & 0xff;
  y[53] = bits >> 8;
  let p = 0; // the C code's x pointer
  for (let j = 0; j < 48 - (48 % 32); j += 32) {
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let n = 0; n < 5; n++) {
        const xi = lroundfPlusOne(F(x[p + m + n * 32] * id));
        q = (q * 3) & 0xff;
        q = (q + xi) & 0xff;
      }
      y[j + m] = Math.floor((q * 256 + (243 - 1)) / 243);
    }
    p += 5 * 32;
  }
  for (let j = 48 - (48 % 32); j < 48; j += 16) {
    for (let m = 0; m < 16; m++) {
      let q = 0;
      for (let n = 0; n < 5; n++) {
        const xi = lroundfPlusOne(F(x[p + m + n * 16] * id));
        q = (q * 3) & 0xff;
        q = (q + xi) & 0xff;
      }
      y[j + m] = Math.floor((q * 256 + (243 - 1)) / 243);
    }
    p += 5 * 16;
  }
  for (let j = 0; j < 4; j++) {
    let q = 0;
    for (let m = 0; m < 4; m++) {
      const xi = lroundfPlusOne(F(x[p + j + m * 4] * id));
      q = (q * 3) & 0xff;
      q = (q + xi) & 0xff;
    }
    q = (q * 3) & 0xff;
    y[48 + j] = Math.floor((q * 256 + (243 - 1)) / 243);
  }
  return y;
}

export function quantizeTq2_0Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(66); // qs[64], d
  const { id, bits } = scale(x);
  y[64] = bits & 0xff;
  y[65] = bits >> 8;
  let p = 0;
  for (let j = 0; j < 64; j += 32) {
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let n = 0; n < 4; n++) q = (q + ((lroundfPlusOne(F(x[p + m + n * 32] * id)) & 3) << (2 * n))) & 0xff;
      y[j + m] = q;
    }
    p += 4 * 32;
  }
  return y;
}

function half(b: Uint8Array, at: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setUint16(0, b[at] | (b[at + 1] << 8), true);
  return getFloat16(view, 0, true);
}

const POW3 = [1, 3, 9, 27, 81, 243];

export function dequantizeTq1_0Block(b: Uint8Array): number[] {
  const d = half(b, 52);
  const y: number[] = [];
  const digit = (byte: number, n: number) => (((byte * POW3[n]) & 0xff) * 3) >> 8;
  for (let n = 0; n < 5; n++) for (let m = 0; m < 32; m++) y.push(F((digit(b[m], n) - 1) * d));
  for (let n = 0; n < 5; n++) for (let m = 0; m < 16; m++) y.push(F((digit(b[32 + m], n) - 1) * d));
  for (let n = 0; n < 4; n++) for (let j = 0; j < 4; j++) y.push(F((digit(b[48 + j], n) - 1) * d));
  return y;
}

export function dequantizeTq2_0Block(b: Uint8Array): number[] {
  const d = half(b, 64);
  const y: number[] = [];
  for (let j = 0; j < 64; j += 32) for (let l = 0; l < 4; l++) for (let m = 0; m < 32; m++) y.push(F((((b[j + m] >> (2 * l)) & 3) - 1) * d));
  return y;
}

export const TERNARY_REF = {
  TQ1_0: { size: 256, bytes: 54, quantize: quantizeTq1_0Block, dequantize: dequantizeTq1_0Block },
  TQ2_0: { size: 256, bytes: 66, quantize: quantizeTq2_0Block, dequantize: dequantizeTq2_0Block },
} as const;
