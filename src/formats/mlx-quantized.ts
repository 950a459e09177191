/**
 * mlx-lm's quantized checkpoints (mlx-community's `*-4bit`, `mlx_lm.convert -q`): each quantized
 * layer stores `weight` as uint32 words of packed codes beside `scales` and `biases` (one per group
 * of inputs), and config.json says `quantization: {group_size, bits}`. They are not read here; this
 * names them, so that an update to one is refused as what it is rather than as a uint32 tensor.
 */
import type { BaseTensor } from './base-model.js';

/** `<layer>.weight` of every mlx affine-quantized layer, with the refusal's reason. */
export function mlxQuantizedWeights(tensors: ReadonlyMap<string, Pick<BaseTensor, 'dtype'>>): Map<string, string> {
  const found = new Map<string, string>();
  for (const [key, tensor] of tensors) {
    if (!key.endsWith('.weight') || tensor.dtype !== 'U32') continue;
    const stem = key.slice(0, -'weight'.length);
    if (tensors.has(`${stem}scales`) && tensors.has(`${stem}biases`)) {
      found.set(key, `mlx's affine quantization (uint32 codes with ${stem}scales and ${stem}biases), which loramerge does not read`);
    }
  }
  return found;
}
