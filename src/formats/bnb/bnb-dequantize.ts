/**
 * Dequantization exactly as bitsandbytes computes it, element for element (functional.py
 * `dequantize_4bit`, `dequantize_blockwise`, `int8_vectorwise_dequant`; csrc/kernels.cu
 * `kDequantizeBlockwise`):
 * - 4-bit: value v (row-major) is nibble v of the packed bytes, the high nibble first; its block
 *   is ⌊v / blocksize⌋; out = T(f32(code[nibble] · absmax[block])), T the quant state's dtype.
 * - nested statistics: absmax[j] = f32(f32(code₂[q_j] · nested_absmax[⌊j / nested_blocksize⌋]) + offset).
 * - 8-bit (LLM.int8 row-wise): out = f32(f32(q · SCB[row]) · f32(7.874015718698502e-3)), 1/127.
 * Products of two float32 values are exact in a double, so Math.fround rounds each once, as the
 * float32 multiply does.
 */

/** What one element range of a 4-bit tensor needs, read from the file. */
export interface FourBitSlice {
  /** Packed bytes holding elements [start, start + count): byte ⌊start / 2⌋ onwards. */
  packed: Uint8Array;
  /** absmax of blocks ⌊start / blocksize⌋ onwards, as float32 (nested ones already dequantized). */
  absmax: Float32Array;
}

/** Elements [start, start + count) as float32 values (before the cast to the quant state's dtype). */
export function dequantizeFourBit(slice: FourBitSlice, code: Float32Array, blocksize: number, start: number, count: number): Float32Array {
  const out = new Float32Array(count);
  const byte0 = start >>> 1;
  const block0 = Math.floor(start / blocksize);
  const scaled = new Float32Array(16);
  const end = start + count;
  // Block by block: the 16 products code[q] · absmax are the only values a block can hold.
  for (let blockStart = block0 * blocksize; blockStart < end; blockStart += blocksize) {
    const absmax = slice.absmax[blockStart / blocksize - block0];
    for (let q = 0; q < 16; q++) scaled[q] = Math.fround(code[q] * absmax);
    const to = Math.min(blockStart + blocksize, end);
    let v = Math.max(blockStart, start);
    if (v & 1 && v < to) {
      out[v - start] = scaled[slice.packed[(v >>> 1) - byte0] & 0x0f];
      v++;
    }
    // Two values per byte, the high nibble first.
    for (; v + 1 < to; v += 2) {
      const byte = slice.packed[(v >>> 1) - byte0];
      out[v - start] = scaled[byte >>> 4];
      out[v + 1 - start] = scaled[byte & 0x0f];
    }
    if (v < to) out[v - start] = scaled[slice.packed[(v >>> 1) - byte0] >>> 4];
  }
  return out;
}

/** Nested (double-quantized) absmax values [first, first + q.length) as float32. */
export function dequantizeNestedAbsmax(
  q: Uint8Array, first: number, nestedCode: Float32Array, nestedAbsmax: Float32Array, nestedFirstBlock: number, nestedBlocksize: number, offset: number,
): Float32Array {
  const out = new Float32Array(q.length);
  const off = Math.fround(offset);
  for (let i = 0; i < q.length; i++) {
    const scale = nestedAbsmax[Math.floor((first + i) / nestedBlocksize) - nestedFirstBlock];
    out[i] = Math.fround(Math.fround(nestedCode[q[i]] * scale) + off);
  }
  return out;
}

/** bitsandbytes' 1/127, as the float32 it becomes in the multiply. */
const INV_127 = Math.fround(7.874015718698502e-3);

/**
 * Elements [start, start + q.length) of an int8 weight with `cols` columns: each value times its
 * row's SCB, then times 1/127; `scb` holds rows ⌊start / cols⌋ onwards.
 */
export function dequantizeInt8(q: Int8Array, scb: Float32Array, start: number, cols: number): Float32Array {
  const out = new Float32Array(q.length);
  const row0 = Math.floor(start / cols);
  const end = start + q.length;
  for (let rowStart = row0 * cols; rowStart < end; rowStart += cols) {
    const s = scb[rowStart / cols - row0];
    const to = Math.min(rowStart + cols, end);
    for (let v = Math.max(rowStart, start); v < to; v++) out[v - start] = Math.fround(Math.fround(q[v - start] * s) * INV_127);
  }
  return out;
}
