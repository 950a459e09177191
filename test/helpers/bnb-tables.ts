/**
 * bitsandbytes' 4-bit code tables as its own functions print them (functional.py get_4bit_type,
 * csrc/kernels.cu), each value in float32: the truth the bitsandbytes tests decode by, written
 * here and not taken from the code under test.
 */

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
