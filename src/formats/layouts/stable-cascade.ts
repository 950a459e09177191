/**
 * Layout: Stable Cascade's stage C (the prior: Stability's `stage_c.safetensors`, `stage_c_bf16`,
 * `stage_c_lite`) and stage B (the decoder: `stage_b.safetensors`, `stage_b_bf16`, `stage_b_lite`)
 * under the names ComfyUI gives their attention. The checkpoints store each attention block's q, k
 * and v as PyTorch MultiheadAttention does, in one `<block>.attention.attn.in_proj_weight` (3·c
 * rows); ComfyUI splits it into `to_q`, `to_k`, `to_v` when it loads either stage
 * (supported_models.py Stable_Cascade_C.process_unet_state_dict, which Stable_Cascade_B inherits:
 * rows [0, c), [c, 2c), [2c, 3c)), and its LoRA key map (comfy/lora.py: `lora_unet_` and
 * `diffusion_model.` + every model key, stage C's also under `lora_prior_unet_`) is what Stable
 * Cascade LoRAs are written against. So a module on `…attention.attn.to_q` lands on the first
 * third of `in_proj_weight`, `to_k` on the second, `to_v` on the third. Every other module
 * (`attention.attn.out_proj`, `kv_mapper.1`, `channelwise.0/4`, the depthwise conv, the mappers)
 * has its checkpoint name and lands by name.
 *
 * It answers only on a Stable Cascade base: a block's `attention.attn.in_proj_weight` beside stage
 * C's `clip_txt_pooled_mapper` or stage B's `clip_mapper` (the keys ComfyUI's and diffusers' model
 * detection tell the two stages by).
 */
import type { RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

/**
 * The levels, each a down and an up path of blocks numbered within the level: stage C has two (both
 * with attention), stage B four (attention in the last two, `CTA`).
 */
const LEVELS = [0, 1, 2, 3].flatMap((l) => [`down_blocks.${l}`, `up_blocks.${l}`]);

/** Each level's attention: in_proj_weight's thirds are ComfyUI's to_q, to_k, to_v. */
export const STABLE_CASCADE_RULES: readonly RenameRule[] = LEVELS.map((level) => {
  const A = `${level}.{i}.attention.attn`;
  return { fused: `${A}:in_proj_weight`, parts: [{ name: `${A}.to_q`, units: 1 }, { name: `${A}.to_k`, units: 1 }, { name: `${A}.to_v`, units: 1 }] };
});

const ATTENTION = /(^|\.)down_blocks\.\d+\.\d+\.attention\.attn\.in_proj_weight$/;
const STABLE_CASCADE = modelPrefix((key, base) => {
  const m = ATTENTION.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}clip_txt_pooled_mapper.weight`) || base.index.has(`${p}clip_mapper.weight`) ? p : undefined;
});

/** The Stable Cascade layout (stages C and B), in the registry (./index.ts). */
export const stableCascade = modelLayout('stable-cascade', STABLE_CASCADE, STABLE_CASCADE_RULES);
