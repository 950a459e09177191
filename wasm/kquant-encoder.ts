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
 * IQ4_XS, IQ3_XXS and IQ3_S (quantize_iq4_*, quantize_iq3_*), with or without weights, and IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ1_S and IQ1_M (quantize_iq2_*, quantize_iq1_*) with them.
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

/**
 * WEIGHTS[0, n) = qw[j]·sqrtf(σ² + x[j]²): the importance weights of quantize_row_*_impl, four at a
 * time (each lane C's expression for its value; f32x4.sqrt rounds as sqrtf does).
 */
function importanceWeights(x: usize, qw: usize, sigma2: f32, n: i32): void {
  const s2 = f32x4.splat(sigma2);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const at = <usize>j << 2;
    const v = v128.load(x + at);
    v128.store(WEIGHTS + at, f32x4.mul(v128.load(qw + at), f32x4.sqrt(f32x4.add(s2, f32x4.mul(v, v)))));
  }
  for (; j < n; j++) {
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

// ---- IQ2_XXS, IQ2_XS, IQ2_S (quantize_row_iq2_{xxs,xs,s}_impl) and IQ1_S, IQ1_M
// (quantize_row_iq1_{s,m}_impl), with importance weights (the TypeScript twins: iq2-search.ts and
// iq1-search.ts). Their grid tables (iq2xs_init_impl's: entries as 8 levels 0…2, a map of the 43 692
// points of 8 levels of 2 bits, an entry ≥ 0 or −(list offset)−1, and the neighbour lists, each its
// length then its entries) are built by the TypeScript side and placed in memory by it, as IQ3's.
// Where a block is not finite (a NaN or an infinite value or weight), or ggml's search aborts, or
// a stored f16 scale would be NaN (whose bits JavaScript and WebAssembly need not agree on), the
// call returns 1 and the TypeScript quantizer runs the row instead: it writes or refuses it.
//
// SIMD (v128) only where the bytes stay C's: element-wise work (each lane one value's C expression:
// the levels at a trial scale, the per-level terms of a neighbour search or a fit) and sums that C
// keeps apart run side by side, one per lane, each in C's order (four neighbour entries' d2, four
// IQ1_S splits, IQ1_M's four shift choices, four IQ2 trial scales' Σ w·x·q and Σ w·q²); the
// best-so-far comparisons stay one by one in C's order. A single sum over the values (sumSquares,
// σ², the refit at the chosen scale) stays scalar: C adds its terms one after another, and f32
// addition in another order rounds differently.

const KMAP_SIZE: i32 = 43692;
const G_WAUX: usize = memory.data(32 * 4, 16);
const G_X: usize = memory.data(32 * 4, 16);
const G_L: usize = memory.data(32);
const G_LAUX: usize = memory.data(32);
const G_SIGNS: usize = memory.data(4);
const G_SCALES: usize = memory.data(16 * 4, 16);
const G_SHIFTS: usize = memory.data(16);
/** IQ2_XXS's 16 u32 / IQ2_XS's 32 u16 / IQ1_S's 8 u16 of indexes, signs and scales, put together before they are stored. */
const G_Q: usize = memory.data(64, 16);
const G_INDEX: usize = memory.data(4 * 4, 16);
/** x_p then x_m: the levels −1, 0, 1 shifted by +1/8 and by −1/8 (IQ1S_DELTA). */
const IQ1_SHIFTED: usize = memory.data<f32>([-0.875, 0.125, 1.125, -1.125, -0.125, 0.875]);
const IQ1_ORDER: usize = memory.data(32 * 4, 16);
const IQ1_ORDER_TMP: usize = memory.data(32 * 4, 16);
const IQ1_SUMX: usize = memory.data(33 * 4, 16);
const IQ1_SUMW: usize = memory.data(33 * 4, 16);
/** IQ1_S's Σqx and Σq² of four splits (x_p, then x_m), IQ1_M's of its four shift choices, lane by lane. */
const IQ1_LANES: usize = memory.data(16 * 4, 16);
const IQ1_TERM_X: usize = memory.data(4 * 3 * 16 * 4, 16);
const IQ1_TERM_Q: usize = memory.data(4 * 3 * 16 * 4, 16);
/** IQ1_M's masks[best_k]: the shift signs of the two groups of 8. */
const IQ1_MASKS: usize = memory.data<u8>([0x00, 0x80, 0x08, 0x88]);

let gLevels: usize = 0;
let gMap: usize = 0;
let gNb: usize = 0;
let gFailed: bool = false;
let gSkipped: bool = false;
let gSumQX: f32 = 0;
let gSumQ2: f32 = 0;
let gEntry0: i32 = 0;
let gEntry1: i32 = 0;

// @ts-ignore: decorator
@inline function fAt(p: usize, i: i32): f32 { return load<f32>(p + (<usize>i << 2)); }
// @ts-ignore: decorator
@inline function fPut(p: usize, i: i32, v: f32): void { store<f32>(p + (<usize>i << 2), v); }
// @ts-ignore: decorator
@inline function gLevel(e: i32, i: i32): i32 { return <i32>load<u8>(gLevels + <usize>(8 * e + i)); }
// @ts-ignore: decorator
@inline function gMapAt(u: i32): i32 { return load<i32>(gMap + (<usize>u << 2)); }
// @ts-ignore: decorator
@inline function gNbAt(o: i32): i32 { return <i32>load<u16>(gNb + (<usize>o << 1)); }

/** Whether the n values at x and the n weights at qw are all finite (the row then runs here). */
function finite(x: usize, qw: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    const v = fAt(x, i);
    if (v - v != 0) return false;
    if (qw != 0) {
      const w = fAt(qw, i);
      if (w - w != 0) return false;
    }
  }
  return true;
}

/** The odd levels 1, 3, 5 (2l + 1) of IQ2's grids. */
const IQ2_ODD: usize = memory.data<f32>([1, 3, 5]);
/**
 * gridBestNeighbour's terms: for each of the 8 values i, the four f32 lanes at G_TERMS + 16·i hold
 * w[i]·diff·diff for levels 0, 1, 2 (lane 3 is 0), diff = scale·values[l] − x[i].
 */
const G_TERMS: usize = memory.data(8 * 16, 16);

/**
 * iq2_find_best_neighbour and iq1_find_best_neighbour2: of the entries listed at neighbours[o], the
 * one nearest to the 8 values at x by Σ w·diff² (the first on ties), diff = scale·values[l] − x for
 * each level l of the entry (values: IQ2's 2l + 1, IQ1's shifted levels); its levels to dst. Sets
 * gFailed where none is nearer than FLT_MAX.
 *
 * Bit for bit C's arithmetic: each entry's d2 is C's sum, 0 then + w[i]·diff·diff for i = 0…7 in
 * order, and each of those terms is C's product; an entry's levels are 0, 1 or 2, so the term is one
 * of three per i, computed once here (f32x4 over the levels, each lane the C expression), then four
 * entries' sums run side by side, one per lane (each lane's additions in C's order). The comparison
 * with the best so far stays C's, entry by entry: a group of four is looked at one by one only where
 * some lane is below the best before it (where none is, C's loop would keep its best through all four).
 */
function gridBestNeighbour(o: i32, x: usize, w: usize, scale: f32, values: usize, dst: usize): i32 {
  const scaled = f32x4.mul(f32x4.splat(scale), f32x4.replace_lane(v128.load(values), 3, <f32>0));
  for (let i = 0; i < 8; i++) {
    const diff = f32x4.sub(scaled, f32x4.splat(fAt(x, i)));
    v128.store(G_TERMS + (<usize>i << 4), v128.and(f32x4.mul(f32x4.mul(f32x4.splat(fAt(w, i)), diff), diff), i32x4(-1, -1, -1, 0)));
  }
  const t0 = v128.load(G_TERMS), t1 = v128.load(G_TERMS, 16), t2 = v128.load(G_TERMS, 32), t3 = v128.load(G_TERMS, 48);
  const t4 = v128.load(G_TERMS, 64), t5 = v128.load(G_TERMS, 80), t6 = v128.load(G_TERMS, 96), t7 = v128.load(G_TERMS, 112);
  // Byte k of lane m's f32 term: 4·level + k.
  const byteOf = i8x16(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const n = gNbAt(o);
  let best: f32 = <f32>3.4028234663852886e38;
  let found = -1;
  let j = 1;
  for (; j + 3 <= n; j += 4) {
    const e0 = gNbAt(o + j), e1 = gNbAt(o + j + 1), e2 = gNbAt(o + j + 2), e3 = gNbAt(o + j + 3);
    // Levels ×4: entries 0 and 1 in a's bytes 0…15, entries 2 and 3 in b's.
    const a = i8x16.shl(v128.load64_lane(gLevels + <usize>(8 * e1), v128.load64_zero(gLevels + <usize>(8 * e0)), 1), 2);
    const b = i8x16.shl(v128.load64_lane(gLevels + <usize>(8 * e3), v128.load64_zero(gLevels + <usize>(8 * e2)), 1), 2);
    let d2 = f32x4.splat(0);
    d2 = f32x4.add(d2, i8x16.swizzle(t0, i8x16.add(i8x16.shuffle(a, b, 0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t1, i8x16.add(i8x16.shuffle(a, b, 1, 1, 1, 1, 9, 9, 9, 9, 17, 17, 17, 17, 25, 25, 25, 25), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t2, i8x16.add(i8x16.shuffle(a, b, 2, 2, 2, 2, 10, 10, 10, 10, 18, 18, 18, 18, 26, 26, 26, 26), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t3, i8x16.add(i8x16.shuffle(a, b, 3, 3, 3, 3, 11, 11, 11, 11, 19, 19, 19, 19, 27, 27, 27, 27), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t4, i8x16.add(i8x16.shuffle(a, b, 4, 4, 4, 4, 12, 12, 12, 12, 20, 20, 20, 20, 28, 28, 28, 28), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t5, i8x16.add(i8x16.shuffle(a, b, 5, 5, 5, 5, 13, 13, 13, 13, 21, 21, 21, 21, 29, 29, 29, 29), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t6, i8x16.add(i8x16.shuffle(a, b, 6, 6, 6, 6, 14, 14, 14, 14, 22, 22, 22, 22, 30, 30, 30, 30), byteOf)));
    d2 = f32x4.add(d2, i8x16.swizzle(t7, i8x16.add(i8x16.shuffle(a, b, 7, 7, 7, 7, 15, 15, 15, 15, 23, 23, 23, 23, 31, 31, 31, 31), byteOf)));
    if (!v128.any_true(f32x4.lt(d2, f32x4.splat(best)))) continue;
    const d0 = f32x4.extract_lane(d2, 0), d1 = f32x4.extract_lane(d2, 1), d2b = f32x4.extract_lane(d2, 2), d3 = f32x4.extract_lane(d2, 3);
    if (d0 < best) { best = d0; found = e0; }
    if (d1 < best) { best = d1; found = e1; }
    if (d2b < best) { best = d2b; found = e2; }
    if (d3 < best) { best = d3; found = e3; }
  }
  for (; j <= n; j++) {
    const e = gNbAt(o + j);
    const lv = gLevels + <usize>(8 * e);
    let d2: f32 = 0;
    for (let i = 0; i < 8; i++) d2 += load<f32>(G_TERMS + (<usize>i << 4) + (<usize>load<u8>(lv + <usize>i) << 2));
    if (d2 < best) {
      best = d2;
      found = e;
    }
  }
  if (found < 0) {
    gFailed = true;
    return 0;
  }
  memory.copy(dst, gLevels + <usize>(8 * found), 8);
  return found;
}

/** IQ2's search: the entry nearest to G_X[at…at+8) at `scale` by Σ waux·diff², its levels to dst + at. */
// @ts-ignore: decorator
@inline function iq2BestNeighbour(o: i32, at: i32, scale: f32, dst: usize): i32 {
  return gridBestNeighbour(o, G_X + (<usize>at << 2), G_WAUX + (<usize>at << 2), scale, IQ2_ODD, dst + <usize>at);
}

/**
 * iq2Fit's terms, per value i of G_X: at G_FIT_X + 16·i, (w·x)·q for q = 1, 3, 5 (the levels 0, 1, 2;
 * lane 3 is 0), at G_FIT_Q + 16·i, (w·q)·q: C's products (w·xval[i]·q, w·q·q), each lane its C
 * expression, computed once per group of values (f32x4) instead of once per trial scale.
 */
const G_FIT_X: usize = memory.data(32 * 16, 16);
const G_FIT_Q: usize = memory.data(32 * 16, 16);

/** G_FIT_X and G_FIT_Q of the n values of G_X with their weights WEIGHTS (fixed through a group's trial scales). */
function iq2FitTerms(n: i32): void {
  const q = f32x4(1, 3, 5, 0);
  for (let i = 0; i < n; i++) {
    const w: f32 = fAt(WEIGHTS, i);
    const wx: f32 = w * fAt(G_X, i);
    v128.store(G_FIT_X + (<usize>i << 4), f32x4.mul(f32x4.splat(wx), q));
    v128.store(G_FIT_Q + (<usize>i << 4), f32x4.mul(f32x4.mul(f32x4.splat(w), q), q));
  }
}

/**
 * Σ w·x·q and Σ w·q² (q = 2l + 1, l the signed bytes at lv, 0…2) over n values, C's order: each
 * term C's product (G_FIT_X / G_FIT_Q, from iq2FitTerms), the sums in index order. One chain of
 * float additions each, whose order C fixes: scalar. (The final refit at the chosen scale; the
 * trial scales' fits run four at a time in iq2FitTrials.)
 */
function iq2Fit(lv: usize, n: i32): void {
  let sumqx: f32 = 0;
  let sumq2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const t = (<usize>i << 4) + (<usize>load<u8>(lv + <usize>i) << 2);
    sumqx += load<f32>(G_FIT_X + t);
    sumq2 += load<f32>(G_FIT_Q + t);
  }
  gSumQX = sumqx;
  gSumQ2 = sumq2;
}

/**
 * The levels of each trial scale of an IQ2 search (trial t's n levels at G_TRIAL_L + t·n; up to 16
 * trials of 32 or 20 of 16, the last group of four padded with whatever levels 0…2 are there), the
 * trials' on-grid flags (IQ2_XS / IQ2_S: two per trial), and their Σ w·x·q and Σ w·q² (iq2FitTrials).
 */
const G_TRIAL_L: usize = memory.data(16 * 32, 16);
const G_TRIAL_ON: usize = memory.data(20 * 2);
const G_TRIAL_SUMQX: usize = memory.data(20 * 4, 16);
const G_TRIAL_SUMQ2: usize = memory.data(20 * 4, 16);
/** The four trials' level bytes transposed by iq2FitFour. */
const G_TRANSPOSED: usize = memory.data(64, 16);

/**
 * iq2Fit of the trials t0…t0+3 side by side, one trial per lane, 16 values of each from value `at`,
 * added to the lanes' running sums (sx, sq) and returned through G_TRIAL_SUMQX/Q2 + 4·t0. Each lane
 * adds its trial's terms in C's order, value by value, each term the one iq2Fit loads (the f32x4
 * add rounds each lane as the scalar add does), so each lane's sums are iq2Fit's, bit for bit.
 * The four trials' 16 level bytes are transposed (values 4g…4g+3 of trials 0…3 in one vector), then
 * each value's four levels pick its terms by swizzle, as gridBestNeighbour picks its per-level terms.
 */
// @ts-ignore: decorator
@inline function iq2FitFour(lv: usize, n: i32, at: i32, t0: i32): void {
  const stride = <usize>n;
  const base = lv + <usize>t0 * stride + <usize>at;
  const a = v128.load(base), b = v128.load(base + stride), c = v128.load(base + 2 * stride), d = v128.load(base + 3 * stride);
  const abLo = i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const abHi = i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const cdLo = i8x16.shuffle(c, d, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const cdHi = i8x16.shuffle(c, d, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  // Byte 4j + m of group g: value 4g + j's level in trial m, times 4 (its term's byte offset in a row of G_FIT_*).
  store<v128>(G_TRANSPOSED, i8x16.shl(i8x16.shuffle(abLo, cdLo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), 2));
  store<v128>(G_TRANSPOSED, i8x16.shl(i8x16.shuffle(abLo, cdLo, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 2), 16);
  store<v128>(G_TRANSPOSED, i8x16.shl(i8x16.shuffle(abHi, cdHi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), 2), 32);
  store<v128>(G_TRANSPOSED, i8x16.shl(i8x16.shuffle(abHi, cdHi, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 2), 48);
  const byteOf = i8x16(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const out = <usize>t0 << 2;
  let sx = v128.load(G_TRIAL_SUMQX + out);
  let sq = v128.load(G_TRIAL_SUMQ2 + out);
  for (let g = 0; g < 4; g++) {
    const v = v128.load(G_TRANSPOSED + (<usize>g << 4));
    const row = (<usize>(at + 4 * g)) << 4;
    let idx = i8x16.add(i8x16.shuffle(v, v, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), byteOf);
    sx = f32x4.add(sx, i8x16.swizzle(v128.load(G_FIT_X + row), idx));
    sq = f32x4.add(sq, i8x16.swizzle(v128.load(G_FIT_Q + row), idx));
    idx = i8x16.add(i8x16.shuffle(v, v, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7), byteOf);
    sx = f32x4.add(sx, i8x16.swizzle(v128.load(G_FIT_X + row, 16), idx));
    sq = f32x4.add(sq, i8x16.swizzle(v128.load(G_FIT_Q + row, 16), idx));
    idx = i8x16.add(i8x16.shuffle(v, v, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11), byteOf);
    sx = f32x4.add(sx, i8x16.swizzle(v128.load(G_FIT_X + row, 32), idx));
    sq = f32x4.add(sq, i8x16.swizzle(v128.load(G_FIT_Q + row, 32), idx));
    idx = i8x16.add(i8x16.shuffle(v, v, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15), byteOf);
    sx = f32x4.add(sx, i8x16.swizzle(v128.load(G_FIT_X + row, 48), idx));
    sq = f32x4.add(sq, i8x16.swizzle(v128.load(G_FIT_Q + row, 48), idx));
  }
  v128.store(G_TRIAL_SUMQX + out, sx);
  v128.store(G_TRIAL_SUMQ2 + out, sq);
}

/**
 * iq2Fit of each of `trials` trial scales (levels at G_TRIAL_L, n = 16 or 32 each) to
 * G_TRIAL_SUMQX/Q2, four trials at a time (lanes of a padded last group are ignored).
 */
function iq2FitTrials(n: i32, trials: i32): void {
  for (let t0 = 0; t0 < trials; t0 += 4) {
    v128.store(G_TRIAL_SUMQX + (<usize>t0 << 2), f32x4.splat(0));
    v128.store(G_TRIAL_SUMQ2 + (<usize>t0 << 2), f32x4.splat(0));
    for (let at = 0; at < n; at += 16) iq2FitFour(G_TRIAL_L, n, at, t0);
  }
}

/** Four of the levels 0…2 C's iq2 searches pick at 1/id: max(0, min(2, nearest_int(0.5·(id·x − 1)))), lane by lane as C computes each. */
// @ts-ignore: decorator
@inline function iq2Levels4(id: v128, x: v128): v128 {
  const f = f32x4.mul(f32x4.splat(0.5), f32x4.sub(f32x4.mul(id, x), f32x4.splat(1)));
  const l = i32x4.sub(v128.and(f32x4.add(f, f32x4.splat(12582912.0)), i32x4.splat(0x007fffff)), i32x4.splat(0x00400000));
  return i32x4.min_s(i32x4.max_s(l, i32x4.splat(0)), i32x4.splat(2));
}

/** Levels 0…2 of G_X[at…at+8) at 1/id packed 2 bits each; written to `into` too where it is not 0. */
function iq2Packed(id: f32, at: i32, into: usize): i32 {
  const vid = f32x4.splat(id);
  const p = G_X + (<usize>at << 2);
  const lo = iq2Levels4(vid, v128.load(p));
  const hi = iq2Levels4(vid, v128.load(p, 16));
  if (into != 0) v128.store64_lane(into + <usize>at, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(lo, hi), i32x4.splat(0)), 0);
  let u = i32x4.add(i32x4.mul(lo, i32x4(1, 4, 16, 64)), i32x4.mul(hi, i32x4(256, 1024, 4096, 16384)));
  u = i32x4.add(u, i32x4.shuffle(u, u, 2, 3, 0, 1));
  u = i32x4.add(u, i32x4.shuffle(u, u, 1, 0, 3, 2));
  return i32x4.extract_lane(u, 0);
}

/** The key of the 8 signed levels at lv + at, or −1 where it is off the map (the TypeScript twin then decides). */
function iq2Key(lv: usize, at: i32): i32 {
  let u = 0;
  for (let i = 0; i < 8; i++) u |= <i32>load<i8>(lv + <usize>(at + i)) << (2 * i);
  return u >= 0 && u < KMAP_SIZE ? u : -1;
}

/**
 * GROUP_MAX_EPS_* checks, the C-order max of the n magnitudes at G_X. (A max of finite values is
 * the same in any order, so lanes could take it; once per 16 or 32 values it is not worth it.)
 */
function gMax(n: i32): f32 {
  let max = fAt(G_X, 0);
  for (let i = 1; i < n; i++) {
    const v = fAt(G_X, i);
    max = max > v ? max : v;
  }
  return max;
}

/** The signs of 8 values at x + at (7 bits; an odd count of negatives gives up the sign of the value of least w·x²), |x| to G_X. */
function iq2SignsOfEight(x: usize, at: i32): u8 {
  let nflip = 0;
  let s = 0;
  for (let i = 0; i < 8; i++) {
    const v = fAt(x, at + i);
    if (v >= 0) fPut(G_X, at + i, v);
    else {
      fPut(G_X, at + i, -v);
      nflip++;
      s |= 1 << i;
    }
  }
  if ((nflip & 1) != 0) {
    let imin = 0;
    const x0 = fAt(x, at);
    let min: f32 = fAt(WEIGHTS, at) * x0 * x0;
    for (let i = 1; i < 8; i++) {
      const xi = fAt(x, at + i);
      const ax: f32 = fAt(WEIGHTS, at + i) * xi * xi;
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    fPut(G_X, at + imin, -fAt(G_X, at + imin));
    s ^= 1 << imin;
  }
  return <u8>(s & 127);
}

/** WEIGHTS (qw·sqrtf(σ² + x²), or σ²/4 + x² where qw is 0: IQ2_S with quant_weights NULL) and G_WAUX (their square roots) of the n values at x. */
function iq2Weights(x: usize, qw: usize, sigma2: f32, n: i32): void {
  if (qw != 0) importanceWeights(x, qw, sigma2, n);
  else {
    const quarter = f32x4.splat(<f32>0.25 * sigma2);
    for (let i = 0; i < n; i += 4) {
      const v = v128.load(x + (<usize>i << 2));
      v128.store(WEIGHTS + (<usize>i << 2), f32x4.add(quarter, f32x4.mul(v, v)));
    }
  }
  // n is 16 or 32: four at a time, each lane C's sqrtf.
  for (let i = 0; i < n; i += 4) v128.store(G_WAUX + (<usize>i << 2), f32x4.sqrt(v128.load(WEIGHTS + (<usize>i << 2))));
}

/** quantize_row_iq2_xxs_impl's 66-byte block of the 256 values at x, weights at qw; false where it aborts. */
function iq2XxsBlock(x: usize, qw: usize, y: usize): bool {
  memory.fill(G_Q, 0, 64);
  let maxScale: f32 = 0;
  const sigma2: f32 = sumSquares(x, 256) / <f32>256;
  for (let ib = 0; ib < 8; ib++) {
    const xb = x + (<usize>(32 * ib) << 2);
    iq2Weights(xb, qw + (<usize>(32 * ib) << 2), sigma2, 32);
    for (let k = 0; k < 4; k++) store<u8>(G_SIGNS + <usize>k, iq2SignsOfEight(xb, 8 * k));
    if (gMax(32) < <f32>1e-15) {
      fPut(G_SCALES, ib, 0);
      continue;
    }
    let scale = makeQpQuants(32, 4, G_X, G_L, WEIGHTS);
    const effMax: f32 = scale * <f32>3;
    if (effMax <= 0) {
      fPut(G_SCALES, ib, 0);
      continue;
    }
    iq2FitTerms(32);
    // The 13 trial scales' levels first (none depends on the best so far; a failure at any of them
    // is ggml's abort, which C reaches too), their fits four at a time, then C's comparisons in order.
    for (let t = 0; t < 13; t++) {
      const id: f32 = (<f32>5 + <f32>(t - 6) * <f32>0.1) / effMax;
      const thisScale: f32 = <f32>1 / id;
      const lv = G_TRIAL_L + <usize>(32 * t);
      for (let k = 0; k < 4; k++) {
        const m = gMapAt(iq2Packed(id, 8 * k, lv));
        if (m < 0) {
          iq2BestNeighbour(-m - 1, 8 * k, thisScale, lv);
          if (gFailed) return false;
        }
      }
    }
    iq2FitTrials(32, 13);
    let best: f32 = 0;
    for (let t = 0; t < 13; t++) {
      const sumqx = fAt(G_TRIAL_SUMQX, t);
      const sumq2 = fAt(G_TRIAL_SUMQ2, t);
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        scale = sumqx / sumq2;
        best = scale * sumqx;
        memory.copy(G_L, G_TRIAL_L + <usize>(32 * t), 32);
      }
    }
    if (scale > 0) {
      const id: f32 = <f32>1 / scale;
      for (let k = 0; k < 4; k++) {
        let e = gMapAt(iq2Packed(id, 8 * k, 0));
        if (e < 0) {
          e = iq2BestNeighbour(-e - 1, 8 * k, scale, G_L);
          if (gFailed) return false;
        }
        for (let i = 0; i < 8; i++) store<u8>(G_L + <usize>(8 * k + i), <u8>gLevel(e, i));
      }
      iq2Fit(G_L, 32);
      if (gSumQ2 > 0) scale = gSumQX / gSumQ2;
    }
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < 4; k++) store<u8>(G_SIGNS + <usize>k, <u8>(~<i32>load<u8>(G_SIGNS + <usize>k) & 127));
    }
    for (let k = 0; k < 4; k++) {
      const u = iq2Key(G_L, 8 * k);
      if (u < 0) return false;
      const e = gMapAt(u);
      if (e < 0) return false;
      const p0 = G_Q + (<usize>(2 * ib) << 2);
      store<u32>(p0, load<u32>(p0) | (<u32>e << (8 * k)));
      store<u32>(p0 + 4, load<u32>(p0 + 4) | (<u32>load<u8>(G_SIGNS + <usize>k) << (7 * k)));
    }
    if (!(scale >= 0)) return false;
    fPut(G_SCALES, ib, scale);
    maxScale = maxScale > scale ? maxScale : scale;
  }
  memory.fill(y, 0, 66);
  if (maxScale == 0) return true;
  const d: f32 = maxScale / <f32>31;
  store<u16>(y, <u16>toHalf(d));
  const id: f32 = <f32>1 / d;
  for (let ib = 0; ib < 8; ib++) {
    const l = cmax(0, cmin(15, nearestInt(<f32>0.5 * (id * fAt(G_SCALES, ib) - <f32>1))));
    const p = G_Q + (<usize>(2 * ib + 1) << 2);
    store<u32>(p, load<u32>(p) | (<u32>l << 28));
  }
  memory.copy(y + 2, G_Q, 64);
  return true;
}

/**
 * The search of quantize_row_iq2_xs_impl and quantize_row_iq2_s_impl over 16 values (G_X, the
 * magnitudes; G_WAUX, √weights): 19 trial scales from max/5, groups of 8 off the grid refit at the
 * best one's scale, a negative scale flipped with the signs (masked by signMask). Leaves the
 * entries in gEntry0/gEntry1; gSkipped where the largest value is below eps, gFailed where ggml aborts.
 */
function iq2SearchSixteen(eps: f32, signMask: i32): f32 {
  gSkipped = false;
  const max = gMax(16);
  memory.fill(G_L, 0, 16);
  if (max < eps) {
    gSkipped = true;
    return 0;
  }
  iq2FitTerms(16);
  let best: f32 = 0;
  let scale: f32 = max / <f32>5;
  let on0 = true;
  let on1 = true;
  // The 19 trial scales' levels first (as in iq2XxsBlock), their fits four at a time, then C's comparisons in order.
  for (let t = 0; t < 19; t++) {
    const id: f32 = (<f32>5 + <f32>(t - 9) * <f32>0.1) / max;
    const thisScale: f32 = <f32>1 / id;
    const lv = G_TRIAL_L + <usize>(16 * t);
    const m0 = gMapAt(iq2Packed(id, 0, lv));
    if (m0 < 0) {
      iq2BestNeighbour(-m0 - 1, 0, thisScale, lv);
      if (gFailed) return 0;
    }
    const m1 = gMapAt(iq2Packed(id, 8, lv));
    if (m1 < 0) {
      iq2BestNeighbour(-m1 - 1, 8, thisScale, lv);
      if (gFailed) return 0;
    }
    store<u8>(G_TRIAL_ON + <usize>(2 * t), <u8>(m0 >= 0));
    store<u8>(G_TRIAL_ON + <usize>(2 * t + 1), <u8>(m1 >= 0));
  }
  iq2FitTrials(16, 19);
  for (let t = 0; t < 19; t++) {
    const sumqx = fAt(G_TRIAL_SUMQX, t);
    const sumq2 = fAt(G_TRIAL_SUMQ2, t);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      memory.copy(G_L, G_TRIAL_L + <usize>(16 * t), 16);
      on0 = load<u8>(G_TRIAL_ON + <usize>(2 * t)) != 0;
      on1 = load<u8>(G_TRIAL_ON + <usize>(2 * t + 1)) != 0;
    }
  }
  if ((!on0 || !on1) && scale > 0) {
    const id: f32 = <f32>1 / scale;
    for (let k = 0; k < 2; k++) {
      if (k == 0 ? on0 : on1) continue;
      const m = gMapAt(iq2Packed(id, 8 * k, G_L));
      if (m < 0) {
        iq2BestNeighbour(-m - 1, 8 * k, scale, G_L);
        if (gFailed) return 0;
      }
    }
    iq2Fit(G_L, 16);
    if (gSumQ2 > 0) scale = gSumQX / gSumQ2;
  }
  if (scale < 0) {
    scale = -scale;
    for (let k = 0; k < 2; k++) store<u8>(G_SIGNS + <usize>k, <u8>(~<i32>load<u8>(G_SIGNS + <usize>k) & signMask));
  }
  const u0 = iq2Key(G_L, 0);
  const u1 = iq2Key(G_L, 8);
  gEntry0 = u0 < 0 ? -1 : gMapAt(u0);
  gEntry1 = u1 < 0 ? -1 : gMapAt(u1);
  if (gEntry0 < 0 || gEntry1 < 0 || !(scale >= 0)) {
    gFailed = true;
    return 0;
  }
  return scale;
}

/** quantize_row_iq2_xs_impl's 74-byte block; false where it aborts. */
function iq2XsBlock(x: usize, qw: usize, y: usize): bool {
  memory.fill(G_Q, 0, 64);
  let maxScale: f32 = 0;
  const sigma2: f32 = sumSquares(x, 256) / <f32>256;
  for (let ib = 0; ib < 16; ib++) {
    const xb = x + (<usize>(16 * ib) << 2);
    iq2Weights(xb, qw + (<usize>(16 * ib) << 2), sigma2, 16);
    store<u8>(G_SIGNS, iq2SignsOfEight(xb, 0));
    store<u8>(G_SIGNS + 1, iq2SignsOfEight(xb, 8));
    const scale = iq2SearchSixteen(<f32>1e-15, 127);
    if (gFailed) return false;
    if (gSkipped) {
      fPut(G_SCALES, ib, 0);
      continue;
    }
    store<u16>(G_Q + (<usize>(2 * ib) << 1), <u16>(gEntry0 | (<i32>load<u8>(G_SIGNS) << 9)));
    store<u16>(G_Q + (<usize>(2 * ib + 1) << 1), <u16>(gEntry1 | (<i32>load<u8>(G_SIGNS + 1) << 9)));
    fPut(G_SCALES, ib, scale);
    maxScale = maxScale > scale ? maxScale : scale;
  }
  memory.fill(y, 0, 74);
  if (maxScale == 0) return true;
  const d: f32 = maxScale / <f32>31;
  store<u16>(y, <u16>toHalf(d));
  const id: f32 = <f32>1 / d;
  for (let ib = 0; ib < 16; ib++) {
    const l = cmax(0, cmin(15, nearestInt(<f32>0.5 * (id * fAt(G_SCALES, ib) - <f32>1))));
    const p = y + 66 + <usize>(ib >> 1);
    store<u8>(p, load<u8>(p) | <u8>((ib & 1) == 0 ? l : l << 4));
  }
  memory.copy(y + 2, G_Q, 64);
  return true;
}

/** quantize_row_iq2_s_impl's 82-byte block (σ² twice the mean square, 8 signs stored, d times 0.9875); false where it aborts. */
function iq2SBlock(x: usize, qw: usize, y: usize): bool {
  memory.fill(y, 0, 82);
  let maxScale: f32 = 0;
  const sigma2: f32 = <f32>2 * sumSquares(x, 256) / <f32>256;
  for (let ib = 0; ib < 16; ib++) {
    const xb = x + (<usize>(16 * ib) << 2);
    iq2Weights(xb, qw != 0 ? qw + (<usize>(16 * ib) << 2) : 0, sigma2, 16);
    for (let k = 0; k < 2; k++) {
      let s = 0;
      for (let i = 0; i < 8; i++) {
        const v = fAt(xb, 8 * k + i);
        if (v >= 0) fPut(G_X, 8 * k + i, v);
        else {
          fPut(G_X, 8 * k + i, -v);
          s |= 1 << i;
        }
      }
      store<u8>(G_SIGNS + <usize>k, <u8>s);
    }
    const scale = iq2SearchSixteen(<f32>1e-8, 255);
    if (gFailed) return false;
    if (gSkipped) {
      fPut(G_SCALES, ib, 0);
      continue;
    }
    for (let k = 0; k < 2; k++) {
      const i8 = 2 * ib + k;
      const e = k == 0 ? gEntry0 : gEntry1;
      store<u8>(y + 2 + <usize>i8, <u8>(e & 255));
      const h = y + 66 + <usize>(i8 >> 2);
      store<u8>(h, load<u8>(h) | <u8>((e >> 8) << (2 * (i8 & 3))));
      store<u8>(y + 34 + <usize>i8, load<u8>(G_SIGNS + <usize>k));
    }
    fPut(G_SCALES, ib, scale);
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (maxScale == 0) return true;
  const d: f32 = maxScale / <f32>31;
  store<u16>(y, <u16>toHalf(d * <f32>0.9875));
  const id: f32 = <f32>1 / d;
  for (let ib = 0; ib < 16; ib++) {
    const l = cmax(0, cmin(15, nearestInt(<f32>0.5 * (id * fAt(G_SCALES, ib) - <f32>1))));
    const p = y + 74 + <usize>(ib >> 1);
    store<u8>(p, load<u8>(p) | <u8>((ib & 1) == 0 ? l : l << 4));
  }
  return true;
}

/**
 * quantize_iq2_xxs (kind 0: 66-byte blocks), quantize_iq2_xs (1: 74) or quantize_iq2_s (2: 82):
 * n blocks of 256 values with importance weights (one per value) at qw (IQ2_S also without, qw 0:
 * quant_weights NULL, weights σ²/4 + x²). Returns 1 where the TypeScript quantizer must run the
 * values instead (see above), else 0.
 */
export function encodeIq2(src: usize, qw: usize, dst: usize, nBlocks: i32, kind: i32, levels: usize, map: usize, neighbours: usize): i32 {
  gLevels = levels;
  gMap = map;
  gNb = neighbours;
  gFailed = false;
  const bytes: usize = kind == 0 ? 66 : kind == 1 ? 74 : 82;
  if (!finite(src, qw, 256 * nBlocks)) return 1;
  for (let b = 0; b < nBlocks; b++) {
    const at = <usize>(256 * b) << 2;
    const y = dst + <usize>b * bytes;
    const ok = kind == 0 ? iq2XxsBlock(src + at, qw + at, y) : kind == 1 ? iq2XsBlock(src + at, qw + at, y) : iq2SBlock(src + at, qw != 0 ? qw + at : 0, y);
    if (!ok || gFailed) return 1;
  }
  return 0;
}

/** glibc's qsort of the n values at x by value (top-down merge sort, the first half on ties), their indexes left in IQ1_ORDER[lo…lo+n). */
function iq1MergeSort(x: usize, lo: i32, n: i32): void {
  if (n <= 1) return;
  let n1 = n >> 1;
  let n2 = n - n1;
  iq1MergeSort(x, lo, n1);
  iq1MergeSort(x, lo + n1, n2);
  let i = lo;
  let j = lo + n1;
  let k = 0;
  while (n1 > 0 && n2 > 0) {
    const oi = load<i32>(IQ1_ORDER + (<usize>i << 2));
    const oj = load<i32>(IQ1_ORDER + (<usize>j << 2));
    if (!(fAt(x, oi) > fAt(x, oj))) {
      store<i32>(IQ1_ORDER_TMP + (<usize>k << 2), oi);
      i++;
      n1--;
    } else {
      store<i32>(IQ1_ORDER_TMP + (<usize>k << 2), oj);
      j++;
      n2--;
    }
    k++;
  }
  for (; n1 > 0; n1--) {
    store<i32>(IQ1_ORDER_TMP + (<usize>k << 2), load<i32>(IQ1_ORDER + (<usize>i << 2)));
    k++;
    i++;
  }
  memory.copy(IQ1_ORDER + (<usize>lo << 2), IQ1_ORDER_TMP, <usize>k << 2);
}

// @ts-ignore: decorator
@inline function iq1Order(j: i32): i32 { return load<i32>(IQ1_ORDER + (<usize>j << 2)); }

/** The shifted levels (x_p or x_m) group k (0, 1) of IQ1_M's 16 takes under shift choice k4; IQ1_S passes k4 −1 (x_p) or −2 (x_m). */
function iq1Levels(k4: i32, k: i32): usize {
  const minus = k4 == -2 || (k4 >= 0 && (k == 0 ? k4 >= 2 : (k4 & 1) == 1));
  return minus ? IQ1_SHIFTED + 12 : IQ1_SHIFTED;
}

/** The split's groups of 8 in G_L snapped to grid entries (G_INDEX) and the scale refit where any moved (snapGroups). */
function iq1SnapGroups(x: usize, groups: i32, scale: f32, k4: i32): f32 {
  let allOnGrid = true;
  for (let k = 0; k < groups; k++) {
    let u = 0;
    for (let j = 0; j < 8; j++) u |= <i32>load<u8>(G_L + <usize>(8 * k + j)) << (2 * j);
    let e = gMapAt(u);
    if (e < 0) {
      allOnGrid = false;
      e = gridBestNeighbour(-e - 1, x + (<usize>(8 * k) << 2), WEIGHTS + (<usize>(8 * k) << 2), scale, iq1Levels(k4, k), G_L + <usize>(8 * k));
      if (gFailed) return 0;
    }
    store<i32>(G_INDEX + (<usize>k << 2), e);
  }
  if (allOnGrid) return scale;
  // One Σ over the group's values in C's order: scalar (SIMD would add them in another order).
  let sumqx: f32 = 0;
  let sumq2: f32 = 0;
  for (let k = 0; k < groups; k++) {
    const xx = iq1Levels(k4, k);
    const e = load<i32>(G_INDEX + (<usize>k << 2));
    for (let j = 0; j < 8; j++) {
      const w = fAt(WEIGHTS, 8 * k + j);
      const q = fAt(xx, gLevel(e, j));
      sumqx += w * q * fAt(x, 8 * k + j);
      sumq2 += w * q * q;
    }
  }
  return sumqx > 0 && sumq2 > 0 ? sumqx / sumq2 : scale;
}

/** The largest |x| of n values, C's order. */
function iq1Max(x: usize, n: i32): f32 {
  let max = Mathf.abs(fAt(x, 0));
  for (let i = 1; i < n; i++) {
    const v = Mathf.abs(fAt(x, i));
    max = max > v ? max : v;
  }
  return max;
}

/** The sorted order of n values and G_L from the best split (levels 0 before i1, 1 before i2, 2 after). */
function iq1Split(n: i32, i1: i32, i2: i32): void {
  for (let j = 0; j < n; j++) store<u8>(G_L + <usize>iq1Order(j), <u8>(j < i1 ? 0 : j < i2 ? 1 : 2));
}

function iq1Sort(x: usize, n: i32): void {
  for (let j = 0; j < n; j++) store<i32>(IQ1_ORDER + (<usize>j << 2), j);
  iq1MergeSort(x, 0, n);
}

/** quantize_row_iq1_s_impl's 50-byte block; false where it aborts. */
function iq1SBlock(x: usize, qw: usize, y: usize): bool {
  memory.fill(y, 0, 50);
  memory.fill(G_Q, 0, 16);
  let maxScale: f32 = 0;
  const sigma2: f32 = <f32>2 * sumSquares(x, 256) / <f32>256;
  for (let ib = 0; ib < 8; ib++) {
    const xb = x + (<usize>(32 * ib) << 2);
    importanceWeights(xb, qw + (<usize>(32 * ib) << 2), sigma2, 32);
    const max = iq1Max(xb, 32);
    if (max < <f32>1e-12) {
      fPut(G_SCALES, ib, 0);
      store<i8>(G_SHIFTS + <usize>ib, 1);
      continue;
    }
    iq1Sort(xb, 32);
    fPut(IQ1_SUMX, 0, 0);
    fPut(IQ1_SUMW, 0, 0);
    // Running sums (each the one before plus a term): a chain C fixes, so scalar.
    for (let j = 0; j < 32; j++) {
      const i = iq1Order(j);
      const w = fAt(WEIGHTS, i);
      fPut(IQ1_SUMX, j + 1, fAt(IQ1_SUMX, j) + w * fAt(xb, i));
      fPut(IQ1_SUMW, j + 1, fAt(IQ1_SUMW, j) + w);
    }
    let best: f32 = <f32>-3.4028234663852886e38;
    let scale: f32 = max;
    let besti1 = -1;
    let besti2 = -1;
    let shift = 0;
    const sx0 = fAt(IQ1_SUMX, 0);
    const sw0 = fAt(IQ1_SUMW, 0);
    const sx32 = fAt(IQ1_SUMX, 32);
    const sw32 = fAt(IQ1_SUMW, 32);
    const p0 = fAt(IQ1_SHIFTED, 0), p1 = fAt(IQ1_SHIFTED, 1), p2 = fAt(IQ1_SHIFTED, 2);
    const m0 = fAt(IQ1_SHIFTED, 3), m1 = fAt(IQ1_SHIFTED, 4), m2 = fAt(IQ1_SHIFTED, 5);
    for (let i1 = 0; i1 <= 32; i1++) {
      const a: f32 = fAt(IQ1_SUMX, i1) - sx0;
      const wa: f32 = fAt(IQ1_SUMW, i1) - sw0;
      const sxi1 = fAt(IQ1_SUMX, i1);
      const swi1 = fAt(IQ1_SUMW, i1);
      // Four i2 side by side, a lane each: every lane's sums are C's expressions, term by term in
      // C's order; the four splits are then compared with the best one by one, in C's order (i2,
      // then x_p before x_m), where any of them beats the best before them (where none does, C keeps its best through all four).
      let i2 = i1;
      for (; i2 + 3 <= 32; i2 += 4) {
        const sx = v128.load(IQ1_SUMX + (<usize>i2 << 2));
        const sw = v128.load(IQ1_SUMW + (<usize>i2 << 2));
        const bx = f32x4.sub(sx, f32x4.splat(sxi1));
        const c = f32x4.sub(f32x4.splat(sx32), sx);
        const wb = f32x4.sub(sw, f32x4.splat(swi1));
        const wc = f32x4.sub(f32x4.splat(sw32), sw);
        const qxP = f32x4.add(f32x4.add(f32x4.splat(a * p0), f32x4.mul(bx, f32x4.splat(p1))), f32x4.mul(c, f32x4.splat(p2)));
        const q2P = f32x4.add(f32x4.add(f32x4.splat(wa * p0 * p0), f32x4.mul(f32x4.mul(wb, f32x4.splat(p1)), f32x4.splat(p1))), f32x4.mul(f32x4.mul(wc, f32x4.splat(p2)), f32x4.splat(p2)));
        const qxM = f32x4.add(f32x4.add(f32x4.splat(a * m0), f32x4.mul(bx, f32x4.splat(m1))), f32x4.mul(c, f32x4.splat(m2)));
        const q2M = f32x4.add(f32x4.add(f32x4.splat(wa * m0 * m0), f32x4.mul(f32x4.mul(wb, f32x4.splat(m1)), f32x4.splat(m1))), f32x4.mul(f32x4.mul(wc, f32x4.splat(m2)), f32x4.splat(m2)));
        const vbest = f32x4.splat(best);
        const zero = f32x4.splat(0);
        const winP = v128.and(f32x4.gt(q2P, zero), f32x4.gt(f32x4.mul(qxP, qxP), f32x4.mul(vbest, q2P)));
        const winM = v128.and(f32x4.gt(q2M, zero), f32x4.gt(f32x4.mul(qxM, qxM), f32x4.mul(vbest, q2M)));
        if (!v128.any_true(v128.or(winP, winM))) continue;
        store<v128>(IQ1_LANES, qxP);
        store<v128>(IQ1_LANES, q2P, 16);
        store<v128>(IQ1_LANES, qxM, 32);
        store<v128>(IQ1_LANES, q2M, 48);
        for (let lane = 0; lane < 4; lane++) {
          for (let s = 1; s >= -1; s -= 2) {
            const sumqx = fAt(IQ1_LANES, (s == 1 ? 0 : 8) + lane);
            const sumq2 = fAt(IQ1_LANES, (s == 1 ? 4 : 12) + lane);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
              scale = sumqx / sumq2;
              best = scale * sumqx;
              besti1 = i1;
              besti2 = i2 + lane;
              shift = s;
            }
          }
        }
      }
      for (; i2 <= 32; i2++) {
        const bx: f32 = fAt(IQ1_SUMX, i2) - sxi1;
        const c: f32 = sx32 - fAt(IQ1_SUMX, i2);
        const wb: f32 = fAt(IQ1_SUMW, i2) - swi1;
        const wc: f32 = sw32 - fAt(IQ1_SUMW, i2);
        // Shifted up (x_p, shift 1), then down (x_m, −1), as C tries them.
        for (let s = 1; s >= -1; s -= 2) {
          const xx = s == 1 ? IQ1_SHIFTED : IQ1_SHIFTED + 12;
          const q0 = fAt(xx, 0);
          const q1 = fAt(xx, 1);
          const q2 = fAt(xx, 2);
          const sumqx: f32 = a * q0 + bx * q1 + c * q2;
          const sumq2: f32 = wa * q0 * q0 + wb * q1 * q1 + wc * q2 * q2;
          if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            besti1 = i1;
            besti2 = i2;
            shift = s;
          }
        }
      }
    }
    if (besti1 < 0 || besti2 < 0 || shift == 0) {
      fPut(G_SCALES, ib, 0);
      store<i8>(G_SHIFTS + <usize>ib, 1);
      continue;
    }
    iq1Split(32, besti1, besti2);
    if (scale < 0) {
      for (let j = 0; j < 32; j++) store<u8>(G_L + <usize>j, <u8>(2 - <i32>load<u8>(G_L + <usize>j)));
      scale = -scale;
      shift = -shift;
    }
    scale = iq1SnapGroups(xb, 4, scale, shift == 1 ? -1 : -2);
    if (gFailed) return false;
    let h = 0;
    for (let k = 0; k < 4; k++) {
      const e = load<i32>(G_INDEX + (<usize>k << 2));
      store<u8>(y + 2 + <usize>(4 * ib + k), <u8>(e & 255));
      h |= (e >> 8) << (3 * k);
    }
    store<u16>(G_Q + (<usize>ib << 1), <u16>h);
    if (!(scale >= 0)) return false;
    fPut(G_SCALES, ib, scale);
    store<i8>(G_SHIFTS + <usize>ib, <i8>shift);
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (maxScale != 0) {
    const d: f32 = maxScale / <f32>15;
    store<u16>(y, <u16>toHalf(d * <f32>1.125));
    const id: f32 = <f32>1 / d;
    for (let ib = 0; ib < 8; ib++) {
      let l = cmax(0, cmin(7, nearestInt(<f32>0.5 * (id * fAt(G_SCALES, ib) - <f32>1))));
      if (load<i8>(G_SHIFTS + <usize>ib) == -1) l |= 8;
      const p = G_Q + (<usize>ib << 1);
      store<u16>(p, <u16>(<i32>load<u16>(p) | (l << 12)));
    }
  }
  // Unlike d, C leaves the grid indexes written when every scale is 0.
  memory.copy(y + 34, G_Q, 16);
  return true;
}

/** IQ1_M's weights of the 16 values at xb: qw·sqrtf(σ² + x²), or x² where qw is 0 (quant_weights NULL). */
function iq1MWeights(xb: usize, qw: usize, sigma2: f32): void {
  if (qw != 0) importanceWeights(xb, qw, sigma2, 16);
  else for (let i = 0; i < 16; i++) {
    const v = fAt(xb, i);
    fPut(WEIGHTS, i, v * v);
  }
}

/** quantize_row_iq1_m_impl's 56-byte block (with quant_weights, or none where qw is 0); false where it aborts or d is NaN. */
function iq1MBlock(x: usize, qw: usize, y: usize): bool {
  memory.fill(y, 0, 56);
  let maxScale: f32 = 0;
  const sigma2: f32 = <f32>2 * sumSquares(x, 256) / <f32>256;
  for (let ib = 0; ib < 16; ib++) {
    const xb = x + (<usize>(16 * ib) << 2);
    iq1MWeights(xb, qw != 0 ? qw + (<usize>(16 * ib) << 2) : 0, sigma2);
    const max = iq1Max(xb, 16);
    if (max < <f32>1e-7) {
      fPut(G_SCALES, ib, 0);
      store<i8>(G_SHIFTS + <usize>ib, 0);
      continue;
    }
    iq1Sort(xb, 16);
    // The j-th sorted value's terms weight·x_±[l]·x and weight·x_±[l]² (iq1-search.ts), level l's at 16·l + j, a lane per shift choice k.
    for (let j = 0; j < 16; j++) {
      const i = iq1Order(j);
      const w = fAt(WEIGHTS, i);
      const xi = fAt(xb, i);
      for (let k = 0; k < 4; k++) {
        const xx = (i < 8 ? k >= 2 : (k & 1) == 1) ? IQ1_SHIFTED + 12 : IQ1_SHIFTED;
        for (let l = 0; l < 3; l++) {
          const lv = fAt(xx, l);
          const wv: f32 = w * lv;
          fPut(IQ1_TERM_X, (l * 16 + j) * 4 + k, wv * xi);
          fPut(IQ1_TERM_Q, (l * 16 + j) * 4 + k, wv * lv);
        }
      }
    }
    let best: f32 = <f32>-3.4028234663852886e38;
    let scale: f32 = max;
    let besti1 = -1;
    let besti2 = -1;
    let bestK = -1;
    // The four shift choices side by side, a lane each: every lane's two sums run j = 0…15 in C's
    // order (the level-0 terms before i1, level 1 before i2, level 2 after); the four are then
    // compared with the best one by one, in C's order (k = 0…3), where any of them beats the best
    // before them (where none does, C keeps its best through all four).
    let x0 = f32x4.splat(0);
    let q0 = f32x4.splat(0);
    const zero = f32x4.splat(0);
    for (let i1 = 0; i1 <= 16; i1++) {
      if (i1 > 0) {
        x0 = f32x4.add(x0, v128.load(IQ1_TERM_X + (<usize>(i1 - 1) << 4)));
        q0 = f32x4.add(q0, v128.load(IQ1_TERM_Q + (<usize>(i1 - 1) << 4)));
      }
      let x1 = x0;
      let q1 = q0;
      for (let i2 = i1; i2 <= 16; i2++) {
        if (i2 > i1) {
          x1 = f32x4.add(x1, v128.load(IQ1_TERM_X + (<usize>(16 + i2 - 1) << 4)));
          q1 = f32x4.add(q1, v128.load(IQ1_TERM_Q + (<usize>(16 + i2 - 1) << 4)));
        }
        let sx = x1;
        let s2 = q1;
        for (let j = i2; j < 16; j++) {
          sx = f32x4.add(sx, v128.load(IQ1_TERM_X + (<usize>(32 + j) << 4)));
          s2 = f32x4.add(s2, v128.load(IQ1_TERM_Q + (<usize>(32 + j) << 4)));
        }
        const win = v128.and(f32x4.gt(s2, zero), f32x4.gt(f32x4.mul(sx, sx), f32x4.mul(f32x4.splat(best), s2)));
        if (!v128.any_true(win)) continue;
        store<v128>(IQ1_LANES, sx);
        store<v128>(IQ1_LANES, s2, 16);
        for (let k = 0; k < 4; k++) {
          const sxk = fAt(IQ1_LANES, k);
          const s2k = fAt(IQ1_LANES, 4 + k);
          if (s2k > 0 && sxk * sxk > best * s2k) {
            scale = sxk / s2k;
            best = scale * sxk;
            besti1 = i1;
            besti2 = i2;
            bestK = k;
          }
        }
      }
    }
    if (besti1 < 0 || besti2 < 0 || bestK < 0) {
      fPut(G_SCALES, ib, 0);
      store<i8>(G_SHIFTS + <usize>ib, 0);
      continue;
    }
    iq1Split(16, besti1, besti2);
    if (scale < 0) {
      for (let j = 0; j < 16; j++) store<u8>(G_L + <usize>j, <u8>(2 - <i32>load<u8>(G_L + <usize>j)));
      scale = -scale;
      bestK = 3 - bestK;
    }
    scale = iq1SnapGroups(xb, 2, scale, bestK);
    if (gFailed) return false;
    const e0 = load<i32>(G_INDEX);
    const e1 = load<i32>(G_INDEX + 4);
    store<u8>(y + <usize>(2 * ib), <u8>(e0 & 255));
    store<u8>(y + <usize>(2 * ib + 1), <u8>(e1 & 255));
    store<u8>(y + 32 + <usize>ib, <u8>((e0 >> 8) | ((e1 >> 8) << 4)));
    if (!(scale >= 0)) return false;
    fPut(G_SCALES, ib, scale);
    store<i8>(G_SHIFTS + <usize>ib, <i8>bestK);
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (maxScale == 0) return true;
  let sc0 = 0, sc1 = 0, sc2 = 0, sc3 = 0;
  let d: f32 = maxScale / <f32>15;
  const id: f32 = <f32>1 / d;
  let sumqx: f32 = 0;
  let sumq2: f32 = 0;
  for (let ib = 0; ib < 16; ib++) {
    const l = cmax(0, cmin(7, nearestInt(<f32>0.5 * (id * fAt(G_SCALES, ib) - <f32>1))));
    const bits = l << (3 * (ib & 3));
    if ((ib >> 2) == 0) sc0 |= bits;
    else if ((ib >> 2) == 1) sc1 |= bits;
    else if ((ib >> 2) == 2) sc2 |= bits;
    else sc3 |= bits;
    const k4 = <i32>load<i8>(G_SHIFTS + <usize>ib);
    const hp = y + 32 + <usize>ib;
    store<u8>(hp, load<u8>(hp) | load<u8>(IQ1_MASKS + <usize>k4));
    const xb = x + (<usize>(16 * ib) << 2);
    iq1MWeights(xb, qw != 0 ? qw + (<usize>(16 * ib) << 2) : 0, sigma2);
    const qh = <i32>load<u8>(hp);
    const li: i32 = 2 * l + 1;
    const mult = <f32>li;
    for (let k = 0; k < 2; k++) {
      const xx = iq1Levels(k4, k);
      const e = <i32>load<u8>(y + <usize>(2 * ib + k)) + ((qh << (8 - 4 * k)) & 0x700);
      for (let j = 0; j < 8; j++) {
        const w = fAt(WEIGHTS, 8 * k + j);
        const q: f32 = fAt(xx, gLevel(e, j)) * mult;
        sumqx += w * q * fAt(xb, 8 * k + j);
        sumq2 += w * q * q;
      }
    }
  }
  if (sumq2 > 0) d = sumqx / sumq2;
  const dd: f32 = d * <f32>1.1125;
  if (dd != dd) return false;
  const s = <i32>toHalf(dd);
  sc0 |= (s & 0x000f) << 12;
  sc1 |= (s & 0x00f0) << 8;
  sc2 |= (s & 0x0f00) << 4;
  sc3 |= s & 0xf000;
  store<u16>(y + 48, <u16>sc0);
  store<u16>(y + 50, <u16>sc1);
  store<u16>(y + 52, <u16>sc2);
  store<u16>(y + 54, <u16>sc3);
  return true;
}

/**
 * quantize_iq1_s (m 0: 50-byte blocks) or quantize_iq1_m (m 1: 56), with importance weights (one
 * per value) at qw (IQ1_M also without, qw 0: quant_weights NULL, weights x²): n blocks of 256 values. Returns 1 where the TypeScript quantizer must run the
 * values instead (see above), else 0.
 */
export function encodeIq1(src: usize, qw: usize, dst: usize, nBlocks: i32, m: i32, levels: usize, map: usize, neighbours: usize): i32 {
  gLevels = levels;
  gMap = map;
  gNb = neighbours;
  gFailed = false;
  const bytes: usize = m != 0 ? 56 : 50;
  if (!finite(src, qw, 256 * nBlocks)) return 1;
  for (let b = 0; b < nBlocks; b++) {
    const at = <usize>(256 * b) << 2;
    const ok = m != 0 ? iq1MBlock(src + at, qw != 0 ? qw + at : 0, dst + <usize>b * bytes) : iq1SBlock(src + at, qw + at, dst + <usize>b * bytes);
    if (!ok || gFailed) return 1;
  }
  return 0;
}
