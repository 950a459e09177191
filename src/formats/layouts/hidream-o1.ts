/**
 * Layout: HiDream-O1-Image LoRAs in the original checkpoint's names on a checkpoint in ComfyUI's.
 * HiDream-O1's checkpoint is a transformers Qwen3-VL one with the denoising modules beside, all under
 * `model.` (`model.language_model.layers.N.self_attn.q_proj`, `model.visual.…`, `model.t_embedder1.mlp.0`,
 * `model.x_embedder.proj1`, `model.final_layer2.linear`; diffusers' HiDreamO1Transformer2DModel keeps the
 * same names). ComfyUI's HiDreamO1Transformer holds those modules without the `model.` (`language_model.…`,
 * `t_embedder1.…`), as a bare diffusion model file or under `model.diffusion_model.` in a checkpoint it
 * saved, and maps a LoRA's `model.` + name to `diffusion_model.` + name (model_lora_keys_unet, HiDreamO1):
 * here such a module lands on the tensor of that name under the base's prefix, whole (nothing is fused or
 * split). On the original checkpoint (and diffusers') the names land as they are, without this layout.
 *
 * It answers only on a HiDream-O1 base (`t_embedder1.mlp.0` beside `final_layer2.linear` and `x_embedder.proj1`),
 * for dotted names under `model.` whose next part is one of the model's own modules.
 */
import { wholeTensor, type Layout } from './layout.js';
import { modelPrefix, prefixBefore } from './model-prefix.js';

const MARKER = /(^|\.)t_embedder1\.mlp\.0\.weight$/;
const HIDREAM_O1 = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}final_layer2.linear.weight`) && base.index.has(`${p}x_embedder.proj1.weight`) ? p : null;
});

/** A module path in the original naming: `model.` and then one of HiDream-O1's modules. */
const ORIGINAL = /^model\.((?:language_model|visual|t_embedder1|x_embedder|final_layer2)\..+)$/;

/** The HiDream-O1 layout, in the registry (./index.ts). */
export const hidreamO1: Layout = {
  name: 'hidream-o1',
  resolve(address, base) {
    if (address.flat || (address.part !== undefined && address.part !== 'unet')) return undefined;
    const m = ORIGINAL.exec(address.path);
    if (!m) return undefined;
    const prefix = HIDREAM_O1.of(base);
    // On the original checkpoint (prefix `model.`) the names land as they are.
    if (prefix === null || prefix === 'model.') return undefined;
    return wholeTensor(HIDREAM_O1.lookup(base, `${m[1]}.weight`));
  },
};
