/**
 * Layout: Z-Image (Turbo, Base, Edit) in ComfyUI's naming (Comfy-Org's single files, checkpoints
 * ComfyUI saves, its extracted LoRAs: `layers.N.attention.qkv`, `attention.out`, `final_layer`,
 * `x_embedder`) and in diffusers' (Tongyi-MAI's own release, ZImageTransformer2DModel; ai-toolkit's,
 * diffusers' and most trainers' LoRAs: `attention.to_q`, `attention.to_out.0`,
 * `all_final_layer.2-1`, `all_x_embedder.2-1`), either way round, as diffusers' single-file
 * conversion (convert_z_image_transformer_checkpoint_to_diffusers) and ComfyUI's LoRA key map
 * (comfy/utils.py z_image_to_diffusers) rename them:
 * - q, k, v are the thirds of `attention.qkv` (ComfyUI: rows 0, dim, 2·dim, dim each), in the main
 *   layers, the noise and context refiners and Z-Image-Omni's siglip refiner alike;
 * - `attention.out` is `attention.to_out.0` (diffusers' LoRA converter reads that name too);
 * - the q/k RMSNorms `attention.q_norm`, `k_norm` are `attention.norm_q`, `norm_k` (one weight of
 *   the head size in both);
 * - `final_layer.*` is `all_final_layer.2-1.*` and `x_embedder` is `all_x_embedder.2-1`, row for
 *   row: the final adaLN is a scale alone, nothing is swapped;
 * - the SwiGLU FFN (`feed_forward.w1`, `w3` gate and up, `w2` down), `adaLN_modulation.0`,
 *   `cap_embedder`, `t_embedder` keep their names and land by name before this layout is asked.
 *
 * It answers only on a Z-Image base (a refiner block with MHA attention: a qkv three times as tall
 * as it is wide, or diffusers' `to_q`). Lumina 2, whose NextDiT ComfyUI names alike, has grouped
 * k and v heads (a qkv of dim + 2·kv rows), so thirds of its qkv would be wrong rows: it is left out.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';


function blockRules(blocks: string): RenameRule[] {
  const B = `${blocks}.{i}.attention`;
  return [
    { fused: `${B}.qkv`, parts: [{ name: `${B}.to_q`, units: 1 }, { name: `${B}.to_k`, units: 1 }, { name: `${B}.to_v`, units: 1 }] },
    oneToOne(`${B}.out`, `${B}.to_out.0`),
    oneToOne(`${B}.q_norm`, `${B}.norm_q`),
    oneToOne(`${B}.k_norm`, `${B}.norm_k`),
  ];
}

export const Z_IMAGE_RULES: readonly RenameRule[] = [
  ...['layers', 'noise_refiner', 'context_refiner', 'siglip_refiner'].flatMap(blockRules),
  oneToOne('final_layer.linear', 'all_final_layer.2-1.linear'),
  oneToOne('final_layer.adaLN_modulation.1', 'all_final_layer.2-1.adaLN_modulation.1'),
  oneToOne('x_embedder', 'all_x_embedder.2-1'),
];

/** A refiner block's attention, either naming: `noise_refiner.0.attention.qkv` / `.to_q`. */
const REFINER_ATTENTION = /(^|\.)noise_refiner\.\d+\.attention\.(qkv|to_q)\.weight$/;
/** The prefix of the model's keys, or null: not Z-Image. */
const Z_IMAGE = modelPrefix((key, base) => {
  const m = REFINER_ATTENTION.exec(key);
  if (!m) return undefined;
  const shape = base.shape(key);
  // Z-Image's attention is MHA: q, k, v all dim rows. Lumina 2's qkv is dim + 2·kv rows.
  if (m[2] === 'qkv' && !(shape && shape.length === 2 && shape[0] === 3 * shape[1])) return null;
  return prefixBefore(key, m);
});

export const zImage = modelLayout('z-image', Z_IMAGE, Z_IMAGE_RULES);
