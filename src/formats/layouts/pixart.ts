/**
 * Layout: PixArt-α and PixArt-Σ in their original naming (PixArt-alpha's checkpoints, ComfyUI's
 * model and the LoRAs it extracts or saves: `blocks.N.attn.qkv`, `cross_attn.q_linear`,
 * `cross_attn.kv_linear`, `mlp.fc1`, `t_block.1`, `y_embedder.y_proj.fc1`) and in diffusers'
 * (PixArtTransformer2DModel, the `transformer/` of PixArt-alpha's diffusers repos; diffusers'
 * trainers and the PEFT LoRAs of PixArt's own scripts: `transformer_blocks.N.attn1.to_q`,
 * `attn2.to_k`, `ff.net.0.proj`, `adaln_single.linear`), either way round, as diffusers'
 * scripts/convert_pixart_sigma_to_diffusers.py (and convert_pixart_alpha_to_diffusers.py) rename
 * them (ComfyUI reads diffusers-named PixArt LoRAs through its own key map, comfy/lora.py
 * model_lora_keys_unet with comfy/utils.py pixart_to_diffusers, onto the original names):
 * - self-attention q, k, v are the thirds of `attn.qkv` (`attn1.to_q`, `to_k`, `to_v`);
 * - cross-attention q is `cross_attn.q_linear` (`attn2.to_q`), k and v are the halves of
 *   `cross_attn.kv_linear` (`attn2.to_k`, `to_v`);
 * - `attn.proj`, `cross_attn.proj`, `mlp.fc1`, `mlp.fc2` are `attn1.to_out.0`, `attn2.to_out.0`,
 *   `ff.net.0.proj`, `ff.net.2`; `attn.q_norm`, `k_norm` (models trained with qk_norm) are
 *   `attn1.q_norm`, `k_norm`;
 * - `x_embedder.proj` is `pos_embed.proj`, `y_embedder.y_proj.fc1/fc2` `caption_projection.linear_1/2`,
 *   `t_embedder.mlp.0/2` `adaln_single.emb.timestep_embedder.linear_1/2`, PixArt-α's micro-conditions
 *   `csize_embedder` and `ar_embedder` `resolution_embedder` and `aspect_ratio_embedder`,
 *   `t_block.1` `adaln_single.linear`, `final_layer.linear` `proj_out`, all row for row;
 * - the adaLN tables, parameters rather than a module's weight: each block's `scale_shift_table`
 *   (6, dim) keeps its name under the block, `final_layer.scale_shift_table` (2, dim) is the
 *   top-level `scale_shift_table`, the same rows in the same order.
 *
 * It answers only on a PixArt base: the original's `t_block` beside a block's `cross_attn.kv_linear`
 * and no GLUMBConv `mlp.inverted_conv` (Sana, which keeps those names, has one), or diffusers' `adaln_single`
 * beside a PatchEmbed `pos_embed.proj` (LTX-Video's has neither that nor `attn2.to_k`'s name there).
 * Names are looked up exactly under the model's key prefix.
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout } from './layout.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const O = 'blocks.{i}';
const D = 'transformer_blocks.{i}';

/** A two-layer MLP embedder `mlp.0`, `mlp.2` onto diffusers' TimestepEmbedding `linear_1`, `linear_2`. */
const embedder = (original: string, diffusers: string): RenameRule[] => [
  oneToOne(`${original}.mlp.0`, `${diffusers}.linear_1`),
  oneToOne(`${original}.mlp.2`, `${diffusers}.linear_2`),
];

/** Each original tensor and the diffusers tensors that are its rows, as diffusers' conversion splits them. */
export const PIXART_RULES: readonly RenameRule[] = [
  { fused: `${O}.attn.qkv`, parts: [{ name: `${D}.attn1.to_q`, units: 1 }, { name: `${D}.attn1.to_k`, units: 1 }, { name: `${D}.attn1.to_v`, units: 1 }] },
  oneToOne(`${O}.cross_attn.q_linear`, `${D}.attn2.to_q`),
  { fused: `${O}.cross_attn.kv_linear`, parts: [{ name: `${D}.attn2.to_k`, units: 1 }, { name: `${D}.attn2.to_v`, units: 1 }] },
  oneToOne(`${O}.attn.proj`, `${D}.attn1.to_out.0`),
  oneToOne(`${O}.cross_attn.proj`, `${D}.attn2.to_out.0`),
  oneToOne(`${O}.mlp.fc1`, `${D}.ff.net.0.proj`),
  oneToOne(`${O}.mlp.fc2`, `${D}.ff.net.2`),
  oneToOne(`${O}.attn.q_norm`, `${D}.attn1.q_norm`),
  oneToOne(`${O}.attn.k_norm`, `${D}.attn1.k_norm`),
  oneToOne(`${O}.scale_shift_table:`, `${D}.scale_shift_table:`),
  oneToOne('x_embedder.proj', 'pos_embed.proj'),
  oneToOne('y_embedder.y_proj.fc1', 'caption_projection.linear_1'),
  oneToOne('y_embedder.y_proj.fc2', 'caption_projection.linear_2'),
  ...embedder('t_embedder', 'adaln_single.emb.timestep_embedder'),
  ...embedder('csize_embedder', 'adaln_single.emb.resolution_embedder'),
  ...embedder('ar_embedder', 'adaln_single.emb.aspect_ratio_embedder'),
  oneToOne('t_block.1', 'adaln_single.linear'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.scale_shift_table:', 'scale_shift_table:'),
];

const MARKER = /(^|\.)(t_block\.1|adaln_single\.linear)\.weight$/;
/** The prefix of the model's keys, or null: not PixArt. */
const PIXART = modelPrefix((key: string, base: BaseView) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const prefix = prefixBefore(key, m);
  const other = m[2] === 't_block.1' ? 'blocks.0.cross_attn.kv_linear.weight' : 'pos_embed.proj.weight';
  // Sana's original names keep PixArt's t_block and cross_attn; its GLUMBConv MLP tells it apart (sana.ts).
  if (base.index.has(`${prefix}blocks.0.mlp.inverted_conv.conv.weight`)) return null;
  return base.index.has(`${prefix}${other}`) ? prefix : null;
});

const byName = modelLayout('pixart', PIXART, PIXART_RULES);
/**
 * PixArt's own training script saves the transformer's PEFT state dict as it stands, so its lone
 * files read `unet.base_model.model.` + diffusers names; ComfyUI's key map (comfy/lora.py, its
 * PixArt branch) maps that prefix for PixArt only, so only this layout reads past it.
 */
const PEFT_UNDER_UNET = 'base_model.model.';

/** The PixArt layout, in the registry (./index.ts). */
export const pixart: Layout = {
  name: 'pixart',
  renames: byName.renames,
  resolve(address, base) {
    if (address.part === 'unet' && !address.flat && address.path.startsWith(PEFT_UNDER_UNET)) {
      return byName.resolve({ ...address, path: address.path.slice(PEFT_UNDER_UNET.length) }, base);
    }
    return byName.resolve(address, base);
  },
};
