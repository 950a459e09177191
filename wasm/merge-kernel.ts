/**
 * The CPU merge kernel (AssemblyScript → WebAssembly SIMD). For a block of rows of W:
 *   out[r, c] = round(W[r, c] + Σ_k left[r, k] · right[k, c])   (W optionally times a factor, below)
 * rounded once to the output dtype (nearest even). Two variants:
 * - `mergeRows`: f32 accumulation, for f16, bf16 and fp8 outputs, and plain f32 products;
 * - `mergeRows64`: f64 accumulation (right widened exactly from f32, left given in f64), for f32
 *   outputs, or raw f64 values for callers that go on computing (DoRA, update steps).
 * Either may take W times a factor per row or per column first (fp8 codes times their scales):
 * rounded to f32 in mergeRows, exact in mergeRows64 (W and the factor have at most 24 significant
 * bits each).
 *
 * Certification (the proof is in src/engine/exact/error-bounds.ts). Given a certification block,
 * each element's computed V gets a bound B ≥ |V − x| on its distance from the exact result x,
 *   B = gnl[r] · nr[c] + u · |V|,
 * and its index is listed when a rounding boundary of the output dtype (a midpoint between two
 * neighbouring values) may lie within B of V: only then can V and x round differently. The host
 * recomputes the listed elements exactly; every other element is already correctly rounded.
 *
 * Tiles of 4 rows × 8 columns live in eight v128 registers for the whole rank loop; W is decoded
 * straight into them afterwards and the result encoded straight out of them, so each element of W
 * is read and written once, and each load of `right` feeds four rows. The common dtype pairs
 * (same dtype in and out) get code of their own, with the dtype's branches folded away.
 *
 * The caller owns memory: it places W, out, left (rows × rank) and right (rank × rightStride, rows
 * padded with zeros to a multiple of 8 columns) and a scratch area, then calls mergeRows.
 * Dtype codes: 0 = f32, 1 = f16, 2 = bf16, 3 = fp8 e4m3fn, 4 = fp8 e5m2, 5 = f64 (mergeRows64 out only).
 */

import { f8Bits } from './f8-bits';

const F32: i32 = 0;
const F16: i32 = 1;
const BF16: i32 = 2;
const E4M3: i32 = 3;
const E5M2: i32 = 4;
const F64: i32 = 5;

/**
 * W's factors (mergeRows: f32, mergeRows64: f64): none, one per row of the block (rows padded
 * with zeros to a multiple of 4), or one per column (padded with zeros to a multiple of 8).
 */
const SCALE_ROW = 1;
const SCALE_COL = 2;
let wScaleAxis = 0;
let wScaleAt: usize = 0;

/** Where the caller may start placing data. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~15;
}

/** Bytes of scratch a call needs for `cols` columns and `rank` (f64 rank values for mergeRows64). */
export function scratchBytes(cols: i32, rank: i32): usize {
  return 1024 + 4 * <usize>rank * 8 + 4 * <usize>cols * 16;
}

// --- the certification block (byte offsets) ------------------------------------------------------
// mergeRows:   +0 gnl: usize → f32 per row of the block (G · ‖left row‖₂, rounded up)
//              +4 nr: usize → f32 per column, rightStride of them (‖right column‖₂, rounded up; 0 in padding)
//              +8 u: f32 (relative term of the bound)      +12 list: usize → u32 element indices
//              +16 count: i32, written: how many elements were listed
// mergeRows64: the same, with gnl and nr f64 arrays and u an f64 at +24.

// --- decoding: 8 elements of W → two f32x4 ---------------------------------------------------

/** f16 bits (one per i32 lane) → f32: the exponent and mantissa shifted into place and multiplied
 *  by 2^112 (exact for normals and subnormals: WebAssembly keeps f32 subnormals). Inf and NaN come
 *  out as large finite values unless `specials` (then they get the full f32 exponent back). */
// @ts-ignore: decorator
@inline function halfToFloat(h: v128, specials: bool): v128 {
  let f = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(5.192296858534828e33)); // 2^112
  if (specials) f = v128.or(f, v128.and(i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** e4m3fn bits (one per i32 lane) → f32: exponent and mantissa moved up by 20 bits, times 2^120
 *  to rebias (exact for subnormals too); 0x7f is NaN. */
// @ts-ignore: decorator
@inline function e4m3ToFloat(b: v128): v128 {
  const mag = v128.and(b, i32x4.splat(0x7f));
  let f = f32x4.mul(i32x4.shl(mag, 20), f32x4.splat(1.329227995784916e36)); // 2^120
  f = v128.or(f, v128.and(i32x4.eq(mag, i32x4.splat(0x7f)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(b, i32x4.splat(0x80)), 24));
}

/** Lanes of raw codes (zero-extended to i32) → f32. `specials`: keep Inf/NaN of f16 and e5m2. */
// @ts-ignore: decorator
@inline function widen(h: v128, dtype: i32, specials: bool): v128 {
  if (dtype == F16) return halfToFloat(h, specials);
  if (dtype == BF16) return i32x4.shl(h, 16);
  if (dtype == E4M3) return e4m3ToFloat(h);
  return halfToFloat(i32x4.shl(h, 8), true); // e5m2: the top byte of an f16
}

/** Elements 0–3 (`high` false) or 4–7 of the 8 at w, as f32. */
// @ts-ignore: decorator
@inline function loadW(w: usize, wType: i32, high: bool, specials: bool): v128 {
  if (wType == F32) return high ? v128.load(w, 16) : v128.load(w);
  if (wType >= E4M3) {
    const raw = i16x8.extend_low_i8x16_u(v128.load64_zero(w));
    return widen(high ? i32x4.extend_high_i16x8_u(raw) : i32x4.extend_low_i16x8_u(raw), wType, specials);
  }
  const raw = v128.load(w);
  return widen(high ? i32x4.extend_high_i16x8_u(raw) : i32x4.extend_low_i16x8_u(raw), wType, specials);
}

// --- encoding: |V| and its sign → codes, nearest even ------------------------------------------

/** |V| (bits, non-negative as i32) → f16 magnitude bits: rebias with a rounding bias for normals,
 *  a float add of 0.5 for subnormal results (the FPU rounds), 0x7c00 from 65520 up, 0x7e00 for NaN. */
// @ts-ignore: decorator
@inline function halfBits(a: v128): v128 {
  const odd = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  let o = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(((15 - 127) << 23) + 0xfff)), odd), 13);
  const small = i32x4.lt_s(a, i32x4.splat(113 << 23));
  const large = i32x4.ge_s(a, i32x4.splat(143 << 23));
  // Most rows hold only f16-normal results: skip the other cases when no lane needs them.
  if (v128.any_true(v128.or(small, large))) {
    const magic = i32x4.splat(126 << 23); // 0.5: its ulp is the f16 subnormal quantum 2^-24
    const sub = i32x4.sub(f32x4.add(a, magic), magic);
    const big = v128.bitselect(i32x4.splat(0x7e00), i32x4.splat(0x7c00), i32x4.gt_s(a, i32x4.splat(0x7f800000)));
    o = v128.bitselect(sub, o, small);
    o = v128.bitselect(big, o, large);
  }
  return o;
}

/** V (bits) → bf16 bits: add the rounding bias (ties to even); NaN stays a quiet NaN. */
// @ts-ignore: decorator
@inline function bfloatBits(x: v128, a: v128): v128 {
  const lsb = v128.and(i32x4.shr_u(x, 16), i32x4.splat(1));
  const rounded = i32x4.shr_u(i32x4.add(i32x4.add(x, i32x4.splat(0x7fff)), lsb), 16);
  return v128.bitselect(v128.or(i32x4.shr_u(x, 16), i32x4.splat(0x40)), rounded, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
}

// --- certification --------------------------------------------------------------------------------

/**
 * Lanes whose rounding to the output dtype is not certain, for V's magnitude `a` and bound `b`
 * (error-bounds.ts proves each test):
 * - a midpoint of the dtype's grid at a's exponent within b: |a − mid| < b, mid = a with the bits
 *   the dtype drops replaced by a half (`drop` = 24 − the dtype's precision);
 * - b at least a quarter of that grid step, 2^E · 2^(drop − 25): a neighbouring binade's
 *   midpoints, with another step, may then be within b;
 * - below the dtype's smallest normal (its grid is uniform there, step 1/invq): a midpoint within b
 *   (bf16's step is no f32: any b > 0), or b ≥ a (the sign of a result rounding to zero).
 * `b` carries a factor of 1 + 2^-20 over the proven bound, so strict compares suffice and b = 0
 * (an exact V) is never listed.
 */
// @ts-ignore: decorator
@inline function uncertain(a: v128, b: v128, outType: i32): v128 {
  let drop = 13, minNormal: f32 = 6.103515625e-5, invq: f32 = 16777216.0; // f16: 2^-14, 2^24
  if (outType == BF16) {
    drop = 16;
    minNormal = 1.1754943508222875e-38; // 2^-126
    invq = 0;
  } else if (outType == E4M3) {
    drop = 20;
    minNormal = 0.015625; // 2^-6
    invq = 512.0; // 2^9
  } else if (outType == E5M2) {
    drop = 21;
    minNormal = 6.103515625e-5; // 2^-14
    invq = 65536.0; // 2^16
  }
  const mid = v128.or(v128.andnot(a, i32x4.splat((1 << drop) - 1)), i32x4.splat(1 << (drop - 1)));
  const quarter = f32x4.mul(v128.and(a, i32x4.splat(0x7f800000)), f32x4.splat(reinterpret<f32>((127 + drop - 25) << 23)));
  let flag = v128.or(f32x4.lt(f32x4.abs(f32x4.sub(a, mid)), b), f32x4.lt(quarter, b));
  const small = f32x4.lt(a, f32x4.splat(minNormal));
  if (v128.any_true(small)) {
    let s = f32x4.lt(a, b);
    if (invq != 0) {
      const t = f32x4.mul(a, f32x4.splat(invq));
      const frac = f32x4.sub(t, f32x4.floor(t));
      s = v128.or(s, f32x4.lt(f32x4.abs(f32x4.sub(frac, f32x4.splat(0.5))), f32x4.mul(b, f32x4.splat(invq))));
    } else {
      s = f32x4.gt(b, f32x4.splat(0));
    }
    flag = v128.bitselect(s, flag, small);
  }
  return flag;
}

// @ts-ignore: decorator
@inline function push(list: usize, count: i32, index: i32): i32 {
  store<u32>(list + (<usize>count << 2), index);
  return count + 1;
}

/** Appends `base + lane` for every set lane of lo (lanes 0–3) and hi (4–7) below `limit`. */
function listLanes(lo: v128, hi: v128, base: i32, list: usize, count: i32, limit: i32): i32 {
  if (i32x4.extract_lane(lo, 0) != 0 && base < limit) count = push(list, count, base);
  if (i32x4.extract_lane(lo, 1) != 0 && base + 1 < limit) count = push(list, count, base + 1);
  if (i32x4.extract_lane(lo, 2) != 0 && base + 2 < limit) count = push(list, count, base + 2);
  if (i32x4.extract_lane(lo, 3) != 0 && base + 3 < limit) count = push(list, count, base + 3);
  if (i32x4.extract_lane(hi, 0) != 0 && base + 4 < limit) count = push(list, count, base + 4);
  if (i32x4.extract_lane(hi, 1) != 0 && base + 5 < limit) count = push(list, count, base + 5);
  if (i32x4.extract_lane(hi, 2) != 0 && base + 6 < limit) count = push(list, count, base + 6);
  if (i32x4.extract_lane(hi, 3) != 0 && base + 7 < limit) count = push(list, count, base + 7);
  return count;
}

// --- one row of a tile: W added, rounded, stored, certified --------------------------------------

/** Per-call certification state (read from the block once per call). */
let certOn = false;
let certList: usize = 0;
let certCount = 0;
let certU: f32 = 0;
let certLimit = 0;

/**
 * Adds W's 8 elements at w (times fLo/fHi, rounded to f32, when `scaled`) to the sums lo/hi,
 * rounds, stores 8 results at out and (certifying) lists the uncertain ones with indices from
 * `index`. Returns lanes of all ones where a result is Inf or NaN. `g`: the row's gnl splat;
 * nrLo/nrHi: the columns' norms.
 */
// @ts-ignore: decorator
@inline function finishRow(w: usize, out: usize, lo: v128, hi: v128, wType: i32, outType: i32,
  g: v128, nrLo: v128, nrHi: v128, index: i32, scaled: bool, fLo: v128, fHi: v128): v128 {
  const specials = true;
  let wLo = loadW(w, wType, false, specials), wHi = loadW(w, wType, true, specials);
  if (scaled) {
    wLo = f32x4.mul(wLo, fLo);
    wHi = f32x4.mul(wHi, fHi);
  }
  lo = f32x4.add(lo, wLo);
  hi = f32x4.add(hi, wHi);
  const signMask = i32x4.splat(0x80000000);
  const aLo = v128.andnot(lo, signMask);
  const aHi = v128.andnot(hi, signMask);
  let bad: v128;
  if (outType == F32) {
    v128.store(out, lo);
    v128.store(out, hi, 16);
    const e = i32x4.splat(0x7f800000);
    bad = v128.or(i32x4.ge_s(aLo, e), i32x4.ge_s(aHi, e));
  } else if (outType >= E4M3) {
    const e4m3 = outType == E4M3;
    const cLo = v128.or(f8Bits(aLo, e4m3), i32x4.shr_u(v128.and(lo, signMask), 24));
    const cHi = v128.or(f8Bits(aHi, e4m3), i32x4.shr_u(v128.and(hi, signMask), 24));
    const h16 = i16x8.narrow_i32x4_u(cLo, cHi);
    v128.store64_lane(out, i8x16.narrow_i16x8_u(h16, h16), 0);
    // Saturated, so only NaN (and e5m2's Inf) is special, and only from a non-finite V.
    const e = i32x4.splat(0x7f800000);
    bad = v128.or(i32x4.ge_s(aLo, e), i32x4.ge_s(aHi, e));
  } else if (outType == F16) {
    const hLo = v128.or(halfBits(aLo), i32x4.shr_u(v128.and(lo, signMask), 16));
    const hHi = v128.or(halfBits(aHi), i32x4.shr_u(v128.and(hi, signMask), 16));
    const h = i16x8.narrow_i32x4_u(hLo, hHi);
    v128.store(out, h);
    bad = i16x8.eq(v128.and(h, i16x8.splat(0x7c00)), i16x8.splat(0x7c00));
  } else {
    const h = i16x8.narrow_i32x4_u(bfloatBits(lo, aLo), bfloatBits(hi, aHi));
    v128.store(out, h);
    bad = i16x8.eq(v128.and(h, i16x8.splat(0x7f80)), i16x8.splat(0x7f80));
  }
  if (certOn && outType != F32) {
    const u = f32x4.splat(certU);
    const fLo = uncertain(aLo, f32x4.add(f32x4.mul(g, nrLo), f32x4.mul(u, aLo)), outType);
    const fHi = uncertain(aHi, f32x4.add(f32x4.mul(g, nrHi), f32x4.mul(u, aHi)), outType);
    if (v128.any_true(v128.or(fLo, fHi))) certCount = listLanes(fLo, fHi, index, certList, certCount, certLimit);
  }
  return bad;
}

// --- the f32 kernel, one copy per dtype pair -------------------------------------------------------

/**
 * The whole call for one (wType, outType): rows in quads, each quad's columns in 8-wide tiles.
 * The last quad of rows and the last tile of columns, when short, go through zero-padded copies
 * in scratch, by the same loop body (one copy of the tile's code per dtype pair).
 */
// @ts-ignore: decorator
@inline function run(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32,
  left: usize, rank: i32, right: usize, rightStride: i32, scratch: usize, gnl: usize, nr: usize, scaled: bool): i32 {
  const wb: usize = wType == F32 ? 4 : wType >= E4M3 ? 1 : 2;
  const ob: usize = outType == F32 ? 4 : outType >= E4M3 ? 1 : 2;
  const wStride = <usize>cols * wb, outStride = <usize>cols * ob;
  const leftStride = <usize>rank << 2;
  const rs = <usize>rightStride << 2;
  // scratch: a 4 × 8 tile of W and of out (256 bytes), then the padded row quad: left, gnl, W, out.
  const tileW = scratch, tileOut = scratch + 128;
  const quadLeft = scratch + 256, quadG = quadLeft + 4 * leftStride, quadW = quadG + 16, quadOut = quadW + 4 * wStride;
  const zero = f32x4.splat(0);
  let bad = zero;
  const fullRows = rows & ~3;
  for (let r = 0; r < rows; r += 4) {
    let wq = w + <usize>r * wStride, oq = out + <usize>r * outStride, lq = left + <usize>r * leftStride, gq = gnl + (<usize>r << 2);
    const wqs = wStride, oqs = outStride;
    const shortQuad = r == fullRows;
    if (shortQuad) {
      // The last rows padded to four with zero left, W and gnl: padding results are never read.
      const n = <usize>(rows - r);
      memory.fill(quadLeft, 0, quadOut - quadLeft);
      memory.copy(quadLeft, lq, n * leftStride);
      memory.copy(quadW, wq, n * wStride);
      if (certOn) memory.copy(quadG, gq, n << 2);
      lq = quadLeft;
      wq = quadW;
      oq = quadOut;
      gq = quadG;
    }
    const g0 = certOn ? v128.load32_splat(gq) : zero, g1 = certOn ? v128.load32_splat(gq, 4) : zero;
    const g2 = certOn ? v128.load32_splat(gq, 8) : zero, g3 = certOn ? v128.load32_splat(gq, 12) : zero;
    // W's factors per row (f32, rows padded to a multiple of 4 by the caller).
    const byRow = scaled && wScaleAxis == SCALE_ROW;
    const rowF = wScaleAt + (<usize>r << 2);
    const f0 = byRow ? v128.load32_splat(rowF) : zero, f1 = byRow ? v128.load32_splat(rowF, 4) : zero;
    const f2 = byRow ? v128.load32_splat(rowF, 8) : zero, f3 = byRow ? v128.load32_splat(rowF, 12) : zero;
    for (let c = 0; c < cols; c += 8) {
      let tw = wq + <usize>c * wb, to = oq + <usize>c * ob, ws = wqs, os = oqs;
      const shortTile = c + 8 > cols;
      if (shortTile) {
        memory.fill(tileW, 0, 128);
        const n = <usize>(cols - c) * wb;
        memory.copy(tileW, tw, n);
        memory.copy(tileW + 8 * wb, tw + ws, n);
        memory.copy(tileW + 16 * wb, tw + 2 * ws, n);
        memory.copy(tileW + 24 * wb, tw + 3 * ws, n);
        tw = tileW;
        to = tileOut;
        ws = 8 * wb;
        os = 8 * ob;
      }
      // The low-rank sum starts from zero and W is added last (as on the GPU): the sum's rounding
      // errors scale with the sum, not with W, which keeps the bound, and the listed share, small.
      let a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero, a30 = zero, a31 = zero;
      let l0 = lq, l1 = lq + leftStride, l2 = lq + 2 * leftStride, l3 = lq + 3 * leftStride;
      let rp = right + (<usize>c << 2);
      for (let k = 0; k < rank; k++) {
        const r0 = v128.load(rp), r1 = v128.load(rp, 16);
        let x = v128.load32_splat(l0);
        a00 = f32x4.add(a00, f32x4.mul(x, r0)); a01 = f32x4.add(a01, f32x4.mul(x, r1));
        x = v128.load32_splat(l1);
        a10 = f32x4.add(a10, f32x4.mul(x, r0)); a11 = f32x4.add(a11, f32x4.mul(x, r1));
        x = v128.load32_splat(l2);
        a20 = f32x4.add(a20, f32x4.mul(x, r0)); a21 = f32x4.add(a21, f32x4.mul(x, r1));
        x = v128.load32_splat(l3);
        a30 = f32x4.add(a30, f32x4.mul(x, r0)); a31 = f32x4.add(a31, f32x4.mul(x, r1));
        rp += rs;
        l0 += 4;
        l1 += 4;
        l2 += 4;
        l3 += 4;
      }
      let nrLo = zero, nrHi = zero;
      if (certOn) {
        nrLo = v128.load(nr + (<usize>c << 2));
        nrHi = v128.load(nr + (<usize>c << 2), 16);
      }
      const index = r * cols + c;
      if (scaled && !byRow) {
        // W's factors per column (f32, columns padded to a multiple of 8 by the caller).
        const fLo = v128.load(wScaleAt + (<usize>c << 2)), fHi = v128.load(wScaleAt + (<usize>c << 2), 16);
        bad = v128.or(bad, finishRow(tw, to, a00, a01, wType, outType, g0, nrLo, nrHi, index, true, fLo, fHi));
        bad = v128.or(bad, finishRow(tw + ws, to + os, a10, a11, wType, outType, g1, nrLo, nrHi, index + cols, true, fLo, fHi));
        bad = v128.or(bad, finishRow(tw + 2 * ws, to + 2 * os, a20, a21, wType, outType, g2, nrLo, nrHi, index + 2 * cols, true, fLo, fHi));
        bad = v128.or(bad, finishRow(tw + 3 * ws, to + 3 * os, a30, a31, wType, outType, g3, nrLo, nrHi, index + 3 * cols, true, fLo, fHi));
      } else {
        bad = v128.or(bad, finishRow(tw, to, a00, a01, wType, outType, g0, nrLo, nrHi, index, scaled, f0, f0));
        bad = v128.or(bad, finishRow(tw + ws, to + os, a10, a11, wType, outType, g1, nrLo, nrHi, index + cols, scaled, f1, f1));
        bad = v128.or(bad, finishRow(tw + 2 * ws, to + 2 * os, a20, a21, wType, outType, g2, nrLo, nrHi, index + 2 * cols, scaled, f2, f2));
        bad = v128.or(bad, finishRow(tw + 3 * ws, to + 3 * os, a30, a31, wType, outType, g3, nrLo, nrHi, index + 3 * cols, scaled, f3, f3));
      }
      if (shortTile) {
        const n = <usize>(cols - c) * ob;
        const at = oq + <usize>c * ob;
        memory.copy(at, tileOut, n);
        memory.copy(at + oqs, tileOut + 8 * ob, n);
        memory.copy(at + 2 * oqs, tileOut + 16 * ob, n);
        memory.copy(at + 3 * oqs, tileOut + 24 * ob, n);
      }
    }
    if (shortQuad) memory.copy(out + <usize>r * outStride, quadOut, <usize>(rows - r) * outStride);
  }
  return v128.any_true(bad) ? 1 : 0;
}

function readCert(cert: usize, rows: i32, cols: i32): void {
  certOn = cert != 0;
  certCount = 0;
  certLimit = rows * cols;
  if (certOn) {
    certU = load<f32>(cert, 8);
    certList = load<usize>(cert, 12);
  }
}

function runF16(w: usize, out: usize, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, F16, out, F16, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
function runBF16(w: usize, out: usize, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, BF16, out, BF16, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
function runE4M3(w: usize, out: usize, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, E4M3, out, E4M3, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
function runE5M2(w: usize, out: usize, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, E5M2, out, E5M2, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
function runF32(w: usize, out: usize, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, F32, out, F32, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
/** Any other pair: the same code with the dtypes' branches taken at run time. */
function runAny(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, wType, out, outType, rows, cols, left, rank, right, rs, scratch, gnl, nr, false);
}
/** Any pair with W's factors (fp8 codes times their scales). */
function runScaled(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32, left: usize, rank: i32, right: usize, rs: i32, scratch: usize, gnl: usize, nr: usize): i32 {
  return run(w, wType, out, outType, rows, cols, left, rank, right, rs, scratch, gnl, nr, true);
}

/**
 * out = round(W·f + left · right) for `rows` rows (f32 sums). f: 1 (`scaleAxis` 0), or f32
 * factors at `scale` per row (1) or per column (2) as for mergeRows64, W·f rounded to f32 once.
 * `scratch` holds scratchBytes(cols, rank) bytes. Returns 1 if any result is Inf or NaN; with a
 * certification block (`cert` ≠ 0; 16- and 8-bit outputs only), the listed elements' count goes
 * to its +16.
 */
export function mergeRows(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32,
  left: usize, rank: i32, right: usize, rightStride: i32, scratch: usize, cert: usize, scale: usize, scaleAxis: i32): i32 {
  wScaleAt = scale;
  wScaleAxis = scaleAxis;
  readCert(outType == F32 ? 0 : cert, rows, cols);
  const gnl = certOn ? load<usize>(cert) : 0, nr = certOn ? load<usize>(cert, 4) : 0;
  let bad: i32;
  if (scaleAxis != 0) bad = runScaled(w, wType, out, outType, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else if (wType == outType && wType == F16) bad = runF16(w, out, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else if (wType == outType && wType == BF16) bad = runBF16(w, out, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else if (wType == outType && wType == E4M3) bad = runE4M3(w, out, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else if (wType == outType && wType == E5M2) bad = runE5M2(w, out, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else if (wType == outType && wType == F32) bad = runF32(w, out, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  else bad = runAny(w, wType, out, outType, rows, cols, left, rank, right, rightStride, scratch, gnl, nr);
  if (certOn) store<i32>(cert, certCount, 16);
  return bad;
}

// --- the f64 kernel --------------------------------------------------------------------------------

/**
 * Lanes (f64 magnitudes a, bounds b) whose rounding to f32 is not certain: an f32 midpoint (29
 * dropped bits) within b, b at least a quarter of the f32 step (2^E · 2^-25), or a below the
 * smallest normal f32 (rare: any b > 0). Strict compares, as for `uncertain`.
 */
// @ts-ignore: decorator
@inline function uncertain64(a: v128, b: v128): v128 {
  const mid = v128.or(v128.andnot(a, i64x2.splat(<i64>0x1fffffff)), i64x2.splat(<i64>0x10000000));
  const quarter = f64x2.mul(v128.and(a, i64x2.splat(<i64>0x7ff0000000000000)), f64x2.splat(2.9802322387695312e-8)); // 2^-25
  const flag = v128.or(f64x2.lt(f64x2.abs(f64x2.sub(a, mid)), b), f64x2.lt(quarter, b));
  return v128.or(flag, v128.and(f64x2.lt(a, f64x2.splat(1.1754943508222875e-38)), f64x2.gt(b, f64x2.splat(0))));
}

/** Indices of the set lanes of two f64x2 masks (4 columns of a row). */
function listLanes64(m0: v128, m1: v128, base: i32, list: usize, count: i32, limit: i32): i32 {
  if (i64x2.extract_lane(m0, 0) != 0 && base < limit) count = push(list, count, base);
  if (i64x2.extract_lane(m0, 1) != 0 && base + 1 < limit) count = push(list, count, base + 1);
  if (i64x2.extract_lane(m1, 0) != 0 && base + 2 < limit) count = push(list, count, base + 2);
  if (i64x2.extract_lane(m1, 1) != 0 && base + 3 < limit) count = push(list, count, base + 3);
  return count;
}

let cert64Gnl: usize = 0;
let cert64Nr: usize = 0;
let cert64U: f64 = 0;

/**
 * One row of an f64 tile (4 columns): V = sums + W, stored as f32 (rounded once) or as f64, and
 * (certifying f32 outputs) the uncertain elements listed. Returns Inf/NaN lanes.
 */
// @ts-ignore: decorator
@inline function finishRow64(w: usize, out: usize, s0: v128, s1: v128, wType: i32, outType: i32, row: i32, c: i32, cols: i32, high: bool): v128 {
  const wf = loadW(w, wType, high, true);
  let w0 = f64x2.promote_low_f32x4(wf);
  let w1 = f64x2.promote_low_f32x4(i8x16.shuffle(wf, wf, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  if (wScaleAxis == SCALE_ROW) {
    const f = v128.load64_splat(wScaleAt + (<usize>row << 3));
    w0 = f64x2.mul(w0, f);
    w1 = f64x2.mul(w1, f);
  } else if (wScaleAxis == SCALE_COL) {
    const at = wScaleAt + (<usize>c << 3);
    w0 = f64x2.mul(w0, v128.load(at));
    w1 = f64x2.mul(w1, v128.load(at, 16));
  }
  const v0 = f64x2.add(s0, w0);
  const v1 = f64x2.add(s1, w1);
  const e64 = i64x2.splat(<i64>0x7ff0000000000000);
  if (outType == F64) {
    v128.store(out, v0);
    v128.store(out, v1, 16);
    return v128.or(i64x2.eq(v128.and(v0, e64), e64), i64x2.eq(v128.and(v1, e64), e64));
  }
  const f = i8x16.shuffle(f32x4.demote_f64x2_zero(v0), f32x4.demote_f64x2_zero(v1), 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  v128.store(out, f);
  if (certOn) {
    const g = v128.load64_splat(cert64Gnl + (<usize>row << 3));
    const nrAt = cert64Nr + (<usize>c << 3);
    const u = f64x2.splat(cert64U);
    const a0 = v128.and(v0, i64x2.splat(<i64>0x7fffffffffffffff));
    const a1 = v128.and(v1, i64x2.splat(<i64>0x7fffffffffffffff));
    const m0 = uncertain64(a0, f64x2.add(f64x2.mul(g, v128.load(nrAt)), f64x2.mul(u, a0)));
    const m1 = uncertain64(a1, f64x2.add(f64x2.mul(g, v128.load(nrAt, 16)), f64x2.mul(u, a1)));
    if (v128.any_true(v128.or(m0, m1))) certCount = listLanes64(m0, m1, row * cols + c, certList, certCount, certLimit);
  }
  const e = i32x4.splat(0x7f800000);
  return i32x4.eq(v128.and(f, e), e);
}

/**
 * out = W·f + left64 · right in f64 sums, stored as f32 (outType 0, rounded once; certified when
 * `cert` is given, gnl and nr as f64 arrays, u an f64 at +24) or as f64 (outType 5). f: 1
 * (`scaleAxis` 0), f64 factors at `scale` per row of the block (1; rows rounded up to a multiple
 * of 4) or per column (2; columns rounded up to a multiple of 8). W·f is exact, so the bound is
 * that of W alone. Scratch as for mergeRows. Returns 1 if any result is Inf or NaN.
 */
export function mergeRows64(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32,
  left: usize, rank: i32, right: usize, rightStride: i32, scratch: usize, cert: usize, scale: usize, scaleAxis: i32): i32 {
  wScaleAt = scale;
  wScaleAxis = scaleAxis;
  readCert(outType == F64 ? 0 : cert, rows, cols);
  if (certOn) {
    cert64Gnl = load<usize>(cert);
    cert64Nr = load<usize>(cert, 4);
    cert64U = load<f64>(cert, 24);
  }
  const wb: usize = wType == F32 ? 4 : wType >= E4M3 ? 1 : 2;
  const ob: usize = outType == F32 ? 4 : 8;
  const wStride = <usize>cols * wb, outStride = <usize>cols * ob;
  const leftStride = <usize>rank << 3;
  const rs = <usize>rightStride << 2;
  const tileW = scratch, tileOut = scratch + 128;
  const quadLeft = scratch + 512, quadG = quadLeft + 4 * leftStride, quadW = quadG + 32, quadOut = quadW + 4 * wStride;
  const zero = f64x2.splat(0);
  let bad = zero;
  const fullRows = rows & ~3;
  const gnl = cert64Gnl;
  for (let r = 0; r < rows; r += 4) {
    let wq = w + <usize>r * wStride, oq = out + <usize>r * outStride, lq = left + <usize>r * leftStride;
    const shortQuad = r == fullRows;
    if (shortQuad) {
      const n = <usize>(rows - r);
      memory.fill(quadLeft, 0, quadOut - quadLeft);
      memory.copy(quadLeft, lq, n * leftStride);
      memory.copy(quadW, wq, n * wStride);
      if (certOn) {
        memory.copy(quadG, gnl + (<usize>r << 3), n << 3);
        cert64Gnl = quadG - (<usize>r << 3);
      }
      lq = quadLeft;
      wq = quadW;
      oq = quadOut;
    }
    for (let c = 0; c < cols; c += 4) {
      // W is read in groups of 8 elements: columns c..c+3 are the low or high half of one.
      const group = c & ~7;
      const high = (c & 4) != 0;
      let tw = wq + <usize>group * wb, to = oq + <usize>c * ob, ws = wStride, os = outStride;
      const shortTile = group + 8 > cols;
      if (shortTile) {
        if (!high) {
          memory.fill(tileW, 0, 128);
          const n = <usize>(cols - group) * wb;
          memory.copy(tileW, tw, n);
          memory.copy(tileW + 8 * wb, tw + ws, n);
          memory.copy(tileW + 16 * wb, tw + 2 * ws, n);
          memory.copy(tileW + 24 * wb, tw + 3 * ws, n);
        }
        tw = tileW;
        to = tileOut;
        ws = 8 * wb;
        os = 4 * ob;
      }
      let a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero, a30 = zero, a31 = zero;
      let l = lq;
      let rp = right + (<usize>c << 2);
      for (let k = 0; k < rank; k++) {
        const r0 = f64x2.promote_low_f32x4(v128.load64_zero(rp));
        const r1 = f64x2.promote_low_f32x4(v128.load64_zero(rp, 8));
        let x = v128.load64_splat(l);
        a00 = f64x2.add(a00, f64x2.mul(x, r0)); a01 = f64x2.add(a01, f64x2.mul(x, r1));
        x = v128.load64_splat(l + leftStride);
        a10 = f64x2.add(a10, f64x2.mul(x, r0)); a11 = f64x2.add(a11, f64x2.mul(x, r1));
        x = v128.load64_splat(l + 2 * leftStride);
        a20 = f64x2.add(a20, f64x2.mul(x, r0)); a21 = f64x2.add(a21, f64x2.mul(x, r1));
        x = v128.load64_splat(l + 3 * leftStride);
        a30 = f64x2.add(a30, f64x2.mul(x, r0)); a31 = f64x2.add(a31, f64x2.mul(x, r1));
        l += 8;
        rp += rs;
      }
      let b = finishRow64(tw, to, a00, a01, wType, outType, r, c, cols, high);
      b = v128.or(b, finishRow64(tw + ws, to + os, a10, a11, wType, outType, r + 1, c, cols, high));
      b = v128.or(b, finishRow64(tw + 2 * ws, to + 2 * os, a20, a21, wType, outType, r + 2, c, cols, high));
      b = v128.or(b, finishRow64(tw + 3 * ws, to + 3 * os, a30, a31, wType, outType, r + 3, c, cols, high));
      bad = v128.or(bad, b);
      if (shortTile) {
        const n = <usize>min(4, cols - c) * ob;
        const at = oq + <usize>c * ob;
        memory.copy(at, tileOut, n);
        memory.copy(at + outStride, tileOut + 4 * ob, n);
        memory.copy(at + 2 * outStride, tileOut + 8 * ob, n);
        memory.copy(at + 3 * outStride, tileOut + 12 * ob, n);
      }
    }
    if (shortQuad) {
      memory.copy(out + <usize>r * outStride, quadOut, <usize>(rows - r) * outStride);
      cert64Gnl = gnl;
    }
  }
  if (certOn) store<i32>(cert, certCount, 16);
  return v128.any_true(bad) ? 1 : 0;
}
