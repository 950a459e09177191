// Fused low-rank update of a weight matrix, rounded once to the output dtype and certified:
//   V = W + L·R          (L: rows × rank, R: rank × cols; adapters' weights and scales folded in)
//   out = round(V)       and the indices of the elements whose rounding V cannot vouch for.
//
// Certification (src/engine/exact/error-bounds.ts proves it): every element gets a bound
// B = gnl[row] · nr[col] + u · |V| on its distance from the exact result, with gnl and nr the
// extra last rows of Lᵀ and R, and u the uniform's. An element whose V lies within B of a rounding
// boundary of the output dtype (a midpoint between two neighbouring values) has its index appended
// to `flags` for the host to recompute; so does one whose W is an f32 subnormal, which a GPU may
// flush to zero. WGSL's f32 operations are only faithfully rounded, which the host's u allows for;
// the conversions here are integer arithmetic, exact whatever the GPU's rounding.
//
// Each invocation owns an 8×8 tile: 64 f32 accumulators, and per rank step two vec4 loads of Lᵀ
// and two of R for 64 multiply-adds. Loads and stores are whole vec4s only: the host pads every row
// of W, of the output, of Lᵀ and of R to a multiple of 8 elements (16 bytes of f16/bf16, 32 of
// f32; fp8 rows to 16 elements), zero-filled, and the rows of a dispatch to a multiple of 8, so no
// load or store is conditional. Invocations are laid out as a 2-D workgroup of WG_X column tiles
// by WG_Y row tiles (the host chooses it from the adapter's limits and subgroup size): lanes next
// to each other read neighbouring 16-byte pieces of the same rows of W and R.
// f16 and bf16 are converted by hand (no shader-f16 needed) with exact round-to-nearest-even: with
// bit shifts, or with float arithmetic where shifts are slow (SHIFT_FREE). fp8 rows (8 bytes per
// tile, half a vec4): two neighbouring tiles write the two halves of one vec4, component by
// component, so they share no word. fp8 results saturate at the largest finite value (±448
// e4m3fn, ±57344 e5m2); only NaN or Inf in V is reported.
// W's loader, `loadW8`, comes from merge-w-words.wgsl (u32 words, any dtype) or, where the
// adapter grants shader-f16, merge-w-f16.wgsl (f16 W converted by the GPU).

override IN_DTYPE: u32 = 0u;   // 0 f32, 1 f16, 2 bf16, 3 fp8 e4m3fn, 4 fp8 e5m2
override OUT_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16, 3 fp8 e4m3fn, 4 fp8 e5m2
override WG_X: u32 = 64u;
override WG_Y: u32 = 1u;
// 1: convert f16/bf16 with float arithmetic, integer multiplies and masks, never a vector shift.
// For SwiftShader, a GPU emulated on the CPU: its JIT turns every vector shift into four scalar
// ones, which made the integer conversions cost more than the matmul. Exact (round to nearest
// even) wherever f32 adds are IEEE and not reassociated, as on SwiftShader; tested there.
override SHIFT_FREE: u32 = 0u;

struct Params {
  rows: u32,          // real rows of W in this dispatch
  colTiles: u32,      // padded cols / 8
  rank: u32,          // padded to a multiple of 4; Lᵀ's and R's rows of norms follow
  rowTiles: u32,      // padded rows / 8
  inStride4: u32,     // vec4 words per row of W in
  outStride4: u32,    // vec4 words per row of W out
  lStride4: u32,      // vec4s per row of Lᵀ (padded rows / 4)
  rStride4: u32,      // vec4s per row of R (padded cols / 4)
  u: f32,             // the bound's relative term
  listCap: u32,       // room for indices in `flags`
  certify: u32,       // 0: V is exact (no terms), nothing to list
  pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> wIn: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> lt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rt: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> wOut: array<vec4<u32>>;
// [0]: some V is Inf or NaN (or rounds to Inf); [1]: elements listed; [2, 2 + listCap): their
// indices, row · (colTiles · 8) + column within this dispatch.
@group(0) @binding(5) var<storage, read_write> flags: array<atomic<u32>>;

fn f16BitsToF32(h: vec4<u32>) -> vec4<f32> {
  let sign = (h & vec4(0x8000u)) << vec4(16u);
  let em = h & vec4(0x7fffu);
  let normal = (em << vec4(13u)) + vec4(0x38000000u);
  let special = (em << vec4(13u)) | vec4(0x7f800000u);
  // Subnormal f16 values are normal f32 values: mantissa · 2^-24 is exact.
  let sub = bitcast<vec4<u32>>(vec4<f32>(em) * 5.9604644775390625e-8);
  var bits = select(normal, sub, em < vec4(0x400u));
  bits = select(bits, special, em >= vec4(0x7c00u));
  return bitcast<vec4<f32>>(bits | sign);
}

fn f32BitsToF16(x: vec4<u32>) -> vec4<u32> {
  let sign = (x >> vec4(16u)) & vec4(0x8000u);
  let ax = x & vec4(0x7fffffffu);
  // Normal results: rebias the exponent, round the 13 dropped bits to nearest even (a carry into
  // the exponent is the correct result, up to Inf).
  let normal = (ax - vec4(0x38000000u) + vec4(0xfffu) + ((ax >> vec4(13u)) & vec4(1u))) >> vec4(13u);
  // Subnormal results: shift the full mantissa right by 126 - exponent and round to nearest even.
  let e = min(ax >> vec4(23u), vec4(126u));
  let shift = min(vec4(126u) - e, vec4(31u));
  let mant = (ax & vec4(0x7fffffu)) | vec4(0x800000u);
  let h = mant >> shift;
  let rest = mant & ((vec4(1u) << shift) - vec4(1u));
  let half = vec4(1u) << (shift - vec4(1u));
  let up = (rest > half) | ((rest == half) & ((h & vec4(1u)) == vec4(1u)));
  var r = select(normal, h + select(vec4(0u), vec4(1u), up), ax < vec4(0x38800000u));
  r = select(r, vec4(0x7c00u), ax >= vec4(0x47800000u));
  r = select(r, vec4(0x7e00u), ax > vec4(0x7f800000u));
  return r | sign;
}

fn f32BitsToBf16(x: vec4<u32>) -> vec4<u32> {
  let rounded = ((x + vec4(0x7fffu) + ((x >> vec4(16u)) & vec4(1u))) >> vec4(16u)) & vec4(0xffffu);
  let quiet = ((x >> vec4(16u)) | vec4(0x40u)) & vec4(0xffffu);
  return select(rounded, quiet, (x & vec4(0x7fffffffu)) > vec4(0x7f800000u));
}

/// f32 → f16 bits (low 16) without shifts, rounded to nearest even. With c = 2^(E+13) for |x| in
/// [2^E, 2^(E+1)), |x| + c keeps exactly the f16 mantissa bits and the adder rounds them; c is at
/// least 0.5 so that f16 subnormal results round to a multiple of 2^-24 the same way. r then has
/// 13 low zero bits, so its bits / 8192 is exact in f32; subnormal results are r · 2^24. The integer
/// (< 2^18) leaves the float through the 2^23 trick. Inf and NaN results are caught by the caller
/// from V, and any result from 65520 up packs as 0x7c00.
fn f32ToF16ShiftFree(x: vec4<f32>) -> vec4<u32> {
  let xb = bitcast<vec4<i32>>(x);
  let axb = xb & vec4(0x7fffffff);
  let ax = bitcast<vec4<f32>>(axb);
  let c = max(bitcast<vec4<f32>>(axb & vec4(0x7f800000)), vec4(6.103515625e-5)) * 8192.0;
  let r = (ax + c) - c;
  let normal = vec4<f32>(bitcast<vec4<i32>>(r)) * (1.0 / 8192.0) - 114688.0;
  let k = select(normal, r * 16777216.0, axb < vec4(0x38800000));
  let h = min(bitcast<vec4<i32>>(k + 8388608.0) - vec4(0x4b000000), vec4(0x7c00));
  return bitcast<vec4<u32>>(h | select(vec4(0), vec4(0x8000), xb < vec4(0)));
}

/// f32 → bf16, rounded to nearest even, left in the top 16 bits (where the odd halves of a word go).
fn bf16Top(x: vec4<f32>) -> vec4<u32> {
  let xb = bitcast<vec4<i32>>(x);
  return bitcast<vec4<u32>>((xb + vec4(0x7fff) + min(xb & vec4(0x10000), vec4(1))) & vec4(-65536));
}

/// The top 16 bits moved to the bottom without a shift: the low 15 of them through an exact
/// int → float → int round trip (the 2^23 trick), the sign by a select.
fn topToLow(t: vec4<u32>) -> vec4<u32> {
  let k = vec4<f32>(bitcast<vec4<i32>>(t & vec4(0x7fff0000u))) * (1.0 / 65536.0);
  let low = bitcast<vec4<i32>>(k + 8388608.0) - vec4(0x4b000000);
  return bitcast<vec4<u32>>(low | select(vec4(0), vec4(0x8000), bitcast<vec4<i32>>(t) < vec4(0)));
}

fn halvesToF32(h: vec4<u32>) -> vec4<f32> {
  if (IN_DTYPE == 1u) { return f16BitsToF32(h); }
  return bitcast<vec4<f32>>(h << vec4(16u));
}

fn f32ToHalves(x: vec4<u32>) -> vec4<u32> {
  if (OUT_DTYPE == 1u) { return f32BitsToF16(x); }
  return f32BitsToBf16(x);
}

// --- fp8 ------------------------------------------------------------------------------------

/// Four fp8 bytes of a word (little-endian) as four codes, one per lane.
fn bytesOf(w: u32) -> vec4<u32> {
  return vec4(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u);
}

/// e4m3fn codes → f32, exact: normals get their bits by integer multiplies (mantissa and exponent
/// moved up by 20 bits, exponent rebiased by 120), subnormals are code · 2^-9; 0x7f is NaN.
fn e4m3ToF32(b: vec4<u32>) -> vec4<f32> {
  let mag = b & vec4(0x7fu);
  let bits = select(mag * vec4(0x100000u) + vec4(0x3c000000u), vec4(0x7fc00000u), mag == vec4(0x7fu));
  let v = select(bitcast<vec4<f32>>(bits), vec4<f32>(mag) * (1.0 / 512.0), mag < vec4(8u));
  return select(v, -v, b >= vec4(0x80u));
}

/// e5m2 codes → f32: an e5m2 code is the top byte of an f16.
fn e5m2ToF32(b: vec4<u32>) -> vec4<f32> {
  if (SHIFT_FREE == 1u) {
    return vec4(unpack2x16float((b.x + b.y * 65536u) * 256u), unpack2x16float((b.z + b.w * 65536u) * 256u));
  }
  return f16BitsToF32(b << vec4(8u));
}

fn f8WordToF32(w: u32) -> vec4<f32> {
  if (IN_DTYPE == 3u) { return e4m3ToF32(bytesOf(w)); }
  return e5m2ToF32(bytesOf(w));
}

/// f32 → fp8 codes with shifts, rounded to nearest even and saturated at the largest finite code:
/// normal results rebias and round the dropped bits (as for f16); subnormal ones shift the full
/// mantissa right and round. NaN → NaN; Inf → e5m2's Inf, e4m3fn's NaN (it has none).
fn f32BitsToF8(x: vec4<u32>) -> vec4<u32> {
  let e4m3 = OUT_DTYPE == 3u;
  let drop = select(21u, 20u, e4m3);
  let bias = select(15u, 7u, e4m3);
  let sign = (x >> vec4(24u)) & vec4(0x80u);
  let ax = x & vec4(0x7fffffffu);
  let half = vec4(1u << (drop - 1u));
  let normal = (ax - vec4((127u - bias) << 23u) + half - vec4(1u) + ((ax >> vec4(drop)) & vec4(1u))) >> vec4(drop);
  let e = ax >> vec4(23u);
  let shift = min(vec4(drop + 128u - bias) - min(e, vec4(127u - bias)), vec4(31u));
  let mant = (ax & vec4(0x7fffffu)) | vec4(0x800000u);
  let h = mant >> shift;
  let rest = mant & ((vec4(1u) << shift) - vec4(1u));
  let halfSub = vec4(1u) << (shift - vec4(1u));
  let up = (rest > halfSub) | ((rest == halfSub) & ((h & vec4(1u)) == vec4(1u)));
  var r = select(normal, h + select(vec4(0u), vec4(1u), up), ax < vec4((128u - bias) << 23u));
  r = select(min(r, vec4(select(0x7bu, 0x7eu, e4m3))), vec4(select(0x7cu, 0x7fu, e4m3)), ax >= vec4(0x7f800000u));
  r = select(r, vec4(select(0x7eu, 0x7fu, e4m3)), ax > vec4(0x7f800000u));
  return r | sign;
}

/// f32 → fp8 codes without shifts (see f32ToF16ShiftFree): |x| (clamped to 2^16, which saturates
/// anyway) plus c = 2^(E + 23 - m) keeps m mantissa bits, rounded by the adder; c is at least the
/// smallest normal's so subnormal results round to the subnormal quantum. The code is r's bits
/// over 2^(23 - m) (exact: few significant bits) rebiased, or r over the quantum; it leaves the
/// float through the 2^23 trick. Inf and NaN keep codes the host reads as not finite (e5m2's Inf,
/// or NaN), as f32BitsToF8 gives them: the host recomputes exactly only the elements whose codes
/// say so (settleNonFinite), and a saturated code would hide them (an Inf·0 NaN came out as ±57344).
fn f32ToF8ShiftFree(x: vec4<f32>) -> vec4<u32> {
  let e4m3 = OUT_DTYPE == 3u;
  let xb = bitcast<vec4<i32>>(x);
  let axb = xb & vec4(0x7fffffff);
  let ax = min(bitcast<vec4<f32>>(axb), vec4(65536.0));
  let minNormal = select(6.103515625e-5, 0.015625, e4m3);       // 2^-14, 2^-6
  let step = select(2097152.0, 1048576.0, e4m3);                // 2^(23 - m)
  let c = max(bitcast<vec4<f32>>(bitcast<vec4<i32>>(ax) & vec4(0x7f800000)), vec4(minNormal)) * step;
  let r = (ax + c) - c;
  let normal = vec4<f32>(bitcast<vec4<i32>>(r)) * (1.0 / step) - select(448.0, 960.0, e4m3); // (127 - bias) · 2^m
  let k = select(normal, r * select(65536.0, 512.0, e4m3), ax < vec4(minNormal));       // r over the quantum
  let h = min(bitcast<vec4<i32>>(k + 8388608.0) - vec4(0x4b000000), vec4(select(0x7b, 0x7e, e4m3)));
  let special = select(vec4(select(0x7c, 0x7f, e4m3)), vec4(select(0x7e, 0x7f, e4m3)), axb > vec4(0x7f800000));
  let code = select(h, special, axb >= vec4(0x7f800000));
  return bitcast<vec4<u32>>(code + select(vec4(0), vec4(0x80), xb < vec4(0)));
}

/// Four codes packed into a word, element 0 in the lowest byte.
fn packF8(c: vec4<u32>) -> u32 {
  if (SHIFT_FREE == 1u) { return dot(c, vec4(1u, 256u, 65536u, 16777216u)); }
  return c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u);
}

fn f32ToF8Word(x: vec4<f32>) -> u32 {
  if (SHIFT_FREE == 1u) { return packF8(f32ToF8ShiftFree(x)); }
  return packF8(f32BitsToF8(bitcast<vec4<u32>>(x)));
}

/// |V| (as bits) from which the output dtype's rounding gives Inf (NaN is above it too):
/// f32 Inf; f16 65520, the tie above 65504; bf16 the tie above its largest finite value; fp8
/// saturates, so only Inf and NaN.
fn overflowBits() -> i32 {
  if (OUT_DTYPE == 0u || OUT_DTYPE >= 3u) { return 0x7f800000; }
  if (OUT_DTYPE == 1u) { return 0x477ff000; }
  return 0x7f7f8000;
}

/// Bits of max(|a|, |b|) per lane, to compare with overflowBits() once per tile.
fn magnitudeBits(a: vec4<f32>, b: vec4<f32>) -> vec4<i32> {
  return max(bitcast<vec4<i32>>(a) & vec4(0x7fffffff), bitcast<vec4<i32>>(b) & vec4(0x7fffffff));
}

/// Writes eight values to row `row`, tile column `tc`.
fn storeOut8(row: u32, tc: u32, a: vec4<f32>, b: vec4<f32>) {
  if (OUT_DTYPE == 0u) {
    let i = row * P.outStride4 + tc * 2u;
    wOut[i] = bitcast<vec4<u32>>(a);
    wOut[i + 1u] = bitcast<vec4<u32>>(b);
    return;
  }
  if (OUT_DTYPE >= 3u) {
    // Two words: components 0–1 or 2–3 of a vec4; the neighbouring tile writes the other two.
    let i = row * P.outStride4 + tc / 2u;
    let c = (tc & 1u) * 2u;
    wOut[i][c] = f32ToF8Word(a);
    wOut[i][c + 1u] = f32ToF8Word(b);
    return;
  }
  if (SHIFT_FREE == 1u) {
    // Even elements take the low half of a word, odd ones the high half.
    if (OUT_DTYPE == 1u) {
      let ha = f32ToF16ShiftFree(a);
      let hb = f32ToF16ShiftFree(b);
      wOut[row * P.outStride4 + tc] = vec4(ha.x, ha.z, hb.x, hb.z) | (vec4(ha.y, ha.w, hb.y, hb.w) * vec4(65536u));
    } else {
      let ta = bf16Top(a);
      let tb = bf16Top(b);
      wOut[row * P.outStride4 + tc] = topToLow(vec4(ta.x, ta.z, tb.x, tb.z)) | vec4(ta.y, ta.w, tb.y, tb.w);
    }
    return;
  }
  let ha = f32ToHalves(bitcast<vec4<u32>>(a));
  let hb = f32ToHalves(bitcast<vec4<u32>>(b));
  wOut[row * P.outStride4 + tc] = vec4(ha.x | (ha.y << 16u), ha.z | (ha.w << 16u), hb.x | (hb.y << 16u), hb.z | (hb.w << 16u));
}

// --- certification ----------------------------------------------------------------------------

/// The output dtype's grid (error-bounds.ts): f32 mantissa bits the dtype drops, the quarter step
/// per 2^E, its smallest normal, and the inverse of its subnormal step (0 for bf16, whose step is no
/// f32).
fn dropBits() -> u32 {
  if (OUT_DTYPE == 2u) { return 16u; }
  if (OUT_DTYPE == 3u) { return 20u; }
  if (OUT_DTYPE == 4u) { return 21u; }
  return 13u;
}
fn minNormalOut() -> f32 {
  if (OUT_DTYPE == 2u) { return 1.1754943508222875e-38; }
  if (OUT_DTYPE == 3u) { return 0.015625; }
  return 6.103515625e-5;
}
fn invQuantum() -> f32 {
  if (OUT_DTYPE == 2u) { return 0.0; }
  if (OUT_DTYPE == 3u) { return 512.0; }
  if (OUT_DTYPE == 4u) { return 65536.0; }
  return 16777216.0;
}

/// Lanes whose rounding is not certain, for |V| = a and bound b (see the CPU kernel's `uncertain`,
/// wasm/merge-kernel.ts, which this mirrors): a midpoint within b, b at least a quarter step, or
/// below the dtype's smallest normal a midpoint of the uniform grid within b or b ≥ a. Every value
/// compared is computed exactly (masks, powers of two, a difference within one binade), so a
/// faithfully rounding GPU gets the same answers; an underflow to 0 only lists more.
fn uncertain(a: vec4<f32>, b: vec4<f32>) -> vec4<bool> {
  let drop = dropBits();
  let ab = bitcast<vec4<u32>>(a);
  let mid = bitcast<vec4<f32>>((ab & vec4(~((1u << drop) - 1u))) | vec4(1u << (drop - 1u)));
  let quarter = bitcast<vec4<f32>>(ab & vec4(0x7f800000u)) * bitcast<f32>((127u + drop - 25u) << 23u);
  var flag = (abs(a - mid) < b) | (quarter < b);
  let small = a < vec4(minNormalOut());
  if (any(small)) {
    var s = a < b;
    let inv = invQuantum();
    if (inv != 0.0) {
      let t = a * inv;
      s = s | (abs(t - floor(t) - 0.5) < b * inv);
    } else {
      s = b > vec4(0.0);
    }
    flag = select(flag, s, small);
  }
  return flag;
}

fn append(index: u32) {
  let n = atomicAdd(&flags[1], 1u);
  if (n < P.listCap) { atomicStore(&flags[2u + n], index); }
}

/// Lists the set lanes of m0 (columns col..col+3) and m1 (col+4..col+7) of padded row `row`.
fn list8(m0: vec4<bool>, m1: vec4<bool>, row: u32, col: u32) {
  let base = row * P.colTiles * 8u + col;
  for (var l = 0u; l < 4u; l++) {
    if (m0[l]) { append(base + l); }
    if (m1[l]) { append(base + 4u + l); }
  }
}

/// W's f32 subnormals in row `row`, tile column `tc` (a GPU may flush them): only f32 and bf16 W
/// hold any (loaders with other subnormal inputs list theirs in `subnormalW8`).
fn subnormalBits(bits: vec4<u32>) -> vec4<bool> {
  return ((bits & vec4(0x7f800000u)) == vec4(0u)) & ((bits & vec4(0x7fffffffu)) != vec4(0u));
}

/// One row of a tile: V = sums + W, stored rounded, listed where uncertain; returns |V|'s bits.
fn finishRow(row: u32, tc: u32, s0: vec4<f32>, s1: vec4<f32>, g: f32, nr0: vec4<f32>, nr1: vec4<f32>) -> vec4<i32> {
  let w = loadW8(row, tc);
  let v0 = s0 + w[0];
  let v1 = s1 + w[1];
  storeOut8(row, tc, v0, v1);
  if (P.certify != 0u && row < P.rows) {
    let a0 = abs(v0);
    let a1 = abs(v1);
    let sub = subnormalW8(row, tc);
    let m0 = uncertain(a0, g * nr0 + P.u * a0) | sub[0];
    let m1 = uncertain(a1, g * nr1 + P.u * a1) | sub[1];
    if (any(m0) || any(m1)) { list8(m0, m1, row, tc * 8u); }
  }
  return select(vec4(0), magnitudeBits(v0, v1), row < P.rows);
}

@compute @workgroup_size(WG_X, WG_Y)
fn mergeTiles(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tc = gid.x;
  let tr = gid.y;
  if (tc >= P.colTiles || tr >= P.rowTiles) { return; }
  var r0a = vec4<f32>(0.0);
  var r0b = vec4<f32>(0.0);
  var r1a = vec4<f32>(0.0);
  var r1b = vec4<f32>(0.0);
  var r2a = vec4<f32>(0.0);
  var r2b = vec4<f32>(0.0);
  var r3a = vec4<f32>(0.0);
  var r3b = vec4<f32>(0.0);
  var r4a = vec4<f32>(0.0);
  var r4b = vec4<f32>(0.0);
  var r5a = vec4<f32>(0.0);
  var r5b = vec4<f32>(0.0);
  var r6a = vec4<f32>(0.0);
  var r6b = vec4<f32>(0.0);
  var r7a = vec4<f32>(0.0);
  var r7b = vec4<f32>(0.0);
  var li = tr * 2u;
  var ri = tc * 2u;
  // Four rank steps per iteration (the host pads the rank to a multiple of 4 with zero rows):
  // SwiftShader keeps loop-carried values in memory, so the 64 accumulators are loaded and stored
  // once per four steps instead of every step (3–15% less SwiftShader CPU time at r = 64). The sum
  // starts from zero and W is added last: its rounding errors scale with the sum, not with W.
  for (var k = 0u; k < P.rank; k += 4u) {
    {
      let l0 = lt[li];
      let l1 = lt[li + 1u];
      let ra = rt[ri];
      let rb = rt[ri + 1u];
      r0a += l0.x * ra; r0b += l0.x * rb; r1a += l0.y * ra; r1b += l0.y * rb;
      r2a += l0.z * ra; r2b += l0.z * rb; r3a += l0.w * ra; r3b += l0.w * rb;
      r4a += l1.x * ra; r4b += l1.x * rb; r5a += l1.y * ra; r5b += l1.y * rb;
      r6a += l1.z * ra; r6b += l1.z * rb; r7a += l1.w * ra; r7b += l1.w * rb;
      li += P.lStride4;
      ri += P.rStride4;
    }
    {
      let l0 = lt[li];
      let l1 = lt[li + 1u];
      let ra = rt[ri];
      let rb = rt[ri + 1u];
      r0a += l0.x * ra; r0b += l0.x * rb; r1a += l0.y * ra; r1b += l0.y * rb;
      r2a += l0.z * ra; r2b += l0.z * rb; r3a += l0.w * ra; r3b += l0.w * rb;
      r4a += l1.x * ra; r4b += l1.x * rb; r5a += l1.y * ra; r5b += l1.y * rb;
      r6a += l1.z * ra; r6b += l1.z * rb; r7a += l1.w * ra; r7b += l1.w * rb;
      li += P.lStride4;
      ri += P.rStride4;
    }
    {
      let l0 = lt[li];
      let l1 = lt[li + 1u];
      let ra = rt[ri];
      let rb = rt[ri + 1u];
      r0a += l0.x * ra; r0b += l0.x * rb; r1a += l0.y * ra; r1b += l0.y * rb;
      r2a += l0.z * ra; r2b += l0.z * rb; r3a += l0.w * ra; r3b += l0.w * rb;
      r4a += l1.x * ra; r4b += l1.x * rb; r5a += l1.y * ra; r5b += l1.y * rb;
      r6a += l1.z * ra; r6b += l1.z * rb; r7a += l1.w * ra; r7b += l1.w * rb;
      li += P.lStride4;
      ri += P.rStride4;
    }
    {
      let l0 = lt[li];
      let l1 = lt[li + 1u];
      let ra = rt[ri];
      let rb = rt[ri + 1u];
      r0a += l0.x * ra; r0b += l0.x * rb; r1a += l0.y * ra; r1b += l0.y * rb;
      r2a += l0.z * ra; r2b += l0.z * rb; r3a += l0.w * ra; r3b += l0.w * rb;
      r4a += l1.x * ra; r4b += l1.x * rb; r5a += l1.y * ra; r5b += l1.y * rb;
      r6a += l1.z * ra; r6b += l1.z * rb; r7a += l1.w * ra; r7b += l1.w * rb;
      li += P.lStride4;
      ri += P.rStride4;
    }
  }
  // The rows of norms after the rank rows: G · ‖L row‖ for the tile's 8 rows, ‖R column‖ for its 8 columns.
  let g0 = lt[P.rank * P.lStride4 + tr * 2u];
  let g1 = lt[P.rank * P.lStride4 + tr * 2u + 1u];
  let nr0 = rt[P.rank * P.rStride4 + tc * 2u];
  let nr1 = rt[P.rank * P.rStride4 + tc * 2u + 1u];
  let row0 = tr * 8u;
  var worst = finishRow(row0, tc, r0a, r0b, g0.x, nr0, nr1);
  worst = max(worst, finishRow(row0 + 1u, tc, r1a, r1b, g0.y, nr0, nr1));
  worst = max(worst, finishRow(row0 + 2u, tc, r2a, r2b, g0.z, nr0, nr1));
  worst = max(worst, finishRow(row0 + 3u, tc, r3a, r3b, g0.w, nr0, nr1));
  worst = max(worst, finishRow(row0 + 4u, tc, r4a, r4b, g1.x, nr0, nr1));
  worst = max(worst, finishRow(row0 + 5u, tc, r5a, r5b, g1.y, nr0, nr1));
  worst = max(worst, finishRow(row0 + 6u, tc, r6a, r6b, g1.z, nr0, nr1));
  worst = max(worst, finishRow(row0 + 7u, tc, r7a, r7b, g1.w, nr0, nr1));
  // Inf or NaN anywhere in the tile's real rows (padding rows are zero): one test per tile.
  if (any(worst >= vec4(overflowBits()))) { atomicOr(&flags[0], 1u); }
}
