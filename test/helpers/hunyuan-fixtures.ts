/**
 * Small HunyuanVideo transformers with the real key names, dtypes and structure (heads × head
 * width, fused qkv of 3h rows, single-block linear1 of 3h + 4h rows, the token refiner), scaled down:
 * - Tencent's own naming, as Comfy-Org's and Kijai's single files keep it
 *   (hunyuan_video_t2v_720p_bf16.safetensors): `double_blocks.N.img_attn_qkv`, `img_mlp.fc1`;
 * - ComfyUI's internal naming of the same tensors (checkpoints ComfyUI saves, under `model.model.`):
 *   `img_attn.qkv`, `img_mlp.0`, `img_mod.lin`, q/k norms as `norm.query_norm.scale`;
 * - diffusers' HunyuanVideoTransformer3DModel (hunyuanvideo-community/HunyuanVideo[-I2V]/transformer).
 *
 * Written from the models' definitions (Tencent's hyvideo/modules, diffusers'
 * transformer_hunyuan_video.py) and ComfyUI's rename list, not from the code under test.
 */
import type { FixtureDType, FixtureTensor } from './fixtures.js';
import { tensor, type Rand } from './diffusion-fixtures.js';

/**
 * Hidden size h = heads · headDim (24 · 128 = 3072 in the real model), MLP 4h, latent channels
 * `inChannels` (16 for T2V, 33 for I2V's latent concat), LLaMA text width `text` (4096), CLIP pooled
 * width `pooled` (768), timestep frequencies `freq` (256), output patch values `patchOut`
 * (1·2·2·16 = 64), two blocks of each kind, a two-block token refiner.
 */
export interface HunyuanDims { heads: number; headDim: number; inChannels: number; text: number; pooled: number; freq: number; patchOut: number; guidance: boolean }
export const HUNYUAN: HunyuanDims = { heads: 2, headDim: 4, inChannels: 16, text: 12, pooled: 10, freq: 6, patchOut: 16, guidance: true };
/** HunyuanVideo-I2V: 33 input channels (latents, image latents, mask), no guidance embedder. */
export const HUNYUAN_I2V: HunyuanDims = { ...HUNYUAN, inChannels: 33, guidance: false };

export const hiddenOf = (d: HunyuanDims) => d.heads * d.headDim;

/**
 * Tencent's naming (and Comfy-Org's single files): every weight with its bias, q/k RMSNorm weights.
 * `biasDType`: fp8 files keep biases and norms in bf16.
 */
export function hunyuanOriginalTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN, biasDType: FixtureDType = dtype): FixtureTensor[] {
  const h = hiddenOf(d);
  const out: FixtureTensor[] = [];
  const linear = (name: string, rows: number, cols: number) => out.push(tensor(rand, `${name}.weight`, [rows, cols], dtype), tensor(rand, `${name}.bias`, [rows], biasDType));
  const norm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], 'F32'));

  out.push(tensor(rand, 'img_in.proj.weight', [h, d.inChannels, 1, 2, 2], dtype), tensor(rand, 'img_in.proj.bias', [h], biasDType));
  linear('txt_in.input_embedder', h, d.text);
  linear('txt_in.t_embedder.mlp.0', h, d.freq);
  linear('txt_in.t_embedder.mlp.2', h, h);
  linear('txt_in.c_embedder.linear_1', h, d.text);
  linear('txt_in.c_embedder.linear_2', h, h);
  for (let i = 0; i < 2; i++) {
    const b = `txt_in.individual_token_refiner.blocks.${i}`;
    out.push(tensor(rand, `${b}.norm1.weight`, [h], biasDType), tensor(rand, `${b}.norm1.bias`, [h], biasDType));
    linear(`${b}.self_attn_qkv`, 3 * h, h);
    linear(`${b}.self_attn_proj`, h, h);
    out.push(tensor(rand, `${b}.norm2.weight`, [h], biasDType), tensor(rand, `${b}.norm2.bias`, [h], biasDType));
    linear(`${b}.mlp.fc1`, 4 * h, h);
    linear(`${b}.mlp.fc2`, h, 4 * h);
    linear(`${b}.adaLN_modulation.1`, 2 * h, h);
  }
  linear('time_in.mlp.0', h, d.freq);
  linear('time_in.mlp.2', h, h);
  linear('vector_in.in_layer', h, d.pooled);
  linear('vector_in.out_layer', h, h);
  if (d.guidance) {
    linear('guidance_in.mlp.0', h, d.freq);
    linear('guidance_in.mlp.2', h, h);
  }
  for (let i = 0; i < 2; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      linear(`${b}.${s}_mod.linear`, 6 * h, h);
      linear(`${b}.${s}_attn_qkv`, 3 * h, h);
      norm(`${b}.${s}_attn_q_norm`, d.headDim);
      norm(`${b}.${s}_attn_k_norm`, d.headDim);
      linear(`${b}.${s}_attn_proj`, h, h);
      linear(`${b}.${s}_mlp.fc1`, 4 * h, h);
      linear(`${b}.${s}_mlp.fc2`, h, 4 * h);
    }
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_blocks.${i}`;
    linear(`${b}.linear1`, 3 * h + 4 * h, h);
    linear(`${b}.linear2`, h, h + 4 * h);
    norm(`${b}.q_norm`, d.headDim);
    norm(`${b}.k_norm`, d.headDim);
    linear(`${b}.modulation.linear`, 3 * h, h);
  }
  linear('final_layer.linear', d.patchOut, h);
  linear('final_layer.adaLN_modulation.1', 2 * h, h);
  return out;
}

/**
 * ComfyUI's name for a tensor in Tencent's naming: the renames its HunyuanVideo model applies on
 * load (comfy/supported_models.py), written out here by hand.
 */
export function comfyHunyuanName(key: string): string {
  const renames: [string, string][] = [
    ['txt_in.t_embedder.mlp.0.', 'txt_in.t_embedder.in_layer.'], ['txt_in.t_embedder.mlp.2.', 'txt_in.t_embedder.out_layer.'],
    ['txt_in.c_embedder.linear_1.', 'txt_in.c_embedder.in_layer.'], ['txt_in.c_embedder.linear_2.', 'txt_in.c_embedder.out_layer.'],
    ['_mod.linear.', '_mod.lin.'], ['_attn_qkv.', '_attn.qkv.'], ['mlp.fc1.', 'mlp.0.'], ['mlp.fc2.', 'mlp.2.'],
    ['_attn_q_norm.weight', '_attn.norm.query_norm.scale'], ['_attn_k_norm.weight', '_attn.norm.key_norm.scale'],
    ['.q_norm.weight', '.norm.query_norm.scale'], ['.k_norm.weight', '.norm.key_norm.scale'],
    ['_attn_proj.', '_attn.proj.'], ['.modulation.linear.', '.modulation.lin.'],
    ['_in.mlp.2.', '_in.out_layer.'], ['_in.mlp.0.', '_in.in_layer.'],
  ];
  return renames.reduce((k, [from, to]) => k.replace(from, to), key);
}

/** A checkpoint ComfyUI saved: its own names under `model.model.`. */
export function hunyuanComfyTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN, biasDType: FixtureDType = dtype): FixtureTensor[] {
  return hunyuanOriginalTensors(rand, dtype, d, biasDType).map((t) => ({ ...t, name: `model.model.${comfyHunyuanName(t.name)}` }));
}

/** diffusers' HunyuanVideoTransformer3DModel. */
export function hunyuanDiffusersTensors(rand: Rand, dtype: FixtureDType, d: HunyuanDims = HUNYUAN): FixtureTensor[] {
  const h = hiddenOf(d);
  const out: FixtureTensor[] = [];
  const linear = (name: string, rows: number, cols: number) => out.push(tensor(rand, `${name}.weight`, [rows, cols], dtype), tensor(rand, `${name}.bias`, [rows], dtype));
  const norm = (name: string, n: number) => out.push(tensor(rand, `${name}.weight`, [n], 'F32'));

  out.push(tensor(rand, 'x_embedder.proj.weight', [h, d.inChannels, 1, 2, 2], dtype), tensor(rand, 'x_embedder.proj.bias', [h], dtype));
  const c = 'context_embedder';
  linear(`${c}.time_text_embed.timestep_embedder.linear_1`, h, d.freq);
  linear(`${c}.time_text_embed.timestep_embedder.linear_2`, h, h);
  linear(`${c}.time_text_embed.text_embedder.linear_1`, h, d.text);
  linear(`${c}.time_text_embed.text_embedder.linear_2`, h, h);
  linear(`${c}.proj_in`, h, d.text);
  for (let i = 0; i < 2; i++) {
    const b = `${c}.token_refiner.refiner_blocks.${i}`;
    out.push(tensor(rand, `${b}.norm1.weight`, [h], dtype), tensor(rand, `${b}.norm1.bias`, [h], dtype));
    for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) linear(`${b}.attn.${p}`, h, h);
    out.push(tensor(rand, `${b}.norm2.weight`, [h], dtype), tensor(rand, `${b}.norm2.bias`, [h], dtype));
    linear(`${b}.ff.net.0.proj`, 4 * h, h);
    linear(`${b}.ff.net.2`, h, 4 * h);
    linear(`${b}.norm_out.linear`, 2 * h, h);
  }
  linear('time_text_embed.timestep_embedder.linear_1', h, d.freq);
  linear('time_text_embed.timestep_embedder.linear_2', h, h);
  linear('time_text_embed.text_embedder.linear_1', h, d.pooled);
  linear('time_text_embed.text_embedder.linear_2', h, h);
  if (d.guidance) {
    linear('time_text_embed.guidance_embedder.linear_1', h, d.freq);
    linear('time_text_embed.guidance_embedder.linear_2', h, h);
  }
  for (let i = 0; i < 2; i++) {
    const b = `transformer_blocks.${i}`;
    linear(`${b}.norm1.linear`, 6 * h, h);
    linear(`${b}.norm1_context.linear`, 6 * h, h);
    for (const p of ['to_q', 'to_k', 'to_v', 'add_q_proj', 'add_k_proj', 'add_v_proj', 'to_out.0', 'to_add_out']) linear(`${b}.attn.${p}`, h, h);
    for (const p of ['norm_q', 'norm_k', 'norm_added_q', 'norm_added_k']) norm(`${b}.attn.${p}`, d.headDim);
    linear(`${b}.ff.net.0.proj`, 4 * h, h);
    linear(`${b}.ff.net.2`, h, 4 * h);
    linear(`${b}.ff_context.net.0.proj`, 4 * h, h);
    linear(`${b}.ff_context.net.2`, h, 4 * h);
  }
  for (let i = 0; i < 2; i++) {
    const b = `single_transformer_blocks.${i}`;
    for (const p of ['to_q', 'to_k', 'to_v']) linear(`${b}.attn.${p}`, h, h);
    norm(`${b}.attn.norm_q`, d.headDim);
    norm(`${b}.attn.norm_k`, d.headDim);
    linear(`${b}.proj_mlp`, 4 * h, h);
    linear(`${b}.proj_out`, h, h + 4 * h);
    linear(`${b}.norm.linear`, 3 * h, h);
  }
  linear('norm_out.linear', 2 * h, h);
  linear('proj_out', d.patchOut, h);
  return out;
}

/** config.json of the diffusers transformer folder, scaled like the tensors. */
export function hunyuanDiffusersConfig(d: HunyuanDims = HUNYUAN): string {
  return JSON.stringify({
    _class_name: 'HunyuanVideoTransformer3DModel', _diffusers_version: '0.33.0',
    in_channels: d.inChannels, out_channels: 4, num_attention_heads: d.heads, attention_head_dim: d.headDim,
    num_layers: 2, num_single_layers: 2, num_refiner_layers: 2, mlp_ratio: 4.0, patch_size: 2, patch_size_t: 1,
    qk_norm: 'rms_norm', guidance_embeds: d.guidance, text_embed_dim: d.text, pooled_projection_dim: d.pooled,
    rope_theta: 256.0, rope_axes_dim: [16, 56, 56], image_condition_type: d.guidance ? null : 'latent_concat',
  });
}
