// The non-additive steps of an update (update-steps.ts), on V held as f32 between steps: a slab of
// paddedRows × paddedCols, row-major, padding rows and columns zero. merge-low-rank.wgsl does the
// low-rank passes (f32 → f32), the DoRA row norms and the final rounding; these entries do the rest.
// One invocation per element (per element of Lᵀ for projectRows); each entry's comment says what
// `src`, `dst` and `aux` hold. Padding stays zero: every entry writes 0 there or multiplies a 0.

override WORKGROUP: u32 = 64u;

struct Params {
  rows: u32,        // real rows of this slab
  paddedRows: u32,
  paddedCols: u32,
  cols: u32,        // real columns
  row0: u32,        // the slab's first row in the whole tensor (row factors, row blocks)
  block: u32,       // rotation block size
  rank: u32,        // projectRows: padded rank of P
  items: u32,       // invocations with work
  gridStride: u32,  // invocations per row of a 2-D folded dispatch grid
  axis: u32,        // scaleAxis: 0 one factor per stored row, 1 per stored column
  scale: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;

fn index(gid: vec3<u32>) -> u32 {
  return gid.x + gid.y * P.gridStride;
}

/// dst += scale · aux (a dense term's slab, padded like V).
@compute @workgroup_size(WORKGROUP)
fn addDense(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  dst[i] += P.scale * aux[i];
}

/// dst *= aux[row0 + row] (axis 0) or aux[col] (axis 1); aux is zero past the real rows/columns.
@compute @workgroup_size(WORKGROUP)
fn scaleAxis(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let r = i / P.paddedCols;
  let c = i - r * P.paddedCols;
  let f = select(aux[P.row0 + r], aux[c], P.axis == 1u);
  dst[i] *= f;
}

/// Lᵀ of V·P, scaled: dst[k · paddedRows + r] = scale · Σ_c src[r, c] · aux[c · rank + k].
/// aux (P) is paddedCols × rank with zero padding rows and columns.
@compute @workgroup_size(WORKGROUP)
fn projectRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let k = i / P.paddedRows;
  let r = i - k * P.paddedRows;
  var s = 0.0;
  let row = r * P.paddedCols;
  for (var c = 0u; c < P.cols; c++) {
    s += src[row + c] * aux[c * P.rank + k];
  }
  dst[i] = P.scale * s;
}

/// Each stored row's blocks of `block` columns mapped by their matrix (aux: blocks row-major):
/// dst[r, kb + m] = Σ_n M_k[m, n] · src[r, kb + n].
@compute @workgroup_size(WORKGROUP)
fn rotateCols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let r = i / P.paddedCols;
  let c = i - r * P.paddedCols;
  if (c >= P.cols) { dst[i] = 0.0; return; }
  let b = P.block;
  let k = c / b;
  let m = c - k * b;
  let mRow = (k * b + m) * b;
  let first = r * P.paddedCols + k * b;
  var s = 0.0;
  for (var n = 0u; n < b; n++) {
    s += aux[mRow + n] * src[first + n];
  }
  dst[i] = s;
}

/// Blocks of `block` rows mapped by their matrix; the slab starts on a block boundary:
/// dst[g, c] = Σ_n M_k[m, n] · src[k·b + n, c] for the tensor row g = k·b + m.
@compute @workgroup_size(WORKGROUP)
fn rotateRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let r = i / P.paddedCols;
  let c = i - r * P.paddedCols;
  if (r >= P.rows) { dst[i] = 0.0; return; }
  let b = P.block;
  let g = P.row0 + r;
  let k = g / b;
  let m = g - k * b;
  let mRow = (k * b + m) * b;
  let first = (k * b - P.row0) * P.paddedCols + c;
  var s = 0.0;
  for (var n = 0u; n < b; n++) {
    s += aux[mRow + n] * src[first + n * P.paddedCols];
  }
  dst[i] = s;
}
