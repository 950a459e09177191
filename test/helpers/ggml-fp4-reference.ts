/**
 * A plain transcription of ggml's reference quantizers and dequantizers for MXFP4, NVFP4, Q1_0 and
 * Q2_0 (ggml/src/ggml-quants.c: quantize_row_{mxfp4,nvfp4,q1_0,q2_0}_ref, dequantize_row_*;
 * ggml-impl.h: ggml_e8m0_to_fp32_half, ggml_fp32_to_ue4m3, ggml_ue4m3_to_fp32), written for the
 * tests independently of src/: C's loops as they are (all 16 codes tried in order), every float
 * operation rounded through a Float32Array store, log2f as JavaScript's double log2 rounded to
 * f32, f16 from @petamoriken/float16, and the blocks packed from ggml-common.h's structs.
 */
import { getFloat16 } from '@petamoriken/float16';
import { f16BitsFromF64 } from './fixtures.js';

const cell = new Float32Array(1);
/** One C float operation's result. */
export function F(x: number): number {
  cell[0] = x;
  return cell[0];
}

const bitsCell = new Float32Array(1);
const bitsView = new Uint32Array(bitsCell.buffer);

/** ggml-common.h kvalues_mxfp4 (kvalues_fp4): the e2m1 values, doubled. */
export const KVALUES_MXFP4 = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

function bestIndexMxfp4(x: number, e: number): number {
  let bestIndex = 0;
  let bestErr = Math.abs(F(F(KVALUES_MXFP4[0] * e) - x));
  for (let i = 1; i < 16; i++) {
    const err = Math.abs(F(F(KVALUES_MXFP4[i] * e) - x));
    if (err < bestErr) {
      bestIndex = i;
      bestErr = err;
    }
  }
  return bestIndex;
}

/** ggml_e8m0_to_fp32_half from its bit patterns: 0x00200000 << x below 2, else (x − 1) << 23. */
export function e8m0ToFp32Half(x: number): number {
  bitsView[0] = x < 2 ? 0x00200000 << x : (x - 1) << 23;
  return bitsCell[0];
}

/** (uint8_t) of a float holding an integer, as x86 converts it: to int32 (INT_MIN for ±Inf), low byte. */
function toUint8X86(v: number): number {
  const i = Number.isFinite(v) && Math.abs(v) < 2 ** 31 ? v : -(2 ** 31);
  return ((i % 256) + 256) % 256;
}

export function quantizeMxfp4Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(17);
  let amax = 0;
  for (let j = 0; j < 32; j++) if (amax < Math.abs(x[j])) amax = Math.abs(x[j]);
  // floorf(log2f(amax)) − 2 + 127, each step a float.
  const e = amax > 0 ? toUint8X86(F(F(Math.floor(F(Math.log2(amax))) - 2) + 127)) : 0;
  const d = e8m0ToFp32Half(e);
  y[0] = e;
  for (let j = 0; j < 16; j++) y[1 + j] = bestIndexMxfp4(x[j], d) | (bestIndexMxfp4(x[16 + j], d) << 4);
  return y;
}

export function dequantizeMxfp4Block(b: Uint8Array): number[] {
  const d = e8m0ToFp32Half(b[0]);
  const y: number[] = [];
  for (let j = 0; j < 16; j++) y[j] = F(KVALUES_MXFP4[b[1 + j] & 0x0f] * d);
  for (let j = 0; j < 16; j++) y[16 + j] = F(KVALUES_MXFP4[b[1 + j] >> 4] * d);
  return y;
}

export function ue4m3ToFp32(x: number): number {
  if (x === 0 || x === 0x7f) return 0;
  const exp = (x >> 3) & 0xf;
  const man = x & 0x7;
  const raw = exp === 0 ? F(man * 2 ** -9) : F(F(1 + F(man / 8)) * 2 ** (exp - 7));
  return F(raw * 0.5);
}

export function fp32ToUe4m3(x: number): number {
  if (!(x > 0)) return 0;
  if (x > 448) x = 448;
  bitsCell[0] = x;
  const bits = bitsView[0];
  const fp32Exp = ((bits >>> 23) & 0xff) - 127;
  const fp32Man = (bits >>> 20) & 0x7;
  let ue4m3Exp = fp32Exp + 7;
  if (ue4m3Exp <= 0) {
    let man = Math.trunc(F(F(x * 512) + 0.5));
    if (man > 7) man = 7;
    if (man < 1) return 0;
    return man;
  }
  if (ue4m3Exp >= 15) return 0x7e;
  const roundBit = (bits >>> 19) & 1;
  let ue4m3Man = fp32Man + roundBit;
  if (ue4m3Man > 7) {
    ue4m3Man = 0;
    ue4m3Exp++;
    if (ue4m3Exp >= 15) return 0x7e;
  }
  return (ue4m3Exp << 3) | ue4m3Man;
}

export function quantizeNvfp4Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(36);
  for (let s = 0; s < 4; s++) {
    const xb = x.slice(16 * s, 16 * s + 16);
    let amax = 0;
    for (let j = 0; j < 16; j++) if (amax < Math.abs(xb[j])) amax = Math.abs(xb[j]);
    const ue = fp32ToUe4m3(F(amax / 6));
    y[s] = ue;
    const d = ue4m3ToFp32(ue);
    for (let j = 0; j < 8; j++) y[4 + 8 * s + j] = bestIndexMxfp4(xb[j], d) | (bestIndexMxfp4(xb[8 + j], d) << 4);
  }
  return y;
}

export function dequantizeNvfp4Block(b: Uint8Array): number[] {
  const y: number[] = [];
  for (let s = 0; s < 4; s++) {
    const d = ue4m3ToFp32(b[s]);
    for (let j = 0; j < 8; j++) {
      y[16 * s + j] = F(KVALUES_MXFP4[b[4 + 8 * s + j] & 0x0f] * d);
      y[16 * s + 8 + j] = F(KVALUES_MXFP4[b[4 + 8 * s + j] >> 4] * d);
    }
  }
  return y;
}

function half(bits: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setUint16(0, bits, true);
  return getFloat16(view, 0, true);
}

export function quantizeQ1_0Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(18);
  let sumAbs = 0;
  for (let j = 0; j < 128; j++) sumAbs = F(sumAbs + Math.abs(x[j]));
  const d = F(sumAbs / 128);
  const h = f16BitsFromF64(d);
  y[0] = h & 0xff;
  y[1] = h >> 8;
  for (let j = 0; j < 128; j++) if (x[j] >= 0) y[2 + Math.floor(j / 8)] |= 1 << (j % 8);
  return y;
}

export function dequantizeQ1_0Block(b: Uint8Array): number[] {
  const d = half(b[0] | (b[1] << 8));
  return Array.from({ length: 128 }, (_, j) => ((b[2 + Math.floor(j / 8)] >> (j % 8)) & 1 ? d : -d));
}

/** (int)roundf(v) as x86 converts it (INT_MIN for NaN and out of range), roundf halving away from zero. */
function roundfToInt(v: number): number {
  const r = Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
  return Number.isFinite(r) && Math.abs(r) < 2 ** 31 ? r : -(2 ** 31);
}

export function quantizeQ2_0Block(values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, F);
  const y = new Uint8Array(18);
  let amax = 0;
  for (let j = 0; j < 64; j++) if (Math.abs(x[j]) > amax) amax = Math.abs(x[j]);
  const d = amax;
  const id = d > 0 ? F(1 / d) : 0;
  const h = f16BitsFromF64(d);
  y[0] = h & 0xff;
  y[1] = h >> 8;
  for (let j = 0; j < 64; j++) {
    let q = roundfToInt(F(x[j] * id)) + 1;
    if (q < 0) q = 0;
    if (q > 3) q = 3;
    y[2 + Math.floor(j / 4)] |= q << ((j % 4) * 2);
  }
  return y;
}

export function dequantizeQ2_0Block(b: Uint8Array): number[] {
  const d = half(b[0] | (b[1] << 8));
  return Array.from({ length: 64 }, (_, j) => F((((b[2 + Math.floor(j / 4)] >> ((j % 4) * 2)) & 3) - 1) * d));
}

export type Fp4RefType = 'MXFP4' | 'NVFP4' | 'Q1_0' | 'Q2_0';

export const FP4_REF: Record<Fp4RefType, { size: number; bytes: number; quantize: (x: ArrayLike<number>) => Uint8Array; dequantize: (b: Uint8Array) => number[] }> = {
  MXFP4: { size: 32, bytes: 17, quantize: quantizeMxfp4Block, dequantize: dequantizeMxfp4Block },
  NVFP4: { size: 64, bytes: 36, quantize: quantizeNvfp4Block, dequantize: dequantizeNvfp4Block },
  Q1_0: { size: 128, bytes: 18, quantize: quantizeQ1_0Block, dequantize: dequantizeQ1_0Block },
  Q2_0: { size: 64, bytes: 18, quantize: quantizeQ2_0Block, dequantize: dequantizeQ2_0Block },
};
