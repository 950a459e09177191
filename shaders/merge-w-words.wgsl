// W's loader for merge-low-rank.wgsl: W as u32 words of any dtype, decoded by integer arithmetic
// (or exact float arithmetic where SHIFT_FREE), so every GPU decodes it the same way.

/// Eight elements of W in row `row`, tile column `tc`.
fn loadW8(row: u32, tc: u32) -> mat2x4<f32> {
  if (IN_DTYPE == 0u) {
    let i = row * P.inStride4 + tc * 2u;
    return mat2x4(bitcast<vec4<f32>>(wIn[i]), bitcast<vec4<f32>>(wIn[i + 1u]));
  }
  if (IN_DTYPE >= 3u) {
    // Eight bytes: the low or high half of a vec4, by the tile column's parity.
    let v = wIn[row * P.inStride4 + tc / 2u];
    let c = (tc & 1u) * 2u;
    return mat2x4(f8WordToF32(v[c]), f8WordToF32(v[c + 1u]));
  }
  let w = wIn[row * P.inStride4 + tc];
  if (SHIFT_FREE == 1u) {
    if (IN_DTYPE == 1u) {
      return mat2x4(vec4(unpack2x16float(w.x), unpack2x16float(w.y)), vec4(unpack2x16float(w.z), unpack2x16float(w.w)));
    }
    let lo = (w & vec4(0xffffu)) * vec4(65536u);
    let hi = w & vec4(0xffff0000u);
    return mat2x4(bitcast<vec4<f32>>(vec4(lo.x, hi.x, lo.y, hi.y)), bitcast<vec4<f32>>(vec4(lo.z, hi.z, lo.w, hi.w)));
  }
  return mat2x4(halvesToF32(vec4(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u)),
               halvesToF32(vec4(w.z & 0xffffu, w.z >> 16u, w.w & 0xffffu, w.w >> 16u)));
}

/// W's elements (row, 8 columns) that are f32 subnormals, which a GPU may flush to zero in the add:
/// only f32 and bf16 W hold any (f16 and fp8 subnormals are normal f32 values).
fn subnormalW8(row: u32, tc: u32) -> array<vec4<bool>, 2> {
  if (IN_DTYPE == 0u) {
    let i = row * P.inStride4 + tc * 2u;
    return array(subnormalBits(wIn[i]), subnormalBits(wIn[i + 1u]));
  }
  if (IN_DTYPE == 2u) {
    let w = wIn[row * P.inStride4 + tc];
    let lo = (w & vec4(0xffffu)) * vec4(65536u);
    let hi = w & vec4(0xffff0000u);
    return array(subnormalBits(vec4(lo.x, hi.x, lo.y, hi.y)), subnormalBits(vec4(lo.z, hi.z, lo.w, hi.w)));
  }
  return array(vec4(false), vec4(false));
}
