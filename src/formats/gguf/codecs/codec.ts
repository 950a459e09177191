/** Block codecs: GGML tensor types decoded to f32 and encoded from f32, whole blocks at a time. */
import type { GgmlType } from '../ggml-types.js';

/** A type loramerge reads: its blocks decoded exactly, as ggml's dequantize_row_* computes them. */
export interface BlockDecoder {
  readonly type: GgmlType;
  /** `src` holds n whole blocks; `out` receives their n·blockSize values. */
  decode(src: Uint8Array, out: Float32Array): void;
}

/** A type loramerge also writes. */
export interface BlockCodec extends BlockDecoder {
  /**
   * `src` holds n·blockSize values; `out` receives n blocks, equal to what llama.cpp's reference
   * quantizer (`quantize_row_*_ref`; for IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS `quantize_iq*` without
   * importance weights, which llama-quantize runs) writes for the same f32 values.
   */
  encode(src: Float32Array, out: Uint8Array): void;
}
