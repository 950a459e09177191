/**
 * Cheap pseudo-random tensor data for the benchmark model. xorshift32 gives 32 bits per step, which
 * become two f16 values at once: the mantissa and sign bits are kept as drawn and the exponent is
 * forced into 2^-9 … 2^-5, so every value is a finite f16 of about the spread of trained weights.
 */

/** A xorshift32 stream; the seed must not be 0. */
export function createXorshift(seed) {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** Fills `words` (a Uint32Array view of f16 pairs) with finite f16 values of magnitude 2^-9 … 2^-5. */
export function fillF16Pairs(words, next) {
  for (let i = 0; i < words.length; i++) {
    const x = next();
    // Bits 10–11 of each half pick the exponent field (6…9: 2^-9 … 2^-6, times 1.x); sign and mantissa stay.
    words[i] = (x & 0x83ff83ff) | ((((x >>> 10) & 0x00030003) + 0x00060006) << 10);
  }
}

/** Fills `out` with f32 values uniform in [-halfWidth, halfWidth). */
export function fillUniformF32(out, next, halfWidth) {
  const k = (2 * halfWidth) / 4294967296;
  for (let i = 0; i < out.length; i++) out[i] = next() * k - halfWidth;
}
