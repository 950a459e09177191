/**
 * torch's seeded CPU draws written plainly, apart from the engine's code
 * (src/algorithms/math/torch-cpu-random.ts, torch-kaiming.ts), as truths for the PEFT VeRA and
 * PVeRA adapters saved with save_projection: false: MT19937 as Matsumoto and Nishimura's
 * mt19937ar.c seeds and steps it, torch's seed as its low 32 bits, and PEFT's kaiming-uniform
 * draw as torch's AVX2 CPU kernel rounds it (test/reference/torch-kaiming-uniform.json holds
 * torch's own bits; test/peft-drawn-projections.test.ts checks these against them).
 */

/** MT19937 as Matsumoto and Nishimura's mt19937ar.c: init_genrand(s), then genrand_int32(). */
export function plainMt(seed: number): () => number {
  const mt = new Array<number>(624);
  mt[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    // 1812433253·prev + i mod 2³², split in 16-bit halves to stay exact in float64.
    mt[i] = ((((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253) + i) >>> 0;
  }
  let mti = 624;
  return () => {
    if (mti >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = (mt[(k + 397) % 624] ^ (y >>> 1) ^ ((y & 1) === 1 ? 0x9908b0df : 0)) >>> 0;
      }
      mti = 0;
    }
    let y = mt[mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

/**
 * torch's seed as its CPU generator takes it: manual_seed turns a Python int in [−2⁶³, 2⁶⁴) into a
 * uint64 (a negative one two's complement) and mt19937 keeps the low 32 bits.
 */
export const low32 = (seed: number | bigint) => Number(BigInt.asUintN(32, BigInt(seed)));

/**
 * PEFT's kaiming-uniform (rows, cols) draw in float64 arithmetic: bound = √3·√2/√cols in float64,
 * cast to float32, then per entry x = (draw mod 2²⁴)/2²⁴ and one rounding to float32 of
 * x·(2·bound_f) − bound_f (fused, torch's AVX2 kernel), or two (`fused` false: the product rounded
 * first, torch's default kernel).
 */
export function plainKaiming(next: () => number, rows: number, cols: number, fused = true): Float32Array {
  const bound = Math.fround(Math.sqrt(3) * (Math.sqrt(2) / Math.sqrt(cols)));
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const x = (next() % 16777216) / 16777216;
    out[i] = fused ? x * (2 * bound) - bound : Math.fround(x * (2 * bound)) - bound;
  }
  return out;
}
