/**
 * What a GGUF header may hold, shared by the reader (gguf-reader.ts) and the walk that tells a
 * wrong count from other damage (gguf-counts.ts), so the two never disagree on a rule.
 */

/** The alignment of tensor data where `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** GGML_MAX_DIMS. */
export const GGML_MAX_DIMS = 4;
/**
 * The types a 5-D tensor may have: ComfyUI-GGUF's fix_5d_tensors.py adds a video model's Conv3d
 * patch embedding (Wan's, HunyuanVideo's `patch_embedding.weight`) to its GGUF files as a 5-D F32
 * tensor, which gguf-py and ComfyUI-GGUF's loader read though GGML's own code stops at 4.
 */
export const FIVE_D_TYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);
/** GGML_MAX_NAME: names are stored in 64-byte fields with a terminating zero. */
export const GGML_MAX_NAME_BYTES = 63;
