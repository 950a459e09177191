/**
 * Layout: NVIDIA's Sana text-to-image DiTs (Sana 600M/1600M, SANA 1.5 1.6B/4.8B, Sana Sprint) in the
 * original naming (NVlabs' checkpoints as safetensors, bare or under `model.diffusion_model.`, and
 * the LoRAs trained on them: `blocks.N.attn.qkv`, `cross_attn.q_linear`, `cross_attn.kv_linear`,
 * `mlp.inverted_conv.conv`, `t_block.1`, `y_embedder.y_proj.fc1`) and in diffusers'
 * (SanaTransformer2DModel; diffusers' train_dreambooth_lora_sana.py, OneTrainer:
 * `transformer_blocks.N.attn1.to_q`, `attn2.to_k`, `ff.conv_inverted`, `time_embed.linear`,
 * `caption_projection.linear_1`), either way round, as diffusers' scripts/convert_sana_to_diffusers.py
 * and its single-file loader (convert_sana_transformer_to_diffusers) rename them:
 * - self-attention q, k, v are the thirds of `attn.qkv` (`attn1.to_q`, `to_k`, `to_v`); `attn.proj`
 *   is `attn1.to_out.0`; SANA 1.5's and Sprint's q/k RMSNorms `attn.q_norm`, `k_norm` are
 *   `attn1.norm_q`, `norm_k` (`cross_attn.…` likewise `attn2.…`);
 * - cross-attention q is `cross_attn.q_linear` (`attn2.to_q`), k and v the halves of
 *   `cross_attn.kv_linear` (`attn2.to_k`, `to_v`), `cross_attn.proj` is `attn2.to_out.0`;
 * - the GLUMBConv MLP's `mlp.inverted_conv.conv`, `depth_conv.conv`, `point_conv.conv` are
 *   `ff.conv_inverted`, `conv_depth`, `conv_point`;
 * - `x_embedder.proj` is `patch_embed.proj`, `y_embedder.y_proj.fc1/fc2` `caption_projection.linear_1/2`,
 *   `attention_y_norm` `caption_norm`, `t_block.1` `time_embed.linear`, `t_embedder.mlp.0/2`
 *   `time_embed.emb.timestep_embedder.linear_1/2` (Sana Sprint: `time_embed.timestep_embedder`, and
 *   its `cfg_embedder.mlp.0/2` `time_embed.guidance_embedder.linear_1/2`), `final_layer.linear`
 *   `proj_out`, all row for row;
 * - the adaLN tables by their full names: `blocks.N.scale_shift_table` ↔
 *   `transformer_blocks.N.scale_shift_table`, `final_layer.scale_shift_table` ↔ `scale_shift_table`.
 *
 * It answers only on a Sana base: a block's GLUMBConv (`mlp.inverted_conv.conv` or
 * `ff.conv_inverted`) beside a 2-D patch embedding (`x_embedder.proj` or `patch_embed.proj`, a
 * Conv2d: SANA-Video's embedding is 3-D and is converted by another script). Which timestep names
 * diffusers' side has (Sprint's or the others') is the base's: a Sprint base holds a guidance embedder.
 * Names are looked up exactly under the model's key prefix.
 */
import { oneToOne, RenameTable, type RenameRule } from './fused-renames.js';
import type { Layout } from './layout.js';
import { modelPrefix, prefixBefore } from './model-prefix.js';

const O = 'blocks.{i}';
const D = 'transformer_blocks.{i}';

const COMMON: readonly RenameRule[] = [
  { fused: `${O}.attn.qkv`, parts: [{ name: `${D}.attn1.to_q`, units: 1 }, { name: `${D}.attn1.to_k`, units: 1 }, { name: `${D}.attn1.to_v`, units: 1 }] },
  oneToOne(`${O}.attn.proj`, `${D}.attn1.to_out.0`),
  oneToOne(`${O}.attn.q_norm`, `${D}.attn1.norm_q`),
  oneToOne(`${O}.attn.k_norm`, `${D}.attn1.norm_k`),
  oneToOne(`${O}.cross_attn.q_linear`, `${D}.attn2.to_q`),
  { fused: `${O}.cross_attn.kv_linear`, parts: [{ name: `${D}.attn2.to_k`, units: 1 }, { name: `${D}.attn2.to_v`, units: 1 }] },
  oneToOne(`${O}.cross_attn.proj`, `${D}.attn2.to_out.0`),
  oneToOne(`${O}.cross_attn.q_norm`, `${D}.attn2.norm_q`),
  oneToOne(`${O}.cross_attn.k_norm`, `${D}.attn2.norm_k`),
  oneToOne(`${O}.mlp.inverted_conv.conv`, `${D}.ff.conv_inverted`),
  oneToOne(`${O}.mlp.depth_conv.conv`, `${D}.ff.conv_depth`),
  oneToOne(`${O}.mlp.point_conv.conv`, `${D}.ff.conv_point`),
  oneToOne(`${O}.scale_shift_table:`, `${D}.scale_shift_table:`),
  oneToOne('x_embedder.proj', 'patch_embed.proj'),
  oneToOne('y_embedder.y_proj.fc1', 'caption_projection.linear_1'),
  oneToOne('y_embedder.y_proj.fc2', 'caption_projection.linear_2'),
  oneToOne('attention_y_norm', 'caption_norm'),
  oneToOne('t_block.1', 'time_embed.linear'),
  oneToOne('final_layer.linear', 'proj_out'),
  oneToOne('final_layer.scale_shift_table:', 'scale_shift_table:'),
];
const embedder = (original: string, diffusers: string): RenameRule[] => [
  oneToOne(`${original}.mlp.0`, `${diffusers}.linear_1`),
  oneToOne(`${original}.mlp.2`, `${diffusers}.linear_2`),
];

/** Sana, SANA 1.5: the timestep embedder under AdaLayerNormSingle's `emb`. */
export const SANA_RULES: readonly RenameRule[] = [...COMMON, ...embedder('t_embedder', 'time_embed.emb.timestep_embedder')];
/** Sana Sprint: SanaCombinedTimestepGuidanceEmbeddings, with the guidance (cfg) embedder beside the timestep's. */
export const SANA_SPRINT_RULES: readonly RenameRule[] = [
  ...COMMON, ...embedder('t_embedder', 'time_embed.timestep_embedder'), ...embedder('cfg_embedder', 'time_embed.guidance_embedder'),
];

const MARKER = /(^|\.)(blocks\.\d+\.mlp\.inverted_conv\.conv|transformer_blocks\.\d+\.ff\.conv_inverted)\.weight$/;
const SANA = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  const patch = m[2].startsWith('blocks.') ? 'x_embedder.proj.weight' : 'patch_embed.proj.weight';
  return base.shape(`${p}${patch}`)?.length === 4 ? p : null;
});

const plain = new RenameTable(SANA_RULES, () => false, SANA.lookup);
const sprint = new RenameTable(SANA_SPRINT_RULES, () => false, SANA.lookup);

/** The Sana layout, in the registry (./index.ts) before PixArt's, whose original names Sana's share. */
export const sana: Layout = {
  name: 'sana',
  renames: [plain, sprint],
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const p = SANA.of(base);
    if (p === null) return undefined;
    const isSprint = base.index.has(`${p}cfg_embedder.mlp.0.weight`) || base.index.has(`${p}time_embed.guidance_embedder.linear_1.weight`);
    return (isSprint ? sprint : plain).resolve(address.path, base);
  },
};
