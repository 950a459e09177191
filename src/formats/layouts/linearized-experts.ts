/**
 * Layout that only explains misses: one expert's Linear layer of a model whose fused experts a
 * trainer split into Linear layers so that bitsandbytes can quantize them and PEFT can wrap them:
 * Unsloth's gpt-oss (`mlp.experts.gate_up_projs.K`, `down_projs.K`, each weight the fused
 * parameter's slab K transposed) and axolotl's linearized Llama 4 (`feed_forward.experts.gate_projs.K`,
 * `up_projs.K`, `down_projs.K`, gate and up the two halves of `gate_up_proj`'s slab K, transposed).
 * On the checkpoint the adapter was trained on those names are the base's own and land by
 * `dotted-path`; on a checkpoint that stores the experts fused (openai/gpt-oss, meta-llama's Llama 4)
 * such a LoRA is not placed, and the reason names the fused tensor instead of a bare miss.
 */
import { missBecause, type Layout } from './layout.js';

const LINEARIZED = /^(.+\.experts)\.(gate_up_projs|gate_projs|up_projs|down_projs)\.(\d+)$/;

/** The fused parameter each split name comes from. */
const FUSED: Readonly<Record<string, string>> = { gate_up_projs: 'gate_up_proj', gate_projs: 'gate_up_proj', up_projs: 'gate_up_proj', down_projs: 'down_proj' };

export const linearizedExperts: Layout = {
  name: 'linearized-experts',
  resolve(address, base) {
    const m = address.tensor || address.flat ? null : LINEARIZED.exec(address.path);
    if (!m) return undefined;
    const [, stem, split, index] = m;
    const fused = base.index.resolveDotted(`${stem}.${FUSED[split]}`);
    if (!fused.found) return undefined;
    const shape = base.shape(fused.key) ?? [];
    const part = split === 'gate_projs' ? 'the gate half of ' : split === 'up_projs' ? 'the up half of ' : '';
    return missBecause(
      `names expert ${index}'s Linear layer of experts split into Linear layers (Unsloth's gpt-oss, axolotl's linearized Llama 4), which this base stores fused in ${fused.key} [${shape.join(', ')}]; ` +
      `that layer's weight is ${part}expert ${index}'s slab transposed, where a LoRA on it is not placed: merge into the checkpoint with the experts split that the adapter was trained on`,
    );
  },
};
