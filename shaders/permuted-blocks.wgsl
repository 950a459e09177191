// Block-diagonal maps in permuted coordinates (src/engine/permuted-blocks.ts: BOFT's butterfly
// factors, PEFT's first OFT format) on V held as f32, a slab of paddedRows × paddedCols, row-major,
// padding rows and columns zero. With σ the gather and b the block size, along an axis of n:
//   x'[σ(p)] = Σ_{j < size} M_k[p − k·b, j] · x[σ(k·b + j)],  k = ⌊p / b⌋,  size = min(b, n − k·b).
// One invocation per element of V: it finds its position p = σ⁻¹(index) and sums its block's row.
// Padding stays zero: padding columns are written 0 (columns) or sum zeros (rows).

override WORKGROUP: u32 = 64u;

struct Params {
  rows: u32,        // real rows of this slab
  paddedRows: u32,
  paddedCols: u32,
  cols: u32,        // real columns
  row0: u32,        // the slab's first row in the whole tensor
  block: u32,       // b
  n: u32,           // length of the mapped axis
  items: u32,       // invocations with work
  gridStride: u32,  // invocations per row of a 2-D folded dispatch grid
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// ⌈n / b⌉ blocks of b × b, row-major.
@group(0) @binding(3) var<storage, read> blocks: array<f32>;
// σ (n entries), then σ⁻¹ (n entries).
@group(0) @binding(4) var<storage, read> perm: array<u32>;

fn index(gid: vec3<u32>) -> u32 {
  return gid.x + gid.y * P.gridStride;
}

/// Each stored row is a vector of the mapped axis (n = cols).
@compute @workgroup_size(WORKGROUP)
fn permutedCols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let r = i / P.paddedCols;
  let c = i - r * P.paddedCols;
  if (c >= P.cols) { dst[i] = 0.0; return; }
  let b = P.block;
  let p = perm[P.n + c];
  let k0 = (p / b) * b;
  let size = min(b, P.n - k0);
  let mRow = k0 * b + (p - k0) * b;
  let row = r * P.paddedCols;
  var s = 0.0;
  for (var j = 0u; j < size; j++) {
    s += blocks[mRow + j] * src[row + perm[k0 + j]];
  }
  dst[i] = s;
}

/// The mapped axis runs along stored rows (n = rows of the tensor); the slab holds whole runs.
@compute @workgroup_size(WORKGROUP)
fn permutedRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = index(gid);
  if (i >= P.items) { return; }
  let r = i / P.paddedCols;
  let c = i - r * P.paddedCols;
  if (r >= P.rows) { dst[i] = 0.0; return; }
  let b = P.block;
  let p = perm[P.n + P.row0 + r];
  let k0 = (p / b) * b;
  let size = min(b, P.n - k0);
  let mRow = k0 * b + (p - k0) * b;
  var s = 0.0;
  for (var j = 0u; j < size; j++) {
    s += blocks[mRow + j] * src[(perm[k0 + j] - P.row0) * P.paddedCols + c];
  }
  dst[i] = s;
}
