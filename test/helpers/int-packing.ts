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

/**
 * Unsigned 3-bit values (row-major rows × cols) packed as GPTQ packs them (AutoGPTQ's
 * `qlinear_cuda_old.py` pack(), GPTQModel's `pack_block`): along one axis, each run of 32 values
 * fills 3 int32 words, value k of the run at bits 3k, 3k + 1, 3k + 2 of the run's 96-bit stream,
 * whose bit b is bit b mod 32 of the run's word ⌊b/32⌋ (so values 10 and 21 straddle two words).
 * Written bit by bit; the axis must hold whole runs of 32, as the tools require.
 */
export function packGptq3(values: readonly number[], rows: number, cols: number, axis: 'rows' | 'cols'): { shape: number[]; data: number[] } {
  const along = axis === 'rows' ? rows : cols;
  if (along % 32 !== 0) throw new Error(`packGptq3: ${along} values along the ${axis}, not whole runs of 32`);
  const shape = axis === 'cols' ? [rows, (cols / 32) * 3] : [(rows / 32) * 3, cols];
  const words = new Array<number>(shape[0] * shape[1]).fill(0);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const value = values[r * cols + c];
    if (!Number.isInteger(value) || value < 0 || value > 7) throw new Error(`packGptq3: ${value} is not a 3-bit value`);
    const j = axis === 'rows' ? r : c;
    const run = Math.floor(j / 32);
    for (let bit = 0; bit < 3; bit++) {
      if (Math.floor(value / 2 ** bit) % 2 === 0) continue;
      const b = 3 * (j % 32) + bit; // bit of the run's stream
      const word = run * 3 + Math.floor(b / 32);
      const at = axis === 'cols' ? r * shape[1] + word : word * cols + c;
      words[at] += 2 ** (b % 32);
    }
  }
  return { shape, data: words.map((w) => (w >= 2 ** 31 ? w - 2 ** 32 : w)) };
}

/** compressed-tensors config.json for one config group of int weights. */
export const compressedTensorsConfig = (format: string, weights: Record<string, unknown>) => ({
  config_groups: {
    group_0: {
      input_activations: null, output_activations: null, targets: ['Linear'],
      weights: { block_structure: null, dynamic: false, observer: 'minmax', observer_kwargs: {}, type: 'int', ...weights },
    },
  },
  format, global_compression_ratio: 1.9, ignore: ['lm_head'], kv_cache_scheme: null, quant_method: 'compressed-tensors', quantization_status: 'compressed',
});
