/**
 * mlx-lm's LoRA (tuner/lora.py LoRALinear, LoRAEmbedding; tuner/dora.py DoRALinear, DoRAEmbedding):
 * `lora_a` (in, r) and `lora_b` (r, out), the transposes of PEFT's factors, so
 * ΔW (out, in) = scale·lora_bᵀ·lora_aᵀ (LoRALinear.fuse). An embedding's are (vocab, r) and
 * (r, dims), and its fuse adds scale·lora_a·lora_b to the (vocab, dims) weight: the same product
 * laid on a weight stored (in, out), so both load alike. `scale` is lora_parameters.scale, used as
 * it is (no α/r). Modules are built by the mlx-lm parser (formats/mlx-lm.ts), not from key forms.
 */
import { transpose } from '../../algorithms/math/matrix.js';
import type { Algorithm } from './algorithm.js';
import { f32Bytes, readMatrix } from './factor-io.js';

export const mlxLora: Algorithm = {
  name: 'mlx-lora',
  title: 'LoRA (mlx-lm)',
  // No key form names these tensors: only an mlx-lm adapter folder builds such modules.
  defines: [],
  roles: [],

  build(_tensors, context) {
    context.report('UNSUPPORTED_FORMAT', 'mlx-lm factors are read from an mlx-lm adapter folder only');
    return null;
  },

  async load(file, module) {
    const { lora_a: loraA, lora_b: loraB } = module.tensors;
    const [a, b] = await Promise.all([readMatrix(file, loraA), readMatrix(file, loraB)]);
    // A = lora_aᵀ (r, in), B = lora_bᵀ (out, r): the engine's ΔW = B·A.
    return [{ kind: 'low-rank', a: f32Bytes(transpose(a).data), b: f32Bytes(transpose(b).data), rank: module.rank }];
  },
};
