// GGML block types decoded to f32, one value per invocation, exactly as ggml's dequantize_row_*
// (ggml-quants.c) computes them: every product of a scale and a level is exact in f32, so each
// value is the exact one rounded at most once (fused or not), and the operations keep C's order so
// that zeros keep C's sign.
// One entry point per type; the input is the blocks' bytes, read as little-endian u32 words.

struct Params {
  count: u32,      // values to write
  rowGroups: u32,  // workgroups per row of the 2-D dispatch grid
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn byteAt(i: u32) -> u32 {
  return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn u16At(i: u32) -> u32 {
  return byteAt(i) | (byteAt(i + 1u) << 8u);
}

fn i8At(i: u32) -> i32 {
  return (i32(byteAt(i)) << 24u) >> 24u;
}

// IEEE binary16 → f32 from the bits (subnormals included; exact).
fn half(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  let sign = (h & 0x8000u) << 16u;
  if (e == 0u) {
    let mag = f32(m) * 5.9604644775390625e-8; // m · 2^-24
    return select(mag, -mag, sign != 0u);
  }
  if (e == 31u) {
    return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
  }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Index of this invocation's value, or count when past the end.
fn valueIndex(gid: vec3<u32>) -> u32 {
  return gid.y * params.rowGroups * 64u + gid.x;
}

// K-quant 6-bit scale and min of sub-block j (get_scale_min_k4) from the 12 bytes at `at`.
fn kScale(at: u32, j: u32) -> u32 {
  if (j < 4u) { return byteAt(at + j) & 63u; }
  return (byteAt(at + j + 4u) & 0xfu) | ((byteAt(at + j - 4u) >> 6u) << 4u);
}

fn kMin(at: u32, j: u32) -> u32 {
  if (j < 4u) { return byteAt(at + j + 4u) & 63u; }
  return (byteAt(at + j + 4u) >> 4u) | ((byteAt(at + j) >> 6u) << 4u);
}

@compute @workgroup_size(64)
fn dequantQ8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 32u) * 34u;
  dst[i] = half(u16At(at)) * f32(i8At(at + 2u + i % 32u));
}

// Q4_0 and Q5_0: values 0–15 in the low nibbles, 16–31 in the high; Q5_0's fifth bit in a u32.
@compute @workgroup_size(64)
fn dequantQ4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 32u) * 18u;
  let j = i % 32u;
  let q = (byteAt(at + 2u + j % 16u) >> (4u * (j / 16u))) & 0xfu;
  dst[i] = f32(i32(q) - 8) * half(u16At(at));
}

@compute @workgroup_size(64)
fn dequantQ4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 32u) * 20u;
  let j = i % 32u;
  let q = (byteAt(at + 4u + j % 16u) >> (4u * (j / 16u))) & 0xfu;
  dst[i] = f32(q) * half(u16At(at)) + half(u16At(at + 2u));
}

@compute @workgroup_size(64)
fn dequantQ5_0(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 32u) * 22u;
  let j = i % 32u;
  let high = (byteAt(at + 2u + j / 8u) >> (j % 8u)) & 1u;
  let q = ((byteAt(at + 6u + j % 16u) >> (4u * (j / 16u))) & 0xfu) | (high << 4u);
  dst[i] = f32(i32(q) - 16) * half(u16At(at));
}

@compute @workgroup_size(64)
fn dequantQ5_1(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 32u) * 24u;
  let j = i % 32u;
  let high = (byteAt(at + 4u + j / 8u) >> (j % 8u)) & 1u;
  let q = ((byteAt(at + 8u + j % 16u) >> (4u * (j / 16u))) & 0xfu) | (high << 4u);
  dst[i] = f32(q) * half(u16At(at)) + half(u16At(at + 2u));
}

// Q2_K and Q3_K: value k's 2 low bits are bits 2·((k mod 128) / 32) of qs[32·(k / 128) + k mod 32];
// sub-block j = k / 16. Q2_K: x = d·sc·q − dmin·m with 4-bit sc and m in byte j; Q3_K:
// x = d·(sc − 32)·(q − 4) with a 6-bit sc and q's third bit in bit k / 32 of hmask[k mod 32].
fn twoBits(qs: u32, k: u32) -> u32 {
  return (byteAt(qs + 32u * (k / 128u) + k % 32u) >> (2u * ((k % 128u) / 32u))) & 3u;
}

@compute @workgroup_size(64)
fn dequantQ2_K(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 256u) * 84u;
  let k = i % 256u;
  let sc = byteAt(at + k / 16u);
  let scale = half(u16At(at + 80u)) * f32(sc & 0xfu);
  let offset = half(u16At(at + 82u)) * f32(sc >> 4u);
  dst[i] = scale * f32(twoBits(at + 16u, k)) - offset;
}

@compute @workgroup_size(64)
fn dequantQ3_K(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 256u) * 110u;
  let k = i % 256u;
  let j = k / 16u;
  let low = (byteAt(at + 96u + j % 8u) >> (4u * (j / 8u))) & 0xfu;
  let top = (byteAt(at + 104u + j % 4u) >> (2u * (j / 4u))) & 3u;
  let high = (byteAt(at + k % 32u) >> (k / 32u)) & 1u;
  let q = i32(twoBits(at + 32u, k)) - select(4, 0, high != 0u);
  // (d·(sc − 32))·q as C groups it: both products are exact, and a zero keeps C's sign.
  dst[i] = (half(u16At(at + 108u)) * f32(i32(low | (top << 4u)) - 32)) * f32(q);
}

// Q4_K and Q5_K: value l of group g (64 values) is the low nibble of byte 32g + l mod 32 for
// l < 32, the high one after; sub-block j = i / 32 has scale d·sc_j and min dmin·m_j.
@compute @workgroup_size(64)
fn dequantQ4_K(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 256u) * 144u;
  let k = i % 256u;
  let j = k / 32u;
  let q = (byteAt(at + 16u + 32u * (k / 64u) + k % 32u) >> (4u * (j % 2u))) & 0xfu;
  let scale = half(u16At(at)) * f32(kScale(at + 4u, j));
  let offset = half(u16At(at + 2u)) * f32(kMin(at + 4u, j));
  dst[i] = scale * f32(q) - offset;
}

@compute @workgroup_size(64)
fn dequantQ5_K(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 256u) * 176u;
  let k = i % 256u;
  let j = k / 32u;
  let low = (byteAt(at + 48u + 32u * (k / 64u) + k % 32u) >> (4u * (j % 2u))) & 0xfu;
  let high = (byteAt(at + 16u + k % 32u) >> j) & 1u;
  let scale = half(u16At(at)) * f32(kScale(at + 4u, j));
  let offset = half(u16At(at + 2u)) * f32(kMin(at + 4u, j));
  dst[i] = scale * f32(low | (high << 4u)) - offset;
}

// Q6_K: in each half of 128 values, value l + 32n (l < 32) has its low 4 bits in
// ql[64h + l + 32(n mod 2)] (high nibble for n ≥ 2) and its top 2 bits in qh[32h + l] at bit 2n.
@compute @workgroup_size(64)
fn dequantQ6_K(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = valueIndex(gid);
  if (i >= params.count) { return; }
  let at = (i / 256u) * 210u;
  let k = i % 256u;
  let h = k / 128u;
  let n = (k % 128u) / 32u;
  let l = k % 32u;
  let low = (byteAt(at + 64u * h + l + 32u * (n % 2u)) >> (4u * (n / 2u))) & 0xfu;
  let high = (byteAt(at + 128u + 32u * h + l) >> (2u * n)) & 3u;
  let q = i32(low | (high << 4u)) - 32;
  let sc = i8At(at + 192u + k / 16u);
  // (d·sc)·q as C groups it: both products are exact, and a zero keeps C's sign.
  dst[i] = (half(u16At(at + 208u)) * f32(sc)) * f32(q);
}
