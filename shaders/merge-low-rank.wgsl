// Fused scaled low-rank update of a weight matrix, rounded once to the output dtype:
//   V = W + L·R          (L = left factor, rows × rank; R = right factor, rank × cols; scales folded in)
//   out = pack(V)        or, for DoRA, pack(V · m / (‖V‖ + eps)) with norms from `normRows`/`normCols`.
// Each invocation owns a 4×4 tile of W. L is stored transposed (rank × rows, padded to vec4) and R as
// rank × cols (padded to vec4), zero-filled past the edges, so the rank loop needs no bounds checks.
// W and the output are raw little-endian words: f32, or two f16/bf16 per u32. The host pads the output
// row stride to an even element count for 2-byte dtypes, so no two invocations ever share a word.
// f16 is converted by hand (no shader-f16 needed) with exact round-to-nearest-even.

override IN_DTYPE: u32 = 0u;   // 0 f32, 1 f16, 2 bf16
override OUT_DTYPE: u32 = 0u;  // 0 f32, 1 f16, 2 bf16
override DORA: u32 = 0u;       // 0 none, 1 one factor per stored row, 2 one factor per stored column
override WORKGROUP: u32 = 64u;

struct Params {
  rows: u32,          // rows of W in this dispatch
  cols: u32,
  rank: u32,
  colTiles: u32,      // ceil(cols / 4)
  items: u32,         // invocations with work: tiles, row tiles or column tiles
  lStride4: u32,      // vec4s per rank row of L (ceil(rows / 4))
  rStride4: u32,      // vec4s per rank row of R (ceil(cols / 4))
  outStride: u32,     // output elements per row (cols, rounded up to even for 2-byte dtypes)
  gridStride: u32,    // invocations per row of a 2-D folded dispatch grid
  normRow0: u32,      // index of this dispatch's first row in `norms`/`magnitude` (per-row DoRA)
  eps: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> wIn: array<u32>;
@group(0) @binding(2) var<storage, read> lt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> rt: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> wOut: array<u32>;
@group(0) @binding(5) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> norms: array<f32>;
@group(0) @binding(7) var<storage, read> magnitude: array<f32>;

const LANE = vec4<u32>(0u, 1u, 2u, 3u);

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

fn halvesToF32(h: vec4<u32>) -> vec4<f32> {
  if (IN_DTYPE == 1u) { return f16BitsToF32(h); }
  return bitcast<vec4<f32>>(h << vec4(16u));
}

/// Four consecutive elements of W starting at flat index i; only the first n exist (others read 0).
fn loadW4(i: u32, n: u32) -> vec4<f32> {
  if (IN_DTYPE == 0u) {
    if (n == 4u) { return bitcast<vec4<f32>>(vec4(wIn[i], wIn[i + 1u], wIn[i + 2u], wIn[i + 3u])); }
    var v = vec4<u32>(0u);
    for (var j = 0u; j < n; j++) { v[j] = wIn[i + j]; }
    return bitcast<vec4<f32>>(v);
  }
  if (n == 4u && (i & 1u) == 0u) {
    let w0 = wIn[i >> 1u];
    let w1 = wIn[(i >> 1u) + 1u];
    return halvesToF32(vec4(w0 & 0xffffu, w0 >> 16u, w1 & 0xffffu, w1 >> 16u));
  }
  var h = vec4<u32>(0u);
  for (var j = 0u; j < n; j++) {
    let k = i + j;
    h[j] = (wIn[k >> 1u] >> ((k & 1u) * 16u)) & 0xffffu;
  }
  return halvesToF32(h);
}

/// Writes the first n of four values at output flat index i; returns true if any written value is
/// not finite in the output dtype.
fn storeOut4(i: u32, n: u32, v: vec4<f32>) -> bool {
  let valid = LANE < vec4(n);
  let x = bitcast<vec4<u32>>(v);
  if (OUT_DTYPE == 0u) {
    if (n == 4u) {
      wOut[i] = x.x; wOut[i + 1u] = x.y; wOut[i + 2u] = x.z; wOut[i + 3u] = x.w;
    } else {
      for (var j = 0u; j < n; j++) { wOut[i + j] = x[j]; }
    }
    return any(valid & ((x & vec4(0x7f800000u)) == vec4(0x7f800000u)));
  }
  var h: vec4<u32>;
  var bad: vec4<bool>;
  if (OUT_DTYPE == 1u) {
    h = f32BitsToF16(x);
    bad = (h & vec4(0x7c00u)) == vec4(0x7c00u);
  } else {
    h = f32BitsToBf16(x);
    bad = (h & vec4(0x7f80u)) == vec4(0x7f80u);
  }
  h = select(vec4(0u), h, valid);
  // i is even (even row stride, column multiple of 4): this tile owns both words it touches.
  wOut[i >> 1u] = h.x | (h.y << 16u);
  if (n > 2u) { wOut[(i >> 1u) + 1u] = h.z | (h.w << 16u); }
  return any(valid & bad);
}

/// V for the 4×4 tile at tile row tr, tile column tc; elements outside W are 0.
fn tileValues(tr: u32, tc: u32) -> mat4x4<f32> {
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var li = tr;
  var ri = tc;
  for (var k = 0u; k < P.rank; k++) {
    let l = lt[li];
    let r = rt[ri];
    a0 += l.x * r;
    a1 += l.y * r;
    a2 += l.z * r;
    a3 += l.w * r;
    li += P.lStride4;
    ri += P.rStride4;
  }
  let row0 = tr * 4u;
  let col0 = tc * 4u;
  let n = min(P.cols - col0, 4u);
  let m = min(P.rows - row0, 4u);
  let i = row0 * P.cols + col0;
  var v = mat4x4<f32>(a0, a1, a2, a3);
  if (m == 4u) {
    v[0] += loadW4(i, n);
    v[1] += loadW4(i + P.cols, n);
    v[2] += loadW4(i + 2u * P.cols, n);
    v[3] += loadW4(i + 3u * P.cols, n);
  } else {
    for (var j = 0u; j < m; j++) { v[j] += loadW4(i + j * P.cols, n); }
  }
  return v;
}

fn doraFactor(idx: u32) -> f32 {
  return magnitude[idx] / (sqrt(norms[idx]) + P.eps);
}

@compute @workgroup_size(WORKGROUP)
fn mergeTiles(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x + gid.y * P.gridStride;
  if (t >= P.items) { return; }
  let tr = t / P.colTiles;
  let tc = t - tr * P.colTiles;
  var v = tileValues(tr, tc);
  let row0 = tr * 4u;
  let col0 = tc * 4u;
  if (DORA == 1u) {
    let b = P.normRow0 + row0;
    v[0] *= doraFactor(b);
    v[1] *= doraFactor(b + 1u);
    v[2] *= doraFactor(b + 2u);
    v[3] *= doraFactor(b + 3u);
  } else if (DORA == 2u) {
    let f = vec4(doraFactor(col0), doraFactor(col0 + 1u), doraFactor(col0 + 2u), doraFactor(col0 + 3u));
    v[0] *= f;
    v[1] *= f;
    v[2] *= f;
    v[3] *= f;
  }
  let n = min(P.cols - col0, 4u);
  let m = min(P.rows - row0, 4u);
  let o = row0 * P.outStride + col0;
  var bad = false;
  for (var j = 0u; j < m; j++) {
    bad = storeOut4(o + j * P.outStride, n, v[j]) || bad;
  }
  if (bad) { atomicOr(&flags[0], 1u); }
}

/// Sum of squares of V per stored row: one invocation per tile row, sweeping all columns.
@compute @workgroup_size(WORKGROUP)
fn normRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tr = gid.x + gid.y * P.gridStride;
  if (tr >= P.items) { return; }
  var ss = vec4<f32>(0.0);
  for (var tc = 0u; tc < P.colTiles; tc++) {
    let v = tileValues(tr, tc);
    ss += vec4(dot(v[0], v[0]), dot(v[1], v[1]), dot(v[2], v[2]), dot(v[3], v[3]));
  }
  let row0 = tr * 4u;
  let m = min(P.rows - row0, 4u);
  for (var j = 0u; j < m; j++) { norms[P.normRow0 + row0 + j] = ss[j]; }
}

/// Sum of squares of V per stored column, added to `norms` (row slabs accumulate): one invocation
/// per tile column, sweeping the rows of this dispatch.
@compute @workgroup_size(WORKGROUP)
fn normCols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tc = gid.x + gid.y * P.gridStride;
  if (tc >= P.items) { return; }
  var ss = vec4<f32>(0.0);
  let rowTiles = (P.rows + 3u) / 4u;
  for (var tr = 0u; tr < rowTiles; tr++) {
    let v = tileValues(tr, tc);
    ss += v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3];
  }
  let col0 = tc * 4u;
  let n = min(P.cols - col0, 4u);
  for (var j = 0u; j < n; j++) { norms[col0 + j] += ss[j]; }
}
