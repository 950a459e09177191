/**
 * Small AuraFlow (fal's AuraFlow 0.3, Pony V7), PixArt (α, Σ) and HunyuanDiT checkpoints with their real key
 * names, shape ratios (dims scaled down), dtypes and biases, in both namings people hold them in:
 * - AuraFlow: fal's single file (`aura_flow_0.3.safetensors`, Pony V7's, ComfyUI's model under
 *   `model.diffusion_model.`) and diffusers' AuraFlowTransformer2DModel;
 * - PixArt: PixArt-alpha's checkpoints (`PixArt-Sigma-XL-2-1024-MS`, as ComfyUI loads them) and
 *   diffusers' PixArtTransformer2DModel;
 * - HunyuanDiT: Tencent's checkpoints (ComfyUI's `hunyuan_dit_1.2.safetensors`) and diffusers'
 *   HunyuanDiT2DModel.
 * The names are those of diffusers' single-file conversion for AuraFlow and its
 * scripts/convert_pixart_sigma_to_diffusers.py and convert_hunyuandit_to_diffusers.py. Nothing here imports the library under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * AuraFlow with width `dim` (3072: 12 heads of 256), SwiGLU hidden `ffn` (8192, 8/3 of the width
 * rounded to 256), caption width `cap` (2048, Pile-T5), timestep frequencies `freq` (256), patch
 * inputs `patch` (2·2·4) and outputs `patchOut`, 2 double and 2 single blocks (AuraFlow 0.3: 4 and 32).
 */
export interface AuraFlowDims { dim: number; ffn: number; cap: number; freq: number; patch: number; patchOut: number }
export const AURAFLOW: AuraFlowDims = { dim: 6, ffn: 16, cap: 4, freq: 5, patch: 16, patchOut: 16 };

/** fal's original naming (ComfyUI's too). No biases in the blocks (bias=False), the embedders have them. */
export function auraflowOriginalTensors(rand: Rand, dtype: FixtureDType, d: AuraFlowDims = AURAFLOW, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const out: FixtureTensor[] = [
    w('init_x_linear.weight', [d.dim, d.patch]), w('init_x_linear.bias', [d.dim]),
    w('positional_encoding', [1, 16, d.dim]), w('register_tokens', [1, 8, d.dim]),
    w('cond_seq_linear.weight', [d.dim, d.cap]),
    w('t_embedder.mlp.0.weight', [d.dim, d.freq]), w('t_embedder.mlp.0.bias', [d.dim]),
    w('t_embedder.mlp.2.weight', [d.dim, d.dim]), w('t_embedder.mlp.2.bias', [d.dim]),
  ];
  const mlp = (m: string) => [w(`${m}.c_fc1.weight`, [d.ffn, d.dim]), w(`${m}.c_fc2.weight`, [d.ffn, d.dim]), w(`${m}.c_proj.weight`, [d.dim, d.ffn])];
  for (let i = 0; i < 2; i++) {
    const b = `double_layers.${i}`;
    out.push(w(`${b}.modC.1.weight`, [6 * d.dim, d.dim]), w(`${b}.modX.1.weight`, [6 * d.dim, d.dim]));
    for (const p of ['w1q', 'w1k', 'w1v', 'w1o', 'w2q', 'w2k', 'w2v', 'w2o']) out.push(w(`${b}.attn.${p}.weight`, [d.dim, d.dim]));
    out.push(...mlp(`${b}.mlpC`), ...mlp(`${b}.mlpX`));
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_layers.${i}`;
    out.push(w(`${b}.modCX.1.weight`, [6 * d.dim, d.dim]));
    for (const p of ['w1q', 'w1k', 'w1v', 'w1o']) out.push(w(`${b}.attn.${p}.weight`, [d.dim, d.dim]));
    out.push(...mlp(`${b}.mlp`));
  }
  out.push(w('modF.1.weight', [2 * d.dim, d.dim]), w('final_linear.weight', [d.patchOut, d.dim]));
  return out;
}

/** diffusers' AuraFlowTransformer2DModel (fal/AuraFlow-v0.3 `transformer/`, Pony V7's diffusers folder). */
export function auraflowDiffusersTensors(rand: Rand, dtype: FixtureDType, d: AuraFlowDims = AURAFLOW): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const out: FixtureTensor[] = [
    w('pos_embed.proj.weight', [d.dim, d.patch]), w('pos_embed.proj.bias', [d.dim]),
    w('pos_embed.pos_embed', [1, 16, d.dim]), w('register_tokens', [1, 8, d.dim]),
    w('context_embedder.weight', [d.dim, d.cap]),
    w('time_step_proj.linear_1.weight', [d.dim, d.freq]), w('time_step_proj.linear_1.bias', [d.dim]),
    w('time_step_proj.linear_2.weight', [d.dim, d.dim]), w('time_step_proj.linear_2.bias', [d.dim]),
  ];
  const ff = (m: string) => [w(`${m}.linear_1.weight`, [d.ffn, d.dim]), w(`${m}.linear_2.weight`, [d.ffn, d.dim]), w(`${m}.out_projection.weight`, [d.dim, d.ffn])];
  for (let i = 0; i < 2; i++) {
    const b = `joint_transformer_blocks.${i}`;
    out.push(w(`${b}.norm1.linear.weight`, [6 * d.dim, d.dim]), w(`${b}.norm1_context.linear.weight`, [6 * d.dim, d.dim]));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0', 'add_q_proj', 'add_k_proj', 'add_v_proj', 'to_add_out']) out.push(w(`${b}.attn.${p}.weight`, [d.dim, d.dim]));
    out.push(...ff(`${b}.ff`), ...ff(`${b}.ff_context`));
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_transformer_blocks.${i}`;
    out.push(w(`${b}.norm1.linear.weight`, [6 * d.dim, d.dim]));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) out.push(w(`${b}.attn.${p}.weight`, [d.dim, d.dim]));
    out.push(...ff(`${b}.ff`));
  }
  out.push(w('norm_out.linear.weight', [2 * d.dim, d.dim]), w('proj_out.weight', [d.patchOut, d.dim]));
  return out;
}

/**
 * PixArt with width `dim` (1152: 16 heads of 72), MLP `mlp` (4·dim), caption width `cap` (4096,
 * T5-XXL), timestep frequencies `freq` (256), latent channels `latent` (4; out 8 with learned
 * sigma), patch 2, 2 blocks (28 in the real models); biases on every Linear, as the models have.
 */
export interface PixArtDims { dim: number; mlp: number; cap: number; freq: number; latent: number }
export const PIXART: PixArtDims = { dim: 8, mlp: 32, cap: 12, freq: 6, latent: 4 };

/** PixArt-alpha's original naming (PixArt-Sigma-XL-2-1024-MS, as ComfyUI holds it). */
export function pixartOriginalTensors(rand: Rand, dtype: FixtureDType, d: PixArtDims = PIXART, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const out: FixtureTensor[] = [
    w('x_embedder.proj.weight', [d.dim, d.latent, 2, 2]), w('x_embedder.proj.bias', [d.dim]),
    ...lin('y_embedder.y_proj.fc1', d.dim, d.cap), ...lin('y_embedder.y_proj.fc2', d.dim, d.dim),
    w('y_embedder.y_embedding', [3, d.cap]),
    ...lin('t_embedder.mlp.0', d.dim, d.freq), ...lin('t_embedder.mlp.2', d.dim, d.dim),
    ...lin('t_block.1', 6 * d.dim, d.dim),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    out.push(
      w(`${b}.scale_shift_table`, [6, d.dim]),
      ...lin(`${b}.attn.qkv`, 3 * d.dim, d.dim), ...lin(`${b}.attn.proj`, d.dim, d.dim),
      ...lin(`${b}.cross_attn.q_linear`, d.dim, d.dim), ...lin(`${b}.cross_attn.kv_linear`, 2 * d.dim, d.dim), ...lin(`${b}.cross_attn.proj`, d.dim, d.dim),
      ...lin(`${b}.mlp.fc1`, d.mlp, d.dim), ...lin(`${b}.mlp.fc2`, d.dim, d.mlp),
    );
  }
  out.push(...lin('final_layer.linear', 4 * 2 * d.latent, d.dim), w('final_layer.scale_shift_table', [2, d.dim]));
  return out;
}

/** diffusers' PixArtTransformer2DModel (PixArt-alpha/PixArt-Sigma-XL-2-1024-MS `transformer/`). */
export function pixartDiffusersTensors(rand: Rand, dtype: FixtureDType, d: PixArtDims = PIXART): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const out: FixtureTensor[] = [
    w('pos_embed.proj.weight', [d.dim, d.latent, 2, 2]), w('pos_embed.proj.bias', [d.dim]),
    ...lin('caption_projection.linear_1', d.dim, d.cap), ...lin('caption_projection.linear_2', d.dim, d.dim),
    ...lin('adaln_single.emb.timestep_embedder.linear_1', d.dim, d.freq), ...lin('adaln_single.emb.timestep_embedder.linear_2', d.dim, d.dim),
    ...lin('adaln_single.linear', 6 * d.dim, d.dim),
  ];
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    out.push(w(`${b}.scale_shift_table`, [6, d.dim]));
    for (const p of ['attn1.to_q', 'attn1.to_k', 'attn1.to_v', 'attn1.to_out.0', 'attn2.to_q', 'attn2.to_k', 'attn2.to_v', 'attn2.to_out.0']) out.push(...lin(`${b}.${p}`, d.dim, d.dim));
    out.push(...lin(`${b}.ff.net.0.proj`, d.mlp, d.dim), ...lin(`${b}.ff.net.2`, d.dim, d.mlp));
  }
  out.push(...lin('proj_out', 4 * 2 * d.latent, d.dim), w('scale_shift_table', [2, d.dim]));
  return out;
}

/**
 * HunyuanDiT with width `dim` (1408: 16 heads of 88), MLP `mlp` (4.3637·dim: 6144), CLIP text
 * width `text` (1024), T5 width `t5` (2048), timestep frequencies `freq` (256), the extra
 * embedder's input `extra` (the pooled T5 and image-size embeddings), 4 blocks (40 in the real
 * model), the last with the long skip (`skip_linear`, `skip_norm`: blocks past depth / 2).
 * Biases on every Linear and LayerNorm, as the model has.
 */
export interface HunyuanDitDims { dim: number; mlp: number; text: number; t5: number; freq: number; extra: number }
export const HUNYUAN_DIT: HunyuanDitDims = { dim: 8, mlp: 20, text: 6, t5: 10, freq: 6, extra: 12 };

/** Tencent's original naming (ComfyUI's `hunyuan_dit_1.2.safetensors` holds it under `model.diffusion_model.`). */
export function hunyuanDitOriginalTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDitDims = HUNYUAN_DIT, prefix = ''): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, prefix + name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const norm = (name: string, n: number) => [w(`${name}.weight`, [n]), w(`${name}.bias`, [n])];
  const head = d.dim / 2;
  const out: FixtureTensor[] = [
    w('text_embedding_padding', [4, d.text]),
    w('pooler.positional_embedding', [5, d.t5]), ...lin('pooler.k_proj', d.t5, d.t5), ...lin('pooler.q_proj', d.t5, d.t5),
    ...lin('pooler.v_proj', d.t5, d.t5), ...lin('pooler.c_proj', d.text, d.t5),
    ...lin('mlp_t5.0', 4 * d.t5, d.t5), ...lin('mlp_t5.2', d.text, 4 * d.t5),
    ...lin('extra_embedder.0', 4 * d.dim, d.extra), ...lin('extra_embedder.2', d.dim, 4 * d.dim),
    w('x_embedder.proj.weight', [d.dim, 4, 2, 2]), w('x_embedder.proj.bias', [d.dim]),
    ...lin('t_embedder.mlp.0', d.dim, d.freq), ...lin('t_embedder.mlp.2', d.dim, d.dim),
  ];
  for (let i = 0; i < 4; i++) {
    const b = `blocks.${i}`;
    out.push(
      ...norm(`${b}.norm1`, d.dim), ...lin(`${b}.attn1.Wqkv`, 3 * d.dim, d.dim), ...norm(`${b}.attn1.q_norm`, head), ...norm(`${b}.attn1.k_norm`, head),
      ...lin(`${b}.attn1.out_proj`, d.dim, d.dim), ...norm(`${b}.norm2`, d.dim),
      ...lin(`${b}.mlp.fc1`, d.mlp, d.dim), ...lin(`${b}.mlp.fc2`, d.dim, d.mlp), ...lin(`${b}.default_modulation.1`, d.dim, d.dim),
      ...lin(`${b}.attn2.q_proj`, d.dim, d.dim), ...lin(`${b}.attn2.kv_proj`, 2 * d.dim, d.text), ...norm(`${b}.attn2.q_norm`, head),
      ...norm(`${b}.attn2.k_norm`, head), ...lin(`${b}.attn2.out_proj`, d.dim, d.dim), ...norm(`${b}.norm3`, d.dim),
    );
    if (i === 3) out.push(...norm(`${b}.skip_norm`, 2 * d.dim), ...lin(`${b}.skip_linear`, d.dim, 2 * d.dim));
  }
  out.push(...lin('final_layer.adaLN_modulation.1', 2 * d.dim, d.dim), ...lin('final_layer.linear', 32, d.dim));
  return out;
}

/** diffusers' HunyuanDiT2DModel (Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers `transformer/`). */
export function hunyuanDitDiffusersTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDitDims = HUNYUAN_DIT): FixtureTensor[] {
  const w = (name: string, shape: number[]) => tensor(rand, name, shape, dtype);
  const lin = (name: string, out: number, inF: number) => [w(`${name}.weight`, [out, inF]), w(`${name}.bias`, [out])];
  const norm = (name: string, n: number) => [w(`${name}.weight`, [n]), w(`${name}.bias`, [n])];
  const head = d.dim / 2;
  const te = 'time_extra_emb';
  const out: FixtureTensor[] = [
    w('text_embedding_padding', [4, d.text]),
    w(`${te}.pooler.positional_embedding`, [5, d.t5]), ...lin(`${te}.pooler.k_proj`, d.t5, d.t5), ...lin(`${te}.pooler.q_proj`, d.t5, d.t5),
    ...lin(`${te}.pooler.v_proj`, d.t5, d.t5), ...lin(`${te}.pooler.c_proj`, d.text, d.t5),
    ...lin('text_embedder.linear_1', 4 * d.t5, d.t5), ...lin('text_embedder.linear_2', d.text, 4 * d.t5),
    ...lin(`${te}.extra_embedder.linear_1`, 4 * d.dim, d.extra), ...lin(`${te}.extra_embedder.linear_2`, d.dim, 4 * d.dim),
    w('pos_embed.proj.weight', [d.dim, 4, 2, 2]), w('pos_embed.proj.bias', [d.dim]),
    ...lin(`${te}.timestep_embedder.linear_1`, d.dim, d.freq), ...lin(`${te}.timestep_embedder.linear_2`, d.dim, d.dim),
  ];
  for (let i = 0; i < 4; i++) {
    const b = `blocks.${i}`;
    out.push(...norm(`${b}.norm1.norm`, d.dim), ...lin(`${b}.norm1.linear`, d.dim, d.dim));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) out.push(...lin(`${b}.attn1.${p}`, d.dim, d.dim));
    out.push(...norm(`${b}.attn1.norm_q`, head), ...norm(`${b}.attn1.norm_k`, head), ...norm(`${b}.norm2`, d.dim));
    out.push(...lin(`${b}.attn2.to_q`, d.dim, d.dim), ...lin(`${b}.attn2.to_k`, d.dim, d.text), ...lin(`${b}.attn2.to_v`, d.dim, d.text), ...lin(`${b}.attn2.to_out.0`, d.dim, d.dim));
    out.push(...norm(`${b}.attn2.norm_q`, head), ...norm(`${b}.attn2.norm_k`, head), ...norm(`${b}.norm3`, d.dim));
    out.push(...lin(`${b}.ff.net.0.proj`, d.mlp, d.dim), ...lin(`${b}.ff.net.2`, d.dim, d.mlp));
    if (i === 3) out.push(...norm(`${b}.skip_norm`, 2 * d.dim), ...lin(`${b}.skip_linear`, d.dim, 2 * d.dim));
  }
  out.push(...lin('norm_out.linear', 2 * d.dim, d.dim), ...lin('proj_out', 32, d.dim));
  return out;
}
