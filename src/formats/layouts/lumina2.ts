/**
 * Layout: Lumina-Image 2.0 in its original naming (Alpha-VLLM's and Comfy-Org's single files,
 * ComfyUI's NextDiT, sd-scripts' and ComfyUI's LoRAs: `layers.N.attention.qkv`, `attention.out`,
 * `feed_forward.w1`, `adaLN_modulation.1`) and in diffusers' (Lumina2Transformer2DModel:
 * `layers.N.attn.to_q`, `attn.to_out.0`, `feed_forward.linear_1`, `norm1.linear`), either way round,
 * as diffusers' single-file conversion (convert_lumina2_to_diffusers) and its LoRA converter
 * (_convert_non_diffusers_lumina2_lora_to_diffusers) rename them:
 * - the attention has grouped k/v heads: `attention.qkv` is q (24 heads), k and v (8 heads each)
 *   of 96 rows, 2304 + 768 + 768 rows, so q, k, v are rows in the ratio 3 : 1 : 1 (the converters'
 *   split [2304, 768, 768]);
 * - `w1`, `w2`, `w3` are `linear_1`, `linear_2`, `linear_3`; `adaLN_modulation.1` is `norm1.linear`
 *   (the same four chunks, scale and gate twice, in the same order);
 * - the final layer's `adaLN_modulation.1` and `linear` are `norm_out.linear_1` and `linear_2`;
 *   `cap_embedder` (its RMSNorm `.0` and linear `.1`) and `t_embedder.mlp` are under `time_caption_embed`;
 * - the norms: `attention.q_norm`, `k_norm` are `attn.norm_q`, `norm_k`; `attention_norm1` is the
 *   RMSNorm inside `norm1` (`norm1.norm`) in the layers and the noise refiner, whose norm1 is
 *   modulated, and `norm1` itself in the context refiner, whose is not; `attention_norm2` is
 *   `norm2`; `ffn_norm1`, `ffn_norm2` keep their names. The original's unused `norm_final` is
 *   dropped by the conversion and has no counterpart.
 *
 * It answers only on a Lumina 2 base: a refiner whose k projection is a third of q (diffusers) or
 * whose qkv is 5/3 as tall as it is wide (the original naming), which Z-Image's MHA is not.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';


function blockRules(blocks: string): RenameRule[] {
  const B = `${blocks}.{i}`;
  return [
    { fused: `${B}.attention.qkv`, parts: [{ name: `${B}.attn.to_q`, units: 3 }, { name: `${B}.attn.to_k`, units: 1 }, { name: `${B}.attn.to_v`, units: 1 }] },
    oneToOne(`${B}.attention.out`, `${B}.attn.to_out.0`),
    oneToOne(`${B}.feed_forward.w1`, `${B}.feed_forward.linear_1`),
    oneToOne(`${B}.feed_forward.w2`, `${B}.feed_forward.linear_2`),
    oneToOne(`${B}.feed_forward.w3`, `${B}.feed_forward.linear_3`),
    oneToOne(`${B}.adaLN_modulation.1`, `${B}.norm1.linear`),
    oneToOne(`${B}.attention.q_norm`, `${B}.attn.norm_q`),
    oneToOne(`${B}.attention.k_norm`, `${B}.attn.norm_k`),
    oneToOne(`${B}.attention_norm1`, blocks === 'context_refiner' ? `${B}.norm1` : `${B}.norm1.norm`),
    oneToOne(`${B}.attention_norm2`, `${B}.norm2`),
  ];
}

export const LUMINA2_RULES: readonly RenameRule[] = [
  ...['layers', 'noise_refiner', 'context_refiner'].flatMap(blockRules),
  oneToOne('cap_embedder.0', 'time_caption_embed.caption_embedder.0'),
  oneToOne('cap_embedder.1', 'time_caption_embed.caption_embedder.1'),
  oneToOne('t_embedder.mlp.0', 'time_caption_embed.timestep_embedder.linear_1'),
  oneToOne('t_embedder.mlp.2', 'time_caption_embed.timestep_embedder.linear_2'),
  oneToOne('final_layer.adaLN_modulation.1', 'norm_out.linear_1'),
  oneToOne('final_layer.linear', 'norm_out.linear_2'),
];

const REFINER = /(^|\.)noise_refiner\.\d+\.(attention\.qkv|attn\.to_k)\.weight$/;
/** The prefix of the model's keys, or null: not Lumina 2 (its k/v heads a third of its q heads). */
const LUMINA2 = modelPrefix((key, base) => {
  const m = REFINER.exec(key);
  if (!m) return undefined;
  const [rows, cols] = base.shape(key) ?? [];
  const grouped = m[2] === 'attention.qkv' ? rows * 3 === cols * 5 : rows * 3 === cols;
  return grouped ? prefixBefore(key, m) : null;
});

export const lumina2 = modelLayout('lumina2', LUMINA2, LUMINA2_RULES);
