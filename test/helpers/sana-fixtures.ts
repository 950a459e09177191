/**
 * Small Sana transformers (Sana 600M/1600M, SANA 1.5, Sana Sprint) with their real key names, shape
 * ratios (dims scaled down) and dtypes, in both namings:
 * - the original (NVlabs' checkpoints, as safetensors bare or under `model.diffusion_model.`, the form
 *   diffusers' single-file loader convert_sana_transformer_to_diffusers reads);
 * - diffusers' SanaTransformer2DModel (Efficient-Large-Model/Sana_1600M_1024px_diffusers `transformer/`),
 *   as scripts/convert_sana_to_diffusers.py writes it.
 * Nothing here imports the library under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Sana 1600M with width `dim` (2240: 70 heads of 32), caption width `caption` (2304, Gemma-2 2B),
 * timestep frequencies `freq` (256), GLUMBConv hidden width `mlp` (2.5·dim = 5600; its inverted conv
 * has 2·mlp outputs), latent channels `latent` (32, patch 1), caption length `yLen` (300), 2 blocks
 * (20 in the real model). `qkNorm`: SANA 1.5 and Sprint's q/k RMSNorms across heads (dim wide);
 * `sprint`: Sana Sprint's guidance (cfg) embedder.
 */
export interface SanaDims { dim: number; caption: number; freq: number; mlp: number; latent: number; yLen: number; qkNorm: boolean; sprint: boolean }
export const SANA: SanaDims = { dim: 8, caption: 10, freq: 6, mlp: 20, latent: 4, yLen: 5, qkNorm: false, sprint: false };

export function sanaOriginalTensors(rand: Rand, dtype: FixtureDType, d: SanaDims = SANA, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const { dim } = d;
  const out: FixtureTensor[] = [
    w('x_embedder.proj.weight', [dim, d.latent, 1, 1]), w('x_embedder.proj.bias', [dim]),
    ...lin('t_embedder.mlp.0', dim, d.freq), ...lin('t_embedder.mlp.2', dim, dim),
    ...(d.sprint ? [...lin('cfg_embedder.mlp.0', dim, d.freq), ...lin('cfg_embedder.mlp.2', dim, dim)] : []),
    ...lin('t_block.1', 6 * dim, dim),
    w('y_embedder.y_embedding', [d.yLen, d.caption]), ...lin('y_embedder.y_proj.fc1', dim, d.caption), ...lin('y_embedder.y_proj.fc2', dim, dim),
    w('attention_y_norm.weight', [dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(w(`${b}.scale_shift_table`, [6, dim]), w(`${b}.attn.qkv.weight`, [3 * dim, dim]), ...lin(`${b}.attn.proj`, dim, dim));
    out.push(...lin(`${b}.cross_attn.q_linear`, dim, dim), ...lin(`${b}.cross_attn.kv_linear`, 2 * dim, dim), ...lin(`${b}.cross_attn.proj`, dim, dim));
    if (d.qkNorm) for (const a of ['attn', 'cross_attn']) out.push(w(`${b}.${a}.q_norm.weight`, [dim]), w(`${b}.${a}.k_norm.weight`, [dim]));
    out.push(
      w(`${b}.mlp.inverted_conv.conv.weight`, [2 * d.mlp, dim, 1, 1]), w(`${b}.mlp.inverted_conv.conv.bias`, [2 * d.mlp]),
      w(`${b}.mlp.depth_conv.conv.weight`, [2 * d.mlp, 1, 3, 3]), w(`${b}.mlp.depth_conv.conv.bias`, [2 * d.mlp]),
      w(`${b}.mlp.point_conv.conv.weight`, [dim, d.mlp, 1, 1]),
    );
  }
  out.push(...lin('final_layer.linear', d.latent, dim), w('final_layer.scale_shift_table', [2, dim]));
  return out;
}

export function sanaDiffusersTensors(rand: Rand, dtype: FixtureDType, d: SanaDims = SANA): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const { dim } = d;
  const t = d.sprint ? 'time_embed.timestep_embedder' : 'time_embed.emb.timestep_embedder';
  const out: FixtureTensor[] = [
    w('patch_embed.proj.weight', [dim, d.latent, 1, 1]), w('patch_embed.proj.bias', [dim]),
    ...lin(`${t}.linear_1`, dim, d.freq), ...lin(`${t}.linear_2`, dim, dim),
    ...(d.sprint ? [...lin('time_embed.guidance_embedder.linear_1', dim, d.freq), ...lin('time_embed.guidance_embedder.linear_2', dim, dim)] : []),
    ...lin('time_embed.linear', 6 * dim, dim),
    ...lin('caption_projection.linear_1', dim, d.caption), ...lin('caption_projection.linear_2', dim, dim),
    w('caption_norm.weight', [dim]),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    out.push(w(`${b}.scale_shift_table`, [6, dim]));
    for (const p of ['to_q', 'to_k', 'to_v']) out.push(w(`${b}.attn1.${p}.weight`, [dim, dim]));
    out.push(...lin(`${b}.attn1.to_out.0`, dim, dim));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) out.push(...lin(`${b}.attn2.${p}`, dim, dim));
    if (d.qkNorm) for (const a of ['attn1', 'attn2']) out.push(w(`${b}.${a}.norm_q.weight`, [dim]), w(`${b}.${a}.norm_k.weight`, [dim]));
    out.push(
      w(`${b}.ff.conv_inverted.weight`, [2 * d.mlp, dim, 1, 1]), w(`${b}.ff.conv_inverted.bias`, [2 * d.mlp]),
      w(`${b}.ff.conv_depth.weight`, [2 * d.mlp, 1, 3, 3]), w(`${b}.ff.conv_depth.bias`, [2 * d.mlp]),
      w(`${b}.ff.conv_point.weight`, [dim, d.mlp, 1, 1]),
    );
  }
  out.push(...lin('proj_out', d.latent, dim), w('scale_shift_table', [2, dim]));
  return out;
}
