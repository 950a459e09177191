/**
 * How much memory the CPU backend's WebAssembly kernel takes for a job, counted without running it:
 * the kernel checks each job against MAX_ROW_KERNEL_BYTES with it, and the plan refuses a tensor
 * whose narrowest job is already above the limit before any tensor data is read. No imports of the
 * kernel itself, so the plan can use it.
 */

/** right rows are padded to a multiple of 8 columns (the kernel's tile width); float arithmetic, so no width wraps. */
export function paddedCols(cols: number): number {
  return Math.ceil(cols / 8) * 8;
}

/**
 * Bytes the kernel's memory holds for a job of `rows` rows (above its data start): what run()
 * places, counted in float64 so that no width wraps (the kernel's own scratchBytes is 32-bit).
 */
export function jobBytes(rows: number, cols: number, rank: number, wide: boolean, wBytes: number, outBytes: number, scaled: boolean, certified: boolean): number {
  const stride = paddedCols(cols);
  const lb = wide ? 8 : 4;
  const scratch = 1024 + 4 * rank * 8 + 4 * cols * 16;
  const scale = !scaled ? 0 : Math.max((rows + 3) & ~3, stride) * lb;
  return Math.max(rank, 1) * stride * 4 + stride * lb + scratch + 64 + scale + rows * rank * lb + rows * lb
    + rows * cols * (wBytes + outBytes + (certified ? 4 : 0)) + 7 * 16;
}

/**
 * The least memory any kernel job on rows of `cols` elements at summed rank `rank` takes: one row,
 * f32 sums, one-byte W and output, nothing listed. What the plan knows before the backend, the
 * output dtype and the slabs are chosen; a job it finds above the limit is above it whatever they are.
 */
export function leastJobBytes(cols: number, rank: number): number {
  return jobBytes(1, cols, rank, false, 1, 1, false, false);
}
