/**
 * Random tensors of fp8 checkpoints' tests (DeepSeek-V3.1, DeepSeek-V4): finite e4m3fn codes and
 * BF16 tensors of values on a 1/256 grid in [-1, 1], drawn from the test's own seeded stream.
 */
import type { FixtureTensor } from './fixtures.js';

export function fp8CheckpointFixtures(rand: () => number) {
  return {
    /** A finite e4m3fn code (not 0x7f / 0xff). */
    e4m3Code: (): number => {
      const c = Math.floor(rand() * 254);
      return c >= 0x7f ? c + 1 : c;
    },
    /** A BF16 tensor of values on a 1/256 grid in [-1, 1]. */
    bf16: (name: string, shape: number[]): FixtureTensor => ({
      name, dtype: 'BF16', shape, data: Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.round((rand() * 2 - 1) * 256) / 256),
    }),
  };
}
