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
  /**
   * One row (`src`, whole blocks) quantized with importance weights `qw` (one per value), as
   * `llama-quantize --imatrix` does it: ggml's `quantize_<type>(…, quant_weights)`. Absent where
   * loramerge does not do that for the type (and the type does not ignore them).
   */
  encodeWeighted?(src: Float32Array, out: Uint8Array, qw: Float32Array): void;
  /** ggml's quantizer for the type takes no importance weights: with an imatrix it writes what `encode` writes. */
  readonly ignoresImportance?: boolean;
  /**
   * llama-quantize quantizes the type only with importance weights (the IQ1 and IQ2 types): loramerge
   * writes it only with an imatrix (`encodeWeighted`), and `encode` refuses.
   */
  readonly needsImportance?: boolean;
  /**
   * With `needsImportance`: ggml's quantizer also runs without weights (IQ1_M: x²; IQ2_S: σ²/4 + x²), and `encode`
   * writes that, which llama-quantize runs for the tensors tensor_requires_imatrix exempts
   * (token_embd.weight, per_layer_token_embd.weight, output.weight) and for no other.
   */
  readonly unweightedForEmbeddingAndHead?: boolean;
}
