/** torch.float8_e4m3fn decoded by hand: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7F/0xFF are NaN. */
export function e4m3Value(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 3) & 0xf;
  const mant = byte & 7;
  if (exp === 15 && mant === 7) return NaN;
  return sign * (exp === 0 ? (mant / 8) * 2 ** -6 : (1 + mant / 8) * 2 ** (exp - 7));
}
