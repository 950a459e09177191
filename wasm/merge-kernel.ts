/**
 * The CPU merge kernel (AssemblyScript → WebAssembly SIMD). For a block of rows of W:
 *   out[r, c] = round(W[r, c] + Σ_k left[r, k] · right[k, c])
 * accumulated in f32x4 lanes, rounded once to the output dtype (nearest even).
 *
 * Tiles of 4 rows × 8 columns live in eight v128 registers for the whole rank loop; W is decoded
 * straight into them afterwards and the result encoded straight out of them, so each element of W
 * is read and written once, and each load of `right` feeds four rows.
 *
 * The caller owns memory: it places W, out, left (rows × rank) and right (rank × rightStride, rows
 * padded with zeros to a multiple of 8 columns) and a scratch area, then calls mergeRows.
 * Dtype codes: 0 = f32, 1 = f16, 2 = bf16, 3 = fp8 e4m3fn, 4 = fp8 e5m2.
 */

const F32: i32 = 0;
const F16: i32 = 1;
const BF16: i32 = 2;
const E4M3: i32 = 3;
const E5M2: i32 = 4;

/** Where the caller may start placing data. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~15;
}

// --- decoding: 8 elements at p → two f32x4 ----------------------------------------------------

/** f16 bits (one per i32 lane) → f32: shift the exponent/mantissa into place and multiply by
 *  2^112 to rebias; exact for normals and subnormals. Inf/NaN get the full f32 exponent back. */
// @ts-ignore: decorator
@inline function halfToFloat(h: v128): v128 {
  const mag = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  let f = f32x4.mul(mag, f32x4.splat(5.192296858534828e33)); // 2^112
  const infNan = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  f = v128.or(f, v128.and(infNan, i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** e4m3fn bits (one per i32 lane) → f32: exponent and mantissa shifted into place, times 2^120 to
 *  rebias (exact for subnormals too: WebAssembly keeps f32 subnormals); 0x7f is NaN. */
// @ts-ignore: decorator
@inline function e4m3ToFloat(b: v128): v128 {
  const mag = v128.and(b, i32x4.splat(0x7f));
  let f = f32x4.mul(i32x4.shl(mag, 20), f32x4.splat(1.329227995784916e36)); // 2^120
  f = v128.or(f, v128.and(i32x4.eq(mag, i32x4.splat(0x7f)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(b, i32x4.splat(0x80)), 24));
}

/** f16 (dtype 1), bf16 (2), e4m3fn (3) or e5m2 (4) bits, one per i32 lane → f32. e5m2 is the top
 *  byte of an f16. */
// @ts-ignore: decorator
@inline function widen(h: v128, dtype: i32): v128 {
  if (dtype == F16) return halfToFloat(h);
  if (dtype == BF16) return i32x4.shl(h, 16);
  if (dtype == E4M3) return e4m3ToFloat(h);
  return halfToFloat(i32x4.shl(h, 8));
}

// --- encoding: two f32x4 → 8 elements at p, round to nearest even ----------------------------

/** f32 → f16 bits per i32 lane: rebias with a rounding bias for normals, a float add of 0.5
 *  for subnormals (the FPU rounds), Inf for overflow, a quiet NaN for NaN. The magnitude bits
 *  are non-negative as i32, so signed compares (native in SSE) do. */
// @ts-ignore: decorator
@inline function floatToHalf(x: v128): v128 {
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const a = v128.xor(x, sign);
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
  return v128.or(o, i32x4.shr_u(sign, 16));
}

/** f32 → bf16 bits per i32 lane: add the rounding bias (ties to even); NaN stays a quiet NaN. */
// @ts-ignore: decorator
@inline function floatToBfloat(x: v128): v128 {
  const isNan = i32x4.gt_s(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  const lsb = v128.and(i32x4.shr_u(x, 16), i32x4.splat(1));
  const rounded = i32x4.shr_u(i32x4.add(i32x4.add(x, i32x4.splat(0x7fff)), lsb), 16);
  return v128.bitselect(v128.or(i32x4.shr_u(x, 16), i32x4.splat(0x40)), rounded, isNan);
}

/**
 * f32 → fp8 bits per i32 lane, round to nearest even, saturating at the largest finite code:
 * normals by rebiasing with a rounding bias (as for f16), subnormals by a float add of a magic
 * number whose ulp is the fp8 subnormal quantum (the FPU rounds). NaN → NaN; Inf → e5m2's Inf,
 * e4m3fn's NaN (it has no Inf). e4m3fn: mantissa 3 bits, bias 7; e5m2: 2 bits, bias 15.
 */
// @ts-ignore: decorator
@inline function floatToF8(x: v128, e4m3: bool): v128 {
  const drop = e4m3 ? 20 : 21;
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const a = v128.xor(x, sign);
  const odd = v128.and(i32x4.shr_u(a, drop), i32x4.splat(1));
  const rebias = e4m3 ? ((7 - 127) << 23) + 0x7ffff : ((15 - 127) << 23) + 0xfffff;
  let o = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(rebias)), odd), drop);
  // Below the smallest normal (2^-6, 2^-14): magic 2^14 or 2^7, whose ulp is 2^-9 or 2^-16.
  const small = i32x4.lt_s(a, i32x4.splat(e4m3 ? 121 << 23 : 113 << 23));
  const magic = i32x4.splat(e4m3 ? 141 << 23 : 134 << 23);
  o = v128.bitselect(i32x4.sub(f32x4.add(a, magic), magic), o, small);
  o = i32x4.min_s(o, i32x4.splat(e4m3 ? 0x7e : 0x7b));
  const nanCode = i32x4.splat(e4m3 ? 0x7f : 0x7e);
  const infCode = i32x4.splat(e4m3 ? 0x7f : 0x7c);
  o = v128.bitselect(infCode, o, i32x4.eq(a, i32x4.splat(0x7f800000)));
  o = v128.bitselect(nanCode, o, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  return v128.or(o, i32x4.shr_u(sign, 24));
}

/**
 * One row of a tile: adds W's 8 elements at w to the sums lo/hi, rounds, stores 8 results at out;
 * returns lanes of all ones where a result is Inf or NaN.
 */
// @ts-ignore: decorator
@inline function finishRow(w: usize, wType: i32, out: usize, outType: i32, lo: v128, hi: v128): v128 {
  if (wType == F32) {
    lo = f32x4.add(lo, v128.load(w));
    hi = f32x4.add(hi, v128.load(w, 16));
  } else if (wType >= E4M3) {
    const raw = i16x8.extend_low_i8x16_u(v128.load64_zero(w));
    lo = f32x4.add(lo, widen(i32x4.extend_low_i16x8_u(raw), wType));
    hi = f32x4.add(hi, widen(i32x4.extend_high_i16x8_u(raw), wType));
  } else {
    const raw = v128.load(w);
    lo = f32x4.add(lo, widen(i32x4.extend_low_i16x8_u(raw), wType));
    hi = f32x4.add(hi, widen(i32x4.extend_high_i16x8_u(raw), wType));
  }
  if (outType == F32) {
    v128.store(out, lo);
    v128.store(out, hi, 16);
    const e = i32x4.splat(0x7f800000);
    return v128.or(i32x4.eq(v128.and(lo, e), e), i32x4.eq(v128.and(hi, e), e));
  }
  if (outType >= E4M3) {
    const e4m3 = outType == E4M3;
    const h16 = i16x8.narrow_i32x4_u(floatToF8(lo, e4m3), floatToF8(hi, e4m3));
    const h8 = i8x16.narrow_i16x8_u(h16, h16);
    v128.store64_lane(out, h8, 0);
    // Saturated, so only NaN (and e5m2's Inf) is special: 0x7f / 0x7c to 0x7f in the low bits.
    const special = i8x16.splat(e4m3 ? 0x7f : 0x7c);
    return i8x16.eq(v128.and(h8, special), special);
  }
  let h: v128;
  let e: v128;
  if (outType == F16) {
    h = i16x8.narrow_i32x4_u(floatToHalf(lo), floatToHalf(hi));
    e = i16x8.splat(0x7c00);
  } else {
    h = i16x8.narrow_i32x4_u(floatToBfloat(lo), floatToBfloat(hi));
    e = i16x8.splat(0x7f80);
  }
  v128.store(out, h);
  return i16x8.eq(v128.and(h, e), e);
}

// --- the tile ----------------------------------------------------------------------------------

/** 4 rows × 8 columns. Strides in bytes; `left` points at row 0's rank values. */
function tile(w: usize, wStride: usize, wType: i32, out: usize, outStride: usize, outType: i32,
  left: usize, rank: i32, right: usize, rightStride: usize): v128 {
  // The low-rank sum starts from zero and W is added last (as on the GPU): the sum's rounding
  // errors then scale with the sum, not with W, which keeps more outputs correctly rounded.
  const zero = f32x4.splat(0);
  let a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero, a30 = zero, a31 = zero;
  const leftStride = <usize>rank << 2;
  let l = left;
  let r = right;
  for (let k = 0; k < rank; k++) {
    const r0 = v128.load(r);
    const r1 = v128.load(r, 16);
    let c = v128.load32_splat(l);
    a00 = f32x4.add(a00, f32x4.mul(c, r0));
    a01 = f32x4.add(a01, f32x4.mul(c, r1));
    c = v128.load32_splat(l + leftStride);
    a10 = f32x4.add(a10, f32x4.mul(c, r0));
    a11 = f32x4.add(a11, f32x4.mul(c, r1));
    c = v128.load32_splat(l + 2 * leftStride);
    a20 = f32x4.add(a20, f32x4.mul(c, r0));
    a21 = f32x4.add(a21, f32x4.mul(c, r1));
    c = v128.load32_splat(l + 3 * leftStride);
    a30 = f32x4.add(a30, f32x4.mul(c, r0));
    a31 = f32x4.add(a31, f32x4.mul(c, r1));
    l += 4;
    r += rightStride;
  }
  let bad = finishRow(w, wType, out, outType, a00, a01);
  bad = v128.or(bad, finishRow(w + wStride, wType, out + outStride, outType, a10, a11));
  bad = v128.or(bad, finishRow(w + 2 * wStride, wType, out + 2 * outStride, outType, a20, a21));
  return v128.or(bad, finishRow(w + 3 * wStride, wType, out + 3 * outStride, outType, a30, a31));
}

function bytesOf(dtype: i32): usize {
  return dtype == F32 ? 4 : dtype >= E4M3 ? 1 : 2;
}

/**
 * Four rows (at w/out with the given row strides): whole 8-column tiles in place, the last
 * cols % 8 columns through zero-padded 4 × 8 tiles in scratch (2 × 128 bytes).
 */
function rowBlock(w: usize, wStride: usize, wType: i32, out: usize, outStride: usize, outType: i32,
  cols: i32, left: usize, rank: i32, right: usize, rightStride: usize, scratch: usize): v128 {
  const wb = bytesOf(wType), ob = bytesOf(outType);
  const full = cols & ~7;
  let bad = i32x4.splat(0);
  for (let c = 0; c < full; c += 8) {
    bad = v128.or(bad, tile(w + <usize>c * wb, wStride, wType, out + <usize>c * ob, outStride, outType,
      left, rank, right + (<usize>c << 2), rightStride));
  }
  const tail = cols - full;
  if (tail == 0) return bad;
  const tw = scratch, to = scratch + 128;
  memory.fill(tw, 0, 128);
  for (let i: usize = 0; i < 4; i++) memory.copy(tw + i * 8 * wb, w + i * wStride + <usize>full * wb, <usize>tail * wb);
  bad = v128.or(bad, tile(tw, 8 * wb, wType, to, 8 * ob, outType, left, rank, right + (<usize>full << 2), rightStride));
  for (let i: usize = 0; i < 4; i++) memory.copy(out + i * outStride + <usize>full * ob, to + i * 8 * ob, <usize>tail * ob);
  return bad;
}

/**
 * out = round(W + left · right) for `rows` rows. Rows past the last multiple of 4 go through a
 * zero-padded block in scratch, which needs 4 · rank · 4 + 4 · cols · (wBytes + outBytes) + 256
 * bytes. Returns 1 if any result is Inf or NaN.
 */
export function mergeRows(w: usize, wType: i32, out: usize, outType: i32, rows: i32, cols: i32,
  left: usize, rank: i32, right: usize, rightStride: i32, scratch: usize): i32 {
  const wb = bytesOf(wType), ob = bytesOf(outType);
  const wStride = <usize>cols * wb, outStride = <usize>cols * ob;
  const rs = <usize>rightStride << 2;
  const leftStride = <usize>rank << 2;
  const full = rows & ~3;
  let bad = i32x4.splat(0);
  for (let r = 0; r < full; r += 4) {
    bad = v128.or(bad, rowBlock(w + <usize>r * wStride, wStride, wType, out + <usize>r * outStride, outStride, outType,
      cols, left + <usize>r * leftStride, rank, right, rs, scratch));
  }
  const tail = rows - full;
  if (tail > 0) {
    const tl = scratch + 256;
    const tw = tl + 4 * leftStride;
    const to = tw + 4 * wStride;
    memory.fill(tl, 0, 4 * leftStride + 4 * wStride);
    memory.copy(tl, left + <usize>full * leftStride, <usize>tail * leftStride);
    memory.copy(tw, w + <usize>full * wStride, <usize>tail * wStride);
    bad = v128.or(bad, rowBlock(tw, wStride, wType, to, outStride, outType, cols, tl, rank, right, rs, scratch));
    memory.copy(out + <usize>full * outStride, to, <usize>tail * outStride);
  }
  return v128.any_true(bad) ? 1 : 0;
}
