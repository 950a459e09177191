/**
 * Tensors of very wide rows on the CPU backend. Its WebAssembly kernel never cuts a row, and pads
 * a short block to four rows in scratch (64 bytes a column), so a single row of 2^26 f32 (a 1 × N
 * linear of 256 MB) asked for about 10 GB of a memory that addresses 4 GB: the 32-bit scratch size
 * wrapped and the merge died with "internal error: memory access out of bounds" after 2.9 GB.
 * Such ops are refused in one line naming the tensor and MAX_ROW_KERNEL_BYTES; rows under it merge.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { jobBytes } from '../src/engine/cpu/wasm-kernel.js';
import type { MergeOp } from '../src/engine/merge-op.js';
import { MergeError } from '../src/errors.js';
import { MAX_ROW_KERNEL_BYTES } from '../src/limits.js';

const bytesOf = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A rank-1 LoRA term on one row of `cols` (a score head's weight [1, cols]): ΔW = scale · b · a. */
function oneRowOp(cols: number, wDtype: 'F32' | 'BF16', w: Uint8Array, a: Float32Array, b: number, scale: number): MergeOp {
  return {
    name: 'score.weight', rows: 1, cols, layout: 'out-in', base: { dtype: wDtype, data: w },
    terms: [{ a: { dtype: 'F32', data: bytesOf(a) }, b: { dtype: 'F32', data: bytesOf(new Float32Array([b])) }, rank: 1, scale }],
    outDtype: wDtype,
  };
}

describe('wide rows on the CPU kernel', () => {
  it('counts a job\'s memory in float64: a row of 2^26 columns is about 10 GB, not a wrapped 32-bit size', () => {
    // f64 sums (F32 out): right 4, norms 8, scratch 64, W 4, out 8, listed 4 bytes a column.
    expect(jobBytes(1, 2 ** 26, 1, true, 4, 8, false, true)).toBe(4 * 2 ** 26 + 8 * 2 ** 26 + 1024 + 32 + 64 * 2 ** 26 + 64 + 8 + 8 + 16 * 2 ** 26 + 112);
    expect(jobBytes(1, 2 ** 26, 1, true, 4, 8, false, true)).toBeGreaterThan(2 ** 32);
  });

  it('refuses a 1 × 2^24 row in one line naming the tensor and the limit, before the kernel runs', async () => {
    const cols = 2 ** 24;
    const backend = new CpuBackend('requested');
    try {
      // BF16 in and out (f32 sums): 80 bytes a column, 1280 MiB for the row.
      const op = oneRowOp(cols, 'BF16', new Uint8Array(cols * 2), new Float32Array(cols), 1, 1);
      const e = await backend.merge(op).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(MergeError);
      expect((e as MergeError).code).toBe('LIMIT_EXCEEDED');
      expect((e as MergeError).message).toBe(
        `tensor "score.weight": rows of ${cols} elements at rank 1 take ${Math.ceil(jobBytes(1, cols, 1, false, 2, 2, false, true) / 2 ** 20)} MiB of CPU kernel memory, above the limit MAX_ROW_KERNEL_BYTES (1024 MiB): no real weight has rows this wide; check that the base is the model the adapter was trained on`);
      expect((e as MergeError).message).not.toContain('\n');
    } finally {
      backend.dispose();
    }
  });

  it('merges a single row of 2^21 f32 under the limit, each element W + s·b·a rounded once', async () => {
    const cols = 2 ** 21;
    expect(jobBytes(1, cols, 1, true, 4, 8, false, true)).toBeLessThan(MAX_ROW_KERNEL_BYTES);
    const w = new Float32Array(cols), a = new Float32Array(cols);
    for (let i = 0; i < cols; i++) {
      w[i] = ((i * 7) % 1024) / 1024 - 0.5;
      a[i] = Math.fround(Math.sin(i) * 0.37);
    }
    const b = Math.fround(0.3), scale = 2 / 3;
    const backend = new CpuBackend('requested');
    try {
      const out = new Float32Array((await backend.merge(oneRowOp(cols, 'F32', bytesOf(w), a, b, scale))).slice().buffer);
      let wrong = 0;
      for (let i = 0; i < cols; i++) if (out[i] !== Math.fround(w[i] + scale * (b * a[i]))) wrong++;
      expect(wrong).toBe(0);
    } finally {
      backend.dispose();
    }
  });
});
