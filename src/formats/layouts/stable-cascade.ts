/**
 * Layout: Stable Cascade's stage C (the prior: Stability's `stage_c.safetensors`, `stage_c_bf16`,
 * `stage_c_lite`) under the names ComfyUI gives its attention. The checkpoint stores each
 * attention block's q, k and v as PyTorch MultiheadAttention does, in one
 * `<block>.attention.attn.in_proj_weight` (3·c rows); ComfyUI splits it into `to_q`, `to_k`, `to_v`
 * when it loads the model (supported_models.py Stable_Cascade_C.process_unet_state_dict: rows
 * [0, c), [c, 2c), [2c, 3c)), and its LoRA key map (`lora_prior_unet_` + those names flattened,
 * comfy/lora.py) is what Stable Cascade LoRAs are written against. So a module on `…attention.attn.to_q`
 * lands on the first third of `in_proj_weight`, `to_k` on the second, `to_v` on the third. Every
 * other module (`attention.attn.out_proj`, `kv_mapper.1`, `channelwise.0`, the depthwise conv,
 * the mappers) has its checkpoint name and lands by name.
 *
 * It answers only on a stage C base (a down block's `attention.attn.in_proj_weight` beside
 * `clip_txt_pooled_mapper`).
 */
import type { RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

/** Stage C's two levels, each a down and an up path of blocks numbered within the level. */
const LEVELS = ['down_blocks.0', 'down_blocks.1', 'up_blocks.0', 'up_blocks.1'];

export const STABLE_CASCADE_RULES: readonly RenameRule[] = LEVELS.map((level) => {
  const A = `${level}.{i}.attention.attn`;
  return { fused: `${A}:in_proj_weight`, parts: [{ name: `${A}.to_q`, units: 1 }, { name: `${A}.to_k`, units: 1 }, { name: `${A}.to_v`, units: 1 }] };
});

const ATTENTION = /(^|\.)down_blocks\.0\.\d+\.attention\.attn\.in_proj_weight$/;
const STAGE_C = modelPrefix((key, base) => {
  const m = ATTENTION.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  return base.index.has(`${p}clip_txt_pooled_mapper.weight`) ? p : undefined;
});

export const stableCascade = modelLayout('stable-cascade', STAGE_C, STABLE_CASCADE_RULES);
