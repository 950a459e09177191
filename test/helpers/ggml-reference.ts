/**
 * A plain, slow transcription of llama.cpp's reference block quantizers and dequantizers
 * (ggml/src/ggml-quants.c: quantize_row_*_ref, make_qkx2_quants, make_qx_quants,
 * make_q3_quants, dequantize_row_*), written for the tests independently of src/: every C float operation is
 * rounded through a Float32Array store, nearest_int is round-half-to-even by comparison, f16 comes
 * from @petamoriken/float16, and blocks are built as plain records, then packed by the per-element
 * bit positions of ggml-common.h.
 */
import { f16BitsFromF64 } from './fixtures.js';
import { getFloat16 } from '@petamoriken/float16';

const cell = new Float32Array(1);
/** One C float operation's result. */
export function F(x: number): number {
  cell[0] = x;
  return cell[0];
}

const bitsCell = new Float32Array(1);
const bitsView = new Int32Array(bitsCell.buffer);

/**
 * nearest_int(x): the nearest integer, ties to even, within ±4194303 where C asserts it. Beyond
 * (and for NaN), as release builds compute it with the assert compiled out: x + 1.5·2²³ rounded
 * to float, minus 2²² read from its low 23 bits.
 */
export function nearestInt(x: number): number {
  if (Math.abs(x) <= 4194303) {
    const lo = Math.floor(x);
    const frac = x - lo;
    if (frac > 0.5) return lo + 1;
    if (frac < 0.5) return lo;
    return lo % 2 === 0 ? lo : lo + 1;
  }
  bitsCell[0] = x + 12582912;
  return (bitsView[0] & 0x7fffff) - 0x400000;
}

function halfToFloat(bits: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setUint16(0, bits, true);
  return getFloat16(view, 0, true);
}

/** GGML_FP32_TO_FP16 then GGML_FP16_TO_FP32: bits and value. */
export function half(x: number): { bits: number; value: number } {
  const bits = f16BitsFromF64(x);
  return { bits, value: halfToFloat(bits) };
}

export function clamp(l: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, l));
}

/**
 * (int8_t)(float) as GCC compiles it for x86: truncation to int32 (cvttss2si, which gives INT_MIN
 * when the value is out of range or NaN, as when a subnormal d makes 1/d infinite), then the low
 * 8 bits, signed.
 */
function truncate(x: number): number {
  const i32 = x > -2147483649 && x < 2147483648 ? Math.trunc(x) : -2147483648;
  return (i32 << 24) >> 24;
}

const EPS = F(1e-15);

// --- the scale searches ------------------------------------------------------------------------

/** make_qkx2_quants; `mad`: weighted absolute errors instead of squared ones (Q2_K). */
export function makeQkx2(x: number[], weights: number[], nmax: number, rmin: number, rdelta: number, nstep: number, mad = false): { L: number[]; scale: number; theMin: number } {
  const error = (diff: number) => (mad ? Math.abs(diff) : F(diff * diff));
  const n = x.length;
  let min = x[0];
  let max = x[0];
  let sumW = weights[0];
  let sumX = F(sumW * x[0]);
  for (let i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sumW = F(sumW + weights[i]);
    sumX = F(sumX + F(weights[i] * x[i]));
  }
  if (min > 0) min = 0;
  if (max === min) return { L: new Array(n).fill(0), scale: 0, theMin: -min };
  let iscale = F(nmax / F(max - min));
  let scale = F(1 / iscale);
  let L = x.map((xi) => clamp(nearestInt(F(iscale * F(xi - min))), 0, nmax));
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const diff = F(F(F(scale * L[i]) + min) - x[i]);
    bestError = F(bestError + F(weights[i] * error(diff)));
  }
  for (let step = 0; step <= nstep; step++) {
    iscale = F(F(F(rmin + F(rdelta * step)) + nmax) / F(max - min));
    const Laux = x.map((xi) => clamp(nearestInt(F(iscale * F(xi - min))), 0, nmax));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      sumL = F(sumL + F(weights[i] * Laux[i]));
      sumL2 = F(sumL2 + F(F(weights[i] * Laux[i]) * Laux[i]));
      sumXL = F(sumXL + F(F(weights[i] * Laux[i]) * x[i]));
    }
    const D = F(F(sumW * sumL2) - F(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = F(F(F(sumW * sumXL) - F(sumX * sumL)) / D);
    let thisMin = F(F(F(sumL2 * sumX) - F(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = F(sumXL / sumL2);
    }
    let curError = 0;
    for (let i = 0; i < n; i++) {
      const diff = F(F(F(thisScale * Laux[i]) + thisMin) - x[i]);
      curError = F(curError + F(weights[i] * error(diff)));
    }
    if (curError < bestError) {
      L = Laux;
      bestError = curError;
      scale = thisScale;
      min = thisMin;
    }
  }
  return { L, scale, theMin: -min };
}

/** The value of largest magnitude (the first, on ties), and that magnitude. */
function largest(x: number[]): { max: number; amax: number } {
  let max = 0;
  let amax = 0;
  for (const xi of x) {
    if (Math.abs(xi) > amax) {
      amax = Math.abs(xi);
      max = xi;
    }
  }
  return { max, amax };
}

/** Σ w·x·l and Σ w·l² with w = x², in f32 in index order (make_qx_quants and make_q3_quants alike). */
function weightedSums(x: number[], l: number[], qw?: readonly number[]): { sumlx: number; suml2: number } {
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < x.length; i++) {
    const w = qw ? qw[i] : F(x[i] * x[i]);
    sumlx = F(sumlx + F(F(w * x[i]) * l[i]));
    suml2 = F(suml2 + F(F(w * l[i]) * l[i]));
  }
  return { sumlx, suml2 };
}

/** make_qx_quants(n, nmax, x, L, rmse_type = 1, qw): weights qw, or x² where it is absent (C's NULL). */
export function makeQx(x: number[], nmax: number, qw?: readonly number[]): { L: number[]; scale: number } {
  const n = x.length;
  const { max, amax } = largest(x);
  if (amax < EPS) return { L: new Array(n).fill(0), scale: 0 };
  const levels = (iscale: number) => x.map((xi) => clamp(nearestInt(F(iscale * xi)), -nmax, nmax - 1));
  let l = levels(F(-nmax / max));
  let L = l.map((v) => v + nmax);
  let { sumlx, suml2 } = weightedSums(x, l, qw);
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0; // C's `suml2 ?` takes NaN as true
  let best = F(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = F(-F(nmax + F(F(0.1) * is)) / max);
    l = levels(iscale);
    ({ sumlx, suml2 } = weightedSums(x, l, qw));
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      L = l.map((v) => v + nmax);
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return { L, scale };
}

/** make_q3_quants(n, nmax, x, L, do_rmse = true): levels from −nmax/max, then five passes of per-value moves. */
function makeQ3(x: number[], nmax: number): { L: number[]; scale: number } {
  const n = x.length;
  const { max, amax } = largest(x);
  if (amax < EPS) return { L: new Array(n).fill(0), scale: 0 };
  const iscale = F(-nmax / max);
  const L = x.map((xi) => clamp(nearestInt(F(iscale * xi)), -nmax, nmax - 1));
  let { sumlx, suml2 } = weightedSums(x, L);
  for (let pass = 0; pass < 5; pass++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      const w = F(x[i] * x[i]);
      let slx = F(sumlx - F(F(w * x[i]) * L[i]));
      if (!(slx > 0)) continue;
      let sl2 = F(suml2 - F(F(w * L[i]) * L[i]));
      const moved = clamp(nearestInt(F(F(x[i] * sl2) / slx)), -nmax, nmax - 1);
      if (moved === L[i]) continue;
      slx = F(slx + F(F(w * x[i]) * moved));
      sl2 = F(sl2 + F(F(w * moved) * moved));
      if (sl2 > 0 && F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2)) {
        L[i] = moved;
        sumlx = slx;
        suml2 = sl2;
        changed = true;
      }
    }
    if (!changed) break;
  }
  return { L: L.map((l) => l + nmax), scale: suml2 > 0 ? F(sumlx / suml2) : 0 };
}

// --- per type: quantize one block to a record, pack it by element positions ---------------------

export function putHalf(out: Uint8Array, at: number, bits: number): void {
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

function q8_0(x: number[]): Uint8Array {
  const out = new Uint8Array(34);
  const amax = Math.max(...x.map(Math.abs));
  const d = F(amax / 127);
  const id = d !== 0 ? F(1 / d) : 0;
  putHalf(out, 0, half(d).bits);
  x.forEach((xi, j) => {
    const v = F(xi * id);
    const r = Math.sign(v) * Math.floor(Math.abs(v) + 0.5); // roundf
    out[2 + j] = r & 0xff;
  });
  return out;
}

function symmetric4or5(x: number[], bits: 4 | 5): Uint8Array {
  const half2 = 1 << (bits - 1); // 8 or 16
  const top = (1 << bits) - 1;
  const { max } = largest(x);
  const d = F(max / -half2);
  const id = d !== 0 ? F(1 / d) : 0;
  const q = x.map((xi) => Math.min(top, truncate(F(F(xi * id) + F(half2 + 0.5)))));
  return packLegacy(q, [half(d).bits], bits);
}

function affine4or5(x: number[], bits: 4 | 5): Uint8Array {
  const top = (1 << bits) - 1;
  const min = Math.min(...x);
  const max = Math.max(...x);
  const d = F(F(max - min) / top);
  const id = d !== 0 ? F(1 / d) : 0;
  const q = x.map((xi) => {
    const t = truncate(F(F(F(xi - min) * id) + 0.5));
    return bits === 4 ? Math.min(top, t) : t & 0xff;
  });
  return packLegacy(q, [half(d).bits, half(min).bits], bits);
}

/** Legacy 32-value blocks: halves, then (5-bit) a u32 of fifth bits, then 16 nibble bytes. */
function packLegacy(q: number[], halves: number[], bits: 4 | 5): Uint8Array {
  const head = halves.length * 2 + (bits === 5 ? 4 : 0);
  const out = new Uint8Array(head + 16);
  halves.forEach((h, i) => putHalf(out, 2 * i, h));
  q.forEach((v, j) => {
    const byte = head + (j % 16);
    out[byte] |= (v & 0x0f) << (j < 16 ? 0 : 4);
    if (bits === 5 && v & 0x10) out[halves.length * 2 + (j >> 3)] |= 1 << (j & 7);
  });
  return out;
}

function scaleMinK(x: number[], bits: 4 | 5): Uint8Array {
  const nmax = bits === 4 ? 15 : 31;
  const [rmin, nstep] = bits === 4 ? [-1, 20] : [-0.5, 15];
  const L: number[] = [];
  const scales: number[] = [];
  const mins: number[] = [];
  for (let j = 0; j < 8; j++) {
    const sub = x.slice(32 * j, 32 * j + 32);
    let sumX2 = 0;
    for (const v of sub) sumX2 = F(sumX2 + F(v * v));
    const avX = F(Math.sqrt(F(sumX2 / 32)));
    const fit = makeQkx2(sub, sub.map((v) => F(avX + Math.abs(v))), nmax, rmin, F(0.1), nstep);
    L.push(...fit.L);
    scales.push(fit.scale);
    mins.push(fit.theMin);
  }
  const maxScale = Math.max(0, ...scales.filter((s) => s > 0));
  const maxMin = Math.max(0, ...mins.filter((m) => m > 0));
  const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
  const ls = scales.map((s) => Math.min(63, nearestInt(F(invScale * s)) & 0xff));
  const lm = mins.map((m) => Math.min(63, nearestInt(F(invMin * m)) & 0xff));
  return packScaleMinK(x, L, ls, lm, half(F(maxScale / 63)), half(F(maxMin / 63)), bits);
}

/**
 * The end of quantize_row_q4_K / q5_K (ref and impl alike): the 6-bit codes `ls`, `lm` (each at
 * most 63, so get_scale_min_k4 reads them back as they are) and d, dmin stored, each value of `L`
 * re-quantized against its sub-block's d·ls and dmin·lm (kept where d·ls is 0), then packed.
 */
export function packScaleMinK(x: number[], L: number[], ls: number[], lm: number[], d: { bits: number; value: number }, dmin: { bits: number; value: number }, bits: 4 | 5): Uint8Array {
  const nmax = bits === 4 ? 15 : 31;
  for (let j = 0; j < 8; j++) {
    const dj = F(d.value * ls[j]);
    if (dj === 0) continue;
    const mj = F(dmin.value * lm[j]);
    for (let i = 0; i < 32; i++) L[32 * j + i] = clamp(nearestInt(F(F(x[32 * j + i] + mj) / dj)), 0, nmax);
  }
  const out = new Uint8Array(bits === 4 ? 144 : 176);
  putHalf(out, 0, d.bits);
  putHalf(out, 2, dmin.bits);
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[4 + j] |= ls[j];
      out[8 + j] |= lm[j];
    } else {
      out[8 + j] |= (ls[j] & 15) | ((lm[j] & 15) << 4);
      out[4 + j - 4] |= (ls[j] >> 4) << 6;
      out[4 + j] |= (lm[j] >> 4) << 6;
    }
  }
  const qs = bits === 4 ? 16 : 48;
  for (let i = 0; i < 256; i++) {
    const group = i >> 6;
    const within = i & 63;
    out[qs + 32 * group + (within & 31)] |= (L[i] & 15) << (within < 32 ? 0 : 4);
    if (bits === 5 && L[i] & 16) out[16 + (within & 31)] |= 1 << (2 * group + (within >> 5));
  }
  return out;
}

/** 2-bit levels of a 256-value block: value i at bits 2·((i mod 128) / 32) of byte 32·(i / 128) + i mod 32. */
export function pack2(out: Uint8Array, at: number, L: number[]): void {
  L.forEach((l, i) => (out[at + 32 * (i >> 7) + (i & 31)] |= (l & 3) << (2 * ((i & 127) >> 5))));
}

function q2_K(x: number[]): Uint8Array {
  const L: number[] = [];
  const scales: number[] = [];
  const mins: number[] = [];
  for (let j = 0; j < 16; j++) {
    const sub = x.slice(16 * j, 16 * j + 16);
    const fit = makeQkx2(sub, sub.map((v) => Math.abs(v)), 3, -0.5, F(0.1), 15, true);
    L.push(...fit.L);
    scales.push(fit.scale);
    mins.push(fit.theMin);
  }
  const maxScale = Math.max(0, ...scales.filter((s) => s > 0));
  const maxMin = Math.max(0, ...mins.filter((m) => m > 0));
  // Byte j: scale code in the low nibble, min code in the high one (each as C stores an int in a uint8_t).
  const codes = new Array<number>(16).fill(0);
  let d = half(0);
  let dmin = half(0);
  if (maxScale > 0) {
    const iscale = F(15 / maxScale);
    scales.forEach((s, j) => (codes[j] = nearestInt(F(iscale * s)) & 0xff));
    d = half(F(maxScale / 15));
  }
  if (maxMin > 0) {
    const iscale = F(15 / maxMin);
    mins.forEach((m, j) => (codes[j] = (codes[j] | (nearestInt(F(iscale * m)) << 4)) & 0xff));
    dmin = half(F(maxMin / 15));
  }
  return packQ2K(x, L, codes, d, dmin);
}

/**
 * The end of quantize_row_q2_K (ref and impl alike): each value of `L` re-quantized against its
 * sub-block's d·(code & 15) and dmin·(code >> 4) (kept where the former is 0), then the scale
 * bytes `codes`, the 2-bit levels, d and dmin packed.
 */
export function packQ2K(x: number[], L: number[], codes: number[], d: { bits: number; value: number }, dmin: { bits: number; value: number }): Uint8Array {
  for (let j = 0; j < 16; j++) {
    const dj = F(d.value * (codes[j] & 15));
    if (dj === 0) continue;
    const mj = F(dmin.value * (codes[j] >> 4));
    for (let i = 0; i < 16; i++) L[16 * j + i] = clamp(nearestInt(F(F(x[16 * j + i] + mj) / dj)), 0, 3);
  }
  const out = new Uint8Array(84);
  codes.forEach((c, j) => (out[j] = c));
  pack2(out, 16, L);
  putHalf(out, 80, d.bits);
  putHalf(out, 82, dmin.bits);
  return out;
}

function q3_K(x: number[]): Uint8Array {
  const L: number[] = [];
  const scales: number[] = [];
  for (let j = 0; j < 16; j++) {
    const fit = makeQ3(x.slice(16 * j, 16 * j + 16), 4);
    L.push(...fit.L);
    scales.push(fit.scale);
  }
  const { max: maxScale } = largest(scales);
  const codes = new Array<number>(16).fill(0); // 6-bit scale codes, sc − 32 being the scale
  let d = half(0);
  if (maxScale !== 0) {
    const iscale = F(-32 / maxScale);
    const int8 = (v: number) => (v << 24) >> 24;
    scales.forEach((s, j) => (codes[j] = clamp(int8(nearestInt(F(iscale * s))), -32, 31) + 32));
    d = half(F(1 / iscale));
  }
  return packQ3K(x, L, codes, d);
}

/**
 * The end of quantize_row_q3_K (ref and impl alike): each value of `L` re-quantized against its
 * sub-block's d·(code − 32) (kept where that is 0), then hmask, the low two bits, the 6-bit
 * scale codes and d packed.
 */
export function packQ3K(x: number[], L: number[], codes: number[], d: { bits: number; value: number }): Uint8Array {
  for (let j = 0; j < 16; j++) {
    const dj = F(d.value * (codes[j] - 32));
    if (dj === 0) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = clamp(nearestInt(F(x[16 * j + i] / dj)), -4, 3) + 4;
  }
  const out = new Uint8Array(110);
  // Third bit of value i: bit i / 32 of hmask[i mod 32]; the low two bits as Q2_K's, after it.
  L.forEach((l, i) => {
    if (l > 3) out[i & 31] |= 1 << (i >> 5);
  });
  pack2(out, 32, L.map((l) => (l > 3 ? l - 4 : l)));
  codes.forEach((c, j) => {
    out[96 + (j & 7)] |= (c & 15) << (j < 8 ? 0 : 4);
    out[104 + (j & 3)] |= (c >> 4) << (2 * (j >> 2));
  });
  putHalf(out, 108, d.bits);
  return out;
}

/** quantize_row_q6_K_ref, or with `qw` (256 weights) quantize_row_q6_K_impl, which hands them to make_qx_quants as they are. */
export function q6_K(x: number[], qw?: readonly number[]): Uint8Array {
  const out = new Uint8Array(210);
  const L: number[] = [];
  const scales: number[] = [];
  for (let j = 0; j < 16; j++) {
    const fit = makeQx(x.slice(16 * j, 16 * j + 16), 32, qw?.slice(16 * j, 16 * j + 16));
    L.push(...fit.L);
    scales.push(fit.scale);
  }
  const { max: maxScale, amax: maxAbs } = largest(scales);
  if (maxAbs < EPS) return out;
  const iscale = F(-128 / maxScale);
  const d = half(F(1 / iscale));
  putHalf(out, 208, d.bits);
  const sc = scales.map((s) => Math.min(127, nearestInt(F(iscale * s))));
  sc.forEach((s, j) => (out[192 + j] = s & 0xff));
  for (let j = 0; j < 16; j++) {
    const dj = F(d.value * sc[j]);
    if (dj === 0) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = clamp(nearestInt(F(x[16 * j + i] / dj)), -32, 31) + 32;
  }
  for (let i = 0; i < 256; i++) {
    const h = i >> 7;
    const k = (i & 127) >> 5;
    const l = i & 31;
    out[64 * h + l + 32 * (k & 1)] |= (L[i] & 15) << (k < 2 ? 0 : 4);
    out[128 + 32 * h + l] |= (L[i] >> 4) << (2 * k);
  }
  return out;
}

export type RefType = 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export const REF_BLOCK: Record<RefType, { size: number; bytes: number }> = {
  Q8_0: { size: 32, bytes: 34 }, Q4_0: { size: 32, bytes: 18 }, Q4_1: { size: 32, bytes: 20 },
  Q5_0: { size: 32, bytes: 22 }, Q5_1: { size: 32, bytes: 24 },
  Q2_K: { size: 256, bytes: 84 }, Q3_K: { size: 256, bytes: 110 }, Q4_K: { size: 256, bytes: 144 }, Q5_K: { size: 256, bytes: 176 }, Q6_K: { size: 256, bytes: 210 },
};

/** quantize_row_<type>_ref of one block of f32 values. */
export function referenceQuantizeBlock(type: RefType, values: ArrayLike<number>): Uint8Array {
  const x = Array.from(values, (v) => F(v));
  switch (type) {
    case 'Q8_0': return q8_0(x);
    case 'Q4_0': return symmetric4or5(x, 4);
    case 'Q5_0': return symmetric4or5(x, 5);
    case 'Q4_1': return affine4or5(x, 4);
    case 'Q5_1': return affine4or5(x, 5);
    case 'Q2_K': return q2_K(x);
    case 'Q3_K': return q3_K(x);
    case 'Q4_K': return scaleMinK(x, 4);
    case 'Q5_K': return scaleMinK(x, 5);
    case 'Q6_K': return q6_K(x);
  }
}

// --- dequantization from the layouts ---------------------------------------------------------

function u16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

/**
 * Values of one block, element by element from the block layout (ggml-common.h), each the exact
 * real value rounded once to f32 (every product involved is exact, so this is what C computes).
 */
export function referenceDequantizeBlock(type: RefType, b: Uint8Array): number[] {
  const { size } = REF_BLOCK[type];
  const out: number[] = [];
  const int8 = (v: number) => (v << 24) >> 24;
  for (let i = 0; i < size; i++) {
    let v: number;
    switch (type) {
      case 'Q8_0':
        v = halfToFloat(u16(b, 0)) * int8(b[2 + i]);
        break;
      case 'Q4_0':
      case 'Q4_1':
      case 'Q5_0':
      case 'Q5_1': {
        const affine = type.endsWith('_1');
        const five = type.startsWith('Q5');
        const head = (affine ? 4 : 2) + (five ? 4 : 0);
        let q = (b[head + (i % 16)] >> (i < 16 ? 0 : 4)) & 15;
        if (five) {
          const qh = b[(affine ? 4 : 2) + (i >> 3)];
          q |= ((qh >> (i & 7)) & 1) << 4;
        }
        const d = halfToFloat(u16(b, 0));
        v = affine ? q * d + halfToFloat(u16(b, 2)) : (q - (five ? 16 : 8)) * d;
        break;
      }
      case 'Q4_K':
      case 'Q5_K': {
        const j = i >> 5;
        const sc = j < 4 ? b[4 + j] & 63 : (b[8 + j] & 15) | ((b[j] >> 6) << 4);
        const m = j < 4 ? b[8 + j] & 63 : (b[8 + j] >> 4) | ((b[4 + j] >> 6) << 4);
        const group = i >> 6;
        const within = i & 63;
        const qs = type === 'Q4_K' ? 16 : 48;
        let q = (b[qs + 32 * group + (within & 31)] >> (within < 32 ? 0 : 4)) & 15;
        if (type === 'Q5_K') q |= ((b[16 + (within & 31)] >> (2 * group + (within >> 5))) & 1) << 4;
        v = halfToFloat(u16(b, 0)) * sc * q - halfToFloat(u16(b, 2)) * m;
        break;
      }
      case 'Q2_K':
      case 'Q3_K': {
        const q2 = (b[(type === 'Q2_K' ? 16 : 32) + 32 * (i >> 7) + (i & 31)] >> (2 * ((i & 127) >> 5))) & 3;
        const j = i >> 4;
        if (type === 'Q2_K') {
          v = halfToFloat(u16(b, 80)) * (b[j] & 15) * q2 - halfToFloat(u16(b, 82)) * (b[j] >> 4);
        } else {
          const code = ((b[96 + (j & 7)] >> (j < 8 ? 0 : 4)) & 15) | (((b[104 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4);
          const high = (b[i & 31] >> (i >> 5)) & 1;
          v = halfToFloat(u16(b, 108)) * (code - 32) * (q2 - (high ? 0 : 4));
        }
        break;
      }
      case 'Q6_K': {
        const h = i >> 7;
        const k = (i & 127) >> 5;
        const l = i & 31;
        const low = (b[64 * h + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4)) & 15;
        const high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
        v = halfToFloat(u16(b, 208)) * int8(b[192 + (i >> 4)]) * ((low | (high << 4)) - 32);
        break;
      }
    }
    out.push(F(v));
  }
  return out;
}
