/**
 * The 12-byte scale block shared by Q4_K and Q5_K: eight 6-bit scales and eight 6-bit minimums
 * (get_scale_min_k4 in ggml-quants.c). Sub-blocks 0–3 keep their low 6 bits in bytes 0–3 (scale)
 * and 4–7 (min); sub-blocks 4–7 keep their low 4 bits in bytes 8–11 and their top 2 bits in the
 * top bits of bytes 0–7.
 */

/** Scale (6 bits) of sub-block j from the 12 bytes at `at`. */
export function kScale(bytes: Uint8Array, at: number, j: number): number {
  if (j < 4) return bytes[at + j] & 63;
  return (bytes[at + j + 4] & 0x0f) | ((bytes[at + j - 4] >> 6) << 4);
}

/** Minimum (6 bits) of sub-block j. */
export function kMin(bytes: Uint8Array, at: number, j: number): number {
  if (j < 4) return bytes[at + j + 4] & 63;
  return (bytes[at + j + 4] >> 4) | ((bytes[at + j] >> 6) << 4);
}

/** Packs scale `ls` and min `lm` (each 0–63) of sub-block j, as quantize_row_q4_K_ref does. */
export function putKScaleMin(bytes: Uint8Array, at: number, j: number, ls: number, lm: number): void {
  if (j < 4) {
    bytes[at + j] = ls;
    bytes[at + j + 4] = lm;
  } else {
    bytes[at + j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
    bytes[at + j - 4] |= (ls >> 4) << 6;
    bytes[at + j] |= (lm >> 4) << 6;
  }
}
