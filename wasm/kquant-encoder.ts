/**
 * llama.cpp's k-quant reference quantizers (ggml-quants.c: quantize_row_q2_K_ref,
 * quantize_row_q3_K_ref, quantize_row_q4_K_ref, quantize_row_q5_K_ref, quantize_row_q6_K_ref with
 * make_qkx2_quants, make_q3_quants and make_qx_quants) in
 * AssemblyScript → WebAssembly, whose f32 arithmetic is C's float arithmetic (every operation
 * rounded to nearest even, none fused), so the blocks are those the C code writes. The TypeScript
 * codecs (src/formats/gguf/codecs/) are the same algorithm emulated with Math.fround; the tests
 * hold both to the same reference.
 *
 * With importance weights (`llama-quantize --imatrix`), quantize_row_q{2,3,4,5,6}_K_impl with
 * make_qkx3_quants (make_qkx2_quants' steps, given weights), make_qp_quants and make_qx_quants
 * weighted: the *Weighted exports, twins of the TypeScript codecs' encodeWeighted. And IQ4_NL,
 * IQ4_XS, IQ3_XXS and IQ3_S (quantize_iq4_*, quantize_iq3_*), with or without weights.
 *
 * The caller places n·256 f32 values at `src` (and for the weighted ones n·256 importance weights
 * at `qw`, one per value) and room for n blocks at `dst` (from heapBase()).
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
/** Per sub-block Σ importance weights, and the 4- or 6-bit scale and min levels make_qp_quants picks. */
const SW: usize = memory.data(16 * 4, 16);
const LS: usize = memory.data(16);
const LM: usize = memory.data(16);

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

/** Σ x² over x[0, n), in f32 in index order. */
function sumSquares(x: usize, n: i32): f32 {
  let s: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = xAt(x, i);
    s += v * v;
  }
  return s;
}

/** WEIGHTS[0, n) = qw[j]·sqrtf(σ² + x[j]²): the importance weights of quantize_row_*_impl. */
function importanceWeights(x: usize, qw: usize, sigma2: f32, n: i32): void {
  for (let j = 0; j < n; j++) {
    const v = xAt(x, j);
    store<f32>(WEIGHTS + (<usize>j << 2), xAt(qw, j) * Mathf.sqrt(sigma2 + v * v));
  }
}

/** Σ WEIGHTS[0, n) in f32 in index order. */
function sumWeights(n: i32): f32 {
  let s: f32 = 0;
  for (let j = 0; j < n; j++) s += load<f32>(WEIGHTS + (<usize>j << 2));
  return s;
}

/**
 * make_qp_quants(n, nmax, x, L, quant_weights): levels 0…nmax (bytes at l0; a negative level
 * wraps as C's uint8_t does) of the non-negative x[0, n) against one scale, weighted by the f32
 * values at qw: the best of 9 trial scales, then up to 5 passes moving single levels; 0 where the
 * largest x is below GROUP_MAX_EPS or Σw·l² is not positive (ggml d99724f; twin of k-quant-search.ts).
 */
function makeQpQuants(n: i32, nmax: i32, x: usize, l0: usize, qw: usize): f32 {
  let max: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    max = max > xi ? max : xi;
  }
  if (max < <f32>1e-15) {
    for (let i = 0; i < n; i++) store<u8>(l0 + i, 0);
    return 0;
  }
  let iscale: f32 = <f32>nmax / max;
  for (let i = 0; i < n; i++) store<u8>(l0 + i, <u8>nearestInt(iscale * xAt(x, i)));
  const scale: f32 = <f32>1 / iscale;
  let bestMse: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    const diff: f32 = xi - scale * <f32>load<u8>(l0 + i);
    bestMse += xAt(qw, i) * diff * diff;
  }
  for (let is = -4; is <= 4; is++) {
    if (is == 0) continue;
    const iscaleIs: f32 = (<f32>0.1 * <f32>is + <f32>nmax) / max;
    const scaleIs: f32 = <f32>1 / iscaleIs;
    let mse: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = xAt(x, i);
      const l = cmin(nmax, nearestInt(iscaleIs * xi));
      const diff: f32 = xi - scaleIs * <f32>l;
      mse += xAt(qw, i) * diff * diff;
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    const l = cmin(nmax, nearestInt(iscale * xi));
    store<u8>(l0 + i, <u8>l);
    const w = xAt(qw, i);
    const fl = <f32>l;
    sumlx += w * xi * fl;
    suml2 += w * fl * fl;
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = xAt(qw, i);
      const xi = xAt(x, i);
      const li = <i32>load<u8>(l0 + i);
      const fli = <f32>li;
      let slx: f32 = sumlx - w * xi * fli;
      let sl2: f32 = suml2 - w * fli * fli;
      if (slx > 0 && sl2 > 0) {
        const newL = cmin(nmax, nearestInt(xi * sl2 / slx));
        if (newL != li) {
          const fl = <f32>newL;
          slx += w * xi * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            store<u8>(l0 + i, <u8>newL);
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  return suml2 > 0 ? sumlx / suml2 : <f32>0;
}

/** Scale ls and min lm of Q4_K/Q5_K sub-block j into the 12 bytes at sc (bits above 8 dropped, as C's uint8_t). */
function putKScaleMin(sc: usize, j: i32, ls: i32, lm: i32): void {
  if (j < 4) {
    store<u8>(sc + j, <u8>ls);
    store<u8>(sc + j + 4, <u8>lm);
  } else {
    store<u8>(sc + j + 4, <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
    store<u8>(sc + j - 4, load<u8>(sc + j - 4) | <u8>((ls >> 4) << 6));
    store<u8>(sc + j, load<u8>(sc + j) | <u8>((lm >> 4) << 6));
  }
}

/**
 * quantize_row_q4_K_impl (nmax 15) and quantize_row_q5_K_impl (nmax 31): per 32 values the
 * weights qw·sqrtf(σ² + x²) (σ² = 2·Σx²/256), make_qkx3_quants(32, nmax, …, −0.9, 0.05, 36), and
 * the 6-bit scales and mins by make_qp_quants weighted by each 32's Σ weights (Q5_K clamps them
 * to 63, Q4_K stores them as they are).
 */
export function encodeScaleMinWeighted(src: usize, qw: usize, dst: usize, nBlocks: i32, nmax: i32): void {
  const blockBytes: i32 = nmax == 15 ? 144 : 176;
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const w = qw + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * <usize>blockBytes;
    memory.fill(y, 0, blockBytes);
    const sigma2: f32 = <f32>2 * sumSquares(x, QK_K) / <f32>QK_K;
    for (let j = 0; j < 8; j++) {
      const at = <usize>(32 * j) << 2;
      importanceWeights(x + at, w + at, sigma2, 32);
      store<f32>(SW + (<usize>j << 2), sumWeights(32));
      const scale = makeQkx2Quants(32, nmax, x + at, L + 32 * j, <f32>-0.9, <f32>0.05, 36, false);
      store<f32>(SCALES + (<usize>j << 2), scale);
      store<f32>(MINS + (<usize>j << 2), theMin);
    }
    const dBlock = makeQpQuants(8, 63, SCALES, LS, SW);
    const mBlock = makeQpQuants(8, 63, MINS, LM, SW);
    for (let j = 0; j < 8; j++) {
      const ls = <i32>load<u8>(LS + j);
      const lm = <i32>load<u8>(LM + j);
      putKScaleMin(y + 4, j, nmax == 31 ? cmin(63, ls) : ls, nmax == 31 ? cmin(63, lm) : lm);
    }
    const dBits = toHalf(dBlock);
    const dminBits = toHalf(mBlock);
    store<u16>(y, <u16>dBits);
    store<u16>(y + 2, <u16>dminBits);
    scaleMinLevels(x, y, nmax, dBits, dminBits);
  }
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
      putKScaleMin(sc, j, ls, lm);
    }
    const dBits = toHalf(maxScale / <f32>63);
    const dminBits = toHalf(maxMin / <f32>63);
    store<u16>(y, <u16>dBits);
    store<u16>(y + 2, <u16>dminBits);
    scaleMinLevels(x, y, nmax, dBits, dminBits);
  }
}

/**
 * Every value of the super-block at x requantized against the stored (f16) d and dmin and the
 * 6-bit scales and mins at y + 4, and packed (Q4_K: nibbles; Q5_K: nibbles and fifth bits).
 */
function scaleMinLevels(x: usize, y: usize, nmax: i32, dBits: u32, dminBits: u32): void {
  const d0 = fromHalf(dBits);
  const sc = y + 4;
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

/** What levelSums leaves: Σ w·x·l and Σ w·l² (w = x², or the weights at qw), in f32 in index order. */
let sumLX: f32 = 0;
let sumL2: f32 = 0;

/**
 * Levels l = clamp(nearest(iscale·x), −nmax, nmax − 1) of x[0, n), and their weighted sums
 * (sumLX, sumL2), weights x² (qw 0) or the f32 values at qw; stored as bytes l + offset at l0
 * unless l0 is 0.
 */
function levelSums(n: i32, nmax: i32, x: usize, iscale: f32, l0: usize, offset: i32, qw: usize): void {
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    const l = cmax(-nmax, cmin(nmax - 1, nearestInt(iscale * xi)));
    if (l0 != 0) store<u8>(l0 + i, <u8>(l + offset));
    const w: f32 = qw != 0 ? load<f32>(qw + (<usize>i << 2)) : xi * xi;
    const fl = <f32>l;
    sumlx += w * xi * fl;
    suml2 += w * fl * fl;
  }
  sumLX = sumlx;
  sumL2 = suml2;
}

/**
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw): qw 0 for C's NULL (weights x²). Where Σw·l²
 * is NaN (only weights that overflow f32 get there) the scale is NaN, as in C, whose
 * `suml2 ? … : 0` takes NaN as true.
 */
function makeQxQuants(n: i32, nmax: i32, x: usize, l0: usize, qw: usize): f32 {
  const max = largest(n, x);
  if (Mathf.abs(max) < <f32>1e-15) {
    for (let i = 0; i < n; i++) store<u8>(l0 + i, 0);
    return 0;
  }
  levelSums(n, nmax, x, <f32>(-nmax) / max, l0, nmax, qw);
  let scale: f32 = sumL2 != 0 ? sumLX / sumL2 : 0;
  let best: f32 = scale * sumLX;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    const iscale: f32 = -(<f32>nmax + <f32>0.1 * <f32>is) / max;
    levelSums(n, nmax, x, iscale, 0, 0, qw);
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      levelSums(n, nmax, x, iscale, l0, nmax, qw);
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

/** quantize_row_q6_K_ref: 210-byte blocks. */
export function encodeQ6K(src: usize, dst: usize, nBlocks: i32): void {
  q6K(src, 0, dst, nBlocks);
}

/** quantize_row_q6_K_impl: make_qx_quants weighted by the importance weights as they are. */
export function encodeQ6KWeighted(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  q6K(src, qw, dst, nBlocks);
}

function q6K(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const w = qw != 0 ? qw + (<usize>b * <usize>QK_K << 2) : 0;
    const y = dst + <usize>b * 210;
    for (let ib = 0; ib < 16; ib++) {
      const at = <usize>(16 * ib) << 2;
      store<f32>(SCALES + (<usize>ib << 2), makeQxQuants(16, 32, x + at, L + 16 * ib, w != 0 ? w + at : 0));
    }
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
    q2KLevels(x, y, dBits, dminBits);
  }
}

/** quantize_row_q2_K_impl: 84-byte blocks, the scales and mins fitted with importance weights. */
export function encodeQ2KWeighted(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const w = qw + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * 84;
    memory.fill(y, 0, 84);
    const sigma2: f32 = sumSquares(x, QK_K) / <f32>QK_K;
    for (let j = 0; j < 16; j++) {
      const at = <usize>(16 * j) << 2;
      importanceWeights(x + at, w + at, sigma2, 16);
      store<f32>(SW + (<usize>j << 2), sumWeights(16));
      const scale = makeQkx2Quants(16, 3, x + at, L + 16 * j, <f32>-0.9, <f32>0.05, 36, false);
      store<f32>(SCALES + (<usize>j << 2), scale);
      store<f32>(MINS + (<usize>j << 2), theMin);
    }
    const dm = makeQpQuants(16, 15, SCALES, LS, SW);
    const mm = makeQpQuants(16, 15, MINS, LM, SW);
    for (let j = 0; j < 16; j++) store<u8>(y + j, load<u8>(LS + j) | (load<u8>(LM + j) << 4));
    q2KLevels(x, y, toHalf(dm), toHalf(mm));
  }
}

/** Q2_K's d and dmin stored, and every value requantized against them and the 4-bit scales and mins at y. */
function q2KLevels(x: usize, y: usize, dBits: u32, dminBits: u32): void {
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
  levelSums(n, nmax, x, <f32>(-nmax) / max, l0, 0, 0);
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
        putQ3Scale(sc, j, cmax(-32, cmin(31, <i32><i8>nearestInt(iscale * load<f32>(SCALES + (<usize>j << 2))))) + 32);
      }
      dBits = toHalf(<f32>1 / iscale);
    }
    q3KLevels(x, y, dBits);
  }
}

/** Code l (0…63) of Q3_K's sub-block j into the 12 scale bytes at sc. */
function putQ3Scale(sc: usize, j: i32, l: i32): void {
  if (j < 8) store<u8>(sc + j, <u8>(l & 0xf));
  else store<u8>(sc + j - 8, load<u8>(sc + j - 8) | <u8>((l & 0xf) << 4));
  store<u8>(sc + 8 + (j & 3), load<u8>(sc + 8 + (j & 3)) | <u8>((l >> 4) << (2 * (j >> 2))));
}

/**
 * quantize_row_q3_K_impl: 110-byte blocks; per 16 values make_qx_quants(16, 4) weighted by
 * qw·sqrtf(σ² + x²) (σ² = 2·Σx²/256), the 6-bit codes by make_qx_quants(16, 32) of the 16
 * scales weighted by each 16's Σ weights.
 */
export function encodeQ3KWeighted(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const x = src + (<usize>b * <usize>QK_K << 2);
    const w = qw + (<usize>b * <usize>QK_K << 2);
    const y = dst + <usize>b * 110;
    memory.fill(y, 0, 110);
    const sigma2: f32 = <f32>2 * sumSquares(x, QK_K) / <f32>QK_K;
    for (let j = 0; j < 16; j++) {
      const at = <usize>(16 * j) << 2;
      importanceWeights(x + at, w + at, sigma2, 16);
      store<f32>(SW + (<usize>j << 2), sumWeights(16));
      store<f32>(SCALES + (<usize>j << 2), makeQxQuants(16, 4, x + at, L + 16 * j, WEIGHTS));
    }
    const dBlock = makeQxQuants(16, 32, SCALES, LS, SW);
    for (let j = 0; j < 16; j++) putQ3Scale(y + 96, j, <i32>load<u8>(LS + j));
    q3KLevels(x, y, toHalf(dBlock));
  }
}

/** Q3_K's d stored, and every value requantized against it and the codes at y + 96, then packed. */
function q3KLevels(x: usize, y: usize, dBits: u32): void {
  const sc = y + 96;
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

/**
 * The legacy 32-value types with importance weights, quantize_row_q{4,5}_{0,1}_impl over n
 * values (whole blocks) of one row whose σ² = Σx²/n the caller gives (it is over the whole row):
 * per 32 values the weights qw·sqrtf(σ² + x²), then `bits` 4 (Q4_0, 18-byte blocks) or 5 (Q5_0,
 * 22): make_qx_quants(32, 8 or 16, …, rmse_type 1, weights), d as f16; `bits` 14 (Q4_1, 20) or
 * 15 (Q5_1, 24): make_qkx3_quants(32, 15 or 31, …, −0.9, 0.05, 36), d and the minimum as f16.
 */
export function encodeLegacyWeighted(src: usize, qw: usize, dst: usize, n: i32, sigma2: f32, bits: i32): void {
  const affine = bits > 5;
  const five = bits == 5 || bits == 15;
  const blockBytes: usize = affine ? (five ? 24 : 20) : (five ? 22 : 18);
  for (let b = 0; b < n >> 5; b++) {
    const at = <usize>(32 * b) << 2;
    const x = src + at;
    const y = dst + <usize>b * blockBytes;
    importanceWeights(x, qw + at, sigma2, 32);
    let qs = y + 2;
    if (affine) {
      const scale = makeQkx2Quants(32, five ? 31 : 15, x, L, <f32>-0.9, <f32>0.05, 36, false);
      store<u16>(y, <u16>toHalf(scale));
      store<u16>(y + 2, <u16>toHalf(-theMin));
      qs = y + 4;
    } else {
      store<u16>(y, <u16>toHalf(makeQxQuants(32, five ? 16 : 8, x, L, WEIGHTS)));
    }
    if (!five) {
      for (let j = 0; j < 16; j++) store<u8>(qs + j, load<u8>(L + j) | (load<u8>(L + j + 16) << 4));
      continue;
    }
    let qh: u32 = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = <u32>load<u8>(L + j);
      const q1 = <u32>load<u8>(L + j + 16);
      store<u8>(qs + 4 + j, <u8>((q0 & 0xf) | ((q1 & 0xf) << 4)));
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    store<u32>(qs, qh);
  }
}

// ---- IQ4_NL and IQ4_XS: quantize_iq4_nl / quantize_iq4_xs (quantize_row_iq4_nl_impl, ntry 7) ----

/** kvalues_iq4nl, as i32. */
const IQ4_LEVELS: usize = memory.data<i32>([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);
/** levels[j − 1] + levels[j] (0 for j = 0), as f32: value x takes level j once 2x reaches it. */
const IQ4_MIDPOINTS: usize = memory.data<f32>([0, -231, -187, -148, -114, -84, -57, -32, -9, 14, 38, 63, 91, 122, 158, 202]);
/** The 32 weights of the block being fitted. */
const IQ4_WEIGHTS: usize = memory.data(32 * 4, 16);
const IQ4_SCALES: usize = memory.data(8 * 4, 16);

// @ts-ignore: decorator
@inline function iq4Level(j: i32): i32 { return load<i32>(IQ4_LEVELS + (<usize>j << 2)); }
// @ts-ignore: decorator
@inline function iq4Mid(j: i32): f32 { return load<f32>(IQ4_MIDPOINTS + (<usize>j << 2)); }

/** best_index_int8 over the 16 levels: a tie takes the upper level, NaN level 0. */
function iq4Best(x: f32): i32 {
  const x2: f32 = x + x;
  let idx = x2 >= iq4Mid(8) ? 8 : 0;
  if (x2 >= iq4Mid(idx + 4)) idx += 4;
  if (x2 >= iq4Mid(idx + 2)) idx += 2;
  if (x2 >= iq4Mid(idx + 1)) idx += 1;
  return idx;
}

let iq4SumQX: f32 = 0;
let iq4SumQ2: f32 = 0;

function iq4Sums(x: usize, id: f32): void {
  let sumqx: f32 = 0;
  let sumq2: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const xj = xAt(x, j);
    const q = <f32>iq4Level(iq4Best(id * xj));
    const wq: f32 = load<f32>(IQ4_WEIGHTS + (<usize>j << 2)) * q;
    sumqx += wq * xj;
    sumq2 += wq * q;
  }
  iq4SumQX = sumqx;
  iq4SumQ2 = sumq2;
}

/** The scale of 32 values at x: weights x² (qw 0) or qw·sqrtf(σ² + x²); 0 below GROUP_MAX_EPS. */
function iq4BlockScale(x: usize, qw: usize, sigma2: f32): f32 {
  let amax: f32 = 0;
  let max: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const ax = Mathf.abs(xAt(x, j));
    if (ax > amax) {
      amax = ax;
      max = xAt(x, j);
    }
  }
  if (amax < <f32>1e-15) return 0;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    store<f32>(IQ4_WEIGHTS + (<usize>j << 2), qw != 0 ? xAt(qw, j) * Mathf.sqrt(sigma2 + v * v) : v * v);
  }
  const v0: f32 = -127;
  iq4Sums(x, <f32>1 / (-max / v0));
  let d: f32 = iq4SumQ2 > 0 ? iq4SumQX / iq4SumQ2 : 0;
  let best: f32 = d * iq4SumQX;
  for (let itry = -7; itry <= 7; itry++) {
    iq4Sums(x, <f32>(itry - 127) / max);
    if (iq4SumQ2 > 0 && iq4SumQX * iq4SumQX > best * iq4SumQ2) {
      d = iq4SumQX / iq4SumQ2;
      best = d * iq4SumQX;
    }
  }
  return d;
}

/** C's `d ? 1/d : 0` (NaN counts as true). */
// @ts-ignore: decorator
@inline function iq4Inverse(d: f32): f32 { return d != 0 ? <f32>1 / d : 0; }

/** The 32 values at x as levels for scale inverse id, packed into 16 bytes at q. */
function iq4Pack(x: usize, id: f32, q: usize): void {
  for (let j = 0; j < 16; j++) store<u8>(q + j, <u8>(iq4Best(id * xAt(x, j)) | (iq4Best(id * xAt(x, j + 16)) << 4)));
}

/** quantize_iq4_nl: 18-byte blocks of 32 values; with weights (qw ≠ 0) σ² = 2·Σx²/32 per block. */
export function encodeIq4Nl(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const at = <usize>(32 * b) << 2;
    const x = src + at;
    const y = dst + <usize>b * 18;
    const sigma2: f32 = qw != 0 ? sumSquares(x, 32) * (<f32>2 / <f32>32) : 0;
    const d = iq4BlockScale(x, qw != 0 ? qw + at : 0, sigma2);
    store<u16>(y, <u16>toHalf(d));
    iq4Pack(x, iq4Inverse(d), y + 2);
  }
}

/** quantize_iq4_xs: 136-byte blocks of 256 values; with weights σ² = 2·Σx²/256 per block. */
export function encodeIq4Xs(src: usize, qw: usize, dst: usize, nBlocks: i32): void {
  for (let b = 0; b < nBlocks; b++) {
    const at = <usize>(256 * b) << 2;
    const x = src + at;
    const w = qw != 0 ? qw + at : 0;
    const y = dst + <usize>b * 136;
    const sigma2: f32 = qw != 0 ? sumSquares(x, 256) * (<f32>2 / <f32>256) : 0;
    let maxScale: f32 = 0;
    let amaxScale: f32 = 0;
    for (let ib = 0; ib < 8; ib++) {
      const off = <usize>(32 * ib) << 2;
      const d = iq4BlockScale(x + off, w != 0 ? w + off : 0, sigma2);
      store<f32>(IQ4_SCALES + (<usize>ib << 2), d);
      if (Mathf.abs(d) > amaxScale) {
        amaxScale = Mathf.abs(d);
        maxScale = d;
      }
    }
    const d: f32 = -maxScale / <f32>32;
    store<u16>(y, <u16>toHalf(d));
    const id = iq4Inverse(d);
    let high: u32 = 0;
    store<u32>(y + 4, 0);
    for (let ib = 0; ib < 8; ib++) {
      let l = nearestInt(id * load<f32>(IQ4_SCALES + (<usize>ib << 2)));
      l = cmax(-32, cmin(31, l));
      const dl: f32 = d * <f32>l;
      iq4Pack(x + (<usize>(32 * ib) << 2), iq4Inverse(dl), y + 8 + 16 * ib);
      l += 32;
      const sb = y + 4 + (ib >> 1);
      store<u8>(sb, load<u8>(sb) | <u8>((l & 0xf) << (4 * (ib & 1))));
      high |= <u32>(l >> 4) << (2 * ib);
    }
    store<u16>(y + 2, <u16>high);
  }
}

// ---- IQ3_XXS and IQ3_S: quantize_row_iq3_xxs_impl / quantize_row_iq3_s_impl (the TypeScript
// twins: src/formats/gguf/codecs/iq3.ts and iq3-search.ts). The grid tables (iq3xs_init_impl's:
// entries as 4 levels 0…7, a map of the 4096 points of 4 levels, an entry ≥ 0 or −(list offset)−1,
// and the neighbour lists, each its length then its entries) are built by the TypeScript side and
// placed in memory by it; their addresses come with each call.

const Q3_W: usize = memory.data(32 * 4, 16);
const Q3_WAUX: usize = memory.data(32 * 4, 16);
const Q3_X: usize = memory.data(32 * 4, 16);
const Q3_SCALES: usize = memory.data(8 * 4, 16);
const Q3_L: usize = memory.data(32);
const Q3_LAUX: usize = memory.data(32);
const Q3_ON: usize = memory.data(8);
const Q3_ONAUX: usize = memory.data(8);
const Q3_SIGNS: usize = memory.data(4);
const Q3_ENTRIES: usize = memory.data(8 * 2, 2);

let q3Levels: usize = 0;
let q3Map: usize = 0;
let q3Nb: usize = 0;
/** Set where ggml's search aborts (GGML_ASSERT: no neighbour within f32, a NaN scale). */
let q3Failed: bool = false;
/** Set where the 32 values are skipped (C's scale 0, nothing of them written). */
let q3Skipped: bool = false;
let q3SumQX: f32 = 0;
let q3SumQ2: f32 = 0;

// @ts-ignore: decorator
@inline function q3At(p: usize, i: i32): f32 { return load<f32>(p + (<usize>i << 2)); }

/** iq3_find_best_neighbour: the listed entry nearest to Q3_X[at…at+4) at `scale` by Σ waux·diff² (first on ties), its levels to dst. */
function q3BestNeighbour(o: i32, at: i32, scale: f32, dst: usize): i32 {
  const count = <i32>load<u16>(q3Nb + (<usize>o << 1));
  let best: f32 = <f32>3.4028234663852886e38;
  let entry = -1;
  for (let j = 1; j <= count; j++) {
    const e = <i32>load<u16>(q3Nb + (<usize>(o + j) << 1));
    let d2: f32 = 0;
    for (let i = 0; i < 4; i++) {
      const qi: i32 = 2 * <i32>load<u8>(q3Levels + <usize>(4 * e + i)) + 1;
      const q = <f32>qi;
      const diff: f32 = scale * q - q3At(Q3_X, at + i);
      d2 += q3At(Q3_WAUX, at + i) * diff * diff;
    }
    if (d2 < best) {
      best = d2;
      entry = e;
    }
  }
  if (entry < 0) {
    q3Failed = true;
    return 0;
  }
  for (let i = 0; i < 4; i++) store<u8>(dst + <usize>(at + i), load<u8>(q3Levels + <usize>(4 * entry + i)));
  return entry;
}

// @ts-ignore: decorator
@inline function q3Key(levels: usize, at: i32): i32 {
  const p = levels + <usize>at;
  return <i32>load<u8>(p) | (<i32>load<u8>(p + 1) << 3) | (<i32>load<u8>(p + 2) << 6) | (<i32>load<u8>(p + 3) << 9);
}

// @ts-ignore: decorator
@inline function q3MapAt(key: i32): i32 { return load<i32>(q3Map + (<usize>key << 2)); }

// @ts-ignore: decorator
@inline function q3LevelOf(id: f32, x: f32): i32 {
  const l = nearestInt(<f32>0.5 * (id * x - <f32>1));
  return l < 0 ? 0 : l > 7 ? 7 : l;
}

function q3Sums(levels: usize): void {
  let sumqx: f32 = 0;
  let sumq2: f32 = 0;
  for (let i = 0; i < 32; i++) {
    const w = q3At(Q3_W, i);
    const qi: i32 = 2 * <i32>load<u8>(levels + <usize>i) + 1;
    const q = <f32>qi;
    sumqx += w * q3At(Q3_X, i) * q;
    sumq2 += w * q * q;
  }
  q3SumQX = sumqx;
  q3SumQ2 = sumq2;
}

/** The search over x[0…32) (searchThirtyTwo): its scale, signs in Q3_SIGNS, entries in Q3_ENTRIES. */
function q3Search(x: usize, qw: usize, sigma2: f32, xxs: bool, trials: i32): f32 {
  q3Skipped = false;
  for (let i = 0; i < 32; i++) {
    const v = q3At(x, i);
    const w: f32 = qw != 0 ? q3At(qw, i) * Mathf.sqrt(sigma2 + v * v) : v * v;
    store<f32>(Q3_W + (<usize>i << 2), w);
    store<f32>(Q3_WAUX + (<usize>i << 2), Mathf.sqrt(w));
  }
  for (let k = 0; k < 4; k++) {
    let nflip = 0;
    let signs = 0;
    for (let i = 0; i < 8; i++) {
      const v = q3At(x, 8 * k + i);
      if (v >= 0) store<f32>(Q3_X + (<usize>(8 * k + i) << 2), v);
      else {
        store<f32>(Q3_X + (<usize>(8 * k + i) << 2), -v);
        nflip++;
        signs |= 1 << i;
      }
    }
    if (xxs && (nflip & 1) != 0) {
      let imin = 0;
      const x0 = q3At(x, 8 * k);
      let min: f32 = q3At(Q3_W, 8 * k) * x0 * x0;
      for (let i = 1; i < 8; i++) {
        const xi = q3At(x, 8 * k + i);
        const ax: f32 = q3At(Q3_W, 8 * k + i) * xi * xi;
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      const p = Q3_X + (<usize>(8 * k + imin) << 2);
      store<f32>(p, -load<f32>(p));
      signs ^= 1 << imin;
    }
    store<u8>(Q3_SIGNS + <usize>k, <u8>(xxs ? signs & 127 : signs));
  }
  let max = q3At(Q3_X, 0);
  for (let i = 1; i < 32; i++) {
    const v = q3At(Q3_X, i);
    max = max > v ? max : v;
  }
  memory.fill(Q3_L, 0, 32);
  if (xxs ? max < <f32>1e-8 : max == 0) {
    q3Skipped = true;
    return 0;
  }
  let best: f32 = 0;
  let scale: f32 = max / <f32>15;
  memory.fill(Q3_ON, xxs ? 1 : 0, 8);
  for (let is = -trials; is <= trials; is++) {
    const id: f32 = (<f32>15 + <f32>is * <f32>0.2) / max;
    const thisScale: f32 = <f32>1 / id;
    for (let k = 0; k < 8; k++) {
      for (let i = 0; i < 4; i++) store<u8>(Q3_LAUX + <usize>(4 * k + i), <u8>q3LevelOf(id, q3At(Q3_X, 4 * k + i)));
      const m = q3MapAt(q3Key(Q3_LAUX, 4 * k));
      store<u8>(Q3_ONAUX + <usize>k, 1);
      if (m < 0) {
        store<u8>(Q3_ONAUX + <usize>k, 0);
        q3BestNeighbour(-m - 1, 4 * k, thisScale, Q3_LAUX);
        if (q3Failed) return 0;
      }
    }
    q3Sums(Q3_LAUX);
    if (q3SumQ2 > 0 && q3SumQX * q3SumQX > best * q3SumQ2) {
      scale = q3SumQX / q3SumQ2;
      best = scale * q3SumQX;
      memory.copy(Q3_L, Q3_LAUX, 32);
      memory.copy(Q3_ON, Q3_ONAUX, 8);
    }
  }
  let offGrid = 0;
  for (let k = 0; k < 8; k++) if (load<u8>(Q3_ON + <usize>k) == 0) offGrid++;
  if (offGrid > 0 && scale > 0) {
    const id: f32 = <f32>1 / scale;
    for (let k = 0; k < 8; k++) {
      if (xxs && load<u8>(Q3_ON + <usize>k) != 0) continue;
      for (let i = 0; i < 4; i++) store<u8>(Q3_L + <usize>(4 * k + i), <u8>q3LevelOf(id, q3At(Q3_X, 4 * k + i)));
      let e = q3MapAt(q3Key(Q3_L, 4 * k));
      if (e < 0) {
        e = q3BestNeighbour(-e - 1, 4 * k, scale, Q3_L);
        if (q3Failed) return 0;
      }
      for (let i = 0; i < 4; i++) store<u8>(Q3_L + <usize>(4 * k + i), load<u8>(q3Levels + <usize>(4 * e + i)));
    }
    q3Sums(Q3_L);
    if (q3SumQ2 > 0) scale = q3SumQX / q3SumQ2;
  }
  if (scale < 0) {
    scale = -scale;
    for (let k = 0; k < 4; k++) {
      const p = Q3_SIGNS + <usize>k;
      store<u8>(p, <u8>(~<i32>load<u8>(p) & (xxs ? 127 : 255)));
    }
  }
  if (!(scale >= 0)) {
    q3Failed = true;
    return 0;
  }
  for (let k = 0; k < 8; k++) {
    const e = q3MapAt(q3Key(Q3_L, 4 * k));
    if (e < 0) {
      q3Failed = true;
      return 0;
    }
    store<u16>(Q3_ENTRIES + (<usize>k << 1), <u16>e);
  }
  return scale;
}

// @ts-ignore: decorator
@inline function q3SubScale(id: f32, scale: f32): i32 {
  const l = nearestInt(<f32>0.5 * (id * scale - <f32>1));
  return l < 0 ? 0 : l > 15 ? 15 : l;
}

/**
 * quantize_iq3_xxs (xxs ≠ 0: 98-byte blocks) or quantize_iq3_s (110): n blocks of 256 values, with
 * importance weights (one per value) at qw, or x² where qw is 0. Returns 1 where ggml's search
 * aborts on a block (the caller then reports it as the TypeScript codec does), else 0.
 */
export function encodeIq3(src: usize, qw: usize, dst: usize, nBlocks: i32, xxs: i32, levels: usize, map: usize, neighbours: usize): i32 {
  q3Levels = levels;
  q3Map = map;
  q3Nb = neighbours;
  q3Failed = false;
  const isXxs = xxs != 0;
  const bytes: usize = isXxs ? 98 : 110;
  const trials = isXxs ? 15 : 9;
  for (let b = 0; b < nBlocks; b++) {
    const at = <usize>(256 * b) << 2;
    const x = src + at;
    const w: usize = qw != 0 ? qw + at : 0;
    const y = dst + <usize>b * bytes;
    memory.fill(y, 0, bytes);
    const sigma2: f32 = qw != 0 ? <f32>2 * sumSquares(x, 256) / <f32>256 : 0;
    let maxScale: f32 = 0;
    let qs = y + 2;
    let signs = y + 74;
    for (let ib = 0; ib < 8; ib++) {
      const off = <usize>(32 * ib) << 2;
      const scale = q3Search(x + off, w != 0 ? w + off : 0, sigma2, isXxs, trials);
      if (q3Failed) return 1;
      store<f32>(Q3_SCALES + (<usize>ib << 2), q3Skipped ? 0 : scale);
      if (q3Skipped) continue;
      if (isXxs) {
        for (let k = 0; k < 8; k++) store<u8>(y + 2 + <usize>(8 * ib + k), <u8>load<u16>(Q3_ENTRIES + (<usize>k << 1)));
        const s = <u32>load<u8>(Q3_SIGNS) | (<u32>load<u8>(Q3_SIGNS + 1) << 7) | (<u32>load<u8>(Q3_SIGNS + 2) << 14) | (<u32>load<u8>(Q3_SIGNS + 3) << 21);
        store<u32>(y + 66 + <usize>(4 * ib), s);
      } else {
        // C advances these pointers only past 32s it quantizes (iq3.ts says why that matters).
        let high: u32 = <u32>load<u8>(y + 66 + <usize>ib);
        for (let k = 0; k < 8; k++) {
          const e = <u32>load<u16>(Q3_ENTRIES + (<usize>k << 1));
          store<u8>(qs + <usize>k, <u8>(e & 255));
          high |= (e >> 8) << k;
        }
        store<u8>(y + 66 + <usize>ib, <u8>high);
        for (let k = 0; k < 4; k++) store<u8>(signs + <usize>k, load<u8>(Q3_SIGNS + <usize>k));
        qs += 8;
        signs += 4;
      }
      maxScale = maxScale > scale ? maxScale : scale;
    }
    if (maxScale == 0) {
      if (isXxs) memory.fill(y, 0, bytes);
      continue;
    }
    const d: f32 = maxScale / <f32>31;
    store<u16>(y, <u16>toHalf(d * (isXxs ? <f32>1.0125 : <f32>1.033)));
    const id: f32 = <f32>1 / d;
    if (isXxs) {
      for (let ib = 0; ib < 8; ib++) {
        const p = y + 66 + <usize>(4 * ib);
        store<u32>(p, load<u32>(p) | (<u32>q3SubScale(id, q3At(Q3_SCALES, ib)) << 28));
      }
    } else {
      for (let ib = 0; ib < 8; ib += 2) {
        store<u8>(y + 106 + <usize>(ib >> 1), <u8>(q3SubScale(id, q3At(Q3_SCALES, ib)) | (q3SubScale(id, q3At(Q3_SCALES, ib + 1)) << 4)));
      }
    }
  }
  return 0;
}
