/**
 * The head of a Q4_1 or Q5_1 block as quantize_row_q4_1_ref and quantize_row_q5_1_ref write it:
 * min and max of the 32 values (C's loop from ±FLT_MAX, so NaN is never taken),
 * d = (max − min) / levels, then d and min as f16.
 */
import * as cFloat from './c-float.js';

// Bound once: the encoders call this per block (a module binding may be a getter).
const { f32, putU16, toF16Bits } = cFloat;

const QK = 32;
const FLT_MAX = f32(3.4028234663852886e38);

/** What writeAffineHeader leaves for the block's levels: its min, and 1/d (0 when d is 0). */
export const affine = { min: 0, id: 0 };

/** Writes d and min for the block at src[x …) to out[at …]; sets `affine`. */
export function writeAffineHeader(src: Float32Array, x: number, out: Uint8Array, at: number, levels: 15 | 31): void {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < QK; j++) {
    const v = src[x + j];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d = f32(f32(max - min) / levels);
  putU16(out, at, toF16Bits(d));
  putU16(out, at + 2, toF16Bits(min));
  affine.min = min;
  affine.id = d ? f32(1 / d) : 0;
}
