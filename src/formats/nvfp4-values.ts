/**
 * NVFP4 values as the tools that write NVFP4 dequantize them in float32: e2m1 code × (e4m3 block
 * scale × global scale), the block's scale rounded to float32 first and the product rounded again
 * (ModelOpt's NVFP4QTensor.dequantize, comfy_kitchen's dequantize_nvfp4). The tools differ only in
 * which nibble holds the even element and in code 8 (ModelOpt's table gives +0, comfy_kitchen's −0),
 * so one table serves both (modelopt-nvfp4.ts, comfy-nvfp4.ts), and one row decoder (row-decoders.ts
 * `nvfp4`, run on the CPU backend's threads where it has them).
 */
import { decodeToF32 } from '../dtype.js';
import { e2m1CodeValues } from './e2m1.js';
import { decodeSourceRows, type RowDecodeRunner, type RowSource } from './row-decoders.js';

export { E2M1, e2m1CodeValues } from './e2m1.js';

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
 * For one global scale, every value a code can take: `values[s·16 + code]` = f32(e2m1(code) ×
 * f32(e4m3(s) × global)), each step rounded to float32 (a Float32Array store rounds as a float32
 * multiply does), and `bits`, the same as float32 bits. The row decoder (row-decoders.ts `nvfp4`)
 * reads them, on whichever thread decodes. Kept for the last global scale of each reading only, as
 * a merge reads a weight's slabs in turn. The caller makes sure f32(448 × global) is finite.
 */
const last = new Map<string, { global: number; values: Float32Array; bits: Uint32Array }>();
export function nvfp4CodeValues(global: number, reading: Nvfp4Reading): { values: Float32Array; bits: Uint32Array } {
  const key = `${reading.evenHigh}${reading.negativeZero}`;
  const kept = last.get(key);
  if (kept && Object.is(kept.global, global)) return kept;
  const scales = e4m3Bytes().values;
  const codes = e2m1CodeValues(reading.negativeZero);
  const values = new Float32Array(256 * 16);
  for (let s = 0; s < 256; s++) {
    const block = Math.fround(scales[s] * global);
    for (let code = 0; code < 16; code++) values[s * 16 + code] = codes[code] * block;
  }
  const made = { global, values, bits: new Uint32Array(values.buffer) };
  last.set(key, made);
  return made;
}

/**
 * Rows [r0, r1) of an NVFP4 weight by its row source, on `decodeOn`'s threads where it takes them,
 * else here; bytes [offset, offset + length) of them returned. Whole rows go straight into `into`
 * where it is offered (the pipeline's slab memory, which the threads then write in place).
 */
export async function nvfp4ViewRows(source: RowSource, r0: number, r1: number, offset: number, length: number, into?: Uint8Array, decodeOn?: RowDecodeRunner): Promise<Uint8Array> {
  const whole = offset === 0 && length === (r1 - r0) * source.cols * 4 && into?.byteLength === length && into.byteOffset % 4 === 0;
  const out = whole ? new Float32Array(into.buffer, into.byteOffset, length / 4) : undefined;
  const values = (await decodeOn?.(source, r0, r1, out)) ?? decodeSourceRows(source, r0, r1, out);
  return new Uint8Array(values.buffer, values.byteOffset + offset, length);
}

/** A byte array as the Int8Array a row source holds (the same memory). */
export function sourceBytes(bytes: Uint8Array): Int8Array {
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** f32(448 × global) is finite: every block scale times the global scale is a float32, as the tools compute it. */
export function nvfp4GlobalFits(global: number): boolean {
  return Number.isFinite(Math.fround(448 * global));
}
