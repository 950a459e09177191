// Fused scaled low-rank update of a weight matrix, rounded once to the output dtype:
//   V = W + L·R          (L: rows × rank, R: rank × cols, user weights and α/r scales folded in)
//   out = pack(V)        or, for DoRA, pack(V · m / (‖V‖ + eps)) with ‖V‖² from normRows/normCols.
//
// Each invocation owns an 8×8 tile of W: 64 f32 accumulators, and per rank step two vec4 loads of L
// and two of R for 64 multiply-adds. Loads and stores are whole vec4s only: the host pads every row
// of W, of the output, of Lᵀ and of R to a multiple of 8 elements (16 bytes of f16/bf16, 32 of
// f32), zero-filled, so the rank loop has no bounds checks and no two invocations share a word.
// The host also pads the rows of this dispatch to a multiple of 8 (zero rows of W and L), so no
// load or store is conditional; padding results are simply not read back.
// f16 and bf16 are converted by hand (no shader-f16 needed) with exact round-to-nearest-even: with
// bit shifts, or with float arithmetic where shifts are slow (SHIFT_FREE). fp8 rows (8 bytes per
// tile, half a vec4) are padded to 16 elements; two neighbouring tiles write the two halves of one
// vec4, component by component, so they still share no word. fp8 results saturate at the largest
// finite value (±448 e4m3fn, ±57344 e5m2); only NaN or Inf in V is reported.

override IN_DTYPE: u32 = 0u;   // 0 f32, 1 f16, 2 bf16, 3 fp8 e4m3fn, 4 fp8 e5m2
override OUT_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16, 3 fp8 e4m3fn, 4 fp8 e5m2
override DORA: u32 = 0u;       // 0 none, 1 one factor per stored row, 2 one factor per stored column
override WORKGROUP: u32 = 64u;
// 1: convert f16/bf16 with float arithmetic, integer multiplies and masks, never a vector shift.
// For SwiftShader, a GPU emulated on the CPU: its JIT turns every vector shift into four scalar
// ones, which made the integer conversions cost more than the matmul. Exact (round to nearest
// even) wherever f32 adds are IEEE and not reassociated; tested on SwiftShader against the same
// cases as the default.
override SHIFT_FREE: u32 = 0u;

struct Params {
  rows: u32,          // rows of W in this dispatch
  colTiles: u32,      // padded cols / 8
  rank: u32,
  items: u32,         // invocations with work: tiles, tile rows or tile columns
  inStride4: u32,     // vec4 words per row of W in
  outStride4: u32,    // vec4 words per row of W out
  lStride4: u32,      // vec4s per rank row of Lᵀ (padded rows / 4)
  rStride4: u32,      // vec4s per rank row of R (padded cols / 4)
  gridStride: u32,    // invocations per row of a 2-D folded dispatch grid
  normRow0: u32,      // index of this dispatch's first row in `norms`/`magnitude` (per-row DoRA)
  eps: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> wIn: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> lt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rt: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> wOut: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> norms: array<f32>;
@group(0) @binding(7) var<storage, read> magnitude: array<f32>;

/// One 8×8 tile: row j is (r{j}a, r{j}b), columns 0–3 and 4–7.
struct Tile {
  r0a: vec4<f32>,
  r0b: vec4<f32>,
  r1a: vec4<f32>,
  r1b: vec4<f32>,
  r2a: vec4<f32>,
  r2b: vec4<f32>,
  r3a: vec4<f32>,
  r3b: vec4<f32>,
  r4a: vec4<f32>,
  r4b: vec4<f32>,
  r5a: vec4<f32>,
  r5b: vec4<f32>,
  r6a: vec4<f32>,
  r6b: vec4<f32>,
  r7a: vec4<f32>,
  r7b: vec4<f32>,
}

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
/// float through the 2^23 trick. NaN and Inf results are caught by the caller from V.
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
  return bitcast<vec4<u32>>(h + select(vec4(0), vec4(0x80), xb < vec4(0)));
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

/// V = W + L·R for the 8×8 tile at tile row tr, tile column tc.
fn tileValues(tr: u32, tc: u32) -> Tile {
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
  // once per four steps instead of every step (3–15% less SwiftShader CPU time at r = 64).
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
  let row0 = tr * 8u;
  let w0 = loadW8(row0 + 0u, tc); r0a += w0[0]; r0b += w0[1];
  let w1 = loadW8(row0 + 1u, tc); r1a += w1[0]; r1b += w1[1];
  let w2 = loadW8(row0 + 2u, tc); r2a += w2[0]; r2b += w2[1];
  let w3 = loadW8(row0 + 3u, tc); r3a += w3[0]; r3b += w3[1];
  let w4 = loadW8(row0 + 4u, tc); r4a += w4[0]; r4b += w4[1];
  let w5 = loadW8(row0 + 5u, tc); r5a += w5[0]; r5b += w5[1];
  let w6 = loadW8(row0 + 6u, tc); r6a += w6[0]; r6b += w6[1];
  let w7 = loadW8(row0 + 7u, tc); r7a += w7[0]; r7b += w7[1];
  return Tile(r0a, r0b, r1a, r1b, r2a, r2b, r3a, r3b, r4a, r4b, r5a, r5b, r6a, r6b, r7a, r7b);
}

fn doraFactor(idx: u32) -> f32 {
  return magnitude[idx] / (sqrt(norms[idx]) + P.eps);
}

/// Multiplies the tile by DoRA's per-row (DORA == 1) or per-column (DORA == 2) factors. The host
/// gives padding rows and columns magnitude 0 and norm 1, so their factor is 0, not NaN.
fn scaleTile(t: ptr<function, Tile>, row0: u32, col0: u32) {
  if (DORA == 1u) {
    let f0 = doraFactor(P.normRow0 + row0 + 0u); (*t).r0a *= f0; (*t).r0b *= f0;
    let f1 = doraFactor(P.normRow0 + row0 + 1u); (*t).r1a *= f1; (*t).r1b *= f1;
    let f2 = doraFactor(P.normRow0 + row0 + 2u); (*t).r2a *= f2; (*t).r2b *= f2;
    let f3 = doraFactor(P.normRow0 + row0 + 3u); (*t).r3a *= f3; (*t).r3b *= f3;
    let f4 = doraFactor(P.normRow0 + row0 + 4u); (*t).r4a *= f4; (*t).r4b *= f4;
    let f5 = doraFactor(P.normRow0 + row0 + 5u); (*t).r5a *= f5; (*t).r5b *= f5;
    let f6 = doraFactor(P.normRow0 + row0 + 6u); (*t).r6a *= f6; (*t).r6b *= f6;
    let f7 = doraFactor(P.normRow0 + row0 + 7u); (*t).r7a *= f7; (*t).r7b *= f7;
  } else if (DORA == 2u) {
    let ca = vec4(doraFactor(col0), doraFactor(col0 + 1u), doraFactor(col0 + 2u), doraFactor(col0 + 3u));
    let cb = vec4(doraFactor(col0 + 4u), doraFactor(col0 + 5u), doraFactor(col0 + 6u), doraFactor(col0 + 7u));
    (*t).r0a *= ca; (*t).r0b *= cb;
    (*t).r1a *= ca; (*t).r1b *= cb;
    (*t).r2a *= ca; (*t).r2b *= cb;
    (*t).r3a *= ca; (*t).r3b *= cb;
    (*t).r4a *= ca; (*t).r4b *= cb;
    (*t).r5a *= ca; (*t).r5b *= cb;
    (*t).r6a *= ca; (*t).r6b *= cb;
    (*t).r7a *= ca; (*t).r7b *= cb;
  }
}

@compute @workgroup_size(WORKGROUP)
fn mergeTiles(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.gridStride;
  if (i >= P.items) { return; }
  let tr = i / P.colTiles;
  let tc = i - tr * P.colTiles;
  var t = tileValues(tr, tc);
  let row0 = tr * 8u;
  scaleTile(&t, row0, tc * 8u);
  storeOut8(row0 + 0u, tc, t.r0a, t.r0b);
  storeOut8(row0 + 1u, tc, t.r1a, t.r1b);
  storeOut8(row0 + 2u, tc, t.r2a, t.r2b);
  storeOut8(row0 + 3u, tc, t.r3a, t.r3b);
  storeOut8(row0 + 4u, tc, t.r4a, t.r4b);
  storeOut8(row0 + 5u, tc, t.r5a, t.r5b);
  storeOut8(row0 + 6u, tc, t.r6a, t.r6b);
  storeOut8(row0 + 7u, tc, t.r7a, t.r7b);
  // Inf or NaN anywhere in the tile's real rows (padding rows are zero): one test per tile.
  var worst = vec4(0);
  worst = max(worst, select(vec4(0), magnitudeBits(t.r0a, t.r0b), row0 + 0u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r1a, t.r1b), row0 + 1u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r2a, t.r2b), row0 + 2u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r3a, t.r3b), row0 + 3u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r4a, t.r4b), row0 + 4u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r5a, t.r5b), row0 + 5u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r6a, t.r6b), row0 + 6u < P.rows));
  worst = max(worst, select(vec4(0), magnitudeBits(t.r7a, t.r7b), row0 + 7u < P.rows));
  if (any(worst >= vec4(overflowBits()))) { atomicOr(&flags[0], 1u); }
}

/// Sum of squares of V per stored row: one invocation per tile row, sweeping all columns.
@compute @workgroup_size(WORKGROUP)
fn normRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tr = gid.x + gid.y * P.gridStride;
  if (tr >= P.items) { return; }
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  for (var tc = 0u; tc < P.colTiles; tc++) {
    let t = tileValues(tr, tc);
    s0 += vec4(dot(t.r0a, t.r0a) + dot(t.r0b, t.r0b), dot(t.r1a, t.r1a) + dot(t.r1b, t.r1b),
               dot(t.r2a, t.r2a) + dot(t.r2b, t.r2b), dot(t.r3a, t.r3a) + dot(t.r3b, t.r3b));
    s1 += vec4(dot(t.r4a, t.r4a) + dot(t.r4b, t.r4b), dot(t.r5a, t.r5a) + dot(t.r5b, t.r5b),
               dot(t.r6a, t.r6a) + dot(t.r6b, t.r6b), dot(t.r7a, t.r7a) + dot(t.r7b, t.r7b));
  }
  let row0 = tr * 8u;
  let sums = array(s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w);
  for (var j = 0u; j < 8u; j++) {
    if (row0 + j < P.rows) { norms[P.normRow0 + row0 + j] = sums[j]; }
  }
}

/// Sum of squares of V per stored column, added to `norms` (row slabs accumulate): one invocation
/// per tile column, sweeping the rows of this dispatch. Padding columns get sums too (of zeros).
@compute @workgroup_size(WORKGROUP)
fn normCols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tc = gid.x + gid.y * P.gridStride;
  if (tc >= P.items) { return; }
  var sa = vec4<f32>(0.0);
  var sb = vec4<f32>(0.0);
  let rowTiles = (P.rows + 7u) / 8u;
  for (var tr = 0u; tr < rowTiles; tr++) {
    let t = tileValues(tr, tc);
    sa += t.r0a * t.r0a; sb += t.r0b * t.r0b;
    sa += t.r1a * t.r1a; sb += t.r1b * t.r1b;
    sa += t.r2a * t.r2a; sb += t.r2b * t.r2b;
    sa += t.r3a * t.r3a; sb += t.r3b * t.r3b;
    sa += t.r4a * t.r4a; sb += t.r4b * t.r4b;
    sa += t.r5a * t.r5a; sb += t.r5b * t.r5b;
    sa += t.r6a * t.r6a; sb += t.r6b * t.r6b;
    sa += t.r7a * t.r7a; sb += t.r7b * t.r7b;
  }
  let c = tc * 8u;
  norms[c] += sa.x; norms[c + 1u] += sa.y; norms[c + 2u] += sa.z; norms[c + 3u] += sa.w;
  norms[c + 4u] += sb.x; norms[c + 5u] += sb.y; norms[c + 6u] += sb.z; norms[c + 7u] += sb.w;
}
