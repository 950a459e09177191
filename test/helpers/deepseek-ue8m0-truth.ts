/**
 * DeepSeek's power-of-two (scale_fmt "ue8m0") block scales written plainly, for the tests of the
 * checkpoints that carry them (DeepSeek-V3.1 / V3.2's F32 weight_scale_inv, V4's F8_E8M0 scales):
 * inference/kernel.py's act_quant with scale_fmt, amax floored, s = 2^⌈log2 f32(amax · f32(1/max))⌉
 * by the f32's bits (fast_log2_ceil). Nothing here imports the library under test.
 */
import { f8BitsSaturating } from './fixtures.js';

/** ⌈log2 x⌉ of an f32 from its bits (exponent, plus one if a mantissa bit is set). */
export function log2Ceil(x: number): number {
  const bits = new Uint32Array(Float32Array.of(x).buffer)[0];
  return ((bits >>> 23) & 255) - 127 + ((bits & 0x7fffff) ? 1 : 0);
}

/** DeepSeek's power-of-two scale of a block whose largest magnitude is amax (codes up to `max`, amax floored at `floor`). */
export const powerOfTwo = (amax: number, max: number, floor: number) => 2 ** log2Ceil(Math.fround(Math.max(Math.fround(amax), Math.fround(floor)) * Math.fround(1 / max)));

/** W' (rows × cols, f32 values) re-quantized to e4m3 per 128 × 128 block: the codes and the block scales, row-major over the grid. */
export function quantizeUe8m0Blocks(w: Float64Array, rows: number, cols: number): { codes: Uint8Array; scales: number[] } {
  const gr = Math.ceil(rows / 128), gc = Math.ceil(cols / 128);
  const scales: number[] = [];
  const codes = new Uint8Array(rows * cols);
  for (let br = 0; br < gr; br++) {
    for (let bc = 0; bc < gc; bc++) {
      let amax = 0;
      for (let i = br * 128; i < Math.min(rows, br * 128 + 128); i++) for (let j = bc * 128; j < Math.min(cols, bc * 128 + 128); j++) amax = Math.max(amax, Math.abs(w[i * cols + j]));
      const s = powerOfTwo(amax, 448, 1e-4);
      scales.push(s);
      for (let i = br * 128; i < Math.min(rows, br * 128 + 128); i++) for (let j = bc * 128; j < Math.min(cols, bc * 128 + 128); j++) codes[i * cols + j] = f8BitsSaturating(w[i * cols + j] / s, 'F8_E4M3');
    }
  }
  return { codes, scales };
}
