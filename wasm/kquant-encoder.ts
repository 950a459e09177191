/**
 * llama.cpp's k-quant reference quantizers (ggml-quants.c: quantize_row_q2_K_ref,
 * quantize_row_q3_K_ref, quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref with
 * make_qkx2_quants, make_q3_quants and make_qx_quants) in
 * AssemblyScript → WebAssembly, whose f32 arithmetic is C's float arithmetic (every operation
 * rounded to nearest even, none fused), so the blocks are those the C code writes. The TypeScript
 * codecs (src/formats/gguf/codecs/) are the same algorithm emulated with Math.fround; the tests
 * hold both to the same reference.
 *
 * The caller places n·256 f32 values at `src` and room for n blocks at `dst` (from heapBase()).
 */

const QK_K: i32 = 256;

/** Where the caller may start placing data. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~15;
}

// Scratch, one block's worth.
const L: usize = memory.data(256);
const LAUX: usize = memory.data(32);
const WEIGHTS: usize = memory.data(32 * 4, 16);
const SCALES: usize = memory.data(16 * 4, 16);
const MINS: usize = memory.data(16 * 4, 16);

let theMin: f32 = 0;

// @ts-ignore: decorator
@inline function nearestInt(fval: f32): i32 {
  const val: f32 = fval + <f32>12582912.0;
  return (reinterpret<i32>(val) & 0x007fffff) - 0x00400000;
}

// @ts-ignore: decorator
@inline function cmax(a: i32, b: i32): i32 { return a > b ? a : b; }
// @ts-ignore: decorator
@inline function cmin(a: i32, b: i32): i32 { return a < b ? a : b; }

/** f32 → f16 bits, round to nearest even (F16C and ggml's portable path agree). */
function toHalf(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const exp = <i32>((x >> 23) & 0xff);
  let mant = x & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half: u32 = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >> shift;
    if (rest > half || (rest == half && (h & 1) != 0)) h++;
    return sign | h;
  }
  let h = (<u32>e << 10) | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) h++;
  return sign | h;
}

function fromHalf(h: u32): f32 {
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  const sign = (h & 0x8000) << 16;
  if (e == 0) {
    const v: f32 = <f32>m * <f32>5.9604644775390625e-8;
    return sign != 0 ? -v : v;
  }
  if (e == 31) return reinterpret<f32>(sign | 0x7f800000 | (m << 13));
  return reinterpret<f32>(sign | ((e + 112) << 23) | (m << 13));
}

// @ts-ignore: decorator
@inline function xAt(x: usize, i: i32): f32 { return load<f32>(x + (<usize>i << 2)); }

/** make_qkx2_quants with the weights in WEIGHTS; `useMad`: absolute instead of squared errors. */
function makeQkx2Quants(n: i32, nmax: i32, x: usize, l0: usize, rmin: f32, rdelta: f32, nstep: i32, useMad: bool): f32 {
  let min = xAt(x, 0);
  let max = min;
  let sumW = load<f32>(WEIGHTS);
  let sumX: f32 = sumW * xAt(x, 0);
  for (let i = 1; i < n; i++) {
    const xi = xAt(x, i);
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = load<f32>(WEIGHTS + (<usize>i << 2));
    sumW += w;
    sumX += w * xi;
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (let i = 0; i < n; i++) store<u8>(l0 + i, 0);
    theMin = -min;
    return 0;
  }
  let iscale: f32 = <f32>nmax / (max - min);
  let scale: f32 = <f32>1 / iscale;
  let bestError: f32 = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(iscale * (xAt(x, i) - min));
    const q = cmax(0, cmin(nmax, l));
    store<u8>(l0 + i, <u8>q);
    const diff: f32 = scale * <f32>q + min - xAt(x, i);
    bestError += load<f32>(WEIGHTS + (<usize>i << 2)) * (useMad ? Mathf.abs(diff) : diff * diff);
  }
  if (nstep < 1) {
    theMin = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * <f32>is + <f32>nmax) / (max - min);
    let sumL: f32 = 0;
    let sumL2: f32 = 0;
    let sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = xAt(x, i);
      const l = cmax(0, cmin(nmax, nearestInt(iscale * (xi - min))));
      store<u8>(LAUX + i, <u8>l);
      const w = load<f32>(WEIGHTS + (<usize>i << 2));
      const fl = <f32>l;
      sumL += w * fl;
      sumL2 += w * fl * fl;
      sumXL += w * fl * xi;
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let curError: f32 = 0;
      for (let i = 0; i < n; i++) {
        const diff: f32 = thisScale * <f32>load<u8>(LAUX + i) + thisMin - xAt(x, i);
        curError += load<f32>(WEIGHTS + (<usize>i << 2)) * (useMad ? Mathf.abs(diff) : diff * diff);
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) store<u8>(l0 + i, load<u8>(LAUX + i));
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  theMin = -min;
  return scale;
}

function kScale(q: usize, j: i32): i32 {
  if (j < 4) return <i32>load<u8>(q + j) & 63;
  return (<i32>load<u8>(q + j + 4) & 0xf) | ((<i32>load<u8>(q + j - 4) >> 6) << 4);
}

function kMin(q: usize, j: i32): i32 {
  if (j < 4) return <i32>load<u8>(q + j + 4) & 63;
  return (<i32>load<u8>(q + j + 4) >> 4) | ((<i32>load<u8>(q + j) >> 6) << 4);
}

/** quantize_row_q4_K_ref (nmax 15, 144-byte blocks) and quantize_row_q5_K_ref (nmax 31, 176). */
export function encodeScaleMin(src: usize, dst: usize, nBlocks: i32, nmax: i32): void {
  const blockBytes: i32 = nmax == 15 ? 144 : 176;
  const rmin: f32 = nmax == 15 ? -1.0 : -0.5;
  const nstep: i32 = nmax == 15 ? 20 : 15;
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * <usize>blockBytes;
    memory.fill(y, 0, blockBytes);
    let maxScale: f32 = 0;
    let maxMin: f32 = 0;
    for (let j = 0; j < 8; j++) {
      const xj = x + (<usize>(32 * j) << 2);
      let sumX2: f32 = 0;
      for (let l = 0; l < 32; l++) {
        const v = xAt(xj, l);
        sumX2 += v * v;
      }
      const avX: f32 = Mathf.sqrt(sumX2 / <f32>32);
      for (let l = 0; l < 32; l++) store<f32>(WEIGHTS + (<usize>l << 2), avX + Mathf.abs(xAt(xj, l)));
      const scale = makeQkx2Quants(32, nmax, xj, L + 32 * j, rmin, <f32>0.1, nstep, false);
      store<f32>(SCALES + (<usize>j << 2), scale);
      store<f32>(MINS + (<usize>j << 2), theMin);
      if (scale > maxScale) maxScale = scale;
      if (theMin > maxMin) maxMin = theMin;
    }
    const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
    const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
    const sc = y + 4;
    for (let j = 0; j < 8; j++) {
      const ls = cmin(63, nearestInt(invScale * load<f32>(SCALES + (<usize>j << 2))) & 0xff);
      const lm = cmin(63, nearestInt(invMin * load<f32>(MINS + (<usize>j << 2))) & 0xff);
      if (j < 4) {
        store<u8>(sc + j, <u8>ls);
        store<u8>(sc + j + 4, <u8>lm);
      } else {
        store<u8>(sc + j + 4, <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
        store<u8>(sc + j - 4, load<u8>(sc + j - 4) | <u8>((ls >> 4) << 6));
        store<u8>(sc + j, load<u8>(sc + j) | <u8>((lm >> 4) << 6));
      }
    }
    const dBits = toHalf(maxScale / <f32>63);
    const dminBits = toHalf(maxMin / <f32>63);
    store<u16>(y, <u16>dBits);
    store<u16>(y + 2, <u16>dminBits);
    const d0 = fromHalf(dBits);
    const m0 = fromHalf(dminBits);
    for (let j = 0; j < 8; j++) {
      const d: f32 = d0 * <f32>kScale(sc, j);
      if (d == 0) continue;
      const dm: f32 = m0 * <f32>kMin(sc, j);
      for (let ii = 0; ii < 32; ii++) {
        const l = nearestInt((xAt(x, 32 * j + ii) + dm) / d);
        store<u8>(L + 32 * j + ii, <u8>cmax(0, cmin(nmax, l)));
      }
    }
    if (nmax == 15) {
      let q = y + 16;
      for (let j = 0; j < QK_K; j += 64) {
        for (let l = 0; l < 32; l++) store<u8>(q + l, load<u8>(L + j + l) | (load<u8>(L + j + l + 32) << 4));
        q += 32;
      }
    } else {
      const qh = y + 16;
      let ql = y + 48;
      let m1: u8 = 1;
      let m2: u8 = 2;
      for (let j = 0; j < QK_K; j += 64) {
        for (let l = 0; l < 32; l++) {
          let l1 = <i32>load<u8>(L + j + l);
          if (l1 > 15) {
            l1 -= 16;
            store<u8>(qh + l, load<u8>(qh + l) | m1);
          }
          let l2 = <i32>load<u8>(L + j + l + 32);
          if (l2 > 15) {
            l2 -= 16;
            store<u8>(qh + l, load<u8>(qh + l) | m2);
          }
          store<u8>(ql + l, <u8>(l1 | (l2 << 4)));
        }
        m1 <<= 2;
        m2 <<= 2;
        ql += 32;
      }
    }
  }
}

/** The value of largest magnitude among x[0, n) (the first, on ties; 0 when all are 0 or NaN). */
function largest(n: i32, x: usize): f32 {
  let max: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(xAt(x, i));
    if (ax > amax) {
      amax = ax;
      max = xAt(x, i);
    }
  }
  return max;
}

/** What levelSums leaves: Σ w·x·l and Σ w·l² with w = x², in f32 in index order. */
let sumLX: f32 = 0;
let sumL2: f32 = 0;

/**
 * Levels l = clamp(nearest(iscale·x), −nmax, nmax − 1) of x[0, n), and their x²-weighted sums
 * (sumLX, sumL2); stored as bytes l + offset at l0 unless l0 is 0.
 */
function levelSums(n: i32, nmax: i32, x: usize, iscale: f32, l0: usize, offset: i32): void {
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    const l = cmax(-nmax, cmin(nmax - 1, nearestInt(iscale * xi)));
    if (l0 != 0) store<u8>(l0 + i, <u8>(l + offset));
    const w: f32 = xi * xi;
    const fl = <f32>l;
    sumlx += w * xi * fl;
    suml2 += w * fl * fl;
  }
  sumLX = sumlx;
  sumL2 = suml2;
}

/** make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL). */
function makeQxQuants(n: i32, nmax: i32, x: usize, l0: usize): f32 {
  const max = largest(n, x);
  if (Mathf.abs(max) < <f32>1e-15) {
    for (let i = 0; i < n; i++) store<u8>(l0 + i, 0);
    return 0;
  }
  levelSums(n, nmax, x, <f32>(-nmax) / max, l0, nmax);
  let scale: f32 = sumL2 != 0 ? sumLX / sumL2 : 0;
  let best: f32 = scale * sumLX;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    const iscale: f32 = -(<f32>nmax + <f32>0.1 * <f32>is) / max;
    levelSums(n, nmax, x, iscale, 0, 0);
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      levelSums(n, nmax, x, iscale, l0, nmax);
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

/** quantize_row_q6_K_ref: 210-byte blocks. */
export function encodeQ6K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * 210;
    for (let ib = 0; ib < 16; ib++) store<f32>(SCALES + (<usize>ib << 2), makeQxQuants(16, 32, x + (<usize>(16 * ib) << 2), L + 16 * ib));
    const maxScale = largest(16, SCALES);
    memory.fill(y, 0, 210);
    if (Mathf.abs(maxScale) < <f32>1e-15) continue;
    const iscale: f32 = <f32>-128 / maxScale;
    const dBits = toHalf(<f32>1 / iscale);
    store<u16>(y + 208, <u16>dBits);
    for (let ib = 0; ib < 16; ib++) store<u8>(y + 192 + ib, <u8>cmin(127, nearestInt(iscale * load<f32>(SCALES + (<usize>ib << 2)))));
    const d0 = fromHalf(dBits);
    for (let j = 0; j < 16; j++) {
      const d: f32 = d0 * <f32>load<i8>(y + 192 + j);
      if (d == 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(xAt(x, 16 * j + ii) / d);
        store<u8>(L + 16 * j + ii, <u8>(cmax(-32, cmin(31, l)) + 32));
      }
    }
    let ql = y;
    let qh = y + 128;
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        const a = load<u8>(L + j + l), bq = load<u8>(L + j + l + 32), c = load<u8>(L + j + l + 64), e = load<u8>(L + j + l + 96);
        store<u8>(ql + l, (a & 0xf) | ((c & 0xf) << 4));
        store<u8>(ql + l + 32, (bq & 0xf) | ((e & 0xf) << 4));
        store<u8>(qh + l, (a >> 4) | ((bq >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
  }
}

/** quantize_row_q2_K_ref: 84-byte blocks (16 scale/min bytes, 64 bytes of 2-bit levels, d, dmin). */
export function encodeQ2K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * 84;
    memory.fill(y, 0, 84);
    let maxScale: f32 = 0;
    let maxMin: f32 = 0;
    for (let j = 0; j < 16; j++) {
      const xj = x + (<usize>(16 * j) << 2);
      for (let l = 0; l < 16; l++) store<f32>(WEIGHTS + (<usize>l << 2), Mathf.abs(xAt(xj, l)));
      const scale = makeQkx2Quants(16, 3, xj, L + 16 * j, <f32>-0.5, <f32>0.1, 15, true);
      store<f32>(SCALES + (<usize>j << 2), scale);
      store<f32>(MINS + (<usize>j << 2), theMin);
      if (scale > maxScale) maxScale = scale;
      if (theMin > maxMin) maxMin = theMin;
    }
    let dBits: u32 = 0;
    if (maxScale > 0) {
      const iscale: f32 = <f32>15 / maxScale;
      for (let j = 0; j < 16; j++) store<u8>(y + j, <u8>nearestInt(iscale * load<f32>(SCALES + (<usize>j << 2))));
      dBits = toHalf(maxScale / <f32>15);
    }
    let dminBits: u32 = 0;
    if (maxMin > 0) {
      const iscale: f32 = <f32>15 / maxMin;
      for (let j = 0; j < 16; j++) store<u8>(y + j, load<u8>(y + j) | <u8>(nearestInt(iscale * load<f32>(MINS + (<usize>j << 2))) << 4));
      dminBits = toHalf(maxMin / <f32>15);
    }
    store<u16>(y + 80, <u16>dBits);
    store<u16>(y + 82, <u16>dminBits);
    const d0 = fromHalf(dBits);
    const m0 = fromHalf(dminBits);
    for (let j = 0; j < 16; j++) {
      const sc = <i32>load<u8>(y + j);
      const d: f32 = d0 * <f32>(sc & 0xf);
      if (d == 0) continue;
      const dm: f32 = m0 * <f32>(sc >> 4);
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt((xAt(x, 16 * j + ii) + dm) / d);
        store<u8>(L + 16 * j + ii, <u8>cmax(0, cmin(3, l)));
      }
    }
    packTwoBits(y + 16);
  }
}

/** Levels 0–3 of L into 64 bytes: value l + 32s of each half of 128 at bits 2s of byte 32·half + l. */
function packTwoBits(qs: usize): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      const at = L + j + l;
      store<u8>(qs + (j >> 2) + l, load<u8>(at) | (load<u8>(at + 32) << 2) | (load<u8>(at + 64) << 4) | (load<u8>(at + 96) << 6));
    }
  }
}

/** make_q3_quants(n, nmax, x, L, do_rmse = true), levels stored as signed bytes 0…2·nmax−1. */
function makeQ3Quants(n: i32, nmax: i32, x: usize, l0: usize): f32 {
  const max = largest(n, x);
  if (Mathf.abs(max) < <f32>1e-15) {
    for (let i = 0; i < n; i++) store<i8>(l0 + i, 0);
    return 0;
  }
  levelSums(n, nmax, x, <f32>(-nmax) / max, l0, 0);
  let sumlx = sumLX;
  let suml2 = sumL2;
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = xAt(x, i);
      const li = <i32>load<i8>(l0 + i);
      const fli = <f32>li;
      const w: f32 = xi * xi;
      let slx: f32 = sumlx - w * xi * fli;
      if (slx > 0) {
        let sl2: f32 = suml2 - w * fli * fli;
        const newL = cmax(-nmax, cmin(nmax - 1, nearestInt(xi * sl2 / slx)));
        if (newL != li) {
          const fl = <f32>newL;
          slx += w * xi * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            store<i8>(l0 + i, <i8>newL);
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (let i = 0; i < n; i++) store<i8>(l0 + i, <i8>(<i32>load<i8>(l0 + i) + nmax));
  return suml2 > 0 ? sumlx / suml2 : 0;
}

// @ts-ignore: decorator
@inline function q3Scale(sc: usize, j: i32): i32 {
  const low = j < 8 ? <i32>load<u8>(sc + j) & 0xf : <i32>load<u8>(sc + j - 8) >> 4;
  return low | (((<i32>load<u8>(sc + 8 + (j & 3)) >> (2 * (j >> 2))) & 3) << 4);
}

/** quantize_row_q3_K_ref: 110-byte blocks (32 bytes hmask, 64 bytes qs, 12 bytes scales, d). */
export function encodeQ3K(src: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * 110;
    memory.fill(y, 0, 110);
    for (let j = 0; j < 16; j++) store<f32>(SCALES + (<usize>j << 2), makeQ3Quants(16, 4, x + (<usize>(16 * j) << 2), L + 16 * j));
    const maxScale = largest(16, SCALES);
    const sc = y + 96;
    let dBits: u32 = 0;
    if (maxScale != 0) {
      const iscale: f32 = <f32>-32 / maxScale;
      for (let j = 0; j < 16; j++) {
        // int8_t l = nearest_int(…), then clamped and offset.
        const l = cmax(-32, cmin(31, <i32><i8>nearestInt(iscale * load<f32>(SCALES + (<usize>j << 2))))) + 32;
        if (j < 8) store<u8>(sc + j, <u8>(l & 0xf));
        else store<u8>(sc + j - 8, load<u8>(sc + j - 8) | <u8>((l & 0xf) << 4));
        store<u8>(sc + 8 + (j & 3), load<u8>(sc + 8 + (j & 3)) | <u8>((l >> 4) << (2 * (j >> 2))));
      }
      dBits = toHalf(<f32>1 / iscale);
    }
    store<u16>(y + 108, <u16>dBits);
    const d0 = fromHalf(dBits);
    for (let j = 0; j < 16; j++) {
      const d: f32 = d0 * <f32>(q3Scale(sc, j) - 32);
      if (d == 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(xAt(x, 16 * j + ii) / d);
        store<i8>(L + 16 * j + ii, <i8>(cmax(-4, cmin(3, l)) + 4));
      }
    }
    for (let k = 0; k < QK_K; k++) {
      const l = <i32>load<i8>(L + k);
      if (l > 3) {
        store<u8>(y + (k & 31), load<u8>(y + (k & 31)) | <u8>(<i32>1 << (k >> 5)));
        store<i8>(L + k, <i8>(l - 4));
      }
    }
    packTwoBits(y + 32);
  }
}
