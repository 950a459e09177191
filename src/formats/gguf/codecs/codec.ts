/** A block codec: one GGML tensor type decoded to f32 and encoded from f32, whole blocks at a time. */
import type { GgmlType } from '../ggml-types.js';

export interface BlockCodec {
  readonly type: GgmlType;
  /** `src` holds n whole blocks; `out` receives their n·blockSize values. */
  decode(src: Uint8Array, out: Float32Array): void;
  /**
   * `src` holds n·blockSize values; `out` receives n blocks, equal to what llama.cpp's reference
   * quantizer (`quantize_row_*_ref`) writes for the same f32 values.
   */
  encode(src: Float32Array, out: Uint8Array): void;
}
