/** Integer codes packed into int32 words as GPTQ, AWQ and compressed-tensors store them. */

/**
 * Unsigned `bits`-bit values (row-major rows × cols) packed into int32 words along one axis, p =
 * ⌊32/bits⌋ to a word, zero-padded: the value at index j of that axis goes to word ⌊j/p⌋ at bit
 * bits · slot, where slot = j mod p, or `order`'s position of it (AWQ).
 */
export function pack(values: readonly number[], rows: number, cols: number, bits: number, axis: 'rows' | 'cols', order?: readonly number[]): { shape: number[]; data: number[] } {
  const p = Math.floor(32 / bits);
  const shape = axis === 'cols' ? [rows, Math.ceil(cols / p)] : [Math.ceil(rows / p), cols];
  const words = new Array<number>(shape[0] * shape[1]).fill(0);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const j = axis === 'cols' ? c : r;
    const slot = order ? order.indexOf(j % p) : j % p;
    const at = axis === 'cols' ? r * shape[1] + Math.floor(c / p) : Math.floor(r / p) * cols + c;
    words[at] = (words[at] + values[r * cols + c] * 2 ** (bits * slot)) % 2 ** 32;
  }
  return { shape, data: words.map((w) => (w >= 2 ** 31 ? w - 2 ** 32 : w)) };
}

/** AutoAWQ's GEMM packing order: nibble k of a word holds output 8·word + AWQ_ORDER[k]. */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
