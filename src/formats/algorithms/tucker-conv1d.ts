/**
 * PEFT's LoHa and LoKr on an nn.Conv1d with use_effective_conv2d: their Tucker cores are
 * (r, r, k, 1), a 2-D kernel of width 1, and get_delta_weight reshapes the (out, in, k, 1) ΔW to the
 * layer's (out, in, k) (LyCORIS gives a Conv1d's cores 3 dims). The plan lets such a module, and
 * only such, onto a 3-D weight.
 */
import type { TensorEntry } from '../safetensors-types.js';

/** A Tucker core (r, r, k, 1): PEFT's form for a Conv1d. */
export function isConv1dTucker(core: TensorEntry): boolean {
  return core.shape.length === 4 && core.shape[3] === 1;
}
