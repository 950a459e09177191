/**
 * fp8 encoding shared by the WebAssembly modules (AssemblyScript, SIMD): four f32 magnitudes at a
 * time to e4m3fn or e5m2 codes.
 */

/**
 * |V| → fp8 magnitude codes, nearest even, saturating at the largest finite code: normals by
 * rebiasing with a rounding bias (as for f16), subnormal results by a float add of a magic number
 * whose ulp is the fp8 subnormal quantum. NaN → NaN; Inf → e5m2's Inf, e4m3fn's NaN (it has none).
 */
// @ts-ignore: decorator
@inline export function f8Bits(a: v128, e4m3: bool): v128 {
  const drop = e4m3 ? 20 : 21;
  const odd = v128.and(i32x4.shr_u(a, drop), i32x4.splat(1));
  const rebias = e4m3 ? ((7 - 127) << 23) + 0x7ffff : ((15 - 127) << 23) + 0xfffff;
  let o = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(rebias)), odd), drop);
  // Below the smallest normal (2^-6, 2^-14): magic 2^14 or 2^7, whose ulp is 2^-9 or 2^-16.
  const small = i32x4.lt_s(a, i32x4.splat(e4m3 ? 121 << 23 : 113 << 23));
  const magic = i32x4.splat(e4m3 ? 141 << 23 : 134 << 23);
  o = v128.bitselect(i32x4.sub(f32x4.add(a, magic), magic), o, small);
  o = i32x4.min_s(o, i32x4.splat(e4m3 ? 0x7e : 0x7b));
  if (v128.any_true(i32x4.ge_s(a, i32x4.splat(0x7f800000)))) {
    o = v128.bitselect(i32x4.splat(e4m3 ? 0x7f : 0x7c), o, i32x4.eq(a, i32x4.splat(0x7f800000)));
    o = v128.bitselect(i32x4.splat(e4m3 ? 0x7f : 0x7e), o, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  }
  return o;
}
