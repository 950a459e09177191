/**
 * Small Mochi 1 transformers with their real key names, shape ratios (dims scaled down) and dtypes,
 * in both namings: genmo's `dit.safetensors` (Comfy-Org's repackaged file under
 * `model.diffusion_model.`) and diffusers' MochiTransformer3DModel, as
 * scripts/convert_mochi_to_diffusers.py writes it. Nothing here imports the library under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Mochi 1 with visual width `x` (3072: 24 heads of `head` 128), text width `y` (1536), SwiGLU
 * hidden `mx` (8192) and `my` (4096), T5 width `t5` (4096), patch input `patch` (12 · 2 · 2 = 48),
 * timestep frequencies `freq` (256), 2 blocks (the last one's text stream ends at its attention:
 * no `proj_y`, no `mlp_y`, a `mod_y` of y rows).
 */
export interface MochiDims { x: number; y: number; head: number; mx: number; my: number; t5: number; patch: number; freq: number }
export const MOCHI: MochiDims = { x: 8, y: 4, head: 4, mx: 12, my: 6, t5: 10, patch: 12, freq: 6 };

/** genmo/mochi-1-preview `dit.safetensors` (bare; Comfy-Org's under `model.diffusion_model.`). */
export function mochiOriginalTensors(rand: Rand, dtype: FixtureDType, d: MochiDims = MOCHI, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, 'F32');
  const out: FixtureTensor[] = [
    w('x_embedder.proj.weight', [d.x, d.patch]), w('x_embedder.proj.bias', [d.x]),
    w('t_embedder.mlp.0.weight', [d.x, d.freq]), w('t_embedder.mlp.2.weight', [d.x, d.x]),
    w('t5_y_embedder.to_kv.weight', [2 * d.x, d.t5]), w('t5_y_embedder.to_q.weight', [d.x, d.t5]), w('t5_y_embedder.to_out.weight', [d.x, d.x]),
    w('t5_yproj.weight', [d.y, d.t5]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    const last = i === 1;
    out.push(
      w(`${b}.mod_x.weight`, [4 * d.x, d.x]), w(`${b}.mod_y.weight`, [last ? d.y : 4 * d.y, d.x]),
      w(`${b}.attn.qkv_x.weight`, [3 * d.x, d.x]), w(`${b}.attn.qkv_y.weight`, [3 * d.x, d.y]),
      f32(`${b}.attn.q_norm_x.weight`, [d.head]), f32(`${b}.attn.k_norm_x.weight`, [d.head]),
      f32(`${b}.attn.q_norm_y.weight`, [d.head]), f32(`${b}.attn.k_norm_y.weight`, [d.head]),
      w(`${b}.attn.proj_x.weight`, [d.x, d.x]),
      w(`${b}.mlp_x.w1.weight`, [2 * d.mx, d.x]), w(`${b}.mlp_x.w2.weight`, [d.x, d.mx]),
    );
    if (!last) out.push(w(`${b}.attn.proj_y.weight`, [d.y, d.x]), w(`${b}.mlp_y.w1.weight`, [2 * d.my, d.y]), w(`${b}.mlp_y.w2.weight`, [d.y, d.my]));
  }
  out.push(w('final_layer.mod.weight', [2 * d.x, d.x]), w('final_layer.linear.weight', [d.patch, d.x]), f32('pos_frequencies', [3, 2, d.head / 2]));
  return out;
}

/** diffusers' MochiTransformer3DModel, as convert_mochi_to_diffusers.py writes it. */
export function mochiDiffusersTensors(rand: Rand, dtype: FixtureDType, d: MochiDims = MOCHI): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const f32 = (name: string, shape: number[]) => tensor(rand, name, shape, 'F32');
  const out: FixtureTensor[] = [
    w('patch_embed.proj.weight', [d.x, d.patch]), w('patch_embed.proj.bias', [d.x]),
    w('time_embed.timestep_embedder.linear_1.weight', [d.x, d.freq]), w('time_embed.timestep_embedder.linear_2.weight', [d.x, d.x]),
    w('time_embed.pooler.to_kv.weight', [2 * d.x, d.t5]), w('time_embed.pooler.to_q.weight', [d.x, d.t5]), w('time_embed.pooler.to_out.weight', [d.x, d.x]),
    w('time_embed.caption_proj.weight', [d.y, d.t5]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    const last = i === 1;
    out.push(
      w(`${b}.norm1.linear.weight`, [4 * d.x, d.x]), w(last ? `${b}.norm1_context.linear_1.weight` : `${b}.norm1_context.linear.weight`, [last ? d.y : 4 * d.y, d.x]),
      ...['to_q', 'to_k', 'to_v'].map((p) => w(`${b}.attn1.${p}.weight`, [d.x, d.x])),
      ...['add_q_proj', 'add_k_proj', 'add_v_proj'].map((p) => w(`${b}.attn1.${p}.weight`, [d.x, d.y])),
      f32(`${b}.attn1.norm_q.weight`, [d.head]), f32(`${b}.attn1.norm_k.weight`, [d.head]),
      f32(`${b}.attn1.norm_added_q.weight`, [d.head]), f32(`${b}.attn1.norm_added_k.weight`, [d.head]),
      w(`${b}.attn1.to_out.0.weight`, [d.x, d.x]),
      w(`${b}.ff.net.0.proj.weight`, [2 * d.mx, d.x]), w(`${b}.ff.net.2.weight`, [d.x, d.mx]),
    );
    if (!last) out.push(w(`${b}.attn1.to_add_out.weight`, [d.y, d.x]), w(`${b}.ff_context.net.0.proj.weight`, [2 * d.my, d.y]), w(`${b}.ff_context.net.2.weight`, [d.y, d.my]));
  }
  out.push(w('norm_out.linear.weight', [2 * d.x, d.x]), w('proj_out.weight', [d.patch, d.x]), f32('pos_frequencies', [3, 2, d.head / 2]));
  return out;
}
