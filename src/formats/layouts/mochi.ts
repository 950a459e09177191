/**
 * Layout: Genmo's Mochi 1 in its original naming (genmo/mochi-1-preview `dit.safetensors`,
 * Comfy-Org's repackaged files, ComfyUI's model and the official Mochi LoRA trainer's LoRAs:
 * `blocks.N.attn.qkv_x`, `mod_x`, `mlp_x.w1`, `final_layer.mod`) and in diffusers'
 * (MochiTransformer3DModel: `transformer_blocks.N.attn1.to_q`, `norm1.linear`, `ff.net.0.proj`,
 * `norm_out.linear`), either way round, as diffusers' scripts/convert_mochi_to_diffusers.py renames:
 * - `attn.qkv_x` is `attn1.to_q`, `to_k`, `to_v` (its thirds); `attn.qkv_y` is `add_q_proj`,
 *   `add_k_proj`, `add_v_proj`; `proj_x`, `proj_y` are `to_out.0`, `to_add_out`;
 * - the SwiGLU's `mlp_x.w1` / `mlp_y.w1` hold (proj, gate) and diffusers' `ff.net.0.proj` /
 *   `ff_context.net.0.proj` (gate, proj): the two halves of rows swapped (swap_proj_gate);
 *   `w2` is `net.2` row for row;
 * - `final_layer.mod` is `norm_out.linear` with its halves swapped (shift, scale ↔ scale, shift);
 * - `mod_x` is `norm1.linear`; `mod_y` is `norm1_context.linear`, but in the last block, whose text
 *   stream ends there, `norm1_context.linear_1`;
 * - the q/k RMSNorms `attn.q_norm_x`, `k_norm_x`, `q_norm_y`, `k_norm_y` are `attn1.norm_q`,
 *   `norm_k`, `norm_added_q`, `norm_added_k`; the embedders go under `patch_embed` and `time_embed`.
 *
 * It answers only on a Mochi base (a block's `attn.qkv_y` beside `t5_y_embedder`, or
 * `attn1.add_q_proj` beside `time_embed.pooler`).
 */
import { oneToOne, type RenameRule } from './fused-renames.js';
import type { Layout } from './layout.js';
import { modelLayout, modelPrefix, prefixBefore } from './model-prefix.js';

const O = 'blocks.{i}';
const D = 'transformer_blocks.{i}';
const thirds = (fused: string, names: string[]): RenameRule => ({ fused, parts: names.map((name) => ({ name, units: 1 })) });

export const MOCHI_RULES: readonly RenameRule[] = [
  thirds(`${O}.attn.qkv_x`, [`${D}.attn1.to_q`, `${D}.attn1.to_k`, `${D}.attn1.to_v`]),
  thirds(`${O}.attn.qkv_y`, [`${D}.attn1.add_q_proj`, `${D}.attn1.add_k_proj`, `${D}.attn1.add_v_proj`]),
  oneToOne(`${O}.attn.proj_x`, `${D}.attn1.to_out.0`),
  oneToOne(`${O}.attn.proj_y`, `${D}.attn1.to_add_out`),
  oneToOne(`${O}.attn.q_norm_x`, `${D}.attn1.norm_q`),
  oneToOne(`${O}.attn.k_norm_x`, `${D}.attn1.norm_k`),
  oneToOne(`${O}.attn.q_norm_y`, `${D}.attn1.norm_added_q`),
  oneToOne(`${O}.attn.k_norm_y`, `${D}.attn1.norm_added_k`),
  oneToOne(`${O}.mlp_x.w1`, `${D}.ff.net.0.proj`, 'always'),
  oneToOne(`${O}.mlp_x.w2`, `${D}.ff.net.2`),
  oneToOne(`${O}.mlp_y.w1`, `${D}.ff_context.net.0.proj`, 'always'),
  oneToOne(`${O}.mlp_y.w2`, `${D}.ff_context.net.2`),
  oneToOne(`${O}.mod_x`, `${D}.norm1.linear`),
  oneToOne(`${O}.mod_y`, `${D}.norm1_context.linear`),
  oneToOne('x_embedder.proj', 'patch_embed.proj'),
  oneToOne('t_embedder.mlp.0', 'time_embed.timestep_embedder.linear_1'),
  oneToOne('t_embedder.mlp.2', 'time_embed.timestep_embedder.linear_2'),
  oneToOne('t5_y_embedder.to_kv', 'time_embed.pooler.to_kv'),
  oneToOne('t5_y_embedder.to_q', 'time_embed.pooler.to_q'),
  oneToOne('t5_y_embedder.to_out', 'time_embed.pooler.to_out'),
  oneToOne('t5_yproj', 'time_embed.caption_proj'),
  oneToOne('final_layer.mod', 'norm_out.linear', 'always'),
  oneToOne('final_layer.linear', 'proj_out'),
];
/** The last block's text modulation, which diffusers names `linear_1` (its stream ends there). */
export const LAST_MOD_Y: readonly RenameRule[] = [oneToOne(`${O}.mod_y`, `${D}.norm1_context.linear_1`)];

const MARKER = /(^|\.)(blocks\.\d+\.attn\.qkv_y|transformer_blocks\.\d+\.attn1\.add_q_proj)\.weight$/;
const MOCHI = modelPrefix((key, base) => {
  const m = MARKER.exec(key);
  if (!m) return undefined;
  const p = prefixBefore(key, m);
  const embedder = m[2].startsWith('blocks') ? 't5_y_embedder.to_q' : 'time_embed.pooler.to_q';
  return base.index.has(`${p}${embedder}.weight`) ? p : undefined;
});

const main = modelLayout('mochi', MOCHI, MOCHI_RULES);
const last = modelLayout('mochi', MOCHI, LAST_MOD_Y);

export const mochi: Layout = {
  name: 'mochi',
  // The last block's table too: combine refuses `blocks.<last>.mod_y` beside its `linear_1` name.
  renames: [...main.renames, ...last.renames],
  resolve(address, base) {
    const r = main.resolve(address, base);
    // Only the last block's mod_y has diffusers' other name; every other miss stands.
    if (r?.found || r?.ambiguous || !/(mod_y|norm1_context[._]linear_1)$/.test(address.path)) return r;
    return last.resolve(address, base) ?? r;
  },
};
