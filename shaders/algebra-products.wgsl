// Tall-skinny products for the adapter algebra (truncated SVDs of LoRA updates), f32 throughout.
//
//   times:  out = A · Y    A: rows × inner (a row slab of a resident matrix), Y: inner × cols
//   timesT: out (+)= Aᵀ · Y  A: rows × inner (a slab), Y: the slab's rows × cols; out: inner × cols
//
// Every matrix is row-major with rows padded to a multiple of 4 columns (zeros), so rows are
// arrays of vec4. Each invocation computes a 4 × 4 tile of `out` in four vec4 accumulators.
// `cols4` = padded cols / 4 and `inner4` = padded inner / 4. A slab's rows are padded to a
// multiple of 4 with zero rows for `times`; `timesT` reads exactly `rows` rows.

struct Params {
  // times: tiles of 4 rows of A; timesT: rows of the slab.
  rows: u32,
  cols4: u32,
  inner4: u32,
  // Invocations with work, and invocations per row of the (possibly 2-D) grid.
  items: u32,
  gridStride: u32,
  // timesT: 1 adds to `out` (later slabs), 0 overwrites it (the first slab).
  accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

override WORKGROUP: u32 = 64u;

@compute @workgroup_size(WORKGROUP)
fn times(@builtin(global_invocation_id) gid: vec3<u32>) {
  let item = gid.x + gid.y * p.gridStride;
  if (item >= p.items) {
    return;
  }
  let tileRow = item / p.cols4;
  let tc = item % p.cols4;
  let r0 = tileRow * 4u * p.inner4;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k4 = 0u; k4 < p.inner4; k4++) {
    let a0 = a[r0 + k4];
    let a1 = a[r0 + p.inner4 + k4];
    let a2 = a[r0 + 2u * p.inner4 + k4];
    let a3 = a[r0 + 3u * p.inner4 + k4];
    let yk = 4u * k4 * p.cols4 + tc;
    let y0 = y[yk];
    let y1 = y[yk + p.cols4];
    let y2 = y[yk + 2u * p.cols4];
    let y3 = y[yk + 3u * p.cols4];
    acc0 += a0.x * y0 + a0.y * y1 + a0.z * y2 + a0.w * y3;
    acc1 += a1.x * y0 + a1.y * y1 + a1.z * y2 + a1.w * y3;
    acc2 += a2.x * y0 + a2.y * y1 + a2.z * y2 + a2.w * y3;
    acc3 += a3.x * y0 + a3.y * y1 + a3.z * y2 + a3.w * y3;
  }
  let o = tileRow * 4u * p.cols4 + tc;
  out[o] = acc0;
  out[o + p.cols4] = acc1;
  out[o + 2u * p.cols4] = acc2;
  out[o + 3u * p.cols4] = acc3;
}

@compute @workgroup_size(WORKGROUP)
fn timesT(@builtin(global_invocation_id) gid: vec3<u32>) {
  let item = gid.x + gid.y * p.gridStride;
  if (item >= p.items) {
    return;
  }
  // Tile: columns 4·c4 … 4·c4+3 of A (rows of out) × columns 4·tc … of Y.
  let c4 = item / p.cols4;
  let tc = item % p.cols4;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var i = 0u; i < p.rows; i++) {
    let av = a[i * p.inner4 + c4];
    let yv = y[i * p.cols4 + tc];
    acc0 += av.x * yv;
    acc1 += av.y * yv;
    acc2 += av.z * yv;
    acc3 += av.w * yv;
  }
  let o = 4u * c4 * p.cols4 + tc;
  if (p.accumulate != 0u) {
    acc0 += out[o];
    acc1 += out[o + p.cols4];
    acc2 += out[o + 2u * p.cols4];
    acc3 += out[o + 3u * p.cols4];
  }
  out[o] = acc0;
  out[o + p.cols4] = acc1;
  out[o + 2u * p.cols4] = acc2;
  out[o + 3u * p.cols4] = acc3;
}
