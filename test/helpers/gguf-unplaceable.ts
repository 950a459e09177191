/**
 * The refusal, written out, for a module whose rows cannot be placed on a GGUF base because a
 * count convert_hf_to_gguf's row order needs is missing from its metadata or does not fit its tensors.
 */
export const unplaceable = (reason: string): string =>
  `cannot be placed where convert_hf_to_gguf put its rows: ${reason}; check the GGUF is whole and unedited, or merge into the safetensors model and convert that`;
