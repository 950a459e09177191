/**
 * A plain transcription of what llama-quantize writes for IQ4_NL and IQ4_XS without an importance
 * matrix (ggml/src/ggml-quants.c: quantize_iq4_nl and quantize_iq4_xs with quant_weights = NULL,
 * both through quantize_row_iq4_nl_impl with ntry = 7; best_index_int8, nearest_int) and of
 * dequantize_row_iq4_nl / _xs, written for the tests independently of src/: C's function as it is,
 * one super-block at a time (NL: 32 values, XS: 256), every float operation rounded through a
 * Float32Array store, C's `a ? b : c` on a float taking NaN as true, f16 from
 * @petamoriken/float16, and the blocks packed from ggml-common.h's block_iq4_nl / block_iq4_xs.
 */
import { getFloat16 } from '@petamoriken/float16';
import { f16BitsFromF64 } from './fixtures.js';

const cell = new Float32Array(1);
const cellBits = new Int32Array(cell.buffer);
/** One C float operation's result. */
function F(x: number): number {
  cell[0] = x;
  return cell[0];
}

/** ggml-common.h kvalues_iq4nl. */
export const KVALUES_IQ4NL = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

function bestIndexInt8(n: number, val: readonly number[], x: number): number {
  const x2 = F(x + x);
  let idx = 0;
  for (let step = n >> 1; step > 0; step >>= 1) {
    const j = idx + step;
    idx = x2 >= val[j - 1] + val[j] ? j : idx;
  }
  return idx;
}

function nearestInt(fval: number): number {
  cell[0] = F(fval + 12582912);
  return (cellBits[0] & 0x007fffff) - 0x00400000;
}

const truthy = (v: number) => v !== 0; // C: NaN is true

interface Iq4Out { dh: number; q4: Uint8Array; scalesH: number; scalesL: Uint8Array }

function quantizeRowIq4NlImpl(superBlockSize: number, blockSize: number, x: ArrayLike<number>, values: readonly number[], ntry: number, qw?: ArrayLike<number>): Iq4Out {
  let sigma2 = 0;
  for (let j = 0; j < superBlockSize; ++j) sigma2 = F(sigma2 + F(F(x[j]) * F(x[j])));
  sigma2 = F(sigma2 * F(2 / superBlockSize));
  const nvalues = 16;
  const q4 = new Uint8Array(superBlockSize / 2);
  const scalesL = new Uint8Array(superBlockSize / blockSize / 2);
  let scalesH = 0;
  let dh = f16BitsFromF64(0);
  const L = new Uint8Array(superBlockSize);
  const scales = new Array<number>(superBlockSize / blockSize).fill(0);
  const weight = new Array<number>(blockSize);
  let maxScale = 0;
  let amaxScale = 0;
  for (let ib = 0; ib < superBlockSize / blockSize; ++ib) {
    const xb = (j: number) => F(x[ib * blockSize + j]);
    if (qw) for (let j = 0; j < blockSize; ++j) weight[j] = F(F(qw[ib * blockSize + j]) * F(Math.sqrt(F(sigma2 + F(xb(j) * xb(j))))));
    else for (let j = 0; j < blockSize; ++j) weight[j] = F(xb(j) * xb(j));
    let amax = 0;
    let max = 0;
    for (let j = 0; j < blockSize; ++j) {
      const ax = Math.abs(xb(j));
      if (ax > amax) {
        amax = ax;
        max = xb(j);
      }
    }
    if (amax < F(1e-15)) {
      scales[ib] = 0;
      L.fill(0, ib * blockSize, (ib + 1) * blockSize);
      continue;
    }
    let d = ntry > 0 ? F(-max / values[0]) : F(max / values[0]);
    let id = F(1 / d);
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < blockSize; ++j) {
      const al = F(id * xb(j));
      const l = bestIndexInt8(nvalues, values, al);
      L[ib * blockSize + j] = l;
      const q = values[l];
      const w = weight[j];
      sumqx = F(sumqx + F(F(w * q) * xb(j)));
      sumq2 = F(sumq2 + F(F(w * q) * q));
    }
    d = sumq2 > 0 ? F(sumqx / sumq2) : 0;
    let best = F(d * sumqx);
    for (let itry = -ntry; itry <= ntry; ++itry) {
      id = F((itry + values[0]) / max);
      sumqx = sumq2 = 0;
      for (let j = 0; j < blockSize; ++j) {
        const al = F(id * xb(j));
        const l = bestIndexInt8(nvalues, values, al);
        const q = values[l];
        const w = weight[j];
        sumqx = F(sumqx + F(F(w * q) * xb(j)));
        sumq2 = F(sumq2 + F(F(w * q) * q));
      }
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        d = F(sumqx / sumq2);
        best = F(d * sumqx);
      }
    }
    scales[ib] = d;
    const absD = Math.abs(d);
    if (absD > amaxScale) {
      amaxScale = absD;
      maxScale = d;
    }
  }
  if (superBlockSize / blockSize > 1) {
    const d = F(-maxScale / 32);
    dh = f16BitsFromF64(d);
    const id = truthy(d) ? F(1 / d) : 0;
    for (let ib = 0; ib < superBlockSize / blockSize; ++ib) {
      let l = nearestInt(F(id * scales[ib]));
      l = l > 31 ? 31 : l < -32 ? -32 : l;
      const dl = F(d * l);
      const idl = truthy(dl) ? F(1 / dl) : 0;
      for (let j = 0; j < blockSize; ++j) L[ib * blockSize + j] = bestIndexInt8(nvalues, values, F(idl * F(x[ib * blockSize + j])));
      l += 32;
      const lLow = l & 0xf;
      const lHigh = l >> 4;
      if (ib % 2 === 0) scalesL[ib >> 1] = lLow;
      else scalesL[ib >> 1] |= lLow << 4;
      scalesH |= lHigh << (2 * (ib % 8));
    }
  } else {
    dh = f16BitsFromF64(scales[0]);
    if (ntry > 0) {
      const id = truthy(scales[0]) ? F(1 / scales[0]) : 0;
      for (let j = 0; j < superBlockSize; ++j) L[j] = bestIndexInt8(nvalues, values, F(id * F(x[j])));
    }
  }
  for (let i = 0; i < superBlockSize / 32; ++i) {
    for (let j = 0; j < 16; ++j) q4[16 * i + j] = L[32 * i + j] | (L[32 * i + 16 + j] << 4);
  }
  return { dh, q4, scalesH, scalesL };
}

/** block_iq4_nl: ggml_half d; uint8_t qs[16]. */
export function quantizeIq4NlBlock(x: ArrayLike<number>, qw?: ArrayLike<number>): Uint8Array {
  const r = quantizeRowIq4NlImpl(32, 32, x, KVALUES_IQ4NL, 7, qw);
  const b = new Uint8Array(18);
  b[0] = r.dh & 0xff;
  b[1] = r.dh >> 8;
  b.set(r.q4, 2);
  return b;
}

/** block_iq4_xs: ggml_half d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]. */
export function quantizeIq4XsBlock(x: ArrayLike<number>, qw?: ArrayLike<number>): Uint8Array {
  const r = quantizeRowIq4NlImpl(256, 32, x, KVALUES_IQ4NL, 7, qw);
  const b = new Uint8Array(136);
  b[0] = r.dh & 0xff;
  b[1] = r.dh >> 8;
  b[2] = r.scalesH & 0xff;
  b[3] = r.scalesH >> 8;
  b.set(r.scalesL, 4);
  b.set(r.q4, 8);
  return b;
}

function half(b: Uint8Array, at: number): number {
  return getFloat16(new DataView(b.buffer, b.byteOffset + at, 2), 0, true);
}

export function dequantizeIq4NlBlock(b: Uint8Array): number[] {
  const d = half(b, 0);
  const y: number[] = [];
  for (let j = 0; j < 16; ++j) {
    y[j] = F(d * KVALUES_IQ4NL[b[2 + j] & 0xf]);
    y[j + 16] = F(d * KVALUES_IQ4NL[b[2 + j] >> 4]);
  }
  return y;
}

export function dequantizeIq4XsBlock(b: Uint8Array): number[] {
  const d = half(b, 0);
  const scalesH = b[2] | (b[3] << 8);
  const y: number[] = [];
  for (let ib = 0; ib < 8; ++ib) {
    const ls = ((b[4 + (ib >> 1)] >> (4 * (ib % 2))) & 0xf) | (((scalesH >> (2 * ib)) & 3) << 4);
    const dl = F(d * (ls - 32));
    for (let j = 0; j < 16; ++j) {
      y[32 * ib + j] = F(dl * KVALUES_IQ4NL[b[8 + 16 * ib + j] & 0xf]);
      y[32 * ib + j + 16] = F(dl * KVALUES_IQ4NL[b[8 + 16 * ib + j] >> 4]);
    }
  }
  return y;
}

export type Iq4RefType = 'IQ4_NL' | 'IQ4_XS';

export const IQ4_REF: Record<Iq4RefType, { size: number; bytes: number; quantize: (x: ArrayLike<number>) => Uint8Array; dequantize: (b: Uint8Array) => number[] }> = {
  IQ4_NL: { size: 32, bytes: 18, quantize: quantizeIq4NlBlock, dequantize: dequantizeIq4NlBlock },
  IQ4_XS: { size: 256, bytes: 136, quantize: quantizeIq4XsBlock, dequantize: dequantizeIq4XsBlock },
};
