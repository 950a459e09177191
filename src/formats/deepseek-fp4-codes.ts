/**
 * DeepSeek-V4's FP4 quantizer (kernel.py `fp4_quant_kernel`; see deepseek-v4-fp4.ts) by rows, on the
 * calling thread or the CPU backend's worker threads (formats/comfy-requantize.ts sends them): each
 * group of 32 values gets its own power-of-two scale from its own largest magnitude, so rows may
 * be cut anywhere and give the same bytes. Imports nothing but e2m1.ts: the workers load it.
 */
import { e2m1Code } from './e2m1.js';

/** The scale byte written for a group whose scale passes E8M0's range: never a scale DeepSeek's quantizer writes (255 is E8M0's NaN); the caller refuses the weight by name. */
export const FP4_BAD_GROUP = 255;

/** A slab of merged f32 values W' to quantize as DeepSeek-V4's FP4. */
export interface DeepseekFp4Rows {
  /** W' of the slab, f32, row-major. */
  values: Float32Array;
  /** The weight's row the slab starts at. */
  rowStart: number;
  /** Rows of the slab. */
  rowCount: number;
  /** Values a row (a multiple of 32). */
  cols: number;
  /** The weight's whole E8M0 scale tensor (rows × cols/32), written for the rows quantized. */
  blockScales: Uint8Array;
}

/** f32(1/6), the factor DeepSeek's kernel multiplies amax by. */
const SIXTH = Math.fround(1 / 6);
/** DeepSeek's floor of amax, 6·2^-126, in f32. */
const FLOOR = Math.fround(6 * 2 ** -126);
const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);
/** 2^-e by e + 127 (e in −127…127), as f64 multipliers: x·2^-e is x/2^e exactly. */
const INVERSE = Float64Array.from({ length: 255 }, (_, b) => 2 ** (127 - b));

/**
 * Codes of the slab's rows [p0, p0 + n) (counted from its first) into `out` (n × cols/2 bytes, element
 * 2k in the low nibble of byte k), each group's scale byte into `blockScales`: amax = max(|W'|, 6·2^-126)
 * in f32, the scale 2^e with e = ⌈log2 f32(amax · f32(1/6))⌉ by the f32's bits (DeepSeek's
 * `fast_log2_ceil`), code = e2m1(W' / 2^e) to nearest even, saturated at ±6, −0 for negatives
 * rounding to 0. A group whose e is past −127…127 (a W' past 6·2^127, or NaN) gets the scale byte
 * {@link FP4_BAD_GROUP}, and the caller refuses the weight.
 */
export function deepseekFp4RowCodes(rows: DeepseekFp4Rows, p0: number, n: number, out: Uint8Array): void {
  const { values, rowStart, cols, blockScales } = rows;
  const groups = cols >> 5;
  for (let r = p0; r < p0 + n; r++) {
    for (let g = 0; g < groups; g++) {
      const at = r * cols + (g << 5);
      let amax = 0;
      for (let k = at; k < at + 32; k++) {
        const a = Math.abs(values[k]);
        // NaN sticks, as Math.max keeps it.
        if (a > amax || a !== a) amax = a;
        if (amax !== amax) break;
      }
      f32[0] = Math.max(amax, FLOOR) * SIXTH;
      const bits = f32Bits[0];
      const e = ((bits >>> 23) & 0xff) - 127 + ((bits & 0x7fffff) !== 0 ? 1 : 0);
      const o = (at - p0 * cols) >> 1;
      if (!(e >= -127 && e <= 127)) {
        blockScales[(rowStart + r) * groups + g] = FP4_BAD_GROUP;
        out.fill(0, o, o + 16);
        continue;
      }
      blockScales[(rowStart + r) * groups + g] = e + 127;
      const inverse = INVERSE[e + 127];
      for (let k = 0; k < 32; k += 2) out[o + (k >> 1)] = e2m1Code(values[at + k] * inverse) | (e2m1Code(values[at + k + 1] * inverse) << 4);
    }
  }
}
