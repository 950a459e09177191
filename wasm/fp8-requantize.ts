/**
 * Re-quantization of merged weights to e4m3fn codes with a scale per block (AssemblyScript →
 * WebAssembly SIMD): the two passes over the values, each block's largest magnitude and then the
 * codes, e4m3(fl32(x · f)) or e4m3(fl32(x / f)) with the block's factor f. WebAssembly's f32
 * multiply and divide round to nearest even, as the quantizers' float32 tensors do; the encoding
 * saturates at ±448 (a clamp to ±448, then the cast). The scales themselves are computed by the
 * caller (src/pipeline/fp8-requantize.ts).
 *
 * Values are `rows` × `cols` f32, row-major, rows [firstRow, firstRow + rows) of a weight whose
 * blocks are blockRows × blockCols (the last ones in each direction may be shorter); a call's
 * blocks are numbered row-major from the block row that holds firstRow, so a weight can go in
 * pieces cut anywhere. The caller places everything from heapBase().
 */
import { f8Bits } from './f8-bits';

/** Where the caller may start placing data. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~15;
}

/** Four values (zero-padded) for the tail of a block row shorter than four. */
const TAIL: usize = memory.data(16, 16);
const TAIL_OUT: usize = memory.data(16, 16);

/** out[block] = max |x| over the call's rows of each block (f32; zeros give 0). */
export function blockMaxima(values: usize, firstRow: i32, rows: i32, cols: i32, blockRows: i32, blockCols: i32, out: usize): void {
  const colBlocks = (cols + blockCols - 1) / blockCols;
  const band0 = firstRow / blockRows;
  const bands = (firstRow + rows - 1) / blockRows - band0 + 1;
  memory.fill(out, 0, <usize>(bands * colBlocks) << 2);
  for (let r = 0; r < rows; r++) {
    const row = values + ((<usize>r * <usize>cols) << 2);
    const maxRow = out + ((<usize>((firstRow + r) / blockRows - band0) * <usize>colBlocks) << 2);
    for (let cb = 0; cb < colBlocks; cb++) {
      const c0 = cb * blockCols;
      const c1 = min(cols, c0 + blockCols);
      let m = f32x4.splat(0);
      let c = c0;
      for (; c + 4 <= c1; c += 4) m = f32x4.max(m, f32x4.abs(v128.load(row + (<usize>c << 2))));
      let a = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
      for (; c < c1; c++) a = max(a, abs(load<f32>(row + (<usize>c << 2))));
      const at = maxRow + (<usize>cb << 2);
      store<f32>(at, max(load<f32>(at), a));
    }
  }
}

// @ts-ignore: decorator
@inline function codes(x: v128, f: v128, divide: bool): v128 {
  const y = divide ? f32x4.div(x, f) : f32x4.mul(x, f);
  const sign = i32x4.shr_u(v128.and(y, i32x4.splat(0x80000000)), 24);
  return v128.or(f8Bits(v128.and(y, i32x4.splat(0x7fffffff)), true), sign);
}

/**
 * out (one byte per value) = e4m3(x · f) (`divide` 0) or e4m3(x / f) (1), f = factors[block]
 * (f32, one per block).
 */
export function encodeBlocks(values: usize, out: usize, firstRow: i32, rows: i32, cols: i32, blockRows: i32, blockCols: i32, factors: usize, divide: i32): void {
  const colBlocks = (cols + blockCols - 1) / blockCols;
  const band0 = firstRow / blockRows;
  for (let r = 0; r < rows; r++) {
    const row = values + ((<usize>r * <usize>cols) << 2);
    const outRow = out + <usize>r * <usize>cols;
    const factorRow = factors + ((<usize>((firstRow + r) / blockRows - band0) * <usize>colBlocks) << 2);
    for (let cb = 0; cb < colBlocks; cb++) {
      const c0 = cb * blockCols;
      const c1 = min(cols, c0 + blockCols);
      const f = v128.load32_splat(factorRow + (<usize>cb << 2));
      let c = c0;
      if (divide != 0) {
        for (; c + 4 <= c1; c += 4) {
          const o = codes(v128.load(row + (<usize>c << 2)), f, true);
          store<u32>(outRow + <usize>c, i32x4.extract_lane(i8x16.shuffle(o, o, 0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0));
        }
      } else {
        for (; c + 4 <= c1; c += 4) {
          const o = codes(v128.load(row + (<usize>c << 2)), f, false);
          store<u32>(outRow + <usize>c, i32x4.extract_lane(i8x16.shuffle(o, o, 0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0));
        }
      }
      if (c < c1) {
        const n = <usize>(c1 - c);
        v128.store(TAIL, f32x4.splat(0));
        memory.copy(TAIL, row + (<usize>c << 2), n << 2);
        const o = codes(v128.load(TAIL), f, divide != 0);
        v128.store(TAIL_OUT, i8x16.shuffle(o, o, 0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
        memory.copy(outRow + <usize>c, TAIL_OUT, n);
      }
    }
  }
}
