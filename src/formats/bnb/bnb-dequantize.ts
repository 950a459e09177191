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
  for (let i = 0; i < count; i++) {
    const v = start + i;
    const byte = slice.packed[(v >>> 1) - byte0];
    const nibble = v & 1 ? byte & 0x0f : byte >>> 4;
    out[i] = Math.fround(code[nibble] * slice.absmax[Math.floor(v / blocksize) - block0]);
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
  for (let i = 0; i < q.length; i++) out[i] = Math.fround(Math.fround(q[i] * scb[Math.floor((start + i) / cols) - row0]) * INV_127);
  return out;
}
