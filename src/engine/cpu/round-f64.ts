/**
 * f64 → f32/f16/bf16/fp8 bits, rounded once to nearest even. Going through Math.fround would round
 * twice; that is only wrong when the f32 lands exactly on a tie of the narrower format, so in that
 * case the f32 is nudged one ulp towards the exact value before the second rounding.
 */
import { F8_FORMATS, f32BitsToBf16Bits, f32BitsToF16Bits, f32BitsToF8Bits, type F8DType } from '../../dtype.js';

/** float32's largest finite value. */
const F32_MAX = 3.4028234663852886e38;
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** f32 bits of x, adjusted so that a later round-to-nearest-even to `dropBits` fewer bits is exact. */
function f32BitsForNarrowing(x: number, dropMask: number, tie: number): number {
  scratch[0] = x;
  let bits = scratchBits[0];
  const f = scratch[0];
  if (f !== x && (bits & dropMask) === tie && Number.isFinite(f)) {
    // x is not on the tie: step the magnitude towards it (sign-magnitude bits).
    bits += Math.abs(x) > Math.abs(f) ? 1 : -1;
  }
  return bits >>> 0;
}

export function f64ToF16Bits(x: number): number {
  scratch[0] = x;
  let bits = scratchBits[0];
  const e = (bits >>> 23) & 0xff;
  if (e >= 113 && e < 0xff) {
    // The common case, inlined: normal f16 results drop 13 bits.
    if ((bits & 0x1fff) === 0x1000 && scratch[0] !== x) bits += Math.abs(x) > Math.abs(scratch[0]) ? 1 : -1;
    return f32BitsToF16Bits(bits >>> 0);
  }
  // Normal f16 range drops 13 bits; subnormal f16 results drop more (14 - (e - 112) + 13).
  const drop = e >= 113 ? 13 : 126 - e;
  if (drop > 24 || e === 0xff) return f32BitsToF16Bits(bits); // below half the smallest subnormal: 0
  // With 24 dropped bits the tie is the implicit bit alone: a zero mantissa field.
  const mask = drop === 24 ? 0x7fffff : (1 << drop) - 1;
  const tie = drop === 24 ? 0 : 1 << (drop - 1);
  return f32BitsToF16Bits(f32BitsForNarrowing(x, mask, tie));
}

export function f64ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32BitsForNarrowing(x, 0xffff, 0x8000));
}

/** f64 → fp8 bits, rounded once to nearest even and saturated like f32BitsToF8Bits. */
export function f64ToF8Bits(x: number, dtype: F8DType): number {
  const { mantBits, bias } = F8_FORMATS[dtype];
  // A finite value past float32 saturates too: through f32 it would become Inf (an e5m2 update
  // divided by a subnormal scale_weight reaches 1e39 in code space, where the exact result is
  // ±57344). Any value past f32's largest saturates alike, so it is taken as that.
  if (Number.isFinite(x) && Math.abs(x) > F32_MAX) x = Math.sign(x) * F32_MAX;
  scratch[0] = x;
  const e = (scratchBits[0] >>> 23) & 0xff;
  if (e === 0xff) return f32BitsToF8Bits(scratchBits[0], dtype);
  // fp8 normal results drop 23 - mantBits bits of the f32 mantissa; subnormal ones drop more.
  const exp = e - 127 + bias;
  const drop = exp >= 1 ? 23 - mantBits : 24 - mantBits - exp;
  if (drop > 24) return f32BitsToF8Bits(scratchBits[0], dtype); // below half the smallest subnormal: 0
  const mask = drop === 24 ? 0x7fffff : (1 << drop) - 1;
  const tie = drop === 24 ? 0 : 1 << (drop - 1);
  return f32BitsToF8Bits(f32BitsForNarrowing(x, mask, tie), dtype);
}
