/**
 * bitsandbytes' 4-bit code tables as its own functions print them (functional.py get_4bit_type,
 * csrc/kernels.cu), each value in float32: the truth the bitsandbytes tests decode by, written
 * here and not taken from the code under test.
 */
import { roundForDType, type FixtureTensor } from './fixtures.js';

/** get_4bit_type('nf4'). */
export const NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
].map(Math.fround);

/** get_4bit_type('fp4'): 1 sign, 2 exponent and 1 mantissa bit, divided by 12 in float32; bit 3 the sign. */
export const FP4 = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((x) => Math.fround(x / 12));

/**
 * functional.py create_dynamic_map(signed=True): for i in 0…6, the midpoints of linspace(0.1, 1,
 * 2^i + 1) times ±10^(i−6), with 0 and 1, sorted (256 values; the double quant's code table).
 */
export function dynamicMap(): number[] {
  const data: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const n = 2 ** i + 1;
    const bounds = Array.from({ length: n }, (_, k) => 0.1 + (0.9 * k) / (n - 1));
    for (let k = 0; k + 1 < n; k++) {
      const mean = (bounds[k] + bounds[k + 1]) / 2;
      data.push(10 ** (i - 6) * mean, -(10 ** (i - 6)) * mean);
    }
  }
  return data.sort((a, b) => a - b).map(Math.fround);
}

/** The random draws a 4-bit fixture takes, in order (a seeded stream, or a fuzzer's draw). */
export interface FourBitDraws {
  rand(): number;
  int(lo: number, hi: number): number;
}

/**
 * A Linear4bit weight's block statistics, plain (`absmax` F32) or double-quantized (`absmax` U8
 * codes into the dynamic map × `nested_absmax` per 256 blocks + `nested_offset`, as
 * bitsandbytes' compress_statistics stores them), the fields they add to the quant state, and the
 * absmax each block decodes with. `poison` may spoil the F32 values before they are stored.
 */
export function fourBitStats(name: string, blocks: number, nested: boolean, draw: FourBitDraws, poison?: (values: number[]) => void): {
  absmax: number[];
  stats: FixtureTensor[];
  state: Record<string, unknown>;
} {
  if (!nested) {
    const absmax = Array.from({ length: blocks }, () => Math.fround(0.01 + draw.rand() * 0.1));
    poison?.(absmax);
    return { absmax, stats: [{ name: `${name}.absmax`, dtype: 'F32', shape: [blocks], data: f32Bytes(absmax) }], state: {} };
  }
  const map = dynamicMap();
  const q = Array.from({ length: blocks }, () => draw.int(0, 255));
  const nestedAbsmax = Array.from({ length: Math.ceil(blocks / 256) }, () => Math.fround(0.02 + draw.rand() * 0.05));
  poison?.(nestedAbsmax);
  const offset = Math.fround(0.05 + draw.rand() * 0.02); // the mean absmax, subtracted before the second quantization
  return {
    absmax: q.map((qj, j) => Math.fround(Math.fround(map[qj] * nestedAbsmax[Math.floor(j / 256)]) + offset)),
    stats: [
      { name: `${name}.absmax`, dtype: 'U8', shape: [blocks], data: q },
      { name: `${name}.nested_absmax`, dtype: 'F32', shape: [nestedAbsmax.length], data: f32Bytes(nestedAbsmax) },
      { name: `${name}.nested_quant_map`, dtype: 'F32', shape: [256], data: f32Bytes(map) },
    ],
    state: { nested_blocksize: 256, nested_dtype: 'float32', nested_offset: offset },
  };
}

/** dequantize_4bit of `n` values: each nibble (high first) through `code`, times its block's absmax, cast to `dtype`. */
export function fourBitTruth(packed: Uint8Array, n: number, code: readonly number[], absmax: readonly number[], blocksize: number, dtype: 'BF16' | 'F16'): Float64Array {
  const w = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    const nibble = v % 2 === 0 ? packed[v >> 1] >> 4 : packed[v >> 1] & 15;
    w[v] = roundForDType(Math.fround(code[nibble] * absmax[Math.floor(v / blocksize)]), dtype);
  }
  return w;
}

function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
