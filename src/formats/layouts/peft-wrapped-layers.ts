/**
 * Layout: checkpoints saved with PEFT LoRA layers in place, as Phi-4-multimodal's
 * (`Phi4MMForCausalLM`, whose remote code wraps its language model with get_peft_model for the
 * built-in `vision` and `speech` LoRAs): a wrapped module keeps its weight as
 * `<module>.base_layer.weight`, beside `<module>.lora_A.<name>.weight` and `lora_B.<name>.weight`.
 * A PEFT adapter trained on that model names the module itself (`…self_attn.qkv_proj`); PEFT adds it
 * to the LoRA layer already there, and merging it (LoraLayer.merge) adds ΔW to the base layer's
 * weight. So the module lands on `<module>.base_layer.weight`, and the built-in LoRA tensors are
 * copied as they are. A module naming one of those built-in LoRA layers (`…qkv_proj.lora_A.speech`)
 * is refused: they are the model's own adapters, not base weights to merge into.
 */
import type { BaseView, Layout, LayoutResolution } from './layout.js';

/** A module inside a PEFT LoRA layer: the layer's path, the LoRA part, and the adapter's name. */
const LORA_PART = /^(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)\.([^.]+)$/;

/** The base key of `<path>.base_layer.weight`, where the base stores the module wrapped and not plain. */
function wrappedWeight(path: string, base: BaseView): string | undefined {
  if (base.index.resolveDotted(`${path}.weight`).found) return undefined;
  const r = base.index.resolveDotted(`${path}.base_layer.weight`);
  return r.found ? r.key : undefined;
}

export const peftWrappedLayers: Layout = {
  name: 'peft-wrapped-layers',
  resolve(address, base): LayoutResolution | undefined {
    if (address.flat || address.tensor) return undefined;
    const part = LORA_PART.exec(address.path);
    const layer = part && wrappedWeight(part[1], base);
    if (part && layer) {
      // Said as an ambiguous answer so that no later layout matches the LoRA tensor by its name.
      return {
        found: false, ambiguous: true, candidates: [layer],
        why: `names ${part[2]}.${part[3]} of ${part[1]}, a LoRA layer the base model carries itself (its checkpoint stores ${layer} beside its own LoRA weights): those are kept as they are, not merged into; target the layer ${part[1]} to change its base weight`,
      };
    }
    const weight = wrappedWeight(address.path, base);
    return weight ? { found: true, targets: [{ baseKey: weight }] } : undefined;
  },
};
