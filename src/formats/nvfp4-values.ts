/**
 * NVFP4 values as the tools that write NVFP4 dequantize them in float32: e2m1 code × (e4m3 block
 * scale × global scale), the block's scale rounded to float32 first and the product rounded again
 * (ModelOpt's NVFP4QTensor.dequantize, comfy_kitchen's dequantize_nvfp4). The tools differ only in
 * which nibble holds the even element and in code 8 (ModelOpt's table gives +0, comfy_kitchen's −0),
 * so one table serves both (modelopt-nvfp4.ts, comfy-nvfp4.ts).
 */
import { decodeToF32 } from '../dtype.js';

/** e2m1 magnitudes by the code's low three bits. */
export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6] as const;

/** How a tool packs and reads e2m1 codes. */
export interface Nvfp4Reading {
  /** Element 2k in the byte's high nibble (comfy_kitchen's `hi_first`), else in the low one (ModelOpt). */
  evenHigh: boolean;
  /** Code 8 is −0 (comfy_kitchen's table and the CUDA conversion), else +0 (ModelOpt's `e2m1_values`). */
  negativeZero: boolean;
}

/** E4M3 block-scale bytes decoded, and which of them are E4M3FN's NaN bytes (0x7f, 0xff). */
let e4m3Table: { values: Float32Array; nan: Uint8Array } | undefined;
export function e4m3Bytes(): { values: Float32Array; nan: Uint8Array } {
  if (e4m3Table) return e4m3Table;
  const values = decodeToF32(Uint8Array.from({ length: 256 }, (_, b) => b), 'F8_E4M3');
  return (e4m3Table = { values, nan: Uint8Array.from(values, (v) => (Number.isNaN(v) ? 1 : 0)) });
}

/**
 * For one global scale, every value a code can take and every byte's pair of them:
 * - `bits[s·16 + code]`: the float32 bits of f32(e2m1(code) × f32(e4m3(s) × global)), each step
 *   rounded to float32 (a Float32Array store rounds as a float32 multiply does);
 * - `pairs[s·256 + byte]`: the byte's two values as one 8-byte word, the even element's f32 bits in
 *   its low half (first in memory), so a block decodes a byte with one load and one store. Read and
 *   written through a Float64Array: two finite f32 values never form a double NaN (that needs the
 *   high value's exponent all ones), so the bits pass unchanged.
 * Made per weight read (512 KiB) and kept for the last global scale of each reading only, as a
 * merge reads a weight's slabs in turn. The caller makes sure f32(448 × global) is finite.
 */
const last = new Map<string, { global: number; bits: Uint32Array; pairs: Float64Array }>();
export function nvfp4CodeValues(global: number, reading: Nvfp4Reading): { bits: Uint32Array; pairs: Float64Array } {
  const key = `${reading.evenHigh}${reading.negativeZero}`;
  const kept = last.get(key);
  if (kept && Object.is(kept.global, global)) return kept;
  const scales = e4m3Bytes().values;
  const codes = Float64Array.from({ length: 16 }, (_, code) => (code === 8 && !reading.negativeZero ? 0 : (code & 8 ? -1 : 1) * E2M1[code & 7]));
  const values = new Float32Array(256 * 16);
  for (let s = 0; s < 256; s++) {
    const block = Math.fround(scales[s] * global);
    for (let code = 0; code < 16; code++) values[s * 16 + code] = codes[code] * block;
  }
  const bits = new Uint32Array(values.buffer);
  const pairs = new Float64Array(256 * 256);
  const halves = new Uint32Array(pairs.buffer);
  const [even, odd] = reading.evenHigh ? [4, 0] : [0, 4];
  for (let s = 0; s < 256; s++) {
    for (let byte = 0; byte < 256; byte++) {
      const at = (s * 256 + byte) * 2;
      halves[at] = bits[s * 16 + ((byte >> even) & 0x0f)];
      halves[at + 1] = bits[s * 16 + ((byte >> odd) & 0x0f)];
    }
  }
  const made = { global, bits, pairs };
  last.set(key, made);
  return made;
}

/** f32(448 × global) is finite: every block scale times the global scale is a float32, as the tools compute it. */
export function nvfp4GlobalFits(global: number): boolean {
  return Number.isFinite(Math.fround(448 * global));
}
