// W's loader for merge-low-rank.wgsl where the adapter grants `shader-f16` and W is f16: the GPU
// converts each f16 to f32 itself (exact for normal values). WGSL lets a GPU flush f16 subnormals,
// so those elements are listed for the host (subnormalW8) instead of trusted. The module that
// uses this starts with `enable f16;`.

/// Eight f16 elements of W in row `row`, tile column `tc`.
fn loadW8(row: u32, tc: u32) -> mat2x4<f32> {
  let w = wIn[row * P.inStride4 + tc];
  return mat2x4(vec4(vec2<f32>(bitcast<vec2<f16>>(w.x)), vec2<f32>(bitcast<vec2<f16>>(w.y))),
                vec4(vec2<f32>(bitcast<vec2<f16>>(w.z)), vec2<f32>(bitcast<vec2<f16>>(w.w))));
}

/// The f16 subnormals among the 8 elements (exponent bits 0, mantissa not).
fn subnormalW8(row: u32, tc: u32) -> array<vec4<bool>, 2> {
  let w = wIn[row * P.inStride4 + tc];
  let lo = w & vec4(0xffffu);
  let hi = (w >> vec4(16u)) & vec4(0xffffu);
  let h0 = vec4(lo.x, hi.x, lo.y, hi.y);
  let h1 = vec4(lo.z, hi.z, lo.w, hi.w);
  return array(((h0 & vec4(0x7c00u)) == vec4(0u)) & ((h0 & vec4(0x3ffu)) != vec4(0u)),
               ((h1 & vec4(0x7c00u)) == vec4(0u)) & ((h1 & vec4(0x3ffu)) != vec4(0u)));
}
